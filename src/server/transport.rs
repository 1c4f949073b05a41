//! What a connection runs over: any byte stream that splits into a read half for the read loop
//! and a write half for the writer task. Plain TCP splits into tokio's lock-free owned halves;
//! any other stream (TLS, `tls.rs`) falls back to [`tokio::io::split`], which shares the stream
//! behind a lock.
//!
//! The halves are boxed trait objects, so the connection code is written once and the cost is
//! one dynamic call per read batch and per write batch, never per frame.

use std::io;
use std::net::SocketAddr;

use tokio::io::{AsyncRead, AsyncWrite};
use tokio::net::TcpStream;

/// The read half of a connection's stream.
pub type BoxRead = Box<dyn AsyncRead + Send + Unpin>;
/// The write half of a connection's stream.
pub type BoxWrite = Box<dyn AsyncWrite + Send + Unpin>;

/// A byte stream a connection can be served on.
pub trait Transport: AsyncRead + AsyncWrite + Send + Unpin + Sized + 'static {
    /// The read half (to the read loop) and the write half (to the writer task). The default
    /// shares the stream between the two behind tokio's split lock.
    fn into_halves(self) -> (BoxRead, BoxWrite) {
        let (read, write) = tokio::io::split(self);
        (Box::new(read), Box::new(write))
    }

    /// The client's address.
    fn peer_addr(&self) -> io::Result<SocketAddr>;

    /// Our end's address (the listener's address the client reached).
    fn local_addr(&self) -> io::Result<SocketAddr>;

    /// What the TLS layer learnt, on a TLS connection; `None` on plain TCP.
    fn tls(&self) -> Option<TlsInfo> {
        None
    }

    /// The TCP socket, when the stream is one (reads are coalesced through its options, see
    /// `coalesce.rs`).
    fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        None
    }
}

/// A TLS connection's facts the handshake needs (SASL `EXTERNAL` is offered only on TLS).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TlsInfo {
    /// Whether client certificates are verified (`tls_verify_peer`); `EXTERNAL` refuses
    /// otherwise, as RabbitMQ does ("TLS configuration is unsafe").
    pub verify_peer: bool,
    /// The user name `EXTERNAL` logs in as: the verified client certificate's subject (RFC 2253
    /// string) or its CN, per `tls_cert_login_from`; `None` without a client certificate.
    pub cert_login: Option<String>,
}

impl Transport for TcpStream {
    /// Owned halves: reading and writing never contend for a lock.
    fn into_halves(self) -> (BoxRead, BoxWrite) {
        let (read, write) = self.into_split();
        (Box::new(read), Box::new(write))
    }

    fn peer_addr(&self) -> io::Result<SocketAddr> {
        TcpStream::peer_addr(self)
    }

    fn local_addr(&self) -> io::Result<SocketAddr> {
        TcpStream::local_addr(self)
    }

    fn tcp_fd(&self) -> Option<std::os::fd::RawFd> {
        Some(std::os::fd::AsRawFd::as_raw_fd(self))
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt, DuplexStream};

    /// A stream that is not TCP, as a TLS stream will be.
    struct Piped(DuplexStream);

    impl AsyncRead for Piped {
        fn poll_read(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &mut tokio::io::ReadBuf<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_read(cx, buf)
        }
    }

    impl AsyncWrite for Piped {
        fn poll_write(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
            buf: &[u8],
        ) -> std::task::Poll<io::Result<usize>> {
            std::pin::Pin::new(&mut self.0).poll_write(cx, buf)
        }

        fn poll_flush(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_flush(cx)
        }

        fn poll_shutdown(
            mut self: std::pin::Pin<&mut Self>,
            cx: &mut std::task::Context<'_>,
        ) -> std::task::Poll<io::Result<()>> {
            std::pin::Pin::new(&mut self.0).poll_shutdown(cx)
        }
    }

