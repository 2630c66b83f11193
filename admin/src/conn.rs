//! The admin APIs on a [`transport::Connection`]: which versions of each request `admin` speaks, and
//! one call that picks the newest the broker shares. Used by `create-topic`, `lag` and the exporter.

use std::time::Duration;

use kafka_protocol::{
    messages::ApiKey,
    protocol::{Request, VersionRange},
};
use runtime::kafka::{first_broker, retry_connect_unless, ConnectError};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use transport::{Connection, Security};

pub use transport::TransportError as ConnError;

/// Largest response accepted.
const MAX_FRAME: usize = 128 * 1024 * 1024;

/// The versions we use, per API: (oldest we can use, newest we know). OffsetFetch v8 is where one
/// request asks for many groups (KIP-709, Kafka 3.0); v9+ adds KIP-848 member fields we do not need.
/// Fetch stops at v12, the last before topic ids replace topic names. CreateTopics v2 is the oldest
/// Kafka 4 accepts (KIP-896).
fn ours(api: ApiKey) -> VersionRange {
    let (min, max) = match api {
        ApiKey::Metadata => (1, 12),
        ApiKey::ListGroups => (0, 4),
        ApiKey::DescribeGroups => (0, 5),
        ApiKey::OffsetFetch => (8, 8),
        ApiKey::ListOffsets => (1, 8),
        ApiKey::Fetch => (4, 12),
        ApiKey::CreateTopics => (2, 7),
        ApiKey::ConsumerGroupDescribe => (0, 1),
        _ => (0, -1),
    };
    VersionRange { min, max }
}

/// A broker connection for the admin APIs in [`ours`].
#[derive(Debug)]
pub struct Conn(Connection);

impl Conn {
    /// Connects to `addr` (`host:port`) as `security` says and asks for its API versions, within
    /// `timeout`.
    pub async fn connect(
        addr: &str,
        client_id: &str,
        timeout: Duration,
        security: &Security,
    ) -> Result<Self, ConnError> {
        // A Fetch over a thousand partitions at 64 MiB in all, with its framing, fits.
        Connection::connect_secure(addr, client_id, timeout, security)
            .await
            .map(|c| Self(c.with_max_frame(MAX_FRAME)))
    }

    /// The broker address.
    pub fn addr(&self) -> &str {
        self.0.addr()
    }

    /// Sends `request` at the newest version both sides speak and waits for its response, within
    /// `timeout`. Returns the version with the response: some fields exist only from one on.
    pub async fn call<R: Request>(
        &mut self,
        request: &R,
        timeout: Duration,
    ) -> Result<(i16, R::Response), ConnError> {
        let api = ApiKey::try_from(R::KEY).unwrap_or(ApiKey::ApiVersions);
        let version = self.0.version_of::<R>(ours(api))?;
        self.0
            .call(request, version, timeout)
            .await
            .map(|r| (version, r))
    }
}

/// Connects to the first broker of `brokers` that answers, trying the list again with backoff until
/// `deadline` (`None`: as long as it takes) or `cancel`; logged as every binary logs waiting for Kafka.
/// A TLS or SASL failure ([`ConnError::is_fatal`]) ends the wait at once.
pub async fn bootstrap(
    brokers: &[String],
    client_id: &str,
    security: &Security,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Result<Conn, ConnectError<ConnError>> {
    retry_connect_unless(brokers, deadline, cancel, ConnError::is_fatal, || {
        first_broker(
            brokers,
            deadline,
            ConnError::is_fatal,
            || ConnError::Io {
                addr: String::new(),
                error: std::io::Error::other("KAFKA_BROKERS is empty"),
            },
            async |addr, timeout| Conn::connect(addr, client_id, timeout, security).await,
        )
    })
    .await
}
