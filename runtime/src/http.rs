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

/// An extra `GET` route a binary adds (the lag exporter's `/forecast`): its status line (`200 OK`),
/// content type and body, computed per request.
pub type Route = Arc<dyn Fn() -> (&'static str, String, Vec<u8>) + Send + Sync>;

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
    serve_routes(listener, registry, ready, Vec::new(), cancel).await;
}

/// [`serve`], plus `routes` (path, handler) next to the three fixed ones.
pub async fn serve_routes(
    listener: TcpListener,
    registry: Registry,
    ready: Readiness,
    routes: Vec<(&'static str, Route)>,
    cancel: CancellationToken,
) {
    let registry = Arc::new(registry);
    let routes = Arc::new(routes);
    loop {
        let accepted = tokio::select! {
            a = listener.accept() => a,
            _ = cancel.cancelled() => return,
        };
        match accepted {
            Ok((stream, _)) => {
                let (registry, ready) = (Arc::clone(&registry), Arc::clone(&ready));
                let routes = Arc::clone(&routes);
                tokio::spawn(async move {
                    if let Err(err) = handle(stream, &registry, &ready, &routes).await {
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
    routes: &[(&'static str, Route)],
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
        ("GET", p) if routes.iter().any(|(r, _)| *r == p) => {
            let route = routes.iter().find(|(r, _)| *r == p).map(|(_, f)| f);
            route.map_or(("404 Not Found", "text/plain".into(), Vec::new()), |f| f())
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

/// The port a binary serves on when `METRICS_ADDR` is not set and the port is free: the one the
/// images `EXPOSE` and the manifests probe.
pub const DEFAULT_METRICS_PORT: u16 = 9090;

/// Where to serve the endpoints, from `METRICS_ADDR`.
///
/// Unset, a binary takes port [`DEFAULT_METRICS_PORT`] on all interfaces when it is free, as in a
/// pod (one process per network namespace: probes and scrapes find it there even in a manifest that
/// does not say), and an ephemeral port, logged, when another binary on the same machine holds it:
/// a second consumer next to the first must start with no settings. Set, it is exact: an address
/// that cannot be bound is an error, so the manifests (which set `0.0.0.0:9090`) never serve their
/// probes anywhere else.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum MetricsAddr {
    /// Not set: port 9090 if free, else any free port.
    #[default]
    Default,
    /// Set to `ip:port`: exactly there.
    Fixed(SocketAddr),
    /// Set empty: no endpoints.
    Off,
}

/// `METRICS_ADDR` could not be bound.
#[derive(Debug, thiserror::Error)]
#[error("cannot listen on METRICS_ADDR {addr}")]
pub struct BindError {
    /// The address.
    pub addr: SocketAddr,
    /// Why.
    #[source]
    pub source: std::io::Error,
}

impl MetricsAddr {
    /// Binds the listener (`None` when off). Unset and port 9090 taken: an ephemeral port, with a
    /// warning naming the variable; the caller logs the address it got.
    pub async fn bind(self) -> Result<Option<TcpListener>, BindError> {
        self.bind_preferring(SocketAddr::from(([0, 0, 0, 0], DEFAULT_METRICS_PORT)))
            .await
    }

    /// [`bind`](Self::bind), with the unset default's preferred address as a parameter (tests).
    async fn bind_preferring(
        self,
        preferred: SocketAddr,
    ) -> Result<Option<TcpListener>, BindError> {
        match self {
            MetricsAddr::Off => Ok(None),
            MetricsAddr::Fixed(addr) => bind(addr)
                .await
                .map(Some)
                .map_err(|source| BindError { addr, source }),
            MetricsAddr::Default => match bind(preferred).await {
                Ok(listener) => Ok(Some(listener)),
                Err(err) if err.kind() == std::io::ErrorKind::AddrInUse => {
                    let any = SocketAddr::new(preferred.ip(), 0);
                    let listener = bind(any)
                        .await
                        .map_err(|source| BindError { addr: any, source })?;
                    tracing::warn!(
                        taken = %preferred,
                        addr = %listener.local_addr().unwrap_or(any),
                        "the default metrics port is taken (another binary on this machine?): serving on an ephemeral port; set METRICS_ADDR to choose"
                    );
                    Ok(Some(listener))
                }
                Err(source) => Err(BindError {
                    addr: preferred,
                    source,
                }),
            },
        }
    }
}

/// Deserializes `METRICS_ADDR` when set: `host:port`, or empty to disable the endpoints. (Unset is
/// [`MetricsAddr::Default`], through `#[serde(default)]`.)
pub fn metrics_addr<'de, D: serde::Deserializer<'de>>(
    deserializer: D,
) -> Result<MetricsAddr, D::Error> {
    use serde::Deserialize;
    let text = String::deserialize(deserializer)?;
    if text.trim().is_empty() {
        return Ok(MetricsAddr::Off);
    }
    text.trim().parse().map(MetricsAddr::Fixed).map_err(|err| {
        serde::de::Error::custom(format_args!(
            "'{text}' is not an address ({err}); write ip:port like 0.0.0.0:9090 (port 0: any free port), or leave it empty to disable"
        ))
    })
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

    #[tokio::test]
    async fn serves_extra_routes_next_to_the_fixed_ones() {
        let listener = bind("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind");
        let addr = listener.local_addr().expect("addr");
        let cancel = CancellationToken::new();
        let forecast: Route = Arc::new(|| ("200 OK", "application/json".into(), b"{}".to_vec()));
        let ready: Readiness = Arc::new(|| (true, "ok".into()));
        tokio::spawn(serve_routes(
            listener,
            Registry::new(),
            ready,
            vec![("/forecast", forecast)],
            cancel.clone(),
        ));
        let got = get(addr, "/forecast").await;
        assert!(
            got.starts_with("HTTP/1.1 200 OK")
                && got.contains("Content-Type: application/json")
                && got.ends_with("{}"),
            "{got}"
        );
        assert!(get(addr, "/healthz").await.starts_with("HTTP/1.1 200"));
        assert!(get(addr, "/other").await.starts_with("HTTP/1.1 404"));
        cancel.cancel();
    }

    #[derive(Debug, serde::Deserialize)]
    struct Env {
        #[serde(default, deserialize_with = "metrics_addr")]
        metrics_addr: MetricsAddr,
    }

    fn parse(vars: &[(&str, &str)]) -> Result<MetricsAddr, crate::config::ConfigError> {
        crate::config::from_iter::<Env, _>(vars.iter().map(|(k, v)| (k.to_string(), v.to_string())))
            .map(|e| e.metrics_addr)
    }

    #[test]
    fn metrics_addr_unset_is_the_default_empty_is_off_and_set_is_exact() {
        assert_eq!(parse(&[]), Ok(MetricsAddr::Default));
        assert_eq!(parse(&[("METRICS_ADDR", " ")]), Ok(MetricsAddr::Off));
        assert_eq!(
            parse(&[("METRICS_ADDR", "0.0.0.0:9090")]),
            Ok(MetricsAddr::Fixed(SocketAddr::from(([0, 0, 0, 0], 9090))))
        );
        let err = parse(&[("METRICS_ADDR", "9090")]).expect_err("no host");
        assert!(
            err.to_string()
                .starts_with("METRICS_ADDR: '9090' is not an address"),
            "{err}"
        );
    }

    /// Two binaries on one machine with no settings: the first gets the preferred port, the second
    /// an ephemeral one instead of failing. Set explicitly, a taken address is an error.
    #[tokio::test]
    async fn unset_falls_back_to_a_free_port_when_the_default_is_taken_and_set_does_not() {
        let first = MetricsAddr::Default
            .bind_preferring("127.0.0.1:0".parse().expect("addr"))
            .await
            .expect("bind")
            .expect("a listener");
        let taken = first.local_addr().expect("addr");
        let second = MetricsAddr::Default
            .bind_preferring(taken)
            .await
            .expect("the second binary starts too")
            .expect("a listener");
        let got = second.local_addr().expect("addr");
        assert_ne!(got.port(), taken.port());
        assert_eq!(got.ip(), taken.ip(), "same interfaces, another port");

        let err = MetricsAddr::Fixed(taken)
            .bind_preferring(taken)
            .await
            .expect_err("explicit and taken");
        assert_eq!(err.addr, taken);
        assert_eq!(
            err.to_string(),
            format!("cannot listen on METRICS_ADDR {taken}")
        );
        assert!(MetricsAddr::Off.bind().await.expect("off").is_none());
    }
}
