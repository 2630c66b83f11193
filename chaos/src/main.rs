//! `make chaos`: the real `producer` and `consumer` binaries, a Java and a confluent-kafka member in
//! the same group for part of the run, on a local 3-broker Apache Kafka cluster with persistent data,
//! under a seeded schedule of faults; then an audit of what was acknowledged against what was printed.
//! See docs/chaos.md.

mod audit;
mod proxy;
mod schedule;

use std::{
    collections::{BTreeMap, HashSet},
    fmt::Write as _,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{
        atomic::{AtomicI64, Ordering},
        Arc,
    },
    time::Duration,
};

use anyhow::{bail, Context as _};
use audit::{End, Fault, FaultKind, Member, Ms, Print};
use localkafka::{Cluster, Options};
use rskafka::{
    client::{
        partition::{Compression, UnknownTopicHandling},
        Client, ClientBuilder,
    },
    record::Record,
};
use schedule::{Action, BrokerTarget, Step};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, Command},
    task::JoinHandle,
};

const TOPIC: &str = "chaos";
const GROUP: &str = "chaos-group";
const PARTITIONS: i32 = 9;
/// RF 3 with min.insync.replicas 2: an acks=all write survives any one broker's death, and with one
/// broker down (killed or rolling) writes still succeed, so the producers never stop.
const REPLICAS: i16 = 3;
/// Our consumers' AUTO_COMMIT_INTERVAL: what a hard kill may duplicate.
const COMMIT_INTERVAL: Duration = Duration::from_secs(1);

struct Config {
    duration: Duration,
    seed: u64,
    producers: u32,
    interval: Duration,
    bin_dir: PathBuf,
    dir: PathBuf,
}

impl Config {
    fn from_env() -> anyhow::Result<Self> {
        // Literal names in env::var calls: docs/configuration.md's check finds the variables by them.
        let set = |v: Result<String, std::env::VarError>| v.ok().filter(|v| !v.trim().is_empty());
        let duration = match set(std::env::var("CHAOS_DURATION")) {
            Some(v) => v
                .trim_end_matches('s')
                .parse::<u64>()
                .with_context(|| format!("CHAOS_DURATION={v}: seconds"))?,
            None => 600,
        };
        let seed = match set(std::env::var("CHAOS_SEED")) {
            Some(v) => v.parse().with_context(|| format!("CHAOS_SEED={v}"))?,
            None => fastrand::u64(..1_000_000),
        };
        let producers = match set(std::env::var("CHAOS_PRODUCERS")) {
            Some(v) => v.parse().with_context(|| format!("CHAOS_PRODUCERS={v}"))?,
            None => 20,
        };
        // As the demo's: the binaries built beside this one, unless BIN_DIR says otherwise.
        let bin_dir = match set(std::env::var("BIN_DIR")) {
            Some(dir) => PathBuf::from(dir),
            None => std::env::current_exe()
                .ok()
                .and_then(|exe| exe.parent().map(Path::to_path_buf))
                .context("BIN_DIR unset and this binary's directory unknown")?,
        };
        let root = set(std::env::var("CHAOS_DIR"))
            .map(PathBuf::from)
            .unwrap_or_else(|| PathBuf::from("target/chaos"));
        let dir = root.join(format!(
            "{}-seed-{seed}",
            chrono::Utc::now().format("%Y%m%dT%H%M%S")
        ));
        Ok(Self {
            duration: Duration::from_secs(duration.max(30)),
            seed,
            producers,
            interval: Duration::from_millis(200),
            bin_dir,
            dir,
        })
    }
}

fn now_ms() -> Ms {
    chrono::Utc::now().timestamp_millis()
}

/// Which client a member runs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Kind {
    Ours,
    Java,
    Confluent,
}

/// A running member process.
struct Proc {
    child: Child,
    kind: Kind,
    /// Behind the proxies (the network-cut victim).
    proxied: bool,
    /// Copies its stdout, stamped, to its `.out` file.
    stamper: JoinHandle<()>,
}

struct Run {
    config: Config,
    start: Ms,
    cluster: Cluster,
    proxies: proxy::ProxySet,
    members: Vec<Member>,
    procs: Vec<Option<Proc>>,
    stampers: Vec<JoinHandle<()>>,
    faults: Vec<Fault>,
    producers: Vec<Child>,
    rng: fastrand::Rng,
    killed_brokers: HashSet<i32>,
    ours_started: usize,
    /// When any member last printed a line (for the final drain).
    last_print: Arc<AtomicI64>,
    java_member: std::process::Command,
}

