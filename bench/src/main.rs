//! `make bench`: our producer and consumer against kafka-python, confluent-kafka and rust-rdkafka (and
//! our consumer against Apache Kafka's Java client) on one local Apache Kafka node, in one run;
//! writes the tables into BENCHMARKS.md.
//!
//! Layout:
//! - [`procs`]: child processes (always stopped, also on Ctrl-C) and /proc figures (CPU, RSS).
//! - [`kafka`]: the broker, topics, pre-filled data, high watermarks, the fetch-only ceiling.
//! - [`clients`]: how each client is started and what its output means.
//! - [`scale`] and [`lag`]: the scale-up phase, and `admin lag` and the exporter at scale.
//! - [`stats`] and [`report`]: medians and spreads, the Markdown written to BENCHMARKS.md.
//!
//! Every wait is bounded in time, every loop in count; only 127.0.0.1 is used.

mod clients;
mod kafka;
mod lag;
mod procs;
mod report;
mod scale;
mod stats;

use std::{
    io::Read,
    path::PathBuf,
    sync::mpsc,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use clients::{Kind, Paths, ALL};
use procs::{Out, Proc};

/// What one run measures; every size can be set from the environment (see [`Config::from_env`]).
#[derive(Clone, Debug)]
pub struct Config {
    /// `BENCH_WINDOW` seconds: the producer measurement window.
    pub window: u64,
    /// `BENCH_SETTLE` seconds after a producer starts before its window opens.
    pub settle: u64,
    /// `BENCH_PRODUCERS`: the deployment's producer count.
    pub producers: usize,
    /// `BENCH_MESSAGES`: messages pre-filled for the drain test.
    pub messages: u64,
    /// `BENCH_REPEATS`: repeats of each figure.
    pub repeats: usize,
    /// `BENCH_PARTITIONS`: partitions of every topic.
    pub partitions: i32,
    /// `BENCH_MEMBERS`: group size after the scale-up.
    pub members: usize,
    /// `BENCH_CLIENTS`: which clients to run (comma list of ours,rdkafka,java,confluent,kafka-python;
    /// java runs in the consumer phases only).
    pub clients: Vec<Kind>,
    /// `BENCH_OUT`: the Markdown file the tables are written into.
    pub out: PathBuf,
    /// `BENCH_SMOKE=1`: tiny sizes, proves the harness works; its figures mean nothing.
    pub smoke: bool,
    /// `BENCH_CEILING_BYTES`: max bytes per partition per fetch in the fetch-only ceiling.
    pub ceiling_bytes: i32,
    /// `BENCH_SCALE_RATE`: messages a second written during the scale phase (the seed's 200).
    pub scale_rate: u32,
    /// `BENCH_LAG_PARTITIONS`: partitions of the `lag` phase's topic.
    pub lag_partitions: i32,
    /// `BENCH_LAG_GROUPS`: groups the `lag` phase samples, each committed on every partition.
    pub lag_groups: usize,
}

fn env_or<T: std::str::FromStr>(name: &str, default: T) -> Result<T> {
    match std::env::var(name) {
        Ok(v) if !v.is_empty() => v
            .parse()
            .map_err(|_| anyhow::anyhow!("{name}={v} is not a valid value")),
        _ => Ok(default),
    }
}

impl Config {
    /// The clients with a producer peer, in order (all but the Java client).
    pub fn producers(&self) -> Vec<Kind> {
        self.clients
            .iter()
            .copied()
            .filter(|k| k.has_producer())
            .collect()
    }

    fn from_env(root: &std::path::Path) -> Result<Self> {
        let smoke = std::env::var("BENCH_SMOKE").is_ok_and(|v| v == "1");
        let (window, settle, producers, messages, repeats) = if smoke {
            (2, 1, 5, 2_000, 1)
        } else {
            (30, 5, 200, 1_000_000, 3)
        };
        let clients = match std::env::var("BENCH_CLIENTS") {
            Ok(list) if !list.is_empty() => list
                .split(',')
                .map(|c| match c.trim() {
                    "ours" => Ok(Kind::Ours),
                    "rdkafka" | "rust-rdkafka" => Ok(Kind::RustRdkafka),
                    "confluent" | "confluent-kafka" => Ok(Kind::ConfluentKafka),
                    "kafka-python" => Ok(Kind::KafkaPython),
                    "java" => Ok(Kind::Java),
                    other => bail!("BENCH_CLIENTS: unknown client {other}"),
                })
                .collect::<Result<Vec<_>>>()?,
            _ => ALL.to_vec(),
        };
        let out = match std::env::var("BENCH_OUT") {
            Ok(p) if !p.is_empty() => PathBuf::from(p),
            _ if smoke => root.join("bench/target/BENCHMARKS.smoke.md"),
            _ => root.join("BENCHMARKS.md"),
        };
        Ok(Self {
            window: env_or("BENCH_WINDOW", window)?,
            settle: env_or("BENCH_SETTLE", settle)?,
            producers: env_or("BENCH_PRODUCERS", producers)?,
            messages: env_or("BENCH_MESSAGES", messages)?,
            repeats: env_or("BENCH_REPEATS", repeats)?.max(1),
            partitions: env_or("BENCH_PARTITIONS", 9)?,
            members: env_or("BENCH_MEMBERS", 9)?,
            clients,
            out,
            smoke,
            ceiling_bytes: env_or("BENCH_CEILING_BYTES", 1024 * 1024)?,
            scale_rate: env_or("BENCH_SCALE_RATE", 200)?,
            lag_partitions: env_or("BENCH_LAG_PARTITIONS", if smoke { 10 } else { 1000 })?.max(1),
            lag_groups: env_or("BENCH_LAG_GROUPS", if smoke { 3 } else { 50 })?.max(1),
        })
    }
}

/// Everything measured, per client in the order of [`Config::clients`].
#[derive(Debug, Default)]
pub struct Results {
    /// One producer: peak RSS KiB, per repeat.
    pub prod_rss: Vec<(Kind, Vec<f64>)>,
    /// One producer: CPU seconds inside the window, per repeat.
    pub prod_cpu: Vec<(Kind, Vec<f64>)>,
    /// One producer: CPU seconds from start to the window's end, per repeat.
    pub prod_cpu_total: Vec<(Kind, Vec<f64>)>,
    /// Start to first acknowledged message, seconds, per repeat.
    pub first_ack: Vec<(Kind, Vec<f64>)>,
    /// The deployment of `producers`: one sample each.
    pub fleet: Vec<(Kind, Fleet)>,
    /// Drain: seconds from start until N lines read, per repeat.
    pub drain_total: Vec<(Kind, Vec<f64>)>,
    /// Drain rate from the first line to the Nth, messages/s, per repeat.
    pub drain_rate: Vec<(Kind, Vec<f64>)>,
    /// Drain: the consumer's CPU seconds and peak RSS KiB, per repeat.
    pub drain_cpu: Vec<(Kind, Vec<f64>)>,
    pub drain_rss: Vec<(Kind, Vec<f64>)>,
    /// Fetch-only ceiling, messages/s, per repeat.
    pub ceiling: Vec<f64>,
    /// Scale 1 → members under load, one row per variant.
    pub scale: Vec<scale::Row>,
    /// `admin lag` and the exporter at scale (the `lag` phase).
    pub lag: Option<lag::Measured>,
    /// Sizes: (what, bytes).
    pub sizes: Vec<(String, u64)>,
    /// Anything that did not go as planned, said in the report.
    pub notes: Vec<String>,
    /// Total run time.
    pub elapsed: f64,
}

/// The producer deployment measured at once.
#[derive(Debug, Default, Clone)]
pub struct Fleet {
    pub count: usize,
    /// Processes still alive at the window's end.
    pub alive: usize,
    /// Sum of VmRSS (KiB) at the window's end.
    pub rss_kib: u64,
    /// Sum of VmHWM (KiB).
    pub peak_kib: u64,
    /// Sum of PSS (KiB) at the window's end: shared pages counted once across the fleet.
    pub pss_kib: u64,
    /// Sum of RssAnon (KiB) at the window's end: the memory each process has to itself.
    pub anon_kib: u64,
    /// CPU seconds used by all of them inside the window.
    pub cpu: f64,
    /// Messages per second the broker received inside the window.
    pub rate: f64,
    /// Seconds from the first spawn until the broker saw `count` messages/s (or the bound).
    pub ramp: f64,
}

fn push(v: &mut Vec<(Kind, Vec<f64>)>, kind: Kind, x: f64) {
    match v.iter_mut().find(|(k, _)| *k == kind) {
        Some((_, xs)) => xs.push(x),
        None => v.push((kind, vec![x])),
    }
}

struct Bench {
    cfg: Config,
    paths: Paths,
    broker: kafka::Broker,
    rt: tokio::runtime::Runtime,
    client: rskafka::client::Client,
    res: Results,
    topic_seq: u32,
}

fn main() -> Result<()> {
    procs::install_interrupt_handler()?;
    let result = run();
    procs::kill_all();
    result
}

fn run() -> Result<()> {
    let started = Instant::now();
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .context("bench/ has a parent")?
        .to_path_buf();
    let cfg = Config::from_env(&root)?;
    let mut paths = Paths {
        ours: std::env::var_os("OURS_BIN_DIR")
            .map(PathBuf::from)
            .unwrap_or_else(|| root.join("target/x86_64-unknown-linux-musl/release")),
        // The rust-rdkafka peers are built beside the harness, wherever cargo's target dir is.
        peers: std::env::current_exe()
            .ok()
            .and_then(|exe| exe.parent().map(PathBuf::from))
            .unwrap_or_else(|| root.join("bench/target/release")),
        py: root.join("bench/peers"),
        python: std::env::var("PYTHON").unwrap_or_else(|_| "python3".into()),
        java_classpath: None,
    };
    for bin in [
        paths.ours.join("producer"),
        paths.ours.join("consumer"),
        paths.peers.join("rdk-producer"),
        paths.peers.join("rdk-consumer"),
    ] {
        if !bin.is_file() {
            bail!(
                "{} is missing: run `make bench` (it builds everything)",
                bin.display()
            );
        }
    }
    // The Java group member, compiled once (javac against the cached jars; skipped when fresh).
    if cfg.clients.contains(&Kind::Java) {
        let classpath = localkafka::jars::compile(
            &[root.join("tests/java/GroupMember.java")],
            &root.join("bench/target/java"),
        )
        .context("compiling tests/java/GroupMember.java")?;
        paths.java_classpath = Some(classpath);
    }
    let machine_before = report::Machine::sample(&paths);
    let run_dir = root.join("bench/target/run");
    std::fs::create_dir_all(&run_dir)?;
    eprintln!("bench: {cfg:?}");
    let broker = kafka::Broker::start(&run_dir)?;
    eprintln!("bench: broker {} on {}", broker.version, broker.addr);
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()?;
    let client = rt.block_on(kafka::client(&broker.addr))?;
    let mut b = Bench {
        cfg,
        paths,
        broker,
        rt,
        client,
        res: Results::default(),
        topic_seq: 0,
    };
    b.sizes(&root);
    let phases = std::env::var("BENCH_PHASES").unwrap_or_default();
    let on = |p: &str| phases.is_empty() || phases.split(',').any(|x| x.trim() == p);
    if on("producer") {
        b.producer_single()?;
    }
    if on("ack") {
        b.first_ack()?;
    }
    if on("drain") || on("scale") {
        b.warm_up()?;
    }
    if on("drain") {
        b.drain()?;
    }
    if on("scale") {
        b.scale()?;
    }
    if on("fleet") {
        b.fleet()?;
    }
    if on("lag") {
        b.lag(&run_dir)?;
    }
    b.res.elapsed = started.elapsed().as_secs_f64();
    let machine_after = report::Machine::sample(&b.paths);
    let md = report::render(
        &b.cfg,
        &b.res,
        &machine_before,
        &machine_after,
        &b.broker.version,
    );
    report::write(&b.cfg.out, &md)?;
    eprintln!(
        "bench: done in {:.0} s; tables written to {}",
        b.res.elapsed,
        b.cfg.out.display()
    );
    Ok(())
}

impl Bench {
    fn topic(&mut self, what: &str) -> Result<String> {
        self.topic_seq += 1;
        let name = format!("bench-{what}-{}-{}", std::process::id(), self.topic_seq);
        self.rt.block_on(kafka::create_topic(
            &self.client,
            &name,
            self.cfg.partitions,
        ))?;
        Ok(name)
    }

    fn partition_clients(
        &self,
        topic: &str,
    ) -> Result<Vec<rskafka::client::partition::PartitionClient>> {
        self.rt.block_on(async {
            let mut v = Vec::new();
            for p in 0..self.cfg.partitions {
                v.push(kafka::partition(&self.client, topic, p).await?);
            }
            anyhow::Ok(v)
        })
    }

    fn sizes(&mut self, root: &std::path::Path) {
        for (what, path) in [
            (
                "ours: producer (static musl)",
                self.paths.ours.join("producer"),
            ),
            (
                "ours: consumer (static musl)",
                self.paths.ours.join("consumer"),
            ),
            ("ours: admin (static musl)", self.paths.ours.join("admin")),
            (
                "rust-rdkafka: rdk-producer (glibc, librdkafka linked in)",
                self.paths.peers.join("rdk-producer"),
            ),
            (
                "rust-rdkafka: rdk-consumer (glibc, librdkafka linked in)",
                self.paths.peers.join("rdk-consumer"),
            ),
        ] {
            if let Ok(m) = std::fs::metadata(&path) {
                self.res.sizes.push((what.to_string(), m.len()));
            }
        }
        // The Java client's own jar (its dependencies, lz4, snappy, zstd-jni and slf4j-api, and a
        // JRE come on top).
        if self.cfg.clients.contains(&Kind::Java) {
            let jar = localkafka::jars::dir()
                .join(format!("kafka-clients-{}.jar", localkafka::version()));
            if let Ok(m) = std::fs::metadata(&jar) {
                self.res.sizes.push((
                    format!(
                        "Java: kafka-clients-{}.jar (without its dependencies or a JRE)",
                        localkafka::version()
                    ),
                    m.len(),
                ));
            }
        }
        // The Python packages as installed (what an image of them would add to an interpreter).
        let probe = std::process::Command::new(&self.paths.python)
            .args([
                "-c",
                "import os, kafka, confluent_kafka; print(os.path.dirname(kafka.__file__)); print(os.path.dirname(confluent_kafka.__file__))",
            ])
            .output();
        if let Ok(o) = probe {
            let text = String::from_utf8_lossy(&o.stdout).to_string();
            let dirs: Vec<&str> = text.lines().collect();
            if let [kp, ck] = dirs[..] {
                self.res.sizes.push((
                    "kafka-python: installed package".into(),
                    procs::du(std::path::Path::new(kp)),
                ));
                let ck = std::path::Path::new(ck);
                let mut total = procs::du(ck);
                // Wheels keep the bundled librdkafka next to the package.
                if let Some(parent) = ck.parent() {
                    total += procs::du(&parent.join("confluent_kafka.libs"));
                }
                self.res.sizes.push((
                    "confluent-kafka: installed package with its librdkafka".into(),
                    total,
                ));
            }
        }
        // Images, when `make images` built them (podman), else a note.
        let images = std::process::Command::new("podman")
            .args(["images", "--format", "{{.Repository}}:{{.Tag}} {{.Size}}"])
            .output();
        let mut found = false;
        if let Ok(o) = images {
            for line in String::from_utf8_lossy(&o.stdout).lines() {
                let name = line.split_whitespace().next().unwrap_or("");
                let base = name.rsplit('/').next().unwrap_or(name);
                if ["admin:", "producer:", "consumer:"]
                    .iter()
                    .any(|p| base.starts_with(p))
                {
                    self.res.notes.push(format!("image {line}"));
                    found = true;
                }
            }
        }
        if !found {
            self.res
                .notes
                .push("no `make images` output found (podman lists no admin/producer/consumer image); image sizes not measured".into());
        }
        let _ = root;
    }

    /// One producer of each client at once (at 1 Hz they do not disturb each other): peak RSS and
    /// CPU over the window, per repeat.
    fn producer_single(&mut self) -> Result<()> {
        let (settle, window) = (self.cfg.settle, self.cfg.window);
        for r in 0..self.cfg.repeats {
            eprintln!(
                "bench: one producer each, repeat {}/{}",
                r + 1,
                self.cfg.repeats
            );
            let topic = self.topic("prod1")?;
            let mut running = Vec::new();
            for kind in self.cfg.producers() {
                let cmd =
                    self.paths
                        .producer(kind, &self.broker.addr, &topic, &format!("p-{r}"), false);
                running.push((kind, Proc::spawn(kind.name(), cmd, Out::Null, Out::Null)?));
            }
            std::thread::sleep(Duration::from_secs(settle));
            let cpu0: Vec<Option<f64>> = running.iter().map(|(_, p)| p.cpu_seconds()).collect();
            std::thread::sleep(Duration::from_secs(window));
            for ((kind, p), c0) in running.iter_mut().zip(cpu0) {
                let (c1, rss) = (p.cpu_seconds(), p.peak_rss_kib());
                match (c0, c1, rss) {
                    (Some(c0), Some(c1), Some(rss)) if !p.exited() => {
                        push(&mut self.res.prod_rss, *kind, rss as f64);
                        push(&mut self.res.prod_cpu, *kind, c1 - c0);
                        push(&mut self.res.prod_cpu_total, *kind, c1);
                    }
                    _ => self.res.notes.push(format!(
                        "{}: producer exited before its window ended",
                        kind.name()
                    )),
                }
            }
            let written = self
                .rt
                .block_on(kafka::high_watermarks(&self.partition_clients(&topic)?))?;
            let expected = (running.len() as u64 * (settle + window)) as i64;
            if written < expected * 8 / 10 {
                self.res.notes.push(format!(
                    "one-producer repeat {}: the broker holds {written} messages, expected about {expected}",
                    r + 1
                ));
            }
            procs::stop_all(
                running.into_iter().map(|(_, p)| p).collect(),
                Duration::from_secs(10),
            );
        }
        Ok(())
    }

    /// Process start to the first acknowledged message.
    fn first_ack(&mut self) -> Result<()> {
        let topic = self.topic("ack")?;
        let repeats = if self.cfg.smoke {
            1
        } else {
            self.cfg.repeats.max(3)
        };
        for r in 0..repeats {
            eprintln!("bench: start to first ack, repeat {}/{repeats}", r + 1);
            for kind in self.cfg.producers() {
                let cmd =
                    self.paths
                        .producer(kind, &self.broker.addr, &topic, &format!("a-{r}"), true);
                let (stdout, stderr) = match kind {
                    Kind::Ours => (Out::Null, Out::Pipe),
                    _ => (Out::Pipe, Out::Null),
                };
                let mut p = Proc::spawn(kind.name(), cmd, stdout, stderr)?;
                let rx = match kind {
                    Kind::Ours => procs::lines(p.take_stderr().context("stderr")?),
                    _ => procs::lines(p.take_stdout().context("stdout")?),
                };
                match procs::wait_line(&rx, Duration::from_secs(30), |l| {
                    clients::is_first_ack(kind, l)
                }) {
                    Some((at, _)) => push(
                        &mut self.res.first_ack,
                        kind,
                        at.duration_since(p.started).as_secs_f64(),
                    ),
                    None => self.res.notes.push(format!(
                        "{}: no first acknowledgement within 30 s",
                        kind.name()
                    )),
                }
                p.stop(Duration::from_secs(5));
            }
        }
        Ok(())
    }

    /// One throwaway group member (ours) until it owns every partition, so that Apache Kafka creates
    /// `__consumer_offsets` (50 partitions) and loads its group coordinator before any consumer is
    /// timed: otherwise the first client measured pays for it.
    fn warm_up(&mut self) -> Result<()> {
        let topic = self.topic("warmup")?;
        let group = format!("bench-warmup-{}", std::process::id());
        eprintln!("bench: warming up the group coordinator");
        let cmd = self
            .paths
            .consumer(Kind::Ours, &self.broker.addr, &topic, &group);
        let mut p = Proc::spawn("warm-up consumer", cmd, Out::Null, Out::Pipe)?;
        let rx = procs::lines(p.take_stderr().context("stderr")?);
        let all = self.cfg.partitions as usize;
        if procs::wait_line(&rx, Duration::from_secs(90), |l| {
            clients::assignment(Kind::Ours, l) == Some(all)
        })
        .is_none()
        {
            self.res
                .notes
                .push("warm-up: our consumer got no assignment within 90 s".into());
        }
        p.stop(Duration::from_secs(10));
        Ok(())
    }

    /// N pre-filled messages, one consumer, time until N lines are read from its stdout.
    fn drain(&mut self) -> Result<()> {
        let topic = self.topic("drain")?;
        let n = self.cfg.messages;
        eprintln!(
            "bench: pre-filling {n} messages on {} partitions",
            self.cfg.partitions
        );
        let fill = Instant::now();
        self.rt
            .block_on(kafka::prefill(&self.client, &topic, self.cfg.partitions, n))?;
        eprintln!("bench: pre-filled in {:.1} s", fill.elapsed().as_secs_f64());
        let written = self
            .rt
            .block_on(kafka::high_watermarks(&self.partition_clients(&topic)?))?;
        if written as u64 != n {
            bail!("pre-fill wrote {written} messages, expected {n}");
        }
        // Python needs about 30 µs a message at best; allow 10x that and a minute for joining.
        let bound = Duration::from_secs(60 + n * 300 / 1_000_000);
        for r in 0..self.cfg.repeats {
            let (records, after_first, secs) = self.rt.block_on(kafka::fetch_only(
                &self.broker.addr,
                &topic,
                self.cfg.partitions,
                self.cfg.ceiling_bytes,
            ))?;
            if records != n {
                bail!("fetch-only read {records} records, expected {n}");
            }
            self.res.ceiling.push(after_first as f64 / secs);
            for &kind in &self.cfg.clients.clone() {
                eprintln!(
                    "bench: drain {n} with {}, repeat {}/{}",
                    kind.name(),
                    r + 1,
                    self.cfg.repeats
                );
                let group = format!(
                    "bench-drain-{}-{r}-{}",
                    std::process::id(),
                    kind.name().replace(' ', "-")
                );
                let cmd = self.paths.consumer(kind, &self.broker.addr, &topic, &group);
                let mut p = Proc::spawn(kind.name(), cmd, Out::Pipe, Out::Null)?;
                let rx = count_lines(p.take_stdout().context("stdout")?, n);
                match rx.recv_timeout(bound) {
                    Ok((first, last, after_first)) => {
                        let (cpu, rss) = (p.cpu_seconds(), p.peak_rss_kib());
                        let total = last.duration_since(p.started).as_secs_f64();
                        let steady = last.duration_since(first).as_secs_f64().max(1e-6);
                        push(&mut self.res.drain_total, kind, total);
                        push(&mut self.res.drain_rate, kind, after_first as f64 / steady);
                        if let (Some(cpu), Some(rss)) = (cpu, rss) {
                            push(&mut self.res.drain_cpu, kind, cpu);
                            push(&mut self.res.drain_rss, kind, rss as f64);
                        }
                    }
                    Err(_) => self.res.notes.push(format!(
                        "{}: drain repeat {} did not read {n} lines within {} s",
                        kind.name(),
                        r + 1,
                        bound.as_secs()
                    )),
                }
                p.stop(Duration::from_secs(10));
            }
        }
        Ok(())
    }

    /// Scale 1 → members under the seed's load, every variant (see [`scale::variants`]) in turn.
    fn scale(&mut self) -> Result<()> {
        let variants = scale::variants(&self.cfg.clients);
        let mut rows: Vec<scale::Row> = variants
            .iter()
            .map(|v| scale::Row {
                variant: v.clone(),
                secs: Vec::new(),
                peak_lag: Vec::new(),
                pause: Vec::new(),
                stopped: Vec::new(),
                partition_stop: Vec::new(),
            })
            .collect();
        for r in 0..self.cfg.repeats {
            for row in rows.iter_mut() {
                let label = row.variant.label();
                eprintln!(
                    "bench: scale 1 -> {} under {} msg/s with {label}, repeat {}/{}",
                    self.cfg.members,
                    self.cfg.scale_rate,
                    r + 1,
                    self.cfg.repeats
                );
                let topic = self.topic("scale")?;
                let group = format!(
                    "bench-scale-{}-{r}-{}",
                    std::process::id(),
                    label.replace([' ', '(', ')', '=', '.'], "-")
                );
                let setup = scale::Setup {
                    rt: &self.rt,
                    client: &self.client,
                    paths: &self.paths,
                    broker: &self.broker.addr,
                    partitions: self.cfg.partitions,
                    members: self.cfg.members,
                    rate: self.cfg.scale_rate,
                };
                match scale::once(&setup, &row.variant, &topic, &group)? {
                    Ok(m) => {
                        row.secs.push(m.secs);
                        row.peak_lag.push(m.peak_lag);
                        row.pause.push(m.pause);
                        row.stopped.push(m.stopped);
                        row.partition_stop.push(m.partition_stop);
                    }
                    Err(note) => self.res.notes.push(format!("{note} (repeat {})", r + 1)),
                }
            }
        }
        self.res.scale = rows;
        Ok(())
    }

    /// `admin lag` and the exporter over `lag_groups` groups on a `lag_partitions` topic (see
    /// [`lag`]).
    fn lag(&mut self, run_dir: &std::path::Path) -> Result<()> {
        let setup = lag::Setup {
            admin: self.paths.ours.join("admin"),
            run_dir,
            rt: &self.rt,
            partitions: self.cfg.lag_partitions,
            groups: self.cfg.lag_groups,
            samples: if self.cfg.smoke { 3 } else { 10 },
            interval: Duration::from_secs(if self.cfg.smoke { 1 } else { 5 }),
        };
        let (measured, notes) = lag::run(&setup, &self.broker.addr, &self.client)?;
        self.res.lag = Some(measured);
        self.res.notes.extend(notes);
        Ok(())
    }

    /// The deployment: `producers` processes of one client at once, one client after another.
    fn fleet(&mut self) -> Result<()> {
        let count = self.cfg.producers;
        for kind in self.cfg.producers() {
            eprintln!("bench: {count} producers with {}", kind.name());
            let topic = self.topic("fleet")?;
            let pcs = self.partition_clients(&topic)?;
            let t0 = Instant::now();
            let mut running = Vec::with_capacity(count);
            for i in 0..count {
                let cmd =
                    self.paths
                        .producer(kind, &self.broker.addr, &topic, &format!("f-{i}"), false);
                running.push(Proc::spawn(kind.name(), cmd, Out::Null, Out::Null)?);
            }
            // Ramp: until the broker sees 90% of the full rate over 2 s (bounded), then settle.
            let ramp_bound = Duration::from_secs(60 + count as u64);
            let mut prev = self.rt.block_on(kafka::high_watermarks(&pcs))?;
            let ramp = loop {
                std::thread::sleep(Duration::from_secs(2));
                let now = self.rt.block_on(kafka::high_watermarks(&pcs))?;
                let rate = (now - prev) as f64 / 2.0;
                prev = now;
                if rate >= 0.9 * count as f64 {
                    break t0.elapsed().as_secs_f64();
                }
                if t0.elapsed() > ramp_bound {
                    self.res.notes.push(format!(
                        "{}: {count} producers reached only {rate:.0} msg/s within {} s",
                        kind.name(),
                        ramp_bound.as_secs()
                    ));
                    break t0.elapsed().as_secs_f64();
                }
            };
            std::thread::sleep(Duration::from_secs(self.cfg.settle));
            let cpu0: f64 = running.iter().filter_map(|p| p.cpu_seconds()).sum();
            let hw0 = self.rt.block_on(kafka::high_watermarks(&pcs))?;
            let w0 = Instant::now();
            std::thread::sleep(Duration::from_secs(self.cfg.window));
            let hw1 = self.rt.block_on(kafka::high_watermarks(&pcs))?;
            let secs = w0.elapsed().as_secs_f64();
            let mut fleet = Fleet {
                count,
                ramp,
                rate: (hw1 - hw0) as f64 / secs,
                ..Fleet::default()
            };
            let mut cpu1 = 0.0;
            for p in running.iter_mut() {
                if p.exited() {
                    continue;
                }
                fleet.alive += 1;
                cpu1 += p.cpu_seconds().unwrap_or(0.0);
                fleet.rss_kib += p.rss_kib().unwrap_or(0);
                fleet.peak_kib += p.peak_rss_kib().unwrap_or(0);
                fleet.pss_kib += p.pss_kib().unwrap_or(0);
                fleet.anon_kib += p.anon_kib().unwrap_or(0);
            }
            fleet.cpu = cpu1 - cpu0;
            self.res.fleet.push((kind, fleet));
            procs::stop_all(running, Duration::from_secs(20));
        }
        Ok(())
    }
}

/// Reads `pipe` to its end on a thread, counting lines; once `n` lines are in, sends the instant the
/// first lines arrived, the instant the Nth arrived, and how many lines came after the first read.
fn count_lines<R: Read + Send + 'static>(
    mut pipe: R,
    n: u64,
) -> mpsc::Receiver<(Instant, Instant, u64)> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        let mut buf = vec![0u8; 256 * 1024];
        let (mut seen, mut first) = (0u64, None::<(Instant, u64)>);
        let mut sent = false;
        loop {
            let got = match pipe.read(&mut buf) {
                Ok(0) | Err(_) => break,
                Ok(got) => got,
            };
            let now = Instant::now();
            let lines = buf[..got].iter().filter(|&&b| b == b'\n').count() as u64;
            if lines > 0 && first.is_none() {
                first = Some((now, lines));
            }
            seen += lines;
            if !sent && seen >= n {
                let (at, before) = first.unwrap_or((now, 0));
                let _ = tx.send((at, now, n.saturating_sub(before)));
                sent = true;
            }
        }
    });
    rx
}
