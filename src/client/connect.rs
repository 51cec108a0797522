//! Connecting and subscribing: the Subscribe frame, the relay's acknowledgement (notice 1)
//! and, with shared memory granted, the broadcast log's descriptor that comes with it.

use std::io::{self, IoSliceMut, Write};
use std::mem::MaybeUninit;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::path::Path;
use std::time::{Duration, Instant};

use rustix::net::RecvFlags;

use crate::protocol::{Crc, FrameBuilder, OPTION_NOTICES, RelayDomain, Subscribe, registry};

use super::Error;
use super::notice::{Notice, notice_of};
use super::reader::FrameReader;
use super::shm::Tap;
use super::subscriber::SubscriberOptions;

/// A [`Read`](io::Read) of the socket with `recvmsg`, keeping a descriptor that comes with the
/// bytes (SCM_RIGHTS: the broadcast log, with notice 1); any other is closed.
struct ReceiveFd<'a> {
    stream: &'a UnixStream,
    fd: &'a mut Option<OwnedFd>,
}

impl io::Read for ReceiveFd<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        use rustix::net::{RecvAncillaryBuffer, RecvAncillaryMessage};
        let mut space = [MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = RecvAncillaryBuffer::new(&mut space);
        let got = rustix::net::recvmsg(
            self.stream,
            &mut [IoSliceMut::new(buf)],
            &mut control,
            RecvFlags::CMSG_CLOEXEC,
        )?;
        for message in control.drain() {
            if let RecvAncillaryMessage::ScmRights(fds) = message {
                for fd in fds {
                    *self.fd = Some(fd);
                }
            }
        }
        Ok(got.bytes)
    }
}

/// A Subscribe control frame (PROTOCOL.md §6: domain System, the one TLV 116, checksum
/// computed), stamped `timestamp`.
///
/// # Errors
///
/// When `subscribe` breaks a rule of §6 (more than 64 filters, a bad filter).
pub fn subscribe_frame(subscribe: &Subscribe, timestamp: u64) -> Result<Vec<u8>, crate::protocol::Error> {
    let mut value = vec![0; subscribe.encoded_len()];
    subscribe.emit(&mut value)?;
    let mut frame = vec![0; 64 + value.len()];
    let mut builder = FrameBuilder::new(&mut frame, RelayDomain::System, 0)?;
    builder.tlv(registry::SUBSCRIBE, &value)?;
    let len = builder.finish(0, timestamp, Crc::Compute);
    frame.truncate(len);
    Ok(frame)
}

/// Connects, subscribes and waits for the acknowledgement when notices were asked for; the
/// stream is blocking after, without a receive timeout. With shared memory asked and granted,
/// the log's tap, and a reader that frames only whole frames (what the socket brought after
/// notice 1 goes to the tap's own buffer).
pub(super) fn open(
    path: &Path,
    options: &SubscriberOptions,
) -> Result<(UnixStream, FrameReader, Option<Tap>), Error> {
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    let mut stream =
        UnixStream::connect(path).map_err(|source| Error::Connect { path: path.to_path_buf(), source })?;
    let mut reader = FrameReader::new(options.max_message_size);
    let mut tap = None;
    if let Some(subscribe) = &options.subscribe {
        let frame = subscribe_frame(subscribe, super::unix_ns()).map_err(Error::Frame)?;
        stream.write_all(&frame).map_err(io)?;
        if subscribe.options & OPTION_NOTICES != 0 {
            let mut fd = None;
            let text = await_ack(path, &mut stream, &mut reader, options.ack_timeout, &mut fd)?;
            stream.set_read_timeout(None).map_err(io)?;
            if let Some(idle) = options.shm {
                tap = Tap::granted(&text, fd, subscribe, idle)
                    .map_err(|source| Error::Shm { path: path.to_path_buf(), source })?;
            }
        }
    }
    if let Some(tap) = &mut tap {
        let whole = FrameReader::new(options.max_message_size.max(tap.max_frame()));
        tap.keep(reader.pending());
        reader = whole;
    }
    Ok((stream, reader, tap))
}

/// Reads until notice 1 (frames before it are not for this subscription yet); returns its
/// text (the relay's settings).
pub(super) fn await_ack(
    path: &Path,
    stream: &mut UnixStream,
    reader: &mut FrameReader,
    timeout: Duration,
    fd: &mut Option<OwnedFd>,
) -> Result<String, Error> {
    let deadline = Instant::now() + timeout;
    let io = |source| Error::Io { path: path.to_path_buf(), source };
    loop {
        while let Some(frame) =
            reader.next_frame().map_err(|error| Error::Framing { path: path.to_path_buf(), error })?
        {
            match notice_of(&frame) {
                Some(Notice::Subscribed(text)) => return Ok(text),
                Some(Notice::ProtocolError { text, .. } | Notice::AccessDenied { text, .. }) => {
                    return Err(Error::Refused { path: path.to_path_buf(), text });
                }
                _ => {}
            }
        }
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(Error::TimedOut(timeout));
        }
        stream.set_read_timeout(Some(left)).map_err(io)?;
        match reader.read_from(&mut ReceiveFd { stream, fd: &mut *fd }) {
            Ok(0) => return Err(Error::Closed { path: path.to_path_buf() }),
            Ok(_) => {}
            Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                return Err(Error::TimedOut(timeout));
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(io(e)),
        }
    }
}
