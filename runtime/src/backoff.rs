//! Capped exponential backoff with jitter.
//!
//! Jitter matters here: 200 producer pods that lose the same broker at the same moment must not all
//! come back in the same millisecond.

use std::time::Duration;

/// The delays of one retry loop: `initial`, then doubling up to `max`, each drawn from [d/2, d].
#[derive(Debug, Clone)]
pub struct Backoff {
    /// First delay, and the one after [`reset`](Self::reset).
    initial: Duration,
    /// Ceiling of the doubling.
    max: Duration,
    /// The un-jittered delay the next call starts from.
    current: Duration,
    /// Delays handed out since the last reset: for log lines ("attempt 5").
    attempts: u32,
}

impl Backoff {
    /// A backoff starting at `initial` and never waiting longer than `max`.
    pub fn new(initial: Duration, max: Duration) -> Self {
        let initial = initial.max(Duration::from_millis(1));
        Self {
            initial,
            max: max.max(initial),
            current: initial,
            attempts: 0,
        }
    }

    /// The next delay to wait.
    pub fn next_delay(&mut self) -> Duration {
        let base = self.current;
        self.current = (self.current * 2).min(self.max);
        self.attempts = self.attempts.saturating_add(1);
        base.mul_f64(0.5 + fastrand::f64() / 2.0)
    }

    /// How many delays were handed out since the last success.
    pub fn attempts(&self) -> u32 {
        self.attempts
    }

    /// Back to the initial delay, after a success.
    pub fn reset(&mut self) {
        self.current = self.initial;
        self.attempts = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn doubles_up_to_the_cap_with_jitter() {
        let mut backoff = Backoff::new(Duration::from_millis(100), Duration::from_secs(1));
        let delays: Vec<_> = (0..8).map(|_| backoff.next_delay()).collect();
        assert!(delays[0] >= Duration::from_millis(50) && delays[0] <= Duration::from_millis(100));
        assert!(delays[1] >= Duration::from_millis(100) && delays[1] <= Duration::from_millis(200));
        for d in &delays[4..] {
            assert!(
                *d >= Duration::from_millis(500) && *d <= Duration::from_secs(1),
                "{d:?}"
            );
        }
        assert_eq!(backoff.attempts(), 8);
        backoff.reset();
        assert!(backoff.next_delay() <= Duration::from_millis(100));
        assert_eq!(backoff.attempts(), 1);
    }
}
