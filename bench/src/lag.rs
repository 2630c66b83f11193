//! The `lag` phase (issue #16, target 4): one sample of `BENCH_LAG_GROUPS` groups over a
//! `BENCH_LAG_PARTITIONS`-partition topic, by the exporter (`admin exporter`, every group in one
//! batched sample) and by `admin lag` (one process per group), and the broker requests each sample
//! makes.
//!
//! The shape: one topic, [`MESSAGES_PER_PARTITION`] messages in every partition, and groups that each
//! committed an offset on every partition, as a simple (non-member) consumer commits, behind the log
//! end so that time lag is read too. Group `i` commits at `i % OFFSETS`: a partition holds
//! [`OFFSETS`] different committed offsets, which the exporter reads in that many Fetch rounds.
//!
//! Times are taken on the bench's broker. Requests are counted by a second broker, the phase's own,
//! set up the same way with Kafka's request logger at debug: its `Completed request` lines, by the
//! measured process's client id. That logger writes every request and response as JSON (megabytes
//! for a 50-group OffsetFetch), which slows the broker, hence the two: the exporter's sample time on
//! it is reported beside, for what the logging costs.

use std::{
    collections::BTreeMap,
    fs,
    io::{Read as _, Seek as _, SeekFrom, Write as _},
    path::{Path, PathBuf},
    process::Command,
    time::{Duration, Instant},
};

use anyhow::{bail, Context as _, Result};
use rdkafka::{
    consumer::{BaseConsumer, CommitMode, Consumer as _},
    ClientConfig, Offset, TopicPartitionList,
};

use crate::{
    kafka,
    procs::{self, Out, Proc},
};

/// Messages written to every partition before the groups commit.
pub const MESSAGES_PER_PARTITION: u64 = 10;
/// Group `i` commits at offset `i % OFFSETS` on every partition (all behind the log end).
pub const OFFSETS: usize = 5;
/// The JVM property that turns Kafka's request logger on (the jars' SLF4J binding is slf4j-simple).
const REQUEST_LOGGER: &str = "-Dorg.slf4j.simpleLogger.log.kafka.request.logger=debug";

/// Requests by API name (`OffsetFetch`, `ListOffsets`, ...), as the broker logged them.
pub type Requests = BTreeMap<String, u64>;

/// What the phase measured.
#[derive(Debug, Default, Clone)]
pub struct Measured {
    pub partitions: i32,
    pub groups: usize,
    /// Fetch rounds a sample needs: different committed offsets per partition.
    pub offsets: usize,
    /// The exporter's `lag_exporter_sample_duration_seconds`, one per sample, on the bench broker.
    pub exporter_secs: Vec<f64>,
    /// The same on the broker with the request logger (what the logging costs).
    pub exporter_logged_secs: Vec<f64>,
    /// Per steady sample (the first, which opens the connections, left out): requests by API.
    pub exporter_requests: Vec<Requests>,
    /// The first sample's requests (with the connections' ApiVersions).
    pub exporter_first: Option<Requests>,
    /// `admin lag --group G --format json`: wall seconds per invocation, one per group.
    pub lag_secs: Vec<f64>,
    /// Requests per `admin lag` invocation, one per group.
    pub lag_requests: Vec<Requests>,
}

/// Sizes and where things are.
pub struct Setup<'a> {
    pub admin: PathBuf,
    pub run_dir: &'a Path,
    pub rt: &'a tokio::runtime::Runtime,
    pub partitions: i32,
    pub groups: usize,
    /// Exporter samples timed per broker.
    pub samples: usize,
    pub interval: Duration,
}

