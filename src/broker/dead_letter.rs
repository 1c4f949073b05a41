//! Dead-lettering: a message that dies in a queue — rejected without requeue, expired, pushed
//! out by a length limit, or delivered too often — is republished to the queue's dead-letter
//! exchange with an `x-death` history, as RabbitMQ 3.13 writes it:
//!
//! - `x-death` is an array of tables, newest first, one per (queue, reason) with `count`,
//!   `reason`, `queue`, `time`, `exchange`, `routing-keys` and, if the message had one,
//!   `original-expiration`; dying again the same way moves that entry to the front and counts
//!   up, keeping its first `time`, `exchange` and `routing-keys`;
//! - `x-first-death-{reason,queue,exchange}` are set once, `x-last-death-*` every time;
//! - `expiration` is removed (the message must not expire again for the old reason); with
//!   `x-dead-letter-routing-key` the message is routed by that key alone and `CC` is removed;
//! - a message that would go round a cycle of queues with no rejection in it is dropped.

use std::cell::RefCell;
use std::collections::VecDeque;
use std::sync::Arc;

use super::message::Message;
use super::publish::Publish;
use super::queue::Queue;
use super::timer::now_ms;
use super::vhost::VHost;
use crate::protocol::{FieldTable, FieldValue, LongStr, ShortStr};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeathReason {
    Rejected,
    Expired,
    Maxlen,
    DeliveryLimit,
}

impl DeathReason {
    pub fn as_str(self) -> &'static str {
        match self {
            DeathReason::Rejected => "rejected",
            DeathReason::Expired => "expired",
            DeathReason::Maxlen => "maxlen",
            DeathReason::DeliveryLimit => "delivery_limit",
        }
    }
}

/// A message that died in a queue, on its way to the dead-letter exchange.
#[derive(Debug)]
pub struct DeadLetter {
    pub msg: Arc<Message>,
    pub reason: DeathReason,
}

fn text(s: &str) -> FieldValue {
    FieldValue::LongStr(LongStr::from(s))
}

fn key(k: &'static str) -> ShortStr {
    ShortStr::from_static(k)
}

fn entry_says(entry: &FieldValue, field: &str, value: &[u8]) -> bool {
    matches!(entry, FieldValue::Table(t) if t.get(field).and_then(FieldValue::as_bytes) == Some(value))
}

/// The routing keys a message was published with: its key, then its `CC` keys.
fn routing_keys(msg: &Message) -> Vec<FieldValue> {
    let mut keys = vec![FieldValue::LongStr(LongStr::from(msg.routing_key.as_bytes().to_vec()))];
    if let Some(FieldValue::Array(cc)) = msg.headers().and_then(|h| h.get("CC")) {
        keys.extend(cc.iter().filter(|k| k.as_bytes().is_some()).cloned());
    }
    keys
}

