//! How a connection is secured: TLS (rustls, `ring` provider) and SASL (rsasl: PLAIN,
//! SCRAM-SHA-256, SCRAM-SHA-512), Kafka's four `security.protocol`s.
//!
//! [`SecuritySettings`] is what an operator wrote (the names of Kafka's own client settings);
//! [`Security::from_settings`] checks it and reads the files (CA, client certificate and key, the
//! password) once at start-up, so a bad path fails there, naming the variable, and never on a
//! reconnect. [`Security`] is cheap to clone: every connection of a process shares one.
//!
//! The password never reaches a log: [`Password`]'s `Debug` and `Display` print `<redacted>`.

use std::{fmt, path::PathBuf, str::FromStr, sync::Arc};

use rustls::{
    client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier},
    pki_types::{pem::PemObject, CertificateDer, PrivateKeyDer, ServerName, UnixTime},
    ClientConfig, DigitallySignedStruct, RootCertStore, SignatureScheme,
};

/// Where the system's CA bundle is when `SSL_CA_LOCATION` is not set: Debian's and distroless's
/// path first, then Fedora's and Alpine's. Reading the file keeps the binaries small (no compiled-in
/// root list).
pub const SYSTEM_CA_BUNDLES: &[&str] = &[
    "/etc/ssl/certs/ca-certificates.crt",
    "/etc/pki/tls/certs/ca-bundle.crt",
    "/etc/ssl/cert.pem",
];

/// Kafka's `security.protocol`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SecurityProtocol {
    /// No TLS, no SASL.
    #[default]
    Plaintext,
    /// TLS, optionally with a client certificate.
    Ssl,
    /// SASL over plain TCP.
    SaslPlaintext,
    /// SASL inside TLS.
    SaslSsl,
}

impl SecurityProtocol {
    /// Every value, as written in `SECURITY_PROTOCOL`.
    pub const NAMES: &'static [&'static str] = &["PLAINTEXT", "SSL", "SASL_PLAINTEXT", "SASL_SSL"];

    /// Whether the connection is TLS.
    pub fn tls(self) -> bool {
        matches!(self, Self::Ssl | Self::SaslSsl)
    }

    /// Whether the connection authenticates with SASL.
    pub fn sasl(self) -> bool {
        matches!(self, Self::SaslPlaintext | Self::SaslSsl)
    }

    /// The name as Kafka writes it.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plaintext => "PLAINTEXT",
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

impl FromStr for SecurityProtocol {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAINTEXT" => Ok(Self::Plaintext),
            "SSL" => Ok(Self::Ssl),
            "SASL_PLAINTEXT" => Ok(Self::SaslPlaintext),
            "SASL_SSL" => Ok(Self::SaslSsl),
            _ => Err(format!(
                "unknown security protocol `{s}`; expected one of {}",
                SecurityProtocol::NAMES.join(", ")
            )),
        }
    }
}

/// Kafka's `sasl.mechanism`, the ones we implement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SaslMechanism {
    /// RFC 4616: the password in the clear (only sensible inside TLS).
    Plain,
    /// RFC 7677.
    ScramSha256,
    /// SCRAM with SHA-512.
    ScramSha512,
}

impl SaslMechanism {
    /// Every value, as written in `SASL_MECHANISM`.
    pub const NAMES: &'static [&'static str] = &["PLAIN", "SCRAM-SHA-256", "SCRAM-SHA-512"];

    /// The IANA name, as sent in SaslHandshake.
    pub fn name(self) -> &'static str {
        match self {
            Self::Plain => "PLAIN",
            Self::ScramSha256 => "SCRAM-SHA-256",
            Self::ScramSha512 => "SCRAM-SHA-512",
        }
    }
}

impl fmt::Display for SaslMechanism {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl FromStr for SaslMechanism {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, String> {
        match s.trim().to_ascii_uppercase().as_str() {
            "PLAIN" => Ok(Self::Plain),
            "SCRAM-SHA-256" => Ok(Self::ScramSha256),
            "SCRAM-SHA-512" => Ok(Self::ScramSha512),
            _ => Err(format!(
                "unknown SASL mechanism `{s}`; expected one of {}",
                SaslMechanism::NAMES.join(", ")
            )),
        }
    }
}

/// A secret that never prints.
#[derive(Clone, PartialEq, Eq)]
pub struct Password(String);

impl Password {
    /// Wraps `secret`.
    pub fn new(secret: impl Into<String>) -> Self {
        Self(secret.into())
    }

