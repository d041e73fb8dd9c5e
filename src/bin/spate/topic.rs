//! `spate topic create|delete|add-partitions|list`.

use spate::cluster::NewTopic;

use crate::common::ConnArgs;

#[derive(clap::Subcommand)]
pub enum Action {
    /// Create a topic.
    Create {
        #[command(flatten)]
        conn: ConnArgs,
        /// Topic name (repeatable).
        #[arg(short = 't', long = "topic", required = true)]
        topics: Vec<String>,
        /// Partitions (default: the broker's).
        #[arg(long, default_value_t = -1, allow_negative_numbers = true)]
        partitions: i32,
        /// Replication factor (default: the broker's).
        #[arg(long = "replication-factor", default_value_t = -1, allow_negative_numbers = true)]
        replication_factor: i16,
        /// A topic config, `key=value` (repeatable): `--config retention.ms=60000`.
        #[arg(long = "config", value_name = "KEY=VALUE")]
        configs: Vec<String>,
    },
    /// Delete topics.
    Delete {
        #[command(flatten)]
        conn: ConnArgs,
        /// Topic name (repeatable).
        #[arg(short = 't', long = "topic", required = true)]
        topics: Vec<String>,
    },
    /// Grow a topic to this many partitions in total (kafka-topics.sh --alter --partitions).
    AddPartitions {
        #[command(flatten)]
        conn: ConnArgs,
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// The new total.
        #[arg(long)]
        partitions: i32,
    },
    /// List topic names, one per line, with their partition counts.
    List {
        #[command(flatten)]
        conn: ConnArgs,
    },
}

pub fn run(action: &Action) -> Result<(), String> {
    match action {
        Action::Create {
            conn,
            topics,
            partitions,
            replication_factor,
            configs,
        } => {
            let mut new = Vec::new();
            for name in topics {
                let mut topic = NewTopic::new(name, *partitions, *replication_factor);
                for kv in configs {
                    let (k, v) = kv
                        .split_once('=')
                        .ok_or_else(|| format!("--config {kv}: expected key=value"))?;
                    topic = topic.config(k, v);
                }
                new.push(topic);
            }
            conn.run(|client| async move {
                client.create_topics(&new).await.map_err(|e| e.to_string())
            })?;
            for name in topics {
                println!("created topic {name}");
            }
        }
        Action::Delete { conn, topics } => {
            let names: Vec<&str> = topics.iter().map(String::as_str).collect();
            conn.run(|client| async move {
                client
                    .delete_topics(&names)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            for name in topics {
                println!("deleted topic {name}");
            }
        }
        Action::AddPartitions {
            conn,
            topic,
            partitions,
        } => {
            conn.run(|client| async move {
                client
                    .create_partitions(&[(topic, *partitions)])
                    .await
                    .map_err(|e| e.to_string())
            })?;
            println!("topic {topic} now has {partitions} partitions");
        }
        Action::List { conn } => {
            let topics =
                conn.run(
                    |client| async move { client.list_topics().await.map_err(|e| e.to_string()) },
                )?;
            for t in topics {
                println!("{}\t{}", t.name, t.partitions.len());
            }
        }
    }
    Ok(())
}
