//! What Linux's /proc says about another process: its memory, its CPU
//! time, its children, whether it has ended. The tests, the benchmarks and
//! the soak all watch the node this way; the rules (where the command name
//! ends, which fields are CPU time, what counts as ended) live here once.

use std::fs;
use std::time::Duration;

/// Resident memory of a process now (`VmRSS`), in KiB.
pub fn rss_kib(pid: u32) -> Option<u64> {
    status_kib(&format!("/proc/{pid}/status"), "VmRSS:")
}

/// Peak resident set size (`VmHWM`) of a process, in KiB; `None` for the
/// calling process. `None` where /proc is missing (not Linux).
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
    // utime is the 14th field of the line, the 12th after the command name,
    // which is in parentheses and may hold spaces: count from after it.
    let after_name: Vec<&str> = stat.rsplit_once(')')?.1.split_whitespace().collect();
    let mut ticks = 0;
    for field in after_name.get(11..11 + fields)? {
        ticks += field.parse::<u64>().ok()?;
    }
    // SAFETY: sysconf has no preconditions.
    let per_second = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    (per_second > 0).then(|| Duration::from_secs_f64(ticks as f64 / per_second as f64))
}

/// Whether process `pid` has ended: gone, or a zombie its parent has not
/// reaped yet (it runs nothing and holds nothing).
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

/// Time the threads of process `pid` have spent runnable but waiting for
/// a CPU (the second field of each thread's `schedstat`): on a shared
/// machine, how much of a latency is other tenants' turn on the cores.
/// Threads that ended are not counted.
pub fn run_queue_wait(pid: u32) -> Option<Duration> {
    schedstat_sum(pid, 1, |_| true)
}

/// CPU time the threads of process `pid` called `name` (their `comm`)
/// have used so far: the first field of each one's `schedstat`, in
/// nanoseconds, where /proc/PID/stat counts 10 ms ticks. Threads that
/// ended are not counted.
pub fn threads_cpu_time(pid: u32, name: &str) -> Option<Duration> {
    schedstat_sum(pid, 0, |comm| comm.trim_end_matches('\n') == name)
}

/// The sum of field `field` (nanoseconds) of the `schedstat` of each
/// living thread of process `pid` whose `comm` passes `wanted`.
fn schedstat_sum(pid: u32, field: usize, wanted: impl Fn(&str) -> bool) -> Option<Duration> {
    let tasks = fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let mut total = 0;
    for task in tasks.flatten() {
        let comm = fs::read_to_string(task.path().join("comm")).unwrap_or_default();
        if !wanted(&comm) {
            continue;
        }
        total += fs::read_to_string(task.path().join("schedstat"))
            .ok()
            .and_then(|s| s.split_whitespace().nth(field)?.parse::<u64>().ok())
            .unwrap_or(0);
    }
    Some(Duration::from_nanos(total))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_a_live_process_and_its_child() {
        let me = std::process::id();
        assert!(rss_kib(me).is_some_and(|kib| kib > 0));
        assert!(peak_rss_kib(Some(me)) >= rss_kib(me));
        assert!(!has_ended(me));
        let mut child = std::process::Command::new("sleep")
            .arg("30")
            .spawn()
            .unwrap();
        assert!(children(me).contains(&child.id()));
        assert!(process_cpu_time(child.id()).is_some());
        assert_eq!(
            threads_cpu_time(child.id(), "no such thread"),
            Some(Duration::ZERO)
        );
        child.kill().unwrap();
        // Killed but not yet reaped: a zombie, which has ended.
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !has_ended(child.id()) {
            assert!(
                std::time::Instant::now() < deadline,
                "the child never ended"
            );
            std::thread::sleep(Duration::from_millis(10));
        }
        child.wait().unwrap();
        assert!(has_ended(child.id()) && process_cpu_time(child.id()).is_none());
    }
}
