//! A policy's definition checked key by key as RabbitMQ 3.10 checks it, with its texts.
//!
//! RabbitMQ hands each group of keys to the module that registered them, in a fixed order of
//! modules, and within a module checks keys in the order its JSON decoder produced them
//! (sorted); the first complaint is the one reported. Keys nobody claimed are reported last,
//! all together. Groups here, in RabbitMQ's order: the queue master locator, the built-in keys
//! (`rabbit_policies`, plus the dead-letter strategy), then classic mirroring (`ha-*`).
//!
//! What Warren does with each key is [`super::effective`]'s business; several are accepted
//! only so that definitions written for RabbitMQ load unchanged (see [`IGNORED_KEYS`]).

use serde_json::Value;

use super::erlang::Term;
use super::PolicyKind;

/// Keys accepted (and validated) whose setting changes nothing in Warren, and why:
///
/// - `queue-mode`, `queue-version`: every Warren queue pages its backlog to disk ("lazy") and
///   has one storage format;
/// - `max-in-memory-length`, `max-in-memory-bytes`, `dead-letter-strategy`,
///   `queue-leader-locator`, `initial-cluster-size`: quorum-queue settings (RabbitMQ's classic
///   queues ignore them too);
/// - `max-age`, `stream-max-segment-size-bytes`: stream settings;
/// - `queue-master-locator`, `ha-*`: where replicas live — a single node has none to place.
///
/// `delivery-limit` applies only to queues declared `x-queue-type: quorum` (RabbitMQ 3.10's
/// classic queues do not support it).
pub const IGNORED_KEYS: &[&str] = &[
    "queue-mode",
    "queue-version",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "dead-letter-strategy",
    "queue-leader-locator",
    "initial-cluster-size",
    "max-age",
    "stream-max-segment-size-bytes",
    "queue-master-locator",
    "ha-mode",
    "ha-params",
    "ha-sync-mode",
    "ha-sync-batch-size",
    "ha-promote-on-shutdown",
    "ha-promote-on-failure",
];

/// What an operator policy may set (RabbitMQ 3.10's `operator_policy_validator` keys).
pub const OPERATOR_KEYS: &[&str] = &[
    "expires",
    "message-ttl",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "delivery-limit",
];

/// The built-in keys of user policies (`rabbit_policies`' `policy_validator` keys).
const USER_KEYS: &[&str] = &[
    "alternate-exchange",
    "dead-letter-exchange",
    "dead-letter-routing-key",
    "dead-letter-strategy",
    "message-ttl",
    "expires",
    "max-length",
    "max-length-bytes",
    "max-in-memory-length",
    "max-in-memory-bytes",
    "queue-mode",
    "queue-version",
    "overflow",
    "delivery-limit",
    "max-age",
    "stream-max-segment-size-bytes",
    "queue-leader-locator",
    "initial-cluster-size",
];

const MIRRORING_KEYS: &[&str] =
    &["ha-mode", "ha-params", "ha-sync-mode", "ha-sync-batch-size", "ha-promote-on-shutdown", "ha-promote-on-failure"];

const MASTER_LOCATOR: &str = "queue-master-locator";

/// `~p` of a value at the start of a message.
fn p(v: &Value) -> String {
    Term::from_json(v).print(0)
}

/// `~p` of a value after `prefix` on the same line.
fn p_after(prefix: &str, v: &Value) -> String {
    format!("{prefix}{}", Term::from_json(v).print(prefix.len()))
}

fn int_at_least(v: &Value, min: i64) -> bool {
    match (v.as_i64(), v.as_u64()) {
        (Some(n), _) => n >= min,
        (None, Some(_)) => true, // beyond i64: still an integer, and positive
        _ => false,
    }
}

fn one_of(v: &Value, allowed: &[&str]) -> bool {
    v.as_str().is_some_and(|s| allowed.contains(&s))
}

