//! What a queue's or an exchange's own arguments and the policy definition that applies to it
//! make together: RabbitMQ's `args_policy_lookup` for classic queues
//! (`rabbit_amqqueue_process`) and `rabbit_policy:get_arg/3` for exchanges.
//!
//! | setting | argument and policy both set |
//! |---|---|
//! | `expires`, `message-ttl`, `max-length`, `max-length-bytes` | the lower value |
//! | `dead-letter-exchange`, `dead-letter-routing-key` | the argument |
//! | `overflow` | the argument (a quorum queue: the policy) |
//! | `delivery-limit` | quorum queues only: the lower value (classic queues ignore the policy's) |
//! | `alternate-exchange` (exchanges) | the argument |
//!
//! Either one alone applies. What shapes a queue's storage (priorities, deduplication, its
//! type) is not a policy setting and stays as declared.

use serde_json::{Map, Value};

use crate::broker::message::MAX_EXPIRY_MS;
use crate::broker::queue::{Overflow, QueueArgs};
use crate::protocol::{FieldTable, ShortStr};

fn integer(def: &Map<String, Value>, key: &str) -> Option<u64> {
    def.get(key).and_then(Value::as_u64)
}

fn name(def: &Map<String, Value>, key: &str) -> Option<ShortStr> {
    // A name longer than a short string can name no exchange: as if unset.
    def.get(key).and_then(Value::as_str).and_then(|s| ShortStr::try_from(s).ok())
}

fn lower(argument: Option<u64>, policy: Option<u64>) -> Option<u64> {
    match (argument, policy) {
        (Some(a), Some(p)) => Some(a.min(p)),
        (a, p) => a.or(p),
    }
}

fn overflow(def: &Map<String, Value>) -> Option<Overflow> {
    match def.get("overflow").and_then(Value::as_str)? {
        "drop-head" => Some(Overflow::DropHead),
        "reject-publish" => Some(Overflow::RejectPublish),
        "reject-publish-dlx" => Some(Overflow::RejectPublishDlx),
        _ => None,
    }
}

/// The behaviour of a queue declared with `arguments` (read into `declared`) under the
/// effective policy definition `def`.
pub fn queue_args(declared: &QueueArgs, arguments: &FieldTable, def: &Map<String, Value>) -> QueueArgs {
    let mut args = declared.clone();
    if def.is_empty() {
        return args;
    }
    if declared.stream {
        // A stream takes only its retention from a policy, and the policy's wins (RabbitMQ's
        // `rabbit_stream_queue`); the other keys do not apply to it.
        args.max_length_bytes = integer(def, "max-length-bytes").or(declared.max_length_bytes);
        let age =
            def.get("max-age").and_then(Value::as_str).and_then(|a| crate::broker::stream::parse_age(a.as_bytes()));
        args.max_age_ms = age.or(declared.max_age_ms);
        return args;
    }
    // Times beyond what an `x-` argument may say are as good as never.
    let time = |key| integer(def, key).map(|t| t.min(MAX_EXPIRY_MS));
    args.expires = lower(declared.expires, time("expires"));
    args.message_ttl = lower(declared.message_ttl, time("message-ttl"));
    args.max_length = lower(declared.max_length, integer(def, "max-length"));
    args.max_length_bytes = lower(declared.max_length_bytes, integer(def, "max-length-bytes"));
    args.dead_letter_exchange = declared.dead_letter_exchange.clone().or_else(|| name(def, "dead-letter-exchange"));
    args.dead_letter_routing_key =
        declared.dead_letter_routing_key.clone().or_else(|| name(def, "dead-letter-routing-key"));
    let argued = arguments.get("x-overflow").is_some();
    args.overflow = match (overflow(def), argued) {
        (Some(policy), false) => policy,
        (Some(policy), true) if declared.quorum => policy,
        _ => declared.overflow,
    };
    if declared.quorum {
        args.delivery_limit = lower(declared.delivery_limit, integer(def, "delivery-limit"));
    }
    args
}

/// The alternate exchange of an exchange declared with `arguments`: its own
/// `alternate-exchange` argument, else the policy's.
pub fn alternate_exchange(arguments: &FieldTable, def: &Map<String, Value>) -> Option<ShortStr> {
    match arguments.get("alternate-exchange") {
        Some(v) => v.as_bytes().and_then(|b| ShortStr::from_bytes(bytes::Bytes::copy_from_slice(b)).ok()),
        None => name(def, "alternate-exchange"),
    }
}
