//! What one partition's fetched bytes mean to a consumer: the records to hand out and the offset to
//! fetch next. Sans-io, so every case (transaction markers, aborted transactions, compaction gaps, a
//! batch cut off by the size limit) is a unit test.
//!
//! The rules are those of Java's `CompletedFetch`:
//! - the next fetch offset moves past every batch looked at, using the batch header's last offset
//!   (base offset + last offset delta), which record format v2 keeps even when compaction removed the
//!   batch's last records: a fetch never lands on the same batch twice;
//! - control batches (transaction markers) are never handed out, but they are passed;
//! - under `read_committed`, a transactional batch of a producer whose transaction the broker listed as
//!   aborted (producer id, first offset) is skipped, from that first offset until the producer's abort
//!   marker; nothing at or past the last stable offset is handed out.
//!
//! Batch headers are read here rather than by `kafka-protocol`, which drops the last offset delta and
//! fails on the partial batch a size-limited fetch ends with. Records are decoded by
//! [`crate::batch`], straight into the output: keys and values of uncompressed batches borrow the
//! fetch buffer; compressed batches are inflated once (to at most [`crate::batch::MAX_INFLATED`]
//! bytes) into a buffer their records then borrow.

use std::{collections::BTreeSet, ops::ControlFlow};

use bytes::{Buf, Bytes};

use crate::batch::{decode_batch, for_each_record, Record, HEADER, LOG_OVERHEAD, MAX_INFLATED};

/// Which records a consumer sees.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IsolationLevel {
    /// Everything written, aborted transactions included (control records never).
    ReadUncommitted,
    /// Only committed data, and nothing past the last stable offset (librdkafka's and Java's
    /// `read_committed`).
    ReadCommitted,
}

impl IsolationLevel {
    /// The value Fetch and ListOffsets carry.
    pub fn wire(self) -> i8 {
        match self {
            Self::ReadUncommitted => 0,
            Self::ReadCommitted => 1,
        }
    }
}

/// A transaction the broker reports aborted in the fetched range.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Aborted {
    /// Its producer.
    pub producer_id: i64,
    /// Offset of its first batch.
    pub first_offset: i64,
}

/// What one partition's fetched bytes yield.
#[derive(Debug, Clone, PartialEq)]
pub struct Decoded {
    /// Records at or past the fetch offset, in offset order, with control records and (under
    /// `read_committed`) aborted ones removed.
    pub records: Vec<Record>,
    /// Where the next fetch starts: past everything looked at.
    pub next_offset: i64,
}

/// Bytes that are not record batches we can read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
#[non_exhaustive]
pub enum DecodeError {
    /// A batch header or its records do not parse (or the CRC does not match).
    #[error("corrupt record batch at offset {offset}: {reason}")]
    Corrupt {
        /// The batch's base offset.
        offset: i64,
        /// What is wrong.
        reason: String,
    },
    /// A batch in the pre-0.11 message format (magic 0 or 1), which Kafka 4 no longer writes.
    #[error("record batch at offset {offset} has magic {magic}; only format v2 is read")]
    Legacy {
        /// The batch's base offset.
        offset: i64,
        /// Its magic byte.
        magic: i8,
    },
    /// Not even one whole batch came back: it is larger than the fetch size.
    #[error(
        "the batch at offset {offset} ({size} bytes) is larger than the {fetched} bytes fetched"
    )]
    TooLarge {
        /// The fetch offset.
        offset: i64,
        /// Its size.
        size: usize,
        /// What was fetched.
        fetched: usize,
    },
}

const ATTR_TRANSACTIONAL: i16 = 1 << 4;
const ATTR_CONTROL: i16 = 1 << 5;
/// Control record type of an abort marker (key: version i16, type i16; 1 is commit).
const CONTROL_ABORT: i16 = 0;

/// The fields of a batch header the fetch path needs.
#[derive(Debug, Clone, Copy)]
struct Header {
    base_offset: i64,
    last_offset: i64,
    producer_id: i64,
    transactional: bool,
    control: bool,
}

