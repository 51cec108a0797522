//! Child processes and directories a driver must not leave behind when it is interrupted: they
//! are registered while they exist, and [`on_signal`] stops the processes (SIGTERM, then
//! SIGKILL half a second later) and removes the directories when the driver gets SIGINT,
//! SIGTERM or SIGHUP, then exits with 128 + the signal.
//!
//! Errors and panics need none of this: the owners' `Drop` stop what they started.

use std::path::{Path, PathBuf};
use std::sync::Mutex;
use std::time::Duration;

use rustix::process::{Pid, Signal, kill_process};

static LIVE: Mutex<Vec<u32>> = Mutex::new(Vec::new());
static DIRS: Mutex<Vec<PathBuf>> = Mutex::new(Vec::new());

/// Remembers a running child.
pub fn register(pid: u32) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).push(pid);
}

/// Forgets a child once it has been reaped (its pid may be reused).
pub fn forget(pid: u32) {
    LIVE.lock().unwrap_or_else(|e| e.into_inner()).retain(|p| *p != pid);
}

/// Remembers a directory to remove on a signal.
pub fn register_dir(dir: &Path) {
    DIRS.lock().unwrap_or_else(|e| e.into_inner()).push(dir.to_path_buf());
}

/// Forgets a directory (removed, or to be kept).
pub fn forget_dir(dir: &Path) {
    DIRS.lock().unwrap_or_else(|e| e.into_inner()).retain(|d| d != dir);
}

/// Starts the thread that cleans up on SIGINT, SIGTERM or SIGHUP.
///
/// # Errors
///
/// When the signal handlers cannot be installed.
pub fn on_signal() -> Result<(), String> {
    use signal_hook::consts::{SIGHUP, SIGINT, SIGTERM};
    let mut signals = signal_hook::iterator::Signals::new([SIGINT, SIGTERM, SIGHUP])
        .map_err(|e| format!("install the signal handlers: {e}"))?;
    std::thread::Builder::new()
        .name("reaper".into())
        .spawn(move || {
            let Some(signal) = signals.forever().next() else { return };
            eprintln!("\ntorq-perf: signal {signal}: stopping the processes started");
            let pids: Vec<u32> = LIVE.lock().unwrap_or_else(|e| e.into_inner()).clone();
            send(&pids, Signal::TERM);
            std::thread::sleep(Duration::from_millis(500));
            send(&pids, Signal::KILL);
            for dir in DIRS.lock().unwrap_or_else(|e| e.into_inner()).iter() {
                _ = std::fs::remove_dir_all(dir);
            }
            std::process::exit(128 + signal);
        })
        .map_err(|e| format!("start the signal thread: {e}"))?;
    Ok(())
}

fn send(pids: &[u32], signal: Signal) {
    for &pid in pids {
        if let Some(pid) = i32::try_from(pid).ok().and_then(Pid::from_raw) {
            _ = kill_process(pid, signal);
        }
    }
}
