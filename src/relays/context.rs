//! One relay (domain) as every shard sees it, and who may connect to it.

use std::fmt;
use std::sync::Arc;

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
}

impl<L: RelayLogic> RelayContext<L> {
    /// A relay of `logic` with `config` and zeroed counters.
    pub fn new(logic: L, config: RelayConfig) -> Self {
        let metrics = Arc::new(Metrics::new(&config.name));
        RelayContext { logic, config, metrics }
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
