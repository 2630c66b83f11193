//! One record batch's records, decoded by us in one pass, with the checks `kafka-protocol` lacks.
//!
//! `kafka-protocol` 0.18's batch decoder trusts what a batch announces before it has the bytes (a
//! record count it reserves ~200-byte `Record`s for, a header count it reserves an `IndexMap` for,
//! the size a compressed batch inflates to), adds offset and timestamp deltas unchecked, and builds a
//! large `Record` per record (every batch field copied in, headers in a map) where a consumer needs
//! an offset, a timestamp and two slices. So records are decoded here:
//! - a batch is checked whole first: its length, magic 2, its CRC-32C (as `kafka-protocol` and the
//!   Java consumer check it) and its codec;
//! - compressed records are inflated by our own streaming decoders, cut off past a limit (by default
//!   the frame limit, [`MAX_INFLATED`]);
//! - a record count or header count the bytes cannot hold is refused before anything is reserved,
//!   and so is an offset or timestamp past `i64`'s range;
//! - records are read in one pass into [`Record`]s whose key, value and header values are `Bytes`
//!   slices of the fetch buffer (or of the batch's inflated buffer): no copy, and no allocation per
//!   record but its headers'.
//!
//! The fuzz target `fuzz/fuzz_targets/record_batches.rs` asserts that what decoding allocates stays
//! within a multiple of the input; the unit tests decode batches `kafka-protocol`'s encoder wrote.

use std::{io::Read, ops::ControlFlow};

use bytes::Bytes;
use kafka_protocol::{
    compression::{Decompressor, Snappy},
    records::Compression,
};

/// Largest size a batch's records may inflate to: the largest response frame accepted by default.
/// Brokers limit a batch's compressed size (`max.message.bytes`, 1 MiB by default), not what it
/// inflates to; librdkafka similarly refuses to inflate past `receive.message.max.bytes`.
pub const MAX_INFLATED: usize = transport::DEFAULT_MAX_FRAME;

/// Size of the offset and length fields before every batch.
pub(crate) const LOG_OVERHEAD: usize = 12;
/// A v2 batch header, from the base offset up to and including the record count.
pub(crate) const HEADER: usize = 61;
/// The smallest encoded record: length, attributes, timestamp delta, offset delta, key length, value
/// length and header count, one byte each.
const MIN_RECORD: usize = 7;
/// The smallest encoded record header: key length and value length, one byte each.
const MIN_HEADER: usize = 2;
/// Attribute bit of a batch whose timestamps the broker set (`LogAppendTime`).
const ATTR_LOG_APPEND_TIME: u8 = 1 << 3;

/// One record as the fetch path hands it out.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Record {
    /// Its offset.
    pub offset: i64,
    /// Its timestamp, ms since the epoch: the producer's, or under `LogAppendTime` the broker's
    /// (the batch's max timestamp, as the Java consumer reads it).
    pub timestamp: i64,
    /// Its key; `None` for a null key.
    pub key: Option<Bytes>,
    /// Its value; `None` for a null value (a tombstone).
    pub value: Option<Bytes>,
    /// Its headers in the order they were written, keys as sent (Kafka means them as UTF-8).
    pub headers: Vec<Header>,
}

/// One record header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// Its key.
    pub key: Bytes,
    /// Its value; `None` for a null value.
    pub value: Option<Bytes>,
}

/// Decodes the records of `batch`, one whole v2 batch (from its base offset), inflating it to at most
/// `max_inflated` bytes.
pub fn decode_batch(batch: Bytes, max_inflated: usize) -> Result<Vec<Record>, String> {
    let mut records = Vec::new();
    for_each_record(batch, max_inflated, |r| {
        records.push(r);
        ControlFlow::Continue(())
    })?;
    Ok(records)
}

