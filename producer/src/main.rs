//! `producer`: one `{"cnt": "cnt: N"}` message per `INTERVAL` until SIGTERM. Settings come from the
//! environment (see README).

use std::process::ExitCode;

use anyhow::Context as _;

fn main() -> ExitCode {
    if runtime::usage_requested(include_str!("usage.txt")) {
        return ExitCode::SUCCESS;
    }
    let config: producer::Config =
        match runtime::telemetry::init().and_then(|()| runtime::config::from_env()) {
            Ok(config) => config,
            Err(err) => {
                eprintln!("producer: configuration error: {err}");
                return ExitCode::from(runtime::EXIT_CONFIG as u8);
            }
        };
    // One thread: a 1 Hz sender needs no more, and 200 replicas make every idle thread count.
    let result = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("starting the tokio runtime")
        .and_then(|rt| {
            rt.block_on(async {
                let cancel =
                    runtime::shutdown::on_signal().context("installing signal handlers")?;
                let metrics = producer::metrics::Metrics::new().context("registering metrics")?;
                producer::run(&config, &metrics, &cancel)
                    .await
                    .context("producer")
            })
        });
    match result {
        Ok(_) => ExitCode::SUCCESS,
        Err(err) => {
            tracing::error!("{err:#}");
            ExitCode::FAILURE
        }
    }
}
