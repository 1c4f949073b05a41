//! A virtual host: its exchanges and queues, and the operations on them with RabbitMQ's
//! checks and reply texts (`NOT_FOUND - no queue 'q' in vhost '/'`, ...).

use std::sync::{Arc, Weak};

use dashmap::DashMap;
use smallvec::{smallvec, SmallVec};

use super::dead_letter::{dead_lettered, is_cycle, run_flattened, DeadLetter};
use super::delayed::Delays;
use super::exchange::{delayed as delayed_rules, Binding, Destination, Destinations, Exchange, ExchangeKind};
use super::message::Message;
use super::queue::{Queue, QueueArgs, QueueEnv, QueueStore, Recovered};
use super::timer::Timers;
use super::NameHasher;
use crate::protocol::{AmqpError, FieldTable, FieldValue, ReplyCode, ShortStr};
use crate::store::writer::Completion;
use crate::store::{messages, BindingDef, Definitions, Durable, ExchangeDef, QueueDef, Store, StoreError};

/// Arguments whose values must match when a queue is redeclared (RabbitMQ ignores others).
const QUEUE_EQUIVALENCE_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-length-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-type",
    "x-single-active-consumer",
    "x-delivery-limit",
];

const EXCHANGE_EQUIVALENCE_ARGS: &[&str] = &["alternate-exchange"];

