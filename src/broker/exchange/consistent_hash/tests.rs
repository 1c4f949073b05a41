use std::sync::Arc;

use super::*;
use crate::broker::exchange::{Binding, Destination, Destinations, Exchange, ExchangeKind};
use crate::broker::queue::Queue;
use crate::protocol::{LongStr, ShortStr};

fn queue(name: &str) -> Destination {
    let q = Queue::new(
        ShortStr::try_from(name).unwrap(),
        ShortStr::from_static("/"),
        false,
        None,
        false,
        FieldTable::new(),
    );
    Destination::Queue(Arc::new(q))
}

fn queues(n: usize) -> Vec<Destination> {
    (0..n).map(|i| queue(&format!("q{i}"))).collect()
}

fn key_hash(i: usize) -> u64 {
    HashOn::RoutingKey.hash(format!("key-{i}").as_bytes(), &BasicProperties::default())
}

const KEYS: usize = 100_000;

/// Which of `dests` each of [`KEYS`] keys goes to.
fn assignment(ring: &Ring, dests: &[Destination]) -> Vec<usize> {
    (0..KEYS)
        .map(|i| {
            let d = ring.pick(key_hash(i)).expect("a destination");
            dests.iter().position(|x| x == d).expect("a known destination")
        })
        .collect()
}

fn shares(assigned: &[usize], n: usize) -> Vec<f64> {
    let mut counts = vec![0usize; n];
    assigned.iter().for_each(|&i| counts[i] += 1);
    counts.iter().map(|&c| c as f64 / assigned.len() as f64).collect()
}

