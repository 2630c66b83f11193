//! The experiment's producer: the seed's `{"cnt": "cnt: N"}` every `INTERVAL`, each message
//! acknowledged by the broker before the next is sent (the seed's `flush()`), without a key, so the
//! messages spread over all partitions.
//!
//! Every message also carries `producer` (the pod name) and `seq` (N as a number), so a consumer can
//! audit loss and duplicates per producer. `cnt` stays exactly as in the seed.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod metrics;

use std::{sync::Arc, time::Duration};

use rskafka::{
    client::{
        error::{Error as ClientError, ProtocolError},
        partition::{Compression, PartitionClient, UnknownTopicHandling},
        Client,
    },
    record::Record,
};
use serde::{Deserialize, Serialize};
use tokio::time::{Instant, MissedTickBehavior};
use tokio_util::sync::CancellationToken;

use runtime::{
    backoff::Backoff,
    config::{brokers, hostname, HumanDuration},
    kafka,
};

/// Producer settings, from the environment.
#[derive(Debug, Clone, Deserialize)]
pub struct Config {
    /// `KAFKA_BROKERS`: bootstrap `host:port` list. Required.
    #[serde(deserialize_with = "brokers")]
    pub kafka_brokers: Vec<String>,
    /// `TOPIC`: where to send.
    #[serde(default = "default_topic")]
    pub topic: String,
    /// `CLIENT_ID`: shown in broker logs and quotas.
    #[serde(default = "default_client_id")]
    pub client_id: String,
    /// `PRODUCER_ID`: this producer's identity in every message; the pod name by default.
    #[serde(default = "hostname")]
    pub producer_id: String,
    /// `INTERVAL`: time between messages (the seed's `time.sleep(1)`).
    #[serde(default = "default_interval")]
    pub interval: HumanDuration,
    /// `SEND_TIMEOUT`: how long one send may wait for its acknowledgement before it is retried.
    #[serde(default = "default_send_timeout")]
    pub send_timeout: HumanDuration,
    /// `METADATA_REFRESH`: how often the partition count is re-read, so added partitions get messages.
    #[serde(default = "default_metadata_refresh")]
    pub metadata_refresh: HumanDuration,
    /// `SUMMARY_INTERVAL`: how often a progress line is logged at info.
    #[serde(default = "default_summary_interval")]
    pub summary_interval: HumanDuration,
    /// `MESSAGE_COUNT`: stop after this many messages (unset: run until stopped). For tests and
    /// benchmarks.
    #[serde(default)]
    pub message_count: Option<u64>,
    /// `METRICS_ADDR`: where `/metrics`, `/healthz` and `/readyz` are served; empty disables them;
    /// unset, port 9090 when free, else an ephemeral port (see [`runtime::http::MetricsAddr`]).
    #[serde(default, deserialize_with = "runtime::http::metrics_addr")]
    pub metrics_addr: runtime::http::MetricsAddr,
    /// `SECURITY_PROTOCOL`, `SASL_*`, `SSL_*`: read by [`runtime::security::from_env`], not by
    /// this struct (see docs/configuration.md, "Secure clusters").
    #[serde(skip)]
    pub security: runtime::security::Security,
}

fn default_topic() -> String {
    "my_new_topic".into()
}
fn default_client_id() -> String {
    "kafka-producer".into()
}
fn default_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(1))
}
fn default_send_timeout() -> HumanDuration {
    HumanDuration(Duration::from_secs(10))
}
fn default_metadata_refresh() -> HumanDuration {
    HumanDuration(Duration::from_secs(30))
}
fn default_summary_interval() -> HumanDuration {
    HumanDuration(Duration::from_secs(60))
}

/// One message, serialized as `{"cnt":"cnt: 7","producer":"kafka-producer-5d9c","seq":7}`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Payload {
    /// The seed's field, unchanged: `cnt: N`.
    pub cnt: String,
    /// Who sent it.
    pub producer: String,
    /// N, as a number: per producer, 1, 2, 3 … with no gaps.
    pub seq: u64,
}

impl Payload {
    /// Message number `seq` of `producer`.
    pub fn new(producer: &str, seq: u64) -> Self {
        Self {
            cnt: format!("cnt: {seq}"),
            producer: producer.to_string(),
            seq,
        }
    }
}

