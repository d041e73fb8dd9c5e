//! Round-trips and hostile input for record batches.

use bytes::{BufMut, Bytes, BytesMut};
use proptest::prelude::*;

use super::compression::ALL_CODECS;
use super::*;
use crate::wire::primitives::put_varint;

type Rec = (
    i64,
    Option<Vec<u8>>,
    Option<Vec<u8>>,
    Vec<(String, Option<Vec<u8>>)>,
);

fn build(codec: Compression, records: &[Rec]) -> Bytes {
    let mut b = RecordBatchBuilder::new(codec);
    for (ts, k, v, hs) in records {
        let hs: Vec<Header<'_>> = hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        b.append(*ts, k.as_deref(), v.as_deref(), &hs).unwrap();
    }
    b.build().unwrap()
}

/// Rewrites the CRC so a mutated batch gets past the CRC check to the code under test.
fn fix_crc(batch: &mut [u8]) {
    let crc = crc32c::crc32c(&batch[21..]);
    batch[17..21].copy_from_slice(&crc.to_be_bytes());
}

fn records_strategy(max_value: usize) -> impl Strategy<Value = Vec<Rec>> {
    proptest::collection::vec(
        (
            1_600_000_000_000i64..1_800_000_000_000,
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..40)),
            proptest::option::of(proptest::collection::vec(any::<u8>(), 0..max_value)),
            proptest::collection::vec(
                (
                    "[a-zA-Z0-9._-]{0,12}",
                    proptest::option::of(proptest::collection::vec(any::<u8>(), 0..20)),
                ),
                0..3,
            ),
        ),
        1..40,
    )
}

