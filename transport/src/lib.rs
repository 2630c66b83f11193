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
//! - [`security`]: TLS and SASL settings ([`Security`]), applied by [`Connection::connect_secure`]:
//!   TCP, the TLS handshake, ApiVersions, SaslHandshake v1 and SaslAuthenticate, in Kafka's order.
//!
//! One request in flight at a time: a request the caller abandons (a timeout, a cancelled task) must
//! drop the connection, since its late answer would arrive in place of the next one. `call` takes
//! `&mut self` and the callers replace the connection after any error.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod security;
mod stream;

use std::{collections::BTreeMap, fmt, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{
        ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader,
        SaslAuthenticateRequest, SaslHandshakeRequest,
    },
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes, VersionRange},
    ResponseError,
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufWriter},
    net::TcpStream,
};

pub mod lengths;
pub use security::{Security, SecurityError, SecurityProtocol, SecuritySettings};
use stream::Stream;

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
    /// The connection could not be secured or authenticated, or the listener speaks another
    /// protocol than `SECURITY_PROTOCOL` says. `fatal`: retrying cannot help, a person must fix the
    /// configuration (a wrong password, an untrusted certificate).
    #[error("{addr}: {reason}")]
    Security {
        /// The broker.
        addr: String,
        /// What happened and what to check, in plain words.
        reason: String,
        /// Whether retrying is pointless.
        fatal: bool,
    },
}

