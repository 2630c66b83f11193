//! Consumer settings, from the environment. Names follow the seed's kafka-python arguments where they
//! exist (`auto_offset_reset` is `AUTO_OFFSET_RESET`), defaults follow Kafka's.

use std::time::Duration;

use group::assignor::Assignor;
use serde::{de, Deserialize, Deserializer};

use runtime::config::{brokers, hostname, HumanDuration};

/// Where to start a partition the group never committed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OffsetReset {
    /// The oldest retained record (the seed's choice).
    Earliest,
    /// Only records produced from now on.
    Latest,
}

/// Kafka's `group.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum GroupProtocol {
    /// JoinGroup/SyncGroup/Heartbeat; a member computes the assignment.
    #[default]
    Classic,
    /// KIP-848: ConsumerGroupHeartbeat; the broker computes the assignment (Kafka 4.0+).
    Consumer,
}

/// The server-side assignors of Apache Kafka (`group.consumer.assignors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RemoteAssignor {
    /// Spreads partitions evenly, sticky across changes (Kafka's default).
    Uniform,
    /// Per topic, contiguous ranges, as the classic `range` assignor.
    Range,
}

/// Which records are processed (Kafka's `isolation.level`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum IsolationLevel {
    /// Only committed transactions, nothing past the last stable offset (librdkafka's and Java's
    /// default).
    ReadCommitted,
    /// Everything written, aborted transactions included; transaction markers never.
    ReadUncommitted,
}

/// Consumer settings.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `KAFKA_BROKERS`: bootstrap `host:port` list. Required.
    #[serde(deserialize_with = "brokers")]
    pub kafka_brokers: Vec<String>,
    /// `TOPIC`: the subscribed topic.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `GROUP_ID`: the consumer group.
    #[serde(default = "default_group")]
    pub group_id: String,
    /// `CLIENT_ID`: shown by the broker as the member's client id; the pod name by default.
    #[serde(default = "hostname")]
    pub client_id: String,
    /// `AUTO_OFFSET_RESET`: `earliest` or `latest`.
    #[serde(default = "default_reset")]
    pub auto_offset_reset: OffsetReset,
    /// `ENABLE_AUTO_COMMIT`: commit processed positions every `AUTO_COMMIT_INTERVAL`.
    #[serde(default = "yes")]
    pub enable_auto_commit: bool,
    /// `AUTO_COMMIT_INTERVAL`.
    #[serde(default = "default_auto_commit_interval")]
    pub auto_commit_interval: HumanDuration,
    /// `PROCESS_DELAY_MS`: simulated work per message, so one consumer falls behind 200 msg/s.
    #[serde(default)]
    pub process_delay_ms: u64,
    /// `SESSION_TIMEOUT`: Kafka's `session.timeout.ms`.
    #[serde(default = "default_session_timeout")]
    pub session_timeout: HumanDuration,
    /// `HEARTBEAT_INTERVAL`: Kafka's `heartbeat.interval.ms`; bounds how fast a scale-up is noticed.
    #[serde(default = "default_heartbeat_interval")]
    pub heartbeat_interval: HumanDuration,
    /// `REQUEST_TIMEOUT`: how long a group request (a commit, a heartbeat) may wait for its answer;
    /// unset, 30 s or `SESSION_TIMEOUT` if shorter. Must not exceed `SESSION_TIMEOUT`.
    #[serde(default)]
    pub request_timeout: Option<HumanDuration>,
    /// `REBALANCE_TIMEOUT`: Kafka's `max.poll.interval.ms`, sent as the JoinGroup rebalance timeout.
    #[serde(default = "default_rebalance_timeout")]
    pub rebalance_timeout: HumanDuration,
    /// `GROUP_INSTANCE_ID`: static membership (KIP-345).
    #[serde(default)]
    pub group_instance_id: Option<String>,
    /// `CLIENT_RACK`: Kafka's `client.rack`, sent in the subscription so a rack-aware leader on the
    /// Java client can use it; our own assignors ignore racks.
    #[serde(default)]
    pub client_rack: Option<String>,
    /// `ASSIGNMENT_STRATEGY`: assignors in order of preference.
    #[serde(default = "default_assignors", deserialize_with = "assignors")]
    pub assignment_strategy: Vec<Assignor>,
    /// `GROUP_PROTOCOL`: `classic` or `consumer` (KIP-848).
    #[serde(default)]
    pub group_protocol: GroupProtocol,
    /// `GROUP_REMOTE_ASSIGNOR`: the broker-side assignor a KIP-848 member asks for.
    #[serde(default)]
    pub group_remote_assignor: Option<RemoteAssignor>,
    /// `ISOLATION_LEVEL`: `read_committed` or `read_uncommitted`.
    #[serde(default = "default_isolation")]
    pub isolation_level: IsolationLevel,
    /// `FETCH_MAX_BYTES`: per partition fetch.
    #[serde(default = "default_fetch_max_bytes")]
    pub fetch_max_bytes: i32,
    /// `FETCH_MAX_WAIT`: how long the broker may hold a fetch waiting for data.
    #[serde(default = "default_fetch_max_wait")]
    pub fetch_max_wait: HumanDuration,
    /// `METADATA_REFRESH`: how often the group leader re-reads partition counts, so new partitions (or
    /// a topic created after the group formed) are assigned.
    #[serde(default = "default_metadata_refresh")]
    pub metadata_refresh: HumanDuration,
    /// `METRICS_ADDR`: where `/metrics`, `/healthz` and `/readyz` are served; empty disables them;
    /// unset, port 9090 when free, else an ephemeral port (see [`runtime::http::MetricsAddr`]).
    #[serde(default, deserialize_with = "runtime::http::metrics_addr")]
    pub metrics_addr: runtime::http::MetricsAddr,
    /// `SHUTDOWN_TIMEOUT`: how long SIGTERM may take (finish the record, commit, leave).
    #[serde(default = "default_shutdown_timeout")]
    pub shutdown_timeout: HumanDuration,
    /// `SECURITY_PROTOCOL`, `SASL_*`, `SSL_*`: read by [`runtime::security::from_env`], not by
    /// this struct (see docs/configuration.md, "Secure clusters").
    #[serde(skip)]
    pub security: runtime::security::Security,
}

