//! Incremental fetch sessions (KIP-227), without I/O: what a fetch request to one broker holds,
//! and what the broker's session is told to forget.
//!
//! The first request of a session is full (session id 0, epoch 0: "make me a session"). If the
//! broker answers with a session id, the next requests are incremental: they name only the
//! partitions whose fetch offset or size changed, and list in `forgotten_topics_data` the ones
//! no longer wanted. Any session error, or a request that failed, starts over with a full
//! request.

use std::collections::BTreeMap;
use std::sync::Arc;

use crate::error::codes::FETCH_SESSION_ID_NOT_FOUND;

/// The epoch that closes a session (KIP-227's FINAL_EPOCH).
const FINAL_EPOCH: i32 = -1;

/// A partition a fetch asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Target {
    pub topic: Arc<str>,
    pub partition: i32,
    pub offset: i64,
    pub max_bytes: i32,
    /// The leader epoch the client knows (KIP-320; -1 unknown).
    pub current_leader_epoch: i32,
    /// The leader epoch of the last batch fetched (KIP-320; -1 unknown).
    pub last_fetched_epoch: i32,
}

impl Target {
    /// What the broker's session holds for the partition: a change means it is sent again.
    fn held(&self) -> Held {
        (
            self.offset,
            self.max_bytes,
            self.current_leader_epoch,
            self.last_fetched_epoch,
        )
    }
}

/// Fetch offset, max bytes, current leader epoch, last fetched epoch.
type Held = (i64, i32, i32, i32);

/// What the next request holds.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Plan {
    pub session_id: i32,
    pub epoch: i32,
    pub partitions: Vec<Target>,
    pub forgotten: Vec<(Arc<str>, i32)>,
    /// Whether this is a full request (the broker's answer names every partition).
    pub full: bool,
}

/// The client's view of one broker's fetch session.
#[derive(Debug, Default)]
pub(crate) struct FetchSession {
    id: i32,
    /// The epoch of the next request (0: full).
    epoch: i32,
    /// What the broker's session holds, by partition.
    held: BTreeMap<(Arc<str>, i32), Held>,
    /// The plan in flight, applied to `held` when it succeeds.
    pending: Option<Plan>,
}

impl FetchSession {
    /// The next request for `wanted` (the partitions to fetch, at their positions).
    pub fn plan(&mut self, wanted: &[Target]) -> Plan {
        let full = self.id == 0 || self.epoch == 0;
        let plan = if full {
            Plan {
                session_id: self.id,
                epoch: 0,
                partitions: wanted.to_vec(),
                forgotten: Vec::new(),
                full: true,
            }
        } else {
            let partitions = wanted
                .iter()
                .filter(|t| self.held.get(&(t.topic.clone(), t.partition)) != Some(&t.held()))
                .cloned()
                .collect();
            let forgotten = self
                .held
                .keys()
                .filter(|(topic, p)| {
                    !wanted
                        .iter()
                        .any(|t| t.topic == *topic && t.partition == *p)
                })
                .cloned()
                .collect();
            Plan {
                session_id: self.id,
                epoch: self.epoch,
                partitions,
                forgotten,
                full: false,
            }
        };
        self.pending = Some(plan.clone());
        plan
    }

    /// The broker answered the pending request with `error_code` and `session_id`.
    pub fn answered(&mut self, error_code: i16, session_id: i32) {
        let Some(plan) = self.pending.take() else {
            return;
        };
        if error_code == FETCH_SESSION_ID_NOT_FOUND {
            // The broker has no such session (evicted, or the broker restarted).
            self.reset(false);
            return;
        }
        if error_code != 0 {
            // INVALID_FETCH_SESSION_EPOCH or anything else: the session may live on at the
            // broker; the next full request names it, so that the broker closes it.
            self.reset(true);
            return;
        }
        if plan.full {
            self.held.clear();
        }
        for (topic, partition) in &plan.forgotten {
            self.held.remove(&(topic.clone(), *partition));
        }
        for t in &plan.partitions {
            self.held.insert((t.topic.clone(), t.partition), t.held());
        }
        if session_id == 0 {
            // The broker keeps no session: every request is full.
            self.id = 0;
            self.epoch = 0;
            self.held.clear();
        } else {
            self.id = session_id;
            self.epoch = if self.epoch == i32::MAX || plan.full {
                1
            } else {
                self.epoch + 1
            };
        }
    }

    /// The request failed (no answer): start over with a full request, which closes this
    /// session at the broker (session id, epoch 0) if it still has it.
    pub fn failed(&mut self) {
        self.reset(true);
    }

