//! Start-up: a vhost rebuilt from what the store kept — policies, durable exchanges, queues
//! (with their persistent messages, beyond the memory window only as places whose bodies stay
//! on disk) and bindings between durable things.

use std::sync::Arc;

use super::VHost;
use crate::broker::exchange::{delayed as delayed_rules, Binding, Destination, Exchange, ExchangeKind};
use crate::broker::queue::{Queue, QueueStore};
use crate::store::Definitions;

impl VHost {
    /// Recreates the policies, durable exchanges, queues and bindings stored for this vhost
    /// (each queue and exchange under the policies that apply to it). Bindings whose ends are
    /// missing (a crash between two writes) are skipped with a warning.
    pub fn restore(&self, defs: &Definitions) {
        // Policies first: a recovered queue's messages get the TTL its policy gives it.
        self.restore_policies(&defs.policies);
        let table = self.policy_table();
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
            let q = Queue::new(d.name.clone(), self.name.clone(), true, None, d.auto_delete, d.arguments.clone())
                .with_env(self.queue_env());
            let mut q = Self::queue_under_policies(&table, q);
            if let Some(storage) = &self.env.storage {
                // Linked to the store first, so recovery keeps only the memory window resident.
                q = q.with_store(QueueStore { id: d.id, handle: storage.clone() });
                match q.recover_from_store(self.env.paging.window) {
                    Ok(found) if found.unreadable > 0 => {
                        tracing::error!(queue = %d.name, unreadable = found.unreadable, "skipped unreadable stored messages")
                    }
                    Ok(_) => {}
                    Err(e) => {
                        tracing::error!(queue = %d.name, error = %e, "could not read the queue's stored messages")
                    }
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
        // Exchanges (the predeclared ones too) under their policies.
        self.reapply_policies(&table);
        drop(table);
        // Only now, with every queue and binding back, may overdue messages expire and be
        // dead-lettered.
        for q in self.queues.iter() {
            q.arm_recovered();
        }
    }
}
