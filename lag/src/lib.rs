//! Consumer lag arithmetic, pure: snapshots of offsets in, lag, rates, states, a drain ETA and the
//! number of consumers a group needs out. No I/O, so every rule is a unit test on synthetic histories.
//!
//! # Rules
//! - **Offset lag** of a partition = log-end offset − committed offset, never negative (offsets read a
//!   moment apart are clamped, and the clamp is reported). A partition without a commit is its own
//!   state, `NO_COMMIT`; its lag counts from the group's reset position (earliest: the log start).
//! - **Production** is the log-end growth over the window: log ends move smoothly.
//! - **Consumption** is measured *between commits*, never over a fixed span. Committed offsets move
//!   in steps, one per commit interval; the committed growth over a fixed window counts four or five
//!   steps of a 5 s interval in 25 s, so a consumer that keeps up reads 20 % slow, and a 30 s interval
//!   reads as zero or double. From the first commit seen to the last, the span holds whole commit
//!   intervals, so the rate is exact up to the sampling interval. A commit is dated halfway between
//!   the sample before it and the sample that saw it. A commit is its member's: when any partition
//!   of a member moves, every partition it owns gets a commit, moved or not (owners unknown: any
//!   move is the group's commit). A saturated member works through its partitions in turns, so one
//!   partition's own moves come in bursts, and measured between them it read as consuming up to
//!   several times its share. Only commits of the current membership count, and only pairs within
//!   one stable period, so rebalance pauses do not read as slow consumers.
//! - **Lag at commit** = the log end when a commit landed − the committed offset: how far the
//!   consumer was from the log end when it committed. A consumer that keeps up reaches the log end at
//!   every commit, whatever its commit interval: what is left is what arrived while it fetched and
//!   processed its last batch ([`BATCH_SECS`], [`BATCH_RECORDS`]) and while the sample that saw the
//!   commit was on its way (half the sampling interval).
//! - **Growth** = the change of the lag at commit per second, across commits: production minus
//!   consumption, measured at the same moments. It counts only when it stands out of its own noise
//!   (twice its standard error, and [`RATE_TOLERANCE`] of production).
//! - **States**, per partition, in this order: `NO_COMMIT`; `EMPTY` (the group has no members);
//!   `REBALANCING`; `KEEPING_UP` (nothing behind, or the lag at the last commit within the slack);
//!   `STALLED` (behind, and its owner moved none of its partitions for the window, or for two
//!   commit intervals when the interval is longer, or two windows while it is unknown: a stuck
//!   consumer; a partition waiting its turn at a busy member is falling behind instead);
//!   `FALLING_BEHIND` (growth above noise); `DRAINING` (growth below minus the
//!   noise); `KEEPING_UP` again when the lag is bounded (no growth either way over at least half the
//!   window); `MEASURING` otherwise (too few commits to tell). The group takes its members' worst,
//!   but while a partition is behind beyond the slack and never committed, it is at least
//!   `MEASURING`: a member working through backlogs in turns has not reached it yet, and the
//!   partitions it did reach, each drained while it is worked, say nothing of the whole.
//! - **Drain ETA** = lag / −growth for a draining partition; "never" only for a partition falling
//!   behind or stalled. For the group, the slowest owner decides (owners unknown: the slowest
//!   partition).
//! - **Consumers needed**: from evidence of saturation only. A group with no partition falling behind
//!   needs no more members than it has: "the current N suffice". A member whose partitions' lag grows
//!   is saturated: its consumption over all its partitions, over one span (its first commit taken to
//!   its last; a partition first committed within it counts from its reset position), is its
//!   capacity. Then the answer is the smallest n whose busiest member (a member owns whole
//!   partitions: with n members, contiguous blocks of ⌈P/n⌉ or ⌊P/n⌋) keeps up with its partitions'
//!   production. Capped at P, flagged when P is the limit.
//! - **Scaling** ([`scale`]): the consumer count an autoscaler should run, from the forecast (a drain
//!   target on top of keeping up), and KEDA's Kafka scaler's rule to compare it with.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod scale;

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

    /// Whether nobody consumes: no members (`Empty`, or `Dead` for a group the broker forgot).
    pub fn empty(&self) -> bool {
        self.members.is_empty()
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

/// Where a partition (or the group) stands, judged over the window. See the crate docs for the rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum State {
    /// The group never committed it: its lag counts from the reset position.
    NoCommit,
    /// The group has no members: nothing consumes.
    Empty,
    /// The group is rebalancing: nothing is consumed until it is stable again.
    Rebalancing,
    /// Too few commits yet to tell; the lag at the last one was more than the slack.
    Measuring,
    /// Nothing behind but what the commit interval and fetch batching leave, or a lag that does not
    /// grow.
    KeepingUp,
    /// Behind, and consumption outpaces production: the ETA says when it is done.
    Draining,
    /// Behind, and production outpaces consumption: the lag grows.
    FallingBehind,
    /// Behind, and its owner (owners unknown: the group) moved nothing for the window: stuck.
    Stalled,
}

