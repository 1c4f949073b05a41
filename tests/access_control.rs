//! Permissions on AMQP operations, as RabbitMQ's access-control table says, seen from lapin:
//! opening a vhost needs a permission entry there (530 otherwise), and each declare, delete,
//! bind, publish, consume, get and purge needs its configure, write or read permission (403
//! with RabbitMQ's text otherwise); topic permissions check routing and binding keys.

mod common;

use common::{reply_code, reply_text, unique, TestBroker};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Channel, Connection, ConnectionProperties};
use warren::auth::{Permission, TopicPermission, User};
use warren::protocol::ShortStr;

fn root() -> ShortStr {
    ShortStr::from_static("/")
}

/// A user with the given permissions on `/` (and topic permissions), connected.
async fn connect_as(
    b: &TestBroker,
    configure: &str,
    write: &str,
    read: &str,
    topics: &[(&str, &str, &str)],
) -> (String, Connection) {
    let user = unique("user");
    b.broker.put_user(User::with_password(user.as_str(), "pw", vec![])).unwrap();
    let p = Permission {
        user: user.clone(),
        vhost: root(),
        configure: configure.into(),
        write: write.into(),
        read: read.into(),
    };
    b.broker.set_permission(p).unwrap();
    for (exchange, write, read) in topics {
        let t = TopicPermission {
            user: user.clone(),
            vhost: root(),
            exchange: exchange.to_string(),
            write: write.to_string(),
            read: read.to_string(),
        };
        b.broker.set_topic_permission(t).unwrap();
    }
    let conn =
        Connection::connect(&b.uri_with(&user, "pw", "%2f"), ConnectionProperties::default()).await.expect("connect");
    (user, conn)
}

/// A confirmed publish: a refusal closes the channel, which fails the confirm.
async fn publish(ch: Channel, exchange: &'static str, key: &'static str) -> lapin::Result<()> {
    ch.confirm_select(ConfirmSelectOptions::default()).await?;
    ch.basic_publish(exchange.into(), key.into(), BasicPublishOptions::default(), b"m", BasicProperties::default())
        .await?
        .await?;
    Ok(())
}

