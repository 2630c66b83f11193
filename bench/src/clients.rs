//! The clients compared, how to start each as a producer or a consumer, and how to read what each
//! says (first acknowledgement, assignment changes). The Java client is measured as a consumer only.

use std::{
    path::{Path, PathBuf},
    process::Command,
};

/// A client under test.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kind {
    /// Our release binaries (`producer` on rskafka, `consumer` on our own group and fetch crates).
    Ours,
    /// The `rdkafka` crate (librdkafka built from its bundled source), bench/src/bin/rdk-*.rs.
    RustRdkafka,
    /// confluent-kafka (librdkafka from Python), bench/peers/*.py.
    ConfluentKafka,
    /// kafka-python, the seed's client, bench/peers/*.py.
    KafkaPython,
    /// Apache Kafka's Java client (kafka-clients of the pinned release), tests/java/GroupMember.java
    /// with `--output seed --defaults`: a consumer only.
    Java,
}

pub const ALL: [Kind; 5] = [
    Kind::Ours,
    Kind::RustRdkafka,
    Kind::Java,
    Kind::ConfluentKafka,
    Kind::KafkaPython,
];

/// `Java (kafka-clients <version>)`, the version the jars are pinned to.
fn java_name() -> &'static str {
    static NAME: std::sync::OnceLock<String> = std::sync::OnceLock::new();
    NAME.get_or_init(|| format!("Java (kafka-clients {})", localkafka::version()))
}

impl Kind {
    pub fn name(self) -> &'static str {
        match self {
            Kind::Ours => "ours",
            Kind::RustRdkafka => "rust-rdkafka",
            Kind::ConfluentKafka => "confluent-kafka",
            Kind::KafkaPython => "kafka-python",
            Kind::Java => java_name(),
        }
    }

    /// Whether the client has a producer peer (every one but the Java client).
    pub fn has_producer(self) -> bool {
        self != Kind::Java
    }

    fn py_client(self) -> &'static str {
        match self {
            Kind::ConfluentKafka => "confluent-kafka",
            _ => "kafka-python",
        }
    }

    pub fn is_python(self) -> bool {
        matches!(self, Kind::ConfluentKafka | Kind::KafkaPython)
    }
}

/// Where every client's executable is.
#[derive(Clone, Debug)]
pub struct Paths {
    /// Our release binaries.
    pub ours: PathBuf,
    /// bench/target/release (the rust-rdkafka peers).
    pub peers: PathBuf,
    /// bench/peers (the Python peers).
    pub py: PathBuf,
    /// The Python interpreter.
    pub python: String,
    /// The classpath of the compiled GroupMember and the cached jars, when the Java client runs.
    pub java_classpath: Option<String>,
}

impl Paths {
    /// A producer at `interval_ms`. `first_ack_log`: make ours log each acknowledgement (debug
    /// level) so its first one can be timed; the peers always print `acked <seq>` on stdout.
    pub fn producer(
        &self,
        kind: Kind,
        broker: &str,
        topic: &str,
        id: &str,
        first_ack_log: bool,
    ) -> Command {
        match kind {
            Kind::Ours => {
                let mut c = Command::new(self.ours.join("producer"));
                c.env_clear()
                    .env("KAFKA_BROKERS", broker)
                    .env("TOPIC", topic)
                    .env("PRODUCER_ID", id)
                    // A metrics server as in a pod, on a port of its own.
                    .env("METRICS_ADDR", "127.0.0.1:0");
                if first_ack_log {
                    c.env("RUST_LOG", "info,rskafka=off,producer=debug");
                }
                c
            }
            Kind::RustRdkafka => {
                let mut c = Command::new(self.peers.join("rdk-producer"));
                c.env_clear()
                    .env("KAFKA_BROKERS", broker)
                    .env("TOPIC", topic)
                    .env("PRODUCER_ID", id);
                c
            }
            Kind::ConfluentKafka | Kind::KafkaPython => {
                let mut c = self.python_cmd(&self.py.join("producer.py"));
                c.args(["--client", kind.py_client(), "--brokers", broker])
                    .args(["--topic", topic, "--id", id]);
                c
            }
            Kind::Java => unreachable!("the Java client has no producer peer (Kind::has_producer)"),
        }
    }

