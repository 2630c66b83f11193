//! The membership state machine of one classic-protocol group member, sans-io.
//!
//! No sockets and no clock inside: the driver asks [`Membership::poll`] what to do at `now`, sends the
//! request it is given, and feeds the answer (or the failure) back. Everything the application must act
//! on comes out as an [`Event`]. So every path — each error code, a JoinGroup held as a long poll or
//! answered at once, a rebalance in the middle of a commit — is a plain unit test.
//!
//! ```text
//!            FindCoordinator (whenever the coordinator is unknown)
//!                   |
//!   +-----------> Joining --JoinGroup--> [leader: Metadata] --> Syncing --SyncGroup--> FetchingOffsets
//!   |                                                                                        |
//!   |                                                                              OffsetFetch, Assigned
//!   |                                                                                        v
//!   +-- Revoking <-- heartbeat: REBALANCE_IN_PROGRESS (commit first) ------------------- Stable
//!        (app stops      ILLEGAL_GENERATION / UNKNOWN_MEMBER_ID (lost: no commit)   heartbeats, commits
//!         its partitions) leave() (commit, then LeaveGroup) --> Leaving --> Done
//! ```
//!
//! The eager protocol (range, roundrobin): a member gives up all its partitions before it rejoins, and
//! commits their positions first, unless it lost them, in which case another member may already own
//! them and a commit would overwrite that member's progress.
//!
//! The cooperative protocol (every listed assignor cooperative: `cooperative-sticky`) rejoins without
//! revoking, keeps consuming what it owns, and after SyncGroup revokes only what moved, then rejoins
//! at once. Heartbeats have their own lane ([`Lane`]): they go out from SyncGroup until the next
//! JoinGroup, also while a commit is in flight and while the application revokes. See
//! docs/rebalancing.md.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    time::{Duration, Instant},
};

use kafka_protocol::{
    messages::{
        find_coordinator_response::FindCoordinatorResponse,
        join_group_request::JoinGroupRequestProtocol,
        leave_group_request::MemberIdentity,
        metadata_request::MetadataRequestTopic,
        offset_commit_request::{OffsetCommitRequestPartition, OffsetCommitRequestTopic},
        offset_fetch_request::OffsetFetchRequestTopic,
        sync_group_request::SyncGroupRequestAssignment,
        FindCoordinatorRequest, GroupId, HeartbeatRequest, JoinGroupRequest, JoinGroupResponse,
        LeaveGroupRequest, MetadataRequest, MetadataResponse, OffsetCommitRequest,
        OffsetCommitResponse, OffsetFetchRequest, OffsetFetchResponse, SyncGroupRequest,
        SyncGroupResponse, TopicName,
    },
    protocol::StrBytes,
    ResponseError,
};

use crate::{
    assignor::{Assignor, Member},
    codec::{self, Subscription},
    wire::{Request, Response},
    TopicPartition,
};

/// How a member takes part in its group.
#[derive(Debug, Clone)]
pub struct Config {
    /// `group.id`.
    pub group_id: String,
    /// Subscribed topics.
    pub topics: Vec<String>,
    /// Assignors in order of preference; the group picks the first one every member lists.
    pub assignors: Vec<Assignor>,
    /// Without a heartbeat for this long, the coordinator evicts the member.
    pub session_timeout: Duration,
    /// How long the coordinator waits for every member to rejoin during a rebalance.
    pub rebalance_timeout: Duration,
    /// How often to heartbeat; also how fast a member notices a rebalance.
    pub heartbeat_interval: Duration,
    /// `group.instance.id` for static membership.
    pub instance_id: Option<String>,
    /// Commit positions this often; `None` commits only on revoke and leave.
    pub auto_commit_interval: Option<Duration>,
    /// Timeout of requests the broker answers at once.
    pub request_timeout: Duration,
    /// First delay after a failed request; doubles up to `retry_backoff_max`.
    pub retry_backoff: Duration,
    /// Ceiling of the retry delay.
    pub retry_backoff_max: Duration,
    /// How often the leader re-reads partition counts to notice new partitions or topics.
    pub metadata_refresh: Duration,
    /// `client.rack`, sent in the subscription (v3) for a rack-aware leader on another client. Our
    /// own assignors ignore racks (see docs/rebalancing.md).
    pub rack_id: Option<String>,
    /// Which group protocol the member speaks.
    pub protocol: GroupProtocol,
    /// KIP-848 only: the broker-side assignor to ask for (`uniform`, `range`); `None`: the broker's
    /// default (the first of `group.consumer.assignors`).
    pub remote_assignor: Option<String>,
}

/// `group.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat, the assignment computed by a member ([`Membership`]).
    #[default]
    Classic,
    /// KIP-848's ConsumerGroupHeartbeat, the assignment computed by the broker
    /// ([`crate::kip848::Kip848`]).
    Consumer,
}

impl Config {
    /// Kafka's defaults for `group_id` subscribing to `topics` with `range`.
    pub fn new(group_id: impl Into<String>, topics: Vec<String>) -> Self {
        Self {
            group_id: group_id.into(),
            topics,
            assignors: vec![Assignor::Range],
            session_timeout: Duration::from_secs(45),
            rebalance_timeout: Duration::from_secs(300),
            heartbeat_interval: Duration::from_secs(3),
            instance_id: None,
            auto_commit_interval: Some(Duration::from_secs(5)),
            request_timeout: Duration::from_secs(30),
            retry_backoff: Duration::from_millis(100),
            retry_backoff_max: Duration::from_secs(5),
            metadata_refresh: Duration::from_secs(30),
            rack_id: None,
            protocol: GroupProtocol::Classic,
            remote_assignor: None,
        }
    }

    /// Refuses timings under which a healthy member would be evicted.
    pub fn validate(&self) -> Result<(), ConfigError> {
        if self.request_timeout > self.session_timeout {
            return Err(ConfigError::RequestTimeout {
                request: self.request_timeout,
                session: self.session_timeout,
            });
        }
        if self.heartbeat_interval.saturating_mul(3) >= self.session_timeout {
            return Err(ConfigError::HeartbeatInterval {
                heartbeat: self.heartbeat_interval,
                session: self.session_timeout,
            });
        }
        Ok(())
    }
}

/// Settings that cannot work together.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// A heartbeat that may wait this long for its answer outlives the session.
    #[error("request_timeout ({request:?}) must not be longer than session_timeout ({session:?}): a heartbeat waiting that long for its answer loses the session")]
    RequestTimeout {
        /// `request_timeout`.
        request: Duration,
        /// `session_timeout`.
        session: Duration,
    },
    /// Fewer than three heartbeats fit in a session, so one slow or lost one evicts the member.
    #[error("heartbeat_interval ({heartbeat:?}) must be below a third of session_timeout ({session:?}), so a lost heartbeat is retried before the session ends")]
    HeartbeatInterval {
        /// `heartbeat_interval`.
        heartbeat: Duration,
        /// `session_timeout`.
        session: Duration,
    },
}

/// The group coordinator's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Coordinator {
    /// Broker id.
    pub node_id: i32,
    /// Host name.
    pub host: String,
    /// Port.
    pub port: i32,
}

