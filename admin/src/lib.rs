//! Kafka administration for the experiment.
//!
//! # Layout
//! - [`create_topic`]: creates the experiment's topic, idempotently, waiting for the brokers first.
//! - [`lag`]: a group's lag per partition, time lag, and (watching) rates, drain ETA and consumers needed.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod create_topic;
pub mod lag;
