//! `spate group list|describe|reset-offsets|delete-offsets|delete`, as Kafka's
//! `kafka-consumer-groups.sh`.

use std::collections::BTreeMap;

use spate::cluster::{Client, OffsetSpec};
use spate::consumer::group::admin::{self, PartitionLag};

use crate::common::ConnArgs;

#[derive(clap::Subcommand)]
pub enum Action {
    /// List the cluster's groups, one per line (with --state: and their state).
    List {
        #[command(flatten)]
        conn: ConnArgs,
        /// Print each group's state too.
        #[arg(long)]
        state: bool,
    },
    /// Per partition of a group: committed offset, log end offset, lag and owner.
    Describe {
        #[command(flatten)]
        conn: ConnArgs,
        /// The group.
        #[arg(short = 'G', long = "group", required = true)]
        group: String,
    },
    /// Move a group's committed offsets (the group must have no members). A dry run that
    /// prints the new offsets unless --execute.
    ResetOffsets {
        #[command(flatten)]
        conn: ConnArgs,
        /// The group.
        #[arg(short = 'G', long = "group", required = true)]
        group: String,
        /// `TOPIC` or `TOPIC:P,P,...` (repeatable).
        #[arg(short = 't', long = "topic")]
        topics: Vec<String>,
        /// Every topic the group has committed offsets for.
        #[arg(long = "all-topics")]
        all_topics: bool,
        /// To the log start.
        #[arg(long = "to-earliest")]
        to_earliest: bool,
        /// To the log end.
        #[arg(long = "to-latest")]
        to_latest: bool,
        /// To this offset (kept within the log).
        #[arg(long = "to-offset", allow_negative_numbers = true)]
        to_offset: Option<i64>,
        /// To the first offset at or after this time, `YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM]`
        /// (UTC without a zone); the log end if none is.
        #[arg(long = "to-datetime")]
        to_datetime: Option<String>,
        /// By this many from the committed offset (kept within the log).
        #[arg(long = "shift-by", allow_negative_numbers = true)]
        shift_by: Option<i64>,
        /// Commit the new offsets (without it, only print them).
        #[arg(long)]
        execute: bool,
    },
    /// Delete a group's committed offsets for topics it does not consume
    /// (kafka-consumer-groups.sh --delete-offsets).
    DeleteOffsets {
        #[command(flatten)]
        conn: ConnArgs,
        /// The group.
        #[arg(short = 'G', long = "group", required = true)]
        group: String,
        /// `TOPIC` or `TOPIC:P,P,...` (repeatable).
        #[arg(short = 't', long = "topic", required = true)]
        topics: Vec<String>,
    },
    /// Delete groups (without members) and their committed offsets.
    Delete {
        #[command(flatten)]
        conn: ConnArgs,
        /// The group (repeatable).
        #[arg(short = 'G', long = "group", required = true)]
        groups: Vec<String>,
    },
}

/// Where a reset moves each partition.
#[derive(Clone, Copy)]
enum Target {
    Earliest,
    Latest,
    Offset(i64),
    Time(i64),
    Shift(i64),
}

