//! Transient failures — a lost connection, a server restarting, a
//! deadlock, a serialization failure, too many connections — are retried
//! after a pause that doubles each time up to a cap, with jitter so that
//! parallel chunks do not come back in step. A retry continues from the
//! checkpoint the target holds (never from what dmp believes it wrote: a
//! commit whose answer was lost may or may not have happened), so nothing
//! is lost or doubled. Permanent errors are not retried.

use std::future::Future;

use tracing::warn;

use super::shutdown::Shutdown;
use crate::error::{Error, Result};
use dmp_config::RetryPolicy;

/// Logs why `what` is retried and waits before try `attempt`; returns
/// `Interrupted` at once if the run is stopped meanwhile.
pub(crate) async fn pause(
    policy: &RetryPolicy,
    attempt: u32,
    error: &Error,
    what: &str,
    stop: &Shutdown,
) -> Result<()> {
    let delay = policy.delay(attempt, jitter());
    // `event = "retry"`: what a service counts (its retry metric).
    warn!(
        event = "retry",
        what,
        attempt,
        of = policy.attempts,
        delay_ms = u64::try_from(delay.as_millis()).unwrap_or(u64::MAX),
        reason = %error.report(),
        "transient failure; retrying from the target's checkpoint"
    );
    tokio::select! {
        () = stop.wait() => Err(Error::Interrupted),
        () = tokio::time::sleep(delay) => Ok(()),
    }
}

/// How long work must have run before its failure counts as a new
/// incident with a fresh budget of retries.
const HEALTHY: std::time::Duration = std::time::Duration::from_secs(60);

/// Runs `run(from)` until it succeeds. After a transient failure it waits
/// (see [`pause`]) and asks `recover` where to continue — the checkpoint
/// the target holds — then runs again from there.
pub(crate) async fn retrying<P, T, Run, Ran, Recover, Recovered>(
    policy: &RetryPolicy,
    stop: &Shutdown,
    what: &str,
    mut from: P,
    mut run: Run,
    mut recover: Recover,
) -> Result<T>
where
    Run: FnMut(P) -> Ran,
    Ran: Future<Output = Result<T>>,
    Recover: FnMut() -> Recovered,
    Recovered: Future<Output = Result<P>>,
{
    let mut attempt = 0;
    loop {
        let started = std::time::Instant::now();
        let mut error = match run(from).await {
            Ok(value) => return Ok(value),
            Err(e) => e,
        };
        // A run that went well for a while is a new incident: a stream
        // that runs for weeks gets its retries per outage, not in total.
        if started.elapsed() >= HEALTHY {
            attempt = 0;
        }
        from = loop {
            if !policy.allows(&error, attempt) {
                return Err(error);
            }
            attempt += 1;
            pause(policy, attempt, &error, what, stop).await?;
            match recover().await {
                Ok(from) => break from,
                Err(e) => error = e,
            }
        };
    }
}

/// Runs `step` until it succeeds, retrying transient failures like a
/// chunk's. Only for steps that may simply run again from the start, such
/// as preparing the target (one transaction, or statements that converge).
pub(crate) async fn retrying_step<T, Step, Stepped>(
    policy: &RetryPolicy,
    stop: &Shutdown,
    what: &str,
    mut step: Step,
) -> Result<T>
where
    Step: FnMut() -> Stepped,
    Stepped: Future<Output = Result<T>>,
{
    retrying(policy, stop, what, (), |()| step(), || async { Ok(()) }).await
}

/// A number in [0, 1) that differs between calls and processes; jitter
/// needs no better randomness.
fn jitter() -> f64 {
    use std::hash::{BuildHasher, Hasher};
    let mut hasher = std::collections::hash_map::RandomState::new().build_hasher();
    hasher.write_u128(
        std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_nanos()),
    );
    #[allow(clippy::cast_precision_loss)]
    let unit = (hasher.finish() >> 11) as f64 / (1u64 << 53) as f64;
    unit
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn jitter_stays_in_the_unit_interval() {
        for _ in 0..100 {
            let j = jitter();
            assert!((0.0..1.0).contains(&j), "{j}");
        }
    }
}
