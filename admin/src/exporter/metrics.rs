//! The exporter's Prometheus families. kafka_exporter's names and labels, so its dashboards work
//! unchanged, plus the forecast. Nothing is a stand-in value: what is not known is absent, and a
//! 0/1 gauge says why.
//!
//! - `kafka_consumergroup_state{consumergroup,state}`: 1 for the broker's group state
//!   (`Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`), 0 for the others.
//! - `kafka_consumergroup_partition_committed{consumergroup,topic,partition}`: 0 for a partition of
//!   the group's topics with no committed offset; its `current_offset`, `lag` and `lag_seconds` are
//!   then absent (not -1, not 0).
//! - `kafka_consumergroup_partition_assigned`: 0/1 per partition, only while the group is stable and
//!   the broker reports assignments: 0 is a partition nobody owns.
//! - `kafka_consumergroup_forecast_state{consumergroup,topic,state}`: 1 for the [`lag::State`] of the
//!   group on the topic; `drain_eta_seconds` only when the lag drains (0: keeping up), and
//!   `consumers_needed` only when it can be told.
//!
//! Families are built whole after each sample and swapped in, so a scrape never sees half a sample.

use std::sync::{Arc, RwLock};

use lag::{Eta, Needed, State};
use prometheus::{
    core::{Collector, Desc},
    proto::MetricFamily,
    Gauge, GaugeVec, IntCounter, Opts, Registry,
};

use super::{sample::ClusterSample, Forecasts};

/// The group states DescribeGroups reports for a classic group.
pub const GROUP_STATES: [&str; 5] = [
    "Stable",
    "PreparingRebalance",
    "CompletingRebalance",
    "Empty",
    "Dead",
];

/// The forecast states, as `lag` names them.
pub const FORECAST_STATES: [State; 8] = [
    State::NoCommit,
    State::Empty,
    State::Rebalancing,
    State::Measuring,
    State::KeepingUp,
    State::Draining,
    State::FallingBehind,
    State::Stalled,
];

const G: &[&str] = &["consumergroup"];
const GS: &[&str] = &["consumergroup", "state"];
const GT: &[&str] = &["consumergroup", "topic"];
const GTS: &[&str] = &["consumergroup", "topic", "state"];
const GTP: &[&str] = &["consumergroup", "topic", "partition"];
const T: &[&str] = &["topic"];
const TP: &[&str] = &["topic", "partition"];

/// (name, help, labels) of every family built per sample.
pub const FAMILIES: &[(&str, &str, &[&str])] = &[
    ("kafka_brokers", "Number of brokers in the cluster.", &[]),
    ("kafka_topic_partitions", "Number of partitions of the topic.", T),
    ("kafka_topic_partition_current_offset", "Log-end offset (high watermark) of the partition.", TP),
    ("kafka_topic_partition_oldest_offset", "Earliest retained offset of the partition.", TP),
    ("kafka_topic_partition_leader", "Broker id of the partition's leader; absent while it has none.", TP),
    ("kafka_consumergroup_members", "Members of the group.", G),
    ("kafka_consumergroup_state", "1 for the group's state as its coordinator reports it, 0 for the others.", GS),
    ("kafka_consumergroup_current_offset", "Committed offset of the group on the partition; absent without a commit.", GTP),
    ("kafka_consumergroup_current_offset_sum", "Sum of the group's committed offsets on the topic.", GT),
    ("kafka_consumergroup_lag", "Log-end offset minus the committed offset; absent without a commit.", GTP),
    ("kafka_consumergroup_lag_sum", "Sum of the lag of the topic's committed partitions.", GT),
    ("kafka_consumergroup_partition_committed", "1 if the group has a committed offset on the partition, 0 if not.", GTP),
    ("kafka_consumergroup_partition_assigned", "1 if a member owns the partition, 0 if none does; only while the group is stable and the broker reports assignments.", GTP),
    ("kafka_consumergroup_lag_seconds", "Age of the oldest unconsumed record (0 when nothing is behind); absent without a commit or when its timestamp could not be read.", GTP),
    ("kafka_consumergroup_forecast_state", "1 for the group's forecast state on the topic (worst partition), 0 for the others.", GTS),
    ("kafka_consumergroup_drain_eta_seconds", "Seconds until the lag drains at the measured rates (0: keeping up); absent when it will not drain or it is not known yet.", GT),
    ("kafka_consumergroup_consumers_needed", "Consumers that keep up with the topic's production (the current members when they suffice); absent while not known.", GT),
    ("kafka_consumergroup_consumers_wanted", "Consumers that clear the lag within EXPORTER_DRAIN_TARGET and keep up after, from the capacity measured while saturated (the autoscaling rule); absent while not known.", GT),
    ("kafka_consumergroup_produce_messages_per_second", "Production into the group's partitions of the topic, over the window.", GT),
    ("kafka_consumergroup_consume_messages_per_second", "The group's consumption of the topic, between commits; absent while measuring.", GT),
    ("kafka_consumergroup_lag_growth_messages_per_second", "How fast the lag grows (negative: drains), when it stands out of the noise; absent otherwise.", GT),
];

