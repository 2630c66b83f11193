//! `AUTOSCALE=1`: the seed's load, twice, each time with an autoscaler in place of the fixed
//! scale-up. Both runs start alike (one consumer for `PHASE1`), then an autoscaler decides every
//! `AUTOSCALE_INTERVAL` how many consumers run:
//! - **forecast**: [`lag::scale::Planner`], the fewest consumers that clear the backlog within
//!   `DRAIN_TARGET` and keep up after, from the capacity the forecast measured;
//! - **keda**: KEDA's Kafka scaler's rule, `ceil(total lag / KEDA_LAG_THRESHOLD)`, capped at the
//!   partition count.
//!
//! Both go through the same [`Hpa`], the part of Kubernetes' HorizontalPodAutoscaler that turns a
//! desired count into replicas (tolerance, scale-up rate, scale-down stabilization), so the runs
//! differ only in the rule. Each run has its own topic and group, so the second does not start with
//! the first one's backlog. Results: `autoscale.csv`, `autoscale.svg`/`.png`, `autoscale.md`.

use std::{collections::VecDeque, fmt::Write as _, path::Path, time::Duration};

use anyhow::Context as _;
use lag::scale::{keda_desired, Planner};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use crate::{chart, config::Autoscale, config::Config, fleet, prepare, view, GRACE};

/// Kubernetes' HPA tolerance: a desired count within 10 % of the current one changes nothing.
const TOLERANCE: f64 = 0.1;

/// The HorizontalPodAutoscaler's rules with its default behaviour, except the scale-down
/// stabilization window (`AUTOSCALE_STABILIZATION`; Kubernetes' default is 300 s):
/// - within [`TOLERANCE`] of the current count, nothing changes;
/// - scaling up at most to max(current + 4, 2 × current) per decision (the default scale-up
///   policies, per 15 s period);
/// - scaling down only to the highest count recommended within the stabilization window.
#[derive(Debug)]
pub struct Hpa {
    min: usize,
    max: usize,
    window: f64,
    recommendations: VecDeque<(f64, usize)>,
}

impl Hpa {
    pub fn new(min: usize, max: usize, window: Duration) -> Self {
        Self {
            min,
            max,
            window: window.as_secs_f64(),
            recommendations: VecDeque::new(),
        }
    }

    /// The replica count at `t` for a rule that wants `desired` while `current` run.
    pub fn step(&mut self, t: f64, current: usize, desired: usize) -> usize {
        let mut desired = desired.clamp(self.min, self.max);
        if current > 0 && (desired as f64 / current as f64 - 1.0).abs() <= TOLERANCE {
            desired = current;
        }
        self.recommendations.push_back((t, desired));
        while self
            .recommendations
            .front()
            .is_some_and(|(at, _)| t - at > self.window)
        {
            self.recommendations.pop_front();
        }
        if desired < current {
            let highest = self.recommendations.iter().map(|r| r.1).max();
            return highest.unwrap_or(desired).min(current);
        }
        desired.min((current + 4).max(current * 2))
    }
}

/// Which rule a run scales by.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Rule {
    Forecast,
    Keda,
}

impl Rule {
    fn name(self) -> &'static str {
        match self {
            Self::Forecast => "forecast",
            Self::Keda => "keda",
        }
    }
}

/// One run's record.
struct Run {
    rule: Rule,
    /// (seconds, total lag, consumers running).
    points: Vec<(f64, i64, usize)>,
    changes: usize,
    interrupted: bool,
}

/// What the comparison reports of one run.
#[derive(Debug, Clone, PartialEq)]
pub struct Outcome {
    /// Seconds from the autoscaler's start until the lag was at most the drained threshold.
    pub drained_after: Option<f64>,
    pub peak_lag: i64,
    pub final_lag: i64,
    /// Consumers running × seconds, from the autoscaler's start to the end: what the run cost.
    pub consumer_seconds: f64,
    pub max_consumers: usize,
    pub final_consumers: usize,
    pub changes: usize,
}

impl Outcome {
    pub fn of(points: &[(f64, i64, usize)], start: f64, drained_lag: i64, changes: usize) -> Self {
        let after: Vec<&(f64, i64, usize)> = points.iter().filter(|p| p.0 >= start).collect();
        Self {
            drained_after: after
                .iter()
                .find(|p| p.1 <= drained_lag)
                .map(|p| p.0 - start),
            peak_lag: points.iter().map(|p| p.1).max().unwrap_or(0),
            final_lag: points.last().map_or(0, |p| p.1),
            consumer_seconds: after
                .windows(2)
                .map(|w| w[0].2 as f64 * (w[1].0 - w[0].0))
                .sum(),
            max_consumers: after.iter().map(|p| p.2).max().unwrap_or(0),
            final_consumers: points.last().map_or(0, |p| p.2),
            changes,
        }
    }
}

