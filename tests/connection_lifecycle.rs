//! Connection handshake outcomes through a real client.

mod common;

use common::reply_code;
use lapin::{Connection, ConnectionProperties};

#[tokio::test]
async fn wrong_password_is_refused_with_403() {
    let b = common::start().await;
    let err =
        Connection::connect(&b.uri_with("guest", "wrong", "%2f"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(403), "{err}");
}

#[tokio::test]
async fn unknown_vhost_is_530() {
    let b = common::start().await;
    let err =
        Connection::connect(&b.uri_with("guest", "guest", "nope"), ConnectionProperties::default()).await.unwrap_err();
    assert_eq!(reply_code(&err), Some(530), "{err}");
}

#[tokio::test]
async fn many_channels_and_clean_close() {
    let b = common::start().await;
    let conn = b.connect().await;
    let mut chans = Vec::new();
    for _ in 0..50 {
        chans.push(conn.create_channel().await.unwrap());
    }
    for ch in &chans {
        ch.basic_qos(10, Default::default()).await.unwrap();
    }
    conn.close(200, "done".into()).await.unwrap();
}
