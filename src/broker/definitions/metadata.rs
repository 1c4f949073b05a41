//! The metadata door's shared parts: vhosts, users, permissions and topic permissions change
//! only through `Broker` methods ([`super::vhosts`], [`super::access`], [`super::topic_access`])
//! that take one lock, check, write the
//! store and then apply — as the definitions funnel does for exchanges and queues. Here: the
//! error those methods return, and what a start-up does with the stored metadata (a first
//! start's defaults; the leftovers of a vhost deleted while one of its connections declared).

use std::collections::BTreeSet;

use crate::auth::users::{ADMINISTRATOR, DEFAULT_PASSWORD, DEFAULT_USER};
use crate::auth::{InvalidRegex, Permission, User};
use crate::protocol::ShortStr;
use crate::store::writer::Op;
use crate::store::{Definitions, MetadataStore, StoreError, StoreHandle, VHostRecord};

/// Why a vhost, user or permission change was refused. The HTTP layer maps these to RabbitMQ's
/// replies (e.g. both `NoSuch…` to 400 `vhost_or_user_not_found` for a permission).
#[derive(Debug, thiserror::Error)]
pub enum MetadataError {
    #[error("no_such_vhost: '{0}'")]
    NoSuchVHost(ShortStr),
    #[error("no_such_user: '{0}'")]
    NoSuchUser(String),
    #[error(transparent)]
    InvalidRegex(#[from] InvalidRegex),
    /// The store refused the write; nothing changed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// The vhost every RabbitMQ node starts with, and its description.
pub const DEFAULT_VHOST: ShortStr = ShortStr::from_static("/");
pub const DEFAULT_VHOST_DESCRIPTION: &str = "Default virtual host";

/// Who and what a blank node starts with: RabbitMQ's `default_user`, `default_pass` and
/// `default_vhost` (guest/guest and `/` unless configured — docker-compose files set
/// `RABBITMQ_DEFAULT_USER` and friends), and `loopback_users`, the users who may connect only
/// from loopback (`guest` unless configured).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Bootstrap {
    pub default_user: String,
    pub default_pass: String,
    pub default_vhost: ShortStr,
    pub loopback_users: Vec<String>,
}

impl Default for Bootstrap {
    fn default() -> Bootstrap {
        Bootstrap {
            default_user: DEFAULT_USER.to_string(),
            default_pass: DEFAULT_PASSWORD.to_string(),
            default_vhost: DEFAULT_VHOST,
            loopback_users: vec![DEFAULT_USER.to_string()],
        }
    }
}

/// What a blank node has, as RabbitMQ creates it: the default vhost, the default user
/// (administrator) and its full permissions there. Added to `defs` unless already there (a
/// data directory from before Warren kept vhosts has definitions for `/` but no record of it);
/// with a store, [`crate::store::MetadataStore::initialise`] writes them.
pub(crate) fn add_first_start_defaults(defs: &mut Definitions, boot: &Bootstrap) {
    let (user, vhost) = (&boot.default_user, &boot.default_vhost);
    if !defs.vhosts.iter().any(|v| v.name == *vhost) {
        let description = if *vhost == DEFAULT_VHOST { DEFAULT_VHOST_DESCRIPTION.to_string() } else { String::new() };
        defs.vhosts.push(VHostRecord { name: vhost.clone(), description, ..Default::default() });
    }
    if !defs.users.iter().any(|u| u.name == *user) {
        defs.users
            .push(User::with_password(user.as_str(), &boot.default_pass, vec![ADMINISTRATOR.to_string()]).record());
    }
    if !defs.permissions.iter().any(|p| p.user == *user && p.vhost == *vhost) {
        defs.permissions.push(Permission::full(user.as_str(), vhost.clone()).record());
    }
    defs.initialised = true;
}

/// Definitions kept for vhosts that do not exist: a connection of a deleted vhost declared
/// while the deletion ran. They are deleted from the store (with their queues' messages)
/// rather than restored, so that a vhost created later under that name starts empty.
pub(crate) fn purge_orphans(defs: &mut Definitions, storage: &StoreHandle) {
    let known: BTreeSet<&ShortStr> = defs.vhosts.iter().map(|v| &v.name).collect();
    let mentioned = defs.exchanges.iter().map(|x| &x.vhost).chain(defs.queues.iter().map(|q| &q.vhost));
    let orphans: BTreeSet<ShortStr> =
        mentioned.chain(defs.bindings.iter().map(|b| &b.vhost)).filter(|v| !known.contains(v)).cloned().collect();
    for vhost in &orphans {
        tracing::warn!(%vhost, "definitions of a deleted vhost dropped");
        if let Err(e) = storage.store.delete_vhost(vhost) {
            tracing::error!(%vhost, error = %e, "cannot drop the definitions of a deleted vhost");
        }
        for q in defs.queues.iter().filter(|q| q.vhost == *vhost) {
            storage.writer.submit(Op::DeleteQueue { queue: q.id });
        }
    }
    defs.exchanges.retain(|x| !orphans.contains(&x.vhost));
    defs.queues.retain(|q| !orphans.contains(&q.vhost));
    defs.bindings.retain(|b| !orphans.contains(&b.vhost));
}
