//! Reads a topic from the beginning to its end and reports the throughput: the library's
//! consume path with nothing around it (no output). `scripts/bench-consume.sh` runs it beside
//! `spate consume` and `kcat -C` and compares CPU time.
//!
//! ```text
//! cargo run --release --example consume -- BOOTSTRAP TOPIC
//! ```

use std::collections::HashSet;
use std::time::Instant;

use spate::consumer::{Consumer, ConsumerConfig, Event, Offset};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: consume BOOTSTRAP TOPIC");
        std::process::exit(2);
    }
    let config = ConsumerConfig::from_pairs([("bootstrap.servers", args[1].as_str())])?;
    let mut consumer = Consumer::new(config).await?;
    let topic = args[2].as_str();
    consumer.assign_topics(&[topic], Offset::Beginning).await?;
    let partitions = consumer.assignment().len();
    let started = Instant::now();
    let (mut records, mut bytes) = (0u64, 0u64);
    let mut ended = HashSet::new();
    while ended.len() < partitions {
        match consumer.next().await? {
            Event::Batch(b) => {
                ended.remove(&b.partition());
                records += b.batch().len() as u64;
                // Touch every value, as an application would.
                bytes += b
                    .batch()
                    .values()
                    .iter()
                    .map(|s| s.range().map_or(0, |r| r.len() as u64))
                    .sum::<u64>();
            }
            Event::EndOfPartition { partition, .. } => {
                ended.insert(partition);
            }
            _ => {}
        }
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{records} records ({bytes} value bytes) in {secs:.3} s: {:.0} records/s, {:.1} MB/s",
        records as f64 / secs,
        bytes as f64 / secs / 1e6
    );
    Ok(())
}
