//! The KIP-848 member driven through every error and through interleavings of revocation and new
//! assignment, with synthetic responses and time.

use super::*;
use kafka_protocol::messages::{
    consumer_group_heartbeat_response::TopicPartitions as AssignedTopic,
    find_coordinator_response::Coordinator as CoordinatorEntry,
    metadata_response::MetadataResponseTopic,
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response::{
        OffsetFetchResponseGroup, OffsetFetchResponsePartitions, OffsetFetchResponseTopics,
    },
    BrokerId,
};

use crate::membership::GroupProtocol;

const TOPIC_ID: Uuid = Uuid::from_u128(0x1234_5678_9abc_def0_1234_5678_9abc_def0);

fn config() -> Config {
    let mut c = Config::new("g", vec!["t".into()]);
    c.protocol = GroupProtocol::Consumer;
    c.remote_assignor = Some("uniform".into());
    // Commits on revoke and leave only, so each test sees exactly the requests it drives.
    c.auto_commit_interval = None;
    c
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

struct Harness {
    m: Kip848,
    now: Instant,
}

impl Harness {
    fn new(config: Config) -> Self {
        let now = Instant::now();
        Self {
            m: Kip848::new(config, now),
            now,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    fn send(&mut self) -> (Lane, Request) {
        match self.m.poll(self.now) {
            Action::Send { lane, request, .. } => (lane, request),
            other => panic!(
                "expected a request, got {other:?}; events {:?}",
                self.events()
            ),
        }
    }

    fn wait(&mut self) -> Instant {
        match self.m.poll(self.now) {
            Action::Wait(at) => at,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    /// The events since the last call, but for coordinator changes.
    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.m.next_event())
            .filter(|e| !matches!(e, Event::CoordinatorChanged(_)))
            .collect()
    }

    fn respond(&mut self, r: Response) {
        self.m.on_response(self.now, r);
    }

    fn heartbeat(&mut self) -> ConsumerGroupHeartbeatRequest {
        match self.send() {
            (Lane::Heartbeat, Request::ConsumerGroupHeartbeat(r)) => r,
            other => panic!("expected a heartbeat, got {other:?}"),
        }
    }

    fn main(&mut self) -> Request {
        match self.send() {
            (Lane::Main, r) => r,
            other => panic!("expected a main-lane request, got {other:?}"),
        }
    }

    fn find_coordinator(&mut self) {
        assert!(matches!(self.main(), Request::FindCoordinator(_)));
        self.respond(Response::FindCoordinator(
            FindCoordinatorResponse::default().with_coordinators(vec![CoordinatorEntry::default()
                .with_node_id(BrokerId(1))
                .with_host(StrBytes::from_static_str("b1"))
                .with_port(9092)]),
        ));
    }

    fn metadata(&mut self) {
        assert!(matches!(self.main(), Request::Metadata(_)));
        self.respond(Response::Metadata(MetadataResponse::default().with_topics(
            vec![
            MetadataResponseTopic::default()
                .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                .with_topic_id(TOPIC_ID),
        ],
        )));
    }

    /// Coordinator found, topic ids known, joined at `epoch` with nothing assigned yet.
    fn joined(config: Config, epoch: i32) -> Self {
        let mut h = Self::new(config);
        h.find_coordinator();
        h.metadata();
        let join = h.heartbeat();
        assert_eq!(join.member_epoch, 0);
        h.respond(ok(epoch, None));
        h.events();
        h
    }

    /// Joined and owning `partitions` (offsets fetched, acknowledged).
    fn owning(partitions: &[i32]) -> Self {
        let mut h = Self::joined(config(), 1);
        h.advance(Duration::from_secs(5));
        let _ = h.heartbeat();
        h.respond(ok(2, Some(partitions)));
        h.offsets(partitions, 10);
        let events = h.events();
        assert!(
            events.iter().any(|e| matches!(e, Event::Assigned { .. })),
            "{events:?}"
        );
        let ack = h.heartbeat();
        assert_eq!(owned(&ack), Some(partitions.to_vec()));
        h.respond(ok(2, None));
        h
    }

    /// Answers the OffsetFetch the member sends for `partitions`, each committed at `offset`.
    fn offsets(&mut self, partitions: &[i32], offset: i64) {
        let Request::OffsetFetch(r) = self.main() else {
            panic!("expected OffsetFetch")
        };
        let group = &r.groups[0];
        assert_eq!(
            group.member_id.as_ref().map(|m| m.as_str()),
            Some(self.m.member_id())
        );
        assert_eq!(group.member_epoch, self.m.epoch());
        let asked: Vec<i32> = group.topics.as_ref().expect("topics")[0]
            .partition_indexes
            .clone();
        assert_eq!(asked, partitions);
        self.respond(Response::OffsetFetch(
            OffsetFetchResponse::default().with_groups(vec![OffsetFetchResponseGroup::default()
                .with_topics(vec![OffsetFetchResponseTopics::default()
                    .with_name(TopicName(StrBytes::from_static_str("t")))
                    .with_partitions(
                        partitions
                            .iter()
                            .map(|p| {
                                OffsetFetchResponsePartitions::default()
                                    .with_partition_index(*p)
                                    .with_committed_offset(offset)
                            })
                            .collect(),
                    )])]),
        ));
    }
}

fn ok(epoch: i32, assignment: Option<&[i32]>) -> Response {
    Response::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse::default()
            .with_member_epoch(epoch)
            .with_heartbeat_interval_ms(5000)
            .with_assignment(assignment.map(|ps| {
                Assignment::default().with_topic_partitions(vec![AssignedTopic::default()
                    .with_topic_id(TOPIC_ID)
                    .with_partitions(ps.to_vec())])
            })),
    )
}

fn error(e: ResponseError) -> Response {
    Response::ConsumerGroupHeartbeat(
        ConsumerGroupHeartbeatResponse::default().with_error_code(e.code()),
    )
}

fn commit_ok(r: &Request) -> Response {
    let Request::OffsetCommit(c) = r else {
        panic!("expected OffsetCommit, got {r:?}")
    };
    commit_answer(c, None)
}

fn commit_answer(c: &OffsetCommitRequest, e: Option<ResponseError>) -> Response {
    Response::OffsetCommit(
        OffsetCommitResponse::default().with_topics(
            c.topics
                .iter()
                .map(|t| {
                    OffsetCommitResponseTopic::default()
                        .with_name(t.name.clone())
                        .with_partitions(
                            t.partitions
                                .iter()
                                .map(|p| {
                                    OffsetCommitResponsePartition::default()
                                        .with_partition_index(p.partition_index)
                                        .with_error_code(e.map_or(0, |e| e.code()))
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    )
}

/// The partitions a heartbeat reports owning (`None`: unchanged).
fn owned(r: &ConsumerGroupHeartbeatRequest) -> Option<Vec<i32>> {
    r.topic_partitions
        .as_ref()
        .map(|ts| ts.iter().flat_map(|t| t.partitions.clone()).collect())
}

fn committed(r: &Request) -> Vec<(i32, i64)> {
    let Request::OffsetCommit(c) = r else {
        panic!("expected OffsetCommit, got {r:?}")
    };
    c.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect()
}

#[test]
fn the_join_carries_the_whole_state_and_later_heartbeats_only_what_changed() {
    let mut h = Harness::new(config());
    h.find_coordinator();
    h.metadata();
    let join = h.heartbeat();
    assert_eq!(join.member_epoch, 0);
    assert_eq!(join.member_id.len(), 22, "a client-generated id, as Java's");
    assert_eq!(join.rebalance_timeout_ms, 300_000);
    assert_eq!(
        join.subscribed_topic_names,
        Some(vec![TopicName(StrBytes::from_static_str("t"))])
    );
    assert_eq!(join.server_assignor.as_deref(), Some("uniform"));
    assert_eq!(owned(&join), Some(vec![]));
    h.respond(ok(1, None));
    assert!(matches!(
        h.events()[..],
        [Event::Joined { generation: 1, .. }]
    ));
    // The interval is the broker's: 5 s here, though the client's setting is 3 s.
    assert_eq!(h.wait(), h.now + Duration::from_secs(5));
    h.advance(Duration::from_secs(5));
    let next = h.heartbeat();
    assert_eq!(next.member_epoch, 1);
    assert_eq!(
        next.member_id, join.member_id,
        "the same id on every heartbeat"
    );
    assert_eq!(next.rebalance_timeout_ms, -1);
    assert_eq!(next.subscribed_topic_names, None);
    assert_eq!(next.server_assignor, None);
    assert_eq!(next.topic_partitions, None, "unchanged: null");
}

#[test]
fn a_new_assignment_is_fetched_then_acknowledged_at_once() {
    let mut h = Harness::joined(config(), 1);
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.respond(ok(2, Some(&[0, 1])));
    h.offsets(&[0, 1], 42);
    let events = h.events();
    assert_eq!(
        events,
        vec![Event::Assigned {
            generation: 2,
            partitions: vec![(tp(0), Some(42)), (tp(1), Some(42))],
            owned: vec![tp(0), tp(1)],
        }]
    );
    assert_eq!(h.m.state(), State::Stable);
    let ack = h.heartbeat();
    assert_eq!(
        owned(&ack),
        Some(vec![0, 1]),
        "acknowledged without waiting an interval"
    );
}

#[test]
fn an_unknown_topic_id_is_resolved_by_metadata_before_reconciling() {
    let mut h = Harness::new(config());
    h.find_coordinator();
    // The first Metadata finds no topic yet (it is being created).
    assert!(matches!(h.main(), Request::Metadata(_)));
    h.respond(Response::Metadata(MetadataResponse::default()));
    let _ = h.heartbeat();
    h.respond(ok(1, Some(&[0])));
    h.advance(Duration::from_secs(1));
    h.metadata();
    h.offsets(&[0], 7);
    assert!(matches!(
        &h.events()[..],
        [Event::Joined { .. }, Event::Assigned { .. }]
    ));
}

#[test]
fn revoked_partitions_are_committed_before_the_heartbeat_gives_them_up() {
    let mut h = Harness::owning(&[0, 1, 2]);
    h.m.set_position(&tp(1), 15);
    h.m.set_position(&tp(2), 25);
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.respond(ok(2, Some(&[0])));
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Revoke { partitions, lost: false, .. }] if partitions == &vec![tp(1), tp(2)]),
        "{events:?}"
    );
    assert_eq!(h.m.state(), State::Revoking);
    // Until the application confirms, nothing is committed and the heartbeat still owns all three.
    h.advance(Duration::from_secs(5));
    let beat = h.heartbeat();
    assert_eq!(owned(&beat), None, "still the same three");
    h.respond(ok(2, None));
    h.m.set_position(&tp(2), 26);
    h.m.revoke_done();
    let commit = h.main();
    let Request::OffsetCommit(c) = &commit else {
        panic!("{commit:?}")
    };
    assert_eq!(c.generation_id_or_member_epoch, 2, "the member epoch");
    assert_eq!(c.member_id.as_str(), h.m.member_id());
    assert_eq!(committed(&commit), vec![(1, 15), (2, 26)]);
    h.respond(commit_ok(&commit));
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Committed { .. }, Event::Assigned { owned, partitions, .. }] if owned == &vec![tp(0)] && partitions.is_empty()),
        "{events:?}"
    );
    let ack = h.heartbeat();
    assert_eq!(owned(&ack), Some(vec![0]));
}

#[test]
fn a_newer_target_during_a_revocation_is_reconciled_after_it() {
    let mut h = Harness::owning(&[0, 1, 2]);
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.respond(ok(2, Some(&[0, 1])));
    assert!(
        matches!(&h.events()[..], [Event::Revoke { partitions, .. }] if partitions == &vec![tp(2)])
    );
    // The broker changes its mind before the application confirmed: 1 goes too, 3 arrives.
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.respond(ok(3, Some(&[0, 3])));
    assert!(h.events().is_empty(), "one reconciliation at a time");
    h.m.revoke_done();
    // Nothing to commit for 2 (no position): the next poll moves straight on, and the newer target
    // revokes 1.
    let _ = h.m.poll(h.now);
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Assigned { owned, .. }, Event::Revoke { partitions, .. }]
            if owned == &vec![tp(0), tp(1)] && partitions == &vec![tp(1)]),
        "{events:?}"
    );
    h.m.revoke_done();
    h.offsets(&[3], 0);
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Assigned { owned, .. }, ..] if owned == &vec![tp(0), tp(3)]),
        "{events:?}"
    );
}

