//! Users, their passwords and permissions, and authentication.
//!
//! - [`password`]: RabbitMQ's salted password hashes (SHA-256, SHA-512, MD5), byte for byte.
//! - [`users`]: the user table logins read, changeable at run time and kept in the store.
//! - [`permissions`]: per user and vhost, the configure/write/read patterns.
//! - [`topic_permissions`]: per user, vhost and exchange, the write/read patterns over routing
//!   keys.
//! - [`access`]: both compiled for one connection, and the checks of every AMQP operation.
//! - [`access_cache`]: one compiled `Access` shared by a user's connections to a vhost.
//! - [`limits`]: vhost and user limits (connections, channels, queues) and their counts.
//! - [`sasl`]: the user name and password out of `PLAIN` and `AMQPLAIN` responses.
//!
//! These tables are changed only through the broker's metadata door (`broker::definitions`),
//! which keeps users, vhosts and permissions consistent with each other.

pub mod access;
pub mod access_cache;
pub mod limits;
pub mod password;
pub mod permissions;
pub mod sasl;
pub mod topic_permissions;
pub mod users;

pub use password::{HashingAlgorithm, PasswordHash};
pub use permissions::{InvalidRegex, Permission, Permissions};
pub use topic_permissions::{TopicPermission, TopicPermissions};
pub use users::{User, Users};

#[derive(Debug, PartialEq, Eq)]
pub enum LoginRefused {
    /// Unknown user or wrong password (never say which).
    BadCredentials,
    /// A loopback-only user connecting from elsewhere.
    NotFromLoopback,
}