impl State {
    /// The name shown in the table and the JSON.
    pub fn name(self) -> &'static str {
        match self {
            State::NoCommit => "NO_COMMIT",
            State::Empty => "EMPTY",
            State::Rebalancing => "REBALANCING",
            State::Measuring => "MEASURING",
            State::KeepingUp => "KEEPING_UP",
            State::Draining => "DRAINING",
            State::FallingBehind => "FALLING_BEHIND",
            State::Stalled => "STALLED",
        }
    }

    /// In words, for people.
    pub fn words(self) -> &'static str {
        match self {
            State::NoCommit => "no commit yet",
            State::Empty => "empty (no members)",
            State::Rebalancing => "rebalancing",
            State::Measuring => "measuring (too few commits yet)",
            State::KeepingUp => "keeping up",
            State::Draining => "draining",
            State::FallingBehind => "falling behind",
            State::Stalled => "stalled",
        }
    }

    /// How much a partition in this state worries an operator: the group shows its worst.
    fn severity(self) -> u8 {
        match self {
            State::NoCommit | State::Empty | State::Rebalancing => 0,
            State::KeepingUp => 1,
            State::Measuring => 2,
            State::Draining => 3,
            State::FallingBehind => 4,
            State::Stalled => 5,
        }
    }
}

/// A consumer that keeps up may trail the log end at a commit by what arrives while it fetches and
/// processes one batch: this many seconds of production (a fetch waits up to 0.5 s by default in
/// Java, librdkafka and ours; the batch is processed after it arrives) ...
pub const BATCH_SECS: f64 = 2.0;
/// ... plus this many records, for partitions so slow that one batch is a few records.
pub const BATCH_RECORDS: f64 = 10.0;
/// A growth rate under this share of production is not told apart from keeping up.
pub const RATE_TOLERANCE: f64 = 0.02;
/// Commits are remembered for this many windows: a long commit interval needs a few to be measured.
const HORIZON_WINDOWS: f64 = 4.0;
/// Fewest commits the consumption rate is taken over, reaching back past the window if need be.
const MIN_COMMITS: usize = 3;

/// A forward estimate of when the lag reaches zero.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Eta {
    /// Nothing to drain: no lag, or only what the next commit clears (keeping up).
    Now,
    /// In this many seconds at the measured rates.
    In {
        /// Seconds.
        secs: f64,
    },
    /// Not at the measured rates: falling behind or stalled.
    Never {
        /// Why, in words.
        reason: String,
    },
    /// Not known: measuring, rebalancing, no members, or no commit.
    Unknown,
}

/// Rates of one partition, messages per second.
#[derive(Debug, Clone, Copy, PartialEq, Serialize)]
pub struct Rates {
    /// Production: log-end growth over the window.
    pub produce: f64,
    /// Consumption: committed growth between the first and last commit taken (see the crate docs);
    /// `None` until two commits of the current membership were seen, but 0 when stalled.
    pub consume: Option<f64>,
    /// Seconds between the commits the consumption rate is taken over (stable periods only).
    pub stable_secs: f64,
    /// Commits it is taken over.
    pub commits: usize,
    /// The longest time between two commits seen: the group's commit interval, or more.
    pub commit_interval: Option<f64>,
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
    /// Lag change, messages/s: positive growing, negative draining (`None`: not measured yet).
    pub growth: Option<f64>,
    /// How far from the log end the consumer was at its last commit.
    pub lag_at_commit: Option<i64>,
    /// Seconds since the committed offset last moved, or since the group became stable.
    pub since_commit_secs: Option<f64>,
}

