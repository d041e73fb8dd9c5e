//! Schema Registry payloads from a hostile topic: the wire format (prefix, GUID header,
//! Protobuf message indexes), Avro datums under a schema with every kind of type, and Protobuf
//! messages of a schema with nesting, maps, enums and a well-known type. Each is decoded or a
//! typed error; what decodes renders as JSON that parses.
#![no_main]
use std::sync::LazyLock;

use libfuzzer_sys::fuzz_target;
use spate::formats::registry::{apache_avro, avro, prost_reflect, protobuf, wire, Part};

static AVRO: LazyLock<apache_avro::Schema> = LazyLock::new(|| {
    avro::parse_schema(
        r#"{"type":"record","name":"All","fields":[
        {"name":"b","type":"boolean"},{"name":"i","type":"int"},{"name":"l","type":"long"},
        {"name":"f","type":"float"},{"name":"d","type":"double"},{"name":"s","type":"string"},
        {"name":"y","type":"bytes"},{"name":"x","type":{"type":"fixed","name":"F","size":4}},
        {"name":"e","type":{"type":"enum","name":"E","symbols":["A","B"]}},
        {"name":"a","type":{"type":"array","items":"long"}},
        {"name":"m","type":{"type":"map","values":"string"}},
        {"name":"u","type":["null","string","All"]},
        {"name":"t","type":{"type":"long","logicalType":"timestamp-millis"}}]}"#,
    )
    .unwrap()
});

static PROTO: LazyLock<prost_reflect::DescriptorPool> = LazyLock::new(|| {
    protobuf::compile(
        r#"syntax = "proto3";
        import "google/protobuf/timestamp.proto";
        message A { int64 id = 1; }
        message B {
          string s = 1; repeated int32 r = 2; map<string, A> m = 3;
          enum E { X = 0; Y = 1; } E e = 4; google.protobuf.Timestamp t = 5;
          message C { bytes b = 1; B back = 2; } C c = 6; double d = 7; sint64 z = 8;
        }"#,
        Default::default(),
    )
    .unwrap()
});

fuzz_target!(|data: &[u8]| {
    let Some((&selector, rest)) = data.split_first() else {
        return;
    };
    match selector % 3 {
        0 => {
            let header = rest.get(..rest.len().min(24)).unwrap_or_default();
            let headers = [(wire::VALUE_SCHEMA_ID_HEADER.as_bytes(), Some(header))];
            if let Ok((located, _)) = wire::locate(rest, headers, Part::Value) {
                let mut tail = located.rest;
                let _ = wire::read_message_indexes(&mut tail);
            }
            let mut indexes = rest;
            if let Ok(read) = wire::read_message_indexes(&mut indexes) {
                assert!(read.len() <= wire::MAX_MESSAGE_INDEXES);
            }
        }
        1 => {
            if let Ok(value) = avro::decode_datum(&AVRO, None, rest) {
                let mut json = String::new();
                avro::write_json(&value, &mut json);
                assert!(!json.is_empty());
            }
        }
        _ => {
            let mut framed = vec![0, 0, 0, 0, 1];
            framed.extend_from_slice(rest);
            if let Ok(message) = protobuf::decode(&PROTO, &framed, [], Part::Value) {
                let _ = protobuf::json(&message);
            }
        }
    }
});
