//! The cluster: bootstrap, the metadata cache, the broker pool, retries, and admin operations.
//!
//! A [`Client`] is cheap to clone and shared by everything that talks to one cluster. It
//! connects lazily, one pipelined [`Connection`] per broker; a failed connection is replaced on
//! the next use, with exponential backoff and jitter between failed attempts. Metadata is
//! cached and refreshed when it is older than `metadata.max.age.ms`, when a request fails with
//! an error classified [`Action::RefreshMetadata`], and when a connection is lost.
//!
//! ```no_run
//! # async fn run() -> Result<(), spate::Error> {
//! use spate::cluster::{Client, NewTopic, OffsetSpec};
//! use spate::ClientConfig;
//!
//! let client = Client::connect(ClientConfig::new("localhost:9092")).await?;
//! client.create_topics(&[NewTopic::new("orders", 6, 1).config("cleanup.policy", "compact")]).await?;
//! let ends = client.list_offsets("orders", &[0, 1, 2], OffsetSpec::Latest).await?;
//! for meta in client.describe_topics(&["orders"]).await? {
//!     println!("{} has {} partitions; ends {ends:?}", meta.name, meta.partitions.len());
//! }
//! # Ok(()) }
//! ```
//!
//! # References
//! - Protocol guide, "Partitioning and bootstrapping" and "Metadata API".
//! - KIP-580 (exponential reconnect backoff), KIP-320 (leader epochs in metadata).

mod admin;
pub mod backoff;
mod configs;
mod coordinator;
pub mod metadata;

use std::collections::HashMap;
use std::future::Future;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use kafka_protocol::messages::metadata_request::MetadataRequestTopic;
use kafka_protocol::messages::{MetadataRequest, TopicName};
use kafka_protocol::protocol::StrBytes;

pub use admin::{ListedOffset, NewTopic, OffsetSpec};
pub use backoff::Backoff;
pub use configs::{AlterConfigOp, ConfigEntry, ConfigResource, ConfigSource};
pub use coordinator::{CoordinatorType, GroupMetadata};
pub use metadata::{BrokerMeta, ClusterMetadata, LeaderHint, PartitionMeta, TopicMeta};

use crate::config::ClientConfig;
use crate::error::codes::REBOOTSTRAP_REQUIRED;
use crate::error::{Action, Error, KafkaCode};
use crate::net::{ConnectOptions, Connection};

/// What leader hints did to the cached metadata ([`Client::apply_leader_hints`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct HintOutcome {
    /// Partitions the hints moved to the leader they name.
    pub moved: Vec<(String, i32)>,
    /// Partitions whose cached leader already was the one named.
    pub known: Vec<(String, i32)>,
}

impl HintOutcome {
    /// Whether `topic`-`partition` is at the leader a hint named (moved now or before).
    pub fn covers(&self, topic: &str, partition: i32) -> bool {
        self.moved
            .iter()
            .chain(&self.known)
            .any(|(t, p)| t == topic && *p == partition)
    }

    /// Whether the hints moved `topic`-`partition` just now.
    pub fn moved(&self, topic: &str, partition: i32) -> bool {
        self.moved
            .iter()
            .any(|(t, p)| t == topic && *p == partition)
    }
}

/// A handle to one cluster, shared by cloning.
#[derive(Clone)]
pub struct Client {
    inner: Arc<Inner>,
}

struct Inner {
    config: ClientConfig,
    options: ConnectOptions,
    metadata: RwLock<Arc<ClusterMetadata>>,
    /// Connections to brokers by node id.
    brokers: Mutex<HashMap<i32, Arc<Slot>>>,
    /// Connections to the bootstrap addresses, used until (and whenever) no broker answers.
    bootstrap: Vec<Arc<Slot>>,
    /// One metadata refresh at a time; callers that waited reuse the result.
    refreshing: tokio::sync::Mutex<()>,
    refreshes: AtomicU64,
    connects: AtomicU64,
    /// Coordinators found, by kind and key (group id, transactional id).
    coordinators: Mutex<HashMap<(CoordinatorType, String), i32>>,
}

/// One pooled connection: the address, the live connection if any, and the reconnect backoff.
struct Slot {
    address: Mutex<String>,
    state: tokio::sync::Mutex<SlotState>,
}

