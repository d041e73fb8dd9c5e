//! Record-batch throughput: decode per codec (100 B and 1 KiB records), CRC-32C, encode, and
//! lz4_flex decompressing the same bytes on its own as the reference for the lz4 target.
//!
//! Throughput is in bytes of *encoded batch* (what arrives on the wire); the benchmark id names
//! the records per batch, so records/s = batch records / time per batch.
//! Run: `cargo bench --bench record` (add `-- decode` etc. to filter).

use std::hint::black_box;
use std::io::Read;
use std::time::Duration;

use bytes::Bytes;
use criterion::{criterion_group, criterion_main, BenchmarkId, Criterion, Throughput};
use spate::record::compression::ALL_CODECS;
use spate::record::{ColumnarBatch, Compression, DecodeOptions, RawBatch, RecordBatchBuilder};

/// Uncompressed records per batch: about 1 MiB, librdkafka's default `batch.size`.
const BATCH_BYTES: usize = 1 << 20;

/// Log-line-like values: compressible the way real payloads are, not a run of one byte.
fn value(i: usize, size: usize) -> Vec<u8> {
    let words = [
        "order", "user", "amount", "status", "shipped", "pending", "region", "eu-west", "sku",
    ];
    let mut v = format!("{{\"id\":{i},\"ts\":{},", 1_700_000_000_000u64 + i as u64).into_bytes();
    let mut j = i;
    while v.len() < size {
        v.extend_from_slice(words[j % words.len()].as_bytes());
        v.extend_from_slice(format!(":{} ", (j * 7919) % 10007).as_bytes());
        j += 1;
    }
    v.truncate(size);
    v
}

fn batch(codec: Compression, size: usize) -> (Bytes, usize) {
    let mut b = RecordBatchBuilder::new(codec);
    let mut i = 0;
    while b.records_len() < BATCH_BYTES {
        let key = format!("key-{}", i % 1000);
        b.append(
            1_700_000_000_000 + i as i64,
            Some(key.as_bytes()),
            Some(&value(i, size)),
            &[],
        )
        .unwrap();
        i += 1;
    }
    (b.build().unwrap(), i)
}

fn decode(c: &mut Criterion) {
    let mut g = c.benchmark_group("decode");
    for size in [100, 1024] {
        for codec in ALL_CODECS {
            let (bytes, n) = batch(codec, size);
            let raw = RawBatch::new(bytes.clone()).unwrap();
            assert_eq!(raw.compression().unwrap(), codec);
            g.throughput(Throughput::Bytes(bytes.len() as u64));
            let mut out = ColumnarBatch::default();
            let opts = DecodeOptions::default();
            g.bench_function(
                BenchmarkId::new(format!("{codec}/{size}B"), format!("{n}rec")),
                |b| {
                    b.iter(|| {
                        raw.decode_into(&mut out, &opts).unwrap();
                        black_box(out.len())
                    })
                },
            );
            if codec != Compression::None {
                // The codec alone, as spate calls it (no CRC, no record parsing).
                let compressed = raw.records_data();
                g.bench_function(
                    BenchmarkId::new(
                        format!("{codec}-decompress-only/{size}B"),
                        format!("{n}rec"),
                    ),
                    |b| {
                        b.iter(|| {
                            black_box(
                                spate::record::compression::decompress(
                                    codec,
                                    &compressed,
                                    64 << 20,
                                )
                                .unwrap()
                                .len(),
                            )
                        })
                    },
                );
            }
            if codec == Compression::Lz4 {
                // The reference: lz4_flex alone, same compressed bytes, into a fresh Vec.
                let compressed = raw.records_data();
                g.bench_function(
                    BenchmarkId::new(format!("lz4_flex-only/{size}B"), format!("{n}rec")),
                    |b| {
                        b.iter(|| {
                            let mut v = Vec::new();
                            lz4_flex::frame::FrameDecoder::new(&compressed[..])
                                .read_to_end(&mut v)
                                .unwrap();
                            black_box(v.len())
                        })
                    },
                );
            }
        }
    }
    g.finish();
}

fn crc(c: &mut Criterion) {
    let mut g = c.benchmark_group("crc32c");
    let data: Vec<u8> = (0..BATCH_BYTES).map(|i| (i * 31) as u8).collect();
    g.throughput(Throughput::Bytes(data.len() as u64));
    g.bench_function("1MiB", |b| {
        b.iter(|| black_box(crc32c::crc32c(black_box(&data))))
    });
    g.finish();
}

fn encode(c: &mut Criterion) {
    let mut g = c.benchmark_group("encode");
    for size in [100, 1024] {
        let values: Vec<Vec<u8>> = (0..BATCH_BYTES / size).map(|i| value(i, size)).collect();
        let keys: Vec<String> = (0..values.len())
            .map(|i| format!("key-{}", i % 1000))
            .collect();
        for codec in ALL_CODECS {
            g.throughput(Throughput::Bytes((values.len() * size) as u64));
            let mut b = RecordBatchBuilder::new(codec);
            g.bench_function(
                BenchmarkId::new(format!("{codec}/{size}B"), format!("{}rec", values.len())),
                |bench| {
                    bench.iter(|| {
                        b.clear();
                        for (i, (k, v)) in keys.iter().zip(&values).enumerate() {
                            b.append(
                                1_700_000_000_000 + i as i64,
                                Some(k.as_bytes()),
                                Some(v),
                                &[],
                            )
                            .unwrap();
                        }
                        black_box(b.build().unwrap().len())
                    })
                },
            );
        }
    }
    g.finish();
}

criterion_group! {
    name = benches;
    config = Criterion::default().warm_up_time(Duration::from_millis(500)).measurement_time(Duration::from_secs(2)).sample_size(20);
    targets = decode, crc, encode
}
criterion_main!(benches);
