//! Windowed counts, exactly once: reads IN as group APP, groups JSON values by a field, counts
//! them in tumbling event-time windows (event time from another field, in epoch milliseconds)
//! and writes one record per closed window to OUT, keyed by the grouping key, with the JSON
//! value `{"key": K, "start": MS, "end": MS, "value": N}`.
//!
//! The state lives in the compacted topic `APP-windows-changelog` (created if missing),
//! written in the same transactions as the output and the offsets: kill the example and start
//! it again, or start it twice (the group splits the partitions), and the results stay
//! exact. Each input partition keeps its own watermark, so IN should be keyed by the grouping
//! field (as Kafka Streams requires). With `--end`, it stops at the end of the input and
//! emits the windows still open, as Flink does at the end of bounded input.
//!
//! ```text
//! cargo run --release --example windowed_counts -- BOOTSTRAP IN OUT APP KEY_FIELD TIME_FIELD [SIZE] [LATENESS] [--end]
//! # e.g. … localhost:9092 clicks counts clicks-app user ts 1m 5s --end
//! ```

use spate::consumer::ConsumerConfig;
use spate::pipeline::event_time::{
    parse_duration, parse_lateness, AggregateSpec, EventTime, KeySource,
};
use spate::pipeline::window::{Aggregate, WindowSpec};
use spate::pipeline::{Guarantee, Partitioning, Pipeline, Windowed};
use spate::producer::ProducerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let mut args: Vec<String> = std::env::args().collect();
    let end = args.iter().any(|a| a == "--end");
    args.retain(|a| a != "--end");
    if args.len() < 7 {
        eprintln!(
            "usage: windowed_counts BOOTSTRAP IN OUT APP KEY_FIELD TIME_FIELD [SIZE] [LATENESS] [--end]"
        );
        std::process::exit(2);
    }
    let size = parse_duration(args.get(7).map_or("1m", String::as_str))?;
    // How far behind the newest event time a record may be and still count.
    let lateness = parse_lateness(args.get(8).map_or("5s", String::as_str))?;
    let consumer = ConsumerConfig::from_pairs([
        ("bootstrap.servers", args[1].as_str()),
        ("group.id", args[4].as_str()),
        ("auto.offset.reset", "earliest"),
    ])?;
    let producer = ProducerConfig::from_pairs([("bootstrap.servers", args[1].as_str())])?;
    let windows = Windowed::new(
        KeySource::JsonField(args[5].clone()),
        EventTime::JsonField(args[6].clone()),
        WindowSpec::Tumbling { size },
        AggregateSpec {
            aggregate: Aggregate::Count,
            field: None,
        },
    )
    .lateness(lateness);
    let stats = Pipeline::new(consumer, producer)
        .from_topics(&[&args[2]])
        .to_topic(&args[3])
        .windowed(windows)
        .partitioning(Partitioning::ByKey)
        .guarantee(Guarantee::ExactlyOnce)
        .stop_at_end(end)
        .run_until(async {
            let _ = tokio::signal::ctrl_c().await;
        })
        .await?;
    eprintln!(
        "{} records in, {} windows out, {} state records restored",
        stats.records_in, stats.records_out, stats.restored
    );
    Ok(())
}
