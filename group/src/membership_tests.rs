//! The membership state machine driven through every path with synthetic responses and time.

use super::*;
use kafka_protocol::messages::{
    find_coordinator_response::Coordinator as CoordinatorEntry,
    join_group_response::JoinGroupResponseMember,
    metadata_response::{MetadataResponsePartition, MetadataResponseTopic},
    offset_commit_response::{OffsetCommitResponsePartition, OffsetCommitResponseTopic},
    offset_fetch_response::{OffsetFetchResponsePartition, OffsetFetchResponseTopic},
    BrokerId, HeartbeatResponse, LeaveGroupResponse,
};

const HB: Duration = Duration::from_secs(3);

fn config() -> Config {
    Config::new("g", vec!["t".into()])
}

fn tp(p: i32) -> TopicPartition {
    TopicPartition::new("t", p)
}

struct Harness {
    m: Membership,
    now: Instant,
    start: Instant,
}

impl Harness {
    fn new(config: Config) -> Self {
        let now = Instant::now();
        Self {
            m: Membership::new(config, now),
            now,
            start: now,
        }
    }

    fn advance(&mut self, d: Duration) {
        self.now += d;
    }

    /// Polls and expects a request; returns it.
    fn send(&mut self) -> Request {
        match self.m.poll(self.now) {
            Action::Send { request, .. } => request,
            other => panic!(
                "expected a request, got {other:?}; events {:?}",
                self.events()
            ),
        }
    }

    /// Polls and expects a wait (returns its deadline).
    fn wait(&mut self) -> Instant {
        match self.m.poll(self.now) {
            Action::Wait(at) => at,
            other => panic!("expected to wait, got {other:?}"),
        }
    }

    /// Runs the clock, answering every heartbeat with `answer`, until a main-lane request is due;
    /// returns it and when it was sent. Bounded to an hour of simulated time.
    fn next_main(&mut self, answer: Option<ResponseError>) -> (Request, Instant) {
        let end = self.now + Duration::from_secs(3600);
        while self.now < end {
            match self.m.poll(self.now) {
                Action::Send {
                    lane: Lane::Heartbeat,
                    ..
                } => self.respond(heartbeat(answer)),
                Action::Send { request, .. } => return (request, self.now),
                Action::Wait(at) => self.now = at.max(self.now + Duration::from_millis(1)),
                Action::Done => panic!("done; events {:?}", self.events()),
            }
        }
        panic!("no request within an hour")
    }

    fn respond(&mut self, response: Response) {
        self.m.on_response(self.now, response);
    }

    /// The events, without the `Joined` ones.
    fn events_after_joining(&mut self) -> Vec<Event> {
        let mut events = self.events();
        events.retain(|e| !matches!(e, Event::Joined { .. }));
        events
    }

    fn events(&mut self) -> Vec<Event> {
        std::iter::from_fn(|| self.m.next_event()).collect()
    }

    /// FindCoordinator → JoinGroup (MEMBER_ID_REQUIRED) → JoinGroup → [Metadata] → SyncGroup →
    /// OffsetFetch: stable with `parts`.
    fn join(&mut self, leader: bool, parts: &[i32]) {
        assert!(matches!(self.send(), Request::FindCoordinator(_)));
        self.respond(coordinator(1));
        let Request::JoinGroup(first) = self.send() else {
            panic!("JoinGroup")
        };
        assert!(first.member_id.is_empty());
        self.respond(join_error(ResponseError::MemberIdRequired, "me"));
        let Request::JoinGroup(second) = self.send() else {
            panic!("rejoin at once")
        };
        assert_eq!(second.member_id.as_str(), "me");
        let members: &[(&str, &[&str])] = if leader { &[("me", &["t"])] } else { &[] };
        self.respond(join_ok(
            "me",
            if leader { "me" } else { "other" },
            1,
            members,
        ));
        if leader {
            assert!(matches!(self.send(), Request::Metadata(_)));
            self.respond(metadata(9));
        }
        let Request::SyncGroup(_) = self.send() else {
            panic!("SyncGroup")
        };
        self.respond(sync_ok(parts));
        if !parts.is_empty() {
            let Request::OffsetFetch(_) = self.send() else {
                panic!("OffsetFetch")
            };
            self.respond(offsets(&parts.iter().map(|&p| (p, -1)).collect::<Vec<_>>()));
        }
        assert_eq!(self.m.state(), State::Stable);
    }
}

fn coordinator(node: i32) -> Response {
    Response::FindCoordinator(FindCoordinatorResponse::default().with_coordinators(
        vec![CoordinatorEntry::default()
        .with_node_id(BrokerId(node))
        .with_host(StrBytes::from_static_str("127.0.0.1"))
        .with_port(9092 + node)],
    ))
}

fn join_error(e: ResponseError, member: &str) -> Response {
    Response::JoinGroup(
        JoinGroupResponse::default()
            .with_error_code(e.code())
            .with_member_id(StrBytes::from_string(member.into())),
    )
}