/// What `exchange.declare` asks for.
#[derive(Debug, Clone)]
pub struct ExchangeSpec {
    pub name: ShortStr,
    pub kind: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

/// What `queue.declare` asks for (the name already resolved for server-named queues).
#[derive(Debug, Clone)]
pub struct QueueSpec {
    pub name: ShortStr,
    /// The broker chose the name (`amq.gen-…`), so the reserved `amq.` prefix is fine.
    pub server_named: bool,
    pub durable: bool,
    pub exclusive_owner: Option<u64>,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

/// The queues a message reaches, each once.
pub type RoutedQueues = SmallVec<[Arc<Queue>; 4]>;

pub struct VHost {
    pub name: ShortStr,
    exchanges: DashMap<ShortStr, Arc<Exchange>, NameHasher>,
    queues: DashMap<ShortStr, Arc<Queue>, NameHasher>,
    /// Where durable definitions and persistent messages go; `None` keeps everything in
    /// memory (unit tests).
    durable: Option<Arc<Durable>>,
    /// This vhost, for its queues (they dead-letter through it) without a reference cycle.
    self_ref: Weak<VHost>,
    timers: Arc<Timers>,
    /// Where delayed exchanges hold messages (shared by the broker's vhosts).
    delays: Arc<Delays>,
}

fn store_failed(e: StoreError) -> AmqpError {
    tracing::error!(error = %e, "could not write a definition to the store");
    AmqpError::new(ReplyCode::InternalError, format!("could not persist the definition: {e}"))
}

fn not_found(kind: &str, name: &ShortStr, vhost: &ShortStr) -> AmqpError {
    AmqpError::new(ReplyCode::NotFound, format!("no {kind} '{name}' in vhost '{vhost}'"))
}

fn default_exchange_refused() -> AmqpError {
    AmqpError::new(ReplyCode::AccessRefused, "operation not permitted on the default exchange")
}

impl VHost {
    /// A vhost with the exchanges every RabbitMQ vhost has.
    /// A vhost with the predeclared exchanges. Built inside `Arc::new_cyclic` so it knows its
    /// own handle: `VHost::create`.
    fn new(
        name: ShortStr,
        durable: Option<Arc<Durable>>,
        self_ref: Weak<VHost>,
        timers: Arc<Timers>,
        delays: Arc<Delays>,
    ) -> VHost {
        let v = VHost {
            name,
            exchanges: DashMap::default(),
            queues: DashMap::default(),
            durable,
            self_ref,
            timers,
            delays,
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

    /// A vhost; `delays` holds its delayed messages (and must route due ones back to it:
    /// [`Delays::register`]).
    pub fn create(
        name: ShortStr,
        durable: Option<Arc<Durable>>,
        timers: Arc<Timers>,
        delays: Arc<Delays>,
    ) -> Arc<VHost> {
        Arc::new_cyclic(|me| VHost::new(name, durable, me.clone(), timers, delays))
    }

    /// A vhost on its own, in memory (benchmarks, unit tests).
    pub fn standalone(name: ShortStr) -> Arc<VHost> {
        VHost::create(name, None, Arc::default(), Delays::new(None))
    }

    fn queue_env(&self) -> QueueEnv {
        QueueEnv { vhost: self.self_ref.clone(), timers: self.timers.clone() }
    }

    fn store(&self) -> Option<&Store> {
        self.durable.as_deref().map(|d| &*d.store)
    }

    pub fn exchange(&self, name: &ShortStr) -> Result<Arc<Exchange>, AmqpError> {
        self.exchanges.get(name).map(|x| x.clone()).ok_or_else(|| not_found("exchange", name, &self.name))
    }

    pub fn queue(&self, name: &ShortStr) -> Result<Arc<Queue>, AmqpError> {
        self.queues.get(name).map(|q| q.clone()).ok_or_else(|| not_found("queue", name, &self.name))
    }

    /// A queue the connection `conn` may use: exclusive queues belong to their connection.
    pub fn queue_for(&self, name: &ShortStr, conn: u64) -> Result<Arc<Queue>, AmqpError> {
        let q = self.queue(name)?;
        check_exclusive(&q, Some(conn), false, &self.name)?;
        Ok(q)
    }

    pub fn queue_names(&self) -> Vec<ShortStr> {
        self.queues.iter().map(|e| e.key().clone()).collect()
    }

    pub fn declare_exchange(&self, spec: ExchangeSpec) -> Result<Arc<Exchange>, AmqpError> {
        if spec.name.is_empty() {
            return Err(default_exchange_refused());
        }
        if let Some(existing) = self.exchanges.get(&spec.name) {
            let x = existing.clone();
            drop(existing);
            self.assert_exchange_equivalent(&x, &spec)?;
            return Ok(x);
        }
        if spec.name.as_bytes().starts_with(b"amq.") {
            return Err(AmqpError::new(
                ReplyCode::AccessRefused,
                format!("exchange name '{}' contains reserved prefix 'amq.*'", spec.name),
            ));
        }
        if spec.kind == ExchangeKind::MessageDeduplication {
            super::dedup::SeenCache::from_arguments(&spec.arguments)?;
        }
        if let Some(ae) = spec.arguments.get("alternate-exchange") {
            if ae.as_bytes().is_none() {
                return Err(AmqpError::new(
                    ReplyCode::PreconditionFailed,
                    format!("invalid arg 'alternate-exchange' for exchange '{}' in vhost '{}'", spec.name, self.name),
                ));
            }
        }
        if spec.kind == ExchangeKind::Delayed {
            delayed_rules::routing_type(&spec.arguments)?;
        }
        let x = Arc::new(Exchange::new(
            spec.name.clone(),
            spec.kind,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            spec.arguments,
        ));
        // Written before it becomes visible: a declare-ok promises the definition survives.
        if let (Some(store), true) = (self.store(), x.durable) {
            store.save_exchange(&self.exchange_def(&x)).map_err(store_failed)?;
        }
        // Two declares racing: the first one in wins and the second is checked against it.
        let entry = self.exchanges.entry(spec.name.clone()).or_insert(x).clone();
        Ok(entry)
    }

    fn assert_exchange_equivalent(&self, x: &Exchange, spec: &ExchangeSpec) -> Result<(), AmqpError> {
        let what = format!("exchange '{}' in vhost '{}'", x.name, self.name);
        if x.kind != spec.kind {
            return Err(inequivalent("type", &what, spec.kind.name(), x.kind.name()));
        }
        assert_flag("durable", &what, spec.durable, x.durable)?;
        assert_flag("auto_delete", &what, spec.auto_delete, x.auto_delete)?;
        assert_flag("internal", &what, spec.internal, x.internal)?;
        assert_args_equivalent(EXCHANGE_EQUIVALENCE_ARGS, &what, &spec.arguments, &x.arguments)?;
        if x.is_delayed() {
            // Stricter than the plugin, which compares only what RabbitMQ does (alternate-exchange).
            assert_args_equivalent(&[delayed_rules::ROUTING_TYPE_ARG], &what, &spec.arguments, &x.arguments)?;
        }
        Ok(())
    }

    pub fn delete_exchange(&self, name: &ShortStr, if_unused: bool) -> Result<(), AmqpError> {
        if name.is_empty() {
            return Err(default_exchange_refused());
        }
        let Some(x) = self.exchanges.get(name).map(|x| x.clone()) else {
            return Ok(()); // RabbitMQ: deleting what is not there succeeds
        };
        if if_unused && x.has_bindings() {
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                format!("exchange '{name}' in vhost '{}' in use", self.name),
            ));
        }
        self.forget_exchange(&x).map_err(store_failed)?;
        Ok(())
    }

