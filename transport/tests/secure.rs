//! `Connection::connect_secure` against Apache Kafka's TLS, mutual TLS and SASL listeners: every
//! protocol and mechanism connects, and every misconfiguration fails for good with words that say
//! what to fix.

use std::{path::PathBuf, time::Duration};

use testkit::secure::{Listener, SecureKafka, PASSWORD, USER};
use transport::{
    security::{Password, SaslMechanism},
    Connection, Security, SecurityProtocol, SecuritySettings, TransportError,
};

fn runtime() -> tokio::runtime::Runtime {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime")
}

fn protocol(listener: Listener) -> SecurityProtocol {
    listener.protocol().parse().expect("protocol")
}

/// The settings a client of `listener` needs, SASL with `mechanism`.
fn settings(kafka: &SecureKafka, listener: Listener, mechanism: SaslMechanism) -> SecuritySettings {
    let protocol = protocol(listener);
    SecuritySettings {
        protocol,
        sasl_mechanism: protocol.sasl().then_some(mechanism),
        sasl_username: protocol.sasl().then(|| USER.to_string()),
        sasl_password: protocol.sasl().then(|| Password::new(PASSWORD)),
        ssl_ca_location: protocol.tls().then(|| kafka.pki.ca.clone()),
        ssl_certificate_location: (listener == Listener::Mtls)
            .then(|| kafka.pki.client_cert.clone()),
        ssl_key_location: (listener == Listener::Mtls).then(|| kafka.pki.client_key.clone()),
        ..SecuritySettings::plaintext()
    }
}

fn connect(addr: &str, settings: &SecuritySettings) -> Result<Connection, TransportError> {
    let security = Security::from_settings(settings).expect("valid settings");
    runtime().block_on(Connection::connect_secure(
        addr,
        "transport-secure-test",
        Duration::from_secs(20),
        &security,
    ))
}

fn fails(addr: &str, settings: &SecuritySettings, words: &[&str]) -> String {
    let err = match connect(addr, settings) {
        Ok(_) => panic!("{addr} accepted {settings:?}"),
        Err(err) => err,
    };
    let text = err.to_string();
    assert!(err.is_fatal(), "not fatal: {text}");
    for word in words {
        assert!(text.contains(word), "{text:?} does not say {word:?}");
    }
    text
}

#[test]
fn every_protocol_and_mechanism_connects() {
    let kafka = SecureKafka::shared();
    let mechanisms = [
        SaslMechanism::Plain,
        SaslMechanism::ScramSha256,
        SaslMechanism::ScramSha512,
    ];
    for listener in [
        Listener::SaslSsl,
        Listener::SaslPlaintext,
        Listener::Ssl,
        Listener::Mtls,
    ] {
        let tried: &[SaslMechanism] = if protocol(listener).sasl() {
            &mechanisms
        } else {
            &mechanisms[..1]
        };
        for mechanism in tried {
            let addr = kafka.addr(listener);
            let conn = connect(&addr, &settings(kafka, listener, *mechanism))
                .unwrap_or_else(|e| panic!("{listener:?} {mechanism}: {e}"));
            // A request after the handshake: the broker accepted the session.
            assert!(conn
                .broker_versions()
                .get(kafka_protocol::messages::ApiKey::Metadata)
                .is_some());
        }
    }
}

#[test]
fn a_wrong_password_is_an_authentication_failure() {
    let kafka = SecureKafka::shared();
    for mechanism in [SaslMechanism::ScramSha512, SaslMechanism::Plain] {
        let settings = SecuritySettings {
            sasl_password: Some(Password::new("not-the-password")),
            ..settings(kafka, Listener::SaslSsl, mechanism)
        };
        let text = fails(
            &kafka.addr(Listener::SaslSsl),
            &settings,
            &["SASL authentication failed", "alice", "SASL_PASSWORD"],
        );
        assert!(!text.contains("not-the-password"), "{text}");
    }
}

#[test]
fn a_mechanism_the_broker_does_not_enable_lists_the_ones_it_does() {
    let kafka = SecureKafka::shared();
    fails(
        &kafka.addr(Listener::PlainOnly),
        &settings(kafka, Listener::PlainOnly, SaslMechanism::ScramSha256),
        &["SCRAM-SHA-256", "it enables: PLAIN"],
    );
}

