//! What follows an attempt: delivered on a 2xx; otherwise another attempt after the
//! backoff of its failures so far (1 s doubling to 10 min by default), or given up once
//! the notification is older than the give-up window (24 h). Pure: the time and the
//! random source are parameters.

use std::time::Duration;

use chrono::{DateTime, Utc};
use rand::Rng;

use super::model::{Outcome, Pending, Step};
use crate::backoff::Backoff;

/// The retry schedule. Plain values; `OutboxSettings` carries them.
#[derive(Debug, Clone, PartialEq)]
pub struct RetryPolicy {
    /// The delay after the first failure; each further failure doubles it.
    pub backoff_min: Duration,
    /// The longest delay.
    pub backoff_max: Duration,
    /// The share of a delay that jitter may take away (`backoff::Backoff`), so that the
    /// notifications of many consultations that failed together (a receiver's outage)
    /// do not all come back in the same instant.
    pub jitter: f64,
    /// Counted from the notification's creation: no attempt is scheduled past it, and a
    /// failure at or past it gives up.
    pub give_up_after: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            backoff_min: Duration::from_secs(1),
            backoff_max: Duration::from_secs(600),
            jitter: 0.1,
            give_up_after: Duration::from_secs(24 * 3600),
        }
    }
}

/// The step after `pending`'s attempt ended with `outcome` at `now`.
///
/// A failure before the window's end is retried after the backoff of its failures so
/// far (this one included), but never later than the window's end: the last attempt is
/// made at that moment, and its failure gives up.
pub fn after_attempt(
    pending: &Pending,
    outcome: &Outcome,
    now: DateTime<Utc>,
    policy: &RetryPolicy,
    rng: &mut impl Rng,
) -> Step {
    if outcome.is_delivered() {
        return Step::Delivered;
    }
    let window = chrono::Duration::from_std(policy.give_up_after).unwrap_or(chrono::Duration::MAX);
    let deadline = pending
        .created_at
        .checked_add_signed(window)
        .unwrap_or(DateTime::<Utc>::MAX_UTC);
    if now >= deadline {
        return Step::GiveUp;
    }
    let delay = Backoff::new(policy.backoff_min, policy.backoff_max)
        .with_jitter(policy.jitter)
        .after_failures(pending.attempts.saturating_add(1), rng);
    let at = chrono::Duration::from_std(delay)
        .ok()
        .and_then(|d| now.checked_add_signed(d))
        .map_or(deadline, |at| at.min(deadline));
    Step::RetryAt(at)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;

    fn at(s: &str) -> DateTime<Utc> {
        crate::timefmt::parse_rfc3339(s).unwrap()
    }

    fn pending(attempts: u32) -> Pending {
        Pending {
            id: 1,
            event_id: "e".into(),
            consultation_id: 42,
            url: "http://crm.example/hook".into(),
            status: "CallingDoctor".into(),
            changed_at: at("2030-01-01T09:00:00Z"),
            created_at: at("2030-01-01T09:00:00Z"),
            attempts,
        }
    }

    fn exact() -> RetryPolicy {
        RetryPolicy {
            jitter: 0.0,
            ..RetryPolicy::default()
        }
    }

    #[test]
    fn every_2xx_delivers_and_nothing_else_does() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(1);
        let now = at("2030-01-01T09:00:01Z");
        for status in [200, 201, 204, 299] {
            let step = after_attempt(
                &pending(0),
                &Outcome::Answered(status),
                now,
                &exact(),
                &mut rng,
            );
            assert_eq!(step, Step::Delivered, "{status}");
        }
        for outcome in [
            Outcome::Answered(199),
            Outcome::Answered(300),
            Outcome::Answered(302),
            Outcome::Answered(404),
            Outcome::Answered(500),
            Outcome::Failed("connection refused".into()),
        ] {
            let step = after_attempt(&pending(0), &outcome, now, &exact(), &mut rng);
            assert!(matches!(step, Step::RetryAt(_)), "{outcome:?}: {step:?}");
        }
    }

    #[test]
    fn failures_are_retried_after_one_two_four_seconds_doubling_to_ten_minutes() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(2);
        let now = at("2030-01-01T10:00:00Z");
        let delays: Vec<i64> = (0..14)
            .map(|before| {
                match after_attempt(
                    &pending(before),
                    &Outcome::Answered(500),
                    now,
                    &exact(),
                    &mut rng,
                ) {
                    Step::RetryAt(t) => (t - now).num_seconds(),
                    other => panic!("{other:?}"),
                }
            })
            .collect();
        assert_eq!(
            delays,
            [1, 2, 4, 8, 16, 32, 64, 128, 256, 512, 600, 600, 600, 600]
        );
    }

    #[test]
    fn jitter_only_shortens_a_delay_and_by_at_most_its_share() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(3);
        let now = at("2030-01-01T10:00:00Z");
        let policy = RetryPolicy::default();
        let mut seen = std::collections::BTreeSet::new();
        for _ in 0..100 {
            let Step::RetryAt(t) =
                after_attempt(&pending(3), &Outcome::Answered(503), now, &policy, &mut rng)
            else {
                panic!("retried");
            };
            let ms = (t - now).num_milliseconds();
            assert!((7200..=8000).contains(&ms), "{ms}");
            seen.insert(ms / 100);
        }
        assert!(seen.len() > 3, "spread: {seen:?}");
    }

    #[test]
    fn the_last_retry_is_at_the_windows_end_and_a_failure_from_then_on_gives_up() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(4);
        let p = pending(40);
        let end = at("2030-01-02T09:00:00Z");
        let five_to = at("2030-01-02T08:55:00Z");
        assert_eq!(
            after_attempt(&p, &Outcome::Answered(500), five_to, &exact(), &mut rng),
            Step::RetryAt(end),
            "ten minutes would pass the window: the retry is at its end"
        );
        let long_before = at("2030-01-02T08:40:00Z");
        assert_eq!(
            after_attempt(&p, &Outcome::Answered(500), long_before, &exact(), &mut rng),
            Step::RetryAt(at("2030-01-02T08:50:00Z"))
        );
        for now in [
            end,
            at("2030-01-02T09:00:00.000001Z"),
            at("2030-01-03T00:00:00Z"),
        ] {
            assert_eq!(
                after_attempt(
                    &p,
                    &Outcome::Failed("timeout".into()),
                    now,
                    &exact(),
                    &mut rng
                ),
                Step::GiveUp,
                "{now}"
            );
        }
        assert_eq!(
            after_attempt(&p, &Outcome::Answered(204), end, &exact(), &mut rng),
            Step::Delivered,
            "a success is a success, however late"
        );
    }

    #[test]
    fn a_window_of_a_few_milliseconds_and_a_huge_one_are_both_read() {
        let mut rng = rand::rngs::StdRng::seed_from_u64(5);
        let p = pending(0);
        let short = RetryPolicy {
            give_up_after: Duration::from_millis(5),
            ..exact()
        };
        assert_eq!(
            after_attempt(
                &p,
                &Outcome::Answered(500),
                at("2030-01-01T09:00:00.001Z"),
                &short,
                &mut rng
            ),
            Step::RetryAt(at("2030-01-01T09:00:00.005Z"))
        );
        let endless = RetryPolicy {
            give_up_after: Duration::MAX,
            ..exact()
        };
        assert_eq!(
            after_attempt(
                &p,
                &Outcome::Answered(500),
                at("2030-01-01T09:00:00Z"),
                &endless,
                &mut rng
            ),
            Step::RetryAt(at("2030-01-01T09:00:01Z"))
        );
    }
}
