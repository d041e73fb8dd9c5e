//! Pipelines: a Kafka source, batch operators, a Kafka sink (Flink's classic job, without a
//! JVM and without an object per record).
//!
//! ```text
//!  Consumer ──batches──▶ lane 0: Chain ──▶ Producer::send_batch ─┐
//!   (one task)     ├───▶ lane 1: Chain ──▶ …                     ├──▶ acknowledgements ──▶ commit
//!                  └───▶ lane N-1 …        (fused: encoded into   │     (in order per partition)
//!                                           output batches)      ─┘
//! ```
//!
//! - **Lanes**: a partition always goes to the same lane (so its order holds), and lanes run
//!   on tokio's worker threads: throughput grows with partitions and cores. Every channel is
//!   bounded, so a slow sink slows the source (backpressure end to end).
//! - **Operators** ([`ops`]) work on whole [`Batch`]es; see [`Operator`] for writing one.
//! - **Sink**: the selected rows of each output batch go to [`Producer::send_batch`](crate::producer::Producer::send_batch), which
//!   encodes them straight into the output partitions' record batches. Each row keeps its
//!   source record's timestamp and headers; it goes to the source's partition number
//!   ([`Partitioning::SameAsInput`], the default) or wherever its key hashes.
//! - **At-least-once** (default): a source offset is committed only once the sink has
//!   acknowledged every output of it and of everything before it in its partition. After a
//!   crash, the pipeline resumes from the commit, so output may repeat but nothing is missing.
//! - **Exactly-once**: the producer is transactional; the input is read with read_committed;
//!   every `commit_interval` the pipeline waits for what it handed to the sink, commits the
//!   consumed offsets inside the transaction (KIP-447, fenced by the group generation) and
//!   commits the transaction. An error that leaves the transaction abortable (a write or the
//!   offsets refused, say because the group moved on) aborts it, moves every partition back
//!   to its last commit and goes on; what was aborted is never seen by read_committed readers
//!   and is written again. A producer fenced because its transaction timed out is replaced
//!   (unless the member is static: then a newer incarnation runs); other fatal errors, or five
//!   failed transactions in a row, stop the pipeline with the error.
//!
//! # Many members
//!
//! Run the same pipeline (same group, same topics) in as many processes as you like: the
//! consumer group spreads the input partitions over them, and members may come and go at any
//! time. When partitions move, their old owner first waits for what it handed to the sink and
//! commits it (at-least-once: the acknowledged offsets; exactly-once: the open transaction),
//! and only then lets the rebalance go on; the new owner starts from that commit. A member that
//! crashes leaves its partitions to the others after `session.timeout.ms`; they resume from
//! its last commit (at-least-once: what it wrote since is written again; exactly-once: its open
//! transaction is aborted, by the coordinator after `transaction.timeout.ms`, and read_committed
//! readers never see it).
//!
//! Under exactly-once each member needs its own `transactional.id`; the pipeline derives it:
//! `<prefix>-<group.instance.id>` for a static member, so a restarted member fences its own
//! previous incarnation and aborts what that left open at once, or `<prefix>-<random>`
//! otherwise. The prefix is the configured `transactional.id`, by default `spate-pipe-<group>`.
//! Within a member, each partition goes to one lane (a hash of topic and partition), so
//! `lanes` bounds the member's parallelism and order holds per partition.
//!
//! ```no_run
//! # async fn run() -> Result<(), spate::Error> {
//! use spate::consumer::ConsumerConfig;
//! use spate::pipeline::{ops, Chain, Pipeline};
//! use spate::producer::ProducerConfig;
//!
//! let stats = Pipeline::new(
//!     ConsumerConfig::new("localhost:9092").group_id("uppercase"),
//!     ProducerConfig::new("localhost:9092"),
//! )
//! .from_topics(&["in"])
//! .to_topic("out")
//! .operators(|| Chain::new().then(ops::uppercase()))
//! .run()
//! .await?;
//! println!("{} records in, {} out", stats.records_in, stats.records_out);
//! # Ok(()) }
//! ```

