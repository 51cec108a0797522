//! The relay core in memory: every policy, byte charging, run splitting, pause and resume, the
//! stall window, merged notices, sequences, undelivered frames at stop, ordering across
//! shards, and a fourth domain written as one small type.

mod confirm;
mod contract;
mod interest;
mod shm;
mod sim;

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use sim::{Client, HELLO, Received, Sim, data, subscribe};

use crate::protocol::{Error, Filter, FrameKind, OPTION_NOTICES, RelayDomain, Role, Subscribe, notice};
use crate::relays::{
    AnyLogic, DomainDefaults, ExecutionLogic, Levels, MarketDataLogic, Policy, Reason, RelayConfig,
    RelayContext, RelayLogic,
};

const MD: RelayDomain = RelayDomain::MarketData;

/// A small relay: 1065-byte messages, 4 KiB queues, `policy`.
fn config(logic: &impl RelayLogic, policy: Policy) -> RelayConfig {
    let mut config = RelayConfig::new(&logic.defaults());
    config.max_message_size = 1065;
    config.queue_bytes = 4096;
    config.policy = policy;
    config.audit_file = Some("/dev/null".into());
    config
}

fn market_data(policy: Policy) -> Sim<MarketDataLogic> {
    Sim::new(MarketDataLogic, config(&MarketDataLogic, policy), 1)
}

/// `count` market-data frames of 134 bytes, sequences `first..`.
fn frames(first: u64, count: u64) -> Vec<u8> {
    (first..first + count).flat_map(|s| data(MD, 1, s, 200, 100)).collect()
}

fn sequences(received: &[Received]) -> Vec<u64> {
    received.iter().filter(|r| r.notice.is_none()).map(|r| r.sequence).collect()
}

fn notices(received: &[Received]) -> Vec<(u16, u64, String)> {
    received.iter().filter_map(|r| r.notice.clone()).collect()
}

fn with_notices(role: Role) -> Vec<u8> {
    subscribe(&Subscribe { role, options: OPTION_NOTICES, filters: vec![] })
}

/// A client that never sends: a legacy subscriber.
fn slow_subscriber<L: RelayLogic>(sim: &mut Sim<L>, shard: usize, capacity: usize) -> Client {
    let client = sim.connect(shard);
    sim.shards[shard].connection_mut(client.token).unwrap().socket.capacity = capacity;
    client
}

fn publisher<L: RelayLogic>(sim: &mut Sim<L>, shard: usize) -> Client {
    let client = sim.connect(shard);
    sim.send(client, &HELLO);
    client
}

fn charged<L: RelayLogic>(sim: &Sim<L>, client: Client) -> usize {
    sim.shards[client.shard].connection(client.token).unwrap().outbox.charged()
}

#[test]
fn drop_skips_whole_frames_counts_them_and_says_so() {
    let mut sim = market_data(Policy::Drop);
    let sub = sim.connect(0);
    sim.send(sub, &with_notices(Role::Subscribe));
    sim.shards[0].connection_mut(sub.token).unwrap().socket.capacity = 1000;
    let publisher = publisher(&mut sim, 0);
    sim.send(publisher, &frames(1, 100));
    sim.advance(Duration::from_millis(100)); // the drop notice is owed at the tick
    let received = sim.receive(sub);
    let delivered = sequences(&received);
    let dropped = sim.relays[0].metrics.dropped_frames.load(Relaxed);
    assert!(dropped > 0, "the queue and the socket hold less than 100 frames");
    assert_eq!(delivered.len() as u64 + dropped, 100);
    assert!(delivered.windows(2).all(|w| w[0] < w[1]), "dropping never reorders");
    let drops: Vec<_> = notices(&received).into_iter().filter(|n| n.0 == notice::DROPPED).collect();
    assert_eq!(drops.len(), 1);
    assert_eq!(drops[0].2, format!("dropped={dropped}"));
    let first_missing = (1..=100).find(|s| !delivered.contains(s)).unwrap();
    assert_eq!(drops[0].1, first_missing);
    assert!(sim.is_open(sub) && sim.is_open(publisher));
}

#[test]
fn disconnect_closes_the_slow_subscriber_only() {
    let mut sim = market_data(Policy::Disconnect);
    let sub = slow_subscriber(&mut sim, 0, 1000);
    let fast = sim.connect(0);
    let publisher = publisher(&mut sim, 0);
    sim.send(publisher, &frames(1, 100));
    assert!(!sim.is_open(sub));
    assert_eq!(sim.closed, [(sub, crate::relays::CloseReason::SlowConsumer)]);
    assert_eq!(sim.relays[0].metrics.slow_disconnects.load(Relaxed), 1);
    assert_eq!(sequences(&sim.receive(fast)), (1..=100).collect::<Vec<_>>());
    assert!(sim.is_open(publisher));
}

