//! Who may publish as a node: bridges logging in to a NATS server run with the repository's
//! sample configuration (config/nats-server.conf, only its port and store moved), what a node's
//! credentials do not let it do, bridges refused by the server, and TLS with a private CA and
//! client certificates.

mod util;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use std::sync::{Arc, Mutex};
use torq::protocol::RelayDomain::{self, Execution, MarketData};
use util::*;

fn logs(procs: &[&Proc]) -> String {
    procs.iter().map(|p| format!("--- {}\n{}", p.log.display(), p.log())).collect()
}

/// The flags logging a bridge in as `node`'s user of the sample configuration.
fn login(dir: &Path, node: &str) -> Vec<String> {
    let file = secret_file(dir, &format!("nats-{node}.password"), &sample_password(node));
    vec!["--nats-user".into(), node.into(), "--nats-password-file".into(), file.display().to_string()]
}

fn with(login: &[String], more: &[&str]) -> Vec<String> {
    login.iter().cloned().chain(more.iter().map(|s| s.to_string())).collect()
}

fn strs(args: &[String]) -> Vec<&str> {
    args.iter().map(String::as_str).collect()
}

/// Waits (bounded) for a process to exit.
fn exit_status(proc: &mut Proc, limit: Duration) -> std::process::ExitStatus {
    let start = Instant::now();
    loop {
        if let Some(status) = proc.child.try_wait().unwrap() {
            return status;
        }
        assert!(start.elapsed() < limit, "still running after {limit:?}: {}", proc.log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Waits (bounded) until `log()` holds `text`.
fn wait_log(log: &dyn Fn() -> String, text: &str) {
    let start = Instant::now();
    while !log().contains(text) {
        assert!(start.elapsed() < WAIT, "no {text:?} within {WAIT:?}:\n{}", log());
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn with_the_sample_server_configuration_each_node_s_own_credentials_carry_execution_both_ways() {
    let dir = temp_dir("auth-exec");
    let nats = Nats::with_config(&dir, sample_nats_config);
    let url = nats.url();
    let (a, b) = (Host::start("auth-exec-a"), Host::start("auth-exec-b"));
    let (login_a, login_b) = (login(&dir, "a"), login(&dir, "b"));
    let export_a = a.bridge(Execution, "a", &url, &strs(&with(&login_a, &["--export", "--import", "b"])));
    // B imports with `all` (the streams' names) and is aborted at its 10th batch, between writing
    // it and recording it: the bridge after it reads stored frames back by sequence.
    let bridge_b = with(&login_b, &["--export", "--import", "all"]);
    let mut import_b =
        b.bridge_with(Execution, "b", &url, &strs(&bridge_b), &[("TORQ_BRIDGE_ABORT_AFTER_WRITES", "10")]);
    let (on_a, on_b) = (Collector::start(&a, Execution), Collector::start(&b, Execution));
    on_a.until_bridged(&mut b.publisher(Execution, 91), 91, &|| logs(&[&export_a, &import_b, &nats.proc]));
    on_b.until_bridged(&mut a.publisher(Execution, 90), 90, &|| logs(&[&export_a, &import_b, &nats.proc]));

    // Orders from a reach b, across the abort.
    let mut orders = a.publisher(Execution, 4);
    for _ in 0..30 {
        publish(&mut orders, 100);
        std::thread::sleep(Duration::from_millis(10));
    }
    exit_status(&mut import_b, WAIT);
    let again = b.bridge(Execution, "b", &url, &strs(&bridge_b));
    let logs = || logs(&[&export_a, &import_b, &again, &nats.proc]);
    on_b.wait_for(4, 3000, Duration::from_secs(60), &logs);
    assert_eq!(on_b.sequences(4, true), (1..=3000).collect::<Vec<u64>>(), "every order once, in order");
    assert!(again.log().contains("stopped while writing stream sequences"), "{}", logs());
    // And b's own go to a.
    publish(&mut b.publisher(Execution, 5), 200);
    on_a.wait_for(5, 200, WAIT, &logs);
    assert_eq!(on_a.sequences(5, true), (1..=200).collect::<Vec<u64>>());

    // Nothing the bridges do is outside what the sample configuration lets each node do.
    for log in [nats.proc.log(), export_a.log(), import_b.log(), again.log()] {
        assert!(!log.to_lowercase().contains("violation"), "{}", logs());
    }
}

/// What the server said to a client: its `-ERR`s.
type Errors = Arc<Mutex<Vec<String>>>;

/// A plain NATS client logged in as `user` of the sample configuration, keeping the server's
/// errors.
async fn client_as(url: &str, user: &str) -> (async_nats::Client, Errors) {
    let errors: Errors = Arc::default();
    let into = Arc::clone(&errors);
    let client = async_nats::ConnectOptions::with_user_and_password(user.into(), sample_password(user))
        .event_callback(move |event| {
            let into = Arc::clone(&into);
            async move {
                if let async_nats::Event::ServerError(error) = event {
                    into.lock().unwrap().push(error.to_string());
                }
            }
        })
        .connect(url)
        .await
        .unwrap_or_else(|e| panic!("{user} cannot log in: {e}"));
    (client, errors)
}

/// Waits (bounded) until the server has refused `subject` to this client.
async fn refused(errors: &Errors, subject: &str) {
    let wanted = format!("Permissions Violation for Publish to \"{subject}\"").to_lowercase();
    let start = Instant::now();
    while !errors.lock().unwrap().iter().any(|e| e.to_lowercase().contains(&wanted)) {
        assert!(start.elapsed() < WAIT, "no refusal of {subject}: {:?}", errors.lock().unwrap());
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[test]
fn node_b_s_credentials_cannot_publish_as_node_a_nor_touch_its_stream() {
    use async_nats::jetstream::{self, consumer::pull, stream};
    use futures::StreamExt;
    let dir = temp_dir("auth-refused");
    let nats = Nats::with_config(&dir, sample_nats_config);
    let url = nats.url();
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (a, _) = client_as(&url, "a").await;
        let (b, errors) = client_as(&url, "b").await;
        let timeout = Duration::from_secs(2);
        let js_a = jetstream::ContextBuilder::new().timeout(timeout).build(a.clone());
        let js_b = jetstream::ContextBuilder::new().timeout(timeout).build(b.clone());
        // Node a's stream, as its exporting bridge makes it; node a watches every subject.
        let config = stream::Config {
            name: "TORQ_a_EXECUTION".into(),
            subjects: vec!["torq.a.execution.>".into()],
            ..Default::default()
        };
        js_a.create_stream(config.clone()).await.expect("a creates its own stream");
        let mut watch = a.subscribe("torq.>").await.unwrap();
        a.flush().await.unwrap();

        // Core NATS as node a: refused.
        b.publish("torq.a.market_data.1.1", "injected".into()).await.unwrap();
        b.flush().await.unwrap();
        refused(&errors, "torq.a.market_data.1.1").await;
        // JetStream as node a: refused, so never acknowledged.
        let ack = js_b.publish("torq.a.execution.40.1", "injected".into()).await;
        assert!(ack.is_err() || ack.unwrap().await.is_err(), "JetStream stored b's frame as a's");
        refused(&errors, "torq.a.execution.40.1").await;
        // Node a's stream: b can neither make it nor remove it.
        assert!(js_b.create_stream(config.clone()).await.is_err(), "b created a's stream");
        refused(&errors, "$JS.API.STREAM.CREATE.TORQ_a_EXECUTION").await;
        assert!(js_b.delete_stream("TORQ_a_EXECUTION").await.is_err(), "b deleted a's stream");
        refused(&errors, "$JS.API.STREAM.DELETE.TORQ_a_EXECUTION").await;
        // ... nor take over node a's import consumer (import-a) on it, while its own works.
        let on_a = js_b.get_stream("TORQ_a_EXECUTION").await.expect("b reads a's stream");
        let as_a = pull::Config { durable_name: Some("import-a".into()), ..Default::default() };
        assert!(on_a.create_consumer(as_a).await.is_err(), "b made a's import consumer");
        refused(&errors, "$JS.API.CONSUMER.CREATE.TORQ_a_EXECUTION.import-a").await;
        let own = pull::Config { durable_name: Some("import-b".into()), ..Default::default() };
        on_a.create_consumer(own).await.expect("b makes its own import consumer on a's stream");

        // b may publish as b, and a as a: those two arrive, and nothing of b's as a.
        b.publish("torq.b.market_data.1.1", "b's own".into()).await.unwrap();
        b.flush().await.unwrap();
        js_a.publish("torq.a.execution.40.1", "a's own".into())
            .await
            .unwrap()
            .await
            .expect("a's frame stored");
        let mut subjects = Vec::new();
        while subjects.len() < 2 {
            let message = tokio::time::timeout(WAIT, watch.next()).await.expect("nothing came").unwrap();
            subjects.push(message.subject.to_string());
        }
        // Two connections: their messages have no order between them.
        subjects.sort();
        assert_eq!(subjects, ["torq.a.execution.40.1", "torq.b.market_data.1.1"]);
        assert!(tokio::time::timeout(Duration::from_millis(500), watch.next()).await.is_err());
        let mut stream = js_a.get_stream("TORQ_a_EXECUTION").await.expect("a's stream is still there");
        let state = stream.info().await.unwrap().state.clone();
        assert_eq!((state.messages, state.last_sequence), (1, 1), "only a's own frame in a's stream");
        let stored = stream.get_raw_message(1).await.unwrap();
        assert_eq!(&stored.payload[..], b"a's own");
    });
    let log = nats.proc.log();
    assert!(log.contains("Publish Violation"), "the server logs what it refused: {log}");
}

#[test]
fn a_bridge_the_server_refuses_at_its_first_connection_stops_saying_so() {
    let dir = temp_dir("auth-wrong");
    let nats = Nats::with_config(&dir, sample_nats_config);
    let host = Host::start("auth-wrong-host");
    let wrong = secret_file(&dir, "wrong.password", "not-the-password");
    let wrong = wrong.display().to_string();
    let cases: [(RelayDomain, Vec<&str>, &str); 3] = [
        // The export of market data: the refusal comes while it waits for frames.
        (MarketData, vec!["--nats-user", "a", "--nats-password-file", &wrong, "--export"], "user \"a\""),
        // The export of execution: while it creates its stream.
        (Execution, vec!["--nats-user", "a", "--nats-password-file", &wrong, "--export"], "user \"a\""),
        // No credentials at all.
        (MarketData, vec!["--import", "b"], "no credentials"),
    ];
    for (domain, extra, who) in cases {
        let start = Instant::now();
        let mut bridge = host.bridge(domain, "a", &nats.url(), &extra);
        let status = exit_status(&mut bridge, WAIT);
        let log = bridge.log();
        assert_eq!(status.code(), Some(1), "{log}");
        assert!(start.elapsed() < Duration::from_secs(10), "took {:?}: {log}", start.elapsed());
        assert!(log.contains("refused to let this bridge in (authorization violation)"), "{log}");
        assert!(log.contains(who), "{log}");
        assert!(!log.contains("not-the-password"), "the password is never logged: {log}");
    }
}

#[test]
fn a_bridge_refused_after_a_server_change_says_so_once_and_gets_in_when_it_is_fixed() {
    let dir = temp_dir("auth-change");
    let mut nats = Nats::with_config(&dir, sample_nats_config);
    let url = nats.url();
    let (a, b) = (Host::start("auth-change-a"), Host::start("auth-change-b"));
    let export = a.bridge(MarketData, "a", &url, &strs(&with(&login(&dir, "a"), &["--export"])));
    let mut import = b.bridge(MarketData, "b", &url, &strs(&with(&login(&dir, "b"), &["--import", "a"])));
    let logs = |import: &Proc| logs(&[&export, import]);
    let on_b = Collector::start(&b, MarketData);
    let mut probe = a.publisher(MarketData, 90);
    on_b.until_bridged(&mut probe, 90, &|| logs(&import));

    // The operator changes b's password on the server and restarts it.
    let config = nats.config_file();
    let original = std::fs::read_to_string(&config).unwrap();
    let password = sample_password("b");
    std::fs::write(&config, original.replace(&password, "changed-on-the-server")).unwrap();
    nats.restart();
    let import_log = || import.log();
    wait_log(&import_log, "refused to let this bridge in again (authorization violation) with user \"b\"");
    // It goes on trying (each refusal at debug level), with one error in the log.
    let refusals = || import.log().matches("NATS refused the credentials again").count();
    let start = Instant::now();
    while refusals() < 2 {
        assert!(start.elapsed() < WAIT, "the bridge stopped trying: {}", logs(&import));
        std::thread::sleep(Duration::from_millis(100));
    }
    assert_eq!(import.log().matches("refused to let this bridge in again").count(), 1, "{}", logs(&import));
    assert!(import.child.try_wait().unwrap().is_none(), "the bridge stopped: {}", logs(&import));

    // Fixed: it gets in and frames cross again.
    std::fs::write(&config, &original).unwrap();
    nats.restart();
    on_b.until_bridged(&mut probe, 90, &|| logs(&import));
    assert!(!import.log().contains(&password), "the password is never logged: {}", logs(&import));
}

#[test]
fn a_missing_credentials_file_stops_the_bridge_at_start_naming_the_flag_and_the_path() {
    let dir = temp_dir("auth-missing");
    let absent = dir.join("absent.password");
    let cases = [
        (vec!["--nats-user", "a", "--nats-password-file", absent.to_str().unwrap()], "--nats-password-file"),
        (vec!["--nats-creds", absent.to_str().unwrap()], "--nats-creds"),
        (vec!["--tls-ca", absent.to_str().unwrap()], "--tls-ca"),
    ];
    for (extra, flag) in cases {
        let relay = dir.join("r.sock");
        let mut bridge = Bridge {
            socket: &relay,
            domain: MarketData,
            node: "a",
            nats: "nats://127.0.0.1:1",
            extra: &[extra.as_slice(), &["--export"]].concat(),
            env: &[],
        }
        .spawn(&dir);
        let status = exit_status(&mut bridge, WAIT);
        let log = bridge.log();
        assert_eq!(status.code(), Some(2), "{log}");
        assert!(log.contains(&format!("{flag}: cannot read {}", absent.display())), "{log}");
    }
}

/// Runs `openssl` with `args` in `dir`, failing the test, saying so, if it cannot.
fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").args(args).current_dir(dir).output().expect(
        "openssl not found: the TLS test makes its certificates with the openssl command; install it",
    );
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// A CA, a server certificate for 127.0.0.1 and a client certificate per name, signed by it:
/// (ca.pem, server.pem, server.key); the clients' are `<name>.pem` and `<name>.key`.
fn certificates(dir: &Path, clients: &[&str]) -> (PathBuf, PathBuf, PathBuf) {
    let ec = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"];
    let ca = ["-keyout", "ca.key", "-out", "ca.pem", "-days", "2", "-subj", "/CN=torq test CA"];
    openssl(dir, &[&["req", "-x509"], &ec[..], &ca[..]].concat());
    let sign = |name: &str, extensions: &str| {
        std::fs::write(dir.join(format!("{name}.ext")), extensions).unwrap();
        openssl(
            dir,
            &[
                &["req"],
                &ec[..],
                &[
                    "-keyout",
                    &format!("{name}.key"),
                    "-out",
                    &format!("{name}.csr"),
                    "-subj",
                    &format!("/CN={name}"),
                ],
            ]
            .concat(),
        );
        openssl(
            dir,
            &[
                "x509",
                "-req",
                "-in",
                &format!("{name}.csr"),
                "-CA",
                "ca.pem",
                "-CAkey",
                "ca.key",
                "-CAcreateserial",
                "-days",
                "2",
                "-out",
                &format!("{name}.pem"),
                "-extfile",
                &format!("{name}.ext"),
            ],
        );
    };
    sign(
        "server",
        "subjectAltName=IP:127.0.0.1,DNS:localhost\nextendedKeyUsage=serverAuth\nkeyUsage=digitalSignature\n",
    );
    for client in clients {
        sign(client, "extendedKeyUsage=clientAuth\nkeyUsage=digitalSignature\n");
    }
    (dir.join("ca.pem"), dir.join("server.pem"), dir.join("server.key"))
}

#[test]
fn over_tls_with_a_private_ca_and_client_certificates_frames_cross_and_a_bridge_without_its_certificate_stays_out()
 {
    let dir = temp_dir("auth-tls");
    let (ca, cert, key) = certificates(&dir, &["a", "b"]);
    // The sample configuration with its TLS block: the server verifies clients' certificates.
    let tls = format!(
        "\ntls {{\n  cert_file: {:?}\n  key_file: {:?}\n  ca_file: {:?}\n  verify: true\n}}\n",
        cert.display().to_string(),
        key.display().to_string(),
        ca.display().to_string()
    );
    let nats = Nats::with_config(&dir, |port, store| sample_nats_config(port, store) + &tls);
    let url = nats.url();
    let (a, b) = (Host::start("auth-tls-a"), Host::start("auth-tls-b"));
    let tls_flags = |node: &str| {
        let (cert, key) = (dir.join(format!("{node}.pem")), dir.join(format!("{node}.key")));
        let mut flags = login(&dir, node);
        for (flag, file) in [("--tls-ca", &ca), ("--tls-cert", &cert), ("--tls-key", &key)] {
            flags.extend([flag.to_string(), file.display().to_string()]);
        }
        flags.push("--tls-required".into());
        flags
    };
    let export = a.bridge(MarketData, "a", &url, &strs(&with(&tls_flags("a"), &["--export"])));
    let import = b.bridge(MarketData, "b", &url, &strs(&with(&tls_flags("b"), &["--import", "a"])));
    let logs = || logs(&[&export, &import, &nats.proc]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &logs);
    let mut publisher = a.publisher(MarketData, 4);
    publish(&mut publisher, 500);
    on_b.wait_for(4, 500, WAIT, &logs);
    assert_eq!(on_b.sequences(4, true), (1..=500).collect::<Vec<u64>>());
    assert!(import.log().contains("TLS required, trusting the CA in"), "{}", logs());

    // Without its client certificate, or without the CA, a bridge never gets in, and says why.
    let ca_only = with(&login(&dir, "b"), &["--import", "a", "--tls-ca", ca.to_str().unwrap()]);
    let (b_cert, b_key) = (dir.join("b.pem"), dir.join("b.key"));
    let no_ca = with(
        &login(&dir, "b"),
        &["--import", "a", "--tls-cert", b_cert.to_str().unwrap(), "--tls-key", b_key.to_str().unwrap()],
    );
    let outside: Vec<Proc> =
        [ca_only, no_ca].iter().map(|extra| b.bridge(MarketData, "b", &url, &strs(extra))).collect();
    for bridge in &outside {
        wait_log(&|| bridge.log(), "cannot reach NATS at ");
    }
    std::thread::sleep(Duration::from_secs(2));
    for bridge in &outside {
        let log = bridge.log();
        assert!(!log.contains("connected to NATS"), "{log}");
        assert!(log.contains("over TLS (client error: nats: IO error); trying again"), "{log}");
        assert!(log.contains("does --tls-ca hold the CA"), "{log}");
    }
    // What crosses now crosses once: through the bridge with its certificate only.
    publish(&mut publisher, 500);
    on_b.wait_for(4, 1000, WAIT, &logs);
    assert_eq!(on_b.sequences(4, true), (1..=1000).collect::<Vec<u64>>());
}

#[test]
fn a_bridge_logs_in_with_an_nkey_in_place_of_a_password_as_the_sample_says() {
    let dir = temp_dir("auth-nkey");
    // The sample's change for nkeys: node a's user is its public key.
    let pair = nkeys::KeyPair::new_user();
    let public = pair.public_key();
    let nats = Nats::with_config(&dir, |port, store| {
        let text = sample_nats_config(port, store);
        let line = format!("{{ user: a, password: \"{}\", permissions: $NODE_A }}", sample_password("a"));
        assert_eq!(text.matches(&line).count(), 1, "the sample's user a line changed: {line}");
        text.replace(&line, &format!("{{ nkey: {public}, permissions: $NODE_A }}"))
    });
    let url = nats.url();
    let (a, b) = (Host::start("auth-nkey-a"), Host::start("auth-nkey-b"));
    let seed = secret_file(&dir, "a.seed", &pair.seed().unwrap());
    let export = a.bridge(MarketData, "a", &url, &["--nats-nkey", seed.to_str().unwrap(), "--export"]);
    let import = b.bridge(MarketData, "b", &url, &strs(&with(&login(&dir, "b"), &["--import", "a"])));
    let logs = || logs(&[&export, &import, &nats.proc]);
    let on_b = Collector::start(&b, MarketData);
    on_b.until_bridged(&mut a.publisher(MarketData, 90), 90, &logs);
    assert!(export.log().contains(&format!("logging in with nkey {public}")), "{}", logs());
    assert!(!export.log().contains(&pair.seed().unwrap()), "the seed is never logged: {}", logs());

    // Another key is not node a's.
    let other = secret_file(&dir, "other.seed", &nkeys::KeyPair::new_user().seed().unwrap());
    let mut stranger = a.bridge(MarketData, "a", &url, &["--nats-nkey", other.to_str().unwrap(), "--export"]);
    assert_eq!(exit_status(&mut stranger, WAIT).code(), Some(1), "{}", stranger.log());
    assert!(stranger.log().contains("refused to let this bridge in (authorization violation) with nkey"));
}

#[test]
fn a_bridge_given_another_node_s_credentials_is_refused_that_node_s_subjects_and_says_so() {
    let dir = temp_dir("auth-other-node");
    let nats = Nats::with_config(&dir, sample_nats_config);
    let url = nats.url();
    let host = Host::start("auth-other-node-host");
    let as_b = login(&dir, "b");

    // A bridge of node a logged in as b is refused node a's presence subject before it exports
    // anything: it stops at once, saying the credentials are another node's.
    let other = Host::start("auth-other-node-other");
    let import = other.bridge(MarketData, "b", &url, &strs(&with(&as_b, &["--import", "a"])));
    let on_other = Collector::start(&other, MarketData);
    wait_log(&|| import.log(), "connected to NATS");
    for domain in [Execution, MarketData] {
        let start = Instant::now();
        let mut bridge = host.bridge(domain, "a", &url, &strs(&with(&as_b, &["--export"])));
        assert_eq!(exit_status(&mut bridge, WAIT).code(), Some(1), "{}", bridge.log());
        assert!(start.elapsed() < Duration::from_secs(10), "took {:?}", start.elapsed());
        let log = bridge.log();
        assert!(
            log.contains("NATS refused user \"b\"") && log.contains("the credentials are another node's"),
            "{log}"
        );
        assert!(log.contains("Permissions Violation for Subscription to \"torq-bridge.a."), "{log}");
        assert!(!log.contains("exporting"), "nothing was exported: {log}");
    }
    let mut publisher = host.publisher(MarketData, 4);
    publish(&mut publisher, 10);
    std::thread::sleep(Duration::from_secs(1));
    assert_eq!(on_other.count(4), 0, "{}", import.log());
    // While node a's own credentials carry them.
    let export = host.bridge(MarketData, "a", &url, &strs(&with(&login(&dir, "a"), &["--export"])));
    on_other.until_bridged(&mut publisher, 4, &|| logs(&[&export, &import]));
}

#[test]
fn with_the_streams_made_ahead_the_nodes_need_no_right_to_make_streams() {
    use async_nats::jetstream::{self, stream};
    let dir = temp_dir("auth-ahead");
    let mut nats = Nats::with_config(&dir, sample_nats_config);
    let url = nats.url();
    let (a, b) = (Host::start("auth-ahead-a"), Host::start("auth-ahead-b"));
    // The streams made once (here by the bridges themselves, as an administrator would).
    for (host, node) in [(&a, "a"), (&b, "b")] {
        let mut export = host.bridge(Execution, node, &url, &strs(&with(&login(&dir, node), &["--export"])));
        wait_log(&|| export.log(), &format!("stream TORQ_{node}_EXECUTION ready"));
        export.terminate();
    }
    // Then the configuration without the two lines that let a node make or change its stream,
    // as config/nats-server.conf says.
    let config = nats.config_file();
    let mut text = std::fs::read_to_string(&config).unwrap();
    for node in ["a", "b"] {
        for action in ["CREATE", "UPDATE"] {
            let line = format!("      \"$JS.API.STREAM.{action}.TORQ_{node}_EXECUTION\",\n");
            assert_eq!(text.matches(&line).count(), 1, "no {line:?} in the sample");
            text = text.replace(&line, "");
        }
    }
    std::fs::write(&config, text).unwrap();
    nats.restart();

    let export = a.bridge(Execution, "a", &url, &strs(&with(&login(&dir, "a"), &["--export"])));
    let import = b.bridge(Execution, "b", &url, &strs(&with(&login(&dir, "b"), &["--import", "a"])));
    let on_b = Collector::start(&b, Execution);
    on_b.until_bridged(&mut a.publisher(Execution, 90), 90, &|| logs(&[&export, &import, &nats.proc]));
    assert!(!nats.proc.log().contains("Violation"), "{}", logs(&[&export, &import, &nats.proc]));

    // And node b cannot make its stream over node a's subjects (the sample as it is lets a node
    // do that before the other's stream exists).
    let runtime = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    runtime.block_on(async {
        let (client, errors) = client_as(&url, "b").await;
        let js = jetstream::ContextBuilder::new().timeout(Duration::from_secs(2)).build(client);
        let grab = stream::Config {
            name: "TORQ_b_EXECUTION".into(),
            subjects: vec!["torq.a.execution.>".into()],
            ..Default::default()
        };
        assert!(js.create_stream(grab).await.is_err());
        refused(&errors, "$JS.API.STREAM.CREATE.TORQ_b_EXECUTION").await;
    });
}
