//! Logging: `tracing` events to stderr (stdout belongs to the data, e.g. the consumer's printed
//! messages), filtered by `RUST_LOG`, formatted by `LOG_FORMAT`.

use serde::Deserialize;
use tracing_subscriber::{
    filter::Targets, layer::SubscriberExt as _, util::SubscriberInitExt as _, Layer as _,
};

use crate::config::{self, ConfigError};

/// Used when `RUST_LOG` is unset: our own info lines. rskafka is silenced because it logs every internal
/// retry at info and an expected answer (a topic that already exists) as a "fatal error"; every error it
/// returns reaches our code, which logs it with context. `RUST_LOG=info,rskafka=debug` brings it back.
pub const DEFAULT_FILTER: &str = "info,rskafka=off";

/// `LOG_FORMAT`: `text` for people, `json` for log collectors.
#[derive(Debug, Clone, Copy, Default, Deserialize, PartialEq, Eq)]
#[serde(rename_all = "lowercase")]
pub enum LogFormat {
    /// One human-readable line per event.
    #[default]
    Text,
    /// One JSON object per line, fields flattened.
    Json,
}

/// `LOG_FORMAT` and `RUST_LOG`, read by every binary through [`init`]; public so the documentation
/// check can list them ([`config::variables`]).
#[derive(Debug, Deserialize)]
pub struct LogSettings {
    #[serde(default)]
    log_format: LogFormat,
    #[serde(default)]
    rust_log: Option<String>,
}

/// Installs the global subscriber from `LOG_FORMAT` and `RUST_LOG`.
pub fn init() -> Result<(), ConfigError> {
    let settings: LogSettings = config::from_env()?;
    let filter_text = settings
        .rust_log
        .filter(|f| !f.trim().is_empty())
        .unwrap_or_else(|| DEFAULT_FILTER.to_string());
    // `Targets` (target=level directives) rather than `EnvFilter`: the same syntax for what people
    // write here, without a regex engine in every binary (about a megabyte of each image).
    let filter: Targets = filter_text.parse().map_err(|err| ConfigError::Invalid {
        var: "RUST_LOG".into(),
        reason: format!(
            "'{filter_text}' is not a log filter ({err}); try info or info,consumer=debug"
        ),
    })?;
    // Colours only for a person at a terminal: in a pod or a pipe they are noise in every line.
    let layer = tracing_subscriber::fmt::layer()
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .with_writer(std::io::stderr);
    let layer = match settings.log_format {
        LogFormat::Text => layer.with_filter(filter).boxed(),
        LogFormat::Json => layer.json().flatten_event(true).with_filter(filter).boxed(),
    };
    // A second init (tests calling into binaries' code) keeps the first subscriber.
    let _ = tracing_subscriber::registry().with(layer).try_init();
    Ok(())
}
