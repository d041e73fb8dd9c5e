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

use std::collections::HashMap;
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

/// One request: its bytes out, and its response's bytes in (`None`: no response).
pub(crate) fn request(
    broker: &str,
    api: ApiKey,
    sent: usize,
    received: Option<usize>,
    took: Duration,
) {
    let api = api_name(api);
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
pub(crate) fn produced(topic: &str, records: u64, bytes: u64) {
    metrics::counter!(PRODUCED_RECORDS, "topic" => topic.to_owned()).increment(records);
    metrics::counter!(PRODUCED_BYTES, "topic" => topic.to_owned()).increment(bytes);
}

/// A partition's share of a fetch response: its bytes, and the lag it leaves.
pub(crate) fn fetched(topic: &str, partition: i32, bytes: usize, lag: i64) {
    if bytes > 0 {
        metrics::counter!(FETCHED_BYTES, "topic" => topic.to_owned()).increment(bytes as u64);
    }
    metrics::gauge!(CONSUMER_LAG, "topic" => topic.to_owned(), "partition" => partition.to_string())
        .set(lag.max(0) as f64);
}

/// Records handed to the application.
pub(crate) fn consumed(topic: &str, records: usize) {
    metrics::counter!(CONSUMED_RECORDS, "topic" => topic.to_owned()).increment(records as u64);
}

/// A transaction ended.
pub(crate) fn transaction(committed: bool) {
    let outcome = if committed { "commit" } else { "abort" };
    metrics::counter!(TRANSACTIONS, "outcome" => outcome).increment(1);
}

/// A group member received an assignment.
pub(crate) fn rebalance(group: &str) {
    metrics::counter!(REBALANCES, "group" => group.to_owned()).increment(1);
}
