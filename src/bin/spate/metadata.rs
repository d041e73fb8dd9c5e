//! `spate metadata -b HOST:PORT [-t TOPIC]`: brokers, topics, partitions and leaders, printed
//! as `kcat -L` prints them.

use std::fmt::Write as _;

use spate::cluster::{ClusterMetadata, TopicMeta};

use crate::common::ConnArgs;

#[derive(clap::Args)]
pub struct Args {
    #[command(flatten)]
    conn: ConnArgs,
    /// Only this topic (repeatable); all topics if none.
    #[arg(short = 't', long = "topic")]
    topics: Vec<String>,
}

pub fn run(args: &Args) -> Result<(), String> {
    let text = args.conn.run(|client| async move {
        let topics = if args.topics.is_empty() {
            client.list_topics().await
        } else {
            let names: Vec<&str> = args.topics.iter().map(String::as_str).collect();
            client.describe_topics(&names).await
        }
        .map_err(|e| e.to_string())?;
        Ok(render(&client.metadata(), &topics, args.topics.is_empty()))
    })?;
    print!("{text}");
    Ok(())
}

fn ids(v: &[i32]) -> String {
    v.iter().map(i32::to_string).collect::<Vec<_>>().join(",")
}

/// The `kcat -L` layout.
pub fn render(cluster: &ClusterMetadata, topics: &[TopicMeta], all: bool) -> String {
    let mut out = String::new();
    let which = if all {
        "all topics"
    } else {
        "the given topics"
    };
    let _ = writeln!(
        out,
        "Metadata for {which} (cluster {}):",
        cluster.cluster_id.as_deref().unwrap_or("unknown")
    );
    let _ = writeln!(out, " {} brokers:", cluster.brokers.len());
    for b in cluster.brokers.values() {
        let controller = if cluster.controller == Some(b.id) {
            " (controller)"
        } else {
            ""
        };
        let _ = writeln!(out, "  broker {} at {}{controller}", b.id, b.address());
    }
    let _ = writeln!(out, " {} topics:", topics.len());
    for t in topics {
        let error = t.error.map(|e| format!(": {e}")).unwrap_or_default();
        let _ = writeln!(
            out,
            "  topic \"{}\" with {} partitions{error}",
            t.name,
            t.partitions.len()
        );
        for p in &t.partitions {
            let error = p
                .error
                .map(|e| format!(": {}", e.name()))
                .unwrap_or_default();
            let _ = writeln!(
                out,
                "    partition {}, leader {}, replicas: {}, isrs: {}{error}",
                p.partition,
                p.leader,
                ids(&p.replicas),
                ids(&p.isr)
            );
        }
    }
    out
}
