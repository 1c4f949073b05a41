//! The `x-` arguments of `queue.declare` that change how a queue behaves, checked the way
//! RabbitMQ checks them (same order, same texts: clients and tests match on them) and turned
//! into typed settings. Unknown arguments are ignored, as RabbitMQ does.

use super::QueuedMessage;
use crate::broker::errors;
use crate::broker::message::{Message, MAX_EXPIRY_MS};
use crate::protocol::{AmqpError, BasicProperties, FieldTable, FieldValue, ShortStr};

/// What happens to a publish that would take a queue past `x-max-length(-bytes)`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Overflow {
    /// The oldest messages are dropped (dead-lettered with reason `maxlen`) to make room.
    #[default]
    DropHead,
    /// The new message is refused: the publisher gets `basic.nack` (with confirms).
    RejectPublish,
    /// As `RejectPublish`, and the refused message is dead-lettered with reason `maxlen`.
    RejectPublishDlx,
}

/// A queue's behaviour from its arguments. Defaults mean "no limit, no TTL, no DLX".
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct QueueArgs {
    /// `x-message-ttl`, ms.
    pub message_ttl: Option<u64>,
    /// `x-expires`: the queue is deleted after this many ms unused.
    pub expires: Option<u64>,
    pub dead_letter_exchange: Option<ShortStr>,
    pub dead_letter_routing_key: Option<ShortStr>,
    pub max_length: Option<u64>,
    pub max_length_bytes: Option<u64>,
    pub overflow: Overflow,
    /// `x-max-priority`: priorities 0..=max are kept apart; `None` is a plain FIFO.
    pub max_priority: Option<u8>,
    pub single_active_consumer: bool,
    /// `x-delivery-limit`: deliveries after which a message is dead-lettered instead of
    /// requeued (accepted on every queue type, unlike RabbitMQ 3.x's classic queues).
    pub delivery_limit: Option<u64>,
    /// `x-consumer-timeout`, ms.
    pub consumer_timeout: Option<u64>,
    /// Declared with `x-queue-type` = `quorum`.
    pub quorum: bool,
    /// Declared with `x-queue-type` = `stream` (see `broker::stream`).
    pub stream: bool,
    /// A stream's `x-max-age` (retention), ms.
    pub max_age_ms: Option<u64>,
    /// A stream's `x-stream-max-segment-size-bytes`.
    pub segment_size: Option<u64>,
    /// `x-message-deduplication`: drop a message whose `x-deduplication-header` matches one
    /// the queue holds.
    pub deduplicate: bool,
}

impl QueueArgs {
    pub fn has_dlx(&self) -> bool {
        self.dead_letter_exchange.is_some()
    }

    /// Whether deliveries carry `x-delivery-count` (queues with a delivery limit, and quorum
    /// queues as in RabbitMQ).
    pub fn counts_deliveries(&self) -> bool {
        self.delivery_limit.is_some() || self.quorum
    }

    /// The properties to deliver with when the queue counts deliveries: `x-delivery-count`
    /// says how often the message was delivered before (as RabbitMQ's quorum queues do: from
    /// the first redelivery on, and on `basic.get` from the first). `None`: deliver the
    /// properties as they are.
    pub fn delivery_properties(&self, message: &QueuedMessage, on_get: bool) -> Option<Box<BasicProperties>> {
        if !self.counts_deliveries() || (message.deliveries == 0 && !on_get) {
            return None;
        }
        let mut properties = message.msg.properties.clone();
        let headers = properties.headers.get_or_insert_with(Default::default);
        headers.insert(ShortStr::from_static("x-delivery-count"), FieldValue::I64(i64::from(message.deliveries)));
        Some(properties)
    }