/// Both runs, then the comparison. Returns whether a run was cut short by Ctrl-C.
pub async fn compare(
    config: &Config,
    settings: &Autoscale,
    brokers: &[String],
    where_: &str,
    logs: &Path,
    cancel: &CancellationToken,
) -> anyhow::Result<bool> {
    let mut runs = Vec::new();
    for rule in [Rule::Forecast, Rule::Keda] {
        let run = one_run(config, settings, rule, brokers, where_, logs, cancel).await?;
        let interrupted = run.interrupted;
        runs.push(run);
        if interrupted {
            break;
        }
    }
    let start = config.phase1.as_secs_f64();
    let mut csv = String::from("rule,t,total_lag,consumers\n");
    for run in &runs {
        for (t, lag, n) in &run.points {
            let _ = writeln!(csv, "{},{t:.1},{lag},{n}", run.rule.name());
        }
    }
    std::fs::write(config.out_dir.join("autoscale.csv"), csv).context("writing autoscale.csv")?;
    let charted: Vec<chart::Run<'_>> = runs
        .iter()
        .map(|r| chart::Run {
            name: match r.rule {
                Rule::Forecast => "ours: forecast, drain target",
                Rule::Keda => "KEDA's rule: ceil(lag / lagThreshold)",
            },
            points: &r.points,
        })
        .collect();
    let title = format!(
        "{} producers, {} ms per message: autoscaled from 1 consumer",
        config.producers, config.process_delay_ms
    );
    chart::write_comparison(
        &charted,
        &title,
        start,
        &config.out_dir.join("autoscale.svg"),
        &config.out_dir.join("autoscale.png"),
    )?;
    let table = report(config, settings, &runs);
    std::fs::write(config.out_dir.join("autoscale.md"), &table).context("writing autoscale.md")?;
    println!("\n{table}");
    Ok(runs.iter().any(|r| r.interrupted))
}

fn report(config: &Config, settings: &Autoscale, runs: &[Run]) -> String {
    let start = config.phase1.as_secs_f64();
    let mut out = format!(
        "Autoscaling from 1 consumer after {} s: {} producers at {:.0} msg/s, {} ms per message, {} \
         partitions; a decision every {} s, scale-down stabilization {} s; DRAIN_TARGET {} s, \
         KEDA_LAG_THRESHOLD {}.\n\n",
        config.phase1.as_secs(),
        config.producers,
        f64::from(config.producers) / config.producer_interval.as_secs_f64(),
        config.process_delay_ms,
        config.partitions,
        settings.interval.as_secs(),
        settings.stabilization.as_secs(),
        settings.drain_target.as_secs(),
        settings.keda_lag_threshold,
    );
    out.push_str(
        "| rule | drained after | peak lag | lag at the end | consumer-seconds | most consumers | consumers at the end | scale changes |\n\
         |---|---:|---:|---:|---:|---:|---:|---:|\n",
    );
    for run in runs {
        let o = Outcome::of(&run.points, start, config.drained_lag, run.changes);
        let _ = writeln!(
            out,
            "| {} | {} | {} | {} | {:.0} | {} | {} | {} |",
            run.rule.name(),
            o.drained_after
                .map_or_else(|| "not drained".to_string(), |s| format!("{s:.0} s")),
            o.peak_lag,
            o.final_lag,
            o.consumer_seconds,
            o.max_consumers,
            o.final_consumers,
            o.changes,
        );
    }
    let _ = write!(
        out,
        "\n\"Drained\": total lag at most {} (DRAINED_LAG). Files: {}/autoscale.{{csv,svg,png,md}}.\n",
        config.drained_lag,
        config.out_dir.display()
    );
    out
}

