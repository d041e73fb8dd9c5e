//! `spate pipe`: read a topic, transform every record, write another topic.

use std::process::ExitCode;
use std::time::{Duration, Instant};

use spate::consumer::ConsumerConfig;
use spate::pipeline::event_time::{
    parse_aggregate, parse_duration, parse_event_time, parse_lateness, parse_window, KeySource,
};
use spate::pipeline::table::{self, JoinMode, Table};
use spate::pipeline::{
    ops, Chain, Emit, Guarantee, JoinType, Partitioning, Pipeline, StreamJoin, Windowed,
};
use spate::producer::ProducerConfig;

use crate::common::{self, ConnArgs};

#[derive(clap::Args, Debug)]
pub struct Args {
    #[command(flatten)]
    pub conn: ConnArgs,
    /// Input topic (repeatable).
    #[arg(long = "from", required = true)]
    pub from: Vec<String>,
    /// Output topic.
    #[arg(long = "to")]
    pub to: String,
    /// Consumer group: progress is committed and a restart resumes from it. Without a group,
    /// every input partition is read from the beginning and nothing is committed.
    #[arg(short = 'G', long = "group")]
    pub group: Option<String>,
    /// A map over values: `uppercase`, or `json:FIELD` (the value becomes that field).
    #[arg(long = "map")]
    pub map: Vec<String>,
    /// Keep only records whose value contains these bytes.
    #[arg(long = "filter-contains")]
    pub filter_contains: Option<String>,
    /// Key records by this JSON field of their value, and partition by key (with --window:
    /// group by it).
    #[arg(long = "key-by-json")]
    pub key_by_json: Option<String>,
    /// Join each record with a table read from this topic (the latest value per key, kept up
    /// to date while the pipe runs; every member reads all of it, as Kafka Streams'
    /// GlobalKTable): the table's value goes into the record's JSON value as field
    /// --join-as. Records whose key is not in the table are dropped (see --left-join).
    #[arg(long = "join-table")]
    pub join_table: Option<String>,
    /// With --join-table or --join-stream: the record's join key, `key` (the record key,
    /// default) or `json:FIELD`.
    #[arg(long = "join-on")]
    pub join_on: Option<String>,
    /// With --join-table: the field that takes the table's value (default: the table topic's
    /// name).
    #[arg(long = "join-as")]
    pub join_as: Option<String>,
    /// With --join-table: keep records whose key is not in the table, with null. With
    /// --join-stream: also emit each left record that joined nothing, with null, once no right
    /// record can still join it.
    #[arg(long = "left-join")]
    pub left_join: bool,
    /// With --join-stream: emit each record of either side that joined nothing.
    #[arg(long = "outer-join")]
    pub outer_join: bool,
    /// Join the input (--from, the left side, one topic) with the stream of this topic (the
    /// right side) within --join-window: each pair of records with the same join key
    /// (--join-on) and event times (--event-time) at most the window apart gives one record,
    /// keyed by the join key, with the JSON value {"key": K, "left": L, "right": R,
    /// "left_time": MS, "right_time": MS}. Both topics must be partitioned by the join key,
    /// with as many partitions each. Buffered records live in the compacted topic
    /// `<group>-join-changelog` (needs -G); --allowed-lateness and --late-to apply per side.
    #[arg(long = "join-stream")]
    pub join_stream: Option<String>,
    /// With --join-stream: how far apart two records' event times may be (like 5s).
    #[arg(long = "join-window")]
    pub join_window: Option<String>,
    /// With --join-table: the most memory the table's keys and values may take (default 1 GiB);
    /// a bigger table stops the pipe with an error.
    #[arg(long = "table-max-bytes", default_value_t = 1 << 30)]
    pub table_max_bytes: usize,
    /// Aggregate in event-time windows: `tumbling:SIZE`, `hopping:SIZE:ADVANCE` or
    /// `session:GAP` (durations like 250ms, 60s, 5m). Output: one record per closed window,
    /// keyed by the grouping key (--key-by-json, else the record key), with the JSON value
    /// {"key": K, "start": MS, "end": MS, "value": N}. The state lives in the compacted topic
    /// `<group>-windows-changelog` (needs -G).
    #[arg(long = "window")]
    pub window: Option<String>,
    /// With --window: `count` (default), `sum:FIELD`, `min:FIELD`, `max:FIELD` or `avg:FIELD`
    /// (numeric JSON fields of the value).
    #[arg(long = "aggregate")]
    pub aggregate: Option<String>,
    /// With --window or --join-stream: the event time, `timestamp` (the record's, default)
    /// or `json:FIELD` (epoch milliseconds).
    #[arg(long = "event-time")]
    pub event_time: Option<String>,
    /// With --window or --join-stream: how far behind the largest event time seen (per input
    /// partition; for a join, per side) a record may be and still count (default 0).
    #[arg(long = "allowed-lateness")]
    pub allowed_lateness: Option<String>,
    /// With --window: `final` (default: each window once, when the watermark closes it) or
    /// `updates` (after each batch, the new value of each window it changed; tumbling and
    /// hopping windows).
    #[arg(long = "emit")]
    pub emit: Option<String>,
    /// With --window or --join-stream: write records dropped as late to this topic (it must
    /// exist), as they left the operators, in the same transaction as the output; otherwise
    /// they are only counted.
    #[arg(long = "late-to")]
    pub late_to: Option<String>,
    /// With --window: the most windows (or sessions) one input partition may hold open, the
    /// state's memory bound (default 10,000,000); input that would open more stops the pipe.
    #[arg(long = "max-open-windows")]
    pub max_open_windows: Option<usize>,
    /// With --window: re-key the input through the topic `<group>-windows-repartition` first
    /// (created if missing), for input not partitioned by the grouping key: every record of
    /// a key then meets the same state. Read back by the group `<group>-windows-repartition`.
    #[arg(long = "repartition")]
    pub repartition: bool,
    /// With --repartition: how often the repartition records already read and committed are
    /// deleted (DeleteRecords), like 30s (the default, as Kafka Streams), or `never` (the
    /// topic's retention applies).
    #[arg(long = "repartition-purge-interval")]
    pub purge_interval: Option<String>,
    /// Transactions: the output and the committed offsets go together (needs -G). Each member
    /// gets its own transactional.id, `<prefix>-<group.instance.id>` for a static member (a
    /// restart fences its predecessor) or `<prefix>-<random>`; the prefix is
    /// `-X transactional.id=…`, by default `spate-pipe-<group>`.
    #[arg(long = "exactly-once")]
    pub exactly_once: bool,
    /// Output compression: none, gzip, snappy, lz4, zstd.
    #[arg(short = 'z')]
    pub codec: Option<String>,
    /// Lanes (default: cores).
    #[arg(long = "lanes")]
    pub lanes: Option<usize>,
    /// Commit interval in milliseconds.
    #[arg(long = "commit-interval-ms", default_value_t = 1000)]
    pub commit_interval_ms: u64,
    /// Exit once every input partition has been read to its end.
    #[arg(short = 'e')]
    pub exit_at_end: bool,
}

