//! One bridge per node and domain, across hosts: before it exports or imports anything a bridge
//! asks through NATS whether another bridge of its `--node` and `--domain` runs, and stops
//! (exit 1) naming it — its host, pid and start — if one does. Two exporters of one node would
//! publish every frame twice; two execution importers would write every frame twice, out of
//! order (each with its own cursor). The execution import's cursor lock only sees bridges
//! sharing a state directory on one host; NATS sees them all.
//!
//! # Design
//!
//! - **The subject**: `torq-bridge.<node>.<domain>`, a prefix of its own: it never matches a
//!   frame's subject (`torq.<node>.<domain>.<type>.<source>`), an import's subscription
//!   (`torq.<node|*>.<domain>.>`) or an execution stream's (`torq.<node>.execution.>`), so no
//!   importer sees it and no stream stores it. Each message is one line of text: `ask` or
//!   `here`, the sender's phase (`checking` or `running`) and its identity: a random instance
//!   id, the wall-clock time it started, its pid and its host name ([`encode`]).
//! - **At start** the bridge waits for NATS (serving its metrics, stopping on a signal), then,
//!   `checking`, subscribes, waits for the server to confirm the subscription, and sends `ask`
//!   every 300 ms. It checks for at least a second, and until it has received one of its own
//!   messages back in that time: the proof that it can both publish and subscribe on the subject
//!   (a NATS user without that permission is an error naming it, after 10 s). A lost connection
//!   starts the check again. Then it is `running`, and starts its export and import.
//! - **Every bridge answers** another's `ask` with `here`, and a running bridge says `here`
//!   every 2 s, so two bridges that did not see each other at start (one behind a NATS
//!   partition, or reconnecting) find each other within seconds.
//! - **Who stops** on a message of another instance ([`gives_way`]): a checking bridge stops for
//!   a running one, whatever their clocks say (a newcomer never stops a bridge that is doing its
//!   work); of two checking bridges (started together) or two running ones, the one that started
//!   later stops, the larger instance id on a tie. A running bridge that stops says why and
//!   exits 1 like one refused at start.
//! - **Why exactly one of two remains.** At least one: a bridge stops only for one ranked before
//!   it, or for one running while it checks; and a bridge that stops never runs. (If each
//!   stopped for the other by phase, each would have run before the other checked; by rank,
//!   each would rank first.) At most one: each subscribes, confirmed by the server, before it
//!   asks, so of two that start together the one that subscribed last asks when the other
//!   listens already: the other stops, or answers and the asker stops. Asking again for a
//!   second covers a cluster, whose servers learn of a subscription a little later; two that
//!   still missed each other meet at the next `here`.
//! - **Stopping**: a bridge that is told to stop (SIGTERM) stops answering at once, so the bridge
//!   started to replace it runs while the old one finishes its stop.
//! - **Limits**: bridges that reach no common NATS server (separate clusters, a partition that
//!   lasts) cannot see each other; the execution import's cursor lock still stops a second
//!   importer on the same state directory. Anyone who may publish on `torq-bridge.>` can stop a
//!   bridge, as anyone who may publish on `torq.>` can send it frames: NATS permissions are the
//!   guard. A host lost without closing its connections leaves a subscription nobody answers on:
//!   it holds no one back.

use std::fmt;
use std::hash::{BuildHasher, Hasher};
use std::time::Duration;

use async_nats::connection::State;
use bytes::Bytes;
use futures::StreamExt;
use log::{debug, info, warn};
use tokio::sync::oneshot;
use tokio::time::{Instant, MissedTickBehavior};

use crate::config::{Config, Domain};
use crate::error::{BridgeError, Fatal};
use crate::shutdown::{Shutdown, Tasks};

/// How often a checking bridge asks.
const ASK_EVERY: Duration = Duration::from_millis(300);
/// How long, at least, a bridge checks before it runs.
const CHECK_FOR: Duration = Duration::from_secs(1);
/// How long a connected bridge waits for its own message before it gives up.
const ECHO_WITHIN: Duration = Duration::from_secs(10);
/// How often a running bridge says that it runs.
const HERE_EVERY: Duration = Duration::from_secs(2);
/// The first word of every message.
const MAGIC: &str = "torq-bridge-presence/1";

