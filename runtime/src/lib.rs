//! What every kafka-lag-lab binary shares, so each `main.rs` stays a few lines.
//!
//! # Layout
//! - [`config`]: typed configuration from environment variables (envy), with errors that name the variable.
//! - [`telemetry`]: `tracing` to stderr, filtered by `RUST_LOG`, as text or JSON (`LOG_FORMAT`).
//! - [`shutdown`]: SIGTERM/SIGINT turned into a [`CancellationToken`](tokio_util::sync::CancellationToken).
//! - [`http`]: `/metrics`, `/healthz` and `/readyz` on `METRICS_ADDR`.
//! - [`backoff`]: capped exponential backoff with jitter, for every retry loop.
//! - [`kafka`]: connecting an rskafka client with bounded retries, and sorting broker errors into
//!   "retry" and "give up".
//! - [`security`]: `SECURITY_PROTOCOL`, `SASL_*` and `SSL_*`, for our connections and rskafka's.
#![forbid(unsafe_code)]
#![deny(rust_2018_idioms)]

pub mod backoff;
pub mod config;
pub mod http;
pub mod kafka;
pub mod security;
pub mod shutdown;
pub mod telemetry;

/// Exit status for a configuration error (BSD `EX_CONFIG`), so an operator can tell "fix the manifest"
/// from "the broker is down" in a pod's last state.
pub const EXIT_CONFIG: i32 = 78;

/// Reports a configuration error as `program: configuration error: ...` on stderr and returns the
/// [`EXIT_CONFIG`] status.
pub fn config_error(program: &str, err: impl std::fmt::Display) -> std::process::ExitCode {
    eprintln!("{program}: configuration error: {err}");
    std::process::ExitCode::from(EXIT_CONFIG as u8)
}

/// Prints `usage` and returns true when the first argument is `--help` or `-h`: the producer and
/// consumer take all settings from the environment, so that is the only argument they know.
pub fn usage_requested(usage: &str) -> bool {
    let asked = std::env::args()
        .nth(1)
        .is_some_and(|a| a == "--help" || a == "-h");
    if asked {
        println!("{usage}");
    }
    asked
}
