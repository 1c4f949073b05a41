//! Topic permissions: per user, vhost and exchange, the write and read regular expressions
//! over routing keys (RabbitMQ's `set_topic_permissions`). Kept and exposed here; the checks on
//! publishes to and bindings from a topic exchange come later. When they do, mind RabbitMQ's
//! reading: `""` denies everything (it becomes `^$`), and `{username}`, `{vhost}` and
//! `{client_id}` in a pattern are replaced by the connection's values before it is matched.
//!
//! Changes come through the broker's metadata door (`broker::definitions`), which checks that
//! the user and the vhost exist (not the exchange: RabbitMQ keeps topic permissions for
//! exchanges that do not exist yet); this table writes the store first, then changes the map.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::permissions::{check_pattern, InvalidRegex};
use crate::protocol::ShortStr;
use crate::store::{MetadataStore, StoreError, TopicPermissionRecord};

/// What `user` may publish (`write`) and consume (`read`) through topic exchange `exchange` of
/// `vhost`, as RabbitMQ lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TopicPermission {
    pub user: String,
    pub vhost: ShortStr,
    /// Any name, as RabbitMQ takes it: the exchange need not exist.
    pub exchange: String,
    pub write: String,
    pub read: String,
}

/// The variables a check fills in before matching. RabbitMQ validates the pattern as written,
/// and PCRE takes `{username}` as literal text; Rust's regex refuses a brace that is not a
/// repetition, so validation fills them in first, as the check will.
const VARIABLES: [&str; 3] = ["{username}", "{vhost}", "{client_id}"];

fn with_variables_filled(pattern: &str) -> String {
    VARIABLES.iter().fold(pattern.to_string(), |p, var| p.replace(var, "v"))
}

impl TopicPermission {
    /// Checks that both patterns compile (write, then read, as RabbitMQ).
    pub fn validate(&self) -> Result<(), InvalidRegex> {
        [&self.write, &self.read].into_iter().try_for_each(|p| check_pattern(p, &with_variables_filled(p)))
    }

    pub fn record(&self) -> TopicPermissionRecord {
        TopicPermissionRecord {
            user: self.user.clone(),
            vhost: self.vhost.clone(),
            exchange: self.exchange.clone(),
            write: self.write.clone(),
            read: self.read.clone(),
        }
    }

    pub fn from_record(r: &TopicPermissionRecord) -> TopicPermission {
        TopicPermission {
            user: r.user.clone(),
            vhost: r.vhost.clone(),
            exchange: r.exchange.clone(),
            write: r.write.clone(),
            read: r.read.clone(),
        }
    }
}

type Key = (String, ShortStr, String);
type Table = BTreeMap<Key, Arc<TopicPermission>>;

fn key(user: &str, vhost: &ShortStr, exchange: &str) -> Key {
    (user.to_string(), vhost.clone(), exchange.to_string())
}

#[derive(Default)]
pub struct TopicPermissions {
    /// By user, then vhost, then exchange.
    entries: RwLock<Table>,
    store: Option<Arc<dyn MetadataStore>>,
}

impl TopicPermissions {
    pub fn new(store: Option<Arc<dyn MetadataStore>>) -> TopicPermissions {
        TopicPermissions { entries: RwLock::default(), store }
    }

