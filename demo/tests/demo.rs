//! `demo` end to end on a real broker, scaled down: the real producer and consumer binaries as
//! processes, then the CSV and the chart files checked.

use std::{
    collections::BTreeMap,
    path::{Path, PathBuf},
    time::Duration,
};

use testkit::{unique, wait_for, Broker, Spawned};

const DEMO: &str = env!("CARGO_BIN_EXE_demo");

/// Each run starts 29 processes: the two tests take turns on the 2 cores.
fn heavy() -> std::sync::MutexGuard<'static, ()> {
    static HEAVY: std::sync::Mutex<()> = std::sync::Mutex::new(());
    HEAVY
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// A small run: 20 messages/s, one consumer handling 10/s, then 9 consumers.
fn settings<'a>(
    broker: &'a str,
    topic: &'a str,
    out: &'a str,
    bin_dir: &'a str,
) -> Vec<(&'a str, &'a str)> {
    vec![
        ("KAFKA_BROKERS", broker),
        ("TOPIC", topic),
        ("GROUP_ID", topic),
        ("REPLICATION_FACTOR", "1"),
        ("PRODUCERS", "20"),
        ("CONSUMERS", "9"),
        ("PROCESS_DELAY_MS", "100"),
        ("PHASE1", "12s"),
        ("PHASE2_MAX", "45s"),
        ("HOLD", "2s"),
        ("WINDOW", "6s"),
        ("OUT_DIR", out),
        ("BIN_DIR", bin_dir),
    ]
}

fn bin_dir() -> String {
    let producer = PathBuf::from(testkit::workspace_bin("producer"));
    testkit::workspace_bin("consumer");
    producer
        .parent()
        .map(|p| p.display().to_string())
        .unwrap_or_default()
}

fn out_dir(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(unique(name));
    std::fs::create_dir_all(&dir).expect("creating the output directory");
    dir
}

/// The CSV as columns by name.
fn read_csv(path: &Path) -> Vec<BTreeMap<String, f64>> {
    let text = std::fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut lines = text.lines();
    let header: Vec<&str> = lines.next().expect("a header").split(',').collect();
    lines
        .map(|l| {
            let cells: Vec<&str> = l.split(',').collect();
            assert_eq!(cells.len(), header.len(), "row {l:?}");
            header
                .iter()
                .zip(cells)
                .map(|(h, c)| {
                    (
                        h.to_string(),
                        c.parse().unwrap_or_else(|_| panic!("{h}={c}")),
                    )
                })
                .collect()
        })
        .collect()
}

fn assert_chart_files(out: &Path) {
    let png = std::fs::File::open(out.join("lag.png")).expect("lag.png");
    let reader = png::Decoder::new(std::io::BufReader::new(png))
        .read_info()
        .expect("lag.png is a PNG");
    let info = reader.info();
    assert_eq!((info.width, info.height), (1200, 760));
    let svg = std::fs::read_to_string(out.join("lag.svg")).expect("lag.svg");
    let doc = roxmltree::Document::parse(&svg).expect("lag.svg is well-formed XML");
    assert_eq!(doc.root_element().tag_name().name(), "svg");
}

/// Processes whose environment says they belong to this run (the demo's children, and the local
/// Kafka's shell and JVM, which inherit the demo's environment), but the demo, each with its command
/// line.
fn children_of_run(topic: &str, demo_pid: u32) -> Vec<(u32, String)> {
    let needle = format!("TOPIC={topic}");
    std::fs::read_dir("/proc")
        .map(|entries| {
            entries
                .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
                .filter(|&pid| pid != demo_pid)
                .filter(|pid| {
                    std::fs::read(format!("/proc/{pid}/environ"))
                        .map(|env| env.split(|&b| b == 0).any(|kv| kv == needle.as_bytes()))
                        .unwrap_or(false)
                })
                .map(|pid| {
                    let cmdline = std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
                    (pid, String::from_utf8_lossy(&cmdline).replace('\0', " "))
                })
                .collect()
        })
        .unwrap_or_default()
}

