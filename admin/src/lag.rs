//! `admin lag`: a group's lag per partition, like `kafka-consumer-groups.sh --describe`, plus time lag,
//! and with `--watch` the states, rates, drain ETA and consumers needed from [`lag`].
//!
//! Watching a group that does not exist yet waits for it ("waiting for group my-group"): operators
//! start watching before the first member. The connection deadline is short for a command people
//! type (`--timeout` or `ADMIN_TIMEOUT`, default [`DEFAULT_TIMEOUT`]), and named when it passes.
//!
//! Offsets are read in an order that keeps lag from going negative: committed offsets first, then
//! log-end offsets. What a broker does not report (the test broker leaves members' client id, host and
//! assignment empty) is shown as `-`, never guessed.

use std::{
    collections::{BTreeMap, BTreeSet},
    fmt::Write as _,
    time::Duration,
};

use group::{
    connection::Connection,
    inspect::{self, GroupDescription},
    TopicPartition,
};
use lag::{Basis, Eta, Forecast, History, Needed, PartitionSnapshot, Reset, Snapshot};
use serde::Deserialize;
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use runtime::{
    config::{brokers, HumanDuration},
    kafka::ConnectError,
};

use crate::{
    conn::{self, ConnError},
    exporter::sample::{Filter, PartitionLog, SampleError, Sampler},
};

/// Settings from the environment.
#[derive(Debug, Clone, Deserialize)]
pub struct Env {
    /// `KAFKA_BROKERS`.
    #[serde(deserialize_with = "brokers")]
    pub kafka_brokers: Vec<String>,
    /// `CLIENT_ID`.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `TOPIC`: shown when the group's topics cannot be learned (no commits yet, and a broker that does
    /// not report subscriptions).
    #[serde(default = "crate::create_topic::default_topic")]
    pub topic: String,
    /// `ADMIN_TIMEOUT`: how long to wait for a broker to answer (`--timeout` wins); default
    /// [`DEFAULT_TIMEOUT`].
    #[serde(default)]
    pub admin_timeout: Option<HumanDuration>,
    /// `SECURITY_PROTOCOL`, `SASL_*`, `SSL_*`: read by [`runtime::security::from_env`], not by
    /// this struct (see docs/configuration.md, "Secure clusters").
    #[serde(skip)]
    pub security: runtime::security::Security,
}

/// How long `admin lag` waits for a broker to answer, unless told: a person is waiting. (The topic
/// Job's `create-topic` waits 180 s, for Kafka starting next to it.)
pub const DEFAULT_TIMEOUT: Duration = Duration::from_secs(5);

fn default_client_id() -> String {
    "kafka-admin".into()
}

/// Output format.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum Format {
    /// Aligned columns for people.
    Table,
    /// One JSON object per sample, for scripts.
    Json,
}

/// What to show.
#[derive(Debug, Clone)]
pub struct Options {
    /// The group.
    pub group: String,
    /// The topic; `None`: every topic the group committed or subscribes to.
    pub topic: Option<String>,
    /// Redraw every interval.
    pub watch: Option<Duration>,
    /// Output format.
    pub format: Format,
    /// The group's reset policy, for partitions without a commit.
    pub reset: Reset,
    /// Seconds of history the rates are computed over.
    pub window: Duration,
    /// Stop after this many samples (watch mode).
    pub samples: Option<u64>,
    /// How long to wait for a broker to answer when connecting (`--timeout`, `ADMIN_TIMEOUT`).
    pub timeout: Duration,
}

/// Why `admin lag` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum LagError {
    /// No broker answered within the deadline.
    #[error("{source}; admin lag waited up to {}: give it longer with --timeout or ADMIN_TIMEOUT", humantime::format_duration(*.timeout))]
    Connect {
        /// What the connection attempts saw.
        source: ConnectError<ConnError>,
        /// The deadline, for the message.
        timeout: Duration,
    },
    /// A broker refused us for good (TLS, SASL): waiting longer cannot help.
    #[error(transparent)]
    Refused(ConnectError<ConnError>),
    /// The group coordinator could not be asked.
    #[error(transparent)]
    Group(#[from] inspect::InspectError),
    /// A Kafka request failed.
    #[error("{what}")]
    Kafka {
        /// What was being read.
        what: String,
        /// The failure.
        #[source]
        source: SampleError,
    },
    /// A partition has no leader to ask for its offsets.
    #[error("{0} has no leader")]
    NoLeader(TopicPartition),
    /// The group has no members and no committed offsets.
    #[error("group '{0}' does not exist: it has no members and no committed offsets")]
    UnknownGroup(String),
    /// The topic does not exist.
    #[error("topic '{0}' does not exist")]
    UnknownTopic(String),
    /// The brokers did not answer in time.
    #[error("no complete answer from the brokers within {0:?}")]
    Timeout(Duration),
    /// Nothing tells which topic to show.
    #[error("group '{0}' has no committed offsets, the broker reports no subscriptions, and TOPIC does not exist; pass --topic")]
    NoTopic(String),
}

