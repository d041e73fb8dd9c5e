//! Consumer settings: a typed builder over [`ClientConfig`], and the standard Java and
//! librdkafka keys.

use std::time::Duration;

use crate::config::{invalid, ms, parse, ClientConfig, ConfigError};

/// Where to start when a partition has no committed offset, or its offset is out of range
/// (`auto.offset.reset`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start.
    Earliest,
    /// The log end: only records written from now on.
    Latest,
    /// Fail with an error.
    Error,
}

impl std::str::FromStr for OffsetReset {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "earliest" | "smallest" | "beginning" => Ok(OffsetReset::Earliest),
            "latest" | "largest" | "end" => Ok(OffsetReset::Latest),
            "error" | "none" => Ok(OffsetReset::Error),
            _ => Err("expected earliest, latest or error".into()),
        }
    }
}

/// Which records a consumer sees (`isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything written, aborted transactions included.
    ReadUncommitted,
    /// Only committed records: reads stop at the last stable offset, and aborted transactional
    /// records are dropped.
    ReadCommitted,
}

impl IsolationLevel {
    /// The wire value.
    pub fn wire(self) -> i8 {
        match self {
            IsolationLevel::ReadUncommitted => 0,
            IsolationLevel::ReadCommitted => 1,
        }
    }
}

impl std::str::FromStr for IsolationLevel {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_lowercase().as_str() {
            "read_uncommitted" => Ok(IsolationLevel::ReadUncommitted),
            "read_committed" => Ok(IsolationLevel::ReadCommitted),
            _ => Err("expected read_uncommitted or read_committed".into()),
        }
    }
}

/// Consumer settings. Defaults follow the Java client (`fetch.max.wait.ms` 500,
/// `max.partition.fetch.bytes` 1 MiB, `fetch.max.bytes` 50 MiB), with a 64 MiB bound on
/// decoded records waiting for the application.
#[derive(Debug, Clone)]
pub struct ConsumerConfig {
    /// Connection and cluster settings.
    pub client: ClientConfig,
    /// `group.id`: needed for committed offsets and consumer groups.
    pub group_id: Option<String>,
    /// `auto.offset.reset`.
    pub auto_offset_reset: OffsetReset,
    /// `isolation.level`.
    pub isolation_level: IsolationLevel,
    /// `fetch.min.bytes`: the broker waits for this much data (up to `fetch.max.wait.ms`).
    pub fetch_min_bytes: i32,
    /// `fetch.max.bytes`: the most a fetch response may carry.
    pub fetch_max_bytes: i32,
    /// `max.partition.fetch.bytes`: the most per partition per fetch.
    pub max_partition_fetch_bytes: i32,
    /// `fetch.max.wait.ms`: how long the broker may hold a fetch waiting for data.
    pub fetch_max_wait: Duration,
    /// `fetch.buffer.bytes`: decoded (decompressed) records waiting for the application.
    /// Fetching stops while it is used up.
    pub buffer_bytes: usize,
    /// The largest size a compressed batch may decompress to (a bigger one is an error).
    pub max_decompressed: usize,
    /// `group.instance.id`: static membership (KIP-345).
    pub group_instance_id: Option<String>,
    /// `session.timeout.ms`.
    pub session_timeout: Duration,
    /// `heartbeat.interval.ms`.
    pub heartbeat_interval: Duration,
    /// `max.poll.interval.ms`: the rebalance timeout.
    pub rebalance_timeout: Duration,
    /// `partition.assignment.strategy`: assignor names in order of preference.
    pub assignors: Vec<String>,
    /// `enable.auto.commit`: commit positions every `auto.commit.interval.ms` and before a
    /// revocation.
    pub enable_auto_commit: bool,
    /// `auto.commit.interval.ms`.
    pub auto_commit_interval: Duration,
    /// `client.rack`: the rack this consumer runs in, told to rack-aware assignors (KIP-881)
    /// and to brokers in fetches (KIP-392).
    pub client_rack: Option<String>,
    /// `group.protocol`: the classic rebalance protocol (the default, as in Java 4.x) or
    /// KIP-848's, where the coordinator assigns. With `consumer`, `session.timeout.ms`,
    /// `heartbeat.interval.ms` and `partition.assignment.strategy` are the coordinator's
    /// (`group.consumer.*`) and not used.
    pub group_protocol: GroupProtocol,
    /// `group.remote.assignor`: the server-side assignor a KIP-848 member asks for (`uniform`,
    /// `range`); the coordinator's default when unset.
    pub group_remote_assignor: Option<String>,
}

