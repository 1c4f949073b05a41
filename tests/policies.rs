//! Policies seen by AMQP clients: a length limit trims a queue the moment it is set and stops
//! when cleared, a TTL policy expires messages, the lower of a policy TTL and an `x-` argument
//! wins, dead-lettering and alternate exchanges come from policies, and policies survive a
//! restart and apply to the queues recovered with them.
//!
//! Policies are set on the vhost directly (the management API calls the same functions).

mod common;

use std::sync::Arc;

use common::lifecycle::*;
use common::{unique, TestBroker};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Channel, Connection, ExchangeKind};
use serde_json::{json, Value};
use warren::broker::policy::{PolicyKind, PolicySpec};
use warren::broker::VHost;
use warren::protocol::ShortStr;

fn vhost(b: &TestBroker) -> Arc<VHost> {
    b.broker.vhost(&ShortStr::from_static("/")).expect("vhost /")
}

/// Sets a policy on `/` that applies to exactly `name`.
fn set_policy(b: &TestBroker, kind: PolicyKind, policy: &str, name: &str, definition: Value) {
    let body = json!({"pattern": format!("^{name}$"), "definition": definition});
    let spec = PolicySpec::from_json(kind, &body).expect("a valid policy");
    vhost(b).set_policy(kind, policy, spec).expect("policy set");
}

fn clear_policy(b: &TestBroker, kind: PolicyKind, policy: &str) {
    assert!(vhost(b).clear_policy(kind, policy).expect("policy cleared"), "{policy} existed");
}

async fn confirming(b: &TestBroker) -> (Connection, Channel) {
    let (conn, ch) = b.channel().await;
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    (conn, ch)
}

async fn send_n(ch: &Channel, queue: &str, n: usize, props: BasicProperties) {
    for i in 0..n {
        send(ch, queue, format!("m{i}").as_bytes(), props.clone()).await;
    }
}

#[tokio::test]
async fn a_max_length_policy_trims_at_once_and_clearing_it_lifts_the_limit() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("pol-len");
    declare(&ch, &q, FieldTable::default()).await;
    send_n(&ch, &q, 5, BasicProperties::default()).await;
    set_policy(&b, PolicyKind::User, &unique("cap"), &q, json!({"max-length": 2}));
    assert_eq!(ready(&b, &q), 2, "trimmed when the policy was set, not at the next publish");
    assert_eq!(bodies(drain(&ch, &q).await), ["m3", "m4"], "the oldest went (drop-head)");
    let view = b.queue(&q).policy_view();
    assert_eq!(view.definition.get("max-length"), Some(&json!(2)));
    send_n(&ch, &q, 3, BasicProperties::default()).await;
    assert_eq!(count(&ch, &q).await, 2);
    clear_policy(&b, PolicyKind::User, view.policy.as_deref().unwrap());
    send_n(&ch, &q, 5, BasicProperties::default()).await;
    assert_eq!(count(&ch, &q).await, 7, "no limit once the policy is gone");
}

#[tokio::test]
async fn a_message_ttl_policy_expires_messages_published_under_it() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let q = unique("pol-ttl");
    declare(&ch, &q, FieldTable::default()).await;
    set_policy(&b, PolicyKind::User, &unique("ttl"), &q, json!({"message-ttl": 50}));
    send_n(&ch, &q, 3, BasicProperties::default()).await;
    wait_for("the policy's TTL to expire the messages", || ready(&b, &q) == 0).await;
}