async fn one_run(
    config: &Config,
    settings: &Autoscale,
    rule: Rule,
    brokers: &[String],
    where_: &str,
    logs: &Path,
    cancel: &CancellationToken,
) -> anyhow::Result<Run> {
    let mut config = config.clone();
    config.topic = format!("{}-{}", config.topic, rule.name());
    config.group = format!("{}-{}", config.group, rule.name());
    let logs = logs.join(rule.name());
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    println!(
        "\n== autoscaler: {} (topic {}) ==",
        rule.name(),
        config.topic
    );
    let mut sampler = prepare(&config, cancel, brokers, where_).await?;
    let mut fleet = fleet::Fleet::new(fleet::Common {
        brokers: brokers.join(","),
        topic: config.topic.clone(),
        group: config.group.clone(),
        logs,
        bin_dir: config.bin_dir.clone(),
    });
    let consumer_env = crate::consumer_env(&config);
    let partitions = usize::try_from(config.partitions).unwrap_or(1).max(1);
    let mut planner = Planner::new(settings.drain_target.as_secs_f64());
    let mut hpa = Hpa::new(1, partitions, settings.stabilization);
    let mut run = Run {
        rule,
        points: Vec::new(),
        changes: 0,
        interrupted: false,
    };
    let result = async {
        fleet
            .start_producers(config.producers, config.producer_interval)
            .await?;
        fleet.start_consumer(&consumer_env).await?;
        let started = Instant::now();
        let end = config.phase1 + settings.run;
        let mut tick = tokio::time::interval(config.sample_interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        let mut last_decision: Option<f64> = None;
        let mut last_line = -10.0;
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                _ = cancel.cancelled() => { run.interrupted = true; break; }
            }
            let t = started.elapsed().as_secs_f64();
            if t > end.as_secs_f64() {
                break;
            }
            let sampled = tokio::select! {
                s = sampler.sample(t, 1, &mut fleet) => s,
                _ = cancel.cancelled() => { run.interrupted = true; break; }
            };
            let (row, forecast, _) = match sampled {
                Ok(s) => s,
                Err(err) => {
                    println!("[{}] sample failed: {err:#}", view::clock(t));
                    continue;
                }
            };
            // Every forecast feeds the planner, so it measures the capacity before it decides.
            let planned = forecast.as_ref().and_then(|f| planner.desired(t, f));
            let current = fleet.running_consumers();
            let due = t >= config.phase1.as_secs_f64()
                && last_decision.is_none_or(|d| t - d >= settings.interval.as_secs_f64());
            if due {
                last_decision = Some(t);
                let desired = match rule {
                    Rule::Forecast => planned.unwrap_or(current),
                    Rule::Keda => {
                        keda_desired(row.total, settings.keda_lag_threshold, partitions, 1)
                    }
                };
                let target = hpa.step(t, current, desired);
                if target != current {
                    run.changes += 1;
                    println!(
                        "[{}] {}: lag {}, wants {desired}: scaling {current} → {target}",
                        view::clock(t),
                        rule.name(),
                        row.total
                    );
                }
                for _ in current..target {
                    fleet.start_consumer(&consumer_env).await?;
                }
                if target < current {
                    fleet.stop_newest_consumers(current - target, GRACE).await;
                }
            }
            let running = fleet.running_consumers();
            run.points.push((t, row.total, running));
            if t - last_line >= 10.0 {
                println!(
                    "[{}] {}: lag {}, {running} consumers",
                    view::clock(t),
                    rule.name(),
                    row.total
                );
                last_line = t;
            }
        }
        anyhow::Ok(())
    }
    .await;
    let killed = fleet.stop(GRACE).await;
    if killed > 0 {
        println!("{killed} processes did not stop within {GRACE:?} and were killed");
    }
    result?;
    Ok(run)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_hpa_scales_up_at_its_default_rate_and_down_only_after_its_window() {
        let mut hpa = Hpa::new(1, 9, Duration::from_secs(60));
        // 1 → 9 wanted: at most 1 + 4 in one step, then doubling.
        assert_eq!(hpa.step(0.0, 1, 9), 5);
        assert_eq!(hpa.step(15.0, 5, 9), 9);
        // Wanting fewer: held at the window's highest recommendation.
        assert_eq!(hpa.step(30.0, 9, 5), 9);
        assert_eq!(hpa.step(60.0, 9, 5), 9);
        // 9 was last recommended at 15 s: past the 60 s window at 76 s.
        assert_eq!(hpa.step(76.0, 9, 5), 5);
        // Within 10 %: nothing changes.
        assert_eq!(
            Hpa::new(1, 30, Duration::from_secs(60)).step(0.0, 20, 21),
            20
        );
    }

    #[test]
    fn the_outcome_measures_from_the_autoscalers_start() {
        let points = [
            (0.0, 0, 1),
            (10.0, 500, 1),
            (20.0, 900, 5),
            (30.0, 300, 5),
            (40.0, 100, 3),
        ];
        let o = Outcome::of(&points, 10.0, 200, 2);
        assert_eq!(o.drained_after, Some(30.0));
        assert_eq!(o.peak_lag, 900);
        assert_eq!(o.final_lag, 100);
        // 1 × 10 + 5 × 10 + 5 × 10.
        assert!((o.consumer_seconds - 110.0).abs() < 1e-9, "{o:?}");
        assert_eq!(o.max_consumers, 5);
        assert_eq!(o.final_consumers, 3);
        assert_eq!(o.changes, 2);
    }
}
