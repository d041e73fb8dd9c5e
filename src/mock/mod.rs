//! An embedded Kafka cluster for hermetic tests (feature `mock`): brokers on loopback ports that
//! speak the real wire protocol, with fault injection.
//!
//! What it serves: ApiVersions, Metadata, Produce, Fetch (v4–v16, with read_committed and a
//! long poll that answers when data arrives), ListOffsets, FindCoordinator, the classic group
//! protocol (JoinGroup, SyncGroup, Heartbeat, LeaveGroup, OffsetCommit, OffsetFetch; static
//! membership), the KIP-848 group protocol (ConsumerGroupHeartbeat, with the `uniform` and
//! `range` server-side assignors), share groups (KIP-932: ShareGroupHeartbeat, ShareFetch,
//! ShareAcknowledge, with record locks and delivery counts), and the transaction APIs (InitProducerId,
//! AddPartitionsToTxn, AddOffsetsToTxn, TxnOffsetCommit, EndTxn).
//! - Produce checks each batch's CRC and size and, for idempotent producers, the sequence
//!   numbers, as Kafka does (the last five batches per producer and partition are remembered,
//!   so a retried batch is answered DUPLICATE_SEQUENCE_NUMBER instead of written twice); a
//!   transactional batch must be in a partition added to its transaction. Batches are stored as
//!   received, with their base offset set.
//! - EndTxn writes COMMIT or ABORT markers; Fetch with read_committed stops at the last stable
//!   offset and lists the aborted transactions, so a read_committed consumer (spate's, or
//!   librdkafka's) drops aborted records. A second InitProducerId for a transactional id aborts
//!   what the previous session left open and bumps the epoch, fencing it.
//!
//! Faults: an error code (or a dropped connection, before or after the request is handled, or
//! added latency) for the next N requests of an API; a partition's leader moved; the
//! coordinator moved; a broker stopped and started again.
//!
//! ```no_run
//! # async fn run() -> Result<(), Box<dyn std::error::Error>> {
//! use spate::mock::{Fault, MockCluster};
//! use spate::wire::ApiKey;
//!
//! let cluster = MockCluster::start(3).await?;
//! cluster.create_topic("orders", 6);
//! // The next two produce requests are written, but their responses are lost.
//! cluster.inject(ApiKey::Produce, Fault::DropResponse, 2);
//! println!("bootstrap.servers={}", cluster.bootstrap());
//! # Ok(()) }
//! ```

mod admin;
mod configs;
mod consumer_group;
mod fetch;
mod group;
mod group_admin;
mod handlers;
mod inspect;
mod log;
mod security;
mod server;
mod server_assignor;
mod share;
mod share_fetch;
mod txn;

pub use consumer_group::{ConsumerGroupInfo, ConsumerMemberInfo};
pub use group::GroupInfo;
use log::PartitionLog;
pub use log::StoredBatch;
pub use security::Authentication;
pub use share::{SharePartitionInfo, ShareSettings};

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::wire::ApiKey;

/// Largest request frame the mock accepts.
const MAX_REQUEST: usize = 64 << 20;
/// How often a waiting request (long-poll fetch, join, sync) looks again.
const POLL_INTERVAL: Duration = Duration::from_millis(2);
/// Kafka's default `message.max.bytes`.
const DEFAULT_MAX_MESSAGE_BYTES: usize = 1_048_588;

/// What to do to a request instead of (or before) answering it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Fault {
    /// Answer with this error code (per partition for Produce) and change nothing.
    Error(i16),
    /// Close the connection without handling the request.
    DropRequest,
    /// Handle the request (a produce is written), then close the connection without answering.
    DropResponse,
    /// Wait this long, then handle the request normally.
    Delay(Duration),
}

struct Rule {
    api: ApiKey,
    /// Only requests from this `client.id`; `None`: any.
    client: Option<String>,
    fault: Fault,
    remaining: usize,
}

