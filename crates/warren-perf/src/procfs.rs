//! CPU time and memory of a process, from `/proc` (Linux only; elsewhere every figure is
//! `None` and the report leaves it out).
//!
//! CPU time is `utime + stime` from `/proc/PID/stat`, in clock ticks. Linux reports those in
//! `USER_HZ`, which is 100 on every architecture that matters here, so the resolution is 10 ms:
//! plenty over a run of several seconds. Memory is `VmRSS` (now) and `VmHWM` (peak) from
//! `/proc/PID/status`, in KiB.

use std::time::Duration;

/// `USER_HZ`: the unit of the CPU times in `/proc/PID/stat`.
const TICKS_PER_SECOND: u64 = 100;

/// Which process: ours or another one (the broker).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Pid {
    Own,
    Other(u32),
}

impl Pid {
    fn dir(self) -> String {
        match self {
            Pid::Own => "/proc/self".to_string(),
            Pid::Other(pid) => format!("/proc/{pid}"),
        }
    }
}

/// User plus system CPU time the process has used so far.
pub fn cpu_time(pid: Pid) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("{}/stat", pid.dir())).ok()?;
    parse_cpu_ticks(&stat).map(|t| Duration::from_millis(t * 1000 / TICKS_PER_SECOND))
}

/// utime + stime from the text of `/proc/PID/stat`. The command name (field 2) may hold spaces
/// and parentheses, so fields are counted from the last `)`.
pub fn parse_cpu_ticks(stat: &str) -> Option<u64> {
    let rest = &stat[stat.rfind(')')? + 1..];
    let mut fields = rest.split_whitespace();
    // After the name: state (3), ppid, pgrp, session, tty_nr, tpgid, flags, minflt, cminflt,
    // majflt, cmajflt (13), utime (14), stime (15).
    let utime: u64 = fields.nth(11)?.parse().ok()?;
    let stime: u64 = fields.next()?.parse().ok()?;
    Some(utime + stime)
}

/// CPU time used by the whole machine so far (all CPUs, everything but idle and iowait), from
/// the first line of `/proc/stat`. The share not used by the broker or by us is what other
/// programs took during a run: a run on a busy machine says so in its report.
pub fn machine_busy() -> Option<Duration> {
    let stat = std::fs::read_to_string("/proc/stat").ok()?;
    parse_machine_busy_ticks(&stat).map(|t| Duration::from_millis(t * 1000 / TICKS_PER_SECOND))
}

pub fn parse_machine_busy_ticks(stat: &str) -> Option<u64> {
    let line = stat.lines().next()?.strip_prefix("cpu ")?;
    let fields: Vec<u64> = line.split_whitespace().map(|f| f.parse().ok()).collect::<Option<_>>()?;
    // user nice system idle iowait irq softirq steal [guest guest_nice, already in user/nice]
    let total: u64 = fields.iter().take(8).sum();
    Some(total - fields.get(3)? - fields.get(4).copied().unwrap_or(0))
}

/// Time the CPUs have spent in their idle states so far, summed over the CPUs, and how many CPUs
/// that covers: the `time` (µs) of every `/sys/devices/system/cpu/cpuN/cpuidle/stateK`. `None`
/// without cpuidle.
///
/// On a virtual machine whose idle CPUs are woken very often, `/proc/stat` can count as system
/// time much of what was in fact spent halted (seen here with Warren's delayed-message timer: a
/// third of the machine "busy" that no thread had used, and that `perf record -a` found halted in
/// the idle loop). The idle states' own clocks do not have that problem, so the machine's busy
/// time is taken as CPUs × elapsed − this, when it is there.
pub fn cpuidle_time() -> Option<(Duration, u32)> {
    let mut total_us = 0u64;
    let mut cpus = 0u32;
    for entry in std::fs::read_dir("/sys/devices/system/cpu").ok()?.flatten() {
        let name = entry.file_name();
        let Some(n) = name.to_str().and_then(|n| n.strip_prefix("cpu")) else { continue };
        if n.is_empty() || !n.bytes().all(|b| b.is_ascii_digit()) {
            continue;
        }
        let Ok(states) = std::fs::read_dir(entry.path().join("cpuidle")) else { continue };
        let mut any = false;
        for state in states.flatten() {
            if !state.file_name().to_str().is_some_and(|s| s.starts_with("state")) {
                continue;
            }
            if let Some(us) =
                std::fs::read_to_string(state.path().join("time")).ok().and_then(|t| t.trim().parse::<u64>().ok())
            {
                total_us += us;
                any = true;
            }
        }
        cpus += u32::from(any);
    }
    (cpus > 0).then(|| (Duration::from_micros(total_us), cpus))
}

