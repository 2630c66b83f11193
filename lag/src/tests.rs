//! The rules on synthetic offset histories.

use super::*;

/// A snapshot at `t` seconds: `ends[i]` and `committed[i]` for partition i, `members` member ids.
fn snap(t: f64, ends: &[i64], committed: &[Option<i64>], state: &str, members: usize) -> Snapshot {
    Snapshot {
        at: t,
        wall_ms: (t * 1000.0) as i64,
        group_state: state.into(),
        members: (0..members).map(|m| format!("m{m}")).collect(),
        partitions: ends
            .iter()
            .zip(committed)
            .enumerate()
            .map(|(i, (&end, &c))| PartitionSnapshot {
                partition: i as i32,
                log_start: 0,
                log_end: end,
                committed: c,
                oldest_unconsumed_ms: None,
                owner: None,
            })
            .collect(),
    }
}

/// `secs` seconds of 9 partitions each producing `produce`/s and consuming `consume`/s from `lag0`.
fn history(secs: usize, produce: f64, consume: f64, lag0: i64, members: usize) -> History {
    let mut h = History::new(60.0);
    for t in 0..=secs {
        let t = t as f64;
        let end = 1000 + (produce * t) as i64;
        let committed = (1000 - lag0 + (consume * t) as i64).min(end);
        h.push(snap(t, &[end; 9], &[Some(committed); 9], "Stable", members));
    }
    h
}

fn count(n: &Needed) -> (usize, bool) {
    match n {
        Needed::Count {
            count,
            limited_by_partitions,
            ..
        } => (*count, *limited_by_partitions),
        other => panic!("expected a count, got {other:?}"),
    }
}

#[test]
fn the_seed_one_consumer_falls_behind_and_needs_more() {
    // 200 msg/s over 9 partitions (22.2/s each); one member handles 50 msg/s in all (5.6/s each).
    let h = history(20, 200.0 / 9.0, 50.0 / 9.0, 0, 1);
    let f = h.forecast(Reset::Earliest).expect("forecast");
    assert!(
        f.partitions.iter().all(|p| p.state == State::Growing),
        "{:?}",
        f.partitions
    );
    assert!(
        (f.produce_rate - 200.0).abs() < 10.0 && (f.consume_rate - 50.0).abs() < 5.0,
        "{f:?}"
    );
    assert!(
        matches!(&f.eta, Eta::Never { reason } if reason.contains("producing")),
        "{:?}",
        f.eta
    );
    // Capacity 50/s per member: the busiest of n members owns ceil(9/n) partitions at 22.2/s each.
    // n=4: 3 partitions = 66.7/s > 50; n=5: 2 partitions = 44.4/s <= 50.
    assert_eq!(count(&f.needed), (5, false));
}

#[test]
fn draining_partitions_get_a_finite_eta_from_the_net_rate() {
    // 10/s produced, 30/s consumed, 600 behind: 600 / 20 = 30 s.
    let h = history(10, 10.0, 30.0, 800, 9);
    let f = h.forecast(Reset::Earliest).expect("forecast");
    let p = &f.partitions[0];
    assert_eq!(p.state, State::Draining);
    let Eta::In { secs } = p.eta else {
        panic!("{:?}", p.eta)
    };
    assert!((secs - 30.0).abs() < 2.0, "{secs}");
}

#[test]
fn a_consumer_that_keeps_up_is_caught_up_and_capacity_is_unknown() {
    let h = history(10, 20.0, 20.0, 30, 3);
    let f = h.forecast(Reset::Earliest).expect("forecast");
    assert!(
        f.partitions.iter().all(|p| p.state == State::CaughtUp),
        "{:?}",
        f.partitions
    );
    assert!(
        matches!(&f.needed, Needed::Unknown { reason } if reason.contains("3 member(s) suffice"))
    );
}

#[test]
fn nothing_committed_over_the_window_is_stalled() {
    let h = history(10, 20.0, 0.0, 500, 1);
    let f = h.forecast(Reset::Earliest).expect("forecast");
    assert!(f.partitions.iter().all(|p| p.state == State::Stalled));
    assert!(matches!(&f.eta, Eta::Never { reason } if reason.contains("nothing consumed")));
}

