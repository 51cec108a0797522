//! The subscribing client.

use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, RawFd};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rustix::net::RecvFlags;

use crate::protocol::{
    Filter, Header, OPTION_HEARTBEATS, OPTION_NOTICES, OPTION_SHM, RelayDomain, Role, Subscribe,
};

use super::connect::open;
use super::notice::{Notice, notice_of};
use super::reader::{Frame, FrameReader};
use super::shm::{Idle, Tap};
use super::{Error, Reconnect, wait_ready};

/// How a [`Subscriber`] subscribes: [`SubscriberOptions::new`] (or
/// [`SubscriberOptions::legacy`]), then the builder methods, as
/// [`PublisherOptions`](super::PublisherOptions):
///
/// ```
/// use torq::client::{Reconnect, SubscriberOptions};
/// use torq::protocol::Filter;
///
/// let options = SubscriberOptions::new()
///     .filter(Filter::TypeRange { lo: 1, hi: 3 })
///     .heartbeats()
///     .reconnect(Reconnect::default());
/// ```
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriberOptions {
    /// The Subscribe sent on connecting (and again after each reconnection); `None` for a
    /// legacy subscriber that sends nothing and receives everything, without notices.
    pub(super) subscribe: Option<Subscribe>,
    pub(super) max_message_size: usize,
    pub(super) ack_timeout: Duration,
    reconnect: Option<Reconnect>,
    /// What was asked of a legacy subscriber that only a Subscribe can say (its first such
    /// request): [`Subscriber::connect`] refuses the options with [`Error::Legacy`].
    refused: Option<&'static str>,
    /// Data frames through shared memory (PROTOCOL.md §7), waiting as this says.
    pub(super) shm: Option<Idle>,
}

impl Default for SubscriberOptions {
    fn default() -> Self {
        Self::new()
    }
}

impl SubscriberOptions {
    /// Every data frame, with notices; frames up to 131072 bytes; waiting at most 5 s for the
    /// relay's acknowledgement; no reconnection.
    pub fn new() -> Self {
        SubscriberOptions {
            subscribe: Some(Subscribe {
                role: Role::Subscribe,
                options: OPTION_NOTICES,
                filters: Vec::new(),
            }),
            max_message_size: 131_072,
            ack_timeout: Duration::from_secs(5),
            reconnect: None,
            refused: None,
            shm: None,
        }
    }

    /// A legacy subscriber: no Subscribe, every data frame, no notices. It takes no filter,
    /// heartbeats or role (they are said in the Subscribe it does not send): asking for one
    /// makes [`Subscriber::connect`] fail with [`Error::Legacy`].
    pub fn legacy() -> Self {
        SubscriberOptions { subscribe: None, ..Self::new() }
    }

    /// Adds a filter (PROTOCOL.md §6: filters are OR-ed; none means every data frame).
    #[must_use]
    pub fn filter(self, filter: Filter) -> Self {
        self.subscribing("filters", |subscribe| subscribe.filters.push(filter))
    }

    /// Asks for a Heartbeat after each second with nothing else to send.
    #[must_use]
    pub fn heartbeats(self) -> Self {
        self.subscribing("heartbeats", |subscribe| subscribe.options |= OPTION_HEARTBEATS)
    }

    /// The role the Subscribe says: [`Role::Subscribe`] by default; [`Role::PublishSubscribe`]
    /// for a connection that also publishes (its rejected frames come back as notices).
    #[must_use]
    pub fn role(self, role: Role) -> Self {
        self.subscribing("role", |subscribe| subscribe.role = role)
    }

    /// Reconnects with `reconnect` when the relay goes away (`None`: report
    /// [`Error::Closed`]).
    #[must_use]
    pub fn reconnect(mut self, reconnect: impl Into<Option<Reconnect>>) -> Self {
        self.reconnect = reconnect.into();
        self
    }

