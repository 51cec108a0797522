//! The JSON lines of `torq-decode`, shared by every tool that prints or reads frames: one
//! object per frame, in the schema the README's `torq-decode` section describes.
//!
//! [`Render`] turns a frame into its line; [`RawFrames`](super::capture::RawFrames) frames a raw capture without a size
//! limit, growing its buffer only as bytes arrive; [`decode`] is the whole of `torq-decode`:
//! a raw capture or a pcapng recording in, lines out.

use std::io::{self, Read, Write};

use serde_json::{Map, Value as Json, json};

use crate::protocol::{
    Error, FieldValue, Filter, HEADER_SIZE, Header, Payload, Role, Value, checksum, registry, tlvs,
};

use super::capture::{Capture, Next, RawFrames};
use super::pcapng;

/// How frames are rendered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Render {
    /// Adds `hex` (the value bytes) to every TLV, `extended: true` to a TLV written in the
    /// extended form although its value is at most 255 bytes, and `hex` (the whole frame) to
    /// the error line of a frame that could be framed: enough for `torq-pub` to rebuild every
    /// byte.
    pub hex: bool,
    /// Pretty-prints each object over several lines (no longer one line per frame).
    pub pretty: bool,
}

impl Render {
    /// The line of one whole frame (header and payload) found at `offset`, and whether it is
    /// clean: decoded without error, no value error, no checksum mismatch. A frame that cannot
    /// be decoded (bad domain, a TLV error) gets an error line.
    pub fn frame(&self, bytes: &[u8], offset: u64) -> (Json, bool) {
        match self.describe(bytes, offset) {
            Ok(described) => described,
            Err(e) => {
                let mut line = error_line(offset, e.reason(), &e.to_string());
                if self.hex {
                    line.insert("hex".into(), hex(bytes).into());
                }
                (Json::Object(line), false)
            }
        }
    }

    /// Writes `line` and a newline (pretty-printed when asked).
    ///
    /// # Errors
    ///
    /// What `out` returns.
    pub fn write(&self, out: &mut impl Write, line: &Json) -> io::Result<()> {
        if self.pretty {
            serde_json::to_writer_pretty(&mut *out, line)?;
        } else {
            serde_json::to_writer(&mut *out, line)?;
        }
        out.write_all(b"\n")
    }

    fn describe(&self, bytes: &[u8], offset: u64) -> Result<(Json, bool), Error> {
        let header =
            Header::view(bytes).ok_or(Error::BufferTooSmall { needed: HEADER_SIZE, available: 0 })?;
        if header.domain().is_none() {
            return Err(Error::BadDomain { found: header.domain_byte() });
        }
        let payload = &bytes[HEADER_SIZE..];
        let mut clean = true;
        let mut list = Vec::new();
        for tlv in tlvs(payload) {
            let tlv = tlv?;
            let mut entry = Map::new();
            entry.insert("type".into(), tlv.tlv_type.into());
            entry.insert("len".into(), tlv.value.len().into());
            if let Some(name) = registry::name(tlv.tlv_type) {
                entry.insert("name".into(), name.into());
            }
            match tlv.decode() {
                Ok(Value::Other(_)) => {}
                Ok(value) => {
                    entry.insert("value".into(), value_json(&value));
                }
                Err(e) => {
                    clean = false;
                    entry.insert("value_error".into(), e.to_string().into());
                }
            }
            if self.hex {
                entry.insert("hex".into(), hex(tlv.value).into());
                if tlv.extended && tlv.value.len() <= 255 {
                    entry.insert("extended".into(), true.into());
                }
            }
            list.push(Json::Object(entry));
        }
        let found = header.checksum();
        let checksum_ok = if found == 0 {
            Json::Null
        } else {
            let ok = checksum(bytes) == found;
            clean &= ok;
            ok.into()
        };
        let line = json!({
            "offset": offset,
            "domain_byte": header.domain_byte(),
            "version": header.version(),
            "source": header.source(),
            "flags": header.flags(),
            "bridged": header.is_bridged(),
            "sequence": header.sequence(),
            "timestamp": header.timestamp(),
            "payload_size": header.payload_size(),
            "checksum": found,
            "checksum_ok": checksum_ok,
            "tlvs": list,
        });
        Ok((line, clean))
    }
}

