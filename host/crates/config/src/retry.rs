//! `[run] retries` and `retry_max_delay`: how transient failures are
//! retried (the engine's `retry` module does the waiting).

use std::time::Duration;

use crate::error::{Error, ErrorKind};

/// `[run] retries` and `retry_max_delay`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RetryPolicy {
    /// Tries after the first one; 0 turns retrying off.
    pub attempts: u32,
    /// The first pause.
    pub base: Duration,
    /// No pause is longer.
    pub max_delay: Duration,
}

impl Default for RetryPolicy {
    fn default() -> Self {
        RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(200),
            max_delay: Duration::from_secs(30),
        }
    }
}

impl RetryPolicy {
    /// The pause before try `attempt` (1 for the first retry): the capped
    /// exponential delay, of which a random half is kept ("equal jitter").
    pub fn delay(&self, attempt: u32, jitter: f64) -> Duration {
        let exponent = attempt.saturating_sub(1).min(20);
        let full = self
            .base
            .saturating_mul(1u32 << exponent)
            .min(self.max_delay);
        full.mul_f64(0.5 + jitter.clamp(0.0, 1.0) / 2.0)
    }

    /// Whether `error` after `attempt` earlier retries gets another try.
    pub fn allows(&self, error: &Error, attempt: u32) -> bool {
        error.kind() == ErrorKind::Transient && attempt < self.attempts
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap_with_half_kept_at_random() {
        let policy = RetryPolicy {
            attempts: 8,
            base: Duration::from_millis(100),
            max_delay: Duration::from_secs(1),
        };
        assert_eq!(policy.delay(1, 1.0), Duration::from_millis(100));
        assert_eq!(policy.delay(1, 0.0), Duration::from_millis(50));
        assert_eq!(policy.delay(3, 1.0), Duration::from_millis(400));
        assert_eq!(policy.delay(9, 1.0), Duration::from_secs(1));
        assert_eq!(policy.delay(60, 0.0), Duration::from_millis(500));
    }

    #[test]
    fn only_transient_errors_are_retried_and_only_so_often() {
        let policy = RetryPolicy::default();
        let timed_out = std::io::Error::from(std::io::ErrorKind::TimedOut);
        let lost = Error::driver(
            "writing".into(),
            crate::error::DriverError::new(
                ErrorKind::Transient,
                "pool timed out".into(),
                timed_out,
            ),
        );
        assert!(policy.allows(&lost, 0));
        assert!(!policy.allows(&lost, 8));
        assert!(!policy.allows(&Error::Data("bad row".into()), 0));
        assert!(!policy.allows(&Error::Interrupted, 0));
    }
}
