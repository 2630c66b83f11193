//! A real Kafka-compatible broker for tests: `nisshi` with in-memory storage on a free loopback port.

use std::{
    fs,
    io::Read,
    path::{Path, PathBuf},
    process::{Child, Command, Stdio},
    time::{Duration, Instant},
};

/// How to get the broker when it is missing; printed by every test that needs one.
pub const INSTALL_HINT: &str = "the test broker `nisshi` was not found. Install it once (about 12 minutes on 2 cores) with\n\
     \n    make broker\n\
     \nor directly:\n\
     \n    cargo +nightly install --locked nisshi --no-default-features --features dynostore,libsql\n\
     \nor point NISSHI_BIN at an existing binary.";

/// How long a broker may take to print `ready in`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running broker process. Dropping it kills the process.
#[derive(Debug)]
pub struct Broker {
    /// The broker process.
    child: Child,
    /// The loopback port it listens and advertises on.
    port: u16,
    /// Its combined stdout/stderr, kept for failure messages.
    log: PathBuf,
}

impl Broker {
    /// Starts a broker with the defaults the tests expect.
    pub fn start() -> Self {
        Self::start_with(&[])
    }

    /// Starts a broker with extra command-line arguments (e.g. a shorter initial rebalance delay).
    pub fn start_with(extra: &[&str]) -> Self {
        let bin = binary();
        let mut last = String::new();
        // A free port found by binding :0 can be taken before the broker binds it; try a few.
        for _ in 0..3 {
            let port = free_port();
            match spawn(&bin, port, extra) {
                Ok(broker) => return broker,
                Err(why) => last = why,
            }
        }
        panic!("could not start {}: {last}", bin.display());
    }

    /// Starts a broker on `port`, e.g. one that a client was already told about before the broker
    /// was up.
    pub fn start_on(port: u16) -> Self {
        let bin = binary();
        spawn(&bin, port, &[])
            .unwrap_or_else(|why| panic!("could not start {}: {why}", bin.display()))
    }

    /// `127.0.0.1:PORT`, for `KAFKA_BROKERS`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// The port alone.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// What the broker printed so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Broker {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
        let _ = fs::remove_file(&self.log);
    }
}

/// `NISSHI_BIN`, else `nisshi` on `PATH`, else `~/.cargo/bin/nisshi`; panics with [`INSTALL_HINT`].
pub fn binary() -> PathBuf {
    if let Some(bin) = std::env::var_os("NISSHI_BIN") {
        let bin = PathBuf::from(bin);
        assert!(
            bin.is_file(),
            "NISSHI_BIN={} is not a file.\n{INSTALL_HINT}",
            bin.display()
        );
        return bin;
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
        .unwrap_or_else(|| panic!("{INSTALL_HINT}"))
}

fn free_port() -> u16 {
    crate::closed_port()
}

fn spawn(bin: &Path, port: u16, extra: &[&str]) -> Result<Broker, String> {
    let log = std::env::temp_dir().join(crate::unique("nisshi-log"));
    let out = fs::File::create(&log).map_err(|e| format!("creating {}: {e}", log.display()))?;
    let err = out.try_clone().map_err(|e| e.to_string())?;
    let url = format!("tcp://127.0.0.1:{port}");
    let child = Command::new(bin)
        .args([
            "broker",
            "--listener-url",
            &url,
            "--advertised-listener-url",
            &url,
        ])
        .args(["--storage-engine", "memory://nisshi/"])
        .args(extra)
        .env(
            "RUST_LOG",
            // nisshi's info level traces every request's serialization: gigabytes per minute under load.
            std::env::var("NISSHI_LOG").unwrap_or_else(|_| "warn".into()),
        )
        .stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .spawn()
        .map_err(|e| format!("spawning {}: {e}", bin.display()))?;
    let mut broker = Broker { child, port, log };
    let started = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&broker.log) {
            let _ = f.read_to_string(&mut text);
        }
        if text.contains("ready in") {
            return Ok(broker);
        }
        if let Ok(Some(status)) = broker.child.try_wait() {
            return Err(format!(
                "broker exited with {status} on port {port}:\n{text}"
            ));
        }
        if started.elapsed() > READY_TIMEOUT {
            return Err(format!(
                "broker did not print `ready in` within {READY_TIMEOUT:?}:\n{text}"
            ));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}