/// The message as it leaves `queue` for the dead-letter exchange `dlx`.
pub fn dead_lettered(
    msg: &Message,
    queue: &ShortStr,
    reason: DeathReason,
    dlx: &ShortStr,
    dlrk: Option<&ShortStr>,
) -> Message {
    let now = now_ms();
    let mut properties = msg.properties.clone();
    let original_expiration = properties.expiration.take();
    let mut headers = properties.headers.take().unwrap_or_default();
    let mut deaths = match headers.remove("x-death") {
        Some(FieldValue::Array(a)) => a,
        _ => Vec::new(), // none, or something a client put there that is not a history
    };
    let queue_bytes = queue.as_bytes();
    let existing = deaths
        .iter()
        .position(|d| entry_says(d, "queue", queue_bytes) && entry_says(d, "reason", reason.as_str().as_bytes()));
    let entry = match existing.map(|at| deaths.remove(at)) {
        Some(FieldValue::Table(mut t)) => {
            let count = t.get("count").and_then(FieldValue::as_integer).unwrap_or(0);
            t.insert(key("count"), FieldValue::I64(count.saturating_add(1)));
            t
        }
        _ => {
            let mut t = FieldTable::new();
            if let Some(e) = &original_expiration {
                t.insert(key("original-expiration"), FieldValue::LongStr(LongStr::from(e.as_bytes().to_vec())));
            }
            t.insert(key("count"), FieldValue::I64(1));
            t.insert(key("reason"), text(reason.as_str()));
            t.insert(key("queue"), FieldValue::LongStr(LongStr::from(queue_bytes.to_vec())));
            t.insert(key("time"), FieldValue::Timestamp(now / 1000));
            t.insert(key("exchange"), FieldValue::LongStr(LongStr::from(msg.exchange.as_bytes().to_vec())));
            t.insert(key("routing-keys"), FieldValue::Array(routing_keys(msg)));
            t
        }
    };
    deaths.insert(0, FieldValue::Table(entry));
    headers.insert(key("x-death"), FieldValue::Array(deaths));
    let exchange = FieldValue::LongStr(LongStr::from(msg.exchange.as_bytes().to_vec()));
    let queue_value = FieldValue::LongStr(LongStr::from(queue_bytes.to_vec()));
    if headers.get("x-first-death-reason").is_none() {
        headers.insert(key("x-first-death-reason"), text(reason.as_str()));
        headers.insert(key("x-first-death-queue"), queue_value.clone());
        headers.insert(key("x-first-death-exchange"), exchange.clone());
    }
    headers.insert(key("x-last-death-reason"), text(reason.as_str()));
    headers.insert(key("x-last-death-queue"), queue_value);
    headers.insert(key("x-last-death-exchange"), exchange);
    let routing_key = match dlrk {
        Some(k) => {
            headers.remove("CC");
            k.clone()
        }
        None => msg.routing_key.clone(),
    };
    properties.headers = Some(headers);
    Message { exchange: dlx.clone(), routing_key, properties, body: msg.body.clone(), timestamp_ms: now }
}

/// Whether delivering a dead-lettered message to `target` closes a cycle with no rejection in
/// it (RabbitMQ drops those: they would go round forever).
pub fn is_cycle(msg: &Message, reason: DeathReason, target: &[u8]) -> bool {
    if reason == DeathReason::Rejected {
        return false;
    }
    let Some(FieldValue::Array(deaths)) = msg.headers().and_then(|h| h.get("x-death")) else { return false };
    for d in deaths {
        if entry_says(d, "reason", b"rejected") {
            return false;
        }
        if entry_says(d, "queue", target) {
            return true;
        }
    }
    false
}

impl VHost {
    /// Routes messages that died in `from` through its dead-letter exchange, on the one publish
    /// path. A missing exchange drops them, as in RabbitMQ. Called without any queue lock held.
    pub fn dead_letter(&self, from: &Queue, dead: Vec<DeadLetter>) {
        let args = from.args();
        let Some(dlx) = args.dead_letter_exchange.clone() else { return };
        let Some(me) = self.self_ref.upgrade() else { return };
        let (queue, dlrk) = (from.name.clone(), args.dead_letter_routing_key.clone());
        run_flattened(Box::new(move || {
            let Ok(x) = me.exchange(&dlx) else {
                tracing::debug!(queue = %queue, exchange = %dlx, "dead-letter exchange missing; messages dropped");
                return;
            };
            for DeadLetter { msg, reason } in dead {
                let out = Arc::new(dead_lettered(&msg, &queue, reason, &dlx, dlrk.as_ref()));
                let cc: Vec<Vec<u8>> = match (&dlrk, out.headers().and_then(|h| h.get("CC"))) {
                    (None, Some(FieldValue::Array(keys))) => {
                        keys.iter().filter_map(|k| k.as_bytes().map(<[u8]>::to_vec)).collect()
                    }
                    _ => Vec::new(),
                };
                let extra: Vec<&[u8]> = cc.iter().map(Vec::as_slice).collect();
                let cycle = |q: &Queue| {
                    let cycle = is_cycle(&out, reason, q.name.as_bytes());
                    if cycle {
                        tracing::debug!(queue = %q.name, "dead-letter cycle: message dropped");
                    }
                    cycle
                };
                let p = Publish { extra_keys: &extra, refuse: Some(&cycle), ..Publish::new(out.clone()) };
                me.publish(&x, &p);
            }
        }));
    }
}

/// A routing of dead letters, deferred until the one running on this thread is done.
type Job = Box<dyn FnOnce()>;

thread_local! {
    /// Dead letters waiting to be routed on this thread. Routing one can make another queue
    /// drop its head (a length limit) and dead-letter that in turn; queuing those here instead
    /// of recursing keeps chains of any length off the stack.
    static PENDING: RefCell<Option<VecDeque<Job>>> = const { RefCell::new(None) };
}

