//! One sample of the cluster, batched: Metadata once, ListGroups per broker (the broker that lists a
//! group is its coordinator), DescribeGroups and one multi-group OffsetFetch per coordinator, two
//! ListOffsets per partition leader, and the oldest unconsumed records' timestamps in one Fetch per
//! leader per round. Brokers are asked in parallel; one connection per broker, kept across samples.
//!
//! Committed offsets are read before log-end offsets, so lag cannot go negative from the order of
//! reads (as in `admin lag`).

use std::{
    collections::{BTreeMap, BTreeSet},
    time::{Duration, Instant},
};

use fetch::batch;
use group::{inspect::GroupDescription, ResponseError, TopicPartition};
use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        offset_fetch_request::OffsetFetchRequestGroup,
        BrokerId, ConsumerGroupDescribeRequest, DescribeGroupsRequest, FetchRequest, GroupId,
        ListGroupsRequest, ListOffsetsRequest, MetadataRequest, OffsetFetchRequest, TopicName,
    },
    protocol::{Request, StrBytes},
};
use tokio::task::JoinSet;

use crate::conn::{Conn, ConnError};
use transport::Security;

/// Why a sample failed. The exporter retries the next one with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SampleError {
    /// No bootstrap broker answered.
    #[error("no bootstrap broker answered: {0}")]
    Bootstrap(String),
    /// A broker could not be asked.
    #[error(transparent)]
    Conn(#[from] ConnError),
    /// A broker answered with an error.
    #[error("{request} failed on {what}: {error}")]
    Broker {
        /// The request.
        request: &'static str,
        /// What it was about.
        what: String,
        /// The broker's error.
        error: ResponseError,
    },
    /// Metadata named a broker it did not describe.
    #[error("metadata names broker {0} but not its address")]
    UnknownBroker(i32),
    /// A task failed.
    #[error("sampling task: {0}")]
    Task(String),
}

/// Which groups and topics to look at.
#[derive(Debug, Clone)]
pub struct Filter {
    /// Groups whose whole name matches.
    pub groups: regex_lite::Regex,
    /// Topics whose whole name matches.
    pub topics: regex_lite::Regex,
}

impl Filter {
    /// Every group and every topic.
    pub fn everything() -> Self {
        let all = regex_lite::Regex::new(".*").expect("a constant pattern");
        Self {
            groups: all.clone(),
            topics: all,
        }
    }
}

/// One partition's log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartitionLog {
    /// Partition index.
    pub partition: i32,
    /// Leader broker id (-1: none).
    pub leader: i32,
    /// Earliest retained offset (`None`: no leader to ask).
    pub log_start: Option<i64>,
    /// High watermark (`None`: no leader to ask).
    pub log_end: Option<i64>,
}

/// One group as its coordinator reports it.
#[derive(Debug, Clone)]
pub struct GroupSample {
    /// The group id.
    pub group: String,
    /// State and members.
    pub description: GroupDescription,
    /// Committed offsets; partitions without a commit are absent.
    pub committed: BTreeMap<TopicPartition, i64>,
}

/// The cluster at one moment.
#[derive(Debug, Clone)]
pub struct ClusterSample {
    /// Wall clock, ms since the epoch.
    pub wall_ms: i64,
    /// Brokers in the cluster.
    pub brokers: usize,
    /// Topics (those the filter selects, internal ones left out), partitions by index.
    pub topics: BTreeMap<String, Vec<PartitionLog>>,
    /// Groups the filter selects.
    pub groups: Vec<GroupSample>,
    /// Timestamp (ms) of the record at (partition, offset), for each committed offset behind the
    /// log end, where a Fetch returned it.
    pub timestamps: BTreeMap<(TopicPartition, i64), i64>,
    /// How long the sample took.
    pub took: Duration,
}

/// Per leader, per topic: what to ask about its partitions.
type ByLeader<'a, T> = BTreeMap<i32, BTreeMap<&'a str, Vec<T>>>;

/// Takes samples, keeping one connection per broker.
pub struct Sampler {
    bootstrap: Vec<String>,
    client_id: String,
    timeout: Duration,
    filter: Filter,
    /// TLS and SASL for every connection.
    security: Security,
    /// Broker id to address, from the last Metadata.
    addrs: BTreeMap<i32, String>,
    /// Open connections by broker id.
    conns: BTreeMap<i32, Conn>,
    /// The connection Metadata is asked on.
    meta: Option<Conn>,
}

