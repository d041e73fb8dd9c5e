//! The accumulator without I/O: linger, sizes, request building, retry order, flush, sticky
//! partitions, expiry.

use super::*;

fn limits() -> Limits {
    Limits {
        linger: Duration::from_millis(5),
        batch_size: 1000,
        max_request_size: 1 << 20,
        compression: Compression::None,
        idempotent: true,
        transactional: false,
        max_in_flight: 5,
    }
}

fn acc(limits: Limits, topic: &str, partitions: i32) -> Accumulator {
    let mut acc = Accumulator::new(limits);
    acc.set_partitions(topic, partitions);
    acc.reset_sequences((7, 0));
    acc
}

fn push(acc: &mut Accumulator, partition: i32, value: &[u8], now: Instant) -> Appended {
    acc.append(
        "t",
        partition,
        0,
        None,
        Some(value),
        &[],
        value.len(),
        Some(now),
    )
    .unwrap()
}

/// Every partition has leader 1; the broker takes `room` more requests.
fn drain(acc: &mut Accumulator, now: Instant, room: usize) -> DrainReport {
    acc.drain(now, |_, _| Some(1), |_| room, false)
}

fn batches(report: &DrainReport) -> Vec<(i32, Option<i32>, i32)> {
    report
        .requests
        .iter()
        .flat_map(|r| r.batches.iter())
        .map(|b| (b.partition, b.sequence, b.records))
        .collect()
}

#[test]
fn a_batch_waits_for_its_linger_unless_full() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 2);
    let first = push(&mut acc, 0, b"a", t0);
    assert!(first.wake, "a new batch wakes the sender to set its timer");
    assert!(!push(&mut acc, 0, b"b", t0).wake);
    let report = drain(&mut acc, t0 + Duration::from_millis(4), 5);
    assert!(report.requests.is_empty());
    assert_eq!(report.next_check, Some(t0 + Duration::from_millis(5)));
    let report = drain(&mut acc, t0 + Duration::from_millis(5), 5);
    assert_eq!(batches(&report), [(0, Some(0), 2)]);
    // A full batch goes at once.
    let value = [0u8; 300];
    let mut closed = false;
    for _ in 0..4 {
        closed |= push(&mut acc, 1, &value, t0).wake;
    }
    assert!(closed);
    let report = drain(&mut acc, t0, 5);
    let sent = batches(&report);
    assert_eq!(sent.len(), 1);
    assert!(
        sent[0].2 < 4,
        "the batch closed at batch.size, not after every record"
    );
}

#[test]
fn batches_respect_batch_size_and_requests_max_request_size() {
    let t0 = Instant::now();
    let limits = Limits {
        max_request_size: REQUEST_OVERHEAD + 2500,
        ..limits()
    };
    let mut acc = acc(limits, "t", 4);
    let value = [1u8; 200];
    for p in 0..4 {
        for _ in 0..4 {
            push(&mut acc, p, &value, t0);
        }
    }
    let report = drain(&mut acc, t0 + Duration::from_secs(1), 5);
    let sizes: Vec<usize> = report
        .requests
        .iter()
        .map(|r| {
            r.batches
                .iter()
                .map(|b| b.builder.as_ref().unwrap().size_in_bytes())
                .sum()
        })
        .collect();
    assert!(report.requests.len() >= 2, "{sizes:?}");
    for size in &sizes {
        assert!(
            REQUEST_OVERHEAD + size <= REQUEST_OVERHEAD + 2500,
            "{sizes:?}"
        );
    }
    for r in &report.requests {
        let mut slots: Vec<usize> = r.batches.iter().map(|b| b.slot).collect();
        slots.dedup();
        assert_eq!(
            slots.len(),
            r.batches.len(),
            "one batch per partition per request"
        );
        for b in &r.batches {
            assert!(b.builder.as_ref().unwrap().size_in_bytes() <= 1000);
        }
    }
    assert_eq!(
        batches(&report).iter().map(|b| b.2).sum::<i32>(),
        16,
        "every record left"
    );
}

#[test]
fn a_full_broker_gets_no_more_requests() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 1);
    push(&mut acc, 0, b"x", t0);
    assert!(drain(&mut acc, t0 + Duration::from_secs(1), 0)
        .requests
        .is_empty());
    assert_eq!(
        drain(&mut acc, t0 + Duration::from_secs(1), 1)
            .requests
            .len(),
        1
    );
}

