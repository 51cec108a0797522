//! The reactors: one mio `Poll` per thread, each owning a slab of connections. Reactor 0 also
//! owns the listeners and hands accepted connections out round-robin. A reactor reads a
//! publisher up to the read budget, frames and judges what it read, and fans the accepted
//! frames out — to its own subscribers directly, to the other reactors as one shared batch
//! through their bounded inboxes (never a drop point: a full inbox keeps the batch and
//! pauses this reactor's publishers).

pub mod socket;

use std::collections::VecDeque;
use std::io::{self, IoSlice, Write};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicI32, AtomicUsize, Ordering::Relaxed};
use std::time::{Duration, Instant};

use bytes::Bytes;
use crossbeam_channel::{Receiver, Sender, TrySendError};
use log::{debug, info, warn};
use mio::net::{UnixListener, UnixStream};
use mio::{Events, Interest, Poll, Token, Waker};
use slab::Slab;

use crate::protocol::{Crc, FrameBuilder, Framing, Header, Heartbeat, RelayDomain, frame};
use crate::relays::session::{self, Consumed, Session, Verdict};
use crate::relays::{EngineConfig, Metrics, Policy, Reason, RelayConfig, audit};
use socket::Peer;

const WAKER: Token = Token(usize::MAX);
const LISTENER_BASE: usize = usize::MAX - 64;
/// Ticks (100 ms each) without a read after which an empty read buffer is released.
const IDLE_TICKS: u8 = 10;
/// Notices queued to one connection beyond which rejections and drops are merged into counts.
const MAX_PENDING_NOTICES: usize = 16;

/// One relay (domain) as the reactors see it.
#[derive(Debug)]
pub(crate) struct RelayShared {
    pub(crate) config: RelayConfig,
    pub(crate) metrics: Arc<Metrics>,
    pub(crate) audit: Option<Sender<Vec<audit::Record>>>,
}

/// What every reactor shares.
#[derive(Debug)]
pub(crate) struct Shared {
    pub(crate) engine: EngineConfig,
    pub(crate) relays: Vec<RelayShared>,
    pub(crate) inboxes: Vec<Sender<Msg>>,
    pub(crate) wakers: Vec<Arc<Waker>>,
    pub(crate) connections: AtomicUsize,
    pub(crate) stop: AtomicBool,
    /// 0, or 3 when execution frames were left undelivered at the stop deadline.
    pub(crate) exit_status: AtomicI32,
    pub(crate) next_connection_id: std::sync::atomic::AtomicU64,
}

impl Shared {
    /// Asks every reactor to stop.
    pub(crate) fn request_stop(&self) {
        self.stop.store(true, Relaxed);
        for waker in &self.wakers {
            let _ = waker.wake();
        }
    }
}

/// A publisher connection, named across reactors.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublisherId {
    reactor: usize,
    token: usize,
    id: u64,
}

/// Messages between reactors.
#[derive(Debug)]
pub(crate) enum Msg {
    /// A connection accepted by reactor 0 for this reactor.
    Accept { stream: std::os::unix::net::UnixStream, relay: usize, peer: Peer, id: u64 },
    /// Accepted frames of one publisher read.
    Batch(Arc<Batch>),
    /// Stop reading this publisher until as many `Resume`s arrive.
    Pause(PublisherId),
    /// Undo one `Pause`.
    Resume(PublisherId),
    /// The sending reactor has stopped and will send no more batches.
    Done,
}

/// Accepted data frames of one read of one publisher, in one shared buffer.
#[derive(Debug)]
pub(crate) struct Batch {
    relay: usize,
    publisher: PublisherId,
    bytes: Bytes,
    /// Bytes of memory `bytes` keeps alive (its allocation, at most twice its length).
    alloc: usize,
    frames: Vec<Meta>,
}

/// One accepted frame inside a batch.
#[derive(Debug, Clone, Copy)]
struct Meta {
    offset: u32,
    len: u32,
}

/// Bytes queued to a subscriber.
#[derive(Debug)]
struct Out {
    data: Bytes,
    /// Bytes counted against the queue bound for this entry (the whole shared buffer for the
    /// first slice of a batch, 0 for its other slices and for notices).
    charge: usize,
    /// Data frames in the entry (0 for notices and heartbeats).
    frames: u32,
}

#[derive(Debug)]
struct Conn {
    stream: UnixStream,
    relay: usize,
    id: u64,
    peer: Peer,
    session: Session,
    /// What was read and not yet handed on (at most a partial frame between reads); reads go
    /// straight into its spare capacity, and a mostly full buffer becomes a batch as it is.
    rbuf: Vec<u8>,
    /// Ticks since the last read; an empty read buffer is released after a second of them.
    idle_ticks: u8,
    out: VecDeque<Out>,
    /// Bytes of the front entry already written.
    written: usize,
    /// Sum of the charges of the queued entries.
    queued: usize,
    notices_queued: usize,
    /// Rejections and drops merged into counts while too many notices were queued.
    merged_rejects: u64,
    merged_drops: u64,
    /// Frames dropped since the last notice 4, and the first dropped sequence.
    dropped: (u64, u64),
    writable_interest: bool,
    /// Pauses in force on this publisher.
    paused: u32,
    /// Publishers paused on this subscriber's account, and since when.
    blocking: Vec<PublisherId>,
    /// When publishers were paused on this subscriber's account, within the last two stall
    /// windows (the last interval is open while they still are).
    blocked: VecDeque<(Instant, Option<Instant>)>,
    close: Option<&'static str>,
    /// The peer closed its side: read to the end of the stream.
    read_closed: bool,
    /// The peer stopped reading (a write failed): nothing more is queued to it, but what it
    /// sent before closing is still read and forwarded.
    write_dead: bool,
    last_sent: Instant,
    frames_sent: u64,
    last_reject_log: Option<Instant>,
    /// Reasons (bit = index in the reason tokens) already logged once on this connection.
    reasons_logged: u64,
}