#[test]
fn block_pauses_the_publisher_until_the_queue_drains_to_half() {
    let mut sim = market_data(Policy::Block);
    let sub = slow_subscriber(&mut sim, 0, 0);
    let publisher = publisher(&mut sim, 0);
    // Three frames a read: each read is copied into a batch of its own, charged 402 bytes.
    for chunk in 0..67 {
        sim.send(publisher, &frames(chunk * 3 + 1, 3));
    }
    assert!(!sim.shards[0].may_read(publisher.token), "paused by the full queue");
    assert!(charged(&sim, sub) > 4096, "block queues past the bound rather than lose");
    assert_eq!(sim.relays[0].metrics.pauses.load(Relaxed), 1);
    // The client reads a frame's worth at a time: the publisher stays paused while the queue
    // holds more than half its bound, and is resumed by the write that leaves at most half.
    let mut bytes = Vec::new();
    loop {
        let before = charged(&sim, sub);
        let now = sim.now();
        sim.shards[0].connection_mut(sub.token).unwrap().socket.capacity = 134;
        sim.shards[0].flush(sub.token, now);
        if sim.shards[0].may_read(publisher.token) {
            assert!(
                before > 2048 && charged(&sim, sub) <= 2048,
                "resumed at half: {before} -> {}",
                charged(&sim, sub)
            );
            break;
        }
        assert!(charged(&sim, sub) > 2048, "still paused above half");
        bytes.extend(std::mem::take(&mut sim.shards[0].connection_mut(sub.token).unwrap().socket.data));
        sim.run();
    }
    bytes.extend(std::mem::take(&mut sim.shards[0].connection_mut(sub.token).unwrap().socket.data));
    sim.shards[0].connection_mut(sub.token).unwrap().socket.capacity = 1 << 20;
    let mut received = sim::parse_frames(&bytes);
    received.extend(sim.receive(sub));
    assert_eq!(sequences(&received), (1..=201).collect::<Vec<_>>(), "lossless and in order");
    assert!(sim.is_open(sub));
}

#[test]
fn a_queue_is_charged_the_shared_buffer_it_keeps_alive() {
    let mut config = config(&MarketDataLogic, Policy::Drop);
    config.queue_bytes = 1 << 20;
    let mut sim = Sim::new(MarketDataLogic, config, 1);
    let all = slow_subscriber(&mut sim, 0, 0);
    let one = sim.connect(0);
    let only_201 = Subscribe {
        role: Role::Subscribe,
        options: 0,
        filters: vec![Filter::TypeRange { lo: 201, hi: 201 }],
    };
    sim.send(one, &subscribe(&only_201));
    sim.shards[0].connection_mut(one.token).unwrap().socket.capacity = 0;
    let publisher = publisher(&mut sim, 0);
    // 29 frames of type 200 and one of 201: 4020 bytes in one read of a 4096-byte buffer.
    let mut bytes = frames(1, 29);
    let odd = data(MD, 1, 30, 201, 100);
    bytes.extend(&odd);
    sim.send(publisher, &bytes);
    // The buffer is mostly frames: it is handed on whole, and the queue taking all of it is
    // charged its whole allocation; the queue taking one frame copies it, charged its length.
    assert_eq!(charged(&sim, all), 4096);
    assert_eq!(charged(&sim, one), odd.len());
    assert_eq!(sim.relays[0].metrics.queue_high_water.load(Relaxed), 4096);
    sim.shards[0].connection_mut(one.token).unwrap().socket.capacity = 1 << 20;
    assert_eq!(sequences(&sim.receive(one)), [30]);
}

#[test]
fn filters_split_a_batch_into_runs_in_order() {
    let mut sim = market_data(Policy::Drop);
    let sub = sim.connect(0);
    let filter = Subscribe {
        role: Role::Subscribe,
        options: 0,
        filters: vec![Filter::TypeRange { lo: 200, hi: 200 }],
    };
    sim.send(sub, &subscribe(&filter));
    let publisher = publisher(&mut sim, 0);
    // Types 200, 200, 201, 200, 201, 201, 200 …: runs of one and two frames.
    let pattern = [200u8, 200, 201, 200, 201, 201, 200, 200, 200, 201];
    let bytes: Vec<u8> = (0..30u64).flat_map(|s| data(MD, 1, s + 1, pattern[s as usize % 10], 40)).collect();
    sim.send(publisher, &bytes);
    let expected: Vec<u64> = (0..30u64).filter(|s| pattern[*s as usize % 10] == 200).map(|s| s + 1).collect();
    assert_eq!(sequences(&sim.receive(sub)), expected);
    assert_eq!(sim.relays[0].metrics.frames_out.load(Relaxed), expected.len() as u64);
}

