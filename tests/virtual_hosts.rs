//! Virtual hosts and users created and deleted through the broker's API (what the management
//! API and `warren ctl` call), seen from lapin clients: a new vhost serves AMQP at once and
//! closes its connections with 320 when deleted; a new user logs in with its password, and
//! deleting it closes its connections.

mod common;

use std::sync::{Arc, Mutex};

use common::{eventually, reply_code, reply_text, unique, TestBroker, WAIT};
use futures_lite::StreamExt;
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::{BasicProperties, Connection, ConnectionProperties};
use warren::auth::{Permission, User};
use warren::broker::definitions::VHostSpec;
use warren::protocol::ShortStr;

/// Connects as `user` to `vhost` and records the first error the connection reports.
async fn connect_watched(
    b: &TestBroker,
    user: &str,
    pass: &str,
    vhost: &str,
) -> (Connection, Arc<Mutex<Option<lapin::Error>>>) {
    let conn =
        Connection::connect(&b.uri_with(user, pass, vhost), ConnectionProperties::default()).await.expect("connect");
    let seen = common::first_error(&conn);
    (conn, seen)
}

fn short(s: &str) -> ShortStr {
    ShortStr::try_from(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_vhost_serves_amqp_until_it_is_deleted() {
    let b = common::start().await;
    let name = unique("vh");
    let spec = VHostSpec { description: "for the test".into(), ..Default::default() };
    assert!(b.broker.put_vhost(short(&name), spec, Some("guest")).unwrap(), "created");

    let (conn, seen) = connect_watched(&b, "guest", "guest", &name).await;
    let ch = conn.create_channel().await.unwrap();
    let durable = QueueDeclareOptions { durable: true, ..Default::default() };
    ch.queue_declare("orders".into(), durable, FieldTable::default()).await.unwrap();
    let mut consumer = ch
        .basic_consume("orders".into(), "c".into(), BasicConsumeOptions::default(), FieldTable::default())
        .await
        .unwrap();
    let persistent = BasicProperties::default().with_delivery_mode(2);
    ch.basic_publish("".into(), "orders".into(), BasicPublishOptions::default(), b"in the new vhost", persistent)
        .await
        .unwrap();
    let got = tokio::time::timeout(WAIT, consumer.next()).await.expect("a delivery").unwrap().unwrap();
    assert_eq!(got.data, b"in the new vhost");
    got.ack(BasicAckOptions::default()).await.unwrap();

    // The queue belongs to that vhost only.
    let (root, root_ch) = b.channel().await;
    let err = common::passive_declare(&root_ch, "orders").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404), "{err}");

    assert!(b.broker.delete_vhost(&short(&name)).unwrap());
    let err = eventually("the client to see the close", || seen.lock().unwrap().take()).await;
    assert_eq!(reply_code(&err), Some(320), "{err}");
    assert_eq!(reply_text(&err), format!("CONNECTION_FORCED - vhost '{name}' is deleted"));
    let in_vhost = || b.broker.connections().list().into_iter().filter(|c| c.info.vhost == name.as_str()).count();
    eventually("the connection to go", || (in_vhost() == 0).then_some(())).await;
    assert!(root.status().connected(), "other vhosts' connections stay open");

    // Gone for new connections, with RabbitMQ's 530.
    let err =
        Connection::connect(&b.uri_with("guest", "guest", &name), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err}");
    assert_eq!(reply_text(&err), format!("NOT_ALLOWED - vhost {name} not found"));

    // Created again under the same name, it starts empty.
    assert!(b.broker.put_vhost(short(&name), VHostSpec::default(), Some("guest")).unwrap());
    let (again, _) = connect_watched(&b, "guest", "guest", &name).await;
    let ch = again.create_channel().await.unwrap();
    let err = common::passive_declare(&ch, "orders").await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404), "the old vhost's queue is gone: {err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_new_user_logs_in_with_its_password_until_it_is_deleted() {
    let b = common::start().await;
    let user = unique("bob");
    assert!(b.broker.put_user(User::with_password(user.as_str(), "s3cret", vec!["management".into()])).unwrap());
    b.broker.set_permission(Permission::full(user.as_str(), short("/"))).unwrap();

    let err =
        Connection::connect(&b.uri_with(&user, "wrong", "%2f"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err}");
    let (conn, seen) = connect_watched(&b, &user, "s3cret", "%2f").await;
    let ch = conn.create_channel().await.unwrap();
    ch.queue_declare(unique("q").as_str().into(), QueueDeclareOptions::default(), FieldTable::default()).await.unwrap();
    let listed = b.broker.connections().list();
    assert!(listed.iter().any(|c| c.info.user == user), "listed under its user");

    // A new password takes effect for the next login.
    assert!(!b.broker.put_user(User::with_password(user.as_str(), "changed", vec![])).unwrap(), "updated");
    let err =
        Connection::connect(&b.uri_with(&user, "s3cret", "%2f"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err}");

    assert!(b.broker.delete_user(&user).unwrap());
    let err = eventually("the client to see the close", || seen.lock().unwrap().take()).await;
    assert_eq!(reply_code(&err), Some(320), "{err}");
    assert_eq!(reply_text(&err), format!("CONNECTION_FORCED - user '{user}' is deleted"));
    assert!(b.broker.permissions.of_user(&user).is_empty());
    let err =
        Connection::connect(&b.uri_with(&user, "changed", "%2f"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err}");
}
