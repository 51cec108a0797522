//! End-to-end use of `torq::runtime::socket`: bind, hand the listener to mio, accept a client,
//! read its credentials, and clean up through the guard.

use std::fs;
use std::io;
use std::os::unix::fs::{FileTypeExt, PermissionsExt};
use std::os::unix::net::UnixStream;
use std::path::PathBuf;
use std::time::Duration;

use mio::{Events, Interest, Poll, Token};
use torq::runtime::socket::{self, DEFAULT_PARENT_MODE, DEFAULT_SOCKET_MODE, SocketError};

/// A fresh, uniquely named directory under the system temp dir, removed on drop.
struct TempDir(PathBuf);

impl TempDir {
    fn new(name: &str) -> TempDir {
        let dir = std::env::temp_dir().join(format!("torq-socket-it-{}-{name}", std::process::id()));
        let _ = fs::remove_dir_all(&dir);
        fs::create_dir(&dir).expect("create temp dir");
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).expect("chmod temp dir");
        TempDir(dir)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = fs::remove_dir_all(&self.0);
    }
}

#[test]
fn listener_moves_into_mio_and_guard_cleans_up() {
    let tmp = TempDir::new("mio");
    let path = tmp.0.join("torq/market_data.sock");
    let bound = socket::bind(&path, DEFAULT_SOCKET_MODE, DEFAULT_PARENT_MODE).expect("bind");
    assert_eq!(bound.path(), path.as_path());
    let (std_listener, guard) = bound.into_parts();

    let mut listener = mio::net::UnixListener::from_std(std_listener);
    let mut poll = Poll::new().expect("poll");
    poll.registry().register(&mut listener, Token(0), Interest::READABLE).expect("register");

    // While the guard lives, a second relay is refused.
    let err = socket::bind(&path, DEFAULT_SOCKET_MODE, DEFAULT_PARENT_MODE).expect_err("second relay");
    assert!(matches!(err, SocketError::LockHeld { .. }), "{err}");

    let _client = UnixStream::connect(&path).expect("connect");
    let mut events = Events::with_capacity(8);
    let stream = loop {
        poll.poll(&mut events, Some(Duration::from_secs(5))).expect("poll");
        assert!(!events.is_empty(), "timed out waiting for the connection");
        match listener.accept() {
            Ok((stream, _)) => break stream,
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => continue,
            Err(e) => panic!("accept: {e}"),
        }
    };
    drop(stream);
    drop(listener);
    assert!(fs::symlink_metadata(&path).expect("still bound").file_type().is_socket());
    drop(guard);
    assert!(fs::symlink_metadata(&path).is_err(), "guard removed the socket");

    // And the path can be bound again.
    socket::bind(&path, DEFAULT_SOCKET_MODE, DEFAULT_PARENT_MODE).expect("rebind");
}
