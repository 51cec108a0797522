//! JSON lines in the schema `torq-decode` prints → frames: what `torq-pub` publishes.
//!
//! A frame line gives the header fields and `tlvs`; each TLV gives its `type` and either its
//! `value` object (the layouts of PROTOCOL.md §4 and the Subscribe/RelayNotice values, fields
//! named as `torq-decode` names them) or `hex`, its value bytes. What `torq-decode` adds for
//! reading (`offset`, `checksum_ok`, `name`, `len`, `payload_size`) may stay: `name`, `len`
//! and `payload_size` must then agree with what is built. When both `value` and `hex` are
//! given they must agree. An error line of `torq-decode --hex` (a frame it could frame but
//! not decode) is sent as its `hex` bytes. Anything else — an unknown field, a value that
//! does not fit, a missing field that has no default — is an [`EncodeError`] naming the field.

use serde_json::{Map, Value as Json};

use crate::protocol::{
    ArbitrageSignal, FLAG_BRIDGED, FieldError, FieldValue, Fill, Filter, Framing, HEADER_SIZE, Heartbeat,
    InstrumentId, Level, MAGIC, OrderBook, OrderBookHead, OrderCancel, OrderModify, OrderRequest,
    OrderStatus, Payload, Quote, RelayNotice, Role, SignalIdentity, Subscribe, Tlv, Trade, VERSION, Value,
    checksum, frame, registry,
};

use super::decode::value_json;

/// Why a line is not a frame: the field at fault (a path such as `tlvs[0].value.price`) and
/// what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{field}: {problem}")]
pub struct EncodeError {
    /// The field, as a path into the line (`line` for the line itself).
    pub field: String,
    /// What is wrong.
    pub problem: String,
}

type Result<T> = std::result::Result<T, EncodeError>;

fn fail<T>(field: impl Into<String>, problem: impl Into<String>) -> Result<T> {
    Err(EncodeError { field: field.into(), problem: problem.into() })
}

/// `path.key`, or `key` at the top.
fn at(path: &str, key: &str) -> String {
    if path.is_empty() { key.to_string() } else { format!("{path}.{key}") }
}

const FRAME_KEYS: &[&str] = &[
    "offset",
    "domain_byte",
    "version",
    "source",
    "flags",
    "bridged",
    "sequence",
    "timestamp",
    "payload_size",
    "checksum",
    "checksum_ok",
    "tlvs",
];
const ERROR_KEYS: &[&str] = &["offset", "error", "message", "hex"];
const TLV_KEYS: &[&str] = &["type", "len", "name", "value", "value_error", "hex", "extended"];

/// Turns lines into frames, keeping the last sequence of each source for lines that leave
/// `sequence` out.
#[derive(Debug, Clone)]
pub struct Encoder {
    last: Box<[u64; 256]>,
}

impl Default for Encoder {
    fn default() -> Self {
        Self::new()
    }
}

impl Encoder {
    /// No sequence used yet.
    pub fn new() -> Self {
        Encoder { last: Box::new([0; 256]) }
    }