fn main() -> anyhow::Result<()> {
    let config = Config::from_env()?;
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("tokio runtime")?;
    let passed = runtime.block_on(run(config))?;
    if !passed {
        std::process::exit(1);
    }
    Ok(())
}

async fn run(config: Config) -> anyhow::Result<bool> {
    std::fs::create_dir_all(&config.dir)
        .with_context(|| format!("creating {}", config.dir.display()))?;
    let plan = schedule::plan(config.seed, config.duration);
    println!(
        "chaos: seed {} duration {} s, {} steps, output in {}",
        config.seed,
        config.duration.as_secs(),
        plan.len(),
        config.dir.display()
    );
    let options = Options {
        data_dir: Some(config.dir.join("kafka")),
        quick_start: true,
        ..Options::nodes(3)
    }
    .property("min.insync.replicas", 2)
    .property("default.replication.factor", 3)
    // Room for the 1 MiB poison value plus its batch's overhead (the default is 1 MiB + 12 bytes).
    .property("message.max.bytes", 2 * 1024 * 1024)
    .property("replica.fetch.max.bytes", 2 * 1024 * 1024)
    // Leaders move back after a restart, so later kills find leaders spread over all brokers.
    .property("leader.imbalance.check.interval.seconds", 10);
    let cluster = tokio::task::spawn_blocking(move || Cluster::start(options))
        .await?
        .context("starting the 3-broker cluster")?;
    let bootstrap = cluster.bootstrap();
    println!("chaos: cluster at {bootstrap}");
    {
        let b = bootstrap.clone();
        tokio::task::spawn_blocking(move || {
            testkit::create_replicated_topic(&b, TOPIC, PARTITIONS, REPLICAS)
        })
        .await
        .context("creating the topic")?;
    }
    let proxies = proxy::ProxySet::start(
        &cluster
            .ids()
            .into_iter()
            .map(|id| (id, cluster.node_addr(id)))
            .collect::<Vec<_>>(),
    )
    .await?;
    // Compiles GroupMember.java once, before the clock starts.
    let java_member = tokio::task::spawn_blocking(testkit::java::group_member).await?;
    let mut run = Run {
        rng: fastrand::Rng::with_seed(config.seed ^ 0x5eed),
        config,
        start: now_ms(),
        cluster,
        proxies,
        members: Vec::new(),
        procs: Vec::new(),
        stampers: Vec::new(),
        faults: Vec::new(),
        producers: Vec::new(),
        killed_brokers: HashSet::new(),
        ours_started: 0,
        last_print: Arc::new(AtomicI64::new(0)),
        java_member,
    };
    let outcome = run.drive(&plan).await;
    let passed = match outcome {
        Ok(()) => run.finish().await,
        Err(err) => {
            run.stop_everything().await;
            Err(err)
        }
    };
    tokio::task::block_in_place(|| run.cluster.shutdown(Duration::from_secs(30)));
    let passed = passed?;
    if passed {
        // The logs stay for reading; the brokers' data is only needed to debug a failure.
        let _ = std::fs::remove_dir_all(run.config.dir.join("kafka"));
    }
    Ok(passed)
}

impl Run {
    fn elapsed(&self) -> f64 {
        (now_ms() - self.start) as f64 / 1000.0
    }

    fn fault(&mut self, kind: FaultKind, what: String) -> Ms {
        let at = now_ms();
        println!("  +{:6.1}s {:<16} {what}", self.elapsed(), kind.name());
        self.faults.push(Fault { at, kind, what });
        at
    }