#[test]
fn a_certificate_for_another_host_is_refused_unless_the_check_is_off() {
    let kafka = SecureKafka::shared();
    let addr = kafka.addr(Listener::WrongHost);
    let checked = settings(kafka, Listener::WrongHost, SaslMechanism::Plain);
    fails(&addr, &checked, &["not valid for host name `127.0.0.1`"]);
    let unchecked = SecuritySettings {
        verify_hostname: false,
        ..checked
    };
    connect(&addr, &unchecked).expect("SSL_ENDPOINT_IDENTIFICATION_ALGORITHM=none");
}

#[test]
fn a_certificate_from_another_ca_is_refused() {
    let kafka = SecureKafka::shared();
    let settings = SecuritySettings {
        ssl_ca_location: Some(kafka.pki.other_ca.clone()),
        ..settings(kafka, Listener::Ssl, SaslMechanism::Plain)
    };
    fails(
        &kafka.addr(Listener::Ssl),
        &settings,
        &["not signed by a CA in SSL_CA_LOCATION"],
    );
}

#[test]
fn mutual_tls_refuses_no_certificate_an_untrusted_one_and_an_expired_one() {
    let kafka = SecureKafka::shared();
    let addr = kafka.addr(Listener::Mtls);
    let without = SecuritySettings {
        ssl_certificate_location: None,
        ssl_key_location: None,
        ..settings(kafka, Listener::Mtls, SaslMechanism::Plain)
    };
    let text = fails(
        &addr,
        &without,
        &["wants a client certificate", "SSL_CERTIFICATE_LOCATION"],
    );
    println!("no client certificate: {text}");
    let untrusted = SecuritySettings {
        ssl_certificate_location: Some(kafka.pki.untrusted_cert.clone()),
        ssl_key_location: Some(kafka.pki.untrusted_key.clone()),
        ..settings(kafka, Listener::Mtls, SaslMechanism::Plain)
    };
    let text = fails(
        &addr,
        &untrusted,
        &[
            "rejected our client certificate",
            "SSL_CERTIFICATE_LOCATION",
        ],
    );
    println!("untrusted client certificate: {text}");
    // An expired one never reaches the broker, which would only say `certificate_unknown`.
    let expired: (PathBuf, PathBuf) = (
        kafka.pki.expired_cert.clone(),
        kafka.pki.expired_key.clone(),
    );
    let err = Security::from_settings(&SecuritySettings {
        ssl_certificate_location: Some(expired.0),
        ssl_key_location: Some(expired.1),
        ..settings(kafka, Listener::Mtls, SaslMechanism::Plain)
    })
    .expect_err("expired");
    assert_eq!(err.var, "SSL_CERTIFICATE_LOCATION");
    assert!(
        err.reason.contains("expired on 2021-01-01 00:00:00 UTC"),
        "{err}"
    );
}

#[test]
fn tls_to_a_plaintext_listener_and_plaintext_to_a_tls_one_say_check_security_protocol() {
    let kafka = SecureKafka::shared();
    let tls = settings(kafka, Listener::Ssl, SaslMechanism::Plain);
    let text = fails(
        &kafka.plaintext(),
        &tls,
        &["TLS listener", "SECURITY_PROTOCOL"],
    );
    println!("TLS to PLAINTEXT: {text}");
    let plain = SecuritySettings::plaintext();
    match connect(&kafka.addr(Listener::Ssl), &plain) {
        Ok(_) => panic!("plaintext accepted by the TLS listener"),
        Err(err) => {
            let text = err.to_string();
            println!("PLAINTEXT to SSL: {text}");
            assert!(text.contains("TLS listener"), "{text}");
            assert!(text.contains("SECURITY_PROTOCOL"), "{text}");
        }
    }
    // SASL spoken to a listener without it.
    let sasl = settings(kafka, Listener::SaslPlaintext, SaslMechanism::ScramSha256);
    let text = fails(
        &kafka.plaintext(),
        &sasl,
        &["SASL listener", "SECURITY_PROTOCOL"],
    );
    println!("SASL to PLAINTEXT: {text}");
}
