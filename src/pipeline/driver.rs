//! The source loop of a running pipeline: it dispatches batches to the lanes, commits what the
//! sink acknowledged, hands partitions over in rebalances, and recovers from failed
//! transactions.
//!
//! Failures, by guarantee:
//! - **Exactly-once**: an error that leaves the transaction abortable (a refused write, offsets
//!   refused because the group moved on, a commit that failed) aborts the transaction, moves
//!   every partition back to its last committed offset and goes on, in-process, as Kafka
//!   Streams does with a `TaskMigratedException`. What the aborted transaction wrote is never
//!   seen by read_committed readers, and it is written again. A producer fenced because its
//!   transaction outlived `transaction.timeout.ms` is replaced by a new one (a dynamic member;
//!   Kafka Streams does the same); a static member whose producer is fenced has a newer
//!   incarnation running, and stops. Other fatal errors end the pipeline.
//! - **At-least-once**: a commit refused because the group moved on (a rebalance) is logged and
//!   skipped: the partitions' next owner starts from the last commit, so output may repeat,
//!   nothing is lost. A write the sink refused ends the pipeline (nothing after it is
//!   committed).
//! - Either way, [`MAX_FAILED_IN_A_ROW`] failed transactions or commits in a row end the
//!   pipeline with the last error, after a growing backoff between them. Failures that only
//!   say the group moved on (ILLEGAL_GENERATION, UNKNOWN_MEMBER_ID, REBALANCE_IN_PROGRESS) are
//!   not counted: a rebalance never stops a pipeline.

use std::collections::{HashMap, HashSet};
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::mpsc;

use super::run::{lane_of, LaneInput, ProducerSlot, Progress, Shared, Tp};
use super::Stats;
use crate::consumer::{Consumer, Event, Offset};
use crate::error::{Action, Error};
use crate::producer::{OffsetToCommit, Producer, ProducerConfig};

/// Failed transactions (or refused commits) in a row after which the pipeline gives up.
pub(super) const MAX_FAILED_IN_A_ROW: u32 = 5;

/// Why [`Driver::drive`] returned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Stop {
    /// The shutdown future completed.
    Shutdown,
    /// Every assigned partition was read to its end (`stop_at_end`).
    End,
}

pub(super) struct Driver {
    /// Where batches go, a partition always to the same lane.
    pub(super) lanes: Vec<mpsc::Sender<LaneInput>>,
    pub(super) source: Consumer,
    pub(super) producer: Option<Producer>,
    /// Where the lanes take the producer from (the same one).
    pub(super) slot: ProducerSlot,
    /// To recreate a fenced producer.
    pub(super) producer_config: ProducerConfig,
    /// A static member (`group.instance.id`): if its producer is fenced, a newer incarnation
    /// of it runs, and it must stop.
    pub(super) static_member: bool,
    pub(super) shared: Arc<Shared>,
    pub(super) exactly_once: bool,
    pub(super) grouped: bool,
    pub(super) stats: Stats,
    /// Inputs handed to the lanes.
    pub(super) dispatched: u64,
    /// What was last committed, per partition.
    pub(super) committed: HashMap<Tp, i64>,
    /// Records were handed to the sink since the transaction began.
    pub(super) in_transaction: bool,
    /// Failed transactions or refused commits since the last successful one.
    pub(super) failed_in_a_row: u32,
    /// Partitions read to their end (and not read since), with the offset of their end.
    pub(super) ended: HashMap<Tp, i64>,
    /// With `stop_at_end`: the pipeline stops at the end only once this holds offsets, and
    /// every assigned partition has been read up to its own (the second stage of a
    /// repartitioned pipeline waits so for the first stage's output; `None` there: not yet).
    pub(super) end_at: Option<EndGate>,
    /// A stateful pipeline: partition `p` of every input is one task (one state), so all of
    /// them go to one lane.
    pub(super) by_task: bool,
    /// An input whose committed records are deleted now and then.
    pub(super) purge: Option<Purge>,
}

