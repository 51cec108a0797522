//! A simulated relay in memory: shards driven the way the reactors drive them, clients with
//! in-memory sockets of bounded capacity, time moved by hand. Deterministic: no threads, no
//! clocks, no sockets (quinn-proto's `Pair` is the model).

use std::collections::VecDeque;
use std::io::IoSlice;
use std::os::fd::OwnedFd;
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::protocol::{Crc, FrameBuilder, Framing, Header, RelayDomain, RelayNotice, Subscribe, frame, tlvs};
use crate::relays::{
    CloseReason, Event, LOG_SHARD, Now, Peer, RelayConfig, RelayContext, RelayLogic, Shard, ShardConfig,
    Sink, Wrote,
};
use crate::shm::LogWriter;

/// The relay's end of a connection: what the relay wrote and the client has not read yet, at
/// most `capacity` bytes (the kernel's socket buffer).
#[derive(Debug)]
pub(crate) struct Pipe {
    pub(crate) data: Vec<u8>,
    pub(crate) capacity: usize,
    /// The client stopped reading for good: writes fail.
    pub(crate) broken: bool,
    /// Bytes written before each write that carried the broadcast log's descriptor (counted
    /// from the pipe's start, whatever the client has read since).
    pub(crate) log_sent_at: Vec<usize>,
    /// Bytes the client has read off `data` so far.
    pub(crate) read: usize,
}

impl Sink for Pipe {
    fn write(&mut self, bufs: &[IoSlice<'_>]) -> Wrote {
        if self.broken {
            return Wrote::Gone;
        }
        let room = self.capacity - self.data.len();
        if room == 0 && bufs.iter().any(|b| !b.is_empty()) {
            return Wrote::Full;
        }
        let mut written = 0;
        for buf in bufs {
            let n = buf.len().min(room - written);
            self.data.extend_from_slice(&buf[..n]);
            written += n;
        }
        Wrote::Bytes(written)
    }

    fn write_with_log(&mut self, bufs: &[IoSlice<'_>]) -> Wrote {
        let at = self.read + self.data.len();
        let wrote = self.write(bufs);
        if let Wrote::Bytes(n) = wrote
            && n > 0
        {
            self.log_sent_at.push(at);
        }
        wrote
    }
}

/// A client: which shard holds its connection, and under which token.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Client {
    pub(crate) shard: usize,
    pub(crate) token: usize,
}

/// A frame as a client received it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Received {
    pub(crate) domain: Option<RelayDomain>,
    pub(crate) source: u8,
    pub(crate) sequence: u64,
    /// For a RelayNotice: its code, sequence and text.
    pub(crate) notice: Option<(u16, u64, String)>,
}

/// The simulated relay.
pub(crate) struct Sim<L: RelayLogic> {
    pub(crate) shards: Vec<Shard<L, Pipe>>,
    pub(crate) relays: Arc<[RelayContext<L>]>,
    /// Bytes each client has sent and the relay has not read yet, per (shard, token).
    inbound: Vec<Vec<VecDeque<u8>>>,
    /// Messages between shards not delivered yet, in order; held while `hold` is set.
    pub(crate) mail: VecDeque<(usize, crate::relays::Msg)>,
    pub(crate) hold: bool,
    /// The audit file every relay that audits appends to, as lines.
    pub(crate) audit: Vec<u8>,
    /// The audit file takes no more (a full disk): writes fail while set.
    pub(crate) audit_full: bool,
    pub(crate) closed: Vec<(Client, CloseReason)>,
    start: Instant,
    pub(crate) elapsed: Duration,
    next_id: u64,
    read_budget: usize,
    pub(crate) socket_capacity: usize,
}

impl<L: RelayLogic> Sim<L> {
    /// A relay of one logic over `shards` shards.
    pub(crate) fn new(logic: L, config: RelayConfig, shards: usize) -> Self {
        Self::with_relays(vec![RelayContext::new(logic, config)], shards)
    }

    /// A relay of one logic over `shards` shards with a broadcast log of `ring` bytes (on
    /// [`LOG_SHARD`], as the start-up does), and a reader's descriptor of it.
    pub(crate) fn with_log(logic: L, config: RelayConfig, shards: usize, ring: u64) -> (Self, OwnedFd) {
        let log = LogWriter::create("torq-sim", ring, config.max_message_size).expect("a log");
        let fd = log.reader_fd().try_clone_to_owned().expect("a descriptor");
        let mut context = RelayContext::new(logic, config);
        context.shm_bytes = log.len() as u64;
        let mut sim = Self::with_relays(vec![context], shards);
        sim.shards[LOG_SHARD].attach_log(0, log);
        (sim, fd)
    }