fn default_topic() -> String {
    "my_new_topic".into()
}
fn default_group() -> String {
    "my-group".into()
}
fn default_reset() -> OffsetReset {
    OffsetReset::Earliest
}
fn yes() -> bool {
    true
}
fn default_auto_commit_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(5))
}
fn default_session_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(45))
}
/// 500 ms, not the Java client's 3 s: an existing member learns of a rebalance from its next
/// heartbeat, so this is how long a scale-up waits for it (1 -> 9 measured 1.98 s at 3 s, 1.00 s at
/// 1 s, 0.47 s at 500 ms, BENCHMARKS.md). The cost is two small requests a second per member: 18 a
/// second for the seed's 9, a few thousand for a thousand members, against a 45 s session.
fn default_heartbeat_interval() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_rebalance_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(300))
}
/// Java's default is `range` then `cooperative-sticky`; librdkafka's and kafka-python's are `range`
/// then `roundrobin`. Leading with `range` makes every default client agree. `cooperative-sticky`
/// alone avoids stopping the world on a scale-up but refuses groups of librdkafka and kafka-python
/// members at their defaults: see docs/rebalancing.md.
fn default_assignors() -> Vec<Assignor> {
    vec![Assignor::Range, Assignor::RoundRobin]
}
fn default_isolation() -> IsolationLevel {
    IsolationLevel::ReadCommitted
}
fn default_fetch_max_bytes() -> i32 {
    1024 * 1024
}
fn default_fetch_max_wait() -> HumanDuration {
    HumanDuration(Duration::from_millis(500))
}
fn default_metadata_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_shutdown_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(20))
}

fn assignors<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Vec<Assignor>, D::Error> {
    let text = String::deserialize(deserializer)?;
    let list: Result<Vec<Assignor>, String> = text
        .split(',')
        .map(|name| Assignor::from_name(name).ok_or_else(|| name.trim().to_string()))
        .collect();
    match list {
        Ok(list) if !list.is_empty() => Ok(list),
        Ok(_) => Err(de::Error::custom(
            "empty list; expected a list of range, roundrobin and cooperative-sticky",
        )),
        Err(name) => Err(de::Error::custom(format_args!(
            "'{name}' is not an assignor we implement; expected a list of range, roundrobin and cooperative-sticky"
        ))),
    }
}