    /// The secret itself, for the SASL exchange only.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

impl fmt::Display for Password {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("<redacted>")
    }
}

/// What the operator configured, before any file is read. Field names are the environment
/// variables' (see `docs/configuration.md`).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct SecuritySettings {
    /// `SECURITY_PROTOCOL`.
    pub protocol: SecurityProtocol,
    /// `SASL_MECHANISM`: required with a `SASL_*` protocol.
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `SASL_USERNAME`.
    pub sasl_username: Option<String>,
    /// `SASL_PASSWORD`.
    pub sasl_password: Option<Password>,
    /// `SASL_PASSWORD_FILE`: a mounted Secret; one trailing newline is trimmed.
    pub sasl_password_file: Option<PathBuf>,
    /// `SSL_CA_LOCATION`: PEM CA certificates; unset, the system bundle.
    pub ssl_ca_location: Option<PathBuf>,
    /// `SSL_CERTIFICATE_LOCATION`: the client certificate chain (PEM), for mutual TLS.
    pub ssl_certificate_location: Option<PathBuf>,
    /// `SSL_KEY_LOCATION`: the client certificate's private key (PEM).
    pub ssl_key_location: Option<PathBuf>,
    /// `SSL_ENDPOINT_IDENTIFICATION_ALGORITHM`: `false` for `none`, which checks the chain but not
    /// the host name.
    pub verify_hostname: bool,
}

impl SecuritySettings {
    /// PLAINTEXT, host names verified should TLS be turned on.
    pub fn plaintext() -> Self {
        Self {
            verify_hostname: true,
            ..Self::default()
        }
    }
}

/// A security setting that cannot work. `var` is the environment variable to fix.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{var}: {reason}")]
pub struct SecurityError {
    /// The variable, as written in the environment.
    pub var: &'static str,
    /// What is wrong, in plain words.
    pub reason: String,
}

fn invalid(var: &'static str, reason: impl Into<String>) -> SecurityError {
    SecurityError {
        var,
        reason: reason.into(),
    }
}

/// SASL credentials with their mechanism.
#[derive(Debug, Clone)]
pub struct SaslCredentials {
    /// The mechanism asked for in SaslHandshake.
    pub mechanism: SaslMechanism,
    /// The user.
    pub username: String,
    /// The password (redacted in `Debug`).
    pub password: Password,
}

/// A checked security configuration with its files read: what every connection of a process uses.
#[derive(Clone, Default)]
pub struct Security {
    /// The protocol, for messages.
    protocol: SecurityProtocol,
    /// The rustls configuration, with TLS.
    tls: Option<Arc<ClientConfig>>,
    /// The credentials, with SASL.
    sasl: Option<SaslCredentials>,
    /// Whether host names are checked (for the start-up warning).
    verify_hostname: bool,
}

impl fmt::Debug for Security {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Security")
            .field("protocol", &self.protocol)
            .field("tls", &self.tls.is_some())
            .field("sasl", &self.sasl)
            .field("verify_hostname", &self.verify_hostname)
            .finish()
    }
}

impl Security {
    /// No TLS, no SASL.
    pub fn plaintext() -> Self {
        Self {
            verify_hostname: true,
            ..Self::default()
        }
    }

    /// Checks `settings` and reads the files they name.
    pub fn from_settings(settings: &SecuritySettings) -> Result<Self, SecurityError> {
        let protocol = settings.protocol;
        let sasl = if protocol.sasl() {
            Some(sasl_credentials(settings)?)
        } else {
            None
        };
        let tls = if protocol.tls() {
            Some(tls_config(settings)?)
        } else {
            for (var, set) in [
                ("SSL_CA_LOCATION", settings.ssl_ca_location.is_some()),
                (
                    "SSL_CERTIFICATE_LOCATION",
                    settings.ssl_certificate_location.is_some(),
                ),
                ("SSL_KEY_LOCATION", settings.ssl_key_location.is_some()),
            ] {
                if set {
                    return Err(invalid(
                        var,
                        format!(
                            "set, but SECURITY_PROTOCOL={} does not use TLS; use SSL or SASL_SSL",
                            protocol.name()
                        ),
                    ));
                }
            }
            None
        };
        Ok(Self {
            protocol,
            tls,
            sasl,
            verify_hostname: settings.verify_hostname,
        })
    }

