//! What the operating system says about this process's file descriptors, for RabbitMQ's
//! `process_*` metrics and the management API's `fd_used`/`fd_total` (RabbitMQ asks the Erlang
//! VM; Warren asks `/proc`). Memory is the memory alarm's business: `broker::vm_memory`. Every
//! read degrades to `None` where `/proc` is missing rather than failing the scrape.

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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn linux_reports_descriptors() {
        assert!(open_fds().unwrap_or(0) > 0);
        assert!(max_fds().unwrap_or(1) > 0);
    }
}
