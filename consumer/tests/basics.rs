//! The consumer against a real broker: what it reads, what it commits, how it starts and stops.

mod common;

use std::time::{Duration, Instant};

use common::{assignment, broker, consumer, group_offsets, printed};
use testkit::{produce, unique, wait_for, Broker};

const POLL: Duration = Duration::from_millis(50);

#[test]
fn one_member_gets_every_partition_prints_everything_and_commits_on_sigterm() {
    let broker = broker();
    let (topic, group) = (unique("basic"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 9);
    produce::produce_seq(&broker.addr(), &topic, 9, "pre", 90);

    let mut c = consumer(broker, &topic, &group, "solo", &[]);
    wait_for("all 9 partitions", Duration::from_secs(30), POLL, || {
        (assignment(&c).map(|a| a.len()) == Some(9)).then_some(())
    });
    wait_for("90 messages printed", Duration::from_secs(30), POLL, || {
        (printed(&c).len() >= 90).then_some(())
    });
    let seqs: std::collections::BTreeSet<u64> = printed(&c).into_iter().map(|(_, s)| s).collect();
    assert_eq!(seqs, (1..=90).collect());
    assert!(
        c.stdout()[0].starts_with(r#"Received message: {"cnt":"cnt: "#),
        "{:?}",
        c.stdout()[0]
    );

    let started = Instant::now();
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "SIGTERM took {:?}",
        started.elapsed()
    );
    let err = c.stderr();
    assert!(
        err.contains("revoking partitions") && err.contains("left the group"),
        "{err}"
    );

    // What we committed is what independent clients read back for the group.
    for client in ["kafka-python", "confluent"] {
        let offsets = group_offsets(broker, &group, &topic, client);
        assert_eq!(offsets["total_lag"], 0, "{client}: {offsets}");
        for p in 0..9 {
            assert_eq!(
                offsets["partitions"][p.to_string()]["committed"],
                10,
                "{client}: {offsets}"
            );
        }
    }
}

#[test]
fn reads_what_librdkafka_writes_with_every_codec_keys_headers_and_nulls() {
    let broker = broker();
    let (topic, group) = (unique("codecs"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 3);
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        testkit::python::run(
            "produce_compressed.py",
            &[
                "--brokers",
                &broker.addr(),
                "--topic",
                &topic,
                "--compression",
                codec,
                "--count",
                "20",
            ],
        );
    }
    let c = consumer(broker, &topic, &group, "codecs", &[]);
    wait_for("84 messages", Duration::from_secs(30), POLL, || {
        (c.stdout().len() >= 84).then_some(())
    });
    let lines = c.stdout();
    for codec in ["gzip", "snappy", "lz4", "zstd"] {
        let n = lines
            .iter()
            .filter(|l| l.contains(&format!(r#""codec": "{codec}""#)))
            .count();
        assert_eq!(n, 20, "{codec}: {lines:?}");
    }
    assert_eq!(
        lines
            .iter()
            .filter(|l| *l == "Received message: null")
            .count(),
        4
    );
    assert!(!c.stderr().contains("ERROR"), "{}", c.stderr());
}

#[test]
fn a_message_that_is_not_json_is_counted_skipped_and_committed_past() {
    let broker = broker();
    let (topic, group) = (unique("bad"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 1);
    let values = vec![
        Some(produce::payload("p", 1)),
        Some(b"this is not json".to_vec()),
        Some(vec![0xff, 0xfe, 0x00]),
        Some(produce::payload("p", 2)),
    ];
    produce::produce(&broker.addr(), &topic, 1, values);
    let mut c = consumer(broker, &topic, &group, "bad", &[]);
    wait_for("both valid messages", Duration::from_secs(30), POLL, || {
        (printed(&c).len() >= 2).then_some(())
    });
    assert_eq!(c.terminate(Duration::from_secs(15)), Some(0));
    let err = c.stderr();
    assert!(
        err.contains("skipping a message that is not valid JSON") && err.contains("offset=1"),
        "{err}"
    );
    assert!(
        err.contains("offset=2") && err.contains("not UTF-8"),
        "{err}"
    );
    let offsets = group_offsets(broker, &group, &topic, "kafka-python");
    assert_eq!(
        offsets["partitions"]["0"]["committed"], 4,
        "committed past the bad ones: {offsets}"
    );
}

#[test]
fn waits_for_a_broker_that_is_down_at_start_and_a_topic_created_later() {
    let port = testkit::closed_port();
    let (topic, group) = (unique("late"), unique("g"));
    let addr = format!("127.0.0.1:{port}");
    let c = testkit::Spawned::start(
        "late",
        common::CONSUMER,
        &[
            ("KAFKA_BROKERS", &addr),
            ("TOPIC", &topic),
            ("GROUP_ID", &group),
            ("HEARTBEAT_INTERVAL", "500ms"),
            ("METADATA_REFRESH", "1s"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    let broker = Broker::start_on(port);
    wait_for(
        "the consumer to join with nothing to consume",
        Duration::from_secs(30),
        POLL,
        || (assignment(&c) == Some(vec![])).then_some(()),
    );
    testkit::create_topic(&broker.addr(), &topic, 3);
    produce::produce_seq(&broker.addr(), &topic, 3, "p", 30);
    wait_for(
        "the new topic's messages",
        Duration::from_secs(30),
        POLL,
        || (printed(&c).len() >= 30).then_some(()),
    );
    let err = c.stderr();
    assert!(err.contains("Kafka is not reachable yet"), "{err}");
    assert!(
        err.contains("partition counts changed"),
        "the leader noticed the topic: {err}"
    );
}

#[test]
fn bad_environment_is_rejected_naming_the_variable() {
    for (env, expected) in [
        (vec![], "KAFKA_BROKERS is required"),
        (
            vec![("KAFKA_BROKERS", "k:1"), ("AUTO_OFFSET_RESET", "middle")],
            "AUTO_OFFSET_RESET",
        ),
        (
            vec![("KAFKA_BROKERS", "k:1"), ("ASSIGNMENT_STRATEGY", "sticky")],
            "ASSIGNMENT_STRATEGY",
        ),
        (
            vec![("KAFKA_BROKERS", "k:1"), ("ISOLATION_LEVEL", "read_all")],
            "ISOLATION_LEVEL",
        ),
        (
            vec![
                ("KAFKA_BROKERS", "k:1"),
                ("SESSION_TIMEOUT", "2s"),
                ("HEARTBEAT_INTERVAL", "3s"),
            ],
            "HEARTBEAT_INTERVAL",
        ),
    ] {
        let (code, _out, err) =
            testkit::run_bin(common::CONSUMER, &[], &env, Duration::from_secs(10));
        assert_eq!(code, Some(78), "{env:?}: {err}");
        assert!(
            err.contains(expected),
            "{env:?}: expected {expected} in {err}"
        );
    }
}

#[test]
fn a_broker_restart_is_survived_without_a_crash_loop() {
    let (topic, group) = (unique("restart"), unique("g"));
    // Its own broker: the test stops it.
    let mut broker = Broker::start();
    testkit::create_topic(&broker.addr(), &topic, 3);
    produce::produce_seq(&broker.addr(), &topic, 3, "before", 30);
    let mut c = consumer(&broker, &topic, &group, "restart", &[]);
    wait_for("the first messages", Duration::from_secs(30), POLL, || {
        (printed(&c).len() >= 30).then_some(())
    });

    // Apache Kafka comes back with its topics, groups and offsets. nisshi (TEST_BROKER=nisshi) keeps
    // everything in memory and comes back empty, harsher still. Either way the consumer rides it out.
    if broker.is_kafka() {
        wait_for(
            "the commits of all 30",
            Duration::from_secs(30),
            POLL,
            || {
                let rows = testkit::java::describe_group(&broker.addr(), &group);
                (rows.len() == 3 && rows.iter().all(|r| r.current == Some(10))).then_some(())
            },
        );
    }
    broker.stop();
    std::thread::sleep(Duration::from_secs(3));
    assert!(
        c.running(),
        "a broker outage must not stop the consumer:\n{}",
        c.stderr()
    );
    broker.restart();
    let partitions = testkit::ensure_topic(&broker.addr(), &topic, 3);
    produce::produce_seq(&broker.addr(), &topic, partitions, "after", 30);
    wait_for(
        "messages after the restart",
        Duration::from_secs(60),
        POLL,
        || (printed(&c).iter().filter(|(p, _)| p == "after").count() >= 30).then_some(()),
    );
    if broker.is_kafka() {
        // Whatever the group went through, it resumed from the committed offsets: nothing read twice.
        let before = printed(&c).iter().filter(|(p, _)| p == "before").count();
        assert_eq!(before, 30, "{}", c.stderr());
    }
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );
    let err = c.stderr();
    assert!(!err.contains("ERROR"), "{err}");
    // Logged once per state change, not once per retry.
    let failures = err
        .lines()
        .filter(|l| l.contains("group request failed"))
        .count();
    assert!(failures < 10, "{failures} failure lines:\n{err}");
}

#[test]
fn a_restarted_static_member_gets_its_partitions_back_without_a_rebalance() {
    let broker = broker();
    let (topic, group) = (unique("static"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 3);
    let static_member = [("GROUP_INSTANCE_ID", "pod-0"), ("SESSION_TIMEOUT", "30s")];
    let generations = |c: &testkit::Spawned| -> Vec<String> {
        c.stderr()
            .lines()
            .filter(|l| l.contains("joined the group"))
            .filter_map(|l| {
                l.split("generation=")
                    .nth(1)?
                    .split(' ')
                    .next()
                    .map(str::to_string)
            })
            .collect()
    };
    let mut first = consumer(broker, &topic, &group, "pod-0", &static_member);
    wait_for(
        "the first run to own all 3",
        Duration::from_secs(30),
        POLL,
        || (assignment(&first).map(|a| a.len()) == Some(3)).then_some(()),
    );
    let before = generations(&first);
    assert_eq!(
        first.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        first.stderr()
    );
    // KIP-345: a static member does not send LeaveGroup; the broker keeps its place for the session.
    let second = consumer(broker, &topic, &group, "pod-0", &static_member);
    wait_for(
        "the restart to own all 3",
        Duration::from_secs(30),
        POLL,
        || (assignment(&second).map(|a| a.len()) == Some(3)).then_some(()),
    );
    // Longer than the leader's metadata refresh (2 s here): no rebalance follows either.
    std::thread::sleep(Duration::from_secs(4));
    assert_eq!(
        generations(&second),
        before,
        "same generation, no rebalance:\n{}",
        second.stderr()
    );
}