/// Decodes the records of `batch` as [`decode_batch`] does, handing each to `visit` in offset order
/// until it breaks, so the fetch path keeps what it needs without a vector per batch. The batch's
/// length, magic, CRC, codec and record count are checked before its first record is handed out; a
/// record that does not parse ends the walk with an error, after those before it were handed out.
pub fn for_each_record(
    batch: Bytes,
    max_inflated: usize,
    mut visit: impl FnMut(Record) -> ControlFlow<()>,
) -> Result<(), String> {
    if batch.len() < HEADER {
        return Err(format!(
            "{} byte batch is shorter than its header",
            batch.len()
        ));
    }
    if batch[16] != 2 {
        return Err(format!("magic {}; only format v2 is read", batch[16] as i8));
    }
    let be32 =
        |at: usize| i32::from_be_bytes([batch[at], batch[at + 1], batch[at + 2], batch[at + 3]]);
    let be64 = |at: usize| {
        let mut b = [0u8; 8];
        b.copy_from_slice(&batch[at..at + 8]);
        i64::from_be_bytes(b)
    };
    let length = be32(8);
    if usize::try_from(length).ok() != Some(batch.len() - LOG_OVERHEAD) {
        return Err(format!(
            "batch length {length} in a {} byte batch",
            batch.len()
        ));
    }
    let crc = u32::from_be_bytes([batch[17], batch[18], batch[19], batch[20]]);
    let actual = crc32c::crc32c(&batch[21..]);
    if crc != actual {
        return Err(format!("CRC-32C mismatch ({crc:#010x} != {actual:#010x})"));
    }
    // Attributes, an i16: codec in bits 0-2, timestamp type in bit 3.
    let attributes = batch[22];
    let compression = match attributes & 0x7 {
        0 => Compression::None,
        1 => Compression::Gzip,
        2 => Compression::Snappy,
        3 => Compression::Lz4,
        4 => Compression::Zstd,
        other => return Err(format!("unknown compression codec {other}")),
    };
    let base = Base {
        offset: be64(0),
        timestamp: be64(27),
        log_append_time: (attributes & ATTR_LOG_APPEND_TIME != 0).then(|| be64(35)),
    };
    let count = be32(57);
    let count = usize::try_from(count).map_err(|_| format!("negative record count {count}"))?;
    let mut records = batch.slice(HEADER..);
    let data = inflate(&mut records, compression, max_inflated).map_err(|e| e.to_string())?;
    read_records(&data, count, base, &mut visit)
}

/// The timestamp of the first record at or past `offset` in `records`, one partition's records from a
/// Fetch (whole batches, the last one possibly cut by the size limit); else, when the first batch is
/// a v2 batch, its base timestamp. Batches inflate to at most `max_inflated` bytes; reading stops at
/// the first batch that does not decode.
pub fn timestamp_at(records: Bytes, offset: i64, max_inflated: usize) -> Option<i64> {
    let mut rest = records.clone();
    while rest.len() >= LOG_OVERHEAD {
        let length = i32::from_be_bytes([rest[8], rest[9], rest[10], rest[11]]);
        let Some(size) = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .filter(|&size| size <= rest.len())
        else {
            break;
        };
        let Ok(decoded) = decode_batch(rest.split_to(size), max_inflated) else {
            break;
        };
        if let Some(r) = decoded.iter().find(|r| r.offset >= offset) {
            return Some(r.timestamp);
        }
    }
    // RecordBatch v2 header: base offset (8), length (4), leader epoch (4), magic (1), crc (4),
    // attributes (2), last offset delta (4), base timestamp (8).
    let header = records.get(..35)?;
    (header[16] == 2).then(|| {
        let mut ts = [0u8; 8];
        ts.copy_from_slice(&header[27..35]);
        i64::from_be_bytes(ts)
    })
}

/// The records section of a batch, inflated to at most `limit` bytes. Uncompressed records are
/// returned as they are, so their keys and values borrow the fetch buffer.
fn inflate(records: &mut Bytes, compression: Compression, limit: usize) -> anyhow::Result<Bytes> {
    let compressed = std::mem::take(records);
    let capped = |reader: &mut dyn Read| -> anyhow::Result<Bytes> {
        let mut out = Vec::new();
        reader
            .take(u64::try_from(limit)?.saturating_add(1))
            .read_to_end(&mut out)?;
        if out.len() > limit {
            anyhow::bail!("the batch inflates past {limit} bytes");
        }
        Ok(out.into())
    };
    match compression {
        Compression::None => Ok(compressed),
        Compression::Gzip => capped(&mut flate2::read::GzDecoder::new(&compressed[..])),
        Compression::Lz4 => capped(&mut lz4::Decoder::new(&compressed[..])?),
        Compression::Zstd => {
            let mut decoder = zstd::stream::read::Decoder::with_buffer(&compressed[..])?;
            // A frame announces the window it needs, up to 2 GiB, and zstd allocates it (in C, past
            // any count of ours) before inflating a byte. No window larger than the inflated limit,
            // but 8 MiB at least: what a producer at Kafka's levels up to 19 declares.
            let log = usize::BITS - 1 - limit.max(1).leading_zeros();
            decoder.window_log_max(log.clamp(23, 27))?;
            capped(&mut decoder)
        }
        Compression::Snappy => {
            let announced = snappy_len(&compressed)?;
            if announced > limit {
                anyhow::bail!("the batch announces {announced} bytes inflated, past {limit}");
            }
            let mut compressed = compressed;
            Snappy::decompress(&mut compressed, |out| Ok(std::mem::take(out)))
        }
    }
}

