use super::*;
use crate::broker::definitions::{ExchangeSpec, QueueSpec};
use crate::broker::exchange::{Binding, Destination, ExchangeKind};
use crate::broker::publish::{Publish, Published};
use crate::broker::queue::Queue;
use crate::broker::vhost::VHostEnv;
use crate::protocol::{BasicProperties, FieldTable, FieldValue};

fn delayed_spec(name: &'static str, routing: &str, durable: bool) -> ExchangeSpec {
    let mut arguments = FieldTable::new();
    arguments.insert(ShortStr::from_static(rules::ROUTING_TYPE_ARG), routing.into());
    ExchangeSpec {
        name: ShortStr::from_static(name),
        kind: ExchangeKind::Delayed,
        durable,
        auto_delete: false,
        internal: false,
        arguments,
    }
}

fn message(body: &'static str, delay: Option<i32>) -> Message {
    let headers = delay.map(|d| {
        let mut h = FieldTable::new();
        h.insert(ShortStr::from_static(rules::DELAY_HEADER), FieldValue::I32(d));
        h
    });
    Message {
        exchange: ShortStr::from_static("delays"),
        routing_key: ShortStr::from_static("k"),
        properties: Box::new(BasicProperties { headers, ..Default::default() }),
        body: Bytes::from_static(body.as_bytes()),
        timestamp_ms: 0,
    }
}

/// A vhost with delayed exchange `delays` (direct) bound to queue `q` under `k`.
fn setup(storage: Option<Arc<StoreHandle>>) -> (Arc<VHost>, Arc<Exchange>, Arc<Queue>, Arc<Delays>) {
    let delays = Delays::new(storage.clone());
    let metadata = storage.as_ref().map(|s| s.metadata());
    let env = VHostEnv { storage, metadata, delays: delays.clone(), ..VHostEnv::in_memory() };
    let vhost = VHost::create(ShortStr::from_static("/"), env);
    let x = vhost.declare_exchange(delayed_spec("delays", "direct", true)).unwrap();
    let spec = QueueSpec {
        name: ShortStr::from_static("q"),
        server_named: false,
        durable: true,
        exclusive_owner: None,
        auto_delete: false,
        arguments: FieldTable::new(),
    };
    let (q, _) = vhost.declare_queue(spec, false, 1).unwrap();
    vhost.bind(&x.name, Destination::Queue(q.clone()), ShortStr::from_static("k"), FieldTable::new()).unwrap();
    // As the broker does: once the definitions are there (overdue messages go at once).
    delays.start();
    (vhost, x, q, delays)
}

/// Publishes to `x` as a channel would, nobody waiting for the writes.
fn publish(vhost: &VHost, x: &Arc<Exchange>, m: Message) -> Published {
    vhost.publish(x, &Publish::new(Arc::new(m)))
}

fn bodies(q: &Arc<Queue>) -> Vec<String> {
    std::iter::from_fn(|| q.get()).map(|(m, _)| String::from_utf8_lossy(&m.msg.body).into_owned()).collect()
}

fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = std::time::Instant::now() + Duration::from_secs(5);
    while !done() {
        assert!(std::time::Instant::now() < deadline, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(2));
    }
}

#[test]
fn due_times_round_up_so_nothing_is_early() {
    assert_eq!(due_ms(1_000_000, 5), 1_005);
    assert_eq!(due_ms(1_000_001, 5), 1_006);
    assert_eq!(due_ms(999_999, 0), 1_000);
    let (a, b) = (clock_us(), clock_us());
    assert!(b >= a);
}

#[test]
fn in_memory_messages_are_routed_in_due_order_with_the_delay_negated() {
    let (vhost, x, q, delays) = setup(None);
    let started = std::time::Instant::now();
    for (body, delay) in [("300", 300), ("100", 100), ("200", 200)] {
        let queues = publish(&vhost, &x, message(body, Some(delay)));
        assert_eq!((queues.queues, queues.held), (0, 1), "a held message routes nowhere now");
    }
    // Routing only looks (nothing is enqueued or held by these two).
    let routed = |m: Message| vhost.route(&x, &m, &[]).queues.len();
    assert_eq!(routed(message("now", Some(0))), 1, "no positive delay: routed at once");
    assert_eq!(routed(message("none", None)), 1);
    assert_eq!(delays.held_in_memory(), 3);
    wait_for("the delayed messages", || q.message_count() == 3);
    assert!(started.elapsed() >= Duration::from_millis(299), "{:?}", started.elapsed());
    let got: Vec<_> = std::iter::from_fn(|| q.get()).map(|(m, _)| m.msg).collect();
    let order: Vec<_> = got.iter().map(|m| String::from_utf8_lossy(&m.body).into_owned()).collect();
    assert_eq!(order, ["100", "200", "300"]);
    for m in &got {
        let delay: i64 = m.body.iter().fold(0, |n, d| n * 10 + i64::from(d - b'0'));
        assert_eq!(m.headers().unwrap().get("x-delay"), Some(&FieldValue::I32(-delay as i32)));
    }
    assert_eq!(delays.held_in_memory(), 0);
}