/// `group.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup / SyncGroup / Heartbeat; the leader member assigns.
    #[default]
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat; the coordinator assigns, incrementally.
    Consumer,
}

impl Default for ConsumerConfig {
    fn default() -> Self {
        ConsumerConfig {
            client: ClientConfig::default(),
            group_id: None,
            auto_offset_reset: OffsetReset::Latest,
            isolation_level: IsolationLevel::ReadUncommitted,
            fetch_min_bytes: 1,
            fetch_max_bytes: 50 << 20,
            max_partition_fetch_bytes: 1 << 20,
            fetch_max_wait: Duration::from_millis(500),
            buffer_bytes: 64 << 20,
            max_decompressed: crate::record::DEFAULT_MAX_DECOMPRESSED,
            group_instance_id: None,
            session_timeout: Duration::from_secs(45),
            heartbeat_interval: Duration::from_secs(3),
            rebalance_timeout: Duration::from_secs(300),
            assignors: vec!["range".into(), "cooperative-sticky".into()],
            enable_auto_commit: true,
            auto_commit_interval: Duration::from_secs(5),
            client_rack: None,
            group_protocol: GroupProtocol::Classic,
            group_remote_assignor: None,
        }
    }
}

impl ConsumerConfig {
    /// A consumer of `bootstrap_servers` with the defaults.
    pub fn new(bootstrap_servers: &str) -> Self {
        ConsumerConfig {
            client: ClientConfig::new(bootstrap_servers),
            ..ConsumerConfig::default()
        }
    }

    /// Settings from `key=value` pairs: consumer keys, then every [`ClientConfig`] key.
    pub fn from_pairs<K: AsRef<str>, V: AsRef<str>>(
        pairs: impl IntoIterator<Item = (K, V)>,
    ) -> Result<Self, ConfigError> {
        let mut config = ConsumerConfig::default();
        for (k, v) in pairs {
            config.set(k.as_ref(), v.as_ref())?;
        }
        config.validate()?;
        Ok(config)
    }