/// The collector: the families of the latest sample.
struct Latest {
    descs: Vec<Desc>,
    families: Arc<RwLock<Vec<MetricFamily>>>,
}

impl Collector for Latest {
    fn desc(&self) -> Vec<&Desc> {
        self.descs.iter().collect()
    }

    fn collect(&self) -> Vec<MetricFamily> {
        self.families.read().map(|f| f.clone()).unwrap_or_default()
    }
}

/// What the exporter publishes.
pub struct Families {
    latest: Arc<RwLock<Vec<MetricFamily>>>,
    sample_duration: Gauge,
    last_success: Gauge,
    last_success_time: Gauge,
    errors: IntCounter,
}

fn vecs() -> Vec<GaugeVec> {
    FAMILIES
        .iter()
        .filter_map(|(name, help, labels)| GaugeVec::new(Opts::new(*name, *help), labels).ok())
        .collect()
}

impl Families {
    /// Registers the families and the exporter's own metrics in `registry`.
    pub fn register(registry: &Registry) -> Self {
        let latest = Arc::new(RwLock::new(Vec::new()));
        let descs = vecs()
            .iter()
            .flat_map(|v| v.desc().into_iter().cloned())
            .collect();
        let gauge = |name: &str, help: &str| {
            let g = Gauge::new(name, help).unwrap_or_else(|e| unreachable!("{name}: {e}"));
            let _ = registry.register(Box::new(g.clone()));
            g
        };
        let out = Self {
            latest: Arc::clone(&latest),
            sample_duration: gauge(
                "lag_exporter_sample_duration_seconds",
                "How long the last successful sample of the cluster took.",
            ),
            last_success: gauge(
                "lag_exporter_last_sample_success",
                "1 if the last sample succeeded, 0 if it failed (the metrics are then the last good sample's).",
            ),
            last_success_time: gauge(
                "lag_exporter_last_success_timestamp_seconds",
                "When the last successful sample was taken, seconds since the epoch.",
            ),
            errors: IntCounter::new("lag_exporter_sample_errors_total", "Samples that failed.")
                .unwrap_or_else(|e| unreachable!("{e}")),
        };
        let _ = registry.register(Box::new(out.errors.clone()));
        let _ = registry.register(Box::new(Latest {
            descs,
            families: latest,
        }));
        out
    }

    /// A sample failed.
    pub fn failed(&self) {
        self.last_success.set(0.0);
        self.errors.inc();
    }

    /// Publishes `sample` and the forecasts built from it.
    pub fn publish(&self, sample: &ClusterSample, forecasts: &Forecasts) {
        let families = build(sample, forecasts);
        if let Ok(mut latest) = self.latest.write() {
            *latest = families;
        }
        self.sample_duration.set(sample.took.as_secs_f64());
        self.last_success.set(1.0);
        self.last_success_time.set(sample.wall_ms as f64 / 1000.0);
    }
}

