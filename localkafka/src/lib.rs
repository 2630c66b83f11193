//! Apache Kafka on loopback, from the pinned release's jars: one node, or a KRaft cluster of three.
//!
//! Apache Kafka is the reference broker: every real-broker test, `make kafka`, the demo and the bench
//! run the release named in `localkafka/pom.xml`, the same one `k8s/` deploys. The jars come from
//! Maven Central through `scripts/ensure-kafka.sh` and are cached; nothing is built.
//!
//! # Layout
//! - [`Cluster`]: N nodes, each a KRaft broker *and* controller ("combined" mode, like `k8s/`), on
//!   free loopback ports; stop, kill and restart one node with its data.
//! - [`jars`]: where the cached jars are, and running Kafka's own tools and Java programs on them.
//! - [`probe`]: the readiness check, a Metadata request that lists the unfenced brokers.
//!
//! # Lifetimes
//! Each node's JVM runs under a small `sh` that holds a pipe from this process. A deliberate stop
//! writes `stop` on it; when the pipe closes without one (this process exited or was killed), the
//! shell stops the JVM and removes a temporary node's data. A test that panics or is killed therefore
//! never leaves a broker or its files behind, even one kept in a `static`.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod jars;
pub mod probe;

use std::{
    fs,
    io::Write as _,
    net::TcpListener,
    os::unix::process::CommandExt as _,
    path::{Path, PathBuf},
    process::{Child, ChildStdin, Command, Stdio},
    time::{Duration, Instant},
};

/// The pinned Apache Kafka release, read from `localkafka/pom.xml` (the one place it is written):
/// what `k8s/` deploys and every figure in BENCHMARKS.md was taken on.
pub fn pinned() -> &'static str {
    const POM: &str = include_str!("../pom.xml");
    // The property's first use is its definition: `<kafka.version>X</kafka.version>`.
    POM.split("<kafka.version>")
        .nth(1)
        .and_then(|rest| rest.split("</kafka.version>").next())
        .map(str::trim)
        .unwrap_or("unknown")
}

/// The release to run: `KAFKA_VERSION` if set (e.g. `3.9.2`, to run the classic-protocol tests on
/// the 3.x line many clusters still run), else [`pinned`].
pub fn version() -> String {
    std::env::var("KAFKA_VERSION")
        .ok()
        .filter(|v| !v.trim().is_empty())
        .unwrap_or_else(|| pinned().to_string())
}

/// What went wrong starting or driving a node.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The jars are not cached (or `KAFKA_LIBS` points at nothing usable).
    #[error("{0}")]
    Jars(String),
    /// A file or process operation failed.
    #[error("{what}: {source}")]
    Io {
        /// What was being done.
        what: String,
        /// The cause.
        source: std::io::Error,
    },
    /// `kafka.tools.StorageTool format` failed.
    #[error("formatting node {node}'s storage failed:\n{output}")]
    Format {
        /// The node id.
        node: i32,
        /// What the tool printed.
        output: String,
    },
    /// A node exited while starting.
    #[error("node {node} exited with {status} while starting; its log {log}:\n{tail}")]
    Exited {
        /// The node id.
        node: i32,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// Where its output went.
        log: String,
        /// The end of that output.
        tail: String,
    },
    /// The cluster did not become ready in time.
    #[error("{what} within {timeout:?}; last answer: {last}")]
    NotReady {
        /// What we waited for.
        what: String,
        /// How long.
        timeout: Duration,
        /// The last probe's result.
        last: String,
    },
}

fn io(what: impl Into<String>) -> impl FnOnce(std::io::Error) -> Error {
    let what = what.into();
    move |source| Error::Io { what, source }
}