fn join_ok(member: &str, leader: &str, generation: i32, members: &[(&str, &[&str])]) -> Response {
    Response::JoinGroup(
        JoinGroupResponse::default()
            .with_generation_id(generation)
            .with_protocol_name(Some(StrBytes::from_static_str("range")))
            .with_member_id(StrBytes::from_string(member.into()))
            .with_leader(StrBytes::from_string(leader.into()))
            .with_members(
                members
                    .iter()
                    .map(|(id, topics)| {
                        JoinGroupResponseMember::default()
                            .with_member_id(StrBytes::from_string(id.to_string()))
                            .with_metadata(codec::encode_subscription(&Subscription {
                                topics: topics.iter().map(|t| t.to_string()).collect(),
                                generation_id: -1,
                                ..Subscription::default()
                            }))
                    })
                    .collect(),
            ),
    )
}

fn sync_ok(parts: &[i32]) -> Response {
    let parts: Vec<_> = parts.iter().map(|&p| tp(p)).collect();
    Response::SyncGroup(
        SyncGroupResponse::default().with_assignment(codec::encode_assignment(&parts)),
    )
}

fn sync_error(e: ResponseError) -> Response {
    Response::SyncGroup(SyncGroupResponse::default().with_error_code(e.code()))
}

fn metadata(partitions: i32) -> Response {
    Response::Metadata(MetadataResponse::default().with_topics(
        vec![MetadataResponseTopic::default()
        .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
        .with_partitions(
            (0..partitions)
                .map(|p| MetadataResponsePartition::default().with_partition_index(p))
                .collect(),
        )],
    ))
}

fn offsets(committed: &[(i32, i64)]) -> Response {
    Response::OffsetFetch(OffsetFetchResponse::default().with_topics(
        vec![OffsetFetchResponseTopic::default()
        .with_name(TopicName(StrBytes::from_static_str("t")))
        .with_partitions(
            committed
                .iter()
                .map(|&(p, o)| {
                    OffsetFetchResponsePartition::default()
                        .with_partition_index(p)
                        .with_committed_offset(o)
                })
                .collect(),
        )],
    ))
}

fn heartbeat(e: Option<ResponseError>) -> Response {
    Response::Heartbeat(HeartbeatResponse::default().with_error_code(e.map_or(0, |e| e.code())))
}

/// Answers an OffsetCommit request with `e` (or success) for every partition in it.
fn commit_answer(request: &Request, e: Option<ResponseError>) -> Response {
    let Request::OffsetCommit(r) = request else {
        panic!("expected OffsetCommit, got {request:?}")
    };
    Response::OffsetCommit(
        OffsetCommitResponse::default().with_topics(
            r.topics
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

fn committed_offsets(request: &Request) -> Vec<(i32, i64)> {
    let Request::OffsetCommit(r) = request else {
        panic!("expected OffsetCommit, got {request:?}")
    };
    r.topics
        .iter()
        .flat_map(|t| {
            t.partitions
                .iter()
                .map(|p| (p.partition_index, p.committed_offset))
        })
        .collect()
}

#[test]
fn leader_joins_assigns_every_member_and_reports_committed_offsets() {
    let mut h = Harness::new(config());
    assert!(matches!(h.send(), Request::FindCoordinator(_)));
    h.respond(coordinator(2));
    let Request::JoinGroup(join) = h.send() else {
        panic!()
    };
    assert_eq!(join.protocols[0].name.as_str(), "range");
    assert_eq!(join.protocol_type.as_str(), "consumer");
    h.respond(join_error(ResponseError::MemberIdRequired, "me"));
    assert!(matches!(h.send(), Request::JoinGroup(j) if j.member_id.as_str() == "me"));
    // Three members, one of which joined late: the leader must assign to all it was given.
    h.respond(join_ok(
        "me",
        "me",
        5,
        &[("me", &["t"]), ("b", &["t"]), ("late", &["t"])],
    ));
    let Request::Metadata(md) = h.send() else {
        panic!("leader reads partition counts")
    };
    assert!(!md.allow_auto_topic_creation);
    h.respond(metadata(9));
    let Request::SyncGroup(sync) = h.send() else {
        panic!()
    };
    assert_eq!(sync.generation_id, 5);
    let mut given: Vec<(String, Vec<TopicPartition>)> = sync
        .assignments
        .iter()
        .map(|a| {
            (
                a.member_id.to_string(),
                codec::decode_assignment(&a.assignment).expect("valid"),
            )
        })
        .collect();
    given.sort();
    assert_eq!(given.len(), 3);
    assert_eq!(given[0], ("b".into(), vec![tp(0), tp(1), tp(2)]));
    assert_eq!(given[1], ("late".into(), vec![tp(3), tp(4), tp(5)]));
    assert_eq!(given[2], ("me".into(), vec![tp(6), tp(7), tp(8)]));
    h.respond(sync_ok(&[6, 7, 8]));
    let Request::OffsetFetch(of) = h.send() else {
        panic!()
    };
    assert_eq!(
        of.topics.as_ref().map(|t| t[0].partition_indexes.clone()),
        Some(vec![6, 7, 8])
    );
    h.respond(offsets(&[(6, 100), (7, -1), (8, 42)]));
    let events = h.events();
    assert!(events.iter().any(|e| matches!(
        e,
        Event::Joined {
            leader: true,
            members: 3,
            generation: 5,
            ..
        }
    )));
    assert!(events.contains(&Event::Assigned {
        generation: 5,
        partitions: vec![(tp(6), Some(100)), (tp(7), None), (tp(8), Some(42))],
        owned: vec![tp(6), tp(7), tp(8)],
    }));
    assert_eq!(h.m.state(), State::Stable);
}

#[test]
fn follower_syncs_with_no_assignments_and_heartbeats_on_its_timer() {
    let mut h = Harness::new(config());
    h.join(false, &[0, 1]);
    // Nothing due yet: the next wake-up is the heartbeat.
    let joined = h.now;
    let at = h.wait();
    assert_eq!(at, joined + HB);
    h.now = at;
    let Request::Heartbeat(hb) = h.send() else {
        panic!()
    };
    assert_eq!((hb.generation_id, hb.member_id.as_str()), (1, "me"));
    h.respond(heartbeat(None));
    // The next one is due a heartbeat interval after this one was sent, whatever else wakes us.
    let next = next_heartbeat_at(&mut h);
    assert_eq!(next, joined + HB * 2);
}

/// Runs the member (answering heartbeats, no commits pending) until it sends a heartbeat; returns when.
fn next_heartbeat_at(h: &mut Harness) -> Instant {
    for _ in 0..10 {
        match h.m.poll(h.now) {
            Action::Wait(at) => h.now = at,
            Action::Send {
                request: Request::Heartbeat(_),
                ..
            } => {
                h.respond(heartbeat(None));
                return h.now;
            }
            other => panic!("{other:?}"),
        }
    }
    panic!("no heartbeat in 10 steps")
}

#[test]
fn rebalance_on_heartbeat_commits_positions_before_rejoining() {
    let mut h = Harness::new(config());
    h.join(false, &[0, 1]);
    h.events();
    h.m.set_position(&tp(0), 10);
    h.advance(HB);
    assert!(matches!(h.send(), Request::Heartbeat(_)));
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    assert_eq!(
        h.events(),
        vec![Event::Revoke {
            partitions: vec![tp(0), tp(1)],
            lost: false,
            reason: "the group is rebalancing".into()
        }]
    );
    // Nothing is sent until the application has stopped and reported its final positions.
    assert_eq!(h.m.state(), State::Revoking);
    assert!(matches!(h.m.poll(h.now), Action::Wait(_)));
    h.m.set_position(&tp(1), 7);
    h.m.revoke_done();
    let commit = h.send();
    assert_eq!(committed_offsets(&commit), vec![(0, 10), (1, 7)]);
    let Request::OffsetCommit(c) = &commit else {
        panic!()
    };
    assert_eq!(
        c.generation_id_or_member_epoch, 1,
        "committed with the generation that owned them"
    );
    h.respond(commit_answer(&commit, None));
    let Request::JoinGroup(join) = h.send() else {
        panic!("rejoin after the commit")
    };
    assert_eq!(join.member_id.as_str(), "me");
    assert_eq!(
        join.reason.as_ref().map(|r| r.to_string()),
        Some("the group is rebalancing".into())
    );
    assert!(h.m.assignment().is_empty());
}

#[test]
fn illegal_generation_loses_partitions_without_committing_and_keeps_the_member_id() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.events();
    h.m.set_position(&tp(0), 99);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::IllegalGeneration)));
    assert!(matches!(
        &h.events()[..],
        [Event::Revoke { lost: true, .. }]
    ));
    h.m.revoke_done();
    let Request::JoinGroup(join) = h.send() else {
        panic!("no commit for lost partitions")
    };
    assert_eq!(join.member_id.as_str(), "me");
}

