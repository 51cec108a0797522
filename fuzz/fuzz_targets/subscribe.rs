//! Fuzzes the Subscribe (116) parser against the rules of PROTOCOL.md §6, alone and inside a
//! control frame.
//!
//! Input: a Subscribe value. `Subscribe::parse` must accept it exactly when every rule holds
//! (checked here from the bytes, independently of the parser): an accepted value re-emits
//! byte for byte and its fields are the bytes; a refused one is `Error::Subscribe` naming a
//! rule the bytes really break, with a message that carries the real numbers. The value is then
//! wrapped in a control frame (`FrameBuilder`, type 116, domain System), which `validate` must
//! classify as a control frame under every `Checks`; the relay's way to its value
//! (`control_tlv`) must give the same parse, and the walker (`tlvs`, with its size rule) must
//! refuse the TLV exactly when the parser refuses the value for its length.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torq::protocol::{
    Checks, ChecksumLevel, Crc, Error, Filter, FrameBuilder, FrameKind, Framing, HEADER_SIZE, RelayDomain,
    Role, Subscribe, SubscribeError, Value, control_tlv, frame, tlvs, validate,
};

/// PROTOCOL.md §6: at most 64 filters.
const MAX_FILTERS: usize = 64;

fuzz_target!(|data: &[u8]| {
    let parsed = Subscribe::parse(data);
    let broken = breaks_a_rule(data);
    match &parsed {
        Ok(sub) => {
            assert!(!broken, "accepted a value that breaks a rule of §6: {sub:?}");
            check_value(data, sub);
        }
        Err(e) => {
            assert!(broken, "refused a value that keeps every rule of §6: {e}");
            check_error(data, e);
        }
    }
    if data.len() <= usize::from(u16::MAX) {
        check_in_frame(data, &parsed);
    }
});

/// Whether the value breaks any rule of §6, read from the bytes alone.
fn breaks_a_rule(value: &[u8]) -> bool {
    let Some(count) = count(value) else {
        return true;
    };
    if count > MAX_FILTERS || value.len() != 4 + 16 * count || value[0] > 2 || value[1] & !0b11 != 0 {
        return true;
    }
    value[4..].chunks_exact(16).any(|raw| {
        let Some(used) = used_bytes(raw[0]) else {
            return true;
        };
        let unused_set = (1..16).any(|at| raw[at] != 0 && !used.contains(&at));
        let empty_range = matches!(raw[0], 1 | 5) && raw[1] > raw[2];
        unused_set || empty_range
    })
}

/// The filter count at @2, when the value has its 4-byte head.
fn count(value: &[u8]) -> Option<usize> {
    value.get(2..4).map(|n| usize::from(u16::from_le_bytes([n[0], n[1]])))
}

/// The bytes (after the kind @0) that a filter kind uses; every other byte must be 0.
fn used_bytes(kind: u8) -> Option<&'static [usize]> {
    Some(match kind {
        1 => &[1, 2],                                  // type range: lo, hi
        2 => &[1],                                     // source
        3 => &[2, 3, 4, 8, 9, 10, 11, 12, 13, 14, 15], // instrument: venue, asset_type, asset_id
        4 => &[2, 3],                                  // venue
        5 => &[1, 2, 4, 5],                            // type range and venue
        _ => return None,
    })
}

