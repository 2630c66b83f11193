//! `admin lag` against a real broker, checked against kafka-python and confluent-kafka.

use std::time::Duration;

use serde_json::Value;
use testkit::{produce, python, run_bin, unique, wait_for, Broker, Spawned};

const ADMIN: &str = env!("CARGO_BIN_EXE_admin");

fn admin_lag(broker: &Broker, args: &[&str]) -> (Option<i32>, String, String) {
    let addr = broker.addr();
    let mut all = vec!["lag"];
    all.extend_from_slice(args);
    run_bin(
        ADMIN,
        &all,
        &[("KAFKA_BROKERS", &addr)],
        Duration::from_secs(60),
    )
}

fn json_lag(broker: &Broker, group: &str, topic: &str) -> Value {
    let (code, out, err) = admin_lag(
        broker,
        &["--group", group, "--topic", topic, "--format", "json"],
    );
    assert_eq!(code, Some(0), "{err}");
    serde_json::from_str(out.trim()).unwrap_or_else(|e| panic!("{e}: {out}"))
}

/// Our JSON and another client's view agree on committed offsets, log ends and lag per partition.
fn assert_same_view(ours: &Value, theirs: &Value, who: &str) {
    for p in ours["partitions"].as_array().expect("partitions") {
        let key = p["partition"].to_string();
        let t = &theirs["partitions"][&key];
        assert_eq!(
            p["current_offset"], t["committed"],
            "{who} p{key}: committed\nours {ours}\ntheirs {theirs}"
        );
        assert_eq!(p["log_end_offset"], t["end"], "{who} p{key}: log end");
        assert_eq!(p["lag"], t["lag"], "{who} p{key}: lag");
    }
    assert_eq!(ours["total_lag"], theirs["total_lag"], "{who}: total");
}

/// Starts our consumer in `group` on `topic`, without a metrics endpoint, plus `extra` settings.
fn start_consumer(broker: &Broker, topic: &str, group: &str, extra: &[(&str, &str)]) -> Spawned {
    let addr = broker.addr();
    let mut env = vec![
        ("KAFKA_BROKERS", addr.as_str()),
        ("TOPIC", topic),
        ("GROUP_ID", group),
        ("METRICS_ADDR", ""),
    ];
    env.extend_from_slice(extra);
    Spawned::start("consumer", &testkit::workspace_bin("consumer"), &env)
}

/// Runs our consumer in `group` until it printed `count` messages, then stops it (commit and leave).
fn consume_then_leave(broker: &Broker, topic: &str, group: &str, count: usize) {
    let mut c = start_consumer(broker, topic, group, &[]);
    wait_for(
        "the messages printed",
        Duration::from_secs(30),
        Duration::from_millis(50),
        || (c.stdout().len() >= count).then_some(()),
    );
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );
}

#[test]
fn reports_what_kafka_python_and_confluent_report_for_our_group_and_theirs() {
    let broker = Broker::shared();
    let topic = unique("lag");
    testkit::create_topic(&broker.addr(), &topic, 3);
    produce::produce_seq(&broker.addr(), &topic, 3, "p", 60);

    // A group of ours: our consumer reads everything, commits and leaves; then more is produced.
    let ours = unique("ours");
    let addr = broker.addr();
    consume_then_leave(broker, &topic, &ours, 60);

    // A group of theirs: kafka-python consumes for a few seconds and leaves.
    let theirs = unique("theirs");
    python::run(
        "group_member.py",
        &[
            "--client",
            "kafka-python",
            "--brokers",
            &addr,
            "--group",
            &theirs,
            "--topic",
            &topic,
            "--seconds",
            "6",
        ],
    );
    produce::produce_seq(&broker.addr(), &topic, 3, "later", 30);

    for group in [&ours, &theirs] {
        let view = json_lag(broker, group, &topic);
        assert_eq!(view["total_lag"], 30, "{group}: {view}");
        for client in ["kafka-python", "confluent"] {
            let other = python::run(
                "group_offsets.py",
                &[
                    "--brokers",
                    &addr,
                    "--group",
                    group,
                    "--topic",
                    &topic,
                    "--client",
                    client,
                ],
            );
            let other: Value = serde_json::from_str(other.trim()).expect("json");
            assert_same_view(&view, &other, &format!("{group} vs {client}"));
        }
    }

    // The table carries kafka-consumer-groups.sh's columns and a total.
    let (code, table, err) = admin_lag(broker, &["--group", &ours, "--topic", &topic]);
    assert_eq!(code, Some(0), "{err}");
    let header = table.lines().next().unwrap_or_default();
    for column in [
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "TIME-LAG",
        "CONSUMER-ID",
        "HOST",
        "CLIENT-ID",
    ] {
        assert!(header.contains(column), "{column} in {header}");
    }
    assert!(table.contains("total lag 30"), "{table}");
    assert!(
        table.contains("EMPTY (no members)"),
        "the group left: {table}"
    );
}

