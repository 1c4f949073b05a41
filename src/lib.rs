//! Warren: an AMQP 0-9-1 message broker that RabbitMQ clients use unchanged.
//!
//! The flow of a message mirrors the module layout: [`protocol`] turns bytes into frames and
//! methods; [`server`] owns sockets and connections. See `../shared/design.md` for the
//! architecture the rest grows into.

pub mod config;
pub mod protocol;
pub mod server;
