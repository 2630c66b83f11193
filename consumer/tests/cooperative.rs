//! Cooperative rebalancing (KIP-429) on Apache Kafka: Java members that list only
//! `cooperative-sticky` accept ours, and the partitions our member keeps through a scale-up are
//! never paused. Read from the broker (DescribeGroups) and from our metrics, not from log lines.

mod common;

use std::{
    process::{Child, Stdio},
    time::{Duration, Instant},
};

use common::{broker, consumer, describe, heavy, metrics_addr};
use testkit::{metrics, produce, unique, wait_for};

const POLL: Duration = Duration::from_millis(500);

fn java(broker: &str, group: &str, topic: &str, client: &str) -> Child {
    testkit::java::group_member()
        .args(["--brokers", broker, "--group", group, "--topic", topic])
        .args(["--assignors", "cooperative-sticky", "--client-id", client])
        .args(["--seconds", "90"])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .expect("starting the Java member")
}

fn stop(mut child: Child) {
    testkit::sigterm(child.id());
    let deadline = Instant::now() + Duration::from_secs(30);
    while Instant::now() < deadline {
        if let Ok(Some(_)) = child.try_wait() {
            return;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
    let _ = child.kill();
    let _ = child.wait();
}

#[test]
fn java_cooperative_members_accept_ours_and_kept_partitions_are_never_paused() {
    let _turn = heavy();
    let broker = broker();
    let addr = broker.addr();
    let (topic, group) = (unique("coop"), unique("coop-g"));
    testkit::create_topic(&addr, &topic, 9);
    let producer =
        produce::RateProducer::start(&addr, &topic, 9, "p", 200, Duration::from_secs(120));
    let mut ours = consumer(
        broker,
        &topic,
        &group,
        "rust-coop",
        &[("ASSIGNMENT_STRATEGY", "cooperative-sticky")],
    );
    let endpoint = wait_for(
        "our metrics endpoint",
        Duration::from_secs(30),
        POLL,
        || metrics_addr(&ours),
    );
    wait_for("ours owning all 9", Duration::from_secs(60), POLL, || {
        (metrics::settled_assignment(&endpoint)?.len() == 9).then_some(())
    });
    let paused = |endpoint: &str| {
        metrics::scrape(endpoint)
            .and_then(|s| metrics::value(&s, "consumer_rebalance_seconds_total"))
            .expect("consumer_rebalance_seconds_total")
    };
    let paused_before = paused(&endpoint);
    // Scale 1 -> 3 with Java members that speak only cooperative-sticky, sampling how many
    // partitions ours consumes all along: eager members drop to 0 for every rebalance.
    let peers = [
        java(&addr, &group, &topic, "java-coop-1"),
        java(&addr, &group, &topic, "java-coop-2"),
    ];
    let mut fewest = f64::MAX;
    let deadline = Instant::now() + Duration::from_secs(90);
    let settled = loop {
        assert!(
            Instant::now() < deadline,
            "the group never settled; log:\n{}",
            ours.stderr()
        );
        if let Some(samples) = metrics::scrape(&endpoint) {
            if let Some(n) = metrics::value(&samples, "consumer_assigned_partitions") {
                fewest = fewest.min(n);
            }
        }
        let g = describe(&addr, &group);
        if g.state == "Stable"
            && g.members.len() == 3
            && g.members.iter().all(|m| m.assignment.len() == 3)
        {
            break g;
        }
        std::thread::sleep(Duration::from_millis(50));
    };
    assert_eq!(settled.protocol, "cooperative-sticky");
    assert!(
        ours.running(),
        "accepted into the group; log:\n{}",
        ours.stderr()
    );
    // Eager members add every revoke-to-assignment pause to this counter; ours never paused.
    let paused_after = paused(&endpoint);
    assert_eq!(
        paused_after,
        paused_before,
        "seconds spent owning nothing during the scale-up; log:\n{}",
        ours.stderr()
    );
    assert!(
        fewest >= 3.0,
        "ours kept consuming what it kept through the scale-up (fewest owned: {fewest}); log:\n{}",
        ours.stderr()
    );
    producer.stop();
    for peer in peers {
        stop(peer);
    }
    ours.terminate(Duration::from_secs(20));
}