#[test]
fn a_partition_without_a_commit_is_shown_as_such() {
    let broker = Broker::shared();
    let topic = unique("nocommit");
    testkit::create_topic(&broker.addr(), &topic, 3);
    // Only partition 0 gets data, so only it is ever committed.
    produce::produce_seq(&broker.addr(), &topic, 1, "p", 10);
    let group = unique("g");
    consume_then_leave(broker, &topic, &group, 10);
    produce::produce(
        &broker.addr(),
        &topic,
        3,
        vec![Some(produce::payload("q", 1)); 3],
    );

    let view = json_lag(broker, &group, &topic);
    let p1 = &view["partitions"][1];
    assert_eq!(p1["current_offset"], Value::Null, "{view}");
    assert_eq!(p1["lag_basis"], "reset_position");
    assert_eq!(p1["lag"], 1, "counted from the earliest offset");
    let (_, table, _) = admin_lag(broker, &["--group", &group, "--topic", &topic]);
    assert!(
        table.contains("* no committed offset: lag counted from the log start"),
        "{table}"
    );
    let row = table
        .lines()
        .find(|l| l.split_whitespace().nth(2) == Some("1"))
        .unwrap_or_default();
    assert_eq!(
        row.split_whitespace().nth(3),
        Some("-"),
        "no commit is '-', not -1 or 0: {row}"
    );
    assert_eq!(row.split_whitespace().nth(5), Some("1*"), "{row}");
}

