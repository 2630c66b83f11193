//! A running process's `/metrics` and `/readyz` read as data, so tests follow a member's assignment
//! through the endpoints an operator uses instead of through log wording that may change.

use std::{
    collections::BTreeMap,
    io::{Read, Write},
    net::TcpStream,
    time::Duration,
};

/// One sample: metric name, labels, value.
#[derive(Debug, Clone, PartialEq)]
pub struct Sample {
    /// The metric name.
    pub name: String,
    /// Its labels.
    pub labels: BTreeMap<String, String>,
    /// Its value.
    pub value: f64,
}

/// `GET path` on `addr`: (status, body), or `None` while nothing answers there. Unlike
/// [`crate::http_get`] it does not panic, for polling a process that may not be listening yet.
pub fn try_http_get(addr: &str, path: &str) -> Option<(u16, String)> {
    let mut s = TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(5))).ok()?;
    write!(
        s,
        "GET {path} HTTP/1.1\r\nHost: test\r\nConnection: close\r\n\r\n"
    )
    .ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let code = out.split_whitespace().nth(1)?.parse().ok()?;
    let body = out.split_once("\r\n\r\n").map(|(_, b)| b.to_string())?;
    Some((code, body))
}

/// Parses the Prometheus text format (the subset `prometheus` crates write: no timestamps, label
/// values without escaped quotes). Comment and malformed lines are skipped.
pub fn parse(text: &str) -> Vec<Sample> {
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|line| {
            let (series, value) = line.rsplit_once(' ')?;
            let value: f64 = value.trim().parse().ok()?;
            let (name, labels) = match series.split_once('{') {
                Some((name, rest)) => (name, rest.strip_suffix('}')?),
                None => (series, ""),
            };
            let labels = labels
                .split(',')
                .filter(|kv| !kv.is_empty())
                .filter_map(|kv| {
                    let (k, v) = kv.split_once('=')?;
                    Some((k.trim().to_string(), v.trim().trim_matches('"').to_string()))
                })
                .collect();
            Some(Sample {
                name: name.trim().to_string(),
                labels,
                value,
            })
        })
        .collect()
}

/// The samples `addr`'s `/metrics` serves now, `None` while it does not answer 200.
pub fn scrape(addr: &str) -> Option<Vec<Sample>> {
    match try_http_get(addr, "/metrics")? {
        (200, body) => Some(parse(&body)),
        _ => None,
    }
}

/// The value of an unlabelled metric (or the sum over its series).
pub fn value(samples: &[Sample], name: &str) -> Option<f64> {
    let mut found = samples.iter().filter(|s| s.name == name).peekable();
    found.peek()?;
    Some(found.map(|s| s.value).sum())
}

/// The consumer's assignment from `consumer_partition_assigned{topic,partition}`, sorted: the
/// `(topic, partition)`s it owns now.
pub fn assigned_partitions(samples: &[Sample]) -> Vec<(String, i32)> {
    let mut parts: Vec<(String, i32)> = samples
        .iter()
        .filter(|s| s.name == "consumer_partition_assigned" && s.value == 1.0)
        .filter_map(|s| {
            Some((
                s.labels.get("topic")?.clone(),
                s.labels.get("partition")?.parse().ok()?,
            ))
        })
        .collect();
    parts.sort();
    parts
}

/// A consumer's settled assignment, read from its endpoints at `addr`: `Some` once
/// `/readyz` says it is stable in its group and `/metrics` shows the assignment of that generation
/// (possibly empty, when the group has more members than partitions); `None` before it joined,
/// while it rebalances, or once it left.
///
/// The group status (behind `/readyz`) and the assignment gauges (set when the consumer loop takes
/// the assignment) change at slightly different moments, so the two are tied by generation:
/// `consumer_group_generation` is set with the assignment, and `/readyz` names the generation the
/// member is stable in.
pub fn settled_assignment(addr: &str) -> Option<Vec<(String, i32)>> {
    let (code, body) = try_http_get(addr, "/readyz")?;
    if code != 200 {
        return None;
    }
    let samples = scrape(addr)?;
    let assigned_in = value(&samples, "consumer_group_generation")?;
    if value(&samples, "consumer_rebalances_total").unwrap_or(0.0) < 1.0 {
        return None;
    }
    if let Some(stable_in) = readyz_generation(&body) {
        if f64::from(stable_in) != assigned_in {
            return None;
        }
    }
    let parts = assigned_partitions(&samples);
    let count = value(&samples, "consumer_assigned_partitions")?;
    (count as usize == parts.len()).then_some(parts)
}

/// The number after the word "generation" in a `/readyz` body, if it has one.
fn readyz_generation(body: &str) -> Option<i32> {
    let mut words = body.split_whitespace();
    words.find(|w| *w == "generation")?;
    words
        .next()?
        .trim_matches(|c: char| !c.is_ascii_digit())
        .parse()
        .ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_labelled_and_plain_samples() {
        let text = "# HELP consumer_partition_assigned 1 for each partition this member owns.\n\
# TYPE consumer_partition_assigned gauge\n\
consumer_partition_assigned{partition=\"3\",topic=\"t\"} 1\n\
consumer_partition_assigned{partition=\"10\",topic=\"t\"} 1\n\
consumer_partition_assigned{partition=\"0\",topic=\"u\"} 1\n\
consumer_assigned_partitions 3\n\
consumer_processing_seconds_bucket{le=\"+Inf\"} 12\n";
        let s = parse(text);
        assert_eq!(s.len(), 5);
        let tp = |t: &str, p| (t.to_string(), p);
        assert_eq!(
            assigned_partitions(&s),
            vec![tp("t", 3), tp("t", 10), tp("u", 0)]
        );
        assert_eq!(value(&s, "consumer_assigned_partitions"), Some(3.0));
        assert_eq!(value(&s, "missing"), None);
        assert_eq!(s[4].labels["le"], "+Inf");
    }

    #[test]
    fn finds_the_generation_in_a_readyz_body() {
        assert_eq!(
            readyz_generation("stable in generation 12 with partitions [0,1]"),
            Some(12)
        );
        assert_eq!(readyz_generation("Joining"), None);
    }
}
