//! Kafka's consumer-group protocols, usable with any fetch client: the classic one (JoinGroup/SyncGroup/
//! Heartbeat) and KIP-848's (ConsumerGroupHeartbeat, the assignment computed by the broker).
//!
//! # Layout
//! - [`codec`]: the ConsumerProtocol subscription and assignment bytes carried inside JoinGroup and
//!   SyncGroup, with the int16 version prefix `kafka-protocol` leaves to the caller.
//! - [`assignor`]: `range`, `roundrobin` and `cooperative-sticky`, computing the same assignment as
//!   Java (and librdkafka's and kafka-python's ports), so any member can lead.
//! - [`wire`]: request/response enums over `kafka-protocol` types, version negotiation, framing.
//! - [`membership`]: the classic protocol's sans-io state machine: responses and time in, requests and
//!   events out.
//! - [`kip848`]: the same for the KIP-848 protocol (`GROUP_PROTOCOL=consumer`).
//! - [`member`]: what the driver needs of either state machine.
//! - [`connection`]: one TCP connection to a broker (the only place group bytes meet a socket).
//! - [`driver`]: the task that owns the connections and runs the state machine on its timers.
//! - [`inspect`]: a group seen from outside (DescribeGroups, OffsetFetch), for lag tools.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod assignor;
pub mod codec;
pub mod connection;
pub mod driver;
pub mod inspect;
pub mod kip848;
pub mod member;
pub mod membership;
pub mod wire;

/// Broker error codes, re-exported so users of [`inspect`] can match on them.
pub use kafka_protocol::ResponseError;

/// One partition of one topic: the same type the fetch path uses, so an assignment needs no
/// conversion on its way to the fetcher.
pub use transport::TopicPartition;
