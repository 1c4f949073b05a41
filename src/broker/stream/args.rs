//! What a stream accepts: its declaration arguments (checked in RabbitMQ's order, with its
//! texts) and the arguments of a stream consumer (where to start, what to filter, whether the
//! broker tracks its offset).

use bytes::Bytes;

use super::errors;
use crate::broker::errors::invalid_queue_arg;
use crate::broker::timer::now_ms;
use crate::protocol::{AmqpError, FieldTable, FieldValue};

/// RabbitMQ's default segment size (`x-stream-max-segment-size-bytes`).
pub const DEFAULT_SEGMENT_SIZE: u64 = 500_000_000;
const MAX_SEGMENT_SIZE: u64 = 3_000_000_000;

/// Arguments that belong to other queue types: a stream refuses them (RabbitMQ ignores the
/// `x-` keys no queue type knows; Warren's own classic-queue extensions are refused too).
const FOREIGN_ARGS: &[&str] = &[
    "x-expires",
    "x-message-ttl",
    "x-dead-letter-exchange",
    "x-dead-letter-routing-key",
    "x-max-length",
    "x-max-in-memory-length",
    "x-max-in-memory-bytes",
    "x-max-priority",
    "x-overflow",
    "x-queue-mode",
    "x-queue-version",
    "x-single-active-consumer",
    "x-delivery-limit",
    "x-quorum-initial-group-size",
    "x-queue-master-locator",
    "x-consumer-timeout",
    "x-message-deduplication",
];

/// `x-max-age`: digits and a unit (`Y` 365 days, `M` 30 days, `D`, `h`, `m`, `s`; case
/// matters), at least 1. In milliseconds.
pub fn parse_age(text: &[u8]) -> Option<u64> {
    let (&unit, digits) = text.split_last()?;
    if digits.is_empty() || !digits.iter().all(u8::is_ascii_digit) {
        return None;
    }
    let n: u64 = std::str::from_utf8(digits).ok()?.parse().ok()?;
    let second = 1000u64;
    let unit_ms = match unit {
        b'Y' => 365 * 86_400 * second,
        b'M' => 30 * 86_400 * second,
        b'D' => 86_400 * second,
        b'h' => 3600 * second,
        b'm' => 60 * second,
        b's' => second,
        _ => return None,
    };
    (n >= 1).then(|| n.saturating_mul(unit_ms))
}

/// The stream settings of a declaration: arguments of other queue types refused first, then
/// the stream's own type-checked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct StreamSettings {
    pub max_age_ms: Option<u64>,
    pub segment_size: Option<u64>,
}

pub fn check_typed(args: &FieldTable, queue: &str, vhost: &str) -> Result<StreamSettings, AmqpError> {
    if let Some((key, _)) = args.iter().find(|(k, _)| FOREIGN_ARGS.contains(&&*k.to_string_lossy())) {
        return Err(errors::foreign_arg(&key.to_string_lossy(), queue, vhost));
    }
    let err = |key: &str, detail: String| invalid_queue_arg(key, queue, vhost, detail);
    let mut out = StreamSettings::default();
    if let Some(v) = args.get("x-max-age") {
        let FieldValue::LongStr(s) = v else {
            return Err(err("x-max-age", format!("{{unacceptable_type,{}}}", v.rabbit_type_name())));
        };
        out.max_age_ms = Some(parse_age(s.as_bytes()).ok_or_else(|| err("x-max-age", "invalid_max_age".into()))?);
    }
    let integer = |key: &str, v: &FieldValue| {
        v.as_integer().ok_or_else(|| err(key, format!("\"expected integer, got {}\"", v.rabbit_type_name())))
    };
    if let Some(v) = args.get("x-stream-max-segment-size-bytes") {
        let n = integer("x-stream-max-segment-size-bytes", v)?;
        let n =
            u64::try_from(n).map_err(|_| err("x-stream-max-segment-size-bytes", format!("{{value_negative,{n}}}")))?;
        out.segment_size = Some(n);
    }
    if let Some(v) = args.get("x-initial-cluster-size") {
        match integer("x-initial-cluster-size", v)? {
            0 => return Err(err("x-initial-cluster-size", "{value_zero,0}".into())),
            n if n < 0 => return Err(err("x-initial-cluster-size", format!("{{value_negative,{n}}}"))),
            _ => {}
        }
    }
    if let Some(v) = args.get("x-queue-leader-locator") {
        if !matches!(v.as_bytes(), Some(b"client-local" | b"balanced")) {
            return Err(err("x-queue-leader-locator", "invalid_queue_locator_arg".into()));
        }
    }
    Ok(out)
}

