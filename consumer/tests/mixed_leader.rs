//! Our member leading a group with Java members: it assigns (and keeps watching) topics only the
//! Java member reads, and a group whose members set `client.rack` is still split exactly.
//! Assignments are read from the broker (DescribeGroups), not from log lines.

mod common;

use std::{
    collections::BTreeSet,
    process::{Child, Stdio},
    time::Duration,
};

use common::{broker, consumer, describe, heavy};
use group::TopicPartition;
use testkit::{unique, wait_for};

const POLL: Duration = Duration::from_millis(500);

/// The Java group member, quiet, with `extra` arguments.
fn java(broker: &str, group: &str, topics: &str, extra: &[&str]) -> Child {
    testkit::java::group_member()
        .args(["--brokers", broker, "--group", group, "--topic", topics])
        .args(["--seconds", "90"])
        .args(extra)
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the Java member")
}

/// client id -> assignment, once the group is stable with `n` members.
fn stable_assignments(
    broker: &str,
    group: &str,
    n: usize,
) -> Option<Vec<(String, Vec<TopicPartition>)>> {
    let g = describe(broker, group);
    (g.state == "Stable" && g.members.len() == n).then(|| {
        g.members
            .into_iter()
            .map(|m| (m.client_id, m.assignment))
            .collect()
    })
}

/// Whether the Java member owns exactly partitions `0..count` of `topic` in a stable group of two.
fn java_owns(broker: &str, group: &str, topic: &str, count: i32) -> Option<()> {
    let java: BTreeSet<TopicPartition> = stable_assignments(broker, group, 2)?
        .into_iter()
        .find(|(client, _)| client == "java-member")?
        .1
        .into_iter()
        .filter(|tp| tp.topic == topic)
        .collect();
    let want: BTreeSet<TopicPartition> =
        (0..count).map(|p| TopicPartition::new(topic, p)).collect();
    (java == want).then_some(())
}

fn stop(mut child: Child) {
    testkit::sigterm(child.id());
    let deadline = std::time::Instant::now() + Duration::from_secs(30);
    while std::time::Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn our_leader_assigns_and_watches_a_topic_only_the_java_member_reads() {
    let _turn = heavy();
    let broker = broker();
    let addr = broker.addr();
    let (t, u, group) = (unique("ours"), unique("java-only"), unique("extra-topic"));
    testkit::create_topic(&addr, &t, 3);
    testkit::create_topic(&addr, &u, 2);
    // Ours joins first and alone, so it leads; the Java member then joins the group it leads.
    let mut ours = consumer(broker, &t, &group, "rust-leader", &[]);
    wait_for("our member alone", Duration::from_secs(60), POLL, || {
        stable_assignments(&addr, &group, 1)
    });
    let peer = java(&addr, &group, &format!("{t},{u}"), &[]);
    wait_for(
        "the Java member assigned every partition of its extra topic",
        Duration::from_secs(60),
        POLL,
        || java_owns(&addr, &group, &u, 2),
    );
    let err = ours.stderr();
    let last_join = err
        .lines()
        .rev()
        .find(|l| l.contains("joined the group"))
        .unwrap_or_default();
    assert!(
        last_join.contains("as leader"),
        "precondition: ours leads: {last_join}"
    );
    // Partitions added to the topic only the Java member reads: our leader's refresh
    // (METADATA_REFRESH=2s) must notice and rebalance.
    let (code, out, errs) = testkit::java::tool(
        "org.apache.kafka.tools.TopicCommand",
        &[
            "--bootstrap-server",
            &addr,
            "--alter",
            "--topic",
            &u,
            "--partitions",
            "4",
        ],
    );
    assert_eq!(code, Some(0), "{out}{errs}");
    wait_for(
        "the Java member assigned the new partitions",
        Duration::from_secs(60),
        POLL,
        || java_owns(&addr, &group, &u, 4),
    );
    stop(peer);
    ours.terminate(Duration::from_secs(20));
}

#[test]
fn a_mixed_group_with_racks_set_is_split_exactly_and_our_rack_is_sent() {
    let _turn = heavy();
    let broker = broker();
    let addr = broker.addr();
    let (t, group) = (unique("racks"), unique("racks-g"));
    testkit::create_topic(&addr, &t, 9);
    let mut ours = consumer(broker, &t, &group, "rust-r1", &[("CLIENT_RACK", "r1")]);
    let peers = [
        java(
            &addr,
            &group,
            &t,
            &["--rack", "r1", "--client-id", "java-r1"],
        ),
        java(
            &addr,
            &group,
            &t,
            &["--rack", "r2", "--client-id", "java-r2"],
        ),
    ];
    let all = wait_for(
        "three members splitting the topic",
        Duration::from_secs(90),
        POLL,
        || {
            let all = stable_assignments(&addr, &group, 3)?;
            let parts: Vec<&TopicPartition> = all.iter().flat_map(|(_, a)| a).collect();
            let distinct: BTreeSet<&TopicPartition> = parts.iter().copied().collect();
            (parts.len() == 9 && distinct.len() == 9).then_some(all)
        },
    );
    assert!(
        all.iter().all(|(_, a)| a.len() == 3),
        "range over 9 partitions and 3 members, racks or not: {all:?}"
    );
    let racks: BTreeSet<(String, Option<String>)> = describe(&addr, &group)
        .members
        .into_iter()
        .map(|m| (m.client_id, m.rack))
        .collect();
    assert!(
        racks.contains(&("rust-r1".to_string(), Some("r1".to_string()))),
        "CLIENT_RACK reaches the leader in the subscription: {racks:?}"
    );
    for peer in peers {
        stop(peer);
    }
    ours.terminate(Duration::from_secs(20));
}
