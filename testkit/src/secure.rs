//! Apache Kafka with TLS and SASL listeners, and the test certificates they use, generated here
//! with rcgen: a CA, a broker certificate for 127.0.0.1/localhost, one for a wrong host name, a
//! client certificate, an expired one, and an unrelated CA with a client certificate of its own.
//!
//! One node, every listener on its own loopback port ([`Listener`]): PLAINTEXT (inter-broker, the
//! Java peers and the test tools), and the secure ones the clients under test use. SASL users are
//! `alice` / `alice-secret` for every mechanism: SCRAM ones created at storage format, PLAIN ones
//! in the listener's JAAS configuration.

use std::{
    path::{Path, PathBuf},
    sync::OnceLock,
    time::Duration,
};

use localkafka::{Cluster, Options};
use rcgen::{
    date_time_ymd, BasicConstraints, CertificateParams, DnType, ExtendedKeyUsagePurpose, IsCa,
    Issuer, KeyPair, KeyUsagePurpose,
};

/// The SASL user of every mechanism.
pub const USER: &str = "alice";
/// Its password.
pub const PASSWORD: &str = "alice-secret";

/// A client listener of the secure broker.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listener {
    /// TLS, no client certificate.
    Ssl,
    /// SASL (PLAIN, SCRAM-SHA-256, SCRAM-SHA-512) on plain TCP.
    SaslPlaintext,
    /// SASL (all three) in TLS.
    SaslSsl,
    /// TLS with a client certificate required (`ssl.client.auth=required`).
    Mtls,
    /// TLS with a certificate for `wrong.example`, not 127.0.0.1.
    WrongHost,
    /// SASL_PLAINTEXT enabling PLAIN only.
    PlainOnly,
}

impl Listener {
    /// Every listener, in port order.
    pub const ALL: [Listener; 6] = [
        Self::Ssl,
        Self::SaslPlaintext,
        Self::SaslSsl,
        Self::Mtls,
        Self::WrongHost,
        Self::PlainOnly,
    ];

    /// Its name in `listeners`.
    pub fn name(self) -> &'static str {
        match self {
            Self::Ssl => "SSL",
            Self::SaslPlaintext => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
            Self::Mtls => "MTLS",
            Self::WrongHost => "WRONGHOST",
            Self::PlainOnly => "PLAINONLY",
        }
    }

    /// Its security protocol.
    pub fn protocol(self) -> &'static str {
        match self {
            Self::Ssl | Self::Mtls | Self::WrongHost => "SSL",
            Self::SaslPlaintext | Self::PlainOnly => "SASL_PLAINTEXT",
            Self::SaslSsl => "SASL_SSL",
        }
    }
}

/// The PEM files the tests generated, under one directory.
#[derive(Debug, Clone)]
pub struct Pki {
    /// Where the files are.
    pub dir: PathBuf,
    /// The CA every good certificate chains to.
    pub ca: PathBuf,
    /// A CA that signed nothing the broker presents.
    pub other_ca: PathBuf,
    /// The client certificate (CN=alice) and its key.
    pub client_cert: PathBuf,
    /// The client certificate's key.
    pub client_key: PathBuf,
    /// A client certificate that expired in 2021, and its key.
    pub expired_cert: PathBuf,
    /// The expired certificate's key.
    pub expired_key: PathBuf,
    /// A valid client certificate from the unrelated CA, which the broker does not trust.
    pub untrusted_cert: PathBuf,
    /// Its key.
    pub untrusted_key: PathBuf,
    /// Broker key + certificate for 127.0.0.1 and localhost (Kafka's PEM keystore file).
    broker_keystore: PathBuf,
    /// Broker key + certificate for `wrong.example`.
    wrong_keystore: PathBuf,
}

fn write(path: &Path, text: &str) {
    std::fs::write(path, text).unwrap_or_else(|e| panic!("writing {}: {e}", path.display()));
}

fn ca(name: &str) -> (CertificateParams, KeyPair, String) {
    let key = KeyPair::generate().expect("CA key");
    let mut params = CertificateParams::new(Vec::<String>::new()).expect("CA params");
    params.is_ca = IsCa::Ca(BasicConstraints::Unconstrained);
    params.distinguished_name.push(DnType::CommonName, name);
    params.key_usages = vec![
        KeyUsagePurpose::KeyCertSign,
        KeyUsagePurpose::CrlSign,
        KeyUsagePurpose::DigitalSignature,
    ];
    let cert = params.self_signed(&key).expect("CA certificate");
    (params, key, cert.pem())
}

