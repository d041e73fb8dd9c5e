//! Stream-table joins on the embedded cluster (`--features mock`): `spate pipe --join-table`
//! enriches clicks with the latest profile of their user, read from a table topic with updates,
//! a deletion, a value that is not JSON and a record without a key; inner and left joins,
//! read back by librdkafka. A loaded table follows its topic; a table bigger than its bound
//! fails the load with the store's error.

mod support;

use std::collections::BTreeMap;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::{json, Value};
use spate::consumer::ConsumerConfig;
use spate::mock::MockCluster;
use spate::pipeline::table::Table;
use spate::producer::{Producer, ProducerConfig, Record};

const USERS: usize = 12;

/// Writes (key, value) records to `topic`, in order: a key always to the same partition (as
/// a table's topic is written), records without one alternately.
async fn write(cluster: &MockCluster, topic: &str, records: &[(Option<&str>, Option<String>)]) {
    let producer = Producer::new(ProducerConfig::new(&cluster.bootstrap()))
        .await
        .expect("producer");
    for (i, (key, value)) in records.iter().enumerate() {
        let partition = match key {
            Some(k) => k.bytes().map(u32::from).sum::<u32>() % 2,
            None => (i % 2) as u32,
        };
        let mut record = Record::new(topic).partition(partition as i32);
        if let Some(k) = key {
            record = record.key(k.as_bytes());
        }
        if let Some(v) = value {
            record = record.value(v.as_bytes());
        }
        producer.send(record).await.expect("send");
    }
    producer.close().await.expect("close");
}

