//! Producer settings: a typed builder over [`ClientConfig`], and the standard Java and
//! librdkafka keys.

use std::sync::Arc;
use std::time::Duration;

use super::partitioner::{DefaultPartitioner, Partitioner, StickyPartitioner};
use crate::config::{invalid, ms, parse, ClientConfig, ConfigError};
use crate::record::{Compression, BATCH_HEADER_LEN};

/// How many replicas must have a batch before the broker answers (`acks`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Acks {
    /// The broker does not answer at all (`acks=0`): fastest, and a failure goes unnoticed.
    None,
    /// The leader has written it (`acks=1`).
    Leader,
    /// Every in-sync replica has it (`acks=all` or `-1`); needed for idempotence.
    All,
}

impl Acks {
    /// The wire value.
    pub fn wire(self) -> i16 {
        match self {
            Acks::None => 0,
            Acks::Leader => 1,
            Acks::All => -1,
        }
    }
}

impl std::str::FromStr for Acks {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "0" => Ok(Acks::None),
            "1" => Ok(Acks::Leader),
            "-1" | "all" => Ok(Acks::All),
            _ => Err("expected 0, 1, -1 or all".into()),
        }
    }
}

/// Producer settings. Defaults: `acks=all`, idempotence on, linger 5 ms, batches up to
/// 1,000,000 bytes, requests up to 1 MiB, 64 MiB buffered, 5 requests in flight per broker.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Connection and cluster settings.
    pub client: ClientConfig,
    /// `acks`.
    pub acks: Acks,
    /// `linger.ms`: how long a batch that is not full waits for more records.
    pub linger: Duration,
    /// `batch.size`: a batch is sent once it holds this many bytes (encoded, before compression).
    pub batch_size: usize,
    /// `max.request.size`: the largest produce request, and so the largest record.
    pub max_request_size: usize,
    /// `buffer.memory`: bytes of records waiting or in flight; `send` waits while it is full.
    pub buffer_memory: usize,
    /// `compression.type`.
    pub compression: Compression,
    /// `enable.idempotence`: producer id and sequence numbers, so retries never duplicate.
    pub idempotence: bool,
    /// `max.in.flight.requests.per.connection` (at most 5 with idempotence).
    pub max_in_flight: usize,
    /// `retries`: attempts after the first, for retriable errors.
    pub retries: u32,
    /// `delivery.timeout.ms`: a record not acknowledged this long after `send` fails.
    pub delivery_timeout: Duration,
    /// `transactional.id`: turns on transactions (and idempotence).
    pub transactional_id: Option<String>,
    /// `transaction.timeout.ms`.
    pub transaction_timeout: Duration,
    /// Where records go (`partitioner`).
    pub partitioner: Arc<dyn Partitioner>,
    /// `compression.threads` (spate's own key): how many batches are compressed at once when
    /// several are ready to go together. Default: the machine's cores, at most 8; 1 compresses
    /// every batch on the producer's sender task, one after another.
    pub compression_threads: usize,
}

impl Default for ProducerConfig {
    fn default() -> Self {
        ProducerConfig {
            client: ClientConfig::default(),
            acks: Acks::All,
            linger: Duration::from_millis(5),
            batch_size: 1_000_000,
            max_request_size: 1 << 20,
            buffer_memory: 64 << 20,
            compression: Compression::None,
            idempotence: true,
            max_in_flight: 5,
            retries: u32::MAX,
            delivery_timeout: Duration::from_secs(120),
            transactional_id: None,
            transaction_timeout: Duration::from_secs(60),
            partitioner: Arc::new(DefaultPartitioner),
            compression_threads: std::thread::available_parallelism()
                .map_or(1, |n| n.get())
                .min(8),
        }
    }
}

impl ProducerConfig {
    /// A producer of `bootstrap_servers` (`host:port`, comma-separated) with the defaults.
    pub fn new(bootstrap_servers: &str) -> Self {
        ProducerConfig {
            client: ClientConfig::new(bootstrap_servers),
            ..ProducerConfig::default()
        }
    }

