//! One sample of the experiment: offsets from the brokers (through `admin lag`'s reader), owners from
//! the broker's DescribeGroups where it gives them (Apache Kafka does while the group is stable), else
//! from the consumers' own metrics (during a rebalance, and always on nisshi, whose DescribeGroups
//! leaves members' assignments empty). The live view's owner list is always the metrics'.

use std::{
    collections::{BTreeMap, BTreeSet, VecDeque},
    net::SocketAddr,
    time::Duration,
};

use admin::lag::{Format, Options, Reader};
use lag::{Forecast, History, Reset, Snapshot};
use tokio::io::{AsyncReadExt as _, AsyncWriteExt as _};

use crate::{fleet::Fleet, series::Row};

/// How far back the printed rates look.
const RATE_SPAN: f64 = 5.0;

/// Reads samples and keeps what rates and the forecast need.
pub struct Sampler {
    reader: Reader,
    opts: Options,
    history: History,
    /// Offsets at the first sample: `produced` and `consumed` count from there.
    base: Option<(i64, i64)>,
    /// (t, produced, consumed) over the last [`RATE_SPAN`] seconds.
    recent: VecDeque<(f64, i64, i64)>,
}

impl Sampler {
    pub fn new(reader: Reader, group: &str, topic: &str, window: Duration) -> Self {
        Self {
            reader,
            opts: Options {
                group: group.to_string(),
                topic: Some(topic.to_string()),
                watch: None,
                format: Format::Json,
                reset: Reset::Earliest,
                window,
                samples: None,
                timeout: Duration::from_secs(30),
            },
            history: History::new(window.as_secs_f64()),
            base: None,
            recent: VecDeque::new(),
        }
    }

    /// Reads until the brokers answer for the group, recording nothing, within `timeout`. A fresh
    /// Apache Kafka creates `__consumer_offsets` on the first coordinator lookup and answers
    /// NotCoordinator for a second or two while it loads: waited out here, before the first
    /// producer, it shows in neither the samples nor the first consumer's start.
    pub async fn warm_up(&mut self, timeout: Duration) -> anyhow::Result<()> {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut told = false;
        loop {
            match self.reader.sample(&self.opts).await {
                Ok(_) => return Ok(()),
                Err(err) if tokio::time::Instant::now() >= deadline => {
                    return Err(anyhow::Error::new(err).context(format!(
                        "the brokers did not answer for group {} within {timeout:?}",
                        self.opts.group
                    )));
                }
                Err(err) => {
                    if !told {
                        println!("waiting for the group coordinator ({err}) ...");
                        told = true;
                    }
                    tokio::time::sleep(Duration::from_millis(250)).await;
                }
            }
        }
    }

    /// A sample at `t` seconds into the run.
    pub async fn sample(
        &mut self,
        t: f64,
        phase: u8,
        fleet: &mut Fleet,
    ) -> anyhow::Result<(Row, Option<Forecast>, BTreeMap<String, Vec<i32>>)> {
        let owners = owners(fleet, &self.opts.topic.clone().unwrap_or_default()).await;
        let mut samples = self.reader.sample(&self.opts).await?;
        let sample = samples
            .pop()
            .ok_or_else(|| anyhow::anyhow!("no sample of the topic"))?;
        let mut snapshot: Snapshot = sample.snapshot;
        for p in &mut snapshot.partitions {
            if p.owner.is_none() {
                p.owner = owners
                    .iter()
                    .find(|(_, ps)| ps.contains(&p.partition))
                    .map(|(name, _)| name.clone());
            }
        }
        let log_end: i64 = snapshot.partitions.iter().map(|p| p.log_end).sum();
        let position: i64 = snapshot
            .partitions
            .iter()
            .map(|p| p.committed.unwrap_or(p.log_start))
            .sum();
        let (base_end, base_pos) = *self.base.get_or_insert((log_end, position));
        let (produced, consumed) = (log_end - base_end, position - base_pos);
        self.recent.push_back((t, produced, consumed));
        while self.recent.len() > 2 && t - self.recent[0].0 > RATE_SPAN {
            self.recent.pop_front();
        }
        let (t0, p0, c0) = self.recent[0];
        let span = t - t0;
        let rate = |now: i64, then: i64| {
            if span > 0.0 {
                (now - then) as f64 / span
            } else {
                0.0
            }
        };
        let lags: Vec<i64> = snapshot
            .partitions
            .iter()
            .map(|p| lag::lag(p, self.opts.reset).messages)
            .collect();
        let owned = snapshot
            .partitions
            .iter()
            .filter(|p| p.owner.is_some())
            .count();
        let row = Row {
            t,
            phase,
            consumers: fleet.running_consumers(),
            owners: owners.values().filter(|ps| !ps.is_empty()).count(),
            owned,
            produced,
            consumed,
            produce_rate: rate(produced, p0),
            consume_rate: rate(consumed, c0),
            total: lags.iter().sum(),
            lags,
        };
        self.history.push(snapshot);
        Ok((row, self.history.forecast(self.opts.reset), owners))
    }
}

