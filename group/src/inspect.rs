//! Looking at a group from outside, as lag tools do: its state and members (ConsumerGroupDescribe for a
//! KIP-848 group, DescribeGroups for a classic one) and its committed offsets (OffsetFetch), from the
//! group coordinator. Works for groups of any client.

use std::{collections::BTreeMap, time::Duration};

use kafka_protocol::{
    messages::{
        consumer_group_describe_response, describe_groups_response::DescribedGroup,
        offset_fetch_request::OffsetFetchRequestTopic, ApiKey, ConsumerGroupDescribeRequest,
        DescribeGroupsRequest, FindCoordinatorRequest, GroupId, OffsetFetchRequest, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use transport::Security;

use crate::{
    codec,
    connection::{Connection, ConnectionError},
    wire::{Request, Response},
    TopicPartition,
};

/// Why looking at a group failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InspectError {
    /// No broker could be reached.
    #[error(transparent)]
    Connection(#[from] ConnectionError),
    /// The broker answered with an error.
    #[error("{request} for group '{group}' failed: {error}")]
    Broker {
        /// The request.
        request: &'static str,
        /// The group.
        group: String,
        /// The error.
        error: ResponseError,
    },
    /// The broker answered something else.
    #[error("unexpected answer to {0}")]
    Unexpected(&'static str),
}

impl InspectError {
    /// Whether asking again shortly can succeed: the coordinator is moving, loading, or not yet
    /// there (a fresh cluster creates `__consumer_offsets` on the first group request), or the
    /// connection dropped. Authorization and malformed answers stay as they are.
    pub fn is_retriable(&self) -> bool {
        match self {
            InspectError::Connection(_) => true,
            InspectError::Broker { error, .. } => matches!(
                error,
                ResponseError::NotCoordinator
                    | ResponseError::CoordinatorNotAvailable
                    | ResponseError::CoordinatorLoadInProgress
                    | ResponseError::RequestTimedOut
            ),
            InspectError::Unexpected(_) => false,
        }
    }
}

/// A member as DescribeGroups reports it. Brokers differ in what they fill in: the test broker leaves
/// client id, host and assignment empty.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MemberDescription {
    /// Member id.
    pub member_id: String,
    /// Static membership id.
    pub instance_id: Option<String>,
    /// The member's client id ("" when not reported).
    pub client_id: String,
    /// The member's host ("" when not reported).
    pub host: String,
    /// Its partitions, when the broker reports the assignment.
    pub assignment: Vec<TopicPartition>,
    /// Its subscribed topics, when the broker reports the metadata.
    pub topics: Vec<String>,
    /// Its `client.rack`, when its subscription carries one (v3+).
    pub rack: Option<String>,
    /// KIP-848: the member's epoch (`None` in a classic group).
    pub member_epoch: Option<i32>,
    /// KIP-848: the assignment the broker wants it to reach (`None` in a classic group).
    pub target: Option<Vec<TopicPartition>>,
}

impl MemberDescription {
    /// A KIP-848 member that does not own its target assignment yet: revoking, or waiting for
    /// partitions another member still holds.
    pub fn reconciling(&self) -> bool {
        self.target.as_ref().is_some_and(|target| {
            let mut owned = self.assignment.clone();
            let mut target = target.clone();
            owned.sort();
            target.sort();
            owned != target
        })
    }
}

/// A group as DescribeGroups reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupDescription {
    /// Classic: `Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty` or `Dead`; KIP-848:
    /// `Stable`, `Assigning`, `Reconciling`, `Empty` or `Dead`.
    pub state: String,
    /// The chosen assignor (KIP-848: the broker's).
    pub protocol: String,
    /// Members.
    pub members: Vec<MemberDescription>,
    /// KIP-848: the group epoch and the epoch of its target assignment (`None`: a classic group).
    pub epochs: Option<(i32, i32)>,
}

/// Connects to the coordinator of `group` through the first bootstrap broker that answers, in
/// plaintext.
pub async fn coordinator(
    bootstrap: &[String],
    client_id: &str,
    group: &str,
    timeout: Duration,
) -> Result<Connection, InspectError> {
    coordinator_secure(bootstrap, client_id, group, timeout, &Security::plaintext()).await
}

/// [`coordinator`] with `security`'s TLS and SASL.
pub async fn coordinator_secure(
    bootstrap: &[String],
    client_id: &str,
    group: &str,
    timeout: Duration,
    security: &Security,
) -> Result<Connection, InspectError> {
    let mut last = None;
    for addr in bootstrap {
        let mut conn = match Connection::connect_secure(addr, client_id, timeout, security).await {
            Ok(conn) => conn,
            Err(e) => {
                last = Some(e);
                continue;
            }
        };
        // COORDINATOR_NOT_AVAILABLE while the offsets topic is created: a few quick retries.
        for attempt in 0..10u32 {
            let request = FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(group.to_string()));
            let Response::FindCoordinator(r) = conn.call(Request::FindCoordinator(request)).await?
            else {
                return Err(InspectError::Unexpected("FindCoordinator"));
            };
            let (code, host, port) = match r.coordinators.first() {
                Some(c) => (c.error_code, c.host.to_string(), c.port),
                None => (r.error_code, r.host.to_string(), r.port),
            };
            match ResponseError::try_from_code(code) {
                None => {
                    return Ok(Connection::connect_secure(
                        &format!("{host}:{port}"),
                        client_id,
                        timeout,
                        security,
                    )
                    .await?)
                }
                Some(e) if e.is_retriable() && attempt < 9 => {
                    tokio::time::sleep(Duration::from_millis(200)).await;
                }
                Some(error) => {
                    return Err(InspectError::Broker {
                        request: "FindCoordinator",
                        group: group.to_string(),
                        error,
                    })
                }
            }
        }
    }
    Err(last.map_or(
        InspectError::Unexpected("FindCoordinator"),
        InspectError::from,
    ))
}

