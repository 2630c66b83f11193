//! Connecting to Kafka (with rskafka, or any client through [`retry_connect`]), and deciding which broker errors are worth a retry.

use std::{future::Future, time::Duration};

use rskafka::{
    client::{
        error::{Error as ClientError, ProtocolError},
        Client,
    },
    BackoffConfig,
};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;
use transport::{Connection, Security, TransportError};

use crate::backoff::Backoff;

/// How long one rskafka call keeps retrying internally (a few quick tries, enough to follow a leader
/// move) before it hands the error back to us. Short, so our own loops stay in charge of logging,
/// deadlines and shutdown: rskafka's default retries forever, with waits growing to 500 s.
pub const REQUEST_DEADLINE: Duration = Duration::from_secs(1);

/// Why [`connect`] (or [`retry_connect`] with another client's error `E`) gave up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectError<E = ClientError> {
    /// Shutdown was requested while waiting for the brokers.
    #[error("cancelled while connecting to {brokers}")]
    Cancelled {
        /// The bootstrap list, for the message.
        brokers: String,
    },
    /// The deadline passed without a broker answering.
    #[error("no broker in {brokers} answered within {waited:?}: {last_error}")]
    Timeout {
        /// The bootstrap list, for the message.
        brokers: String,
        /// How long we tried.
        waited: Duration,
        /// The last failure seen.
        last_error: E,
    },
    /// A broker refused us for a reason retrying cannot fix: authentication, TLS trust, a
    /// listener of another security protocol. The error names the broker.
    #[error("{error}")]
    Fatal {
        /// The bootstrap list, for the message.
        brokers: String,
        /// What the broker (or the handshake) said.
        error: E,
    },
}

/// rskafka's own retry settings: short, capped, bounded by [`REQUEST_DEADLINE`].
pub fn rskafka_backoff() -> BackoffConfig {
    BackoffConfig {
        init_backoff: Duration::from_millis(100),
        max_backoff: Duration::from_secs(1),
        base: 2.0,
        deadline: Some(REQUEST_DEADLINE),
    }
}