    /// A consumer-group member with the client's defaults and earliest reset.
    pub fn consumer(&self, kind: Kind, broker: &str, topic: &str, group: &str) -> Command {
        match kind {
            Kind::Ours => {
                let mut c = Command::new(self.ours.join("consumer"));
                c.env_clear()
                    .env("KAFKA_BROKERS", broker)
                    .env("TOPIC", topic)
                    .env("GROUP_ID", group)
                    .env("AUTO_OFFSET_RESET", "earliest")
                    .env("METRICS_ADDR", "127.0.0.1:0");
                // `BENCH_OURS_ENV="HEARTBEAT_INTERVAL=1s ..."`: settings to try on ours, named in
                // the report's variant label by the caller.
                if let Ok(extra) = std::env::var("BENCH_OURS_ENV") {
                    for pair in extra.split_whitespace() {
                        if let Some((k, v)) = pair.split_once('=') {
                            c.env(k, v);
                        }
                    }
                }
                c
            }
            Kind::RustRdkafka => {
                let mut c = Command::new(self.peers.join("rdk-consumer"));
                c.env_clear()
                    .env("KAFKA_BROKERS", broker)
                    .env("TOPIC", topic)
                    .env("GROUP_ID", group)
                    .env("AUTO_OFFSET_RESET", "earliest");
                c
            }
            Kind::ConfluentKafka | Kind::KafkaPython => {
                let mut c = self.python_cmd(&self.py.join("consumer.py"));
                c.args(["--client", kind.py_client(), "--brokers", broker])
                    .args(["--topic", topic, "--group", group]);
                c
            }
            Kind::Java => {
                let classpath = self.java_classpath.as_deref().unwrap_or("");
                let mut c = localkafka::jars::java(classpath);
                c.env_clear();
                for var in ["PATH", "HOME", "JAVA_HOME"] {
                    if let Some(v) = std::env::var_os(var) {
                        c.env(var, v);
                    }
                }
                // The JVM's defaults (full JIT, G1, heap a quarter of the RAM) unless
                // `BENCH_JAVA_OPTS` says otherwise, e.g. `-Xmx256m`.
                if let Ok(opts) = std::env::var("BENCH_JAVA_OPTS") {
                    c.args(opts.split_whitespace());
                }
                c.arg("GroupMember")
                    .args(["--brokers", broker, "--group", group, "--topic", topic])
                    .args(["--output", "seed", "--defaults", "--seconds", "900"]);
                c
            }
        }
    }

    fn python_cmd(&self, script: &Path) -> Command {
        let mut c = Command::new(&self.python);
        // Keep PATH/HOME so the interpreter finds its packages; nothing else leaks in.
        c.env_clear();
        for var in ["PATH", "HOME", "VIRTUAL_ENV", "PYTHONPATH"] {
            if let Some(v) = std::env::var_os(var) {
                c.env(var, v);
            }
        }
        c.arg(script);
        c
    }
}

/// Whether `line` (stdout for the peers, stderr for ours) reports the first acknowledgement.
pub fn is_first_ack(kind: Kind, line: &str) -> bool {
    match kind {
        // `… DEBUG producer: sent seq=1 partition=… offset=… latency=…`
        Kind::Ours => line.contains("DEBUG") && line.contains(": sent seq=1 "),
        _ => line.starts_with("acked "),
    }
}

/// What an assignment-related stderr line says: `Some(n)` partitions now owned (0 after a
/// revocation), `None` for any other line.
pub fn assignment(kind: Kind, line: &str) -> Option<usize> {
    match kind {
        Kind::Ours => {
            if line.contains("revoking partitions") || line.contains("partitions lost") {
                return Some(0);
            }
            if !line.contains("partitions assigned") {
                return None;
            }
            // `count=9` in text logs (possibly with colour codes around `=`), `"count":9` in JSON.
            let at = line.find("count")? + "count".len();
            let digits: String = line[at..]
                .chars()
                .skip_while(|c| !c.is_ascii_digit())
                .take_while(|c| c.is_ascii_digit())
                .collect();
            digits.parse().ok()
        }
        _ => {
            let line = line.trim();
            if line == "revoked" {
                Some(0)
            } else {
                line.strip_prefix("assigned ")?.trim().parse().ok()
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_assignments() {
        let ours = "2026-01-01T00:00:00Z  INFO group::driver: partitions assigned generation=2 partitions=0,1 count=2 gained=- lost=3";
        assert_eq!(assignment(Kind::Ours, ours), Some(2));
        assert_eq!(
            assignment(Kind::Ours, "INFO revoking partitions partitions=1 reason=x"),
            Some(0)
        );
        assert_eq!(
            assignment(Kind::Ours, "INFO found the group coordinator"),
            None
        );
        assert_eq!(assignment(Kind::KafkaPython, "assigned 9"), Some(9));
        assert_eq!(assignment(Kind::RustRdkafka, "revoked"), Some(0));
        assert_eq!(assignment(Kind::RustRdkafka, "consumer error: x"), None);
        assert_eq!(assignment(Kind::Java, "assigned 1"), Some(1));
        assert_eq!(assignment(Kind::Java, "revoked"), Some(0));
    }
}
