//! Windowed counts over a bounded topic with the stateful building blocks: reads TOPIC from the
//! beginning to its end, groups JSON values by a field, counts them in tumbling event-time
//! windows (event time from another field, in epoch milliseconds), and prints each window's
//! result as JSON, as `spate pipe --window` will write them:
//! `{"key": K, "start": MS, "end": MS, "value": N}`. Each partition keeps its own windows and
//! watermark, so the topic should be keyed by the grouping field (as Kafka Streams requires,
//! or a key split over partitions gives one result per partition); windows still open at the
//! end are printed too, as Flink does at the end of bounded input. (In memory only: the
//! changelog-backed, exactly-once pipeline is next.)
//!
//! ```text
//! cargo run --release --example windowed_counts -- BOOTSTRAP TOPIC KEY_FIELD TIME_FIELD [SIZE] [LATENESS]
//! # e.g. … localhost:9092 clicks user ts 1m 5s
//! ```

use std::collections::{BTreeMap, HashSet};

use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};
use spate::pipeline::event_time::{
    extract, parse_duration, result_json, AggregateSpec, EventTime, KeySource,
};
use spate::pipeline::window::{Aggregate, WindowSpec, WindowedAggregator};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: windowed_counts BOOTSTRAP TOPIC KEY_FIELD TIME_FIELD [SIZE] [LATENESS]");
        std::process::exit(2);
    }
    let size = parse_duration(args.get(5).map_or("1m", String::as_str))?;
    // How far behind the newest event time a record may be and still count.
    let lateness = parse_duration(args.get(6).map_or("5s", String::as_str))?;
    let config = ConsumerConfig::from_pairs([("bootstrap.servers", args[1].as_str())])?;
    let mut consumer = Consumer::new(config).await?;
    consumer
        .assign_topics(&[&args[2]], Offset::Beginning)
        .await?;
    let partitions = consumer.assignment().len();
    let key = KeySource::JsonField(args[3].clone());
    let time = EventTime::JsonField(args[4].clone());
    let count = AggregateSpec {
        aggregate: Aggregate::Count,
        field: None,
    };
    let mut windows: BTreeMap<i32, WindowedAggregator> = BTreeMap::new();
    let mut ended = HashSet::new();
    let mut rows = Vec::new();
    let mut skipped = 0;
    let print = |results: Vec<spate::pipeline::window::WindowResult>| {
        for r in results {
            println!("{}", String::from_utf8_lossy(&result_json(&r)));
        }
    };
    while ended.len() < partitions {
        match consumer.next().await? {
            Event::Batch(b) => {
                ended.remove(&b.partition());
                rows.clear();
                skipped += extract(b.batch(), &key, &time, &count, &mut rows);
                let w = windows.entry(b.partition()).or_insert_with(|| {
                    WindowedAggregator::new(
                        WindowSpec::Tumbling { size },
                        Aggregate::Count,
                        lateness,
                    )
                });
                print(w.push(rows.iter().map(|(k, t, v)| (k.as_slice(), *t, *v))));
            }
            Event::EndOfPartition { partition, .. } => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    let mut late = 0;
    for w in windows.values_mut() {
        late += w.late();
        print(w.finish());
    }
    eprintln!("{skipped} records without the fields, {late} late records dropped");
    Ok(())
}
