//! The live terminal view: redrawn in place on a terminal, one line every few seconds otherwise.

use std::{collections::BTreeMap, fmt::Write as _};

use lag::{Eta, Forecast, Needed};

use crate::series::{sparkline, Row};

/// Everything one frame shows.
pub struct Frame<'a> {
    pub title: &'a str,
    pub phase_text: &'a str,
    pub producers: usize,
    pub row: &'a Row,
    pub totals: &'a [i64],
    pub owners: &'a BTreeMap<String, Vec<i32>>,
    pub forecast: Option<&'a Forecast>,
    pub verdicts: &'a [String],
    pub events: &'a [String],
}

/// The full-screen frame.
pub fn render(f: &Frame<'_>) -> String {
    let r = f.row;
    let mut out = String::new();
    let _ = writeln!(out, "{}", f.title);
    let _ = writeln!(out, "t={:<7} {}", clock(r.t), f.phase_text);
    let _ = writeln!(
        out,
        "producers {:<4} in {:>6.1}/s   consumers {:<2} out {:>6.1}/s   produced {}  consumed {}",
        f.producers, r.produce_rate, r.consumers, r.consume_rate, r.produced, r.consumed
    );
    let _ = writeln!(out, "lag {:<8} {}", r.total, sparkline(f.totals, 60));
    let _ = writeln!(out);
    let _ = writeln!(out, "partition lag  {}", partitions_line(&r.lags));
    let _ = writeln!(out, "members ({}):", f.owners.len());
    if f.owners.is_empty() {
        let _ = writeln!(out, "  (none reporting yet)");
    }
    for (name, ps) in f.owners {
        let list: Vec<String> = ps.iter().map(i32::to_string).collect();
        let _ = writeln!(
            out,
            "  {name:<12} {}",
            if list.is_empty() {
                "- (no partitions: rebalancing)".to_string()
            } else {
                format!("partitions {}", list.join(","))
            }
        );
    }
    let _ = writeln!(out);
    let _ = writeln!(out, "forecast: {}", forecast_line(f.forecast));
    for v in f.verdicts {
        let _ = writeln!(out, "  {v}");
    }
    let _ = writeln!(out);
    for e in f.events.iter().rev().take(6).rev() {
        let _ = writeln!(out, "{e}");
    }
    out
}

/// One line for logs and pipes.
pub fn line(f: &Frame<'_>) -> String {
    let r = f.row;
    format!(
        "t={:<6} phase {} consumers {} owners {} in {:.0}/s out {:.0}/s lag {} | {}",
        clock(r.t),
        r.phase,
        r.consumers,
        r.owners,
        r.produce_rate,
        r.consume_rate,
        r.total,
        forecast_line(f.forecast)
    )
}

fn partitions_line(lags: &[i64]) -> String {
    lags.iter()
        .enumerate()
        .map(|(p, l)| format!("p{p}:{l}"))
        .collect::<Vec<_>>()
        .join(" ")
}

/// `mm:ss`.
pub fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// The forecast in words: trend, drain ETA, consumers needed.
pub fn forecast_line(f: Option<&Forecast>) -> String {
    let Some(f) = f else {
        return "waiting for history".into();
    };
    let net = f.produce_rate - f.consume_rate;
    let trend = if net > 0.5 {
        format!("growing {net:+.0}/s")
    } else if net < -0.5 {
        format!("falling {net:+.0}/s")
    } else {
        "steady".into()
    };
    let eta = match &f.eta {
        Eta::Now => "drained".to_string(),
        Eta::In { secs } => format!("drains in {secs:.0}s"),
        Eta::Never { .. } => "never drains at this rate".to_string(),
        Eta::Unknown => "drain time unknown yet".to_string(),
    };
    format!("{trend}, {eta}, {}", needed_text(&f.needed))
}

/// Consumers needed, in words.
pub fn needed_text(n: &Needed) -> String {
    match n {
        Needed::Count {
            count,
            capacity_per_consumer,
            limited_by_partitions,
        } => format!(
            "needs {count} consumer{} (one handles {capacity_per_consumer:.0}/s{})",
            if *count == 1 { "" } else { "s" },
            if *limited_by_partitions {
                "; limited by the partition count"
            } else {
                ""
            }
        ),
        Needed::Unknown { reason } => format!("consumers needed unknown ({reason})"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn clock_is_minutes_and_seconds() {
        assert_eq!(clock(0.4), "00:00");
        assert_eq!(clock(75.9), "01:15");
    }

    #[test]
    fn the_frame_shows_members_lag_and_forecast() {
        let row = Row {
            t: 12.0,
            phase: 1,
            consumers: 1,
            owners: 1,
            owned: 2,
            produced: 2400,
            consumed: 600,
            produce_rate: 200.0,
            consume_rate: 50.0,
            lags: vec![900, 900],
            total: 1800,
        };
        let owners = BTreeMap::from([("consumer-1".to_string(), vec![0, 1])]);
        let frame = Frame {
            title: "demo",
            phase_text: "phase 1",
            producers: 200,
            row: &row,
            totals: &[0, 900, 1800],
            owners: &owners,
            forecast: None,
            verdicts: &[],
            events: &["scaled".to_string()],
        };
        let text = render(&frame);
        assert!(text.contains("lag 1800"), "{text}");
        assert!(text.contains("consumer-1   partitions 0,1"), "{text}");
        assert!(text.contains("p0:900 p1:900"), "{text}");
        assert!(line(&frame).contains("lag 1800"));
    }
}
