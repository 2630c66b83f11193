//! Consumer lag arithmetic, pure: snapshots of offsets in, lag, rates, states, a drain ETA and the
//! number of consumers a group needs out. No I/O, so every rule is a unit test on synthetic histories.
//!
//! # Rules
//! - **Offset lag** of a partition = log-end offset − committed offset, never negative (offsets read a
//!   moment apart are clamped, and the clamp is reported). A partition without a commit is its own
//!   state, `NO_COMMIT`; its lag counts from the group's reset position (earliest: the log start).
//! - **Rates** come from successive snapshots over a window: production from the log-end offsets,
//!   consumption from the committed offsets, the latter only across pairs of snapshots in which the
//!   group was stable with the same members, so rebalance pauses do not read as slow consumers.
//! - **Drain ETA** = lag / (consume − produce); "never" when that is not positive. For the group, the
//!   slowest owner decides it (owners unknown: the slowest partition).
//! - **Consumers needed** = the smallest n whose busiest member (a member owns whole partitions: with n
//!   members, contiguous blocks of ⌈P/n⌉ or ⌊P/n⌋) keeps up with its partitions' production, given the
//!   measured capacity of one saturated member. Capped at P, flagged when P is the limit.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

use std::collections::{BTreeMap, BTreeSet, VecDeque};

use serde::Serialize;

/// Where a partition without a committed offset starts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "lowercase")]
pub enum Reset {
    /// The log start: all retained records are lag.
    Earliest,
    /// The log end: no lag until something is committed.
    Latest,
}

/// One partition at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionSnapshot {
    /// Partition index.
    pub partition: i32,
    /// Earliest retained offset.
    pub log_start: i64,
    /// Log-end offset (high watermark).
    pub log_end: i64,
    /// The group's committed offset, if any.
    pub committed: Option<i64>,
    /// Timestamp (ms since the epoch) of the oldest record not yet consumed, if there is one.
    pub oldest_unconsumed_ms: Option<i64>,
    /// The member that owns it, when the broker says.
    pub owner: Option<String>,
}

/// The group at one moment.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Snapshot {
    /// Seconds on a monotonic clock.
    pub at: f64,
    /// Wall clock (ms since the epoch), for time lag.
    pub wall_ms: i64,
    /// The broker's group state (`Stable`, `PreparingRebalance`, `CompletingRebalance`, `Empty`, `Dead`).
    pub group_state: String,
    /// Member ids.
    pub members: BTreeSet<String>,
    /// Partitions, by index.
    pub partitions: Vec<PartitionSnapshot>,
}

impl Snapshot {
    /// Whether the group was stable (not rebalancing) at this moment.
    pub fn stable(&self) -> bool {
        self.group_state == "Stable"
    }
}

/// How a partition's lag was computed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "snake_case")]
pub enum Basis {
    /// From the committed offset.
    Committed,
    /// No commit: from the reset position.
    ResetPosition,
}

/// Lag of one partition.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct Lag {
    /// Messages behind.
    pub messages: i64,
    /// From what.
    pub basis: Basis,
    /// The committed offset was ahead of the log end (read a moment apart) and was clamped.
    pub clamped: bool,
}

/// The lag of `p`.
pub fn lag(p: &PartitionSnapshot, reset: Reset) -> Lag {
    match p.committed {
        Some(committed) => Lag {
            messages: (p.log_end - committed).max(0),
            basis: Basis::Committed,
            clamped: committed > p.log_end,
        },
        None => Lag {
            messages: match reset {
                Reset::Earliest => (p.log_end - p.log_start).max(0),
                Reset::Latest => 0,
            },
            basis: Basis::ResetPosition,
            clamped: false,
        },
    }
}

/// Age in seconds of the oldest unconsumed record (0 when there is none).
pub fn time_lag_secs(p: &PartitionSnapshot, wall_ms: i64) -> f64 {
    p.oldest_unconsumed_ms
        .map_or(0.0, |ts| ((wall_ms - ts).max(0) as f64) / 1000.0)
}

/// Where a partition stands, judged over the window.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// The group never committed it.
    NoCommit,
    /// Keeping up, and less than [`CAUGHT_UP_SECS`] of production behind (or nothing behind).
    CaughtUp,
    /// Behind, and consumption outpaces production.
    Draining,
    /// Behind, and production outpaces consumption.
    Growing,
    /// Behind, and nothing was consumed over the window.
    Stalled,
}

