//! A consumer connection: one `basic.consume`, deliveries counted and timed from the send time
//! in their first 8 octets, acks (unless no-ack) encoded as they come and written once per read.

use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::Instant;

use bytes::BytesMut;

use super::args::StreamOffset;
use super::client::{short, ClientError, Conn};
use super::producer::{close_after_run, CHANNEL, STOP_CHECK};
use super::stats::{ConnStats, Latencies};
use warren_protocol::methods::{BasicAck, BasicConsume, BasicQos};
use warren_protocol::{encode_method, FieldTable, Frame, Method};

#[derive(Debug, Clone)]
pub struct ConsumerPlan {
    pub queue: String,
    pub auto_ack: bool,
    /// Ack with `multiple` every N deliveries (0 or 1: each delivery).
    pub multi_ack_every: u32,
    pub prefetch: u16,
    /// Where to start reading a stream (the `x-stream-offset` consumer argument).
    pub stream_offset: Option<StreamOffset>,
    /// Bodies carry the delay asked for (octets 16..24, ms): lateness is measured.
    pub delayed: bool,
}

/// Opens the channel and starts consuming; deliveries may follow at once.
pub async fn prepare(conn: &mut Conn, plan: &ConsumerPlan) -> Result<(), ClientError> {
    conn.open_channel(CHANNEL).await?;
    if plan.prefetch > 0 {
        let qos = Method::BasicQos(BasicQos { prefetch_size: 0, prefetch_count: plan.prefetch, global: false });
        conn.call_expect(CHANNEL, qos, |m| matches!(m, Method::BasicQosOk(_))).await?;
    }
    let mut arguments = FieldTable::new();
    if let Some(offset) = &plan.stream_offset {
        arguments.insert(short("x-stream-offset")?, offset.field_value());
    }
    let consume = Method::BasicConsume(BasicConsume {
        queue: short(&plan.queue)?,
        consumer_tag: Default::default(),
        no_local: false,
        no_ack: plan.auto_ack,
        exclusive: false,
        no_wait: false,
        arguments,
    });
    conn.call_expect(CHANNEL, consume, |m| matches!(m, Method::BasicConsumeOk(_))).await?;
    Ok(())
}

/// Where a consumer is in the method → header → body sequence of a delivery.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Delivery {
    Idle,
    Header { tag: u64 },
    Body { tag: u64, left: u64, first: bool },
}

/// Counts deliveries, times them and decides the acks; no I/O, so it can be tested alone.
#[derive(Debug)]
pub struct DeliveryTracker {
    state: Delivery,
    auto_ack: bool,
    ack_every: u64,
    unacked: u64,
    /// Send time of the delivery being assembled.
    sent_ns: Option<u64>,
    /// Measure lateness from the delay in the body.
    delayed: bool,
    /// Delay of the delivery being assembled (ms).
    delay_ms: Option<u64>,
}

impl DeliveryTracker {
    pub fn new(auto_ack: bool, multi_ack_every: u32) -> DeliveryTracker {
        DeliveryTracker {
            state: Delivery::Idle,
            auto_ack,
            ack_every: u64::from(multi_ack_every.max(1)),
            unacked: 0,
            sent_ns: None,
            delayed: false,
            delay_ms: None,
        }
    }

    /// Also measures lateness: bodies carry the delay asked for in octets 16..24 (ms).
    pub fn measuring_delays(mut self) -> DeliveryTracker {
        self.delayed = true;
        self
    }

