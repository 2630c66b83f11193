//! The Markdown written into BENCHMARKS.md, between `<!-- bench:begin -->` and `<!-- bench:end -->`
//! (what is outside the markers, such as the method and the profiling notes, is kept).

use std::{fmt::Write as _, fs, path::Path, process::Command};

use anyhow::Result;

use crate::{
    clients::{Kind, Paths},
    stats::{median, summary},
    Config, Results,
};

const BEGIN: &str =
    "<!-- bench:begin (written by `make bench`; edits between these markers are overwritten) -->";
const END: &str = "<!-- bench:end -->";

/// The machine and what else was running, sampled at the start and at the end.
#[derive(Debug, Default)]
pub struct Machine {
    pub nproc: String,
    pub cpu: String,
    pub kernel: String,
    pub mem: String,
    pub loadavg: String,
    /// The busiest other processes (`ps`), a few lines.
    pub busy: Vec<String>,
    pub versions: Vec<(String, String)>,
}

fn cmd(program: &str, args: &[&str]) -> String {
    Command::new(program)
        .args(args)
        .output()
        .map(|o| {
            let mut s = String::from_utf8_lossy(&o.stdout).trim().to_string();
            if s.is_empty() {
                s = String::from_utf8_lossy(&o.stderr).trim().to_string();
            }
            s
        })
        .unwrap_or_else(|e| format!("({program}: {e})"))
}

fn lock_version(lock: &Path, name: &str) -> String {
    let text = fs::read_to_string(lock).unwrap_or_default();
    let needle = format!("name = \"{name}\"\nversion = \"");
    text.find(&needle)
        .and_then(|at| {
            let rest = &text[at + needle.len()..];
            rest.find('"').map(|end| rest[..end].to_string())
        })
        .unwrap_or_else(|| "?".into())
}

impl Machine {
    pub fn sample(paths: &Paths) -> Self {
        let cpuinfo = fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
        let cpu = cpuinfo
            .lines()
            .find(|l| l.starts_with("model name"))
            .and_then(|l| l.split(':').nth(1))
            .unwrap_or("?")
            .trim()
            .to_string();
        let mem = fs::read_to_string("/proc/meminfo")
            .unwrap_or_default()
            .lines()
            .next()
            .and_then(|l| {
                l.split_whitespace()
                    .nth(1)
                    .and_then(|k| k.parse::<f64>().ok())
            })
            .map(|kib| format!("{:.1} GiB", kib / 1024.0 / 1024.0))
            .unwrap_or_default();
        let busy = cmd(
            "ps",
            &["-eo", "pcpu,rss,comm", "--sort=-pcpu", "--no-headers"],
        )
        .lines()
        .filter(|l| !l.contains(" ps") && !l.ends_with(" bench"))
        .take(6)
        .map(|l| l.split_whitespace().collect::<Vec<_>>().join(" "))
        .collect();
        let root = paths
            .py
            .parent()
            .and_then(Path::parent)
            .unwrap_or(Path::new("."));
        let (rd_num, rd_str) = rdkafka::util::get_rdkafka_version();
        let _ = rd_num;
        let py = cmd(
            &paths.python,
            &["-c", "import sys, kafka, confluent_kafka as c; print(sys.version.split()[0], kafka.__version__, c.version()[0] if isinstance(c.version(), tuple) else c.version(), c.libversion()[0])"],
        );
        let py: Vec<&str> = py.split_whitespace().collect();
        let get = |i: usize| py.get(i).copied().unwrap_or("?").to_string();
        let versions = vec![
            ("rustc".into(), cmd("rustc", &["--version"])),
            (
                "rskafka (ours)".into(),
                lock_version(&root.join("Cargo.lock"), "rskafka"),
            ),
            (
                "rdkafka crate / its librdkafka".into(),
                format!(
                    "{} / {rd_str}",
                    lock_version(&root.join("bench/Cargo.lock"), "rdkafka")
                ),
            ),
            (
                "Java (the broker's JVM and the Java client's)".into(),
                crate::kafka::java_version(),
            ),
            (
                "kafka-clients (Java)".into(),
                localkafka::version().to_string(),
            ),
            ("Python".into(), get(0)),
            ("kafka-python".into(), get(1)),
            (
                "confluent-kafka / its librdkafka".into(),
                format!("{} / {}", get(2), get(3)),
            ),
        ];
        Self {
            nproc: cmd("nproc", &[]),
            cpu,
            kernel: cmd("uname", &["-sr"]),
            mem,
            loadavg: fs::read_to_string("/proc/loadavg")
                .unwrap_or_default()
                .trim()
                .to_string(),
            busy,
            versions,
        }
    }
}