/// Behind by at most this many seconds of production counts as caught up: a consumer that keeps up
/// still trails by up to its commit interval.
pub const CAUGHT_UP_SECS: f64 = 10.0;

/// A forward estimate of when the lag reaches zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Eta {
    /// Nothing to drain.
    Now,
    /// In this many seconds at the measured rates.
    In {
        /// Seconds.
        secs: f64,
    },
    /// Not at the measured rates.
    Never {
        /// Why, in words.
        reason: String,
    },
    /// Not enough history yet.
    Unknown,
}

/// Rates of one partition over the window, messages per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    /// Production (log-end growth).
    pub produce: f64,
    /// Consumption (committed growth, stable periods only).
    pub consume: f64,
    /// Seconds of stable history the consumption rate is based on.
    pub stable_secs: f64,
}

/// One partition's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PartitionForecast {
    /// Partition index.
    pub partition: i32,
    /// Current lag.
    pub lag: Lag,
    /// State.
    pub state: State,
    /// Rates (`None` before two snapshots).
    pub rates: Option<Rates>,
    /// Drain ETA.
    pub eta: Eta,
}

/// How many consumers the group needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Needed {
    /// This many keep up.
    Count {
        /// Consumers.
        count: usize,
        /// Messages/s one saturated consumer was measured to handle.
        capacity_per_consumer: f64,
        /// The partition count is the limit: even one partition per consumer is not enough, or the
        /// answer equals the partition count.
        limited_by_partitions: bool,
    },
    /// Cannot be measured yet.
    Unknown {
        /// Why.
        reason: String,
    },
}

/// The group's forecast.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct Forecast {
    /// Per partition.
    pub partitions: Vec<PartitionForecast>,
    /// Sum of partition lags.
    pub total_lag: i64,
    /// Total production, messages/s.
    pub produce_rate: f64,
    /// Total consumption, messages/s.
    pub consume_rate: f64,
    /// When the slowest owner catches up.
    pub eta: Eta,
    /// Consumers needed to keep up.
    pub needed: Needed,
}

/// Snapshots over a sliding window.
#[derive(Debug, Clone)]
pub struct History {
    /// Oldest first.
    snapshots: VecDeque<Snapshot>,
    /// Seconds of history kept.
    window: f64,
}

impl History {
    /// Keeps `window` seconds of snapshots. Make it several commit intervals long: committed offsets
    /// move in steps.
    pub fn new(window: f64) -> Self {
        Self {
            snapshots: VecDeque::new(),
            window,
        }
    }

    /// Adds a snapshot, forgetting those older than the window (keeping at least two).
    pub fn push(&mut self, snapshot: Snapshot) {
        // Membership changed: consumption measured before it says nothing about the new group.
        if self
            .snapshots
            .back()
            .is_some_and(|last| last.members != snapshot.members)
        {
            let keep_from = self.snapshots.len().saturating_sub(1);
            self.snapshots.drain(..keep_from);
        }
        self.snapshots.push_back(snapshot);
        while self.snapshots.len() > 2
            && self.snapshots.back().map(|b| b.at).unwrap_or(0.0) - self.snapshots[0].at
                > self.window
        {
            self.snapshots.pop_front();
        }
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.snapshots.back()
    }

