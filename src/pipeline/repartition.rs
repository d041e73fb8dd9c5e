//! Re-keying through a repartition topic ([`Windowed::repartition`]), as Kafka Streams does:
//! windowed state is kept per input partition, so every record of a key must come from one
//! partition. When the input is not partitioned by the grouping key, the pipeline runs as two
//! stages in one process:
//!
//! 1. **Re-key**: the input, through the operators, keyed by the grouping key (records without
//!    it are dropped, as the windows would skip them) and written to the topic
//!    `<application>-<store>-repartition` (created if missing, as many partitions as the
//!    largest input, `cleanup.policy=delete`), partitioned by the producer's partitioner
//!    (murmur2 of the key, as Kafka Streams and the Java client do). Read by the pipeline's
//!    group.
//! 2. **Aggregate**: the repartition topic, from its earliest offset, by the group
//!    `<application>-<store>-repartition` (named like the topic), aggregated by record key
//!    into the output, with the changelog `<application>-<store>-changelog` as without
//!    repartitioning.
//!
//! Each stage has its own consumer, producer and (under exactly-once) transactions: a record
//! is either in a committed transaction of the first stage together with its input's offset,
//! or read again; the second stage counts what the first committed exactly once. A failure of
//! either stage stops the other. With `stop_at_end`, the second stage stops once it has read
//! the repartition topic up to where it ended when the first stage finished.

use std::collections::HashMap;
use std::future::Future;
use std::sync::Arc;

use tokio::sync::watch;

use super::event_time::KeySource;
use super::run::{missing, Tp};
use super::stateful::ensure_topic;
use super::{ops, Chain, Partitioning, Pipeline, Sink, Stats, Windowed};
use crate::cluster::{Client, OffsetSpec};
use crate::consumer::OffsetReset;
use crate::error::Error;

/// The repartition topic of `store` in `application`.
pub fn repartition_topic(application: &str, store: &str) -> String {
    format!("{application}-{store}-repartition")
}

/// Runs `pipeline` (windowed, with `repartition` set) as its two stages.
pub(super) async fn run(
    pipeline: Pipeline,
    shutdown: impl Future<Output = ()>,
) -> Result<Stats, Error> {
    let windowed = pipeline.windowed.clone().expect("a windowed pipeline");
    let group = pipeline
        .consumer
        .group_id
        .clone()
        .ok_or_else(|| missing("group.id (a repartitioned pipeline reads as a group)"))?;
    let application = windowed
        .application
        .clone()
        .unwrap_or_else(|| group.clone());
    let topic = repartition_topic(&application, &windowed.store);
    if pipeline.inputs.is_empty() {
        return Err(missing("input topics (from_topics)"));
    }

    let client = Client::connect(pipeline.consumer.client.clone()).await?;
    let mut partitions = 1;
    for input in &pipeline.inputs {
        partitions = partitions.max(client.partition_count(input).await?);
    }
    ensure_topic(&client, &topic, partitions, "delete").await?;

    // Stage 1: the input, through the operators, re-keyed, to the repartition topic.
    let mut first = pipeline.clone();
    first.windowed = None;
    first.sink = Some(Sink::Topic(topic.clone()));
    first.partitioning = Partitioning::ByKey;
    let chain = pipeline.chain.clone();
    let key = windowed.key.clone();
    first.chain = Arc::new(move || rekey(chain(), &key));

    // Stage 2: the repartition topic, keyed, aggregated.
    let mut second = pipeline;
    second.inputs = vec![topic.clone()];
    second.chain = Arc::new(Chain::new);
    second.windowed = Some(Arc::new(Windowed {
        application: Some(application),
        key: KeySource::RecordKey,
        repartition: false,
        ..(*windowed).clone()
    }));
    second.purge = windowed.purge_interval.map(|every| (topic.clone(), every));
    second.consumer.group_id = Some(topic.clone());
    second.consumer.auto_offset_reset = OffsetReset::Earliest;
    if let Some(instance) = &mut second.consumer.group_instance_id {
        instance.push_str("-repartition");
    }
    if let Some(prefix) = &mut second.producer.transactional_id {
        prefix.push_str("-repartition");
    }
    let stop_at_end = first.stop_at_end;

    let (stop, stopped) = watch::channel(false);
    let (gate, end_at) = watch::channel(None);
    let first = async {
        let result = super::run::run_stage(first, wait(stopped.clone()), None).await;
        match &result {
            Ok(_) if stop_at_end => match end_offsets(&client, &topic, partitions).await {
                Ok(offsets) => {
                    gate.send_replace(Some(Arc::new(offsets)));
                }
                Err(e) => {
                    stop.send_replace(true);
                    return Err(e);
                }
            },
            Ok(_) => {}
            Err(_) => {
                stop.send_replace(true);
            }
        }
        result
    };
    let second = async {
        let gate = stop_at_end.then_some(end_at);
        let result = super::run::run_stage(second, wait(stopped.clone()), gate).await;
        if result.is_err() {
            stop.send_replace(true);
        }
        result
    };
    let both = async { tokio::join!(first, second) };
    tokio::pin!(both);
    let (first, second) = tokio::select! {
        results = &mut both => results,
        () = shutdown => {
            stop.send_replace(true);
            both.await
        }
    };
    let (first, second) = (first?, second?);
    Ok(Stats {
        records_in: first.records_in,
        records_out: second.records_out,
        batches: first.batches,
        commits: first.commits + second.commits,
        aborts: first.aborts + second.aborts,
        restored: second.restored,
        late: second.late,
    })
}

/// Resolves once `stop` is set (never if its sender is gone without setting it).
async fn wait(mut stop: watch::Receiver<bool>) {
    if stop.wait_for(|s| *s).await.is_err() {
        std::future::pending().await
    }
}

/// Where each partition of `topic` ends now.
async fn end_offsets(
    client: &Client,
    topic: &str,
    partitions: i32,
) -> Result<HashMap<Tp, i64>, Error> {
    let all: Vec<i32> = (0..partitions).collect();
    let listed = client.list_offsets(topic, &all, OffsetSpec::Latest).await?;
    let topic: Arc<str> = Arc::from(topic);
    Ok(listed
        .into_iter()
        .map(|l| ((topic.clone(), l.partition), l.offset))
        .collect())
}

/// Keys each record by `key` (a record key stays), dropping records without it.
fn rekey(chain: Chain, key: &KeySource) -> Chain {
    match key {
        KeySource::RecordKey => chain,
        KeySource::JsonField(field) => chain
            .then(ops::key_from_json(field))
            .then(ops::filter(|key, _| key.is_some())),
    }
}
