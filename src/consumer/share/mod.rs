//! Share groups (KIP-932, "queues for Kafka"): many consumers read the same partitions, each
//! record handed to one of them at a time. The broker *acquires* records for a consumer for a
//! lock duration and counts deliveries; the consumer acknowledges each record: **accept**
//! (done), **release** (give it back for redelivery) or **reject** (never deliver it again). A
//! record not acknowledged before its lock expires (a crashed consumer) is delivered again, and
//! one delivered `group.share.delivery.count.limit` times is archived.
//!
//! ```no_run
//! # async fn run() -> Result<(), spate::Error> {
//! use spate::consumer::share::{AcknowledgeType, ShareConfig, ShareConsumer};
//!
//! let config = ShareConfig::from_pairs([
//!     ("bootstrap.servers", "localhost:9092"),
//!     ("group.id", "workers"),
//!     ("share.acknowledgement.mode", "explicit"),
//! ])?;
//! let mut consumer = ShareConsumer::new(config).await?;
//! consumer.subscribe(&["jobs"])?;
//! loop {
//!     let batch = consumer.next().await?; // acquired records, zero-copy columns
//!     for record in batch.records() {
//!         let ok = record.value().is_some();
//!         let kind = if ok { AcknowledgeType::Accept } else { AcknowledgeType::Reject };
//!         consumer.acknowledge(&batch, record.offset(), kind)?;
//!     }
//!     consumer.commit().await?; // or let the next `next()` carry the acknowledgements
//! }
//! # }
//! ```
//!
//! In the default `implicit` mode every record `next` handed out is accepted when `next` is
//! called again (or on `commit` / `close`).
//!
//! # References
//! - KIP-932; the Java client's `KafkaShareConsumer`; librdkafka's share consumer.

mod batch;
mod config;
mod member;
mod requests;

pub use self::batch::{ShareBatch, ShareRecord};
pub use self::config::{AcknowledgeType, AcknowledgementMode, ShareConfig};

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::sync::Arc;
use std::time::Duration;

use kafka_protocol::messages::{GroupId, ShareAcknowledgeRequest};
use kafka_protocol::protocol::StrBytes;
use tokio::sync::{oneshot, watch};

use self::member::{Membership, Tp};
use self::requests::{
    ack_topics, next_epoch, records_error, share_fetch, topic_ids, Ask, TopicIds,
};
use crate::cluster::{Client, Topics};
use crate::config::ConfigError;
use crate::error::codes::{INVALID_SHARE_SESSION_EPOCH, SHARE_SESSION_NOT_FOUND};
use crate::error::{Action, Error, KafkaCode};
use crate::record::{batches, ColumnarBatch, DecodeOptions};
use crate::wire::ApiKey;

/// A share session with one broker.
#[derive(Debug, Default)]
struct Session {
    /// The next epoch to send (0 opens the session).
    epoch: i32,
    partitions: BTreeSet<Tp>,
}

/// A share group member (KIP-932).
pub struct ShareConsumer {
    client: Client,
    config: ShareConfig,
    /// This member's id (KIP-1082: the client's own), in heartbeats and share sessions.
    member_id: String,
    /// A broker answered that it no longer leads a partition: refresh before the next fetch.
    stale_leaders: bool,
    membership: Option<watch::Receiver<Membership>>,
    leave: Option<oneshot::Sender<oneshot::Sender<()>>>,
    sessions: HashMap<i32, Session>,
    /// Acknowledgements not yet sent, by partition and offset.
    pending: BTreeMap<Tp, BTreeMap<i64, AcknowledgeType>>,
    /// Records handed out and not yet acknowledged (implicit mode accepts them next time).
    delivered: BTreeMap<Tp, BTreeSet<i64>>,
    ready: VecDeque<ShareBatch>,
    /// Acknowledgements the brokers refused (for example a lock that had expired).
    refused: Vec<(Tp, KafkaCode)>,
    /// The acquisition lock duration the brokers last reported.
    lock_timeout: Option<Duration>,
}

impl std::fmt::Debug for ShareConsumer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ShareConsumer")
            .field("group_id", &self.config.group_id)
            .field("ready", &self.ready.len())
            .finish()
    }
}

