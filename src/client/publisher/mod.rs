//! The publishing client.

use std::io::{self, Write};
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::SendFlags;

use crate::protocol::{
    Crc, FrameBuilder, HEADER_SIZE, Header, OPTION_CONFIRM, OPTION_NOTICES, RelayDomain, Role, Subscribe,
    mark_bridged,
};

mod confirm;
mod stamp;

use stamp::{Queued, data_frames_in, frame_start, stamp};

use super::connect::{await_ack, subscribe_frame};
use super::settle::Ledger;
use super::{Error, FrameReader, Reconnect, unix_ns};

/// The largest notice frame (a RelayNotice of 512 bytes in an extended TLV), and then some.
const NOTICE_BUFFER: usize = 4096;

/// How a [`Publisher`] publishes: [`PublisherOptions::new`], then the builder methods, as
/// [`SubscriberOptions`](super::SubscriberOptions):
///
/// ```
/// use std::time::Duration;
/// use torq::client::{PublisherOptions, Reconnect};
/// use torq::protocol::RelayDomain;
///
/// let options = PublisherOptions::new(RelayDomain::Execution, 20)
///     .reconnect(Reconnect::default())
///     .ack_timeout(Duration::from_secs(2));
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublisherOptions {
    domain: RelayDomain,
    source: u8,
    checksum: bool,
    send_buffer: usize,
    batch: usize,
    reconnect: Option<Reconnect>,
    confirm: bool,
    ack_timeout: Duration,
}

impl PublisherOptions {
    /// Frames of `domain` from `source` (a `SourceType`), checksummed unless the domain is
    /// MarketData; a 1 MiB send buffer written in 128 KiB batches; confirmed by the relay,
    /// waiting at most 5 s for its acknowledgement; no reconnection.
    pub fn new(domain: RelayDomain, source: u8) -> Self {
        PublisherOptions {
            domain,
            source,
            checksum: domain != RelayDomain::MarketData,
            send_buffer: 1 << 20,
            batch: 128 << 10,
            reconnect: None,
            confirm: true,
            ack_timeout: Duration::from_secs(5),
        }
    }

    /// Computes each frame's checksum (`true`), or leaves it 0, "not computed" (`false`).
    /// Execution requires it and Signal verifies it.
    #[must_use]
    pub fn checksum(mut self, checksum: bool) -> Self {
        self.checksum = checksum;
        self
    }

    /// The send buffer, in bytes: frames are built in it and written in batches. Also the
    /// largest frame it can build.
    #[must_use]
    pub fn send_buffer(mut self, bytes: usize) -> Self {
        self.send_buffer = bytes;
        self
    }

    /// Writes once this many bytes are waiting (a batch); [`Publisher::flush`] writes the rest.
    #[must_use]
    pub fn batch(mut self, bytes: usize) -> Self {
        self.batch = bytes;
        self
    }

    /// Reconnects with `reconnect` when the relay goes away (`None`: report
    /// [`Error::Closed`]).
    #[must_use]
    pub fn reconnect(mut self, reconnect: impl Into<Option<Reconnect>>) -> Self {
        self.reconnect = reconnect.into();
        self
    }

    /// Asks the relay to confirm every frame (PROTOCOL.md §6, Subscribe options bits 0 and 2;
    /// the default): each rejection comes back with its reason
    /// ([`Publisher::take_rejection`]), a rejected frame never closes the connection, frames
    /// over the relay's `max_message_size` are refused here, and [`Publisher::settle`] waits
    /// until the relay has said what became of everything sent. `false`: the legacy hello —
    /// the relay says nothing, and on Execution closes the connection at the first rejected
    /// frame, losing those behind it.
    #[must_use]
    pub fn confirm(mut self, confirm: bool) -> Self {
        self.confirm = confirm;
        self
    }

    /// How long [`Publisher::connect`] waits for the relay to acknowledge (with
    /// [`PublisherOptions::confirm`]).
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }
}

/// A connection that publishes frames to a relay.
#[derive(Debug)]
pub struct Publisher {
    path: PathBuf,
    options: PublisherOptions,
    stream: UnixStream,
    /// The send buffer: frames in `buf[written..len]` are waiting to be written.
    buf: Vec<u8>,
    len: usize,
    written: usize,
    /// The last sequence used, per source.
    sequences: Box<[u64; 256]>,
    /// Connections made again since the first.
    reconnections: u64,
    /// The relay's notices (with `confirm`): read without waiting as frames are written.
    notices: Option<FrameReader>,
    /// The relay's largest frame, as its acknowledgement said (with `confirm`).
    max_message_size: Option<usize>,
    /// The relay closed its end (seen while reading notices).
    relay_closed: bool,
    ledger: Ledger,
}