/// Deleting an input's records once they are committed (a repartition topic's, as Kafka
/// Streams does): nobody reads them again.
pub(super) struct Purge {
    pub(super) topic: Arc<str>,
    pub(super) every: Duration,
    pub(super) last: std::time::Instant,
}

/// The offsets a pipeline must read up to before it may stop at the end of its input.
pub(super) type EndGate = tokio::sync::watch::Receiver<Option<Arc<HashMap<Tp, i64>>>>;

/// Waits for the gate's offsets; forever if they never come (the pipeline is then stopped).
async fn gate_opens(gate: Option<&mut EndGate>) {
    if let Some(gate) = gate {
        if gate.wait_for(Option::is_some).await.is_ok() {
            return;
        }
    }
    std::future::pending().await
}

impl Driver {
    /// Every assigned partition was read to its end (and, with a gate, up to its offset).
    fn at_end(&self) -> bool {
        let gate = match &self.end_at {
            Some(gate) => match gate.borrow().clone() {
                Some(offsets) => Some(offsets),
                None => return false,
            },
            None => None,
        };
        let assignment = self.source.assignment();
        !assignment.is_empty()
            && assignment.iter().all(|(t, p)| {
                let tp: Tp = (Arc::from(t.as_str()), *p);
                match (self.ended.get(&tp), &gate) {
                    (None, _) => false,
                    (Some(_), None) => true,
                    (Some(end), Some(offsets)) => *end >= offsets.get(&tp).copied().unwrap_or(0),
                }
            })
    }

    /// A gate holds the end back, and has no offsets yet.
    fn gate_closed(&self) -> bool {
        self.end_at.as_ref().is_some_and(|g| g.borrow().is_none())
    }

    pub(super) async fn drive(
        &mut self,
        mut shutdown: Pin<&mut impl Future<Output = ()>>,
        commit_interval: Duration,
        stop_at_end: bool,
    ) -> Result<Stop, Error> {
        let mut ticker = tokio::time::interval(commit_interval);
        ticker.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        ticker.tick().await;
        let shared = self.shared.clone();
        loop {
            // Registered before the check, so a lane failing in between still wakes the loop
            // (it may be waiting for input that never comes).
            let failed = shared.failure.notified();
            tokio::pin!(failed);
            failed.as_mut().enable();
            let failure = self.shared.progress().failed.clone();
            if let Some(e) = failure {
                self.recover(e).await?;
                continue;
            }
            tokio::select! {
                () = &mut shutdown => return Ok(Stop::Shutdown),
                () = &mut failed => continue,
                () = gate_opens(self.end_at.as_mut()), if stop_at_end && self.gate_closed() => {
                    if self.at_end() {
                        return Ok(Stop::End);
                    }
                }
                _ = ticker.tick() => self.commit().await?,
                event = self.source.next() => match event? {
                    Event::Batch(batch) => {
                        let tp: Tp = (batch.topic_arc(), batch.partition());
                        self.ended.remove(&tp);
                        self.stats.batches += 1;
                        self.stats.records_in += batch.batch().len() as u64;
                        self.dispatched += 1;
                        self.in_transaction = true;
                        let lane = self.lane(&tp);
                        self.to_lane(lane, LaneInput::Batch(batch)).await?;
                    }
                    Event::EndOfPartition { topic, partition, offset } => {
                        self.ended.insert((Arc::from(topic.as_str()), partition), offset);
                        if stop_at_end && self.at_end() {
                            return Ok(Stop::End);
                        }
                    }
                    Event::Assigned(assigned) => {
                        tracing::debug!(?assigned, "pipeline: partitions assigned");
                    }
                    Event::Revoked(revoked) => {
                        tracing::debug!(?revoked, "pipeline: partitions revoked");
                        // Finish and commit what was written before the partitions go to
                        // another member; the group waits for this (the consumer acknowledges
                        // the revocation when it is asked for the next event).
                        self.settle_or_fail().await;
                        self.commit().await?;
                        self.forget(&revoked).await?;
                    }
                    Event::Lost(lost) => {
                        tracing::debug!(?lost, "pipeline: partitions lost");
                        // Fenced: a commit would be refused. Wait for what is in flight, and
                        // (exactly-once) abort it; the new owner starts from the last commit.
                        self.settle_or_fail().await;
                        if self.exactly_once && self.in_transaction {
                            self.abort_and_rewind().await?;
                            self.stats.aborts += 1;
                        }
                        self.forget(&lost).await?;
                    }
                    _ => {}
                },
            }
        }
    }