fn fmt_num(x: f64) -> String {
    let a = x.abs();
    if a == 0.0 {
        // CPU seconds come in the kernel's 10 ms ticks: zero means less than one tick.
        "< 0.01".into()
    } else if a >= 1000.0 {
        let s = format!("{:.0}", x);
        // Thin grouping for big rates: 1234567 -> 1 234 567.
        let mut out = String::new();
        for (i, c) in s.chars().enumerate() {
            if i > 0 && (s.len() - i) % 3 == 0 && c.is_ascii_digit() {
                out.push('\u{202f}');
            }
            out.push(c);
        }
        out
    } else if a >= 100.0 {
        format!("{x:.0}")
    } else if a >= 10.0 {
        format!("{x:.1}")
    } else if a >= 1.0 {
        format!("{x:.2}")
    } else {
        format!("{x:.3}")
    }
}

fn spread(xs: Option<&Vec<f64>>, scale: f64) -> String {
    match xs.and_then(|xs| summary(xs)) {
        Some((m, lo, hi)) if xs.is_some_and(|v| v.len() > 1) => format!(
            "{} ({}–{})",
            fmt_num(m * scale),
            fmt_num(lo * scale),
            fmt_num(hi * scale)
        ),
        Some((m, _, _)) => fmt_num(m * scale),
        None => "–".into(),
    }
}

fn of(v: &[(Kind, Vec<f64>)], kind: Kind) -> Option<&Vec<f64>> {
    v.iter().find(|(k, _)| *k == kind).map(|(_, xs)| xs)
}

fn med(v: &[(Kind, Vec<f64>)], kind: Kind) -> Option<f64> {
    of(v, kind).and_then(|xs| median(xs))
}

/// The scale row of `kind` with its own defaults.
fn scale_default(res: &Results, kind: Kind) -> Option<&crate::scale::Row> {
    res.scale
        .iter()
        .find(|r| r.variant.kind == kind && r.variant.strategy.is_none() && !r.variant.kip848)
}

fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a > 0.0 => format!("{}×", fmt_num(a / b)),
        (Some(_), Some(b)) if b > 0.0 => "≈ 0×".into(),
        _ => "–".into(),
    }
}

const MIB: f64 = 1.0 / 1024.0;

