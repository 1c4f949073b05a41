//! The broker model: vhosts, exchanges, queues, consumers and messages. Independent of sockets:
//! the server's channels drive it, and it reaches consumers through [`queue::ConsumerSink`].

pub mod alarms;
pub mod connections;
pub mod dead_letter;
pub mod dedup;
pub mod definitions;
pub mod delayed;
pub mod errors;
pub mod exchange;
pub mod memory;
pub mod message;
pub mod policy;
pub mod publish;
pub mod queue;
pub mod record;
pub mod reply_to;
pub mod stats;
pub mod stream;
pub mod timer;
pub mod vhost;
pub mod vm_memory;

use std::collections::hash_map::RandomState;
use std::hash::{BuildHasher, Hasher};
use std::path::Path;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use dashmap::DashMap;

use crate::auth::{Permissions, TopicPermissions, Users};
use crate::protocol::ShortStr;
use crate::store::{Definitions, MetadataStore, StoreError, StoreHandle};
pub use connections::ConnectionGuard;
pub use definitions::metadata::Bootstrap;
use memory::Paging;
use reply_to::ReplyConsumers;
pub use reply_to::{REPLY_TO_PREFIX, REPLY_TO_QUEUE};
pub use vhost::{VHost, VHostEnv};

/// The hasher of the maps looked up once or more per message (exchanges, queues and direct
/// bindings by name): seeded per process like std's SipHash, but several times cheaper for
/// short names.
pub type NameHasher = foldhash::fast::RandomState;

/// 256 MiB: a few hundred thousand small transient messages.
pub const DEFAULT_TRANSIENT_MEMORY_LIMIT: u64 = 256 * 1024 * 1024;

/// Limits that protect the broker from one client.
#[derive(Debug, Clone)]
pub struct Limits {
    pub channel_max: u16,
    pub frame_max: u32,
    pub heartbeat: u16,
    pub max_message_size: u64,
    /// Persistent message bodies a durable queue keeps in memory (the rest stay on disk).
    pub queue_memory_window: usize,
    /// Bytes of transient messages all queues together keep in memory before paging new ones
    /// out (see `memory.rs`).
    pub transient_memory_limit: u64,
    /// Free disk space under the data directory below which publishers are blocked
    /// (RabbitMQ's `disk_free_limit`).
    pub disk_free_limit: u64,
    /// How long a delivery may stay unacked before its channel is closed (RabbitMQ's
    /// `consumer_timeout`; 0 = never). A queue's `x-consumer-timeout` overrides it.
    pub consumer_timeout_ms: u64,
    /// Resident memory above which publishers are blocked (RabbitMQ's
    /// `vm_memory_high_watermark`).
    pub memory_high_watermark: vm_memory::Watermark,
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            channel_max: 2047,
            frame_max: 131072,
            heartbeat: 60,
            max_message_size: 16 * 1024 * 1024,
            queue_memory_window: 8192,
            transient_memory_limit: DEFAULT_TRANSIENT_MEMORY_LIMIT,
            disk_free_limit: 50_000_000,
            consumer_timeout_ms: 30 * 60 * 1000,
            memory_high_watermark: vm_memory::Watermark::default(),
        }
    }
}