/// Why [`connect`] gave up: our own handshake failed for good, or rskafka's client did.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientConnectError {
    /// The security handshake (TLS, SASL) on our own connection failed for good, or shutdown came
    /// first.
    #[error(transparent)]
    Handshake(#[from] ConnectError<TransportError>),
    /// rskafka's client could not be built.
    #[error(transparent)]
    Client(#[from] ConnectError),
}

/// Builds an rskafka client for `brokers` with `security`, as [`retry_connect`] does. One of our
/// own connections proves the handshake: a wrong password or an untrusted certificate is reported in
/// plain words and ends the wait, where rskafka's error would be retried forever.
///
/// The first try runs that check and rskafka's bootstrap at once, so a reachable broker costs no
/// extra round trip before the first request (a producer's start → first ack). Should either fail,
/// the check runs alone first, with its backoff and its plain words, then rskafka.
pub async fn connect(
    brokers: &[String],
    client_id: &str,
    security: &Security,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Result<Client, ClientConnectError> {
    let build = || async {
        let attempt = crate::security::client_builder(brokers, security)
            .client_id(client_id)
            .backoff_config(rskafka_backoff())
            .build();
        // One attempt is bounded by the deadline too: a host that accepts the connection and never
        // answers (a wrong port, a firewall that drops) would otherwise hold it far past it.
        match deadline {
            Some(deadline) => tokio::time::timeout_at(deadline, attempt)
                .await
                .unwrap_or(Err(ClientError::Timeout)),
            None => attempt.await,
        }
    };
    let first = async {
        tokio::join!(
            handshake_once(brokers, client_id, security, deadline),
            // rskafka's own retries end after REQUEST_DEADLINE: a broker that is down falls
            // through to the checked path below within a second.
            tokio::time::timeout(ATTEMPT_TIMEOUT, build()),
        )
    };
    let first = tokio::select! {
        r = first => r,
        _ = cancel.cancelled() => {
            let brokers = brokers.join(",");
            return Err(ConnectError::<TransportError>::Cancelled { brokers }.into());
        }
    };
    if let (Ok(()), Ok(Ok(client))) = first {
        return Ok(client);
    }
    preflight(brokers, client_id, security, deadline, cancel).await?;
    retry_connect(brokers, deadline, cancel, build)
        .await
        .map_err(ClientConnectError::from)
}

/// How long one connection attempt to one broker may take (a host that accepts the connection and
/// never answers holds an attempt for at most this long).
pub const ATTEMPT_TIMEOUT: Duration = Duration::from_secs(10);

/// One pass over `brokers`: the first connection `connect` makes (each attempt bounded by
/// [`ATTEMPT_TIMEOUT`] and by `deadline`), or the first error `fatal` calls fatal (no other broker
/// will accept a wrong password either), or the last error; `empty` when there are no brokers.
/// [`retry_connect_unless`] repeats it with backoff.
pub async fn first_broker<T, E>(
    brokers: &[String],
    deadline: Option<Instant>,
    fatal: impl Fn(&E) -> bool,
    empty: impl FnOnce() -> E,
    mut connect: impl AsyncFnMut(&str, Duration) -> Result<T, E>,
) -> Result<T, E> {
    let mut last = None;
    for addr in brokers {
        let mut timeout = ATTEMPT_TIMEOUT;
        if let Some(deadline) = deadline {
            timeout = timeout.min(deadline.saturating_duration_since(Instant::now()));
        }
        match connect(addr, timeout).await {
            Ok(conn) => return Ok(conn),
            Err(e) if fatal(&e) => return Err(e),
            Err(e) => last = Some(e),
        }
    }
    Err(last.unwrap_or_else(empty))
}

/// One try of [`preflight`]: our handshake with the first broker of `brokers` that completes it.
async fn handshake_once(
    brokers: &[String],
    client_id: &str,
    security: &Security,
    deadline: Option<Instant>,
) -> Result<(), TransportError> {
    first_broker(
        brokers,
        deadline,
        TransportError::is_fatal,
        || TransportError::Io {
            addr: String::new(),
            error: std::io::Error::other("KAFKA_BROKERS is empty"),
        },
        async |addr, timeout| {
            Connection::connect_secure(addr, client_id, timeout, security)
                .await
                .map(drop)
        },
    )
    .await
}

/// Waits until a broker of `brokers` completes our own handshake (TCP, TLS, ApiVersions, SASL), as
/// [`retry_connect_unless`] does, giving up at once on an error [`TransportError::is_fatal`] calls
/// fatal.
pub async fn preflight(
    brokers: &[String],
    client_id: &str,
    security: &Security,
    deadline: Option<Instant>,
    cancel: &CancellationToken,
) -> Result<(), ConnectError<TransportError>> {
    retry_connect_unless(brokers, deadline, cancel, TransportError::is_fatal, || {
        handshake_once(brokers, client_id, security, deadline)
    })
    .await
}

/// [`retry_connect_unless`] for an error that is never fatal.
pub async fn retry_connect<T, E, F, Fut>(
    brokers: &[String],
    deadline: Option<Instant>,
    cancel: &CancellationToken,
    attempt: F,
) -> Result<T, ConnectError<E>>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    retry_connect_unless(brokers, deadline, cancel, |_| false, attempt).await
}

/// Runs `attempt` (one try at reaching the cluster behind `brokers`) with backoff until it succeeds,
/// `deadline` passes (`None`: wait as long as it takes, as a pod should while Kafka starts) or
/// `cancel` fires. Logs the first failure at warn and the recovery at info, not every attempt. The
/// attempt bounds itself by the deadline. An error `fatal` accepts ends the wait at once
/// ([`ConnectError::Fatal`]): a wrong password does not get better with time.
pub async fn retry_connect_unless<T, E, F, Fut>(
    brokers: &[String],
    deadline: Option<Instant>,
    cancel: &CancellationToken,
    fatal: impl Fn(&E) -> bool,
    mut attempt: F,
) -> Result<T, ConnectError<E>>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let started = Instant::now();
    let list = brokers.join(",");
    let mut backoff = Backoff::new(Duration::from_millis(200), Duration::from_secs(10));
    loop {
        let result = tokio::select! {
            r = attempt() => r,
            _ = cancel.cancelled() => return Err(ConnectError::Cancelled { brokers: list }),
        };
        let err = match result {
            Ok(client) => {
                if backoff.attempts() > 0 {
                    tracing::info!(brokers = %list, waited = ?started.elapsed(), "connected to Kafka");
                }
                return Ok(client);
            }
            Err(err) => err,
        };
        if fatal(&err) {
            return Err(ConnectError::Fatal {
                brokers: list,
                error: err,
            });
        }
        if backoff.attempts() == 0 {
            tracing::warn!(brokers = %list, cause = %err, "Kafka is not reachable yet; retrying with backoff");
        } else {
            tracing::debug!(brokers = %list, cause = %err, attempt = backoff.attempts(), "still waiting for Kafka");
        }
        let delay = backoff.next_delay();
        if let Some(deadline) = deadline {
            // No attempt starts that the deadline would cut short at once.
            if Instant::now() + delay >= deadline {
                return Err(ConnectError::Timeout {
                    brokers: list,
                    waited: started.elapsed(),
                    last_error: err,
                });
            }
        }
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = cancel.cancelled() => return Err(ConnectError::Cancelled { brokers: list }),
        }
    }
}