    /// Declares (or checks, when `passive`) a queue. Returns it and whether it was created.
    pub fn declare_queue(&self, spec: QueueSpec, passive: bool, conn: u64) -> Result<(Arc<Queue>, bool), AmqpError> {
        if !passive {
            // Checked first, as RabbitMQ does: a bad argument is refused even for an existing queue.
            QueueArgs::parse(&spec.arguments, &spec.name.to_string_lossy(), &self.name.to_string_lossy())?;
        }
        if let Some(existing) = self.queues.get(&spec.name).map(|q| q.clone()) {
            if passive {
                check_exclusive(&existing, Some(conn), false, &self.name)?;
                existing.touch();
                return Ok((existing, false));
            }
            check_exclusive(
                &existing,
                spec.exclusive_owner.or(Some(conn)),
                spec.exclusive_owner.is_some(),
                &self.name,
            )?;
            let what = format!("queue '{}' in vhost '{}'", existing.name, self.name);
            assert_flag("durable", &what, spec.durable, existing.durable)?;
            assert_flag("auto_delete", &what, spec.auto_delete, existing.auto_delete)?;
            assert_args_equivalent(QUEUE_EQUIVALENCE_ARGS, &what, &spec.arguments, &existing.arguments)?;
            existing.touch();
            return Ok((existing, false));
        }
        if passive {
            return Err(not_found("queue", &spec.name, &self.name));
        }
        if spec.name.as_bytes().starts_with(b"amq.") && !spec.server_named {
            return Err(AmqpError::new(
                ReplyCode::AccessRefused,
                format!("queue name '{}' contains reserved prefix 'amq.*'", spec.name),
            ));
        }
        let mut q = Queue::new(
            spec.name.clone(),
            self.name.clone(),
            spec.durable,
            spec.exclusive_owner,
            spec.auto_delete,
            spec.arguments,
        )
        .with_env(self.queue_env());
        if let Some(durable) = &self.durable {
            let id = durable.new_queue_id();
            // Exclusive and transient queues are never stored (they do not outlive their
            // connection or the broker), but they page their backlogs through the store too.
            if q.durable && q.exclusive_owner.is_none() {
                let def = QueueDef {
                    vhost: self.name.clone(),
                    name: q.name.clone(),
                    id,
                    auto_delete: q.auto_delete,
                    arguments: q.arguments.clone(),
                };
                durable.store.save_queue(&def).map_err(store_failed)?;
            }
            q = q.with_store(QueueStore { id, durable: durable.clone() });
        }
        let q = Arc::new(q);
        let mut created = false;
        let q = self
            .queues
            .entry(spec.name.clone())
            .or_insert_with(|| {
                created = true;
                q
            })
            .clone();
        // No explicit binding to the default exchange: routing there looks the queue up by name.
        q.touch();
        Ok((q, created))
    }

