//! One fetch loop per assigned partition, feeding a bounded channel: when processing is slower than
//! production (the experiment), the fetchers wait instead of buffering the backlog in memory, so the
//! lag stays on the broker where every tool can see it.

use std::{sync::Arc, time::Duration};

use group::TopicPartition;
use rskafka::{
    client::{
        error::ProtocolError,
        partition::{OffsetAt, PartitionClient, UnknownTopicHandling},
        Client,
    },
    record::RecordAndOffset,
};
use tokio::sync::mpsc;
use tokio_util::sync::CancellationToken;

use runtime::{backoff::Backoff, kafka};

use crate::config::OffsetReset;

/// Records of one partition, in offset order.
#[derive(Debug)]
pub struct Batch {
    /// Where they come from.
    pub partition: TopicPartition,
    /// The assignment they were fetched for; stale batches are dropped after a rebalance.
    pub epoch: u64,
    /// The records.
    pub records: Vec<RecordAndOffset>,
    /// The partition's high watermark at fetch time.
    pub high_watermark: i64,
}

/// What a fetcher needs to know.
#[derive(Debug, Clone)]
pub struct FetchSettings {
    /// Most bytes per fetch.
    pub max_bytes: i32,
    /// How long the broker may hold an empty fetch.
    pub max_wait: Duration,
    /// Where to start without a committed offset, and after OFFSET_OUT_OF_RANGE.
    pub reset: OffsetReset,
}

/// Fetches `partition` from `committed` (or the reset position) until `cancel`.
pub async fn run(
    client: Arc<Client>,
    partition: TopicPartition,
    committed: Option<i64>,
    settings: FetchSettings,
    epoch: u64,
    out: mpsc::Sender<Batch>,
    cancel: CancellationToken,
) {
    let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
    let Some(pc) = partition_client(&client, &partition, &cancel, &mut backoff).await else {
        return;
    };
    let mut offset = match committed {
        Some(o) => o,
        None => {
            match reset_position(&pc, &partition, settings.reset, &cancel, &mut backoff).await {
                Some(o) => o,
                None => return,
            }
        }
    };
    tracing::debug!(partition = partition.partition, offset, "fetching");
    let max_wait = i32::try_from(settings.max_wait.as_millis()).unwrap_or(i32::MAX);
    let mut failing = false;
    loop {
        let fetched = tokio::select! {
            r = pc.fetch_records(offset, 1..settings.max_bytes, max_wait) => r,
            _ = cancel.cancelled() => return,
        };
        match fetched {
            Ok((records, high_watermark)) => {
                if failing {
                    tracing::info!(
                        partition = partition.partition,
                        offset,
                        "fetching recovered"
                    );
                    failing = false;
                }
                backoff.reset();
                // A compressed batch can start before the requested offset.
                let records: Vec<RecordAndOffset> =
                    records.into_iter().filter(|r| r.offset >= offset).collect();
                let Some(last) = records.last() else { continue };
                offset = last.offset + 1;
                let batch = Batch {
                    partition: partition.clone(),
                    epoch,
                    records,
                    high_watermark,
                };
                tokio::select! {
                    sent = out.send(batch) => if sent.is_err() { return },
                    _ = cancel.cancelled() => return,
                }
            }
            Err(err) if kafka::protocol_error(&err) == Some(ProtocolError::OffsetOutOfRange) => {
                // Retention deleted what we had not consumed yet, or the topic was recreated.
                let Some(reset) =
                    reset_position(&pc, &partition, settings.reset, &cancel, &mut backoff).await
                else {
                    return;
                };
                tracing::warn!(partition = partition.partition, from = offset, to = reset, policy = ?settings.reset, "offset out of range; resetting");
                offset = reset;
            }
            Err(err) => {
                if !failing {
                    tracing::warn!(partition = partition.partition, offset, cause = %err, "fetch failed; retrying with backoff");
                    failing = true;
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = cancel.cancelled() => return,
                }
            }
        }
    }
}

async fn partition_client(
    client: &Client,
    partition: &TopicPartition,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> Option<PartitionClient> {
    loop {
        let created = tokio::select! {
            r = client.partition_client(partition.topic.clone(), partition.partition, UnknownTopicHandling::Retry) => r,
            _ = cancel.cancelled() => return None,
        };
        match created {
            Ok(pc) => return Some(pc),
            Err(err) => {
                if backoff.attempts() == 0 {
                    tracing::warn!(partition = partition.partition, cause = %err, "cannot reach the partition leader yet; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
        }
    }
}

async fn reset_position(
    pc: &PartitionClient,
    partition: &TopicPartition,
    reset: OffsetReset,
    cancel: &CancellationToken,
    backoff: &mut Backoff,
) -> Option<i64> {
    let at = match reset {
        OffsetReset::Earliest => OffsetAt::Earliest,
        OffsetReset::Latest => OffsetAt::Latest,
    };
    loop {
        let listed = tokio::select! {
            r = pc.get_offset(at) => r,
            _ = cancel.cancelled() => return None,
        };
        match listed {
            Ok(offset) => return Some(offset),
            Err(err) => {
                if backoff.attempts() == 0 {
                    tracing::warn!(partition = partition.partition, cause = %err, "cannot read the reset offset yet; retrying");
                }
                tokio::select! {
                    _ = tokio::time::sleep(backoff.next_delay()) => {}
                    _ = cancel.cancelled() => return None,
                }
            }
        }
    }
}