/// The whole phase: the shape on `bench_broker` (times), then on a broker of its own with the
/// request logger (requests). Problems that leave a figure out come back as notes.
pub fn run(
    s: &Setup<'_>,
    bench_broker: &str,
    client: &rskafka::client::Client,
) -> Result<(Measured, Vec<String>)> {
    let mut m = Measured {
        partitions: s.partitions,
        groups: s.groups,
        offsets: OFFSETS.min(s.groups),
        ..Measured::default()
    };
    let mut notes = Vec::new();
    if !s.admin.is_file() {
        notes.push(format!(
            "lag: {} is missing (`make build`): phase skipped",
            s.admin.display()
        ));
        return Ok((m, notes));
    }
    let topic = format!("bench-lag-{}", std::process::id());
    let groups: Vec<String> = (0..s.groups).map(|i| format!("{topic}-g{i:02}")).collect();

    eprintln!(
        "bench: lag: {} groups over {} partitions on the bench broker",
        s.groups, s.partitions
    );
    prepare(s, bench_broker, client, &topic, &groups)?;
    match exporter(s, bench_broker, &topic, "bench-lag-exporter") {
        Ok(secs) => m.exporter_secs = secs,
        Err(e) => notes.push(format!("lag: exporter on the bench broker: {e:#}")),
    }
    for (i, g) in groups.iter().enumerate() {
        match admin_lag(s, bench_broker, &topic, g, &format!("bench-lag-cli-{i}")) {
            Ok(secs) => m.lag_secs.push(secs),
            Err(e) => notes.push(format!("lag: admin lag --group {g}: {e:#}")),
        }
    }

    eprintln!("bench: lag: the same on a broker with Kafka's request logger, counting requests");
    let logged = kafka::Broker::start_with(s.run_dir, "kafka-lag.log", &[REQUEST_LOGGER])
        .context("starting the lag phase's broker")?;
    let logged_client = s.rt.block_on(kafka::client(&logged.addr))?;
    prepare(s, &logged.addr, &logged_client, &topic, &groups)?;
    let mut log = LogCursor::at_end(logged.live_log());
    let exporter_id = "bench-lag-exporter";
    match exporter(s, &logged.addr, &topic, exporter_id) {
        Ok(secs) => m.exporter_logged_secs = secs,
        Err(e) => notes.push(format!("lag: exporter on the logged broker: {e:#}")),
    }
    let lines = log.read_new()?;
    let segments = per_sample(&lines, exporter_id);
    // The first segment opens the connections; the last may be cut short by the stop.
    match segments.len() {
        n if n >= 3 => {
            m.exporter_first = Some(segments[0].clone());
            m.exporter_requests = segments[1..n - 1].to_vec();
        }
        n => notes.push(format!(
            "lag: the request log holds {n} exporter samples (Metadata requests), too few to count"
        )),
    }
    let ids: Vec<String> = (0..groups.len())
        .map(|i| format!("bench-lag-cli-{i}"))
        .collect();
    for (g, id) in groups.iter().zip(&ids) {
        if let Err(e) = admin_lag(s, &logged.addr, &topic, g, id) {
            notes.push(format!("lag: admin lag --group {g} (logged broker): {e:#}"));
        }
    }
    let lines = log.read_new()?;
    for id in &ids {
        let mut r = Requests::new();
        for (client, api) in &lines {
            if client == id {
                *r.entry(api.clone()).or_default() += 1;
            }
        }
        if !r.is_empty() {
            m.lag_requests.push(r);
        }
    }
    if lines.is_empty() {
        notes.push(
            "lag: the broker logged no `Completed request` lines: requests not counted".into(),
        );
    }
    drop(logged);
    Ok((m, notes))
}

/// The topic, its messages and the groups' commits.
fn prepare(
    s: &Setup<'_>,
    broker: &str,
    client: &rskafka::client::Client,
    topic: &str,
    groups: &[String],
) -> Result<()> {
    let t0 = Instant::now();
    s.rt.block_on(async {
        kafka::create_topic(client, topic, s.partitions).await?;
        kafka::prefill(
            client,
            topic,
            s.partitions,
            s.partitions as u64 * MESSAGES_PER_PARTITION,
        )
        .await
    })?;
    for (i, g) in groups.iter().enumerate() {
        commit(broker, g, topic, s.partitions, (i % OFFSETS) as i64)?;
    }
    eprintln!(
        "bench: lag: topic, {} messages and {} groups' commits in {:.1} s",
        s.partitions as u64 * MESSAGES_PER_PARTITION,
        groups.len(),
        t0.elapsed().as_secs_f64()
    );
    Ok(())
}

/// Commits `offset` on every partition for `group`, as a consumer that assigns itself partitions
/// does (no membership: the group is `Empty` with protocol type ""). Retried while the broker is
/// still creating `__consumer_offsets` (bounded).
fn commit(broker: &str, group: &str, topic: &str, partitions: i32, offset: i64) -> Result<()> {
    let consumer: BaseConsumer = ClientConfig::new()
        .set("bootstrap.servers", broker)
        .set("group.id", group)
        .set("client.id", "bench-lag-commit")
        .set("enable.auto.commit", "false")
        .create()
        .context("creating the committing consumer")?;
    let mut tpl = TopicPartitionList::with_capacity(partitions as usize);
    for p in 0..partitions {
        tpl.add_partition_offset(topic, p, Offset::Offset(offset))?;
    }
    let mut last = None;
    for _ in 0..30 {
        match consumer.commit(&tpl, CommitMode::Sync) {
            Ok(()) => return Ok(()),
            Err(e) => last = Some(e),
        }
        std::thread::sleep(Duration::from_secs(1));
    }
    bail!("committing for {group}: {last:?} (30 attempts)")
}