impl Header {
    fn parse(batch: &[u8]) -> Result<Self, DecodeError> {
        let mut b = batch;
        let base_offset = b.get_i64();
        let _length = b.get_i32();
        let _leader_epoch = b.get_i32();
        let magic = b.get_i8();
        if magic != 2 {
            return Err(DecodeError::Legacy {
                offset: base_offset,
                magic,
            });
        }
        if batch.len() < HEADER {
            return Err(DecodeError::Corrupt {
                offset: base_offset,
                reason: format!("{} byte batch is shorter than its header", batch.len()),
            });
        }
        let _crc = b.get_u32();
        let attributes = b.get_i16();
        let last_offset_delta = b.get_i32();
        let _first_timestamp = b.get_i64();
        let _max_timestamp = b.get_i64();
        let producer_id = b.get_i64();
        // The next fetch offset is the last offset + 1: a last offset at or past i64::MAX has none.
        let last_offset = base_offset
            .checked_add(i64::from(last_offset_delta))
            .filter(|&last| last < i64::MAX)
            .ok_or_else(|| DecodeError::Corrupt {
                offset: base_offset,
                reason: format!("last offset {base_offset} + {last_offset_delta} overflows"),
            })?;
        Ok(Self {
            base_offset,
            last_offset,
            producer_id,
            transactional: attributes & ATTR_TRANSACTIONAL != 0,
            control: attributes & ATTR_CONTROL != 0,
        })
    }
}

/// Decodes the `records` of one partition fetched from `fetch_offset`.
///
/// `aborted` is the response's aborted-transactions list and `last_stable_offset` its LSO (-1 when the
/// broker did not send one); both matter only under `read_committed`.
pub fn decode(
    records: Bytes,
    fetch_offset: i64,
    isolation: IsolationLevel,
    aborted: &[Aborted],
    last_stable_offset: i64,
) -> Result<Decoded, DecodeError> {
    decode_limited(
        records,
        fetch_offset,
        isolation,
        aborted,
        last_stable_offset,
        MAX_INFLATED,
    )
}

/// [`decode`] with batches inflating to at most `max_inflated` bytes instead of
/// [`MAX_INFLATED`]: for the fuzz target, whose allocation bound is a multiple of its input.
#[doc(hidden)]
pub fn decode_limited(
    records: Bytes,
    fetch_offset: i64,
    isolation: IsolationLevel,
    aborted: &[Aborted],
    last_stable_offset: i64,
    max_inflated: usize,
) -> Result<Decoded, DecodeError> {
    let committed = isolation == IsolationLevel::ReadCommitted;
    // The broker lists aborted transactions by first offset; they start to count once a batch reaches
    // that offset (Java keeps them in a priority queue for the same walk).
    let mut pending: Vec<Aborted> = if committed {
        aborted.to_vec()
    } else {
        Vec::new()
    };
    pending.sort_by_key(|a| std::cmp::Reverse(a.first_offset));
    let mut aborting: BTreeSet<i64> = BTreeSet::new();
    let stable_end = (committed && last_stable_offset >= 0).then_some(last_stable_offset);

    let mut out = Vec::new();
    let mut next = fetch_offset;
    let mut rest = records;
    let fetched = rest.len();
    let mut at_stable_end = false;
    while rest.len() >= LOG_OVERHEAD {
        let base_offset = (&rest[..8]).get_i64();
        let length = (&rest[8..12]).get_i32();
        let size = usize::try_from(length)
            .ok()
            .and_then(|l| l.checked_add(LOG_OVERHEAD))
            .ok_or_else(|| DecodeError::Corrupt {
                offset: base_offset,
                reason: format!("negative batch length {length}"),
            })?;
        if size > rest.len() {
            // The size limit cut the last batch: the next fetch starts at it.
            break;
        }
        if size < LOG_OVERHEAD + 5 {
            return Err(DecodeError::Corrupt {
                offset: base_offset,
                reason: format!("{size} byte batch"),
            });
        }
        let batch = rest.split_to(size);
        let header = Header::parse(&batch)?;
        if let Some(end) = stable_end {
            if header.base_offset >= end {
                at_stable_end = true;
                break;
            }
        }
        if committed && header.producer_id >= 0 {
            while pending
                .last()
                .is_some_and(|a| a.first_offset <= header.last_offset)
            {
                if let Some(a) = pending.pop() {
                    aborting.insert(a.producer_id);
                }
            }
            if header.control {
                if is_abort_marker(&batch, &header, max_inflated)? {
                    aborting.remove(&header.producer_id);
                }
            } else if header.transactional && aborting.contains(&header.producer_id) {
                next = next.max(header.last_offset + 1);
                continue;
            }
        }
        if header.control {
            next = next.max(header.last_offset + 1);
            continue;
        }
        if header.last_offset < next {
            // Entirely before the fetch offset: a compressed batch the offset falls behind.
            continue;
        }
        let mut cut = false;
        for_each_record(batch, max_inflated, |record| {
            if record.offset < next {
                return ControlFlow::Continue(());
            }
            if stable_end.is_some_and(|end| record.offset >= end) {
                cut = true;
                return ControlFlow::Break(());
            }
            next = record.offset + 1;
            out.push(record);
            ControlFlow::Continue(())
        })
        .map_err(|reason| DecodeError::Corrupt {
            offset: header.base_offset,
            reason,
        })?;
        if cut {
            at_stable_end = true;
            break;
        }
        // Compaction may have removed the batch's last records; its last offset is still the end.
        next = next.max(header.last_offset + 1);
    }
    if !rest.is_empty() && !at_stable_end && out.is_empty() && next == fetch_offset {
        // Not one whole batch: fetching again would return the same bytes. Brokers since KIP-74 always
        // return the first batch whole, so this is a size limit below the batch size.
        let size = if rest.len() >= LOG_OVERHEAD {
            usize::try_from((&rest[8..12]).get_i32()).unwrap_or(0) + LOG_OVERHEAD
        } else {
            0
        };
        return Err(DecodeError::TooLarge {
            offset: fetch_offset,
            size,
            fetched,
        });
    }
    if let Some(end) = stable_end {
        next = next.min(end.max(fetch_offset));
    }
    Ok(Decoded {
        records: out,
        next_offset: next,
    })
}

