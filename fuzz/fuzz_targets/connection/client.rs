//! A raw AMQP client over TCP: the handshake, a task that reads (and checks) everything the
//! broker sends, queued writes, and a close that waits for the broker's answer.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::BytesMut;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::tcp::OwnedWriteHalf;
use tokio::net::TcpStream;
use tokio::sync::Notify;
use tokio::task::JoinHandle;
use warren::protocol::methods::*;
use warren::protocol::{decode_frame, encode_method, FieldTable, Frame, LongStr, Method, ShortStr, PROTOCOL_HEADER};

/// With `WARREN_FUZZ_VERBOSE` set, every frame sent and received is printed (to replay an input
/// and see what it does: `connection FILE`).
pub fn verbose() -> bool {
    static VERBOSE: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *VERBOSE.get_or_init(|| std::env::var_os("WARREN_FUZZ_VERBOSE").is_some())
}

/// Prints the frames in `bytes` (as far as they decode) with `prefix`.
pub fn trace(prefix: &str, bytes: &[u8]) {
    let mut buf = BytesMut::from(bytes);
    loop {
        match decode_frame(&mut buf, 0) {
            Ok(Some(frame)) => eprintln!("{prefix} {}", describe(&frame)),
            Ok(None) if buf.is_empty() => return,
            Ok(None) => return eprintln!("{prefix} {} octets of an incomplete frame", buf.len()),
            Err(e) => return eprintln!("{prefix} {} octets that do not decode: {e:?}", buf.len()),
        }
    }
}

fn describe(frame: &Frame) -> String {
    let text = match frame {
        Frame::Method { channel, method } => format!("ch {channel} {method:?}"),
        Frame::Body { channel, payload } => format!("ch {channel} body of {} octets", payload.len()),
        other => format!("{other:?}"),
    };
    text.chars().take(300).collect()
}

/// How long the broker may take to answer anything before the run counts as a hang. Far above
/// what any step needs (milliseconds), so that a loaded machine does not make a false finding.
pub const PATIENCE: Duration = Duration::from_secs(20);

/// Waits for `what`, or fails the run: a broker that stops answering is a finding.
pub async fn timely<T>(what: &str, f: impl std::future::Future<Output = T>) -> T {
    match tokio::time::timeout(PATIENCE, f).await {
        Ok(v) => v,
        Err(_) => panic!("the broker did not answer within {PATIENCE:?}: {what}"),
    }
}

/// The next method on `sock` (heartbeats skipped), during a handshake or a check, where the
/// broker must answer well: anything else fails the run.
pub async fn read_method(sock: &mut TcpStream, buf: &mut BytesMut) -> Method {
    loop {
        match decode_frame(buf, 0) {
            Ok(Some(Frame::Method { method, .. })) => return method,
            Ok(Some(Frame::Heartbeat)) => continue,
            Ok(Some(other)) => panic!("expected a method from the broker, got {other:?}"),
            Ok(None) => {}
            Err(e) => panic!("the broker sent an undecodable frame: {e:?}"),
        }
        let n = timely("a method", sock.read_buf(buf)).await.expect("read from the broker");
        assert!(n > 0, "the broker closed a healthy connection");
    }
}

pub async fn send(sock: &mut TcpStream, channel: u16, m: Method) {
    let mut b = BytesMut::new();
    encode_method(&mut b, channel, &m);
    timely("a write", sock.write_all(&b)).await.expect("write to the broker");
}

/// Protocol header, start-ok (PLAIN guest/guest), tune-ok (no heartbeats), open of `/`: a
/// handshake done right, which the broker must always complete.
pub async fn handshake(addr: SocketAddr, frame_max: u32) -> (TcpStream, BytesMut) {
    let mut sock = timely("connect", TcpStream::connect(addr)).await.expect("connect to the broker");
    let _ = sock.set_nodelay(true);
    let mut buf = BytesMut::new();
    timely("a write", sock.write_all(PROTOCOL_HEADER)).await.expect("send the protocol header");
    let Method::ConnectionStart(_) = read_method(&mut sock, &mut buf).await else {
        panic!("expected connection.start")
    };
    let start_ok = ConnectionStartOk {
        client_properties: FieldTable::new(),
        mechanism: ShortStr::from_static("PLAIN"),
        response: LongStr::from("\0guest\0guest"),
        locale: ShortStr::from_static("en_US"),
    };
    send(&mut sock, 0, Method::ConnectionStartOk(start_ok)).await;
    let Method::ConnectionTune(tune) = read_method(&mut sock, &mut buf).await else {
        panic!("expected connection.tune")
    };
    let tune_ok = ConnectionTuneOk { channel_max: tune.channel_max, frame_max, heartbeat: 0 };
    send(&mut sock, 0, Method::ConnectionTuneOk(tune_ok)).await;
    send(&mut sock, 0, Method::ConnectionOpen(ConnectionOpen { virtual_host: ShortStr::from_static("/") })).await;
    match read_method(&mut sock, &mut buf).await {
        Method::ConnectionOpenOk(_) => (sock, buf),
        other => panic!("expected connection.open-ok, got {other:?}"),
    }
}

/// What the read task saw.
#[derive(Default)]
struct Seen {
    /// Frames received so far.
    frames: AtomicU64,
    /// The latest delivery tag per channel (deliveries and get-oks).
    tags: Mutex<HashMap<u16, u64>>,
    /// The broker sent `connection.close`: it waits for `close-ok` and reads nothing else.
    closed_by_broker: AtomicBool,
    close: Notify,
}