fn check_round_trip(codec: Compression, records: &[Rec]) -> Result<(), TestCaseError> {
    let mut builder = RecordBatchBuilder::new(codec);
    for (ts, k, v, hs) in records {
        let hs: Vec<Header<'_>> = hs.iter().map(|(k, v)| (k.as_str(), v.as_deref())).collect();
        let before = builder.size_in_bytes();
        let predicted = builder.record_size(*ts, k.as_deref(), v.as_deref(), &hs);
        builder
            .append(*ts, k.as_deref(), v.as_deref(), &hs)
            .unwrap();
        prop_assert_eq!(builder.size_in_bytes() - before, predicted);
    }
    let bytes = builder.build().unwrap();
    if codec == Compression::None {
        prop_assert_eq!(
            bytes.len(),
            builder.size_in_bytes(),
            "exact size when uncompressed"
        );
    } else {
        prop_assert!(
            bytes.len() <= builder.size_in_bytes(),
            "upper bound when compressed"
        );
    }
    let raw = RawBatch::new(bytes).unwrap();
    let batch = raw.decode().unwrap();
    prop_assert_eq!(batch.len(), records.len());
    prop_assert_eq!(batch.header().last_offset_delta as usize, records.len() - 1);
    prop_assert_eq!(
        batch.header().max_timestamp,
        records.iter().map(|r| r.0).max().unwrap()
    );
    for (i, (rec, (ts, k, v, hs))) in batch.records().zip(records).enumerate() {
        prop_assert_eq!(rec.offset(), i as i64);
        prop_assert_eq!(rec.timestamp(), *ts);
        prop_assert_eq!(rec.key(), k.as_deref());
        prop_assert_eq!(rec.value(), v.as_deref());
        let got: Vec<(Vec<u8>, Option<Vec<u8>>)> = rec
            .headers()
            .map(|(k, v)| (k.to_vec(), v.map(<[u8]>::to_vec)))
            .collect();
        let want: Vec<(Vec<u8>, Option<Vec<u8>>)> = hs
            .iter()
            .map(|(k, v)| (k.as_bytes().to_vec(), v.clone()))
            .collect();
        prop_assert_eq!(got, want);
    }
    Ok(())
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(64))]

    #[test]
    fn round_trip_every_codec(codec in proptest::sample::select(ALL_CODECS.to_vec()), records in records_strategy(300)) {
        check_round_trip(codec, &records)?;
    }

    #[test]
    fn round_trip_large_values(codec in proptest::sample::select(ALL_CODECS.to_vec()), size in 100_000usize..300_000, n in 1usize..4) {
        let records: Vec<Rec> = (0..n)
            .map(|i| (1_700_000_000_000 + i as i64, None, Some((0..size).map(|j| (j % 251) as u8).collect()), vec![]))
            .collect();
        check_round_trip(codec, &records)?;
    }

    #[test]
    fn batches_split_a_section_and_report_a_partial_tail(n in 1usize..5, cut in 0usize..200) {
        let mut section = BytesMut::new();
        let mut ends = Vec::new();
        for i in 0..n {
            section.extend_from_slice(&build(Compression::None, &[(i as i64, None, Some(vec![i as u8; 50]), vec![])]));
            ends.push(section.len());
        }
        let total = section.len();
        let cut = cut.min(total);
        let section = section.freeze().slice(..total - cut);
        let mut it = batches(section.clone());
        let whole: Vec<_> = it.by_ref().map(|b| b.unwrap()).collect();
        let complete = ends.iter().filter(|&&e| e <= section.len()).count();
        prop_assert_eq!(whole.len(), complete);
        for (i, b) in whole.iter().enumerate() {
            let d = b.decode().unwrap();
            prop_assert_eq!(d.value(0).unwrap(), &[i as u8; 50][..]);
        }
        let tail = section.len() - ends.get(complete.wrapping_sub(1)).copied().filter(|_| complete > 0).unwrap_or(0);
        match it.partial() {
            None => prop_assert_eq!(tail, 0),
            Some(p) => prop_assert_eq!(p.available, tail),
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(data in proptest::collection::vec(any::<u8>(), 0..400)) {
        for b in batches(Bytes::from(data)).flatten() {
            let _ = b.decode();
        }
    }

    /// A valid batch with one byte changed anywhere after the header, CRC fixed up: an error or
    /// a decode, never a panic.
    #[test]
    fn mutated_records_never_panic(codec in proptest::sample::select(ALL_CODECS.to_vec()), records in records_strategy(60), pos: usize, byte: u8) {
        let mut bytes = build(codec, &records).to_vec();
        let i = 21 + pos % (bytes.len() - 21);
        bytes[i] = byte;
        fix_crc(&mut bytes);
        if let Ok(raw) = RawBatch::new(Bytes::from(bytes)) {
            let _ = raw.decode();
        }
    }
}

fn decode_err(batch: Bytes) -> RecordError {
    RawBatch::new(batch).unwrap().decode().unwrap_err()
}

fn sample() -> Bytes {
    build(
        Compression::None,
        &[
            (
                1000,
                Some(b"k1".to_vec()),
                Some(b"v1".to_vec()),
                vec![("h".into(), Some(b"x".to_vec()))],
            ),
            (1001, None, None, vec![]),
        ],
    )
}

#[test]
fn bad_crc_is_reported_with_both_values() {
    let mut bytes = sample().to_vec();
    let last = bytes.len() - 1;
    bytes[last] ^= 0xff;
    let err = decode_err(Bytes::from(bytes));
    assert!(
        matches!(
            err,
            RecordError::CrcMismatch {
                at: 0,
                base_offset: 0,
                ..
            }
        ),
        "{err}"
    );
    assert!(err.to_string().contains("CRC-32C mismatch"), "{err}");
}

#[test]
fn truncation_at_every_offset() {
    let bytes = sample();
    for cut in 0..bytes.len() {
        let short = bytes.slice(..cut);
        assert!(RawBatch::new(short.clone()).is_err(), "cut at {cut}");
        let mut it = batches(short);
        assert!(
            it.next().is_none(),
            "cut at {cut}: a cut batch is partial, not an error"
        );
        if cut > 0 {
            assert_eq!(it.partial().unwrap().available, cut);
        }
    }
}

#[test]
fn truncated_records_inside_a_batch_are_errors() {
    // Shrink the batch by cutting record bytes, fixing batch_length and CRC, so only the record
    // decoder can notice.
    let full = sample();
    for cut in 1..full.len() - BATCH_HEADER_LEN {
        let mut b = full[..full.len() - cut].to_vec();
        let len = (b.len() - BATCH_LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&len.to_be_bytes());
        fix_crc(&mut b);
        let err = decode_err(Bytes::from(b));
        assert!(
            matches!(
                err,
                RecordError::Record { .. }
                    | RecordError::MissingRecords { .. }
                    | RecordError::RecordLength { .. }
            ),
            "cut {cut}: {err}"
        );
    }
}

fn with_count(count: i32) -> Bytes {
    let mut b = sample().to_vec();
    b[57..61].copy_from_slice(&count.to_be_bytes());
    fix_crc(&mut b);
    Bytes::from(b)
}

#[test]
fn record_count_lies() {
    let err = decode_err(with_count(-1));
    assert_eq!(err, RecordError::NegativeRecordCount { at: 0, count: -1 });
    // Huge: fails on the data, and allocates by the data, not by the count.
    let err = decode_err(with_count(i32::MAX));
    assert!(
        matches!(
            err,
            RecordError::MissingRecords {
                declared: i32::MAX,
                found: 2,
                ..
            }
        ),
        "{err}"
    );
    let err = decode_err(with_count(1));
    assert!(
        matches!(err, RecordError::TrailingBytes { declared: 1, .. }),
        "{err}"
    );
}

#[test]
fn batch_length_lies() {
    let mut b = sample().to_vec();
    b[8..12].copy_from_slice(&(-5i32).to_be_bytes());
    let err = batches(Bytes::from(b.clone())).next().unwrap().unwrap_err();
    assert_eq!(err, RecordError::InvalidBatchLength { at: 0, length: -5 });
    b[8..12].copy_from_slice(&i32::MAX.to_be_bytes());
    let mut it = batches(Bytes::from(b));
    assert!(it.next().is_none());
    assert_eq!(it.partial().unwrap().needed, Some(12 + i32::MAX as usize));
}

/// Builds a batch whose single record is `record` (raw bytes), with a valid header and CRC.
fn batch_with_record(record: &[u8], attributes: i16) -> Bytes {
    let mut b = BytesMut::new();
    b.put_i64(0);
    b.put_i32((BATCH_HEADER_LEN - BATCH_LOG_OVERHEAD + record.len()) as i32);
    b.put_i32(-1);
    b.put_i8(2);
    b.put_u32(0);
    b.put_i16(attributes);
    b.put_i32(0);
    b.put_i64(0);
    b.put_i64(0);
    b.put_i64(-1);
    b.put_i16(-1);
    b.put_i32(-1);
    b.put_i32(1);
    b.put_slice(record);
    let mut v = b.to_vec();
    fix_crc(&mut v);
    Bytes::from(v)
}

/// Decodes a batch holding one record whose body (everything after its length) is `body`.
fn decode_body(body: &[u8], attributes: i16) -> Result<ColumnarBatch, RecordError> {
    let mut full = Vec::new();
    put_varint(&mut full, body.len() as i32);
    full.extend_from_slice(body);
    RawBatch::new(batch_with_record(&full, attributes))
        .unwrap()
        .decode()
}

#[test]
fn record_length_lies() {
    // Record claims 100 bytes but holds 7.
    let mut rec = Vec::new();
    put_varint(&mut rec, 100);
    rec.extend_from_slice(&[0, 0, 0, 1, 1, 0]);
    let err = decode_err(batch_with_record(&rec, 0));
    assert!(
        matches!(
            err,
            RecordError::RecordLength {
                declared: 100,
                actual: 6,
                ..
            }
        ),
        "{err}"
    );
    // Value claims 2^30 bytes.
    let mut rec = vec![0u8, 0, 0, 0, 1];
    put_varint(&mut rec, 1 << 30);
    let err = decode_body(&rec, 0).unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::Record {
                index: 0,
                decompressed: false,
                ..
            }
        ),
        "{err}"
    );
    // Negative lengths other than -1.
    let mut rec = vec![0u8, 0, 0];
    put_varint(&mut rec, -7);
    let err = decode_body(&rec, 0).unwrap_err();
    assert!(err.to_string().contains("invalid length -7"), "{err}");
}