/// `{"offset", "error", "message"}`.
fn error_line(offset: u64, error: &str, message: &str) -> Map<String, Json> {
    let mut line = Map::new();
    line.insert("offset".into(), offset.into());
    line.insert("error".into(), error.into());
    line.insert("message".into(), message.into());
    line
}

/// Bytes as `"0x…"`, two lowercase digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut text = String::with_capacity(2 + 2 * bytes.len());
    text.push_str("0x");
    for b in bytes {
        text.push(char::from(DIGITS[usize::from(b >> 4)]));
        text.push(char::from(DIGITS[usize::from(b & 15)]));
    }
    text
}

/// The `value` object of a decoded TLV (a hex string for [`Value::Other`]).
pub fn value_json(value: &Value<'_>) -> Json {
    let map = match value {
        Value::Trade(v) => fields(v),
        Value::Quote(v) | Value::QuoteUpdate(v) => fields(v),
        Value::SignalIdentity(v) => fields(v),
        Value::ArbitrageSignal(v) => fields(v),
        Value::OrderRequest(v) => fields(v),
        Value::OrderStatus(v) => fields(v),
        Value::Fill(v) => fields(v),
        Value::OrderCancel(v) => fields(v),
        Value::OrderModify(v) => fields(v),
        Value::Heartbeat(v) => fields(v),
        Value::OrderBook(book) => {
            let mut map = fields(&book.head);
            let levels = |levels: &mut dyn Iterator<Item = crate::protocol::Level>| -> Json {
                levels.map(|level| Json::Object(fields(&level))).collect::<Vec<_>>().into()
            };
            map.insert("bids".into(), levels(&mut book.bids()));
            map.insert("asks".into(), levels(&mut book.asks()));
            map
        }
        Value::Subscribe(sub) => {
            let role = match sub.role {
                Role::Publish => 0,
                Role::Subscribe => 1,
                Role::PublishSubscribe => 2,
            };
            let filters: Vec<Json> = sub.filters.iter().map(filter_json).collect();
            let mut map = Map::new();
            map.insert("role".into(), role.into());
            map.insert("options".into(), sub.options.into());
            map.insert("n".into(), sub.filters.len().into());
            map.insert("filters".into(), filters.into());
            map
        }
        Value::RelayNotice(notice) => {
            let mut map = Map::new();
            map.insert("code".into(), notice.code.into());
            map.insert("sequence".into(), notice.sequence.into());
            map.insert("text".into(), notice.text.into());
            map
        }
        Value::Other(bytes) => return hex(bytes).into(),
    };
    Json::Object(map)
}

fn fields(payload: &impl Payload) -> Map<String, Json> {
    let mut map = Map::new();
    payload.for_each_field(&mut |name, value| {
        map.insert(name.into(), field_json(value));
    });
    map
}

fn field_json(value: FieldValue<'_>) -> Json {
    match value {
        FieldValue::Unsigned(n) => n.into(),
        FieldValue::Signed(n) => n.into(),
        FieldValue::Bytes(bytes) => hex(bytes).into(),
    }
}

fn filter_json(filter: &Filter) -> Json {
    match *filter {
        Filter::TypeRange { lo, hi } => json!({"kind": 1, "lo": lo, "hi": hi}),
        Filter::Source(source) => json!({"kind": 2, "source": source}),
        Filter::Instrument(i) => json!({
            "kind": 3, "venue": i.venue, "asset_type": i.asset_type, "reserved": i.reserved, "asset_id": i.asset_id,
        }),
        Filter::Venue(venue) => json!({"kind": 4, "venue": venue}),
        Filter::TypeRangeVenue { lo, hi, venue } => {
            json!({"kind": 5, "lo": lo, "hi": hi, "venue": venue})
        }
    }
}