struct SlotState {
    conn: Option<Connection>,
    backoff: Backoff,
    retry_at: Option<tokio::time::Instant>,
}

impl Slot {
    fn new(address: String, config: &ClientConfig) -> Arc<Slot> {
        Arc::new(Slot {
            address: Mutex::new(address),
            state: tokio::sync::Mutex::new(SlotState {
                conn: None,
                backoff: Backoff::new(config.reconnect_backoff, config.reconnect_backoff_max),
                retry_at: None,
            }),
        })
    }

    fn address(&self) -> String {
        self.address
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }
}

/// Which topics a metadata refresh asks about.
#[derive(Debug, Clone, Copy)]
pub enum Topics<'a> {
    /// Brokers and controller only.
    None,
    /// These topics.
    Only(&'a [&'a str]),
    /// Every topic in the cluster.
    All,
}

impl Client {
    /// Validates `config`, then bootstraps: reads the cluster's brokers from the first bootstrap
    /// server that answers.
    pub async fn connect(config: ClientConfig) -> Result<Client, Error> {
        config.validate()?;
        let bootstrap = config
            .bootstrap_servers
            .iter()
            .map(|a| Slot::new(a.clone(), &config))
            .collect();
        let client = Client {
            inner: Arc::new(Inner {
                options: ConnectOptions::from_config(&config),
                config,
                metadata: RwLock::new(Arc::new(ClusterMetadata::default())),
                brokers: Mutex::new(HashMap::new()),
                bootstrap,
                refreshing: tokio::sync::Mutex::new(()),
                refreshes: AtomicU64::new(0),
                connects: AtomicU64::new(0),
                coordinators: Mutex::new(HashMap::new()),
            }),
        };
        client
            .with_retry("bootstrap", &[], || client.refresh_metadata(Topics::None))
            .await?;
        Ok(client)
    }

    /// The configuration this client was built with.
    pub fn config(&self) -> &ClientConfig {
        &self.inner.config
    }

