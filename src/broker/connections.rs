//! The registry of live connections and their channels: what the management API lists and
//! closes (RabbitMQ's `/api/connections` and `/api/channels`), without depending on the server.
//!
//! A connection is registered once its handshake succeeds and removed however it ends, by the
//! [`ConnectionGuard`] its task holds. Its fixed facts ([`ConnectionInfo`]) are written once;
//! its counters ([`ConnectionStats`]) are relaxed atomics the read loop and the writer task bump
//! once per read or write batch, never per message. Channels register a [`Weak`] handle to a
//! [`ChannelView`] (the server's channel implements it), so the broker sees their state without
//! knowing server types and a forgotten entry never keeps a channel alive.
//!
//! Listing takes no lock for longer than it takes to clone `Arc`s out of a map: snapshots are
//! built afterwards, each channel's under its own delivery lock (see `LOCKS.md`).
//!
//! Closing: [`Connections::close`] sets the connection's close request; its read loop watches
//! it and ends the connection with `320 CONNECTION_FORCED - <reason>`, tearing down as for any
//! other end (unacked messages requeued, exclusive queues deleted).

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicU8, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, Weak};

use dashmap::DashMap;
use tokio::sync::watch;

use super::stats::BrokerStats;
use crate::auth::limits::Tally;
use crate::protocol::{FieldTable, ShortStr};

/// The protocol every connection speaks, as RabbitMQ names it in `protocol`.
pub const PROTOCOL: &str = "AMQP 0-9-1";

/// What is fixed when a connection's handshake completes.
#[derive(Debug, Clone)]
pub struct ConnectionInfo {
    pub id: u64,
    /// RabbitMQ's `name`: `peer -> local`, e.g. `127.0.0.1:54321 -> 127.0.0.1:5672`.
    pub name: String,
    pub peer: SocketAddr,
    pub local: SocketAddr,
    pub user: String,
    pub vhost: ShortStr,
    /// The client's `connection.start-ok` properties (`product`, `version`, `capabilities`...).
    pub client_properties: FieldTable,
    /// When the connection was accepted, in ms since the UNIX epoch.
    pub connected_at: u64,
    pub frame_max: u32,
    pub channel_max: u16,
    /// Negotiated heartbeat interval in seconds (0 = off).
    pub heartbeat: u16,
    pub protocol: &'static str,
    /// The SASL mechanism the client logged in with (`PLAIN`, `AMQPLAIN`).
    pub auth_mechanism: String,
    /// Whether the connection runs over TLS (the AMQPS listener).
    pub ssl: bool,
}

impl ConnectionInfo {
    /// RabbitMQ's connection name for these addresses.
    pub fn name_for(peer: SocketAddr, local: SocketAddr) -> String {
        format!("{peer} -> {local}")
    }
}

/// A connection's traffic counters, from its first byte (handshake included). Relaxed atomics:
/// each is written by one task, once per batch, and read only for reporting.
/// Also added to the broker's totals (`global`), at the same batch granularity, so that the
/// node-wide traffic counters keep what closed connections carried.
#[derive(Default)]
pub struct ConnectionStats {
    recv_oct: AtomicU64,
    send_oct: AtomicU64,
    recv_cnt: AtomicU64,
    published: AtomicU64,
    global: Option<Arc<BrokerStats>>,
    /// A [`ConnectionState`].
    state: AtomicU8,
}

/// Whether a connection is being read, as RabbitMQ's `state` says it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
#[repr(u8)]
pub enum ConnectionState {
    #[default]
    Running = 0,
    /// Not read for now: a queue it publishes to is held back (`queue::flow`).
    Flow = 1,
    /// Not read until a resource alarm clears.
    Blocked = 2,
}

impl ConnectionState {
    pub fn as_str(self) -> &'static str {
        match self {
            ConnectionState::Running => "running",
            ConnectionState::Flow => "flow",
            ConnectionState::Blocked => "blocked",
        }
    }
}

impl std::fmt::Debug for ConnectionStats {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConnectionStats").field("snapshot", &self.snapshot()).finish()
    }
}

impl ConnectionStats {
    /// Counters of a connection of the broker whose totals are `global`.
    pub fn counted_in(global: Arc<BrokerStats>) -> ConnectionStats {
        ConnectionStats { global: Some(global), ..ConnectionStats::default() }
    }

    /// Bytes read from the socket (once per read).
    pub fn received(&self, octets: usize) {
        self.recv_oct.fetch_add(octets as u64, Ordering::Relaxed);
        if let Some(g) = &self.global {
            g.recv_oct.add(octets as u64);
        }
    }