impl ShareConsumer {
    /// Connects (bootstraps); call [`subscribe`](Self::subscribe) to join the share group.
    pub async fn new(config: ShareConfig) -> Result<ShareConsumer, Error> {
        if config.group_id.is_empty() {
            return Err(Error::Config(ConfigError::Missing {
                key: "group.id".into(),
                context: "for a share consumer".into(),
            }));
        }
        let client = Client::connect(config.client.clone()).await?;
        Ok(ShareConsumer {
            client,
            config,
            member_id: uuid::Uuid::from_u128(fastrand::u128(..)).to_string(),
            stale_leaders: false,
            membership: None,
            leave: None,
            sessions: HashMap::new(),
            pending: BTreeMap::new(),
            delivered: BTreeMap::new(),
            ready: VecDeque::new(),
            refused: Vec::new(),
            lock_timeout: None,
        })
    }

    /// Joins the share group subscribed to `topics`.
    pub fn subscribe(&mut self, topics: &[&str]) -> Result<(), Error> {
        if self.membership.is_some() {
            return Err(Error::InvalidState("already subscribed".into()));
        }
        let (tx, rx) = watch::channel(Membership::Joining);
        let (leave_tx, leave_rx) = oneshot::channel();
        let settings = member::Settings {
            member_id: self.member_id.clone(),
            group_id: self.config.group_id.clone(),
            topics: topics.iter().map(|t| (*t).to_owned()).collect(),
            rack: self.config.client_rack.clone(),
        };
        tokio::spawn(member::run(self.client.clone(), settings, tx, leave_rx));
        self.membership = Some(rx);
        self.leave = Some(leave_tx);
        Ok(())
    }

    /// The partitions this member fetches from now.
    pub fn assignment(&self) -> Vec<(String, i32)> {
        match self.membership.as_ref().map(|m| m.borrow().clone()) {
            Some(Membership::Assigned(tps)) => tps.into_iter().collect(),
            _ => Vec::new(),
        }
    }

    /// How long records stay acquired for this consumer (the group's
    /// `group.share.record.lock.duration.ms`), as the brokers last reported it: acknowledge
    /// within it, or the records go to another member.
    pub fn acquisition_lock_timeout(&self) -> Option<Duration> {
        self.lock_timeout
    }

    /// Acknowledgements the brokers refused since the last call (a record whose lock had
    /// expired, or that was acknowledged twice): INVALID_RECORD_STATE by partition.
    pub fn acknowledgement_errors(&mut self) -> Vec<((String, i32), KafkaCode)> {
        std::mem::take(&mut self.refused)
    }

    /// The next batch of records acquired for this consumer. In implicit mode, what the
    /// previous calls handed out is accepted first.
    pub async fn next(&mut self) -> Result<ShareBatch, Error> {
        loop {
            if let Some(batch) = self.ready.pop_front() {
                let offsets = batch.offsets();
                self.delivered
                    .entry((batch.topic.to_string(), batch.partition))
                    .or_default()
                    .extend(offsets);
                return Ok(batch);
            }
            self.accept_delivered();
            let assigned = self.wait_for_assignment().await?;
            self.fetch_round(&assigned).await?;
        }
    }

    /// Marks one acquired record (explicit mode); sent with the next fetch or `commit`.
    pub fn acknowledge(
        &mut self,
        batch: &ShareBatch,
        offset: i64,
        kind: AcknowledgeType,
    ) -> Result<(), Error> {
        self.acknowledge_offset(batch.topic(), batch.partition(), offset, kind)
    }

    /// Marks every record of a batch this consumer acquired (explicit mode).
    pub fn acknowledge_batch(
        &mut self,
        batch: &ShareBatch,
        kind: AcknowledgeType,
    ) -> Result<(), Error> {
        for offset in batch.offsets() {
            self.acknowledge_offset(batch.topic(), batch.partition(), offset, kind)?;
        }
        Ok(())
    }

    /// Marks a record by topic, partition and offset (explicit mode). It must be one `next`
    /// handed out and not yet acknowledged.
    pub fn acknowledge_offset(
        &mut self,
        topic: &str,
        partition: i32,
        offset: i64,
        kind: AcknowledgeType,
    ) -> Result<(), Error> {
        if self.config.acknowledgement_mode != AcknowledgementMode::Explicit {
            return Err(Error::InvalidState(
                "acknowledge needs share.acknowledgement.mode=explicit".into(),
            ));
        }
        let tp = (topic.to_owned(), partition);
        let held = self
            .delivered
            .get_mut(&tp)
            .is_some_and(|offsets| offsets.remove(&offset));
        if !held {
            return Err(Error::InvalidState(format!(
                "{topic}-{partition}@{offset} is not a record this consumer holds unacknowledged"
            )));
        }
        self.pending.entry(tp).or_default().insert(offset, kind);
        Ok(())
    }