#[test]
fn unknown_member_id_resets_the_id_and_loses_partitions() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.events();
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::UnknownMemberId)));
    assert!(matches!(
        &h.events()[..],
        [Event::Revoke { lost: true, .. }]
    ));
    h.m.revoke_done();
    let at = h.wait();
    h.now = at;
    let Request::JoinGroup(join) = h.send() else {
        panic!()
    };
    assert!(join.member_id.is_empty(), "a new id is needed");
}

#[test]
fn a_coordinator_that_moves_is_found_again_without_losing_the_assignment() {
    let mut h = Harness::new(config());
    h.join(false, &[0, 1]);
    h.events();
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::NotCoordinator)));
    assert_eq!(h.events(), vec![Event::CoordinatorChanged(None)]);
    let Action::Send {
        target, request, ..
    } = h.m.poll(h.now)
    else {
        panic!()
    };
    assert_eq!(
        (target, matches!(request, Request::FindCoordinator(_))),
        (Target::AnyBroker, true)
    );
    h.respond(coordinator(3));
    h.advance(config().retry_backoff);
    let Action::Send {
        target: Target::Coordinator(c),
        request: Request::Heartbeat(_),
        ..
    } = h.m.poll(h.now)
    else {
        panic!("heartbeat at the new coordinator")
    };
    assert_eq!(c.port, 9095);
    assert_eq!(h.m.assignment(), &[tp(0), tp(1)]);
    assert_eq!(h.m.state(), State::Stable);
}

#[test]
fn coordinator_load_in_progress_backs_off_then_retries_the_join() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.respond(join_error(ResponseError::CoordinatorLoadInProgress, ""));
    let at = h.wait();
    assert!(at > h.now, "backs off");
    h.now = at;
    assert!(matches!(h.send(), Request::JoinGroup(_)));
}

