//! The consumer on the embedded cluster (`--features mock`): seeks, pauses, read_committed,
//! the buffer bound, offset resets, corrupt batches, a moved leader, topic ids.

mod support;

use std::time::Duration;

use spate::consumer::{Consumer, ConsumerConfig, Event, IsolationLevel, Offset, OffsetReset};
use spate::mock::{Fault, MockCluster};
use spate::producer::{Producer, ProducerConfig, Record};
use spate::record::Compression;
use spate::wire::ApiKey;
use spate::ClientConfig;

fn client_config(cluster: &MockCluster) -> ClientConfig {
    let mut c = ClientConfig::new(&cluster.bootstrap())
        .request_timeout(Duration::from_secs(5))
        .api_timeout(Duration::from_secs(10));
    c.retry_backoff = Duration::from_millis(10);
    c
}

fn consumer_config(cluster: &MockCluster) -> ConsumerConfig {
    ConsumerConfig {
        client: client_config(cluster),
        ..ConsumerConfig::default()
    }
    .fetch_max_wait(Duration::from_millis(50))
}

/// Writes `n` records "v<i>" (key "k<i>") to `partition`, in batches of about `batch` bytes.
async fn fill(cluster: &MockCluster, topic: &str, partition: i32, n: usize, codec: Compression) {
    let producer = Producer::new(
        ProducerConfig {
            client: client_config(cluster),
            ..ProducerConfig::default()
        }
        .compression(codec)
        .batch_size(4096),
    )
    .await
    .unwrap();
    for i in 0..n {
        producer
            .send(
                Record::new(topic)
                    .key(format!("k{i}").as_bytes())
                    .value(format!("v{i}").as_bytes())
                    .partition(partition),
            )
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
}

async fn next_batch_of(consumer: &mut Consumer) -> spate::consumer::PartitionBatch {
    tokio::time::timeout(Duration::from_secs(10), consumer.next_batch())
        .await
        .expect("a batch within 10 s")
        .unwrap()
}

fn values(b: &spate::consumer::PartitionBatch) -> Vec<String> {
    b.records()
        .map(|r| String::from_utf8(r.value().unwrap().to_vec()).unwrap())
        .collect()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seeks_to_offsets_timestamps_and_ends() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("seek", 1);
    let before = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as i64;
    fill(&cluster, "seek", 0, 1000, Compression::Lz4).await;
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    consumer.assign(&[("seek", 0, Offset::Beginning)]).unwrap();
    let first = next_batch_of(&mut consumer).await;
    assert_eq!(first.first_offset(), 0);
    assert_eq!(values(&first)[0], "v0");
    assert_eq!(consumer.position("seek", 0), Some(first.next_offset()));
    // Into the middle of a compressed batch: records before 537 are not handed out.
    consumer.seek("seek", 0, Offset::At(537)).unwrap();
    let b = next_batch_of(&mut consumer).await;
    assert_eq!(b.first_offset(), 537);
    assert_eq!(values(&b)[0], "v537");
    // The end: nothing more, and the end is reported at 1000.
    consumer.seek("seek", 0, Offset::End).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap()
    {
        Event::EndOfPartition { offset, .. } => assert_eq!(offset, 1000),
        other => panic!("expected the end, got {other:?}"),
    }
    // Five before the end.
    consumer.seek("seek", 0, Offset::FromEnd(5)).unwrap();
    let b = next_batch_of(&mut consumer).await;
    assert_eq!((b.first_offset(), values(&b)[0].as_str()), (995, "v995"));
    // A timestamp before every record: the beginning.
    consumer
        .seek("seek", 0, Offset::Timestamp(before - 1000))
        .unwrap();
    assert_eq!(next_batch_of(&mut consumer).await.first_offset(), 0);
    // Not assigned: a typed error naming it.
    let err = consumer.seek("seek", 3, Offset::At(0)).unwrap_err();
    assert!(err.to_string().contains("seek-3"), "{err}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn paused_partitions_are_not_fetched_until_resumed() {
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("pause", 2);
    fill(&cluster, "pause", 0, 2000, Compression::None).await;
    fill(&cluster, "pause", 1, 2000, Compression::None).await;
    // Small fetches: a partition takes many of them.
    let mut consumer = Consumer::new(consumer_config(&cluster).max_partition_fetch_bytes(4096))
        .await
        .unwrap();
    consumer
        .assign(&[
            ("pause", 0, Offset::Beginning),
            ("pause", 1, Offset::Beginning),
        ])
        .unwrap();
    consumer.pause("pause", 0).unwrap();
    assert!(consumer.is_paused("pause", 0));
    // Whatever was fetched for partition 0 before the pause took effect (the fetcher may run
    // between the assign and the pause) is dropped by a seek, which keeps the pause.
    consumer.seek("pause", 0, Offset::Beginning).unwrap();
    assert!(consumer.is_paused("pause", 0));
    let mut seen = [0usize; 2];
    while seen[1] < 2000 {
        let b = next_batch_of(&mut consumer).await;
        seen[b.partition() as usize] += b.batch().len();
    }
    assert_eq!(seen[0], 0, "nothing of a paused partition");
    consumer.resume("pause", 0).unwrap();
    while seen[0] < 2000 {
        let b = next_batch_of(&mut consumer).await;
        assert_eq!(b.partition(), 0);
        seen[b.partition() as usize] += b.batch().len();
    }
    assert_eq!(seen, [2000, 2000]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_committed_drops_aborted_transactions() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("txn", 1);
    let producer = Producer::new(
        ProducerConfig {
            client: client_config(&cluster),
            ..ProducerConfig::default()
        }
        .transactional_id("t1"),
    )
    .await
    .unwrap();
    producer.init_transactions().await.unwrap();
    for (round, commit) in [(0, true), (1, false), (2, true)] {
        producer.begin_transaction().unwrap();
        for i in 0..50 {
            producer
                .send(Record::new("txn").value(format!("r{round}-{i}").as_bytes()))
                .await
                .unwrap();
        }
        if commit {
            producer.commit_transaction().await.unwrap();
        } else {
            producer.flush().await.unwrap();
            producer.abort_transaction().await.unwrap();
        }
    }
    for (level, want) in [
        (IsolationLevel::ReadCommitted, 100),
        (IsolationLevel::ReadUncommitted, 150),
    ] {
        let mut consumer = Consumer::new(consumer_config(&cluster).isolation_level(level))
            .await
            .unwrap();
        consumer.assign(&[("txn", 0, Offset::Beginning)]).unwrap();
        let mut got = Vec::new();
        while let Event::Batch(b) = tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap()
        {
            got.extend(values(&b));
        }
        assert_eq!(got.len(), want, "{level:?}");
        if level == IsolationLevel::ReadCommitted {
            assert!(
                got.iter().all(|v| !v.starts_with("r1-")),
                "no aborted record"
            );
            assert_eq!(got[50], "r2-0");
        }
    }
}

/// Large compressed batches (lz4 squeezes 512 KiB of one byte into a few KiB) and a 2 MiB
/// buffer: while the application holds what it got, the consumer holds at most the buffer
/// plus one batch per decoding partition, not the topic.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_buffer_bound_holds_for_highly_compressed_batches() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("big", 1);
    cluster.set_max_message_bytes(64 << 20);
    let producer = Producer::new(
        ProducerConfig {
            client: client_config(&cluster),
            ..ProducerConfig::default()
        }
        .compression(Compression::Lz4)
        .batch_size(600 * 1024)
        .max_request_size(8 << 20)
        .buffer_memory(64 << 20),
    )
    .await
    .unwrap();
    let value = vec![b'a'; 64 * 1024];
    for _ in 0..400 {
        producer
            .send(Record::new("big").value(&value))
            .await
            .unwrap();
    }
    producer.close().await.unwrap();
    let total_decoded = 400 * 64 * 1024;
    let budget = 2 << 20;
    let mut consumer = Consumer::new(consumer_config(&cluster).buffer_bytes(budget))
        .await
        .unwrap();
    consumer.assign(&[("big", 0, Offset::Beginning)]).unwrap();
    // Hold two batches: the consumer must stop fetching and decoding near the bound.
    let mut held = Vec::new();
    let mut largest = 0;
    for _ in 0..2 {
        let b = next_batch_of(&mut consumer).await;
        largest = largest.max(b.batch().memory_size());
        held.push(b);
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    let buffered = consumer.buffered_bytes();
    // The buffer, plus one batch a decoding task may take past it, plus the compressed
    // bytes of a fetch in flight.
    let bound = budget + 2 * largest + (1 << 20);
    assert!(buffered <= bound, "buffered {buffered} > {bound}");
    assert!(buffered < total_decoded / 4, "not the whole topic");
    // Consuming (and dropping) goes on to the end within the bound.
    let mut records: usize = held.iter().map(|b| b.batch().len()).sum();
    drop(held);
    loop {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
            .unwrap()
        {
            Event::Batch(b) => {
                records += b.batch().len();
                let buffered = consumer.buffered_bytes();
                assert!(buffered <= bound, "buffered {buffered} > {bound}");
            }
            Event::EndOfPartition { offset, .. } => {
                assert_eq!(offset, 400);
                break;
            }
            other => panic!("{other:?}"),
        }
    }
    assert_eq!(records, 400);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn offset_resets_follow_the_policy() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("reset", 1);
    fill(&cluster, "reset", 0, 10, Compression::None).await;
    // error: no offset to start from is an error, not a guess.
    let mut consumer =
        Consumer::new(consumer_config(&cluster).auto_offset_reset(OffsetReset::Error))
            .await
            .unwrap();
    consumer.assign(&[("reset", 0, Offset::Reset)]).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap_err();
    assert!(err.to_string().contains("auto.offset.reset"), "{err}");
    // latest: only records written after the start.
    let mut consumer =
        Consumer::new(consumer_config(&cluster).auto_offset_reset(OffsetReset::Latest))
            .await
            .unwrap();
    consumer.assign(&[("reset", 0, Offset::Reset)]).unwrap();
    match tokio::time::timeout(Duration::from_secs(10), consumer.next())
        .await
        .unwrap()
        .unwrap()
    {
        Event::EndOfPartition { offset, .. } => assert_eq!(offset, 10),
        other => panic!("{other:?}"),
    }
    fill(&cluster, "reset", 0, 5, Compression::None).await;
    let b = next_batch_of(&mut consumer).await;
    assert_eq!(b.first_offset(), 10);
    // Out of range: a position past the end resets (earliest here).
    let mut consumer =
        Consumer::new(consumer_config(&cluster).auto_offset_reset(OffsetReset::Earliest))
            .await
            .unwrap();
    consumer.assign(&[("reset", 0, Offset::At(1_000))]).unwrap();
    assert_eq!(next_batch_of(&mut consumer).await.first_offset(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_batch_is_a_typed_error_and_the_position_stays() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("bad", 1);
    fill(&cluster, "bad", 0, 3000, Compression::Snappy).await;
    let batches = cluster.batches("bad", 0);
    assert!(batches.len() > 3);
    cluster.corrupt_batch("bad", 0, 2);
    let bad_offset = batches[2].base_offset;
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    consumer.assign(&[("bad", 0, Offset::Beginning)]).unwrap();
    let mut last_good = 0;
    let err = loop {
        match tokio::time::timeout(Duration::from_secs(10), consumer.next())
            .await
            .unwrap()
        {
            Ok(Event::Batch(b)) => last_good = b.next_offset(),
            Ok(other) => panic!("{other:?}"),
            Err(e) => break e,
        }
    };
    assert!(
        matches!(err, spate::Error::Records { partition: 0, .. }),
        "{err}"
    );
    assert!(err.to_string().contains("CRC"), "{err}");
    assert_eq!(
        last_good, bad_offset,
        "every record before the bad batch was delivered"
    );
    assert_eq!(consumer.position("bad", 0), Some(bad_offset));
    // Asked again, it fails again (the position does not move past it), but after a backoff
    // that grows, not at once: a handful of failures in half a second, not hundreds.
    let started = std::time::Instant::now();
    let mut failures = 0;
    while started.elapsed() < Duration::from_millis(500) {
        match tokio::time::timeout(Duration::from_millis(100), consumer.next()).await {
            Ok(Err(e)) => {
                assert!(e.to_string().contains("CRC"), "{e}");
                failures += 1;
            }
            Ok(Ok(other)) => panic!("moved past the bad batch: {other:?}"),
            Err(_) => {}
        }
    }
    assert!(
        (2..=10).contains(&failures),
        "{failures} failures in 500 ms"
    );
}

/// The batches as a Stream: every batch before a corrupt one, then its error, then the end
/// (not the same error again and again); the consumer closes cleanly afterwards.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stream_of_batches_ends_after_an_error() {
    use futures_util::StreamExt;
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("bad", 1);
    fill(&cluster, "bad", 0, 3000, Compression::Snappy).await;
    cluster.corrupt_batch("bad", 0, 2);
    let bad_offset = cluster.batches("bad", 0)[2].base_offset;
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    consumer.assign(&[("bad", 0, Offset::Beginning)]).unwrap();
    let items: Vec<_> = tokio::time::timeout(Duration::from_secs(10), consumer.stream().collect())
        .await
        .expect("the stream ends");
    let (last, good) = items.split_last().expect("items");
    let records: usize = good
        .iter()
        .map(|b| b.as_ref().expect("batches before the error").batch().len())
        .sum();
    assert_eq!(
        records as i64, bad_offset,
        "every record before the bad batch"
    );
    let err = last.as_ref().expect_err("then the error");
    assert!(err.to_string().contains("CRC"), "{err}");
    consumer.close().await.expect("close");
}

/// Errors retrying cannot fix reach the application for their partition; the partition backs
/// off and reads on once the error is gone.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_partition_error_retrying_cannot_fix_is_reported_for_that_partition() {
    const TOPIC_AUTHORIZATION_FAILED: i16 = 29;
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("auth", 1);
    fill(&cluster, "auth", 0, 100, Compression::None).await;
    cluster.inject(ApiKey::Fetch, Fault::Error(TOPIC_AUTHORIZATION_FAILED), 2);
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    consumer.assign(&[("auth", 0, Offset::Beginning)]).unwrap();
    let err = tokio::time::timeout(Duration::from_secs(5), consumer.next())
        .await
        .unwrap()
        .unwrap_err();
    assert_eq!(
        err.code(),
        Some(spate::KafkaCode(TOPIC_AUTHORIZATION_FAILED)),
        "{err}"
    );
    assert!(err.to_string().contains("auth-0"), "{err}");
    // Once authorized again, every record arrives.
    let mut next = 0;
    while next < 100 {
        match tokio::time::timeout(Duration::from_secs(5), consumer.next())
            .await
            .unwrap()
        {
            Ok(Event::Batch(b)) => next = b.next_offset(),
            Ok(_) => {}
            Err(e) => assert_eq!(e.code(), Some(spate::KafkaCode(TOPIC_AUTHORIZATION_FAILED))),
        }
    }
}

/// A slow offset lookup holds up only its own partition: another partition (led by another
/// broker: one connection serves its requests in order, at Kafka as here), starting at an
/// exact offset, is fetched meanwhile.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_offset_lookup_does_not_hold_up_other_partitions() {
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("hol", 2);
    fill(&cluster, "hol", 0, 100, Compression::None).await;
    fill(&cluster, "hol", 1, 100, Compression::None).await;
    cluster.inject(ApiKey::ListOffsets, Fault::Delay(Duration::from_secs(3)), 1);
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    consumer
        .assign(&[("hol", 0, Offset::Beginning), ("hol", 1, Offset::At(0))])
        .unwrap();
    let started = std::time::Instant::now();
    let first = next_batch_of(&mut consumer).await;
    assert_eq!(
        first.partition(),
        1,
        "partition 1 first, while 0's lookup waits"
    );
    assert!(
        started.elapsed() < Duration::from_secs(2),
        "{:?}",
        started.elapsed()
    );
    let mut seen = [0, first.batch().len()];
    while seen != [100, 100] {
        let b = next_batch_of(&mut consumer).await;
        seen[b.partition() as usize] += b.batch().len();
    }
    assert!(
        started.elapsed() >= Duration::from_secs(3),
        "partition 0 waited for its lookup"
    );
}

/// The group coordinator is looked up once, not before every commit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_coordinator_is_found_once_for_many_commits() {
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("commits", 1);
    fill(&cluster, "commits", 0, 10, Compression::None).await;
    let mut consumer = Consumer::new(consumer_config(&cluster).group_id("commits"))
        .await
        .unwrap();
    consumer
        .assign(&[("commits", 0, Offset::Beginning)])
        .unwrap();
    next_batch_of(&mut consumer).await;
    let before = cluster.request_count(ApiKey::FindCoordinator);
    for _ in 0..20 {
        consumer.commit().await.unwrap();
    }
    let found = cluster.request_count(ApiKey::FindCoordinator) - before;
    assert!(found <= 1, "{found} lookups for 20 commits");
    assert_eq!(cluster.committed("commits", "commits", 0), Some(10));
    // A moved coordinator is found again.
    cluster.move_coordinator(1);
    consumer.commit().await.unwrap();
    assert!(cluster.request_count(ApiKey::FindCoordinator) > before + found);
}

/// The consumer fetches by topic id (Fetch v16, KIP-516) and follows a moved leader from the
/// fetch answer itself (KIP-951: the old leader names the new one), with no metadata refresh.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_moved_leader_is_followed() {
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("moving", 1);
    fill(&cluster, "moving", 0, 100, Compression::None).await;
    let mut consumer = Consumer::new(consumer_config(&cluster)).await.unwrap();
    consumer
        .assign(&[("moving", 0, Offset::Beginning)])
        .unwrap();
    let mut next = 0;
    while next < 100 {
        next = next_batch_of(&mut consumer).await.next_offset();
    }
    assert_eq!(cluster.last_request_version(ApiKey::Fetch), Some(16));
    let refreshes = consumer.client().metadata_refreshes();
    let old = cluster.leader("moving", 0).unwrap();
    cluster.move_leader("moving", 0, (old + 1) % 2);
    fill(&cluster, "moving", 0, 100, Compression::None).await;
    while next < 200 {
        let b = next_batch_of(&mut consumer).await;
        assert_eq!(b.first_offset(), next);
        next = b.next_offset();
    }
    assert_eq!(
        consumer.client().metadata_refreshes(),
        refreshes,
        "the new leader came from the fetch answer"
    );
}

