//! The call contract's harder paths, driven as the reactor drives them: the audit trail's
//! fail-closed hold (PROTOCOL.md §6, audit) and the stop's flush across shards.

use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::sim::{Sim, data, subscribe};
use super::{config, notices, sequences, slow_subscriber, with_notices};
use crate::protocol::{OPTION_CONFIRM, RelayDomain, Role, Subscribe, notice};
use crate::relays::{ExecutionLogic, Policy};

fn orders(first: u64, count: u64) -> Vec<u8> {
    (first..first + count).flat_map(|s| data(RelayDomain::Execution, 20, s, 40, 48)).collect()
}

/// Execution over two shards: a subscriber on shard 1, a confirming publisher on shard 0.
fn execution() -> (Sim<ExecutionLogic>, super::Client, super::Client) {
    let mut sim = Sim::new(ExecutionLogic, config(&ExecutionLogic, Policy::Block), 2);
    let sub = sim.connect(1);
    let publisher = sim.connect(0);
    let confirm = Subscribe { role: Role::Publish, options: OPTION_CONFIRM, filters: vec![] };
    sim.send(publisher, &subscribe(&confirm));
    assert_eq!(notices(&sim.receive(publisher)).len(), 1, "subscribed");
    (sim, sub, publisher)
}

#[test]
fn an_audit_trail_that_cannot_be_written_holds_its_frames_and_reads_nothing_until_it_can() {
    let (mut sim, sub, publisher) = execution();
    let other = sim.connect(1);
    sim.send(other, &with_notices(Role::Publish));
    let lines_before = sim.audited().len();
    sim.audit_full = true;
    sim.send(publisher, &orders(1, 3));
    let metrics = &sim.relays[0].metrics;
    assert_eq!(metrics.audit_failing.load(Relaxed), 1);
    assert_eq!(metrics.audit_write_errors.load(Relaxed), 1);
    assert!(sequences(&sim.receive(sub)).is_empty(), "nothing unaudited is delivered");
    assert!(notices(&sim.receive(publisher)).is_empty(), "nor confirmed");
    // Neither the publisher nor a publisher on the other shard is read while it fails.
    sim.send(publisher, &orders(4, 1));
    sim.send(other, &data(RelayDomain::Execution, 21, 1, 40, 48));
    assert!(!sim.shards[0].may_read(publisher.token) && !sim.shards[1].may_read(other.token));
    assert_eq!(sim.relays[0].metrics.frames_in.load(Relaxed), 3, "what is unread is unaccepted");
    // The write is asked for again a second after it failed, not before.
    sim.advance(Duration::from_millis(500));
    assert_eq!(sim.relays[0].metrics.audit_write_errors.load(Relaxed), 1);
    sim.advance(Duration::from_millis(500));
    assert_eq!(sim.relays[0].metrics.audit_write_errors.load(Relaxed), 2, "retried after a second");
    // Space again: the held frames go first, in order, then what waited unread, everywhere.
    sim.audit_full = false;
    sim.advance(Duration::from_secs(1));
    assert_eq!(sim.relays[0].metrics.audit_failing.load(Relaxed), 0);
    let received: Vec<(u8, u64)> = {
        let got = sim.receive(sub);
        got.iter().filter(|r| r.notice.is_none()).map(|r| (r.source, r.sequence)).collect()
    };
    // Each publisher's frames in order (publishers have no order between them).
    let from = |source| received.iter().filter(|r| r.0 == source).map(|r| r.1).collect::<Vec<_>>();
    assert_eq!((from(20), from(21)), (vec![1, 2, 3, 4], vec![1]));
    let audited = sim.audited();
    assert_eq!(audited.len() - lines_before, 5, "every frame delivered has its record: {audited:?}");
    let confirmed = notices(&sim.receive(publisher));
    assert_eq!(confirmed.last().map(|n| (n.0, n.1)), Some((notice::ACCEPTED, 4)));
}

#[test]
fn a_stop_with_records_unwritten_reports_their_frames_undelivered() {
    let (mut sim, sub, publisher) = execution();
    sim.audit_full = true;
    sim.send(publisher, &orders(1, 2));
    for shard in 0..2 {
        let now = sim.now();
        sim.shards[shard].begin_stop(now);
    }
    sim.run();
    assert!(sequences(&sim.receive(sub)).is_empty());
    assert!(!sim.shards[0].flushed(), "the held intake is not flushed");
    assert!(sim.shards[1].flushed());
    assert!(sim.shards[0].report_undelivered(), "accepted and never delivered: exit status 3");
}

#[test]
fn a_stop_with_a_subscribe_unaudited_is_a_failure_too() {
    let mut sim = Sim::new(ExecutionLogic, config(&ExecutionLogic, Policy::Block), 1);
    sim.audit_full = true;
    let sub = sim.connect(0);
    sim.send(sub, &with_notices(Role::Subscribe));
    let now = sim.now();
    sim.shards[0].begin_stop(now);
    assert!(sim.shards[0].report_undelivered(), "an intake never carried out: exit status 3");
}

#[test]
fn the_stop_flushes_what_was_accepted_across_shards_and_reads_nothing_more() {
    let mut sim = Sim::new(ExecutionLogic, config(&ExecutionLogic, Policy::Block), 2);
    let sub = slow_subscriber(&mut sim, 1, 0);
    sim.send(sub, &with_notices(Role::Subscribe));
    let publisher = sim.connect(0);
    sim.send(publisher, &with_notices(Role::Publish));
    sim.send(publisher, &orders(1, 20));
    let accepted = sim.relays[0].metrics.frames_in.load(Relaxed);
    assert!(accepted > 0);
    for shard in 0..2 {
        let now = sim.now();
        sim.shards[shard].begin_stop(now);
    }
    sim.run();
    assert!(!sim.shards[1].flushed(), "the subscriber has read nothing yet");
    sim.send(publisher, &orders(21, 5));
    sim.shards[1].connection_mut(sub.token).unwrap().socket.capacity = 1 << 20;
    let received = sim.receive(sub);
    assert_eq!(sequences(&received), (1..=accepted).collect::<Vec<_>>(), "everything accepted, in order");
    assert!(notices(&received).iter().any(|n| n.0 == notice::STOPPING), "notice 5");
    assert_eq!(sim.relays[0].metrics.frames_in.load(Relaxed), accepted, "nothing read after the stop");
    assert!(sim.shards.iter().all(|s| s.flushed()));
    assert!(!sim.shards.iter().any(|s| s.report_undelivered()));
}
