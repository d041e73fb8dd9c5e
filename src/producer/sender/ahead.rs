//! Compressing on several threads: the sender builds a turn's batches, and closed batches
//! waiting for a request, on up to `compression.threads` threads.

use bytes::Bytes;

use super::super::accumulator::{Batch, Drained};
use super::super::Shared;
use super::encode;
use crate::record::RecordBatchBuilder;

/// Builds this turn's new batches on up to `compression.threads` threads, so compression is not
/// bound to the sender task's one core: the drained batches, and as many closed batches still
/// waiting for a request (for a slot in flight, most often) as there are threads to spare, which
/// then go out already compressed and are only re-stamped. The sender waits for them all
/// before it starts the requests, in the order the batches were drained (their sequence order).
/// A batch that fails to build keeps its builder, to fail when it is sent as it would have.
pub(super) async fn encode_in_parallel(shared: &Shared, requests: &mut [Drained]) {
    let threads = shared.config.compression_threads;
    if threads < 2 || shared.config.compression == crate::record::Compression::None {
        return;
    }
    let pending = requests
        .iter()
        .flat_map(|r| &r.batches)
        .filter(|b| b.builder.is_some())
        .count();
    if pending == 0 {
        return;
    }
    let (producer, ahead) = {
        let mut acc = shared.acc();
        let ahead = acc.take_builders_ahead(threads.saturating_sub(pending));
        (acc.producer, ahead)
    };
    if pending + ahead.len() < 2 {
        let mut acc = shared.acc();
        for (slot, id, builder) in ahead {
            acc.put_builder(slot, id, builder);
        }
        return;
    }
    let transactional = shared.txn.is_some();
    let mut stay: Vec<((usize, usize), Batch)> = Vec::new();
    let mut jobs: Vec<Job> = Vec::with_capacity(pending + ahead.len());
    for (r, request) in requests.iter_mut().enumerate() {
        for (b, batch) in std::mem::take(&mut request.batches).into_iter().enumerate() {
            match batch.builder {
                Some(_) => jobs.push(Job::Drained((r, b), Box::new(batch), None)),
                None => stay.push(((r, b), batch)),
            }
        }
    }
    jobs.extend(
        ahead
            .into_iter()
            .map(|(slot, id, builder)| Job::Ahead(slot, id, Ok(builder))),
    );
    // Biggest first, each to the group with the least so far.
    jobs.sort_by_key(|j| std::cmp::Reverse(j.size()));
    let mut groups: Vec<(usize, Vec<Job>)> = (0..threads.min(jobs.len()))
        .map(|_| (0, Vec::new()))
        .collect();
    for job in jobs {
        let least = groups
            .iter_mut()
            .min_by_key(|(load, _)| *load)
            .expect("at least two groups");
        least.0 += job.size();
        least.1.push(job);
    }
    let run = move |mut group: Vec<Job>| {
        for job in &mut group {
            job.run(producer, transactional);
        }
        group
    };
    let mut groups = groups.into_iter().map(|(_, g)| g);
    let mine = groups.next().expect("at least two groups");
    let others: Vec<_> = groups
        .map(|g| tokio::task::spawn_blocking(move || run(g)))
        .collect();
    let mut done = run(mine);
    for handle in others {
        match handle.await {
            Ok(group) => done.extend(group),
            // A codec panicked: carry the panic on, as encoding here would have.
            Err(e) if e.is_panic() => std::panic::resume_unwind(e.into_panic()),
            // The runtime is shutting down, and the sender with it.
            Err(_) => return,
        }
    }
    let mut acc = shared.acc();
    for job in done {
        match job {
            Job::Drained(at, batch, spare) => {
                acc.recycle_opt(spare);
                stay.push((at, *batch));
            }
            Job::Ahead(slot, id, Err((data, buffer))) => {
                acc.put_built(slot, id, data);
                acc.recycle(buffer);
            }
            Job::Ahead(slot, id, Ok(builder)) => acc.put_builder(slot, id, builder),
        }
    }
    drop(acc);
    stay.sort_by_key(|(at, _)| *at);
    for ((r, _), batch) in stay {
        requests[r].batches.push(batch);
    }
}

/// One batch to build in [`encode_in_parallel`].
enum Job {
    /// A drained batch (its request and place in it), and the buffer it leaves once built.
    Drained((usize, usize), Box<Batch>, Option<Vec<u8>>),
    /// A queued batch's builder (slot, batch id): `Ok` until built, then `Err` with the bytes
    /// and the spare buffer (`Ok` still if it could not be built).
    Ahead(usize, u64, Result<RecordBatchBuilder, (Bytes, Vec<u8>)>),
}

impl Job {
    fn size(&self) -> usize {
        match self {
            Job::Drained(_, batch, _) => batch.uncompressed,
            Job::Ahead(_, _, Ok(builder)) => builder.size_in_bytes(),
            Job::Ahead(_, _, Err(_)) => 0,
        }
    }

    fn run(&mut self, producer: (i64, i16), transactional: bool) {
        match self {
            Job::Drained(_, batch, spare) => {
                if let Ok(buffer) = encode(batch, producer, transactional) {
                    *spare = buffer;
                }
            }
            Job::Ahead(_, _, state) => {
                let Ok(builder) = state else { return };
                let mut built =
                    std::mem::replace(builder, RecordBatchBuilder::new(builder.compression()))
                        .transactional(transactional);
                *state = match built.build_reusing() {
                    Ok(data) => Err((data, built.into_buffer())),
                    Err(_) => Ok(built),
                };
            }
        }
    }
}
