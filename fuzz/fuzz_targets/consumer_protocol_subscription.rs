//! `group::codec::decode_subscription`: the bytes every member sends in JoinGroup and the leader
//! decodes for all of them. No panic, memory within the bound, and a round trip: what decodes
//! re-encodes (as Java would, sorted) to bytes that decode to the same subscription, and encoding
//! that again gives the same bytes.
#![no_main]

use group::codec::{decode_subscription, encode_subscription, Subscription};
use kafka_lag_lab_fuzz::bounded;
use libfuzzer_sys::fuzz_target;

/// Each 4-byte partition number on the wire decodes to a 32-byte `TopicPartition` with its own copy
/// of the topic's name (at most 249 bytes, `group::codec::MAX_TOPIC_NAME`), in a `Vec` that grows by
/// doubling (old and new buffers live at once while it moves), beside `kafka-protocol`'s `Vec<i32>`
/// and the input's copy: (249 + 2 x 32 + 4 + 4) / 4 = 80 at most, measured 78 on a crafted
/// 12 KB assignment of 3000 partitions of one 249-byte topic.
const FACTOR: usize = 96;
const SLACK: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let Ok(sub) = bounded("decode_subscription", data.len(), FACTOR, SLACK, || {
        decode_subscription(data)
    }) else {
        return;
    };
    let bytes = encode_subscription(&sub);
    let again = decode_subscription(&bytes)
        .unwrap_or_else(|e| panic!("{sub:?} encoded as {bytes:?} does not decode: {e}"));
    assert_eq!(again, sorted(sub), "round trip through {bytes:?}");
    assert_eq!(encode_subscription(&again), bytes, "encoding is stable");
});

/// What encoding does to a subscription: topics sorted, owned partitions grouped by topic in topic
/// order and sorted within it.
fn sorted(mut sub: Subscription) -> Subscription {
    sub.topics.sort();
    sub.owned_partitions.sort();
    sub
}
