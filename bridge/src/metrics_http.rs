//! Prometheus text at `http://ADDR/metrics` (`--metrics`, a loopback address), served as the
//! relay's endpoint serves it (`torq::runtime`'s `metrics_http`): whatever local clients do to
//! the port, a scrape is answered within a second.
//!
//! - A task per connection, each closed a second after accept ([`DEADLINE`]), at most
//!   [`MAX_CONNECTIONS`] at once: a connection arriving at that bound closes the oldest one
//!   that has not sent a whole request ([`victim`]; when every one has, the oldest), so idle
//!   connections never hold off a new scraper, and the endpoint holds at most
//!   `MAX_CONNECTIONS` descriptors however many clients connect.
//! - A request head is read up to 8 KiB; the answer is `torq::metrics::http_answer` (`GET
//!   /metrics`, else 404 or 405), the text the collectors write at that moment.
//! - A failing accept (e.g. the process is out of descriptors) is retried after a back-off of
//!   10 ms doubling to a second, and logged at most once every ten seconds: it never spins.
//!
//! The accept loop alone knows the connections (no lock): their tasks, and a flag each raises
//! once its request is whole. It closes one by aborting its task and waiting until the task is
//! gone (its socket with it), so the bound holds at every instant, not eventually.

use std::collections::VecDeque;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering::Relaxed};
use std::time::{Duration, Instant};

use log::{debug, warn};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;
use torq::metrics::{Exposition, MAX_REQUEST, http_answer, request_complete};

/// How long one connection may take, from accept to the last byte of its answer.
pub const DEADLINE: Duration = Duration::from_secs(1);
/// The most connections held at once.
pub const MAX_CONNECTIONS: usize = 64;
/// The first and the longest wait after a failed accept.
const FIRST_BACKOFF: Duration = Duration::from_millis(10);
const MAX_BACKOFF: Duration = Duration::from_secs(1);
/// The least time between two warnings of the same kind.
const WARNING_EVERY: Duration = Duration::from_secs(10);

/// One connection, as the accept loop knows it.
struct Held {
    /// Its task, which owns the socket: aborted to close it.
    task: JoinHandle<()>,
    /// Raised once its request head is whole (it is being answered).
    answering: Arc<AtomicBool>,
}

/// The index of the connection to close for a new one at the bound, in `answering` (the
/// connections' flags in the order of accept): the oldest that has not completed a request,
/// else the oldest. By age rather than by bytes sent, as the relay's endpoint chooses: a client
/// flooding the port must open `MAX_CONNECTIONS - 1` more connections before a scraper's turn
/// comes, and each of those is itself gone within the deadline.
fn victim(answering: impl IntoIterator<Item = bool>) -> usize {
    answering.into_iter().position(|answering| !answering).unwrap_or(0)
}

/// Serves `exposition` on `listener` until the task is dropped (at the bridge's stop signal);
/// a connection being answered then is closed within its [`DEADLINE`].
pub async fn serve(listener: TcpListener, exposition: Arc<Exposition>) {
    let bound = listener.local_addr().map_or_else(|_| "?".to_string(), |a: SocketAddr| a.to_string());
    let mut held: VecDeque<Held> = VecDeque::with_capacity(MAX_CONNECTIONS);
    let mut backoff = FIRST_BACKOFF;
    let (mut last_accept_warning, mut last_eviction_warning) = (None::<Instant>, None::<Instant>);
    let mut evicted = 0u64;
    loop {
        let stream = match listener.accept().await {
            Ok((stream, _)) => {
                backoff = FIRST_BACKOFF;
                stream
            }
            Err(e) => {
                if last_accept_warning.is_none_or(|t| t.elapsed() >= WARNING_EVERY) {
                    last_accept_warning = Some(Instant::now());
                    warn!("metrics endpoint {bound}: accept failed: {e}; retrying");
                }
                tokio::time::sleep(backoff).await;
                backoff = (backoff * 2).min(MAX_BACKOFF);
                continue;
            }
        };
        held.retain(|h| !h.task.is_finished());
        if held.len() >= MAX_CONNECTIONS {
            let index = victim(held.iter().map(|h| h.answering.load(Relaxed)));
            if let Some(old) = held.remove(index) {
                old.task.abort();
                // Until its socket is closed (at once, unless the task is being polled now).
                let _ = old.task.await;
            }
            evicted += 1;
            if last_eviction_warning.is_none_or(|t| t.elapsed() >= WARNING_EVERY) {
                last_eviction_warning = Some(Instant::now());
                warn!(
                    "metrics endpoint {bound}: more than {MAX_CONNECTIONS} connections at once; {} closed to make room",
                    std::mem::take(&mut evicted)
                );
            }
        }
        let answering = Arc::new(AtomicBool::new(false));
        let (exposition, flag) = (Arc::clone(&exposition), Arc::clone(&answering));
        let task = tokio::spawn(async move {
            if let Ok(Err(e)) = tokio::time::timeout(DEADLINE, answer(stream, &exposition, &flag)).await {
                debug!("metrics endpoint: {e}");
            }
        });
        held.push_back(Held { task, answering });
    }
}

/// Reads one request head and writes the answer.
async fn answer(
    mut stream: TcpStream,
    exposition: &Exposition,
    answering: &AtomicBool,
) -> std::io::Result<()> {
    let mut head = Vec::new();
    let mut chunk = [0u8; 1024];
    while !request_complete(&head) {
        let room = (MAX_REQUEST - head.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]).await? {
            0 => break,
            n => head.extend_from_slice(&chunk[..n]),
        }
    }
    answering.store(true, Relaxed);
    let reply = http_answer(&head, &|out: &mut String| exposition.render_into(out));
    stream.write_all(&reply).await?;
    stream.shutdown().await
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn at_the_bound_the_oldest_connection_without_a_request_is_closed() {
        assert_eq!(victim([true, false, false, true]), 1);
        assert_eq!(victim([false, false]), 0);
        // When every one has completed its request, the oldest.
        assert_eq!(victim([true, true, true]), 0);
    }
}