#[test]
fn unknown_group_unknown_topic_and_unreachable_brokers_fail_clearly() {
    let broker = Broker::shared();
    let (code, _, err) = admin_lag(broker, &["--group", "nobody-here"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("group 'nobody-here' does not exist"), "{err}");

    let (code, _, err) = admin_lag(broker, &["--group", "g", "--topic", "no-such-topic"]);
    assert_eq!(code, Some(1), "{err}");
    assert!(
        err.contains("topic 'no-such-topic' does not exist"),
        "{err}"
    );

    let dead = format!("127.0.0.1:{}", testkit::closed_port());
    let (code, _, err) = run_bin(
        ADMIN,
        &["lag"],
        &[("KAFKA_BROKERS", &dead)],
        Duration::from_secs(60),
    );
    assert_eq!(code, Some(1), "{err}");
    assert!(err.contains("no broker in") && err.contains(&dead), "{err}");
    assert!(
        err.contains("waited up to 5s") && err.contains("--timeout or ADMIN_TIMEOUT"),
        "the default deadline, and how to change it: {err}"
    );
}

/// On a cluster no group has used yet, the first group request makes Kafka create
/// `__consumer_offsets`, and until it has, the coordinator answers NOT_COORDINATOR: `admin lag`
/// waits for it (it used to fail at once, as the images check found on a fresh broker).
#[test]
fn the_first_group_request_of_a_fresh_cluster_waits_for_the_coordinator() {
    let broker = Broker::start();
    let addr = broker.addr();
    let topic = unique("fresh");
    testkit::create_topic(&addr, &topic, 3);
    let lag = json_lag(&broker, "fresh-cluster-group", &topic);
    assert_eq!(lag["total_lag"], 0, "{lag}");
}

/// A wrong address that accepts connections and never answers (another service's port, a firewall
/// that drops): `admin lag` gives up at its deadline, from ADMIN_TIMEOUT or --timeout (the flag
/// wins), and says which. It used to wait about 28 s whatever ADMIN_TIMEOUT said.
#[test]
fn the_connection_deadline_comes_from_admin_timeout_or_the_flag() {
    let silent = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let addr = silent.local_addr().expect("addr").to_string();
    // Accept and hold every connection, answering nothing.
    std::thread::spawn(move || {
        let mut held = Vec::new();
        for stream in silent.incoming().flatten() {
            held.push(stream);
        }
    });
    for (args, env, said) in [
        (
            vec!["lag"],
            vec![("ADMIN_TIMEOUT", "1s")],
            "waited up to 1s",
        ),
        (
            vec!["lag", "--timeout", "2s"],
            vec![("ADMIN_TIMEOUT", "1h")],
            "waited up to 2s",
        ),
    ] {
        let mut all = vec![("KAFKA_BROKERS", addr.as_str())];
        all.extend(env);
        // Far above either deadline: only a deadline that is not honoured reaches it.
        let (code, _, err) = run_bin(ADMIN, &args, &all, Duration::from_secs(40));
        assert_eq!(code, Some(1), "{err}");
        assert!(
            err.contains(said) && err.contains("--timeout or ADMIN_TIMEOUT") && err.contains(&addr),
            "{args:?}: {err}"
        );
    }
}

/// `admin lag --watch` output read as it comes, for a watch that runs until stopped.
struct Watch {
    child: std::process::Child,
    lines: std::sync::Arc<std::sync::Mutex<Vec<String>>>,
}

impl Watch {
    fn start(broker: &Broker, args: &[&str]) -> Self {
        use std::io::BufRead;
        let mut child = std::process::Command::new(ADMIN)
            .arg("lag")
            .args(args)
            .env_clear()
            .envs(std::env::var("PATH").ok().map(|p| ("PATH".to_string(), p)))
            .env("KAFKA_BROKERS", broker.addr())
            .stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("spawning admin lag");
        let lines = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
        let (stdout, sink) = (child.stdout.take(), std::sync::Arc::clone(&lines));
        std::thread::spawn(move || {
            if let Some(stdout) = stdout {
                for line in std::io::BufReader::new(stdout)
                    .lines()
                    .map_while(Result::ok)
                {
                    if let Ok(mut l) = sink.lock() {
                        l.push(line);
                    }
                }
            }
        });
        Self { child, lines }
    }

    fn text(&self) -> String {
        self.lines.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }
}

impl Drop for Watch {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Operators start watching before the first member: `admin lag --watch` says it waits for the
/// group, keeps waiting (it used to exit: "group does not exist"), and shows the group once it
/// comes, without its topic given.
#[test]
fn watching_a_group_that_does_not_exist_yet_waits_for_it() {
    let broker = Broker::shared();
    let (topic, group) = (unique("watch-first"), unique("g"));
    testkit::create_topic(&broker.addr(), &topic, 3);
    produce::produce_seq(&broker.addr(), &topic, 3, "p", 30);
    let mut watch = Watch::start(broker, &["--group", &group, "--watch", "500ms"]);
    let waiting = format!("waiting for group {group}");
    wait_for(
        "admin lag to say it waits for the group",
        Duration::from_secs(30),
        Duration::from_millis(100),
        || watch.text().contains(&waiting).then_some(()),
    );
    // Several samples later it is still there, and said it once.
    std::thread::sleep(Duration::from_secs(3));
    assert!(watch.running(), "it exited: {}", watch.text());
    assert_eq!(
        watch.text().matches(&waiting).count(),
        1,
        "{}",
        watch.text()
    );

    let mut c = start_consumer(broker, &topic, &group, &[("AUTO_COMMIT_INTERVAL", "500ms")]);
    let shown = format!("group {group} on {topic}: stable, 1 member(s)");
    wait_for(
        "admin lag to show the group once it has a member",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || watch.text().contains(&shown).then_some(()),
    );
    assert!(watch.running());
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );
}

/// `admin lag` and Kafka's own `kafka-consumer-groups --describe` agree partition by partition on
/// the committed offset, the log end and the lag: while the group is active with partitions it
/// never committed (Kafka prints `-`, we say `reset_position`), and after it left with lag behind.
#[test]
fn agrees_with_kafka_consumer_groups_partition_by_partition() {
    let broker = Broker::shared_kafka();
    let topic = unique("vs-kafka");
    testkit::create_topic(&broker.addr(), &topic, 3);
    // Partition 0 gets data, 1 and 2 stay empty: never committed.
    produce::produce_seq(&broker.addr(), &topic, 1, "p", 10);
    let group = unique("g");
    let addr = broker.addr();
    let mut c = start_consumer(broker, &topic, &group, &[("AUTO_COMMIT_INTERVAL", "500ms")]);
    let compare = |phase: &str| {
        let kafka = testkit::java::describe_group(&addr, &group);
        let ours = json_lag(broker, &group, &topic);
        assert!(!kafka.is_empty(), "{phase}: Kafka lists nothing");
        for k in &kafka {
            let o = &ours["partitions"][k.partition as usize];
            let who = format!("{phase} p{}: Kafka {k:?}, ours {o}", k.partition);
            assert_eq!(o["current_offset"].as_i64(), k.current, "{who}");
            assert_eq!(o["log_end_offset"].as_i64(), k.log_end, "{who}");
            match k.lag {
                Some(lag) => assert_eq!(o["lag"].as_i64(), Some(lag), "{who}"),
                // Kafka prints `-`: no commit. Ours counts from the reset position, and says so.
                None => assert_eq!(o["lag_basis"], "reset_position", "{who}"),
            }
        }
        kafka
    };
    // Active, partition 0 committed at its end, 1 and 2 owned but never committed.
    let active = wait_for(
        "Kafka to show the commit of partition 0",
        Duration::from_secs(30),
        Duration::from_millis(200),
        || {
            let rows = testkit::java::describe_group(&addr, &group);
            let p0 = rows.iter().find(|r| r.partition == 0)?;
            (rows.len() == 3 && p0.current == Some(10)).then_some(rows)
        },
    );
    assert!(
        active.iter().any(|r| r.current.is_none()),
        "a partition without a commit: {active:?}"
    );
    compare("active");
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );

    // Empty, with lag: Kafka lists the committed partition; the numbers must match.
    produce::produce(&addr, &topic, 1, vec![Some(produce::payload("q", 1)); 4]);
    let empty = compare("empty");
    let p0 = empty
        .iter()
        .find(|r| r.partition == 0)
        .expect("partition 0");
    assert_eq!(
        (p0.current, p0.log_end, p0.lag),
        (Some(10), Some(14), Some(4))
    );
}