/// How many consumers the group needs.
#[derive(Debug, Clone, PartialEq, Serialize)]
#[serde(rename_all = "snake_case", tag = "kind")]
pub enum Needed {
    /// Nothing falls behind: the members the group has are enough (it may drain, too).
    Suffice {
        /// Members now.
        members: usize,
    },
    /// Something falls behind: this many keep up.
    Count {
        /// Consumers.
        count: usize,
        /// Messages/s one saturated consumer was measured to handle.
        capacity_per_consumer: f64,
        /// The partition count is the limit: even one partition per consumer is not enough, or the
        /// answer equals the partition count.
        limited_by_partitions: bool,
    },
    /// Cannot be told yet.
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
    /// The group's state: its partitions' worst, or the group's own (empty, rebalancing).
    pub state: State,
    /// Members now.
    pub members: usize,
    /// Sum of partition lags.
    pub total_lag: i64,
    /// Total production, messages/s.
    pub produce_rate: f64,
    /// Total consumption, messages/s: each member's over one span of its commits (owners unknown:
    /// the group's); `None` while one is still being measured.
    pub consume_rate: Option<f64>,
    /// Falling behind: how fast the lag grows; draining: how fast it falls (negative); messages/s.
    pub growth: Option<f64>,
    /// When the slowest owner catches up.
    pub eta: Eta,
    /// Consumers needed to keep up.
    pub needed: Needed,
}

/// One commit as seen in the samples.
#[derive(Debug, Clone, Copy, PartialEq)]
struct Commit {
    /// Halfway between the sample before it and the sample that saw it.
    at: f64,
    /// The committed offset.
    committed: i64,
    /// The log end at `at` (interpolated between the two samples).
    log_end: f64,
    /// The stable period it belongs to: rates never span two.
    segment: u64,
    /// The partition's first commit: before it, its consumer read from the reset position.
    first: bool,
}

impl Commit {
    /// How far the consumer was from the log end when it committed.
    fn lag(&self) -> f64 {
        (self.log_end - self.committed as f64).max(0.0)
    }
}

/// What the history knows about one partition's commits.
#[derive(Debug, Clone, Default)]
struct Track {
    /// Commits of its owner in the current membership (whether this partition moved or not),
    /// oldest first, within the horizon.
    commits: VecDeque<Commit>,
    /// The current stable period.
    segment: u64,
    /// When it started.
    segment_start: f64,
    /// When its committed offset last moved, in the current stable period.
    moved: Option<f64>,
}

/// Snapshots over a sliding window, and the commits seen in them.
#[derive(Debug, Clone)]
pub struct History {
    /// Oldest first, within the window.
    snapshots: VecDeque<Snapshot>,
    /// Seconds of history kept.
    window: f64,
    /// Per partition.
    tracks: BTreeMap<i32, Track>,
}

/// What one partition's commits say, before judging.
#[derive(Debug, Clone, Copy)]
struct Measure {
    rates: Rates,
    /// Lag at the last commit of the current stable period.
    lag_at_commit: Option<f64>,
    /// Growth and its standard error.
    growth: Option<(f64, f64)>,
    /// Seconds since the partition's committed offset last moved.
    since_commit: f64,
    /// Seconds since its owner (owners unknown: the group) last moved any of its partitions: a
    /// stuck consumer, where a partition waiting its turn at a busy one is not.
    since_progress: f64,
}

impl History {
    /// Keeps `window` seconds of snapshots (commits for a few windows more). The window is what a
    /// stall is judged over: make it longer than the group's commit interval.
    pub fn new(window: f64) -> Self {
        Self {
            snapshots: VecDeque::new(),
            window,
            tracks: BTreeMap::new(),
        }
    }

