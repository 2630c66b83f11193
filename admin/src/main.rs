//! `admin`: `create-topic` for the Kubernetes Job. Settings come from the environment (see README).

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
    /// CLIENT_ID, RUST_LOG, LOG_FORMAT.
    CreateTopic,
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Err(err) = runtime::telemetry::init() {
        eprintln!("admin: configuration error: {err}");
        return ExitCode::from(runtime::EXIT_CONFIG as u8);
    }
    match cli.command {
        Command::CreateTopic => create_topic_main(),
    }
}

fn create_topic_main() -> ExitCode {
    let config: create_topic::Config = match runtime::config::from_env() {
        Ok(config) => config,
        Err(err) => {
            eprintln!("admin create-topic: configuration error: {err}");
            return ExitCode::from(runtime::EXIT_CONFIG as u8);
        }
    };
    let result = tokio_main(async {
        let cancel = runtime::shutdown::on_signal().context("installing signal handlers")?;
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

fn tokio_main<T>(fut: impl std::future::Future<Output = anyhow::Result<T>>) -> anyhow::Result<T> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")?
        .block_on(fut)
}