#[test]
fn a_fenced_member_loses_its_partitions_without_committing_and_rejoins_with_epoch_0() {
    for e in [
        ResponseError::FencedMemberEpoch,
        ResponseError::UnknownMemberId,
    ] {
        let mut h = Harness::owning(&[0, 1]);
        let id = h.m.member_id().to_string();
        h.m.set_position(&tp(0), 99);
        h.advance(Duration::from_secs(5));
        let _ = h.heartbeat();
        h.respond(error(e));
        let events = h.events();
        assert!(
            matches!(&events[..], [Event::Revoke { lost: true, partitions, .. }] if partitions.len() == 2),
            "{e:?}: {events:?}"
        );
        // Nothing goes out until the application stopped consuming.
        assert!(matches!(h.m.poll(h.now), Action::Wait(_)));
        h.m.revoke_done();
        let rejoin = h.heartbeat();
        assert_eq!(rejoin.member_epoch, 0, "{e:?}");
        assert_eq!(rejoin.member_id.as_str(), id, "{e:?}: the same member id");
        assert!(
            rejoin.subscribed_topic_names.is_some(),
            "{e:?}: the full state"
        );
        assert_eq!(owned(&rejoin), Some(vec![]));
        assert!(h.m.assignment().is_empty());
    }
}

#[test]
fn a_fence_during_a_revocation_waits_for_both_confirmations() {
    let mut h = Harness::owning(&[0, 1]);
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.respond(ok(3, Some(&[0])));
    assert!(matches!(
        &h.events()[..],
        [Event::Revoke { lost: false, .. }]
    ));
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.respond(error(ResponseError::FencedMemberEpoch));
    assert!(matches!(
        &h.events()[..],
        [Event::Revoke { lost: true, .. }]
    ));
    h.m.revoke_done();
    assert!(
        matches!(h.m.poll(h.now), Action::Wait(_)),
        "the lost partitions are not confirmed yet: no rejoin"
    );
    h.m.revoke_done();
    assert_eq!(h.heartbeat().member_epoch, 0);
}

