//! Giving memory back after a burst. glibc keeps freed memory in its arenas: after 200 slow
//! subscribers had each filled a queue and left, 216 MB of an idle relay stayed resident (4 MB
//! before the burst). `malloc_trim(0)` returns the free pages of every arena to the system
//! (measured: back to 4 MB). It is called from start-up's housekeeping thread when the bytes
//! queued to subscribers (the relays' `torq_relay_queued_bytes` gauges) have fallen far below their
//! peak since the last trim, so a steady
//! relay never pays for it. Other allocators were measured in its place and kept more after
//! the same burst (mimalloc 463 MB, jemalloc without its background thread 272 MB).
#![allow(unsafe_code)]

/// Bytes the queued total must have fallen from its peak before memory is trimmed.
pub(crate) const TRIM_AFTER: usize = 32 << 20;

/// Tracks the bytes queued to subscribers and says when to trim.
#[derive(Debug, Default)]
pub(crate) struct Trimmer {
    peak: usize,
}

impl Trimmer {
    /// Records the bytes queued now; returns whether memory was trimmed.
    pub(crate) fn observe(&mut self, queued: usize) -> bool {
        self.peak = self.peak.max(queued);
        if self.peak - queued < TRIM_AFTER {
            return false;
        }
        self.peak = queued;
        trim();
        true
    }
}

#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() {
    // SAFETY: malloc_trim takes no pointers and only walks glibc's own arenas under their
    // locks; it is safe to call from any thread at any time.
    unsafe {
        libc::malloc_trim(0);
    }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() {}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn trims_only_after_a_large_fall_from_the_peak() {
        let mut trimmer = Trimmer::default();
        assert!(!trimmer.observe(10 << 20));
        assert!(!trimmer.observe(100 << 20));
        assert!(!trimmer.observe(80 << 20), "a fall of 20 MiB is not enough");
        assert!(trimmer.observe(60 << 20), "a fall of 40 MiB from the peak trims");
        assert!(!trimmer.observe(50 << 20), "the peak starts again from the trim");
    }
}
