//! `demo`: the seed experiment on one machine. 200 producers at 1 Hz and one consumer that cannot keep
//! up (phase 1), then the consumers scaled to 9 (phase 2) until the lag drains; a live view, a CSV, the
//! lag chart (SVG and PNG) and a summary. Settings come from the environment (see `--help`, docs/configuration.md).
//!
//! # Layout
//! - [`config`]: the settings and their defaults.
//! - [`broker`]: the local broker when no `KAFKA_BROKERS` is given: Apache Kafka (one node or
//!   three) or nisshi.
//! - [`fleet`]: the real `producer` and `consumer` binaries as processes, like pods.
//! - [`sample`]: one sample: offsets from the brokers, owners from the broker or the consumers' metrics.
//! - [`series`]: the rows, their CSV, the summary.
//! - [`view`]: the live terminal view.
//! - [`chart`]: the SVG and PNG charts.
//! - [`autoscale`]: `AUTOSCALE=1`, our autoscaling rule against KEDA's, run for real.

mod autoscale;
mod broker;
mod chart;
mod fleet;
mod sample;
mod series;
mod view;

// The settings live in the library half (src/lib.rs), so the documentation check can list them.
use demo::config;

use std::{
    fmt::Write as _,
    io::{IsTerminal as _, Write as _},
    path::PathBuf,
    process::ExitCode,
    time::Duration,
};

use anyhow::Context as _;
use lag::{Eta, Forecast, Needed};
use tokio::time::Instant;
use tokio_util::sync::CancellationToken;

use config::Config;
use series::{Row, Summary};

const USAGE: &str = include_str!("usage.txt");

/// How long stopping children may take: the consumer's own shutdown bound (20 s) plus margin, like
/// the Deployment's terminationGracePeriodSeconds.
const GRACE: Duration = Duration::from_secs(25);

fn main() -> ExitCode {
    if runtime::usage_requested(USAGE) {
        return ExitCode::SUCCESS;
    }
    let bin_dir = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(PathBuf::from))
        .unwrap_or_else(|| PathBuf::from("."));
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    let config = runtime::telemetry::init()
        .and_then(|()| runtime::config::from_env::<config::Env>())
        .map_err(|e| e.to_string())
        .and_then(|env| env.resolve(bin_dir, now))
        .and_then(|mut c| {
            c.security = runtime::security::from_env().map_err(|e| e.to_string())?;
            Ok(c)
        });
    let config = match config {
        Ok(config) => config,
        Err(err) => return runtime::config_error("demo", err),
    };
    let result =
        runtime::shutdown::block_on(2, |cancel| async move { run(&config, &cancel).await })
            .context("starting the tokio runtime and signal handlers")
            .and_then(|r| r);
    match result {
        Ok(Outcome::Finished) => ExitCode::SUCCESS,
        // Like a shell's status for SIGINT: the run was cut short, its files are still written.
        Ok(Outcome::Interrupted) => ExitCode::from(130),
        Err(err) => {
            eprintln!("demo: {err:#}");
            ExitCode::FAILURE
        }
    }
}

enum Outcome {
    Finished,
    Interrupted,
}

/// Where the run stands.
#[derive(Default)]
struct Progress {
    scaled_at: Option<f64>,
    /// The forecast in force when the scale-up started.
    before_scale: Option<Forecast>,
    settled_at: Option<f64>,
    /// (predicted drain time, when predicted).
    predicted: Option<(f64, f64)>,
    drained_at: Option<f64>,
    gave_up: bool,
    events: Vec<String>,
}

impl Progress {
    fn event(&mut self, t: f64, text: String, live: bool) {
        let line = format!("[{}] {text}", view::clock(t));
        if !live {
            println!("{line}");
        }
        self.events.push(line);
    }
}

