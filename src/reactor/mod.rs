//! The reactors: I/O only. One mio `Poll` per thread, each driving one [`Shard`] of the relay
//! core: it accepts (reactor 0 owns the listeners and hands connections out round-robin),
//! reads into the core's buffers, appends the audit records the core asks for to the audit
//! files, moves messages between reactors through bounded inboxes and wakers (never a
//! drop point: a full inbox keeps the message and holds this reactor's publishers back), keeps
//! WRITABLE interest in step with the core, and ticks.

use std::collections::VecDeque;
use std::fs::File;
use std::io::{self, IoSlice, Write};
use std::os::fd::{AsFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{
    AtomicBool, AtomicI32, AtomicU64, AtomicUsize, Ordering::Relaxed, Ordering::SeqCst, fence,
};
use std::time::{Duration, Instant};

use crossbeam_channel::{Receiver, Sender, TrySendError, bounded};
use log::{debug, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};

use crate::relays::{
    CloseReason, EngineConfig, Event, Idle, LOG_SHARD, Msg, Now, Peer, RelayContext, RelayLogic, Shard,
    ShardConfig, Sink, Throttle, Wrote,
};
use crate::shm::LogWriter;

pub(crate) mod accept;

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 64;
/// Messages in flight to one reactor, at most.
const INBOX: usize = 4096;
/// How often the core ticks.
const TICK: Duration = Duration::from_millis(100);
/// Idle turns a `backoff` reactor spins, then yields, before it waits in the poll.
const BACKOFF_SPINS: u32 = 1_000;
const BACKOFF_YIELDS: u32 = 100;

/// Reads the clocks once, for the core.
pub(crate) fn now() -> Now {
    let unix_ns =
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
    Now { instant: Instant::now(), unix_ns }
}

/// What every reactor shares.
#[derive(Debug)]
pub(crate) struct Shared {
    inboxes: Vec<Sender<Mail>>,
    wakers: Vec<Arc<Waker>>,
    connections: AtomicUsize,
    /// Whether each reactor is (about to be) asleep in its poll.
    sleeping: Vec<AtomicBool>,
    max_connections: usize,
    stop: AtomicBool,
    /// 0, 3 when frames of a lossless relay were left undelivered, 1 when a reactor failed.
    exit_status: AtomicI32,
    next_connection_id: AtomicU64,
}

impl Shared {
    /// Asks every reactor to stop.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Relaxed);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }

    /// Wakes reactor `target` if it sleeps in its poll: a reactor that is awake (busy, or
    /// spinning) finds its mail without a wake-up, which saves a syscall per batch.
    fn wake(&self, target: usize) {
        fence(SeqCst);
        if self.sleeping[target].load(SeqCst) {
            let _ = self.wakers[target].wake();
        }
    }

    /// Whether a stop was asked for.
    pub(crate) fn stopping(&self) -> bool {
        self.stop.load(Relaxed)
    }

    /// Sets the exit status (the highest wins).
    pub(crate) fn fail(&self, status: i32) {
        self.exit_status.fetch_max(status, Relaxed);
    }

    /// The exit status.
    pub(crate) fn exit_status(&self) -> i32 {
        self.exit_status.load(Relaxed)
    }
}

/// Mail between reactors.
#[derive(Debug)]
enum Mail {
    /// A connection accepted by reactor 0 for this reactor.
    Accept { stream: std::os::unix::net::UnixStream, relay: usize, peer: Peer, id: u64 },
    /// A message of the core.
    Core(Msg),
    /// The sending reactor has stopped and will send no more batches.
    Done,
}

/// A connection's socket as the core sees it, a [`Sink`]; `read_closed` is set when the peer
/// closed its side (read to the end of the stream).
#[derive(Debug)]
pub(crate) struct Socket {
    stream: UnixStream,
    read_closed: bool,
    /// Its relay's broadcast log, read-only, for a connection granted it (PROTOCOL.md §7).
    log: Option<Arc<OwnedFd>>,
}

impl Sink for Socket {
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> Wrote {
        loop {
            match self.stream.write_vectored(bufs) {
                Ok(n) => return Wrote::Bytes(n),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Wrote::Full,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    debug!("write failed: {e}");
                    return Wrote::Gone;
                }
            }
        }
    }

    fn write_with_log(&mut self, bufs: &[IoSlice<'_>]) -> Wrote {
        use rustix::net::{SendAncillaryBuffer, SendAncillaryMessage, SendFlags};
        let Some(log) = self.log.clone() else { return self.write(bufs) };
        let fds = [log.as_fd()];
        let mut space = [std::mem::MaybeUninit::uninit(); rustix::cmsg_space!(ScmRights(1))];
        let mut control = SendAncillaryBuffer::new(&mut space);
        control.push(SendAncillaryMessage::ScmRights(&fds));
        loop {
            match rustix::net::sendmsg(&self.stream, bufs, &mut control, SendFlags::NOSIGNAL) {
                Ok(n) => return Wrote::Bytes(n),
                Err(rustix::io::Errno::AGAIN) => return Wrote::Full,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    debug!("write with the log's descriptor failed: {e}");
                    return Wrote::Gone;
                }
            }
        }
    }
}

