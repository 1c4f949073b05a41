//! What a connection's user may do in its vhost: the user's permission there (configure, write,
//! read patterns over resource names) and topic permissions (write/read patterns over routing
//! and binding keys of topic exchanges), compiled once when the connection opens the vhost.
//!
//! RabbitMQ's reading of the patterns: not anchored (`orders` matches `daily-orders`); `""`
//! matches nothing (`^$`); a pattern that does not compile denies. The default exchange is
//! checked under the name `amq.default`. Topic permissions apply only where an entry exists for
//! the exchange (no entry: allowed), with `{username}` and `{vhost}` filled in.
//!
//! The refusal is a [`Refused`]; the server turns it into RabbitMQ's 403 text
//! (`broker::errors::access_refused`).

use regex::bytes::Regex;

use super::permissions::Permission;
use super::topic_permissions::TopicPermission;
use crate::protocol::FieldTable;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Perm {
    Configure,
    Write,
    Read,
}

impl Perm {
    pub fn name(self) -> &'static str {
        match self {
            Perm::Configure => "configure",
            Perm::Write => "write",
            Perm::Read => "read",
        }
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resource {
    Queue,
    Exchange,
}

impl Resource {
    pub fn name(self) -> &'static str {
        match self {
            Resource::Queue => "queue",
            Resource::Exchange => "exchange",
        }
    }
}

/// A refused operation: which permission on what.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Refused {
    Resource { perm: Perm, resource: Resource, name: String },
    Topic { perm: Perm, exchange: String, key: String },
}

/// A pattern as RabbitMQ reads it; `None` never matches.
fn compile(pattern: &str) -> Option<Regex> {
    let pattern = if pattern.is_empty() { "^$" } else { pattern };
    Regex::new(pattern).ok()
}

fn matches(re: &Option<Regex>, name: &[u8]) -> bool {
    re.as_ref().is_some_and(|re| re.is_match(name))
}

struct TopicRule {
    exchange: Vec<u8>,
    write: Option<Regex>,
    read: Option<Regex>,
}

pub struct Access {
    configure: Option<Regex>,
    write: Option<Regex>,
    read: Option<Regex>,
    topics: Vec<TopicRule>,
}

impl Access {
    /// `permission` is the user's in the vhost (a connection needs one to open it); `topics`
    /// the user's topic permissions there.
    pub fn new(permission: &Permission, topics: &[std::sync::Arc<TopicPermission>]) -> Access {
        let fill =
            |p: &str| p.replace("{username}", &permission.user).replace("{vhost}", &permission.vhost.to_string_lossy());
        Access {
            configure: compile(&permission.configure),
            write: compile(&permission.write),
            read: compile(&permission.read),
            topics: topics
                .iter()
                .map(|t| TopicRule {
                    exchange: t.exchange.as_bytes().to_vec(),
                    write: compile(&fill(&t.write)),
                    read: compile(&fill(&t.read)),
                })
                .collect(),
        }
    }

    /// Nothing allowed (a user without a permission in the vhost).
    pub fn none() -> Access {
        Access { configure: None, write: None, read: None, topics: Vec::new() }
    }

    /// Everything allowed (`.*` for all three, no topic rules): the broker's own operations.
    pub fn full() -> Access {
        Access { configure: compile(".*"), write: compile(".*"), read: compile(".*"), topics: Vec::new() }
    }

    fn pattern(&self, perm: Perm) -> &Option<Regex> {
        match perm {
            Perm::Configure => &self.configure,
            Perm::Write => &self.write,
            Perm::Read => &self.read,
        }
    }

    /// `perm` on the queue or exchange `name` (the default exchange `""` as `amq.default`).
    pub fn check(&self, perm: Perm, resource: Resource, name: &[u8]) -> Result<(), Refused> {
        let name: &[u8] = if resource == Resource::Exchange && name.is_empty() { b"amq.default" } else { name };
        if matches(self.pattern(perm), name) {
            return Ok(());
        }
        Err(Refused::Resource { perm, resource, name: String::from_utf8_lossy(name).into_owned() })
    }

    /// A passive declare needs any one of the three; the refusal names configure, as a normal
    /// declare's would.
    pub fn check_any(&self, resource: Resource, name: &[u8]) -> Result<(), Refused> {
        self.check(Perm::Read, resource, name)
            .or_else(|_| self.check(Perm::Write, resource, name))
            .or_else(|_| self.check(Perm::Configure, resource, name))
    }

    /// `exchange.declare`, however it reaches the broker (AMQP or the HTTP API): configure on
    /// the exchange; with an `alternate-exchange`, also write on that one and read on this one.
    pub fn check_exchange_declare(&self, name: &[u8], arguments: &FieldTable) -> Result<(), Refused> {
        self.check(Perm::Configure, Resource::Exchange, name)?;
        if let Some(ae) = arguments.get("alternate-exchange").and_then(|v| v.as_bytes()) {
            self.check(Perm::Write, Resource::Exchange, ae)?;
            self.check(Perm::Read, Resource::Exchange, name)?;
        }
        Ok(())
    }

