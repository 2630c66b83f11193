//! The group APIs on the wire: which versions we speak, fitting a request to the version a broker
//! negotiated, and framing.
//!
//! The state machine builds every request with all the fields it wants (member reason, instance id …);
//! [`Request::fit`] clears what the negotiated version does not have, because `kafka-protocol` refuses
//! to encode a non-default field a version lacks. Responses come back as `kafka-protocol` structs, whose
//! missing fields keep their defaults.

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, ConsumerGroupDescribeRequest,
        ConsumerGroupDescribeResponse, ConsumerGroupHeartbeatRequest,
        ConsumerGroupHeartbeatResponse, DescribeGroupsRequest, DescribeGroupsResponse,
        FindCoordinatorRequest, FindCoordinatorResponse, HeartbeatRequest, HeartbeatResponse,
        JoinGroupRequest, JoinGroupResponse, LeaveGroupRequest, LeaveGroupResponse,
        MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
        OffsetFetchRequest, OffsetFetchResponse, RequestHeader, ResponseHeader, SyncGroupRequest,
        SyncGroupResponse,
    },
    protocol::{Decodable, Encodable, StrBytes, VersionRange},
};

/// A request the group state machine wants sent.
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Request {
    /// Which broker coordinates the group.
    FindCoordinator(FindCoordinatorRequest),
    /// Join (or rejoin) the group.
    JoinGroup(JoinGroupRequest),
    /// Send (leader) or receive (everyone) the assignment.
    SyncGroup(SyncGroupRequest),
    /// Stay alive; learn of rebalances.
    Heartbeat(HeartbeatRequest),
    /// Committed offsets of newly assigned partitions.
    OffsetFetch(OffsetFetchRequest),
    /// Commit processed positions.
    OffsetCommit(OffsetCommitRequest),
    /// Leave the group on shutdown.
    LeaveGroup(LeaveGroupRequest),
    /// Partition counts of the subscribed topics (the leader assigns from them).
    Metadata(MetadataRequest),
    /// A group's state and members (for lag tools; members never send it).
    DescribeGroups(DescribeGroupsRequest),
    /// The KIP-848 member's one request: join, heartbeat, acknowledge, leave.
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatRequest),
    /// A KIP-848 group's members, assignments and epochs (for lag tools).
    ConsumerGroupDescribe(ConsumerGroupDescribeRequest),
}

/// The broker's answer to a [`Request`].
#[derive(Debug, Clone, PartialEq)]
#[allow(clippy::large_enum_variant)]
pub enum Response {
    /// Answer to [`Request::FindCoordinator`].
    FindCoordinator(FindCoordinatorResponse),
    /// Answer to [`Request::JoinGroup`].
    JoinGroup(JoinGroupResponse),
    /// Answer to [`Request::SyncGroup`].
    SyncGroup(SyncGroupResponse),
    /// Answer to [`Request::Heartbeat`].
    Heartbeat(HeartbeatResponse),
    /// Answer to [`Request::OffsetFetch`].
    OffsetFetch(OffsetFetchResponse),
    /// Answer to [`Request::OffsetCommit`].
    OffsetCommit(OffsetCommitResponse),
    /// Answer to [`Request::LeaveGroup`].
    LeaveGroup(LeaveGroupResponse),
    /// Answer to [`Request::Metadata`].
    Metadata(MetadataResponse),
    /// Answer to [`Request::DescribeGroups`].
    DescribeGroups(DescribeGroupsResponse),
    /// Answer to [`Request::ConsumerGroupHeartbeat`].
    ConsumerGroupHeartbeat(ConsumerGroupHeartbeatResponse),
    /// Answer to [`Request::ConsumerGroupDescribe`].
    ConsumerGroupDescribe(ConsumerGroupDescribeResponse),
}

/// What went wrong on the wire.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireError {
    /// The broker does not speak any version of an API we can use.
    #[error("the broker supports {api:?} versions {broker}, we need {ours}")]
    UnsupportedVersion {
        /// The API.
        api: ApiKey,
        /// What the broker advertised.
        broker: String,
        /// What we implement.
        ours: VersionRange,
    },
    /// Encoding or decoding failed.
    #[error("{what}: {reason}")]
    Codec {
        /// What was being encoded or decoded.
        what: String,
        /// The codec's message.
        reason: String,
    },
}

