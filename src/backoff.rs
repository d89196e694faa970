//! [`Backoff`]: how long to wait before retrying something that failed — the AMI
//! reconnect and webhook delivery.
//!
//! Owns the schedule: exponential from a minimum to a maximum, each delay shortened by
//! a random jitter so many daemons (or many deliveries) do not retry in step, and a
//! reset after a success. It never sleeps itself and holds no clock: the caller waits,
//! and passes the random source, so the schedule is tested without time.

use std::time::Duration;

use rand::Rng;

/// Retry delays: `min`, doubling per failure up to `max`, each one scaled by a random
/// factor in `1 - jitter ..= 1` (by default 50–100 %).
#[derive(Debug, Clone)]
pub struct Backoff {
    min: Duration,
    max: Duration,
    /// The share of a delay that jitter may take away, in `0.0..=1.0`.
    jitter: f64,
    next: Duration,
}

impl Backoff {
    /// Jitter of 50 %: each delay is between half and all of its base.
    pub const DEFAULT_JITTER: f64 = 0.5;

    /// From `min` up to `max` (raised to `min` if smaller), with the default jitter.
    pub fn new(min: Duration, max: Duration) -> Backoff {
        Backoff {
            min,
            max: max.max(min),
            jitter: Backoff::DEFAULT_JITTER,
            next: min,
        }
    }

    /// The same schedule with `jitter` (clamped to `0.0..=1.0`; `0.0`, or not a
    /// number, for none).
    pub fn with_jitter(self, jitter: f64) -> Backoff {
        let jitter = if jitter > 0.0 { jitter.min(1.0) } else { 0.0 };
        Backoff { jitter, ..self }
    }

    /// The delay before the next attempt; grows the one after.
    pub fn next_delay(&mut self, rng: &mut impl Rng) -> Duration {
        let base = self.next;
        self.next = (self.next * 2).min(self.max);
        base.mul_f64(rng.random_range((1.0 - self.jitter)..=1.0))
    }

    /// The delay after `failures` failures in a row (1: `min`, 2: twice that, … up to
    /// `max`), with jitter; `0` is read as 1. For a schedule kept elsewhere (the
    /// webhook outbox stores each notification's attempt count, not a `Backoff`): it
    /// neither reads nor grows the delay [`Backoff::next_delay`] keeps.
    pub fn after_failures(&self, failures: u32, rng: &mut impl Rng) -> Duration {
        let doublings = failures.saturating_sub(1);
        let base = 1u32
            .checked_shl(doublings)
            .and_then(|factor| self.min.checked_mul(factor))
            .map_or(self.max, |d| d.min(self.max));
        base.mul_f64(rng.random_range((1.0 - self.jitter)..=1.0))
    }

    /// After a success: start again from `min`.
    pub fn reset(&mut self) {
        self.next = self.min;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn ms(n: u64) -> Duration {
        Duration::from_millis(n)
    }

    #[test]
    fn backoff_doubles_up_to_the_maximum_with_jitter_and_resets_after_success() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(7);
        let mut b = Backoff::new(ms(100), ms(1000));
        let bases = [100u64, 200, 400, 800, 1000, 1000];
        for base in bases {
            let d = b.next_delay(&mut rng);
            assert!(d >= ms(base / 2), "{d:?} < half of {base}");
            assert!(d <= ms(base), "{d:?} > {base}");
        }
        b.reset();
        assert!(b.next_delay(&mut rng) <= ms(100));
        assert!(
            b.next_delay(&mut rng) > ms(100),
            "grows again after a reset"
        );
    }

    #[test]
    fn without_jitter_the_delays_are_exactly_the_doubling_schedule() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let mut b = Backoff::new(ms(100), ms(1000)).with_jitter(0.0);
        let got: Vec<Duration> = (0..6).map(|_| b.next_delay(&mut rng)).collect();
        assert_eq!(got, [100, 200, 400, 800, 1000, 1000].map(ms));
    }

    #[test]
    fn jitter_spreads_the_delays_over_the_whole_allowed_range() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        // 200 first delays of a one-second schedule with `jitter` (the default if None).
        let mut first_delays = |jitter: Option<f64>| -> Vec<Duration> {
            (0..200)
                .map(|_| {
                    let b = Backoff::new(ms(1000), ms(1000));
                    jitter
                        .map_or(b.clone(), |j| b.with_jitter(j))
                        .next_delay(&mut rng)
                })
                .collect()
        };
        let half = first_delays(None);
        assert!(half.iter().all(|d| *d >= ms(500) && *d <= ms(1000)));
        assert!(half.iter().any(|d| *d < ms(600)), "some near half");
        assert!(half.iter().any(|d| *d > ms(900)), "some near whole");
        let quarter = first_delays(Some(0.25));
        assert!(quarter.iter().all(|d| *d >= ms(750) && *d <= ms(1000)));
        assert!(quarter.iter().any(|d| *d < ms(800)), "some near 75 %");
        let full = first_delays(Some(7.0));
        assert!(full.iter().all(|d| *d <= ms(1000)), "clamped to 100 %");
        assert!(full.iter().any(|d| *d < ms(200)), "some near nothing");
        let mut none = Backoff::new(ms(1000), ms(1000)).with_jitter(f64::NAN);
        assert_eq!(none.next_delay(&mut rng), ms(1000), "NaN is no jitter");
    }

    #[test]
    fn the_delay_after_n_failures_is_the_nth_step_of_the_schedule() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(9);
        let b = Backoff::new(ms(1000), ms(600_000)).with_jitter(0.0);
        let got: Vec<u64> = [0, 1, 2, 3, 4, 10, 11, 32, 33, u32::MAX]
            .map(|n| b.after_failures(n, &mut rng).as_millis() as u64)
            .to_vec();
        assert_eq!(
            got,
            [
                1000, 1000, 2000, 4000, 8000, 512_000, 600_000, 600_000, 600_000, 600_000
            ]
        );
        let mut stepped = b.clone();
        for n in 1..=12 {
            assert_eq!(b.after_failures(n, &mut rng), stepped.next_delay(&mut rng));
        }
        let jittered = Backoff::new(ms(1000), ms(600_000)).with_jitter(0.5);
        for _ in 0..50 {
            let d = jittered.after_failures(3, &mut rng);
            assert!(d >= ms(2000) && d <= ms(4000), "{d:?}");
        }
    }

    #[test]
    fn a_maximum_below_the_minimum_is_raised_to_it() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let mut b = Backoff::new(ms(400), ms(100)).with_jitter(0.0);
        assert_eq!(b.next_delay(&mut rng), ms(400));
        assert_eq!(b.next_delay(&mut rng), ms(400));
    }
}
