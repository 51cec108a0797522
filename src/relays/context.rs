//! One relay (domain) as every shard sees it, and who may connect to it.

use std::fmt;
use std::sync::Arc;
use std::sync::atomic::AtomicU32;
use std::sync::atomic::Ordering::{Acquire, Release};

use super::logic::RelayLogic;
use super::{Metrics, RelayConfig};

/// One relay (domain) as every shard sees it: its logic, settings and counters.
#[derive(Debug)]
pub struct RelayContext<L> {
    /// The domain's decisions.
    pub logic: L,
    /// The relay's settings.
    pub config: RelayConfig,
    /// Its counters, shared by every shard.
    pub metrics: Arc<Metrics>,
    /// Per shard, its connections of this relay that subscribe or may yet (a connection
    /// announced by [`RelayContext::expect`] and not yet judged a publisher): a shard sends a
    /// batch only to shards where this is not 0. Written by the shard that owns the
    /// connections (and the driver handing one over), read by the shards that forward.
    interest: [AtomicU32; MAX_SHARDS],
    /// Subscriptions with filters, on every shard: while there is none, the intake computes
    /// no routing keys.
    pub(crate) filtered: AtomicU32,
    /// Bytes of this relay's broadcast log (PROTOCOL.md §7), 0 when it offers none. Set by the
    /// start-up before the shards share the context.
    pub shm_bytes: u64,
}

/// The shard that writes every relay's broadcast log: the single writer. Shards with a reader
/// raise its interest, so every batch reaches it.
pub const LOG_SHARD: usize = 0;

/// Shards whose interest is tracked; a shard past them is sent every batch.
pub(crate) const MAX_SHARDS: usize = 64;

impl<L: RelayLogic> RelayContext<L> {
    /// A relay of `logic` with `config` and zeroed counters.
    pub fn new(logic: L, config: RelayConfig) -> Self {
        let metrics = Arc::new(Metrics::new(&config.name, config.domain));
        let interest = std::array::from_fn(|_| AtomicU32::new(0));
        RelayContext { logic, config, metrics, interest, filtered: AtomicU32::new(0), shm_bytes: 0 }
    }

    /// Announces a connection of this relay that `shard` is about to [`insert`]: from now on
    /// batches of this relay forwarded anywhere go to that shard too, so the connection (a
    /// subscriber until it says otherwise) misses none accepted after its hand-over. The driver
    /// calls it before handing a connection over (the reactor that accepts, the simulation).
    ///
    /// [`insert`]: super::Shard::insert
    pub fn expect(&self, shard: usize) {
        if let Some(count) = self.interest.get(shard) {
            count.fetch_add(1, Release);
        }
    }

    /// One connection of `shard` stopped being (or being possibly) a subscriber.
    pub(crate) fn lose_interest(&self, shard: usize) {
        if let Some(count) = self.interest.get(shard) {
            count.fetch_sub(1, Release);
        }
    }

    /// Whether `shard` holds a connection of this relay that subscribes (or may yet).
    pub(crate) fn interested(&self, shard: usize) -> bool {
        self.interest.get(shard).is_none_or(|count| count.load(Acquire) > 0)
    }

    /// Whether a peer may connect (the connect allow-lists).
    pub fn admits(&self, peer: &Peer) -> bool {
        let config = &self.config;
        config.connect_uids.as_ref().is_none_or(|uids| uids.contains(&peer.uid))
            && config.connect_gids.as_ref().is_none_or(|gids| gids.contains(&peer.gid))
    }
}

/// Credentials of the process at the other end of a connection.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Peer {
    /// The peer's process id, if known.
    pub pid: Option<i32>,
    /// The peer's effective user id at connect time.
    pub uid: u32,
    /// The peer's effective group id at connect time.
    pub gid: u32,
}

impl fmt::Display for Peer {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.pid {
            Some(pid) => write!(f, "pid={pid} uid={} gid={}", self.uid, self.gid),
            None => write!(f, "pid=? uid={} gid={}", self.uid, self.gid),
        }
    }
}
