//! Prometheus text at `http://ADDR/metrics`, on a loopback address, from one thread that serves
//! many connections at once without ever blocking on one: non-blocking sockets on one
//! `mio::Poll`, each connection with its own deadline (a second from accept to the last byte of
//! its answer, then it is closed), at most [`MAX_CONNECTIONS`] held at once. When a connection
//! arrives at that bound, the oldest connection that has not completed a request is closed to
//! make room (see [`victim`]), so a new scraper always gets a place and is answered within a
//! second whatever other local clients do to the port. A request head is read up to 8 KiB; an
//! answer a client does not read is kept, unsent part only, on its connection and written as
//! the client makes room, never holding up the others.
//!
//! Whatever a local client does, the endpoint holds one thread and at most
//! `MAX_CONNECTIONS + 2` descriptors (the connections, the listener, the poll), so it can never
//! take descriptors or threads from the relay. A failing `accept` (e.g. the process is out of
//! descriptors) is logged at most once every ten seconds and retried at each turn of the loop
//! (every 50 ms at most); the endpoint recovers by itself. The thread sees the relay's stop
//! within 50 ms.
//!
//! Written by hand rather than with an HTTP crate: the small servers (tiny_http among them)
//! spawn a thread or task per connection with no bound, which is what a hostile local client
//! used to take 3,000 threads and 6,000 descriptors from the relay. (Its first replacement took
//! one connection at a time with 250 ms each: 500 idle connections held a scrape off for two
//! minutes.)

use std::io::{self, Read, Write};
use std::net::SocketAddr;
use std::sync::Arc;
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use log::{debug, info, warn};
use mio::net::{TcpListener, TcpStream};
use mio::{Events, Interest, Poll, Token};
use slab::Slab;

use crate::metrics::{Exposition, MAX_REQUEST, http_answer, request_complete};
use crate::reactor::Shared;
use crate::relays::{Metrics, RelaysCollector};

/// How long one connection may take, from accept to the last byte of its answer.
const DEADLINE: Duration = Duration::from_secs(1);
/// The most connections held at once.
const MAX_CONNECTIONS: usize = 64;
/// The longest wait in the poll: how soon a stop is seen and a failed accept tried again.
const TICK: Duration = Duration::from_millis(50);
/// The least time between two warnings of the same kind.
const WARNING_EVERY: Duration = Duration::from_secs(10);
/// The listener's token; a connection's is its key in the slab.
const LISTENER: Token = Token(usize::MAX);

/// Binds `addr` and serves until the relay stops; returns the bound address (the port chosen
/// when `addr` has port 0) and the thread.
///
/// # Errors
///
/// When `addr` cannot be bound (e.g. the port is in use), or the poll cannot be made.
pub(crate) fn serve(
    addr: SocketAddr,
    metrics: Vec<Arc<Metrics>>,
    shared: Arc<Shared>,
) -> io::Result<(SocketAddr, JoinHandle<()>)> {
    let mut endpoint = Endpoint::bind(addr, MAX_CONNECTIONS, DEADLINE)?;
    let bound = endpoint.bound;
    info!("metrics on http://{bound}/metrics");
    let thread = std::thread::Builder::new().name("metrics-http".into()).spawn(move || {
        // The relays' families, each once with a sample per relay.
        let exposition = Exposition::new(RelaysCollector(metrics));
        let render = |out: &mut String| exposition.render_into(out);
        while !shared.stopping() {
            endpoint.turn(TICK, &render);
        }
    })?;
    Ok((bound, thread))
}

/// The listener and the connections it holds, on one poll.
struct Endpoint {
    poll: Poll,
    events: Events,
    /// The tokens of the last poll's events (kept to avoid an allocation per turn).
    ready: Vec<Token>,
    listener: TcpListener,
    bound: SocketAddr,
    connections: Slab<Connection>,
    /// The bound on `connections`, at least 1.
    max: usize,
    deadline: Duration,
    /// The serial number of the next connection accepted.
    next_serial: u64,
    /// An accept failed (e.g. EMFILE): the connection waits in the backlog, and with an
    /// edge-triggered poll no new event may come for it, so accept is tried at each turn.
    accept_failed: bool,
    last_accept_warning: Option<Instant>,
    /// Connections closed to make room since the last warning saying so.
    evicted: u64,
    last_eviction_warning: Option<Instant>,
}

