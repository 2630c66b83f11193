//! The ConsumerProtocol bytes inside JoinGroup (a member's subscription) and SyncGroup (its assignment).
//!
//! On the wire both are an **int16 version followed by the struct at that version**. `kafka-protocol`
//! encodes the struct without the prefix, so the prefix is written and read here. A version newer than
//! we know is parsed with the newest layout we know (v3): later versions only append fields, which is
//! how Java stays compatible too. An assignment of zero bytes means "no partitions" (brokers send it to
//! members the leader left out).

use std::collections::BTreeMap;

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        consumer_protocol_assignment, consumer_protocol_subscription, ConsumerProtocolAssignment,
        ConsumerProtocolSubscription, TopicName,
    },
    protocol::{Decodable, Encodable, StrBytes},
};

use crate::TopicPartition;

/// The newest ConsumerProtocol version whose layout we know.
pub const NEWEST_VERSION: i16 = 3;

/// The longest topic name Kafka accepts (`Topic.MAX_NAME_LENGTH`). A longer one is refused: every
/// decoded partition carries its topic's name, so a 32 KiB name shared by a few thousand 4-byte
/// partition numbers would otherwise inflate a small subscription or assignment a thousandfold.
pub const MAX_TOPIC_NAME: usize = 249;

/// Bytes that are not a valid subscription or assignment.
#[derive(Debug, thiserror::Error)]
#[error("invalid consumer protocol {what}: {reason}")]
pub struct CodecError {
    /// `subscription` or `assignment`.
    what: &'static str,
    /// What went wrong.
    reason: String,
}

/// What a member sends in JoinGroup: the topics it wants and, from v1, what it owns now.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Subscription {
    /// Topics the member subscribes to.
    pub topics: Vec<String>,
    /// Opaque assignor data (sticky assignors keep state here).
    pub user_data: Option<Bytes>,
    /// Partitions the member owns now (v1+), for sticky and cooperative assignors.
    pub owned_partitions: Vec<TopicPartition>,
    /// Generation of `owned_partitions` (v2+); -1 when unknown.
    pub generation_id: i32,
    /// Rack of the member (v3+), for rack-aware assignment.
    pub rack_id: Option<String>,
}

/// Encodes `sub` as version [`NEWEST_VERSION`] with its version prefix. Topics and owned partitions
/// are sorted first, as Java's `ConsumerProtocol.serializeSubscription` sorts them, so a member sends
/// the bytes a Java member with the same state sends.
pub fn encode_subscription(sub: &Subscription) -> Bytes {
    let mut owned: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
    for tp in &sub.owned_partitions {
        owned.entry(&tp.topic).or_default().push(tp.partition);
    }
    for partitions in owned.values_mut() {
        partitions.sort_unstable();
    }
    let mut topics: Vec<&String> = sub.topics.iter().collect();
    topics.sort();
    let msg = ConsumerProtocolSubscription::default()
        .with_topics(
            topics
                .into_iter()
                .map(|t| StrBytes::from_string(t.clone()))
                .collect(),
        )
        .with_user_data(sub.user_data.clone())
        .with_owned_partitions(
            owned
                .into_iter()
                .map(|(topic, partitions)| {
                    consumer_protocol_subscription::TopicPartition::default()
                        .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                        .with_partitions(partitions)
                })
                .collect(),
        )
        .with_generation_id(sub.generation_id)
        .with_rack_id(sub.rack_id.clone().map(StrBytes::from_string));
    encode_versioned(&msg, NEWEST_VERSION)
}

/// Decodes a subscription of any version (zero bytes: an empty subscription).
pub fn decode_subscription(bytes: &[u8]) -> Result<Subscription, CodecError> {
    let err = |reason: String| CodecError {
        what: "subscription",
        reason,
    };
    if bytes.is_empty() {
        return Ok(Subscription {
            generation_id: -1,
            ..Subscription::default()
        });
    }
    let (version, mut body) = split_version(bytes).map_err(err)?;
    check_lengths(&body, Layout::Subscription(version)).map_err(err)?;
    let msg =
        ConsumerProtocolSubscription::decode(&mut body, version).map_err(|e| err(e.to_string()))?;
    Ok(Subscription {
        topics: msg.topics.iter().map(|t| t.as_str().to_string()).collect(),
        user_data: msg.user_data,
        owned_partitions: msg
            .owned_partitions
            .iter()
            .flat_map(|tp| {
                tp.partitions
                    .iter()
                    .map(|&p| TopicPartition::new(tp.topic.0.as_str(), p))
            })
            .collect(),
        generation_id: if version >= 2 { msg.generation_id } else { -1 },
        rack_id: msg.rack_id.map(|r| r.as_str().to_string()),
    })
}

