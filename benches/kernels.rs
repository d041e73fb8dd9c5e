//! Pipeline kernels in bytes of values per second: ASCII uppercase (the kernel alone, and the
//! whole operator: copy into a new column, then transform), the lowercase scan, the substring
//! filter and the JSON field extract, over decoded batches of 100 B and 1 KiB values. The
//! per-record reference is what a loop over a client library does: a new `Vec` per value.
//! Run: `cargo bench --bench kernels`.

use std::hint::black_box;
use std::sync::Arc;

use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spate::pipeline::{kernels, ops, Batch, Chain};
use spate::record::{Compression, RawBatch, RecordBatchBuilder};

/// JSON-ish lowercase values of `size` bytes.
fn value(i: usize, size: usize) -> Vec<u8> {
    let mut v = format!("{{\"id\":{i},\"user\":\"user-{}\",\"msg\":\"", i % 977).into_bytes();
    let words = [
        "order", "shipped", "pending", "region", "eu-west", "amount", "status",
    ];
    let mut j = i;
    while v.len() < size - 2 {
        v.extend_from_slice(words[j % words.len()].as_bytes());
        v.push(b' ');
        j += 1;
    }
    v.truncate(size - 2);
    v.extend_from_slice(b"\"}");
    v
}

/// A decoded batch of about 1 MiB of values.
fn batch(size: usize) -> (Batch, u64) {
    let mut b = RecordBatchBuilder::new(Compression::None);
    let mut bytes = 0;
    let mut i = 0;
    while bytes < 1 << 20 {
        let v = value(i, size);
        bytes += v.len();
        b.append(0, Some(format!("key-{i}").as_bytes()), Some(&v), &[])
            .unwrap();
        i += 1;
    }
    let decoded = RawBatch::new(b.build().unwrap()).unwrap().decode().unwrap();
    (Batch::new(Arc::from("t"), 0, decoded), bytes as u64)
}

fn kernels(c: &mut Criterion) {
    for size in [100, 1024] {
        let (input, bytes) = batch(size);
        let mut group = c.benchmark_group("kernels");
        group.throughput(Throughput::Bytes(bytes));

        let mut flat: Vec<u8> = input
            .selected()
            .flat_map(|r| input.value(r).unwrap().to_vec())
            .collect();
        group.bench_function(BenchmarkId::new("ascii_uppercase_in_place", size), |b| {
            b.iter(|| kernels::ascii_uppercase(black_box(&mut flat)))
        });
        let lower: Vec<u8> = flat.iter().map(|b| b.to_ascii_uppercase()).collect();
        group.bench_function(
            BenchmarkId::new("has_lowercase_scan_all_upper", size),
            |b| b.iter(|| kernels::has_ascii_lowercase(black_box(&lower))),
        );
        let mut upper = Chain::new().then(ops::uppercase());
        group.bench_function(BenchmarkId::new("uppercase_operator", size), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                upper.run(input.clone(), &mut out).unwrap();
                black_box(&out);
            })
        });
        group.bench_function(BenchmarkId::new("per_record_vec_reference", size), |b| {
            b.iter(|| {
                let v: Vec<Vec<u8>> = input
                    .selected()
                    .map(|r| input.value(r).unwrap().to_ascii_uppercase())
                    .collect();
                black_box(v)
            })
        });
        let mut filter = Chain::new().then(ops::filter_contains(b"user-42\""));
        group.bench_function(BenchmarkId::new("filter_contains", size), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                filter.run(input.clone(), &mut out).unwrap();
                black_box(&out);
            })
        });
        let mut json = Chain::new().then(ops::json_field("user"));
        group.bench_function(BenchmarkId::new("json_field", size), |b| {
            let mut out = Vec::new();
            b.iter(|| {
                out.clear();
                json.run(input.clone(), &mut out).unwrap();
                black_box(&out);
            })
        });
        group.finish();
    }
}

criterion_group!(benches, kernels);
criterion_main!(benches);
