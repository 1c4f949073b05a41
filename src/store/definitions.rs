//! Durable definitions as records: what is stored for an exchange, a queue and a binding, and
//! their key/value encoding. Records reuse the AMQP wire encoding (short strings, field tables)
//! so arguments are stored exactly as clients sent them. Vhosts, users, permissions and topic
//! permissions are records too ([`super::metadata`]), in the same column family.

use bytes::{BufMut, Bytes, BytesMut};

use super::metadata::{self, PermissionRecord, TopicPermissionRecord, UserRecord, VHostRecord};
use super::policies::{self, PolicyDef};
use super::StoreError;
use crate::protocol::wire::{self, PResult};
use crate::protocol::{AmqpError, FieldTable, ShortStr};

/// Where definitions are kept: the RocksDB store today, a replicated log later. Each call
/// returns once the change is durable, so a declare-ok can promise it survives a crash. The
/// broker's definitions funnel (`broker::definitions`) is its only writer.
pub trait MetadataStore: Send + Sync {
    fn save_exchange(&self, x: &ExchangeDef) -> Result<(), StoreError>;
    fn save_queue(&self, q: &QueueDef) -> Result<(), StoreError>;
    fn save_binding(&self, b: &BindingDef) -> Result<(), StoreError>;
    fn delete_binding(&self, b: &BindingDef) -> Result<(), StoreError>;
    /// Deletes an exchange (`is_queue = false`) or queue and every binding from or to it.
    fn delete_entity(&self, vhost: &ShortStr, name: &ShortStr, is_queue: bool) -> Result<(), StoreError>;
    /// Every stored definition, for start-up.
    fn load_definitions(&self) -> Result<Definitions, StoreError>;

    // Policies and operator policies (record kinds `P` and `O`, `store/policies.rs`).
    /// Adds or replaces a policy.
    fn save_policy(&self, p: &PolicyDef) -> Result<(), StoreError>;
    fn delete_policy(&self, operator: bool, vhost: &ShortStr, name: &str) -> Result<(), StoreError>;
    /// Creates a vhost or replaces its metadata.
    fn save_vhost(&self, v: &VHostRecord) -> Result<(), StoreError>;
    /// Deletes a vhost and everything kept for it — its exchanges, queues, bindings, policies,
    /// permissions and topic permissions — in one write. (Its queues' messages go through the message writer.)
    fn delete_vhost(&self, name: &ShortStr) -> Result<(), StoreError>;
    /// Creates or replaces a user.
    fn save_user(&self, u: &UserRecord) -> Result<(), StoreError>;
    /// Deletes a user and its permissions and topic permissions in every vhost, in one write.
    fn delete_user(&self, name: &str) -> Result<(), StoreError>;
    fn save_permission(&self, p: &PermissionRecord) -> Result<(), StoreError>;
    fn delete_permission(&self, vhost: &ShortStr, user: &str) -> Result<(), StoreError>;
    /// Adds or replaces a user's topic permission on one exchange of a vhost.
    fn save_topic_permission(&self, p: &TopicPermissionRecord) -> Result<(), StoreError>;
    /// Deletes a user's topic permission on one exchange of a vhost, or (`None`) on every
    /// exchange of it, in one write.
    fn delete_topic_permissions(&self, vhost: &ShortStr, user: &str, exchange: Option<&str>) -> Result<(), StoreError>;
    /// A first start's defaults, written in one go with the mark that they were created
    /// ([`Definitions::initialised`]), so that what an administrator deletes later stays deleted.
    fn initialise(
        &self,
        vhosts: &[VHostRecord],
        users: &[UserRecord],
        permissions: &[PermissionRecord],
    ) -> Result<(), StoreError>;
}

const EXCHANGE: u8 = b'x';
const QUEUE: u8 = b'q';
const BINDING: u8 = b'b';

