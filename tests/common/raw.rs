//! A client that speaks AMQP frame by frame over a plain socket, for tests of what a broken,
//! hostile or racing client gets back, byte for byte.

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use warren::protocol::methods::*;
use warren::protocol::{decode_frame, encode_method, FieldTable, Frame, LongStr, Method, ShortStr, PROTOCOL_HEADER};

pub struct Raw {
    pub sock: TcpStream,
    pub buf: BytesMut,
}

impl Raw {
    pub async fn connect(addr: std::net::SocketAddr) -> Raw {
        Raw { sock: TcpStream::connect(addr).await.unwrap(), buf: BytesMut::new() }
    }

    pub async fn send(&mut self, bytes: &[u8]) {
        self.sock.write_all(bytes).await.unwrap();
    }

    pub async fn send_method(&mut self, channel: u16, m: Method) {
        let mut b = BytesMut::new();
        encode_method(&mut b, channel, &m);
        self.send(&b).await;
    }

    /// The next frame, or None when the server closed the socket.
    pub async fn frame(&mut self) -> Option<Frame> {
        loop {
            if let Some(f) = decode_frame(&mut self.buf, 0).expect("server sends valid frames") {
                return Some(f);
            }
            let n = tokio::time::timeout(super::WAIT, self.sock.read_buf(&mut self.buf)).await.expect("timely").ok()?;
            if n == 0 {
                return None;
            }
        }
    }

    pub async fn method(&mut self) -> Method {
        loop {
            match self.frame().await.expect("a frame") {
                Frame::Method { method, .. } => return method,
                Frame::Heartbeat => continue,
                other => panic!("expected a method, got {other:?}"),
            }
        }
    }

    /// Protocol header, start/start-ok, tune/tune-ok, open/open-ok, heartbeats off.
    pub async fn handshake(addr: std::net::SocketAddr) -> Raw {
        Raw::handshake_with_heartbeat(addr, 0).await
    }

    pub async fn handshake_with_heartbeat(addr: std::net::SocketAddr, heartbeat: u16) -> Raw {
        Raw::handshake_with(addr, heartbeat, FieldTable::new()).await
    }

    /// The handshake with these client properties (`capabilities`, say).
    pub async fn handshake_with(addr: std::net::SocketAddr, heartbeat: u16, client_properties: FieldTable) -> Raw {
        let mut r = Raw::connect(addr).await;
        r.send(PROTOCOL_HEADER).await;
        let Method::ConnectionStart(start) = r.method().await else { panic!("expected start") };
        assert_eq!((start.version_major, start.version_minor), (0, 9));
        r.send_method(
            0,
            Method::ConnectionStartOk(ConnectionStartOk {
                client_properties,
                mechanism: ShortStr::from_static("PLAIN"),
                response: LongStr::from("\0guest\0guest"),
                locale: ShortStr::from_static("en_US"),
            }),
        )
        .await;
        let Method::ConnectionTune(tune) = r.method().await else { panic!("expected tune") };
        r.send_method(
            0,
            Method::ConnectionTuneOk(ConnectionTuneOk { channel_max: tune.channel_max, frame_max: 4096, heartbeat }),
        )
        .await;
        r.send_method(0, Method::ConnectionOpen(ConnectionOpen { virtual_host: ShortStr::from_static("/") })).await;
        assert!(matches!(r.method().await, Method::ConnectionOpenOk(_)));
        r
    }

    pub async fn expect_connection_close(&mut self, code: u16) -> ConnectionClose {
        match self.method().await {
            Method::ConnectionClose(c) => {
                assert_eq!(c.reply_code, code, "reply text: {}", c.reply_text);
                self.send_method(0, Method::ConnectionCloseOk(ConnectionCloseOk {})).await;
                c
            }
            other => panic!("expected connection.close {code}, got {other:?}"),
        }
    }
}