impl Publisher {
    /// Connects to the relay at `path`. With [`PublisherOptions::confirm`] it subscribes as a
    /// publisher asking for notices and confirmation and waits (at most
    /// [`PublisherOptions::ack_timeout`]) for the acknowledgement; otherwise it says the
    /// legacy hello (PROTOCOL.md §6: the connection is a publisher from then on).
    ///
    /// # Errors
    ///
    /// [`Error::Connect`] when the socket cannot be connected to; [`Error::Io`] when the hello
    /// cannot be written; [`Error::Refused`] or [`Error::TimedOut`] when the relay refuses or
    /// does not acknowledge.
    pub fn connect(path: impl AsRef<Path>, options: PublisherOptions) -> Result<Publisher, Error> {
        let path = path.as_ref().to_path_buf();
        let (stream, notices, max_message_size) = open(&path, &options)?;
        let buf = vec![0; options.send_buffer.max(HEADER_SIZE)];
        Ok(Publisher {
            path,
            options,
            stream,
            buf,
            len: 0,
            written: 0,
            sequences: Box::new([0; 256]),
            reconnections: 0,
            notices,
            max_message_size,
            relay_closed: false,
            ledger: Ledger::default(),
        })
    }

    /// Builds one frame in place in the send buffer: `build` adds its TLVs; the next sequence
    /// of the source, the time and (as the options say) the checksum are filled in. Writes a
    /// batch once one is waiting; waits while the send buffer is full. Returns the sequence.
    ///
    /// # Errors
    ///
    /// [`Error::Frame`] when `build` fails or the frame is larger than the send buffer;
    /// connection errors as [`Publisher::flush`].
    pub fn publish(
        &mut self,
        mut build: impl FnMut(&mut FrameBuilder<'_>) -> Result<(), crate::protocol::Error>,
    ) -> Result<u64, Error> {
        loop {
            match self.build(&mut build)? {
                Some(sequence) => return self.after_queue(sequence),
                None => self.flush()?,
            }
        }
    }

    /// [`Publisher::publish`] without waiting: [`Error::WouldBlock`] when the send buffer has no
    /// room for the frame and the relay takes nothing now.
    ///
    /// # Errors
    ///
    /// As [`Publisher::publish`], and [`Error::WouldBlock`].
    pub fn try_publish(
        &mut self,
        mut build: impl FnMut(&mut FrameBuilder<'_>) -> Result<(), crate::protocol::Error>,
    ) -> Result<u64, Error> {
        if let Some(sequence) = self.build(&mut build)? {
            return self.after_queue(sequence);
        }
        self.try_flush()?;
        match self.build(&mut build)? {
            Some(sequence) => self.after_queue(sequence),
            None => Err(Error::WouldBlock),
        }
    }

    /// Queues ready-made frames (one, or several back to back), each with the next sequence of
    /// its source, the time and the checksum filled in as the options say; waits while the
    /// send buffer is full. Returns the last sequence.
    ///
    /// # Errors
    ///
    /// [`Error::Frame`] when `frame` is not whole frames or one is larger than the send buffer;
    /// connection errors as [`Publisher::flush`].
    pub fn offer(&mut self, frame: &[u8]) -> Result<u64, Error> {
        self.offer_at(frame, unix_ns())
    }

    /// [`Publisher::offer`] with the timestamp given (nanoseconds since the Unix epoch): the
    /// caller's own time (an exchange's, a recording's), or one clock reading for a burst of
    /// frames — reading the clock costs about as much as queuing a small frame.
    ///
    /// # Errors
    ///
    /// As [`Publisher::offer`].
    pub fn offer_at(&mut self, frame: &[u8], timestamp: u64) -> Result<u64, Error> {
        let sequence = self.offer_inner(frame, Queued::Stamped(timestamp))?;
        self.after_queue(sequence)
    }

    /// Sends frames the caller built in its own buffer (whole frames back to back), without a
    /// copy: each is stamped in place with the next sequence of its source, `timestamp` and
    /// the checksum as the options say, then written straight from `frames` after what already
    /// waits, waiting while the relay takes them. Returns the last sequence. The fastest way
    /// to publish at a high rate: one write per batch, no copy.
    ///
    /// # Errors
    ///
    /// [`Error::Frame`] when `frames` is not whole frames (nothing is sent and no sequence is
    /// used; the headers may have been stamped); connection errors as [`Publisher::flush`].
    pub fn send_frames(&mut self, frames: &mut [u8], timestamp: u64) -> Result<u64, Error> {
        self.flush()?;
        let count = self.data_frames(frames)?;
        // Checked while stamping: one pass over the headers.
        let Some(sequence) = stamp(frames, &mut self.sequences, timestamp, self.options.checksum) else {
            return Err(Error::Frame(crate::protocol::Error::BufferTooSmall {
                needed: HEADER_SIZE.max(frames.len()),
                available: frames.len(),
            }));
        };
        self.ledger.sent(count);
        let mut written = 0;
        while written < frames.len() {
            let error = match rustix::net::send(&self.stream, &frames[written..], SendFlags::NOSIGNAL) {
                Ok(0) => io::ErrorKind::WriteZero.into(),
                Ok(n) => {
                    written += n;
                    continue;
                }
                Err(rustix::io::Errno::INTR) => continue,
                Err(e) => io::Error::from(e),
            };
            // After a reconnection the rest goes through the send buffer, from the frame that
            // was being written, and is counted there.
            let start = frame_start(frames, written);
            self.ledger.unsent(data_frames_in(&frames[start..]));
            self.lost(error)?;
            return self.offer_verbatim(&frames[start..]).map(|()| sequence);
        }
        Ok(sequence)
    }

    /// Queues frames' bytes exactly as they are (sequence, time and checksum untouched), as a
    /// replay needs; waits while the send buffer is full.
    ///
    /// # Errors
    ///
    /// As [`Publisher::offer`].
    pub fn offer_verbatim(&mut self, frame: &[u8]) -> Result<(), Error> {
        self.offer_inner(frame, Queued::Verbatim)?;
        self.after_queue(0).map(|_| ())
    }

    /// Queues frames brought from another host, as a bridge writes them into its relay: their
    /// bytes as they are but for flags bit 0, bridged, set and the checksum computed again when
    /// they carry one ([`crate::protocol::mark_bridged`]), marked in the send buffer, without a
    /// copy of their own; waits while the send buffer is full.
    ///
    /// # Errors
    ///
    /// As [`Publisher::offer`].
    pub fn offer_bridged(&mut self, frame: &[u8]) -> Result<(), Error> {
        self.offer_inner(frame, Queued::Bridged)?;
        self.after_queue(0).map(|_| ())
    }

    /// Copies `frames` (whole frames back to back) into the send buffer — one copy, split only
    /// where the buffer is full — and treats each in place as `queued` says. Returns the last
    /// sequence (stamped frames only).
    fn offer_inner(&mut self, mut frames: &[u8], queued: Queued) -> Result<u64, Error> {
        let count = self.data_frames(frames)?;
        self.ledger.sent(count);
        let mut sequence = 0;
        while !frames.is_empty() {
            // The frames that fit the room left; at least one once the buffer is empty.
            if self.buf.len() - self.len < frames.len() && self.written > 0 {
                // What was written makes room once what waits moves to the front.
                self.compact();
            }
            let room = self.buf.len() - self.len;
            let mut fit = 0;
            while let Some(header) = frames.get(fit..).and_then(Header::view) {
                let len = header.frame_len() as usize;
                if fit + len > room {
                    break;
                }
                fit += len;
            }
            if fit == 0 {
                if self.len == 0 {
                    return Err(Error::Frame(crate::protocol::Error::BufferTooSmall {
                        needed: frames.len(),
                        available: self.buf.len(),
                    }));
                }
                self.flush()?;
                continue;
            }
            let at = self.len;
            self.buf[at..at + fit].copy_from_slice(&frames[..fit]);
            self.len += fit;
            frames = &frames[fit..];
            let queued_now = &mut self.buf[at..at + fit];
            match queued {
                Queued::Verbatim => {}
                Queued::Stamped(timestamp) => {
                    sequence = stamp(queued_now, &mut self.sequences, timestamp, self.options.checksum)
                        .unwrap_or_else(|| unreachable!("whole frames: checked on entry"));
                }
                Queued::Bridged => {
                    let mut rest = queued_now;
                    while let Some(len) = Header::view(rest).map(|header| header.frame_len() as usize) {
                        let (frame, after) = std::mem::take(&mut rest).split_at_mut(len);
                        mark_bridged(frame);
                        rest = after;
                    }
                }
            }
        }
        Ok(sequence)
    }

    /// Builds into the free part of the send buffer; `None` when it does not fit there.
    fn build(
        &mut self,
        build: &mut impl FnMut(&mut FrameBuilder<'_>) -> Result<(), crate::protocol::Error>,
    ) -> Result<Option<u64>, Error> {
        if self.written > 0 && self.buf.len() - self.len < self.buf.len() / 4 {
            // What was written makes room once what waits moves to the front.
            self.compact();
        }
        let source = self.options.source;
        let room = &mut self.buf[self.len..];
        let built = FrameBuilder::new(room, self.options.domain, source).and_then(|mut builder| {
            build(&mut builder)?;
            Ok(builder)
        });
        let builder = match built {
            Ok(builder) => builder,
            // Room comes back once what waits is written.
            Err(crate::protocol::Error::BufferTooSmall { .. }) if self.len > 0 => return Ok(None),
            Err(e) => return Err(Error::Frame(e)),
        };
        let sequence = self.sequences[usize::from(source)] + 1;
        let crc = if self.options.checksum { Crc::Compute } else { Crc::Skip };
        let len = builder.finish(sequence, unix_ns(), crc);
        if let Some(max) = self.max_message_size.filter(|&max| len > max) {
            // Not queued: the relay would close the connection at it.
            return Err(Error::Frame(crate::protocol::Error::FrameTooLarge { size: len as u64, max }));
        }
        self.sequences[usize::from(source)] = sequence;
        self.len += len;
        // A frame without TLVs is a hello: the relay does not count it.
        self.ledger.sent(u64::from(len > HEADER_SIZE));
        Ok(Some(sequence))
    }

    /// Writes a batch once one is waiting (without waiting for the socket).
    fn after_queue(&mut self, sequence: u64) -> Result<u64, Error> {
        if self.len - self.written >= self.options.batch {
            self.try_flush()?;
        }
        Ok(sequence)
    }

    /// Writes what the socket takes now; returns whether everything waiting was written.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] / [`Error::Io`] when the relay went away and no reconnection was
    /// asked for (or it gave up). Frames not yet written when a connection is lost are
    /// written to the new connection.
    pub fn try_flush(&mut self) -> Result<bool, Error> {
        self.write_waiting(false)
    }

    /// Writes what waits: without waiting (`MSG_DONTWAIT`), or waiting in the kernel as long
    /// as the socket's write timeout allows. Returns whether everything was written.
    ///
    /// The socket stays blocking and a non-blocking call says so per write: a blocking write
    /// resumes as soon as the relay has taken anything, where waiting for POLLOUT on a Unix
    /// socket resumes only once three quarters of its buffer are free (measured: a publisher
    /// waiting that way sent 40 % fewer frames a second).
    fn write_waiting(&mut self, wait: bool) -> Result<bool, Error> {
        use rustix::net::send;
        let flags = if wait { SendFlags::NOSIGNAL } else { SendFlags::DONTWAIT | SendFlags::NOSIGNAL };
        while self.written < self.len {
            match send(&self.stream, &self.buf[self.written..self.len], flags) {
                Ok(0) => self.lost(io::ErrorKind::WriteZero.into())?,
                Ok(n) => self.written += n,
                Err(rustix::io::Errno::AGAIN) => {
                    self.read_notices()?;
                    return Ok(false);
                }
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => self.lost(e.into())?,
            }
        }
        (self.len, self.written) = (0, 0);
        self.read_notices()?;
        Ok(true)
    }

    /// Moves what waits to the front of the send buffer, from the start of its first frame
    /// (the buffer always starts at a frame).
    fn compact(&mut self) {
        let start = frame_start(&self.buf[..self.len], self.written);
        if start > 0 {
            self.buf.copy_within(start..self.len, 0);
            (self.len, self.written) = (self.len - start, self.written - start);
        }
    }

    /// Writes everything waiting, waiting for the relay as long as it takes.
    ///
    /// # Errors
    ///
    /// As [`Publisher::try_flush`].
    pub fn flush(&mut self) -> Result<(), Error> {
        self.flush_until(None)
    }

    /// Writes everything waiting, waiting at most `timeout`.
    ///
    /// # Errors
    ///
    /// [`Error::TimedOut`] when the relay did not take it all in time; otherwise as
    /// [`Publisher::try_flush`].
    pub fn flush_timeout(&mut self, timeout: Duration) -> Result<(), Error> {
        self.flush_until(Some(Instant::now() + timeout)).map_err(|e| match e {
            Error::WouldBlock => Error::TimedOut(timeout),
            other => other,
        })
    }

    fn flush_until(&mut self, deadline: Option<Instant>) -> Result<(), Error> {
        let Some(deadline) = deadline else {
            return self.write_waiting(true).map(|_| ());
        };
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                return if self.try_flush()? { Ok(()) } else { Err(Error::WouldBlock) };
            }
            self.stream.set_write_timeout(Some(left)).map_err(|e| self.io(e))?;
            let done = self.write_waiting(true);
            self.stream.set_write_timeout(None).map_err(|e| self.io(e))?;
            if done? {
                return Ok(());
            }
        }
    }

    /// How many times the publisher connected again after losing the relay (with
    /// [`PublisherOptions::reconnect`]).
    pub fn reconnections(&self) -> u64 {
        self.reconnections
    }

    /// Bytes waiting in the send buffer.
    pub fn pending(&self) -> usize {
        self.len - self.written
    }

    /// The last sequence used for `source`.
    pub fn sequence(&self, source: u8) -> u64 {
        self.sequences[usize::from(source)]
    }

    /// The connection was lost: reconnect (say hello again) or report it.
    fn lost(&mut self, error: io::Error) -> Result<(), Error> {
        // What the relay said before it went: confirmations, or why it closed.
        if !self.relay_closed {
            let _ = self.read_notices();
        }
        if let Some(text) = self.ledger.refused() {
            return Err(Error::Refused { path: self.path.clone(), text: text.to_string() });
        }
        let Some(reconnect) = self.options.reconnect else {
            return Err(match error.kind() {
                io::ErrorKind::BrokenPipe | io::ErrorKind::ConnectionReset | io::ErrorKind::WriteZero => {
                    Error::Closed { path: self.path.clone() }
                }
                _ => self.io(error),
            });
        };
        log::info!("publisher: the relay at {} went away ({error}); reconnecting", self.path.display());
        let ((stream, notices, max_message_size), attempts) =
            reconnect.run(|| open(&self.path, &self.options))?;
        log::info!("publisher: reconnected to {} after {attempts} attempts", self.path.display());
        (self.stream, self.notices, self.max_message_size) = (stream, notices, max_message_size);
        self.relay_closed = false;
        self.reconnections += 1;
        // A partly written frame cannot be completed on a new connection: start at a frame.
        self.written = frame_start(&self.buf[..self.len], self.written);
        let resent = data_frames_in(&self.buf[self.written..self.len]);
        self.ledger.reconnected(resent);
        Ok(())
    }

    fn io(&self, source: io::Error) -> Error {
        Error::Io { path: self.path.clone(), source }
    }
}

/// Connects, and subscribes as a confirmed publisher (waiting for the acknowledgement) or
/// says hello; the stream stays blocking (see `write_waiting`). Returns the notice reader and
/// the relay's `max_message_size` when confirming.
fn open(
    path: &Path,
    options: &PublisherOptions,
) -> Result<(UnixStream, Option<FrameReader>, Option<usize>), Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut stream =
        UnixStream::connect(path).map_err(|source| Error::Connect { path: path.to_path_buf(), source })?;
    if !options.confirm {
        let hello = Header::new(options.domain, options.source, 0, unix_ns(), 0);
        stream.write_all(zerocopy::IntoBytes::as_bytes(&hello)).map_err(io)?;
        return Ok((stream, None, None));
    }
    let subscribe =
        Subscribe { role: Role::Publish, options: OPTION_NOTICES | OPTION_CONFIRM, filters: Vec::new() };
    let frame = subscribe_frame(&subscribe, unix_ns()).map_err(Error::Frame)?;
    stream.write_all(&frame).map_err(io)?;
    let mut reader = FrameReader::new(NOTICE_BUFFER);
    let text = await_ack(path, &mut stream, &mut reader, options.ack_timeout, &mut None)?;
    stream.set_read_timeout(None).map_err(io)?;
    let max_message_size =
        text.split(' ').find_map(|word| word.strip_prefix("max_message_size=")).and_then(|n| n.parse().ok());
    Ok((stream, Some(reader), max_message_size))
}

impl AsFd for Publisher {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsRawFd for Publisher {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}
