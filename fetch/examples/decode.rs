//! Decodes one Fetch response's worth of seed-shaped records again and again, for profiling the
//! fetch path's decode without a broker (`perf record`, or `valgrind --tool=callgrind`, whose
//! instruction counts are stable on a noisy machine):
//!
//! ```text
//! cargo run --release -p fetch --example decode -- [ROUNDS]
//! ```
//!
//! The records are those the bench pre-fills: uncompressed batches of 5 000 values
//! `{"cnt":"cnt: N","producer":"prefill","seq":N}`, 1 MiB of them, what one partition of one
//! Fetch returns at the consumer's default `max.partition.fetch.bytes`. Prints records per second.

use std::time::Instant;

use bytes::{Bytes, BytesMut};
use fetch::{decode::decode, IsolationLevel};
use kafka_protocol::records::{
    Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
};

fn main() -> anyhow::Result<()> {
    let rounds: u32 = std::env::args().nth(1).map_or(Ok(20), |r| r.parse())?;
    let mut buf = BytesMut::new();
    let mut offset = 0i64;
    while buf.len() < 1024 * 1024 {
        let records: Vec<Record> = (offset..offset + 5000)
            .map(|o| Record {
                transactional: false,
                control: false,
                delete_horizon: false,
                partition_leader_epoch: 0,
                producer_id: -1,
                producer_epoch: -1,
                timestamp_type: TimestampType::Creation,
                offset: o,
                // Offset - sequence constant: kafka-protocol's encoder starts a batch where it changes.
                sequence: o as i32,
                timestamp: 1_700_000_000_000 + o / 100,
                key: None,
                value: Some(Bytes::from(format!(
                    r#"{{"cnt":"cnt: {o}","producer":"prefill","seq":{o}}}"#
                ))),
                headers: Default::default(),
            })
            .collect();
        let options = RecordEncodeOptions {
            version: 2,
            compression: Compression::None,
        };
        RecordBatchEncoder::encode(&mut buf, &records, &options)?;
        offset += 5000;
    }
    let fetched = buf.freeze();
    let started = Instant::now();
    let mut total = 0usize;
    for _ in 0..rounds {
        let decoded = decode(fetched.clone(), 0, IsolationLevel::ReadUncommitted, &[], -1)?;
        total += decoded.records.len();
    }
    let secs = started.elapsed().as_secs_f64();
    println!(
        "{total} records in {secs:.3} s: {:.0} records/s ({} bytes a round)",
        total as f64 / secs,
        fetched.len()
    );
    Ok(())
}