struct State {
    brokers: Vec<(i32, u16)>,
    topics: BTreeMap<String, Vec<PartitionLog>>,
    /// Each topic's id (KIP-516): a new one each time a topic is created.
    topic_ids: HashMap<String, u128>,
    rules: Vec<Rule>,
    next_producer_id: i64,
    requests: HashMap<i16, u64>,
    /// Transactions by transactional id.
    transactions: HashMap<String, txn::Transaction>,
    /// Topics named in a Metadata request that allows it are created with this many
    /// partitions (`auto.create.topics.enable`); `None`: never.
    auto_create: Option<i32>,
    /// Topics' configs set at creation or by IncrementalAlterConfigs (the rest are Kafka's
    /// defaults, `configs::topic_value`).
    topic_configs: HashMap<String, BTreeMap<String, String>>,
    /// Committed offsets by (group, topic, partition).
    offsets: HashMap<(String, String, i32), i64>,
    /// The leader epoch committed with each (KIP-320), where one was.
    offset_epochs: HashMap<(String, String, i32), i32>,
    /// Consumer groups by id.
    groups: HashMap<String, group::Group>,
    /// KIP-848 groups by id.
    consumer_groups: HashMap<String, consumer_group::ConsumerGroup>,
    /// Their session timeout and heartbeat interval.
    consumer_group_timeouts: consumer_group::Timeouts,
    /// Share groups (KIP-932): membership, share partitions, share sessions.
    shares: share::Shares,
    /// The broker that coordinates every group and transaction.
    coordinator: i32,
    /// Brokers stopped by [`MockCluster::stop_broker`].
    down: std::collections::BTreeSet<i32>,
    /// The largest batch accepted (`message.max.bytes`), log overhead included.
    max_message_bytes: usize,
    /// Incremental fetch sessions (KIP-227).
    fetch_sessions: fetch::Sessions,
    /// The size of the last request of each API, for tests.
    last_request_size: HashMap<i16, usize>,
    /// The version of the last request of each API, for tests.
    last_request_version: HashMap<i16, i16>,
    /// The finalized level of `transaction.version` (KIP-584 features): 2 turns transactions
    /// v2 on (KIP-890), as in a cluster formatted by Kafka 4.x.
    transaction_version: i16,
    /// The epoch of the finalized features, bumped when a level changes.
    features_epoch: i64,
    /// Woken after every request that may have changed the state, so waiting requests (long
    /// polls) look again at once, as Kafka completes delayed fetches when a partition changes.
    changed: Arc<tokio::sync::Notify>,
    /// SASL asked of new connections ([`MockCluster::require_authentication`]).
    authentication: Option<Arc<Authentication>>,
    /// TLS on new connections ([`MockCluster::serve_tls`]).
    #[cfg(feature = "tls")]
    tls: Option<tokio_rustls::TlsAcceptor>,
}

impl State {
    fn new(brokers: Vec<(i32, u16)>) -> State {
        State {
            brokers,
            topics: BTreeMap::new(),
            topic_ids: HashMap::new(),
            rules: Vec::new(),
            next_producer_id: 1000,
            requests: HashMap::new(),
            transactions: HashMap::new(),
            auto_create: None,
            topic_configs: HashMap::new(),
            offsets: HashMap::new(),
            offset_epochs: HashMap::new(),
            groups: HashMap::new(),
            consumer_groups: HashMap::new(),
            consumer_group_timeouts: consumer_group::Timeouts::default(),
            shares: share::Shares::default(),
            coordinator: 0,
            down: std::collections::BTreeSet::new(),
            max_message_bytes: DEFAULT_MAX_MESSAGE_BYTES,
            fetch_sessions: fetch::Sessions::default(),
            last_request_size: HashMap::new(),
            last_request_version: HashMap::new(),
            transaction_version: 2,
            features_epoch: 1,
            changed: Arc::new(tokio::sync::Notify::new()),
            authentication: None,
            #[cfg(feature = "tls")]
            tls: None,
        }
    }

    fn create_topic(&mut self, name: &str, partitions: i32) {
        let n = self.brokers.len() as i32;
        let logs = (0..partitions).map(|p| PartitionLog::new(p % n)).collect();
        self.topics.insert(name.to_owned(), logs);
        self.topic_ids.insert(name.to_owned(), fastrand::u128(1..));
    }