    /// When a message taken at `msg.timestamp_ms` expires: the lower of the queue's TTL and
    /// the message's own `expiration`.
    pub fn expiry_of(&self, msg: &Message) -> Option<u64> {
        let own = msg.expiration_ms().ok().flatten();
        let ttl = match (self.message_ttl, own) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        };
        // The arrival time is whole milliseconds, rounded down: a positive TTL counts from the
        // next millisecond so that a message never expires before its TTL has fully passed.
        // (TTL 0 stays "now": delivered to a ready consumer in the same instant, or expired.)
        ttl.map(|t| msg.timestamp_ms.saturating_add(t).saturating_add(u64::from(t > 0)))
    }

    /// These arguments as a policy may change them on a live queue: what shapes the queue's
    /// storage (priority levels, deduplication, the queue type) stays as declared.
    pub fn reapplied_to(mut self, live: &QueueArgs) -> QueueArgs {
        self.max_priority = live.max_priority;
        self.deduplicate = live.deduplicate;
        self.quorum = live.quorum;
        self.stream = live.stream;
        self.segment_size = live.segment_size;
        self
    }

    /// A stream's retention under these arguments.
    pub fn retention(&self) -> crate::broker::stream::Retention {
        crate::broker::stream::Retention {
            max_bytes: self.max_length_bytes,
            max_age_ms: self.max_age_ms,
            segment_size: self.segment_size.unwrap_or(crate::broker::stream::DEFAULT_SEGMENT_SIZE),
        }
    }
}

/// RabbitMQ's `invalid arg` error; `detail` is printed as Erlang prints the reason term.
fn invalid(key: &str, queue: &str, vhost: &str, detail: impl std::fmt::Display) -> AmqpError {
    errors::invalid_queue_arg(key, queue, vhost, detail)
}

/// An integer argument (any integer type; RabbitMQ refuses floats, strings and timestamps).
fn integer(v: &FieldValue) -> Result<i64, String> {
    v.as_integer().ok_or_else(|| format!("\"expected integer, got {}\"", v.rabbit_type_name()))
}

fn non_negative(v: &FieldValue) -> Result<u64, String> {
    let n = integer(v)?;
    u64::try_from(n).map_err(|_| format!("{{value_negative,{n}}}"))
}

fn expiry(v: &FieldValue) -> Result<u64, String> {
    let n = non_negative(v)?;
    if n > MAX_EXPIRY_MS {
        return Err(format!("{{value_too_large,{n}}}"));
    }
    Ok(n)
}

fn string(v: &FieldValue) -> Result<&[u8], String> {
    match v {
        FieldValue::LongStr(s) => Ok(s.as_bytes()),
        other => Err(format!("{{unacceptable_type,{}}}", other.rabbit_type_name())),
    }
}

fn short_string(bytes: &[u8]) -> Result<ShortStr, String> {
    ShortStr::from_bytes(bytes::Bytes::copy_from_slice(bytes)).map_err(|_| "name_too_long".to_string())
}

/// The `x-priority` argument of `basic.consume`.
pub fn consumer_priority(arguments: &FieldTable, queue: &str, vhost: &str) -> Result<i64, AmqpError> {
    let Some(v) = arguments.get("x-priority") else { return Ok(0) };
    integer(v).map_err(|e| invalid("x-priority", queue, vhost, e))
}

