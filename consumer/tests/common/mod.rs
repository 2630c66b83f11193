//! Helpers for the consumer's real-broker tests.
#![allow(dead_code)]

use std::{
    collections::{BTreeMap, BTreeSet},
    sync::{Mutex, MutexGuard},
    time::Duration,
};

use testkit::{Broker, Spawned};

pub const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");

/// Heartbeat interval used by tests: it bounds how fast members notice a rebalance.
pub const HEARTBEAT: Duration = Duration::from_millis(500);

/// Tests that run many processes at once take turns, so two of them never share the 2 cores.
pub fn heavy() -> MutexGuard<'static, ()> {
    static HEAVY: Mutex<()> = Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// The broker this test process shares (empty groups wait 1 s for more members; Kafka's default is
/// 3 s). Tests that stop their broker start their own with [`Broker::start`].
pub fn broker() -> &'static Broker {
    Broker::shared()
}

/// Starts our consumer as `name` with test-friendly timers, plus `extra` settings.
pub fn consumer(
    broker: &Broker,
    topic: &str,
    group: &str,
    name: &str,
    extra: &[(&str, &str)],
) -> Spawned {
    let addr = broker.addr();
    let mut env: BTreeMap<&str, &str> = BTreeMap::from([
        ("KAFKA_BROKERS", addr.as_str()),
        ("TOPIC", topic),
        ("GROUP_ID", group),
        ("CLIENT_ID", name),
        ("HEARTBEAT_INTERVAL", "500ms"),
        ("SESSION_TIMEOUT", "6s"),
        ("REBALANCE_TIMEOUT", "20s"),
        ("AUTO_COMMIT_INTERVAL", "1s"),
        ("METADATA_REFRESH", "2s"),
        ("METRICS_ADDR", "127.0.0.1:0"),
        ("RUST_LOG", "info"),
    ]);
    env.extend(extra.iter().copied());
    let env: Vec<(&str, &str)> = env.into_iter().collect();
    Spawned::start(name, CONSUMER, &env)
}

/// The partitions a consumer owns, read from its `/readyz` and `/metrics` (see
/// [`testkit::metrics::settled_assignment`]); `None` while it has none settled (not joined yet,
/// rebalancing, left). It reads what an operator reads, so log wording is free to change.
pub fn assignment(c: &Spawned) -> Option<Vec<i32>> {
    let parts = testkit::metrics::settled_assignment(&metrics_addr(c)?)?;
    Some(parts.into_iter().map(|(_, p)| p).collect())
}

/// `(producer, seq)` of every message a consumer printed.
pub fn printed(c: &Spawned) -> Vec<(String, u64)> {
    c.stdout()
        .iter()
        .filter_map(|line| line.strip_prefix("Received message: "))
        .filter_map(|json| serde_json::from_str::<serde_json::Value>(json).ok())
        .filter_map(|v| Some((v["producer"].as_str()?.to_string(), v["seq"].as_u64()?)))
        .collect()
}

/// Whether the consumers' assignments are all known, disjoint, and together cover `0..partitions`.
pub fn covers_exactly(consumers: &[&Spawned], partitions: i32) -> Option<Vec<Vec<i32>>> {
    let all: Vec<Vec<i32>> = consumers
        .iter()
        .map(|c| assignment(c))
        .collect::<Option<_>>()?;
    let mut seen = BTreeSet::new();
    for p in all.iter().flatten() {
        if !seen.insert(*p) {
            return None;
        }
    }
    (seen == (0..partitions).collect()).then_some(all)
}

/// Committed offsets and lag of `group` as kafka-python or confluent-kafka reports them.
pub fn group_offsets(broker: &Broker, group: &str, topic: &str, client: &str) -> serde_json::Value {
    let out = testkit::python::run(
        "group_offsets.py",
        &[
            "--brokers",
            &broker.addr(),
            "--group",
            group,
            "--topic",
            topic,
            "--client",
            client,
        ],
    );
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Counts how often each `(producer, seq)` was printed across `consumers`.
pub fn tally(consumers: &[&Spawned]) -> BTreeMap<(String, u64), usize> {
    let mut seen = BTreeMap::new();
    for c in consumers {
        for key in printed(c) {
            *seen.entry(key).or_insert(0) += 1;
        }
    }
    seen
}

/// The address a consumer (or producer) serves `/metrics` on, from its startup log line.
pub fn metrics_addr(c: &Spawned) -> Option<String> {
    let err = c.stderr();
    let line = err.lines().find(|l| l.contains("serving /metrics"))?;
    Some(
        line.split("addr=")
            .nth(1)?
            .split_whitespace()
            .next()?
            .to_string(),
    )
}

/// `group` as the broker's DescribeGroups reports it (state, members, their assignments). A new
/// broker answers NOT_COORDINATOR or COORDINATOR_LOAD_IN_PROGRESS at first: retried for up to 30 s.
pub fn describe(bootstrap: &str, group: &str) -> group::inspect::GroupDescription {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let mut last = None;
        for _ in 0..60 {
            let attempt = async {
                let mut conn = group::inspect::coordinator(
                    &[bootstrap.to_string()],
                    "consumer-tests",
                    group,
                    Duration::from_secs(10),
                )
                .await?;
                group::inspect::describe(&mut conn, group).await
            };
            match attempt.await {
                Ok(description) => return description,
                Err(e) => last = Some(e),
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        panic!("DescribeGroups of {group}: {last:?}")
    })
}