/// What snappy will allocate for `data`: the raw format's preamble, or the sum of the xerial
/// framing's blocks' preambles (the layout `kafka-protocol`'s snappy decoder reads).
fn snappy_len(data: &[u8]) -> anyhow::Result<usize> {
    const XERIAL: &[u8; 16] = b"\x82SNAPPY\x00\x00\x00\x00\x01\x00\x00\x00\x01";
    let Some(mut rest) = data.strip_prefix(&XERIAL[..]) else {
        return Ok(snap::raw::decompress_len(data)?);
    };
    let mut total = 0usize;
    while !rest.is_empty() {
        let (size, after) = rest
            .split_first_chunk::<4>()
            .ok_or_else(|| anyhow::anyhow!("truncated snappy block size"))?;
        let size = u32::from_be_bytes(*size) as usize;
        let block = after
            .get(..size)
            .ok_or_else(|| anyhow::anyhow!("truncated snappy block"))?;
        total = total.saturating_add(snap::raw::decompress_len(block)?);
        rest = &after[size..];
    }
    Ok(total)
}

/// What a batch's records add their deltas to.
#[derive(Debug, Clone, Copy)]
struct Base {
    offset: i64,
    timestamp: i64,
    /// The batch's max timestamp when the broker set the timestamps: every record's.
    log_append_time: Option<i64>,
}

/// Reads `count` records of `data`, the records section of one batch (each a varint length, then
/// that many bytes: attributes, timestamp delta, offset delta, key, value, headers), refusing a
/// record count or a header count the bytes cannot hold, and an offset or timestamp past `i64`'s
/// range (or an offset of `i64::MAX`, after which no next offset exists).
fn read_records(
    data: &Bytes,
    count: usize,
    base: Base,
    visit: &mut impl FnMut(Record) -> ControlFlow<()>,
) -> Result<(), String> {
    if count.saturating_mul(MIN_RECORD) > data.len() {
        return Err(format!("{count} records announced in {} bytes", data.len()));
    }
    // A field becomes a slice of `data`: a reference count, no copy.
    let slice = |field: &[u8]| data.slice_ref(field);
    let mut r = Cursor(&data[..]);
    for _ in 0..count {
        let size = r.varint()?;
        let size = usize::try_from(size).map_err(|_| format!("negative record size {size}"))?;
        let mut record = Cursor(r.take(size)?);
        record.take(1)?; // attributes: none are defined for a v2 record
        let timestamp_delta = record.varlong()?;
        let timestamp = base
            .timestamp
            .checked_add(timestamp_delta)
            .ok_or_else(|| format!("timestamp {} + {timestamp_delta} overflows", base.timestamp))?;
        let offset_delta = record.varint()?;
        let offset = base
            .offset
            .checked_add(i64::from(offset_delta))
            .filter(|&offset| offset < i64::MAX)
            .ok_or_else(|| format!("offset {} + {offset_delta} overflows", base.offset))?;
        let key = record.nullable()?.map(slice);
        let value = record.nullable()?.map(slice);
        let headers = record.varint()?;
        let headers =
            usize::try_from(headers).map_err(|_| format!("negative header count {headers}"))?;
        if headers.saturating_mul(MIN_HEADER) > record.0.len() {
            return Err(format!(
                "{headers} record headers announced in {} bytes",
                record.0.len()
            ));
        }
        // Reserved exactly (at most half the record's remaining bytes, checked above).
        let mut list = Vec::new();
        list.reserve_exact(headers);
        for _ in 0..headers {
            let key = record
                .nullable()?
                .ok_or_else(|| "null record header key".to_string())?;
            let value = record.nullable()?.map(slice);
            list.push(Header {
                key: slice(key),
                value,
            });
        }
        let record = Record {
            offset,
            timestamp: base.log_append_time.unwrap_or(timestamp),
            key,
            value,
            headers: list,
        };
        if visit(record).is_break() {
            break;
        }
    }
    Ok(())
}

