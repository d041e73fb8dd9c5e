//! Version negotiation: intersect the versions spate speaks with a broker's ApiVersions answer.
//!
//! # References
//! - Kafka protocol guide, "Versioning and Compatibility".
//! - KIP-35 (ApiVersions), KIP-511 (client software name and version in ApiVersions v3).

use std::collections::HashMap;
use std::fmt;

use kafka_protocol::messages::api_versions_response::ApiVersion;
use kafka_protocol::messages::{ApiKey, ApiVersionsResponse};

use super::{ApiVersionRangeDisplay, ProtocolError};

/// An inclusive range of versions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct ApiVersionRange {
    /// Lowest version.
    pub min: i16,
    /// Highest version.
    pub max: i16,
}

impl ApiVersionRange {
    /// The versions in both ranges, if any.
    pub fn intersect(self, other: ApiVersionRange) -> Option<ApiVersionRange> {
        let min = self.min.max(other.min);
        let max = self.max.min(other.max);
        (min <= max).then_some(ApiVersionRange { min, max })
    }
}

impl fmt::Display for ApiVersionRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "v{}..=v{}", self.min, self.max)
    }
}

const fn r(min: i16, max: i16) -> ApiVersionRange {
    ApiVersionRange { min, max }
}

/// The APIs spate speaks and the versions of each it has been written and tested for.
///
/// Fetch stops at v16: spate decodes Fetch responses itself ([`super::fetch`]) and v17+
/// is not yet covered by its tests. Produce v12, EndTxn v5 and TxnOffsetCommit v5 are
/// transactions v2 (KIP-890): a transactional producer uses them only when the cluster has
/// finalized `transaction.version` 2 ([`NegotiatedVersions::finalized_feature`]), and v11,
/// v4 and v4 otherwise, as the Java client does. AddPartitionsToTxn v4+ is the brokers' form.
pub const SUPPORTED_APIS: &[(ApiKey, ApiVersionRange)] = &[
    (ApiKey::Produce, r(3, 12)),
    (ApiKey::Fetch, r(4, 16)),
    (ApiKey::ListOffsets, r(1, 8)),
    (ApiKey::Metadata, r(1, 13)),
    (ApiKey::OffsetCommit, r(2, 9)),
    (ApiKey::OffsetFetch, r(1, 9)),
    (ApiKey::FindCoordinator, r(0, 5)),
    (ApiKey::JoinGroup, r(0, 9)),
    (ApiKey::Heartbeat, r(0, 4)),
    (ApiKey::LeaveGroup, r(0, 5)),
    (ApiKey::SyncGroup, r(0, 5)),
    (ApiKey::DescribeGroups, r(0, 5)),
    (ApiKey::ListGroups, r(0, 4)),
    (ApiKey::SaslHandshake, r(0, 1)),
    (ApiKey::ApiVersions, r(0, 3)),
    (ApiKey::CreateTopics, r(2, 7)),
    (ApiKey::DeleteTopics, r(1, 6)),
    (ApiKey::InitProducerId, r(0, 5)),
    (ApiKey::AddPartitionsToTxn, r(0, 3)),
    (ApiKey::AddOffsetsToTxn, r(0, 4)),
    (ApiKey::EndTxn, r(0, 5)),
    (ApiKey::TxnOffsetCommit, r(0, 5)),
    (ApiKey::DescribeConfigs, r(1, 4)),
    (ApiKey::SaslAuthenticate, r(0, 2)),
    (ApiKey::OffsetForLeaderEpoch, r(2, 4)),
    (ApiKey::ConsumerGroupHeartbeat, r(0, 1)),
    (ApiKey::ShareGroupHeartbeat, r(1, 1)),
    (ApiKey::ShareFetch, r(1, 1)),
    (ApiKey::ShareAcknowledge, r(1, 1)),
    (ApiKey::DeleteRecords, r(0, 2)),
    (ApiKey::DeleteGroups, r(0, 2)),
    (ApiKey::CreatePartitions, r(0, 3)),
    (ApiKey::IncrementalAlterConfigs, r(0, 1)),
    (ApiKey::OffsetDelete, r(0, 0)),
];

