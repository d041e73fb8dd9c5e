//! Exponential backoff with jitter, sans-IO: the caller passes the random draw in.

use std::time::Duration;

/// Backoff between attempts: `base * 2^failures`, capped at `max`, with ±20% jitter (as the
/// Java client does) so that many clients do not retry in step.
#[derive(Debug, Clone)]
pub struct Backoff {
    base: Duration,
    max: Duration,
    failures: u32,
}

/// Jitter as a fraction of the delay, either way.
const JITTER: f64 = 0.2;

impl Backoff {
    /// A backoff starting at `base` and growing to `max`.
    pub fn new(base: Duration, max: Duration) -> Self {
        Backoff {
            base,
            max: max.max(base),
            failures: 0,
        }
    }

    /// The delay before the next attempt, given a uniform draw `unit` in `[0, 1)`; counts one
    /// more failure.
    pub fn next_delay(&mut self, unit: f64) -> Duration {
        let exp = self
            .base
            .saturating_mul(1u32 << self.failures.min(20))
            .min(self.max);
        self.failures = self.failures.saturating_add(1);
        let factor = 1.0 + JITTER * (2.0 * unit.clamp(0.0, 1.0) - 1.0);
        exp.mul_f64(factor)
    }

    /// Failures since the last [`reset`](Self::reset).
    pub fn failures(&self) -> u32 {
        self.failures
    }

    /// Back to the first delay, after a success.
    pub fn reset(&mut self) {
        self.failures = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grows_caps_jitters_and_resets() {
        let ms = Duration::from_millis;
        let mut b = Backoff::new(ms(50), ms(1000));
        let mid: Vec<Duration> = (0..7).map(|_| b.next_delay(0.5)).collect();
        assert_eq!(
            mid,
            [
                ms(50),
                ms(100),
                ms(200),
                ms(400),
                ms(800),
                ms(1000),
                ms(1000)
            ]
        );
        assert_eq!(b.failures(), 7);
        b.reset();
        assert_eq!(b.next_delay(0.0), ms(40));
        assert_eq!(b.next_delay(1.0), ms(120));
        // Many failures never overflow.
        let mut b = Backoff::new(ms(50), ms(1000));
        for _ in 0..100 {
            assert!(b.next_delay(0.99) <= ms(1200));
        }
    }
}
