//! Our consumer in one group with the Java client (Apache Kafka's reference member), kafka-python and
//! librdkafka (confluent-kafka): the partitions must be split disjointly and completely whichever
//! client leads, and the Java client and ours must commit the same offsets for the same work.

mod common;

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{assignment, broker, consumer, heavy};
use testkit::{unique, wait_for, Broker, Spawned};

const POLL: Duration = Duration::from_millis(50);

/// The other clients in every mixed group, each at its default assignors.
const PEERS: [&str; 3] = ["java", "kafka-python", "confluent"];

/// A Java (`tests/java/GroupMember.java`), kafka-python or confluent-kafka
/// (`tests/py/group_member.py`) member. Both print the same JSON lines.
struct Peer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    fn start(client: &str, broker: &Broker, group: &str, topic: &str) -> Self {
        Self::start_with(client, broker, group, topic, &[])
    }

    fn start_with(client: &str, broker: &Broker, group: &str, topic: &str, extra: &[&str]) -> Self {
        let mut command = if client == "java" {
            testkit::java::group_member()
        } else {
            let mut c = Command::new(testkit::python::interpreter());
            c.arg(testkit::workspace_root().join("tests/py/group_member.py"))
                .args(["--client", client]);
            c
        };
        let mut child = command
            .args([
                "--brokers",
                &broker.addr(),
                "--group",
                group,
                "--topic",
                topic,
            ])
            .args(["--seconds", "90"])
            .args(extra)
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the {client} member: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Self { child, lines }
    }

    /// The latest assignment it reported.
    fn assignment(&self) -> Option<Vec<i32>> {
        let lines = self.lines.lock().ok()?;
        lines.iter().rev().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            if v.get("revoked").is_some() {
                return Some(None);
            }
            Some(Some(
                v.get("assigned")?
                    .as_array()?
                    .iter()
                    .filter_map(|p| p.as_i64())
                    .map(|p| p as i32)
                    .collect(),
            ))
        })?
    }

    fn stop(&mut self) {
        testkit::sigterm(self.child.id());
        let _ = self.child.wait();
    }
}

