//! The length check every response body passes before `kafka-protocol` decodes it.
//!
//! `kafka-protocol` 0.18 decodes an array by reading its count and calling `Vec::with_capacity(count)`
//! before it reads any element, so a 20-byte body announcing 2^31 elements of a 100-byte struct asks
//! the allocator for 200 GiB and aborts the process: no error to return, no connection to drop. The
//! frame limit does not help, the count being independent of the frame's size. So [`check_lengths`]
//! first walks the body exactly as `kafka-protocol` will decode it (the walks in `walk.rs` are
//! generated from its decoders by `scripts/gen-length-walk.py`) and refuses a body with an array
//! count that its remaining bytes cannot hold, each element taking at least its smallest encoding.
//! Past that check every `with_capacity` is bounded by the frame: the fuzz target
//! `fuzz/fuzz_targets/response.rs` asserts it under a counting allocator.

use kafka_protocol::messages::ApiKey;

mod walk;

/// Checks that `body` (a response body after its header) of `api` at `version` announces no array
/// longer than its remaining bytes can hold. An API without a generated walk is refused too, so a new
/// API cannot slip past the check unnoticed.
pub fn check_lengths(api: ApiKey, version: i16, body: &[u8]) -> Result<(), String> {
    walk::walk(api, version, body).unwrap_or_else(|| {
        Err(format!(
            "no length check for {api:?} responses: add it to scripts/gen-length-walk.py"
        ))
    })
}

