//! The cursor of a plugin in a child process, in memory the host and the
//! child share: the last event the plugin finished.
//!
//! The child moves it as the plugin finishes events (in
//! [`super::child`], by the acknowledgement rule of thread mode), with one
//! atomic store and no system call; the host reads it. The page is the
//! host's as much as the child's, so whatever the child wrote survives the
//! child's crash, however it dies (SIGKILL included): a restarted plugin
//! never gets again an event it finished, and gets every one it did not.
//!
//! It replaced a `Finished` frame per event on the socket, which cost a
//! system call in the child and a read in the host per event (most of
//! process mode's 8 µs of added CPU per event, benchmark row 6b).
//! Coalescing those frames would have saved the calls but lost, in a
//! crash, the acknowledgements not yet sent: the restarted plugin would
//! have been given events it had finished.

use std::fs::File;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use memmap2::{MmapOptions, MmapRaw};

/// A plugin's cursor, shared between the host and its child process.
pub struct SharedCursor {
    map: MmapRaw,
}

impl SharedCursor {
    /// A cursor at 0 (nothing finished in this run), and the file the
    /// child maps it from.
    pub fn create() -> io::Result<(SharedCursor, File)> {
        let file = anonymous_file()?;
        file.set_len(size_of::<u64>() as u64)?;
        Ok((SharedCursor::open(&file)?, file))
    }

    /// The cursor in `file`, which [`SharedCursor::create`] made.
    pub fn open(file: &File) -> io::Result<SharedCursor> {
        let map = MmapOptions::new().len(size_of::<u64>()).map_raw(file)?;
        Ok(SharedCursor { map })
    }

    fn cell(&self) -> &AtomicU64 {
        // SAFETY: the mapping is at least 8 bytes, page-aligned, and lives
        // as long as `self`; both processes only ever access it through
        // this atomic (the child is this same binary).
        unsafe { AtomicU64::from_ptr(self.map.as_mut_ptr().cast()) }
    }

    /// The plugin finished every event up to `seq`.
    pub fn advance(&self, seq: u64) {
        self.cell().fetch_max(seq, Ordering::Release);
    }

    /// The last event the plugin finished, as far as the child says: the
    /// host takes it as an acknowledgement, which stops at what the plugin
    /// was given.
    pub fn get(&self) -> u64 {
        self.cell().load(Ordering::Acquire)
    }
}

/// A file in memory only, for the mapping.
#[cfg(target_os = "linux")]
fn anonymous_file() -> io::Result<File> {
    use std::os::fd::FromRawFd;
    // SAFETY: a constant C string and flags.
    let fd = unsafe { libc::memfd_create(c"eventhost-plugin-cursor".as_ptr(), libc::MFD_CLOEXEC) };
    if fd < 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: `fd` is a new descriptor that nothing else owns.
    Ok(unsafe { File::from_raw_fd(fd) })
}

/// A file in memory only, for the mapping: an unlinked temporary file where
/// there is no `memfd_create`.
#[cfg(not(target_os = "linux"))]
fn anonymous_file() -> io::Result<File> {
    tempfile::tempfile()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn what_one_mapping_writes_another_of_the_same_file_reads_and_it_never_goes_back() {
        let (host, file) = SharedCursor::create().unwrap();
        let child = SharedCursor::open(&file).unwrap();
        drop(file);
        assert_eq!(host.get(), 0);
        child.advance(7);
        assert_eq!(host.get(), 7);
        child.advance(5);
        assert_eq!(host.get(), 7);
        drop(child);
        assert_eq!(host.get(), 7, "outlives the other mapping");
    }
}