#[test]
fn the_stall_rule_counts_pauses_within_its_window_only() {
    let mut sim = market_data(Policy::Block);
    let sub = slow_subscriber(&mut sim, 0, 0);
    let publisher = publisher(&mut sim, 0);
    let step = Duration::from_millis(100);
    sim.send(publisher, &frames(1, 100)); // paused at t = 0
    for _ in 0..30 {
        sim.advance(step);
    }
    assert!(sim.is_open(sub));
    sim.shards[0].connection_mut(sub.token).unwrap().socket.capacity = 1 << 20;
    assert_eq!(sequences(&sim.receive(sub)).len(), 100); // resumed at t = 3 s
    sim.shards[0].connection_mut(sub.token).unwrap().socket.capacity = 0;
    for _ in 0..80 {
        sim.advance(step);
    }
    sim.send(publisher, &frames(101, 100)); // paused again at t = 11 s
    for _ in 0..30 {
        sim.advance(step);
    }
    // t = 14 s: the window [4 s, 14 s] holds 3 s of pauses.
    assert!(sim.is_open(sub), "pauses before the window do not count");
    let queued = sim.shards[0].connection(sub.token).unwrap().outbox.undelivered().frames;
    assert!(queued > 0);
    for _ in 0..21 {
        sim.advance(step);
    }
    // t = 16.1 s: the window [6.1 s, 16.1 s] holds 5.1 s.
    assert!(!sim.is_open(sub));
    assert_eq!(sim.closed, [(sub, crate::relays::CloseReason::Stalled)]);
    let metrics = &sim.relays[0].metrics;
    assert_eq!(metrics.slow_disconnects.load(Relaxed), 1);
    assert_eq!(metrics.dropped_frames.load(Relaxed), queued, "the frames it lost are counted");
    assert!(sim.shards[0].may_read(publisher.token), "its publisher resumes");
}

#[test]
fn the_stall_rule_does_not_run_during_the_stop() {
    let mut sim = Sim::new(ExecutionLogic, config(&ExecutionLogic, Policy::Block), 1);
    let sub = slow_subscriber(&mut sim, 0, 0);
    let publisher = sim.connect(0);
    sim.send(
        publisher,
        &(1..=100).flat_map(|s| data(RelayDomain::Execution, 20, s, 40, 48)).collect::<Vec<_>>(),
    );
    assert!(!sim.shards[0].may_read(publisher.token), "the subscriber blocks the publisher");
    let now = sim.now();
    sim.shards[0].begin_stop(now);
    for _ in 0..60 {
        sim.advance(Duration::from_millis(100));
    }
    assert!(sim.is_open(sub), "a stalled subscriber's frames are undelivered, not dropped");
    let undelivered = sim.shards[0].connection(sub.token).unwrap().outbox.undelivered();
    let accepted = sim.relays[0].metrics.frames_in.load(Relaxed);
    assert_eq!((undelivered.frames, undelivered.first, undelivered.last), (accepted, 1, accepted));
    assert!(sim.shards[0].report_undelivered(), "execution is lossless: exit status 3");
}

#[test]
fn undelivered_frames_of_a_lossy_relay_are_not_a_failure() {
    let mut sim = market_data(Policy::Block);
    let sub = slow_subscriber(&mut sim, 0, 0);
    let publisher = publisher(&mut sim, 0);
    sim.send(publisher, &frames(1, 5));
    let now = sim.now();
    sim.shards[0].begin_stop(now);
    assert_eq!(sim.shards[0].connection(sub.token).unwrap().outbox.undelivered().frames, 5);
    assert!(!sim.shards[0].report_undelivered());
    assert!(!sim.shards[0].flushed());
}

