//! A vhost's policies, and which of them applies to a queue or an exchange.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde_json::{Map, Value};

use super::{Policy, PolicyKind, PolicyView};

/// The keys whose user and operator values merge to the lower one (`rabbit_policies`'
/// `merge_policy_value/3`). 3.10 refuses negative delivery limits, so RabbitMQ 4's "a negative
/// one means unlimited" never comes up.
const MINIMUM_KEYS: &[&str] = &[
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "expires",
    "delivery-limit",
];

/// User and operator policies by name. Names sort byte by byte, which is also how ties are
/// broken: of matching policies with the same priority, the one whose name sorts first applies
/// (RabbitMQ leaves that to the order its database lists them in; Warren makes it stable).
#[derive(Debug, Default)]
pub struct PolicyTable {
    user: BTreeMap<String, Arc<Policy>>,
    operator: BTreeMap<String, Arc<Policy>>,
}

impl PolicyTable {
    fn of(&self, kind: PolicyKind) -> &BTreeMap<String, Arc<Policy>> {
        match kind {
            PolicyKind::User => &self.user,
            PolicyKind::Operator => &self.operator,
        }
    }

    fn of_mut(&mut self, kind: PolicyKind) -> &mut BTreeMap<String, Arc<Policy>> {
        match kind {
            PolicyKind::User => &mut self.user,
            PolicyKind::Operator => &mut self.operator,
        }
    }

    pub fn get(&self, kind: PolicyKind, name: &str) -> Option<&Arc<Policy>> {
        self.of(kind).get(name)
    }

    /// Adds or replaces a policy; returns the one it replaced.
    pub fn insert(&mut self, policy: Arc<Policy>) -> Option<Arc<Policy>> {
        self.of_mut(policy.kind).insert(policy.name.clone(), policy)
    }

    pub fn remove(&mut self, kind: PolicyKind, name: &str) -> Option<Arc<Policy>> {
        self.of_mut(kind).remove(name)
    }

    /// The policies of a kind, by name.
    pub fn list(&self, kind: PolicyKind) -> Vec<Arc<Policy>> {
        self.of(kind).values().cloned().collect()
    }

    /// What applies to the queue `name` (`quorum`: declared `x-queue-type: quorum`).
    pub fn for_queue(&self, name: &[u8], quorum: bool) -> PolicyView {
        self.view(|p| p.matches_queue(name, quorum))
    }

    pub fn for_exchange(&self, name: &[u8]) -> PolicyView {
        self.view(|p| p.matches_exchange(name))
    }

    fn view(&self, matches: impl Fn(&Policy) -> bool) -> PolicyView {
        let user = best(&self.user, &matches);
        let operator = best(&self.operator, &matches);
        PolicyView {
            policy: user.map(|p| p.name.clone()),
            operator_policy: operator.map(|p| p.name.clone()),
            definition: merge(user.map(|p| &p.spec.definition), operator.map(|p| &p.spec.definition)),
        }
    }
}

/// The matching policy with the highest priority; the first by name among equals.
fn best<'a>(policies: &'a BTreeMap<String, Arc<Policy>>, matches: &impl Fn(&Policy) -> bool) -> Option<&'a Policy> {
    let mut chosen: Option<&Policy> = None;
    for p in policies.values().filter(|p| matches(p)) {
        if chosen.is_none_or(|c| p.spec.priority > c.spec.priority) {
            chosen = Some(p);
        }
    }
    chosen
}

/// The effective definition: the user policy's keys and the operator policy's, key by key
/// (`rabbit_policy:merge_operator_definitions/2`).
pub fn merge(user: Option<&Map<String, Value>>, operator: Option<&Map<String, Value>>) -> Map<String, Value> {
    let (user, operator) = match (user, operator) {
        (None, None) => return Map::new(),
        (Some(u), None) => return u.clone(),
        (None, Some(o)) => return o.clone(),
        (Some(u), Some(o)) => (u, o),
    };
    let mut out = user.clone();
    for (key, op) in operator {
        let merged = match out.get(key.as_str()) {
            Some(mine) => merge_value(key, mine, op),
            None => op.clone(),
        };
        out.insert(key.clone(), merged);
    }
    out
}

fn merge_value(key: &str, user: &Value, operator: &Value) -> Value {
    if MINIMUM_KEYS.contains(&key) {
        let lower = match (user.as_u64(), operator.as_u64()) {
            (Some(u), Some(o)) if u <= o => user,
            (Some(_), Some(_)) => operator,
            _ => operator, // validated integers ≥ 0: not reached
        };
        return lower.clone();
    }
    // Booleans take the operator's value; no other key may be in both in 3.10.
    operator.clone()
}
