//! `spate produce`: messages from stdin or files to a topic, like `kcat -P`.

use std::io::Read;
use std::process::ExitCode;
use std::time::Instant;

use spate::producer::{BatchDelivery, Producer, ProducerConfig, Record};
use spate::record::Compression;

use crate::common::ConnArgs;
use crate::serdes::{Encoder, SchemaSource};
use spate::formats::registry::Part;

/// A message's key and value as `-s` encoded them (`None`: as read).
type Encoded = (Option<Vec<u8>>, Option<Vec<u8>>);

/// A message split at the first key delimiter into key and value.
fn split_key<'m>(m: &'m [u8], delimiter: Option<&[u8]>) -> (Option<&'m [u8]>, &'m [u8]) {
    match delimiter.and_then(|d| find(m, d).map(|at| (at, d))) {
        Some((at, d)) => (Some(&m[..at]), &m[at + d.len()..]),
        None => (None, m),
    }
}

/// Bytes read from the input at a time; lines are handed to the producer a chunk at a time.
const CHUNK: usize = 1 << 20;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Topic to produce to.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Partition (default: the partitioner: murmur2 of the key, sticky without one).
    #[arg(short = 'p', long = "partition")]
    pub partition: Option<i32>,
    /// Split each message into key and value at the first occurrence of DELIM.
    #[arg(short = 'K', value_name = "DELIM")]
    pub key_delimiter: Option<String>,
    /// Message delimiter (default: newline).
    #[arg(short = 'D', value_name = "DELIM", default_value = "\n")]
    pub delimiter: String,
    /// Compression codec: none, gzip, snappy, lz4, zstd (`compression.type`).
    #[arg(short = 'z', value_name = "CODEC")]
    pub compression: Option<Compression>,
    /// A header for every message, `key=value`. Repeatable.
    #[arg(short = 'H', value_name = "KEY=VALUE")]
    pub headers: Vec<String>,
    /// With files: read messages separated by the delimiter, as from stdin, instead of one
    /// message per file.
    #[arg(short = 'l')]
    pub lines: bool,
    /// Files to send (default: stdin). Each file is one message unless `-l` is given.
    pub files: Vec<std::path::PathBuf>,
    #[command(flatten)]
    pub serdes: crate::serdes::SerdesArgs,
    /// With `-s value=…`: the schema values are written with (Avro JSON, a `.proto` file, a
    /// JSON Schema); registered under `<topic>-value` if it is not yet.
    #[arg(
        long = "value-schema",
        value_name = "FILE",
        conflicts_with = "value_schema_id"
    )]
    pub value_schema: Option<std::path::PathBuf>,
    /// With `-s value=…`: the registered schema id values are written with.
    #[arg(long = "value-schema-id", value_name = "ID")]
    pub value_schema_id: Option<u32>,
    /// With `-s key=…`: the schema keys are written with.
    #[arg(
        long = "key-schema",
        value_name = "FILE",
        conflicts_with = "key_schema_id"
    )]
    pub key_schema: Option<std::path::PathBuf>,
    /// With `-s key=…`: the registered schema id keys are written with.
    #[arg(long = "key-schema-id", value_name = "ID")]
    pub key_schema_id: Option<u32>,
    /// With `-s value=protobuf`: the message of the schema values are (full name; default: the
    /// file's first).
    #[arg(long = "value-message", value_name = "NAME")]
    pub value_message: Option<String>,
    /// With `-s key=protobuf`: the message of the schema keys are.
    #[arg(long = "key-message", value_name = "NAME")]
    pub key_message: Option<String>,
}

