//! Prometheus text, the same for the relays' endpoint and the bridge's: the encoding (the
//! official client, `prometheus-client`, in the text format 0.0.4), the label that names a
//! domain, and the answer to an HTTP request.
//!
//! The counters stay plain atomics, bumped on the frame path without a lock; a
//! [`Collector`] reads them when a scrape comes and writes each family once, with its
//! `# HELP` and `# TYPE`, one sample per label set ([`family`]). [`Exposition`] renders the
//! collectors of a process.
//!
//! ```
//! use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
//! use torq::metrics::{Collector, DescriptorEncoder, Exposition, Kind, family};
//!
//! #[derive(Debug, Default)]
//! struct Frames(AtomicU64);
//!
//! impl Collector for Frames {
//!     fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> std::fmt::Result {
//!         let value = self.0.load(Relaxed);
//!         family(&mut encoder, "demo_frames", "Frames seen", Kind::Counter, [([("domain", "signal")], value)])
//!     }
//! }
//!
//! let frames = std::sync::Arc::new(Frames::default());
//! frames.0.fetch_add(3, Relaxed);
//! let exposition = Exposition::new(frames);
//! assert_eq!(
//!     exposition.render(),
//!     "# HELP demo_frames_total Frames seen\n# TYPE demo_frames_total counter\n\
//!      demo_frames_total{domain=\"signal\"} 3\n"
//! );
//! ```

use std::fmt;

use prometheus_client::encoding::{EncodeCounterValue, EncodeGaugeValue, EncodeLabelSet, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

pub use prometheus_client::collector::Collector;
pub use prometheus_client::encoding::DescriptorEncoder;

use crate::protocol::RelayDomain;

/// The `Content-Type` of [`Exposition::render`]'s text (the Prometheus text format 0.0.4).
pub const CONTENT_TYPE: &str = prometheus_client::encoding::prometheus_text::CONTENT_TYPE;

/// The label naming a relay's domain, on the relays' series and the bridge's alike.
pub const DOMAIN_LABEL: &str = "domain";

/// The value of [`DOMAIN_LABEL`] for `domain`: `market_data`, `signal`, `execution` (`system`),
/// as the bridge's NATS subjects name the domains.
pub const fn domain_value(domain: RelayDomain) -> &'static str {
    match domain {
        RelayDomain::MarketData => "market_data",
        RelayDomain::Signal => "signal",
        RelayDomain::Execution => "execution",
        RelayDomain::System => "system",
    }
}

/// What a family counts.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// Only goes up (from 0 at the process's start): its name gets `_total`.
    Counter,
    /// Goes up and down, or is a level seen.
    Gauge,
}

/// Writes one family: `# HELP` and `# TYPE` once, then one sample per `(labels, value)`.
///
/// `name` is the family's name without `_total`, which a [`Kind::Counter`] gets here; units
/// are written in the name, in base units (`_bytes`, `_seconds`).
///
/// # Errors
///
/// When the writer fails (a [`String`] never does).
pub fn family<L, V>(
    encoder: &mut DescriptorEncoder<'_>,
    name: &str,
    help: &str,
    kind: Kind,
    samples: impl IntoIterator<Item = (L, V)>,
) -> fmt::Result
where
    L: EncodeLabelSet,
    V: EncodeCounterValue + EncodeGaugeValue,
{
    let metric_type = match kind {
        Kind::Counter => MetricType::Counter,
        Kind::Gauge => MetricType::Gauge,
    };
    let mut metric = encoder.encode_descriptor(name, help, None, metric_type)?;
    for (labels, value) in samples {
        let mut sample = metric.encode_family(&labels)?;
        match kind {
            Kind::Counter => sample.encode_counter::<NoLabelSet, V, f64>(&value, None)?,
            Kind::Gauge => sample.encode_gauge(&value)?,
        }
    }
    Ok(())
}

/// The collectors of one endpoint, rendered together on each scrape.
#[derive(Debug, Default)]
pub struct Exposition {
    registry: Registry,
}

impl Exposition {
    /// An exposition of `collector` alone.
    pub fn new(collector: impl Collector) -> Exposition {
        let mut exposition = Exposition::default();
        exposition.add(collector);
        exposition
    }

    /// Adds a collector; its families must not be any other collector's.
    pub fn add(&mut self, collector: impl Collector) {
        self.registry.register_collector(Box::new(collector));
    }

    /// Appends the Prometheus text of every collector to `out`.
    pub fn render_into(&self, out: &mut String) {
        // Writing into a String cannot fail, and no collector here fails by itself.
        let _ = prometheus_client::encoding::prometheus_text::encode(out, &self.registry);
    }