impl GroupDescription {
    /// From one group of a DescribeGroups response (its error code already checked): the members'
    /// subscriptions and assignments decoded where the broker reports them.
    pub fn from_described(g: DescribedGroup) -> Self {
        Self {
            state: g.group_state.to_string(),
            protocol: g.protocol_data.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| {
                    let subscription = codec::decode_subscription(&m.member_metadata).ok();
                    MemberDescription {
                        member_id: m.member_id.to_string(),
                        instance_id: m.group_instance_id.map(|i| i.to_string()),
                        client_id: m.client_id.to_string(),
                        host: m.client_host.to_string(),
                        assignment: codec::decode_assignment(&m.member_assignment)
                            .unwrap_or_default(),
                        topics: subscription
                            .as_ref()
                            .map(|s| s.topics.clone())
                            .unwrap_or_default(),
                        rack: subscription.and_then(|s| s.rack_id),
                        member_epoch: None,
                        target: None,
                    }
                })
                .collect(),
            epochs: None,
        }
    }

    /// From one group of a ConsumerGroupDescribe response (its error code already checked).
    pub fn from_consumer_group(g: consumer_group_describe_response::DescribedGroup) -> Self {
        fn partitions(a: &consumer_group_describe_response::Assignment) -> Vec<TopicPartition> {
            a.topic_partitions
                .iter()
                .flat_map(|t| {
                    t.partitions
                        .iter()
                        .map(|p| TopicPartition::new(t.topic_name.0.as_str(), *p))
                })
                .collect()
        }
        Self {
            state: g.group_state.to_string(),
            protocol: g.assignor_name.to_string(),
            members: g
                .members
                .into_iter()
                .map(|m| MemberDescription {
                    member_id: m.member_id.to_string(),
                    instance_id: m.instance_id.map(|i| i.to_string()),
                    client_id: m.client_id.to_string(),
                    host: m.client_host.to_string(),
                    assignment: partitions(&m.assignment),
                    topics: m
                        .subscribed_topic_names
                        .iter()
                        .map(|t| t.0.to_string())
                        .collect(),
                    rack: m.rack_id.map(|r| r.to_string()),
                    member_epoch: Some(m.member_epoch),
                    target: Some(partitions(&m.target_assignment)),
                })
                .collect(),
            epochs: Some((g.group_epoch, g.assignment_epoch)),
        }
    }
}

