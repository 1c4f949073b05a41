//! Policies and operator policies: settings applied to the queues and exchanges of a vhost
//! whose names match a pattern, as RabbitMQ applies them to classic queues and exchanges.
//!
//! A policy is a name, a pattern (a regular expression searched in the object's name, not
//! anchored), what it applies to, a priority and a definition (a JSON object of settings).
//! At most one user policy applies to an object, the matching one with the highest priority,
//! and likewise one operator policy; their definitions merge key by key ([`PolicyTable`]).
//! The merged definition then meets the object's own arguments ([`effective`]).
//!
//! Policies are read when a queue or exchange is declared or recovered and when a policy
//! changes (then every object of the vhost is looked at again, at once), never per message.
//! Changes go through the definitions funnel (`broker/definitions/policies.rs`): validated,
//! written to the store, then applied.

pub mod effective;
mod erlang;
mod table;
#[cfg(test)]
mod tests;
mod validate;

use serde_json::{Map, Value};

use crate::protocol::ShortStr;
pub use table::PolicyTable;
pub use validate::{IGNORED_KEYS, OPERATOR_KEYS};

/// User policies (`/api/policies`) or operator policies (`/api/operator-policies`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PolicyKind {
    User,
    Operator,
}

/// What a policy applies to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum ApplyTo {
    #[default]
    All,
    Queues,
    /// Queues not declared `x-queue-type: quorum` (RabbitMQ 4's `classic_queues`).
    ClassicQueues,
    Exchanges,
}

impl ApplyTo {
    pub fn as_str(self) -> &'static str {
        match self {
            ApplyTo::All => "all",
            ApplyTo::Queues => "queues",
            ApplyTo::ClassicQueues => "classic_queues",
            ApplyTo::Exchanges => "exchanges",
        }
    }

    fn queues(self, quorum: bool) -> bool {
        match self {
            ApplyTo::All | ApplyTo::Queues => true,
            ApplyTo::ClassicQueues => !quorum,
            ApplyTo::Exchanges => false,
        }
    }

    fn exchanges(self) -> bool {
        matches!(self, ApplyTo::All | ApplyTo::Exchanges)
    }
}

/// What a client asks for: the body of `PUT /api/policies/{vhost}/{name}`.
#[derive(Debug, Clone, PartialEq)]
pub struct PolicySpec {
    pub pattern: String,
    pub apply_to: ApplyTo,
    pub priority: i64,
    pub definition: Map<String, Value>,
}

/// Why a policy was refused. [`reason`](Self::reason) is the text RabbitMQ's HTTP API puts in
/// the `reason` of its reply (before HTML-escaping it, as RabbitMQ does).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum PolicyError {
    /// 400: what failed validation, one line per field, in RabbitMQ's order.
    #[error("Validation failed\n\n{}\n", .0.join("\n"))]
    Invalid(Vec<String>),
    /// 400: mandatory fields missing from the body.
    #[error("[{}]", .0.iter().map(|k| format!("{{key_missing,{k}}}")).collect::<Vec<_>>().join(","))]
    KeyMissing(Vec<&'static str>),
    /// 500: the store refused the change (nothing was applied).
    #[error("{0}")]
    Store(String),
}

impl PolicyError {
    pub fn reason(&self) -> String {
        self.to_string()
    }

    /// A 400 (the request is at fault), not a 500.
    pub fn is_bad_request(&self) -> bool {
        !matches!(self, PolicyError::Store(_))
    }
}

impl PolicySpec {
    /// Reads and checks a request body as RabbitMQ does: missing `pattern`/`definition` first,
    /// then every field's complaint (definition, apply-to, pattern, priority) at once.
    pub fn from_json(kind: PolicyKind, body: &Value) -> Result<PolicySpec, PolicyError> {
        parse(kind, body).map(|(spec, _)| spec)
    }

    /// The body this spec would be sent as.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "pattern": self.pattern,
            "apply-to": self.apply_to.as_str(),
            "priority": self.priority,
            "definition": self.definition,
        })
    }
}

fn parse(kind: PolicyKind, body: &Value) -> Result<(PolicySpec, regex::bytes::Regex), PolicyError> {
    let field = |k: &str| body.as_object().and_then(|o| o.get(k));
    let missing: Vec<&'static str> = ["pattern", "definition"].into_iter().filter(|k| field(k).is_none()).collect();
    let (Some(pattern), Some(definition)) = (field("pattern"), field("definition")) else {
        return Err(PolicyError::KeyMissing(missing));
    };
    let mut errors = Vec::new();
    errors.extend(validate::check_definition(kind, definition));
    let apply_to = field("apply-to").map_or(Ok(ApplyTo::All), validate::check_apply_to);
    let regex = validate::check_pattern(pattern);
    let priority = field("priority").map_or(Ok(0), validate::check_priority);
    errors.extend(apply_to.as_ref().err().cloned());
    errors.extend(regex.as_ref().err().cloned());
    errors.extend(priority.as_ref().err().cloned());
    match (apply_to, regex, priority, definition) {
        (Ok(apply_to), Ok(regex), Ok(priority), Value::Object(definition)) if errors.is_empty() => {
            let pattern = pattern.as_str().unwrap_or_default().to_string();
            Ok((PolicySpec { pattern, apply_to, priority, definition: definition.clone() }, regex))
        }
        _ => Err(PolicyError::Invalid(errors)),
    }
}

/// A policy as set: checked, its pattern compiled.
#[derive(Debug, Clone)]
pub struct Policy {
    pub kind: PolicyKind,
    pub vhost: ShortStr,
    pub name: String,
    pub spec: PolicySpec,
    regex: regex::bytes::Regex,
}

impl Policy {
    /// Checks `spec` as [`PolicySpec::from_json`] does.
    pub fn new(kind: PolicyKind, vhost: ShortStr, name: &str, spec: &PolicySpec) -> Result<Policy, PolicyError> {
        let (spec, regex) = parse(kind, &spec.to_json())?;
        Ok(Policy { kind, vhost, name: name.to_string(), spec, regex })
    }

    /// The policy as RabbitMQ's API lists it.
    pub fn to_json(&self) -> Value {
        serde_json::json!({
            "vhost": self.vhost.to_string_lossy(),
            "name": self.name,
            "pattern": self.spec.pattern,
            "apply-to": self.spec.apply_to.as_str(),
            "definition": self.spec.definition,
            "priority": self.spec.priority,
        })
    }

    fn matches(&self, name: &[u8]) -> bool {
        self.regex.is_match(name)
    }

    pub fn matches_queue(&self, name: &[u8], quorum: bool) -> bool {
        self.spec.apply_to.queues(quorum) && self.matches(name)
    }

    pub fn matches_exchange(&self, name: &[u8]) -> bool {
        self.spec.apply_to.exchanges() && self.matches(name)
    }
}

/// What applies to one queue or exchange, for display: the names of the policy and operator
/// policy chosen and their merged definition (RabbitMQ's `policy`, `operator_policy` and
/// `effective_policy_definition`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct PolicyView {
    pub policy: Option<String>,
    pub operator_policy: Option<String>,
    pub definition: Map<String, Value>,
}
