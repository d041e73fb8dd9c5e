//! What the client does, as metrics through the [`metrics`](https://docs.rs/metrics) facade:
//! install any recorder (`metrics-exporter-prometheus`, an OpenTelemetry bridge, …) and these
//! appear; without one they cost a branch. Each request also runs in a `tracing` span named
//! `request` (API, version, broker, correlation id).
//!
//! | name | kind | labels | what |
//! |------|------|--------|------|
//! | `spate_requests_total` | counter | `broker`, `api` | requests sent |
//! | `spate_request_errors_total` | counter | `broker`, `api` | requests that got no response (connection lost, timeout) |
//! | `spate_request_latency_seconds` | histogram | `broker`, `api` | request to response |
//! | `spate_bytes_sent_total` | counter | `broker` | request bytes written |
//! | `spate_bytes_received_total` | counter | `broker` | response bytes read |
//! | `spate_produced_records_total` | counter | `topic` | records the brokers acknowledged |
//! | `spate_produced_bytes_total` | counter | `topic` | their record batches' bytes (compressed, as sent) |
//! | `spate_fetched_bytes_total` | counter | `topic` | record batch bytes fetched (as on the wire) |
//! | `spate_consumed_records_total` | counter | `topic` | records handed to the application |
//! | `spate_consumer_lag` | gauge | `topic`, `partition` | the partition's end (high watermark; last stable offset under read_committed) minus the fetch position, at the last fetch |
//! | `spate_transactions_total` | counter | `outcome` (`commit`, `abort`) | transactions ended |
//! | `spate_rebalances_total` | counter | `group` | assignments a member received |
//! | `spate_rebalance_seconds` | histogram | `group` | from subscribing or the first revocation to the assignment |
//! | `spate_produce_retries_total` | counter | `topic` | batches sent again after a retriable error |
//! | `spate_throttle_milliseconds_total` | counter | | time brokers asked the client to hold back (Produce, Fetch) |
//!
//! The same figures are kept per client, whatever the recorder:
//! [`Client::statistics`](crate::cluster::Client::statistics) returns a [`Statistics`] snapshot (librdkafka's
//! statistics, as a value), which `spate consume` and `spate bench` print every
//! `statistics.interval.ms` as a JSON line.

use std::collections::{BTreeMap, HashMap};
use std::fmt::Write as _;
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use kafka_protocol::messages::ApiKey;

/// Requests sent.
pub const REQUESTS: &str = "spate_requests_total";
/// Requests that got no response.
pub const REQUEST_ERRORS: &str = "spate_request_errors_total";
/// Request latency in seconds.
pub const REQUEST_LATENCY: &str = "spate_request_latency_seconds";
/// Request bytes written.
pub const BYTES_SENT: &str = "spate_bytes_sent_total";
/// Response bytes read.
pub const BYTES_RECEIVED: &str = "spate_bytes_received_total";
/// Records the brokers acknowledged.
pub const PRODUCED_RECORDS: &str = "spate_produced_records_total";
/// Bytes of the acknowledged record batches.
pub const PRODUCED_BYTES: &str = "spate_produced_bytes_total";
/// Record batch bytes fetched.
pub const FETCHED_BYTES: &str = "spate_fetched_bytes_total";
/// Records handed to the application.
pub const CONSUMED_RECORDS: &str = "spate_consumed_records_total";
/// End offset minus fetch position, per partition.
pub const CONSUMER_LAG: &str = "spate_consumer_lag";
/// Transactions ended, by outcome.
pub const TRANSACTIONS: &str = "spate_transactions_total";
/// Assignments received by a group member.
pub const REBALANCES: &str = "spate_rebalances_total";
/// How long rebalances took.
pub const REBALANCE_SECONDS: &str = "spate_rebalance_seconds";
/// Batches sent again.
pub const PRODUCE_RETRIES: &str = "spate_produce_retries_total";
/// Broker throttle time.
pub const THROTTLE: &str = "spate_throttle_milliseconds_total";

/// `api`'s name (`"Produce"`), made once per API.
fn api_name(api: ApiKey) -> &'static str {
    static NAMES: OnceLock<Mutex<HashMap<i16, &'static str>>> = OnceLock::new();
    let mut names = NAMES
        .get_or_init(Default::default)
        .lock()
        .unwrap_or_else(|p| p.into_inner());
    names
        .entry(api as i16)
        .or_insert_with(|| Box::leak(format!("{api:?}").into_boxed_str()))
}

/// One broker's figures in a [`Statistics`] snapshot.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct BrokerStatistics {
    /// Requests sent, by API name (`"Produce"`).
    pub requests: BTreeMap<&'static str, u64>,
    /// Requests that got no response (connection lost, timeout).
    pub errors: u64,
    /// Request bytes written.
    pub bytes_sent: u64,
    /// Response bytes read.
    pub bytes_received: u64,
    /// Responses received (the latency figures' count).
    pub responses: u64,
    /// Their summed latency.
    pub latency_total: Duration,
    /// The longest.
    pub latency_max: Duration,
}

