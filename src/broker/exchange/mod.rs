//! Exchanges and their bindings. Each kind keeps an index shaped for its routing: a hash map by
//! key (direct), a list (fanout), a trie (topic), argument tables (headers), a hash ring
//! (`x-consistent-hash`). A delayed-message exchange (`x-delayed-message`) routes as the kind its
//! `x-delayed-type` names.

pub mod consistent_hash;
pub mod delayed;
pub mod headers;
pub mod topic;

use std::collections::HashMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use bytes::Bytes;
use smallvec::SmallVec;

use super::dedup::SeenCache;
use super::errors;
use super::policy::{effective, PolicyView};
use super::queue::Queue;
use super::timer::now_ms;
use super::NameHasher;
use crate::protocol::{AmqpError, BasicProperties, FieldTable, ShortStr};
use consistent_hash::{HashOn, Ring};
use topic::TopicTrie;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ExchangeKind {
    Direct,
    Fanout,
    Topic,
    Headers,
    /// `x-message-deduplication`: a fanout that drops messages it has seen (see `dedup.rs`).
    MessageDeduplication,
    /// `x-delayed-message`: holds messages with a positive `x-delay` until they are due; routes
    /// as its `x-delayed-type` (see [`delayed`]).
    Delayed,
    /// `x-consistent-hash`: each message to one destination, by a hash of its routing key (or a
    /// header or property) on a ring where binding keys are weights (see [`consistent_hash`]).
    ConsistentHash,
}

impl ExchangeKind {
    pub fn parse(name: &[u8]) -> Option<ExchangeKind> {
        match name {
            b"direct" => Some(ExchangeKind::Direct),
            b"fanout" => Some(ExchangeKind::Fanout),
            b"topic" => Some(ExchangeKind::Topic),
            b"headers" => Some(ExchangeKind::Headers),
            b"x-message-deduplication" => Some(ExchangeKind::MessageDeduplication),
            b"x-delayed-message" => Some(ExchangeKind::Delayed),
            b"x-consistent-hash" => Some(ExchangeKind::ConsistentHash),
            _ => None,
        }
    }

    pub fn name(self) -> &'static str {
        match self {
            ExchangeKind::Direct => "direct",
            ExchangeKind::Fanout => "fanout",
            ExchangeKind::Topic => "topic",
            ExchangeKind::Headers => "headers",
            ExchangeKind::MessageDeduplication => "x-message-deduplication",
            ExchangeKind::Delayed => delayed::TYPE_NAME,
            ExchangeKind::ConsistentHash => consistent_hash::TYPE_NAME,
        }
    }

    /// How an exchange of this kind declared with `arguments` routes: the kind itself, or for a
    /// delayed exchange its `x-delayed-type` (direct if that is missing or bad; declares check it).
    pub fn routing(self, arguments: &FieldTable) -> ExchangeKind {
        match self {
            ExchangeKind::Delayed => delayed::routing_type(arguments).unwrap_or(ExchangeKind::Direct),
            other => other,
        }
    }
}

/// What a binding to an exchange routing as `kind` must satisfy, checked before it is added
/// (also when an identical one exists, as RabbitMQ checks): RabbitMQ's 406 otherwise.
pub fn check_binding(kind: ExchangeKind, routing_key: &ShortStr, arguments: &FieldTable) -> Result<(), AmqpError> {
    match kind {
        ExchangeKind::Headers => headers::XMatch::from_arguments(arguments).map(drop).map_err(errors::invalid_binding),
        ExchangeKind::ConsistentHash => {
            consistent_hash::weight(routing_key.as_bytes()).map(drop).map_err(errors::invalid_binding)
        }
        _ => Ok(()),
    }
}

/// Where a binding leads. Compared by identity: a queue deleted and re-declared under the same
/// name is a different destination.
#[derive(Clone)]
pub enum Destination {
    Queue(Arc<Queue>),
    Exchange(Arc<Exchange>),
}

impl Destination {
    /// Identity as a number, for sorting (queues and exchanges never share an address).
    fn address(&self) -> usize {
        match self {
            Destination::Queue(q) => Arc::as_ptr(q) as usize,
            Destination::Exchange(e) => Arc::as_ptr(e) as usize,
        }
    }
}

impl PartialEq for Destination {
    fn eq(&self, other: &Self) -> bool {
        match (self, other) {
            (Destination::Queue(a), Destination::Queue(b)) => Arc::ptr_eq(a, b),
            (Destination::Exchange(a), Destination::Exchange(b)) => Arc::ptr_eq(a, b),
            _ => false,
        }
    }
}

