//! The fetch tasks of one assignment.
//!
//! A manager routes partitions to their leaders ([`MetadataClient`]) and runs one task per leader.
//! A leader task owns one [`Connection`] and sends one Fetch for all its partitions at a time, so
//! partitions of one broker share a request and partitions of different brokers never wait for each
//! other. When a partition needs another leader (NOT_LEADER_OR_FOLLOWER, FENCED_LEADER_EPOCH,
//! UNKNOWN_TOPIC_OR_PARTITION …) or the connection fails, the task ends and hands every partition
//! back with its position; the manager backs off, refreshes metadata and routes them again. A
//! partition routed to a leader whose task is running cancels that task, and the two sets are merged
//! when it returns: one connection and one request per leader.
//!
//! Fetch versions 4 to 12: 4 is Kafka 4's floor (KIP-896) and has the last stable offset and the
//! aborted-transactions list; 12 is the newest keyed by topic name (13+ want topic ids from Metadata,
//! which give this consumer nothing). Requests are session-less full fetches (session id 0, epoch -1):
//! with a handful of partitions per member, the bytes a fetch session (KIP-227) saves are noise, and
//! a session is one more piece of state to lose on every reconnect.

use std::{collections::BTreeMap, sync::Arc, time::Duration};

use kafka_protocol::{
    messages::{
        fetch_request::{FetchPartition, FetchTopic},
        list_offsets_request::{ListOffsetsPartition, ListOffsetsTopic},
        BrokerId, FetchRequest, ListOffsetsRequest, TopicName,
    },
    protocol::{StrBytes, VersionRange},
    ResponseError,
};
use tokio::{sync::mpsc, task::JoinSet, time::Instant};
use tokio_util::sync::CancellationToken;
use transport::{Connection, TopicPartition};

use crate::{
    decode::{self, Aborted},
    metadata::{Leaders, MetadataClient},
    Batch, FetchConfig, FetchError, OffsetReset,
};

/// Fetch versions we speak (see the module notes).
const FETCH: VersionRange = VersionRange { min: 4, max: 12 };
/// ListOffsets versions: 1 is Kafka 4's floor; 2 adds the isolation level (latest under
/// `read_committed` is the last stable offset), 4 the leader epoch.
const LIST_OFFSETS: VersionRange = VersionRange { min: 1, max: 7 };

/// One partition and where it stands.
#[derive(Debug, Clone)]
struct Part {
    /// The partition.
    tp: TopicPartition,
    /// The next offset to fetch; `None` until the reset policy has been applied.
    position: Option<i64>,
    /// Its leader's epoch from Metadata (-1: unknown), sent in Fetch and ListOffsets.
    leader_epoch: i32,
}

/// What a leader task hands back when it ends.
#[derive(Debug)]
struct Exit {
    /// The leader it fetched from.
    broker: i32,
    /// Its partitions, with their positions.
    parts: Vec<Part>,
    /// Whether leaders must be looked up again before routing them.
    refresh: bool,
    /// Whether it ended on an error (the manager backs off before routing again).
    failed: bool,
    /// Whether any partition moved forward (resets the backoff).
    progressed: bool,
}

