//! Shared harness: an in-process broker on a random port, and lapin helpers.
#![allow(dead_code)]

pub mod crash;
pub mod http;
pub mod lifecycle;
pub mod raw;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use lapin::{Channel, Connection, ConnectionProperties};
use warren::config::Config;
use warren::protocol::ShortStr;
use warren::server::Listener;

pub struct TestBroker {
    pub addr: SocketAddr,
    /// The management HTTP API (`http://{mgmt}/api/...`).
    pub mgmt: SocketAddr,
    /// The Prometheus endpoint (`http://{prometheus}/metrics`).
    pub prometheus: SocketAddr,
    /// The in-process broker, for looking inside (queue state) where the protocol cannot.
    pub broker: Arc<warren::broker::Broker>,
    /// The AMQPS listener, when the broker was started with TLS files ([`start_configured`]).
    pub tls_addr: Option<SocketAddr>,
    tweak: fn(&mut Config),
    data: tempfile::TempDir,
    task: tokio::task::JoinHandle<std::io::Result<()>>,
    mgmt_task: tokio::task::JoinHandle<std::io::Result<()>>,
    prometheus_task: tokio::task::JoinHandle<std::io::Result<()>>,
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

    pub fn queue(&self, name: &str) -> Arc<warren::broker::queue::Queue> {
        let vhost = self.broker.vhost(&ShortStr::from_static("/")).expect("vhost /");
        vhost.queue(&ShortStr::try_from(name).unwrap()).expect("queue exists")
    }

    pub fn data_dir(&self) -> &std::path::Path {
        self.data.path()
    }

    /// Stops this broker and starts another on the same data directory (a new port). Clients
    /// must have closed their connections: their tasks hold the store open until they end.
    pub async fn restart(self) -> TestBroker {
        self.restart_after(Duration::ZERO).await
    }

