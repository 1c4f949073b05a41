//! The user table: names, password hashes and tags, changeable at run time and kept in the
//! store. A login reads it under a read lock only long enough to clone the user out; the hash
//! is computed after.
//!
//! Changes come through the broker's metadata door (`broker::definitions`), which serializes
//! them and deletes what depends on a user (its permissions, its connections); this table
//! writes the store first and then changes what logins see.

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, RwLock, RwLockReadGuard, RwLockWriteGuard};

use super::password::{HashingAlgorithm, PasswordHash};
use super::LoginRefused;
use crate::auth::limits::LimitSet;
use crate::store::{MetadataStore, StoreError, UserRecord};

/// The user RabbitMQ creates on a blank node, and its password.
pub const DEFAULT_USER: &str = "guest";
pub const DEFAULT_PASSWORD: &str = "guest";
/// The tag that gives a user every management right.
pub const ADMINISTRATOR: &str = "administrator";

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct User {
    pub name: String,
    pub password: PasswordHash,
    /// Management rights (`administrator`, `monitoring`, `policymaker`, `management`,
    /// `impersonator`) and any other label; they do not govern AMQP access.
    pub tags: Vec<String>,
    /// `max-connections` and `max-channels` (see `broker::limits`).
    pub limits: LimitSet,
}

/// Why a stored user cannot be loaded.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadUserRecord {
    #[error("unknown password hashing algorithm '{0}'")]
    UnknownAlgorithm(String),
    #[error("password hash is not base64")]
    NotBase64,
}

impl User {
    pub fn new(name: impl Into<String>, password: PasswordHash, tags: Vec<String>) -> User {
        User { name: name.into(), password, tags, limits: LimitSet::default() }
    }

    /// A user whose password is hashed with the default algorithm (SHA-256) and a fresh salt.
    pub fn with_password(name: impl Into<String>, password: &str, tags: Vec<String>) -> User {
        User::new(name, PasswordHash::new(HashingAlgorithm::default(), password), tags)
    }

    pub fn has_tag(&self, tag: &str) -> bool {
        self.tags.iter().any(|t| t == tag)
    }

    pub fn record(&self) -> UserRecord {
        UserRecord {
            name: self.name.clone(),
            password_hash: self.password.to_base64(),
            hashing_algorithm: self.password.algorithm().name().to_string(),
            tags: self.tags.clone(),
            limits: self.limits.to_map(),
        }
    }

    pub fn from_record(r: &UserRecord) -> Result<User, BadUserRecord> {
        let algorithm = HashingAlgorithm::parse(&r.hashing_algorithm)
            .ok_or_else(|| BadUserRecord::UnknownAlgorithm(r.hashing_algorithm.clone()))?;
        let password = PasswordHash::from_base64(algorithm, &r.password_hash).map_err(|_| BadUserRecord::NotBase64)?;
        Ok(User { name: r.name.clone(), password, tags: r.tags.clone(), limits: LimitSet::from_map(r.limits.clone()) })
    }
}

pub struct Users {
    users: RwLock<HashMap<String, Arc<User>>>,
    /// RabbitMQ's `loopback_users`: these may connect only from 127.0.0.0/8 or ::1.
    loopback_users: RwLock<Vec<String>>,
    /// Where changes are written before they take effect; `None` keeps them in memory.
    store: Option<Arc<dyn MetadataStore>>,
    /// Checked against when the user is unknown, so that an unknown name takes as long to
    /// refuse as a wrong password (RabbitMQ does the same).
    dummy: PasswordHash,
}

impl Default for Users {
    fn default() -> Users {
        Users::new(None)
    }
}

impl std::fmt::Debug for Users {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Users").field("count", &self.read().len()).finish_non_exhaustive()
    }
}

impl Users {
    /// An empty table whose changes go to `store` (if any) first. `guest` is loopback-only.
    pub fn new(store: Option<Arc<dyn MetadataStore>>) -> Users {
        Users {
            users: RwLock::default(),
            loopback_users: RwLock::new(vec![DEFAULT_USER.to_string()]),
            store,
            dummy: PasswordHash::new(HashingAlgorithm::default(), "no such user"),
        }
    }

