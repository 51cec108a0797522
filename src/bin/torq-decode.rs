//! `torq-decode`: Protocol V2 frames in a raw capture → one JSON object per frame per line.

use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Read, Write};
use std::path::PathBuf;
use std::process::ExitCode;

use clap::Parser;
use serde_json::{Map, Value as Json, json};
use torq::protocol::{
    Error, FieldValue, Filter, HEADER_SIZE, Header, Payload, Value, checksum, frame, registry, tlvs,
};

/// Decode a raw stream of back-to-back Protocol V2 frames into JSON lines.
///
/// Reads FILE (or standard input when FILE is absent or `-`) and prints one JSON object per
/// frame on standard output:
///
///   {"offset", "domain_byte", "version", "source", "flags", "sequence", "timestamp",
///    "payload_size", "checksum", "checksum_ok", "tlvs": [{"type", "len", "name", "value"}]}
///
/// `offset` is the frame's byte offset in the stream. `checksum_ok` is true or false, or null
/// when the checksum is 0 ("not computed"). `name` appears for registered TLV types; `value`
/// for the layouts of PROTOCOL.md §4 and the Subscribe/RelayNotice control values, with the
/// fields named as there. Integers are exact and raw (prices are not scaled), byte arrays are
/// "0x…" hex strings, OrderBook levels are `bids`/`asks` arrays of {price, size, order_count}.
/// A control value that breaks its rules gets `value_error` instead of `value`.
///
/// A bad frame prints {"offset", "error", "message"}, where `error` is one of bad_magic,
/// unsupported_version, bad_domain, truncated_frame, tlv_invalid_type, tlv_truncated,
/// tlv_reserved_nonzero, tlv_size_mismatch, tlv_size_out_of_bounds. After bad_magic,
/// unsupported_version or truncated_frame decoding stops (the stream cannot be framed any
/// more); after the others it goes on with the next frame.
///
/// Memory stays bounded by the largest frame actually present: a huge `payload_size` is
/// never allocated up front.
///
/// Exit status: 0 when every frame decoded cleanly with no checksum mismatch, 1 otherwise,
/// 2 when FILE cannot be read.
#[derive(Debug, Parser)]
#[command(version, verbatim_doc_comment)]
struct Args {
    /// The capture to decode; standard input when absent or `-`.
    file: Option<PathBuf>,
}

fn main() -> ExitCode {
    let args = Args::parse();
    let input: Box<dyn Read> = match &args.file {
        Some(path) if path.as_os_str() != "-" => match File::open(path) {
            Ok(file) => Box::new(file),
            Err(e) => {
                eprintln!("torq-decode: cannot open {}: {e}", path.display());
                return ExitCode::from(2);
            }
        },
        _ => Box::new(io::stdin().lock()),
    };
    let mut out = BufWriter::new(io::stdout().lock());
    match decode(BufReader::with_capacity(1 << 16, input), &mut out)
        .and_then(|clean| out.flush().map(|_| clean))
    {
        Ok(true) => ExitCode::SUCCESS,
        Ok(false) => ExitCode::from(1),
        Err(e) if e.kind() == io::ErrorKind::BrokenPipe => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("torq-decode: {e}");
            ExitCode::from(2)
        }
    }
}

/// Decodes the whole stream; `Ok(true)` when every frame was clean.
fn decode(mut input: impl BufRead, out: &mut impl Write) -> io::Result<bool> {
    let mut clean = true;
    let mut offset = 0u64;
    let mut header = [0u8; HEADER_SIZE];
    let mut payload = Vec::new();
    loop {
        let got = read_up_to(&mut input, &mut header)?;
        if got == 0 {
            return Ok(clean);
        }
        // Framing: magic and version are judged on what is present; there is no size limit.
        if let Err(e) = frame(&header[..got], usize::MAX) {
            write_error(out, offset, e.reason(), &e.to_string())?;
            return Ok(false);
        }
        if got < HEADER_SIZE {
            let message = format!("the stream ends {got} bytes into a 32-byte header");
            write_error(out, offset, "truncated_frame", &message)?;
            return Ok(false);
        }
        let view = Header::view(&header).expect("32 bytes hold a header");
        let payload_size = u64::from(view.payload_size());
        payload.clear();
        // `take` + `read_to_end` grows the buffer only as bytes actually arrive.
        let read = (&mut input).take(payload_size).read_to_end(&mut payload)? as u64;
        if read < payload_size {
            let message = format!("the stream ends {read} bytes into a payload of {payload_size} bytes");
            write_error(out, offset, "truncated_frame", &message)?;
            return Ok(false);
        }
        match describe(&header, &payload, offset) {
            Ok((line, frame_clean)) => {
                clean &= frame_clean;
                serde_json::to_writer(&mut *out, &line)?;
                out.write_all(b"\n")?;
            }
            Err(e) => {
                clean = false;
                write_error(out, offset, e.reason(), &e.to_string())?;
            }
        }
        offset += HEADER_SIZE as u64 + payload_size;
    }
}

/// Reads until `buf` is full or the input ends; returns the bytes read.
fn read_up_to(input: &mut impl Read, buf: &mut [u8]) -> io::Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match input.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(got)
}

fn write_error(out: &mut impl Write, offset: u64, error: &str, message: &str) -> io::Result<()> {
    serde_json::to_writer(&mut *out, &json!({"offset": offset, "error": error, "message": message}))?;
    out.write_all(b"\n")
}

/// The JSON line of a frame and whether it is clean, or the error that makes it bad.
fn describe(header_bytes: &[u8; HEADER_SIZE], payload: &[u8], offset: u64) -> Result<(Json, bool), Error> {
    let header = Header::view(header_bytes).expect("32 bytes hold a header");
    if header.domain().is_none() {
        return Err(Error::BadDomain { found: header.domain_byte() });
    }
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
        list.push(Json::Object(entry));
    }
    let found = header.checksum();
    let checksum_ok = if found == 0 {
        Json::Null
    } else {
        let mut whole = Vec::with_capacity(HEADER_SIZE + payload.len());
        whole.extend_from_slice(header_bytes);
        whole.extend_from_slice(payload);
        let ok = checksum(&whole) == found;
        clean &= ok;
        ok.into()
    };
    let line = json!({
        "offset": offset,
        "domain_byte": header.domain_byte(),
        "version": header.version(),
        "source": header.source(),
        "flags": header.flags(),
        "sequence": header.sequence(),
        "timestamp": header.timestamp(),
        "payload_size": header.payload_size(),
        "checksum": found,
        "checksum_ok": checksum_ok,
        "tlvs": list,
    });
    Ok((line, clean))
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

fn hex(bytes: &[u8]) -> String {
    let mut text = String::with_capacity(2 + 2 * bytes.len());
    text.push_str("0x");
    for b in bytes {
        text.push_str(&format!("{b:02x}"));
    }
    text
}

fn value_json(value: &Value<'_>) -> Json {
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
            let levels = |levels: &mut dyn Iterator<Item = torq::protocol::Level>| -> Json {
                levels.map(|level| Json::Object(fields(&level))).collect::<Vec<_>>().into()
            };
            map.insert("bids".into(), levels(&mut book.bids()));
            map.insert("asks".into(), levels(&mut book.asks()));
            map
        }
        Value::Subscribe(sub) => {
            let role = match sub.role {
                torq::protocol::Role::Publish => 0,
                torq::protocol::Role::Subscribe => 1,
                torq::protocol::Role::PublishSubscribe => 2,
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