/// The versions we implement, per API. The minimums are where a field we rely on appeared
/// (JoinGroup v1: rebalance timeout; OffsetFetch v1 and OffsetCommit v2: `kafka-protocol`'s floor;
/// Metadata v1: null topics meaning "none"). OffsetFetch v8+ batches groups: a request in the
/// single-group layout is sent at v7 at most (see [`Request::version_for`]); v9 carries a KIP-848
/// member's id and epoch. OffsetCommit v9 only changes what the broker checks, not the layout.
pub fn supported(api: ApiKey) -> VersionRange {
    let (min, max) = match api {
        ApiKey::ApiVersions => (0, 3),
        ApiKey::FindCoordinator => (0, 4),
        ApiKey::JoinGroup => (1, 9),
        ApiKey::SyncGroup => (0, 5),
        ApiKey::Heartbeat => (0, 4),
        ApiKey::OffsetFetch => (1, 9),
        ApiKey::OffsetCommit => (2, 9),
        ApiKey::LeaveGroup => (0, 5),
        ApiKey::Metadata => (1, 12),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::ConsumerGroupHeartbeat => (0, 1),
        ApiKey::ConsumerGroupDescribe => (0, 1),
        _ => (0, -1),
    };
    VersionRange { min, max }
}

/// The APIs the group client uses, after ApiVersions. A classic member sends the first eight; the
/// rest are [`OPTIONAL_APIS`].
pub const GROUP_APIS: [ApiKey; 11] = [
    ApiKey::FindCoordinator,
    ApiKey::JoinGroup,
    ApiKey::SyncGroup,
    ApiKey::Heartbeat,
    ApiKey::OffsetFetch,
    ApiKey::OffsetCommit,
    ApiKey::LeaveGroup,
    ApiKey::Metadata,
    ApiKey::DescribeGroups,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
];

/// APIs a broker may lack without failing negotiation; calling one it lacks fails that call.
/// DescribeGroups is for [`crate::inspect`] only; the KIP-848 APIs need Kafka 4.0 (or 3.7+ with the
/// early-access protocol enabled), and only a member configured for that protocol sends them.
pub const OPTIONAL_APIS: [ApiKey; 3] = [
    ApiKey::DescribeGroups,
    ApiKey::ConsumerGroupHeartbeat,
    ApiKey::ConsumerGroupDescribe,
];

/// Negotiated versions of one connection, indexed by API key.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Versions(std::collections::BTreeMap<i16, i16>);

impl Versions {
    /// The highest version both sides speak for every API in [`GROUP_APIS`].
    pub fn negotiate(response: &ApiVersionsResponse) -> Result<Self, WireError> {
        Self::from_broker(&transport::BrokerVersions::from_response(response))
    }

    /// [`negotiate`](Self::negotiate) from what a [`transport::Connection`] learned at connect time.
    pub fn from_broker(broker: &transport::BrokerVersions) -> Result<Self, WireError> {
        let mut out = std::collections::BTreeMap::new();
        for api in GROUP_APIS {
            match broker.highest_common(api, supported(api)) {
                Ok(version) => {
                    out.insert(api as i16, version);
                }
                Err(_) if OPTIONAL_APIS.contains(&api) => {}
                Err((broker, ours)) => {
                    return Err(WireError::UnsupportedVersion { api, broker, ours })
                }
            }
        }
        Ok(Self(out))
    }

    /// All APIs at one version each (tests, and brokers we already know).
    pub fn fixed(pairs: &[(ApiKey, i16)]) -> Self {
        Self(pairs.iter().map(|(k, v)| (*k as i16, *v)).collect())
    }

    /// The version to use for `api`.
    pub fn get(&self, api: ApiKey) -> Option<i16> {
        self.0.get(&(api as i16)).copied()
    }
}

impl Request {
    /// The API this request belongs to.
    pub fn api_key(&self) -> ApiKey {
        match self {
            Self::FindCoordinator(_) => ApiKey::FindCoordinator,
            Self::JoinGroup(_) => ApiKey::JoinGroup,
            Self::SyncGroup(_) => ApiKey::SyncGroup,
            Self::Heartbeat(_) => ApiKey::Heartbeat,
            Self::OffsetFetch(_) => ApiKey::OffsetFetch,
            Self::OffsetCommit(_) => ApiKey::OffsetCommit,
            Self::LeaveGroup(_) => ApiKey::LeaveGroup,
            Self::Metadata(_) => ApiKey::Metadata,
            Self::DescribeGroups(_) => ApiKey::DescribeGroups,
            Self::ConsumerGroupHeartbeat(_) => ApiKey::ConsumerGroupHeartbeat,
            Self::ConsumerGroupDescribe(_) => ApiKey::ConsumerGroupDescribe,
        }
    }