#[test]
fn rebalance_windows_are_left_out_of_consumption() {
    // Steady 10/s consumption, but 4 s of rebalancing in which nothing is committed: counted in, the
    // rate would read 6/s.
    let mut h = History::new(60.0);
    let mut committed = 0;
    for t in 0..=10 {
        let rebalancing = (3..7).contains(&t);
        if !rebalancing && t > 0 {
            committed += 10;
        }
        let state = if rebalancing {
            "PreparingRebalance"
        } else {
            "Stable"
        };
        h.push(snap(t as f64, &[10_000], &[Some(committed)], state, 1));
    }
    let r = h.rates().expect("rates")[&0];
    assert!((r.consume - 10.0).abs() < 0.01, "{r:?}");
}

#[test]
fn a_member_joining_restarts_the_consumption_window() {
    let mut h = history(10, 20.0, 5.0, 0, 1);
    // A second member joins: consumption doubles from here on.
    let last = h.latest().cloned().expect("latest");
    let base = last.partitions[0].committed.unwrap_or(0);
    for t in 11..=14 {
        let committed = base + 10 * (t - 10);
        h.push(snap(
            t as f64,
            &[1000 + 20 * t; 9],
            &[Some(committed); 9],
            "Stable",
            2,
        ));
    }
    let r = h.rates().expect("rates")[&0];
    assert!(
        (r.consume - 10.0).abs() < 0.01,
        "only the new membership counts: {r:?}"
    );
}

#[test]
fn a_rate_change_shows_within_the_window() {
    let mut h = History::new(5.0);
    for t in 0..=20 {
        // Production doubles at t = 10.
        let end = if t <= 10 { 10 * t } else { 100 + 20 * (t - 10) };
        h.push(snap(t as f64, &[end], &[Some(end)], "Stable", 1));
    }
    let r = h.rates().expect("rates")[&0];
    assert!(
        (r.produce - 20.0).abs() < 0.01,
        "the window forgets the old rate: {r:?}"
    );
}

#[test]
fn uneven_partitions_make_the_busiest_block_decide() {
    // Partition 0 gets 90/s, the other eight 5/s each (130/s in all). One member, far behind,
    // consumes 60/s from partition 0 and 5/s from each other one: a capacity of 100/s.
    let mut h = History::new(60.0);
    for t in 0..=10i64 {
        let mut ends = vec![5 * t + 5000; 9];
        ends[0] = 90 * t + 5000;
        let mut committed = vec![Some(5 * t); 9];
        committed[0] = Some(60 * t);
        h.push(snap(t as f64, &ends, &committed, "Stable", 1));
    }
    let f = h.forecast(Reset::Earliest).expect("forecast");
    // Totals alone say 130/100 -> 2 consumers. But with 2 the first owns partitions 0-4 (110/s) and
    // falls behind; with 3 the busiest owns 0-2 (100/s).
    let (n, limited) = count(&f.needed);
    assert_eq!((n, limited), (3, false), "{:?}", f.needed);
    let produce: Vec<(i32, f64)> = f
        .partitions
        .iter()
        .map(|p| (p.partition, p.rates.map_or(0.0, |r| r.produce)))
        .collect();
    assert!((busiest_block(&produce, 2) - 110.0).abs() < 0.5);
    assert!(
        (busiest_block(&produce, 9) - 90.0).abs() < 0.5,
        "partition 0 alone is 90/s"
    );
}

#[test]
fn more_production_than_one_partition_can_take_is_flagged() {
    // Each partition produces 30/s; a consumer handles 10/s: even 9 consumers cannot keep up.
    let h = history(10, 30.0, 10.0 / 9.0, 2000, 1);
    let f = h.forecast(Reset::Earliest).expect("forecast");
    assert_eq!(count(&f.needed), (9, true));
}