/// Whether a control batch holds an abort marker (its first record's key type is 0).
fn is_abort_marker(
    batch: &Bytes,
    header: &Header,
    max_inflated: usize,
) -> Result<bool, DecodeError> {
    let decoded =
        decode_batch(batch.clone(), max_inflated).map_err(|reason| DecodeError::Corrupt {
            offset: header.base_offset,
            reason,
        })?;
    let Some(key) = decoded.first().and_then(|r| r.key.as_ref()) else {
        return Ok(false);
    };
    if key.len() < 4 {
        return Err(DecodeError::Corrupt {
            offset: header.base_offset,
            reason: format!("control record key of {} bytes", key.len()),
        });
    }
    Ok((&key[2..4]).get_i16() == CONTROL_ABORT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use bytes::{BufMut, BytesMut};
    // What a producer writes: kafka-protocol's record, encoded by kafka-protocol.
    use kafka_protocol::records::{
        Compression, Record, RecordBatchEncoder, RecordEncodeOptions, TimestampType,
    };

    const RC: IsolationLevel = IsolationLevel::ReadCommitted;
    const RU: IsolationLevel = IsolationLevel::ReadUncommitted;

    fn record(offset: i64, producer_id: i64, transactional: bool) -> Record {
        Record {
            transactional,
            control: false,
            delete_horizon: false,
            partition_leader_epoch: 0,
            producer_id,
            producer_epoch: if producer_id >= 0 { 0 } else { -1 },
            timestamp_type: TimestampType::Creation,
            offset,
            // Constant offset - sequence: the encoder starts a new batch where it changes.
            sequence: offset as i32,
            timestamp: 1_700_000_000_000 + offset,
            key: None,
            value: Some(Bytes::from(format!("v{offset}"))),
            headers: Default::default(),
        }
    }

    /// A batch of plain records at `offsets`, compressed with `compression`.
    fn batch(offsets: std::ops::Range<i64>, compression: Compression) -> BytesMut {
        encode(
            &offsets.map(|o| record(o, -1, false)).collect::<Vec<_>>(),
            compression,
        )
    }

    /// A transactional data batch of `producer_id`.
    fn txn(offsets: std::ops::Range<i64>, producer_id: i64) -> BytesMut {
        let records: Vec<Record> = offsets.map(|o| record(o, producer_id, true)).collect();
        encode(&records, Compression::None)
    }

    /// A transaction marker of `producer_id` at `offset`: commit or abort.
    fn marker(offset: i64, producer_id: i64, commit: bool) -> BytesMut {
        let mut key = BytesMut::new();
        key.put_i16(0);
        key.put_i16(i16::from(commit));
        let mut value = BytesMut::new();
        value.put_i16(0);
        value.put_i32(0);
        let r = Record {
            control: true,
            key: Some(key.freeze()),
            value: Some(value.freeze()),
            ..record(offset, producer_id, true)
        };
        encode(&[r], Compression::None)
    }

    fn encode(records: &[Record], compression: Compression) -> BytesMut {
        let mut buf = BytesMut::new();
        RecordBatchEncoder::encode(
            &mut buf,
            records,
            &RecordEncodeOptions {
                version: 2,
                compression,
            },
        )
        .expect("encodes");
        buf
    }

    /// What compaction leaves: the header's last offset delta says `last`, its last records are gone.
    fn with_last_offset(mut batch: BytesMut, last: i64) -> BytesMut {
        let base = (&batch[..8]).get_i64();
        batch[23..27].copy_from_slice(&((last - base) as i32).to_be_bytes());
        let crc = crc32c::crc32c(&batch[21..]);
        batch[17..21].copy_from_slice(&crc.to_be_bytes());
        batch
    }

    fn join(batches: &[BytesMut]) -> Bytes {
        let mut all = BytesMut::new();
        for b in batches {
            all.extend_from_slice(b);
        }
        all.freeze()
    }

    fn offsets(d: &Decoded) -> Vec<i64> {
        d.records.iter().map(|r| r.offset).collect()
    }

    fn aborted(producer_id: i64, first_offset: i64) -> Aborted {
        Aborted {
            producer_id,
            first_offset,
        }
    }

    #[test]
    fn plain_batches_from_the_fetch_offset() {
        let data = join(&[
            batch(0..3, Compression::None),
            batch(3..5, Compression::None),
        ]);
        let d = decode(data, 0, RC, &[], -1).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![0, 1, 2, 3, 4], 5));
    }

    #[test]
    fn records_before_the_fetch_offset_in_a_compressed_batch_are_dropped() {
        let data = join(&[batch(0..5, Compression::Gzip)]);
        let d = decode(data, 3, RU, &[], -1).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![3, 4], 5));
    }

    #[test]
    fn a_compacted_batch_whose_records_are_all_behind_moves_to_its_last_offset() {
        // Records 0..3 survive, the header still ends at 9; the fetch asked for 5. rskafka 0.6 returns
        // nothing here and the consumer fetched offset 5 forever.
        let data = join(&[with_last_offset(batch(0..3, Compression::None), 9)]);
        let d = decode(data, 5, RU, &[], -1).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![], 10));
        // And a gap inside the fetched range: the next batch is read after it.
        let data = join(&[
            with_last_offset(batch(0..3, Compression::None), 9),
            batch(20..22, Compression::None),
        ]);
        let d = decode(data, 0, RU, &[], -1).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![0, 1, 2, 20, 21], 22));
    }

    #[test]
    fn a_lone_transaction_marker_is_passed_under_both_levels() {
        for level in [RC, RU] {
            let data = join(&[marker(7, 1, true)]);
            let d = decode(data, 7, level, &[], -1).expect("decodes");
            assert_eq!((offsets(&d), d.next_offset), (vec![], 8), "{level:?}");
        }
    }

    #[test]
    fn read_committed_drops_aborted_transactions_and_read_uncommitted_keeps_them() {
        // pid 1 aborts 0..3 (marker 3), pid 2 commits 4..6 (marker 6), then a plain record at 7.
        let data = join(&[
            txn(0..3, 1),
            marker(3, 1, false),
            txn(4..6, 2),
            marker(6, 2, true),
            batch(7..8, Compression::None),
        ]);
        let list = [aborted(1, 0)];
        let d = decode(data.clone(), 0, RC, &list, 8).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![4, 5, 7], 8));
        let d = decode(data, 0, RU, &list, 8).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![0, 1, 2, 4, 5, 7], 8));
    }

    #[test]
    fn interleaved_transactions_and_a_producer_that_commits_after_aborting() {
        // pid 1: 0, 2 aborted (marker 4), then 5 committed (marker 7); pid 2: 1, 3 committed (marker 6).
        let data = join(&[
            txn(0..1, 1),
            txn(1..2, 2),
            txn(2..3, 1),
            txn(3..4, 2),
            marker(4, 1, false),
            txn(5..6, 1),
            marker(6, 2, true),
            marker(7, 1, true),
        ]);
        let list = [aborted(1, 0)];
        let d = decode(data.clone(), 0, RC, &list, 8).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![1, 3, 5], 8));
        // Without the list, as rskafka 0.6 reads it, the aborted records would be printed.
        let d = decode(data, 0, RC, &[], 8).expect("decodes");
        assert_eq!(offsets(&d), vec![0, 1, 2, 3, 5]);
    }

    #[test]
    fn an_aborted_transaction_is_skipped_from_its_first_offset_only() {
        // pid 1 commits 0..2 (marker 2), then its aborted transaction starts at 3.
        let data = join(&[
            txn(0..2, 1),
            marker(2, 1, true),
            txn(3..5, 1),
            marker(5, 1, false),
        ]);
        let d = decode(data, 0, RC, &[aborted(1, 3)], 6).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![0, 1], 6));
    }

    #[test]
    fn nothing_at_or_past_the_last_stable_offset_under_read_committed() {
        let data = join(&[batch(0..3, Compression::None), txn(3..6, 1)]);
        let d = decode(data.clone(), 0, RC, &[], 3).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![0, 1, 2], 3));
        let d = decode(data, 0, RU, &[], 3).expect("decodes");
        assert_eq!(offsets(&d), vec![0, 1, 2, 3, 4, 5]);
    }

    #[test]
    fn a_batch_cut_by_the_size_limit_is_fetched_next_time() {
        let whole = join(&[
            batch(0..2, Compression::None),
            batch(2..4, Compression::None),
        ]);
        let cut = whole.slice(..whole.len() - 5);
        let d = decode(cut, 0, RU, &[], -1).expect("decodes");
        assert_eq!((offsets(&d), d.next_offset), (vec![0, 1], 2));
        let first_only = whole.slice(..10);
        assert!(matches!(
            decode(first_only, 0, RU, &[], -1),
            Err(DecodeError::TooLarge { offset: 0, .. })
        ));
        let d = decode(Bytes::new(), 4, RC, &[], -1).expect("nothing is fine");
        assert_eq!((offsets(&d), d.next_offset), (vec![], 4));
    }

    #[test]
    fn every_codec_decodes() {
        for codec in [
            Compression::None,
            Compression::Gzip,
            Compression::Snappy,
            Compression::Lz4,
            Compression::Zstd,
        ] {
            let d = decode(join(&[batch(10..20, codec)]), 10, RC, &[], -1)
                .unwrap_or_else(|e| panic!("{codec:?}: {e}"));
            assert_eq!(offsets(&d), (10..20).collect::<Vec<_>>(), "{codec:?}");
            assert_eq!(d.records[3].value.as_deref(), Some(&b"v13"[..]));
        }
    }

    #[test]
    fn uncompressed_values_borrow_the_fetch_buffer() {
        let data = join(&[batch(0..3, Compression::None)]);
        let range = data.as_ptr_range();
        let d = decode(data.clone(), 0, RU, &[], -1).expect("decodes");
        for r in &d.records {
            let v = r.value.as_ref().expect("value");
            assert!(
                range.contains(&v.as_ptr()),
                "value copied out of the buffer"
            );
        }
    }

    #[test]
    fn corrupt_and_legacy_batches_are_errors_not_panics() {
        let mut bad = batch(0..2, Compression::None);
        let last = bad.len() - 1;
        bad[last] ^= 0xff;
        assert!(matches!(
            decode(bad.freeze(), 0, RU, &[], -1),
            Err(DecodeError::Corrupt { .. })
        ));
        let mut legacy = batch(0..2, Compression::None);
        legacy[16] = 1;
        assert!(matches!(
            decode(legacy.freeze(), 0, RU, &[], -1),
            Err(DecodeError::Legacy { magic: 1, .. })
        ));
        let mut negative = BytesMut::new();
        negative.put_i64(0);
        negative.put_i32(-5);
        assert!(decode(negative.freeze(), 0, RU, &[], -1).is_err());
        let mut short = BytesMut::new();
        short.put_i64(0);
        short.put_i32(8);
        short.put_slice(&[0, 0, 0, 0, 2, 0, 0, 0]);
        assert!(decode(short.freeze(), 0, RU, &[], -1).is_err());
        // Found by the record_batches fuzz target: a last offset past i64::MAX overflowed (a panic
        // with overflow checks, a wrapped negative offset without).
        let mut end = with_last_offset(batch(0..1, Compression::None), 5);
        end[..8].copy_from_slice(&(i64::MAX - 2).to_be_bytes());
        let crc = crc32c::crc32c(&end[21..]);
        end[17..21].copy_from_slice(&crc.to_be_bytes());
        assert!(matches!(
            decode(end.freeze(), 0, RU, &[], -1),
            Err(DecodeError::Corrupt { .. })
        ));
    }
}
