//! Unit tests of queue delivery: credit, priorities, round robin, requeue order, TTL rounding.
use super::*;
use bytes::Bytes;
use std::sync::Mutex as StdMutex;

/// A sink that takes up to `credit` messages and records what it got.
struct Recorder {
    credit: StdMutex<usize>,
    got: StdMutex<Vec<(String, u64, bool)>>,
}

impl ConsumerSink for Recorder {
    fn offer(&self, c: &Consumer, _q: &Arc<Queue>, _args: &QueueArgs, m: &QueuedMessage) -> Offer {
        let mut credit = self.credit.lock().unwrap();
        if *credit == 0 {
            return Offer::Busy;
        }
        *credit -= 1;
        self.got.lock().unwrap().push((c.tag.to_string(), m.seq, m.redelivered));
        Offer::Taken
    }
    fn cancelled_by_server(&self, _c: &Consumer) {}
    fn deliver_reply(&self, _c: &Consumer, _m: &Arc<Message>) -> bool {
        false
    }
}

fn recorder(credit: usize) -> Arc<Recorder> {
    Arc::new(Recorder { credit: StdMutex::new(credit), got: StdMutex::new(Vec::new()) })
}

fn consumer(tag: &'static str, priority: i64, sink: Arc<dyn ConsumerSink>) -> Arc<Consumer> {
    Arc::new(Consumer {
        tag: ShortStr::from_static(tag),
        no_ack: false,
        exclusive: false,
        priority,
        arguments: FieldTable::new(),
        sink,
        parked: Default::default(),
    })
}

fn queue() -> Arc<Queue> {
    Arc::new(Queue::new(ShortStr::from_static("q"), ShortStr::from_static("/"), false, None, false, FieldTable::new()))
}

fn msg() -> Arc<Message> {
    Arc::new(Message {
        exchange: ShortStr::EMPTY,
        routing_key: ShortStr::from_static("q"),
        properties: Default::default(),
        body: Bytes::from_static(b"x"),
        timestamp_ms: 0,
    })
}

#[test]
fn round_robin_with_credit_and_priority() {
    let q = queue();
    let (a, b, hi) = (recorder(10), recorder(10), recorder(2));
    q.add_consumer(consumer("a", 0, a.clone()), || {}).unwrap();
    q.add_consumer(consumer("b", 0, b.clone()), || {}).unwrap();
    q.add_consumer(consumer("hi", 5, hi.clone()), || {}).unwrap();
    for _ in 0..6 {
        q.publish(msg(), None, &mut Derived::default());
    }
    assert_eq!(hi.got.lock().unwrap().len(), 2, "high priority first, until its credit runs out");
    let (na, nb) = (a.got.lock().unwrap().len(), b.got.lock().unwrap().len());
    assert_eq!((na, nb), (2, 2), "then round robin among the rest");
}

#[test]
fn messages_wait_for_credit_and_requeue_keeps_order() {
    let q = queue();
    for _ in 0..3 {
        q.publish(msg(), None, &mut Derived::default());
    }
    let (first, left) = q.get().unwrap();
    assert_eq!((first.seq, left), (0, 2));
    q.requeue([first]);
    let r = recorder(1);
    q.add_consumer(consumer("c", 0, r.clone()), || {}).unwrap();
    assert_eq!(*r.got.lock().unwrap(), vec![("c".to_string(), 0, true)]);
    assert_eq!(q.message_count(), 2);
    *r.credit.lock().unwrap() = 5;
    q.dispatch();
    assert_eq!(q.message_count(), 0);
}

#[test]
fn a_positive_ttl_never_ends_before_it_has_fully_passed() {
    let with_ttl = |ttl: i32| {
        let mut args = FieldTable::new();
        args.insert(ShortStr::from_static("x-message-ttl"), crate::protocol::FieldValue::I32(ttl));
        Queue::new(ShortStr::from_static("q"), ShortStr::from_static("/"), false, None, false, args)
    };
    let mut m = (*msg()).clone();
    m.timestamp_ms = 1_000; // taken somewhere in [1000, 1001) ms
    assert_eq!(with_ttl(100).args().expiry_of(&m), Some(1_101), "not before 1100 + the part of a ms we rounded off");
    assert_eq!(with_ttl(0).args().expiry_of(&m), Some(1_000), "TTL 0: now or never");
}