pub fn run(action: &Action) -> Result<(), String> {
    match action {
        Action::List { conn, state } => {
            let groups = conn.run(|client| async move {
                admin::list_groups(&client).await.map_err(|e| e.to_string())
            })?;
            if *state {
                println!("{:<40} STATE", "GROUP");
            }
            for g in groups {
                if *state {
                    println!("{:<40} {}", g.group_id, g.state.as_deref().unwrap_or("-"));
                } else {
                    println!("{}", g.group_id);
                }
            }
        }
        Action::Describe { conn, group } => {
            let (members, rows) = conn.run(|client| async move {
                let described = admin::describe_group(&client, group)
                    .await
                    .map_err(|e| e.to_string())?;
                let rows = admin::describe_lag(&client, group)
                    .await
                    .map_err(|e| e.to_string())?;
                Ok((described.members.len(), rows))
            })?;
            if members == 0 {
                eprintln!("Consumer group '{group}' has no active members.");
            }
            print_lag(group, &rows);
        }
        Action::ResetOffsets {
            conn,
            group,
            topics,
            all_topics,
            to_earliest,
            to_latest,
            to_offset,
            to_datetime,
            shift_by,
            execute,
        } => {
            let target = target(
                *to_earliest,
                *to_latest,
                *to_offset,
                to_datetime.as_deref(),
                *shift_by,
            )?;
            if topics.is_empty() != *all_topics {
                return Err("reset-offsets needs --topic or --all-topics (one of them)".into());
            }
            let moved =
                conn.run(
                    |client| async move { reset(&client, group, topics, target, *execute).await },
                )?;
            println!(
                "{:<30} {:<30} {:<10} NEW-OFFSET",
                "GROUP", "TOPIC", "PARTITION"
            );
            for ((topic, partition), offset) in moved {
                println!("{group:<30} {topic:<30} {partition:<10} {offset}");
            }
            if !execute {
                eprintln!("(a dry run: nothing was committed; add --execute to commit)");
            }
        }
        Action::DeleteOffsets {
            conn,
            group,
            topics,
        } => {
            let results = conn.run(|client| async move {
                let wanted = topic_partitions(&client, topics).await?;
                let tps: Vec<(String, i32)> = wanted
                    .into_iter()
                    .flat_map(|(t, ps)| ps.into_iter().map(move |p| (t.clone(), p)))
                    .collect();
                admin::delete_offsets(&client, group, &tps)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            let failed = results.iter().filter(|(_, r)| r.is_err()).count();
            if failed == 0 {
                println!("Request succeed for deleting offsets from group {group}.");
            } else {
                println!("Request failed for deleting some offsets from group {group}.");
            }
            println!();
            println!("{:<30} {:<15} STATUS", "TOPIC", "PARTITION");
            for ((topic, partition), result) in &results {
                let status = match result {
                    Ok(()) => "Successful".to_owned(),
                    Err(e) => format!("Error: {}", e.code().map_or(e.to_string(), |c| c.name())),
                };
                println!("{topic:<30} {partition:<15} {status}");
            }
            if failed > 0 {
                return Err(format!("{failed} partition(s) kept their offsets"));
            }
        }
        Action::Delete { conn, groups } => {
            let names: Vec<&str> = groups.iter().map(String::as_str).collect();
            let results =
                conn.run(|client| async move { Ok(admin::delete_groups(&client, &names).await) })?;
            let mut failed = Vec::new();
            for (group, result) in results {
                match result {
                    Ok(()) => println!("Deletion of consumer group '{group}' was successful."),
                    Err(e) => failed.push(format!("{group}: {e}")),
                }
            }
            if !failed.is_empty() {
                return Err(format!("deletion failed: {}", failed.join("; ")));
            }
        }
    }
    Ok(())
}

/// `TOPIC` (every partition) or `TOPIC:P,P,...`, as kafka-consumer-groups.sh's `--topic`.
async fn topic_partitions(
    client: &Client,
    specs: &[String],
) -> Result<BTreeMap<String, Vec<i32>>, String> {
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    for spec in specs {
        match spec.split_once(':') {
            Some((t, ps)) => {
                let ps: Vec<i32> = ps
                    .split(',')
                    .map(|p| {
                        p.trim()
                            .parse()
                            .map_err(|_| format!("--topic {spec}: a bad partition"))
                    })
                    .collect::<Result<_, _>>()?;
                wanted.entry(t.to_owned()).or_default().extend(ps);
            }
            None => {
                let count = client
                    .partition_count(spec)
                    .await
                    .map_err(|e| e.to_string())?;
                wanted.entry(spec.clone()).or_default().extend(0..count);
            }
        }
    }
    Ok(wanted)
}

fn print_lag(group: &str, rows: &[PartitionLag]) {
    println!(
        "{:<20} {:<30} {:<10} {:<15} {:<15} {:<10} {:<40} {:<15} CLIENT-ID",
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "CONSUMER-ID",
        "HOST",
    );
    let dash = |v: Option<i64>| v.map_or("-".to_owned(), |v| v.to_string());
    for r in rows {
        let (id, host, client) = match &r.member {
            Some(m) => (m.member_id.as_str(), m.host.as_str(), m.client_id.as_str()),
            None => ("-", "-", "-"),
        };
        println!(
            "{group:<20} {:<30} {:<10} {:<15} {:<15} {:<10} {id:<40} {host:<15} {client}",
            r.topic,
            r.partition,
            dash(r.committed),
            r.log_end,
            dash(r.lag),
        );
    }
}

fn target(
    earliest: bool,
    latest: bool,
    offset: Option<i64>,
    datetime: Option<&str>,
    shift: Option<i64>,
) -> Result<Target, String> {
    let mut chosen = Vec::new();
    if earliest {
        chosen.push(Target::Earliest);
    }
    if latest {
        chosen.push(Target::Latest);
    }
    if let Some(o) = offset {
        chosen.push(Target::Offset(o));
    }
    if let Some(d) = datetime {
        chosen.push(Target::Time(
            parse_datetime(d).map_err(|e| format!("--to-datetime {d}: {e}"))?,
        ));
    }
    if let Some(s) = shift {
        chosen.push(Target::Shift(s));
    }
    match chosen[..] {
        [one] => Ok(one),
        _ => Err(
            "reset-offsets needs one of --to-earliest, --to-latest, --to-offset, \
                  --to-datetime, --shift-by"
                .into(),
        ),
    }
}

/// The new offset of every partition asked for (committed with `execute`), as Kafka's
/// `ConsumerGroupCommand.resetOffsets`: only while the group has no members; offsets kept
/// within the log start and end.
async fn reset(
    client: &Client,
    group: &str,
    topics: &[String],
    target: Target,
    execute: bool,
) -> Result<BTreeMap<(String, i32), i64>, String> {
    let err = |e: spate::Error| e.to_string();
    let described = admin::describe_group(client, group).await.map_err(err)?;
    if !matches!(described.state.as_str(), "Empty" | "Dead") {
        return Err(format!(
            "Assignments can only be reset if the group '{group}' is inactive, but the current \
             state is {}.",
            described.state
        ));
    }
    let committed = admin::committed_offsets(client, group).await.map_err(err)?;
    let mut wanted: BTreeMap<String, Vec<i32>> = BTreeMap::new();
    if topics.is_empty() {
        for (t, p) in committed.keys() {
            wanted.entry(t.clone()).or_default().push(*p);
        }
    }
    for (t, ps) in topic_partitions(client, topics).await? {
        wanted.entry(t).or_default().extend(ps);
    }
    let mut moved = BTreeMap::new();
    for (topic, partitions) in wanted {
        let (t, ps) = (&topic, &partitions);
        let offsets = |spec| async move {
            let listed = client.list_offsets(t, ps, spec).await.map_err(err)?;
            Ok::<BTreeMap<i32, i64>, String>(
                listed.iter().map(|l| (l.partition, l.offset)).collect(),
            )
        };
        let (start, end) = (
            offsets(OffsetSpec::Earliest).await?,
            offsets(OffsetSpec::Latest).await?,
        );
        let at_time = match target {
            Target::Time(ms) => Some(offsets(OffsetSpec::Timestamp(ms)).await?),
            _ => None,
        };
        for &p in &partitions {
            let (lo, hi) = (start[&p], end[&p]);
            let new = match target {
                Target::Earliest => lo,
                Target::Latest => hi,
                Target::Offset(o) => o.clamp(lo, hi),
                // No record at or after the time: the log end.
                Target::Time(_) => match at_time.as_ref().and_then(|t| t.get(&p)) {
                    Some(&o) if o >= 0 => o,
                    _ => hi,
                },
                Target::Shift(by) => {
                    let current = committed.get(&(topic.clone(), p)).ok_or_else(|| {
                        format!(
                            "cannot shift the offset of {topic}-{p}: the group has no committed \
                             offset for it"
                        )
                    })?;
                    current.saturating_add(by).clamp(lo, hi)
                }
            };
            moved.insert((topic.clone(), p), new);
        }
    }
    if execute {
        let offsets: Vec<((String, i32), i64)> =
            moved.iter().map(|(tp, o)| (tp.clone(), *o)).collect();
        admin::alter_offsets(client, group, &offsets)
            .await
            .map_err(err)?;
    }
    Ok(moved)
}

/// `YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM]` as epoch milliseconds (UTC without a zone).
fn parse_datetime(s: &str) -> Result<i64, String> {
    let bad = || "expected YYYY-MM-DDTHH:mm:SS[.sss][Z|±HH:MM]".to_owned();
    let (date, rest) = s.split_once('T').ok_or_else(bad)?;
    let (zone_at, offset_min) = if let Some(r) = rest.strip_suffix('Z') {
        (r.len(), 0)
    } else if let Some(i) = rest.rfind(['+', '-']) {
        let (h, m) = rest[i + 1..].split_once(':').ok_or_else(bad)?;
        let minutes: i64 =
            h.parse::<i64>().map_err(|_| bad())? * 60 + m.parse::<i64>().map_err(|_| bad())?;
        (
            i,
            if &rest[i..=i] == "-" {
                -minutes
            } else {
                minutes
            },
        )
    } else {
        (rest.len(), 0)
    };
    let time = &rest[..zone_at];
    let num = |v: &str| v.parse::<i64>().map_err(|_| bad());
    let d: Vec<&str> = date.split('-').collect();
    let [y, mo, da] = d[..] else {
        return Err(bad());
    };
    let (hms, millis) = match time.split_once('.') {
        Some((hms, ms)) => (hms, num(&format!("{ms:0<3}")[..3])?),
        None => (time, 0),
    };
    let t: Vec<&str> = hms.split(':').collect();
    let [h, mi, se] = t[..] else {
        return Err(bad());
    };
    let (y, mo, da, h, mi, se) = (num(y)?, num(mo)?, num(da)?, num(h)?, num(mi)?, num(se)?);
    if !(1..=12).contains(&mo) || !(1..=31).contains(&da) || h > 23 || mi > 59 || se > 60 {
        return Err(bad());
    }
    // Days from the civil date (Howard Hinnant's algorithm).
    let y = if mo <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let doy = (153 * ((mo + 9) % 12) + 2) / 5 + da - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    let days = era * 146_097 + doe - 719_468;
    Ok(((days * 86_400 + h * 3_600 + mi * 60 + se) - offset_min * 60) * 1_000 + millis)
}

#[cfg(test)]
mod tests {
    use super::parse_datetime;

    #[test]
    fn datetimes_as_kafka_consumer_groups_takes_them() {
        assert_eq!(parse_datetime("1970-01-01T00:00:00"), Ok(0));
        assert_eq!(
            parse_datetime("2024-02-29T12:34:56.789Z"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime("2024-02-29T13:34:56.789+01:00"),
            Ok(1_709_210_096_789)
        );
        assert_eq!(
            parse_datetime("2024-02-29T11:04:56.7-01:30"),
            Ok(1_709_210_096_700)
        );
        assert!(parse_datetime("2024-13-01T00:00:00").is_err());
        assert!(parse_datetime("yesterday").is_err());
    }
}
