//! The `x-consistent-hash` exchange type, as RabbitMQ's rabbitmq_consistent_hash_exchange plugin
//! defines it: each message goes to exactly one bound destination, chosen by hashing its routing
//! key (by default), the header named by the `hash-header` argument, or the property named by
//! `hash-property` (`message_id`, `correlation_id`, `timestamp`). A binding's key is its weight:
//! the share of the hash space its destination gets. Checked against the plugin's source and a
//! RabbitMQ 3.10.8 with the plugin enabled:
//!
//! - Binding keys are integers as Erlang's `list_to_integer` reads them (`"+2"` and `"007"` are
//!   fine): otherwise 406 `The binding key must be an integer: <<"abc">>` (the key as Erlang
//!   prints a binary), below 1: 406 `The binding key must be greater than 0`. Above 10000: 406
//!   `The binding key must not exceed 10000` — the plugin's cap since RabbitMQ 4.x; 3.10.8 has
//!   none, and a huge weight there exhausts the node's memory.
//! - `hash-header` and `hash-property` together: 406 `hash-header and hash-property are mutually
//!   exclusive`; an unknown property: 406 `Unsupported property: <name>`. A value that is not a
//!   string crashes the plugin's check (541 INTERNAL_ERROR, a connection error); Warren answers
//!   406 `invalid arg 'hash-header' for exchange ...` instead. A redeclare does not compare them.
//! - A message without the header or property hashes as "absent": all such messages go to one
//!   destination, as the plugin's README warns. Header values hash with their type (`"1"` and
//!   `1` differ); only the routing key counts, not `CC`/`BCC` keys.
//! - Exchange-to-exchange bindings take a share like queues do; the chosen exchange routes on.
//!
//! Where Warren differs on purpose: the plugin puts a destination bound more than once on its
//! ring only for its first binding, and drops it from the ring when *any* of those bindings goes
//! (it stops receiving while still bound). Warren keeps such a destination on the ring once, with
//! the smallest weight among its bindings, until its last binding goes. And the plugin's ring
//! depends on binding order, which a restart does not keep (its README: after a restart "a given
//! routing key now may route to a different queue"); Warren places a destination on the ring by
//! its name, so a key goes where it went before a restart.

mod ring;

pub use ring::Ring;

use crate::broker::errors;
use crate::protocol::{AmqpError, BasicProperties, FieldTable, FieldValue};

/// The exchange type name clients declare.
pub const TYPE_NAME: &str = "x-consistent-hash";
/// The argument naming a header to hash instead of the routing key.
pub const HASH_HEADER_ARG: &str = "hash-header";
/// The argument naming a property to hash instead of the routing key.
pub const HASH_PROPERTY_ARG: &str = "hash-property";
/// The largest binding weight (the plugin's cap).
pub const MAX_WEIGHT: u32 = 10_000;

/// What a consistent-hash exchange hashes to choose a destination.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub enum HashOn {
    #[default]
    RoutingKey,
    /// The header with this name.
    Header(Box<[u8]>),
    Property(Property),
}

/// The properties `hash-property` may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Property {
    MessageId,
    CorrelationId,
    Timestamp,
}

