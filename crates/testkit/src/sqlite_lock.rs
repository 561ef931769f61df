//! Holding a SQLite database's locks from outside SQLite, as a stuck writer,
//! checkpoint or crashed process in another program would.
//!
//! The locks are Linux open-file-description locks (`F_OFD_SETLK`): unlike
//! classic POSIX record locks they conflict with SQLite's own `fcntl` locks
//! even inside the same process, so a test can lock out the store it runs.

use std::fs::File;
use std::os::fd::AsRawFd;
use std::path::Path;

/// The WAL-index byte of the first read-mark lock (`WALINDEX_LOCK_OFFSET` 120
/// + 3: after the write, checkpoint and recovery locks).
const WAL_READ_LOCK_FIRST: i64 = 123;
/// The number of read-mark locks (`WAL_NREADER`).
const WAL_READ_LOCKS: i64 = 5;

/// Every WAL read-mark lock of a database held exclusively: a new read
/// transaction cannot start, and SQLite retries for about 10 seconds (its busy
/// timeout does not shorten that) before it fails with `SQLITE_PROTOCOL`.
/// Released when dropped.
pub struct WalReadersLocked {
    _shm: File,
}

impl WalReadersLocked {
    /// Locks the read marks in `<db>-shm` (the database must be in WAL mode
    /// and open, so the file exists).
    pub fn hold(db: &Path) -> WalReadersLocked {
        let mut shm = db.as_os_str().to_owned();
        shm.push("-shm");
        let file = std::fs::OpenOptions::new()
            .read(true)
            .write(true)
            .open(&shm)
            .unwrap_or_else(|e| panic!("open {}: {e}", Path::new(&shm).display()));
        // SAFETY: `flock` is plain data; all-zero is a valid value of it.
        let mut lock: libc::flock = unsafe { std::mem::zeroed() };
        lock.l_type = libc::F_WRLCK as libc::c_short;
        lock.l_whence = libc::SEEK_SET as libc::c_short;
        lock.l_start = WAL_READ_LOCK_FIRST;
        lock.l_len = WAL_READ_LOCKS;
        // SAFETY: a valid descriptor and a pointer to an initialised `flock`.
        let rc = unsafe { libc::fcntl(file.as_raw_fd(), libc::F_OFD_SETLK, &lock) };
        assert_eq!(
            rc,
            0,
            "lock the WAL read marks: {}",
            std::io::Error::last_os_error()
        );
        WalReadersLocked { _shm: file }
    }
}