    /// Sends the pending acknowledgements now (ShareAcknowledge) and waits for the answers.
    /// Errors the brokers report per partition are returned.
    pub async fn commit(&mut self) -> Result<(), Error> {
        self.accept_delivered();
        let all: BTreeSet<Tp> = self.pending.keys().cloned().collect();
        self.send_acknowledgements(&all, false).await?;
        match self.refused.first() {
            Some((tp, code)) => Err(Error::kafka(
                *code,
                format!("acknowledge records of {}-{}", tp.0, tp.1),
                None,
            )),
            None => Ok(()),
        }
    }

    /// Acknowledges what is pending (accepting, in implicit mode, what was handed out), closes
    /// the share sessions (records still held go back to the group) and leaves the group.
    pub async fn close(mut self) -> Result<(), Error> {
        self.accept_delivered();
        let all: BTreeSet<Tp> = self.pending.keys().cloned().collect();
        let result = self.send_acknowledgements(&all, true).await;
        if let Some(leave) = self.leave.take() {
            let (tx, rx) = oneshot::channel();
            if leave.send(tx).is_ok() {
                let wait = self.config.client.request_timeout + Duration::from_secs(1);
                let _ = tokio::time::timeout(wait, rx).await;
            }
        }
        result
    }

    fn accept_delivered(&mut self) {
        if self.config.acknowledgement_mode != AcknowledgementMode::Implicit {
            return;
        }
        for (tp, offsets) in std::mem::take(&mut self.delivered) {
            let pending = self.pending.entry(tp).or_default();
            for o in offsets {
                pending.entry(o).or_insert(AcknowledgeType::Accept);
            }
        }
    }

    async fn wait_for_assignment(&mut self) -> Result<BTreeSet<Tp>, Error> {
        let Some(membership) = self.membership.as_mut() else {
            return Err(Error::InvalidState("subscribe first".into()));
        };
        loop {
            match membership.borrow_and_update().clone() {
                Membership::Assigned(tps) if !tps.is_empty() => return Ok(tps),
                Membership::Failed(e) => return Err(e),
                _ => {}
            }
            if membership.changed().await.is_err() {
                return Err(Error::ConsumerClosed);
            }
        }
    }

    /// The leader of each partition, from the metadata (refreshed when one is unknown).
    async fn leaders(&mut self, tps: &BTreeSet<Tp>) -> Result<BTreeMap<i32, Vec<Tp>>, Error> {
        let mut metadata = self.client.metadata();
        let stale = std::mem::take(&mut self.stale_leaders);
        if stale || tps.iter().any(|(t, p)| metadata.leader(t, *p).is_none()) {
            let names: Vec<&str> = tps.iter().map(|(t, _)| t.as_str()).collect();
            metadata = self.client.refresh_metadata(Topics::Only(&names)).await?;
        }
        let mut out: BTreeMap<i32, Vec<Tp>> = BTreeMap::new();
        for tp in tps {
            if let Some(leader) = metadata.leader(&tp.0, tp.1) {
                out.entry(leader.id).or_default().push(tp.clone());
            }
        }
        Ok(out)
    }

