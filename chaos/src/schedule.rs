//! The fault schedule: a pure function of the seed and the duration, so a failing run is replayed
//! with the same `CHAOS_SEED` and `CHAOS_DURATION`.

use std::time::Duration;

/// The broker a kill aims at, resolved when it happens.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BrokerTarget {
    /// The group coordinator's broker (FindCoordinator).
    Coordinator,
    /// The leader of a partition, among brokers not killed yet.
    Leader,
    /// The broker not killed yet.
    Remaining,
}

/// A poison record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Poison {
    NotUtf8,
    NotJson,
    Empty,
    Null,
    /// A 1 MiB value (the topic allows 2 MiB messages).
    Large,
}

impl Poison {
    pub const ALL: [Self; 5] = [
        Self::NotUtf8,
        Self::NotJson,
        Self::Empty,
        Self::Null,
        Self::Large,
    ];

    /// The record's value.
    pub fn value(self) -> Option<Vec<u8>> {
        match self {
            Self::NotUtf8 => Some(vec![0xff, 0xfe, b'{', 0x80]),
            Self::NotJson => Some(b"{\"cnt\": not json".to_vec()),
            Self::Empty => Some(Vec::new()),
            Self::Null => None,
            Self::Large => Some(vec![b'x'; 1 << 20]),
        }
    }
}

/// What happens at one point of the run.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Action {
    /// Our consumers plus the peers become this many members (new ones start, the newest leave).
    ScaleTo(usize),
    /// The Java and confluent-kafka members join (they count towards the next `ScaleTo`).
    PeersJoin,
    /// They leave (SIGTERM).
    PeersLeave,
    /// SIGKILL a random member of ours, then start a replacement (what a Deployment does).
    KillConsumer,
    /// SIGTERM a random member of ours, then start a replacement.
    TermConsumer,
    /// SIGKILL a broker, wait `down`, start it again.
    KillBroker(BrokerTarget, Duration),
    /// Stop (SIGTERM, controlled shutdown) and restart each broker in turn.
    RollingRestart,
    /// Cut the proxied consumer off every broker for this long.
    NetworkCut(Duration),
    /// Write a poison record to a random partition.
    Poison(Poison),
}

/// One step: when (from the start), and what.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Step {
    pub at: Duration,
    pub action: Action,
}

/// Consumer SIGKILLs (and as many SIGTERMs) for a run of `duration`: 20 in ten minutes, in
/// proportion for shorter runs, at least 3.
pub fn consumer_faults(duration: Duration) -> usize {
    ((20.0 * duration.as_secs_f64() / 600.0).ceil() as usize).max(3)
}

/// The schedule for `duration`, from `seed`, in time order.
pub fn plan(seed: u64, duration: Duration) -> Vec<Step> {
    let mut rng = fastrand::Rng::with_seed(seed);
    let d = duration.as_secs_f64();
    let at = |f: f64| Duration::from_secs_f64((f * d).max(0.0));
    let mut steps = Vec::new();
    let mut push = |f: f64, action| steps.push(Step { at: at(f), action });
    // Scaling 1 -> 9 -> 3 -> 9 -> 1; the peers are members for the first "9".
    push(0.2, Action::PeersJoin);
    push(0.2, Action::ScaleTo(9));
    push(0.4, Action::PeersLeave);
    push(0.4, Action::ScaleTo(3));
    push(0.6, Action::ScaleTo(9));
    push(0.8, Action::ScaleTo(1));
    let jitter = |rng: &mut fastrand::Rng| (rng.f64() - 0.5) * 0.04;
    let down = |rng: &mut fastrand::Rng| Duration::from_millis(rng.u64(2000..6000));
    push(
        0.12 + jitter(&mut rng),
        Action::KillBroker(BrokerTarget::Coordinator, down(&mut rng)),
    );
    push(
        0.32 + jitter(&mut rng),
        Action::KillBroker(BrokerTarget::Leader, down(&mut rng)),
    );
    push(
        0.52 + jitter(&mut rng),
        Action::KillBroker(BrokerTarget::Remaining, down(&mut rng)),
    );
    push(0.7 + jitter(&mut rng), Action::RollingRestart);
    push(
        0.46 + jitter(&mut rng),
        Action::NetworkCut(Duration::from_millis(rng.u64(3000..7000))),
    );
    for kind in Poison::ALL {
        push(0.1 + 0.8 * rng.f64(), Action::Poison(kind));
    }
    for _ in 0..consumer_faults(duration) {
        push(0.03 + 0.92 * rng.f64(), Action::KillConsumer);
        push(0.03 + 0.92 * rng.f64(), Action::TermConsumer);
    }
    // Stable: the scale steps keep their written order at equal times.
    steps.sort_by_key(|s| s.at);
    steps
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_schedule() {
        let ten = Duration::from_secs(600);
        assert_eq!(plan(7, ten), plan(7, ten));
        assert_ne!(plan(7, ten), plan(8, ten));
    }

    #[test]
    fn a_full_run_has_every_fault_the_issue_asks_for() {
        let steps = plan(42, Duration::from_secs(600));
        let count = |f: fn(&Action) -> bool| steps.iter().filter(|s| f(&s.action)).count();
        assert!(count(|a| *a == Action::KillConsumer) >= 20);
        assert!(count(|a| *a == Action::TermConsumer) >= 20);
        assert_eq!(count(|a| matches!(a, Action::KillBroker(..))), 3);
        assert_eq!(count(|a| *a == Action::RollingRestart), 1);
        assert_eq!(count(|a| matches!(a, Action::NetworkCut(_))), 1);
        assert_eq!(count(|a| matches!(a, Action::Poison(_))), 5);
        let scale: Vec<usize> = (steps.iter())
            .filter_map(|s| match s.action {
                Action::ScaleTo(n) => Some(n),
                _ => None,
            })
            .collect();
        assert_eq!(scale, vec![9, 3, 9, 1]);
        assert!(steps.windows(2).all(|w| w[0].at <= w[1].at));
        assert!(steps.iter().all(|s| s.at < Duration::from_secs(600)));
    }

    #[test]
    fn a_short_run_has_fewer_consumer_faults() {
        assert_eq!(consumer_faults(Duration::from_secs(600)), 20);
        assert_eq!(consumer_faults(Duration::from_secs(120)), 4);
        assert_eq!(consumer_faults(Duration::from_secs(10)), 3);
    }
}
