//! The security settings every binary reads (`SECURITY_PROTOCOL`, `SASL_*`, `SSL_*`): parsed here,
//! checked and turned into a [`Security`] by `transport`, applied to our own connections and to
//! rskafka's (`client_builder`).
//!
//! One struct for all binaries, loaded on its own next to each binary's config (a flattened field
//! would hide the variables from [`variables`](crate::config::variables)).

use std::path::PathBuf;

use rskafka::client::{ClientBuilder, Credentials, SaslConfig};
use serde::{de, Deserialize, Deserializer};
pub use transport::security::{
    Password, SaslMechanism, Security, SecurityProtocol, SecuritySettings,
};

use crate::config::ConfigError;

/// The variables, as envy reads them. Empty values count as unset: a manifest that templates an
/// optional value often writes `""`.
#[derive(Deserialize)]
pub struct SecurityEnv {
    /// `SECURITY_PROTOCOL`: PLAINTEXT (default), SSL, SASL_PLAINTEXT or SASL_SSL.
    #[serde(default, deserialize_with = "protocol")]
    pub security_protocol: SecurityProtocol,
    /// `SASL_MECHANISM`: PLAIN, SCRAM-SHA-256 or SCRAM-SHA-512.
    #[serde(default, deserialize_with = "mechanism")]
    pub sasl_mechanism: Option<SaslMechanism>,
    /// `SASL_USERNAME`.
    #[serde(default, deserialize_with = "non_empty")]
    pub sasl_username: Option<String>,
    /// `SASL_PASSWORD`: the password itself; prefer `SASL_PASSWORD_FILE`.
    #[serde(default, deserialize_with = "password")]
    pub sasl_password: Option<Password>,
    /// `SASL_PASSWORD_FILE`: a file holding the password (a mounted Secret).
    #[serde(default, deserialize_with = "path")]
    pub sasl_password_file: Option<PathBuf>,
    /// `SSL_CA_LOCATION`: PEM CA certificates; unset, the system bundle.
    #[serde(default, deserialize_with = "path")]
    pub ssl_ca_location: Option<PathBuf>,
    /// `SSL_CERTIFICATE_LOCATION`: the client certificate (PEM), for mutual TLS.
    #[serde(default, deserialize_with = "path")]
    pub ssl_certificate_location: Option<PathBuf>,
    /// `SSL_KEY_LOCATION`: its private key (PEM).
    #[serde(default, deserialize_with = "path")]
    pub ssl_key_location: Option<PathBuf>,
    /// `SSL_ENDPOINT_IDENTIFICATION_ALGORITHM`: `https` (default, check the host name) or `none`.
    #[serde(default = "https", deserialize_with = "endpoint_identification")]
    pub ssl_endpoint_identification_algorithm: bool,
}

fn https() -> bool {
    true
}

fn non_empty<'de, D: Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    Ok(Option::<String>::deserialize(d)?.filter(|s| !s.trim().is_empty()))
}

fn path<'de, D: Deserializer<'de>>(d: D) -> Result<Option<PathBuf>, D::Error> {
    Ok(non_empty(d)?.map(PathBuf::from))
}

fn password<'de, D: Deserializer<'de>>(d: D) -> Result<Option<Password>, D::Error> {
    // Not trimmed: a password may end in a space; only empty means unset.
    Ok(Option::<String>::deserialize(d)?
        .filter(|s| !s.is_empty())
        .map(Password::new))
}

fn protocol<'de, D: Deserializer<'de>>(d: D) -> Result<SecurityProtocol, D::Error> {
    match non_empty(d)? {
        Some(s) => s.parse().map_err(de::Error::custom),
        None => Ok(SecurityProtocol::default()),
    }
}

fn mechanism<'de, D: Deserializer<'de>>(d: D) -> Result<Option<SaslMechanism>, D::Error> {
    non_empty(d)?
        .map(|s| s.parse().map_err(de::Error::custom))
        .transpose()
}

fn endpoint_identification<'de, D: Deserializer<'de>>(d: D) -> Result<bool, D::Error> {
    match non_empty(d)?
        .as_deref()
        .map(str::to_ascii_lowercase)
        .as_deref()
    {
        None | Some("https") => Ok(true),
        Some("none") => Ok(false),
        Some(other) => Err(de::Error::custom(format!(
            "unknown algorithm `{other}`; expected https (check the broker's host name) or none"
        ))),
    }
}

impl SecurityEnv {
    /// The settings, before any file is read.
    pub fn settings(self) -> SecuritySettings {
        SecuritySettings {
            protocol: self.security_protocol,
            sasl_mechanism: self.sasl_mechanism,
            sasl_username: self.sasl_username,
            sasl_password: self.sasl_password,
            sasl_password_file: self.sasl_password_file,
            ssl_ca_location: self.ssl_ca_location,
            ssl_certificate_location: self.ssl_certificate_location,
            ssl_key_location: self.ssl_key_location,
            verify_hostname: self.ssl_endpoint_identification_algorithm,
        }
    }
}