mod batch;
mod driver;
pub mod event_time;
pub mod join_state;
pub mod kernels;
pub mod ops;
pub mod repartition;
mod run;
pub mod state;
mod stateful;
pub mod stream_join;
pub mod table;
pub mod window;

pub use batch::{Batch, Column, ColumnBuilder, Selected};
pub use join_state::JoinType;
pub use ops::{BoxOperator, Chain, Operator};
pub use stateful::{Emit, Windowed};
pub use stream_join::StreamJoin;

use std::future::Future;
use std::sync::Arc;
use std::time::Duration;

use crate::consumer::ConsumerConfig;
use crate::error::Error;
use crate::producer::ProducerConfig;

/// Where each output record goes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Partitioning {
    /// The partition with the source's number (modulo the output's partition count): with as
    /// many output partitions as input ones, output order per partition is input order.
    #[default]
    SameAsInput,
    /// The producer's partitioner (murmur2 of the key; sticky for null keys).
    ByKey,
}

/// The delivery guarantee.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Guarantee {
    /// Offsets are committed after the output is acknowledged.
    #[default]
    AtLeastOnce,
    /// Output and offsets are committed in one transaction.
    ExactlyOnce,
}

/// A user sink: called with every output batch, in order per source partition.
pub type SinkFn = Arc<dyn Fn(&Batch) -> Result<(), Error> + Send + Sync>;

#[derive(Clone)]
enum Sink {
    Topic(String),
    Fn(SinkFn),
}

/// What a pipeline did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Stats {
    /// Records consumed.
    pub records_in: u64,
    /// Records handed to the sink.
    pub records_out: u64,
    /// Batches consumed.
    pub batches: u64,
    /// Offset commits (transactions committed, under exactly-once).
    pub commits: u64,
    /// Transactions aborted after an error the pipeline recovered from (exactly-once).
    pub aborts: u64,
    /// Changelog records read back to restore windowed state.
    pub restored: u64,
    /// Records a windowed pipeline dropped as late (every window of theirs had closed). Input
    /// read again after an abort counts again.
    pub late: u64,
}

/// A source → operators → sink job. Built with the methods below, started with
/// [`run`](Pipeline::run).
#[derive(Clone)]
pub struct Pipeline {
    consumer: ConsumerConfig,
    producer: ProducerConfig,
    inputs: Vec<String>,
    sink: Option<Sink>,
    chain: Arc<dyn Fn() -> Chain + Send + Sync>,
    lanes: usize,
    guarantee: Guarantee,
    partitioning: Partitioning,
    commit_interval: Duration,
    stop_at_end: bool,
    windowed: Option<Arc<Windowed>>,
    joined: Option<Arc<StreamJoin>>,
    /// An input whose records are deleted once committed, at most this often (the second
    /// stage of a repartitioned pipeline: its repartition topic).
    purge: Option<(String, Duration)>,
}

impl std::fmt::Debug for Pipeline {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Pipeline")
            .field("inputs", &self.inputs)
            .field("lanes", &self.lanes)
            .field("guarantee", &self.guarantee)
            .field("partitioning", &self.partitioning)
            .finish()
    }
}

impl Pipeline {
    /// A pipeline reading with `consumer` (with `group.id`: as a group member, committing its
    /// progress; without: every partition of the inputs from `auto.offset.reset`, committing
    /// nothing) and writing with `producer`.
    pub fn new(consumer: ConsumerConfig, producer: ProducerConfig) -> Self {
        Pipeline {
            consumer,
            producer,
            inputs: Vec::new(),
            sink: None,
            chain: Arc::new(Chain::new),
            lanes: std::thread::available_parallelism().map_or(2, |n| n.get()),
            guarantee: Guarantee::AtLeastOnce,
            partitioning: Partitioning::SameAsInput,
            commit_interval: Duration::from_secs(1),
            stop_at_end: false,
            windowed: None,
            joined: None,
            purge: None,
        }
    }

