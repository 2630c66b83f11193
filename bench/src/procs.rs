//! Child processes: every one the harness starts is registered, so it is stopped at the end, on an
//! error, and on Ctrl-C/SIGTERM; plus what /proc says about them (CPU seconds, peak RSS).

use std::{
    collections::BTreeSet,
    fs,
    io::{BufRead, BufReader, Read},
    path::Path,
    process::{Child, ChildStderr, ChildStdout, Command, Stdio},
    sync::{
        mpsc::{self, Receiver},
        Mutex,
    },
    thread,
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};

/// Pids of live children, for the Ctrl-C handler and the final sweep.
static LIVE: Mutex<BTreeSet<u32>> = Mutex::new(BTreeSet::new());

fn signal(pid: u32, sig: i32) {
    // SAFETY: kill(2) on a pid we started and have not reaped yet (reaping removes it from LIVE
    // first), so it cannot name another process.
    unsafe {
        libc::kill(pid as libc::pid_t, sig);
    }
}

/// Installs the Ctrl-C/SIGTERM handler: SIGKILL every live child, then exit 130.
pub fn install_interrupt_handler() -> Result<()> {
    ctrlc::set_handler(|| {
        eprintln!("bench: interrupted; stopping every child process");
        kill_all();
        std::process::exit(130);
    })
    .context("installing the Ctrl-C handler")
}

/// SIGKILLs every registered child (they are never reaped after this; the harness is exiting).
pub fn kill_all() {
    let pids: Vec<u32> = LIVE
        .lock()
        .map(|l| l.iter().copied().collect())
        .unwrap_or_default();
    for pid in pids {
        signal(pid, libc::SIGKILL);
    }
}

/// How a child's stdout and stderr are wired.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Out {
    /// Thrown away.
    Null,
    /// A pipe the caller reads.
    Pipe,
}

/// A child process that is stopped when dropped.
pub struct Proc {
    child: Child,
    pub started: Instant,
}

impl Proc {
    pub fn spawn(name: &str, mut cmd: Command, stdout: Out, stderr: Out) -> Result<Self> {
        let wire = |o: Out| match o {
            Out::Null => Stdio::null(),
            Out::Pipe => Stdio::piped(),
        };
        cmd.stdout(wire(stdout)).stderr(wire(stderr));
        Self::spawn_keep(name, cmd)
    }

    /// Like [`Proc::spawn`] for a command whose stdout and stderr the caller already set.
    pub fn spawn_keep(name: &str, mut cmd: Command) -> Result<Self> {
        cmd.stdin(Stdio::null());
        let started = Instant::now();
        let mut guard = LIVE.lock().map_err(|_| anyhow::anyhow!("lock poisoned"))?;
        let child = cmd
            .spawn()
            .with_context(|| format!("starting {name}: {cmd:?}"))?;
        guard.insert(child.id());
        drop(guard);
        Ok(Self { child, started })
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn take_stdout(&mut self) -> Option<ChildStdout> {
        self.child.stdout.take()
    }

    pub fn take_stderr(&mut self) -> Option<ChildStderr> {
        self.child.stderr.take()
    }

    pub fn exited(&mut self) -> bool {
        !matches!(self.child.try_wait(), Ok(None))
    }

    /// CPU seconds (user + system) so far; None once it has exited.
    pub fn cpu_seconds(&self) -> Option<f64> {
        cpu_seconds(self.pid())
    }

    /// Peak resident set (VmHWM) in KiB so far.
    pub fn peak_rss_kib(&self) -> Option<u64> {
        status_kib(self.pid(), "VmHWM:")
    }

    /// Current resident set (VmRSS) in KiB.
    pub fn rss_kib(&self) -> Option<u64> {
        status_kib(self.pid(), "VmRSS:")
    }

    /// Proportional set size in KiB: the resident pages, each shared page divided among the
    /// processes mapping it (the 200 producers share their binary's pages).
    pub fn pss_kib(&self) -> Option<u64> {
        let rollup = fs::read_to_string(format!("/proc/{}/smaps_rollup", self.pid())).ok()?;
        kib_of(&rollup, "Pss:")
    }

    /// Resident anonymous memory (RssAnon) in KiB: the heap and stacks, what no other process shares.
    pub fn anon_kib(&self) -> Option<u64> {
        status_kib(self.pid(), "RssAnon:")
    }

    /// Waits up to `timeout` for it to exit (polling every millisecond, so the caller can time
    /// it): its status, or None while it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let until = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                if let Ok(mut l) = LIVE.lock() {
                    l.remove(&self.child.id());
                }
                return Some(status);
            }
            if Instant::now() >= until {
                return None;
            }
            thread::sleep(Duration::from_millis(1));
        }
    }

    /// Sends SIGTERM without waiting (so many can be stopped at once).
    pub fn term(&self) {
        signal(self.pid(), libc::SIGTERM);
    }

    /// SIGTERM, up to `grace` to exit, then SIGKILL; always reaps.
    pub fn stop(mut self, grace: Duration) {
        self.stop_inner(grace);
    }

    fn stop_inner(&mut self, grace: Duration) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.term();
            let until = Instant::now() + grace;
            while Instant::now() < until && matches!(self.child.try_wait(), Ok(None)) {
                thread::sleep(Duration::from_millis(20));
            }
            let _ = self.child.kill();
        }
        if let Ok(mut l) = LIVE.lock() {
            l.remove(&self.child.id());
        }
        let _ = self.child.wait();
    }
}