impl BrokerStatistics {
    /// Mean request latency (zero before any response).
    pub fn latency_mean(&self) -> Duration {
        match self.responses {
            0 => Duration::ZERO,
            n => self.latency_total / n.min(u64::from(u32::MAX)) as u32,
        }
    }
}

/// One topic's figures in a [`Statistics`] snapshot.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TopicStatistics {
    /// Records the brokers acknowledged.
    pub produced_records: u64,
    /// Their batches' bytes (compressed, as sent).
    pub produced_bytes: u64,
    /// Batches acknowledged.
    pub produced_batches: u64,
    /// Their bytes before compression: `produced_bytes / produced_uncompressed_bytes` is the
    /// compression ratio.
    pub produced_uncompressed_bytes: u64,
    /// Record batch bytes fetched (as on the wire).
    pub fetched_bytes: u64,
    /// Records handed to the application.
    pub consumed_records: u64,
    /// Batches sent again after a retriable error.
    pub retries: u64,
}

impl TopicStatistics {
    fn write_json(&self, o: &mut String) {
        let _ = write!(
            o,
            ":{{\"produced_records\":{},\"produced_bytes\":{},\"produced_batches\":{},\
             \"produced_uncompressed_bytes\":{},\"fetched_bytes\":{},\"consumed_records\":{},\
             \"retries\":{}}}",
            self.produced_records,
            self.produced_bytes,
            self.produced_batches,
            self.produced_uncompressed_bytes,
            self.fetched_bytes,
            self.consumed_records,
            self.retries
        );
    }
}

/// What a client has done so far: [`Client::statistics`](crate::cluster::Client::statistics).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Statistics {
    /// Per broker address.
    pub brokers: BTreeMap<String, BrokerStatistics>,
    /// Per topic.
    pub topics: BTreeMap<String, TopicStatistics>,
    /// The same figures per partition.
    pub partitions: BTreeMap<(String, i32), TopicStatistics>,
    /// Per partition fetched: its end (high watermark, or last stable offset under
    /// read_committed) minus the fetch position, at the last fetch.
    pub lag: BTreeMap<(String, i32), i64>,
    /// Transactions committed.
    pub transactions_committed: u64,
    /// Transactions aborted.
    pub transactions_aborted: u64,
    /// Assignments received by group members.
    pub rebalances: u64,
    /// How long the last one took (from subscribing, or the first revocation, to the
    /// assignment).
    pub last_rebalance: Option<Duration>,
    /// Connections opened.
    pub connects: u64,
    /// Metadata refreshes.
    pub metadata_refreshes: u64,
    /// Time brokers asked the client to hold back (Produce and Fetch `throttle_time_ms`).
    pub throttle_time: Duration,
}

impl Statistics {
    /// Requests sent to every broker.
    pub fn requests(&self) -> u64 {
        self.brokers
            .values()
            .flat_map(|b| b.requests.values())
            .sum()
    }

    /// The snapshot as one line of JSON (`{"brokers":{...},"topics":{...},...}`), for logs.
    pub fn to_json(&self) -> String {
        let mut o = String::from("{\"brokers\":{");
        for (i, (name, b)) in self.brokers.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            crate::json::write_string(&mut o, name);
            o.push_str(":{\"requests\":{");
            for (j, (api, n)) in b.requests.iter().enumerate() {
                if j > 0 {
                    o.push(',');
                }
                let _ = write!(o, "\"{api}\":{n}");
            }
            let _ = write!(
                o,
                "}},\"errors\":{},\"bytes_sent\":{},\"bytes_received\":{},\
                 \"latency_mean_us\":{},\"latency_max_us\":{}}}",
                b.errors,
                b.bytes_sent,
                b.bytes_received,
                b.latency_mean().as_micros(),
                b.latency_max.as_micros()
            );
        }
        o.push_str("},\"topics\":{");
        for (i, (name, t)) in self.topics.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            crate::json::write_string(&mut o, name);
            t.write_json(&mut o);
        }
        o.push_str("},\"partitions\":{");
        for (i, ((topic, partition), t)) in self.partitions.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            crate::json::write_string(&mut o, &format!("{topic}-{partition}"));
            t.write_json(&mut o);
        }
        o.push_str("},\"lag\":{");
        for (i, ((topic, partition), lag)) in self.lag.iter().enumerate() {
            if i > 0 {
                o.push(',');
            }
            crate::json::write_string(&mut o, &format!("{topic}-{partition}"));
            let _ = write!(o, ":{lag}");
        }
        let _ = write!(
            o,
            "}},\"transactions_committed\":{},\"transactions_aborted\":{},\"rebalances\":{},\
             \"last_rebalance_ms\":{},\"connects\":{},\"metadata_refreshes\":{},\"throttle_ms\":{}}}",
            self.transactions_committed,
            self.transactions_aborted,
            self.rebalances,
            self.last_rebalance.map_or(-1, |d| d.as_millis() as i64),
            self.connects,
            self.metadata_refreshes,
            self.throttle_time.as_millis()
        );
        o
    }
}

/// A client's running figures, shared by its connections, producers and consumers.
#[derive(Debug, Default)]
pub struct Stats {
    inner: Mutex<Statistics>,
}