/// Frames queued for a connection, written in one go.
pub struct Writer {
    /// Which of the run's connections, for the trace.
    id: usize,
    write: OwnedWriteHalf,
    queued: BytesMut,
    /// A write failed: the broker has closed the socket.
    broken: bool,
}

impl Writer {
    pub fn queue(&mut self, bytes: &[u8]) {
        self.queued.extend_from_slice(bytes);
    }

    pub fn method(&mut self, channel: u16, m: Method) {
        encode_method(&mut self.queued, channel, &m);
    }

    /// Writes what is queued (dropped once the connection is gone).
    pub async fn flush(&mut self) {
        let bytes = std::mem::take(&mut self.queued);
        if bytes.is_empty() || self.broken {
            return;
        }
        if verbose() {
            trace(&format!("  c{} ->", self.id), &bytes);
        }
        if timely("a write (is the broker still reading?)", self.write.write_all(&bytes)).await.is_err() {
            self.broken = true;
        }
    }
}

/// A fuzzed connection, handshake done.
pub struct Client {
    pub out: Writer,
    seen: Arc<Seen>,
    reader: JoinHandle<()>,
}

impl Client {
    pub async fn connect(id: usize, addr: SocketAddr, frame_max: u32) -> Client {
        let (sock, buf) = handshake(addr, frame_max).await;
        let (read, write) = sock.into_split();
        let seen = Arc::new(Seen::default());
        let reader = tokio::spawn(read_all(id, read, buf, seen.clone()));
        let mut out = Writer { id, write, queued: BytesMut::new(), broken: false };
        // Channels 1 and 2 start open, so that most steps land on a usable channel.
        out.method(1, Method::ChannelOpen(ChannelOpen {}));
        out.method(2, Method::ChannelOpen(ChannelOpen {}));
        Client { out, seen, reader }
    }

    /// The latest delivery tag seen on `channel` (0 for none).
    pub fn last_tag(&self, channel: u16) -> u64 {
        self.seen.tags.lock().unwrap().get(&channel).copied().unwrap_or(0)
    }

    /// Writes what is queued, then waits for the broker's answers: until something has come
    /// back and then nothing more for a millisecond, 5 ms at most, and not at all when nothing
    /// was queued (so that a run of pauses costs no more than one).
    pub async fn pause(&mut self) {
        if self.out.queued.is_empty() {
            return tokio::task::yield_now().await;
        }
        let before = self.seen.frames.load(Ordering::Relaxed);
        self.out.flush().await;
        let deadline = tokio::time::Instant::now() + Duration::from_millis(5);
        let mut last = before;
        while tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(1)).await;
            let now = self.seen.frames.load(Ordering::Relaxed);
            if now != before && now == last {
                return;
            }
            last = now;
        }
    }

    /// Whether steps should still be sent: not once the broker closed the connection.
    pub fn open(&self) -> bool {
        !self.out.broken && !self.seen.closed_by_broker.load(Ordering::Acquire)
    }

    /// Ends the connection as a client should: `connection.close` and wait for `close-ok` (or
    /// for the socket to close), answering the broker's own close with `close-ok`.
    pub async fn finish(self) {
        let Client { mut out, seen, mut reader } = self;
        if seen.closed_by_broker.load(Ordering::Acquire) {
            out.queued.clear();
        } else {
            let close = ConnectionClose {
                reply_code: 200,
                reply_text: ShortStr::from_static("done"),
                class_id: 0,
                method_id: 0,
            };
            out.method(0, Method::ConnectionClose(close));
        }
        out.flush().await;
        let mut answered = false;
        timely("connection.close", async {
            loop {
                tokio::select! {
                    r = &mut reader => {
                        r.expect("the read task");
                        return;
                    }
                    _ = seen.close.notified(), if !answered => {
                        answered = true;
                        out.method(0, Method::ConnectionCloseOk(ConnectionCloseOk {}));
                        out.flush().await;
                    }
                }
            }
        })
        .await;
    }
}

/// Reads and decodes everything the broker sends until it closes the socket or answers our
/// `connection.close`. A frame that does not decode is a finding.
async fn read_all(id: usize, mut read: tokio::net::tcp::OwnedReadHalf, mut buf: BytesMut, seen: Arc<Seen>) {
    loop {
        loop {
            let frame = match decode_frame(&mut buf, 0) {
                Ok(Some(frame)) => frame,
                Ok(None) => break,
                Err(e) => panic!("the broker sent an undecodable frame: {e:?}"),
            };
            if verbose() {
                eprintln!("  c{id} <- {}", describe(&frame));
            }
            seen.frames.fetch_add(1, Ordering::Relaxed);
            let Frame::Method { channel, method } = frame else { continue };
            match method {
                Method::BasicDeliver(BasicDeliver { delivery_tag, .. })
                | Method::BasicGetOk(BasicGetOk { delivery_tag, .. }) => {
                    seen.tags.lock().unwrap().insert(channel, delivery_tag);
                }
                Method::ConnectionClose(_) => {
                    seen.closed_by_broker.store(true, Ordering::Release);
                    seen.close.notify_one();
                }
                Method::ConnectionCloseOk(_) => return,
                _ => {}
            }
        }
        match read.read_buf(&mut buf).await {
            Ok(0) | Err(_) => return,
            Ok(_) => {}
        }
    }
}

/// A connection that sends `bytes` and hangs up without reading.
pub async fn stranger(addr: SocketAddr, bytes: &[u8]) {
    let mut sock = timely("connect", TcpStream::connect(addr)).await.expect("connect to the broker");
    let _ = timely("a stranger's write", sock.write_all(bytes)).await;
}
