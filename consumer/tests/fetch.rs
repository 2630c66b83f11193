//! The fetch path on Apache Kafka: transactions under both isolation levels, and a compacted topic
//! with gaps. rskafka 0.6 fetched at READ_COMMITTED without the aborted-transactions list (aborted
//! records were printed), and stopped for good at a transaction marker or a compaction gap at the end
//! of a batch (the committed offset never reached the log end).

mod common;

use std::time::Duration;

use common::{broker, consumer, group_offsets};
use testkit::{unique, wait_for, Broker, Spawned};

const POLL: Duration = Duration::from_millis(100);

/// Values printed by `c`, as JSON.
fn printed_values(c: &Spawned) -> Vec<serde_json::Value> {
    c.stdout()
        .iter()
        .filter_map(|line| line.strip_prefix("Received message: "))
        .filter_map(|json| serde_json::from_str(json).ok())
        .collect()
}

fn count_fate(values: &[serde_json::Value], fate: &str) -> usize {
    values.iter().filter(|v| v["fate"] == fate).count()
}

/// Waits until the group's committed offset is each partition's log end, as librdkafka reads them.
fn wait_committed_to_the_end(broker: &Broker, group: &str, topic: &str, c: &Spawned) {
    let mut last = serde_json::Value::Null;
    let reached = (0..40).any(|_| {
        last = group_offsets(broker, group, topic, "confluent");
        let parts = last["partitions"].as_object().cloned().unwrap_or_default();
        let done = !parts.is_empty()
            && parts
                .values()
                .all(|p| p["end"].as_i64().is_some() && p["committed"] == p["end"]);
        if !done {
            std::thread::sleep(Duration::from_millis(500));
        }
        done
    });
    assert!(
        reached,
        "the committed offsets never reached the log end: {last}\n{}",
        c.stderr()
    );
}

/// A topic with interleaved committed and aborted transactions; `(committed, aborted)` counts.
fn transactional_topic(broker: &Broker, topic: &str) -> (usize, usize) {
    testkit::create_topic(&broker.addr(), topic, 3);
    let out = testkit::python::run(
        "produce_transactional.py",
        &[
            "--brokers",
            &broker.addr(),
            "--topic",
            topic,
            "--partitions",
            "3",
            "--rounds",
            "4",
            "--per-txn",
            "6",
        ],
    );
    let written: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let count = |k: &str| written[k].as_u64().unwrap_or(0) as usize;
    (count("committed"), count("aborted"))
}

#[test]
fn read_committed_by_default_prints_only_committed_transactions_and_commits_past_the_markers() {
    let broker = broker();
    let (topic, group) = (unique("txn-rc"), unique("g"));
    let (committed, aborted) = transactional_topic(broker, &topic);
    assert!(committed > 0 && aborted > 0);
    let mut c = consumer(broker, &topic, &group, "rc", &[]);
    wait_for(
        "every committed record",
        Duration::from_secs(30),
        POLL,
        || (count_fate(&printed_values(&c), "commit") >= committed).then_some(()),
    );
    // The log ends with markers after the last record: the position passes them anyway.
    wait_committed_to_the_end(broker, &group, &topic, &c);
    let values = printed_values(&c);
    assert_eq!(count_fate(&values, "abort"), 0, "aborted records printed");
    assert_eq!(values.len(), committed, "each committed record once");
    assert_eq!(c.terminate(Duration::from_secs(15)), Some(0));
    let err = c.stderr();
    assert!(err.contains("isolation_level=ReadCommitted"), "{err}");
    assert!(
        !err.contains("not valid JSON"),
        "control records leaked: {err}"
    );
}

#[test]
fn read_uncommitted_prints_aborted_records_too_but_never_a_control_record() {
    let broker = broker();
    let (topic, group) = (unique("txn-ru"), unique("g"));
    let (committed, aborted) = transactional_topic(broker, &topic);
    let mut c = consumer(
        broker,
        &topic,
        &group,
        "ru",
        &[("ISOLATION_LEVEL", "read_uncommitted")],
    );
    wait_for("every data record", Duration::from_secs(30), POLL, || {
        (printed_values(&c).len() >= committed + aborted).then_some(())
    });
    wait_committed_to_the_end(broker, &group, &topic, &c);
    let values = printed_values(&c);
    assert_eq!(
        (count_fate(&values, "commit"), count_fate(&values, "abort")),
        (committed, aborted)
    );
    assert_eq!(c.terminate(Duration::from_secs(15)), Some(0));
    // A control record's value is binary: printed it would have been "not valid JSON".
    assert_eq!(c.stdout().len(), committed + aborted, "{:?}", c.stdout());
    assert!(!c.stderr().contains("not valid JSON"), "{}", c.stderr());
}

#[test]
fn a_compacted_topic_with_gaps_is_read_to_its_end_and_committed() {
    let broker = broker();
    let (topic, group) = (unique("compacted"), unique("g"));
    // Creates the topic, writes it and waits (bounded) for the cleaner to leave gaps.
    let out = testkit::python::run(
        "produce_compacted.py",
        &[
            "--brokers",
            &broker.addr(),
            "--topic",
            &topic,
            "--rounds",
            "10",
            "--pad",
            "300",
        ],
    );
    let log: serde_json::Value =
        serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"));
    let surviving: Vec<String> = log["values"]
        .as_array()
        .map(|v| {
            v.iter()
                .filter_map(|s| s.as_str())
                .map(|s| format!("Received message: {s}"))
                .collect()
        })
        .unwrap_or_default();
    let end = log["end"].as_u64().unwrap_or(0) as usize;
    assert!(surviving.len() < end, "the cleaner left no gap: {log}");
    // Fetches smaller than a round's batch: a fetch from inside a gap gets the gap's batch whole and
    // the next batch cut off, so the position must come from the batch header, not from its records.
    let mut c = consumer(
        broker,
        &topic,
        &group,
        "compacted",
        &[("FETCH_MAX_BYTES", "1024")],
    );
    wait_for(
        "every surviving record",
        Duration::from_secs(30),
        POLL,
        || (c.stdout().len() >= surviving.len()).then_some(()),
    );
    wait_committed_to_the_end(broker, &group, &topic, &c);
    assert_eq!(c.stdout(), surviving, "{log}");
    assert_eq!(c.terminate(Duration::from_secs(15)), Some(0));
}
