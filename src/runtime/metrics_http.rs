//! Prometheus text at `http://ADDR/metrics`, on a loopback address, from one thread that takes
//! one connection at a time with a short deadline: whatever a local client does to the port,
//! the endpoint holds at most one connection (two file descriptors with its listener) and one
//! thread, so it can never take descriptors or threads from the relay. A failing `accept`
//! (e.g. the process is out of descriptors) is logged at most once every ten seconds and
//! retried; the endpoint recovers by itself.
//!
//! Written by hand rather than with an HTTP crate: the small servers (tiny_http among them)
//! spawn a thread or task per connection with no bound, which is what a hostile local client
//! used to take 3,000 threads and 6,000 descriptors from the relay.

use std::io::{self, Read, Write};
use std::net::{SocketAddr, TcpListener, TcpStream};
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};

use crate::reactor::Shared;
use crate::relays::Metrics;

/// How long one connection may take, from accept to the last byte of the answer.
const DEADLINE: Duration = Duration::from_millis(250);
/// The largest request head read.
const MAX_REQUEST: usize = 8 << 10;
/// How often an idle endpoint looks for a connection or a stop.
const IDLE: Duration = Duration::from_millis(20);

/// Binds `addr` and serves until the relay stops; returns the bound address (the port chosen
/// when `addr` has port 0) and the thread.
///
/// # Errors
///
/// When `addr` cannot be bound (e.g. the port is in use).
pub(crate) fn serve(
    addr: SocketAddr,
    metrics: Vec<Arc<Metrics>>,
    shared: Arc<Shared>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let listener = TcpListener::bind(addr)?;
    listener.set_nonblocking(true)?;
    let bound = listener.local_addr()?;
    info!("metrics on http://{bound}/metrics");
    let thread = std::thread::Builder::new().name("metrics-http".into()).spawn(move || {
        let mut last_warning: Option<Instant> = None;
        while !shared.stopping() {
            match listener.accept() {
                Ok((stream, _)) => {
                    if let Err(e) = answer(stream, &metrics) {
                        debug!("metrics endpoint {bound}: {e}");
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => std::thread::sleep(IDLE),
                Err(e) => {
                    if last_warning.is_none_or(|t| t.elapsed() >= Duration::from_secs(10)) {
                        last_warning = Some(Instant::now());
                        warn!("metrics endpoint {bound}: accept failed: {e}; retrying");
                    }
                    std::thread::sleep(IDLE);
                }
            }
        }
    })?;
    Ok((bound, thread))
}

/// Reads one request head (within the deadline) and answers it.
fn answer(mut stream: TcpStream, metrics: &[Arc<Metrics>]) -> io::Result<()> {
    let deadline = Instant::now() + DEADLINE;
    stream.set_nonblocking(false)?;
    let mut head = Vec::with_capacity(1024);
    let mut chunk = [0u8; 1024];
    while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_REQUEST {
        let left = deadline.saturating_duration_since(Instant::now());
        if left.is_zero() {
            return Err(io::ErrorKind::TimedOut.into());
        }
        stream.set_read_timeout(Some(left))?;
        match stream.read(&mut chunk)? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    let line = head.split(|&b| b == b'\r' || b == b'\n').next().unwrap_or_default();
    let line = String::from_utf8_lossy(line);
    let mut words = line.split(' ');
    let (method, target) = (words.next().unwrap_or_default(), words.next().unwrap_or_default());
    let path = target.split('?').next().unwrap_or_default();
    let (status, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut body = String::new();
            for m in metrics {
                m.prometheus(&mut body);
            }
            ("200 OK", body)
        }
        ("GET", _) => ("404 Not Found", format!("no {path} here: the metrics are at /metrics\n")),
        _ => ("405 Method Not Allowed", "only GET /metrics is served here\n".to_string()),
    };
    let reply = format!(
        "HTTP/1.1 {status}\r\nContent-Type: text/plain; version=0.0.4\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    stream.set_write_timeout(Some(
        deadline.saturating_duration_since(Instant::now()).max(Duration::from_millis(1)),
    ))?;
    stream.write_all(reply.as_bytes())
}
