//! The forecast on a real broker: producers at a fixed rate, consumers with a fixed cost per message.
//! The consumer count `admin lag --watch` predicts must be the smallest that drains the lag, and one
//! fewer must not.

use std::time::Duration;

use serde_json::Value;
use testkit::{produce, run_bin, unique, wait_for, Broker, Spawned};

const ADMIN: &str = env!("CARGO_BIN_EXE_admin");

fn total_lag(broker: &Broker, group: &str, topic: &str) -> i64 {
    let (code, out, err) = run_bin(
        ADMIN,
        &[
            "lag", "--group", group, "--topic", topic, "--format", "json",
        ],
        &[("KAFKA_BROKERS", &broker.addr())],
        Duration::from_secs(30),
    );
    assert_eq!(code, Some(0), "{err}");
    let v: Value = serde_json::from_str(out.trim()).expect("json");
    v["total_lag"].as_i64().expect("total_lag")
}

fn owned(c: &Spawned) -> Option<usize> {
    let err = c.stderr();
    let line = err
        .lines()
        .rev()
        .find(|l| l.contains("partitions assigned") || l.contains("revoking partitions"))?;
    line.contains("partitions assigned")
        .then(|| {
            line.split("count=")
                .nth(1)?
                .split_whitespace()
                .next()?
                .parse()
                .ok()
        })
        .flatten()
}

/// Lag change over `secs` once `members` own all 9 partitions.
fn lag_trend(
    broker: &Broker,
    group: &str,
    topic: &str,
    members: &[Spawned],
    secs: u64,
) -> (i64, i64) {
    wait_for(
        "the group to settle",
        Duration::from_secs(60),
        Duration::from_millis(100),
        || (members.iter().map(owned).sum::<Option<usize>>() == Some(9)).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(2));
    let before = total_lag(broker, group, topic);
    std::thread::sleep(Duration::from_secs(secs));
    (before, total_lag(broker, group, topic))
}

#[test]
fn the_predicted_consumer_count_drains_the_lag_and_one_fewer_does_not() {
    let broker = Broker::shared();
    let (topic, group) = (unique("forecast"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "f",
        200,
        Duration::from_secs(240),
    );
    let consumer = testkit::workspace_bin("consumer");
    let addr = broker.addr();
    let start = |i: usize| {
        Spawned::start(
            &format!("c{i}"),
            &consumer,
            &[
                ("KAFKA_BROKERS", addr.as_str()),
                ("TOPIC", topic.as_str()),
                ("GROUP_ID", group.as_str()),
                ("CLIENT_ID", &format!("c{i}")),
                ("PROCESS_DELAY_MS", "11"),
                ("AUTO_COMMIT_INTERVAL", "1s"),
                ("HEARTBEAT_INTERVAL", "500ms"),
                ("SESSION_TIMEOUT", "6s"),
                ("METRICS_ADDR", ""),
            ],
        )
    };

    // One consumer falls behind; the forecast measures its capacity and predicts.
    let mut members = vec![start(0)];
    wait_for(
        "one member owning all 9",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || (owned(&members[0]) == Some(9)).then_some(()),
    );
    let (code, out, err) = run_bin(
        ADMIN,
        &[
            "lag",
            "--group",
            &group,
            "--topic",
            &topic,
            "--watch",
            "1s",
            "--window",
            "15s",
            "--samples",
            "18",
            "--format",
            "json",
        ],
        &[("KAFKA_BROKERS", &addr)],
        Duration::from_secs(90),
    );
    assert_eq!(code, Some(0), "{err}");
    let last: Value = serde_json::from_str(out.lines().last().unwrap_or_default()).expect("json");
    let needed = &last["forecast"]["consumers_needed"];
    assert_eq!(needed["kind"], "count", "{last}");
    let predicted = needed["count"].as_u64().expect("count") as usize;
    eprintln!(
        "forecast: {predicted} consumers (one handles {:.1}/s), producing {:.1}/s",
        needed["capacity_per_consumer"].as_f64().unwrap_or(0.0),
        last["forecast"]["produce_rate"].as_f64().unwrap_or(0.0)
    );
    assert!(
        (2..=8).contains(&predicted),
        "an 11 ms cost at 200 msg/s needs a few consumers: {last}"
    );

    // One fewer than predicted: the lag keeps growing.
    members.extend((1..predicted - 1).map(start));
    let (before, after) = lag_trend(broker, &group, &topic, &members, 10);
    eprintln!("{} consumers: lag {before} -> {after}", predicted - 1);
    assert!(
        after > before,
        "with {} consumers the lag should grow: {before} -> {after}",
        predicted - 1
    );

    // As predicted: it drains.
    members.push(start(predicted - 1));
    let (before, after) = lag_trend(broker, &group, &topic, &members, 10);
    eprintln!("{predicted} consumers: lag {before} -> {after}");
    assert!(
        after < before,
        "with {predicted} consumers the lag should fall: {before} -> {after}"
    );

    producer.stop();
    for m in &mut members {
        m.terminate(Duration::from_secs(15));
    }
}