/// An accepted value: its fields are its bytes, and it re-emits to them.
fn check_value(data: &[u8], sub: &Subscribe) {
    let n = sub.filters.len();
    assert!(n <= MAX_FILTERS);
    assert_eq!(data.len(), 4 + 16 * n);
    assert_eq!(count(data), Some(n));
    let role = match sub.role {
        Role::Publish => 0,
        Role::Subscribe => 1,
        Role::PublishSubscribe => 2,
    };
    assert_eq!(role, data[0], "role");
    assert_eq!(sub.role.publishes(), data[0] != 1);
    assert_eq!(sub.role.subscribes(), data[0] != 0);
    assert_eq!(sub.options, data[1], "options");
    assert_eq!(sub.options & !0b11, 0);
    let u16_at = |raw: &[u8], at: usize| u16::from_le_bytes([raw[at], raw[at + 1]]);
    for (filter, raw) in sub.filters.iter().zip(data[4..].chunks_exact(16)) {
        match *filter {
            Filter::TypeRange { lo, hi } => {
                assert_eq!((raw[0], lo, hi), (1, raw[1], raw[2]));
                assert!(lo <= hi);
            }
            Filter::Source(source) => assert_eq!((raw[0], source), (2, raw[1])),
            Filter::Instrument(id) => {
                assert_eq!(raw[0], 3);
                assert_eq!((id.venue, id.asset_type, id.reserved), (u16_at(raw, 2), raw[4], 0));
                assert_eq!(id.asset_id.to_le_bytes(), raw[8..16]);
            }
            Filter::Venue(venue) => assert_eq!((raw[0], venue), (4, u16_at(raw, 2))),
            Filter::TypeRangeVenue { lo, hi, venue } => {
                assert_eq!((raw[0], lo, hi, venue), (5, raw[1], raw[2], u16_at(raw, 4)));
                assert!(lo <= hi);
            }
        }
    }

    assert_eq!(sub.encoded_len(), data.len());
    let mut out = vec![0xAA; data.len() + 1];
    assert_eq!(sub.emit(&mut out), Ok(data.len()), "emit of a parsed Subscribe");
    assert_eq!(&out[..data.len()], data, "Subscribe does not re-emit to its bytes: {sub:?}");
    assert_eq!(out[data.len()], 0xAA, "emit wrote past its length");
    let short = &mut out[..data.len() - 1];
    assert_eq!(
        sub.emit(short),
        Err(Error::BufferTooSmall { needed: data.len(), available: data.len() - 1 }),
        "emit into a buffer one byte short"
    );
}

/// A refused value: the error is a Subscribe error naming a rule the bytes break, and its
/// message carries the real numbers.
fn check_error(data: &[u8], error: &Error) {
    let Error::Subscribe(e) = *error else {
        panic!("Subscribe::parse gave a non-Subscribe error {error:?}");
    };
    assert_eq!(error.reason(), "bad_subscribe");
    let text = error.to_string();
    assert!(text.starts_with("malformed Subscribe: "), "{text}");
    let detail = &text["malformed Subscribe: ".len()..];
    assert_eq!(detail, e.to_string());
    let says = |number: usize| {
        assert!(
            detail.split(|c: char| !c.is_ascii_digit()).any(|word| word == number.to_string()),
            "{text:?} does not name {number} ({e:?}, {} bytes)",
            data.len()
        )
    };
    let head = |index: u8| {
        // A filter error needs the head to hold: the filters are really there.
        assert_eq!(
            count(data).map(|n| 4 + 16 * n),
            Some(data.len()),
            "{e:?} of a value whose length is wrong"
        );
        assert!(usize::from(index) < count(data).unwrap(), "{e:?}: no filter {index}");
        says(usize::from(index));
        &data[4 + 16 * usize::from(index)..][..16]
    };
    match e {
        SubscribeError::TooShort(len) => {
            assert!(len < 4 && len == data.len(), "{e:?} of {} bytes", data.len());
            says(len);
        }
        SubscribeError::TooManyFilters(n) => {
            assert_eq!(count(data), Some(usize::from(n)), "{e:?}: not the count @2");
            assert!(usize::from(n) > MAX_FILTERS);
            says(usize::from(n));
            says(MAX_FILTERS);
        }
        SubscribeError::Length { len, count: n } => {
            assert_eq!(len, data.len(), "{e:?}: not the value's length");
            assert_eq!(count(data), Some(usize::from(n)), "{e:?}: not the count @2");
            assert!(usize::from(n) <= MAX_FILTERS && len != 4 + 16 * usize::from(n), "{e:?}");
            says(len);
            says(usize::from(n));
        }
        SubscribeError::Role(role) => {
            assert!(role == data[0] && role > 2, "{e:?}");
            says(usize::from(role));
        }
        SubscribeError::Options(options) => {
            assert!(options == data[1] && options & !0b11 != 0, "{e:?}");
            assert!(text.contains(&format!("0x{options:02x}")), "{text}");
        }
        SubscribeError::FilterKind { index, kind } => {
            let raw = head(index);
            assert!(raw[0] == kind && used_bytes(kind).is_none(), "{e:?}");
            says(usize::from(kind));
        }
        SubscribeError::UnusedByte { index, offset } => {
            let raw = head(index);
            let used = used_bytes(raw[0]).expect("UnusedByte of a filter of no kind");
            let at = usize::from(offset);
            assert!((1..16).contains(&at) && raw[at] != 0 && !used.contains(&at), "{e:?} of {raw:?}");
            says(at);
        }
        SubscribeError::TypeRange { index, lo, hi } => {
            let raw = head(index);
            assert!(matches!(raw[0], 1 | 5) && (raw[1], raw[2]) == (lo, hi) && lo > hi, "{e:?}");
            says(usize::from(lo));
            says(usize::from(hi));
        }
        other => panic!("a SubscribeError the target does not know: {other:?}"),
    }
}