/// One connection: its request head being read, then its answer being written.
struct Connection {
    stream: TcpStream,
    serial: u64,
    deadline: Instant,
    state: State,
}

enum State {
    /// The request head so far (at most [`MAX_REQUEST`] bytes).
    Reading(Vec<u8>),
    /// The answer and how much of it is written.
    Writing { reply: Vec<u8>, written: usize },
}

/// What the choice of a connection to close at the bound knows of one.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Standing {
    /// The order of accept: lower is older.
    serial: u64,
    /// Its request is complete and its answer being written.
    answering: bool,
}

/// The connection closed to make room for a new one at the bound: the oldest of those that
/// have not completed a request; when every one has, the oldest.
///
/// By age rather than by the bytes sent: a scraper's request comes in one segment right after
/// its connect, but it may be accepted before it, and a rule of "fewest bytes" would then close
/// the new scraper ahead of old clients that sent half a line. By age, a new connection is
/// closed only after every older one that has not completed a request: a client flooding the
/// port must open `MAX_CONNECTIONS - 1` more before a scraper's turn comes, and each of those
/// is itself gone within the deadline.
fn victim<K>(held: impl IntoIterator<Item = (K, Standing)>) -> Option<K> {
    held.into_iter().min_by_key(|(_, s)| (s.answering, s.serial)).map(|(key, _)| key)
}

impl Endpoint {
    /// Binds `addr` (non-blocking) and registers it on a new poll.
    fn bind(addr: SocketAddr, max: usize, deadline: Duration) -> io::Result<Endpoint> {
        let listener = std::net::TcpListener::bind(addr)?;
        listener.set_nonblocking(true)?;
        let bound = listener.local_addr()?;
        let mut listener = TcpListener::from_std(listener);
        let poll = Poll::new()?;
        poll.registry().register(&mut listener, LISTENER, Interest::READABLE)?;
        Ok(Endpoint {
            poll,
            events: Events::with_capacity(128),
            ready: Vec::with_capacity(128),
            listener,
            bound,
            connections: Slab::with_capacity(max),
            max: max.max(1),
            deadline,
            next_serial: 0,
            accept_failed: false,
            last_accept_warning: None,
            evicted: 0,
            last_eviction_warning: None,
        })
    }

    /// Waits up to `wait` (less when a deadline comes sooner) for readiness, moves every ready
    /// connection on, accepts what waits and closes the connections past their deadline.
    fn turn(&mut self, wait: Duration, render: &dyn Fn(&mut String)) {
        let now = Instant::now();
        let wait = self
            .connections
            .iter()
            .map(|(_, c)| c.deadline.saturating_duration_since(now))
            .fold(wait, Duration::min);
        if let Err(e) = self.poll.poll(&mut self.events, Some(wait)) {
            if e.kind() != io::ErrorKind::Interrupted {
                debug!("metrics endpoint {}: poll: {e}", self.bound);
            }
            return;
        }
        self.ready.clear();
        self.ready.extend(self.events.iter().map(mio::event::Event::token));
        let mut accept = std::mem::take(&mut self.accept_failed);
        // The connections first: one whose request completed now is answering, no longer a
        // candidate to close for a new one.
        for index in 0..self.ready.len() {
            match self.ready[index] {
                LISTENER => accept = true,
                Token(key) => self.advance(key, render),
            }
        }
        if accept {
            self.accept_all();
        }
        self.close_expired(Instant::now());
    }

