//! `torq-perf naive-relay`: the floor a relay is measured against. One thread copies bytes
//! from one publisher to every subscriber: blocking `read()` of up to 64 KiB, then
//! `write_all` of the same bytes to each subscriber in turn; no framing, no checks.
//!
//! Until the publisher shows up, the thread waits on the listener and the connections with
//! `mio`: a connection that sends any byte is the publisher, every other one is a subscriber
//! (a connection that closes first is forgotten). Connections are accepted in the order they
//! were made, so every subscriber connected before the publisher is in place before its first
//! byte is forwarded. Later connections are never accepted. The relay exits, closing every
//! subscriber, when the publisher disconnects.

use std::io::{ErrorKind, Read, Write};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;

use mio::net::UnixListener;
use mio::{Events, Interest, Poll, Token};

/// `torq-perf naive-relay`.
#[derive(Debug, clap::Args)]
pub struct NaiveArgs {
    /// The socket to listen on (removed on exit).
    #[arg(long, value_name = "PATH")]
    socket: PathBuf,
    /// Core to pin the relay to, or `none`.
    #[arg(long, default_value = "none")]
    core: String,
}

const LISTENER: Token = Token(usize::MAX);

/// Runs the naive relay until its publisher disconnects.
pub fn run(args: &NaiveArgs) -> Result<(), String> {
    crate::pin(&args.core)?;
    let socket = args.socket.display();
    let mut listener = UnixListener::bind(&args.socket).map_err(|e| format!("bind {socket}: {e}"))?;
    let result = relay(&mut listener).map_err(|e| format!("naive relay on {socket}: {e}"));
    _ = std::fs::remove_file(&args.socket);
    result
}

fn relay(listener: &mut UnixListener) -> std::io::Result<()> {
    let mut buf = vec![0u8; 64 * 1024];
    let (mut publisher, first, mut subscribers) = wait_for_publisher(listener, &mut buf)?;
    let mut forward = |bytes: &[u8]| subscribers.retain_mut(|subscriber| subscriber.write_all(bytes).is_ok());
    forward(&buf[..first]);
    loop {
        match publisher.read(&mut buf) {
            Ok(0) => return Ok(()),
            Ok(n) => forward(&buf[..n]),
            Err(e) if e.kind() == ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
}

/// Accepts connections until one sends bytes; returns it (blocking), how many bytes of `buf`
/// it sent, and the other connections (blocking) as the subscribers.
fn wait_for_publisher(
    listener: &mut UnixListener,
    buf: &mut [u8],
) -> std::io::Result<(UnixStream, usize, Vec<UnixStream>)> {
    let mut poll = Poll::new()?;
    poll.registry().register(listener, LISTENER, Interest::READABLE)?;
    let mut events = Events::with_capacity(64);
    let mut connections: Vec<Option<mio::net::UnixStream>> = Vec::new();
    let (publisher, first) = 'wait: loop {
        match poll.poll(&mut events, None) {
            Err(e) if e.kind() == ErrorKind::Interrupted => continue,
            result => result?,
        }
        // Accept everything pending first: connections queue in the order they were made.
        loop {
            match listener.accept() {
                Ok((mut stream, _)) => {
                    poll.registry().register(&mut stream, Token(connections.len()), Interest::READABLE)?;
                    connections.push(Some(stream));
                }
                Err(e) if e.kind() == ErrorKind::WouldBlock => break,
                Err(e) if e.kind() == ErrorKind::Interrupted => {}
                Err(e) => return Err(e),
            }
        }
        for event in &events {
            let Some(slot) = connections.get_mut(event.token().0) else { continue };
            let Some(stream) = slot else { continue };
            match stream.read(buf) {
                Ok(0) => *slot = None,
                Ok(n) => break 'wait (slot.take(), n),
                Err(e) if matches!(e.kind(), ErrorKind::WouldBlock | ErrorKind::Interrupted) => {}
                Err(_) => *slot = None,
            }
        }
    };
    let blocking = |stream: mio::net::UnixStream| {
        let stream = UnixStream::from(stream);
        stream.set_nonblocking(false).map(|()| stream)
    };
    let subscribers = connections.into_iter().flatten().map(blocking).collect::<Result<_, _>>()?;
    let publisher = blocking(publisher.expect("taken from a live slot"))?;
    Ok((publisher, first, subscribers))
}