/// The stream's own checks of a new stream, after [`check_typed`]: the segment and filter
/// sizes, then the flags a stream cannot have.
pub fn check_declare(args: &FieldTable, flags: (bool, bool, bool), queue: &str, vhost: &str) -> Result<(), AmqpError> {
    let (durable, exclusive, auto_delete) = flags;
    if args
        .get("x-stream-max-segment-size-bytes")
        .and_then(FieldValue::as_integer)
        .is_some_and(|n| n as u64 > MAX_SEGMENT_SIZE)
    {
        return Err(errors::segment_too_large());
    }
    if let Some(v) = args.get("x-stream-filter-size-bytes") {
        match v.as_integer() {
            Some(16..=255) => {}
            Some(_) => return Err(errors::filter_size("value")),
            None => return Err(errors::filter_size("type")),
        }
    }
    if auto_delete {
        return Err(errors::invalid_property("auto-delete", queue, vhost));
    }
    if exclusive {
        return Err(errors::invalid_property("exclusive-owner", queue, vhost));
    }
    if !durable {
        return Err(errors::invalid_property("non-durable", queue, vhost));
    }
    Ok(())
}

/// Where a consumer starts reading (`x-stream-offset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StartAt {
    /// The oldest retained message.
    First,
    /// The newest message.
    Last,
    /// Only what is written from now on (RabbitMQ's default).
    Next,
    /// An exact offset (clamped to what the log holds).
    Offset(i64),
    /// The first message that arrived at or after this time (ms since the UNIX epoch).
    Time(u64),
}

/// `x-stream-filter` (+ `x-stream-match-unfiltered`): only messages whose
/// `x-stream-filter-value` is one of `values`, and those without one when `unfiltered`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Filter {
    pub values: Vec<Bytes>,
    pub unfiltered: bool,
}

impl Filter {
    pub fn admits(&self, value: Option<&[u8]>) -> bool {
        match value {
            Some(v) => self.values.iter().any(|f| f[..] == *v),
            None => self.unfiltered,
        }
    }
}

/// What a stream consumer asked for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConsumeSpec {
    /// `None`: `x-stream-offset` not given (a tracked consumer resumes; others start at next).
    pub start: Option<StartAt>,
    pub filter: Option<Filter>,
    /// `x-stream-automatic-offset-tracking`: the broker keeps the last acked offset under the
    /// consumer tag, and a consumer coming back under that tag resumes after it.
    pub track: bool,
}

/// Reads a stream consumer's arguments (RabbitMQ's names; offset tracking as LavinMQ spells it).
pub fn consume_spec(args: &FieldTable, queue: &str, vhost: &str) -> Result<ConsumeSpec, AmqpError> {
    for key in ["x-priority", "x-cancel-on-ha-failover"] {
        if args.get(key).is_some() {
            return Err(errors::foreign_arg(key, queue, vhost));
        }
    }
    let start = match args.get("x-stream-offset") {
        None => None,
        Some(v) => Some(start_at(v).ok_or_else(|| {
            let detail = format!("{{invalid_stream_offset_arg,{{{},{}}}}}", v.rabbit_type_name(), erlang_value(v));
            invalid_queue_arg("x-stream-offset", queue, vhost, detail)
        })?),
    };
    let values: Vec<Bytes> = match args.get("x-stream-filter") {
        None => Vec::new(),
        Some(FieldValue::LongStr(s)) => vec![Bytes::copy_from_slice(s.as_bytes())],
        // Non-string members are ignored, as RabbitMQ does.
        Some(FieldValue::Array(items)) => {
            items.iter().filter_map(|i| i.as_bytes().map(Bytes::copy_from_slice)).collect()
        }
        Some(other) => {
            let detail = format!("{{unacceptable_type,{}}}", other.rabbit_type_name());
            return Err(invalid_queue_arg("x-stream-filter", queue, vhost, detail));
        }
    };
    let unfiltered = flag(args.get("x-stream-match-unfiltered"));
    let filter = (!values.is_empty()).then_some(Filter { values, unfiltered });
    let track = flag(args.get("x-stream-automatic-offset-tracking"));
    Ok(ConsumeSpec { start, filter, track })
}

/// A boolean argument, also as the string `"true"` (as LavinMQ takes it).
fn flag(v: Option<&FieldValue>) -> bool {
    match v {
        Some(FieldValue::Bool(b)) => *b,
        Some(v) => v.as_bytes() == Some(b"true"),
        None => false,
    }
}

fn start_at(v: &FieldValue) -> Option<StartAt> {
    match v {
        FieldValue::LongStr(s) => match s.as_bytes() {
            b"first" => Some(StartAt::First),
            b"last" => Some(StartAt::Last),
            b"next" => Some(StartAt::Next),
            interval => parse_age(interval).map(|ago| StartAt::Time(now_ms().saturating_sub(ago))),
        },
        FieldValue::Timestamp(seconds) => Some(StartAt::Time(seconds.saturating_mul(1000))),
        FieldValue::Bool(_) => None,
        other => other.as_integer().map(StartAt::Offset),
    }
}

