//! Conversion of a consumed batch to an Arrow `RecordBatch` (feature `arrow`), in bytes of the
//! batch's record buffer per second: keys, values and headers become views into that buffer,
//! so the cost is the views (16 bytes per entry), offsets and timestamps, not the payload.
//! Beside it, what a copy costs: the same values appended to an Arrow `BinaryBuilder` one by
//! one (what converting rows from a client that hands out owned records does).
//! Run: `cargo bench --bench arrow --features arrow`.

use std::hint::black_box;

use arrow_array::builder::BinaryBuilder;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spate::formats::arrow::from_columnar;
use spate::record::{ColumnarBatch, Compression, RawBatch, RecordBatchBuilder};

/// A decoded batch of about 1 MiB of records with `size`-byte values, one header each.
fn batch(size: usize) -> ColumnarBatch {
    let mut b = RecordBatchBuilder::new(Compression::None);
    let value = vec![b'x'; size];
    let mut i = 0;
    while b.records_len() < 1 << 20 {
        let key = format!("key-{i:08}");
        b.append(
            i,
            Some(key.as_bytes()),
            Some(&value),
            &[("trace", Some(b"0123456789abcdef"))],
        )
        .unwrap();
        i += 1;
    }
    RawBatch::new(b.build().unwrap()).unwrap().decode().unwrap()
}

fn conversion(c: &mut Criterion) {
    let mut group = c.benchmark_group("arrow");
    for size in [100usize, 1024] {
        let batch = batch(size);
        group.throughput(Throughput::Bytes(batch.data().len() as u64));
        group.bench_with_input(
            BenchmarkId::new("from_columnar", size),
            &batch,
            |b, batch| b.iter(|| black_box(from_columnar(black_box(batch)).unwrap())),
        );
        group.bench_with_input(BenchmarkId::new("copy_values", size), &batch, |b, batch| {
            b.iter(|| {
                let mut builder = BinaryBuilder::with_capacity(batch.len(), batch.data().len());
                for i in 0..batch.len() {
                    builder.append_option(batch.value(i));
                }
                black_box(builder.finish())
            })
        });
    }
    group.finish();
}

criterion_group!(benches, conversion);
criterion_main!(benches);