impl Stats {
    fn with(&self, f: impl FnOnce(&mut Statistics)) {
        f(&mut self.inner.lock().unwrap_or_else(|p| p.into_inner()));
    }

    /// Updates the topic's figures and its partition's with `f`.
    fn topic(&self, topic: &str, partition: i32, f: impl Fn(&mut TopicStatistics)) {
        self.with(|s| {
            match s.topics.get_mut(topic) {
                Some(t) => f(t),
                None => f(s.topics.entry(topic.to_owned()).or_default()),
            }
            f(s.partitions
                .entry((topic.to_owned(), partition))
                .or_default());
        });
    }

    /// A copy of the figures so far.
    pub fn snapshot(&self) -> Statistics {
        self.inner.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// One request: its bytes out, and its response's bytes in (`None`: no response).
pub(crate) fn request(
    stats: &Stats,
    broker: &str,
    api: ApiKey,
    sent: usize,
    received: Option<usize>,
    took: Duration,
) {
    let api = api_name(api);
    stats.with(|s| {
        let b = match s.brokers.get_mut(broker) {
            Some(b) => b,
            None => s.brokers.entry(broker.to_owned()).or_default(),
        };
        *b.requests.entry(api).or_default() += 1;
        b.bytes_sent += sent as u64;
        match received {
            Some(bytes) => {
                b.bytes_received += bytes as u64;
                b.responses += 1;
                b.latency_total += took;
                b.latency_max = b.latency_max.max(took);
            }
            None => b.errors += 1,
        }
    });
    let broker = broker.to_owned();
    metrics::counter!(REQUESTS, "broker" => broker.clone(), "api" => api).increment(1);
    metrics::counter!(BYTES_SENT, "broker" => broker.clone()).increment(sent as u64);
    match received {
        Some(bytes) => {
            metrics::counter!(BYTES_RECEIVED, "broker" => broker.clone()).increment(bytes as u64);
            metrics::histogram!(REQUEST_LATENCY, "broker" => broker, "api" => api)
                .record(took.as_secs_f64());
        }
        None => metrics::counter!(REQUEST_ERRORS, "broker" => broker, "api" => api).increment(1),
    }
}

/// A record batch the brokers acknowledged.
pub(crate) fn produced(
    stats: &Stats,
    (topic, partition): (&str, i32),
    records: u64,
    (bytes, raw): (u64, u64),
) {
    stats.topic(topic, partition, |t| {
        t.produced_records += records;
        t.produced_bytes += bytes;
        t.produced_uncompressed_bytes += raw;
        t.produced_batches += 1;
    });
    metrics::counter!(PRODUCED_RECORDS, "topic" => topic.to_owned()).increment(records);
    metrics::counter!(PRODUCED_BYTES, "topic" => topic.to_owned()).increment(bytes);
}

/// A partition's share of a fetch response: its bytes, and the lag it leaves.
pub(crate) fn fetched(stats: &Stats, topic: &str, partition: i32, bytes: usize, lag: i64) {
    stats.topic(topic, partition, |t| t.fetched_bytes += bytes as u64);
    stats.with(|s| {
        s.lag.insert((topic.to_owned(), partition), lag.max(0));
    });
    if bytes > 0 {
        metrics::counter!(FETCHED_BYTES, "topic" => topic.to_owned()).increment(bytes as u64);
    }
    metrics::gauge!(CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

/// Records handed to the application.
pub(crate) fn consumed(stats: &Stats, topic: &str, partition: i32, records: usize) {
    stats.topic(topic, partition, |t| t.consumed_records += records as u64);
    metrics::counter!(CONSUMED_RECORDS, "topic" => topic.to_owned()).increment(records as u64);
}

/// A transaction ended.
pub(crate) fn transaction(stats: &Stats, committed: bool) {
    stats.with(|s| match committed {
        true => s.transactions_committed += 1,
        false => s.transactions_aborted += 1,
    });
    let outcome = if committed { "commit" } else { "abort" };
    metrics::counter!(TRANSACTIONS, "outcome" => outcome).increment(1);
}

/// A batch goes again after a retriable error.
pub(crate) fn retried(stats: &Stats, topic: &str, partition: i32) {
    stats.topic(topic, partition, |t| t.retries += 1);
    metrics::counter!(PRODUCE_RETRIES, "topic" => topic.to_owned()).increment(1);
}

/// A broker's `throttle_time_ms` in a response.
pub(crate) fn throttled(stats: &Stats, millis: i32) {
    if millis > 0 {
        let d = Duration::from_millis(millis as u64);
        stats.with(|s| s.throttle_time += d);
        metrics::counter!(THROTTLE).increment(millis as u64);
    }
}

/// A group member received an assignment.
pub(crate) fn rebalance(stats: &Stats, group: &str, took: Option<Duration>) {
    stats.with(|s| {
        s.rebalances += 1;
        if took.is_some() {
            s.last_rebalance = took;
        }
    });
    if let Some(took) = took {
        metrics::histogram!(REBALANCE_SECONDS, "group" => group.to_owned())
            .record(took.as_secs_f64());
    }
    metrics::counter!(REBALANCES, "group" => group.to_owned()).increment(1);
}