impl Drop for Peer {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn split_is_disjoint_and_complete(
    ours: &[&Spawned],
    peers: &[&Peer],
    partitions: i32,
) -> Option<Vec<Vec<i32>>> {
    let mut all: Vec<Vec<i32>> = ours.iter().map(|c| assignment(c)).collect::<Option<_>>()?;
    for p in peers {
        all.push(p.assignment()?);
    }
    let mut flat: Vec<i32> = all.iter().flatten().copied().collect();
    flat.sort_unstable();
    (flat == (0..partitions).collect::<Vec<_>>()).then_some(all)
}

fn mixed_group(leader: &str) {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("mixed"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);

    // The first member to join leads the group.
    let mut peers = Vec::new();
    let mut ours = Vec::new();
    match leader {
        "ours" => {
            ours.push(consumer(broker, &topic, &group, "ours-0", &[]));
            wait_for(
                "our leader to own all 9",
                Duration::from_secs(30),
                POLL,
                || (assignment(&ours[0]).map(|a| a.len()) == Some(9)).then_some(()),
            );
            assert!(
                ours[0].stderr().contains("joined the group as leader"),
                "{}",
                ours[0].stderr()
            );
        }
        peer => {
            peers.push(Peer::start(peer, broker, &group, &topic));
            wait_for(
                "the peer leader to own all 9",
                Duration::from_secs(60),
                POLL,
                || (peers[0].assignment().map(|a| a.len()) == Some(9)).then_some(()),
            );
        }
    }
    for client in PEERS {
        if leader != client {
            peers.push(Peer::start(client, broker, &group, &topic));
        }
    }
    while ours.len() < 2 {
        let name = format!("ours-{}", ours.len());
        ours.push(consumer(broker, &topic, &group, &name, &[]));
    }
    let split = wait_for(
        "a disjoint, complete split over five members",
        Duration::from_secs(90),
        POLL,
        || {
            let o: Vec<&Spawned> = ours.iter().collect();
            let p: Vec<&Peer> = peers.iter().collect();
            split_is_disjoint_and_complete(&o, &p, 9)
                .filter(|a| a.len() == 5 && a.iter().all(|p| !p.is_empty()))
        },
    );
    eprintln!("{leader} leading: {split:?}");
    for p in &mut peers {
        p.stop();
    }
    for c in &mut ours {
        assert_eq!(
            c.terminate(Duration::from_secs(15)),
            Some(0),
            "{}",
            c.stderr()
        );
    }
}

#[test]
fn mixed_group_with_our_consumer_leading() {
    mixed_group("ours");
}

#[test]
fn mixed_group_with_kafka_python_leading() {
    mixed_group("kafka-python");
}

#[test]
fn mixed_group_with_librdkafka_leading() {
    mixed_group("confluent");
}

#[test]
fn mixed_group_with_the_java_client_leading() {
    mixed_group("java");
}

/// Scale 1 -> 9 with each client at its default settings, measured the same way in the same run: from
/// starting eight more members until all nine own one partition each. Printed, not asserted (timings
/// belong to benchmarks); the test proves that each client's group converges.
#[test]
fn scale_1_to_9_settles_for_every_client_with_default_settings() {
    let _turn = heavy();
    let broker = broker();
    let mut report = Vec::new();
    for client in ["ours", "kafka-python", "confluent"] {
        let (topic, group) = (unique("settle"), unique("g"));
        testkit::create_topic(&broker.addr(), &topic, 9);
        let one_each = |a: &Vec<Vec<i32>>| a.len() == 9 && a.iter().all(|p| p.len() == 1);
        let took = if client == "ours" {
            let defaults = [
                ("HEARTBEAT_INTERVAL", "3s"),
                ("SESSION_TIMEOUT", "45s"),
                ("AUTO_COMMIT_INTERVAL", "5s"),
            ];
            let mut members = vec![consumer(broker, &topic, &group, "m0", &defaults)];
            wait_for(
                "the first member to own all 9",
                Duration::from_secs(60),
                POLL,
                || (assignment(&members[0]).map(|a| a.len()) == Some(9)).then_some(()),
            );
            let started = std::time::Instant::now();
            members.extend(
                (1..9).map(|i| consumer(broker, &topic, &group, &format!("m{i}"), &defaults)),
            );
            wait_for(
                "nine members with one partition each",
                Duration::from_secs(120),
                Duration::from_millis(10),
                || {
                    let refs: Vec<&Spawned> = members.iter().collect();
                    split_is_disjoint_and_complete(&refs, &[], 9).filter(one_each)
                },
            );
            let took = started.elapsed();
            for m in &mut members {
                m.terminate(Duration::from_secs(15));
            }
            took
        } else {
            let mut members = vec![Peer::start_with(
                client,
                broker,
                &group,
                &topic,
                &["--defaults"],
            )];
            wait_for(
                "the first member to own all 9",
                Duration::from_secs(60),
                POLL,
                || (members[0].assignment().map(|a| a.len()) == Some(9)).then_some(()),
            );
            let started = std::time::Instant::now();
            members.extend(
                (1..9).map(|_| Peer::start_with(client, broker, &group, &topic, &["--defaults"])),
            );
            wait_for(
                "nine members with one partition each",
                Duration::from_secs(120),
                Duration::from_millis(10),
                || {
                    let refs: Vec<&Peer> = members.iter().collect();
                    split_is_disjoint_and_complete(&[], &refs, 9).filter(one_each)
                },
            );
            let took = started.elapsed();
            for m in &mut members {
                m.stop();
            }
            took
        };
        report.push(format!("{client}: {:.2} s", took.as_secs_f64()));
    }
    eprintln!(
        "scale 1 -> 9 settle time with default settings: {}",
        report.join(", ")
    );
}

/// The same work, two groups: our consumer reads a topic in one, the Java client in the other. Once
/// each has read everything and left, Kafka's own `kafka-consumer-groups --describe` must show the
/// same committed offset for every partition in both, and that offset must be the log end.
#[test]
fn the_java_client_and_ours_commit_the_same_offsets_for_the_same_work() {
    let _turn = heavy();
    let broker = broker();
    let topic = unique("same-work");
    testkit::create_topic(&broker.addr(), &topic, 9);
    testkit::produce::produce_seq(&broker.addr(), &topic, 9, "w", 900);

    let ours_group = unique("ours");
    let mut c = consumer(broker, &topic, &ours_group, "ours", &[]);
    wait_for("ours to print 900", Duration::from_secs(60), POLL, || {
        (common::printed(&c).len() >= 900).then_some(())
    });
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );

    let java_group = unique("java");
    let mut java = Peer::start("java", broker, &java_group, &topic);
    wait_for("Java to read 900", Duration::from_secs(90), POLL, || {
        let lines = java.lines.lock().ok()?;
        let records = lines.iter().filter(|l| l.contains("\"offset\"")).count();
        (records >= 900).then_some(())
    });
    java.stop();

    let ours = testkit::java::describe_group(&broker.addr(), &ours_group);
    let theirs = testkit::java::describe_group(&broker.addr(), &java_group);
    assert_eq!(ours.len(), 9, "{ours:?}");
    for (o, j) in ours.iter().zip(&theirs) {
        assert_eq!(o.partition, j.partition);
        assert_eq!(
            o.current, j.current,
            "p{}: ours {o:?}, Java {j:?}",
            o.partition
        );
        assert_eq!(
            o.current, o.log_end,
            "p{}: read to the end: {o:?}",
            o.partition
        );
        assert_eq!(o.lag, Some(0), "{o:?}");
    }
}
