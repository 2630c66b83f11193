//! One connection to one broker for the admin APIs the group crate's wire layer does not speak:
//! ListGroups, multi-group OffsetFetch (v8+), per-leader ListOffsets, Metadata with leaders, and
//! Fetch for one record's timestamp. Generic over `kafka-protocol`'s request types, one request in
//! flight at a time (a caller that abandons a request drops the connection).

use std::{collections::BTreeMap, time::Duration};

use bytes::{Buf, BufMut, Bytes, BytesMut};
use kafka_protocol::{
    messages::{ApiKey, ApiVersionsRequest, ApiVersionsResponse, RequestHeader, ResponseHeader},
    protocol::{Decodable, Encodable, HeaderVersion, Request, StrBytes},
};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufWriter},
    net::TcpStream,
};

/// Largest response accepted: a Fetch over a thousand partitions stays well under it.
const MAX_FRAME: usize = 128 * 1024 * 1024;

/// Why a request to a broker failed. Every variant means: drop this connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnError {
    /// Connecting, reading or writing failed, or took too long.
    #[error("{addr}: {reason}")]
    Io {
        /// The broker.
        addr: String,
        /// What happened.
        reason: String,
    },
    /// Encoding or decoding failed.
    #[error("{addr}: {what}: {reason}")]
    Codec {
        /// The broker.
        addr: String,
        /// The API.
        what: &'static str,
        /// The codec's message.
        reason: String,
    },
    /// The broker does not speak a version we can use.
    #[error("{addr}: the broker does not support {api:?} v{min} or later")]
    Unsupported {
        /// The broker.
        addr: String,
        /// The API.
        api: ApiKey,
        /// The oldest version we can use.
        min: i16,
    },
}

/// The versions we use, per API: (oldest we can use, newest we know). OffsetFetch v8 is where one
/// request asks for many groups (KIP-709, Kafka 3.0); v9+ adds KIP-848 member fields we do not need.
/// Fetch stops at v12, the last before topic ids replace topic names.
fn ours(api: ApiKey) -> (i16, i16) {
    match api {
        ApiKey::Metadata => (1, 12),
        ApiKey::ListGroups => (0, 4),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::OffsetFetch => (8, 8),
        ApiKey::ListOffsets => (1, 8),
        ApiKey::Fetch => (4, 12),
        _ => (0, -1),
    }
}

/// A connection with the versions agreed for the APIs in [`ours`].
#[derive(Debug)]
pub struct Conn {
    stream: BufWriter<TcpStream>,
    addr: String,
    client_id: String,
    correlation_id: i32,
    /// The broker's newest version per API key, for the APIs we use.
    versions: BTreeMap<i16, (i16, i16)>,
}

