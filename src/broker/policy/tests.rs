//! Policies: RabbitMQ 3.10's validation texts (taken from a running 3.10.8), matching and
//! priority, the operator merge, the precedence of arguments, and applying to a live vhost.

use std::sync::Arc;

use bytes::Bytes;
use serde_json::{json, Value};

use super::erlang::{float, Term};
use super::*;
use crate::broker::definitions::{ExchangeSpec, QueueSpec};
use crate::broker::exchange::ExchangeKind;
use crate::broker::message::Message;
use crate::broker::publish::Publish;
use crate::broker::queue::{Overflow, QueueArgs};
use crate::broker::vhost::VHost;
use crate::protocol::{FieldTable, FieldValue, LongStr};

fn reason(kind: PolicyKind, body: Value) -> String {
    PolicySpec::from_json(kind, &body).unwrap_err().reason()
}

/// The reason for a user policy on `^a` with this definition.
fn refused(definition: Value) -> String {
    reason(PolicyKind::User, json!({"pattern": "^a", "definition": definition}))
}

fn failed(line: &str) -> String {
    format!("Validation failed\n\n{line}\n")
}

#[test]
fn definition_values_are_checked_with_rabbitmq_texts() {
    let cases = [
        (json!({"message-ttl": -1}), "-1 is not a valid message TTL"),
        (json!({"message-ttl": "x"}), "<<\"x\">> is not a valid message TTL"),
        (json!({"message-ttl": 1000.0}), "1.0e3 is not a valid message TTL"),
        (json!({"message-ttl": true}), "true is not a valid message TTL"),
        (json!({"message-ttl": [1, "a"]}), "[1,<<\"a\">>] is not a valid message TTL"),
        (json!({"message-ttl": {"a": 1}}), "#{<<\"a\">> => 1} is not a valid message TTL"),
        (json!({"message-ttl": "a\"b"}), "<<\"a\\\"b\">> is not a valid message TTL"),
        (json!({"expires": 0}), "0 is not a valid queue expiry"),
        (json!({"max-length": null}), "null is not a valid maximum length"),
        (json!({"max-length-bytes": -1}), "-1 is not a valid maximum length in bytes"),
        (json!({"max-in-memory-length": -1}), "-1 is not a valid maximum memory in bytes"),
        (json!({"overflow": "x"}), "<<\"x\">> is not a valid overflow value"),
        (json!({"dead-letter-exchange": 1}), "1 is not a valid dead letter exchange name"),
        (json!({"dead-letter-routing-key": 1}), "1 is not a valid dead letter routing key"),
        (json!({"alternate-exchange": 1}), "1 is not a valid alternate exchange name"),
        (json!({"queue-mode": "x"}), "<<\"x\">> is not a valid queue-mode value"),
        (json!({"queue-version": 3}), "3 is not a valid queue-version value"),
        (json!({"delivery-limit": -1}), "-1 is not a valid delivery limit"),
        (json!({"dead-letter-strategy": "x"}), "<<\"x\">> is not a valid dead letter strategy"),
        (json!({"max-age": "1d"}), "<<\"1d\">> is not a valid max age"),
        (json!({"queue-master-locator": "balanced"}), "<<\"balanced\">> invalid queue-master-locator value"),
        (json!({"ha-mode": "bogus"}), "<<\"bogus\">> is not a valid ha-mode value"),
        (
            json!({"ha-sync-mode": "automatic"}),
            "ha-mode must be specified to specify ha-params, ha-sync-mode or ha-promote-on-shutdown",
        ),
        (json!({"ha-mode": "all", "ha-params": 1}), "ha-mode=\"all\" does not take parameters"),
        (json!({"ha-mode": "exactly"}), "ha-mode=\"exactly\" takes an integer, none given"),
        (
            json!({"ha-mode": "nodes", "ha-params": ["a", 1, 2]}),
            "ha-mode=\"nodes\" takes a list of strings, [1,2] was not a string",
        ),
        (
            json!({"bogus": 1, "aa": "é"}),
            "[{<<\"aa\">>,<<\"é\">>},{<<\"bogus\">>,1}] are not recognised policy settings",
        ),
        (
            json!({"federation-upstream": "x"}),
            "[{<<\"federation-upstream\">>,<<\"x\">>}] are not recognised policy settings",
        ),
        (json!({}), "no policy provided"),
        // Keys in sorted order, the first complaint wins; unknown keys come last.
        (json!({"message-ttl": -1, "expires": 0}), "0 is not a valid queue expiry"),
        (json!({"bogus": 1, "message-ttl": -1}), "-1 is not a valid message TTL"),
        // The master locator's module first, mirroring last.
        (
            json!({"queue-master-locator": "x", "dead-letter-strategy": "x"}),
            "<<\"x\">> invalid queue-master-locator value",
        ),
        (json!({"ha-mode": "bogus", "message-ttl": -1}), "-1 is not a valid message TTL"),
    ];
    for (definition, line) in cases {
        assert_eq!(refused(definition.clone()), failed(line), "{definition}");
    }
}

