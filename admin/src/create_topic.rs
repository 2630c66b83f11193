//! `admin create-topic`: what the Kubernetes Job runs before the producers and consumers start.
//!
//! The Job starts together with Kafka, so "no broker answers" and "not enough brokers registered yet
//! for this replication factor" are waited out until `ADMIN_TIMEOUT`. An existing topic with the same
//! partition count is success (the Job may run twice); a different count is an error a person must
//! resolve, since Kafka cannot shrink a topic and growing it silently would reshuffle keyed data.

use std::time::Duration;

use rskafka::client::{error::ProtocolError, Client};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use runtime::{
    backoff::Backoff,
    config::{brokers, HumanDuration},
    kafka,
};

/// `admin create-topic` settings, from the environment.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `KAFKA_BROKERS`: bootstrap `host:port` list. Required.
    #[serde(deserialize_with = "brokers")]
    pub kafka_brokers: Vec<String>,
    /// `TOPIC`: the topic to create.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `CLIENT_ID`: shown in broker logs and quotas.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `PARTITIONS`: the seed's 9, one per consumer at full scale.
    #[serde(default = "default_partitions")]
    pub partitions: i32,
    /// `REPLICATION_FACTOR`: the seed's 2 (of 3 brokers).
    #[serde(default = "default_replication_factor")]
    pub replication_factor: i16,
    /// `ADMIN_TIMEOUT`: how long to wait for Kafka before failing the Job.
    #[serde(default = "default_admin_timeout")]
    pub admin_timeout: HumanDuration,
}

/// Default `TOPIC`, the seed's.
pub fn default_topic() -> String {
    "my_new_topic".into()
}
fn default_client_id() -> String {
    "kafka-admin".into()
}
fn default_partitions() -> i32 {
    9
}
fn default_replication_factor() -> i16 {
    2
}
fn default_admin_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(180))
}

/// What `create-topic` found or did.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// The topic did not exist and now does.
    Created,
    /// The topic already existed with the requested partition count.
    AlreadyExists,
}

/// Why `create-topic` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum CreateTopicError {
    /// A setting that cannot work.
    #[error("{0}")]
    InvalidRequest(String),
    /// No broker answered in time.
    #[error(transparent)]
    Connect(#[from] kafka::ConnectError),
    /// The topic exists with another partition count.
    #[error(
        "topic '{topic}' already exists with {existing} partitions, but PARTITIONS={requested}; \
         delete it or set PARTITIONS={existing} (Kafka cannot shrink a topic, and this tool will not grow one silently)"
    )]
    PartitionMismatch {
        /// The topic.
        topic: String,
        /// Its partition count on the cluster.
        existing: usize,
        /// `PARTITIONS`.
        requested: i32,
    },
    /// The cluster has fewer brokers than the replication factor, still at the deadline.
    #[error(
        "replication factor {replication_factor} needs at least {replication_factor} brokers, but the cluster \
         still had fewer after {waited:?} (the broker said: {broker_message}); start more brokers or lower \
         REPLICATION_FACTOR"
    )]
    NotEnoughBrokers {
        /// `REPLICATION_FACTOR`.
        replication_factor: i16,
        /// How long we waited for brokers to register.
        waited: Duration,
        /// The broker's own words.
        broker_message: String,
    },
    /// A broker error that waiting will not fix, or a retriable one still failing at the deadline.
    #[error("creating topic '{topic}' failed")]
    Broker {
        /// The topic.
        topic: String,
        /// rskafka's error.
        #[source]
        source: rskafka::client::error::Error,
    },
    /// Shutdown requested.
    #[error("cancelled")]
    Cancelled,
}

/// Creates the topic, or confirms it exists as requested.
pub async fn run(config: &Config, cancel: &CancellationToken) -> Result<Outcome, CreateTopicError> {
    if config.partitions < 1 {
        return Err(CreateTopicError::InvalidRequest(format!(
            "PARTITIONS must be at least 1, got {}",
            config.partitions
        )));
    }
    if config.replication_factor < 1 {
        return Err(CreateTopicError::InvalidRequest(format!(
            "REPLICATION_FACTOR must be at least 1, got {}",
            config.replication_factor
        )));
    }
    let started = Instant::now();
    let deadline = started + config.admin_timeout.get();
    let client = kafka::connect(
        &config.kafka_brokers,
        &config.client_id,
        Some(deadline),
        cancel,
    )
    .await?;
    let controller = client
        .controller_client()
        .map_err(|source| broker_error(config, source))?;
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut last_logged: Option<String> = None;

    loop {
        let attempt = controller.create_topic(
            config.topic.clone(),
            config.partitions,
            config.replication_factor,
            30_000,
        );
        let result = tokio::select! {
            r = attempt => r,
            _ = cancel.cancelled() => return Err(CreateTopicError::Cancelled),
        };
        let err = match result {
            Ok(()) => {
                wait_for_partitions(&client, config, deadline, cancel).await?;
                tracing::info!(
                    topic = %config.topic,
                    partitions = config.partitions,
                    replication_factor = config.replication_factor,
                    "topic created"
                );
                return Ok(Outcome::Created);
            }
            Err(err) => err,
        };
        let delay = backoff.next_delay();
        let step = next_step(&err, Instant::now() + delay >= deadline);
        let state = match step {
            Step::CheckExisting => {
                let existing = partition_count(&client, config, deadline, cancel).await?;
                if existing == Some(config.partitions as usize) {
                    tracing::info!(topic = %config.topic, partitions = config.partitions, "topic already exists as requested");
                    return Ok(Outcome::AlreadyExists);
                }
                return Err(CreateTopicError::PartitionMismatch {
                    topic: config.topic.clone(),
                    existing: existing.unwrap_or(0),
                    requested: config.partitions,
                });
            }
            Step::Fail => return Err(broker_error(config, err)),
            Step::FailNotEnoughBrokers => {
                return Err(CreateTopicError::NotEnoughBrokers {
                    replication_factor: config.replication_factor,
                    waited: started.elapsed(),
                    broker_message: err.to_string(),
                })
            }
            Step::WaitForBrokers => format!(
                "waiting for {} brokers to register",
                config.replication_factor
            ),
            Step::Retry => "Kafka is not ready to create topics yet".to_string(),
        };
        if last_logged.as_deref() != Some(state.as_str()) {
            tracing::warn!(topic = %config.topic, cause = %err, "{state}; retrying with backoff");
            last_logged = Some(state);
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return Err(CreateTopicError::Cancelled),
        }
    }
}

