//! Kafka administration for the experiment.
//!
//! # Layout
//! - [`create_topic`]: creates the experiment's topic, idempotently, waiting for the brokers first.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod create_topic;
