//! Scale 1 → N under the seed's load: one member keeps up with 200 msg/s, then N - 1 more start at
//! once. Per client (per assignment strategy of ours, and per group protocol): seconds until every
//! member owns a partition, the peak lag while the group rebalances, the longest pause in
//! consumption, and how many partitions stopped being consumed for over a second, and for how long.
//!
//! A partition's stop is read from the printed lines: the load writes message `seq` to partition
//! `seq % partitions`, and every client prints the value, `seq` included.
//!
//! Lag here is what the group has not printed yet: messages the broker acknowledged minus lines the
//! members wrote to stdout, sampled every 50 ms. It needs no commits, so it shows a stop-the-world
//! pause the moment it happens (the broker's committed-offset lag would trail by a commit interval).

use std::{
    sync::{
        atomic::{AtomicBool, AtomicU64, Ordering},
        Arc,
    },
    time::{Duration, Instant},
};

use anyhow::{Context as _, Result};
use rskafka::{
    client::partition::{Compression, PartitionClient},
    record::Record,
};

use crate::{
    clients::{self, Kind, Paths},
    kafka,
    procs::{self, Out, Proc},
};

/// One row of the scale table: a client with its defaults, or ours with an explicit strategy.
#[derive(Debug, Clone)]
pub struct Variant {
    pub kind: Kind,
    /// `ASSIGNMENT_STRATEGY` given to ours; `None`: the client's defaults.
    pub strategy: Option<String>,
    /// `group.protocol=consumer` (KIP-848) for ours, Java and confluent-kafka; `false`: classic.
    pub kip848: bool,
}

impl Variant {
    pub fn label(&self) -> String {
        match (&self.strategy, self.kip848) {
            (_, true) => format!(
                "{} with group.protocol=consumer (KIP-848)",
                self.kind.name()
            ),
            (Some(s), false) => format!("{} with {s}", self.kind.name()),
            (None, false) => format!("{} (defaults)", self.kind.name()),
        }
    }
}

/// What the repeats of one variant measured.
#[derive(Debug, Clone)]
pub struct Row {
    pub variant: Variant,
    /// Seconds from starting the new members until every member owns a partition.
    pub secs: Vec<f64>,
    /// Peak lag (messages) from the scale-up until 3 s after every member owns a partition.
    pub peak_lag: Vec<f64>,
    /// Longest time without a printed line in that window, seconds.
    pub pause: Vec<f64>,
    /// Partitions with no printed message for over [`STOPPED`] in that window.
    pub stopped: Vec<f64>,
    /// The longest such stop of any partition, seconds.
    pub partition_stop: Vec<f64>,
}

/// A partition counts as stopped when none of its messages is printed for this long (the load
/// writes about 22 a second to each of 9 partitions, one every 45 ms).
pub const STOPPED: Duration = Duration::from_secs(1);

/// What one repeat measured.
#[derive(Debug, Clone, Copy)]
pub struct Measured {
    pub secs: f64,
    pub peak_lag: f64,
    pub pause: f64,
    pub stopped: f64,
    pub partition_stop: f64,
}

/// The rows to run: every client with its defaults, ours with each strategy of
/// `BENCH_OURS_STRATEGIES` (comma list; default `range,cooperative-sticky`, so the eager and the
/// cooperative rebalance are compared side by side in one run), and, unless `BENCH_KIP848=0`,
/// ours, Java and confluent-kafka with `group.protocol=consumer` (KIP-848).
pub fn variants(clients: &[Kind]) -> Vec<Variant> {
    let extra = std::env::var("BENCH_OURS_STRATEGIES")
        .unwrap_or_else(|_| "range,cooperative-sticky".into());
    let kip848 = std::env::var("BENCH_KIP848").map_or(true, |v| v != "0");
    let mut out = Vec::new();
    for &kind in clients {
        out.push(Variant {
            kind,
            strategy: None,
            kip848: false,
        });
        if kind == Kind::Ours {
            for s in extra.split(',').map(str::trim).filter(|s| !s.is_empty()) {
                out.push(Variant {
                    kind,
                    strategy: Some(s.to_string()),
                    kip848: false,
                });
            }
        }
        if kip848 && matches!(kind, Kind::Ours | Kind::Java | Kind::ConfluentKafka) {
            out.push(Variant {
                kind,
                strategy: None,
                kip848: true,
            });
        }
    }
    out
}