/// What was sent.
struct Totals {
    messages: u64,
    bytes: u64,
    deliveries: Vec<BatchDelivery>,
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    let mut pairs = args.conn.pairs()?;
    let serdes = args.serdes.parse(&mut pairs)?;
    let mut config = ProducerConfig::from_pairs(
        pairs.into_iter().chain(
            args.compression
                .map(|c| ("compression.type".into(), c.to_string())),
        ),
    )
    .map_err(|e| format!("configuration: {e}"))?;
    config.client.client_id = "spate-produce".into();
    let delimiter = unescape(&args.delimiter);
    if delimiter.is_empty() {
        return Err("-D: the delimiter is empty".into());
    }
    let key_delimiter = args.key_delimiter.as_deref().map(unescape);
    let headers: Vec<(String, Vec<u8>)> = args
        .headers
        .iter()
        .map(|h| {
            h.split_once('=')
                .map(|(k, v)| (k.to_owned(), v.as_bytes().to_vec()))
                .ok_or_else(|| format!("-H {h}: expected key=value"))
        })
        .collect::<Result<_, _>>()?;
    args.conn.block_on(async {
        let started = Instant::now();
        let key_source = SchemaSource {
            file: args.key_schema.as_deref(),
            id: args.key_schema_id,
            message: args.key_message.as_deref(),
        };
        let value_source = SchemaSource {
            file: args.value_schema.as_deref(),
            id: args.value_schema_id,
            message: args.value_message.as_deref(),
        };
        let key_serde = serdes.serializer(Part::Key, key_source).await?;
        let value_serde = serdes.serializer(Part::Value, value_source).await?;
        let producer = Producer::new(config).await.map_err(|e| e.to_string())?;
        let sender = Sender {
            producer: &producer,
            args,
            key_delimiter: key_delimiter.as_deref(),
            headers: &headers,
            key_serde,
            value_serde,
        };
        let mut totals = Totals {
            messages: 0,
            bytes: 0,
            deliveries: Vec::new(),
        };
        if args.files.is_empty() {
            sender
                .send_stream(std::io::stdin().lock(), &delimiter, &mut totals)
                .await?;
        } else {
            for path in &args.files {
                let mut file =
                    std::fs::File::open(path).map_err(|e| format!("{}: {e}", path.display()))?;
                if args.lines {
                    sender.send_stream(file, &delimiter, &mut totals).await?;
                } else {
                    let mut whole = Vec::new();
                    file.read_to_end(&mut whole)
                        .map_err(|e| format!("{}: {e}", path.display()))?;
                    sender.send_messages(&[&whole[..]], &mut totals).await?;
                }
            }
        }
        producer.flush().await.map_err(|e| e.to_string())?;
        let mut failed = None;
        for delivery in totals.deliveries.drain(..) {
            if let Err(e) = delivery.wait().await {
                failed.get_or_insert(e);
            }
        }
        producer.close().await.map_err(|e| e.to_string())?;
        let secs = started.elapsed().as_secs_f64();
        eprintln!(
            "% {} messages ({} bytes) to {} in {:.3} s: {:.0} msg/s, {:.1} MB/s",
            totals.messages,
            totals.bytes,
            args.topic,
            secs,
            totals.messages as f64 / secs,
            totals.bytes as f64 / secs / 1e6
        );
        match failed {
            Some(e) => Err(format!("not every message was delivered: {e}")),
            None => Ok(ExitCode::SUCCESS),
        }
    })
}

struct Sender<'a> {
    producer: &'a Producer,
    args: &'a Args,
    key_delimiter: Option<&'a [u8]>,
    headers: &'a [(String, Vec<u8>)],
    key_serde: Option<Encoder>,
    value_serde: Option<Encoder>,
}

