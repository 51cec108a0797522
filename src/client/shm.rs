//! A subscriber's shared-memory path (PROTOCOL.md §7): data frames are copied out of the
//! relay's broadcast log straight into the subscriber's frame buffer (whole frames only,
//! never a torn one), its own frames and the frames its filters refuse skipped; an overrun
//! becomes notice 4, as a drop over the socket would; the socket still brings notices and
//! heartbeats, and says when the relay has gone.

use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::net::UnixStream;
use std::time::{Duration, Instant};

use rustix::net::RecvFlags;

use crate::protocol::{Crc, FrameBuilder, RelayDomain, RelayNotice, Subscribe, notice, registry};
use crate::shm::{Copied, LogReader, Next, ShmError};

use super::reader::FrameReader;

/// How a shared-memory subscriber waits for frames (the relay's `--idle`, on the reader's
/// side).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Idle {
    /// Polls the log without pause: the lowest latency, a core of its own.
    Spin,
    /// Polls a while, yields a while, then sleeps until the relay wakes it (at most a
    /// millisecond at a time).
    #[default]
    Backoff,
    /// Sleeps until the relay wakes it (a futex in the log).
    Block,
}

/// Frames copied out of the log in one run (one check of the writer's intent for them all).
const RUN: usize = 256;
/// Spins, then yields, before a backoff reader sleeps.
const SPINS: u32 = 2_000;
const YIELDS: u32 = 2_100;
/// How often the socket is looked at while the log brings frames: notices and heartbeats
/// are not urgent, and a look is a system call.
const SOCKET_EVERY: Duration = Duration::from_millis(1);
/// The longest sleep on the log: the socket (the relay's end, notices) is looked at after.
const LONGEST_SLEEP: Duration = Duration::from_millis(10);

/// One subscription's tap on the log.
#[derive(Debug)]
pub(super) struct Tap {
    log: LogReader,
    /// This connection's id: the log's frames of this origin are its own.
    id: u64,
    /// The subscription, when it has filters.
    filters: Option<Subscribe>,
    idle: Idle,
    /// What the socket brought that is not yet a whole frame.
    side: FrameReader,
    last_look: Option<Instant>,
    empty: u32,
    /// What the last run copied.
    copied: Vec<Copied>,
}

/// The value of `key` (e.g. `shm=`) among the words of notice 1's text.
fn word<'a>(text: &'a str, key: &str) -> Option<&'a str> {
    text.split(' ').find_map(|w| w.strip_prefix(key))
}

impl Tap {
    /// The tap notice 1 granted (`shm=<bytes> id=<id>` in `text`, the descriptor `fd` with
    /// it); `None` when the relay answered `shm=0` (frames come over the socket).
    ///
    /// # Errors
    ///
    /// When the relay granted a log and no descriptor came, or the log cannot be mapped or is
    /// of another layout.
    pub(super) fn granted(
        text: &str,
        fd: Option<OwnedFd>,
        subscribe: &Subscribe,
        idle: Idle,
    ) -> Result<Option<Tap>, ShmError> {
        let bytes: u64 = word(text, "shm=").and_then(|n| n.parse().ok()).unwrap_or(0);
        if bytes == 0 {
            return Ok(None);
        }
        let id = word(text, "id=").and_then(|n| n.parse().ok());
        let (Some(fd), Some(id)) = (fd, id) else {
            return Err(ShmError::Layout(format!(
                "notice 1 granted a log without its descriptor or id: {text:?}"
            )));
        };
        let log = LogReader::attach(&fd)?;
        let filters = (!subscribe.filters.is_empty()).then(|| subscribe.clone());
        Ok(Some(Tap {
            log,
            id,
            filters,
            idle,
            side: FrameReader::new(1 << 16),
            last_look: None,
            empty: 0,
            copied: Vec::with_capacity(RUN),
        }))
    }

    /// Bytes the socket brought after notice 1, before the tap existed.
    pub(super) fn keep(&mut self, bytes: &[u8]) {
        let room = self.side.spare();
        let n = bytes.len().min(room.len());
        room[..n].copy_from_slice(&bytes[..n]);
        self.side.filled(n);
    }

    /// The largest frame the log holds.
    pub(super) fn max_frame(&self) -> usize {
        self.log.max_frame()
    }

