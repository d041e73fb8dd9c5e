//! Produces N records of S bytes to a topic and reports the throughput: the library's produce
//! path with nothing else around it (no input parsing). `scripts/bench-produce.sh` runs it
//! beside `spate produce` and `kcat -P` and compares CPU time.
//!
//! ```text
//! cargo run --release --example produce -- BOOTSTRAP TOPIC [COUNT] [SIZE] [CODEC]
//! cargo run --release --example produce -- 127.0.0.1:9092 bench 1000000 100 lz4
//! ```

use std::time::Instant;

use spate::producer::{Producer, ProducerConfig, Record};

#[tokio::main]
async fn main() -> Result<(), Box<dyn std::error::Error>> {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 3 {
        eprintln!("usage: produce BOOTSTRAP TOPIC [COUNT] [SIZE] [CODEC]");
        std::process::exit(2);
    }
    let (bootstrap, topic) = (&args[1], &args[2]);
    let count: usize = args.get(3).map_or(Ok(1_000_000), |s| s.parse())?;
    let size: usize = args.get(4).map_or(Ok(100), |s| s.parse())?;
    let codec = args.get(5).map_or("lz4", String::as_str);

    let config = ProducerConfig::from_pairs([
        ("bootstrap.servers", bootstrap.as_str()),
        ("compression.type", codec),
        ("linger.ms", "5"),
    ])?;
    let producer = Producer::new(config).await?;

    // Values: a record number and text, like log lines (compressible, not constant).
    let words = b"spate produces batched compressed idempotent records to kafka ";
    let values: Vec<Vec<u8>> = (0..1024)
        .map(|i| {
            let mut v = format!("{i:06} ").into_bytes();
            while v.len() < size {
                v.push(words[(v.len() * 7 + i) % words.len()]);
            }
            v.truncate(size);
            v
        })
        .collect();

    let started = Instant::now();
    let mut deliveries = Vec::with_capacity(count);
    for i in 0..count {
        let delivery = producer
            .send(Record::new(topic).value(&values[i % values.len()]))
            .await?;
        deliveries.push(delivery);
    }
    producer.flush().await?;
    // After flush every delivery has its answer.
    let failed = deliveries
        .iter()
        .filter(|d| !matches!(d.try_result(), Some(Ok(_))))
        .count();
    let secs = started.elapsed().as_secs_f64();
    producer.close().await?;
    println!(
        "{count} records of {size} B ({codec}) in {secs:.3} s: {:.0} records/s, {:.1} MB/s",
        count as f64 / secs,
        (count * size) as f64 / secs / 1e6
    );
    if failed > 0 {
        return Err(format!("{failed} records were not acknowledged").into());
    }
    Ok(())
}
