//! The experiment's pods as local processes: the real `producer` and `consumer` binaries, each in its
//! own process group so a Ctrl-C reaches only the demo, which then stops them in order.

use std::{
    collections::BTreeMap,
    net::SocketAddr,
    path::{Path, PathBuf},
    process::Stdio,
    sync::{Arc, Mutex},
    time::Duration,
};

use anyhow::Context as _;
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, Command},
};

/// What every child is told.
#[derive(Debug, Clone)]
pub struct Common {
    pub brokers: String,
    pub topic: String,
    pub group: String,
    pub logs: PathBuf,
    pub bin_dir: PathBuf,
}

/// One consumer process and where it serves its metrics.
pub struct Consumer {
    pub name: String,
    child: Child,
    /// Learned from its `serving /metrics` log line.
    metrics: Arc<Mutex<Option<SocketAddr>>>,
}

impl Consumer {
    /// The metrics address, once the consumer has logged it.
    pub fn metrics_addr(&self) -> Option<SocketAddr> {
        self.metrics.lock().ok().and_then(|m| *m)
    }
}

/// All children.
pub struct Fleet {
    common: Common,
    producers: Vec<Child>,
    pub consumers: Vec<Consumer>,
}

impl Fleet {
    pub fn new(common: Common) -> Self {
        Self {
            common,
            producers: Vec::new(),
            consumers: Vec::new(),
        }
    }

    /// Starts `count` producers sending one message per `interval`; their logs share one file.
    pub async fn start_producers(&mut self, count: u32, interval: Duration) -> anyhow::Result<()> {
        let bin = binary(&self.common.bin_dir, "producer")?;
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.common.logs.join("producers.log"))
            .context("opening producers.log")?;
        let interval = format!("{}ms", interval.as_millis());
        for n in 1..=count {
            let name = format!("producer-{n}");
            let child = Command::new(&bin)
                .env_clear()
                .env("KAFKA_BROKERS", &self.common.brokers)
                .env("TOPIC", &self.common.topic)
                .env("PRODUCER_ID", &name)
                .env("HOSTNAME", &name)
                .env("INTERVAL", &interval)
                // Nothing scrapes the producers: no 200 listening ports.
                .env("METRICS_ADDR", "")
                .env("RUST_LOG", "warn")
                .envs(runtime::security::inherited())
                .stdin(Stdio::null())
                .stdout(Stdio::null())
                .stderr(log.try_clone().context("sharing producers.log")?)
                .process_group(0)
                .kill_on_drop(true)
                .spawn()
                .with_context(|| format!("starting {}", bin.display()))?;
            self.producers.push(child);
        }
        Ok(())
    }

    /// Starts one more consumer; its printed lines go to `consumer-N.out`, its log to `consumer-N.log`.
    pub async fn start_consumer(&mut self, env: &[(&str, String)]) -> anyhow::Result<()> {
        let bin = binary(&self.common.bin_dir, "consumer")?;
        let name = format!("consumer-{}", self.consumers.len() + 1);
        let out = std::fs::File::create(self.common.logs.join(format!("{name}.out")))
            .context("creating the consumer's output file")?;
        let mut child = Command::new(&bin)
            .env_clear()
            .env("KAFKA_BROKERS", &self.common.brokers)
            .env("TOPIC", &self.common.topic)
            .env("GROUP_ID", &self.common.group)
            .env("HOSTNAME", &name)
            .env("CLIENT_ID", &name)
            .env("METRICS_ADDR", "127.0.0.1:0")
            .env("LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .envs(runtime::security::inherited())
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(out)
            .stderr(Stdio::piped())
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let metrics = Arc::new(Mutex::new(None));
        let stderr = child.stderr.take().context("consumer stderr")?;
        let log_path = self.common.logs.join(format!("{name}.log"));
        let found = Arc::clone(&metrics);
        tokio::spawn(async move {
            let Ok(mut log) = tokio::fs::File::create(&log_path).await else {
                return;
            };
            let mut lines = BufReader::new(stderr).lines();
            while let Ok(Some(line)) = lines.next_line().await {
                if let Some(addr) = metrics_addr(&line) {
                    if let Ok(mut m) = found.lock() {
                        *m = Some(addr);
                    }
                }
                let _ = log.write_all(line.as_bytes()).await;
                let _ = log.write_all(b"\n").await;
            }
            let _ = log.flush().await;
        });
        self.consumers.push(Consumer {
            name,
            child,
            metrics,
        });
        Ok(())
    }

    /// Consumers still running, by name.
    pub fn running_consumers(&mut self) -> usize {
        self.consumers
            .iter_mut()
            .map(|c| matches!(c.child.try_wait(), Ok(None)))
            .filter(|&running| running)
            .count()
    }

    /// Producers still running.
    pub fn running_producers(&mut self) -> usize {
        self.producers
            .iter_mut()
            .map(|c| matches!(c.try_wait(), Ok(None)))
            .filter(|&running| running)
            .count()
    }

    /// SIGTERM to everyone (consumers commit and leave the group, producers finish their send), then
    /// waits up to `grace` like Kubernetes does, then SIGKILL. Returns how many had to be killed.
    pub async fn stop(&mut self, grace: Duration) -> usize {
        let pids: Vec<String> = self
            .producers
            .iter()
            .chain(self.consumers.iter().map(|c| &c.child))
            .filter_map(Child::id)
            .map(|p| p.to_string())
            .collect();
        signal_all("TERM", &pids).await;
        let deadline = tokio::time::Instant::now() + grace;
        let mut killed = 0;
        let children = self
            .producers
            .iter_mut()
            .chain(self.consumers.iter_mut().map(|c| &mut c.child));
        for child in children {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, child.wait()).await.is_err() {
                let _ = child.start_kill();
                let _ = child.wait().await;
                killed += 1;
            }
        }
        killed
    }

    /// Scales down like a Deployment: SIGTERM to the `n` newest running consumers (each commits and
    /// leaves its group), waiting up to `grace` for them, then SIGKILL.
    pub async fn stop_newest_consumers(&mut self, n: usize, grace: Duration) {
        let mut running: Vec<&mut Consumer> = self
            .consumers
            .iter_mut()
            .filter_map(|c| matches!(c.child.try_wait(), Ok(None)).then_some(c))
            .collect();
        let keep = running.len().saturating_sub(n);
        let stopping = running.split_off(keep);
        let pids: Vec<String> = stopping
            .iter()
            .filter_map(|c| c.child.id())
            .map(|p| p.to_string())
            .collect();
        signal_all("TERM", &pids).await;
        let deadline = tokio::time::Instant::now() + grace;
        for c in stopping {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if tokio::time::timeout(left, c.child.wait()).await.is_err() {
                let _ = c.child.start_kill();
                let _ = c.child.wait().await;
            }
        }
    }

    /// Exit statuses of the consumers that ended, for the summary.
    pub fn consumer_exits(&mut self) -> BTreeMap<String, String> {
        self.consumers
            .iter_mut()
            .filter_map(|c| match c.child.try_wait() {
                Ok(Some(status)) => Some((c.name.clone(), status.to_string())),
                _ => None,
            })
            .collect()
    }
}