impl Conn {
    /// Connects to `addr` (`host:port`) and asks for its API versions, within `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ConnError> {
        let io = |reason: String| ConnError::Io {
            addr: addr.to_string(),
            reason,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| io(format!("connect timed out after {timeout:?}")))?
            .map_err(|e| io(e.to_string()))?;
        stream.set_nodelay(true).map_err(|e| io(e.to_string()))?;
        let mut conn = Self {
            stream: BufWriter::new(stream),
            addr: addr.to_string(),
            client_id: client_id.to_string(),
            correlation_id: 0,
            versions: BTreeMap::new(),
        };
        let request = ApiVersionsRequest::default()
            .with_client_software_name(StrBytes::from_static_str("kafka-lag-lab-exporter"))
            .with_client_software_version(StrBytes::from_static_str(env!("CARGO_PKG_VERSION")));
        let response: ApiVersionsResponse =
            tokio::time::timeout(timeout, conn.send(ApiKey::ApiVersions, 3, &request))
                .await
                .map_err(|_| io(format!("ApiVersions timed out after {timeout:?}")))??;
        for k in &response.api_keys {
            conn.versions
                .insert(k.api_key, (k.min_version, k.max_version));
        }
        Ok(conn)
    }

    /// The broker address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The version `R` is sent at: the newest both sides speak.
    pub fn version<R: Request>(&self) -> Result<i16, ConnError> {
        let api = ApiKey::try_from(R::KEY).map_err(|_| self.codec("request", "unknown API key"))?;
        let (min, max) = ours(api);
        match self.versions.get(&R::KEY) {
            Some(&(theirs_min, theirs_max)) if theirs_max >= min && theirs_min <= max => {
                Ok(theirs_max.min(max))
            }
            _ => Err(ConnError::Unsupported {
                addr: self.addr.clone(),
                api,
                min,
            }),
        }
    }

    /// Sends `request` at the agreed version and waits for its response, within `timeout`.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        timeout: Duration,
    ) -> Result<(i16, R::Response), ConnError> {
        let version = self.version::<R>()?;
        let api = ApiKey::try_from(R::KEY).map_err(|_| self.codec("request", "unknown API key"))?;
        match tokio::time::timeout(timeout, self.send(api, version, request)).await {
            Ok(r) => r.map(|r| (version, r)),
            Err(_) => Err(ConnError::Io {
                addr: self.addr.clone(),
                reason: format!("{api:?} got no answer within {timeout:?}"),
            }),
        }
    }

    async fn send<Req: Encodable + HeaderVersion, Resp: Decodable + HeaderVersion>(
        &mut self,
        api: ApiKey,
        version: i16,
        request: &Req,
    ) -> Result<Resp, ConnError> {
        let what = api_name(api);
        self.correlation_id = self.correlation_id.wrapping_add(1);
        let id = self.correlation_id;
        let header = RequestHeader::default()
            .with_request_api_key(api as i16)
            .with_request_api_version(version)
            .with_correlation_id(id)
            .with_client_id(Some(StrBytes::from_string(self.client_id.clone())));
        let mut body = BytesMut::new();
        header
            .encode(&mut body, Req::header_version(version))
            .and_then(|()| request.encode(&mut body, version))
            .map_err(|e| self.codec(what, &e.to_string()))?;
        let mut frame = BytesMut::with_capacity(body.len() + 4);
        frame
            .put_i32(i32::try_from(body.len()).map_err(|_| self.codec(what, "request too large"))?);
        frame.extend_from_slice(&body);
        self.stream
            .write_all(&frame)
            .await
            .map_err(|e| self.io(e))?;
        self.stream.flush().await.map_err(|e| self.io(e))?;

        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .await
            .map_err(|e| self.io(e))?;
        let size = usize::try_from(i32::from_be_bytes(size)).unwrap_or(usize::MAX);
        if size > MAX_FRAME {
            return Err(self.codec(what, &format!("response frame of {size} bytes")));
        }
        let mut buf = BytesMut::zeroed(size);
        self.stream
            .read_exact(&mut buf)
            .await
            .map_err(|e| self.io(e))?;
        let mut buf: Bytes = buf.freeze();
        let header = ResponseHeader::decode(&mut buf, Resp::header_version(version))
            .map_err(|e| self.codec(what, &e.to_string()))?;
        if header.correlation_id != id {
            return Err(self.codec(what, "correlation id out of step"));
        }
        let response =
            Resp::decode(&mut buf, version).map_err(|e| self.codec(what, &e.to_string()))?;
        if buf.has_remaining() {
            return Err(self.codec(what, &format!("{} bytes left over", buf.remaining())));
        }
        Ok(response)
    }

    fn io(&self, e: std::io::Error) -> ConnError {
        ConnError::Io {
            addr: self.addr.clone(),
            reason: e.to_string(),
        }
    }

    fn codec(&self, what: &'static str, reason: &str) -> ConnError {
        ConnError::Codec {
            addr: self.addr.clone(),
            what,
            reason: reason.to_string(),
        }
    }
}

fn api_name(api: ApiKey) -> &'static str {
    match api {
        ApiKey::ApiVersions => "ApiVersions",
        ApiKey::Metadata => "Metadata",
        ApiKey::ListGroups => "ListGroups",
        ApiKey::DescribeGroups => "DescribeGroups",
        ApiKey::OffsetFetch => "OffsetFetch",
        ApiKey::ListOffsets => "ListOffsets",
        ApiKey::Fetch => "Fetch",
        _ => "request",
    }
}
