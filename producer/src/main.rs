//! `producer`: one `{"cnt": "cnt: N"}` message per `INTERVAL` until SIGTERM. Settings come from the
//! environment (see docs/configuration.md).

use std::process::ExitCode;

use anyhow::Context as _;

fn main() -> ExitCode {
    if runtime::usage_requested(include_str!("usage.txt")) {
        return ExitCode::SUCCESS;
    }
    let config = runtime::telemetry::init()
        .and_then(|()| runtime::config::from_env::<producer::Config>())
        .and_then(|mut c| {
            c.security = runtime::security::from_env()?;
            Ok(c)
        });
    let config = match config {
        Ok(config) => config,
        Err(err) => return runtime::config_error("producer", err),
    };
    // One thread: a 1 Hz sender needs no more, and 200 replicas make every idle thread count.
    let result = runtime::shutdown::block_on(1, |cancel| async move {
        let metrics = producer::metrics::Metrics::new().context("registering metrics")?;
        producer::run(&config, &metrics, &cancel)
            .await
            .context("producer")
    })
    .context("starting the tokio runtime and signal handlers")
    .and_then(|r| r);
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