    /// Sets one key (Java's name or librdkafka's). Keys the consumer does not own go to
    /// [`ClientConfig::set`]; an unknown key is an error.
    pub fn set(&mut self, key: &str, value: &str) -> Result<(), ConfigError> {
        let v = value.trim();
        match key {
            "group.id" => self.group_id = (!v.is_empty()).then(|| v.to_owned()),
            "auto.offset.reset" => {
                self.auto_offset_reset = v.parse().map_err(|e: String| invalid(key, v, e))?
            }
            "isolation.level" => {
                self.isolation_level = v.parse().map_err(|e: String| invalid(key, v, e))?
            }
            "fetch.min.bytes" => self.fetch_min_bytes = parse(key, v)?,
            "fetch.max.bytes" => self.fetch_max_bytes = parse(key, v)?,
            "max.partition.fetch.bytes" => self.max_partition_fetch_bytes = parse(key, v)?,
            "fetch.max.wait.ms" | "fetch.wait.max.ms" => self.fetch_max_wait = ms(key, v)?,
            "fetch.buffer.bytes" => self.buffer_bytes = parse(key, v)?,
            "queued.max.messages.kbytes" => {
                self.buffer_bytes = parse::<usize>(key, v)?.saturating_mul(1024)
            }
            "group.instance.id" => self.group_instance_id = (!v.is_empty()).then(|| v.to_owned()),
            "session.timeout.ms" => self.session_timeout = ms(key, v)?,
            "heartbeat.interval.ms" => self.heartbeat_interval = ms(key, v)?,
            "max.poll.interval.ms" => self.rebalance_timeout = ms(key, v)?,
            "partition.assignment.strategy" => {
                let names: Vec<String> = v
                    .split(',')
                    .map(|n| {
                        let n = n.trim();
                        // Java's class names name the same assignors.
                        match n.rsplit('.').next().unwrap_or(n) {
                            "RangeAssignor" => "range",
                            "RoundRobinAssignor" => "roundrobin",
                            "CooperativeStickyAssignor" => "cooperative-sticky",
                            other => other,
                        }
                        .to_owned()
                    })
                    .filter(|n| !n.is_empty())
                    .collect();
                if let Some(bad) = names
                    .iter()
                    .find(|n| crate::consumer::group::assignor::by_name(n).is_none())
                {
                    return Err(invalid(
                        key,
                        v,
                        format!("unknown assignor `{bad}` (range, roundrobin, cooperative-sticky)"),
                    ));
                }
                self.assignors = names;
            }
            "enable.auto.commit" => self.enable_auto_commit = parse(key, v)?,
            "auto.commit.interval.ms" => self.auto_commit_interval = ms(key, v)?,
            "client.rack" => self.client_rack = (!v.is_empty()).then(|| v.to_owned()),
            "group.protocol" => {
                self.group_protocol = match v.to_ascii_lowercase().as_str() {
                    "classic" => GroupProtocol::Classic,
                    "consumer" => GroupProtocol::Consumer,
                    _ => return Err(invalid(key, v, "classic or consumer")),
                }
            }
            "group.remote.assignor" => {
                self.group_remote_assignor = (!v.is_empty()).then(|| v.to_owned())
            }
            // spate always checks CRCs; librdkafka's switch is accepted for compatibility.
            "check.crcs" => {
                if !parse::<bool>(key, v)? {
                    return Err(invalid(key, v, "spate always checks CRC-32C"));
                }
            }
            _ => return self.client.set(key, value),
        }
        Ok(())
    }

    /// Checks the settings together.
    pub fn validate(&self) -> Result<(), ConfigError> {
        self.client.validate()?;
        let positive = |key: &str, n: i64| {
            if n <= 0 {
                Err(invalid(key, &n.to_string(), "must be positive"))
            } else {
                Ok(())
            }
        };
        positive("fetch.max.bytes", i64::from(self.fetch_max_bytes))?;
        positive(
            "max.partition.fetch.bytes",
            i64::from(self.max_partition_fetch_bytes),
        )?;
        positive("fetch.buffer.bytes", self.buffer_bytes as i64)?;
        if let Some(bad) = self
            .assignors
            .iter()
            .find(|n| crate::consumer::group::assignor::by_name(n).is_none())
        {
            return Err(invalid(
                "partition.assignment.strategy",
                bad,
                "unknown assignor (range, roundrobin, cooperative-sticky)",
            ));
        }
        if self.assignors.is_empty() {
            return Err(invalid(
                "partition.assignment.strategy",
                "",
                "at least one assignor is needed",
            ));
        }
        if self.fetch_min_bytes < 0 {
            return Err(invalid(
                "fetch.min.bytes",
                &self.fetch_min_bytes.to_string(),
                "must not be negative",
            ));
        }
        Ok(())
    }

    /// Sets `session.timeout.ms` and `heartbeat.interval.ms`.
    pub fn session_timeout(mut self, session: Duration, heartbeat: Duration) -> Self {
        self.session_timeout = session;
        self.heartbeat_interval = heartbeat;
        self
    }

    /// Sets `group.protocol`.
    pub fn group_protocol(mut self, protocol: GroupProtocol) -> Self {
        self.group_protocol = protocol;
        self
    }