    /// Grows a topic to `partitions`, new leaders as at creation.
    fn grow_topic(&mut self, name: &str, partitions: i32) {
        let n = self.brokers.len() as i32;
        if let Some(logs) = self.topics.get_mut(name) {
            for p in logs.len() as i32..partitions {
                logs.push(PartitionLog::new(p % n));
            }
        }
    }

    /// The topic an id names, if any.
    fn topic_by_id(&self, id: u128) -> Option<&str> {
        self.topic_ids
            .iter()
            .find(|(_, known)| **known == id)
            .map(|(name, _)| name.as_str())
    }

    /// What `make(node id, port)` builds for each broker in `ids`, once each, in order of id:
    /// the endpoints a KIP-951 answer names for the leaders it points to.
    fn endpoints<T>(&self, mut ids: Vec<i32>, make: impl Fn(i32, i32) -> T) -> Vec<T> {
        ids.sort_unstable();
        ids.dedup();
        ids.into_iter()
            .filter_map(|id| {
                let (_, port) = self.brokers.iter().find(|(b, _)| *b == id)?;
                Some(make(id, i32::from(*port)))
            })
            .collect()
    }

    /// The first live broker.
    fn controller(&self) -> i32 {
        self.brokers
            .iter()
            .map(|(id, _)| *id)
            .find(|id| !self.down.contains(id))
            .unwrap_or(0)
    }

    /// The fault for the next request of `api` from `client`, if one is armed.
    fn take_fault(&mut self, api: ApiKey, client: Option<&str>) -> Option<Fault> {
        *self.requests.entry(api as i16).or_default() += 1;
        let rule = self.rules.iter_mut().find(|r| {
            r.api == api && r.remaining > 0 && (r.client.is_none() || r.client.as_deref() == client)
        })?;
        rule.remaining -= 1;
        let fault = rule.fault;
        self.rules.retain(|r| r.remaining > 0);
        Some(fault)
    }
}

/// An in-process cluster. Stops when dropped.
pub struct MockCluster {
    state: Arc<Mutex<State>>,
    tasks: Vec<JoinHandle<()>>,
    /// Per broker: its accept loop, and the signal that closes its connections.
    brokers: Mutex<Vec<BrokerTask>>,
}

struct BrokerTask {
    accept: Option<JoinHandle<()>>,
    stop: tokio::sync::watch::Sender<bool>,
}

impl Drop for MockCluster {
    fn drop(&mut self) {
        for task in &self.tasks {
            task.abort();
        }
        for broker in self.brokers.get_mut().unwrap_or_else(|p| p.into_inner()) {
            if let Some(accept) = broker.accept.take() {
                accept.abort();
            }
            let _ = broker.stop.send(true);
        }
    }
}

impl MockCluster {
    /// Starts `brokers` brokers (ids 0..n) on free loopback ports.
    pub async fn start(brokers: usize) -> std::io::Result<MockCluster> {
        MockCluster::start_at(brokers, 0).await
    }

    /// Starts `brokers` brokers (ids 0..n) on loopback, broker `i` on port `first_port + i`
    /// (free ports for `first_port` 0).
    pub async fn start_at(brokers: usize, first_port: u16) -> std::io::Result<MockCluster> {
        let mut listeners = Vec::new();
        for i in 0..brokers.max(1) {
            let port = match first_port {
                0 => 0,
                p => p.checked_add(i as u16).ok_or_else(|| {
                    std::io::Error::new(std::io::ErrorKind::InvalidInput, "port out of range")
                })?,
            };
            listeners.push(TcpListener::bind(("127.0.0.1", port)).await?);
        }
        let state = Arc::new(Mutex::new(State::new(
            listeners
                .iter()
                .enumerate()
                .map(|(i, l)| Ok((i as i32, l.local_addr()?.port())))
                .collect::<std::io::Result<_>>()?,
        )));
        let brokers = listeners
            .into_iter()
            .enumerate()
            .map(|(id, listener)| {
                let (stop, stopped) = tokio::sync::watch::channel(false);
                let accept = tokio::spawn(server::accept_loop(
                    state.clone(),
                    id as i32,
                    listener,
                    stopped,
                ));
                BrokerTask {
                    accept: Some(accept),
                    stop,
                }
            })
            .collect();
        let tasks = vec![tokio::spawn(expire_members(Arc::downgrade(&state)))];
        Ok(MockCluster {
            state,
            tasks,
            brokers: Mutex::new(brokers),
        })
    }