#[test]
fn operator_policies_take_only_their_keys() {
    let op = |d: Value| reason(PolicyKind::Operator, json!({"pattern": "^a", "definition": d}));
    assert_eq!(
        op(json!({"overflow": "drop-head"})),
        failed("[{<<\"overflow\">>,<<\"drop-head\">>}] are not recognised policy settings")
    );
    assert_eq!(op(json!({"message-ttl": -1})), failed("-1 is not a valid message TTL"));
    let ok = json!({"pattern": "^a", "definition": {"expires": 1, "message-ttl": 0, "max-length": 0,
        "max-length-bytes": 0, "max-in-memory-length": 0, "max-in-memory-bytes": 0, "delivery-limit": 3}});
    assert!(PolicySpec::from_json(PolicyKind::Operator, &ok).is_ok());
}

#[test]
fn everything_rabbitmq_accepts_for_classic_queues_is_accepted() {
    let definition = json!({
        "message-ttl": 0, "expires": 1, "max-length": 0, "max-length-bytes": 0, "overflow": "reject-publish-dlx",
        "dead-letter-exchange": "", "dead-letter-routing-key": "k", "alternate-exchange": "ae",
        "delivery-limit": 0, "queue-mode": "lazy", "queue-version": 2, "max-in-memory-length": 1,
        "max-in-memory-bytes": 1, "dead-letter-strategy": "at-least-once", "queue-leader-locator": "balanced",
        "initial-cluster-size": 3, "max-age": "7D", "stream-max-segment-size-bytes": 5,
        "queue-master-locator": "min-masters", "ha-mode": "exactly", "ha-params": 2, "ha-sync-mode": "automatic",
        "ha-sync-batch-size": 5, "ha-promote-on-shutdown": "always", "ha-promote-on-failure": "when-synced",
    });
    let spec = PolicySpec::from_json(PolicyKind::User, &json!({"pattern": "^a", "definition": definition})).unwrap();
    assert_eq!((spec.apply_to, spec.priority), (ApplyTo::All, 0));
}

#[test]
fn body_errors_are_listed_together_in_rabbitmq_order() {
    let user = |b: Value| reason(PolicyKind::User, b);
    assert_eq!(user(json!({})), "[{key_missing,pattern},{key_missing,definition}]");
    assert_eq!(user(json!({"definition": {}})), "[{key_missing,pattern}]");
    assert_eq!(
        user(json!({"pattern": 1, "definition": {}, "priority": "x"})),
        failed("no policy provided\npattern should be a binary but was 1\npriority should be a number, actually was <<\"x\">>")
    );
    assert_eq!(
        user(json!({"pattern": "(", "definition": {"bogus": 1}, "apply-to": "x"})),
        failed(
            "[{<<\"bogus\">>,1}] are not recognised policy settings\n\
             apply-to 'x' unrecognised; should be 'queues', 'exchanges' or 'all'\n\
             pattern should be regular expression but is invalid: {\"missing )\",1}"
        )
    );
    assert_eq!(
        user(json!({"pattern": "^a", "definition": {"message-ttl": 1}, "apply-to": null})),
        failed("apply-to 'null' unrecognised; should be 'queues', 'exchanges' or 'all'")
    );
    let spec = PolicySpec::from_json(
        PolicyKind::User,
        &json!({"pattern": "^a", "definition": {"message-ttl": 1}, "apply-to": "classic_queues", "priority": -3}),
    )
    .unwrap();
    assert_eq!((spec.apply_to, spec.priority), (ApplyTo::ClassicQueues, -3));
}

