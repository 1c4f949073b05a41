//! The AMQP 0-9-1 wire codec: bytes to frames to typed methods, and back.
//!
//! It does no I/O and knows nothing of queues. Methods, reply codes and properties are generated
//! from `spec/amqp-0-9-1.json` by `build.rs` (see [`methods`]); frames, field tables and the
//! primitives are written by hand here. Decoding is zero-copy: strings, tables and bodies are
//! `Bytes` slices of the received buffer.

pub mod error;
pub mod field_table;
pub mod frame;
pub mod methods;
pub mod types;
pub(crate) mod wire;

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
