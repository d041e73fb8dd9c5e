//! Data formats at the ends of the data flow: consumed batches as Apache Arrow record batches
//! (feature `arrow`), and the Confluent Schema Registry wire format with Avro serdes (feature
//! `schema-registry`).
//!
//! Both sit above the producer, the consumer and the pipeline: they convert what those hand
//! out and take in, and nothing below depends on them.

#[cfg(feature = "arrow")]
pub mod arrow;
#[cfg(feature = "schema-registry")]
pub mod registry;

/// What went wrong converting, encoding or decoding data.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum FormatError {
    /// An Arrow array or record batch could not be built or read (a column of the wrong type,
    /// a value too large for an Arrow view, …).
    #[error("arrow: {0}")]
    Arrow(String),
    /// A record's bytes are not in the Confluent wire format (magic byte 0, a 4-byte schema
    /// id, then the payload).
    #[error("schema registry wire format: {0}")]
    WireFormat(String),
    /// A schema could not be parsed, or a reader schema cannot read a writer's.
    #[error("schema: {0}")]
    Schema(String),
    /// A payload does not decode under its schema.
    #[error("decode: {0}")]
    Decode(String),
    /// A value does not encode under the schema.
    #[error("encode: {0}")]
    Encode(String),
    /// The schema registry answered with an error.
    #[error("schema registry: HTTP {status}{}: {message}", code.map(|c| format!(" (error {c})")).unwrap_or_default())]
    Registry {
        /// The HTTP status.
        status: u16,
        /// The registry's `error_code`, when it sent one (40401: subject not found, 40403:
        /// schema not found, 42201: invalid schema, …).
        code: Option<i64>,
        /// The registry's message.
        message: String,
    },
    /// The schema registry could not be reached (connect, I/O, timeout, a broken answer).
    #[error("schema registry unreachable: {0}")]
    RegistryUnreachable(String),
}
