//! The local broker when no `KAFKA_BROKERS` is given: nisshi, in memory, on a free loopback port.

use std::{
    path::{Path, PathBuf},
    process::Stdio,
    time::Duration,
};

use anyhow::{bail, Context as _};
use tokio::{
    io::{AsyncBufReadExt as _, AsyncWriteExt as _, BufReader},
    process::{Child, Command},
};

/// How long nisshi may take to print `ready in`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running nisshi; killed when dropped (its data is in memory and goes with it).
pub struct LocalBroker {
    child: Child,
    addr: String,
}

impl LocalBroker {
    /// Starts nisshi and waits until it listens. Its output goes to `log`.
    pub async fn start(bin: &Path, log: &Path) -> anyhow::Result<Self> {
        let mut last = None;
        // A port found free can be taken before nisshi binds it: try a few.
        for _ in 0..3 {
            match Self::try_start(bin, free_port()?, log).await {
                Ok(broker) => return Ok(broker),
                Err(err) => last = Some(err),
            }
        }
        Err(last.unwrap_or_else(|| anyhow::anyhow!("nisshi did not start")))
    }

    async fn try_start(bin: &Path, port: u16, log: &Path) -> anyhow::Result<Self> {
        let url = format!("tcp://127.0.0.1:{port}");
        let mut child = Command::new(bin)
            .args(["broker", "--listener-url", &url])
            .args(["--advertised-listener-url", &url])
            .args(["--storage-engine", "memory://nisshi/"])
            // nisshi's info level traces every request's serialization: gigabytes in a minute.
            .env(
                "RUST_LOG",
                std::env::var("NISSHI_LOG").unwrap_or_else(|_| "warn".into()),
            )
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            // Its own process group: Ctrl-C reaches the demo, which stops the broker last.
            .process_group(0)
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", bin.display()))?;
        let mut file = tokio::fs::File::create(log)
            .await
            .with_context(|| format!("creating {}", log.display()))?;
        let (ready_tx, mut ready_rx) = tokio::sync::mpsc::channel::<()>(1);
        let stdout = child.stdout.take().context("nisshi stdout")?;
        let stderr = child.stderr.take().context("nisshi stderr")?;
        let (tx, mut rx) = tokio::sync::mpsc::channel::<String>(256);
        for stream in [
            Box::new(stdout) as Box<dyn tokio::io::AsyncRead + Unpin + Send>,
            Box::new(stderr),
        ] {
            let tx = tx.clone();
            tokio::spawn(async move {
                let mut lines = BufReader::new(stream).lines();
                while let Ok(Some(line)) = lines.next_line().await {
                    if tx.send(line).await.is_err() {
                        break;
                    }
                }
            });
        }
        drop(tx);
        // Everything nisshi prints goes to its log; the first `ready in` releases the wait.
        tokio::spawn(async move {
            let mut told = false;
            while let Some(line) = rx.recv().await {
                if !told && line.contains("ready in") {
                    told = true;
                    let _ = ready_tx.send(()).await;
                }
                let _ = file.write_all(line.as_bytes()).await;
                let _ = file.write_all(b"\n").await;
            }
            let _ = file.flush().await;
        });
        tokio::select! {
            ready = ready_rx.recv() => {
                if ready.is_none() {
                    bail!("nisshi exited before it was ready (see {})", log.display());
                }
            }
            _ = tokio::time::sleep(READY_TIMEOUT) => {
                bail!("nisshi not ready after {READY_TIMEOUT:?} (see {})", log.display());
            }
        }
        Ok(Self {
            child,
            addr: format!("127.0.0.1:{port}"),
        })
    }

    /// `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Stops the broker (last, after every client left).
    pub async fn stop(mut self) {
        let _ = self.child.start_kill();
        let _ = tokio::time::timeout(Duration::from_secs(5), self.child.wait()).await;
    }
}

/// `nisshi_bin`, else `NISSHI` on PATH, else `~/.cargo/bin/nisshi`.
pub fn find(nisshi_bin: Option<&Path>) -> anyhow::Result<PathBuf> {
    if let Some(bin) = nisshi_bin {
        if bin.is_file() {
            return Ok(bin.to_path_buf());
        }
        bail!("NISSHI_BIN={} is not a file", bin.display());
    }
    let on_path = std::env::var_os("PATH")
        .map(|p| {
            std::env::split_paths(&p)
                .map(|d| d.join("nisshi"))
                .collect::<Vec<_>>()
        })
        .unwrap_or_default();
    let cargo_home = std::env::var_os("CARGO_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| Path::new(&h).join(".cargo")));
    on_path
        .into_iter()
        .chain(cargo_home.map(|c| c.join("bin").join("nisshi")))
        .find(|p| p.is_file())
        .context(
            "the local broker `nisshi` was not found. `make demo` installs it (once, about 12 minutes \
             on 2 cores) with ./scripts/ensure-broker.sh; or set KAFKA_BROKERS=host:port to use an \
             existing Kafka instead",
        )
}

fn free_port() -> anyhow::Result<u16> {
    let listener =
        std::net::TcpListener::bind("127.0.0.1:0").context("finding a free loopback port")?;
    Ok(listener.local_addr()?.port())
}
