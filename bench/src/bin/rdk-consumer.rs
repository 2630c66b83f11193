//! The seed's consumer written with rust-rdkafka: a group member (librdkafka defaults, earliest
//! reset, auto commit) that checks each value is JSON and prints `Received message: <value>`.
//!
//! It does the same per-message work as ours (validate without building a tree, print the value as
//! sent, one buffered write flushed whenever the next poll would wait). Each assignment is printed
//! on stderr as `assigned <count>` (and each revocation as `revoked`), so the harness can time
//! a scale-up.
//! Stops on SIGTERM/SIGINT (the default action) or after `BENCH_DEADLINE_S` seconds.

use std::{
    io::{BufWriter, Write},
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    consumer::{BaseConsumer, Consumer, ConsumerContext, Rebalance},
    message::Message,
    ClientContext,
};
use serde::de::IgnoredAny;

struct Context;

impl ClientContext for Context {}

impl ConsumerContext for Context {
    fn pre_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Revoke(_) = rebalance {
            eprintln!("revoked");
        }
    }

    fn post_rebalance(&self, _consumer: &BaseConsumer<Self>, rebalance: &Rebalance<'_>) {
        if let Rebalance::Assign(list) = rebalance {
            eprintln!("assigned {}", list.count());
        }
    }
}

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() -> anyhow::Result<()> {
    let consumer: BaseConsumer<Context> = ClientConfig::new()
        .set("bootstrap.servers", env("KAFKA_BROKERS", "127.0.0.1:9092"))
        .set("group.id", env("GROUP_ID", "my-group"))
        .set("auto.offset.reset", env("AUTO_OFFSET_RESET", "earliest"))
        .create_with_context(Context)?;
    consumer.subscribe(&[&env("TOPIC", "my_new_topic")])?;
    let deadline = Instant::now() + Duration::from_secs(env("BENCH_DEADLINE_S", "900").parse()?);
    let mut out = BufWriter::with_capacity(64 * 1024, std::io::stdout().lock());
    while Instant::now() < deadline {
        let message = match consumer.poll(Duration::ZERO) {
            Some(m) => m,
            None => {
                out.flush()?;
                match consumer.poll(Duration::from_millis(100)) {
                    Some(m) => m,
                    None => continue,
                }
            }
        };
        let message = match message {
            Ok(m) => m,
            Err(err) => {
                eprintln!("consumer error: {err}");
                continue;
            }
        };
        match message.payload() {
            None => out.write_all(b"Received message: null\n")?,
            Some(value) => {
                if std::str::from_utf8(value).is_ok()
                    && serde_json::from_slice::<IgnoredAny>(value).is_ok()
                {
                    out.write_all(b"Received message: ")?;
                    out.write_all(value.trim_ascii())?;
                    out.write_all(b"\n")?;
                }
            }
        }
    }
    Ok(())
}
