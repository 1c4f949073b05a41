//! The definitions funnel: every change to a vhost's exchanges, queues and bindings goes
//! through here, whoever asks — an AMQP channel today; the management API, `warren ctl`, a
//! definitions import and a replicated log next. One place checks RabbitMQ's rules (reserved
//! names, redeclare equivalence, exclusivity, `if-unused`/`if-empty`), writes durable changes
//! to the [`MetadataStore`](crate::store::MetadataStore) *before* they become visible (a
//! declare-ok promises the definition survives a crash), and applies them to the live model.
//! Permission checks belong at this door.
//!
//! Vhosts, users, permissions, topic permissions and limits have a door of the same kind on the
//! broker: [`vhosts`], [`access`], [`topic_access`] and [`limits`], sharing [`metadata`].

pub mod access;
mod equivalence;
pub mod import;
pub mod limits;
pub mod metadata;
mod policies;
pub mod topic_access;
pub mod vhosts;

use std::sync::Arc;

use super::dedup::SeenCache;
use super::errors;
use super::exchange::consistent_hash::HashOn;
use super::exchange::{check_binding, delayed as delayed_rules, Binding, Destination, Exchange, ExchangeKind};
use super::queue::{Queue, QueueArgs, QueueStore};
use super::stream;
use super::vhost::{check_exclusive, VHost};
use crate::protocol::{AmqpError, FieldTable, ShortStr};
use crate::store::{BindingDef, ExchangeDef, QueueDef, StoreError};
use equivalence::{
    assert_args_equivalent, assert_flag, erlang_atom, EXCHANGE_EQUIVALENCE_ARGS, QUEUE_EQUIVALENCE_ARGS,
    STREAM_EQUIVALENCE_ARGS,
};
pub use metadata::MetadataError;
pub use vhosts::VHostSpec;

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

impl VHost {
    pub fn declare_exchange(&self, spec: ExchangeSpec) -> Result<Arc<Exchange>, AmqpError> {
        self.check_live()?;
        if spec.name.is_empty() {
            return Err(errors::default_exchange_refused());
        }
        if let Some(existing) = self.exchanges.get(&spec.name) {
            let x = existing.clone();
            drop(existing);
            self.assert_exchange_equivalent(&x, &spec)?;
            return Ok(x);
        }
        self.check_new_exchange(&spec)?;
        let x = Arc::new(Exchange::new(
            spec.name.clone(),
            spec.kind,
            spec.durable,
            spec.auto_delete,
            spec.internal,
            spec.arguments,
        ));
        // Written before it becomes visible: a declare-ok promises the definition survives.
        if let (Some(store), true) = (self.metadata(), x.durable) {
            store.save_exchange(&self.exchange_def(&x)).map_err(errors::store_failed)?;
        }
        // Under its policies before anyone can route through it (see `policies.rs`).
        let table = self.policy_table();
        Self::exchange_under_policies(&table, &x);
        // Two declares racing: the first one in wins and the second is checked against it.
        let entry = self.exchanges.entry(spec.name.clone()).or_insert(x).clone();
        drop(table);
        Ok(entry)
    }

    /// What a new exchange must satisfy (also checked, without declaring, before a
    /// definitions import applies anything).
    pub fn check_new_exchange(&self, spec: &ExchangeSpec) -> Result<(), AmqpError> {
        if spec.name.is_empty() {
            return Err(errors::default_exchange_refused());
        }
        if spec.name.as_bytes().starts_with(b"amq.") {
            return Err(errors::reserved_prefix("exchange", &spec.name));
        }
        if spec.kind == ExchangeKind::MessageDeduplication {
            SeenCache::from_arguments(&spec.arguments)?;
        }
        if let Some(ae) = spec.arguments.get("alternate-exchange") {
            if ae.as_bytes().is_none() {
                let what = format!("exchange '{}' in vhost '{}'", spec.name, self.name);
                return Err(errors::invalid_arg("alternate-exchange", what));
            }
        }
        if spec.kind == ExchangeKind::Delayed {
            delayed_rules::routing_type(&spec.arguments)?;
        }
        if spec.kind.routing(&spec.arguments) == ExchangeKind::ConsistentHash {
            let what = format!("exchange '{}' in vhost '{}'", spec.name, self.name);
            HashOn::from_arguments(&spec.arguments).map_err(|e| e.into_amqp(&what))?;
        }
        Ok(())
    }

