//! Records of the metadata besides exchanges, queues and bindings: virtual hosts, users, their
//! permissions and topic permissions, and the mark that a first start created the defaults.
//!
//! They share the `definitions` column family, each kind under a key prefix of its own. The key
//! identifies the record (names, in the same length-prefixed encoding as the other definitions,
//! so one vhost's records are one key prefix); the value is JSON: these records are few and
//! rarely written, and JSON lets fields be added later with defaults.
//!
//! Plain strings and bytes only: what a password hash or a permission regex means is the
//! broker's and `auth`'s business.

use std::collections::BTreeMap;

use bytes::{BufMut, BytesMut};
use serde::{Deserialize, Serialize};

use super::definitions::Definitions;
use crate::protocol::{wire, ShortStr};

pub(super) const VHOST: u8 = b'v';
pub(super) const USER: u8 = b'u';
pub(super) const PERMISSION: u8 = b'p';
pub(super) const TOPIC_PERMISSION: u8 = b't';
/// The first start's defaults were created: a deleted `/` or `guest` stays deleted.
pub(super) const INITIALISED: u8 = b'i';

/// A virtual host and its metadata (RabbitMQ's `description`, `tags`, `default_queue_type`, and
/// whether tracing is on).
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct VHostRecord {
    pub name: ShortStr,
    pub description: String,
    pub tags: Vec<String>,
    pub default_queue_type: Option<String>,
    pub tracing: bool,
    /// `max-connections`, `max-queues`, as set (negative: none).
    pub limits: BTreeMap<String, i64>,
}

/// A user as RabbitMQ exports it: the password hash in base64 (empty: no password) and the
/// name of its hashing algorithm.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct UserRecord {
    pub name: String,
    pub password_hash: String,
    pub hashing_algorithm: String,
    pub tags: Vec<String>,
    /// `max-connections`, `max-channels`, as set (negative: none).
    pub limits: BTreeMap<String, i64>,
}

/// What `user` may do in `vhost`: three regular expressions over resource names.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct PermissionRecord {
    pub user: String,
    pub vhost: ShortStr,
    pub configure: String,
    pub write: String,
    pub read: String,
}