/// Fetch asks each partition for this much: the broker returns whole batches, and one is all we
/// need (a larger first batch still comes whole for the first partition only: KIP-74).
const PARTITION_FETCH_BYTES: i32 = 16 * 1024;

impl Sampler {
    /// A sampler for the cluster behind `bootstrap`; each request waits up to `timeout`.
    pub fn new(
        bootstrap: Vec<String>,
        client_id: String,
        timeout: Duration,
        filter: Filter,
    ) -> Self {
        Self {
            bootstrap,
            client_id,
            timeout,
            filter,
            security: Security::plaintext(),
            addrs: BTreeMap::new(),
            conns: BTreeMap::new(),
            meta: None,
        }
    }

    /// Connects with `security`'s TLS and SASL instead of plaintext.
    pub fn with_security(mut self, security: Security) -> Self {
        self.security = security;
        self
    }

    /// Asks Metadata on `conn` first, a bootstrap connection the caller already made.
    pub(crate) fn with_bootstrap_connection(mut self, conn: Conn) -> Self {
        self.meta = Some(conn);
        self
    }

    /// Forgets every connection: after an error, the next sample starts afresh.
    pub fn reset(&mut self) {
        self.conns.clear();
        self.meta = None;
    }

    /// One sample.
    pub async fn sample(&mut self) -> Result<ClusterSample, SampleError> {
        let started = Instant::now();
        let (brokers, topics) = self.metadata().await?;

        // Every broker lists the groups it coordinates.
        let listed = self
            .fan_out(
                self.addrs
                    .keys()
                    .map(|&id| (id, ListGroupsRequest::default()))
                    .collect(),
            )
            .await?;
        let mut by_coordinator: BTreeMap<i32, Vec<String>> = BTreeMap::new();
        for (node, r) in listed {
            if let Some(error) = ResponseError::try_from_code(r.error_code) {
                return Err(SampleError::Broker {
                    request: "ListGroups",
                    what: format!("broker {node}"),
                    error,
                });
            }
            for g in r.groups {
                // Classic consumer groups, and groups that only hold commits (protocol type "").
                let kind = g.protocol_type.as_str();
                let name = g.group_id.0.to_string();
                if (kind == "consumer" || kind.is_empty()) && full_match(&self.filter.groups, &name)
                {
                    by_coordinator.entry(node).or_default().push(name);
                }
            }
        }

        let describe = by_coordinator
            .iter()
            .map(|(&node, groups)| {
                let ids = groups
                    .iter()
                    .map(|g| GroupId(StrBytes::from_string(g.clone())))
                    .collect();
                (node, DescribeGroupsRequest::default().with_groups(ids))
            })
            .collect();
        let described = self.fan_out(describe).await?;
        let fetch = by_coordinator
            .iter()
            .map(|(&node, groups)| {
                let groups = groups
                    .iter()
                    .map(|g| {
                        OffsetFetchRequestGroup::default()
                            .with_group_id(GroupId(StrBytes::from_string(g.clone())))
                            .with_topics(None)
                    })
                    .collect();
                (
                    node,
                    OffsetFetchRequest::default()
                        .with_topics(Some(Vec::new()))
                        .with_groups(groups),
                )
            })
            .collect();
        let fetched = self.fan_out(fetch).await?;

        let mut groups: BTreeMap<String, GroupSample> = BTreeMap::new();
        // KIP-848 groups are not classic: DescribeGroups calls them Dead (Kafka 4.x) or unknown, and
        // ConsumerGroupDescribe describes them.
        let mut not_classic: BTreeMap<i32, Vec<GroupId>> = BTreeMap::new();
        for (node, r) in described {
            for g in r.groups {
                let name = g.group_id.0.to_string();
                if ResponseError::try_from_code(g.error_code)
                    == Some(ResponseError::GroupIdNotFound)
                {
                    not_classic.entry(node).or_default().push(g.group_id);
                    continue;
                }
                if let Some(error) = ResponseError::try_from_code(g.error_code) {
                    // Deleted between ListGroups and now, or moved: seen again next sample.
                    tracing::debug!(group = %name, %error, "DescribeGroups: skipping the group");
                    continue;
                }
                if g.group_state.as_str() == "Dead" && g.members.is_empty() {
                    not_classic
                        .entry(node)
                        .or_default()
                        .push(g.group_id.clone());
                }
                let description = GroupDescription::from_described(g);
                groups.insert(
                    name.clone(),
                    GroupSample {
                        group: name,
                        description,
                        committed: BTreeMap::new(),
                    },
                );
            }
        }
        let consumer_groups = not_classic
            .into_iter()
            .map(|(node, ids)| {
                (
                    node,
                    ConsumerGroupDescribeRequest::default().with_group_ids(ids),
                )
            })
            .collect::<Vec<_>>();
        // A broker without the API (before Kafka 4.0, nisshi) has no such groups: skip, not fail.
        let consumer_groups = if consumer_groups.is_empty() {
            Vec::new()
        } else {
            match self.fan_out(consumer_groups).await {
                Ok(answers) => answers,
                Err(error) => {
                    tracing::debug!(%error, "ConsumerGroupDescribe failed; KIP-848 groups left out");
                    Vec::new()
                }
            }
        };
        {
            for (_, r) in consumer_groups {
                for g in r.groups {
                    let name = g.group_id.0.to_string();
                    if let Some(error) = ResponseError::try_from_code(g.error_code) {
                        tracing::debug!(group = %name, %error, "ConsumerGroupDescribe: skipping the group");
                        continue;
                    }
                    let description = GroupDescription::from_consumer_group(g);
                    groups.insert(
                        name.clone(),
                        GroupSample {
                            group: name,
                            description,
                            committed: BTreeMap::new(),
                        },
                    );
                }
            }
        }
        let mut failed_groups = BTreeSet::new();
        for (_, r) in fetched {
            for g in r.groups {
                let name = g.group_id.0.to_string();
                if let Some(error) = ResponseError::try_from_code(g.error_code) {
                    tracing::debug!(group = %name, %error, "OffsetFetch: skipping the group");
                    failed_groups.insert(name);
                    continue;
                }
                let Some(sample) = groups.get_mut(&name) else {
                    continue;
                };
                for t in g.topics {
                    let topic = t.name.0.to_string();
                    if !topics.contains_key(&topic) {
                        continue;
                    }
                    for p in t.partitions {
                        if p.error_code == 0 && p.committed_offset >= 0 {
                            sample.committed.insert(
                                TopicPartition::new(topic.clone(), p.partition_index),
                                p.committed_offset,
                            );
                        }
                    }
                }
            }
        }
        for name in failed_groups {
            groups.remove(&name);
        }

        // Log ends after commits.
        let mut topics = topics;
        self.log_offsets(&mut topics).await?;
        let timestamps = self
            .timestamps(&topics, &behind_log_end(&topics, groups.values()))
            .await?;
        Ok(ClusterSample {
            wall_ms: now_ms(),
            brokers,
            topics,
            groups: groups.into_values().collect(),
            timestamps,
            took: started.elapsed(),
        })
    }