    /// Bytes written to the socket (once per writer batch).
    pub fn sent(&self, octets: usize) {
        self.send_oct.fetch_add(octets as u64, Ordering::Relaxed);
        if let Some(g) = &self.global {
            g.send_oct.add(octets as u64);
        }
    }

    /// Frames decoded and messages published in one read batch.
    pub fn read_batch(&self, frames: u64, published: u64) {
        if frames > 0 {
            self.recv_cnt.fetch_add(frames, Ordering::Relaxed);
        }
        if published > 0 {
            self.published.fetch_add(published, Ordering::Relaxed);
        }
        if let Some(g) = &self.global {
            g.recv_cnt.add(frames);
            g.received.add(published);
        }
    }

    pub fn set_state(&self, state: ConnectionState) {
        self.state.store(state as u8, Ordering::Relaxed);
    }

    pub fn state(&self) -> ConnectionState {
        match self.state.load(Ordering::Relaxed) {
            1 => ConnectionState::Flow,
            2 => ConnectionState::Blocked,
            _ => ConnectionState::Running,
        }
    }

    pub fn snapshot(&self) -> StatsSnapshot {
        StatsSnapshot {
            state: self.state(),
            recv_oct: self.recv_oct.load(Ordering::Relaxed),
            send_oct: self.send_oct.load(Ordering::Relaxed),
            recv_cnt: self.recv_cnt.load(Ordering::Relaxed),
            messages_published: self.published.load(Ordering::Relaxed),
        }
    }
}

/// [`ConnectionStats`] at one moment (RabbitMQ's field names where it has them).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct StatsSnapshot {
    /// Octets received.
    pub recv_oct: u64,
    /// Octets sent.
    pub send_oct: u64,
    /// Frames received (heartbeats included, handshake not).
    pub recv_cnt: u64,
    /// `basic.publish` methods received.
    pub messages_published: u64,
    pub state: ConnectionState,
}

/// A channel's state as the management API shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChannelSnapshot {
    pub number: u16,
    /// The [`ConnectionInfo::id`] of its connection.
    pub connection: u64,
    /// `basic.qos global=false`: the limit given to consumers started after it (0 = none).
    pub prefetch_count: u16,
    /// `basic.qos global=true`: the limit shared by all of the channel's consumers (0 = none).
    pub global_prefetch_count: u16,
    pub consumer_count: usize,
    pub messages_unacknowledged: usize,
    pub confirm: bool,
    pub transactional: bool,
    /// Delivery tags handed out: `basic.deliver`s and `basic.get-ok`s.
    pub messages_delivered: u64,
}

/// A live channel, seen from the broker (the server's channel implements it).
pub trait ChannelView: Send + Sync {
    fn snapshot(&self) -> ChannelSnapshot;
}

/// A registered connection.
pub struct ConnectionEntry {
    pub info: Arc<ConnectionInfo>,
    pub stats: Arc<ConnectionStats>,
    /// Open channels by number. A leaf lock: snapshots are taken after releasing it.
    channels: Mutex<BTreeMap<u16, Weak<dyn ChannelView>>>,
    /// `Some(reason)` once someone asked this connection to close.
    close: watch::Sender<Option<String>>,
}

impl ConnectionEntry {
    pub fn new(info: ConnectionInfo, stats: Arc<ConnectionStats>) -> Arc<ConnectionEntry> {
        Arc::new(ConnectionEntry {
            info: Arc::new(info),
            stats,
            channels: Mutex::new(BTreeMap::new()),
            close: watch::channel(None).0,
        })
    }

    pub fn id(&self) -> u64 {
        self.info.id
    }

    /// What the connection's read loop watches for a close request (the reason).
    pub fn close_requests(&self) -> watch::Receiver<Option<String>> {
        self.close.subscribe()
    }

    /// Asks the connection to close with `320 CONNECTION_FORCED - <reason>`. The first
    /// request's reason wins.
    pub fn request_close(&self, reason: &str) {
        self.close.send_if_modified(|r| {
            if r.is_some() {
                return false;
            }
            *r = Some(reason.to_string());
            true
        });
    }

    pub fn add_channel(&self, number: u16, channel: Weak<dyn ChannelView>) {
        self.lock_channels().insert(number, channel);
    }

    pub fn remove_channel(&self, number: u16) {
        self.lock_channels().remove(&number);
    }

    /// Open channels (a channel dropped without being removed no longer counts).
    pub fn channel_count(&self) -> usize {
        self.lock_channels().values().filter(|c| c.strong_count() > 0).count()
    }

    /// Snapshots of the open channels, by number.
    pub fn channels(&self) -> Vec<ChannelSnapshot> {
        let live: Vec<Arc<dyn ChannelView>> = self.lock_channels().values().filter_map(Weak::upgrade).collect();
        live.iter().map(|c| c.snapshot()).collect()
    }