impl Coordinator {
    /// `host:port`.
    pub fn addr(&self) -> String {
        format!("{}:{}", self.host, self.port)
    }
}

/// Where a request goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Target {
    /// Any bootstrap broker (FindCoordinator).
    AnyBroker,
    /// The group coordinator.
    Coordinator(Coordinator),
}

/// The two independent request slots of a member: at most one request in flight on each.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Lane {
    /// Everything but heartbeats, one at a time (FindCoordinator, JoinGroup, commits …).
    Main,
    /// Heartbeats, on their own connection to the coordinator.
    Heartbeat,
}

/// What the driver should do next.
#[derive(Debug, Clone, PartialEq)]
// `Send` is the common case and is consumed at once; boxing it would only add an allocation.
#[allow(clippy::large_enum_variant)]
pub enum Action {
    /// Send `request` to `target`, give up after `timeout`, and report the outcome.
    Send {
        /// Which connection carries it: heartbeats have their own, so they never wait behind
        /// another request (a broker answers one request per connection at a time).
        lane: Lane,
        /// Where to send it.
        target: Target,
        /// What to send.
        request: Request,
        /// JoinGroup and SyncGroup are held by the broker for up to the rebalance timeout.
        timeout: Duration,
    },
    /// Nothing to send until this instant (or until the application calls in).
    Wait(Instant),
    /// The member has left the group or failed: stop.
    Done,
}

/// Something the application must know or act on.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// JoinGroup succeeded.
    Joined {
        /// The new generation.
        generation: i32,
        /// Our member id.
        member_id: String,
        /// Whether we compute the assignment.
        leader: bool,
        /// The assignor the group chose.
        protocol: String,
        /// How many members joined (known to the leader only; 0 otherwise).
        members: usize,
    },
    /// New partitions to consume, each with its committed offset (`None`: no commit, use the reset
    /// policy). Eager protocol: everything (all was revoked before the rebalance); cooperative: only
    /// what this generation added, the rest is consumed on without a pause.
    Assigned {
        /// The generation the assignment belongs to.
        generation: i32,
        /// The partitions to start consuming, with committed offsets.
        partitions: Vec<(TopicPartition, Option<i64>)>,
        /// Everything owned from now on (the added partitions and those kept).
        owned: Vec<TopicPartition>,
    },
    /// Stop consuming these partitions, then call [`Membership::revoke_done`]. Before that, report the
    /// final positions with [`Membership::set_position`] (they are committed unless `lost`).
    Revoke {
        /// The partitions to give up: all of them under the eager protocol (and when lost), only
        /// those the new assignment moves elsewhere under the cooperative one.
        partitions: Vec<TopicPartition>,
        /// Lost to ILLEGAL_GENERATION/UNKNOWN_MEMBER_ID or an expired session: do not commit, someone
        /// else may own them already.
        lost: bool,
        /// Why, for the log.
        reason: String,
    },
    /// Offsets the broker accepted.
    Committed {
        /// Partition and committed offset.
        offsets: Vec<(TopicPartition, i64)>,
    },
    /// A commit failed; the positions stay pending and are retried.
    CommitFailed {
        /// Why.
        reason: String,
    },
    /// The coordinator is (now) this broker, or unknown.
    CoordinatorChanged(Option<Coordinator>),
    /// The member cannot continue; a person must act.
    Fatal(FatalError),
    /// LeaveGroup done (or skipped for a static member): the member is out of the group.
    Left,
}

/// An error that retrying cannot fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{request} failed with {error:?}: {hint}")]
pub struct FatalError {
    /// The request that failed.
    pub request: &'static str,
    /// The broker's error.
    pub error: ResponseError,
    /// What to do about it.
    pub hint: String,
}

/// Coarse state, for readiness and metrics.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum State {
    /// Looking for the coordinator, joining or syncing.
    Rebalancing,
    /// In a stable group with an assignment (possibly empty).
    Stable,
    /// Giving up partitions, waiting for the application.
    Revoking,
    /// Leaving the group.
    Leaving,
    /// Left or failed.
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Then {
    Rejoin,
    Leave,
}

#[derive(Debug, Clone)]
enum Phase {
    Joining,
    /// Leader: the members are known, the partition counts are being read.
    Assigning {
        members: Vec<Member>,
    },
    Syncing {
        assignments: Vec<SyncGroupRequestAssignment>,
    },
    FetchingOffsets {
        partitions: Vec<TopicPartition>,
    },
    Stable,
    Revoking {
        then: Then,
        lost: bool,
        deadline: Instant,
    },
    CommittingRevoked {
        then: Then,
    },
    Leaving,
    Done,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CommitPurpose {
    Periodic,
    Revoke,
}

#[derive(Debug, Clone)]
enum Pending {
    FindCoordinator,
    Join,
    Metadata {
        refresh: bool,
    },
    Sync,
    OffsetFetch,
    Commit {
        purpose: CommitPurpose,
        offsets: Vec<(TopicPartition, i64)>,
    },
    Leave,
}

/// One group member's membership.
#[derive(Debug)]
pub struct Membership {
    /// Settings.
    config: Config,
    /// Where in the protocol we are.
    phase: Phase,
    /// The main lane's request in flight, if any; at most one.
    pending: Option<Pending>,
    /// A heartbeat is in flight on its own lane.
    heartbeat_in_flight: bool,
    /// Leader: every topic the members subscribe to, for the metadata refresh.
    group_topics: BTreeSet<String>,
    /// The group coordinator, once found.
    coordinator: Option<Coordinator>,
    /// Our member id; empty before the first join and after UNKNOWN_MEMBER_ID.
    member_id: String,
    /// Current generation; -1 before the first join.
    generation: i32,
    /// The assignor the group chose.
    protocol: Option<String>,
    /// Whether we led the last join.
    leader: bool,
    /// Partitions we own now (the application consumes them).
    assigned: Vec<TopicPartition>,
    /// The partitions of the revoke in progress.
    revoking: Vec<TopicPartition>,
    /// Leader: partition counts the current assignment was computed from; `None` when the broker let
    /// a rejoining static leader keep the old assignment (KIP-814), so they are not known yet.
    assigned_counts: Option<BTreeMap<String, i32>>,
    /// Next offset to consume per partition, as processed by the application.
    positions: BTreeMap<TopicPartition, i64>,
    /// Last offset the broker accepted per partition.
    committed: BTreeMap<TopicPartition, i64>,
    /// Do not send before this (backoff after a failure).
    retry_at: Option<Instant>,
    /// Consecutive failures, for the backoff and for giving up on a final commit or leave.
    failures: u32,
    /// When the next heartbeat is due.
    next_heartbeat: Instant,
    /// When the last heartbeat (or the sync that started the session) succeeded.
    last_heartbeat_ok: Instant,
    /// When the heartbeat in flight was sent.
    heartbeat_sent: Instant,
    /// When the next periodic commit is due.
    next_commit: Instant,
    /// When the leader next re-reads partition counts.
    next_metadata: Instant,
    /// Why we (re)join, sent as the JoinGroup reason (KIP-800) and logged.
    rejoin_reason: String,
    /// The application asked to leave.
    leave_requested: bool,
    /// Events not yet taken by the application.
    events: VecDeque<Event>,
}

impl Membership {
    /// A member that has not joined yet.
    pub fn new(config: Config, now: Instant) -> Self {
        Self {
            config,
            phase: Phase::Joining,
            pending: None,
            heartbeat_in_flight: false,
            group_topics: BTreeSet::new(),
            coordinator: None,
            member_id: String::new(),
            generation: -1,
            protocol: None,
            leader: false,
            assigned: Vec::new(),
            revoking: Vec::new(),
            assigned_counts: None,
            positions: BTreeMap::new(),
            committed: BTreeMap::new(),
            retry_at: None,
            failures: 0,
            next_heartbeat: now,
            last_heartbeat_ok: now,
            heartbeat_sent: now,
            next_commit: now,
            next_metadata: now,
            rejoin_reason: "starting".into(),
            leave_requested: false,
            events: VecDeque::new(),
        }
    }