impl Sender<'_> {
    /// Reads `input` a chunk at a time and sends every complete message in it; a message cut by
    /// the chunk's end is carried to the next one.
    async fn send_stream(
        &self,
        mut input: impl Read,
        delimiter: &[u8],
        totals: &mut Totals,
    ) -> Result<(), String> {
        let mut buf = vec![0u8; CHUNK];
        let mut filled = 0;
        loop {
            if filled == buf.len() {
                // One message longer than the buffer: grow it.
                buf.resize(buf.len() * 2, 0);
            }
            let n = input
                .read(&mut buf[filled..])
                .map_err(|e| format!("reading input: {e}"))?;
            filled += n;
            let eof = n == 0;
            let data = &buf[..filled];
            let complete = if eof {
                filled
            } else {
                match rfind(data, delimiter) {
                    Some(at) => at + delimiter.len(),
                    None => continue,
                }
            };
            let messages: Vec<&[u8]> = split(&data[..complete], delimiter).collect();
            self.send_messages(&messages, totals).await?;
            buf.copy_within(complete..filled, 0);
            filled -= complete;
            if eof {
                return Ok(());
            }
        }
    }

    /// `bytes` (JSON) encoded with `serde`, if both are there; `n` numbers the message in
    /// its chunk for errors.
    async fn encode(
        &self,
        serde: Option<&Encoder>,
        part: Part,
        bytes: Option<&[u8]>,
        n: usize,
    ) -> Result<Option<Vec<u8>>, String> {
        let (Some(serde), Some(bytes)) = (serde, bytes) else {
            return Ok(None);
        };
        let line = String::from_utf8_lossy(&bytes[..bytes.len().min(60)]).into_owned();
        let text = std::str::from_utf8(bytes)
            .map_err(|_| format!("message {} (`{line}`): not UTF-8 JSON", n + 1))?;
        serde
            .serialize_json(&self.args.topic, part, text)
            .await
            .map(Some)
            .map_err(|e| format!("message `{line}`: {e}"))
    }

    async fn send_messages(&self, messages: &[&[u8]], totals: &mut Totals) -> Result<(), String> {
        let headers: Vec<(&str, Option<&[u8]>)> = self
            .headers
            .iter()
            .map(|(k, v)| (k.as_str(), Some(&v[..])))
            .collect();
        // With -s: each key and value is JSON, encoded with its schema.
        let mut encoded: Vec<Encoded> = Vec::new();
        if self.key_serde.is_some() || self.value_serde.is_some() {
            for (n, m) in messages.iter().enumerate() {
                let (key, value) = split_key(m, self.key_delimiter);
                let k = self
                    .encode(self.key_serde.as_ref(), Part::Key, key, n)
                    .await?;
                let v = self
                    .encode(self.value_serde.as_ref(), Part::Value, Some(value), n)
                    .await?;
                encoded.push((k, v));
            }
        }
        let records = messages.iter().enumerate().map(|(n, m)| {
            let (mut key, mut value) = split_key(m, self.key_delimiter);
            if let Some((k, v)) = encoded.get(n) {
                if let Some(k) = k {
                    key = Some(k);
                }
                if let Some(v) = v {
                    value = v;
                }
            }
            Record {
                topic: &self.args.topic,
                partition: self.args.partition,
                key,
                value: Some(value),
                headers: headers.clone(),
                timestamp: None,
            }
        });
        totals.messages += messages.len() as u64;
        totals.bytes += messages.iter().map(|m| m.len() as u64).sum::<u64>();
        let delivery = self
            .producer
            .send_batch(&self.args.topic, records)
            .await
            .map_err(|e| e.to_string())?;
        totals.deliveries.push(delivery);
        Ok(())
    }
}

/// Messages separated by `delimiter`; a trailing delimiter ends the last one (no empty message
/// after it), as in kcat.
fn split<'a>(data: &'a [u8], delimiter: &'a [u8]) -> impl Iterator<Item = &'a [u8]> + 'a {
    let mut rest = data;
    std::iter::from_fn(move || {
        if rest.is_empty() {
            return None;
        }
        match find(rest, delimiter) {
            Some(at) => {
                let message = &rest[..at];
                rest = &rest[at + delimiter.len()..];
                Some(message)
            }
            None => Some(std::mem::take(&mut rest)),
        }
    })
}

fn find(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [b] => memchr::memchr(*b, haystack),
        _ => memchr::memmem::find(haystack, needle),
    }
}

fn rfind(haystack: &[u8], needle: &[u8]) -> Option<usize> {
    match needle {
        [b] => memchr::memrchr(*b, haystack),
        _ => memchr::memmem::rfind(haystack, needle),
    }
}

/// `\n`, `\t`, `\r`, `\0` and `\\` as kcat reads them in delimiters.
fn unescape(s: &str) -> Vec<u8> {
    let mut out = Vec::with_capacity(s.len());
    let mut chars = s.bytes();
    while let Some(b) = chars.next() {
        if b != b'\\' {
            out.push(b);
            continue;
        }
        match chars.next() {
            Some(b'n') => out.push(b'\n'),
            Some(b't') => out.push(b'\t'),
            Some(b'r') => out.push(b'\r'),
            Some(b'0') => out.push(0),
            Some(other) => out.push(other),
            None => out.push(b'\\'),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_split_like_kcat() {
        let got: Vec<&[u8]> = split(b"a\nbb\n\nc\n", b"\n").collect();
        assert_eq!(got, [&b"a"[..], b"bb", b"", b"c"]);
        let got: Vec<&[u8]> = split(b"a::b", b"::").collect();
        assert_eq!(got, [&b"a"[..], b"b"]);
        assert_eq!(unescape("\\t|\\n"), b"\t|\n");
        assert_eq!(rfind(b"a\nb\nc", b"\n"), Some(3));
    }
}