/// Every family for one sample.
pub fn build(sample: &ClusterSample, forecasts: &Forecasts) -> Vec<MetricFamily> {
    let v = vecs();
    let get = |name: &str| {
        v.iter()
            .zip(FAMILIES)
            .find(|(_, (n, _, _))| *n == name)
            .map(|(g, _)| g)
    };
    let set = |name: &str, labels: &[&str], value: f64| {
        if let Some(g) = get(name) {
            if let Ok(m) = g.get_metric_with_label_values(labels) {
                m.set(value);
            }
        }
    };
    set("kafka_brokers", &[], sample.brokers as f64);
    for (topic, parts) in &sample.topics {
        set("kafka_topic_partitions", &[topic], parts.len() as f64);
        for p in parts {
            let part = p.partition.to_string();
            if let Some(end) = p.log_end {
                set(
                    "kafka_topic_partition_current_offset",
                    &[topic, &part],
                    end as f64,
                );
            }
            if let Some(start) = p.log_start {
                set(
                    "kafka_topic_partition_oldest_offset",
                    &[topic, &part],
                    start as f64,
                );
            }
            // No leader (-1 on the wire): no series rather than a stand-in id.
            if p.leader >= 0 {
                set(
                    "kafka_topic_partition_leader",
                    &[topic, &part],
                    f64::from(p.leader),
                );
            }
        }
    }
    for g in &sample.groups {
        let name = g.group.as_str();
        set(
            "kafka_consumergroup_members",
            &[name],
            g.description.members.len() as f64,
        );
        let mut states: Vec<&str> = GROUP_STATES.to_vec();
        if !states.contains(&g.description.state.as_str()) {
            states.push(&g.description.state);
        }
        for s in states {
            set(
                "kafka_consumergroup_state",
                &[name, s],
                f64::from(u8::from(s == g.description.state)),
            );
        }
    }
    for gt in &forecasts.latest {
        let (group, topic) = (gt.group.as_str(), gt.topic.as_str());
        let snap = &gt.sample.snapshot;
        let (mut offset_sum, mut lag_sum, mut committed_any) = (0i64, 0i64, false);
        for p in &snap.partitions {
            let part = p.partition.to_string();
            let labels = [group, topic, part.as_str()];
            set(
                "kafka_consumergroup_partition_committed",
                &labels,
                f64::from(u8::from(p.committed.is_some())),
            );
            if gt.assignments_known {
                set(
                    "kafka_consumergroup_partition_assigned",
                    &labels,
                    f64::from(u8::from(p.owner.is_some())),
                );
            }
            let Some(c) = p.committed else { continue };
            committed_any = true;
            let l = lag::lag(p, forecasts.reset());
            offset_sum += c;
            lag_sum += l.messages;
            set("kafka_consumergroup_current_offset", &labels, c as f64);
            set("kafka_consumergroup_lag", &labels, l.messages as f64);
            if l.messages == 0 {
                set("kafka_consumergroup_lag_seconds", &labels, 0.0);
            } else if p.oldest_unconsumed_ms.is_some() {
                set(
                    "kafka_consumergroup_lag_seconds",
                    &labels,
                    lag::time_lag_secs(p, snap.wall_ms),
                );
            }
        }
        if committed_any {
            set(
                "kafka_consumergroup_current_offset_sum",
                &[group, topic],
                offset_sum as f64,
            );
            set(
                "kafka_consumergroup_lag_sum",
                &[group, topic],
                lag_sum as f64,
            );
        }
        let Some(f) = &gt.forecast else { continue };
        for s in FORECAST_STATES {
            set(
                "kafka_consumergroup_forecast_state",
                &[group, topic, s.name()],
                f64::from(u8::from(s == f.state)),
            );
        }
        match f.eta {
            Eta::Now => set(
                "kafka_consumergroup_drain_eta_seconds",
                &[group, topic],
                0.0,
            ),
            Eta::In { secs } => set(
                "kafka_consumergroup_drain_eta_seconds",
                &[group, topic],
                secs,
            ),
            Eta::Never { .. } | Eta::Unknown => {}
        }
        match f.needed {
            Needed::Count { count, .. } => set(
                "kafka_consumergroup_consumers_needed",
                &[group, topic],
                count as f64,
            ),
            Needed::Suffice { members } => set(
                "kafka_consumergroup_consumers_needed",
                &[group, topic],
                members as f64,
            ),
            Needed::Unknown { .. } => {}
        }
        if let Some(wanted) = gt.wanted {
            set(
                "kafka_consumergroup_consumers_wanted",
                &[group, topic],
                wanted as f64,
            );
        }
        // Rates exist from the second sample on.
        if f.partitions.iter().any(|p| p.rates.is_some()) {
            set(
                "kafka_consumergroup_produce_messages_per_second",
                &[group, topic],
                f.produce_rate,
            );
        }
        if let Some(c) = f.consume_rate {
            set(
                "kafka_consumergroup_consume_messages_per_second",
                &[group, topic],
                c,
            );
        }
        if let Some(g) = f.growth {
            set(
                "kafka_consumergroup_lag_growth_messages_per_second",
                &[group, topic],
                g,
            );
        }
    }
    // A family with no series would make the text encoder fail: what is not known is left out.
    v.iter()
        .flat_map(Collector::collect)
        .filter(|f| !f.get_metric().is_empty())
        .collect()
}

#[cfg(test)]
mod tests {
    use std::{collections::BTreeMap, time::Duration};

    use group::{
        inspect::{GroupDescription, MemberDescription},
        TopicPartition,
    };
    use prometheus::Encoder;

    use super::*;
    use crate::exporter::sample::{GroupSample, PartitionLog};