/// The table's history: profiles for u0..u9, then u1 updated, u2 deleted, u3 plain text,
/// and a record without a key. Returns the latest value per key.
async fn fill_table(cluster: &MockCluster) -> BTreeMap<String, String> {
    let mut records: Vec<(Option<&str>, Option<String>)> = Vec::new();
    let users: Vec<String> = (0..10).map(|u| format!("u{u}")).collect();
    for (u, user) in users.iter().enumerate() {
        records.push((Some(user), Some(format!(r#"{{"plan":"p{u}"}}"#))));
    }
    records.push((Some("u1"), Some(r#"{"plan":"upgraded"}"#.into())));
    records.push((Some("u2"), None));
    records.push((Some("u3"), Some("gold".into())));
    records.push((None, Some(r#"{"plan":"nobody"}"#.into())));
    write(cluster, "users", &records).await;
    let mut latest = BTreeMap::new();
    for (key, value) in records {
        let Some(key) = key else { continue };
        match value {
            Some(v) => latest.insert(key.to_owned(), v),
            None => latest.remove(key),
        };
    }
    latest
}

/// Clicks of u0..u11 (u10, u11 and the deleted u2 are not in the table) and one value that is
/// not JSON. Returns the values.
async fn fill_clicks(cluster: &MockCluster) -> Vec<String> {
    let mut values: Vec<String> = (0..240)
        .map(|i| format!(r#"{{"user":"u{}","n":{i}}}"#, i % USERS))
        .collect();
    values.push("not json".into());
    let records: Vec<(Option<&str>, Option<String>)> =
        values.iter().map(|v| (None, Some(v.clone()))).collect();
    write(cluster, "clicks", &records).await;
    values
}

/// What a join should write for `click` (`None`: dropped).
fn expected(click: &str, table: &BTreeMap<String, String>, left: bool) -> Option<Value> {
    let Ok(Value::Object(mut fields)) = serde_json::from_str::<Value>(click) else {
        return left.then(|| Value::String(click.to_owned()));
    };
    let user = fields["user"].as_str().expect("user").to_owned();
    let profile = match table.get(&user) {
        Some(v) => serde_json::from_str(v).unwrap_or_else(|_| Value::String(v.clone())),
        None if left => Value::Null,
        None => return None,
    };
    fields.insert("profile".into(), profile);
    Some(Value::Object(fields))
}

fn pipe(cluster: &MockCluster, to: &str, extra: &[&str]) -> std::process::Output {
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "pipe",
            "-b",
            &cluster.bootstrap(),
            "--from",
            "clicks",
            "--to",
            to,
        ])
        .args(["--join-table", "users", "--join-on", "json:user"])
        .args(["--join-as", "profile", "-e"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .expect("spawn spate pipe");
    assert!(
        out.status.success(),
        "spate pipe failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// The output read by librdkafka, as JSON values (a value that is not JSON as a string),
/// sorted by their text.
fn output(cluster: &MockCluster, topic: &str) -> Vec<Value> {
    let mut values: Vec<Value> =
        support::librdkafka_values(&cluster.bootstrap(), topic, 2, "read_uncommitted")
            .iter()
            .map(|l| serde_json::from_str(l).unwrap_or_else(|_| Value::String(l.clone())))
            .collect();
    values.sort_by_key(|v| v.to_string());
    values
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn inner_and_left_joins_enrich_clicks_with_the_latest_profile() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    for topic in ["users", "clicks", "inner", "left"] {
        cluster.create_topic(topic, 2);
    }
    let table = fill_table(&cluster).await;
    let clicks = fill_clicks(&cluster).await;
    for (to, left) in [("inner", false), ("left", true)] {
        let extra: &[&str] = if left { &["--left-join"] } else { &[] };
        pipe(&cluster, to, extra);
        let mut want: Vec<Value> = clicks
            .iter()
            .filter_map(|c| expected(c, &table, left))
            .collect();
        want.sort_by_key(|v| v.to_string());
        let got = output(&cluster, to);
        assert_eq!(got.len(), want.len(), "{to}: as many records");
        assert!(got == want, "{to}: every record joined as expected");
    }
    // Spot checks of the rules the expectation encodes.
    let inner = output(&cluster, "inner");
    let of = |user: &str| inner.iter().find(|v| v["user"] == json!(user)).cloned();
    assert_eq!(
        of("u1").expect("u1")["profile"],
        json!({"plan": "upgraded"})
    );
    assert_eq!(of("u3").expect("u3")["profile"], json!("gold"));
    assert!(
        of("u2").is_none() && of("u10").is_none(),
        "deleted and unknown keys are dropped"
    );
}

/// A loaded table follows its topic: a new profile shows in `get` without reloading.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_follows_its_topic() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("users", 2);
    let latest = fill_table(&cluster).await;
    let config = ConsumerConfig::new(&cluster.bootstrap());
    let table = Table::load(config, "users", 1 << 20).await.expect("load");
    assert_eq!(table.len(), latest.len());
    assert_eq!(
        table.get(b"u1").as_deref(),
        Some(&br#"{"plan":"upgraded"}"#[..])
    );
    assert!(table.get(b"u2").is_none());
    write(
        &cluster,
        "users",
        &[
            (Some("u42"), Some(r#"{"plan":"new"}"#.into())),
            (Some("u0"), None),
        ],
    )
    .await;
    let deadline = Instant::now() + Duration::from_secs(20);
    while table.get(b"u42").is_none() || table.get(b"u0").is_some() {
        assert!(Instant::now() < deadline, "the table never saw the update");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(table.failure().is_none());
}

/// A table bigger than its bound fails the load with the store's error.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_table_over_its_memory_bound_fails_the_load() {
    let cluster = MockCluster::start(1).await.expect("cluster");
    cluster.create_topic("users", 2);
    fill_table(&cluster).await;
    let config = ConsumerConfig::new(&cluster.bootstrap());
    let err = Table::load(config, "users", 64)
        .await
        .expect_err("64 bytes cannot hold it");
    assert!(err.to_string().contains("full"), "{err}");
    let missing = Table::load(
        ConsumerConfig::new(&cluster.bootstrap()),
        "nowhere",
        1 << 20,
    )
    .await
    .expect_err("no such topic");
    assert!(missing.to_string().contains("nowhere"), "{missing}");
}