#[test]
fn varint_overflow_in_a_record() {
    let rec = [
        0x0c, 0, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0xff, 0x7f,
    ];
    let err = decode_err(batch_with_record(&rec, 0));
    assert!(err.to_string().contains("varint at byte"), "{err}");
}

#[test]
fn unknown_compression_id() {
    let b = batch_with_record(&[0x0e, 0, 0, 0, 1, 1, 0], 0x07);
    let err = decode_err(b);
    assert_eq!(
        err,
        RecordError::Compression {
            at: 0,
            source: CompressionError::UnknownCodec { id: 7 }
        }
    );
}

#[test]
fn decompression_bomb_in_a_batch() {
    // 1 record of 32 MiB of zeros, lz4: a few hundred KiB compressed.
    let mut b = RecordBatchBuilder::new(Compression::Lz4);
    b.append(0, None, Some(&vec![0u8; 32 << 20]), &[]).unwrap();
    let bytes = b.build().unwrap();
    assert!(bytes.len() < 1 << 20);
    let raw = RawBatch::new(bytes).unwrap();
    let mut out = ColumnarBatch::default();
    let err = raw
        .decode_into(
            &mut out,
            &DecodeOptions {
                max_decompressed: 1 << 20,
            },
        )
        .unwrap_err();
    assert!(
        matches!(
            err,
            RecordError::Compression {
                source: CompressionError::TooLarge { .. },
                ..
            }
        ),
        "{err}"
    );
    assert!(out.is_empty());
}

