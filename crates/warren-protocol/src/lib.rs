//! The AMQP 0-9-1 wire codec: bytes to frames to typed methods, and back.
//!
//! It does no I/O and knows nothing of queues. Methods, reply codes and properties are generated
//! from the repository's `spec/amqp-0-9-1.json` by this crate's `build.rs` (see [`methods`]);
//! frames, field tables and the primitives are written by hand here. Decoding is zero-copy:
//! strings, tables and bodies are `Bytes` slices of the received buffer.
//!
//! A crate of its own so that what speaks AMQP without being the broker (the `warren-perf` load
//! generator, the fuzz target) builds without tokio or RocksDB, and so that nothing here can
//! reach into the broker by accident. The broker re-exports it as `warren::protocol`.

pub mod error;
pub mod field_table;
pub mod frame;
pub mod methods;
pub mod types;
/// The primitive parsers and writers; public because the broker's store encodes its records
/// (definitions, message envelopes) with the same primitives as the wire.
pub mod wire;

pub use error::{AmqpError, ReplyCode, Scope};
pub use field_table::{FieldTable, FieldValue};
pub use frame::{
    check_protocol_header, decode_frame, encode_content, encode_content_header, encode_heartbeat, encode_method,
    ContentHeader, Frame, ProtocolHeader, FRAME_OVERHEAD, PROTOCOL_HEADER,
};
pub use methods::{constants, method_name, BasicProperties, Method, Sender};
pub use types::{LongStr, ShortStr};

#[cfg(test)]
mod proptests;
#[cfg(test)]
pub(crate) mod strategies;