    /// The next event for the application, if any.
    pub fn next_event(&mut self) -> Option<Event> {
        self.events.pop_front()
    }

    /// Coarse state.
    pub fn state(&self) -> State {
        match self.phase {
            Phase::Stable => State::Stable,
            Phase::Revoking { .. } | Phase::CommittingRevoked { .. } => State::Revoking,
            Phase::Leaving => State::Leaving,
            Phase::Done => State::Done,
            _ => State::Rebalancing,
        }
    }

    /// Partitions owned now.
    pub fn assignment(&self) -> &[TopicPartition] {
        &self.assigned
    }

    /// Our member id (empty before joining).
    pub fn member_id(&self) -> &str {
        &self.member_id
    }

    /// Current generation (-1 before joining).
    pub fn generation(&self) -> i32 {
        self.generation
    }

    /// The application processed `partition` up to (not including) `next_offset`. Ignored for a
    /// partition we do not own: a late report must not be committed for someone else's partition.
    pub fn set_position(&mut self, partition: &TopicPartition, next_offset: i64) {
        if self.assigned.contains(partition) {
            self.positions.insert(partition.clone(), next_offset);
        }
    }

    /// The application stopped consuming the partitions of the last [`Event::Revoke`].
    pub fn revoke_done(&mut self) {
        if let Phase::Revoking { then, lost, .. } = self.phase {
            if lost {
                self.after_revoke(then);
            } else {
                self.phase = Phase::CommittingRevoked { then };
                self.failures = 0;
            }
        }
    }

    /// Leave the group: revoke (commit), then LeaveGroup.
    pub fn leave(&mut self) {
        self.leave_requested = true;
    }

    /// What to do at `now`. Call it again after every outcome and event. With a request in flight on
    /// one lane it may still return one for the other: a due heartbeat never waits behind a commit.
    pub fn poll(&mut self, now: Instant) -> Action {
        if matches!(self.phase, Phase::Done) {
            return Action::Done;
        }
        if self.pending.is_none()
            && self.leave_requested
            && !matches!(
                self.phase,
                Phase::Revoking { .. } | Phase::CommittingRevoked { .. } | Phase::Leaving
            )
        {
            // Abandon any join in progress: the partitions we own (if stable) are committed first.
            self.retry_at = None;
            self.start_revoke(now, "shutting down", Then::Leave, false);
        }
        if self.heartbeating() {
            // Checked before anything else: while the coordinator is unreachable we cannot heartbeat,
            // and once the session is over the coordinator has evicted us, whatever we are retrying.
            let session_end = self.last_heartbeat_ok + self.config.session_timeout;
            if now >= session_end {
                let reason = "no successful heartbeat within the session timeout";
                match &mut self.phase {
                    // Someone else may own them now: the revoke goes on, without its commit.
                    Phase::Revoking { lost, .. } => *lost = true,
                    Phase::CommittingRevoked { then } => {
                        let then = *then;
                        self.after_revoke(then);
                    }
                    _ => self.lose(now, reason),
                }
                self.last_heartbeat_ok = now;
                return self.poll(now);
            }
            if !self.heartbeat_in_flight && now >= self.next_heartbeat {
                if let Some(coordinator) = self.coordinator.clone() {
                    self.heartbeat_in_flight = true;
                    self.heartbeat_sent = now;
                    return Action::Send {
                        lane: Lane::Heartbeat,
                        target: Target::Coordinator(coordinator),
                        request: self.heartbeat_request(),
                        timeout: self.config.request_timeout,
                    };
                }
            }
        }
        let heartbeat_wake = self.heartbeat_wake(now);
        if self.pending.is_some() {
            // The driver reports every outcome; until then only a heartbeat can be due.
            return Action::Wait(heartbeat_wake.unwrap_or(now + self.config.request_timeout));
        }
        let wait = |at: Instant| Action::Wait(heartbeat_wake.map_or(at, |hb| hb.min(at)));
        if let Phase::Revoking { then, deadline, .. } = self.phase {
            // Waiting for the application, not the broker: backoff does not apply; heartbeats go on.
            if now < deadline {
                return wait(deadline);
            }
            // The application never confirmed: treat as lost, so nothing half-processed is committed.
            self.after_revoke(then);
        }
        if let Some(at) = self.retry_at {
            if now < at {
                return wait(at);
            }
            self.retry_at = None;
        }
        if matches!(self.phase, Phase::Leaving)
            && (self.member_id.is_empty() || self.config.instance_id.is_some())
        {
            // A static member does not send LeaveGroup: its partitions wait for it for a session
            // timeout, so a restart does not rebalance the group (KIP-345).
            return self.finish_leave();
        }
        let Some(coordinator) = self.coordinator.clone() else {
            return self.send(
                Pending::FindCoordinator,
                Target::AnyBroker,
                self.find_coordinator_request(),
            );
        };
        let target = Target::Coordinator(coordinator);
        match self.phase.clone() {
            Phase::Joining => self.send(Pending::Join, target, self.join_request()),
            Phase::Assigning { members } => {
                let topics = self.group_topics(&members);
                self.send(
                    Pending::Metadata { refresh: false },
                    target,
                    metadata_request(topics),
                )
            }
            Phase::Syncing { assignments } => {
                let request = self.sync_request(assignments);
                self.send(Pending::Sync, target, request)
            }
            Phase::FetchingOffsets { partitions } => self.send(
                Pending::OffsetFetch,
                target,
                self.offset_fetch_request(&partitions),
            ),
            Phase::Stable => match self.poll_stable(now, target) {
                Action::Wait(at) => wait(at),
                other => other,
            },
            Phase::CommittingRevoked { then } => {
                let offsets = self.dirty_positions();
                if offsets.is_empty() {
                    self.after_revoke(then);
                    return self.poll(now);
                }
                let request = self.commit_request(&offsets);
                self.send(
                    Pending::Commit {
                        purpose: CommitPurpose::Revoke,
                        offsets,
                    },
                    target,
                    request,
                )
            }
            Phase::Leaving => self.send(Pending::Leave, target, self.leave_request()),
            Phase::Revoking { .. } | Phase::Done => Action::Done,
        }
    }

