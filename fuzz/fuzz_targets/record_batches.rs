//! The fetch path's record decoding, `fetch::decode::decode` (batch headers and records, both read by
//! us), and the exporter's `fetch::batch::timestamp_at`.
//!
//! Input: four control bytes, then one partition's `records` as a Fetch returns them.
//! - byte 0: bit 0 read_committed, bit 1 recompute every batch's CRC first (a mutated batch would
//!   otherwise stop at the checksum), bits 2-3 how many aborted transactions follow (0-3);
//! - byte 1: the fetch offset; byte 2: the last stable offset (255: none, -1);
//! - byte 3: unused, then 2 bytes (producer id, first offset) per aborted transaction.
//!
//! Checked: no panic; memory within the bound; and what `decode` promises: records in increasing
//! offset order, none before the fetch offset or at or past the next one, and
//! under read_committed none at or past the last stable offset.
#![no_main]

use bytes::Bytes;
use fetch::{decode::decode_limited, Aborted, IsolationLevel};
use kafka_lag_lab_fuzz::{bounded, fix_batch_crcs};
use libfuzzer_sys::fuzz_target;

/// Batches may inflate to this many times the input here (the production limit, 64 MiB, would make
/// any bound vacuous); beyond it they are refused, which is the behaviour under test.
const INFLATE: usize = 4;
/// Per inflated byte: a 104-byte `Record` for at least 7 encoded bytes, in a vector that may have
/// doubled (30), or a 64-byte `Header` for a record header of at least 2 (32), plus the inflated
/// buffer's own growth; inflated bytes are at most `INFLATE` times the input, which is held too.
const FACTOR: usize = 50 * (INFLATE + 1);
/// Decompressor state that does not grow with the input (flate2's 43 KB inflate state and 32 KB
/// reader buffer, lz4's and snappy's buffers): 138 KB measured on the corpus.
const SLACK: usize = 256 * 1024;

fuzz_target!(|data: &[u8]| {
    let [flags, fetch_offset, stable, _, rest @ ..] = data else {
        return;
    };
    let isolation = if flags & 1 == 0 {
        IsolationLevel::ReadUncommitted
    } else {
        IsolationLevel::ReadCommitted
    };
    let fetch_offset = i64::from(*fetch_offset);
    let last_stable_offset = if *stable == 255 {
        -1
    } else {
        i64::from(*stable)
    };
    let count = usize::from((flags >> 2) & 3).min(rest.len() / 2);
    let (list, records) = rest.split_at(count * 2);
    let aborted: Vec<Aborted> = list
        .chunks(2)
        .map(|a| Aborted {
            producer_id: i64::from(a[0]),
            first_offset: i64::from(a[1]),
        })
        .collect();
    let mut records = records.to_vec();
    if flags & 2 != 0 {
        fix_batch_crcs(&mut records);
    }
    let records = Bytes::from(records);
    let len = records.len();
    let limit = INFLATE * len;

    let decoded = bounded("decode", len, FACTOR, SLACK, || {
        decode_limited(
            records.clone(),
            fetch_offset,
            isolation,
            &aborted,
            last_stable_offset,
            limit,
        )
    });
    if let Ok(d) = decoded {
        let mut previous = fetch_offset - 1;
        for r in &d.records {
            assert!(r.offset > previous, "offsets {previous} then {}", r.offset);
            assert!(
                r.offset < d.next_offset,
                "{} at or past next {}",
                r.offset,
                d.next_offset
            );
            if isolation == IsolationLevel::ReadCommitted && last_stable_offset >= 0 {
                assert!(r.offset < last_stable_offset, "{} past the LSO", r.offset);
            }
            previous = r.offset;
        }
        assert!(
            d.next_offset >= fetch_offset,
            "next {} went back",
            d.next_offset
        );
    }

    bounded("timestamp_at", len, FACTOR, SLACK, || {
        fetch::batch::timestamp_at(records.clone(), fetch_offset, limit)
    });
});
