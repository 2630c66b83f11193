//! Broker down at start (issue 18): our producer and consumer start while no broker is reachable,
//! back off, report not ready on /readyz, stay running and nearly idle (CPU time read from /proc),
//! then work once the broker appears. `BROKER_DOWN_SECS` (default 20; the figure is 60) sets
//! how long the broker stays away.

use std::time::{Duration, Instant};

use testkit::{unique, wait_for, Broker, Spawned};

/// The share of one core a waiting binary may use: backing off, it should be asleep.
const MAX_CPU_SHARE: f64 = 0.05;

fn metrics_addr(c: &Spawned) -> Option<String> {
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

/// utime + stime of `pid`, in seconds, from /proc/<pid>/stat (fields 14 and 15, in clock ticks).
fn cpu_seconds(pid: u32) -> f64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    // The command name (field 2) may hold spaces: count fields after its closing parenthesis.
    let after = stat.rsplit_once(')').map_or("", |(_, rest)| rest);
    let fields: Vec<&str> = after.split_whitespace().collect();
    let ticks = |i: usize| {
        fields
            .get(i)
            .and_then(|f| f.parse::<f64>().ok())
            .unwrap_or(0.0)
    };
    // After ")": field 3 is index 0, so utime (14) is 11 and stime (15) is 12. USER_HZ is 100 on Linux.
    (ticks(11) + ticks(12)) / 100.0
}

fn ready(addr: &str) -> Option<u16> {
    testkit::metrics::try_http_get(addr, "/readyz").map(|(code, _)| code)
}

#[test]
fn producer_and_consumer_wait_idle_and_not_ready_for_a_broker_that_comes_late() {
    let down = Duration::from_secs(
        std::env::var("BROKER_DOWN_SECS")
            .ok()
            .and_then(|s| s.parse().ok())
            .unwrap_or(20),
    );
    let port = testkit::closed_port();
    let addr = format!("127.0.0.1:{port}");
    let (topic, group) = (unique("down"), unique("g"));
    let mut producer = Spawned::start(
        "producer",
        &testkit::workspace_bin("producer"),
        &[
            ("KAFKA_BROKERS", &addr),
            ("TOPIC", &topic),
            ("PRODUCER_ID", "p"),
            ("INTERVAL", "100ms"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    let mut consumer = Spawned::start(
        "consumer",
        &testkit::workspace_bin("consumer"),
        &[
            ("KAFKA_BROKERS", &addr),
            ("TOPIC", &topic),
            ("GROUP_ID", &group),
            ("METADATA_REFRESH", "1s"),
            ("METRICS_ADDR", "127.0.0.1:0"),
        ],
    );
    let started = Instant::now();
    let addrs: Vec<String> = [&producer, &consumer]
        .iter()
        .map(|c| {
            wait_for(
                "the metrics address",
                Duration::from_secs(10),
                Duration::from_millis(50),
                || metrics_addr(c),
            )
        })
        .collect();
    let cpu_before: Vec<f64> = [&producer, &consumer]
        .iter()
        .map(|c| cpu_seconds(c.pid()))
        .collect();
    // While the broker is away: running, not ready, asleep.
    while started.elapsed() < down {
        assert!(
            producer.running(),
            "the producer exited: {}",
            producer.stderr()
        );
        assert!(
            consumer.running(),
            "the consumer exited: {}",
            consumer.stderr()
        );
        for a in &addrs {
            assert_eq!(
                ready(a),
                Some(503),
                "{a} /readyz while no broker is reachable"
            );
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    let waited = started.elapsed().as_secs_f64();
    for (c, before) in [&producer, &consumer].iter().zip(&cpu_before) {
        let used = cpu_seconds(c.pid()) - before;
        assert!(
            used < MAX_CPU_SHARE * waited,
            "{} used {used:.2} s of CPU in {waited:.0} s without a broker",
            c.pid()
        );
        eprintln!(
            "pid {}: {used:.2} s CPU in {waited:.0} s without a broker",
            c.pid()
        );
    }
    let broker = Broker::start_on(port);
    testkit::create_topic(&broker.addr(), &topic, 3);
    wait_for(
        "the consumer to print the producer's messages",
        Duration::from_secs(90),
        Duration::from_millis(200),
        || (consumer.stdout().len() >= 20).then_some(()),
    );
    for a in &addrs {
        wait_for(
            "/readyz 200",
            Duration::from_secs(30),
            Duration::from_millis(200),
            || (ready(a) == Some(200)).then_some(()),
        );
    }
    assert!(producer.stderr().contains("Kafka is not reachable yet"));
    assert_eq!(producer.terminate(Duration::from_secs(20)), Some(0));
    assert_eq!(consumer.terminate(Duration::from_secs(30)), Some(0));
}