/// Upper bound on one sample (every request it makes).
const SAMPLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Tries of one sample when the coordinator is not ready: waits of 0.1, 0.2, 0.4, 0.8 and 1 s
/// between them, enough for a fresh cluster to create `__consumer_offsets`.
const SAMPLE_TRIES: u32 = 6;

/// Everything one sample of one topic knows.
#[derive(Debug, Clone)]
pub struct Sample {
    /// The topic.
    pub topic: String,
    /// Offsets and owners.
    pub snapshot: Snapshot,
    /// The group as the broker describes it.
    pub group: GroupDescription,
}

/// Runs `admin lag` until done (once, or `samples` times, or until `cancel` in watch mode).
pub async fn run(env: &Env, opts: &Options, cancel: &CancellationToken) -> Result<(), LagError> {
    let mut reader = Reader::connect(env, opts.timeout, cancel).await?;
    let mut histories: BTreeMap<String, History> = BTreeMap::new();
    let mut taken = 0u64;
    // What we last said we wait for: said once, not every sample.
    let mut waiting_for: Option<String> = None;
    loop {
        let sampled = reader.sample(opts).await;
        let mut out = String::new();
        match waiting(opts, &sampled) {
            Some(what) => {
                if waiting_for.as_deref() != Some(what.as_str()) {
                    out = match opts.format {
                        Format::Table => format!("{what} (Ctrl-C to stop)\n"),
                        Format::Json => {
                            format!("{}\n", json!({"group": opts.group, "waiting": what}))
                        }
                    };
                    waiting_for = Some(what);
                }
            }
            None => {
                let samples = match sampled {
                    Ok(samples) => samples,
                    // Watching, a failed sample is reported and the next one tried: the point of
                    // watching is to keep looking through a broker restart or a rebalance.
                    Err(err) if opts.watch.is_some() => {
                        eprintln!("sample failed: {err}");
                        Vec::new()
                    }
                    Err(err) => return Err(err),
                };
                if !samples.is_empty() {
                    waiting_for = None;
                }
                for sample in &samples {
                    let history = histories
                        .entry(sample.topic.clone())
                        .or_insert_with(|| History::new(opts.window.as_secs_f64()));
                    history.push(sample.snapshot.clone());
                    let forecast = opts.watch.and_then(|_| history.forecast(opts.reset));
                    match opts.format {
                        Format::Table => out.push_str(&render_table(
                            &opts.group,
                            sample,
                            forecast.as_ref(),
                            opts.reset,
                        )),
                        Format::Json => {
                            out.push_str(
                                &render_json(&opts.group, sample, forecast.as_ref(), opts.reset)
                                    .to_string(),
                            );
                            out.push('\n');
                        }
                    }
                }
            }
        }
        if !out.is_empty()
            && opts.watch.is_some()
            && opts.format == Format::Table
            && std::io::IsTerminal::is_terminal(&std::io::stdout())
        {
            // Redraw in place for a person watching.
            print!("\x1b[2J\x1b[H");
        }
        print!("{out}");
        let _ = std::io::Write::flush(&mut std::io::stdout());
        taken += 1;
        let Some(every) = opts.watch else {
            return Ok(());
        };
        if opts.samples.is_some_and(|n| taken >= n) {
            return Ok(());
        }
        tokio::select! {
            _ = tokio::time::sleep(every) => {}
            _ = cancel.cancelled() => return Ok(()),
        }
    }
}

