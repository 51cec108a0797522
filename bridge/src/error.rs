//! What stops the bridge, one variant per cause, each naming its input (the flag, file, URL,
//! subject, stream or node) and the fix. Tasks report one through [`Fatal`]; `main` logs it
//! once and exits with [`BridgeError::exit_code`].

use std::io;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use tokio::sync::mpsc;
use torq::protocol::RelayDomain;

use crate::config::ConfigError;
use crate::presence::Rival;

/// Where a task reports what stops the bridge (the first one received does).
pub type Fatal = mpsc::UnboundedSender<BridgeError>;

/// Why the bridge stops with an error.
#[derive(Debug, thiserror::Error)]
pub enum BridgeError {
    /// A flag, a key of the file or a file named by one is wrong (checked at start).
    #[error(transparent)]
    Config(#[from] ConfigError),
    /// The runtime's threads cannot be started.
    #[error("cannot start the bridge's runtime: {0}")]
    Runtime(#[source] io::Error),
    /// A `--nats` URL the NATS client cannot read.
    #[error("--nats {url:?}: {source}")]
    NatsUrl {
        /// The URL.
        url: String,
        /// Why.
        source: io::Error,
    },
    /// The `--nats-creds` file, checked at start, is no longer a credentials file (it changed
    /// since).
    #[error("--nats-creds {}: not a NATS credentials file ({source})", .file.display())]
    Credentials {
        /// The file.
        file: PathBuf,
        /// Why.
        source: io::Error,
    },
    /// The NATS client refuses the servers or the options.
    #[error("cannot use the NATS server(s) {urls}: {source}")]
    Connect {
        /// `--nats`, comma-separated.
        urls: String,
        /// Why.
        source: async_nats::ConnectError,
    },
    /// NATS refused the credentials at the bridge's first connection: nothing was done yet,
    /// and no retry helps before someone changes the credentials or the server.
    #[error(
        "NATS at {urls} refused to let this bridge in ({reason}) with {login}: give the credentials the \
         server's configuration names for this node (its users or authorization block)"
    )]
    Refused {
        /// `--nats`, comma-separated.
        urls: String,
        /// The server's words (`authorization violation`).
        reason: String,
        /// Who the bridge said it was ([`Login::describe`](crate::config::Login::describe)).
        login: String,
    },
    /// NATS refused this node's control subject (`torq-bridge.<node>.>`): the credentials are
    /// another node's, or the server's configuration forgot the subject.
    #[error(
        "NATS refused {login} the subject of this node's bridges ({text}): the credentials are another \
         node's (--node {node}?), or the server's configuration must let node {node}'s user publish and \
         subscribe to torq-bridge.{node}.> (see config/nats-server.conf)"
    )]
    ControlSubjectRefused {
        /// Who the bridge said it was.
        login: String,
        /// The server's words.
        text: String,
        /// `--node`.
        node: String,
    },
    /// `--metrics-addr` cannot be bound.
    #[error(
        "cannot serve metrics on {addr}: {source} (choose another --metrics-addr, or port 0 for any free one)"
    )]
    MetricsBind {
        /// `--metrics-addr`.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The metrics socket, bound, cannot say its address.
    #[error("cannot serve metrics on {addr}: {source}")]
    MetricsAddress {
        /// `--metrics-addr`.
        addr: SocketAddr,
        /// Why.
        source: io::Error,
    },
    /// The check for another bridge cannot subscribe to the control subject.
    #[error("cannot subscribe to {subject} to check for another bridge of this node and domain: {source}")]
    ControlSubscribe {
        /// `torq-bridge.<node>.<domain>`.
        subject: String,
        /// Why.
        source: async_nats::SubscribeError,
    },
    /// The check for another bridge never heard its own question: the NATS user may not use
    /// the control subject (or connects with `no_echo`).
    #[error(
        "the check for another bridge of node {node} and domain {domain} got no message back on {subject} \
         within {within:?} from the NATS server(s) {urls}: let this bridge's NATS user publish and subscribe \
         to torq-bridge.> (and do not connect with no_echo)"
    )]
    NoEcho {
        /// `--node`.
        node: String,
        /// The domain's subject token.
        domain: &'static str,
        /// `torq-bridge.<node>.<domain>`.
        subject: String,
        /// How long it waited.
        within: Duration,
        /// `--nats`, comma-separated.
        urls: String,
    },
    /// NATS ended the control subject's subscription.
    #[error("NATS ended the subscription to {subject}")]
    ControlEnded {
        /// `torq-bridge.<node>.<domain>`.
        subject: String,
    },
    /// Another bridge of this node and domain runs (one bridge per node and domain).
    #[error("{0}")]
    AnotherBridge(Rival),
    /// The check for another bridge ended before it decided (its task was lost).
    #[error("the check for another bridge of this node and domain ended without a verdict")]
    NoVerdict,
    /// The server's permissions refuse this node's execution stream.
    #[error(
        "NATS refused {login} the stream {stream} ({refusal}): the server's configuration must let node \
         {node}'s user create it (see config/nats-server.conf), or --node or the credentials are another \
         node's"
    )]
    StreamRefused {
        /// Who the bridge said it was.
        login: String,
        /// `TORQ_<node>_EXECUTION`.
        stream: String,
        /// The server's words.
        refusal: String,
        /// `--node`.
        node: String,
    },
    /// This node's execution stream could not be made within 30 s.
    #[error(
        "cannot create the stream {stream} on {urls} within 30 s: {source} (is the server reachable, with \
         JetStream enabled: nats-server -js? may {login} create it?)"
    )]
    StreamTimeout {
        /// `TORQ_<node>_EXECUTION`.
        stream: String,
        /// `--nats`, comma-separated.
        urls: String,
        /// Who the bridge said it was.
        login: String,
        /// The last try's error.
        source: async_nats::Error,
    },
    /// The relay at `--socket` forwards frames of another domain than `--domain`.
    #[error(
        "the relay at {} forwards {found:?} frames, not {domain}: --socket or --domain is wrong (nothing was \
         exported)",
        .socket.display()
    )]
    WrongRelay {
        /// `--socket`.
        socket: PathBuf,
        /// The domain of its first frame of another domain.
        found: RelayDomain,
        /// `--domain`'s subject token.
        domain: &'static str,
    },
    /// The thread that writes into the relay cannot be started.
    #[error("cannot start the import thread: {0}")]
    ImportThread(#[source] io::Error),
    /// An import subscription NATS refuses.
    #[error("cannot subscribe to {subject}: {source}")]
    Subscribe {
        /// `torq.<node|*>.<domain>.>`.
        subject: String,
        /// Why.
        source: async_nats::SubscribeError,
    },
    /// An execution import without its cursor could write frames twice (the cursor names its
    /// file; locked: another bridge of this node imports).
    #[error("import: cannot keep the import cursor of node {node}: {source}")]
    Cursor {
        /// The node imported.
        node: String,
        /// Why.
        source: io::Error,
    },
}

impl BridgeError {
    /// The process's exit status for it: 2 for a mistake in the flags, the file or a file they
    /// name (nothing was started), 1 for the rest.
    pub fn exit_code(&self) -> u8 {
        match self {
            BridgeError::Config(_) => 2,
            _ => 1,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_mistake_in_the_settings_exits_2_and_the_rest_1() {
        let config = ConfigError::Invalid { setting: "--queue", problem: "0 frames".into() };
        assert_eq!(BridgeError::from(config).exit_code(), 2);
        let error =
            BridgeError::Cursor { node: "b".into(), source: io::Error::other("locked by another bridge") };
        assert_eq!(error.exit_code(), 1);
        assert_eq!(
            error.to_string(),
            "import: cannot keep the import cursor of node b: locked by another bridge"
        );
        let wrong = BridgeError::WrongRelay {
            socket: "/tmp/torq/md.sock".into(),
            found: RelayDomain::MarketData,
            domain: "signal",
        };
        assert_eq!(
            wrong.to_string(),
            "the relay at /tmp/torq/md.sock forwards MarketData frames, not signal: --socket or --domain is wrong \
             (nothing was exported)"
        );
        assert_eq!(BridgeError::NoVerdict.exit_code(), 1);
    }
}
