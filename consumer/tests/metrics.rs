//! `/metrics`, `/healthz` and `/readyz` of a running consumer, checked with a real Prometheus parser.

mod common;

use std::time::Duration;

use common::{consumer, metrics_addr};
use testkit::http_get;
use testkit::{produce, unique, wait_for, Spawned};

const POLL: Duration = Duration::from_millis(50);

fn scrape(addr: &str) -> serde_json::Map<String, serde_json::Value> {
    let out = testkit::python::run("scrape.py", &[&format!("http://{addr}/metrics")]);
    match serde_json::from_str(out.trim()) {
        Ok(serde_json::Value::Object(map)) => map,
        other => panic!("unexpected scrape output {other:?}: {out}"),
    }
}

fn sum(samples: &serde_json::Map<String, serde_json::Value>, name: &str) -> f64 {
    samples
        .iter()
        .filter(|(k, _)| k.starts_with(&format!("{name}{{")))
        .filter_map(|(_, v)| v.as_f64())
        .sum()
}

#[test]
fn metrics_parse_move_with_messages_and_readiness_follows_the_group() {
    // Its own broker: the test stops it.
    let broker = testkit::Broker::start();
    let (topic, group) = (unique("metrics"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 3);
    let c = consumer(&broker, &topic, &group, "m0", &[]);
    let addr = wait_for("the metrics address", Duration::from_secs(10), POLL, || {
        metrics_addr(&c)
    });

    assert_eq!(http_get(&addr, "/healthz").0, 200);
    wait_for("ready once stable", Duration::from_secs(30), POLL, || {
        let (code, body) = http_get(&addr, "/readyz");
        (code == 200).then_some(body)
    });

    produce::produce_seq(&broker.addr(), &topic, 3, "p", 30);
    wait_for(
        "30 consumed in the metrics",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || (sum(&scrape(&addr), "consumer_records_consumed_total") >= 30.0).then_some(()),
    );
    produce::produce(&broker.addr(), &topic, 3, vec![Some(b"not json".to_vec())]);
    let samples = wait_for(
        "the failure counted and committed",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let s = scrape(&addr);
            (sum(&s, "consumer_records_failed_total") >= 1.0
                && sum(&s, "kafka_consumergroup_current_offset") >= 31.0)
                .then_some(s)
        },
    );
    assert_eq!(sum(&samples, "consumer_assigned_partitions"), 3.0);
    assert_eq!(sum(&samples, "consumer_partition_assigned"), 3.0);
    assert_eq!(sum(&samples, "kafka_consumergroup_lag"), 0.0, "{samples:?}");
    assert_eq!(sum(&samples, "kafka_topic_partition_current_offset"), 31.0);
    let lag_key =
        format!("kafka_consumergroup_lag{{consumergroup={group},partition=0,topic={topic}}}");
    assert!(
        samples.contains_key(&lag_key),
        "kafka_exporter's name and labels: {samples:?}"
    );
    assert!(sum(&samples, "consumer_rebalances_total") >= 1.0);
    assert!(sum(&samples, "consumer_processing_seconds_count") >= 31.0);

    // The broker goes away: not ready any more, still alive.
    drop(broker);
    wait_for(
        "not ready without a coordinator",
        Duration::from_secs(30),
        POLL,
        || {
            let (code, body) = http_get(&addr, "/readyz");
            (code == 503).then_some(body)
        },
    );
    assert_eq!(http_get(&addr, "/healthz").0, 200);
}

/// Two consumers and a producer on one machine, none told a METRICS_ADDR: each starts and serves
/// its endpoints, on port 9090 (the first, if free) or on a port of its own, which it logs. A second
/// consumer used to exit with "cannot listen on METRICS_ADDR 0.0.0.0:9090".
#[test]
fn several_binaries_on_one_machine_need_no_metrics_settings() {
    let broker = common::broker();
    let (topic, group) = (unique("no-metrics-addr"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 3);
    let addr = broker.addr();
    let consumer_env = [
        ("KAFKA_BROKERS", addr.as_str()),
        ("TOPIC", topic.as_str()),
        ("GROUP_ID", group.as_str()),
    ];
    let mut running = vec![
        Spawned::start("c1", common::CONSUMER, &consumer_env),
        Spawned::start("c2", common::CONSUMER, &consumer_env),
        Spawned::start(
            "p1",
            &testkit::workspace_bin("producer"),
            &[("KAFKA_BROKERS", addr.as_str()), ("TOPIC", topic.as_str())],
        ),
    ];
    let mut ports = std::collections::BTreeSet::new();
    for p in &mut running {
        let served = wait_for("its metrics address", Duration::from_secs(20), POLL, || {
            metrics_addr(p)
        });
        let port = served.rsplit(':').next().unwrap_or_default().to_string();
        let (code, _) = http_get(&format!("127.0.0.1:{port}"), "/healthz");
        assert_eq!(code, 200, "{}: {}", p.name, p.stderr());
        assert!(p.running(), "{} exited: {}", p.name, p.stderr());
        ports.insert(port);
    }
    assert_eq!(ports.len(), 3, "one port each: {ports:?}");
    for p in &mut running {
        assert_eq!(
            p.terminate(Duration::from_secs(20)),
            Some(0),
            "{}",
            p.stderr()
        );
    }
}