/// Reads varints as `kafka-protocol`'s decoders do: at most 5 (10) bytes, bits past 32 (64) dropped.
struct Cursor<'a>(&'a [u8]);

impl<'a> Cursor<'a> {
    #[inline]
    fn take(&mut self, n: usize) -> Result<&'a [u8], String> {
        let Some((head, rest)) = self.0.split_at_checked(n) else {
            return Err(short(n, self.0.len()));
        };
        self.0 = rest;
        Ok(head)
    }

    #[inline]
    fn unsigned(&mut self, max_bytes: u32) -> Result<u64, String> {
        // Most of a record's varints are one byte: lengths under 64, deltas in a short batch.
        if let Some((&b, rest)) = self.0.split_first() {
            if b < 0x80 {
                self.0 = rest;
                return Ok(u64::from(b));
            }
        }
        let mut value = 0u64;
        for i in 0..max_bytes {
            let Some((&b, rest)) = self.0.split_first() else {
                return Err(short(1, 0));
            };
            self.0 = rest;
            value |= (u64::from(b) & 0x7f) << (i * 7);
            if b < 0x80 {
                break;
            }
        }
        Ok(value)
    }

    #[inline]
    fn varint(&mut self) -> Result<i32, String> {
        // u32 arithmetic: bits shifted past 32 are lost, as in kafka-protocol's UnsignedVarInt.
        let zigzag = self.unsigned(5)? as u32;
        Ok(((zigzag >> 1) as i32) ^ -((zigzag & 1) as i32))
    }

    #[inline]
    fn varlong(&mut self) -> Result<i64, String> {
        let zigzag = self.unsigned(10)?;
        Ok(((zigzag >> 1) as i64) ^ -((zigzag & 1) as i64))
    }

    /// A varint length, then that many bytes; -1 is null.
    #[inline]
    fn nullable(&mut self) -> Result<Option<&'a [u8]>, String> {
        match self.varint()? {
            -1 => Ok(None),
            n if n < -1 => Err(format!("record field length {n}")),
            n => self.take(n as usize).map(Some),
        }
    }
}

