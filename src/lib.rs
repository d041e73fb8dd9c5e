//! spate: a pure-Rust Kafka wire-protocol engine.
//!
//! spate speaks Kafka's binary protocol itself (no librdkafka, no C) and is built around the
//! consumption path: a fetch response arrives as one [`bytes::Bytes`], its record batches are
//! sliced out of it without copying, checked (CRC-32C), decompressed once, and exposed as
//! **columnar batches** whose keys, values and headers all point into one buffer.
//!
//! # Layout
//! The modules follow the data, lowest first; each depends only on the ones above it here.
//! - [`wire`]: frames (size prefix, maximum size), request and response headers, typed
//!   wrappers around the `kafka-protocol` message structs, message layouts and the bounds walk
//!   over them ([`wire::schema`]), version negotiation, and spate's own zero-copy
//!   [`wire::fetch`] decoder.
//! - [`record`]: record batches (magic v2): a zero-copy [`record::RawBatch`] view,
//!   [`record::RecordBatches`] to split a records section, columnar decoding into
//!   [`record::ColumnarBatch`], control markers, [`record::RecordBatchBuilder`], and
//!   [`record::compression`] (gzip, snappy xerial + raw, lz4 frame, zstd; pure Rust).
//! - [`net`]: the only module with sockets: a pipelined [`net::Connection`] (correlation ids,
//!   a reader and a writer task, per-request timeouts, poisoning on failure), ApiVersions
//!   negotiation, SASL PLAIN/SCRAM, TLS (feature `tls`).
//! - [`cluster`]: [`cluster::Client`]: bootstrap, the metadata cache, the broker pool (lazy
//!   connect, reconnect with backoff and jitter), retries by error class, admin operations,
//!   coordinator lookup.
//! - [`producer`]: [`producer::Producer`]: partitioners (Java's murmur2, uniform sticky), the
//!   accumulator (sans-IO: per-partition batches, linger, exact sizes, retry order), the sender
//!   task, idempotence and transactions.
//! - [`consumer`]: [`consumer::Consumer`]: the fetcher task (one fetch in flight per broker,
//!   incremental fetch sessions, decoding on worker threads within a decoded-bytes budget),
//!   read_committed, seeks, and consumer groups ([`consumer::group`]: the classic protocol's
//!   assignors and membership state machine and KIP-848's member, sans-IO; their group tasks;
//!   committed offsets).
//! - [`pipeline`]: source → batch operators → fused sink: [`pipeline::Batch`] (consumed
//!   columns, a selection vector, replaced columns), [`pipeline::ops`] and the kernels, lanes per
//!   partition, at-least-once and exactly-once commits; the stateful building blocks
//!   ([`pipeline::window`]: event-time windows; [`pipeline::state`]: keyed stores with
//!   changelogs).
//! - [`formats`]: at the ends of the data flow: consumed batches as Apache Arrow record batches
//!   without copying (feature `arrow`), and the Confluent Schema Registry (feature
//!   `schema-registry`): its wire format, a registry client, Avro, Protobuf and JSON Schema
//!   serdes rendering values as JSON, pipeline operators.
//! - `mock` (feature `mock`): an embedded cluster on loopback ports (the classic and KIP-848
//!   group protocols, transactions, long-poll fetch), with fault injection and brokers that
//!   stop and start, for hermetic tests and `spate bench`.
//!
//! Beside them: [`config`] (typed settings, built from the standard Kafka keys) and [`error`]
//! (the public [`Error`] and the one classification of Kafka error codes into an [`Action`]).
//!
//! `wire` and `record` are synchronous and socket-free, so they are unit-tested, fuzzed
//! (`fuzz/`) and benchmarked (`benches/`) without a runtime; `net` is tested against scripted
//! peers, `cluster`, `producer`, `consumer` and `pipeline` against a real broker and the
//! embedded cluster (`tests/`).
//!
//! # Data flow
//! ```text
//!  net::Connection: a reader task cuts frames off the socket and hands each to the request
//!  waiting for its correlation id; a Fetch response then goes:
//!
//!  socket ─▶ FrameCodec ─▶ FetchResponse ─▶ RecordBatches ─▶ RawBatch::decode ─▶ ColumnarBatch
//!            (wire::frame)  (wire::fetch)    (zero-copy split) (CRC, decompress    (spans into
//!                           records: Bytes                      once, columns)      one buffer)
//! ```
//!
//! # Example
//! Build a batch, then read it back the way a consumer does:
//! ```
//! use spate::record::{batches, Compression, RecordBatchBuilder};
//!
//! let mut builder = RecordBatchBuilder::new(Compression::Lz4);
//! builder.append(1_700_000_000_000, Some(b"k"), Some(b"hello"), &[("trace", Some(b"1"))])?;
//! builder.append(1_700_000_000_001, None, Some(b"world"), &[])?;
//! let section = builder.build()?; // what a fetch response's `records` would hold
//!
//! for raw in batches(section) {
//!     let batch = raw?.decode()?; // CRC checked, decompressed once
//!     let values: Vec<&[u8]> = batch.records().filter_map(|r| r.value()).collect();
//!     assert_eq!(values, [&b"hello"[..], b"world"]);
//!     assert_eq!(batch.key(0), Some(&b"k"[..]));
//!     assert_eq!(batch.offset(1), 1);
//! }
//! # Ok::<(), spate::record::RecordError>(())
//! ```
//!
//! # Hostile input
//! Every length, count and decompressed size read off the wire is checked against the bytes
//! actually present before anything is allocated from it; failures are typed errors that name
//! the byte position. spate's own decoders read the frames, headers, Fetch responses and record
//! batches; every other message goes through `kafka-protocol` 0.18 (which sizes allocations
//! from wire counts) only after [`wire::schema`] has walked it against its layout, generated
//! from Apache Kafka's message definitions: responses, the embedded cluster's requests, and the
//! consumer protocol's subscriptions and assignments alike. A broker that breaks the protocol
//! gets a fatal error naming it, the API and the version, never a silent retry.
#![warn(missing_docs)]
#![forbid(unsafe_code)]

pub mod cluster;
pub mod config;
pub mod consumer;
pub mod error;
pub mod formats;
pub mod json;
#[cfg(feature = "mock")]
pub mod mock;
pub mod net;
pub mod pipeline;
pub mod producer;
pub mod record;
pub mod telemetry;
pub mod wire;

pub use config::ClientConfig;
pub use error::{Action, Error, KafkaCode};

/// The README's examples, compiled and run as doc tests.
#[cfg(doctest)]
#[doc = include_str!("../README.md")]
struct ReadmeDoctests;