impl TransportError {
    /// Whether retrying the same connection cannot succeed: authentication and TLS trust failures,
    /// a listener of another protocol. Everything else (a broker down, a timeout) may pass.
    pub fn is_fatal(&self) -> bool {
        matches!(self, Self::Security { fatal: true, .. })
    }
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
    /// The socket (plain or TLS), writes buffered so a frame goes out in one syscall.
    stream: BufWriter<Stream>,
    /// Plain or TLS (with a client certificate or not), for telling a listener of the other kind
    /// from a broken one.
    mode: stream::Mode,
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
    /// Connects to `addr` in plaintext and asks for its API versions, all within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, TransportError> {
        Self::connect_secure(addr, client_id, timeout, &Security::plaintext()).await
    }

    /// Connects to `addr` as `security` says, all within `timeout`: TCP, the TLS handshake (with
    /// TLS), ApiVersions, then SaslHandshake v1 and SaslAuthenticate (with SASL), Kafka's order.
    pub async fn connect_secure(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Self, TransportError> {
        let timed_out = || TransportError::ConnectTimeout {
            addr: addr.to_string(),
            timeout,
        };
        tokio::time::timeout(timeout, Self::open(addr, client_id, security))
            .await
            .map_err(|_| timed_out())?
    }

    async fn open(
        addr: &str,
        client_id: &str,
        security: &Security,
    ) -> Result<Self, TransportError> {
        let io = |error| TransportError::Io {
            addr: addr.to_string(),
            error,
        };
        let tcp = TcpStream::connect(addr).await.map_err(io)?;
        tcp.set_nodelay(true).map_err(io)?;
        let tls = security.tls_config();
        let stream = match &tls {
            Some(config) => stream::tls(tcp, addr, config.clone())
                .await
                .map_err(|error| stream::classify(addr, error, security.mode()))?,
            None => Stream::Plain(tcp),
        };
        let mut conn = Self {
            stream: BufWriter::new(stream),
            mode: security.mode(),
            addr: addr.to_string(),
            client_id: StrBytes::from_string(client_id.to_string()),
            correlation_id: 0,
            versions: BrokerVersions::default(),
            max_frame: DEFAULT_MAX_FRAME,
        };
        conn.versions = conn.api_versions().await?;
        if let Some(sasl) = security.sasl() {
            conn.authenticate(sasl).await?;
        }
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
            let frame = self.read_frame().await.map_err(|e| self.first_answer(e))?;
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

    /// The first answer did not come as a Kafka frame: say what the listener probably is.
    fn first_answer(&self, err: TransportError) -> TransportError {
        match err {
            // A TLS record (handshake 0x16 or alert 0x15, version 3.x) read as a size prefix.
            TransportError::FrameTooLarge { size, .. }
                if self.mode == stream::Mode::Plain
                    && matches!(size >> 24, 0x15 | 0x16)
                    && (size >> 16) & 0xff == 3 =>
            {
                TransportError::Security {
                    addr: self.addr.clone(),
                    reason: "the broker answered with TLS: this is a TLS listener; set \
                             SECURITY_PROTOCOL=SSL or SASL_SSL"
                        .into(),
                    fatal: true,
                }
            }
            TransportError::FrameTooLarge { size, limit, .. } => TransportError::Security {
                addr: self.addr.clone(),
                reason: format!(
                    "the first answer announced {size} bytes (limit {limit}): not a Kafka \
                     {} listener? check SECURITY_PROTOCOL",
                    if self.mode == stream::Mode::Plain {
                        "plaintext"
                    } else {
                        "TLS"
                    }
                ),
                fatal: true,
            },
            TransportError::Io { error, .. }
                if self.mode == stream::Mode::Plain
                    && matches!(
                        error.kind(),
                        std::io::ErrorKind::UnexpectedEof | std::io::ErrorKind::ConnectionReset
                    ) =>
            {
                // A TLS listener drops a connection that does not start with a ClientHello, but so
                // may a broker shutting down: not fatal, the hint goes with every retry's log.
                TransportError::Security {
                    addr: self.addr.clone(),
                    reason: format!(
                        "the broker closed the connection before answering ApiVersions ({error}); \
                         is this a TLS listener? check SECURITY_PROTOCOL"
                    ),
                    fatal: false,
                }
            }
            other => other,
        }
    }

    /// SaslHandshake v1 (v0 would mean raw tokens without SaslAuthenticate), then SaslAuthenticate
    /// until rsasl says the mechanism is done (KIP-152). rsasl checks the server's SCRAM signature.
    async fn authenticate(
        &mut self,
        sasl: &security::SaslCredentials,
    ) -> Result<(), TransportError> {
        use rsasl::prelude::{Mechname, SASLClient, SASLConfig};
        let fatal = |addr: &str, reason: String| TransportError::Security {
            addr: addr.to_string(),
            reason,
            fatal: true,
        };
        let mechanism = sasl.mechanism.name();
        let version = self
            .version_of::<SaslHandshakeRequest>(VersionRange { min: 1, max: 1 })
            .map_err(|_| {
                fatal(
                    &self.addr,
                    "the broker does not offer SaslHandshake v1: is this a SASL listener? check \
                     SECURITY_PROTOCOL"
                        .into(),
                )
            })?;
        let request =
            SaslHandshakeRequest::default().with_mechanism(StrBytes::from_static_str(mechanism));
        let response = self
            .call(&request, version, SASL_STEP_TIMEOUT)
            .await
            .map_err(|e| match e {
                TransportError::Io { error, .. } => fatal(
                    &self.addr,
                    format!(
                        "the broker closed the connection on SaslHandshake ({error}): is this a \
                         SASL listener? check SECURITY_PROTOCOL"
                    ),
                ),
                other => other,
            })?;
        if response.error_code == ResponseError::UnsupportedSaslMechanism.code() {
            let enabled: Vec<&str> = response.mechanisms.iter().map(|m| m.as_str()).collect();
            return Err(fatal(
                &self.addr,
                format!(
                    "the broker does not enable SASL_MECHANISM={mechanism}; it enables: {}",
                    if enabled.is_empty() {
                        "none".to_string()
                    } else {
                        enabled.join(", ")
                    }
                ),
            ));
        }
        if response.error_code != 0 {
            return Err(fatal(
                &self.addr,
                format!(
                    "SaslHandshake failed: {}: is this a SASL listener? check SECURITY_PROTOCOL",
                    error_name(response.error_code)
                ),
            ));
        }
        let config = SASLConfig::with_credentials(
            None,
            sasl.username.clone(),
            sasl.password.expose().to_string(),
        )
        .map_err(|e| fatal(&self.addr, format!("SASL set-up: {e}")))?;
        let name = Mechname::parse(mechanism.as_bytes())
            .map_err(|e| fatal(&self.addr, format!("SASL mechanism {mechanism}: {e}")))?;
        let mut session = SASLClient::new(config)
            .start_suggested(&[name])
            .map_err(|e| fatal(&self.addr, format!("SASL mechanism {mechanism}: {e}")))?;
        let version =
            self.version_of::<SaslAuthenticateRequest>(VersionRange { min: 0, max: 2 })?;
        let mut received: Option<Bytes> = None;
        // SCRAM takes two round trips, PLAIN one; a mechanism wanting more is broken.
        for _ in 0..MAX_SASL_STEPS {
            let mut message = Vec::new();
            let state = session
                .step(received.as_deref(), &mut message)
                .map_err(|e| {
                    fatal(
                        &self.addr,
                        format!(
                            "SASL {mechanism} exchange failed: {e} (the broker's proof did not \
                             verify: wrong password or not the broker we think)"
                        ),
                    )
                })?;
            if state.has_sent_message() {
                let request = SaslAuthenticateRequest::default().with_auth_bytes(message.into());
                let response = self.call(&request, version, SASL_STEP_TIMEOUT).await?;
                if response.error_code != 0 {
                    let detail = response
                        .error_message
                        .as_ref()
                        .map_or_else(String::new, |m| format!(": {}", m.as_str()));
                    return Err(fatal(
                        &self.addr,
                        format!(
                            "SASL authentication failed for user `{}` with {mechanism} ({}{detail}); \
                             check SASL_USERNAME and SASL_PASSWORD",
                            sasl.username,
                            error_name(response.error_code),
                        ),
                    ));
                }
                received = Some(response.auth_bytes);
            }
            if state.is_finished() {
                return Ok(());
            }
        }
        Err(fatal(
            &self.addr,
            format!("SASL {mechanism} did not finish within {MAX_SASL_STEPS} steps"),
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
        stream::classify(&self.addr, error, self.mode)
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

/// How long one SASL round trip may take (within the connect timeout).
const SASL_STEP_TIMEOUT: Duration = Duration::from_secs(10);
/// The most SaslAuthenticate round trips a mechanism may take.
const MAX_SASL_STEPS: usize = 4;

/// `code`'s name as Kafka writes it, or the number.
fn error_name(code: i16) -> String {
    match ResponseError::try_from_code(code) {
        Some(e) => format!("{e:?}"),
        None => format!("error code {code}"),
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