    /// Reads and answers connection `key` as far as its socket allows; closes it when it is
    /// done or failed.
    fn advance(&mut self, key: usize, render: &dyn Fn(&mut String)) {
        let Some(connection) = self.connections.get_mut(key) else { return };
        match connection.advance(render) {
            Ok(false) => {}
            Ok(true) => self.close(key),
            Err(e) => {
                debug!("metrics endpoint {}: {e}", self.bound);
                self.close(key);
            }
        }
    }

    /// Accepts every connection waiting, each in place of an old one at the bound.
    fn accept_all(&mut self) {
        loop {
            match self.listener.accept() {
                Ok((stream, _)) => self.hold(stream),
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return,
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.accept_failed = true;
                    if self.last_accept_warning.is_none_or(|t| t.elapsed() >= WARNING_EVERY) {
                        self.last_accept_warning = Some(Instant::now());
                        warn!("metrics endpoint {}: accept failed: {e}; retrying", self.bound);
                    }
                    return;
                }
            }
        }
    }

    /// Holds a new connection, closing one first at the bound.
    fn hold(&mut self, mut stream: TcpStream) {
        if self.connections.len() >= self.max {
            let standings = self.connections.iter().map(|(key, c)| (key, c.standing()));
            if let Some(key) = victim(standings) {
                self.close(key);
                self.evicted += 1;
                if self.last_eviction_warning.is_none_or(|t| t.elapsed() >= WARNING_EVERY) {
                    self.last_eviction_warning = Some(Instant::now());
                    warn!(
                        "metrics endpoint {}: more than {} connections at once; {} closed to make room",
                        self.bound,
                        self.max,
                        std::mem::take(&mut self.evicted)
                    );
                }
            }
        }
        let entry = self.connections.vacant_entry();
        let interest = Interest::READABLE | Interest::WRITABLE;
        if let Err(e) = self.poll.registry().register(&mut stream, Token(entry.key()), interest) {
            debug!("metrics endpoint {}: register: {e}", self.bound);
            return;
        }
        let serial = self.next_serial;
        self.next_serial += 1;
        let deadline = Instant::now() + self.deadline;
        entry.insert(Connection { stream, serial, deadline, state: State::Reading(Vec::new()) });
    }

    fn close(&mut self, key: usize) {
        if let Some(mut connection) = self.connections.try_remove(key) {
            let _ = self.poll.registry().deregister(&mut connection.stream);
        }
    }

    fn close_expired(&mut self, now: Instant) {
        let registry = self.poll.registry();
        self.connections.retain(|_, connection| {
            let keep = connection.deadline > now;
            if !keep {
                let _ = registry.deregister(&mut connection.stream);
            }
            keep
        });
    }
}

impl Connection {
    fn standing(&self) -> Standing {
        Standing { serial: self.serial, answering: matches!(self.state, State::Writing { .. }) }
    }