    /// The Prometheus text of every collector.
    pub fn render(&self) -> String {
        let mut out = String::new();
        self.render_into(&mut out);
        out
    }
}

/// The largest HTTP request head an endpoint reads; what comes after is ignored.
pub const MAX_REQUEST: usize = 8 << 10;

/// Whether `head` is a whole request head (up to its blank line), or as much of one as an
/// endpoint reads ([`MAX_REQUEST`]).
pub fn request_complete(head: &[u8]) -> bool {
    head.len() >= MAX_REQUEST || head.windows(4).any(|w| w == b"\r\n\r\n")
}

/// The whole HTTP answer to a request head: `200` with `render`'s text for `GET /metrics`
/// (query ignored), `404` for another path, `405` for another method; always
/// `Connection: close`.
pub fn http_answer(head: &[u8], render: &dyn Fn(&mut String)) -> Vec<u8> {
    let line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut body = String::new();
            render(&mut body);
            ("200 OK", CONTENT_TYPE, body)
        }
        ("GET", _) => {
            ("404 Not Found", "text/plain", format!("no {path} here: the metrics are at /metrics\n"))
        }
        _ => ("405 Method Not Allowed", "text/plain", "only GET /metrics is served here\n".to_string()),
    };
    format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    )
    .into_bytes()
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU64, Ordering::Relaxed};

    use super::*;

    #[derive(Debug, Default)]
    struct Two {
        a: AtomicU64,
        b: AtomicU64,
    }

    impl Collector for Two {
        fn encode(&self, mut encoder: DescriptorEncoder<'_>) -> fmt::Result {
            let samples = [("x", &self.a), ("y", &self.b)].map(|(v, c)| ([("k", v)], c.load(Relaxed)));
            family(&mut encoder, "t_events", "Events", Kind::Counter, samples)?;
            family(&mut encoder, "t_level_seconds", "A level", Kind::Gauge, [([("k", "x")], 0.25)])
        }
    }

    #[test]
    fn each_family_once_with_help_and_type_and_a_sample_per_label_set() {
        let two = Arc::new(Two::default());
        let exposition = Exposition::new(Arc::clone(&two));
        two.a.fetch_add(5, Relaxed);
        assert_eq!(
            exposition.render(),
            "# HELP t_events_total Events\n# TYPE t_events_total counter\n\
             t_events_total{k=\"x\"} 5\nt_events_total{k=\"y\"} 0\n\
             # HELP t_level_seconds A level\n# TYPE t_level_seconds gauge\n\
             t_level_seconds{k=\"x\"} 0.25\n"
        );
        // Read at each scrape.
        two.b.fetch_add(1, Relaxed);
        assert!(exposition.render().contains("t_events_total{k=\"y\"} 1\n"));
    }

    #[test]
    fn the_domain_label_is_the_subjects_token() {
        let values = [RelayDomain::MarketData, RelayDomain::Signal, RelayDomain::Execution].map(domain_value);
        assert_eq!(values, ["market_data", "signal", "execution"]);
    }

    fn text(render: &dyn Fn(&mut String), head: &[u8]) -> String {
        String::from_utf8(http_answer(head, render)).unwrap()
    }

    #[test]
    fn get_metrics_is_answered_and_anything_else_refused() {
        let render = |out: &mut String| out.push_str("torq_up 1\n");
        let ok = text(&render, b"GET /metrics?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
        assert_eq!(
            ok,
            "HTTP/1.1 200 OK\r\nContent-Type: text/plain; version=0.0.4; charset=utf-8\r\n\
             Content-Length: 10\r\nConnection: close\r\n\r\ntorq_up 1\n"
        );
        assert!(text(&render, b"GET /other HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 404 Not Found\r\n"));
        assert!(text(&render, b"POST /metrics HTTP/1.0\r\n\r\n").starts_with("HTTP/1.1 405 "));
        // Nothing, half a line, bytes that are not text: an answer, never a panic.
        for head in [&b""[..], b"GET", b"\xff\xfe\r\n\r\n", b"\r\n\r\n", b"GET  /metrics"] {
            assert!(text(&render, head).starts_with("HTTP/1.1 4"), "{head:?}");
        }
    }

    #[test]
    fn a_request_is_complete_at_its_blank_line_or_at_8_kib() {
        assert!(!request_complete(b"GET /metrics HTTP/1.0\r\n"));
        assert!(request_complete(b"GET /metrics HTTP/1.0\r\n\r\n"));
        assert!(request_complete(&[b'a'; MAX_REQUEST]));
        assert!(!request_complete(&[b'a'; MAX_REQUEST - 1]));
    }
}