/// Apache Kafka answers a new cluster's first JoinGroup with COORDINATOR_NOT_AVAILABLE while it
/// creates `__consumer_offsets`: find the coordinator again and rejoin, saying why in plain words.
#[test]
fn coordinator_not_available_on_join_finds_it_again_and_says_so() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.respond(join_error(ResponseError::CoordinatorNotAvailable, ""));
    h.now = h.wait();
    assert!(matches!(h.send(), Request::FindCoordinator(_)));
    h.respond(coordinator(1));
    let Request::JoinGroup(join) = h.send() else {
        panic!("the join again")
    };
    assert_eq!(
        join.reason.as_ref().map(|r| r.to_string()),
        Some("JoinGroup: the coordinator is not available yet".into())
    );
}

#[test]
fn fatal_errors_stop_with_a_clear_message() {
    for e in [
        ResponseError::FencedInstanceId,
        ResponseError::InconsistentGroupProtocol,
        ResponseError::GroupAuthorizationFailed,
        ResponseError::InvalidSessionTimeout,
    ] {
        let mut h = Harness::new(config());
        h.send();
        h.respond(coordinator(1));
        h.send();
        h.respond(join_error(e, ""));
        assert_eq!(h.m.poll(h.now), Action::Done, "{e:?}");
        let events = h.events();
        let Some(Event::Fatal(fatal)) = events.last() else {
            panic!("{e:?}: {events:?}")
        };
        assert_eq!(fatal.error, e);
        assert!(!fatal.hint.is_empty());
    }
}

#[test]
fn a_broker_that_answers_join_at_once_and_then_rebalances_in_sync_is_followed() {
    // Some Kafka-compatible brokers do not hold JoinGroup: the answer comes at once, and a member that
    // joins a moment later makes the SyncGroup fail with REBALANCE_IN_PROGRESS.
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.respond(join_ok("me", "other", 1, &[]));
    h.send();
    h.respond(sync_error(ResponseError::RebalanceInProgress));
    let Request::JoinGroup(join) = h.send() else {
        panic!("rejoin at once")
    };
    assert_eq!(join.member_id.as_str(), "me");
    h.respond(join_ok("me", "other", 2, &[]));
    h.send();
    h.respond(sync_ok(&[4]));
    h.send();
    h.respond(offsets(&[(4, 8)]));
    assert!(h.events().contains(&Event::Assigned {
        generation: 2,
        partitions: vec![(tp(4), Some(8))],
        owned: vec![tp(4)],
    }));
}

#[test]
fn no_commit_between_join_and_sync() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.events();
    h.m.set_position(&tp(0), 5);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    h.m.revoke_done();
    let commit = h.send();
    h.respond(commit_answer(&commit, None));
    // Joining: positions reported now belong to no one and the commit timer is long due.
    h.m.set_position(&tp(0), 6);
    h.advance(Duration::from_secs(60));
    assert!(matches!(h.send(), Request::JoinGroup(_)));
    h.respond(join_ok("me", "other", 2, &[]));
    h.m.set_position(&tp(0), 7);
    assert!(matches!(h.send(), Request::SyncGroup(_)));
}

#[test]
fn periodic_commits_send_only_what_changed() {
    let mut h = Harness::new(config());
    h.join(false, &[0, 1]);
    h.events();
    let joined = h.now;
    h.m.set_position(&tp(0), 3);
    // Heartbeats go on; the commit comes at the 5 s auto-commit interval, not before.
    let commit = loop {
        match h.m.poll(h.now) {
            Action::Wait(at) => h.now = at,
            Action::Send {
                request: Request::Heartbeat(_),
                ..
            } => h.respond(heartbeat(None)),
            Action::Send { request, .. } => break request,
            Action::Done => panic!(),
        }
    };
    assert_eq!(h.now, joined + Duration::from_secs(5));
    assert_eq!(committed_offsets(&commit), vec![(0, 3)]);
    h.respond(commit_answer(&commit, None));
    assert!(h.events().contains(&Event::Committed {
        offsets: vec![(tp(0), 3)]
    }));
    // Unchanged positions are not committed again: only heartbeats for the next 20 s.
    let until = h.now + Duration::from_secs(20);
    while h.now < until {
        match h.m.poll(h.now) {
            Action::Wait(at) => h.now = at,
            Action::Send {
                request: Request::Heartbeat(_),
                ..
            } => h.respond(heartbeat(None)),
            other => panic!("nothing to commit, got {other:?}"),
        }
    }
    // A new position is committed at the next interval.
    h.m.set_position(&tp(1), 8);
    let commit = loop {
        match h.m.poll(h.now) {
            Action::Wait(at) => h.now = at,
            Action::Send {
                request: Request::Heartbeat(_),
                ..
            } => h.respond(heartbeat(None)),
            Action::Send { request, .. } => break request,
            Action::Done => panic!(),
        }
    };
    assert_eq!(committed_offsets(&commit), vec![(1, 8)]);
}

#[test]
fn positions_of_partitions_we_do_not_own_are_ignored() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.m.set_position(&tp(5), 9);
    assert!(h.m.dirty_positions().is_empty());
}

#[test]
fn leave_commits_then_sends_leave_group() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.events();
    h.m.set_position(&tp(0), 11);
    h.m.leave();
    assert!(h.m.poll(h.now) != Action::Done);
    assert!(matches!(
        &h.events()[..],
        [Event::Revoke { lost: false, .. }]
    ));
    h.m.revoke_done();
    let commit = h.send();
    assert_eq!(committed_offsets(&commit), vec![(0, 11)]);
    h.respond(commit_answer(&commit, None));
    let Request::LeaveGroup(leave) = h.send() else {
        panic!()
    };
    assert_eq!(leave.members[0].member_id.as_str(), "me");
    h.respond(Response::LeaveGroup(LeaveGroupResponse::default()));
    assert_eq!(h.m.poll(h.now), Action::Done);
    assert!(h.events().contains(&Event::Left));
}

