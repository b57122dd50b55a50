//! What the benchmarks read from Linux about themselves and the node they
//! run: peak resident memory, and the machine a result was measured on.

use std::fs;
use std::time::Duration;

/// Peak resident set size (`VmHWM`) of a process, in KiB; `None` for this
/// process. `None` where /proc is missing (not Linux).
pub fn peak_rss_kib(pid: Option<u32>) -> Option<u64> {
    let path = match pid {
        Some(pid) => format!("/proc/{pid}/status"),
        None => "/proc/self/status".to_owned(),
    };
    status_kib(&path, "VmHWM:")
}

/// A `<field> <n> kB` line of a /proc status file.
fn status_kib(path: &str, field: &str) -> Option<u64> {
    let status = fs::read_to_string(path).ok()?;
    let line = status.lines().find(|l| l.starts_with(field))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

/// Resident memory of a process now (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// CPU time (user and system, every thread) process `pid` has used so far,
/// from /proc/PID/stat, in clock ticks (usually 10 ms).
pub fn process_cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(pid, 2)
}

/// Like [`process_cpu_time`], with the CPU time of the children `pid` has
/// waited for (`cutime`, `cstime`) added: after a process ended (and
/// before it is reaped), everything it and the children it reaped used.
pub fn process_tree_cpu_time(pid: u32) -> Option<Duration> {
    stat_cpu_time(pid, 4)
}

/// The sum of `fields` CPU time fields of /proc/PID/stat from `utime` on.
fn stat_cpu_time(pid: u32, fields: usize) -> Option<Duration> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name, in parentheses, may hold spaces: count from after it.
    let after_name: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let mut ticks = 0;
    for field in after_name.get(11..11 + fields)? {
        ticks += field.parse::<u64>().ok()?;
    }
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// Whether process `pid` has ended: a zombie its parent has not reaped
/// yet, or gone.
pub fn has_ended(pid: u32) -> bool {
    fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|stat| Some(stat.rsplit_once(')')?.1.trim_start().starts_with('Z')))
        .unwrap_or(true)
}

/// The child processes of process `pid`: the children each of its
/// threads started (/proc/PID/task/TID/children), so that a child started
/// by any thread is found.
pub fn children(pid: u32) -> Vec<u32> {
    let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) else {
        return Vec::new();
    };
    tasks
        .flatten()
        .filter_map(|task| fs::read_to_string(task.path().join("children")).ok())
        .flat_map(|text| {
            text.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

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

/// Time the threads of process `pid` have spent runnable but waiting for
/// a CPU (the second field of each thread's `schedstat`): on a shared
/// machine, how much of a latency is other tenants' turn on the cores.
/// Threads that ended are not counted.
pub fn run_queue_wait(pid: u32) -> Option<Duration> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        total += fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
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