/// What `user` may publish and consume through exchange `exchange` of `vhost`: two regular
/// expressions over routing keys.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct TopicPermissionRecord {
    pub user: String,
    pub vhost: ShortStr,
    pub exchange: String,
    pub write: String,
    pub read: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct VHostValue {
    description: String,
    tags: Vec<String>,
    default_queue_type: Option<String>,
    tracing: bool,
    limits: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct UserValue {
    password_hash: String,
    hashing_algorithm: String,
    tags: Vec<String>,
    limits: BTreeMap<String, i64>,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct PermissionValue {
    configure: String,
    write: String,
    read: String,
}

#[derive(Serialize, Deserialize, Default)]
#[serde(default)]
struct TopicPermissionValue {
    write: String,
    read: String,
}

fn to_json(v: &impl Serialize) -> Vec<u8> {
    // Serializing plain strings, lists and flags cannot fail.
    serde_json::to_vec(v).unwrap_or_default()
}

/// `kind ‖ shortstr(vhost)`: the key of a vhost, and the prefix of what is kept for it under
/// `kind` (its exchanges, queues, bindings, permissions).
pub fn vhost_prefix(kind: u8, vhost: &ShortStr) -> Vec<u8> {
    let mut k = BytesMut::with_capacity(2 + vhost.len());
    k.put_u8(kind);
    wire::put_shortstr(&mut k, vhost);
    k.to_vec()
}

pub fn initialised_key() -> Vec<u8> {
    vec![INITIALISED]
}

impl VHostRecord {
    pub fn key(&self) -> Vec<u8> {
        vhost_prefix(VHOST, &self.name)
    }

    pub fn value(&self) -> Vec<u8> {
        to_json(&VHostValue {
            description: self.description.clone(),
            tags: self.tags.clone(),
            default_queue_type: self.default_queue_type.clone(),
            tracing: self.tracing,
            limits: self.limits.clone(),
        })
    }
}

/// User names are not limited to 255 octets (SASL carries longer ones), so the name is the
/// rest of the key rather than a short string.
pub fn user_key(name: &str) -> Vec<u8> {
    let mut k = Vec::with_capacity(1 + name.len());
    k.push(USER);
    k.extend_from_slice(name.as_bytes());
    k
}

impl UserRecord {
    pub fn key(&self) -> Vec<u8> {
        user_key(&self.name)
    }

    pub fn value(&self) -> Vec<u8> {
        to_json(&UserValue {
            password_hash: self.password_hash.clone(),
            hashing_algorithm: self.hashing_algorithm.clone(),
            tags: self.tags.clone(),
            limits: self.limits.clone(),
        })
    }
}

/// `p ‖ shortstr(vhost) ‖ user`: a vhost's permissions are one prefix.
pub fn permission_key(vhost: &ShortStr, user: &str) -> Vec<u8> {
    let mut k = vhost_prefix(PERMISSION, vhost);
    k.extend_from_slice(user.as_bytes());
    k
}

impl PermissionRecord {
    pub fn key(&self) -> Vec<u8> {
        permission_key(&self.vhost, &self.user)
    }

    pub fn value(&self) -> Vec<u8> {
        to_json(&PermissionValue {
            configure: self.configure.clone(),
            write: self.write.clone(),
            read: self.read.clone(),
        })
    }
}

/// The vhost and user of a permission key (after its kind octet).
pub fn split_permission_key(rest: &[u8]) -> Option<(ShortStr, String)> {
    let (&len, rest) = rest.split_first()?;
    let vhost = rest.get(..len as usize)?;
    let user = rest.get(len as usize..)?;
    let vhost = ShortStr::from_bytes(bytes::Bytes::copy_from_slice(vhost)).ok()?;
    Some((vhost, String::from_utf8(user.to_vec()).ok()?))
}

/// `t ‖ shortstr(vhost) ‖ u32 length ‖ user`: a vhost's topic permissions are one prefix, and
/// so are one user's in it (clearing them all is RabbitMQ's `DELETE`). The user is
/// length-prefixed because the exchange follows it.
pub fn topic_permissions_prefix(vhost: &ShortStr, user: &str) -> Vec<u8> {
    let mut k = BytesMut::from(&vhost_prefix(TOPIC_PERMISSION, vhost)[..]);
    wire::put_long_bytes(&mut k, user.as_bytes());
    k.to_vec()
}

/// The prefix of [`topic_permissions_prefix`] followed by the exchange name (any length:
/// RabbitMQ does not limit it).
pub fn topic_permission_key(vhost: &ShortStr, user: &str, exchange: &str) -> Vec<u8> {
    let mut k = topic_permissions_prefix(vhost, user);
    k.extend_from_slice(exchange.as_bytes());
    k
}

impl TopicPermissionRecord {
    pub fn key(&self) -> Vec<u8> {
        topic_permission_key(&self.vhost, &self.user, &self.exchange)
    }

    pub fn value(&self) -> Vec<u8> {
        to_json(&TopicPermissionValue { write: self.write.clone(), read: self.read.clone() })
    }
}

/// The vhost, user and exchange of a topic permission key (after its kind octet).
pub fn split_topic_permission_key(rest: &[u8]) -> Option<(ShortStr, String, String)> {
    let (&len, rest) = rest.split_first()?;
    let vhost = rest.get(..len as usize)?;
    let rest = rest.get(len as usize..)?;
    let user_len = u32::from_be_bytes(rest.get(..4)?.try_into().ok()?) as usize;
    let user = rest.get(4..4 + user_len)?;
    let exchange = rest.get(4 + user_len..)?;
    let vhost = ShortStr::from_bytes(bytes::Bytes::copy_from_slice(vhost)).ok()?;
    let text = |b: &[u8]| String::from_utf8(b.to_vec()).ok();
    Some((vhost, text(user)?, text(exchange)?))
}

fn vhost_of_key(rest: &[u8]) -> Option<ShortStr> {
    let (&len, name) = rest.split_first()?;
    if name.len() != len as usize {
        return None;
    }
    ShortStr::from_bytes(bytes::Bytes::copy_from_slice(name)).ok()
}

/// Decodes a metadata record (`kind` is the key's first octet, `rest` the key after it) into
/// `defs`. `Ok(false)`: not a metadata record; `Err(what)`: a corrupt one.
pub(super) fn decode_into(defs: &mut Definitions, kind: u8, rest: &[u8], v: &[u8]) -> Result<bool, &'static str> {
    match kind {
        VHOST => {
            let name = vhost_of_key(rest).ok_or("vhost")?;
            let v: VHostValue = serde_json::from_slice(v).map_err(|_| "vhost")?;
            defs.vhosts.push(VHostRecord {
                name,
                description: v.description,
                tags: v.tags,
                default_queue_type: v.default_queue_type,
                tracing: v.tracing,
                limits: v.limits,
            });
        }
        USER => {
            let name = String::from_utf8(rest.to_vec()).map_err(|_| "user")?;
            let v: UserValue = serde_json::from_slice(v).map_err(|_| "user")?;
            defs.users.push(UserRecord {
                name,
                password_hash: v.password_hash,
                hashing_algorithm: v.hashing_algorithm,
                tags: v.tags,
                limits: v.limits,
            });
        }
        PERMISSION => {
            let (vhost, user) = split_permission_key(rest).ok_or("permission")?;
            let v: PermissionValue = serde_json::from_slice(v).map_err(|_| "permission")?;
            defs.permissions.push(PermissionRecord {
                user,
                vhost,
                configure: v.configure,
                write: v.write,
                read: v.read,
            });
        }
        TOPIC_PERMISSION => {
            let (vhost, user, exchange) = split_topic_permission_key(rest).ok_or("topic permission")?;
            let v: TopicPermissionValue = serde_json::from_slice(v).map_err(|_| "topic permission")?;
            defs.topic_permissions.push(TopicPermissionRecord { user, vhost, exchange, write: v.write, read: v.read });
        }
        INITIALISED => defs.initialised = true,
        _ => return Ok(false),
    }
    Ok(true)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::store::{definitions, BindingDef, ExchangeDef, MetadataStore, QueueDef, Store};

    #[test]
    fn records_round_trip() {
        let v = VHostRecord {
            name: ShortStr::from_static("orders"),
            description: "the shop".into(),
            tags: vec!["prod".into(), "eu".into()],
            default_queue_type: Some("quorum".into()),
            tracing: true,
            limits: [("max-queues".to_string(), 10), ("max-connections".to_string(), -1)].into(),
        };
        let u = UserRecord {
            // Longer than a short string: SASL allows it.
            name: "u".repeat(300),
            password_hash: "kI3GCqW5JLMJa4iX1lo7X4D6XbYqlLgxIs30+P6tENUV2POR".into(),
            hashing_algorithm: "rabbit_password_hashing_sha256".into(),
            tags: vec!["administrator".into()],
            limits: [("max-channels".to_string(), 0)].into(),
        };
        let p = PermissionRecord {
            user: u.name.clone(),
            vhost: v.name.clone(),
            configure: "^amq\\.gen.*".into(),
            write: ".*".into(),
            read: "".into(),
        };
        let t = TopicPermissionRecord {
            user: u.name.clone(),
            vhost: v.name.clone(),
            // Longer than a short string too: RabbitMQ does not limit it.
            exchange: "x".repeat(300),
            write: "^{username}\\.".into(),
            read: "".into(),
        };
        let mut defs = Definitions::default();
        definitions::decode_into(&mut defs, &v.key(), &v.value()).unwrap();
        definitions::decode_into(&mut defs, &u.key(), &u.value()).unwrap();
        definitions::decode_into(&mut defs, &p.key(), &p.value()).unwrap();
        definitions::decode_into(&mut defs, &t.key(), &t.value()).unwrap();
        assert!(!defs.initialised);
        definitions::decode_into(&mut defs, &initialised_key(), b"").unwrap();
        assert!(defs.initialised);
        assert_eq!((defs.vhosts, defs.users, defs.permissions), (vec![v], vec![u], vec![p]));
        assert_eq!(defs.topic_permissions, [t]);
    }

    #[test]
    fn a_vhost_prefix_covers_its_permissions_and_a_users_prefix_its_topic_permissions() {
        let (a, ab) = (ShortStr::from_static("a"), ShortStr::from_static("ab"));
        let prefix = vhost_prefix(PERMISSION, &a);
        assert!(permission_key(&a, "bob").starts_with(&prefix));
        assert!(!permission_key(&ab, "bob").starts_with(&prefix), "length-prefixed: 'a' is not a prefix of 'ab'");
        assert_eq!(split_permission_key(&permission_key(&ab, "bob")[1..]), Some((ab.clone(), "bob".to_string())));
        let prefix = vhost_prefix(TOPIC_PERMISSION, &a);
        assert!(topic_permission_key(&a, "bob", "x").starts_with(&prefix));
        assert!(!topic_permission_key(&ab, "bob", "x").starts_with(&prefix));
        // One user's in a vhost are a prefix that another user's, even a longer name, is not in.
        let bobs = topic_permissions_prefix(&a, "bob");
        assert!(topic_permission_key(&a, "bob", "by").starts_with(&bobs));
        assert!(!topic_permission_key(&a, "bobby", "x").starts_with(&bobs));
        let key = topic_permission_key(&ab, "bob", "amq.topic");
        assert_eq!(split_topic_permission_key(&key[1..]), Some((ab, "bob".to_string(), "amq.topic".to_string())));
        assert_eq!(split_topic_permission_key(&key[1..key.len() - 10]), None, "cut inside the user");
    }

    #[test]
    fn corrupt_records_are_refused() {
        let mut defs = Definitions::default();
        assert!(definitions::decode_into(&mut defs, b"v\x05ab", b"{}").is_err(), "short name");
        assert!(definitions::decode_into(&mut defs, b"v\x01a", b"not json").is_err());
        assert!(definitions::decode_into(&mut defs, b"p\x09a", b"{}").is_err());
        assert!(definitions::decode_into(&mut defs, b"t\x01a\0\0\0\x09bob", b"{}").is_err(), "short user");
        // Missing fields take their defaults (records written by an older Warren).
        definitions::decode_into(&mut defs, b"v\x01a", b"{}").unwrap();
        assert_eq!(defs.vhosts[0].description, "");
    }

    fn permission(user: &str, vhost: &ShortStr) -> PermissionRecord {
        PermissionRecord { user: user.into(), vhost: vhost.clone(), configure: ".*".into(), ..Default::default() }
    }

    fn topic_permission(user: &str, vhost: &ShortStr, exchange: &str) -> TopicPermissionRecord {
        TopicPermissionRecord {
            user: user.into(),
            vhost: vhost.clone(),
            exchange: exchange.into(),
            write: "^a".into(),
            ..Default::default()
        }
    }

    #[test]
    fn deleting_a_vhost_deletes_what_it_holds_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (a, ab) = (ShortStr::from_static("a"), ShortStr::from_static("ab"));
        for v in [&a, &ab] {
            s.save_vhost(&VHostRecord { name: v.clone(), ..Default::default() }).unwrap();
            let q = QueueDef { vhost: v.clone(), name: ShortStr::from_static("q"), id: 1, ..queue_def() };
            s.save_queue(&q).unwrap();
            let x = ExchangeDef {
                vhost: v.clone(),
                name: ShortStr::from_static("x"),
                kind: ShortStr::from_static("direct"),
                auto_delete: false,
                internal: false,
                arguments: Default::default(),
            };
            s.save_exchange(&x).unwrap();
            s.save_binding(&BindingDef {
                vhost: v.clone(),
                source: x.name.clone(),
                to_queue: true,
                destination: q.name.clone(),
                routing_key: ShortStr::from_static("k"),
                arguments: Default::default(),
            })
            .unwrap();
            s.save_permission(&permission("bob", v)).unwrap();
            s.save_topic_permission(&topic_permission("bob", v, "x")).unwrap();
        }
        s.delete_vhost(&a).unwrap();
        let d = s.load_definitions().unwrap();
        assert_eq!(d.vhosts.iter().map(|v| &v.name).collect::<Vec<_>>(), [&ab]);
        assert_eq!(d.exchanges.iter().map(|x| &x.vhost).collect::<Vec<_>>(), [&ab]);
        assert_eq!(d.queues.iter().map(|q| &q.vhost).collect::<Vec<_>>(), [&ab]);
        assert_eq!(d.bindings.iter().map(|b| &b.vhost).collect::<Vec<_>>(), [&ab]);
        assert_eq!(d.permissions, [permission("bob", &ab)]);
        assert_eq!(d.topic_permissions, [topic_permission("bob", &ab, "x")]);
    }

    #[test]
    fn deleting_a_user_deletes_its_permissions_and_initialise_marks_the_store() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (root, other) = (ShortStr::from_static("/"), ShortStr::from_static("other"));
        let user = |name: &str| UserRecord { name: name.into(), ..Default::default() };
        assert!(!s.load_definitions().unwrap().initialised);
        s.initialise(
            &[VHostRecord { name: root.clone(), ..Default::default() }],
            &[user("guest")],
            &[permission("guest", &root)],
        )
        .unwrap();
        s.save_user(&user("bob")).unwrap();
        for p in [permission("bob", &root), permission("bob", &other), permission("bobby", &root)] {
            s.save_permission(&p).unwrap();
        }
        for (u, v) in [("bob", &root), ("bob", &other), ("bobby", &root)] {
            s.save_topic_permission(&topic_permission(u, v, "x")).unwrap();
        }
        s.delete_user("bob").unwrap();
        s.delete_permission(&root, "guest").unwrap();
        let d = s.load_definitions().unwrap();
        assert!(d.initialised);
        assert_eq!(d.users, [user("guest")]);
        assert_eq!(d.permissions, [permission("bobby", &root)]);
        assert_eq!(d.topic_permissions, [topic_permission("bobby", &root, "x")]);
    }

    #[test]
    fn topic_permissions_clear_one_exchange_or_all_of_a_users_in_a_vhost() {
        let dir = tempfile::tempdir().unwrap();
        let s = Store::open(dir.path()).unwrap();
        let (root, other) = (ShortStr::from_static("/"), ShortStr::from_static("other"));
        let kept = [topic_permission("bob", &other, "x"), topic_permission("bobby", &root, "x")];
        for p in kept.iter().chain(&[topic_permission("bob", &root, "x"), topic_permission("bob", &root, "y")]) {
            s.save_topic_permission(p).unwrap();
        }
        s.save_topic_permission(&TopicPermissionRecord { read: ".*".into(), ..topic_permission("bob", &root, "y") })
            .unwrap();
        let d = s.load_definitions().unwrap();
        assert_eq!(d.topic_permissions.len(), 4, "replaced, not added");
        s.delete_topic_permissions(&root, "bob", Some("x")).unwrap();
        let left = s.load_definitions().unwrap().topic_permissions;
        assert_eq!(left.iter().filter(|p| p.user == "bob" && p.vhost == root).count(), 1);
        s.delete_topic_permissions(&root, "bob", None).unwrap();
        let mut left = s.load_definitions().unwrap().topic_permissions;
        left.sort_by(|a, b| a.user.cmp(&b.user));
        assert_eq!(left, kept);
    }

    fn queue_def() -> QueueDef {
        QueueDef {
            vhost: ShortStr::from_static("/"),
            name: ShortStr::from_static("q"),
            id: 1,
            auto_delete: false,
            arguments: Default::default(),
        }
    }
}