/// Watching, what the sample says we wait for: a group with no members and no commits yet, or a
/// topic not created yet. `None` when there is something to show (or not watching).
fn waiting(opts: &Options, sampled: &Result<Vec<Sample>, LagError>) -> Option<String> {
    opts.watch?;
    match sampled {
        Err(LagError::UnknownGroup(group)) => Some(format!(
            "waiting for group {group}: it has no members and no committed offsets yet"
        )),
        Err(LagError::UnknownTopic(topic)) => {
            Some(format!("waiting for topic {topic} to be created"))
        }
        Ok(samples)
            if !samples.is_empty()
                && samples.iter().all(|s| {
                    s.group.members.is_empty()
                        && s.snapshot.partitions.iter().all(|p| p.committed.is_none())
                }) =>
        {
            Some(format!(
                "waiting for group {}: it has no members and no committed offsets yet",
                opts.group
            ))
        }
        _ => None,
    }
}

/// Reads samples of a group's lag, reusing its connections between samples.
pub struct Reader {
    /// Metadata, log offsets and timestamps: the exporter's batched requests, one per leader.
    sampler: Sampler,
    env: Env,
    /// The coordinator connection, reopened after any error.
    coordinator: Option<Connection>,
    /// Time origin for snapshots.
    started: Instant,
}

impl Reader {
    /// Connects to the cluster, waiting up to `timeout` for a broker to answer.
    pub async fn connect(
        env: &Env,
        timeout: Duration,
        cancel: &CancellationToken,
    ) -> Result<Self, LagError> {
        let deadline = Some(Instant::now() + timeout);
        let conn = conn::bootstrap(
            &env.kafka_brokers,
            &env.client_id,
            &env.security,
            deadline,
            cancel,
        )
        .await
        .map_err(|source| match source {
            ConnectError::Fatal { .. } => LagError::Refused(source),
            source => LagError::Connect { source, timeout },
        })?;
        let sampler = Sampler::new(
            env.kafka_brokers.clone(),
            env.client_id.clone(),
            SAMPLE_TIMEOUT,
            Filter::everything(),
        )
        .with_security(env.security.clone())
        .with_bootstrap_connection(conn);
        Ok(Self {
            sampler,
            env: env.clone(),
            coordinator: None,
            started: Instant::now(),
        })
    }

    async fn coordinator(&mut self, group: &str) -> Result<&mut Connection, LagError> {
        if self.coordinator.is_none() {
            let conn = inspect::coordinator_secure(
                &self.env.kafka_brokers,
                &self.env.client_id,
                group,
                Duration::from_secs(10),
                &self.env.security,
            )
            .await?;
            self.coordinator = Some(conn);
        }
        self.coordinator
            .as_mut()
            .ok_or(LagError::UnknownGroup(group.to_string()))
    }

    /// One sample, bounded in time. A dropped, moved or still loading coordinator (a fresh cluster
    /// answers NOT_COORDINATOR while it creates `__consumer_offsets`) is retried on fresh
    /// connections with a growing wait, [`SAMPLE_TRIES`] times in all; a request that never gets an
    /// answer, once.
    pub async fn sample(&mut self, opts: &Options) -> Result<Vec<Sample>, LagError> {
        let mut backoff =
            runtime::backoff::Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let (mut tries, mut timed_out) = (0, false);
        loop {
            tries += 1;
            let err = match tokio::time::timeout(SAMPLE_TIMEOUT, self.sample_once(opts)).await {
                Ok(Err(LagError::Group(e))) if e.is_retriable() => LagError::Group(e),
                Ok(result) => return result,
                Err(_) if !timed_out => {
                    timed_out = true;
                    LagError::Timeout(SAMPLE_TIMEOUT)
                }
                Err(_) => return Err(LagError::Timeout(SAMPLE_TIMEOUT)),
            };
            if tries >= SAMPLE_TRIES {
                return Err(err);
            }
            let delay = backoff.next_delay();
            tracing::debug!(cause = %err, ?delay, "sample failed; retrying on fresh connections");
            self.coordinator = None;
            self.sampler.reset();
            tokio::time::sleep(delay).await;
        }
    }