/// Fetches `assignment` (partitions with their committed offsets, `None` for "apply the reset
/// policy") into `out`, tagging each batch with `epoch`, until `cancel` or until `out` is closed.
pub async fn run(
    config: Arc<FetchConfig>,
    assignment: Vec<(TopicPartition, Option<i64>)>,
    epoch: u64,
    out: mpsc::Sender<Batch>,
    cancel: CancellationToken,
) {
    let mut topics: Vec<String> = assignment.iter().map(|(tp, _)| tp.topic.clone()).collect();
    topics.sort();
    topics.dedup();
    let mut pending: Vec<Part> = assignment
        .into_iter()
        .map(|(tp, position)| Part {
            tp,
            position,
            leader_epoch: -1,
        })
        .collect();
    let mut metadata = MetadataClient::new(&config);
    let mut leaders = Leaders::default();
    let mut refresh = true;
    let mut tasks: JoinSet<Exit> = JoinSet::new();
    let mut running: BTreeMap<i32, CancellationToken> = BTreeMap::new();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let mut warned = false;
    loop {
        if !pending.is_empty() && refresh {
            let asked = tokio::select! {
                r = metadata.leaders(&config, &topics) => r,
                _ = cancel.cancelled() => break,
            };
            match asked {
                Ok(found) => {
                    leaders = found;
                    refresh = false;
                }
                Err(err) => {
                    if !warned {
                        tracing::warn!(cause = %err, "cannot read partition leaders yet; retrying");
                        warned = true;
                    }
                    if !sleep(backoff.next_delay(), &cancel).await {
                        break;
                    }
                    continue;
                }
            }
        }
        let mut by_leader: BTreeMap<i32, Vec<Part>> = BTreeMap::new();
        let mut waiting = Vec::new();
        for mut part in pending.drain(..) {
            match leaders.partitions.get(&part.tp) {
                Some(leader) => {
                    part.leader_epoch = leader.epoch;
                    by_leader.entry(leader.broker).or_default().push(part);
                }
                None => {
                    refresh = true;
                    waiting.push(part);
                }
            }
        }
        if !waiting.is_empty() && !warned {
            tracing::warn!(
                partitions = waiting.len(),
                "partitions without a leader yet; retrying"
            );
            warned = true;
        }
        for (broker, parts) in by_leader {
            if let Some(task) = running.get(&broker) {
                // Merged with that task's partitions when it has handed them back.
                task.cancel();
                waiting.extend(parts);
                continue;
            }
            let Some(addr) = leaders.brokers.get(&broker).cloned() else {
                refresh = true;
                waiting.extend(parts);
                continue;
            };
            let token = cancel.child_token();
            running.insert(broker, token.clone());
            tasks.spawn(lead(
                broker,
                addr,
                parts,
                Arc::clone(&config),
                epoch,
                out.clone(),
                token,
            ));
        }
        pending = waiting;
        // Partitions still waiting (no leader yet, or their leader's task is handing its own back).
        let retry = !pending.is_empty();
        let delay = if retry {
            backoff.next_delay()
        } else {
            Duration::ZERO
        };
        tokio::select! {
            _ = cancel.cancelled() => break,
            Some(joined) = tasks.join_next() => match joined {
                Ok(exit) => {
                    running.remove(&exit.broker);
                    if exit.progressed {
                        backoff.reset();
                        warned = false;
                    }
                    refresh |= exit.refresh;
                    pending.extend(exit.parts);
                    if exit.failed && !sleep(backoff.next_delay(), &cancel).await {
                        break;
                    }
                }
                // Only on abort (never done before shutdown) or a panic (which aborts the process
                // in release builds).
                Err(err) => tracing::error!(cause = %err, "a fetch task failed"),
            },
            _ = tokio::time::sleep(delay), if retry => {}
        }
        if out.is_closed() {
            break;
        }
    }
    tasks.abort_all();
    while tasks.join_next().await.is_some() {}
}

/// Sleeps `delay` unless `cancel` comes first; `false` when cancelled.
async fn sleep(delay: Duration, cancel: &CancellationToken) -> bool {
    tokio::select! {
        _ = tokio::time::sleep(delay) => true,
        _ = cancel.cancelled() => false,
    }
}

/// The task fetching `parts` from their leader `broker` at `addr` until one of them needs another
/// leader, the connection fails, or `cancel`.
async fn lead(
    broker: i32,
    addr: String,
    mut parts: Vec<Part>,
    config: Arc<FetchConfig>,
    epoch: u64,
    out: mpsc::Sender<Batch>,
    cancel: CancellationToken,
) -> Exit {
    let mut exit = Exit {
        broker,
        parts: Vec::new(),
        refresh: false,
        failed: false,
        progressed: false,
    };
    let ended = tokio::select! {
        r = fetch_loop(&addr, &mut parts, &config, epoch, &out, &mut exit) => r,
        // Positions only move after a batch is handed over, so they are right wherever this stops.
        _ = cancel.cancelled() => Ok(()),
    };
    if let Err(err) = ended {
        tracing::warn!(broker, cause = %err, "fetching failed; retrying with backoff");
        exit.refresh = true;
        exit.failed = true;
    }
    exit.parts = parts;
    exit
}