    /// Brokers and the selected topics' partitions and leaders, from any bootstrap broker (the one
    /// that answered last time first).
    pub(crate) async fn metadata(
        &mut self,
    ) -> Result<(usize, BTreeMap<String, Vec<PartitionLog>>), SampleError> {
        let request = MetadataRequest::default().with_topics(None);
        let mut errors = Vec::new();
        let mut response = None;
        if let Some(conn) = self.meta.as_mut() {
            match conn.call(&request, self.timeout).await {
                Ok((_, r)) => response = Some(r),
                Err(e) => {
                    errors.push(e.to_string());
                    self.meta = None;
                }
            }
        }
        for addr in &self.bootstrap {
            if response.is_some() {
                break;
            }
            match Conn::connect(addr, &self.client_id, self.timeout, &self.security).await {
                Ok(mut conn) => match conn.call(&request, self.timeout).await {
                    Ok((_, r)) => {
                        response = Some(r);
                        self.meta = Some(conn);
                    }
                    Err(e) => errors.push(e.to_string()),
                },
                Err(e) => errors.push(e.to_string()),
            }
        }
        let Some(r) = response else {
            return Err(SampleError::Bootstrap(errors.join("; ")));
        };
        let addrs: BTreeMap<i32, String> = r
            .brokers
            .iter()
            .map(|b| (b.node_id.0, format!("{}:{}", b.host, b.port)))
            .collect();
        // A broker that moved: reconnect.
        self.conns
            .retain(|id, c| addrs.get(id).is_some_and(|a| a == c.addr()));
        self.addrs = addrs;
        let mut topics = BTreeMap::new();
        for t in r.topics {
            let Some(name) = t.name.map(|n| n.0.to_string()) else {
                continue;
            };
            if t.is_internal || t.error_code != 0 || !full_match(&self.filter.topics, &name) {
                continue;
            }
            let mut parts: Vec<PartitionLog> = t
                .partitions
                .iter()
                .map(|p| PartitionLog {
                    partition: p.partition_index,
                    leader: p.leader_id.0,
                    log_start: None,
                    log_end: None,
                })
                .collect();
            parts.sort_by_key(|p| p.partition);
            topics.insert(name, parts);
        }
        Ok((self.addrs.len(), topics))
    }