    /// Reads the request head until the socket has no more, answers it once whole and writes
    /// the answer until the socket takes no more: true once the last byte is written.
    fn advance(&mut self, render: &dyn Fn(&mut String)) -> io::Result<bool> {
        if let State::Reading(head) = &mut self.state {
            if !read_head(&mut self.stream, head)? {
                return Ok(false);
            }
            let reply = http_answer(head, render);
            self.state = State::Writing { reply, written: 0 };
        }
        let State::Writing { reply, written } = &mut self.state else { return Ok(false) };
        while *written < reply.len() {
            match self.stream.write(&reply[*written..]) {
                Ok(0) => return Err(io::ErrorKind::WriteZero.into()),
                Ok(n) => *written += n,
                Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        Ok(true)
    }
}

/// Reads into `head` until it is done (true), the client has sent all it will (true) or the
/// socket has nothing more now (false).
fn read_head(stream: &mut impl Read, head: &mut Vec<u8>) -> io::Result<bool> {
    let mut chunk = [0u8; 1024];
    while !request_complete(head) {
        let room = (MAX_REQUEST - head.len()).min(chunk.len());
        match stream.read(&mut chunk[..room]) {
            Ok(0) => return Ok(true),
            Ok(n) => head.extend_from_slice(&chunk[..n]),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => return Ok(false),
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use std::io::{Read, Write};
    use std::net::TcpStream as Client;

    use super::*;

    fn standing(serial: u64, answering: bool) -> Standing {
        Standing { serial, answering }
    }

    #[test]
    fn at_the_bound_the_oldest_connection_without_a_request_is_closed() {
        let held = [
            ("newest idle", standing(9, false)),
            ("old, answering", standing(2, true)),
            ("oldest idle", standing(3, false)),
            ("idle", standing(5, false)),
        ];
        assert_eq!(victim(held), Some("oldest idle"));
        // When every one has completed its request (e.g. readers that do not read their
        // answers), the oldest.
        assert_eq!(victim([("a", standing(7, true)), ("b", standing(4, true))]), Some("b"));
        assert_eq!(victim([("only", standing(0, false))]), Some("only"));
        assert_eq!(victim(Vec::<((), Standing)>::new()), None);
    }

    #[test]
    fn a_request_head_is_read_up_to_8_kib() {
        let endless = vec![b'a'; 3 * MAX_REQUEST];
        let mut head = Vec::new();
        assert!(read_head(&mut &endless[..], &mut head).unwrap());
        assert_eq!(head.len(), MAX_REQUEST);
        assert!(head.capacity() <= MAX_REQUEST, "{} bytes held", head.capacity());
        // Done at the blank line; a client that stops sending is answered with what it sent.
        let mut head = Vec::new();
        assert!(read_head(&mut &b"GET /metrics HTTP/1.0\r\n\r\n"[..], &mut head).unwrap());
        let mut head = Vec::new();
        assert!(read_head(&mut &b"GET /met"[..], &mut head).unwrap());
        assert_eq!(head, b"GET /met");
    }

    fn endpoint(max: usize) -> Endpoint {
        Endpoint::bind(SocketAddr::from(([127, 0, 0, 1], 0)), max, DEADLINE).unwrap()
    }

    /// Turns `endpoint` until `done` holds, for at most `limit`.
    fn turn_until(
        endpoint: &mut Endpoint,
        render: &dyn Fn(&mut String),
        limit: Duration,
        done: impl Fn(&Endpoint) -> bool,
    ) {
        let start = Instant::now();
        while !done(endpoint) {
            assert!(start.elapsed() < limit, "not within {limit:?}");
            endpoint.turn(Duration::from_millis(5), render);
        }
    }

    /// Turns `endpoint` until `client` has read an answer to its end; fails unless that took
    /// less than `limit` and the answer is whole (its `Content-Length`).
    fn answer_within(
        endpoint: &mut Endpoint,
        render: &dyn Fn(&mut String),
        client: &mut Client,
        limit: Duration,
    ) -> String {
        client.set_nonblocking(true).unwrap();
        let start = Instant::now();
        let (mut reply, mut chunk) = (Vec::new(), vec![0u8; 64 << 10]);
        'answer: loop {
            assert!(start.elapsed() < limit, "{} bytes of an answer in {limit:?}", reply.len());
            endpoint.turn(Duration::from_millis(5), render);
            loop {
                match client.read(&mut chunk) {
                    Ok(0) => break 'answer,
                    Ok(n) => reply.extend_from_slice(&chunk[..n]),
                    Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                    Err(e) => panic!("after {} bytes: {e}", reply.len()),
                }
            }
        }
        let reply = String::from_utf8(reply).unwrap();
        let (head, body) = reply.split_once("\r\n\r\n").expect("a head");
        let length = head.lines().find_map(|l| l.strip_prefix("Content-Length: ")).unwrap();
        assert_eq!(body.len(), length.parse::<usize>().unwrap(), "a partial answer");
        reply
    }

    const SCRAPE: &[u8] = b"GET /metrics HTTP/1.0\r\n\r\n";

    #[test]
    fn a_scrape_is_answered_while_500_idle_connections_come_and_go() {
        let render = |out: &mut String| out.push_str("torq_up 1\n");
        let mut endpoint = endpoint(MAX_CONNECTIONS);
        let mut idle = Vec::new();
        for i in 0..500 {
            let mut client = Client::connect(endpoint.bound).unwrap();
            if i % 2 == 1 {
                let _ = client.write_all(b"GET /metr");
            }
            idle.push(client);
            endpoint.turn(Duration::ZERO, &render);
            assert!(endpoint.connections.len() <= MAX_CONNECTIONS);
        }
        let mut scraper = Client::connect(endpoint.bound).unwrap();
        scraper.write_all(SCRAPE).unwrap();
        let reply = answer_within(&mut endpoint, &render, &mut scraper, DEADLINE);
        assert!(
            reply.starts_with("HTTP/1.1 200 OK\r\n") && reply.ends_with("\r\n\r\ntorq_up 1\n"),
            "{reply}"
        );
        assert!(endpoint.connections.len() <= MAX_CONNECTIONS);
        // Every idle one goes at its deadline.
        turn_until(&mut endpoint, &render, 2 * DEADLINE, |e| e.connections.is_empty());
    }

    /// Whether the relay has closed `client`'s connection (without reading it).
    fn closed(client: &mut Client) -> bool {
        client.set_read_timeout(Some(Duration::from_millis(200))).unwrap();
        match client.read(&mut [0u8; 64]) {
            Ok(0) => true,
            Err(e) => e.kind() == io::ErrorKind::ConnectionReset,
            Ok(_) => false,
        }
    }

    #[test]
    fn at_the_bound_a_new_connection_takes_the_place_of_the_oldest_idle_one() {
        let render = |out: &mut String| out.push_str("torq_up 1\n");
        let mut endpoint = endpoint(4);
        let mut held: Vec<Client> = (0..4).map(|_| Client::connect(endpoint.bound).unwrap()).collect();
        turn_until(&mut endpoint, &render, DEADLINE, |e| e.connections.len() == 4);
        // The oldest has sent half a request: it has still not completed one.
        held[0].write_all(b"GET /metr").unwrap();
        let mut scraper = Client::connect(endpoint.bound).unwrap();
        scraper.write_all(SCRAPE).unwrap();
        let reply = answer_within(&mut endpoint, &render, &mut scraper, DEADLINE);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"), "{reply}");
        assert!(closed(&mut held[0]), "the oldest idle connection is closed");
        for client in &mut held[1..] {
            assert!(!closed(client), "only one connection makes room");
        }
        assert_eq!(endpoint.connections.len(), 3);
    }

    #[test]
    fn a_reader_that_never_reads_a_big_answer_holds_up_no_one() {
        let big = "x".repeat(8 << 20);
        let render = |out: &mut String| out.push_str(&big);
        let mut endpoint = endpoint(MAX_CONNECTIONS);
        let mut slow = Client::connect(endpoint.bound).unwrap();
        // Locked small, so the kernel cannot take the answer off the relay's hands.
        rustix::net::sockopt::set_socket_recv_buffer_size(&slow, 4096).unwrap();
        slow.write_all(SCRAPE).unwrap();
        let stuck = |e: &Endpoint| {
            e.connections.iter().any(|(_, c)| {
                matches!(&c.state, State::Writing { reply, written } if *written > 0 && *written < reply.len())
            })
        };
        turn_until(&mut endpoint, &render, DEADLINE / 2, stuck);
        let mut scraper = Client::connect(endpoint.bound).unwrap();
        scraper.write_all(SCRAPE).unwrap();
        let reply = answer_within(&mut endpoint, &render, &mut scraper, DEADLINE);
        assert!(reply.starts_with("HTTP/1.1 200 OK\r\n"));
        assert!(stuck(&endpoint), "the slow reader's answer is kept, unsent part and all");
        // Until its deadline, then it is closed.
        turn_until(&mut endpoint, &render, 2 * DEADLINE, |e| e.connections.is_empty());
        drop(slow);
    }
}