#[test]
fn notices_past_sixteen_are_merged_into_counts() {
    let mut sim = market_data(Policy::Drop);
    let client = sim.connect(0);
    sim.shards[0].connection_mut(client.token).unwrap().socket.capacity = 0;
    sim.send(client, &with_notices(Role::PublishSubscribe));
    // Forty frames of the wrong domain, each rejected.
    let bad: Vec<u8> = (1..=40).flat_map(|s| data(RelayDomain::Signal, 1, s, 200, 10)).collect();
    sim.send(client, &bad);
    assert_eq!(
        sim.relays[0].metrics.rejected[Reason::Frame(Error::BadDomain { found: 0 }).index() + 1]
            .load(Relaxed),
        40
    );
    sim.shards[0].connection_mut(client.token).unwrap().socket.capacity = 1 << 20;
    let first = notices(&sim.receive(client));
    assert_eq!(first.len(), 16, "at most 16 pending");
    assert_eq!(first[0].0, notice::SUBSCRIBED);
    assert!(first[1..].iter().all(|n| n.0 == notice::REJECTED && n.2.starts_with("wrong_domain")));
    sim.advance(Duration::from_millis(100));
    let merged = notices(&sim.receive(client));
    assert_eq!(merged, [(notice::REJECTED, 0, "merged rejected=25 dropped=0".to_string())]);
}

#[test]
fn sequences_replayed_are_rejected_and_gaps_counted() {
    let mut sim = Sim::new(ExecutionLogic, config(&ExecutionLogic, Policy::Block), 1);
    let sub = sim.connect(0);
    let publisher = sim.connect(0);
    sim.send(publisher, &with_notices(Role::Publish));
    let order = |s| data(RelayDomain::Execution, 20, s, 40, 48);
    for s in [1, 2, 2, 5] {
        sim.send(publisher, &order(s));
    }
    assert_eq!(sequences(&sim.receive(sub)), [1, 2, 5]);
    let replays = notices(&sim.receive(publisher));
    assert_eq!(replays[1].0, notice::REJECTED);
    assert_eq!(replays[1].1, 2);
    assert!(replays[1].2.starts_with("sequence_replay"));
    assert_eq!(sim.shards[0].connection(publisher.token).unwrap().session.sequence_gaps, 1);
    assert_eq!(sim.relays[0].metrics.rejected[Reason::SequenceReplay.index()].load(Relaxed), 1);
    assert_eq!(
        sim.audited(),
        ["control", "accepted", "accepted", "rejected reason=sequence_replay", "accepted"]
    );
    assert!(sim.is_open(publisher), "with notices, a rejection does not close");
}

#[test]
fn without_notices_an_execution_rejection_closes() {
    let mut sim = Sim::new(ExecutionLogic, config(&ExecutionLogic, Policy::Block), 1);
    let publisher = sim.connect(0);
    let frame = data(RelayDomain::Execution, 20, 1, 40, 48);
    sim.send(publisher, &[frame.clone(), frame].concat());
    assert_eq!(sim.closed, [(publisher, crate::relays::CloseReason::Rejected)]);
}

#[test]
fn frames_cross_shards_in_order_and_pauses_reach_the_publisher() {
    let mut sim = Sim::new(MarketDataLogic, config(&MarketDataLogic, Policy::Block), 2);
    let near = sim.connect(0);
    let far = slow_subscriber(&mut sim, 1, 0);
    let publisher = publisher(&mut sim, 0);
    sim.hold = true;
    for chunk in 0..10 {
        sim.send(publisher, &frames(chunk * 10 + 1, 10));
    }
    assert_eq!(sequences(&sim.receive(near)).len(), 100, "the near subscriber does not wait");
    assert_eq!(charged(&sim, far), 0, "nothing crossed while the mail was held");
    sim.release_mail();
    assert!(!sim.shards[0].may_read(publisher.token), "the far queue paused the publisher");
    sim.send(publisher, &frames(101, 50));
    sim.shards[1].connection_mut(far.token).unwrap().socket.capacity = 1 << 20;
    let far_got = sequences(&sim.receive(far));
    assert_eq!(far_got, (1..=150).collect::<Vec<_>>(), "in order across shards, nothing lost");
    assert!(sim.shards[0].may_read(publisher.token));
}

#[test]
fn the_queued_bytes_gauge_follows_every_queue_across_shards() {
    for shards in [1, 2] {
        let sim = &mut Sim::new(MarketDataLogic, config(&MarketDataLogic, Policy::Drop), shards);
        let gauge = |sim: &Sim<MarketDataLogic>| sim.relays[0].metrics.queued_bytes.load(Relaxed) as usize;
        let near = slow_subscriber(sim, 0, 0);
        let far = slow_subscriber(sim, shards - 1, 0);
        let publisher = publisher(sim, 0);
        sim.send(publisher, &frames(1, 20));
        assert!(charged(sim, near) > 0 && charged(sim, far) > 0);
        assert_eq!(gauge(sim), charged(sim, near) + charged(sim, far), "both queues counted");
        // A queue written out leaves the gauge; a connection closed with its queue full too.
        sim.shards[0].connection_mut(near.token).unwrap().socket.capacity = 1 << 20;
        assert_eq!(sequences(&sim.receive(near)).len(), 20);
        assert_eq!(gauge(sim), charged(sim, far));
        sim.shards[shards - 1].close(far.token, crate::relays::CloseReason::PeerClosed);
        assert_eq!(gauge(sim), 0, "nothing is queued once the full queue's connection closed");
    }
}