#[test]
fn fatal_errors_stop_the_member_with_what_to_do() {
    for (e, hint) in [
        (ResponseError::UnreleasedInstanceId, "GROUP_INSTANCE_ID"),
        (ResponseError::UnsupportedAssignor, "GROUP_REMOTE_ASSIGNOR"),
        (
            ResponseError::GroupMaxSizeReached,
            "group.consumer.max.size",
        ),
        (ResponseError::GroupAuthorizationFailed, "READ"),
        (ResponseError::InvalidRequest, "retrying will not change"),
    ] {
        let mut h = Harness::new(config());
        h.find_coordinator();
        h.metadata();
        let _ = h.heartbeat();
        h.respond(error(e));
        let events = h.events();
        assert!(
            matches!(&events[..], [Event::Fatal(f)] if f.error == e && f.hint.contains(hint)),
            "{e:?}: {events:?}"
        );
        assert_eq!(h.m.poll(h.now), Action::Done, "{e:?}");
    }
}

#[test]
fn a_broker_without_the_api_is_fatal_and_says_how_to_fall_back() {
    let mut h = Harness::new(config());
    h.find_coordinator();
    h.metadata();
    let _ = h.heartbeat();
    h.m.on_unsupported(h.now, Lane::Heartbeat, "not negotiated");
    let events = h.events();
    assert!(
        matches!(&events[..], [Event::Fatal(f)] if f.hint.contains("Kafka 4.0") && f.hint.contains("GROUP_PROTOCOL=classic")),
        "{events:?}"
    );
    assert_eq!(h.m.poll(h.now), Action::Done);
}