    /// Whether the phase keeps the session alive with heartbeats: from SyncGroup until JoinGroup is
    /// sent again, as Java's heartbeat thread does, so a revoke the application takes its time over
    /// (up to the rebalance timeout) does not cost the member its session.
    fn heartbeating(&self) -> bool {
        matches!(
            self.phase,
            Phase::Stable
                | Phase::FetchingOffsets { .. }
                | Phase::Revoking { .. }
                | Phase::CommittingRevoked { .. }
        )
    }

    /// When the heartbeat lane next needs a poll (the next heartbeat, or the session's end).
    fn heartbeat_wake(&self, now: Instant) -> Option<Instant> {
        if !self.heartbeating() {
            return None;
        }
        let session_end = self.last_heartbeat_ok + self.config.session_timeout;
        if self.heartbeat_in_flight || self.coordinator.is_none() {
            return Some(session_end);
        }
        Some(self.next_heartbeat.max(now).min(session_end))
    }

    fn poll_stable(&mut self, now: Instant, target: Target) -> Action {
        let session_end = self.last_heartbeat_ok + self.config.session_timeout;
        let mut wake = session_end;
        if let Some(interval) = self.config.auto_commit_interval {
            if now >= self.next_commit {
                let offsets = self.dirty_positions();
                if !offsets.is_empty() {
                    let request = self.commit_request(&offsets);
                    return self.send(
                        Pending::Commit {
                            purpose: CommitPurpose::Periodic,
                            offsets,
                        },
                        target,
                        request,
                    );
                }
                self.next_commit = now + interval;
            }
            wake = wake.min(self.next_commit);
        }
        if self.leader {
            if now >= self.next_metadata {
                let topics = self.group_topics.clone();
                return self.send(
                    Pending::Metadata { refresh: true },
                    target,
                    metadata_request(topics),
                );
            }
            wake = wake.min(self.next_metadata);
        }
        Action::Wait(wake)
    }

    /// Every topic some member subscribes to (and ours): the leader assigns them all, as Java's does.
    fn group_topics(&self, members: &[Member]) -> BTreeSet<String> {
        members
            .iter()
            .flat_map(|m| m.subscription.topics.iter().cloned())
            .chain(self.config.topics.iter().cloned())
            .collect()
    }

    fn send(&mut self, pending: Pending, target: Target, request: Request) -> Action {
        let held = matches!(pending, Pending::Join | Pending::Sync);
        self.pending = Some(pending);
        Action::Send {
            lane: Lane::Main,
            target,
            request,
            // The broker holds JoinGroup (and SyncGroup, until the leader syncs) for up to the
            // rebalance timeout; a shorter client timeout would abandon a join that was about to succeed.
            timeout: if held {
                self.config.rebalance_timeout + Duration::from_secs(5)
            } else {
                self.config.request_timeout
            },
        }
    }

    /// The request in flight failed without an answer (connection lost, timeout, undecodable reply).
    /// The connection to its target must be dropped by the driver.
    pub fn on_failure(&mut self, now: Instant, reason: &str) {
        let Some(pending) = self.pending.take() else {
            return;
        };
        if !matches!(pending, Pending::FindCoordinator) {
            self.set_coordinator(None);
        }
        self.backoff(now);
        match pending {
            Pending::Metadata { refresh: false } | Pending::Sync => {
                // The generation is unusable without an assignment: join again.
                self.rejoin(format!("{} failed: {reason}", pending_name(&pending)));
            }
            Pending::Metadata { refresh: true } => {
                self.next_metadata = now + self.config.metadata_refresh
            }
            Pending::Commit { purpose, .. } => {
                self.events.push_back(Event::CommitFailed {
                    reason: reason.to_string(),
                });
                if purpose == CommitPurpose::Revoke && self.failures >= 3 {
                    self.abandon_revoke_commit();
                }
            }
            Pending::Leave if self.failures >= 3 => {
                self.finish_leave();
            }
            _ => {}
        }
    }

    /// The driver dropped the request in flight on purpose (shutdown during a held JoinGroup): no
    /// failure, no backoff, the coordinator stays known.
    pub fn abandon(&mut self) {
        if let Some(Pending::Join | Pending::Sync | Pending::Metadata { refresh: false }) =
            self.pending.take()
        {
            self.rejoin("abandoned a join to shut down".into());
        }
    }

    /// The heartbeat in flight failed without an answer; the driver drops the heartbeat connection.
    /// Retried after the retry backoff; the session timeout decides when the member is lost.
    pub fn on_heartbeat_failure(&mut self, now: Instant) {
        if !std::mem::take(&mut self.heartbeat_in_flight) {
            return;
        }
        self.set_coordinator(None);
        self.next_heartbeat = now + self.config.retry_backoff;
    }

    /// The answer to a request in flight (a heartbeat's goes to the heartbeat lane).
    pub fn on_response(&mut self, now: Instant, response: Response) {
        if let Response::Heartbeat(r) = &response {
            if self.heartbeat_in_flight {
                self.heartbeat_in_flight = false;
                return self.on_heartbeat(now, r.error_code);
            }
        }
        let Some(pending) = self.pending.take() else {
            return;
        };
        match (pending, response) {
            (Pending::FindCoordinator, Response::FindCoordinator(r)) => {
                self.on_find_coordinator(now, r)
            }
            (Pending::Join, Response::JoinGroup(r)) => self.on_join(now, r),
            (Pending::Metadata { refresh }, Response::Metadata(r)) => {
                self.on_metadata(now, refresh, r)
            }
            (Pending::Sync, Response::SyncGroup(r)) => self.on_sync(now, r),
            (Pending::OffsetFetch, Response::OffsetFetch(r)) => self.on_offset_fetch(now, r),
            (Pending::Commit { purpose, offsets }, Response::OffsetCommit(r)) => {
                self.on_commit(now, purpose, offsets, r)
            }
            (Pending::Leave, Response::LeaveGroup(r)) => {
                // Whatever the answer (UNKNOWN_MEMBER_ID: already gone), we are out.
                let _ = r;
                self.finish_leave();
            }
            (pending, other) => {
                self.pending = Some(pending);
                self.on_failure(now, &format!("unexpected response {other:?}"));
            }
        }
    }

    fn on_find_coordinator(&mut self, now: Instant, r: FindCoordinatorResponse) {
        // v4+ answers per key in `coordinators`; older versions at the top level.
        let (error_code, node_id, host, port) = match r.coordinators.first() {
            Some(c) => (c.error_code, c.node_id.0, c.host.to_string(), c.port),
            None => (r.error_code, r.node_id.0, r.host.to_string(), r.port),
        };
        match ResponseError::try_from_code(error_code) {
            // Failures are not reset here: a coordinator that is named but dead (KRaft fences it only
            // after its session, ~9 s) must be retried with a growing backoff, not every 100 ms.
            None if node_id >= 0 && !host.is_empty() => {
                self.set_coordinator(Some(Coordinator {
                    node_id,
                    host,
                    port,
                }));
            }
            None => self.backoff(now),
            Some(ResponseError::GroupAuthorizationFailed) => {
                self.fatal("FindCoordinator", ResponseError::GroupAuthorizationFailed)
            }
            Some(e @ (ResponseError::InvalidRequest | ResponseError::InvalidGroupId)) => {
                self.fatal("FindCoordinator", e)
            }
            // COORDINATOR_NOT_AVAILABLE (the offsets topic is being created), a broker starting …
            Some(_) => self.backoff(now),
        }
    }