fn chain_of(args: &Args) -> Result<Vec<Step>, String> {
    let mut steps = Vec::new();
    if let Some(needle) = &args.filter_contains {
        steps.push(Step::FilterContains(needle.clone().into_bytes()));
    }
    for map in &args.map {
        match map.as_str() {
            "uppercase" => steps.push(Step::Uppercase),
            m => match m.strip_prefix("json:") {
                Some(field) if !field.is_empty() => steps.push(Step::Json(field.to_owned())),
                _ => return Err(format!("--map {m}: expected uppercase or json:FIELD")),
            },
        }
    }
    if args.join_table.is_some() {
        steps.push(Step::Join(join_key(args)?));
    } else if let Some((flag, _)) = [
        (
            "--join-on",
            args.join_on.is_some() && args.join_stream.is_none(),
        ),
        ("--join-as", args.join_as.is_some()),
        ("--left-join", args.left_join && args.join_stream.is_none()),
    ]
    .iter()
    .find(|(_, given)| *given)
    {
        return Err(format!("{flag} needs --join-table or --join-stream"));
    }
    // With windows, the grouping key is read by the window stage itself.
    if let (Some(field), None) = (&args.key_by_json, &args.window) {
        steps.push(Step::KeyByJson(field.clone()));
    }
    Ok(steps)
}

/// The join key (--join-on).
fn join_key(args: &Args) -> Result<KeySource, String> {
    match args.join_on.as_deref() {
        None | Some("key") => Ok(KeySource::RecordKey),
        Some(on) => match on.strip_prefix("json:") {
            Some(field) if !field.is_empty() => Ok(KeySource::JsonField(field.to_owned())),
            _ => Err(format!("--join-on {on}: expected key or json:FIELD")),
        },
    }
}