    async fn sample_once(&mut self, opts: &Options) -> Result<Vec<Sample>, LagError> {
        let group = opts.group.as_str();
        tracing::debug!("describing the group");
        let description = match inspect::describe(self.coordinator(group).await?, group).await {
            // Newer brokers (and nisshi) say so for a group they never heard of.
            Err(inspect::InspectError::Broker {
                error: group::ResponseError::GroupIdNotFound,
                ..
            }) if opts.topic.is_none() => return Err(LagError::UnknownGroup(group.to_string())),
            Err(inspect::InspectError::Broker {
                error: group::ResponseError::GroupIdNotFound,
                ..
            }) => GroupDescription {
                state: "Dead".into(),
                protocol: String::new(),
                members: Vec::new(),
                epochs: None,
            },
            other => other?,
        };
        tracing::debug!("fetching committed offsets");
        let all_committed = inspect::committed(self.coordinator(group).await?, group, None).await?;
        if description.members.is_empty() && all_committed.is_empty() && opts.topic.is_none() {
            return Err(LagError::UnknownGroup(group.to_string()));
        }
        let topics: BTreeSet<String> = match &opts.topic {
            Some(t) => BTreeSet::from([t.clone()]),
            None => all_committed
                .keys()
                .map(|tp| tp.topic.clone())
                .chain(description.members.iter().flat_map(|m| m.topics.clone()))
                .collect(),
        };
        let kafka = |what: &str| {
            let what = what.to_string();
            move |source| LagError::Kafka { what, source }
        };
        let (_, listed) = self
            .sampler
            .metadata()
            .await
            .map_err(kafka("listing topics"))?;
        let topics = if topics.is_empty() && listed.contains_key(&self.env.topic) {
            BTreeSet::from([self.env.topic.clone()])
        } else {
            topics
        };
        if topics.is_empty() {
            return Err(LagError::NoTopic(group.to_string()));
        }
        let mut out = Vec::new();
        for topic in topics {
            let Some(meta) = listed.get(&topic) else {
                return Err(LagError::UnknownTopic(topic));
            };
            let partitions: Vec<TopicPartition> = meta
                .iter()
                .map(|p| TopicPartition::new(topic.clone(), p.partition))
                .collect();
            // Committed first, log ends second: lag cannot go negative from the order of reads.
            let committed =
                inspect::committed(self.coordinator(group).await?, group, Some(&partitions))
                    .await?;
            let owners: BTreeMap<&TopicPartition, &str> = description
                .members
                .iter()
                .flat_map(|m| {
                    m.assignment
                        .iter()
                        .map(move |tp| (tp, m.member_id.as_str()))
                })
                .collect();
            // Every partition at once: one request per leader, not one per partition.
            let mut logs = BTreeMap::from([(topic.clone(), meta.clone())]);
            self.sampler
                .log_offsets(&mut logs)
                .await
                .map_err(kafka(&format!("reading the offsets of {topic}")))?;
            let mut ranges = Vec::new();
            for log in logs.remove(&topic).unwrap_or_default() {
                let tp = TopicPartition::new(topic.clone(), log.partition);
                let PartitionLog {
                    log_start: Some(log_start),
                    log_end: Some(log_end),
                    ..
                } = log
                else {
                    return Err(LagError::NoLeader(tp));
                };
                let committed = committed.get(&tp).copied();
                let from = match (committed, opts.reset) {
                    (Some(c), _) => Some(c),
                    (None, Reset::Earliest) => Some(log_start),
                    (None, Reset::Latest) => None,
                };
                ranges.push((tp, log_start, log_end, committed, from));
            }
            let wanted: BTreeMap<TopicPartition, BTreeSet<i64>> = ranges
                .iter()
                .filter_map(|(tp, _, end, _, from)| {
                    from.filter(|f| f < end)
                        .map(|f| (tp.clone(), BTreeSet::from([f])))
                })
                .collect();
            let logs = BTreeMap::from([(topic.clone(), meta.clone())]);
            let timestamps = self
                .sampler
                .timestamps(&logs, &wanted)
                .await
                .map_err(kafka(&format!("reading the oldest records of {topic}")))?;
            let mut snaps: Vec<PartitionSnapshot> = ranges
                .into_iter()
                .map(
                    |(tp, log_start, log_end, committed, from)| PartitionSnapshot {
                        partition: tp.partition,
                        log_start,
                        log_end,
                        committed,
                        oldest_unconsumed_ms: from
                            .and_then(|f| timestamps.get(&(tp.clone(), f)).copied()),
                        owner: owners.get(&tp).map(|o| o.to_string()),
                    },
                )
                .collect();
            snaps.sort_by_key(|p| p.partition);
            out.push(Sample {
                topic: topic.clone(),
                snapshot: Snapshot {
                    at: self.started.elapsed().as_secs_f64(),
                    wall_ms: now_ms(),
                    group_state: description.state.clone(),
                    members: description
                        .members
                        .iter()
                        .map(|m| m.member_id.clone())
                        .collect(),
                    partitions: snaps,
                },
                group: description.clone(),
            });
        }
        Ok(out)
    }
}