/// The reactors of one process, before their threads start.
#[derive(Debug)]
pub(crate) struct Reactors<L: RelayLogic> {
    reactors: Vec<Reactor<L>>,
    shared: Arc<Shared>,
}

impl<L: RelayLogic> Reactors<L> {
    /// One reactor per core of `engine.cores`, serving `relays`; `audits[i]` is the audit
    /// file of relay `i` when it audits, `logs[i]` its broadcast log when it offers one
    /// (written by reactor [`LOG_SHARD`]).
    pub(crate) fn new(
        engine: &EngineConfig,
        relays: Arc<[RelayContext<L>]>,
        audits: Vec<Option<Arc<File>>>,
        logs: Vec<Option<LogWriter>>,
    ) -> io::Result<Self> {
        let mut log_fds = Vec::new();
        for log in &logs {
            log_fds.push(match log {
                Some(log) => Some(Arc::new(log.reader_fd().try_clone_to_owned()?)),
                None => None,
            });
        }
        let log_fds: Arc<[Option<Arc<OwnedFd>>]> = log_fds.into();
        let mut logs = Some(logs);
        let count = engine.cores.count();
        let mut polls = Vec::new();
        let mut wakers = Vec::new();
        let mut inboxes = Vec::new();
        let mut receivers = Vec::new();
        for _ in 0..count {
            let poll = Poll::new()?;
            wakers.push(Arc::new(Waker::new(poll.registry(), WAKER)?));
            polls.push(poll);
            let (sender, receiver) = bounded(INBOX);
            inboxes.push(sender);
            receivers.push(receiver);
        }
        let shared = Arc::new(Shared {
            inboxes,
            wakers,
            connections: AtomicUsize::new(0),
            sleeping: (0..count).map(|_| AtomicBool::new(false)).collect(),
            max_connections: engine.max_connections,
            stop: AtomicBool::new(false),
            exit_status: AtomicI32::new(0),
            next_connection_id: AtomicU64::new(1),
        });
        let audits: Arc<[Option<Arc<File>>]> = audits.into();
        let reactors = polls
            .into_iter()
            .zip(receivers)
            .enumerate()
            .map(|(index, (poll, inbox))| {
                let shard = ShardConfig {
                    index,
                    shards: count,
                    read_budget: engine.read_budget,
                    stall_timeout: engine.stall_timeout,
                };
                Reactor {
                    index,
                    poll,
                    shared: Arc::clone(&shared),
                    inbox,
                    shard: {
                        let mut shard = Shard::new(shard, Arc::clone(&relays));
                        if index == LOG_SHARD {
                            for (relay, log) in logs.take().into_iter().flatten().enumerate() {
                                if let Some(log) = log {
                                    shard.attach_log(relay, log);
                                }
                            }
                        }
                        shard
                    },
                    audits: Arc::clone(&audits),
                    log_fds: Arc::clone(&log_fds),
                    read_budget: engine.read_budget,
                    socket_buffer: engine.socket_buffer,
                    flush_deadline: engine.flush_deadline,
                    idle: engine.idle,
                    listeners: Vec::new(),
                    ready: VecDeque::new(),
                    pending: (0..count).map(|_| VecDeque::new()).collect(),
                    next_target: 0,
                    waiting: Vec::new(),
                    stop_deadline: None,
                    done_from: 0,
                    accept_retry: false,
                    accept_log: Throttle::default(),
                    refusal_log: Throttle::default(),
                    buffer_log: Throttle::default(),
                    buffers_reported: false,
                }
            })
            .collect();
        Ok(Reactors { reactors, shared })
    }

    /// What the reactors share (to stop them, and read the exit status).
    pub(crate) fn shared(&self) -> Arc<Shared> {
        Arc::clone(&self.shared)
    }
}