/// `rabbit_policies:validate_policy0/2`: one built-in key.
fn builtin(key: &str, v: &Value) -> Result<(), String> {
    let ok = match key {
        "alternate-exchange" | "dead-letter-exchange" | "dead-letter-routing-key" => v.is_string(),
        "message-ttl"
        | "max-length"
        | "max-length-bytes"
        | "max-in-memory-length"
        | "max-in-memory-bytes"
        | "delivery-limit"
        | "initial-cluster-size"
        | "stream-max-segment-size-bytes" => int_at_least(v, 0),
        "expires" => int_at_least(v, 1),
        "queue-mode" => one_of(v, &["default", "lazy"]),
        "queue-version" => matches!(v.as_i64(), Some(1 | 2)),
        "overflow" => one_of(v, &["drop-head", "reject-publish", "reject-publish-dlx"]),
        "dead-letter-strategy" => one_of(v, &["at-most-once", "at-least-once"]),
        "queue-leader-locator" => one_of(v, &["client-local", "balanced", "random", "least-leaders"]),
        "max-age" => v.as_str().is_some_and(valid_max_age),
        _ => true,
    };
    if ok {
        return Ok(());
    }
    let what = match key {
        "alternate-exchange" => "is not a valid alternate exchange name",
        "dead-letter-exchange" => "is not a valid dead letter exchange name",
        "dead-letter-routing-key" => "is not a valid dead letter routing key",
        "message-ttl" => "is not a valid message TTL",
        "expires" => "is not a valid queue expiry",
        "max-length" => "is not a valid maximum length",
        "max-length-bytes" => "is not a valid maximum length in bytes",
        // Both in-memory limits say "bytes" in RabbitMQ.
        "max-in-memory-length" | "max-in-memory-bytes" => "is not a valid maximum memory in bytes",
        "queue-mode" => "is not a valid queue-mode value",
        "queue-version" => "is not a valid queue-version value",
        "overflow" => "is not a valid overflow value",
        "delivery-limit" => "is not a valid delivery limit",
        "dead-letter-strategy" => "is not a valid dead letter strategy",
        "queue-leader-locator" => "is not a valid queue leader locator value",
        "initial-cluster-size" => "is not a valid cluster size",
        "stream-max-segment-size-bytes" => "is not a valid segment size",
        _ => "is not a valid max age",
    };
    Err(format!("{} {what}", p(v)))
}

/// `rabbit_amqqueue:check_max_age/1`: digits and one unit (`7D`, `12h`).
fn valid_max_age(s: &str) -> bool {
    let (digits, unit) = s.split_at(s.len().saturating_sub(1));
    !digits.is_empty()
        && digits.bytes().all(|b| b.is_ascii_digit())
        && matches!(unit, "Y" | "M" | "D" | "h" | "m" | "s")
}

