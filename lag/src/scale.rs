//! How many consumers an autoscaler should run: our rule from the forecast, and KEDA's Kafka
//! scaler's rule for comparison. Pure, like the rest of the crate.
//!
//! [`Needed`] answers "how many keep up with production". An autoscaler also has a backlog to
//! clear: with exactly that many, a group that fell behind drains only as fast as their spare
//! capacity allows, which can be a trickle. [`Planner`] sizes the group to bring the lag down within
//! a drain target and to keep up after, from the capacity of one consumer measured while saturated.
//! A consumer is only seen at capacity while something is behind, so the planner remembers what it
//! measured: once the group has drained, the same figure says how few keep up. It takes the highest
//! measurement of the last [`CAPACITY_MEMORY_SECS`]: a consumer never handles more than it can, but a
//! measurement across a rebalance pause, or of a member not quite saturated, reads low, and acting
//! on it would scale up again right after a scale-down. Forgetting old ones follows a consumer
//! that became slower.

use std::collections::VecDeque;

use crate::{busiest_block, Forecast, Needed};

/// How long a capacity measurement is remembered.
pub const CAPACITY_MEMORY_SECS: f64 = 300.0;

/// Our rule: the fewest consumers that clear the backlog within `drain_secs` and keep up after.
#[derive(Debug, Clone)]
pub struct Planner {
    /// Seconds the backlog should take to clear.
    drain_secs: f64,
    /// (seconds, messages/s one saturated consumer was measured to handle), oldest first.
    measured: VecDeque<(f64, f64)>,
}

impl Planner {
    /// A planner that clears a backlog within `drain_secs` (at least 1).
    pub fn new(drain_secs: f64) -> Self {
        Self {
            drain_secs: drain_secs.max(1.0),
            measured: VecDeque::new(),
        }
    }

    /// The capacity of one consumer the planner goes by, messages/s: the highest measured within
    /// [`CAPACITY_MEMORY_SECS`].
    pub fn capacity(&self) -> Option<f64> {
        self.measured.iter().map(|m| m.1).reduce(f64::max)
    }

    /// The consumer count for `forecast`, taken at `t` seconds; `None` while it cannot be told (no
    /// capacity measured yet and the forecast does not say), which means: leave the count as it is.
    ///
    /// Each partition needs its production plus its lag over the drain target; with `n` members a
    /// member owns whole partitions (blocks of ⌈P/n⌉ or ⌊P/n⌋), so the answer is the smallest `n`
    /// whose busiest block fits one consumer's capacity, capped at the partition count.
    pub fn desired(&mut self, t: f64, forecast: &Forecast) -> Option<usize> {
        if let Needed::Count {
            capacity_per_consumer,
            ..
        } = forecast.needed
        {
            self.measured.push_back((t, capacity_per_consumer));
        }
        while self
            .measured
            .front()
            .is_some_and(|(at, _)| t - at > CAPACITY_MEMORY_SECS)
        {
            self.measured.pop_front();
        }
        let Some(capacity) = self.capacity().filter(|c| *c > 0.0) else {
            return match forecast.needed {
                Needed::Count { count, .. } => Some(count),
                Needed::Suffice { members } => Some(members.max(1)),
                Needed::Unknown { .. } => None,
            };
        };
        let mut demand: Vec<(i32, f64)> = forecast
            .partitions
            .iter()
            .map(|p| {
                let produce = p.rates.map_or(0.0, |r| r.produce);
                (
                    p.partition,
                    produce + p.lag.messages as f64 / self.drain_secs,
                )
            })
            .collect();
        demand.sort_by_key(|(p, _)| *p);
        let total = demand.len().max(1);
        Some(
            (1..=total)
                .find(|&n| busiest_block(&demand, n) <= capacity)
                .unwrap_or(total),
        )
    }
}

