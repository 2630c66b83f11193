//! The local broker when no `KAFKA_BROKERS` is given, chosen by `DEMO_BROKER`:
//!
//! - `kafka` (the default): Apache Kafka, the project's reference broker, one node that is broker
//!   and controller (KRaft), started by [`localkafka`] from the pinned release's cached jars on free
//!   loopback ports. The topic has one replica.
//! - `kafka-cluster`: the same with three nodes, the topic replicated twice as in the seed. Three
//!   JVMs: slower to start and heavier on a small machine.
//! - `nisshi`: the nisshi binary (a Rust Kafka-compatible broker), in memory, where it is installed
//!   (`scripts/ensure-broker.sh`).
//!
//! Either way the broker runs in its own process group, so a terminal's Ctrl-C reaches only the
//! demo, which stops it last, after every client has left. Apache Kafka's data is a temporary
//! directory, removed on stop; its nodes' logs are copied to the demo's `logs/` first.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, Command},
};
use tokio_util::sync::CancellationToken;

use crate::config::LocalBroker;

/// How long the Kafka nodes may take to stop cleanly (a controlled shutdown) before being killed.
const KAFKA_STOP: Duration = Duration::from_secs(60);

/// The broker the demo started.
pub enum Local {
    Kafka(Kafka),
    Nisshi(Nisshi),
}

impl Local {
    /// Starts the `kind` of broker, its log going to `logs/`. Ctrl-C while Apache Kafka starts waits
    /// for it (seconds) and returns it, to be stopped like any other.
    pub async fn start(
        kind: LocalBroker,
        nisshi_bin: Option<&Path>,
        logs: &Path,
        cancel: &CancellationToken,
    ) -> anyhow::Result<Self> {
        match kind {
            LocalBroker::Kafka | LocalBroker::KafkaCluster => {
                Ok(Self::Kafka(Kafka::start(kind.nodes(), logs, cancel).await?))
            }
            LocalBroker::Nisshi => {
                let bin = find(nisshi_bin)?;
                println!("starting a local nisshi ({}) ...", bin.display());
                Ok(Self::Nisshi(
                    Nisshi::start(&bin, &logs.join("broker.log")).await?,
                ))
            }
        }
    }

    /// The bootstrap addresses, `127.0.0.1:PORT` each.
    pub fn brokers(&self) -> Vec<String> {
        match self {
            Self::Kafka(k) => k.cluster.bootstrap().split(',').map(String::from).collect(),
            Self::Nisshi(n) => vec![n.addr().to_string()],
        }
    }

    /// What it is, for the title and the log: `local Apache Kafka 4.4.0, 3 nodes`.
    pub fn describe(&self) -> String {
        match self {
            Self::Kafka(k) if k.nodes == 1 => {
                format!("local Apache Kafka {}", localkafka::version())
            }
            Self::Kafka(k) => format!(
                "local Apache Kafka {}, {} nodes",
                localkafka::version(),
                k.nodes
            ),
            Self::Nisshi(_) => "local nisshi".into(),
        }
    }

    /// Stops the broker (last, after every client left).
    pub async fn stop(self) {
        match self {
            Self::Kafka(k) => k.stop().await,
            Self::Nisshi(n) => n.stop().await,
        }
    }
}

/// Apache Kafka on loopback: one node or three, each a broker and a controller.
pub struct Kafka {
    cluster: localkafka::Cluster,
    nodes: usize,
    /// The demo's `logs/`, where the nodes' logs are copied on stop.
    logs: PathBuf,
}