    /// The protocol.
    pub fn protocol(&self) -> SecurityProtocol {
        self.protocol
    }

    /// The rustls configuration, when the protocol is TLS: also what rskafka's `tls_config` takes.
    pub fn tls_config(&self) -> Option<Arc<ClientConfig>> {
        self.tls.clone()
    }

    /// Plain, or TLS with or without a client certificate.
    pub(crate) fn mode(&self) -> crate::stream::Mode {
        match &self.tls {
            None => crate::stream::Mode::Plain,
            Some(config) => crate::stream::Mode::Tls(config.client_auth_cert_resolver.has_certs()),
        }
    }

    /// The SASL credentials, when the protocol is SASL.
    pub fn sasl(&self) -> Option<&SaslCredentials> {
        self.sasl.as_ref()
    }

    /// `true` when TLS is on and the broker's host name is not checked
    /// (`SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=none`): worth a loud warning at start-up.
    pub fn hostname_unverified(&self) -> bool {
        self.tls.is_some() && !self.verify_hostname
    }
}

fn sasl_credentials(settings: &SecuritySettings) -> Result<SaslCredentials, SecurityError> {
    let protocol = settings.protocol.name();
    let mechanism = settings.sasl_mechanism.ok_or_else(|| {
        invalid(
            "SASL_MECHANISM",
            format!(
                "required with SECURITY_PROTOCOL={protocol}; one of {}",
                SaslMechanism::NAMES.join(", ")
            ),
        )
    })?;
    let username = settings
        .sasl_username
        .clone()
        .filter(|u| !u.is_empty())
        .ok_or_else(|| {
            invalid(
                "SASL_USERNAME",
                format!("required with SECURITY_PROTOCOL={protocol}"),
            )
        })?;
    let password = match (&settings.sasl_password, &settings.sasl_password_file) {
        (Some(_), Some(_)) => {
            return Err(invalid(
                "SASL_PASSWORD_FILE",
                "set together with SASL_PASSWORD; set only one",
            ))
        }
        (Some(p), None) => p.clone(),
        (None, Some(path)) => {
            let text = std::fs::read_to_string(path).map_err(|e| {
                invalid(
                    "SASL_PASSWORD_FILE",
                    format!("cannot read {}: {e}", path.display()),
                )
            })?;
            // A Secret written with `echo` or a text editor ends in a newline the password lacks.
            let trimmed = text
                .strip_suffix("\r\n")
                .or_else(|| text.strip_suffix('\n'))
                .unwrap_or(&text);
            Password::new(trimmed)
        }
        (None, None) => {
            return Err(invalid(
                "SASL_PASSWORD",
                format!("required with SECURITY_PROTOCOL={protocol} (or SASL_PASSWORD_FILE)"),
            ))
        }
    };
    if password.expose().is_empty() {
        return Err(invalid("SASL_PASSWORD", "the password is empty"));
    }
    Ok(SaslCredentials {
        mechanism,
        username,
        password,
    })
}

fn read(var: &'static str, path: &PathBuf) -> Result<Vec<u8>, SecurityError> {
    std::fs::read(path).map_err(|e| invalid(var, format!("cannot read {}: {e}", path.display())))
}

fn certificates(
    var: &'static str,
    path: &PathBuf,
) -> Result<Vec<CertificateDer<'static>>, SecurityError> {
    let pem = read(var, path)?;
    let certs = CertificateDer::pem_slice_iter(&pem)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| {
            invalid(
                var,
                format!("{}: not PEM certificates: {e}", path.display()),
            )
        })?;
    if certs.is_empty() {
        return Err(invalid(
            var,
            format!(
                "{}: no `BEGIN CERTIFICATE` block in the file",
                path.display()
            ),
        ));
    }
    Ok(certs)
}

