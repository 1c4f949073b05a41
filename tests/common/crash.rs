//! kill -9 under confirmed publishing, shared by the crash tests of queues and streams.

use std::path::Path;
use std::time::Duration;

use lapin::options::*;
use lapin::types::FieldTable;
use lapin::BasicProperties;

use super::{connect_port, free_port, spawn_warren};

/// Confirms awaited at a time.
const WINDOW: u32 = 50;

/// A pseudo-random kill delay between 100 and 900 ms (no RNG crate needed for this).
pub fn kill_delay(round: usize) -> Duration {
    let nanos = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().subsec_nanos();
    Duration::from_millis(100 + (u64::from(nanos) + round as u64 * 331) % 800)
}

/// What the rounds publish: to the durable queue `queue` (declared with `arguments`), bodies
/// made by `body` from ids counted up from 0 (never reused, even when a kill lands in the
/// middle of a window), with `properties`.
pub struct Load {
    pub queue: &'static str,
    pub arguments: FieldTable,
    pub properties: BasicProperties,
    pub body: fn(u32) -> Vec<u8>,
}

/// `rounds` times: Warren on `data`, publishing with confirms until a kill -9 at a random
/// moment. Returns the ids whose confirms arrived, in order.
pub async fn confirmed_across_kills(data: &Path, rounds: usize, load: &Load) -> Vec<u32> {
    let mut confirmed: Vec<u32> = Vec::new();
    let mut next_id = 0u32;
    for round in 0..rounds {
        let port = free_port();
        let mut warren = spawn_warren(data, port);
        let conn = connect_port(port).await;
        let ch = conn.create_channel().await.unwrap();
        ch.confirm_select(ConfirmSelectOptions::default()).await.unwrap();
        let durable = QueueDeclareOptions { durable: true, ..Default::default() };
        ch.queue_declare(load.queue.into(), durable, load.arguments.clone()).await.unwrap();
        let publishing = async {
            loop {
                let mut window = Vec::new();
                for _ in 0..WINDOW {
                    let id = next_id;
                    next_id += 1;
                    let payload = (load.body)(id);
                    let publish = ch.basic_publish(
                        "".into(),
                        load.queue.into(),
                        BasicPublishOptions::default(),
                        &payload,
                        load.properties.clone(),
                    );
                    match publish.await {
                        Ok(c) => window.push((id, c)),
                        Err(_) => return,
                    }
                }
                for (id, c) in window {
                    match c.await {
                        Ok(conf) if conf.is_ack() => confirmed.push(id),
                        _ => return,
                    }
                }
            }
        };
        tokio::select! {
            _ = publishing => {}
            _ = tokio::time::sleep(kill_delay(round)) => {}
        }
        warren.kill().expect("SIGKILL");
        warren.wait().unwrap();
        drop(conn);
    }
    assert!(!confirmed.is_empty(), "nothing was confirmed before the kills; the test proved nothing");
    confirmed
}