    /// Settings from `key=value` pairs: producer keys, then every [`ClientConfig`] key.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let mut config = ProducerConfig::default();
        for (k, v) in pairs {
            config.set(k.as_ref(), v.as_ref())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets one key (Java's name or librdkafka's). Keys the producer does not own go to
    /// [`ClientConfig::set`]; an unknown key is an error.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match key {
            "acks" | "request.required.acks" => {
                self.acks = v.parse().map_err(|e: String| invalid(key, v, e))?
            }
            "linger.ms" | "queue.buffering.max.ms" => self.linger = ms(key, v)?,
            "batch.size" => self.batch_size = parse(key, v)?,
            "max.request.size" | "message.max.bytes" => self.max_request_size = parse(key, v)?,
            "buffer.memory" => self.buffer_memory = parse(key, v)?,
            "queue.buffering.max.kbytes" => {
                self.buffer_memory = parse::<usize>(key, v)?.saturating_mul(1024)
            }
            "compression.type" | "compression.codec" => {
                self.compression = parse::<Compression>(key, v)?
            }
            "enable.idempotence" => self.idempotence = parse(key, v)?,
            "max.in.flight.requests.per.connection" | "max.in.flight" => {
                self.max_in_flight = parse(key, v)?
            }
            "retries" | "message.send.max.retries" => {
                // Java takes a signed int; anything negative or huge means "retry until the
                // delivery timeout".
                self.retries = parse::<i64>(key, v)?.clamp(0, u32::MAX as i64) as u32
            }
            "delivery.timeout.ms" | "message.timeout.ms" => self.delivery_timeout = ms(key, v)?,
            "transactional.id" => {
                self.transactional_id = (!v.is_empty()).then(|| v.to_owned());
            }
            "transaction.timeout.ms" => self.transaction_timeout = ms(key, v)?,
            "compression.threads" => self.compression_threads = parse(key, v)?,
            "partitioner" | "partitioner.class" => {
                self.partitioner = match v {
                    "default" | "murmur2" | "murmur2_random" => Arc::new(DefaultPartitioner),
                    "sticky" | "random" | "uniform_sticky" => Arc::new(StickyPartitioner),
                    _ => {
                        return Err(invalid(
                            key,
                            v,
                            "expected murmur2_random (default) or sticky; custom partitioners \
                             are set with ProducerConfig::partitioner",
                        ))
                    }
                }
            }
            _ => return self.client.set(key, value),
        }
        Ok(())
    }

    /// Checks the settings together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.client.validate()?;
        let fail = |key: &str, value: String, reason: &str| Err(invalid(key, &value, reason));
        if self.max_request_size <= BATCH_HEADER_LEN + 64 {
            return fail(
                "max.request.size",
                self.max_request_size.to_string(),
                "too small for one record batch",
            );
        }
        if self.max_request_size > i32::MAX as usize {
            return fail(
                "max.request.size",
                self.max_request_size.to_string(),
                "at most 2147483647",
            );
        }
        if self.batch_size == 0 {
            return fail("batch.size", "0".into(), "must be positive");
        }
        if self.compression_threads == 0 {
            return fail("compression.threads", "0".into(), "must be positive");
        }
        if self.buffer_memory < self.max_request_size {
            return fail(
                "buffer.memory",
                self.buffer_memory.to_string(),
                "must hold at least one request (max.request.size)",
            );
        }
        if self.max_in_flight == 0 {
            return fail(
                "max.in.flight.requests.per.connection",
                "0".into(),
                "must be positive",
            );
        }
        let idempotent = self.idempotence || self.transactional_id.is_some();
        if idempotent && self.max_in_flight > 5 {
            return fail(
                "max.in.flight.requests.per.connection",
                self.max_in_flight.to_string(),
                "at most 5 with idempotence (the broker tracks 5 batches per partition)",
            );
        }
        if idempotent && self.acks != Acks::All {
            return fail(
                "acks",
                format!("{:?}", self.acks),
                "idempotence and transactions need acks=all (or set enable.idempotence=false)",
            );
        }
        if self.transactional_id.is_some() && !self.idempotence {
            return fail(
                "enable.idempotence",
                "false".into(),
                "a transactional producer is always idempotent",
            );
        }
        Ok(())
    }

    /// Sets `acks`. Anything but [`Acks::All`] needs idempotence off.
    pub fn acks(mut self, acks: Acks) -> Self {
        self.acks = acks;
        self
    }

    /// Sets `linger.ms`.
    pub fn linger(mut self, linger: Duration) -> Self {
        self.linger = linger;
        self
    }

    /// Sets `batch.size`.
    pub fn batch_size(mut self, bytes: usize) -> Self {
        self.batch_size = bytes;
        self
    }

    /// Sets `max.request.size`.
    pub fn max_request_size(mut self, bytes: usize) -> Self {
        self.max_request_size = bytes;
        self
    }

    /// Sets `buffer.memory`.
    pub fn buffer_memory(mut self, bytes: usize) -> Self {
        self.buffer_memory = bytes;
        self
    }

    /// Sets `compression.type`.
    pub fn compression(mut self, compression: Compression) -> Self {
        self.compression = compression;
        self
    }

    /// Sets `enable.idempotence`.
    pub fn idempotence(mut self, on: bool) -> Self {
        self.idempotence = on;
        self
    }

    /// Sets `max.in.flight.requests.per.connection`.
    pub fn max_in_flight(mut self, n: usize) -> Self {
        self.max_in_flight = n;
        self
    }

    /// Sets `retries`.
    pub fn retries(mut self, n: u32) -> Self {
        self.retries = n;
        self
    }

    /// Sets `delivery.timeout.ms`.
    pub fn delivery_timeout(mut self, timeout: Duration) -> Self {
        self.delivery_timeout = timeout;
        self
    }

    /// Sets `transactional.id`, which makes the producer transactional.
    pub fn transactional_id(mut self, id: &str) -> Self {
        self.transactional_id = Some(id.to_owned());
        self
    }

    /// Sets `transaction.timeout.ms`.
    pub fn transaction_timeout(mut self, timeout: Duration) -> Self {
        self.transaction_timeout = timeout;
        self
    }

    /// Sets the partitioner.
    pub fn partitioner(mut self, partitioner: Arc<dyn Partitioner>) -> Self {
        self.partitioner = partitioner;
        self
    }

    /// Whether batches carry a producer id and sequence numbers.
    pub fn is_idempotent(&self) -> bool {
        self.idempotence || self.transactional_id.is_some()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn producer_keys_then_client_keys() {
        let c = ProducerConfig::from_pairs([
            ("bootstrap.servers", "h:9092"),
            ("linger.ms", "20"),
            ("compression.codec", "lz4"),
            ("queue.buffering.max.kbytes", "4096"),
            ("retries", "-1"),
            ("request.timeout.ms", "777"),
            ("transactional.id", "tx-1"),
            ("compression.threads", "3"),
        ])
        .unwrap();
        assert_eq!(c.compression_threads, 3);
        assert_eq!(c.linger, Duration::from_millis(20));
        assert_eq!(c.compression, Compression::Lz4);
        assert_eq!(c.buffer_memory, 4096 * 1024);
        assert_eq!(c.retries, 0, "a negative retries clamps to 0");
        assert_eq!(c.client.request_timeout, Duration::from_millis(777));
        assert_eq!(c.transactional_id.as_deref(), Some("tx-1"));
        assert!(c.is_idempotent());
    }

    #[test]
    fn bad_settings_name_their_key() {
        let err = |pairs: &[(&str, &str)]| {
            let mut all = vec![("bootstrap.servers", "h:1")];
            all.extend_from_slice(pairs);
            ProducerConfig::from_pairs(all).unwrap_err().to_string()
        };
        assert!(err(&[("acks", "2")]).contains("acks"));
        assert!(err(&[("compression.type", "brotli")]).contains("compression.type"));
        assert!(err(&[("acks", "1")]).contains("idempotence"));
        assert!(err(&[("max.in.flight", "6")]).contains("at most 5"));
        assert!(err(&[("max.request.size", "10")]).contains("max.request.size"));
        assert!(err(&[("no.such.key", "1")]).contains("no.such.key"));
        assert!(err(&[("partitioner", "consistent")]).contains("partitioner"));
        assert!(err(&[("compression.threads", "0")]).contains("compression.threads"));
        assert!(err(&[("compression.threads", "many")]).contains("compression.threads"));
        // acks=1 is fine once idempotence is off.
        ProducerConfig::from_pairs([
            ("bootstrap.servers", "h:1"),
            ("acks", "1"),
            ("enable.idempotence", "false"),
        ])
        .unwrap();
    }
}