    fn on_join(&mut self, now: Instant, r: JoinGroupResponse) {
        match ResponseError::try_from_code(r.error_code) {
            None => {}
            Some(ResponseError::MemberIdRequired) => {
                // KIP-394: the broker hands out our id; rejoin with it at once.
                self.member_id = r.member_id.to_string();
                self.rejoin_reason = "rejoining with the member id the broker assigned".into();
                return;
            }
            Some(e) => return self.on_group_error(now, "JoinGroup", e),
        }
        self.failures = 0;
        self.generation = r.generation_id;
        self.member_id = r.member_id.to_string();
        self.leader = r.leader == r.member_id;
        let protocol = r
            .protocol_name
            .as_ref()
            .map(|p| p.to_string())
            .unwrap_or_default();
        self.protocol = Some(protocol.clone());
        let members: Vec<Member> = r
            .members
            .iter()
            .map(|m| Member {
                member_id: m.member_id.to_string(),
                instance_id: m.group_instance_id.as_ref().map(|i| i.to_string()),
                // An undecodable subscription gets nothing rather than failing the whole group;
                // said loudly, since that member will sit idle.
                subscription: codec::decode_subscription(&m.metadata).unwrap_or_else(|err| {
                    tracing::warn!(member_id = %m.member_id, %err, "cannot read a member's subscription; it gets no partitions");
                    Subscription::default()
                }),
            })
            .collect();
        self.events.push_back(Event::Joined {
            generation: self.generation,
            member_id: self.member_id.clone(),
            leader: self.leader,
            protocol: protocol.clone(),
            members: members.len(),
        });
        if Assignor::from_name(&protocol).is_none_or(|a| !self.config.assignors.contains(&a)) {
            return self.fatal("JoinGroup", ResponseError::InconsistentGroupProtocol);
        }
        if r.skip_assignment {
            // The broker kept the old assignment and did not say who subscribes to what.
            self.group_topics = self.config.topics.iter().cloned().collect();
            self.assigned_counts = None;
        }
        self.phase = if self.leader && !r.skip_assignment {
            Phase::Assigning { members }
        } else {
            // A follower (or a static leader told to keep the old assignment, KIP-814) syncs with none.
            Phase::Syncing {
                assignments: Vec::new(),
            }
        };
    }

    fn on_metadata(&mut self, now: Instant, refresh: bool, r: MetadataResponse) {
        let counts: BTreeMap<String, i32> = r
            .topics
            .iter()
            .filter(|t| t.error_code == 0)
            .filter_map(|t| Some((t.name.as_ref()?.0.to_string(), t.partitions.len() as i32)))
            .filter(|(_, n)| *n > 0)
            .collect();
        if refresh {
            self.next_metadata = now + self.config.metadata_refresh;
            // Every member's topics, not only ours: a partition added to a topic only another
            // member reads must reach it too.
            let ours: BTreeMap<String, i32> = counts
                .into_iter()
                .filter(|(t, _)| self.group_topics.contains(t))
                .collect();
            match &self.assigned_counts {
                // We kept an assignment computed earlier: learn the counts, nothing changed.
                None => self.assigned_counts = Some(ours),
                Some(before) if *before != ours && matches!(self.phase, Phase::Stable) => {
                    let reason = format!("partition counts changed from {before:?} to {ours:?}");
                    self.rebalance(now, &reason);
                }
                Some(_) => {}
            }
            return;
        }
        let Phase::Assigning { members } = &self.phase else {
            return;
        };
        let assignor = self
            .protocol
            .as_deref()
            .and_then(Assignor::from_name)
            .unwrap_or(Assignor::Range);
        let assignment = assignor.assign(members, &counts);
        self.group_topics = self.group_topics(members);
        self.assigned_counts = Some(
            counts
                .into_iter()
                .filter(|(t, _)| self.group_topics.contains(t))
                .collect(),
        );
        self.next_metadata = now + self.config.metadata_refresh;
        let assignments = assignment
            .iter()
            .map(|(member, parts)| {
                SyncGroupRequestAssignment::default()
                    .with_member_id(StrBytes::from_string(member.clone()))
                    .with_assignment(codec::encode_assignment(parts))
            })
            .collect();
        self.phase = Phase::Syncing { assignments };
    }

    fn on_sync(&mut self, now: Instant, r: SyncGroupResponse) {
        if let Some(e) = ResponseError::try_from_code(r.error_code) {
            return self.on_group_error(now, "SyncGroup", e);
        }
        // v5+ names the group's protocol type and assignor; a mismatch means the assignment bytes
        // are not ours to read (Java fails with INCONSISTENT_GROUP_PROTOCOL too).
        let type_differs = r
            .protocol_type
            .as_ref()
            .is_some_and(|t| t.as_str() != "consumer");
        let name_differs = r
            .protocol_name
            .as_ref()
            .is_some_and(|n| Some(n.as_str()) != self.protocol.as_deref());
        if type_differs || name_differs {
            tracing::error!(
                protocol_type = ?r.protocol_type.as_ref().map(|t| t.as_str()),
                protocol_name = ?r.protocol_name.as_ref().map(|n| n.as_str()),
                joined_with = ?self.protocol,
                "SyncGroup answered for another protocol"
            );
            return self.fatal("SyncGroup", ResponseError::InconsistentGroupProtocol);
        }
        let partitions = match codec::decode_assignment(&r.assignment) {
            Ok(parts) => parts,
            Err(err) => {
                self.backoff(now);
                return self.rejoin(format!(
                    "the leader sent an assignment we cannot read: {err}"
                ));
            }
        };
        self.failures = 0;
        // Only what we subscribed to: a leader on another client may assign more.
        let partitions: Vec<TopicPartition> = partitions
            .into_iter()
            .filter(|tp| self.config.topics.contains(&tp.topic))
            .collect();
        self.last_heartbeat_ok = now;
        self.next_heartbeat = now + self.config.heartbeat_interval;
        // Eager: `assigned` is empty here (revoked before rejoining). Cooperative: it holds what we
        // kept consuming through the rebalance (KIP-429).
        let revoked: Vec<TopicPartition> = self
            .assigned
            .iter()
            .filter(|tp| !partitions.contains(tp))
            .cloned()
            .collect();
        if !revoked.is_empty() {
            // Give up only what moved, commit it, and rejoin at once: the new owner gets it in the
            // next generation. What we also gained comes back with that generation too.
            self.phase = Phase::Stable;
            self.start_revoke_of(
                now,
                revoked,
                "the new assignment moves them to another member",
                Then::Rejoin,
                false,
            );
            return;
        }
        let added: Vec<TopicPartition> = partitions
            .into_iter()
            .filter(|tp| !self.assigned.contains(tp))
            .collect();
        if added.is_empty() {
            self.enter_stable(now, Vec::new());
        } else {
            self.phase = Phase::FetchingOffsets { partitions: added };
        }
    }

