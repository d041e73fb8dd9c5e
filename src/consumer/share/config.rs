//! A share consumer's settings and acknowledgement kinds.

use std::time::Duration;

use crate::config::{ClientConfig, ConfigError};

/// How acquired records are acknowledged (`share.acknowledgement.mode`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum AcknowledgementMode {
    /// Every record handed out is accepted at the next `next`, `commit` or `close`.
    #[default]
    Implicit,
    /// The application acknowledges each record with [`ShareConsumer::acknowledge`](super::ShareConsumer::acknowledge).
    Explicit,
}

/// What to do with an acquired record.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum AcknowledgeType {
    /// Processed: done.
    Accept = 1,
    /// Not processed: available again, to this consumer or another.
    Release = 2,
    /// Cannot be processed: never delivered again (archived).
    Reject = 3,
}

/// A share consumer's settings.
#[derive(Debug, Clone)]
pub struct ShareConfig {
    /// The connection settings.
    pub client: ClientConfig,
    /// `group.id`: the share group.
    pub group_id: String,
    /// `share.acknowledgement.mode`.
    pub acknowledgement_mode: AcknowledgementMode,
    /// `max.poll.records`: the most records acquired per fetch (500).
    pub max_poll_records: i32,
    /// `fetch.max.wait.ms`: how long the broker may hold a fetch waiting for records.
    pub fetch_max_wait: Duration,
    /// `fetch.max.bytes`.
    pub fetch_max_bytes: i32,
    /// The largest size a compressed batch may decompress to.
    pub max_decompressed: usize,
    /// `client.rack`.
    pub client_rack: Option<String>,
}

impl Default for ShareConfig {
    fn default() -> Self {
        ShareConfig {
            client: ClientConfig::default(),
            group_id: String::new(),
            acknowledgement_mode: AcknowledgementMode::Implicit,
            max_poll_records: 500,
            fetch_max_wait: Duration::from_millis(500),
            fetch_max_bytes: 50 << 20,
            max_decompressed: crate::record::DEFAULT_MAX_DECOMPRESSED,
            client_rack: None,
        }
    }
}

impl ShareConfig {
    /// A share consumer of `group` on `bootstrap_servers`.
    pub fn new(bootstrap_servers: &str, group: &str) -> Self {
        ShareConfig {
            client: ClientConfig::new(bootstrap_servers),
            group_id: group.to_owned(),
            ..ShareConfig::default()
        }
    }

    /// Settings from `key=value` pairs (Java's and librdkafka's names); client keys go to
    /// [`ClientConfig::set`].
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let mut config = ShareConfig::default();
        for (k, v) in pairs {
            config.set(k.as_ref(), v.as_ref())?;
        }
        if config.group_id.is_empty() {
            return Err(ConfigError::Missing {
                key: "group.id".into(),
                context: "for a share consumer".into(),
            });
        }
        Ok(config)
    }

    /// Sets one key.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        let invalid = |reason: &str| ConfigError::InvalidValue {
            key: key.into(),
            value: v.into(),
            reason: reason.into(),
        };
        let number = |v: &str| v.parse::<i64>().map_err(|e| invalid(&e.to_string()));
        match key {
            "group.id" => self.group_id = v.to_owned(),
            "share.acknowledgement.mode" => {
                self.acknowledgement_mode = match v {
                    "implicit" => AcknowledgementMode::Implicit,
                    "explicit" => AcknowledgementMode::Explicit,
                    _ => return Err(invalid("implicit or explicit")),
                }
            }
            "max.poll.records" => {
                let n = number(v)?;
                if n <= 0 {
                    return Err(invalid("must be positive"));
                }
                self.max_poll_records = n.min(i64::from(i32::MAX)) as i32;
            }
            "fetch.max.wait.ms" | "fetch.wait.max.ms" => {
                self.fetch_max_wait = Duration::from_millis(number(v)?.max(0) as u64)
            }
            "fetch.max.bytes" => {
                self.fetch_max_bytes = number(v)?.clamp(1, i64::from(i32::MAX)) as i32
            }
            "client.rack" => self.client_rack = (!v.is_empty()).then(|| v.to_owned()),
            // What share groups take from the group's configs, not the client's.
            "group.protocol" if v == "share" => {}
            _ => self.client.set(key, value)?,
        }
        Ok(())
    }
}