    /// Adds a snapshot, noting the commits it shows and forgetting what is older than the window
    /// (keeping at least two snapshots).
    pub fn push(&mut self, snapshot: Snapshot) {
        let prev = self.snapshots.back();
        let membership_changed = prev.is_some_and(|p| p.members != snapshot.members);
        let continuous =
            prev.is_some_and(|p| p.stable() && snapshot.stable()) && !membership_changed;
        let before = |partition: i32| {
            prev.and_then(|s| s.partitions.iter().find(|q| q.partition == partition))
        };
        let moved = |p: &PartitionSnapshot| {
            matches!(
                (before(p.partition).and_then(|b| b.committed), p.committed),
                (Some(x), Some(y)) if y > x
            ) || matches!(
                (before(p.partition).map(|b| b.committed), p.committed),
                (Some(None), Some(_))
            )
        };
        // Who committed between the two snapshots. A member commits all its partitions at once, so
        // each of them gets a commit, moved or not: a saturated member works through its
        // partitions in turns, and a partition measured only between its own moves would read as
        // consuming in bursts, faster than it does. Owners unknown: any move is the group's commit.
        let movers: Vec<&PartitionSnapshot> =
            snapshot.partitions.iter().filter(|p| moved(p)).collect();
        let committers: Option<BTreeSet<&str>> =
            movers.iter().map(|p| p.owner.as_deref()).collect();
        let committed_now = |p: &PartitionSnapshot| match &committers {
            _ if movers.is_empty() => false,
            Some(owners) => p.owner.as_deref().is_some_and(|o| owners.contains(o)),
            None => true,
        };
        for p in &snapshot.partitions {
            let track = self.tracks.entry(p.partition).or_insert_with(|| Track {
                segment_start: snapshot.at,
                ..Track::default()
            });
            if membership_changed {
                // Consumption measured before says nothing about the new group.
                track.commits.clear();
            }
            let (Some(b), true) = (before(p.partition), continuous) else {
                track.segment += 1;
                track.segment_start = snapshot.at;
                track.moved = None;
                continue;
            };
            let at = (prev.map_or(snapshot.at, |s| s.at) + snapshot.at) / 2.0;
            match (b.committed, p.committed) {
                // Offsets reset backwards, or deleted: a fresh start.
                (Some(x), Some(y)) if y < x => {
                    track.segment += 1;
                    track.segment_start = snapshot.at;
                    track.moved = None;
                }
                (Some(_), None) => {
                    track.segment += 1;
                    track.segment_start = snapshot.at;
                    track.moved = None;
                }
                (_, Some(committed)) if committed_now(p) => {
                    if moved(p) {
                        track.moved = Some(at);
                    }
                    track.commits.push_back(Commit {
                        at,
                        committed,
                        log_end: (b.log_end + p.log_end) as f64 / 2.0,
                        segment: track.segment,
                        first: b.committed.is_none(),
                    });
                }
                _ => {}
            }
        }
        let horizon = snapshot.at - self.window * HORIZON_WINDOWS;
        for track in self.tracks.values_mut() {
            while track.commits.front().is_some_and(|c| c.at < horizon) {
                track.commits.pop_front();
            }
        }
        self.snapshots.push_back(snapshot);
        while self.snapshots.len() > 2
            && self.snapshots.back().map_or(0.0, |b| b.at) - self.snapshots[0].at > self.window
        {
            self.snapshots.pop_front();
        }
    }

    /// The newest snapshot.
    pub fn latest(&self) -> Option<&Snapshot> {
        self.snapshots.back()
    }

    /// The window, in seconds.
    pub fn window(&self) -> f64 {
        self.window
    }

    /// Mean seconds between snapshots in the window.
    fn sample_interval(&self) -> f64 {
        match (self.snapshots.front(), self.snapshots.back()) {
            (Some(a), Some(b)) if self.snapshots.len() > 1 => {
                (b.at - a.at) / (self.snapshots.len() - 1) as f64
            }
            _ => 0.0,
        }
    }

    /// Per-partition rates; `None` before two snapshots.
    pub fn rates(&self) -> Option<BTreeMap<i32, Rates>> {
        let measures = self.measures()?;
        Some(measures.into_iter().map(|(p, m)| (p, m.rates)).collect())
    }