pub fn render(
    cfg: &Config,
    res: &Results,
    before: &Machine,
    after: &Machine,
    broker: &str,
) -> String {
    let mut s = String::new();
    let kinds = &cfg.clients;
    let w = |s: &mut String, line: &str| {
        s.push_str(line);
        s.push('\n');
    };
    if cfg.smoke {
        w(&mut s, "**Smoke run (`make bench-smoke`): tiny sizes, one repeat; these figures prove the harness works and mean nothing.**\n");
    }
    let command = if cfg.smoke {
        "make bench-smoke"
    } else {
        "make bench"
    };
    let _ = writeln!(
        s,
        "Command: `{command}` (window {} s after {} s settle, {} producers, {} messages on {} partitions, {} repeats, scale 1 → {}); run took {:.0} s, finished {}.\n",
        cfg.window,
        cfg.settle,
        cfg.producers,
        cfg.messages,
        cfg.partitions,
        cfg.repeats,
        cfg.members,
        res.elapsed,
        chrono::Utc::now().format("%Y-%m-%d %H:%M UTC")
    );
    w(&mut s, "Machine:\n");
    let _ = writeln!(
        s,
        "- {} cores: {}; {} RAM; {}",
        before.nproc, before.cpu, before.mem, before.kernel
    );
    let _ = writeln!(s, "- broker: {broker}, on 127.0.0.1");
    for (what, v) in &before.versions {
        let _ = writeln!(s, "- {what}: {v}");
    }
    let _ = writeln!(
        s,
        "- load average at start: {}; at end: {}",
        before.loadavg, after.loadavg
    );
    let _ = writeln!(
        s,
        "- busiest other processes at start (%CPU RSS-KiB command): {}",
        before.busy.join("; ")
    );
    let _ = writeln!(
        s,
        "- busiest other processes at end: {}\n",
        after.busy.join("; ")
    );
    w(
        &mut s,
        "Each cell: median (min–max) over the repeats. Ratios are ours ÷ peer, of medians.\n",
    );

    // --- producers (the Java client is measured as a consumer only)
    let producers = cfg.producers();
    let _ = writeln!(s, "### One producer at 1 Hz\n");
    let _ = writeln!(
        s,
        "| client | peak RSS (MiB) | CPU s in {} s window | CPU s from start (incl. startup) | start → first ack (s) |",
        cfg.window
    );
    w(&mut s, "|---|---:|---:|---:|---:|");
    for &k in &producers {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} |",
            k.name(),
            spread(of(&res.prod_rss, k), MIB),
            spread(of(&res.prod_cpu, k), 1.0),
            spread(of(&res.prod_cpu_total, k), 1.0),
            spread(of(&res.first_ack, k), 1.0),
        );
    }
    for &k in producers.iter().filter(|&&k| k != Kind::Ours) {
        let _ = writeln!(
            s,
            "| *ours ÷ {}* | {} | {} | {} | {} |",
            k.name(),
            ratio(med(&res.prod_rss, Kind::Ours), med(&res.prod_rss, k)),
            ratio(med(&res.prod_cpu, Kind::Ours), med(&res.prod_cpu, k)),
            ratio(
                med(&res.prod_cpu_total, Kind::Ours),
                med(&res.prod_cpu_total, k)
            ),
            ratio(med(&res.first_ack, Kind::Ours), med(&res.first_ack, k)),
        );
    }

    let _ = writeln!(
        s,
        "\n### The deployment: {} producers at once (one sample each)\n",
        cfg.producers
    );
    let _ = writeln!(
        s,
        "| client | alive | sum RSS (MiB) | sum peak RSS (MiB) | sum PSS (MiB) | sum anonymous RSS (MiB) | CPU s in {} s window | cores busy | msg/s at the broker | start → full rate (s) |",
        cfg.window
    );
    w(&mut s, "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (k, f) in &res.fleet {
        let _ = writeln!(
            s,
            "| {} | {}/{} | {} | {} | {} | {} | {} | {} | {} | {} |",
            k.name(),
            f.alive,
            f.count,
            fmt_num(f.rss_kib as f64 * MIB),
            fmt_num(f.peak_kib as f64 * MIB),
            fmt_num(f.pss_kib as f64 * MIB),
            fmt_num(f.anon_kib as f64 * MIB),
            fmt_num(f.cpu),
            fmt_num(f.cpu / cfg.window as f64),
            fmt_num(f.rate),
            fmt_num(f.ramp),
        );
    }

    // --- consumer
    let ceiling = median(&res.ceiling);
    let _ = writeln!(
        s,
        "\n### Consumer drain: {} pre-filled messages, one consumer, `Received message: …` lines read from its stdout\n",
        cfg.messages
    );
    w(&mut s, "| client | start → N lines (s) | drain rate, first line → N (msg/s) | of the ceiling | CPU s | peak RSS (MiB) |");
    w(&mut s, "|---|---:|---:|---:|---:|---:|");
    let _ = writeln!(
        s,
        "| broker ceiling: rskafka fetch-only, 9 partitions at once, no JSON | – | {} | 100% | – | – |",
        spread(Some(&res.ceiling), 1.0)
    );
    for &k in kinds {
        let pct = match (med(&res.drain_rate, k), ceiling) {
            (Some(r), Some(c)) if c > 0.0 => format!("{:.0}%", 100.0 * r / c),
            _ => "–".into(),
        };
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} |",
            k.name(),
            spread(of(&res.drain_total, k), 1.0),
            spread(of(&res.drain_rate, k), 1.0),
            pct,
            spread(of(&res.drain_cpu, k), 1.0),
            spread(of(&res.drain_rss, k), MIB),
        );
    }
    for &k in kinds.iter().filter(|&&k| k != Kind::Ours) {
        let _ = writeln!(
            s,
            "| *ours ÷ {}* | {} | {} | | {} | {} |",
            k.name(),
            ratio(med(&res.drain_total, Kind::Ours), med(&res.drain_total, k)),
            ratio(med(&res.drain_rate, Kind::Ours), med(&res.drain_rate, k)),
            ratio(med(&res.drain_cpu, Kind::Ours), med(&res.drain_cpu, k)),
            ratio(med(&res.drain_rss, Kind::Ours), med(&res.drain_rss, k)),
        );
    }

    let _ = writeln!(
        s,
        "\n### Scale 1 → {} under {} msg/s: seconds from starting {} more members until every member owns a partition; peak lag and longest pause in consumption meanwhile\n",
        cfg.members,
        cfg.scale_rate,
        cfg.members.saturating_sub(1)
    );
    w(
        &mut s,
        "Lag = messages acknowledged by the broker − lines the members printed, sampled every 50 ms from the scale-up until 3 s after every member owns a partition.\n",
    );
    w(
        &mut s,
        "| client | seconds | peak lag (messages) | longest pause (s) | partitions stopped > 1 s | longest partition stop (s) | ours (defaults) ÷ this, seconds |",
    );
    w(&mut s, "|---|---:|---:|---:|---:|---:|---:|");
    let ours_secs = scale_default(res, Kind::Ours).and_then(|r| median(&r.secs));
    for row in &res.scale {
        let _ = writeln!(
            s,
            "| {} | {} | {} | {} | {} | {} | {} |",
            row.variant.label(),
            spread(Some(&row.secs), 1.0),
            spread(Some(&row.peak_lag), 1.0),
            spread(Some(&row.pause), 1.0),
            spread(Some(&row.stopped), 1.0),
            spread(Some(&row.partition_stop), 1.0),
            ratio(ours_secs, median(&row.secs)),
        );
    }

    if let Some(m) = &res.lag {
        s.push_str(&lag_section(m));
    }

    w(&mut s, "\n### Sizes\n");
    w(&mut s, "| artifact | size |");
    w(&mut s, "|---|---:|");
    for (what, bytes) in &res.sizes {
        let _ = writeln!(s, "| {what} | {:.2} MiB |", *bytes as f64 / 1024.0 / 1024.0);
    }

    // --- targets
    w(&mut s, "\n### Targets\n");
    w(&mut s, "| target | measured (medians) | |");
    w(&mut s, "|---|---|---|");
    let verdict = |ok: Option<bool>| match ok {
        Some(true) => "met",
        Some(false) => "**missed**",
        None => "not measured",
    };
    let ours_rss = med(&res.prod_rss, Kind::Ours);
    let kp_rss = med(&res.prod_rss, Kind::KafkaPython);
    let rdk_rss = med(&res.prod_rss, Kind::RustRdkafka);
    let mib = |x: Option<f64>| x.map(|v| fmt_num(v * MIB)).unwrap_or("–".into());
    let both = |a: Option<f64>, b: Option<f64>, f: &dyn Fn(f64, f64) -> bool| match (a, b) {
        (Some(a), Some(b)) => Some(f(a, b)),
        _ => None,
    };
    let _ = writeln!(
        s,
        "| producer peak RSS ≤ 1/10 of kafka-python's | {} vs {} MiB ({}) | {} |",
        mib(ours_rss),
        mib(kp_rss),
        ratio(ours_rss, kp_rss),
        verdict(both(ours_rss, kp_rss, &|a, b| a <= b / 10.0))
    );
    let _ = writeln!(
        s,
        "| producer peak RSS below rust-rdkafka's | {} vs {} MiB ({}) | {} |",
        mib(ours_rss),
        mib(rdk_rss),
        ratio(ours_rss, rdk_rss),
        verdict(both(ours_rss, rdk_rss, &|a, b| a < b))
    );
    let (oc, rc) = (
        med(&res.prod_cpu, Kind::Ours),
        med(&res.prod_cpu, Kind::RustRdkafka),
    );
    let _ = writeln!(
        s,
        "| producer CPU ≤ rust-rdkafka's (in the window) | {} vs {} s ({}) | {} |",
        oc.map(fmt_num).unwrap_or("–".into()),
        rc.map(fmt_num).unwrap_or("–".into()),
        ratio(oc, rc),
        verdict(both(oc, rc, &|a, b| a <= b))
    );
    let ack = med(&res.first_ack, Kind::Ours);
    let _ = writeln!(
        s,
        "| producer start → first acknowledged message ≤ 10 ms | {} ms | {} |",
        ack.map(|a| fmt_num(a * 1000.0)).unwrap_or("–".into()),
        verdict(ack.map(|a| a <= 0.010))
    );
    let fleet = |k: Kind| {
        res.fleet
            .iter()
            .find(|(kind, _)| *kind == k)
            .map(|(_, f)| f)
    };
    let (of, rf) = (fleet(Kind::Ours), fleet(Kind::RustRdkafka));
    let fleet_rss = of.map(|f| f.rss_kib as f64 * MIB);
    let _ = writeln!(
        s,
        "| {} producers: sum RSS ≤ 300 MiB | {} MiB (sum PSS {} MiB) | {} |",
        cfg.producers,
        fleet_rss.map(fmt_num).unwrap_or("–".into()),
        of.map(|f| fmt_num(f.pss_kib as f64 * MIB))
            .unwrap_or("–".into()),
        verdict(fleet_rss.map(|m| m <= 300.0))
    );
    let (ofc, rfc) = (of.map(|f| f.cpu), rf.map(|f| f.cpu));
    let _ = writeln!(
        s,
        "| {} producers: CPU ≤ rust-rdkafka's (in the window) | {} vs {} s ({}) | {} |",
        cfg.producers,
        ofc.map(fmt_num).unwrap_or("–".into()),
        rfc.map(fmt_num).unwrap_or("–".into()),
        ratio(ofc, rfc),
        verdict(both(ofc, rfc, &|a, b| a <= b))
    );
    let or = med(&res.drain_rate, Kind::Ours);
    for peer in [Kind::RustRdkafka, Kind::Java] {
        let pr = med(&res.drain_rate, peer);
        let _ = writeln!(
            s,
            "| consumer drain rate ≥ 10× {}'s | {} vs {} msg/s ({}) | {} |",
            peer.name(),
            or.map(fmt_num).unwrap_or("–".into()),
            pr.map(fmt_num).unwrap_or("–".into()),
            ratio(or, pr),
            verdict(both(or, pr, &|a, b| a >= 10.0 * b))
        );
    }
    let drain_rss = med(&res.drain_rss, Kind::Ours);
    let _ = writeln!(
        s,
        "| consumer peak RSS during the drain ≤ 32 MiB | {} MiB | {} |",
        mib(drain_rss),
        verdict(drain_rss.map(|k| k * MIB <= 32.0))
    );
    let _ = writeln!(
        s,
        "| consumer drain rate ≥ ½ the fetch-only ceiling | {} vs {} msg/s ({}) | {} |",
        or.map(fmt_num).unwrap_or("–".into()),
        ceiling.map(fmt_num).unwrap_or("–".into()),
        ratio(or, ceiling),
        verdict(both(or, ceiling, &|a, b| a >= b / 2.0))
    );
    // Scale: ours with its defaults against the best of the Java client, confluent-kafka and
    // kafka-python with theirs.
    let peers = [Kind::Java, Kind::ConfluentKafka, Kind::KafkaPython];
    let best = |f: &dyn Fn(&crate::scale::Row) -> Option<f64>| {
        peers
            .iter()
            .filter_map(|&k| scale_default(res, k).and_then(|r| f(r).map(|m| (k, m))))
            .min_by(|a, b| a.1.total_cmp(&b.1))
    };
    let ours = scale_default(res, Kind::Ours);
    let os = ours.and_then(|r| median(&r.secs));
    let bs = best(&|r| median(&r.secs));
    let _ = writeln!(
        s,
        "| scale 1 → {} ≤ 0.5× the best of Java, confluent-kafka, kafka-python | {} s vs {} | {} |",
        cfg.members,
        os.map(fmt_num).unwrap_or("–".into()),
        bs.map(|(k, m)| format!("{} s ({}; {})", fmt_num(m), k.name(), ratio(os, Some(m))))
            .unwrap_or("–".into()),
        verdict(both(os, bs.map(|b| b.1), &|a, b| a <= 0.5 * b))
    );
    let ol = ours.and_then(|r| median(&r.peak_lag));
    let bl = best(&|r| median(&r.peak_lag));
    let _ = writeln!(
        s,
        "| peak lag during the scale-up below every peer's | {} vs {} | {} |",
        ol.map(fmt_num).unwrap_or("–".into()),
        bl.map(|(k, m)| format!("{} ({})", fmt_num(m), k.name()))
            .unwrap_or("–".into()),
        verdict(both(ol, bl.map(|b| b.1), &|a, b| a < b))
    );
    if let Some(m) = &res.lag {
        s.push_str(&lag_target(m, verdict));
    }
    if !res.notes.is_empty() {
        w(&mut s, "\nNotes from this run:\n");
        for n in &res.notes {
            let _ = writeln!(s, "- {n}");
        }
    }
    s
}