/// A leaf signed by `issuer`: (certificate PEM, key PEM).
fn leaf(
    issuer: &Issuer<'_, &KeyPair>,
    names: &[&str],
    common_name: &str,
    purpose: ExtendedKeyUsagePurpose,
    expired: bool,
) -> (String, String) {
    let key = KeyPair::generate().expect("leaf key");
    let mut params =
        CertificateParams::new(names.iter().map(|n| n.to_string()).collect::<Vec<_>>())
            .expect("leaf params");
    params
        .distinguished_name
        .push(DnType::CommonName, common_name);
    params.key_usages = vec![
        KeyUsagePurpose::DigitalSignature,
        KeyUsagePurpose::KeyEncipherment,
    ];
    params.extended_key_usages = vec![purpose];
    if expired {
        params.not_before = date_time_ymd(2020, 1, 1);
        params.not_after = date_time_ymd(2021, 1, 1);
    }
    let cert = params.signed_by(&key, issuer).expect("leaf certificate");
    (cert.pem(), key.serialize_pem())
}

impl Pki {
    /// Generates every file under `dir`.
    pub fn generate(dir: &Path) -> Self {
        std::fs::create_dir_all(dir).unwrap_or_else(|e| panic!("{}: {e}", dir.display()));
        let (ca_params, ca_key, ca_pem) = ca("kafka-lag-lab test CA");
        let (other_params, other_key, other_pem) = ca("an unrelated CA");
        let other = Issuer::from_params(&other_params, &other_key);
        let issuer = Issuer::from_params(&ca_params, &ca_key);
        let server = ExtendedKeyUsagePurpose::ServerAuth;
        let client = ExtendedKeyUsagePurpose::ClientAuth;
        let (broker_cert, broker_key) = leaf(
            &issuer,
            &["127.0.0.1", "localhost"],
            "broker",
            server.clone(),
            false,
        );
        let (wrong_cert, wrong_key) = leaf(&issuer, &["wrong.example"], "wrong", server, false);
        let (client_cert, client_key) = leaf(&issuer, &[], USER, client.clone(), false);
        let (expired_cert, expired_key) = leaf(&issuer, &[], USER, client.clone(), true);
        let (untrusted_cert, untrusted_key) = leaf(&other, &[], USER, client, false);
        let pki = Self {
            dir: dir.to_path_buf(),
            ca: dir.join("ca.crt"),
            other_ca: dir.join("other-ca.crt"),
            client_cert: dir.join("tls.crt"),
            client_key: dir.join("tls.key"),
            expired_cert: dir.join("expired.crt"),
            expired_key: dir.join("expired.key"),
            untrusted_cert: dir.join("untrusted.crt"),
            untrusted_key: dir.join("untrusted.key"),
            broker_keystore: dir.join("broker.pem"),
            wrong_keystore: dir.join("wrong-host.pem"),
        };
        write(&pki.ca, &ca_pem);
        write(&pki.other_ca, &other_pem);
        write(&pki.client_cert, &client_cert);
        write(&pki.client_key, &client_key);
        write(&pki.expired_cert, &expired_cert);
        write(&pki.expired_key, &expired_key);
        write(&pki.untrusted_cert, &untrusted_cert);
        write(&pki.untrusted_key, &untrusted_key);
        write(&pki.broker_keystore, &format!("{broker_key}{broker_cert}"));
        write(&pki.wrong_keystore, &format!("{wrong_key}{wrong_cert}"));
        pki
    }
}

/// Apache Kafka with every [`Listener`] and the certificates behind them.
#[derive(Debug)]
pub struct SecureKafka {
    /// The node.
    pub cluster: Cluster,
    /// The certificates.
    pub pki: Pki,
}

