//! The client library: talk to a relay from a Rust service without writing socket code.
//!
//! - [`FrameReader`]: bytes in, whole frames out, borrowed from its buffer (sans-IO; shared by
//!   every client and by `torq-decode`).
//! - [`Publisher`]: connects as a publisher that asks the relay to confirm every frame (or
//!   with the legacy hello), builds frames in place in its send buffer with the sequence,
//!   timestamp and checksum filled in, batches its writes, and shows back-pressure
//!   ([`Error::WouldBlock`] from the `try_` calls; the others wait, with an optional deadline).
//!   [`Publisher::settle`] waits until the relay has said what became of everything sent
//!   ([`Settlement`]); each rejection comes back as a [`Rejection`] naming the frame and the
//!   reason.
//! - [`Subscriber`]: connects with a Subscribe built from typed values and hands out
//!   [`Event`]s — frames, the relay's notices as typed values, sequence gaps, reconnections.
//! - [`Reconnect`]: exponential back-off; both clients reconnect by themselves when given one,
//!   say hello or subscribe again, and the subscriber reports [`Event::Reconnected`].
//!
//! ```no_run
//! use torq::client::{Publisher, PublisherOptions, Subscriber, SubscriberOptions, Event};
//! use torq::protocol::{RelayDomain, Trade};
//!
//! # fn main() -> Result<(), torq::client::Error> {
//! let mut subscriber = Subscriber::connect("/tmp/torq/market_data.sock", SubscriberOptions::new())?;
//! let mut publisher =
//!     Publisher::connect("/tmp/torq/market_data.sock", PublisherOptions::new(RelayDomain::MarketData, 4))?;
//! publisher.publish(|frame| frame.payload(&Trade::default()).map(|_| ()))?;
//! publisher.flush()?;
//! if let Some(Event::Frame(frame)) = subscriber.recv_timeout(std::time::Duration::from_secs(1))? {
//!     println!("sequence {} from source {}", frame.header().sequence(), frame.header().source());
//! }
//! # Ok(())
//! # }
//! ```

mod connect;
mod notice;
mod publisher;
mod reader;
mod settle;
mod shm;
mod subscriber;

use std::io;
use std::os::fd::AsFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

pub use connect::subscribe_frame;
pub use notice::Notice;
pub use publisher::{Publisher, PublisherOptions};
pub use reader::{Frame, FrameReader, FramingError};
pub use settle::{Rejection, Settlement};
pub use shm::Idle;
pub use subscriber::{Event, OwnedEvent, Subscriber, SubscriberOptions};

/// What can go wrong talking to a relay.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The relay's broadcast log (shared-memory delivery) cannot be read.
    #[error(
        "the shared-memory log of the relay at {path}: {source} (subscribe without .shm() to receive over the socket)"
    )]
    Shm {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: crate::shm::ShmError,
    },
    /// The relay's socket cannot be connected to.
    #[error(
        "cannot connect to the relay at {path}: {source} (is the relay running, and may this user open the socket?)"
    )]
    Connect {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// The relay closed the connection (and no reconnection was asked for, or it gave up).
    #[error("the relay at {path} closed the connection")]
    Closed {
        /// The socket path.
        path: PathBuf,
    },
    /// Reading from or writing to the relay failed.
    #[error("i/o error on the connection to the relay at {path}: {source}")]
    Io {
        /// The socket path.
        path: PathBuf,
        /// The cause.
        source: io::Error,
    },
    /// Options made with [`SubscriberOptions::legacy`] were given what only a Subscribe can
    /// say (a filter, heartbeats, a role): a legacy subscriber sends no Subscribe and receives
    /// every data frame, so it would be dropped without a word. Not connected.
    #[error(
        "not connecting to the relay at {path}: a legacy subscriber (SubscriberOptions::legacy) sends no \
         Subscribe, so it takes no {asked} (it receives every data frame); use SubscriberOptions::new() to ask \
         for {asked}, or leave the {asked} out"
    )]
    Legacy {
        /// The socket path.
        path: PathBuf,
        /// What was asked: "filters", "heartbeats" or "role".
        asked: &'static str,
    },
    /// A non-blocking call could not go on: the send buffer is full because the relay is not
    /// taking frames as fast as they are published.
    #[error("the send buffer is full: the relay is not taking frames as fast as they are published")]
    WouldBlock,
    /// A blocking call's deadline passed.
    #[error("timed out after {0:?}")]
    TimedOut(Duration),
    /// The frame asked for cannot be built (a TLV breaks a rule, or it is larger than the send
    /// buffer).
    #[error("cannot build the frame: {0}")]
    Frame(crate::protocol::Error),
    /// A Subscribe (116) or RelayNotice (117) control frame was given to a publisher that
    /// asked for confirmation: the relay would take it as a new subscription for the
    /// connection, or close it; it is not sent.
    #[error(
        "a control frame (TLV {0}) is not published: it would replace or break this publisher's subscription"
    )]
    ControlFrame(u8),
    /// The relay's stream cannot be framed any more.
    #[error("the stream from the relay at {path} broke: {error}")]
    Framing {
        /// The socket path.
        path: PathBuf,
        /// What the framer found.
        error: FramingError,
    },
    /// The relay refused the subscription or the connection (notice 3 or 6).
    #[error("the relay at {path} refused: {text}")]
    Refused {
        /// The socket path.
        path: PathBuf,
        /// The relay's words.
        text: String,
    },
}