/// The value as the only TLV of a control frame, as a client sends it.
fn check_in_frame(data: &[u8], parsed: &Result<Subscribe, Error>) {
    let mut buf = vec![0u8; HEADER_SIZE + 5 + data.len()];
    let mut builder = FrameBuilder::new(&mut buf, RelayDomain::System, 99).expect("room for a header");
    builder.tlv(116, data).expect("a TLV of at most 65535 bytes");
    let len = builder.finish(1, 1_700_000_000_000_000_000, Crc::Compute);
    let head = if data.len() > 255 { 5 } else { 2 };
    assert_eq!(len, HEADER_SIZE + head + data.len());
    let mut frame_bytes = buf[..len].to_vec();
    assert_eq!(frame(&frame_bytes, len), Ok(Framing::Frame(len)));

    for crc in [true, false] {
        if !crc {
            frame_bytes[28..32].fill(0); // "not computed": still a control frame
        }
        for domain in RelayDomain::ALL {
            for checksum in [ChecksumLevel::Off, ChecksumLevel::Verify, ChecksumLevel::Required] {
                for strict_types in [false, true] {
                    let checks = Checks { domain: *domain, checksum, strict_types };
                    assert_eq!(
                        validate(&frame_bytes, &checks),
                        Ok(FrameKind::Control { tlv_type: 116 }),
                        "{checks:?}"
                    );
                }
            }
        }
    }

    // What the relay parses: the one TLV of the control frame.
    let payload = &frame_bytes[HEADER_SIZE..];
    let tlv = control_tlv(payload).expect("a control frame without its control TLV");
    assert_eq!((tlv.tlv_type, tlv.value, tlv.offset, tlv.extended), (116, data, 0, head == 5));
    assert_eq!(&Subscribe::parse(tlv.value), parsed, "the control TLV parses otherwise");

    // The walker's size rule refuses exactly the values the parser refuses for their length.
    let refused_for_length = matches!(
        parsed,
        Err(Error::Subscribe(
            SubscribeError::TooShort(_) | SubscribeError::TooManyFilters(_) | SubscribeError::Length { .. }
        ))
    );
    let mut walk = tlvs(payload);
    match walk.next() {
        Some(Ok(walked)) => {
            assert!(!refused_for_length, "the walker took a Subscribe refused for its length: {parsed:?}");
            assert_eq!(walked, tlv);
            assert_eq!(walk.next(), None);
            assert_eq!(walked.decode(), parsed.clone().map(Value::Subscribe));
        }
        Some(Err(e)) => {
            assert!(refused_for_length, "the walker refused {e:?}, the parser said {parsed:?}");
            let len = data.len() as u16;
            assert_eq!(e, Error::TlvSizeMismatch { offset: 0, tlv_type: 116, len });
        }
        None => panic!("the walker found nothing in a {}-byte payload", payload.len()),
    }

    // The same TLV in a data frame is never forwarded.
    frame_bytes[4] = RelayDomain::MarketData.raw();
    let result = validate(&frame_bytes, &Checks::new(RelayDomain::MarketData));
    if refused_for_length {
        assert!(matches!(result, Err(Error::TlvSizeMismatch { .. })), "{result:?}");
    } else {
        assert_eq!(result, Err(Error::MisplacedControl { offset: 0, tlv_type: 116 }));
    }
}