    pub fn snapshot(&self) -> ConnectionSnapshot {
        ConnectionSnapshot { info: self.info.clone(), channels: self.channel_count(), stats: self.stats.snapshot() }
    }

    fn lock_channels(&self) -> std::sync::MutexGuard<'_, BTreeMap<u16, Weak<dyn ChannelView>>> {
        self.channels.lock().unwrap_or_else(|e| e.into_inner())
    }
}

/// A connection as the management API lists it.
#[derive(Debug, Clone)]
pub struct ConnectionSnapshot {
    pub info: Arc<ConnectionInfo>,
    /// Open channels.
    pub channels: usize,
    pub stats: StatsSnapshot,
}

/// What one user has open, counted against its `max-connections` and `max-channels`.
#[derive(Debug, Default)]
pub struct UserTallies {
    pub connections: Tally,
    pub channels: Tally,
}

/// Every live connection of the broker.
#[derive(Default)]
pub struct Connections {
    entries: DashMap<u64, Arc<ConnectionEntry>>,
    /// Connection tasks running, handshake or not (what shutdown waits for).
    live: AtomicUsize,
    /// Per user that logged in since start-up (a few words each; never removed, so that a
    /// place taken is always given back to the tally it came from).
    users: DashMap<String, Arc<UserTallies>>,
}

impl Connections {
    /// Connection tasks running, including those still in their handshake.
    pub fn task_count(&self) -> usize {
        self.live.load(Ordering::Acquire)
    }

    /// Registered (handshake completed) connections.
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// The registered connections, by id.
    pub fn entries(&self) -> Vec<Arc<ConnectionEntry>> {
        let mut all: Vec<Arc<ConnectionEntry>> = self.entries.iter().map(|e| e.value().clone()).collect();
        all.sort_by_key(|e| e.id());
        all
    }

    pub fn entry(&self, id: u64) -> Option<Arc<ConnectionEntry>> {
        self.entries.get(&id).map(|e| e.value().clone())
    }

    /// Snapshots of the registered connections, by id.
    pub fn list(&self) -> Vec<ConnectionSnapshot> {
        self.entries().iter().map(|e| e.snapshot()).collect()
    }

    pub fn get(&self, id: u64) -> Option<ConnectionSnapshot> {
        self.entry(id).map(|e| e.snapshot())
    }

    /// Snapshots of every open channel, by connection id and channel number.
    pub fn channels(&self) -> Vec<ChannelSnapshot> {
        self.entries().iter().flat_map(|e| e.channels()).collect()
    }

    /// Asks connection `id` to close with `320 CONNECTION_FORCED - <reason>`; false if there is
    /// no such connection (any more). The connection ends asynchronously.
    pub fn close(&self, id: u64, reason: &str) -> bool {
        match self.entry(id) {
            Some(e) => {
                e.request_close(reason);
                true
            }
            None => false,
        }
    }

    /// Asks every connection `which` picks to close with `320 CONNECTION_FORCED - <reason>`
    /// (the connections of a deleted vhost or user); returns how many were asked.
    pub fn close_where(&self, reason: &str, which: impl Fn(&ConnectionInfo) -> bool) -> usize {
        let chosen: Vec<Arc<ConnectionEntry>> = self.entries().into_iter().filter(|e| which(&e.info)).collect();
        for e in &chosen {
            e.request_close(reason);
        }
        chosen.len()
    }

    /// What `user` has open.
    pub fn user_tallies(&self, user: &str) -> Arc<UserTallies> {
        if let Some(t) = self.users.get(user) {
            return t.clone();
        }
        self.users.entry(user.to_string()).or_default().clone()
    }

    /// Counts a connection task until the guard drops.
    pub fn guard(self: &Arc<Self>) -> ConnectionGuard {
        self.live.fetch_add(1, Ordering::AcqRel);
        ConnectionGuard { registry: self.clone(), registered: None }
    }
}

/// Held by a connection's task: counts it while it runs and removes its registry entry when it
/// ends, however it ends.
pub struct ConnectionGuard {
    registry: Arc<Connections>,
    registered: Option<u64>,
}

impl ConnectionGuard {
    /// Lists the connection (after its handshake) until the guard drops.
    pub fn register(&mut self, entry: Arc<ConnectionEntry>) {
        let id = entry.id();
        if let Some(old) = self.registered.replace(id) {
            self.registry.entries.remove(&old);
        }
        self.registry.entries.insert(id, entry);
    }
}