/// How a client reconnects: after `initial`, then twice as long each time up to `max`, for at
/// most `attempts` tries (`None`: for ever).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Reconnect {
    /// The first wait.
    pub initial: Duration,
    /// The longest wait.
    pub max: Duration,
    /// How many tries before giving up.
    pub attempts: Option<u32>,
}

impl Default for Reconnect {
    /// 10 ms, doubling up to 1 s, for ever.
    fn default() -> Self {
        Reconnect { initial: Duration::from_millis(10), max: Duration::from_secs(1), attempts: None }
    }
}

impl Reconnect {
    /// Tries `connect` with back-off until it succeeds or the attempts run out; returns what it
    /// made and the number of attempts (the clients use it when a connection is lost; call it
    /// to wait for a relay that is not there yet).
    ///
    /// # Errors
    ///
    /// The last attempt's error, once the attempts run out.
    pub fn run<T>(&self, mut connect: impl FnMut() -> Result<T, Error>) -> Result<(T, u32), Error> {
        let mut wait = self.initial;
        let mut attempt = 0;
        loop {
            attempt += 1;
            match connect() {
                Ok(made) => return Ok((made, attempt)),
                Err(e) if self.attempts.is_some_and(|max| attempt >= max) => return Err(e),
                Err(e) => log::debug!("reconnect attempt {attempt} failed: {e}; next in {wait:?}"),
            }
            std::thread::sleep(wait);
            wait = (wait * 2).min(self.max);
        }
    }
}

/// Waits until `fd` is readable (`out` false) or writable (`out` true), at most until
/// `deadline`; returns whether it is.
fn wait_ready(fd: impl AsFd, out: bool, deadline: Option<Instant>) -> io::Result<bool> {
    use rustix::event::{PollFd, PollFlags, Timespec, poll};
    let flags = if out { PollFlags::OUT } else { PollFlags::IN };
    loop {
        let timeout = match deadline {
            None => None,
            Some(deadline) => {
                let left = deadline.saturating_duration_since(Instant::now());
                if left.is_zero() {
                    return Ok(false);
                }
                Some(Timespec { tv_sec: left.as_secs() as i64, tv_nsec: i64::from(left.subsec_nanos()) })
            }
        };
        let mut fds = [PollFd::new(&fd, flags)];
        match poll(&mut fds, timeout.as_ref()) {
            Ok(0) => {}
            Ok(_) => return Ok(true),
            Err(rustix::io::Errno::INTR) => {}
            Err(e) => return Err(e.into()),
        }
    }
}

/// Nanoseconds since the Unix epoch.
fn unix_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}
