//! Network side: the AMQP listener and, per connection, the protocol-header negotiation.

pub mod listener;

pub use listener::{serve, Listener};
