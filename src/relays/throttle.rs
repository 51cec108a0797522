//! At most one event an interval, counting those left out: every once-a-second log line and
//! retry of the relay is one of these. Time is an argument.

use std::time::{Duration, Instant};

/// Lets an event through at most once every `every`.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Throttle {
    every: Duration,
    last: Option<Instant>,
    /// Events refused since the last one let through.
    suppressed: u64,
}

impl Default for Throttle {
    /// Once a second.
    fn default() -> Self {
        Throttle::every(Duration::from_secs(1))
    }
}

impl Throttle {
    /// At most once every `every`.
    pub(crate) const fn every(every: Duration) -> Self {
        Throttle { every, last: None, suppressed: 0 }
    }

    /// Whether the event may happen at `now`: the first always, then once `every` has passed
    /// since the last let through. A refusal is counted.
    pub(crate) fn ready(&mut self, now: Instant) -> bool {
        let ready = self.last.is_none_or(|t| now.duration_since(t) >= self.every);
        if ready {
            self.last = Some(now);
        } else {
            self.suppressed += 1;
        }
        ready
    }

    /// The events refused since the last one let through (and forgets them).
    pub(crate) fn take_suppressed(&mut self) -> u64 {
        std::mem::take(&mut self.suppressed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn once_an_interval_counting_the_rest() {
        let start = Instant::now();
        let at = |ms| start + Duration::from_millis(ms);
        let mut throttle = Throttle::default();
        assert!(throttle.ready(at(0)), "the first always");
        assert!(!throttle.ready(at(500)) && !throttle.ready(at(999)));
        assert!(throttle.ready(at(1000)));
        assert_eq!(throttle.take_suppressed(), 2);
        assert_eq!(throttle.take_suppressed(), 0);
    }
}