#[test]
fn no_commit_is_a_state_with_lag_from_the_reset_position() {
    let mut p = snap(0.0, &[50], &[None], "Stable", 1).partitions.remove(0);
    p.log_start = 10;
    assert_eq!(
        lag(&p, Reset::Earliest),
        Lag {
            messages: 40,
            basis: Basis::ResetPosition,
            clamped: false
        }
    );
    assert_eq!(lag(&p, Reset::Latest).messages, 0);
    let mut h = History::new(60.0);
    h.push(snap(0.0, &[50], &[None], "Empty", 0));
    h.push(snap(1.0, &[60], &[None], "Empty", 0));
    assert_eq!(
        h.forecast(Reset::Earliest).expect("forecast").partitions[0].state,
        State::NoCommit
    );
}

#[test]
fn lag_is_never_negative_and_the_clamp_is_reported() {
    let p = snap(0.0, &[100], &[Some(105)], "Stable", 1)
        .partitions
        .remove(0);
    assert_eq!(
        lag(&p, Reset::Earliest),
        Lag {
            messages: 0,
            basis: Basis::Committed,
            clamped: true
        }
    );
}

#[test]
fn the_slowest_owner_decides_the_group_eta() {
    let mut h = History::new(60.0);
    for t in 0..=10i64 {
        let mut s = snap(
            t as f64,
            &[1000 + 10 * t, 1000 + 10 * t],
            &[Some(400 + 40 * t), Some(900 + 20 * t)],
            "Stable",
            2,
        );
        s.partitions[0].owner = Some("slow".into());
        s.partitions[1].owner = Some("fast".into());
        h.push(s);
    }
    let f = h.forecast(Reset::Earliest).expect("forecast");
    // slow: lag 1100 - 800 = 300 at net 40 - 10 = 30/s; fast: lag 0.
    let Eta::In { secs } = f.eta else {
        panic!("{:?}", f.eta)
    };
    assert!((secs - 300.0 / 30.0).abs() < 0.5, "{secs}");
}

#[test]
fn time_lag_is_the_age_of_the_oldest_unconsumed_record() {
    let mut p = snap(0.0, &[10], &[Some(5)], "Stable", 1)
        .partitions
        .remove(0);
    p.oldest_unconsumed_ms = Some(1_000);
    assert_eq!(time_lag_secs(&p, 4_500), 3.5);
    p.oldest_unconsumed_ms = None;
    assert_eq!(time_lag_secs(&p, 4_500), 0.0);
}

#[test]
fn slightly_behind_but_losing_ground_is_growing_not_caught_up() {
    // 9.2/s produced, 8.3/s consumed, only 70 behind: small lag, but it never catches up.
    let h = history(12, 9.2, 8.3, 70, 1);
    let f = h.forecast(Reset::Earliest).expect("forecast");
    assert!(
        f.partitions.iter().all(|p| p.state == State::Growing),
        "{:?}",
        f.partitions
    );
}

#[test]
fn a_saturated_member_counts_what_it_consumed_from_partitions_it_just_drained() {
    // One member owns 3 partitions producing 20/s each and handles 50/s in all, a batch at a time:
    // partition 2 was just drained (nothing behind) while 0 and 1 fell further behind. Counting only
    // the partitions still behind would make its capacity 30/s and ask for 2 consumers too many.
    let mut h = History::new(60.0);
    for t in 0..=10 {
        let t = t as f64;
        let end = 1000 + (20.0 * t) as i64;
        let behind = 1000 - 500 + (15.0 * t) as i64;
        let drained = end - 5;
        let mut s = snap(
            t,
            &[end; 3],
            &[Some(behind), Some(behind), Some(drained)],
            "Stable",
            1,
        );
        for p in &mut s.partitions {
            p.owner = Some("m0".into());
        }
        h.push(s);
    }
    let f = h.forecast(Reset::Earliest).expect("forecast");
    assert_eq!(f.partitions[2].state, State::CaughtUp);
    match f.needed {
        Needed::Count {
            count,
            capacity_per_consumer,
            ..
        } => {
            assert!(
                (capacity_per_consumer - 50.0).abs() < 1.0,
                "{capacity_per_consumer}"
            );
            assert_eq!(
                count, 2,
                "60/s over 3 partitions at 50/s per member: 2 members"
            );
        }
        other => panic!("expected a count, got {other:?}"),
    }
}