/// Runs `op` on a fresh channel and returns the channel error's code and text.
async fn refused<F, Fut, T>(conn: &Connection, op: F) -> (Option<u16>, String)
where
    F: FnOnce(Channel) -> Fut,
    Fut: std::future::Future<Output = lapin::Result<T>>,
{
    let ch = conn.create_channel().await.unwrap();
    match op(ch).await {
        Ok(_) => (None, "allowed".into()),
        Err(e) => (reply_code(&e), reply_text(&e)),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn opening_a_vhost_needs_a_permission_entry_there() {
    let b = common::start().await;
    let user = unique("nobody");
    b.broker.put_user(User::with_password(user.as_str(), "pw", vec![])).unwrap();
    let err = Connection::connect(&b.uri_with(&user, "pw", "%2f"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err}");
    assert_eq!(reply_text(&err), format!("NOT_ALLOWED - access to vhost '/' refused for user '{user}'"));
    // Any entry, even '' '' '', opens it.
    let p = Permission { user: user.clone(), vhost: root(), configure: "".into(), write: "".into(), read: "".into() };
    b.broker.set_permission(p).unwrap();
    Connection::connect(&b.uri_with(&user, "pw", "%2f"), ConnectionProperties::default()).await.expect("connect");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn each_operation_needs_its_permission_with_rabbitmqs_text() {
    let b = common::start().await;
    let (admin, admin_ch) = b.channel().await;
    admin_ch.queue_declare("open-q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    admin_ch.queue_declare("secret-q".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    admin_ch
        .exchange_declare(
            "app-x".into(),
            lapin::ExchangeKind::Direct,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    // configure only app-*, write app-x and open-q, read open-q.
    let (user, conn) = connect_as(&b, "^app-", "^(app-x|open-q)$", "^open-q$", &[]).await;
    let text = |perm: &str, kind: &str, name: &str| {
        format!("ACCESS_REFUSED - {perm} access to {kind} '{name}' in vhost '/' refused for user '{user}'")
    };

    let r = refused(&conn, |ch| async move {
        ch.queue_declare("other-q".into(), QueueDeclareOptions::default(), FieldTable::default()).await
    })
    .await;
    assert_eq!(r, (Some(403), text("configure", "queue", "other-q")));
    let r = refused(&conn, |ch| async move {
        ch.queue_declare("app-q".into(), QueueDeclareOptions::default(), FieldTable::default()).await
    })
    .await;
    assert_eq!(r, (None, "allowed".into()));
    let r = refused(&conn, |ch| async move {
        ch.queue_declare(
            "secret-q".into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
    })
    .await;
    assert_eq!(r, (Some(403), text("configure", "queue", "secret-q")), "a passive declare needs any one");
    let r = refused(&conn, |ch| async move {
        ch.queue_declare(
            "open-q".into(),
            QueueDeclareOptions { passive: true, ..Default::default() },
            FieldTable::default(),
        )
        .await
    })
    .await;
    assert_eq!(r.0, None, "read on open-q is enough for a passive declare");
    let mut dlx = FieldTable::default();
    dlx.insert("x-dead-letter-exchange".into(), AMQPValue::LongString("amq.fanout".into()));
    let r = refused(
        &conn,
        |ch| async move { ch.queue_declare("app-dl".into(), QueueDeclareOptions::default(), dlx).await },
    )
    .await;
    assert_eq!(r, (Some(403), text("write", "exchange", "amq.fanout")), "a DLX needs write on it");

    let r = refused(&conn, |ch| publish(ch, "", "open-q")).await;
    assert_eq!(r, (Some(403), text("write", "exchange", "amq.default")), "the default exchange is amq.default");
    let r = refused(&conn, |ch| publish(ch, "app-x", "k")).await;
    assert_eq!(r.0, None);

    let r = refused(&conn, |ch| async move { ch.basic_get("secret-q".into(), BasicGetOptions::default()).await }).await;
    assert_eq!(r, (Some(403), text("read", "queue", "secret-q")));
    let r = refused(&conn, |ch| async move {
        ch.basic_consume("secret-q".into(), "".into(), BasicConsumeOptions::default(), FieldTable::default()).await
    })
    .await;
    assert_eq!(r, (Some(403), text("read", "queue", "secret-q")));
    let r =
        refused(&conn, |ch| async move { ch.queue_purge("secret-q".into(), QueuePurgeOptions::default()).await }).await;
    assert_eq!(r, (Some(403), text("read", "queue", "secret-q")));
    let r = refused(&conn, |ch| async move { ch.basic_get("open-q".into(), BasicGetOptions::default()).await }).await;
    assert_eq!(r.0, None);

    // Binding: write on the queue, read on the exchange.
    let r = refused(&conn, |ch| async move {
        ch.queue_bind("open-q".into(), "app-x".into(), "k".into(), QueueBindOptions::default(), FieldTable::default())
            .await
    })
    .await;
    assert_eq!(r, (Some(403), text("read", "exchange", "app-x")));
    let r = refused(&conn, |ch| async move {
        ch.queue_bind(
            "secret-q".into(),
            "amq.direct".into(),
            "k".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await;
    assert_eq!(r, (Some(403), text("write", "queue", "secret-q")));
    let r = refused(&conn, |ch| async move { ch.queue_delete("secret-q".into(), QueueDeleteOptions::default()).await })
        .await;
    assert_eq!(r, (Some(403), text("configure", "queue", "secret-q")));
    let r =
        refused(
            &conn,
            |ch| async move { ch.exchange_delete("amq.direct".into(), ExchangeDeleteOptions::default()).await },
        )
        .await;
    let system = "ACCESS_REFUSED - deletion of system exchange 'amq.direct' in vhost '/' not allowed";
    assert_eq!(r, (Some(403), system.to_string()), "checked before permissions, as RabbitMQ does");
    admin_ch
        .exchange_declare(
            "shared-x".into(),
            lapin::ExchangeKind::Fanout,
            ExchangeDeclareOptions::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
    let r =
        refused(
            &conn,
            |ch| async move { ch.exchange_delete("shared-x".into(), ExchangeDeleteOptions::default()).await },
        )
        .await;
    assert_eq!(r, (Some(403), text("configure", "exchange", "shared-x")));
    admin.close(200, "bye".into()).await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn topic_permissions_check_routing_and_binding_keys() {
    let b = common::start().await;
    let (user, conn) = connect_as(&b, ".*", ".*", ".*", &[("amq.topic", "^{username}\\.", "^public\\.")]).await;
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    let own = format!("{user}.orders");
    ch.basic_publish(
        "amq.topic".into(),
        own.as_str().into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let r = refused(&conn, |ch| publish(ch, "amq.topic", "other.orders")).await;
    assert_eq!(
        r,
        (Some(403), format!("ACCESS_REFUSED - write access to topic 'other.orders' in exchange 'amq.topic' in vhost '/' refused for user '{user}'"))
    );
    // No rule for amq.direct: any key.
    ch.basic_publish(
        "amq.direct".into(),
        "anything".into(),
        BasicPublishOptions::default(),
        b"m",
        BasicProperties::default(),
    )
    .await
    .unwrap()
    .await
    .unwrap();
    let q = unique("tq");
    ch.queue_declare(q.as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    ch.queue_bind(
        q.as_str().into(),
        "amq.topic".into(),
        "public.#".into(),
        QueueBindOptions::default(),
        FieldTable::default(),
    )
    .await
    .unwrap();
    let q2 = q.clone();
    let r = refused(&conn, |ch| async move {
        ch.queue_bind(
            q2.as_str().into(),
            "amq.topic".into(),
            "private.#".into(),
            QueueBindOptions::default(),
            FieldTable::default(),
        )
        .await
    })
    .await;
    assert_eq!(
        r,
        (Some(403), format!("ACCESS_REFUSED - read access to topic 'private.#' in exchange 'amq.topic' in vhost '/' refused for user '{user}'"))
    );
}

/// The management API by tag, as RabbitMQ's plugin gates it, and through the caller's own
/// permissions for what it declares.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_api_is_gated_by_tags_and_permissions() {
    use serde_json::json;
    let b = common::start().await;
    let admin = common::http::Http::new(b.mgmt);
    let add = |name: &str, tags: &str| {
        let tags = tags.split(',').filter(|t| !t.is_empty()).map(str::to_string).collect();
        b.broker.put_user(User::with_password(name, "pw", tags)).unwrap();
    };
    let (mgmt_user, mon_user, app_user) = (unique("mgmt"), unique("mon"), unique("app"));
    add(&mgmt_user, "management");
    add(&mon_user, "monitoring");
    add(&app_user, "");
    let as_user = |u: &str| admin.with_auth(Some((u, "pw")));
    let (m, mon, app) = (as_user(&mgmt_user), as_user(&mon_user), as_user(&app_user));

    let r = app.get("/overview").await;
    assert_eq!((r.status, r.body["reason"].as_str()), (401, Some("Not management user")));
    let r = m.get("/users").await;
    assert_eq!((r.status, &r.body), (401, &json!({"error": "not_authorised", "reason": "Not administrator user"})));
    assert_eq!(m.get("/nodes").await.body["reason"], "Not monitor user");
    assert_eq!(mon.get("/nodes").await.status, 200);
    let r = m.get("/queues/%2F").await;
    assert_eq!((r.status, r.body["reason"].as_str()), (401, Some("User not authorised to access virtual host")));
    assert_eq!(m.get("/vhosts").await.body, json!([]), "a management user lists only its vhosts");

    // With read-only permissions on /: it sees /, may not declare there.
    let p = Permission {
        user: mgmt_user.clone(),
        vhost: root(),
        configure: "".into(),
        write: "".into(),
        read: ".*".into(),
    };
    b.broker.set_permission(p).unwrap();
    assert_eq!(m.get("/queues/%2F").await.status, 200);
    assert_eq!(m.get("/vhosts").await.body.as_array().unwrap().len(), 1);
    let r = m.put("/queues/%2F/mine", json!({})).await;
    assert_eq!((r.status, r.body["reason"].as_str()), (401, Some("Access refused.")));
    assert_eq!(admin.put("/queues/%2F/mine", json!({})).await.status, 201);
    let r = m.put("/policies/%2F/p", json!({"pattern": ".*", "definition": {"max-length": 1}})).await;
    assert_eq!((r.status, r.body["reason"].as_str()), (401, Some("User not authorised to access object")));
    assert_eq!(m.put("/vhosts/new", json!({})).await.body["reason"], "Not administrator user");
}

/// A first start creates the configured user and vhost instead of guest and `/` (what
/// `RABBITMQ_DEFAULT_USER`/`_PASS`/`_VHOST` in a compose file ask for).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_first_start_creates_the_configured_default_user_and_vhost() {
    let b = common::start_with(|c| {
        c.default_user = "app".into();
        c.default_pass = "app-pw".into();
        c.default_vhost = "shop".into();
    })
    .await;
    let conn = Connection::connect(&b.uri_with("app", "app-pw", "shop"), ConnectionProperties::default())
        .await
        .expect("app on shop");
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare("orders".into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let err = Connection::connect(&b.uri(), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "no guest on a node started with another default user: {err}");
    assert!(b.broker.users.get("app").unwrap().has_tag("administrator"));
    assert!(b.broker.vhost(&ShortStr::from_static("/")).is_none());
}
