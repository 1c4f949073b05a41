//! `queue.declare` arguments: invalid values of the known ones close the channel with 406 and
//! RabbitMQ's texts (and create nothing), edge values are accepted, unknown arguments are
//! ignored, and a redeclare with different values is refused as inequivalent.

mod common;

use common::lifecycle::*;
use common::{reply_code, reply_text, unique};
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection};

/// Declares `q` with `args` on a new channel; the broker's refusal text (406 expected).
async fn refusal(conn: &Connection, q: &str, args: FieldTable) -> String {
    let ch = conn.create_channel().await.unwrap();
    let err = ch.queue_declare(q.into(), Default::default(), args).await.expect_err("the declare is refused");
    assert_eq!(reply_code(&err), Some(406), "{err}");
    reply_text(&err)
}

fn invalid_arg(arg: &str, q: &str, detail: &str) -> String {
    format!("PRECONDITION_FAILED - invalid arg '{arg}' for queue '{q}' in vhost '/': {detail}")
}

#[tokio::test]
async fn invalid_argument_values_are_refused_with_rabbitmq_texts() {
    let b = common::start().await;
    let conn = b.connect().await;
    let not_integer = |t: &str| format!("\"expected integer, got {t}\"");
    let cases: Vec<(&str, AMQPValue, String)> = vec![
        ("x-message-ttl", text("abc"), not_integer("longstr")),
        ("x-message-ttl", AMQPValue::Boolean(true), not_integer("bool")),
        ("x-message-ttl", int(-1), "{value_negative,-1}".into()),
        ("x-message-ttl", AMQPValue::LongLongInt(315_360_000_001), "{value_too_large,315360000001}".into()),
        ("x-expires", int(0), "{value_zero,0}".into()),
        ("x-expires", int(-1), "{value_negative,-1}".into()),
        ("x-max-length", text("ten"), not_integer("longstr")),
        ("x-max-length", AMQPValue::FieldTable(table(vec![("n", int(1))])), not_integer("table")),
        ("x-max-length-bytes", int(-5), "{value_negative,-5}".into()),
        ("x-max-priority", int(256), "{max_value_exceeded,256}".into()),
        ("x-overflow", text("bogus"), "invalid_overflow".into()),
        ("x-overflow", int(1), "{unacceptable_type,signedint}".into()),
        ("x-single-active-consumer", text("yes"), "{unacceptable_type,longstr}".into()),
        ("x-queue-mode", text("bogus"), "\"unsupported queue mode 'bogus'\"".into()),
        ("x-queue-type", text("bogus"), "\"unsupported queue type 'bogus'\"".into()),
        ("x-dead-letter-routing-key", text("rk"), "routing_key_but_no_dlx_defined".into()),
    ];
    for (arg, value, detail) in cases {
        let q = unique("bad-arg");
        let said = refusal(&conn, &q, table(vec![(arg, value.clone())])).await;
        assert_eq!(said, invalid_arg(arg, &q, &detail), "{arg} = {value:?}");
        let ch = conn.create_channel().await.unwrap();
        let err = common::passive_declare(&ch, &q).await.expect_err("not created");
        assert_eq!(reply_code(&err), Some(404), "{arg} = {value:?} created the queue");
    }

    // The dead-letter exchange's type has its own wording.
    let q = unique("bad-dlx");
    let said = refusal(&conn, &q, table(vec![("x-dead-letter-exchange", int(1))])).await;
    let want = format!(
        "PRECONDITION_FAILED - invalid type 'signedint' for arg 'x-dead-letter-exchange' in queue '{q}' in vhost '/'"
    );
    assert_eq!(said, want);

    // RabbitMQ's order decides which complaint is reported, not the table's.
    let q = unique("two-bad");
    let said = refusal(&conn, &q, table(vec![("x-overflow", text("nope")), ("x-expires", int(0))])).await;
    assert_eq!(said, invalid_arg("x-expires", &q, "{value_zero,0}"));

    // Checked before anything else, also when the queue exists.
    let q = unique("exists");
    declare(&conn.create_channel().await.unwrap(), &q, table(vec![("x-max-length", int(10))])).await;
    let said = refusal(&conn, &q, table(vec![("x-max-length", text("ten"))])).await;
    assert_eq!(said, invalid_arg("x-max-length", &q, &not_integer("longstr")));

    // Channel errors only: the connection goes on.
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, &unique("fine"), FieldTable::default()).await;
}