/// `torq-decode`: decodes a raw capture or a pcapng recording (told apart by its first
/// bytes) into lines on `out`; `Ok(true)` when every frame was clean.
///
/// In a recording, offsets count bytes of frames (the packets' data), and each packet is
/// framed on its own: a packet that cannot be framed is reported and decoding goes on with
/// the next. A recording whose blocks are broken ends with a `bad_recording` line naming the
/// byte of the file.
///
/// # Errors
///
/// What reading `input` or writing `out` returns.
pub fn decode(input: impl Read, out: &mut impl Write, render: Render) -> io::Result<bool> {
    let mut clean = true;
    match Capture::open(input)? {
        Capture::Raw(frames) => clean &= decode_frames(frames, out, render)?.0,
        Capture::Pcapng(mut recording) => {
            let mut offset = 0u64;
            loop {
                match recording.next_packet() {
                    Ok(Some(packet)) => {
                        let frames = RawFrames::new(packet.data, offset);
                        clean &= decode_frames(frames, out, render)?.0;
                        offset += packet.data.len() as u64;
                    }
                    Ok(None) => break,
                    Err(pcapng::Error::Io(e)) => return Err(e),
                    Err(e) => {
                        let line = error_line(offset, "bad_recording", &e.to_string());
                        render.write(out, &Json::Object(line))?;
                        return Ok(false);
                    }
                }
            }
        }
    }
    Ok(clean)
}

/// Decodes every frame of `frames`; whether all were clean, and the offset after them.
fn decode_frames<R: Read>(
    mut frames: RawFrames<R>,
    out: &mut impl Write,
    render: Render,
) -> io::Result<(bool, u64)> {
    let mut clean = true;
    loop {
        match frames.next_frame()? {
            Next::Frame { bytes, offset } => {
                let (line, frame_clean) = render.frame(bytes, offset);
                clean &= frame_clean;
                render.write(out, &line)?;
            }
            Next::Broken { offset, reason, message } => {
                render.write(out, &Json::Object(error_line(offset, reason, &message)))?;
                return Ok((false, frames.offset()));
            }
            Next::End => return Ok((clean, frames.offset())),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{Crc, FrameBuilder, RelayDomain, Trade};

    fn trade_frame() -> Vec<u8> {
        let mut buf = vec![0; 128];
        let mut builder = FrameBuilder::new(&mut buf, RelayDomain::MarketData, 3).unwrap();
        builder.payload(&Trade { price: 5, ..Trade::default() }).unwrap();
        let len = builder.finish(7, 9, Crc::Compute);
        buf.truncate(len);
        buf
    }

    #[test]
    fn hex_adds_the_value_bytes_and_marks_a_short_extended_tlv() {
        let mut frame = trade_frame();
        let (line, clean) = Render { hex: true, pretty: false }.frame(&frame, 0);
        assert!(clean);
        let tlv = &line["tlvs"][0];
        assert_eq!(tlv["hex"].as_str().unwrap().len(), 2 + 80);
        assert!(tlv.get("extended").is_none());
        // The same value in the extended form: marked, so it can be rebuilt byte for byte.
        let value = frame[34..].to_vec();
        frame.truncate(32);
        frame.extend_from_slice(&[255, 0, 1, 40, 0]);
        frame.extend_from_slice(&value);
        frame[24..28].copy_from_slice(&45u32.to_le_bytes());
        frame[28..32].fill(0);
        let (line, _) = Render { hex: true, pretty: false }.frame(&frame, 0);
        assert_eq!(line["tlvs"][0]["extended"], true);
        let (plain, _) = Render::default().frame(&frame, 0);
        assert!(plain["tlvs"][0].get("hex").is_none() && plain["tlvs"][0].get("extended").is_none());
    }

    #[test]
    fn an_undecodable_frame_keeps_its_bytes_under_hex() {
        let mut frame = trade_frame();
        frame[4] = 9;
        let (line, clean) = Render { hex: true, pretty: false }.frame(&frame, 12);
        assert!(!clean);
        assert_eq!((line["error"].as_str(), line["offset"].as_u64()), (Some("bad_domain"), Some(12)));
        assert_eq!(line["hex"], hex(&frame));
    }

    #[test]
    fn raw_frames_report_a_truncated_stream_once() {
        let frame = trade_frame();
        let mut stream = frame.clone();
        stream.extend_from_slice(&frame[..40]);
        let mut frames = RawFrames::new(&stream[..], 100);
        assert!(matches!(frames.next_frame().unwrap(), Next::Frame { offset: 100, .. }));
        match frames.next_frame().unwrap() {
            Next::Broken { offset, reason, .. } => {
                assert_eq!((offset, reason), (100 + 74, "truncated_frame"))
            }
            other => panic!("{other:?}"),
        }
        assert!(matches!(frames.next_frame().unwrap(), Next::End));
    }
}