    fn measures(&self) -> Option<BTreeMap<i32, Measure>> {
        let (first, last) = (self.snapshots.front()?, self.snapshots.back()?);
        let span = last.at - first.at;
        if self.snapshots.len() < 2 || span <= 0.0 {
            return None;
        }
        let dt = self.sample_interval();
        let mut out = BTreeMap::new();
        for p in &last.partitions {
            let start = first.partitions.iter().find(|q| q.partition == p.partition);
            let produce = start.map_or(0.0, |s| (p.log_end - s.log_end).max(0) as f64 / span);
            let track = self.tracks.get(&p.partition);
            let empty = VecDeque::new();
            let commits = track.map_or(&empty, |t| &t.commits);
            let (segment, segment_start) =
                track.map_or((0, first.at), |t| (t.segment, t.segment_start));

            // The commits to measure over: those in the window, or at least the last few.
            let recent = commits
                .iter()
                .filter(|c| c.at >= last.at - self.window)
                .count();
            let take = recent.max(MIN_COMMITS).min(commits.len());
            let chosen: Vec<Commit> = commits.iter().skip(commits.len() - take).copied().collect();
            let (mut secs, mut consumed, mut grown, mut periods) = (0.0, 0.0, 0.0, 0usize);
            let mut steps = Vec::new();
            for pair in chosen.windows(2) {
                let (a, b) = (pair[0], pair[1]);
                if a.segment != b.segment {
                    continue;
                }
                if steps.is_empty() || steps.last().is_some_and(|&(s, _, _)| s != a.segment) {
                    periods += 1;
                }
                secs += b.at - a.at;
                consumed += (b.committed - a.committed) as f64;
                grown += b.lag() - a.lag();
                steps.push((a.segment, b.at - a.at, b.lag() - a.lag()));
            }
            let commit_interval = commits
                .iter()
                .zip(commits.iter().skip(1))
                .filter(|(a, b)| a.segment == b.segment)
                .map(|(a, b)| b.at - a.at)
                .fold(None, |m: Option<f64>, g| Some(m.map_or(g, |m| m.max(g))));
            let current = commits.back().filter(|c| c.segment == segment);
            let moved = track.and_then(|t| t.moved);
            let since_commit = last.at - moved.map_or(segment_start, |m| m.max(segment_start));
            // Commits are only recorded when the committer moved something.
            let since_progress =
                last.at - current.map_or(segment_start, |c| c.at.max(segment_start));
            let growth = (secs > 0.0).then(|| {
                let g = grown / secs;
                // The noise of the lag at commit, from how unevenly it moved between commits; and at
                // least what dating a commit to half a sampling interval leaves (uniform: dt/√12
                // each end).
                let residual = steps
                    .iter()
                    .map(|&(_, d, l)| (l - g * d).powi(2))
                    .sum::<f64>()
                    / steps.len().max(1) as f64;
                let se = ((periods.max(1) as f64 * residual).sqrt() / secs)
                    .max(0.41 * produce * dt * (periods.max(1) as f64).sqrt() / secs);
                (g, se)
            });
            out.insert(
                p.partition,
                Measure {
                    rates: Rates {
                        produce,
                        consume: (secs > 0.0).then(|| consumed / secs),
                        stable_secs: secs,
                        commits: chosen.len(),
                        commit_interval,
                    },
                    lag_at_commit: current.map(Commit::lag),
                    growth,
                    since_commit,
                    since_progress,
                },
            );
        }
        Some(out)
    }

    /// How long without a commit, while behind, makes a partition stalled: the window, or two
    /// commit intervals when the group commits less often; twice the window while the interval is
    /// not known yet (fewer than two commits seen).
    fn stall_after(&self, commit_interval: Option<f64>) -> f64 {
        match commit_interval {
            Some(c) => self.window.max(2.0 * c + 2.0 * self.sample_interval()),
            None => 2.0 * self.window,
        }
    }

