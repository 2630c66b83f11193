//! SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C) become one cancellation token that every loop
//! selects on.

use tokio::signal::unix::{signal, SignalKind};
use tokio_util::sync::CancellationToken;

/// Starts listening for SIGTERM and SIGINT and returns a token cancelled by the first of them. A second
/// signal is left to the default handler's successor: we keep listening, so it is only logged.
///
/// Must be called from inside a tokio runtime.
pub fn on_signal() -> std::io::Result<CancellationToken> {
    let mut term = signal(SignalKind::terminate())?;
    let mut int = signal(SignalKind::interrupt())?;
    let token = CancellationToken::new();
    let cancel = token.clone();
    tokio::spawn(async move {
        loop {
            let name = tokio::select! {
                _ = term.recv() => "SIGTERM",
                _ = int.recv() => "SIGINT",
            };
            if cancel.is_cancelled() {
                tracing::warn!(signal = name, "already shutting down");
            } else {
                tracing::info!(signal = name, "shutting down");
                cancel.cancel();
            }
        }
    });
    Ok(token)
}