/// Encodes an assignment as version [`NEWEST_VERSION`] the way Java's
/// `ConsumerProtocol.serializeAssignment` does: topics in the order they first appear in
/// `partitions`, each topic's partitions in list order (so sorted input gives sorted bytes).
pub fn encode_assignment(partitions: &[TopicPartition]) -> Bytes {
    let mut by_topic: Vec<(&str, Vec<i32>)> = Vec::new();
    for tp in partitions {
        match by_topic.iter_mut().find(|(t, _)| *t == tp.topic) {
            Some((_, ps)) => ps.push(tp.partition),
            None => by_topic.push((&tp.topic, vec![tp.partition])),
        }
    }
    let msg = ConsumerProtocolAssignment::default().with_assigned_partitions(
        by_topic
            .into_iter()
            .map(|(topic, partitions)| {
                consumer_protocol_assignment::TopicPartition::default()
                    .with_topic(TopicName(StrBytes::from_string(topic.to_string())))
                    .with_partitions(partitions)
            })
            .collect(),
    );
    encode_versioned(&msg, NEWEST_VERSION)
}

/// Decodes an assignment of any version; zero bytes is "no partitions". Sorted, duplicates removed.
pub fn decode_assignment(bytes: &[u8]) -> Result<Vec<TopicPartition>, CodecError> {
    let err = |reason: String| CodecError {
        what: "assignment",
        reason,
    };
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let (version, mut body) = split_version(bytes).map_err(err)?;
    check_lengths(&body, Layout::Assignment).map_err(err)?;
    let msg =
        ConsumerProtocolAssignment::decode(&mut body, version).map_err(|e| err(e.to_string()))?;
    let mut out: Vec<TopicPartition> = msg
        .assigned_partitions
        .iter()
        .flat_map(|tp| {
            tp.partitions
                .iter()
                .map(|&p| TopicPartition::new(tp.topic.0.as_str(), p))
        })
        .collect();
    out.sort();
    out.dedup();
    Ok(out)
}

fn encode_versioned<M: Encodable>(msg: &M, version: i16) -> Bytes {
    let mut buf = BytesMut::new();
    buf.put_i16(version);
    // Encoding our own, valid message at a version it supports cannot fail; should it ever, an empty
    // body decodes as "nothing" on the other side rather than as garbage.
    if msg.encode(&mut buf, version).is_err() {
        buf.truncate(2);
    }
    buf.freeze()
}

fn split_version(bytes: &[u8]) -> Result<(i16, Bytes), String> {
    if bytes.len() < 2 {
        return Err(format!(
            "{} byte(s), too short for the version",
            bytes.len()
        ));
    }
    let mut buf = Bytes::copy_from_slice(bytes);
    let version = buf.get_i16();
    if version < 0 {
        return Err(format!("negative version {version}"));
    }
    Ok((version.min(NEWEST_VERSION), buf))
}

enum Layout {
    Subscription(i16),
    Assignment,
}

/// Walks the (non-flexible) ConsumerProtocol layout checking that every length prefix fits in the
/// bytes that follow and that topic names are at most [`MAX_TOPIC_NAME`] bytes. `kafka-protocol`
/// pre-allocates whatever an array length claims, so a corrupt or hostile member's 12 bytes could
/// otherwise make the leader allocate gigabytes and abort.
fn check_lengths(body: &[u8], layout: Layout) -> Result<(), String> {
    let mut r = Reader(body);
    let topic_partitions = |r: &mut Reader<'_>| -> Result<(), String> {
        for _ in 0..r.array_len(2 + 4)? {
            r.topic()?;
            let n = r.array_len(4)?;
            r.skip(n * 4)?;
        }
        Ok(())
    };
    match layout {
        Layout::Subscription(version) => {
            for _ in 0..r.array_len(2)? {
                r.topic()?;
            }
            r.bytes()?;
            if version >= 1 {
                topic_partitions(&mut r)?;
            }
            if version >= 2 {
                r.skip(4)?;
            }
            if version >= 3 {
                r.string()?;
            }
        }
        Layout::Assignment => {
            topic_partitions(&mut r)?;
            r.bytes()?;
        }
    }
    Ok(())
}

struct Reader<'a>(&'a [u8]);