fn now_ms() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_millis() as i64)
        .unwrap_or(0)
}

fn members_by_id(sample: &Sample) -> BTreeMap<&str, &inspect::MemberDescription> {
    sample
        .group
        .members
        .iter()
        .map(|m| (m.member_id.as_str(), m))
        .collect()
}

fn secs(s: f64) -> String {
    if s < 60.0 {
        format!("{s:.1}s")
    } else if s < 3600.0 {
        format!("{}m{:02}s", (s / 60.0) as u64, (s % 60.0) as u64)
    } else {
        format!(
            "{}h{:02}m",
            (s / 3600.0) as u64,
            ((s % 3600.0) / 60.0) as u64
        )
    }
}

fn eta_text(eta: &Eta) -> String {
    match eta {
        Eta::Now => "now".into(),
        Eta::In { secs: s } => secs(*s),
        Eta::Never { .. } => "never".into(),
        Eta::Unknown => "?".into(),
    }
}

/// The table: `kafka-consumer-groups.sh --describe`'s columns, time lag, and in watch mode the
/// forecast columns and footer.
pub fn render_table(
    group: &str,
    sample: &Sample,
    forecast: Option<&Forecast>,
    reset: Reset,
) -> String {
    let snap = &sample.snapshot;
    let members = members_by_id(sample);
    let mut header = vec![
        "GROUP",
        "TOPIC",
        "PARTITION",
        "CURRENT-OFFSET",
        "LOG-END-OFFSET",
        "LAG",
        "TIME-LAG",
    ];
    if forecast.is_some() {
        header.extend(["STATE", "IN/s", "OUT/s", "ETA"]);
    }
    header.extend(["CONSUMER-ID", "HOST", "CLIENT-ID"]);
    let mut rows = vec![header.iter().map(|h| h.to_string()).collect::<Vec<_>>()];
    let (mut no_commit, mut clamped) = (false, false);
    for p in &snap.partitions {
        let l = lag::lag(p, reset);
        no_commit |= l.basis == Basis::ResetPosition;
        clamped |= l.clamped;
        let member = p.owner.as_deref().and_then(|o| members.get(o));
        let dash = |s: &str| {
            if s.is_empty() {
                "-".to_string()
            } else {
                s.to_string()
            }
        };
        let mut row = vec![
            group.to_string(),
            sample.topic.clone(),
            p.partition.to_string(),
            p.committed.map_or("-".into(), |c| c.to_string()),
            p.log_end.to_string(),
            if l.basis == Basis::ResetPosition {
                format!("{}*", l.messages)
            } else {
                l.messages.to_string()
            },
            secs(lag::time_lag_secs(p, snap.wall_ms)),
        ];
        if let Some(f) = forecast {
            let pf = f.partitions.iter().find(|x| x.partition == p.partition);
            let rates = pf.and_then(|x| x.rates);
            row.extend([
                pf.map_or("-", |x| x.state.name()).to_string(),
                rates.map_or("?".into(), |r| format!("{:.1}", r.produce)),
                rates
                    .and_then(|r| r.consume)
                    .map_or("?".into(), |c| format!("{c:.1}")),
                pf.map_or("?".into(), |x| eta_text(&x.eta)),
            ]);
        }
        row.extend([
            p.owner.clone().unwrap_or_else(|| "-".into()),
            dash(member.map_or("", |m| m.host.as_str())),
            dash(member.map_or("", |m| m.client_id.as_str())),
        ]);
        rows.push(row);
    }
    let widths: Vec<usize> = (0..rows[0].len())
        .map(|i| rows.iter().map(|r| r[i].len()).max().unwrap_or(0))
        .collect();
    let mut out = String::new();
    for row in &rows {
        let line: Vec<String> = row
            .iter()
            .zip(&widths)
            .map(|(c, w)| format!("{c:<w$}"))
            .collect();
        let _ = writeln!(out, "{}", line.join("  ").trim_end());
    }
    let total: i64 = snap
        .partitions
        .iter()
        .map(|p| lag::lag(p, reset).messages)
        .sum();
    let max_time = snap
        .partitions
        .iter()
        .map(|p| lag::time_lag_secs(p, snap.wall_ms))
        .fold(0.0, f64::max);
    let state = match snap.group_state.as_str() {
        "Stable" => "stable".to_string(),
        "PreparingRebalance" | "CompletingRebalance" => {
            format!("REBALANCING ({})", snap.group_state)
        }
        // KIP-848: the broker is computing a new assignment, or members are moving to it.
        "Assigning" | "Reconciling" => format!("RECONCILING ({})", snap.group_state),
        "Empty" => "EMPTY (no members)".to_string(),
        other => other.to_string(),
    };
    let _ = writeln!(
        out,
        "\ngroup {group} on {}: {state}, {} member(s); total lag {total}; oldest unconsumed record {} old",
        sample.topic,
        snap.members.len(),
        secs(max_time)
    );
    if let Some((group_epoch, assignment_epoch)) = sample.group.epochs {
        let _ = writeln!(
            out,
            "protocol: consumer (KIP-848), assignor {}, group epoch {group_epoch}, assignment epoch {assignment_epoch}",
            if sample.group.protocol.is_empty() { "?" } else { sample.group.protocol.as_str() },
        );
    }
    for m in sample.group.members.iter().filter(|m| m.reconciling()) {
        let on_topic = |parts: &[TopicPartition]| {
            let list: Vec<String> = parts
                .iter()
                .filter(|tp| tp.topic == sample.topic)
                .map(|tp| tp.partition.to_string())
                .collect();
            if list.is_empty() {
                "-".to_string()
            } else {
                list.join(",")
            }
        };
        let _ = writeln!(
            out,
            "reconciling: {} ({}) at epoch {} owns {} and is moving to {}",
            m.member_id,
            if m.client_id.is_empty() {
                "-"
            } else {
                m.client_id.as_str()
            },
            m.member_epoch.map_or("?".into(), |e| e.to_string()),
            on_topic(&m.assignment),
            on_topic(m.target.as_deref().unwrap_or_default()),
        );
    }
    if no_commit {
        let from = match reset {
            Reset::Earliest => "the log start (auto.offset.reset=earliest)",
            Reset::Latest => "the log end (auto.offset.reset=latest)",
        };
        let _ = writeln!(out, "* no committed offset: lag counted from {from}");
    }
    if clamped {
        let _ = writeln!(
            out,
            "a committed offset was ahead of the log end read a moment later; lag shown as 0"
        );
    }
    if let Some(f) = forecast {
        let _ = writeln!(out, "state: {}", state_line(f));
        let _ = writeln!(
            out,
            "producing {:.1}/s, consuming {}; lag drains: {}",
            f.produce_rate,
            f.consume_rate
                .map_or("?/s (measuring)".into(), |c| format!("{c:.1}/s")),
            match &f.eta {
                Eta::Never { reason } => format!("never ({reason})"),
                Eta::Now => "now (keeping up)".into(),
                other => eta_text(other),
            }
        );
        let _ = writeln!(
            out,
            "consumers needed to keep up: {}",
            needed_text(&f.needed)
        );
    }
    out
}

