//! File descriptors: how many connections a listener may hold open without
//! the node running out of descriptors for everything else.
//!
//! Every open connection is a descriptor, and so are the store's files,
//! the plugins' sockets (the WebSocket plugin's clients) and other
//! listeners. At the default soft limit of 1024 a few hundred slow clients
//! were enough to make `accept` fail with "Too many open files", so the
//! node raises its soft limit to the hard one at start, and a listener's
//! connection cap may use at most half of it: the other half is the
//! reserve of the rest of the node.

use std::sync::OnceLock;

/// Connections a listener holds when `[api] max_connections` is not set:
/// half the open-file limit, up to this many. 4096 connections reading
/// heads of at most `max_header_bytes` (16 KiB by default) hold 64 MiB.
const AUTO_MAX: usize = 4096;

/// The open-file limit a listener sizes its cap from, after raising it.
#[derive(Debug, Clone, Copy)]
pub struct OpenFiles {
    pub limit: u64,
}

/// Why a connection cap cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum CapError {
    #[error(
        "[api] max_connections = {wanted} does not fit the open-file limit of {limit}: half of it is kept for the store, the plugins and other listeners; set max_connections to at most {fits}, or raise the hard limit (ulimit -Hn, systemd LimitNOFILE=)"
    )]
    TooMany {
        wanted: usize,
        limit: u64,
        fits: usize,
    },
}

impl OpenFiles {
    /// Raises the soft limit on open files to the hard limit, once per
    /// process, and returns the limit in force. Where the limit cannot be
    /// read (not Unix), a conservative 1024 is assumed.
    pub fn raise() -> OpenFiles {
        static RAISED: OnceLock<u64> = OnceLock::new();
        let limit = *RAISED.get_or_init(raise_to_hard);
        OpenFiles { limit }
    }

    /// The connection cap: `configured` if it fits in half the limit,
    /// else an error; unset, half the limit up to 4096.
    pub fn connection_cap(self, configured: Option<usize>) -> Result<usize, CapError> {
        let fits = usize::try_from(self.limit / 2).unwrap_or(usize::MAX).max(1);
        match configured {
            Some(wanted) if wanted > fits => Err(CapError::TooMany {
                wanted,
                limit: self.limit,
                fits,
            }),
            Some(wanted) => Ok(wanted),
            None => Ok(fits.min(AUTO_MAX)),
        }
    }
}

#[cfg(unix)]
// rlim_t is u64 on 64-bit Linux, not everywhere.
#[allow(clippy::unnecessary_cast)]
fn raise_to_hard() -> u64 {
    let mut limits = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit writes into the struct we own.
    if unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limits) } != 0 {
        tracing::warn!(
            "cannot read the open-file limit: {}; assuming 1024",
            std::io::Error::last_os_error()
        );
        return 1024;
    }
    let before = limits.rlim_cur;
    // An unlimited hard limit still stops at the kernel's per-process
    // ceiling (fs.nr_open), which setrlimit refuses to exceed.
    let ceiling = std::fs::read_to_string("/proc/sys/fs/nr_open")
        .ok()
        .and_then(|s| s.trim().parse::<libc::rlim_t>().ok())
        .unwrap_or(1 << 20);
    let target = if limits.rlim_max == libc::RLIM_INFINITY {
        ceiling
    } else {
        limits.rlim_max.min(ceiling)
    };
    if target > before {
        let raised = libc::rlimit {
            rlim_cur: target,
            rlim_max: limits.rlim_max,
        };
        // SAFETY: setrlimit reads the struct we own.
        if unsafe { libc::setrlimit(libc::RLIMIT_NOFILE, &raised) } == 0 {
            tracing::info!("raised the open-file limit from {before} to {target}");
            return target as u64;
        }
        tracing::warn!(
            "cannot raise the open-file limit from {before} to {target}: {}",
            std::io::Error::last_os_error()
        );
    }
    before as u64
}

#[cfg(not(unix))]
fn raise_to_hard() -> u64 {
    1024
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_cap_fits_in_half_the_limit() {
        let files = OpenFiles { limit: 1024 };
        assert_eq!(files.connection_cap(None).unwrap(), 512);
        assert_eq!(files.connection_cap(Some(100)).unwrap(), 100);
        let err = files.connection_cap(Some(600)).unwrap_err().to_string();
        assert!(err.contains("at most 512"), "{err}");
        let big = OpenFiles { limit: 1 << 20 };
        assert_eq!(big.connection_cap(None).unwrap(), AUTO_MAX);
    }

    #[test]
    fn raising_is_idempotent_and_never_lowers() {
        let first = OpenFiles::raise().limit;
        assert!(first >= 1);
        assert_eq!(OpenFiles::raise().limit, first);
    }
}