#[test]
fn regex_errors_read_as_pcre_reports_them() {
    let pattern = |p: &str| reason(PolicyKind::User, json!({"pattern": p, "definition": {"message-ttl": 1}}));
    let prefix = "pattern should be regular expression but is invalid: ";
    assert_eq!(pattern("((a)"), failed(&format!("{prefix}{{\"missing )\",4}}")));
    assert_eq!(pattern("*"), failed(&format!("{prefix}{{\"nothing to repeat\",0}}")));
    // Too long for the line: broken as Erlang breaks it, the offset under the message.
    let indent = " ".repeat(54);
    assert_eq!(pattern("a)b"), failed(&format!("{prefix}{{\"unmatched parentheses\",\n{indent}1}}")));
    assert_eq!(pattern("["), failed(&format!("{prefix}{{\"missing terminating ] for character class\",\n{indent}1}}")));
    assert_eq!(pattern("[z-a]"), failed(&format!("{prefix}{{\"range out of order in character class\",\n{indent}3}}")));
    assert_eq!(
        pattern("a{2,1}"),
        failed(&format!("{prefix}{{\"numbers out of order in {{}} quantifier\",\n{indent}5}}"))
    );
}

#[test]
fn long_terms_are_broken_over_lines_as_erlang_does() {
    let long = "a".repeat(30);
    let fits = json!({long.clone(): 1, "b": 2, "c": 3, "d": 4});
    assert_eq!(
        refused(fits),
        failed(&format!(
            "[{{<<\"{long}\">>,1}},{{<<\"b\">>,2}},{{<<\"c\">>,3}},{{<<\"d\">>,4}}] are not recognised policy settings"
        ))
    );
    let longer = "a".repeat(31);
    assert_eq!(
        refused(json!({longer.clone(): 1, "b": 2, "c": 3, "d": 4})),
        failed(&format!(
            "[{{<<\"{longer}\">>,1}},\n {{<<\"b\">>,2}},\n {{<<\"c\">>,3}},\n {{<<\"d\">>,4}}] are not recognised policy settings"
        ))
    );
    let numbers: Vec<u32> = (1..=33).collect();
    assert_eq!(
        refused(json!({"message-ttl": numbers})),
        failed(
            "[1,2,3,4,5,6,7,8,9,10,11,12,13,14,15,16,17,18,19,20,21,22,23,24,25,26,27,28,\n 29,30,31,32,33] \
             is not a valid message TTL"
        )
    );
    let nested = json!({"a".repeat(33): 1, "b": [1, 2], "c": {"d": "e".repeat(54)}});
    assert_eq!(
        Term::from_json(&nested).print(0),
        format!(
            "#{{<<\"{}\">> => 1,\n  <<\"b\">> => [1,2],\n  <<\"c\">> =>\n      #{{<<\"d\">> =>\n            <<\"{}\">>}}}}",
            "a".repeat(33),
            "e".repeat(54)
        )
    );
}

#[test]
fn floats_and_odd_strings_print_as_erlang_prints_them() {
    let cases =
        [(1000.0, "1.0e3"), (100.0, "100.0"), (10.5, "10.5"), (0.1, "0.1"), (0.0001, "0.0001"), (0.00001, "1.0e-5")];
    for (f, text) in cases {
        assert_eq!(float(f), text);
    }
    assert_eq!(float(123456789.0), "123456789.0");
    assert_eq!(float(1.23e5), "1.23e5");
    assert_eq!(float(1e21), "1.0e21");
    assert_eq!(float(-0.5), "-0.5");
    assert_eq!(Term::from_json(&json!("é€")).print(0), "<<195,169,226,130,172>>", "not Latin-1 printable");
    assert_eq!(Term::from_json(&json!([104, 105])).print(0), "\"hi\"", "character codes are a string");
    assert_eq!(Term::from_json(&json!("\n")).print(0), "<<\"\\n\">>");
}

fn policy(kind: PolicyKind, name: &str, body: Value) -> Arc<Policy> {
    let spec = PolicySpec::from_json(kind, &body).unwrap();
    Arc::new(Policy::new(kind, ShortStr::from_static("/"), name, &spec).unwrap())
}