impl std::fmt::Debug for Destination {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Destination::Queue(q) => write!(f, "queue {}", q.name),
            Destination::Exchange(e) => write!(f, "exchange {}", e.name),
        }
    }
}

/// Where one exchange routes a message; a few destinations fit without allocating.
pub type Destinations = SmallVec<[Destination; 4]>;

#[derive(Debug, Clone, PartialEq)]
pub struct Binding {
    pub destination: Destination,
    pub routing_key: ShortStr,
    pub arguments: FieldTable,
}

#[derive(Default)]
struct Bindings {
    all: Vec<Binding>,
    /// The argument tables bound per (destination, routing key): whether a binding exists, and
    /// whether its index entry is still needed, without scanning `all` (exchanges with 100 k
    /// bindings are restored one bind at a time).
    by_end: HashMap<(usize, Bytes), Vec<FieldTable>>,
    direct: HashMap<Bytes, Vec<Destination>, NameHasher>,
    topic: TopicTrie<Destination>,
    ring: Ring,
}

impl Bindings {
    fn end(binding: &Binding) -> (usize, Bytes) {
        (binding.destination.address(), binding.routing_key.clone().into_bytes())
    }

    fn contains(&self, binding: &Binding) -> bool {
        self.by_end.get(&Self::end(binding)).is_some_and(|args| args.contains(&binding.arguments))
    }
}

pub struct Exchange {
    pub name: ShortStr,
    /// The declared type.
    pub kind: ExchangeKind,
    /// How bindings match: `kind`, or for a delayed exchange its `x-delayed-type` (never
    /// `Delayed`).
    routing: ExchangeKind,
    pub durable: bool,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
    /// What a consistent-hash exchange hashes (its `hash-header`/`hash-property`).
    hash_on: HashOn,
    bindings: RwLock<Bindings>,
    /// The identities a deduplicating exchange has routed.
    seen: Option<SeenCache>,
    /// The policies that apply and the alternate exchange they leave it with. Read by
    /// unroutable messages only (a leaf lock, see LOCKS.md); replaced when policies change.
    policy: RwLock<Arc<AppliedPolicy>>,
}

/// An exchange's policies and what they make of its alternate exchange.
struct AppliedPolicy {
    view: Arc<PolicyView>,
    /// The `alternate-exchange` argument, else the policy's.
    alternate: Option<ShortStr>,
}

impl Exchange {
    pub fn new(
        name: ShortStr,
        kind: ExchangeKind,
        durable: bool,
        auto_delete: bool,
        internal: bool,
        arguments: FieldTable,
    ) -> Exchange {
        // Declares check the cache arguments and `x-delayed-type` first; an exchange restored
        // from the store had them checked when declared.
        let seen = (kind == ExchangeKind::MessageDeduplication)
            .then(|| SeenCache::from_arguments(&arguments).unwrap_or_else(|_| SeenCache::unbounded()));
        let routing = kind.routing(&arguments);
        let hash_on = match routing {
            ExchangeKind::ConsistentHash => HashOn::from_arguments(&arguments).unwrap_or_default(),
            _ => HashOn::RoutingKey,
        };
        let alternate = effective::alternate_exchange(&arguments, &Default::default());
        let policy = RwLock::new(Arc::new(AppliedPolicy { view: Arc::default(), alternate }));
        Exchange {
            name,
            kind,
            routing,
            durable,
            auto_delete,
            internal,
            arguments,
            hash_on,
            bindings: RwLock::default(),
            seen,
            policy,
        }
    }

    /// Applies the policies `view` describes (at declare, recovery, or a policy change).
    pub fn apply_policy(&self, view: Arc<PolicyView>) {
        let alternate = effective::alternate_exchange(&self.arguments, &view.definition);
        *self.policy.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(AppliedPolicy { view, alternate });
    }