async fn run(config: &Config, cancel: &CancellationToken) -> anyhow::Result<Outcome> {
    let logs = config.out_dir.join("logs");
    std::fs::create_dir_all(&logs).with_context(|| format!("creating {}", logs.display()))?;
    let live = std::io::stdout().is_terminal();

    let local = match &config.kafka_brokers {
        Some(_) => None,
        None => Some(
            broker::Local::start(config.local, config.nisshi_bin.as_deref(), &logs, cancel).await?,
        ),
    };
    let (brokers, where_) = match (&config.kafka_brokers, &local) {
        (Some(b), _) => (b.clone(), b.join(",")),
        (None, Some(l)) => (
            l.brokers(),
            format!("{} ({})", l.brokers().join(","), l.describe()),
        ),
        (None, None) => anyhow::bail!("no broker"),
    };
    if let Some(settings) = &config.autoscale {
        let compared = autoscale::compare(config, settings, &brokers, &where_, &logs, cancel).await;
        if let Some(local) = local {
            println!("stopping the {} ...", local.describe());
            local.stop().await;
        }
        return Ok(if compared? {
            Outcome::Interrupted
        } else {
            Outcome::Finished
        });
    }
    let mut fleet = fleet::Fleet::new(fleet::Common {
        brokers: brokers.join(","),
        topic: config.topic.clone(),
        group: config.group.clone(),
        logs: logs.clone(),
        bin_dir: config.bin_dir.clone(),
    });
    let outcome = match prepare(config, cancel, &brokers, &where_).await {
        Ok(mut sampler) => {
            experiment(config, cancel, &mut fleet, &mut sampler, &where_, live).await
        }
        // Ctrl-C before the first producer: nothing to sample, the (empty) files are still written.
        Err(_) if cancel.is_cancelled() => {
            std::fs::write(
                config.out_dir.join("lag.csv"),
                format!("{}\n", series::csv_header(config.partitions as usize)),
            )
            .context("writing lag.csv")?;
            Ok((Vec::new(), Progress::default(), Outcome::Interrupted))
        }
        Err(err) => Err(err),
    };

    if !fleet.consumers.is_empty() || fleet.running_producers() > 0 {
        println!(
            "stopping {} producers and the consumers (SIGTERM) ...",
            config.producers
        );
    }
    let killed = fleet.stop(GRACE).await;
    if killed > 0 {
        println!("{killed} processes did not stop within {GRACE:?} and were killed");
    }
    if let Some(local) = local {
        println!("stopping the {} ...", local.describe());
        local.stop().await;
    }
    let (rows, mut progress, outcome) = outcome?;
    let summary = Summary::from_rows(
        &rows,
        config.partitions as usize,
        config.consumers as usize,
        config.drained_lag,
    );
    let csv = config.out_dir.join("lag.csv");
    let (svg, png) = (
        config.out_dir.join("lag.svg"),
        config.out_dir.join("lag.png"),
    );
    let marks = chart::Marks {
        scaled: progress
            .scaled_at
            .map(|t| (t, format!("scaled to {} consumers", config.consumers))),
        settled: progress.settled_at,
        drained: progress.drained_at,
    };
    let title = format!(
        "{} producers → {} ({} partitions), group {}: 1 consumer, then {}",
        config.producers, config.topic, config.partitions, config.group, config.consumers
    );
    if rows.is_empty() {
        println!("no samples were taken: no chart");
    } else {
        chart::write(&rows, &title, &marks, &svg, &png)?;
    }
    let text = summary_text(config, &summary, &mut progress, &[&csv, &svg, &png]);
    std::fs::write(config.out_dir.join("summary.txt"), &text).context("writing summary.txt")?;
    println!("\n{text}");
    for (name, status) in fleet.consumer_exits() {
        if !status.contains("exit status: 0") {
            println!("note: {name} ended with {status} (see {})", logs.display());
        }
    }
    Ok(outcome)
}

