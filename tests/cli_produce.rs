//! `spate produce` against a real broker, read back by librdkafka.
#![cfg(feature = "cli")]

mod support;

use std::io::Write;
use std::process::{Command, Stdio};

use support::{read_with_librdkafka, unique_topic, Digest, TestBroker};

fn produce(args: &[&str], input: &[u8]) -> (bool, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_spate"))
        .arg("produce")
        .args(args)
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    // A run that rejects its arguments exits without reading stdin: the pipe is then closed,
    // which is not the test's failure to report.
    if let Err(e) = child.stdin.take().unwrap().write_all(input) {
        assert_eq!(
            e.kind(),
            std::io::ErrorKind::BrokenPipe,
            "writing stdin: {e}"
        );
    }
    let out = child.wait_with_output().unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Lines with keys (`-K`), a header (`-H`), gzip (`-z`), to one partition (`-p`): librdkafka
/// reads back exactly those records in order, and the summary counts them.
#[test]
fn lines_keys_and_headers_arrive_as_kcat_would_send_them() {
    let broker = TestBroker::start();
    let topic = unique_topic("cli-produce");
    let created = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(["topic", "create", "-b", &broker.bootstrap, "-t", &topic])
        .args(["--partitions", "2"])
        .output()
        .unwrap();
    assert!(created.status.success());
    let mut input = Vec::new();
    let mut expected = Digest::default();
    for i in 0..5000 {
        writeln!(input, "key{i}:value {i} with: a colon").unwrap();
        expected.add(
            Some(format!("key{i}").as_bytes()),
            Some(format!("value {i} with: a colon").as_bytes()),
            &[("source", Some(b"cli"))],
        );
    }
    // A line without the key delimiter is a value with a null key.
    input.extend_from_slice(b"no key here\n");
    expected.add(None, Some(b"no key here"), &[("source", Some(b"cli"))]);
    let (ok, stderr) = produce(
        &[
            "-b",
            &broker.bootstrap,
            "-t",
            &topic,
            "-p",
            "1",
            "-K",
            ":",
            "-H",
            "source=cli",
            "-z",
            "gzip",
        ],
        &input,
    );
    assert!(ok, "{stderr}");
    assert!(stderr.contains("5001 messages"), "{stderr}");
    let read = read_with_librdkafka(&broker.bootstrap, &topic, 2, "read_uncommitted");
    assert_eq!(read[0].count, 0);
    assert_eq!(read[1].count, 5001);
    assert_eq!(read[1].sha256, expected.hex());
}

#[test]
fn bad_arguments_and_missing_topics_are_clear_errors() {
    let broker = TestBroker::start();
    let (ok, stderr) = produce(
        &["-b", &broker.bootstrap, "-t", "t", "-H", "novalue"],
        b"x\n",
    );
    assert!(!ok);
    assert!(
        stderr.contains("-H novalue: expected key=value"),
        "{stderr}"
    );
    // A producer asks the broker to create a topic it does not know (as Java's and
    // librdkafka's do); with that turned off, a missing topic is a clear error.
    let (ok, stderr) = produce(
        &[
            "-b",
            &broker.bootstrap,
            "-t",
            "no-such-topic",
            "-X",
            "default.api.timeout.ms=1000",
            "-X",
            "allow.auto.create.topics=false",
        ],
        b"x\n",
    );
    assert!(!ok);
    assert!(stderr.contains("no-such-topic"), "{stderr}");
    let fresh = support::unique_topic("created-on-first-use");
    let (ok, stderr) = produce(&["-b", &broker.bootstrap, "-t", &fresh], b"x\n");
    assert!(ok, "tansu creates topics on first use: {stderr}");
    let (ok, stderr) = produce(&["-b", &broker.bootstrap, "-t", "t", "-z", "brotli"], b"");
    assert!(!ok);
    assert!(stderr.contains("brotli"), "{stderr}");
}
