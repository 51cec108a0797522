//! Resolution from command-line flags: cores, domains, `relay`, `relay_dev` and `--help`.

use super::*;

#[test]
fn cores_flag() {
    assert!(matches!(cores_from_str("none").unwrap(), Cores::Unpinned(n) if n >= 1));
    assert_eq!(cores_from_str("0,1").unwrap(), Cores::Pinned(vec![0, 1]));
    assert_eq!(cores_from_str(" 3 , 2 ").unwrap(), Cores::Pinned(vec![3, 2]));
    assert_eq!(cores_from_str("none:2").unwrap(), Cores::Unpinned(2));
    for bad in ["", "0,0", "1,2,1", "a", "1,,2", "-1", "1;2", "0,1,", "all", "none:0", "none:257", "none:x"] {
        assert_eq!(setting(cores_from_str(bad).unwrap_err()), "--cores", "{bad:?}");
    }
}

/// A core this process may not run on (beyond its affinity mask).
fn missing_core() -> usize {
    Cores::usable().unwrap().last().unwrap() + 1
}

/// Reactors asked to pin to a core the process cannot have are an error naming the flag or
/// the key, not reactors running unpinned.
#[test]
fn pinned_cores_must_exist_here() {
    let (first, core) = (Cores::usable().unwrap()[0], missing_core());
    let flag =
        DomainArgs::try_parse_from(["market_data_relay", "--cores", &format!("{first},{core}")]).unwrap();
    let error = flag.resolve::<MarketDataLogic>().unwrap_err();
    assert!(
        error.to_string().starts_with(&format!("--cores = {first},{core}: core {core} does not exist")),
        "{error}"
    );

    let text = format!("{MINIMAL}[engine]\ncores = [{core}]\n");
    let path = temp_file(&text);
    let relay = resolve(&path).unwrap_err();
    let dev = DevArgs::try_parse_from(["relay_dev", "market-data", "-c", path.to_str().unwrap()]).unwrap();
    let dev = dev.resolve(dev.load().unwrap().as_ref()).unwrap_err();
    std::fs::remove_file(&path).unwrap();
    for error in [relay, dev] {
        let ConfigError::Invalid { file: Some(file), .. } = &error else { panic!("{error:?}") };
        assert!(file.ends_with(".toml"), "{file}");
        assert_eq!(setting(error), "engine.cores");
    }
    // Unpinned reactors, however many, are not checked.
    let flag = DomainArgs::try_parse_from(["market_data_relay", "--cores", "none:256"]).unwrap();
    assert_eq!(flag.resolve::<MarketDataLogic>().unwrap().0.cores, Cores::Unpinned(256));
}

