//! What a connection shares with its channels and with the queues that deliver to them.

use std::sync::Arc;

use crate::broker::connections::ConnectionEntry;
use crate::broker::{Broker, VHost};
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
}