fn roots(settings: &SecuritySettings) -> Result<RootCertStore, SecurityError> {
    const VAR: &str = "SSL_CA_LOCATION";
    let certs = match &settings.ssl_ca_location {
        Some(path) => certificates(VAR, path)?,
        None => {
            let found = SYSTEM_CA_BUNDLES
                .iter()
                .map(PathBuf::from)
                .find(|p| p.is_file())
                .ok_or_else(|| {
                    invalid(
                        VAR,
                        format!(
                            "not set, and no system CA bundle found (looked at {})",
                            SYSTEM_CA_BUNDLES.join(", ")
                        ),
                    )
                })?;
            certificates(VAR, &found)?
        }
    };
    let mut store = RootCertStore::empty();
    let (_added, ignored) = store.add_parsable_certificates(certs);
    if store.is_empty() {
        return Err(invalid(
            VAR,
            format!("none of the {ignored} certificate(s) is a usable CA certificate"),
        ));
    }
    Ok(store)
}

fn provider() -> Arc<rustls::crypto::CryptoProvider> {
    Arc::new(rustls::crypto::ring::default_provider())
}

fn tls_config(settings: &SecuritySettings) -> Result<Arc<ClientConfig>, SecurityError> {
    let roots = Arc::new(roots(settings)?);
    let builder = ClientConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()
        .map_err(|e| invalid("SECURITY_PROTOCOL", format!("TLS set-up: {e}")))?;
    let verifier = rustls::client::WebPkiServerVerifier::builder_with_provider(roots, provider())
        .build()
        .map_err(|e| invalid("SSL_CA_LOCATION", format!("{e}")))?;
    let builder = if settings.verify_hostname {
        builder.with_webpki_verifier(verifier)
    } else {
        builder
            .dangerous()
            .with_custom_certificate_verifier(Arc::new(AnyHostName(verifier)))
    };
    let config = match (
        &settings.ssl_certificate_location,
        &settings.ssl_key_location,
    ) {
        (None, None) => builder.with_no_client_auth(),
        (Some(_), None) => {
            return Err(invalid(
                "SSL_KEY_LOCATION",
                "required with SSL_CERTIFICATE_LOCATION (the client certificate's private key)",
            ))
        }
        (None, Some(_)) => {
            return Err(invalid(
                "SSL_CERTIFICATE_LOCATION",
                "required with SSL_KEY_LOCATION (the client certificate)",
            ))
        }
        (Some(cert), Some(key)) => {
            let chain = certificates("SSL_CERTIFICATE_LOCATION", cert)?;
            check_validity(&chain[0], now_unix())
                .map_err(|reason| invalid("SSL_CERTIFICATE_LOCATION", reason))?;
            let pem = read("SSL_KEY_LOCATION", key)?;
            let key_der = PrivateKeyDer::from_pem_slice(&pem).map_err(|e| {
                invalid(
                    "SSL_KEY_LOCATION",
                    format!("{}: no PEM private key: {e}", key.display()),
                )
            })?;
            builder.with_client_auth_cert(chain, key_der).map_err(|e| {
                invalid(
                    "SSL_KEY_LOCATION",
                    format!("does not fit SSL_CERTIFICATE_LOCATION: {e}"),
                )
            })?
        }
    };
    Ok(Arc::new(config))
}

fn now_unix() -> i64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() as i64)
}

/// Our own client certificate out of its validity period is refused here, at start-up: a broker
/// says no more than `certificate_unknown` (the Java one does), which names no cause.
fn check_validity(cert: &CertificateDer<'_>, now: i64) -> Result<(), String> {
    let Some(((not_before, from), (not_after, until))) = der::validity(cert.as_ref()) else {
        // rustls and the broker still check it; we only wanted a clearer message.
        return Ok(());
    };
    if now > not_after {
        return Err(format!(
            "the client certificate expired on {until} (its notAfter); renew it"
        ));
    }
    if now < not_before {
        return Err(format!(
            "the client certificate is not valid before {from} (its notBefore); is the clock right?"
        ));
    }
    Ok(())
}

/// Just enough DER to read a certificate's validity (RFC 5280 4.1): Certificate → TBSCertificate →
/// [version], serialNumber, signature, issuer, validity.
mod der {
    /// One TLV: (tag, contents, what follows).
    fn tlv(input: &[u8]) -> Option<(u8, &[u8], &[u8])> {
        let (&tag, rest) = input.split_first()?;
        let (&first, rest) = rest.split_first()?;
        let (len, rest) = if first < 0x80 {
            (usize::from(first), rest)
        } else {
            let n = usize::from(first & 0x7f);
            if n == 0 || n > 4 || rest.len() < n {
                return None;
            }
            let len = rest[..n]
                .iter()
                .fold(0usize, |acc, b| (acc << 8) | usize::from(*b));
            (len, &rest[n..])
        };
        (rest.len() >= len).then(|| (tag, &rest[..len], &rest[len..]))
    }

