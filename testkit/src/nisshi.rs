//! nisshi, a Kafka-compatible broker in Rust, with in-memory storage on a free loopback port: the
//! suite's second implementation (`TEST_BROKER=nisshi`).

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
     \n    cargo +1.96.0 install --locked nisshi --version 0.8.1 --no-default-features --features dynostore,libsql\n\
     \nor point NISSHI_BIN at an existing binary.";

/// How long a broker may take to print `ready in`.
const READY_TIMEOUT: Duration = Duration::from_secs(60);

/// A running nisshi process. Dropping it kills the process.
#[derive(Debug)]
pub struct Nisshi {
    /// The broker process (`None` while stopped).
    child: Option<Child>,
    /// The loopback port it listens and advertises on.
    port: u16,
    /// Its combined stdout/stderr, kept for failure messages.
    log: PathBuf,
}

impl Nisshi {
    /// Starts nisshi with the settings the tests expect (empty groups wait 1 s for more members).
    pub fn start() -> Self {
        let bin = binary();
        let mut last = String::new();
        // A free port found by binding :0 can be taken before the broker binds it; try a few.
        for _ in 0..3 {
            let port = free_port();
            match spawn(&bin, port) {
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
        spawn(&bin, port).unwrap_or_else(|why| panic!("could not start {}: {why}", bin.display()))
    }

    /// Kills the process (nisshi keeps nothing: its topics and groups go with it).
    pub fn stop(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Starts a new, empty nisshi on the same port.
    pub fn restart(&mut self) {
        self.stop();
        let fresh = Self::start_on(self.port);
        *self = fresh;
    }

    /// `127.0.0.1:PORT`, for `KAFKA_BROKERS`.
    pub fn addr(&self) -> String {
        format!("127.0.0.1:{}", self.port)
    }

    /// What the broker printed so far.
    pub fn output(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }
}

impl Drop for Nisshi {
    fn drop(&mut self) {
        self.stop();
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

fn spawn(bin: &Path, port: u16) -> Result<Nisshi, String> {
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
        .args(["--group-initial-rebalance-delay", "1s"])
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
    let mut broker = Nisshi {
        child: Some(child),
        port,
        log,
    };
    let started = Instant::now();
    loop {
        let mut text = String::new();
        if let Ok(mut f) = fs::File::open(&broker.log) {
            let _ = f.read_to_string(&mut text);
        }
        if text.contains("ready in") {
            return Ok(broker);
        }
        if let Some(Ok(Some(status))) = broker.child.as_mut().map(|c| c.try_wait()) {
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