#[tokio::test]
async fn the_lower_of_a_policy_ttl_and_an_x_message_ttl_wins() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    // Policy lower than the argument, then argument lower than the policy: both expire fast.
    let (policy_lower, argument_lower) = (unique("pol-lower"), unique("arg-lower"));
    declare(&ch, &policy_lower, table(vec![("x-message-ttl", int(600_000))])).await;
    declare(&ch, &argument_lower, table(vec![("x-message-ttl", int(50))])).await;
    set_policy(&b, PolicyKind::User, &unique("short"), &policy_lower, json!({"message-ttl": 50}));
    set_policy(&b, PolicyKind::User, &unique("long"), &argument_lower, json!({"message-ttl": 600_000}));
    assert_eq!(b.queue(&policy_lower).args().message_ttl, Some(50));
    assert_eq!(b.queue(&argument_lower).args().message_ttl, Some(50));
    send(&ch, &policy_lower, b"p", BasicProperties::default()).await;
    send(&ch, &argument_lower, b"a", BasicProperties::default()).await;
    wait_for("both to expire", || ready(&b, &policy_lower) + ready(&b, &argument_lower) == 0).await;
    // An operator policy's lower TTL wins over the user policy's.
    set_policy(&b, PolicyKind::Operator, &unique("op"), &argument_lower, json!({"message-ttl": 10}));
    assert_eq!(b.queue(&argument_lower).args().message_ttl, Some(10));
}

#[tokio::test]
async fn a_dead_letter_exchange_from_a_policy_takes_rejected_messages() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let (dlx, dlq) = sink(&ch).await;
    let q = unique("pol-dlx");
    declare(&ch, &q, FieldTable::default()).await;
    set_policy(&b, PolicyKind::User, &unique("dlx"), &q, json!({"dead-letter-exchange": dlx}));
    send(&ch, &q, b"doomed", BasicProperties::default()).await;
    let d = get_unacked(&ch, &q).await;
    d.reject(BasicRejectOptions { requeue: false }).await.unwrap();
    let dead = get_one(&ch, &dlq).await;
    assert_eq!(dead.data, b"doomed");
    assert_eq!(history(&dead), [(q.clone(), "rejected".to_string(), 1)]);
}

#[tokio::test]
async fn an_alternate_exchange_from_a_policy_takes_unroutable_messages() {
    let b = common::start().await;
    let (_c, ch) = confirming(&b).await;
    let x = exchange(&ch, ExchangeKind::Direct, false).await;
    let (ae, caught) = sink(&ch).await;
    assert!(publish(&ch, &x, "nowhere", b"lost", BasicProperties::default()).await.is_ack());
    assert_eq!(count(&ch, &caught).await, 0);
    set_policy(&b, PolicyKind::User, &unique("ae"), &x, json!({"alternate-exchange": ae}));
    assert!(publish(&ch, &x, "nowhere", b"caught", BasicProperties::default()).await.is_ack());
    assert_eq!(get_one(&ch, &caught).await.data, b"caught");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn policies_survive_a_restart_and_apply_to_recovered_queues() {
    let b = common::start().await;
    let q = unique("pol-durable");
    let (user, operator) = (unique("keep"), unique("ops"));
    {
        let (conn, ch) = confirming(&b).await;
        declare_durable(&ch, &q, FieldTable::default()).await;
        send_n(&ch, &q, 4, persistent()).await;
        set_policy(&b, PolicyKind::User, &user, &q, json!({"max-length": 3, "queue-mode": "lazy"}));
        set_policy(&b, PolicyKind::Operator, &operator, &q, json!({"max-length": 2}));
        assert_eq!(ready(&b, &q), 2);
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let listed: Vec<String> = vhost(&b).policies(PolicyKind::User).iter().map(|p| p.name.clone()).collect();
    assert_eq!(listed, std::slice::from_ref(&user));
    let view = b.queue(&q).policy_view();
    assert_eq!((view.policy.as_deref(), view.operator_policy.as_deref()), (Some(&*user), Some(&*operator)));
    assert_eq!(b.queue(&q).args().max_length, Some(2), "the recovered queue is under both policies");
    let (conn, ch) = confirming(&b).await;
    send_n(&ch, &q, 3, persistent()).await;
    assert_eq!(count(&ch, &q).await, 2);
    conn.close(200, "restart".into()).await.unwrap();
    // Cleared after the restart: gone from the store too.
    clear_policy(&b, PolicyKind::Operator, &operator);
    assert_eq!(b.queue(&q).args().max_length, Some(3));
    let b = b.restart().await;
    assert!(vhost(&b).policies(PolicyKind::Operator).is_empty());
    assert_eq!(b.queue(&q).args().max_length, Some(3));
}
