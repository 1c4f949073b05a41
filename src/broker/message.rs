//! A published message as the broker holds it: routing info, properties and a shared body.

use bytes::Bytes;

use crate::protocol::{BasicProperties, ShortStr};

/// Immutable once routed; queues and deliveries share it through `Arc`, so a fanout to ten
/// queues holds one body.
#[derive(Debug, Clone, PartialEq)]
pub struct Message {
    pub exchange: ShortStr,
    pub routing_key: ShortStr,
    /// Boxed: the struct is a few hundred octets and messages move by value until routed.
    pub properties: Box<BasicProperties>,
    pub body: Bytes,
    /// When Warren took it (ms since the UNIX epoch); TTLs count from here, also after a
    /// restart.
    pub timestamp_ms: u64,
}

impl Message {
    pub fn headers(&self) -> Option<&crate::protocol::FieldTable> {
        self.properties.headers.as_ref()
    }

    /// The per-message TTL from the `expiration` property, in ms; `Err` carries RabbitMQ's
    /// reason when the property is not a non-negative integer.
    pub fn expiration_ms(&self) -> Result<Option<u64>, String> {
        self.properties.expiration.as_ref().map(|e| parse_expiration(e.as_bytes())).transpose()
    }
}

/// RabbitMQ's ceiling for TTLs and expiries, message or queue: ten years in ms.
pub const MAX_EXPIRY_MS: u64 = 315_360_000_000;

/// Reads `expiration` as RabbitMQ does (Erlang's `string:to_integer`, then sign and range
/// checks), with its reasons for refusing: `no_integer`, `{value_negative,N}`,
/// `{leftover_string,"..."}`, `{value_too_large,N}`.
pub fn parse_expiration(text: &[u8]) -> Result<u64, String> {
    let (negative, digits_from) = match text.first() {
        Some(b'-') => (true, 1),
        Some(b'+') => (false, 1),
        _ => (false, 0),
    };
    let digits = text[digits_from..].iter().take_while(|b| b.is_ascii_digit()).count();
    if digits == 0 {
        return Err("no_integer".into());
    }
    let end = digits_from + digits;
    let magnitude: u64 =
        std::str::from_utf8(&text[digits_from..end]).ok().and_then(|d| d.parse().ok()).unwrap_or(u64::MAX);
    if end < text.len() {
        return Err(format!("{{leftover_string,\"{}\"}}", String::from_utf8_lossy(&text[end..])));
    }
    if negative && magnitude > 0 {
        return Err(format!("{{value_negative,-{magnitude}}}"));
    }
    if magnitude > MAX_EXPIRY_MS {
        return Err(format!("{{value_too_large,{magnitude}}}"));
    }
    Ok(magnitude)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn expiration_as_rabbitmq_reads_it() {
        assert_eq!(parse_expiration(b"1500"), Ok(1500));
        assert_eq!(parse_expiration(b"0"), Ok(0));
        assert_eq!(parse_expiration(b"abc"), Err("no_integer".into()));
        assert_eq!(parse_expiration(b""), Err("no_integer".into()));
        assert_eq!(parse_expiration(b"-1"), Err("{value_negative,-1}".into()));
        assert_eq!(parse_expiration(b"5s"), Err("{leftover_string,\"s\"}".into()));
        assert_eq!(parse_expiration(b"315360000000"), Ok(MAX_EXPIRY_MS));
        assert_eq!(parse_expiration(b"315360000001"), Err("{value_too_large,315360000001}".into()));
    }
}