impl QueueArgs {
    /// Checks and reads the arguments, in RabbitMQ's order (its first complaint is the one
    /// reported, whatever the order in the table).
    pub fn parse(args: &FieldTable, queue: &str, vhost: &str) -> Result<QueueArgs, AmqpError> {
        let mut out = QueueArgs::default();
        let err = |key: &str, detail: String| invalid(key, queue, vhost, detail);
        if args.get("x-queue-type").and_then(FieldValue::as_bytes) == Some(b"stream") {
            // A stream knows only its own arguments: another type's are refused before any of
            // them is looked at (RabbitMQ checks no classic rule on a stream).
            let settings = crate::broker::stream::check_typed(args, queue, vhost)?;
            if let Some(v) = args.get("x-max-length-bytes") {
                out.max_length_bytes = Some(non_negative(v).map_err(|e| err("x-max-length-bytes", e))?);
            }
            out.stream = true;
            out.max_age_ms = settings.max_age_ms;
            out.segment_size = settings.segment_size;
            return Ok(out);
        }
        if let Some(v) = args.get("x-expires") {
            let n = integer(v).map_err(|e| err("x-expires", e))?;
            match n {
                0 => return Err(err("x-expires", "{value_zero,0}".into())),
                n if n < 0 => return Err(err("x-expires", format!("{{value_negative,{n}}}"))),
                _ => out.expires = Some(expiry(v).map_err(|e| err("x-expires", e))?),
            }
        }
        if let Some(v) = args.get("x-message-ttl") {
            out.message_ttl = Some(expiry(v).map_err(|e| err("x-message-ttl", e))?);
        }
        if let Some(v) = args.get("x-dead-letter-exchange") {
            let FieldValue::LongStr(name) = v else {
                return Err(errors::invalid_queue_arg_type(
                    "x-dead-letter-exchange",
                    v.rabbit_type_name(),
                    queue,
                    vhost,
                ));
            };
            out.dead_letter_exchange =
                Some(short_string(name.as_bytes()).map_err(|e| err("x-dead-letter-exchange", e))?);
        }
        if let Some(v) = args.get("x-dead-letter-routing-key") {
            let key = string(v).map_err(|e| err("x-dead-letter-routing-key", e))?;
            if out.dead_letter_exchange.is_none() {
                return Err(err("x-dead-letter-routing-key", "routing_key_but_no_dlx_defined".into()));
            }
            out.dead_letter_routing_key = Some(short_string(key).map_err(|e| err("x-dead-letter-routing-key", e))?);
        }
        if let Some(v) = args.get("x-max-length") {
            out.max_length = Some(non_negative(v).map_err(|e| err("x-max-length", e))?);
        }
        if let Some(v) = args.get("x-max-length-bytes") {
            out.max_length_bytes = Some(non_negative(v).map_err(|e| err("x-max-length-bytes", e))?);
        }
        for key in ["x-max-in-memory-length", "x-max-in-memory-bytes"] {
            if let Some(v) = args.get(key) {
                non_negative(v).map_err(|e| err(key, e))?;
            }
        }
        if let Some(v) = args.get("x-max-priority") {
            let n = non_negative(v).map_err(|e| err("x-max-priority", e))?;
            if n > 255 {
                return Err(err("x-max-priority", format!("{{max_value_exceeded,{n}}}")));
            }
            out.max_priority = Some(n as u8);
        }
        if let Some(v) = args.get("x-overflow") {
            out.overflow = match string(v).map_err(|e| err("x-overflow", e))? {
                b"drop-head" => Overflow::DropHead,
                b"reject-publish" => Overflow::RejectPublish,
                b"reject-publish-dlx" => Overflow::RejectPublishDlx,
                _ => return Err(err("x-overflow", "invalid_overflow".into())),
            };
        }
        if let Some(v) = args.get("x-queue-mode") {
            let mode = string(v).map_err(|e| err("x-queue-mode", e))?;
            // Every Warren queue pages its backlog to disk: "lazy" is how it always behaves.
            if mode != b"default" && mode != b"lazy" {
                let mode = String::from_utf8_lossy(mode);
                return Err(err("x-queue-mode", format!("\"unsupported queue mode '{mode}'\"")));
            }
        }
        if let Some(v) = args.get("x-single-active-consumer") {
            match v {
                FieldValue::Bool(b) => out.single_active_consumer = *b,
                other => {
                    let detail = format!("{{unacceptable_type,{}}}", other.rabbit_type_name());
                    return Err(err("x-single-active-consumer", detail));
                }
            }
        }
        if let Some(v) = args.get("x-queue-type") {
            let kind = string(v).map_err(|e| err("x-queue-type", e))?;
            // Quorum queues are accepted (and behave as classic queues with their delivery
            // limit); streams are logs (`broker::stream`).
            out.quorum = kind == b"quorum";
            out.stream = kind == b"stream";
            if kind != b"classic" && kind != b"quorum" && kind != b"stream" {
                let kind = String::from_utf8_lossy(kind);
                return Err(err("x-queue-type", format!("\"unsupported queue type '{kind}'\"")));
            }
        }
        if let Some(v) = args.get("x-delivery-limit") {
            out.delivery_limit = Some(non_negative(v).map_err(|e| err("x-delivery-limit", e))?);
        }
        if let Some(v) = args.get("x-consumer-timeout") {
            let n = non_negative(v).map_err(|e| err("x-consumer-timeout", e))?;
            out.consumer_timeout = (n > 0).then_some(n);
        }
        out.deduplicate = matches!(args.get("x-message-deduplication"), Some(FieldValue::Bool(true)));
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::LongStr;

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::new();
        for (k, v) in entries {
            t.insert(ShortStr::from_static(k), v.clone());
        }
        t
    }

