//! Importing a set of definitions (RabbitMQ's `definitions.json`, already parsed by the
//! management plane): everything is checked first, and only a set that passes is applied, so a
//! bad file changes nothing. RabbitMQ applies object by object and stops at the first error,
//! leaving whatever came before it in place.
//!
//! As in RabbitMQ, import is additive and keeps what exists: an exchange or queue already
//! declared is left as it is (not compared), bindings are added, nothing absent from the file
//! is deleted.

use super::vhosts::VHostSpec;
use super::{ExchangeSpec, QueueSpec};
use crate::auth::limits::{LimitSet, MAX_QUEUES};
use crate::auth::{Permission, TopicPermission, User};
use crate::broker::exchange::{check_binding, Destination};
use crate::broker::policy::{PolicyKind, PolicySpec};
use crate::broker::{errors, Broker};
use crate::protocol::{FieldTable, ShortStr};

/// A binding as a definitions file names it.
#[derive(Debug, Clone)]
pub struct BindingSpec {
    pub source: ShortStr,
    pub destination: ShortStr,
    /// `destination_type` is `queue` (else `exchange`).
    pub to_queue: bool,
    pub routing_key: ShortStr,
    pub arguments: FieldTable,
}

/// Everything a file defines, per vhost.
#[derive(Debug, Clone, Default)]
pub struct DefinitionSet {
    pub users: Vec<User>,
    pub vhosts: Vec<(ShortStr, VHostSpec)>,
    /// Each replaces the vhost's limits (RabbitMQ's `vhost-limits` parameter).
    pub vhost_limits: Vec<(ShortStr, LimitSet)>,
    pub permissions: Vec<Permission>,
    pub topic_permissions: Vec<TopicPermission>,
    /// (vhost, name, policy): already validated when parsed.
    pub policies: Vec<(ShortStr, String, PolicySpec)>,
    pub exchanges: Vec<(ShortStr, ExchangeSpec)>,
    pub queues: Vec<(ShortStr, QueueSpec)>,
    pub bindings: Vec<(ShortStr, BindingSpec)>,
}

/// What an import did.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Imported {
    pub users: usize,
    pub vhosts: usize,
    pub vhost_limits: usize,
    pub permissions: usize,
    pub topic_permissions: usize,
    pub policies: usize,
    pub exchanges: usize,
    pub queues: usize,
    pub bindings: usize,
}