    /// The forecast from the current window.
    pub fn forecast(&self, reset: Reset) -> Option<Forecast> {
        let latest = self.latest()?;
        let measures = self.measures();
        let dt = self.sample_interval();
        let mut partitions = Vec::new();
        for p in &latest.partitions {
            let lag = lag(p, reset);
            let m = measures.as_ref().and_then(|m| m.get(&p.partition)).copied();
            let mut f = PartitionForecast {
                partition: p.partition,
                lag,
                state: State::Measuring,
                rates: m.map(|m| m.rates),
                eta: Eta::Unknown,
                growth: m.and_then(|m| m.growth).map(|(g, _)| g),
                lag_at_commit: m.and_then(|m| m.lag_at_commit).map(|l| l.round() as i64),
                since_commit_secs: m.map(|m| m.since_commit),
            };
            self.judge(latest, p, &mut f, m, dt);
            partitions.push(f);
        }
        let total_lag = partitions.iter().map(|p| p.lag.messages).sum();
        let produce_rate = partitions
            .iter()
            .filter_map(|p| p.rates)
            .map(|r| r.produce)
            .sum();
        // Per committer over one span each, as for the capacity: the partitions' own rates span
        // different commits. A committer with a stalled partition consumes nothing now.
        let all: Vec<i32> = partitions.iter().map(|f| f.partition).collect();
        let consume_rate = committers(latest, &all)
            .iter()
            .map(|ps| {
                if partitions
                    .iter()
                    .any(|f| f.state == State::Stalled && ps.contains(&f.partition))
                {
                    Some(0.0)
                } else {
                    self.consumption(latest, ps, reset)
                }
            })
            .sum::<Option<f64>>();
        let state = group_state(latest, &partitions, dt);
        let growth = match state {
            State::FallingBehind | State::Draining => Some(
                partitions
                    .iter()
                    .filter(|p| p.state == state)
                    .filter_map(|p| p.growth)
                    .sum(),
            ),
            _ => None,
        };
        let eta = group_eta(latest, state, &partitions);
        let needed = self.needed(latest, state, &partitions, reset);
        Some(Forecast {
            partitions,
            state,
            members: latest.members.len(),
            total_lag,
            produce_rate,
            consume_rate,
            growth,
            eta,
            needed,
        })
    }

    /// Sets `f`'s state and ETA: see the crate docs for the order of the rules.
    fn judge(
        &self,
        latest: &Snapshot,
        p: &PartitionSnapshot,
        f: &mut PartitionForecast,
        m: Option<Measure>,
        dt: f64,
    ) {
        let what = format!("partition {}", p.partition);
        f.state = if p.committed.is_none() {
            State::NoCommit
        } else if latest.empty() {
            State::Empty
        } else if !latest.stable() {
            State::Rebalancing
        } else if f.lag.messages == 0 {
            State::KeepingUp
        } else if let Some(m) = m {
            let lag = f.lag.messages as f64;
            let slack = m.rates.produce * (dt / 2.0 + BATCH_SECS) + BATCH_RECORDS;
            let reached = m.lag_at_commit.unwrap_or(lag) <= slack;
            if lag > slack && m.since_progress > self.stall_after(m.rates.commit_interval) {
                State::Stalled
            } else if reached {
                State::KeepingUp
            } else if let Some((g, se)) = m.growth {
                let tolerance = (2.0 * se).max(RATE_TOLERANCE * m.rates.produce).max(0.01);
                if g > tolerance {
                    State::FallingBehind
                } else if g < -tolerance {
                    State::Draining
                } else if m.rates.stable_secs >= self.window / 2.0 {
                    // Behind, but not more so than half a window ago: bounded.
                    State::KeepingUp
                } else {
                    State::Measuring
                }
            } else {
                State::Measuring
            }
        } else {
            State::Measuring
        };
        let rates = f.rates;
        f.eta = match f.state {
            State::KeepingUp => Eta::Now,
            State::Draining => match f.growth {
                Some(g) if g < 0.0 => Eta::In {
                    secs: f.lag.messages as f64 / -g,
                },
                _ => Eta::Unknown,
            },
            State::FallingBehind => {
                let produce = rates.map_or(0.0, |r| r.produce);
                let consume = rates
                    .and_then(|r| r.consume)
                    .unwrap_or(produce - f.growth.unwrap_or(0.0));
                Eta::Never {
                    reason: format!("{what}: consuming {consume:.1}/s, producing {produce:.1}/s"),
                }
            }
            State::Stalled => {
                f.rates = rates.map(|r| Rates {
                    consume: Some(0.0),
                    ..r
                });
                Eta::Never {
                    reason: format!(
                        "{what}: nothing consumed for {:.0}s while {:.1}/s is produced",
                        f.since_commit_secs.unwrap_or(0.0),
                        rates.map_or(0.0, |r| r.produce)
                    ),
                }
            }
            State::NoCommit | State::Empty | State::Rebalancing | State::Measuring => Eta::Unknown,
        };
    }
}