impl Reader<'_> {
    fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.0.len() {
            return Err(format!("{n} byte(s) announced, {} left", self.0.len()));
        }
        self.0 = &self.0[n..];
        Ok(())
    }

    fn int(&mut self, width: usize) -> Result<i64, String> {
        let bytes = self.0.get(..width).ok_or("truncated length")?;
        let value = bytes.iter().fold(0i64, |acc, &b| (acc << 8) | i64::from(b));
        self.0 = &self.0[width..];
        // Sign-extend: lengths are signed, -1 meaning null.
        let shift = 64 - 8 * width as u32;
        Ok((value << shift) >> shift)
    }

    /// An int32 array length whose elements take at least `min_element` bytes each.
    fn array_len(&mut self, min_element: usize) -> Result<usize, String> {
        let n = self.int(4)?;
        if n < 0 {
            return Ok(0);
        }
        let n = n as usize;
        if n.saturating_mul(min_element) > self.0.len() {
            return Err(format!(
                "array of {n} announced, only {} byte(s) left",
                self.0.len()
            ));
        }
        Ok(n)
    }

    /// An int16-prefixed (nullable) string.
    fn string(&mut self) -> Result<(), String> {
        let n = self.int(2)?;
        self.skip(n.max(0) as usize)
    }

    /// A topic name: an int16-prefixed string of at most [`MAX_TOPIC_NAME`] bytes.
    fn topic(&mut self) -> Result<(), String> {
        let n = self.int(2)?;
        if n > MAX_TOPIC_NAME as i64 {
            return Err(format!(
                "topic name of {n} bytes, longer than Kafka's {MAX_TOPIC_NAME}"
            ));
        }
        self.skip(n.max(0) as usize)
    }

    /// An int32-prefixed (nullable) byte array.
    fn bytes(&mut self) -> Result<(), String> {
        let n = self.int(4)?;
        self.skip(n.max(0) as usize)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;

    #[test]
    fn subscription_round_trips() {
        let sub = Subscription {
            topics: vec!["my_new_topic".into()],
            user_data: None,
            owned_partitions: vec![TopicPartition::new("my_new_topic", 3)],
            generation_id: 7,
            rack_id: Some("zone-a".into()),
        };
        let bytes = encode_subscription(&sub);
        assert_eq!(&bytes[..2], &[0, 3], "int16 version prefix");
        assert_eq!(decode_subscription(&bytes).expect("decodes"), sub);
    }

    #[test]
    fn kafka_python_v0_subscription_decodes() {
        // version 0, topics ["t"], user_data b"" (kafka-python sends an empty, not null, user data).
        let bytes = [0, 0, 0, 0, 0, 1, 0, 1, b't', 0, 0, 0, 0];
        let sub = decode_subscription(&bytes).expect("decodes");
        assert_eq!(sub.topics, vec!["t".to_string()]);
        assert_eq!(sub.generation_id, -1);
        assert!(sub.owned_partitions.is_empty());
    }

    #[test]
    fn a_newer_version_is_read_with_the_newest_layout() {
        let mut bytes = encode_subscription(&Subscription {
            topics: vec!["t".into()],
            generation_id: 1,
            ..Subscription::default()
        })
        .to_vec();
        bytes[1] = 9; // version 9, unknown to us
        bytes.extend_from_slice(&[1, 2, 3]); // fields a future version appended
        assert_eq!(
            decode_subscription(&bytes).expect("decodes").topics,
            vec!["t".to_string()]
        );
    }

    #[test]
    fn assignment_round_trips_sorted() {
        let parts = vec![
            TopicPartition::new("b", 1),
            TopicPartition::new("a", 2),
            TopicPartition::new("a", 0),
        ];
        let decoded = decode_assignment(&encode_assignment(&parts)).expect("decodes");
        assert_eq!(
            decoded,
            vec![
                TopicPartition::new("a", 0),
                TopicPartition::new("a", 2),
                TopicPartition::new("b", 1)
            ]
        );
    }

    #[test]
    fn empty_assignment_bytes_mean_no_partitions() {
        assert!(decode_assignment(&[]).expect("empty is valid").is_empty());
    }

    #[test]
    fn huge_announced_lengths_are_errors_not_allocations() {
        // version 0, then an array of 2^31-1 topics in 4 bytes.
        assert!(decode_subscription(&[0, 0, 0x7f, 0xff, 0xff, 0xff]).is_err());
        assert!(decode_assignment(&[0, 1, 0x7f, 0xff, 0xff, 0xff]).is_err());
    }

    #[test]
    fn a_topic_name_longer_than_kafka_allows_is_refused() {
        let long = "t".repeat(MAX_TOPIC_NAME + 1);
        let parts = vec![TopicPartition::new(long.as_str(), 0)];
        let err = decode_assignment(&encode_assignment(&parts)).expect_err("too long");
        assert!(err.to_string().contains("250 bytes"), "{err}");
        let sub = Subscription {
            topics: vec![long],
            ..Subscription::default()
        };
        assert!(decode_subscription(&encode_subscription(&sub)).is_err());
        let longest = "t".repeat(MAX_TOPIC_NAME);
        let parts = vec![TopicPartition::new(longest.as_str(), 0)];
        assert_eq!(
            decode_assignment(&encode_assignment(&parts)).expect("fits"),
            parts
        );
    }

    #[test]
    fn truncated_bytes_are_errors() {
        assert!(decode_assignment(&[0]).is_err());
        assert!(decode_assignment(&[0, 0, 0, 0, 0, 5]).is_err());
        assert!(decode_subscription(&[255, 255, 0]).is_err());
    }

    proptest! {
        #[test]
        fn decoders_never_panic(bytes in proptest::collection::vec(any::<u8>(), 0..256)) {
            let _ = decode_subscription(&bytes);
            let _ = decode_assignment(&bytes);
        }

        #[test]
        fn assignment_round_trips_for_any_partitions(
            parts in proptest::collection::btree_set(("[a-z]{1,8}", 0i32..64), 0..40)
        ) {
            let parts: Vec<TopicPartition> = parts.into_iter().map(|(t, p)| TopicPartition::new(t, p)).collect();
            prop_assert_eq!(decode_assignment(&encode_assignment(&parts)).expect("decodes"), parts);
        }
    }
}