/// The stream join (--join-stream), if given.
fn stream_join(args: &Args) -> Result<Option<StreamJoin>, String> {
    let Some(right) = &args.join_stream else {
        if args.join_window.is_some() || args.outer_join {
            return Err("--join-window and --outer-join need --join-stream".into());
        }
        return Ok(None);
    };
    if args.window.is_some() || args.join_table.is_some() {
        return Err("--join-stream goes with neither --window nor --join-table".into());
    }
    let [left] = &args.from[..] else {
        return Err("--join-stream: --from names the left side, one topic".into());
    };
    let window = args
        .join_window
        .as_deref()
        .ok_or("--join-stream needs --join-window")?;
    let window = parse_duration(window).map_err(|e| format!("--join-window: {e}"))?;
    let time = parse_event_time(args.event_time.as_deref().unwrap_or("timestamp"))
        .map_err(|e| format!("--event-time: {e}"))?;
    let lateness = match &args.allowed_lateness {
        Some(d) => parse_lateness(d).map_err(|e| format!("--allowed-lateness: {e}"))?,
        None => 0,
    };
    let join = match (args.left_join, args.outer_join) {
        (false, false) => JoinType::Inner,
        (true, false) => JoinType::Left,
        (false, true) => JoinType::Outer,
        (true, true) => return Err("--left-join or --outer-join, not both".into()),
    };
    let mut spec = StreamJoin::new(left, right, join_key(args)?, time, window)
        .join_type(join)
        .lateness(lateness);
    if let Some(topic) = &args.late_to {
        spec = spec.late_to(topic);
    }
    Ok(Some(spec))
}

#[derive(Clone)]
enum Step {
    FilterContains(Vec<u8>),
    Uppercase,
    Json(String),
    KeyByJson(String),
    /// The join with the table (--join-table), on this key.
    Join(KeySource),
}

/// `-X` pairs and the flags, split between the consumer and the producer.
fn configs(args: &Args) -> Result<(ConsumerConfig, ProducerConfig), String> {
    let mut pairs = args.conn.pairs()?;
    // A default that -X may override: a new group starts at the beginning.
    pairs.insert(1, ("auto.offset.reset".into(), "earliest".into()));
    if let Some(group) = &args.group {
        pairs.push(("group.id".into(), group.clone()));
    }
    if let Some(codec) = &args.codec {
        pairs.push(("compression.type".into(), codec.clone()));
    }
    common::consumer_and_producer(pairs)
}

/// The window flags, if `--window` is given (the others need it).
fn windowed(args: &Args) -> Result<Option<Windowed>, String> {
    let Some(window) = &args.window else {
        let joins = args.join_stream.is_some();
        let stray = [
            ("--aggregate", args.aggregate.is_some()),
            ("--event-time", args.event_time.is_some() && !joins),
            (
                "--allowed-lateness",
                args.allowed_lateness.is_some() && !joins,
            ),
            ("--late-to", args.late_to.is_some() && !joins),
            ("--emit", args.emit.is_some()),
            ("--max-open-windows", args.max_open_windows.is_some()),
            ("--repartition", args.repartition),
            (
                "--repartition-purge-interval",
                args.purge_interval.is_some(),
            ),
        ];
        return match stray.iter().find(|(_, given)| *given) {
            Some((flag, _)) => Err(format!("{flag} needs --window")),
            None => Ok(None),
        };
    };
    let window = parse_window(window).map_err(|e| format!("--window: {e}"))?;
    let aggregate = parse_aggregate(args.aggregate.as_deref().unwrap_or("count"))
        .map_err(|e| format!("--aggregate: {e}"))?;
    let time = parse_event_time(args.event_time.as_deref().unwrap_or("timestamp"))
        .map_err(|e| format!("--event-time: {e}"))?;
    let lateness = match &args.allowed_lateness {
        Some(d) => parse_lateness(d).map_err(|e| format!("--allowed-lateness: {e}"))?,
        None => 0,
    };
    let emit = match args.emit.as_deref() {
        None | Some("final") => Emit::Final,
        Some("updates") => Emit::Updates,
        Some(other) => return Err(format!("--emit {other}: expected final or updates")),
    };
    let key = match &args.key_by_json {
        Some(field) => KeySource::JsonField(field.clone()),
        None => KeySource::RecordKey,
    };
    let mut windowed = Windowed::new(key, time, window, aggregate)
        .lateness(lateness)
        .emit(emit);
    if let Some(topic) = &args.late_to {
        windowed = windowed.late_to(topic);
    }
    if let Some(n) = args.max_open_windows {
        windowed = windowed.max_open_windows(n);
    }
    if args.repartition {
        windowed = windowed.repartition();
    }
    match (args.purge_interval.as_deref(), args.repartition) {
        (None, _) => {}
        (Some(_), false) => return Err("--repartition-purge-interval needs --repartition".into()),
        (Some("never"), true) => windowed = windowed.purge_interval(None),
        (Some(every), true) => {
            let ms =
                parse_duration(every).map_err(|e| format!("--repartition-purge-interval: {e}"))?;
            windowed = windowed.purge_interval(Some(Duration::from_millis(ms as u64)));
        }
    }
    windowed.validate().map_err(|e| format!("--window: {e}"))?;
    Ok(Some(windowed))
}

