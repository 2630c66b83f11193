//! Our consumer in one group with kafka-python and librdkafka (confluent-kafka) members: the
//! partitions must be split disjointly and completely whichever client leads.

mod common;

use std::{
    process::{Child, Command, Stdio},
    sync::{Arc, Mutex},
    time::Duration,
};

use common::{assignment, broker, consumer, heavy};
use testkit::{unique, wait_for, Broker, Spawned};

const POLL: Duration = Duration::from_millis(50);

/// A kafka-python or confluent-kafka member running `tests/py/group_member.py`.
struct Peer {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl Peer {
    fn start(client: &str, broker: &Broker, group: &str, topic: &str) -> Self {
        Self::start_with(client, broker, group, topic, &[])
    }

    fn start_with(client: &str, broker: &Broker, group: &str, topic: &str, extra: &[&str]) -> Self {
        let script = testkit::workspace_root().join("tests/py/group_member.py");
        let mut child = Command::new(testkit::python::interpreter())
            .arg(script)
            .args([
                "--client",
                client,
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
            .expect("python member");
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
            ours.push(consumer(&broker, &topic, &group, "ours-0", &[]));
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
            peers.push(Peer::start(peer, &broker, &group, &topic));
            wait_for(
                "the peer leader to own all 9",
                Duration::from_secs(60),
                POLL,
                || (peers[0].assignment().map(|a| a.len()) == Some(9)).then_some(()),
            );
        }
    }
    for client in ["kafka-python", "confluent"] {
        if leader != client {
            peers.push(Peer::start(client, &broker, &group, &topic));
        }
    }
    while ours.len() < 2 {
        let name = format!("ours-{}", ours.len());
        ours.push(consumer(&broker, &topic, &group, &name, &[]));
    }
    let split = wait_for(
        "a disjoint, complete split over four members",
        Duration::from_secs(90),
        POLL,
        || {
            let o: Vec<&Spawned> = ours.iter().collect();
            let p: Vec<&Peer> = peers.iter().collect();
            split_is_disjoint_and_complete(&o, &p, 9)
                .filter(|a| a.len() == 4 && a.iter().all(|p| !p.is_empty()))
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
            let mut members = vec![consumer(&broker, &topic, &group, "m0", &defaults)];
            wait_for(
                "the first member to own all 9",
                Duration::from_secs(60),
                POLL,
                || (assignment(&members[0]).map(|a| a.len()) == Some(9)).then_some(()),
            );
            let started = std::time::Instant::now();
            members.extend(
                (1..9).map(|i| consumer(&broker, &topic, &group, &format!("m{i}"), &defaults)),
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
                &broker,
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
                (1..9).map(|_| Peer::start_with(client, &broker, &group, &topic, &["--defaults"])),
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