#[test]
fn stored_messages_survive_a_restart_and_overdue_ones_fire_at_start() {
    let dir = tempfile::tempdir().unwrap();
    let open = || {
        // The timer thread may hold the last handle of the previous one for a moment.
        let deadline = std::time::Instant::now() + Duration::from_secs(5);
        loop {
            match StoreHandle::open(dir.path()) {
                Ok((d, _)) => return Arc::new(d),
                Err(e) if std::time::Instant::now() > deadline => panic!("{e}"),
                Err(_) => std::thread::sleep(Duration::from_millis(10)),
            }
        }
    };
    {
        let (vhost, x, q, _delays) = setup(Some(open()));
        publish(&vhost, &x, message("soon", Some(150)));
        publish(&vhost, &x, message("later", Some(60_000)));
        publish(&vhost, &x, message("first", Some(50)));
        wait_for("the first two", || q.message_count() == 2);
        assert_eq!(bodies(&q), ["first", "soon"]);
        publish(&vhost, &x, message("overdue", Some(300)));
        // Stopped before it is due: everything owning the store goes.
    }
    std::thread::sleep(Duration::from_millis(400));
    let durable = open();
    assert_eq!(durable.store.count_delayed().unwrap(), 2, "the overdue one and the one a minute away");
    let (vhost, _x, q, _delays) = setup(Some(durable.clone()));
    let _ = vhost;
    wait_for("the overdue message", || q.message_count() == 1);
    assert_eq!(bodies(&q), ["overdue"]);
    durable.writer.flush();
    assert_eq!(durable.store.count_delayed().unwrap(), 1, "routed messages are deleted");
}

#[test]
fn stopping_waits_for_the_timer_and_keeps_what_is_held() {
    let (vhost, x, q, delays) = setup(None);
    publish(&vhost, &x, message("held", Some(50)));
    delays.stop();
    std::thread::sleep(Duration::from_millis(150));
    assert_eq!((q.message_count(), delays.held_in_memory()), (0, 1), "nothing routed after stop");
}

#[test]
fn a_message_written_late_is_not_skipped() {
    // Many publishers race the timer: every message must arrive exactly once.
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = StoreHandle::open(dir.path()).unwrap();
    let durable = Arc::new(d);
    let (vhost, x, q, _delays) = setup(Some(durable.clone()));
    let threads: Vec<_> = (0..4)
        .map(|t| {
            let (vhost, x) = (vhost.clone(), x.clone());
            std::thread::spawn(move || {
                for i in 0..500 {
                    let delay = 1 + (i * 7 + t) % 5;
                    publish(&vhost, &x, message("m", Some(delay)));
                }
            })
        })
        .collect();
    threads.into_iter().for_each(|t| t.join().unwrap());
    wait_for("2000 messages", || q.message_count() == 2000);
    std::thread::sleep(Duration::from_millis(50));
    assert_eq!(q.message_count(), 2000, "none twice");
    durable.writer.flush();
    assert_eq!(durable.store.count_delayed().unwrap(), 0);
}

#[test]
fn messages_of_a_deleted_exchange_are_dropped() {
    let dir = tempfile::tempdir().unwrap();
    let (d, _) = StoreHandle::open(dir.path()).unwrap();
    let durable = Arc::new(d);
    let (vhost, _x, q, _delays) = setup(Some(durable.clone()));
    let t = vhost.declare_exchange(delayed_spec("transient", "fanout", false)).unwrap();
    vhost.bind(&t.name, Destination::Queue(q.clone()), ShortStr::from_static(""), FieldTable::new()).unwrap();
    assert!(t.bindings().iter().any(|b: &Binding| b.destination == Destination::Queue(q.clone())));
    publish(&vhost, &t, message("gone", Some(1000)));
    publish(&vhost, &t, message("kept", Some(50)));
    wait_for("the transient exchange's message", || q.message_count() == 1);
    vhost.delete_exchange(&t.name, false).unwrap();
    std::thread::sleep(Duration::from_millis(1100));
    assert_eq!(bodies(&q), ["kept"]);
    durable.writer.flush();
    assert_eq!(durable.store.count_delayed().unwrap(), 0, "dropped, not kept");
}

#[test]
fn a_deleted_vhosts_held_messages_are_dropped() {
    for stored in [false, true] {
        let dir = tempfile::tempdir().unwrap();
        let durable = stored.then(|| Arc::new(StoreHandle::open(dir.path()).unwrap().0));
        let (vhost, x, q, delays) = setup(durable.clone());
        publish(&vhost, &x, message("never", Some(200)));
        delays.forget_vhost(&vhost.name);
        assert_eq!(delays.held_in_memory(), 0);
        if let Some(d) = &durable {
            d.writer.flush();
            assert_eq!(d.store.count_delayed().unwrap(), 0, "dropped from the store");
        }
        std::thread::sleep(Duration::from_millis(300));
        assert_eq!(q.message_count(), 0, "stored={stored}");
    }
}