    /// The request that closes the session at the broker (epoch -1, nothing to fetch), if there
    /// is one; the session is forgotten here.
    pub fn close(&mut self) -> Option<Plan> {
        let id = std::mem::take(&mut self.id);
        self.reset(false);
        (id != 0).then(|| Plan {
            session_id: id,
            epoch: FINAL_EPOCH,
            partitions: Vec::new(),
            forgotten: Vec::new(),
            full: true,
        })
    }

    /// Starts over with a full request (the broker's session is closed by it).
    pub fn restart(&mut self) {
        self.reset(true);
    }

    fn reset(&mut self, keep_id: bool) {
        if !keep_id {
            self.id = 0;
        }
        self.epoch = 0;
        self.held.clear();
        self.pending = None;
    }

    /// The offset the broker's session holds for a partition, if any.
    #[cfg(test)]
    pub fn held(&self, topic: &str, partition: i32) -> Option<i64> {
        self.held.get(&(Arc::from(topic), partition)).map(|h| h.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn t(topic: &str, partition: i32, offset: i64) -> Target {
        Target {
            topic: Arc::from(topic),
            partition,
            offset,
            max_bytes: 1000,
            current_leader_epoch: 0,
            last_fetched_epoch: -1,
        }
    }

    #[test]
    fn a_session_sends_only_what_changed_and_forgets_what_is_gone() {
        let mut s = FetchSession::default();
        let plan = s.plan(&[t("a", 0, 0), t("a", 1, 0), t("b", 0, 5)]);
        assert!(plan.full);
        assert_eq!(
            (plan.session_id, plan.epoch, plan.partitions.len()),
            (0, 0, 3)
        );
        s.answered(0, 77);
        // a-0 moved on, a-1 did not, b-0 is no longer wanted, c-0 is new.
        let plan = s.plan(&[t("a", 0, 10), t("a", 1, 0), t("c", 0, 0)]);
        assert!(!plan.full);
        assert_eq!((plan.session_id, plan.epoch), (77, 1));
        assert_eq!(plan.partitions, [t("a", 0, 10), t("c", 0, 0)]);
        assert_eq!(plan.forgotten, [(Arc::from("b"), 0)]);
        s.answered(0, 77);
        assert_eq!(s.held("b", 0), None);
        assert_eq!(s.held("a", 0), Some(10));
        // Nothing changed: an empty incremental request, epoch 2.
        let plan = s.plan(&[t("a", 0, 10), t("a", 1, 0), t("c", 0, 0)]);
        assert_eq!(
            (plan.epoch, plan.partitions.len(), plan.forgotten.len()),
            (2, 0, 0)
        );
    }

    #[test]
    fn session_errors_and_failures_start_over_with_a_full_request() {
        let mut s = FetchSession::default();
        s.plan(&[t("a", 0, 0)]);
        s.answered(0, 5);
        s.plan(&[t("a", 0, 3)]);
        s.answered(71, 0); // INVALID_FETCH_SESSION_EPOCH
                           // Full, naming the old session so that the broker closes it.
        let plan = s.plan(&[t("a", 0, 3)]);
        assert!(plan.full && plan.session_id == 5 && plan.epoch == 0);
        s.answered(0, 6);
        s.plan(&[t("a", 0, 4)]);
        s.failed();
        let plan = s.plan(&[t("a", 0, 4)]);
        assert!(plan.full && plan.session_id == 6 && plan.epoch == 0);
        // A session the broker does not know is not named again.
        s.answered(0, 7);
        s.plan(&[t("a", 0, 5)]);
        s.answered(70, 0); // FETCH_SESSION_ID_NOT_FOUND
        let plan = s.plan(&[t("a", 0, 5)]);
        assert!(plan.full && plan.session_id == 0 && plan.epoch == 0);
        // Closing: epoch -1 for the session, then nothing.
        s.answered(0, 8);
        let close = s.close().unwrap();
        assert_eq!((close.session_id, close.epoch), (8, -1));
        assert!(close.partitions.is_empty());
        assert!(s.close().is_none());
    }

    #[test]
    fn a_broker_without_sessions_gets_full_requests() {
        let mut s = FetchSession::default();
        s.plan(&[t("a", 0, 0)]);
        s.answered(0, 0);
        let plan = s.plan(&[t("a", 0, 9)]);
        assert!(plan.full);
        assert_eq!(plan.partitions, [t("a", 0, 9)]);
    }
}