#[test]
fn domain_flags() {
    let args = DomainArgs::try_parse_from(["market_data_relay"]).unwrap();
    let (engine, relay) = args.resolve::<MarketDataLogic>().unwrap();
    assert_eq!(relay, RelayConfig::new(&MarketDataLogic.defaults()));
    assert_eq!(engine, EngineConfig::default());
    assert_eq!(args.log_level, LogLevel::Info);

    // Pinned to cores this process may run on: the first two (or one) of its mask.
    let usable: Vec<usize> = Cores::usable().unwrap().into_iter().take(2).collect();
    let cores = usable.iter().map(ToString::to_string).collect::<Vec<_>>().join(",");
    let args = DomainArgs::try_parse_from([
        "signal_relay",
        "--slow-consumer",
        "block",
        "--socket",
        "/tmp/x/s.sock",
        "--cores",
        &cores,
        "--queue-bytes",
        "1000000",
        "--max-message-size",
        "2000",
        "--metrics-interval",
        "5",
        "--metrics-addr",
        "127.0.0.1:9101",
        "-l",
        "debug",
    ])
    .unwrap();
    let (engine, relay) = args.resolve::<SignalLogic>().unwrap();
    assert_eq!((relay.domain, relay.policy), (RelayDomain::Signal, Policy::Block));
    assert_eq!(relay.socket, Path::new("/tmp/x/s.sock"));
    assert_eq!((relay.queue_bytes, relay.max_message_size), (1_000_000, 2000));
    assert_eq!(engine.cores, Cores::Pinned(usable));
    assert_eq!(engine.metrics_interval, Some(Duration::from_secs(5)));
    assert_eq!(engine.metrics_addr, Some("127.0.0.1:9101".parse().unwrap()));
    assert_eq!(args.log_level.filter(), log::LevelFilter::Debug);

    let resolve = |flags: &[&str]| {
        DomainArgs::try_parse_from(std::iter::once("relay").chain(flags.iter().copied()))
            .unwrap()
            .resolve::<MarketDataLogic>()
    };
    assert_eq!(setting(resolve(&["--queue-bytes", "1000"]).unwrap_err()), "--queue-bytes");
    assert_eq!(setting(resolve(&["--max-message-size", "1000"]).unwrap_err()), "--max-message-size");
    assert_eq!(setting(resolve(&["--cores", "1,1"]).unwrap_err()), "--cores");
    assert_eq!(setting(resolve(&["--metrics-addr", "10.0.0.1:9100"]).unwrap_err()), "--metrics-addr");
    assert!(DomainArgs::try_parse_from(["relay", "--slow-consumer", "queue"]).is_err());

    // Execution audits by default: without --audit-file it audits beside its socket.
    let args = DomainArgs::try_parse_from(["execution_relay"]).unwrap();
    let (_, relay) = args.resolve::<ExecutionLogic>().unwrap();
    assert_eq!(relay.audit_file.as_deref(), Some(Path::new("/tmp/torq/execution.audit")));
    let args = DomainArgs::try_parse_from(["execution_relay", "--audit-file", "/tmp/e.audit"]).unwrap();
    assert_eq!(args.resolve::<ExecutionLogic>().unwrap().1.policy, Policy::Block);
}

#[test]
fn relay_flags() {
    let args = RelayArgs::try_parse_from(["relay", "-c", "x.toml", "-l", "warn", "--json-logs"]).unwrap();
    assert_eq!(
        (args.config.as_path(), args.log_level, args.json_logs),
        (Path::new("x.toml"), Some(LogLevel::Warn), true)
    );
    assert!(RelayArgs::try_parse_from(["relay"]).is_err());
    let args =
        RelayArgs::try_parse_from(["relay", "--config", example("signal.toml").to_str().unwrap()]).unwrap();
    assert_eq!(args.resolve(&args.load().unwrap()).unwrap().1[0].domain, RelayDomain::Signal);
}

#[test]
fn dev_all_runs_three_relays_in_one_directory() {
    let (engine, relays) = DevArgs::try_parse_from(["relay_dev", "all"]).unwrap().resolve(None).unwrap();
    let sockets: Vec<_> = relays.iter().map(|r| (r.domain, r.socket.clone())).collect();
    assert_eq!(
        sockets,
        [
            (RelayDomain::MarketData, PathBuf::from("/tmp/torq_dev/market_data.sock")),
            (RelayDomain::Signal, PathBuf::from("/tmp/torq_dev/signals.sock")),
            (RelayDomain::Execution, PathBuf::from("/tmp/torq_dev/execution.sock")),
        ]
    );
    assert_eq!(relays[2].audit_file.as_deref(), Some(Path::new("/tmp/torq_dev/execution.audit")));
    assert_eq!((relays[0].audit_file.as_ref(), relays[1].audit_file.as_ref()), (None, None));
    assert_eq!(engine.metrics_interval, None);

    let args = DevArgs::try_parse_from(["relay_dev", "all", "-s", "/run/t", "--metrics-interval", "2", "-v"])
        .unwrap();
    let (engine, relays) = args.resolve(args.load().unwrap().as_ref()).unwrap();
    assert_eq!(relays[1].socket, Path::new("/run/t/signals.sock"));
    assert_eq!(relays[2].audit_file.as_deref(), Some(Path::new("/run/t/execution.audit")));
    assert_eq!(engine.metrics_interval, Some(Duration::from_secs(2)));
    assert_eq!(engine.metrics_addr, None);
    assert_eq!(args.level(), Some(LogLevel::Debug));

    // One metrics endpoint for the three relays, on a loopback address only.
    let args = DevArgs::try_parse_from(["relay_dev", "all", "--metrics-addr", "127.0.0.1:9100"]).unwrap();
    let (engine, _) = args.resolve(None).unwrap();
    assert_eq!(engine.metrics_addr, Some("127.0.0.1:9100".parse().unwrap()));
    let args = DevArgs::try_parse_from(["relay_dev", "all", "--metrics-addr", "0.0.0.0:9100"]).unwrap();
    assert_eq!(setting(args.resolve(None).unwrap_err()), "--metrics-addr");

    let signal = example("signal.toml");
    let args = DevArgs::try_parse_from(["relay_dev", "all", "-c", signal.to_str().unwrap()]).unwrap();
    assert_eq!(setting(args.resolve(args.load().unwrap().as_ref()).unwrap_err()), "--config");
}