/// Why the producer stopped with an error.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProducerError {
    /// Connecting was cancelled, or Kafka refused us for good (TLS, SASL).
    #[error(transparent)]
    Connect(#[from] kafka::ClientConnectError),
    /// A broker error that retrying cannot fix (authorization, record too large, invalid topic …).
    #[error("sending message {seq} to topic '{topic}' failed and will not succeed on retry")]
    Fatal {
        /// The topic.
        topic: String,
        /// The message that failed.
        seq: u64,
        /// rskafka's error.
        #[source]
        source: ClientError,
    },
    /// The topic vanished or reports no partitions.
    #[error("topic '{0}' has no partitions")]
    NoPartitions(String),
    /// `METRICS_ADDR` could not be bound.
    #[error("cannot listen on METRICS_ADDR {addr}")]
    Metrics {
        /// The address.
        addr: std::net::SocketAddr,
        /// Why.
        source: std::io::Error,
    },
}

/// What a run did, for the final log line and for tests.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Summary {
    /// Messages acknowledged by the broker.
    pub sent: u64,
    /// Sends that failed transiently and were retried.
    pub retries: u64,
}

/// The partitions we spread over, with a cached client per partition.
struct Partitions {
    /// Index = partition id; created on first use, dropped when the count changes.
    clients: Vec<Option<PartitionClient>>,
    /// Partition for the next message. Starts at a random place so 200 producers started together
    /// do not all begin on partition 0.
    next: usize,
    /// When the partition count was last read.
    refreshed: Instant,
}

impl Partitions {
    fn len(&self) -> usize {
        self.clients.len()
    }

    fn resize(&mut self, count: usize) {
        if count != self.clients.len() {
            self.clients = (0..count).map(|_| None).collect();
            self.next = fastrand::usize(..count.max(1));
        }
        self.refreshed = Instant::now();
    }

    /// The partition for the next message: round-robin, which spreads keyless messages exactly
    /// evenly (what "no key" promises in the seed).
    fn pick(&mut self) -> i32 {
        let partition = self.next % self.clients.len();
        self.next = (partition + 1) % self.clients.len();
        partition as i32
    }
}

/// Serves the endpoints if `METRICS_ADDR` is set. Ready while acknowledgements keep arriving: the
/// last one is at most three intervals (and at least 10 s) old.
async fn serve_metrics(
    config: &Config,
    metrics: &metrics::Metrics,
    cancel: &CancellationToken,
) -> Result<(), ProducerError> {
    let listener = config
        .metrics_addr
        .bind()
        .await
        .map_err(|e| ProducerError::Metrics {
            addr: e.addr,
            source: e.source,
        })?;
    let Some(listener) = listener else {
        return Ok(());
    };
    if let Ok(bound) = listener.local_addr() {
        tracing::info!(addr = %bound, "serving /metrics, /healthz and /readyz");
    }
    let stale_after = (config.interval.get() * 3)
        .max(Duration::from_secs(10))
        .as_secs() as i64;
    let last_ack = metrics.last_ack.clone();
    let ready: runtime::http::Readiness = Arc::new(move || {
        let last = last_ack.get();
        let age = unix_now() - last;
        match last {
            0 => (false, "no message acknowledged yet".into()),
            _ if age > stale_after => (false, format!("last acknowledgement {age} s ago")),
            _ => (true, format!("sending; last acknowledgement {age} s ago")),
        }
    });
    tokio::spawn(runtime::http::serve(
        listener,
        metrics.registry.clone(),
        ready,
        cancel.clone(),
    ));
    Ok(())
}

fn unix_now() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs() as i64)
        .unwrap_or(0)
}

