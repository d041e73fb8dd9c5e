//! `spate topic create|delete|add-partitions|list|describe|alter-config`.

use spate::cluster::{AlterConfigOp, ConfigResource, NewTopic};

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
    /// Describe topics as kafka-topics.sh --describe does: a line per topic (partition count,
    /// replication factor, the configs set for it), then a line per partition.
    Describe {
        #[command(flatten)]
        conn: ConnArgs,
        /// Topic name (repeatable).
        #[arg(short = 't', long = "topic", required = true)]
        topics: Vec<String>,
        /// Also every config with its value and source (kafka-configs.sh --describe --all).
        #[arg(long = "all-configs")]
        all_configs: bool,
    },
    /// Change a topic's configs as kafka-configs.sh --alter does.
    AlterConfig {
        #[command(flatten)]
        conn: ConnArgs,
        /// Topic name.
        #[arg(short = 't', long = "topic")]
        topic: String,
        /// Configs to set, `k1=v1,k2=[a,b]` (a list value in brackets). Repeatable.
        #[arg(long = "add-config", value_name = "K=V,...")]
        add: Vec<String>,
        /// Configs to return to their defaults, `k1,k2`. Repeatable.
        #[arg(long = "delete-config", value_name = "K,...")]
        delete: Vec<String>,
        /// Items to add to list configs, `k=[a,b]`. Repeatable.
        #[arg(long = "append-config", value_name = "K=V,...")]
        append: Vec<String>,
        /// Items to remove from list configs, `k=[a,b]`. Repeatable.
        #[arg(long = "subtract-config", value_name = "K=V,...")]
        subtract: Vec<String>,
        /// Only check the changes; change nothing.
        #[arg(long = "validate-only")]
        validate_only: bool,
    },
}

/// kafka-configs.sh's `--add-config` form: `k1=v1,k2=[v2,v3]` (commas inside brackets belong
/// to the value, which loses its brackets).
fn config_pairs(text: &str) -> Result<Vec<(String, String)>, String> {
    let mut pairs = Vec::new();
    let mut depth = 0usize;
    let mut start = 0;
    let mut parts = Vec::new();
    for (i, c) in text.char_indices() {
        match c {
            '[' => depth += 1,
            ']' => depth = depth.saturating_sub(1),
            ',' if depth == 0 => {
                parts.push(&text[start..i]);
                start = i + 1;
            }
            _ => {}
        }
    }
    parts.push(&text[start..]);
    for part in parts.into_iter().map(str::trim).filter(|p| !p.is_empty()) {
        let (k, v) = part
            .split_once('=')
            .ok_or_else(|| format!("`{part}`: expected key=value"))?;
        let v = v.trim();
        let v = v
            .strip_prefix('[')
            .and_then(|v| v.strip_suffix(']'))
            .unwrap_or(v);
        pairs.push((k.trim().to_owned(), v.to_owned()));
    }
    Ok(pairs)
}

/// A topic id as Kafka prints it (`Uuid.toString`: unpadded base64url of its 16 bytes).
fn topic_id(id: u128) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(id.to_be_bytes())
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
        Action::Describe {
            conn,
            topics,
            all_configs,
        } => {
            let described = conn.run(|client| async move {
                let names: Vec<&str> = topics.iter().map(String::as_str).collect();
                let metas = client
                    .describe_topics(&names)
                    .await
                    .map_err(|e| e.to_string())?;
                let mut out = Vec::new();
                for meta in metas {
                    let configs = client
                        .describe_configs(&ConfigResource::Topic(meta.name.clone()))
                        .await
                        .map_err(|e| e.to_string())?;
                    out.push((meta, configs));
                }
                Ok::<_, String>(out)
            })?;
            for (meta, configs) in described {
                let set: Vec<String> = configs
                    .iter()
                    .filter(|c| c.source == spate::cluster::ConfigSource::DynamicTopic)
                    .map(|c| format!("{}={}", c.name, c.value.as_deref().unwrap_or("")))
                    .collect();
                let replication = meta.partitions.first().map_or(0, |p| p.replicas.len());
                println!(
                    "Topic: {}\tTopicId: {}\tPartitionCount: {}\tReplicationFactor: {}\tConfigs: {}",
                    meta.name,
                    topic_id(meta.id),
                    meta.partitions.len(),
                    replication,
                    set.join(",")
                );
                let ids = |v: &[i32]| v.iter().map(i32::to_string).collect::<Vec<_>>().join(",");
                for p in &meta.partitions {
                    println!(
                        "\tTopic: {}\tPartition: {}\tLeader: {}\tReplicas: {}\tIsr: {}",
                        meta.name,
                        p.partition,
                        if p.leader >= 0 {
                            p.leader.to_string()
                        } else {
                            "none".into()
                        },
                        ids(&p.replicas),
                        ids(&p.isr)
                    );
                }
                if *all_configs {
                    for c in &configs {
                        let value = if c.sensitive {
                            "(sensitive)".to_owned()
                        } else {
                            c.value.clone().unwrap_or_else(|| "null".into())
                        };
                        println!("\t{}={}\t{}", c.name, value, c.source.name());
                    }
                }
            }
        }
        Action::AlterConfig {
            conn,
            topic,
            add,
            delete,
            append,
            subtract,
            validate_only,
        } => {
            let mut ops = Vec::new();
            for text in add {
                for (k, v) in config_pairs(text).map_err(|e| format!("--add-config {e}"))? {
                    ops.push(AlterConfigOp::Set(k, v));
                }
            }
            for text in delete {
                for k in text.split(',').map(str::trim).filter(|k| !k.is_empty()) {
                    ops.push(AlterConfigOp::Delete(k.to_owned()));
                }
            }
            for text in append {
                for (k, v) in config_pairs(text).map_err(|e| format!("--append-config {e}"))? {
                    ops.push(AlterConfigOp::Append(k, v));
                }
            }
            for text in subtract {
                for (k, v) in config_pairs(text).map_err(|e| format!("--subtract-config {e}"))? {
                    ops.push(AlterConfigOp::Subtract(k, v));
                }
            }
            if ops.is_empty() {
                return Err("nothing to change: give --add-config, --delete-config, \
                            --append-config or --subtract-config"
                    .into());
            }
            let resource = ConfigResource::Topic(topic.clone());
            conn.run(|client| async move {
                client
                    .incremental_alter_configs(&resource, &ops, *validate_only)
                    .await
                    .map_err(|e| e.to_string())
            })?;
            if *validate_only {
                println!("the changes to topic {topic} are valid (nothing changed)");
            } else {
                println!("completed updating config for topic {topic}");
            }
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kafka_configs_pairs() {
        assert_eq!(
            config_pairs("retention.ms=1000, cleanup.policy=[compact,delete]").unwrap(),
            vec![
                ("retention.ms".to_owned(), "1000".to_owned()),
                ("cleanup.policy".to_owned(), "compact,delete".to_owned())
            ]
        );
        assert!(config_pairs("retention.ms").is_err());
        assert_eq!(topic_id(0).len(), 22);
    }
}