pub struct Broker {
    vhosts: DashMap<ShortStr, Arc<VHost>>,
    storage: Option<Arc<StoreHandle>>,
    /// Flips to true when the broker is shutting down; connections watch it.
    shutdown: tokio::sync::watch::Sender<bool>,
    /// Live connections and their channels; also counts connection tasks.
    connections: Arc<connections::Connections>,
    /// What every vhost shares — the store, the paging budget, TTL timers, delayed messages,
    /// direct reply-to consumers; a vhost created at run time gets a copy.
    vhost_env: VHostEnv,
    /// Changed through [`Broker::put_user`] and [`Broker::delete_user`].
    pub users: Users,
    /// Changed through [`Broker::set_permission`] and [`Broker::clear_permission`].
    pub permissions: Permissions,
    /// Changed through [`Broker::set_topic_permission`] and [`Broker::clear_topic_permission`].
    pub topic_permissions: TopicPermissions,
    /// Compiled permissions, shared by the connections of a user in a vhost.
    pub access_cache: crate::auth::access_cache::AccessCache,
    /// Serializes vhost, user and permission changes (`definitions::metadata`): the outermost
    /// lock, see `LOCKS.md`.
    metadata_changes: Mutex<()>,
    pub limits: Limits,
    next_connection_id: AtomicU64,
    pub alarms: alarms::Alarms,
    /// The disk alarm's threshold; starts as `limits.disk_free_limit`, changeable at run time.
    disk_free_limit: AtomicU64,
    /// The memory alarm's threshold in bytes; from `limits.memory_high_watermark`, changeable
    /// at run time.
    memory_limit: AtomicU64,
    /// Wakes the resource monitor for an immediate check.
    recheck_resources: Arc<tokio::sync::Notify>,
}

impl Broker {
    /// A broker with the default vhost `/` and user `guest`, as RabbitMQ starts, keeping
    /// everything in memory.
    pub fn new(limits: Limits) -> Broker {
        let mut defs = Definitions::default();
        definitions::metadata::add_first_start_defaults(&mut defs, &Bootstrap::default());
        Broker::with_store(limits, None, &defs)
    }

    /// A broker on the data directory: opens the store and restores vhosts, users,
    /// permissions, durable definitions and persistent messages. The first start (or the first
    /// on a data directory from before Warren kept vhosts and users) creates vhost `/` and user
    /// `guest` with full permissions there, and records that it did: deleted later, they stay
    /// deleted.
    pub fn open(limits: Limits, data_dir: &Path) -> Result<Broker, StoreError> {
        Broker::open_with(limits, &Bootstrap::default(), data_dir)
    }

    /// [`open`](Self::open) with the first start's user and vhost, and the loopback users, as
    /// configured.
    pub fn open_with(limits: Limits, boot: &Bootstrap, data_dir: &Path) -> Result<Broker, StoreError> {
        let started = std::time::Instant::now();
        let (storage, mut defs) = StoreHandle::open(data_dir)?;
        if !defs.initialised {
            definitions::metadata::add_first_start_defaults(&mut defs, boot);
            storage.store.initialise(&defs.vhosts, &defs.users, &defs.permissions)?;
            tracing::info!(vhost = %boot.default_vhost, user = %boot.default_user, "first start: created the default vhost and user");
        }
        definitions::metadata::purge_orphans(&mut defs, &storage);
        let storage = Arc::new(storage);
        let b = Broker::with_store(limits, Some(storage.clone()), &defs);
        // Every queue has counted its stored bodies: segments no message needs can go.
        storage.store.recovered();
        b.users.set_loopback_users(boot.loopback_users.clone());
        let messages: u64 = b.vhosts.iter().map(|v| v.message_count()).sum();
        tracing::info!(
            vhosts = defs.vhosts.len(),
            users = defs.users.len(),
            exchanges = defs.exchanges.len(),
            queues = defs.queues.len(),
            bindings = defs.bindings.len(),
            policies = defs.policies.len(),
            messages,
            elapsed = ?started.elapsed(),
            "recovered from the store"
        );
        Ok(b)
    }