#[test]
fn legacy_magic_is_named() {
    let mut b = sample().to_vec();
    b[16] = 1;
    let err = batches(Bytes::from(b)).next().unwrap().unwrap_err();
    assert_eq!(err, RecordError::UnsupportedMagic { at: 0, magic: 1 });
}

#[test]
fn uncompressed_values_are_slices_of_the_input() {
    let bytes = sample();
    let batch = RawBatch::new(bytes.clone()).unwrap().decode().unwrap();
    let v = batch.value_bytes(0).unwrap();
    let range = bytes.as_ptr() as usize..bytes.as_ptr() as usize + bytes.len();
    assert!(range.contains(&(v.as_ptr() as usize)));
}

#[test]
fn control_batches_and_markers() {
    // A COMMIT marker as a broker writes it: key (version 0, type 1), value (version 0, epoch 5).
    let key = [0u8, 0, 0, 1];
    let value = [0u8, 0, 0, 0, 0, 5];
    let mut rec = vec![0u8, 0, 0];
    put_varint(&mut rec, key.len() as i32);
    rec.extend_from_slice(&key);
    put_varint(&mut rec, value.len() as i32);
    rec.extend_from_slice(&value);
    rec.push(0);
    let batch = decode_body(&rec, 0x30).unwrap();
    assert!(batch.header().is_control() && batch.header().is_transactional());
    let marker = batch.control_record().unwrap().unwrap();
    assert_eq!(marker.kind, ControlRecordType::Commit);
    assert_eq!(marker.coordinator_epoch, Some(5));
    assert!(sample_batch().control_record().is_none());
}

fn sample_batch() -> ColumnarBatch {
    RawBatch::new(sample()).unwrap().decode().unwrap()
}

#[test]
fn builder_writes_java_defaults_and_idempotent_fields() {
    let raw = RawBatch::new(sample()).unwrap();
    let h = raw.header();
    assert_eq!(
        (
            h.base_offset,
            h.partition_leader_epoch,
            h.producer_id,
            h.producer_epoch,
            h.base_sequence
        ),
        (0, -1, -1, -1, -1)
    );
    assert_eq!(
        (
            h.base_timestamp,
            h.max_timestamp,
            h.records_count,
            h.attributes
        ),
        (1000, 1001, 2, 0)
    );
    let mut b = RecordBatchBuilder::new(Compression::Zstd)
        .producer(42, 3, 100)
        .transactional(true);
    b.append(5, None, Some(b"x"), &[]).unwrap();
    let h = RawBatch::new(b.build().unwrap()).unwrap().header();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (42, 3, 100)
    );
    assert!(h.is_transactional());
    // One tiny value does not compress: the batch falls back to no compression.
    assert_eq!(h.compression_id(), 0);
}

#[test]
fn try_append_respects_the_limit_exactly() {
    let mut b = RecordBatchBuilder::new(Compression::None);
    let v = [1u8; 100];
    let mut n = 0;
    while b.try_append(0, None, Some(&v), &[], 1000).unwrap() {
        n += 1;
    }
    assert!(b.size_in_bytes() <= 1000);
    assert_eq!(b.build().unwrap().len(), b.size_in_bytes());
    assert!(b.size_in_bytes() + b.record_size(0, None, Some(&v), &[]) > 1000);
    assert_eq!(n, b.len());
    // An empty builder accepts an oversized record.
    let mut b = RecordBatchBuilder::new(Compression::None);
    assert!(b.try_append(0, None, Some(&[0; 2000]), &[], 1000).unwrap());
    assert!(matches!(
        RecordBatchBuilder::new(Compression::None).build(),
        Err(RecordError::EmptyBatch)
    ));
}