pub fn run(args: &Args) -> Result<ExitCode, String> {
    if args.exactly_once && args.group.is_none() {
        return Err(
            "--exactly-once needs -G GROUP: offsets are committed in the transactions".into(),
        );
    }
    let steps = chain_of(args)?;
    let windowed = windowed(args)?;
    let joined = stream_join(args)?;
    if (windowed.is_some() || joined.is_some()) && args.group.is_none() {
        return Err(
            "--window and --join-stream need -G GROUP: it names the state's changelog topic".into(),
        );
    }
    let (consumer, producer) = configs(args)?;
    let inputs: Vec<String> = args.from.clone();
    let table_config = (
        args.join_table.clone(),
        args.table_max_bytes,
        consumer.clone(),
    );
    let build = move |table: Option<Table>| {
        let join_as = args
            .join_as
            .clone()
            .or_else(|| args.join_table.clone())
            .unwrap_or_default();
        let mode = if args.left_join {
            JoinMode::Left
        } else {
            JoinMode::Inner
        };
        let mut inputs: Vec<&str> = inputs.iter().map(String::as_str).collect();
        if let Some(right) = &args.join_stream {
            inputs.push(right);
        }
        let mut pipeline = Pipeline::new(consumer, producer)
            .from_topics(&inputs)
            .to_topic(&args.to)
            .operators(move || {
                steps.iter().fold(Chain::new(), |chain, step| {
                    chain.then(match step {
                        Step::FilterContains(needle) => ops::filter_contains(needle),
                        Step::Uppercase => ops::uppercase(),
                        Step::Json(field) => ops::json_field(field),
                        Step::KeyByJson(field) => ops::key_from_json(field),
                        Step::Join(on) => table::join(
                            table.clone().expect("loaded before the pipeline starts"),
                            on.clone(),
                            &join_as,
                            mode,
                        ),
                    })
                })
            })
            .commit_interval(Duration::from_millis(args.commit_interval_ms.max(1)))
            .stop_at_end(args.exit_at_end)
            .guarantee(if args.exactly_once {
                Guarantee::ExactlyOnce
            } else {
                Guarantee::AtLeastOnce
            });
        if args.key_by_json.is_some() {
            pipeline = pipeline.partitioning(Partitioning::ByKey);
        }
        if let Some(windowed) = windowed {
            // Results go where their key hashes, as a keyed aggregation's do.
            pipeline = pipeline
                .windowed(windowed)
                .partitioning(Partitioning::ByKey);
        }
        if let Some(joined) = joined {
            // Results go where their key hashes.
            pipeline = pipeline
                .join_streams(joined)
                .partitioning(Partitioning::ByKey);
        }
        if let Some(lanes) = args.lanes {
            pipeline = pipeline.lanes(lanes);
        }
        pipeline
    };
    let started = Instant::now();
    let stats = args.conn.block_on(async move {
        let signals = common::Signals::listen()?;
        let table = match table_config {
            (Some(topic), limit, config) => Some(
                Table::load(config, &topic, limit)
                    .await
                    .map_err(|e| format!("--join-table {topic}: {e}"))?,
            ),
            _ => None,
        };
        build(table)
            .run_until(signals.stop_requested())
            .await
            .map_err(|e| e.to_string())
    })?;
    let secs = started.elapsed().as_secs_f64();
    eprintln!(
        "% {} records in, {} out, {} commits, {} aborted, {} state records restored, {} late in {:.2} s ({:.0} records/s)",
        stats.records_in,
        stats.records_out,
        stats.commits,
        stats.aborts,
        stats.restored,
        stats.late,
        secs,
        stats.records_in as f64 / secs.max(1e-9)
    );
    Ok(ExitCode::SUCCESS)
}
