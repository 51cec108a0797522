//! The legacy relays' files start `relay --config` unchanged but for their paths: the
//! production files and the template (`tests/legacy/`), whose `[logging]` table is honoured
//! (JSON lines at its level, in the file it names), and the development files
//! (`tests/legacy/development/`, no `[logging]`: text on stderr). Their `transport.buffer_size`
//! (the socket buffers) and `performance.buffer_size` (the read buffer) differ on purpose.

mod util;

use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::Command;

use torq::protocol::{Crc, OPTION_NOTICES, RelayDomain, Role, Subscribe};
use util::*;

const RELAY: &str = env!("CARGO_BIN_EXE_relay");

/// Every legacy file, relative to `tests/legacy` (a unit test in `src/cli/tests.rs` checks
/// that the directories hold these and no others).
const FILES: [&str; 7] = [
    "market_data.toml",
    "signal.toml",
    "execution.toml",
    "template.toml",
    "development/market_data.toml",
    "development/signal.toml",
    "development/execution.toml",
];

/// A legacy file started by `relay --config`, and the file as it ran.
struct Started {
    relay: Relay,
    file: toml::Table,
}

impl Started {
    /// A string value of the file, e.g. `("logging", "file")`.
    fn value(&self, table: &str, key: &str) -> Option<&str> {
        self.file.get(table)?.get(key)?.as_str()
    }

    /// An integer value of the file.
    fn integer(&self, table: &str, key: &str) -> Option<i64> {
        self.file.get(table)?.get(key)?.as_integer()
    }
}

/// Starts `relay --config` on `tests/legacy/<name>` with its `/var/run/torq`, `/tmp/torq` and
/// `/var/log/torq` paths moved into a private directory, and without flags, so that the file's
/// `[logging]` applies.
fn start(name: &str) -> Started {
    let dir = temp_dir("legacy");
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/legacy").join(name);
    let text = std::fs::read_to_string(legacy).unwrap();
    let (run, log) = (dir.join("run"), dir.join("log"));
    std::fs::create_dir(&log).unwrap();
    let text = text
        .replace("/var/run/torq", run.to_str().unwrap())
        .replace("/tmp/torq", run.to_str().unwrap())
        .replace("/var/log/torq", log.to_str().unwrap());
    let file: toml::Table = text.parse().unwrap_or_else(|e| panic!("{name}: {e}"));
    let socket = PathBuf::from(file["transport"]["path"].as_str().unwrap());
    let path = dir.join(Path::new(name).file_name().unwrap());
    std::fs::write(&path, &text).unwrap();
    let relay = Relay::spawn(RELAY, &["--config", path.to_str().unwrap()], socket, dir);
    Started { relay, file }
}

/// A publisher with notices: once its Subscribe is acknowledged, the relay has accepted it.
fn publisher(relay: &Relay) -> Client {
    let mut client = relay.connect();
    client.subscribe(&Subscribe { role: Role::Publish, options: OPTION_NOTICES, filters: vec![] });
    client
}

/// A frame of another domain than the relay's: rejected, and the rejection logged at warn.
fn foreign_frame(started: &Started) -> Vec<u8> {
    let domain = match started.integer("relay", "domain") {
        Some(1) => RelayDomain::Signal,
        _ => RelayDomain::MarketData,
    };
    build(domain, 7, 1, &[(200, b"x")], Crc::Compute)
}

/// How verbose a level is (error 1 … trace 5).
fn verbosity(level: &str) -> usize {
    let levels = ["error", "warn", "info", "debug", "trace"];
    1 + levels.iter().position(|l| l.eq_ignore_ascii_case(level)).unwrap_or_else(|| panic!("level {level}"))
}

#[test]
fn every_legacy_file_starts_the_relay_which_logs_as_it_says_and_stops_cleanly() {
    for name in FILES {
        let mut started = start(name);
        let mut legacy = started.relay.connect();
        legacy.send(&LEGACY_HELLO);
        let mut publisher = publisher(&started.relay);
        let frame = foreign_frame(&started);
        publisher.send(&frame);
        let (code, sequence, reason) = publisher.notice();
        assert_eq!((code, sequence), (2, 1), "{name}: {reason}");
        let relay = &mut started.relay;
        let status = relay.terminate();
        assert!(status.success(), "{name}: {status}\n{}", relay.log());

        let stderr = relay.log();
        let Some(log_file) = started.value("logging", "file") else {
            // No [logging]: text on stderr at info.
            assert!(stderr.contains(" INFO ") && stderr.contains(" WARN "), "{name}: {stderr}");
            continue;
        };
        // The file's [logging]: every line of the named file is a JSON object at the file's
        // level or a less verbose one, with the rejection at warn; nothing on stderr.
        let level = started.value("logging", "level").unwrap();
        let log = std::fs::read_to_string(log_file).unwrap_or_else(|e| panic!("{name}: {log_file}: {e}"));
        let levels: Vec<String> = log
            .lines()
            .map(|line| {
                let value: serde_json::Value =
                    serde_json::from_str(line).unwrap_or_else(|e| panic!("{name}: not JSON ({e}): {line}"));
                value["level"].as_str().unwrap_or_else(|| panic!("{name}: no level: {line}")).to_string()
            })
            .collect();
        assert!(levels.iter().any(|l| l == "WARN"), "{name}: the rejection is not in the log:\n{log}");
        assert!(levels.iter().all(|l| verbosity(l) <= verbosity(level)), "{name}: above {level}:\n{log}");
        // At info, the start is logged too: the level is the file's, not a fixed warn.
        assert_eq!(
            levels.iter().any(|l| l == "INFO"),
            verbosity(level) >= verbosity("info"),
            "{name}:\n{log}"
        );
        assert_eq!(stderr, "", "{name}: stderr");
    }
}