/// Runs until `cancel` fires or `MESSAGE_COUNT` messages were acknowledged.
pub async fn run(
    config: &Config,
    metrics: &metrics::Metrics,
    cancel: &CancellationToken,
) -> Result<Summary, ProducerError> {
    serve_metrics(config, metrics, cancel).await?;
    let client = kafka::connect(
        &config.kafka_brokers,
        &config.client_id,
        &config.security,
        None,
        cancel,
    )
    .await?;
    let mut summary = Summary::default();
    let Some(count) = wait_for_topic(&client, config, cancel).await else {
        return Ok(summary);
    };
    let mut partitions = Partitions {
        clients: Vec::new(),
        next: 0,
        refreshed: Instant::now(),
    };
    partitions.resize(count);
    tracing::info!(
        topic = %config.topic,
        partitions = count,
        producer = %config.producer_id,
        interval = ?config.interval,
        "producing"
    );

    let mut ticker = tokio::time::interval(config.interval.get());
    // After a slow send, wait a whole interval again rather than bursting to catch up: the seed's
    // loop sleeps, then sends.
    ticker.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let mut last_summary = Instant::now();
    let mut seq: u64 = 1;
    loop {
        if config.message_count.is_some_and(|n| summary.sent >= n) {
            break;
        }
        tokio::select! {
            _ = ticker.tick() => {}
            _ = cancel.cancelled() => break,
        }
        if partitions.refreshed.elapsed() >= config.metadata_refresh.get() {
            refresh(&client, config, &mut partitions).await;
        }
        let payload = Payload::new(&config.producer_id, seq);
        match send(
            &client,
            config,
            &mut partitions,
            &payload,
            &mut summary,
            metrics,
            cancel,
        )
        .await?
        {
            Sent::Acknowledged => seq += 1,
            Sent::Cancelled => break,
        }
        if last_summary.elapsed() >= config.summary_interval.get() {
            tracing::info!(
                sent = summary.sent,
                retries = summary.retries,
                last_seq = seq - 1,
                "progress"
            );
            last_summary = Instant::now();
        }
    }
    tracing::info!(
        sent = summary.sent,
        retries = summary.retries,
        last_seq = seq - 1,
        "producer stopped"
    );
    Ok(summary)
}

enum Sent {
    Acknowledged,
    /// Shutdown came while the message was waiting for a retry; it was never acknowledged.
    Cancelled,
}

/// Sends one message, retrying transient failures with backoff until it is acknowledged. Each retry
/// goes to the next partition, so a partition without a leader does not stall the producer; the
/// sequence stays in order because message N+1 waits for N's acknowledgement.
async fn send(
    client: &Client,
    config: &Config,
    partitions: &mut Partitions,
    payload: &Payload,
    summary: &mut Summary,
    metrics: &metrics::Metrics,
    cancel: &CancellationToken,
) -> Result<Sent, ProducerError> {
    let value = serde_json::to_vec(payload).unwrap_or_default();
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    loop {
        let partition = partitions.pick();
        let started = Instant::now();
        // Once started, a send is finished even during shutdown (bounded by SEND_TIMEOUT).
        let result = tokio::time::timeout(
            config.send_timeout.get(),
            produce(client, config, partitions, partition, value.clone()),
        )
        .await
        .unwrap_or(Err(ClientError::Timeout));
        let err = match result {
            Ok(offset) => {
                summary.sent += 1;
                metrics.sent.inc();
                metrics
                    .send_latency
                    .observe(started.elapsed().as_secs_f64());
                metrics.last_seq.set(payload.seq as i64);
                metrics.last_ack.set(unix_now());
                if backoff.attempts() > 0 {
                    tracing::info!(
                        seq = payload.seq,
                        retries = backoff.attempts(),
                        "sending recovered"
                    );
                }
                tracing::debug!(seq = payload.seq, partition, offset, latency = ?started.elapsed(), "sent");
                return Ok(Sent::Acknowledged);
            }
            Err(err) => err,
        };
        if !kafka::is_retriable(&err) {
            metrics.failed.inc();
            return Err(ProducerError::Fatal {
                topic: config.topic.clone(),
                seq: payload.seq,
                source: err,
            });
        }
        summary.retries += 1;
        metrics.failed.inc();
        if backoff.attempts() == 0 {
            tracing::warn!(seq = payload.seq, partition, cause = %err, "send failed; retrying with backoff");
        } else {
            tracing::debug!(seq = payload.seq, partition, cause = %err, attempt = backoff.attempts(), "send failed again");
        }
        if kafka::protocol_error(&err) == Some(ProtocolError::UnknownTopicOrPartition) {
            refresh(client, config, partitions).await;
            if partitions.len() == 0 {
                return Err(ProducerError::NoPartitions(config.topic.clone()));
            }
        } else if let Some(slot) = partitions.clients.get_mut(partition as usize) {
            // A fresh client re-resolves the leader and reconnects.
            *slot = None;
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = cancel.cancelled() => {
                tracing::info!(seq = payload.seq, "shutdown while retrying; message not sent");
                return Ok(Sent::Cancelled);
            }
        }
    }
}

