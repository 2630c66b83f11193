//! The broker (nisshi, in memory, on a free loopback port) and what the harness itself does on it
//! with rskafka: create topics, pre-fill seed-shaped messages, read high watermarks, and the
//! fetch-only ceiling.

use std::{
    fs,
    net::TcpListener,
    path::{Path, PathBuf},
    process::Command,
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use rskafka::{
    client::{
        partition::{Compression, OffsetAt, PartitionClient, UnknownTopicHandling},
        Client, ClientBuilder,
    },
    record::Record,
};

use crate::procs::Proc;

/// A running broker; stopped when dropped.
pub struct Broker {
    _proc: Proc,
    pub addr: String,
    pub version: String,
}

/// `NISSHI_BIN`, else `nisshi` on PATH, else ~/.cargo/bin/nisshi.
pub fn nisshi_bin() -> Result<PathBuf> {
    if let Some(b) = std::env::var_os("NISSHI_BIN") {
        return Ok(b.into());
    }
    let path = std::env::var_os("PATH").unwrap_or_default();
    let home = std::env::var_os("HOME")
        .map(PathBuf::from)
        .unwrap_or_default();
    std::env::split_paths(&path)
        .map(|d| d.join("nisshi"))
        .chain([home.join(".cargo/bin/nisshi")])
        .find(|p| p.is_file())
        .context("nisshi not found: run scripts/ensure-broker.sh (make broker)")
}

impl Broker {
    pub fn start(log_dir: &Path) -> Result<Self> {
        let bin = nisshi_bin()?;
        let version = Command::new(&bin)
            .arg("--version")
            .output()
            .map(|o| String::from_utf8_lossy(&o.stdout).trim().to_string())
            .unwrap_or_default();
        let port = TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let url = format!("tcp://127.0.0.1:{port}");
        let mut cmd = Command::new(&bin);
        cmd.args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://nisshi/"])
        // Not `info`: nisshi 0.8 logs tracing spans of every response at info (about 7 MB/s with four
        // 1 Hz producers), which slows the broker itself. `ready in` is printed regardless.
        .env("RUST_LOG", "warn");
        // `BENCH_BROKER_ARGS`: extra broker flags, e.g. `--group-initial-rebalance-delay 0s`.
        if let Ok(extra) = std::env::var("BENCH_BROKER_ARGS") {
            cmd.args(extra.split_whitespace());
        }
        // Its output goes through a pipe read on a thread that keeps only the last lines (into
        // `nisshi.tail.log` when the harness ends): with 200 librdkafka or kafka-python clients the
        // broker can log gigabytes a minute, which once filled the disk when sent to a file.
        let mut proc = Proc::spawn(
            "nisshi",
            cmd,
            crate::procs::Out::Pipe,
            crate::procs::Out::Pipe,
        )?;
        let (out, err) = (
            proc.take_stdout().context("nisshi stdout")?,
            proc.take_stderr().context("nisshi stderr")?,
        );
        let (ready_tx, ready_rx) = std::sync::mpsc::channel();
        let tail_path = log_dir.join("nisshi.tail.log");
        for (pipe, tx) in [
            (
                Box::new(out) as Box<dyn std::io::Read + Send>,
                ready_tx.clone(),
            ),
            (Box::new(err), ready_tx),
        ] {
            let tail_path = tail_path.clone();
            std::thread::spawn(move || {
                use std::io::BufRead;
                let mut tail = std::collections::VecDeque::new();
                for line in std::io::BufReader::new(pipe).lines() {
                    let Ok(line) = line else { break };
                    if line.contains("ready in") {
                        let _ = tx.send(());
                    }
                    tail.push_back(line);
                    if tail.len() > 200 {
                        tail.pop_front();
                    }
                }
                let _ = fs::write(&tail_path, Vec::from(tail).join("\n"));
            });
        }
        if ready_rx.recv_timeout(Duration::from_secs(60)).is_err() {
            bail!("nisshi did not print `ready in` within 60 s");
        }
        Ok(Self {
            _proc: proc,
            addr: format!("127.0.0.1:{port}"),
            version,
        })
    }
}

pub async fn client(addr: &str) -> Result<Client> {
    Ok(ClientBuilder::new(vec![addr.to_string()])
        .client_id("bench")
        .build()
        .await?)
}

pub async fn create_topic(client: &Client, topic: &str, partitions: i32) -> Result<()> {
    client
        .controller_client()?
        .create_topic(topic, partitions, 1, 10_000)
        .await
        .with_context(|| format!("creating {topic}"))?;
    // Wait until every partition answers (bounded).
    for p in 0..partitions {
        partition(client, topic, p).await?;
    }
    Ok(())
}

pub async fn partition(client: &Client, topic: &str, p: i32) -> Result<PartitionClient> {
    Ok(tokio::time::timeout(
        Duration::from_secs(30),
        client.partition_client(topic, p, UnknownTopicHandling::Retry),
    )
    .await
    .context("partition client: timed out")??)
}

/// The seed's payload with an audit identity, as our producer writes it.
pub fn payload(producer: &str, seq: u64) -> Vec<u8> {
    format!(r#"{{"cnt":"cnt: {seq}","producer":"{producer}","seq":{seq}}}"#).into_bytes()
}

/// Writes `count` seed-shaped messages round-robin over the partitions, 5000 a request, every
/// partition at once.
pub async fn prefill(client: &Client, topic: &str, partitions: i32, count: u64) -> Result<()> {
    let mut tasks = Vec::new();
    for p in 0..partitions {
        let pc = partition(client, topic, p).await?;
        tasks.push(tokio::spawn(async move {
            let mut seq = p as u64 + 1;
            let mut batch = Vec::new();
            while seq <= count {
                batch.push(Record {
                    key: None,
                    value: Some(payload("prefill", seq)),
                    headers: Default::default(),
                    timestamp: chrono::Utc::now(),
                });
                seq += partitions as u64;
                if batch.len() == 5000 || seq > count {
                    pc.produce(std::mem::take(&mut batch), Compression::NoCompression)
                        .await?;
                }
            }
            anyhow::Ok(())
        }));
    }
    for t in tasks {
        t.await??;
    }
    Ok(())
}

/// Sum of the partitions' high watermarks (messages written so far).
pub async fn high_watermarks(clients: &[PartitionClient]) -> Result<i64> {
    let mut sum = 0;
    for pc in clients {
        sum += pc.get_offset(OffsetAt::Latest).await?;
    }
    Ok(sum)
}

/// The broker's ceiling: fetch every partition from 0 to its end at once, decoding nothing beyond
/// the record batches. Timed like the consumers' drain rate, from the first response with records
/// to the last (connecting, metadata and the first round trip are left out): returns the records
/// fetched, the records that came after the first response, and the seconds between.
pub async fn fetch_only(
    addr: &str,
    topic: &str,
    partitions: i32,
    max_bytes: i32,
) -> Result<(u64, u64, f64)> {
    let client = client(addr).await?;
    let mut ready = Vec::new();
    for p in 0..partitions {
        let pc = Arc::new(partition(&client, topic, p).await?);
        let end = pc.get_offset(OffsetAt::Latest).await?;
        ready.push((p, pc, end));
    }
    // When the first records arrived, and how many came with them.
    let first: Arc<Mutex<Option<(Instant, u64)>>> = Arc::new(Mutex::new(None));
    let mut tasks = Vec::new();
    for (p, pc, end) in ready {
        let first = Arc::clone(&first);
        tasks.push(tokio::spawn(async move {
            let (mut offset, mut n) = (0i64, 0u64);
            let until = Instant::now() + Duration::from_secs(120);
            while offset < end {
                if Instant::now() > until {
                    bail!("fetch-only: partition {p} not read to its end in 120 s");
                }
                let (records, _hw) = pc.fetch_records(offset, 1..max_bytes, 100).await?;
                if let Some(last) = records.last() {
                    offset = last.offset + 1;
                    if let Ok(mut f) = first.lock() {
                        f.get_or_insert((Instant::now(), records.len() as u64));
                    }
                }
                n += records.len() as u64;
            }
            anyhow::Ok((n, Instant::now()))
        }));
    }
    let (mut total, mut last) = (0, None::<Instant>);
    for t in tasks {
        let (n, at) = t.await??;
        total += n;
        last = Some(last.map_or(at, |l| l.max(at)));
    }
    let (t0, in_first) = first
        .lock()
        .ok()
        .and_then(|f| *f)
        .context("fetch-only: no records")?;
    let secs = last.map_or(0.0, |l| l.duration_since(t0).as_secs_f64());
    Ok((total, total - in_first, secs.max(1e-6)))
}
