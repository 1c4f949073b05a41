//! What the operating system says about this process and host, for RabbitMQ's `process_*`
//! and memory metrics (RabbitMQ asks the Erlang VM; Warren asks `/proc`). Every read degrades
//! to `None` where `/proc` is missing rather than failing the scrape.

/// Resident set size in bytes (`/proc/self/statm`, second field, in pages).
pub fn resident_memory_bytes() -> Option<u64> {
    let statm = std::fs::read_to_string("/proc/self/statm").ok()?;
    let pages: u64 = statm.split_whitespace().nth(1)?.parse().ok()?;
    Some(pages * page_size())
}

fn page_size() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let size = unsafe { libc::sysconf(libc::_SC_PAGESIZE) };
    if size > 0 {
        size as u64
    } else {
        4096
    }
}

/// Open file descriptors (entries of `/proc/self/fd`).
pub fn open_fds() -> Option<u64> {
    Some(std::fs::read_dir("/proc/self/fd").ok()?.count() as u64)
}

/// The soft limit on open file descriptors.
pub fn max_fds() -> Option<u64> {
    let mut limit = libc::rlimit { rlim_cur: 0, rlim_max: 0 };
    // SAFETY: getrlimit writes into the struct we own.
    let rc = unsafe { libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) };
    (rc == 0 && limit.rlim_cur != libc::RLIM_INFINITY).then_some(limit.rlim_cur)
}

/// Physical memory of the host (`MemTotal`), or the cgroup's limit when that is lower: Warren
/// has no memory watermark, so this is the ceiling the dashboard's "memory available" measures
/// against.
pub fn memory_limit_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let total = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map(|kb| kb * 1024)?;
    let cgroup = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok().and_then(|s| s.trim().parse::<u64>().ok());
    Some(cgroup.map_or(total, |c| c.min(total)))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_reports_memory_and_descriptors() {
        assert!(resident_memory_bytes().unwrap_or(0) > 0);
        assert!(open_fds().unwrap_or(0) > 0);
        assert!(memory_limit_bytes().unwrap_or(0) > 0);
    }
}
