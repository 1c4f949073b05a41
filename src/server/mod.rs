//! Network side: the listener, one task per connection (read loop) plus its writer task, and
//! the channels a connection carries.

pub mod channel;
pub mod confirms;
pub mod connection;
pub mod listener;
pub mod outbound;
pub mod session;

pub use listener::{serve, Listener};