    /// The lane of `tp`'s input.
    fn lane(&self, tp: &Tp) -> usize {
        if self.by_task {
            tp.1 as usize % self.lanes.len()
        } else {
            lane_of(tp, self.lanes.len())
        }
    }

    async fn to_lane(&self, lane: usize, input: LaneInput) -> Result<(), Error> {
        if self.lanes[lane].send(input).await.is_err() {
            return Err(Error::TaskFailed {
                task: "pipeline lane",
                reason: "it stopped".into(),
            });
        }
        Ok(())
    }

    /// Tells every lane to drop the windowed state of `tps` (all for `None`).
    async fn forget_state(&self, tps: Option<Vec<Tp>>) -> Result<(), Error> {
        for lane in 0..self.lanes.len() {
            self.to_lane(lane, LaneInput::Forget(tps.clone())).await?;
        }
        Ok(())
    }

    /// The end of bounded input: every lane emits its open windows; waits for them.
    pub(super) async fn finish_lanes(&mut self) -> Result<(), Error> {
        let mut shares: Vec<Vec<Tp>> = vec![Vec::new(); self.lanes.len()];
        for (topic, partition) in self.source.assignment() {
            let tp: Tp = (Arc::from(topic.as_str()), partition);
            shares[self.lane(&tp)].push(tp);
        }
        for (lane, tps) in shares.into_iter().enumerate() {
            self.to_lane(lane, LaneInput::Finish(tps)).await?;
            self.dispatched += 1;
            self.in_transaction = true;
        }
        Ok(())
    }

    /// Partitions that left this member: their progress must not be committed again (it
    /// would overwrite what their new owner commits), and their state is the new owner's.
    async fn forget(&mut self, partitions: &[(String, i32)]) -> Result<(), Error> {
        let gone: HashSet<Tp> = partitions
            .iter()
            .map(|(t, p)| (Arc::from(t.as_str()), *p))
            .collect();
        self.forget_state(Some(gone.iter().cloned().collect()))
            .await?;
        self.shared
            .progress()
            .acked
            .retain(|tp, _| !gone.contains(tp));
        self.committed.retain(|tp, _| !gone.contains(tp));
        self.ended.retain(|tp, _| !gone.contains(tp));
        Ok(())
    }

    /// Waits until every dispatched input is finished, acknowledged or failed.
    pub(super) async fn settle(&self) {
        self.wait_until(|p| p.done >= self.dispatched).await;
    }

    /// Waits until every dispatched input is acknowledged or one has failed. (After a failure
    /// the rest may wait for the abort: a producer whose transaction failed holds its unsent
    /// records until then, as Java's does.)
    pub(super) async fn settle_or_fail(&self) {
        self.wait_until(|p| p.done >= self.dispatched || p.failed.is_some())
            .await;
    }

    async fn wait_until(&self, done: impl Fn(&Progress) -> bool) {
        loop {
            let changed = self.shared.changed.notified();
            if done(&self.shared.progress()) {
                return;
            }
            changed.await;
        }
    }

