//! One reactor's share of the relay, sans-IO: its connections, the fan-out of accepted batches
//! to its subscribers, the messages it owes the other shards, ticks and the stop.
//!
//! The caller (a reactor, or a test's simulated one) owns the I/O: it reads into a
//! connection's buffer and calls [`Shard::intake`], hands batches and messages between shards,
//! and after every call drains [`Shard::poll_message`] and [`Shard::poll_event`] — the
//! quinn-proto pattern. The shard writes to a connection only through its [`Sink`].

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use log::{error, info, warn};
use slab::Slab;

use crate::protocol::notice;

use super::batch::{Batch, PublisherId, Run};
use super::connection::{CloseReason, Connection, Intake, Now};
use super::context::{LOG_SHARD, Peer, RelayContext};
use super::logic::RelayLogic;
use super::metrics::Metrics;
use super::outbox::{Notice, Undelivered};
use super::session::Session;
use super::sink::Sink;
use super::trail::Trail;
use crate::shm::LogWriter;

/// Ticks without a read after which an empty read buffer is released.
const IDLE_TICKS: u8 = 10;

/// Settings of one shard.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct ShardConfig {
    /// This shard's index.
    pub index: usize,
    /// How many shards there are.
    pub shards: usize,
    /// Bytes read from one connection per loop turn.
    pub read_budget: usize,
    /// The stall rule's window.
    pub stall_timeout: Duration,
}

/// A message from one shard to another.
#[derive(Debug)]
pub(crate) enum Msg {
    /// Accepted frames of one publisher read.
    Batch(Arc<Batch>),
    /// Stop reading this publisher until as many `Resume`s arrive.
    Pause(PublisherId),
    /// Undo one `Pause`.
    Resume(PublisherId),
}

/// What the I/O layer must do after a call into the shard.
#[derive(Debug)]
pub(crate) enum Event<S> {
    /// Read this connection again without waiting for readiness (new, resumed, or its peer
    /// stopped reading and what it sent must still be read).
    Readable(usize),
    /// Output is queued (`true`) or all written (`false`): change WRITABLE interest.
    Writable(usize, bool),
    /// The connection was closed: deregister and drop its socket.
    // The reactor needs only the socket; the in-memory driver reads which and why.
    #[cfg_attr(not(test), allow(dead_code))]
    Closed {
        /// Its token (free for reuse once this event is taken).
        token: usize,
        /// Why.
        reason: CloseReason,
        /// Its socket.
        socket: S,
    },
}

/// One reactor's share of the relay.
#[derive(Debug)]
pub(crate) struct Shard<L, S> {
    config: ShardConfig,
    relays: Arc<[RelayContext<L>]>,
    conns: Slab<Connection<S>>,
    messages: VecDeque<(usize, Msg)>,
    events: VecDeque<Event<S>>,
    stopping: bool,
    /// Per relay, the tokens of the connections that subscribe (or may yet): the fan-out
    /// looks at these only, never at publishers.
    subscribers: Vec<Vec<usize>>,
    /// Reused by the fan-out: the subscribers it queued to, one subscriber's runs.
    touched: Vec<usize>,
    runs: Vec<Run>,
    /// Intakes waiting for their audit records to be written.
    trail: Trail,
    /// Per relay: its audit trail was failing at the last look, so its connections were
    /// refused reads and are owed a [`Event::Readable`] when it recovers.
    refused: Vec<bool>,
    /// Per relay, its broadcast log, on the shard that writes it ([`LOG_SHARD`]).
    logs: Vec<Option<LogWriter>>,
}

impl<L: RelayLogic, S: Sink> Shard<L, S> {
    /// An empty shard.
    pub(crate) fn new(config: ShardConfig, relays: Arc<[RelayContext<L>]>) -> Self {
        Shard {
            config,
            conns: Slab::new(),
            messages: VecDeque::new(),
            events: VecDeque::new(),
            stopping: false,
            subscribers: (0..relays.len()).map(|_| Vec::new()).collect(),
            touched: Vec::new(),
            runs: Vec::new(),
            trail: Trail::default(),
            refused: vec![false; relays.len()],
            logs: (0..relays.len()).map(|_| None).collect(),
            relays,
        }
    }