    fn refusal(entries: &[(&'static str, FieldValue)]) -> String {
        QueueArgs::parse(&table(entries), "q", "/").unwrap_err().message.to_string()
    }

    #[test]
    fn rabbitmq_texts_and_order() {
        let s = |v: &str| FieldValue::LongStr(LongStr::from(v));
        assert_eq!(
            refusal(&[("x-message-ttl", s("60000"))]),
            "invalid arg 'x-message-ttl' for queue 'q' in vhost '/': \"expected integer, got longstr\""
        );
        assert_eq!(
            refusal(&[("x-expires", FieldValue::I8(0))]),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
        assert_eq!(
            refusal(&[("x-max-priority", FieldValue::I16(256))]),
            "invalid arg 'x-max-priority' for queue 'q' in vhost '/': {max_value_exceeded,256}"
        );
        assert_eq!(
            refusal(&[("x-overflow", FieldValue::I8(5))]),
            "invalid arg 'x-overflow' for queue 'q' in vhost '/': {unacceptable_type,byte}"
        );
        assert_eq!(
            refusal(&[("x-dead-letter-routing-key", s("k"))]),
            "invalid arg 'x-dead-letter-routing-key' for queue 'q' in vhost '/': routing_key_but_no_dlx_defined"
        );
        assert_eq!(
            refusal(&[("x-dead-letter-exchange", FieldValue::Bool(true))]),
            "invalid type 'bool' for arg 'x-dead-letter-exchange' in queue 'q' in vhost '/'"
        );
        // x-expires is checked before x-overflow, whatever the table order.
        assert_eq!(
            refusal(&[("x-overflow", s("nope")), ("x-expires", FieldValue::I8(0))]),
            "invalid arg 'x-expires' for queue 'q' in vhost '/': {value_zero,0}"
        );
    }

    #[test]
    fn settings_are_read() {
        let s = |v: &str| FieldValue::LongStr(LongStr::from(v));
        let a = QueueArgs::parse(
            &table(&[
                ("x-message-ttl", FieldValue::U32(5000)),
                ("x-dead-letter-exchange", s("dlx")),
                ("x-dead-letter-routing-key", s("dead")),
                ("x-max-length", FieldValue::I64(10)),
                ("x-overflow", s("reject-publish-dlx")),
                ("x-max-priority", FieldValue::U8(9)),
                ("x-unknown", s("ignored")),
            ]),
            "q",
            "/",
        )
        .unwrap();
        assert_eq!(a.message_ttl, Some(5000));
        assert_eq!(a.dead_letter_exchange, Some(ShortStr::from_static("dlx")));
        assert_eq!(a.max_length, Some(10));
        assert_eq!(a.overflow, Overflow::RejectPublishDlx);
        assert_eq!(a.max_priority, Some(9));
    }
}
