//! `admin exporter`: a long-running lag exporter. Every `EXPORTER_INTERVAL` it samples every consumer
//! group (or those `GROUP_FILTER` selects) in one batched pass ([`sample`]), feeds each group's
//! topics to the [`lag`] crate's history, and serves the result: `/metrics` with kafka_exporter's
//! names and labels plus the forecast ([`metrics`]), and `/forecast` as JSON.
//!
//! Sampling runs on a timer, not per scrape: rates need evenly spaced samples, and a scrape then
//! costs nothing. A failed sample (a broker down, a leader moving) keeps the last good one on
//! `/metrics`, sets `lag_exporter_last_sample_success` to 0 and retries with capped backoff.
//!
//! # Layout
//! - [`sample`]: one batched sample of the cluster.
//! - [`metrics`]: the Prometheus families built from a sample and its forecasts.

pub mod metrics;
pub mod sample;

use std::{
    collections::BTreeMap,
    sync::{Arc, RwLock},
    time::Duration,
};

use lag::{scale::Planner, History, PartitionSnapshot, Reset, Snapshot};
use serde::{de, Deserialize, Deserializer};
use serde_json::json;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use group::{inspect::GroupDescription, TopicPartition};
use runtime::{
    backoff::Backoff,
    config::{brokers, HumanDuration},
    http::{metrics_addr, MetricsAddr, Readiness, Route},
};

use sample::{ClusterSample, Filter, Sampler};

/// Settings from the environment.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `KAFKA_BROKERS`: bootstrap brokers.
    #[serde(deserialize_with = "brokers")]
    pub kafka_brokers: Vec<String>,
    /// `CLIENT_ID`: shown in broker logs.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `METRICS_ADDR`: where `/metrics`, `/forecast`, `/healthz` and `/readyz` are served, with the
    /// same rules as every binary's (unset: port 9090 if free).
    #[serde(default, deserialize_with = "metrics_addr")]
    pub metrics_addr: MetricsAddr,
    /// `EXPORTER_INTERVAL`: time between samples (default 5s).
    #[serde(default = "default_interval")]
    pub exporter_interval: HumanDuration,
    /// `EXPORTER_WINDOW`: the history rates are measured over and a stall judged over (default 60s;
    /// longer than the groups' commit interval).
    #[serde(default = "default_window")]
    pub exporter_window: HumanDuration,
    /// `EXPORTER_DRAIN_TARGET`: `consumers_wanted` sizes a group to clear its lag within this long
    /// (default 60s).
    #[serde(default = "default_drain_target")]
    pub exporter_drain_target: HumanDuration,
    /// `GROUP_FILTER`: a regex a group's whole name must match (default `.*`).
    #[serde(default = "match_all", deserialize_with = "regex")]
    pub group_filter: regex_lite::Regex,
    /// `TOPIC_FILTER`: a regex a topic's whole name must match (default `.*`; internal topics are
    /// never shown).
    #[serde(default = "match_all", deserialize_with = "regex")]
    pub topic_filter: regex_lite::Regex,
    /// `EXPORTER_RESET`: the groups' `auto.offset.reset` (`earliest` or `latest`, default
    /// `earliest`), for the forecast of partitions without a commit.
    #[serde(default = "default_reset", deserialize_with = "reset")]
    pub exporter_reset: Reset,
    /// `ADMIN_TIMEOUT`: how long one request may take (default 5s).
    #[serde(default = "default_timeout")]
    pub admin_timeout: HumanDuration,
    /// `SECURITY_PROTOCOL`, `SASL_*`, `SSL_*`: read by [`runtime::security::from_env`], not by
    /// this struct (see docs/configuration.md, "Secure clusters").
    #[serde(skip)]
    pub security: runtime::security::Security,
}

fn default_client_id() -> String {
    "kafka-lag-exporter".into()
}
fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_window() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_drain_target() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}
fn default_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_reset() -> Reset {
    Reset::Earliest
}
fn match_all() -> regex_lite::Regex {
    regex_lite::Regex::new(".*").unwrap_or_else(|_| unreachable!(".* is a regex"))
}

fn regex<'de, D: Deserializer<'de>>(deserializer: D) -> Result<regex_lite::Regex, D::Error> {
    let text = String::deserialize(deserializer)?;
    regex_lite::Regex::new(&text).map_err(|e| {
        de::Error::custom(format_args!(
            "'{text}' is not a regular expression ({e}); like my-group|orders-.* (it must match the whole name)"
        ))
    })
}