    fn with_store(limits: Limits, storage: Option<Arc<StoreHandle>>, defs: &Definitions) -> Broker {
        let delays = delayed::Delays::new(storage.clone());
        let metadata = storage.as_ref().map(|s| s.metadata());
        let memory_limit = limits.memory_high_watermark.limit(vm_memory::available_bytes());
        // Transient messages are paged out well before the memory alarm would block publishers
        // (RabbitMQ pages at half its watermark).
        let transient_limit = match memory_limit {
            0 => limits.transient_memory_limit,
            m => limits.transient_memory_limit.min(m / 2),
        };
        let vhost_env = VHostEnv {
            metadata: metadata.clone(),
            storage: storage.clone(),
            paging: Arc::new(Paging::new(limits.queue_memory_window, transient_limit)),
            timers: Arc::new(timer::Timers::default()),
            delays: delays.clone(),
            replies: Arc::default(),
            stats: Arc::default(),
        };
        let b = Broker {
            vhosts: DashMap::new(),
            storage,
            shutdown: tokio::sync::watch::channel(false).0,
            connections: Arc::default(),
            users: Users::new(metadata.clone()),
            permissions: Permissions::new(metadata.clone()),
            topic_permissions: TopicPermissions::new(metadata),
            access_cache: Default::default(),
            metadata_changes: Mutex::new(()),
            disk_free_limit: AtomicU64::new(limits.disk_free_limit),
            memory_limit: AtomicU64::new(memory_limit),
            limits,
            next_connection_id: AtomicU64::new(1),
            alarms: alarms::Alarms::default(),
            recheck_resources: Arc::new(tokio::sync::Notify::new()),
            vhost_env,
        };
        b.users.restore(&defs.users);
        b.permissions.restore(&defs.permissions);
        b.topic_permissions.restore(&defs.topic_permissions);
        for v in &defs.vhosts {
            b.restore_vhost(v, defs);
        }
        // Overdue delayed messages are routed right away.
        delays.start();
        b
    }

    /// Where vhost, user and permission changes are written first; `None` in memory.
    fn metadata_store(&self) -> Option<Arc<dyn MetadataStore>> {
        self.storage.as_ref().map(|s| s.metadata())
    }

    /// Held by every vhost, user and permission change (`definitions::metadata`).
    fn metadata_door(&self) -> MutexGuard<'_, ()> {
        self.metadata_changes.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Bytes of transient messages the queues hold in memory (see `memory.rs`).
    pub fn transient_memory_used(&self) -> u64 {
        self.vhost_env.paging.budget.used()
    }

    /// Free disk space under the data directory and the alarm's limit (`None` without a store).
    pub fn disk_free(&self) -> Option<(u64, u64)> {
        let free = self.storage.as_ref()?.store.free_space().ok()?;
        Some((free, self.disk_free_limit.load(Ordering::Relaxed)))
    }

    pub fn vhost(&self, name: &ShortStr) -> Option<Arc<VHost>> {
        self.vhosts.get(name).map(|v| v.clone())
    }

    /// The broker-wide counters over the process's life (Prometheus).
    pub fn stats(&self) -> &Arc<stats::BrokerStats> {
        &self.vhost_env.stats
    }

    /// The store writer's batch size and sync latency histograms (`None` without a store).
    pub fn writer_stats(&self) -> Option<&crate::store::writer::WriterStats> {
        self.storage.as_ref().map(|s| s.writer.stats())
    }

    /// Writes queued for the store, which publishers wait on when they are too many (`None`
    /// without a store).
    pub fn store_backlog(&self) -> Option<&Arc<crate::store::backlog::Backlog>> {
        self.storage.as_ref().map(|s| s.writer.backlog())
    }

    /// Direct reply-to consumers (channels register theirs here).
    pub fn replies(&self) -> &ReplyConsumers {
        &self.vhost_env.replies
    }

    /// A receiver that sees `true` once shutdown begins.
    pub fn shutdown_signal(&self) -> tokio::sync::watch::Receiver<bool> {
        self.shutdown.subscribe()
    }

    /// Tells every connection to close (320 CONNECTION_FORCED).
    pub fn begin_shutdown(&self) {
        self.shutdown.send_replace(true);
    }

    /// Counts a live connection until the guard drops (and lists it once registered).
    pub fn connection_guard(&self) -> ConnectionGuard {
        self.connections.guard()
    }

    /// Connection tasks running, including those still in their handshake.
    pub fn connection_count(&self) -> usize {
        self.connections.task_count()
    }