/// A value as Erlang prints it in RabbitMQ's reason terms.
fn erlang_value(v: &FieldValue) -> String {
    match v {
        FieldValue::LongStr(s) => format!("<<\"{}\">>", String::from_utf8_lossy(s.as_bytes())),
        FieldValue::Bool(b) => b.to_string(),
        other => other.as_integer().map(|n| n.to_string()).unwrap_or_else(|| "undefined".into()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::protocol::{LongStr, ShortStr};

    fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
        let mut t = FieldTable::new();
        for (k, v) in entries {
            t.insert(ShortStr::from_static(k), v.clone());
        }
        t
    }

    fn s(v: &str) -> FieldValue {
        FieldValue::LongStr(LongStr::from(v))
    }

    #[test]
    fn ages_as_rabbitmq_reads_them() {
        assert_eq!(parse_age(b"7D"), Some(7 * 86_400_000));
        assert_eq!(parse_age(b"12h"), Some(12 * 3_600_000));
        assert_eq!(parse_age(b"30m"), Some(1_800_000));
        assert_eq!(parse_age(b"1Y"), Some(365 * 86_400_000));
        for bad in [&b"7d"[..], b"1A", b"D", b"0s", b"", b"-1s", b"1.5h"] {
            assert_eq!(parse_age(bad), None, "{:?}", String::from_utf8_lossy(bad));
        }
    }

    #[test]
    fn declaration_checks_in_rabbitmq_order() {
        let text = |r: Result<(), AmqpError>| r.unwrap_err().reply_text().to_string();
        let args = table(&[("x-queue-type", s("stream")), ("x-max-length", FieldValue::I32(5))]);
        // An argument of another type is reported first.
        let refused = check_typed(&args, "q", "/").unwrap_err();
        assert!(refused.message.contains("invalid arg 'x-max-length'"), "{}", refused.message);
        let args = table(&[("x-queue-type", s("stream"))]);
        assert!(text(check_declare(&args, (false, true, false), "q", "/")).contains("'exclusive-owner'"));
        assert!(text(check_declare(&args, (false, false, false), "q", "/")).contains("'non-durable'"));
        assert!(check_declare(&args, (true, false, false), "q", "/").is_ok());
        let big = table(&[("x-stream-max-segment-size-bytes", FieldValue::I64(4_000_000_000))]);
        assert!(text(check_declare(&big, (true, false, false), "q", "/")).contains("Exceeded max value"));
        let err = check_typed(&table(&[("x-max-age", s("7d"))]), "q", "/").unwrap_err();
        assert_eq!(err.message, "invalid arg 'x-max-age' for queue 'q' in vhost '/': invalid_max_age");
        let err = check_typed(&table(&[("x-max-age", FieldValue::I32(7))]), "q", "/").unwrap_err();
        assert!(err.message.ends_with("{unacceptable_type,signedint}"), "{}", err.message);
    }

    fn spec(entries: &[(&'static str, FieldValue)]) -> Result<ConsumeSpec, AmqpError> {
        consume_spec(&table(entries), "q", "/")
    }

    #[test]
    fn consumer_arguments() {
        assert_eq!(spec(&[]).unwrap(), ConsumeSpec { start: None, filter: None, track: false });
        assert_eq!(spec(&[("x-stream-offset", s("first"))]).unwrap().start, Some(StartAt::First));
        assert_eq!(spec(&[("x-stream-offset", FieldValue::I16(-3))]).unwrap().start, Some(StartAt::Offset(-3)));
        assert_eq!(spec(&[("x-stream-offset", FieldValue::Timestamp(10))]).unwrap().start, Some(StartAt::Time(10_000)));
        let Some(StartAt::Time(t)) = spec(&[("x-stream-offset", s("1h"))]).unwrap().start else { panic!() };
        assert!(t <= now_ms() - 3_600_000 && t > now_ms() - 3_700_000);
        let err = spec(&[("x-stream-offset", s("foo"))]).unwrap_err();
        assert_eq!(
            err.message,
            "invalid arg 'x-stream-offset' for queue 'q' in vhost '/': {invalid_stream_offset_arg,{longstr,<<\"foo\">>}}"
        );
        assert!(spec(&[("x-priority", FieldValue::I8(1))]).unwrap_err().message.contains("rabbit_stream_queue"));
        let f = spec(&[("x-stream-filter", FieldValue::Array(vec![s("a"), FieldValue::I8(1), s("b")]))])
            .unwrap()
            .filter
            .unwrap();
        assert!(f.admits(Some(b"b")) && !f.admits(Some(b"c")) && !f.admits(None));
        let f = spec(&[("x-stream-filter", s("a")), ("x-stream-match-unfiltered", FieldValue::Bool(true))])
            .unwrap()
            .filter
            .unwrap();
        assert!(f.admits(None) && f.admits(Some(b"a")));
        assert!(spec(&[("x-stream-automatic-offset-tracking", s("true"))]).unwrap().track);
    }
}