    /// Data frames through the relay's broadcast log in shared memory (PROTOCOL.md §7), the
    /// same events through the same API: no system call per frame, and for [`Idle::Spin`]
    /// no wake-up either. Frames the subscription's filters refuse and its own frames are
    /// skipped here; an overrun (the reader fell a whole log behind) comes as
    /// [`Notice::Dropped`], as a drop would. A relay that offers no log (`shm=0`: Execution,
    /// or `shm` off) delivers over the socket as without this option.
    #[must_use]
    pub fn shm(self, idle: Idle) -> Self {
        let mut options = self.subscribing("shared memory", |s| s.options |= OPTION_SHM | OPTION_NOTICES);
        options.shm = Some(idle);
        options
    }

    /// The largest frame expected: the relay's `max_message_size`.
    #[must_use]
    pub fn max_message_size(mut self, bytes: usize) -> Self {
        self.max_message_size = bytes;
        self
    }

    /// How long [`Subscriber::connect`] waits for the relay to acknowledge the Subscribe.
    #[must_use]
    pub fn ack_timeout(mut self, timeout: Duration) -> Self {
        self.ack_timeout = timeout;
        self
    }

    /// The Subscribe sent on connecting; `None` for a legacy subscriber.
    pub fn subscribe(&self) -> Option<&Subscribe> {
        self.subscribe.as_ref()
    }

    /// Changes the Subscribe, or notes that a legacy subscriber was asked for `what`.
    fn subscribing(mut self, what: &'static str, change: impl FnOnce(&mut Subscribe)) -> Self {
        match &mut self.subscribe {
            Some(subscribe) => change(subscribe),
            None => {
                self.refused.get_or_insert(what);
            }
        }
        self
    }
}

/// What a [`Subscriber`] receives: `F` is the frame — a [`Frame`] borrowed from its buffer,
/// or the frame's bytes in an [`OwnedEvent`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event<F> {
    /// A data frame (or a Heartbeat).
    Frame(F),
    /// A notice from the relay.
    Notice(Notice),
    /// The next frame from `source` skips sequences forward: `expected` was due, `received`
    /// (larger) comes, so `received - expected` frames were missed. (Frames of one source from
    /// several connections interleave; sequences are per publisher.)
    Gap {
        /// The frame's source.
        source: u8,
        /// The sequence due.
        expected: u64,
        /// The sequence received.
        received: u64,
    },
    /// The next frame from `source` goes back: `expected` was due, `received` (smaller, or
    /// the same again) comes. Nothing was missed: the source's publisher started again (a new
    /// connection counts from 1), or another publisher of that source, or a replay, sends
    /// sequences of its own. Sequences are checked from `received` on.
    Restarted {
        /// The frame's source.
        source: u8,
        /// The sequence due.
        expected: u64,
        /// The sequence received.
        received: u64,
    },
    /// The connection was lost and made again (the Subscribe sent again); frames published
    /// meanwhile may have been missed.
    Reconnected {
        /// Connection attempts it took.
        attempts: u32,
    },
}

/// An [`Event`] that owns its frame's bytes (to hand to another thread).
pub type OwnedEvent = Event<Vec<u8>>;

impl Event<Frame<'_>> {
    /// An owned copy (to hand to another thread).
    pub fn to_owned(&self) -> OwnedEvent {
        match self {
            Event::Frame(frame) => Event::Frame(frame.bytes().to_vec()),
            Event::Notice(notice) => Event::Notice(notice.clone()),
            Event::Gap { source, expected, received } => {
                Event::Gap { source: *source, expected: *expected, received: *received }
            }
            Event::Restarted { source, expected, received } => {
                Event::Restarted { source: *source, expected: *expected, received: *received }
            }
            Event::Reconnected { attempts } => Event::Reconnected { attempts: *attempts },
        }
    }
}

/// A connection that receives frames from a relay.
#[derive(Debug)]
pub struct Subscriber {
    path: PathBuf,
    options: SubscriberOptions,
    stream: UnixStream,
    reader: FrameReader,
    /// The broadcast log, when the relay granted it: data frames come from there.
    tap: Option<Tap>,
    /// The sequence due next per source (data frames only); 0 while none was seen (or after
    /// sequence `u64::MAX`).
    next: Box<[u64; 256]>,
    /// The gap of the next frame was reported; the frame itself comes next.
    gap_reported: bool,
    reconnected: Option<u32>,
    /// Length of the frame last handed out, still in the buffer while the caller holds it.
    taken: usize,
    /// The socket's receive timeout as last set (`None`: none, a read waits for ever).
    read_timeout: Option<Duration>,
}