    /// The policies applied to the exchange and their merged definition.
    pub fn policy_view(&self) -> Arc<PolicyView> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).view.clone()
    }

    /// The kind whose rules bindings follow (for a delayed exchange, its `x-delayed-type`).
    pub fn routing_kind(&self) -> ExchangeKind {
        self.routing
    }

    /// An `x-delayed-message` exchange.
    pub fn is_delayed(&self) -> bool {
        self.kind == ExchangeKind::Delayed
    }

    fn read(&self) -> RwLockReadGuard<'_, Bindings> {
        self.bindings.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Bindings> {
        self.bindings.write().unwrap_or_else(|e| e.into_inner())
    }

    /// Where unroutable messages go: the `alternate-exchange` argument, else a policy's.
    pub fn alternate_exchange(&self) -> Option<ShortStr> {
        self.policy.read().unwrap_or_else(|e| e.into_inner()).alternate.clone()
    }

    /// Adds a binding; false if an identical one exists (binding is idempotent).
    pub fn bind(&self, binding: Binding) -> bool {
        let mut b = self.write();
        if b.contains(&binding) {
            return false;
        }
        b.by_end.entry(Bindings::end(&binding)).or_default().push(binding.arguments.clone());
        match self.routing {
            ExchangeKind::Direct => {
                let dests = b.direct.entry(binding.routing_key.clone().into_bytes()).or_default();
                if !dests.contains(&binding.destination) {
                    dests.push(binding.destination.clone());
                }
            }
            ExchangeKind::Topic => {
                b.topic.insert(binding.routing_key.as_bytes(), binding.destination.clone());
            }
            ExchangeKind::ConsistentHash => {
                // `check_binding` refused bad weights before; a stored binding with one (written
                // without that check) stays listed but is never chosen.
                if let Ok(w) = consistent_hash::weight(binding.routing_key.as_bytes()) {
                    b.ring.add(&binding.destination, w);
                }
            }
            ExchangeKind::Fanout
            | ExchangeKind::Headers
            | ExchangeKind::MessageDeduplication
            | ExchangeKind::Delayed => {}
        }
        b.all.push(binding);
        true
    }

    /// Removes one binding; false if there was none like it.
    pub fn unbind(&self, binding: &Binding) -> bool {
        let mut b = self.write();
        if !b.contains(binding) {
            return false;
        }
        if let Some(at) = b.all.iter().position(|x| x == binding) {
            b.all.remove(at);
        }
        // Every binding holds its own weight on the ring, whatever its arguments.
        if self.routing == ExchangeKind::ConsistentHash {
            if let Ok(w) = consistent_hash::weight(binding.routing_key.as_bytes()) {
                b.ring.remove(&binding.destination, w);
            }
        }
        // Bindings that differ only in arguments share one index entry: keep it while any remains.
        let end = Bindings::end(binding);
        let still_routed = match b.by_end.get_mut(&end) {
            Some(args) => {
                if let Some(at) = args.iter().position(|a| *a == binding.arguments) {
                    args.swap_remove(at);
                }
                !args.is_empty()
            }
            None => false,
        };
        if !still_routed {
            b.by_end.remove(&end);
            remove_from_index(&mut b, self.routing, &binding.routing_key, &binding.destination);
        }
        true
    }

    /// Removes every binding to `dest` (it is being deleted); returns how many.
    pub fn unbind_destination(&self, dest: &Destination) -> usize {
        let mut b = self.write();
        let (gone, kept): (Vec<Binding>, Vec<Binding>) =
            std::mem::take(&mut b.all).into_iter().partition(|x| x.destination == *dest);
        b.all = kept;
        if !gone.is_empty() && self.routing == ExchangeKind::ConsistentHash {
            b.ring.remove_all(dest);
        }
        for g in &gone {
            b.by_end.remove(&Bindings::end(g));
            remove_from_index(&mut b, self.routing, &g.routing_key, dest);
        }
        gone.len()
    }

    /// Whether an identical binding exists (re-binding then changes nothing, on disk either).
    pub fn has_binding(&self, binding: &Binding) -> bool {
        self.read().contains(binding)
    }

    pub fn has_bindings(&self) -> bool {
        !self.read().all.is_empty()
    }

    pub fn bindings(&self) -> Vec<Binding> {
        self.read().all.clone()
    }

    /// Appends the destinations matching `routing_keys` (the routing key plus any CC/BCC keys)
    /// and the message's `properties` (headers, or what a consistent-hash exchange hashes) to
    /// `out`, without duplicates.
    pub fn route(&self, routing_keys: &[&[u8]], properties: &BasicProperties, out: &mut Destinations) {
        let headers = properties.headers.as_ref();
        let b = self.read();
        let from = out.len();
        let mut push = |d: &Destination| out.push(d.clone());
        match self.routing {
            ExchangeKind::Direct => {
                for key in routing_keys {
                    if let Some(dests) = b.direct.get(*key) {
                        dests.iter().for_each(&mut push);
                    }
                }
            }
            ExchangeKind::Fanout => b.all.iter().for_each(|x| push(&x.destination)),
            ExchangeKind::MessageDeduplication => {
                let first = self.seen.as_ref().is_none_or(|s| s.first_sighting(headers, now_ms()));
                if first {
                    b.all.iter().for_each(|x| push(&x.destination));
                }
            }
            ExchangeKind::Topic => {
                for key in routing_keys {
                    b.topic.matches(key, &mut push);
                }
            }
            ExchangeKind::Headers => {
                for x in &b.all {
                    if headers::matches(&x.arguments, headers) {
                        push(&x.destination);
                    }
                }
            }
            ExchangeKind::ConsistentHash => {
                // The routing key alone, as the plugin hashes it: CC/BCC keys do not count.
                let key = routing_keys.first().copied().unwrap_or_default();
                if let Some(d) = b.ring.pick(self.hash_on.hash(key, properties)) {
                    push(d);
                }
            }
            ExchangeKind::Delayed => {} // never a routing kind
        }
        // Without duplicates (bindings differing only in arguments, several matching keys),
        // sorted and deduplicated rather than scanned per push: many matches stay O(n log n).
        if out.len() - from > 1 {
            out[from..].sort_unstable_by_key(Destination::address);
            let mut kept = from;
            for i in from..out.len() {
                if kept == from || out[kept - 1] != out[i] {
                    out.swap(kept, i);
                    kept += 1;
                }
            }
            out.truncate(kept);
        }
    }
}

