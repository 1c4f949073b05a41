//! The metadata door for virtual hosts: create one (or describe it anew) and delete one, in
//! RabbitMQ's manner. Every change holds the broker's metadata lock, writes the store, then
//! applies; AMQP sees a new vhost as soon as it is in the broker's map (`connection.open`
//! looks it up there).

use std::sync::Arc;

use super::metadata::MetadataError;
use crate::auth::limits::LimitSet;
use crate::auth::Permission;
use crate::broker::vhost::{VHost, VHostMetadata};
use crate::broker::{errors, Broker};
use crate::protocol::ShortStr;
use crate::store::{Definitions, VHostRecord};

/// What creating or updating a vhost asks for (`PUT /api/vhosts/{name}`, `add_vhost`).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct VHostSpec {
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    /// `None` leaves tracing as it is (off for a new vhost), as RabbitMQ does.
    pub tracing: Option<bool>,
}

pub(super) fn record(name: &ShortStr, meta: &VHostMetadata) -> VHostRecord {
    VHostRecord {
        name: name.clone(),
        description: meta.description.clone(),
        tags: meta.tags.clone(),
        default_queue_type: meta.default_queue_type.clone(),
        tracing: meta.tracing,
        limits: meta.limits.to_map(),
    }
}

fn metadata_of(r: &VHostRecord) -> VHostMetadata {
    VHostMetadata {
        description: r.description.clone(),
        tags: r.tags.clone(),
        default_queue_type: r.default_queue_type.clone(),
        tracing: r.tracing,
        limits: LimitSet::from_map(r.limits.clone()),
    }
}

impl Broker {
    /// Every vhost, by name.
    pub fn vhosts(&self) -> Vec<Arc<VHost>> {
        let mut all: Vec<Arc<VHost>> = self.vhosts.iter().map(|v| v.value().clone()).collect();
        all.sort_by(|a, b| a.name.cmp(&b.name));
        all
    }

