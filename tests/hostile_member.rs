//! A group member that lies (embedded cluster, `--features mock`): it joins with a
//! subscription whose counts announce billions of entries. The leader reads every member's
//! subscription, so this is how one client could kill another. The leader must not crash: it
//! reports the member, assigns it nothing, and assigns every partition to the others, who
//! consume every record.

use std::collections::BTreeSet;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use kafka_protocol::messages::join_group_request::JoinGroupRequestProtocol;
use kafka_protocol::messages::*;
use kafka_protocol::protocol::StrBytes;
use spate::cluster::{Client, CoordinatorType};
use spate::consumer::{Consumer, ConsumerConfig, Event, OffsetReset};
use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;

const GROUP: &str = "hostile";
const TOPIC: &str = "events";
const MEMBER_ID_REQUIRED: i16 = 79;
/// A v1 subscription announcing 2^31 - 1 topics in a few bytes.
const EVIL: &[u8] = &[0, 1, 0x7f, 0xff, 0xff, 0xff, 0, 1, b'a'];

fn config(cluster: &MockCluster) -> ConsumerConfig {
    let mut c = ConsumerConfig {
        client: ClientConfig::new(&cluster.bootstrap()).api_timeout(Duration::from_secs(20)),
        ..ConsumerConfig::default()
    }
    .group_id(GROUP)
    .session_timeout(Duration::from_millis(1500), Duration::from_millis(200))
    .fetch_max_wait(Duration::from_millis(100))
    .auto_offset_reset(OffsetReset::Earliest);
    c.rebalance_timeout = Duration::from_secs(5);
    c
}

#[derive(Default)]
struct Seen {
    records: BTreeSet<(i32, i64)>,
    assigned: Vec<Vec<(String, i32)>>,
    unreadable: Vec<(String, String)>,
}

fn spawn_member(
    config: ConsumerConfig,
    seen: Arc<Mutex<Seen>>,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let mut consumer = Consumer::new(config).await.unwrap();
        consumer.subscribe(&[TOPIC]).unwrap();
        loop {
            tokio::select! {
                _ = stop.changed() => break,
                event = consumer.next() => match event.expect("the member never fails") {
                    Event::Batch(b) => {
                        let mut seen = seen.lock().unwrap();
                        for r in b.records() {
                            seen.records.insert((b.partition(), r.offset()));
                        }
                    }
                    Event::Assigned(tps) => seen.lock().unwrap().assigned.push(tps),
                    Event::Revoked(tps) | Event::Lost(tps) => {
                        let mut seen = seen.lock().unwrap();
                        let now: Vec<_> = seen.assigned.last().cloned().unwrap_or_default()
                            .into_iter().filter(|tp| !tps.contains(tp)).collect();
                        seen.assigned.push(now);
                    }
                    Event::UnreadableMember { member_id, reason } => {
                        seen.lock().unwrap().unreadable.push((member_id, reason));
                    }
                    _ => {}
                },
            }
        }
        consumer.close().await.unwrap();
    })
}

fn owned(seen: &Mutex<Seen>) -> Vec<(String, i32)> {
    seen.lock()
        .unwrap()
        .assigned
        .last()
        .cloned()
        .unwrap_or_default()
}