/// Writes `rate` messages a second round-robin over `partitions` until `stop`, counting the
/// acknowledged ones.
fn load(
    rt: &tokio::runtime::Runtime,
    partitions: Vec<PartitionClient>,
    rate: u32,
    acked: Arc<AtomicU64>,
    stop: Arc<AtomicBool>,
) -> tokio::task::JoinHandle<Result<()>> {
    rt.spawn(async move {
        let partitions: Vec<Arc<PartitionClient>> = partitions.into_iter().map(Arc::new).collect();
        let mut tick = tokio::time::interval(Duration::from_secs(1) / rate.max(1));
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Burst);
        let mut seq = 0u64;
        // Bounded: at most one hour of ticks, whatever happens to `stop`.
        for _ in 0..u64::from(rate) * 3600 {
            if stop.load(Ordering::Relaxed) {
                break;
            }
            tick.tick().await;
            seq += 1;
            let pc = Arc::clone(&partitions[(seq as usize) % partitions.len()]);
            let acked = Arc::clone(&acked);
            // One record a request, not awaited in line, so a slow acknowledgement never lowers
            // the rate.
            tokio::spawn(async move {
                let record = Record {
                    key: None,
                    value: Some(kafka::payload("load", seq)),
                    headers: Default::default(),
                    timestamp: chrono::Utc::now(),
                };
                if pc
                    .produce(vec![record], Compression::NoCompression)
                    .await
                    .is_ok()
                {
                    acked.fetch_add(1, Ordering::Relaxed);
                }
            });
        }
        Ok(())
    })
}

/// A member with its stdout lines counted into `printed` and its stderr lines on a channel.
struct Member {
    proc_: Proc,
    stderr: std::sync::mpsc::Receiver<(Instant, String)>,
    owned: usize,
}

fn spawn(
    paths: &Paths,
    variant: &Variant,
    broker: &str,
    topic: &str,
    group: &str,
    printed: &Arc<AtomicU64>,
    seen: &Arc<LastSeen>,
) -> Result<Member> {
    let mut cmd = paths.consumer(variant.kind, broker, topic, group);
    if let Some(s) = &variant.strategy {
        cmd.env("ASSIGNMENT_STRATEGY", s);
    }
    if variant.kip848 {
        match variant.kind {
            Kind::Ours => {
                cmd.env("GROUP_PROTOCOL", "consumer");
            }
            _ => {
                cmd.args(["--protocol", "consumer"]);
            }
        }
    }
    let mut p = Proc::spawn(&variant.label(), cmd, Out::Pipe, Out::Pipe)?;
    let stdout = p.take_stdout().context("stdout")?;
    let stderr = procs::lines(p.take_stderr().context("stderr")?);
    let printed = Arc::clone(printed);
    let seen = Arc::clone(seen);
    std::thread::spawn(move || count_into(stdout, &printed, &seen));
    Ok(Member {
        proc_: p,
        stderr,
        owned: 0,
    })
}

/// When each partition's latest message was printed, by any member.
pub struct LastSeen(std::sync::Mutex<Vec<Instant>>);

impl LastSeen {
    fn new(partitions: i32, now: Instant) -> Self {
        Self(std::sync::Mutex::new(vec![now; partitions.max(1) as usize]))
    }

    fn saw(&self, seq: u64) {
        let mut v = self.0.lock().unwrap_or_else(|p| p.into_inner());
        let n = v.len() as u64;
        v[(seq % n) as usize] = Instant::now();
    }

    fn snapshot(&self) -> Vec<Instant> {
        self.0.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }
}

/// The number after `seq` in a printed value: `"seq": 12` (JSON) or `'seq': 12` (Python's repr).
fn seq_of(line: &[u8]) -> Option<u64> {
    let at = line
        .windows(4)
        .position(|w| w == b"seq\"" || w == b"seq'")?
        + 4;
    let digits: Vec<u8> = line[at..]
        .iter()
        .skip_while(|b| !b.is_ascii_digit())
        .take_while(|b| b.is_ascii_digit())
        .copied()
        .collect();
    std::str::from_utf8(&digits).ok()?.parse().ok()
}

fn count_into(pipe: impl std::io::Read, n: &AtomicU64, seen: &LastSeen) {
    use std::io::BufRead;
    let mut reader = std::io::BufReader::with_capacity(64 * 1024, pipe);
    let mut line = Vec::new();
    // Bounded by the pipe: it ends when the member exits.
    while reader.read_until(b'\n', &mut line).is_ok_and(|got| got > 0) {
        n.fetch_add(1, Ordering::Relaxed);
        if let Some(seq) = seq_of(&line) {
            seen.saw(seq);
        }
        line.clear();
    }
}

