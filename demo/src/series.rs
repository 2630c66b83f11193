//! The measured time series: one [`Row`] per sample, its CSV form, and the summary computed from it.

use std::fmt::Write as _;

/// One sample of the whole experiment.
#[derive(Debug, Clone, PartialEq)]
pub struct Row {
    /// Seconds since the producers started.
    pub t: f64,
    /// 1: one consumer; 2: after the scale-up.
    pub phase: u8,
    /// Consumer processes running.
    pub consumers: usize,
    /// Consumers that own at least one partition (from their own metrics).
    pub owners: usize,
    /// Partitions some consumer owns.
    pub owned: usize,
    /// Messages produced since the start (log-end growth).
    pub produced: i64,
    /// Messages consumed since the start (committed-offset growth).
    pub consumed: i64,
    /// Production over the last few seconds, messages/s.
    pub produce_rate: f64,
    /// Consumption (commits) over the last few seconds, messages/s.
    pub consume_rate: f64,
    /// Lag per partition, by index.
    pub lags: Vec<i64>,
    /// Sum of `lags`.
    pub total: i64,
}

/// The CSV header for `partitions` partitions.
pub fn csv_header(partitions: usize) -> String {
    let mut h = String::from(
        "time_s,phase,consumers,owners,partitions_owned,produced,consumed,produce_per_s,consume_per_s",
    );
    for p in 0..partitions {
        let _ = write!(h, ",lag_p{p}");
    }
    h.push_str(",lag_total");
    h
}

impl Row {
    /// The CSV line, in [`csv_header`]'s order.
    pub fn csv(&self) -> String {
        let mut line = format!(
            "{:.1},{},{},{},{},{},{},{:.1},{:.1}",
            self.t,
            self.phase,
            self.consumers,
            self.owners,
            self.owned,
            self.produced,
            self.consumed,
            self.produce_rate,
            self.consume_rate
        );
        for l in &self.lags {
            let _ = write!(line, ",{l}");
        }
        let _ = write!(line, ",{}", self.total);
        line
    }
}

/// What the run showed, computed from the rows alone.
#[derive(Debug, Clone, PartialEq)]
pub struct Summary {
    /// Highest total lag and when.
    pub peak: Option<(i64, f64)>,
    /// Lag growth with one consumer, messages/s (a fit over phase 1's second half).
    pub phase1_growth: Option<f64>,
    /// When the scale-up started.
    pub scaled_at: Option<f64>,
    /// Seconds from the scale-up until every partition was owned and every consumer owned some.
    pub all_owned_after: Option<f64>,
    /// Seconds from the scale-up until the total lag was at most the drained threshold.
    pub drained_after: Option<f64>,
    /// Lag fall after the scale-up, messages/s (from the peak to drained or the end).
    pub phase2_fall: Option<f64>,
}

impl Summary {
    /// `partitions` and `target` (consumers after the scale-up) tell when the group has settled.
    pub fn from_rows(rows: &[Row], partitions: usize, target: usize, drained_lag: i64) -> Self {
        let peak = rows.iter().max_by_key(|r| r.total).map(|r| (r.total, r.t));
        let phase1: Vec<&Row> = rows.iter().filter(|r| r.phase == 1).collect();
        let phase1_growth = phase1
            .get(phase1.len() / 2)
            .zip(phase1.last())
            .filter(|(a, b)| b.t > a.t)
            .map(|(a, b)| (b.total - a.total) as f64 / (b.t - a.t));
        let scaled_at = rows.iter().find(|r| r.phase == 2).map(|r| r.t);
        let phase2: Vec<&Row> = rows.iter().filter(|r| r.phase == 2).collect();
        let settled = target.min(partitions);
        let all_owned = phase2
            .iter()
            .find(|r| r.owned == partitions && r.owners == settled && r.consumers >= target);
        let drained = all_owned.and_then(|o| {
            phase2
                .iter()
                .find(|r| r.t >= o.t && r.total <= drained_lag)
                .copied()
        });
        let phase2_fall = phase2
            .iter()
            .max_by_key(|r| r.total)
            .zip(drained.or(phase2.last().copied()))
            .filter(|(a, b)| b.t > a.t)
            .map(|(a, b)| (a.total - b.total) as f64 / (b.t - a.t));
        Self {
            peak,
            phase1_growth,
            scaled_at,
            all_owned_after: scaled_at.zip(all_owned).map(|(s, r)| r.t - s),
            drained_after: scaled_at.zip(drained).map(|(s, r)| r.t - s),
            phase2_fall,
        }
    }
}

