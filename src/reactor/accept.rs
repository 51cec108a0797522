//! Accepting connections: credentials, the allow-lists and `max_connections`, socket
//! buffers, the hand-over to a reactor, and registering what was handed over.

use std::io;
use std::os::fd::AsFd;
use std::sync::atomic::Ordering::Relaxed;
use std::time::Instant;

use log::{debug, info, warn};
use mio::net::UnixStream;
use mio::{Interest, Token};

use crate::relays::{Peer, RelayLogic};

use super::{Mail, Reactor, Socket, TICK, now};

impl<L: RelayLogic> Reactor<L> {
    pub(super) fn accept(&mut self, index: usize) {
        loop {
            let Some((listener, relay)) = self.listeners.get(index) else { return };
            let relay = *relay;
            let context = &self.shard.relays()[relay];
            let name = &context.config.name;
            let stream = match listener.accept() {
                Ok((stream, _)) => stream,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
                Err(e) => {
                    // Out of descriptors (EMFILE) or memory: the clients left in the backlog
                    // raise no new readiness edge, so accepting is retried at the next tick.
                    if self.accept_log.ready(Instant::now()) {
                        warn!("{name}: accept failed: {e}; retrying every {TICK:?}");
                    }
                    self.accept_retry = true;
                    return;
                }
            };
            let metrics = &context.metrics;
            let peer = match peer_credentials(&stream) {
                Ok(peer) => peer,
                Err(e) => {
                    warn!("{name}: cannot read peer credentials, closing: {e}");
                    continue;
                }
            };
            let refusal = if !context.admits(&peer) {
                Some("outside the connect allow-list".to_string())
            } else if self.shared.connections.fetch_add(1, Relaxed) >= self.shared.max_connections {
                self.shared.connections.fetch_sub(1, Relaxed);
                Some(format!("max_connections {} reached", self.shared.max_connections))
            } else {
                None
            };
            if let Some(why) = refusal {
                metrics.connections_refused.fetch_add(1, Relaxed);
                // The first refusal, then at most one line a second: a connect loop cannot
                // flood the log (the count is in connections_refused_total).
                if self.refusal_log.ready(Instant::now()) {
                    let more = self.refusal_log.take_suppressed();
                    warn!(
                        "{name}: connection from {peer} refused: {why} ({more} more refused since the last line)"
                    );
                }
                continue;
            }
            let id = self.shared.next_connection_id.fetch_add(1, Relaxed);
            info!("{name}: connection {id} from {peer}");
            if let Some(size) = self.socket_buffer {
                match set_socket_buffers(&stream, size) {
                    Ok(given) if !self.buffers_reported => {
                        self.buffers_reported = true;
                        report_socket_buffers(name, size, given);
                    }
                    Ok(_) => {}
                    // The connection works with the kernel's default buffers: keep it.
                    Err(e) => {
                        if self.buffer_log.ready(Instant::now()) {
                            warn!(
                                "{name}: connection {id}: cannot set its socket buffers to {size} B \
                                 (transport.buffer_size): {e}; it keeps the kernel's default"
                            );
                        }
                    }
                }
            }
            metrics.connections.fetch_add(1, Relaxed);
            metrics.connections_total.fetch_add(1, Relaxed);
            let target = self.next_target % self.shared.inboxes.len();
            self.next_target += 1;
            // Before the hand-over: batches any reactor forwards from now on go to the target
            // too, so the new connection (a subscriber until it says otherwise) misses none.
            self.shard.relays()[relay].expect(target);
            let stream = std::os::unix::net::UnixStream::from(std::os::fd::OwnedFd::from(stream));
            self.send(target, Mail::Accept { stream, relay, peer, id });
        }
    }

    pub(super) fn register(
        &mut self,
        stream: std::os::unix::net::UnixStream,
        relay: usize,
        peer: Peer,
        id: u64,
    ) {
        let _ = stream.set_nonblocking(true);
        let mut stream = UnixStream::from_std(stream);
        let token = self.shard.next_token();
        if let Err(e) = self.poll.registry().register(&mut stream, Token(token), Interest::READABLE) {
            warn!("connection {id}: cannot register: {e}");
            self.shared.connections.fetch_sub(1, Relaxed);
            let context = &self.shard.relays()[relay];
            context.metrics.connections.fetch_sub(1, Relaxed);
            // It was announced and never inserted.
            context.lose_interest(self.index);
            return;
        }
        let log = self.log_fds.get(relay).cloned().flatten();
        self.shard.insert(Socket { stream, read_closed: false, log }, relay, peer, id, now());
        self.apply();
    }
}

/// Asks for `size` bytes of send and receive buffer (`SO_SNDBUF`, `SO_RCVBUF`) on a socket, and
/// returns what the kernel gave, read back: (send, receive). Linux doubles the size asked (room
/// for its own bookkeeping) and caps it at twice `net.core.wmem_max` / `net.core.rmem_max`
/// without an error. The reactor calls it on every accepted connection when
/// [`EngineConfig::socket_buffer`] is set.
///
/// # Errors
///
/// What `setsockopt` or `getsockopt` returns.
pub(crate) fn set_socket_buffers(fd: impl AsFd, size: usize) -> io::Result<(usize, usize)> {
    use rustix::net::sockopt;
    let fd = fd.as_fd();
    sockopt::set_socket_send_buffer_size(fd, size)?;
    sockopt::set_socket_recv_buffer_size(fd, size)?;
    Ok((sockopt::socket_send_buffer_size(fd)?, sockopt::socket_recv_buffer_size(fd)?))
}

/// Logs what the kernel gave for the socket buffers asked: at info when it capped them, with
/// the fix; at debug otherwise.
fn report_socket_buffers(name: &str, size: usize, (send, receive): (usize, usize)) {
    // Linux doubles what it was asked for, when it does not cap it.
    let uncapped = if cfg!(target_os = "linux") { size.saturating_mul(2) } else { size };
    if send < uncapped || receive < uncapped {
        info!(
            "{name}: socket buffers of {size} B asked (transport.buffer_size); the kernel gave \
             SO_SNDBUF {send} B and SO_RCVBUF {receive} B: it caps them at \
             net.core.wmem_max and net.core.rmem_max (doubled; raise those with sysctl for more)"
        );
    } else {
        debug!(
            "{name}: socket buffers of {size} B asked (transport.buffer_size); the kernel gave \
             SO_SNDBUF {send} B and SO_RCVBUF {receive} B"
        );
    }
}

/// Reads the credentials of the peer of a connected Unix stream socket (`SO_PEERCRED`).
///
/// # Errors
///
/// What `getsockopt` returns.
pub(crate) fn peer_credentials(fd: impl AsFd) -> io::Result<Peer> {
    let cred = rustix::net::sockopt::socket_peercred(fd)?;
    Ok(Peer { pid: Some(cred.pid.as_raw_pid()), uid: cred.uid.as_raw(), gid: cred.gid.as_raw() })
}