#[test]
fn exclusive_consumers_and_auto_delete() {
    let q = Arc::new(Queue::new(
        ShortStr::from_static("q"),
        ShortStr::from_static("/"),
        false,
        None,
        true,
        FieldTable::new(),
    ));
    let r = recorder(0);
    let mut c = consumer("x", 0, r.clone());
    Arc::get_mut(&mut c).unwrap().exclusive = true;
    q.add_consumer(c, || {}).unwrap();
    assert_eq!(q.add_consumer(consumer("y", 0, r.clone()), || {}), Err(ConsumeRefused::ExclusiveInUse));
    let sink: Arc<dyn ConsumerSink> = r;
    assert!(q.remove_consumer(&ShortStr::from_static("x"), &sink), "last consumer of an auto-delete queue");
    assert_eq!(q.delete(), 0);
    assert_eq!(q.publish(msg(), None, &mut Derived::default()), Enqueued::Deleted);
}

#[test]
fn reapplied_arguments_take_effect_at_once_and_keep_the_storage_shape() {
    let q = queue();
    for _ in 0..5 {
        q.publish(msg(), None, &mut Derived::default());
    }
    let mut args = FieldTable::new();
    args.insert(ShortStr::from_static("x-max-length"), crate::protocol::FieldValue::I32(2));
    args.insert(ShortStr::from_static("x-max-priority"), crate::protocol::FieldValue::I32(5));
    q.reapply_args(QueueArgs::parse(&args, "q", "/").unwrap());
    assert_eq!(q.message_count(), 2, "the oldest three dropped at once (drop-head)");
    let (head, _) = q.get().unwrap();
    assert_eq!(head.seq, 3);
    assert_eq!(q.args().max_length, Some(2));
    assert_eq!(q.args().max_priority, None, "priority levels stay as declared");
    q.reapply_args(QueueArgs::default());
    for _ in 0..5 {
        q.publish(msg(), None, &mut Derived::default());
    }
    assert_eq!(q.message_count(), 6, "no limit any more");
}

/// A sink whose connection is congested (or not): counts how often it is asked.
struct Stalled {
    congested: std::sync::atomic::AtomicBool,
    asked: std::sync::atomic::AtomicUsize,
}

impl ConsumerSink for Stalled {
    fn offer(&self, _c: &Consumer, _q: &Arc<Queue>, _args: &QueueArgs, _m: &QueuedMessage) -> Offer {
        self.asked.fetch_add(1, Ordering::Relaxed);
        match self.congested.load(Ordering::Relaxed) {
            true => Offer::Congested,
            false => Offer::Taken,
        }
    }
    fn cancelled_by_server(&self, _c: &Consumer) {}
    fn deliver_reply(&self, _c: &Consumer, _m: &Arc<Message>) -> bool {
        false
    }
}

#[test]
fn a_congested_consumer_is_not_asked_again_until_its_connection_drains() {
    let q = queue();
    let stalled: Vec<Arc<Stalled>> =
        (0..100).map(|_| Arc::new(Stalled { congested: true.into(), asked: Default::default() })).collect();
    for s in &stalled {
        q.add_consumer(consumer("stalled", 0, s.clone()), || {}).unwrap();
    }
    let healthy = recorder(1000);
    q.add_consumer(consumer("healthy", 0, healthy.clone()), || {}).unwrap();
    for _ in 0..500 {
        q.publish(msg(), None, &mut Derived::default());
    }
    assert_eq!(healthy.got.lock().unwrap().len(), 500, "the healthy consumer gets every message");
    let asked: usize = stalled.iter().map(|s| s.asked.load(Ordering::Relaxed)).sum();
    assert_eq!(asked, 100, "each stalled consumer was asked once, not once per message");

    // One connection drains. Until it says so, its consumer stays parked.
    stalled[7].congested.store(false, Ordering::Relaxed);
    q.publish(msg(), None, &mut Derived::default());
    assert_eq!(stalled[7].asked.load(Ordering::Relaxed), 1, "parked until the drain wakes the queue");
    // The drain wakes the queue: every parked consumer is asked once more, the drained one takes.
    q.dispatch_after_drain();
    for _ in 0..101 {
        q.publish(msg(), None, &mut Derived::default());
    }
    assert!(stalled[7].asked.load(Ordering::Relaxed) > 1, "the drained consumer gets messages again");
    for (i, s) in stalled.iter().enumerate().filter(|(i, _)| *i != 7) {
        assert!(s.asked.load(Ordering::Relaxed) <= 2, "stalled consumer {i} asked about every message again");
    }
}

#[test]
fn a_message_left_waiting_holds_a_copy_not_its_read_buffer() {
    let q = queue();
    let read_buffer = Bytes::from(vec![7u8; 64 * 1024]);
    let mut m = (*msg()).clone();
    m.body = read_buffer.slice(10..26);
    q.publish(Arc::new(m), None, &mut Derived::default());
    let (got, _) = q.get().unwrap();
    assert_eq!(got.msg.body, read_buffer.slice(10..26));
    let at = (got.msg.body.as_ptr() as usize).wrapping_sub(read_buffer.as_ptr() as usize);
    assert!(at >= read_buffer.len(), "the queue kept a slice of the publisher's read buffer");
}
