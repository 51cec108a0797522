//! Helpers shared by the harness's integration tests.

#![allow(dead_code)] // each test crate uses some of the helpers

use std::path::PathBuf;
use std::process::Command;

/// A binary of the library crate (`relay_dev`, `market_data_relay`), built into this test's own
/// target directory and profile. Cargo gives a test the paths of its own package's binaries
/// only, so the test asks cargo for this one: a no-op when `cargo test --workspace` has just
/// built it, a build when only this crate's tests run (`cargo test -p torq-perf`).
pub fn library_binary(name: &str) -> PathBuf {
    workspace_binary("torq", name)
}

/// A binary of any package of the workspace (`torq-bridge`), built as [`library_binary`] builds
/// the library's.
pub fn workspace_binary(package: &str, name: &str) -> PathBuf {
    let exe = std::env::current_exe().unwrap(); // <target>/<profile>/deps/<test>-<hash>
    let profile_dir = exe.parent().and_then(|deps| deps.parent()).unwrap();
    let target_dir = profile_dir.parent().unwrap();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| env!("CARGO").to_string());
    let manifest = concat!(env!("CARGO_MANIFEST_DIR"), "/../Cargo.toml");
    let mut build = Command::new(cargo);
    build.args(["build", "--quiet", "--manifest-path", manifest, "-p", package, "--bin", name]);
    build.arg("--target-dir").arg(target_dir);
    if profile_dir.file_name().is_some_and(|profile| profile == "release") {
        build.arg("--release");
    }
    let status = build.status().unwrap();
    assert!(status.success(), "building {name}: {status}");
    let binary = profile_dir.join(name);
    assert!(binary.exists(), "{} after the build", binary.display());
    binary
}

/// A fresh, empty directory for one test.
pub fn temp_dir(tag: &str) -> PathBuf {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_nanos();
    let dir = std::env::temp_dir().join(format!("torq-perf-test-{tag}-{}-{nanos}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir
}
