//! The membership state machine of one member of a KIP-848 consumer group (`group.protocol=consumer`),
//! sans-io like the classic one in [`crate::membership`], and speaking to the driver through the same
//! [`Action`]s and [`Event`]s.
//!
//! The broker computes every assignment. A member sends one request, ConsumerGroupHeartbeat, at the
//! interval the broker names: the first one (epoch 0) joins with the full subscription, later ones
//! carry only what changed (a null field means "unchanged"), and the answer may carry a new target
//! assignment. No JoinGroup barrier, no leader, no SyncGroup.
//!
//! ```text
//!   FindCoordinator --> Joining --heartbeat, epoch 0--> Member --heartbeat, epoch N--> Member ...
//!                          ^                              |  a new assignment: reconcile it
//!                          |                              |   1. Revoke what left it (the app stops
//!   FENCED_MEMBER_EPOCH,   |                              |      consuming, reports positions);
//!   UNKNOWN_MEMBER_ID,     +--- Fenced (Revoke, lost) <---+   2. commit those positions;
//!   a session gone silent                                 |   3. OffsetFetch for what was added;
//!                                                         |   4. Assigned, then a heartbeat at once
//!   leave(): Revoke everything, commit,                   |      reporting what we own (the ack).
//!            heartbeat with epoch -1 (-2: static) ------> Done
//! ```
//!
//! The broker only hands a member partitions that no other member still owns, so a partition in the
//! answer can be fetched as soon as its committed offset is known. What a member owns shrinks only
//! after the revoked partitions' positions are committed: the heartbeat reporting the smaller set is
//! what lets the broker give them to someone else, who then reads the commit.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    time::{Duration, Instant},
};