impl Broker {
    /// Checks every definition of `set` against the broker as it is: the first problem, in
    /// RabbitMQ's words where it has them.
    pub fn check_definitions(&self, set: &DefinitionSet) -> Result<(), String> {
        let known_vhost = |name: &ShortStr| self.vhost(name).is_some() || set.vhosts.iter().any(|(v, _)| v == name);
        let known_user = |name: &str| self.users.contains(name) || set.users.iter().any(|u| u.name == name);
        for p in &set.permissions {
            if !known_vhost(&p.vhost) || !known_user(&p.user) {
                return Err("vhost_or_user_not_found".to_string());
            }
            p.validate().map_err(|e| format!("invalid_regexp: {} ({})", e.regex, e.reason))?;
        }
        for p in &set.topic_permissions {
            if !known_vhost(&p.vhost) || !known_user(&p.user) {
                return Err("vhost_or_user_not_found".to_string());
            }
            p.validate().map_err(|e| format!("invalid_regexp: {} ({})", e.regex, e.reason))?;
        }
        // Objects of a vhost the file creates are checked as new ones in a fresh vhost.
        let fresh = crate::broker::VHost::standalone(ShortStr::from_static("/"));
        let vhost = |name: &ShortStr| -> Result<std::sync::Arc<crate::broker::VHost>, String> {
            match self.vhost(name) {
                Some(v) => Ok(v),
                None if known_vhost(name) => Ok(fresh.clone()),
                None => Err(format!("vhost '{name}' does not exist")),
            }
        };
        for (v, _, _) in &set.policies {
            vhost(v)?;
        }
        self.check_queue_limits(set)?;
        for (v, spec) in &set.exchanges {
            let vh = vhost(v)?;
            if vh.exchange(&spec.name).is_err() {
                vh.check_new_exchange(spec).map_err(|e| e.message.into_owned())?;
            }
        }
        for (v, spec) in &set.queues {
            let vh = vhost(v)?;
            if vh.queue(&spec.name).is_err() {
                vh.check_new_queue(spec).map_err(|e| e.message.into_owned())?;
            }
        }
        for (v, b) in &set.bindings {
            let vh = vhost(v)?;
            let exchange_known = |name: &ShortStr| {
                vh.exchange(name).is_ok() || set.exchanges.iter().any(|(ev, x)| ev == v && x.name == *name)
            };
            let queue_known =
                |name: &ShortStr| vh.queue(name).is_ok() || set.queues.iter().any(|(qv, q)| qv == v && q.name == *name);
            if b.source.is_empty() || !exchange_known(&b.source) {
                return Err(format!("no exchange '{}' in vhost '{v}'", b.source));
            }
            let (known, kind) = if b.to_queue {
                (queue_known(&b.destination), "queue")
            } else {
                (exchange_known(&b.destination), "exchange")
            };
            if !known {
                return Err(format!("no {kind} '{}' in vhost '{v}'", b.destination));
            }
            // What the source's type asks of a binding (a consistent-hash weight, say): the
            // existing exchange's type, which the import keeps, else the file's.
            let routing = match vh.exchange(&b.source) {
                Ok(x) => Some(x.routing_kind()),
                Err(_) => set
                    .exchanges
                    .iter()
                    .find(|(ev, x)| ev == v && x.name == b.source)
                    .map(|(_, x)| x.kind.routing(&x.arguments)),
            };
            if let Some(kind) = routing {
                check_binding(kind, &b.routing_key, &b.arguments).map_err(|e| e.message.into_owned())?;
            }
        }
        Ok(())
    }

    /// `max-queues` as the file leaves it, against the queues each vhost would hold: a file
    /// that would pass the limit is refused whole rather than applied up to that queue.
    fn check_queue_limits(&self, set: &DefinitionSet) -> Result<(), String> {
        let mut vhosts: Vec<&ShortStr> = set.queues.iter().map(|(v, _)| v).collect();
        vhosts.sort();
        vhosts.dedup();
        for v in vhosts {
            let max = match set.vhost_limits.iter().rev().find(|(lv, _)| lv == v) {
                Some((_, limits)) => limits.limit(MAX_QUEUES),
                None => self.vhost(v).and_then(|vh| vh.limit(MAX_QUEUES)),
            };
            let Some(max) = max else { continue };
            let existing = self.vhost(v).map(|vh| vh.queues()).unwrap_or_default();
            let mut new: Vec<&ShortStr> = set
                .queues
                .iter()
                .filter(|(qv, q)| qv == v && !existing.iter().any(|e| e.name == q.name))
                .map(|(_, q)| &q.name)
                .collect();
            new.sort();
            new.dedup();
            if existing.len() + new.len() > max {
                let first_over = new.get(max.saturating_sub(existing.len())).map_or(String::new(), |n| n.to_string());
                return Err(errors::queue_limit_reached(first_over, v, max).message.into_owned());
            }
        }
        Ok(())
    }