/// librdkafka, an independent client, reads the embedded cluster by topic id (Fetch v13+):
/// every record, and the version it used.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn librdkafka_reads_by_topic_id() {
    let cluster = MockCluster::start(2).await.unwrap();
    cluster.create_topic("by-id", 2);
    for p in 0..2 {
        fill(&cluster, "by-id", p, 500, Compression::Lz4).await;
    }
    let bootstrap = cluster.bootstrap();
    let read = tokio::task::spawn_blocking(move || {
        support::read_with_librdkafka(&bootstrap, "by-id", 2, "read_uncommitted")
    })
    .await
    .unwrap();
    assert_eq!(read.iter().map(|d| d.count).sum::<u64>(), 1000);
    let version = cluster.last_request_version(ApiKey::Fetch).unwrap();
    assert!(version >= 13, "librdkafka fetched at v{version}");
}

/// `next` inside `select!` (as a pipeline or an application with a shutdown signal uses it):
/// cancelled over and over at any await point, it loses and repeats nothing.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_cancelled_next_loses_nothing() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("cancel", 2);
    for p in 0..2 {
        fill(&cluster, "cancel", p, 20_000, Compression::Lz4).await;
    }
    let mut consumer = Consumer::new(consumer_config(&cluster).max_partition_fetch_bytes(8192))
        .await
        .unwrap();
    consumer
        .assign_topics(&["cancel"], Offset::Beginning)
        .await
        .unwrap();
    let mut read = [Vec::new(), Vec::new()];
    let mut cancelled = 0u32;
    let mut spin = 0u64;
    let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
    while read.iter().map(Vec::len).sum::<usize>() < 40_000 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "stalled at {} records: a cancelled next lost some",
            read.iter().map(Vec::len).sum::<usize>()
        );
        // Give up on `next` after a varying, tiny number of polls.
        spin += 1;
        let budget = spin % 4;
        let gave_up = async move {
            for _ in 0..budget {
                tokio::task::yield_now().await;
            }
        };
        tokio::select! {
            biased;
            event = consumer.next() => {
                if let Event::Batch(b) = event.unwrap() {
                    read[b.partition() as usize].extend(b.records().map(|r| r.offset()));
                }
            }
            () = gave_up => cancelled += 1,
        }
    }
    assert!(cancelled > 100, "next was cancelled often ({cancelled})");
    for (p, offsets) in read.iter().enumerate() {
        let expected: Vec<i64> = (0..20_000).collect();
        assert!(
            *offsets == expected,
            "partition {p}: every offset once, in order"
        );
    }
}