#[test]
fn dev_single_domain() {
    let args = DevArgs::try_parse_from(["relay_dev", "execution", "-s", "/tmp/d/e.sock"]).unwrap();
    let (_, relays) = args.resolve(args.load().unwrap().as_ref()).unwrap();
    assert_eq!(relays.len(), 1);
    assert_eq!(relays[0].socket, Path::new("/tmp/d/e.sock"));
    assert_eq!(relays[0].audit_file.as_deref(), Some(Path::new("/tmp/d/execution.audit")));
    assert_eq!(args.level(), None);

    let args = DevArgs::try_parse_from(["relay_dev", "market_data", "-l", "trace"]).unwrap();
    let (_, relays) = args.resolve(args.load().unwrap().as_ref()).unwrap();
    assert_eq!(relays, [RelayConfig::new(&MarketDataLogic.defaults())]);
    assert_eq!(args.level(), Some(LogLevel::Trace));

    // A file for the named domain, its socket replaced by -s.
    let signal = example("signal.toml");
    let args =
        DevArgs::try_parse_from(["relay_dev", "signal", "-c", signal.to_str().unwrap(), "-s", "/tmp/s.sock"])
            .unwrap();
    let (_, relays) = args.resolve(args.load().unwrap().as_ref()).unwrap();
    assert_eq!(
        (relays[0].domain, relays[0].socket.as_path()),
        (RelayDomain::Signal, Path::new("/tmp/s.sock"))
    );

    // A file for another domain.
    let args = DevArgs::try_parse_from(["relay_dev", "execution", "-c", signal.to_str().unwrap()]).unwrap();
    assert_eq!(setting(args.resolve(args.load().unwrap().as_ref()).unwrap_err()), "--config");

    assert!(DevArgs::try_parse_from(["relay_dev", "signal", "-v", "-l", "warn"]).is_err());
    assert!(DevArgs::try_parse_from(["relay_dev", "system"]).is_err());
}