#[test]
fn a_static_member_commits_but_does_not_send_leave_group() {
    let mut h = Harness::new(Config {
        instance_id: Some("pod-0".into()),
        ..config()
    });
    h.join(false, &[0]);
    h.m.set_position(&tp(0), 1);
    h.m.leave();
    h.m.poll(h.now);
    h.m.revoke_done();
    let commit = h.send();
    h.respond(commit_answer(&commit, None));
    assert_eq!(h.m.poll(h.now), Action::Done);
    assert!(h.events().contains(&Event::Left));
}

#[test]
fn leave_during_a_join_needs_no_commit() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.respond(join_error(ResponseError::MemberIdRequired, "me"));
    h.m.leave();
    let Request::LeaveGroup(_) = h.send() else {
        panic!("leave at once")
    };
}

#[test]
fn a_lost_connection_during_join_finds_the_coordinator_and_joins_again() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.m.on_failure(h.now, "connection reset");
    h.now = h.wait();
    assert!(matches!(h.send(), Request::FindCoordinator(_)));
    h.respond(coordinator(1));
    assert!(matches!(h.send(), Request::JoinGroup(_)));
}

#[test]
fn an_expired_session_loses_the_partitions() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.events();
    // Heartbeats fail for longer than the session timeout.
    let until = h.now + Duration::from_secs(46);
    while h.now < until {
        match h.m.poll(h.now) {
            Action::Send { .. } => h.m.on_failure(h.now, "connection refused"),
            Action::Wait(at) => h.now = at.min(until),
            Action::Done => panic!(),
        }
        if h.m.state() == State::Revoking {
            break;
        }
    }
    h.advance(Duration::from_secs(1));
    h.m.poll(h.now);
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::Revoke { lost: true, reason, .. } if reason.contains("session timeout"))));
}

#[test]
fn the_leader_rejoins_when_partitions_are_added() {
    let mut h = Harness::new(config());
    h.join(true, &[0, 1, 2, 3, 4, 5, 6, 7, 8]);
    h.events();
    h.now = h.m.next_metadata;
    let md = loop {
        match h.send() {
            Request::Heartbeat(_) => h.respond(heartbeat(None)),
            r => break r,
        }
    };
    assert!(matches!(md, Request::Metadata(_)));
    h.respond(metadata(12));
    assert!(
        matches!(&h.events()[..], [Event::Revoke { lost: false, reason, .. }] if reason.contains("partition counts"))
    );
}

#[test]
fn a_rebalance_seen_by_a_commit_starts_the_revoke() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.events();
    h.m.set_position(&tp(0), 2);
    h.m.next_commit = h.now;
    h.m.next_heartbeat = h.now + HB;
    let commit = h.send();
    h.respond(commit_answer(
        &commit,
        Some(ResponseError::RebalanceInProgress),
    ));
    assert!(h
        .events()
        .iter()
        .any(|e| matches!(e, Event::Revoke { lost: false, .. })));
}

#[test]
fn a_refused_final_commit_still_rejoins() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.m.set_position(&tp(0), 2);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    h.m.revoke_done();
    let commit = h.send();
    h.respond(commit_answer(
        &commit,
        Some(ResponseError::IllegalGeneration),
    ));
    assert!(matches!(h.send(), Request::JoinGroup(_)));
}

#[test]
fn the_application_that_never_confirms_a_revoke_is_treated_as_lost() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.m.set_position(&tp(0), 2);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    let (request, at) = h.next_main(Some(ResponseError::RebalanceInProgress));
    assert!(
        matches!(request, Request::JoinGroup(_)),
        "no commit of unconfirmed positions"
    );
    assert!(
        at >= h.start + config().rebalance_timeout,
        "after the rebalance timeout"
    );
}

#[test]
fn joined_requests_time_out_after_the_rebalance_timeout() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    let Action::Send { timeout, .. } = h.m.poll(h.now) else {
        panic!()
    };
    assert!(
        timeout > Duration::from_secs(300),
        "JoinGroup is a long poll: {timeout:?}"
    );
}

#[test]
fn a_join_abandoned_for_shutdown_leaves_at_the_same_coordinator() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.respond(join_error(ResponseError::MemberIdRequired, "me"));
    assert!(matches!(h.send(), Request::JoinGroup(_)));
    h.events();
    h.m.leave();
    h.m.abandon();
    let Action::Send {
        target: Target::Coordinator(_),
        request: Request::LeaveGroup(_),
        ..
    } = h.m.poll(h.now)
    else {
        panic!("LeaveGroup at once, no rediscovery, no backoff")
    };
    assert!(h.events().is_empty(), "no coordinator change");
}