    /// Commits the acknowledged progress (at-least-once), or ends the transaction with the
    /// consumed offsets in it and begins the next (exactly-once). A failure it can recover
    /// from is handled here (see the module's documentation); the error returned is final.
    pub(super) async fn commit(&mut self) -> Result<(), Error> {
        if self.exactly_once {
            if !self.in_transaction {
                return Ok(());
            }
            self.settle_or_fail().await;
        }
        let failure = self.shared.progress().failed.clone();
        if let Some(e) = failure {
            return self.recover(e).await;
        }
        let offsets: Vec<(Tp, i64)> = {
            let p = self.shared.progress();
            p.acked
                .iter()
                .filter(|(tp, o)| self.committed.get(*tp) != Some(o))
                .map(|(tp, o)| (tp.clone(), *o))
                .collect()
        };
        if self.exactly_once {
            if let Err(e) = self.commit_transaction(&offsets).await {
                return self.recover(e).await;
            }
        } else if self.grouped && !offsets.is_empty() {
            let list: Vec<(String, i32, i64)> = offsets
                .iter()
                .map(|((t, p), o)| (t.to_string(), *p, *o))
                .collect();
            if let Err(e) = self.source.commit_offsets(&list).await {
                if e.action() != Action::Rejoin {
                    return Err(e);
                }
                // The group moved on: these partitions are being revoked or are gone; their
                // next owner (perhaps this member again) starts from the last commit.
                self.failed(e).await?;
                return Ok(());
            }
        } else if offsets.is_empty() {
            return Ok(());
        }
        if !offsets.is_empty() {
            tracing::debug!(?offsets, "pipeline: committed");
        }
        self.committed.extend(offsets);
        self.stats.commits += 1;
        self.failed_in_a_row = 0;
        self.purge_committed().await;
        Ok(())
    }

    /// Deletes the purged input's records below the committed offsets, if it is time. A
    /// failure is only logged: the records stay until the next purge or their retention.
    async fn purge_committed(&mut self) {
        let Some(purge) = &mut self.purge else { return };
        if purge.last.elapsed() < purge.every {
            return;
        }
        purge.last = std::time::Instant::now();
        let offsets: Vec<(i32, i64)> = self
            .committed
            .iter()
            .filter(|((t, _), _)| *t == purge.topic)
            .map(|((_, p), o)| (*p, *o))
            .collect();
        let Some(producer) = &self.producer else {
            return;
        };
        if offsets.is_empty() {
            return;
        }
        match producer
            .client()
            .delete_records(&purge.topic, &offsets)
            .await
        {
            Ok(low) => {
                tracing::debug!(topic = %purge.topic, ?low, "pipeline: consumed records purged")
            }
            Err(e) => {
                tracing::warn!(topic = %purge.topic, error = %e, "pipeline: purging consumed records failed")
            }
        }
    }

    async fn commit_transaction(&mut self, offsets: &[(Tp, i64)]) -> Result<(), Error> {
        let producer = self.producer.as_ref().expect("exactly-once has a producer");
        let group = self
            .source
            .group_metadata()
            .expect("exactly-once has a group");
        let to_commit: Vec<OffsetToCommit> = offsets
            .iter()
            .map(|((t, p), o)| OffsetToCommit {
                topic: t.to_string(),
                partition: *p,
                offset: *o,
                metadata: None,
            })
            .collect();
        if !to_commit.is_empty() {
            producer
                .send_offsets_to_transaction(&to_commit, &group)
                .await?;
        }
        producer.commit_transaction().await?;
        producer.begin_transaction()?;
        self.in_transaction = false;
        Ok(())
    }