/// Runs `job` now, or after the job this thread is already running (see [`PENDING`]).
pub fn run_flattened(job: Job) {
    let nested = PENDING.with(|p| match p.borrow_mut().as_mut() {
        Some(list) => {
            list.push_back(job);
            None
        }
        None => Some(job),
    });
    let Some(first) = nested else { return };
    struct Reset;
    impl Drop for Reset {
        fn drop(&mut self) {
            PENDING.with(|p| *p.borrow_mut() = None);
        }
    }
    PENDING.with(|p| *p.borrow_mut() = Some(VecDeque::new()));
    let _reset = Reset;
    first();
    while let Some(next) = PENDING.with(|p| p.borrow_mut().as_mut().and_then(VecDeque::pop_front)) {
        next();
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;

    fn msg() -> Message {
        let mut headers = FieldTable::new();
        headers.insert(key("CC"), FieldValue::Array(vec![text("cc1")]));
        Message {
            exchange: ShortStr::from_static("orders"),
            routing_key: ShortStr::from_static("new"),
            properties: Box::new(crate::protocol::BasicProperties {
                expiration: Some(ShortStr::from_static("5000")),
                headers: Some(headers),
                ..Default::default()
            }),
            body: Bytes::from_static(b"x"),
            timestamp_ms: 0,
        }
    }

    #[test]
    fn history_is_written_newest_first_and_counted_per_queue_and_reason() {
        let q = ShortStr::from_static("work");
        let dlx = ShortStr::from_static("dlx");
        let once = dead_lettered(&msg(), &q, DeathReason::Expired, &dlx, None);
        assert_eq!(once.properties.expiration, None);
        assert_eq!(once.exchange, dlx);
        let h = once.headers().unwrap();
        let Some(FieldValue::Array(deaths)) = h.get("x-death") else { panic!("x-death") };
        let FieldValue::Table(d) = &deaths[0] else { panic!("entry") };
        assert_eq!(d.get("count"), Some(&FieldValue::I64(1)));
        assert_eq!(d.get("original-expiration").and_then(FieldValue::as_bytes), Some(&b"5000"[..]));
        assert_eq!(d.get("routing-keys"), Some(&FieldValue::Array(vec![text("new"), text("cc1")])));
        assert_eq!(h.get("x-first-death-queue").and_then(FieldValue::as_bytes), Some(&b"work"[..]));

        let other = dead_lettered(&once, &ShortStr::from_static("wait"), DeathReason::Rejected, &dlx, Some(&q));
        assert!(other.headers().unwrap().get("CC").is_none(), "a new routing key drops CC");
        let again = dead_lettered(&other, &q, DeathReason::Expired, &dlx, None);
        let h = again.headers().unwrap();
        let Some(FieldValue::Array(deaths)) = h.get("x-death") else { panic!("x-death") };
        assert_eq!(deaths.len(), 2);
        let FieldValue::Table(d) = &deaths[0] else { panic!("entry") };
        assert_eq!(d.get("count"), Some(&FieldValue::I64(2)), "the same queue and reason counts up at the front");
        assert_eq!(h.get("x-first-death-reason").and_then(FieldValue::as_bytes), Some(&b"expired"[..]));
        assert_eq!(h.get("x-last-death-queue").and_then(FieldValue::as_bytes), Some(&b"work"[..]));
    }

    #[test]
    fn cycles_without_rejection_are_detected() {
        let (a, b, dlx) = (ShortStr::from_static("a"), ShortStr::from_static("b"), ShortStr::from_static(""));
        let from_a = dead_lettered(&msg(), &a, DeathReason::Expired, &dlx, None);
        assert!(is_cycle(&from_a, DeathReason::Expired, b"a"));
        assert!(!is_cycle(&from_a, DeathReason::Expired, b"b"));
        let rejected = dead_lettered(&msg(), &a, DeathReason::Rejected, &dlx, None);
        assert!(!is_cycle(&rejected, DeathReason::Rejected, b"a"));
        let then_b = dead_lettered(&rejected, &b, DeathReason::Expired, &dlx, None);
        assert!(!is_cycle(&then_b, DeathReason::Expired, b"a"), "a rejection in the loop breaks the cycle rule");
    }
}