    /// Stops a broker as if its process died: its port refuses connections, its open
    /// connections close mid-request, and metadata no longer lists it. The partitions it led
    /// fail over to the next live broker (their log is shared, as if every replica were in
    /// sync), and so does the coordinator.
    pub fn stop_broker(&self, broker: i32) {
        let mut brokers = lock(&self.brokers);
        let Some(task) = brokers.get_mut(broker as usize) else {
            return;
        };
        if let Some(accept) = task.accept.take() {
            accept.abort();
        }
        let _ = task.stop.send(true);
        let mut state = self.state();
        state.down.insert(broker);
        state.fetch_sessions.clear(Some(broker));
        let live: Vec<i32> = state
            .brokers
            .iter()
            .map(|(id, _)| *id)
            .filter(|id| !state.down.contains(id))
            .collect();
        if live.is_empty() {
            return;
        }
        for logs in state.topics.values_mut() {
            for (p, log) in logs.iter_mut().enumerate() {
                if log.leader == broker {
                    log.leader = live[p % live.len()];
                    log.bump_epoch();
                }
            }
        }
        if state.coordinator == broker {
            state.coordinator = live[0];
        }
    }

    /// Starts a stopped broker again on its old port. Leadership does not move back.
    pub async fn start_broker(&self, broker: i32) -> std::io::Result<()> {
        let port = match self.state().brokers.get(broker as usize) {
            Some((_, port)) => *port,
            None => return Ok(()),
        };
        // The stopped broker's sockets close as its tasks wind down: retry briefly.
        let mut tries = 0;
        let listener = loop {
            let socket = tokio::net::TcpSocket::new_v4()?;
            socket.set_reuseaddr(true)?;
            let bound = socket
                .bind(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
                .and_then(|()| socket.listen(1024));
            match bound {
                Ok(listener) => break listener,
                Err(e) if e.kind() == std::io::ErrorKind::AddrInUse && tries < 100 => {
                    tries += 1;
                    tokio::time::sleep(Duration::from_millis(20)).await;
                }
                Err(e) => return Err(e),
            }
        };
        let (stop, stopped) = tokio::sync::watch::channel(false);
        let accept = tokio::spawn(server::accept_loop(
            self.state.clone(),
            broker,
            listener,
            stopped,
        ));
        let mut brokers = lock(&self.brokers);
        if let Some(task) = brokers.get_mut(broker as usize) {
            if let Some(old) = task.accept.replace(accept) {
                old.abort();
            }
            task.stop = stop;
        }
        self.state().down.remove(&broker);
        Ok(())
    }

    fn state(&self) -> MutexGuard<'_, State> {
        lock(&self.state)
    }

