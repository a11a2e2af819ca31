//! The codecs and the partitioner, per event: protobuf decode (what every projector does
//! for every record; the direct reader and prost's path side by side), protobuf encode
//! (what every append does; the direct writer and prost's side by side), canonical JSON
//! decode (what `POST /v1/events` does), canonical JSON encode (what export does), and
//! Kafka's murmur2 partitioner (what every append does).

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use omnilog_events::{
    decode, decode_through_prost, encode, encode_through_prost, parse_event, to_canonical_json,
};
use omnilog_testkit::{HistoryConfig, history};

fn codecs(c: &mut Criterion) {
    let events: Vec<_> =
        history(HistoryConfig::with_events(1, 10_000).with_customer_ids()).collect();
    let protobuf: Vec<Vec<u8>> = events.iter().map(encode).collect();
    let json: Vec<String> = events.iter().map(to_canonical_json).collect();
    let keys: Vec<String> = events
        .iter()
        .filter_map(|e| e.partition_key().map(str::to_owned))
        .collect();

    let mut group = c.benchmark_group("codec");
    group.throughput(Throughput::Elements(events.len() as u64));
    group.bench_function("protobuf decode", |b| {
        b.iter(|| {
            for bytes in &protobuf {
                std::hint::black_box(decode(bytes).expect("decodes"));
            }
        })
    });
    group.bench_function("protobuf decode through prost", |b| {
        b.iter(|| {
            for bytes in &protobuf {
                std::hint::black_box(decode_through_prost(bytes).expect("decodes"));
            }
        })
    });
    group.bench_function("protobuf encode", |b| {
        b.iter(|| {
            for event in &events {
                std::hint::black_box(encode(event));
            }
        })
    });
    group.bench_function("protobuf encode through prost", |b| {
        b.iter(|| {
            for event in &events {
                std::hint::black_box(encode_through_prost(event));
            }
        })
    });
    group.bench_function("canonical JSON decode", |b| {
        b.iter(|| {
            for text in &json {
                std::hint::black_box(parse_event(text.as_bytes()).expect("parses"));
            }
        })
    });
    group.bench_function("canonical JSON encode", |b| {
        b.iter(|| {
            for event in &events {
                std::hint::black_box(to_canonical_json(event));
            }
        })
    });
    group.finish();

    let mut group = c.benchmark_group("partitioner");
    group.throughput(Throughput::Elements(keys.len() as u64));
    group.bench_function("murmur2 of customer ids, 12 partitions", |b| {
        b.iter(|| {
            for key in &keys {
                std::hint::black_box(omnilog_log::partition_for(key.as_bytes(), 12));
            }
        })
    });
    group.finish();
}

criterion_group!(benches, codecs);
criterion_main!(benches);