/// A KIP-848 group (our consumer with `GROUP_PROTOCOL=consumer`) is described through
/// ConsumerGroupDescribe: its protocol, epochs and members, and the same numbers as Kafka's tool.
#[test]
fn a_kip848_group_is_described_with_its_epochs_and_members() {
    // `make test-kafka3` runs this file on Kafka 3.9, whose consumer protocol is off.
    let version = testkit::localkafka::version();
    if version.starts_with("3.") {
        eprintln!("skipped: KIP-848 needs Kafka 4.0, this is {version}");
        return;
    }
    let broker = Broker::shared_kafka();
    let topic = unique("k848-lag");
    testkit::create_topic(&broker.addr(), &topic, 3);
    produce::produce_seq(&broker.addr(), &topic, 3, "p", 30);
    let group = unique("g");
    let addr = broker.addr();
    let mut c = start_consumer(
        broker,
        &topic,
        &group,
        &[
            ("GROUP_PROTOCOL", "consumer"),
            ("AUTO_COMMIT_INTERVAL", "500ms"),
            ("CLIENT_ID", "k848-member"),
        ],
    );
    let ours = wait_for(
        "admin lag to show the member and its commits",
        Duration::from_secs(60),
        Duration::from_millis(300),
        || {
            let (code, out, _) = admin_lag(
                broker,
                &["--group", &group, "--topic", &topic, "--format", "json"],
            );
            let v: Value = serde_json::from_str(out.trim()).ok()?;
            (code == Some(0) && v["members"] == 1 && v["total_lag"] == 0).then_some(v)
        },
    );
    assert_eq!(ours["group_protocol"], "consumer", "{ours}");
    assert_eq!(ours["group_state"], "Stable", "{ours}");
    assert!(ours["group_epoch"].as_i64() > Some(0), "{ours}");
    let member = &ours["group_members"][0];
    assert_eq!(member["client_id"], "k848-member", "{ours}");
    assert!(member["member_epoch"].as_i64() > Some(0), "{ours}");
    assert_eq!(member["assigned"], serde_json::json!([0, 1, 2]), "{ours}");
    assert_eq!(member["target"], member["assigned"], "{ours}");
    assert_eq!(member["reconciling"], false, "{ours}");
    for p in ours["partitions"].as_array().expect("partitions") {
        assert_eq!(p["client_id"], "k848-member", "{ours}");
        assert_eq!(p["current_offset"], 10, "{ours}");
    }
    let kafka = testkit::java::describe_group(&addr, &group);
    assert_eq!(kafka.len(), 3, "{kafka:?}");
    for k in &kafka {
        assert_eq!(k.lag, Some(0), "{kafka:?}");
    }
    let (code, table, err) = admin_lag(broker, &["--group", &group, "--topic", &topic]);
    assert_eq!(code, Some(0), "{err}");
    assert!(table.contains("protocol: consumer (KIP-848)"), "{table}");
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );
}