    /// Gives this shard (it must be [`LOG_SHARD`]) relay `relay`'s broadcast log to write.
    pub(crate) fn attach_log(&mut self, relay: usize, log: LogWriter) {
        debug_assert_eq!(self.config.index, LOG_SHARD);
        self.logs[relay] = Some(log);
    }

    /// The broadcast logs this shard writes, with their relays' counters: the driver wakes
    /// their sleeping readers ([`LogWriter::wake`]) once per turn (dropping the shard closes
    /// them).
    pub(crate) fn logs_mut(&mut self) -> impl Iterator<Item = (&mut LogWriter, &Metrics)> {
        let relays = self.relays.iter();
        self.logs.iter_mut().zip(relays).filter_map(|(log, relay)| Some((log.as_mut()?, &*relay.metrics)))
    }

    /// The relays this shard serves.
    pub(crate) fn relays(&self) -> &[RelayContext<L>] {
        &self.relays
    }

    /// The token the next [`Shard::insert`] will use.
    pub(crate) fn next_token(&self) -> usize {
        self.conns.vacant_key()
    }

    /// Adds a connection of relay `relay`, which the driver announced with
    /// [`RelayContext::expect`] for this shard before handing it over; it is to be read at
    /// once. It subscribes until it says otherwise (PROTOCOL.md §6, roles).
    pub(crate) fn insert(&mut self, socket: S, relay: usize, peer: Peer, id: u64, now: Now) -> usize {
        let context = &self.relays[relay];
        let session = Session::new(&context.logic, &context.config, peer.uid);
        let mut conn = Connection::new(socket, id, relay, peer, session, now.instant);
        conn.listed = true;
        let token = self.conns.insert(conn);
        self.subscribers[relay].push(token);
        self.events.push_back(Event::Readable(token));
        token
    }

