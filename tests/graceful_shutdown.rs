//! SIGTERM: clients are told 320 CONNECTION_FORCED, the process exits 0, and everything
//! confirmed is there when it starts again.

mod common;

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use common::{connect_port, free_port, reply_code, spawn_warren};
use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sigterm_closes_clients_with_320_flushes_and_exits_0() {
    let data = tempfile::tempdir().unwrap();
    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    let conn = connect_port(port).await;
    let seen: Arc<Mutex<Option<lapin::Error>>> = Arc::default();
    let sink = seen.clone();
    let mut events = conn.events_listener();
    tokio::spawn(async move {
        use futures_lite::StreamExt;
        while let Some(event) = events.next().await {
            if let lapin::Event::Error(e) = event {
                *sink.lock().unwrap() = Some(e);
            }
        }
    });
    let ch = conn.create_channel().await.unwrap();
    ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
    ch.queue_declare("kept".into(), QueueDeclareOptions { durable: true, ..Default::default() }, FieldTable::default())
        .await
        .unwrap();
    for i in 0..100u32 {
        let props = BasicProperties::default().with_delivery_mode(2);
        let confirm =
            ch.basic_publish("".into(), "kept".into(), Default::default(), &i.to_be_bytes(), props).await.unwrap();
        assert!(confirm.await.unwrap().is_ack());
    }

    let status = std::process::Command::new("kill").args(["-TERM", &warren.id().to_string()]).status().unwrap();
    assert!(status.success());
    let deadline = Instant::now() + Duration::from_secs(10);
    let exit = loop {
        if let Some(exit) = warren.try_wait().unwrap() {
            break exit;
        }
        assert!(Instant::now() < deadline, "warren did not stop within 10 s of SIGTERM");
        tokio::time::sleep(Duration::from_millis(20)).await;
    };
    assert!(exit.success(), "exit status {exit:?}");
    let deadline = Instant::now() + Duration::from_secs(5);
    while seen.lock().unwrap().is_none() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let err = seen.lock().unwrap().take().expect("the client was told the connection closed");
    assert_eq!(reply_code(&err), Some(320), "{err}");

    let port = free_port();
    let mut warren = spawn_warren(data.path(), port);
    let (_conn, ch) = {
        let c = connect_port(port).await;
        let ch = c.create_channel().await.unwrap();
        (c, ch)
    };
    let n = common::passive_declare(&ch, "kept").await.unwrap().message_count();
    assert_eq!(n, 100);
    warren.kill().unwrap();
    warren.wait().unwrap();
}