impl<L: RelayLogic> IntoIterator for Reactors<L> {
    type Item = Reactor<L>;
    type IntoIter = std::vec::IntoIter<Reactor<L>>;

    fn into_iter(self) -> Self::IntoIter {
        self.reactors.into_iter()
    }
}

/// One reactor thread.
pub(crate) struct Reactor<L: RelayLogic> {
    index: usize,
    poll: Poll,
    shared: Arc<Shared>,
    inbox: Receiver<Mail>,
    shard: Shard<L, Socket>,
    /// The audit file of each relay that audits.
    audits: Arc<[Option<Arc<File>>]>,
    /// The read-only descriptor of each relay's broadcast log.
    log_fds: Arc<[Option<Arc<OwnedFd>>]>,
    read_budget: usize,
    /// `SO_SNDBUF` and `SO_RCVBUF` asked for every accepted connection (reactor 0 accepts).
    socket_buffer: Option<usize>,
    flush_deadline: Duration,
    idle: Idle,
    listeners: Vec<(UnixListener, usize)>,
    /// Connections to read without waiting for an event (mio is edge-triggered).
    ready: VecDeque<usize>,
    /// Mail for other reactors that did not fit their inbox, in order.
    pending: Vec<VecDeque<Mail>>,
    next_target: usize,
    /// Publishers not read while mail was pending; read again once nothing is pending.
    waiting: Vec<usize>,
    stop_deadline: Option<Instant>,
    done_from: usize,
    /// An accept failed (e.g. EMFILE): try again at the next tick.
    accept_retry: bool,
    accept_log: Throttle,
    refusal_log: Throttle,
    /// Socket buffers that could not be set.
    buffer_log: Throttle,
    /// Whether what the kernel gave for the socket buffers was logged (once a process: the
    /// kernel's rule is the same for every connection).
    buffers_reported: bool,
}

impl<L: RelayLogic> std::fmt::Debug for Reactor<L> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").field("index", &self.index).field("connections", &self.shard.len()).finish()
    }
}

impl<L: RelayLogic> Reactor<L> {
    /// Adds a listener of relay `relay` (reactor 0 only).
    pub(crate) fn listen(
        &mut self,
        std_listener: std::os::unix::net::UnixListener,
        relay: usize,
    ) -> io::Result<()> {
        std_listener.set_nonblocking(true)?;
        let mut listener = UnixListener::from_std(std_listener);
        let token = Token(LISTENER_BASE + self.listeners.len());
        self.poll.registry().register(&mut listener, token, Interest::READABLE)?;
        self.listeners.push((listener, relay));
        Ok(())
    }

