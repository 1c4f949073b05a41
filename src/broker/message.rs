//! A published message as the broker holds it: routing info, properties and a shared body.

use bytes::Bytes;

use crate::protocol::{BasicProperties, ShortStr};

/// Immutable once routed; queues and deliveries share it through `Arc`, so a fanout to ten
/// queues holds one body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    pub properties: BasicProperties,
    pub body: Bytes,
}

impl Message {
    pub fn headers(&self) -> Option<&crate::protocol::FieldTable> {
        self.properties.headers.as_ref()
    }
}