    pub(crate) fn with_relays(relays: Vec<RelayContext<L>>, count: usize) -> Self {
        let relays: Arc<[RelayContext<L>]> = relays.into();
        let read_budget = 4096;
        let shards = (0..count)
            .map(|index| {
                let config =
                    ShardConfig { index, shards: count, read_budget, stall_timeout: Duration::from_secs(5) };
                Shard::new(config, Arc::clone(&relays))
            })
            .collect();
        Sim {
            shards,
            relays,
            inbound: vec![Vec::new(); count],
            mail: VecDeque::new(),
            hold: false,
            audit: Vec::new(),
            audit_full: false,
            closed: Vec::new(),
            start: Instant::now(),
            elapsed: Duration::ZERO,
            next_id: 1,
            read_budget,
            socket_capacity: 1 << 20,
        }
    }

    pub(crate) fn now(&self) -> Now {
        Now { instant: self.start + self.elapsed, unix_ns: 1_000_000_000 + self.elapsed.as_nanos() as u64 }
    }

    /// Connects a client of relay `relay` to shard `shard`.
    pub(crate) fn connect_to(&mut self, shard: usize, relay: usize) -> Client {
        let pipe = Pipe {
            data: Vec::new(),
            capacity: self.socket_capacity,
            broken: false,
            log_sent_at: Vec::new(),
            read: 0,
        };
        let peer = Peer { pid: Some(100 + self.next_id as i32), uid: 1000, gid: 1000 };
        let now = self.now();
        self.relays[relay].expect(shard);
        let token = self.shards[shard].insert(pipe, relay, peer, self.next_id, now);
        self.next_id += 1;
        let inbound = &mut self.inbound[shard];
        if inbound.len() <= token {
            inbound.resize(token + 1, VecDeque::new());
        }
        inbound[token].clear();
        self.run();
        Client { shard, token }
    }

    pub(crate) fn connect(&mut self, shard: usize) -> Client {
        self.connect_to(shard, 0)
    }

    /// The client writes bytes; the relay reads them as soon as it may.
    pub(crate) fn send(&mut self, client: Client, bytes: &[u8]) {
        self.inbound[client.shard][client.token].extend(bytes);
        self.run();
    }

    /// The client reads everything the relay wrote to it, and the relay writes on.
    pub(crate) fn receive(&mut self, client: Client) -> Vec<Received> {
        let mut bytes = Vec::new();
        loop {
            // The socket is writable: the relay writes what it queued.
            let now = self.now();
            self.shards[client.shard].flush(client.token, now);
            self.run();
            let Some(conn) = self.shards[client.shard].connection_mut(client.token) else { break };
            let data = std::mem::take(&mut conn.socket.data);
            if data.is_empty() {
                break;
            }
            conn.socket.read += data.len();
            bytes.extend(data);
        }
        parse_frames(&bytes)
    }

    /// Whether a client's connection is still open.
    pub(crate) fn is_open(&self, client: Client) -> bool {
        self.shards[client.shard].connection(client.token).is_some()
    }

    /// Moves time on and ticks every shard.
    pub(crate) fn advance(&mut self, by: Duration) {
        self.elapsed += by;
        let now = self.now();
        for index in 0..self.shards.len() {
            self.shards[index].tick(now);
            self.write_audit(index);
        }
        self.run();
    }

    /// Delivers held mail.
    pub(crate) fn release_mail(&mut self) {
        self.hold = false;
        self.run();
    }

    /// Drives every shard until nothing moves: reads what may be read, carries out events,
    /// delivers mail (unless held).
    pub(crate) fn run(&mut self) {
        loop {
            let mut moved = false;
            for index in 0..self.shards.len() {
                moved |= self.read_shard(index);
                moved |= self.apply(index);
            }
            if !self.hold
                && let Some((target, msg)) = self.mail.pop_front()
            {
                let now = self.now();
                self.shards[target].handle(msg, now);
                moved = true;
            }
            if !moved {
                break;
            }
        }
    }

