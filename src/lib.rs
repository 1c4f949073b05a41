//! Warren: an AMQP 0-9-1 message broker that RabbitMQ clients use unchanged.
//!
//! The flow of a message mirrors the module layout: [`protocol`] turns bytes into frames and
//! methods; [`server`] owns sockets, connections and channels; [`broker`] routes through
//! exchanges to queues (one publish path, `broker::publish`) and hands messages to consumers,
//! and changes definitions through one funnel (`broker::definitions`); [`store`] keeps bytes
//! and records in RocksDB; [`auth`] checks who may connect. Dependencies point one way:
//! server → broker → store. `docs/architecture.md` walks one message through the files.

// Some enums of the codec and the broker (methods, frames, what a channel defers) have variants
// much larger than their others. They are moved a handful of times per message, which costs less
// than boxing each variant (an allocation each); the content properties, the largest part, are
// boxed already (decoded in place on the heap).
#![allow(clippy::large_enum_variant)]

pub mod auth;
pub mod broker;
pub mod config;
/// Striped counters and fixed-bucket histograms for the per-message path (`metrics` reads them).
pub mod counters;
/// `warren ctl`: a client of the management HTTP API (RabbitMQ's), independent of the broker.
pub mod ctl;
/// The codec lives in its own crate (`crates/warren-protocol`, no tokio, no RocksDB) so the load
/// generator and the fuzz target build without the broker; re-exported here so that
/// `crate::protocol::…` and `warren::protocol::…` stay the paths the broker, tests and benches use.
pub use warren_protocol as protocol;
/// The Prometheus endpoint (`--prometheus-port`, RabbitMQ's 15692).
pub mod metrics;
pub mod mgmt;
pub mod node;
pub mod server;
pub mod store;
