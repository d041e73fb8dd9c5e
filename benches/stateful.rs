//! Stateful building blocks in records per second: windowed aggregation (tumbling count,
//! hopping sum, session count over 1,000 keys, event times slightly out of order, fed in
//! batches of 1,000 as a pipeline would), key-value state store operations (put, get, and the
//! changelog's last-change-per-key), restoring a store from changelog batches, and a windowed
//! stream-stream join (two sides of 50,000 records over 1,000 keys, 5 s window, changes taken
//! for the changelog every 1,000 records).
//! Run: `cargo bench --bench stateful`.

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use spate::pipeline::join_state::{JoinState, JoinType, Side};
use spate::pipeline::state::{restore, KeyedStore, MemoryStore};
use spate::pipeline::window::{Aggregate, WindowSpec, WindowedAggregator};
use spate::record::{ColumnarBatch, Compression, RawBatch, RecordBatchBuilder};

const RECORDS: usize = 100_000;

fn input() -> Vec<(Vec<u8>, i64, f64)> {
    let mut rng = fastrand::Rng::with_seed(16);
    (0..RECORDS)
        .map(|i| {
            let key = format!("user-{}", rng.usize(0..1_000)).into_bytes();
            let time = 1_700_000_000_000 + i as i64 * 10 + rng.i64(-2_000..=2_000);
            (key, time, rng.f64() * 100.0)
        })
        .collect()
}

fn windows(c: &mut Criterion) {
    let input = input();
    let mut group = c.benchmark_group("windows");
    group.throughput(Throughput::Elements(RECORDS as u64));
    let cases = [
        (
            "tumbling-60s-count",
            WindowSpec::Tumbling { size: 60_000 },
            Aggregate::Count,
        ),
        (
            "hopping-60s-10s-sum",
            WindowSpec::Hopping {
                size: 60_000,
                advance: 10_000,
            },
            Aggregate::Sum,
        ),
        (
            "session-5s-count",
            WindowSpec::Session { gap: 5_000 },
            Aggregate::Count,
        ),
    ];
    for (name, spec, agg) in cases {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut w = WindowedAggregator::new(spec, agg.clone(), 5_000);
                let mut emitted = 0;
                for chunk in input.chunks(1_000) {
                    emitted += w
                        .push(chunk.iter().map(|(k, t, v)| (k.as_slice(), *t, *v)))
                        .len();
                }
                emitted += w.finish().len();
                black_box(emitted)
            })
        });
    }
    group.finish();
}

fn store(c: &mut Criterion) {
    let keys: Vec<Vec<u8>> = (0..RECORDS)
        .map(|i| format!("key-{i:08}").into_bytes())
        .collect();
    let value = [7u8; 16];
    let mut group = c.benchmark_group("state-store");
    group.throughput(Throughput::Elements(RECORDS as u64));
    group.bench_function("put", |b| {
        b.iter(|| {
            let mut s = MemoryStore::new(1 << 30);
            for k in &keys {
                s.put(k, &value).unwrap();
            }
            black_box(s.take_changes().len())
        })
    });
    let mut full = MemoryStore::new(1 << 30);
    for k in &keys {
        full.put(k, &value).unwrap();
    }
    full.take_changes();
    group.bench_function("get", |b| {
        b.iter(|| {
            let mut found = 0;
            for k in &keys {
                found += usize::from(full.get(k).is_some());
            }
            black_box(found)
        })
    });
    // A changelog of the whole store, as restored on assignment.
    let batches: Vec<ColumnarBatch> = keys
        .chunks(1_000)
        .map(|chunk| {
            let mut b = RecordBatchBuilder::new(Compression::Lz4);
            for (i, k) in chunk.iter().enumerate() {
                b.append(i as i64, Some(k), Some(&value), &[]).unwrap();
            }
            RawBatch::new(b.build().unwrap()).unwrap().decode().unwrap()
        })
        .collect();
    group.bench_function("restore", |b| {
        b.iter(|| {
            let mut s = MemoryStore::new(1 << 30);
            for batch in &batches {
                restore(&mut s, batch).unwrap();
            }
            black_box(s.len())
        })
    });
    group.finish();
}

fn join(c: &mut Criterion) {
    let input = input();
    let mut group = c.benchmark_group("join");
    group.throughput(Throughput::Elements(RECORDS as u64));
    for (name, kind) in [("inner-5s", JoinType::Inner), ("left-5s", JoinType::Left)] {
        group.bench_function(name, |b| {
            b.iter(|| {
                let mut j = JoinState::new(MemoryStore::new(1 << 30), 5_000, 5_000, kind);
                let mut out = Vec::new();
                let mut logged = 0;
                for (i, chunk) in input.chunks(1_000).enumerate() {
                    for (n, (k, t, _)) in chunk.iter().enumerate() {
                        let side = if n % 2 == 0 { Side::Left } else { Side::Right };
                        let offset = (i * 1_000 + n) as i64;
                        j.push(side, k, *t, offset, Some(b"{\"n\":1}"), &mut out)
                            .unwrap();
                    }
                    logged += j.take_changes().unwrap().len();
                    out.clear();
                }
                j.finish(&mut out).unwrap();
                black_box((logged, out.len()))
            })
        });
    }
    group.finish();
}

criterion_group!(benches, windows, store, join);
criterion_main!(benches);
