//! Socket-path safety and binding (DESIGN.md "Process and lifecycle").
//!
//! [`bind`] prepares and binds a relay's Unix socket path, in this order:
//!
//! 1. **Parent directory.** A missing parent is created (with any missing ancestors) with the
//!    given parent mode (default 0750, PROTOCOL.md §6), chmod-ed explicitly so the umask cannot
//!    narrow or widen it. An existing immediate parent is refused when it is not a directory,
//!    when it is owned by a uid other than the process's effective uid, or when it is writable
//!    by others (`mode & 0o002`). A parent that is itself a symlink is followed, but the link
//!    must be owned by this user or by root. Only the immediate parent is checked.
//! 2. **Lock.** An exclusive, non-blocking `flock` is taken on `<path>.lock` (created with mode
//!    0600, never through a symlink). If another process holds it, binding fails with
//!    [`SocketError::LockHeld`]. The lock is held for the lifetime of the returned
//!    [`SocketGuard`]. The `.lock` file is deliberately left on disk when the guard goes away:
//!    unlinking a lock file opens a race in which two relays lock two different inodes.
//! 3. **Existing path.** Inspected with `lstat` (symlinks are never followed). A socket is probed
//!    with a connect: success means a live relay owns it ([`SocketError::LiveRelay`]);
//!    `ECONNREFUSED` means it is stale, and it is removed. Anything else (regular file,
//!    directory, symlink, fifo, device) is refused ([`SocketError::NotASocket`]) and never
//!    deleted.
//! 4. **Bind.** The listener is bound with the process umask set to `!socket_mode & 0o777`, so
//!    the socket file is created with exactly `socket_mode` (default 0660) and there is no window
//!    with wider permissions; the umask is restored immediately afterwards. The mode is then
//!    verified (and chmod-ed if a filesystem disagreed), the socket file's `(dev, ino)` recorded,
//!    and the listener made non-blocking.
//!
//! **The umask is process-wide.** Calls to [`bind`] are serialized by a mutex inside this module,
//! but any *other* thread creating files while a bind is in progress would see the temporary
//! umask. Bind all listeners during start-up, before spawning threads that create files.
//!
//! Cleanup: dropping the [`SocketGuard`] (or calling [`SocketGuard::remove`]) unlinks the socket
//! file only if the path still names the socket this process bound (same device and inode), so
//! a path replaced in the meantime (by an operator or by another relay) is left alone. The guard
//! keeps an `O_PATH` descriptor to the bound socket file: that pins the inode, so its number
//! cannot be recycled for a replacement file (tmpfs reuses inode numbers at once) while the guard
//! lives, and the device-and-inode comparison is exact.

use std::ffi::OsString;
use std::fs::{self, DirBuilder, Permissions};
use std::io;
use std::os::fd::OwnedFd;
use std::os::unix::fs::{DirBuilderExt, FileTypeExt, MetadataExt, PermissionsExt};
use std::os::unix::net::{UnixListener, UnixStream};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rustix::fs::{FlockOperation, Mode, OFlags};
use rustix::io::Errno;

/// Default mode of the socket file (PROTOCOL.md §6).
pub const DEFAULT_SOCKET_MODE: u32 = 0o660;

/// Default mode of a parent directory created by [`bind`] (PROTOCOL.md §6).
pub const DEFAULT_PARENT_MODE: u32 = 0o750;

/// Mode of the `<path>.lock` file when [`bind`] creates it.
const LOCK_FILE_MODE: u32 = 0o600;

/// Serializes the umask window of [`bind`] across threads of this process.
static UMASK_LOCK: Mutex<()> = Mutex::new(());