impl HashOn {
    /// Reads `hash-header` and `hash-property`, checked in the plugin's order.
    pub fn from_arguments(args: &FieldTable) -> Result<HashOn, ArgumentError> {
        let text = |key: &'static str| match args.get(key) {
            None => Ok(None),
            Some(v) => v.as_bytes().map(Some).ok_or(ArgumentError::NotAString(key)),
        };
        match (text(HASH_HEADER_ARG)?, text(HASH_PROPERTY_ARG)?) {
            (None, None) => Ok(HashOn::RoutingKey),
            (Some(header), None) => Ok(HashOn::Header(header.into())),
            (None, Some(property)) => match property {
                b"message_id" => Ok(HashOn::Property(Property::MessageId)),
                b"correlation_id" => Ok(HashOn::Property(Property::CorrelationId)),
                b"timestamp" => Ok(HashOn::Property(Property::Timestamp)),
                other => Err(ArgumentError::UnsupportedProperty(String::from_utf8_lossy(other).into_owned())),
            },
            (Some(_), Some(_)) => Err(ArgumentError::MutuallyExclusive),
        }
    }

    /// The point on the ring a message falls on. Allocates nothing.
    pub fn hash(&self, routing_key: &[u8], properties: &BasicProperties) -> u64 {
        let mut h = StableHasher::new();
        match self {
            HashOn::RoutingKey => h.write(routing_key),
            HashOn::Header(name) => {
                let value = properties.headers.as_ref().and_then(|t| t.iter().find(|(k, _)| k.as_bytes() == &**name));
                match value {
                    Some((_, v)) => {
                        h.write_u8(1);
                        hash_value(&mut h, v);
                    }
                    None => h.write_u8(0),
                }
            }
            HashOn::Property(p) => {
                let stamp;
                let value: Option<&[u8]> = match p {
                    Property::MessageId => properties.message_id.as_ref().map(|s| s.as_bytes()),
                    Property::CorrelationId => properties.correlation_id.as_ref().map(|s| s.as_bytes()),
                    Property::Timestamp => {
                        stamp = properties.timestamp.map(u64::to_le_bytes);
                        stamp.as_ref().map(|b| &b[..])
                    }
                };
                match value {
                    Some(bytes) => {
                        h.write_u8(1);
                        h.write(bytes);
                    }
                    None => h.write_u8(0),
                }
            }
        }
        h.finish()
    }
}

/// Why `hash-header`/`hash-property` were refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ArgumentError {
    NotAString(&'static str),
    UnsupportedProperty(String),
    MutuallyExclusive,
}

impl ArgumentError {
    /// The 406 for declaring `what` (`exchange 'x' in vhost '/'`) with these arguments.
    pub fn into_amqp(self, what: &str) -> AmqpError {
        match self {
            ArgumentError::NotAString(key) => errors::invalid_arg(key, what),
            ArgumentError::UnsupportedProperty(p) => {
                errors::invalid_hash_argument(format!("Unsupported property: {p}"))
            }
            ArgumentError::MutuallyExclusive => {
                errors::invalid_hash_argument("hash-header and hash-property are mutually exclusive".into())
            }
        }
    }
}

/// A binding key's weight, or the plugin's reason for refusing it.
pub fn weight(key: &[u8]) -> Result<u32, String> {
    let (negative, digits) = match key {
        [b'-', rest @ ..] => (true, rest),
        [b'+', rest @ ..] => (false, rest),
        _ => (false, key),
    };
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return Err(format!("The binding key must be an integer: {}", erlang_binary(key)));
    }
    let first = digits.iter().position(|&d| d != b'0').unwrap_or(digits.len());
    let significant = &digits[first..];
    if negative || significant.is_empty() {
        return Err("The binding key must be greater than 0".into());
    }
    // More than five digits cannot be within the cap, and would overflow a u32 further on.
    let value = significant.iter().take(6).fold(0u32, |v, d| v * 10 + u32::from(d - b'0'));
    if significant.len() > 5 || value > MAX_WEIGHT {
        return Err(format!("The binding key must not exceed {MAX_WEIGHT}"));
    }
    Ok(value)
}