/// Creates the topic, connects the lag reader and waits until the group's coordinator answers.
async fn prepare(
    config: &Config,
    cancel: &CancellationToken,
    brokers: &[String],
    where_: &str,
) -> anyhow::Result<sample::Sampler> {
    println!("broker {where_}; creating topic {} ...", config.topic);
    let topic = admin::create_topic::Config {
        kafka_brokers: brokers.to_vec(),
        topic: config.topic.clone(),
        client_id: "demo-admin".into(),
        partitions: config.partitions,
        replication_factor: config.replication_factor,
        admin_timeout: runtime::config::HumanDuration(Duration::from_secs(60)),
        security: config.security.clone(),
    };
    admin::create_topic::run(&topic, cancel)
        .await
        .context("creating the topic")?;
    let reader = admin::lag::Reader::connect(
        &admin::lag::Env {
            kafka_brokers: brokers.to_vec(),
            client_id: "demo-lag".into(),
            topic: config.topic.clone(),
            admin_timeout: None,
            security: config.security.clone(),
        },
        Duration::from_secs(30),
        cancel,
    )
    .await
    .context("connecting the lag reader")?;
    let mut sampler = sample::Sampler::new(reader, &config.group, &config.topic, config.window);
    tokio::select! {
        ready = sampler.warm_up(Duration::from_secs(60)) => ready?,
        _ = cancel.cancelled() => anyhow::bail!("cancelled"),
    }
    Ok(sampler)
}

/// What every consumer the demo starts is given, besides its broker, topic and group.
fn consumer_env(config: &Config) -> Vec<(&'static str, String)> {
    vec![
        ("PROCESS_DELAY_MS", config.process_delay_ms.to_string()),
        ("GROUP_PROTOCOL", config.group_protocol.name().to_string()),
        ("AUTO_OFFSET_RESET", "earliest".to_string()),
        (
            "AUTO_COMMIT_INTERVAL",
            format!("{}ms", config.auto_commit_interval.as_millis()),
        ),
    ]
}