impl Subscriber {
    /// Connects to the relay at `path` and subscribes; when the Subscribe asks for notices,
    /// waits (at most `ack_timeout`) until the relay acknowledges it, so frames published
    /// after this returns reach it.
    ///
    /// # Errors
    ///
    /// [`Error::Legacy`], before connecting, for legacy options given a filter, heartbeats or
    /// a role; [`Error::Connect`]; [`Error::Refused`] when the relay answers with notice 3 or
    /// 6; [`Error::TimedOut`] without an acknowledgement.
    pub fn connect(path: impl AsRef<Path>, options: SubscriberOptions) -> Result<Subscriber, Error> {
        let path = path.as_ref().to_path_buf();
        if let Some(asked) = options.refused {
            return Err(Error::Legacy { path, asked });
        }
        let (stream, reader, tap) = open(&path, &options)?;
        Ok(Subscriber {
            path,
            options,
            stream,
            reader,
            tap,
            next: Box::new([0; 256]),
            gap_reported: false,
            reconnected: None,
            taken: 0,
            read_timeout: None,
        })
    }

    /// Waits at most `timeout` for the next event; `None` when none came.
    ///
    /// # Errors
    ///
    /// [`Error::Closed`] when the relay went away (and no reconnection was asked for, or it
    /// gave up); [`Error::Framing`] when its stream broke; [`Error::Io`].
    pub fn recv_timeout(&mut self, timeout: Duration) -> Result<Option<Event<Frame<'_>>>, Error> {
        if !self.wait(timeout)? {
            return Ok(None);
        }
        self.next_event()
    }

    /// Waits at most `timeout` until an event is ready; returns whether one is (then
    /// [`Subscriber::poll`] hands it out without waiting).
    ///
    /// # Errors
    ///
    /// As [`Subscriber::recv_timeout`].
    pub fn wait(&mut self, timeout: Duration) -> Result<bool, Error> {
        let deadline = Instant::now().checked_add(timeout);
        loop {
            if self.has_event()? {
                return Ok(true);
            }
            if !self.fill_until(deadline)? {
                return Ok(false);
            }
        }
    }

    /// Handles the events that are there now, at most `limit`, without waiting; returns how
    /// many were handled. The events buffered are handled first; only when there are none does
    /// it read what the socket holds now (so a loop of [`Subscriber::wait`] and `poll` reads
    /// once per wake-up).
    ///
    /// # Errors
    ///
    /// As [`Subscriber::recv_timeout`].
    pub fn poll(&mut self, mut handler: impl FnMut(Event<Frame<'_>>), limit: usize) -> Result<usize, Error> {
        self.reader.consume(std::mem::take(&mut self.taken));
        let mut handled = 0;
        while handled < limit {
            handled += self.handle_buffered(&mut handler, limit - handled)?;
            if handled > 0 || !self.fill()? {
                break;
            }
        }
        Ok(handled)
    }

    /// Hands the events ready — a reconnection, then those of the frames buffered — to
    /// `handler`, at most `limit` (at least 1): the hot loop of [`Subscriber::poll`], framing
    /// each frame once and taking the run off the buffer at the end. Every event goes through
    /// the one call of `handler`, so that the compiler can inline it into the loop (with a
    /// second call for the rare events it did not: callgrind counted a quarter more
    /// instructions per frame in `torq-perf subscribe`), and the frame is built from registers
    /// (the rare paths take it in pieces), not copied through memory (a copy stalled each frame
    /// on store forwarding).
    #[inline]
    fn handle_buffered(
        &mut self,
        handler: &mut impl FnMut(Event<Frame<'_>>),
        limit: usize,
    ) -> Result<usize, Error> {
        let mut handled = 0;
        let mut reconnected = self.reconnected.take();
        let mut run = self.reader.run();
        // In a register through the loop, not in `self`.
        let mut gap_reported = self.gap_reported;
        let broken = loop {
            if handled == limit {
                break None;
            }
            let event = if let Some(attempts) = reconnected.take() {
                Event::Reconnected { attempts }
            } else {
                let frame = match run.peek() {
                    Ok(Some(frame)) => frame,
                    Ok(None) => break None,
                    Err(error) => break Some(error),
                };
                let header = frame.header();
                if header.domain_byte() == RelayDomain::System.raw() {
                    run.pass(frame);
                    system_event(frame.bytes(), frame.offset())
                } else if let Some(gap) = gap(header, &mut self.next, &mut gap_reported) {
                    // The frame stays: it comes next.
                    gap
                } else {
                    run.pass(frame);
                    Event::Frame(frame)
                }
            };
            handler(event);
            handled += 1;
        };
        let taken = run.taken();
        self.reader.consume(taken);
        self.gap_reported = gap_reported;
        match broken {
            None => Ok(handled),
            Some(error) => Err(Error::Framing { path: self.path.clone(), error }),
        }
    }

    /// Reads on a thread of its own into a bounded channel of `capacity` events: the handler
    /// can be slow without the relay seeing it until the channel is full (then the subscriber
    /// stops reading, as a slow reader). The thread ends with the connection or when the
    /// receiver is dropped.
    pub fn spawn(
        mut self,
        capacity: usize,
    ) -> (crossbeam_channel::Receiver<OwnedEvent>, std::thread::JoinHandle<Result<(), Error>>) {
        let (sender, receiver) = crossbeam_channel::bounded(capacity);
        let thread = std::thread::spawn(move || {
            loop {
                if let Some(event) = self.recv_timeout(Duration::from_millis(100))?
                    && sender.send(event.to_owned()).is_err()
                {
                    return Ok(());
                }
            }
        });
        (receiver, thread)
    }

    /// Whether an event is ready without reading.
    fn has_event(&mut self) -> Result<bool, Error> {
        self.reader.consume(std::mem::take(&mut self.taken));
        if self.reconnected.is_some() {
            return Ok(true);
        }
        let path = &self.path;
        match self.reader.has_frame() {
            Ok(ready) => Ok(ready),
            Err(error) => Err(Error::Framing { path: path.clone(), error }),
        }
    }

    /// The next event from what is buffered (call after `has_event` said so).
    fn next_event(&mut self) -> Result<Option<Event<Frame<'_>>>, Error> {
        self.reader.consume(std::mem::take(&mut self.taken));
        if let Some(attempts) = self.reconnected.take() {
            return Ok(Some(Event::Reconnected { attempts }));
        }
        let path = &self.path;
        let frame = self.reader.peek().map_err(|error| Error::Framing { path: path.clone(), error })?;
        let Some(frame) = frame else { return Ok(None) };
        let len = frame.bytes().len();
        let (event, consumed) = classify(frame, &mut self.next, &mut self.gap_reported);
        if consumed {
            // Taken off the buffer at the next call, once the caller is done with it.
            self.taken = len;
        }
        Ok(Some(event))
    }

    /// Reads what the socket holds now; false when it holds nothing. Reconnects (or reports)
    /// when the relay went away.
    fn fill(&mut self) -> Result<bool, Error> {
        if self.tap.is_some() {
            return self.fill_shm(false, None);
        }
        self.read(false)
    }

    /// [`Subscriber::fill_until`] through the log: what the log holds, then what the socket
    /// brought (notices; at most one look a millisecond); waits (`wait`) as the idle strategy
    /// says until `deadline`. The log's close or the socket's end is the relay going away.
    fn fill_shm(&mut self, wait: bool, deadline: Option<Instant>) -> Result<bool, Error> {
        self.reader.consume(std::mem::take(&mut self.taken));
        loop {
            let Some(tap) = self.tap.as_mut() else { return self.read(wait) };
            let (added, closed) = tap
                .pump(&mut self.reader)
                .map_err(|source| Error::Shm { path: self.path.clone(), source })?;
            if added > 0 {
                tap.busy();
                return Ok(true);
            }
            let looked = tap.look(&self.stream, &mut self.reader, closed);
            match looked {
                Ok(true) => return Ok(true),
                Ok(false) if closed => return self.lost(io::ErrorKind::UnexpectedEof.into()).map(|()| true),
                Ok(false) => {}
                Err(e) => return self.lost(e).map(|()| true),
            }
            if !wait || deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(false);
            }
            if let Some(tap) = self.tap.as_mut() {
                tap.idle(deadline);
            }
        }
    }

    /// Reads, waiting until bytes come or `deadline` passes (`None`: for ever); false when
    /// none came in time. Reconnects (or reports) when the relay went away.
    ///
    /// The wait is in the read itself, as long as the socket's receive timeout: one system
    /// call per wake-up, where polling for readiness and then reading takes two (and the read
    /// that found nothing before, three). The kernel may end that timeout up to an eighth
    /// late, so it is kept well below the time left ([`receive_timeout`]) and the rest is
    /// waited for with `poll`, which is exact.
    fn fill_until(&mut self, deadline: Option<Instant>) -> Result<bool, Error> {
        if self.tap.is_some() {
            return self.fill_shm(true, deadline);
        }
        loop {
            let timeout = match deadline {
                None => None,
                Some(deadline) => {
                    let left = deadline.saturating_duration_since(Instant::now());
                    match receive_timeout(left) {
                        Some(timeout) => Some(timeout),
                        None => {
                            if self.fill()? {
                                return Ok(true);
                            }
                            if left.is_zero()
                                || !wait_ready(&self.stream, false, Some(deadline)).map_err(|e| self.io(e))?
                            {
                                return Ok(false);
                            }
                            continue;
                        }
                    }
                }
            };
            if self.read_timeout != timeout {
                self.stream.set_read_timeout(timeout).map_err(|e| self.io(e))?;
                self.read_timeout = timeout;
            }
            if self.read(true)? {
                return Ok(true);
            }
        }
    }

    /// One read into the buffer: waiting as long as the socket's receive timeout (`wait`), or
    /// not at all (`MSG_DONTWAIT`: the socket itself stays blocking); false when nothing came.
    /// Reconnects (or reports) when the relay went away.
    fn read(&mut self, wait: bool) -> Result<bool, Error> {
        self.reader.consume(std::mem::take(&mut self.taken));
        let flags = if wait { RecvFlags::empty() } else { RecvFlags::DONTWAIT };
        loop {
            match self.reader.read_from(&mut Receive { stream: &self.stream, flags }) {
                Ok(0) => return self.lost(io::ErrorKind::UnexpectedEof.into()).map(|()| true),
                Ok(_) => return Ok(true),
                Err(e) if matches!(e.kind(), io::ErrorKind::WouldBlock | io::ErrorKind::TimedOut) => {
                    return Ok(false);
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return self.lost(e).map(|()| true),
            }
        }
    }

    fn lost(&mut self, error: io::Error) -> Result<(), Error> {
        let Some(reconnect) = self.options.reconnect else {
            return Err(match error.kind() {
                io::ErrorKind::UnexpectedEof | io::ErrorKind::ConnectionReset => {
                    Error::Closed { path: self.path.clone() }
                }
                _ => self.io(error),
            });
        };
        log::info!("subscriber: the relay at {} went away ({error}); reconnecting", self.path.display());
        let ((stream, reader, tap), attempts) = reconnect.run(|| open(&self.path, &self.options))?;
        (self.stream, self.reader, self.tap, self.taken, self.read_timeout) = (stream, reader, tap, 0, None);
        *self.next = [0; 256];
        self.gap_reported = false;
        self.reconnected = Some(attempts);
        Ok(())
    }

    fn io(&self, source: io::Error) -> Error {
        Error::Io { path: self.path.clone(), source }
    }
}