/// A binary as Erlang's `~p` prints it in the plugin's error: `<<"text">>` when every octet is
/// printable Latin-1 (with `\"`, `\\`, `\n`, ... escaped), else `<<1,2,3>>`. (Erlang also
/// breaks a long list of numbers over several lines; this does not.)
fn erlang_binary(bytes: &[u8]) -> String {
    if bytes.is_empty() {
        return "<<>>".into();
    }
    let printable = |b: u8| matches!(b, 0x20..=0x7e | 0xa0..=0xff | b'\n' | b'\r' | b'\t' | 0x0b | 0x08 | 0x0c | 0x1b);
    match std::str::from_utf8(bytes) {
        Ok(text) if bytes.iter().all(|&b| printable(b)) => {
            let mut out = String::with_capacity(text.len() + 6);
            out.push_str("<<\"");
            for c in text.chars() {
                match c {
                    '"' => out.push_str("\\\""),
                    '\\' => out.push_str("\\\\"),
                    '\n' => out.push_str("\\n"),
                    '\r' => out.push_str("\\r"),
                    '\t' => out.push_str("\\t"),
                    '\u{0b}' => out.push_str("\\v"),
                    '\u{08}' => out.push_str("\\b"),
                    '\u{0c}' => out.push_str("\\f"),
                    '\u{1b}' => out.push_str("\\e"),
                    c => out.push(c),
                }
            }
            out.push_str("\">>");
            out
        }
        _ => {
            let numbers: Vec<String> = bytes.iter().map(u8::to_string).collect();
            format!("<<{}>>", numbers.join(","))
        }
    }
}

/// A header value fed to the hash with its type, so `"1"` and `1` land apart as in the plugin.
fn hash_value(h: &mut StableHasher, v: &FieldValue) {
    h.write_u8(v.tag());
    match v {
        FieldValue::Bool(b) => h.write_u8(u8::from(*b)),
        FieldValue::I8(n) => h.write(&n.to_le_bytes()),
        FieldValue::U8(n) => h.write_u8(*n),
        FieldValue::I16(n) => h.write(&n.to_le_bytes()),
        FieldValue::U16(n) => h.write(&n.to_le_bytes()),
        FieldValue::I32(n) => h.write(&n.to_le_bytes()),
        FieldValue::U32(n) => h.write(&n.to_le_bytes()),
        FieldValue::I64(n) => h.write(&n.to_le_bytes()),
        FieldValue::F32(f) => h.write(&f.to_bits().to_le_bytes()),
        FieldValue::F64(f) => h.write(&f.to_bits().to_le_bytes()),
        FieldValue::Decimal { scale, value } => {
            h.write_u8(*scale);
            h.write(&value.to_le_bytes());
        }
        FieldValue::LongStr(s) => h.write_len_prefixed(s.as_bytes()),
        FieldValue::Bytes(b) => h.write_len_prefixed(b),
        FieldValue::Timestamp(t) => h.write(&t.to_le_bytes()),
        FieldValue::Array(items) => {
            h.write(&(items.len() as u64).to_le_bytes());
            items.iter().for_each(|item| hash_value(h, item));
        }
        FieldValue::Table(t) => {
            for (k, item) in t.iter() {
                h.write_len_prefixed(k.as_bytes());
                hash_value(h, item);
            }
        }
        FieldValue::Void => {}
    }
}

/// A hash fixed for good: keys must map to the same destination after a restart or an upgrade,
/// which the seeded hashers of std and foldhash do not promise. FNV-1a over the bytes, then
/// MurmurHash3's 64-bit finaliser so that keys differing in one octet spread over the ring.
#[derive(Debug, Clone, Copy)]
pub struct StableHasher(u64);

impl StableHasher {
    pub const fn new() -> StableHasher {
        StableHasher(0xcbf2_9ce4_8422_2325)
    }

    pub fn write(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.0 = (self.0 ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3);
        }
    }

    pub fn write_u8(&mut self, b: u8) {
        self.write(&[b]);
    }

    /// Bytes after their length, so that consecutive fields cannot run into each other.
    fn write_len_prefixed(&mut self, bytes: &[u8]) {
        self.write(&(bytes.len() as u64).to_le_bytes());
        self.write(bytes);
    }

    pub fn finish(self) -> u64 {
        let mut k = self.0;
        k ^= k >> 33;
        k = k.wrapping_mul(0xff51_afd7_ed55_8ccd);
        k ^= k >> 33;
        k = k.wrapping_mul(0xc4ce_b9fe_1a85_ec53);
        k ^ (k >> 33)
    }
}

impl Default for StableHasher {
    fn default() -> StableHasher {
        StableHasher::new()
    }
}

#[cfg(test)]
mod tests;
