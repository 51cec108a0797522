//! Fuzzes the framer and everything a relay does with a whole frame.
//!
//! Input: 2 bytes of `max_message_size` (u16 LE, clamped to at least 32), then a byte
//! stream. The stream is framed frame by frame with `frame`; each whole frame is run
//! through `validate` under every `Checks` combination, its TLVs are walked and decoded
//! and its routing key computed; `checksum` is compared with crc32fast on every frame and on
//! the whole stream. Framing stops at `Incomplete` or at a (fatal) error.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torq::protocol::{
    Checks, ChecksumLevel, Error, FrameKind, Framing, HEADER_SIZE, RelayDomain, checksum, frame, routing_key,
    tlvs, validate,
};

const DOMAINS: [RelayDomain; 4] =
    [RelayDomain::MarketData, RelayDomain::Signal, RelayDomain::Execution, RelayDomain::System];
const LEVELS: [ChecksumLevel; 3] = [ChecksumLevel::Off, ChecksumLevel::Verify, ChecksumLevel::Required];

fuzz_target!(|data: &[u8]| {
    let Some((max, mut rest)) = data.split_first_chunk::<2>() else {
        return;
    };
    let max = usize::from(u16::from_le_bytes(*max)).max(HEADER_SIZE);
    // `checksum` accepts any slice; compare it with a plain crc32fast on the whole stream.
    assert_eq!(checksum(rest), reference_checksum(rest), "checksum of {} bytes", rest.len());

    loop {
        match frame(rest, max) {
            Ok(Framing::Frame(n)) => {
                assert!(n >= HEADER_SIZE, "Frame({n}) shorter than a header");
                assert!(n <= rest.len(), "Frame({n}) longer than the {} bytes", rest.len());
                assert!(n <= max, "Frame({n}) over max {max}");
                let payload_size = u32::from_le_bytes(rest[24..28].try_into().unwrap());
                assert_eq!(n as u64, HEADER_SIZE as u64 + u64::from(payload_size));
                // Framing depends on nothing past the frame.
                assert_eq!(frame(&rest[..n], max), Ok(Framing::Frame(n)));
                check_frame(&rest[..n]);
                rest = &rest[n..];
            }
            Ok(Framing::Incomplete(n)) => {
                assert!(n > rest.len(), "Incomplete({n}) with {} bytes present", rest.len());
                assert!(n >= HEADER_SIZE && n <= max, "Incomplete({n}), max {max}");
                break;
            }
            Err(e) => {
                assert!(e.is_fatal(), "non-fatal framing error {e:?}");
                let _ = e.to_string();
                break;
            }
        }
    }
});

/// CRC-32/ISO-HDLC of bytes `0..min(28, len)`, then of `32..` (PROTOCOL.md §1), by crc32fast.
fn reference_checksum(bytes: &[u8]) -> u32 {
    let mut hasher = crc32fast::Hasher::new();
    hasher.update(&bytes[..bytes.len().min(28)]);
    hasher.update(bytes.get(HEADER_SIZE..).unwrap_or(&[]));
    hasher.finalize()
}

fn check_frame(frame: &[u8]) {
    let payload = &frame[HEADER_SIZE..];
    let found_crc = u32::from_le_bytes(frame[28..32].try_into().unwrap());
    let computed_crc = checksum(frame);
    assert_eq!(computed_crc, reference_checksum(frame), "checksum of a {}-byte frame", frame.len());
    let mut control = None;

    for domain in DOMAINS {
        for strict_types in [false, true] {
            let mut results = [Ok(FrameKind::Hello); 3];
            for (i, level) in LEVELS.into_iter().enumerate() {
                let checks = Checks { domain, checksum: level, strict_types };
                let result = validate(frame, &checks);
                match result {
                    Ok(FrameKind::Hello) => assert!(payload.is_empty(), "Hello with a payload"),
                    Ok(FrameKind::Control { tlv_type }) => {
                        assert!(matches!(tlv_type, 116 | 117), "Control {{ {tlv_type} }}");
                        assert_eq!(frame[4], 3, "control frame outside System");
                        assert!(found_crc == 0 || found_crc == computed_crc);
                        // A control frame is one thing whatever the relay's checks.
                        assert!(control.is_none_or(|t| t == tlv_type));
                        control = Some(tlv_type);
                    }
                    Ok(FrameKind::Data) => {
                        assert!(!payload.is_empty(), "Data without a payload");
                        assert!(frame[4] == domain.raw() || frame[4] == 3, "domain let through");
                        for tlv in tlvs(payload) {
                            let tlv = tlv.expect("accepted data frame with a bad TLV");
                            assert!(!matches!(tlv.tlv_type, 116 | 117), "misplaced control");
                        }
                        if level == ChecksumLevel::Required {
                            assert_eq!(found_crc, computed_crc, "Required let a bad CRC through");
                        }
                    }
                    Err(e) => {
                        assert!(!e.is_fatal(), "validate gave a fatal error {e:?}");
                        assert!(!payload.is_empty(), "a hello was rejected: {e:?}");
                        let _ = (e.reason(), e.to_string());
                    }
                }
                results[i] = result;
            }
            // Checksums are the last check: a level changes at most a checksum error.
            let off = results[0];
            for result in &results[1..] {
                match (off, result) {
                    (Err(a), Err(b)) => assert_eq!(a, *b, "level changed error"),
                    (Ok(a), Ok(b)) => assert_eq!(a, *b),
                    (Ok(FrameKind::Data), Err(e)) => assert!(
                        matches!(e, Error::ChecksumMismatch { .. } | Error::ChecksumMissing { .. }),
                        "level added a non-checksum error {e:?}"
                    ),
                    (a, b) => panic!("Off gave {a:?}, a higher level {b:?}"),
                }
            }
        }
    }
    if let Some(tlv_type) = control {
        // Every Checks combination must have classified it as the same control frame.
        for domain in DOMAINS {
            for level in LEVELS {
                let checks = Checks { domain, checksum: level, strict_types: true };
                assert_eq!(validate(frame, &checks), Ok(FrameKind::Control { tlv_type }));
            }
        }
    }

    walk(payload);
}

fn walk(payload: &[u8]) {
    let key = routing_key(payload);
    let mut first = true;
    for tlv in tlvs(payload) {
        match tlv {
            Ok(tlv) => {
                if first {
                    let key = key.expect("payload starts with a whole TLV but has no routing key");
                    assert_eq!(key.tlv_type, tlv.tlv_type);
                }
                if let Ok(value) = tlv.decode() {
                    let _ = format!("{value:?}");
                }
            }
            Err(e) => {
                assert!(!e.is_fatal());
            }
        }
        first = false;
    }
    if payload.is_empty() {
        assert_eq!(key, None);
    }
}
