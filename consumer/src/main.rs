//! `consumer`: a member of `GROUP_ID` printing every message of `TOPIC`. Settings come from the
//! environment (see docs/configuration.md); SIGTERM commits and leaves the group.

use std::process::ExitCode;

use anyhow::Context as _;

fn main() -> ExitCode {
    if runtime::usage_requested(include_str!("usage.txt")) {
        return ExitCode::SUCCESS;
    }
    let config = runtime::telemetry::init()
        .and_then(|()| runtime::config::from_env::<consumer::Config>())
        .and_then(|mut c| {
            c.security = runtime::security::from_env()?;
            Ok(c)
        })
        .and_then(|c| c.validate().map(|()| c));
    let config = match config {
        Ok(config) => config,
        Err(err) => return runtime::config_error("consumer", err),
    };
    // Two threads: heartbeats and fetches keep running while one thread prints.
    let result = runtime::shutdown::block_on(2, |cancel| async move {
        let metrics = consumer::Metrics::new().context("registering metrics")?;
        consumer::run(&config, metrics, &cancel)
            .await
            .context("consumer")
    })
    .context("starting the tokio runtime and signal handlers")
    .and_then(|r| r);
    match result {
        Ok(()) => {
            tracing::info!("consumer stopped");
            ExitCode::SUCCESS
        }
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