/// How to start a cluster.
#[derive(Debug, Clone)]
pub struct Options {
    /// Number of nodes (1 for a single broker, 3 for the cluster).
    pub nodes: usize,
    /// Where the nodes keep their data. `None`: a fresh temporary directory, removed on stop.
    /// `Some`: kept, and reused (not reformatted) if it already holds a cluster.
    pub data_dir: Option<PathBuf>,
    /// The first node's client port; the others follow (`port + i`). `None`: free ports.
    pub port: Option<u16>,
    /// Extra `server.properties` lines, applied to every node after the defaults.
    pub properties: Vec<(String, String)>,
    /// Client listeners besides PLAINTEXT (which stays the inter-broker one and the one
    /// [`Cluster::bootstrap`] names), each on ports of its own: for TLS and SASL tests. Their
    /// settings (`listener.name.<name>.…`) come through [`properties`](Self::properties).
    pub listeners: Vec<Listener>,
    /// Extra arguments of `kafka.tools.StorageTool format`, e.g. `--add-scram` and
    /// `SCRAM-SHA-256=[name=alice,password=alice-secret]`: SCRAM users exist before the first start.
    pub format_args: Vec<String>,
    /// The JVM's maximum heap.
    pub heap: String,
    /// JVM options that start faster and run slower (C1 only): for tests, not for the bench.
    pub quick_start: bool,
    /// Extra JVM options, after the defaults (a `-D` here wins over [`jars::QUIET`]'s), e.g.
    /// `-Dorg.slf4j.simpleLogger.log.kafka.request.logger=debug` for Kafka's request log.
    pub jvm_options: Vec<String>,
    /// How long the whole cluster may take to list all its brokers as ready.
    pub ready_timeout: Duration,
}

impl Default for Options {
    fn default() -> Self {
        Self {
            nodes: 1,
            data_dir: None,
            port: None,
            properties: Vec::new(),
            listeners: Vec::new(),
            format_args: Vec::new(),
            heap: "512m".into(),
            quick_start: false,
            jvm_options: Vec::new(),
            ready_timeout: Duration::from_secs(90),
        }
    }
}

impl Options {
    /// `nodes` nodes with the defaults.
    pub fn nodes(nodes: usize) -> Self {
        Self {
            nodes,
            ..Self::default()
        }
    }

    /// Adds a `server.properties` line.
    pub fn property(mut self, key: &str, value: impl ToString) -> Self {
        self.properties.push((key.to_string(), value.to_string()));
        self
    }

    /// Adds a client listener `name` (upper case, e.g. `SASL_SSL` or `MTLS`) speaking `protocol`
    /// (`SSL`, `SASL_PLAINTEXT` or `SASL_SSL`).
    pub fn listener(mut self, name: &str, protocol: &str) -> Self {
        self.listeners.push(Listener {
            name: name.to_string(),
            protocol: protocol.to_string(),
        });
        self
    }

    /// Adds a `StorageTool format` argument.
    pub fn format_arg(mut self, arg: impl Into<String>) -> Self {
        self.format_args.push(arg.into());
        self
    }
}

/// A client listener of its own security protocol.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Listener {
    /// The listener name, as in `listeners` and `listener.name.<name lower case>.…`.
    pub name: String,
    /// Kafka's security protocol for it.
    pub protocol: String,
}

/// One node: its ports, its files and, while it runs, its process.
#[derive(Debug)]
struct Node {
    /// KRaft node id (1-based, like the StatefulSet's ordinal + 1 would be).
    id: i32,
    /// The client listener.
    port: u16,
    /// The ports of [`Options::listeners`], in order.
    extra_ports: Vec<u16>,
    /// Its `server.properties`.
    config: PathBuf,
    /// Its combined stdout and stderr.
    log: PathBuf,
    /// The JVM's pid, written by the wrapper shell.
    pid_file: PathBuf,
    /// The wrapper shell and the pipe whose closing stops the JVM.
    running: Option<(Child, ChildStdin)>,
}

