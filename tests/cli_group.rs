//! Three `spate consume -G` processes in one group on a real broker (tansu), while records keep
//! arriving: one joins late, one is killed with SIGKILL, one is stopped with SIGTERM, and the
//! last (started with SIGINT ignored, as a shell's background job is) with SIGINT. Every
//! record is printed at least once; only records the killed process printed are printed
//! twice (a clean stop and a cooperative rebalance commit what was printed first); the
//! stopped processes exit 0, and the group's commits end at the log ends.
#![cfg(feature = "cli")]

mod support;

use std::collections::{BTreeMap, BTreeSet};
use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use spate::cluster::{Client, NewTopic};
use spate::consumer::{Consumer, ConsumerConfig};
use spate::producer::{Producer, ProducerConfig, Record};
use support::{unique_topic, TestBroker};

const PARTITIONS: i32 = 6;
/// One record per partition every 100 ms.
const ROUNDS: i64 = 300;

type Printed = Arc<Mutex<BTreeMap<(i32, i64), Vec<char>>>>;

/// A `spate consume -G` process printing "partition offset" per record; a thread records what
/// it printed under `name`.
struct Member {
    child: Child,
    reader: std::thread::JoinHandle<()>,
}

fn start_member(
    broker: &str,
    topic: &str,
    group: &str,
    name: char,
    printed: &Printed,
    sigint_ignored: bool,
) -> Member {
    let spate = env!("CARGO_BIN_EXE_spate");
    let args = [
        "consume",
        "-d",
        "-b",
        broker,
        "-t",
        topic,
        "-G",
        group,
        "-f",
        "%p %o\\n",
        "-X",
        "session.timeout.ms=6000",
        "-X",
        "heartbeat.interval.ms=1000",
        "-X",
        "auto.commit.interval.ms=500",
        "-X",
        "partition.assignment.strategy=cooperative-sticky",
        "-X",
        "fetch.max.wait.ms=100",
    ];
    let mut command = if sigint_ignored {
        // `exec` keeps the pid: the signal reaches spate itself, not a wrapper.
        let mut c = Command::new("sh");
        c.arg("-c")
            .arg("trap '' INT; exec \"$0\" \"$@\"")
            .arg(spate)
            .args(args);
        c
    } else {
        let mut c = Command::new(spate);
        c.args(args);
        c
    };
    let log = std::fs::File::create(log_path(group, name)).expect("member log");
    let mut child = command.stdout(Stdio::piped()).stderr(log).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let printed = printed.clone();
    let reader = std::thread::spawn(move || {
        for line in BufReader::new(stdout).lines() {
            let line = line.unwrap();
            let (p, o) = line.split_once(' ').expect("partition offset");
            let key = (p.parse().unwrap(), o.parse().unwrap());
            printed.lock().unwrap().entry(key).or_default().push(name);
        }
    });
    Member { child, reader }
}

/// Where member `name` writes its log (debug level: joins, syncs, assignments).
fn log_path(group: &str, name: char) -> std::path::PathBuf {
    std::env::temp_dir().join(format!("{group}-{name}.log"))
}

/// Prints the end of every member's log if the test fails (and removes the logs either way).
struct Logs(String);

impl Drop for Logs {
    fn drop(&mut self) {
        for name in ['A', 'B', 'C'] {
            let path = log_path(&self.0, name);
            if std::thread::panicking() {
                let text = std::fs::read_to_string(&path).unwrap_or_default();
                let lines: Vec<&str> = text.lines().collect();
                let tail = &lines[lines.len().saturating_sub(60)..];
                eprintln!(
                    "--- member {name} ({}):\n{}",
                    path.display(),
                    tail.join("\n")
                );
            }
            let _ = std::fs::remove_file(&path);
        }
    }
}