/// Loads and checks the security settings from the process environment, reading the files they
/// name. Call after [`telemetry::init`](crate::telemetry::init): the host-name warning is logged.
pub fn from_env() -> Result<Security, ConfigError> {
    check(crate::config::from_env::<SecurityEnv>()?)
}

/// [`from_env`] from `(name, value)` pairs.
pub fn from_iter<I>(vars: I) -> Result<Security, ConfigError>
where
    I: IntoIterator<Item = (String, String)>,
{
    check(crate::config::from_iter(vars)?)
}

fn check(env: SecurityEnv) -> Result<Security, ConfigError> {
    let security = Security::from_settings(&env.settings()).map_err(|e| ConfigError::Invalid {
        var: e.var.to_string(),
        reason: e.reason,
    })?;
    if security.hostname_unverified() {
        tracing::warn!(
            "SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=none: the broker's certificate is NOT checked \
             against its host name; anyone with a certificate from the same CA can pose as the \
             broker. Use this only for testing."
        );
    }
    tracing::debug!(protocol = security.protocol().name(), "security");
    Ok(security)
}

/// The security variables set in this process's environment, for a child process started with a
/// cleared environment (the demo's producers and consumers).
pub fn inherited() -> Vec<(String, String)> {
    let names = crate::config::variables::<SecurityEnv>().unwrap_or_default();
    std::env::vars()
        .filter(|(k, _)| names.iter().any(|n| n == k))
        .collect()
}

/// An rskafka client builder for `brokers` with `security`'s TLS and SASL.
pub fn client_builder(brokers: &[String], security: &Security) -> ClientBuilder {
    let mut builder = ClientBuilder::new(brokers.to_vec());
    if let Some(tls) = security.tls_config() {
        builder = builder.tls_config(tls);
    }
    if let Some(sasl) = security.sasl() {
        let credentials =
            Credentials::new(sasl.username.clone(), sasl.password.expose().to_string());
        builder = builder.sasl_config(match sasl.mechanism {
            SaslMechanism::Plain => SaslConfig::Plain(credentials),
            SaslMechanism::ScramSha256 => SaslConfig::ScramSha256(credentials),
            SaslMechanism::ScramSha512 => SaslConfig::ScramSha512(credentials),
        });
    }
    builder
}

#[cfg(test)]
mod tests {
    use super::*;

    fn load(vars: &[(&str, &str)]) -> Result<Security, ConfigError> {
        from_iter(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
    }

    #[test]
    fn nothing_set_is_plaintext() {
        let security = load(&[]).expect("valid");
        assert_eq!(security.protocol(), SecurityProtocol::Plaintext);
        assert!(security.tls_config().is_none() && security.sasl().is_none());
    }

    #[test]
    fn an_unknown_mechanism_names_the_variable_and_the_choices() {
        let err = load(&[
            ("SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("SASL_MECHANISM", "FOO"),
        ])
        .expect_err("invalid");
        let text = err.to_string();
        assert!(text.starts_with("SASL_MECHANISM: "), "{text}");
        assert!(
            text.contains("PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"),
            "{text}"
        );
    }

    #[test]
    fn sasl_without_credentials_names_what_is_missing() {
        let err = load(&[
            ("SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("SASL_MECHANISM", "SCRAM-SHA-512"),
            ("SASL_USERNAME", "alice"),
        ])
        .expect_err("invalid");
        assert!(err.to_string().starts_with("SASL_PASSWORD: "), "{err}");
        let err = load(&[("SECURITY_PROTOCOL", "SASL_SSL")]).expect_err("invalid");
        assert!(err.to_string().starts_with("SASL_MECHANISM: "), "{err}");
    }

    #[test]
    fn bad_protocol_and_algorithm_values_are_named() {
        let err = load(&[("SECURITY_PROTOCOL", "TLS")]).expect_err("invalid");
        assert!(err.to_string().starts_with("SECURITY_PROTOCOL: "), "{err}");
        let err = load(&[("SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "dns")]).expect_err("invalid");
        assert!(
            err.to_string()
                .starts_with("SSL_ENDPOINT_IDENTIFICATION_ALGORITHM: "),
            "{err}"
        );
    }

    #[test]
    fn plain_sasl_credentials_reach_the_rskafka_builder_without_printing() {
        let security = load(&[
            ("SECURITY_PROTOCOL", "SASL_PLAINTEXT"),
            ("SASL_MECHANISM", "PLAIN"),
            ("SASL_USERNAME", "alice"),
            ("SASL_PASSWORD", "alice-secret"),
        ])
        .expect("valid");
        assert!(!format!("{security:?}").contains("alice-secret"));
        let _ = client_builder(&["127.0.0.1:9092".into()], &security);
    }
}