    /// The version to send this request at, given the `negotiated` one: a single-group OffsetFetch
    /// stops at v7 (v8 moved the group into a list; the KIP-848 member fills that list and needs v9).
    pub fn version_for(&self, negotiated: i16) -> i16 {
        match self {
            Self::OffsetFetch(r) if r.groups.is_empty() => negotiated.min(7),
            _ => negotiated,
        }
    }

    /// Clears what `version` does not have and moves what changed shape (FindCoordinator's key,
    /// LeaveGroup's member list), so the request encodes at that version.
    pub fn fit(&mut self, version: i16) {
        match self {
            Self::FindCoordinator(r) => {
                if version >= 4 {
                    if r.coordinator_keys.is_empty() {
                        r.coordinator_keys = vec![r.key.clone()];
                    }
                    r.key = StrBytes::default();
                } else if let Some(key) = r.coordinator_keys.first().cloned() {
                    r.key = key;
                    r.coordinator_keys.clear();
                }
            }
            Self::JoinGroup(r) => {
                if version < 5 {
                    r.group_instance_id = None;
                }
                if version < 8 {
                    r.reason = None;
                }
            }
            Self::SyncGroup(r) => {
                if version < 3 {
                    r.group_instance_id = None;
                }
                if version < 5 {
                    r.protocol_type = None;
                    r.protocol_name = None;
                }
            }
            Self::Heartbeat(r) => {
                if version < 3 {
                    r.group_instance_id = None;
                }
            }
            Self::OffsetFetch(r) => {
                if version < 7 {
                    r.require_stable = false;
                }
            }
            Self::OffsetCommit(r) => {
                if version < 7 {
                    r.group_instance_id = None;
                }
                if version >= 5 {
                    r.retention_time_ms = -1;
                }
                if version < 6 {
                    for p in r.topics.iter_mut().flat_map(|t| t.partitions.iter_mut()) {
                        p.committed_leader_epoch = -1;
                    }
                }
            }
            Self::LeaveGroup(r) => {
                if version >= 3 {
                    if r.members.is_empty() && !r.member_id.is_empty() {
                        r.members = vec![
                            kafka_protocol::messages::leave_group_request::MemberIdentity::default(
                            )
                            .with_member_id(r.member_id.clone()),
                        ];
                    }
                    r.member_id = StrBytes::default();
                    if version < 5 {
                        for m in &mut r.members {
                            m.reason = None;
                        }
                    }
                } else if let Some(first) = r.members.first() {
                    r.member_id = first.member_id.clone();
                    r.members.clear();
                }
            }
            Self::Metadata(r) => {
                if version < 4 {
                    r.allow_auto_topic_creation = true;
                }
                if !(8..=10).contains(&version) {
                    r.include_cluster_authorized_operations = false;
                }
                if version < 8 {
                    r.include_topic_authorized_operations = false;
                }
            }
            Self::DescribeGroups(r) => {
                if version < 3 {
                    r.include_authorized_operations = false;
                }
            }
            Self::ConsumerGroupHeartbeat(_) | Self::ConsumerGroupDescribe(_) => {}
        }
    }

    /// Encodes a whole frame (size, header, body) at `version` with `correlation_id`.
    pub fn encode_frame(
        &self,
        version: i16,
        correlation_id: i32,
        client_id: &str,
    ) -> Result<Bytes, WireError> {
        frame(
            self.api_key(),
            version,
            correlation_id,
            client_id,
            |buf| match self {
                Self::FindCoordinator(r) => r.encode(buf, version),
                Self::JoinGroup(r) => r.encode(buf, version),
                Self::SyncGroup(r) => r.encode(buf, version),
                Self::Heartbeat(r) => r.encode(buf, version),
                Self::OffsetFetch(r) => r.encode(buf, version),
                Self::OffsetCommit(r) => r.encode(buf, version),
                Self::LeaveGroup(r) => r.encode(buf, version),
                Self::Metadata(r) => r.encode(buf, version),
                Self::DescribeGroups(r) => r.encode(buf, version),
                Self::ConsumerGroupHeartbeat(r) => r.encode(buf, version),
                Self::ConsumerGroupDescribe(r) => r.encode(buf, version),
            },
        )
    }
}

