//! `spate consume`: records of a topic to stdout, like `kcat -C`.

use std::collections::{BTreeMap, HashSet};
use std::io::{self, BufWriter, Write};
use std::process::ExitCode;

use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};

use crate::common::{self, ConnArgs};
use crate::format::{Fields, Format};
use crate::serdes::show;
use spate::formats::registry::Part;

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Topic to read.
    #[arg(short = 't', long = "topic")]
    pub topic: String,
    /// Read only this partition (repeatable; default: every partition).
    #[arg(short = 'p', long = "partition")]
    pub partitions: Vec<i32>,
    /// Where to start: beginning, end, an offset, -N (N before the end), or s@TIMESTAMP_MS.
    #[arg(
        short = 'o',
        long = "offset",
        default_value = "beginning",
        allow_hyphen_values = true
    )]
    pub offset: String,
    /// Stop after this many records.
    #[arg(short = 'c', long = "count")]
    pub count: Option<u64>,
    /// Exit once every partition has been read to its end.
    #[arg(short = 'e')]
    pub exit_at_end: bool,
    /// Output format, with kcat's tokens: %t %p %o %T %k %K %s %S %h, escapes \n \t \r \\.
    #[arg(short = 'f', long = "format", default_value = "%s\\n")]
    pub format: String,
    /// Print the key and DELIM before each value (kcat's -K; ignored with -f).
    #[arg(short = 'K', value_name = "DELIM")]
    pub key_delimiter: Option<String>,
    /// Join this consumer group and read the partitions it assigns (committing positions as
    /// it goes) instead of every partition.
    #[arg(short = 'G', value_name = "GROUP")]
    pub group: Option<String>,
    #[command(flatten)]
    pub serdes: crate::serdes::SerdesArgs,
}

fn parse_offset(s: &str) -> Result<Offset, String> {
    match s {
        "beginning" | "earliest" => Ok(Offset::Beginning),
        "end" | "latest" => Ok(Offset::End),
        _ => {
            if let Some(ts) = s.strip_prefix("s@") {
                return ts
                    .parse()
                    .map(Offset::Timestamp)
                    .map_err(|_| format!("-o {s}: expected s@MILLISECONDS"));
            }
            match s.parse::<i64>() {
                Ok(n) if n < 0 => Ok(Offset::FromEnd(-n)),
                Ok(n) => Ok(Offset::At(n)),
                Err(_) => Err(format!(
                    "-o {s}: expected beginning, end, an offset, -N or s@TIMESTAMP"
                )),
            }
        }
    }
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    if args.group.is_some() && !args.partitions.is_empty() {
        return Err("-G and -p: a group assigns the partitions; give one or the other".into());
    }
    let start = parse_offset(&args.offset)?;
    let format = if args.format == "%s\\n" {
        match &args.key_delimiter {
            Some(d) => Format::parse(&format!("%k{d}%s\\n")),
            None => Format::parse(&args.format),
        }
    } else {
        Format::parse(&args.format)
    }
    .map_err(|e| format!("-f: {e}"))?;
    let mut pairs = args.conn.pairs()?;
    let statistics = common::take_statistics_interval(&mut pairs)?;
    let (key_serde, value_serde) = args.serdes.parse(&mut pairs)?.deserializers();
    if let Some(group) = &args.group {
        pairs.push(("group.id".into(), group.clone()));
        // Where to start when the group has no committed offset: -o.
        let reset = match start {
            Offset::End => "latest",
            _ => "earliest",
        };
        pairs.push(("auto.offset.reset".into(), reset.into()));
    }
    let mut config =
        ConsumerConfig::from_pairs(pairs).map_err(|e| format!("configuration: {e}"))?;
    config.client.client_id = "spate-consume".into();
    // With a group, this command commits itself, and only what it has written out: the
    // consumer's auto-commit would commit positions of records still in the output buffer,
    // which a killed process never prints (at-least-once would not hold).
    let commits = Commits {
        on: args.group.is_some() && config.enable_auto_commit,
        interval: config.auto_commit_interval,
        last: std::time::Instant::now(),
        upto: BTreeMap::new(),
    };
    config.enable_auto_commit = false;
    args.conn.block_on(async {
        // SIGINT or SIGTERM: stop reading, commit, leave the group, exit 0.
        let stop = common::Signals::listen()?.stop_requested();
        tokio::pin!(stop);
        let mut commits = commits;
        let mut consumer = Consumer::new(config).await.map_err(|e| e.to_string())?;
        let _statistics = common::print_statistics(consumer.client(), statistics);
        let topic = args.topic.as_str();
        // Partitions being read; with -G, whatever the group assigns.
        let mut reading: HashSet<i32> = HashSet::new();
        if args.group.is_some() {
            consumer.subscribe(&[topic]).map_err(|e| e.to_string())?;
        } else {
            let partitions: Vec<i32> = if args.partitions.is_empty() {
                let meta = consumer
                    .client()
                    .topic_metadata(topic)
                    .await
                    .map_err(|e| e.to_string())?;
                meta.partitions.iter().map(|p| p.partition).collect()
            } else {
                args.partitions.clone()
            };
            let assignment: Vec<(&str, i32, Offset)> =
                partitions.iter().map(|p| (topic, *p, start)).collect();
            consumer.assign(&assignment).map_err(|e| e.to_string())?;
            reading.extend(partitions);
        }
        let stdout = io::stdout();
        let mut out = BufWriter::with_capacity(1 << 16, stdout.lock());
        let mut printed = 0u64;
        let mut at_end = HashSet::new();
        let limit = args.count.unwrap_or(u64::MAX);
        let done = |reading: &HashSet<i32>, at_end: &HashSet<i32>| {
            !reading.is_empty() && reading.iter().all(|p| at_end.contains(p))
        };
        while printed < limit && !(args.exit_at_end && done(&reading, &at_end)) {
            let event = tokio::select! {
                () = &mut stop => break,
                event = consumer.next() => event,
            };
            match event.map_err(|e| e.to_string())? {
                Event::Batch(b) => {
                    at_end.remove(&b.partition());
                    let batch = b.batch();
                    for i in 0..batch.len() {
                        if printed == limit {
                            break;
                        }
                        let at = |part: &str, e: String| {
                            format!(
                                "{topic}-{} offset {}: {part}: {e}",
                                b.partition(),
                                batch.offset(i)
                            )
                        };
                        let key = show(
                            key_serde.as_ref(),
                            batch.key(i),
                            batch.headers(i),
                            Part::Key,
                        )
                        .await
                        .map_err(|e| at("key", e))?;
                        let value = show(
                            value_serde.as_ref(),
                            batch.value(i),
                            batch.headers(i),
                            Part::Value,
                        )
                        .await
                        .map_err(|e| at("value", e))?;
                        format
                            .write(
                                &mut out,
                                &Fields {
                                    topic: Some(topic),
                                    partition: Some(b.partition()),
                                    offset: batch.offset(i),
                                    timestamp: batch.timestamp(i),
                                    key: key.as_deref().or(batch.key(i)),
                                    value: value.as_deref().or(batch.value(i)),
                                    headers: batch.headers(i),
                                },
                            )
                            .map_err(|e| format!("writing output: {e}"))?;
                        commits.upto.insert(b.partition(), batch.offset(i) + 1);
                        printed += 1;
                    }
                    if commits.due() {
                        flush(&mut out)?;
                        commits.commit(&consumer, topic, None).await;
                    }
                }
                Event::EndOfPartition { partition, .. } => {
                    at_end.insert(partition);
                    // Let a pipe reader see everything up to here.
                    flush(&mut out)?;
                }
                Event::Assigned(tps) => reading.extend(tps.iter().map(|(_, p)| *p)),
                Event::Revoked(tps) => {
                    // Written out, then committed, before the partitions go to another member
                    // (the group waits for this: the member is still in its generation).
                    flush(&mut out)?;
                    let revoked: Vec<i32> = tps.iter().map(|(_, p)| *p).collect();
                    commits.commit(&consumer, topic, Some(&revoked)).await;
                    for p in revoked {
                        reading.remove(&p);
                        at_end.remove(&p);
                    }
                }
                Event::Lost(tps) => {
                    for (_, p) in tps {
                        reading.remove(&p);
                        at_end.remove(&p);
                        commits.upto.remove(&p);
                    }
                }
                _ => {}
            }
        }
        flush(&mut out)?;
        commits.commit(&consumer, topic, None).await;
        consumer.close().await.map_err(|e| e.to_string())?;
        Ok(ExitCode::SUCCESS)
    })
}

