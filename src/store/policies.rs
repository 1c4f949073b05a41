//! Policy records: user policies under the kind byte `P`, operator policies under `O`, in the
//! definitions column family. The definition is kept as the JSON text the broker hands over;
//! what it means is the broker's business.

use bytes::{BufMut, Bytes, BytesMut};

use crate::protocol::wire::{self, PResult};
use crate::protocol::ShortStr;

pub const POLICY: u8 = b'P';
pub const OPERATOR_POLICY: u8 = b'O';

#[derive(Debug, Clone, PartialEq)]
pub struct PolicyDef {
    /// An operator policy (`O`), else a user policy (`P`).
    pub operator: bool,
    pub vhost: ShortStr,
    pub name: String,
    pub pattern: String,
    pub apply_to: String,
    pub priority: i64,
    /// The definition as JSON text.
    pub definition: String,
}

fn kind(operator: bool) -> u8 {
    if operator {
        OPERATOR_POLICY
    } else {
        POLICY
    }
}

/// The key of a policy's record. Names are not short strings (RabbitMQ allows long ones).
pub fn policy_key(operator: bool, vhost: &ShortStr, name: &str) -> Vec<u8> {
    let mut k = BytesMut::new();
    k.put_u8(kind(operator));
    wire::put_shortstr(&mut k, vhost);
    wire::put_long_bytes(&mut k, name.as_bytes());
    k.to_vec()
}

/// The key prefixes of every policy of a vhost (user, then operator), for deleting a vhost.
pub fn vhost_prefixes(vhost: &ShortStr) -> [Vec<u8>; 2] {
    [false, true].map(|operator| {
        let mut k = BytesMut::new();
        k.put_u8(kind(operator));
        wire::put_shortstr(&mut k, vhost);
        k.to_vec()
    })
}

impl PolicyDef {
    pub fn key(&self) -> Vec<u8> {
        policy_key(self.operator, &self.vhost, &self.name)
    }

    pub fn value(&self) -> Vec<u8> {
        let mut v = BytesMut::new();
        wire::put_long_bytes(&mut v, self.pattern.as_bytes());
        wire::put_long_bytes(&mut v, self.apply_to.as_bytes());
        v.put_i64(self.priority);
        wire::put_long_bytes(&mut v, self.definition.as_bytes());
        v.to_vec()
    }

    /// Reads a record whose key starts with [`POLICY`] or [`OPERATOR_POLICY`]; `None` if it is
    /// not one.
    pub fn decode(k: &Bytes, v: &Bytes) -> Option<PolicyDef> {
        let operator = match *k.first()? {
            POLICY => false,
            OPERATOR_POLICY => true,
            _ => return None,
        };
        let text = |b: Bytes| String::from_utf8(b.to_vec()).ok();
        let parse_key = || -> PResult<'_, (ShortStr, Bytes)> {
            let (r, vhost) = wire::shortstr(k, &k[1..])?;
            let (r, name) = wire::long_bytes(k, r)?;
            Ok((r, (vhost, name)))
        };
        let parse_value = || -> PResult<'_, (Bytes, Bytes, u64, Bytes)> {
            let (i, pattern) = wire::long_bytes(v, v)?;
            let (i, apply_to) = wire::long_bytes(v, i)?;
            let (i, priority) = wire::longlong(i)?;
            let (i, definition) = wire::long_bytes(v, i)?;
            Ok((i, (pattern, apply_to, priority, definition)))
        };
        let (_, (vhost, name)) = parse_key().ok()?;
        let (_, (pattern, apply_to, priority, definition)) = parse_value().ok()?;
        Some(PolicyDef {
            operator,
            vhost,
            name: text(name)?,
            pattern: text(pattern)?,
            apply_to: text(apply_to)?,
            priority: priority as i64,
            definition: text(definition)?,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn records_round_trip_and_keep_their_kind() {
        let p = PolicyDef {
            operator: true,
            vhost: ShortStr::from_static("/"),
            name: "limits".into(),
            pattern: "^a".into(),
            apply_to: "queues".into(),
            priority: -3,
            definition: r#"{"max-length":5}"#.into(),
        };
        let (k, v) = (Bytes::from(p.key()), Bytes::from(p.value()));
        assert_eq!(k[0], OPERATOR_POLICY);
        assert!(k.starts_with(&vhost_prefixes(&p.vhost)[1]));
        assert_eq!(PolicyDef::decode(&k, &v), Some(p));
        assert_eq!(PolicyDef::decode(&k, &Bytes::from_static(b"\0\0")), None);
    }
}