/// Why [`bind`] (or [`SocketGuard::remove`]) failed. Every message names the path and the fix.
#[derive(Debug, thiserror::Error)]
pub enum SocketError {
    /// The socket path has no final file-name component (e.g. `/` or `dir/..`).
    #[error("socket path {} has no file name: pass a path such as /tmp/torq/market_data.sock", path.display())]
    InvalidPath {
        /// The path as given.
        path: PathBuf,
    },
    /// A requested mode has bits outside the allowed set.
    #[error("{what} mode {mode:04o} has bits outside {allowed:04o}: pass plain permission bits such as 0660")]
    InvalidMode {
        /// Which mode: `"socket"` or `"parent directory"`.
        what: &'static str,
        /// The requested mode.
        mode: u32,
        /// The bits that are allowed.
        allowed: u32,
    },
    /// The parent of the socket path exists but is not a directory.
    #[error("parent {} exists and is not a directory: remove it yourself or choose another --socket", path.display())]
    ParentNotDirectory {
        /// The parent path.
        path: PathBuf,
    },
    /// The parent directory is owned by another user.
    #[error(
        "parent directory {} is owned by uid {owner}, not by this process (uid {euid}): use a directory you own",
        path.display()
    )]
    ParentOwner {
        /// The parent directory.
        path: PathBuf,
        /// Its owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// The parent is a symlink owned by neither this user nor root.
    #[error(
        "parent directory {} is a symlink owned by uid {owner}, not by this process (uid {euid}) or root: \
         use a real directory you own",
        path.display()
    )]
    ParentSymlink {
        /// The parent path (the symlink).
        path: PathBuf,
        /// The symlink's owner.
        owner: u32,
        /// This process's effective uid.
        euid: u32,
    },
    /// The parent directory is writable by others.
    #[error(
        "parent directory {} is writable by others (mode {mode:04o}): run `chmod o-w` on it or use a \
         directory only you can write",
        path.display()
    )]
    ParentWritableByOthers {
        /// The parent directory.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// Another process holds the exclusive lock on `<path>.lock`.
    #[error(
        "another relay holds the lock {} (socket {}): stop it or choose another --socket",
        lock_path.display(),
        path.display()
    )]
    LockHeld {
        /// The lock file.
        lock_path: PathBuf,
        /// The socket path it protects.
        path: PathBuf,
    },
    /// A socket at the path accepted a connection: a running relay owns it.
    #[error("{} is held by a running relay (connect succeeded): stop it or choose another --socket", path.display())]
    LiveRelay {
        /// The socket path.
        path: PathBuf,
    },
    /// Something other than a socket is at the path; it is never deleted.
    #[error(
        "{} exists and is not a socket ({kind}): refusing to delete it; remove it yourself or choose another --socket",
        path.display()
    )]
    NotASocket {
        /// The socket path.
        path: PathBuf,
        /// What is there: `"regular file"`, `"directory"`, `"symlink"`, ...
        kind: &'static str,
    },
    /// An operating-system call failed.
    #[error("failed to {op} {}: {source}", path.display())]
    Io {
        /// The path the operation was about.
        path: PathBuf,
        /// The operation, as a verb phrase (`"create directory"`, `"bind socket"`, ...).
        op: &'static str,
        /// The underlying error.
        source: io::Error,
    },
}

impl SocketError {
    fn io(path: &Path, op: &'static str, source: impl Into<io::Error>) -> Self {
        SocketError::Io { path: path.to_path_buf(), op, source: source.into() }
    }
}

/// A bound, non-blocking listener together with the duty to clean up its socket path.
///
/// Use [`BoundSocket::into_parts`] to move the listener into mio
/// (`mio::net::UnixListener::from_std`) while keeping the [`SocketGuard`] alive; dropping the
/// `BoundSocket` drops both (the guard removes the socket file, see [`SocketGuard`]).
#[derive(Debug)]
pub struct BoundSocket {
    listener: UnixListener,
    guard: SocketGuard,
}

impl BoundSocket {
    /// The bound listener (non-blocking).
    pub fn listener(&self) -> &UnixListener {
        &self.listener
    }

    /// The socket path as given to [`bind`].
    pub fn path(&self) -> &Path {
        self.guard.path()
    }

    /// The guard that owns the lock and the socket-file cleanup.
    pub fn guard(&self) -> &SocketGuard {
        &self.guard
    }

    /// Splits into the listener (e.g. for `mio::net::UnixListener::from_std`) and the guard. Keep
    /// the guard alive as long as the listener serves: dropping it releases the lock and removes
    /// the socket file.
    pub fn into_parts(self) -> (UnixListener, SocketGuard) {
        (self.listener, self.guard)
    }