/// The group's state in words, with its rate when it has one.
fn state_line(f: &Forecast) -> String {
    let words = f.state.words();
    match (f.state, f.growth) {
        (lag::State::FallingBehind, Some(g)) => format!("{words}, lag growing {g:.1}/s"),
        (lag::State::Draining, Some(g)) => format!("{words}, lag falling {:.1}/s", -g),
        (lag::State::Stalled, _) => match &f.eta {
            Eta::Never { reason } => format!("{words}: {reason}"),
            _ => words.to_string(),
        },
        (lag::State::KeepingUp, _) => {
            format!(
                "{words}: lag bounded, no more than the commit interval and fetch batching leave"
            )
        }
        _ => words.to_string(),
    }
}

fn needed_text(n: &Needed) -> String {
    match n {
        Needed::Count {
            count,
            capacity_per_consumer,
            limited_by_partitions,
        } => {
            let mut s =
                format!("{count} (one consumer handles about {capacity_per_consumer:.1}/s)");
            if *limited_by_partitions {
                s.push_str("; the partition count is the limit: more consumers than partitions would sit idle");
            }
            s
        }
        Needed::Suffice { members } => format!(
            "the current {members} member{} suffice{}",
            if *members == 1 { "" } else { "s" },
            if *members == 1 { "s" } else { "" }
        ),
        Needed::Unknown { reason } => format!("unknown ({reason})"),
    }
}