    /// `queue.declare`: configure on the queue; with an `x-dead-letter-exchange`, also write
    /// on that exchange and read on the queue.
    pub fn check_queue_declare(&self, name: &[u8], arguments: &FieldTable) -> Result<(), Refused> {
        self.check(Perm::Configure, Resource::Queue, name)?;
        if let Some(dlx) = arguments.get("x-dead-letter-exchange").and_then(|v| v.as_bytes()) {
            self.check(Perm::Write, Resource::Exchange, dlx)?;
            self.check(Perm::Read, Resource::Queue, name)?;
        }
        Ok(())
    }

    /// A binding or unbinding: write on its destination, read on its source exchange.
    pub fn check_binding(&self, destination: Resource, destination_name: &[u8], source: &[u8]) -> Result<(), Refused> {
        self.check(Perm::Write, destination, destination_name)?;
        self.check(Perm::Read, Resource::Exchange, source)
    }

    /// Whether any topic rule names this exchange (publishers skip the key check otherwise).
    pub fn has_topic_rules(&self, exchange: &[u8]) -> bool {
        self.topics.iter().any(|t| t.exchange == exchange)
    }

    /// A routing key (write: publishing) or binding key (read: binding) on topic exchange
    /// `exchange`: every rule for the exchange must match; no rule, allowed.
    pub fn check_topic(&self, perm: Perm, exchange: &[u8], key: &[u8]) -> Result<(), Refused> {
        for rule in self.topics.iter().filter(|t| t.exchange == exchange) {
            let pattern = if perm == Perm::Read { &rule.read } else { &rule.write };
            if !matches(pattern, key) {
                return Err(Refused::Topic {
                    perm,
                    exchange: String::from_utf8_lossy(exchange).into_owned(),
                    key: String::from_utf8_lossy(key).into_owned(),
                });
            }
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::ShortStr;

    fn perm(configure: &str, write: &str, read: &str) -> Permission {
        Permission {
            user: "u".into(),
            vhost: ShortStr::from_static("v"),
            configure: configure.into(),
            write: write.into(),
            read: read.into(),
        }
    }

    #[test]
    fn patterns_are_read_as_rabbitmq_reads_them() {
        let a = Access::new(&perm("orders", "", "^(amq\\.default|x)$"), &[]);
        assert!(a.check(Perm::Configure, Resource::Queue, b"daily-orders").is_ok(), "not anchored");
        assert!(a.check(Perm::Write, Resource::Queue, b"").is_ok(), "'' is ^$");
        assert!(a.check(Perm::Write, Resource::Queue, b"q").is_err(), "'' denies every name");
        assert!(a.check(Perm::Read, Resource::Exchange, b"").is_ok(), "the default exchange is amq.default");
        let refused = a.check(Perm::Configure, Resource::Exchange, b"logs").unwrap_err();
        assert_eq!(
            refused,
            Refused::Resource { perm: Perm::Configure, resource: Resource::Exchange, name: "logs".into() }
        );
        assert!(
            Access::new(&perm("(", "(", "("), &[]).check(Perm::Read, Resource::Queue, b"(").is_err(),
            "bad pattern denies"
        );
    }

    #[test]
    fn declares_check_their_alternate_and_dead_letter_exchanges_and_bindings_both_ends() {
        let a = Access::new(&perm("^app-", "^app-", "^app-"), &[]);
        let mut args = FieldTable::new();
        args.insert(ShortStr::from_static("alternate-exchange"), crate::protocol::FieldValue::from("other"));
        let refused = a.check_exchange_declare(b"app-x", &args).unwrap_err();
        assert_eq!(
            refused,
            Refused::Resource { perm: Perm::Write, resource: Resource::Exchange, name: "other".into() }
        );
        let mut args = FieldTable::new();
        args.insert(ShortStr::from_static("x-dead-letter-exchange"), crate::protocol::FieldValue::from("app-dlx"));
        assert!(a.check_queue_declare(b"app-q", &args).is_ok());
        assert!(a.check_queue_declare(b"q", &FieldTable::new()).is_err());
        let refused = a.check_binding(Resource::Queue, b"app-q", b"amq.direct").unwrap_err();
        assert!(matches!(refused, Refused::Resource { perm: Perm::Read, resource: Resource::Exchange, .. }));
    }

    #[test]
    fn passive_declares_need_any_one_and_are_refused_as_configure() {
        let a = Access::new(&perm("", "", "^q$"), &[]);
        assert!(a.check_any(Resource::Queue, b"q").is_ok());
        let refused = a.check_any(Resource::Queue, b"other").unwrap_err();
        assert!(matches!(refused, Refused::Resource { perm: Perm::Configure, .. }));
    }

    #[test]
    fn topic_rules_apply_only_to_their_exchange_with_variables_filled_in() {
        let t = std::sync::Arc::new(TopicPermission {
            user: "u".into(),
            vhost: ShortStr::from_static("v"),
            exchange: "amq.topic".into(),
            write: "^{username}\\.".into(),
            read: "^{vhost}\\.".into(),
        });
        let a = Access::new(&perm(".*", ".*", ".*"), &[t]);
        assert!(a.has_topic_rules(b"amq.topic") && !a.has_topic_rules(b"other"));
        assert!(a.check_topic(Perm::Write, b"amq.topic", b"u.orders").is_ok());
        assert!(a.check_topic(Perm::Write, b"amq.topic", b"x.orders").is_err());
        assert!(a.check_topic(Perm::Read, b"amq.topic", b"v.#").is_ok());
        assert!(a.check_topic(Perm::Write, b"other", b"anything").is_ok(), "no rule: allowed");
    }
}