/// A cursor over the body with the primitive reads of `kafka-protocol`'s decoders.
pub(crate) struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    pub(crate) fn new(body: &'a [u8]) -> Self {
        Self(body)
    }

    /// `n` bytes `kafka-protocol` reads or skips.
    pub(crate) fn skip(&mut self, n: usize) -> Result<(), String> {
        if n > self.0.len() {
            return Err(format!("{n} byte(s) announced, {} left", self.0.len()));
        }
        self.0 = &self.0[n..];
        Ok(())
    }

    /// A fixed-size field.
    pub(crate) fn fixed(&mut self, n: usize) -> Result<(), String> {
        self.skip(n).map_err(|_| "truncated".to_string())
    }

    fn take<const N: usize>(&mut self) -> Result<[u8; N], String> {
        let (head, rest) = self.0.split_first_chunk::<N>().ok_or("truncated")?;
        self.0 = rest;
        Ok(*head)
    }

    /// The presence byte of an optional struct: `kafka-protocol` decodes the struct when it is 1.
    pub(crate) fn present(&mut self) -> Result<bool, String> {
        let [b] = self.take::<1>()?;
        Ok(b as i8 == 1)
    }

    /// `kafka-protocol`'s unsigned varint: at most 5 bytes, the bits past 32 dropped as it drops them.
    pub(crate) fn uvarint(&mut self) -> Result<u32, String> {
        let mut value = 0u32;
        for i in 0..5 {
            let [b] = self.take::<1>()?;
            value |= (u32::from(b) & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    /// An int16-prefixed, possibly null, string.
    pub(crate) fn string(&mut self) -> Result<(), String> {
        match i16::from_be_bytes(self.take()?) {
            -1 => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            n => Err(format!("string length {n}")),
        }
    }

    /// A varint-prefixed (length + 1, 0 for null) string.
    pub(crate) fn compact_string(&mut self) -> Result<(), String> {
        match self.uvarint()? {
            0 => Ok(()),
            n => self.skip((n - 1) as usize),
        }
    }

    /// An int32-prefixed, possibly null, byte string.
    pub(crate) fn bytes(&mut self) -> Result<(), String> {
        match i32::from_be_bytes(self.take()?) {
            -1 => Ok(()),
            n if n >= 0 => self.skip(n as usize),
            n => Err(format!("bytes length {n}")),
        }
    }

    /// A varint-prefixed (length + 1, 0 for null) byte string.
    pub(crate) fn compact_bytes(&mut self) -> Result<(), String> {
        self.compact_string()
    }

    /// An int32-counted, possibly null, array whose elements take at least `min` bytes each.
    pub(crate) fn array(
        &mut self,
        min: usize,
        element: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        match i32::from_be_bytes(self.take()?) {
            -1 => Ok(()),
            n if n >= 0 => self.elements(n as usize, min, element),
            n => Err(format!("array count {n}")),
        }
    }

    /// A varint-counted (count + 1, 0 for null) array whose elements take at least `min` bytes each.
    pub(crate) fn compact_array(
        &mut self,
        min: usize,
        element: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        match self.uvarint()? {
            0 => Ok(()),
            n => self.elements((n - 1) as usize, min, element),
        }
    }

    fn elements(
        &mut self,
        count: usize,
        min: usize,
        mut element: impl FnMut(&mut Self) -> Result<(), String>,
    ) -> Result<(), String> {
        if count.saturating_mul(min.max(1)) > self.0.len() {
            return Err(format!(
                "array of {count} announced, only {} byte(s) left",
                self.0.len()
            ));
        }
        for _ in 0..count {
            element(self)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::BytesMut;
    use kafka_protocol::{
        messages::{
            fetch_response::{FetchableTopicResponse, PartitionData},
            metadata_response::{MetadataResponseBroker, MetadataResponsePartition},
            FetchResponse, MetadataResponse, TopicName,
        },
        protocol::{Encodable, StrBytes},
    };

    fn encoded(msg: &impl Encodable, version: i16) -> BytesMut {
        let mut buf = BytesMut::new();
        msg.encode(&mut buf, version).expect("encodes");
        buf
    }

    fn metadata() -> MetadataResponse {
        let partition = MetadataResponsePartition::default()
            .with_partition_index(3)
            .with_replica_nodes(vec![1.into(), 2.into()])
            .with_isr_nodes(vec![1.into()]);
        MetadataResponse::default()
            .with_brokers(vec![MetadataResponseBroker::default()
                .with_host(StrBytes::from_static_str("localhost"))
                .with_port(9092)
                .with_rack(Some(StrBytes::from_static_str("a")))])
            .with_topics(vec![
                kafka_protocol::messages::metadata_response::MetadataResponseTopic::default()
                    .with_name(Some(TopicName(StrBytes::from_static_str("t"))))
                    .with_partitions(vec![partition.clone(), partition]),
            ])
    }

    #[test]
    fn what_kafka_protocol_encodes_passes_at_every_version_we_speak() {
        for version in 1..=12 {
            let body = encoded(&metadata(), version);
            check_lengths(ApiKey::Metadata, version, &body)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
        let fetch =
            FetchResponse::default().with_responses(vec![FetchableTopicResponse::default()
                .with_topic(TopicName(StrBytes::from_static_str("t")))
                .with_partitions(vec![PartitionData::default()
                    .with_records(Some(bytes::Bytes::from_static(b"records")))])]);
        for version in 4..=12 {
            let body = encoded(&fetch, version);
            check_lengths(ApiKey::Fetch, version, &body)
                .unwrap_or_else(|e| panic!("v{version}: {e}"));
        }
    }

    #[test]
    fn a_count_the_bytes_cannot_hold_is_refused() {
        // Metadata v12: throttle time, then a compact array of brokers announcing 2^28 of them.
        let body = [0, 0, 0, 0, 0x80, 0x80, 0x80, 0x80, 0x01];
        let err = check_lengths(ApiKey::Metadata, 12, &body).expect_err("refused");
        assert!(err.contains("array of 268435455 announced"), "{err}");
        // Metadata v1: an int32 count of 2^31 - 1 brokers.
        let body = [0x7f, 0xff, 0xff, 0xff];
        assert!(check_lengths(ApiKey::Metadata, 1, &body).is_err());
        // Nested: one topic whose partition array is too long for what follows.
        let mut body = encoded(&metadata(), 12).to_vec();
        let valid = body.clone();
        assert!(check_lengths(ApiKey::Metadata, 12, &valid).is_ok());
        let at = body.len() - 2; // the topic array sits before the tagged fields; damage the end
        body.truncate(at);
        assert!(check_lengths(ApiKey::Metadata, 12, &body).is_err());
    }

    #[test]
    fn an_api_without_a_walk_is_refused() {
        let err = check_lengths(ApiKey::Produce, 9, &[]).expect_err("no walk");
        assert!(err.contains("Produce"), "{err}");
    }
}
