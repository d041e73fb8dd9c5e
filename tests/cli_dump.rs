//! `spate dump` end to end: the real binary on golden batches and on corrupt copies of them.
#![cfg(feature = "cli")]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

fn golden(name: &str) -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/fixtures/golden")
        .join(name)
}

fn spate(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(args)
        .output()
        .unwrap()
}

fn tmp(name: &str, data: &[u8]) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("spate-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let p = dir.join(name);
    std::fs::write(&p, data).unwrap();
    p
}

#[test]
fn prints_records_with_kcat_tokens() {
    let f = golden("kafka-python-zstd.bin");
    let out = spate(&["dump", "-f", "%o|%k|%K|%s|%h\\n", f.to_str().unwrap()]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 40);
    assert_eq!(lines[0], "0||-1|value 0 |source=kafka-python,n=0");
    assert_eq!(
        lines[1],
        "1|key-1|5|value 1 lorem ipsum dolor |source=kafka-python,n=1"
    );
}

#[test]
fn default_format_is_the_value_and_a_newline() {
    let out = spate(&["dump", golden("kcat-lz4.bin").to_str().unwrap()]);
    assert!(out.status.success());
    assert!(out
        .stdout
        .starts_with(b"value 1 lorem ipsum dolor \nvalue 2 "));
}

#[test]
fn topic_and_partition_come_from_a_log_directory() {
    let dir = std::env::temp_dir().join(format!("spate-cli-{}/orders-7", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let seg = dir.join("00000000000000000000.log");
    std::fs::copy(golden("kcat-none.bin"), &seg).unwrap();
    let out = spate(&["dump", "-f", "%t/%p@%o\\n", seg.to_str().unwrap()]);
    assert!(out.status.success());
    assert!(String::from_utf8(out.stdout)
        .unwrap()
        .starts_with("orders/7@0\n"));
}

#[test]
fn verify_summarises() {
    let out = spate(&[
        "dump",
        "--verify",
        golden("kcat-snappy.bin").to_str().unwrap(),
    ]);
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    assert!(
        text.contains("OK: 619 bytes, 1 batches (snappy×1), 30 records"),
        "{text}"
    );
}

#[test]
fn corrupt_input_fails_naming_the_position() {
    let mut data = std::fs::read(golden("kcat-none.bin")).unwrap();
    let two = [data.clone(), data.clone()].concat();
    let second = data.len();
    // Corrupt a byte of the second batch's records: CRC mismatch at the second batch's position.
    let mut bad = two.clone();
    bad[second + 100] ^= 0x01;
    let out = spate(&["dump", tmp("bad.bin", &bad).to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains(&format!("batch at byte {second}")) && err.contains("CRC-32C mismatch"),
        "{err}"
    );
    // Truncated file.
    data.truncate(1000);
    let out = spate(&["dump", "--verify", tmp("cut.bin", &data).to_str().unwrap()]);
    assert!(!out.status.success());
    let err = String::from_utf8(out.stderr).unwrap();
    assert!(
        err.contains("truncated batch at byte 0: it needs 2171 bytes, the file has 1000 left"),
        "{err}"
    );
    // Unknown format token.
    let out = spate(&[
        "dump",
        "-f",
        "%z",
        golden("kcat-none.bin").to_str().unwrap(),
    ]);
    assert!(!out.status.success());
    assert!(String::from_utf8(out.stderr)
        .unwrap()
        .contains("unknown format token %z"));
}
