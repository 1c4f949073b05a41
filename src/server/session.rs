//! What a connection shares with its channels and with the queues that deliver to them.

use std::sync::Arc;

use crate::auth::access::{Access, Perm, Refused, Resource};
use crate::broker::connections::{ConnectionEntry, UserTallies};
use crate::broker::{errors, Broker, VHost};
use crate::protocol::AmqpError;
use crate::server::outbound::Outbound;

/// Capabilities the client announced in `connection.start-ok`.
#[derive(Debug, Clone, Copy, Default)]
pub struct ClientCapabilities {
    pub consumer_cancel_notify: bool,
    pub authentication_failure_close: bool,
    pub publisher_confirms: bool,
    pub connection_blocked: bool,
}

/// One open connection, after the handshake.
pub struct Session {
    pub id: u64,
    pub broker: Arc<Broker>,
    pub vhost: Arc<VHost>,
    pub user: String,
    /// What the user may do in the vhost (compiled when the vhost was opened; later permission
    /// changes apply to new connections, as RabbitMQ's per-channel caches do).
    pub access: Arc<crate::auth::access::Access>,
    pub outbound: Arc<Outbound>,
    /// Negotiated maximum frame size (including overhead).
    pub frame_max: u32,
    pub channel_max: u16,
    /// Negotiated heartbeat interval in seconds (0 = off).
    pub heartbeat: u16,
    pub capabilities: ClientCapabilities,
    /// This connection's entry in the broker's registry: its channels, counters and close
    /// requests.
    pub registry: Arc<ConnectionEntry>,
    /// The user's open connections and channels, for its `max-channels`.
    pub user_tallies: Arc<UserTallies>,
}

impl Session {
    /// One of [`Access`]'s checks against this connection's permissions, refused with
    /// RabbitMQ's 403.
    pub fn check(&self, f: impl FnOnce(&Access) -> Result<(), Refused>) -> Result<(), AmqpError> {
        f(&self.access).map_err(|r| errors::access_refused(&r, &self.vhost.name, &self.user))
    }

    /// `perm` on a queue or exchange of this vhost.
    pub fn allow(&self, perm: Perm, resource: Resource, name: &[u8]) -> Result<(), AmqpError> {
        self.check(|a| a.check(perm, resource, name))
    }

    /// A passive declare: any one permission on the target.
    pub fn allow_any(&self, resource: Resource, name: &[u8]) -> Result<(), AmqpError> {
        self.check(|a| a.check_any(resource, name))
    }

    /// A routing key (`Write`) or binding key (`Read`) on a topic exchange, where the user has
    /// topic permissions for it.
    pub fn allow_topic(&self, perm: Perm, exchange: &[u8], key: &[u8]) -> Result<(), AmqpError> {
        self.check(|a| a.check_topic(perm, exchange, key))
    }
}