    /// Counts a failure; the error back if there were too many in a row, else after a backoff
    /// that grows with them.
    async fn failed(&mut self, error: Error) -> Result<(), Error> {
        if error.action() == Action::Rejoin {
            // The group moved on (a rebalance): not the pipeline's failure, and the rejoin
            // paces what follows. Kafka Streams handles its TaskMigratedException the same way.
            tracing::warn!(error = %error, "pipeline: the group moved on; going on from the last commit");
            return Ok(());
        }
        self.failed_in_a_row += 1;
        if self.failed_in_a_row >= MAX_FAILED_IN_A_ROW {
            tracing::error!(error = %error, failures = self.failed_in_a_row, "pipeline: giving up");
            return Err(error);
        }
        tracing::warn!(error = %error, failures = self.failed_in_a_row, "pipeline: going on from the last commit");
        let backoff = Duration::from_millis(50) * 2u32.pow(self.failed_in_a_row - 1);
        tokio::time::sleep(backoff.min(Duration::from_secs(2))).await;
        Ok(())
    }

    /// After a failure: under exactly-once, if the producer can go on, abort the transaction
    /// and start again from the last commit. A dynamic member whose producer was fenced (its
    /// transaction outlived `transaction.timeout.ms`, and the coordinator aborted it) gets a new
    /// producer and starts again from the last commit too, as Kafka Streams does. Otherwise the
    /// error is final.
    async fn recover(&mut self, error: Error) -> Result<(), Error> {
        // The pipeline's own state refused the input (over its bound, a corrupt changelog):
        // going on from the last commit would only meet it again.
        if !self.exactly_once || matches!(error, Error::InvalidState(_)) {
            return Err(error);
        }
        // The abort itself may be what learns of the fencing (the coordinator answers EndTxn
        // with PRODUCER_FENCED once it has aborted a timed-out transaction).
        let aborted = match self.producer.as_ref().and_then(Producer::fatal_error) {
            None => self.abort_and_rewind().await,
            Some(fatal) => Err(fatal),
        };
        match aborted {
            Ok(()) => {}
            Err(fenced @ Error::ProducerFenced { .. }) if !self.static_member => {
                tracing::warn!(error = %fenced, "pipeline: the producer was fenced; starting a new one from the last commit");
                self.recreate_producer().await?;
                self.rewind().await?;
            }
            Err(e) => return Err(e),
        }
        self.stats.aborts += 1;
        self.failed(error).await
    }

    /// Replaces a fenced producer with a new one of the same transactional.id (its
    /// InitProducerId takes a new epoch).
    async fn recreate_producer(&mut self) -> Result<(), Error> {
        if let Some(old) = self.producer.take() {
            // Fenced: closing fails what it still holds, and says so; nothing to keep.
            let _ = old.close().await;
        }
        let producer = Producer::new(self.producer_config.clone()).await?;
        producer.init_transactions().await?;
        *self.slot.lock().unwrap_or_else(|p| p.into_inner()) = Some(producer.clone());
        self.producer = Some(producer);
        Ok(())
    }

    /// Aborts the open transaction and moves every partition back to its last commit, so the
    /// aborted input is read again.
    pub(super) async fn abort_and_rewind(&mut self) -> Result<(), Error> {
        let producer = self.producer.as_ref().expect("exactly-once has a producer");
        producer.abort_transaction().await?;
        self.rewind().await
    }

    /// Moves every partition back to its last commit and begins a new transaction.
    async fn rewind(&mut self) -> Result<(), Error> {
        // The abort failed what was unsent; wait for the lanes to report every input, so
        // nothing of the aborted transaction is acknowledged after the slate is cleaned.
        self.settle().await;
        let assignment = self.source.assignment();
        let list: Vec<(&str, i32)> = assignment.iter().map(|(t, p)| (t.as_str(), *p)).collect();
        for ((topic, partition), offset) in self.source.committed(&list).await? {
            let start = offset.map_or(Offset::Reset, Offset::At);
            self.source.seek(&topic, partition, start)?;
        }
        {
            let mut p = self.shared.progress();
            p.acked.clear();
            p.failed = None;
        }
        // Rewound partitions are read again before the pipeline may stop at their end, from
        // the state their changelog had at the last commit.
        self.ended.clear();
        self.forget_state(None).await?;
        self.in_transaction = false;
        self.producer
            .as_ref()
            .expect("exactly-once has a producer")
            .begin_transaction()
    }
}
