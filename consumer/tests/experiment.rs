//! The seed's experiment on a real broker: 200 msg/s, lag growing with one slow consumer and draining
//! with nine; and an audit that nothing is lost while the group scales up and down.

mod common;

use std::time::Duration;

use common::{assignment, broker, consumer, covers_exactly, group_offsets, heavy, tally};
use testkit::{produce, unique, wait_for, Spawned};

const POLL: Duration = Duration::from_millis(50);

fn settle(members: &[Spawned], what: &str) {
    wait_for(what, Duration::from_secs(60), POLL, || {
        let refs: Vec<&Spawned> = members.iter().collect();
        covers_exactly(&refs, 9)
    });
}

#[test]
fn audit_every_message_through_scale_1_9_3_9_at_200_per_second() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("audit"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "audit",
        200,
        Duration::from_secs(180),
    );
    let start = |i: usize| consumer(broker, &topic, &group, &format!("a{i}"), &[]);

    let mut members = vec![start(0)];
    settle(&members, "1 member");
    std::thread::sleep(Duration::from_secs(3));
    members.extend((1..9).map(start));
    settle(&members, "9 members");
    std::thread::sleep(Duration::from_secs(3));
    let mut stopped: Vec<Spawned> = members.drain(3..).collect();
    for m in &mut stopped {
        assert_eq!(
            m.terminate(Duration::from_secs(15)),
            Some(0),
            "{}",
            m.stderr()
        );
    }
    settle(&members, "3 members");
    std::thread::sleep(Duration::from_secs(3));
    members.extend((9..15).map(start));
    settle(&members, "9 members again");
    std::thread::sleep(Duration::from_secs(3));

    let sent = producer.stop();
    wait_for(
        "every message printed",
        Duration::from_secs(60),
        POLL,
        || {
            let everyone: Vec<&Spawned> = members.iter().chain(stopped.iter()).collect();
            (tally(&everyone).len() as u64 >= sent).then_some(())
        },
    );
    for m in &mut members {
        assert_eq!(
            m.terminate(Duration::from_secs(15)),
            Some(0),
            "{}",
            m.stderr()
        );
    }
    let everyone: Vec<&Spawned> = members.iter().chain(stopped.iter()).collect();
    let seen = tally(&everyone);
    let missing: Vec<u64> = (1..=sent)
        .filter(|s| !seen.contains_key(&("audit".to_string(), *s)))
        .collect();
    let duplicates: usize = seen.values().map(|n| n - 1).sum();
    eprintln!(
        "audit: {sent} sent, {} printed at least once, {duplicates} duplicates",
        seen.len()
    );
    assert!(
        missing.is_empty(),
        "{} messages never printed: {missing:?}",
        missing.len()
    );
    // Graceful rebalances commit before giving partitions up: nothing should be printed twice.
    assert_eq!(duplicates, 0, "duplicates through graceful scaling");
}

#[test]
fn the_seed_experiment_lag_grows_with_one_slow_consumer_and_drains_with_nine() {
    let _turn = heavy();
    let broker = broker();
    let (topic, group) = (unique("seed"), unique("my-group"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    let producer = produce::RateProducer::start(
        &broker.addr(),
        &topic,
        9,
        "seed",
        200,
        Duration::from_secs(180),
    );
    let slow = [("PROCESS_DELAY_MS", "20")];
    let lag = || {
        group_offsets(broker, &group, &topic, "kafka-python")["total_lag"]
            .as_u64()
            .unwrap_or(0)
    };

    let mut members = vec![consumer(broker, &topic, &group, "s0", &slow)];
    wait_for(
        "one consumer owning all 9",
        Duration::from_secs(30),
        POLL,
        || (assignment(&members[0]).map(|a| a.len()) == Some(9)).then_some(()),
    );
    std::thread::sleep(Duration::from_secs(3));
    let early = lag();
    std::thread::sleep(Duration::from_secs(6));
    let late = lag();
    eprintln!("phase 1 (1 consumer, 20 ms/message, 200 msg/s): lag {early} -> {late}");
    // One consumer handles at most 50 msg/s of the 200: lag grows by about 150 a second.
    assert!(late > early + 500, "lag should climb: {early} -> {late}");

    members.extend((1..9).map(|i| consumer(broker, &topic, &group, &format!("s{i}"), &slow)));
    settle(&members, "nine consumers");
    let peak = lag();
    let drained = wait_for(
        "the lag to drain",
        Duration::from_secs(90),
        Duration::from_millis(500),
        || {
            let now = lag();
            // 200 msg/s with a 1 s commit interval: a few hundred in flight is "caught up".
            (now < 400).then_some(now)
        },
    );
    eprintln!("phase 2 (9 consumers): lag {peak} -> {drained}");
    producer.stop();
    for m in &mut members {
        assert_eq!(
            m.terminate(Duration::from_secs(15)),
            Some(0),
            "{}",
            m.stderr()
        );
    }
}