    /// Feeds one frame. Returns `Ok(true)` when it completed a delivery; encodes an ack into
    /// `acks` when one is due; records the end-to-end latency (and lateness) into `lat`.
    pub fn frame(
        &mut self,
        frame: &Frame,
        now_ns: u64,
        lat: &mut Latencies,
        acks: &mut BytesMut,
    ) -> Result<bool, ClientError> {
        let tag = match (self.state, frame) {
            (Delivery::Idle, Frame::Method { method: Method::BasicDeliver(d), .. }) => {
                self.state = Delivery::Header { tag: d.delivery_tag };
                return Ok(false);
            }
            (Delivery::Header { tag }, Frame::Header { header, .. }) => {
                self.sent_ns = None;
                self.delay_ms = None;
                if header.body_size > 0 {
                    self.state = Delivery::Body { tag, left: header.body_size, first: true };
                    return Ok(false);
                }
                tag
            }
            (Delivery::Body { tag, left, first }, Frame::Body { payload, .. }) => {
                if first && payload.len() >= 8 {
                    let mut ts = [0u8; 8];
                    ts.copy_from_slice(&payload[..8]);
                    self.sent_ns = Some(u64::from_be_bytes(ts));
                    if self.delayed && payload.len() >= 24 {
                        ts.copy_from_slice(&payload[16..24]);
                        self.delay_ms = Some(u64::from_be_bytes(ts));
                    }
                }
                let left = left.saturating_sub(payload.len() as u64);
                if left > 0 {
                    self.state = Delivery::Body { tag, left, first: false };
                    return Ok(false);
                }
                tag
            }
            (_, Frame::Heartbeat) => return Ok(false),
            (Delivery::Idle, Frame::Method { method: Method::BasicCancel(_), .. }) => {
                return Err(ClientError::Unexpected("basic.cancel: the broker cancelled the consumer".into()))
            }
            (Delivery::Idle, Frame::Method { .. }) => return Ok(false),
            (state, other) => {
                return Err(ClientError::Unexpected(format!(
                    "frame on channel {} while in delivery state {state:?}",
                    other.channel()
                )))
            }
        };
        self.state = Delivery::Idle;
        if let Some(sent) = self.sent_ns.take() {
            let e2e = now_ns.saturating_sub(sent);
            lat.e2e.record(e2e);
            if let Some(delay) = self.delay_ms.take() {
                let due = delay.saturating_mul(1_000_000);
                if e2e < due {
                    lat.early += 1;
                    lat.early_max = lat.early_max.max(due - e2e);
                }
                lat.lateness.record(e2e.saturating_sub(due));
            }
        }
        if !self.auto_ack {
            self.unacked += 1;
            if self.unacked >= self.ack_every {
                let multiple = self.ack_every > 1;
                encode_method(acks, CHANNEL, &Method::BasicAck(BasicAck { delivery_tag: tag, multiple }));
                self.unacked = 0;
            }
        }
        Ok(true)
    }
}

/// Consumes until `stop` is set.
pub async fn run(
    mut conn: Conn,
    plan: ConsumerPlan,
    stats: Arc<ConnStats>,
    epoch: Instant,
    stop: Arc<AtomicBool>,
) -> Result<(), ClientError> {
    let mut tracker = DeliveryTracker::new(plan.auto_ack, plan.multi_ack_every);
    if plan.delayed {
        tracker = tracker.measuring_delays();
    }
    let mut check_stop = std::pin::pin!(tokio::time::sleep(STOP_CHECK));
    // On a queue with a backlog the first deliveries arrive with basic.consume-ok and are already
    // in the read buffer; the socket may not become readable again before they are acked.
    read_deliveries(&mut conn, &mut tracker, &stats, epoch)?;
    if !conn.wbuf.is_empty() {
        conn.try_flush()?;
    }
    let result = loop {
        // As the producer's loop: readiness alone would never yield to the other tasks.
        tokio::task::consume_budget().await;
        tokio::select! {
            biased;
            _ = &mut check_stop => {
                if stop.load(Ordering::Relaxed) {
                    break Ok(());
                }
                check_stop.as_mut().reset((Instant::now() + STOP_CHECK).into());
            }
            ready = conn.ready(false) => {
                let ready = match ready {
                    Ok(r) => r,
                    Err(e) => break Err(e.into()),
                };
                if ready.is_readable() {
                    if let Err(e) = read_deliveries(&mut conn, &mut tracker, &stats, epoch) {
                        break Err(e);
                    }
                }
                if !conn.wbuf.is_empty() {
                    if let Err(e) = conn.try_flush() {
                        break Err(e.into());
                    }
                }
            }
        }
    };
    result?;
    close_after_run(conn).await;
    Ok(())
}

