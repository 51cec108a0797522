//! One connection in the relay core, sans-IO: its session, its read buffer and the intake of
//! what was read, its outbound queue. The socket is a type parameter the core only ever
//! writes to through its [`Sink`](super::Sink); the reactor reads into
//! [`Connection::read_buffer`].

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use bytes::Bytes;
use log::{info, warn};

use crate::protocol::{Framing, Header, frame, notice};

use super::audit::{Outcome, Record};
use super::batch::{Batch, FrameSpan, PublisherId};
use super::context::{Peer, RelayContext};
use super::logic::RelayLogic;
use super::outbox::{Notice, Outbox};
use super::reason::Reason;
use super::session::{Consumed, Session, Verdict, frame_key};
use super::throttle::Throttle;

/// The time, read once by the caller: the core never reads a clock.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Now {
    /// For intervals: the stall window, heartbeats, log rate limits.
    pub instant: Instant,
    /// Nanoseconds since the Unix epoch, for audit records and the frames the relay builds.
    pub unix_ns: u64,
}

/// Why the relay closed a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum CloseReason {
    /// The peer closed its end (or reading failed).
    PeerClosed,
    /// A framing error, a malformed Subscribe or a RelayNotice from the client.
    ProtocolError,
    /// A rejected frame closes the connection (`close_on_reject` without notices, or
    /// `not_allowed`).
    Rejected,
    /// The queue was full under the `disconnect` policy.
    SlowConsumer,
    /// Publishers were paused on its account for the stall timeout (`block`).
    Stalled,
}

impl fmt::Display for CloseReason {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            CloseReason::PeerClosed => "peer closed",
            CloseReason::ProtocolError => "protocol error",
            CloseReason::Rejected => "frame rejected",
            CloseReason::SlowConsumer => "slow consumer",
            CloseReason::Stalled => "stalled",
        })
    }
}

/// What one intake of a read buffer produced.
#[derive(Debug, Default)]
pub(crate) struct Intake {
    /// The connection's id (its token may be reused by the time the intake is settled).
    pub connection: u64,
    /// Audit records of every frame judged, in order (empty unless the relay audits).
    pub records: Vec<Record>,
    /// The accepted data frames, in one shared buffer.
    pub batch: Option<Arc<Batch>>,
    /// Data frames rejected (they count in the publisher's confirmation, notice 7).
    pub rejected: u64,
    /// The connection must be closed after its accepted frames are forwarded.
    pub close: Option<CloseReason>,
}

/// Rate limits of one connection's warnings.
#[derive(Debug, Default)]
struct LogLimits {
    /// Reasons (bit = [`Reason::index`]) already logged once on this connection.
    reasons_logged: u64,
    reject: Throttle,
    gap: Throttle,
}

impl LogLimits {
    /// The first rejection of each reason, then at most one a second.
    fn reject_due(&mut self, reason: &Reason, now: Instant) -> bool {
        let bit = 1u64 << (reason.index() % 64);
        let first = self.reasons_logged & bit == 0;
        self.reasons_logged |= bit;
        self.reject.ready(now) || first
    }

    fn gap_due(&mut self, now: Instant) -> bool {
        self.gap.ready(now)
    }
}

/// One connection of the relay core.
#[derive(Debug)]
pub(crate) struct Connection<S> {
    pub(crate) socket: S,
    pub(crate) id: u64,
    pub(crate) relay: usize,
    pub(crate) peer: Peer,
    pub(crate) session: Session,
    /// What was read and not yet handed on (at most a partial frame between reads); reads go
    /// into its spare capacity, and a mostly full buffer becomes a batch as it is.
    inbuf: Vec<u8>,
    /// Ticks since the last read; an empty read buffer is released after a second of them.
    pub(crate) idle_ticks: u8,
    pub(crate) outbox: Outbox,
    /// Pauses in force on this connection as a publisher (one per full queue it routes to).
    pub(crate) pauses: u32,
    /// WRITABLE interest is registered (output is queued).
    pub(crate) writable: bool,
    /// What became of the data frames it published (for notice 7).
    pub(crate) published: Published,
    /// It is in its shard's list of subscribers (and counted in its relay's interest).
    pub(crate) listed: bool,
    /// Its subscription has filters (counted in its relay's `filtered`).
    pub(crate) filtered: bool,
    /// It reads the broadcast log (counted in its relay's readers and in the interest of the
    /// shard that writes the log).
    pub(crate) reading_log: bool,
    /// The log's descriptor was sent (at most once per connection: a descriptor in flight is
    /// charged to the relay's user by the kernel, so Subscribes repeated and never read must
    /// not pile them up).
    log_sent: bool,
    log: LogLimits,
}