    /// Sets `group.remote.assignor` (KIP-848's server-side assignor).
    pub fn remote_assignor(mut self, name: &str) -> Self {
        self.group_remote_assignor = Some(name.to_owned());
        self
    }

    /// Sets `partition.assignment.strategy` (assignor names).
    pub fn assignors(mut self, names: &[&str]) -> Self {
        self.assignors = names.iter().map(|n| (*n).to_owned()).collect();
        self
    }

    /// Sets `group.instance.id` (static membership).
    pub fn group_instance_id(mut self, id: &str) -> Self {
        self.group_instance_id = Some(id.to_owned());
        self
    }

    /// Sets `enable.auto.commit`.
    pub fn auto_commit(mut self, on: bool) -> Self {
        self.enable_auto_commit = on;
        self
    }

    /// Sets `group.id`.
    pub fn group_id(mut self, group: &str) -> Self {
        self.group_id = Some(group.to_owned());
        self
    }

    /// Sets `auto.offset.reset`.
    pub fn auto_offset_reset(mut self, reset: OffsetReset) -> Self {
        self.auto_offset_reset = reset;
        self
    }

    /// Sets `isolation.level`.
    pub fn isolation_level(mut self, level: IsolationLevel) -> Self {
        self.isolation_level = level;
        self
    }

    /// Sets `fetch.max.wait.ms`.
    pub fn fetch_max_wait(mut self, wait: Duration) -> Self {
        self.fetch_max_wait = wait;
        self
    }

    /// Sets `max.partition.fetch.bytes`.
    pub fn max_partition_fetch_bytes(mut self, bytes: i32) -> Self {
        self.max_partition_fetch_bytes = bytes;
        self
    }

    /// Sets `fetch.max.bytes`.
    pub fn fetch_max_bytes(mut self, bytes: i32) -> Self {
        self.fetch_max_bytes = bytes;
        self
    }

    /// Sets `fetch.buffer.bytes` (decoded bytes waiting for the application).
    pub fn buffer_bytes(mut self, bytes: usize) -> Self {
        self.buffer_bytes = bytes;
        self
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn consumer_keys_then_client_keys() {
        let c = ConsumerConfig::from_pairs([
            ("bootstrap.servers", "h:1"),
            ("group.id", "g"),
            ("auto.offset.reset", "smallest"),
            ("isolation.level", "read_committed"),
            ("fetch.wait.max.ms", "100"),
            ("queued.max.messages.kbytes", "1024"),
            ("client.id", "c"),
        ])
        .unwrap();
        assert_eq!(c.group_id.as_deref(), Some("g"));
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        assert_eq!(c.fetch_max_wait, Duration::from_millis(100));
        assert_eq!(c.buffer_bytes, 1 << 20);
        assert_eq!(c.client.client_id, "c");
        let err = |k: &str, v: &str| {
            ConsumerConfig::from_pairs([("bootstrap.servers", "h:1"), (k, v)])
                .unwrap_err()
                .to_string()
        };
        assert!(err("auto.offset.reset", "sideways").contains("auto.offset.reset"));
        assert!(err("check.crcs", "false").contains("always"));
        assert!(err("fetch.max.bytes", "0").contains("fetch.max.bytes"));
        assert!(err("linger.ms", "5").contains("unknown configuration key `linger.ms`"));
        assert!(err("partition.assignment.strategy", "range,fancy").contains("fancy"));
        // The builder's names are checked too.
        let built = ConsumerConfig::new("h:1").assignors(&["sticky-ish"]);
        assert!(built
            .validate()
            .unwrap_err()
            .to_string()
            .contains("sticky-ish"));
        let c =
            ConsumerConfig::from_pairs([("bootstrap.servers", "h:1"), ("client.rack", "eu-1a")])
                .unwrap();
        assert_eq!(c.client_rack.as_deref(), Some("eu-1a"));
    }
}
