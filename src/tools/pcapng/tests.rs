use super::*;

fn recording(packets: &[(u64, &[u8])]) -> Vec<u8> {
    let mut writer = Writer::new(Vec::new(), "torq-test", "/tmp/x.sock").unwrap();
    for (time, data) in packets {
        writer.write_packet(*time, data).unwrap();
    }
    writer.into_inner()
}

/// (time, data, block offset) of a packet read.
type ReadPacket = (Option<u64>, Vec<u8>, u64);

fn read_all(bytes: &[u8]) -> (Vec<ReadPacket>, Option<Error>) {
    let mut reader = Reader::new(bytes);
    let mut packets = Vec::new();
    loop {
        match reader.next_packet() {
            Ok(Some(p)) => packets.push((p.timestamp_ns, p.data.to_vec(), p.offset)),
            Ok(None) => return (packets, None),
            Err(e) => {
                // A failed reader stays at its end.
                assert_eq!(reader.next_packet().unwrap(), None);
                return (packets, Some(e));
            }
        }
    }
}

fn problem(error: Option<Error>) -> (u64, Problem) {
    match error {
        Some(Error::Malformed { offset, problem }) => (offset, problem),
        other => panic!("expected a malformed recording, got {other:?}"),
    }
}

#[test]
fn golden_header_blocks_and_packet() {
    let bytes = recording(&[(0x1_0000_0002, &[1, 2, 3])]);
    #[rustfmt::skip]
    let golden: &[u8] = &[
        // Section Header Block: type, length 48, byte-order magic, 1.0, section length -1.
        0x0A, 0x0D, 0x0D, 0x0A, 48, 0, 0, 0, 0x4D, 0x3C, 0x2B, 0x1A, 1, 0, 0, 0,
        0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF, 0xFF,
        // shb_userappl "torq-test" (9 bytes, padded to 12), end of options, length.
        4, 0, 9, 0, b't', b'o', b'r', b'q', b'-', b't', b'e', b's', b't', 0, 0, 0,
        0, 0, 0, 0, 48, 0, 0, 0,
        // Interface Description Block: type 1, length 48, link type 147, snap length 0.
        1, 0, 0, 0, 48, 0, 0, 0, 147, 0, 0, 0, 0, 0, 0, 0,
        // if_name "/tmp/x.sock" (11 bytes, padded to 12), if_tsresol 9, end, length.
        2, 0, 11, 0, b'/', b't', b'm', b'p', b'/', b'x', b'.', b's', b'o', b'c', b'k', 0,
        9, 0, 1, 0, 9, 0, 0, 0, 0, 0, 0, 0, 48, 0, 0, 0,
        // Enhanced Packet Block: type 6, length 36, interface 0, time high 1, low 2,
        // captured 3, original 3, data padded to 4, length.
        6, 0, 0, 0, 36, 0, 0, 0, 0, 0, 0, 0, 1, 0, 0, 0, 2, 0, 0, 0, 3, 0, 0, 0, 3, 0, 0, 0,
        1, 2, 3, 0, 36, 0, 0, 0,
    ];
    assert_eq!(bytes, golden);
}

#[test]
fn packets_come_back_with_their_times_and_offsets() {
    let data: Vec<Vec<u8>> = (0..9).map(|n| vec![n as u8; n * 7]).collect();
    let packets: Vec<(u64, &[u8])> =
        data.iter().enumerate().map(|(i, d)| (1_700_000_000_000_000_000 + i as u64, &d[..])).collect();
    let bytes = recording(&packets);
    let (read, error) = read_all(&bytes);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(read.len(), packets.len());
    let mut offset = 96; // SHB 48 + IDB 48
    for ((time, data, at), (want_time, want_data)) in read.iter().zip(&packets) {
        assert_eq!((*time, &data[..], *at), (Some(*want_time), *want_data, offset));
        offset += 32 + want_data.len().next_multiple_of(4) as u64;
    }
}

#[test]
fn a_truncated_recording_is_an_error_naming_the_cut_block() {
    let bytes = recording(&[(1, &[1; 5]), (2, &[2; 8])]);
    // Block ends: SHB, IDB, the two EPBs. A file cut there is whole.
    let ends = [48, 96, 136, 176];
    for cut in 0..bytes.len() {
        let (packets, error) = read_all(&bytes[..cut]);
        assert_eq!(packets.len(), ends[2..].iter().filter(|end| **end <= cut).count(), "cut at {cut}");
        if ends.contains(&cut) {
            assert!(error.is_none(), "cut at {cut}: {error:?}");
            continue;
        }
        let (offset, problem) = problem(error);
        let block = ends.iter().rev().find(|end| **end <= cut).map_or(0, |end| *end as u64);
        assert_eq!(offset, block, "cut at {cut}");
        if cut == 0 {
            assert_eq!(problem, Problem::NoSection);
        } else {
            assert!(matches!(problem, Problem::Truncated { .. }), "cut at {cut}: {problem}");
        }
    }
}