/// The send and receive buffer sizes of the relay's end of `client`'s connection, as
/// `ss -x -m` shows them (`tb`, `rb`): that end is the socket whose peer is `client`'s.
fn relay_side_buffers(client: &UnixStream) -> (usize, usize) {
    let inode = rustix::fs::fstat(client).unwrap().st_ino.to_string();
    let output = Command::new("ss")
        .args(["-x", "-m", "-n", "-a"])
        .output()
        .expect("`ss` (iproute2) shows the sockets' buffers: install iproute2");
    assert!(output.status.success(), "ss: {output:?}");
    let text = String::from_utf8(output.stdout).unwrap();
    // u_str ESTAB 0 0 <path> <inode> * <peer inode> skmem:(r0,rb…,t0,tb…,…)
    let line = text
        .lines()
        .find(|line| {
            let fields: Vec<&str> = line.split_whitespace().collect();
            fields
                .iter()
                .position(|f| f.starts_with("skmem:"))
                .is_some_and(|i| i > 0 && fields[i - 1] == inode)
        })
        .unwrap_or_else(|| panic!("no socket whose peer is inode {inode} in:\n{text}"));
    let skmem = line.split_whitespace().find(|f| f.starts_with("skmem:(")).unwrap();
    let field = |key: &str| -> usize {
        skmem
            .trim_start_matches("skmem:(")
            .trim_end_matches(')')
            .split(',')
            .find_map(|f| f.strip_prefix(key).and_then(|n| n.parse().ok()))
            .unwrap_or_else(|| panic!("no {key} in {skmem}"))
    };
    (field("tb"), field("rb"))
}

/// What this kernel gives a Unix stream socket for `size` asked (Linux doubles it and caps
/// it at twice net.core.wmem_max / rmem_max), or by default (`None`).
fn kernel_gives(size: Option<i64>) -> (usize, usize) {
    use rustix::net::sockopt;
    let (socket, _peer) = UnixStream::pair().unwrap();
    if let Some(size) = size {
        sockopt::set_socket_send_buffer_size(&socket, size as usize).unwrap();
        sockopt::set_socket_recv_buffer_size(&socket, size as usize).unwrap();
    }
    (sockopt::socket_send_buffer_size(&socket).unwrap(), sockopt::socket_recv_buffer_size(&socket).unwrap())
}

/// `transport.buffer_size` sets SO_SNDBUF and SO_RCVBUF of the connections the relay
/// accepts; a file without it leaves the kernel's default.
#[test]
fn transport_buffer_size_sets_the_accepted_sockets_buffers() {
    for name in FILES {
        let mut started = start(name);
        let asked = started.integer("transport", "buffer_size");
        let client = publisher(&started.relay);
        let (send, receive) = relay_side_buffers(&client.stream);
        assert_eq!((send, receive), kernel_gives(asked), "{name}: transport.buffer_size = {asked:?}");
        if let Some(asked) = asked {
            assert!(send >= asked as usize && receive >= asked as usize, "{name}: {send} {receive}");
        }
        assert!(started.relay.terminate().success(), "{name}");
    }
}

#[test]
fn flags_win_over_the_logging_table() {
    let dir = temp_dir("legacy-flags");
    let socket = dir.join("relay.sock");
    let log = dir.join("relay-file.log");
    let file = dir.join("relay.toml");
    std::fs::write(
        &file,
        format!(
            "[relay]\ndomain = 2\n[transport]\npath = {socket:?}\n\
             [logging]\nlevel = \"error\"\nformat = \"text\"\nfile = {log:?}\n"
        ),
    )
    .unwrap();
    // The file says error and text; -l info and --json-logs log the start as JSON.
    let args = ["--config", file.to_str().unwrap(), "-l", "info", "--json-logs"];
    let mut relay = Relay::spawn(RELAY, &args, socket, dir);
    assert!(relay.terminate().success());
    let text = std::fs::read_to_string(&log).unwrap();
    let levels: Vec<String> = text
        .lines()
        .map(|line| {
            serde_json::from_str::<serde_json::Value>(line).unwrap()["level"].as_str().unwrap().to_string()
        })
        .collect();
    assert!(levels.iter().any(|level| level == "INFO"), "{text}");
}