/// One JSON object per sample.
pub fn render_json(
    group: &str,
    sample: &Sample,
    forecast: Option<&Forecast>,
    reset: Reset,
) -> serde_json::Value {
    let snap = &sample.snapshot;
    let members = members_by_id(sample);
    let partitions: Vec<serde_json::Value> = snap
        .partitions
        .iter()
        .map(|p| {
            let l = lag::lag(p, reset);
            let member = p.owner.as_deref().and_then(|o| members.get(o));
            let pf =
                forecast.and_then(|f| f.partitions.iter().find(|x| x.partition == p.partition));
            json!({
                "partition": p.partition,
                "current_offset": p.committed,
                "log_end_offset": p.log_end,
                "log_start_offset": p.log_start,
                "lag": l.messages,
                "lag_basis": l.basis,
                "lag_clamped": l.clamped,
                "time_lag_seconds": lag::time_lag_secs(p, snap.wall_ms),
                "consumer_id": p.owner,
                "host": member.map(|m| m.host.clone()).filter(|h| !h.is_empty()),
                "client_id": member.map(|m| m.client_id.clone()).filter(|c| !c.is_empty()),
                "state": pf.map(|x| x.state),
                "rates": pf.and_then(|x| x.rates),
                "eta": pf.map(|x| &x.eta),
                "growth_per_sec": pf.and_then(|x| x.growth),
                "lag_at_commit": pf.and_then(|x| x.lag_at_commit),
                "since_commit_seconds": pf.and_then(|x| x.since_commit_secs),
            })
        })
        .collect();
    json!({
        "group": group,
        "topic": sample.topic,
        "group_state": snap.group_state,
        "group_protocol": if sample.group.epochs.is_some() { "consumer" } else { "classic" },
        "group_epoch": sample.group.epochs.map(|e| e.0),
        "assignment_epoch": sample.group.epochs.map(|e| e.1),
        "reconciling": sample.group.members.iter().filter(|m| m.reconciling()).map(|m| m.member_id.clone()).collect::<Vec<_>>(),
        "group_members": sample.group.members.iter().map(|m| json!({
            "consumer_id": m.member_id,
            "client_id": m.client_id,
            "member_epoch": m.member_epoch,
            "assigned": m.assignment.iter().filter(|tp| tp.topic == sample.topic).map(|tp| tp.partition).collect::<Vec<_>>(),
            "target": m.target.as_ref().map(|t| t.iter().filter(|tp| tp.topic == sample.topic).map(|tp| tp.partition).collect::<Vec<_>>()),
            "reconciling": m.reconciling(),
        })).collect::<Vec<_>>(),
        "members": snap.members.len(),
        "total_lag": snap.partitions.iter().map(|p| lag::lag(p, reset).messages).sum::<i64>(),
        "partitions": partitions,
        "forecast": forecast.map(|f| json!({
            "state": f.state,
            "members": f.members,
            "growth_per_sec": f.growth,
            "produce_rate": f.produce_rate,
            "consume_rate": f.consume_rate,
            "eta": f.eta,
            "consumers_needed": f.needed,
        })),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// 31 one-second samples of 9 partitions with one member: `produce`/s each produced, the member
    /// at `consume`/s each, committing every second.
    fn watched(produce: i64, consume: i64) -> (Sample, Forecast) {
        let mut history = History::new(30.0);
        let mut last = None;
        for t in 0..=30i64 {
            let end = 1000 + produce * t;
            let snapshot = Snapshot {
                at: t as f64,
                wall_ms: t * 1000,
                group_state: "Stable".into(),
                members: BTreeSet::from(["m0".to_string()]),
                partitions: (0..9)
                    .map(|p| PartitionSnapshot {
                        partition: p,
                        log_start: 0,
                        log_end: end,
                        committed: Some((1000 + consume * t).min(end)),
                        oldest_unconsumed_ms: None,
                        owner: Some("m0".into()),
                    })
                    .collect(),
            };
            history.push(snapshot.clone());
            last = Some(snapshot);
        }
        let sample = Sample {
            topic: "t".into(),
            snapshot: last.expect("a snapshot"),
            group: GroupDescription {
                state: "Stable".into(),
                protocol: "range".into(),
                members: vec![inspect::MemberDescription {
                    member_id: "m0".into(),
                    instance_id: None,
                    client_id: "c0".into(),
                    host: "/127.0.0.1".into(),
                    assignment: Vec::new(),
                    topics: vec!["t".into()],
                    rack: None,
                    member_epoch: None,
                    target: None,
                }],
                epochs: None,
            },
        };
        (sample, history.forecast(Reset::Earliest).expect("forecast"))
    }

    #[test]
    fn a_kip848_member_still_reconciling_is_shown_as_such() {
        let (mut sample, _) = watched(6, 6);
        sample.snapshot.group_state = "Reconciling".into();
        sample.group.state = "Reconciling".into();
        sample.group.protocol = "uniform".into();
        sample.group.epochs = Some((7, 7));
        let m = &mut sample.group.members[0];
        m.member_epoch = Some(6);
        m.assignment = (0..9).map(|p| TopicPartition::new("t", p)).collect();
        m.target = Some((0..3).map(|p| TopicPartition::new("t", p)).collect());
        let table = render_table("g", &sample, None, Reset::Earliest);
        assert!(table.contains("RECONCILING (Reconciling)"), "{table}");
        assert!(
            table.contains(
                "protocol: consumer (KIP-848), assignor uniform, group epoch 7, assignment epoch 7"
            ),
            "{table}"
        );
        assert!(
            table.contains(
                "reconciling: m0 (c0) at epoch 6 owns 0,1,2,3,4,5,6,7,8 and is moving to 0,1,2"
            ),
            "{table}"
        );
        let json = render_json("g", &sample, None, Reset::Earliest);
        assert_eq!(json["group_protocol"], "consumer");
        assert_eq!(json["reconciling"], json!(["m0"]));
        assert_eq!(json["group_members"][0]["target"], json!([0, 1, 2]));
        assert_eq!(json["group_members"][0]["member_epoch"], 6);
        // Once it owns its target, it is no longer listed.
        let m = &mut sample.group.members[0];
        m.assignment = m.target.clone().unwrap_or_default();
        let table = render_table("g", &sample, None, Reset::Earliest);
        assert!(!table.contains("reconciling:"), "{table}");
    }

    #[test]
    fn a_group_that_keeps_up_says_so_and_that_its_members_suffice() {
        let (sample, forecast) = watched(6, 6);
        let table = render_table("g", &sample, Some(&forecast), Reset::Earliest);
        assert!(table.contains("state: keeping up"), "{table}");
        assert!(table.contains("lag drains: now (keeping up)"), "{table}");
        assert!(
            table.contains("consumers needed to keep up: the current 1 member suffices"),
            "{table}"
        );
        assert!(!table.contains("never"), "{table}");
        let row = table.lines().nth(1).unwrap_or_default();
        assert!(row.contains("KEEPING_UP"), "{row}");
        let json = render_json("g", &sample, Some(&forecast), Reset::Earliest);
        assert_eq!(json["forecast"]["state"], "KEEPING_UP");
        assert_eq!(
            json["forecast"]["consumers_needed"],
            json!({"kind": "suffice", "members": 1})
        );
        assert_eq!(json["partitions"][0]["state"], "KEEPING_UP");
        assert_eq!(json["partitions"][0]["eta"]["kind"], "now");
    }

    #[test]
    fn a_group_falling_behind_says_how_fast_and_how_many_consumers_it_needs() {
        // 200 msg/s over 9 partitions (22/s each), one member handling 45/s (5/s each).
        let (sample, forecast) = watched(22, 5);
        let table = render_table("g", &sample, Some(&forecast), Reset::Earliest);
        assert!(
            table.contains("state: falling behind, lag growing 153.0/s"),
            "{table}"
        );
        assert!(table.contains("lag drains: never (partition"), "{table}");
        assert!(
            table.contains("consumers needed to keep up: 5 (one consumer handles about 45.0/s)"),
            "{table}"
        );
        let json = render_json("g", &sample, Some(&forecast), Reset::Earliest);
        assert_eq!(json["forecast"]["state"], "FALLING_BEHIND");
        assert_eq!(json["partitions"][3]["state"], "FALLING_BEHIND");
        assert!(
            (json["partitions"][3]["growth_per_sec"]
                .as_f64()
                .unwrap_or(0.0)
                - 17.0)
                .abs()
                < 0.5,
            "{json}"
        );
        assert_eq!(json["forecast"]["consumers_needed"]["count"], 5);
    }
}