/// One reactor thread.
pub(crate) struct Reactor {
    index: usize,
    poll: Poll,
    shared: Arc<Shared>,
    inbox: Receiver<Msg>,
    conns: Slab<Conn>,
    listeners: Vec<(UnixListener, usize)>,
    ready: VecDeque<usize>,
    /// Messages for other reactors that did not fit their inbox, in order.
    pending: Vec<VecDeque<Msg>>,
    next_target: usize,
    /// Publishers not read while `pending` was not empty or the audit channel was full; read
    /// again on the next turn once `pending` is empty.
    parked: Vec<usize>,
    stopping: bool,
    done_from: usize,
    stop_deadline: Option<Instant>,
    scratch: Vec<u8>,
    /// Reused by `deliver`: the subscribers it queued to, and one subscriber's runs of
    /// consecutive frames (start, end, frames).
    touched: Vec<usize>,
    runs: Vec<(usize, usize, u32)>,
}

impl std::fmt::Debug for Reactor {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Reactor").field("index", &self.index).field("connections", &self.conns.len()).finish()
    }
}

impl Reactor {
    pub(crate) fn new(index: usize, poll: Poll, shared: Arc<Shared>, inbox: Receiver<Msg>) -> Self {
        let reactors = shared.inboxes.len();
        Reactor {
            index,
            poll,
            shared,
            inbox,
            conns: Slab::new(),
            listeners: Vec::new(),
            ready: VecDeque::new(),
            pending: (0..reactors).map(|_| VecDeque::new()).collect(),
            next_target: 0,
            parked: Vec::new(),
            stopping: false,
            done_from: 0,
            stop_deadline: None,
            scratch: vec![0; 1024],
            touched: Vec::new(),
            runs: Vec::new(),
        }
    }

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
        loop {
            let timeout = if !self.ready.is_empty() {
                Some(Duration::ZERO)
            } else if self.pending.iter().any(|p| !p.is_empty()) || !self.parked.is_empty() || self.stopping {
                Some(Duration::from_millis(1))
            } else {
                Some(Duration::from_millis(100))
            };
            if let Err(e) = self.poll.poll(&mut events, timeout)
                && e.kind() != io::ErrorKind::Interrupted
            {
                warn!("reactor {}: poll failed: {e}", self.index);
            }
            if !self.parked.is_empty() && self.pending.iter().all(VecDeque::is_empty) {
                self.ready.extend(self.parked.drain(..));
            }
            for event in &events {
                match event.token() {
                    WAKER => {}
                    Token(t) if t >= LISTENER_BASE => self.accept(t - LISTENER_BASE),
                    Token(t) => {
                        if (event.is_read_closed() || event.is_error())
                            && let Some(conn) = self.conns.get_mut(t)
                        {
                            conn.read_closed = true;
                        }
                        if event.is_readable() || event.is_read_closed() || event.is_error() {
                            self.ready.push_back(t);
                        }
                        if event.is_writable() {
                            self.flush(t);
                        }
                    }
                }
            }
            self.drain_inbox();
            self.read_ready();
            self.send_pending();
            if self.shared.stop.load(Relaxed) && !self.stopping {
                self.begin_stop();
            }
            if last_tick.elapsed() >= Duration::from_millis(100) {
                last_tick = Instant::now();
                self.tick();
            }
            if self.stopping && self.finished() {
                break;
            }
        }
        self.report_undelivered();
    }

    fn accept(&mut self, index: usize) {
        loop {
            let Some((listener, relay)) = self.listeners.get(index) else { return };
            let relay = *relay;
            let (stream, _) = match listener.accept() {
                Ok(pair) => pair,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    warn!("{}: accept failed: {e}", self.shared.relays[relay].config.name);
                    return;
                }
            };
            let shared = &self.shared.relays[relay];
            let metrics = &shared.metrics;
            let peer = match socket::peer_credentials(&stream) {
                Ok(peer) => peer,
                Err(e) => {
                    warn!("{}: cannot read peer credentials, closing: {e}", shared.config.name);
                    continue;
                }
            };
            let config = &shared.config;
            let uid_ok = config.connect_uids.as_ref().is_none_or(|uids| uids.contains(&peer.uid));
            let gid_ok = config.connect_gids.as_ref().is_none_or(|gids| gids.contains(&peer.gid));
            if !uid_ok || !gid_ok {
                warn!("{}: connection from {peer} refused: outside the connect allow-list", config.name);
                metrics.connections_refused.fetch_add(1, Relaxed);
                continue;
            }
            if self.shared.connections.fetch_add(1, Relaxed) >= self.shared.engine.max_connections {
                self.shared.connections.fetch_sub(1, Relaxed);
                warn!(
                    "{}: connection from {peer} refused: max_connections {} reached",
                    config.name, self.shared.engine.max_connections
                );
                metrics.connections_refused.fetch_add(1, Relaxed);
                continue;
            }
            let id = self.shared.next_connection_id.fetch_add(1, Relaxed);
            info!("{}: connection {id} from {peer}", config.name);
            metrics.connections.fetch_add(1, Relaxed);
            metrics.connections_total.fetch_add(1, Relaxed);
            let target = self.next_target % self.shared.inboxes.len();
            self.next_target += 1;
            let std_stream = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(stream));
            if target == self.index {
                self.register(std_stream, relay, peer, id);
            } else {
                let msg = Msg::Accept { stream: std_stream, relay, peer, id };
                self.send(target, msg);
            }
        }
    }

    fn register(&mut self, stream: std::os::unix::net::UnixStream, relay: usize, peer: Peer, id: u64) {
        let _ = stream.set_nonblocking(true);
        let mut stream = UnixStream::from_std(stream);
        let entry = self.conns.vacant_entry();
        let token = entry.key();
        if let Err(e) = self.poll.registry().register(&mut stream, Token(token), Interest::READABLE) {
            warn!("connection {id}: cannot register: {e}");
            self.shared.connections.fetch_sub(1, Relaxed);
            self.shared.relays[relay].metrics.connections.fetch_sub(1, Relaxed);
            return;
        }
        let config = &self.shared.relays[relay].config;
        entry.insert(Conn {
            stream,
            relay,
            id,
            peer,
            session: Session::new(config, peer.uid),
            rbuf: Vec::new(),
            idle_ticks: 0,
            out: VecDeque::new(),
            written: 0,
            queued: 0,
            notices_queued: 0,
            merged_rejects: 0,
            merged_drops: 0,
            dropped: (0, 0),
            writable_interest: false,
            paused: 0,
            blocking: Vec::new(),
            blocked: VecDeque::new(),
            close: None,
            read_closed: false,
            write_dead: false,
            last_sent: Instant::now(),
            frames_sent: 0,
            last_reject_log: None,
            reasons_logged: 0,
        });
        self.ready.push_back(token);
    }

    fn drain_inbox(&mut self) {
        while let Ok(msg) = self.inbox.try_recv() {
            match msg {
                Msg::Accept { stream, relay, peer, id } => self.register(stream, relay, peer, id),
                Msg::Batch(batch) => self.deliver(&batch, None),
                Msg::Pause(publisher) => self.pause(publisher),
                Msg::Resume(publisher) => self.resume(publisher),
                Msg::Done => self.done_from += 1,
            }
        }
    }

    fn pause(&mut self, publisher: PublisherId) {
        if let Some(conn) = self.conns.get_mut(publisher.token)
            && conn.id == publisher.id
        {
            conn.paused += 1;
        }
    }

    fn resume(&mut self, publisher: PublisherId) {
        if let Some(conn) = self.conns.get_mut(publisher.token)
            && conn.id == publisher.id
        {
            conn.paused = conn.paused.saturating_sub(1);
            if conn.paused == 0 {
                self.ready.push_back(publisher.token);
            }
        }
    }

    /// Sends a message to another reactor, keeping it (in order) when the inbox is full.
    fn send(&mut self, target: usize, msg: Msg) {
        if target == self.index {
            match msg {
                Msg::Pause(p) => self.pause(p),
                Msg::Resume(p) => self.resume(p),
                Msg::Accept { stream, relay, peer, id } => self.register(stream, relay, peer, id),
                Msg::Batch(batch) => self.deliver(&batch, None),
                Msg::Done => self.done_from += 1,
            }
            return;
        }
        if !self.pending[target].is_empty() {
            self.pending[target].push_back(msg);
            return;
        }
        match self.shared.inboxes[target].try_send(msg) {
            Ok(()) => {
                let _ = self.shared.wakers[target].wake();
            }
            Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => {
                self.pending[target].push_back(msg)
            }
        }
    }

    fn send_pending(&mut self) {
        for target in 0..self.pending.len() {
            let mut sent = false;
            while let Some(msg) = self.pending[target].pop_front() {
                match self.shared.inboxes[target].try_send(msg) {
                    Ok(()) => sent = true,
                    Err(TrySendError::Full(msg) | TrySendError::Disconnected(msg)) => {
                        self.pending[target].push_front(msg);
                        break;
                    }
                }
            }
            if sent {
                let _ = self.shared.wakers[target].wake();
            }
        }
    }

    fn read_ready(&mut self) {
        let rounds = self.ready.len();
        for _ in 0..rounds {
            let Some(token) = self.ready.pop_front() else { break };
            if self.read(token) {
                self.ready.push_back(token);
            }
        }
    }

    /// Reads one connection up to the read budget and handles what it read. Returns whether
    /// it should be read again without waiting for an event.
    fn read(&mut self, token: usize) -> bool {
        let blocked = self.pending.iter().any(|p| !p.is_empty());
        let budget = self.shared.engine.read_budget;
        let Some(conn) = self.conns.get_mut(token) else { return false };
        if conn.close.is_some() || conn.paused > 0 || self.stopping {
            return false;
        }
        // A full inbox of another reactor, or a full audit channel, holds this reactor's
        // publishers until it drains (retried every millisecond).
        let audit_full = self.shared.relays[conn.relay].audit.as_ref().is_some_and(Sender::is_full);
        if blocked || audit_full {
            self.parked.push(token);
            return false;
        }
        // Room for a budget of bytes, or for the rest of a partial frame whose header says it is
        // larger (at most `max_message_size`, which framing has checked); allocated on the first
        // read, so a connection that never sends holds none.
        let partial = Header::view(&conn.rbuf).map_or(0, |h| h.frame_len() as usize);
        let want = budget.max(partial.saturating_sub(conn.rbuf.len()));
        if conn.rbuf.capacity() - conn.rbuf.len() < want / 2 {
            conn.rbuf.reserve_exact(want);
        }
        let mut read = 0;
        let mut more = false;
        let mut eof = false;
        // Reads go into the spare capacity (no zeroing, no copy): one call normally takes
        // everything the socket holds; a peer that has closed is read on to the end of its
        // stream, within the budget.
        while conn.rbuf.len() < conn.rbuf.capacity() {
            let room = conn.rbuf.capacity() - conn.rbuf.len();
            match rustix::io::read(&conn.stream, rustix::buffer::spare_capacity(&mut conn.rbuf)) {
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
                    if !conn.read_closed {
                        // A short read took everything the socket held; new bytes raise a new
                        // readiness edge, so the extra read that would say WouldBlock is skipped.
                        break;
                    }
                }
                Err(rustix::io::Errno::AGAIN) => break,
                Err(rustix::io::Errno::INTR) => {}
                Err(e) => {
                    debug!("connection {}: read failed: {e}", conn.id);
                    eof = true;
                    break;
                }
            }
        }
        if read > 0 {
            conn.idle_ticks = 0;
            self.handle_frames(token);
        }
        if eof {
            self.close(token, "peer closed");
            return false;
        }
        more && self.conns.get(token).is_some_and(|c| c.close.is_none())
    }

    /// Frames and judges what a connection has read; forwards the accepted frames.
    fn handle_frames(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let relay = &self.shared.relays[conn.relay];
        let config = &relay.config;
        let mut frames = Vec::new();
        let mut audit = Vec::new();
        let mut notices: Vec<(u16, u64, String, bool)> = Vec::new();
        let mut pos = 0;
        let mut close = None;
        let auditing = relay.audit.is_some();
        while pos < conn.rbuf.len() && close.is_none() {
            let len = match frame(&conn.rbuf[pos..], config.max_message_size) {
                Ok(Framing::Incomplete(_)) => break,
                Ok(Framing::Frame(len)) => len,
                Err(e) => {
                    let reason = Reason::Frame(e);
                    warn!(
                        "{}: connection {} ({}): protocol error: {reason}; closing",
                        config.name, conn.id, conn.peer
                    );
                    relay.metrics.protocol_errors.fetch_add(1, Relaxed);
                    if conn.session.wants_notices() {
                        notices.push((session::PROTOCOL_ERROR, 0, reason.to_string(), false));
                    }
                    close = Some("protocol error");
                    break;
                }
            };
            let bytes = &conn.rbuf[pos..pos + len];
            // Source and sequence, read only for what logs, notices or audits a frame.
            let ids = || Header::view(bytes).map_or((0, 0), |h| (h.source(), h.sequence()));
            let verdict = conn.session.judge(bytes, config);
            let outcome = match &verdict {
                Verdict::Forward => {
                    frames.push(Meta { offset: pos as u32, len: len as u32 });
                    audit::Outcome::Accepted
                }
                Verdict::Consumed(Consumed::Hello) => audit::Outcome::Hello,
                Verdict::Consumed(Consumed::Subscribe) => {
                    if conn.session.wants_notices() {
                        notices.push((session::SUBSCRIBED, 0, Session::subscribed_text(config), false));
                    }
                    audit::Outcome::Control
                }
                Verdict::Reject { reason, close: close_now } => {
                    let (source, sequence) = ids();
                    relay.metrics.reject(reason.token());
                    // The first of each reason on a connection, then at most one a second.
                    let now = Instant::now();
                    let bit = 1u64 << (crate::relays::reason_index(reason.token()) % 64);
                    let first = conn.reasons_logged & bit == 0;
                    if first
                        || conn
                            .last_reject_log
                            .is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1))
                    {
                        conn.reasons_logged |= bit;
                        conn.last_reject_log = Some(now);
                        warn!(
                            "{}: connection {} ({}) frame rejected: source={source} sequence={sequence} reason={reason}",
                            config.name, conn.id, conn.peer
                        );
                    }
                    // The notice text is built only for a connection that asked for notices:
                    // a flood of bad frames from a legacy client costs no allocation each.
                    if conn.session.wants_notices() {
                        let code = if *reason == Reason::NotAllowed {
                            session::ACCESS_DENIED
                        } else {
                            session::REJECTED
                        };
                        notices.push((code, sequence, reason.to_string(), false));
                    }
                    if *close_now {
                        close = Some("frame rejected");
                    }
                    audit::Outcome::Rejected(reason.token())
                }
                Verdict::ProtocolError(reason) => {
                    let sequence = ids().1;
                    warn!(
                        "{}: connection {} ({}): protocol error: {reason}; closing",
                        config.name, conn.id, conn.peer
                    );
                    relay.metrics.protocol_errors.fetch_add(1, Relaxed);
                    // A malformed Subscribe gets notice 3 whatever its options said.
                    notices.push((session::PROTOCOL_ERROR, sequence, reason.to_string(), true));
                    close = Some("protocol error");
                    audit::Outcome::Rejected(reason.token())
                }
            };
            if auditing {
                let (source, sequence) = ids();
                audit.push(audit::Record {
                    time_ns: session::now_ns(),
                    connection: conn.id,
                    pid: conn.peer.pid.unwrap_or(0),
                    uid: conn.peer.uid,
                    outcome,
                    source,
                    sequence,
                    len: len as u32,
                });
            }
            pos += len;
        }
        if conn.session.sequence_gaps > 0 {
            let now = Instant::now();
            if conn.last_gap_log_due(now) {
                info!(
                    "{}: connection {} has {} sequence gaps so far",
                    config.name, conn.id, conn.session.sequence_gaps
                );
            }
        }
        let mut batch = None;
        let mut handed_on = false;
        if !frames.is_empty() {
            let accepted: u64 = frames.iter().map(|m| u64::from(m.len)).sum();
            relay.metrics.frames_in.fetch_add(frames.len() as u64, Relaxed);
            relay.metrics.bytes_in.fetch_add(accepted, Relaxed);
            // A buffer that is mostly frames is handed on as it is (no copy), the partial frame
            // after them moving to a new one; a small read is copied out of a buffer kept for
            // the next read, so a batch never keeps more than twice its bytes alive.
            handed_on = pos * 2 >= conn.rbuf.capacity();
            let (bytes, alloc) = if handed_on {
                let rest = &conn.rbuf[pos..];
                let mut next = Vec::new();
                if !rest.is_empty() {
                    next.reserve_exact(rest.len() + self.shared.engine.read_budget);
                    next.extend_from_slice(rest);
                }
                let mut full = std::mem::replace(&mut conn.rbuf, next);
                full.truncate(pos);
                let alloc = full.capacity();
                (Bytes::from(full), alloc)
            } else {
                (Bytes::copy_from_slice(&conn.rbuf[..pos]), pos)
            };
            batch = Some(Arc::new(Batch {
                relay: conn.relay,
                publisher: PublisherId { reactor: self.index, token, id: conn.id },
                bytes,
                alloc,
                frames,
            }));
        }
        if !handed_on {
            conn.rbuf.drain(..pos);
        }
        if let (Some(sender), false) = (&relay.audit, audit.is_empty()) {
            // Records are queued before the frames are forwarded. Publishers are not read while
            // the channel is full, so this waits only when several reactors fill it at once.
            if sender.send(audit).is_err() {
                warn!("{}: the audit writer has stopped", config.name);
            }
        }
        if !notices.is_empty() {
            for (code, sequence, text, force) in notices {
                self.notice(token, code, sequence, &text, force);
            }
            self.flush(token);
        }
        if let Some(batch) = batch {
            self.deliver(&batch, Some(token));
            for target in 0..self.shared.inboxes.len() {
                if target != self.index {
                    self.send(target, Msg::Batch(Arc::clone(&batch)));
                }
            }
        }
        if let Some(reason) = close
            && let Some(conn) = self.conns.get_mut(token)
        {
            conn.close = Some(reason);
            self.flush(token);
            self.close(token, reason);
        }
    }

    /// Queues a batch's frames to this reactor's subscribers of its relay.
    fn deliver(&mut self, batch: &Arc<Batch>, origin: Option<usize>) {
        let relay = &self.shared.relays[batch.relay];
        let (policy, bound) = (relay.config.policy, relay.config.queue_bytes);
        let mut touched = std::mem::take(&mut self.touched);
        let mut runs = std::mem::take(&mut self.runs);
        let mut pauses = Vec::new();
        for (token, conn) in self.conns.iter_mut() {
            if conn.relay != batch.relay
                || Some(token) == origin
                || conn.close.is_some()
                || conn.write_dead
                || !conn.session.subscribes()
            {
                continue;
            }
            // Runs of consecutive frames the subscriber takes: one queue entry each.
            let mut run: Option<(usize, usize, u32)> = None;
            runs.clear();
            for meta in &batch.frames {
                let (start, end) = (meta.offset as usize, (meta.offset + meta.len) as usize);
                if !conn.session.wants(&batch.bytes[start..end]) {
                    runs.extend(run.take());
                    continue;
                }
                run = match run {
                    Some((s, e, n)) if e == start => Some((s, end, n + 1)),
                    other => {
                        runs.extend(other);
                        Some((start, end, 1))
                    }
                };
            }
            runs.extend(run);
            let mut charged = false;
            for &(start, end, frames) in &runs {
                // The first slice of the batch is charged the whole shared buffer it keeps
                // alive; a small part of a large buffer is copied instead so it does not pin it.
                let whole = if charged { 0 } else { batch.alloc };
                let copy = (end - start) * 8 < batch.alloc;
                let charge = if copy { end - start } else { whole };
                if conn.queued + charge > bound && !conn.out.is_empty() {
                    // The kernel's socket buffer is the first place to drain to.
                    if write_out(conn, &relay.metrics).is_err() {
                        mark_write_dead(conn);
                        self.ready.push_back(token);
                        break;
                    }
                }
                if conn.queued + charge <= bound {
                    charged |= !copy;
                    conn.push(batch.bytes.slice(start..end), copy, charge, frames, &relay.metrics);
                    continue;
                }
                if policy == Policy::Block {
                    if !conn.blocking.contains(&batch.publisher) {
                        conn.blocking.push(batch.publisher);
                        if conn.blocked.back().is_none_or(|(_, end)| end.is_some()) {
                            conn.blocked.push_back((Instant::now(), None));
                        }
                        relay.metrics.pauses.fetch_add(1, Relaxed);
                        pauses.push(batch.publisher);
                    }
                    charged |= !copy;
                    conn.push(batch.bytes.slice(start..end), copy, charge, frames, &relay.metrics);
                    continue;
                }
                // The run does not fit: drain the queue to the socket, queue (copied) the whole
                // frames that fit in the room left, and go on while the socket takes everything;
                // once it is full too, the policy acts on the rest of the run. One write and one
                // copy per pass, not per frame: a slow consumer must not make dropping costly.
                let frame_len = |offset: usize| {
                    batch
                        .bytes
                        .get(offset..end)
                        .and_then(Header::view)
                        .map_or(end - offset, |h| h.frame_len() as usize)
                };
                let mut offset = start;
                while offset < end {
                    if write_out(conn, &relay.metrics).is_err() {
                        mark_write_dead(conn);
                        self.ready.push_back(token);
                        break;
                    }
                    // The socket took the whole queue: at least one frame fits the empty queue
                    // (queue_bytes >= 2 x max_message_size), so every pass makes progress.
                    let drained = conn.out.is_empty();
                    let mut room = bound.saturating_sub(conn.queued);
                    let (mut fit, mut fit_frames) = (offset, 0);
                    while fit < end {
                        let len = frame_len(fit);
                        if len > room {
                            break;
                        }
                        (room, fit, fit_frames) = (room - len, fit + len, fit_frames + 1);
                    }
                    if fit > offset {
                        conn.push(
                            batch.bytes.slice(offset..fit),
                            true,
                            fit - offset,
                            fit_frames,
                            &relay.metrics,
                        );
                        offset = fit;
                    }
                    if !drained {
                        break;
                    }
                }
                if offset < end && !conn.write_dead {
                    if policy == Policy::Drop {
                        let mut dropped = 0;
                        if conn.dropped.0 == 0 {
                            conn.dropped.1 = sequence_at(&batch.bytes, offset);
                        }
                        while offset < end {
                            offset += frame_len(offset);
                            dropped += 1;
                        }
                        relay.metrics.dropped_frames.fetch_add(dropped, Relaxed);
                        conn.dropped.0 += dropped;
                    } else {
                        relay.metrics.slow_disconnects.fetch_add(1, Relaxed);
                        warn!(
                            "{}: connection {} ({}) disconnected as a slow consumer ({} bytes queued)",
                            relay.config.name, conn.id, conn.peer, conn.queued
                        );
                        conn.close = Some("slow consumer");
                    }
                }
                if conn.close.is_some() || conn.write_dead {
                    break;
                }
            }
            relay.metrics.queue_high_water.fetch_max(conn.queued as u64, Relaxed);
            touched.push(token);
        }
        for publisher in pauses {
            self.send(publisher.reactor, Msg::Pause(publisher));
        }
        for &token in &touched {
            self.flush(token);
            if self.conns.get(token).is_some_and(|c| c.close == Some("slow consumer")) {
                self.close(token, "slow consumer");
            }
        }
        touched.clear();
        self.touched = touched;
        self.runs = runs;
    }

    /// Writes as much of a connection's queue as the socket takes, then keeps its WRITABLE
    /// interest and its paused publishers in step with what is left.
    fn flush(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let relay = &self.shared.relays[conn.relay];
        if write_out(conn, &relay.metrics).is_err() {
            // Read what the peer sent before it went away; the read path closes at EOF.
            mark_write_dead(conn);
            self.ready.push_back(token);
        }
        let want_writable = !conn.out.is_empty();
        if want_writable != conn.writable_interest {
            let interest =
                if want_writable { Interest::READABLE | Interest::WRITABLE } else { Interest::READABLE };
            let _ = self.poll.registry().reregister(&mut conn.stream, Token(token), interest);
            conn.writable_interest = want_writable;
        }
        // A blocked subscriber that drained to half its bound releases its publishers.
        let bound = relay.config.queue_bytes;
        let release = if conn.queued <= bound / 2 && !conn.blocking.is_empty() {
            if let Some((_, end @ None)) = conn.blocked.back_mut() {
                *end = Some(Instant::now());
            }
            std::mem::take(&mut conn.blocking)
        } else {
            Vec::new()
        };
        for publisher in release {
            self.send(publisher.reactor, Msg::Resume(publisher));
        }
    }

    /// Queues a RelayNotice to a connection that asked for them, or to any when `force`d.
    fn notice(&mut self, token: usize, code: u16, sequence: u64, text: &str, force: bool) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        if !conn.session.wants_notices() && !force {
            return;
        }
        let config = &self.shared.relays[conn.relay].config;
        if conn.notices_queued >= MAX_PENDING_NOTICES
            && (code == session::REJECTED || code == session::DROPPED)
        {
            if code == session::REJECTED {
                conn.merged_rejects += 1;
            } else {
                conn.merged_drops += 1;
            }
            return;
        }
        let len = conn.session.notice(config, code, sequence, text, &mut self.scratch);
        conn.notices_queued += 1;
        conn.out.push_back(Out { data: Bytes::copy_from_slice(&self.scratch[..len]), charge: 0, frames: 0 });
    }

    /// Heartbeats, drop notices, merged counts and stalled subscribers.
    fn tick(&mut self) {
        let now = Instant::now();
        let stall = self.shared.engine.stall_timeout;
        let mut work = Vec::new();
        for (token, conn) in &mut self.conns {
            if conn.close.is_some() {
                continue;
            }
            if conn.stalled(now, stall) {
                work.push((token, Work::Stalled));
                continue;
            }
            // A publisher that has sent nothing for a second gives back its read buffer (a
            // read budget each, over hundreds of connections); its next read allocates anew.
            conn.idle_ticks = conn.idle_ticks.saturating_add(1);
            if conn.idle_ticks >= IDLE_TICKS && conn.rbuf.is_empty() && conn.rbuf.capacity() > 0 {
                debug!(
                    "connection {}: idle, read buffer of {} bytes released",
                    conn.id,
                    conn.rbuf.capacity()
                );
                conn.rbuf = Vec::new();
            }
            if conn.dropped.0 > 0 && conn.notices_queued < MAX_PENDING_NOTICES {
                work.push((token, Work::Dropped(conn.dropped)));
                conn.dropped = (0, 0);
            }
            if conn.notices_queued == 0 && (conn.merged_rejects > 0 || conn.merged_drops > 0) {
                work.push((token, Work::Merged(conn.merged_rejects, conn.merged_drops)));
                conn.merged_rejects = 0;
                conn.merged_drops = 0;
            }
            if conn.session.wants_heartbeats()
                && conn.out.is_empty()
                && now.duration_since(conn.last_sent) >= Duration::from_secs(1)
            {
                work.push((token, Work::Heartbeat(conn.frames_sent)));
                conn.last_sent = now;
            }
        }
        for (token, work) in work {
            match work {
                Work::Stalled => {
                    let (relay, (lost, first, last)) = {
                        let conn = &self.conns[token];
                        (conn.relay, conn.undelivered())
                    };
                    let range = (first, last);
                    let metrics = &self.shared.relays[relay].metrics;
                    metrics.slow_disconnects.fetch_add(1, Relaxed);
                    metrics.dropped_frames.fetch_add(lost, Relaxed);
                    warn!(
                        "{}: connection {} stalled for {:?}: disconnected, {lost} frames lost (sequences {}..={})",
                        self.shared.relays[relay].config.name, self.conns[token].id, stall, range.0, range.1
                    );
                    self.close(token, "stalled");
                }
                Work::Dropped((count, first)) => {
                    self.notice(token, session::DROPPED, first, &format!("dropped={count}"), false);
                    self.flush(token);
                }
                Work::Merged(rejects, drops) => {
                    let text = format!("merged rejected={rejects} dropped={drops}");
                    let code = if rejects > 0 { session::REJECTED } else { session::DROPPED };
                    self.notice(token, code, 0, &text, false);
                    self.flush(token);
                }
                Work::Heartbeat(frames_sent) => {
                    self.heartbeat(token, frames_sent);
                    self.flush(token);
                }
            }
        }
    }

    fn heartbeat(&mut self, token: usize, frames_sent: u64) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let source = self.shared.relays[conn.relay].config.source.raw();
        let Ok(mut builder) = FrameBuilder::new(&mut self.scratch, RelayDomain::System, source) else {
            return;
        };
        if builder.payload(&Heartbeat { timestamp_ns: session::now_ns(), frames_sent }).is_err() {
            return;
        }
        let len = builder.finish(0, session::now_ns(), Crc::Compute);
        conn.out.push_back(Out { data: Bytes::copy_from_slice(&self.scratch[..len]), charge: 0, frames: 0 });
    }

    fn close(&mut self, token: usize, reason: &str) {
        if !self.conns.contains(token) {
            return;
        }
        let mut conn = self.conns.remove(token);
        let _ = self.poll.registry().deregister(&mut conn.stream);
        self.shared.connections.fetch_sub(1, Relaxed);
        let relay = &self.shared.relays[conn.relay];
        relay.metrics.connections.fetch_sub(1, Relaxed);
        info!("{}: connection {} ({}) closed: {reason}", relay.config.name, conn.id, conn.peer);
        for publisher in conn.blocking {
            self.send(publisher.reactor, Msg::Resume(publisher));
        }
    }

    fn begin_stop(&mut self) {
        self.stopping = true;
        self.stop_deadline = Some(Instant::now() + self.shared.engine.flush_deadline);
        for (mut listener, _) in self.listeners.drain(..) {
            let _ = self.poll.registry().deregister(&mut listener);
        }
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for token in tokens {
            self.notice(token, session::STOPPING, 0, "relay stopping", false);
            self.flush(token);
        }
        for target in 0..self.shared.inboxes.len() {
            if target != self.index {
                self.send(target, Msg::Done);
            }
        }
    }

    /// Whether a stopping reactor may exit: every peer is done, nothing is left to send, and
    /// every queue is flushed (or the deadline passed).
    fn finished(&mut self) -> bool {
        let peers_done = self.done_from + 1 >= self.shared.inboxes.len();
        let nothing_pending = self.pending.iter().all(VecDeque::is_empty);
        let flushed = self.conns.iter().all(|(_, c)| c.out.is_empty());
        let late = self.stop_deadline.is_some_and(|d| Instant::now() >= d);
        (peers_done && nothing_pending && flushed) || late
    }

    /// Logs, per subscriber, the frames a stop left undelivered; Execution ones make the
    /// exit status 3.
    fn report_undelivered(&mut self) {
        for (_, conn) in &self.conns {
            let (frames, first, last) = conn.undelivered();
            if frames == 0 {
                continue;
            }
            let relay = &self.shared.relays[conn.relay];
            warn!(
                "{}: stop deadline passed with {frames} frames undelivered to connection {} ({}), sequences {first}..={last}",
                relay.config.name, conn.id, conn.peer
            );
            if relay.config.domain == RelayDomain::Execution {
                self.shared.exit_status.store(3, Relaxed);
            }
        }
    }
}

