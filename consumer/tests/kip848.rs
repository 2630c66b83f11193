//! The KIP-848 protocol (`GROUP_PROTOCOL=consumer`) on Apache Kafka 4.x: scaling, a killed member,
//! a group shared with the Java client and librdkafka, and a broker without the protocol.
//!
//! The broker times KIP-848 heartbeats and sessions (`group.consumer.*`), so this binary's broker
//! shortens them as the classic tests shorten the clients' own: 500 ms heartbeats, 6 s sessions.

mod common;

use std::{
    collections::BTreeSet,
    io::{BufRead, BufReader},
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex, OnceLock},
    time::{Duration, Instant},
};

use common::{assignment, consumer, covers_exactly, heavy, printed, tally};
use testkit::{produce, unique, wait_for, Broker, Spawned};

const POLL: Duration = Duration::from_millis(20);
const CONSUMER: [(&str, &str); 1] = [("GROUP_PROTOCOL", "consumer")];

/// Apache Kafka with KIP-848 timers short enough for tests.
fn broker() -> &'static Broker {
    static BROKER: OnceLock<Broker> = OnceLock::new();
    BROKER.get_or_init(|| {
        Broker::start_with(
            Broker::options(1)
                .property("group.consumer.heartbeat.interval.ms", 500)
                .property("group.consumer.min.heartbeat.interval.ms", 500)
                .property("group.consumer.session.timeout.ms", 6000)
                .property("group.consumer.min.session.timeout.ms", 6000),
        )
    })
}

#[test]
fn scale_1_to_9_then_9_to_1_by_sigterm_without_processing_anything_twice() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("k848-scale"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "rate",
        100,
        Duration::from_secs(120),
    );

    let first = consumer(broker, &topic, &group, "c0", &CONSUMER);
    wait_for("c0 owns all 9", Duration::from_secs(30), POLL, || {
        (assignment(&first).map(|a| a.len()) == Some(9)).then_some(())
    });

    let scaled = Instant::now();
    let mut members: Vec<Spawned> = vec![first];
    for i in 1..9 {
        members.push(consumer(
            broker,
            &topic,
            &group,
            &format!("c{i}"),
            &CONSUMER,
        ));
    }
    wait_for("one partition each", Duration::from_secs(60), POLL, || {
        let refs: Vec<&Spawned> = members.iter().collect();
        covers_exactly(&refs, 9).filter(|a| a.iter().all(|p| p.len() == 1))
    });
    let settle = scaled.elapsed();
    let before: Vec<usize> = members.iter().map(|m| printed(m).len()).collect();
    wait_for("all nine consuming", Duration::from_secs(30), POLL, || {
        members
            .iter()
            .zip(&before)
            .all(|(m, n)| printed(m).len() > *n)
            .then_some(())
    });
    eprintln!("KIP-848 scale 1 -> 9 settled in {settle:?}");

    let mut survivor = members.remove(0);
    for m in &mut members {
        assert_eq!(
            m.terminate(Duration::from_secs(15)),
            Some(0),
            "{}: {}",
            m.name,
            m.stderr()
        );
        assert!(
            m.stderr().contains("left the group"),
            "{} did not leave: {}",
            m.name,
            m.stderr()
        );
    }
    let last_left = Instant::now();
    wait_for(
        "the survivor owns all 9",
        Duration::from_secs(30),
        Duration::from_millis(5),
        || (assignment(&survivor).map(|a| a.len()) == Some(9)).then_some(()),
    );
    eprintln!(
        "KIP-848 9 -> 1: the survivor owned all 9 partitions {:?} after the last leave",
        last_left.elapsed()
    );

    let sent = producer.stop();
    wait_for(
        "the survivor to catch up",
        Duration::from_secs(30),
        POLL,
        || {
            let all: Vec<&Spawned> = std::iter::once(&survivor).chain(members.iter()).collect();
            (tally(&all).len() as u64 >= sent).then_some(())
        },
    );
    assert_eq!(survivor.terminate(Duration::from_secs(15)), Some(0));
    let all: Vec<&Spawned> = std::iter::once(&survivor).chain(members.iter()).collect();
    let seen = tally(&all);
    let missing: Vec<u64> = (1..=sent)
        .filter(|s| !seen.contains_key(&("rate".to_string(), *s)))
        .collect();
    let twice: Vec<_> = seen.iter().filter(|(_, n)| **n > 1).collect();
    assert!(
        missing.is_empty(),
        "lost {} messages: {missing:?}",
        missing.len()
    );
    assert!(
        twice.is_empty(),
        "graceful KIP-848 scaling processed {} messages twice: {twice:?}",
        twice.len()
    );
}