    /// Closes the listener, then removes the socket file as [`SocketGuard::remove`] does.
    pub fn remove(self) -> Result<bool, SocketError> {
        let (listener, guard) = self.into_parts();
        drop(listener);
        guard.remove()
    }
}

/// Holds the `<path>.lock` flock and removes the socket file when dropped.
///
/// The socket file is removed only if the path still names the socket that [`bind`] created
/// (same device and inode); anything else found there is left alone (and logged). The lock is
/// released when the guard goes away; the `.lock` file itself stays on disk by design.
#[derive(Debug)]
pub struct SocketGuard {
    path: PathBuf,
    lock_path: PathBuf,
    dev: u64,
    ino: u64,
    /// Holding the descriptor holds the flock.
    _lock: OwnedFd,
    /// `O_PATH` descriptor of the bound socket file: pins its inode so `(dev, ino)` stays unique.
    _pin: OwnedFd,
    /// Set once the cleanup has run, so `Drop` does not run it again.
    done: bool,
}

impl SocketGuard {
    /// The socket path.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The lock file (`<path>.lock`).
    pub fn lock_path(&self) -> &Path {
        &self.lock_path
    }

    /// The `(device, inode)` of the socket file recorded right after binding.
    pub fn dev_ino(&self) -> (u64, u64) {
        (self.dev, self.ino)
    }

    /// Removes the socket file now if the path still names our socket, then releases the lock.
    ///
    /// Returns `Ok(true)` if the file was removed, `Ok(false)` if the path is gone or now names
    /// something else (left untouched).
    pub fn remove(mut self) -> Result<bool, SocketError> {
        self.done = true;
        cleanup(&self.path, self.dev, self.ino)
    }
}

impl Drop for SocketGuard {
    fn drop(&mut self) {
        if self.done {
            return;
        }
        self.done = true;
        if let Err(e) = cleanup(&self.path, self.dev, self.ino) {
            log::warn!("{e}");
        }
    }
}

/// Unlinks `path` if it is still the socket with the given device and inode.
fn cleanup(path: &Path, dev: u64, ino: u64) -> Result<bool, SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(false),
        Err(e) => return Err(SocketError::io(path, "inspect", e)),
    };
    if !meta.file_type().is_socket() || meta.dev() != dev || meta.ino() != ino {
        log::warn!(
            "{} no longer names the socket this relay bound ({}): leaving it in place",
            path.display(),
            file_kind(&meta.file_type())
        );
        return Ok(false);
    }
    match fs::remove_file(path) {
        Ok(()) => Ok(true),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(false),
        Err(e) => Err(SocketError::io(path, "remove socket", e)),
    }
}

/// Creates the missing parent directory of the socket `path` with `parent_mode`, or checks an
/// existing one (step 1 of [`bind`], which repeats it); lets start-up create the directory
/// before it opens other files there (the audit file) and before the socket exists.
pub fn prepare_parent(path: &Path, parent_mode: u32) -> Result<(), SocketError> {
    if parent_mode & !0o7777 != 0 {
        return Err(SocketError::InvalidMode {
            what: "parent directory",
            mode: parent_mode,
            allowed: 0o7777,
        });
    }
    if path.file_name().is_none() {
        return Err(SocketError::InvalidPath { path: path.to_path_buf() });
    }
    let parent = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    ensure_parent(parent, parent_mode)
}