enum Work {
    Stalled,
    Dropped((u64, u64)),
    Merged(u64, u64),
    Heartbeat(u64),
}

/// Writes as much of `conn.out` as the socket takes, with vectored writes. `Err` when the
/// peer can no longer be written to.
fn write_out(conn: &mut Conn, metrics: &Metrics) -> Result<(), ()> {
    while !conn.out.is_empty() {
        let mut slices = [IoSlice::new(&[]); 64];
        let mut count = 0;
        for (i, entry) in conn.out.iter().take(64).enumerate() {
            let skip = if i == 0 { conn.written } else { 0 };
            slices[i] = IoSlice::new(&entry.data[skip..]);
            count += 1;
        }
        match conn.stream.write_vectored(&slices[..count]) {
            Ok(0) => return Err(()),
            Ok(mut n) => {
                metrics.bytes_out.fetch_add(n as u64, Relaxed);
                conn.last_sent = Instant::now();
                while n > 0 {
                    let Some(front) = conn.out.front() else { break };
                    let left = front.data.len() - conn.written;
                    if n < left {
                        conn.written += n;
                        break;
                    }
                    n -= left;
                    conn.written = 0;
                    if let Some(done) = conn.out.pop_front() {
                        conn.queued -= done.charge;
                        if done.frames == 0 && done.charge == 0 {
                            conn.notices_queued = conn.notices_queued.saturating_sub(1);
                        }
                    }
                }
            }
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => {
                debug!("connection {}: write failed: {e}", conn.id);
                return Err(());
            }
        }
    }
    Ok(())
}