    /// The frame a line describes. Defaults: `version` 1, `flags` 0; `sequence` absent or
    /// `"auto"`: one more than the last of its source (1 first); `timestamp` absent or
    /// `"auto"`: `now_ns`; `checksum` absent or `"auto"`: computed. `domain_byte`, `source`
    /// and `tlvs` are required.
    ///
    /// # Errors
    ///
    /// [`EncodeError`] naming the first field that cannot be turned into bytes.
    pub fn frame(&mut self, line: &Json, now_ns: u64) -> Result<Vec<u8>> {
        let Some(line) = line.as_object() else { return fail("line", "expected a JSON object") };
        if line.contains_key("error") {
            return verbatim(line);
        }
        known_keys(line, FRAME_KEYS, "")?;
        let domain = unsigned(required(line, "domain_byte", "")?, "domain_byte", 255)? as u8;
        let source = unsigned(required(line, "source", "")?, "source", 255)? as u8;
        let version =
            line.get("version").map_or(Ok(u64::from(VERSION)), |v| unsigned(v, "version", 255))? as u8;
        let mut flags = line.get("flags").map_or(Ok(0), |v| unsigned(v, "flags", 255))? as u8;
        match line.get("bridged").map(Json::as_bool) {
            None => {}
            Some(Some(true)) => flags |= FLAG_BRIDGED,
            Some(Some(false)) => flags &= !FLAG_BRIDGED,
            Some(None) => return fail("bridged", "expected true or false"),
        }
        let Some(tlvs) = required(line, "tlvs", "")?.as_array() else {
            return fail("tlvs", "expected an array of TLV objects");
        };
        let mut payload = Vec::new();
        for (i, tlv) in tlvs.iter().enumerate() {
            encode_tlv(tlv, &format!("tlvs[{i}]"), &mut payload)?;
        }
        let Ok(payload_size) = u32::try_from(payload.len()) else {
            return fail("tlvs", format!("{} bytes of TLVs are more than a frame holds", payload.len()));
        };
        if let Some(given) = line.get("payload_size") {
            let given = unsigned(given, "payload_size", u64::from(u32::MAX))?;
            if given != u64::from(payload_size) {
                return fail(
                    "payload_size",
                    format!("{given} given, but the TLVs make {payload_size} bytes"),
                );
            }
        }
        let slot = usize::from(source);
        let sequence = match given(line, "sequence") {
            Some(value) => unsigned(value, "sequence", u64::MAX)?,
            None => match self.last[slot].checked_add(1) {
                Some(next) => next,
                None => return fail("sequence", format!("source {source} is at {}: give one", u64::MAX)),
            },
        };
        let timestamp =
            given(line, "timestamp").map_or(Ok(now_ns), |v| unsigned(v, "timestamp", u64::MAX))?;
        let given_checksum = match given(line, "checksum") {
            Some(value) => Some(unsigned(value, "checksum", u64::from(u32::MAX))? as u32),
            None => None,
        };
        let mut bytes = Vec::with_capacity(HEADER_SIZE + payload.len());
        bytes.extend_from_slice(&MAGIC.to_le_bytes());
        bytes.extend_from_slice(&[domain, version, source, flags]);
        bytes.extend_from_slice(&sequence.to_le_bytes());
        bytes.extend_from_slice(&timestamp.to_le_bytes());
        bytes.extend_from_slice(&payload_size.to_le_bytes());
        bytes.extend_from_slice(&[0; 4]);
        bytes.extend_from_slice(&payload);
        let sum = given_checksum.unwrap_or_else(|| checksum(&bytes));
        bytes[28..32].copy_from_slice(&sum.to_le_bytes());
        self.last[slot] = sequence;
        Ok(bytes)
    }
}

/// The field, unless it is absent or `"auto"`.
fn given<'a>(line: &'a Map<String, Json>, key: &str) -> Option<&'a Json> {
    line.get(key).filter(|value| value.as_str() != Some("auto"))
}

/// An error line of `torq-decode --hex`: its whole frame, as it was.
fn verbatim(line: &Map<String, Json>) -> Result<Vec<u8>> {
    known_keys(line, ERROR_KEYS, "")?;
    let reason = line.get("error").and_then(Json::as_str).unwrap_or("an error");
    let Some(hex) = line.get("hex") else {
        return fail(
            "error",
            format!(
                "torq-decode could not read this frame ({reason}) and gave no hex of it: nothing to publish"
            ),
        );
    };
    let bytes = hex_bytes(hex, "hex")?;
    match frame(&bytes, usize::MAX) {
        Ok(Framing::Frame(len)) if len == bytes.len() => Ok(bytes),
        _ => fail("hex", "is not one whole frame (a header and the payload it announces)"),
    }
}

