//! One TCP connection to one Kafka broker, speaking `kafka-protocol` codecs: the only place our own
//! protocol bytes meet a socket (the group coordinator's and the fetch path's).
//!
//! # Layout
//! - [`Connection`]: connect (with a timeout), ApiVersions negotiation, then [`Connection::call`] for
//!   any `kafka-protocol` [`Request`] at a version chosen with [`Connection::version`].
//! - [`TransportError`]: every failure; each one means "drop this connection".
//! - [`TopicPartition`]: the partition name every layer above shares.
//! - [`decode_body`]: a response body is decoded only after [`lengths::check_lengths`] found no array
//!   count its bytes cannot hold (`kafka-protocol` allocates what a count claims before reading it).
//!
//! One request in flight at a time: a request the caller abandons (a timeout, a cancelled task) must
//! drop the connection, since its late answer would arrive in place of the next one. `call` takes
//! `&mut self` and the callers replace the connection after any error.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::{collections::BTreeMap, fmt, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange},
    ResponseError,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufWriter},
    net::TcpStream,
};

pub mod lengths;

/// Largest response frame accepted by default: a fetch of many partitions at 1 MiB each fits; a bigger
/// size prefix means we are out of step with the stream.
pub const DEFAULT_MAX_FRAME: usize = 64 * 1024 * 1024;

/// One partition of one topic.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct TopicPartition {
    /// Topic name.
    pub topic: String,
    /// Partition index.
    pub partition: i32,
}

impl TopicPartition {
    /// `topic`'s partition `partition`.
    pub fn new(topic: impl Into<String>, partition: i32) -> Self {
        Self {
            topic: topic.into(),
            partition,
        }
    }
}

impl fmt::Display for TopicPartition {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}-{}", self.topic, self.partition)
    }
}

