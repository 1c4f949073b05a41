//! Durable exchanges, queues (with their arguments) and bindings survive a restart; transient
//! ones do not; a second broker on the same data directory is refused. Vhosts, users and
//! permissions survive too, and so does their deletion; a data directory from before they were
//! kept gets RabbitMQ's defaults.

mod common;

use common::{reply_code, unique};
use lapin::options::*;
use lapin::types::{AMQPValue, FieldTable};
use lapin::{BasicProperties, Connection, ExchangeKind};
use warren::auth::{Permission, User};
use warren::broker::definitions::VHostSpec;
use warren::broker::{Broker, Limits};
use warren::protocol::ShortStr;
use warren::store::{MetadataStore, QueueDef, Store};

fn max_length(n: i32) -> FieldTable {
    let mut t = FieldTable::default();
    t.insert("x-max-length".into(), AMQPValue::LongInt(n));
    t
}

fn durable_queue() -> QueueDeclareOptions {
    QueueDeclareOptions { durable: true, ..Default::default() }
}

fn passive() -> QueueDeclareOptions {
    QueueDeclareOptions { passive: true, ..Default::default() }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn durable_definitions_survive_a_restart_and_transient_ones_do_not() {
    let b = common::start().await;
    let (dx, dq, tx, tq) = (unique("dx"), unique("dq"), unique("tx"), unique("tq"));
    {
        let (conn, ch) = b.channel().await;
        let durable = ExchangeDeclareOptions { durable: true, ..Default::default() };
        ch.exchange_declare(dx.as_str().into(), ExchangeKind::Topic, durable, FieldTable::default()).await.unwrap();
        ch.exchange_declare(tx.as_str().into(), ExchangeKind::Fanout, Default::default(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_declare(dq.as_str().into(), durable_queue(), max_length(5)).await.unwrap();
        ch.queue_declare(tq.as_str().into(), Default::default(), FieldTable::default()).await.unwrap();
        ch.queue_bind(dq.as_str().into(), dx.as_str().into(), "a.#".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        // Bindings with a transient end are not kept.
        ch.queue_bind(tq.as_str().into(), dx.as_str().into(), "#".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        ch.queue_bind(dq.as_str().into(), tx.as_str().into(), "".into(), Default::default(), FieldTable::default())
            .await
            .unwrap();
        ch.exchange_bind(
            "amq.fanout".into(),
            dx.as_str().into(),
            "b.*".into(),
            Default::default(),
            FieldTable::default(),
        )
        .await
        .unwrap();
        conn.close(200, "restart".into()).await.unwrap();
    }
    let b = b.restart().await;
    let conn = b.connect().await;
    let ch = conn.create_channel().await.unwrap();
    ch.exchange_declare(
        dx.as_str().into(),
        ExchangeKind::Topic,
        ExchangeDeclareOptions { passive: true, ..Default::default() },
        FieldTable::default(),
    )
    .await
    .expect("durable exchange restored");
    ch.queue_declare(dq.as_str().into(), durable_queue(), max_length(5))
        .await
        .expect("same arguments still equivalent");
    ch.basic_publish(
        dx.as_str().into(),
        "a.b".into(),
        BasicPublishOptions::default(),
        b"x",
        BasicProperties::default(),
    )
    .await
    .unwrap();
    let got = ch.basic_get(dq.as_str().into(), BasicGetOptions { no_ack: true }).await.unwrap();
    assert!(got.is_some(), "the durable binding was restored");

    let err = ch.queue_declare(dq.as_str().into(), durable_queue(), max_length(6)).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(406), "queue arguments were restored: {err}");
    for (name, is_queue) in [(&tq, true), (&tx, false)] {
        let ch = conn.create_channel().await.unwrap();
        let err = if is_queue {
            ch.queue_declare(name.as_str().into(), passive(), FieldTable::default()).await.unwrap_err()
        } else {
            ch.exchange_declare(
                name.as_str().into(),
                ExchangeKind::Fanout,
                ExchangeDeclareOptions { passive: true, ..Default::default() },
                FieldTable::default(),
            )
            .await
            .unwrap_err()
        };
        assert_eq!(reply_code(&err), Some(404), "transient {name} is gone");
    }

    // Deleting is durable too.
    let ch = conn.create_channel().await.unwrap();
    ch.queue_delete(dq.as_str().into(), Default::default()).await.unwrap();
    conn.close(200, "restart".into()).await.unwrap();
    let b = b.restart().await;
    let (_c, ch) = b.channel().await;
    let err = ch.queue_declare(dq.as_str().into(), passive(), FieldTable::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(404));
}

#[tokio::test]
async fn a_second_broker_on_the_same_data_directory_is_refused() {
    let b = common::start().await;
    let config = warren::config::Config {
        port: 0,
        bind: "127.0.0.1".into(),
        data_dir: b.data_dir().to_path_buf(),
        ..Default::default()
    };
    let err = warren::server::Listener::bind(&config).await.err().expect("refused");
    assert!(err.to_string().contains("in use by another Warren"), "{err}");
}

fn short(s: &str) -> ShortStr {
    ShortStr::try_from(s).unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn vhosts_users_and_permissions_survive_a_restart_and_so_do_their_deletions() {
    let b = common::start().await;
    let (vhost, user, queue) = (unique("vh"), unique("user"), unique("c"));
    let v = short(&vhost);
    let spec = VHostSpec {
        description: "kept".into(),
        tags: vec!["eu".into(), "prod".into()],
        default_queue_type: Some("quorum".into()),
        tracing: Some(true),
    };
    assert!(b.broker.put_vhost(v.clone(), spec, Some("guest")).unwrap());
    b.broker.put_user(User::with_password(user.as_str(), "s3cret", vec!["monitoring".into()])).unwrap();
    let p = Permission {
        user: user.clone(),
        vhost: v.clone(),
        configure: "^c".into(),
        write: "^w".into(),
        read: "^r".into(),
    };
    b.broker.set_permission(p.clone()).unwrap();
    {
        // The new user's durable queue in the new vhost is kept too.
        let conn = Connection::connect(&b.uri_with(&user, "s3cret", &vhost), Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        ch.queue_declare(queue.as_str().into(), durable_queue(), FieldTable::default()).await.unwrap();
        conn.close(200, "restart".into()).await.unwrap();
    }

    let b = b.restart().await;
    let meta = b.broker.vhost(&v).expect("the vhost is back").meta();
    assert_eq!(meta.description, "kept");
    assert_eq!(meta.tags, ["eu", "prod"]);
    assert_eq!((meta.default_queue_type.as_deref(), meta.tracing), (Some("quorum"), true));
    let u = b.broker.users.get(&user).expect("the user is back");
    assert_eq!(u.tags, ["monitoring"]);
    assert_eq!(b.broker.permissions.get(&user, &v).as_deref(), Some(&p));
    assert_eq!(b.broker.permissions.get("guest", &v).as_deref(), Some(&Permission::full("guest", v.clone())));
    {
        let conn = Connection::connect(&b.uri_with(&user, "s3cret", &vhost), Default::default()).await.unwrap();
        let ch = conn.create_channel().await.unwrap();
        common::passive_declare(&ch, &queue).await.expect("the vhost's durable queue is back");
        conn.close(200, "restart".into()).await.unwrap();
    }

    // Deleting is kept, the defaults' too: a restart does not bring back `/` or `guest`.
    assert!(b.broker.delete_vhost(&v).unwrap());
    assert!(b.broker.delete_user(&user).unwrap());
    assert!(b.broker.delete_vhost(&short("/")).unwrap());
    assert!(b.broker.delete_user("guest").unwrap());
    let b = b.restart().await;
    assert!(b.broker.vhosts().is_empty(), "no vhost comes back");
    assert!(b.broker.users.list().is_empty(), "no user comes back");
    assert!(b.broker.permissions.list().is_empty());

    // Created again under the same name, the vhost starts empty.
    b.broker.put_vhost(v.clone(), VHostSpec::default(), None).unwrap();
    assert!(b.broker.vhost(&v).unwrap().queue(&short(&queue)).is_err());
}

/// Opens the broker on `dir`, waiting for the previous one's threads to let go of the store.
fn open_broker(dir: &std::path::Path) -> Broker {
    let deadline = std::time::Instant::now() + common::WAIT;
    loop {
        match Broker::open(Limits::default(), dir) {
            Ok(b) => return b,
            Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
            Err(_) => std::thread::sleep(std::time::Duration::from_millis(10)),
        }
    }
}

#[test]
fn a_data_directory_from_before_vhosts_were_kept_gets_the_defaults() {
    let dir = tempfile::tempdir().unwrap();
    {
        // What an older Warren left: definitions of `/`, no vhost, user or permission records.
        let store = Store::open(dir.path()).unwrap();
        let q = QueueDef {
            vhost: short("/"),
            name: short("old"),
            id: 1,
            auto_delete: false,
            arguments: Default::default(),
        };
        store.save_queue(&q).unwrap();
        assert!(!store.load_definitions().unwrap().initialised);
    }
    let lo: std::net::IpAddr = "127.0.0.1".parse().unwrap();
    for run in 0..2 {
        let b = open_broker(dir.path());
        let root = b.vhost(&short("/")).expect("vhost / exists");
        assert!(root.queue(&short("old")).is_ok(), "run {run}: its definitions are restored");
        assert_eq!(root.meta().description, "Default virtual host");
        assert!(b.users.authenticate("guest", "guest", lo).is_ok(), "run {run}");
        assert!(b.users.get("guest").unwrap().has_tag("administrator"));
        assert_eq!(
            b.permissions.list().iter().map(|p| (**p).clone()).collect::<Vec<_>>(),
            [Permission::full("guest", short("/"))]
        );
        b.flush_store();
    }
    let store = Store::open(dir.path()).unwrap();
    let defs = store.load_definitions().unwrap();
    assert!(defs.initialised, "marked once the defaults are written");
    assert_eq!((defs.vhosts.len(), defs.users.len(), defs.permissions.len()), (1, 1, 1), "written once");
}