/// `rabbit_mirror_queue_misc:validate_policy/1`: the `ha-*` keys, checked together.
fn mirroring(def: &[(&String, &Value)]) -> Result<(), String> {
    let get = |k: &str| def.iter().find(|(key, _)| *key == k).map(|(_, v)| *v);
    let Some(mode) = get("ha-mode") else {
        return Err("ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown".into());
    };
    let params = get("ha-params");
    // `none` is how RabbitMQ names a key that is not there.
    let given = |prefix: &str, v: Option<&Value>| match v {
        Some(v) => p_after(prefix, v),
        None => format!("{prefix}none"),
    };
    match mode.as_str() {
        Some("all") if params.is_some() => return Err("ha-mode=\"all\" does not take parameters".into()),
        Some("all") => {}
        Some("exactly") => {
            if !params.is_some_and(|v| v.as_i64().map_or(v.as_u64().is_some(), |n| n > 0)) {
                let prefix = "ha-mode=\"exactly\" takes an integer, ";
                return Err(format!("{} given", given(prefix, params)));
            }
        }
        Some("nodes") => match params {
            Some(Value::Array(nodes)) if nodes.is_empty() => {
                return Err("ha-mode=\"nodes\" list must be non-empty".into())
            }
            Some(Value::Array(nodes)) => {
                let bad: Vec<Value> = nodes.iter().filter(|n| !n.is_string()).cloned().collect();
                if !bad.is_empty() {
                    let prefix = "ha-mode=\"nodes\" takes a list of strings, ";
                    return Err(format!("{} was not a string", p_after(prefix, &Value::Array(bad))));
                }
            }
            other => return Err(format!("{} given", given("ha-mode=\"nodes\" takes a list, ", other))),
        },
        _ => return Err(format!("{} is not a valid ha-mode value", p(mode))),
    }
    let either = |key: &str, v: Option<&Value>, allowed: [&str; 2]| match v {
        Some(v) if !one_of(v, &allowed) => {
            Err(p_after(&format!("{key} must be \"{}\" or \"{}\", got ", allowed[0], allowed[1]), v))
        }
        _ => Ok(()),
    };
    either("ha-sync-mode", get("ha-sync-mode"), ["manual", "automatic"])?;
    if let Some(n) = get("ha-sync-batch-size") {
        if n.as_i64().is_none_or(|n| n <= 0) {
            let prefix = "ha-sync-batch-size takes an integer greater than 0, ";
            return Err(format!("{} given", p_after(prefix, n)));
        }
    }
    either("ha-promote-on-shutdown", get("ha-promote-on-shutdown"), ["always", "when-synced"])?;
    either("ha-promote-on-failure", get("ha-promote-on-failure"), ["always", "when-synced"])
}

/// Checks a definition for a policy of `kind`: `None` if RabbitMQ accepts it, else its
/// complaint (one line of the 400 reason).
pub fn check_definition(kind: PolicyKind, def: &Value) -> Option<String> {
    let Value::Object(map) = def else {
        return Some(format!("definition must be a dictionary: {}", p(def)));
    };
    if map.is_empty() {
        return Some("no policy provided".into());
    }
    let mut terms: Vec<(&String, &Value)> = map.iter().collect();
    terms.sort_by(|a, b| a.0.as_bytes().cmp(b.0.as_bytes()));
    let claimed = |keys: &[&str], terms: &[(&String, &Value)]| -> Vec<usize> {
        (0..terms.len()).filter(|&i| keys.contains(&terms[i].0.as_str())).collect()
    };
    let mut left: Vec<bool> = vec![true; terms.len()];
    let result = match kind {
        PolicyKind::Operator => {
            let mine = claimed(OPERATOR_KEYS, &terms);
            mine.iter().for_each(|&i| left[i] = false);
            mine.iter().try_for_each(|&i| builtin(terms[i].0, terms[i].1))
        }
        PolicyKind::User => (|| {
            if let Some(&i) = claimed(&[MASTER_LOCATOR], &terms).first() {
                left[i] = false;
                if !one_of(terms[i].1, &["min-masters", "client-local", "random"]) {
                    return Err(format!("{} invalid queue-master-locator value", p(terms[i].1)));
                }
            }
            let mine = claimed(USER_KEYS, &terms);
            mine.iter().for_each(|&i| left[i] = false);
            mine.iter().try_for_each(|&i| builtin(terms[i].0, terms[i].1))?;
            let ha = claimed(MIRRORING_KEYS, &terms);
            ha.iter().for_each(|&i| left[i] = false);
            if ha.is_empty() {
                return Ok(());
            }
            mirroring(&ha.iter().map(|&i| terms[i]).collect::<Vec<_>>())
        })(),
    };
    if let Err(e) = result {
        return Some(e);
    }
    let unknown: Vec<Term> = terms
        .iter()
        .zip(&left)
        .filter(|(_, &l)| l)
        .map(|((k, v), _)| Term::Tuple(vec![Term::binary(k.as_bytes()), Term::from_json(v)]))
        .collect();
    (!unknown.is_empty()).then(|| format!("{} are not recognised policy settings", Term::List(unknown).print(0)))
}

