//! Message deduplication, with the names of the rabbitmq-message-deduplication plugin (and
//! LavinMQ): a message's identity is its `x-deduplication-header` header.
//!
//! - A queue declared with `x-message-deduplication = true` does not take a message whose
//!   identity equals that of a message it holds (ready or unacked); the identity is released
//!   when the message leaves for good (acked, auto-acked, rejected, expired, dropped, purged).
//! - An exchange of type `x-message-deduplication` routes like a fanout but drops a message
//!   whose identity it has seen: it remembers up to `x-cache-size` identities, each for
//!   `x-cache-ttl` ms if given (a message's own `x-cache-ttl` header overrides it; a duplicate
//!   does not extend it).
//!
//! A duplicate is accepted and dropped: a publisher with confirms gets `basic.ack`, so a
//! retrying publisher can simply publish again until acknowledged ("exactly once" into the
//! queue). Neither cache survives a restart.

use std::collections::{HashMap, VecDeque};
use std::sync::Mutex;

use bytes::Bytes;

use crate::broker::errors;
use crate::protocol::{AmqpError, FieldTable, FieldValue};

pub const HEADER: &str = "x-deduplication-header";

/// A message's identity, if it has one: the header's value with its type (the string "1" and
/// the number 1 are different identities).
pub fn identity(headers: Option<&FieldTable>) -> Option<Bytes> {
    let v = headers?.get(HEADER)?;
    let text = match (v.as_integer(), v.as_bytes()) {
        (Some(n), _) => format!("i:{n}"),
        (_, Some(b)) => return Some(Bytes::from([b"s:".as_slice(), b].concat())),
        _ => format!("{}:{v:?}", v.rabbit_type_name()),
    };
    Some(Bytes::from(text))
}

/// The identities a deduplicating queue holds, by the sequence number of their message.
#[derive(Default)]
pub struct HeldIdentities {
    by_seq: HashMap<u64, Bytes>,
    held: HashMap<Bytes, u64>,
}

impl HeldIdentities {
    /// True if a message with this identity is held already (the new one is a duplicate).
    pub fn is_held(&self, id: &Bytes) -> bool {
        self.held.contains_key(id)
    }

    pub fn hold(&mut self, seq: u64, id: Bytes) {
        self.held.insert(id.clone(), seq);
        self.by_seq.insert(seq, id);
    }

    /// The message `seq` left the queue for good.
    pub fn release(&mut self, seq: u64) {
        if let Some(id) = self.by_seq.remove(&seq) {
            self.held.remove(&id);
        }
    }

    pub fn clear(&mut self) {
        self.by_seq.clear();
        self.held.clear();
    }
}

/// An exchange's memory of identities it has routed.
pub struct SeenCache {
    size: usize,
    ttl: Option<u64>,
    state: Mutex<Seen>,
}

/// Identity → (expiry, insertion number); `order` lists insertions oldest first. An identity
/// remembered again after expiring gets a new number, so its stale place in `order` is skipped.
#[derive(Default)]
struct Seen {
    by_id: HashMap<Bytes, (Option<u64>, u64)>,
    order: VecDeque<(Bytes, u64)>,
    next: u64,
}

fn positive(arguments: &FieldTable, key: &str) -> Result<Option<u64>, AmqpError> {
    let Some(v) = arguments.get(key) else { return Ok(None) };
    match v.as_integer() {
        Some(n) if n > 0 => Ok(Some(n as u64)),
        _ => Err(errors::invalid_cache_arg(key, false)),
    }
}

impl SeenCache {
    /// Reads `x-cache-size` (required) and `x-cache-ttl` with the plugin's texts for bad ones.
    pub fn from_arguments(arguments: &FieldTable) -> Result<SeenCache, AmqpError> {
        let missing = || errors::invalid_cache_arg("x-cache-size", true);
        let size = positive(arguments, "x-cache-size").map_err(|_| missing())?.ok_or_else(missing)?;
        let ttl = positive(arguments, "x-cache-ttl")?;
        Ok(SeenCache { size: size.min(usize::MAX as u64) as usize, ttl, state: Mutex::default() })
    }