/// Starts the exporter for the phase's groups and topic, waits for a full sample (every group's
/// committed offset and time lag on every partition, seen on `/metrics`), then takes `samples`
/// further samples' durations from its debug log line (`sampled ... took_ms=N`, the value it sets
/// `lag_exporter_sample_duration_seconds` to), without scraping meanwhile: at full size a scrape is
/// over 20 MB, rendered on the exporter's one runtime thread, and would slow the sample it
/// overlaps. A last scrape checks that no sample failed and that the gauge shows the last duration.
fn exporter(s: &Setup<'_>, broker: &str, topic: &str, client_id: &str) -> Result<Vec<f64>> {
    let mut cmd = Command::new(&s.admin);
    let interval = format!("{}ms", s.interval.as_millis());
    cmd.arg("exporter")
        .env("KAFKA_BROKERS", broker)
        .env("METRICS_ADDR", "127.0.0.1:0")
        .env("EXPORTER_INTERVAL", &interval)
        .env("GROUP_FILTER", format!("{topic}-g.*"))
        .env("TOPIC_FILTER", topic)
        .env("CLIENT_ID", client_id)
        .env("RUST_LOG", "warn,admin::exporter=debug")
        .env("NO_COLOR", "1");
    let mut p = Proc::spawn("admin exporter", cmd, Out::Null, Out::Pipe)?;
    let rx = procs::lines(p.take_stderr().context("stderr")?);
    let (_, line) = procs::wait_line(&rx, Duration::from_secs(20), |l| l.contains("addr="))
        .context("the exporter logged no address within 20 s")?;
    let addr: String = line[line.find("addr=").unwrap_or(0) + 5..]
        .chars()
        .take_while(|c| !c.is_whitespace() && *c != '"')
        .collect();
    let took = |l: &str| -> Option<f64> {
        let rest = &l[l.find(" sampled")?..];
        let ms = &rest[rest.find("took_ms=")? + 8..];
        let ms: String = ms.chars().take_while(char::is_ascii_digit).collect();
        ms.parse::<f64>().ok().map(|ms| ms / 1000.0)
    };
    let bound = Duration::from_secs(120) + s.interval * (s.samples as u32 * 4);
    let until = Instant::now() + bound;
    let left = || until.saturating_duration_since(Instant::now());
    // A sample of every group, then a scrape that shows all of it.
    let want = s.groups * s.partitions as usize;
    let groups = format!("groups={} ", s.groups);
    loop {
        procs::wait_line(&rx, left(), |l| took(l).is_some() && l.contains(&groups))
            .context("no sample of every group in time")?;
        let scrape = Scrape::get(&addr)?;
        let (offsets, timed) = (
            scrape.count("kafka_consumergroup_current_offset{"),
            scrape.count("kafka_consumergroup_lag_seconds{"),
        );
        if offsets == want && timed == want {
            break;
        }
        if left().is_zero() || p.exited() {
            bail!(
                "no full sample in time: {offsets} of {want} committed offsets, {timed} time lags"
            );
        }
    }
    // The sample the scrape overlapped is left out.
    procs::wait_line(&rx, left(), |l| took(l).is_some()).context("no sample after the scrape")?;
    let mut secs = Vec::new();
    while secs.len() < s.samples {
        let (_, l) = procs::wait_line(&rx, left(), |l| took(l).is_some())
            .with_context(|| format!("only {} of {} samples in time", secs.len(), s.samples))?;
        secs.push(took(&l).unwrap_or_default());
    }
    let scrape = Scrape::get(&addr)?;
    p.stop(Duration::from_secs(10));
    if scrape.gauge("lag_exporter_sample_errors_total") != Some(0.0) {
        bail!("the exporter counted failed samples");
    }
    let gauge = scrape.duration()?;
    if !secs.iter().any(|t| (t - gauge).abs() < 0.002) {
        bail!("lag_exporter_sample_duration_seconds is {gauge}, not one of the logged {secs:?}");
    }
    Ok(secs)
}