fn reset<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Reset, D::Error> {
    let text = String::deserialize(deserializer)?;
    match text.trim() {
        "earliest" => Ok(Reset::Earliest),
        "latest" => Ok(Reset::Latest),
        _ => Err(de::Error::custom(format_args!(
            "'{text}' is not a reset policy; write earliest or latest"
        ))),
    }
}

/// Why the exporter could not start.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ExporterError {
    /// The address could not be bound.
    #[error(transparent)]
    Bind(#[from] runtime::http::BindError),
    /// `METRICS_ADDR` is empty: the exporter has nothing to do without its endpoints.
    #[error("METRICS_ADDR is empty, but the exporter serves its metrics there: set it, like 0.0.0.0:9090")]
    NoAddr,
}

/// What the endpoints serve, replaced whole after each sample.
#[derive(Default)]
struct Published {
    /// The `/forecast` body.
    forecast: Option<serde_json::Value>,
    /// Whether a sample ever succeeded (readiness).
    ready: bool,
}

/// Runs the exporter until `cancel`. Logs the address it serves on.
pub async fn run(config: &Config, cancel: &CancellationToken) -> Result<(), ExporterError> {
    let listener = config
        .metrics_addr
        .bind()
        .await?
        .ok_or(ExporterError::NoAddr)?;
    if let Ok(addr) = listener.local_addr() {
        tracing::info!(%addr, "serving /metrics, /forecast, /healthz and /readyz");
    }
    let registry = prometheus::Registry::new();
    let families = metrics::Families::register(&registry);
    let published = Arc::new(RwLock::new(Published::default()));
    let ready: Readiness = {
        let published = Arc::clone(&published);
        Arc::new(move || {
            let ok = published.read().is_ok_and(|p| p.ready);
            (
                ok,
                if ok {
                    "sampling".into()
                } else {
                    "waiting for the first sample".into()
                },
            )
        })
    };
    let forecast: Route = {
        let published = Arc::clone(&published);
        Arc::new(move || {
            let body = published.read().ok().and_then(|p| p.forecast.clone());
            match body {
                Some(b) => (
                    "200 OK",
                    "application/json".into(),
                    b.to_string().into_bytes(),
                ),
                None => (
                    "503 Service Unavailable",
                    "application/json".into(),
                    json!({"waiting": "no sample yet"}).to_string().into_bytes(),
                ),
            }
        })
    };
    let server = tokio::spawn(runtime::http::serve_routes(
        listener,
        registry,
        ready,
        vec![("/forecast", forecast)],
        cancel.clone(),
    ));

    let interval = config.exporter_interval.get();
    let timeout = config.admin_timeout.get();
    let mut sampler = Sampler::new(
        config.kafka_brokers.clone(),
        config.client_id.clone(),
        timeout,
        Filter {
            groups: config.group_filter.clone(),
            topics: config.topic_filter.clone(),
        },
    )
    .with_security(config.security.clone());
    let mut state = Forecasts::new(
        config.exporter_window.get().as_secs_f64(),
        config.exporter_reset,
        config.exporter_drain_target.get().as_secs_f64(),
    );
    let mut backoff = Backoff::new(Duration::from_millis(500), Duration::from_secs(30));
    // One sample sends at most a handful of requests per broker in sequence, plus the Fetch rounds.
    let deadline = timeout * 8;
    loop {
        let started = Instant::now();
        let result = tokio::select! {
            r = tokio::time::timeout(deadline, sampler.sample()) => r,
            _ = cancel.cancelled() => break,
        };
        let wait = match result {
            Ok(Ok(sample)) => {
                let forecast = state.push(&sample);
                families.publish(&sample, &state);
                if let Ok(mut p) = published.write() {
                    p.forecast = Some(forecast);
                    p.ready = true;
                }
                if backoff.attempts() > 0 {
                    tracing::info!(attempts = backoff.attempts(), "sampling again");
                }
                backoff.reset();
                tracing::debug!(
                    groups = sample.groups.len(),
                    topics = sample.topics.len(),
                    took_ms = sample.took.as_millis() as u64,
                    "sampled"
                );
                interval.saturating_sub(started.elapsed())
            }
            failed => {
                let cause = match failed {
                    Ok(Err(e)) => e.to_string(),
                    _ => format!("no complete sample within {deadline:?}"),
                };
                families.failed();
                sampler.reset();
                let wait = backoff
                    .next_delay()
                    .max(interval.min(Duration::from_secs(1)));
                tracing::warn!(%cause, attempt = backoff.attempts(), retry_in_ms = wait.as_millis() as u64, "sample failed");
                wait
            }
        };
        tokio::select! {
            _ = tokio::time::sleep(wait) => {}
            _ = cancel.cancelled() => break,
        }
    }
    // The server stops on the same token.
    let _ = server.await;
    Ok(())
}

