//! Topic configs (DescribeConfigs, IncrementalAlterConfigs, configs at CreateTopics) on the
//! embedded cluster as `spate serve` serves it. librdkafka's AdminClient first
//! (`tests/support/configs_admin.py`): Kafka's defaults and sources, set / append / subtract /
//! delete, validate-only, and Kafka's refusals. Then spate's client and `spate topic describe`
//! / `spate topic alter-config`, each change read back by librdkafka.
#![cfg(feature = "cli")]

mod support;

use support::SpateServe;

use std::process::Command;

use spate::cluster::{AlterConfigOp, Client, ConfigResource, ConfigSource, NewTopic};
use spate::ClientConfig;

fn serve() -> (SpateServe, String) {
    let serve = SpateServe::start(&["--port", "0", "--partitions", "2"]);
    let bootstrap = serve.bootstrap.clone();
    (serve, bootstrap)
}

fn librdkafka(bootstrap: &str, commands: &[&str]) -> Vec<String> {
    let mut args = vec![bootstrap];
    args.extend_from_slice(commands);
    support::python_lines("configs_admin.py", &args)
}

fn cli(args: &[&str]) -> (bool, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_spate"))
        .args(args)
        .output()
        .unwrap();
    (
        out.status.success(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

#[test]
fn librdkafka_checks_the_configs_the_embedded_cluster_keeps() {
    let (_serve, b) = serve();
    let lines = librdkafka(
        &b,
        &[
            "create:logs:cleanup.policy=compact",
            "create:bad:retention.ms=soon",
            "create:bad:no.such.config=1",
            "describe:logs:cleanup.policy,retention.ms,max.message.bytes,compression.type",
            "alter:logs:set:retention.ms=1000;append:cleanup.policy=delete",
            "describe:logs:cleanup.policy,retention.ms",
            "alter:logs:subtract:cleanup.policy=compact;delete:retention.ms",
            "describe:logs:cleanup.policy,retention.ms",
            "alter:logs:append:retention.ms=5",
            "alter:logs:set:no.such.config=1",
            "alter:logs:set:min.cleanable.dirty.ratio=2",
            "alter:nowhere:set:retention.ms=1",
            "validate:logs:set:retention.ms=77",
            "describe:logs:retention.ms",
            "describe:nowhere",
            "broker:0:num.partitions",
        ],
    );
    // Config sources as librdkafka numbers them: 1 DYNAMIC_TOPIC_CONFIG, 5 DEFAULT_CONFIG.
    let expected = [
        "logs create ok",
        "bad create INVALID_CONFIG Invalid value soon for configuration retention.ms: Not a number of type LONG",
        "bad create INVALID_CONFIG Unknown topic config name: no.such.config",
        "logs cleanup.policy=compact 1",
        "logs compression.type=producer 5",
        "logs max.message.bytes=1048588 5",
        "logs retention.ms=604800000 5",
        "logs alter ok",
        "logs cleanup.policy=compact,delete 1",
        "logs retention.ms=1000 1",
        "logs alter ok",
        "logs cleanup.policy=delete 1",
        "logs retention.ms=604800000 5",
        "logs alter INVALID_CONFIG Config value append is not allowed for config key: retention.ms",
        "logs alter INVALID_CONFIG Unknown topic config name: no.such.config",
        "logs alter INVALID_CONFIG Invalid value 2 for configuration min.cleanable.dirty.ratio: Value must be no more than 1",
        "nowhere alter UNKNOWN_TOPIC_OR_PART Topic nowhere does not exist.",
        "logs alter ok",
        "logs retention.ms=604800000 5",
        "nowhere describe UNKNOWN_TOPIC_OR_PART Topic nowhere does not exist.",
        "broker 0 num.partitions=2",
    ];
    assert_eq!(lines, expected, "{lines:#?}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spate_describes_and_alters_configs_and_librdkafka_agrees() {
    let (_serve, b) = serve();
    let client = Client::connect(ClientConfig::new(&b)).await.unwrap();
    client
        .create_topics(&[NewTopic::new("events", 3, 1).config("retention.ms", "3600000")])
        .await
        .unwrap();
    let topic = ConfigResource::Topic("events".into());
    let configs = client.describe_configs(&topic).await.unwrap();
    let get = |configs: &[spate::cluster::ConfigEntry], name: &str| {
        configs.iter().find(|c| c.name == name).cloned().unwrap()
    };
    // Kafka 4.x's topic configs, every one: 33 names, each default but the one set.
    assert_eq!(configs.len(), 33, "{configs:#?}");
    let retention = get(&configs, "retention.ms");
    assert_eq!(retention.value.as_deref(), Some("3600000"));
    assert_eq!(retention.source, ConfigSource::DynamicTopic);
    let segment = get(&configs, "segment.bytes");
    assert_eq!(
        (segment.value.as_deref(), segment.is_default()),
        (Some("1073741824"), true)
    );

    // One change per config and request (Kafka refuses a config named twice).
    let twice = client
        .incremental_alter_configs(
            &topic,
            &[
                AlterConfigOp::Set("cleanup.policy".into(), "compact".into()),
                AlterConfigOp::Append("cleanup.policy".into(), "delete".into()),
            ],
            false,
        )
        .await
        .unwrap_err();
    assert!(
        twice.to_string().contains("duplicate config keys"),
        "{twice}"
    );
    client
        .incremental_alter_configs(
            &topic,
            &[
                AlterConfigOp::Set("cleanup.policy".into(), "compact".into()),
                AlterConfigOp::Delete("retention.ms".into()),
                AlterConfigOp::Set("max.message.bytes".into(), "2000000".into()),
            ],
            false,
        )
        .await
        .unwrap();
    client
        .incremental_alter_configs(
            &topic,
            &[AlterConfigOp::Append(
                "cleanup.policy".into(),
                "delete".into(),
            )],
            false,
        )
        .await
        .unwrap();
    // A validate-only change and a refused one change nothing.
    client
        .incremental_alter_configs(
            &topic,
            &[AlterConfigOp::Set("segment.ms".into(), "1".into())],
            true,
        )
        .await
        .unwrap();
    let refused = client
        .incremental_alter_configs(
            &topic,
            &[
                AlterConfigOp::Set("segment.ms".into(), "1".into()),
                AlterConfigOp::Set("retention.ms".into(), "forever".into()),
            ],
            false,
        )
        .await
        .unwrap_err();
    assert_eq!(refused.action(), spate::Action::Fatal, "{refused}");
    assert!(refused.to_string().contains("retention.ms"), "{refused}");
    let missing = client
        .describe_configs(&ConfigResource::Topic("nowhere".into()))
        .await
        .unwrap_err();
    assert!(
        missing.to_string().contains("UnknownTopicOrPartition"),
        "{missing}"
    );

    let seen = librdkafka(
        &b,
        &["describe:events:cleanup.policy,retention.ms,max.message.bytes,segment.ms"],
    );
    assert_eq!(
        seen,
        [
            "events cleanup.policy=compact,delete 1",
            "events max.message.bytes=2000000 1",
            "events retention.ms=604800000 5",
            "events segment.ms=604800000 5",
        ]
    );

    // The CLI, as kafka-configs.sh and kafka-topics.sh.
    let (ok, out, err) = cli(&[
        "topic",
        "alter-config",
        "-b",
        &b,
        "-t",
        "events",
        "--add-config",
        "retention.ms=120000,cleanup.policy=[delete]",
        "--delete-config",
        "max.message.bytes",
    ]);
    assert!(ok, "{err}");
    assert_eq!(out.trim(), "completed updating config for topic events");
    let (ok, _, err) = cli(&[
        "topic",
        "alter-config",
        "-b",
        &b,
        "-t",
        "events",
        "--add-config",
        "retention.ms=x",
    ]);
    assert!(!ok && err.contains("Not a number of type LONG"), "{err}");
    let (ok, out, err) = cli(&["topic", "describe", "-b", &b, "-t", "events"]);
    assert!(ok, "{err}");
    let lines: Vec<&str> = out.lines().collect();
    assert_eq!(lines.len(), 4, "{out}");
    assert!(
        lines[0].starts_with("Topic: events\tTopicId: ")
            && lines[0].ends_with(
                "\tPartitionCount: 3\tReplicationFactor: 1\tConfigs: cleanup.policy=delete,retention.ms=120000"
            ),
        "{out}"
    );
    assert_eq!(
        lines[1],
        "\tTopic: events\tPartition: 0\tLeader: 0\tReplicas: 0\tIsr: 0"
    );
    let (ok, out, _) = cli(&[
        "topic",
        "describe",
        "-b",
        &b,
        "-t",
        "events",
        "--all-configs",
    ]);
    assert!(ok);
    assert!(
        out.lines()
            .any(|l| l == "\tretention.ms=120000\tDYNAMIC_TOPIC_CONFIG")
            && out
                .lines()
                .any(|l| l == "\tsegment.ms=604800000\tDEFAULT_CONFIG"),
        "{out}"
    );
    let seen = librdkafka(
        &b,
        &["describe:events:cleanup.policy,retention.ms,max.message.bytes"],
    );
    assert_eq!(
        seen,
        [
            "events cleanup.policy=delete 1",
            "events max.message.bytes=1048588 5",
            "events retention.ms=120000 1",
        ]
    );
}
