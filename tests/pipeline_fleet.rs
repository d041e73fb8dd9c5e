//! A pipeline run by three `spate pipe` processes in one group on a real broker (tansu by
//! default), while input keeps arriving: one joins late, one is killed, one leaves. At-least-once
//! and exactly-once; no member stops with an error and nothing is missing. (tansu does not
//! filter aborted records for read_committed readers, so exactly-once output is checked here
//! for completeness; `pipeline_fleet_mock` checks exactly-once-ness on the embedded cluster.)
//!
//! tansu 0.6 never aborts a dead producer's open transaction (it keeps `transaction.timeout.ms`
//! but does not enforce it, where Kafka's coordinator aborts it), and holds back the offsets
//! of every later transaction writing the same partitions until it ends. So in the
//! exactly-once run the killed member is a static one and is restarted, as a supervisor
//! would: its restart takes the same `transactional.id`, which aborts what it left open.

mod support;

use std::collections::HashMap;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate::cluster::{Client, NewTopic, OffsetSpec};
use spate::consumer::{Consumer, ConsumerConfig};
use spate::producer::{Producer, ProducerConfig, Record};
use support::{read_values, sigterm, unique_topic, Reaper, TestBroker};

const PARTITIONS: i32 = 4;
/// The members: `b2` is `b` restarted (exactly-once only).
const NAMES: [&str; 4] = ["a", "b", "c", "b2"];

struct Job {
    bootstrap: String,
    input: String,
    output: String,
    group: String,
    exactly_once: bool,
}

impl Job {
    /// Where member `name` writes its log (debug level: joins, assignments, commits).
    fn log(&self, name: &str) -> PathBuf {
        std::env::temp_dir().join(format!("{}-{name}.log", self.group))
    }

    /// The end of each member's log, for a failure message.
    fn logs(&self) -> String {
        let mut all = String::new();
        for name in NAMES {
            let text = std::fs::read_to_string(self.log(name)).unwrap_or_default();
            let lines: Vec<&str> = text.lines().collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            all += &format!(
                "\n--- member {name} ({}):\n{}",
                self.log(name).display(),
                tail.join("\n")
            );
        }
        all
    }

    /// Waits for a member that was asked to stop: it must exit cleanly.
    fn finish(&self, mut member: Child, what: &str) {
        let status = member.wait().unwrap();
        assert!(
            status.success(),
            "{what} stopped with an error ({status}){}",
            self.logs()
        );
    }

    /// Member `name`; `static_id`: its `group.instance.id`, which also fixes its
    /// `transactional.id`.
    fn member(&self, name: &str, static_id: Option<&str>) -> Child {
        let log = std::fs::File::create(self.log(name)).expect("member log");
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_spate"));
        cmd.args(["pipe", "-d", "-b", &self.bootstrap, "--from", &self.input])
            .args(["--to", &self.output, "-G", &self.group])
            .args(["--map", "uppercase", "--commit-interval-ms", "200"])
            .args(["-X", "session.timeout.ms=6000"])
            .args(["-X", "heartbeat.interval.ms=1000"])
            // The rebalance timeout. tansu keeps a rebalance waiting for a killed member until
            // it passes (Kafka removes the member at its session timeout), and a member that
            // joins meanwhile gets no partitions: 10 s instead of the default 300 s, as the
            // consumer group tests on tansu do.
            .args(["-X", "max.poll.interval.ms=10000"])
            // A killed member's open transaction is aborted after this.
            .args(["-X", "transaction.timeout.ms=10000"])
            .stdout(Stdio::null())
            .stderr(log);
        if self.exactly_once {
            cmd.arg("--exactly-once");
        }
        if let Some(id) = static_id {
            cmd.args(["-X", &format!("group.instance.id={}-{id}", self.group)]);
        }
        cmd.spawn().expect("spawn spate pipe")
    }
}

async fn ends(client: &Client, topic: &str) -> Vec<i64> {
    let partitions: Vec<i32> = (0..PARTITIONS).collect();
    let mut listed = client
        .list_offsets(topic, &partitions, OffsetSpec::Latest)
        .await
        .unwrap();
    listed.sort_by_key(|l| l.partition);
    listed.iter().map(|l| l.offset).collect()
}

async fn committed(consumer: &Consumer, topic: &str) -> Vec<i64> {
    let list: Vec<(&str, i32)> = (0..PARTITIONS).map(|p| (topic, p)).collect();
    let mut got = consumer.committed(&list).await.unwrap();
    got.sort_by_key(|((_, p), _)| *p);
    got.iter().map(|(_, o)| o.unwrap_or(0)).collect()
}