    /// The registry of live connections and channels (list, inspect, close).
    pub fn connections(&self) -> &connections::Connections {
        &self.connections
    }

    /// Shutdown: stops routing delayed messages (they stay held), then waits until everything
    /// handed to the store writer is on disk.
    pub fn flush_store(&self) {
        self.vhost_env.delays.stop();
        if let Some(s) = &self.storage {
            s.writer.flush();
        }
    }

    /// Changes the disk alarm's threshold and checks against it at once.
    pub fn set_disk_free_limit(&self, bytes: u64) {
        self.disk_free_limit.store(bytes, Ordering::Relaxed);
        self.recheck_resources.notify_one();
    }

    /// Changes the memory alarm's threshold (RabbitMQ's `set_vm_memory_high_watermark`) and
    /// checks against it at once.
    pub fn set_memory_high_watermark(&self, watermark: vm_memory::Watermark) {
        let limit = watermark.limit(vm_memory::available_bytes());
        self.memory_limit.store(limit, Ordering::Relaxed);
        tracing::info!(%watermark, limit, "memory high watermark set");
        self.recheck_resources.notify_one();
    }

    /// The process's resident memory and the memory alarm's threshold, in bytes.
    pub fn memory(&self) -> (u64, u64) {
        (vm_memory::resident_bytes(), self.memory_limit.load(Ordering::Relaxed))
    }

    /// Starts watching resident memory, and free disk space and the store's health (with a
    /// store), raising and clearing [`alarms`](Self::alarms). The task holds no strong
    /// reference: it ends with the broker.
    pub fn start_resource_monitor(self: &Arc<Self>) {
        tokio::spawn(monitor_resources(Arc::downgrade(self)));
    }

    /// One look at memory, disk space and store health. Above the watermark, what malloc keeps
    /// of freed memory is given back first (it is not in use, and kept resident it would hold
    /// the alarm on after every backlog is gone); that can take milliseconds with a large heap,
    /// so only this look does it, not the frequent one of memory alone.
    fn check_resources(&self) {
        let (mut used, limit) = self.memory();
        if limit > 0 && used > limit && vm_memory::release_free_memory() {
            used = vm_memory::resident_bytes();
        }
        self.set_memory_alarm(used, limit);
        self.check_disk_and_store();
    }

    /// The memory alarm for `used` bytes resident against `limit`.
    fn set_memory_alarm(&self, used: u64, limit: u64) {
        // used == 0: /proc could not be read (out of file descriptors, say); that is no reason
        // to clear an alarm, nor to raise one.
        if limit > 0 && used > 0 {
            self.alarms.set_memory(used > limit, used, limit);
        }
    }

    /// The disk alarm against free space under the data directory, and the store's health.
    fn check_disk_and_store(&self) {
        let Some(storage) = &self.storage else { return };
        let store = &storage.store;
        let limit = self.disk_free_limit.load(Ordering::Relaxed);
        match store.free_space() {
            Ok(free) => self.alarms.set_disk_free(free < limit, free, limit),
            Err(e) => tracing::warn!(error = %e, dir = %store.path().display(), "cannot read free disk space"),
        }
        // Blocked publishers write nothing, so a failed store is probed to learn it recovered.
        let failing = store.is_write_failing() && !store.probe_write();
        self.alarms.set_store_failed(failing);
    }

    pub fn next_connection_id(&self) -> u64 {
        self.next_connection_id.fetch_add(1, Ordering::Relaxed)
    }
}

/// A random-enough suffix for server-generated names (`amq.gen-…`, `amq.ctag-…`): 22
/// URL-safe characters, as RabbitMQ's are, from the process's randomly keyed hasher.
pub fn random_name(prefix: &str) -> ShortStr {
    const ALPHABET: &[u8] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::from(prefix);
    let mut h = RandomState::new().build_hasher();
    h.write_u128(std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map(|d| d.as_nanos()).unwrap_or(0));
    let mut bits = h.finish() as u128 | ((RandomState::new().build_hasher().finish() as u128) << 64);
    for _ in 0..22 {
        out.push(ALPHABET[(bits & 63) as usize] as char);
        bits >>= 6;
    }
    ShortStr::try_from(out).unwrap_or_default()
}

