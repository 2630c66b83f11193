//! The seed's producer written with rust-rdkafka, as a Rust user would: one JSON message per
//! `INTERVAL_MS`, no key, each one flushed (acknowledged) before the next, librdkafka defaults.
//!
//! Prints `acked <seq>` on stdout after each acknowledgement (the harness times the first one).
//! Stops on SIGTERM/SIGINT (the default action) or after `BENCH_DEADLINE_S` seconds.

use std::{
    io::Write,
    time::{Duration, Instant},
};

use rdkafka::{
    config::ClientConfig,
    producer::{BaseProducer, BaseRecord, Producer},
};

fn env(name: &str, default: &str) -> String {
    std::env::var(name).unwrap_or_else(|_| default.to_string())
}

fn main() -> anyhow::Result<()> {
    let brokers = env("KAFKA_BROKERS", "127.0.0.1:9092");
    let topic = env("TOPIC", "my_new_topic");
    let id = env("PRODUCER_ID", "rdkafka");
    let interval = Duration::from_millis(env("INTERVAL_MS", "1000").parse()?);
    let deadline = Instant::now() + Duration::from_secs(env("BENCH_DEADLINE_S", "900").parse()?);
    let producer: BaseProducer = ClientConfig::new()
        .set("bootstrap.servers", &brokers)
        .create()?;
    let mut seq: u64 = 1;
    let mut next = Instant::now();
    while Instant::now() < deadline {
        let value = format!(r#"{{"cnt":"cnt: {seq}","producer":"{id}","seq":{seq}}}"#);
        let record: BaseRecord<'_, (), String> = BaseRecord::to(&topic).payload(&value);
        if let Err((err, _)) = producer.send(record) {
            eprintln!("send failed: {err}");
        } else if let Err(err) = producer.flush(Duration::from_secs(10)) {
            eprintln!("flush failed: {err}");
        } else {
            let mut out = std::io::stdout().lock();
            writeln!(out, "acked {seq}")?;
            out.flush()?;
            seq += 1;
        }
        next += interval;
        if let Some(wait) = next.checked_duration_since(Instant::now()) {
            std::thread::sleep(wait);
        } else {
            next = Instant::now();
        }
    }
    Ok(())
}
