//! Who leads each partition: Metadata from any bootstrap broker, on a connection kept between calls
//! and replaced after any error (the next call tries the next bootstrap address).

use std::collections::BTreeMap;

use kafka_protocol::{
    messages::{metadata_request::MetadataRequestTopic, MetadataRequest, TopicName},
    protocol::{StrBytes, VersionRange},
};
use transport::{Connection, TopicPartition};

use crate::{FetchConfig, FetchError};

/// Metadata versions we read: v1 (null topics mean none) to v12 (the newest kafka-protocol 0.18
/// encodes; leader epochs since v7).
const METADATA: VersionRange = VersionRange { min: 1, max: 12 };

/// A partition's leader.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Leader {
    /// Its broker id.
    pub broker: i32,
    /// The leader epoch (-1 when the broker does not say), sent back in Fetch so a stale leader
    /// answers FENCED_LEADER_EPOCH instead of serving old data.
    pub epoch: i32,
}

/// The cluster as one Metadata response describes it.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Leaders {
    /// `host:port` by broker id.
    pub brokers: BTreeMap<i32, String>,
    /// The leader of every partition that has one.
    pub partitions: BTreeMap<TopicPartition, Leader>,
}

/// Asks the bootstrap brokers, one at a time, for leaders.
#[derive(Debug)]
pub struct MetadataClient {
    /// Bootstrap addresses.
    bootstrap: Vec<String>,
    /// Which one to try next after a failure.
    next: usize,
    /// The connection in use.
    conn: Option<Connection>,
}

impl MetadataClient {
    /// A client for `config`'s bootstrap brokers; connects on first use.
    pub fn new(config: &FetchConfig) -> Self {
        Self {
            bootstrap: config.bootstrap.clone(),
            next: 0,
            conn: None,
        }
    }

    /// The leaders of `topics`' partitions. Partitions without a leader (an election in progress) and
    /// topics the broker does not know are left out: the caller retries them later.
    pub async fn leaders(
        &mut self,
        config: &FetchConfig,
        topics: &[String],
    ) -> Result<Leaders, FetchError> {
        let result = self.ask(config, topics).await;
        if result.is_err() {
            self.conn = None;
        }
        result
    }

    async fn ask(
        &mut self,
        config: &FetchConfig,
        topics: &[String],
    ) -> Result<Leaders, FetchError> {
        let conn = match &mut self.conn {
            Some(conn) => conn,
            None => {
                if self.bootstrap.is_empty() {
                    return Err(FetchError::NoBrokers);
                }
                let addr = &self.bootstrap[self.next % self.bootstrap.len()];
                self.next = self.next.wrapping_add(1);
                let conn = Connection::connect_secure(
                    addr,
                    &config.client_id,
                    config.connect_timeout,
                    &config.security,
                )
                .await?;
                self.conn.insert(conn)
            }
        };
        let version = conn.version_of::<MetadataRequest>(METADATA)?;
        let mut request = MetadataRequest::default().with_topics(Some(
            topics
                .iter()
                .map(|t| {
                    MetadataRequestTopic::default()
                        .with_name(Some(TopicName(StrBytes::from_string(t.clone()))))
                })
                .collect(),
        ));
        if version >= 4 {
            // Fetching must never create the topic it reads.
            request.allow_auto_topic_creation = false;
        }
        let response = conn.call(&request, version, config.request_timeout).await?;
        let mut leaders = Leaders {
            brokers: response
                .brokers
                .iter()
                .map(|b| (b.node_id.0, format!("{}:{}", b.host.as_str(), b.port)))
                .collect(),
            partitions: BTreeMap::new(),
        };
        for topic in &response.topics {
            let Some(name) = &topic.name else { continue };
            if topic.error_code != 0 {
                tracing::debug!(
                    topic = name.0.as_str(),
                    code = topic.error_code,
                    "no metadata for the topic yet"
                );
                continue;
            }
            for p in &topic.partitions {
                if p.error_code != 0 && p.leader_id.0 < 0 {
                    continue;
                }
                if p.leader_id.0 >= 0 && leaders.brokers.contains_key(&p.leader_id.0) {
                    leaders.partitions.insert(
                        TopicPartition::new(name.0.as_str(), p.partition_index),
                        Leader {
                            broker: p.leader_id.0,
                            epoch: p.leader_epoch,
                        },
                    );
                }
            }
        }
        Ok(leaders)
    }
}
