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

/// The JetStream message id of a frame: node, source, sequence and the publisher's timestamp
/// (a publisher that starts again starts its sequences again; its timestamps move on).
pub fn message_id(node: &str, header: &Header) -> String {
    format!("{node}.{}.{}.{}", header.source(), header.sequence(), header.timestamp())
}

/// The most nodes one bridge imports from: each costs a connection to the local relay, and
/// with `--import all` anyone who may publish on NATS can name new ones.
pub const MAX_NODES: usize = 64;

/// Sequences seen per (node, source), counting the ones skipped.
#[derive(Debug, Default)]
pub struct Gaps {
    /// Per node (a few, so a list).
    nodes: Vec<Node>,
}

/// A node's name, shared, and the sequence due per source.
#[derive(Debug)]
struct Node {
    name: Arc<str>,
    due: Box<[Option<u64>; 256]>,
}

impl Gaps {
    /// Records a frame from `node`; returns how many frames before it were never seen (0 when
    /// it is the one due, or when its publisher started again from a lower sequence), and the
    /// node's name, shared (no allocation per frame). `None` for a node past the first
    /// [`MAX_NODES`]: its frames are not imported.
    pub fn record(&mut self, node: &str, header: &Header) -> Option<(u64, Arc<str>)> {
        let at = match self.nodes.iter().position(|known| *known.name == *node) {
            Some(at) => at,
            None if self.nodes.len() >= MAX_NODES => return None,
            None => {
                self.nodes.push(Node { name: Arc::from(node), due: Box::new([None; 256]) });
                self.nodes.len() - 1
            }
        };
        let Node { name, due } = &mut self.nodes[at];
        let sequence = header.sequence();
        let due = &mut due[usize::from(header.source())];
        let missed = match *due {
            Some(due) if sequence > due => sequence - due,
            _ => 0,
        };
        *due = Some(sequence + 1);
        Some((missed, Arc::clone(name)))
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
        let mut missed = |node, source, sequence| gaps.record(node, &at(source, sequence)).unwrap().0;
        assert_eq!(missed("a", 1, 1), 0);
        assert_eq!(missed("a", 1, 2), 0);
        assert_eq!(missed("a", 1, 5), 2);
        assert_eq!(missed("b", 1, 9), 0, "another node has its own sequences");
        assert_eq!(missed("a", 2, 7), 0, "another source too");
        assert_eq!(missed("a", 1, 1), 0, "a publisher that starts again is not a gap");
        assert_eq!(missed("a", 1, 3), 1);
        // Nodes past the bound are refused; the known ones go on.
        for n in 2..MAX_NODES {
            assert!(gaps.record(&format!("n{n}"), &at(1, 1)).is_some());
        }
        assert!(gaps.record("one-too-many", &at(1, 1)).is_none());
        assert!(gaps.record("a", &at(1, 4)).is_some());
    }
}