    fn on_offset_fetch(&mut self, now: Instant, r: OffsetFetchResponse) {
        let Phase::FetchingOffsets { partitions } = self.phase.clone() else {
            return;
        };
        let partition_error = r
            .topics
            .iter()
            .flat_map(|t| t.partitions.iter())
            .find_map(|p| ResponseError::try_from_code(p.error_code));
        match ResponseError::try_from_code(r.error_code).or(partition_error) {
            None | Some(ResponseError::UnknownTopicOrPartition) => {}
            Some(
                e @ (ResponseError::GroupAuthorizationFailed
                | ResponseError::TopicAuthorizationFailed),
            ) => return self.fatal("OffsetFetch", e),
            Some(ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable) => {
                self.set_coordinator(None);
                return self.backoff(now);
            }
            // COORDINATOR_LOAD_IN_PROGRESS, UNSTABLE_OFFSET_COMMIT (a transaction is pending) …
            Some(_) => return self.backoff(now),
        }
        self.failures = 0;
        let mut found = BTreeMap::new();
        for t in &r.topics {
            for p in &t.partitions {
                if p.committed_offset >= 0 && p.error_code == 0 {
                    found.insert(
                        TopicPartition::new(t.name.0.as_str(), p.partition_index),
                        p.committed_offset,
                    );
                }
            }
        }
        let with_offsets = partitions
            .into_iter()
            .map(|tp| {
                let offset = found.get(&tp).copied();
                if let Some(o) = offset {
                    self.committed.insert(tp.clone(), o);
                }
                (tp, offset)
            })
            .collect();
        self.enter_stable(now, with_offsets);
    }

    fn enter_stable(&mut self, now: Instant, partitions: Vec<(TopicPartition, Option<i64>)>) {
        self.phase = Phase::Stable;
        self.assigned
            .extend(partitions.iter().map(|(tp, _)| tp.clone()));
        self.assigned.sort();
        if let Some(interval) = self.config.auto_commit_interval {
            self.next_commit = now + interval;
        }
        self.events.push_back(Event::Assigned {
            generation: self.generation,
            partitions,
            owned: self.assigned.clone(),
        });
    }

    fn on_heartbeat(&mut self, now: Instant, error_code: i16) {
        let error = ResponseError::try_from_code(error_code);
        if !self.heartbeating() {
            // A JoinGroup went out since: its answer decides, not this one.
            self.next_heartbeat = self.heartbeat_sent + self.config.heartbeat_interval;
            return;
        }
        let Some(e) = error else {
            if matches!(self.phase, Phase::Stable) {
                // The coordinator answers: the next failure starts the backoff from the beginning.
                self.failures = 0;
            }
            self.last_heartbeat_ok = now;
            self.next_heartbeat = self.heartbeat_sent + self.config.heartbeat_interval;
            return;
        };
        self.next_heartbeat = now + self.config.heartbeat_interval;
        let revoking = matches!(
            self.phase,
            Phase::Revoking { .. } | Phase::CommittingRevoked { .. }
        );
        match e {
            ResponseError::RebalanceInProgress => {
                // The coordinator renews the session on this answer too, until we rejoin.
                self.last_heartbeat_ok = now;
                match self.phase {
                    Phase::Stable => self.rebalance(now, "the group is rebalancing"),
                    Phase::FetchingOffsets { .. } => {
                        // Nothing of this generation consumed yet, so nothing to commit.
                        self.rejoin("the group is rebalancing".into());
                    }
                    // Already giving the partitions up to rejoin.
                    _ => {}
                }
            }
            ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => {
                self.set_coordinator(None);
                self.next_heartbeat = now + self.config.retry_backoff;
            }
            ResponseError::UnknownMemberId | ResponseError::IllegalGeneration if revoking => {
                // Out of the generation while the application still stops its partitions: finish the
                // revoke, but commit nothing, someone else may own them already.
                if e == ResponseError::UnknownMemberId {
                    self.member_id.clear();
                }
                if let Phase::Revoking { lost, .. } = &mut self.phase {
                    *lost = true;
                }
            }
            ResponseError::UnknownMemberId | ResponseError::IllegalGeneration => {
                self.on_group_error(now, "Heartbeat", e)
            }
            e if e.is_retriable() => {
                self.next_heartbeat = now + self.config.retry_backoff;
            }
            e => self.on_group_error(now, "Heartbeat", e),
        }
    }

    fn on_commit(
        &mut self,
        now: Instant,
        purpose: CommitPurpose,
        offsets: Vec<(TopicPartition, i64)>,
        r: OffsetCommitResponse,
    ) {
        let mut accepted = Vec::new();
        let mut error = None;
        for t in &r.topics {
            for p in &t.partitions {
                let tp = TopicPartition::new(t.name.0.as_str(), p.partition_index);
                match ResponseError::try_from_code(p.error_code) {
                    None => {
                        if let Some((_, offset)) = offsets.iter().find(|(o, _)| *o == tp) {
                            self.committed.insert(tp.clone(), *offset);
                            accepted.push((tp, *offset));
                        }
                    }
                    Some(e) => error = error.or(Some(e)),
                }
            }
        }
        if !accepted.is_empty() {
            self.events
                .push_back(Event::Committed { offsets: accepted });
        }
        if let Some(interval) = self.config.auto_commit_interval {
            self.next_commit = now + interval;
        }
        let Some(e) = error else {
            // A revoke's commit is finished by the next poll, which first commits any position
            // reported while this one was in flight.
            self.failures = 0;
            return;
        };
        self.events.push_back(Event::CommitFailed {
            reason: format!("{e:?}"),
        });
        match e {
            ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => {
                self.set_coordinator(None);
                self.retry_commit(now, purpose);
            }
            ResponseError::CoordinatorLoadInProgress | ResponseError::RequestTimedOut => {
                self.retry_commit(now, purpose)
            }
            // The heartbeat lane may have started the rebalance already.
            ResponseError::RebalanceInProgress if purpose == CommitPurpose::Periodic => {
                if matches!(self.phase, Phase::Stable) {
                    self.rebalance(now, "the group is rebalancing")
                }
            }
            ResponseError::IllegalGeneration | ResponseError::UnknownMemberId
                if purpose == CommitPurpose::Periodic
                    && matches!(self.phase, Phase::Stable | Phase::FetchingOffsets { .. }) =>
            {
                self.on_group_error(now, "OffsetCommit", e)
            }
            ResponseError::IllegalGeneration
            | ResponseError::UnknownMemberId
            | ResponseError::RebalanceInProgress => {
                // The final commit of a revoke is refused: the partitions moved on without it.
                if e == ResponseError::UnknownMemberId {
                    self.member_id.clear();
                }
                self.abandon_revoke_commit();
            }
            ResponseError::FencedInstanceId | ResponseError::GroupAuthorizationFailed => {
                self.fatal("OffsetCommit", e)
            }
            _ if purpose == CommitPurpose::Revoke => self.abandon_revoke_commit(),
            // OFFSET_METADATA_TOO_LARGE, TOPIC_AUTHORIZATION_FAILED …: reported, retried next interval.
            _ => {}
        }
    }