/// The versions spate speaks for `api`, if it speaks it at all.
pub fn supported(api: ApiKey) -> Option<ApiVersionRange> {
    SUPPORTED_APIS
        .iter()
        .find(|(k, _)| *k == api)
        .map(|(_, range)| *range)
}

/// [`SUPPORTED_APIS`] as the `api_keys` of an ApiVersions response: what a peer speaking exactly
/// spate's versions answers (scripted peers, benchmarks, an embedded broker).
pub fn supported_api_versions() -> Vec<ApiVersion> {
    SUPPORTED_APIS
        .iter()
        .map(|(api, r)| {
            ApiVersion::default()
                .with_api_key(*api as i16)
                .with_min_version(r.min)
                .with_max_version(r.max)
        })
        .collect()
}

/// The outcome of negotiation with one broker: for each API, the highest version both sides
/// speak.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NegotiatedVersions {
    broker: HashMap<i16, ApiVersionRange>,
    /// Finalized features (KIP-584, ApiVersions v3+): name → level.
    finalized: HashMap<String, i16>,
}

impl NegotiatedVersions {
    /// Records what a broker answered to ApiVersions.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        let broker = response
            .api_keys
            .iter()
            .map(|k| {
                (
                    k.api_key,
                    ApiVersionRange {
                        min: k.min_version,
                        max: k.max_version,
                    },
                )
            })
            .collect();
        let finalized = response
            .finalized_features
            .iter()
            .map(|f| (f.name.to_string(), f.max_version_level))
            .collect();
        NegotiatedVersions { broker, finalized }
    }

    /// The level of a feature the cluster has finalized (KIP-584), as this broker reported it:
    /// `transaction.version` 2 turns transactions v2 on (KIP-890). `None` when not finalized
    /// (or the broker answered ApiVersions below v3).
    pub fn finalized_feature(&self, name: &str) -> Option<i16> {
        self.finalized.get(name).copied()
    }

    /// The broker's advertised range for `api`.
    pub fn broker_range(&self, api: ApiKey) -> Option<ApiVersionRange> {
        self.broker.get(&(api as i16)).copied()
    }

    /// The version to use for `api`: the highest both sides speak.
    pub fn version(&self, api: ApiKey) -> Result<i16, ProtocolError> {
        let theirs = self.broker_range(api);
        let ours = supported(api).unwrap_or(ApiVersionRange { min: 0, max: -1 });
        theirs
            .and_then(|t| t.intersect(ours))
            .map(|common| common.max)
            .ok_or(ProtocolError::UnsupportedVersion {
                api,
                ours,
                theirs: ApiVersionRangeDisplay(theirs),
            })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::api_versions_response::ApiVersion;

    fn broker(ranges: &[(ApiKey, i16, i16)]) -> NegotiatedVersions {
        let resp = ApiVersionsResponse::default().with_api_keys(
            ranges
                .iter()
                .map(|&(k, min, max)| {
                    ApiVersion::default()
                        .with_api_key(k as i16)
                        .with_min_version(min)
                        .with_max_version(max)
                })
                .collect(),
        );
        NegotiatedVersions::from_response(&resp)
    }

    #[test]
    fn picks_the_highest_common_version() {
        let v = broker(&[(ApiKey::Fetch, 0, 17), (ApiKey::Produce, 0, 7)]);
        assert_eq!(v.version(ApiKey::Fetch).unwrap(), 16);
        assert_eq!(v.version(ApiKey::Produce).unwrap(), 7);
    }

    #[test]
    fn no_overlap_is_an_error_naming_both_ranges() {
        let v = broker(&[(ApiKey::Fetch, 0, 3)]);
        let err = v.version(ApiKey::Fetch).unwrap_err();
        assert_eq!(
            err.to_string(),
            "no common version of Fetch: spate speaks v4..=v16, the broker v0..=v3"
        );
        let err = v.version(ApiKey::Produce).unwrap_err();
        assert!(err.to_string().ends_with("the broker none"), "{err}");
    }

    #[test]
    fn supported_ranges_are_within_what_the_message_crate_encodes() {
        for (api, ours) in SUPPORTED_APIS {
            let theirs = api.valid_versions();
            assert!(
                ours.min >= theirs.min && ours.max <= theirs.max && ours.min <= ours.max,
                "{api:?}: {ours} outside {}..{}",
                theirs.min,
                theirs.max
            );
        }
    }
}
