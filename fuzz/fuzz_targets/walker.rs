//! Fuzzes the TLV walker and the value parsers on a raw payload (the bytes after a header).
//!
//! Walks the input with `tlvs`, checking that the TLVs tile the input in order, that every
//! value lies inside it and that an error can only be the last item; decodes every TLV;
//! then parses the whole input as a Subscribe, a RelayNotice and an OrderBook, and checks
//! that an accepted Subscribe re-emits to the same bytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use torq::protocol::{OrderBook, RelayNotice, Subscribe, tlvs};

fuzz_target!(|data: &[u8]| {
    walk(data);
    parse_values(data);
});

fn walk(data: &[u8]) {
    let start = data.as_ptr() as usize;
    let end = start + data.len();
    let mut next_offset = 0usize; // where the next TLV must start
    let mut prev_offset: Option<u32> = None;
    let mut errors = 0;
    let mut items = 0;

    for item in tlvs(data) {
        items += 1;
        assert_eq!(errors, 0, "an item followed an error");
        match item {
            Ok(tlv) => {
                if let Some(prev) = prev_offset {
                    assert!(tlv.offset > prev, "offset {} after {prev}", tlv.offset);
                }
                prev_offset = Some(tlv.offset);
                assert_eq!(tlv.offset as usize, next_offset, "TLVs do not tile the input");
                assert!((1..=254).contains(&tlv.tlv_type), "type {}", tlv.tlv_type);

                let value_start = tlv.value.as_ptr() as usize;
                let value_end = value_start + tlv.value.len();
                assert!(start <= value_start && value_end <= end, "value outside the input");
                let header = if tlv.extended { 5 } else { 2 };
                assert_eq!(value_start - start, tlv.offset as usize + header);
                if !tlv.extended {
                    assert!(tlv.value.len() <= 255);
                }
                next_offset = value_end - start;

                if let Ok(value) = tlv.decode() {
                    let _ = format!("{value:?}");
                }
            }
            Err(e) => {
                errors += 1;
                assert!(!e.is_fatal(), "walker gave a fatal error {e:?}");
                let _ = (e.reason(), e.to_string());
            }
        }
    }
    assert!(errors <= 1);
    assert!(items <= data.len(), "{items} items from {} bytes", data.len());
    if errors == 0 {
        assert_eq!(next_offset, data.len(), "the walk ended early without an error");
    }
}

fn parse_values(data: &[u8]) {
    match Subscribe::parse(data) {
        Ok(sub) => {
            assert!(sub.filters.len() <= 64);
            assert_eq!(sub.encoded_len(), data.len());
            let mut out = vec![0u8; data.len()];
            let len = sub.emit(&mut out).expect("emit of a parsed Subscribe");
            assert_eq!(len, data.len());
            assert_eq!(out, data, "Subscribe does not re-emit to its bytes: {sub:?}");
        }
        Err(e) => {
            let _ = e.to_string();
        }
    }

    if let Ok(notice) = RelayNotice::parse(data) {
        assert_eq!(notice.text.len(), data.len() - 12);
        let _ = format!("{notice:?}");
    }

    if let Ok(book) = OrderBook::parse(data) {
        let bids = book.bids();
        let asks = book.asks();
        assert_eq!(bids.len(), usize::from(book.head.bid_count));
        assert_eq!(asks.len(), usize::from(book.head.ask_count));
        let mut seen = 0usize;
        for level in bids.chain(asks) {
            let _ = (level.price, level.size, level.order_count);
            seen += 1;
        }
        assert_eq!(
            data.len(),
            OrderBook::encoded_len(book.head.bid_count.into(), book.head.ask_count.into())
        );
        assert_eq!(seen, usize::from(book.head.bid_count) + usize::from(book.head.ask_count));
        let _ = book.instrument();
    }
}