#[test]
fn a_static_leader_that_keeps_its_assignment_does_not_rebalance_on_its_first_refresh() {
    // KIP-814: a static leader rejoining is told to skip the assignment and keep the old one, so it
    // has not seen the partition counts; learning them is not a change.
    let mut h = Harness::new(Config {
        instance_id: Some("pod-0".into()),
        ..config()
    });
    h.send();
    h.respond(coordinator(1));
    h.send();
    let Response::JoinGroup(join) = join_ok("me", "me", 4, &[("me", &["t"])]) else {
        unreachable!()
    };
    h.respond(Response::JoinGroup(join.with_skip_assignment(true)));
    let Request::SyncGroup(sync) = h.send() else {
        panic!("sync without assigning")
    };
    assert!(sync.assignments.is_empty());
    h.respond(sync_ok(&[0, 1, 2]));
    h.send();
    h.respond(offsets(&[(0, 1), (1, 1), (2, 1)]));
    h.events();
    let md = loop {
        match h.m.poll(h.now) {
            Action::Wait(at) => h.now = at,
            Action::Send {
                request: Request::Heartbeat(_),
                ..
            } => h.respond(heartbeat(None)),
            Action::Send { request, .. } => break request,
            Action::Done => panic!(),
        }
    };
    assert!(matches!(md, Request::Metadata(_)), "{md:?}");
    h.respond(metadata(3));
    assert!(h.events().is_empty(), "no revoke");
    assert_eq!(h.m.state(), State::Stable);
    // A later change is still noticed.
    h.now = h.m.next_metadata;
    let md = loop {
        match h.send() {
            Request::Heartbeat(_) => h.respond(heartbeat(None)),
            r => break r,
        }
    };
    assert!(matches!(md, Request::Metadata(_)));
    h.respond(metadata(6));
    assert!(matches!(&h.events()[..], [Event::Revoke { .. }]));
}

#[test]
fn a_heartbeat_goes_out_while_a_commit_is_in_flight() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.events();
    h.m.set_position(&tp(0), 5);
    h.now = h.m.config.auto_commit_interval.map_or(h.now, |i| h.now + i);
    // The heartbeat due at the same time goes first on its lane, then the commit on the main lane.
    let mut lanes = Vec::new();
    for _ in 0..2 {
        let Action::Send { lane, request, .. } = h.m.poll(h.now) else {
            panic!("two requests due")
        };
        lanes.push((lane, request.api_key()));
    }
    let commit_sent = h.now;
    assert_eq!(
        lanes,
        vec![
            (Lane::Heartbeat, kafka_protocol::messages::ApiKey::Heartbeat),
            (Lane::Main, kafka_protocol::messages::ApiKey::OffsetCommit)
        ]
    );
    h.respond(heartbeat(None));
    // The commit stays unanswered for most of the session: heartbeats go on meanwhile.
    let mut beats = 0;
    while h.now < commit_sent + config().session_timeout - HB {
        match h.m.poll(h.now) {
            Action::Send {
                lane: Lane::Heartbeat,
                ..
            } => {
                beats += 1;
                h.respond(heartbeat(None));
            }
            Action::Wait(at) => h.now = at,
            other => panic!("only heartbeats while the commit is out, got {other:?}"),
        }
    }
    assert!(
        beats >= 10,
        "{beats} heartbeats in {:?}",
        config().session_timeout
    );
    assert_eq!(h.m.state(), State::Stable);
}

#[test]
fn heartbeats_go_on_while_the_application_revokes() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.m.set_position(&tp(0), 4);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    assert_eq!(h.m.state(), State::Revoking);
    // The application takes twice the session timeout to stop; the session is kept alive.
    let confirm_at = h.now + 2 * config().session_timeout;
    let mut beats = 0;
    while h.now < confirm_at {
        match h.m.poll(h.now) {
            Action::Send {
                lane: Lane::Heartbeat,
                ..
            } => {
                beats += 1;
                h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
            }
            Action::Wait(at) => h.now = at.min(confirm_at),
            other => panic!("nothing but heartbeats before the confirm, got {other:?}"),
        }
    }
    assert!(beats >= 20, "{beats} heartbeats while revoking");
    h.m.revoke_done();
    let (commit, _) = h.next_main(Some(ResponseError::RebalanceInProgress));
    assert_eq!(
        committed_offsets(&commit),
        vec![(0, 4)],
        "still in the generation: the revoke commits"
    );
    h.respond(commit_answer(&commit, None));
    let (join, _) = h.next_main(Some(ResponseError::RebalanceInProgress));
    assert!(matches!(join, Request::JoinGroup(_)));
    // Once JoinGroup is out, heartbeats stop until the next SyncGroup.
    h.advance(HB);
    assert!(matches!(h.m.poll(h.now), Action::Wait(_)));
}

#[test]
fn a_member_evicted_while_revoking_does_not_commit() {
    let mut h = Harness::new(config());
    h.join(false, &[0]);
    h.m.set_position(&tp(0), 4);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    h.advance(HB);
    assert!(matches!(h.send(), Request::Heartbeat(_)));
    h.respond(heartbeat(Some(ResponseError::UnknownMemberId)));
    h.m.revoke_done();
    let Request::JoinGroup(join) = h.send() else {
        panic!("no commit once the coordinator forgot us")
    };
    assert!(join.member_id.is_empty());
}

#[test]
fn a_position_reported_during_the_final_commit_is_committed_too() {
    let mut h = Harness::new(config());
    h.join(false, &[0, 1]);
    h.m.set_position(&tp(0), 3);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    h.m.revoke_done();
    let first = h.send();
    assert_eq!(committed_offsets(&first), vec![(0, 3)]);
    h.m.set_position(&tp(1), 8);
    h.respond(commit_answer(&first, None));
    let second = h.send();
    assert_eq!(
        committed_offsets(&second),
        vec![(1, 8)],
        "success does not end the revoke while a position is uncommitted"
    );
    h.respond(commit_answer(&second, None));
    assert!(matches!(h.send(), Request::JoinGroup(_)));
}