/// Fetches until a partition needs rerouting (`Ok`, with `exit` saying why) or an error.
async fn fetch_loop(
    addr: &str,
    parts: &mut [Part],
    config: &FetchConfig,
    epoch: u64,
    out: &mpsc::Sender<Batch>,
    exit: &mut Exit,
) -> Result<(), FetchError> {
    let max_frame = usize::try_from(config.max_bytes)
        .unwrap_or(0)
        .saturating_add(1024 * 1024)
        .max(transport::DEFAULT_MAX_FRAME);
    let mut conn = Connection::connect_secure(
        addr,
        &config.client_id,
        config.connect_timeout,
        &config.security,
    )
    .await?
    .with_max_frame(max_frame);
    let fetch_version = conn.version_of::<FetchRequest>(FETCH)?;
    let list_version = conn.version_of::<ListOffsetsRequest>(LIST_OFFSETS)?;
    let timeout = config.max_wait + config.request_timeout;
    // An empty answer the broker did not hold (it should hold up to max_wait): wait a little before
    // asking again, so a broker that answers at once never makes this loop spin.
    let mut idle = Backoff::new(Duration::from_millis(10), config.max_wait);
    loop {
        if parts.iter().any(|p| p.position.is_none()) {
            if !reset_positions(&mut conn, list_version, parts, config, timeout).await? {
                exit.refresh = true;
                exit.failed = true;
                return Ok(());
            }
            continue;
        }
        let request = fetch_request(parts, config, fetch_version);
        let started = Instant::now();
        let response = conn.call(&request, fetch_version, timeout).await?;
        if let Some(err) = FetchError::from_code("Fetch", response.error_code) {
            return Err(err);
        }
        let mut moved = false;
        let mut reroute = false;
        for topic in response.responses {
            for data in topic.partitions {
                let Some(part) = parts.iter_mut().find(|p| {
                    p.tp.partition == data.partition_index && p.tp.topic == topic.topic.0.as_str()
                }) else {
                    continue;
                };
                let Some(position) = part.position else {
                    continue;
                };
                let (topic_name, partition) = (part.tp.topic.as_str(), part.tp.partition);
                match ResponseError::try_from_code(data.error_code) {
                    None if data.error_code == 0 => {}
                    Some(ResponseError::OffsetOutOfRange) => {
                        // Retention deleted what we had not read, or the topic was recreated.
                        tracing::warn!(topic = topic_name, partition, offset = position, policy = ?config.reset, "offset out of range; resetting");
                        part.position = None;
                        moved = true;
                        continue;
                    }
                    Some(
                        ResponseError::NotLeaderOrFollower
                        | ResponseError::FencedLeaderEpoch
                        | ResponseError::UnknownLeaderEpoch
                        | ResponseError::UnknownTopicOrPartition
                        | ResponseError::LeaderNotAvailable
                        | ResponseError::ReplicaNotAvailable
                        | ResponseError::KafkaStorageError
                        | ResponseError::OffsetNotAvailable
                        | ResponseError::UnknownTopicId,
                    ) => {
                        tracing::debug!(
                            topic = topic_name,
                            partition,
                            code = data.error_code,
                            "partition moved; refreshing leaders"
                        );
                        reroute = true;
                        continue;
                    }
                    _ => {
                        tracing::warn!(
                            topic = topic_name,
                            partition,
                            code = data.error_code,
                            "fetch error; retrying with backoff"
                        );
                        reroute = true;
                        continue;
                    }
                }
                let aborted: Vec<Aborted> = data
                    .aborted_transactions
                    .iter()
                    .flatten()
                    .map(|a| Aborted {
                        producer_id: a.producer_id.0,
                        first_offset: a.first_offset,
                    })
                    .collect();
                let decoded = match decode::decode(
                    data.records.unwrap_or_default(),
                    position,
                    config.isolation,
                    &aborted,
                    data.last_stable_offset,
                ) {
                    Ok(decoded) => decoded,
                    Err(err) => {
                        tracing::warn!(topic = topic_name, partition, offset = position, cause = %err, "cannot read fetched records; retrying with backoff");
                        reroute = true;
                        continue;
                    }
                };
                if decoded.records.is_empty() && decoded.next_offset <= position {
                    continue;
                }
                let batch = Batch {
                    partition: part.tp.clone(),
                    epoch,
                    records: decoded.records,
                    next_offset: decoded.next_offset,
                    high_watermark: data.high_watermark,
                    last_stable_offset: data.last_stable_offset,
                };
                if out.send(batch).await.is_err() {
                    return Ok(());
                }
                part.position = Some(decoded.next_offset);
                moved = true;
                exit.progressed = true;
            }
        }
        if reroute {
            exit.refresh = true;
            exit.failed = true;
            return Ok(());
        }
        if moved {
            idle.reset();
        } else if started.elapsed() < config.max_wait / 2 {
            tokio::time::sleep(idle.next_delay()).await;
        }
    }
}