/// KEDA's Kafka scaler: `ceil(total lag / lag_threshold)` replicas (the HPA's AverageValue target),
/// at most one per partition (its default `allowIdleConsumers: false`), at least `min`.
pub fn keda_desired(total_lag: i64, lag_threshold: i64, partitions: usize, min: usize) -> usize {
    let threshold = lag_threshold.max(1);
    let lag = total_lag.max(0);
    let wanted =
        usize::try_from(lag / threshold + i64::from(lag % threshold != 0)).unwrap_or(usize::MAX);
    wanted.min(partitions.max(1)).max(min)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::{Basis, Eta, Lag, PartitionForecast, Rates, State};

    fn forecast(lags: &[i64], produce_each: f64, needed: Needed) -> Forecast {
        let partitions: Vec<PartitionForecast> = lags
            .iter()
            .enumerate()
            .map(|(i, &lag)| PartitionForecast {
                partition: i as i32,
                lag: Lag {
                    messages: lag,
                    basis: Basis::Committed,
                    clamped: false,
                },
                state: State::FallingBehind,
                rates: Some(Rates {
                    produce: produce_each,
                    consume: Some(0.0),
                    stable_secs: 30.0,
                    commits: 6,
                    commit_interval: Some(5.0),
                }),
                eta: Eta::Now,
                growth: None,
                lag_at_commit: None,
                since_commit_secs: None,
            })
            .collect();
        Forecast {
            total_lag: lags.iter().sum(),
            produce_rate: produce_each * lags.len() as f64,
            partitions,
            state: State::FallingBehind,
            members: 1,
            consume_rate: None,
            growth: None,
            eta: Eta::Now,
            needed,
        }
    }

    fn count(count: usize, capacity: f64) -> Needed {
        Needed::Count {
            count,
            capacity_per_consumer: capacity,
            limited_by_partitions: false,
        }
    }

    #[test]
    fn a_backlog_asks_for_more_than_keeping_up_and_fewer_as_it_clears() {
        // The seed's load: 9 partitions at 22.2/s each (200/s), one consumer handles 50/s. Keeping up
        // takes 5 (blocks of 2 partitions: 44.4/s).
        let mut planner = Planner::new(60.0);
        let behind = forecast(&[1000; 9], 200.0 / 9.0, count(5, 50.0));
        // 9 000 behind over 60 s is 150/s more: 350/s needs 9 (blocks of 1: 38.9/s).
        assert_eq!(planner.desired(0.0, &behind), Some(9));
        // Half cleared: 4 500 over 60 s, 275/s: blocks of 2 take 61/s, of 1 30.6/s.
        let half = forecast(&[500; 9], 200.0 / 9.0, Needed::Suffice { members: 9 });
        assert_eq!(planner.desired(30.0, &half), Some(9));
        // Nearly drained: production plus a little, 5 again, from the capacity measured earlier.
        let drained = forecast(&[40; 9], 200.0 / 9.0, Needed::Suffice { members: 9 });
        assert_eq!(planner.desired(60.0, &drained), Some(5));
        assert_eq!(planner.capacity(), Some(50.0));
    }

    #[test]
    fn a_longer_drain_target_asks_for_fewer() {
        let behind = forecast(&[1000; 9], 200.0 / 9.0, count(5, 50.0));
        // 9 000 over 600 s is 15/s more: 215/s; blocks of 2 take 47.8/s, under 50.
        assert_eq!(Planner::new(600.0).desired(0.0, &behind), Some(5));
    }

    #[test]
    fn without_a_measured_capacity_it_follows_the_forecast_or_leaves_the_count() {
        let mut planner = Planner::new(60.0);
        let suffice = forecast(&[0; 9], 20.0, Needed::Suffice { members: 3 });
        assert_eq!(planner.desired(0.0, &suffice), Some(3));
        let unknown = forecast(
            &[0; 9],
            20.0,
            Needed::Unknown {
                reason: "measuring".into(),
            },
        );
        assert_eq!(planner.desired(1.0, &unknown), None);
    }

    #[test]
    fn never_more_than_one_consumer_per_partition() {
        let behind = forecast(&[100_000; 9], 200.0 / 9.0, count(9, 10.0));
        assert_eq!(Planner::new(60.0).desired(0.0, &behind), Some(9));
    }

    #[test]
    fn a_low_reading_after_a_rebalance_does_not_undo_a_scale_down_but_old_ones_are_forgotten() {
        let mut planner = Planner::new(60.0);
        let light = forecast(&[25; 9], 200.0 / 9.0, count(5, 50.0));
        assert_eq!(planner.desired(0.0, &light), Some(5));
        // Measured across a rebalance pause: 30/s. The 50/s of a minute ago still stands.
        let paused = forecast(&[25; 9], 200.0 / 9.0, count(9, 30.0));
        assert_eq!(planner.desired(60.0, &paused), Some(5));
        // Ten minutes on, only the slower consumer's measurements are left.
        assert_eq!(planner.desired(600.0, &paused), Some(9));
        assert_eq!(planner.capacity(), Some(30.0));
    }

    #[test]
    fn keda_divides_the_lag_by_its_threshold_capped_at_the_partitions() {
        assert_eq!(keda_desired(0, 10, 9, 1), 1);
        assert_eq!(keda_desired(35, 10, 9, 1), 4);
        assert_eq!(keda_desired(400, 10, 9, 1), 9);
        assert_eq!(keda_desired(400, 100, 9, 1), 4);
        assert_eq!(keda_desired(-5, 10, 9, 0), 0);
    }
}
