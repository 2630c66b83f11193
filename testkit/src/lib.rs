//! Test harness shared by the integration tests: a real broker, unique names, bounded waits, and the
//! independent Python clients.
//!
//! # Layout
//! - [`Broker`]: Apache Kafka (one node or a 3-node cluster, via `localkafka`) or, with
//!   `TEST_BROKER=nisshi`, nisshi; on free 127.0.0.1 ports, stopped when dropped.
//! - [`unique`]: topic and group names that never collide, so tests can run in parallel.
//! - [`wait_for`]: polling with a deadline instead of sleeping.
//! - [`Spawned`]: a binary under test in the background, its output captured line by line.
//! - [`produce`]: test data written with rskafka directly, at once or at a steady rate.
//! - [`python`]: runs the scripts in `tests/py/` with kafka-python and confluent-kafka.
//! - [`java`]: the Java client's group member (`tests/java/`) and Kafka's own command-line tools.
//! - [`secure`]: Apache Kafka with TLS, mutual TLS and SASL listeners, and test certificates.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

mod broker;
pub mod java;
pub mod metrics;
mod nisshi;
mod process;
pub mod produce;
pub mod python;
pub mod secure;

pub use broker::{kind as broker_kind, Broker, Kind as BrokerKind};
pub use localkafka;
pub use nisshi::binary as nisshi_binary;
pub use process::Spawned;

use std::{
    sync::atomic::{AtomicU32, Ordering},
    time::{Duration, Instant, SystemTime, UNIX_EPOCH},
};

/// The workspace root: where `tests/py` and the Makefile live.
pub fn workspace_root() -> std::path::PathBuf {
    let here = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

/// A name no other test in this or any concurrent run uses: `prefix-<time>-<pid>-<counter>`.
pub fn unique(prefix: &str) -> String {
    static COUNTER: AtomicU32 = AtomicU32::new(0);
    let nanos = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.subsec_nanos())
        .unwrap_or(0);
    format!(
        "{prefix}-{nanos:x}-{}-{}",
        std::process::id(),
        COUNTER.fetch_add(1, Ordering::Relaxed)
    )
}

/// Calls `probe` every `every` until it returns `Some`, or panics with `what` after `timeout`.
pub fn wait_for<T>(
    what: &str,
    timeout: Duration,
    every: Duration,
    mut probe: impl FnMut() -> Option<T>,
) -> T {
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = probe() {
            return value;
        }
        if Instant::now() >= deadline {
            panic!("timed out after {timeout:?} waiting for {what}");
        }
        std::thread::sleep(every);
    }
}

/// Runs one of this workspace's binaries with exactly `env` (plus `PATH`/`HOME`), waits at most
/// `timeout`, and returns `(exit code, stdout, stderr)`. Panics (killing it) on timeout.
pub fn run_bin(
    bin: &str,
    args: &[&str],
    env: &[(&str, &str)],
    timeout: Duration,
) -> (Option<i32>, String, String) {
    use std::io::Read;
    let mut child = spawn_clean(bin, args, env);
    // Drain both pipes while waiting: a child that writes more than a pipe holds would otherwise
    // block forever on its write while we wait for it to exit.
    let drain = |pipe: Option<Box<dyn std::io::Read + Send>>| {
        std::thread::spawn(move || {
            let mut buf = Vec::new();
            if let Some(mut pipe) = pipe {
                let _ = pipe.read_to_end(&mut buf);
            }
            String::from_utf8_lossy(&buf).into_owned()
        })
    };
    let out = drain(
        child
            .stdout
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let err = drain(
        child
            .stderr
            .take()
            .map(|p| Box::new(p) as Box<dyn std::io::Read + Send>),
    );
    let deadline = Instant::now() + timeout;
    let status = loop {
        match child.try_wait() {
            Ok(Some(status)) => break status,
            Ok(None) if Instant::now() < deadline => std::thread::sleep(Duration::from_millis(20)),
            _ => {
                let _ = child.kill();
                let _ = child.wait();
                let stderr = err.join().unwrap_or_default();
                panic!("{bin} {args:?} did not finish within {timeout:?}; stderr:\n{stderr}");
            }
        }
    };
    (
        status.code(),
        out.join().unwrap_or_default(),
        err.join().unwrap_or_default(),
    )
}

/// Starts `bin` with `args` and exactly `env` (plus `PATH`, nothing inherited that could change its
/// behaviour), stdin closed and both output pipes captured.
pub(crate) fn spawn_clean(bin: &str, args: &[&str], env: &[(&str, &str)]) -> std::process::Child {
    use std::process::{Command, Stdio};
    Command::new(bin)
        .args(args)
        .env_clear()
        .envs(std::env::var("PATH").ok().map(|p| ("PATH".to_string(), p)))
        .envs(env.iter().map(|(k, v)| (k.to_string(), v.to_string())))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap_or_else(|e| panic!("spawning {bin}: {e}"))
}

/// Sends SIGTERM to `pid` with the system's `kill` (no unsafe code, no libc binding).
pub fn sigterm(pid: u32) {
    signal(pid, "TERM");
}

/// Sends SIGINT (a terminal's Ctrl-C) to `pid`.
pub fn sigint(pid: u32) {
    signal(pid, "INT");
}

/// Sends SIGKILL to `pid`.
pub fn sigkill(pid: u32) {
    signal(pid, "KILL");
}

fn signal(pid: u32, name: &str) {
    let status = std::process::Command::new("kill")
        .args([format!("-{name}"), pid.to_string()])
        .status()
        .unwrap_or_else(|e| panic!("running kill -{name} {pid}: {e}"));
    assert!(status.success(), "kill -{name} {pid} failed");
}

/// A loopback port nothing listens on (bound then released), for "broker unreachable" tests.
pub fn closed_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .map(|a| a.port())
        .expect("binding 127.0.0.1:0")
}