#[derive(Debug, Clone, PartialEq)]
pub struct ExchangeDef {
    pub vhost: ShortStr,
    pub name: ShortStr,
    pub kind: ShortStr,
    pub auto_delete: bool,
    pub internal: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct QueueDef {
    pub vhost: ShortStr,
    pub name: ShortStr,
    /// Prefix of the queue's message keys; never reused.
    pub id: u64,
    pub auto_delete: bool,
    pub arguments: FieldTable,
}

#[derive(Debug, Clone, PartialEq)]
pub struct BindingDef {
    pub vhost: ShortStr,
    pub source: ShortStr,
    /// True for a queue destination, false for an exchange (exchange-to-exchange binding).
    pub to_queue: bool,
    pub destination: ShortStr,
    pub routing_key: ShortStr,
    pub arguments: FieldTable,
}

/// Everything restored at start-up.
#[derive(Debug, Default)]
pub struct Definitions {
    pub exchanges: Vec<ExchangeDef>,
    pub queues: Vec<QueueDef>,
    pub bindings: Vec<BindingDef>,
    /// User and operator policies of every vhost.
    pub policies: Vec<PolicyDef>,
    pub vhosts: Vec<VHostRecord>,
    pub users: Vec<UserRecord>,
    pub permissions: Vec<PermissionRecord>,
    pub topic_permissions: Vec<TopicPermissionRecord>,
    /// A first start created the default vhost, user and permission. False on an empty store
    /// and on one written before Warren kept vhosts and users.
    pub initialised: bool,
}

fn key(kind: u8, parts: &[&ShortStr]) -> Vec<u8> {
    let mut k = BytesMut::new();
    k.put_u8(kind);
    for p in parts {
        wire::put_shortstr(&mut k, p);
    }
    k.to_vec()
}

/// The key of an exchange's (`is_queue` false) or a queue's record: it depends on nothing else.
pub fn entity_key(vhost: &ShortStr, name: &ShortStr, is_queue: bool) -> Vec<u8> {
    key(if is_queue { QUEUE } else { EXCHANGE }, &[vhost, name])
}

impl ExchangeDef {
    pub fn key(&self) -> Vec<u8> {
        entity_key(&self.vhost, &self.name, false)
    }

    pub fn value(&self) -> Vec<u8> {
        let mut v = BytesMut::new();
        wire::put_shortstr(&mut v, &self.kind);
        v.put_u8(self.auto_delete as u8 | (self.internal as u8) << 1);
        wire::put_table(&mut v, &self.arguments);
        v.to_vec()
    }
}

impl QueueDef {
    pub fn key(&self) -> Vec<u8> {
        entity_key(&self.vhost, &self.name, true)
    }

    pub fn value(&self) -> Vec<u8> {
        let mut v = BytesMut::new();
        v.put_u64(self.id);
        v.put_u8(self.auto_delete as u8);
        wire::put_table(&mut v, &self.arguments);
        v.to_vec()
    }
}

impl BindingDef {
    /// The whole binding is the key (bindings are identified by all their fields); the value
    /// is empty.
    pub fn key(&self) -> Vec<u8> {
        let mut k = BytesMut::from(&key(BINDING, &[&self.vhost, &self.source])[..]);
        k.put_u8(if self.to_queue { QUEUE } else { EXCHANGE });
        wire::put_shortstr(&mut k, &self.destination);
        wire::put_shortstr(&mut k, &self.routing_key);
        wire::put_table(&mut k, &self.arguments);
        k.to_vec()
    }
}

fn corrupt(what: &str) -> AmqpError {
    AmqpError::new(crate::protocol::ReplyCode::InternalError, format!("corrupt {what} record in the store"))
}

fn bits(i: &[u8]) -> PResult<'_, u8> {
    wire::octet(i)
}