/// Size prefix, request header for `api` at `version`, then the body `encode_body` writes.
fn frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &str,
    encode_body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> Result<Bytes, WireError> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(StrBytes::from_string(client_id.to_string())));
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    let codec = |e: anyhow::Error| WireError::Codec {
        what: format!("encoding {api:?} v{version}"),
        reason: e.to_string(),
    };
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(codec)?;
    encode_body(&mut buf).map_err(codec)?;
    let size = (buf.len() - 4) as i32;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a response frame's body (after the size prefix) for `api` at `version`, checking the
/// correlation id and that no bytes are left over (leftovers mean we decoded the wrong layout).
pub fn decode_response(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Result<Response, WireError> {
    let codec = |reason: String| WireError::Codec {
        what: format!("decoding {api:?} v{version} response"),
        reason,
    };
    let header = ResponseHeader::decode(&mut body, api.response_header_version(version))
        .map_err(|e| codec(e.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(codec(format!(
            "correlation id {} does not match request {correlation_id}",
            header.correlation_id
        )));
    }
    fn body_of<T: Decodable>(body: &mut Bytes, version: i16) -> Result<T, String> {
        T::decode(body, version).map_err(|e| e.to_string())
    }
    let response = match api {
        ApiKey::FindCoordinator => body_of(&mut body, version).map(Response::FindCoordinator),
        ApiKey::JoinGroup => body_of(&mut body, version).map(Response::JoinGroup),
        ApiKey::SyncGroup => body_of(&mut body, version).map(Response::SyncGroup),
        ApiKey::Heartbeat => body_of(&mut body, version).map(Response::Heartbeat),
        ApiKey::OffsetFetch => body_of(&mut body, version).map(Response::OffsetFetch),
        ApiKey::OffsetCommit => body_of(&mut body, version).map(Response::OffsetCommit),
        ApiKey::LeaveGroup => body_of(&mut body, version).map(Response::LeaveGroup),
        ApiKey::Metadata => body_of(&mut body, version).map(Response::Metadata),
        ApiKey::DescribeGroups => body_of(&mut body, version).map(Response::DescribeGroups),
        ApiKey::ConsumerGroupHeartbeat => {
            body_of(&mut body, version).map(Response::ConsumerGroupHeartbeat)
        }
        ApiKey::ConsumerGroupDescribe => {
            body_of(&mut body, version).map(Response::ConsumerGroupDescribe)
        }
        other => Err(format!("{other:?} is not a group API")),
    }
    .map_err(codec)?;
    if body.has_remaining() {
        return Err(codec(format!("{} byte(s) left over", body.remaining())));
    }
    Ok(response)
}

/// ApiVersions request frame at `version`.
pub fn api_versions_frame(
    version: i16,
    correlation_id: i32,
    client_id: &str,
) -> Result<Bytes, WireError> {
    let body = ApiVersionsRequest::default()
        .with_client_software_name(StrBytes::from_static_str("kafka-lag-lab"))
        .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
    frame(
        ApiKey::ApiVersions,
        version,
        correlation_id,
        client_id,
        |buf| body.encode(buf, version),
    )
}

/// Decodes an ApiVersions response. Its header is always v0, even for flexible versions (KIP-511), so
/// an old broker can answer a version it does not know with UNSUPPORTED_VERSION and its own range.
pub fn decode_api_versions(
    version: i16,
    correlation_id: i32,
    mut body: Bytes,
) -> Result<ApiVersionsResponse, WireError> {
    let codec = |reason: String| WireError::Codec {
        what: format!("decoding ApiVersions v{version} response"),
        reason,
    };
    let header = ResponseHeader::decode(&mut body, 0).map_err(|e| codec(e.to_string()))?;
    if header.correlation_id != correlation_id {
        return Err(codec(format!(
            "correlation id {} does not match {correlation_id}",
            header.correlation_id
        )));
    }
    ApiVersionsResponse::decode(&mut body, version).map_err(|e| codec(e.to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{api_versions_response::ApiVersion, GroupId};

    fn broker_with(max: i16) -> ApiVersionsResponse {
        ApiVersionsResponse::default().with_api_keys(
            GROUP_APIS
                .iter()
                .map(|k| {
                    ApiVersion::default()
                        .with_api_key(*k as i16)
                        .with_min_version(0)
                        .with_max_version(max)
                })
                .collect(),
        )
    }

    #[test]
    fn negotiates_the_highest_common_version() {
        let v = Versions::negotiate(&broker_with(20)).expect("negotiates");
        assert_eq!(v.get(ApiKey::JoinGroup), Some(9));
        assert_eq!(v.get(ApiKey::OffsetFetch), Some(9));
        let single = Request::OffsetFetch(OffsetFetchRequest::default());
        assert_eq!(
            single.version_for(9),
            7,
            "the single-group layout ends at v7"
        );
        let batched = Request::OffsetFetch(OffsetFetchRequest::default().with_groups(vec![
            kafka_protocol::messages::offset_fetch_request::OffsetFetchRequestGroup::default(),
        ]));
        assert_eq!(batched.version_for(9), 9);
        let v = Versions::negotiate(&broker_with(4)).expect("negotiates");
        assert_eq!(v.get(ApiKey::JoinGroup), Some(4));
    }

    #[test]
    fn a_broker_without_describe_groups_still_serves_members() {
        let mut response = broker_with(9);
        response
            .api_keys
            .retain(|k| k.api_key != ApiKey::DescribeGroups as i16);
        let v = Versions::negotiate(&response).expect("members never send DescribeGroups");
        assert_eq!(v.get(ApiKey::JoinGroup), Some(9));
        assert_eq!(v.get(ApiKey::DescribeGroups), None);
    }

    #[test]
    fn a_broker_without_group_apis_is_refused_by_name() {
        let err = Versions::negotiate(&broker_with(0))
            .expect_err("JoinGroup v0 has no rebalance timeout");
        assert!(err.to_string().contains("JoinGroup"), "{err}");
    }

    #[test]
    fn every_request_encodes_at_every_supported_version_once_fitted() {
        let group = GroupId(StrBytes::from_static_str("g"));
        let requests = vec![
            Request::FindCoordinator(
                FindCoordinatorRequest::default().with_key(StrBytes::from_static_str("g")),
            ),
            Request::JoinGroup(
                JoinGroupRequest::default()
                    .with_group_id(group.clone())
                    .with_group_instance_id(Some(StrBytes::from_static_str("pod-0")))
                    .with_reason(Some(StrBytes::from_static_str("why"))),
            ),
            Request::SyncGroup(
                SyncGroupRequest::default()
                    .with_group_id(group.clone())
                    .with_group_instance_id(Some(StrBytes::from_static_str("pod-0")))
                    .with_protocol_name(Some(StrBytes::from_static_str("range"))),
            ),
            Request::Heartbeat(
                HeartbeatRequest::default()
                    .with_group_id(group.clone())
                    .with_group_instance_id(Some(StrBytes::from_static_str("pod-0"))),
            ),
            Request::OffsetFetch(
                OffsetFetchRequest::default()
                    .with_group_id(group.clone())
                    .with_require_stable(true),
            ),
            Request::OffsetCommit(
                OffsetCommitRequest::default()
                    .with_group_id(group.clone())
                    .with_group_instance_id(Some(StrBytes::from_static_str("pod-0"))),
            ),
            Request::LeaveGroup(
                LeaveGroupRequest::default()
                    .with_group_id(group)
                    .with_member_id(StrBytes::from_static_str("m")),
            ),
            Request::Metadata(MetadataRequest::default().with_allow_auto_topic_creation(false)),
            Request::DescribeGroups(
                DescribeGroupsRequest::default().with_include_authorized_operations(true),
            ),
            Request::ConsumerGroupHeartbeat(
                ConsumerGroupHeartbeatRequest::default()
                    .with_group_id(GroupId(StrBytes::from_static_str("g")))
                    .with_instance_id(Some(StrBytes::from_static_str("pod-0")))
                    .with_subscribed_topic_names(Some(vec![])),
            ),
            Request::ConsumerGroupDescribe(ConsumerGroupDescribeRequest::default()),
        ];
        for request in requests {
            let range = supported(request.api_key());
            for version in range.min..=range.max {
                // As Connection::call does.
                let version = request.version_for(version);
                let mut fitted = request.clone();
                fitted.fit(version);
                fitted
                    .encode_frame(version, 1, "test")
                    .unwrap_or_else(|e| panic!("{:?} v{version}: {e}", request.api_key()));
            }
        }
    }
}