impl Config {
    /// The state machine's settings.
    pub fn membership(&self) -> group::membership::Config {
        group::membership::Config {
            group_id: self.group_id.clone(),
            topics: vec![self.topic.clone()],
            assignors: self.assignment_strategy.clone(),
            session_timeout: self.session_timeout.get(),
            rebalance_timeout: self.rebalance_timeout.get(),
            heartbeat_interval: self.heartbeat_interval.get(),
            instance_id: self.group_instance_id.clone().filter(|i| !i.is_empty()),
            rack_id: self.client_rack.clone().filter(|r| !r.is_empty()),
            auto_commit_interval: self
                .enable_auto_commit
                .then(|| self.auto_commit_interval.get()),
            metadata_refresh: self.metadata_refresh.get(),
            request_timeout: self.request_timeout.map_or_else(
                || Duration::from_secs(30).min(self.session_timeout.get()),
                |t| t.get(),
            ),
            protocol: match self.group_protocol {
                GroupProtocol::Classic => group::membership::GroupProtocol::Classic,
                GroupProtocol::Consumer => group::membership::GroupProtocol::Consumer,
            },
            remote_assignor: self.group_remote_assignor.map(|a| {
                match a {
                    RemoteAssignor::Uniform => "uniform",
                    RemoteAssignor::Range => "range",
                }
                .to_string()
            }),
            ..group::membership::Config::new(self.group_id.clone(), vec![self.topic.clone()])
        }
    }

    /// How the fetch path fetches.
    pub fn fetch(&self) -> fetch::FetchConfig {
        fetch::FetchConfig {
            isolation: match self.isolation_level {
                IsolationLevel::ReadCommitted => fetch::IsolationLevel::ReadCommitted,
                IsolationLevel::ReadUncommitted => fetch::IsolationLevel::ReadUncommitted,
            },
            reset: match self.auto_offset_reset {
                OffsetReset::Earliest => fetch::OffsetReset::Earliest,
                OffsetReset::Latest => fetch::OffsetReset::Latest,
            },
            partition_max_bytes: self.fetch_max_bytes,
            // Four partitions' worth per response rather than Java's 50 MB: a response's buffer lives
            // until its last batch is processed, and a pod has 64 MiB.
            max_bytes: self.fetch_max_bytes.saturating_mul(4),
            max_wait: self.fetch_max_wait.get(),
            security: self.security.clone(),
            ..fetch::FetchConfig::new(self.kafka_brokers.clone(), self.client_id.clone())
        }
    }

    /// Settings that cannot work together, caught before joining.
    pub fn validate(&self) -> Result<(), runtime::config::ConfigError> {
        let invalid = |var: &str, reason: String| runtime::config::ConfigError::Invalid {
            var: var.into(),
            reason,
        };
        match self.membership().validate() {
            Ok(()) => {}
            Err(group::membership::ConfigError::RequestTimeout { request, session }) => {
                return Err(invalid(
                    "REQUEST_TIMEOUT",
                    format!(
                        "{request:?} must not be longer than SESSION_TIMEOUT ({session:?}): a heartbeat waiting that long for its answer loses the session"
                    ),
                ))
            }
            Err(group::membership::ConfigError::HeartbeatInterval { heartbeat, session }) => {
                return Err(invalid(
                    "HEARTBEAT_INTERVAL",
                    format!(
                        "{heartbeat:?} must be below a third of SESSION_TIMEOUT ({session:?}), so a lost heartbeat is retried before the session ends"
                    ),
                ))
            }
            Err(other) => return Err(invalid("SESSION_TIMEOUT", other.to_string())),
        }
        if self.group_remote_assignor.is_some() && self.group_protocol == GroupProtocol::Classic {
            return Err(invalid(
                "GROUP_REMOTE_ASSIGNOR",
                "names a broker-side assignor, which only GROUP_PROTOCOL=consumer uses; with the classic protocol choose ASSIGNMENT_STRATEGY".into(),
            ));
        }
        if self.fetch_max_bytes < 1024 {
            return Err(invalid(
                "FETCH_MAX_BYTES",
                format!("{} is too small; use at least 1024", self.fetch_max_bytes),
            ));
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Config, runtime::config::ConfigError> {
        let mut all = vec![("KAFKA_BROKERS".to_string(), "k:9092".to_string())];
        all.extend(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())));
        runtime::config::from_iter(all)
    }

    #[test]
    fn defaults_follow_the_seed_and_kafka() {
        let c = load(&[]).expect("valid");
        assert_eq!(
            (c.topic.as_str(), c.group_id.as_str()),
            ("my_new_topic", "my-group")
        );
        assert_eq!(c.auto_offset_reset, OffsetReset::Earliest);
        assert!(c.enable_auto_commit);
        assert_eq!(
            c.assignment_strategy,
            vec![Assignor::Range, Assignor::RoundRobin]
        );
        assert_eq!(c.session_timeout.get(), Duration::from_secs(45));
        assert_eq!(c.isolation_level, IsolationLevel::ReadCommitted);
        c.validate().expect("defaults are consistent");
    }