#[test]
fn a_killed_member_s_partitions_move_after_the_broker_s_session_timeout_and_nothing_is_lost() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("k848-kill"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "rate",
        100,
        Duration::from_secs(120),
    );
    let mut members: Vec<Spawned> = (0..3)
        .map(|i| consumer(broker, &topic, &group, &format!("k{i}"), &CONSUMER))
        .collect();
    wait_for(
        "three members, three each",
        Duration::from_secs(60),
        POLL,
        || {
            let refs: Vec<&Spawned> = members.iter().collect();
            covers_exactly(&refs, 9).filter(|a| a.iter().all(|p| p.len() == 3))
        },
    );
    std::thread::sleep(Duration::from_secs(2));
    members[2].kill();
    let killed = Instant::now();
    wait_for(
        "the survivors own all 9",
        Duration::from_secs(30),
        POLL,
        || {
            let refs: Vec<&Spawned> = members[..2].iter().collect();
            covers_exactly(&refs, 9)
        },
    );
    let moved = killed.elapsed();
    eprintln!("KIP-848: the killed member's partitions moved after {moved:?}");
    assert!(
        moved >= Duration::from_secs(4),
        "{moved:?}: moved before the 6 s session could have expired"
    );
    let sent = producer.stop();
    wait_for(
        "the survivors catch up",
        Duration::from_secs(30),
        POLL,
        || {
            let all: Vec<&Spawned> = members.iter().collect();
            (tally(&all).len() as u64 >= sent).then_some(())
        },
    );
    for m in &mut members[..2] {
        assert_eq!(m.terminate(Duration::from_secs(15)), Some(0));
    }
    let all: Vec<&Spawned> = members.iter().collect();
    let seen = tally(&all);
    let missing: Vec<u64> = (1..=sent)
        .filter(|s| !seen.contains_key(&("rate".to_string(), *s)))
        .collect();
    assert!(missing.is_empty(), "lost {}: {missing:?}", missing.len());
}

/// A peer's whole assignment and its record count, from its JSON lines (tests/java/GroupMember.java,
/// tests/py/group_member.py).
#[derive(Default)]
struct PeerView {
    assigned: Option<BTreeSet<i32>>,
    records: usize,
}

fn watch(child: &mut Child) -> Arc<Mutex<PeerView>> {
    let view = Arc::new(Mutex::new(PeerView::default()));
    if let Some(stdout) = child.stdout.take() {
        let view = Arc::clone(&view);
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines().map_while(Result::ok) {
                let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else {
                    continue;
                };
                let mut view = view.lock().unwrap_or_else(|p| p.into_inner());
                if let Some(list) = v["assigned"].as_array() {
                    view.assigned = Some(
                        list.iter()
                            .filter_map(|p| p.as_i64())
                            .map(|p| p as i32)
                            .collect(),
                    );
                } else if let Some(list) = v["revoked"].as_array() {
                    let gone: BTreeSet<i32> = list
                        .iter()
                        .filter_map(|p| p.as_i64())
                        .map(|p| p as i32)
                        .collect();
                    if let Some(a) = view.assigned.as_mut() {
                        a.retain(|p| !gone.contains(p));
                    }
                } else if v.get("partition").is_some() {
                    view.records += 1;
                }
            }
        });
    }
    view
}

struct Peer {
    child: Child,
    view: Arc<Mutex<PeerView>>,
}

impl Peer {
    fn start(mut cmd: Command) -> Self {
        let mut child = cmd
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("starting a peer");
        let view = watch(&mut child);
        Self { child, view }
    }

    fn assigned(&self) -> Option<BTreeSet<i32>> {
        self.view
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .assigned
            .clone()
    }

    fn records(&self) -> usize {
        self.view.lock().unwrap_or_else(|p| p.into_inner()).records
    }

