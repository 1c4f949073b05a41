//! Routing: which queues a message published to an exchange reaches, following
//! exchange-to-exchange bindings and alternate exchanges, each queue once. Routing only looks;
//! what happens to the message (held by a delayed exchange, persisted, enqueued) is
//! [`crate::broker::publish`]'s business.

use std::sync::Arc;

use smallvec::{smallvec, SmallVec};

use super::VHost;
use crate::broker::exchange::{delayed as delayed_rules, Destination, Destinations, Exchange};
use crate::broker::message::Message;
use crate::broker::queue::Queue;

/// The queues a message reaches, each once.
pub type RoutedQueues = SmallVec<[Arc<Queue>; 4]>;

/// Where a message goes.
#[derive(Default)]
pub struct Route {
    pub queues: RoutedQueues,
    /// Delayed exchanges on the way that hold the message for its `x-delay` (ms) instead of
    /// routing it now; that branch reaches no queue until the message is due.
    pub delayed: SmallVec<[(Arc<Exchange>, u64); 1]>,
}

impl VHost {
    /// Where a message published to `exchange` goes. `extra_keys` are the CC/BCC routing keys
    /// of sender-selected distribution.
    pub fn route(&self, exchange: &Arc<Exchange>, msg: &Message, extra_keys: &[&[u8]]) -> Route {
        // Inline capacities cover the usual message (one key, an exchange or two, a few
        // queues): routing allocates nothing then.
        let mut keys: SmallVec<[&[u8]; 2]> = SmallVec::with_capacity(1 + extra_keys.len());
        keys.push(msg.routing_key.as_bytes());
        keys.extend_from_slice(extra_keys);
        let headers = msg.headers();

        let mut route = Route::default();
        let mut seen: SmallVec<[Arc<Exchange>; 4]> = smallvec![exchange.clone()];
        let mut todo: SmallVec<[Arc<Exchange>; 4]> = smallvec![exchange.clone()];
        let mut dests = Destinations::new();
        while let Some(x) = todo.pop() {
            dests.clear();
            if x.is_delayed() {
                if let Some(delay) = delayed_rules::delay_of(headers) {
                    route.delayed.push((x, delay));
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
                x.route(&keys, &msg.properties, &mut dests);
            }
            if dests.is_empty() {
                if let Some(ae) = x.alternate_exchange() {
                    if let Some(ae) = self.exchanges.get(ae.as_bytes()).map(|e| e.clone()) {
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
                    Destination::Queue(q) => route.queues.push(q),
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
        let queues = &mut route.queues;
        if queues.len() > 1 {
            queues.sort_unstable_by_key(|q| Arc::as_ptr(q) as usize);
            queues.dedup_by(|a, b| Arc::ptr_eq(a, b));
        }
        route
    }
}
