//! The binaries on a secure Apache Kafka (`testkit::secure`): for every security protocol and SASL
//! mechanism, `admin create-topic`, the producer, our consumer (in a group with the Java client on
//! the same broker) and `admin lag`; and every misconfiguration an operator can make exits non-zero
//! at once, with the cause in plain words and never the password.

use std::{
    process::{Child, Stdio},
    sync::{Arc, Mutex},
    time::{Duration, Instant},
};

use testkit::{
    run_bin,
    secure::{client_env, Listener, SecureKafka, PASSWORD},
    unique, wait_for, Spawned,
};

const CONSUMER: &str = env!("CARGO_BIN_EXE_consumer");
const POLL: Duration = Duration::from_millis(50);
/// A fatal error must end a binary well before this: no retry loop behind it.
const FATAL_WITHIN: Duration = Duration::from_secs(20);

fn admin() -> String {
    testkit::workspace_bin("admin")
}

fn producer() -> String {
    testkit::workspace_bin("producer")
}

fn env_refs(env: &[(String, String)]) -> Vec<(&str, &str)> {
    env.iter().map(|(k, v)| (k.as_str(), v.as_str())).collect()
}

fn with(mut env: Vec<(String, String)>, extra: &[(&str, &str)]) -> Vec<(String, String)> {
    for (k, v) in extra {
        env.retain(|(key, _)| key != k);
        env.push((k.to_string(), v.to_string()));
    }
    env
}

fn consumer(env: &[(String, String)], topic: &str, group: &str, name: &str) -> Spawned {
    let env = with(
        env.to_vec(),
        &[
            ("TOPIC", topic),
            ("GROUP_ID", group),
            ("CLIENT_ID", name),
            ("HEARTBEAT_INTERVAL", "500ms"),
            ("SESSION_TIMEOUT", "6s"),
            ("AUTO_COMMIT_INTERVAL", "500ms"),
            ("METADATA_REFRESH", "2s"),
            ("METRICS_ADDR", "127.0.0.1:0"),
            ("RUST_LOG", "info"),
        ],
    );
    Spawned::start(name, CONSUMER, &env_refs(&env))
}

fn printed(c: &Spawned) -> usize {
    c.stdout()
        .iter()
        .filter(|l| l.starts_with("Received message: "))
        .count()
}

/// admin create-topic, the producer, our consumer and admin lag, all on `listener`.
fn pipeline(kafka: &SecureKafka, listener: Listener, mechanism: &str) {
    let what = format!("{listener:?} {mechanism}");
    let env = client_env(kafka, listener, mechanism);
    let (topic, group) = (unique("secure"), unique("g"));
    let timeout = Duration::from_secs(60);

    let (code, _, err) = run_bin(
        &admin(),
        &["create-topic"],
        &env_refs(&with(
            env.clone(),
            &[
                ("TOPIC", &topic),
                ("PARTITIONS", "3"),
                ("REPLICATION_FACTOR", "1"),
                ("ADMIN_TIMEOUT", "30s"),
            ],
        )),
        timeout,
    );
    assert_eq!(code, Some(0), "{what}: admin create-topic: {err}");

    let (code, _, err) = run_bin(
        &producer(),
        &[],
        &env_refs(&with(
            env.clone(),
            &[
                ("TOPIC", &topic),
                ("MESSAGE_COUNT", "6"),
                ("INTERVAL", "20ms"),
                ("METRICS_ADDR", ""),
            ],
        )),
        timeout,
    );
    assert_eq!(code, Some(0), "{what}: producer: {err}");

    let mut c = consumer(&env, &topic, &group, "secure-consumer");
    wait_for(&format!("{what}: 6 messages"), timeout, POLL, || {
        (printed(&c) >= 6).then_some(())
    });
    // Committed (every 500 ms): admin lag sees no lag.
    wait_for(
        &format!("{what}: lag 0"),
        timeout,
        Duration::from_millis(500),
        || {
            let (code, out, err) = run_bin(
                &admin(),
                &[
                    "lag", "--group", &group, "--topic", &topic, "--format", "json",
                ],
                &env_refs(&env),
                timeout,
            );
            assert_eq!(code, Some(0), "{what}: admin lag: {err}");
            let row: serde_json::Value = serde_json::from_str(out.lines().next()?).ok()?;
            (row["total_lag"] == 0 && row["partitions"].as_array()?.len() == 3).then_some(())
        },
    );
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{what}: {}",
        c.stderr()
    );
    assert!(
        !c.stderr().contains(PASSWORD),
        "{what}: the password was logged"
    );
}

