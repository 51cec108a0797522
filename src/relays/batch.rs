//! The accepted frames of one read, as they travel from the intake to the outboxes of every
//! shard: a leaf module, so that the connection, the outbox and the shard share these types
//! without importing each other.

use bytes::Bytes;

use crate::protocol::RoutingKey;

/// A publisher connection, named across shards.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct PublisherId {
    /// The shard that owns it.
    pub shard: usize,
    /// Its token in that shard.
    pub token: usize,
    /// Its connection id (a token may be reused).
    pub id: u64,
}

/// One accepted frame inside a batch.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct FrameSpan {
    /// Where it starts in the batch.
    pub offset: u32,
    /// Its length.
    pub len: u32,
    /// Its routing key (PROTOCOL.md §6) and source, computed once at intake while any
    /// subscription of the relay has filters; `None` otherwise (computed where needed).
    pub key: Option<(RoutingKey, u8)>,
}

/// Accepted data frames of one read of one publisher, in one shared buffer.
#[derive(Debug)]
pub(crate) struct Batch {
    /// The relay it belongs to.
    pub relay: usize,
    /// Who sent it.
    pub publisher: PublisherId,
    /// The frames.
    pub bytes: Bytes,
    /// Bytes of memory `bytes` keeps alive (its allocation, at most twice its length).
    pub alloc: usize,
    /// Where each frame is.
    pub frames: Vec<FrameSpan>,
    /// The frames as runs of consecutive bytes (rejected frames, hellos and control frames
    /// between them cut them): what a subscriber without filters takes, worked out once.
    pub(crate) runs: Vec<Run>,
}

impl Batch {
    /// A batch of `frames` in `bytes`, with its runs.
    pub(crate) fn new(
        relay: usize,
        publisher: PublisherId,
        bytes: Bytes,
        alloc: usize,
        frames: Vec<FrameSpan>,
    ) -> Batch {
        let mut runs: Vec<Run> = Vec::new();
        for span in &frames {
            let (start, end) = (span.offset as usize, (span.offset + span.len) as usize);
            match runs.last_mut() {
                Some(run) if run.end == start => {
                    run.end = end;
                    run.frames += 1;
                }
                _ => runs.push(Run { start, end, frames: 1 }),
            }
        }
        Batch { relay, publisher, bytes, alloc, frames, runs }
    }
}

/// Consecutive frames of a batch that a subscriber takes: bytes `start..end`, `frames` of them.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Run {
    pub(crate) start: usize,
    pub(crate) end: usize,
    pub(crate) frames: u32,
}