/// The event a buffered frame makes: a gap or a restart (reported before its frame, which then stays in the
/// buffer: `false`), a notice or a frame (taken: `true`).
fn classify<'a>(
    frame: Frame<'a>,
    next: &mut [u64; 256],
    gap_reported: &mut bool,
) -> (Event<Frame<'a>>, bool) {
    let header = frame.header();
    if header.domain_byte() == RelayDomain::System.raw() {
        return (system_event(frame.bytes(), frame.offset()), true);
    }
    match gap(header, next, gap_reported) {
        Some(gap) => (gap, false),
        None => (Event::Frame(frame), true),
    }
}

/// The gap ([`Event::Gap`] forward, [`Event::Restarted`] back) before the data frame of
/// `header`, unless it was just reported (the frame comes after it); without one, the frame's
/// sequence is recorded as seen. `gap_reported` is only
/// ever true for the frame whose gap was reported, so the sequence due is all a frame in order
/// is checked against.
#[inline]
fn gap<F>(header: &Header, next: &mut [u64; 256], gap_reported: &mut bool) -> Option<Event<F>> {
    let (source, sequence) = (header.source(), header.sequence());
    let due = &mut next[usize::from(source)];
    if *due != sequence && *due != 0 {
        if !*gap_reported {
            *gap_reported = true;
            let expected = *due;
            return Some(if sequence > expected {
                Event::Gap { source, expected, received: sequence }
            } else {
                Event::Restarted { source, expected, received: sequence }
            });
        }
        *gap_reported = false;
    }
    *due = sequence.wrapping_add(1);
    None
}