/// A failed connection or request. Every variant means: drop this connection. The cause is in the
/// message, not a `source`: these are logged with `to_string`, where a source would be lost.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TransportError {
    /// Connecting, reading or writing failed.
    #[error("{addr}: {error}")]
    Io {
        /// The broker.
        addr: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Connecting (with version negotiation) took too long.
    #[error("{addr}: connect timed out after {timeout:?}")]
    ConnectTimeout {
        /// The broker.
        addr: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// A request got no answer in time.
    #[error("{addr}: {api:?} got no answer within {timeout:?}")]
    RequestTimeout {
        /// The broker.
        addr: String,
        /// The request's API.
        api: ApiKey,
        /// How long we waited.
        timeout: Duration,
    },
    /// The broker speaks no version of `api` in `ours`.
    #[error("{addr}: the broker supports {api:?} versions {broker}, we need {ours}")]
    UnsupportedVersion {
        /// The broker.
        addr: String,
        /// The API.
        api: ApiKey,
        /// What the broker advertised ("none" when it does not have the API).
        broker: String,
        /// What the caller implements.
        ours: VersionRange,
    },
    /// Encoding or decoding failed.
    #[error("{addr}: {what}: {reason}")]
    Codec {
        /// The broker.
        addr: String,
        /// What was being encoded or decoded.
        what: String,
        /// The codec's message.
        reason: String,
    },
    /// The broker sent a frame larger than the limit.
    #[error("{addr}: response frame of {size} bytes exceeds the {limit} byte limit")]
    FrameTooLarge {
        /// The broker.
        addr: String,
        /// The announced size.
        size: usize,
        /// The limit.
        limit: usize,
    },
}

/// The API version ranges a broker advertised in ApiVersions, by API key.
#[derive(Debug, Clone, PartialEq, Default)]
pub struct BrokerVersions(BTreeMap<i16, VersionRange>);

impl BrokerVersions {
    /// From an ApiVersions response.
    pub fn from_response(response: &ApiVersionsResponse) -> Self {
        Self(
            response
                .api_keys
                .iter()
                .map(|k| {
                    (
                        k.api_key,
                        VersionRange {
                            min: k.min_version,
                            max: k.max_version,
                        },
                    )
                })
                .collect(),
        )
    }

    /// What the broker advertised for `api`.
    pub fn get(&self, api: ApiKey) -> Option<VersionRange> {
        self.0.get(&(api as i16)).copied()
    }

    /// The highest version of `api` both the broker and `ours` speak.
    pub fn highest_common(
        &self,
        api: ApiKey,
        ours: VersionRange,
    ) -> Result<i16, (String, VersionRange)> {
        let theirs = self.get(api);
        match theirs.map(|t| t.intersect(&ours)) {
            Some(common) if !common.is_empty() => Ok(common.max),
            _ => Err((
                theirs.map_or_else(|| "none".to_string(), |t| t.to_string()),
                ours,
            )),
        }
    }
}

/// A connection to one broker with its advertised versions.
#[derive(Debug)]
pub struct Connection {
    /// The socket, writes buffered so a frame goes out in one syscall.
    stream: BufWriter<TcpStream>,
    /// `host:port`, for error messages.
    addr: String,
    /// Sent in every request header; shows in broker logs and DescribeGroups.
    client_id: StrBytes,
    /// Next correlation id.
    correlation_id: i32,
    /// What the broker advertised.
    versions: BrokerVersions,
    /// Largest response frame accepted.
    max_frame: usize,
}

impl Connection {
    /// Connects to `addr` and asks for its API versions, all within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        let io = |error| TransportError::Io {
            addr: addr.to_string(),
            error,
        };
        let timed_out = || TransportError::ConnectTimeout {
            addr: addr.to_string(),
            timeout,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| timed_out())?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut conn = Self {
            stream: BufWriter::new(stream),
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            correlation_id: 0,
            versions: BrokerVersions::default(),
            max_frame: DEFAULT_MAX_FRAME,
        };
        conn.versions = tokio::time::timeout(timeout, conn.api_versions())
            .await
            .map_err(|_| timed_out())??;
        Ok(conn)
    }

    /// Accepts response frames up to `limit` bytes instead of [`DEFAULT_MAX_FRAME`].
    pub fn with_max_frame(mut self, limit: usize) -> Self {
        self.max_frame = limit;
        self
    }

    /// The broker address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// What the broker advertised.
    pub fn broker_versions(&self) -> &BrokerVersions {
        &self.versions
    }

    /// The highest version of `api` in `ours` the broker speaks.
    pub fn version(&self, api: ApiKey, ours: VersionRange) -> Result<i16, TransportError> {
        self.versions
            .highest_common(api, ours)
            .map_err(|(broker, ours)| TransportError::UnsupportedVersion {
                addr: self.addr.clone(),
                api,
                broker,
                ours,
            })
    }

    /// [`version`](Self::version) for request type `R`, within `ours` and what `kafka-protocol` encodes.
    pub fn version_of<R: Request>(&self, ours: VersionRange) -> Result<i16, TransportError> {
        let api = api_key::<R>(&self.addr)?;
        self.version(api, ours.intersect(&R::VERSIONS))
    }

    /// Sends `request` at `version` and waits at most `timeout` for its response, checking the
    /// correlation id and that the body decoded with no bytes left over.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        version: i16,
        timeout: Duration,
    ) -> Result<R::Response, TransportError> {
        let api = api_key::<R>(&self.addr)?;
        let exchange = async {
            let id = self.next_correlation_id();
            let frame = encode_frame(api, version, id, &self.client_id, |buf| {
                request.encode(buf, version)
            })
            .map_err(|reason| self.codec(format!("encoding {api:?} v{version}"), reason))?;
            self.write_frame(&frame).await?;
            let body = self.read_frame().await?;
            decode_body::<R::Response>(body, api, R::Response::header_version(version), version, id)
                .map_err(|reason| {
                    self.codec(format!("decoding {api:?} v{version} response"), reason)
                })
        };
        tokio::time::timeout(timeout, exchange).await.map_err(|_| {
            TransportError::RequestTimeout {
                addr: self.addr.clone(),
                api,
                timeout,
            }
        })?
    }

    /// ApiVersions v3; a broker too old for it answers UNSUPPORTED_VERSION with its own range, and we
    /// ask again at v0. Its response header is always v0, even for flexible versions (KIP-511).
    async fn api_versions(&mut self) -> Result<BrokerVersions, TransportError> {
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kafka-lag-lab"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        for version in [3, 0] {
            let id = self.next_correlation_id();
            let body = if version >= 3 {
                request.clone()
            } else {
                ApiVersionsRequest::default()
            };
            let frame = encode_frame(ApiKey::ApiVersions, version, id, &self.client_id, |buf| {
                body.encode(buf, version)
            })
            .map_err(|reason| self.codec(format!("encoding ApiVersions v{version}"), reason))?;
            self.write_frame(&frame).await?;
            let frame = self.read_frame().await?;
            let response =
                decode_body::<ApiVersionsResponse>(frame, ApiKey::ApiVersions, 0, version, id)
                    .or_else(|reason| {
                        // A broker answering an unknown version uses v0's layout, which may leave bytes.
                        if version > 0 {
                            Ok(ApiVersionsResponse::default()
                                .with_error_code(ResponseError::UnsupportedVersion.code()))
                        } else {
                            Err(reason)
                        }
                    })
                    .map_err(|reason| {
                        self.codec(format!("decoding ApiVersions v{version} response"), reason)
                    })?;
            if response.error_code == ResponseError::UnsupportedVersion.code() && version > 0 {
                continue;
            }
            return Ok(BrokerVersions::from_response(&response));
        }
        Err(self.codec(
            "ApiVersions".into(),
            "the broker refused every version".into(),
        ))
    }

    fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        self.correlation_id
    }

    fn codec(&self, what: String, reason: String) -> TransportError {
        TransportError::Codec {
            addr: self.addr.clone(),
            what,
            reason,
        }
    }

    fn io(&self, error: std::io::Error) -> TransportError {
        TransportError::Io {
            addr: self.addr.clone(),
            error,
        }
    }

    async fn write_frame(&mut self, frame: &[u8]) -> Result<(), TransportError> {
        self.stream.write_all(frame).await.map_err(|e| self.io(e))?;
        self.stream.flush().await.map_err(|e| self.io(e))
    }

    async fn read_frame(&mut self) -> Result<Bytes, TransportError> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .await
            .map_err(|e| self.io(e))?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > self.max_frame {
            return Err(TransportError::FrameTooLarge {
                addr: self.addr.clone(),
                size,
                limit: self.max_frame,
            });
        }
        let mut body = BytesMut::zeroed(size);
        self.stream
            .read_exact(&mut body)
            .await
            .map_err(|e| self.io(e))?;
        Ok(body.freeze())
    }
}