/// Decodes one record of the definitions column family into `defs`.
pub fn decode_into(defs: &mut Definitions, k: &[u8], v: &[u8]) -> Result<(), AmqpError> {
    let (k, v) = (Bytes::copy_from_slice(k), Bytes::copy_from_slice(v));
    let Some((&kind, _)) = k.split_first() else { return Err(corrupt("empty")) };
    let rest = &k[1..];
    match kind {
        EXCHANGE => {
            let parse = || -> PResult<'_, ExchangeDef> {
                let (r, vhost) = wire::shortstr(&k, rest)?;
                let (_, name) = wire::shortstr(&k, r)?;
                let (i, kind) = wire::shortstr(&v, &v)?;
                let (i, flags) = bits(i)?;
                let (i, arguments) = wire::table(&v, i)?;
                let def =
                    ExchangeDef { vhost, name, kind, auto_delete: flags & 1 != 0, internal: flags & 2 != 0, arguments };
                Ok((i, def))
            };
            defs.exchanges.push(parse().map_err(|_| corrupt("exchange"))?.1);
        }
        QUEUE => {
            let parse = || -> PResult<'_, QueueDef> {
                let (r, vhost) = wire::shortstr(&k, rest)?;
                let (_, name) = wire::shortstr(&k, r)?;
                let (i, id) = wire::longlong(&v)?;
                let (i, flags) = bits(i)?;
                let (i, arguments) = wire::table(&v, i)?;
                Ok((i, QueueDef { vhost, name, id, auto_delete: flags & 1 != 0, arguments }))
            };
            defs.queues.push(parse().map_err(|_| corrupt("queue"))?.1);
        }
        BINDING => {
            let parse = || -> PResult<'_, BindingDef> {
                let (r, vhost) = wire::shortstr(&k, rest)?;
                let (r, source) = wire::shortstr(&k, r)?;
                let (r, dest_kind) = bits(r)?;
                let (r, destination) = wire::shortstr(&k, r)?;
                let (r, routing_key) = wire::shortstr(&k, r)?;
                let (r, arguments) = wire::table(&k, r)?;
                let def =
                    BindingDef { vhost, source, to_queue: dest_kind == QUEUE, destination, routing_key, arguments };
                Ok((r, def))
            };
            defs.bindings.push(parse().map_err(|_| corrupt("binding"))?.1);
        }
        policies::POLICY | policies::OPERATOR_POLICY => {
            defs.policies.push(PolicyDef::decode(&k, &v).ok_or_else(|| corrupt("policy"))?);
        }
        other => match metadata::decode_into(defs, other, rest, &v) {
            Ok(true) => {}
            Ok(false) => return Err(corrupt("unknown")),
            Err(what) => return Err(corrupt(what)),
        },
    }
    Ok(())
}

/// The key prefixes of everything kept for a vhost besides its own record: its exchanges,
/// queues, bindings, policies, permissions and topic permissions.
pub fn vhost_contents_prefixes(vhost: &ShortStr) -> [Vec<u8>; 7] {
    let [policies, operator_policies] = policies::vhost_prefixes(vhost);
    [
        key(EXCHANGE, &[vhost]),
        key(QUEUE, &[vhost]),
        key(BINDING, &[vhost]),
        metadata::vhost_prefix(metadata::PERMISSION, vhost),
        metadata::vhost_prefix(metadata::TOPIC_PERMISSION, vhost),
        policies,
        operator_policies,
    ]
}

/// The key prefix of all bindings in a vhost.
pub fn binding_prefix(vhost: &ShortStr) -> Vec<u8> {
    key(BINDING, &[vhost])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::FieldValue;

    #[test]
    fn records_round_trip() {
        let mut args = FieldTable::new();
        args.insert(ShortStr::from_static("x-max-length"), FieldValue::I32(10));
        let x = ExchangeDef {
            vhost: ShortStr::from_static("/"),
            name: ShortStr::from_static("orders"),
            kind: ShortStr::from_static("topic"),
            auto_delete: false,
            internal: true,
            arguments: args.clone(),
        };
        let q = QueueDef {
            vhost: x.vhost.clone(),
            name: ShortStr::from_static("q"),
            id: 7,
            auto_delete: true,
            arguments: args.clone(),
        };
        let b = BindingDef {
            vhost: x.vhost.clone(),
            source: x.name.clone(),
            to_queue: true,
            destination: q.name.clone(),
            routing_key: ShortStr::from_static("a.#"),
            arguments: args,
        };
        let mut defs = Definitions::default();
        decode_into(&mut defs, &x.key(), &x.value()).unwrap();
        decode_into(&mut defs, &q.key(), &q.value()).unwrap();
        decode_into(&mut defs, &b.key(), &[]).unwrap();
        assert_eq!((defs.exchanges, defs.queues, defs.bindings), (vec![x], vec![q], vec![b]));
        assert!(decode_into(&mut Definitions::default(), b"q\x05ab", b"").is_err());
    }
}
