//! Describing and changing configs: DescribeConfigs and IncrementalAlterConfigs (KIP-339), as
//! Java's `Admin.describeConfigs` and `Admin.incrementalAlterConfigs`.
//!
//! Topic resources go to any broker (KRaft brokers forward changes to the controller); a
//! broker resource goes to that broker.

use kafka_protocol::messages::describe_configs_request::DescribeConfigsResource;
use kafka_protocol::messages::incremental_alter_configs_request::{
    AlterConfigsResource, AlterableConfig,
};
use kafka_protocol::messages::{DescribeConfigsRequest, IncrementalAlterConfigsRequest};
use kafka_protocol::protocol::StrBytes;

use super::admin::check;
use super::Client;
use crate::error::{Error, KafkaCode};
use crate::net::Connection;

/// What a config belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ConfigResource {
    /// A topic's configs.
    Topic(String),
    /// A broker's configs.
    Broker(i32),
}

impl ConfigResource {
    fn wire(&self) -> (i8, String) {
        match self {
            ConfigResource::Topic(t) => (2, t.clone()),
            ConfigResource::Broker(b) => (4, b.to_string()),
        }
    }
}

/// Where a config's value comes from (DescribeConfigs `config_source`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ConfigSource {
    /// Set for this topic.
    DynamicTopic,
    /// Set for this broker at run time.
    DynamicBroker,
    /// Set for every broker at run time.
    DynamicDefaultBroker,
    /// The broker's configuration file.
    StaticBroker,
    /// The built-in default.
    Default,
    /// Anything else the broker says (a logger, client metrics, a group config).
    Other(i8),
}

impl ConfigSource {
    fn from_wire(code: i8) -> Self {
        match code {
            1 => ConfigSource::DynamicTopic,
            2 => ConfigSource::DynamicBroker,
            3 => ConfigSource::DynamicDefaultBroker,
            4 => ConfigSource::StaticBroker,
            5 => ConfigSource::Default,
            other => ConfigSource::Other(other),
        }
    }

    /// Kafka's name for it (as `kafka-configs.sh --describe` prints it).
    pub fn name(self) -> &'static str {
        match self {
            ConfigSource::DynamicTopic => "DYNAMIC_TOPIC_CONFIG",
            ConfigSource::DynamicBroker => "DYNAMIC_BROKER_CONFIG",
            ConfigSource::DynamicDefaultBroker => "DYNAMIC_DEFAULT_BROKER_CONFIG",
            ConfigSource::StaticBroker => "STATIC_BROKER_CONFIG",
            ConfigSource::Default => "DEFAULT_CONFIG",
            ConfigSource::Other(_) => "UNKNOWN",
        }
    }
}

/// One config as described.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigEntry {
    /// Its name.
    pub name: String,
    /// Its value (`None` when sensitive or unset).
    pub value: Option<String>,
    /// Where the value comes from.
    pub source: ConfigSource,
    /// Whether it cannot be changed.
    pub read_only: bool,
    /// Whether the value is secret (and so not shown).
    pub sensitive: bool,
}

impl ConfigEntry {
    /// Whether the value is the built-in default.
    pub fn is_default(&self) -> bool {
        self.source == ConfigSource::Default
    }
}

/// One change of [`Client::incremental_alter_configs`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AlterConfigOp {
    /// Sets the config to this value.
    Set(String, String),
    /// Removes the override: the config takes its default again.
    Delete(String),
    /// Adds items to a list config (`cleanup.policy`, …).
    Append(String, String),
    /// Removes items from a list config.
    Subtract(String, String),
}

impl AlterConfigOp {
    fn wire(&self) -> AlterableConfig {
        let (op, name, value) = match self {
            AlterConfigOp::Set(n, v) => (0, n, Some(v)),
            AlterConfigOp::Delete(n) => (1, n, None),
            AlterConfigOp::Append(n, v) => (2, n, Some(v)),
            AlterConfigOp::Subtract(n, v) => (3, n, Some(v)),
        };
        AlterableConfig::default()
            .with_name(StrBytes::from_string(name.clone()))
            .with_config_operation(op)
            .with_value(value.map(|v| StrBytes::from_string(v.clone())))
    }
}