    /// In memory, with `guest`/`guest` (administrator), as RabbitMQ starts.
    pub fn with_default_guest() -> Users {
        let u = Users::default();
        u.insert(User::with_password(DEFAULT_USER, DEFAULT_PASSWORD, vec![ADMINISTRATOR.to_string()]));
        u
    }

    /// Loads stored users at start-up (no store write). Unreadable records are skipped and logged.
    pub(crate) fn restore(&self, records: &[UserRecord]) {
        for r in records {
            match User::from_record(r) {
                Ok(user) => self.insert(user),
                Err(e) => tracing::error!(user = %r.name, error = %e, "stored user skipped"),
            }
        }
    }

    fn insert(&self, user: User) {
        self.write().insert(user.name.clone(), Arc::new(user));
    }

    fn read(&self) -> RwLockReadGuard<'_, HashMap<String, Arc<User>>> {
        self.users.read().unwrap_or_else(|e| e.into_inner())
    }

    fn write(&self) -> RwLockWriteGuard<'_, HashMap<String, Arc<User>>> {
        self.users.write().unwrap_or_else(|e| e.into_inner())
    }

    pub fn get(&self, name: &str) -> Option<Arc<User>> {
        self.read().get(name).cloned()
    }

    pub fn contains(&self, name: &str) -> bool {
        self.read().contains_key(name)
    }

    /// Every user, by name.
    pub fn list(&self) -> Vec<Arc<User>> {
        let mut all: Vec<Arc<User>> = self.read().values().cloned().collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// RabbitMQ's `loopback_users` as configured (empty: `none`, anyone from anywhere).
    pub fn set_loopback_users(&self, users: Vec<String>) {
        *self.loopback_users.write().unwrap_or_else(|e| e.into_inner()) = users;
    }

    pub fn is_loopback_only(&self, name: &str) -> bool {
        self.loopback_users.read().unwrap_or_else(|e| e.into_inner()).iter().any(|u| u == name)
    }

    /// Creates or replaces a user (hash and tags as given; the limits it carries are set over
    /// those it had, which stay, as RabbitMQ keeps them); true if it was created.
    pub(crate) fn put(&self, mut user: User) -> Result<bool, StoreError> {
        if let Some(old) = self.get(&user.name) {
            user.limits = old.limits.clone().merged(&user.limits);
        }
        if let Some(store) = &self.store {
            store.save_user(&user.record())?;
        }
        Ok(self.write().insert(user.name.clone(), Arc::new(user)).is_none())
    }

    /// Replaces a user's limits; false if there is no such user.
    pub(crate) fn set_limits(&self, name: &str, limits: LimitSet) -> Result<bool, StoreError> {
        let Some(old) = self.get(name) else { return Ok(false) };
        let user = User { limits, ..(*old).clone() };
        if let Some(store) = &self.store {
            store.save_user(&user.record())?;
        }
        self.write().insert(user.name.clone(), Arc::new(user));
        Ok(true)
    }

    /// Deletes a user; in the store its permissions go in the same write. False if there was
    /// no such user.
    pub(crate) fn delete(&self, name: &str) -> Result<bool, StoreError> {
        if !self.contains(name) {
            return Ok(false);
        }
        if let Some(store) = &self.store {
            store.delete_user(name)?;
        }
        Ok(self.write().remove(name).is_some())
    }

    /// Checks a password login. Refuses an unknown user, a wrong or blank password, a user
    /// without a password, and a loopback-only user from elsewhere.
    pub fn authenticate(&self, name: &str, password: &str, peer: IpAddr) -> Result<Arc<User>, LoginRefused> {
        let Some(user) = self.get(name) else {
            std::hint::black_box(self.dummy.verify(password));
            return Err(LoginRefused::BadCredentials);
        };
        // RabbitMQ's internal backend refuses a blank password whatever is stored.
        if password.is_empty() || !user.password.verify(password) {
            return Err(LoginRefused::BadCredentials);
        }
        if self.is_loopback_only(name) && !peer.is_loopback() && !is_mapped_loopback(peer) {
            return Err(LoginRefused::NotFromLoopback);
        }
        Ok(user)
    }

    /// Checks a login without a password (SASL `EXTERNAL`, the name taken from a verified
    /// client certificate): the user must exist, and loopback-only users still only log in
    /// from loopback.
    pub fn authenticate_external(&self, name: &str, peer: IpAddr) -> Result<Arc<User>, LoginRefused> {
        let Some(user) = self.get(name) else {
            return Err(LoginRefused::BadCredentials);
        };
        if self.is_loopback_only(name) && !peer.is_loopback() && !is_mapped_loopback(peer) {
            return Err(LoginRefused::NotFromLoopback);
        }
        Ok(user)
    }
}