/// One `admin lag --group G --format json`: wall seconds from spawn to exit; its output must show
/// every partition with its time lag.
fn admin_lag(
    s: &Setup<'_>,
    broker: &str,
    topic: &str,
    group: &str,
    client_id: &str,
) -> Result<f64> {
    let mut cmd = Command::new(&s.admin);
    cmd.args(["lag", "--group", group, "--format", "json"])
        .env("KAFKA_BROKERS", broker)
        .env("CLIENT_ID", client_id)
        .env("RUST_LOG", "warn");
    let mut p = Proc::spawn("admin lag", cmd, Out::Pipe, Out::Null)?;
    let mut stdout = p.take_stdout().context("stdout")?;
    // Read while it runs: a 1 000-partition answer is more than a pipe holds.
    let reader = std::thread::spawn(move || {
        let mut out = String::new();
        let _ = stdout.read_to_string(&mut out);
        out
    });
    let status = p
        .wait_timeout(Duration::from_secs(60))
        .context("did not exit within 60 s")?;
    let secs = p.started.elapsed().as_secs_f64();
    let out = reader
        .join()
        .map_err(|_| anyhow::anyhow!("stdout reader"))?;
    if !status.success() {
        bail!("exited with {status}");
    }
    let v: serde_json::Value =
        serde_json::from_str(out.lines().next().unwrap_or("")).context("its JSON")?;
    let parts = v["partitions"].as_array().map(Vec::as_slice).unwrap_or(&[]);
    let timed = parts
        .iter()
        .filter(|p| p["time_lag_seconds"].is_number())
        .count();
    if v["topic"] != topic || parts.len() != s.partitions as usize || timed != parts.len() {
        bail!(
            "expected {} partitions of {topic} with time lag, got {} ({} with time lag) of {}",
            s.partitions,
            parts.len(),
            timed,
            v["topic"]
        );
    }
    Ok(secs)
}

/// One `/metrics` body.
struct Scrape(String);

impl Scrape {
    fn get(addr: &str) -> Result<Self> {
        let mut s =
            std::net::TcpStream::connect(addr).with_context(|| format!("connecting to {addr}"))?;
        s.set_read_timeout(Some(Duration::from_secs(60)))?;
        write!(
            s,
            "GET /metrics HTTP/1.1\r\nHost: bench\r\nConnection: close\r\n\r\n"
        )?;
        let mut out = String::new();
        s.read_to_string(&mut out)?;
        let body = out.split_once("\r\n\r\n").map(|(_, b)| b).unwrap_or("");
        Ok(Self(body.to_string()))
    }

    fn count(&self, prefix: &str) -> usize {
        self.0.lines().filter(|l| l.starts_with(prefix)).count()
    }

    fn gauge(&self, name: &str) -> Option<f64> {
        self.0.lines().find_map(|l| {
            l.strip_prefix(name)
                .and_then(|rest| rest.strip_prefix(' '))
                .and_then(|v| v.trim().parse().ok())
        })
    }

    fn duration(&self) -> Result<f64> {
        self.gauge("lag_exporter_sample_duration_seconds")
            .context("no lag_exporter_sample_duration_seconds")
    }
}

/// Reads the broker's log from where it was, a complete line at a time.
struct LogCursor {
    path: PathBuf,
    offset: u64,
}

impl LogCursor {
    fn at_end(path: PathBuf) -> Self {
        let offset = fs::metadata(&path).map(|m| m.len()).unwrap_or(0);
        Self { path, offset }
    }

    /// The `Completed request` lines since the last call, as (client id, API name), in order.
    fn read_new(&mut self) -> Result<Vec<(String, String)>> {
        // The request log is written as each response is sent: let the last ones land.
        std::thread::sleep(Duration::from_millis(500));
        let mut f =
            fs::File::open(&self.path).with_context(|| format!("{}", self.path.display()))?;
        f.seek(SeekFrom::Start(self.offset))?;
        let mut bytes = Vec::new();
        f.read_to_end(&mut bytes)?;
        let complete = bytes.iter().rposition(|&b| b == b'\n').map_or(0, |i| i + 1);
        self.offset += complete as u64;
        let text = String::from_utf8_lossy(&bytes[..complete]);
        Ok(text.lines().filter_map(completed_request).collect())
    }
}

/// (client id, API) of a request logger line: slf4j-simple's `<time> [<thread>] DEBUG
/// kafka.request.logger - Completed request:{"isForwarded":false,"requestHeader":{"requestApiKey":9,
/// "requestApiVersion":9,"correlationId":4,"clientId":"x","requestApiKeyName":"OFFSET_FETCH"},...`.
/// The header comes first, so the first `clientId` and `requestApiKeyName` are its own.
fn completed_request(line: &str) -> Option<(String, String)> {
    let json = line
        .split_once("kafka.request.logger - Completed request:")?
        .1;
    let field = |name: &str| {
        let key = format!("\"{name}\":\"");
        let at = json.find(&key)? + key.len();
        let end = json[at..].find('"')?;
        Some(json[at..at + end].to_string())
    };
    Some((field("clientId")?, api_name(&field("requestApiKeyName")?)))
}