/// A running local Kafka: one node or several, all brokers and controllers.
#[derive(Debug)]
pub struct Cluster {
    /// The nodes, in id order.
    nodes: Vec<Node>,
    /// The data root.
    dir: PathBuf,
    /// Whether `dir` is ours to remove.
    ephemeral: bool,
    /// The classpath every JVM runs with.
    classpath: String,
    /// How it was started (restarts reuse it).
    options: Options,
}

impl Cluster {
    /// Formats (if needed) and starts every node, then waits until each one lists all of them as
    /// ready brokers.
    pub fn start(options: Options) -> Result<Self, Error> {
        let classpath = jars::classpath()?;
        let mut last = None;
        // Free ports can be taken between our check and the JVM's bind: try a few sets.
        let attempts = if options.port.is_some() { 1 } else { 3 };
        for _ in 0..attempts {
            match Self::try_start(&options, &classpath) {
                Ok(cluster) => return Ok(cluster),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| Error::Jars("no attempt made".into())))
    }

    fn try_start(options: &Options, classpath: &str) -> Result<Self, Error> {
        let (dir, ephemeral) = match &options.data_dir {
            Some(dir) => (dir.clone(), false),
            None => (temp_dir()?, true),
        };
        fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
        let ports = ports(options)?;
        let voters = ports
            .iter()
            .enumerate()
            .map(|(i, (_, c))| format!("{}@127.0.0.1:{c}", i + 1))
            .collect::<Vec<_>>()
            .join(",");
        let mut nodes = Vec::new();
        let extra = extra_ports(options)?;
        for (i, (port, controller_port)) in ports.iter().copied().enumerate() {
            let id = i as i32 + 1;
            let extra_ports = extra.get(i).cloned().unwrap_or_default();
            let node_dir = dir.join(format!("node-{id}"));
            fs::create_dir_all(&node_dir)
                .map_err(io(format!("creating {}", node_dir.display())))?;
            let config = node_dir.join("server.properties");
            let text = server_properties(
                id,
                (port, controller_port, &extra_ports),
                &voters,
                &node_dir,
                options,
            );
            fs::write(&config, text).map_err(io(format!("writing {}", config.display())))?;
            nodes.push(Node {
                id,
                port,
                extra_ports,
                log: node_dir.join("kafka.log"),
                pid_file: node_dir.join("kafka.pid"),
                config,
                running: None,
            });
        }
        let mut cluster = Self {
            nodes,
            dir,
            ephemeral,
            classpath: classpath.to_string(),
            options: options.clone(),
        };
        cluster.format()?;
        if cluster.ephemeral {
            // Nothing reformats a temporary cluster: without this file its directory can be removed
            // by the last node's shell (see `launch`).
            let _ = fs::remove_file(cluster.dir.join("cluster.id"));
        }
        for i in 0..cluster.nodes.len() {
            cluster.launch(i)?;
        }
        cluster.wait_ready(cluster.options.ready_timeout)?;
        Ok(cluster)
    }

    /// `host:port,…` of every node's listener `name` (one of [`Options::listeners`]); `None` when
    /// there is no such listener.
    pub fn listener_bootstrap(&self, name: &str) -> Option<String> {
        let index = self.options.listeners.iter().position(|l| l.name == name)?;
        let addrs: Option<Vec<String>> = self
            .nodes
            .iter()
            .map(|n| n.extra_ports.get(index).map(|p| format!("127.0.0.1:{p}")))
            .collect();
        addrs.map(|a| a.join(","))
    }