/// How often free disk space and store health are checked (RabbitMQ checks disk space every
/// few seconds; a statvfs call is cheap).
const RESOURCE_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);
/// How often resident memory is looked at in between, at most: a publisher gets this long's
/// worth of data in past the watermark before it is blocked (600 MiB/s took 2.3× a 128 MiB
/// watermark with a check a second). Reading `/proc/self/statm` costs microseconds, but each
/// look is a wake-up of an otherwise idle broker.
const MEMORY_CHECK_INTERVAL: std::time::Duration = std::time::Duration::from_millis(100);
/// The memory a publisher is assumed to make the broker take per second, at most, to space
/// the looks: the next comes before memory growing this fast could reach the watermark.
const FASTEST_GROWTH: f64 = (1u64 << 30) as f64;

/// When to look at memory next, given what is used and the watermark (0: none): every
/// [`MEMORY_CHECK_INTERVAL`] near or above the watermark, every [`RESOURCE_CHECK_INTERVAL`]
/// far below it (a broker using 100 MiB of a 14 GiB watermark wakes once a second, not ten
/// times).
fn memory_check_interval(used: u64, limit: u64) -> std::time::Duration {
    if limit == 0 {
        return RESOURCE_CHECK_INTERVAL;
    }
    let headroom = limit.saturating_sub(used) as f64;
    std::time::Duration::from_secs_f64(headroom / FASTEST_GROWTH).clamp(MEMORY_CHECK_INTERVAL, RESOURCE_CHECK_INTERVAL)
}

async fn monitor_resources(broker: std::sync::Weak<Broker>) {
    let mut next_full = tokio::time::Instant::now();
    loop {
        let Some(b) = broker.upgrade() else { return };
        // Above the watermark with the alarm not raised yet: the full look decides, after
        // giving back what malloc keeps of freed memory (raising on that would flap).
        let (used, limit) = b.memory();
        let over = limit > 0 && used > limit && !b.alarms.current().memory;
        if over || tokio::time::Instant::now() >= next_full {
            let b2 = b.clone();
            // statvfs and the probe write may block on a sick disk: not on a runtime thread.
            if tokio::task::spawn_blocking(move || b2.check_resources()).await.is_err() {
                return;
            }
            next_full = tokio::time::Instant::now() + RESOURCE_CHECK_INTERVAL;
        } else {
            b.set_memory_alarm(used, limit);
        }
        let recheck = b.recheck_resources.clone();
        let stop = b.shutdown_signal();
        drop(b);
        tokio::select! {
            _ = tokio::time::sleep(memory_check_interval(used, limit)) => {}
            _ = recheck.notified() => next_full = tokio::time::Instant::now(),
        }
        if *stop.borrow() {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn memory_is_looked_at_more_often_the_nearer_the_watermark() {
        const MIB: u64 = 1 << 20;
        assert_eq!(memory_check_interval(100 * MIB, 14 << 30), RESOURCE_CHECK_INTERVAL, "far below");
        let near = memory_check_interval(20 * MIB, 128 * MIB);
        assert!(near <= std::time::Duration::from_millis(110), "108 MiB of room: {near:?}");
        assert_eq!(memory_check_interval(200 * MIB, 128 * MIB), MEMORY_CHECK_INTERVAL, "above it");
        let between = memory_check_interval(0, 512 * MIB);
        assert!(between > MEMORY_CHECK_INTERVAL && between < RESOURCE_CHECK_INTERVAL, "{between:?}");
        assert_eq!(memory_check_interval(100 * MIB, 0), RESOURCE_CHECK_INTERVAL, "no watermark");
    }
}
