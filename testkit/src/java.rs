//! The Java client as a peer: `tests/java/GroupMember.java` (and `AssignorOracle.java`, Java's
//! assignors without a broker), compiled once with `javac` against the cached jars of the pinned
//! release, and Kafka's own command-line tools.

use std::{path::PathBuf, process::Command};

use localkafka::jars;

/// A command running the Java group member (see the source's header for its arguments).
pub fn group_member() -> Command {
    java_program("GroupMember", "group-member")
}

/// A command running `tests/java/AssignorOracle.java`: Java's range, roundrobin and cooperative-sticky
/// assignors fed groups on stdin, no broker needed (see the source's header for the line format).
pub fn assignor_oracle() -> Command {
    java_program("AssignorOracle", "assignor-oracle")
}

/// `tests/java/<class>.java` compiled once per release into `target/java/<dir>-<version>`, ready to run.
fn java_program(class: &str, dir: &str) -> Command {
    let source = crate::workspace_root().join(format!("tests/java/{class}.java"));
    let target = std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| crate::workspace_root().join("target"));
    let out = target
        .join("java")
        .join(format!("{dir}-{}", localkafka::version()));
    let classpath = jars::compile(&[source], &out)
        .unwrap_or_else(|e| panic!("compiling the Java {class}: {e}"));
    let mut cmd = jars::java(&classpath);
    // Short-lived JVMs: C1 alone starts them faster; a small heap leaves room for the brokers.
    cmd.args(["-XX:TieredStopAtLevel=1", "-Xmx128m", class]);
    cmd
}

/// Runs one of Kafka's tools (a class in `kafka-tools`) to completion: (exit code, stdout, stderr).
pub fn tool(class: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let out = jars::tool(class)
        .unwrap_or_else(|e| panic!("{e}"))
        .args(args)
        .stdin(std::process::Stdio::null())
        .output()
        .unwrap_or_else(|e| panic!("running {class}: {e}"));
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// `kafka-consumer-groups --bootstrap-server <bootstrap> <args…>`: (exit code, stdout, stderr).
pub fn consumer_groups(bootstrap: &str, args: &[&str]) -> (Option<i32>, String, String) {
    let mut all = vec!["--bootstrap-server", bootstrap];
    all.extend_from_slice(args);
    tool(
        "org.apache.kafka.tools.consumer.group.ConsumerGroupCommand",
        &all,
    )
}

/// `kafka-consumer-groups --describe --group <group>`'s rows: `(topic, partition, current offset,
/// log-end offset, lag)`, where Kafka prints `-` for "no committed offset" (`None`).
pub fn describe_group(bootstrap: &str, group: &str) -> Vec<DescribedPartition> {
    let (code, out, err) = consumer_groups(bootstrap, &["--describe", "--group", group]);
    assert_eq!(code, Some(0), "kafka-consumer-groups failed:\n{out}\n{err}");
    parse_describe(&out)
}

/// One row of `kafka-consumer-groups --describe`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DescribedPartition {
    /// The topic.
    pub topic: String,
    /// The partition.
    pub partition: i32,
    /// CURRENT-OFFSET: the committed offset, `None` where Kafka prints `-`.
    pub current: Option<i64>,
    /// LOG-END-OFFSET.
    pub log_end: Option<i64>,
    /// LAG, `None` where Kafka prints `-`.
    pub lag: Option<i64>,
}

/// Parses the table by its header, so column order and spacing changes between releases don't
/// matter.
pub fn parse_describe(out: &str) -> Vec<DescribedPartition> {
    let mut header: Option<Vec<&str>> = None;
    let mut rows = Vec::new();
    for line in out.lines() {
        let cols: Vec<&str> = line.split_whitespace().collect();
        if cols.contains(&"GROUP") && cols.contains(&"PARTITION") {
            header = Some(cols);
            continue;
        }
        let Some(h) = &header else { continue };
        if cols.len() < h.len() {
            continue;
        }
        let at = |name: &str| h.iter().position(|c| *c == name).map(|i| cols[i]);
        let num = |name: &str| at(name).and_then(|v| v.parse::<i64>().ok());
        let (Some(topic), Some(partition)) = (at("TOPIC"), num("PARTITION")) else {
            continue;
        };
        rows.push(DescribedPartition {
            topic: topic.to_string(),
            partition: partition as i32,
            current: num("CURRENT-OFFSET"),
            log_end: num("LOG-END-OFFSET"),
            lag: num("LAG"),
        });
    }
    rows.sort_by_key(|r| (r.topic.clone(), r.partition));
    rows
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_describe_table_with_dashes() {
        let out = "\nConsumer group 'g' has no active members.\n\n\
GROUP           TOPIC           PARTITION  CURRENT-OFFSET  LOG-END-OFFSET  LAG             CONSUMER-ID     HOST            CLIENT-ID\n\
g               t               1          -               4               -               -               -               -\n\
g               t               0          7               9               2               -               -               -\n";
        let rows = parse_describe(out);
        assert_eq!(rows.len(), 2);
        assert_eq!(rows[0].partition, 0);
        assert_eq!(
            (rows[0].current, rows[0].log_end, rows[0].lag),
            (Some(7), Some(9), Some(2))
        );
        assert_eq!(
            (rows[1].current, rows[1].log_end, rows[1].lag),
            (None, Some(4), None)
        );
    }
}