/// `OFFSET_FETCH` → `OffsetFetch`.
fn api_name(upper: &str) -> String {
    upper
        .split('_')
        .map(|w| {
            let mut c = w.chars();
            match c.next() {
                Some(f) => f.to_ascii_uppercase().to_string() + &c.as_str().to_ascii_lowercase(),
                None => String::new(),
            }
        })
        .collect()
}

/// `client`'s requests cut into samples: each sample begins with its one Metadata request.
/// Requests before the first Metadata (the bootstrap connection's ApiVersions) go with it.
fn per_sample(lines: &[(String, String)], client: &str) -> Vec<Requests> {
    let mut out: Vec<Requests> = Vec::new();
    let mut before = Requests::new();
    for (_, api) in lines.iter().filter(|(c, _)| c == client) {
        if api == "Metadata" {
            out.push(std::mem::take(&mut before));
        }
        let current = if out.is_empty() {
            &mut before
        } else {
            let last = out.len() - 1;
            &mut out[last]
        };
        *current.entry(api.clone()).or_default() += 1;
    }
    out
}

/// `OffsetFetch 1, ListOffsets 2, ...` in the order a sample asks, others after; a count that
/// differs between samples as `min–max`; and the total.
pub fn describe(samples: &[Requests]) -> String {
    const ORDER: [&str; 9] = [
        "ApiVersions",
        "Metadata",
        "FindCoordinator",
        "ListGroups",
        "DescribeGroups",
        "ConsumerGroupDescribe",
        "OffsetFetch",
        "ListOffsets",
        "Fetch",
    ];
    if samples.is_empty() {
        return "–".into();
    }
    let mut apis: Vec<&str> = ORDER
        .iter()
        .copied()
        .filter(|a| samples.iter().any(|s| s.contains_key(*a)))
        .collect();
    for s in samples {
        for a in s.keys() {
            if !apis.contains(&a.as_str()) {
                apis.push(a);
            }
        }
    }
    let range = |f: &dyn Fn(&Requests) -> u64| {
        let v: Vec<u64> = samples.iter().map(f).collect();
        let (lo, hi) = (v.iter().min().copied(), v.iter().max().copied());
        match (lo, hi) {
            (Some(lo), Some(hi)) if lo != hi => format!("{lo}–{hi}"),
            (Some(lo), _) => lo.to_string(),
            _ => "?".into(),
        }
    };
    let mut parts: Vec<String> = apis
        .iter()
        .map(|a| {
            format!(
                "{a} {}",
                range(&|s: &Requests| s.get(*a).copied().unwrap_or(0))
            )
        })
        .collect();
    parts.push(format!(
        "= {}",
        range(&|s: &Requests| s.values().sum::<u64>())
    ));
    parts.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn request_log_lines_give_client_and_api() {
        let line = r#"1234 [data-plane-kafka-network-thread-1-ListenerName(PLAINTEXT)-PLAINTEXT-0] DEBUG kafka.request.logger - Completed request:{"isForwarded":false,"requestHeader":{"requestApiKey":9,"requestApiVersion":9,"correlationId":4,"clientId":"bench-lag-cli-3","requestApiKeyName":"OFFSET_FETCH"},"request":{"clientId":"nope"}}"#;
        assert_eq!(
            completed_request(line),
            Some(("bench-lag-cli-3".into(), "OffsetFetch".into()))
        );
        assert_eq!(completed_request("1234 [main] WARN kafka - other"), None);
        assert_eq!(api_name("LIST_OFFSETS"), "ListOffsets");
    }

    #[test]
    fn samples_begin_at_metadata() {
        let l = |c: &str, a: &str| (c.to_string(), a.to_string());
        let lines = [
            l("x", "ApiVersions"),
            l("x", "Metadata"),
            l("y", "Fetch"),
            l("x", "ListGroups"),
            l("x", "Metadata"),
            l("x", "Fetch"),
        ];
        let s = per_sample(&lines, "x");
        assert_eq!(s.len(), 2);
        assert_eq!(
            describe(&s[..1]),
            "ApiVersions 1, Metadata 1, ListGroups 1, = 3"
        );
        assert_eq!(
            describe(&s),
            "ApiVersions 0–1, Metadata 1, ListGroups 0–1, Fetch 0–1, = 2–3"
        );
    }
}
