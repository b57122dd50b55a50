//! Prompt wake-ups for the threads that wait for a commit's events: a
//! plugin's receiving thread (or a process-mode plugin's feed).
//!
//! The ledger thread publishes a block's events and goes on at once with
//! the next block, a millisecond of CPU (the store's write); a plugin's
//! thread woken by the publish waited for a CPU until the ledger blocked
//! in its `fdatasync` or used up its time slice. Linux's scheduler (EEVDF,
//! 6.12 and later) lets a thread ask for a shorter slice, and a woken
//! thread with a shorter slice than the running one preempts it: the
//! plugin's few microseconds of work then come before the rest of the
//! ledger's block instead of after it. The thread's share of the CPU does
//! not change, nor does anything while it sleeps.
//!
//! Row 3d, 2026-12-07, one node under open-loop `mode=commit` posts at
//! 1,000 tx/s, 2 s `perf sched` captures alternating the plugins' threads'
//! slice between the default (1.4 ms on this VM) and the shortest allowed,
//! three rounds, load average 12 to 16: the wake-up of the `websocket`
//! plugin's thread by the ledger took p50 135, 71, 249 µs (means 375, 265,
//! 648) with the default and p50 26, 3, 3 µs (means 47, 247, 152) with the
//! short slice. Full `eventhost-bench commit` runs alternating the builds
//! without and with it, three pairs, load average 2 to 4: POST → WebSocket
//! message p50 2.06/1.95/2.02 → 1.93/1.85/1.93 ms, p99 7.72/4.64/4.88 →
//! 4.53/4.42/4.24 ms; the receiving threads took about 20 µs more CPU per
//! transaction in that load (they now run beside the ledger's block rather
//! than after it), rows 3a and 3f and the idle node's CPU did not move.

/// The shortest slice Linux accepts for a normal thread.
#[cfg(target_os = "linux")]
const SHORT_SLICE_NS: u64 = 100_000;

/// Asks the scheduler to let the calling thread preempt a running thread
/// with a longer slice when it is woken: for a thread about to wait for
/// events (the exchange's receivers), once per thread. Threads it starts
/// afterwards do not inherit it. Kernels without custom slices (before
/// 6.12) ignore it; a thread under a real-time or idle policy, or one the
/// call is refused for, is left as it was.
pub fn prefer_prompt_wakeups() {
    #[cfg(target_os = "linux")]
    {
        thread_local! {
            static ASKED: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
        }
        if !ASKED.replace(true) {
            linux::set_slice(SHORT_SLICE_NS);
        }
    }
}

#[cfg(target_os = "linux")]
mod linux {
    /// `struct sched_attr` of `sched_setattr(2)` (its first version, which
    /// every kernel since 3.14 takes).
    #[repr(C)]
    #[derive(Default)]
    struct SchedAttr {
        size: u32,
        policy: u32,
        flags: u64,
        nice: i32,
        priority: u32,
        runtime: u64,
        deadline: u64,
        period: u64,
    }

    /// `sched_setattr(2)`: children start with the default attributes.
    const SCHED_FLAG_RESET_ON_FORK: u64 = 0x01;

    /// Whether the kernel took it.
    pub(super) fn set_slice(slice_ns: u64) -> bool {
        let mut attr = SchedAttr::default();
        let size = std::mem::size_of::<SchedAttr>() as u32;
        // Read first, so that the thread's policy and nice value stay.
        // SAFETY: `attr` is a `sched_attr` of `size` bytes, written by the
        // kernel; 0 is the calling thread.
        let read = unsafe {
            libc::syscall(
                libc::SYS_sched_getattr,
                0,
                &mut attr as *mut SchedAttr,
                size,
                0,
            )
        };
        let normal = [libc::SCHED_OTHER, libc::SCHED_BATCH].contains(&(attr.policy as i32));
        if read != 0 || !normal {
            return false;
        }
        attr.size = size;
        // Threads it starts keep the default: they are not the ones the
        // ledger wakes (the websocket plugin's runtime, when it inherited
        // the short slice, took half as much CPU again in row 3d's load).
        attr.flags = SCHED_FLAG_RESET_ON_FORK;
        attr.runtime = slice_ns;
        // SAFETY: as above; the kernel only reads `attr`.
        let set =
            unsafe { libc::syscall(libc::SYS_sched_setattr, 0, &attr as *const SchedAttr, 0) };
        if set != 0 {
            tracing::debug!(
                "cannot shorten this thread's time slice: {}",
                std::io::Error::last_os_error()
            );
        }
        set == 0
    }
}

#[cfg(all(test, target_os = "linux"))]
mod tests {
    /// The calling thread's slice as the kernel reports it, on kernels
    /// that report one (`se.slice`, 6.6 and later).
    fn slice_ns() -> Option<u64> {
        let sched = std::fs::read_to_string("/proc/thread-self/sched").ok()?;
        let line = sched.lines().find(|l| l.starts_with("se.slice"))?;
        line.rsplit(':').next()?.trim().parse().ok()
    }

    #[test]
    fn a_thread_that_asks_gets_the_short_slice_and_others_keep_theirs() {
        let before = std::thread::spawn(slice_ns).join().unwrap();
        let (took, after) = std::thread::spawn(|| {
            let took = super::linux::set_slice(super::SHORT_SLICE_NS);
            (took, slice_ns())
        })
        .join()
        .unwrap();
        let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let custom_slices = kernel
            .split(['.', '-'])
            .take(2)
            .map(|n| n.parse::<u32>().unwrap_or(0))
            .collect::<Vec<_>>()
            >= vec![6, 12];
        match (before, after) {
            // A sandbox may refuse the call (seccomp); the node then runs
            // as before, and there is nothing to check.
            (Some(before), Some(after)) if custom_slices && took => {
                assert_eq!(after, super::SHORT_SLICE_NS, "kernel {kernel}");
                assert_ne!(before, super::SHORT_SLICE_NS, "only the thread that asked");
            }
            // Older kernels ignore the request; it must not fail there.
            _ => {}
        }
    }
}