/// The group's own state when it has one (no members, rebalancing, nothing committed), else its
/// partitions' worst.
fn group_state(latest: &Snapshot, partitions: &[PartitionForecast], dt: f64) -> State {
    if latest.empty() {
        State::Empty
    } else if !latest.stable() {
        State::Rebalancing
    } else if partitions.iter().all(|p| p.state == State::NoCommit) {
        State::NoCommit
    } else {
        let worst = partitions
            .iter()
            .map(|p| p.state)
            .filter(|s| *s != State::NoCommit)
            .max_by_key(|s| s.severity())
            .unwrap_or(State::KeepingUp);
        let waiting = partitions.iter().any(|p| {
            let produce = p.rates.map_or(0.0, |r| r.produce);
            p.state == State::NoCommit
                && p.lag.messages as f64 > produce * (dt / 2.0 + BATCH_SECS) + BATCH_RECORDS
        });
        match worst {
            State::KeepingUp | State::Draining if waiting => State::Measuring,
            worst => worst,
        }
    }
}

fn owner_of(latest: &Snapshot, partition: i32) -> Option<&str> {
    latest
        .partitions
        .iter()
        .find(|p| p.partition == partition)
        .and_then(|p| p.owner.as_deref())
}

/// Falling behind or stalled: never, with the worst partition's reason. Draining: the slowest owner
/// decides (owners unknown: the slowest partition).
fn group_eta(latest: &Snapshot, state: State, partitions: &[PartitionForecast]) -> Eta {
    match state {
        State::KeepingUp => return Eta::Now,
        State::FallingBehind | State::Stalled => {
            return partitions
                .iter()
                .filter(|p| p.state == state)
                .max_by(|a, b| {
                    let key = |p: &PartitionForecast| p.growth.unwrap_or(f64::MAX);
                    key(a).total_cmp(&key(b))
                })
                .map_or(Eta::Unknown, |p| p.eta.clone());
        }
        State::Draining => {}
        _ => return Eta::Unknown,
    }
    let draining: Vec<&PartitionForecast> = partitions
        .iter()
        .filter(|p| p.state == State::Draining)
        .collect();
    let slowest_partition = draining
        .iter()
        .filter_map(|p| match p.eta {
            Eta::In { secs } => Some(secs),
            _ => None,
        })
        .fold(None, |m: Option<f64>, s| Some(m.map_or(s, |m| m.max(s))));
    let owners: BTreeSet<&str> = draining
        .iter()
        .filter_map(|p| owner_of(latest, p.partition))
        .collect();
    if owners.is_empty()
        || draining
            .iter()
            .any(|p| owner_of(latest, p.partition).is_none())
    {
        return slowest_partition.map_or(Eta::Unknown, |secs| Eta::In { secs });
    }
    // A member drains all its partitions with whatever capacity production leaves it.
    let mut worst: Option<f64> = None;
    for owner in owners {
        let mine = || {
            partitions
                .iter()
                .filter(move |p| owner_of(latest, p.partition) == Some(owner))
        };
        let behind: f64 = mine()
            .filter(|p| p.state == State::Draining)
            .map(|p| p.lag.messages as f64)
            .sum();
        let net: f64 = -mine()
            .filter(|p| p.state == State::Draining)
            .filter_map(|p| p.growth)
            .sum::<f64>();
        if net > 0.0 {
            let secs = behind / net;
            worst = Some(worst.map_or(secs, |w| w.max(secs)));
        }
    }
    worst
        .or(slowest_partition)
        .map_or(Eta::Unknown, |secs| Eta::In { secs })
}