/// Creates `topic` with `partitions` partitions (replication factor 1) on `broker`, with rskafka
/// directly: test set-up that must not depend on the code under test. Panics if it already exists
/// with another partition count.
pub fn create_topic(broker: &str, topic: &str, partitions: i32) {
    let found = ensure_topic(broker, topic, partitions);
    assert_eq!(
        found, partitions,
        "{topic} exists with another partition count"
    );
}

/// Creates `topic` with `partitions` partitions of `replicas` replicas each (on a cluster), with
/// rskafka directly. Panics if it exists with another partition count.
pub fn create_replicated_topic(broker: &str, topic: &str, partitions: i32, replicas: i16) {
    let found = ensure_topic_with(broker, topic, partitions, replicas);
    assert_eq!(
        found, partitions,
        "{topic} exists with another partition count"
    );
}

/// Creates `topic` unless it exists (a broker may have auto-created it); returns its partition count.
pub fn ensure_topic(broker: &str, topic: &str, partitions: i32) -> i32 {
    ensure_topic_with(broker, topic, partitions, 1)
}

fn ensure_topic_with(broker: &str, topic: &str, partitions: i32, replicas: i16) -> i32 {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("tokio runtime");
    rt.block_on(async {
        let bootstrap = broker.split(',').map(str::to_string).collect();
        let client = rskafka::client::ClientBuilder::new(bootstrap)
            .build()
            .await
            .unwrap_or_else(|e| panic!("connecting to {broker}: {e}"));
        let created = client
            .controller_client()
            .expect("controller client")
            .create_topic(topic, partitions, replicas, 10_000)
            .await;
        match created {
            Ok(()) => partitions,
            Err(rskafka::client::error::Error::ServerError {
                protocol_error: rskafka::client::error::ProtocolError::TopicAlreadyExists,
                ..
            }) => {
                let topics = client.list_topics().await.expect("list topics");
                let found = topics
                    .iter()
                    .find(|t| t.name == topic)
                    .map(|t| t.partitions.len());
                found.unwrap_or(0) as i32
            }
            Err(e) => panic!("creating {topic}: {e}"),
        }
    })
}

/// The path of another package's binary in this workspace (`cargo test --workspace` builds every
/// binary before running any test). Panics with the command to build it when it is missing.
pub fn workspace_bin(name: &str) -> String {
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(std::path::PathBuf::from)
        .unwrap_or_else(|| workspace_root().join("target"));
    let path = target.join("debug").join(name);
    assert!(
        path.is_file(),
        "{} is missing: run `cargo build -p {name}` (or the whole `cargo test --workspace`) first",
        path.display()
    );
    path.to_string_lossy().into_owned()
}

/// `GET path` on `addr` (`host:port`): (status code, body). For the metrics and health endpoints.
pub fn http_get(addr: &str, path: &str) -> (u16, String) {
    use std::io::{Read, Write};
    let mut s =
        std::net::TcpStream::connect(addr).unwrap_or_else(|e| panic!("connecting to {addr}: {e}"));
    s.set_read_timeout(Some(Duration::from_secs(5)))
        .expect("read timeout");
    write!(s, "GET {path} HTTP/1.1\r\nHost: test\r\n\r\n").expect("write");
    let mut out = String::new();
    s.read_to_string(&mut out).expect("read");
    let code = out
        .split_whitespace()
        .nth(1)
        .and_then(|c| c.parse().ok())
        .unwrap_or(0);
    let body = out.split("\r\n\r\n").nth(1).unwrap_or_default().to_string();
    (code, body)
}