    fn retry_commit(&mut self, now: Instant, purpose: CommitPurpose) {
        self.backoff(now);
        if purpose == CommitPurpose::Revoke && self.failures >= 3 {
            self.abandon_revoke_commit();
        } else {
            self.next_commit = now;
        }
    }

    /// The final commit of a revoke is hopeless: finish the revoke without it.
    fn abandon_revoke_commit(&mut self) {
        if let Phase::CommittingRevoked { then } = self.phase {
            self.after_revoke(then);
        }
    }

    /// JoinGroup, SyncGroup and Heartbeat share their error handling (and OffsetCommit its member
    /// errors): DESIGN.md's table, in code.
    fn on_group_error(&mut self, now: Instant, request: &'static str, e: ResponseError) {
        match e {
            ResponseError::UnknownMemberId => {
                self.member_id.clear();
                self.lose(
                    now,
                    &format!("{request}: the coordinator no longer knows our member id"),
                );
                self.backoff(now);
            }
            ResponseError::IllegalGeneration => {
                self.lose(
                    now,
                    &format!("{request}: generation {} is stale", self.generation),
                );
            }
            ResponseError::RebalanceInProgress => {
                // Only JoinGroup/SyncGroup get here: nothing consumed in this generation yet.
                self.rejoin(format!("{request}: the group is rebalancing"));
            }
            ResponseError::NotCoordinator | ResponseError::CoordinatorNotAvailable => {
                self.set_coordinator(None);
                self.backoff(now);
                if !matches!(self.phase, Phase::Stable | Phase::FetchingOffsets { .. }) {
                    // A join or sync must start over at the new coordinator; a heartbeat just retries there.
                    // Apache Kafka answers COORDINATOR_NOT_AVAILABLE while it creates or loads
                    // __consumer_offsets (a new cluster's first group): not a move.
                    let why = if e == ResponseError::NotCoordinator {
                        "the coordinator moved"
                    } else {
                        "the coordinator is not available yet"
                    };
                    self.rejoin(format!("{request}: {why}"));
                }
            }
            ResponseError::CoordinatorLoadInProgress => {
                self.backoff(now);
                if matches!(self.phase, Phase::Syncing { .. } | Phase::Assigning { .. }) {
                    self.rejoin(format!("{request}: the coordinator is loading"));
                }
            }
            ResponseError::FencedInstanceId
            | ResponseError::InconsistentGroupProtocol
            | ResponseError::GroupAuthorizationFailed
            | ResponseError::InvalidSessionTimeout
            | ResponseError::InvalidGroupId
            | ResponseError::GroupMaxSizeReached
            | ResponseError::UnsupportedVersion => self.fatal(request, e),
            e if e.is_retriable() => self.backoff(now),
            e => self.fatal(request, e),
        }
    }

    fn fatal(&mut self, request: &'static str, error: ResponseError) {
        let hint = match error {
            ResponseError::FencedInstanceId => "another consumer uses the same GROUP_INSTANCE_ID; give each pod its own",
            ResponseError::InconsistentGroupProtocol => {
                "the group's members share no assignor; list one they all support in ASSIGNMENT_STRATEGY (range is everyone's)"
            }
            ResponseError::GroupAuthorizationFailed => "this client may not use the group: grant READ on it",
            ResponseError::TopicAuthorizationFailed => "this client may not read the topic: grant READ on it",
            ResponseError::InvalidSessionTimeout => {
                "SESSION_TIMEOUT is outside the broker's group.min/max.session.timeout.ms"
            }
            ResponseError::GroupMaxSizeReached => "the group has group.max.size members already",
            _ => "the broker refused the request and retrying will not change that",
        };
        self.phase = Phase::Done;
        self.events.push_back(Event::Fatal(FatalError {
            request,
            error,
            hint: hint.to_string(),
        }));
    }

    /// Whether this member follows the cooperative protocol (KIP-429). As in Java, only when every
    /// assignor it lists is cooperative: a list that also names an eager one must be able to end up
    /// in an eager group, where everything is revoked before rejoining.
    fn cooperative(&self) -> bool {
        !self.config.assignors.is_empty()
            && self.config.assignors.iter().all(|a| a.is_cooperative())
    }

    /// The group rebalances and we are still in it: eager, revoke everything (committing) then
    /// rejoin; cooperative, rejoin at once, owning and consuming what we have.
    fn rebalance(&mut self, now: Instant, reason: &str) {
        if self.cooperative() {
            self.rejoin(reason.to_string());
        } else {
            self.start_revoke(now, reason, Then::Rejoin, false);
        }
    }

    /// Give up every partition (committing them unless `lost`), then rejoin or leave.
    fn start_revoke(&mut self, now: Instant, reason: &str, then: Then, lost: bool) {
        let all = self.assigned.clone();
        self.start_revoke_of(now, all, reason, then, lost);
    }

    /// Give up `partitions` (committing them unless `lost`), then rejoin or leave.
    fn start_revoke_of(
        &mut self,
        now: Instant,
        partitions: Vec<TopicPartition>,
        reason: &str,
        then: Then,
        lost: bool,
    ) {
        self.rejoin_reason = reason.to_string();
        self.revoking = partitions;
        if self.revoking.is_empty() {
            self.after_revoke(then);
            return;
        }
        self.events.push_back(Event::Revoke {
            partitions: self.revoking.clone(),
            lost,
            reason: reason.to_string(),
        });
        self.phase = Phase::Revoking {
            then,
            lost,
            deadline: now + self.config.rebalance_timeout,
        };
    }

    fn lose(&mut self, now: Instant, reason: &str) {
        // Cooperative members own partitions through a join too: those are lost as well.
        if !self.assigned.is_empty()
            && !matches!(
                self.phase,
                Phase::Revoking { .. }
                    | Phase::CommittingRevoked { .. }
                    | Phase::Leaving
                    | Phase::Done
            )
        {
            self.start_revoke(now, reason, Then::Rejoin, true);
        } else {
            self.rejoin(reason.to_string());
        }
    }

    fn after_revoke(&mut self, then: Then) {
        let revoked = std::mem::take(&mut self.revoking);
        self.assigned.retain(|tp| !revoked.contains(tp));
        self.positions.retain(|tp, _| !revoked.contains(tp));
        self.phase = match then {
            Then::Rejoin if !self.leave_requested => Phase::Joining,
            _ => Phase::Leaving,
        };
    }

    /// Join again. Eager members own nothing here (they revoked first); cooperative ones keep
    /// consuming what they own, which their JoinGroup names, until the new assignment says otherwise.
    fn rejoin(&mut self, reason: String) {
        self.rejoin_reason = reason;
        if !matches!(self.phase, Phase::Leaving | Phase::Done) {
            self.phase = Phase::Joining;
        }
    }