fn flush(out: &mut impl Write) -> Result<(), String> {
    out.flush().map_err(|e| format!("writing output: {e}"))
}

/// What `spate consume -G` has written out and not yet committed.
struct Commits {
    on: bool,
    interval: std::time::Duration,
    last: std::time::Instant,
    /// Per partition, the offset after the last record written.
    upto: BTreeMap<i32, i64>,
}

impl Commits {
    fn due(&self) -> bool {
        self.on && self.last.elapsed() >= self.interval
    }

    /// Commits what was written for `only` these partitions (all if `None`); a failure (a
    /// rebalance under way) is reported, and the records are read again by their next owner.
    async fn commit(&mut self, consumer: &Consumer, topic: &str, only: Option<&[i32]>) {
        self.last = std::time::Instant::now();
        if !self.on {
            return;
        }
        let offsets: Vec<(String, i32, i64)> = self
            .upto
            .iter()
            .filter(|(p, _)| only.is_none_or(|o| o.contains(p)))
            .map(|(p, o)| (topic.to_owned(), *p, *o))
            .collect();
        if !offsets.is_empty() {
            if let Err(e) = consumer.commit_offsets(&offsets).await {
                tracing::warn!(error = %e, "commit failed");
            }
        }
        // Partitions let go of are not committed again later (their next owner's commits
        // must not be overwritten), whether or not this one went through.
        if let Some(only) = only {
            self.upto.retain(|p, _| !only.contains(p));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn offsets_parse_like_kcat() {
        assert_eq!(parse_offset("beginning"), Ok(Offset::Beginning));
        assert_eq!(parse_offset("end"), Ok(Offset::End));
        assert_eq!(parse_offset("42"), Ok(Offset::At(42)));
        assert_eq!(parse_offset("-10"), Ok(Offset::FromEnd(10)));
        assert_eq!(
            parse_offset("s@1700000000000"),
            Ok(Offset::Timestamp(1_700_000_000_000))
        );
        assert!(parse_offset("stored").unwrap_err().contains("-o stored"));
    }
}
