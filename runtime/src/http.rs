//! The metrics and health endpoints every long-running binary serves on `METRICS_ADDR`:
//! `GET /metrics` (Prometheus text format), `/healthz` (alive) and `/readyz` (ready for traffic).
//!
//! Three fixed routes do not need a web framework: this reads one request line and its headers
//! (bounded in size and time), answers, and closes the connection.

use std::{net::SocketAddr, sync::Arc, time::Duration};

use prometheus::{Encoder, Registry, TextEncoder};
use tokio::{
    io::{AsyncReadExt, AsyncWriteExt},
    net::{TcpListener, TcpStream},
};
use tokio_util::sync::CancellationToken;

/// What `/readyz` reports: ready or not, and why (shown in the response body).
pub type Readiness = Arc<dyn Fn() -> (bool, String) + Send + Sync>;

/// Largest request head we read.
const MAX_REQUEST: usize = 8 * 1024;
/// How long a client may take to send its request.
const READ_TIMEOUT: Duration = Duration::from_secs(5);

/// Binds `addr`. Separate from [`serve`] so a bad address is a startup error, not a log line.
pub async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    TcpListener::bind(addr).await
}

/// Serves the endpoints until `cancel`.
pub async fn serve(
    listener: TcpListener,
    registry: Registry,
    ready: Readiness,
    cancel: CancellationToken,
) {
    let registry = Arc::new(registry);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let (registry, ready) = (Arc::clone(&registry), Arc::clone(&ready));
                tokio::spawn(async move {
                    if let Err(err) = handle(stream, &registry, &ready).await {
                        tracing::debug!(cause = %err, "metrics request failed");
                    }
                });
            }
            Err(err) => {
                tracing::warn!(cause = %err, "accepting a metrics connection failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
        }
    }
}

async fn handle(
    mut stream: TcpStream,
    registry: &Registry,
    ready: &Readiness,
) -> std::io::Result<()> {
    let mut buf = Vec::with_capacity(512);
    let read = tokio::time::timeout(READ_TIMEOUT, async {
        let mut chunk = [0u8; 1024];
        while !buf.windows(4).any(|w| w == b"\r\n\r\n") && buf.len() < MAX_REQUEST {
            let n = stream.read(&mut chunk).await?;
            if n == 0 {
                break;
            }
            buf.extend_from_slice(&chunk[..n]);
        }
        Ok::<_, std::io::Error>(())
    })
    .await;
    if !matches!(read, Ok(Ok(()))) {
        return Ok(());
    }
    let head = String::from_utf8_lossy(&buf);
    let mut parts = head.split_whitespace();
    let (method, path) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
    let path = path.split('?').next().unwrap_or(path);
    let (status, content_type, body) = match (method, path) {
        ("GET", "/metrics") => {
            let mut out = Vec::new();
            let encoder = TextEncoder::new();
            match encoder.encode(&registry.gather(), &mut out) {
                Ok(()) => ("200 OK", encoder.format_type().to_string(), out),
                Err(err) => (
                    "500 Internal Server Error",
                    "text/plain".into(),
                    err.to_string().into_bytes(),
                ),
            }
        }
        ("GET", "/healthz") => ("200 OK", "text/plain".into(), b"ok\n".to_vec()),
        ("GET", "/readyz") => {
            let (ok, why) = ready();
            let status = if ok {
                "200 OK"
            } else {
                "503 Service Unavailable"
            };
            (status, "text/plain".into(), format!("{why}\n").into_bytes())
        }
        ("GET", _) => (
            "404 Not Found",
            "text/plain".into(),
            b"try /metrics, /healthz or /readyz\n".to_vec(),
        ),
        _ => ("405 Method Not Allowed", "text/plain".into(), Vec::new()),
    };
    let header = format!(
        "HTTP/1.1 {status}\r\nContent-Type: {content_type}\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        body.len()
    );
    stream.write_all(header.as_bytes()).await?;
    stream.write_all(&body).await?;
    stream.shutdown().await
}

/// Deserializes `METRICS_ADDR`: `host:port`, or empty to disable the endpoints.
pub fn metrics_addr<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<Option<SocketAddr>, D::Error> {
    use serde::Deserialize;
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Ok(None);
    }
    text.trim().parse().map(Some).map_err(|err| {
        serde::de::Error::custom(format_args!(
            "'{text}' is not an address ({err}); write ip:port like 0.0.0.0:9090, or leave it empty to disable"
        ))
    })
}

/// The default `METRICS_ADDR`.
pub fn default_metrics_addr() -> Option<SocketAddr> {
    Some(SocketAddr::from(([0, 0, 0, 0], 9090)))
}

#[cfg(test)]
mod tests {
    use super::*;

    async fn get(addr: SocketAddr, path: &str) -> String {
        let mut s = TcpStream::connect(addr).await.expect("connect");
        s.write_all(format!("GET {path} HTTP/1.1\r\nHost: x\r\n\r\n").as_bytes())
            .await
            .expect("write");
        let mut out = String::new();
        s.read_to_string(&mut out).await.expect("read");
        out
    }

    #[tokio::test]
    async fn serves_metrics_health_and_readiness() {
        let registry = Registry::new();
        let counter = prometheus::IntCounter::new("test_things_total", "Things.").expect("counter");
        registry
            .register(Box::new(counter.clone()))
            .expect("register");
        counter.inc_by(3);
        let flag = Arc::new(std::sync::atomic::AtomicBool::new(false));
        let seen = Arc::clone(&flag);
        let ready: Readiness = Arc::new(move || {
            let ok = seen.load(std::sync::atomic::Ordering::Relaxed);
            (
                ok,
                if ok {
                    "stable".into()
                } else {
                    "joining".into()
                },
            )
        });
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        tokio::spawn(serve(listener, registry, ready, cancel.clone()));

        let metrics = get(addr, "/metrics").await;
        assert!(
            metrics.starts_with("HTTP/1.1 200 OK") && metrics.contains("test_things_total 3"),
            "{metrics}"
        );
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        let not_ready = get(addr, "/readyz").await;
        assert!(
            not_ready.starts_with("HTTP/1.1 503") && not_ready.ends_with("joining\n"),
            "{not_ready}"
        );
        flag.store(true, std::sync::atomic::Ordering::Relaxed);
        assert!(get(addr, "/readyz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/nope").await.starts_with("HTTP/1.1 404"));
        cancel.cancel();
    }
}
