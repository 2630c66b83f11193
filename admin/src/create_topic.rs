//! `admin create-topic`: what the Kubernetes Job runs before the producers and consumers start.
//!
//! The Job starts together with Kafka, so "no broker answers" and "not enough brokers registered yet
//! for this replication factor" are waited out until `ADMIN_TIMEOUT`. An existing topic with the same
//! partition count is success (the Job may run twice); a different count is an error a person must
//! resolve, since Kafka cannot shrink a topic and growing it silently would reshuffle keyed data.

use std::time::Duration;

use group::ResponseError;
use kafka_protocol::{
    messages::{
        create_topics_request::CreatableTopic, metadata_request::MetadataRequestTopic,
        CreateTopicsRequest, MetadataRequest, MetadataResponse, TopicName,
    },
    protocol::StrBytes,
};
use serde::Deserialize;
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use runtime::{
    backoff::Backoff,
    config::{brokers, HumanDuration},
    kafka::ConnectError,
};

use crate::conn::{self, Conn, ConnError};

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
    /// `SECURITY_PROTOCOL`, `SASL_*`, `SSL_*`: read by [`runtime::security::from_env`], not by
    /// this struct (see docs/configuration.md, "Secure clusters").
    #[serde(skip)]
    pub security: runtime::security::Security,
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
    Connect(#[from] ConnectError<ConnError>),
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
        /// What failed.
        #[source]
        source: Failure,
    },
    /// Shutdown requested.
    #[error("cancelled")]
    Cancelled,
}

/// A failed request: the broker's error, or the connection's.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Failure {
    /// The broker answered with an error.
    #[error("{error}{}", message.as_deref().map(|m| format!(": {m}")).unwrap_or_default())]
    Broker {
        /// The error code.
        error: ResponseError,
        /// The broker's own words, if it gave any.
        message: Option<String>,
    },
    /// The connection failed (it is dropped and made again).
    #[error(transparent)]
    Conn(#[from] ConnError),
}

impl Failure {
    fn broker_error(&self) -> Option<ResponseError> {
        match self {
            Self::Broker { error, .. } => Some(*error),
            Self::Conn(_) => None,
        }
    }

    /// Worth trying again: a connection lost, a controller moving, a broker starting.
    fn is_retriable(&self) -> bool {
        match self {
            Self::Broker { error, .. } => error.is_retriable(),
            Self::Conn(_) => true,
        }
    }
}