#[test]
fn the_highest_priority_match_applies_and_ties_go_to_the_first_name() {
    let mut t = PolicyTable::default();
    t.insert(policy(PolicyKind::User, "b-low", json!({"pattern": "rd", "definition": {"max-length": 1}})));
    t.insert(policy(
        PolicyKind::User,
        "z-high",
        json!({"pattern": "^o", "definition": {"max-length": 2}, "priority": 5}),
    ));
    t.insert(policy(
        PolicyKind::User,
        "a-tie",
        json!({"pattern": "^o", "definition": {"max-length": 3}, "priority": 5}),
    ));
    t.insert(policy(
        PolicyKind::User,
        "x-only",
        json!({"pattern": ".", "definition": {"alternate-exchange": "ae"}, "apply-to": "exchanges", "priority": 9}),
    ));
    t.insert(policy(
        PolicyKind::User,
        "classic",
        json!({"pattern": "^quo", "definition": {"max-length": 4}, "apply-to": "classic_queues"}),
    ));
    let v = t.for_queue(b"orders", false);
    assert_eq!(v.policy.as_deref(), Some("a-tie"), "priority 5 beats 0; of two 5s the first name");
    assert_eq!(v.definition, json!({"max-length": 3}).as_object().unwrap().clone());
    assert_eq!(t.for_queue(b"words", false).policy.as_deref(), Some("b-low"), "searched, not anchored");
    assert_eq!(t.for_queue(b"none", false), PolicyView::default());
    assert_eq!(t.for_exchange(b"orders").policy.as_deref(), Some("x-only"));
    assert_eq!(t.for_queue(b"quorum", false).policy.as_deref(), Some("classic"));
    assert_eq!(t.for_queue(b"quorum", true).policy, None, "classic_queues skips quorum queues");
}

#[test]
fn user_and_operator_definitions_merge_key_by_key() {
    let mut t = PolicyTable::default();
    t.insert(policy(
        PolicyKind::User,
        "p",
        json!({"pattern": "^q", "definition": {"message-ttl": 1000, "max-length": 10, "queue-mode": "lazy"}}),
    ));
    t.insert(policy(
        PolicyKind::Operator,
        "op",
        json!({"pattern": "^q", "definition": {"message-ttl": 2000, "max-length": 5, "expires": 100000}}),
    ));
    let v = t.for_queue(b"q", false);
    assert_eq!((v.policy.as_deref(), v.operator_policy.as_deref()), (Some("p"), Some("op")));
    let expected = json!({"message-ttl": 1000, "max-length": 5, "expires": 100000, "queue-mode": "lazy"});
    assert_eq!(Value::Object(v.definition), expected);
}