/// The control subject of `node`'s bridge of `domain`.
pub fn control_subject(node: &str, domain: Domain) -> String {
    format!("torq-bridge.{node}.{}", domain.token())
}

/// Who a bridge is.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    /// Random, per process: tells apart two started at the same nanosecond, and this bridge's
    /// own messages.
    pub instance: u64,
    /// Its start, in nanoseconds since the Unix epoch (its host's clock).
    pub started_ns: u64,
    /// Its process id.
    pub pid: u32,
    /// Its host name.
    pub host: String,
}

impl Identity {
    /// This process, started at `started_ns`.
    pub fn of_this_process(started_ns: u64) -> Identity {
        let pid = std::process::id();
        let mut random = std::hash::RandomState::new().build_hasher();
        random.write_u64(started_ns);
        random.write_u32(pid);
        let host =
            rustix::system::uname().nodename().to_string_lossy().split_whitespace().collect::<String>();
        Identity {
            instance: random.finish(),
            started_ns,
            pid,
            host: if host.is_empty() { "?".into() } else { host },
        }
    }

    /// The order of start: the earlier first, the smaller instance id on a tie.
    fn rank(&self) -> (u64, u64) {
        (self.started_ns, self.instance)
    }
}

impl fmt::Display for Identity {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "pid {} on host {}, since {}", self.pid, self.host, utc(self.started_ns))
    }
}

/// Where a bridge is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Phase {
    /// Asking whether another runs; exporting and importing nothing yet.
    Checking,
    /// Exporting and importing.
    Running,
}

/// A bridge's phase and identity, as a message says them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Claim {
    /// Its phase when it sent the message.
    pub phase: Phase,
    /// Who.
    pub identity: Identity,
}

/// What a message asks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Every other bridge of the node and domain: say `here`.
    Ask,
    /// This bridge is here.
    Here,
}

/// Whether `me` stops for `other`, another bridge of its node and domain (see the module's
/// "Who stops").
pub fn gives_way(me: &Claim, other: &Claim) -> bool {
    match (me.phase, other.phase) {
        (Phase::Checking, Phase::Running) => true,
        (Phase::Running, Phase::Checking) => false,
        _ => other.identity.rank() < me.identity.rank(),
    }
}

/// Another bridge of this node and domain, that this one stops for ([`gives_way`]): its
/// display says why, naming the other (host, pid, start) and the fix.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Rival {
    /// This bridge's phase when it met the other.
    pub me: Phase,
    /// The other bridge.
    pub other: Claim,
    /// The node.
    pub node: String,
    /// The domain's subject token.
    pub domain: &'static str,
}

impl fmt::Display for Rival {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let Rival { me, other, node, domain } = self;
        let who = format!("another bridge of node {node} and domain {domain}");
        match (me, other.phase) {
            (Phase::Checking, Phase::Running) => write!(
                f,
                "{who} is running: {}; a second one would carry its frames twice, so this one does not start \
                 (stop that bridge first, or give this host its own --node)",
                other.identity
            ),
            (Phase::Checking, Phase::Checking) => write!(
                f,
                "{who} is starting at the same moment: {}; the one started first runs, so this one does not \
                 start (one bridge per node and domain: give each host its own --node)",
                other.identity
            ),
            (Phase::Running, _) => write!(
                f,
                "{who} is running too: {}, started before this one (they did not see each other at start: NATS \
                 was out of reach of one of them); this one stops, so that frames stop crossing twice (one \
                 bridge per node and domain: give each host its own --node)",
                other.identity
            ),
        }
    }
}

/// The message `kind` of `claim`: one line of text.
pub fn encode(kind: Kind, claim: &Claim) -> Bytes {
    let kind = match kind {
        Kind::Ask => "ask",
        Kind::Here => "here",
    };
    let phase = match claim.phase {
        Phase::Checking => "checking",
        Phase::Running => "running",
    };
    let Identity { instance, started_ns, pid, host } = &claim.identity;
    Bytes::from(format!(
        "{MAGIC} {kind} {phase} instance={instance:016x} started_ns={started_ns} pid={pid} host={host}"
    ))
}