/// The peer stopped reading: nothing more is queued to it.
fn mark_write_dead(conn: &mut Conn) {
    conn.write_dead = true;
    conn.out.clear();
    conn.queued = 0;
    conn.written = 0;
}

/// Total time covered by pause intervals (open ones end `now`) after `since`.
fn paused_since(intervals: &VecDeque<(Instant, Option<Instant>)>, since: Instant, now: Instant) -> Duration {
    intervals
        .iter()
        .map(|(start, end)| end.unwrap_or(now).saturating_duration_since((*start).max(since)))
        .sum()
}

/// The sequence of the frame at `offset`.
fn sequence_at(bytes: &[u8], offset: usize) -> u64 {
    bytes.get(offset..).and_then(crate::protocol::Header::view).map_or(0, crate::protocol::Header::sequence)
}

impl Conn {
    /// Whether publishers have been paused on this subscriber's account for `stall` in total
    /// within the last `2 × stall` (PROTOCOL.md §6); forgets older pauses.
    fn stalled(&mut self, now: Instant, stall: Duration) -> bool {
        let window_start = now.checked_sub(2 * stall).unwrap_or(now);
        while self.blocked.front().is_some_and(|(_, end)| end.is_some_and(|end| end <= window_start)) {
            self.blocked.pop_front();
        }
        paused_since(&self.blocked, window_start, now) >= stall
    }

