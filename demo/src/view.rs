//! The live terminal view: redrawn in place on a terminal, one line every few seconds otherwise.

use std::{collections::BTreeMap, fmt::Write as _};

use lag::{Eta, Forecast, Needed, State};

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
    if let Some(forecast) = f.forecast {
        let _ = writeln!(out, "states         {}", states_line(forecast));
    }
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

/// Each state with its partitions, worst first: `FALLING_BEHIND p0,p1 | KEEPING_UP p2`.
fn states_line(f: &Forecast) -> String {
    let mut by_state: Vec<(State, Vec<String>)> = Vec::new();
    for p in &f.partitions {
        let name = match (p.state, &p.eta) {
            (State::Draining, Eta::In { secs }) => format!("p{} ({secs:.0}s)", p.partition),
            _ => format!("p{}", p.partition),
        };
        match by_state.iter_mut().find(|(s, _)| *s == p.state) {
            Some((_, list)) => list.push(name),
            None => by_state.push((p.state, vec![name])),
        }
    }
    by_state.sort_by_key(|(s, _)| std::cmp::Reverse(severity(*s)));
    by_state
        .iter()
        .map(|(s, ps)| format!("{} {}", s.name(), ps.join(",")))
        .collect::<Vec<_>>()
        .join(" | ")
}

/// Worst first in the states line.
fn severity(s: State) -> u8 {
    match s {
        State::Stalled => 7,
        State::FallingBehind => 6,
        State::Draining => 5,
        State::Measuring => 4,
        State::Rebalancing => 3,
        State::Empty => 2,
        State::NoCommit => 1,
        State::KeepingUp => 0,
    }
}

/// `mm:ss`.
pub fn clock(t: f64) -> String {
    let s = t.max(0.0) as u64;
    format!("{:02}:{:02}", s / 60, s % 60)
}

/// The forecast in words: the group's state (with its rate and drain time), consumers needed.
/// "Never drains" only for a group that is falling behind.
pub fn forecast_line(f: Option<&Forecast>) -> String {
    let Some(f) = f else {
        return "waiting for history".into();
    };
    let state = match f.state {
        State::FallingBehind => format!(
            "falling behind{}, never drains at this rate",
            f.growth
                .map_or(String::new(), |g| format!(", lag {g:+.0}/s"))
        ),
        State::Draining => format!(
            "draining{}, {}",
            f.growth
                .map_or(String::new(), |g| format!(", lag {g:+.0}/s")),
            match &f.eta {
                Eta::In { secs } => format!("drains in {secs:.0}s"),
                _ => "drain time unknown yet".to_string(),
            }
        ),
        State::KeepingUp => "keeping up".to_string(),
        State::Stalled => match &f.eta {
            Eta::Never { reason } => format!("stalled ({reason})"),
            _ => "stalled".to_string(),
        },
        other => other.words().to_string(),
    };
    format!("{state}; {}", needed_text(&f.needed))
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
        Needed::Suffice { members } => format!(
            "the current {members} consumer{} suffice{}",
            if *members == 1 { "" } else { "s" },
            if *members == 1 { "s" } else { "" }
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

    /// `secs` one-second snapshots of 9 partitions: `produce`/s each, the consumer at `consume`/s
    /// each from `behind`, committing every second.
    fn forecast(produce: i64, consume: i64, behind: i64, members: usize) -> Forecast {
        let mut h = lag::History::new(20.0);
        for t in 0..=30i64 {
            let end = 10_000 + produce * t;
            let committed = (10_000 - behind + consume * t).min(end);
            h.push(lag::Snapshot {
                at: t as f64,
                wall_ms: t * 1000,
                group_state: "Stable".into(),
                members: (0..members).map(|m| format!("m{m}")).collect(),
                partitions: (0..9)
                    .map(|p| lag::PartitionSnapshot {
                        partition: p,
                        log_start: 0,
                        log_end: end,
                        committed: Some(committed),
                        oldest_unconsumed_ms: None,
                        owner: None,
                    })
                    .collect(),
            });
        }
        h.forecast(lag::Reset::Earliest).expect("forecast")
    }

    #[test]
    fn the_live_view_says_never_drains_only_when_falling_behind() {
        let healthy = forecast_line(Some(&forecast(22, 22, 0, 9)));
        assert_eq!(healthy, "keeping up; the current 9 consumers suffice");
        let draining = forecast_line(Some(&forecast(22, 50, 3000, 9)));
        assert!(
            draining.starts_with("draining, lag -252/s, drains in")
                && draining.ends_with("the current 9 consumers suffice"),
            "{draining}"
        );
        let f = forecast(22, 5, 0, 1);
        assert_eq!(states_line(&f), "FALLING_BEHIND p0,p1,p2,p3,p4,p5,p6,p7,p8");
        let behind = forecast_line(Some(&f));
        assert!(
            behind.starts_with(
                "falling behind, lag +153/s, never drains at this rate; needs 5 consumers"
            ),
            "{behind}"
        );
    }
}
