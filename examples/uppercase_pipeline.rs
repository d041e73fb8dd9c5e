//! The seed's Flink job, written with spate: read a topic, upper-case every value, write
//! another topic. At-least-once by default; `--exactly-once` makes it transactional.
//!
//! ```text
//! cargo run --release --example uppercase_pipeline -- BOOTSTRAP IN OUT GROUP [--exactly-once]
//! ```
//!
//! It runs until Ctrl-C, then commits what was written and stops.

use spate::consumer::ConsumerConfig;
use spate::pipeline::{ops, Chain, Guarantee, Pipeline};
use spate::producer::ProducerConfig;

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 5 {
        eprintln!("usage: uppercase_pipeline BOOTSTRAP IN OUT GROUP [--exactly-once]");
        std::process::exit(2);
    }
    let (bootstrap, input, output, group) = (&args[1], &args[2], &args[3], &args[4]);
    let guarantee = if args.iter().any(|a| a == "--exactly-once") {
        Guarantee::ExactlyOnce
    } else {
        Guarantee::AtLeastOnce
    };

    // Source: a consumer group member. Sink: a producer (lz4). In between: one operator.
    let stats = Pipeline::new(
        ConsumerConfig::new(bootstrap).group_id(group),
        ProducerConfig::new(bootstrap).compression(spate::record::Compression::Lz4),
    )
    .from_topics(&[input])
    .to_topic(output)
    .operators(|| Chain::new().then(ops::uppercase()))
    .guarantee(guarantee)
    .run_until(async {
        let _ = tokio::signal::ctrl_c().await;
    })
    .await?;

    eprintln!(
        "{} records in, {} out, {} commits",
        stats.records_in, stats.records_out, stats.commits
    );
    Ok(())
}