#[test]
fn dev_socket_dir_and_its_legacy_spellings_name_the_same_sockets() {
    let sockets = |list: &[&str]| {
        let args = DevArgs::try_parse_from(list).unwrap();
        let (_, relays) = args.resolve(None).unwrap();
        relays.into_iter().map(|r| (r.socket, r.audit_file)).collect::<Vec<_>>()
    };
    let all = sockets(&["relay_dev", "all", "--socket-dir", "/run/t"]);
    assert_eq!(all[0].0, Path::new("/run/t/market_data.sock"));
    assert_eq!(
        all[2],
        (PathBuf::from("/run/t/execution.sock"), Some(PathBuf::from("/run/t/execution.audit")))
    );
    // The legacy command lines: `all -s DIR` and `all --socket DIR`.
    assert_eq!(sockets(&["relay_dev", "all", "-s", "/run/t"]), all);
    assert_eq!(sockets(&["relay_dev", "all", "--socket", "/run/t"]), all);
    // A single domain in a directory: its default file name there.
    assert_eq!(
        sockets(&["relay_dev", "signal", "--socket-dir", "/run/t"]),
        [(PathBuf::from("/run/t/signals.sock"), None)]
    );
    let signal = example("signal.toml");
    let args = DevArgs::try_parse_from([
        "relay_dev",
        "signal",
        "-c",
        signal.to_str().unwrap(),
        "--socket-dir",
        "/run/u",
    ])
    .unwrap();
    let (_, relays) = args.resolve(args.load().unwrap().as_ref()).unwrap();
    assert_eq!(relays[0].socket, Path::new("/run/u/signals.sock"));
    // One or the other.
    assert!(DevArgs::try_parse_from(["relay_dev", "all", "-s", "/a", "--socket-dir", "/b"]).is_err());
    assert!(DevArgs::try_parse_from(["relay_dev", "all", "--socket-dir", ""]).is_err());
}

#[test]
fn help_uses_one_name_per_idea() {
    use clap::CommandFactory;
    for (binary, mut command) in [
        ("domain relays", DomainArgs::command()),
        ("relay", RelayArgs::command()),
        ("relay_dev", DevArgs::command()),
    ] {
        let help = command.render_long_help().to_string();
        assert!(help.contains("-l, --log-level <LEVEL>"), "{binary}:\n{help}");
        for wrong in ["<LOG_LEVEL>", "<SECS>", "--metrics <", "--max-message-size <N>", "--queue-bytes <N>"] {
            assert!(!help.contains(wrong), "{binary} shows {wrong}:\n{help}");
        }
    }
    let domain = DomainArgs::command().render_long_help().to_string();
    for name in [
        "--socket <PATH>",
        "--metrics-addr <ADDR>",
        "--metrics-interval <SECONDS>",
        "--max-message-size <BYTES>",
        "--queue-bytes <BYTES>",
        "--audit-file <FILE>",
    ] {
        assert!(domain.contains(name), "{name}:\n{domain}");
    }
    let dev = DevArgs::command().render_long_help().to_string();
    for name in ["-s, --socket <PATH>", "--socket-dir <DIR>", "--metrics-addr <ADDR>", "-c, --config <FILE>"]
    {
        assert!(dev.contains(name), "{name}:\n{dev}");
    }
}

#[test]
fn flag_definitions_are_consistent() {
    use clap::CommandFactory;
    DomainArgs::command().debug_assert();
    RelayArgs::command().debug_assert();
    DevArgs::command().debug_assert();
}

#[test]
fn system_has_no_defaults() {
    assert!(defaults_for(RelayDomain::System).is_err());
}

#[test]
fn a_large_message_size_grows_the_default_queue_bound_only() {
    let resolve = |flags: &[&str]| {
        DomainArgs::try_parse_from(std::iter::once("signal_relay").chain(flags.iter().copied()))
            .unwrap()
            .resolve::<SignalLogic>()
    };
    assert_eq!(resolve(&["--max-message-size", "16777216"]).unwrap().1.queue_bytes, 32 << 20);
    let error = resolve(&["--max-message-size", "16777216", "--queue-bytes", "4194304"]).unwrap_err();
    assert_eq!(setting(error), "--queue-bytes");
    let (_, relay) = load("[relay]\ndomain = 1\n[validation]\nmax_message_size = 16777216\n").unwrap();
    assert_eq!(relay.queue_bytes, 32 << 20);
    let error =
        load("[relay]\ndomain = 1\nqueue_bytes = 4194304\n[validation]\nmax_message_size = 16777216\n");
    assert_eq!(setting(error.unwrap_err()), "relay.queue_bytes");
}
