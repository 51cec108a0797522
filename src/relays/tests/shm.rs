//! Shared-memory delivery in the core (PROTOCOL.md §7): the log is a second sink of the same
//! decision — every accepted frame once, byte-identical to the socket's, with its publisher's
//! id so a reader skips its own; a reader gets no data over its socket; the log is written
//! only while someone reads it; Execution answers `shm=0`; an overrun reader is told what it
//! lost; the stop closes the log.

use std::os::fd::OwnedFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Duration;

use super::sim::{Client, Sim, data, parse_frames, subscribe};
use super::{config, notices, sequences};
use crate::protocol::{Filter, OPTION_SHM, RelayDomain, Role, Subscribe, notice};
use crate::relays::{ExecutionLogic, MarketDataLogic, Policy};
use crate::shm::{LogReader, MIN_CAPACITY, Next};

const MD: RelayDomain = RelayDomain::MarketData;

fn market_data(shards: usize) -> (Sim<MarketDataLogic>, OwnedFd) {
    Sim::with_log(MarketDataLogic, config(&MarketDataLogic, Policy::Drop), shards, MIN_CAPACITY)
}

/// A client on `shard` asking for the log as `role`; returns it and its notice 1's text.
fn reader<L: crate::relays::RelayLogic>(sim: &mut Sim<L>, shard: usize, role: Role) -> (Client, String) {
    let client = sim.connect(shard);
    sim.send(client, &subscribe(&Subscribe { role, options: OPTION_SHM, filters: vec![] }));
    let got = notices(&sim.receive(client));
    assert_eq!(got.len(), 1, "{got:?}");
    assert_eq!(got[0].0, notice::SUBSCRIBED);
    (client, got[0].2.clone())
}

/// Every frame the log holds from now on: (bytes, origin).
fn drain(log: &mut LogReader) -> Vec<(Vec<u8>, u64)> {
    let mut buf = vec![0; log.max_frame()];
    let mut out = Vec::new();
    while let Next::Frame { len, origin } = log.next(&mut buf).unwrap() {
        out.push((buf[..len].to_vec(), origin));
    }
    out
}

fn word<'a>(text: &'a str, key: &str) -> &'a str {
    text.split(' ').find_map(|w| w.strip_prefix(key)).unwrap_or_else(|| panic!("no {key} in {text:?}"))
}

#[test]
fn the_log_holds_every_accepted_frame_once_byte_identical_to_the_socket() {
    let (mut sim, fd) = market_data(2);
    let mut log = LogReader::attach(&fd).unwrap();
    let (shm, text) = reader(&mut sim, 1, Role::Subscribe);
    assert_eq!(word(&text, "shm="), (log.len() as u64).to_string(), "the log's size: {text}");
    assert_eq!(sim.shards[1].connection(shm.token).unwrap().socket.log_sent_at, [0], "with notice 1");
    let socket = sim.connect(1);
    let near = sim.connect(0);
    sim.send(near, &data(MD, 1, 1, 200, 40));
    let far = sim.connect(1);
    sim.send(far, &data(MD, 2, 1, 200, 40));
    sim.send(near, &[data(MD, 1, 2, 200, 40), data(MD, 1, 3, 201, 90)].concat());

    let written = drain(&mut log);
    let origins: Vec<u64> = written.iter().map(|(_, origin)| *origin).collect();
    let ids = |c: Client| sim.shards[c.shard].connection(c.token).unwrap().id();
    assert_eq!(origins, [ids(near), ids(far), ids(near), ids(near)], "each publisher's own id");
    let bytes: Vec<u8> = written.iter().flat_map(|(b, _)| b.clone()).collect();
    let mut by_socket = sim.shards[1].connection_mut(socket.token).unwrap().socket.data.clone();
    by_socket.sort_unstable();
    let mut in_log = bytes.clone();
    in_log.sort_unstable();
    assert_eq!(in_log, by_socket, "the same bytes as a socket subscriber's");
    assert_eq!(parse_frames(&bytes).len(), 4);
    assert!(sequences(&sim.receive(shm)).is_empty(), "no data frame over a reader's socket");
    let metrics = &sim.relays[0].metrics;
    assert_eq!((metrics.shm_readers.load(Relaxed), metrics.shm_frames.load(Relaxed)), (1, 4));
}

#[test]
fn the_descriptor_goes_once_per_connection_however_often_it_subscribes() {
    let (mut sim, _fd) = market_data(1);
    let (client, _) = reader(&mut sim, 0, Role::Subscribe);
    for _ in 0..5 {
        sim.send(
            client,
            &subscribe(&Subscribe { role: Role::Subscribe, options: OPTION_SHM, filters: vec![] }),
        );
    }
    let got = notices(&sim.receive(client));
    assert_eq!(got.len(), 5, "each Subscribe acknowledged");
    assert!(got.iter().all(|n| n.2.contains(" shm=") && !n.2.contains(" shm=0")), "{got:?}");
    let sent = &sim.shards[0].connection(client.token).unwrap().socket.log_sent_at;
    assert_eq!(sent.len(), 1, "one descriptor in flight at most: {sent:?}");
}