fn is_mapped_loopback(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().is_some_and(|v4| v4.is_loopback()),
        IpAddr::V4(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn lo() -> IpAddr {
        "127.0.0.1".parse().unwrap()
    }

    #[test]
    fn guest_only_from_loopback() {
        let u = Users::with_default_guest();
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(u.authenticate("guest", "guest", lo()).is_ok());
        assert!(u.authenticate("guest", "guest", "::ffff:127.0.0.1".parse().unwrap()).is_ok());
        assert!(u.authenticate("guest", "guest", "::1".parse().unwrap()).is_ok());
        assert_eq!(u.authenticate("guest", "nope", lo()).unwrap_err(), LoginRefused::BadCredentials);
        assert_eq!(u.authenticate("bob", "guest", lo()).unwrap_err(), LoginRefused::BadCredentials);
        assert_eq!(u.authenticate("guest", "guest", far).unwrap_err(), LoginRefused::NotFromLoopback);
        assert_eq!(u.get("guest").unwrap().tags, ["administrator"]);
        assert_eq!(u.get("guest").unwrap().password.algorithm(), HashingAlgorithm::Sha256);
    }

    #[test]
    fn users_change_at_run_time() {
        let u = Users::default();
        let far: IpAddr = "192.0.2.1".parse().unwrap();
        assert!(u.put(User::with_password("bob", "s3cret", vec![])).unwrap(), "created");
        assert!(u.authenticate("bob", "s3cret", far).is_ok(), "only guest is loopback-only");
        assert!(!u.put(User::with_password("bob", "other", vec!["monitoring".into()])).unwrap(), "updated");
        assert_eq!(u.authenticate("bob", "s3cret", lo()).unwrap_err(), LoginRefused::BadCredentials);
        assert!(u.authenticate("bob", "other", lo()).unwrap().has_tag("monitoring"));
        assert!(u.delete("bob").unwrap());
        assert!(!u.delete("bob").unwrap());
        assert_eq!(u.authenticate("bob", "other", lo()).unwrap_err(), LoginRefused::BadCredentials);
        assert!(u.list().is_empty());
    }

    #[test]
    fn blank_and_absent_passwords_never_log_in() {
        let u = Users::default();
        u.put(User::new("nopw", PasswordHash::none(HashingAlgorithm::Sha256), vec![])).unwrap();
        u.put(User::with_password("blank", "", vec![])).unwrap();
        for (name, pw) in [("nopw", ""), ("nopw", "x"), ("blank", "")] {
            assert_eq!(u.authenticate(name, pw, lo()).unwrap_err(), LoginRefused::BadCredentials, "{name}/{pw}");
        }
    }

    #[test]
    fn records_round_trip_and_bad_ones_are_refused() {
        let user = User::with_password("a", "b", vec!["management".into()]);
        assert_eq!(User::from_record(&user.record()).unwrap(), user);
        let mut r = user.record();
        r.hashing_algorithm = "rabbit_password_hashing_foo".into();
        assert_eq!(User::from_record(&r), Err(BadUserRecord::UnknownAlgorithm("rabbit_password_hashing_foo".into())));
        let mut r = user.record();
        r.password_hash = "abc".into();
        assert_eq!(User::from_record(&r), Err(BadUserRecord::NotBase64));
        let u = Users::default();
        u.restore(&[r, user.record()]);
        assert_eq!(u.list().len(), 1, "the unreadable record is skipped");
    }
}
