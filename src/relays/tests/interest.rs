//! Fan-out by interest: a batch goes only to the shards that hold a connection of its relay that
//! subscribes (or may yet), the fan-out looks only at subscribers, and routing keys are
//! computed at intake only while a subscription has filters.

use std::sync::atomic::Ordering::Relaxed;

use super::sim::{HELLO, Sim, subscribe};
use super::{config, frames, publisher, sequences, with_notices};
use crate::protocol::{Filter, Role, Subscribe};
use crate::relays::{MarketDataLogic, Msg, Policy};

fn two_shards() -> Sim<MarketDataLogic> {
    Sim::new(MarketDataLogic, config(&MarketDataLogic, Policy::Drop), 2)
}

/// The batches waiting for shard `to`.
fn batches_to(sim: &Sim<MarketDataLogic>, to: usize) -> usize {
    sim.mail.iter().filter(|(shard, msg)| *shard == to && matches!(msg, Msg::Batch(_))).count()
}

#[test]
fn a_batch_goes_only_to_shards_with_a_subscriber_of_its_relay() {
    let mut sim = two_shards();
    let source = publisher(&mut sim, 0);
    // Shard 1 holds a publisher only: it is sent nothing.
    let _other = publisher(&mut sim, 1);
    sim.hold = true;
    sim.send(source, &frames(1, 3));
    assert_eq!(batches_to(&sim, 1), 0);
    sim.release_mail();
    // A subscriber on shard 1, and batches go there from then on.
    let reader = sim.connect(1);
    sim.hold = true;
    sim.send(source, &frames(4, 2));
    assert_eq!(batches_to(&sim, 1), 1);
    sim.release_mail();
    assert_eq!(sequences(&sim.receive(reader)), [4, 5]);
}

#[test]
fn a_connection_that_turns_publisher_or_leaves_takes_its_shard_s_interest_with_it() {
    let mut sim = two_shards();
    let source = publisher(&mut sim, 0);
    let legacy = sim.connect(1);
    let subscribed = sim.connect(1);
    sim.send(subscribed, &with_notices(Role::Subscribe));
    // The legacy connection says hello: a publisher. The subscriber is still there.
    sim.send(legacy, &HELLO);
    sim.hold = true;
    sim.send(source, &frames(1, 1));
    assert_eq!(batches_to(&sim, 1), 1);
    sim.release_mail();
    // The subscriber turns publisher-only: shard 1 has no interest left.
    sim.send(subscribed, &with_notices(Role::Publish));
    sim.hold = true;
    sim.send(source, &frames(2, 1));
    assert_eq!(batches_to(&sim, 1), 0);
    sim.release_mail();
    // It subscribes again; then it leaves.
    sim.send(subscribed, &with_notices(Role::PublishSubscribe));
    sim.hold = true;
    sim.send(source, &frames(3, 1));
    assert_eq!(batches_to(&sim, 1), 1);
    sim.release_mail();
    sim.shards[1].close(subscribed.token, crate::relays::CloseReason::PeerClosed);
    sim.hold = true;
    sim.send(source, &frames(4, 1));
    assert_eq!(batches_to(&sim, 1), 0);
}

#[test]
fn filtered_subscriptions_are_counted_and_still_filter() {
    let mut sim = two_shards();
    let source = publisher(&mut sim, 0);
    let filtered = sim.connect(1);
    let only_seven = Subscribe { role: Role::Subscribe, options: 0, filters: vec![Filter::Source(7)] };
    sim.send(filtered, &subscribe(&only_seven));
    assert_eq!(sim.relays[0].filtered.load(Relaxed), 1, "routing keys are computed at intake now");
    let other = publisher(&mut sim, 1);
    let from_seven: Vec<u8> = (1..=2).flat_map(|s| super::sim::data(super::MD, 7, s, 200, 10)).collect();
    sim.send(source, &frames(1, 2));
    sim.send(other, &from_seven);
    assert_eq!(sequences(&sim.receive(filtered)), [1, 2], "source 7 only, from either shard");
    // Without filters again: no key is computed any more.
    sim.send(filtered, &with_notices(Role::Subscribe));
    assert_eq!(sim.relays[0].filtered.load(Relaxed), 0);
}