    /// A cache without limits, for an exchange whose stored arguments no longer parse.
    pub fn unbounded() -> SeenCache {
        SeenCache { size: usize::MAX, ttl: None, state: Mutex::default() }
    }

    /// Remembers the message's identity; false if it was seen (and is still remembered).
    pub fn first_sighting(&self, headers: Option<&FieldTable>, now: u64) -> bool {
        let Some(id) = identity(headers) else { return true };
        let ttl = headers.and_then(|h| h.get("x-cache-ttl")).and_then(FieldValue::as_integer).map(|t| t.max(0) as u64);
        let ttl = ttl.or(self.ttl);
        let mut seen = self.state.lock().unwrap_or_else(|e| e.into_inner());
        if let Some((expires, _)) = seen.by_id.get(&id) {
            if expires.is_none_or(|at| at > now) {
                return false;
            }
        }
        let n = seen.next;
        seen.next += 1;
        seen.by_id.insert(id.clone(), (ttl.map(|t| now.saturating_add(t)), n));
        seen.order.push_back((id, n));
        // Oldest out once full.
        while seen.by_id.len() > self.size {
            let Some((old, n)) = seen.order.pop_front() else { break };
            if seen.by_id.get(&old).is_some_and(|(_, current)| *current == n) {
                seen.by_id.remove(&old);
            }
        }
        // Identities remembered again after expiring leave stale places behind: compact.
        if seen.order.len() > 2 * self.size.max(8) {
            let Seen { by_id, order, .. } = &mut *seen;
            order.retain(|(id, n)| by_id.get(id).is_some_and(|(_, current)| current == n));
        }
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LongStr, ShortStr};

    fn headers(id: &str, ttl: Option<i64>) -> FieldTable {
        let mut h = FieldTable::new();
        h.insert(ShortStr::from_static(HEADER), FieldValue::LongStr(LongStr::from(id)));
        if let Some(t) = ttl {
            h.insert(ShortStr::from_static("x-cache-ttl"), FieldValue::I64(t));
        }
        h
    }

    #[test]
    fn cache_forgets_by_size_and_ttl() {
        let mut args = FieldTable::new();
        args.insert(ShortStr::from_static("x-cache-size"), FieldValue::I8(2));
        let c = SeenCache::from_arguments(&args).unwrap();
        assert!(c.first_sighting(Some(&headers("a", None)), 0));
        assert!(!c.first_sighting(Some(&headers("a", None)), 1));
        assert!(c.first_sighting(Some(&headers("b", None)), 2));
        assert!(c.first_sighting(Some(&headers("c", None)), 3), "a is pushed out");
        assert!(c.first_sighting(Some(&headers("a", None)), 4));
        assert!(c.first_sighting(Some(&headers("t", Some(100))), 10));
        assert!(!c.first_sighting(Some(&headers("t", None)), 50));
        assert!(c.first_sighting(Some(&headers("t", None)), 200), "its TTL ran out");
        assert!(c.first_sighting(None, 0), "no identity, no duplicate");
    }

    #[test]
    fn bad_arguments_get_the_plugin_texts() {
        let e = SeenCache::from_arguments(&FieldTable::new()).err().unwrap();
        assert_eq!(e.message, "Missing or invalid argument, 'x-cache-size' must be an integer greater than 0");
        let mut args = FieldTable::new();
        args.insert(ShortStr::from_static("x-cache-size"), FieldValue::I8(5));
        args.insert(ShortStr::from_static("x-cache-ttl"), FieldValue::I8(0));
        let e = SeenCache::from_arguments(&args).err().unwrap();
        assert_eq!(e.message, "Invalid argument, 'x-cache-ttl' must be an integer greater than 0");
    }
}
