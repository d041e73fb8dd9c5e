//! Avro through a Schema Registry, against Confluent's own serializers (confluent-kafka's
//! Python `AvroSerializer` / `AvroDeserializer`) and tansu, with a registry served by the
//! test (`support::registry`): what Confluent writes, `spate consume -s value=avro -r URL`
//! prints as the JSON the writer started from (schema id in the payload or a GUID header);
//! what `spate produce -s value=avro` writes, Confluent's deserializer reads back; a reader
//! schema with a new defaulted field reads older records, both ways.
#![cfg(feature = "cli")]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use serde_json::Value;
use spate::cluster::{Client, NewTopic};
use spate::consumer::{Consumer, ConsumerConfig, Offset};
use spate::formats::registry::avro::{AvroDeserializer, AvroSerializer};
use spate::formats::registry::{Part, RegistryConfig, SchemaRegistry};
use spate::producer::{Producer, ProducerConfig, Record};
use support::registry::TestRegistry;
use support::{python_lines, unique_topic, TestBroker};

const ORDER_V1: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},
  {"name":"customer","type":"string"},
  {"name":"amount","type":"double"},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","PAID","SHIPPED"]}},
  {"name":"counts","type":{"type":"map","values":"long"}}]}"#;

/// v1 and a field with a default: what an evolved reader expects.
const ORDER_V2: &str = r#"{"type":"record","name":"Order","namespace":"shop","fields":[
  {"name":"id","type":"long"},
  {"name":"customer","type":"string"},
  {"name":"amount","type":"double"},
  {"name":"tags","type":{"type":"array","items":"string"}},
  {"name":"note","type":["null","string"],"default":null},
  {"name":"state","type":{"type":"enum","name":"State","symbols":["NEW","PAID","SHIPPED"]}},
  {"name":"counts","type":{"type":"map","values":"long"}},
  {"name":"channel","type":"string","default":"web"}]}"#;

fn orders(from: u64, n: u64) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            let state = ["NEW", "PAID", "SHIPPED"][(i % 3) as usize];
            serde_json::json!({
                "id": i * 1_000_003,
                "customer": format!("cüstomer \"{i}\"\n"),
                "amount": i as f64 * 1.25,
                "tags": (0..i % 3).map(|t| format!("t{t}")).collect::<Vec<_>>(),
                "note": if i % 2 == 0 { Value::Null } else { Value::from(format!("note {i}")) },
                "state": state,
                "counts": {"a": i, "b": -(i as i64)},
            })
        })
        .collect()
}

fn temp_file(name: &str, text: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("spate-sr-{}-{name}", std::process::id()));
    std::fs::write(&path, text).unwrap();
    path
}

fn lines(values: &[Value]) -> String {
    values.iter().map(|v| format!("{v}\n")).collect()
}

async fn topic(broker: &TestBroker, prefix: &str) -> String {
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic(prefix);
    client
        .create_topics(&[NewTopic::new(&topic, 1, 1)])
        .await
        .unwrap();
    topic
}

fn spate(args: &[&str], stdin: Option<&str>) -> String {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let mut input = child.stdin.take().unwrap();
    if let Some(text) = stdin {
        input.write_all(text.as_bytes()).unwrap();
    }
    drop(input);
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "spate {args:?}: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap()
}

