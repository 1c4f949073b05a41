//! Drives whole AMQP connections against an in-process Warren, as a hostile or confused client
//! would: each input is a program of frames (see `connection/input.rs`) sent on one or two
//! connections whose handshake is done, across a few channels. A run fails on any panic in the
//! broker or here (libfuzzer-sys aborts on a panic in any thread), on a frame from the broker
//! that does not decode, on a broker that stops answering (`client::PATIENCE`), when a fresh
//! connection afterwards cannot complete its handshake, delete what the run declared and close
//! cleanly, and when something of the run's connections outlives them (see [`settle`]).
#![no_main]

#[path = "connection/client.rs"]
mod client;
#[path = "connection/harness.rs"]
mod harness;
#[path = "connection/input.rs"]
mod input;

use std::net::SocketAddr;

use bytes::BytesMut;
use client::{read_method, send, Client};
use input::{Settle, Step};
use libfuzzer_sys::fuzz_target;
use tokio::net::TcpStream;
use warren::broker::Broker;
use warren::protocol::methods::*;
use warren::protocol::{Method, ShortStr};

fuzz_target!(|data: &[u8]| {
    let h = harness::get();
    h.rt.block_on(run(h.addr, &h.broker, data));
});

async fn run(addr: SocketAddr, broker: &Broker, data: &[u8]) {
    let program = input::parse(data);
    let mut conns: [Option<Client>; 2] = [Some(Client::connect(0, addr, program.frame_max).await), None];
    for step in program.steps {
        let conn = match step {
            Step::Stranger { bytes } => {
                if client::verbose() {
                    eprintln!("  stranger -> {bytes:?}");
                }
                client::stranger(addr, &bytes).await;
                continue;
            }
            Step::Send { conn, .. } | Step::Pause { conn } | Step::Settle { conn, .. } => conn,
        };
        // Steps go out in their order: what another connection has queued is written first.
        if let Some(other) = conns[1 - conn].as_mut() {
            other.out.flush().await;
        }
        if conns[conn].is_none() {
            conns[conn] = Some(Client::connect(conn, addr, program.frame_max).await);
        }
        let c = conns[conn].as_mut().expect("connected above");
        if !c.open() {
            continue;
        }
        match step {
            Step::Send { bytes, .. } => c.out.queue(&bytes),
            Step::Pause { .. } => c.pause().await,
            Step::Settle { channel, how, back, multiple, requeue, .. } => {
                let delivery_tag = c.last_tag(channel).saturating_sub(back);
                c.out.method(
                    channel,
                    match how {
                        Settle::Ack => Method::BasicAck(BasicAck { delivery_tag, multiple }),
                        Settle::Nack => Method::BasicNack(BasicNack { delivery_tag, multiple, requeue }),
                        Settle::Reject => Method::BasicReject(BasicReject { delivery_tag, requeue }),
                    },
                );
            }
            Step::Stranger { .. } => unreachable!(),
        }
    }
    for c in conns.into_iter().flatten() {
        c.finish().await;
    }
    check(addr, broker).await;
    settle(broker).await;
}

/// A fresh connection completes its handshake, deletes every queue and every exchange the run
/// declared (so that no state piles up from one run to the next), and closes cleanly.
async fn check(addr: SocketAddr, broker: &Broker) {
    let (mut sock, mut buf) = client::handshake(addr, 4096).await;
    let vhost = broker.vhost(&ShortStr::from_static("/")).expect("the default vhost");
    let mut deletes: Vec<Method> = vhost
        .queues()
        .iter()
        .map(|q| Method::QueueDelete(QueueDelete { queue: q.name.clone(), ..Default::default() }))
        .collect();
    for x in vhost.exchanges() {
        if !x.name.is_empty() && !x.name.as_bytes().starts_with(b"amq.") {
            deletes.push(Method::ExchangeDelete(ExchangeDelete { exchange: x.name.clone(), ..Default::default() }));
        }
    }
    if !deletes.is_empty() {
        open_channel(&mut sock, &mut buf).await;
    }
    for delete in deletes {
        send(&mut sock, 1, delete).await;
        expect_ok(&mut sock, &mut buf).await;
    }
    let close =
        ConnectionClose { reply_code: 200, reply_text: ShortStr::from_static("bye"), class_id: 0, method_id: 0 };
    send(&mut sock, 0, Method::ConnectionClose(close)).await;
    match read_method(&mut sock, &mut buf).await {
        Method::ConnectionCloseOk(_) => {}
        other => panic!("expected connection.close-ok, got {other:?}"),
    }
}

/// Once every connection of the run has gone, nothing it had may be left behind: no connection
/// task, nothing counted against guest's connections and channels, no queue (exclusive ones go
/// with their connection), no exchange but the predeclared ones. Checked after every input, so
/// that a leak fails the input that made it.
async fn settle(broker: &Broker) {
    let vhost = broker.vhost(&ShortStr::from_static("/")).expect("the default vhost");
    let guest = broker.connections().user_tallies("guest");
    let deadline = tokio::time::Instant::now() + client::PATIENCE;
    loop {
        let exchanges =
            vhost.exchanges().iter().filter(|x| !x.name.is_empty() && !x.name.as_bytes().starts_with(b"amq.")).count();
        let left = (
            broker.connection_count(),
            guest.connections.count(),
            guest.channels.count(),
            vhost.queues().len(),
            exchanges,
        );
        if left == (0, 0, 0, 0, 0) {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{:?} after all connections closed: (connection tasks, guest's connections, guest's channels, queues, exchanges) = {left:?}",
            client::PATIENCE,
        );
        tokio::time::sleep(std::time::Duration::from_millis(1)).await;
    }
}

async fn open_channel(sock: &mut TcpStream, buf: &mut BytesMut) {
    send(sock, 1, Method::ChannelOpen(ChannelOpen {})).await;
    match read_method(sock, buf).await {
        Method::ChannelOpenOk(_) => {}
        other => panic!("expected channel.open-ok, got {other:?}"),
    }
}

/// A delete's `-ok`, or a channel error (an exclusive queue of a connection still closing, a
/// queue an expiry just removed): then the channel is opened again.
async fn expect_ok(sock: &mut TcpStream, buf: &mut BytesMut) {
    match read_method(sock, buf).await {
        Method::QueueDeleteOk(_) | Method::ExchangeDeleteOk(_) => {}
        Method::ChannelClose(c) if c.reply_code == 404 || c.reply_code == 405 => {
            send(sock, 1, Method::ChannelCloseOk(ChannelCloseOk {})).await;
            open_channel(sock, buf).await;
        }
        other => panic!("expected a delete's -ok, got {other:?}"),
    }
}