impl History {
    /// Consumers needed: see the crate docs.
    fn needed(
        &self,
        latest: &Snapshot,
        state: State,
        partitions: &[PartitionForecast],
        reset: Reset,
    ) -> Needed {
        let members = latest.members.len();
        let unknown = |reason: &str| Needed::Unknown {
            reason: reason.to_string(),
        };
        match state {
            State::KeepingUp | State::Draining => return Needed::Suffice { members },
            State::Empty => return unknown("the group has no members"),
            State::Rebalancing => return unknown("the group is rebalancing"),
            State::NoCommit => return unknown("nothing committed yet"),
            State::Measuring => return unknown("measuring: too few commits yet"),
            State::Stalled => {
                return unknown("a partition is stalled: its consumer is stuck, more consumers will not help until it moves")
            }
            State::FallingBehind => {}
        }
        let falling: Vec<&PartitionForecast> = partitions
            .iter()
            .filter(|f| f.state == State::FallingBehind)
            .collect();
        if falling
            .iter()
            .any(|f| f.rates.and_then(|r| r.consume).is_none())
        {
            return unknown("measuring the consumption of the partitions falling behind");
        }
        // A saturated member spends its capacity on all its partitions, also those it keeps up
        // with, has just drained or has not committed yet: its consumption over all of them is its
        // capacity. Owners unknown: every member is taken to be as busy as the ones behind.
        let owners: Option<BTreeSet<&str>> = falling
            .iter()
            .map(|f| owner_of(latest, f.partition))
            .collect();
        let (counted, consumers): (Vec<i32>, usize) = match owners {
            Some(owners) if !owners.is_empty() => (
                partitions
                    .iter()
                    .map(|f| f.partition)
                    .filter(|&p| owner_of(latest, p).is_some_and(|o| owners.contains(o)))
                    .collect(),
                owners.len(),
            ),
            _ => (
                partitions.iter().map(|f| f.partition).collect(),
                members.max(1),
            ),
        };
        let committers = committers(latest, &counted);
        let Some(consumed) = committers
            .iter()
            .map(|ps| self.consumption(latest, ps, reset))
            .sum::<Option<f64>>()
        else {
            return unknown("measuring the consumption of the members falling behind");
        };
        let capacity = consumed / consumers as f64;
        if capacity <= 0.0 {
            return unknown("nothing is being consumed");
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

    /// What one committer (a member, or the group when owners are unknown) consumed per second
    /// from all of `partitions`, over one span: from its first commit taken (those in the window,
    /// at least [`MIN_COMMITS`]) to its last, in the current stable period. Summing the partitions'
    /// own rates instead measures each over its own commits: one whose first commit came late in
    /// the span reads fast, and one not committed yet has no rate at all. A partition committed for
    /// the first time within the span counts from its reset position (earliest: the log start;
    /// latest: unknown, so from that first commit). `None` before two commits.
    fn consumption(&self, latest: &Snapshot, partitions: &[i32], reset: Reset) -> Option<f64> {
        let current = |p: i32| {
            self.tracks.get(&p).into_iter().flat_map(|t| {
                t.commits
                    .iter()
                    .filter(move |c| c.segment == t.segment)
                    .copied()
            })
        };
        // The member commits all its partitions at once: their commits share the same times.
        let mut times: Vec<f64> = partitions
            .iter()
            .flat_map(|&p| current(p))
            .map(|c| c.at)
            .collect();
        times.sort_by(f64::total_cmp);
        times.dedup();
        let last = *times.last()?;
        let recent = times
            .iter()
            .filter(|&&at| at >= latest.at - self.window)
            .count();
        let from = times[times.len() - recent.max(MIN_COMMITS).min(times.len())];
        if last <= from {
            return None;
        }
        let mut consumed = 0.0;
        for &p in partitions {
            let commits: Vec<Commit> = current(p).collect();
            let (Some(first), Some(end)) = (commits.first(), commits.last()) else {
                continue;
            };
            let start = match commits.iter().rev().find(|c| c.at <= from) {
                Some(c) => c.committed,
                // Not committed at `from`: its consumer started from the reset position.
                None if first.first && reset == Reset::Earliest => latest
                    .partitions
                    .iter()
                    .find(|q| q.partition == p)
                    .map_or(first.committed, |q| q.log_start.min(first.committed)),
                None => first.committed,
            };
            consumed += (end.committed - start).max(0) as f64;
        }
        Some(consumed / (last - from))
    }
}

/// Who commits `partitions` together: each owner with the partitions it owns; when an owner is
/// unknown, the group as one (any move is the group's commit).
fn committers(latest: &Snapshot, partitions: &[i32]) -> Vec<Vec<i32>> {
    let owned: Option<Vec<(&str, i32)>> = partitions
        .iter()
        .map(|&p| owner_of(latest, p).map(|o| (o, p)))
        .collect();
    match owned {
        Some(owned) => {
            let mut by: BTreeMap<&str, Vec<i32>> = BTreeMap::new();
            for (o, p) in owned {
                by.entry(o).or_default().push(p);
            }
            by.into_values().collect()
        }
        None => vec![partitions.to_vec()],
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
