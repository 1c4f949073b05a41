//! A producer connection: publishes as fast as allowed (rate, confirm window, write buffer),
//! a batch of messages per write, and matches publisher confirms to send times.
//!
//! The method and content-header frames of a publish are the same for every message with the
//! same routing key, so they are encoded once (by the codec) into a template; a message is then
//! that template plus a body frame whose first 16 octets are the send time and the sequence
//! number. No allocation per message.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{BufMut, BytesMut};

use super::client::{short, ClientError, Conn};
use super::rate::RateLimiter;
use super::stats::{ConnStats, Histogram};
use warren_protocol::methods::{BasicPublish, ConfirmSelect};
use warren_protocol::{
    constants, encode_content_header, encode_method, BasicProperties, Frame, Method, FRAME_OVERHEAD,
};

/// The channel every load connection uses.
pub const CHANNEL: u16 = 1;
/// Bytes encoded per batch (one write syscall when the socket takes it all).
const BATCH_BYTES: usize = 64 * 1024;
/// How often a waiting connection looks at the stop flag.
pub const STOP_CHECK: Duration = Duration::from_millis(50);

/// What one producer does.
#[derive(Debug, Clone)]
pub struct ProducerPlan {
    pub exchange: String,
    pub keys: Vec<String>,
    pub size: usize,
    pub persistent: bool,
    pub rate: u64,
    pub confirm_window: u32,
    pub max_messages: Option<u64>,
    pub delays: Delays,
}

/// Whether and how messages are delayed; the body carries the delay (ms) in octets 16..24.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Delays {
    /// Plain messages; the routing keys are used in turn.
    None,
    /// Each message asks for an `x-delay` drawn uniformly from `lo..=hi` ms.
    Header { lo: u64, hi: u64 },
    /// TTL + dead-letter retry: each message goes to a routing key (a wait queue) drawn at
    /// random; its delay is that queue's TTL, `ttl_ms[key]`, and is in the body only.
    PerKey { ttl_ms: Vec<u64> },
}

/// The `x-delay` value the template is encoded with, found again to be replaced per message.
const DELAY_SENTINEL: i32 = 0x5a5a_a5a5;

/// A small fast generator (splitmix64) for the delays: no RNG dependency for a load tool.
#[derive(Debug, Clone)]
pub struct Random(u64);

impl Random {
    pub fn new(seed: u64) -> Random {
        Random(seed)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    /// Uniform in `lo..=hi` (the modulo bias is negligible for ranges far below 2^64).
    pub fn between(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.next_u64() % (hi - lo + 1)
    }
}

/// Pre-encoded publishes: per routing key the method and header frames, then a body.
pub struct PublishTemplate {
    prefixes: Vec<Vec<u8>>,
    /// Where the `x-delay` value (4 octets) sits in each prefix, when the header is there.
    delay_at: Vec<Option<usize>>,
    body: Vec<u8>,
    channel: u16,
    /// Largest body payload per frame.
    chunk: usize,
    next_key: usize,
}

impl PublishTemplate {
    pub fn new(
        channel: u16,
        exchange: &str,
        keys: &[String],
        properties: &BasicProperties,
        size: usize,
        frame_max: u32,
    ) -> Result<PublishTemplate, ClientError> {
        let mut prefixes = Vec::with_capacity(keys.len());
        for key in keys {
            let publish = Method::BasicPublish(BasicPublish {
                exchange: short(exchange)?,
                routing_key: short(key)?,
                mandatory: false,
                immediate: false,
            });
            let mut buf = BytesMut::new();
            encode_method(&mut buf, channel, &publish);
            encode_content_header(&mut buf, channel, size as u64, properties);
            prefixes.push(buf.to_vec());
        }
        let chunk = match frame_max {
            0 => size.max(1),
            max => (max as usize).saturating_sub(FRAME_OVERHEAD).max(1),
        };
        // Header tables are written as name (short string), type letter, value.
        let mut needle = b"\x07x-delayI".to_vec();
        needle.extend_from_slice(&DELAY_SENTINEL.to_be_bytes());
        let delay_at =
            prefixes.iter().map(|p| p.windows(needle.len()).position(|w| w == needle).map(|at| at + 9)).collect();
        Ok(PublishTemplate { prefixes, delay_at, body: vec![0; size], channel, chunk, next_key: 0 })
    }

    /// Properties whose `x-delay` header [`PublishTemplate::encode`] can set per message.
    pub fn delayed_properties(mut properties: BasicProperties) -> BasicProperties {
        let mut headers = warren_protocol::FieldTable::new();
        headers.insert(
            warren_protocol::ShortStr::from_static("x-delay"),
            warren_protocol::FieldValue::I32(DELAY_SENTINEL),
        );
        properties.headers = Some(headers);
        properties
    }