/// The event of a System frame (its bytes, at `offset` in the stream): a typed notice, else
/// the frame. Out of the hot loop (notices are rare), and given the frame in pieces so that the
/// loop's frame stays in registers.
#[cold]
#[inline(never)]
fn system_event(bytes: &[u8], offset: u64) -> Event<Frame<'_>> {
    let frame = Frame::new(bytes, offset);
    match notice_of(&frame) {
        Some(notice) => Event::Notice(notice),
        None => Event::Frame(frame),
    }
}

/// The receive timeout for a read that may wait `left`: a power of two of milliseconds, at
/// most 8/9 of `left` less 10 ms — the kernel counts it in ticks (up to 10 ms) and its timer
/// wheel may fire up to an eighth late — so that the read ends before the deadline; powers of
/// two, so that a loop waiting alike sets it once. `None` below 1 ms.
fn receive_timeout(left: Duration) -> Option<Duration> {
    let ms = left.as_millis().saturating_sub(10) * 8 / 9;
    (ms > 0).then(|| Duration::from_millis(1 << ms.ilog2().min(40)))
}

/// A [`Read`](io::Read) of the subscriber's socket with `recv` flags (`MSG_DONTWAIT` for the
/// reads that must not wait).
struct Receive<'a> {
    stream: &'a UnixStream,
    flags: RecvFlags,
}