/// Busy CPU time of `cpus` CPUs over `elapsed` during which they were idle for `idle` in all.
pub fn busy_from_idle(elapsed: Duration, cpus: u32, idle: Duration) -> Duration {
    (elapsed * cpus).saturating_sub(idle)
}

/// A `kB` line of `/proc/PID/status` (`VmRSS`, `VmHWM`, ...), in KiB.
pub fn status_kib(pid: Pid, key: &str) -> Option<u64> {
    let status = std::fs::read_to_string(format!("{}/status", pid.dir())).ok()?;
    parse_status_kib(&status, key)
}

pub fn parse_status_kib(status: &str, key: &str) -> Option<u64> {
    status.lines().find_map(|line| {
        let value = line.strip_prefix(key)?.strip_prefix(':')?;
        value.split_whitespace().next()?.parse().ok()
    })
}

/// Resets the process's peak RSS (`VmHWM`) to its current RSS, so that the peak reported after
/// a run belongs to that run and not to whatever the broker did before. Needs permission to
/// write `/proc/PID/clear_refs` (same user or root); returns whether it worked.
pub fn reset_peak_rss(pid: Pid) -> bool {
    std::fs::write(format!("{}/clear_refs", pid.dir()), "5").is_ok()
}

/// The command name of a process (`beam.smp`, `warren`).
pub fn command_name(pid: Pid) -> Option<String> {
    std::fs::read_to_string(format!("{}/comm", pid.dir())).ok().map(|s| s.trim().to_string())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_ticks_are_counted_after_the_command_name() {
        let stat = "8509 (beam.smp) S 8497 8497 8497 0 -1 4194560 61712 1010 0 0 4137 1023 0 0 20 0 34 0 1234";
        assert_eq!(parse_cpu_ticks(stat), Some(4137 + 1023));
        // A name with spaces and a closing parenthesis does not shift the fields.
        let stat = "42 (a b) c)) R 1 42 42 0 -1 0 0 0 0 0 7 3 0 0 20 0 1 0 99";
        assert_eq!(parse_cpu_ticks(stat), Some(10));
        assert_eq!(parse_cpu_ticks("garbage"), None);
        assert_eq!(parse_cpu_ticks("1 (x) S 1 2"), None);
    }

    #[test]
    fn machine_busy_time_leaves_out_idle_and_iowait() {
        let stat = "cpu  100 5 50 1000 20 3 2 1 0 0\ncpu0 50 2 25 500 10 1 1 0 0 0\n";
        assert_eq!(parse_machine_busy_ticks(stat), Some(100 + 5 + 50 + 3 + 2 + 1));
        assert_eq!(parse_machine_busy_ticks("intr 1 2 3"), None);
    }

    #[test]
    fn busy_time_is_what_the_cpus_were_not_idle() {
        let busy = busy_from_idle(Duration::from_secs(10), 2, Duration::from_secs(15));
        assert_eq!(busy, Duration::from_secs(5));
        assert_eq!(busy_from_idle(Duration::from_secs(1), 2, Duration::from_secs(3)), Duration::ZERO);
        if let Some((idle, cpus)) = cpuidle_time() {
            assert!(cpus >= 1 && idle > Duration::ZERO);
        }
    }

    #[test]
    fn status_lines() {
        let status = "Name:\tbeam.smp\nVmPeak:\t 3000000 kB\nVmHWM:\t  142000 kB\nVmRSS:\t  139020 kB\n";
        assert_eq!(parse_status_kib(status, "VmHWM"), Some(142_000));
        assert_eq!(parse_status_kib(status, "VmRSS"), Some(139_020));
        assert_eq!(parse_status_kib(status, "VmSwap"), None);
        assert_eq!(parse_status_kib(status, "Vm"), None, "a key must match up to its colon");
    }

    #[test]
    fn our_own_process_can_be_read() {
        if !std::path::Path::new("/proc/self/stat").exists() {
            return; // not Linux
        }
        assert!(cpu_time(Pid::Own).is_some());
        assert!(status_kib(Pid::Own, "VmRSS").is_some_and(|kib| kib > 0));
        assert!(command_name(Pid::Own).is_some());
    }
}