    /// Per-partition rates over the window; `None` before two snapshots.
    pub fn rates(&self) -> Option<BTreeMap<i32, Rates>> {
        let (first, last) = (self.snapshots.front()?, self.snapshots.back()?);
        let span = last.at - first.at;
        if self.snapshots.len() < 2 || span <= 0.0 {
            return None;
        }
        let mut out = BTreeMap::new();
        for p in &last.partitions {
            let start = first.partitions.iter().find(|q| q.partition == p.partition);
            let produce = start.map_or(0.0, |s| (p.log_end - s.log_end).max(0) as f64 / span);
            let (mut consumed, mut stable_secs) = (0.0, 0.0);
            for pair in self.snapshots.iter().collect::<Vec<_>>().windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if !(a.stable() && b.stable()) {
                    continue;
                }
                let before = a
                    .partitions
                    .iter()
                    .find(|q| q.partition == p.partition)
                    .and_then(|q| q.committed);
                let after = b
                    .partitions
                    .iter()
                    .find(|q| q.partition == p.partition)
                    .and_then(|q| q.committed);
                if let (Some(x), Some(y)) = (before, after) {
                    consumed += (y - x).max(0) as f64;
                }
                stable_secs += b.at - a.at;
            }
            let consume = if stable_secs > 0.0 {
                consumed / stable_secs
            } else {
                0.0
            };
            out.insert(
                p.partition,
                Rates {
                    produce,
                    consume,
                    stable_secs,
                },
            );
        }
        Some(out)
    }

    /// The forecast from the current window.
    pub fn forecast(&self, reset: Reset) -> Option<Forecast> {
        let latest = self.latest()?;
        let rates = self.rates();
        let mut partitions = Vec::new();
        for p in &latest.partitions {
            let lag = lag(p, reset);
            let r = rates.as_ref().and_then(|r| r.get(&p.partition)).copied();
            partitions.push(PartitionForecast {
                partition: p.partition,
                lag,
                state: state(p, lag, r),
                rates: r,
                eta: r.map_or(Eta::Unknown, |r| {
                    eta(
                        lag.messages,
                        r.produce,
                        r.consume,
                        &format!("partition {}", p.partition),
                    )
                }),
            });
        }
        let total_lag = partitions.iter().map(|p| p.lag.messages).sum();
        let produce_rate = partitions
            .iter()
            .filter_map(|p| p.rates)
            .map(|r| r.produce)
            .sum();
        let consume_rate = partitions
            .iter()
            .filter_map(|p| p.rates)
            .map(|r| r.consume)
            .sum();
        let eta = group_eta(latest, &partitions);
        let needed = needed(latest, &partitions);
        Some(Forecast {
            partitions,
            total_lag,
            produce_rate,
            consume_rate,
            eta,
            needed,
        })
    }
}

fn state(p: &PartitionSnapshot, lag: Lag, rates: Option<Rates>) -> State {
    if p.committed.is_none() {
        return State::NoCommit;
    }
    let Some(r) = rates else {
        return if lag.messages == 0 {
            State::CaughtUp
        } else {
            State::Growing
        };
    };
    // Keeping up (within the noise of stepwise commits) with little behind.
    let keeping_up = r.consume >= r.produce * 0.95;
    if lag.messages == 0
        || (keeping_up && r.produce > 0.0 && lag.messages as f64 / r.produce <= CAUGHT_UP_SECS)
    {
        State::CaughtUp
    } else if r.stable_secs > 0.0 && r.consume == 0.0 {
        State::Stalled
    } else if r.consume > r.produce {
        State::Draining
    } else {
        State::Growing
    }
}

fn eta(lag: i64, produce: f64, consume: f64, what: &str) -> Eta {
    if lag == 0 {
        return Eta::Now;
    }
    let net = consume - produce;
    if net > 0.0 {
        Eta::In {
            secs: lag as f64 / net,
        }
    } else if consume == 0.0 {
        Eta::Never {
            reason: format!("{what}: nothing consumed while {produce:.1}/s is produced"),
        }
    } else {
        Eta::Never {
            reason: format!("{what}: consuming {consume:.1}/s, producing {produce:.1}/s"),
        }
    }
}

/// The slowest owner decides; without owners, the slowest partition.
fn group_eta(latest: &Snapshot, partitions: &[PartitionForecast]) -> Eta {
    if partitions.iter().any(|p| p.rates.is_none()) {
        return Eta::Unknown;
    }
    let owners: BTreeMap<&str, Vec<&PartitionForecast>> =
        partitions.iter().fold(BTreeMap::new(), |mut acc, f| {
            let owner = latest
                .partitions
                .iter()
                .find(|p| p.partition == f.partition)
                .and_then(|p| p.owner.as_deref());
            if let Some(owner) = owner {
                acc.entry(owner).or_default().push(f);
            }
            acc
        });
    let etas: Vec<Eta> =
        if owners.is_empty() || owners.values().map(Vec::len).sum::<usize>() < partitions.len() {
            partitions.iter().map(|p| p.eta.clone()).collect()
        } else {
            owners
                .iter()
                .map(|(owner, ps)| {
                    let lag: i64 = ps.iter().map(|p| p.lag.messages).sum();
                    let produce: f64 = ps.iter().filter_map(|p| p.rates).map(|r| r.produce).sum();
                    let consume: f64 = ps.iter().filter_map(|p| p.rates).map(|r| r.consume).sum();
                    eta(lag, produce, consume, &format!("member {owner}"))
                })
                .collect()
        };
    let mut worst = Eta::Now;
    for e in etas {
        worst = match (&worst, &e) {
            (Eta::Never { .. }, _) => worst,
            (_, Eta::Never { .. }) => e,
            (Eta::In { secs: a }, Eta::In { secs: b }) if b > a => e,
            (Eta::Now, Eta::In { .. }) => e,
            _ => worst,
        };
    }
    worst
}

