//! The byte stream under a [`Connection`](crate::Connection): plain TCP or TLS over it, and the
//! translation of TLS failures into words an operator can act on.

use std::{
    io,
    pin::Pin,
    sync::Arc,
    task::{Context, Poll},
};

use rustls::{pki_types::ServerName, AlertDescription, CertificateError, ClientConfig};
use tokio::{
    io::{AsyncRead, AsyncWrite, ReadBuf},
    net::TcpStream,
};
use tokio_rustls::{client::TlsStream, TlsConnector};

use crate::TransportError;

/// What a connection speaks, for explaining its failures.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Mode {
    /// No TLS.
    Plain,
    /// TLS; `true` when we present a client certificate.
    Tls(bool),
}

/// Plain TCP or TLS.
pub(crate) enum Stream {
    /// `PLAINTEXT` and `SASL_PLAINTEXT`.
    Plain(TcpStream),
    /// `SSL` and `SASL_SSL`; boxed, the TLS state is large.
    Tls(Box<TlsStream<TcpStream>>),
}

impl std::fmt::Debug for Stream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Self::Plain(_) => "Plain",
            Self::Tls(_) => "Tls",
        })
    }
}

/// The TLS handshake on `tcp`, verifying the broker's certificate against `addr`'s host.
pub(crate) async fn tls(
    tcp: TcpStream,
    addr: &str,
    config: Arc<ClientConfig>,
) -> io::Result<Stream> {
    let host = host_of(addr);
    let name = ServerName::try_from(host.to_string()).map_err(|e| {
        io::Error::new(
            io::ErrorKind::InvalidInput,
            format!("`{host}` is not a host name for TLS: {e}"),
        )
    })?;
    let stream = TlsConnector::from(config).connect(name, tcp).await?;
    Ok(Stream::Tls(Box::new(stream)))
}

/// `host` of `host:port`, `[v6]:port` without its brackets.
fn host_of(addr: &str) -> &str {
    let host = addr.rsplit_once(':').map_or(addr, |(h, _)| h);
    host.strip_prefix('[')
        .and_then(|h| h.strip_suffix(']'))
        .unwrap_or(host)
}

const CHECK: &str = "check SECURITY_PROTOCOL";

/// An I/O error on a connection in `mode`, TLS failures explained.
pub(crate) fn classify(addr: &str, error: io::Error, mode: Mode) -> TransportError {
    let security = |reason: String, fatal: bool| TransportError::Security {
        addr: addr.to_string(),
        reason,
        fatal,
    };
    let Mode::Tls(client_cert) = mode else {
        return TransportError::Io {
            addr: addr.to_string(),
            error,
        };
    };
    let host = host_of(addr);
    let rustls_error = error
        .get_ref()
        .and_then(|inner| inner.downcast_ref::<rustls::Error>());
    match rustls_error {
        Some(rustls::Error::InvalidCertificate(cert)) => security(
            match cert {
                CertificateError::NotValidForName | CertificateError::NotValidForNameContext { .. } => format!(
                    "the broker's TLS certificate is not valid for host name `{host}` \
                     (SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=none skips this check)"
                ),
                CertificateError::UnknownIssuer | CertificateError::BadSignature => format!(
                    "the broker's TLS certificate is not signed by a CA in SSL_CA_LOCATION ({cert:?})"
                ),
                CertificateError::Expired | CertificateError::ExpiredContext { .. } => {
                    "the broker's TLS certificate has expired".to_string()
                }
                other => format!("the broker's TLS certificate was rejected: {other:?}"),
            },
            true,
        ),
        Some(rustls::Error::AlertReceived(alert)) => security(
            match alert {
                AlertDescription::CertificateExpired => "the broker rejected our client \
                    certificate: it has expired (SSL_CERTIFICATE_LOCATION)"
                    .to_string(),
                AlertDescription::CertificateRequired
                | AlertDescription::BadCertificate
                | AlertDescription::HandshakeFailure
                    if !client_cert =>
                {
                    format!(
                        "the broker wants a client certificate (mutual TLS; alert {alert:?}): set \
                         SSL_CERTIFICATE_LOCATION and SSL_KEY_LOCATION"
                    )
                }
                AlertDescription::BadCertificate
                | AlertDescription::UnknownCA
                | AlertDescription::CertificateUnknown
                | AlertDescription::CertificateRevoked
                | AlertDescription::UnsupportedCertificate => format!(
                    "the broker rejected our client certificate ({alert:?}): check \
                     SSL_CERTIFICATE_LOCATION (signed by a CA the broker trusts? still valid?)"
                ),
                other => format!("the broker ended the TLS handshake with alert {other:?}"),
            },
            true,
        ),
        Some(rustls::Error::InvalidMessage(_)) | Some(rustls::Error::InappropriateMessage { .. }) => {
            security(
                format!("the broker's answer is not TLS ({error}): is this a TLS listener? {CHECK}"),
                true,
            )
        }
        Some(other) => security(format!("TLS failed: {other}"), true),
        None if error.kind() == io::ErrorKind::UnexpectedEof
            || error.kind() == io::ErrorKind::ConnectionReset =>
        {
            security(
                format!(
                    "the broker closed the connection during TLS ({error}): is this a TLS \
                     listener? {CHECK}"
                ),
                true,
            )
        }
        None => TransportError::Io {
            addr: addr.to_string(),
            error,
        },
    }
}

impl AsyncRead for Stream {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_read(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_read(cx, buf),
        }
    }
}

impl AsyncWrite for Stream {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_write(cx, buf),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_write(cx, buf),
        }
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_flush(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_flush(cx),
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        match self.get_mut() {
            Self::Plain(s) => Pin::new(s).poll_shutdown(cx),
            Self::Tls(s) => Pin::new(s.as_mut()).poll_shutdown(cx),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_host_is_the_part_before_the_port() {
        assert_eq!(host_of("127.0.0.1:9093"), "127.0.0.1");
        assert_eq!(host_of("kafka-0.kafka:9093"), "kafka-0.kafka");
        assert_eq!(host_of("[::1]:9093"), "::1");
    }

    #[test]
    fn an_expired_client_certificate_is_named() {
        let error = io::Error::new(
            io::ErrorKind::InvalidData,
            rustls::Error::AlertReceived(AlertDescription::CertificateExpired),
        );
        let err = classify("127.0.0.1:9093", error, Mode::Tls(true));
        assert!(err.is_fatal());
        assert!(err.to_string().contains("expired"), "{err}");
    }

    #[test]
    fn eof_in_tls_asks_whether_the_listener_is_tls() {
        let error = io::Error::new(io::ErrorKind::UnexpectedEof, "tls handshake eof");
        let err = classify("127.0.0.1:9092", error, Mode::Tls(false));
        assert!(err.is_fatal());
        assert!(err.to_string().contains("is this a TLS listener"), "{err}");
    }
}