impl io::Read for Receive<'_> {
    fn read(&mut self, buf: &mut [u8]) -> io::Result<usize> {
        Ok(rustix::net::recv(self.stream, buf, self.flags)?.0)
    }
}

impl Subscriber {
    /// Whether data frames come from the relay's shared-memory log: it was asked
    /// ([`SubscriberOptions::shm`]) and the relay granted it (not `shm=0`). After a
    /// reconnection, as the new relay answered.
    pub fn shared_memory(&self) -> bool {
        self.tap.is_some()
    }
}

impl AsFd for Subscriber {
    fn as_fd(&self) -> BorrowedFd<'_> {
        self.stream.as_fd()
    }
}

impl AsRawFd for Subscriber {
    fn as_raw_fd(&self) -> RawFd {
        self.stream.as_raw_fd()
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::os::unix::net::UnixListener;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use super::*;
    use crate::protocol::{Crc, FrameBuilder, RelayNotice, notice, registry};

    fn data(source: u8, sequence: u64) -> Vec<u8> {
        let mut buf = vec![0; 64];
        let mut builder = FrameBuilder::new(&mut buf, RelayDomain::MarketData, source).unwrap();
        builder.tlv(200, &[1, 2, 3]).unwrap();
        let len = builder.finish(sequence, 0, Crc::Skip);
        buf.truncate(len);
        buf
    }

    fn dropped(first_sequence: u64, count: u64) -> Vec<u8> {
        let text = format!("dropped={count}");
        let mut value = vec![0; 12 + text.len()];
        RelayNotice { code: notice::DROPPED, sequence: first_sequence, text: &text }
            .emit(&mut value)
            .unwrap();
        let mut buf = vec![0; 64 + value.len()];
        let mut builder = FrameBuilder::new(&mut buf, RelayDomain::System, 0).unwrap();
        builder.tlv(registry::RELAY_NOTICE, &value).unwrap();
        let len = builder.finish(0, 0, Crc::Compute);
        buf.truncate(len);
        buf
    }

    /// A legacy subscriber of a relay that sends `bytes`, then closes the connection.
    fn subscriber_of(bytes: &[u8]) -> Subscriber {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "torq-subscriber-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relay.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let subscriber = Subscriber::connect(&path, SubscriberOptions::legacy()).unwrap();
        listener.accept().unwrap().0.write_all(bytes).unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        subscriber
    }

    #[test]
    fn poll_hands_out_the_events_recv_does_whatever_the_limit() {
        let stream = [data(1, 1), data(1, 2), data(1, 5), dropped(9, 4), data(2, 7), data(1, 6), data(2, 10)];
        let expected = vec![
            Event::Frame(data(1, 1)),
            Event::Frame(data(1, 2)),
            Event::Gap { source: 1, expected: 3, received: 5 },
            Event::Frame(data(1, 5)),
            Event::Notice(Notice::Dropped { first_sequence: 9, count: 4 }),
            Event::Frame(data(2, 7)),
            Event::Frame(data(1, 6)),
            Event::Gap { source: 2, expected: 8, received: 10 },
            Event::Frame(data(2, 10)),
        ];
        let bytes = stream.concat();

        let mut subscriber = subscriber_of(&bytes);
        let mut received = Vec::new();
        loop {
            match subscriber.recv_timeout(Duration::from_secs(5)) {
                Ok(Some(event)) => received.push(event.to_owned()),
                Ok(None) => panic!("timed out after {received:?}"),
                Err(Error::Closed { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(received, expected, "recv_timeout");

        for limit in [1, 2, 3, 4096] {
            let mut subscriber = subscriber_of(&bytes);
            let mut received = Vec::new();
            loop {
                let handled = subscriber.wait(Duration::from_secs(5)).and_then(|ready| {
                    assert!(ready, "timed out after {received:?}");
                    subscriber.poll(|event| received.push(event.to_owned()), limit)
                });
                match handled {
                    Ok(handled) => assert!((1..=limit).contains(&handled)),
                    Err(Error::Closed { .. }) => break,
                    Err(e) => panic!("{e}"),
                }
            }
            assert_eq!(received, expected, "poll, limit {limit}");
        }
    }

    #[test]
    fn a_sequence_that_goes_back_is_a_restart_not_a_gap() {
        // Source 2's publisher sends 999 and 1000, starts again at 1; a duplicate of 2 follows.
        let stream = [data(2, 999), data(2, 1000), data(2, 1), data(2, 2), data(2, 2), data(2, 5)];
        let expected = vec![
            Event::Frame(data(2, 999)),
            Event::Frame(data(2, 1000)),
            Event::Restarted { source: 2, expected: 1001, received: 1 },
            Event::Frame(data(2, 1)),
            Event::Frame(data(2, 2)),
            Event::Restarted { source: 2, expected: 3, received: 2 },
            Event::Frame(data(2, 2)),
            Event::Gap { source: 2, expected: 3, received: 5 },
            Event::Frame(data(2, 5)),
        ];
        let mut subscriber = subscriber_of(&stream.concat());
        let mut received = Vec::new();
        loop {
            match subscriber.recv_timeout(Duration::from_secs(5)) {
                Ok(Some(event)) => received.push(event.to_owned()),
                Ok(None) => panic!("timed out after {received:?}"),
                Err(Error::Closed { .. }) => break,
                Err(e) => panic!("{e}"),
            }
        }
        assert_eq!(received, expected);
    }

    #[test]
    fn a_legacy_subscriber_refuses_what_only_a_subscribe_can_say() {
        let path = Path::new("/nonexistent/torq-legacy.sock");
        for (options, asked) in [
            (SubscriberOptions::legacy().filter(Filter::Source(9)), "filters"),
            (SubscriberOptions::legacy().heartbeats().filter(Filter::Source(9)), "heartbeats"),
            (SubscriberOptions::legacy().role(Role::PublishSubscribe), "role"),
        ] {
            // Refused before any connection is tried (the socket does not exist).
            match Subscriber::connect(path, options) {
                Err(e @ Error::Legacy { .. }) => {
                    let text = e.to_string();
                    assert!(text.contains(&format!("takes no {asked}")), "{text}");
                    assert!(text.contains(&path.display().to_string()), "{text}");
                    assert!(text.contains("SubscriberOptions::new()"), "{text}");
                }
                other => panic!("{asked}: expected Error::Legacy, got {other:?}"),
            }
        }
        // Without them a legacy subscriber connects (here: fails to, for want of a relay).
        assert!(matches!(Subscriber::connect(path, SubscriberOptions::legacy()), Err(Error::Connect { .. })));
        // And the filters of a Subscribe are kept.
        let options = SubscriberOptions::new().filter(Filter::Source(9)).role(Role::PublishSubscribe);
        let subscribe = options.subscribe().unwrap();
        assert_eq!(
            (subscribe.role, subscribe.filters.as_slice()),
            (Role::PublishSubscribe, &[Filter::Source(9)][..])
        );
    }

    #[test]
    fn receive_timeouts_end_before_the_deadline_and_take_few_values() {
        assert_eq!(receive_timeout(Duration::ZERO), None);
        assert_eq!(receive_timeout(Duration::from_millis(11)), None);
        assert_eq!(receive_timeout(Duration::from_millis(12)), Some(Duration::from_millis(1)));
        assert_eq!(receive_timeout(Duration::from_millis(2000)), Some(Duration::from_millis(1024)));
        assert_eq!(receive_timeout(Duration::from_micros(1_999_990)), Some(Duration::from_millis(1024)));
        assert!(receive_timeout(Duration::MAX).is_some());
        for ms in 12..5000 {
            let timeout = receive_timeout(Duration::from_millis(ms)).unwrap();
            assert!(timeout.as_millis().is_power_of_two());
            assert!(timeout * 9 / 8 + Duration::from_millis(10) <= Duration::from_millis(ms), "{ms} ms");
        }
    }

    #[test]
    fn wait_ends_at_its_deadline_not_before() {
        let mut subscriber = subscriber_of(&[]);
        // The relay closed without a byte: wait reports it, whatever the timeout.
        assert!(matches!(subscriber.wait(Duration::ZERO), Err(Error::Closed { .. })));

        let dir = std::env::temp_dir().join(format!("torq-subscriber-wait-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("relay.sock");
        let listener = UnixListener::bind(&path).unwrap();
        let mut subscriber = Subscriber::connect(&path, SubscriberOptions::legacy()).unwrap();
        let (mut relay, _) = listener.accept().unwrap();
        std::fs::remove_dir_all(&dir).unwrap();
        for timeout in [Duration::ZERO, Duration::from_millis(5), Duration::from_millis(60)] {
            let start = Instant::now();
            assert!(!subscriber.wait(timeout).unwrap());
            assert!(start.elapsed() >= timeout, "{timeout:?}: {:?}", start.elapsed());
        }
        relay.write_all(&data(1, 1)).unwrap();
        assert!(subscriber.wait(Duration::from_secs(5)).unwrap());
        assert_eq!(subscriber.poll(|_| {}, 10).unwrap(), 1);
        assert_eq!(subscriber.poll(|_| {}, 10).unwrap(), 0);
    }
}