/// Consumers needed: see the crate docs.
fn needed(latest: &Snapshot, partitions: &[PartitionForecast]) -> Needed {
    if partitions.iter().any(|p| p.rates.is_none()) {
        return Needed::Unknown {
            reason: "needs two snapshots".into(),
        };
    }
    // A member is saturated when its partitions are behind and not caught up: its consumption rate is
    // then its capacity. Owners unknown: all members share the saturated partitions evenly.
    let behind = |f: &&PartitionForecast| matches!(f.state, State::Growing | State::Draining);
    let saturated: Vec<&PartitionForecast> = partitions.iter().filter(behind).collect();
    if saturated.is_empty() {
        return Needed::Unknown {
            reason: format!(
                "every partition keeps up: {} member(s) suffice, capacity unknown until one falls behind",
                latest.members.len().max(1)
            ),
        };
    }
    if saturated
        .iter()
        .any(|f| f.rates.is_some_and(|r| r.stable_secs <= 0.0))
    {
        return Needed::Unknown {
            reason: "the group has not been stable long enough to measure consumption".into(),
        };
    }
    // A saturated member spends its capacity on all its partitions, also those it has just drained:
    // count the consumption of every partition it owns, not only of those still behind.
    let owner = |partition: i32| {
        latest
            .partitions
            .iter()
            .find(|p| p.partition == partition)
            .and_then(|p| p.owner.as_deref())
    };
    let owners: BTreeSet<&str> = saturated
        .iter()
        .filter_map(|f| owner(f.partition))
        .collect();
    let counted: Vec<&PartitionForecast> = if owners.is_empty() {
        // Owners unknown: every member is taken to be as busy as the ones behind.
        partitions.iter().collect()
    } else {
        partitions
            .iter()
            .filter(|f| owner(f.partition).is_some_and(|o| owners.contains(o)))
            .collect()
    };
    let consumers = if owners.is_empty() {
        latest.members.len().max(1)
    } else {
        owners.len()
    };
    let consumed: f64 = counted
        .iter()
        .filter_map(|f| f.rates)
        .map(|r| r.consume)
        .sum();
    let capacity = consumed / consumers as f64;
    if capacity <= 0.0 {
        return Needed::Unknown {
            reason: "nothing is being consumed".into(),
        };
    }
    let mut produce: Vec<(i32, f64)> = partitions
        .iter()
        .map(|f| (f.partition, f.rates.map_or(0.0, |r| r.produce)))
        .collect();
    produce.sort_by_key(|(p, _)| *p);
    let total = produce.len();
    for n in 1..=total {
        if busiest_block(&produce, n) <= capacity {
            return Needed::Count {
                count: n,
                capacity_per_consumer: capacity,
                limited_by_partitions: n == total && total > 1,
            };
        }
    }
    Needed::Count {
        count: total,
        capacity_per_consumer: capacity,
        limited_by_partitions: true,
    }
}

/// The largest production rate one member gets when `produce` (sorted by partition) is split into
/// `n` contiguous blocks, the first `P mod n` one partition larger (the range assignor's layout).
pub fn busiest_block(produce: &[(i32, f64)], n: usize) -> f64 {
    let (p, n) = (produce.len(), n.max(1));
    let (per, extra) = (p / n, p % n);
    let mut start = 0;
    let mut worst: f64 = 0.0;
    for i in 0..n.min(p) {
        let len = per + usize::from(i < extra);
        let sum: f64 = produce[start..start + len].iter().map(|(_, r)| r).sum();
        worst = worst.max(sum);
        start += len;
    }
    worst
}

#[cfg(test)]
mod tests;