/// Counts of one connection's data frames since it connected.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub(crate) struct Published {
    /// Judged by the intake (accepted or rejected): the number of the last one.
    pub(crate) judged: u64,
    /// Accepted and handed on (on Execution: after their audit records were written).
    pub(crate) accepted: u64,
    /// Rejected, once their intake was settled.
    pub(crate) rejected: u64,
}

impl<S> Connection<S> {
    pub(crate) fn new(socket: S, id: u64, relay: usize, peer: Peer, session: Session, now: Instant) -> Self {
        Connection {
            socket,
            id,
            relay,
            peer,
            session,
            inbuf: Vec::new(),
            idle_ticks: 0,
            outbox: Outbox::new(now),
            pauses: 0,
            writable: false,
            published: Published::default(),
            listed: false,
            filtered: false,
            reading_log: false,
            log_sent: false,
            log: LogLimits::default(),
        }
    }

    /// The socket, mutably (to register it with a poller).
    pub(crate) fn socket_mut(&mut self) -> &mut S {
        &mut self.socket
    }

    /// The connection's id, unique in the process.
    pub(crate) fn id(&self) -> u64 {
        self.id
    }

    /// The socket and the read buffer, with room for a read of `budget` bytes or for the rest
    /// of a partial frame whose header says it is larger (at most `max_message_size`, which
    /// framing has checked). Reads append to the buffer's spare capacity. The room is
    /// allocated on the first read, so a connection that never sends holds none.
    pub(crate) fn read_buffer(&mut self, budget: usize) -> (&S, &mut Vec<u8>) {
        let partial = Header::view(&self.inbuf).map_or(0, |h| h.frame_len() as usize);
        let want = budget.max(partial.saturating_sub(self.inbuf.len()));
        if self.inbuf.capacity() - self.inbuf.len() < want / 2 {
            self.inbuf.reserve_exact(want);
        }
        self.idle_ticks = 0;
        (&self.socket, &mut self.inbuf)
    }

    /// Frames and judges what was read, queues the notices it is owed, and splits the accepted
    /// frames off as one shared batch (the buffer itself when it is mostly frames, else a
    /// copy). A partial frame stays for the next read.
    pub(crate) fn intake<L: RelayLogic>(
        &mut self,
        relay: &RelayContext<L>,
        publisher: PublisherId,
        read_budget: usize,
        now: Now,
    ) -> Intake {
        let config = &relay.config;
        let auditing = relay.logic.audits(&config.levels);
        // Routing keys are computed once, here, while some subscription has filters.
        let keyed = relay.filtered.load(Relaxed) > 0;
        let mut intake = Intake { connection: self.id, ..Intake::default() };
        let mut frames = Vec::new();
        let mut pos = 0;
        while pos < self.inbuf.len() && intake.close.is_none() {
            let len = match frame(&self.inbuf[pos..], config.max_message_size) {
                Ok(Framing::Incomplete(_)) => break,
                Ok(Framing::Frame(len)) => len,
                Err(e) => {
                    self.protocol_error(relay, &Reason::Frame(e), 0, false, now);
                    intake.close = Some(CloseReason::ProtocolError);
                    break;
                }
            };
            let verdict = self.session.judge(&self.inbuf[pos..pos + len], &relay.logic, config);
            if let Verdict::Forward = verdict {
                let key = keyed.then(|| frame_key(&self.inbuf[pos..pos + len]));
                frames.push(FrameSpan { offset: pos as u32, len: len as u32, key });
            }
            let outcome = self.apply(relay, verdict, pos, &mut intake, now);
            if let (true, Some(outcome)) = (auditing, outcome) {
                let (source, sequence) = self.ids(pos);
                intake.records.push(Record {
                    time_ns: now.unix_ns,
                    connection: self.id,
                    pid: self.peer.pid.unwrap_or(0),
                    uid: self.peer.uid,
                    outcome,
                    source,
                    sequence,
                    len: len as u32,
                });
            }
            pos += len;
        }
        if self.session.sequence_gaps > 0 && self.log.gap_due(now.instant) {
            info!(
                "{}: connection {} has {} sequence gaps so far",
                config.name, self.id, self.session.sequence_gaps
            );
        }
        if frames.is_empty() {
            self.inbuf.drain(..pos);
            return intake;
        }
        let accepted: u64 = frames.iter().map(|f| u64::from(f.len)).sum();
        relay.metrics.frames_in.fetch_add(frames.len() as u64, Relaxed);
        relay.metrics.bytes_in.fetch_add(accepted, Relaxed);
        let (bytes, alloc) = self.split_off(pos, read_budget);
        intake.batch = Some(Arc::new(Batch::new(self.relay, publisher, bytes, alloc, frames)));
        intake
    }