    #[test]
    fn strategies_and_resets_parse_and_bad_ones_are_named() {
        let c = load(&[
            ("ASSIGNMENT_STRATEGY", "roundrobin"),
            ("AUTO_OFFSET_RESET", "latest"),
            ("ISOLATION_LEVEL", "read_uncommitted"),
        ])
        .expect("valid");
        assert_eq!(c.isolation_level, IsolationLevel::ReadUncommitted);
        assert_eq!(c.assignment_strategy, vec![Assignor::RoundRobin]);
        assert_eq!(c.auto_offset_reset, OffsetReset::Latest);
        for (var, value) in [
            ("ASSIGNMENT_STRATEGY", "sticky"),
            ("AUTO_OFFSET_RESET", "middle"),
            ("ISOLATION_LEVEL", "read_committed_please"),
            ("ISOLATION_LEVEL", "READ_COMMITTED"),
            ("ENABLE_AUTO_COMMIT", "maybe"),
            ("PROCESS_DELAY_MS", "-5"),
        ] {
            let err = load(&[(var, value)]).expect_err(var);
            assert!(err.to_string().starts_with(var), "{err}");
        }
    }

    #[test]
    fn the_group_protocol_and_remote_assignor_parse_and_are_checked_together() {
        let c = load(&[]).expect("valid");
        assert_eq!(c.group_protocol, GroupProtocol::Classic);
        assert_eq!(
            c.membership().protocol,
            group::membership::GroupProtocol::Classic
        );
        let c = load(&[
            ("GROUP_PROTOCOL", "consumer"),
            ("GROUP_REMOTE_ASSIGNOR", "range"),
        ])
        .expect("parses");
        c.validate().expect("valid");
        let m = c.membership();
        assert_eq!(m.protocol, group::membership::GroupProtocol::Consumer);
        assert_eq!(m.remote_assignor.as_deref(), Some("range"));
        let err = load(&[("GROUP_PROTOCOL", "kip848")]).expect_err("unknown protocol");
        assert!(err.to_string().contains("GROUP_PROTOCOL"), "{err}");
        let err = load(&[
            ("GROUP_PROTOCOL", "consumer"),
            ("GROUP_REMOTE_ASSIGNOR", "sticky"),
        ])
        .expect_err("unknown assignor");
        assert!(err.to_string().contains("GROUP_REMOTE_ASSIGNOR"), "{err}");
        let err = load(&[("GROUP_REMOTE_ASSIGNOR", "uniform")])
            .expect("parses")
            .validate()
            .expect_err("classic has no remote assignor");
        assert!(err.to_string().contains("GROUP_REMOTE_ASSIGNOR"), "{err}");
    }

    #[test]
    fn a_request_timeout_longer_than_the_session_is_refused_by_name() {
        let c = load(&[("SESSION_TIMEOUT", "6s"), ("HEARTBEAT_INTERVAL", "1s")]).expect("parses");
        c.validate()
            .expect("unset, the request timeout follows the session");
        assert_eq!(c.membership().request_timeout, Duration::from_secs(6));
        let c = load(&[
            ("SESSION_TIMEOUT", "6s"),
            ("HEARTBEAT_INTERVAL", "1s"),
            ("REQUEST_TIMEOUT", "7s"),
        ])
        .expect("parses");
        let err = c.validate().expect_err("inconsistent").to_string();
        assert!(err.starts_with("REQUEST_TIMEOUT"), "{err}");
        assert!(err.contains("SESSION_TIMEOUT"), "{err}");
        let c = load(&[("SESSION_TIMEOUT", "6s"), ("HEARTBEAT_INTERVAL", "2s")]).expect("parses");
        let err = c.validate().expect_err("a third is too slow").to_string();
        assert!(err.starts_with("HEARTBEAT_INTERVAL"), "{err}");
    }

    #[test]
    fn a_heartbeat_slower_than_the_session_is_refused() {
        let c = load(&[("HEARTBEAT_INTERVAL", "10s"), ("SESSION_TIMEOUT", "6s")]).expect("parses");
        assert!(c
            .validate()
            .expect_err("inconsistent")
            .to_string()
            .starts_with("HEARTBEAT_INTERVAL"));
    }
}