impl Kafka {
    async fn start(nodes: usize, logs: &Path, cancel: &CancellationToken) -> anyhow::Result<Self> {
        // Kafka's own defaults otherwise, group.initial.rebalance.delay.ms (3 s) included: the demo
        // measures what a real group sees. C1 only: a faster start, and the load (200 messages/s) is
        // far below what it costs.
        let mut options = localkafka::Options::nodes(nodes);
        options.quick_start = true;
        let plural = if nodes == 1 { "" } else { "s" };
        println!(
            "starting a local Apache Kafka {} ({nodes} node{plural}, heap {} each) ...",
            localkafka::version(),
            options.heap
        );
        let started = std::time::Instant::now();
        let mut starting = tokio::task::spawn_blocking(move || localkafka::Cluster::start(options));
        let joined = tokio::select! {
            joined = &mut starting => joined,
            _ = cancel.cancelled() => {
                println!("interrupted: stopping Apache Kafka once it has started ...");
                starting.await
            }
        };
        let cluster = joined
            .context("the thread starting Apache Kafka")?
            .context("starting the local Apache Kafka (DEMO_BROKER=nisshi or KAFKA_BROKERS for another broker)")?;
        let where_logs = if nodes == 1 {
            format!("{}/node-1/kafka.log", cluster.data_dir().display())
        } else {
            format!("{}/node-*/kafka.log", cluster.data_dir().display())
        };
        println!(
            "Apache Kafka ready in {:.1} s at {}; its log: {where_logs} (copied to {} on exit)",
            started.elapsed().as_secs_f64(),
            cluster.bootstrap(),
            logs.display()
        );
        Ok(Self {
            cluster,
            nodes,
            logs: logs.to_path_buf(),
        })
    }

    /// Stops every node cleanly (all at once), copies their logs to `logs/broker.log` (one node) or
    /// `logs/broker-<id>.log`, and removes the data.
    async fn stop(self) {
        let Self {
            mut cluster,
            nodes,
            logs,
        } = self;
        let stopped = tokio::task::spawn_blocking(move || {
            cluster.stop_all(KAFKA_STOP);
            for id in cluster.ids() {
                let name = if nodes == 1 {
                    "broker.log".to_string()
                } else {
                    format!("broker-{id}.log")
                };
                let _ = std::fs::write(logs.join(name), cluster.log(id));
            }
            cluster.shutdown(Duration::from_secs(5));
        });
        let _ = stopped.await;
    }
}

/// How long nisshi may take to print `ready in`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running nisshi; killed when dropped (its data is in memory and goes with it).
pub struct Nisshi {
    child: Child,
    addr: String,
}

impl Nisshi {
    /// Starts nisshi and waits until it listens. Its output goes to `log`.
    pub async fn start(bin: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut last = None;
        // A port found free can be taken before nisshi binds it: try a few.
        for _ in 0..3 {
            match Self::try_start(bin, free_port()?, log).await {
                Ok(broker) => return Ok(broker),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nisshi did not start")))
    }

    async fn try_start(bin: &Path, port: u16, log: &Path) -> anyhow::Result<Self> {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/"])
            // nisshi's info level traces every request's serialization: gigabytes in a minute.
            .env(
                "RUST_LOG",
                std::env::var("NISSHI_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C reaches the demo, which stops the broker last.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut file = tokio::fs::File::create(log)
            .await
            .with_context(|| format!("creating {}", log.display()))?;
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1);
        let stdout = child.stdout.take().context("nisshi stdout")?;
        let stderr = child.stderr.take().context("nisshi stderr")?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
        for stream in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Everything nisshi prints goes to its log; the first `ready in` releases the wait.
        tokio::spawn(async move {
            let mut told = false;
            while let Some(line) = rx.recv().await {
                if !told && line.contains("ready in") {
                    told = true;
                    let _ = ready_tx.send(()).await;
                }
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
            }
            let _ = file.flush().await;
        });
        tokio::select! {
            ready = ready_rx.recv() => {
                if ready.is_none() {
                    bail!("nisshi exited before it was ready (see {})", log.display());
                }
            }
            _ = tokio::time::sleep(READY_TIMEOUT) => {
                bail!("nisshi not ready after {READY_TIMEOUT:?} (see {})", log.display());
            }
        }
        Ok(Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops the broker (last, after every client left).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// `nisshi_bin`, else `NISSHI` on PATH, else `~/.cargo/bin/nisshi`.
pub fn find(nisshi_bin: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = nisshi_bin {
        if bin.is_file() {
            return Ok(bin.to_path_buf());
        }
        bail!("NISSHI_BIN={} is not a file", bin.display());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nisshi"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|c| c.join("bin").join("nisshi")))
        .find(|p| p.is_file())
        .context(
            "DEMO_BROKER=nisshi: the broker `nisshi` was not found. `make demo DEMO_BROKER=nisshi` \
             installs it (once, about 12 minutes on 2 cores) with ./scripts/ensure-broker.sh; or \
             leave DEMO_BROKER unset for a local Apache Kafka, or set KAFKA_BROKERS=host:port to use \
             an existing Kafka",
        )
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}