/// Partitions each consumer reports owning (`consumer_partition_assigned{...} 1`).
async fn owners(fleet: &Fleet, topic: &str) -> BTreeMap<String, Vec<i32>> {
    let mut scrapes = tokio::task::JoinSet::new();
    for c in &fleet.consumers {
        if let Some(addr) = c.metrics_addr() {
            let name = c.name.clone();
            scrapes.spawn(async move { (name, scrape(addr).await) });
        }
    }
    let mut out = BTreeMap::new();
    while let Some(Ok((name, body))) = scrapes.join_next().await {
        if let Some(body) = body {
            out.insert(name, assigned(&body, topic));
        }
    }
    out
}

/// The partitions of `topic` a consumer's metrics page says it owns.
fn assigned(metrics: &str, topic: &str) -> Vec<i32> {
    let mut out: BTreeSet<i32> = BTreeSet::new();
    for line in metrics.lines() {
        let Some(rest) = line.strip_prefix("consumer_partition_assigned{") else {
            continue;
        };
        let Some((labels, value)) = rest.split_once('}') else {
            continue;
        };
        if value.trim() != "1" {
            continue;
        }
        let label = |name: &str| {
            labels.split(',').find_map(|kv| {
                let (k, v) = kv.split_once('=')?;
                (k.trim() == name).then(|| v.trim().trim_matches('"').to_string())
            })
        };
        if label("topic").as_deref() == Some(topic) {
            if let Some(p) = label("partition").and_then(|p| p.parse().ok()) {
                out.insert(p);
            }
        }
    }
    out.into_iter().collect()
}

/// `GET /metrics`, bounded: a consumer busy rebalancing must not stall the view.
async fn scrape(addr: SocketAddr) -> Option<String> {
    let get = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        s.write_all(b"GET /metrics HTTP/1.1\r\nHost: demo\r\nConnection: close\r\n\r\n")
            .await
            .ok()?;
        let mut buf = Vec::new();
        s.read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8(buf).ok()?;
        text.split_once("\r\n\r\n")
            .map(|(_, body)| body.to_string())
    };
    tokio::time::timeout(Duration::from_millis(800), get)
        .await
        .ok()
        .flatten()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_owned_partitions_from_the_metrics_page() {
        let page = "# HELP consumer_partition_assigned 1 for each partition this member owns.\n\
            # TYPE consumer_partition_assigned gauge\n\
            consumer_partition_assigned{partition=\"0\",topic=\"t\"} 1\n\
            consumer_partition_assigned{partition=\"3\",topic=\"t\"} 0\n\
            consumer_partition_assigned{partition=\"5\",topic=\"t\"} 1\n\
            consumer_partition_assigned{partition=\"1\",topic=\"other\"} 1\n\
            consumer_assigned_partitions 2\n";
        assert_eq!(assigned(page, "t"), vec![0, 5]);
        assert_eq!(assigned(page, "none"), Vec::<i32>::new());
    }
}
