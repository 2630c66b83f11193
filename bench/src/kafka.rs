//! The broker (Apache Kafka, one local KRaft node on a free loopback port, started by `localkafka`
//! from the pinned release's cached jars) and what the harness itself does on it with rskafka:
//! create topics, pre-fill seed-shaped messages, read high watermarks, and the fetch-only ceiling.

use std::{
    fs,
    path::{Path, PathBuf},
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

/// The broker JVM's maximum heap: a 1M-message drain (about 100 MB of log) is served from the page
/// cache, not the heap, but 200 producers' connections and the fetch responses want room.
pub const HEAP: &str = "1g";

/// A running single-node Apache Kafka; stopped (and its temporary data removed) when dropped, after
/// its log is copied to `kafka.log` in the run directory.
pub struct Broker {
    cluster: localkafka::Cluster,
    log: PathBuf,
    pub addr: String,
    /// What ran, for the report: release, mode, JVM, heap, the properties set beyond Kafka's defaults.
    pub version: String,
}

impl Broker {
    /// Starts the node with full JIT (not `quick_start`, which is C1 only) and [`HEAP`]; every
    /// broker setting is Kafka's default except `localkafka`'s single-node ones (internal topics at
    /// replication factor 1, no auto-created topics) and `BENCH_BROKER_PROPS` (`key=value` pairs
    /// separated by spaces, e.g. `group.initial.rebalance.delay.ms=0`).
    pub fn start(log_dir: &Path) -> Result<Self> {
        Self::start_with(log_dir, "kafka.log", &[])
    }

    /// [`Broker::start`] with extra JVM options (e.g. Kafka's request logger at debug, for the
    /// `lag` phase's own broker), its log copied to `log_name` in the run directory.
    pub fn start_with(log_dir: &Path, log_name: &str, jvm_options: &[&str]) -> Result<Self> {
        let mut options = localkafka::Options::nodes(1);
        options.heap = HEAP.into();
        options.quick_start = false;
        options.jvm_options = jvm_options.iter().map(|o| o.to_string()).collect();
        let mut extra = Vec::new();
        if let Ok(props) = std::env::var("BENCH_BROKER_PROPS") {
            for kv in props.split_whitespace() {
                let (k, v) = kv
                    .split_once('=')
                    .with_context(|| format!("BENCH_BROKER_PROPS: {kv:?} is not key=value"))?;
                options = options.property(k, v);
                extra.push(format!("{k}={v}"));
            }
        }
        let cluster = localkafka::Cluster::start(options).context("starting Apache Kafka")?;
        let java = java_version();
        let version = format!(
            "Apache Kafka {} (one KRaft node, broker and controller; log on local disk; JVM {java}, \
             -Xmx{HEAP} -XX:+UseG1GC, full JIT; broker defaults{})",
            localkafka::version(),
            if extra.is_empty() {
                String::new()
            } else {
                format!(" except {}", extra.join(", "))
            }
        );
        Ok(Self {
            addr: cluster.addr(),
            cluster,
            log: log_dir.join(log_name),
            version,
        })
    }

    /// The node's live log (stdout and stderr of its JVM), while it runs.
    pub fn live_log(&self) -> PathBuf {
        self.cluster.data_dir().join("node-1").join("kafka.log")
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        // Without the request log's lines (the `lag` phase counts them while it runs): they are
        // most of such a log, and the responses in them are megabytes.
        let log: String = self
            .cluster
            .log(1)
            .lines()
            .filter(|l| !l.contains(" kafka.request.logger - "))
            .flat_map(|l| [l, "\n"])
            .collect();
        let _ = fs::write(&self.log, log);
        self.cluster.shutdown(Duration::from_secs(30));
    }
}

/// The JVM's version as `java -version` prints it (e.g. `OpenJDK 17.0.15`).
pub fn java_version() -> String {
    let out = std::process::Command::new(localkafka::jars::java_binary())
        .arg("-version")
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stderr).to_string())
        .unwrap_or_default();
    // `openjdk version "17.0.15" 2025-04-15`
    let first = text.lines().next().unwrap_or("?");
    let vendor = first.split_whitespace().next().unwrap_or("java");
    let version = first.split('"').nth(1).unwrap_or("?");
    let vendor = if vendor == "openjdk" {
        "OpenJDK"
    } else {
        vendor
    };
    format!("{vendor} {version}")
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