/// Phases 1 and 2, sampling every `sample_interval`; returns the rows even when cut short.
async fn experiment(
    config: &Config,
    cancel: &CancellationToken,
    fleet: &mut fleet::Fleet,
    sampler: &mut sample::Sampler,
    where_: &str,
    live: bool,
) -> anyhow::Result<(Vec<Row>, Progress, Outcome)> {
    let consumer_env = &consumer_env(config);
    println!(
        "starting {} producers and 1 consumer (group {}) ...",
        config.producers, config.group
    );
    let started = Instant::now();
    let mut rows = Vec::new();
    let mut progress = Progress::default();
    let mut csv = std::io::BufWriter::new(
        std::fs::File::create(config.out_dir.join("lag.csv")).context("creating lag.csv")?,
    );
    writeln!(csv, "{}", series::csv_header(config.partitions as usize))?;
    fleet
        .start_producers(config.producers, config.producer_interval)
        .await?;
    fleet.start_consumer(consumer_env).await?;
    progress.event(
        0.0,
        format!(
            "started {} producers and consumer-1 ({} ms per message)",
            config.producers, config.process_delay_ms
        ),
        live,
    );
    let title = format!(
        "kafka-lag-lab demo: {} producers → {} ({} partitions) → group {} @ {where_}",
        config.producers, config.topic, config.partitions, config.group
    );
    let bound = config.phase1 + config.phase2_max + config.hold + Duration::from_secs(30);
    let mut tick = tokio::time::interval(config.sample_interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut totals = Vec::new();
    let mut last_line = -10.0;
    let mut last_forecast = None;
    let outcome = loop {
        tokio::select! {
            _ = tick.tick() => {}
            _ = cancel.cancelled() => break Outcome::Interrupted,
        }
        let t = started.elapsed().as_secs_f64();
        if t > bound.as_secs_f64() {
            progress.event(t, "time bound reached".into(), live);
            break Outcome::Finished;
        }
        if progress.scaled_at.is_none() && t >= config.phase1.as_secs_f64() {
            progress.before_scale = last_forecast.take();
            progress.scaled_at = Some(t);
            progress.event(
                t,
                format!(
                    "scaling kafka-consumer 1 → {n} (kubectl scale --replicas={n}) at lag {}",
                    totals.last().copied().unwrap_or(0),
                    n = config.consumers
                ),
                live,
            );
            for _ in 1..config.consumers {
                fleet.start_consumer(consumer_env).await?;
            }
        }
        let phase = if progress.scaled_at.is_some() { 2 } else { 1 };
        // A sample waits up to 20 s on a broker that stopped answering: Ctrl-C must not.
        let sampled = tokio::select! {
            sampled = sampler.sample(t, phase, fleet) => sampled,
            _ = cancel.cancelled() => break Outcome::Interrupted,
        };
        let (row, forecast, owners) = match sampled {
            Ok(sample) => sample,
            Err(err) => {
                progress.event(t, format!("sample failed: {err:#}"), live);
                continue;
            }
        };
        writeln!(csv, "{}", row.csv())?;
        csv.flush()?;
        totals.push(row.total);
        let done = advance(config, &mut progress, &row, forecast.as_ref(), live);
        let phase_text = phase_text(config, &progress, t);
        let verdicts = verdicts(config, &mut progress);
        let frame = view::Frame {
            title: &title,
            phase_text: &phase_text,
            producers: fleet.running_producers(),
            row: &row,
            totals: &totals,
            owners: &owners,
            forecast: forecast.as_ref(),
            verdicts: &verdicts,
            events: &progress.events,
        };
        if live {
            print!("\x1b[2J\x1b[H{}", view::render(&frame));
            let _ = std::io::stdout().flush();
        } else if t - last_line >= 5.0 {
            println!("{}", view::line(&frame));
            last_line = t;
        }
        last_forecast = forecast;
        rows.push(row);
        if done {
            break Outcome::Finished;
        }
    };
    Ok((rows, progress, outcome))
}

/// Moves phase 2 along: settling, the forecast's prediction, draining, the end. Returns whether the
/// run is over.
fn advance(
    config: &Config,
    progress: &mut Progress,
    row: &Row,
    forecast: Option<&Forecast>,
    live: bool,
) -> bool {
    let t = row.t;
    let Some(scaled_at) = progress.scaled_at else {
        return false;
    };
    let target = (config.consumers as usize).min(config.partitions as usize);
    if progress.settled_at.is_none()
        && row.owned == config.partitions as usize
        && row.owners == target
        && row.consumers >= config.consumers as usize
    {
        progress.settled_at = Some(t);
        progress.event(
            t,
            format!(
                "every partition owned, {} consumers with partitions, {:.1} s after the scale-up",
                row.owners,
                t - scaled_at
            ),
            live,
        );
    }
    // Predict once the rates measure the new group: a few seconds of its own history.
    if let (Some(settled), None) = (progress.settled_at, progress.predicted) {
        let measured = t - settled >= (config.window.as_secs_f64() / 2.0).min(8.0);
        if let Some(Eta::In { secs }) = forecast.map(|f| &f.eta).filter(|_| measured) {
            progress.predicted = Some((t + secs, t));
            progress.event(
                t,
                format!(
                    "forecast: drained in {secs:.0} s (at {})",
                    view::clock(t + secs)
                ),
                live,
            );
        }
    }
    if progress.settled_at.is_some()
        && progress.drained_at.is_none()
        && row.total <= config.drained_lag
    {
        progress.drained_at = Some(t);
        progress.event(
            t,
            format!(
                "drained: lag {} ≤ {}, {:.1} s after the scale-up",
                row.total,
                config.drained_lag,
                t - scaled_at
            ),
            live,
        );
    }
    if let Some(drained) = progress.drained_at {
        return t - drained >= config.hold.as_secs_f64();
    }
    if t - scaled_at >= config.phase2_max.as_secs_f64() {
        progress.gave_up = true;
        progress.event(
            t,
            format!(
                "not drained within PHASE2_MAX={}s (lag {})",
                config.phase2_max.as_secs(),
                row.total
            ),
            live,
        );
        return true;
    }
    false
}

fn phase_text(config: &Config, progress: &Progress, t: f64) -> String {
    match progress.scaled_at {
        None => format!(
            "phase 1: 1 consumer; scaling to {} in {:.0} s",
            config.consumers,
            (config.phase1.as_secs_f64() - t).max(0.0)
        ),
        Some(s) => format!(
            "phase 2: {} consumers since {}; {}",
            config.consumers,
            view::clock(s),
            if progress.drained_at.is_some() {
                "drained, holding to show it stays down"
            } else {
                "draining"
            }
        ),
    }
}

/// Whether the forecast came true, in words.
fn verdicts(config: &Config, progress: &mut Progress) -> Vec<String> {
    let mut out = Vec::new();
    if let Some(before) = &progress.before_scale {
        let needed = match &before.needed {
            Needed::Count { count, .. } => Some(*count),
            Needed::Suffice { members } => Some(*members),
            Needed::Unknown { .. } => None,
        };
        let outcome = if progress.drained_at.is_some() {
            "it drained"
        } else if progress.gave_up {
            "it did not drain"
        } else {
            "draining..."
        };
        out.push(match needed {
            Some(n) if n <= config.consumers as usize => format!(
                "before the scale-up: {}{}; {} consumers are enough: {outcome}",
                view::needed_text(&before.needed),
                before
                    .growth
                    .map_or(String::new(), |g| format!(" (lag {g:+.0}/s)")),
                config.consumers
            ),
            Some(_) => format!(
                "before the scale-up: {}; {} consumers are too few: {outcome}",
                view::needed_text(&before.needed),
                config.consumers
            ),
            None => format!("before the scale-up: {}", view::needed_text(&before.needed)),
        });
    }
    if let Some((at, when)) = progress.predicted {
        out.push(match progress.drained_at {
            Some(d) => format!(
                "predicted at {}: drained at {}; actual {} ({:+.1} s)",
                view::clock(when),
                view::clock(at),
                view::clock(d),
                d - at
            ),
            None => format!(
                "predicted at {}: drained at {}",
                view::clock(when),
                view::clock(at)
            ),
        });
    }
    out
}

fn summary_text(
    config: &Config,
    s: &Summary,
    progress: &mut Progress,
    files: &[&PathBuf],
) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "summary: {} producers, {} partitions, 1 consumer then {} ({} ms per message, group protocol {})",
        config.producers, config.partitions, config.consumers, config.process_delay_ms,
        config.group_protocol.name()
    );
    if let Some(g) = s.phase1_growth {
        let _ = writeln!(
            out,
            "  phase 1: lag grew {g:+.0} messages/s with one consumer"
        );
    }
    if let Some((peak, at)) = s.peak {
        let _ = writeln!(out, "  peak lag: {peak} at {}", view::clock(at));
    }
    match (s.scaled_at, s.all_owned_after) {
        (Some(at), Some(owned)) => {
            let _ = writeln!(
                out,
                "  scale-up at {}: every partition owned after {owned:.1} s",
                view::clock(at)
            );
        }
        (Some(at), None) => {
            let _ = writeln!(
                out,
                "  scale-up at {}: the group never settled with every partition owned",
                view::clock(at)
            );
        }
        (None, _) => {
            let _ = writeln!(out, "  stopped before the scale-up");
        }
    }
    match (s.drained_after, s.phase2_fall) {
        (Some(d), fall) => {
            let _ = writeln!(
                out,
                "  drained (lag ≤ {}) {d:.1} s after the scale-up{}",
                config.drained_lag,
                fall.map_or(String::new(), |f| format!(", falling {f:.0} messages/s"))
            );
        }
        (None, Some(f)) if s.scaled_at.is_some() => {
            let _ = writeln!(out, "  not drained; lag fell {f:.0} messages/s");
        }
        _ => {}
    }
    for v in verdicts(config, progress) {
        let _ = writeln!(out, "  forecast: {v}");
    }
    let names: Vec<String> = files.iter().map(|f| f.display().to_string()).collect();
    let _ = writeln!(out, "  files: {}", names.join(", "));
    out
}