    /// Makes the next [`PublishTemplate::encode`] use routing key `key` (an index into the keys
    /// the template was made with); later ones go on in turn from there.
    pub fn choose_key(&mut self, key: usize) {
        self.next_key = key % self.prefixes.len();
    }

    /// Octets one message takes on the wire (with the longest routing key).
    pub fn wire_size(&self) -> usize {
        let frames = self.body.len().div_ceil(self.chunk);
        self.prefixes.iter().map(Vec::len).max().unwrap_or(0) + self.body.len() + frames * FRAME_OVERHEAD
    }

    /// Appends one message, stamped with `sent_ns` and `seq`, cycling through the routing keys.
    /// With `delay_ms` the body carries it in octets 16..24 (when the body is that long), and
    /// with [`PublishTemplate::delayed_properties`] the message also asks for that delay.
    #[inline]
    pub fn encode(&mut self, buf: &mut BytesMut, sent_ns: u64, seq: u64, delay_ms: Option<u64>) {
        self.body[..8].copy_from_slice(&sent_ns.to_be_bytes());
        self.body[8..16].copy_from_slice(&seq.to_be_bytes());
        if let Some(ms) = delay_ms {
            if let Some(at) = self.delay_at[self.next_key] {
                let header = i32::try_from(ms).unwrap_or(i32::MAX);
                self.prefixes[self.next_key][at..at + 4].copy_from_slice(&header.to_be_bytes());
            }
            if let Some(slot) = self.body.get_mut(16..24) {
                slot.copy_from_slice(&ms.to_be_bytes());
            }
        }
        buf.extend_from_slice(&self.prefixes[self.next_key]);
        self.next_key += 1;
        if self.next_key == self.prefixes.len() {
            self.next_key = 0;
        }
        for part in self.body.chunks(self.chunk) {
            buf.put_u8(constants::FRAME_BODY);
            buf.put_u16(self.channel);
            buf.put_u32(part.len() as u32);
            buf.put_slice(part);
            buf.put_u8(constants::FRAME_END);
        }
    }
}

/// Send times of unconfirmed messages, by publish sequence number (1, 2, ... per channel).
#[derive(Debug)]
pub struct ConfirmTracker {
    /// Sequence number of `pending[0]`.
    base: u64,
    /// Send time in ns, or [`SETTLED`] for one confirmed out of order.
    pending: VecDeque<u64>,
    outstanding: u64,
}

const SETTLED: u64 = u64::MAX;

impl Default for ConfirmTracker {
    fn default() -> Self {
        ConfirmTracker { base: 1, pending: VecDeque::new(), outstanding: 0 }
    }
}

impl ConfirmTracker {
    pub fn outstanding(&self) -> u64 {
        self.outstanding
    }

    pub fn sent(&mut self, sent_ns: u64) {
        self.pending.push_back(sent_ns);
        self.outstanding += 1;
    }