fn table(entries: &[(&'static str, FieldValue)]) -> FieldTable {
    let mut t = FieldTable::new();
    for (k, v) in entries {
        t.insert(ShortStr::from_static(k), v.clone());
    }
    t
}

#[test]
fn arguments_and_policy_meet_as_in_rabbitmq() {
    let s = |v: &str| FieldValue::LongStr(LongStr::from(v));
    let arguments = table(&[
        ("x-message-ttl", FieldValue::I32(5000)),
        ("x-max-length", FieldValue::I32(3)),
        ("x-dead-letter-exchange", s("mine")),
        ("x-overflow", s("reject-publish")),
        ("x-delivery-limit", FieldValue::I32(9)),
    ]);
    let declared = QueueArgs::parse(&arguments, "q", "/").unwrap();
    let def = json!({"message-ttl": 1000, "max-length": 10, "expires": 60000, "dead-letter-exchange": "theirs",
        "dead-letter-routing-key": "rk", "overflow": "drop-head", "delivery-limit": 2, "max-length-bytes": 100});
    let a = effective::queue_args(&declared, &arguments, def.as_object().unwrap());
    assert_eq!(a.message_ttl, Some(1000), "lower wins");
    assert_eq!(a.max_length, Some(3), "lower wins");
    assert_eq!((a.expires, a.max_length_bytes), (Some(60000), Some(100)), "policy alone");
    assert_eq!(a.dead_letter_exchange, Some(ShortStr::from_static("mine")), "argument wins");
    assert_eq!(a.dead_letter_routing_key, Some(ShortStr::from_static("rk")), "policy alone");
    assert_eq!(a.overflow, Overflow::RejectPublish, "argument wins");
    assert_eq!(a.delivery_limit, Some(9), "classic queues ignore a policy's delivery limit");
    let quorum = table(&[("x-queue-type", s("quorum")), ("x-overflow", s("reject-publish"))]);
    let declared = QueueArgs::parse(&quorum, "q", "/").unwrap();
    let a = effective::queue_args(&declared, &quorum, def.as_object().unwrap());
    assert_eq!((a.overflow, a.delivery_limit), (Overflow::DropHead, Some(2)), "quorum: policy overflow, its limit");
    let x_args = table(&[("alternate-exchange", s("mine"))]);
    let ae = json!({"alternate-exchange": "theirs"});
    assert_eq!(effective::alternate_exchange(&x_args, ae.as_object().unwrap()), Some(ShortStr::from_static("mine")));
    let ae_of_policy = effective::alternate_exchange(&FieldTable::new(), ae.as_object().unwrap());
    assert_eq!(ae_of_policy, Some(ShortStr::from_static("theirs")));
}

fn message(key: &'static str) -> Arc<Message> {
    Arc::new(Message {
        exchange: ShortStr::EMPTY,
        routing_key: ShortStr::from_static(key),
        properties: Default::default(),
        body: Bytes::from_static(b"x"),
        timestamp_ms: crate::broker::timer::now_ms(),
    })
}

fn declare(v: &VHost, name: &'static str) -> Arc<crate::broker::queue::Queue> {
    let spec = QueueSpec {
        name: ShortStr::from_static(name),
        server_named: false,
        durable: false,
        exclusive_owner: None,
        auto_delete: false,
        arguments: FieldTable::new(),
    };
    v.declare_queue(spec, false, 1).unwrap().0
}

fn set(v: &VHost, kind: PolicyKind, name: &str, body: Value) -> bool {
    v.set_policy(kind, name, PolicySpec::from_json(kind, &body).unwrap()).unwrap()
}

#[test]
fn policies_apply_to_a_live_vhost_at_once_and_go_away_cleanly() {
    let v = VHost::standalone(ShortStr::from_static("/"));
    let q = declare(&v, "limited");
    let default = v.exchange(&ShortStr::EMPTY).unwrap();
    for _ in 0..5 {
        v.publish(&default, &Publish::new(message("limited")));
    }
    assert!(set(&v, PolicyKind::User, "cap", json!({"pattern": "^limited$", "definition": {"max-length": 2}})));
    assert_eq!(q.message_count(), 2, "the oldest three dropped when the policy came");
    assert_eq!(q.policy_view().policy.as_deref(), Some("cap"));
    assert!(!set(&v, PolicyKind::User, "cap", json!({"pattern": "^limited$", "definition": {"max-length": 1}})));
    assert_eq!(q.message_count(), 1, "replaced: the new limit applies");
    let later = declare(&v, "limited-later");
    assert_eq!(later.args().max_length, None, "anchored pattern: not this one");
    assert!(set(&v, PolicyKind::Operator, "ops", json!({"pattern": "^limited", "definition": {"max-length": 3}})));
    assert_eq!(later.args().max_length, Some(3));
    assert_eq!(later.policy_view().operator_policy.as_deref(), Some("ops"));
    assert_eq!(declare(&v, "limited-new").args().max_length, Some(3), "declared after the policy");
    assert_eq!(v.policies(PolicyKind::User).len(), 1);
    assert!(v.clear_policy(PolicyKind::User, "cap").unwrap());
    assert!(!v.clear_policy(PolicyKind::User, "cap").unwrap(), "already gone");
    assert_eq!(q.args().max_length, Some(3), "the operator policy still applies");
    assert!(v.clear_policy(PolicyKind::Operator, "ops").unwrap());
    assert_eq!(*q.policy_view(), PolicyView::default());
    for _ in 0..5 {
        v.publish(&default, &Publish::new(message("limited")));
    }
    assert_eq!(q.message_count(), 6, "as declared: no limit");
}

#[test]
fn an_alternate_exchange_from_a_policy_takes_unroutable_messages() {
    let v = VHost::standalone(ShortStr::from_static("/"));
    let spec = |name: &'static str, kind| ExchangeSpec {
        name: ShortStr::from_static(name),
        kind,
        durable: false,
        auto_delete: false,
        internal: false,
        arguments: FieldTable::new(),
    };
    let x = v.declare_exchange(spec("orders", ExchangeKind::Direct)).unwrap();
    v.declare_exchange(spec("unrouted", ExchangeKind::Fanout)).unwrap();
    let q = declare(&v, "catch-all");
    let dest = crate::broker::exchange::Destination::Queue(q.clone());
    v.bind(&ShortStr::from_static("unrouted"), dest, ShortStr::EMPTY, FieldTable::new()).unwrap();
    v.publish(&x, &Publish::new(message("nowhere")));
    assert_eq!(q.message_count(), 0);
    set(
        &v,
        PolicyKind::User,
        "ae",
        json!({"pattern": "^orders$", "definition": {"alternate-exchange": "unrouted"}, "apply-to": "exchanges"}),
    );
    assert_eq!(x.alternate_exchange(), Some(ShortStr::from_static("unrouted")));
    assert_eq!(x.policy_view().policy.as_deref(), Some("ae"));
    v.publish(&x, &Publish::new(message("nowhere")));
    assert_eq!(q.message_count(), 1);
    v.clear_policy(PolicyKind::User, "ae").unwrap();
    assert_eq!(x.alternate_exchange(), None);
}