impl SecureKafka {
    /// The one every test of a process shares (started on first use).
    pub fn shared() -> &'static SecureKafka {
        static SHARED: OnceLock<SecureKafka> = OnceLock::new();
        SHARED.get_or_init(SecureKafka::start)
    }

    /// Generates the certificates and starts a node with every listener.
    pub fn start() -> Self {
        let dir = std::env::temp_dir().join(crate::unique("secure-kafka-pki"));
        let pki = Pki::generate(&dir);
        let mut options = crate::Broker::options(1);
        options.ready_timeout = Duration::from_secs(120);
        let options = configure(options, &pki);
        let cluster = Cluster::start(options)
            .unwrap_or_else(|e| panic!("starting Apache Kafka with TLS and SASL: {e}"));
        Self { cluster, pki }
    }

    /// `127.0.0.1:port` of `listener`.
    pub fn addr(&self, listener: Listener) -> String {
        self.cluster
            .listener_bootstrap(listener.name())
            .unwrap_or_else(|| panic!("no listener {}", listener.name()))
    }

    /// The PLAINTEXT listener, for the Java peers and the test tools.
    pub fn plaintext(&self) -> String {
        self.cluster.bootstrap()
    }
}

const MECHANISMS: &str = "PLAIN,SCRAM-SHA-256,SCRAM-SHA-512";

fn configure(mut options: Options, pki: &Pki) -> Options {
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512"] {
        options = options
            .format_arg("--add-scram")
            .format_arg(format!("{mechanism}=[name={USER},password={PASSWORD}]"));
    }
    options = options.property("sasl.enabled.mechanisms", MECHANISMS);
    for listener in Listener::ALL {
        options = options.listener(listener.name(), listener.protocol());
        let prefix = format!("listener.name.{}.", listener.name().to_lowercase());
        let p = |key: &str| format!("{prefix}{key}");
        if listener.protocol().contains("SSL") {
            let keystore = match listener {
                Listener::WrongHost => &pki.wrong_keystore,
                _ => &pki.broker_keystore,
            };
            options = options
                .property(&p("ssl.keystore.type"), "PEM")
                .property(&p("ssl.keystore.location"), keystore.display())
                .property(&p("ssl.truststore.type"), "PEM")
                .property(&p("ssl.truststore.location"), pki.ca.display());
            if listener == Listener::Mtls {
                options = options.property(&p("ssl.client.auth"), "required");
            }
        }
        if listener.protocol().starts_with("SASL") {
            let enabled = match listener {
                Listener::PlainOnly => "PLAIN",
                _ => MECHANISMS,
            };
            options = options
                .property(&p("sasl.enabled.mechanisms"), enabled)
                .property(
                    &p("plain.sasl.jaas.config"),
                    format!(
                        "org.apache.kafka.common.security.plain.PlainLoginModule required \
                         user_{USER}=\"{PASSWORD}\";"
                    ),
                );
            for scram in ["scram-sha-256", "scram-sha-512"] {
                options = options.property(
                    &p(&format!("{scram}.sasl.jaas.config")),
                    "org.apache.kafka.common.security.scram.ScramLoginModule required;",
                );
            }
        }
    }
    options
}

/// The client environment for `listener` with SASL `mechanism` (ignored without SASL): protocol,
/// CA, credentials (the password through a file, as the Kubernetes overlay mounts it).
pub fn client_env(
    kafka: &SecureKafka,
    listener: Listener,
    mechanism: &str,
) -> Vec<(String, String)> {
    let mut env = vec![
        ("KAFKA_BROKERS".to_string(), kafka.addr(listener)),
        (
            "SECURITY_PROTOCOL".to_string(),
            listener.protocol().to_string(),
        ),
    ];
    if listener.protocol().contains("SSL") {
        env.push(("SSL_CA_LOCATION".into(), kafka.pki.ca.display().to_string()));
    }
    if listener == Listener::Mtls {
        env.push((
            "SSL_CERTIFICATE_LOCATION".into(),
            kafka.pki.client_cert.display().to_string(),
        ));
        env.push((
            "SSL_KEY_LOCATION".into(),
            kafka.pki.client_key.display().to_string(),
        ));
    }
    if listener.protocol().starts_with("SASL") {
        let file = kafka.pki.dir.join("password");
        // As a Secret mounted from `echo alice-secret | kubectl create secret ...` would be.
        write(&file, &format!("{PASSWORD}\n"));
        env.push(("SASL_MECHANISM".into(), mechanism.to_string()));
        env.push(("SASL_USERNAME".into(), USER.to_string()));
        env.push(("SASL_PASSWORD_FILE".into(), file.display().to_string()));
    }
    env
}