    fn text(state: &str, members: usize) -> String {
        let topics = BTreeMap::from([(
            "t".to_string(),
            (0..2)
                .map(|p| PartitionLog {
                    partition: p,
                    leader: 1,
                    log_start: Some(0),
                    log_end: Some(100),
                })
                .collect(),
        )]);
        let group = GroupSample {
            group: "g".into(),
            description: GroupDescription {
                state: state.into(),
                protocol: "range".into(),
                members: (0..members)
                    .map(|i| MemberDescription {
                        member_id: format!("m{i}"),
                        instance_id: None,
                        client_id: String::new(),
                        host: String::new(),
                        assignment: vec![TopicPartition::new("t", 0)],
                        topics: vec!["t".into()],
                        rack: None,
                        member_epoch: None,
                        target: None,
                    })
                    .collect(),
                epochs: None,
            },
            committed: BTreeMap::from([(TopicPartition::new("t", 0), 40)]),
        };
        let sample = ClusterSample {
            wall_ms: 1_000_000,
            brokers: 1,
            topics,
            groups: vec![group],
            timestamps: BTreeMap::from([((TopicPartition::new("t", 0), 40), 990_000)]),
            took: Duration::from_millis(3),
        };
        let mut forecasts = Forecasts::new(30.0, lag::Reset::Earliest, 60.0);
        forecasts.push(&sample);
        let mut out = Vec::new();
        prometheus::TextEncoder::new()
            .encode(&build(&sample, &forecasts), &mut out)
            .expect("encode");
        String::from_utf8(out).expect("utf-8")
    }

    #[test]
    fn a_partition_without_a_commit_has_no_lag_series_and_says_so() {
        let t = text("Stable", 1);
        assert!(t.contains(r#"kafka_consumergroup_partition_committed{consumergroup="g",partition="1",topic="t"} 0"#), "{t}");
        assert!(
            t.contains(r#"kafka_consumergroup_lag{consumergroup="g",partition="0",topic="t"} 60"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"kafka_consumergroup_lag_seconds{consumergroup="g",partition="0",topic="t"} 10"#
            ),
            "{t}"
        );
        assert!(!t.contains(r#"partition="1",topic="t"} -1"#), "{t}");
        for name in [
            "kafka_consumergroup_lag{",
            "kafka_consumergroup_current_offset{",
            "kafka_consumergroup_lag_seconds{",
        ] {
            assert!(
                !t.contains(&format!(r#"{name}consumergroup="g",partition="1""#)),
                "{name}: {t}"
            );
        }
        // Only what is committed is summed: 60, not 60 + 100 from the log start.
        assert!(
            t.contains(r#"kafka_consumergroup_lag_sum{consumergroup="g",topic="t"} 60"#),
            "{t}"
        );
        // A stable group that leaves partition 1 unowned.
        assert!(t.contains(r#"kafka_consumergroup_partition_assigned{consumergroup="g",partition="1",topic="t"} 0"#), "{t}");
        assert!(!t.contains("NaN"), "{t}");
    }

    #[test]
    fn a_rebalancing_group_and_an_empty_one_are_visible_as_such() {
        let t = text("PreparingRebalance", 1);
        assert!(
            t.contains(
                r#"kafka_consumergroup_state{consumergroup="g",state="PreparingRebalance"} 1"#
            ),
            "{t}"
        );
        assert!(
            t.contains(r#"kafka_consumergroup_state{consumergroup="g",state="Stable"} 0"#),
            "{t}"
        );
        assert!(t.contains(r#"kafka_consumergroup_forecast_state{consumergroup="g",state="REBALANCING",topic="t"} 1"#), "{t}");
        // Not known while rebalancing: absent, not 0.
        assert!(!t.contains("kafka_consumergroup_consumers_needed"), "{t}");
        assert!(!t.contains("kafka_consumergroup_consumers_wanted"), "{t}");
        assert!(!t.contains("kafka_consumergroup_drain_eta_seconds"), "{t}");
        // Owners are not told mid-rebalance.
        assert!(!t.contains("kafka_consumergroup_partition_assigned"), "{t}");

        let t = text("Empty", 0);
        assert!(
            t.contains(r#"kafka_consumergroup_state{consumergroup="g",state="Empty"} 1"#),
            "{t}"
        );
        assert!(
            t.contains(r#"kafka_consumergroup_members{consumergroup="g"} 0"#),
            "{t}"
        );
        assert!(
            t.contains(
                r#"kafka_consumergroup_forecast_state{consumergroup="g",state="EMPTY",topic="t"} 1"#
            ),
            "{t}"
        );
        assert!(
            t.contains(r#"kafka_consumergroup_lag{consumergroup="g",partition="0",topic="t"} 60"#),
            "{t}"
        );
        assert!(!t.contains("kafka_consumergroup_consumers_needed"), "{t}");
        assert!(!t.contains("kafka_consumergroup_consumers_wanted"), "{t}");
    }
}
