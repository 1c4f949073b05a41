//! The metadata door for topic permissions, beside [`super::access`]'s for permissions: each
//! change holds the broker's metadata lock, so a topic permission is never set for a user or
//! vhost being deleted at the same moment; the table ([`crate::auth::TopicPermissions`])
//! writes the store first.

use super::metadata::MetadataError;
use crate::auth::TopicPermission;
use crate::broker::Broker;
use crate::protocol::ShortStr;

impl Broker {
    /// Sets a user's topic permission on one exchange of a vhost (the user and the vhost must
    /// exist, the exchange need not; both patterns must compile). Returns whether the entry
    /// was created.
    pub fn set_topic_permission(&self, p: TopicPermission) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        self.require_vhost_and_user(&p.vhost, &p.user)?;
        p.validate()?;
        Ok(self.topic_permissions.set(p)?)
    }

    /// Clears a user's topic permission on `exchange` in a vhost, or on every exchange there
    /// when `None` (what the management API's `DELETE` does); false if there was none.
    pub fn clear_topic_permission(
        &self,
        user: &str,
        vhost: &ShortStr,
        exchange: Option<&str>,
    ) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        Ok(self.topic_permissions.clear(user, vhost, exchange)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::User;
    use crate::broker::definitions::VHostSpec;
    use crate::broker::Limits;

    fn vh(name: &'static str) -> ShortStr {
        ShortStr::from_static(name)
    }

    fn tp(user: &str, vhost: &'static str, exchange: &str) -> TopicPermission {
        TopicPermission {
            user: user.into(),
            vhost: vh(vhost),
            exchange: exchange.into(),
            write: "^a\\.".into(),
            read: ".*".into(),
        }
    }

    #[test]
    fn topic_permissions_need_a_user_a_vhost_and_valid_patterns_but_no_exchange() {
        let b = Broker::new(Limits::default());
        let err = b.set_topic_permission(tp("bob", "/", "x")).unwrap_err();
        assert!(matches!(err, MetadataError::NoSuchUser(ref u) if u == "bob"), "{err}");
        b.put_user(User::with_password("bob", "pw", vec![])).unwrap();
        let err = b.set_topic_permission(tp("bob", "elsewhere", "x")).unwrap_err();
        assert!(matches!(err, MetadataError::NoSuchVHost(ref v) if *v == vh("elsewhere")), "{err}");
        let bad = TopicPermission { write: "(".into(), ..tp("bob", "/", "x") };
        assert!(matches!(b.set_topic_permission(bad), Err(MetadataError::InvalidRegex(_))));
        assert!(b.topic_permissions.list().is_empty(), "nothing kept from the refusals");
        assert!(b.set_topic_permission(tp("bob", "/", "no-such-exchange")).unwrap(), "created");
        assert!(!b.set_topic_permission(tp("bob", "/", "no-such-exchange")).unwrap(), "replaced");
        assert!(b.set_topic_permission(tp("bob", "/", "amq.topic")).unwrap());
        assert!(b.clear_topic_permission("bob", &vh("/"), Some("amq.topic")).unwrap());
        assert!(!b.clear_topic_permission("bob", &vh("/"), Some("amq.topic")).unwrap());
        assert!(b.clear_topic_permission("bob", &vh("/"), None).unwrap());
        assert!(!b.clear_topic_permission("bob", &vh("/"), None).unwrap());
    }

    #[test]
    fn deleting_a_user_or_a_vhost_deletes_their_topic_permissions() {
        let b = Broker::new(Limits::default());
        for user in ["bob", "alice"] {
            b.put_user(User::with_password(user, "pw", vec![])).unwrap();
        }
        b.put_vhost(vh("v"), VHostSpec::default(), None).unwrap();
        for (user, vhost) in [("bob", "/"), ("bob", "v"), ("alice", "/"), ("alice", "v")] {
            b.set_topic_permission(tp(user, vhost, "x")).unwrap();
        }
        assert!(b.delete_user("bob").unwrap());
        assert!(b.topic_permissions.of_user("bob").is_empty());
        assert!(b.delete_vhost(&vh("v")).unwrap());
        let left: Vec<TopicPermission> = b.topic_permissions.list().iter().map(|p| (**p).clone()).collect();
        assert_eq!(left, [tp("alice", "/", "x")]);
        // Created again, the user and the vhost start without any.
        b.put_user(User::with_password("bob", "pw", vec![])).unwrap();
        b.put_vhost(vh("v"), VHostSpec::default(), None).unwrap();
        assert!(b.topic_permissions.of_user("bob").is_empty() && b.topic_permissions.in_vhost(&vh("v")).is_empty());
    }

    #[test]
    fn topic_permissions_are_kept_in_the_store() {
        let dir = tempfile::tempdir().unwrap();
        {
            let b = Broker::open(Limits::default(), dir.path()).unwrap();
            b.put_user(User::with_password("bob", "pw", vec![])).unwrap();
            b.set_topic_permission(tp("bob", "/", "x")).unwrap();
            b.set_topic_permission(tp("bob", "/", "y")).unwrap();
            b.set_topic_permission(tp("guest", "/", "x")).unwrap();
            b.clear_topic_permission("bob", &vh("/"), Some("y")).unwrap();
            b.delete_user("guest").unwrap();
        }
        let b = Broker::open(Limits::default(), dir.path()).unwrap();
        let kept: Vec<TopicPermission> = b.topic_permissions.list().iter().map(|p| (**p).clone()).collect();
        assert_eq!(kept, [tp("bob", "/", "x")]);
    }
}