fn read_deliveries(
    conn: &mut Conn,
    tracker: &mut DeliveryTracker,
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
    let mut received = 0;
    let mut latencies = stats.latencies();
    while let Some(f) = frame {
        if let Frame::Method { channel, method } = &f {
            if let Some(e) = conn.closed_by_broker(*channel, method) {
                let _ = conn.try_flush();
                return Err(e);
            }
        }
        if tracker.frame(&f, now_ns, &mut latencies, &mut conn.wbuf)? {
            received += 1;
        }
        frame = conn.decode()?;
    }
    drop(latencies);
    ConnStats::add(&stats.received, received);
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::Bytes;
    use warren_protocol::methods::BasicDeliver;
    use warren_protocol::{decode_frame, ContentHeader};

    fn deliver(tag: u64) -> Frame {
        Frame::Method {
            channel: 1,
            method: Method::BasicDeliver(BasicDeliver { delivery_tag: tag, ..Default::default() }),
        }
    }

    fn header(size: u64) -> Frame {
        Frame::Header {
            channel: 1,
            header: ContentHeader { class_id: 60, body_size: size, properties: Default::default() },
        }
    }

    fn body(sent_ns: u64, len: usize) -> Frame {
        let mut b = sent_ns.to_be_bytes().to_vec();
        b.resize(len, 0);
        Frame::Body { channel: 1, payload: Bytes::from(b) }
    }

    fn acks_in(buf: &mut BytesMut) -> Vec<(u64, bool)> {
        let mut out = Vec::new();
        while let Some(f) = decode_frame(buf, 0).unwrap() {
            if let Frame::Method { method: Method::BasicAck(a), .. } = f {
                out.push((a.delivery_tag, a.multiple));
            }
        }
        out
    }

    #[test]
    fn deliveries_are_counted_timed_and_acked_each() {
        let mut t = DeliveryTracker::new(false, 0);
        let (mut h, mut acks) = (Latencies::default(), BytesMut::new());
        let mut done = 0;
        for tag in 1..=3 {
            for f in [deliver(tag), header(16), body(1_000, 16)] {
                done += t.frame(&f, 1_500, &mut h, &mut acks).unwrap() as u32;
            }
        }
        assert_eq!(done, 3);
        assert_eq!((h.e2e.count(), h.e2e.max()), (3, Some(500)));
        assert_eq!(acks_in(&mut acks), [(1, false), (2, false), (3, false)]);
    }

    #[test]
    fn multi_ack_every_n_and_bodies_over_several_frames() {
        let mut t = DeliveryTracker::new(false, 2);
        let (mut h, mut acks) = (Latencies::default(), BytesMut::new());
        for tag in 1..=5 {
            assert!(!t.frame(&deliver(tag), 10, &mut h, &mut acks).unwrap());
            assert!(!t.frame(&header(20), 10, &mut h, &mut acks).unwrap());
            assert!(!t.frame(&body(4, 12), 10, &mut h, &mut acks).unwrap());
            assert!(t.frame(&body(999, 8), 10, &mut h, &mut acks).unwrap(), "complete after 20 octets");
        }
        assert_eq!(acks_in(&mut acks), [(2, true), (4, true)]);
        assert_eq!((h.e2e.count(), h.e2e.min(), h.e2e.max()), (5, Some(6), Some(6)), "timed from the first body frame");
    }

    #[test]
    fn auto_ack_sends_nothing_and_empty_bodies_complete_at_the_header() {
        let mut t = DeliveryTracker::new(true, 0);
        let (mut h, mut acks) = (Latencies::default(), BytesMut::new());
        assert!(!t.frame(&deliver(1), 0, &mut h, &mut acks).unwrap());
        assert!(t.frame(&header(0), 0, &mut h, &mut acks).unwrap());
        assert!(acks.is_empty());
        assert!(h.e2e.is_empty(), "no body, no timestamp");
    }

    #[test]
    fn lateness_is_measured_from_the_delay_in_the_body() {
        let mut t = DeliveryTracker::new(true, 0).measuring_delays();
        let (mut lat, mut acks) = (Latencies::default(), BytesMut::new());
        let delayed = |sent_ns: u64, delay_ms: u64| {
            let mut b = sent_ns.to_be_bytes().to_vec();
            b.extend_from_slice(&[0; 8]);
            b.extend_from_slice(&delay_ms.to_be_bytes());
            Frame::Body { channel: 1, payload: Bytes::from(b) }
        };
        for (tag, now_ns) in [(1, 1_000 + 5_000_000 + 300), (2, 1_000 + 4_000_000)] {
            for f in [deliver(tag), header(24), delayed(1_000, 5)] {
                t.frame(&f, now_ns, &mut lat, &mut acks).unwrap();
            }
        }
        assert_eq!((lat.e2e.count(), lat.lateness.count(), lat.early), (2, 2, 1));
        assert_eq!(lat.early_max, 1_000_000, "the second arrived 1 ms before its delay was over");
        assert_eq!((lat.lateness.min(), lat.lateness.max()), (Some(0), Some(300)), "early counts as 0 late");
    }

    #[test]
    fn protocol_surprises_are_errors() {
        let mut t = DeliveryTracker::new(true, 0);
        let (mut h, mut acks) = (Latencies::default(), BytesMut::new());
        assert!(t.frame(&body(0, 16), 0, &mut h, &mut acks).is_err(), "a body with no delivery");
        let mut t = DeliveryTracker::new(true, 0);
        let cancel = Frame::Method { channel: 1, method: Method::BasicCancel(Default::default()) };
        assert!(t.frame(&cancel, 0, &mut h, &mut acks).is_err());
    }
}
