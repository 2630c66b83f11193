//! Our own Kafka fetch path: Fetch requests to each partition's leader on a [`transport`]
//! connection, decoded and filtered exactly as the Java consumer does, into a bounded channel.
//!
//! # Layout
//! - [`decode`]: sans-io. One partition's fetched bytes → the records to hand out and the next fetch
//!   offset (control batches, aborted transactions, compaction gaps, the last stable offset).
//! - [`batch`]: one batch's records, checked, inflated with a size limit and decoded in one pass into
//!   [`Record`]s that borrow the response.
//! - [`metadata`]: who leads each partition (Metadata), from any bootstrap broker.
//! - [`fetcher`]: the tasks. One manager per assignment routes partitions to one task per leader;
//!   each leader task sends one Fetch for all its partitions at a time and feeds the channel, so a
//!   slow consumer leaves the backlog on the broker.
//!
//! Leader discovery lives here, not in the group crate: fetching needs leaders, membership needs the
//! coordinator, and neither depends on the other (transport → group, transport → fetch → consumer).
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod batch;
pub mod decode;
pub mod fetcher;
pub mod metadata;

use std::time::Duration;

pub use batch::{Header, Record};
pub use decode::{Aborted, DecodeError, Decoded, IsolationLevel};
pub use fetcher::run;
pub use transport::TopicPartition;

/// Where to start a partition with no committed offset, and after OFFSET_OUT_OF_RANGE.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OffsetReset {
    /// The log start offset.
    Earliest,
    /// The log end (under `read_committed`: the last stable offset).
    Latest,
}

/// How to fetch.
#[derive(Debug, Clone)]
pub struct FetchConfig {
    /// Bootstrap brokers, `host:port`, for Metadata.
    pub bootstrap: Vec<String>,
    /// Client id in every request header.
    pub client_id: String,
    /// Which records are handed out.
    pub isolation: IsolationLevel,
    /// Where partitions without a position start.
    pub reset: OffsetReset,
    /// Most bytes per partition per fetch (Java's `max.partition.fetch.bytes`).
    pub partition_max_bytes: i32,
    /// Most bytes per Fetch response (Java's `fetch.max.bytes`).
    pub max_bytes: i32,
    /// How long the broker may hold a Fetch waiting for data (Java's `fetch.max.wait.ms`).
    pub max_wait: Duration,
    /// Connecting and negotiating versions.
    pub connect_timeout: Duration,
    /// How long a request may take beyond `max_wait`.
    pub request_timeout: Duration,
    /// TLS and SASL for every connection.
    pub security: transport::Security,
}

impl FetchConfig {
    /// Java's defaults for everything but the brokers and client id.
    pub fn new(bootstrap: Vec<String>, client_id: impl Into<String>) -> Self {
        Self {
            bootstrap,
            client_id: client_id.into(),
            isolation: IsolationLevel::ReadCommitted,
            reset: OffsetReset::Earliest,
            partition_max_bytes: 1024 * 1024,
            max_bytes: 50 * 1024 * 1024,
            max_wait: Duration::from_millis(500),
            connect_timeout: Duration::from_secs(10),
            request_timeout: Duration::from_secs(30),
            security: transport::Security::plaintext(),
        }
    }
}

/// Records of one partition from one fetch, in offset order.
#[derive(Debug)]
pub struct Batch {
    /// Where they come from.
    pub partition: TopicPartition,
    /// The caller's tag for the assignment they were fetched for (stale batches can be dropped).
    pub epoch: u64,
    /// The records to process (may be empty when only markers, aborted data or gaps were passed).
    pub records: Vec<Record>,
    /// The position once this batch is processed: past its records and past every control batch,
    /// aborted batch and compaction gap the fetch covered. Committing it makes lag reach 0.
    pub next_offset: i64,
    /// The partition's high watermark at fetch time.
    pub high_watermark: i64,
    /// Its last stable offset at fetch time (-1 when not known).
    pub last_stable_offset: i64,
}

/// Why a leader could not be found or a fetch failed; logged and retried with backoff.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum FetchError {
    /// The connection failed.
    #[error(transparent)]
    Transport(#[from] transport::TransportError),
    /// No bootstrap broker is configured.
    #[error("no bootstrap brokers")]
    NoBrokers,
    /// The broker answered with an error for the whole request.
    #[error("{api} failed: {error:?}")]
    Broker {
        /// The request.
        api: &'static str,
        /// The error.
        error: kafka_protocol::ResponseError,
    },
    /// The broker answered with an error code `kafka-protocol` does not know.
    #[error("{api} failed with error code {code}")]
    UnknownCode {
        /// The request.
        api: &'static str,
        /// The code.
        code: i16,
    },
}

impl FetchError {
    /// From a response's error code; `None` when it is 0.
    pub(crate) fn from_code(api: &'static str, code: i16) -> Option<Self> {
        if code == 0 {
            return None;
        }
        Some(match kafka_protocol::ResponseError::try_from_code(code) {
            Some(error) => Self::Broker { api, error },
            None => Self::UnknownCode { api, code },
        })
    }
}