fn encode_tlv(tlv: &Json, path: &str, out: &mut Vec<u8>) -> Result<()> {
    let tlv = object(tlv, path)?;
    known_keys(tlv, TLV_KEYS, path)?;
    let tlv_type = unsigned(required(tlv, "type", path)?, &at(path, "type"), 255)? as u8;
    if tlv_type == 0 || tlv_type == 255 {
        return fail(at(path, "type"), format!("{tlv_type} is not a TLV type (1..=254)"));
    }
    let value = match (tlv.get("hex"), tlv.get("value")) {
        (Some(hex), value) => {
            let bytes = hex_bytes(hex, &at(path, "hex"))?;
            if let Some(value) = value {
                let decoded = Tlv { tlv_type, value: &bytes, offset: 0, extended: false }.decode();
                if !matches!(decoded, Ok(ref v) if !matches!(v, Value::Other(_)) && value_json(v) == *value) {
                    return fail(at(path, "value"), "value and hex disagree: give one of them");
                }
            }
            bytes
        }
        (None, Some(value)) => build_value(tlv_type, value, &at(path, "value"))?,
        (None, None) => return fail(path, "needs a value object or the hex string of its value bytes"),
    };
    if value.len() > usize::from(u16::MAX) {
        return fail(path, format!("a value of {} bytes is over the 65535 a TLV holds", value.len()));
    }
    if let Some(len) = tlv.get("len") {
        let len = unsigned(len, &at(path, "len"), u64::from(u16::MAX))?;
        if len != value.len() as u64 {
            return fail(at(path, "len"), format!("{len} given, but the value has {} bytes", value.len()));
        }
    }
    if let Some(name) = tlv.get("name") {
        let known = registry::name(tlv_type);
        if name.as_str() != known {
            let known = known.map_or("not registered".to_string(), |n| format!("{n:?}"));
            return fail(at(path, "name"), format!("{name} given, but type {tlv_type} is {known}"));
        }
    }
    let extended = match tlv.get("extended") {
        None => value.len() > 255,
        Some(Json::Bool(extended)) => *extended,
        Some(_) => return fail(at(path, "extended"), "expected true or false"),
    };
    if !extended && value.len() > 255 {
        return fail(
            at(path, "extended"),
            format!("a value of {} bytes needs the extended form", value.len()),
        );
    }
    if extended {
        out.extend_from_slice(&[255, 0, tlv_type]);
        out.extend_from_slice(&(value.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&[tlv_type, value.len() as u8]);
    }
    out.extend_from_slice(&value);
    Ok(())
}

/// The value bytes of a `value` object.
fn build_value(tlv_type: u8, value: &Json, path: &str) -> Result<Vec<u8>> {
    match tlv_type {
        1 => layout::<Trade>(value, path),
        2 | 17 => layout::<Quote>(value, path),
        3 => order_book(value, path),
        20 => layout::<SignalIdentity>(value, path),
        32 => layout::<ArbitrageSignal>(value, path),
        40 => layout::<OrderRequest>(value, path),
        41 => layout::<OrderStatus>(value, path),
        42 => layout::<Fill>(value, path),
        43 => layout::<OrderCancel>(value, path),
        44 => layout::<OrderModify>(value, path),
        100 => layout::<Heartbeat>(value, path),
        registry::SUBSCRIBE => subscribe(value, path),
        registry::RELAY_NOTICE => notice(value, path),
        _ => fail(path, format!("type {tlv_type} has no layout to build from fields: give its bytes as hex")),
    }
}

fn layout<P: Payload + Default>(value: &Json, path: &str) -> Result<Vec<u8>> {
    let payload: P = fill(value, path, &[])?;
    let mut out = vec![0; P::SIZE];
    payload.emit(&mut out).map_err(|e| EncodeError { field: path.into(), problem: e.to_string() })?;
    Ok(out)
}

/// A layout from the fields of an object (absent fields 0), skipping the keys in `skip`.
fn fill<P: Payload + Default>(value: &Json, path: &str, skip: &[&str]) -> Result<P> {
    let mut payload = P::default();
    let mut names = Vec::new();
    payload.for_each_field(&mut |name, _| names.push(name));
    for (name, field) in object(value, path)? {
        if skip.contains(&name.as_str()) {
            continue;
        }
        if !names.contains(&name.as_str()) {
            let expected = names.iter().chain(skip).copied().collect::<Vec<_>>().join(", ");
            return fail(at(path, name), format!("unknown field; this layout has {expected}"));
        }
        set(&mut payload, name, field, &at(path, name))?;
    }
    Ok(payload)
}

/// Sets a known field from a JSON integer, or from a `0x…` string: the bytes of a byte
/// array, or an integer written in hex.
fn set<P: Payload>(payload: &mut P, name: &str, field: &Json, path: &str) -> Result<()> {
    let result = match field {
        Json::Number(n) => match (n.as_u64(), n.as_i64()) {
            (Some(n), _) => payload.set_field(name, FieldValue::Unsigned(n)),
            (None, Some(n)) => payload.set_field(name, FieldValue::Signed(n)),
            _ => return fail(path, format!("{n} is not an integer")),
        },
        Json::String(text) => {
            let digits = text.strip_prefix("0x").unwrap_or(text);
            match hex_text(digits).map(|bytes| payload.set_field(name, FieldValue::Bytes(&bytes))) {
                Some(Ok(())) => Ok(()),
                _ => match u64::from_str_radix(digits, 16) {
                    Ok(n) if text.starts_with("0x") => payload.set_field(name, FieldValue::Unsigned(n)),
                    _ => Err(FieldError::Mismatch),
                },
            }
        }
        _ => Err(FieldError::Mismatch),
    };
    result
        .or_else(|_| fail(path, format!("{field} does not fit the field (an integer, or a 0x… hex string)")))
}

fn order_book(value: &Json, path: &str) -> Result<Vec<u8>> {
    let head: OrderBookHead = fill(value, path, &["bids", "asks"])?;
    let object = object(value, path)?;
    let levels = |side: &str| -> Result<Vec<Level>> {
        let side_path = at(path, side);
        match object.get(side) {
            None => Ok(Vec::new()),
            Some(Json::Array(levels)) => levels
                .iter()
                .enumerate()
                .map(|(i, level)| fill(level, &format!("{side_path}[{i}]"), &[]))
                .collect(),
            Some(_) => fail(side_path, "expected an array of levels"),
        }
    };
    let (bids, asks) = (levels("bids")?, levels("asks")?);
    for (count, key, len) in
        [(head.bid_count, "bid_count", bids.len()), (head.ask_count, "ask_count", asks.len())]
    {
        if object.contains_key(key) && usize::from(count) != len {
            return fail(at(path, key), format!("{count} given, but there are {len} levels"));
        }
    }
    let mut out = vec![0; OrderBook::encoded_len(bids.len(), asks.len())];
    OrderBook::emit(&head, &bids, &asks, &mut out)
        .map_err(|e| EncodeError { field: path.into(), problem: e.to_string() })?;
    Ok(out)
}

fn subscribe(value: &Json, path: &str) -> Result<Vec<u8>> {
    let object = object(value, path)?;
    known_keys(object, &["role", "options", "n", "filters"], path)?;
    let role = match object.get("role").map_or(Ok(1), |v| unsigned(v, &at(path, "role"), 255))? {
        0 => Role::Publish,
        1 => Role::Subscribe,
        2 => Role::PublishSubscribe,
        other => {
            return fail(at(path, "role"), format!("{other} is not a role (0 publish, 1 subscribe, 2 both)"));
        }
    };
    let options = object.get("options").map_or(Ok(0), |v| unsigned(v, &at(path, "options"), 255))? as u8;
    let filters_path = at(path, "filters");
    let filters = match object.get("filters") {
        None => Vec::new(),
        Some(Json::Array(filters)) => filters
            .iter()
            .enumerate()
            .map(|(i, f)| filter(f, &format!("{filters_path}[{i}]")))
            .collect::<Result<Vec<_>>>()?,
        Some(_) => return fail(filters_path, "expected an array of filters"),
    };
    if filters.len() > registry::MAX_FILTERS {
        return fail(filters_path, format!("{} filters; a Subscribe holds at most 64", filters.len()));
    }
    if let Some(n) = object.get("n") {
        let n = unsigned(n, &at(path, "n"), u64::from(u16::MAX))?;
        if n != filters.len() as u64 {
            return fail(at(path, "n"), format!("{n} given, but there are {} filters", filters.len()));
        }
    }
    let subscribe = Subscribe { role, options, filters };
    let mut out = vec![0; subscribe.encoded_len()];
    subscribe.emit(&mut out).map_err(|e| EncodeError { field: path.into(), problem: e.to_string() })?;
    Ok(out)
}

fn filter(value: &Json, path: &str) -> Result<Filter> {
    let object = object(value, path)?;
    let kind_path = at(path, "kind");
    let kind = unsigned(required(object, "kind", path)?, &kind_path, 255)?;
    let keys: &[&str] = match kind {
        1 => &["kind", "lo", "hi"],
        2 => &["kind", "source"],
        3 => &["kind", "venue", "asset_type", "reserved", "asset_id"],
        4 => &["kind", "venue"],
        5 => &["kind", "lo", "hi", "venue"],
        _ => return fail(kind_path, format!("{kind} is not a filter kind (1..=5)")),
    };
    known_keys(object, keys, path)?;
    let get = |key: &str, max: u64| object.get(key).map_or(Ok(0), |v| unsigned(v, &at(path, key), max));
    Ok(match kind {
        1 => Filter::TypeRange { lo: get("lo", 255)? as u8, hi: get("hi", 255)? as u8 },
        2 => Filter::Source(get("source", 255)? as u8),
        3 => Filter::Instrument(InstrumentId {
            asset_id: get("asset_id", u64::MAX)?,
            venue: get("venue", 65_535)? as u16,
            asset_type: get("asset_type", 255)? as u8,
            reserved: get("reserved", 255)? as u8,
        }),
        4 => Filter::Venue(get("venue", 65_535)? as u16),
        _ => Filter::TypeRangeVenue {
            lo: get("lo", 255)? as u8,
            hi: get("hi", 255)? as u8,
            venue: get("venue", 65_535)? as u16,
        },
    })
}

fn notice(value: &Json, path: &str) -> Result<Vec<u8>> {
    let object = object(value, path)?;
    known_keys(object, &["code", "sequence", "text"], path)?;
    let code = object.get("code").map_or(Ok(0), |v| unsigned(v, &at(path, "code"), 65_535))? as u16;
    let sequence = object.get("sequence").map_or(Ok(0), |v| unsigned(v, &at(path, "sequence"), u64::MAX))?;
    let text = match object.get("text") {
        None => "",
        Some(Json::String(text)) if text.len() <= RelayNotice::MAX_LEN - 12 => text,
        Some(Json::String(text)) => {
            return fail(at(path, "text"), format!("{} bytes; at most 500", text.len()));
        }
        Some(_) => return fail(at(path, "text"), "expected a string"),
    };
    let mut out = vec![0; RelayNotice::MAX_LEN];
    let len = RelayNotice { code, sequence, text }
        .emit(&mut out)
        .map_err(|e| EncodeError { field: path.into(), problem: e.to_string() })?;
    out.truncate(len);
    Ok(out)
}

fn object<'a>(value: &'a Json, path: &str) -> Result<&'a Map<String, Json>> {
    value.as_object().map_or_else(|| fail(path, "expected an object"), Ok)
}