/// The histories of every (group, topic) seen, and the forecasts of the latest sample.
pub struct Forecasts {
    window: f64,
    reset: Reset,
    started: Instant,
    histories: BTreeMap<(String, String), History>,
    /// Our autoscaling rule per (group, topic): it remembers the capacity measured.
    planners: BTreeMap<(String, String), Planner>,
    drain_target: f64,
    /// The latest sample's per (group, topic) view.
    pub latest: Vec<GroupTopic>,
}

/// One group on one topic, as the latest sample and its history see it.
pub struct GroupTopic {
    /// The group.
    pub group: String,
    /// The topic.
    pub topic: String,
    /// What `admin lag` shows for it.
    pub sample: crate::lag::Sample,
    /// The forecast from the history.
    pub forecast: Option<lag::Forecast>,
    /// Consumers that clear the lag within the drain target and keep up after ([`Planner`]).
    pub wanted: Option<usize>,
    /// Whether the broker reports the members' assignments (so "no owner" is known).
    pub assignments_known: bool,
}

impl Forecasts {
    /// Empty histories of `window` seconds; `consumers_wanted` clears a backlog within
    /// `drain_target` seconds.
    pub fn new(window: f64, reset: Reset, drain_target: f64) -> Self {
        Self {
            window,
            reset,
            started: Instant::now(),
            histories: BTreeMap::new(),
            planners: BTreeMap::new(),
            drain_target,
            latest: Vec::new(),
        }
    }

    /// The reset policy the forecasts assume.
    pub fn reset(&self) -> Reset {
        self.reset
    }

    /// Adds a sample to the histories and returns the `/forecast` body.
    pub fn push(&mut self, cluster: &ClusterSample) -> serde_json::Value {
        let at = self.started.elapsed().as_secs_f64();
        let mut latest = Vec::new();
        for g in &cluster.groups {
            for (topic, sample, assignments_known) in group_topics(cluster, g, at) {
                let history = self
                    .histories
                    .entry((g.group.clone(), topic.clone()))
                    .or_insert_with(|| History::new(self.window));
                history.push(sample.snapshot.clone());
                let forecast = history.forecast(self.reset);
                let wanted = forecast.as_ref().and_then(|f| {
                    self.planners
                        .entry((g.group.clone(), topic.clone()))
                        .or_insert_with(|| Planner::new(self.drain_target))
                        .desired(at, f)
                });
                latest.push(GroupTopic {
                    group: g.group.clone(),
                    topic,
                    sample,
                    forecast,
                    wanted,
                    assignments_known,
                });
            }
        }
        let seen: std::collections::BTreeSet<(String, String)> = latest
            .iter()
            .map(|gt| (gt.group.clone(), gt.topic.clone()))
            .collect();
        self.histories.retain(|k, _| seen.contains(k));
        self.planners.retain(|k, _| seen.contains(k));
        self.latest = latest;
        self.json(cluster)
    }

    fn json(&self, cluster: &ClusterSample) -> serde_json::Value {
        let groups: Vec<serde_json::Value> = cluster
            .groups
            .iter()
            .map(|g| {
                let topics: Vec<serde_json::Value> = self
                    .latest
                    .iter()
                    .filter(|gt| gt.group == g.group)
                    .map(|gt| {
                        let mut topic = crate::lag::render_json(
                            &gt.group,
                            &gt.sample,
                            gt.forecast.as_ref(),
                            self.reset,
                        );
                        if let Some(fields) = topic.as_object_mut() {
                            fields.insert("consumers_wanted".into(), json!(gt.wanted));
                        }
                        topic
                    })
                    .collect();
                json!({
                    "group": g.group,
                    "group_state": g.description.state,
                    "members": g.description.members.len(),
                    "topics": topics,
                })
            })
            .collect();
        json!({
            "sampled_at_ms": cluster.wall_ms,
            "sample_seconds": cluster.took.as_secs_f64(),
            "reset": self.reset,
            "groups": groups,
        })
    }
}