    /// The input topics.
    pub fn from_topics(mut self, topics: &[&str]) -> Self {
        self.inputs = topics.iter().map(|t| (*t).to_owned()).collect();
        self
    }

    /// Writes the output to `topic`.
    pub fn to_topic(mut self, topic: &str) -> Self {
        self.sink = Some(Sink::Topic(topic.to_owned()));
        self
    }

    /// Hands every output batch to `f` instead of a topic (an output that `f` accepted
    /// counts as acknowledged).
    pub fn to_fn(
        mut self,
        f: impl Fn(&Batch) -> Result<(), Error> + Send + Sync + 'static,
    ) -> Self {
        self.sink = Some(Sink::Fn(Arc::new(f)));
        self
    }

    /// The operators: `make` builds one chain per lane.
    pub fn operators(mut self, make: impl Fn() -> Chain + Send + Sync + 'static) -> Self {
        self.chain = Arc::new(make);
        self
    }

    /// Aggregates the operators' output in event-time windows (see [`Windowed`]): the output
    /// is one record per closed window, keyed by the grouping key, with the JSON value
    /// `{"key": K, "start": MS, "end": MS, "value": N}`. The state is kept per input partition,
    /// logged to the compacted changelog topic `<application>-<store>-changelog` (created if
    /// missing) and restored from it when a partition is (re)assigned; under exactly-once the
    /// changelog records go in the transaction with the output and the offsets. Needs a
    /// `group.id` (the default application id) and an output topic.
    pub fn windowed(mut self, windowed: Windowed) -> Self {
        self.windowed = Some(Arc::new(windowed));
        self
    }

    /// Joins two co-partitioned input streams within a time window (see [`StreamJoin`]): the
    /// inputs are the join's left and right topics (set them here or with
    /// [`from_topics`](Self::from_topics), left first), the output one record per result.
    /// The operators run on both inputs before the join. Buffered records are logged to the
    /// compacted changelog `<application>-<store>-changelog` and restored from it, as a
    /// windowed aggregation's state is. Needs a `group.id` and an output topic; not with
    /// [`windowed`](Self::windowed).
    pub fn join_streams(mut self, join: StreamJoin) -> Self {
        if self.inputs.is_empty() {
            self.inputs = vec![join.left.clone(), join.right.clone()];
        }
        self.joined = Some(Arc::new(join));
        self
    }

    /// How many lanes (default: the number of cores).
    pub fn lanes(mut self, lanes: usize) -> Self {
        self.lanes = lanes.max(1);
        self
    }

    /// At-least-once or exactly-once.
    pub fn guarantee(mut self, guarantee: Guarantee) -> Self {
        self.guarantee = guarantee;
        self
    }

    /// Where output records go.
    pub fn partitioning(mut self, partitioning: Partitioning) -> Self {
        self.partitioning = partitioning;
        self
    }

    /// How often progress is committed (default 1 s).
    pub fn commit_interval(mut self, interval: Duration) -> Self {
        self.commit_interval = interval;
        self
    }

    /// Stop once every assigned partition has been read to its end (a batch job, and the
    /// benchmark); otherwise the pipeline runs until stopped.
    pub fn stop_at_end(mut self, stop: bool) -> Self {
        self.stop_at_end = stop;
        self
    }

    /// Runs until an error, or the end of the input with [`stop_at_end`](Self::stop_at_end).
    pub async fn run(self) -> Result<Stats, Error> {
        self.run_until(std::future::pending()).await
    }

    /// Runs until `shutdown` resolves (then commits what was written and stops cleanly), an
    /// error, or the end of the input with [`stop_at_end`](Self::stop_at_end).
    pub async fn run_until(self, shutdown: impl Future<Output = ()>) -> Result<Stats, Error> {
        run::run(self, shutdown).await
    }
}

#[cfg(test)]
mod tests;