    /// Loads stored topic permissions at start-up (no store write).
    pub(crate) fn restore(&self, records: &[TopicPermissionRecord]) {
        let mut t = self.write();
        for r in records {
            t.insert(key(&r.user, &r.vhost, &r.exchange), Arc::new(TopicPermission::from_record(r)));
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    fn filtered(&self, keep: impl Fn(&TopicPermission) -> bool) -> Vec<Arc<TopicPermission>> {
        self.read().values().filter(|p| keep(p)).cloned().collect()
    }

    pub fn get(&self, user: &str, vhost: &ShortStr, exchange: &str) -> Option<Arc<TopicPermission>> {
        self.read().get(&key(user, vhost, exchange)).cloned()
    }

    /// Every topic permission, by user, vhost, exchange.
    pub fn list(&self) -> Vec<Arc<TopicPermission>> {
        self.filtered(|_| true)
    }

    /// A user's topic permissions, by vhost then exchange.
    pub fn of_user(&self, user: &str) -> Vec<Arc<TopicPermission>> {
        self.filtered(|p| p.user == user)
    }

    /// The topic permissions in a vhost, by user then exchange.
    pub fn in_vhost(&self, vhost: &ShortStr) -> Vec<Arc<TopicPermission>> {
        self.filtered(|p| p.vhost == *vhost)
    }

    /// A user's topic permissions in one vhost, by exchange.
    pub fn of_user_in(&self, user: &str, vhost: &ShortStr) -> Vec<Arc<TopicPermission>> {
        self.filtered(|p| p.user == user && p.vhost == *vhost)
    }

    /// Sets (creates or replaces) the topic permission on one exchange, already validated;
    /// true if it was created.
    pub(crate) fn set(&self, p: TopicPermission) -> Result<bool, StoreError> {
        if let Some(store) = &self.store {
            store.save_topic_permission(&p.record())?;
        }
        Ok(self.write().insert(key(&p.user, &p.vhost, &p.exchange), Arc::new(p)).is_none())
    }

    /// Clears a user's topic permission on one exchange of a vhost, or (`None`) on all of
    /// them; false if there was none.
    pub(crate) fn clear(&self, user: &str, vhost: &ShortStr, exchange: Option<&str>) -> Result<bool, StoreError> {
        let matches =
            |p: &TopicPermission| p.user == user && p.vhost == *vhost && exchange.is_none_or(|x| p.exchange == x);
        if !self.read().values().any(|p| matches(p)) {
            return Ok(false);
        }
        if let Some(store) = &self.store {
            store.delete_topic_permissions(vhost, user, exchange)?;
        }
        self.write().retain(|_, p| !matches(p));
        Ok(true)
    }

    /// Forgets a deleted user's topic permissions (the store dropped them with the user).
    pub(crate) fn forget_user(&self, user: &str) {
        self.write().retain(|(u, _, _), _| u != user);
    }

    /// Forgets a deleted vhost's topic permissions (the store dropped them with the vhost).
    pub(crate) fn forget_vhost(&self, vhost: &ShortStr) {
        self.write().retain(|(_, v, _), _| v != vhost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &'static str) -> ShortStr {
        ShortStr::from_static(name)
    }

    fn tp(user: &str, vhost: &'static str, exchange: &str) -> TopicPermission {
        TopicPermission {
            user: user.into(),
            vhost: vh(vhost),
            exchange: exchange.into(),
            write: ".*".into(),
            read: ".*".into(),
        }
    }

    #[test]
    fn patterns_must_compile_with_their_variables_filled_in() {
        let mut p = tp("bob", "/", "amq.topic");
        assert_eq!(p.validate(), Ok(()));
        p.write = "^{username}\\.{vhost}\\.".into();
        p.read = "^{client_id}$".into();
        assert_eq!(p.validate(), Ok(()), "RabbitMQ's documented form");
        assert!(regex::Regex::new(&p.write).is_err(), "which Rust's regex refuses as written");
        p.read = "".into();
        assert_eq!(p.validate(), Ok(()), "empty denies everything but is valid");
        p.read = "[".into();
        let err = p.validate().unwrap_err();
        assert!(err.to_string().starts_with("invalid_regexp '[': "), "{err}");
        p.write = "^{username}(".into();
        assert_eq!(p.validate().unwrap_err().regex, "^{username}(", "the error names the pattern as written");
    }

    #[test]
    fn set_list_clear_and_forget() {
        let t = TopicPermissions::default();
        assert!(t.set(tp("bob", "/", "x")).unwrap());
        assert!(!t.set(TopicPermission { read: "".into(), ..tp("bob", "/", "x") }).unwrap(), "replaced");
        assert_eq!(t.get("bob", &vh("/"), "x").unwrap().read, "");
        t.set(tp("bob", "/", "amq.topic")).unwrap();
        t.set(tp("bob", "a", "x")).unwrap();
        t.set(tp("alice", "a", "x")).unwrap();
        let names = |ps: Vec<Arc<TopicPermission>>| {
            ps.iter().map(|p| format!("{}@{}:{}", p.user, p.vhost, p.exchange)).collect::<Vec<_>>()
        };
        assert_eq!(names(t.list()), ["alice@a:x", "bob@/:amq.topic", "bob@/:x", "bob@a:x"]);
        assert_eq!(names(t.of_user("bob")), ["bob@/:amq.topic", "bob@/:x", "bob@a:x"]);
        assert_eq!(names(t.in_vhost(&vh("a"))), ["alice@a:x", "bob@a:x"]);
        assert_eq!(names(t.of_user_in("bob", &vh("/"))), ["bob@/:amq.topic", "bob@/:x"]);
        assert!(t.clear("bob", &vh("/"), Some("x")).unwrap(), "one exchange");
        assert!(!t.clear("bob", &vh("/"), Some("x")).unwrap());
        assert_eq!(names(t.of_user_in("bob", &vh("/"))), ["bob@/:amq.topic"]);
        t.set(tp("bob", "/", "x")).unwrap();
        assert!(t.clear("bob", &vh("/"), None).unwrap(), "all of the pair's");
        assert!(!t.clear("bob", &vh("/"), None).unwrap());
        assert_eq!(names(t.list()), ["alice@a:x", "bob@a:x"]);
        t.forget_user("bob");
        assert_eq!(names(t.list()), ["alice@a:x"]);
        t.forget_vhost(&vh("a"));
        assert!(t.list().is_empty());
    }
}