/// Why a message on the control subject is not a bridge's (the text quoted, when it is text).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Malformed {
    /// Not UTF-8.
    #[error("not text")]
    NotText,
    /// Not the seven fields of [`encode`].
    #[error("{0:?}: not 7 fields")]
    Fields(String),
    /// Another first word than [`MAGIC`].
    #[error("{0:?}: not {MAGIC}")]
    Magic(String),
    /// Neither `ask` nor `here`.
    #[error("{text:?}: {word:?} is neither ask nor here")]
    Kind {
        /// The message.
        text: String,
        /// The word in its place.
        word: String,
    },
    /// Neither `checking` nor `running`.
    #[error("{text:?}: {word:?} is neither checking nor running")]
    Phase {
        /// The message.
        text: String,
        /// The word in its place.
        word: String,
    },
    /// A field without its `name=`.
    #[error("{text:?}: no {name}")]
    Field {
        /// The message.
        text: String,
        /// The field's name.
        name: &'static str,
    },
    /// A number that is not one.
    #[error("{text:?}: {source}")]
    Number {
        /// The message.
        text: String,
        /// Why.
        source: std::num::ParseIntError,
    },
    /// A pid over 32 bits.
    #[error("{text:?}: {source}")]
    Pid {
        /// The message.
        text: String,
        /// Why.
        source: std::num::TryFromIntError,
    },
}

/// A message of [`encode`].
///
/// # Errors
///
/// [`Malformed`]: what is wrong with it, when it is not one.
pub fn decode(payload: &[u8]) -> Result<(Kind, Claim), Malformed> {
    let text = std::str::from_utf8(payload).map_err(|_| Malformed::NotText)?;
    let fields: Vec<&str> = text.split(' ').collect();
    let [magic, kind, phase, instance, started_ns, pid, host] = fields[..] else {
        return Err(Malformed::Fields(text.into()));
    };
    if magic != MAGIC {
        return Err(Malformed::Magic(text.into()));
    }
    let kind = match kind {
        "ask" => Kind::Ask,
        "here" => Kind::Here,
        _ => return Err(Malformed::Kind { text: text.into(), word: kind.into() }),
    };
    let phase = match phase {
        "checking" => Phase::Checking,
        "running" => Phase::Running,
        _ => return Err(Malformed::Phase { text: text.into(), word: phase.into() }),
    };
    fn field<'a>(text: &str, field: &'a str, name: &'static str) -> Result<&'a str, Malformed> {
        field
            .strip_prefix(name)
            .and_then(|v| v.strip_prefix('='))
            .ok_or_else(|| Malformed::Field { text: text.into(), name })
    }
    let number = |value: &str, radix| {
        u64::from_str_radix(value, radix).map_err(|source| Malformed::Number { text: text.into(), source })
    };
    let identity = Identity {
        instance: number(field(text, instance, "instance")?, 16)?,
        started_ns: number(field(text, started_ns, "started_ns")?, 10)?,
        pid: u32::try_from(number(field(text, pid, "pid")?, 10)?)
            .map_err(|source| Malformed::Pid { text: text.into(), source })?,
        host: field(text, host, "host")?.to_string(),
    };
    Ok((kind, Claim { phase, identity }))
}

