//! Golden tests: record batches written by real clients, as a real broker (tansu 0.6.0) stored
//! and served them.
//!
//! Captured once by `tests/fixtures/capture.py` (see its header for the exact commands): kcat
//! 1.7.1 on librdkafka 2.16.0 (writes raw snappy) and kafka-python 3.0.12 (writes xerial snappy,
//! as Java does) each produced to a fresh topic per codec; the script fetched the partition's
//! records section with a hand-written Fetch v4 request and saved it byte for byte, with what was
//! *sent* as the expectation.

use std::path::Path;

use bytes::Bytes;
use spate::record::{batches, Compression};

const CODECS: [&str; 5] = ["none", "gzip", "snappy", "lz4", "zstd"];

fn check(client: &str, codec: &str) {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures/golden");
    let name = format!("{client}-{codec}");
    let data = Bytes::from(std::fs::read(dir.join(format!("{name}.bin"))).unwrap());
    let expected: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join(format!("{name}.json"))).unwrap()).unwrap();
    let expected = expected["records"].as_array().unwrap();

    let mut it = batches(data);
    let mut got = Vec::new();
    let mut next_offset = 0;
    for raw in it.by_ref() {
        let raw = raw.unwrap_or_else(|e| panic!("{name}: {e}"));
        assert_eq!(
            raw.compression().unwrap(),
            codec.parse::<Compression>().unwrap(),
            "{name}"
        );
        if codec == "snappy" {
            let xerial = raw.records_data().starts_with(b"\x82SNAPPY\x00");
            assert_eq!(xerial, client == "kafka-python", "{name}: snappy framing");
        }
        let batch = raw.decode().unwrap_or_else(|e| panic!("{name}: {e}"));
        for rec in batch.records() {
            assert_eq!(rec.offset(), next_offset, "{name}: offsets are consecutive");
            next_offset += 1;
            assert!(
                rec.timestamp() > 1_600_000_000_000,
                "{name}: a real timestamp"
            );
            got.push((
                rec.key().map(|k| String::from_utf8(k.to_vec()).unwrap()),
                String::from_utf8(rec.value().unwrap().to_vec()).unwrap(),
                rec.headers()
                    .map(|(k, v)| {
                        (
                            String::from_utf8(k.to_vec()).unwrap(),
                            String::from_utf8(v.unwrap().to_vec()).unwrap(),
                        )
                    })
                    .collect::<Vec<_>>(),
            ));
        }
    }
    assert!(it.partial().is_none(), "{name}: no partial batch");
    assert_eq!(got.len(), expected.len(), "{name}: record count");
    for (i, (g, e)) in got.iter().zip(expected).enumerate() {
        assert_eq!(g.0.as_deref(), e["key"].as_str(), "{name} record {i}: key");
        assert_eq!(
            g.1,
            e["value"].as_str().unwrap(),
            "{name} record {i}: value"
        );
        let eh: Vec<(String, String)> = e["headers"]
            .as_array()
            .unwrap()
            .iter()
            .map(|h| {
                (
                    h[0].as_str().unwrap().to_owned(),
                    h[1].as_str().unwrap().to_owned(),
                )
            })
            .collect();
        assert_eq!(g.2, eh, "{name} record {i}: headers");
    }
}

#[test]
fn librdkafka_batches_decode() {
    for codec in CODECS {
        check("kcat", codec);
    }
}

#[test]
fn kafka_python_batches_decode() {
    for codec in CODECS {
        check("kafka-python", codec);
    }
}