    /// Source and sequence of the frame at `pos` of the read buffer, read only for what logs,
    /// notices or audits a frame.
    #[inline]
    fn ids(&self, pos: usize) -> (u8, u64) {
        Header::view(&self.inbuf[pos..]).map_or((0, 0), |h| (h.source(), h.sequence()))
    }

    /// Carries out the session's verdict on the frame at `pos`: counts, notices, logs, the
    /// close it calls for. Returns what the audit trail records of it (`None`: nothing, for a
    /// repeated hello).
    #[inline]
    fn apply<L: RelayLogic>(
        &mut self,
        relay: &RelayContext<L>,
        verdict: Verdict,
        pos: usize,
        intake: &mut Intake,
        now: Now,
    ) -> Option<Outcome> {
        let config = &relay.config;
        let source = config.source.raw();
        Some(match verdict {
            Verdict::Forward => {
                self.published.judged += 1;
                Outcome::Accepted
            }
            Verdict::Consumed(Consumed::Hello { first: true }) => Outcome::Hello,
            Verdict::Consumed(Consumed::Hello { first: false }) => {
                // Only the first hello is audited: hellos cannot fill the disk.
                relay.metrics.hellos_repeated.fetch_add(1, Relaxed);
                return None;
            }
            Verdict::Consumed(Consumed::Subscribe) => {
                // Shared-memory delivery (§7): the log's size and this connection's id (the
                // origin of its own frames in the log, which it skips), the descriptor sent
                // with the notice; `shm=0` when the relay offers no log, and the connection
                // receives over its socket.
                self.session.grant_log(relay.shm_bytes > 0 && relay.logic.offers_shm());
                let shm = match (self.session.wants_shm(), self.session.reads_log()) {
                    (_, true) => format!(" shm={} id={}", relay.shm_bytes, self.id),
                    (true, false) => " shm=0".to_string(),
                    (false, false) => String::new(),
                };
                let text = format!(
                    "version=1 max_message_size={} queue_bytes={} policy={}{shm}",
                    config.max_message_size, config.queue_bytes, config.policy,
                );
                let notice = Notice { code: notice::SUBSCRIBED, sequence: 0, text };
                if self.session.reads_log() && !self.log_sent {
                    self.log_sent = true;
                    self.outbox.notice_with_log(&notice, source, now.unix_ns);
                } else {
                    self.notice_if_asked(notice, source, now);
                }
                Outcome::Control
            }
            Verdict::Reject { reason, close } => {
                self.published.judged += 1;
                intake.rejected += 1;
                self.rejected(relay, &reason, pos, now);
                if close {
                    intake.close = Some(CloseReason::Rejected);
                }
                Outcome::Rejected(reason.token())
            }
            Verdict::ProtocolError(reason) => {
                // A malformed Subscribe gets notice 3 whatever its options said.
                let sequence = self.ids(pos).1;
                self.protocol_error(relay, &reason, sequence, true, now);
                intake.close = Some(CloseReason::ProtocolError);
                Outcome::Rejected(reason.token())
            }
        })
    }