async fn wait_until(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while !done() {
        assert!(tokio::time::Instant::now() < deadline, "timed out: {what}");
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// The hostile member: joins with `EVIL` as its subscription for every protocol the group
/// uses, syncs, and heartbeats until stopped. Returns its member id and the assignment bytes
/// the leader gave it.
async fn hostile_member(
    cluster: &MockCluster,
    mut stop: tokio::sync::watch::Receiver<bool>,
) -> (String, Bytes, tokio::task::JoinHandle<()>) {
    let client = Client::connect(ClientConfig::new(&cluster.bootstrap()))
        .await
        .unwrap();
    let conn = client
        .coordinator(CoordinatorType::Group, GROUP)
        .await
        .unwrap();
    let join = |member_id: &str| {
        JoinGroupRequest::default()
            .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
            .with_session_timeout_ms(1500)
            .with_rebalance_timeout_ms(5000)
            .with_member_id(StrBytes::from_string(member_id.to_owned()))
            .with_protocol_type(StrBytes::from_static_str("consumer"))
            .with_protocols(
                ["range", "cooperative-sticky"]
                    .iter()
                    .map(|name| {
                        JoinGroupRequestProtocol::default()
                            .with_name(StrBytes::from_static_str(name))
                            .with_metadata(Bytes::from_static(EVIL))
                    })
                    .collect(),
            )
    };
    let first = conn
        .request_within(&join(""), 9, Duration::from_secs(10))
        .await
        .unwrap();
    assert_eq!(first.error_code, MEMBER_ID_REQUIRED);
    let member_id = first.member_id.to_string();
    let joined = conn
        .request_within(&join(&member_id), 9, Duration::from_secs(15))
        .await
        .unwrap();
    assert_eq!(joined.error_code, 0);
    assert_ne!(
        joined.leader.as_str(),
        member_id,
        "the hostile member must not lead"
    );
    let generation = joined.generation_id;
    let synced = conn
        .request_within(
            &SyncGroupRequest::default()
                .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
                .with_generation_id(generation)
                .with_member_id(StrBytes::from_string(member_id.clone()))
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(joined.protocol_name.clone()),
            5,
            Duration::from_secs(15),
        )
        .await
        .unwrap();
    assert_eq!(synced.error_code, 0);
    let id = member_id.clone();
    let heartbeats = tokio::spawn(async move {
        loop {
            tokio::select! {
                _ = stop.changed() => return,
                () = tokio::time::sleep(Duration::from_millis(200)) => {}
            }
            let _ = conn
                .request(
                    &HeartbeatRequest::default()
                        .with_group_id(GroupId(StrBytes::from_static_str(GROUP)))
                        .with_generation_id(generation)
                        .with_member_id(StrBytes::from_string(id.clone())),
                )
                .await;
        }
    });
    (member_id, synced.assignment, heartbeats)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_member_with_a_lying_subscription_is_reported_and_assigned_nothing() {
    const RECORDS: i64 = 300;
    let cluster = MockCluster::start(3).await.unwrap();
    cluster.create_topic(TOPIC, 6);
    let (stop, stopped) = tokio::sync::watch::channel(false);

    // The leader (first to join), then a second member.
    let leader = Arc::new(Mutex::new(Seen::default()));
    let other = Arc::new(Mutex::new(Seen::default()));
    let leader_task = spawn_member(config(&cluster), leader.clone(), stopped.clone());
    wait_until("the leader owns all six", || owned(&leader).len() == 6).await;
    let other_task = spawn_member(config(&cluster), other.clone(), stopped.clone());
    wait_until("two members share six", || {
        owned(&leader).len() + owned(&other).len() == 6 && !owned(&other).is_empty()
    })
    .await;

    // Records arrive while the hostile member joins.
    let bootstrap = cluster.bootstrap();
    let writer = tokio::spawn(async move {
        let producer = Producer::new(ProducerConfig::new(&bootstrap))
            .await
            .unwrap();
        for i in 0..RECORDS {
            let value = format!("{i}");
            producer
                .send(
                    Record::new(TOPIC)
                        .value(value.as_bytes())
                        .partition((i % 6) as i32),
                )
                .await
                .unwrap();
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        producer.close().await.unwrap();
    });
    let (evil_id, evil_assignment, heartbeats) = hostile_member(&cluster, stopped.clone()).await;

    // The leader reported it, by id, with what is wrong.
    wait_until("the leader reports the member", || {
        !leader.lock().unwrap().unreadable.is_empty()
    })
    .await;
    let (reported, reason) = leader.lock().unwrap().unreadable[0].clone();
    assert_eq!(reported, evil_id);
    assert!(
        reason.contains("topics") && reason.contains("2147483647"),
        "{reason}"
    );
    // It got nothing: an empty assignment.
    let nothing = evil_assignment.is_empty()
        || evil_assignment[2..] == [0, 0, 0, 0, 0xff, 0xff, 0xff, 0xff][..]
        || evil_assignment[2..] == [0, 0, 0, 0, 0, 0, 0, 0][..];
    assert!(
        nothing,
        "the hostile member was assigned {evil_assignment:?}"
    );
    // The two honest members own the six partitions between them and read every record.
    writer.await.unwrap();
    wait_until("every record is read", || {
        leader.lock().unwrap().records.len() + other.lock().unwrap().records.len()
            >= RECORDS as usize
    })
    .await;
    let mut all: Vec<_> = owned(&leader).into_iter().chain(owned(&other)).collect();
    all.sort();
    all.dedup();
    assert_eq!(all.len(), 6, "{all:?}");
    let group = cluster.group(GROUP).unwrap();
    assert_eq!(group.members.len(), 3, "{group:?}");

    stop.send(true).unwrap();
    leader_task.await.unwrap();
    other_task.await.unwrap();
    heartbeats.await.unwrap();
}