/// Reads the members' pending stderr lines; true once every member owns a partition.
fn poll_owned(members: &mut [Member], kind: Kind) -> Option<Instant> {
    let mut at = None;
    for m in members.iter_mut() {
        while let Ok((t, line)) = m.stderr.try_recv() {
            if let Some(n) = clients::assignment(kind, &line) {
                m.owned = n;
                at = Some(t);
            }
        }
    }
    members.iter().all(|m| m.owned >= 1).then_some(at).flatten()
}

pub struct Setup<'a> {
    pub rt: &'a tokio::runtime::Runtime,
    pub client: &'a rskafka::client::Client,
    pub paths: &'a Paths,
    pub broker: &'a str,
    pub partitions: i32,
    pub members: usize,
    pub rate: u32,
}

/// One repeat of one variant on a fresh topic and group. `Err` for a harness failure; `Ok(None)`
/// with a note when the client did not get there in time.
pub fn once(
    s: &Setup<'_>,
    variant: &Variant,
    topic: &str,
    group: &str,
) -> Result<std::result::Result<Measured, String>> {
    let pcs = s.rt.block_on(async {
        let mut v = Vec::new();
        for p in 0..s.partitions {
            v.push(kafka::partition(s.client, topic, p).await?);
        }
        anyhow::Ok(v)
    })?;
    let (acked, printed) = (Arc::new(AtomicU64::new(0)), Arc::new(AtomicU64::new(0)));
    let seen = Arc::new(LastSeen::new(s.partitions, Instant::now()));
    let stop = Arc::new(AtomicBool::new(false));
    let producer = load(s.rt, pcs, s.rate, Arc::clone(&acked), Arc::clone(&stop));
    let lag = || acked.load(Ordering::Relaxed) as i64 - printed.load(Ordering::Relaxed) as i64;
    let result = (|| {
        let mut members = vec![spawn(
            s.paths, variant, s.broker, topic, group, &printed, &seen,
        )?];
        // The first member owns everything and keeps up (lag under a quarter second of load).
        let until = Instant::now() + Duration::from_secs(90);
        let caught_up = i64::from(s.rate / 4).max(10);
        loop {
            if Instant::now() > until {
                return Ok((
                    members,
                    Err(format!(
                        "{}: one member did not own all partitions and keep up within 90 s (lag {})",
                        variant.label(),
                        lag()
                    )),
                ));
            }
            poll_owned(&mut members, variant.kind);
            if members[0].owned == s.partitions as usize && lag() <= caught_up {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        // Let it settle for a second so the baseline is steady.
        std::thread::sleep(Duration::from_secs(1));
        let t0 = Instant::now();
        for _ in 1..s.members {
            members.push(spawn(
                s.paths, variant, s.broker, topic, group, &printed, &seen,
            )?);
        }
        let bound = t0 + Duration::from_secs(120);
        let (mut done, mut peak) = (None::<Instant>, lag());
        let (mut last_count, mut last_change, mut pause) =
            (printed.load(Ordering::Relaxed), t0, Duration::ZERO);
        // Per partition, the longest time since its last printed message, from the scale-up on.
        let mut longest = vec![Duration::ZERO; s.partitions.max(1) as usize];
        while Instant::now() < bound {
            if done.is_none() {
                done = poll_owned(&mut members, variant.kind);
            } else {
                poll_owned(&mut members, variant.kind);
            }
            let now = Instant::now();
            peak = peak.max(lag());
            let count = printed.load(Ordering::Relaxed);
            if count != last_count {
                last_count = count;
                last_change = now;
            }
            pause = pause.max(now - last_change);
            for (l, at) in longest.iter_mut().zip(seen.snapshot()) {
                *l = (*l).max(now.saturating_duration_since(at.max(t0)));
            }
            if done.is_some_and(|d| now > d + Duration::from_secs(3)) {
                break;
            }
            std::thread::sleep(Duration::from_millis(50));
        }
        let outcome = match done {
            Some(d) => Ok(Measured {
                secs: d.duration_since(t0).as_secs_f64(),
                peak_lag: peak as f64,
                pause: pause.as_secs_f64(),
                stopped: longest.iter().filter(|l| **l > STOPPED).count() as f64,
                partition_stop: longest.iter().max().map_or(0.0, |l| l.as_secs_f64()),
            }),
            None => Err(format!(
                "{}: not every member owned a partition within 120 s (owned: {:?})",
                variant.label(),
                members.iter().map(|m| m.owned).collect::<Vec<_>>()
            )),
        };
        anyhow::Ok((members, outcome))
    })();
    stop.store(true, Ordering::Relaxed);
    let _ = s.rt.block_on(producer);
    let (members, outcome) = result?;
    procs::stop_all(
        members.into_iter().map(|m| m.proc_).collect(),
        Duration::from_secs(15),
    );
    Ok(outcome)
}
