//! `admin create-topic` against a real broker: creation, idempotency and every error path.

use std::time::{Duration, Instant};

use testkit::{python, run_bin, unique, Broker};

const ADMIN: &str = env!("CARGO_BIN_EXE_admin");

fn create_topic(env: &[(&str, &str)]) -> (Option<i32>, String) {
    let (code, _stdout, stderr) = run_bin(ADMIN, &["create-topic"], env, Duration::from_secs(60));
    (code, stderr)
}

fn partitions_seen_by_kafka_python(broker: &Broker, topic: &str) -> u64 {
    let out = python::run(
        "topic_info.py",
        &["--brokers", &broker.addr(), "--topic", topic],
    );
    let info: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    assert_eq!(
        info["error_code"], 0,
        "kafka-python describe_topics: {info}"
    );
    info["partitions"].as_u64().expect("partitions")
}

#[test]
fn creates_the_topic_and_is_idempotent() {
    let broker = Broker::shared();
    let topic = unique("create");
    let addr = broker.addr();
    let env = [
        ("KAFKA_BROKERS", addr.as_str()),
        ("TOPIC", topic.as_str()),
        ("PARTITIONS", "9"),
        ("REPLICATION_FACTOR", "1"),
    ];

    let (code, stderr) = create_topic(&env);
    assert_eq!(code, Some(0), "first run:\n{stderr}");
    assert!(stderr.contains("topic created"), "{stderr}");
    assert_eq!(partitions_seen_by_kafka_python(broker, &topic), 9);

    let (code, stderr) = create_topic(&env);
    assert_eq!(code, Some(0), "second run:\n{stderr}");
    assert!(stderr.contains("already exists as requested"), "{stderr}");
    assert_eq!(partitions_seen_by_kafka_python(broker, &topic), 9);
}

#[test]
fn a_different_partition_count_is_reported_and_fails() {
    let broker = Broker::shared();
    let topic = unique("mismatch");
    let addr = broker.addr();
    let mut env = vec![
        ("KAFKA_BROKERS", addr.as_str()),
        ("TOPIC", topic.as_str()),
        ("PARTITIONS", "9"),
        ("REPLICATION_FACTOR", "1"),
    ];
    assert_eq!(create_topic(&env).0, Some(0));

    env[2] = ("PARTITIONS", "3");
    let (code, stderr) = create_topic(&env);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("already exists with 9 partitions, but PARTITIONS=3"),
        "{stderr}"
    );
    assert_eq!(
        partitions_seen_by_kafka_python(broker, &topic),
        9,
        "left untouched"
    );
}

#[test]
fn unreachable_brokers_fail_after_the_deadline() {
    let dead = format!("127.0.0.1:{}", testkit::closed_port());
    let started = Instant::now();
    let (code, stderr) = create_topic(&[("KAFKA_BROKERS", &dead), ("ADMIN_TIMEOUT", "3s")]);
    let took = started.elapsed();
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("no broker in") && stderr.contains(&dead),
        "{stderr}"
    );
    assert!(
        stderr.contains("Kafka is not reachable yet; retrying"),
        "retries are logged:\n{stderr}"
    );
    // Bounded by ADMIN_TIMEOUT plus one connection attempt.
    assert!(took < Duration::from_secs(20), "took {took:?}");
}

#[test]
fn bad_environment_is_rejected_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 5] = [
        (&[], "KAFKA_BROKERS is required"),
        (
            &[("KAFKA_BROKERS", "kafka")],
            "KAFKA_BROKERS: 'kafka' is not a list of brokers",
        ),
        (
            &[("KAFKA_BROKERS", "k:9092"), ("PARTITIONS", "nine")],
            "PARTITIONS",
        ),
        (
            &[("KAFKA_BROKERS", "k:9092"), ("ADMIN_TIMEOUT", "soon")],
            "ADMIN_TIMEOUT: 'soon' is not a duration",
        ),
        (
            &[("KAFKA_BROKERS", "k:9092"), ("LOG_FORMAT", "xml")],
            "LOG_FORMAT",
        ),
    ];
    for (env, expected) in cases {
        let (code, stderr) = create_topic(env);
        assert_eq!(code, Some(78), "{env:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{env:?}: expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn invalid_counts_are_rejected_before_contacting_kafka() {
    let dead = format!("127.0.0.1:{}", testkit::closed_port());
    let (code, stderr) = create_topic(&[("KAFKA_BROKERS", &dead), ("PARTITIONS", "0")]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(stderr.contains("PARTITIONS must be at least 1"), "{stderr}");
}

/// What only a real cluster shows: replication factor 2 on three brokers puts every partition on two
/// different brokers, and 4 is refused in plain words (nisshi accepts any factor).
#[test]
fn replication_on_a_three_broker_cluster() {
    let cluster = Broker::cluster();
    let addr = cluster.addr();
    let topic = unique("replicated");
    let (code, stderr) = create_topic(&[
        ("KAFKA_BROKERS", addr.as_str()),
        ("TOPIC", topic.as_str()),
        ("PARTITIONS", "9"),
        ("REPLICATION_FACTOR", "2"),
    ]);
    assert_eq!(code, Some(0), "{stderr}");
    let first = addr.split(',').next().expect("an address");
    let partitions = testkit::wait_for(
        "9 partitions with 2 in-sync replicas each",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let p = testkit::localkafka::probe::partitions(first, &topic, Duration::from_secs(5))
                .ok()?;
            (p.len() == 9 && p.iter().all(|p| p.isr.len() == 2)).then_some(p)
        },
    );
    let mut leaders = std::collections::BTreeSet::new();
    for p in &partitions {
        assert_eq!(p.replicas.len(), 2, "{p:?}");
        assert_ne!(p.replicas[0], p.replicas[1], "two different brokers: {p:?}");
        leaders.insert(p.leader);
    }
    assert_eq!(
        leaders.len(),
        3,
        "leadership spread over the brokers: {partitions:?}"
    );

    let too_many = unique("four");
    let started = Instant::now();
    let (code, stderr) = create_topic(&[
        ("KAFKA_BROKERS", addr.as_str()),
        ("TOPIC", too_many.as_str()),
        ("PARTITIONS", "9"),
        ("REPLICATION_FACTOR", "4"),
        ("ADMIN_TIMEOUT", "3s"),
    ]);
    assert_eq!(code, Some(1), "{stderr}");
    assert!(
        stderr.contains("replication factor 4 needs at least 4 brokers")
            && stderr.contains("start more brokers or lower REPLICATION_FACTOR"),
        "{stderr}"
    );
    assert!(
        started.elapsed() < Duration::from_secs(30),
        "bounded by ADMIN_TIMEOUT"
    );
}