    /// Copies the frames the log holds for this subscriber into `reader`, as long as it has
    /// room for one; an overrun goes in as notice 4. Returns the frames it added, and whether
    /// the log says the relay stopped.
    pub(super) fn pump(&mut self, reader: &mut FrameReader) -> Result<(usize, bool), ShmError> {
        let room = reader.spare();
        if room.len() < self.log.max_frame() {
            return Ok((0, false));
        }
        match self.log.read(room, RUN, &mut self.copied)? {
            Next::Frames(_) => {
                // Keep the frames that are for this subscriber, moved together.
                let (mut from, mut kept, mut added) = (0, 0, 0);
                for &Copied { len, origin } in &self.copied {
                    let theirs = origin != self.id;
                    if theirs && self.filters.as_ref().is_none_or(|s| s.wants_frame(&room[from..from + len]))
                    {
                        if kept != from {
                            room.copy_within(from..from + len, kept);
                        }
                        kept += len;
                        added += 1;
                    }
                    from += len;
                }
                reader.filled(kept);
                Ok((added, false))
            }
            Next::Lost { count, first_sequence } => {
                let len = dropped(room, first_sequence.unwrap_or(0), count);
                reader.filled(len);
                Ok((usize::from(len > 0), false))
            }
            Next::Frame { .. } | Next::Empty => Ok((0, false)),
            Next::Closed => Ok((0, true)),
        }
    }

    /// Moves what the socket holds now (notices, heartbeats) into `reader` as whole frames,
    /// at most once every millisecond unless `now`. Returns whether any came.
    ///
    /// # Errors
    ///
    /// `UnexpectedEof` when the relay closed the connection; what `recv` says.
    pub(super) fn look(
        &mut self,
        stream: &UnixStream,
        reader: &mut FrameReader,
        now: bool,
    ) -> io::Result<bool> {
        let due = self.last_look.is_none_or(|t| t.elapsed() >= SOCKET_EVERY);
        if !now && !due {
            return Ok(false);
        }
        self.last_look = Some(Instant::now());
        let room = self.side.spare();
        if !room.is_empty() {
            match rustix::net::recv(stream, room, RecvFlags::DONTWAIT) {
                Ok((0, _)) => return Err(io::ErrorKind::UnexpectedEof.into()),
                Ok((n, _)) => self.side.filled(n),
                Err(rustix::io::Errno::AGAIN | rustix::io::Errno::INTR) => {}
                Err(e) => return Err(e.into()),
            }
        }
        let mut moved = false;
        loop {
            let frame = self.side.peek().map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))?;
            let Some(frame) = frame else { break };
            let len = frame.bytes().len();
            let room = reader.spare();
            if room.len() < len {
                break;
            }
            room[..len].copy_from_slice(frame.bytes());
            reader.filled(len);
            self.side.consume(len);
            moved = true;
        }
        Ok(moved)
    }

    /// Waits one step as the idle strategy says (never past `deadline`), after the log and
    /// the socket had nothing.
    pub(super) fn idle(&mut self, deadline: Option<Instant>) {
        self.empty = self.empty.saturating_add(1);
        let sleep = match self.idle {
            Idle::Spin => false,
            Idle::Backoff if self.empty < SPINS => false,
            Idle::Backoff if self.empty < YIELDS => {
                std::thread::yield_now();
                return;
            }
            Idle::Backoff => true,
            Idle::Block => true,
        };
        if !sleep {
            std::hint::spin_loop();
            return;
        }
        let seen = self.log.wake_word();
        if self.log.position() < self.log.published() || self.log.closed() {
            return;
        }
        let cap = if self.idle == Idle::Backoff { SOCKET_EVERY } else { LONGEST_SLEEP };
        let left = deadline.map_or(cap, |d| d.saturating_duration_since(Instant::now()).min(cap));
        if !left.is_zero() {
            self.log.sleep(seen, left);
        }
    }

    /// The log brought something: the idle strategy starts again from its first step.
    pub(super) fn busy(&mut self) {
        self.empty = 0;
    }
}

/// Writes notice 4 (`first` the first lost sequence, 0 when not known; `dropped=<count>`) at
/// the start of `room`, as the relay would have sent it for a drop; returns its length.
fn dropped(room: &mut [u8], first: u64, count: u64) -> usize {
    let text = format!("dropped={count} (shared-memory reader overrun)");
    let value = RelayNotice { code: notice::DROPPED, sequence: first, text: &text };
    let mut encoded = [0u8; RelayNotice::MAX_LEN];
    let Ok(len) = value.emit(&mut encoded) else { return 0 };
    let Ok(mut builder) = FrameBuilder::new(room, RelayDomain::System, 0) else { return 0 };
    if builder.tlv(registry::RELAY_NOTICE, &encoded[..len]).is_err() {
        return 0;
    }
    builder.finish(0, super::unix_ns(), Crc::Compute)
}