    /// One ShareFetch to each leader of the assigned partitions, carrying the pending
    /// acknowledgements of its partitions; what they acquire goes to `ready`.
    async fn fetch_round(&mut self, assigned: &BTreeSet<Tp>) -> Result<(), Error> {
        // Records of partitions no longer assigned are still this member's to acknowledge:
        // that goes first, by ShareAcknowledge in the session that acquired them (dropped
        // below when that broker leads none of the new partitions).
        let unassigned: BTreeSet<Tp> = self
            .pending
            .keys()
            .filter(|tp| !assigned.contains(*tp))
            .cloned()
            .collect();
        if !unassigned.is_empty() {
            if let Err(e) = self.send_acknowledgements(&unassigned, false).await {
                if e.action() == Action::Fatal && !matches!(e, Error::Timeout { .. }) {
                    return Err(e);
                }
                // Not acknowledged: the records come back to the group after their locks.
                tracing::debug!(error = %e, "acknowledging records of unassigned partitions failed");
            }
        }
        let by_leader = self.leaders(assigned).await?;
        // Sessions with brokers that lead none of our partitions any more are dropped.
        self.sessions.retain(|b, _| by_leader.contains_key(b));
        let mut requests = Vec::new();
        for (broker, tps) in &by_leader {
            let session = self.sessions.entry(*broker).or_default();
            let wanted: BTreeSet<Tp> = tps.iter().cloned().collect();
            let forgotten: Vec<Tp> = session.partitions.difference(&wanted).cloned().collect();
            // Copied, not taken: they stay pending until a broker has answered, so a
            // cancelled `next` sends them again rather than losing them.
            let acks: BTreeMap<Tp, BTreeMap<i64, AcknowledgeType>> = tps
                .iter()
                .filter_map(|tp| Some((tp.clone(), self.pending.get(tp)?.clone())))
                .collect();
            let epoch = session.epoch;
            session.partitions = wanted;
            requests.push((*broker, epoch, tps.clone(), forgotten, acks));
        }
        let ids = Arc::new(topic_ids(&self.client));
        // One request per broker, concurrently (each waits up to fetch.max.wait.ms).
        let mut tasks = tokio::task::JoinSet::new();
        for (broker, epoch, tps, forgotten, acks) in requests {
            let client = self.client.clone();
            let config = self.config.clone();
            let member = self.member_id.clone();
            let ids = ids.clone();
            tasks.spawn(async move {
                let ask = Ask {
                    broker,
                    epoch,
                    tps: &tps,
                    forgotten: &forgotten,
                    acks: &acks,
                };
                let result = share_fetch(&client, &config, &member, ask, &ids).await;
                (broker, acks, result)
            });
        }
        let mut answers = Vec::new();
        while let Some(joined) = tasks.join_next().await {
            answers
                .push(joined.map_err(|e| Error::InvalidState(format!("share fetch task: {e}")))?);
        }
        answers.sort_by_key(|(broker, _, _)| *broker);
        let options = DecodeOptions {
            max_decompressed: self.config.max_decompressed,
        };
        for (broker, acks, result) in answers {
            match result {
                Ok(response) => {
                    for (tp, offsets) in &acks {
                        if let Some(pending) = self.pending.get_mut(tp) {
                            pending.retain(|o, _| !offsets.contains_key(o));
                            if pending.is_empty() {
                                self.pending.remove(tp);
                            }
                        }
                    }
                    if let Some(s) = self.sessions.get_mut(&broker) {
                        s.epoch = next_epoch(s.epoch);
                    }
                    self.take_response(broker, response, &ids, &options, &acks)?;
                }
                Err(e) => {
                    // The acknowledgements go again with the next request; the session starts
                    // over (the broker released what this member held there).
                    self.sessions.remove(&broker);
                    if e.action() == Action::Fatal && !matches!(e, Error::Timeout { .. }) {
                        return Err(e);
                    }
                    tracing::debug!(broker, error = %e, "ShareFetch failed; retrying");
                    tokio::time::sleep(self.client.config().retry_backoff).await;
                }
            }
        }
        Ok(())
    }