    /// What a new queue must satisfy (see [`check_new_exchange`](Self::check_new_exchange)).
    pub fn check_new_queue(&self, spec: &QueueSpec) -> Result<(), AmqpError> {
        let args = QueueArgs::parse(&spec.arguments, &spec.name.to_string_lossy(), &self.name.to_string_lossy())?;
        if spec.name.as_bytes().starts_with(b"amq.") && !spec.server_named {
            return Err(errors::reserved_prefix("queue", &spec.name));
        }
        if args.stream {
            self.check_new_stream(spec)?;
        }
        Ok(())
    }

    /// What a stream must be: no arguments of other queue types, durable, not exclusive, not
    /// auto-delete, and a broker with a store to keep its log.
    fn check_new_stream(&self, spec: &QueueSpec) -> Result<(), AmqpError> {
        let (name, vhost) = (spec.name.to_string_lossy(), self.name.to_string_lossy());
        let flags = (spec.durable, spec.exclusive_owner.is_some(), spec.auto_delete);
        stream::check_declare(&spec.arguments, flags, &name, &vhost)?;
        if self.env.storage.is_none() {
            return Err(stream::errors::needs_store(&name, &vhost));
        }
        Ok(())
    }

    fn assert_exchange_equivalent(&self, x: &Exchange, spec: &ExchangeSpec) -> Result<(), AmqpError> {
        let what = format!("exchange '{}' in vhost '{}'", x.name, self.name);
        if x.kind != spec.kind {
            let quoted = |k: ExchangeKind| format!("'{}'", erlang_atom(k.name()));
            let (received, current) = (quoted(spec.kind), quoted(x.kind));
            return Err(errors::inequivalent("type", &what, received, current));
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
            return Err(errors::default_exchange_refused());
        }
        if name.as_bytes().starts_with(b"amq.") {
            return Err(errors::system_exchange_deletion(name, &self.name));
        }
        let Some(x) = self.exchanges.get(name).map(|x| x.clone()) else {
            return Ok(()); // RabbitMQ: deleting what is not there succeeds
        };
        if if_unused && x.has_bindings() {
            return Err(errors::in_use(format!("exchange '{name}' in vhost '{}'", self.name)));
        }
        self.forget_exchange(&x).map_err(errors::store_failed)?;
        Ok(())
    }