/// What to do after CreateTopics failed.
#[derive(Debug, PartialEq, Eq)]
enum Step {
    /// The topic exists: compare its partition count.
    CheckExisting,
    /// Too few brokers registered for the replication factor: wait, they may still be starting.
    WaitForBrokers,
    /// Still too few brokers at the deadline.
    FailNotEnoughBrokers,
    /// Transient: try again.
    Retry,
    /// Waiting will not help, or the deadline passed.
    Fail,
}

fn next_step(err: &rskafka::client::error::Error, past_deadline: bool) -> Step {
    match kafka::protocol_error(err) {
        Some(ProtocolError::TopicAlreadyExists) => Step::CheckExisting,
        // While a cluster starts, brokers register one by one: too few for the replication factor is
        // a state to wait out, not an error, until the deadline.
        Some(ProtocolError::InvalidReplicationFactor) if past_deadline => {
            Step::FailNotEnoughBrokers
        }
        Some(ProtocolError::InvalidReplicationFactor) => Step::WaitForBrokers,
        _ if past_deadline || !kafka::is_retriable(err) => Step::Fail,
        _ => Step::Retry,
    }
}

fn broker_error(config: &Config, source: rskafka::client::error::Error) -> CreateTopicError {
    CreateTopicError::Broker {
        topic: config.topic.clone(),
        source,
    }
}

/// The topic's partition count from fresh metadata (`None`: not visible yet), retrying transient
/// failures until `deadline`.
async fn partition_count(
    client: &Client,
    config: &Config,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Option<usize>, CreateTopicError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let listed = tokio::select! {
            r = client.list_topics() => r,
            _ = cancel.cancelled() => return Err(CreateTopicError::Cancelled),
        };
        match listed {
            Ok(topics) => {
                return Ok(topics
                    .into_iter()
                    .find(|t| t.name == config.topic)
                    .map(|t| t.partitions.len()))
            }
            Err(err) if kafka::is_retriable(&err) && Instant::now() < deadline => {
                tokio::time::sleep(backoff.next_delay()).await;
            }
            Err(err) => return Err(broker_error(config, err)),
        }
    }
}

/// After CreateTopics succeeds, metadata can lag behind on other brokers; the Job only finishes once
/// every partition is visible, so producers started after it never see a half-made topic.
async fn wait_for_partitions(
    client: &Client,
    config: &Config,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<(), CreateTopicError> {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    loop {
        let count = partition_count(client, config, deadline, cancel).await?;
        if count == Some(config.partitions as usize) {
            return Ok(());
        }
        if Instant::now() >= deadline {
            tracing::warn!(topic = %config.topic, visible = ?count, "topic created but not all partitions visible yet");
            return Ok(());
        }
        tokio::time::sleep(backoff.next_delay()).await;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rskafka::client::error::{Error, RequestContext};

    fn server_error(code: ProtocolError) -> Error {
        Error::ServerError {
            protocol_error: code,
            error_message: None,
            request: RequestContext::Topic("t".into()),
            response: None,
            is_virtual: false,
        }
    }

    #[test]
    fn too_few_brokers_is_waited_out_then_explained() {
        let err = server_error(ProtocolError::InvalidReplicationFactor);
        assert_eq!(next_step(&err, false), Step::WaitForBrokers);
        assert_eq!(next_step(&err, true), Step::FailNotEnoughBrokers);
        let message = CreateTopicError::NotEnoughBrokers {
            replication_factor: 2,
            waited: Duration::from_secs(180),
            broker_message: err.to_string(),
        }
        .to_string();
        assert!(
            message.contains("replication factor 2 needs at least 2 brokers"),
            "{message}"
        );
        assert!(message.contains("lower REPLICATION_FACTOR"), "{message}");
    }

    #[test]
    fn existing_topic_is_checked_not_failed() {
        assert_eq!(
            next_step(&server_error(ProtocolError::TopicAlreadyExists), true),
            Step::CheckExisting
        );
    }

    #[test]
    fn transient_errors_retry_until_the_deadline_and_fatal_ones_fail_at_once() {
        let transient = server_error(ProtocolError::NotController);
        assert_eq!(next_step(&transient, false), Step::Retry);
        assert_eq!(next_step(&transient, true), Step::Fail);
        let fatal = server_error(ProtocolError::TopicAuthorizationFailed);
        assert_eq!(next_step(&fatal, false), Step::Fail);
    }
}