/// Prepares `path` and binds a non-blocking listener on it; see the module docs for the steps.
///
/// `socket_mode` must be within `0o777` and `parent_mode` within `0o7777`
/// ([`DEFAULT_SOCKET_MODE`], [`DEFAULT_PARENT_MODE`]). Temporarily changes the process-wide
/// umask: call it before other threads start creating files.
pub fn bind(path: &Path, socket_mode: u32, parent_mode: u32) -> Result<BoundSocket, SocketError> {
    if socket_mode & !0o777 != 0 {
        return Err(SocketError::InvalidMode { what: "socket", mode: socket_mode, allowed: 0o777 });
    }
    // 1. Parent directory.
    prepare_parent(path, parent_mode)?;

    // 2. Lock.
    let lock_path = lock_path_for(path);
    let lock = take_lock(path, &lock_path)?;

    // 3. Whatever is at the path already.
    clear_stale(path)?;

    // 4. Bind under the umask that yields exactly `socket_mode`.
    let listener = {
        let _serialized = UMASK_LOCK.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let old = rustix::process::umask(Mode::from_bits_truncate(!socket_mode & 0o777));
        let bound = UnixListener::bind(path);
        rustix::process::umask(old);
        bound.map_err(|e| SocketError::io(path, "bind socket", e))?
    };
    let (pin, meta) = pin_socket_file(path)?;
    let guard = SocketGuard {
        path: path.to_path_buf(),
        lock_path,
        dev: meta.dev(),
        ino: meta.ino(),
        _lock: lock,
        _pin: pin,
        done: false,
    };
    if meta.mode() & 0o7777 != socket_mode {
        fs::set_permissions(path, Permissions::from_mode(socket_mode))
            .map_err(|e| SocketError::io(path, "set the mode of", e))?;
    }
    listener
        .set_nonblocking(true)
        .map_err(|e| SocketError::io(path, "make non-blocking the listener on", e))?;
    Ok(BoundSocket { listener, guard })
}

/// Opens the freshly bound socket file with `O_PATH` (never through a symlink) and stats it.
fn pin_socket_file(path: &Path) -> Result<(OwnedFd, fs::Metadata), SocketError> {
    let op = "open the bound socket";
    let fd = rustix::fs::open(path, OFlags::PATH | OFlags::NOFOLLOW | OFlags::CLOEXEC, Mode::empty())
        .map_err(|e| SocketError::io(path, op, e))?;
    let file = fs::File::from(fd);
    let meta = file.metadata().map_err(|e| SocketError::io(path, op, e))?;
    if !meta.file_type().is_socket() {
        // Replaced between bind and open: not ours to clean up or serve.
        return Err(SocketError::io(path, op, io::Error::other("the path no longer names the bound socket")));
    }
    Ok((OwnedFd::from(file), meta))
}

/// `<path>.lock`.
fn lock_path_for(path: &Path) -> PathBuf {
    let mut s: OsString = path.as_os_str().to_owned();
    s.push(".lock");
    PathBuf::from(s)
}

/// Creates a missing parent, or checks an existing one.
fn ensure_parent(parent: &Path, mode: u32) -> Result<(), SocketError> {
    match fs::symlink_metadata(parent) {
        Ok(_) => check_parent(parent),
        Err(e) if e.kind() == io::ErrorKind::NotFound => {
            if create_dirs(parent, mode)? {
                Ok(())
            } else {
                // Someone else created it between our look and our mkdir: check theirs.
                check_parent(parent)
            }
        }
        Err(e) => Err(SocketError::io(parent, "inspect", e)),
    }
}

/// Creates `dir` and its missing ancestors with `mode`; returns whether `dir` itself was created
/// by this call (false if it appeared concurrently).
fn create_dirs(dir: &Path, mode: u32) -> Result<bool, SocketError> {
    if let Some(up) = dir.parent()
        && !up.as_os_str().is_empty()
    {
        match fs::symlink_metadata(up) {
            Ok(_) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {
                create_dirs(up, mode)?;
            }
            Err(e) => return Err(SocketError::io(up, "inspect", e)),
        }
    }
    match DirBuilder::new().mode(mode).create(dir) {
        Ok(()) => {
            // mkdir applies the umask; set exactly the requested mode.
            fs::set_permissions(dir, Permissions::from_mode(mode))
                .map_err(|e| SocketError::io(dir, "set the mode of directory", e))?;
            Ok(true)
        }
        Err(e) if e.kind() == io::ErrorKind::AlreadyExists => Ok(false),
        Err(e) => Err(SocketError::io(dir, "create directory", e)),
    }
}