#[test]
fn retries_go_first_in_sequence_order_one_at_a_time() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 1);
    let value = [2u8; 400];
    // Three batches of two records each, all in flight.
    let mut sent = Vec::new();
    for _ in 0..3 {
        push(&mut acc, 0, &value, t0);
        push(&mut acc, 0, &value, t0);
        let report = drain(&mut acc, t0 + Duration::from_secs(1), 5);
        sent.extend(report.requests.into_iter().flat_map(|r| r.batches));
    }
    let seqs: Vec<Option<i32>> = sent.iter().map(|b| b.sequence).collect();
    assert_eq!(seqs, [Some(0), Some(2), Some(4)]);
    // A fourth, unsent.
    push(&mut acc, 0, &value, t0);
    let b3 = sent.pop().unwrap();
    let b2 = sent.pop().unwrap();
    let b1 = sent.pop().unwrap();
    // The first fails retriably; the later ones then get OUT_OF_ORDER_SEQUENCE_NUMBER, which
    // the first explains.
    let err = Error::kafka(crate::KafkaCode(7), "test", None);
    acc.retry(b1, err.clone(), t0);
    assert!(acc.has_earlier_unacked(&b2));
    acc.retry(b3, err.clone(), t0);
    acc.retry(b2, err, t0);
    let now = t0 + Duration::from_secs(2);
    // One at a time, lowest sequence first, the unsent batch last.
    let mut order = Vec::new();
    for _ in 0..4 {
        let report = drain(&mut acc, now, 5);
        let mut got: Vec<Batch> = report
            .requests
            .into_iter()
            .flat_map(|r| r.batches)
            .collect();
        assert_eq!(got.len(), 1, "one batch in flight while retrying");
        let b = got.pop().unwrap();
        order.push(b.sequence);
        acc.succeeded(
            b,
            BatchAck {
                base_offset: 0,
                log_append_time: -1,
            },
        );
    }
    assert_eq!(order, [Some(0), Some(2), Some(4), Some(6)]);
}

/// Sequences wrap from i32::MAX to 0 as Java's do (`DefaultRecordBatch.incrementSequence`),
/// and a batch past the wrap still counts as later than one before it.
#[test]
fn sequences_wrap_to_zero_and_keep_their_order() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 1);
    acc.parts[0].next_sequence = i32::MAX - 2;
    let value = [2u8; 400];
    let mut sent = Vec::new();
    for _ in 0..3 {
        push(&mut acc, 0, &value, t0);
        push(&mut acc, 0, &value, t0);
        let report = drain(&mut acc, t0 + Duration::from_secs(1), 5);
        sent.extend(report.requests.into_iter().flat_map(|r| r.batches));
    }
    let seqs: Vec<Option<i32>> = sent.iter().map(|b| b.sequence).collect();
    assert_eq!(seqs, [Some(i32::MAX - 2), Some(i32::MAX), Some(1)]);
    let b3 = sent.pop().unwrap();
    let b2 = sent.pop().unwrap();
    let b1 = sent.pop().unwrap();
    let err = Error::kafka(crate::KafkaCode(7), "test", None);
    assert!(acc.has_earlier_unacked(&b3), "MAX-2 and MAX come before 1");
    assert!(!acc.has_earlier_unacked(&b1));
    acc.retry(b3, err.clone(), t0);
    acc.retry(b1, err.clone(), t0);
    acc.retry(b2, err, t0);
    let queued: Vec<Option<i32>> = acc.parts[0].queue.iter().map(|b| b.sequence).collect();
    assert_eq!(queued, [Some(i32::MAX - 2), Some(i32::MAX), Some(1)]);
}

#[test]
fn a_retry_waits_for_its_backoff() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 1);
    push(&mut acc, 0, b"x", t0);
    let report = drain(&mut acc, t0 + Duration::from_secs(1), 5);
    let batch = report
        .requests
        .into_iter()
        .next()
        .unwrap()
        .batches
        .remove(0);
    let at = t0 + Duration::from_secs(2);
    acc.retry(batch, Error::kafka(crate::KafkaCode(7), "t", None), at);
    let report = drain(&mut acc, at - Duration::from_millis(1), 5);
    assert!(report.requests.is_empty());
    assert_eq!(report.next_check, Some(at));
    assert_eq!(drain(&mut acc, at, 5).requests.len(), 1);
}

#[test]
fn a_failed_batch_holds_everything_until_a_new_epoch() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 1);
    push(&mut acc, 0, b"x", t0);
    let report = drain(&mut acc, t0 + Duration::from_secs(1), 5);
    let batch = report
        .requests
        .into_iter()
        .next()
        .unwrap()
        .batches
        .remove(0);
    acc.failed(batch, Error::kafka(crate::KafkaCode(87), "t", None));
    assert!(acc.needs_epoch_bump);
    push(&mut acc, 0, b"y", t0);
    let later = t0 + Duration::from_secs(2);
    assert!(acc
        .drain(later, |_, _| Some(1), |_| 5, true)
        .requests
        .is_empty());
    acc.reset_sequences((7, 1));
    let report = drain(&mut acc, later, 5);
    assert_eq!(
        batches(&report),
        [(0, Some(0), 1)],
        "sequences start again at 0"
    );
}

