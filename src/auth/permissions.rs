//! Permissions: per user and vhost, the configure, write and read regular expressions over
//! resource names (RabbitMQ's `set_permissions`). Kept and exposed here; the checks on AMQP
//! operations come later. When they do, mind RabbitMQ's reading: patterns are not anchored,
//! `""` denies everything, and any entry — even `"" "" ""` — lets the user open the vhost.
//!
//! Changes come through the broker's metadata door (`broker::definitions`), which checks that
//! the user and the vhost exist; this table writes the store first, then changes the map.

use std::collections::BTreeMap;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use crate::protocol::ShortStr;
use crate::store::{MetadataStore, PermissionRecord, StoreError};

/// What `user` may do in `vhost`, as RabbitMQ lists it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Permission {
    pub user: String,
    pub vhost: ShortStr,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// A permission pattern that does not compile (RabbitMQ's `invalid_regexp`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("invalid_regexp '{regex}': {reason}")]
pub struct InvalidRegex {
    pub regex: String,
    pub reason: String,
}

/// Checks that `compiled` compiles; an error names `shown`, the pattern as the user wrote it
/// (topic permissions compile theirs with the variables filled in).
pub(crate) fn check_pattern(shown: &str, compiled: &str) -> Result<(), InvalidRegex> {
    match regex::Regex::new(compiled) {
        Ok(_) => Ok(()),
        Err(e) => Err(InvalidRegex { regex: shown.to_string(), reason: e.to_string() }),
    }
}

impl Permission {
    /// `.*` for all three: what a first start gives `guest` on `/`, and what creating a vhost
    /// gives the user who created it.
    pub fn full(user: impl Into<String>, vhost: ShortStr) -> Permission {
        Permission { user: user.into(), vhost, configure: ".*".into(), write: ".*".into(), read: ".*".into() }
    }

    /// Checks that the three patterns compile (configure, then write, then read, as RabbitMQ).
    pub fn validate(&self) -> Result<(), InvalidRegex> {
        [&self.configure, &self.write, &self.read].into_iter().try_for_each(|p| check_pattern(p, p))
    }

    pub fn record(&self) -> PermissionRecord {
        PermissionRecord {
            user: self.user.clone(),
            vhost: self.vhost.clone(),
            configure: self.configure.clone(),
            write: self.write.clone(),
            read: self.read.clone(),
        }
    }

    pub fn from_record(r: &PermissionRecord) -> Permission {
        Permission {
            user: r.user.clone(),
            vhost: r.vhost.clone(),
            configure: r.configure.clone(),
            write: r.write.clone(),
            read: r.read.clone(),
        }
    }
}

type Table = BTreeMap<(String, ShortStr), Arc<Permission>>;

#[derive(Default)]
pub struct Permissions {
    /// By user, then vhost.
    entries: RwLock<Table>,
    store: Option<Arc<dyn MetadataStore>>,
}

impl Permissions {
    pub fn new(store: Option<Arc<dyn MetadataStore>>) -> Permissions {
        Permissions { entries: RwLock::default(), store }
    }

    /// Loads stored permissions at start-up (no store write).
    pub(crate) fn restore(&self, records: &[PermissionRecord]) {
        let mut t = self.write();
        for r in records {
            t.insert((r.user.clone(), r.vhost.clone()), Arc::new(Permission::from_record(r)));
        }
    }

    fn read(&self) -> RwLockReadGuard<'_, Table> {
        self.entries.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, Table> {
        self.entries.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, user: &str, vhost: &ShortStr) -> Option<Arc<Permission>> {
        self.read().get(&(user.to_string(), vhost.clone())).cloned()
    }

    /// Every permission, by user then vhost.
    pub fn list(&self) -> Vec<Arc<Permission>> {
        self.read().values().cloned().collect()
    }

    /// A user's permissions, by vhost.
    pub fn of_user(&self, user: &str) -> Vec<Arc<Permission>> {
        self.read().values().filter(|p| p.user == user).cloned().collect()
    }

    /// The permissions in a vhost, by user.
    pub fn in_vhost(&self, vhost: &ShortStr) -> Vec<Arc<Permission>> {
        self.read().values().filter(|p| p.vhost == *vhost).cloned().collect()
    }

    /// Sets (creates or replaces) a permission, already validated; true if it was created.
    pub(crate) fn set(&self, p: Permission) -> Result<bool, StoreError> {
        if let Some(store) = &self.store {
            store.save_permission(&p.record())?;
        }
        Ok(self.write().insert((p.user.clone(), p.vhost.clone()), Arc::new(p)).is_none())
    }

    /// Clears a permission; false if there was none.
    pub(crate) fn clear(&self, user: &str, vhost: &ShortStr) -> Result<bool, StoreError> {
        if self.get(user, vhost).is_none() {
            return Ok(false);
        }
        if let Some(store) = &self.store {
            store.delete_permission(vhost, user)?;
        }
        Ok(self.write().remove(&(user.to_string(), vhost.clone())).is_some())
    }

    /// Forgets a deleted user's permissions (the store dropped them with the user).
    pub(crate) fn forget_user(&self, user: &str) {
        self.write().retain(|(u, _), _| u != user);
    }

    /// Forgets a deleted vhost's permissions (the store dropped them with the vhost).
    pub(crate) fn forget_vhost(&self, vhost: &ShortStr) {
        self.write().retain(|(_, v), _| v != vhost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn vh(name: &'static str) -> ShortStr {
        ShortStr::from_static(name)
    }

    #[test]
    fn patterns_must_compile() {
        let mut p = Permission::full("bob", vh("/"));
        assert_eq!(p.validate(), Ok(()));
        p.write = "".into();
        p.read = "^(amq\\.gen.*|orders)$".into();
        assert_eq!(p.validate(), Ok(()), "empty denies everything but is valid");
        p.write = "(".into();
        let err = p.validate().unwrap_err();
        assert_eq!(err.regex, "(");
        assert!(err.to_string().starts_with("invalid_regexp '(': "), "{err}");
    }

    #[test]
    fn set_clear_and_forget() {
        let t = Permissions::default();
        assert!(t.set(Permission::full("bob", vh("/"))).unwrap());
        assert!(!t.set(Permission { read: "".into(), ..Permission::full("bob", vh("/")) }).unwrap(), "replaced");
        assert_eq!(t.get("bob", &vh("/")).unwrap().read, "");
        t.set(Permission::full("bob", vh("a"))).unwrap();
        t.set(Permission::full("alice", vh("a"))).unwrap();
        let pairs = |ps: Vec<Arc<Permission>>| ps.iter().map(|p| format!("{}@{}", p.user, p.vhost)).collect::<Vec<_>>();
        assert_eq!(pairs(t.list()), ["alice@a", "bob@/", "bob@a"]);
        assert_eq!(pairs(t.of_user("bob")), ["bob@/", "bob@a"]);
        assert_eq!(pairs(t.in_vhost(&vh("a"))), ["alice@a", "bob@a"]);
        assert!(t.clear("bob", &vh("/")).unwrap());
        assert!(!t.clear("bob", &vh("/")).unwrap());
        t.forget_vhost(&vh("a"));
        assert!(t.list().is_empty());
        t.set(Permission::full("bob", vh("/"))).unwrap();
        t.forget_user("bob");
        assert!(t.list().is_empty());
    }
}
