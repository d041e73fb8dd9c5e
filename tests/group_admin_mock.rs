//! Group administration on the embedded cluster (`--features mock`): ListGroups,
//! DescribeGroups, DeleteGroups and administrative offset commits behave as Apache Kafka's
//! group coordinator (see `src/mock/group_admin.rs`), checked first with librdkafka's
//! AdminClient (confluent-kafka) as the independent client, then with spate's
//! `consumer::group::admin`.

mod support;

use std::time::Duration;

use spate::cluster::Client;
use spate::consumer::group::admin;
use spate::consumer::{Consumer, ConsumerConfig, Event, OffsetReset};
use spate::error::codes::{
    GROUP_ID_NOT_FOUND, GROUP_SUBSCRIBED_TO_TOPIC, NON_EMPTY_GROUP, UNKNOWN_MEMBER_ID,
};
use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use spate::ClientConfig;

fn librdkafka(bootstrap: String, commands: Vec<&'static str>) -> Vec<String> {
    support::python_lines(
        "group_admin.py",
        &[&[&bootstrap[..]][..], &commands].concat(),
    )
}

/// A cluster with `events` (3 partitions, 10 records each) and the group `busy`: one spate
/// member that owns every partition and has committed 3, 4 and 5. The member is returned
/// (it keeps heartbeating while the test runs).
async fn busy_cluster() -> (MockCluster, Consumer) {
    let cluster = MockCluster::start(2).await.expect("cluster");
    cluster.create_topic("events", 3);
    let bootstrap = cluster.bootstrap();
    let producer = Producer::new(ProducerConfig::new(&bootstrap))
        .await
        .unwrap();
    for p in 0..3 {
        let rows = (0..10).map(|_| Record::new("events").value(b"e").partition(p));
        producer
            .send_batch("events", rows)
            .await
            .unwrap()
            .wait()
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let mut config = ConsumerConfig::new(&bootstrap)
        .group_id("busy")
        .auto_offset_reset(OffsetReset::Earliest);
    config.client = config.client.client_id("busy-member");
    config.enable_auto_commit = false;
    let mut member = Consumer::new(config).await.unwrap();
    member.subscribe(&["events"]).unwrap();
    loop {
        let event = tokio::time::timeout(Duration::from_secs(30), member.next())
            .await
            .expect("the member is assigned")
            .unwrap();
        if matches!(event, Event::Assigned(_)) {
            break;
        }
    }
    member
        .commit_offsets(&[
            ("events".into(), 0, 3),
            ("events".into(), 1, 4),
            ("events".into(), 2, 5),
        ])
        .await
        .unwrap();
    support::wait_for("the group to be stable", || {
        cluster.group("busy").is_some_and(|g| g.stable)
    })
    .await;
    (cluster, member)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn groups_are_listed_described_reset_and_deleted_as_kafka_does() {
    let (cluster, member) = busy_cluster().await;
    let bootstrap = cluster.bootstrap();
    // librdkafka first: the judge of what the cluster answers.
    let commands = vec![
        "alter:idle:events:0:7",
        "list",
        "describe:busy",
        "offsets:busy",
        "describe:idle",
        "alter:busy:events:0:1",
        "delete:busy",
        "delete:nope",
        "delete:idle",
        "list",
    ];
    let b = bootstrap.clone();
    let got = tokio::task::spawn_blocking(move || librdkafka(b, commands))
        .await
        .unwrap();
    assert_eq!(
        got,
        [
            "idle alter ok",
            "group busy STABLE",
            "group idle EMPTY",
            "busy state STABLE assignor range members 1",
            "busy member busy-member /127.0.0.1 events-0,events-1,events-2",
            "busy offset events-0 3",
            "busy offset events-1 4",
            "busy offset events-2 5",
            "idle state EMPTY assignor - members 0",
            "busy alter UNKNOWN_MEMBER_ID",
            "busy delete NON_EMPTY_GROUP",
            "nope delete GROUP_ID_NOT_FOUND",
            "idle delete ok",
            "group busy STABLE",
        ]
    );

    // Then spate, the same steps.
    let client = Client::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    admin::alter_offsets(&client, "idle", &[(("events".into(), 0), 7)])
        .await
        .unwrap();
    let listed: Vec<(String, Option<String>)> = admin::list_groups(&client)
        .await
        .unwrap()
        .into_iter()
        .map(|g| (g.group_id, g.state))
        .collect();
    assert_eq!(
        listed,
        [
            ("busy".to_owned(), Some("Stable".to_owned())),
            ("idle".to_owned(), Some("Empty".to_owned())),
        ]
    );
    let busy = admin::describe_group(&client, "busy").await.unwrap();
    assert_eq!(
        (busy.state.as_str(), busy.protocol.as_str()),
        ("Stable", "range")
    );
    assert_eq!(busy.members.len(), 1);
    assert_eq!(busy.members[0].client_id, "busy-member");
    assert_eq!(busy.members[0].host, "/127.0.0.1");
    let mut owned = busy.members[0].assignment.clone();
    owned.sort();
    assert_eq!(
        owned,
        [
            ("events".to_owned(), 0),
            ("events".to_owned(), 1),
            ("events".to_owned(), 2)
        ]
    );
    let lag = admin::describe_lag(&client, "busy").await.unwrap();
    type Row = (i32, Option<i64>, i64, Option<i64>, bool);
    let rows: Vec<Row> = lag
        .iter()
        .map(|l| {
            (
                l.partition,
                l.committed,
                l.log_end,
                l.lag,
                l.member.is_some(),
            )
        })
        .collect();
    assert_eq!(
        rows,
        [
            (0, Some(3), 10, Some(7), true),
            (1, Some(4), 10, Some(6), true),
            (2, Some(5), 10, Some(5), true),
        ]
    );
    let idle = admin::describe_group(&client, "idle").await.unwrap();
    assert_eq!((idle.state.as_str(), idle.members.len()), ("Empty", 0));
    let refused = admin::alter_offsets(&client, "busy", &[(("events".into(), 0), 1)])
        .await
        .unwrap_err();
    assert_eq!(refused.code().map(|c| c.0), Some(UNKNOWN_MEMBER_ID));
    let deleted = admin::delete_groups(&client, &["busy", "nope", "idle"]).await;
    let codes: Vec<Option<i16>> = deleted
        .iter()
        .map(|(_, r)| r.as_ref().err().map(|e| e.code().map_or(-1, |c| c.0)))
        .collect();
    assert_eq!(
        codes,
        [Some(NON_EMPTY_GROUP), Some(GROUP_ID_NOT_FOUND), None]
    );
    let left: Vec<String> = admin::list_groups(&client)
        .await
        .unwrap()
        .into_iter()
        .map(|g| g.group_id)
        .collect();
    assert_eq!(left, ["busy"]);
    assert!(
        admin::committed_offsets(&client, "idle")
            .await
            .unwrap()
            .is_empty(),
        "a deleted group's offsets go with it"
    );
    member.close().await.unwrap();
}

/// OffsetDelete (KIP-496), as Kafka's `OffsetMetadataManager.deleteOffsets`: a live consumer
/// group keeps the offsets of topics it consumes (GROUP_SUBSCRIBED_TO_TOPIC) and loses the
/// others; an empty group loses any; an unknown group is GROUP_ID_NOT_FOUND. kafka-python first
/// (confluent-kafka's Python AdminClient has no OffsetDelete), then spate.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offsets_are_deleted_as_kafka_does() {
    let (cluster, member) = busy_cluster().await;
    cluster.create_topic("old", 2);
    // The member also commits for a topic it does not consume (any member may).
    member
        .commit_offsets(&[("old".into(), 0, 7), ("old".into(), 1, 8)])
        .await
        .unwrap();
    let bootstrap = cluster.bootstrap();
    let client = Client::connect(ClientConfig::new(&bootstrap))
        .await
        .unwrap();
    admin::alter_offsets(&client, "idle", &[(("events".into(), 0), 2)])
        .await
        .unwrap();

    let b = bootstrap.clone();
    let seen = tokio::task::spawn_blocking(move || {
        support::python_lines(
            "kafka_python_offset_delete.py",
            &[
                &b,
                "busy:events:0",
                "busy:old:0",
                "nobody:events:0",
                "idle:events:0",
                "offsets:busy",
                "offsets:idle",
            ],
        )
    })
    .await
    .unwrap();
    assert_eq!(
        seen,
        [
            "busy deloffsets events-0 GROUP_SUBSCRIBED_TO_TOPIC",
            "busy deloffsets old-0 ok",
            "nobody deloffsets GROUP_ID_NOT_FOUND",
            "idle deloffsets events-0 ok",
            "busy offset events-0 3",
            "busy offset events-1 4",
            "busy offset events-2 5",
            "busy offset old-1 8",
        ],
        "{seen:#?}"
    );

    // spate's client, on what is left.
    let outcome = admin::delete_offsets(
        &client,
        "busy",
        &[("old".into(), 1), ("events".into(), 1), ("old".into(), 0)],
    )
    .await
    .unwrap();
    let codes: Vec<(String, i32, Option<i16>)> = outcome
        .iter()
        .map(|((t, p), r)| {
            (
                t.clone(),
                *p,
                r.as_ref().err().and_then(|e| e.code()).map(|c| c.0),
            )
        })
        .collect();
    assert_eq!(
        codes,
        [
            ("old".to_owned(), 1, None),
            ("events".to_owned(), 1, Some(GROUP_SUBSCRIBED_TO_TOPIC)),
            // No offset left there: nothing to delete, no error.
            ("old".to_owned(), 0, None),
        ]
    );
    let left = admin::committed_offsets(&client, "busy").await.unwrap();
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        [
            ("events".to_owned(), 0),
            ("events".to_owned(), 1),
            ("events".to_owned(), 2)
        ]
    );
    let unknown = admin::delete_offsets(&client, "nobody", &[("old".into(), 0)])
        .await
        .unwrap_err();
    assert_eq!(
        unknown.code().map(|c| c.0),
        Some(GROUP_ID_NOT_FOUND),
        "{unknown}"
    );

    // Once the member has left, the group's offsets for what it consumed can go too.
    member.close().await.unwrap();
    support::wait_for("the group to be empty", || {
        cluster.group("busy").is_some_and(|g| g.members.is_empty())
    })
    .await;
    #[cfg(feature = "cli")]
    {
        let out = std::process::Command::new(env!("CARGO_BIN_EXE_spate"))
            .args([
                "group",
                "delete-offsets",
                "-b",
                &bootstrap,
                "-G",
                "busy",
                "-t",
                "events:0,2",
            ])
            .output()
            .unwrap();
        let stdout = String::from_utf8_lossy(&out.stdout);
        assert!(
            out.status.success(),
            "{}",
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            stdout.starts_with("Request succeed for deleting offsets from group busy.")
                && stdout.lines().filter(|l| l.ends_with("Successful")).count() == 2,
            "{stdout}"
        );
    }
    #[cfg(not(feature = "cli"))]
    admin::delete_offsets(
        &client,
        "busy",
        &[("events".into(), 0), ("events".into(), 2)],
    )
    .await
    .unwrap();
    let left = admin::committed_offsets(&client, "busy").await.unwrap();
    assert_eq!(
        left.keys().cloned().collect::<Vec<_>>(),
        [("events".to_owned(), 1)]
    );
}