    /// Queues data frames: `data` is a slice of a shared batch, copied when `copy`.
    fn push(&mut self, data: Bytes, copy: bool, charge: usize, frames: u32, metrics: &Metrics) {
        let data = if copy { Bytes::copy_from_slice(&data) } else { data };
        self.queued += charge;
        self.frames_sent += u64::from(frames);
        metrics.frames_out.fetch_add(u64::from(frames), Relaxed);
        self.out.push_back(Out { data, charge, frames });
    }

    /// Data frames queued and not wholly written: (count, first sequence, last sequence).
    /// Frames of the front entry already written in full are not counted.
    fn undelivered(&self) -> (u64, u64, u64) {
        let mut count = 0;
        let (mut first, mut last) = (None, 0);
        for (i, entry) in self.out.iter().enumerate() {
            if entry.frames == 0 {
                continue;
            }
            let done = if i == 0 { self.written } else { 0 };
            let mut offset = 0;
            while let Some(header) = entry.data.get(offset..).and_then(crate::protocol::Header::view) {
                let end = offset + header.frame_len() as usize;
                if end > done {
                    count += 1;
                    first.get_or_insert(header.sequence());
                    last = header.sequence();
                }
                offset = end;
            }
        }
        (count, first.unwrap_or(0), last)
    }

    fn last_gap_log_due(&mut self, now: Instant) -> bool {
        let due = self.session.last_gap_log.is_none_or(|t| now.duration_since(t) >= Duration::from_secs(1));
        if due {
            self.session.last_gap_log = Some(now);
        }
        due
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pauses_add_up_within_the_window_only() {
        let t0 = Instant::now();
        let at = |ms| t0 + Duration::from_millis(ms);
        let mut intervals = VecDeque::new();
        intervals.push_back((at(0), Some(at(300))));
        intervals.push_back((at(500), Some(at(700))));
        intervals.push_back((at(900), None));
        // Window from 100 ms: 200 (of the first) + 200 + 100 (open until 1000).
        assert_eq!(paused_since(&intervals, at(100), at(1000)), Duration::from_millis(500));
        // Window from 800: only the open interval, 200.
        assert_eq!(paused_since(&intervals, at(800), at(1100)), Duration::from_millis(200));
    }
}