    fn finish_leave(&mut self) -> Action {
        self.phase = Phase::Done;
        self.events.push_back(Event::Left);
        Action::Done
    }

    fn backoff(&mut self, now: Instant) {
        let exp = self.failures.min(16);
        let delay = self
            .config
            .retry_backoff
            .saturating_mul(1 << exp)
            .min(self.config.retry_backoff_max);
        self.failures = self.failures.saturating_add(1);
        self.retry_at = Some(now + delay);
    }

    fn set_coordinator(&mut self, coordinator: Option<Coordinator>) {
        if self.coordinator != coordinator {
            self.coordinator = coordinator.clone();
            self.events
                .push_back(Event::CoordinatorChanged(coordinator));
        }
    }

    /// Positions of owned partitions that differ from what is committed.
    fn dirty_positions(&self) -> Vec<(TopicPartition, i64)> {
        self.positions
            .iter()
            .filter(|(tp, offset)| {
                self.assigned.contains(tp) && self.committed.get(*tp) != Some(offset)
            })
            .map(|(tp, offset)| (tp.clone(), *offset))
            .collect()
    }

    fn group_id(&self) -> GroupId {
        GroupId(StrBytes::from_string(self.config.group_id.clone()))
    }

    fn instance_id(&self) -> Option<StrBytes> {
        self.config.instance_id.clone().map(StrBytes::from_string)
    }

    fn find_coordinator_request(&self) -> Request {
        Request::FindCoordinator(
            FindCoordinatorRequest::default()
                .with_key(StrBytes::from_string(self.config.group_id.clone())),
        )
    }

    fn join_request(&self) -> Request {
        let subscription = codec::encode_subscription(&Subscription {
            topics: self.config.topics.clone(),
            user_data: None,
            owned_partitions: self.assigned.clone(),
            generation_id: self.generation,
            rack_id: self.config.rack_id.clone(),
        });
        Request::JoinGroup(
            JoinGroupRequest::default()
                .with_group_id(self.group_id())
                .with_session_timeout_ms(millis(self.config.session_timeout))
                .with_rebalance_timeout_ms(millis(self.config.rebalance_timeout))
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_group_instance_id(self.instance_id())
                .with_protocol_type(StrBytes::from_static_str("consumer"))
                .with_protocols(
                    self.config
                        .assignors
                        .iter()
                        .map(|a| {
                            JoinGroupRequestProtocol::default()
                                .with_name(StrBytes::from_static_str(a.name()))
                                .with_metadata(subscription.clone())
                        })
                        .collect(),
                )
                .with_reason(Some(StrBytes::from_string(self.rejoin_reason.clone()))),
        )
    }

    fn sync_request(&self, assignments: Vec<SyncGroupRequestAssignment>) -> Request {
        Request::SyncGroup(
            SyncGroupRequest::default()
                .with_group_id(self.group_id())
                .with_generation_id(self.generation)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_group_instance_id(self.instance_id())
                .with_protocol_type(Some(StrBytes::from_static_str("consumer")))
                .with_protocol_name(self.protocol.clone().map(StrBytes::from_string))
                .with_assignments(assignments),
        )
    }

    fn heartbeat_request(&self) -> Request {
        Request::Heartbeat(
            HeartbeatRequest::default()
                .with_group_id(self.group_id())
                .with_generation_id(self.generation)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_group_instance_id(self.instance_id()),
        )
    }

    fn offset_fetch_request(&self, partitions: &[TopicPartition]) -> Request {
        Request::OffsetFetch(
            OffsetFetchRequest::default()
                .with_group_id(self.group_id())
                .with_topics(Some(
                    by_topic(partitions.iter().map(|tp| (tp, ())))
                        .into_iter()
                        .map(|(topic, parts)| {
                            OffsetFetchRequestTopic::default()
                                .with_name(TopicName(StrBytes::from_string(topic)))
                                .with_partition_indexes(
                                    parts.into_iter().map(|(p, ())| p).collect(),
                                )
                        })
                        .collect(),
                ))
                .with_require_stable(true),
        )
    }

    fn commit_request(&self, offsets: &[(TopicPartition, i64)]) -> Request {
        Request::OffsetCommit(
            OffsetCommitRequest::default()
                .with_group_id(self.group_id())
                .with_generation_id_or_member_epoch(self.generation)
                .with_member_id(StrBytes::from_string(self.member_id.clone()))
                .with_group_instance_id(self.instance_id())
                .with_retention_time_ms(-1)
                .with_topics(
                    by_topic(offsets.iter().map(|(tp, o)| (tp, *o)))
                        .into_iter()
                        .map(|(topic, parts)| {
                            OffsetCommitRequestTopic::default()
                                .with_name(TopicName(StrBytes::from_string(topic)))
                                .with_partitions(
                                    parts
                                        .into_iter()
                                        .map(|(p, offset)| {
                                            OffsetCommitRequestPartition::default()
                                                .with_partition_index(p)
                                                .with_committed_offset(offset)
                                                .with_committed_leader_epoch(-1)
                                        })
                                        .collect(),
                                )
                        })
                        .collect(),
                ),
        )
    }

    fn leave_request(&self) -> Request {
        Request::LeaveGroup(
            LeaveGroupRequest::default()
                .with_group_id(self.group_id())
                .with_members(vec![MemberIdentity::default()
                    .with_member_id(StrBytes::from_string(self.member_id.clone()))
                    .with_group_instance_id(self.instance_id())
                    .with_reason(Some(StrBytes::from_static_str(
                        "the consumer is shutting down",
                    )))]),
        )
    }
}

fn metadata_request(topics: BTreeSet<String>) -> Request {
    Request::Metadata(
        MetadataRequest::default()
            .with_topics(Some(
                topics
                    .into_iter()
                    .map(|t| {
                        MetadataRequestTopic::default()
                            .with_name(Some(TopicName(StrBytes::from_string(t))))
                    })
                    .collect(),
            ))
            .with_allow_auto_topic_creation(false),
    )
}

fn by_topic<'a, T>(
    items: impl Iterator<Item = (&'a TopicPartition, T)>,
) -> BTreeMap<String, Vec<(i32, T)>> {
    let mut out: BTreeMap<String, Vec<(i32, T)>> = BTreeMap::new();
    for (tp, value) in items {
        out.entry(tp.topic.clone())
            .or_default()
            .push((tp.partition, value));
    }
    out
}

fn pending_name(pending: &Pending) -> &'static str {
    match pending {
        Pending::FindCoordinator => "FindCoordinator",
        Pending::Join => "JoinGroup",
        Pending::Metadata { .. } => "Metadata",
        Pending::Sync => "SyncGroup",
        Pending::OffsetFetch => "OffsetFetch",
        Pending::Commit { .. } => "OffsetCommit",
        Pending::Leave => "LeaveGroup",
    }
}

fn millis(d: Duration) -> i32 {
    i32::try_from(d.as_millis()).unwrap_or(i32::MAX)
}

#[cfg(test)]
#[path = "membership_tests.rs"]
mod tests;