#[test]
fn flush_makes_existing_batches_ready_now() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 2);
    let a = push(&mut acc, 0, b"a", t0);
    let outcomes = acc.flush();
    assert_eq!(outcomes.len(), 1);
    assert!(Arc::ptr_eq(&outcomes[0], &a.outcome));
    // A batch opened after the flush keeps its linger.
    push(&mut acc, 1, b"b", t0);
    let report = drain(&mut acc, t0, 5);
    assert_eq!(batches(&report), [(0, Some(0), 1)]);
    assert!(!acc.is_idle());
}

#[test]
fn the_sticky_partition_moves_when_its_batch_leaves() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 4);
    let p = acc.sticky_partition("t", 10).unwrap();
    push(&mut acc, p, b"a", t0);
    for _ in 0..10 {
        assert_eq!(
            acc.sticky_partition("t", 10),
            Some(p),
            "sticky while the batch is open"
        );
    }
    drain(&mut acc, t0 + Duration::from_secs(1), 5);
    let q = acc.sticky_partition("t", 10).unwrap();
    assert_ne!(p, q, "moved on once the batch left");
    assert!((0..4).contains(&q));
}

#[test]
fn unsent_batches_expire_after_the_delivery_timeout() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 1);
    let a = push(&mut acc, 0, b"abc", t0);
    // No leader: the batch stays, and the report asks for metadata.
    let report = acc.drain(t0 + Duration::from_secs(1), |_, _| None, |_| 5, false);
    assert!(report.requests.is_empty());
    assert_eq!(report.need_metadata.len(), 1);
    assert_eq!(
        acc.expire(t0 + Duration::from_secs(1), Duration::from_secs(2)),
        (0, 0)
    );
    assert_eq!(
        acc.expire(t0 + Duration::from_secs(3), Duration::from_secs(2)),
        (3, 1)
    );
    assert!(matches!(a.outcome.get(), Some(Err(Error::Timeout { .. }))));
    assert!(acc.is_idle());
}

#[test]
fn transactional_partitions_wait_to_be_added() {
    let t0 = Instant::now();
    let mut acc = acc(
        Limits {
            transactional: true,
            ..limits()
        },
        "t",
        2,
    );
    push(&mut acc, 1, b"x", t0);
    let later = t0 + Duration::from_secs(1);
    let report = drain(&mut acc, later, 5);
    assert!(report.requests.is_empty());
    assert_eq!(report.need_txn_add, [(Arc::from("t"), 1)]);
    acc.added_to_txn("t", 1);
    assert_eq!(drain(&mut acc, later, 5).requests.len(), 1);
    acc.end_txn();
    push(&mut acc, 1, b"y", t0);
    assert_eq!(
        drain(&mut acc, later, 5).need_txn_add.len(),
        1,
        "added again per transaction"
    );
}

const ACK: BatchAck = BatchAck {
    base_offset: 0,
    log_append_time: -1,
};

#[test]
fn a_new_batch_is_encoded_into_the_bytes_of_an_acknowledged_one() {
    let t0 = Instant::now();
    let mut acc = acc(limits(), "t", 1);
    push(&mut acc, 0, &[1; 600], t0);
    let mut report = drain(&mut acc, t0 + Duration::from_millis(5), 5);
    let mut batch = report.requests.remove(0).batches.remove(0);
    let data = batch.builder.take().unwrap().build_reusing().unwrap();
    let (at, len) = (data.as_ptr(), data.len());
    batch.data = data.clone();
    // Still held elsewhere (a request being written): not taken back.
    acc.succeeded(batch, ACK);
    assert!(acc.spare_out.is_empty());
    assert_eq!(acc.spare_bytes, 0);

    push(&mut acc, 0, &[2; 600], t0);
    let mut report = drain(&mut acc, t0 + Duration::from_millis(10), 5);
    let mut batch = report.requests.remove(0).batches.remove(0);
    batch.data = data;
    acc.succeeded(batch, ACK);
    assert_eq!(acc.spare_out.len(), 1);
    assert!(acc.spare_bytes >= len);
    // The next batch's bytes are encoded where the first's were.
    push(&mut acc, 0, &[3; 600], t0);
    let mut report = drain(&mut acc, t0 + Duration::from_millis(15), 5);
    let mut batch = report.requests.remove(0).batches.remove(0);
    let again = batch.builder.take().unwrap().build_reusing().unwrap();
    assert_eq!(again.as_ptr(), at);
    assert!(acc.spare_out.is_empty());
    let decoded = crate::record::RawBatch::new(again)
        .unwrap()
        .decode()
        .unwrap();
    assert_eq!(decoded.value_bytes(0).unwrap(), vec![3u8; 600]);
}