#[test]
fn sync_group_for_another_protocol_is_refused() {
    for (kind, name) in [("connect", "range"), ("consumer", "roundrobin")] {
        let mut h = Harness::new(config());
        h.send();
        h.respond(coordinator(1));
        h.send();
        h.respond(join_ok("me", "other", 1, &[]));
        assert!(matches!(h.send(), Request::SyncGroup(_)));
        let mut sync = SyncGroupResponse::default()
            .with_protocol_type(Some(StrBytes::from_static_str(kind)))
            .with_protocol_name(Some(StrBytes::from_static_str(name)))
            .with_assignment(codec::encode_assignment(&[tp(0)]));
        sync.error_code = 0;
        h.respond(Response::SyncGroup(sync));
        assert!(
            h.events().iter().any(|e| matches!(e,
                Event::Fatal(f) if f.error == ResponseError::InconsistentGroupProtocol)),
            "{kind}/{name}"
        );
        assert!(h.m.assignment().is_empty());
    }
}

#[test]
fn find_coordinator_invalid_request_is_reported_as_such() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(Response::FindCoordinator(
        FindCoordinatorResponse::default().with_coordinators(vec![
            CoordinatorEntry::default().with_error_code(ResponseError::InvalidRequest.code())
        ]),
    ));
    assert!(h.events().iter().any(|e| matches!(e,
        Event::Fatal(f) if f.error == ResponseError::InvalidRequest)));
}

#[test]
fn a_named_but_dead_coordinator_is_retried_with_a_growing_backoff() {
    let mut h = Harness::new(config());
    let mut gaps = Vec::new();
    let mut last = h.now;
    for _ in 0..6 {
        let (request, at) = h.next_main(None);
        assert!(
            matches!(request, Request::FindCoordinator(_)),
            "{request:?}"
        );
        gaps.push(at - last);
        last = at;
        h.respond(coordinator(1));
        assert!(matches!(h.send(), Request::JoinGroup(_)));
        h.m.on_failure(h.now, "connection refused");
    }
    assert!(
        gaps.windows(2).skip(1).all(|w| w[1] > w[0]),
        "backoff grows: {gaps:?}"
    );
    assert!(gaps[5] >= Duration::from_millis(1600), "{gaps:?}");
}

#[test]
fn timings_that_would_evict_a_healthy_member_are_refused() {
    assert_eq!(config().validate(), Ok(()), "Kafka's defaults");
    let mut c = config();
    c.request_timeout = c.session_timeout + Duration::from_millis(1);
    let err = c.validate().expect_err("request timeout");
    assert!(matches!(err, ConfigError::RequestTimeout { .. }));
    assert!(err.to_string().contains("request_timeout"), "{err}");
    let mut c = config();
    c.heartbeat_interval = c.session_timeout / 3;
    let err = c.validate().expect_err("a third is not below a third");
    assert!(err.to_string().contains("heartbeat_interval"), "{err}");
}

fn metadata_of(topics: &[(&str, i32)]) -> Response {
    Response::Metadata(
        MetadataResponse::default().with_topics(
            topics
                .iter()
                .map(|(name, n)| {
                    MetadataResponseTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(name.to_string()))))
                        .with_partitions(
                            (0..*n)
                                .map(|p| {
                                    MetadataResponsePartition::default().with_partition_index(p)
                                })
                                .collect(),
                        )
                })
                .collect(),
        ),
    )
}

fn requested_topics(request: &Request) -> Vec<String> {
    let Request::Metadata(r) = request else {
        panic!("expected Metadata, got {request:?}")
    };
    r.topics
        .iter()
        .flatten()
        .filter_map(|t| Some(t.name.as_ref()?.0.to_string()))
        .collect()
}