    /// Deletes a queue; returns the number of ready messages it held (0 if it was not there).
    pub fn delete_queue(&self, name: &ShortStr, if_unused: bool, if_empty: bool, conn: u64) -> Result<u32, AmqpError> {
        let Some(q) = self.queues.get(name).map(|q| q.clone()) else { return Ok(0) };
        check_exclusive(&q, Some(conn), false, &self.name)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                format!("queue '{name}' in vhost '{}' in use", self.name),
            ));
        }
        if if_empty && q.message_count() > 0 {
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                format!("queue '{name}' in vhost '{}' not empty", self.name),
            ));
        }
        Ok(self.remove_queue(&q))
    }

    /// Removes a queue from the vhost and its bindings (delete, auto-delete, exclusive owner
    /// gone). Returns its ready message count.
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        self.queues.remove_if(&q.name, |_, v| Arc::ptr_eq(v, q));
        let count = q.delete();
        self.remove_bindings_to(&Destination::Queue(q.clone()));
        if let (Some(store), true) = (self.store(), q.durable && q.exclusive_owner.is_none()) {
            if let Err(e) = store.delete_entity(&self.name, &q.name, true) {
                tracing::error!(queue = %q.name, error = %e, "deleted queue stays in the store");
            }
        }
        count
    }

    fn remove_bindings_to(&self, dest: &Destination) {
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.iter().map(|e| e.value().clone()).collect();
        for x in exchanges {
            if x.unbind_destination(dest) > 0 {
                self.maybe_auto_delete(&x);
            }
        }
    }

    fn maybe_auto_delete(&self, x: &Arc<Exchange>) {
        if x.auto_delete && !x.has_bindings() {
            if let Err(e) = self.forget_exchange(x) {
                tracing::error!(exchange = %x.name, error = %e, "auto-deleted exchange stays in the store");
            }
        }
    }

    /// Removes an exchange from the map, the bindings that lead to it, and the store.
    fn forget_exchange(&self, x: &Arc<Exchange>) -> Result<(), StoreError> {
        self.exchanges.remove_if(&x.name, |_, v| Arc::ptr_eq(v, x));
        self.remove_bindings_to(&Destination::Exchange(x.clone()));
        match (self.store(), x.durable) {
            (Some(store), true) => store.delete_entity(&self.name, &x.name, false),
            _ => Ok(()),
        }
    }

    fn exchange_def(&self, x: &Exchange) -> ExchangeDef {
        ExchangeDef {
            vhost: self.name.clone(),
            name: x.name.clone(),
            kind: ShortStr::from_static(x.kind.name()),
            auto_delete: x.auto_delete,
            internal: x.internal,
            arguments: x.arguments.clone(),
        }
    }

    /// The stored form of a binding, if both ends are durable (RabbitMQ keeps only those).
    fn binding_def(&self, source: &Exchange, binding: &Binding) -> Option<BindingDef> {
        let (to_queue, destination, durable) = match &binding.destination {
            Destination::Queue(q) => (true, q.name.clone(), q.durable && q.exclusive_owner.is_none()),
            Destination::Exchange(e) => (false, e.name.clone(), e.durable),
        };
        (source.durable && durable).then(|| BindingDef {
            vhost: self.name.clone(),
            source: source.name.clone(),
            to_queue,
            destination,
            routing_key: binding.routing_key.clone(),
            arguments: binding.arguments.clone(),
        })
    }

    /// The exchange a binding starts from: the default exchange takes no explicit bindings.
    fn binding_source(&self, source: &ShortStr) -> Result<Arc<Exchange>, AmqpError> {
        if source.is_empty() {
            return Err(default_exchange_refused());
        }
        self.exchange(source)
    }

    /// `queue.bind` and `exchange.bind`: `destination` is already resolved.
    pub fn bind(
        &self,
        source: &ShortStr,
        destination: Destination,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> Result<(), AmqpError> {
        let x = self.binding_source(source)?;
        if x.routing_kind() == ExchangeKind::Headers {
            super::exchange::headers::XMatch::from_arguments(&arguments)
                .map_err(|e| AmqpError::new(ReplyCode::PreconditionFailed, e))?;
        }
        let binding = Binding { destination, routing_key, arguments };
        if x.has_binding(&binding) {
            return Ok(());
        }
        if let (Some(store), Some(def)) = (self.store(), self.binding_def(&x, &binding)) {
            store.save_binding(&def).map_err(store_failed)?;
        }
        x.bind(binding);
        Ok(())
    }

    pub fn unbind(
        &self,
        source: &ShortStr,
        destination: Destination,
        routing_key: ShortStr,
        arguments: FieldTable,
    ) -> Result<(), AmqpError> {
        let x = self.binding_source(source)?;
        let binding = Binding { destination, routing_key, arguments };
        if x.unbind(&binding) {
            if let (Some(store), Some(def)) = (self.store(), self.binding_def(&x, &binding)) {
                store.delete_binding(&def).map_err(store_failed)?;
            }
            self.maybe_auto_delete(&x);
        }
        Ok(())
    }

    /// The queues a message published to `exchange` reaches: following exchange-to-exchange
    /// bindings and alternate exchanges, each queue once. `extra_keys` are the CC/BCC routing
    /// keys of sender-selected distribution. A delayed exchange on the way holds a message with
    /// a positive `x-delay` (that branch reaches no queue now).
    pub fn route(&self, exchange: &Arc<Exchange>, msg: &Message, extra_keys: &[&[u8]]) -> RoutedQueues {
        self.route_holding(exchange, msg, extra_keys, &mut || None)
    }

    /// [`route`](Self::route), where each message a delayed exchange holds takes a completion
    /// from `held`, run once the message is safely stored (publisher confirms wait for it).
    pub fn route_holding(
        &self,
        exchange: &Arc<Exchange>,
        msg: &Message,
        extra_keys: &[&[u8]],
        held: &mut dyn FnMut() -> Option<Completion>,
    ) -> RoutedQueues {
        // Inline capacities cover the usual message (one key, an exchange or two, a few
        // queues): routing allocates nothing then.
        let mut keys: SmallVec<[&[u8]; 2]> = SmallVec::with_capacity(1 + extra_keys.len());
        keys.push(msg.routing_key.as_bytes());
        keys.extend_from_slice(extra_keys);
        let headers = msg.headers();

        let mut queues = RoutedQueues::new();
        let mut seen: SmallVec<[Arc<Exchange>; 4]> = smallvec![exchange.clone()];
        let mut todo: SmallVec<[Arc<Exchange>; 4]> = smallvec![exchange.clone()];
        let mut dests = Destinations::new();
        while let Some(x) = todo.pop() {
            dests.clear();
            if x.is_delayed() {
                if let Some(delay) = delayed_rules::delay_of(headers) {
                    self.delays.hold(&self.name, &x, msg, extra_keys, delay, held());
                    continue;
                }
            }
            if x.name.is_empty() {
                for key in &keys {
                    if let Some(q) = self.queues.get(*key).map(|q| q.clone()) {
                        dests.push(Destination::Queue(q));
                    }
                }
            } else {
                x.route(&keys, headers, &mut dests);
            }
            if dests.is_empty() {
                if let Some(ae) = x.alternate_exchange() {
                    if let Some(ae) = self.exchanges.get(ae).map(|e| e.clone()) {
                        if !seen.iter().any(|s| Arc::ptr_eq(s, &ae)) {
                            seen.push(ae.clone());
                            todo.push(ae);
                        }
                    }
                }
                continue;
            }
            for d in dests.drain(..) {
                match d {
                    Destination::Queue(q) => queues.push(q),
                    Destination::Exchange(e) => {
                        if !seen.iter().any(|s| Arc::ptr_eq(s, &e)) {
                            seen.push(e.clone());
                            todo.push(e);
                        }
                    }
                }
            }
        }
        // Each queue once, however many bindings and keys led to it; sorting keeps this
        // O(n log n) when a message matches many queues (a scan per push would be O(n²)).
        if queues.len() > 1 {
            queues.sort_unstable_by_key(|q| Arc::as_ptr(q) as usize);
            queues.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
        queues
    }

    /// Routes messages that died in `from` through its dead-letter exchange (see
    /// `dead_letter.rs`). A missing exchange drops them, as in RabbitMQ. Called without any
    /// queue lock held.
    pub fn dead_letter(&self, from: &Queue, dead: Vec<DeadLetter>) {
        let Some(dlx) = from.args.dead_letter_exchange.clone() else { return };
        let Some(me) = self.self_ref.upgrade() else { return };
        let (queue, dlrk) = (from.name.clone(), from.args.dead_letter_routing_key.clone());
        run_flattened(Box::new(move || {
            let Ok(x) = me.exchange(&dlx) else {
                tracing::debug!(queue = %queue, exchange = %dlx, "dead-letter exchange missing; messages dropped");
                return;
            };
            for DeadLetter { msg, reason } in dead {
                let out = Arc::new(dead_lettered(&msg, &queue, reason, &dlx, dlrk.as_ref()));
                let cc: Vec<Vec<u8>> = match (&dlrk, out.headers().and_then(|h| h.get("CC"))) {
                    (None, Some(FieldValue::Array(keys))) => {
                        keys.iter().filter_map(|k| k.as_bytes().map(<[u8]>::to_vec)).collect()
                    }
                    _ => Vec::new(),
                };
                let extra: Vec<&[u8]> = cc.iter().map(Vec::as_slice).collect();
                let mut record = None;
                for q in me.route(&x, &out, &extra) {
                    if is_cycle(&out, reason, q.name.as_bytes()) {
                        tracing::debug!(queue = %q.name, "dead-letter cycle: message dropped");
                        continue;
                    }
                    q.publish_unawaited(out.clone(), &mut record);
                }
            }
        }));
    }

    /// Recreates the durable exchanges, queues and bindings stored for this vhost. Bindings
    /// whose ends are missing (a crash between two writes) are skipped with a warning.
    pub fn restore(&self, defs: &Definitions) {
        for d in defs.exchanges.iter().filter(|d| d.vhost == self.name) {
            let Some(kind) = ExchangeKind::parse(d.kind.as_bytes()) else {
                tracing::warn!(exchange = %d.name, kind = %d.kind, "stored exchange of unknown type skipped");
                continue;
            };
            if kind == ExchangeKind::Delayed {
                if let Err(e) = delayed_rules::routing_type(&d.arguments) {
                    tracing::warn!(exchange = %d.name, error = %e, "stored delayed exchange with a bad x-delayed-type skipped");
                    continue;
                }
            }
            let x = Exchange::new(d.name.clone(), kind, true, d.auto_delete, d.internal, d.arguments.clone());
            self.exchanges.entry(d.name.clone()).or_insert(Arc::new(x));
        }
        for d in defs.queues.iter().filter(|d| d.vhost == self.name) {
            let mut q = Queue::new(d.name.clone(), self.name.clone(), true, None, d.auto_delete, d.arguments.clone())
                .with_env(self.queue_env());
            if let Some(durable) = &self.durable {
                // Linked to the store first, so recovery keeps only the memory window resident.
                q = q.with_store(QueueStore { id: d.id, durable: durable.clone() });
                let (mut count, mut unreadable) = (0usize, 0usize);
                let window = durable.memory_window;
                let read = durable.store.for_each_message(d.id, |seq, record, delivered| {
                    let Some(msg) = messages::decode(&record) else {
                        unreadable += 1;
                        return;
                    };
                    let place = if count < window { Recovered::Resident(msg) } else { q.recovered_place(&msg) };
                    count += 1;
                    q.recover(seq, place, delivered);
                });
                if let Err(e) = read {
                    tracing::error!(queue = %d.name, error = %e, "could not read the queue's stored messages");
                }
                if unreadable > 0 {
                    tracing::error!(queue = %d.name, unreadable, "skipped unreadable stored messages");
                }
            }
            let q = Arc::new(q);
            q.touch(); // x-expires starts over at recovery, as in RabbitMQ
            self.queues.insert(d.name.clone(), q);
        }
        for d in defs.bindings.iter().filter(|d| d.vhost == self.name) {
            let destination = if d.to_queue {
                self.queues.get(&d.destination).map(|q| Destination::Queue(q.clone()))
            } else {
                self.exchanges.get(&d.destination).map(|x| Destination::Exchange(x.clone()))
            };
            match (self.exchanges.get(&d.source).map(|x| x.clone()), destination) {
                (Some(x), Some(destination)) => {
                    x.bind(Binding { destination, routing_key: d.routing_key.clone(), arguments: d.arguments.clone() });
                }
                _ => {
                    tracing::warn!(source = %d.source, destination = %d.destination, "stored binding with a missing end skipped")
                }
            }
        }
        // Only now, with every queue and binding back, may overdue messages expire and be
        // dead-lettered.
        for q in self.queues.iter() {
            q.arm_recovered();
        }
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
fn check_exclusive(q: &Queue, conn: Option<u64>, strict: bool, vhost: &ShortStr) -> Result<(), AmqpError> {
    let ok = match q.exclusive_owner {
        Some(owner) => Some(owner) == conn,
        None => !strict,
    };
    if ok {
        return Ok(());
    }
    Err(AmqpError::new(
        ReplyCode::ResourceLocked,
        format!(
            "cannot obtain exclusive access to locked queue '{}' in vhost '{vhost}'. It could be originally declared on \
             another connection or the exclusive property value does not match that of the original declaration.",
            q.name
        ),
    ))
}

fn inequivalent(arg: &str, what: &str, received: &str, current: &str) -> AmqpError {
    AmqpError::new(
        ReplyCode::PreconditionFailed,
        format!("inequivalent arg '{arg}' for {what}: received '{received}' but current is '{current}'"),
    )
}

fn assert_flag(arg: &str, what: &str, received: bool, current: bool) -> Result<(), AmqpError> {
    if received == current {
        return Ok(());
    }
    Err(inequivalent(arg, what, &received.to_string(), &current.to_string()))
}

fn assert_args_equivalent(
    keys: &[&str],
    what: &str,
    received: &FieldTable,
    current: &FieldTable,
) -> Result<(), AmqpError> {
    for key in keys {
        let (r, c) = (received.get(key), current.get(key));
        let same = match (r, c) {
            (None, None) => true,
            (Some(a), Some(b)) => match (a.as_i64(), b.as_i64()) {
                // RabbitMQ compares integers by value whatever their width.
                (Some(x), Some(y)) => x == y,
                _ => a == b,
            },
            _ => false,
        };
        if !same {
            // Both present: RabbitMQ prints the bare values; one missing: with their types.
            let (received, current) = match (r, c) {
                (Some(a), Some(b)) => (format!("'{}'", value_text(a)), format!("'{}'", value_text(b))),
                _ => (describe(r), describe(c)),
            };
            return Err(AmqpError::new(
                ReplyCode::PreconditionFailed,
                format!("inequivalent arg '{key}' for {what}: received {received} but current is {current}"),
            ));
        }
    }
    Ok(())
}

/// A value as RabbitMQ prints it in equivalence errors.
fn value_text(v: &FieldValue) -> String {
    match (v.as_i64(), v.as_bytes(), v) {
        (Some(n), _, _) => n.to_string(),
        (_, Some(b), _) => String::from_utf8_lossy(b).into_owned(),
        (_, _, FieldValue::Bool(b)) => b.to_string(),
        (_, _, other) => format!("{other:?}"),
    }
}

/// `the value '10' of type 'long'` / `none`, as in RabbitMQ's equivalence errors when only one
/// side has the argument.
fn describe(v: Option<&FieldValue>) -> String {
    match v {
        Some(v) => format!("the value '{}' of type '{}'", value_text(v), v.rabbit_type_name()),
        None => "none".to_string(),
    }
}