#[test]
fn a_coordinator_that_is_not_ready_is_retried_with_a_growing_pause() {
    let mut h = Harness::joined(config(), 1);
    let mut pauses = Vec::new();
    for _ in 0..4 {
        h.advance(Duration::from_secs(5));
        let _ = h.heartbeat();
        h.respond(error(ResponseError::CoordinatorNotAvailable));
        // FindCoordinator waits for the pause too: no spinning between it and the heartbeat.
        let at = h.wait();
        pauses.push(at - h.now);
        h.now = at;
        h.find_coordinator();
    }
    assert!(pauses.windows(2).all(|w| w[1] > w[0]), "{pauses:?}");
    assert!(pauses[0] >= Duration::from_millis(100), "{pauses:?}");
}

#[test]
fn leaving_revokes_commits_then_sends_the_leave_epoch() {
    for (instance, epoch) in [(None, LEAVE_EPOCH), (Some("pod-0"), STATIC_LEAVE_EPOCH)] {
        let mut c = config();
        c.instance_id = instance.map(String::from);
        let mut h = Harness::joined(c, 1);
        h.advance(Duration::from_secs(5));
        let _ = h.heartbeat();
        h.respond(ok(2, Some(&[0])));
        h.offsets(&[0], 3);
        h.events();
        h.m.set_position(&tp(0), 8);
        h.m.leave();
        assert!(matches!(
            &h.events()[..],
            [Event::Revoke { lost: false, .. }]
        ));
        assert_eq!(h.m.state(), State::Leaving);
        h.m.revoke_done();
        let commit = h.main();
        assert_eq!(committed(&commit), vec![(0, 8)]);
        h.respond(commit_ok(&commit));
        let leave = h.heartbeat();
        assert_eq!(leave.member_epoch, epoch);
        assert_eq!(leave.instance_id.as_deref(), instance);
        h.respond(ok(epoch, None));
        let events = h.events();
        assert!(matches!(events.last(), Some(Event::Left)), "{events:?}");
        assert_eq!(h.m.poll(h.now), Action::Done);
    }
}