    /// The cached metadata (may be stale; see [`refresh_metadata`](Self::refresh_metadata)).
    pub fn metadata(&self) -> Arc<ClusterMetadata> {
        self.inner
            .metadata
            .read()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Applies leader hints from a Produce or Fetch answer (KIP-951; see
    /// [`ClusterMetadata::with_leader_hints`]). A partition these hints moved can go to its
    /// new leader at once; one whose cached leader already is the one named (an earlier answer
    /// moved it) goes there after the usual backoff. Neither needs a metadata refresh.
    pub fn apply_leader_hints(
        &self,
        hints: &[LeaderHint],
        endpoints: &[BrokerMeta],
    ) -> HintOutcome {
        let mut outcome = HintOutcome::default();
        if hints.is_empty() {
            return outcome;
        }
        let mut metadata = self
            .inner
            .metadata
            .write()
            .unwrap_or_else(|p| p.into_inner());
        if let Some((next, moved)) = metadata.with_leader_hints(hints, endpoints) {
            tracing::debug!(partitions = moved.len(), "leaders moved by hints (KIP-951)");
            *metadata = Arc::new(next);
            outcome.moved = moved;
        }
        outcome.known = hints
            .iter()
            .filter(|h| {
                !outcome
                    .moved
                    .iter()
                    .any(|(t, p)| *t == h.topic && *p == h.partition)
            })
            .filter(|h| {
                metadata.topic(&h.topic).is_some_and(|t| {
                    t.partitions.iter().any(|p| {
                        p.partition == h.partition
                            && p.leader == h.leader
                            && p.leader_epoch >= h.leader_epoch
                    })
                })
            })
            .map(|h| (h.topic.clone(), h.partition))
            .collect();
        outcome
    }

    /// How many connections this client has opened, reconnects included.
    pub fn connections_opened(&self) -> u64 {
        self.inner.connects.load(Ordering::Relaxed)
    }

    /// How many metadata refreshes have completed.
    pub fn metadata_refreshes(&self) -> u64 {
        self.inner.refreshes.load(Ordering::Relaxed)
    }

    /// What this client (and the producers and consumers over it) has done so far: requests,
    /// errors, bytes and latency per broker, records and bytes per topic, lag per partition,
    /// transactions, rebalances, connections, metadata refreshes.
    pub fn statistics(&self) -> crate::telemetry::Statistics {
        let mut s = self.inner.options.stats.snapshot();
        s.connects = self.connections_opened();
        s.metadata_refreshes = self.metadata_refreshes();
        s
    }

    /// The running figures [`Client::statistics`] reads.
    pub(crate) fn stats(&self) -> &crate::telemetry::Stats {
        &self.inner.options.stats
    }

    /// Asks the cluster for fresh metadata and caches it. Tries brokers with a live connection
    /// first, then the other known brokers, then the bootstrap servers. A broker that answers
    /// REBOOTSTRAP_REQUIRED (Metadata v13+, KIP-1102) sends the client back to the bootstrap
    /// servers, on new connections (a name may lead elsewhere now).
    pub async fn refresh_metadata(
        &self,
        topics: Topics<'_>,
    ) -> Result<Arc<ClusterMetadata>, Error> {
        let seen = self.metadata_refreshes();
        let _one_at_a_time = self.inner.refreshing.lock().await;
        let current = self.metadata();
        // Someone refreshed while we waited: a broker-only refresh is answered by theirs.
        if self.metadata_refreshes() != seen && matches!(topics, Topics::None) {
            return Ok(current);
        }
        let request = metadata_request(
            topics,
            self.inner.config.allow_auto_create_topics.unwrap_or(false),
        );
        let mut tried = Vec::new();
        let mut last = None;
        let mut rebootstrap = false;
        for slot in self.refresh_candidates(&current) {
            let bootstrap = self.inner.bootstrap.iter().any(|b| Arc::ptr_eq(b, &slot));
            if rebootstrap && !bootstrap {
                continue;
            }
            let address = slot.address();
            let result = async {
                let conn = self.connect_slot(&slot).await?;
                conn.request(&request).await
            }
            .await;
            match result {
                Ok(response) if response.error_code == REBOOTSTRAP_REQUIRED => {
                    tracing::info!(broker = %address, "the broker asks for a rebootstrap");
                    if !rebootstrap {
                        rebootstrap = true;
                        for b in &self.inner.bootstrap {
                            b.state.lock().await.conn = None;
                        }
                    }
                    tried.push(address);
                    last = Some(Error::kafka(
                        KafkaCode(REBOOTSTRAP_REQUIRED),
                        "metadata",
                        None,
                    ));
                }
                Ok(response) => {
                    let fresh = ClusterMetadata::from_response(&response);
                    // Merged into the latest picture (a leader hint may have moved a partition
                    // since `current` was read).
                    let merged = {
                        let mut latest = self
                            .inner
                            .metadata
                            .write()
                            .unwrap_or_else(|p| p.into_inner());
                        let merged = Arc::new(latest.merge(fresh, matches!(topics, Topics::All)));
                        *latest = merged.clone();
                        merged
                    };
                    self.inner.refreshes.fetch_add(1, Ordering::Relaxed);
                    self.forget_moved_brokers(&merged);
                    tracing::debug!(
                        from = %address,
                        brokers = merged.brokers.len(),
                        topics = merged.topics.len(),
                        "metadata refreshed"
                    );
                    return Ok(merged);
                }
                Err(e) => {
                    tracing::debug!(broker = %address, error = %e, "metadata request failed");
                    tried.push(address);
                    // Report the worst failure: a broker that breaks the protocol matters more
                    // than one that is down.
                    let keep_last = last
                        .as_ref()
                        .is_some_and(|l: &Error| l.action() == Action::Fatal)
                        && e.action() != Action::Fatal;
                    if !keep_last {
                        last = Some(e);
                    }
                }
            }
        }
        Err(Error::NoBrokerAvailable {
            tried: tried.join(", "),
            last: Box::new(last.unwrap_or_else(|| {
                Error::UnknownInMetadata("no bootstrap servers configured".into())
            })),
        })
    }

    /// Slots to ask for metadata, best first: live connections, known brokers, bootstrap.
    fn refresh_candidates(&self, metadata: &ClusterMetadata) -> Vec<Arc<Slot>> {
        let mut live = Vec::new();
        let mut idle = Vec::new();
        for broker in metadata.brokers.values() {
            let slot = self.slot(broker);
            let usable = slot
                .state
                .try_lock()
                .map(|s| s.conn.as_ref().is_some_and(Connection::is_usable))
                .unwrap_or(false);
            if usable {
                live.push(slot);
            } else {
                idle.push(slot);
            }
        }
        fastrand::shuffle(&mut idle);
        live.extend(idle);
        live.extend(self.inner.bootstrap.iter().cloned());
        live
    }

    /// Drops pooled connections to brokers whose address changed or that left the cluster.
    fn forget_moved_brokers(&self, metadata: &ClusterMetadata) {
        let mut pool = self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner());
        pool.retain(|id, slot| {
            metadata
                .brokers
                .get(id)
                .is_some_and(|b| b.address() == slot.address())
        });
    }

    fn slot(&self, broker: &BrokerMeta) -> Arc<Slot> {
        let mut pool = self.inner.brokers.lock().unwrap_or_else(|p| p.into_inner());
        let address = broker.address();
        match pool.get(&broker.id) {
            Some(slot) if slot.address() == address => slot.clone(),
            _ => {
                // A broker that is also a bootstrap address shares its connection.
                let slot = match self.inner.bootstrap.iter().find(|s| s.address() == address) {
                    Some(bootstrap) => bootstrap.clone(),
                    None => Slot::new(address, &self.inner.config),
                };
                pool.insert(broker.id, slot.clone());
                slot
            }
        }
    }

    /// The live connection of a slot, connecting (after its backoff, if the last attempt failed)
    /// when there is none.
    async fn connect_slot(&self, slot: &Slot) -> Result<Connection, Error> {
        let mut state = slot.state.lock().await;
        if let Some(conn) = &state.conn {
            match conn.poisoned() {
                None => return Ok(conn.clone()),
                Some(cause) => {
                    tracing::info!(broker = %conn.broker(), %cause, "reconnecting");
                    state.conn = None;
                }
            }
        }
        if let Some(at) = state.retry_at {
            tokio::time::sleep_until(at).await;
        }
        let address = slot.address();
        match Connection::connect(&address, &self.inner.options).await {
            Ok(conn) => {
                state.backoff.reset();
                state.retry_at = None;
                state.conn = Some(conn.clone());
                self.inner.connects.fetch_add(1, Ordering::Relaxed);
                Ok(conn)
            }
            Err(e) => {
                let delay = state.backoff.next_delay(fastrand::f64());
                state.retry_at = Some(tokio::time::Instant::now() + delay);
                tracing::debug!(broker = %address, error = %e, ?delay, "connect failed");
                Err(e)
            }
        }
    }

    /// A connection to broker `id`.
    pub async fn broker(&self, id: i32) -> Result<Connection, Error> {
        let broker = self.metadata().brokers.get(&id).cloned().ok_or_else(|| {
            Error::UnknownInMetadata(format!("broker {id} is not in the metadata"))
        })?;
        self.connect_slot(&self.slot(&broker)).await
    }

    /// A new connection to broker `id`, outside the pool (closed when its last handle is
    /// dropped).
    pub(crate) async fn dedicated(&self, id: i32) -> Result<Connection, Error> {
        let broker = self.metadata().brokers.get(&id).cloned().ok_or_else(|| {
            Error::UnknownInMetadata(format!("broker {id} is not in the metadata"))
        })?;
        let conn = Connection::connect(&broker.address(), &self.inner.options).await?;
        self.inner.connects.fetch_add(1, Ordering::Relaxed);
        Ok(conn)
    }

    /// A connection to the controller (or any broker if the cluster does not name one).
    pub async fn controller(&self) -> Result<Connection, Error> {
        match self.metadata().controller {
            Some(id) => self.broker(id).await,
            None => self.any_broker().await,
        }
    }

    /// A connection to some broker: a live one if there is one.
    pub async fn any_broker(&self) -> Result<Connection, Error> {
        let mut last = None;
        for slot in self.refresh_candidates(&self.metadata()) {
            match self.connect_slot(&slot).await {
                Ok(conn) => return Ok(conn),
                Err(e) => last = Some(e),
            }
        }
        Err(last.unwrap_or_else(|| Error::UnknownInMetadata("no brokers known".into())))
    }

    /// A connection to the leader of a partition, refreshing metadata if the leader is unknown.
    pub async fn leader(&self, topic: &str, partition: i32) -> Result<Connection, Error> {
        let mut metadata = self.metadata();
        if metadata.leader(topic, partition).is_none() || self.is_stale(&metadata) {
            metadata = self.refresh_metadata(Topics::Only(&[topic])).await?;
        }
        let id = metadata
            .leader(topic, partition)
            .map(|b| b.id)
            .ok_or_else(|| no_leader(&metadata, topic, partition))?;
        self.broker(id).await
    }

    fn is_stale(&self, metadata: &ClusterMetadata) -> bool {
        metadata.fetched_at.elapsed() > self.inner.config.metadata_max_age
    }

    /// Runs `op` until it succeeds, it fails with an error that retrying cannot fix, or
    /// `default.api.timeout.ms` runs out. Between attempts: backoff with jitter, and a metadata
    /// refresh of `topics` when the error asks for one.
    pub async fn with_retry<T, F, Fut>(
        &self,
        what: &str,
        topics: &[&str],
        mut op: F,
    ) -> Result<T, Error>
    where
        F: FnMut() -> Fut,
        Fut: Future<Output = Result<T, Error>>,
    {
        let limit = self.inner.config.api_timeout;
        let deadline = Instant::now() + limit;
        let mut backoff = Backoff::new(
            self.inner.config.retry_backoff,
            self.inner.config.retry_backoff_max,
        );
        let timed_out = |last: Error| Error::Timeout {
            what: what.to_owned(),
            after_ms: limit.as_millis() as u64,
            last: Box::new(last),
        };
        let mut last: Option<Error> = None;
        loop {
            let remaining = deadline.saturating_duration_since(Instant::now());
            let err = match tokio::time::timeout(remaining, op()).await {
                Ok(Ok(value)) => return Ok(value),
                Ok(Err(e)) => e,
                Err(_) => {
                    return Err(timed_out(last.unwrap_or_else(|| {
                        Error::UnknownInMetadata(format!("{what}: no answer at all"))
                    })))
                }
            };
            match err.action() {
                Action::Retry => {}
                // The coordinator moved: the next attempt looks it up again.
                Action::FindCoordinator => self.forget_coordinators(),
                // A lost connection may mean the broker moved or left: look again.
                Action::RefreshMetadata | Action::Reconnect => {
                    if err.action() == Action::Reconnect {
                        self.forget_coordinators();
                    }
                    let selection = if topics.is_empty() {
                        Topics::None
                    } else {
                        Topics::Only(topics)
                    };
                    if let Err(refresh) = self.refresh_metadata(selection).await {
                        tracing::debug!(error = %refresh, "metadata refresh failed");
                    }
                }
                _ => return Err(err),
            }
            let delay = backoff.next_delay(fastrand::f64());
            if Instant::now() + delay >= deadline {
                return Err(timed_out(err));
            }
            tracing::debug!(what, error = %err, ?delay, "retrying");
            last = Some(err);
            tokio::time::sleep(delay).await;
        }
    }
}

fn no_leader(metadata: &ClusterMetadata, topic: &str, partition: i32) -> Error {
    match metadata.topics.get(topic) {
        Some(TopicMeta {
            error: Some(code), ..
        }) => Error::kafka(*code, format!("metadata for topic {topic}"), None),
        Some(t) if t.partitions.iter().any(|p| p.partition == partition) => {
            // LEADER_NOT_AVAILABLE: an election is under way.
            Error::kafka(
                KafkaCode(crate::error::codes::LEADER_NOT_AVAILABLE),
                format!("leader of {topic}-{partition}"),
                None,
            )
        }
        _ => Error::kafka(
            KafkaCode(crate::error::codes::UNKNOWN_TOPIC_OR_PARTITION),
            format!("{topic}-{partition}"),
            None,
        ),
    }
}

fn metadata_request(topics: Topics<'_>, auto_create: bool) -> MetadataRequest {
    let topics = match topics {
        Topics::All => None,
        Topics::None => Some(Vec::new()),
        Topics::Only(names) => Some(
            names
                .iter()
                .map(|n| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string((*n).to_owned()))))
                })
                .collect(),
        ),
    };
    MetadataRequest::default()
        .with_topics(topics)
        .with_allow_auto_topic_creation(auto_create)
}

/// Shortens a duration to whole milliseconds for request fields.
pub(crate) fn millis_i32(d: Duration) -> i32 {
    d.as_millis().min(i32::MAX as u128) as i32
}