/// `apply-to`: RabbitMQ 3.10's three values, plus `classic_queues` (RabbitMQ 4's name for
/// what Warren's queues are).
pub fn check_apply_to(v: &Value) -> Result<super::ApplyTo, String> {
    use super::ApplyTo;
    match v.as_str() {
        Some("all") => Ok(ApplyTo::All),
        Some("queues") => Ok(ApplyTo::Queues),
        Some("classic_queues") => Ok(ApplyTo::ClassicQueues),
        Some("exchanges") => Ok(ApplyTo::Exchanges),
        // `~ts`: the text as it is (a non-string is printed as a term).
        Some(other) => Err(format!("apply-to '{other}' unrecognised; should be 'queues', 'exchanges' or 'all'")),
        None => Err(format!("apply-to '{}' unrecognised; should be 'queues', 'exchanges' or 'all'", p(v))),
    }
}

/// `rabbit_parameter_validation:regex/2` for `pattern`.
pub fn check_pattern(v: &Value) -> Result<regex::bytes::Regex, String> {
    let Some(pattern) = v.as_str() else {
        return Err(p_after("pattern should be a binary but was ", v));
    };
    regex::bytes::Regex::new(pattern).map_err(|e| {
        let (message, offset) = pcre_error(pattern, &e.to_string());
        let reason = Term::Tuple(vec![Term::string(&message), Term::integer(offset as i64)]);
        let prefix = "pattern should be regular expression but is invalid: ";
        format!("{prefix}{}", reason.print(prefix.len()))
    })
}

/// The message and offset PCRE (RabbitMQ's regex library) gives for the mistakes a policy
/// pattern usually has; for others, the Rust regex crate's own words and position. (PCRE also
/// accepts look-around and back-references, which Warren refuses.)
fn pcre_error(pattern: &str, rust: &str) -> (String, usize) {
    let kind = rust.lines().last().unwrap_or(rust).trim_start_matches("error: ");
    // The notated pattern: four spaces, the pattern, then a line of carets under the span.
    let carets = rust.lines().find(|l| l.starts_with("    ") && l.trim_start().starts_with('^'));
    let (start, width) = carets.map_or((0, 1), |l| {
        let at = l.find('^').unwrap_or(4);
        (pattern.char_indices().nth(at.saturating_sub(4)).map_or(pattern.len(), |(i, _)| i), l.trim().len())
    });
    let end = pattern.len();
    match kind {
        "unclosed group" => ("missing )".into(), end),
        "unopened group" => ("unmatched parentheses".into(), start),
        "unclosed character class" => ("missing terminating ] for character class".into(), end),
        "repetition operator missing expression" => ("nothing to repeat".into(), start),
        "unclosed capture group name" => ("syntax error in subpattern name (missing terminator)".into(), end),
        k if k.starts_with("incomplete escape sequence") => ("\\ at end of pattern".into(), end),
        k if k.starts_with("invalid character class range") => {
            ("range out of order in character class".into(), start + width - 1)
        }
        k if k.starts_with("invalid repetition count range") => {
            ("numbers out of order in {} quantifier".into(), start + width - 1)
        }
        other => (other.to_string(), start),
    }
}

/// `priority`: a number (an integer in Warren; RabbitMQ's API also takes fractions).
pub fn check_priority(v: &Value) -> Result<i64, String> {
    match (v.as_i64(), v.as_f64()) {
        (Some(n), _) => Ok(n),
        (None, Some(f)) if f.fract() == 0.0 && f.abs() < 9.0e15 => Ok(f as i64),
        (None, Some(_)) => Err(p_after("priority should be an integer, actually was ", v)),
        _ => Err(p_after("priority should be a number, actually was ", v)),
    }
}
