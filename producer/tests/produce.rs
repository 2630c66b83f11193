//! The producer against a real broker, read back by independent clients (kafka-python, librdkafka).

use std::{
    collections::BTreeMap,
    process::{Command, Stdio},
    time::{Duration, Instant},
};

use testkit::{python, run_bin, unique, wait_for, Broker};

const PRODUCER: &str = env!("CARGO_BIN_EXE_producer");

#[derive(Debug)]
struct Read {
    partition: u32,
    offset: u64,
    value: String,
}

/// Reads `expect` records of `topic` with an independent client.
fn read_back(broker: &Broker, topic: &str, expect: usize, client: &str) -> Vec<Read> {
    let out = python::run(
        "read_topic.py",
        &[
            "--brokers",
            &broker.addr(),
            "--topic",
            topic,
            "--expect",
            &expect.to_string(),
            "--client",
            client,
        ],
    );
    out.lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            Read {
                partition: v["partition"].as_u64().expect("partition") as u32,
                offset: v["offset"].as_u64().expect("offset"),
                value: v["value"].as_str().expect("value").to_string(),
            }
        })
        .collect()
}

fn expected_payload(producer: &str, seq: usize) -> String {
    format!(r#"{{"cnt":"cnt: {seq}","producer":"{producer}","seq":{seq}}}"#)
}

fn seq_of(value: &str) -> usize {
    let payload: producer::Payload =
        serde_json::from_str(value).unwrap_or_else(|e| panic!("{e}: {value}"));
    payload.seq as usize
}

#[test]
fn messages_reach_every_partition_in_order_with_the_exact_payload() {
    let broker = Broker::shared();
    let topic = unique("produce");
    testkit::create_topic(&broker.addr(), &topic, 9);
    let addr = broker.addr();
    let (code, _out, stderr) = run_bin(
        PRODUCER,
        &[],
        &[
            ("KAFKA_BROKERS", &addr),
            ("TOPIC", &topic),
            ("PRODUCER_ID", "pod-a"),
            ("INTERVAL", "10ms"),
            ("MESSAGE_COUNT", "45"),
            ("METRICS_ADDR", ""),
        ],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(0), "{stderr}");
    assert!(
        stderr.contains("producer stopped") && stderr.contains("sent=45"),
        "{stderr}"
    );

    for client in ["kafka-python", "confluent"] {
        let records = read_back(broker, &topic, 45, client);
        assert_eq!(records.len(), 45, "{client}");
        let mut per_partition: BTreeMap<u32, Vec<(u64, usize)>> = BTreeMap::new();
        let mut seqs = Vec::new();
        for r in &records {
            let seq = seq_of(&r.value);
            assert_eq!(
                r.value,
                expected_payload("pod-a", seq),
                "{client}: exact payload"
            );
            per_partition
                .entry(r.partition)
                .or_default()
                .push((r.offset, seq));
            seqs.push(seq);
        }
        seqs.sort_unstable();
        assert_eq!(
            seqs,
            (1..=45).collect::<Vec<_>>(),
            "{client}: every seq exactly once"
        );
        assert_eq!(per_partition.len(), 9, "{client}: all 9 partitions");
        for (partition, mut rows) in per_partition {
            assert_eq!(
                rows.len(),
                5,
                "{client}: round-robin puts 5 on partition {partition}"
            );
            rows.sort_unstable();
            assert!(
                rows.windows(2).all(|w| w[0].1 < w[1].1),
                "{client}: partition {partition} out of sequence: {rows:?}"
            );
        }
    }
}

#[test]
fn waits_for_a_broker_that_starts_late_and_a_topic_created_later() {
    let port = testkit::closed_port();
    let addr = format!("127.0.0.1:{port}");
    let topic = unique("late");
    let mut producer = testkit::Spawned::start(
        "late",
        PRODUCER,
        &[
            ("KAFKA_BROKERS", addr.as_str()),
            ("TOPIC", topic.as_str()),
            ("PRODUCER_ID", "late"),
            ("INTERVAL", "20ms"),
            ("MESSAGE_COUNT", "10"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    std::thread::sleep(Duration::from_secs(2));
    assert!(producer.running(), "producer must keep waiting for Kafka");

    // A JVM broker takes seconds to start and the producer's retries back off meanwhile: wait for it
    // to have connected and found no topic, rather than for a fixed time.
    let broker = Broker::start_on(port);
    wait_for(
        "the producer to connect and find no topic",
        Duration::from_secs(60),
        Duration::from_millis(50),
        || {
            producer
                .stderr()
                .contains("topic does not exist yet")
                .then_some(())
        },
    );
    assert!(producer.running(), "producer must wait for the topic");
    testkit::create_topic(&broker.addr(), &topic, 3);

    let status = producer.wait(Duration::from_secs(60));
    let stderr = producer.stderr();
    assert_eq!(status, Some(0), "{stderr}");
    assert!(stderr.contains("Kafka is not reachable yet"), "{stderr}");
    let records = read_back(&broker, &topic, 10, "kafka-python");
    let mut seqs: Vec<_> = records.iter().map(|r| seq_of(&r.value)).collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (1..=10).collect::<Vec<_>>());
}

#[test]
fn sigterm_finishes_cleanly() {
    let broker = Broker::shared();
    let topic = unique("term");
    testkit::create_topic(&broker.addr(), &topic, 9);
    let mut child = Command::new(PRODUCER)
        .env_clear()
        .envs([
            ("KAFKA_BROKERS", broker.addr().as_str()),
            ("TOPIC", topic.as_str()),
            ("INTERVAL", "50ms"),
            ("METRICS_ADDR", ""),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    std::thread::sleep(Duration::from_secs(2));
    let signalled = Instant::now();
    testkit::sigterm(child.id());
    let status = wait_for(
        "the producer to exit",
        Duration::from_secs(15),
        Duration::from_millis(20),
        || child.try_wait().expect("try_wait"),
    );
    let stderr = std::io::read_to_string(child.stderr.take().expect("stderr")).expect("stderr");
    assert_eq!(status.code(), Some(0), "{stderr}");
    assert!(
        signalled.elapsed() < Duration::from_secs(5),
        "took {:?}",
        signalled.elapsed()
    );
    assert!(
        stderr.contains("SIGTERM") && stderr.contains("producer stopped"),
        "{stderr}"
    );
}

#[test]
fn bad_environment_is_rejected_naming_the_variable() {
    let cases: [(&[(&str, &str)], &str); 3] = [
        (&[], "KAFKA_BROKERS is required"),
        (
            &[("KAFKA_BROKERS", "k:9092"), ("INTERVAL", "often")],
            "INTERVAL: 'often' is not a duration",
        ),
        (
            &[("KAFKA_BROKERS", "k:9092"), ("MESSAGE_COUNT", "-1")],
            "MESSAGE_COUNT",
        ),
    ];
    for (env, expected) in cases {
        let (code, _out, stderr) = run_bin(PRODUCER, &[], env, Duration::from_secs(10));
        assert_eq!(code, Some(78), "{env:?}: {stderr}");
        assert!(
            stderr.contains(expected),
            "{env:?}: expected {expected:?} in:\n{stderr}"
        );
    }
}

#[test]
fn metrics_count_acknowledged_messages_and_readiness_waits_for_the_first() {
    let broker = Broker::shared();
    let topic = unique("pmetrics");
    let mut child = Command::new(PRODUCER)
        .env_clear()
        .envs([
            ("KAFKA_BROKERS", broker.addr().as_str()),
            ("TOPIC", topic.as_str()),
            ("INTERVAL", "20ms"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    // The address is in the first log line; read stderr line by line until it shows.
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let addr = wait_for(
        "the metrics address",
        Duration::from_secs(10),
        Duration::from_millis(1),
        || {
            let mut line = String::new();
            std::io::BufRead::read_line(&mut stderr, &mut line).ok()?;
            Some(
                line.split("addr=")
                    .nth(1)?
                    .split_whitespace()
                    .next()?
                    .to_string(),
            )
        },
    );
    std::thread::spawn(move || std::io::copy(&mut stderr, &mut std::io::sink()));
    let get = |path: &str| testkit::http_get(&addr, path);
    assert_eq!(get("/healthz").0, 200);
    assert_eq!(get("/readyz").0, 503, "not ready before the topic exists");
    testkit::create_topic(&broker.addr(), &topic, 9);
    wait_for(
        "ready once sending",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || (get("/readyz").0 == 200).then_some(()),
    );
    let scraped = python::run("scrape.py", &[&format!("http://{addr}/metrics")]);
    let samples: serde_json::Value = serde_json::from_str(scraped.trim()).expect("json");
    assert!(
        samples["producer_records_sent_total{}"]
            .as_f64()
            .unwrap_or(0.0)
            >= 1.0,
        "{samples}"
    );
    assert!(
        samples["producer_send_seconds_count{}"]
            .as_f64()
            .unwrap_or(0.0)
            >= 1.0,
        "{samples}"
    );
    testkit::sigterm(child.id());
    let _ = child.wait();
}

/// On a 3-broker cluster, the broker leading the producer's partition is killed (SIGKILL, no
/// controlled shutdown) mid-run. The producer must find the new leader and deliver every sequence
/// number: read back, the numbers 1..=N are all there, with nothing skipped.
#[test]
fn the_sequence_has_no_gaps_through_the_partition_leaders_broker_being_killed() {
    let mut cluster = Broker::cluster();
    let topic = unique("failover");
    // One partition, three replicas: any surviving broker can take over.
    testkit::create_replicated_topic(&cluster.addr(), &topic, 1, 3);
    let addr = cluster.addr();
    let count = 200;
    let mut child = Command::new(PRODUCER)
        .env_clear()
        .envs([
            ("KAFKA_BROKERS", addr.as_str()),
            ("TOPIC", topic.as_str()),
            ("PRODUCER_ID", "failover"),
            ("INTERVAL", "50ms"),
            ("MESSAGE_COUNT", &count.to_string()),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "info"),
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn producer");
    // Let it run a while, then kill the partition's leader.
    std::thread::sleep(Duration::from_secs(3));
    let first = addr.split(',').next().expect("an address").to_string();
    let leader = leader_of(&first, &topic, None);
    let kafka = cluster.kafka().expect("a Kafka cluster");
    kafka.kill(leader).expect("kill the leader");
    let survivor = kafka
        .ids()
        .into_iter()
        .find(|&id| id != leader)
        .expect("a survivor");
    let survivor_addr = kafka.node_addr(survivor);

    let status = wait_for(
        "the producer to finish",
        Duration::from_secs(120),
        Duration::from_millis(50),
        || child.try_wait().expect("try_wait"),
    );
    let stderr = std::io::read_to_string(child.stderr.take().expect("stderr")).expect("stderr");
    assert!(status.success(), "{stderr}");
    let new_leader = leader_of(&survivor_addr, &topic, Some(leader));

    // Read back everything the log holds, from the survivors only (the killed broker stays down).
    let survivors = kafka.bootstrap_except(leader);
    let (code, offsets, err) = testkit::java::tool(
        "org.apache.kafka.tools.GetOffsetShell",
        &["--bootstrap-server", &survivors, "--topic", &topic],
    );
    assert_eq!(code, Some(0), "GetOffsetShell: {err}");
    let log_end: usize = offsets
        .trim()
        .rsplit(':')
        .next()
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("GetOffsetShell printed {offsets:?}"));
    assert!(log_end >= count, "{log_end} records for {count} messages");
    let out = python::run(
        "read_topic.py",
        &[
            "--brokers",
            &survivors,
            "--topic",
            &topic,
            "--expect",
            &log_end.to_string(),
            "--client",
            "confluent",
        ],
    );
    let mut seqs: Vec<usize> = out
        .lines()
        .map(|line| {
            let v: serde_json::Value =
                serde_json::from_str(line).unwrap_or_else(|e| panic!("{e}: {line}"));
            seq_of(v["value"].as_str().expect("value"))
        })
        .collect();
    let read = seqs.len();
    seqs.sort_unstable();
    seqs.dedup();
    assert_eq!(
        seqs,
        (1..=count).collect::<Vec<_>>(),
        "every sequence number, none skipped ({read} records read, {} duplicates)\n{stderr}",
        read - seqs.len()
    );
    eprintln!(
        "leader {leader} killed; new leader {new_leader}; {} duplicates from retries",
        read - seqs.len()
    );
}

/// The leader of partition 0 of `topic` as the broker at `addr` sees it, once there is one (and,
/// with `not`, once it is another broker than that).
fn leader_of(addr: &str, topic: &str, not: Option<i32>) -> i32 {
    wait_for(
        "a partition leader",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let partitions =
                testkit::localkafka::probe::partitions(addr, topic, Duration::from_secs(5)).ok()?;
            let leader = partitions.first()?.leader;
            (leader >= 0 && Some(leader) != not).then_some(leader)
        },
    )
}