    /// Runs until stopped and flushed.
    pub(crate) fn run(mut self) {
        let mut events = Events::with_capacity(1024);
        let mut last_tick = Instant::now();
        // Turns in a row that found nothing to do (for the back-off strategy).
        let mut idle_turns = 0u32;
        loop {
            let mut timeout = self.poll_timeout(idle_turns);
            // A reactor about to sleep says so, so that its peers wake it: and a peer that sent
            // before seeing the flag left mail in the inbox, which then ends the sleep at once.
            let sleeps = !timeout.is_zero();
            if sleeps {
                self.shared.sleeping[self.index].store(true, SeqCst);
                fence(SeqCst);
                if !self.inbox.is_empty() {
                    timeout = Duration::ZERO;
                }
            }
            if let Err(e) = self.poll.poll(&mut events, Some(timeout))
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!("reactor {}: poll failed: {e}", self.index);
            }
            if sleeps {
                self.shared.sleeping[self.index].store(false, SeqCst);
            }
            let busy = !events.is_empty() || !self.inbox.is_empty() || !self.ready.is_empty();
            idle_turns = if busy { 0 } else { idle_turns.saturating_add(1) };
            if !self.waiting.is_empty() && self.pending.iter().all(VecDeque::is_empty) {
                self.ready.extend(self.waiting.drain(..));
            }
            for event in &events {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(t) => {
                        if (event.is_read_closed() || event.is_error())
                            && let Some(conn) = self.shard.connection_mut(t)
                        {
                            conn.socket_mut().read_closed = true;
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.ready.push_back(t);
                        }
                        if event.is_writable() {
                            self.shard.flush(t, now());
                            self.apply();
                        }
                    }
                }
            }
            self.drain_inbox();
            self.read_ready();
            self.send_pending();
            self.wake_log_readers();
            if self.shared.stopping() && self.stop_deadline.is_none() {
                self.begin_stop();
            }
            if last_tick.elapsed() >= TICK {
                last_tick = Instant::now();
                let now = now();
                self.shard.tick(now);
                write_audit(&mut self.shard, &self.audits, now);
                self.apply();
                if std::mem::take(&mut self.accept_retry) {
                    for index in 0..self.listeners.len() {
                        self.accept(index);
                    }
                }
            }
            if self.stop_deadline.is_some() && self.finished() {
                break;
            }
        }
        if self.shard.report_undelivered() {
            self.shared.fail(3);
        }
    }

    /// How long the next poll may wait: not at all with connections ready to read; a
    /// millisecond while mail is pending or the stop flushes; else until the tick — and as
    /// the idle strategy says (`spin` never waits; `backoff` spins, then yields, then waits).
    fn poll_timeout(&self, idle_turns: u32) -> Duration {
        let timeout = if !self.ready.is_empty() {
            Duration::ZERO
        } else if self.pending.iter().any(|p| !p.is_empty())
            || !self.waiting.is_empty()
            || self.stop_deadline.is_some()
        {
            Duration::from_millis(1)
        } else {
            TICK
        };
        match self.idle {
            Idle::Block => timeout,
            Idle::Spin => Duration::ZERO,
            Idle::Backoff if idle_turns < BACKOFF_SPINS => Duration::ZERO,
            Idle::Backoff if idle_turns < BACKOFF_SPINS + BACKOFF_YIELDS => {
                std::thread::yield_now();
                Duration::ZERO
            }
            Idle::Backoff => timeout,
        }
    }

    /// Wakes the readers asleep on the broadcast logs this reactor writes, once per turn that
    /// wrote one (a system call per turn, never per frame; none when nothing was written).
    fn wake_log_readers(&mut self) {
        for (log, metrics) in self.shard.logs_mut() {
            if log.wake() {
                metrics.shm_wakeups.fetch_add(1, Relaxed);
            }
        }
    }

    /// Carries out what the core asked for: reads, interest changes, closed sockets, mail.
    fn apply(&mut self) {
        while let Some(event) = self.shard.poll_event() {
            match event {
                Event::Readable(token) => self.ready.push_back(token),
                Event::Writable(token, writable) => {
                    let interest =
                        if writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
                    if let Some(conn) = self.shard.connection_mut(token) {
                        let _ = self.poll.registry().reregister(
                            &mut conn.socket_mut().stream,
                            Token(token),
                            interest,
                        );
                    }
                }
                Event::Closed { mut socket, .. } => {
                    let _ = self.poll.registry().deregister(&mut socket.stream);
                    self.shared.connections.fetch_sub(1, Relaxed);
                }
            }
        }
        while let Some((target, msg)) = self.shard.poll_message() {
            self.send(target, Mail::Core(msg));
        }
    }

    fn drain_inbox(&mut self) {
        while let Ok(mail) = self.inbox.try_recv() {
            self.receive(mail);
        }
    }

    fn receive(&mut self, mail: Mail) {
        match mail {
            Mail::Accept { stream, relay, peer, id } => self.register(stream, relay, peer, id),
            Mail::Core(msg) => {
                self.shard.handle(msg, now());
                self.apply();
            }
            Mail::Done => self.done_from += 1,
        }
    }

    /// Sends mail to a reactor, keeping it (in order) when the inbox is full.
    fn send(&mut self, target: usize, mail: Mail) {
        if target == self.index {
            return self.receive(mail);
        }
        if !self.pending[target].is_empty() {
            self.pending[target].push_back(mail);
            return;
        }
        match self.shared.inboxes[target].try_send(mail) {
            Ok(()) => self.shared.wake(target),
            Err(TrySendError::Full(mail) | TrySendError::Disconnected(mail)) => {
                self.pending[target].push_back(mail)
            }
        }
    }

    fn send_pending(&mut self) {
        for target in 0..self.pending.len() {
            let mut sent = false;
            while let Some(mail) = self.pending[target].pop_front() {
                match self.shared.inboxes[target].try_send(mail) {
                    Ok(()) => sent = true,
                    Err(TrySendError::Full(mail) | TrySendError::Disconnected(mail)) => {
                        self.pending[target].push_front(mail);
                        break;
                    }
                }
            }
            if sent {
                self.shared.wake(target);
            }
        }
    }

    fn read_ready(&mut self) {
        for _ in 0..self.ready.len() {
            let Some(token) = self.ready.pop_front() else { break };
            if self.read(token) {
                self.ready.push_back(token);
            }
        }
    }

    /// Reads one connection up to the read budget and hands what it read to the core. Returns
    /// whether it should be read again without waiting for an event.
    fn read(&mut self, token: usize) -> bool {
        if !self.shard.may_read(token) {
            return false;
        }
        // A full inbox of another reactor holds this reactor's publishers back until it drains
        // (retried every millisecond).
        if self.pending.iter().any(|p| !p.is_empty()) {
            self.waiting.push(token);
            return false;
        }
        let budget = self.read_budget;
        let Some(conn) = self.shard.connection_mut(token) else { return false };
        let id = conn.id();
        let (socket, buffer) = conn.read_buffer(budget);
        let (mut read, mut more, mut eof) = (0, false, false);
        // Reads go into the spare capacity (no zeroing, no copy): one call normally takes
        // everything the socket holds; a peer that has closed is read on to the end of its
        // stream, within the budget.
        while buffer.len() < buffer.capacity() {
            let room = buffer.capacity() - buffer.len();
            match rustix::io::read(&socket.stream, rustix::buffer::spare_capacity(buffer)) {
                Ok(0) => {
                    eof = true;
                    break;
                }
                Ok(n) => {
                    read += n;
                    if n == room || read >= budget {
                        more = true;
                        break;
                    }
                    if !socket.read_closed {
                        // A short read took everything the socket held; new bytes raise a new
                        // readiness edge, so the extra read that would say WouldBlock is skipped.
                        // mio's contract asks for draining until WouldBlock; this relies on
                        // what Linux's epoll does for a Unix stream socket (every arrival of
                        // data raises EPOLLIN again, edge-triggered or not), and the relay
                        // runs on Linux only. On another platform, read on to WouldBlock.
                        break;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    debug!("connection {id}: read failed: {e}");
                    eof = true;
                    break;
                }
            }
        }
        if read > 0 {
            self.take_in(token);
        }
        if eof {
            self.shard.close(token, CloseReason::PeerClosed);
            self.apply();
            return false;
        }
        more && self.shard.connection(token).is_some()
    }

    /// Hands what a connection read to the core, and writes the audit records it owes.
    fn take_in(&mut self, token: usize) {
        let now = now();
        self.shard.intake(token, now);
        write_audit(&mut self.shard, &self.audits, now);
        self.apply();
    }

    fn begin_stop(&mut self) {
        self.stop_deadline = Some(Instant::now() + self.flush_deadline);
        for (mut listener, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        self.shard.begin_stop(now());
        self.apply();
        for target in 0..self.shared.inboxes.len() {
            if target != self.index {
                self.send(target, Mail::Done);
            }
        }
    }

    /// Whether a stopping reactor may exit: every peer is done, nothing is left to send, and
    /// every queue is flushed (or the deadline passed).
    fn finished(&self) -> bool {
        let peers_done = self.done_from + 1 >= self.shared.inboxes.len();
        let nothing_pending = self.pending.iter().all(VecDeque::is_empty);
        let late = self.stop_deadline.is_some_and(|d| Instant::now() >= d);
        (peers_done && nothing_pending && self.shard.flushed()) || late
    }
}

/// Appends what the core asks for to the audit files (`files[relay]`; PROTOCOL.md §6: a record
/// is written, at least to the page cache, before its frame is delivered), and tells the core
/// what became of each write.
fn write_audit<L: RelayLogic, S: Sink>(shard: &mut Shard<L, S>, files: &[Option<Arc<File>>], now: Now) {
    loop {
        let result = match shard.poll_audit(now) {
            None => return,
            Some((relay, bytes)) => match files.get(relay).and_then(Option::as_ref) {
                Some(file) => match (&**file).write(bytes) {
                    Ok(0) => Err(io::ErrorKind::WriteZero.into()),
                    Err(e) if e.kind() == io::ErrorKind::Interrupted => Ok(0),
                    result => result,
                },
                // The start-up opens a file for every relay that audits.
                None => Err(io::Error::other("no audit file is open for this relay")),
            },
        };
        match result {
            Ok(n) => shard.audit_written(n, now),
            Err(e) => return shard.audit_failed(&e, now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rustix::net::sockopt;

    /// What `accept` calls on every connection when `transport.buffer_size` is set: the
    /// kernel's sizes, read back independently, are at least those asked (Linux doubles them).
    #[test]
    fn socket_buffers_are_set_on_a_connected_socket() {
        let (relay_side, _client_side) = std::os::unix::net::UnixStream::pair().unwrap();
        let mut given = Vec::new();
        for size in [16384, 131072] {
            let (send, receive) = accept::set_socket_buffers(&relay_side, size).unwrap();
            assert_eq!(
                (send, receive),
                (
                    sockopt::socket_send_buffer_size(&relay_side).unwrap(),
                    sockopt::socket_recv_buffer_size(&relay_side).unwrap()
                ),
                "what it returns is what the socket has"
            );
            assert!(send >= size && receive >= size, "asked {size}, got {send} and {receive}");
            given.push((send, receive));
        }
        // Whatever the kernel's default: a larger size asked gives larger buffers.
        assert!(given[0].0 < given[1].0 && given[0].1 < given[1].1, "{given:?}");
    }

    /// A connection's way out in memory.
    #[derive(Debug, Default)]
    struct Written(Vec<u8>);

    impl Sink for Written {
        fn write(&mut self, bufs: &[IoSlice<'_>]) -> Wrote {
            let before = self.0.len();
            bufs.iter().for_each(|b| self.0.extend_from_slice(b));
            Wrote::Bytes(self.0.len() - before)
        }

        fn write_with_log(&mut self, bufs: &[IoSlice<'_>]) -> Wrote {
            self.write(bufs)
        }
    }

    /// The reactor's half of the audit contract, over real files: a full disk holds the
    /// frames and fails the relay closed; the retry a second later writes the same records and
    /// releases them.
    #[test]
    fn audit_records_are_written_to_the_file_before_their_frames_go_anywhere() {
        use crate::protocol::{Crc, FrameBuilder, RelayDomain};
        use crate::relays::{ExecutionLogic, Peer, RelayConfig};
        let relays: Arc<[RelayContext<ExecutionLogic>]> =
            vec![RelayContext::new(ExecutionLogic, RelayConfig::new(&ExecutionLogic.defaults()))].into();
        let config =
            ShardConfig { index: 0, shards: 1, read_budget: 65536, stall_timeout: Duration::from_secs(5) };
        let mut shard: Shard<_, Written> = Shard::new(config, Arc::clone(&relays));
        let peer = Peer { pid: Some(1), uid: 1000, gid: 1000 };
        let start = now();
        let subscriber = shard.insert(Written::default(), 0, peer, 1, start);
        let publisher = shard.insert(Written::default(), 0, peer, 2, start);
        let mut order = vec![0; 128];
        let mut builder = FrameBuilder::new(&mut order, RelayDomain::Execution, 20).unwrap();
        builder.tlv(40, &[7; 48]).unwrap();
        let len = builder.finish(1, 1, Crc::Compute);
        shard.connection_mut(publisher).unwrap().read_buffer(65536).1.extend_from_slice(&order[..len]);
        shard.intake(publisher, start);

        let full: Vec<Option<Arc<File>>> =
            vec![Some(Arc::new(File::options().write(true).open("/dev/full").unwrap()))];
        write_audit(&mut shard, &full, start);
        assert_eq!(relays[0].metrics.audit_failing.load(Relaxed), 1);
        assert!(shard.connection(subscriber).unwrap().socket.0.is_empty(), "held, not delivered");
        assert!(!shard.may_read(publisher), "fails closed");
        assert!(shard.poll_audit(start).is_none(), "the retry waits a second");

        let path = std::env::temp_dir().join(format!("torq-reactor-audit-{}", std::process::id()));
        let file = File::options().create(true).truncate(true).read(true).write(true).open(&path).unwrap();
        let later = Now { instant: start.instant + Duration::from_secs(1), unix_ns: start.unix_ns };
        write_audit(&mut shard, &[Some(Arc::new(file))], later);
        let lines = std::fs::read_to_string(&path).unwrap();
        std::fs::remove_file(&path).unwrap();
        assert_eq!(lines.lines().count(), 1, "{lines}");
        assert!(lines.contains(" accepted source=20 sequence=1 "), "{lines}");
        assert_eq!(shard.connection(subscriber).unwrap().socket.0, order[..len], "released once written");
        assert_eq!(relays[0].metrics.audit_failing.load(Relaxed), 0);
        assert!(shard.may_read(publisher));
    }
}
