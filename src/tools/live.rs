//! Talking to a running relay, as `torq-tap`, `torq-record`, `torq-replay` and `torq-pub` do:
//! subscribing with the filter flags and receiving until a count, a deadline or a signal;
//! the relay's notices and sequence gaps go to standard error.

use std::io;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use crate::client::{self, Event, Frame, Idle, Notice, Subscriber, SubscriberOptions};

use super::args::FilterArgs;

/// Nanoseconds since the Unix epoch, now.
pub fn unix_ns() -> u64 {
    std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64)
}

/// A flag raised by SIGINT or SIGTERM (which then no longer end the process by themselves).
///
/// # Errors
///
/// When the handlers cannot be installed.
pub fn stop_flag() -> io::Result<Arc<AtomicBool>> {
    let flag = Arc::new(AtomicBool::new(false));
    for signal in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(signal, Arc::clone(&flag))?;
    }
    Ok(flag)
}

/// Connects to the relay at `socket` and subscribes with `filters` and notices, through the
/// shared-memory log when `shm` says how to wait for it.
///
/// # Errors
///
/// A message for the user: too many filters, or the client's error (it names the socket).
pub fn subscribe(
    socket: &Path,
    filters: &FilterArgs,
    max_message_size: usize,
    shm: Option<Idle>,
) -> Result<Subscriber, String> {
    let options = filters
        .filters()?
        .into_iter()
        .fold(SubscriberOptions::new().max_message_size(max_message_size), SubscriberOptions::filter);
    let options = match shm {
        Some(idle) => options.shm(idle),
        None => options,
    };
    Subscriber::connect(socket, options).map_err(|e| e.to_string())
}

/// When [`receive`] stops.
#[derive(Debug, Clone)]
pub struct Until {
    /// After this many frames.
    pub count: Option<u64>,
    /// At this time.
    pub deadline: Option<Instant>,
    /// When this flag is raised (see [`stop_flag`]).
    pub signal: Option<Arc<AtomicBool>>,
}

/// Why [`receive`] stopped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Stopped {
    /// The count was reached.
    Count,
    /// The deadline passed.
    Deadline,
    /// A signal raised the flag.
    Signal,
}

/// Why [`receive`] failed.
#[derive(Debug, thiserror::Error)]
pub enum ReceiveError {
    /// The relay went away or broke the stream.
    #[error("{0}")]
    Relay(#[from] client::Error),
    /// The frame handler failed (writing the output).
    #[error("{0}")]
    Output(io::Error),
}

/// How often the stop flag and the deadline are looked at while nothing arrives.
const TICK: Duration = Duration::from_millis(100);

/// Hands every frame to `on_frame` until `until` says stop; `on_idle` runs whenever nothing
/// more is waiting (to flush output). Both get `output`. Notices and gaps are written to standard error, each
/// line starting with `tool`. Returns why it stopped and how many frames it handled.
///
/// # Errors
///
/// [`ReceiveError::Relay`] when the relay goes away, [`ReceiveError::Output`] when a handler
/// fails; `on_idle` has run first in both cases.
pub fn receive<O>(
    subscriber: &mut Subscriber,
    until: &Until,
    tool: &str,
    output: &mut O,
    mut on_frame: impl FnMut(&mut O, &Frame<'_>) -> io::Result<()>,
    mut on_idle: impl FnMut(&mut O) -> io::Result<()>,
) -> Result<(Stopped, u64), ReceiveError> {
    let mut frames = 0u64;
    let mut busy = false;
    let stopped = loop {
        if until.count.is_some_and(|count| frames >= count) {
            break Stopped::Count;
        }
        if until.signal.as_ref().is_some_and(|flag| flag.load(Ordering::Relaxed)) {
            break Stopped::Signal;
        }
        let mut wait = TICK;
        if let Some(deadline) = until.deadline {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break Stopped::Deadline;
            }
            wait = wait.min(left);
        }
        // While frames keep coming, take them without waiting; flush once they pause.
        let event = subscriber.recv_timeout(if busy { Duration::ZERO } else { wait });
        match event {
            Ok(Some(Event::Frame(frame))) => {
                busy = true;
                frames += 1;
                if let Err(e) = on_frame(output, &frame) {
                    let _ = on_idle(output);
                    return Err(ReceiveError::Output(e));
                }
            }
            Ok(Some(Event::Notice(notice))) => eprintln!("{tool}: the relay says: {}", notice_text(&notice)),
            Ok(Some(Event::Gap { source, expected, received })) => {
                eprintln!("{tool}: source {source} skipped sequences: {expected} was due, {received} came")
            }
            Ok(Some(Event::Restarted { source, expected, received })) => {
                eprintln!("{tool}: source {source} started again at sequence {received} ({expected} was due)")
            }
            Ok(Some(Event::Reconnected { attempts })) => {
                eprintln!("{tool}: reconnected after {attempts} attempts")
            }
            Ok(None) => {
                busy = false;
                on_idle(output).map_err(ReceiveError::Output)?;
            }
            Err(e) => {
                let _ = on_idle(output);
                return Err(e.into());
            }
        }
    };
    on_idle(output).map_err(ReceiveError::Output)?;
    Ok((stopped, frames))
}

/// A notice in words.
pub fn notice_text(notice: &Notice) -> String {
    match notice {
        Notice::Subscribed(text) => format!("subscribed ({text})"),
        Notice::Rejected { sequence, reason } => format!("frame {sequence} rejected: {reason}"),
        Notice::ProtocolError { sequence, text } => format!("protocol error (frame {sequence}): {text}"),
        Notice::Dropped { first_sequence, count } => {
            format!("{count} frames dropped for this slow reader, from sequence {first_sequence}")
        }
        Notice::Merged { rejected, dropped } => format!("{rejected} rejections and {dropped} drops (merged)"),
        Notice::Stopping => "the relay is stopping".to_string(),
        Notice::AccessDenied { sequence, text } => format!("access denied (frame {sequence}): {text}"),
        Notice::Accepted { accepted, rejected } => format!("{accepted} accepted, {rejected} rejected"),
        Notice::Other { code, sequence, text } => format!("notice {code} (frame {sequence}): {text}"),
    }
}