    /// Declares (or checks, when `passive`) a queue. Returns it and whether it was created.
    pub fn declare_queue(&self, spec: QueueSpec, passive: bool, conn: u64) -> Result<(Arc<Queue>, bool), AmqpError> {
        let mut stream = false;
        if !passive {
            if spec.server_named && spec.arguments.get("x-queue-type").and_then(|t| t.as_bytes()) == Some(b"stream") {
                return Err(stream::errors::server_named()); // before the arguments, as in RabbitMQ
            }
            let redeclared_stream = self.queues.get(&spec.name).is_some_and(|q| q.is_stream());
            if !redeclared_stream {
                // Checked first, as RabbitMQ does: a bad argument is refused even for an
                // existing queue (but a stream only compares its own on a redeclare).
                let (name, vhost) = (spec.name.to_string_lossy(), self.name.to_string_lossy());
                stream = QueueArgs::parse(&spec.arguments, &name, &vhost)?.stream;
            }
        }
        if let Some(existing) = self.queues.get(&spec.name).map(|q| q.clone()) {
            if passive {
                check_exclusive(&existing, Some(conn), false, &self.name)?;
                existing.touch();
                self.env.stats.queues_declared.inc();
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
            let compared = if existing.is_stream() { STREAM_EQUIVALENCE_ARGS } else { QUEUE_EQUIVALENCE_ARGS };
            assert_args_equivalent(compared, &what, &spec.arguments, &existing.arguments)?;
            existing.touch();
            self.env.stats.queues_declared.inc();
            return Ok((existing, false));
        }
        if passive {
            return Err(errors::not_found("queue", &spec.name, &self.name));
        }
        self.check_live()?;
        if spec.name.as_bytes().starts_with(b"amq.") && !spec.server_named {
            return Err(errors::reserved_prefix("queue", &spec.name));
        }
        if stream {
            self.check_new_stream(&spec)?;
        }
        self.check_queue_limit(&spec.name)?;
        let mut q = Queue::new(
            spec.name.clone(),
            self.name.clone(),
            spec.durable,
            spec.exclusive_owner,
            spec.auto_delete,
            spec.arguments,
        )
        .with_env(self.queue_env());
        if let Some(storage) = &self.env.storage {
            let id = storage.new_queue_id();
            // Exclusive and transient queues are never stored (they do not outlive their
            // connection or the broker), but they page their backlogs through the store too.
            if let (true, Some(store)) = (q.is_stored(), self.metadata()) {
                let def = QueueDef {
                    vhost: self.name.clone(),
                    name: q.name.clone(),
                    id,
                    auto_delete: q.auto_delete,
                    arguments: q.arguments.clone(),
                };
                store.save_queue(&def).map_err(errors::store_failed)?;
            }
            q = q.with_store(QueueStore { id, handle: storage.clone() });
        }
        let mut created = false;
        let q = {
            // Under its policies before anyone can publish to it (see `policies.rs`).
            let table = self.policy_table();
            let q = Arc::new(Self::queue_under_policies(&table, q));
            self.queues
                .entry(spec.name.clone())
                .or_insert_with(|| {
                    created = true;
                    q
                })
                .clone()
        };
        // No explicit binding to the default exchange: routing there looks the queue up by name.
        q.touch();
        self.env.stats.queues_declared.inc();
        if created {
            self.env.stats.queues_created.inc();
        }
        Ok((q, created))
    }

    /// `max-queues`: a new queue is refused once the vhost holds that many (a redeclare of an
    /// existing one is not a new queue).
    fn check_queue_limit(&self, name: &ShortStr) -> Result<(), AmqpError> {
        match self.limit(crate::auth::limits::MAX_QUEUES) {
            Some(max) if self.queues.len() >= max => Err(errors::queue_limit_reached(name, &self.name, max)),
            _ => Ok(()),
        }
    }

    /// Deletes a queue; returns the number of ready messages it held (0 if it was not there).
    pub fn delete_queue(&self, name: &ShortStr, if_unused: bool, if_empty: bool, conn: u64) -> Result<u32, AmqpError> {
        let Some(q) = self.queues.get(name).map(|q| q.clone()) else { return Ok(0) };
        check_exclusive(&q, Some(conn), false, &self.name)?;
        if if_unused && q.consumer_count() > 0 {
            return Err(errors::in_use(format!("queue '{name}' in vhost '{}'", self.name)));
        }
        if if_empty && q.message_count() > 0 {
            return Err(errors::not_empty(name, &self.name));
        }
        Ok(self.remove_queue(&q))
    }

    /// Removes a queue from the vhost and its bindings (delete, auto-delete, exclusive owner
    /// gone, `x-expires`). Returns its ready message count.
    pub fn remove_queue(&self, q: &Arc<Queue>) -> u32 {
        if self.queues.remove_if(&q.name, |_, v| Arc::ptr_eq(v, q)).is_some() {
            self.env.stats.queues_deleted.inc();
        }
        let count = q.delete();
        self.remove_bindings_to(&Destination::Queue(q.clone()));
        if let (Some(store), true) = (self.metadata(), q.is_stored()) {
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
        match (self.metadata(), x.durable) {
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
            Destination::Queue(q) => (true, q.name.clone(), q.is_stored()),
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
            return Err(errors::default_exchange_refused());
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
        self.check_live()?;
        let x = self.binding_source(source)?;
        check_binding(x.routing_kind(), &routing_key, &arguments)?;
        let binding = Binding { destination, routing_key, arguments };
        if x.has_binding(&binding) {
            return Ok(());
        }
        if let (Some(store), Some(def)) = (self.metadata(), self.binding_def(&x, &binding)) {
            store.save_binding(&def).map_err(errors::store_failed)?;
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
            if let (Some(store), Some(def)) = (self.metadata(), self.binding_def(&x, &binding)) {
                store.delete_binding(&def).map_err(errors::store_failed)?;
            }
            self.maybe_auto_delete(&x);
        }
        Ok(())
    }
}
