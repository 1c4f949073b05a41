//! Resource alarms, as RabbitMQ has them: while one is raised, a connection that publishes is
//! blocked (told `connection.blocked` if it understands it, and not read from) until every alarm
//! clears. Consumers, acks and `basic.get` on other connections keep working, so a backlog can
//! drain while the broker cannot take more.
//!
//! Three sources raise them: the process's resident memory above `memory_high_watermark`
//! (RabbitMQ's memory alarm), free disk space under the data directory below `disk_free_limit`
//! (RabbitMQ's disk alarm), and a store that failed a write (an I/O error, a full disk that
//! the free-space check did not see coming). Publishes whose write failed are nacked; blocking
//! stops the flood of further nacks until the store writes again.

use tokio::sync::watch;

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct AlarmSet {
    /// The process uses more memory than the high watermark allows.
    pub memory: bool,
    /// Free space under the data directory is below the limit.
    pub disk_free: bool,
    /// The last write to the store failed and no write has succeeded since.
    pub store_failed: bool,
}

impl AlarmSet {
    pub fn any(&self) -> bool {
        self.memory || self.disk()
    }

    /// A disk alarm: too little free space, or a store that cannot write.
    pub fn disk(&self) -> bool {
        self.disk_free || self.store_failed
    }

    /// The reason given in `connection.blocked` (RabbitMQ's texts for its two alarms).
    pub fn reason(&self) -> &'static str {
        if self.memory {
            "low on memory"
        } else {
            "low on disk"
        }
    }
}

pub struct Alarms {
    state: watch::Sender<AlarmSet>,
}

impl Default for Alarms {
    fn default() -> Alarms {
        Alarms { state: watch::channel(AlarmSet::default()).0 }
    }
}

impl Alarms {
    pub fn current(&self) -> AlarmSet {
        *self.state.borrow()
    }

    pub fn subscribe(&self) -> watch::Receiver<AlarmSet> {
        self.state.subscribe()
    }

    /// Raises or clears one alarm; `log` runs once, when it changes.
    fn set(&self, which: fn(&mut AlarmSet) -> &mut bool, on: bool, log: impl FnOnce(bool)) {
        self.state.send_if_modified(|s| {
            let flag = which(s);
            if *flag == on {
                return false;
            }
            *flag = on;
            log(on);
            true
        });
    }

    pub fn set_memory(&self, on: bool, used: u64, limit: u64) {
        self.set(
            |s| &mut s.memory,
            on,
            |on| match on {
                true => tracing::warn!(
                    used,
                    limit,
                    "memory alarm: resident memory is above the high watermark; publishers are blocked"
                ),
                false => tracing::warn!(used, limit, "memory alarm cleared; publishers are unblocked"),
            },
        );
    }

    pub fn set_disk_free(&self, on: bool, free: u64, limit: u64) {
        self.set(
            |s| &mut s.disk_free,
            on,
            |on| match on {
                true => tracing::warn!(
                    free,
                    limit,
                    "disk alarm: free disk space is below the limit; publishers are blocked"
                ),
                false => tracing::warn!(free, limit, "disk alarm cleared; publishers are unblocked"),
            },
        );
    }

    pub fn set_store_failed(&self, on: bool) {
        self.set(
            |s| &mut s.store_failed,
            on,
            |on| match on {
                true => {
                    tracing::error!("store alarm: writes to the store fail; publishers are blocked until one succeeds")
                }
                false => tracing::warn!("store alarm cleared: the store writes again; publishers are unblocked"),
            },
        );
    }
}