/// A passing error in an answer (a broker loading, a throttle): fail this attempt so that it is
/// tried again. Other errors (an unknown topic, a bad config) are the answer.
fn passing(codes: impl IntoIterator<Item = i16>, what: &str) -> Result<(), Error> {
    for code in codes {
        if let Err(code) = KafkaCode::check(code) {
            if code.action() == crate::Action::Retry {
                return Err(Error::kafka(code, what, None));
            }
        }
    }
    Ok(())
}

impl Client {
    async fn config_broker(&self, resource: &ConfigResource) -> Result<Connection, Error> {
        match resource {
            ConfigResource::Broker(id) => self.broker(*id).await,
            ConfigResource::Topic(_) => self.any_broker().await,
        }
    }

    /// Every config of `resource` (its name, value and where the value comes from), sorted by
    /// name. A topic that does not exist is UNKNOWN_TOPIC_OR_PARTITION.
    pub async fn describe_configs(
        &self,
        resource: &ConfigResource,
    ) -> Result<Vec<ConfigEntry>, Error> {
        let (kind, name) = resource.wire();
        let request = DescribeConfigsRequest::default().with_resources(vec![
            DescribeConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(StrBytes::from_string(name.clone()))
                .with_configuration_keys(None),
        ]);
        let what = format!("describe configs of {resource:?}");
        let response = self
            .with_retry(&what, &[], || async {
                let conn = self.config_broker(resource).await?;
                let response = conn.request(&request).await?;
                passing(response.results.iter().map(|r| r.error_code), &what)?;
                Ok(response)
            })
            .await?;
        let result = response
            .results
            .into_iter()
            .find(|r| r.resource_name.as_str() == name && r.resource_type == kind)
            .ok_or_else(|| Error::UnknownInMetadata(format!("{what}: no answer for it")))?;
        check(result.error_code, || what, result.error_message.as_ref())?;
        let mut entries: Vec<ConfigEntry> = result
            .configs
            .into_iter()
            .map(|c| ConfigEntry {
                name: c.name.to_string(),
                value: c.value.map(|v| v.to_string()),
                source: ConfigSource::from_wire(c.config_source),
                read_only: c.read_only,
                sensitive: c.is_sensitive,
            })
            .collect();
        entries.sort_by(|a, b| a.name.cmp(&b.name));
        Ok(entries)
    }

    /// Changes configs of `resource`, all or none (`validate_only`: only checks them). An
    /// unknown config or a bad value is INVALID_CONFIG with the broker's reason.
    pub async fn incremental_alter_configs(
        &self,
        resource: &ConfigResource,
        ops: &[AlterConfigOp],
        validate_only: bool,
    ) -> Result<(), Error> {
        let (kind, name) = resource.wire();
        let request = IncrementalAlterConfigsRequest::default()
            .with_validate_only(validate_only)
            .with_resources(vec![AlterConfigsResource::default()
                .with_resource_type(kind)
                .with_resource_name(StrBytes::from_string(name.clone()))
                .with_configs(ops.iter().map(AlterConfigOp::wire).collect())]);
        let what = format!("alter configs of {resource:?}");
        let response = self
            .with_retry(&what, &[], || async {
                let conn = self.config_broker(resource).await?;
                let response = conn.request(&request).await?;
                passing(response.responses.iter().map(|r| r.error_code), &what)?;
                Ok(response)
            })
            .await?;
        let answer = response
            .responses
            .iter()
            .find(|r| r.resource_name.as_str() == name)
            .ok_or_else(|| Error::UnknownInMetadata(format!("{what}: no answer for it")))?;
        check(answer.error_code, || what, answer.error_message.as_ref())?;
        tracing::info!(?resource, ?ops, validate_only, "configs altered");
        Ok(())
    }
}
