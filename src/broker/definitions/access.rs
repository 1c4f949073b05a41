//! The metadata door for users and permissions. Each change holds the broker's metadata lock,
//! so a permission is never set for a user or vhost being deleted at the same moment; the
//! tables ([`crate::auth::Users`], [`crate::auth::Permissions`]) write the store first.

use super::metadata::MetadataError;
use crate::auth::{Permission, User};
use crate::broker::{errors, Broker};
use crate::protocol::ShortStr;

impl Broker {
    /// Creates or replaces a user: its password hash and tags as given (a new password is
    /// hashed by the caller: [`User::with_password`]). Returns whether it was created. Open
    /// connections stay open, as in RabbitMQ.
    pub fn put_user(&self, user: User) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        Ok(self.users.put(user)?)
    }

    /// Deletes a user, its permissions and topic permissions, and closes its connections with
    /// `320 CONNECTION_FORCED - user 'u' is deleted`. False if there was no such user.
    pub fn delete_user(&self, name: &str) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        if !self.users.delete(name)? {
            return Ok(false);
        }
        self.permissions.forget_user(name);
        self.topic_permissions.forget_user(name);
        let closed = self.connections.close_where(&errors::user_deleted(name), |c| c.user == name);
        tracing::info!(user = %name, closed, "user deleted");
        Ok(true)
    }

    /// Sets a user's permissions in a vhost (both must exist; the three patterns must compile).
    /// Returns whether the entry was created.
    pub fn set_permission(&self, p: Permission) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        self.require_vhost_and_user(&p.vhost, &p.user)?;
        p.validate()?;
        Ok(self.permissions.set(p)?)
    }

    /// What a permission or topic permission is for must exist (checked under the door).
    pub(super) fn require_vhost_and_user(&self, vhost: &ShortStr, user: &str) -> Result<(), MetadataError> {
        if self.vhost(vhost).is_none() {
            return Err(MetadataError::NoSuchVHost(vhost.clone()));
        }
        if !self.users.contains(user) {
            return Err(MetadataError::NoSuchUser(user.to_string()));
        }
        Ok(())
    }

    /// Clears a user's permissions in a vhost; false if it had none there.
    pub fn clear_permission(&self, user: &str, vhost: &ShortStr) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        Ok(self.permissions.clear(user, vhost)?)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::auth::LoginRefused;
    use crate::broker::definitions::VHostSpec;
    use crate::broker::Limits;

    fn lo() -> std::net::IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn guest_starts_with_full_permissions_on_the_default_vhost() {
        let b = Broker::new(Limits::default());
        assert!(b.users.authenticate("guest", "guest", lo()).is_ok());
        assert!(b.users.get("guest").unwrap().has_tag("administrator"));
        let root = ShortStr::from_static("/");
        assert_eq!(
            b.permissions.list().iter().map(|p| (**p).clone()).collect::<Vec<_>>(),
            [Permission::full("guest", root)]
        );
    }

    #[test]
    fn permissions_need_a_user_a_vhost_and_valid_patterns() {
        let b = Broker::new(Limits::default());
        let root = ShortStr::from_static("/");
        let elsewhere = ShortStr::from_static("elsewhere");
        let err = b.set_permission(Permission::full("bob", root.clone())).unwrap_err();
        assert!(matches!(err, MetadataError::NoSuchUser(ref u) if u == "bob"), "{err}");
        b.put_user(User::with_password("bob", "pw", vec![])).unwrap();
        let err = b.set_permission(Permission::full("bob", elsewhere.clone())).unwrap_err();
        assert!(matches!(err, MetadataError::NoSuchVHost(ref v) if *v == elsewhere), "{err}");
        let bad = Permission { read: "[".into(), ..Permission::full("bob", root.clone()) };
        assert!(matches!(b.set_permission(bad), Err(MetadataError::InvalidRegex(_))));
        assert!(b.set_permission(Permission::full("bob", root.clone())).unwrap(), "created");
        assert!(!b.set_permission(Permission::full("bob", root.clone())).unwrap(), "replaced");
        assert!(b.clear_permission("bob", &root).unwrap());
        assert!(!b.clear_permission("bob", &root).unwrap());
    }

    #[test]
    fn deleting_a_user_deletes_its_permissions() {
        let b = Broker::new(Limits::default());
        b.put_user(User::with_password("bob", "pw", vec![])).unwrap();
        b.put_vhost(ShortStr::from_static("v"), VHostSpec::default(), Some("bob")).unwrap();
        b.set_permission(Permission::full("bob", ShortStr::from_static("/"))).unwrap();
        assert_eq!(b.permissions.of_user("bob").len(), 2);
        assert!(b.delete_user("bob").unwrap());
        assert!(!b.delete_user("bob").unwrap());
        assert!(b.permissions.of_user("bob").is_empty());
        assert_eq!(b.users.authenticate("bob", "pw", lo()).unwrap_err(), LoginRefused::BadCredentials);
        assert_eq!(b.permissions.list().len(), 1, "guest's stay");
    }
}