fn api_key<R: Request>(addr: &str) -> Result<ApiKey, TransportError> {
    ApiKey::try_from(R::KEY).map_err(|()| TransportError::Codec {
        addr: addr.to_string(),
        what: format!("API key {}", R::KEY),
        reason: "unknown to kafka-protocol".into(),
    })
}

/// Size prefix, request header for `api` at `version`, then the body `encode_body` writes.
pub fn encode_frame(
    api: ApiKey,
    version: i16,
    correlation_id: i32,
    client_id: &StrBytes,
    encode_body: impl FnOnce(&mut BytesMut) -> anyhow::Result<()>,
) -> Result<Bytes, String> {
    let header = RequestHeader::default()
        .with_request_api_key(api as i16)
        .with_request_api_version(version)
        .with_correlation_id(correlation_id)
        .with_client_id(Some(client_id.clone()));
    let mut buf = BytesMut::with_capacity(256);
    buf.put_i32(0); // size, patched below
    header
        .encode(&mut buf, api.request_header_version(version))
        .map_err(|e| e.to_string())?;
    encode_body(&mut buf).map_err(|e| e.to_string())?;
    let size = i32::try_from(buf.len() - 4).map_err(|_| "request larger than 2 GiB".to_string())?;
    buf[..4].copy_from_slice(&size.to_be_bytes());
    Ok(buf.freeze())
}