    /// Same, staying down for `down` first (for deadlines that pass while no broker runs): the
    /// old broker is gone — its timer stopped — before that pause starts.
    pub async fn restart_after(self, down: Duration) -> TestBroker {
        let TestBroker { data, task, mgmt_task, prometheus_task, tweak, broker, .. } = self;
        mgmt_task.abort();
        let _ = mgmt_task.await;
        prometheus_task.abort();
        let _ = prometheus_task.await;
        let old = Arc::downgrade(&broker);
        drop(broker);
        task.abort();
        let _ = task.await;
        if !down.is_zero() {
            let deadline = std::time::Instant::now() + WAIT;
            while old.strong_count() > 0 {
                assert!(std::time::Instant::now() < deadline, "the old broker lives on (a client still connected?)");
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
            tokio::time::sleep(down).await;
        }
        let deadline = std::time::Instant::now() + WAIT;
        let listener = loop {
            match Listener::bind(&config(data.path(), tweak)).await {
                Ok(l) => break l,
                Err(_) if std::time::Instant::now() < deadline => tokio::time::sleep(Duration::from_millis(20)).await,
                Err(e) => panic!("broker did not restart on its data directory: {e}"),
            }
        };
        serve(listener, tweak, data).await
    }
}

fn config(data_dir: &std::path::Path, tweak: fn(&mut Config)) -> Config {
    let mut c = Config {
        bind: "127.0.0.1".into(),
        port: 0,
        data_dir: data_dir.to_path_buf(),
        log_level: "warn".into(),
        ..Config::default()
    };
    tweak(&mut c);
    c
}

async fn serve(listener: Listener, tweak: fn(&mut Config), data: tempfile::TempDir) -> TestBroker {
    let addr = listener.local_addr().expect("addr");
    let tls_addr = listener.tls_addr();
    let broker = listener.broker().clone();
    let mgmt = warren::mgmt::MgmtListener::bind(broker.clone(), "127.0.0.1", 0, addr).await.expect("bind the HTTP API");
    let mgmt_addr = mgmt.local_addr().expect("addr");
    let prometheus =
        warren::metrics::PrometheusListener::bind(broker.clone(), "127.0.0.1", 0).await.expect("bind Prometheus");
    let prometheus_addr = prometheus.local_addr().expect("addr");
    let task = tokio::spawn(listener.run());
    let mgmt_task = tokio::spawn(mgmt.run());
    let prometheus_task = tokio::spawn(prometheus.run());
    TestBroker {
        addr,
        mgmt: mgmt_addr,
        prometheus: prometheus_addr,
        broker,
        tls_addr,
        tweak,
        data,
        task,
        mgmt_task,
        prometheus_task,
    }
}

/// Starts a broker on 127.0.0.1 with a random port and a temporary data directory.
pub async fn start() -> TestBroker {
    start_with(|_| {}).await
}

/// Same, with settings changed by `tweak` (kept across restarts).
pub async fn start_with(tweak: fn(&mut Config)) -> TestBroker {
    let data = tempfile::tempdir().expect("tempdir");
    let listener = Listener::bind(&config(data.path(), tweak)).await.expect("bind");
    serve(listener, tweak, data).await
}

/// Starts a broker with settings known only at run time (TLS files in a temporary directory,
/// say), set by `set` on the test configuration (`port: 0`; set `tls_port` to 0 too). A restart
/// does not apply them again.
pub async fn start_configured(set: impl FnOnce(&mut Config)) -> TestBroker {
    let data = tempfile::tempdir().expect("tempdir");
    let mut c = config(data.path(), |_| {});
    set(&mut c);
    let listener = Listener::bind(&c).await.expect("bind");
    serve(listener, |_| {}, data).await
}

/// The first error the connection reports (a close the broker sent, say), as lapin raises it.
pub fn first_error(conn: &Connection) -> std::sync::Arc<std::sync::Mutex<Option<lapin::Error>>> {
    use futures_lite::StreamExt;
    let seen: std::sync::Arc<std::sync::Mutex<Option<lapin::Error>>> = Default::default();
    let sink = seen.clone();
    let mut events = conn.events_listener();
    tokio::spawn(async move {
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(e) = event {
                sink.lock().unwrap().get_or_insert(e);
            }
        }
    });
    seen
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

/// Polls `f` until it gives something or [`WAIT`] passes.
pub async fn eventually<T>(what: &str, mut f: impl FnMut() -> Option<T>) -> T {
    let deadline = std::time::Instant::now() + WAIT;
    loop {
        if let Some(v) = f() {
            return v;
        }
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

/// A port that was free a moment ago, for a broker process to bind.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// Runs the real `warren` binary on `port` with `data` as its data directory: the one cargo
/// built with the tests, or `WARREN_BIN` if set (a release build, or a script that `exec`s one
/// with something preloaded: the process must be Warren itself, for `kill -9`).
pub fn spawn_warren(data: &std::path::Path, port: u16) -> std::process::Child {
    use std::process::{Command, Stdio};
    let bin = std::env::var_os("WARREN_BIN").unwrap_or_else(|| env!("CARGO_BIN_EXE_warren").into());
    Command::new(bin)
        .args([
            "--bind",
            "127.0.0.1",
            "--port",
            &port.to_string(),
            "--mgmt-port",
            "0",
            "--prometheus-port",
            "0",
            "--log-level",
            "warn",
            "--data-dir",
        ])
        .arg(data)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::inherit())
        .spawn()
        .expect("start the warren binary")
}

/// Connects to a broker process that may still be starting.
pub async fn connect_port(port: u16) -> Connection {
    let uri = format!("amqp://guest:guest@127.0.0.1:{port}/%2f");
    let deadline = std::time::Instant::now() + Duration::from_secs(20);
    loop {
        // One attempt once hung in CI with no socket open and nothing left to wake it (the
        // broker up and idle): an attempt that takes this long is given up and made again.
        let attempt =
            tokio::time::timeout(Duration::from_secs(5), Connection::connect(&uri, ConnectionProperties::default()));
        match attempt.await {
            Ok(Ok(c)) => return c,
            Ok(Err(e)) if std::time::Instant::now() > deadline => panic!("warren did not come up: {e}"),
            Err(_) if std::time::Instant::now() > deadline => panic!("warren did not come up: connecting timed out"),
            _ => tokio::time::sleep(Duration::from_millis(50)).await,
        }
    }
}

/// `queue.declare` with `passive`: the queue's counts, or the broker's error.
pub async fn passive_declare(ch: &Channel, queue: &str) -> lapin::Result<lapin::Queue> {
    use lapin::options::QueueDeclareOptions;
    ch.queue_declare(queue.into(), QueueDeclareOptions { passive: true, ..Default::default() }, Default::default())
        .await
}
