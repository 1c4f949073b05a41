//! Shared harness: an in-process broker on a random port, and lapin helpers.
#![allow(dead_code)]

use std::net::SocketAddr;
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use warren::config::Config;
use warren::server::Listener;

pub struct TestBroker {
    pub addr: SocketAddr,
    _data: tempfile::TempDir,
}

impl TestBroker {
    pub fn uri(&self) -> String {
        format!("amqp://guest:guest@{}/%2f", self.addr)
    }

    pub fn uri_with(&self, user: &str, pass: &str, vhost: &str) -> String {
        format!("amqp://{user}:{pass}@{}/{vhost}", self.addr)
    }

    pub async fn connect(&self) -> Connection {
        Connection::connect(&self.uri(), ConnectionProperties::default()).await.expect("connect")
    }

    pub async fn channel(&self) -> (Connection, Channel) {
        let conn = self.connect().await;
        let ch = conn.create_channel().await.expect("channel");
        (conn, ch)
    }
}

/// Starts a broker on 127.0.0.1 with a random port and a temporary data directory.
pub async fn start() -> TestBroker {
    let data = tempfile::tempdir().expect("tempdir");
    let config =
        Config { bind: "127.0.0.1".into(), port: 0, data_dir: data.path().to_path_buf(), log_level: "warn".into() };
    let listener = Listener::bind(&config).await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    tokio::spawn(listener.run());
    TestBroker { addr, _data: data }
}

/// The AMQP reply code of a lapin error, if the broker sent one.
pub fn reply_code(e: &lapin::Error) -> Option<u16> {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => Some(amqp.get_id()),
        _ => None,
    }
}

pub fn reply_text(e: &lapin::Error) -> String {
    match e.kind() {
        lapin::ErrorKind::ProtocolError(amqp) => amqp.get_message().to_string(),
        other => format!("{other:?}"),
    }
}

/// A unique name per test run, so tests never share queues.
pub fn unique(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

pub const WAIT: Duration = Duration::from_secs(5);
