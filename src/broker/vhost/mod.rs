//! A virtual host: its exchanges and queues by name, and what its queues need of it.
//!
//! What a vhost does is spread by concern: declaring, deleting and binding — every change to
//! its definitions — is in [`crate::broker::definitions`]; routing in [`route`]; publishing in
//! [`crate::broker::publish`]; rebuilding it from the store at start-up in [`recovery`].

mod recovery;
pub mod route;

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, Weak};

use dashmap::DashMap;

use super::delayed::Delays;
use super::errors;
use super::exchange::{Exchange, ExchangeKind};
use super::memory::Paging;
use super::policy::PolicyTable;
use super::queue::{Queue, QueueEnv};
use super::reply_to::ReplyConsumers;
use super::stats::BrokerStats;
use super::timer::Timers;
use super::NameHasher;
use crate::auth::limits::{LimitSet, Tally};
use crate::protocol::{AmqpError, FieldTable, ShortStr};
use crate::store::{MetadataStore, StoreHandle};
pub use route::RoutedQueues;

/// What every vhost of a broker shares with the others.
#[derive(Clone)]
pub struct VHostEnv {
    /// Where durable definitions and persistent messages go; `None` keeps everything in
    /// memory (unit tests).
    pub storage: Option<Arc<StoreHandle>>,
    /// Where definitions are kept (the same store, seen through the definitions funnel's
    /// narrow interface); `None` with no store.
    pub metadata: Option<Arc<dyn MetadataStore>>,
    /// How much of a backlog queues keep in memory.
    pub paging: Arc<Paging>,
    /// TTLs and queue expiry.
    pub timers: Arc<Timers>,
    /// Where delayed exchanges hold messages (due ones are routed back through their vhost:
    /// [`Delays::register`]).
    pub delays: Arc<Delays>,
    /// Direct reply-to consumers, wherever the reply is published from.
    pub replies: Arc<ReplyConsumers>,
    /// The broker's global counters (Prometheus).
    pub stats: Arc<BrokerStats>,
}

impl VHostEnv {
    /// Everything in memory, nothing shared (benchmarks, unit tests).
    pub fn in_memory() -> VHostEnv {
        VHostEnv {
            storage: None,
            metadata: None,
            paging: Arc::new(Paging::new(usize::MAX, u64::MAX)),
            timers: Arc::default(),
            delays: Delays::new(None),
            replies: Arc::default(),
            stats: Arc::default(),
        }
    }
}

/// What an administrator says about a vhost: RabbitMQ's vhost metadata and tracing flag.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VHostMetadata {
    pub description: String,
    pub tags: Vec<String>,
    /// The queue type of declares that name none (`classic`, `quorum`, `stream`); `None`:
    /// RabbitMQ's `undefined`. Kept and shown; Warren's queues are all classic so far.
    pub default_queue_type: Option<String>,
    pub tracing: bool,
    /// `max-connections` and `max-queues` (see `broker::limits`).
    pub limits: LimitSet,
}

pub struct VHost {
    pub name: ShortStr,
    pub(super) exchanges: DashMap<ShortStr, Arc<Exchange>, NameHasher>,
    pub(super) queues: DashMap<ShortStr, Arc<Queue>, NameHasher>,
    pub(super) env: VHostEnv,
    /// Its policies. Held while a policy change is written and applied, and while a declare
    /// applies them to what it creates, so that each object ends up under the latest ones.
    pub(super) policies: Mutex<PolicyTable>,
    /// This vhost, for its queues (they dead-letter through it) without a reference cycle.
    pub(super) self_ref: Weak<VHost>,
    /// Changed only by the broker's metadata door; a leaf lock (see `LOCKS.md`).
    meta: Mutex<VHostMetadata>,
    /// Set when the vhost is deleted: its connections are being closed, and until they are
    /// gone their declares must not write definitions for a vhost that no longer exists.
    deleted: AtomicBool,
    /// Its open connections, counted against `max-connections`.
    pub connections: Tally,
}