#[test]
fn lag_rises_with_one_consumer_and_falls_after_the_scale_up() {
    let _turn = heavy();
    let broker = Broker::shared();
    let (addr, topic, out, bins) = (
        broker.addr(),
        unique("demo"),
        out_dir("demo-out"),
        bin_dir(),
    );
    let out_s = out.display().to_string();
    let (code, stdout, stderr) = testkit::run_bin(
        DEMO,
        &[],
        &settings(&addr, &topic, &out_s, &bins),
        Duration::from_secs(150),
    );
    assert_eq!(code, Some(0), "stdout:\n{stdout}\nstderr:\n{stderr}");

    let rows = read_csv(&out.join("lag.csv"));
    let phase1: Vec<_> = rows.iter().filter(|r| r["phase"] == 1.0).collect();
    let phase2: Vec<_> = rows.iter().filter(|r| r["phase"] == 2.0).collect();
    assert!(
        phase1.len() >= 5 && phase2.len() >= 3,
        "too few samples:\n{stdout}"
    );
    for r in &rows {
        let sum: f64 = (0..9).map(|p| r[&format!("lag_p{p}")]).sum();
        assert_eq!(
            sum, r["lag_total"],
            "lag_total is the sum of the partitions"
        );
    }
    let (first, last) = (
        phase1[0]["lag_total"],
        phase1[phase1.len() - 1]["lag_total"],
    );
    assert!(
        last > first + 40.0,
        "lag did not rise with one consumer: {first} -> {last}\n{stdout}"
    );
    assert!(phase1.iter().all(|r| r["consumers"] == 1.0));
    let peak = phase2.iter().map(|r| r["lag_total"]).fold(0.0, f64::max);
    let end = phase2[phase2.len() - 1];
    assert!(
        end["lag_total"] < peak / 2.0,
        "lag did not fall after the scale-up: peak {peak}, end {}\n{stdout}",
        end["lag_total"]
    );
    assert_eq!(end["consumers"], 9.0);
    assert_eq!(end["owners"], 9.0, "nine consumers, one partition each");
    assert!(stdout.contains("every partition owned after"), "{stdout}");
    assert!(stdout.contains("drained"), "{stdout}");
    assert_chart_files(&out);
    let summary = std::fs::read_to_string(out.join("summary.txt")).expect("summary.txt");
    assert!(summary.contains("peak lag"), "{summary}");
    let _ = std::fs::remove_dir_all(&out);
}

#[test]
fn ctrl_c_stops_every_child_and_the_local_kafka_and_still_writes_the_files() {
    let _turn = heavy();
    let (topic, out, bins) = (unique("demo-int"), out_dir("demo-int"), bin_dir());
    let out_s = out.display().to_string();
    // The environment is cleared but for PATH: say where the jars are (found here through HOME).
    let jars = testkit::localkafka::jars::dir().display().to_string();
    let java_home = std::env::var("JAVA_HOME").unwrap_or_default();
    // No KAFKA_BROKERS: the demo starts its own Apache Kafka (DEMO_BROKER's default), whose shell
    // and JVM inherit TOPIC like the clients.
    let mut env: Vec<_> = settings("", &topic, &out_s, &bins)
        .into_iter()
        .filter(|(k, _)| *k != "KAFKA_BROKERS")
        .collect();
    env.extend([("KAFKA_LIBS", jars.as_str()), ("PHASE1", "120s")]);
    if !java_home.is_empty() {
        env.push(("JAVA_HOME", java_home.as_str()));
    }
    let mut demo = Spawned::start("demo", DEMO, &env);
    let pid = demo.pid();
    // In phase 1 with samples taken and every child running. A cold JVM on 2 busy cores takes a
    // while: the bound is generous, the demo's own broker wait is 90 s.
    wait_for(
        "three samples",
        Duration::from_secs(120),
        Duration::from_millis(200),
        || {
            let text = std::fs::read_to_string(out.join("lag.csv")).unwrap_or_default();
            (text.lines().count() >= 4).then_some(())
        },
    );
    let children = children_of_run(&topic, pid);
    let count = |what: &str| children.iter().filter(|(_, c)| c.contains(what)).count();
    assert_eq!(
        (count("kafka.Kafka"), count("/producer"), count("/consumer")),
        (2, 20, 1),
        "the node's shell and JVM (both name kafka.Kafka), 20 producers and 1 consumer: {children:#?}"
    );
    assert_eq!(children.len(), 23, "{children:#?}");
    assert!(
        demo.stdout()
            .iter()
            .any(|l| l.contains("(local Apache Kafka 4.")),
        "{:?}",
        demo.stdout()
    );
    let started = std::time::Instant::now();
    testkit::sigint(pid);
    // The clients' grace (25 s at most) plus the node's controlled shutdown (seconds).
    let code = demo.wait(Duration::from_secs(60));
    assert_eq!(
        code,
        Some(130),
        "stdout: {:?}\nstderr: {}",
        demo.stdout(),
        demo.stderr()
    );
    let left = children_of_run(&topic, pid);
    assert!(
        left.is_empty(),
        "processes still running after Ctrl-C: {left:#?}"
    );
    eprintln!("Ctrl-C to exit: {:.1} s", started.elapsed().as_secs_f64());
    assert!(read_csv(&out.join("lag.csv")).len() >= 3);
    assert_chart_files(&out);
    assert!(out.join("summary.txt").is_file());
    // The node's log, copied before its temporary data directory went.
    assert!(
        out.join("logs").join("broker.log").is_file(),
        "no logs/broker.log"
    );
    let _ = std::fs::remove_dir_all(&out);
}