#[test]
fn relays_on_one_shard_keep_their_frames_apart() {
    let md = config(&MarketDataLogic, Policy::Drop);
    let ex = config(&ExecutionLogic, Policy::Block);
    let relays =
        vec![RelayContext::new(AnyLogic::MarketData, md), RelayContext::new(AnyLogic::Execution, ex)];
    let mut sim = Sim::with_relays(relays, 1);
    let md_sub = sim.connect_to(0, 0);
    let ex_sub = sim.connect_to(0, 1);
    let md_pub = sim.connect_to(0, 0);
    let ex_pub = sim.connect_to(0, 1);
    sim.send(md_pub, &frames(1, 3));
    sim.send(ex_pub, &data(RelayDomain::Execution, 20, 7, 40, 48));
    assert_eq!(sequences(&sim.receive(md_sub)), [1, 2, 3]);
    assert_eq!(sequences(&sim.receive(ex_sub)), [7]);
    assert_eq!(sim.audited().len(), 1, "only the execution relay audits");
}

/// A fourth domain, written as one small type: a market-data feed that is audited and
/// lossless, and refuses TLV type 201 on its socket.
#[derive(Debug, Default)]
struct AuditedFeed;

impl RelayLogic for AuditedFeed {
    fn defaults(&self) -> DomainDefaults {
        DomainDefaults {
            name: "audited-feed",
            policy: Policy::Block,
            levels: Levels { audit: true, ..MarketDataLogic.defaults().levels },
            ..MarketDataLogic.defaults()
        }
    }

    fn check(&self, frame: &[u8], levels: &Levels) -> Result<FrameKind, Error> {
        let kind = MarketDataLogic.check(frame, levels)?;
        match crate::protocol::tlvs(&frame[32..]).next() {
            Some(Ok(tlv)) if kind == FrameKind::Data && tlv.tlv_type == 201 => {
                Err(Error::TlvTypeNotAllowed { offset: 0, tlv_type: 201, domain: RelayDomain::MarketData })
            }
            _ => Ok(kind),
        }
    }
}

#[test]
fn a_domain_is_one_small_type() {
    let logic = AuditedFeed;
    let config = RelayConfig::new(&logic.defaults());
    assert_eq!((config.policy, config.levels.audit), (Policy::Block, true));
    let mut sim = Sim::new(logic, config, 1);
    let sub = slow_subscriber(&mut sim, 0, 0);
    let publisher = publisher(&mut sim, 0);
    sim.send(
        publisher,
        &[data(MD, 1, 1, 200, 10), data(MD, 1, 2, 201, 10), data(MD, 1, 3, 200, 10)].concat(),
    );
    let not_allowed = Reason::Frame(Error::TlvTypeNotAllowed { offset: 0, tlv_type: 0, domain: MD });
    assert_eq!(sim.relays[0].metrics.rejected[not_allowed.index()].load(Relaxed), 1);
    assert_eq!(sim.audited().len(), 4, "a hello and three frames, all audited");
    let now = sim.now();
    sim.shards[0].begin_stop(now);
    assert!(sim.shards[0].report_undelivered(), "its undelivered frames fail the stop (policy block)");
    sim.shards[0].connection_mut(sub.token).unwrap().socket.capacity = 1 << 20;
    assert_eq!(sequences(&sim.receive(sub)), [1, 3]);
}

#[test]
fn a_client_that_asks_for_notices_and_never_reads_is_closed() {
    let mut sim = market_data(Policy::Drop);
    let client = sim.connect(0);
    sim.shards[0].connection_mut(client.token).unwrap().socket.capacity = 0;
    let again = with_notices(Role::Subscribe);
    for _ in 0..16 {
        sim.send(client, &again);
    }
    // Sixteen notices 1 pending, each charged against the queue bound.
    assert!(sim.is_open(client));
    assert!(charged(&sim, client) > 16 * 32, "notices are charged: {}", charged(&sim, client));
    sim.send(client, &again);
    assert_eq!(sim.closed, [(client, crate::relays::CloseReason::SlowConsumer)]);
    assert_eq!(sim.relays[0].metrics.slow_disconnects.load(Relaxed), 1);
}
