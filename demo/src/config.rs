//! The demo's settings, from the environment (`make demo VAR=value` passes them through).

use std::{path::PathBuf, time::Duration};

use serde::{de, Deserialize, Deserializer};

use runtime::config::HumanDuration;

/// Settings as read; [`Config::resolve`] applies `QUICK` and fills what depends on other settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Env {
    /// `KAFKA_BROKERS`: an existing Kafka; unset: a local broker of `DEMO_BROKER`'s kind.
    #[serde(default, deserialize_with = "optional_brokers")]
    pub kafka_brokers: Option<Vec<String>>,
    /// `DEMO_BROKER`: which local broker to start when `KAFKA_BROKERS` is unset.
    #[serde(default)]
    pub demo_broker: LocalBroker,
    /// `TOPIC`.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `GROUP_ID`: default `my-group` on the local broker; on an existing Kafka a fresh
    /// `my-group-demo-<time>`, so earlier runs' commits do not start the demo half-drained.
    pub group_id: Option<String>,
    /// `PARTITIONS`.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// `REPLICATION_FACTOR`: default 2 (the seed's) on an existing Kafka or the local 3-node
    /// cluster, 1 on a local single broker.
    pub replication_factor: Option<i16>,
    /// `PRODUCERS`: producer processes, each sending one message per `PRODUCER_INTERVAL`.
    #[serde(default = "default_producers")]
    pub producers: u32,
    /// `CONSUMERS`: consumer processes after the scale-up (phase 2).
    #[serde(default = "default_consumers")]
    pub consumers: u32,
    /// `PROCESS_DELAY_MS`: each consumer's cost per message (20 ms: one consumer handles 50/s).
    #[serde(default = "default_process_delay_ms")]
    pub process_delay_ms: u64,
    /// `GROUP_PROTOCOL`: the consumers' group protocol, `classic` or `consumer` (KIP-848).
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    /// `PRODUCER_INTERVAL`.
    pub producer_interval: Option<HumanDuration>,
    /// `PHASE1`: how long one consumer runs alone.
    pub phase1: Option<HumanDuration>,
    /// `PHASE2_MAX`: the bound on phase 2 when the lag does not drain.
    pub phase2_max: Option<HumanDuration>,
    /// `HOLD`: how long to keep running once drained, to show the lag stays down.
    pub hold: Option<HumanDuration>,
    /// `SAMPLE_INTERVAL`: how often lag is read.
    pub sample_interval: Option<HumanDuration>,
    /// `AUTO_COMMIT_INTERVAL` given to the consumers: committed lag moves in steps this long.
    pub auto_commit_interval: Option<HumanDuration>,
    /// `WINDOW`: history the rates and forecast are computed over.
    pub window: Option<HumanDuration>,
    /// `DRAINED_LAG`: total lag at or below which the group counts as drained (default: two
    /// seconds of production, what a keeping-up group still trails by).
    pub drained_lag: Option<i64>,
    /// `QUICK`: the short run: phase 1 20 s, phase 2 at most 60 s.
    #[serde(default, deserialize_with = "flag")]
    pub quick: bool,
    /// `AUTOSCALE`: instead of the scale-up, two runs with an autoscaler each (ours, from the
    /// forecast; KEDA's Kafka scaler's rule), compared side by side.
    #[serde(default, deserialize_with = "flag")]
    pub autoscale: bool,
    /// `AUTOSCALE_RUN`: how long each autoscaler runs after phase 1.
    pub autoscale_run: Option<HumanDuration>,
    /// `AUTOSCALE_INTERVAL`: how often the autoscaler decides (the HPA's sync period).
    pub autoscale_interval: Option<HumanDuration>,
    /// `AUTOSCALE_STABILIZATION`: the scale-down stabilization window (the HPA's; Kubernetes'
    /// default is 300 s).
    pub autoscale_stabilization: Option<HumanDuration>,
    /// `DRAIN_TARGET`: our rule clears a backlog within this long.
    pub drain_target: Option<HumanDuration>,
    /// `KEDA_LAG_THRESHOLD`: KEDA's Kafka scaler's `lagThreshold` (its default 10).
    pub keda_lag_threshold: Option<i64>,
    /// `OUT_DIR`: where the CSV, the charts and the children's logs go.
    #[serde(default = "default_out_dir")]
    pub out_dir: PathBuf,
    /// `BIN_DIR`: where the `producer` and `consumer` binaries are (default: next to this one).
    pub bin_dir: Option<PathBuf>,
    /// `NISSHI_BIN`: with `DEMO_BROKER=nisshi`, its binary (default: `nisshi` on PATH, else
    /// ~/.cargo/bin).
    pub nisshi_bin: Option<PathBuf>,
}

