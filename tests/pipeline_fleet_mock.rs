//! A pipeline run by several processes in one group, on the embedded cluster
//! (`--features mock`), while input keeps arriving: members join late, are killed and leave.
//! librdkafka reads the output with read_committed as the independent judge.

mod support;

use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate::mock::MockCluster;
use spate::producer::{Producer, ProducerConfig, Record};
use support::{finish, read_with_librdkafka, sigterm, Digest, Reaper};

const PARTITIONS: i32 = 6;

/// A `spate pipe --exactly-once` member of group `fleet`, with `group.protocol=PROTOCOL`.
fn member(bootstrap: &str, protocol: &str) -> Child {
    Command::new(env!("CARGO_BIN_EXE_spate"))
        .args([
            "pipe", "-b", bootstrap, "--from", "in", "--to", "out", "-G", "fleet",
        ])
        .args(["-X", &format!("group.protocol={protocol}")])
        .args(["--map", "uppercase", "--exactly-once"])
        .args(["--commit-interval-ms", "100", "--lanes", "2"])
        .args(["-X", "session.timeout.ms=3000"])
        .args(["-X", "heartbeat.interval.ms=300"])
        // A killed member's open transaction is aborted by the coordinator after this.
        .args(["-X", "transaction.timeout.ms=5000"])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn spate pipe")
}

/// Waits until `done` holds, failing after `secs` with `what`; members must stay up meanwhile.
async fn until(secs: u64, what: &str, members: &mut [&mut Child], done: impl Fn() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done() {
        for m in members.iter_mut() {
            if let Some(status) = m.try_wait().unwrap() {
                // Its own words, so an intermittent exit says why.
                let mut said = String::new();
                if let Some(mut stderr) = m.stderr.take() {
                    let _ = std::io::Read::read_to_string(&mut stderr, &mut said);
                }
                panic!("a member exited ({status}) while waiting for {what}:\n{said}");
            }
        }
        assert!(Instant::now() < deadline, "no {what} in {secs} s");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
}

fn written(cluster: &MockCluster, topic: &str) -> i64 {
    (0..PARTITIONS).map(|p| cluster.log_end(topic, p)).sum()
}

/// Three exactly-once members: two start, the input keeps arriving, a third joins late, one
/// is killed (SIGKILL, with a transaction open), one leaves (SIGTERM); the last one runs to the
/// end of the input. No member stops with an error, and the read_committed output holds every
/// input record exactly once, in order per partition.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_exactly_once_members_join_die_and_leave_while_input_flows() {
    fleet("classic").await;
}

/// The same with KIP-848 members (`group.protocol=consumer`): the member epoch fences zombie
/// offset commits in the transactions (KIP-447), as the generation does in the classic
/// protocol.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_exactly_once_kip848_members_join_die_and_leave_while_input_flows() {
    fleet("consumer").await;
}

async fn fleet(protocol: &str) {
    let n: usize = 60_000;
    let cluster = MockCluster::start(3).await.unwrap();
    // KIP-848 timeouts are the coordinator's: as short as the classic members'.
    cluster.set_consumer_group_timeouts(Duration::from_secs(3), Duration::from_millis(300));
    cluster.create_topic("in", PARTITIONS);
    cluster.create_topic("out", PARTITIONS);
    let bootstrap = cluster.bootstrap();

    // The input arrives over the whole test, in rounds of 300 records every 20 ms.
    let writer = tokio::spawn({
        let bootstrap = bootstrap.clone();
        async move {
            let producer = Producer::new(ProducerConfig::new(&bootstrap).linger(Duration::ZERO))
                .await
                .unwrap();
            let mut expected = vec![Digest::default(); PARTITIONS as usize];
            for round in 0..n / 300 {
                let mut last = None;
                for j in 0..300 {
                    let i = round * 300 + j;
                    let key = format!("k{i}");
                    let value = format!("value {i} arrives in lower case");
                    let p = i as i32 % PARTITIONS;
                    expected[p as usize].add(
                        Some(key.as_bytes()),
                        Some(value.to_ascii_uppercase().as_bytes()),
                        &[],
                    );
                    let record = Record::new("in")
                        .key(key.as_bytes())
                        .value(value.as_bytes())
                        .partition(p);
                    last = Some(producer.send(record).await.unwrap());
                }
                last.unwrap().await.unwrap();
                tokio::time::sleep(Duration::from_millis(20)).await;
            }
            producer.close().await.unwrap();
            expected
        }
    });

    let mut a = member(&bootstrap, protocol);
    let mut b = member(&bootstrap, protocol);
    let mut reaper = Reaper(vec![a.id(), b.id()]);
    until(
        30,
        "output from the first two members",
        &mut [&mut a, &mut b],
        || written(&cluster, "out") > 5_000,
    )
    .await;
    let mut c = member(&bootstrap, protocol);
    reaper.0.push(c.id());
    until(
        30,
        "a group of three",
        &mut [&mut a, &mut b, &mut c],
        || match protocol {
            "consumer" => cluster
                .consumer_group("fleet")
                .is_some_and(|g| g.members.len() == 3),
            _ => cluster.group("fleet").is_some_and(|g| g.members.len() == 3),
        },
    )
    .await;
    let before = written(&cluster, "out");
    until(
        30,
        "output from the group of three",
        &mut [&mut a, &mut b, &mut c],
        || written(&cluster, "out") > before + 5_000,
    )
    .await;
    // Killed with its work in flight: the coordinator aborts its transaction after the
    // transaction timeout; its partitions go to the others after the session timeout.
    b.kill().unwrap();
    b.wait().unwrap();
    reaper.reaped(&b);
    let before = written(&cluster, "out");
    until(30, "output after the kill", &mut [&mut a, &mut c], || {
        written(&cluster, "out") > before + 5_000
    })
    .await;
    // Leaves cleanly: commits, leaves the group, exits 0.
    sigterm(&a);
    reaper.reaped(&a);
    finish(a, "the member that left");
    let expected = writer.await.unwrap();
    let ends: Vec<i64> = (0..PARTITIONS).map(|p| cluster.log_end("in", p)).collect();
    until(
        60,
        "every input committed by the last member",
        &mut [&mut c],
        || (0..PARTITIONS).all(|p| cluster.committed("fleet", "in", p) == Some(ends[p as usize])),
    )
    .await;
    sigterm(&c);
    reaper.reaped(&c);
    let last = finish(c, "the last member");
    eprintln!("{}", String::from_utf8_lossy(&last.stderr));

    let read = tokio::task::spawn_blocking(move || {
        read_with_librdkafka(&bootstrap, "out", PARTITIONS, "read_committed")
    })
    .await
    .unwrap();
    for p in 0..PARTITIONS as usize {
        assert_eq!(read[p].count, expected[p].count, "partition {p}: count");
        assert_eq!(
            read[p].sha256,
            expected[p].hex(),
            "partition {p}: every record exactly once, in order"
        );
    }
}