/// Produces `value` to `partition`, creating the partition's client on first use.
async fn produce(
    client: &Client,
    config: &Config,
    partitions: &mut Partitions,
    partition: i32,
    value: Vec<u8>,
) -> Result<i64, ClientError> {
    let slot = &mut partitions.clients[partition as usize];
    if slot.is_none() {
        *slot = Some(
            client
                .partition_client(config.topic.clone(), partition, UnknownTopicHandling::Retry)
                .await?,
        );
    }
    let Some(partition_client) = slot.as_ref() else {
        return Err(ClientError::InvalidResponse(
            "partition client missing".into(),
        ));
    };
    let record = Record {
        key: None,
        value: Some(value),
        headers: Default::default(),
        timestamp: chrono::Utc::now(),
    };
    let offsets = partition_client
        .produce(vec![record], Compression::NoCompression)
        .await?;
    offsets
        .first()
        .copied()
        .ok_or_else(|| ClientError::InvalidResponse("produce returned no offset".into()))
}

/// The topic's partition count, or `None` while it does not exist.
async fn topic_partitions(client: &Client, topic: &str) -> Result<Option<usize>, ClientError> {
    let topics = client.list_topics().await?;
    Ok(topics
        .into_iter()
        .find(|t| t.name == topic)
        .map(|t| t.partitions.len())
        .filter(|&n| n > 0))
}

/// Re-reads the partition count; on failure keeps the old one (sending must not stop because a
/// metadata refresh failed).
async fn refresh(client: &Client, config: &Config, partitions: &mut Partitions) {
    match topic_partitions(client, &config.topic).await {
        Ok(Some(count)) => {
            if count != partitions.len() {
                tracing::info!(topic = %config.topic, from = partitions.len(), to = count, "partition count changed");
            }
            partitions.resize(count);
        }
        Ok(None) => {
            tracing::warn!(topic = %config.topic, "topic not found in metadata; keeping the last partition count")
        }
        Err(err) => {
            tracing::warn!(topic = %config.topic, cause = %err, "metadata refresh failed; keeping the last partition count")
        }
    }
}

/// Waits for the topic to exist (the topic Job may still be running). `None` on shutdown.
async fn wait_for_topic(
    client: &Client,
    config: &Config,
    cancel: &CancellationToken,
) -> Option<usize> {
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(5));
    loop {
        match topic_partitions(client, &config.topic).await {
            Ok(Some(count)) => return Some(count),
            Ok(None) if backoff.attempts() == 0 => {
                tracing::warn!(topic = %config.topic, "topic does not exist yet; waiting for it to be created")
            }
            Err(err) if backoff.attempts() == 0 => {
                tracing::warn!(topic = %config.topic, cause = %err, "reading metadata failed; retrying")
            }
            _ => {}
        }
        tokio::select! {
            _ = tokio::time::sleep(backoff.next_delay()) => {}
            _ = cancel.cancelled() => return None,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn payload_keeps_the_seed_field_and_adds_identity() {
        let json = serde_json::to_string(&Payload::new("pod-a", 7)).expect("serializes");
        assert_eq!(json, r#"{"cnt":"cnt: 7","producer":"pod-a","seq":7}"#);
    }

    #[test]
    fn round_robin_covers_every_partition_evenly() {
        let mut p = Partitions {
            clients: Vec::new(),
            next: 0,
            refreshed: Instant::now(),
        };
        p.resize(9);
        let mut counts = [0; 9];
        for _ in 0..90 {
            counts[p.pick() as usize] += 1;
        }
        assert_eq!(counts, [10; 9]);
    }

    #[test]
    fn config_defaults_follow_the_seed() {
        let cfg: Config =
            runtime::config::from_iter([("KAFKA_BROKERS".to_string(), "k:9092".to_string())])
                .expect("valid");
        assert_eq!(cfg.topic, "my_new_topic");
        assert_eq!(cfg.interval.get(), Duration::from_secs(1));
        assert_eq!(cfg.message_count, None);
    }
}