    /// `(notBefore, notAfter)`, each as Unix seconds and as written (`2021-01-01 00:00:00 UTC`).
    pub(super) fn validity(cert: &[u8]) -> Option<((i64, String), (i64, String))> {
        let (_, certificate, _) = tlv(cert)?;
        let (_, mut tbs, _) = tlv(certificate)?;
        if tbs.first() == Some(&0xa0) {
            tbs = tlv(tbs)?.2; // [0] version
        }
        let rest = tlv(tbs)?.2; // serialNumber
        let rest = tlv(rest)?.2; // signature
        let rest = tlv(rest)?.2; // issuer
        let (_, validity, _) = tlv(rest)?;
        let (t1, before, rest) = tlv(validity)?;
        let (t2, after, _) = tlv(rest)?;
        Some((time(t1, before)?, time(t2, after)?))
    }

    /// UTCTime (0x17, `YYMMDDHHMMSSZ`) or GeneralizedTime (0x18, `YYYYMMDDHHMMSSZ`).
    fn time(tag: u8, text: &[u8]) -> Option<(i64, String)> {
        let text = std::str::from_utf8(text).ok()?.strip_suffix('Z')?;
        let num = |s: &str| s.parse::<i64>().ok();
        let (year, rest) = match tag {
            0x17 if text.len() == 12 => {
                let yy = num(&text[..2])?;
                (if yy >= 50 { 1900 + yy } else { 2000 + yy }, &text[2..])
            }
            0x18 if text.len() == 14 => (num(&text[..4])?, &text[4..]),
            _ => return None,
        };
        let (month, day) = (num(&rest[..2])?, num(&rest[2..4])?);
        let (h, m, s) = (num(&rest[4..6])?, num(&rest[6..8])?, num(&rest[8..10])?);
        let secs = days_from_civil(year, month, day) * 86_400 + h * 3600 + m * 60 + s;
        Some((
            secs,
            format!("{year:04}-{month:02}-{day:02} {h:02}:{m:02}:{s:02} UTC"),
        ))
    }

    /// Days since 1970-01-01 of a proleptic Gregorian date (Howard Hinnant's algorithm).
    fn days_from_civil(year: i64, month: i64, day: i64) -> i64 {
        let y = if month <= 2 { year - 1 } else { year };
        let era = y.div_euclid(400);
        let yoe = y - era * 400;
        let mp = (month + 9) % 12;
        let doy = (153 * mp + 2) / 5 + day - 1;
        let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
        era * 146_097 + doe - 719_468
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn dates_count_from_the_epoch() {
            assert_eq!(days_from_civil(1970, 1, 1), 0);
            assert_eq!(days_from_civil(2021, 1, 1), 18_628);
            assert_eq!(
                time(0x17, b"210101000000Z"),
                Some((18_628 * 86_400, "2021-01-01 00:00:00 UTC".into()))
            );
            assert_eq!(
                time(0x18, b"20491231235959Z").map(|t| t.1),
                Some("2049-12-31 23:59:59 UTC".into())
            );
            assert_eq!(time(0x17, b"garbage"), None);
        }

        #[test]
        fn lengths_short_and_long() {
            assert_eq!(
                tlv(&[0x30, 0x01, 0xff, 0x00]),
                Some((0x30, &[0xff][..], &[0x00][..]))
            );
            let long = [&[0x04, 0x81, 0x80][..], &[7u8; 128]].concat();
            assert_eq!(tlv(&long).map(|t| t.1.len()), Some(128));
            assert_eq!(tlv(&[0x30, 0x05, 0x00]), None);
        }
    }
}

/// `SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=none`: the chain must still lead to a trusted CA, only the
/// host name is not compared (Kafka's Java client does the same with an empty algorithm). webpki
/// checks the chain before the name, so a name error means the chain was good.
#[derive(Debug)]
struct AnyHostName(Arc<rustls::client::WebPkiServerVerifier>);

impl ServerCertVerifier for AnyHostName {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        intermediates: &[CertificateDer<'_>],
        server_name: &ServerName<'_>,
        ocsp_response: &[u8],
        now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        use rustls::{CertificateError as C, Error as E};
        match self
            .0
            .verify_server_cert(end_entity, intermediates, server_name, ocsp_response, now)
        {
            Err(E::InvalidCertificate(C::NotValidForName | C::NotValidForNameContext { .. })) => {
                Ok(ServerCertVerified::assertion())
            }
            other => other,
        }
    }