fn signal(member: &Member, name: &str) {
    let status = Command::new("kill")
        .args([&format!("-{name}"), &member.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Waits for a stopped member to exit; its status.
fn wait_exit(mut member: Member, within: Duration) -> std::process::ExitStatus {
    let deadline = std::time::Instant::now() + within;
    loop {
        if let Some(status) = member.child.try_wait().unwrap() {
            member.reader.join().unwrap();
            return status;
        }
        assert!(
            std::time::Instant::now() < deadline,
            "did not exit in {within:?}"
        );
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_consume_processes_join_die_and_stop_while_records_arrive() {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let topic = unique_topic("cli-group");
    let group = unique_topic("cli-group-id");
    let _logs = Logs(group.clone());
    client
        .create_topics(&[NewTopic::new(&topic, PARTITIONS, 1)])
        .await
        .unwrap();
    let producer = Producer::with_client(
        client.clone(),
        ProducerConfig {
            client: broker.config(),
            ..ProducerConfig::default()
        },
    )
    .await
    .unwrap();
    let writer = {
        let topic = topic.clone();
        tokio::spawn(async move {
            for round in 0..ROUNDS {
                let value = format!("{round}");
                for p in 0..PARTITIONS {
                    let record = Record::new(&topic).value(value.as_bytes()).partition(p);
                    producer.send(record).await.unwrap();
                }
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            producer.close().await.unwrap();
        })
    };
    let printed: Printed = Arc::default();
    let b = broker.bootstrap.as_str();
    let a = start_member(b, &topic, &group, 'A', &printed, false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    let b_member = start_member(b, &topic, &group, 'B', &printed, false);
    tokio::time::sleep(Duration::from_secs(4)).await;
    // C joins late, with SIGINT ignored.
    let c = start_member(b, &topic, &group, 'C', &printed, true);
    // tansu holds a follower's SyncGroup that arrives after the leader's until the next
    // rebalance: allow a rebalance or two.
    tokio::time::sleep(Duration::from_secs(12)).await;
    // B stops cleanly on SIGTERM: commits what it printed, leaves, exits 0.
    signal(&b_member, "TERM");
    let status = tokio::task::spawn_blocking(move || wait_exit(b_member, Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "B: {status}");
    tokio::time::sleep(Duration::from_secs(3)).await;
    // A is killed: no commit, no LeaveGroup.
    let mut a = a;
    a.child.kill().unwrap();
    a.child.wait().unwrap();
    a.reader.join().unwrap();
    writer.await.unwrap();
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    loop {
        let missing = {
            let printed = printed.lock().unwrap();
            (0..PARTITIONS)
                .flat_map(|p| (0..ROUNDS).map(move |o| (p, o)))
                .filter(|k| !printed.contains_key(k))
                .count()
        };
        if missing == 0 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "{missing} records never printed"
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    // C stops on SIGINT although it started with SIGINT ignored.
    signal(&c, "INT");
    let status = tokio::task::spawn_blocking(move || wait_exit(c, Duration::from_secs(20)))
        .await
        .unwrap();
    assert!(status.success(), "C: {status}");

    {
        let printed = printed.lock().unwrap();
        let by: BTreeMap<char, usize> =
            printed
                .values()
                .flatten()
                .fold(BTreeMap::new(), |mut m, who| {
                    *m.entry(*who).or_default() += 1;
                    m
                });
        assert!(
            by.len() == 3,
            "every process printed records: {by:?} (of {} records)",
            printed.len()
        );
        // Printed twice only where the killed process printed it first.
        let twice: Vec<_> = printed.iter().filter(|(_, who)| who.len() > 1).collect();
        for (record, who) in &twice {
            assert!(
                who.contains(&'A') && who.iter().filter(|w| **w != 'A').count() == 1,
                "{record:?} printed by {who:?}: only A (killed) may be repeated"
            );
        }
        eprintln!(
            "printed by each: {by:?}; {} records printed twice (A's, after its kill)",
            twice.len()
        );
        let owners: BTreeSet<char> = twice.iter().flat_map(|(_, w)| w.iter().copied()).collect();
        assert!(
            !owners.contains(&'B'),
            "nothing B printed was printed again"
        );
    }
    // The group's commits are at the log ends.
    let reader = Consumer::new(
        ConsumerConfig {
            client: broker.config(),
            ..ConsumerConfig::default()
        }
        .group_id(&group),
    )
    .await
    .unwrap();
    let partitions: Vec<(&str, i32)> = (0..PARTITIONS).map(|p| (topic.as_str(), p)).collect();
    for ((_, p), offset) in reader.committed(&partitions).await.unwrap() {
        assert_eq!(offset, Some(ROUNDS), "partition {p}");
    }
    client.delete_topics(&[&topic]).await.unwrap();
}