    /// Keeps a connection's place in the subscriber list, its relay's interest and its count
    /// of filtered subscriptions in step with its session (a hello or a Subscribe changed it).
    fn relist(&mut self, token: usize) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let relay = &self.relays[conn.relay];
        let subscribes = conn.session.subscribes();
        if subscribes != conn.listed {
            conn.listed = subscribes;
            let list = &mut self.subscribers[conn.relay];
            if subscribes {
                list.push(token);
                relay.expect(self.config.index);
            } else {
                list.retain(|&t| t != token);
                relay.lose_interest(self.config.index);
            }
        }
        let reads_log = conn.session.reads_log();
        if reads_log != conn.reading_log {
            conn.reading_log = reads_log;
            if reads_log {
                relay.expect(LOG_SHARD);
                relay.metrics.shm_readers.fetch_add(1, Relaxed);
            } else {
                relay.lose_interest(LOG_SHARD);
                relay.metrics.shm_readers.fetch_sub(1, Relaxed);
            }
        }
        let filters = conn.session.filters();
        if filters != conn.filtered {
            conn.filtered = filters;
            if filters {
                relay.filtered.fetch_add(1, Relaxed);
            } else {
                relay.filtered.fetch_sub(1, Relaxed);
            }
        }
    }

    /// A connection.
    pub(crate) fn connection(&self, token: usize) -> Option<&Connection<S>> {
        self.conns.get(token)
    }

    /// A connection, mutably (to read into its buffer).
    pub(crate) fn connection_mut(&mut self, token: usize) -> Option<&mut Connection<S>> {
        self.conns.get_mut(token)
    }

    /// Connections open in this shard.
    pub(crate) fn len(&self) -> usize {
        self.conns.len()
    }

    /// Whether a connection may be read now: it exists, no full queue has paused it, its
    /// relay's audit trail is not failing, and the relay is not stopping.
    pub(crate) fn may_read(&self, token: usize) -> bool {
        !self.stopping
            && self.conns.get(token).is_some_and(|c| {
                c.pauses == 0 && !(self.audits(c.relay) && self.trail.failing(c.relay, &self.relays[c.relay]))
            })
    }

    /// Whether relay `relay` audits (its records are written before its frames go anywhere).
    fn audits(&self, relay: usize) -> bool {
        let context = &self.relays[relay];
        context.logic.audits(&context.config.levels)
    }

    /// Judges what a connection has read. What it accepted is settled at once, unless its
    /// relay audits: then it waits until the driver has written its records
    /// ([`Shard::poll_audit`]).
    pub(crate) fn intake(&mut self, token: usize, now: Now) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let index = conn.relay;
        let relay = &self.relays[index];
        let publisher = PublisherId { shard: self.config.index, token, id: conn.id };
        let mut intake = conn.intake(relay, publisher, self.config.read_budget, now);
        let relist = conn.listed != conn.session.subscribes()
            || conn.filtered != conn.session.filters()
            || conn.reading_log != conn.session.reads_log();
        if conn.outbox.overflowed() && intake.close.is_none() {
            relay.metrics.slow_disconnects.fetch_add(1, Relaxed);
            warn!(
                "{}: connection {} ({}) disconnected as a slow consumer: {} notices pending and unread",
                relay.config.name,
                conn.id,
                conn.peer,
                crate::relays::outbox::MAX_PENDING_NOTICES
            );
            intake.close = Some(CloseReason::SlowConsumer);
        }
        if relist {
            self.relist(token);
        }
        if self.conns.get(token).is_some_and(|conn| !conn.outbox.is_empty()) {
            self.flush(token, now);
        }
        if intake.records.is_empty() {
            self.settle(token, intake, now);
        } else {
            self.trail.hold(token, index, &self.relays[index], intake);
        }
    }

    /// Audit records to append to relay `.0`'s audit file before anything else of it is
    /// delivered; answer with [`Shard::audit_written`] or [`Shard::audit_failed`]. None while
    /// nothing is owed, or a failed write waits for its retry (a second later).
    pub(crate) fn poll_audit(&self, now: Now) -> Option<(usize, &[u8])> {
        self.trail.due(now.instant)
    }

    /// `n` bytes of what [`Shard::poll_audit`] gave are in the audit file (at least in the
    /// operating system's page cache): the intakes whose records are all written are settled,
    /// and a relay that failed closed reads again once nothing of it is held.
    pub(crate) fn audit_written(&mut self, n: usize, now: Now) {
        if let Some(held) = self.trail.written(n) {
            self.settle(held.token, held.intake, now);
        }
        if self.trail.is_empty() {
            for relay in self.relays.iter().filter(|r| r.metrics.audit_failing.swap(0, Relaxed) != 0) {
                info!("{}: the audit file takes writes again: reading resumes", relay.config.name);
            }
            self.wake_refused();
        }
    }

    /// Writing what [`Shard::poll_audit`] gave failed: the relay fails closed (its connections
    /// are not read, on any shard) and the write is asked for again a second later.
    pub(crate) fn audit_failed(&mut self, error: &dyn std::fmt::Display, now: Now) {
        let Some((relay, _)) = self.trail.due(now.instant) else { return };
        self.trail.failed(&self.relays[relay], error, now.instant);
        self.refused[relay] = true;
    }

    /// Connections refused reads while their relay's audit trail failed are read again once
    /// it has recovered (on whichever shard it failed).
    fn wake_refused(&mut self) {
        for relay in 0..self.relays.len() {
            if !self.refused[relay] || self.trail.failing(relay, &self.relays[relay]) {
                continue;
            }
            self.refused[relay] = false;
            for (token, _) in self.conns.iter().filter(|(_, c)| c.relay == relay) {
                self.events.push_back(Event::Readable(token));
            }
        }
    }

    /// Forwards the accepted frames, confirms them and the rejections to a publisher that
    /// asked (notice 7), and closes the connection if it must be — once the intake's audit
    /// records are written (on a relay that audits).
    fn settle(&mut self, token: usize, intake: Intake, now: Now) {
        let Intake { connection, batch, rejected, close, .. } = intake;
        let accepted = batch.as_ref().map_or(0, |batch| batch.frames.len() as u64);
        if let Some(batch) = batch {
            self.forward(batch, now);
        }
        let Some(conn) = self.conns.get_mut(token).filter(|conn| conn.id == connection) else { return };
        if accepted + rejected > 0 {
            conn.published.accepted += accepted;
            conn.published.rejected += rejected;
            if conn.session.wants_confirms() {
                let source = self.relays[conn.relay].config.source.raw();
                let published = conn.published;
                conn.outbox.confirm(published.accepted, published.rejected, source, now.unix_ns);
                self.flush(token, now);
            }
        }
        if let Some(reason) = close {
            self.flush(token, now);
            self.close(token, reason);
        }
    }

    /// Delivers a batch of this shard's publisher to this shard's subscribers, and sends it to
    /// every other shard.
    fn forward(&mut self, batch: Arc<Batch>, now: Now) {
        self.deliver(&batch, Some(batch.publisher.token), now);
        let relay = &self.relays[batch.relay];
        for shard in (0..self.config.shards).filter(|&s| s != self.config.index && relay.interested(s)) {
            self.messages.push_back((shard, Msg::Batch(Arc::clone(&batch))));
        }
    }

    /// Handles a message from another shard.
    pub(crate) fn handle(&mut self, msg: Msg, now: Now) {
        match msg {
            Msg::Batch(batch) => self.deliver(&batch, None, now),
            signal => self.signal(signal),
        }
    }

    /// Applies a pause or resume to one of this shard's publishers.
    fn signal(&mut self, msg: Msg) {
        let (publisher, pause) = match msg {
            Msg::Pause(publisher) => (publisher, true),
            Msg::Resume(publisher) => (publisher, false),
            Msg::Batch(_) => return,
        };
        let Some(conn) = self.conns.get_mut(publisher.token).filter(|c| c.id == publisher.id) else { return };
        if pause {
            conn.pauses += 1;
        } else {
            conn.pauses = conn.pauses.saturating_sub(1);
            if conn.pauses == 0 {
                self.events.push_back(Event::Readable(publisher.token));
            }
        }
    }

    /// Sends a pause or resume to a publisher's shard: applied at once when it is this one.
    fn send(&mut self, shard: usize, msg: Msg) {
        if shard == self.config.index {
            self.signal(msg);
        } else {
            self.messages.push_back((shard, msg));
        }
    }

    /// Writes a batch to its relay's broadcast log, on the shard that writes it, while a
    /// reader is attached: the log is the second sink of the same decision — every accepted
    /// frame, whole, in the order this shard takes batches, once for every reader.
    fn write_log(&mut self, batch: &Batch) {
        let relay = &self.relays[batch.relay];
        let Some(log) = self.logs[batch.relay].as_mut() else { return };
        if relay.metrics.shm_readers.load(Relaxed) == 0 {
            return;
        }
        let (_, bytes_before, wraps_before) = log.written();
        let frames = batch
            .frames
            .iter()
            .map(|span| &batch.bytes[span.offset as usize..(span.offset + span.len) as usize]);
        log.append_all(frames, batch.publisher.id);
        let (_, bytes, wraps) = log.written();
        let metrics = &relay.metrics;
        metrics.shm_frames.fetch_add(batch.frames.len() as u64, Relaxed);
        metrics.shm_bytes.fetch_add(bytes - bytes_before, Relaxed);
        metrics.shm_wraps.fetch_add(wraps - wraps_before, Relaxed);
    }

    /// Queues a batch's frames to this shard's subscribers of its relay.
    fn deliver(&mut self, batch: &Batch, origin: Option<usize>, now: Now) {
        self.write_log(batch);
        let relay = &self.relays[batch.relay];
        let mut touched = std::mem::take(&mut self.touched);
        let mut runs = std::mem::take(&mut self.runs);
        let mut pauses = 0;
        let mut slow = Vec::new();
        let subscribers = std::mem::take(&mut self.subscribers[batch.relay]);
        for &token in &subscribers {
            let Some(conn) = self.conns.get_mut(token) else { continue };
            if Some(token) == origin || conn.outbox.is_dead() || !conn.session.subscribes() {
                continue;
            }
            runs.clear();
            if conn.session.takes_all() {
                // No filters: the batch's runs as they are, without a look at each frame.
                runs.extend_from_slice(&batch.runs);
            } else {
                let mut run: Option<Run> = None;
                for span in &batch.frames {
                    let (start, end) = (span.offset as usize, (span.offset + span.len) as usize);
                    if !conn.session.wants(&relay.logic, &batch.bytes[start..end], span.key.as_ref()) {
                        runs.extend(run.take());
                        continue;
                    }
                    run = match run {
                        Some(r) if r.end == start => Some(Run { end, frames: r.frames + 1, ..r }),
                        other => {
                            runs.extend(other);
                            Some(Run { start, end, frames: 1 })
                        }
                    };
                }
                runs.extend(run);
            }
            if runs.is_empty() {
                continue;
            }
            let offer =
                conn.outbox.offer(batch, &runs, &relay.config, &mut conn.socket, now.instant, &relay.metrics);
            if offer.write_failed {
                // Read what the peer sent before it went away; the read path closes at EOF.
                self.events.push_back(Event::Readable(token));
            }
            pauses += u32::from(offer.paused);
            if offer.slow {
                relay.metrics.slow_disconnects.fetch_add(1, Relaxed);
                warn!(
                    "{}: connection {} ({}) disconnected as a slow consumer ({} bytes queued)",
                    relay.config.name,
                    conn.id,
                    conn.peer,
                    conn.outbox.charged()
                );
                slow.push(token);
            }
            relay.metrics.queue_high_water.fetch_max(conn.outbox.charged() as u64, Relaxed);
            conn.outbox.report_charge(&relay.metrics);
            touched.push(token);
        }
        self.subscribers[batch.relay] = subscribers;
        for _ in 0..pauses {
            self.send(batch.publisher.shard, Msg::Pause(batch.publisher));
        }
        for &token in &touched {
            if slow.contains(&token) {
                self.flush(token, now);
                self.close(token, CloseReason::SlowConsumer);
            } else {
                self.flush(token, now);
            }
        }
        touched.clear();
        self.touched = touched;
        self.runs = runs;
    }

    /// Writes as much of a connection's queue as its socket takes, then keeps its WRITABLE
    /// interest and its paused publishers in step with what is left.
    pub(crate) fn flush(&mut self, token: usize, now: Now) {
        let Some(conn) = self.conns.get_mut(token) else { return };
        let relay = &self.relays[conn.relay];
        if conn.outbox.write_to(&mut conn.socket, now.instant, &relay.metrics).is_err() {
            // Read what the peer sent before it went away; the read path closes at EOF.
            self.events.push_back(Event::Readable(token));
        }
        conn.outbox.report_charge(&relay.metrics);
        let writable = !conn.outbox.is_empty();
        if writable != conn.writable {
            conn.writable = writable;
            self.events.push_back(Event::Writable(token, writable));
        }
        // A queue that drained to half its bound releases its publishers.
        for publisher in conn.outbox.release(relay.config.queue_bytes, now.instant) {
            self.send(publisher.shard, Msg::Resume(publisher));
        }
    }

    /// Closes a connection: its paused publishers resume, its socket comes back as
    /// [`Event::Closed`].
    pub(crate) fn close(&mut self, token: usize, reason: CloseReason) {
        let Some(mut conn) = self.conns.try_remove(token) else { return };
        let relay = &self.relays[conn.relay];
        if conn.listed {
            self.subscribers[conn.relay].retain(|&t| t != token);
            relay.lose_interest(self.config.index);
        }
        if conn.filtered {
            relay.filtered.fetch_sub(1, Relaxed);
        }
        if conn.reading_log {
            relay.lose_interest(LOG_SHARD);
            relay.metrics.shm_readers.fetch_sub(1, Relaxed);
        }
        relay.metrics.connections.fetch_sub(1, Relaxed);
        conn.outbox.withdraw_charge(&relay.metrics);
        info!("{}: connection {} ({}) closed: {reason}", relay.config.name, conn.id, conn.peer);
        for &publisher in conn.outbox.paused_publishers() {
            self.send(publisher.shard, Msg::Resume(publisher));
        }
        self.events.push_back(Event::Closed { token, reason, socket: conn.socket });
    }

    /// Heartbeats, drop notices, merged counts, idle read buffers and stalled subscribers.
    pub(crate) fn tick(&mut self, now: Now) {
        for relay in 0..self.relays.len() {
            // Another shard's audit trail may have failed (its connections here are refused
            // reads), or recovered.
            self.refused[relay] |= self.audits(relay) && self.trail.failing(relay, &self.relays[relay]);
        }
        self.wake_refused();
        let stall = self.config.stall_timeout;
        let mut stalled = Vec::new();
        let mut flush = Vec::new();
        for (token, conn) in &mut self.conns {
            let relay = &self.relays[conn.relay];
            let source = relay.config.source.raw();
            if !self.stopping && conn.outbox.stalled(now.instant, stall) {
                stalled.push(token);
                continue;
            }
            conn.release_idle_buffer(IDLE_TICKS);
            if conn.session.wants_notices() {
                let owed = [conn.outbox.take_drops(), conn.outbox.take_merged()];
                for notice in owed.into_iter().flatten() {
                    conn.outbox.notice(&notice, source, now.unix_ns);
                    flush.push(token);
                }
                conn.outbox.confirm_owed(source, now.unix_ns);
            }
            if conn.session.wants_heartbeats() && conn.outbox.is_empty() {
                conn.outbox.heartbeat_if_due(source, now.instant, now.unix_ns);
                flush.push(token);
            }
        }
        for token in flush {
            self.flush(token, now);
        }
        for token in stalled {
            let Some(conn) = self.conns.get(token) else { continue };
            let relay = &self.relays[conn.relay];
            let Undelivered { frames, first, last } = conn.outbox.undelivered();
            relay.metrics.slow_disconnects.fetch_add(1, Relaxed);
            relay.metrics.dropped_frames.fetch_add(frames, Relaxed);
            warn!(
                "{}: connection {} stalled for {stall:?}: disconnected, {frames} frames lost (sequences {first}..={last})",
                relay.config.name, conn.id
            );
            self.close(token, CloseReason::Stalled);
        }
    }

    /// Starts the stop: nothing more is read, notice 5 goes to those who asked.
    pub(crate) fn begin_stop(&mut self, now: Now) {
        self.stopping = true;
        let tokens: Vec<usize> = self.conns.iter().map(|(t, _)| t).collect();
        for token in tokens {
            // Notice 5 goes where there is room for it: a stop never closes a connection.
            if let Some(conn) = self.conns.get_mut(token)
                && conn.outbox.has_notice_room()
            {
                let source = self.relays[conn.relay].config.source.raw();
                let text = "relay stopping".to_string();
                conn.notice_if_asked(Notice { code: notice::STOPPING, sequence: 0, text }, source, now);
            }
            self.flush(token, now);
        }
    }

    /// Every queue is written out, and no intake waits for its audit records.
    pub(crate) fn flushed(&self) -> bool {
        self.trail.is_empty() && self.conns.iter().all(|(_, c)| c.outbox.is_empty())
    }

    /// Logs, per subscriber, the frames left undelivered; returns whether any belong to a
    /// lossless relay, or an intake still waits for its audit records (exit status 3).
    pub(crate) fn report_undelivered(&self) -> bool {
        // An intake whose records were never written was never carried out (its frames, or its
        // Subscribe, took no effect): a failure, whatever it held.
        let mut lost = !self.trail.is_empty();
        if lost {
            let held = self.trail.held_frames();
            error!("{held} accepted frames were not delivered: their audit records could not be written");
        }
        for (_, conn) in &self.conns {
            let Undelivered { frames, first, last } = conn.outbox.undelivered();
            if frames == 0 {
                continue;
            }
            let relay = &self.relays[conn.relay];
            warn!(
                "{}: stop deadline passed with {frames} frames undelivered to connection {} ({}), sequences {first}..={last}",
                relay.config.name, conn.id, conn.peer
            );
            lost |= relay.logic.lossless();
        }
        lost
    }

    /// The next message for another shard: `(shard, message)`.
    pub(crate) fn poll_message(&mut self) -> Option<(usize, Msg)> {
        self.messages.pop_front()
    }

    /// The next thing the I/O layer must do.
    pub(crate) fn poll_event(&mut self) -> Option<Event<S>> {
        self.events.pop_front()
    }
}