/// The broker error code inside an rskafka error, if it carries one.
pub fn protocol_error(err: &ClientError) -> Option<ProtocolError> {
    match err {
        ClientError::ServerError { protocol_error, .. } => Some(*protocol_error),
        _ => None,
    }
}

/// Whether retrying the same request later can succeed: network trouble, a leader moving, a topic
/// still being created, a broker restarting. Everything else (authorization, a record too large, an
/// invalid topic) needs a person.
pub fn is_retriable(err: &ClientError) -> bool {
    use ProtocolError as P;
    match err {
        ClientError::Connection(_)
        | ClientError::Request(_)
        | ClientError::RetryFailed(_)
        | ClientError::Timeout => true,
        ClientError::ServerError { protocol_error, .. } => matches!(
            protocol_error,
            P::UnknownServerError
                | P::CorruptMessage
                | P::UnknownTopicOrPartition
                | P::LeaderNotAvailable
                | P::NotLeaderOrFollower
                | P::RequestTimedOut
                | P::BrokerNotAvailable
                | P::ReplicaNotAvailable
                | P::NetworkException
                | P::NotEnoughReplicas
                | P::NotEnoughReplicasAfterAppend
                | P::KafkaStorageError
                | P::NotController
                | P::OffsetNotAvailable
                | P::FencedLeaderEpoch
                | P::UnknownLeaderEpoch
                | P::ThrottlingQuotaExceeded
        ),
        ClientError::InvalidResponse(_) => false,
        // rskafka's error is non-exhaustive: an unknown kind is treated as transient, so a new
        // network failure mode retries instead of killing a pod.
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A listener that accepts connections and never says a word: what a wrong port (or a host
    /// behind a firewall that drops) looks like to a client. The deadline must still hold.
    #[tokio::test]
    async fn the_deadline_holds_against_a_broker_that_never_answers() {
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr").to_string();
        let held = tokio::spawn(async move {
            let mut open = Vec::new();
            while let Ok((socket, _)) = listener.accept().await {
                open.push(socket);
            }
        });
        let started = Instant::now();
        let deadline = started + Duration::from_secs(1);
        let cancel = CancellationToken::new();
        // The outer bound only keeps a broken build from hanging the suite: without the deadline on
        // each attempt, rskafka waits for the answer forever.
        let result = tokio::time::timeout(
            Duration::from_secs(60),
            connect(
                std::slice::from_ref(&addr),
                "t",
                &Security::plaintext(),
                Some(deadline),
                &cancel,
            ),
        )
        .await
        .expect("connect returned at all");
        match result {
            Err(ClientConnectError::Handshake(ConnectError::Timeout { brokers, .. })) => {
                assert_eq!(brokers, addr)
            }
            Err(other) => panic!("expected a timeout, got {other}"),
            Ok(_) => panic!("a silent listener is not a broker"),
        }
        assert!(
            Instant::now() >= deadline,
            "gave up before the deadline: it waited {:?}",
            started.elapsed()
        );
        held.abort();
    }
}