/// `ns` since the Unix epoch as UTC, to the millisecond (`2024-05-01T12:00:00.123Z`).
pub fn utc(ns: u64) -> String {
    let (secs, millis) = (ns / 1_000_000_000, ns / 1_000_000 % 1000);
    let (days, day) = (secs / 86_400, secs % 86_400);
    // Days to a civil date (H. Hinnant's algorithm), the epoch and after.
    let z = days + 719_468;
    let (era, doe) = (z / 146_097, z % 146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + u64::from(m <= 2);
    format!("{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{millis:03}Z", day / 3600, day % 3600 / 60, day % 60)
}

/// Waits for NATS, then checks that no other bridge of `config`'s node and domain runs; once
/// none does, returns while a task of `tasks` goes on answering for this one until the stop
/// signal (a bridge started to replace this one need not wait for the end of its stop).
/// Another found later (both running) that started earlier is reported through `fatal`.
///
/// # Errors
///
/// [`BridgeError::AnotherBridge`] naming the other bridge (its host, pid and start), or what
/// kept the check from being made.
pub async fn claim(
    client: async_nats::Client,
    config: &Config,
    me: Identity,
    fatal: Fatal,
    shutdown: Shutdown,
    tasks: &mut Tasks,
) -> Result<(), BridgeError> {
    let (verdict, decided) = oneshot::channel();
    let watcher = Watcher {
        client,
        subject: control_subject(&config.node, config.domain),
        node: config.node.clone(),
        domain: config.domain.token(),
        urls: config.nats.join(","),
        me: Claim { phase: Phase::Checking, identity: me },
        told_of_strangers: false,
    };
    tasks.spawn(shutdown.until_stopped(watcher.run(verdict, fatal)));
    decided.await.unwrap_or(Err(BridgeError::NoVerdict))
}

/// The task that checks, then answers.
struct Watcher {
    client: async_nats::Client,
    subject: String,
    node: String,
    domain: &'static str,
    urls: String,
    me: Claim,
    /// Whether a message not a bridge's was logged at warning level already.
    told_of_strangers: bool,
}

impl Watcher {
    async fn run(mut self, verdict: oneshot::Sender<Result<(), BridgeError>>, fatal: Fatal) {
        let mut verdict = Some(verdict);
        if let Err(e) = self.watch(&mut verdict).await {
            match verdict.take() {
                Some(verdict) => {
                    let _ = verdict.send(Err(e));
                }
                None => {
                    let _ = fatal.send(e);
                }
            }
        }
    }

    /// Checks, then answers, until this bridge has to stop (the error says why).
    async fn watch(
        &mut self,
        verdict: &mut Option<oneshot::Sender<Result<(), BridgeError>>>,
    ) -> Result<(), BridgeError> {
        self.connected().await;
        let subject = self.subject.clone();
        let mut messages = self
            .client
            .subscribe(subject.clone())
            .await
            .map_err(|source| BridgeError::ControlSubscribe { subject: subject.clone(), source })?;
        if let Err(e) = self.client.flush().await {
            debug!("presence: flushing the subscription to {subject}: {e}");
        }
        debug!(
            "presence: checking on {subject} for another bridge of node {} and domain {}",
            self.node, self.domain
        );
        let mut ticks = tokio::time::interval(ASK_EVERY);
        ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // The check counts from here, and again from every connection made again while it goes
        // on (what was said meanwhile may be lost).
        let statistics = self.client.statistics();
        let connects = || statistics.connects.load(std::sync::atomic::Ordering::Relaxed);
        let (mut since, mut heard_myself, mut connection) = (Instant::now(), false, connects());
        loop {
            tokio::select! {
                _ = ticks.tick() => {
                    if self.client.connection_state() != State::Connected || connects() != connection {
                        (since, heard_myself, connection) = (Instant::now(), false, connects());
                        continue;
                    }
                    match self.me.phase {
                        Phase::Checking if heard_myself && since.elapsed() >= CHECK_FOR => {
                            self.me.phase = Phase::Running;
                            ticks = tokio::time::interval(HERE_EVERY);
                            ticks.set_missed_tick_behavior(MissedTickBehavior::Delay);
                            info!(
                                "no other bridge of node {} and domain {} runs (asked on {subject}); this one runs: {}",
                                self.node, self.domain, self.me.identity
                            );
                            if let Some(verdict) = verdict.take() {
                                let _ = verdict.send(Ok(()));
                            }
                        }
                        Phase::Checking if since.elapsed() >= ECHO_WITHIN => {
                            return Err(BridgeError::NoEcho {
                                node: self.node.clone(),
                                domain: self.domain,
                                subject,
                                within: ECHO_WITHIN,
                                urls: self.urls.clone(),
                            });
                        }
                        Phase::Checking => self.say(Kind::Ask).await,
                        Phase::Running => self.say(Kind::Here).await,
                    }
                }
                message = messages.next() => match message {
                    Some(message) => {
                        if self.hear(&message.payload).await? {
                            heard_myself = true;
                        }
                    }
                    None => return Err(BridgeError::ControlEnded { subject }),
                },
            }
        }
    }

    /// Handles a message on the control subject: another bridge's (this one stops for it, or
    /// answers its question) or a stranger's (ignored). Whether it was this bridge's own.
    async fn hear(&mut self, payload: &[u8]) -> Result<bool, BridgeError> {
        match decode(payload) {
            Ok((_, other)) if other.identity.instance == self.me.identity.instance => return Ok(true),
            Ok((kind, other)) => {
                debug!("presence: {kind:?} from {} ({:?})", other.identity, other.phase);
                if gives_way(&self.me, &other) {
                    let (me, node, domain) = (self.me.phase, self.node.clone(), self.domain);
                    return Err(BridgeError::AnotherBridge(Rival { me, other, node, domain }));
                }
                if kind == Kind::Ask {
                    self.say(Kind::Here).await;
                }
            }
            Err(e) => {
                let text =
                    format!("presence: a message on {} that is not a bridge's: {e}; ignored", self.subject);
                if std::mem::replace(&mut self.told_of_strangers, true) {
                    debug!("{text}");
                } else {
                    warn!("{text}");
                }
            }
        }
        Ok(false)
    }

    /// Waits until the client is connected, saying why the bridge waits.
    async fn connected(&self) {
        let start = Instant::now();
        let mut told = false;
        while self.client.connection_state() != State::Connected {
            if !told && start.elapsed() >= Duration::from_secs(1) {
                told = true;
                info!(
                    "waiting for NATS at {} to check that no other bridge of node {} and domain {} runs; \
                     exporting and importing nothing until then",
                    self.urls, self.node, self.domain
                );
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    }

    async fn say(&self, kind: Kind) {
        if let Err(e) = self.client.publish(self.subject.clone(), encode(kind, &self.me)).await {
            debug!("presence: cannot publish on {}: {e}", self.subject);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::subject::{export_subject, import_subject, node_of};

    fn claim(phase: Phase, started_ns: u64, instance: u64) -> Claim {
        Claim { phase, identity: Identity { instance, started_ns, pid: 7, host: "h".into() } }
    }

    /// Whether `subject` matches the NATS subscription `filter` (`*` a token, `>` the rest).
    fn matches(filter: &str, subject: &str) -> bool {
        let (mut filter, mut subject) = (filter.split('.'), subject.split('.'));
        loop {
            match (filter.next(), subject.next()) {
                (Some(">"), Some(_)) => return true,
                (Some(f), Some(s)) if f == "*" || f == s => {}
                (None, None) => return true,
                _ => return false,
            }
        }
    }

    #[test]
    fn the_control_subject_is_no_frame_subject_and_no_import_takes_it() {
        let control = control_subject("a", Domain::MarketData);
        assert_eq!(control, "torq-bridge.a.market_data");
        assert_eq!(node_of(&control), None, "not a frame subject");
        for domain in [Domain::MarketData, Domain::Signal, Domain::Execution] {
            let control = control_subject("a", domain);
            for import in [import_subject(None, domain), import_subject(Some("a"), domain)] {
                assert!(!matches(&import, &control), "{import} takes {control}");
            }
            // The execution stream's subjects.
            assert!(!matches("torq.a.execution.>", &control));
        }
        // (The matcher itself.)
        let frame = export_subject("a", Domain::Signal, &[]);
        assert!(matches(&import_subject(None, Domain::Signal), &frame), "{frame}");
        assert!(matches("torq-bridge.a.signal", &control_subject("a", Domain::Signal)));
    }

    #[test]
    fn exactly_one_of_two_gives_way_whatever_their_phases_and_clocks() {
        let phases = [Phase::Checking, Phase::Running];
        for (me_phase, other_phase) in phases.iter().flat_map(|a| phases.iter().map(move |b| (*a, *b))) {
            for (me_start, other_start, me_id, other_id) in
                [(1, 2, 5, 5), (2, 1, 5, 5), (3, 3, 4, 9), (3, 3, 9, 4)]
            {
                let me = claim(me_phase, me_start, me_id);
                let other = claim(other_phase, other_start, other_id);
                assert_ne!(gives_way(&me, &other), gives_way(&other, &me), "{me:?} / {other:?}");
            }
        }
        // A newcomer gives way to a running bridge even with an earlier clock.
        assert!(gives_way(&claim(Phase::Checking, 1, 1), &claim(Phase::Running, 9, 9)));
        assert!(!gives_way(&claim(Phase::Running, 9, 9), &claim(Phase::Checking, 1, 1)));
        // Started together, or both running: the later start, then the larger instance id.
        assert!(gives_way(&claim(Phase::Checking, 2, 1), &claim(Phase::Checking, 1, 9)));
        assert!(gives_way(&claim(Phase::Checking, 1, 9), &claim(Phase::Checking, 1, 1)));
        assert!(gives_way(&claim(Phase::Running, 2, 1), &claim(Phase::Running, 1, 9)));
    }

    #[test]
    fn messages_say_the_phase_and_identity_and_others_are_refused() {
        let me = Claim {
            phase: Phase::Running,
            identity: Identity {
                instance: 0xab,
                started_ns: 1_700_000_000_123_456_789,
                pid: 4242,
                host: "ny4-a".into(),
            },
        };
        let bytes = encode(Kind::Here, &me);
        assert_eq!(
            &bytes[..],
            b"torq-bridge-presence/1 here running instance=00000000000000ab started_ns=1700000000123456789 pid=4242 \
              host=ny4-a"
        );
        assert_eq!(decode(&bytes), Ok((Kind::Here, me.clone())));
        let ask = encode(Kind::Ask, &Claim { phase: Phase::Checking, ..me.clone() });
        assert_eq!(decode(&ask).map(|(kind, claim)| (kind, claim.phase)), Ok((Kind::Ask, Phase::Checking)));
        for bad in [
            &b"hello"[..],
            b"torq-bridge-presence/2 here running instance=ab started_ns=1 pid=1 host=h",
            b"torq-bridge-presence/1 hello running instance=ab started_ns=1 pid=1 host=h",
            b"torq-bridge-presence/1 here walking instance=ab started_ns=1 pid=1 host=h",
            b"torq-bridge-presence/1 here running instance=xyz started_ns=1 pid=1 host=h",
            b"torq-bridge-presence/1 here running instance=ab started=1 pid=1 host=h",
            b"torq-bridge-presence/1 here running instance=ab started_ns=1 pid=99999999999 host=h",
            b"torq-bridge-presence/1 here running instance=ab started_ns=1 pid=1 host=h extra",
            b"\xff",
        ] {
            assert!(decode(bad).is_err(), "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn the_reason_names_the_other_bridge_and_the_fix() {
        let reason = |me, other: &Claim, node: &str, domain| {
            Rival { me, other: other.clone(), node: node.into(), domain }.to_string()
        };
        let other = claim(Phase::Running, 1_700_000_000_000_000_000, 1);
        let text = reason(Phase::Checking, &other, "a", "market_data");
        assert!(
            text.starts_with(
                "another bridge of node a and domain market_data is running: pid 7 on host h, since \
                 2023-11-14T22:13:20.000Z;"
            ),
            "{text}"
        );
        assert!(text.contains("--node"), "{text}");
        let text = reason(Phase::Running, &other, "a", "market_data");
        assert!(text.contains("is running too: pid 7 on host h"), "{text}");
        assert!(
            reason(Phase::Checking, &claim(Phase::Checking, 0, 1), "a", "signal").contains("same moment")
        );
    }

    #[test]
    fn utc_times() {
        assert_eq!(utc(0), "1970-01-01T00:00:00.000Z");
        assert_eq!(utc(951_782_400_000_000_000), "2000-02-29T00:00:00.000Z");
        assert_eq!(utc(951_868_799_999_000_000), "2000-02-29T23:59:59.999Z");
        assert_eq!(utc(1_709_251_199_000_000_000), "2024-02-29T23:59:59.000Z");
        assert_eq!(utc(1_735_689_600_000_000_000), "2025-01-01T00:00:00.000Z");
    }

    #[test]
    fn this_process_has_a_host_and_a_random_instance() {
        let (one, two) = (Identity::of_this_process(5), Identity::of_this_process(5));
        assert_eq!((one.pid, one.started_ns), (std::process::id(), 5));
        assert!(!one.host.is_empty() && !one.host.contains(' '), "{one:?}");
        assert_ne!(one.instance, two.instance, "two bridges started together are told apart");
    }
}