impl Drop for Proc {
    fn drop(&mut self) {
        self.stop_inner(Duration::from_secs(5));
    }
}

/// Stops many at once: SIGTERM to all, then each gets what is left of `grace`.
pub fn stop_all(procs: Vec<Proc>, grace: Duration) {
    for p in &procs {
        p.term();
    }
    let until = Instant::now() + grace;
    for p in procs {
        p.stop(until.saturating_duration_since(Instant::now()));
    }
}

fn clock_ticks() -> f64 {
    // SAFETY: sysconf has no preconditions.
    let t = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if t > 0 {
        t as f64
    } else {
        100.0
    }
}

/// CPU seconds of `pid`, all its threads: the larger of the sum of /proc/PID/task/*/schedstat (time on
/// CPU in nanoseconds, exact, but only for threads still alive) and utime + stime from
/// /proc/PID/stat (every thread, dead ones too, but in 10 ms ticks truncated per process, which
/// reads 0 for a 1 Hz producer over 30 s). /proc/PID/schedstat alone would be the main thread only.
pub fn cpu_seconds(pid: u32) -> Option<f64> {
    let ticks = stat_cpu_seconds(pid)?;
    let mut ns: u64 = 0;
    if let Ok(tasks) = fs::read_dir(format!("/proc/{pid}/task")) {
        for task in tasks.flatten() {
            ns += fs::read_to_string(task.path().join("schedstat"))
                .ok()
                .and_then(|s| s.split_whitespace().next().and_then(|v| v.parse().ok()))
                .unwrap_or(0);
        }
    }
    Some(ticks.max(ns as f64 / 1e9))
}

/// utime + stime of `pid` in seconds, from /proc/PID/stat.
fn stat_cpu_seconds(pid: u32) -> Option<f64> {
    let stat = fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // The command name (field 2) may hold spaces; fields after its closing paren are fixed.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // rest starts at field 3 (state): utime is field 14, stime field 15.
    let utime: f64 = fields.get(11)?.parse().ok()?;
    let stime: f64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) / clock_ticks())
}

fn status_kib(pid: u32, key: &str) -> Option<u64> {
    let status = fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    kib_of(&status, key)
}

/// The number after `key` in a /proc file of `key value kB` lines.
fn kib_of(text: &str, key: &str) -> Option<u64> {
    text.lines()
        .find(|l| l.starts_with(key))?
        .split_whitespace()
        .nth(1)?
        .parse()
        .ok()
}

/// Lines of a pipe, each with the instant it was read, on a channel (a thread per pipe).
pub fn lines<R: Read + Send + 'static>(pipe: R) -> Receiver<(Instant, String)> {
    let (tx, rx) = mpsc::channel();
    thread::spawn(move || {
        let reader = BufReader::new(pipe);
        for line in reader.lines() {
            let Ok(line) = line else { break };
            if tx.send((Instant::now(), line)).is_err() {
                break;
            }
        }
    });
    rx
}

/// Waits for a line that satisfies `pred`, up to `timeout`: the instant it was read.
pub fn wait_line(
    rx: &Receiver<(Instant, String)>,
    timeout: Duration,
    mut pred: impl FnMut(&str) -> bool,
) -> Option<(Instant, String)> {
    let until = Instant::now() + timeout;
    loop {
        let left = until.checked_duration_since(Instant::now())?;
        match rx.recv_timeout(left) {
            Ok((at, line)) if pred(&line) => return Some((at, line)),
            Ok(_) => {}
            Err(_) => return None,
        }
    }
}

/// Sum of file sizes under `dir` in bytes (for the Python packages' installed size).
pub fn du(dir: &Path) -> u64 {
    let Ok(entries) = fs::read_dir(dir) else {
        return fs::metadata(dir).map(|m| m.len()).unwrap_or(0);
    };
    entries
        .flatten()
        .map(|e| match e.file_type() {
            Ok(t) if t.is_dir() => du(&e.path()),
            Ok(t) if t.is_file() => e.metadata().map(|m| m.len()).unwrap_or(0),
            _ => 0,
        })
        .sum()
}
