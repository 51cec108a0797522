//! NATS subjects (`torq.<node>.<domain>.<type>.<source>`), and the per-(node, source) sequence
//! tracking that counts frames lost between hosts.

use std::sync::Arc;

use torq::protocol::{HEADER_SIZE, Header, routing_key};

use crate::config::Domain;

/// The subject a frame is exported on: its first TLV's type and its source.
pub fn export_subject(node: &str, domain: Domain, frame: &[u8]) -> String {
    let source = Header::view(frame).map_or(0, Header::source);
    format!("torq.{node}.{}.{}.{source}", domain.token(), first_type(frame))
}

/// The type of a frame's first TLV (0 when it has none).
pub fn first_type(frame: &[u8]) -> u8 {
    frame.get(HEADER_SIZE..).and_then(routing_key).map_or(0, |key| key.tlv_type)
}

/// The subjects that import `node` (`None`: every node) of `domain`.
pub fn import_subject(node: Option<&str>, domain: Domain) -> String {
    format!("torq.{}.{}.>", node.unwrap_or("*"), domain.token())
}

/// The node a subject came from.
pub fn node_of(subject: &str) -> Option<&str> {
    let rest = subject.strip_prefix("torq.")?;
    // Bytes, not chars: this runs for every message imported.
    let end = rest.bytes().position(|b| b == b'.').unwrap_or(rest.len());
    Some(&rest[..end])
}

/// The JetStream stream that holds `node`'s execution frames.
pub fn stream_name(node: &str) -> String {
    format!("TORQ_{node}_EXECUTION")
}

/// The JetStream message id of an exported frame: the node, the exporter (an instance id
/// drawn at its start) and the exporter's own count of the frames it exported. It names one
/// frame: two frames never share it, whatever their headers say (two publishers of one source,
/// a capture replayed twice), and a publish sent again after a lost connection keeps it, so
/// JetStream stores it once.
pub fn message_id(node: &str, exporter: u64, count: u64) -> String {
    format!("{node}.{exporter:016x}.{count}")
}

/// The exporter and its count from a message id of `node` ([`message_id`]); `None` for any
/// other id (not one an exporter of `node` wrote).
pub fn parse_message_id(id: &str, node: &str) -> Option<(u64, u64)> {
    let rest = id.strip_prefix(node)?.strip_prefix('.')?;
    let (exporter, count) = rest.split_once('.')?;
    if exporter.len() != 16 {
        return None;
    }
    Some((u64::from_str_radix(exporter, 16).ok()?, count.parse().ok()?))
}

/// The most nodes one bridge keeps sequence state for at a time; with `--import all` anyone
/// who may publish on NATS can name new ones, so the one heard from least recently makes room.
pub const MAX_NODES: usize = 64;

/// Sequences seen per (node, source), counting the ones skipped.
#[derive(Debug, Default)]
pub struct Gaps {
    /// Per node (a few, so a list), most recently heard from last.
    nodes: Vec<Node>,
    /// Nodes forgotten to make room (their next frame counts no gap).
    pub evicted: u64,
}

/// A node's name, shared, and the sequence due per source.
#[derive(Debug)]
struct Node {
    name: Arc<str>,
    due: Box<[Option<u64>; 256]>,
}

impl Gaps {
    /// Records a frame from `node`; returns how many frames before it were never seen (0 when
    /// it is the one due, or when its publisher started again from a lower sequence). Past
    /// [`MAX_NODES`] nodes the one heard from least recently is forgotten: names invented by
    /// others never lock a real node out.
    pub fn record(&mut self, node: &str, header: &Header) -> u64 {
        let last = self.nodes.len().wrapping_sub(1);
        let at = match self.nodes.iter().rposition(|known| *known.name == *node) {
            // The node of the last frame, as usual: nothing moves.
            Some(at) if at == last => at,
            Some(at) => {
                let known = self.nodes.remove(at);
                self.nodes.push(known);
                self.nodes.len() - 1
            }
            None => {
                if self.nodes.len() >= MAX_NODES {
                    self.nodes.remove(0);
                    self.evicted += 1;
                }
                self.nodes.push(Node { name: Arc::from(node), due: Box::new([None; 256]) });
                self.nodes.len() - 1
            }
        };
        let Node { due, .. } = &mut self.nodes[at];
        let sequence = header.sequence();
        let due = &mut due[usize::from(header.source())];
        let missed = match *due {
            Some(due) if sequence > due => sequence - due,
            _ => 0,
        };
        *due = Some(sequence + 1);
        missed
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use torq::protocol::RelayDomain;
    use zerocopy::IntoBytes;

    fn frame(source: u8, sequence: u64, payload: &[u8]) -> Vec<u8> {
        let header = Header::new(RelayDomain::MarketData, source, sequence, 5, payload.len() as u32);
        [header.as_bytes(), payload].concat()
    }

    #[test]
    fn subjects_name_node_domain_type_and_source() {
        let subject = export_subject("ny4", Domain::MarketData, &frame(4, 1, &[1, 2, 0, 0]));
        assert_eq!(subject, "torq.ny4.market_data.1.4");
        assert_eq!(node_of(&subject), Some("ny4"));
        assert_eq!(export_subject("a", Domain::Signal, &frame(9, 1, &[])), "torq.a.signal.0.9");
        assert_eq!(import_subject(None, Domain::Execution), "torq.*.execution.>");
        assert_eq!(import_subject(Some("b"), Domain::Signal), "torq.b.signal.>");
        assert_eq!(node_of("other.b.signal"), None);
        assert_eq!(node_of("torq.b"), Some("b"));
    }

    #[test]
    fn gaps_count_per_node_and_source() {
        let mut gaps = Gaps::default();
        let at = |source, sequence| *Header::view(&frame(source, sequence, &[])).unwrap();
        let mut missed = |node, source, sequence| gaps.record(node, &at(source, sequence));
        assert_eq!(missed("a", 1, 1), 0);
        assert_eq!(missed("a", 1, 2), 0);
        assert_eq!(missed("a", 1, 5), 2);
        assert_eq!(missed("b", 1, 9), 0, "another node has its own sequences");
        assert_eq!(missed("a", 2, 7), 0, "another source too");
        assert_eq!(missed("a", 1, 1), 0, "a publisher that starts again is not a gap");
        assert_eq!(missed("a", 1, 3), 1);
        // Past the bound the node heard from least recently makes room: "b" here, and
        // names invented by the hundred never lock "a" out while it sends.
        for n in 0..10 * MAX_NODES {
            gaps.record(&format!("invented-{n}"), &at(1, 1));
            if n % 8 == 0 {
                assert_eq!(gaps.record("a", &at(1, 4 + n as u64 / 8)), 0, "a keeps its place");
            }
        }
        assert!(gaps.evicted >= 9 * MAX_NODES as u64);
        assert_eq!(gaps.record("b", &at(1, 10)), 0, "b was forgotten: no gap counted");
    }

    #[test]
    fn message_ids_name_one_exported_frame() {
        let id = message_id("ny4", 0xfeed, 42);
        assert_eq!(id, "ny4.000000000000feed.42");
        assert_eq!(parse_message_id(&id, "ny4"), Some((0xfeed, 42)));
        assert_eq!(parse_message_id(&id, "ny"), None, "another node's");
        assert_eq!(parse_message_id("ny4.4.17.1700000000", "ny4"), None, "the old form");
        assert_eq!(parse_message_id("ny4.000000000000feed.x", "ny4"), None);
        assert_eq!(parse_message_id("", "ny4"), None);
    }
}