    async fn drive(&mut self, plan: &[Step]) -> anyhow::Result<()> {
        self.start_producers()?;
        self.start_member(Kind::Ours, true)?;
        // Broker steps block until the broker is back and in sync; the steps after them move back
        // by that time, so consumer faults keep their spacing instead of firing all at once.
        let mut shift: Ms = 0;
        for step in plan {
            let due = self.start + shift + step.at.as_millis() as Ms;
            // Wait for the step, watching for members that die on their own.
            while now_ms() < due {
                self.reap()?;
                let left = (due - now_ms()).clamp(0, 500) as u64;
                tokio::time::sleep(Duration::from_millis(left)).await;
            }
            self.reap()?;
            let began = now_ms();
            self.step(step.action).await?;
            if matches!(step.action, Action::KillBroker(..) | Action::RollingRestart) {
                shift += now_ms() - began;
            }
        }
        let end = self.start + shift + self.config.duration.as_millis() as Ms;
        while now_ms() < end {
            self.reap()?;
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        Ok(())
    }

    async fn step(&mut self, action: Action) -> anyhow::Result<()> {
        match action {
            Action::ScaleTo(n) => {
                let live = self.live(|_| true);
                if n > live.len() {
                    self.fault(FaultKind::ScaleUp, format!("{} -> {n} members", live.len()));
                    for _ in live.len()..n {
                        self.start_member(Kind::Ours, false)?;
                    }
                } else if n < live.len() {
                    // The newest of ours leave first; the proxied one stays (the cut's victim).
                    let mut ours: Vec<usize> = self.live(|p| p.kind == Kind::Ours && !p.proxied);
                    ours.reverse();
                    let names: Vec<String> = (ours.iter().take(live.len() - n))
                        .map(|&i| self.members[i].name.clone())
                        .collect();
                    self.fault(
                        FaultKind::ScaleDown,
                        format!("{} -> {n} members: {}", live.len(), names.join(" ")),
                    );
                    let gone: Vec<usize> = ours.into_iter().take(live.len() - n).collect();
                    self.terminate(&gone, End::ScaleDown).await;
                }
            }
            Action::PeersJoin => {
                self.fault(FaultKind::PeerJoin, "java-1 confluent-1".into());
                self.start_member(Kind::Java, false)?;
                self.start_member(Kind::Confluent, false)?;
            }
            Action::PeersLeave => {
                let peers = self.live(|p| p.kind != Kind::Ours);
                let names: Vec<String> = peers
                    .iter()
                    .map(|&i| self.members[i].name.clone())
                    .collect();
                self.fault(FaultKind::PeerLeave, names.join(" "));
                self.terminate(&peers, End::ScaleDown).await;
            }
            Action::KillConsumer | Action::TermConsumer => {
                let candidates = self.live(|p| p.kind == Kind::Ours);
                if candidates.is_empty() {
                    println!("    (no member of ours to stop: step skipped)");
                    return Ok(());
                }
                let victim = candidates[self.rng.usize(..candidates.len())];
                let name = self.members[victim].name.clone();
                // The replacement takes the victim's place behind the proxies, if it was there.
                let proxied = self.procs[victim].as_ref().is_some_and(|p| p.proxied);
                if action == Action::KillConsumer {
                    let at = self.fault(FaultKind::ConsumerKill, format!("SIGKILL {name}"));
                    if let Some(p) = self.procs[victim].as_mut() {
                        signal(&p.child, "KILL").await;
                    }
                    self.ended(victim, at, End::Kill).await;
                } else {
                    self.fault(FaultKind::ConsumerTerm, format!("SIGTERM {name}"));
                    self.terminate(&[victim], End::Term).await;
                }
                // The replacement a Deployment starts.
                self.start_member(Kind::Ours, proxied)?;
            }
            Action::KillBroker(target, down) => {
                let id = self.broker_for(target)?;
                let what = match target {
                    BrokerTarget::Coordinator => "the group coordinator's broker",
                    BrokerTarget::Leader => "a partition leader's broker",
                    BrokerTarget::Remaining => "the broker not killed yet",
                };
                self.fault(
                    FaultKind::BrokerKill,
                    format!("SIGKILL broker {id} ({what}), down {} ms", down.as_millis()),
                );
                self.killed_brokers.insert(id);
                tokio::task::block_in_place(|| self.cluster.kill(id))?;
                tokio::time::sleep(down).await;
                tokio::task::block_in_place(|| self.cluster.restart(id))
                    .with_context(|| format!("restarting broker {id}"))?;
                println!("  +{:6.1}s broker {id} back", self.elapsed());
                self.wait_in_sync().await;
            }
            Action::RollingRestart => {
                self.fault(FaultKind::RollingRestart, "brokers 1, 2, 3 in turn".into());
                for id in self.cluster.ids() {
                    tokio::task::block_in_place(|| {
                        self.cluster.stop(id, Duration::from_secs(60));
                        self.cluster.restart(id)
                    })
                    .with_context(|| format!("rolling: restarting broker {id}"))?;
                    println!("  +{:6.1}s rolling: broker {id} back", self.elapsed());
                    self.wait_in_sync().await;
                }
            }
            Action::NetworkCut(length) => {
                let victim = self.live(|p| p.proxied);
                let name = victim
                    .first()
                    .map_or("nobody (the proxied member is gone)".to_string(), |&i| {
                        self.members[i].name.clone()
                    });
                self.fault(
                    FaultKind::NetworkCut,
                    format!("{name} cut off every broker for {} ms", length.as_millis()),
                );
                self.proxies.cut();
                tokio::time::sleep(length).await;
                self.proxies.heal();
            }
            Action::Poison(kind) => {
                let partition = self.rng.i32(0..PARTITIONS);
                self.fault(
                    FaultKind::Poison,
                    format!("{kind:?} record to partition {partition}"),
                );
                if let Err(err) = self.write_poison(kind, partition).await {
                    println!("    poison not written: {err:#}");
                }
            }
        }
        Ok(())
    }

    /// Indices of the running members matching `f`.
    fn live(&self, f: impl Fn(&Proc) -> bool) -> Vec<usize> {
        (self.procs.iter().enumerate())
            .filter_map(|(i, p)| p.as_ref().filter(|p| f(p)).map(|_| i))
            .collect()
    }

    fn broker_for(&mut self, target: BrokerTarget) -> anyhow::Result<i32> {
        let ids = self.cluster.ids();
        let addr = self.cluster.node_addr(ids[0]);
        let fresh: Vec<i32> = ids
            .iter()
            .copied()
            .filter(|i| !self.killed_brokers.contains(i))
            .collect();
        let id = match target {
            BrokerTarget::Coordinator => ids
                .iter()
                .find_map(|&i| {
                    proxy::coordinator(&self.cluster.node_addr(i), GROUP, Duration::from_secs(5))
                        .ok()
                })
                .context("finding the group coordinator")?,
            BrokerTarget::Leader => {
                let partitions =
                    localkafka::probe::partitions(&addr, TOPIC, Duration::from_secs(5))
                        .map_err(anyhow::Error::msg)
                        .context("reading the partition leaders")?;
                let leaders: Vec<i32> = (partitions.iter())
                    .map(|p| p.leader)
                    .filter(|l| fresh.contains(l))
                    .collect();
                match leaders.as_slice() {
                    [] => fresh.first().copied().context("every broker was killed")?,
                    l => l[self.rng.usize(..l.len())],
                }
            }
            BrokerTarget::Remaining => fresh.first().copied().unwrap_or(ids[0]),
        };
        Ok(id)
    }

    /// Waits (at most 90 s) until every partition is back to all three replicas in sync, so the next
    /// broker fault never takes a second replica away.
    async fn wait_in_sync(&mut self) {
        let addr = self.cluster.bootstrap();
        let deadline = now_ms() + 90_000;
        while now_ms() < deadline {
            let full = addr.split(',').any(|a| {
                localkafka::probe::partitions(a, TOPIC, Duration::from_secs(3)).is_ok_and(|ps| {
                    ps.len() == PARTITIONS as usize
                        && ps.iter().all(|p| p.isr.len() == REPLICAS as usize)
                })
            });
            if full {
                return;
            }
            let _ = self.reap();
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        println!("    (replicas not all in sync after 90 s)");
    }

    fn start_producers(&mut self) -> anyhow::Result<()> {
        let bin = binary(&self.config.bin_dir, "producer")?;
        let logs = self.config.dir.join("producers");
        std::fs::create_dir_all(&logs)?;
        for n in 1..=self.config.producers {
            let name = format!("producer-{n}");
            let log = std::fs::File::create(logs.join(format!("{name}.log")))?;
            let child = Command::new(&bin)
                .env_clear()
                .env("KAFKA_BROKERS", self.cluster.bootstrap())
                .env("TOPIC", TOPIC)
                .env("PRODUCER_ID", &name)
                .env("HOSTNAME", &name)
                .env(
                    "INTERVAL",
                    format!("{}ms", self.config.interval.as_millis()),
                )
                .env("METRICS_ADDR", "")
                .env("LOG_FORMAT", "json")
                .env("RUST_LOG", "info")
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log)
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            self.producers.push(child);
        }
        Ok(())
    }

    fn start_member(&mut self, kind: Kind, proxied: bool) -> anyhow::Result<()> {
        let brokers = if proxied {
            self.proxies.bootstrap()
        } else {
            self.cluster.bootstrap()
        };
        let name = match kind {
            Kind::Ours => {
                self.ours_started += 1;
                format!("consumer-{}", self.ours_started)
            }
            Kind::Java => "java-1".to_string(),
            Kind::Confluent => "confluent-1".to_string(),
        };
        let log = std::fs::File::create(self.config.dir.join(format!("{name}.log")))?;
        let mut cmd = match kind {
            Kind::Ours => {
                let mut c = Command::new(binary(&self.config.bin_dir, "consumer")?);
                c.env_clear()
                    .env("KAFKA_BROKERS", &brokers)
                    .env("TOPIC", TOPIC)
                    .env("GROUP_ID", GROUP)
                    .env("HOSTNAME", &name)
                    .env("CLIENT_ID", &name)
                    .env("METRICS_ADDR", "")
                    .env(
                        "AUTO_COMMIT_INTERVAL",
                        format!("{}ms", COMMIT_INTERVAL.as_millis()),
                    )
                    // A killed member's partitions move after 10 s rather than 45.
                    .env("SESSION_TIMEOUT", "10s")
                    .env("HEARTBEAT_INTERVAL", "1s")
                    .env("LOG_FORMAT", "json")
                    .env("RUST_LOG", "info");
                c
            }
            Kind::Java => {
                let mut c = Command::from(clone_command(&self.java_member));
                c.args(["--brokers", &brokers, "--group", GROUP, "--topic", TOPIC])
                    .args([
                        "--seconds",
                        "100000",
                        "--output",
                        "events",
                        "--client-id",
                        &name,
                    ]);
                c
            }
            Kind::Confluent => {
                let mut c = Command::new(testkit::python::interpreter());
                c.arg(testkit::workspace_root().join("tests/py/group_member.py"))
                    .args([
                        "--client",
                        "confluent",
                        "--brokers",
                        &brokers,
                        "--group",
                        GROUP,
                    ])
                    .args(["--topic", TOPIC, "--seconds", "100000"]);
                c
            }
        };
        let mut child = cmd
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(log)
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {name}"))?;
        let stdout = child.stdout.take().context("member stdout")?;
        let out = self.config.dir.join(format!("{name}.out"));
        let last_print = Arc::clone(&self.last_print);
        let stamper = tokio::spawn(async move {
            let Ok(file) = tokio::fs::File::create(&out).await else {
                return;
            };
            let mut file = tokio::io::BufWriter::new(file);
            let mut reader = BufReader::new(stdout);
            let mut line = Vec::new();
            loop {
                line.clear();
                match reader.read_until(b'\n', &mut line).await {
                    Ok(0) | Err(_) => break,
                    Ok(_) => {}
                }
                let at = now_ms();
                last_print.store(at, Ordering::Relaxed);
                let text = String::from_utf8_lossy(&line);
                let _ = file
                    .write_all(format!("{at} {}\n", text.trim_end()).as_bytes())
                    .await;
            }
            let _ = file.flush().await;
        });
        println!(
            "  +{:6.1}s start {name}{}",
            self.elapsed(),
            if proxied { " (behind the proxies)" } else { "" }
        );
        self.members.push(Member { name, ended: None });
        self.procs.push(Some(Proc {
            child,
            kind,
            proxied,
            stamper,
        }));
        Ok(())
    }

    /// SIGTERM to `who`, then waits (at most 30 s, then SIGKILL) for each to leave.
    async fn terminate(&mut self, who: &[usize], how: End) {
        let at = now_ms();
        for &i in who {
            if let Some(p) = self.procs[i].as_ref() {
                signal(&p.child, "TERM").await;
            }
        }
        for &i in who {
            self.ended(i, at, how).await;
        }
    }

    /// Waits for member `i` to exit (SIGKILL after 30 s) and records how it ended.
    async fn ended(&mut self, i: usize, at: Ms, how: End) {
        if let Some(mut p) = self.procs[i].take() {
            if tokio::time::timeout(Duration::from_secs(30), p.child.wait())
                .await
                .is_err()
            {
                println!(
                    "    {} did not exit within 30 s: killed",
                    self.members[i].name
                );
                let _ = p.child.start_kill();
                let _ = p.child.wait().await;
            }
            self.stampers.push(p.stamper);
        }
        self.members[i].ended = Some((at, how));
    }

    /// Members that exited on their own are recorded (the audit fails on them) and replaced.
    fn reap(&mut self) -> anyhow::Result<()> {
        let mut crashed = Vec::new();
        for (i, p) in self.procs.iter_mut().enumerate() {
            if let Some(proc_) = p {
                if let Ok(Some(status)) = proc_.child.try_wait() {
                    crashed.push((i, proc_.kind, proc_.proxied, status));
                }
            }
        }
        for (i, kind, proxied, status) in crashed {
            println!(
                "  +{:6.1}s !! {} exited on its own: {status}",
                self.elapsed(),
                self.members[i].name
            );
            if let Some(p) = self.procs[i].take() {
                self.stampers.push(p.stamper);
            }
            self.members[i].ended = Some((now_ms(), End::Exited));
            if kind == Kind::Ours {
                self.start_member(Kind::Ours, proxied)?;
            }
        }
        let dead = (self.producers.iter_mut())
            .map(|c| c.try_wait())
            .filter(|s| !matches!(s, Ok(None)))
            .count();
        if dead > 0 {
            bail!("{dead} producers exited during the run (see producers/*.log)");
        }
        Ok(())
    }

    async fn write_poison(&self, kind: schedule::Poison, partition: i32) -> anyhow::Result<()> {
        let client = client(&self.cluster.bootstrap()).await?;
        let pc = client
            .partition_client(TOPIC, partition, UnknownTopicHandling::Error)
            .await?;
        let record = Record {
            key: None,
            value: kind.value(),
            headers: Default::default(),
            timestamp: chrono::Utc::now(),
        };
        tokio::time::timeout(
            Duration::from_secs(30),
            pc.produce(vec![record], Compression::NoCompression),
        )
        .await
        .context("timed out")??;
        Ok(())
    }

    async fn stop_everything(&mut self) {
        for c in &mut self.producers {
            let _ = c.start_kill();
        }
        let live = self.live(|_| true);
        self.terminate(&live, End::Finished).await;
    }

    /// Stops the producers, lets the consumers drain, stops them, reads the topic and audits.
    async fn finish(&mut self) -> anyhow::Result<bool> {
        println!("  +{:6.1}s stopping the producers", self.elapsed());
        for c in &self.producers {
            signal(c, "TERM").await;
        }
        for c in &mut self.producers {
            if tokio::time::timeout(Duration::from_secs(30), c.wait())
                .await
                .is_err()
            {
                let _ = c.start_kill();
            }
        }
        let acked = read_acked(&self.config.dir.join("producers"), self.config.producers)?;
        // Drained: nothing printed for 10 s (bounded by 120 s).
        let deadline = now_ms() + 120_000;
        loop {
            let _ = self.reap();
            let quiet = now_ms() - self.last_print.load(Ordering::Relaxed);
            if quiet > 10_000 || now_ms() > deadline {
                break;
            }
            tokio::time::sleep(Duration::from_millis(500)).await;
        }
        let live = self.live(|_| true);
        println!(
            "  +{:6.1}s drained; stopping {} members",
            self.elapsed(),
            live.len()
        );
        self.terminate(&live, End::Finished).await;
        for s in self.stampers.drain(..) {
            let _ = s.await;
        }
        let records = read_topic(&self.cluster.bootstrap()).await?;
        let mut prints = Vec::new();
        for (i, m) in self.members.iter().enumerate() {
            let path = self.config.dir.join(format!("{}.out", m.name));
            let text = std::fs::read_to_string(&path).unwrap_or_default();
            for line in text.lines() {
                if let Some((at, key)) = audit::parse_line(line) {
                    prints.push(Print { member: i, at, key });
                }
            }
        }
        let report = audit::audit(
            &audit::Input {
                members: &self.members,
                prints: &prints,
                records: &records,
                faults: &self.faults,
                acked: &acked,
                partitions: PARTITIONS,
            },
            audit::Bounds {
                commit_interval: COMMIT_INTERVAL.as_millis() as Ms,
                slack: 1000,
            },
        );
        let text = self.render(&report, records.len(), prints.len());
        print!("{text}");
        let path = self.config.dir.join("report.txt");
        std::fs::write(&path, &text).with_context(|| format!("writing {}", path.display()))?;
        println!("report: {}", path.display());
        Ok(report.failures().is_empty())
    }

    fn render(&self, r: &audit::Report, records: usize, prints: usize) -> String {
        let mut s = String::new();
        let _ = writeln!(
            s,
            "\n== chaos report: seed {} duration {} s (replay: CHAOS_SEED={} CHAOS_DURATION={})",
            self.config.seed,
            self.config.duration.as_secs(),
            self.config.seed,
            self.config.duration.as_secs()
        );
        let _ = writeln!(
            s,
            "topic {TOPIC}: {PARTITIONS} partitions, RF {REPLICAS}, min.insync.replicas 2; {} producers, acks=all",
            self.config.producers
        );
        let _ = writeln!(
            s,
            "faults (time, what, until every partition flowed again, duplicates):"
        );
        let mut per_fault: BTreeMap<usize, u64> = BTreeMap::new();
        for (cause, n) in &r.duplicates {
            let i = match cause {
                audit::Cause::HardKill(i) | audit::Cause::Graceful(i) => Some(*i),
                audit::Cause::After(i) => *i,
            };
            if let Some(i) = i {
                *per_fault.entry(i).or_insert(0) += n;
            }
        }
        let mut worst: Option<(Ms, usize)> = None;
        for (i, f) in self.faults.iter().enumerate() {
            let recovery = match (f.kind, r.recovery.get(i).copied()) {
                (FaultKind::Poison, _) => "-".to_string(),
                (_, Some(audit::Recovery::After(ms))) => {
                    if worst.is_none_or(|(w, _)| ms > w) {
                        worst = Some((ms, i));
                    }
                    format!("{:.1} s", ms as f64 / 1000.0)
                }
                (_, Some(audit::Recovery::Never)) => "never".to_string(),
                (_, _) => "n/a".to_string(),
            };
            let bound = match r.kill_bounds.get(&i) {
                Some((_, allowed)) => format!(" (allowed {allowed})"),
                None => String::new(),
            };
            let _ = writeln!(
                s,
                "  #{i:<3} +{:6.1}s {:<16} {:<58} recovered {recovery:>7}  dup {}{bound}",
                (f.at - self.start) as f64 / 1000.0,
                f.kind.name(),
                f.what,
                per_fault.get(&i).copied().unwrap_or(0),
            );
        }
        let by = |pred: fn(&audit::Cause) -> bool| -> u64 {
            r.duplicates
                .iter()
                .filter(|(c, _)| pred(c))
                .map(|(_, n)| n)
                .sum()
        };
        let mut counts: BTreeMap<&str, usize> = BTreeMap::new();
        for f in &self.faults {
            *counts.entry(f.kind.name()).or_insert(0) += 1;
        }
        let _ = writeln!(s, "fault counts: {counts:?}");
        let _ = writeln!(
            s,
            "acknowledged {}, records in the topic {records} ({} poison), lines printed {prints}",
            r.acknowledged, r.poison_records
        );
        let _ = writeln!(
            s,
            "LOST {} (never printed), {} missing from the topic",
            r.lost.len(),
            r.lost_by_kafka.len()
        );
        if !r.lost.is_empty() {
            let _ = writeln!(s, "  first lost: {:?}", &r.lost[..r.lost.len().min(10)]);
        }
        let _ = writeln!(s, "duplicates by cause:");
        let _ = writeln!(
            s,
            "  hard kill of the member that printed it: {} (over one commit interval: {:?})",
            by(|c| matches!(c, audit::Cause::HardKill(_))),
            r.kills_over_bound()
        );
        let _ = writeln!(
            s,
            "  SIGTERM or scale-down of that member:    {} (must be 0)",
            r.graceful_duplicates()
        );
        let mut after: BTreeMap<&str, u64> = BTreeMap::new();
        for (c, n) in &r.duplicates {
            if let audit::Cause::After(i) = c {
                let k = i.map_or("no fault before it", |i| self.faults[i].kind.name());
                *after.entry(k).or_insert(0) += n;
            }
        }
        let _ = writeln!(s, "  member alive, after a fault:            {after:?}");
        let _ = writeln!(
            s,
            "  producer retries (written twice):       {}",
            r.producer_duplicates
        );
        let _ = writeln!(
            s,
            "ordering violations: {} in the topic, {} in the output; null values printed {}; unknown lines {}",
            r.log_order_violations, r.print_order_violations, r.null_prints, r.unknown_prints
        );
        for sample in &r.order_samples {
            let _ = writeln!(s, "  order: {sample}");
        }
        if let Some((ms, i)) = worst {
            let _ = writeln!(
                s,
                "worst time to recover: {:.1} s after #{i} ({})",
                ms as f64 / 1000.0,
                self.faults[i].what
            );
        }
        let failures = r.failures();
        if failures.is_empty() {
            let _ = writeln!(s, "PASS");
        } else {
            for f in &failures {
                let _ = writeln!(s, "FAIL: {f}");
            }
        }
        s
    }
}

/// `kill -SIG pid`: the workspace forbids `unsafe`, so no libc.
async fn signal(child: &Child, sig: &str) {
    if let Some(pid) = child.id() {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .arg(pid.to_string())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    anyhow::ensure!(path.is_file(), "{} not found (BIN_DIR)", path.display());
    Ok(path)
}

/// A copy of `cmd` (program, arguments, environment): std's Command is not Clone.
fn clone_command(cmd: &std::process::Command) -> std::process::Command {
    let mut c = std::process::Command::new(cmd.get_program());
    c.args(cmd.get_args());
    for (k, v) in cmd.get_envs() {
        match v {
            Some(v) => c.env(k, v),
            None => c.env_remove(k),
        };
    }
    if let Some(d) = cmd.get_current_dir() {
        c.current_dir(d);
    }
    c
}

async fn client(bootstrap: &str) -> anyhow::Result<Client> {
    let brokers = bootstrap.split(',').map(str::to_string).collect();
    tokio::time::timeout(
        Duration::from_secs(30),
        ClientBuilder::new(brokers).client_id("chaos").build(),
    )
    .await
    .context("connecting timed out")?
    .context("connecting")
}

/// Each producer's last acknowledged sequence, from its `producer stopped` log line.
fn read_acked(dir: &Path, producers: u32) -> anyhow::Result<BTreeMap<String, u64>> {
    let mut acked = BTreeMap::new();
    for n in 1..=producers {
        let name = format!("producer-{n}");
        let path = dir.join(format!("{name}.log"));
        let text = std::fs::read_to_string(&path)
            .with_context(|| format!("reading {}", path.display()))?;
        let last = text.lines().rev().find_map(|line| {
            let v: serde_json::Value = serde_json::from_str(line).ok()?;
            let fields = v.get("fields").unwrap_or(&v);
            if fields.get("message")?.as_str()? != "producer stopped" {
                return None;
            }
            fields.get("last_seq")?.as_u64()
        });
        let last = last.with_context(|| format!("{name} logged no `producer stopped` line"))?;
        acked.insert(name, last);
    }
    Ok(acked)
}

/// Every record of the topic, partition by partition, to the high watermark.
async fn read_topic(bootstrap: &str) -> anyhow::Result<Vec<audit::Record>> {
    let client = client(bootstrap).await?;
    let mut out = Vec::new();
    for partition in 0..PARTITIONS {
        let pc = client
            .partition_client(TOPIC, partition, UnknownTopicHandling::Error)
            .await?;
        let mut offset = 0;
        // Bounded: at most one fetch per record, and each fetch returns at least one.
        for _ in 0..10_000_000 {
            let (records, high) = tokio::time::timeout(
                Duration::from_secs(30),
                pc.fetch_records(offset, 1..8 * 1024 * 1024, 100),
            )
            .await
            .context("fetching timed out")??;
            for r in &records {
                let payload = r.record.value.as_deref().and_then(|v| {
                    let v: serde_json::Value = serde_json::from_slice(v).ok()?;
                    Some((
                        v.get("producer")?.as_str()?.to_string(),
                        v.get("seq")?.as_u64()?,
                    ))
                });
                out.push(audit::Record {
                    partition,
                    offset: r.offset,
                    at: r.record.timestamp.timestamp_millis(),
                    payload,
                });
                offset = r.offset + 1;
            }
            if offset >= high {
                break;
            }
            if records.is_empty() {
                bail!(
                    "partition {partition}: no records at {offset} below the high watermark {high}"
                );
            }
        }
    }
    Ok(out)
}