    fn take_response(
        &mut self,
        broker: i32,
        response: kafka_protocol::messages::ShareFetchResponse,
        ids: &TopicIds,
        options: &DecodeOptions,
        acks: &BTreeMap<Tp, BTreeMap<i64, AcknowledgeType>>,
    ) -> Result<(), Error> {
        match response.error_code {
            0 => {
                if response.acquisition_lock_timeout_ms > 0 {
                    self.lock_timeout = Some(Duration::from_millis(
                        response.acquisition_lock_timeout_ms as u64,
                    ));
                }
            }
            SHARE_SESSION_NOT_FOUND | INVALID_SHARE_SESSION_EPOCH => {
                // Acknowledgements sent in a refused session are lost with it: the records
                // come back after their locks (at-least-once).
                tracing::debug!(broker, code = %KafkaCode(response.error_code), "share session reset");
                self.sessions.remove(&broker);
                return Ok(());
            }
            code if KafkaCode(code).action() == Action::Fatal => {
                return Err(Error::kafka(
                    KafkaCode(code),
                    format!("share fetch of group {}", self.config.group_id),
                    response.error_message.map(|m| m.to_string()),
                ))
            }
            code => {
                tracing::debug!(broker, code = %KafkaCode(code), "ShareFetch refused; retrying");
                self.sessions.remove(&broker);
                return Ok(());
            }
        }
        for topic in response.responses {
            let Some(name) = ids.names.get(&topic.topic_id).cloned() else {
                continue;
            };
            let name: Arc<str> = Arc::from(name.as_str());
            for p in topic.partitions {
                let tp = (name.to_string(), p.partition_index);
                if p.acknowledge_error_code != 0 && acks.contains_key(&tp) {
                    tracing::warn!(topic = %name, partition = p.partition_index, code = %KafkaCode(p.acknowledge_error_code), "acknowledgements refused");
                    self.refused
                        .push((tp.clone(), KafkaCode(p.acknowledge_error_code)));
                }
                if p.error_code != 0 {
                    if KafkaCode(p.error_code).action() == Action::RefreshMetadata {
                        self.stale_leaders = true;
                    }
                    continue;
                }
                let mut acquired: Vec<(i64, i64, i16)> = p
                    .acquired_records
                    .iter()
                    .map(|a| (a.first_offset, a.last_offset, a.delivery_count))
                    .filter(|(f, l, _)| f <= l)
                    .collect();
                // Looked up by binary search: in order, whatever order the broker sent.
                acquired.sort_unstable();
                if acquired.is_empty() {
                    continue;
                }
                let acquired: Arc<[(i64, i64, i16)]> = acquired.into();
                for raw in batches(p.records.unwrap_or_default()) {
                    let raw = raw.map_err(|e| records_error(&tp, e))?;
                    let header = raw.header();
                    if header.is_control() {
                        continue;
                    }
                    let mut batch = ColumnarBatch::default();
                    raw.decode_into(&mut batch, options)
                        .map_err(|e| records_error(&tp, e))?;
                    let share = ShareBatch {
                        topic: name.clone(),
                        partition: p.partition_index,
                        batch,
                        acquired: acquired.clone(),
                    };
                    if !share.is_empty() {
                        self.ready.push_back(share);
                    }
                }
            }
        }
        Ok(())
    }

    /// Sends the pending acknowledgements of `tps` with ShareAcknowledge (closing every
    /// session when `close`).
    async fn send_acknowledgements(
        &mut self,
        tps: &BTreeSet<Tp>,
        close: bool,
    ) -> Result<(), Error> {
        if tps.is_empty() && !close {
            return Ok(());
        }
        let mut by_leader = self.leaders(tps).await?;
        if close {
            for broker in self.sessions.keys() {
                by_leader.entry(*broker).or_default();
            }
        }
        let ids = topic_ids(&self.client);
        for (broker, tps) in by_leader {
            let acks: BTreeMap<Tp, BTreeMap<i64, AcknowledgeType>> = tps
                .iter()
                .filter_map(|tp| Some((tp.clone(), self.pending.remove(tp)?)))
                .collect();
            let Some(session) = self.sessions.get_mut(&broker) else {
                // No session with that broker: nothing it handed out can be acknowledged.
                continue;
            };
            if session.epoch == 0 {
                continue;
            }
            let epoch = if close { -1 } else { session.epoch };
            session.epoch = next_epoch(session.epoch);
            let request = ShareAcknowledgeRequest::default()
                .with_group_id(Some(GroupId(StrBytes::from_string(
                    self.config.group_id.clone(),
                ))))
                .with_member_id(Some(StrBytes::from_string(self.member_id.clone())))
                .with_share_session_epoch(epoch)
                .with_topics(ack_topics(&acks, &ids));
            let conn = self.client.broker(broker).await?;
            let version = conn.version(ApiKey::ShareAcknowledge)?;
            let response = conn.request_at(&request, version).await?;
            if response.error_code != 0 {
                return Err(Error::kafka(
                    KafkaCode(response.error_code),
                    format!(
                        "acknowledge records of share group {}",
                        self.config.group_id
                    ),
                    response.error_message.map(|m| m.to_string()),
                ));
            }
            for t in response.responses {
                let Some(name) = ids.names.get(&t.topic_id) else {
                    continue;
                };
                for p in t.partitions {
                    if p.error_code != 0 {
                        self.refused
                            .push(((name.clone(), p.partition_index), KafkaCode(p.error_code)));
                    }
                }
            }
        }
        if close {
            self.sessions.clear();
        }
        Ok(())
    }
}