    fn read_shard(&mut self, index: usize) -> bool {
        let mut moved = false;
        for token in 0..self.inbound[index].len() {
            if self.inbound[index][token].is_empty() || !self.shards[index].may_read(token) {
                continue;
            }
            let Some(conn) = self.shards[index].connection_mut(token) else { continue };
            let (_, buffer) = conn.read_buffer(self.read_budget);
            let take = self.inbound[index][token].len().min(self.read_budget);
            buffer.extend(self.inbound[index][token].drain(..take));
            let now = self.now();
            self.shards[index].intake(token, now);
            self.write_audit(index);
            moved = true;
        }
        moved
    }

    /// Appends what shard `index` asks for to the audit file, as the reactor does.
    fn write_audit(&mut self, index: usize) {
        let now = self.now();
        while let Some((_, bytes)) = self.shards[index].poll_audit(now) {
            if self.audit_full {
                self.shards[index].audit_failed(&"No space left on device", now);
                return;
            }
            self.audit.extend_from_slice(bytes);
            let n = bytes.len();
            self.shards[index].audit_written(n, now);
        }
    }

    /// The outcome of each audit record (`accepted`, `rejected reason=…`, `hello`, `control`).
    pub(crate) fn audited(&self) -> Vec<String> {
        let text = std::str::from_utf8(&self.audit).expect("audit lines are UTF-8");
        text.lines()
            .map(|line| {
                let words: Vec<&str> = line.split(' ').collect();
                let reason = words.iter().find(|w| w.starts_with("reason="));
                [Some(words[5]), reason.copied()].into_iter().flatten().collect::<Vec<_>>().join(" ")
            })
            .collect()
    }

    fn apply(&mut self, index: usize) -> bool {
        let mut moved = false;
        while let Some(event) = self.shards[index].poll_event() {
            if let Event::Closed { token, reason, .. } = event {
                self.closed.push((Client { shard: index, token }, reason));
                self.inbound[index][token].clear();
            }
        }
        while let Some(mail) = self.shards[index].poll_message() {
            self.mail.push_back(mail);
            moved = true;
        }
        moved
    }
}

/// Splits received bytes into frames.
pub(crate) fn parse_frames(bytes: &[u8]) -> Vec<Received> {
    let mut out = Vec::new();
    let mut pos = 0;
    while let Ok(Framing::Frame(len)) = frame(&bytes[pos..], usize::MAX) {
        let bytes = &bytes[pos..pos + len];
        let header = Header::view(bytes).expect("a whole header");
        let notice = tlvs(&bytes[32..])
            .next()
            .and_then(Result::ok)
            .filter(|t| t.tlv_type == 117)
            .and_then(|t| RelayNotice::parse(t.value).ok())
            .map(|n| (n.code, n.sequence, n.text.to_string()));
        out.push(Received {
            domain: header.domain(),
            source: header.source(),
            sequence: header.sequence(),
            notice,
        });
        pos += len;
    }
    assert_eq!(pos, bytes.len(), "the relay wrote a partial frame");
    out
}

/// A frame of `domain` from `source` with one TLV of `tlv_type` and `len` bytes.
pub(crate) fn data(domain: RelayDomain, source: u8, sequence: u64, tlv_type: u8, len: usize) -> Vec<u8> {
    let mut buf = vec![0; 64 + len];
    let mut builder = FrameBuilder::new(&mut buf, domain, source).expect("room for a header");
    builder.tlv(tlv_type, &vec![7; len]).expect("a valid TLV");
    let n = builder.finish(sequence, 1, Crc::Compute);
    buf.truncate(n);
    buf
}

/// A Subscribe control frame.
pub(crate) fn subscribe(sub: &Subscribe) -> Vec<u8> {
    let mut value = vec![0; sub.encoded_len()];
    sub.emit(&mut value).expect("a valid Subscribe");
    let mut buf = vec![0; 2048];
    let mut builder = FrameBuilder::new(&mut buf, RelayDomain::System, 99).expect("room");
    builder.tlv(116, &value).expect("a valid TLV");
    let n = builder.finish(0, 1, Crc::Compute);
    buf.truncate(n);
    buf
}

/// The legacy hello: domain 1, source 2, everything else 0.
pub(crate) const HELLO: [u8; 32] = [
    0xEF, 0xBE, 0xAD, 0xDE, 1, 1, 2, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0,
    0,
];