/// The autoscaling comparison's settings.
#[derive(Debug, Clone)]
pub struct Autoscale {
    pub run: Duration,
    pub interval: Duration,
    pub stabilization: Duration,
    pub drain_target: Duration,
    pub keda_lag_threshold: i64,
}

/// `GROUP_PROTOCOL`, passed to every consumer (see the consumer's own check of it).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup: a member assigns.
    #[default]
    Classic,
    /// KIP-848: the broker assigns.
    Consumer,
}

impl GroupProtocol {
    /// As `GROUP_PROTOCOL` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Classic => "classic",
            Self::Consumer => "consumer",
        }
    }
}

/// `DEMO_BROKER`: the broker the demo starts for itself when no `KAFKA_BROKERS` is given.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum LocalBroker {
    /// `kafka` (the default): Apache Kafka, one node (broker and controller).
    #[default]
    Kafka,
    /// `kafka-cluster`: Apache Kafka, three nodes, the topic replicated twice as in the seed.
    KafkaCluster,
    /// `nisshi`: the nisshi binary, in memory (where it is installed).
    Nisshi,
}

impl LocalBroker {
    /// How many brokers it runs.
    pub fn nodes(self) -> usize {
        match self {
            Self::KafkaCluster => 3,
            Self::Kafka | Self::Nisshi => 1,
        }
    }

    /// As `DEMO_BROKER` spells it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Kafka => "kafka",
            Self::KafkaCluster => "kafka-cluster",
            Self::Nisshi => "nisshi",
        }
    }
}

impl<'de> Deserialize<'de> for LocalBroker {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        match text.trim().to_ascii_lowercase().as_str() {
            "" | "kafka" => Ok(Self::Kafka),
            "kafka-cluster" => Ok(Self::KafkaCluster),
            "nisshi" => Ok(Self::Nisshi),
            _ => Err(de::Error::custom(format_args!(
                "'{text}' is not a local broker; use kafka (one Apache Kafka node, the default), \
                 kafka-cluster (three nodes) or nisshi"
            ))),
        }
    }
}

/// Resolved settings.
#[derive(Debug, Clone)]
pub struct Config {
    pub kafka_brokers: Option<Vec<String>>,
    /// `SECURITY_PROTOCOL`, `SASL_*`, `SSL_*` for `KAFKA_BROKERS` (the demo's own broker is
    /// plaintext): read by [`runtime::security::from_env`], passed on to the children.
    pub security: runtime::security::Security,
    /// The broker to start when `kafka_brokers` is `None`.
    pub local: LocalBroker,
    pub topic: String,
    pub group: String,
    pub partitions: i32,
    pub replication_factor: i16,
    pub producers: u32,
    pub consumers: u32,
    pub process_delay_ms: u64,
    pub group_protocol: GroupProtocol,
    pub producer_interval: Duration,
    pub phase1: Duration,
    pub phase2_max: Duration,
    pub hold: Duration,
    pub sample_interval: Duration,
    pub auto_commit_interval: Duration,
    pub window: Duration,
    pub drained_lag: i64,
    /// `AUTOSCALE`, and its settings when on.
    pub autoscale: Option<Autoscale>,
    pub out_dir: PathBuf,
    pub bin_dir: PathBuf,
    pub nisshi_bin: Option<PathBuf>,
}