    /// Counts and logs (first of each reason, then once a second) a rejected frame, and tells
    /// a connection that asked for notices (notice 2, or 6 for `not_allowed`).
    fn rejected<L>(&mut self, relay: &RelayContext<L>, reason: &Reason, pos: usize, now: Now) {
        let (frame_source, sequence) = self.ids(pos);
        relay.metrics.rejected[reason.index()].fetch_add(1, Relaxed);
        if self.log.reject_due(reason, now.instant) {
            warn!(
                "{}: connection {} ({}) frame rejected: source={frame_source} sequence={sequence} reason={reason}",
                relay.config.name, self.id, self.peer
            );
        }
        // The notice text is built only for a connection that asked for notices: a flood of
        // bad frames from a legacy client costs no allocation each.
        if !self.session.wants_notices() {
            return;
        }
        let code = if *reason == Reason::NotAllowed { notice::ACCESS_DENIED } else { notice::REJECTED };
        // A publisher that asked for confirmation learns which of its frames this was (the
        // sequence alone is ambiguous across sources), right after the reason token, so
        // cutting a long text to the notice's 512 bytes never cuts it.
        let mut text = reason.to_string();
        if self.session.wants_confirms() {
            let token = reason.token();
            let rest = text.strip_prefix(token).unwrap_or_default();
            text = format!("{token} frame={}{rest}", self.published.judged);
        }
        self.outbox.notice(&Notice { code, sequence, text }, relay.config.source.raw(), now.unix_ns);
    }

    /// Splits the first `pos` bytes of the read buffer off as a batch's bytes, and the bytes
    /// of memory they keep alive. A buffer that is mostly frames is handed on as it is (no
    /// copy), the partial frame after them moving to a new one; a small read is copied out of a
    /// buffer kept for the next read, so a batch never keeps more than twice its bytes alive.
    fn split_off(&mut self, pos: usize, read_budget: usize) -> (Bytes, usize) {
        if pos * 2 >= self.inbuf.capacity() {
            let rest = &self.inbuf[pos..];
            let mut next = Vec::new();
            if !rest.is_empty() {
                next.reserve_exact(rest.len() + read_budget);
                next.extend_from_slice(rest);
            }
            let mut full = std::mem::replace(&mut self.inbuf, next);
            full.truncate(pos);
            let alloc = full.capacity();
            (Bytes::from(full), alloc)
        } else {
            let bytes = Bytes::copy_from_slice(&self.inbuf[..pos]);
            self.inbuf.drain(..pos);
            (bytes, pos)
        }
    }

    /// Logs and counts a protocol error and queues notice 3 (to any connection when `force`d).
    fn protocol_error<L>(
        &mut self,
        relay: &RelayContext<L>,
        reason: &Reason,
        sequence: u64,
        force: bool,
        now: Now,
    ) {
        warn!(
            "{}: connection {} ({}): protocol error: {reason}; closing",
            relay.config.name, self.id, self.peer
        );
        relay.metrics.protocol_errors.fetch_add(1, Relaxed);
        let notice = Notice { code: notice::PROTOCOL_ERROR, sequence, text: reason.to_string() };
        if force || self.session.wants_notices() {
            self.outbox.notice(&notice, relay.config.source.raw(), now.unix_ns);
        }
    }

    /// Queues a notice if the connection asked for notices.
    pub(crate) fn notice_if_asked(&mut self, notice: Notice, source: u8, now: Now) {
        if self.session.wants_notices() {
            self.outbox.notice(&notice, source, now.unix_ns);
        }
    }

    /// Releases an empty read buffer after a second without reads (a read budget each, over
    /// hundreds of idle connections); the next read allocates anew.
    pub(crate) fn release_idle_buffer(&mut self, idle_ticks: u8) {
        self.idle_ticks = self.idle_ticks.saturating_add(1);
        if self.idle_ticks >= idle_ticks && self.inbuf.is_empty() && self.inbuf.capacity() > 0 {
            log::debug!(
                "connection {}: idle, read buffer of {} bytes released",
                self.id,
                self.inbuf.capacity()
            );
            self.inbuf = Vec::new();
        }
    }
}