/// The error of a field cut short, out of the hot path.
#[cold]
#[inline(never)]
fn short(announced: usize, left: usize) -> String {
    format!("{announced} byte(s) announced, {left} left")
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    use kafka_protocol::records::{
        Record as Written, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    /// Every codec a batch may use.
    const EVERY_CODEC: [Compression; 5] = [
        Compression::None,
        Compression::Gzip,
        Compression::Snappy,
        Compression::Lz4,
        Compression::Zstd,
    ];

    /// A record as a producer writes it: no key, no headers, a fixed timestamp.
    fn written(offset: i64, value: &[u8]) -> Written {
        Written {
            transactional: false,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id: -1,
            producer_epoch: -1,
            timestamp_type: TimestampType::Creation,
            offset,
            sequence: offset as i32,
            timestamp: 1_700_000_000_000,
            key: None,
            value: Some(Bytes::copy_from_slice(value)),
            headers: Default::default(),
        }
    }

    fn batch(count: i64, compression: Compression, value: &[u8]) -> BytesMut {
        let records: Vec<Written> = (0..count).map(|offset| written(offset, value)).collect();
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            &records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encodes");
        buf
    }

    /// Rewrites the batch's CRC after an edit, as a broker would have written it.
    fn recrc(mut b: BytesMut) -> Bytes {
        let crc = crc32c::crc32c(&b[21..]);
        b[17..21].copy_from_slice(&crc.to_be_bytes());
        b.freeze()
    }

    #[test]
    fn every_codec_within_the_limit_decodes() {
        for codec in EVERY_CODEC {
            let records = decode_batch(batch(5, codec, b"value").freeze(), MAX_INFLATED)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(records.len(), 5, "{codec:?}");
        }
    }

    #[test]
    fn a_batch_inflating_past_the_limit_is_refused_for_every_codec() {
        let zeros = vec![0u8; 64 * 1024];
        for codec in [
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let b = batch(16, codec, &zeros).freeze();
            assert!(b.len() < 64 * 1024, "{codec:?} compresses");
            let err = decode_batch(b.clone(), 256 * 1024).expect_err("too big");
            assert!(err.contains("262144"), "{codec:?}: {err}");
            assert_eq!(decode_batch(b, 2 << 20).expect("fits").len(), 16);
        }
    }

    #[test]
    fn the_timestamp_at_an_offset_or_the_first_batch_s() {
        let mut b = batch(3, Compression::Gzip, b"v");
        // Base offset 10: records 10, 11, 12, all at the batch's timestamp.
        b[..8].copy_from_slice(&10i64.to_be_bytes());
        let b = b.freeze();
        assert_eq!(
            timestamp_at(b.clone(), 11, MAX_INFLATED),
            Some(1_700_000_000_000)
        );
        // Past its records: the base timestamp all the same; cut short: the header's.
        assert_eq!(
            timestamp_at(b.clone(), 99, MAX_INFLATED),
            Some(1_700_000_000_000)
        );
        assert_eq!(
            timestamp_at(b.slice(..40), 11, MAX_INFLATED),
            Some(1_700_000_000_000)
        );
        assert_eq!(timestamp_at(b.slice(..20), 11, MAX_INFLATED), None);
    }

    #[test]
    fn a_record_count_the_bytes_cannot_hold_is_refused() {
        let mut b = batch(2, Compression::None, b"v");
        b[57..61].copy_from_slice(&i32::MAX.to_be_bytes());
        let err = decode_batch(recrc(b), MAX_INFLATED).expect_err("refused");
        assert!(err.contains("2147483647 records"), "{err}");
    }

    #[test]
    fn a_header_count_the_record_cannot_hold_is_refused() {
        // One record of 10 bytes: attributes, timestamp and offset deltas 0, null key and value, then
        // a header count of 2^30 (a zigzag varint) that kafka-protocol would reserve space for.
        let mut b = batch(1, Compression::None, b"");
        b.truncate(HEADER);
        b.put_slice(&[0x14, 0, 0, 0, 1, 1, 0x80, 0x80, 0x80, 0x80, 0x08]);
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        let err = decode_batch(recrc(b), MAX_INFLATED).expect_err("refused");
        assert!(err.contains("record headers announced"), "{err}");
    }

    #[test]
    fn a_timestamp_or_offset_past_i64_is_refused_not_a_panic() {
        let mut b = batch(1, Compression::None, b"v");
        b[27..35].copy_from_slice(&i64::MAX.to_be_bytes()); // first timestamp; the record's delta is 0
        assert!(decode_batch(recrc(b), MAX_INFLATED).is_ok());
        let mut b = batch(2, Compression::None, b"v");
        b[27..35].copy_from_slice(&i64::MAX.to_be_bytes());
        // The second record's timestamp delta: make it 1 (the records carry equal timestamps, 0).
        let second = b.len() - 8;
        assert_eq!(b[second + 2], 0, "the second record's timestamp delta");
        b[second + 2] = 2; // zigzag 1
        let err = decode_batch(recrc(b), MAX_INFLATED).expect_err("overflows");
        assert!(err.contains("overflows"), "{err}");
        let mut b = batch(1, Compression::None, b"v");
        b[..8].copy_from_slice(&i64::MAX.to_be_bytes()); // base offset; the record's delta is 0
        let err = decode_batch(recrc(b), MAX_INFLATED).expect_err("no next offset");
        assert!(err.contains("overflows"), "{err}");
    }

    #[test]
    fn a_snappy_preamble_announcing_gigabytes_is_refused_before_allocating() {
        let mut b = batch(1, Compression::Snappy, b"v");
        b.truncate(HEADER);
        b.put_slice(&[0xff, 0xff, 0xff, 0xff, 0x0f, 0]); // raw snappy announcing 4 GiB - 1
        let length = (b.len() - LOG_OVERHEAD) as i32;
        b[8..12].copy_from_slice(&length.to_be_bytes());
        let err = decode_batch(recrc(b), MAX_INFLATED).expect_err("refused");
        assert!(err.contains("4294967295"), "{err}");
    }

    /// Records with keys, null values, headers and spread timestamps, as a Java producer writes them.
    fn varied() -> Vec<Written> {
        (0..6i64)
            .map(|i| Written {
                timestamp: 1_700_000_000_000 + i * 1_000,
                key: (i % 2 == 0).then(|| Bytes::from(format!("key-{i}"))),
                value: (i != 3).then(|| Bytes::from(format!("{{\"cnt\": \"cnt: {i}\"}}"))),
                headers: (0..i % 3)
                    .map(|h| {
                        let value = (h == 0).then(|| Bytes::from(format!("h{i}")));
                        (format!("header-{h}").into(), value)
                    })
                    .collect(),
                ..written(40 + i, b"")
            })
            .collect()
    }

    #[test]
    fn every_field_decodes_as_kafka_protocol_decodes_it_for_every_codec() {
        for codec in EVERY_CODEC {
            let records = varied();
            let mut buf = BytesMut::new();
            let options = RecordEncodeOptions {
                version: 2,
                compression: codec,
            };
            RecordBatchEncoder::encode(&mut buf, &records, &options).expect("encodes");
            let ours = decode_batch(buf.clone().freeze(), MAX_INFLATED)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            let theirs = kafka_protocol::records::RecordBatchDecoder::decode(&mut buf.freeze())
                .expect("kafka-protocol decodes")
                .records;
            assert_eq!(ours.len(), theirs.len(), "{codec:?}");
            for (o, t) in ours.iter().zip(&theirs) {
                let headers: Vec<(Bytes, Option<Bytes>)> = t
                    .headers
                    .iter()
                    .map(|(k, v)| (Bytes::copy_from_slice(k.as_bytes()), v.clone()))
                    .collect();
                let ours_headers: Vec<(Bytes, Option<Bytes>)> = o
                    .headers
                    .iter()
                    .map(|h| (h.key.clone(), h.value.clone()))
                    .collect();
                assert_eq!(
                    (o.offset, o.timestamp, &o.key, &o.value, ours_headers),
                    (t.offset, t.timestamp, &t.key, &t.value, headers),
                    "{codec:?}"
                );
            }
        }
    }

    #[test]
    fn under_log_append_time_every_record_has_the_batch_s_max_timestamp() {
        let mut b = batch(3, Compression::None, b"v");
        b[22] |= ATTR_LOG_APPEND_TIME;
        b[35..43].copy_from_slice(&1_800_000_000_000i64.to_be_bytes());
        let records = decode_batch(recrc(b), MAX_INFLATED).expect("decodes");
        assert_eq!(
            records.iter().map(|r| r.timestamp).collect::<Vec<_>>(),
            vec![1_800_000_000_000; 3]
        );
    }

    #[test]
    fn a_wrong_crc_a_wrong_length_or_an_unknown_codec_is_refused() {
        let mut b = batch(2, Compression::None, b"value");
        let last = b.len() - 1;
        b[last] ^= 1;
        let err = decode_batch(b.freeze(), MAX_INFLATED).expect_err("crc");
        assert!(err.contains("CRC-32C mismatch"), "{err}");
        let mut b = batch(2, Compression::None, b"value");
        b[22] |= 5;
        let err = decode_batch(recrc(b), MAX_INFLATED).expect_err("codec");
        assert!(err.contains("unknown compression codec 5"), "{err}");
        let mut b = batch(2, Compression::None, b"value");
        b.put_u8(0);
        let err = decode_batch(recrc(b), MAX_INFLATED).expect_err("length");
        assert!(err.contains("batch length"), "{err}");
    }

    #[test]
    fn a_visitor_that_breaks_stops_the_walk() {
        let mut seen = Vec::new();
        for_each_record(
            batch(5, Compression::Lz4, b"v").freeze(),
            MAX_INFLATED,
            |r| {
                seen.push(r.offset);
                if r.offset == 2 {
                    ControlFlow::Break(())
                } else {
                    ControlFlow::Continue(())
                }
            },
        )
        .expect("decodes");
        assert_eq!(seen, vec![0, 1, 2]);
    }
}