impl Env {
    /// Applies `QUICK` and the defaults that depend on other settings.
    pub fn resolve(self, bin_dir: PathBuf, now_secs: u64) -> Result<Config, String> {
        let pick = |v: Option<HumanDuration>, normal: u64, quick: u64| {
            v.map(HumanDuration::get)
                .unwrap_or(Duration::from_secs(if self.quick { quick } else { normal }))
        };
        if self.partitions < 1 {
            return Err("PARTITIONS must be at least 1".into());
        }
        if self.producers < 1 || self.consumers < 1 {
            return Err("PRODUCERS and CONSUMERS must be at least 1".into());
        }
        let producer_interval = pick(self.producer_interval, 1, 1);
        if producer_interval.is_zero() {
            return Err("PRODUCER_INTERVAL must be more than 0".into());
        }
        let per_second = f64::from(self.producers) / producer_interval.as_secs_f64();
        // The seed's 2 where there are brokers enough; a single local broker holds one copy.
        let replication_factor = match (&self.kafka_brokers, self.replication_factor) {
            (_, Some(rf)) if rf < 1 => return Err("REPLICATION_FACTOR must be at least 1".into()),
            (None, Some(rf)) if rf as usize > self.demo_broker.nodes() => {
                return Err(format!(
                    "REPLICATION_FACTOR={rf} needs {rf} brokers; the local broker (DEMO_BROKER={}) \
                     has {}",
                    self.demo_broker.name(),
                    self.demo_broker.nodes()
                ))
            }
            (_, Some(rf)) => rf,
            (Some(_), None) => 2,
            (None, None) => (self.demo_broker.nodes() as i16).min(2),
        };
        let group = self.group_id.clone().unwrap_or_else(|| {
            if self.kafka_brokers.is_some() {
                format!("my-group-demo-{now_secs}")
            } else {
                "my-group".into()
            }
        });
        let autoscale = if self.autoscale {
            let autoscale = Autoscale {
                run: pick(self.autoscale_run, 240, 120),
                interval: pick(self.autoscale_interval, 15, 15),
                stabilization: pick(self.autoscale_stabilization, 60, 30),
                drain_target: pick(self.drain_target, 60, 30),
                keda_lag_threshold: self.keda_lag_threshold.unwrap_or(10),
            };
            if autoscale.interval.is_zero() {
                return Err("AUTOSCALE_INTERVAL must be more than 0".into());
            }
            if autoscale.keda_lag_threshold < 1 {
                return Err("KEDA_LAG_THRESHOLD must be at least 1".into());
            }
            Some(autoscale)
        } else {
            None
        };
        Ok(Config {
            security: runtime::security::Security::plaintext(),
            autoscale,
            kafka_brokers: self.kafka_brokers.clone(),
            local: self.demo_broker,
            topic: self.topic.clone(),
            group,
            partitions: self.partitions,
            replication_factor,
            producers: self.producers,
            consumers: self.consumers,
            process_delay_ms: self.process_delay_ms,
            group_protocol: self.group_protocol,
            producer_interval,
            phase1: pick(self.phase1, 60, 20),
            phase2_max: pick(self.phase2_max, 240, 60),
            hold: pick(self.hold, 10, 5),
            sample_interval: pick(self.sample_interval, 1, 1),
            auto_commit_interval: pick(self.auto_commit_interval, 1, 1),
            window: pick(self.window, 20, 10),
            drained_lag: self.drained_lag.unwrap_or((per_second * 2.0).ceil() as i64),
            out_dir: self.out_dir.clone(),
            bin_dir: self.bin_dir.clone().unwrap_or(bin_dir),
            nisshi_bin: self.nisshi_bin.clone(),
        })
    }
}

fn default_topic() -> String {
    "my_new_topic".into()
}
fn default_partitions() -> i32 {
    9
}
fn default_producers() -> u32 {
    200
}
fn default_consumers() -> u32 {
    9
}
fn default_process_delay_ms() -> u64 {
    20
}
fn default_out_dir() -> PathBuf {
    PathBuf::from("out/demo")
}

fn optional_brokers<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Vec<String>>, D::Error> {
    runtime::config::brokers(d).map(Some)
}