#[test]
fn binding_keys_are_weights_as_the_plugin_reads_them() {
    assert_eq!(weight(b"1"), Ok(1));
    assert_eq!(weight(b"+2"), Ok(2));
    assert_eq!(weight(b"007"), Ok(7));
    assert_eq!(weight(b"10000"), Ok(MAX_WEIGHT));
    let not_integer = |shown: &str| Err(format!("The binding key must be an integer: {shown}"));
    assert_eq!(weight(b"abc"), not_integer(r#"<<"abc">>"#));
    assert_eq!(weight(b""), not_integer("<<>>"));
    assert_eq!(weight(b"1.5"), not_integer(r#"<<"1.5">>"#));
    assert_eq!(weight(b" 1"), not_integer(r#"<<" 1">>"#));
    assert_eq!(weight(b"+"), not_integer(r#"<<"+">>"#));
    assert_eq!(weight(b"--1"), not_integer(r#"<<"--1">>"#));
    let positive = Err("The binding key must be greater than 0".to_string());
    assert_eq!(weight(b"0"), positive);
    assert_eq!(weight(b"-0"), positive);
    assert_eq!(weight(b"-1"), positive);
    assert_eq!(weight(b"-99999999999999999999999"), positive);
    let too_big = Err("The binding key must not exceed 10000".to_string());
    assert_eq!(weight(b"10001"), too_big);
    assert_eq!(weight(b"100000"), too_big);
    assert_eq!(weight(b"99999999999999999999999999"), too_big, "no overflow");
}

#[test]
fn refused_keys_print_as_erlang_binaries() {
    // As RabbitMQ 3.10.8 printed them.
    assert_eq!(erlang_binary("é".as_bytes()), r#"<<"é">>"#);
    assert_eq!(erlang_binary(b"a\"b"), r#"<<"a\"b">>"#);
    assert_eq!(erlang_binary(b"a\\b"), r#"<<"a\\b">>"#);
    assert_eq!(erlang_binary(b"a'b"), r#"<<"a'b">>"#);
    assert_eq!(erlang_binary(b"a\nb\t"), r#"<<"a\nb\t">>"#);
    assert_eq!(erlang_binary(b"\x0b\x08\x0c\x1b\r"), r#"<<"\v\b\f\e\r">>"#);
    assert_eq!(erlang_binary(b"\x01"), "<<1>>");
    assert_eq!(erlang_binary(b"x\x7f"), "<<120,127>>");
    assert_eq!(erlang_binary("日本".as_bytes()), "<<230,151,165,230,156,172>>");
    assert_eq!(erlang_binary("١".as_bytes()), r#"<<"١">>"#);
    assert_eq!(erlang_binary(b"\xe9"), "<<233>>", "not UTF-8: numbers");
}

fn args(pairs: &[(&'static str, FieldValue)]) -> FieldTable {
    FieldTable(pairs.iter().map(|(k, v)| (ShortStr::from_static(k), v.clone())).collect())
}

#[test]
fn hash_arguments_are_checked_in_the_plugins_order() {
    assert_eq!(HashOn::from_arguments(&FieldTable::new()), Ok(HashOn::RoutingKey));
    assert_eq!(HashOn::from_arguments(&args(&[("hash-header", "h".into())])), Ok(HashOn::Header(b"h"[..].into())));
    assert_eq!(HashOn::from_arguments(&args(&[("hash-header", "".into())])), Ok(HashOn::Header(b""[..].into())));
    for (name, p) in [
        ("message_id", Property::MessageId),
        ("correlation_id", Property::CorrelationId),
        ("timestamp", Property::Timestamp),
    ] {
        assert_eq!(HashOn::from_arguments(&args(&[("hash-property", name.into())])), Ok(HashOn::Property(p)));
    }
    let refused = |a: FieldTable| HashOn::from_arguments(&a).unwrap_err().into_amqp("exchange 'x' in vhost '/'");
    let text = |a: FieldTable| refused(a).reply_text().to_string_lossy();
    assert_eq!(text(args(&[("hash-property", "app_id".into())])), "PRECONDITION_FAILED - Unsupported property: app_id");
    assert_eq!(text(args(&[("hash-property", "".into())])), "PRECONDITION_FAILED - Unsupported property: ");
    let both = args(&[("hash-header", "h".into()), ("hash-property", "nope".into())]);
    assert_eq!(text(both), "PRECONDITION_FAILED - hash-header and hash-property are mutually exclusive");
    let e = refused(args(&[("hash-header", FieldValue::I32(5))]));
    assert_eq!(
        e.reply_text().to_string_lossy(),
        "PRECONDITION_FAILED - invalid arg 'hash-header' for exchange 'x' in vhost '/'"
    );
    assert!(!e.is_connection_error());
    let e = text(args(&[("hash-header", "h".into()), ("hash-property", FieldValue::Bool(true))]));
    assert!(e.contains("invalid arg 'hash-property'"), "{e}");
}

#[test]
fn headers_and_properties_hash_with_absence_as_one_value() {
    let header = HashOn::Header(b"h"[..].into());
    let with = |v: FieldValue| BasicProperties { headers: Some(args(&[("h", v)])), ..Default::default() };
    let none = BasicProperties::default();
    let other = BasicProperties { headers: Some(args(&[("other", "1".into())])), ..Default::default() };
    assert_eq!(header.hash(b"a", &none), header.hash(b"b", &other), "absent: one value, routing key ignored");
    assert_eq!(header.hash(b"a", &with("1".into())), header.hash(b"b", &with("1".into())));
    assert_ne!(header.hash(b"", &with("1".into())), header.hash(b"", &with(FieldValue::I32(1))), "typed");
    assert_ne!(header.hash(b"", &with("".into())), header.hash(b"", &none), "empty is not absent");
    let nested = FieldValue::Array(vec![FieldValue::Table(args(&[("k", FieldValue::Void)])), 1.5f64.into_value()]);
    assert_eq!(header.hash(b"", &with(nested.clone())), header.hash(b"", &with(nested)));

    let by_id = HashOn::Property(Property::MessageId);
    let id = |s: &str| BasicProperties { message_id: Some(ShortStr::try_from(s).unwrap()), ..Default::default() };
    assert_eq!(by_id.hash(b"a", &id("m1")), by_id.hash(b"b", &id("m1")));
    assert_ne!(by_id.hash(b"", &id("m1")), by_id.hash(b"", &id("m2")));
    assert_eq!(by_id.hash(b"a", &none), by_id.hash(b"b", &none));
    let by_time = HashOn::Property(Property::Timestamp);
    let at = |t: u64| BasicProperties { timestamp: Some(t), ..Default::default() };
    assert_ne!(by_time.hash(b"", &at(1)), by_time.hash(b"", &at(2)));
    assert_eq!(by_time.hash(b"", &none), by_time.hash(b"", &id("m1")), "other properties do not count");
}

trait IntoValue {
    fn into_value(self) -> FieldValue;
}

impl IntoValue for f64 {
    fn into_value(self) -> FieldValue {
        FieldValue::F64(self)
    }
}

#[test]
fn the_hash_and_the_points_are_fixed_for_good() {
    // Keys must go where they went before a restart or an upgrade: pinned values (the first two
    // recomputed independently: FNV-1a 64, then MurmurHash3's fmix64).
    assert_eq!(StableHasher::new().finish(), 0xefd0_1f60_ba99_2926);
    assert_eq!(HashOn::RoutingKey.hash(b"order-42", &BasicProperties::default()), 0x8e47_543c_313c_6386);
    let dests = queues(5);
    let mut ring = Ring::default();
    dests.iter().for_each(|d| ring.add(d, 1));
    assert_eq!(assignment(&ring, &dests)[..12], [0, 1, 1, 0, 0, 4, 0, 0, 1, 4, 4, 0]);
}

#[test]
fn shares_follow_the_weights() {
    for weights in [vec![1u32; 10], vec![1, 1, 2], vec![1, 2, 3, 4], vec![5, 5, 5, 5, 5]] {
        let dests = queues(weights.len());
        let mut ring = Ring::default();
        for (d, w) in dests.iter().zip(&weights) {
            ring.add(d, *w);
        }
        let total: u32 = weights.iter().sum();
        let got = shares(&assignment(&ring, &dests), dests.len());
        for (share, w) in got.iter().zip(&weights) {
            let want = f64::from(*w) / f64::from(total);
            assert!((share - want).abs() <= want * 0.12, "weights {weights:?}: shares {got:?}");
        }
    }
}

#[test]
fn removing_one_of_n_moves_only_its_keys_and_adding_one_only_takes_keys() {
    let n = 8;
    let dests = queues(n + 1);
    let mut ring = Ring::default();
    dests[..n].iter().for_each(|d| ring.add(d, 1));
    let before = assignment(&ring, &dests);

    ring.remove(&dests[3], 1);
    let after = assignment(&ring, &dests);
    let moved = before.iter().zip(&after).filter(|(b, a)| b != a).count();
    assert!(before.iter().zip(&after).all(|(b, a)| b == a || *b == 3), "only the removed queue's keys move");
    let fraction = moved as f64 / KEYS as f64;
    assert!((fraction - 1.0 / n as f64).abs() < 0.03, "moved {fraction}, about 1/{n} expected");

    ring.add(&dests[3], 1);
    assert_eq!(assignment(&ring, &dests), before, "back as it was");
    ring.add(&dests[n], 1);
    let grown = assignment(&ring, &dests);
    assert!(before.iter().zip(&grown).all(|(b, g)| b == g || *g == n), "keys move only to the new queue");
    let taken = grown.iter().filter(|&&g| g == n).count() as f64 / KEYS as f64;
    assert!((taken - 1.0 / (n + 1) as f64).abs() < 0.03, "the new queue took {taken}");
}

#[test]
fn the_ring_does_not_depend_on_binding_order_or_identity() {
    let dests = queues(6);
    let (mut forward, mut backward) = (Ring::default(), Ring::default());
    dests.iter().enumerate().for_each(|(i, d)| forward.add(d, i as u32 + 1));
    dests.iter().enumerate().rev().for_each(|(i, d)| backward.add(d, i as u32 + 1));
    assert_eq!(assignment(&forward, &dests), assignment(&backward, &dests));
    // A restart makes new queues of the same names: the same keys go to the same names.
    let again = queues(6);
    let mut restored = Ring::default();
    again.iter().enumerate().for_each(|(i, d)| restored.add(d, i as u32 + 1));
    assert_eq!(assignment(&restored, &again), assignment(&forward, &dests));
}

#[test]
fn a_destination_bound_twice_counts_once_with_its_smallest_weight() {
    let dests = queues(2);
    let mut ring = Ring::default();
    ring.add(&dests[0], 1);
    ring.add(&dests[1], 1);
    let even = assignment(&ring, &dests);
    ring.add(&dests[0], 5);
    assert_eq!(assignment(&ring, &dests), even, "the smaller weight counts");
    ring.remove(&dests[0], 1);
    let heavy = shares(&assignment(&ring, &dests), 2);
    assert!(heavy[0] > 0.8, "now weighted 5 to 1: {heavy:?}");
    ring.remove(&dests[0], 5);
    assert!(assignment(&ring, &dests).iter().all(|&i| i == 1), "gone with its last binding");
    ring.remove(&dests[0], 5);
    ring.remove_all(&dests[1]);
    assert!(ring.pick(42).is_none(), "empty");
}

#[test]
fn large_total_weights_lower_the_resolution_within_bounds() {
    let dests = queues(3);
    let mut ring = Ring::default();
    ring.add(&dests[0], 1);
    assert_eq!(ring.point_count(), 1024);
    ring.add(&dests[1], MAX_WEIGHT);
    ring.add(&dests[2], MAX_WEIGHT);
    assert!(ring.point_count() <= 1 << 20, "{} points", ring.point_count());
    let got = shares(&assignment(&ring, &dests), 3);
    assert!((got[1] - 0.5).abs() < 0.05 && (got[2] - 0.5).abs() < 0.05, "{got:?}");
    ring.remove_all(&dests[2]);
    ring.remove_all(&dests[1]);
    assert_eq!(ring.point_count(), 1024, "full resolution again");
}

fn binding(dest: &Destination, key: &'static str) -> Binding {
    Binding { destination: dest.clone(), routing_key: ShortStr::from_static(key), arguments: FieldTable::new() }
}

fn exchange(arguments: FieldTable) -> Exchange {
    Exchange::new(ShortStr::from_static("x"), ExchangeKind::ConsistentHash, false, false, false, arguments)
}

fn route(x: &Exchange, keys: &[&[u8]], properties: &BasicProperties) -> Destinations {
    let mut out = Destinations::new();
    x.route(keys, properties, &mut out);
    out
}

#[test]
fn the_exchange_routes_each_message_to_one_destination() {
    let x = exchange(FieldTable::new());
    let dests = queues(3);
    let none = BasicProperties::default();
    assert!(route(&x, &[b"k"], &none).is_empty(), "no bindings: unroutable");
    for d in &dests {
        x.bind(binding(d, "1"));
    }
    let mut arguments = FieldTable::new();
    arguments.insert(ShortStr::from_static("tag"), "t".into());
    x.bind(Binding { arguments: arguments.clone(), ..binding(&dests[0], "3") });
    for i in 0..1000 {
        let key = format!("k{i}");
        let to = route(&x, &[key.as_bytes()], &none);
        assert_eq!(to.len(), 1);
        assert_eq!(route(&x, &[key.as_bytes(), b"cc-1", b"cc-2"], &none)[..], to[..], "CC keys do not count");
    }
    let before: Vec<Destinations> = (0..1000).map(|i| route(&x, &[format!("k{i}").as_bytes()], &none)).collect();
    x.unbind(&Binding { arguments, ..binding(&dests[0], "3") });
    let after: Vec<Destinations> = (0..1000).map(|i| route(&x, &[format!("k{i}").as_bytes()], &none)).collect();
    assert_eq!(before, after, "the weight-1 binding of q0 still counts");
    assert_eq!(x.unbind_destination(&dests[0]), 1);
    assert!((0..1000).all(|i| route(&x, &[format!("k{i}").as_bytes()], &none)[0] != dests[0]));
}

#[test]
fn a_header_exchange_hashes_the_header() {
    let x = exchange(args(&[("hash-header", FieldValue::LongStr(LongStr::from("user")))]));
    let dests = queues(4);
    dests.iter().for_each(|d| {
        x.bind(binding(d, "1"));
    });
    let user =
        |u: String| BasicProperties { headers: Some(args(&[("user", u.as_str().into())])), ..Default::default() };
    let mut seen = Vec::new();
    for i in 0..200 {
        let to = route(&x, &[b"same"], &user(format!("u{i}")));
        assert_eq!(route(&x, &[b"other"], &user(format!("u{i}"))), to, "the routing key does not count");
        if !seen.contains(&to[0]) {
            seen.push(to[0].clone());
        }
    }
    assert_eq!(seen.len(), 4, "users spread over every queue");
    let first = route(&x, &[b"a"], &BasicProperties::default());
    assert!((0..50).all(|i| route(&x, &[format!("k{i}").as_bytes()], &BasicProperties::default()) == first));
}

#[test]
fn a_delayed_exchange_can_route_by_consistent_hash() {
    let arguments = args(&[("x-delayed-type", TYPE_NAME.into()), ("hash-property", "message_id".into())]);
    let x = Exchange::new(ShortStr::from_static("later"), ExchangeKind::Delayed, false, false, false, arguments);
    assert_eq!(x.routing_kind(), ExchangeKind::ConsistentHash);
    let dests = queues(3);
    dests.iter().for_each(|d| {
        x.bind(binding(d, "1"));
    });
    let id =
        |s: String| BasicProperties { message_id: Some(ShortStr::try_from(s.as_str()).unwrap()), ..Default::default() };
    for i in 0..100 {
        let to = route(&x, &[b"a"], &id(format!("m{i}")));
        assert_eq!((to.len(), route(&x, &[b"b"], &id(format!("m{i}")))), (1, to), "by message_id alone");
    }
}