    /// Settles `tag` (and every earlier one with `multiple`), recording each latency; returns
    /// how many were settled.
    pub fn settle(&mut self, tag: u64, multiple: bool, now_ns: u64, latency: &mut Histogram) -> u64 {
        let mut settled = 0;
        if multiple {
            while self.base <= tag {
                let Some(sent) = self.pending.pop_front() else { break };
                self.base += 1;
                if sent != SETTLED {
                    latency.record(now_ns.saturating_sub(sent));
                    settled += 1;
                }
            }
        } else if tag >= self.base {
            if let Some(slot) = self.pending.get_mut((tag - self.base) as usize) {
                if *slot != SETTLED {
                    latency.record(now_ns.saturating_sub(*slot));
                    *slot = SETTLED;
                    settled = 1;
                }
            }
            while self.pending.front() == Some(&SETTLED) {
                self.pending.pop_front();
                self.base += 1;
            }
        }
        self.outstanding -= settled;
        settled
    }
}

/// Content of a `basic.return` being skipped.
enum Incoming {
    Idle,
    ReturnedHeader,
    ReturnedBody(u64),
}

/// Opens the channel (and confirm mode) before the run starts.
pub async fn prepare(conn: &mut Conn, plan: &ProducerPlan) -> Result<(), ClientError> {
    conn.open_channel(CHANNEL).await?;
    if plan.confirm_window > 0 {
        let select = Method::ConfirmSelect(ConfirmSelect { nowait: false });
        conn.call_expect(CHANNEL, select, |m| matches!(m, Method::ConfirmSelectOk(_))).await?;
    }
    Ok(())
}

/// Publishes until the plan's count is sent (and confirmed) or `stop` is set.
pub async fn run(
    mut conn: Conn,
    plan: ProducerPlan,
    stats: Arc<ConnStats>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> Result<(), ClientError> {
    let mut properties =
        BasicProperties { delivery_mode: Some(if plan.persistent { 2 } else { 1 }), ..Default::default() };
    if let Delays::Header { .. } = plan.delays {
        properties = PublishTemplate::delayed_properties(properties);
    }
    let mut random = Random::new(epoch.elapsed().as_nanos() as u64 ^ (Arc::as_ptr(&stats) as usize as u64));
    let mut template =
        PublishTemplate::new(CHANNEL, &plan.exchange, &plan.keys, &properties, plan.size, conn.frame_max)?;
    let per_batch = (BATCH_BYTES / template.wire_size()).max(1) as u64;
    let mut limiter = RateLimiter::new(plan.rate, Instant::now());
    let mut confirms = ConfirmTracker::default();
    let window = u64::from(plan.confirm_window);
    let mut sent: u64 = 0;
    let mut incoming = Incoming::Idle;
    let mut check_stop = std::pin::pin!(tokio::time::sleep(STOP_CHECK));
    let mut rate_wait = std::pin::pin!(tokio::time::sleep(Duration::ZERO));
    let result = loop {
        // A socket that always takes more never makes this task wait, and socket readiness does
        // not count against tokio's cooperative budget: without this, on one runtime thread the
        // consumers and timers would never run (seen against LavinMQ, which reads fast enough
        // that the socket never fills). It yields once the task's budget is spent.
        tokio::task::consume_budget().await;
        // How many messages may go now, and whether the rate is what holds them back.
        let now = Instant::now();
        let mut allowed = plan.max_messages.map_or(u64::MAX, |max| max - sent).min(per_batch);
        if window > 0 {
            allowed = allowed.min(window - confirms.outstanding());
        }
        let by_rate = limiter.available(now);
        let rate_bound = by_rate < allowed;
        allowed = allowed.min(by_rate);
        if conn.wbuf.len() >= BATCH_BYTES {
            allowed = 0;
        }
        if allowed > 0 {
            let sent_ns = now.duration_since(epoch).as_nanos() as u64;
            for _ in 0..allowed {
                let delay = match &plan.delays {
                    Delays::None => None,
                    Delays::Header { lo, hi } => Some(random.between(*lo, *hi)),
                    Delays::PerKey { ttl_ms } => {
                        let key = random.between(0, ttl_ms.len() as u64 - 1) as usize;
                        template.choose_key(key);
                        Some(ttl_ms[key])
                    }
                };
                template.encode(&mut conn.wbuf, sent_ns, sent, delay);
                sent += 1;
                if window > 0 {
                    confirms.sent(sent_ns);
                }
            }
            limiter.take(allowed);
            ConnStats::add(&stats.published, allowed);
            if let Err(e) = conn.try_flush() {
                break Err(e.into());
            }
        }
        let all_sent = plan.max_messages.is_some_and(|max| sent >= max);
        if all_sent && confirms.outstanding() == 0 && conn.wbuf.is_empty() {
            break Ok(());
        }
        // More could go right away unless the count, the window, the buffer or the rate stop it.
        let more_now = !all_sent
            && (window == 0 || confirms.outstanding() < window)
            && conn.wbuf.len() < BATCH_BYTES
            && !rate_bound;
        let sleep_until_due = if !more_now && rate_bound && !all_sent { limiter.next_due() } else { None };
        if let Some(due) = sleep_until_due {
            rate_wait.as_mut().reset(due.into());
        }
        tokio::select! {
            biased;
            _ = &mut check_stop => {
                if stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
                check_stop.as_mut().reset((Instant::now() + STOP_CHECK).into());
            }
            ready = conn.ready(more_now) => {
                let ready = match ready {
                    Ok(r) => r,
                    Err(e) => break Err(e.into()),
                };
                if ready.is_writable() {
                    if let Err(e) = conn.try_flush() {
                        break Err(e.into());
                    }
                }
                if ready.is_readable() {
                    if let Err(e) = read_incoming(&mut conn, &mut confirms, &mut incoming, &stats, epoch) {
                        break Err(e);
                    }
                }
            }
            _ = &mut rate_wait, if sleep_until_due.is_some() => {}
        }
    };
    result?;
    close_after_run(conn).await;
    Ok(())
}

/// Closes a load connection once the measurement is over. A broker that is still working
/// through a backlog (RabbitMQ stops reading a publisher's socket under flow control) may not
/// answer `connection.close` in time; that says nothing about the run, so it is only a note.
pub async fn close_after_run(conn: Conn) {
    if let Err(e) = conn.close().await {
        eprintln!("warren perf: note: a connection closed without a clean close-ok ({e})");
    }
}

/// Reads what arrived: confirms, returned messages, or the broker closing on us.
fn read_incoming(
    conn: &mut Conn,
    confirms: &mut ConfirmTracker,
    incoming: &mut Incoming,
    stats: &ConnStats,
    epoch: Instant,
) -> Result<(), ClientError> {
    if !conn.try_fill()? {
        return Err(ClientError::Io(std::io::ErrorKind::UnexpectedEof.into()));
    }
    let mut frame = conn.decode()?;
    if frame.is_none() {
        return Ok(());
    }
    let now_ns = epoch.elapsed().as_nanos() as u64;
    let (mut acked, mut nacked, mut returned) = (0, 0, 0);
    let mut latencies = stats.latencies();
    while let Some(f) = frame {
        match f {
            Frame::Method { method: Method::BasicAck(a), .. } => {
                acked += confirms.settle(a.delivery_tag, a.multiple, now_ns, &mut latencies.confirm);
            }
            Frame::Method { method: Method::BasicNack(n), .. } => {
                nacked += confirms.settle(n.delivery_tag, n.multiple, now_ns, &mut latencies.confirm);
            }
            Frame::Method { method: Method::BasicReturn(_), .. } => {
                returned += 1;
                *incoming = Incoming::ReturnedHeader;
            }
            Frame::Header { header, .. } => {
                if let Incoming::ReturnedHeader = incoming {
                    *incoming =
                        if header.body_size == 0 { Incoming::Idle } else { Incoming::ReturnedBody(header.body_size) };
                }
            }
            Frame::Body { payload, .. } => {
                if let Incoming::ReturnedBody(left) = incoming {
                    let left = left.saturating_sub(payload.len() as u64);
                    *incoming = if left == 0 { Incoming::Idle } else { Incoming::ReturnedBody(left) };
                }
            }
            Frame::Method { channel, method } => {
                if let Some(e) = conn.closed_by_broker(channel, &method) {
                    let _ = conn.try_flush();
                    return Err(e);
                }
            }
            Frame::Heartbeat => {}
        }
        frame = conn.decode()?;
    }
    drop(latencies);
    ConnStats::add(&stats.confirmed, acked);
    ConnStats::add(&stats.nacked, nacked);
    ConnStats::add(&stats.returned, returned);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use warren_protocol::{decode_frame, encode_content};

    fn template(keys: &[&str], size: usize, frame_max: u32) -> PublishTemplate {
        let keys: Vec<String> = keys.iter().map(|k| k.to_string()).collect();
        let props = BasicProperties { delivery_mode: Some(1), ..Default::default() };
        PublishTemplate::new(1, "x", &keys, &props, size, frame_max).unwrap()
    }

    #[test]
    fn a_templated_publish_is_what_the_codec_encodes() {
        for (size, frame_max) in [(16, 131_072), (10_000, 4096), (16, 0)] {
            let mut t = template(&["rk"], size, frame_max);
            let mut ours = BytesMut::new();
            t.encode(&mut ours, 0x0102_0304_0506_0708, 9, None);
            let mut body = vec![0u8; size];
            body[..8].copy_from_slice(&0x0102_0304_0506_0708u64.to_be_bytes());
            body[8..16].copy_from_slice(&9u64.to_be_bytes());
            let publish = Method::BasicPublish(BasicPublish {
                exchange: "x".try_into().unwrap(),
                routing_key: "rk".try_into().unwrap(),
                mandatory: false,
                immediate: false,
            });
            let props = BasicProperties { delivery_mode: Some(1), ..Default::default() };
            let mut codec = BytesMut::new();
            encode_content(&mut codec, 1, &publish, &props, &body, frame_max);
            assert_eq!(ours, codec, "size {size}, frame_max {frame_max}");
            assert_eq!(t.wire_size(), codec.len());
        }
    }

    #[test]
    fn routing_keys_are_used_in_turn() {
        let mut t = template(&["a", "b", "c"], 16, 131_072);
        let mut buf = BytesMut::new();
        for seq in 0..4 {
            t.encode(&mut buf, 0, seq, None);
        }
        let mut keys = Vec::new();
        while let Some(f) = decode_frame(&mut buf, 131_072).unwrap() {
            if let Frame::Method { method: Method::BasicPublish(p), .. } = f {
                keys.push(p.routing_key.to_string());
            }
        }
        assert_eq!(keys, ["a", "b", "c", "a"]);
    }

    #[test]
    fn delays_are_set_per_message_in_header_and_body() {
        let props = PublishTemplate::delayed_properties(BasicProperties::default());
        let keys = vec!["a".to_string(), "bb".to_string()];
        let mut t = PublishTemplate::new(1, "x", &keys, &props, 24, 131_072).unwrap();
        let mut buf = BytesMut::new();
        for (seq, delay) in [(0, 1500u64), (1, 60_000), (2, 7)] {
            t.encode(&mut buf, 0, seq, Some(delay));
        }
        let mut seen = Vec::new();
        while let Some(f) = decode_frame(&mut buf, 131_072).unwrap() {
            match f {
                Frame::Header { header, .. } => {
                    let h = header.properties.headers.unwrap();
                    seen.push(("header", h.get("x-delay").and_then(|v| v.as_i64()).unwrap() as u64));
                }
                Frame::Body { payload, .. } => {
                    seen.push(("body", u64::from_be_bytes(payload[16..24].try_into().unwrap())));
                }
                _ => {}
            }
        }
        let want = [1500, 1500, 60_000, 60_000, 7, 7];
        assert_eq!(seen.iter().map(|(_, d)| *d).collect::<Vec<_>>(), want);
        let mut r = Random::new(1);
        assert!((0..1000).map(|_| r.between(5, 9)).all(|d| (5..=9).contains(&d)));
        assert_eq!(Random::new(3).next_u64(), Random::new(3).next_u64(), "seeded");
    }

    #[test]
    fn chosen_keys_carry_their_delay_in_the_body_only() {
        let mut t = template(&["wait-a", "wait-b", "wait-c"], 24, 131_072);
        let mut buf = BytesMut::new();
        for (key, ttl) in [(2, 3000u64), (0, 1000), (2, 3000), (1, 2000)] {
            t.choose_key(key);
            t.encode(&mut buf, 0, 0, Some(ttl));
        }
        let mut seen = Vec::new();
        let mut key = String::new();
        while let Some(f) = decode_frame(&mut buf, 131_072).unwrap() {
            match f {
                Frame::Method { method: Method::BasicPublish(p), .. } => key = p.routing_key.to_string(),
                Frame::Header { header, .. } => assert!(header.properties.headers.is_none(), "no x-delay header"),
                Frame::Body { payload, .. } => {
                    seen.push((key.clone(), u64::from_be_bytes(payload[16..24].try_into().unwrap())));
                }
                _ => {}
            }
        }
        let want = [("wait-c", 3000), ("wait-a", 1000), ("wait-c", 3000), ("wait-b", 2000)];
        assert_eq!(seen, want.map(|(k, d)| (k.to_string(), d)));
    }

    #[test]
    fn multiple_confirms_settle_everything_up_to_the_tag() {
        let mut c = ConfirmTracker::default();
        let mut h = Histogram::new();
        for t in [100, 200, 300, 400] {
            c.sent(t);
        }
        assert_eq!(c.settle(3, true, 1_000, &mut h), 3);
        assert_eq!(c.outstanding(), 1);
        assert_eq!((h.count(), h.min(), h.max()), (3, Some(700), Some(900)));
        // A repeated or stale multiple ack settles nothing more.
        assert_eq!(c.settle(3, true, 1_000, &mut h), 0);
        assert_eq!(c.settle(4, false, 1_000, &mut h), 1);
        assert_eq!(c.outstanding(), 0);
    }

    #[test]
    fn single_confirms_may_come_out_of_order() {
        let mut c = ConfirmTracker::default();
        let mut h = Histogram::new();
        for t in 0..5 {
            c.sent(t);
        }
        assert_eq!(c.settle(2, false, 10, &mut h), 1);
        assert_eq!(c.settle(2, false, 10, &mut h), 0, "twice is once");
        assert_eq!(c.settle(1, false, 10, &mut h), 1);
        assert_eq!(c.outstanding(), 3);
        // 1 and 2 are gone from the front; a multiple ack of 4 settles 3 and 4 only.
        assert_eq!(c.settle(4, true, 10, &mut h), 2);
        assert_eq!(c.settle(99, false, 10, &mut h), 0, "unknown tags are ignored");
        assert_eq!(c.outstanding(), 1);
        assert_eq!(h.count(), 4);
    }
}