    /// `host:port,…` of every node, for `KAFKA_BROKERS` or `bootstrap.servers`.
    pub fn bootstrap(&self) -> String {
        self.nodes
            .iter()
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The bootstrap without node `id`: what clients use once it is down (killed or stopped).
    pub fn bootstrap_except(&self, id: i32) -> String {
        self.nodes
            .iter()
            .filter(|n| n.id != id)
            .map(|n| format!("127.0.0.1:{}", n.port))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// The first node's address alone (a single node's whole bootstrap).
    pub fn addr(&self) -> String {
        self.node_addr(1)
    }

    /// `127.0.0.1:port` of node `id` (1-based).
    pub fn node_addr(&self, id: i32) -> String {
        let port = self.node(id).map(|n| n.port).unwrap_or(0);
        format!("127.0.0.1:{port}")
    }

    /// The node ids, `1..=N`.
    pub fn ids(&self) -> Vec<i32> {
        self.nodes.iter().map(|n| n.id).collect()
    }

    /// The node whose client port is `port`, if any (to map a leader's address back to its id).
    pub fn id_of_port(&self, port: u16) -> Option<i32> {
        self.nodes.iter().find(|n| n.port == port).map(|n| n.id)
    }

    /// The data root (node `i`'s data is in `node-i/`).
    pub fn data_dir(&self) -> &Path {
        &self.dir
    }

    /// What node `id` printed (warnings and errors; the JVM's own messages).
    pub fn log(&self, id: i32) -> String {
        self.node(id)
            .and_then(|n| fs::read_to_string(&n.log).ok())
            .unwrap_or_default()
    }

    /// Whether node `id`'s process is running.
    pub fn is_running(&mut self, id: i32) -> bool {
        let Some(i) = self.index(id) else {
            return false;
        };
        match &mut self.nodes[i].running {
            Some((child, _)) => matches!(child.try_wait(), Ok(None)),
            None => false,
        }
    }

    /// SIGKILLs node `id`'s JVM: no controlled shutdown, as when a machine dies.
    pub fn kill(&mut self, id: i32) -> Result<(), Error> {
        let Some(i) = self.index(id) else {
            return Ok(());
        };
        if let Some(pid) = self.pid(i) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        // The shell notices nothing until its pipe closes: close it and reap both.
        self.stop_index(i, Duration::from_secs(30));
        Ok(())
    }

    /// Stops node `id` cleanly (SIGTERM: controlled shutdown moves its leaderships first), waiting
    /// at most `timeout` before killing it.
    pub fn stop(&mut self, id: i32, timeout: Duration) {
        if let Some(i) = self.index(id) {
            self.stop_index(i, timeout);
        }
    }

    /// Starts node `id` again with its data and ports, and waits until the cluster lists it.
    pub fn restart(&mut self, id: i32) -> Result<(), Error> {
        let Some(i) = self.index(id) else {
            return Ok(());
        };
        if self.is_running(id) {
            self.stop_index(i, Duration::from_secs(60));
        }
        self.launch(i)?;
        self.wait_ready(self.options.ready_timeout)
    }

    /// Waits until every running node answers and lists every running node as a broker.
    pub fn wait_ready(&mut self, timeout: Duration) -> Result<(), Error> {
        let deadline = Instant::now() + timeout;
        let mut last = String::from("no answer yet");
        loop {
            let running: Vec<(usize, i32, u16)> = (self.nodes.iter().enumerate())
                .filter(|(_, n)| n.running.is_some())
                .map(|(i, n)| (i, n.id, n.port))
                .collect();
            let want: Vec<i32> = running.iter().map(|r| r.1).collect();
            let mut all = true;
            for &(i, id, port) in &running {
                if let Some(status) = self.exited(i) {
                    return Err(Error::Exited {
                        node: id,
                        status,
                        log: self.nodes[i].log.display().to_string(),
                        tail: tail(&self.nodes[i].log),
                    });
                }
                match probe::brokers(&format!("127.0.0.1:{port}"), Duration::from_secs(2)) {
                    Ok(ids) if want.iter().all(|w| ids.contains(w)) => {}
                    Ok(ids) => {
                        last = format!("node {id} lists brokers {ids:?}, want {want:?}");
                        all = false;
                    }
                    Err(err) => {
                        last = format!("node {id}: {err}");
                        all = false;
                    }
                }
            }
            if all {
                return Ok(());
            }
            if Instant::now() >= deadline {
                return Err(Error::NotReady {
                    what: format!("brokers {want:?} were not all ready"),
                    timeout,
                    last,
                });
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    /// Stops every node cleanly, all at once, within `timeout` (then kills what is left), and removes
    /// a temporary data directory. All at once: a node stopping alone waits for the controller
    /// quorum, which the nodes stopped before it have taken away.
    pub fn shutdown(&mut self, timeout: Duration) {
        self.stop_all(timeout);
        if self.ephemeral {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }

    /// Stops every node cleanly, all at once, keeping the data for [`Cluster::resume`].
    pub fn stop_all(&mut self, timeout: Duration) {
        let mut stopping = Vec::new();
        for i in 0..self.nodes.len() {
            if let Some((child, mut stdin)) = self.nodes[i].running.take() {
                let _ = stdin.write_all(b"stop\n");
                drop(stdin);
                stopping.push((i, child));
            }
        }
        let deadline = Instant::now() + timeout;
        for (i, mut child) in stopping {
            while matches!(child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(Duration::from_millis(50));
            }
            if matches!(child.try_wait(), Ok(None)) {
                if let Some(pid) = self.pid(i) {
                    let _ = Command::new("kill")
                        .args(["-KILL", &pid.to_string()])
                        .status();
                }
            }
            let _ = child.wait();
        }
    }

    /// Starts every stopped node again (all at once: a quorum needs a majority up) and waits until
    /// the cluster lists them all.
    pub fn resume(&mut self) -> Result<(), Error> {
        for i in 0..self.nodes.len() {
            if self.nodes[i].running.is_none() {
                self.launch(i)?;
            }
        }
        self.wait_ready(self.options.ready_timeout)
    }

    fn node(&self, id: i32) -> Option<&Node> {
        self.nodes.iter().find(|n| n.id == id)
    }

    fn index(&self, id: i32) -> Option<usize> {
        self.nodes.iter().position(|n| n.id == id)
    }

    fn exited(&mut self, i: usize) -> Option<std::process::ExitStatus> {
        match &mut self.nodes[i].running {
            Some((child, _)) => child.try_wait().ok().flatten(),
            None => None,
        }
    }

    fn pid(&self, i: usize) -> Option<u32> {
        fs::read_to_string(&self.nodes[i].pid_file)
            .ok()
            .and_then(|s| s.trim().parse().ok())
    }

    /// Formats every node's storage once (a kept data directory that is already formatted stays).
    fn format(&self) -> Result<(), Error> {
        let cluster_id_file = self.dir.join("cluster.id");
        let cluster_id = match fs::read_to_string(&cluster_id_file) {
            Ok(id) if !id.trim().is_empty() => id.trim().to_string(),
            _ => {
                let id = random_cluster_id();
                fs::write(&cluster_id_file, &id)
                    .map_err(io(format!("writing {}", cluster_id_file.display())))?;
                id
            }
        };
        // One JVM per node, all at once: formatting is most of a cold start.
        let mut formatting = Vec::new();
        for node in &self.nodes {
            let data = node.config.with_file_name("data");
            if data.join("meta.properties").is_file() {
                continue;
            }
            let child = jars::java(&self.classpath)
                .arg("-XX:TieredStopAtLevel=1")
                .args(["kafka.tools.StorageTool", "format", "--ignore-formatted"])
                .args(["--cluster-id", &cluster_id, "--config"])
                .arg(&node.config)
                .args(&self.options.format_args)
                .stdout(Stdio::piped())
                .stderr(Stdio::piped())
                .spawn()
                .map_err(io("running kafka.tools.StorageTool"))?;
            formatting.push((node.id, child));
        }
        for (id, child) in formatting {
            let out = child
                .wait_with_output()
                .map_err(io("waiting for kafka.tools.StorageTool"))?;
            if !out.status.success() {
                return Err(Error::Format {
                    node: id,
                    output: format!(
                        "{}{}",
                        String::from_utf8_lossy(&out.stdout),
                        String::from_utf8_lossy(&out.stderr)
                    ),
                });
            }
        }
        Ok(())
    }

    /// Starts node `i`'s JVM under the wrapper shell.
    fn launch(&mut self, i: usize) -> Result<(), Error> {
        let node = &self.nodes[i];
        let log = fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&node.log)
            .map_err(io(format!("opening {}", node.log.display())))?;
        let err = log.try_clone().map_err(io("duplicating the log handle"))?;
        let _ = fs::remove_file(&node.pid_file);
        let mut jvm = vec![
            format!("-Xmx{}", self.options.heap),
            "-XX:+UseG1GC".into(),
            "-Djava.awt.headless=true".into(),
        ];
        if self.options.quick_start {
            jvm.extend(["-XX:TieredStopAtLevel=1".into(), "-Xshare:auto".into()]);
        }
        jvm.extend(jars::QUIET.iter().map(|s| s.to_string()));
        jvm.extend(self.options.jvm_options.iter().cloned());
        // The shell runs the JVM in the background, records its pid, and stops it (SIGTERM, a
        // controlled shutdown) when its stdin, our pipe, says `stop` or reaches end of file. End of
        // file without `stop` means the owner is gone: a temporary node's data goes too.
        const WRAPPER: &str = r#"pid_file="$1"; wipe="$2"; shift 2
"$@" </dev/null &
pid=$!
echo "$pid" > "$pid_file"
trap '' INT
keep=
while read -r line; do
  if [ "$line" = stop ]; then keep=1; break; fi
done
kill -TERM "$pid" 2>/dev/null
wait "$pid"
status=$?
if [ -z "$keep" ] && [ -n "$wipe" ]; then
  rm -rf "$wipe"
  rmdir "$(dirname "$wipe")" 2>/dev/null
fi
exit $status"#;
        let wipe = if self.ephemeral {
            node.config
                .parent()
                .map(|d| d.display().to_string())
                .unwrap_or_default()
        } else {
            String::new()
        };
        let mut child = Command::new("sh")
            .arg("-c")
            .arg(WRAPPER)
            .arg("localkafka-node")
            .arg(&node.pid_file)
            .arg(&wipe)
            .arg(jars::java_binary())
            .args(&jvm)
            .arg("-cp")
            .arg(&self.classpath)
            .arg("kafka.Kafka")
            .arg(&node.config)
            .stdin(Stdio::piped())
            .stdout(log)
            .stderr(err)
            // Its own process group: a terminal's Ctrl-C reaches whoever owns the cluster, which
            // then stops the nodes in order.
            .process_group(0)
            .spawn()
            .map_err(io("starting sh for a Kafka node"))?;
        let stdin = child
            .stdin
            .take()
            .ok_or_else(|| Error::Jars("no stdin pipe to the node's shell".into()))?;
        self.nodes[i].running = Some((child, stdin));
        Ok(())
    }

    fn stop_index(&mut self, i: usize, timeout: Duration) {
        let Some((mut child, stdin)) = self.nodes[i].running.take() else {
            return;
        };
        // `stop`, then end of file: the shell sends SIGTERM, waits for the JVM and keeps the data.
        let mut stdin = stdin;
        let _ = stdin.write_all(b"stop\n");
        drop(stdin);
        let deadline = Instant::now() + timeout;
        loop {
            match child.try_wait() {
                Ok(Some(_)) | Err(_) => return,
                Ok(None) if Instant::now() < deadline => {
                    std::thread::sleep(Duration::from_millis(50))
                }
                Ok(None) => break,
            }
        }
        if let Some(pid) = self.pid(i) {
            let _ = Command::new("kill")
                .args(["-KILL", &pid.to_string()])
                .status();
        }
        let _ = child.wait();
    }
}

impl Drop for Cluster {
    fn drop(&mut self) {
        self.shutdown(Duration::from_secs(30));
    }
}

/// The properties of node `id`. Defaults suit a cluster on one machine: internal topics replicated
/// as far as the node count allows, no auto-created topics (as in `k8s/`).
fn server_properties(
    id: i32,
    (port, controller_port, extra_ports): (u16, u16, &[u16]),
    voters: &str,
    node_dir: &Path,
    options: &Options,
) -> String {
    let n = options.nodes.max(1);
    let extra: Vec<(&Listener, u16)> = options
        .listeners
        .iter()
        .zip(extra_ports.iter().copied())
        .collect();
    let extra_listeners: String = extra
        .iter()
        .map(|(l, p)| format!(",{}://127.0.0.1:{p}", l.name))
        .collect();
    let extra_protocols: String = extra
        .iter()
        .map(|(l, _)| format!(",{}:{}", l.name, l.protocol))
        .collect();
    let replicas = n.min(3);
    let min_isr = if n >= 3 { 2 } else { 1 };
    let mut props: Vec<(String, String)> = [
        ("process.roles", "broker,controller".to_string()),
        ("node.id", id.to_string()),
        ("controller.quorum.voters", voters.to_string()),
        (
            "listeners",
            format!(
                "PLAINTEXT://127.0.0.1:{port},CONTROLLER://127.0.0.1:{controller_port}\
                 {extra_listeners}"
            ),
        ),
        (
            "advertised.listeners",
            format!("PLAINTEXT://127.0.0.1:{port}{extra_listeners}"),
        ),
        ("controller.listener.names", "CONTROLLER".into()),
        (
            "listener.security.protocol.map",
            format!("PLAINTEXT:PLAINTEXT,CONTROLLER:PLAINTEXT{extra_protocols}"),
        ),
        ("inter.broker.listener.name", "PLAINTEXT".into()),
        ("log.dirs", node_dir.join("data").display().to_string()),
        ("auto.create.topics.enable", "false".into()),
        ("offsets.topic.replication.factor", replicas.to_string()),
        (
            "transaction.state.log.replication.factor",
            replicas.to_string(),
        ),
        ("transaction.state.log.min.isr", min_isr.to_string()),
        (
            "share.coordinator.state.topic.replication.factor",
            replicas.to_string(),
        ),
        ("share.coordinator.state.topic.min.isr", min_isr.to_string()),
        ("num.partitions", "1".into()),
    ]
    .into_iter()
    .map(|(k, v)| (k.to_string(), v))
    .collect();
    for (k, v) in &options.properties {
        props.retain(|(key, _)| key != k);
        props.push((k.clone(), v.clone()));
    }
    props
        .into_iter()
        .map(|(k, v)| format!("{k}={v}\n"))
        .collect()
}

/// `(client port, controller port)` for each node.
fn ports(options: &Options) -> Result<Vec<(u16, u16)>, Error> {
    let n = options.nodes.max(1);
    if let Some(base) = options.port {
        // Controllers take the ports after the clients': base..base+n, then base+n..base+2n.
        return Ok((0..n as u16)
            .map(|i| (base + i, base + n as u16 + i))
            .collect());
    }
    // Hold every listener until all are chosen, so no two nodes get the same port.
    let held: Vec<TcpListener> = (0..2 * n)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(io("finding free loopback ports"))?;
    let found: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(io("reading a bound port"))?;
    Ok((0..n).map(|i| (found[2 * i], found[2 * i + 1])).collect())
}

/// For each node, the ports of [`Options::listeners`]: after the controllers' with a fixed base
/// port (`base + 2n + k·n + i`), else free ones.
fn extra_ports(options: &Options) -> Result<Vec<Vec<u16>>, Error> {
    let n = options.nodes.max(1);
    let k = options.listeners.len();
    if let Some(base) = options.port {
        return Ok((0..n as u16)
            .map(|i| {
                (0..k as u16)
                    .map(|j| base + 2 * n as u16 + j * n as u16 + i)
                    .collect()
            })
            .collect());
    }
    let held: Vec<TcpListener> = (0..n * k)
        .map(|_| TcpListener::bind("127.0.0.1:0"))
        .collect::<Result<_, _>>()
        .map_err(io("finding free loopback ports"))?;
    let found: Vec<u16> = held
        .iter()
        .map(|l| l.local_addr().map(|a| a.port()))
        .collect::<Result<_, _>>()
        .map_err(io("reading a bound port"))?;
    Ok((0..n)
        .map(|i| (0..k).map(|j| found[i * k + j]).collect())
        .collect())
}

/// A fresh directory under the system's temp dir.
fn temp_dir() -> Result<PathBuf, Error> {
    use std::sync::atomic::{AtomicU32, Ordering};
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    let dir = std::env::temp_dir().join(format!(
        "localkafka-{}-{nanos:x}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    ));
    fs::create_dir_all(&dir).map_err(io(format!("creating {}", dir.display())))?;
    Ok(dir)
}

/// A KRaft cluster id: 16 bytes as unpadded URL-safe base64, what `StorageTool random-uuid` prints,
/// without starting a JVM for it.
fn random_cluster_id() -> String {
    use std::hash::{BuildHasher as _, Hasher as _};
    let mut bytes = [0u8; 16];
    for chunk in bytes.chunks_mut(8) {
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map(|d| d.as_nanos())
                .unwrap_or(0),
        );
        h.write_u32(std::process::id());
        chunk.copy_from_slice(&h.finish().to_le_bytes());
    }
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
    let mut out = String::new();
    let mut acc = 0u32;
    let mut bits = 0;
    for b in bytes {
        acc = (acc << 8) | u32::from(b);
        bits += 8;
        while bits >= 6 {
            bits -= 6;
            out.push(ALPHABET[((acc >> bits) & 63) as usize] as char);
        }
    }
    if bits > 0 {
        out.push(ALPHABET[((acc << (6 - bits)) & 63) as usize] as char);
    }
    out
}

/// The last 40 lines of a log.
fn tail(path: &Path) -> String {
    let text = fs::read_to_string(path).unwrap_or_default();
    let lines: Vec<&str> = text.lines().collect();
    lines[lines.len().saturating_sub(40)..].join("\n")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_pinned_version_comes_from_the_pom() {
        let v = pinned();
        assert!(v.starts_with("4."), "{v}");
        assert_eq!(v.split('.').count(), 3, "{v}");
    }

    #[test]
    fn cluster_ids_are_22_url_safe_characters_and_differ() {
        let (a, b) = (random_cluster_id(), random_cluster_id());
        assert_eq!(a.len(), 22);
        assert!(a
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || c == '-' || c == '_'));
        assert_ne!(a, b);
    }

    #[test]
    fn properties_replicate_internal_topics_as_far_as_the_cluster_allows() {
        let opts = Options::nodes(3).property("group.initial.rebalance.delay.ms", 0);
        let text = server_properties(2, (9092, 9095, &[]), "1@x:1", Path::new("/d"), &opts);
        assert!(text.contains("node.id=2\n"));
        assert!(text.contains("offsets.topic.replication.factor=3\n"));
        assert!(text.contains("transaction.state.log.min.isr=2\n"));
        assert!(text.contains("group.initial.rebalance.delay.ms=0\n"));
        let one = server_properties(
            1,
            (9092, 9093, &[]),
            "1@x:1",
            Path::new("/d"),
            &Options::nodes(1),
        );
        assert!(one.contains("offsets.topic.replication.factor=1\n"));
    }

    #[test]
    fn a_property_given_twice_keeps_the_last_value() {
        let opts = Options::nodes(1)
            .property("num.partitions", 3)
            .property("num.partitions", 9);
        let text = server_properties(1, (1, 2, &[]), "1@x:2", Path::new("/d"), &opts);
        assert_eq!(text.matches("num.partitions=").count(), 1);
        assert!(text.contains("num.partitions=9\n"));
    }
}