/// Decodes a response frame's body (after the size prefix): header at `header_version` with
/// `correlation_id`, then `T`, the response of `api`, at `version` with no bytes left over (leftovers
/// mean we decoded the wrong layout). The body passes [`lengths::check_lengths`] first.
pub fn decode_body<T: Decodable>(
    mut body: Bytes,
    api: ApiKey,
    header_version: i16,
    version: i16,
    correlation_id: i32,
) -> Result<T, String> {
    let header = ResponseHeader::decode(&mut body, header_version).map_err(|e| e.to_string())?;
    if header.correlation_id != correlation_id {
        return Err(format!(
            "correlation id {} does not match request {correlation_id}",
            header.correlation_id
        ));
    }
    lengths::check_lengths(api, version, &body)?;
    let decoded = T::decode(&mut body, version).map_err(|e| e.to_string())?;
    if body.has_remaining() {
        return Err(format!("{} byte(s) left over", body.remaining()));
    }
    Ok(decoded)
}

#[cfg(test)]
mod tests {
    use super::*;
    use kafka_protocol::messages::{api_versions_response::ApiVersion, MetadataResponse};

    fn response_frame(correlation_id: i32, body: &MetadataResponse, version: i16) -> Bytes {
        let mut buf = BytesMut::new();
        ResponseHeader::default()
            .with_correlation_id(correlation_id)
            .encode(&mut buf, MetadataResponse::header_version(version))
            .expect("header");
        body.encode(&mut buf, version).expect("body");
        buf.freeze()
    }

    #[test]
    fn a_response_decodes_only_with_its_correlation_id_and_no_leftovers() {
        let body = MetadataResponse::default().with_throttle_time_ms(7);
        let frame = response_frame(5, &body, 12);
        let header = MetadataResponse::header_version(12);
        let ok: MetadataResponse =
            decode_body(frame.clone(), ApiKey::Metadata, header, 12, 5).expect("decodes");
        assert_eq!(ok.throttle_time_ms, 7);
        let err = decode_body::<MetadataResponse>(frame.clone(), ApiKey::Metadata, header, 12, 6)
            .expect_err("id");
        assert!(err.contains("correlation id 5"), "{err}");
        let mut longer = BytesMut::from(&frame[..]);
        longer.put_u8(0);
        let err = decode_body::<MetadataResponse>(longer.freeze(), ApiKey::Metadata, header, 12, 5)
            .expect_err("left");
        assert!(err.contains("left over"), "{err}");
    }

    #[test]
    fn a_frame_carries_its_size_and_a_header_of_the_right_version() {
        let client = StrBytes::from_static_str("me");
        let frame = encode_frame(ApiKey::Metadata, 12, 9, &client, |_| Ok(())).expect("frame");
        let size = i32::from_be_bytes([frame[0], frame[1], frame[2], frame[3]]);
        assert_eq!(size as usize, frame.len() - 4);
        let mut rest = frame.slice(4..);
        let header = RequestHeader::decode(&mut rest, ApiKey::Metadata.request_header_version(12))
            .expect("header");
        assert_eq!(
            (
                header.request_api_key,
                header.request_api_version,
                header.correlation_id
            ),
            (ApiKey::Metadata as i16, 12, 9)
        );
        assert!(!rest.has_remaining());
    }

    #[test]
    fn the_highest_common_version_or_what_the_broker_has() {
        let broker = BrokerVersions::from_response(&ApiVersionsResponse::default().with_api_keys(
            vec![ApiVersion::default()
                .with_api_key(ApiKey::Fetch as i16)
                .with_min_version(4)
                .with_max_version(17)],
        ));
        assert_eq!(
            broker.highest_common(ApiKey::Fetch, VersionRange { min: 4, max: 12 }),
            Ok(12)
        );
        let (theirs, ours) = broker
            .highest_common(ApiKey::Fetch, VersionRange { min: 0, max: 3 })
            .expect_err("no overlap");
        assert_eq!(
            (theirs.as_str(), ours),
            ("4..17", VersionRange { min: 0, max: 3 })
        );
        assert_eq!(
            broker
                .highest_common(ApiKey::Metadata, VersionRange { min: 1, max: 12 })
                .map_err(|(b, _)| b),
            Err("none".to_string())
        );
    }
}