    /// Checks `set`, then applies it: users, vhosts, vhost limits, permissions, topic permissions, policies
    /// (so that what is declared next is under them from the start, as RabbitMQ orders it),
    /// exchanges, queues, bindings. An error while applying (the store failing) stops there.
    pub fn import_definitions(&self, set: &DefinitionSet, acting_user: Option<&str>) -> Result<Imported, String> {
        self.check_definitions(set)?;
        let mut done = Imported::default();
        for u in &set.users {
            self.put_user(u.clone()).map_err(|e| e.to_string())?;
            done.users += 1;
        }
        for (name, spec) in &set.vhosts {
            self.put_vhost(name.clone(), spec.clone(), acting_user).map_err(|e| e.to_string())?;
            done.vhosts += 1;
        }
        for (name, limits) in &set.vhost_limits {
            self.set_vhost_limits(name, limits.clone()).map_err(|e| e.to_string())?;
            done.vhost_limits += 1;
        }
        for p in &set.permissions {
            self.set_permission(p.clone()).map_err(|e| e.to_string())?;
            done.permissions += 1;
        }
        for p in &set.topic_permissions {
            self.set_topic_permission(p.clone()).map_err(|e| e.to_string())?;
            done.topic_permissions += 1;
        }
        let vhost = |name: &ShortStr| self.vhost(name).ok_or_else(|| format!("vhost '{name}' does not exist"));
        for (v, name, spec) in &set.policies {
            vhost(v)?.set_policy(PolicyKind::User, name, spec.clone()).map_err(|e| e.reason())?;
            done.policies += 1;
        }
        for (v, spec) in &set.exchanges {
            let vh = vhost(v)?;
            if vh.exchange(&spec.name).is_err() {
                vh.declare_exchange(spec.clone()).map_err(|e| e.message.into_owned())?;
                done.exchanges += 1;
            }
        }
        for (v, spec) in &set.queues {
            let vh = vhost(v)?;
            if vh.queue(&spec.name).is_err() {
                vh.declare_queue(spec.clone(), false, 0).map_err(|e| e.message.into_owned())?;
                done.queues += 1;
            }
        }
        for (v, b) in &set.bindings {
            let vh = vhost(v)?;
            let destination = if b.to_queue {
                Destination::Queue(vh.queue(&b.destination).map_err(|e| e.message.into_owned())?)
            } else {
                Destination::Exchange(vh.exchange(&b.destination).map_err(|e| e.message.into_owned())?)
            };
            vh.bind(&b.source, destination, b.routing_key.clone(), b.arguments.clone())
                .map_err(|e| e.message.into_owned())?;
            done.bindings += 1;
        }
        tracing::info!(?done, "definitions imported");
        Ok(done)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::exchange::ExchangeKind;
    use crate::broker::Limits;

    fn name(s: &'static str) -> ShortStr {
        ShortStr::from_static(s)
    }

    fn set_binding(kind: ExchangeKind, key: &'static str) -> DefinitionSet {
        let exchange = ExchangeSpec {
            name: name("parts"),
            kind,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        };
        let queue = QueueSpec {
            name: name("p1"),
            server_named: false,
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        let binding = BindingSpec {
            source: name("parts"),
            destination: name("p1"),
            to_queue: true,
            routing_key: name(key),
            arguments: FieldTable::new(),
        };
        DefinitionSet {
            exchanges: vec![(name("/"), exchange)],
            queues: vec![(name("/"), queue)],
            bindings: vec![(name("/"), binding)],
            ..Default::default()
        }
    }

    #[test]
    fn a_binding_the_source_type_refuses_fails_the_whole_file_first() {
        let b = Broker::new(Limits::default());
        let bad = set_binding(ExchangeKind::ConsistentHash, "abc");
        assert_eq!(b.import_definitions(&bad, None), Err(r#"The binding key must be an integer: <<"abc">>"#.into()));
        assert!(b.vhost(&name("/")).unwrap().exchange(&name("parts")).is_err(), "nothing applied");
        assert!(b.import_definitions(&set_binding(ExchangeKind::Direct, "abc"), None).is_ok());
        // The exchange now exists as a direct one: its type, not the file's, decides.
        assert!(b.check_definitions(&set_binding(ExchangeKind::ConsistentHash, "abc")).is_ok());
        let fresh = Broker::new(Limits::default());
        assert_eq!(
            fresh.import_definitions(&set_binding(ExchangeKind::ConsistentHash, "2"), None).unwrap().bindings,
            1
        );
    }
}