/// A topic deleted and created again under the same name has a new id (KIP-516): the fetch by
/// the old id is answered UNKNOWN_TOPIC_ID, the consumer looks the topic up again, sees the new
/// id, and since its position belongs to the old topic starts over by its policy (earliest
/// here): the new topic's records are read from its first, none skipped as if the log had been
/// truncated.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_recreated_topic_is_found_by_its_new_id() {
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("again", 1);
    fill(&cluster, "again", 0, 100, Compression::None).await;
    let mut consumer =
        Consumer::new(consumer_config(&cluster).auto_offset_reset(OffsetReset::Earliest))
            .await
            .unwrap();
    consumer.assign(&[("again", 0, Offset::Beginning)]).unwrap();
    let mut next = 0;
    while next < 100 {
        next = next_batch_of(&mut consumer).await.next_offset();
    }
    cluster.create_topic("again", 1);
    fill(&cluster, "again", 0, 30, Compression::None).await;
    let b = next_batch_of(&mut consumer).await;
    assert_eq!(b.first_offset(), 0, "read from the start of the new topic");
    assert_eq!(cluster.last_request_version(ApiKey::Fetch), Some(16));
}

/// UNKNOWN_TOPIC_ID for a topic whose id did not change (a broker behind on metadata, just
/// after the topic was created) is retried where the consumer was: no reset, nothing read twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_passing_unknown_topic_id_moves_no_position() {
    const UNKNOWN_TOPIC_ID: i16 = 100;
    let cluster = MockCluster::start(1).await.unwrap();
    cluster.create_topic("lagging", 1);
    fill(&cluster, "lagging", 0, 100, Compression::None).await;
    let mut consumer =
        Consumer::new(consumer_config(&cluster).auto_offset_reset(OffsetReset::Earliest))
            .await
            .unwrap();
    consumer.assign(&[("lagging", 0, Offset::At(50))]).unwrap();
    let b = next_batch_of(&mut consumer).await;
    assert_eq!(b.first_offset(), 50);
    let mut next = b.next_offset();
    cluster.inject(ApiKey::Fetch, Fault::Error(UNKNOWN_TOPIC_ID), 2);
    // Write and read on until the faults have been met (a fetch already in flight when they
    // were armed answers without them), and a little after.
    let mut rounds = 0;
    while cluster.pending_faults() > 0 || rounds < 2 {
        rounds += 1;
        assert!(rounds < 50, "the faults were never met");
        fill(&cluster, "lagging", 0, 20, Compression::None).await;
        let end = 100 + 20 * rounds as i64;
        while next < end {
            let b = next_batch_of(&mut consumer).await;
            assert_eq!(b.first_offset(), next, "read on from where it was");
            next = b.next_offset();
        }
    }
}
