//! SIGTERM (what Kubernetes sends) and SIGINT (Ctrl-C) become one cancellation token that every loop
//! selects on.

use std::future::Future;

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

/// Runs `main` on a new tokio runtime, `workers` threads (1: the calling thread only), with the
/// signal token of [`on_signal`] already installed: the start every binary shares. Fails only if
/// the runtime or the signal handlers cannot be set up.
pub fn block_on<T, F: Future<Output = T>>(
    workers: usize,
    main: impl FnOnce(CancellationToken) -> F,
) -> std::io::Result<T> {
    let mut builder = if workers <= 1 {
        tokio::runtime::Builder::new_current_thread()
    } else {
        let mut b = tokio::runtime::Builder::new_multi_thread();
        b.worker_threads(workers);
        b
    };
    builder.enable_all().build()?.block_on(async {
        let cancel = on_signal()?;
        Ok(main(cancel).await)
    })
}