#[test]
fn sasl_ssl_with_scram_and_plain_runs_admin_producer_consumer_and_lag() {
    let kafka = SecureKafka::shared();
    for mechanism in ["SCRAM-SHA-512", "SCRAM-SHA-256", "PLAIN"] {
        pipeline(kafka, Listener::SaslSsl, mechanism);
    }
}

#[test]
fn sasl_plaintext_with_every_mechanism_runs_admin_producer_consumer_and_lag() {
    let kafka = SecureKafka::shared();
    for mechanism in ["SCRAM-SHA-256", "SCRAM-SHA-512", "PLAIN"] {
        pipeline(kafka, Listener::SaslPlaintext, mechanism);
    }
}

#[test]
fn tls_and_mutual_tls_run_admin_producer_consumer_and_lag() {
    let kafka = SecureKafka::shared();
    pipeline(kafka, Listener::Ssl, "");
    pipeline(kafka, Listener::Mtls, "");
}

/// The Java client's group member (`tests/java/GroupMember.java`), on the PLAINTEXT listener of
/// the same broker: one group coordinator, whichever listener a member came through.
struct JavaMember {
    child: Child,
    lines: Arc<Mutex<Vec<String>>>,
}

impl JavaMember {
    fn start(brokers: &str, group: &str, topic: &str) -> Self {
        let mut child = testkit::java::group_member()
            .args(["--brokers", brokers, "--group", group, "--topic", topic])
            .args(["--seconds", "90"])
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .unwrap_or_else(|e| panic!("starting the Java member: {e}"));
        let lines = Arc::new(Mutex::new(Vec::new()));
        let sink = Arc::clone(&lines);
        let stdout = child.stdout.take().expect("stdout");
        std::thread::spawn(move || {
            use std::io::BufRead;
            for line in std::io::BufReader::new(stdout)
                .lines()
                .map_while(Result::ok)
            {
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
        Self { child, lines }
    }

    /// The latest assignment it reported.
    fn assignment(&self) -> Option<Vec<i64>> {
        let lines = self.lines.lock().ok()?;
        lines.iter().rev().find_map(|l| {
            let v: serde_json::Value = serde_json::from_str(l).ok()?;
            if v.get("revoked").is_some() {
                return Some(None);
            }
            Some(Some(
                v.get("assigned")?
                    .as_array()?
                    .iter()
                    .filter_map(|p| p.as_i64())
                    .collect(),
            ))
        })?
    }
}

impl Drop for JavaMember {
    fn drop(&mut self) {
        testkit::sigterm(self.child.id());
        let _ = self.child.wait();
    }
}

#[test]
fn our_consumer_on_sasl_ssl_shares_a_group_with_the_java_client() {
    let kafka = SecureKafka::shared();
    let env = client_env(kafka, Listener::SaslSsl, "SCRAM-SHA-512");
    let (topic, group) = (unique("secure-mixed"), unique("g"));
    testkit::create_topic(&kafka.plaintext(), &topic, 4);
    let java = JavaMember::start(&kafka.plaintext(), &group, &topic);
    wait_for(
        "the Java member to own all 4",
        Duration::from_secs(60),
        POLL,
        || (java.assignment()?.len() == 4).then_some(()),
    );
    let mut ours = consumer(&env, &topic, &group, "secure-ours");
    wait_for(
        "the 4 partitions split between Java and ours",
        Duration::from_secs(60),
        Duration::from_millis(200),
        || {
            let theirs = java.assignment()?;
            let mine = testkit::metrics::settled_assignment(&metrics_addr(&ours)?)?;
            let mut all: Vec<i64> = theirs;
            all.extend(mine.iter().map(|(_, p)| i64::from(*p)));
            all.sort_unstable();
            (all == vec![0, 1, 2, 3] && !mine.is_empty()).then_some(())
        },
    );
    testkit::produce::produce_seq(&kafka.plaintext(), &topic, 4, "mixed", 40);
    wait_for(
        "ours to print its share",
        Duration::from_secs(30),
        POLL,
        || (printed(&ours) > 0).then_some(()),
    );
    assert_eq!(
        ours.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        ours.stderr()
    );
}

/// The metrics address the consumer logged.
fn metrics_addr(c: &Spawned) -> Option<String> {
    let log = c.stderr();
    let line = log.lines().find(|l| l.contains("serving /metrics"))?;
    let at = line.find("addr=")? + "addr=".len();
    Some(
        line[at..]
            .split_whitespace()
            .next()?
            .trim_matches('"')
            .to_string(),
    )
}

/// Runs `bin args` with `env` and checks it fails fast with `status`, saying every one of `words`.
fn fails(
    bin: &str,
    args: &[&str],
    env: &[(String, String)],
    status: i32,
    words: &[&str],
) -> String {
    let started = Instant::now();
    let (code, out, err) = run_bin(bin, args, &env_refs(env), Duration::from_secs(60));
    let took = started.elapsed();
    assert_eq!(
        code,
        Some(status),
        "{bin} {args:?}: stdout {out}\nstderr {err}"
    );
    assert!(took < FATAL_WITHIN, "{bin} took {took:?} to give up: {err}");
    for word in words {
        assert!(
            err.contains(word),
            "{bin} {args:?} does not say {word:?}:\n{err}"
        );
    }
    assert!(
        !err.contains(PASSWORD) && !out.contains(PASSWORD),
        "{bin}: password logged:\n{err}"
    );
    err
}

/// A binary, its arguments, and the settings it needs besides security.
type Binary = (String, Vec<&'static str>, Vec<(&'static str, &'static str)>);

/// Every binary, with the arguments and settings it needs besides security.
fn binaries() -> Vec<Binary> {
    vec![
        (
            CONSUMER.to_string(),
            vec![],
            vec![("METRICS_ADDR", ""), ("RUST_LOG", "debug,rskafka=debug")],
        ),
        (
            producer(),
            vec![],
            vec![("METRICS_ADDR", ""), ("RUST_LOG", "debug,rskafka=debug")],
        ),
        (
            admin(),
            vec!["create-topic"],
            vec![("ADMIN_TIMEOUT", "60s"), ("RUST_LOG", "debug")],
        ),
        (
            admin(),
            vec!["lag", "--group", "g", "--timeout", "60s"],
            vec![],
        ),
    ]
}

#[test]
fn configuration_errors_name_the_variable_and_exit_78() {
    let kafka = SecureKafka::shared();
    let sasl = client_env(kafka, Listener::SaslSsl, "SCRAM-SHA-256");
    for (bin, args, extra) in binaries() {
        let base = with(sasl.clone(), &extra);
        fails(
            &bin,
            &args,
            &with(base.clone(), &[("SASL_MECHANISM", "FOO")]),
            78,
            &["SASL_MECHANISM", "PLAIN, SCRAM-SHA-256, SCRAM-SHA-512"],
        );
        let without_user: Vec<_> = base
            .iter()
            .filter(|(k, _)| k != "SASL_USERNAME")
            .cloned()
            .collect();
        fails(&bin, &args, &without_user, 78, &["SASL_USERNAME"]);
        fails(
            &bin,
            &args,
            &with(base.clone(), &[("SSL_CA_LOCATION", "/nonexistent/ca.crt")]),
            78,
            &["SSL_CA_LOCATION", "/nonexistent/ca.crt"],
        );
        fails(
            &bin,
            &args,
            &with(base.clone(), &[("SECURITY_PROTOCOL", "TLS")]),
            78,
            &["SECURITY_PROTOCOL", "SASL_SSL"],
        );
        // An expired client certificate: the broker would only say `certificate_unknown`.
        let mtls = with(client_env(kafka, Listener::Mtls, ""), &extra);
        let expired = (
            kafka.pki.expired_cert.display().to_string(),
            kafka.pki.expired_key.display().to_string(),
        );
        fails(
            &bin,
            &args,
            &with(
                mtls,
                &[
                    ("SSL_CERTIFICATE_LOCATION", &expired.0),
                    ("SSL_KEY_LOCATION", &expired.1),
                ],
            ),
            78,
            &[
                "SSL_CERTIFICATE_LOCATION",
                "expired on 2021-01-01 00:00:00 UTC",
            ],
        );
    }
}

#[test]
fn a_wrong_password_fails_at_once_without_printing_it() {
    let kafka = SecureKafka::shared();
    let dir = kafka.pki.dir.join(unique("wrong-password"));
    std::fs::create_dir_all(&dir).expect("dir");
    let file = dir.join("password");
    std::fs::write(&file, "wrong-secret\n").expect("password file");
    let file = file.display().to_string();
    for mechanism in ["SCRAM-SHA-256", "PLAIN"] {
        let env = client_env(kafka, Listener::SaslSsl, mechanism);
        for (bin, args, extra) in binaries() {
            let env = with(
                env.clone(),
                &[extra.as_slice(), &[("SASL_PASSWORD_FILE", file.as_str())]].concat(),
            );
            let err = fails(
                &bin,
                &args,
                &env,
                1,
                &[
                    "SASL authentication failed",
                    "alice",
                    "check SASL_USERNAME and SASL_PASSWORD",
                ],
            );
            assert!(
                !err.contains("wrong-secret"),
                "{bin}: password logged:\n{err}"
            );
        }
    }
}

#[test]
fn broker_refusals_exit_1_with_the_cause() {
    let kafka = SecureKafka::shared();
    let pki = &kafka.pki;
    let (ca, other_ca) = (
        pki.ca.display().to_string(),
        pki.other_ca.display().to_string(),
    );
    let (untrusted_cert, untrusted_key) = (
        pki.untrusted_cert.display().to_string(),
        pki.untrusted_key.display().to_string(),
    );
    let plaintext = kafka.plaintext();
    let ssl = client_env(kafka, Listener::Ssl, "");
    // (what, settings, what the error must say)
    type Case<'a> = (&'a str, Vec<(String, String)>, Vec<&'a str>);
    let cases: Vec<Case<'_>> = vec![
        (
            "a mechanism the listener does not enable",
            client_env(kafka, Listener::PlainOnly, "SCRAM-SHA-512"),
            vec!["SASL_MECHANISM=SCRAM-SHA-512", "it enables: PLAIN"],
        ),
        (
            "a certificate for another host",
            client_env(kafka, Listener::WrongHost, ""),
            vec!["not valid for host name `127.0.0.1`"],
        ),
        (
            "a certificate from another CA",
            with(ssl.clone(), &[("SSL_CA_LOCATION", &other_ca)]),
            vec!["not signed by a CA in SSL_CA_LOCATION"],
        ),
        (
            "a client certificate from a CA the broker does not trust",
            with(
                client_env(kafka, Listener::Mtls, ""),
                &[
                    ("SSL_CERTIFICATE_LOCATION", &untrusted_cert),
                    ("SSL_KEY_LOCATION", &untrusted_key),
                ],
            ),
            vec![
                "rejected our client certificate",
                "SSL_CERTIFICATE_LOCATION",
            ],
        ),
        (
            "no client certificate for a listener that requires one",
            with(
                ssl.clone(),
                &[("KAFKA_BROKERS", &kafka.addr(Listener::Mtls))],
            ),
            vec!["wants a client certificate", "SSL_KEY_LOCATION"],
        ),
        (
            "TLS to a plaintext listener",
            with(
                ssl.clone(),
                &[("KAFKA_BROKERS", &plaintext), ("SSL_CA_LOCATION", &ca)],
            ),
            vec!["is this a TLS listener? check SECURITY_PROTOCOL"],
        ),
        (
            "plaintext to a TLS listener",
            vec![("KAFKA_BROKERS".into(), kafka.addr(Listener::Ssl))],
            vec!["TLS listener", "SECURITY_PROTOCOL"],
        ),
    ];
    for (case, env, words) in cases {
        for (bin, args, extra) in binaries() {
            let env = with(env.clone(), &extra);
            let err = fails(&bin, &args, &env, 1, &words);
            println!("{case}: {}", err.lines().last().unwrap_or_default());
        }
    }
}

#[test]
fn host_name_checking_off_is_allowed_with_a_loud_warning() {
    let kafka = SecureKafka::shared();
    let env = with(
        client_env(kafka, Listener::WrongHost, ""),
        &[("SSL_ENDPOINT_IDENTIFICATION_ALGORITHM", "none")],
    );
    let (topic, group) = (unique("nohost"), unique("g"));
    testkit::create_topic(&kafka.plaintext(), &topic, 1);
    testkit::produce::produce_seq(&kafka.plaintext(), &topic, 1, "p", 3);
    let mut c = consumer(&env, &topic, &group, "nohost");
    wait_for("3 messages", Duration::from_secs(60), POLL, || {
        (printed(&c) >= 3).then_some(())
    });
    assert_eq!(
        c.terminate(Duration::from_secs(15)),
        Some(0),
        "{}",
        c.stderr()
    );
    let log = c.stderr();
    assert!(
        log.contains("WARN") && log.contains("NOT checked against its host name"),
        "{log}"
    );
}