fn required<'a>(object: &'a Map<String, Json>, key: &str, path: &str) -> Result<&'a Json> {
    object.get(key).map_or_else(|| fail(at(path, key), "missing (required)"), Ok)
}

fn known_keys(object: &Map<String, Json>, known: &[&str], path: &str) -> Result<()> {
    match object.keys().find(|key| !known.contains(&key.as_str())) {
        Some(key) => fail(at(path, key), format!("unknown field; expected one of {}", known.join(", "))),
        None => Ok(()),
    }
}

/// An integer in `0..=max`.
fn unsigned(value: &Json, path: &str, max: u64) -> Result<u64> {
    match value.as_u64() {
        Some(n) if n <= max => Ok(n),
        _ => fail(path, format!("{value} is not an integer in 0..={max}")),
    }
}

fn hex_bytes(value: &Json, path: &str) -> Result<Vec<u8>> {
    let digits = value.as_str().map(|text| text.strip_prefix("0x").unwrap_or(text));
    match digits.and_then(hex_text) {
        Some(bytes) => Ok(bytes),
        None => fail(path, "expected a string of hex digits, two a byte (0x optional)"),
    }
}

/// Hex digits, two a byte, without prefix.
fn hex_text(digits: &str) -> Option<Vec<u8>> {
    if !digits.len().is_multiple_of(2) {
        return None;
    }
    let digit = |c: u8| (c as char).to_digit(16).map(|d| d as u8);
    digits.as_bytes().chunks_exact(2).map(|pair| Some(digit(pair[0])? << 4 | digit(pair[1])?)).collect()
}

#[cfg(test)]
mod tests;