#[tokio::test]
async fn edge_values_are_accepted() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let cases: Vec<Vec<(&str, AMQPValue)>> = vec![
        vec![("x-message-ttl", int(0))],
        vec![("x-message-ttl", AMQPValue::LongLongInt(315_360_000_000))],
        vec![("x-expires", AMQPValue::LongLongInt(315_360_000_000))],
        vec![("x-max-length", int(0))],
        vec![("x-max-length", AMQPValue::LongLongInt(1 << 40))],
        vec![("x-max-length-bytes", AMQPValue::ShortShortUInt(0))],
        vec![("x-max-priority", int(0))],
        vec![("x-max-priority", AMQPValue::ShortUInt(255))],
        vec![("x-overflow", text("drop-head"))],
        vec![("x-overflow", text("reject-publish"))],
        vec![("x-overflow", text("reject-publish-dlx"))],
        vec![("x-single-active-consumer", AMQPValue::Boolean(false))],
        vec![("x-dead-letter-exchange", text("")), ("x-dead-letter-routing-key", text(""))],
        vec![("x-dead-letter-exchange", text("does-not-exist-yet"))],
        vec![("x-queue-type", text("classic"))],
        vec![("x-queue-mode", text("lazy"))],
    ];
    for args in cases {
        let q = unique("edge");
        let described = format!("{args:?}");
        ch.queue_declare(q.as_str().into(), Default::default(), table(args))
            .await
            .unwrap_or_else(|e| panic!("{described} refused: {e}"));
        assert_eq!(common::passive_declare(&ch, &q).await.unwrap().name().as_str(), q);
    }
}

#[tokio::test]
async fn unknown_arguments_are_ignored() {
    let b = common::start().await;
    let (_c, ch) = b.channel().await;
    let q = unique("unknown");
    let nested = AMQPValue::FieldArray(vec![int(1), text("two")].into());
    let args = table(vec![
        ("x-unknown-thing", text("whatever")),
        ("x-nested", AMQPValue::FieldTable(table(vec![("a", nested)]))),
        ("not-even-x", int(5)),
    ]);
    declare(&ch, &q, args).await;
    // Redeclaring with other unknown arguments, or none, is not inequivalent.
    declare(&ch, &q, table(vec![("x-unknown-thing", text("something else"))])).await;
    declare(&ch, &q, FieldTable::default()).await;
    ch.basic_publish("".into(), q.as_str().into(), Default::default(), b"plain", BasicProperties::default())
        .await
        .unwrap();
    assert_eq!(get(&ch, &q).await.expect("an ordinary queue").data, b"plain");
}

#[tokio::test]
async fn a_redeclare_with_other_values_is_inequivalent() {
    let b = common::start().await;
    let conn = b.connect().await;
    let q = unique("ineq");
    let ch = conn.create_channel().await.unwrap();
    declare(&ch, &q, table(vec![("x-max-length", int(10)), ("x-overflow", text("drop-head"))])).await;
    let prefix = format!("PRECONDITION_FAILED - inequivalent arg 'x-max-length' for queue '{q}' in vhost '/': ");

    let said = refusal(&conn, &q, table(vec![("x-max-length", int(11)), ("x-overflow", text("drop-head"))])).await;
    assert_eq!(said, format!("{prefix}received '11' but current is '10'"));

    let said = refusal(&conn, &q, table(vec![("x-overflow", text("drop-head"))])).await;
    assert_eq!(said, format!("{prefix}received none but current is the value '10' of type 'signedint'"));

    let args = table(vec![("x-max-length", int(10)), ("x-overflow", text("drop-head")), ("x-message-ttl", int(5))]);
    let said = refusal(&conn, &q, args).await;
    assert_eq!(
        said,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-message-ttl' for queue '{q}' in vhost '/': received the value \
             '5' of type 'signedint' but current is none"
        )
    );

    let said = refusal(&conn, &q, table(vec![("x-max-length", int(10)), ("x-overflow", text("reject-publish"))])).await;
    assert_eq!(
        said,
        format!(
            "PRECONDITION_FAILED - inequivalent arg 'x-overflow' for queue '{q}' in vhost '/': received \
             'reject-publish' but current is 'drop-head'"
        )
    );

    // Integers compare by value, whatever their width.
    let ch = conn.create_channel().await.unwrap();
    for ten in [AMQPValue::LongLongInt(10), AMQPValue::ShortShortUInt(10)] {
        declare(&ch, &q, table(vec![("x-max-length", ten), ("x-overflow", text("drop-head"))])).await;
    }
}