/// Refuses a parent that is not a directory, is owned by someone else, or is writable by others.
fn check_parent(parent: &Path) -> Result<(), SocketError> {
    let euid = rustix::process::geteuid().as_raw();
    let link = fs::symlink_metadata(parent).map_err(|e| SocketError::io(parent, "inspect", e))?;
    if link.file_type().is_symlink() && link.uid() != euid && link.uid() != 0 {
        return Err(SocketError::ParentSymlink { path: parent.to_path_buf(), owner: link.uid(), euid });
    }
    let meta = fs::metadata(parent).map_err(|e| SocketError::io(parent, "inspect", e))?;
    if !meta.is_dir() {
        return Err(SocketError::ParentNotDirectory { path: parent.to_path_buf() });
    }
    if meta.uid() != euid {
        return Err(SocketError::ParentOwner { path: parent.to_path_buf(), owner: meta.uid(), euid });
    }
    if meta.mode() & 0o002 != 0 {
        return Err(SocketError::ParentWritableByOthers {
            path: parent.to_path_buf(),
            mode: meta.mode() & 0o7777,
        });
    }
    Ok(())
}

/// Opens (creating, mode 0600, never through a symlink) and exclusively flocks the lock file.
fn take_lock(path: &Path, lock_path: &Path) -> Result<OwnedFd, SocketError> {
    let fd = rustix::fs::open(
        lock_path,
        OFlags::CREATE | OFlags::RDWR | OFlags::NOFOLLOW | OFlags::CLOEXEC,
        Mode::from_bits_truncate(LOCK_FILE_MODE),
    )
    .map_err(|e| SocketError::io(lock_path, "open lock file", e))?;
    match rustix::fs::flock(&fd, FlockOperation::NonBlockingLockExclusive) {
        Ok(()) => Ok(fd),
        Err(Errno::WOULDBLOCK) => {
            Err(SocketError::LockHeld { lock_path: lock_path.to_path_buf(), path: path.to_path_buf() })
        }
        Err(e) => Err(SocketError::io(lock_path, "lock", e)),
    }
}

/// Removes a stale socket at `path`; refuses a live one or anything that is not a socket.
fn clear_stale(path: &Path) -> Result<(), SocketError> {
    let meta = match fs::symlink_metadata(path) {
        Ok(meta) => meta,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(()),
        Err(e) => return Err(SocketError::io(path, "inspect", e)),
    };
    let file_type = meta.file_type();
    if !file_type.is_socket() {
        return Err(SocketError::NotASocket { path: path.to_path_buf(), kind: file_kind(&file_type) });
    }
    match UnixStream::connect(path) {
        Ok(_probe) => Err(SocketError::LiveRelay { path: path.to_path_buf() }),
        Err(e) if e.kind() == io::ErrorKind::ConnectionRefused => {
            log::info!("removing stale socket {}", path.display());
            match fs::remove_file(path) {
                Ok(()) => Ok(()),
                Err(e) if e.kind() == io::ErrorKind::NotFound => Ok(()),
                Err(e) => Err(SocketError::io(path, "remove stale socket", e)),
            }
        }
        Err(e) => Err(SocketError::io(path, "connect to the existing socket", e)),
    }
}