impl VHost {
    /// A vhost with the predeclared exchanges every RabbitMQ vhost has. Built inside
    /// `Arc::new_cyclic` so it knows its own handle: `VHost::create`.
    fn new(name: ShortStr, env: VHostEnv, self_ref: Weak<VHost>) -> VHost {
        let v = VHost {
            name,
            exchanges: DashMap::default(),
            queues: DashMap::default(),
            env,
            policies: Mutex::default(),
            self_ref,
            meta: Mutex::default(),
            deleted: AtomicBool::new(false),
            connections: Tally::default(),
        };
        let predeclared: [(&'static str, ExchangeKind, bool); 7] = [
            ("", ExchangeKind::Direct, false),
            ("amq.direct", ExchangeKind::Direct, false),
            ("amq.fanout", ExchangeKind::Fanout, false),
            ("amq.topic", ExchangeKind::Topic, false),
            ("amq.headers", ExchangeKind::Headers, false),
            ("amq.match", ExchangeKind::Headers, false),
            ("amq.rabbitmq.trace", ExchangeKind::Topic, true),
        ];
        for (n, kind, internal) in predeclared {
            let name = ShortStr::from_static(n);
            let x = Exchange::new(name.clone(), kind, true, false, internal, FieldTable::new());
            v.exchanges.insert(name, Arc::new(x));
        }
        v
    }

    /// A vhost; its delayed exchanges' due messages are routed back to it.
    pub fn create(name: ShortStr, env: VHostEnv) -> Arc<VHost> {
        let delays = env.delays.clone();
        let vhost = Arc::new_cyclic(|me| VHost::new(name, env, me.clone()));
        delays.register(&vhost);
        vhost
    }

    /// A vhost on its own, in memory (benchmarks, unit tests).
    pub fn standalone(name: ShortStr) -> Arc<VHost> {
        VHost::create(name, VHostEnv::in_memory())
    }

    pub(super) fn queue_env(&self) -> QueueEnv {
        QueueEnv {
            vhost: self.self_ref.clone(),
            timers: self.env.timers.clone(),
            paging: self.env.paging.clone(),
            stats: self.env.stats.clone(),
        }
    }

    pub(super) fn metadata(&self) -> Option<&dyn MetadataStore> {
        self.env.metadata.as_deref()
    }

    /// The policy table, locked (see LOCKS.md: above the vhost maps and the queue locks).
    pub(super) fn policy_table(&self) -> MutexGuard<'_, PolicyTable> {
        self.policies.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Description, tags, default queue type and tracing flag.
    pub fn meta(&self) -> VHostMetadata {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// One of its limits (`max-connections`, `max-queues`): `None` when there is none.
    pub fn limit(&self, name: &str) -> Option<usize> {
        self.meta.lock().unwrap_or_else(|e| e.into_inner()).limits.limit(name)
    }

    pub(crate) fn set_meta(&self, meta: VHostMetadata) {
        *self.meta.lock().unwrap_or_else(|e| e.into_inner()) = meta;
    }

    pub fn is_deleted(&self) -> bool {
        self.deleted.load(Ordering::Acquire)
    }

    /// Refuses a definition change in a deleted vhost (`320`, as its connection is being
    /// closed anyway), so that nothing is stored for it after its records were removed.
    pub(super) fn check_live(&self) -> Result<(), AmqpError> {
        if self.is_deleted() {
            return Err(errors::connection_forced(errors::vhost_deleted(&self.name)));
        }
        Ok(())
    }

    /// A deleted vhost lets go of everything it held: every queue is deleted (its consumers
    /// cancelled, its stored messages dropped) and every exchange forgotten. Its definitions
    /// are already gone from the store.
    pub(crate) fn tear_down(&self) {
        self.deleted.store(true, Ordering::Release);
        let queues: Vec<Arc<Queue>> = self.queues.iter().map(|q| q.value().clone()).collect();
        self.queues.clear();
        self.env.stats.queues_deleted.add(queues.len() as u64);
        for q in queues {
            q.delete();
        }
        self.exchanges.clear();
    }

    pub fn exchange(&self, name: &ShortStr) -> Result<Arc<Exchange>, AmqpError> {
        self.exchanges.get(name).map(|x| x.clone()).ok_or_else(|| errors::not_found("exchange", name, &self.name))
    }

    pub fn queue(&self, name: &ShortStr) -> Result<Arc<Queue>, AmqpError> {
        self.queues.get(name).map(|q| q.clone()).ok_or_else(|| errors::not_found("queue", name, &self.name))
    }

    /// A queue the connection `conn` may use: exclusive queues belong to their connection.
    pub fn queue_for(&self, name: &ShortStr, conn: u64) -> Result<Arc<Queue>, AmqpError> {
        let q = self.queue(name)?;
        check_exclusive(&q, Some(conn), false, &self.name)?;
        Ok(q)
    }

    /// Every exchange, the predeclared ones included (management listings).
    pub fn exchanges(&self) -> Vec<Arc<Exchange>> {
        self.exchanges.iter().map(|x| x.value().clone()).collect()
    }

    /// Every queue (management listings).
    pub fn queues(&self) -> Vec<Arc<Queue>> {
        self.queues.iter().map(|q| q.value().clone()).collect()
    }

    /// Ready messages in all queues (start-up report).
    pub fn message_count(&self) -> u64 {
        self.queues.iter().map(|q| u64::from(q.message_count())).sum()
    }

    /// Exclusive queues of a connection that has gone, to delete.
    pub fn exclusive_queues_of(&self, conn: u64) -> Vec<Arc<Queue>> {
        self.queues.iter().filter(|q| q.exclusive_owner == Some(conn)).map(|q| q.value().clone()).collect()
    }
}

/// RabbitMQ's `check_exclusive_access`: an exclusive queue is usable only by its connection;
/// in `strict` mode (a redeclare) an exclusive declare of a non-exclusive queue fails too.
pub(super) fn check_exclusive(q: &Queue, conn: Option<u64>, strict: bool, vhost: &ShortStr) -> Result<(), AmqpError> {
    let ok = match q.exclusive_owner {
        Some(owner) => Some(owner) == conn,
        None => !strict,
    };
    if ok {
        return Ok(());
    }
    Err(errors::exclusive_locked(&q.name, vhost))
}