/// `kill -SIG pid...`: the workspace forbids `unsafe`, so no libc.
async fn signal_all(sig: &str, pids: &[String]) {
    for chunk in pids.chunks(500) {
        let _ = Command::new("kill")
            .arg(format!("-{sig}"))
            .args(chunk)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await;
    }
}

fn binary(dir: &Path, name: &str) -> anyhow::Result<PathBuf> {
    let path = dir.join(name);
    anyhow::ensure!(
        path.is_file(),
        "{} not found: build it with `cargo build --release -p {name}` or set BIN_DIR",
        path.display()
    );
    Ok(path)
}

/// The address in a consumer's JSON `serving /metrics` log line.
fn metrics_addr(line: &str) -> Option<SocketAddr> {
    let v: serde_json::Value = serde_json::from_str(line).ok()?;
    // Flattened (our LOG_FORMAT=json) or nested under "fields" (tracing-subscriber's default).
    let fields = v.get("fields").unwrap_or(&v);
    let message = fields.get("message")?.as_str()?;
    if !message.starts_with("serving /metrics") {
        return None;
    }
    fields.get("addr")?.as_str()?.parse().ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_the_metrics_address_from_the_json_log() {
        let line = r#"{"timestamp":"2026-11-24T09:00:00Z","level":"INFO","fields":{"message":"serving /metrics, /healthz and /readyz","addr":"127.0.0.1:41234"},"target":"consumer"}"#;
        assert_eq!(
            metrics_addr(line),
            Some("127.0.0.1:41234".parse().expect("addr"))
        );
        let flat = r#"{"timestamp":"2026-11-24T08:45:34Z","level":"INFO","message":"serving /metrics, /healthz and /readyz","addr":"127.0.0.1:46353","target":"consumer"}"#;
        assert_eq!(
            metrics_addr(flat),
            Some("127.0.0.1:46353".parse().expect("addr"))
        );
        assert_eq!(metrics_addr("not json"), None);
        assert_eq!(
            metrics_addr(r#"{"fields":{"message":"joined","addr":"127.0.0.1:1"}}"#),
            None
        );
    }
}
