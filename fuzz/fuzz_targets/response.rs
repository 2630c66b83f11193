//! `transport::decode_body`, the decoding of every response we read, at every version we speak.
//!
//! Input: one byte choosing the API (an index into [`APIS`]), one choosing the version within its
//! range (taken modulo its width), then the response frame's body as it comes off the socket: the
//! response header, then the response. The correlation id expected is the one the header carries.
//! Checked: no panic; memory within the bound (the length walk of `transport::lengths` is what keeps
//! `kafka-protocol` from reserving what a count claims); and what decodes re-encodes to a body that
//! passes the walk again and decodes to the same value.
#![no_main]

use bytes::{Bytes, BytesMut};
use kafka_lag_lab_fuzz::bounded;
use kafka_protocol::{
    messages::*,
    protocol::{Decodable, Encodable, HeaderVersion},
};
use libfuzzer_sys::fuzz_target;

/// The APIs transport's callers decode and the versions they negotiate (group/src/wire.rs
/// `supported`, fetch/src, admin/src/conn.rs `ours`, and transport's ApiVersions).
const APIS: [(ApiKey, i16, i16); 14] = [
    (ApiKey::ApiVersions, 0, 3),
    (ApiKey::FindCoordinator, 0, 4),
    (ApiKey::JoinGroup, 1, 9),
    (ApiKey::SyncGroup, 0, 5),
    (ApiKey::Heartbeat, 0, 4),
    (ApiKey::OffsetFetch, 1, 8),
    (ApiKey::OffsetCommit, 2, 8),
    (ApiKey::LeaveGroup, 0, 5),
    (ApiKey::Metadata, 1, 12),
    (ApiKey::DescribeGroups, 0, 5),
    (ApiKey::ListGroups, 0, 4),
    (ApiKey::ListOffsets, 1, 8),
    (ApiKey::Fetch, 4, 12),
    (ApiKey::CreateTopics, 2, 7),
];

/// The length walk lets an array's elements be reserved only when the bytes after it hold them, each
/// at least its smallest encoding, and walks every element before decoding, so every decoded struct
/// stands on encoded bytes of its own. The largest struct per smallest encoding is ListGroups v0's
/// group, 152 bytes (four 32-byte `StrBytes` and a map) for two empty strings, 4 bytes: 38 (measured
/// 38.9 with the body's copy); an unknown tagged field is ~36 bytes of `BTreeMap` per 2 bytes.
const FACTOR: usize = 64;
const SLACK: usize = 4096;

fuzz_target!(|data: &[u8]| {
    let [api, version, ..] = data else {
        return;
    };
    let (api, min, max) = APIS[usize::from(*api) % APIS.len()];
    let version = min + i16::from(*version) % (max - min + 1);
    let body = &data[2..];
    match api {
        ApiKey::ApiVersions => check::<ApiVersionsResponse>(api, version, body),
        ApiKey::FindCoordinator => check::<FindCoordinatorResponse>(api, version, body),
        ApiKey::JoinGroup => check::<JoinGroupResponse>(api, version, body),
        ApiKey::SyncGroup => check::<SyncGroupResponse>(api, version, body),
        ApiKey::Heartbeat => check::<HeartbeatResponse>(api, version, body),
        ApiKey::OffsetFetch => check::<OffsetFetchResponse>(api, version, body),
        ApiKey::OffsetCommit => check::<OffsetCommitResponse>(api, version, body),
        ApiKey::LeaveGroup => check::<LeaveGroupResponse>(api, version, body),
        ApiKey::Metadata => check::<MetadataResponse>(api, version, body),
        ApiKey::DescribeGroups => check::<DescribeGroupsResponse>(api, version, body),
        ApiKey::ListGroups => check::<ListGroupsResponse>(api, version, body),
        ApiKey::ListOffsets => check::<ListOffsetsResponse>(api, version, body),
        ApiKey::Fetch => check::<FetchResponse>(api, version, body),
        ApiKey::CreateTopics => check::<CreateTopicsResponse>(api, version, body),
        _ => unreachable!("not in APIS"),
    }
});

fn check<T>(api: ApiKey, version: i16, body: &[u8])
where
    T: Decodable + Encodable + HeaderVersion + PartialEq + std::fmt::Debug,
{
    // ApiVersions answers with a v0 header at every version (KIP-511), as transport reads it.
    let header_version = if api == ApiKey::ApiVersions {
        0
    } else {
        T::header_version(version)
    };
    let correlation_id = body
        .first_chunk::<4>()
        .map_or(0, |id| i32::from_be_bytes(*id));
    let decoded = bounded("decode_body", body.len(), FACTOR, SLACK, || {
        transport::decode_body::<T>(
            Bytes::copy_from_slice(body),
            api,
            header_version,
            version,
            correlation_id,
        )
    });
    let Ok(decoded) = decoded else {
        return;
    };
    // Round trip: encoding at the same version may refuse a value (a field the version lacks
    // cannot carry a non-default value); what it encodes must pass the walk and decode the same.
    let mut buf = BytesMut::new();
    if decoded.encode(&mut buf, version).is_err() {
        return;
    }
    // Unless kafka-protocol's encoder contradicts its own size: it decodes a tagged field's tag of
    // 2^31 or more as a negative key and then counts it but does not write it (found here), so that
    // encoding is not one of the value. We never re-encode a response; only this check does.
    if decoded.compute_size(version).ok() != Some(buf.len()) {
        return;
    }
    transport::lengths::check_lengths(api, version, &buf)
        .unwrap_or_else(|e| panic!("{api:?} v{version} re-encoded fails the length walk: {e}"));
    let mut again = buf.freeze();
    let redecoded = T::decode(&mut again, version)
        .unwrap_or_else(|e| panic!("{api:?} v{version} re-encoded does not decode: {e}"));
    assert_eq!(redecoded, decoded, "{api:?} v{version} round trip");
}