    impl Transport for Piped {
        fn peer_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 1)))
        }

        fn local_addr(&self) -> io::Result<SocketAddr> {
            Ok(SocketAddr::from(([127, 0, 0, 1], 2)))
        }
    }

    #[tokio::test]
    async fn the_generic_split_reads_and_writes_both_ways() {
        let (ours, mut theirs) = tokio::io::duplex(64);
        let (mut read, mut write) = Piped(ours).into_halves();
        write.write_all(b"ping").await.unwrap();
        let mut got = [0u8; 4];
        theirs.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"ping");
        theirs.write_all(b"pong").await.unwrap();
        read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"pong");
    }

    #[tokio::test]
    async fn tcp_splits_into_owned_halves() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        let client = tokio::spawn(async move { TcpStream::connect(addr).await.unwrap() });
        let (server, _) = listener.accept().await.unwrap();
        let mut client = client.await.unwrap();
        assert_eq!(Transport::local_addr(&server).unwrap(), addr);
        assert_eq!(Transport::peer_addr(&server).unwrap(), client.local_addr().unwrap());
        let (mut read, mut write) = server.into_halves();
        write.write_all(b"hello").await.unwrap();
        let mut got = [0u8; 5];
        client.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"hello");
        client.write_all(b"world").await.unwrap();
        read.read_exact(&mut got).await.unwrap();
        assert_eq!(&got, b"world");
    }

    /// A whole connection over a stream that is not TCP: handshake, listed in the registry,
    /// closed by the client, unlisted.
    #[tokio::test]
    async fn a_connection_is_served_over_any_transport() {
        use bytes::BytesMut;
        use std::sync::Arc;

        use crate::broker::{Broker, Limits};
        use crate::protocol::methods::*;
        use crate::protocol::{decode_frame, encode_method, FieldTable, Frame, LongStr, Method, ShortStr};

        async fn send(sock: &mut DuplexStream, m: Method) {
            let mut b = BytesMut::new();
            encode_method(&mut b, 0, &m);
            sock.write_all(&b).await.unwrap();
        }
        async fn method(sock: &mut DuplexStream, buf: &mut BytesMut) -> Method {
            loop {
                if let Some(Frame::Method { method, .. }) = decode_frame(buf, 0).unwrap() {
                    return method;
                }
                assert!(sock.read_buf(buf).await.unwrap() > 0, "the server closed the stream");
            }
        }

        let broker = Arc::new(Broker::new(Limits::default()));
        let (ours, mut client) = tokio::io::duplex(64 * 1024);
        let peer = SocketAddr::from(([127, 0, 0, 1], 1));
        let served = tokio::spawn(crate::server::connection::serve_connection(broker.clone(), Piped(ours), peer));
        let mut buf = BytesMut::new();
        client.write_all(crate::protocol::PROTOCOL_HEADER).await.unwrap();
        assert!(matches!(method(&mut client, &mut buf).await, Method::ConnectionStart(_)));
        let start_ok = ConnectionStartOk {
            client_properties: FieldTable::new(),
            mechanism: ShortStr::from_static("PLAIN"),
            response: LongStr::from("\0guest\0guest"),
            locale: ShortStr::from_static("en_US"),
        };
        send(&mut client, Method::ConnectionStartOk(start_ok)).await;
        let Method::ConnectionTune(tune) = method(&mut client, &mut buf).await else { panic!("expected tune") };
        let tune_ok = ConnectionTuneOk { channel_max: tune.channel_max, frame_max: tune.frame_max, heartbeat: 0 };
        send(&mut client, Method::ConnectionTuneOk(tune_ok)).await;
        send(&mut client, Method::ConnectionOpen(ConnectionOpen { virtual_host: ShortStr::from_static("/") })).await;
        assert!(matches!(method(&mut client, &mut buf).await, Method::ConnectionOpenOk(_)));

        let listed = broker.connections().list();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].info.name, "127.0.0.1:1 -> 127.0.0.1:2");

        let close = ConnectionClose { reply_code: 200, reply_text: ShortStr::default(), class_id: 0, method_id: 0 };
        send(&mut client, Method::ConnectionClose(close)).await;
        assert!(matches!(method(&mut client, &mut buf).await, Method::ConnectionCloseOk(_)));
        served.await.unwrap();
        assert!(broker.connections().is_empty());
        assert_eq!(broker.connection_count(), 0);
    }
}