fn parsed(lines: &[String]) -> Vec<Value> {
    lines
        .iter()
        .map(|l| serde_json::from_str(l).unwrap_or_else(|e| panic!("`{l}`: {e}")))
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn confluent_avro_prints_as_the_json_the_writer_started_from() {
    let broker = TestBroker::start();
    let registry = TestRegistry::start(None);
    let topic = topic(&broker, "sr-confluent").await;
    let schema = temp_file("v1.avsc", ORDER_V1);
    let (first, second) = (orders(0, 40), orders(40, 10));
    for (values, placement) in [(&first, "prefix"), (&second, "header")] {
        let input = temp_file(&format!("{placement}.jsonl"), &lines(values));
        let out = python_lines(
            "sr_clients.py",
            &[
                "produce",
                "avro",
                &broker.bootstrap,
                &topic,
                &registry.url,
                schema.to_str().unwrap(),
                input.to_str().unwrap(),
                placement,
            ],
        );
        assert_eq!(out, [format!("produced {}", values.len())]);
    }
    assert_eq!(registry.versions(&format!("{topic}-value")), [1]);
    let before = registry.requests().len();

    let out = spate(
        &[
            "consume",
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-e",
            "-s",
            "value=avro",
            "-r",
            &registry.url,
            "-f",
            "%o %s\\n",
        ],
        None,
    );
    let got: Vec<String> = out.lines().map(str::to_owned).collect();
    assert_eq!(got.len(), 50, "{out}");
    let expected: Vec<Value> = first.iter().chain(&second).cloned().collect();
    for (i, (line, expected)) in got.iter().zip(&expected).enumerate() {
        let (offset, json) = line.split_once(' ').unwrap();
        assert_eq!(offset, i.to_string());
        let value: Value = serde_json::from_str(json).unwrap_or_else(|e| panic!("`{json}`: {e}"));
        assert_eq!(&value, expected, "offset {i}");
    }
    // Field order is the schema's.
    assert!(got[0].starts_with(r#"0 {"id":0,"customer":"#), "{}", got[0]);
    // One lookup by id for all 50: the id's answer carries the schema's GUID, which the
    // records with a GUID header name (the last ten do; their payload has no prefix).
    assert_eq!(registry.requests()[before..], ["GET /schemas/ids/1"]);
    let mut consumer = Consumer::new(ConsumerConfig {
        client: broker.config(),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    consumer.assign(&[(&topic, 0, Offset::Beginning)]).unwrap();
    let (mut with_header, mut payloads) = (Vec::new(), Vec::new());
    while with_header.len() < 50 {
        let b = consumer.next_batch().await.unwrap();
        for r in b.records() {
            let header = r.headers().find(|(k, _)| *k == b"__value_schema_id");
            with_header.push(header.map(|(_, v)| v.unwrap().to_vec()));
            payloads.push(r.value().unwrap().to_vec());
        }
    }
    let mut guid = vec![1u8];
    guid.extend_from_slice(&[0, 0, 0, 0, 0, 0, 0x40, 0, 0x80, 0, 0, 0, 0, 0, 0, 1]);
    assert!(with_header[..40].iter().all(Option::is_none));
    assert!(with_header[40..]
        .iter()
        .all(|h| h.as_deref() == Some(&guid[..])));

    // Not Avro: a typed error naming the record, not a crash or garbage.
    let plain = unique_topic("sr-plain");
    let client = Client::connect(broker.config()).await.unwrap();
    client
        .create_topics(&[NewTopic::new(&plain, 1, 1)])
        .await
        .unwrap();
    let producer = Producer::with_client(
        client,
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    producer
        .send(Record::new(&plain).value(b"{\"not\": \"avro\"}"))
        .await
        .unwrap()
        .await
        .unwrap();
    producer.close().await.unwrap();
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "consume",
            "-b",
            &broker.bootstrap,
            "-t",
            &plain,
            "-e",
            "-s",
            "avro",
            "-r",
            &registry.url,
        ])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains(&format!(
            "{plain}-0 offset 0: value: schema registry wire format"
        )),
        "{err}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spates_avro_is_read_by_confluents_deserializer() {
    let broker = TestBroker::start();
    // This registry wants basic authentication: spate takes it from the URL.
    let registry = TestRegistry::start(Some("ci:s3cret"));
    let authed = registry.url.replacen("http://", "http://ci:s3cret@", 1);
    let topic = topic(&broker, "sr-spate").await;
    let schema = temp_file("spate-v1.avsc", ORDER_V1);
    let values = orders(100, 30);
    spate(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-s",
            "value=avro",
            "-r",
            &authed,
            "--value-schema",
            schema.to_str().unwrap(),
        ],
        Some(&lines(&values[..20])),
    );
    let id = registry.versions(&format!("{topic}-value"));
    assert_eq!(id.len(), 1, "registered once");
    // By id, the schema fetched from the registry; the credentials as Confluent's key.
    spate(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-s",
            "value=avro",
            "-r",
            &registry.url,
            "-X",
            "schema.registry.basic.auth.user.info=ci:s3cret",
            "--value-schema-id",
            &id[0].to_string(),
        ],
        Some(&lines(&values[20..])),
    );
    // Without the credentials, the registry refuses, and spate says so.
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "produce",
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-s",
            "value=avro",
            "-r",
            &registry.url,
            "--value-schema-id",
            "1",
        ])
        .stdin(Stdio::null())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("HTTP 401 (error 40101)"), "{err}");
    // A line that does not fit the schema is refused before anything of it is sent.
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "produce",
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-s",
            "value=avro",
            "-r",
            &authed,
            "--value-schema-id",
            "1",
        ])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"{\"id\": \"not a number\"}\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("encode:"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    let got = python_lines(
        "sr_clients.py",
        &["consume", "avro", &broker.bootstrap, &topic, &authed, "30"],
    );
    assert_eq!(parsed(&got), values);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reader_schema_with_a_new_field_reads_older_records() {
    let broker = TestBroker::start();
    let registry = TestRegistry::start(None);
    let topic = topic(&broker, "sr-evolve").await;
    let v1 = temp_file("evolve-v1.avsc", ORDER_V1);
    let v2 = temp_file("evolve-v2.avsc", ORDER_V2);
    // Confluent writes three with v1; spate's serializer writes three more with v1.
    let values = orders(7, 6);
    let input = temp_file("evolve.jsonl", &lines(&values[..3]));
    python_lines(
        "sr_clients.py",
        &[
            "produce",
            "avro",
            &broker.bootstrap,
            &topic,
            &registry.url,
            v1.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
    );
    let sr = SchemaRegistry::with_config(RegistryConfig::new(&registry.url));
    let serializer = AvroSerializer::new(sr.clone(), ORDER_V1).unwrap();
    let producer = Producer::new(ProducerConfig {
        client: broker.config(),
        ..ProducerConfig::default()
    })
    .await
    .unwrap();
    for v in &values[3..] {
        let bytes = serializer
            .serialize_json(&topic, Part::Value, &v.to_string())
            .await
            .unwrap();
        producer
            .send(Record::new(&topic).value(&bytes))
            .await
            .unwrap()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();

    // spate reads all six into v2: each gains the default channel.
    let reader = AvroDeserializer::new(sr.clone())
        .reader_schema(ORDER_V2)
        .unwrap();
    let mut consumer = Consumer::new(ConsumerConfig {
        client: broker.config(),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    consumer.assign(&[(&topic, 0, Offset::Beginning)]).unwrap();
    let mut got = Vec::new();
    while got.len() < 6 {
        let b = consumer.next_batch().await.unwrap();
        for r in b.records() {
            let json = reader
                .to_json(r.value().unwrap(), r.headers(), Part::Value)
                .await
                .unwrap();
            got.push(serde_json::from_str::<Value>(&json).unwrap());
        }
    }
    let evolved: Vec<Value> = values
        .iter()
        .map(|v| {
            let mut v = v.clone();
            v["channel"] = Value::from("web");
            v
        })
        .collect();
    assert_eq!(got, evolved);
    // Read as written (no reader schema), there is no such field.
    let writer = AvroDeserializer::new(sr);
    let first = consumer_first_value(&broker, &topic).await;
    let json: Value =
        serde_json::from_str(&writer.to_json(&first, [], Part::Value).await.unwrap()).unwrap();
    assert_eq!(json, values[0]);

    // Confluent's deserializer with the v2 reader schema agrees.
    let got = python_lines(
        "sr_clients.py",
        &[
            "consume",
            "avro",
            &broker.bootstrap,
            &topic,
            &registry.url,
            "6",
            v2.to_str().unwrap(),
        ],
    );
    assert_eq!(parsed(&got), evolved);
}

async fn consumer_first_value(broker: &TestBroker, topic: &str) -> Vec<u8> {
    let mut consumer = Consumer::new(ConsumerConfig {
        client: broker.config(),
        ..ConsumerConfig::default()
    })
    .await
    .unwrap();
    consumer.assign(&[(topic, 0, Offset::Beginning)]).unwrap();
    let b = consumer.next_batch().await.unwrap();
    b.batch().value(0).unwrap().to_vec()
}

/// The Avro → JSON pipeline operator: records written by spate's serializer (two schema
/// versions under one subject) go through a pipeline on the embedded cluster and come out as
/// the JSON they started from; the operator fetched each schema once.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pipeline_turns_avro_into_json() {
    use spate::formats::registry::avro::to_json_operator;
    use spate::mock::MockCluster;
    use spate::pipeline::{Chain, Guarantee, Pipeline};

    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("avro", 2);
    cluster.create_topic("json", 2);
    let registry = TestRegistry::start(None);
    let sr = SchemaRegistry::new(&registry.url);
    let v1 = AvroSerializer::new(sr.clone(), ORDER_V1).unwrap();
    let v2 = AvroSerializer::new(sr.clone(), ORDER_V2).unwrap();
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    let mut expected = Vec::new();
    for (i, mut v) in orders(0, 400).into_iter().enumerate() {
        let serializer = if i % 2 == 0 { &v1 } else { &v2 };
        if i % 2 == 1 {
            v["channel"] = Value::from(format!("app {i}"));
        }
        let bytes = serializer
            .serialize_json("avro", Part::Value, &v.to_string())
            .await
            .unwrap();
        producer
            .send(Record::new("avro").value(&bytes).partition(0))
            .await
            .unwrap();
        expected.push(v);
    }
    producer.flush().await.unwrap();
    producer.close().await.unwrap();
    assert_eq!(registry.versions("avro-value").len(), 2);
    let before = registry.requests().len();

    let de = AvroDeserializer::new(SchemaRegistry::new(&registry.url));
    let consumer = ConsumerConfig::new(&cluster.bootstrap())
        .group_id("to-json")
        .auto_offset_reset(spate::consumer::OffsetReset::Earliest);
    let stats = Pipeline::new(consumer, ProducerConfig::new(&cluster.bootstrap()))
        .from_topics(&["avro"])
        .to_topic("json")
        .operators(move || Chain::new().then(to_json_operator(de.clone(), Part::Value)))
        .guarantee(Guarantee::AtLeastOnce)
        .stop_at_end(true)
        .run()
        .await
        .unwrap();
    assert_eq!(stats.records_in, 400);
    let out: Vec<Value> = (0..2)
        .flat_map(|p| cluster.records("json", p).unwrap())
        .map(|(_, _, v)| serde_json::from_slice(&v.unwrap()).unwrap())
        .collect();
    let mut got: Vec<String> = out.iter().map(Value::to_string).collect();
    let mut want: Vec<String> = expected.iter().map(Value::to_string).collect();
    got.sort();
    want.sort();
    assert_eq!(got, want);
    let lookups = registry.requests()[before..].to_vec();
    assert_eq!(lookups, ["GET /schemas/ids/1", "GET /schemas/ids/2"]);
}

/// shop.Order, the message `sr_clients.py` builds as a descriptor (what `protoc` would make of
/// this file).
const ORDER_PROTO: &str = r#"
syntax = "proto3";
package shop;
import "google/protobuf/timestamp.proto";
message Money { string currency = 1; int64 units = 2; }
message Order {
  int64 id = 1;
  string customer = 2;
  repeated string tags = 3;
  Money total = 4;
  enum State { NEW = 0; PAID = 1; SHIPPED = 2; }
  State state = 5;
  google.protobuf.Timestamp at = 6;
  message Line { string sku = 1; int32 qty = 2; }
  repeated Line lines = 7;
  map<string, int64> counts = 8;
}
"#;

fn proto_orders(from: u64, n: u64) -> Vec<Value> {
    (from..from + n)
        .map(|i| {
            let state = ["NEW", "PAID", "SHIPPED"][(i % 3) as usize];
            serde_json::json!({
                "id": (i * 9_007_199_254_740_993u64 % 1_000_000_000_000_000_000).to_string(),
                "customer": format!("cüstomer {i}"),
                "tags": (0..i % 3).map(|t| format!("t{t}")).collect::<Vec<_>>(),
                "total": {"currency": "EUR", "units": (i * 7).to_string()},
                "state": state,
                "at": format!("2026-12-01T10:{:02}:00Z", i % 60),
                "lines": [{"sku": format!("sku-{i}"), "qty": i % 5 + 1}],
                "counts": {"a": i.to_string()},
            })
        })
        .collect()
}

/// Protobuf, both ways: Confluent's ProtobufSerializer (shop.Order, the second message of its
/// file: message indexes [1]; schema id in the prefix, then in a GUID header with the indexes
/// after it) → `spate consume -s value=protobuf` prints what MessageToDict prints; `spate
/// produce -s value=protobuf` from a `.proto` file → Confluent's ProtobufDeserializer reads
/// the same messages.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn protobuf_both_ways_with_confluents_serializers() {
    let broker = TestBroker::start();
    let registry = TestRegistry::start(None);
    let topic = topic(&broker, "sr-proto").await;
    let mut canonical = Vec::new();
    for (values, placement) in [
        (proto_orders(0, 20), "prefix"),
        (proto_orders(20, 5), "header"),
    ] {
        let input = temp_file(&format!("proto-{placement}.jsonl"), &lines(&values));
        let out = python_lines(
            "sr_clients.py",
            &[
                "produce",
                "protobuf",
                &broker.bootstrap,
                &topic,
                &registry.url,
                "-",
                input.to_str().unwrap(),
                placement,
            ],
        );
        assert_eq!(out.last().unwrap(), &format!("produced {}", values.len()));
        canonical.extend(parsed(&out[..out.len() - 1]));
    }
    // What MessageToDict printed is what went in, defaults (state NEW) left out.
    assert_eq!(canonical[1], proto_orders(1, 1)[0]);
    assert!(canonical[0].get("state").is_none());

    let out = spate(
        &[
            "consume",
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-e",
            "-s",
            "value=protobuf",
            "-r",
            &registry.url,
        ],
        None,
    );
    let got = parsed(&out.lines().map(str::to_owned).collect::<Vec<_>>());
    assert_eq!(got, canonical);

    let back = self::topic(&broker, "sr-proto-spate").await;
    let schema = temp_file("order.proto", ORDER_PROTO);
    spate(
        &[
            "produce",
            "-b",
            &broker.bootstrap,
            "-t",
            &back,
            "-s",
            "value=protobuf",
            "-r",
            &registry.url,
            "--value-schema",
            schema.to_str().unwrap(),
            "--value-message",
            "shop.Order",
        ],
        Some(&lines(&canonical)),
    );
    let got = python_lines(
        "sr_clients.py",
        &[
            "consume",
            "protobuf",
            &broker.bootstrap,
            &back,
            &registry.url,
            "25",
        ],
    );
    assert_eq!(parsed(&got), canonical);
    assert_eq!(registry.versions(&format!("{back}-value")).len(), 1);
}

const ORDER_JSON_SCHEMA: &str = r#"{
  "$schema": "http://json-schema.org/draft-07/schema#",
  "title": "Order",
  "type": "object",
  "properties": {
    "id": {"type": "integer"},
    "customer": {"type": "string"},
    "tags": {"type": "array", "items": {"type": "string"}},
    "note": {"type": ["string", "null"]}
  },
  "required": ["id", "customer"]
}"#;

/// JSON Schema, both ways: Confluent's JSONSerializer → `spate consume -s value=json` (checked
/// against the writer's schema); `spate produce -s value=json` (each value checked before it is
/// sent) → Confluent's JSONDeserializer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn json_schema_both_ways_with_confluents_serializers() {
    let broker = TestBroker::start();
    let registry = TestRegistry::start(None);
    let topic = topic(&broker, "sr-json").await;
    let values: Vec<Value> = (0..15)
        .map(|i| {
            serde_json::json!({
                "id": i * 1_000_003,
                "customer": format!("c \"{i}\""),
                "tags": (0..i % 3).map(|t| format!("t{t}")).collect::<Vec<_>>(),
                "note": if i % 2 == 0 { Value::Null } else { Value::from("n") },
            })
        })
        .collect();
    let schema = temp_file("order.schema.json", ORDER_JSON_SCHEMA);
    let input = temp_file("json.jsonl", &lines(&values));
    python_lines(
        "sr_clients.py",
        &[
            "produce",
            "json",
            &broker.bootstrap,
            &topic,
            &registry.url,
            schema.to_str().unwrap(),
            input.to_str().unwrap(),
        ],
    );
    let out = spate(
        &[
            "consume",
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-e",
            "-s",
            "value=json",
            "-r",
            &registry.url,
        ],
        None,
    );
    assert_eq!(
        parsed(&out.lines().map(str::to_owned).collect::<Vec<_>>()),
        values
    );

    let back = self::topic(&broker, "sr-json-spate").await;
    let args = [
        "produce",
        "-b",
        &broker.bootstrap,
        "-t",
        &back,
        "-s",
        "value=json",
        "-r",
        &registry.url,
        "--value-schema",
        schema.to_str().unwrap(),
    ];
    spate(&args, Some(&lines(&values)));
    // A value the schema does not allow is refused, and says where.
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .and_then(|mut c| {
            c.stdin
                .take()
                .unwrap()
                .write_all(b"{\"id\": \"seven\", \"customer\": \"x\"}\n")?;
            c.wait_with_output()
        })
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("encode:") && err.contains("/id"), "{err}");
    let got = python_lines(
        "sr_clients.py",
        &[
            "consume",
            "json",
            &broker.bootstrap,
            &back,
            &registry.url,
            "15",
        ],
    );
    assert_eq!(parsed(&got), values);
}

/// A registry that wants a bearer token: spate's client sends the one it is given
/// (`bearer.auth.token`), and without it the registry's 401 is the error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_bearer_token_is_sent_when_configured() {
    let registry = TestRegistry::start_bearer("t0ken");
    let mut config = RegistryConfig::new(&registry.url);
    config
        .set("schema.registry.bearer.auth.token", "t0ken")
        .unwrap();
    let with = AvroSerializer::new(SchemaRegistry::with_config(config), ORDER_V1).unwrap();
    let id = with.schema_id("bearer", Part::Value).await.unwrap();
    assert_eq!(registry.versions("bearer-value"), [id]);
    let without = AvroSerializer::new(SchemaRegistry::new(&registry.url), ORDER_V1).unwrap();
    let err = without.schema_id("bearer", Part::Value).await.unwrap_err();
    assert!(
        matches!(
            err,
            spate::formats::FormatError::Registry {
                status: 401,
                code: Some(40101),
                ..
            }
        ),
        "{err}"
    );
}