/// A recording of one section, in either byte order: the IDB's link type and options, then
/// one EPB of interface `interface` and `ticks`.
fn handmade(big_endian: bool, link_type: u16, options: &[u8], interface: u32, ticks: u64) -> Vec<u8> {
    let w16 = |v: u16| if big_endian { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() };
    let w32 = |v: u32| if big_endian { v.to_be_bytes().to_vec() } else { v.to_le_bytes().to_vec() };
    let block = |block_type: u32, body: &[u8]| {
        let len = 12 + body.len() as u32;
        [w32(block_type), w32(len), body.to_vec(), w32(len)].concat()
    };
    let shb = block(SECTION_HEADER, &[w32(BYTE_ORDER_MAGIC), w16(1), w16(0), vec![0xFF; 8]].concat());
    let idb = block(1, &[w16(link_type), w16(0), w32(0), options.to_vec()].concat());
    let epb = block(
        6,
        &[w32(interface), w32((ticks >> 32) as u32), w32(ticks as u32), w32(2), w32(2), vec![7, 8, 0, 0]]
            .concat(),
    );
    [shb, idb, epb].concat()
}

#[test]
fn either_byte_order_and_every_time_resolution() {
    // No if_tsresol: microseconds.
    for big_endian in [false, true] {
        let (packets, error) = read_all(&handmade(big_endian, 147, &[], 0, 5));
        assert!(error.is_none(), "{error:?}");
        assert_eq!((packets[0].0, &packets[0].1[..]), (Some(5_000), &[7, 8][..]));
    }
    let tsresol = |value: u8| [9, 0, 1, 0, value, 0, 0, 0, 0, 0, 0, 0].to_vec();
    let time = |options: &[u8], ticks| read_all(&handmade(false, 147, options, 0, ticks)).0[0].0;
    assert_eq!(time(&tsresol(9), 12), Some(12));
    assert_eq!(time(&tsresol(3), 12), Some(12_000_000));
    assert_eq!(time(&tsresol(12), 12_000), Some(12));
    assert_eq!(time(&tsresol(0x80 | 10), 1024), Some(1_000_000_000)); // 2^-10 s
    assert_eq!(time(&tsresol(0), u64::MAX), Some(u64::MAX), "saturates");
    assert_eq!(time(&tsresol(127), u64::MAX), Some(0));
}

#[test]
fn foreign_or_inconsistent_recordings_are_refused_by_name() {
    let (_, error) = read_all(&handmade(false, 1, &[], 0, 5));
    assert_eq!(problem(error), (48, Problem::LinkType(1)));
    let (_, error) = read_all(&handmade(false, 147, &[], 3, 5));
    assert_eq!(problem(error), (48, Problem::NoInterface { interface: 3, declared: 1 }));
    let (_, error) = read_all(&handmade(false, 147, &[9, 0, 200, 0], 0, 5));
    assert_eq!(problem(error), (28, Problem::Options));
    let mut bytes = recording(&[(1, &[1])]);
    let last = bytes.len() - 4;
    bytes[last] = 40;
    assert_eq!(problem(read_all(&bytes).1), (96, Problem::Trailer { leading: 36, trailing: 40 }));
    bytes[4] = 13;
    assert_eq!(problem(read_all(&bytes).1), (0, Problem::BlockLength(13)));
    bytes[..4].copy_from_slice(&[0xEF, 0xBE, 0xAD, 0xDE]);
    assert_eq!(problem(read_all(&bytes).1), (0, Problem::NoSection));
    let mut huge = recording(&[]);
    huge.extend_from_slice(&[6, 0, 0, 0, 0, 0, 0, 0x10]);
    assert_eq!(problem(read_all(&huge).1), (96, Problem::BlockTooLarge(0x1000_0000)));
    let mut captured = recording(&[(1, &[1; 4])]);
    captured[96 + 20] = 5; // captured 5 bytes in a block with room for 4
    assert_eq!(problem(read_all(&captured).1), (96, Problem::CapturedLength { captured: 5, room: 4 }));
}

#[test]
fn other_blocks_are_skipped_and_a_new_section_resets_the_interfaces() {
    let mut bytes = recording(&[(1, &[1])]);
    // A Name Resolution Block (4) with just its end-of-records.
    bytes.extend_from_slice(&[4, 0, 0, 0, 16, 0, 0, 0, 0, 0, 0, 0, 16, 0, 0, 0]);
    bytes.extend(recording(&[(2, &[2])]));
    let (packets, error) = read_all(&bytes);
    assert!(error.is_none(), "{error:?}");
    assert_eq!(packets.iter().map(|p| p.1[0]).collect::<Vec<_>>(), [1, 2]);
    // A second section without its interface: the packet names an interface it lacks.
    let mut second = recording(&[(1, &[1])]);
    second.extend_from_slice(&recording(&[])[..48]);
    second.extend_from_slice(&recording(&[(2, &[2])])[96..]);
    assert_eq!(problem(read_all(&second).1), (132 + 48, Problem::NoInterface { interface: 0, declared: 0 }));
}
