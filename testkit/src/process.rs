//! A binary under test running in the background, with its output captured line by line.

use std::{
    io::{BufRead, BufReader},
    process::Child,
    sync::{Arc, Mutex},
    thread,
    time::{Duration, Instant},
};

/// A spawned process whose stdout and stderr lines are collected as they come. Killed when dropped.
#[derive(Debug)]
pub struct Spawned {
    /// A name for messages.
    pub name: String,
    child: Child,
    stdout: Arc<Mutex<Vec<String>>>,
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Spawned {
    /// Starts `bin` with exactly `env` (plus `PATH`).
    pub fn start(name: &str, bin: &str, env: &[(&str, &str)]) -> Self {
        Self::start_args(name, bin, &[], env)
    }

    /// Starts `bin` with `args` (a subcommand, like `admin exporter`) and exactly `env`.
    pub fn start_args(name: &str, bin: &str, args: &[&str], env: &[(&str, &str)]) -> Self {
        let mut child = crate::spawn_clean(bin, args, env);
        let stdout = collect(
            child
                .stdout
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        );
        let stderr = collect(
            child
                .stderr
                .take()
                .map(|s| Box::new(s) as Box<dyn std::io::Read + Send>),
        );
        Self {
            name: name.to_string(),
            child,
            stdout,
            stderr,
        }
    }

    /// Process id.
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// Stdout lines so far.
    pub fn stdout(&self) -> Vec<String> {
        self.stdout.lock().map(|l| l.clone()).unwrap_or_default()
    }

    /// Stderr so far, one string.
    pub fn stderr(&self) -> String {
        self.stderr.lock().map(|l| l.join("\n")).unwrap_or_default()
    }

    /// Whether it is still running.
    pub fn running(&mut self) -> bool {
        matches!(self.child.try_wait(), Ok(None))
    }

    /// SIGTERM, then waits up to `timeout` for the exit code.
    pub fn terminate(&mut self, timeout: Duration) -> Option<i32> {
        crate::sigterm(self.pid());
        self.wait(timeout)
    }

    /// SIGKILL, and reaps it.
    pub fn kill(&mut self) {
        crate::sigkill(self.pid());
        let _ = self.child.wait();
    }

    /// Waits up to `timeout` for it to exit; its exit code (`None`: by a signal). Panics on timeout.
    pub fn wait(&mut self, timeout: Duration) -> Option<i32> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                // Let the reader threads drain what is left in the pipes.
                thread::sleep(Duration::from_millis(50));
                return status.code();
            }
            if Instant::now() >= deadline {
                panic!(
                    "{} did not exit within {timeout:?}; stderr:\n{}",
                    self.name,
                    self.stderr()
                );
            }
            thread::sleep(Duration::from_millis(20));
        }
    }
}

impl Drop for Spawned {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn collect(stream: Option<Box<dyn std::io::Read + Send>>) -> Arc<Mutex<Vec<String>>> {
    let lines = Arc::new(Mutex::new(Vec::new()));
    if let Some(stream) = stream {
        let sink = Arc::clone(&lines);
        thread::spawn(move || {
            for line in BufReader::new(stream).lines() {
                let Ok(line) = line else { break };
                if let Ok(mut l) = sink.lock() {
                    l.push(line);
                }
            }
        });
    }
    lines
}
