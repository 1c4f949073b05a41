//! The memory alarm's inputs, as RabbitMQ's `vm_memory_monitor` has them: how much memory the
//! process really uses (its resident set, not an estimate of what queues hold), how much the
//! machine or its cgroup allows, and the high watermark between them
//! (`memory_high_watermark`, relative — 0.6 of the available memory by default — or absolute).

use std::fmt;

/// RabbitMQ's default `vm_memory_high_watermark.relative`.
pub const DEFAULT_RELATIVE: f64 = 0.6;

/// Where the memory alarm goes off.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Watermark {
    /// A fraction of the memory available to the process (RAM, or the cgroup's limit if lower).
    Relative(f64),
    /// Bytes.
    Absolute(u64),
}

impl Default for Watermark {
    fn default() -> Watermark {
        Watermark::Relative(DEFAULT_RELATIVE)
    }
}

impl fmt::Display for Watermark {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Watermark::Relative(r) => write!(f, "{r}"),
            Watermark::Absolute(b) => write!(f, "{b}"),
        }
    }
}

impl Watermark {
    /// `0.4` (relative, at most 1), or an absolute size: `536870912`, `512MiB`, `2GB`, `1.5GiB`
    /// (RabbitMQ's units: `kB`/`MB`/`GB` are powers of 10, `KiB`/`MiB`/`GiB` powers of 2).
    pub fn parse(s: &str) -> Result<Watermark, String> {
        let s = s.trim();
        let split = s.find(|c: char| !(c.is_ascii_digit() || c == '.')).unwrap_or(s.len());
        let (number, unit) = s.split_at(split);
        let value: f64 = number.parse().map_err(|_| format!("not a memory watermark: '{s}'"))?;
        let multiplier: f64 = match unit.trim() {
            "" if number.contains('.') || value < 1.0 => {
                if !(0.0..=1.0).contains(&value) {
                    return Err(format!("a relative memory watermark is between 0 and 1, not {value}"));
                }
                return Ok(Watermark::Relative(value));
            }
            "" | "B" => 1.0,
            "k" | "kB" | "KB" => 1e3,
            "M" | "MB" => 1e6,
            "G" | "GB" => 1e9,
            "Ki" | "KiB" => 1024.0,
            "Mi" | "MiB" => 1024.0 * 1024.0,
            "Gi" | "GiB" => 1024.0 * 1024.0 * 1024.0,
            other => return Err(format!("unknown unit '{other}' in memory watermark '{s}'")),
        };
        Ok(Watermark::Absolute((value * multiplier) as u64))
    }

    /// The limit in bytes, given the memory available.
    pub fn limit(&self, available: u64) -> u64 {
        match *self {
            Watermark::Relative(r) => (available as f64 * r) as u64,
            Watermark::Absolute(b) => b,
        }
    }
}