#[test]
fn a_heartbeat_in_flight_when_leaving_is_not_taken_for_the_leave() {
    let mut h = Harness::owning(&[0]);
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.m.leave();
    h.m.revoke_done();
    // Nothing to commit; the leave heartbeat waits for the one in flight.
    assert!(matches!(h.m.poll(h.now), Action::Wait(_)));
    h.respond(ok(2, None));
    assert!(!h.events().iter().any(|e| matches!(e, Event::Left)));
    assert_eq!(h.heartbeat().member_epoch, LEAVE_EPOCH);
}

#[test]
fn a_failed_revoke_commit_is_retried_then_given_up_so_the_revocation_finishes() {
    let mut h = Harness::owning(&[0, 1]);
    h.m.set_position(&tp(1), 5);
    h.advance(Duration::from_secs(5));
    let _ = h.heartbeat();
    h.respond(ok(3, Some(&[0])));
    h.events();
    h.m.revoke_done();
    for attempt in 0..REVOKE_COMMIT_ATTEMPTS {
        let at = h.m.poll(h.now);
        let request = match at {
            Action::Send { request, .. } => request,
            Action::Wait(at) => {
                h.now = at;
                h.main()
            }
            Action::Done => panic!("done"),
        };
        let Request::OffsetCommit(c) = &request else {
            // The heartbeat lane may come first.
            panic!("attempt {attempt}: {request:?}")
        };
        h.respond(commit_answer(c, Some(ResponseError::StaleMemberEpoch)));
    }
    let events = h.events();
    assert!(
        matches!(events.last(), Some(Event::Assigned { owned, .. }) if owned == &vec![tp(0)]),
        "{events:?}"
    );
}

#[test]
fn a_session_without_answered_heartbeats_loses_its_partitions() {
    let mut h = Harness::owning(&[0, 1]);
    for _ in 0..10 {
        h.advance(Duration::from_secs(5));
        match h.m.poll(h.now) {
            Action::Send {
                lane: Lane::Heartbeat,
                ..
            } => h.m.on_heartbeat_failure(h.now),
            Action::Send { .. } => h.m.on_failure(h.now, "connection refused"),
            _ => {}
        }
    }
    let events = h.events();
    assert!(
        events
            .iter()
            .any(|e| matches!(e, Event::Revoke { lost: true, .. })),
        "{events:?}"
    );
}