#[test]
fn restamping_a_batch_keeps_it_valid() {
    let mut b = RecordBatchBuilder::new(Compression::Lz4).producer(7, 0, 10);
    for i in 0..50u8 {
        b.append(i64::from(i), Some(&[i]), Some(&[i; 40]), &[])
            .unwrap();
    }
    let mut bytes = b.build().unwrap().to_vec();
    restamp_producer(&mut bytes, 7, 1, 0).unwrap();
    let raw = RawBatch::new(Bytes::from(bytes)).unwrap();
    let h = raw.header();
    assert_eq!(
        (h.producer_id, h.producer_epoch, h.base_sequence),
        (7, 1, 0)
    );
    // The CRC was recomputed: decoding checks it.
    let decoded = raw.decode().unwrap();
    assert_eq!(decoded.len(), 50);
    assert!(matches!(
        restamp_producer(&mut [0u8; 10], 1, 1, 1),
        Err(RecordError::InvalidBatchLength { .. })
    ));
}

#[test]
fn skip_before_drops_leading_records_and_keeps_headers_aligned() {
    let mut b = RecordBatchBuilder::new(Compression::Lz4).base_offset(100);
    for i in 0..10u8 {
        let h = [i];
        b.append(
            i64::from(i),
            Some(&[i]),
            Some(&[i; 3]),
            &[("h", Some(&h[..]))],
        )
        .unwrap();
    }
    let mut batch = RawBatch::new(b.build().unwrap()).unwrap().decode().unwrap();
    let full = batch.memory_size();
    assert_eq!(batch.skip_before(104), 4);
    assert_eq!(batch.len(), 6);
    assert_eq!(batch.offset(0), 104);
    assert_eq!(batch.key(0), Some(&[4u8][..]));
    let headers: Vec<_> = batch.headers(0).collect();
    assert_eq!(headers, [(&b"h"[..], Some(&[4u8][..]))]);
    assert_eq!(batch.headers(5).next().unwrap().1, Some(&[9u8][..]));
    assert!(batch.memory_size() < full);
    assert_eq!(batch.skip_before(0), 0);
}

#[test]
fn offsets_and_timestamps_that_overflow_are_errors_not_wraps() {
    let recs: Vec<Rec> = (0..3)
        .map(|i| (1_700_000_000_000 + i, None, Some(vec![b'v'; 4]), vec![]))
        .collect();
    let good = build(Compression::None, &recs);
    // A base offset whose batch would end past i64::MAX (the base offset is outside the CRC).
    let mut bad = good.to_vec();
    bad[0..8].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
    let err = RawBatch::new(Bytes::from(bad)).unwrap_err();
    assert!(
        matches!(&err, RecordError::Overflow { base, delta: 3, .. } if *base == i64::MAX - 1),
        "{err}"
    );
    // The last one that fits is fine.
    let mut edge = good.to_vec();
    edge[0..8].copy_from_slice(&(i64::MAX - 3).to_be_bytes());
    let batch = RawBatch::new(Bytes::from(edge)).unwrap().decode().unwrap();
    assert_eq!(batch.offset(2), i64::MAX - 1);
    // A base timestamp that a record's delta carries past i64::MAX.
    let mut bad = good.to_vec();
    bad[27..35].copy_from_slice(&(i64::MAX - 1).to_be_bytes());
    fix_crc(&mut bad);
    let err = RawBatch::new(Bytes::from(bad))
        .unwrap()
        .decode()
        .unwrap_err();
    assert!(
        matches!(&err, RecordError::Overflow { what, delta: 2, .. } if what == "timestamp of record 2"),
        "{err}"
    );
}

/// Kafka's `DefaultRecordBatch.incrementSequence`: past `i32::MAX` sequences go on from 0.
#[test]
fn sequences_wrap_as_kafkas_do() {
    use super::increment_sequence;
    assert_eq!(increment_sequence(0, 5), 5);
    assert_eq!(increment_sequence(i32::MAX - 5, 5), i32::MAX);
    assert_eq!(increment_sequence(i32::MAX, 1), 0);
    assert_eq!(increment_sequence(i32::MAX - 2, 5), 2);
    assert_eq!(
        increment_sequence(-1, 1),
        0,
        "no sequence yet, then the first"
    );
    // The same as Java's formula for every non-negative input it was checked on.
    for (s, n) in [
        (i32::MAX - 1, 3),
        (i32::MAX, i32::MAX),
        (1000, i32::MAX - 999),
    ] {
        let java = if s > i32::MAX - n {
            n - (i32::MAX - s) - 1
        } else {
            s + n
        };
        assert_eq!(increment_sequence(s, n), java);
    }
}
