//! Fuzzes what the tools do with a file: the pcapng reader, torq-decode over a recording or
//! a raw capture, and the decode → torq-pub round trip of every frame found.
//!
//! Input: any bytes, read as a file would be (pcapng when it starts with 0A 0D 0D 0A).
//! Checks: nothing panics; torq-decode over a slice never fails with an I/O error; packets
//! come at increasing offsets inside the input, and an error names an offset inside it and
//! ends the reading; the packets written again with the writer read back the same; every
//! frame (of the packets, or of the raw input) rendered as `torq-decode --hex` prints it,
//! through JSON text, is rebuilt by the encoder of torq-pub byte for byte.
#![no_main]

use std::io;

use libfuzzer_sys::fuzz_target;
use serde_json::Value as Json;
use torq::tools::capture::{Next, RawFrames};
use torq::tools::decode::{Render, decode};
use torq::tools::encode::Encoder;
use torq::tools::pcapng::{Error, Reader, SECTION_HEADER_BYTES, Writer};

fuzz_target!(|data: &[u8]| {
    decode(data, &mut io::sink(), Render { hex: true, pretty: false }).expect("a slice never fails to read");

    let mut reader = Reader::new(data);
    let mut packets = Vec::new();
    let mut last_offset = None;
    loop {
        match reader.next_packet() {
            Ok(Some(packet)) => {
                assert!(packet.offset < data.len() as u64, "packet block at {} past the input", packet.offset);
                assert!(last_offset < Some(packet.offset), "offsets go back: {last_offset:?} then {}", packet.offset);
                assert!(packet.data.len() <= data.len());
                last_offset = Some(packet.offset);
                packets.push((packet.timestamp_ns.unwrap_or(0), packet.data.to_vec()));
            }
            Ok(None) => break,
            Err(Error::Malformed { offset, problem }) => {
                assert!(offset <= data.len() as u64, "error at {offset} past the input: {problem}");
                assert!(!problem.to_string().is_empty());
                assert_eq!(reader.next_packet().unwrap(), None, "a failed reader stays at its end");
                break;
            }
            Err(Error::Io(e)) => panic!("a slice gave an i/o error: {e}"),
        }
    }

    let mut writer = Writer::new(Vec::new(), "fuzz", "fuzz").unwrap();
    for (time, packet) in &packets {
        writer.write_packet(*time, packet).expect("a packet that was read fits a block");
    }
    let written = writer.into_inner();
    let mut again = Reader::new(&written[..]);
    for (time, packet) in &packets {
        let read = again.next_packet().unwrap().expect("every packet written is read");
        assert_eq!((read.timestamp_ns, read.data), (Some(*time), &packet[..]));
    }
    assert_eq!(again.next_packet().unwrap(), None);

    if data.starts_with(&SECTION_HEADER_BYTES) {
        for (_, packet) in &packets {
            round_trip_frames(packet);
        }
    } else {
        round_trip_frames(data);
    }
});

/// Every whole frame of `stream` goes through `torq-decode --hex` and back unchanged.
fn round_trip_frames(stream: &[u8]) {
    let mut frames = RawFrames::new(stream, 0);
    let mut encoder = Encoder::new();
    while let Next::Frame { bytes, .. } = frames.next_frame().expect("a slice never fails to read") {
        let (line, _) = Render { hex: true, pretty: false }.frame(bytes, 0);
        let text = line.to_string();
        let parsed: Json = serde_json::from_str(&text).expect("a line is JSON");
        let rebuilt = encoder.frame(&parsed, 0).unwrap_or_else(|e| panic!("{e}: {text}"));
        assert_eq!(rebuilt, bytes, "{text}");
    }
}