/// A human name for a file type, for error messages.
fn file_kind(file_type: &fs::FileType) -> &'static str {
    if file_type.is_file() {
        "regular file"
    } else if file_type.is_dir() {
        "directory"
    } else if file_type.is_symlink() {
        "symlink"
    } else if file_type.is_socket() {
        "socket"
    } else if file_type.is_fifo() {
        "fifo"
    } else if file_type.is_char_device() {
        "character device"
    } else if file_type.is_block_device() {
        "block device"
    } else {
        "unknown file type"
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::reactor::accept::peer_credentials;
    use crate::relays::Peer;
    use std::sync::atomic::{AtomicUsize, Ordering};

    /// A fresh, uniquely named directory under the system temp dir, removed on drop.
    struct TempDir(PathBuf);

    impl TempDir {
        fn new(name: &str) -> TempDir {
            static COUNTER: AtomicUsize = AtomicUsize::new(0);
            let n = COUNTER.fetch_add(1, Ordering::Relaxed);
            let dir = std::env::temp_dir().join(format!("torq-socket-{}-{name}-{n}", std::process::id()));
            let _ = fs::remove_dir_all(&dir);
            fs::create_dir(&dir).expect("create temp dir");
            fs::set_permissions(&dir, Permissions::from_mode(0o700)).expect("chmod temp dir");
            TempDir(dir)
        }

        fn join(&self, p: &str) -> PathBuf {
            self.0.join(p)
        }
    }

    impl Drop for TempDir {
        fn drop(&mut self) {
            let _ = fs::remove_dir_all(&self.0);
        }
    }

    fn mode_of(p: &Path) -> u32 {
        fs::symlink_metadata(p).expect("stat").mode() & 0o7777
    }

    fn bind_default(path: &Path) -> Result<BoundSocket, SocketError> {
        bind(path, DEFAULT_SOCKET_MODE, DEFAULT_PARENT_MODE)
    }

    #[test]
    fn creates_missing_parent_with_0750() {
        let tmp = TempDir::new("parent");
        let path = tmp.join("a/b/relay.sock");
        let bound = bind_default(&path).expect("bind");
        assert_eq!(mode_of(&tmp.join("a/b")), 0o750);
        assert_eq!(mode_of(&tmp.join("a")), 0o750);
        assert!(fs::symlink_metadata(&path).expect("stat").file_type().is_socket());
        drop(bound);
    }

    #[test]
    fn parent_mode_is_exact_even_when_wider_than_umask() {
        let tmp = TempDir::new("parent-mode");
        let path = tmp.join("d/relay.sock");
        let _bound = bind(&path, 0o660, 0o770).expect("bind");
        assert_eq!(mode_of(&tmp.join("d")), 0o770);
    }

    #[test]
    fn socket_mode_defaults_to_0660() {
        let tmp = TempDir::new("mode660");
        let path = tmp.join("relay.sock");
        let bound = bind_default(&path).expect("bind");
        assert_eq!(mode_of(&path), 0o660);
        assert_eq!(mode_of(&lock_path_for(&path)) & 0o077, 0);
        drop(bound);
    }

    #[test]
    fn socket_mode_0600_when_asked() {
        let tmp = TempDir::new("mode600");
        let path = tmp.join("relay.sock");
        let _bound = bind(&path, 0o600, DEFAULT_PARENT_MODE).expect("bind");
        assert_eq!(mode_of(&path), 0o600);
    }

    #[test]
    fn listener_is_non_blocking_and_accepts() {
        let tmp = TempDir::new("nonblock");
        let path = tmp.join("relay.sock");
        let bound = bind_default(&path).expect("bind");
        let err = bound.listener().accept().expect_err("no client yet");
        assert_eq!(err.kind(), io::ErrorKind::WouldBlock);
        let _client = UnixStream::connect(&path).expect("connect");
        let (server, _) = bound.listener().accept().expect("accept");
        let peer = peer_credentials(&server).expect("peercred");
        assert_eq!(peer.pid, Some(std::process::id() as i32));
    }

    #[test]
    fn lock_held_by_another_bound_socket_is_refused() {
        let tmp = TempDir::new("lock");
        let path = tmp.join("relay.sock");
        let first = bind_default(&path).expect("first bind");
        let err = bind_default(&path).expect_err("second bind must fail");
        assert!(matches!(err, SocketError::LockHeld { .. }), "{err}");
        assert!(err.to_string().contains("relay.sock.lock"), "{err}");
        // The first relay's socket is untouched and still live.
        assert_eq!(fs::symlink_metadata(&path).expect("stat").ino(), first.guard().dev_ino().1);
        UnixStream::connect(&path).expect("first still serves");
        drop(first);
        // Lock released: binding again works.
        bind_default(&path).expect("bind after release");
    }

    #[test]
    fn live_socket_without_lock_is_refused() {
        let tmp = TempDir::new("live");
        let path = tmp.join("relay.sock");
        let live = UnixListener::bind(&path).expect("std bind");
        let err = bind_default(&path).expect_err("live socket must be refused");
        assert!(matches!(err, SocketError::LiveRelay { .. }), "{err}");
        assert!(err.to_string().contains(&*path.to_string_lossy()), "{err}");
        assert!(path.exists());
        drop(live);
    }

    #[test]
    fn stale_socket_is_replaced() {
        let tmp = TempDir::new("stale");
        let path = tmp.join("relay.sock");
        let stale = UnixListener::bind(&path).expect("std bind");
        drop(stale);
        assert!(fs::symlink_metadata(&path).expect("stale file remains").file_type().is_socket());
        let refused = UnixStream::connect(&path).expect_err("nobody listens");
        assert_eq!(refused.kind(), io::ErrorKind::ConnectionRefused);
        let bound = bind_default(&path).expect("bind over stale");
        // (Inode numbers may be reused by tmpfs, so compare against the guard, not the old file.)
        let meta = fs::symlink_metadata(&path).expect("stat");
        assert_eq!(bound.guard().dev_ino(), (meta.dev(), meta.ino()));
        UnixStream::connect(&path).expect("connect to new socket");
    }

    #[test]
    fn regular_file_is_refused_and_kept() {
        let tmp = TempDir::new("file");
        let path = tmp.join("relay.sock");
        fs::write(&path, b"keep me").expect("write");
        let err = bind_default(&path).expect_err("must refuse");
        assert!(matches!(err, SocketError::NotASocket { kind: "regular file", .. }), "{err}");
        assert_eq!(fs::read(&path).expect("still there"), b"keep me");
    }

    #[test]
    fn directory_is_refused_and_kept() {
        let tmp = TempDir::new("dir");
        let path = tmp.join("relay.sock");
        fs::create_dir(&path).expect("mkdir");
        let err = bind_default(&path).expect_err("must refuse");
        assert!(matches!(err, SocketError::NotASocket { kind: "directory", .. }), "{err}");
        assert!(path.is_dir());
    }

    #[test]
    fn symlink_is_refused_and_kept() {
        let tmp = TempDir::new("symlink");
        let target = tmp.join("target.sock");
        let live = UnixListener::bind(&target).expect("std bind");
        let path = tmp.join("relay.sock");
        std::os::unix::fs::symlink(&target, &path).expect("symlink");
        let err = bind_default(&path).expect_err("must refuse");
        assert!(matches!(err, SocketError::NotASocket { kind: "symlink", .. }), "{err}");
        assert!(fs::symlink_metadata(&path).expect("still there").file_type().is_symlink());
        drop(live);
    }

    #[test]
    fn parent_writable_by_others_is_refused() {
        let tmp = TempDir::new("worldw");
        let parent = tmp.join("open");
        fs::create_dir(&parent).expect("mkdir");
        fs::set_permissions(&parent, Permissions::from_mode(0o777)).expect("chmod");
        let err = bind_default(&parent.join("relay.sock")).expect_err("must refuse");
        assert!(matches!(err, SocketError::ParentWritableByOthers { mode: 0o777, .. }), "{err}");
        assert!(!parent.join("relay.sock.lock").exists(), "no lock file in a refused parent");
    }

    #[test]
    fn parent_owned_by_another_user_is_refused() {
        if rustix::process::geteuid().as_raw() != 0 {
            eprintln!("skipped: needs root to chown");
            return;
        }
        let tmp = TempDir::new("owner");
        let parent = tmp.join("theirs");
        fs::create_dir(&parent).expect("mkdir");
        fs::set_permissions(&parent, Permissions::from_mode(0o755)).expect("chmod");
        std::os::unix::fs::chown(&parent, Some(65534), Some(65534)).expect("chown");
        let err = bind_default(&parent.join("relay.sock")).expect_err("must refuse");
        assert!(matches!(err, SocketError::ParentOwner { owner: 65534, euid: 0, .. }), "{err}");
        assert!(err.to_string().contains("use a directory you own"), "{err}");
    }

    #[test]
    fn parent_that_is_a_file_is_refused() {
        let tmp = TempDir::new("parentfile");
        let parent = tmp.join("file");
        fs::write(&parent, b"x").expect("write");
        let err = bind_default(&parent.join("relay.sock")).expect_err("must refuse");
        assert!(matches!(err, SocketError::ParentNotDirectory { .. }), "{err}");
    }

    #[test]
    fn drop_removes_socket_and_keeps_lock_file() {
        let tmp = TempDir::new("drop");
        let path = tmp.join("relay.sock");
        let bound = bind_default(&path).expect("bind");
        let (listener, guard) = bound.into_parts();
        drop(listener);
        assert!(path.exists());
        drop(guard);
        assert!(fs::symlink_metadata(&path).is_err(), "socket removed");
        assert!(lock_path_for(&path).exists(), ".lock file is left by design");
    }

    #[test]
    fn explicit_remove_reports_what_it_did() {
        let tmp = TempDir::new("remove");
        let path = tmp.join("relay.sock");
        assert!(bind_default(&path).expect("bind").remove().expect("remove"));
        assert!(fs::symlink_metadata(&path).is_err());
        let bound = bind_default(&path).expect("bind");
        fs::remove_file(&path).expect("rm");
        assert!(!bound.remove().expect("remove of a missing path"));
    }

    #[test]
    fn drop_leaves_a_replacement_file_alone() {
        let tmp = TempDir::new("replaced");
        let path = tmp.join("relay.sock");
        let bound = bind_default(&path).expect("bind");
        fs::remove_file(&path).expect("rm our socket");
        fs::write(&path, b"not yours").expect("write");
        drop(bound);
        assert_eq!(fs::read(&path).expect("replacement kept"), b"not yours");
    }

    #[test]
    fn drop_leaves_a_replacement_socket_alone() {
        let tmp = TempDir::new("replaced-sock");
        let path = tmp.join("relay.sock");
        let (listener, guard) = bind_default(&path).expect("bind").into_parts();
        drop(listener);
        fs::remove_file(&path).expect("rm our socket");
        let other = UnixListener::bind(&path).expect("someone else binds");
        drop(guard);
        assert!(fs::symlink_metadata(&path).expect("kept").file_type().is_socket());
        UnixStream::connect(&path).expect("other socket still serves");
        drop(other);
    }

    #[test]
    fn invalid_inputs_are_refused() {
        let err = bind(Path::new("/"), 0o660, 0o750).expect_err("no file name");
        assert!(matches!(err, SocketError::InvalidPath { .. }), "{err}");
        let tmp = TempDir::new("invalid");
        let err = bind(&tmp.join("s.sock"), 0o4660, 0o750).expect_err("setuid socket mode");
        assert!(matches!(err, SocketError::InvalidMode { what: "socket", .. }), "{err}");
        let err = bind(&tmp.join("s.sock"), 0o660, 0o17750).expect_err("bad parent mode");
        assert!(matches!(err, SocketError::InvalidMode { what: "parent directory", .. }), "{err}");
    }

    #[test]
    fn peer_credentials_of_a_pair_are_ours() {
        let (a, b) = UnixStream::pair().expect("pair");
        let peer = peer_credentials(&a).expect("peercred");
        assert_eq!(peer.pid, Some(std::process::id() as i32));
        assert_eq!(peer.uid, rustix::process::geteuid().as_raw());
        assert_eq!(peer.gid, rustix::process::getegid().as_raw());
        assert_eq!(peer_credentials(&b).expect("peercred"), peer);
    }

    #[test]
    fn peer_display() {
        let peer = Peer { pid: Some(123), uid: 1000, gid: 1001 };
        assert_eq!(peer.to_string(), "pid=123 uid=1000 gid=1001");
        let peer = Peer { pid: None, uid: 0, gid: 0 };
        assert_eq!(peer.to_string(), "pid=? uid=0 gid=0");
    }

    #[test]
    fn error_messages_name_path_and_fix() {
        let e = SocketError::ParentOwner { path: "/x".into(), owner: 1000, euid: 0 };
        assert_eq!(
            e.to_string(),
            "parent directory /x is owned by uid 1000, not by this process (uid 0): use a directory you own"
        );
        let e = SocketError::LiveRelay { path: "/tmp/torq/md.sock".into() };
        assert_eq!(
            e.to_string(),
            "/tmp/torq/md.sock is held by a running relay (connect succeeded): stop it or choose another --socket"
        );
        let e = SocketError::NotASocket { path: "/tmp/torq/md.sock".into(), kind: "regular file" };
        assert_eq!(
            e.to_string(),
            "/tmp/torq/md.sock exists and is not a socket (regular file): refusing to delete it; \
             remove it yourself or choose another --socket"
        );
        let e = SocketError::LockHeld {
            lock_path: "/tmp/torq/md.sock.lock".into(),
            path: "/tmp/torq/md.sock".into(),
        };
        assert!(e.to_string().starts_with("another relay holds the lock /tmp/torq/md.sock.lock"));
    }
}
