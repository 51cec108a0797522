//! Publisher confirms (PROTOCOL.md §6, options bit 2, notice 7): counts of accepted and
//! rejected data frames, after the rejections they count, at most one pending, never a reason
//! to close a connection.

use std::time::Duration;

use super::sim::{Client, Sim, data, subscribe};
use super::{config, notices, sequences};
use crate::protocol::{OPTION_CONFIRM, RelayDomain, Role, Subscribe, notice};
use crate::relays::{ExecutionLogic, Policy};

const EX: RelayDomain = RelayDomain::Execution;

fn execution() -> Sim<ExecutionLogic> {
    Sim::new(ExecutionLogic, config(&ExecutionLogic, Policy::Block), 1)
}

/// A publisher that asked for confirmation (and so for notices), its notice 1 read.
fn confirming(sim: &mut Sim<ExecutionLogic>) -> Client {
    let client = sim.connect(0);
    sim.send(
        client,
        &subscribe(&Subscribe { role: Role::Publish, options: OPTION_CONFIRM, filters: vec![] }),
    );
    let subscribed = notices(&sim.receive(client));
    assert_eq!(subscribed.iter().map(|n| n.0).collect::<Vec<_>>(), [notice::SUBSCRIBED]);
    client
}

fn order(sequence: u64) -> Vec<u8> {
    data(EX, 20, sequence, 40, 48)
}

/// An order whose checksum is 0: `checksum_missing` on Execution.
fn unchecked_order(sequence: u64) -> Vec<u8> {
    let mut frame = order(sequence);
    frame[28..32].fill(0);
    frame
}

#[test]
fn a_confirmation_counts_both_outcomes_after_the_rejections_it_counts() {
    let mut sim = execution();
    let sub = sim.connect(0);
    let publisher = confirming(&mut sim);
    let batch = [order(1), order(2), unchecked_order(3), order(4)].concat();
    sim.send(publisher, &batch);
    // The valid order after the rejected one is delivered: confirmation implies notices, so
    // close_on_reject does not close.
    assert_eq!(sequences(&sim.receive(sub)), [1, 2, 4]);
    assert!(sim.is_open(publisher));
    let got = notices(&sim.receive(publisher));
    assert_eq!(got.len(), 2, "{got:?}");
    let (code, sequence, text) = &got[0];
    assert_eq!((*code, *sequence), (notice::REJECTED, 3));
    // The reason token first, then which of the connection's data frames it was.
    assert!(text.starts_with("checksum_missing frame=3:"), "{text}");
    assert_eq!(got[1], (notice::ACCEPTED, 3, "accepted=3 rejected=1".to_string()));
}

#[test]
fn counts_run_on_from_the_connection_start_and_hellos_and_subscribes_do_not_count() {
    let mut sim = execution();
    let publisher = confirming(&mut sim);
    sim.send(publisher, &order(1));
    assert_eq!(notices(&sim.receive(publisher)), [(notice::ACCEPTED, 1, "accepted=1 rejected=0".into())]);
    sim.send(publisher, &super::HELLO);
    assert_eq!(notices(&sim.receive(publisher)), []);
    sim.send(publisher, &[unchecked_order(2), order(3)].concat());
    let got = notices(&sim.receive(publisher));
    assert_eq!(got.last().unwrap(), &(notice::ACCEPTED, 2, "accepted=2 rejected=1".into()));
}

#[test]
fn a_pending_confirmation_is_replaced_by_the_newer_count() {
    let mut sim = execution();
    let publisher = confirming(&mut sim);
    // The publisher reads nothing for a while: its socket takes no byte.
    sim.shards[0].connection_mut(publisher.token).unwrap().socket.capacity = 0;
    for sequence in 1..=40 {
        sim.send(publisher, &order(sequence));
    }
    let queued = sim.shards[0].connection(publisher.token).unwrap().outbox.notices_pending();
    assert_eq!(queued, 1, "one confirmation pending, not forty");
    sim.shards[0].connection_mut(publisher.token).unwrap().socket.capacity = 1 << 20;
    assert_eq!(notices(&sim.receive(publisher)), [(notice::ACCEPTED, 40, "accepted=40 rejected=0".into())]);
}

#[test]
fn a_confirmation_waits_for_room_and_never_closes_the_connection() {
    let mut sim = execution();
    let publisher = confirming(&mut sim);
    sim.shards[0].connection_mut(publisher.token).unwrap().socket.capacity = 0;
    // Twenty rejections in one read: sixteen notices 2, four merged; the count is owed.
    let rejected: Vec<u8> = (1..=20).flat_map(unchecked_order).collect();
    sim.send(publisher, &rejected);
    sim.send(publisher, &order(21));
    assert!(sim.is_open(publisher), "a confirmation never overflows the notice queue");
    sim.shards[0].connection_mut(publisher.token).unwrap().socket.capacity = 1 << 20;
    sim.advance(Duration::from_millis(100)); // owed notices go out at the tick
    let mut got = notices(&sim.receive(publisher));
    sim.advance(Duration::from_millis(100));
    got.extend(notices(&sim.receive(publisher)));
    let rejections = got.iter().filter(|n| n.0 == notice::REJECTED && n.1 != 0).count();
    assert_eq!(rejections, 16);
    assert!(got.contains(&(notice::REJECTED, 0, "merged rejected=4 dropped=0".into())), "{got:?}");
    assert_eq!(got.last().unwrap(), &(notice::ACCEPTED, 1, "accepted=1 rejected=20".into()), "{got:?}");
}

#[test]
fn without_the_option_no_confirmation_is_sent() {
    let mut sim = execution();
    let publisher = sim.connect(0);
    sim.send(publisher, &super::with_notices(Role::Publish));
    sim.receive(publisher);
    sim.send(publisher, &[order(1), unchecked_order(2)].concat());
    let got = notices(&sim.receive(publisher));
    assert_eq!(got.len(), 1, "{got:?}");
    // Without confirmation the text is the reason alone, as before.
    assert_eq!((got[0].0, got[0].1), (notice::REJECTED, 2));
    assert!(got[0].2.starts_with("checksum_missing:"), "{}", got[0].2);
}