/// How long one request may wait for its answer.
const REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

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
    let mut client = Cluster {
        conn: Some(
            conn::bootstrap(
                &config.kafka_brokers,
                &config.client_id,
                &config.security,
                Some(deadline),
                cancel,
            )
            .await?,
        ),
        config,
    };
    let mut backoff = Backoff::new(Duration::from_millis(250), Duration::from_secs(5));
    let mut last_logged: Option<String> = None;

    loop {
        let result = tokio::select! {
            r = client.create_topic() => r,
            _ = cancel.cancelled() => return Err(CreateTopicError::Cancelled),
        };
        let err = match result {
            Ok(()) => {
                wait_for_partitions(&mut client, deadline, cancel).await?;
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
                let existing = partition_count(&mut client, deadline, cancel).await?;
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

fn next_step(err: &Failure, past_deadline: bool) -> Step {
    match err.broker_error() {
        Some(ResponseError::TopicAlreadyExists) => Step::CheckExisting,
        // While a cluster starts, brokers register one by one: too few for the replication factor is
        // a state to wait out, not an error, until the deadline.
        Some(ResponseError::InvalidReplicationFactor) if past_deadline => {
            Step::FailNotEnoughBrokers
        }
        Some(ResponseError::InvalidReplicationFactor) => Step::WaitForBrokers,
        _ if past_deadline || !err.is_retriable() => Step::Fail,
        _ => Step::Retry,
    }
}

fn broker_error(config: &Config, source: Failure) -> CreateTopicError {
    CreateTopicError::Broker {
        topic: config.topic.clone(),
        source,
    }
}

/// The connection `create-topic` asks on, made again after any failure.
struct Cluster<'a> {
    conn: Option<Conn>,
    config: &'a Config,
}

impl Cluster<'_> {
    /// The topic's metadata, never creating it (brokers auto-create topics a Metadata request names
    /// unless told not to).
    async fn metadata(&mut self) -> Result<MetadataResponse, Failure> {
        let request = MetadataRequest::default()
            .with_topics(Some(vec![MetadataRequestTopic::default().with_name(Some(
                TopicName(StrBytes::from_string(self.config.topic.clone())),
            ))]))
            .with_allow_auto_topic_creation(false);
        Ok(self.call(&request).await?.1)
    }

    /// CreateTopics, sent to the controller: a KRaft broker forwards it there itself, a ZooKeeper-era
    /// broker that is not the controller refuses it.
    async fn create_topic(&mut self) -> Result<(), Failure> {
        let controller = self.metadata().await?;
        let controller = controller
            .brokers
            .iter()
            .find(|b| b.node_id == controller.controller_id)
            .map(|b| format!("{}:{}", b.host, b.port));
        if let (Some(addr), Some(conn)) = (controller, self.conn.as_ref()) {
            if conn.addr() != addr {
                self.conn = Some(
                    Conn::connect(
                        &addr,
                        &self.config.client_id,
                        REQUEST_TIMEOUT,
                        &self.config.security,
                    )
                    .await?,
                );
            }
        }
        let request = CreateTopicsRequest::default()
            .with_topics(vec![CreatableTopic::default()
                .with_name(TopicName(StrBytes::from_string(self.config.topic.clone())))
                .with_num_partitions(self.config.partitions)
                .with_replication_factor(self.config.replication_factor)])
            .with_timeout_ms(30_000);
        let (_, response) = self.call(&request).await?;
        let topic = response
            .topics
            .into_iter()
            .find(|t| t.name.0 == *self.config.topic);
        match topic
            .and_then(|t| ResponseError::try_from_code(t.error_code).map(|e| (e, t.error_message)))
        {
            None => Ok(()),
            Some((error, message)) => Err(Failure::Broker {
                error,
                message: message.map(|m| m.to_string()),
            }),
        }
    }

    async fn call<R: kafka_protocol::protocol::Request>(
        &mut self,
        request: &R,
    ) -> Result<(i16, R::Response), Failure> {
        let conn = match self.conn.take() {
            Some(conn) => conn,
            None => conn::bootstrap(
                &self.config.kafka_brokers,
                &self.config.client_id,
                &self.config.security,
                Some(Instant::now() + REQUEST_TIMEOUT),
                &CancellationToken::new(),
            )
            .await
            .map_err(|e| match e {
                ConnectError::Timeout { last_error, .. } => Failure::Conn(last_error),
                other => Failure::Conn(ConnError::Io {
                    addr: self.config.kafka_brokers.join(","),
                    error: std::io::Error::other(other.to_string()),
                }),
            })?,
        };
        let mut conn = conn;
        let response = conn.call(request, REQUEST_TIMEOUT).await?;
        self.conn = Some(conn);
        Ok(response)
    }
}

/// The topic's partition count from fresh metadata (`None`: not visible yet), retrying transient
/// failures until `deadline`.
async fn partition_count(
    client: &mut Cluster<'_>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<Option<usize>, CreateTopicError> {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(2));
    loop {
        let listed = tokio::select! {
            r = client.metadata() => r,
            _ = cancel.cancelled() => return Err(CreateTopicError::Cancelled),
        };
        let failure = match listed {
            Ok(r) => {
                let Some(t) = r
                    .topics
                    .into_iter()
                    .find(|t| t.name.as_ref().is_some_and(|n| n.0 == *client.config.topic))
                else {
                    return Ok(None);
                };
                match ResponseError::try_from_code(t.error_code) {
                    None => return Ok(Some(t.partitions.len())),
                    Some(ResponseError::UnknownTopicOrPartition) => return Ok(None),
                    Some(error) => Failure::Broker {
                        error,
                        message: None,
                    },
                }
            }
            Err(failure) => failure,
        };
        if !(failure.is_retriable() && Instant::now() < deadline) {
            return Err(broker_error(client.config, failure));
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = cancel.cancelled() => return Err(CreateTopicError::Cancelled),
        }
    }
}

/// After CreateTopics succeeds, metadata can lag behind on other brokers; the Job only finishes once
/// every partition is visible, so producers started after it never see a half-made topic.
async fn wait_for_partitions(
    client: &mut Cluster<'_>,
    deadline: Instant,
    cancel: &CancellationToken,
) -> Result<(), CreateTopicError> {
    let mut backoff = Backoff::new(Duration::from_millis(50), Duration::from_secs(1));
    let config = client.config;
    loop {
        let count = partition_count(client, deadline, cancel).await?;
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

    fn server_error(error: ResponseError) -> Failure {
        Failure::Broker {
            error,
            message: None,
        }
    }

    #[test]
    fn too_few_brokers_is_waited_out_then_explained() {
        let err = server_error(ResponseError::InvalidReplicationFactor);
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
            next_step(&server_error(ResponseError::TopicAlreadyExists), true),
            Step::CheckExisting
        );
    }

    #[test]
    fn transient_errors_retry_until_the_deadline_and_fatal_ones_fail_at_once() {
        let transient = server_error(ResponseError::NotController);
        assert_eq!(next_step(&transient, false), Step::Retry);
        assert_eq!(next_step(&transient, true), Step::Fail);
        let fatal = server_error(ResponseError::TopicAuthorizationFailed);
        assert_eq!(next_step(&fatal, false), Step::Fail);
    }
}