/// `1`, `true`, `yes`, `on` (and their opposites): what people type after `make demo QUICK=`.
fn flag<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    let text = String::deserialize(d)?;
    match text.trim().to_ascii_lowercase().as_str() {
        "1" | "true" | "yes" | "on" => Ok(true),
        "" | "0" | "false" | "no" | "off" => Ok(false),
        _ => Err(de::Error::custom(format_args!(
            "'{text}' is not a yes/no value; use 1 or 0"
        ))),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn env(vars: &[(&str, &str)]) -> Result<Config, String> {
        let env: Env =
            runtime::config::from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
                .map_err(|e| e.to_string())?;
        env.resolve(PathBuf::from("/bin"), 1_700_000_000)
    }

    #[test]
    fn defaults_are_the_seed_experiment() {
        let c = env(&[]).expect("defaults");
        assert_eq!((c.producers, c.consumers, c.partitions), (200, 9, 9));
        assert_eq!(c.topic, "my_new_topic");
        assert_eq!(c.group, "my-group");
        assert_eq!(c.phase1, Duration::from_secs(60));
        assert_eq!(c.drained_lag, 400);
        assert!(c.kafka_brokers.is_none());
        assert_eq!((c.local, c.replication_factor), (LocalBroker::Kafka, 1));
    }

    #[test]
    fn the_replication_factor_follows_the_broker_count() {
        let c = env(&[("DEMO_BROKER", "kafka-cluster")]).expect("cluster");
        assert_eq!(
            (c.local, c.replication_factor),
            (LocalBroker::KafkaCluster, 2)
        );
        let c = env(&[
            ("DEMO_BROKER", "kafka-cluster"),
            ("REPLICATION_FACTOR", "3"),
        ])
        .expect("rf 3");
        assert_eq!(c.replication_factor, 3);
        let c = env(&[("DEMO_BROKER", "nisshi")]).expect("nisshi");
        assert_eq!((c.local, c.replication_factor), (LocalBroker::Nisshi, 1));
        let c = env(&[("KAFKA_BROKERS", "k:9092")]).expect("existing");
        assert_eq!(c.replication_factor, 2);
        let err = env(&[("REPLICATION_FACTOR", "2")]).expect_err("rf 2 on one node");
        assert!(
            err.contains("REPLICATION_FACTOR") && err.contains("DEMO_BROKER=kafka"),
            "{err}"
        );
        let err = env(&[("REPLICATION_FACTOR", "0")]).expect_err("rf 0");
        assert!(err.contains("REPLICATION_FACTOR"), "{err}");
    }

    #[test]
    fn quick_shortens_the_phases_unless_they_are_given() {
        let c = env(&[("QUICK", "1")]).expect("quick");
        assert_eq!(
            (c.phase1, c.phase2_max),
            (Duration::from_secs(20), Duration::from_secs(60))
        );
        let c = env(&[("QUICK", "yes"), ("PHASE1", "30s")]).expect("quick with phase1");
        assert_eq!(c.phase1, Duration::from_secs(30));
    }

    #[test]
    fn an_existing_kafka_gets_a_fresh_group() {
        let c = env(&[("KAFKA_BROKERS", "k:9092")]).expect("brokers");
        assert_eq!(c.group, "my-group-demo-1700000000");
        let c = env(&[("KAFKA_BROKERS", "k:9092"), ("GROUP_ID", "g")]).expect("group");
        assert_eq!(c.group, "g");
    }

    #[test]
    fn bad_values_name_the_variable() {
        let err = env(&[("QUICK", "maybe")]).expect_err("bad flag");
        assert!(err.contains("QUICK"), "{err}");
        let err = env(&[("PRODUCERS", "lots")]).expect_err("bad number");
        assert!(err.contains("PRODUCERS"), "{err}");
        let err = env(&[("CONSUMERS", "0")]).expect_err("no consumers");
        assert!(err.contains("CONSUMERS"), "{err}");
        let err = env(&[("DEMO_BROKER", "redpanda")]).expect_err("bad broker");
        assert!(
            err.contains("DEMO_BROKER") && err.contains("kafka-cluster"),
            "{err}"
        );
    }
}