    /// Creates vhost `name`, or replaces the metadata of an existing one (description, tags
    /// and default queue type as given; tracing only if given; limits stay). Returns whether it was
    /// created. A new vhost gives `acting_user`, if that user exists, full permissions on it
    /// (RabbitMQ's `maybe_grant_full_permissions`: whoever creates a vhost through the API can
    /// use it).
    pub fn put_vhost(&self, name: ShortStr, spec: VHostSpec, acting_user: Option<&str>) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        let existing = self.vhost(&name);
        let tracing = spec.tracing.unwrap_or_else(|| existing.as_ref().is_some_and(|v| v.meta().tracing));
        let meta = VHostMetadata {
            description: spec.description,
            tags: spec.tags,
            default_queue_type: spec.default_queue_type,
            tracing,
            limits: existing.as_ref().map(|v| v.meta().limits).unwrap_or_default(),
        };
        if let Some(store) = self.metadata_store() {
            store.save_vhost(&record(&name, &meta))?;
        }
        if let Some(vhost) = existing {
            vhost.set_meta(meta);
            return Ok(false);
        }
        let vhost = VHost::create(name.clone(), self.vhost_env.clone());
        vhost.set_meta(meta);
        self.vhosts.insert(name.clone(), vhost);
        tracing::info!(vhost = %name, "vhost created");
        if let Some(user) = acting_user.filter(|u| self.users.contains(u)) {
            self.permissions.set(Permission::full(user, name))?;
        }
        Ok(true)
    }

    /// Deletes a vhost and everything in it: its exchanges, queues (consumers are cancelled,
    /// stored messages dropped), bindings, the delayed messages held for it and the
    /// permissions and topic permissions on it; its connections are closed with `320 CONNECTION_FORCED - vhost 'v'
    /// is deleted`. False if there was no such vhost.
    pub fn delete_vhost(&self, name: &ShortStr) -> Result<bool, MetadataError> {
        let _door = self.metadata_door();
        let Some(vhost) = self.vhost(name) else { return Ok(false) };
        if let Some(store) = self.metadata_store() {
            store.delete_vhost(name)?;
        }
        self.vhosts.remove_if(name, |_, v| Arc::ptr_eq(v, &vhost));
        self.permissions.forget_vhost(name);
        self.topic_permissions.forget_vhost(name);
        // RabbitMQ's order: queues (their consumers are told), exchanges, then connections.
        vhost.tear_down();
        self.vhost_env.delays.forget_vhost(name);
        let closed = self.connections.close_where(&errors::vhost_deleted(name), |c| c.vhost == *name);
        tracing::info!(vhost = %name, closed, "vhost deleted");
        Ok(true)
    }

    /// Start-up: a stored vhost with its exchanges, queues and bindings.
    pub(crate) fn restore_vhost(&self, r: &VHostRecord, defs: &Definitions) {
        let vhost = VHost::create(r.name.clone(), self.vhost_env.clone());
        vhost.set_meta(metadata_of(r));
        vhost.restore(defs);
        self.vhosts.insert(r.name.clone(), vhost);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::broker::definitions::{ExchangeSpec, QueueSpec};
    use crate::broker::exchange::ExchangeKind;
    use crate::broker::Limits;
    use crate::protocol::FieldTable;

    fn vh(name: &'static str) -> ShortStr {
        ShortStr::from_static(name)
    }

    fn spec(description: &str) -> VHostSpec {
        VHostSpec { description: description.into(), ..Default::default() }
    }

    #[test]
    fn a_new_broker_has_the_default_vhost() {
        let b = Broker::new(Limits::default());
        let names: Vec<ShortStr> = b.vhosts().iter().map(|v| v.name.clone()).collect();
        assert_eq!(names, [vh("/")]);
        assert_eq!(b.vhost(&vh("/")).unwrap().meta().description, "Default virtual host");
    }

    #[test]
    fn create_update_and_grant_the_creator() {
        let b = Broker::new(Limits::default());
        let s = VHostSpec { tags: vec!["a".into()], tracing: Some(true), ..spec("first") };
        assert!(b.put_vhost(vh("v"), s, Some("guest")).unwrap(), "created");
        assert_eq!(b.permissions.get("guest", &vh("v")).as_deref(), Some(&Permission::full("guest", vh("v"))));
        // An update replaces description and tags; tracing stays unless given.
        assert!(!b.put_vhost(vh("v"), spec("second"), Some("guest")).unwrap());
        let meta = b.vhost(&vh("v")).unwrap().meta();
        assert_eq!((meta.description.as_str(), meta.tags.len(), meta.tracing), ("second", 0, true));
        // Nobody, or an unknown user, gets nothing.
        b.put_vhost(vh("w"), spec(""), None).unwrap();
        b.put_vhost(vh("x"), spec(""), Some("nobody")).unwrap();
        assert!(b.permissions.in_vhost(&vh("w")).is_empty() && b.permissions.in_vhost(&vh("x")).is_empty());
        let names: Vec<ShortStr> = b.vhosts().iter().map(|v| v.name.clone()).collect();
        assert_eq!(names, [vh("/"), vh("v"), vh("w"), vh("x")]);
    }

    #[test]
    fn deleting_a_vhost_deletes_what_it_holds() {
        let b = Broker::new(Limits::default());
        b.put_vhost(vh("v"), spec(""), Some("guest")).unwrap();
        let v = b.vhost(&vh("v")).unwrap();
        let x = ExchangeSpec {
            name: vh("x"),
            kind: ExchangeKind::Fanout,
            durable: true,
            auto_delete: false,
            internal: false,
            arguments: FieldTable::new(),
        };
        v.declare_exchange(x.clone()).unwrap();
        let q = QueueSpec {
            name: vh("q"),
            server_named: false,
            durable: true,
            exclusive_owner: None,
            auto_delete: false,
            arguments: FieldTable::new(),
        };
        let (queue, _) = v.declare_queue(q, false, 1).unwrap();
        assert!(b.delete_vhost(&vh("v")).unwrap());
        assert!(!b.delete_vhost(&vh("v")).unwrap(), "already gone");
        assert!(b.vhost(&vh("v")).is_none());
        assert!(b.permissions.in_vhost(&vh("v")).is_empty());
        assert!(queue.is_deleted());
        assert!(v.is_deleted() && v.queue(&vh("q")).is_err() && v.exchange(&vh("x")).is_err());
        // A connection still on it cannot declare into it.
        let err = v.declare_exchange(x).err().expect("refused");
        assert_eq!(err.reply_text().to_string(), "CONNECTION_FORCED - vhost 'v' is deleted");
        // Created again, it starts empty.
        b.put_vhost(vh("v"), spec(""), None).unwrap();
        assert!(b.vhost(&vh("v")).unwrap().queue(&vh("q")).is_err());
    }
}
