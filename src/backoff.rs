//! The one backoff policy of the service: HTTP retries, token requests,
//! failed polls and partition takeovers all wait by it.
//!
//! The ceiling doubles per attempt from `base` up to `max`; the wait is
//! drawn uniformly from the upper half of the ceiling ("equal jitter").
//! Jitter spreads the retries of many jobs that failed together (a provider
//! outage, a broker restart) instead of having them return in lock-step;
//! keeping the lower half out means a retry never comes "at once".

use std::time::Duration;

use rand::RngExt;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Backoff {
    /// The ceiling of the first wait.
    pub base: Duration,
    /// The largest ceiling.
    pub max: Duration,
}

impl Backoff {
    pub const fn new(base: Duration, max: Duration) -> Self {
        Self { base, max }
    }

    /// The upper bound of the `attempt`-th wait (1-based; 0 counts as 1):
    /// `min(max, base · 2^(attempt−1))`, saturating instead of overflowing.
    pub fn ceiling(&self, attempt: u32) -> Duration {
        let doublings = attempt.saturating_sub(1).min(31);
        self.base
            .checked_mul(1u32 << doublings)
            .unwrap_or(self.max)
            .min(self.max)
    }

    /// The wait before retry number `attempt`: uniform in
    /// `[ceiling / 2, ceiling]`.
    pub fn delay(&self, attempt: u32) -> Duration {
        let ceiling = self.ceiling(attempt);
        let nanos = u64::try_from(ceiling.as_nanos()).unwrap_or(u64::MAX);
        Duration::from_nanos(rand::rng().random_range(nanos / 2..=nanos))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ceilings_double_and_saturate() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        assert_eq!(b.ceiling(0), b.base);
        assert_eq!(b.ceiling(1), b.base);
        assert_eq!(b.ceiling(2), Duration::from_millis(200));
        assert_eq!(b.ceiling(6), Duration::from_millis(3200));
        assert_eq!(b.ceiling(7), b.max);
        assert_eq!(b.ceiling(u32::MAX), b.max);
        // Huge bases saturate at max instead of overflowing.
        let huge = Backoff::new(Duration::from_secs(u64::MAX / 2), b.max);
        assert_eq!(huge.ceiling(40), b.max);
    }

    #[test]
    fn delays_stay_in_the_upper_half_of_the_ceiling() {
        let b = Backoff::new(Duration::from_millis(100), Duration::from_secs(5));
        for attempt in [1, 2, 5, 40, u32::MAX] {
            for _ in 0..200 {
                let d = b.delay(attempt);
                let ceiling = b.ceiling(attempt);
                assert!(d <= ceiling && d >= ceiling / 2, "{attempt}: {d:?}");
            }
        }
    }
}