    fn stop(&mut self) {
        testkit::sigterm(self.child.id());
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

#[test]
fn ours_java_and_librdkafka_share_a_kip848_group_disjointly_and_all_consume() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("k848-mixed"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "rate",
        100,
        Duration::from_secs(120),
    );
    let addr = broker.addr();
    let mut java_cmd = testkit::java::group_member();
    java_cmd
        .args(["--brokers", &addr, "--group", &group, "--topic", &topic])
        .args(["--seconds", "90", "--protocol", "consumer"]);
    let mut java = Peer::start(java_cmd);
    let mut py = Command::new(testkit::python::interpreter());
    py.arg(testkit::workspace_root().join("tests/py/group_member.py"))
        .args([
            "--client",
            "confluent",
            "--brokers",
            &addr,
            "--group",
            &group,
            "--topic",
            &topic,
        ])
        .args(["--seconds", "90", "--protocol", "consumer"]);
    let mut rdkafka = Peer::start(py);
    let mut ours = consumer(broker, &topic, &group, "ours", &CONSUMER);

    let split = wait_for(
        "three members splitting 9 partitions disjointly",
        Duration::from_secs(60),
        POLL,
        || {
            let a = assignment(&ours)?.into_iter().collect::<BTreeSet<i32>>();
            let b = java.assigned()?;
            let c = rdkafka.assigned()?;
            let disjoint = a.is_disjoint(&b) && a.is_disjoint(&c) && b.is_disjoint(&c);
            let all: BTreeSet<i32> = a.iter().chain(&b).chain(&c).copied().collect();
            let even = [&a, &b, &c].iter().all(|s| s.len() == 3);
            (disjoint && even && all == (0..9).collect()).then_some((a, b, c))
        },
    );
    eprintln!(
        "KIP-848 mixed group: ours {:?}, Java {:?}, librdkafka {:?}",
        split.0, split.1, split.2
    );
    let (ours_before, java_before, rd_before) =
        (printed(&ours).len(), java.records(), rdkafka.records());
    wait_for("all three consuming", Duration::from_secs(30), POLL, || {
        (printed(&ours).len() > ours_before
            && java.records() > java_before
            && rdkafka.records() > rd_before)
            .then_some(())
    });
    producer.stop();
    assert_eq!(
        ours.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        ours.stderr()
    );
    java.stop();
    rdkafka.stop();
}

#[test]
fn a_broker_without_the_protocol_gets_a_clear_message_and_the_way_back() {
    // The consumer protocol switched off, as on a cluster whose group.version feature is 0.
    let mut classic_only = Broker::start_with(
        Broker::options(1).property("group.coordinator.rebalance.protocols", "classic"),
    );
    let (topic, group) = (unique("k848-none"), unique("g"));
    testkit::create_topic(&classic_only.addr(), &topic, 1);
    let mut member = consumer(&classic_only, &topic, &group, "old", &CONSUMER);
    let code = member.wait(Duration::from_secs(30));
    let err = member.stderr();
    assert!(matches!(code, Some(c) if c != 0), "exit {code:?}: {err}");
    assert!(err.contains("Kafka 4.0"), "{err}");
    assert!(err.contains("GROUP_PROTOCOL=classic"), "{err}");
    classic_only.stop();
}

#[test]
fn a_static_member_that_restarts_within_its_session_gets_its_partitions_back() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("k848-static"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 4);
    let env = |id: &'static str| [("GROUP_PROTOCOL", "consumer"), ("GROUP_INSTANCE_ID", id)];
    let a = consumer(broker, &topic, &group, "a", &env("pod-a"));
    let mut b = consumer(broker, &topic, &group, "b", &env("pod-b"));
    let (mine, theirs) = wait_for(
        "two static members, two each",
        Duration::from_secs(60),
        POLL,
        || {
            let (x, y) = (assignment(&a)?, assignment(&b)?);
            (x.len() == 2 && y.len() == 2).then_some((x, y))
        },
    );
    // SIGTERM: a temporary leave (epoch -2); the broker keeps b's partitions for its session.
    assert_eq!(
        b.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        b.stderr()
    );
    std::thread::sleep(Duration::from_secs(2));
    assert_eq!(
        assignment(&a),
        Some(mine.clone()),
        "a took b's partitions during b's restart"
    );
    let b2 = consumer(broker, &topic, &group, "b2", &env("pod-b"));
    let back = wait_for(
        "b back with its partitions",
        Duration::from_secs(30),
        POLL,
        || assignment(&b2).filter(|p| !p.is_empty()),
    );
    assert_eq!(back, theirs, "the same partitions, no reassignment");
    assert_eq!(assignment(&a), Some(mine));
}

#[test]
fn a_classic_member_and_a_kip848_member_share_one_group() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("k848-migrate"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 6);
    let classic = consumer(broker, &topic, &group, "classic", &[]);
    wait_for(
        "the classic member owns all 6",
        Duration::from_secs(30),
        POLL,
        || (assignment(&classic).map(|a| a.len()) == Some(6)).then_some(()),
    );
    // Kafka 4.x converts the group (group.consumer.migration.policy, bidirectional by default).
    let kip848 = consumer(broker, &topic, &group, "kip848", &CONSUMER);
    let split = wait_for(
        "three each, disjoint",
        Duration::from_secs(60),
        POLL,
        || covers_exactly(&[&classic, &kip848], 6).filter(|a| a.iter().all(|p| p.len() == 3)),
    );
    eprintln!("classic {:?}, KIP-848 {:?}", split[0], split[1]);
}
