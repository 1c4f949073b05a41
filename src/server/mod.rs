//! Network side: the listener, one task per connection (read loop) plus its writer task, and
//! the channels a connection carries.

pub mod accept;
mod buffers;
pub mod channel;
mod coalesce;
pub mod confirms;
pub mod connection;
mod frames;
mod handshake;
pub mod listener;
pub mod outbound;
mod read_batch;
pub mod session;
pub mod tls;
pub mod transport;

pub use listener::Listener;
