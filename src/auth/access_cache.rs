//! One compiled [`Access`] shared by the connections of a user in a vhost.
//!
//! Compiling a user's permission patterns costs about 20 KiB of regex automata; compiled per
//! connection, that was most of what an idle connection cost once its buffers were small
//! (docs/benchmarks.md S7). Connections opened with the same permission and topic permissions
//! now share one; a changed permission compiles a new one for the connections opened after it
//! (earlier ones keep theirs, as before: permission changes apply to new connections).

use std::collections::HashMap;
use std::sync::{Arc, Mutex, Weak};

use crate::auth::access::Access;
use crate::auth::permissions::Permission;
use crate::auth::topic_permissions::TopicPermission;
use crate::protocol::ShortStr;

/// Entries whose connections are all gone are dropped once the table has this many more
/// than after the last sweep.
const SWEEP_AFTER: usize = 64;

#[derive(Default)]
pub struct AccessCache {
    table: Mutex<Table>,
}

#[derive(Default)]
struct Table {
    entries: HashMap<(String, ShortStr), Entry>,
    sweep_at: usize,
}

/// What an `Access` was compiled from, and the `Access` while a connection uses it.
struct Entry {
    permission: Arc<Permission>,
    topics: Vec<Arc<TopicPermission>>,
    access: Weak<Access>,
}

impl AccessCache {
    /// The `Access` for `permission` (a user's in a vhost) and that user's `topics` there:
    /// the one an open connection already uses if it was compiled from the same ones.
    pub fn get(&self, permission: &Arc<Permission>, topics: Vec<Arc<TopicPermission>>) -> Arc<Access> {
        let key = (permission.user.clone(), permission.vhost.clone());
        if let Some(e) = self.lock().entries.get(&key) {
            if e.permission == *permission && e.topics == topics {
                if let Some(access) = e.access.upgrade() {
                    return access;
                }
            }
        }
        // Compiled outside the lock: other users' handshakes do not wait for it.
        let access = Arc::new(Access::new(permission, &topics));
        let mut table = self.lock();
        if table.entries.len() >= table.sweep_at {
            table.entries.retain(|_, e| e.access.strong_count() > 0);
            table.sweep_at = table.entries.len() + SWEEP_AFTER;
        }
        table.entries.insert(key, Entry { permission: permission.clone(), topics, access: Arc::downgrade(&access) });
        access
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Table> {
        self.table.lock().unwrap_or_else(|e| e.into_inner())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::access::{Perm, Resource};

    fn permission(user: &str, configure: &str) -> Arc<Permission> {
        Arc::new(Permission {
            user: user.into(),
            vhost: ShortStr::from_static("/"),
            configure: configure.into(),
            write: ".*".into(),
            read: ".*".into(),
        })
    }

    #[test]
    fn connections_with_the_same_permission_share_one_access() {
        let cache = AccessCache::default();
        let p = permission("guest", ".*");
        let a = cache.get(&p, Vec::new());
        let b = cache.get(&permission("guest", ".*"), Vec::new());
        assert!(Arc::ptr_eq(&a, &b));
        assert!(!Arc::ptr_eq(&a, &cache.get(&permission("other", ".*"), Vec::new())));
    }

    #[test]
    fn a_changed_permission_gets_a_new_access() {
        let cache = AccessCache::default();
        let open = cache.get(&permission("guest", ".*"), Vec::new());
        let narrowed = cache.get(&permission("guest", "^q$"), Vec::new());
        assert!(open.check(Perm::Configure, Resource::Queue, b"x").is_ok());
        assert!(narrowed.check(Perm::Configure, Resource::Queue, b"x").is_err());
    }

    #[test]
    fn an_access_no_connection_uses_is_not_kept() {
        let cache = AccessCache::default();
        let weak = Arc::downgrade(&cache.get(&permission("guest", ".*"), Vec::new()));
        assert!(weak.upgrade().is_none());
    }
}