#[test]
fn the_leader_covers_and_watches_every_members_topics() {
    let mut h = Harness::new(config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.respond(join_ok(
        "me",
        "me",
        1,
        &[("me", &["t"]), ("java", &["t", "u"])],
    ));
    let md = h.send();
    assert_eq!(requested_topics(&md), vec!["t", "u"]);
    h.respond(metadata_of(&[("t", 2), ("u", 2)]));
    let Request::SyncGroup(sync) = h.send() else {
        panic!("SyncGroup")
    };
    let java = sync
        .assignments
        .iter()
        .find(|a| a.member_id.as_str() == "java")
        .map(|a| codec::decode_assignment(&a.assignment).expect("assignment"));
    assert_eq!(
        java,
        Some(vec![
            tp(0),
            TopicPartition::new("u", 0),
            TopicPartition::new("u", 1)
        ]),
        "the topic only the other member reads is assigned to it"
    );
    h.respond(sync_ok(&[1]));
    h.send();
    h.respond(offsets(&[(1, -1)]));
    h.events();
    // The refresh watches `u` too: partitions added to it make the leader rebalance.
    h.now = h.m.next_metadata;
    let (refresh, _) = h.next_main(None);
    assert_eq!(requested_topics(&refresh), vec!["t", "u"]);
    h.respond(metadata_of(&[("t", 2), ("u", 4)]));
    assert!(
        matches!(&h.events()[..], [Event::Revoke { lost: false, reason, .. }] if reason.contains("partition counts")),
        "a new partition of another member's topic is noticed"
    );
}

fn cooperative_config() -> Config {
    Config {
        assignors: vec![Assignor::CooperativeSticky],
        ..config()
    }
}

/// A JoinGroup answer choosing cooperative-sticky, with us as a follower.
fn join_cooperative(generation: i32) -> Response {
    let Response::JoinGroup(r) = join_ok("me", "other", generation, &[]) else {
        unreachable!()
    };
    Response::JoinGroup(r.with_protocol_name(Some(StrBytes::from_static_str("cooperative-sticky"))))
}

fn owned_in(request: &Request) -> (Vec<TopicPartition>, i32) {
    let Request::JoinGroup(join) = request else {
        panic!("expected JoinGroup, got {request:?}")
    };
    let sub = codec::decode_subscription(&join.protocols[0].metadata).expect("subscription");
    (sub.owned_partitions, sub.generation_id)
}

/// A cooperative follower, stable with `parts` in generation 1.
fn cooperative_member(parts: &[i32]) -> Harness {
    let mut h = Harness::new(cooperative_config());
    h.send();
    h.respond(coordinator(1));
    h.send();
    h.respond(join_cooperative(1));
    h.send();
    h.respond(sync_ok(parts));
    h.send();
    h.respond(offsets(&parts.iter().map(|&p| (p, -1)).collect::<Vec<_>>()));
    h.events();
    assert_eq!(h.m.state(), State::Stable);
    h
}

#[test]
fn a_cooperative_member_keeps_its_partitions_through_a_rebalance_and_revokes_only_what_moves() {
    let mut h = cooperative_member(&[0, 1, 2]);
    h.m.set_position(&tp(2), 7);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    assert!(
        !h.events().iter().any(|e| matches!(e, Event::Revoke { .. })),
        "nothing revoked to rejoin"
    );
    let join = h.send();
    assert_eq!(
        owned_in(&join),
        (vec![tp(0), tp(1), tp(2)], 1),
        "the JoinGroup names what we own, and its generation"
    );
    assert_eq!(h.m.assignment(), &[tp(0), tp(1), tp(2)], "still consumed");
    h.m.set_position(&tp(0), 3);
    h.respond(join_cooperative(2));
    h.send();
    h.respond(sync_ok(&[0, 1]));
    assert_eq!(
        h.events_after_joining(),
        vec![Event::Revoke {
            partitions: vec![tp(2)],
            lost: false,
            reason: "the new assignment moves them to another member".into()
        }]
    );
    h.m.revoke_done();
    let (commit, _) = h.next_main(None);
    assert_eq!(committed_offsets(&commit), vec![(0, 3), (2, 7)]);
    h.respond(commit_answer(&commit, None));
    h.events();
    let (join, _) = h.next_main(None);
    assert_eq!(
        owned_in(&join),
        (vec![tp(0), tp(1)], 2),
        "rejoins at once without the revoked partition"
    );
    h.respond(join_cooperative(3));
    h.send();
    h.respond(sync_ok(&[0, 1]));
    assert_eq!(
        h.events_after_joining(),
        vec![Event::Assigned {
            generation: 3,
            partitions: vec![],
            owned: vec![tp(0), tp(1)]
        }],
        "nothing new to fetch offsets for, nothing restarted"
    );
    assert_eq!(h.m.state(), State::Stable);
}

#[test]
fn a_cooperative_member_fetches_offsets_only_for_what_it_gains() {
    let mut h = cooperative_member(&[0]);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    h.send();
    h.respond(join_cooperative(2));
    h.send();
    h.respond(sync_ok(&[0, 3]));
    let Request::OffsetFetch(fetch) = h.send() else {
        panic!("OffsetFetch")
    };
    assert_eq!(
        fetch
            .topics
            .as_ref()
            .map(|t| t[0].partition_indexes.clone()),
        Some(vec![3])
    );
    h.respond(offsets(&[(3, 11)]));
    assert_eq!(
        h.events_after_joining(),
        vec![Event::Assigned {
            generation: 2,
            partitions: vec![(tp(3), Some(11))],
            owned: vec![tp(0), tp(3)]
        }]
    );
}

#[test]
fn a_cooperative_member_that_is_fenced_loses_everything_without_committing() {
    let mut h = cooperative_member(&[0, 1]);
    h.m.set_position(&tp(0), 5);
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    h.send();
    h.respond(join_error(ResponseError::UnknownMemberId, ""));
    assert!(matches!(
        &h.events()[..],
        [Event::Revoke { lost: true, partitions, .. }] if partitions == &[tp(0), tp(1)]
    ));
    h.m.revoke_done();
    let (join, _) = h.next_main(None);
    assert_eq!(owned_in(&join).0, vec![], "owns nothing any more");
}

#[test]
fn a_list_naming_an_eager_assignor_rebalances_eagerly_like_java() {
    let mut c = config();
    c.assignors = vec![Assignor::Range, Assignor::CooperativeSticky];
    let mut h = Harness::new(c);
    h.join(false, &[0, 1]);
    h.events();
    h.advance(HB);
    h.send();
    h.respond(heartbeat(Some(ResponseError::RebalanceInProgress)));
    assert!(matches!(
        &h.events()[..],
        [Event::Revoke { lost: false, partitions, .. }] if partitions == &[tp(0), tp(1)]
    ));
}
