//! The coordinator connection: our own TCP stream speaking `kafka-protocol` codecs, because rskafka
//! keeps its protocol layer private and has no group APIs.
//!
//! One request at a time: the state machine never has two in flight, so there is no pipelining to
//! get wrong. A request the caller abandons (a timeout, shutdown during a held JoinGroup) must drop the
//! connection, since its late answer would arrive in place of the next one; `call` takes `&mut self`
//! and the driver replaces the connection after any error.

use std::time::Duration;

use bytes::{Bytes, BytesMut};
use kafka_protocol::ResponseError;
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt, BufWriter},
    net::TcpStream,
};

use crate::wire::{self, Request, Response, Versions, WireError};

/// Largest response frame accepted. Group responses are small; a bigger size prefix means we are out
/// of step with the stream.
const MAX_FRAME: usize = 64 * 1024 * 1024;

/// A failed connection or request. Every variant means: drop this connection.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectionError {
    /// Connecting, reading or writing failed. (The cause is in the message, not a `source`: these
    /// are logged with `to_string`, where a source would be lost.)
    #[error("{addr}: {error}")]
    Io {
        /// The broker.
        addr: String,
        /// The I/O error.
        error: std::io::Error,
    },
    /// Connecting took too long.
    #[error("{addr}: connect timed out after {0:?}", .timeout)]
    ConnectTimeout {
        /// The broker.
        addr: String,
        /// How long we waited.
        timeout: Duration,
    },
    /// Encoding, decoding or version negotiation failed.
    #[error("{addr}: {error}")]
    Wire {
        /// The broker.
        addr: String,
        /// What failed.
        error: WireError,
    },
    /// The broker sent a frame larger than [`MAX_FRAME`].
    #[error("{addr}: response frame of {size} bytes exceeds the {MAX_FRAME} byte limit")]
    FrameTooLarge {
        /// The broker.
        addr: String,
        /// The announced size.
        size: usize,
    },
}

/// A connection to one broker with negotiated versions.
#[derive(Debug)]
pub struct Connection {
    /// The socket, writes buffered so a frame goes out in one syscall.
    stream: BufWriter<TcpStream>,
    /// `host:port`, for error messages.
    addr: String,
    /// Sent in every request header; shows in broker logs and DescribeGroups.
    client_id: String,
    /// Next correlation id.
    correlation_id: i32,
    /// Versions agreed with this broker.
    versions: Versions,
}

impl Connection {
    /// Connects to `addr` and negotiates API versions.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ConnectionError> {
        let io = |error| ConnectionError::Io {
            addr: addr.to_string(),
            error,
        };
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| ConnectionError::ConnectTimeout {
                addr: addr.to_string(),
                timeout,
            })?
            .map_err(io)?;
        stream.set_nodelay(true).map_err(io)?;
        let mut conn = Self {
            stream: BufWriter::new(stream),
            addr: addr.to_string(),
            client_id: client_id.to_string(),
            correlation_id: 0,
            versions: Versions::default(),
        };
        let negotiate = conn.negotiate();
        conn.versions = tokio::time::timeout(timeout, negotiate)
            .await
            .map_err(|_| ConnectionError::ConnectTimeout {
                addr: addr.to_string(),
                timeout,
            })??;
        Ok(conn)
    }

    /// The broker address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The versions agreed with this broker.
    pub fn versions(&self) -> &Versions {
        &self.versions
    }

    /// ApiVersions v3; a broker too old for it answers UNSUPPORTED_VERSION with its own range, and we
    /// ask again at v0.
    async fn negotiate(&mut self) -> Result<Versions, ConnectionError> {
        let mut version = 3;
        loop {
            let id = self.next_correlation_id();
            let frame =
                wire::api_versions_frame(version, id, &self.client_id).map_err(|e| self.wire(e))?;
            self.write_frame(&frame).await?;
            let body = self.read_frame().await?;
            let response =
                wire::decode_api_versions(version, id, body).map_err(|e| self.wire(e))?;
            if response.error_code == ResponseError::UnsupportedVersion.code() && version > 0 {
                version = 0;
                continue;
            }
            return Versions::negotiate(&response).map_err(|e| self.wire(e));
        }
    }

    /// Sends `request` at the negotiated version and waits for its response.
    pub async fn call(&mut self, mut request: Request) -> Result<Response, ConnectionError> {
        let api = request.api_key();
        let version = self.versions.get(api).ok_or_else(|| {
            self.wire(WireError::UnsupportedVersion {
                api,
                broker: "not negotiated".into(),
                ours: wire::supported(api),
            })
        })?;
        request.fit(version);
        let id = self.next_correlation_id();
        let frame = request
            .encode_frame(version, id, &self.client_id)
            .map_err(|e| self.wire(e))?;
        self.write_frame(&frame).await?;
        let body = self.read_frame().await?;
        wire::decode_response(api, version, id, body).map_err(|e| self.wire(e))
    }

    fn next_correlation_id(&mut self) -> i32 {
        self.correlation_id = self.correlation_id.wrapping_add(1);
        self.correlation_id
    }

    fn wire(&self, error: WireError) -> ConnectionError {
        ConnectionError::Wire {
            addr: self.addr.clone(),
            error,
        }
    }

    fn io(&self, error: std::io::Error) -> ConnectionError {
        ConnectionError::Io {
            addr: self.addr.clone(),
            error,
        }
    }

    async fn write_frame(&mut self, frame: &[u8]) -> Result<(), ConnectionError> {
        self.stream.write_all(frame).await.map_err(|e| self.io(e))?;
        self.stream.flush().await.map_err(|e| self.io(e))
    }

    async fn read_frame(&mut self) -> Result<Bytes, ConnectionError> {
        let mut size = [0u8; 4];
        self.stream
            .read_exact(&mut size)
            .await
            .map_err(|e| self.io(e))?;
        let size = i32::from_be_bytes(size);
        let size = usize::try_from(size).unwrap_or(usize::MAX);
        if size > MAX_FRAME {
            return Err(ConnectionError::FrameTooLarge {
                addr: self.addr.clone(),
                size,
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