    /// Log start and end of every partition with a leader: two ListOffsets per leader.
    pub(crate) async fn log_offsets(
        &mut self,
        topics: &mut BTreeMap<String, Vec<PartitionLog>>,
    ) -> Result<(), SampleError> {
        for (at, latest) in [(-1i64, true), (-2i64, false)] {
            let mut by_leader: ByLeader<'_, i32> = BTreeMap::new();
            for (topic, parts) in topics.iter() {
                for p in parts.iter().filter(|p| p.leader >= 0) {
                    by_leader
                        .entry(p.leader)
                        .or_default()
                        .entry(topic.as_str())
                        .or_default()
                        .push(p.partition);
                }
            }
            let requests = by_leader
                .into_iter()
                .map(|(leader, topics)| {
                    let topics = topics
                        .into_iter()
                        .map(|(t, ps)| {
                            ListOffsetsTopic::default()
                                .with_name(TopicName(StrBytes::from_string(t.to_string())))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|p| {
                                            ListOffsetsPartition::default()
                                                .with_partition_index(p)
                                                .with_timestamp(at)
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                    (
                        leader,
                        ListOffsetsRequest::default()
                            .with_replica_id(BrokerId(-1))
                            .with_topics(topics),
                    )
                })
                .collect();
            for (_, r) in self.fan_out(requests).await? {
                for t in r.topics {
                    let name = t.name.0.to_string();
                    let Some(parts) = topics.get_mut(&name) else {
                        continue;
                    };
                    for p in t.partitions {
                        if let Some(error) = ResponseError::try_from_code(p.error_code) {
                            // A leader that moved: the next sample's Metadata knows.
                            return Err(SampleError::Broker {
                                request: "ListOffsets",
                                what: format!("{name}-{}", p.partition_index),
                                error,
                            });
                        }
                        if let Some(log) =
                            parts.iter_mut().find(|l| l.partition == p.partition_index)
                        {
                            if latest {
                                log.log_end = Some(p.offset);
                            } else {
                                log.log_start = Some(p.offset);
                            }
                        }
                    }
                }
            }
        }
        Ok(())
    }

    /// The timestamp of the record at each offset of `wanted` (per partition of `topics`). A
    /// partition holds one offset per Fetch, so partitions asked at several offsets (groups that
    /// committed different ones) take several rounds; each round is one Fetch per leader.
    pub(crate) async fn timestamps(
        &mut self,
        topics: &BTreeMap<String, Vec<PartitionLog>>,
        wanted: &BTreeMap<TopicPartition, BTreeSet<i64>>,
    ) -> Result<BTreeMap<(TopicPartition, i64), i64>, SampleError> {
        let leader_of = |tp: &TopicPartition| {
            topics
                .get(&tp.topic)
                .and_then(|ps| ps.iter().find(|p| p.partition == tp.partition))
                .map_or(-1, |p| p.leader)
        };
        let rounds = wanted.values().map(BTreeSet::len).max().unwrap_or(0);
        let mut out = BTreeMap::new();
        for round in 0..rounds {
            let mut by_leader: ByLeader<'_, (i32, i64)> = BTreeMap::new();
            for (tp, offsets) in wanted {
                if let Some(&offset) = offsets.iter().nth(round) {
                    by_leader
                        .entry(leader_of(tp))
                        .or_default()
                        .entry(tp.topic.as_str())
                        .or_default()
                        .push((tp.partition, offset));
                }
            }
            let requests = by_leader
                .into_iter()
                .map(|(leader, topics)| {
                    let topics = topics
                        .into_iter()
                        .map(|(t, ps)| {
                            FetchTopic::default()
                                .with_topic(TopicName(StrBytes::from_string(t.to_string())))
                                .with_partitions(
                                    ps.into_iter()
                                        .map(|(p, offset)| {
                                            FetchPartition::default()
                                                .with_partition(p)
                                                .with_fetch_offset(offset)
                                                .with_partition_max_bytes(PARTITION_FETCH_BYTES)
                                        })
                                        .collect(),
                                )
                        })
                        .collect();
                    (
                        leader,
                        FetchRequest::default()
                            .with_replica_id(BrokerId(-1))
                            // Every partition asked has records (its offset is below the log
                            // end): the broker answers as soon as it has read them.
                            .with_max_wait_ms(200)
                            .with_min_bytes(1)
                            .with_max_bytes(64 * 1024 * 1024)
                            .with_session_epoch(-1)
                            .with_topics(topics),
                    )
                })
                .collect();
            let asked: BTreeMap<TopicPartition, i64> = wanted
                .iter()
                .filter_map(|(tp, o)| o.iter().nth(round).map(|&o| (tp.clone(), o)))
                .collect();
            for (_, r) in self.fan_out(requests).await? {
                for t in r.responses {
                    for p in t.partitions {
                        let tp = TopicPartition::new(t.topic.0.as_str(), p.partition_index);
                        let (Some(&offset), Some(records)) = (asked.get(&tp), p.records) else {
                            continue;
                        };
                        if let Some(ts) = batch::timestamp_at(records, offset, batch::MAX_INFLATED)
                        {
                            out.insert((tp, offset), ts);
                        }
                    }
                }
            }
        }
        Ok(out)
    }

    /// Sends one request to each broker named, in parallel, and returns the answers; any failure
    /// fails the lot (and drops that broker's connection).
    async fn fan_out<R>(
        &mut self,
        requests: Vec<(i32, R)>,
    ) -> Result<Vec<(i32, R::Response)>, SampleError>
    where
        R: Request + Send + Sync + 'static,
        R::Response: Send + 'static,
    {
        let mut tasks = JoinSet::new();
        for (node, request) in requests {
            let addr = self
                .addrs
                .get(&node)
                .cloned()
                .ok_or(SampleError::UnknownBroker(node))?;
            let conn = self.conns.remove(&node);
            let (client_id, timeout, security) =
                (self.client_id.clone(), self.timeout, self.security.clone());
            tasks.spawn(async move {
                let mut conn = match conn {
                    Some(c) => c,
                    None => match Conn::connect(&addr, &client_id, timeout, &security).await {
                        Ok(c) => c,
                        Err(e) => return (node, None, Err(e)),
                    },
                };
                match conn.call(&request, timeout).await {
                    Ok((_, r)) => (node, Some(conn), Ok(r)),
                    Err(e) => (node, None, Err(e)),
                }
            });
        }
        let mut out = Vec::new();
        let mut first_error = None;
        while let Some(done) = tasks.join_next().await {
            match done {
                Ok((node, conn, result)) => {
                    if let Some(conn) = conn {
                        self.conns.insert(node, conn);
                    }
                    match result {
                        Ok(r) => out.push((node, r)),
                        Err(e) => {
                            first_error.get_or_insert(SampleError::Conn(e));
                        }
                    }
                }
                Err(e) => {
                    first_error.get_or_insert(SampleError::Task(e.to_string()));
                }
            }
        }
        match first_error {
            Some(e) => Err(e),
            None => Ok(out),
        }
    }
}

/// Whether `re` matches all of `name`.
pub fn full_match(re: &regex_lite::Regex, name: &str) -> bool {
    re.find(name)
        .is_some_and(|m| m.start() == 0 && m.end() == name.len())
}

/// The timestamp of the first record at or after `offset` in `records` (a Fetch answer). Uncompressed
/// batches are read record by record; for a compressed one (this build decodes none) the first
/// batch's base timestamp (its first record's) stands in: at most one batch early.
/// Each group's committed offsets that are behind the log end: where the oldest unconsumed records'
/// timestamps are read.
fn behind_log_end<'a>(
    topics: &BTreeMap<String, Vec<PartitionLog>>,
    groups: impl Iterator<Item = &'a GroupSample>,
) -> BTreeMap<TopicPartition, BTreeSet<i64>> {
    let mut wanted: BTreeMap<TopicPartition, BTreeSet<i64>> = BTreeMap::new();
    for g in groups {
        for (tp, &c) in &g.committed {
            let log = topics
                .get(&tp.topic)
                .and_then(|ps| ps.iter().find(|p| p.partition == tp.partition));
            if let Some(PartitionLog {
                leader,
                log_end: Some(end),
                ..
            }) = log
            {
                if c < *end && *leader >= 0 {
                    wanted.entry(tp.clone()).or_default().insert(c);
                }
            }
        }
    }
    wanted
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}