#[test]
fn a_reader_knows_its_own_frames_by_the_id_in_notice_1() {
    let (mut sim, fd) = market_data(1);
    let mut log = LogReader::attach(&fd).unwrap();
    let (both, text) = reader(&mut sim, 0, Role::PublishSubscribe);
    sim.send(both, &data(MD, 3, 1, 200, 40));
    let written = drain(&mut log);
    assert_eq!(written.len(), 1, "its frame is in the log, for the others");
    assert_eq!(written[0].1.to_string(), word(&text, "id="), "and says whose it is");
}

#[test]
fn the_log_is_written_only_while_someone_reads_it() {
    let (mut sim, fd) = market_data(2);
    let mut log = LogReader::attach(&fd).unwrap();
    let publisher = sim.connect(0);
    sim.send(publisher, &data(MD, 1, 1, 200, 40));
    assert!(drain(&mut log).is_empty(), "no reader, no writes");
    let (shm, _) = reader(&mut sim, 1, Role::Subscribe);
    sim.send(publisher, &data(MD, 1, 2, 200, 40));
    assert_eq!(drain(&mut log).len(), 1, "a reader on another shard brings the batches to the writer");
    // A Subscribe without bit 3 takes it back to the socket.
    sim.send(shm, &subscribe(&Subscribe { role: Role::Subscribe, options: 0, filters: vec![] }));
    sim.send(publisher, &data(MD, 1, 3, 200, 40));
    assert!(drain(&mut log).is_empty());
    assert_eq!(sequences(&sim.receive(shm)), [3], "over its socket again");
    assert_eq!(sim.relays[0].metrics.shm_readers.load(Relaxed), 0);
}

#[test]
fn execution_answers_shm_0_and_delivers_over_the_socket() {
    let config = config(&ExecutionLogic, Policy::Block);
    let (mut sim, _fd) = Sim::with_log(ExecutionLogic, config, 1, MIN_CAPACITY);
    let (client, text) = reader(&mut sim, 0, Role::Subscribe);
    assert_eq!(word(&text, "shm="), "0");
    assert!(sim.shards[0].connection(client.token).unwrap().socket.log_sent_at.is_empty());
    let publisher = sim.connect(0);
    sim.send(publisher, &data(RelayDomain::Execution, 20, 1, 40, 48));
    assert_eq!(sequences(&sim.receive(client)), [1]);
}

#[test]
fn a_filtered_reader_still_gets_the_whole_log_and_filters_itself() {
    let (mut sim, fd) = market_data(1);
    let mut log = LogReader::attach(&fd).unwrap();
    let client = sim.connect(0);
    let filters = vec![Filter::TypeRange { lo: 201, hi: 201 }];
    sim.send(client, &subscribe(&Subscribe { role: Role::Subscribe, options: OPTION_SHM, filters }));
    let publisher = sim.connect(0);
    sim.send(publisher, &[data(MD, 1, 1, 200, 40), data(MD, 1, 2, 201, 40)].concat());
    assert_eq!(drain(&mut log).len(), 2, "one log for every reader");
}

#[test]
fn an_overrun_reader_is_told_what_it_lost() {
    let (mut sim, fd) = market_data(1);
    let mut log = LogReader::attach(&fd).unwrap();
    reader(&mut sim, 0, Role::Subscribe);
    let publisher = sim.connect(0);
    // 10 000 records of 144 bytes: more than the 1 MiB ring.
    for chunk in 0..100u64 {
        let frames: Vec<u8> = (1..=100).flat_map(|s| data(MD, 1, chunk * 100 + s, 200, 94)).collect();
        sim.send(publisher, &frames);
    }
    let mut buf = vec![0; log.max_frame()];
    let Next::Lost { count, first_sequence } = log.next(&mut buf).unwrap() else { panic!("not overrun") };
    assert_eq!(first_sequence, Some(1));
    let rest = drain(&mut log);
    assert_eq!(count + rest.len() as u64, 10_000, "what it lost and what it read are everything");
}

#[test]
fn the_stop_closes_the_log_after_the_last_frame() {
    let (mut sim, fd) = market_data(1);
    let mut log = LogReader::attach(&fd).unwrap();
    reader(&mut sim, 0, Role::Subscribe);
    let publisher = sim.connect(0);
    sim.send(publisher, &data(MD, 1, 1, 200, 40));
    let now = sim.now();
    sim.shards[0].begin_stop(now);
    sim.advance(Duration::from_millis(100));
    assert!(!log.closed(), "open while the relay flushes");
    drop(sim);
    assert_eq!(drain(&mut log).len(), 1);
    let mut buf = vec![0; log.max_frame()];
    assert_eq!(log.next(&mut buf).unwrap(), Next::Closed);
}

#[test]
fn a_relay_without_a_log_answers_shm_0_and_delivers_over_the_socket() {
    let mut sim = Sim::new(MarketDataLogic, config(&MarketDataLogic, Policy::Drop), 1);
    let reader = sim.connect(0);
    sim.send(reader, &subscribe(&Subscribe { role: Role::Subscribe, options: OPTION_SHM, filters: vec![] }));
    let got = notices(&sim.receive(reader));
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, notice::SUBSCRIBED);
    assert!(got[0].2.ends_with(" shm=0"), "{}", got[0].2);
    let publisher = super::publisher(&mut sim, 0);
    sim.send(publisher, &super::frames(1, 3));
    assert_eq!(sequences(&sim.receive(reader)), [1, 2, 3]);
}