use kafka_protocol::{
    messages::{
        consumer_group_heartbeat_request::TopicPartitions,
        consumer_group_heartbeat_response::Assignment,
        find_coordinator_response::FindCoordinatorResponse,
        metadata_request::MetadataRequestTopic,
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_fetch_request::{OffsetFetchRequestGroup, OffsetFetchRequestTopics},
        ConsumerGroupHeartbeatRequest, ConsumerGroupHeartbeatResponse, FindCoordinatorRequest,
        GroupId, MetadataRequest, MetadataResponse, OffsetCommitRequest, OffsetCommitResponse,
        OffsetFetchRequest, OffsetFetchResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};
use uuid::Uuid;

use crate::{
    member::Member,
    membership::{Action, Config, Coordinator, Event, FatalError, Lane, State, Target},
    wire::{Request, Response},
    TopicPartition,
};

/// Epoch of a heartbeat that leaves the group for good.
pub const LEAVE_EPOCH: i32 = -1;
/// Epoch of a static member's heartbeat that leaves for a while (a restart): the broker keeps its
/// assignment for the session timeout, for the same `group.instance.id` to take back.
pub const STATIC_LEAVE_EPOCH: i32 = -2;
/// How often a revoked partition's commit is tried before the revocation goes ahead without it.
const REVOKE_COMMIT_ATTEMPTS: u32 = 3;

/// The step of a reconciliation (or of leaving) in progress.
#[derive(Debug, Clone, PartialEq)]
enum Step {
    /// Nothing in progress.
    Idle,
    /// The application was told to stop `revoked`; waiting for [`Member::revoke_done`].
    Revoking {
        revoked: BTreeSet<TopicPartition>,
        added: BTreeSet<TopicPartition>,
    },
    /// Committing the positions of `revoked`.
    CommittingRevoked {
        revoked: BTreeSet<TopicPartition>,
        added: BTreeSet<TopicPartition>,
        attempts: u32,
    },
    /// Reading the committed offsets of `added`.
    FetchingOffsets { added: BTreeSet<TopicPartition> },
    /// Partitions lost (fenced, evicted): waiting for the application, then rejoining with epoch 0.
    Lost,
    /// Leaving: the application was told to stop everything.
    LeaveRevoking,
    /// Leaving: committing the final positions.
    LeaveCommitting,
    /// Leaving: the heartbeat with the leave epoch is next.
    LeaveHeartbeat,
    /// Out of the group, or failed.
    Done,
}

/// The heartbeat in flight.
#[derive(Debug, Clone, PartialEq)]
enum Beat {
    /// A heartbeat, with the owned partitions it reports (`None`: it reports none).
    Member(Option<BTreeSet<TopicPartition>>),
    /// The heartbeat that leaves the group.
    Leave,
}

/// The main lane's request in flight.
#[derive(Debug, Clone, PartialEq)]
enum Pending {
    FindCoordinator,
    Metadata,
    Commit(Vec<(TopicPartition, i64)>),
    OffsetFetch,
}

/// One KIP-848 consumer-group member.
#[derive(Debug)]
pub struct Kip848 {
    config: Config,
    coordinator: Option<Coordinator>,
    /// Generated here (ConsumerGroupHeartbeat v1, KIP-1082); a v0 broker replaces it on join.
    member_id: String,
    /// 0 while joining; the broker's epoch afterwards.
    epoch: i32,
    /// The epoch of the last reconciled assignment: the broker moves `epoch` on without a change
    /// for this member, and readiness reports the epoch the assignment belongs to.
    assigned_epoch: i32,
    /// Whether [`Event::Joined`] went out for this epoch-0 join.
    joined: bool,
    /// From the broker's last answer.
    heartbeat_interval: Duration,
    next_heartbeat: Instant,
    /// The last successful heartbeat, to notice a session the broker must have expired.
    last_heartbeat_ok: Instant,
    heartbeat: Option<Beat>,
    /// Whether the next heartbeat must carry every field (after joining or any failure).
    full: bool,
    /// The owned partitions the broker last acknowledged hearing (`None`: it must hear them again).
    reported: Option<BTreeSet<TopicPartition>>,
    /// What the application consumes.
    owned: BTreeSet<TopicPartition>,
    owned_list: Vec<TopicPartition>,
    /// The broker's latest assignment not yet reconciled.
    target: Option<Assignment>,
    /// The broker's assignment reaches us by topic id.
    topic_names: BTreeMap<Uuid, String>,
    /// A target names a topic id we cannot resolve yet.
    needs_metadata: bool,
    step: Step,
    /// Revokes the application has not confirmed yet: the step moves on when none is left.
    unconfirmed: u32,
    leaving: bool,
    pending: Option<Pending>,
    failures: u32,
    retry_at: Option<Instant>,
    positions: BTreeMap<TopicPartition, i64>,
    committed: BTreeMap<TopicPartition, i64>,
    next_commit: Option<Instant>,
    events: VecDeque<Event>,
}

impl Kip848 {
    /// A member that will join `config.group_id` at its first [`Member::poll`].
    pub fn new(config: Config, now: Instant) -> Self {
        let next_commit = config.auto_commit_interval.map(|i| now + i);
        Self {
            member_id: random_member_id(),
            heartbeat_interval: config.heartbeat_interval,
            config,
            coordinator: None,
            epoch: 0,
            assigned_epoch: 0,
            joined: false,
            next_heartbeat: now,
            last_heartbeat_ok: now,
            heartbeat: None,
            full: true,
            reported: None,
            owned: BTreeSet::new(),
            owned_list: Vec::new(),
            target: None,
            topic_names: BTreeMap::new(),
            needs_metadata: false,
            step: Step::Idle,
            unconfirmed: 0,
            leaving: false,
            pending: None,
            failures: 0,
            retry_at: None,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            next_commit,
            events: VecDeque::new(),
        }
    }

    /// The member epoch (0 while joining).
    pub fn epoch(&self) -> i32 {
        self.epoch
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.config.group_id.clone()))
    }

    fn str(s: &str) -> StrBytes {
        StrBytes::from_string(s.to_string())
    }

    fn set_owned(&mut self, owned: BTreeSet<TopicPartition>) {
        self.owned_list = owned.iter().cloned().collect();
        self.owned = owned;
    }

    fn set_coordinator(&mut self, coordinator: Option<Coordinator>) {
        if self.coordinator != coordinator {
            self.coordinator = coordinator.clone();
            self.events
                .push_back(Event::CoordinatorChanged(coordinator));
        }
    }

    fn backoff(&mut self, now: Instant) {
        let delay = self
            .config
            .retry_backoff
            .saturating_mul(1 << self.failures.min(16))
            .min(self.config.retry_backoff_max);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + delay);
    }

    /// The next heartbeat (and FindCoordinator) after a pause that grows with each failure.
    fn heartbeat_backoff(&mut self, now: Instant) {
        self.backoff(now);
        self.next_heartbeat = self.retry_at.unwrap_or(now);
    }

    fn fatal(&mut self, request: &'static str, error: ResponseError, detail: Option<&str>) {
        let hint = match error {
            ResponseError::UnreleasedInstanceId => {
                "another member with this GROUP_INSTANCE_ID has not left the group yet: give each pod its own, or wait for the old one's session to end"
            }
            ResponseError::UnsupportedAssignor => {
                "the broker does not enable GROUP_REMOTE_ASSIGNOR: Kafka's are uniform and range (group.consumer.assignors)"
            }
            ResponseError::GroupMaxSizeReached => {
                "the group has group.consumer.max.size members already"
            }
            ResponseError::GroupAuthorizationFailed => {
                "this client may not use the group: grant READ on it"
            }
            ResponseError::TopicAuthorizationFailed => {
                "this client may not read the topic: grant READ on it"
            }
            ResponseError::UnsupportedVersion => UNSUPPORTED_HINT,
            _ => "the broker refused the request and retrying will not change that",
        };
        let hint = match detail {
            Some(d) if !d.is_empty() => format!("{hint} (broker: {d})"),
            _ => hint.to_string(),
        };
        self.step = Step::Done;
        self.events.push_back(Event::Fatal(FatalError {
            request,
            error,
            hint,
        }));
    }

    fn revoke(&mut self, partitions: Vec<TopicPartition>, lost: bool, reason: String) {
        self.unconfirmed += 1;
        self.events.push_back(Event::Revoke {
            partitions,
            lost,
            reason,
        });
    }

    /// The application loses everything at once: someone else may own it already, so no commit.
    fn lose_all(&mut self, reason: String) {
        self.epoch = 0;
        self.assigned_epoch = 0;
        self.joined = false;
        self.full = true;
        self.reported = None;
        self.target = None;
        if self.owned.is_empty() {
            self.step = if self.leaving { Step::Done } else { Step::Idle };
            if self.leaving {
                self.events.push_back(Event::Left);
            }
            return;
        }
        self.step = Step::Lost;
        self.revoke(self.owned_list.clone(), true, reason);
    }

    /// Starts reconciling the latest target, if nothing else is in progress.
    fn reconcile(&mut self) {
        if self.step != Step::Idle || self.leaving {
            return;
        }
        let Some(target) = &self.target else {
            return;
        };
        let mut wanted = BTreeSet::new();
        for t in &target.topic_partitions {
            let Some(name) = self.topic_names.get(&t.topic_id) else {
                self.needs_metadata = true;
                return;
            };
            wanted.extend(
                t.partitions
                    .iter()
                    .map(|p| TopicPartition::new(name.clone(), *p)),
            );
        }
        self.target = None;
        let revoked: BTreeSet<_> = self.owned.difference(&wanted).cloned().collect();
        let added: BTreeSet<_> = wanted.difference(&self.owned).cloned().collect();
        if revoked.is_empty() && added.is_empty() {
            if self.assigned_epoch == 0 {
                // The first assignment since joining is empty (more members than partitions): the
                // application still learns it is settled.
                self.assigned_epoch = self.epoch;
                self.events.push_back(Event::Assigned {
                    generation: self.epoch,
                    partitions: Vec::new(),
                    owned: self.owned_list.clone(),
                });
            }
            return;
        }
        if revoked.is_empty() {
            self.step = Step::FetchingOffsets { added };
            return;
        }
        let reason = format!("the group's assignment at epoch {} moves them", self.epoch);
        self.revoke(revoked.iter().cloned().collect(), false, reason);
        self.step = Step::Revoking { revoked, added };
    }

    /// The revoked partitions are committed (or given up on): they leave what we own.
    fn revoked(
        &mut self,
        now: Instant,
        revoked: BTreeSet<TopicPartition>,
        added: BTreeSet<TopicPartition>,
    ) {
        for tp in &revoked {
            self.positions.remove(tp);
            self.committed.remove(tp);
        }
        let owned = self.owned.difference(&revoked).cloned().collect();
        self.set_owned(owned);
        if added.is_empty() || self.leaving {
            self.assigned(now, Vec::new());
        } else {
            self.step = Step::FetchingOffsets { added };
        }
    }

    /// A reconciliation ends: `added` start, and the next heartbeat (at once) reports what we own.
    fn assigned(&mut self, now: Instant, added: Vec<(TopicPartition, Option<i64>)>) {
        let mut owned = self.owned.clone();
        owned.extend(added.iter().map(|(tp, _)| tp.clone()));
        self.set_owned(owned);
        self.step = Step::Idle;
        self.assigned_epoch = self.epoch;
        self.events.push_back(Event::Assigned {
            generation: self.epoch,
            partitions: added,
            owned: self.owned_list.clone(),
        });
        self.next_heartbeat = now;
        if self.leaving {
            self.start_leave();
        } else {
            self.reconcile();
        }
    }

    fn start_leave(&mut self) {
        if self.step != Step::Idle {
            return; // the step in progress finishes first, and comes back here
        }
        self.target = None;
        if self.owned.is_empty() {
            self.step = Step::LeaveCommitting;
        } else {
            self.step = Step::LeaveRevoking;
            self.revoke(self.owned_list.clone(), false, "leaving the group".into());
        }
    }

    fn finish_leave(&mut self) {
        self.step = Step::Done;
        self.events.push_back(Event::Left);
    }

    /// Positions of owned partitions not committed yet.
    fn dirty(&self, of: &BTreeSet<TopicPartition>) -> Vec<(TopicPartition, i64)> {
        self.positions
            .iter()
            .filter(|(tp, offset)| of.contains(tp) && self.committed.get(*tp) != Some(offset))
            .map(|(tp, offset)| (tp.clone(), *offset))
            .collect()
    }

    fn commit_request(&self, offsets: &[(TopicPartition, i64)]) -> Request {
        let mut topics: BTreeMap<&str, Vec<OffsetCommitRequestPartition>> = BTreeMap::new();
        for (tp, offset) in offsets {
            topics.entry(&tp.topic).or_default().push(
                OffsetCommitRequestPartition::default()
                    .with_partition_index(tp.partition)
                    .with_committed_offset(*offset)
                    .with_committed_leader_epoch(-1),
            );
        }
        Request::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(self.group_id())
                .with_generation_id_or_member_epoch(self.epoch)
                .with_member_id(Self::str(&self.member_id))
                .with_group_instance_id(self.config.instance_id.as_deref().map(Self::str))
                .with_retention_time_ms(-1)
                .with_topics(
                    topics
                        .into_iter()
                        .map(|(name, partitions)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(TopicName(Self::str(name)))
                                .with_partitions(partitions)
                        })
                        .collect(),
                ),
        )
    }

    fn offset_fetch_request(&self, added: &BTreeSet<TopicPartition>) -> Request {
        let mut topics: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
        for tp in added {
            topics.entry(&tp.topic).or_default().push(tp.partition);
        }
        let group = OffsetFetchRequestGroup::default()
            .with_group_id(self.group_id())
            .with_member_id(Some(Self::str(&self.member_id)))
            .with_member_epoch(self.epoch)
            .with_topics(Some(
                topics
                    .into_iter()
                    .map(|(name, partitions)| {
                        OffsetFetchRequestTopics::default()
                            .with_name(TopicName(Self::str(name)))
                            .with_partition_indexes(partitions)
                    })
                    .collect(),
            ));
        Request::OffsetFetch(
            OffsetFetchRequest::default()
                .with_groups(vec![group])
                .with_require_stable(true),
        )
    }

    fn heartbeat_request(&mut self) -> Request {
        let mut r = ConsumerGroupHeartbeatRequest::default()
            .with_group_id(self.group_id())
            .with_member_id(Self::str(&self.member_id))
            .with_member_epoch(self.epoch)
            .with_rebalance_timeout_ms(-1);
        if matches!(self.step, Step::LeaveHeartbeat) {
            let static_member = self.config.instance_id.is_some();
            self.heartbeat = Some(Beat::Leave);
            return Request::ConsumerGroupHeartbeat(
                r.with_member_epoch(if static_member {
                    STATIC_LEAVE_EPOCH
                } else {
                    LEAVE_EPOCH
                })
                .with_instance_id(self.config.instance_id.as_deref().map(Self::str)),
            );
        }
        if self.full {
            let ms = self
                .config
                .rebalance_timeout
                .as_millis()
                .min(i32::MAX as u128) as i32;
            r = r
                .with_instance_id(self.config.instance_id.as_deref().map(Self::str))
                .with_rack_id(self.config.rack_id.as_deref().map(Self::str))
                .with_rebalance_timeout_ms(ms)
                .with_subscribed_topic_names(Some(
                    self.config
                        .topics
                        .iter()
                        .map(|t| TopicName(Self::str(t)))
                        .collect(),
                ))
                .with_server_assignor(self.config.remote_assignor.as_deref().map(Self::str));
        }
        // What we own, whenever the broker has not heard it; partitions whose topic id we do not
        // know yet (only right after a restart of the metadata) wait for the next heartbeat.
        let report = self.full || self.reported.as_ref() != Some(&self.owned);
        let mut sent = None;
        if report {
            let ids: BTreeMap<&str, Uuid> = self
                .topic_names
                .iter()
                .map(|(id, name)| (name.as_str(), *id))
                .collect();
            let mut by_topic: BTreeMap<Uuid, Vec<i32>> = BTreeMap::new();
            let mut complete = true;
            for tp in &self.owned {
                match ids.get(tp.topic.as_str()) {
                    Some(id) => by_topic.entry(*id).or_default().push(tp.partition),
                    None => complete = false,
                }
            }
            if complete {
                r = r.with_topic_partitions(Some(
                    by_topic
                        .into_iter()
                        .map(|(id, partitions)| {
                            TopicPartitions::default()
                                .with_topic_id(id)
                                .with_partitions(partitions)
                        })
                        .collect(),
                ));
                sent = Some(self.owned.clone());
            }
        }
        self.heartbeat = Some(Beat::Member(sent));
        Request::ConsumerGroupHeartbeat(r)
    }

    fn on_find_coordinator(&mut self, now: Instant, r: FindCoordinatorResponse) {
        let (error_code, node_id, host, port) = match r.coordinators.first() {
            Some(c) => (c.error_code, c.node_id.0, c.host.to_string(), c.port),
            None => (r.error_code, r.node_id.0, r.host.to_string(), r.port),
        };
        match ResponseError::try_from_code(error_code) {
            None if node_id >= 0 && !host.is_empty() => self.set_coordinator(Some(Coordinator {
                node_id,
                host,
                port,
            })),
            Some(e @ (ResponseError::GroupAuthorizationFailed | ResponseError::InvalidRequest)) => {
                self.fatal("FindCoordinator", e, None)
            }
            _ => self.backoff(now),
        }
    }

    fn on_metadata(&mut self, now: Instant, r: MetadataResponse) {
        self.needs_metadata = false;
        for t in &r.topics {
            if let (Some(name), None) = (&t.name, ResponseError::try_from_code(t.error_code)) {
                if !t.topic_id.is_nil() {
                    self.topic_names.insert(t.topic_id, name.to_string());
                }
            }
        }
        self.reconcile();
        let known: BTreeSet<&str> = self.topic_names.values().map(String::as_str).collect();
        if self.needs_metadata
            || self
                .config
                .topics
                .iter()
                .any(|t| !known.contains(t.as_str()))
        {
            // Still unknown (a topic not created yet): ask again after a growing pause.
            self.backoff(now);
        } else {
            self.failures = 0;
        }
    }

    fn on_heartbeat(&mut self, now: Instant, beat: Beat, r: ConsumerGroupHeartbeatResponse) {
        if self.step == Step::Done {
            return;
        }
        let (leave, sent) = match beat {
            Beat::Leave => (true, None),
            Beat::Member(sent) => (false, sent),
        };
        let message = r.error_message.as_ref().map(|m| m.to_string());
        match ResponseError::try_from_code(r.error_code) {
            None if leave => return self.finish_leave(),
            None => {}
            // Out already, which is where we were going.
            Some(ResponseError::UnknownMemberId | ResponseError::FencedMemberEpoch) if leave => {
                return self.finish_leave()
            }
            Some(e @ (ResponseError::UnknownMemberId | ResponseError::FencedMemberEpoch)) => {
                self.lose_all(format!("the coordinator answered {e:?}"));
                self.next_heartbeat = now;
                return;
            }
            // The coordinator moved, or is still loading (a new cluster creates __consumer_offsets
            // at the first group): find it again, with a growing pause so this never spins.
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                self.full = true;
                self.set_coordinator(None);
                self.heartbeat_backoff(now);
                return;
            }
            // Nothing more to try: the session timeout removes us.
            Some(_) if leave => return self.finish_leave(),
            Some(e) if e.is_retriable() || e == ResponseError::UnknownServerError => {
                self.full = true;
                self.heartbeat_backoff(now);
                return;
            }
            Some(e) => return self.fatal("ConsumerGroupHeartbeat", e, message.as_deref()),
        }
        if let Some(id) = r.member_id.as_ref().filter(|id| !id.is_empty()) {
            self.member_id = id.to_string();
        }
        self.epoch = r.member_epoch;
        if r.heartbeat_interval_ms > 0 {
            self.heartbeat_interval = Duration::from_millis(r.heartbeat_interval_ms as u64);
        }
        self.last_heartbeat_ok = now;
        self.failures = 0;
        self.next_heartbeat = now + self.heartbeat_interval;
        self.full = false;
        if let Some(sent) = sent {
            self.reported = Some(sent);
        }
        if !self.joined {
            self.joined = true;
            self.events.push_back(Event::Joined {
                generation: self.epoch,
                member_id: self.member_id.clone(),
                leader: false,
                protocol: self
                    .config
                    .remote_assignor
                    .clone()
                    .unwrap_or_else(|| "the broker's default assignor".into()),
                members: 0,
            });
        }
        if let Some(assignment) = r.assignment {
            self.target = Some(assignment);
            self.reconcile();
        }
        if self.reported.as_ref() != Some(&self.owned) && self.step == Step::Idle {
            self.next_heartbeat = now; // acknowledge at once
        }
    }

    fn on_commit(
        &mut self,
        now: Instant,
        offsets: Vec<(TopicPartition, i64)>,
        r: OffsetCommitResponse,
    ) {
        let mut error = None;
        for t in &r.topics {
            for p in &t.partitions {
                if let Some(e) = ResponseError::try_from_code(p.error_code) {
                    error.get_or_insert(e);
                }
            }
        }
        match error {
            None => {
                self.failures = 0;
                for (tp, offset) in &offsets {
                    self.committed.insert(tp.clone(), *offset);
                }
                self.events.push_back(Event::Committed { offsets });
                self.after_commit(now, true);
            }
            Some(e) => {
                if matches!(
                    e,
                    ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
                ) {
                    self.set_coordinator(None);
                }
                self.events.push_back(Event::CommitFailed {
                    reason: format!("OffsetCommit: {e:?}"),
                });
                self.backoff(now);
                self.after_commit(now, false);
            }
        }
    }

    /// Moves a revoke or leave on after a commit (`ok`) or a failed one.
    fn after_commit(&mut self, now: Instant, ok: bool) {
        match std::mem::replace(&mut self.step, Step::Idle) {
            Step::CommittingRevoked {
                revoked,
                added,
                attempts,
            } => {
                let left = self.dirty(&revoked);
                if left.is_empty() || attempts + 1 >= REVOKE_COMMIT_ATTEMPTS {
                    if !left.is_empty() {
                        tracing::warn!(count = left.len(), "giving up committing revoked partitions; their new owner may process some messages again");
                    }
                    self.revoked(now, revoked, added);
                } else {
                    let attempts = if ok { attempts } else { attempts + 1 };
                    self.step = Step::CommittingRevoked {
                        revoked,
                        added,
                        attempts,
                    };
                }
            }
            Step::LeaveCommitting if ok && self.dirty(&self.owned).is_empty() => {
                self.step = Step::LeaveHeartbeat
            }
            // One failed try is all a shutdown can afford: leave anyway.
            Step::LeaveCommitting if !ok => self.step = Step::LeaveHeartbeat,
            other => self.step = other,
        }
    }

    fn on_offset_fetch(&mut self, now: Instant, r: OffsetFetchResponse) {
        let Step::FetchingOffsets { added } = &self.step else {
            return; // the reconciliation was abandoned (lost partitions, leaving)
        };
        let added = added.clone();
        let Some(group) = r.groups.first() else {
            return self.backoff(now);
        };
        if let Some(e) = ResponseError::try_from_code(group.error_code) {
            if matches!(
                e,
                ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable
            ) {
                self.set_coordinator(None);
            }
            if matches!(e, ResponseError::GroupAuthorizationFailed) {
                return self.fatal("OffsetFetch", e, None);
            }
            // STALE_MEMBER_EPOCH (the next heartbeat brings the epoch), UNSTABLE_OFFSET_COMMIT …
            return self.backoff(now);
        }
        let mut found: BTreeMap<TopicPartition, i64> = BTreeMap::new();
        for t in &group.topics {
            for p in &t.partitions {
                if let Some(e) = ResponseError::try_from_code(p.error_code) {
                    if matches!(e, ResponseError::TopicAuthorizationFailed) {
                        return self.fatal("OffsetFetch", e, None);
                    }
                    return self.backoff(now);
                }
                if p.committed_offset >= 0 {
                    found.insert(
                        TopicPartition::new(t.name.to_string(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        self.failures = 0;
        let partitions = added
            .into_iter()
            .map(|tp| {
                let offset = found.get(&tp).copied();
                if let Some(o) = offset {
                    self.committed.insert(tp.clone(), o);
                }
                (tp, offset)
            })
            .collect();
        self.assigned(now, partitions);
    }

    fn main_request(&mut self, now: Instant) -> Option<(Target, Request, Pending)> {
        if self.retry_at.is_some_and(|at| now < at) {
            return None;
        }
        let Some(coordinator) = self.coordinator.clone() else {
            let r = FindCoordinatorRequest::default().with_key(Self::str(&self.config.group_id));
            return Some((
                Target::AnyBroker,
                Request::FindCoordinator(r),
                Pending::FindCoordinator,
            ));
        };
        let to = Target::Coordinator(coordinator);
        match &self.step {
            Step::CommittingRevoked { revoked, .. } => {
                let offsets = self.dirty(revoked);
                if offsets.is_empty() {
                    self.after_commit(now, true);
                    return self.main_request(now);
                }
                return Some((to, self.commit_request(&offsets), Pending::Commit(offsets)));
            }
            Step::LeaveCommitting => {
                let offsets = self.dirty(&self.owned);
                if offsets.is_empty() {
                    self.step = Step::LeaveHeartbeat;
                    return None;
                }
                return Some((to, self.commit_request(&offsets), Pending::Commit(offsets)));
            }
            Step::FetchingOffsets { added } => {
                return Some((to, self.offset_fetch_request(added), Pending::OffsetFetch));
            }
            _ => {}
        }
        let known: BTreeSet<&str> = self.topic_names.values().map(String::as_str).collect();
        if self.needs_metadata
            || self
                .config
                .topics
                .iter()
                .any(|t| !known.contains(t.as_str()))
        {
            let topics = self
                .config
                .topics
                .iter()
                .map(|t| MetadataRequestTopic::default().with_name(Some(TopicName(Self::str(t)))))
                .collect();
            let r = MetadataRequest::default()
                .with_topics(Some(topics))
                .with_allow_auto_topic_creation(false);
            return Some((to, Request::Metadata(r), Pending::Metadata));
        }
        if self.next_commit.is_some_and(|at| now >= at) && self.step == Step::Idle && self.epoch > 0
        {
            self.next_commit = self.config.auto_commit_interval.map(|i| now + i);
            let offsets = self.dirty(&self.owned);
            if !offsets.is_empty() {
                return Some((to, self.commit_request(&offsets), Pending::Commit(offsets)));
            }
        }
        None
    }
}

/// What to tell a user whose broker lacks the protocol.
pub const UNSUPPORTED_HINT: &str = "GROUP_PROTOCOL=consumer needs Apache Kafka 4.0 or newer with the group.version feature at 1 or more (the default on a new 4.x cluster; `kafka-features upgrade --feature group.version=1` on an upgraded one); set GROUP_PROTOCOL=classic to use the classic protocol instead";

/// A member id as the Java client makes one (KIP-1082): 16 random bytes in unpadded URL-safe base64.
fn random_member_id() -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let bytes = fastrand::u128(..).to_be_bytes();
    let mut out = String::with_capacity(22);
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

impl Member for Kip848 {
    fn poll(&mut self, now: Instant) -> Action {
        if self.step == Step::Done {
            return Action::Done;
        }
        // A silent session: the broker evicts us after its session timeout and hands our partitions
        // to others, so they are lost here too (and committing them would overwrite their progress).
        if self.joined
            && self.heartbeat.is_none()
            && now.saturating_duration_since(self.last_heartbeat_ok) > self.config.session_timeout
            && !matches!(self.step, Step::Lost)
        {
            self.lose_all("no heartbeat answered within the session timeout".into());
        }
        if self.pending.is_none() {
            if let Some((target, request, pending)) = self.main_request(now) {
                self.pending = Some(pending);
                return Action::Send {
                    lane: Lane::Main,
                    target,
                    request,
                    timeout: self.config.request_timeout,
                };
            }
            if self.step == Step::Done {
                return Action::Done;
            }
        }
        let mut wake = self.next_heartbeat;
        if let (None, Some(c)) = (&self.heartbeat, &self.coordinator) {
            let sendable = match self.step {
                Step::Lost | Step::LeaveRevoking | Step::LeaveCommitting => false,
                Step::LeaveHeartbeat => {
                    if self.epoch <= 0 {
                        // Never joined, or fenced: the broker has nothing to forget.
                        self.finish_leave();
                        return Action::Done;
                    }
                    true
                }
                _ => now >= self.next_heartbeat,
            };
            if sendable {
                let target = Target::Coordinator(c.clone());
                let request = self.heartbeat_request();
                return Action::Send {
                    lane: Lane::Heartbeat,
                    target,
                    request,
                    timeout: self.config.request_timeout,
                };
            }
        }
        if let Some(at) = self.retry_at {
            wake = wake.min(at.max(now));
        }
        if let Some(at) = self.next_commit {
            wake = wake.min(at.max(now));
        }
        if self.joined {
            wake = wake.min(
                self.last_heartbeat_ok + self.config.session_timeout + Duration::from_millis(1),
            );
        }
        Action::Wait(wake.max(now))
    }

    fn on_response(&mut self, now: Instant, response: Response) {
        match response {
            Response::ConsumerGroupHeartbeat(r) => {
                let beat = self.heartbeat.take().unwrap_or(Beat::Member(None));
                self.on_heartbeat(now, beat, r);
            }
            other => {
                let pending = self.pending.take();
                self.retry_at = None;
                match (pending, other) {
                    (Some(Pending::FindCoordinator), Response::FindCoordinator(r)) => {
                        self.on_find_coordinator(now, r)
                    }
                    (Some(Pending::Metadata), Response::Metadata(r)) => self.on_metadata(now, r),
                    (Some(Pending::Commit(offsets)), Response::OffsetCommit(r)) => {
                        self.on_commit(now, offsets, r)
                    }
                    (Some(Pending::OffsetFetch), Response::OffsetFetch(r)) => {
                        self.on_offset_fetch(now, r)
                    }
                    (_, _) => self.on_failure(now, "an answer to a request we did not send"),
                }
            }
        }
    }

    fn on_failure(&mut self, now: Instant, reason: &str) {
        let pending = self.pending.take();
        self.backoff(now);
        if !matches!(pending, Some(Pending::FindCoordinator)) {
            // The coordinator may have moved; asking again is cheap.
            self.set_coordinator(None);
        }
        if let Some(Pending::Commit(_)) = pending {
            self.events.push_back(Event::CommitFailed {
                reason: reason.to_string(),
            });
            self.after_commit(now, false);
        }
    }

    fn on_heartbeat_failure(&mut self, now: Instant) {
        if self.heartbeat.take() == Some(Beat::Leave) {
            return self.finish_leave();
        }
        self.full = true;
        self.heartbeat_backoff(now);
        self.set_coordinator(None);
    }

    fn on_unsupported(&mut self, now: Instant, lane: Lane, reason: &str) {
        match lane {
            Lane::Heartbeat => {
                self.heartbeat = None;
                self.fatal(
                    "ConsumerGroupHeartbeat",
                    ResponseError::UnsupportedVersion,
                    Some(reason),
                )
            }
            Lane::Main => self.on_failure(now, reason),
        }
    }

    fn abandon(&mut self) {
        if let Some(Pending::Commit(_)) = self.pending.take() {
            if self.step == Step::LeaveCommitting {
                self.step = Step::LeaveHeartbeat;
            }
        }
    }

    fn leave(&mut self) {
        if self.leaving || self.step == Step::Done {
            return;
        }
        self.leaving = true;
        if let Step::FetchingOffsets { .. } = self.step {
            // Not started yet: nothing to stop or commit.
            self.step = Step::Idle;
        }
        self.start_leave();
    }

    fn set_position(&mut self, partition: &TopicPartition, next_offset: i64) {
        if self.owned.contains(partition) {
            self.positions.insert(partition.clone(), next_offset);
        }
    }

    fn revoke_done(&mut self) {
        self.unconfirmed = self.unconfirmed.saturating_sub(1);
        if self.unconfirmed > 0 {
            return; // a later revoke is still being carried out
        }
        match std::mem::replace(&mut self.step, Step::Idle) {
            Step::Revoking { revoked, added } => {
                self.step = Step::CommittingRevoked {
                    revoked,
                    added,
                    attempts: 0,
                }
            }
            Step::Lost => {
                self.positions.clear();
                self.committed.clear();
                self.set_owned(BTreeSet::new());
                if self.leaving {
                    self.finish_leave();
                }
            }
            Step::LeaveRevoking => self.step = Step::LeaveCommitting,
            other => self.step = other,
        }
    }

    fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    fn state(&self) -> State {
        match self.step {
            Step::Done => State::Done,
            Step::LeaveRevoking | Step::LeaveCommitting | Step::LeaveHeartbeat => State::Leaving,
            Step::Revoking { .. } | Step::Lost => State::Revoking,
            _ if self.leaving => State::Leaving,
            Step::CommittingRevoked { .. } | Step::FetchingOffsets { .. } => State::Rebalancing,
            Step::Idle if self.joined => State::Stable,
            Step::Idle => State::Rebalancing,
        }
    }

    fn assignment(&self) -> &[TopicPartition] {
        &self.owned_list
    }

    fn member_id(&self) -> &str {
        &self.member_id
    }

    fn generation(&self) -> i32 {
        self.assigned_epoch
    }
}

#[cfg(test)]
#[path = "kip848_tests.rs"]
mod tests;