/// Polls `done` until it holds (failing after `secs` with `what`); members must stay up.
async fn until<F, Fut>(job: &Job, secs: u64, what: &str, members: &mut [&mut Child], done: F)
where
    F: Fn() -> Fut,
    Fut: std::future::Future<Output = bool>,
{
    let deadline = Instant::now() + Duration::from_secs(secs);
    while !done().await {
        for m in members.iter_mut() {
            if let Some(status) = m.try_wait().unwrap() {
                panic!(
                    "a member exited ({status}) while waiting for {what}{}",
                    job.logs()
                );
            }
        }
        assert!(
            Instant::now() < deadline,
            "no {what} in {secs} s{}",
            job.logs()
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

async fn run_fleet(exactly_once: bool) {
    let broker = TestBroker::start();
    let client = Client::connect(broker.config()).await.unwrap();
    let name = if exactly_once {
        "fleet-eo"
    } else {
        "fleet-alo"
    };
    let job = Job {
        bootstrap: broker.bootstrap.clone(),
        input: unique_topic(&format!("{name}-in")),
        output: unique_topic(&format!("{name}-out")),
        group: unique_topic(&format!("{name}-group")),
        exactly_once,
    };
    client
        .create_topics(&[
            NewTopic::new(&job.input, PARTITIONS, 1),
            NewTopic::new(&job.output, PARTITIONS, 1),
        ])
        .await
        .unwrap();
    let n: usize = 40_000;
    // The input arrives through most of the test: 200 records every 50 ms.
    let writer = tokio::spawn({
        let (bootstrap, input) = (job.bootstrap.clone(), job.input.clone());
        async move {
            let producer = Producer::new(ProducerConfig::new(&bootstrap))
                .await
                .unwrap();
            let mut sent = vec![Vec::new(); PARTITIONS as usize];
            for round in 0..n / 200 {
                let mut last = None;
                for j in 0..200 {
                    let i = round * 200 + j;
                    let value = format!("value {i} in lower case");
                    let p = (i % PARTITIONS as usize) as i32;
                    let record = Record::new(&input).value(value.as_bytes()).partition(p);
                    last = Some(producer.send(record).await.unwrap());
                    sent[p as usize].push(value.to_ascii_uppercase().into_bytes());
                }
                last.unwrap().await.unwrap();
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
            producer.close().await.unwrap();
            sent
        }
    });
    let written = || async { ends(&client, &job.output).await.iter().sum::<i64>() };

    // Exactly-once: b is static, restarted after its kill (see the module's comment).
    let b_static = exactly_once.then_some("b");
    let mut a = job.member("a", None);
    let mut b = job.member("b", b_static);
    let mut reaper = Reaper(vec![a.id(), b.id()]);
    until(
        &job,
        60,
        "output from the first two",
        &mut [&mut a, &mut b],
        || async { written().await > 2_000 },
    )
    .await;
    let mut c = job.member("c", None);
    reaper.0.push(c.id());
    let before = written().await;
    until(
        &job,
        60,
        "output with a third member",
        &mut [&mut a, &mut b, &mut c],
        || async { written().await > before + 4_000 },
    )
    .await;
    b.kill().unwrap();
    b.wait().unwrap();
    reaper.reaped(&b);
    let mut last = vec![c];
    if let Some(id) = b_static {
        let b2 = job.member("b2", Some(id));
        reaper.0.push(b2.id());
        last.push(b2);
    }
    let before = written().await;
    {
        let mut members: Vec<&mut Child> = last.iter_mut().collect();
        members.push(&mut a);
        until(&job, 60, "output after the kill", &mut members, || async {
            written().await > before + 4_000
        })
        .await;
    }
    sigterm(&a);
    reaper.reaped(&a);
    job.finish(a, "the member that left");
    let sent = writer.await.unwrap();
    // The input's ends: one offset per record (tansu's ListOffsets answers "latest" with less
    // than the log end while it is being written, so it is not asked).
    let input_ends: Vec<i64> = sent.iter().map(|v| v.len() as i64).collect();
    let group = Consumer::with_client(
        client.clone(),
        ConsumerConfig {
            client: client.config().clone(),
            ..ConsumerConfig::default()
        }
        .group_id(&job.group),
    );
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let now = committed(&group, &job.input).await;
        if now == input_ends {
            break;
        }
        let exited = last.iter_mut().any(|m| m.try_wait().unwrap().is_some());
        if Instant::now() > deadline || exited {
            for m in &mut last {
                reaper.reaped(m);
                let _ = m.kill();
                let _ = m.wait();
            }
            panic!(
                "the last members did not commit the input's end ({now:?} of {input_ends:?}){}",
                job.logs()
            );
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    for m in &last {
        sigterm(m);
        reaper.reaped(m);
    }
    for m in last {
        job.finish(m, "a last member");
    }

    let outputs = read_values(&client, &job.output, PARTITIONS).await;
    for p in 0..PARTITIONS as usize {
        let got: HashMap<&[u8], usize> = outputs[p].iter().fold(HashMap::new(), |mut m, v| {
            *m.entry(v.as_slice()).or_default() += 1;
            m
        });
        let missing = sent[p]
            .iter()
            .filter(|v| !got.contains_key(v.as_slice()))
            .count();
        assert_eq!(missing, 0, "partition {p}: {missing} input records missing");
        assert!(outputs[p].len() >= sent[p].len());
    }
    client
        .delete_topics(&[&job.input, &job.output])
        .await
        .unwrap();
    for name in NAMES {
        let _ = std::fs::remove_file(job.log(name));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_at_least_once_members_join_die_and_leave_while_input_flows() {
    run_fleet(false).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn three_exactly_once_members_are_never_fenced_by_each_other() {
    run_fleet(true).await;
}