/// The topics a group is on (committed or subscribed, that the filter selects and that exist), each
/// as an `admin lag` sample.
fn group_topics(
    cluster: &ClusterSample,
    g: &sample::GroupSample,
    at: f64,
) -> Vec<(String, crate::lag::Sample, bool)> {
    let topics: std::collections::BTreeSet<&str> = g
        .committed
        .keys()
        .map(|tp| tp.topic.as_str())
        .chain(
            g.description
                .members
                .iter()
                .flat_map(|m| m.topics.iter().map(String::as_str)),
        )
        .filter(|t| cluster.topics.contains_key(*t))
        .collect();
    let owners: BTreeMap<&TopicPartition, &str> = g
        .description
        .members
        .iter()
        .flat_map(|m| {
            m.assignment
                .iter()
                .map(move |tp| (tp, m.member_id.as_str()))
        })
        .collect();
    // Apache Kafka reports every member's assignment once the group is stable; some brokers report
    // none. Only then, and only on a topic a member subscribes to (not one the group merely
    // committed to once), can a partition be said to have no owner.
    let reported = g.description.state == "Stable"
        && g.description
            .members
            .iter()
            .any(|m| !m.assignment.is_empty());
    let mut out = Vec::new();
    for topic in topics {
        let assignments_known = reported
            && g.description
                .members
                .iter()
                .any(|m| m.topics.iter().any(|t| t == topic));
        let Some(logs) = cluster.topics.get(topic) else {
            continue;
        };
        let partitions = logs
            .iter()
            .filter_map(|l| {
                let (log_start, log_end) = (l.log_start?, l.log_end?);
                let tp = TopicPartition::new(topic, l.partition);
                let committed = g.committed.get(&tp).copied();
                let oldest =
                    committed.and_then(|c| cluster.timestamps.get(&(tp.clone(), c)).copied());
                Some(PartitionSnapshot {
                    partition: l.partition,
                    log_start,
                    log_end,
                    committed,
                    oldest_unconsumed_ms: oldest,
                    owner: owners.get(&tp).map(|o| o.to_string()),
                })
            })
            .collect();
        let snapshot = Snapshot {
            at,
            wall_ms: cluster.wall_ms,
            group_state: g.description.state.clone(),
            members: g
                .description
                .members
                .iter()
                .map(|m| m.member_id.clone())
                .collect(),
            partitions,
        };
        out.push((
            topic.to_string(),
            crate::lag::Sample {
                topic: topic.to_string(),
                snapshot,
                group: GroupDescription {
                    state: g.description.state.clone(),
                    protocol: g.description.protocol.clone(),
                    members: g.description.members.clone(),
                    epochs: g.description.epochs,
                },
            },
            assignments_known,
        ));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, runtime::config::ConfigError> {
        runtime::config::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn defaults_apply() {
        let c = load(&[("KAFKA_BROKERS", "a:9092")]).expect("valid");
        assert_eq!(c.exporter_interval.get(), Duration::from_secs(5));
        assert_eq!(c.exporter_window.get(), Duration::from_secs(60));
        assert_eq!(c.admin_timeout.get(), Duration::from_secs(5));
        assert_eq!(c.exporter_reset, Reset::Earliest);
        assert_eq!(c.metrics_addr, MetricsAddr::Default);
        assert!(sample::full_match(&c.group_filter, "anything"));
        assert_eq!(c.client_id, "kafka-lag-exporter");
    }

    #[test]
    fn filters_match_whole_names() {
        let c = load(&[
            ("KAFKA_BROKERS", "a:9092"),
            ("GROUP_FILTER", "my-group|orders-.*"),
        ])
        .expect("valid");
        assert!(sample::full_match(&c.group_filter, "my-group"));
        assert!(sample::full_match(&c.group_filter, "orders-eu"));
        assert!(!sample::full_match(&c.group_filter, "my-group-2"));
        assert!(!sample::full_match(&c.group_filter, "x-orders-eu"));
    }

    #[test]
    fn bad_values_name_their_variable() {
        for (var, value) in [
            ("GROUP_FILTER", "(unclosed"),
            ("TOPIC_FILTER", "[a-"),
            ("EXPORTER_INTERVAL", "often"),
            ("EXPORTER_WINDOW", "5"),
            ("EXPORTER_RESET", "newest"),
            ("ADMIN_TIMEOUT", "soon"),
            ("METRICS_ADDR", "9090"),
        ] {
            let err = load(&[("KAFKA_BROKERS", "a:9092"), (var, value)]).expect_err(var);
            assert!(
                matches!(&err, runtime::config::ConfigError::Invalid { var: v, .. } if v == var),
                "{var}: {err:?}"
            );
            assert!(err.to_string().contains(value), "{err}");
        }
    }
}
