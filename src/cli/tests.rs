//! Resolution from defaults, files and flags, end to end.

use std::sync::atomic::{AtomicUsize, Ordering};

use super::*;
use crate::config::{Levels, Logging};
use crate::protocol::ChecksumLevel;
use crate::relays::{ExecutionLogic, MarketDataLogic, SignalLogic};

mod flags;

/// Writes `text` to a fresh file under the temp directory, loads it and removes it.
fn load(text: &str) -> Result<(EngineConfig, RelayConfig), ConfigError> {
    let path = temp_file(text);
    let result = ConfigFile::load(&path).and_then(|file| resolve_file(&file, None));
    std::fs::remove_file(&path).unwrap();
    result
}

fn temp_file(text: &str) -> PathBuf {
    static NEXT: AtomicUsize = AtomicUsize::new(0);
    let n = NEXT.fetch_add(1, Ordering::Relaxed);
    let path = std::env::temp_dir().join(format!("torq-config-{}-{n}.toml", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

/// A file's relays, as `relay --config` resolves them.
fn resolve(path: &Path) -> Result<(EngineConfig, Vec<RelayConfig>), ConfigError> {
    let args = RelayArgs::try_parse_from(["relay", "-c", path.to_str().unwrap()]).unwrap();
    args.resolve(&args.load()?)
}

fn example(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("config").join(name)
}

/// The setting named by an `Invalid` error.
fn setting(error: ConfigError) -> String {
    match error {
        ConfigError::Invalid { setting, .. } => setting,
        other => panic!("not Invalid: {other:?}"),
    }
}

const MINIMAL: &str = "[relay]\ndomain = 1\n";

#[test]
fn examples_load_as_the_domain_defaults() {
    for (file, domain, socket, policy) in [
        ("market_data.toml", RelayDomain::MarketData, "/tmp/torq/market_data.sock", Policy::Drop),
        ("signal.toml", RelayDomain::Signal, "/tmp/torq/signals.sock", Policy::Disconnect),
        ("execution.toml", RelayDomain::Execution, "/tmp/torq/execution.sock", Policy::Block),
    ] {
        let (engine, relays) = resolve(&example(file)).unwrap();
        let [relay] = relays.as_slice() else { panic!("{file}: one relay expected") };
        assert_eq!((relay.domain, relay.socket.as_path(), relay.policy), (domain, Path::new(socket), policy));
        // The examples spell out every default.
        let mut expected = RelayConfig::new(&defaults_for(domain).unwrap());
        if domain == RelayDomain::Execution {
            expected.audit_file = Some(PathBuf::from("/tmp/torq/execution.audit"));
        }
        assert_eq!(*relay, expected, "{file}");
        assert_eq!(engine, EngineConfig::default(), "{file}");
    }
}

#[test]
fn legacy_only_file_loads() {
    let (engine, relay) = load(
        r#"
        [relay]
        domain = 3
        name = "execution_relay"
        description = "legacy execution relay"

        [transport]
        mode = "unix_socket"
        path = "/tmp/legacy/execution.sock"
        address = "127.0.0.1"
        port = 9003
        use_topology = true

        [validation]
        checksum = true
        audit = true
        strict = true
        max_message_size = 65536

        [performance]
        buffer_size = 65536
        max_connections = 100
        batch_size = 64
        target_throughput = 100000
        monitoring = true

        [topics]
        default = "execution"
        available = ["orders", "fills"]
        [topics.routing]
        orders = 3
        "#,
    )
    .unwrap();
    assert_eq!(relay.domain, RelayDomain::Execution);
    assert_eq!(relay.name, "execution_relay");
    assert_eq!(relay.socket, Path::new("/tmp/legacy/execution.sock"));
    assert_eq!(relay.levels.checksum, ChecksumLevel::Required);
    assert!(relay.levels.strict_types && relay.levels.audit);
    assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/tmp/legacy/execution.audit")));
    assert_eq!(relay.max_message_size, 65536);
    assert_eq!(relay.policy, Policy::Block);
    assert_eq!((engine.read_budget, engine.max_connections), (65536, 100));
    assert_eq!(engine.socket_buffer, None);
}

#[test]
fn domains_by_number_and_name() {
    for (value, domain) in [
        ("1", RelayDomain::MarketData),
        ("2", RelayDomain::Signal),
        ("3", RelayDomain::Execution),
        ("\"market_data\"", RelayDomain::MarketData),
        ("\"market-data\"", RelayDomain::MarketData),
        ("\"MarketData\"", RelayDomain::MarketData),
        ("\"signals\"", RelayDomain::Signal),
        ("\"signal\"", RelayDomain::Signal),
        ("\"execution\"", RelayDomain::Execution),
    ] {
        let (_, relay) = load(&format!("[relay]\ndomain = {value}\n")).unwrap();
        assert_eq!(relay.domain, domain, "{value}");
    }
    for value in ["0", "4", "\"system\"", "true"] {
        let error = load(&format!("[relay]\ndomain = {value}\n")).unwrap_err();
        assert_eq!(setting(error), "relay.domain", "{value}");
    }
    assert_eq!(setting(load("[transport]\nmode = \"unix_socket\"\n").unwrap_err()), "relay.domain");
}

#[test]
fn unknown_keys_are_named() {
    for (text, key) in [
        ("[relay]\ndomain = 1\ncolour = \"red\"\n", "relay.colour"),
        ("[relay]\ndomain = 1\n[performance]\nturbo = true\n", "performance.turbo"),
        ("[relay]\ndomain = 1\n[engine]\nqueue_bytes = 1\n", "engine.queue_bytes"),
        ("[relay]\ndomain = 1\n[network]\nx = 1\n", "network"),
        ("verbose = true\n[relay]\ndomain = 1\n", "verbose"),
    ] {
        match load(text).unwrap_err() {
            ConfigError::UnknownKey { file, key: named } => {
                assert!(file.ends_with(".toml"), "{file}");
                assert_eq!(named, key);
            }
            other => panic!("{text}: {other:?}"),
        }
    }
}

#[test]
fn only_unix_sockets() {
    let error = load("[relay]\ndomain = 2\n[transport]\nmode = \"tcp\"\n").unwrap_err();
    let ConfigError::Invalid { file: Some(file), setting, value, allowed } = &error else {
        panic!("not Invalid in a file: {error:?}");
    };
    assert!(file.ends_with(".toml"), "{file}");
    assert_eq!((setting.as_str(), value.as_str()), ("transport.mode", "\"tcp\""));
    assert!(allowed.contains("unix_socket"), "{allowed}");
    // The error names the file, then the key.
    assert_eq!(
        error.to_string(),
        format!(
            "{file}: transport.mode = \"tcp\": only \"unix_socket\" (the relay serves Unix stream sockets)"
        )
    );
}

#[test]
fn sizes_are_checked() {
    let error = load("[relay]\ndomain = 1\nqueue_bytes = 200000\n").unwrap_err();
    assert_eq!(setting(error), "relay.queue_bytes");
    let error = load("[relay]\ndomain = 1\n[validation]\nmax_message_size = 1000\n").unwrap_err();
    assert_eq!(setting(error), "validation.max_message_size");
    let (_, relay) = load("[relay]\ndomain = 1\n[validation]\nmax_message_size = 1065\n").unwrap();
    assert_eq!(relay.max_message_size, 1065);
    for (table, size) in [("performance", "100"), ("performance", "1073741824"), ("transport", "0")] {
        let error = load(&format!("{MINIMAL}[{table}]\nbuffer_size = {size}\n")).unwrap_err();
        assert_eq!(setting(error), format!("{table}.buffer_size"), "{size}");
    }
    // The error names the file, the key, the value and what is allowed.
    let error = load(&format!("{MINIMAL}[transport]\nbuffer_size = 1073741824\n")).unwrap_err();
    let ConfigError::Invalid { file: Some(file), .. } = &error else { panic!("{error:?}") };
    assert!(
        error.to_string().starts_with(&format!(
            "{file}: transport.buffer_size = 1073741824: the send and receive buffer size of every \
             connection (SO_SNDBUF, SO_RCVBUF) in bytes: 4096 to 268435456"
        )),
        "{error}"
    );
    let error = load("[relay]\ndomain = 1\n[performance]\nmax_connections = 0\n").unwrap_err();
    assert_eq!(setting(error), "performance.max_connections");
}

#[test]
fn wrong_types_name_the_key() {
    for (extra, key) in [
        ("[relay]\nqueue_bytes = \"big\"", "relay.queue_bytes"),
        ("[relay]\nqueue_bytes = -1", "relay.queue_bytes"),
        ("[relay]\nslow_consumer = \"queue\"", "relay.slow_consumer"),
        ("[relay]\nsocket_mode = \"0999\"", "relay.socket_mode"),
        ("[relay]\nsocket_mode = 0o1777", "relay.socket_mode"),
        ("[relay]\nparent_mode = true", "relay.parent_mode"),
        ("[relay]\nparent_mode = \"0777\"", "relay.parent_mode"),
        ("[relay]\nsocket_mode = \"0662\"", "relay.socket_mode"),
        ("[relay]\nconnect_uids = [-1]", "relay.connect_uids"),
        ("[relay]\npublisher_uids = []", "relay.publisher_uids"),
        ("[relay]\naudit_file = \"\"", "relay.audit_file"),
        ("[relay]\nname = 7", "relay.name"),
        ("[transport]\npath = 1", "transport.path"),
        ("[transport]\nuse_topology = \"yes\"", "transport.use_topology"),
        ("[validation]\nchecksum = 1", "validation.checksum"),
        ("[validation]\nstrict = \"yes\"", "validation.strict"),
        ("[engine]\ncores = [0, 0]", "engine.cores"),
        ("[engine]\ncores = \"0,x\"", "engine.cores"),
        ("[engine]\ncores = []", "engine.cores"),
        ("[engine]\ncores = 2", "engine.cores"),
        ("[engine]\nstall_timeout_ms = 0", "engine.stall_timeout_ms"),
        ("[engine]\nmetrics_interval = 1.5", "engine.metrics_interval"),
        ("[engine]\nmetrics_addr = \"localhost\"", "engine.metrics_addr"),
        ("[engine]\nmetrics_addr = \"0.0.0.0:9100\"", "engine.metrics_addr"),
        ("relay = 1", "relay"),
    ] {
        // `[relay]` comes first in the text; a second `[relay]` header would be a TOML error.
        let text = match extra.strip_prefix("[relay]\n") {
            Some(rest) => format!("[relay]\ndomain = 1\n{rest}\n"),
            None if extra.starts_with('[') => format!("{MINIMAL}{extra}\n"),
            None => format!("{extra}\n"),
        };
        let error = load(&text).unwrap_err();
        assert!(matches!(&error, ConfigError::Invalid { file: Some(_), .. }), "{text}: {error:?}");
        assert_eq!(setting(error), key, "{text}");
    }
}

#[test]
fn new_keys_apply() {
    let (engine, relay) = load(
        r#"
        [relay]
        domain = "signal"
        slow_consumer = "block"
        queue_bytes = 1048576
        socket_mode = "0600"
        parent_mode = 0o700
        connect_uids = [1000, 1001]
        connect_gids = [100]
        publisher_uids = [1000]
        audit_file = "/var/tmp/signal.audit"
        audit_fsync_ms = 250

        [validation]
        audit = true
        sequence = true
        close_on_reject = true
        checksum = "off"

        [engine]
        cores = [2, 3]
        stall_timeout_ms = 1500
        flush_deadline_ms = 0
        metrics_interval = 10
        metrics_addr = "127.0.0.1:9100"
        "#,
    )
    .unwrap();
    assert_eq!((relay.policy, relay.queue_bytes), (Policy::Block, 1 << 20));
    assert_eq!((relay.socket_mode, relay.parent_mode), (0o600, 0o700));
    assert_eq!(relay.connect_uids, Some(vec![1000, 1001]));
    assert_eq!(relay.connect_gids, Some(vec![100]));
    assert_eq!(relay.publisher_uids, Some(vec![1000]));
    assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/var/tmp/signal.audit")));
    assert_eq!(relay.audit_fsync, Duration::from_millis(250));
    assert_eq!(
        relay.levels,
        Levels {
            checksum: ChecksumLevel::Off,
            sequence: true,
            audit: true,
            close_on_reject: true,
            strict_types: false
        }
    );
    assert_eq!(engine.cores, Cores::Pinned(vec![2, 3]));
    assert_eq!((engine.stall_timeout, engine.flush_deadline), (Duration::from_millis(1500), Duration::ZERO));
    assert_eq!(engine.metrics_interval, Some(Duration::from_secs(10)));
    assert_eq!(engine.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));

    let (engine, _) =
        load("[relay]\ndomain = 1\n[engine]\ncores = \"0, 1\"\nmetrics_interval = 0\n").unwrap();
    assert_eq!((engine.cores, engine.metrics_interval), (Cores::Pinned(vec![0, 1]), None));
    assert_eq!(engine.idle, crate::config::Idle::Block, "the default");
}

#[test]
fn idle_strategies_from_the_file_and_the_flags() {
    use crate::config::Idle;
    for (name, idle) in [("block", Idle::Block), ("spin", Idle::Spin), ("backoff", Idle::Backoff)] {
        let (engine, _) = load(&format!("{MINIMAL}[engine]\nidle = \"{name}\"\n")).unwrap();
        assert_eq!(engine.idle, idle);
        let args = DomainArgs::try_parse_from(["market_data_relay", "--idle", name]).unwrap();
        assert_eq!(args.resolve::<crate::relays::MarketDataLogic>().unwrap().0.idle, idle);
    }
    assert_eq!(setting(load(&format!("{MINIMAL}[engine]\nidle = \"nap\"\n")).unwrap_err()), "engine.idle");
    assert!(DomainArgs::try_parse_from(["market_data_relay", "--idle", "nap"]).is_err());
}

#[test]
fn strict_wins_over_checksum_in_any_order() {
    for validation in ["checksum = false\nstrict = true", "strict = true\nchecksum = false"] {
        let (_, relay) = load(&format!("{MINIMAL}[validation]\n{validation}\n")).unwrap();
        assert_eq!(relay.levels.checksum, ChecksumLevel::Required);
        assert!(relay.levels.strict_types);
    }
    let (_, relay) = load(&format!("{MINIMAL}[validation]\nchecksum = true\nstrict = false\n")).unwrap();
    assert_eq!((relay.levels.checksum, relay.levels.strict_types), (ChecksumLevel::Verify, false));
}

#[test]
fn unreadable_or_malformed_files() {
    let missing = std::env::temp_dir().join(format!("torq-config-{}-missing.toml", std::process::id()));
    assert!(matches!(ConfigFile::load(&missing), Err(ConfigError::File { .. })));
    assert!(matches!(load("[relay\ndomain = 1\n"), Err(ConfigError::File { .. })));
}

/// `load` is `parse` of the file's text named by its path: the same file, the same errors.
#[test]
fn text_parses_as_its_file_loads() {
    for text in
        [MINIMAL, "[relay\ndomain = 1\n", "[relay]\ndomain = 1\ncolour = 2\n", "[relay]\ndomain = 9\n"]
    {
        let path = temp_file(text);
        let file = path.display().to_string();
        let loaded = ConfigFile::load(&path).map(|f| (f.domain(), f.path().to_string()));
        std::fs::remove_file(&path).unwrap();
        let parsed = ConfigFile::parse(text, &file).map(|f| (f.domain(), f.path().to_string()));
        assert_eq!(loaded, parsed, "{text:?}");
        if let Err(error) = parsed {
            assert!(error.to_string().starts_with(&format!("{file}: ")), "{error}");
        }
    }
    let error = ConfigFile::parse("[relay]\ndomain = 1\ncolour = 2\n", "given.toml").unwrap_err();
    assert_eq!(error, ConfigError::UnknownKey { file: "given.toml".into(), key: "relay.colour".into() });
}

/// Found by the `config` fuzz target (fuzz/artifacts/config, minimized): an integer outside
/// i64 is not TOML, but the loader reads values lazily and reported the key beside it as
/// unknown. Worse, the same value where the relay ignores values (`[topics]`, `description`)
/// was accepted. A file must be TOML as a whole before its keys are read.
#[test]
fn fuzz_crash_an_integer_out_of_range_is_not_toml() {
    let crash: &[u8] = b"_=22222222222222222222";
    let text = std::str::from_utf8(crash).unwrap();
    let error = ConfigFile::parse(text, "crash.toml").unwrap_err();
    assert!(matches!(&error, ConfigError::File { file, .. } if file == "crash.toml"), "{error:?}");
    for ignored in [
        format!("{MINIMAL}[topics]\ncleanup_interval_ms = 99999999999999999999\n"),
        format!("{MINIMAL}description = 99999999999999999999\n"),
        format!("{MINIMAL}[performance]\nbatch_size = 1e999999999999999999999999\n"),
    ] {
        let error = ConfigFile::parse(&ignored, "ignored.toml").unwrap_err();
        assert!(matches!(error, ConfigError::File { .. }), "{ignored:?}: {error:?}");
    }
    // The value the fuzzer started from: an overflow after a wrong `transport.mode`.
    let text = format!(
        "{MINIMAL}[transport]\nmode = \"unix_rocket\"\n[validation]\nmax_message_size = 6553622222222222222222\n"
    );
    assert!(matches!(ConfigFile::parse(&text, "crash.toml"), Err(ConfigError::File { .. })));
}

/// The legacy relays' files (`tests/legacy/`, the production ones and the template;
/// `tests/legacy/development/`): every value where it belongs, the two buffer sizes apart.
#[test]
fn the_legacy_production_files_and_template_load() {
    let legacy = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/legacy");
    let toml_files = |dir: &Path| {
        let mut names: Vec<_> = std::fs::read_dir(dir)
            .unwrap()
            .map(|entry| entry.unwrap().file_name().into_string().unwrap())
            .filter(|name| name.ends_with(".toml"))
            .collect();
        names.sort();
        names
    };
    let files = ["execution.toml", "market_data.toml", "signal.toml", "template.toml"];
    assert_eq!(toml_files(&legacy), files);
    assert_eq!(toml_files(&legacy.join("development")), files[..3]);
    let (info, warn) = (Some(log::LevelFilter::Info), Some(log::LevelFilter::Warn));
    let md = RelayDomain::MarketData;
    for (name, domain, max_connections, read_budget, socket_buffer, max_message_size, queue_bytes, level) in [
        ("market_data.toml", md, 5000, 65536, Some(131072), 16 << 20, 32 << 20, warn),
        ("signal.toml", RelayDomain::Signal, 500, 16384, Some(65536), 65536, 4 << 20, info),
        ("execution.toml", RelayDomain::Execution, 100, 16384, Some(32768), 1 << 20, 16 << 20, info),
        ("template.toml", md, 1000, 32768, Some(65536), 16 << 20, 32 << 20, info),
        ("development/market_data.toml", md, 1000, 65536, None, 65536, 4 << 20, None),
        ("development/signal.toml", RelayDomain::Signal, 100, 32768, None, 32768, 4 << 20, None),
        ("development/execution.toml", RelayDomain::Execution, 50, 16384, None, 16384, 16 << 20, None),
    ] {
        let path = legacy.join(name);
        let file = ConfigFile::load(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let logging = file.logging();
        assert_eq!(logging.level, level, "{name}");
        if level.is_some() {
            assert_eq!(logging.json, Some(true), "{name}");
            assert!(logging.file.unwrap().starts_with("/var/log/torq"), "{name}");
        } else {
            assert_eq!(logging, Logging::default(), "{name}");
        }
        let (engine, relays) = resolve(&path).unwrap_or_else(|e| panic!("{name}: {e}"));
        let relay = &relays[0];
        assert_eq!(relay.domain, domain, "{name}");
        assert_eq!(
            (engine.max_connections, engine.read_budget, engine.socket_buffer),
            (max_connections, read_budget, socket_buffer),
            "{name}"
        );
        assert_eq!((relay.max_message_size, relay.queue_bytes), (max_message_size, queue_bytes), "{name}");
    }
}

#[test]
fn legacy_keys_for_one_setting_must_agree() {
    let (engine, _) =
        load("[relay]\ndomain = 1\nmax_connections = 7\n[performance]\nmax_connections = 7\n").unwrap();
    assert_eq!(engine.max_connections, 7);
    let error = load("[relay]\ndomain = 1\nmax_connections = 7\n[performance]\nmax_connections = 8\n");
    assert_eq!(setting(error.unwrap_err()), "relay.max_connections");
    let error = load("[relay]\ndomain = 1\nmax_connections = 0\n");
    assert_eq!(setting(error.unwrap_err()), "relay.max_connections");
}

/// The legacy relays' production files give `transport.buffer_size` (the socket buffers) and
/// `performance.buffer_size` (the relay's read buffer) different values on purpose; each sets
/// its own setting.
#[test]
fn the_two_buffer_sizes_are_two_settings() {
    let both = format!("{MINIMAL}[transport]\nbuffer_size = 131072\n[performance]\nbuffer_size = 65536\n");
    let (engine, _) = load(&both).unwrap();
    assert_eq!((engine.socket_buffer, engine.read_budget), (Some(131072), 65536));
    // The socket buffers alone: the read budget keeps its default.
    let (engine, _) = load(&format!("{MINIMAL}[transport]\nbuffer_size = 32768\n")).unwrap();
    assert_eq!(
        (engine.socket_buffer, engine.read_budget),
        (Some(32768), EngineConfig::default().read_budget)
    );
    // The read budget alone: the kernel's default socket buffers.
    let (engine, _) = load(&format!("{MINIMAL}[performance]\nbuffer_size = 16384\n")).unwrap();
    assert_eq!((engine.socket_buffer, engine.read_budget), (None, 16384));
    assert_eq!(EngineConfig::default().socket_buffer, None);
}

#[test]
fn logging_table() {
    for (text, key) in [
        ("level = \"loud\"", "logging.level"),
        ("format = \"xml\"", "logging.format"),
        ("file = \"\"", "logging.file"),
    ] {
        assert_eq!(setting(load(&format!("{MINIMAL}[logging]\n{text}\n")).unwrap_err()), key, "{text}");
    }
    match load(&format!("{MINIMAL}[logging]\nrotate = true\n")).unwrap_err() {
        ConfigError::UnknownKey { key, .. } => assert_eq!(key, "logging.rotate"),
        other => panic!("{other:?}"),
    }
    let path = temp_file(&format!("{MINIMAL}[logging]\nlevel = \"WARN\"\nformat = \"text\"\n"));
    let logging = ConfigFile::load(&path).unwrap().logging();
    std::fs::remove_file(&path).unwrap();
    assert_eq!(logging, Logging { level: Some(log::LevelFilter::Warn), json: Some(false), file: None });
}