/// The group's state and members: ConsumerGroupDescribe first where the broker has it, as Java's
/// admin client does, then DescribeGroups for a classic group (or one the broker does not know).
pub async fn describe(
    conn: &mut Connection,
    group: &str,
) -> Result<GroupDescription, InspectError> {
    if conn.versions().get(ApiKey::ConsumerGroupDescribe).is_some() {
        let request = ConsumerGroupDescribeRequest::default()
            .with_group_ids(vec![GroupId(StrBytes::from_string(group.to_string()))]);
        let Response::ConsumerGroupDescribe(r) =
            conn.call(Request::ConsumerGroupDescribe(request)).await?
        else {
            return Err(InspectError::Unexpected("ConsumerGroupDescribe"));
        };
        if let Some(g) = r.groups.into_iter().next() {
            match ResponseError::try_from_code(g.error_code) {
                None => return Ok(GroupDescription::from_consumer_group(g)),
                // A classic group, or none: DescribeGroups says which. Kafka 3.x lists the API
                // but answers UNSUPPORTED_VERSION per group while its consumer protocol is off.
                Some(ResponseError::GroupIdNotFound | ResponseError::UnsupportedVersion) => {}
                Some(error) => {
                    return Err(InspectError::Broker {
                        request: "ConsumerGroupDescribe",
                        group: group.to_string(),
                        error,
                    })
                }
            }
        }
    }
    describe_classic(conn, group).await
}

/// The group's state and members as DescribeGroups reports them.
pub async fn describe_classic(
    conn: &mut Connection,
    group: &str,
) -> Result<GroupDescription, InspectError> {
    let request = DescribeGroupsRequest::default()
        .with_groups(vec![GroupId(StrBytes::from_string(group.to_string()))]);
    let Response::DescribeGroups(r) = conn.call(Request::DescribeGroups(request)).await? else {
        return Err(InspectError::Unexpected("DescribeGroups"));
    };
    let g = r
        .groups
        .into_iter()
        .next()
        .ok_or(InspectError::Unexpected("DescribeGroups"))?;
    if let Some(error) = ResponseError::try_from_code(g.error_code) {
        return Err(InspectError::Broker {
            request: "DescribeGroups",
            group: group.to_string(),
            error,
        });
    }
    Ok(GroupDescription::from_described(g))
}

/// Committed offsets of `group` for `partitions` (`None`: every partition it ever committed).
/// Partitions without a commit are absent.
pub async fn committed(
    conn: &mut Connection,
    group: &str,
    partitions: Option<&[TopicPartition]>,
) -> Result<BTreeMap<TopicPartition, i64>, InspectError> {
    let topics = partitions.map(|parts| {
        let mut by_topic: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in parts {
            by_topic.entry(&tp.topic).or_default().push(tp.partition);
        }
        by_topic
            .into_iter()
            .map(|(t, ps)| {
                OffsetFetchRequestTopic::default()
                    .with_name(TopicName(StrBytes::from_string(t.to_string())))
                    .with_partition_indexes(ps)
            })
            .collect()
    });
    let request = OffsetFetchRequest::default()
        .with_group_id(GroupId(StrBytes::from_string(group.to_string())))
        .with_topics(topics);
    let Response::OffsetFetch(r) = conn.call(Request::OffsetFetch(request)).await? else {
        return Err(InspectError::Unexpected("OffsetFetch"));
    };
    if let Some(error) = ResponseError::try_from_code(r.error_code) {
        return Err(InspectError::Broker {
            request: "OffsetFetch",
            group: group.to_string(),
            error,
        });
    }
    let mut out = BTreeMap::new();
    for t in r.topics {
        for p in t.partitions {
            if p.error_code == 0 && p.committed_offset >= 0 {
                out.insert(
                    TopicPartition::new(t.name.0.as_str(), p.partition_index),
                    p.committed_offset,
                );
            }
        }
    }
    Ok(out)
}