    /// `host:port` of every broker, comma-separated.
    pub fn bootstrap(&self) -> String {
        self.state()
            .brokers
            .iter()
            .map(|(_, port)| format!("127.0.0.1:{port}"))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Creates a topic; partition `p`'s leader is broker `p % brokers`.
    pub fn create_topic(&self, name: &str, partitions: i32) {
        self.state().create_topic(name, partitions);
    }

    /// Creates topics on first use, as Apache Kafka does by default
    /// (`auto.create.topics.enable=true`, `num.partitions`): a Metadata request that names a
    /// topic that does not exist and allows auto-creation creates it with `partitions`
    /// partitions, and is answered LEADER_NOT_AVAILABLE for it (the client asks again), as
    /// Kafka answers while the creation completes. `None` turns it off (the default here).
    pub fn auto_create_topics(&self, partitions: Option<i32>) {
        self.state().auto_create = partitions.map(|p| p.max(1));
    }

    /// Grows a topic to `partitions` (as an administrator's CreatePartitions does); the new
    /// partitions' leaders follow [`create_topic`](Self::create_topic)'s rule.
    pub fn add_partitions(&self, name: &str, partitions: i32) {
        self.state().grow_topic(name, partitions);
    }

    /// The version of the last request of `api`.
    pub fn last_request_version(&self, api: ApiKey) -> Option<i16> {
        self.state()
            .last_request_version
            .get(&(api as i16))
            .copied()
    }

    /// The size in bytes of the last request of `api` (its frame, without the size prefix).
    pub fn last_request_size(&self, api: ApiKey) -> Option<usize> {
        self.state().last_request_size.get(&(api as i16)).copied()
    }

    /// How many incremental fetch sessions (KIP-227) the brokers keep.
    pub fn fetch_sessions(&self) -> usize {
        self.state().fetch_sessions.len()
    }

    /// How many incremental fetch requests (KIP-227) have been answered.
    pub fn incremental_fetches(&self) -> u64 {
        self.state().fetch_sessions.incremental
    }

    /// Sets how many fetch sessions the cluster keeps (Kafka's
    /// `max.incremental.fetch.session.cache.slots`, default 1000; 0 turns sessions off); past
    /// it, the least recently used session is evicted.
    pub fn set_fetch_session_slots(&self, slots: usize) {
        self.state().fetch_sessions.slots = slots;
    }

    /// Forgets every fetch session: their next incremental request gets
    /// FETCH_SESSION_ID_NOT_FOUND.
    pub fn evict_fetch_sessions(&self) {
        self.state().fetch_sessions.clear(None);
    }

    /// Makes the coordinator forget a group member, as if its session had expired: it is
    /// removed and the group rebalances; its next request gets UNKNOWN_MEMBER_ID. False if the
    /// group has no such member.
    pub fn expire_member(&self, group: &str, member_id: &str) -> bool {
        let mut state = self.state();
        if let Some(g) = state.consumer_groups.get_mut(group) {
            return g.expire(member_id);
        }
        match state.groups.get_mut(group) {
            Some(g) => g.expire(member_id, std::time::Instant::now()),
            None => false,
        }
    }

    /// Sets the KIP-848 groups' `group.consumer.session.timeout.ms` and
    /// `group.consumer.heartbeat.interval.ms` (Kafka's defaults, 45 s and 5 s, otherwise).
    pub fn set_consumer_group_timeouts(&self, session: Duration, heartbeat: Duration) {
        self.state().consumer_group_timeouts = consumer_group::Timeouts { session, heartbeat };
    }

    /// Sets the share groups' settings (lock duration, delivery count limit, where a new
    /// share partition starts, session timeout and heartbeat interval).
    pub fn set_share_settings(&self, settings: ShareSettings) {
        self.state().shares.settings = settings;
    }

    /// A share partition's state in a share group (start offset, archived and acquired
    /// records), once a fetch has created it.
    pub fn share_partition(
        &self,
        group: &str,
        topic: &str,
        partition: i32,
    ) -> Option<SharePartitionInfo> {
        self.state().shares.partition_info(group, topic, partition)
    }

    /// A share group's members and their partitions, if the group exists.
    pub fn share_group_members(&self, group: &str) -> Option<BTreeMap<String, Vec<(String, i32)>>> {
        self.state().shares.members(group)
    }

    /// A KIP-848 group's epochs and members, if the group exists.
    pub fn consumer_group(&self, group: &str) -> Option<ConsumerGroupInfo> {
        let mut state = self.state();
        let timeouts = state.consumer_group_timeouts;
        let group = state.consumer_groups.get_mut(group)?;
        group.tick(std::time::Instant::now(), timeouts);
        Some(group.info())
    }

    /// Applies `fault` to the next `times` requests of `api` (on any broker).
    pub fn inject(&self, api: ApiKey, fault: Fault, times: usize) {
        self.state().rules.push(Rule {
            api,
            client: None,
            fault,
            remaining: times,
        });
    }

    /// [`inject`](Self::inject), for requests from one `client.id` only: a test's own
    /// clients (filling a topic, reading it back) do not take the fault meant for the client
    /// under test.
    pub fn inject_for(&self, client_id: &str, api: ApiKey, fault: Fault, times: usize) {
        self.state().rules.push(Rule {
            api,
            client: Some(client_id.to_owned()),
            fault,
            remaining: times,
        });
    }

    /// Finalizes `transaction.version` at `level` (0 to 2; 2 by default, as in a cluster that
    /// Kafka 4.x formatted): below 2 the cluster runs transactions v1 only, as a Kafka 3.x
    /// cluster or one not upgraded does (KIP-890, KIP-1022). Clients see it in ApiVersions.
    pub fn set_transaction_version(&self, level: i16) {
        let mut state = self.state();
        state.transaction_version = level.clamp(0, 2);
        state.features_epoch += 1;
    }

    /// Sets the largest batch the brokers accept (`message.max.bytes`); a larger one is
    /// answered MESSAGE_TOO_LARGE.
    pub fn set_max_message_bytes(&self, bytes: usize) {
        self.state().max_message_bytes = bytes;
    }

    /// Disarms every fault still armed.
    pub fn clear_faults(&self) {
        self.state().rules.clear();
    }

    /// Faults still armed.
    pub fn pending_faults(&self) -> usize {
        self.state()
            .rules
            .iter()
            .fold(0, |n, r| n.saturating_add(r.remaining))
    }

    /// Moves a partition's leadership to `broker` (bumping the leader epoch). Requests to the
    /// old leader get NOT_LEADER_OR_FOLLOWER from now on.
    pub fn move_leader(&self, topic: &str, partition: i32, broker: i32) {
        if let Some(log) = self
            .state()
            .topics
            .get_mut(topic)
            .and_then(|t| t.get_mut(partition as usize))
        {
            log.leader = broker;
            log.bump_epoch();
        }
    }

    /// An unclean election (KIP-320's case): `broker` becomes the leader of a partition with a
    /// log that ends at `offset` (rounded down to a batch boundary), so the records after it
    /// are gone and later ones take their offsets, in a new leader epoch. Returns the new log
    /// end.
    pub fn unclean_election(&self, topic: &str, partition: i32, broker: i32, offset: i64) -> i64 {
        let mut state = self.state();
        let Some(log) = state
            .topics
            .get_mut(topic)
            .and_then(|t| t.get_mut(partition as usize))
        else {
            return -1;
        };
        log.leader = broker;
        log.truncate_and_elect(offset)
    }

    /// The leader of a partition.
    pub fn leader(&self, topic: &str, partition: i32) -> Option<i32> {
        self.state()
            .topics
            .get(topic)
            .and_then(|t| t.get(partition as usize))
            .map(|l| l.leader)
    }

    /// Moves the coordinator of every group and transaction to `broker`: group requests to
    /// the old one get NOT_COORDINATOR from now on.
    pub fn move_coordinator(&self, broker: i32) {
        self.state().coordinator = broker;
    }
}

fn lock<T>(state: &Mutex<T>) -> MutexGuard<'_, T> {
    state.lock().unwrap_or_else(|p| p.into_inner())
}