/// A sparkline of the last `width` values, scaled to their own maximum.
pub fn sparkline(values: &[i64], width: usize) -> String {
    const BARS: [char; 8] = ['▁', '▂', '▃', '▄', '▅', '▆', '▇', '█'];
    let tail = &values[values.len().saturating_sub(width)..];
    let max = tail.iter().copied().max().unwrap_or(0).max(1);
    tail.iter()
        .map(|&v| BARS[((v.max(0) as f64 / max as f64) * 7.0).round() as usize])
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(t: f64, phase: u8, consumers: usize, owners: usize, owned: usize, total: i64) -> Row {
        Row {
            t,
            phase,
            consumers,
            owners,
            owned,
            produced: 0,
            consumed: 0,
            produce_rate: 0.0,
            consume_rate: 0.0,
            lags: vec![total],
            total,
        }
    }

    #[test]
    fn csv_columns_match_the_header() {
        let r = Row {
            lags: vec![1, 2, 3],
            total: 6,
            ..row(1.25, 1, 1, 1, 3, 6)
        };
        let header = csv_header(3);
        assert_eq!(header.split(',').count(), r.csv().split(',').count());
        assert!(header.ends_with("lag_p0,lag_p1,lag_p2,lag_total"));
        assert_eq!(r.csv(), "1.2,1,1,1,3,0,0,0.0,0.0,1,2,3,6");
    }

    #[test]
    fn summary_times_the_scale_up() {
        let rows = vec![
            row(0.0, 1, 1, 1, 9, 0),
            row(10.0, 1, 1, 1, 9, 1000),
            row(20.0, 1, 1, 1, 9, 2000),
            row(21.0, 2, 9, 1, 9, 2100), // scale-up starts
            row(24.0, 2, 9, 0, 0, 2400), // rebalancing
            row(25.0, 2, 9, 9, 9, 2300), // settled
            row(35.0, 2, 9, 9, 9, 300),
            row(36.0, 2, 9, 9, 9, 100), // drained (threshold 200)
        ];
        let s = Summary::from_rows(&rows, 9, 9, 200);
        assert_eq!(s.peak, Some((2400, 24.0)));
        assert_eq!(s.phase1_growth, Some(100.0));
        assert_eq!(s.scaled_at, Some(21.0));
        assert_eq!(s.all_owned_after, Some(4.0));
        assert_eq!(s.drained_after, Some(15.0));
        assert_eq!(s.phase2_fall, Some(2300.0 / 12.0));
    }

    #[test]
    fn a_group_that_never_settles_or_drains_says_so() {
        let rows = vec![
            row(0.0, 1, 1, 1, 9, 0),
            row(5.0, 2, 9, 3, 9, 500),
            row(9.0, 2, 9, 3, 9, 100),
        ];
        let s = Summary::from_rows(&rows, 9, 9, 200);
        assert_eq!(s.all_owned_after, None);
        assert_eq!(s.drained_after, None, "drained only counts once settled");
    }

    #[test]
    fn sparkline_scales_to_its_maximum() {
        assert_eq!(sparkline(&[0, 50, 100], 10), "▁▅█");
        assert_eq!(sparkline(&[7, 0, 0], 2), "▁▁");
        assert_eq!(sparkline(&[], 5), "");
    }
}
