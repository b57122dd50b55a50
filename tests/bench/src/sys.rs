//! What the benchmarks read from Linux about themselves and the node they
//! run: CPU time and peak resident memory, and the machine a result was
//! measured on. What /proc says about another process is the tests' own
//! (`support::process`), re-exported here.

use std::fs;
use std::time::Duration;

pub use support::process::{
    children, has_ended, peak_rss_kib, process_cpu_time, process_tree_cpu_time, rss_kib,
    run_queue_wait, threads_cpu_time,
};

/// CPU time (user and system, every thread) this process has used so far.
/// Unlike a rate, CPU per unit of work barely moves when other tenants of
/// a shared machine take turns on its cores.
pub fn cpu_time() -> Duration {
    rusage_cpu_time(libc::RUSAGE_SELF)
}

/// CPU time of this process's children that ended and were waited for
/// (and of their own waited-for children): what a short-lived child
/// process used in its whole life.
pub fn children_cpu_time() -> Duration {
    rusage_cpu_time(libc::RUSAGE_CHILDREN)
}

fn rusage_cpu_time(who: libc::c_int) -> Duration {
    // SAFETY: getrusage only writes the struct it is given.
    let usage = unsafe {
        let mut usage = std::mem::zeroed::<libc::rusage>();
        libc::getrusage(who, &mut usage);
        usage
    };
    let time = |t: libc::timeval| Duration::new(t.tv_sec as u64, t.tv_usec as u32 * 1000);
    time(usage.ru_utime) + time(usage.ru_stime)
}

/// CPU time the calling thread has used so far: what "per core" means for
/// single-threaded work, whatever else the machine is doing.
pub fn thread_cpu_time() -> Duration {
    // SAFETY: clock_gettime only writes the struct it is given.
    let now = unsafe {
        let mut now = std::mem::zeroed::<libc::timespec>();
        libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut now);
        now
    };
    Duration::new(now.tv_sec as u64, now.tv_nsec as u32)
}

/// Like [`run_queue_wait`], for the calling thread alone.
pub fn thread_run_queue_wait() -> Option<Duration> {
    let text = fs::read_to_string("/proc/thread-self/schedstat").ok()?;
    Some(Duration::from_nanos(
        text.split_whitespace().nth(1)?.parse().ok()?,
    ))
}

/// Starts this process's peak RSS afresh (writing 5 to `clear_refs` resets
/// `VmHWM` to the current RSS), so that each in-process row reports its own
/// peak rather than the largest of the rows before it. Returns whether it could.
pub fn reset_peak_rss() -> bool {
    fs::write("/proc/self/clear_refs", "5").is_ok()
}

/// The machine, for the results file: CPU model, cores, kernel, and the
/// load average when the run started (other tenants of a shared machine
/// take CPU from both sides of a comparison, and from some rounds more
/// than others).
pub fn machine() -> serde_json::Value {
    let cpu = fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|text| {
            text.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split(':').nth(1))
                .map(|m| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown".into());
    let kernel = fs::read_to_string("/proc/sys/kernel/osrelease")
        .map(|k| k.trim().to_owned())
        .unwrap_or_else(|_| "unknown".into());
    let load = fs::read_to_string("/proc/loadavg")
        .ok()
        .and_then(|l| l.split_whitespace().next().map(str::to_owned))
        .unwrap_or_else(|| "unknown".into());
    serde_json::json!({
        "load_average_1min": load,
        "cpu": cpu,
        "cores": std::thread::available_parallelism().map_or(0, |n| n.get()),
        "kernel": kernel,
        "os": std::env::consts::OS,
    })
}

/// Today's date (UTC) as `YYYY-MM-DD`, so results files say when they were made.
pub fn today() -> String {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    // Howard Hinnant's days-to-civil algorithm.
    let z = (secs / 86_400) as i64 + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let day = doy - (153 * mp + 2) / 5 + 1;
    let month = if mp < 10 { mp + 3 } else { mp - 9 };
    let year = yoe + era * 400 + i64::from(month <= 2);
    format!("{year:04}-{month:02}-{day:02}")
}
