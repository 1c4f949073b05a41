//! The metadata door for vhost and user limits (`/api/vhost-limits`, `/api/user-limits`,
//! `set_vhost_limits`): set through the broker's metadata lock, written to the store with the
//! vhost's or user's record, then applied. Counting and refusing happen where things are opened
//! (`connection.open`, `channel.open`, `queue.declare`); see [`crate::auth::limits`].

use super::metadata::MetadataError;
use super::vhosts::record;
use crate::auth::limits::LimitSet;
use crate::broker::Broker;
use crate::protocol::ShortStr;

impl Broker {
    /// Replaces every limit of a vhost (the whole set, as a definitions file's `vhost-limits`
    /// parameter does).
    pub fn set_vhost_limits(&self, vhost: &ShortStr, limits: LimitSet) -> Result<(), MetadataError> {
        self.change_vhost_limits(vhost, |l| *l = limits)
    }

    /// Sets one limit of a vhost, keeping the others.
    pub fn set_vhost_limit(&self, vhost: &ShortStr, name: &str, value: i64) -> Result<(), MetadataError> {
        self.change_vhost_limits(vhost, |l| l.set(name, value))
    }

    /// Clears one limit of a vhost (none to clear is fine, as in RabbitMQ).
    pub fn clear_vhost_limit(&self, vhost: &ShortStr, name: &str) -> Result<(), MetadataError> {
        self.change_vhost_limits(vhost, |l| {
            l.clear(name);
        })
    }

    fn change_vhost_limits(&self, name: &ShortStr, change: impl FnOnce(&mut LimitSet)) -> Result<(), MetadataError> {
        let _door = self.metadata_door();
        let vhost = self.vhost(name).ok_or_else(|| MetadataError::NoSuchVHost(name.clone()))?;
        let mut meta = vhost.meta();
        change(&mut meta.limits);
        if let Some(store) = self.metadata_store() {
            store.save_vhost(&record(name, &meta))?;
        }
        tracing::info!(vhost = %name, limits = ?meta.limits, "vhost limits set");
        vhost.set_meta(meta);
        Ok(())
    }

    /// Sets one limit of a user, keeping the others.
    pub fn set_user_limit(&self, user: &str, name: &str, value: i64) -> Result<(), MetadataError> {
        self.change_user_limits(user, |l| l.set(name, value))
    }

    /// Clears one limit of a user (none to clear is fine).
    pub fn clear_user_limit(&self, user: &str, name: &str) -> Result<(), MetadataError> {
        self.change_user_limits(user, |l| {
            l.clear(name);
        })
    }

    fn change_user_limits(&self, user: &str, change: impl FnOnce(&mut LimitSet)) -> Result<(), MetadataError> {
        let _door = self.metadata_door();
        let current = self.users.get(user).ok_or_else(|| MetadataError::NoSuchUser(user.to_string()))?;
        let mut limits = current.limits.clone();
        change(&mut limits);
        tracing::info!(%user, ?limits, "user limits set");
        if !self.users.set_limits(user, limits)? {
            return Err(MetadataError::NoSuchUser(user.to_string()));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use crate::auth::limits::{LimitSet, MAX_CHANNELS, MAX_CONNECTIONS, MAX_QUEUES};
    use crate::auth::User;
    use crate::broker::definitions::{MetadataError, VHostSpec};
    use crate::broker::{Broker, Limits};
    use crate::protocol::ShortStr;

    #[test]
    fn vhost_limits_are_set_one_at_a_time_or_all_together_and_kept_across_updates() {
        let b = Broker::new(Limits::default());
        let v = ShortStr::from_static("v");
        assert!(matches!(b.set_vhost_limit(&v, MAX_QUEUES, 1), Err(MetadataError::NoSuchVHost(_))));
        b.put_vhost(v.clone(), VHostSpec::default(), None).unwrap();
        b.set_vhost_limit(&v, MAX_QUEUES, 1).unwrap();
        b.set_vhost_limit(&v, MAX_CONNECTIONS, -1).unwrap();
        let vh = b.vhost(&v).unwrap();
        assert_eq!((vh.limit(MAX_QUEUES), vh.limit(MAX_CONNECTIONS)), (Some(1), None));
        b.put_vhost(v.clone(), VHostSpec { description: "new".into(), ..Default::default() }, None).unwrap();
        assert_eq!(vh.limit(MAX_QUEUES), Some(1), "an update keeps the limits");
        b.clear_vhost_limit(&v, MAX_QUEUES).unwrap();
        b.clear_vhost_limit(&v, MAX_QUEUES).unwrap();
        assert_eq!(vh.meta().limits.iter().collect::<Vec<_>>(), [(MAX_CONNECTIONS, -1)]);
        b.set_vhost_limits(&v, LimitSet::new()).unwrap();
        assert!(vh.meta().limits.is_empty());
    }

    #[test]
    fn user_limits_survive_a_password_change() {
        let b = Broker::new(Limits::default());
        assert!(matches!(b.set_user_limit("bob", MAX_CHANNELS, 1), Err(MetadataError::NoSuchUser(_))));
        b.put_user(User::with_password("bob", "pw", vec![])).unwrap();
        b.set_user_limit("bob", MAX_CHANNELS, 2).unwrap();
        b.put_user(User::with_password("bob", "new", vec!["management".into()])).unwrap();
        let bob = b.users.get("bob").unwrap();
        assert_eq!((bob.limits.limit(MAX_CHANNELS), bob.has_tag("management")), (Some(2), true));
        b.clear_user_limit("bob", MAX_CHANNELS).unwrap();
        assert!(b.users.get("bob").unwrap().limits.is_empty());
    }
}
