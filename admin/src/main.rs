//! `admin`: `create-topic` for the Kubernetes Job, `lag` for people, `exporter` for Prometheus.
//! Settings come from the environment (see docs/configuration.md and docs/exporter.md).

use std::process::ExitCode;

use anyhow::Context as _;
use clap::{Parser, Subcommand};

use admin::create_topic;

#[derive(Parser)]
#[command(
    name = "admin",
    version,
    about = "Kafka administration for the kafka-lag-lab experiment"
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Create TOPIC with PARTITIONS and REPLICATION_FACTOR; succeed if it already exists as requested.
    ///
    /// Environment: KAFKA_BROKERS (required), TOPIC, PARTITIONS, REPLICATION_FACTOR, ADMIN_TIMEOUT,
    /// CLIENT_ID, RUST_LOG, LOG_FORMAT; for a secure cluster SECURITY_PROTOCOL, SASL_MECHANISM,
    /// SASL_USERNAME, SASL_PASSWORD or SASL_PASSWORD_FILE, SSL_CA_LOCATION, SSL_CERTIFICATE_LOCATION,
    /// SSL_KEY_LOCATION, SSL_ENDPOINT_IDENTIFICATION_ALGORITHM (every subcommand: see
    /// docs/configuration.md).
    CreateTopic,
    /// Show a consumer group's lag per partition, like kafka-consumer-groups.sh --describe, plus time
    /// lag; with --watch also each partition's state, rates and drain ETA, and the consumers needed.
    ///
    /// Environment: KAFKA_BROKERS (required), ADMIN_TIMEOUT (default 5s), CLIENT_ID, TOPIC, RUST_LOG,
    /// LOG_FORMAT.
    Lag(LagArgs),
    /// Serve every consumer group's lag and forecast until SIGTERM: /metrics (kafka_exporter's names
    /// plus time lag, drain ETA, consumers needed and rates) and /forecast (JSON).
    ///
    /// Environment: KAFKA_BROKERS (required), METRICS_ADDR (default port 9090), EXPORTER_INTERVAL
    /// (5s), EXPORTER_WINDOW (60s), EXPORTER_DRAIN_TARGET (60s), GROUP_FILTER (.*), TOPIC_FILTER
    /// (.*), EXPORTER_RESET (earliest), ADMIN_TIMEOUT (5s), CLIENT_ID, RUST_LOG, LOG_FORMAT.
    Exporter,
}

#[derive(clap::Args)]
struct LagArgs {
    /// The consumer group.
    #[arg(long, default_value = "my-group")]
    group: String,
    /// The topic (default: every topic the group committed or subscribes to).
    #[arg(long)]
    topic: Option<String>,
    /// Redraw every interval, like 2s, adding rates, states, drain ETA and consumers needed.
    #[arg(long, value_parser = parse_duration)]
    watch: Option<std::time::Duration>,
    /// Output format: aligned table, or one JSON object per sample.
    #[arg(long, value_enum, default_value = "table")]
    format: admin::lag::Format,
    /// The group's auto.offset.reset, for partitions without a committed offset.
    #[arg(long, value_parser = ["earliest", "latest"], default_value = "earliest")]
    reset: String,
    /// The history production is measured over and a stall judged over (no commit for this long).
    /// Consumption is measured between commits, reaching back past it for a long commit interval.
    #[arg(long, value_parser = parse_duration, default_value = "30s")]
    window: std::time::Duration,
    /// With --watch: stop after this many samples.
    #[arg(long)]
    samples: Option<u64>,
    /// How long to wait for a broker to answer, like 5s (default: ADMIN_TIMEOUT, else 5s).
    #[arg(long, value_parser = parse_duration)]
    timeout: Option<std::time::Duration>,
}

fn parse_duration(text: &str) -> Result<std::time::Duration, String> {
    humantime::parse_duration(text)
        .map_err(|e| format!("'{text}' is not a duration ({e}); like 2s or 500ms"))
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = runtime::telemetry::init() {
        return runtime::config_error("admin", err);
    }
    match cli.command {
        Command::CreateTopic => create_topic_main(),
        Command::Lag(args) => lag_main(args),
        Command::Exporter => exporter_main(),
    }
}

fn exporter_main() -> ExitCode {
    let config = runtime::config::from_env::<admin::exporter::Config>().and_then(|mut c| {
        c.security = runtime::security::from_env()?;
        Ok(c)
    });
    let config = match config {
        Ok(config) => config,
        Err(err) => return runtime::config_error("admin exporter", err),
    };
    let result = tokio_main(|cancel| async move {
        admin::exporter::run(&config, &cancel)
            .await
            .context("admin exporter")
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

fn lag_main(args: LagArgs) -> ExitCode {
    let env = runtime::config::from_env::<admin::lag::Env>().and_then(|mut c| {
        c.security = runtime::security::from_env()?;
        Ok(c)
    });
    let env = match env {
        Ok(env) => env,
        Err(err) => return runtime::config_error("admin lag", err),
    };
    let opts = admin::lag::Options {
        group: args.group,
        topic: args.topic,
        watch: args.watch,
        format: args.format,
        reset: if args.reset == "latest" {
            lag::Reset::Latest
        } else {
            lag::Reset::Earliest
        },
        window: args.window,
        samples: args.samples,
        timeout: args
            .timeout
            .or(env.admin_timeout.map(|t| t.get()))
            .unwrap_or(admin::lag::DEFAULT_TIMEOUT),
    };
    let result = tokio_main(|cancel| async move {
        admin::lag::run(&env, &opts, &cancel)
            .await
            .with_context(|| format!("admin lag --group {}", opts.group))
    });
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {err:#}");
            ExitCode::FAILURE
        }
    }
}

fn create_topic_main() -> ExitCode {
    let config = runtime::config::from_env::<create_topic::Config>().and_then(|mut c| {
        c.security = runtime::security::from_env()?;
        Ok(c)
    });
    let config = match config {
        Ok(config) => config,
        Err(err) => return runtime::config_error("admin create-topic", err),
    };
    let result = tokio_main(|cancel| async move {
        create_topic::run(&config, &cancel)
            .await
            .with_context(|| format!("admin create-topic {}", config.topic))
    });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}

/// One thread: admin makes a handful of requests.
fn tokio_main<T, F: std::future::Future<Output = anyhow::Result<T>>>(
    main: impl FnOnce(tokio_util::sync::CancellationToken) -> F,
) -> anyhow::Result<T> {
    runtime::shutdown::block_on(1, main)
        .context("starting the tokio runtime and signal handlers")
        .and_then(|r| r)
}