impl Drop for ConnectionGuard {
    fn drop(&mut self) {
        if let Some(id) = self.registered.take() {
            self.registry.entries.remove(&id);
        }
        self.registry.live.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    struct FakeChannel(ChannelSnapshot);

    impl ChannelView for FakeChannel {
        fn snapshot(&self) -> ChannelSnapshot {
            self.0.clone()
        }
    }

    fn info(id: u64) -> ConnectionInfo {
        let peer: SocketAddr = "127.0.0.1:54321".parse().unwrap();
        let local: SocketAddr = "127.0.0.1:5672".parse().unwrap();
        ConnectionInfo {
            id,
            name: ConnectionInfo::name_for(peer, local),
            peer,
            local,
            user: "guest".into(),
            vhost: ShortStr::from_static("/"),
            client_properties: FieldTable::new(),
            connected_at: 0,
            frame_max: 131072,
            channel_max: 2047,
            heartbeat: 60,
            protocol: PROTOCOL,
            auth_mechanism: "PLAIN".into(),
            ssl: false,
        }
    }

    fn channel(connection: u64, number: u16) -> Arc<FakeChannel> {
        Arc::new(FakeChannel(ChannelSnapshot {
            number,
            connection,
            prefetch_count: 0,
            global_prefetch_count: 0,
            consumer_count: 0,
            messages_unacknowledged: 0,
            confirm: false,
            transactional: false,
            messages_delivered: 0,
        }))
    }

    #[test]
    fn guards_count_tasks_and_list_registered_connections_until_dropped() {
        let registry = Arc::new(Connections::default());
        let mut a = registry.guard();
        let _in_handshake = registry.guard();
        assert_eq!((registry.task_count(), registry.len()), (2, 0));
        a.register(ConnectionEntry::new(info(7), Arc::default()));
        let listed = registry.list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].info.name, "127.0.0.1:54321 -> 127.0.0.1:5672");
        drop(a);
        assert_eq!((registry.task_count(), registry.len()), (1, 0));
        assert!(registry.get(7).is_none());
    }

    #[test]
    fn channels_are_listed_while_they_live() {
        let registry = Arc::new(Connections::default());
        let mut guard = registry.guard();
        let entry = ConnectionEntry::new(info(1), Arc::default());
        guard.register(entry.clone());
        let (one, two) = (channel(1, 1), channel(1, 2));
        entry.add_channel(2, Arc::downgrade(&two) as Weak<dyn ChannelView>);
        entry.add_channel(1, Arc::downgrade(&one) as Weak<dyn ChannelView>);
        let numbers: Vec<u16> = registry.channels().iter().map(|c| c.number).collect();
        assert_eq!(numbers, vec![1, 2]);
        entry.remove_channel(1);
        drop(two); // gone without being removed: no longer listed
        assert!(registry.channels().is_empty());
        assert_eq!(registry.get(1).unwrap().channels, 0);
    }

    #[test]
    fn close_requests_reach_the_connection_and_the_first_reason_wins() {
        let registry = Arc::new(Connections::default());
        let mut guard = registry.guard();
        let entry = ConnectionEntry::new(info(3), Arc::default());
        let requests = entry.close_requests();
        guard.register(entry);
        assert!(!registry.close(4, "no such connection"));
        assert!(registry.close(3, "first"));
        assert!(registry.close(3, "second"));
        assert_eq!(requests.borrow().as_deref(), Some("first"));
    }

    #[test]
    fn close_where_picks_connections_by_what_they_are() {
        let registry = Arc::new(Connections::default());
        let mut guards = Vec::new();
        let mut requests = Vec::new();
        for (id, vhost) in [(1, "a"), (2, "b"), (3, "a")] {
            let mut guard = registry.guard();
            let entry = ConnectionEntry::new(
                ConnectionInfo { vhost: ShortStr::try_from(vhost).unwrap(), ..info(id) },
                Arc::default(),
            );
            requests.push(entry.close_requests());
            guard.register(entry);
            guards.push(guard);
        }
        assert_eq!(registry.close_where("vhost 'a' is deleted", |c| c.vhost == "a"), 2);
        let reasons: Vec<Option<String>> = requests.iter().map(|r| r.borrow().clone()).collect();
        let a = Some("vhost 'a' is deleted".to_string());
        assert_eq!(reasons, [a.clone(), None, a]);
    }

    #[test]
    fn stats_add_up() {
        let stats = ConnectionStats::default();
        stats.received(100);
        stats.received(20);
        stats.sent(7);
        stats.read_batch(3, 1);
        stats.read_batch(0, 0);
        let s = stats.snapshot();
        assert_eq!((s.recv_oct, s.send_oct, s.recv_cnt, s.messages_published), (120, 7, 3, 1));
    }
}