fn remove_from_index(b: &mut Bindings, kind: ExchangeKind, key: &ShortStr, dest: &Destination) {
    match kind {
        ExchangeKind::Direct => {
            if let Some(dests) = b.direct.get_mut(key.as_bytes()) {
                dests.retain(|d| d != dest);
                if dests.is_empty() {
                    b.direct.remove(key.as_bytes());
                }
            }
        }
        ExchangeKind::Topic => {
            b.topic.remove(key.as_bytes(), dest);
        }
        ExchangeKind::Fanout
        | ExchangeKind::Headers
        | ExchangeKind::MessageDeduplication
        | ExchangeKind::Delayed
        | ExchangeKind::ConsistentHash => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldValue;

    fn queue(name: &'static str) -> Destination {
        let q =
            Queue::new(ShortStr::from_static(name), ShortStr::from_static("/"), false, None, false, FieldTable::new());
        Destination::Queue(Arc::new(q))
    }

    fn binding(dest: &Destination, key: &'static str, tag: Option<i32>) -> Binding {
        let mut arguments = FieldTable::new();
        if let Some(t) = tag {
            arguments.insert(ShortStr::from_static("tag"), FieldValue::I32(t));
        }
        Binding { destination: dest.clone(), routing_key: ShortStr::from_static(key), arguments }
    }

    fn routed(x: &Exchange, key: &[u8]) -> usize {
        let mut out = Destinations::new();
        x.route(&[key], &BasicProperties::default(), &mut out);
        out.len()
    }

    #[test]
    fn bindings_differing_in_arguments_share_a_route_until_the_last_goes() {
        let x = Exchange::new(ShortStr::from_static("x"), ExchangeKind::Direct, false, false, false, FieldTable::new());
        let (q, other) = (queue("q"), queue("other"));
        assert!(x.bind(binding(&q, "k", Some(1))));
        assert!(x.bind(binding(&q, "k", Some(2))));
        assert!(!x.bind(binding(&q, "k", Some(1))), "identical: idempotent");
        assert!(x.bind(binding(&other, "k", None)));
        assert!(x.has_binding(&binding(&q, "k", Some(2))));
        assert_eq!(routed(&x, b"k"), 2, "each destination once");
        assert!(x.unbind(&binding(&q, "k", Some(1))));
        assert!(!x.unbind(&binding(&q, "k", Some(1))), "already gone");
        assert_eq!(routed(&x, b"k"), 2, "the other binding of q still routes");
        assert!(x.unbind(&binding(&q, "k", Some(2))));
        assert_eq!(routed(&x, b"k"), 1);
        assert_eq!(x.unbind_destination(&other), 1);
        assert_eq!(routed(&x, b"k"), 0);
        assert!(!x.has_bindings());
        assert!(x.bind(binding(&other, "k", None)), "can be bound again after its destination's bindings went");
    }
}
