//! Kafka administration for the experiment.
//!
//! # Layout
//! - [`create_topic`]: creates the experiment's topic, idempotently, waiting for the brokers first.
//! - [`lag`]: a group's lag per partition, time lag, and (watching) rates, drain ETA and consumers needed.
//! - [`exporter`]: the long-running lag exporter: every group's lag and forecast on `/metrics` and
//!   `/forecast`, sampled in batches.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod create_topic;
pub mod exporter;
pub mod lag;