/// A full, session-less Fetch for every partition with a position.
fn fetch_request(parts: &[Part], config: &FetchConfig, version: i16) -> FetchRequest {
    let mut topics: Vec<FetchTopic> = Vec::new();
    for part in parts {
        let Some(position) = part.position else {
            continue;
        };
        let partition = FetchPartition::default()
            .with_partition(part.tp.partition)
            // KIP-320 (v9+): a leader that moved on answers FENCED_LEADER_EPOCH.
            .with_current_leader_epoch(if version >= 9 { part.leader_epoch } else { -1 })
            .with_fetch_offset(position)
            .with_partition_max_bytes(config.partition_max_bytes);
        match topics
            .iter_mut()
            .find(|t| t.topic.0.as_str() == part.tp.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                FetchTopic::default()
                    .with_topic(TopicName(StrBytes::from_string(part.tp.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    FetchRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_max_wait_ms(i32::try_from(config.max_wait.as_millis()).unwrap_or(i32::MAX))
        .with_min_bytes(1)
        .with_max_bytes(config.max_bytes)
        .with_isolation_level(config.isolation.wire())
        .with_session_id(0)
        .with_session_epoch(-1)
        .with_topics(topics)
}

/// Applies the reset policy to the partitions without a position (ListOffsets to their leader).
/// `false` when one of them needs another leader.
async fn reset_positions(
    conn: &mut Connection,
    version: i16,
    parts: &mut [Part],
    config: &FetchConfig,
    timeout: Duration,
) -> Result<bool, FetchError> {
    // ListOffsets' special timestamps: -2 is the log start, -1 the end (the LSO under read_committed).
    let timestamp = match config.reset {
        OffsetReset::Earliest => -2,
        OffsetReset::Latest => -1,
    };
    let mut topics: Vec<ListOffsetsTopic> = Vec::new();
    for part in parts.iter().filter(|p| p.position.is_none()) {
        let partition = ListOffsetsPartition::default()
            .with_partition_index(part.tp.partition)
            .with_timestamp(timestamp)
            .with_current_leader_epoch(if version >= 4 { part.leader_epoch } else { -1 });
        match topics
            .iter_mut()
            .find(|t| t.name.0.as_str() == part.tp.topic)
        {
            Some(topic) => topic.partitions.push(partition),
            None => topics.push(
                ListOffsetsTopic::default()
                    .with_name(TopicName(StrBytes::from_string(part.tp.topic.clone())))
                    .with_partitions(vec![partition]),
            ),
        }
    }
    let mut request = ListOffsetsRequest::default()
        .with_replica_id(BrokerId(-1))
        .with_topics(topics);
    if version >= 2 {
        request.isolation_level = config.isolation.wire();
    }
    let response = conn.call(&request, version, timeout).await?;
    let mut routed = true;
    for topic in response.topics {
        for p in topic.partitions {
            let Some(part) = parts.iter_mut().find(|x| {
                x.position.is_none()
                    && x.tp.partition == p.partition_index
                    && x.tp.topic == topic.name.0.as_str()
            }) else {
                continue;
            };
            if p.error_code == 0 {
                tracing::debug!(topic = part.tp.topic.as_str(), partition = part.tp.partition, offset = p.offset, policy = ?config.reset, "starting at the reset offset");
                part.position = Some(p.offset);
            } else {
                tracing::debug!(
                    topic = part.tp.topic.as_str(),
                    partition = part.tp.partition,
                    code = p.error_code,
                    "cannot read the reset offset here; refreshing leaders"
                );
                routed = false;
            }
        }
    }
    if routed && parts.iter().any(|p| p.position.is_none()) {
        // The broker left a partition out of its answer.
        routed = false;
    }
    Ok(routed)
}

/// Doubling delays with jitter, capped (the same shape as the binaries' `runtime::backoff`, which
/// this library does not depend on).
#[derive(Debug)]
struct Backoff {
    initial: Duration,
    max: Duration,
    current: Duration,
}

impl Backoff {
    fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            current: initial,
        }
    }

    fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        base.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    fn reset(&mut self) {
        self.current = self.initial;
    }
}
