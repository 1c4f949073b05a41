//! Vhost and user limits, as RabbitMQ has them: a vhost's `max-connections` and `max-queues`,
//! a user's `max-connections` and `max-channels`. A negative value means no limit; `0` refuses
//! every new one.
//!
//! What is counted against them is counted all the time, whether a limit is set or not, so that
//! a limit set on a busy vhost applies at once to what is already open. Each count is one atomic
//! that is taken with a compare-and-swap against the limit ([`Tally::take`]): two connections
//! opening at the same moment cannot both take the last place, which RabbitMQ's
//! asynchronously-tracked counts allow.

use std::collections::BTreeMap;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::Arc;

/// Whose limits a set holds: they differ in which keys they take.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LimitOwner {
    VHost,
    User,
}

pub const MAX_CONNECTIONS: &str = "max-connections";
pub const MAX_QUEUES: &str = "max-queues";
pub const MAX_CHANNELS: &str = "max-channels";

impl LimitOwner {
    pub fn keys(self) -> &'static [&'static str] {
        match self {
            LimitOwner::VHost => &[MAX_CONNECTIONS, MAX_QUEUES],
            LimitOwner::User => &[MAX_CONNECTIONS, MAX_CHANNELS],
        }
    }
}

/// The limits set on one vhost or user, by name, as they were given (`-1` stays `-1`: RabbitMQ
/// lists it so).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LimitSet(BTreeMap<String, i64>);

/// A limit refused, in RabbitMQ's words (the management API puts them after `Validation
/// failed`).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BadLimit {
    #[error("Unrecognised terms [{{<<\"{0}\">>,{1}}}] in limits")]
    UnknownVHostLimit(String, String),
    #[error("Unrecognised terms [{{<<\"{0}\">>,{1}}}] in user-limits")]
    UnknownUserLimit(String, String),
    #[error("{0} should be a number, actually was {1}")]
    NotANumber(String, String),
}

impl LimitSet {
    pub fn new() -> LimitSet {
        LimitSet::default()
    }

    /// Checks one limit given as JSON (`max-queues`, `5`).
    pub fn parse_one(owner: LimitOwner, name: &str, value: &serde_json::Value) -> Result<i64, BadLimit> {
        if !owner.keys().contains(&name) {
            let shown = value.to_string();
            return Err(match owner {
                LimitOwner::VHost => BadLimit::UnknownVHostLimit(name.to_string(), shown),
                LimitOwner::User => BadLimit::UnknownUserLimit(name.to_string(), shown),
            });
        }
        if let Some(limit) = value.as_i64() {
            return Ok(limit);
        }
        let shown = match value {
            serde_json::Value::String(s) => format!("<<\"{s}\">>"),
            other => other.to_string(),
        };
        Err(BadLimit::NotANumber(name.to_string(), shown))
    }

    /// A whole set given as a JSON object (`{"max-connections": 10}`).
    pub fn parse(owner: LimitOwner, value: &serde_json::Value) -> Result<LimitSet, BadLimit> {
        let mut set = LimitSet::new();
        if let Some(map) = value.as_object() {
            for (name, v) in map {
                set.set(name, LimitSet::parse_one(owner, name, v)?);
            }
        }
        Ok(set)
    }

    pub fn set(&mut self, name: &str, value: i64) {
        self.0.insert(name.to_string(), value);
    }

    /// Removes one; false if it was not set.
    pub fn clear(&mut self, name: &str) -> bool {
        self.0.remove(name).is_some()
    }

    /// The limit that applies: `None` when unset or negative.
    pub fn limit(&self, name: &str) -> Option<usize> {
        self.0.get(name).and_then(|&v| usize::try_from(v).ok())
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// `self` with every limit of `other` set over it.
    pub fn merged(mut self, other: &LimitSet) -> LimitSet {
        self.0.extend(other.0.iter().map(|(k, v)| (k.clone(), *v)));
        self
    }

    pub fn iter(&self) -> impl Iterator<Item = (&str, i64)> {
        self.0.iter().map(|(k, v)| (k.as_str(), *v))
    }

    pub fn to_map(&self) -> BTreeMap<String, i64> {
        self.0.clone()
    }

    pub fn from_map(map: BTreeMap<String, i64>) -> LimitSet {
        LimitSet(map)
    }

    /// As the API and definitions show it: a JSON object.
    pub fn to_json(&self) -> serde_json::Value {
        serde_json::Value::Object(self.0.iter().map(|(k, v)| (k.clone(), serde_json::Value::from(*v))).collect())
    }
}

/// A count of open things (connections, channels) held against a limit.
#[derive(Debug, Clone, Default)]
pub struct Tally(Arc<AtomicUsize>);

impl Tally {
    /// Takes one place unless `limit` places are taken already: `Err(limit)` then. The place is
    /// given back when the returned [`Place`] drops.
    pub fn take(&self, limit: Option<usize>) -> Result<Place, usize> {
        self.0
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| match limit {
                Some(max) if n >= max => None,
                _ => Some(n + 1),
            })
            .map(|_| Place(self.0.clone()))
            .map_err(|_| limit.unwrap_or(0))
    }

    pub fn count(&self) -> usize {
        self.0.load(Ordering::Acquire)
    }
}

/// One place in a [`Tally`], held by what it counts.
#[derive(Debug)]
pub struct Place(Arc<AtomicUsize>);

impl Drop for Place {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn keys_values_and_rabbitmqs_validation_texts() {
        let v = LimitSet::parse(LimitOwner::VHost, &json!({"max-connections": 5, "max-queues": -1})).unwrap();
        assert_eq!((v.limit(MAX_CONNECTIONS), v.limit(MAX_QUEUES)), (Some(5), None), "negative: no limit");
        assert_eq!(v.to_json(), json!({"max-connections": 5, "max-queues": -1}), "shown as given");
        let e = LimitSet::parse(LimitOwner::VHost, &json!({"max-foo": 2})).unwrap_err();
        assert_eq!(e.to_string(), "Unrecognised terms [{<<\"max-foo\">>,2}] in limits");
        let e = LimitSet::parse(LimitOwner::User, &json!({"max-queues": 2})).unwrap_err();
        assert_eq!(e.to_string(), "Unrecognised terms [{<<\"max-queues\">>,2}] in user-limits");
        let e = LimitSet::parse_one(LimitOwner::VHost, MAX_QUEUES, &json!("x")).unwrap_err();
        assert_eq!(e.to_string(), "max-queues should be a number, actually was <<\"x\">>");
        let e = LimitSet::parse_one(LimitOwner::User, MAX_CHANNELS, &json!(2.5)).unwrap_err();
        assert_eq!(e.to_string(), "max-channels should be a number, actually was 2.5");
        let merged = v.merged(&LimitSet::parse(LimitOwner::VHost, &json!({"max-queues": 3})).unwrap());
        assert_eq!(merged.to_json(), json!({"max-connections": 5, "max-queues": 3}));
    }

    #[test]
    fn a_tally_holds_places_up_to_its_limit() {
        let t = Tally::default();
        let a = t.take(Some(2)).unwrap();
        let b = t.take(Some(2)).unwrap();
        assert_eq!(t.take(Some(2)).unwrap_err(), 2);
        assert_eq!(t.take(Some(0)).unwrap_err(), 0, "0 refuses everyone");
        let c = t.take(None).expect("no limit");
        assert_eq!(t.count(), 3);
        drop((a, c));
        assert_eq!(t.count(), 1);
        let _d = t.take(Some(2)).expect("a place was given back");
        drop(b);
        assert_eq!(t.count(), 1);
    }
}