    fn verify_tls12_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls12_signature(message, cert, dss)
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        self.0.verify_tls13_signature(message, cert, dss)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.0.supported_verify_schemes()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sasl_settings() -> SecuritySettings {
        SecuritySettings {
            protocol: SecurityProtocol::SaslPlaintext,
            sasl_mechanism: Some(SaslMechanism::ScramSha256),
            sasl_username: Some("alice".into()),
            sasl_password: Some(Password::new("alice-secret")),
            ..SecuritySettings::plaintext()
        }
    }

    #[test]
    fn names_parse_in_any_case_and_unknown_ones_list_the_choices() {
        assert_eq!("sasl_ssl".parse(), Ok(SecurityProtocol::SaslSsl));
        assert_eq!("scram-sha-512".parse(), Ok(SaslMechanism::ScramSha512));
        let err = "FOO".parse::<SaslMechanism>().expect_err("unknown");
        assert!(err.contains("PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"), "{err}");
        let err = "TLS".parse::<SecurityProtocol>().expect_err("unknown");
        assert!(err.contains("SASL_SSL"), "{err}");
    }

    #[test]
    fn sasl_needs_a_mechanism_a_user_and_exactly_one_password() {
        assert!(Security::from_settings(&sasl_settings()).is_ok());
        for (var, broken) in [
            (
                "SASL_MECHANISM",
                SecuritySettings {
                    sasl_mechanism: None,
                    ..sasl_settings()
                },
            ),
            (
                "SASL_USERNAME",
                SecuritySettings {
                    sasl_username: None,
                    ..sasl_settings()
                },
            ),
            (
                "SASL_PASSWORD",
                SecuritySettings {
                    sasl_password: None,
                    ..sasl_settings()
                },
            ),
            (
                "SASL_PASSWORD_FILE",
                SecuritySettings {
                    sasl_password_file: Some("/nonexistent/password".into()),
                    ..sasl_settings()
                },
            ),
            (
                "SASL_PASSWORD_FILE",
                SecuritySettings {
                    sasl_password: None,
                    sasl_password_file: Some("/nonexistent/password".into()),
                    ..sasl_settings()
                },
            ),
        ] {
            let err = Security::from_settings(&broken).expect_err(var);
            assert_eq!(err.var, var, "{err}");
        }
    }

    #[test]
    fn a_password_file_loses_its_trailing_newline_only() {
        let dir = std::env::temp_dir().join(format!("transport-pw-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("dir");
        let path = dir.join("password");
        std::fs::write(&path, " s3cret \n").expect("write");
        let security = Security::from_settings(&SecuritySettings {
            sasl_password: None,
            sasl_password_file: Some(path),
            ..sasl_settings()
        })
        .expect("valid");
        let _ = std::fs::remove_dir_all(&dir);
        let sasl = security.sasl().expect("sasl");
        assert_eq!(sasl.password.expose(), " s3cret ");
    }

    #[test]
    fn the_password_never_prints() {
        let security = Security::from_settings(&sasl_settings()).expect("valid");
        let shown = format!("{security:?} {:?} {:?}", sasl_settings(), security.sasl());
        assert!(!shown.contains("alice-secret"), "{shown}");
        assert!(shown.contains("<redacted>"), "{shown}");
    }

    #[test]
    fn tls_files_are_checked_at_start_up_and_only_with_tls() {
        let err = Security::from_settings(&SecuritySettings {
            ssl_ca_location: Some("/etc/kafka-tls/ca.crt".into()),
            ..SecuritySettings::plaintext()
        })
        .expect_err("CA without TLS");
        assert_eq!(err.var, "SSL_CA_LOCATION");
        let err = Security::from_settings(&SecuritySettings {
            protocol: SecurityProtocol::Ssl,
            ssl_ca_location: Some("/nonexistent/ca.crt".into()),
            ..SecuritySettings::plaintext()
        })
        .expect_err("missing CA file");
        assert_eq!(err.var, "SSL_CA_LOCATION");
        assert!(err.reason.contains("/nonexistent/ca.crt"), "{err}");
    }
}