/// The process's resident set size, from `/proc/self/statm` (0 where there is none, or it
/// cannot be read). The file stays open: the alarm reads it ten times a second, and a `pread`
/// at offset 0 renders it afresh, where opening, sizing, reading and closing it took five
/// system calls (a third of an idle broker's CPU).
pub fn resident_bytes() -> u64 {
    use std::os::unix::fs::FileExt;
    static STATM: std::sync::OnceLock<Option<std::fs::File>> = std::sync::OnceLock::new();
    // SAFETY: sysconf only reads a configuration value.
    let page = u64::try_from(unsafe { libc::sysconf(libc::_SC_PAGESIZE) }).unwrap_or(4096);
    let mut buf = [0u8; 128];
    let n = match STATM.get_or_init(|| std::fs::File::open("/proc/self/statm").ok()) {
        Some(statm) => statm.read_at(&mut buf, 0).unwrap_or(0),
        // Not there at the first look (no descriptor left, say): opened each time.
        None => std::fs::File::open("/proc/self/statm").and_then(|f| f.read_at(&mut buf, 0)).unwrap_or(0),
    };
    std::str::from_utf8(&buf[..n])
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

/// Hands the allocator's free memory back to the system (glibc's `malloc_trim`). After a
/// backlog is consumed or purged, malloc keeps the freed pages resident for reuse: in one
/// pressure run 720 MiB stayed resident of which 54 MiB were in use, so the memory alarm,
/// which reads the resident set, would never have cleared. True if memory was released.
pub fn release_free_memory() -> bool {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    {
        // SAFETY: malloc_trim only walks the allocator's own free lists.
        unsafe { libc::malloc_trim(0) == 1 }
    }
    #[cfg(not(all(target_os = "linux", target_env = "gnu")))]
    {
        false
    }
}

/// The memory available to the process: the machine's RAM, or its cgroup's limit where that
/// is lower (a container), as RabbitMQ reads it.
pub fn available_bytes() -> u64 {
    let ram = std::fs::read_to_string("/proc/meminfo").ok().and_then(|s| meminfo_total(&s)).unwrap_or(0);
    match cgroup_limit() {
        Some(limit) if ram == 0 || limit < ram => limit,
        _ => ram,
    }
}

fn meminfo_total(meminfo: &str) -> Option<u64> {
    let line = meminfo.lines().find(|l| l.starts_with("MemTotal:"))?;
    Some(line.split_whitespace().nth(1)?.parse::<u64>().ok()? * 1024)
}

/// cgroup v2's `memory.max`, else v1's `memory.limit_in_bytes`; `None` when unlimited.
fn cgroup_limit() -> Option<u64> {
    let v2 = std::fs::read_to_string("/sys/fs/cgroup/memory.max").ok();
    let v1 = || std::fs::read_to_string("/sys/fs/cgroup/memory/memory.limit_in_bytes").ok();
    parse_cgroup_limit(&v2.or_else(v1)?)
}

fn parse_cgroup_limit(s: &str) -> Option<u64> {
    // "max" (v2) or a huge number near i64::MAX (v1) both mean no limit.
    s.trim().parse::<u64>().ok().filter(|&b| b < (1 << 60))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn watermarks_parse_as_rabbitmq_writes_them() {
        assert_eq!(Watermark::parse("0.4"), Ok(Watermark::Relative(0.4)));
        assert_eq!(Watermark::parse("1.0"), Ok(Watermark::Relative(1.0)));
        assert_eq!(Watermark::parse("536870912"), Ok(Watermark::Absolute(536_870_912)));
        assert_eq!(Watermark::parse("512MiB"), Ok(Watermark::Absolute(512 << 20)));
        assert_eq!(Watermark::parse("2GB"), Ok(Watermark::Absolute(2_000_000_000)));
        assert_eq!(Watermark::parse("1.5GiB"), Ok(Watermark::Absolute(3 << 29)));
        assert!(Watermark::parse("1.5").is_err(), "relative above 1");
        assert!(Watermark::parse("12 parsecs").is_err());
        assert!(Watermark::parse("lots").is_err());
        assert_eq!(Watermark::Relative(0.5).limit(1000), 500);
        assert_eq!(Watermark::Absolute(7).limit(1000), 7);
    }

    #[test]
    fn memory_is_read_from_the_system() {
        assert!(resident_bytes() > 1 << 20, "a test process uses more than 1 MiB");
        assert!(available_bytes() > resident_bytes());
        assert_eq!(meminfo_total("MemTotal:       16384 kB\nMemFree: 1 kB\n"), Some(16 << 20));
        assert_eq!(parse_cgroup_limit("max\n"), None);
        assert_eq!(parse_cgroup_limit("9223372036854771712\n"), None);
        assert_eq!(parse_cgroup_limit("536870912\n"), Some(512 << 20));
    }

    #[test]
    fn the_file_kept_open_shows_memory_as_it_is_now() {
        let before = resident_bytes();
        // 64 MiB touched (other tests' threads may free some meanwhile: half is enough).
        let big = std::hint::black_box(vec![1u8; 64 << 20]);
        let after = resident_bytes();
        assert!(after >= before + (32 << 20), "{before} then {after} with {} more bytes touched", big.len());
        drop(big);
    }
}
