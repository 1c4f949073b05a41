//! Frame codec throughput: a publish as clients send it (method + content header + one body
//! frame), with a 16 B and a 1 KB body, decoded and encoded. Elements are frames, so criterion
//! reports frames per second.

use bytes::BytesMut;
use criterion::{criterion_group, criterion_main, BatchSize, BenchmarkId, Criterion, Throughput};
use std::hint::black_box;

use warren::protocol::methods::BasicPublish;
use warren::protocol::{decode_frame, encode_content, BasicProperties, FieldTable, FieldValue, Method, ShortStr};

fn publish() -> (Method, BasicProperties) {
    let method = Method::BasicPublish(BasicPublish {
        exchange: ShortStr::from_static("amq.direct"),
        routing_key: ShortStr::from_static("orders.created"),
        mandatory: false,
        immediate: false,
    });
    let mut headers = FieldTable::new();
    headers.insert(ShortStr::from_static("x-trace"), FieldValue::from("abc123"));
    let props = BasicProperties {
        content_type: Some(ShortStr::from_static("application/json")),
        delivery_mode: Some(2),
        headers: Some(headers),
        message_id: Some(ShortStr::from_static("m-1")),
        ..Default::default()
    };
    (method, props)
}

fn codec(c: &mut Criterion) {
    let (method, props) = publish();
    let mut group = c.benchmark_group("publish");
    for size in [16usize, 1024] {
        let body = vec![b'x'; size];
        let mut encoded = BytesMut::new();
        encode_content(&mut encoded, 1, &method, &props, &body, 131072);
        group.throughput(Throughput::Elements(3));

        group.bench_with_input(BenchmarkId::new("decode", format!("{size}B")), &encoded, |b, encoded| {
            // The copy of the input is set up outside the timed part.
            b.iter_batched(
                || encoded.clone(),
                |mut buf| {
                    for _ in 0..3 {
                        black_box(decode_frame(&mut buf, 131072).unwrap().unwrap());
                    }
                },
                BatchSize::SmallInput,
            )
        });
        let mut out = BytesMut::with_capacity(4096);
        group.bench_with_input(BenchmarkId::new("encode", format!("{size}B")), &body, |b, body| {
            b.iter(|| {
                out.clear();
                encode_content(&mut out, 1, black_box(&method), black_box(&props), body, 131072);
                black_box(&out);
            })
        });
    }
    group.finish();
}

criterion_group!(benches, codec);
criterion_main!(benches);