/// Replaces what is between the markers in `path` (or writes a new file with them).
pub fn write(path: &Path, body: &str) -> Result<()> {
    let block = format!("{BEGIN}\n{body}{END}\n");
    let text = fs::read_to_string(path).unwrap_or_default();
    let new = match (text.find(BEGIN), text.find(END)) {
        (Some(b), Some(e)) if e > b => {
            format!(
                "{}{}{}",
                &text[..b],
                block,
                text[e + END.len()..].trim_start_matches('\n')
            )
        }
        _ if text.is_empty() => format!("# Benchmarks\n\n{block}"),
        _ => format!("{}\n{block}", text.trim_end()),
    };
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir)?;
    }
    fs::write(path, new)?;
    Ok(())
}

/// A count, grouped like [`fmt_num`]'s big numbers (`1 000`).
fn count(n: i32) -> String {
    if n >= 1000 {
        fmt_num(n as f64)
    } else {
        n.to_string()
    }
}

/// The `lag` phase's table (see bench/src/lag.rs).
fn lag_section(m: &crate::lag::Measured) -> String {
    let mut s = String::new();
    let _ = writeln!(
        s,
        "\n### `admin lag` at scale: {} groups over a {}-partition topic\n",
        m.groups,
        count(m.partitions)
    );
    let _ = writeln!(
        s,
        "Every group committed an offset on every partition, {} messages behind the log end or fewer \
         ({} messages a partition; the groups at {} different offsets, so time lag is read in {} Fetch \
         rounds). Times on the bench broker. Requests counted by the broker: a second broker set up \
         the same way with Kafka's request logger (`kafka.request.logger` at debug), its `Completed \
         request` lines by the measured process's `CLIENT_ID`; its exporter sample time is shown for \
         what that logging costs.\n",
        crate::lag::MESSAGES_PER_PARTITION,
        crate::lag::MESSAGES_PER_PARTITION,
        m.offsets,
        m.offsets
    );
    s.push_str("| tool | one sample (s) | all groups (s) | broker requests per sample |\n");
    s.push_str("|---|---:|---:|---|\n");
    let exp = spread(Some(&m.exporter_secs), 1.0);
    let _ = writeln!(
        s,
        "| `admin exporter`: every group in one sample (its `lag_exporter_sample_duration_seconds`, {} samples) | {exp} | {exp} | {} |",
        m.exporter_secs.len(),
        crate::lag::describe(&m.exporter_requests)
    );
    let total: f64 = m.lag_secs.iter().sum();
    let _ = writeln!(
        s,
        "| `admin lag --group G --format json`: one process per group, start to exit ({} invocations) | {} | {} | {} |",
        m.lag_secs.len(),
        spread(Some(&m.lag_secs), 1.0),
        if m.lag_secs.is_empty() { "–".into() } else { fmt_num(total) },
        crate::lag::describe(&m.lag_requests)
    );
    let logged = spread(Some(&m.exporter_logged_secs), 1.0);
    let _ = writeln!(
        s,
        "| `admin exporter` on the broker with the request logger | {logged} | {logged} | first sample, opening its connections: {} |",
        m.exporter_first
            .as_ref()
            .map(|f| crate::lag::describe(std::slice::from_ref(f)))
            .unwrap_or("–".into())
    );
    s
}

/// The `lag` phase's row of the targets table.
fn lag_target(m: &crate::lag::Measured, verdict: impl Fn(Option<bool>) -> &'static str) -> String {
    let exporter = summary(&m.exporter_secs);
    let total: f64 = m.lag_secs.iter().sum();
    format!(
        "| one sample of {} groups over a {}-partition topic ≤ 1 s (the exporter) | exporter {}; `admin lag`, one process per group: {} for the {} | {} |\n",
        m.groups,
        count(m.partitions),
        exporter
            .map(|(med, _, hi)| format!("{} s (max {})", fmt_num(med), fmt_num(hi)))
            .unwrap_or("–".into()),
        if m.lag_secs.is_empty() {
            "–".into()
        } else {
            format!("{} s", fmt_num(total))
        },
        m.groups,
        verdict(exporter.map(|(med, _, _)| med <= 1.0))
    )
}
