//! `group::codec::decode_assignment`: the bytes each member gets back from SyncGroup. No panic,
//! memory within the bound, and a round trip: the decoded (sorted, deduplicated) partitions encode
//! to bytes that decode to the same partitions, and encoding those again gives the same bytes.
#![no_main]

use group::codec::{decode_assignment, encode_assignment};
use kafka_lag_lab_fuzz::bounded;
use libfuzzer_sys::fuzz_target;

/// As for subscriptions: each 4-byte partition number decodes to a `TopicPartition` of 32 bytes, in a
/// `Vec` that grows by doubling, with its own copy of a topic name of at most 249 bytes: at most 80
/// times the input (78 measured on 3000 partitions of one 249-byte topic).
const FACTOR: usize = 96;
const SLACK: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(partitions) = bounded("decode_assignment", data.len(), FACTOR, SLACK, || {
        decode_assignment(data)
    }) else {
        return;
    };
    let bytes = encode_assignment(&partitions);
    let again = decode_assignment(&bytes)
        .unwrap_or_else(|e| panic!("{partitions:?} encoded as {bytes:?} does not decode: {e}"));
    assert_eq!(again, partitions, "round trip through {bytes:?}");
    assert_eq!(encode_assignment(&again), bytes, "encoding is stable");
});
