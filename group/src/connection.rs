//! The coordinator connection: a [`transport::Connection`] (our own TCP stream speaking
//! `kafka-protocol` codecs, because rskafka keeps its protocol layer private and has no group APIs)
//! with the versions of every group API agreed at connect time.
//!
//! One request at a time: the state machine never has two in flight, so there is no pipelining to
//! get wrong. A request the caller abandons (a timeout, shutdown during a held JoinGroup) must drop the
//! connection, since its late answer would arrive in place of the next one; `call` takes `&mut self`
//! and the driver replaces the connection after any error.

use std::time::Duration;

use transport::TransportError;

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

impl From<TransportError> for ConnectionError {
    fn from(err: TransportError) -> Self {
        match err {
            TransportError::Io { addr, error } => Self::Io { addr, error },
            TransportError::ConnectTimeout { addr, timeout } => {
                Self::ConnectTimeout { addr, timeout }
            }
            TransportError::UnsupportedVersion {
                addr,
                api,
                broker,
                ours,
            } => Self::Wire {
                addr,
                error: WireError::UnsupportedVersion { api, broker, ours },
            },
            TransportError::Codec { addr, what, reason } => Self::Wire {
                addr,
                error: WireError::Codec { what, reason },
            },
            TransportError::FrameTooLarge { addr, size, .. } => Self::FrameTooLarge { addr, size },
            // Calls here are unbounded (the driver times them); keep the message if one ever is.
            other => {
                let addr = match &other {
                    TransportError::RequestTimeout { addr, .. } => addr.clone(),
                    _ => String::new(),
                };
                Self::Io {
                    addr,
                    error: std::io::Error::new(std::io::ErrorKind::TimedOut, other.to_string()),
                }
            }
        }
    }
}

/// A connection to one broker with negotiated versions.
#[derive(Debug)]
pub struct Connection {
    /// The socket, framing and correlation ids.
    inner: transport::Connection,
    /// Versions agreed with this broker.
    versions: Versions,
}

impl Connection {
    /// Connects to `addr` in plaintext and negotiates API versions.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
    ) -> Result<Self, ConnectionError> {
        Self::connect_secure(addr, client_id, timeout, &transport::Security::plaintext()).await
    }

    /// Connects to `addr` as `security` says (TLS, SASL) and negotiates API versions.
    pub async fn connect_secure(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &transport::Security,
    ) -> Result<Self, ConnectionError> {
        let inner = transport::Connection::connect_secure(addr, client_id, timeout, security)
            .await?
            .with_max_frame(MAX_FRAME);
        let versions = Versions::from_broker(inner.broker_versions()).map_err(|error| {
            ConnectionError::Wire {
                addr: addr.to_string(),
                error,
            }
        })?;
        Ok(Self { inner, versions })
    }

    /// The broker address.
    pub fn addr(&self) -> &str {
        self.inner.addr()
    }

    /// The versions agreed with this broker.
    pub fn versions(&self) -> &Versions {
        &self.versions
    }

    /// Sends `request` at the negotiated version and waits for its response. Unbounded here: the
    /// driver bounds every call (a held JoinGroup may take the whole rebalance timeout).
    pub async fn call(&mut self, mut request: Request) -> Result<Response, ConnectionError> {
        let api = request.api_key();
        let version = self
            .versions
            .get(api)
            .ok_or_else(|| ConnectionError::Wire {
                addr: self.addr().to_string(),
                error: WireError::UnsupportedVersion {
                    api,
                    broker: "not negotiated".into(),
                    ours: wire::supported(api),
                },
            })?;
        let version = request.version_for(version);
        request.fit(version);
        let c = &mut self.inner;
        let t = Duration::MAX;
        Ok(match request {
            Request::FindCoordinator(r) => Response::FindCoordinator(c.call(&r, version, t).await?),
            Request::JoinGroup(r) => Response::JoinGroup(c.call(&r, version, t).await?),
            Request::SyncGroup(r) => Response::SyncGroup(c.call(&r, version, t).await?),
            Request::Heartbeat(r) => Response::Heartbeat(c.call(&r, version, t).await?),
            Request::OffsetFetch(r) => Response::OffsetFetch(c.call(&r, version, t).await?),
            Request::OffsetCommit(r) => Response::OffsetCommit(c.call(&r, version, t).await?),
            Request::LeaveGroup(r) => Response::LeaveGroup(c.call(&r, version, t).await?),
            Request::Metadata(r) => Response::Metadata(c.call(&r, version, t).await?),
            Request::DescribeGroups(r) => Response::DescribeGroups(c.call(&r, version, t).await?),
            Request::ConsumerGroupHeartbeat(r) => {
                Response::ConsumerGroupHeartbeat(c.call(&r, version, t).await?)
            }
            Request::ConsumerGroupDescribe(r) => {
                Response::ConsumerGroupDescribe(c.call(&r, version, t).await?)
            }
        })
    }
}