/// Expires silent group members and timed-out transactions even when no request comes to
/// notice it.
async fn expire_members(state: std::sync::Weak<Mutex<State>>) {
    loop {
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Some(state) = state.upgrade() else { return };
        let now = std::time::Instant::now();
        let mut state = lock(&state);
        for group in state.groups.values_mut() {
            group.tick(now);
        }
        txn::expire(&mut state, now);
    }
}

/// For the fuzz targets (`cargo fuzz` builds with `--cfg fuzzing`): one request frame (size
/// prefix removed) through the embedded cluster's request handling, on a one-broker cluster
/// with a two-partition topic `t`. Whatever the bytes, it must return (an answer or a reason
/// to close the connection), never panic or allocate beyond the frame.
#[cfg(fuzzing)]
#[doc(hidden)]
pub fn fuzz_request(frame: &[u8]) {
    use bytes::{Bytes, BytesMut};
    let state = Mutex::new(State::new(vec![(0, 9092)]));
    lock(&state).create_topic("t", 2);
    let Some(&[a0, a1]) = frame.get(..2) else {
        return;
    };
    let Ok(api) = ApiKey::try_from(i16::from_be_bytes([a0, a1])) else {
        return;
    };
    let mut out = BytesMut::new();
    let _ = handlers::handle(
        &state,
        0,
        api,
        Bytes::copy_from_slice(frame),
        None,
        &mut security::Session::default(),
        &mut out,
    );
}
