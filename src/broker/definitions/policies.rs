//! Policy changes through the definitions funnel: checked, written to the store, then applied
//! at once to every queue and exchange of the vhost whose policies they change.
//!
//! The vhost's policy table stays locked from the store write to the last object updated, and
//! declares apply policies to what they create under the same lock before it becomes visible:
//! whichever comes second sees the other's result, so nothing is left under stale policies.

use std::sync::Arc;

use serde_json::Value;

use crate::broker::exchange::Exchange;
use crate::broker::policy::{effective, ApplyTo, Policy, PolicyError, PolicyKind, PolicySpec, PolicyTable, PolicyView};
use crate::broker::queue::Queue;
use crate::broker::vhost::VHost;
use crate::store::PolicyDef;

impl VHost {
    /// Sets (adds or replaces) the policy `name` of `kind`, and applies it. Returns whether it
    /// is new (RabbitMQ answers 201 then, else 204).
    pub fn set_policy(&self, kind: PolicyKind, name: &str, spec: PolicySpec) -> Result<bool, PolicyError> {
        let policy = Arc::new(Policy::new(kind, self.name.clone(), name, &spec)?);
        let mut table = self.policy_table();
        if let Some(store) = self.metadata() {
            store.save_policy(&record(&policy)).map_err(|e| PolicyError::Store(e.to_string()))?;
        }
        let created = table.insert(policy).is_none();
        self.reapply_policies(&table);
        Ok(created)
    }

    /// Removes the policy `name` of `kind`; what it applied to goes back to its own arguments
    /// (or to the next matching policy). Returns whether there was one (RabbitMQ answers 404
    /// when there was not).
    pub fn clear_policy(&self, kind: PolicyKind, name: &str) -> Result<bool, PolicyError> {
        let mut table = self.policy_table();
        if table.get(kind, name).is_none() {
            return Ok(false);
        }
        if let Some(store) = self.metadata() {
            let operator = kind == PolicyKind::Operator;
            store.delete_policy(operator, &self.name, name).map_err(|e| PolicyError::Store(e.to_string()))?;
        }
        table.remove(kind, name);
        self.reapply_policies(&table);
        Ok(true)
    }

    /// The vhost's policies of `kind`, by name.
    pub fn policies(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        self.policy_table().list(kind)
    }

    pub fn policy(&self, kind: PolicyKind, name: &str) -> Option<Arc<Policy>> {
        self.policy_table().get(kind, name).cloned()
    }

    /// Looks at every queue and exchange again and applies what changed for it.
    pub(in crate::broker) fn reapply_policies(&self, table: &PolicyTable) {
        // Collected first: the maps are never held while a queue is locked.
        let queues: Vec<Arc<Queue>> = self.queues.iter().map(|q| q.value().clone()).collect();
        for q in queues {
            let view = table.for_queue(q.name.as_bytes(), q.is_quorum());
            if *q.policy_view() != view {
                let args = effective::queue_args(q.declared_args(), &q.arguments, &view.definition);
                q.apply_policy(args, Arc::new(view));
            }
        }
        let exchanges: Vec<Arc<Exchange>> = self.exchanges.iter().map(|x| x.value().clone()).collect();
        for x in exchanges {
            let view = table.for_exchange(x.name.as_bytes());
            if *x.policy_view() != view {
                x.apply_policy(Arc::new(view));
            }
        }
    }

    /// A queue not yet visible, under the policies that apply to it.
    pub(in crate::broker) fn queue_under_policies(table: &PolicyTable, q: Queue) -> Queue {
        let view = table.for_queue(q.name.as_bytes(), q.is_quorum());
        if view == PolicyView::default() {
            return q;
        }
        let args = effective::queue_args(q.declared_args(), &q.arguments, &view.definition);
        q.with_policy(args, Arc::new(view))
    }

    /// An exchange not yet visible, under the policies that apply to it.
    pub(in crate::broker) fn exchange_under_policies(table: &PolicyTable, x: &Exchange) {
        let view = table.for_exchange(x.name.as_bytes());
        if view != PolicyView::default() {
            x.apply_policy(Arc::new(view));
        }
    }

    /// Start-up: the stored policies of this vhost, before its queues and exchanges are
    /// restored. A record that no longer passes the checks is skipped with an error logged.
    pub(in crate::broker) fn restore_policies(&self, records: &[PolicyDef]) {
        let mut table = self.policy_table();
        for r in records.iter().filter(|r| r.vhost == self.name) {
            match policy_of(&self.name, r) {
                Ok(p) => {
                    table.insert(Arc::new(p));
                }
                Err(e) => tracing::error!(policy = %r.name, vhost = %self.name, reason = %e, "stored policy skipped"),
            }
        }
    }
}

fn record(p: &Policy) -> PolicyDef {
    PolicyDef {
        operator: p.kind == PolicyKind::Operator,
        vhost: p.vhost.clone(),
        name: p.name.clone(),
        pattern: p.spec.pattern.clone(),
        apply_to: p.spec.apply_to.as_str().to_string(),
        priority: p.spec.priority,
        definition: Value::Object(p.spec.definition.clone()).to_string(),
    }
}

fn policy_of(vhost: &crate::protocol::ShortStr, r: &PolicyDef) -> Result<Policy, String> {
    let definition = match serde_json::from_str(&r.definition) {
        Ok(Value::Object(d)) => d,
        _ => return Err("the definition is not a JSON object".into()),
    };
    let apply_to = match r.apply_to.as_str() {
        "queues" => ApplyTo::Queues,
        "classic_queues" => ApplyTo::ClassicQueues,
        "exchanges" => ApplyTo::Exchanges,
        _ => ApplyTo::All,
    };
    let spec = PolicySpec { pattern: r.pattern.clone(), apply_to, priority: r.priority, definition };
    let kind = if r.operator { PolicyKind::Operator } else { PolicyKind::User };
    Policy::new(kind, vhost.clone(), &r.name, &spec).map_err(|e| e.reason())
}
