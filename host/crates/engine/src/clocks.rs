//! The clocks of a two-way sync: its two databases' and this process's,
//! compared at start and every minute. Commit times decide which write is
//! the last one, so clocks that drift apart make wrong winners; a warning
//! names the side and by how much, above `[sync] max_clock_skew`.

use std::sync::Arc;
use std::time::Duration;

use tracing::{info, warn};

use crate::Shutdown;
use crate::error::{Error, Result};
use dmp_contract::Source;

/// How often the clocks are compared again.
const EVERY: Duration = Duration::from_secs(60);

/// A database clock as read from here: how far ahead of this process's it
/// is, and how unsure that is (half the query's round trip).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Reading {
    pub(crate) ahead_us: i64,
    pub(crate) unsure_us: i64,
}

impl Reading {
    /// From the local clock before and after the query, and the server's
    /// answer: the server read its clock somewhere in between.
    pub(crate) fn new(before_us: i64, server_us: i64, after_us: i64) -> Self {
        Reading {
            ahead_us: server_us - before_us.midpoint(after_us),
            unsure_us: (after_us - before_us) / 2,
        }
    }
}

/// What is wrong with side A's and side B's clocks (`None`: no clock),
/// beyond `max`: one sentence each.
pub(crate) fn judge(a: Option<Reading>, b: Option<Reading>, max: Duration) -> Vec<String> {
    let max = i64::try_from(max.as_micros()).unwrap_or(i64::MAX);
    let beyond = |apart: i64, unsure: i64| apart.abs().saturating_sub(unsure) > max;
    let mut said = Vec::new();
    for (side, reading) in [("A", a), ("B", b)] {
        if let Some(r) = reading
            && beyond(r.ahead_us, r.unsure_us)
        {
            said.push(format!(
                "side {side}'s clock is {} {} DMP's",
                micros(r.ahead_us.unsigned_abs()),
                if r.ahead_us > 0 { "ahead of" } else { "behind" }
            ));
        }
    }
    if let (Some(a), Some(b)) = (a, b) {
        let apart = a.ahead_us - b.ahead_us;
        if beyond(apart, a.unsure_us + b.unsure_us) {
            said.push(format!(
                "side A's clock is {} {} side B's",
                micros(apart.unsigned_abs()),
                if apart > 0 { "ahead of" } else { "behind" }
            ));
        }
    }
    said
}

fn micros(us: u64) -> String {
    humantime::format_duration(Duration::from_millis(us / 1000)).to_string()
}

async fn read(source: &dyn Source) -> Result<Option<Reading>> {
    let before = chrono::Utc::now().timestamp_micros();
    let server = source.server_time().await?;
    let after = chrono::Utc::now().timestamp_micros();
    Ok(server.map(|server| Reading::new(before, server, after)))
}

/// `last_writer_wins` compares times the two sides wrote: refused when the
/// clocks are more than ten times `max` apart at start (a warning below
/// that). A clock that cannot be read does not refuse it.
pub(crate) async fn refuse_far_apart(
    a: &dyn Source,
    b: &dyn Source,
    max: Duration,
    by_time: bool,
) -> Result<()> {
    if !by_time {
        return Ok(());
    }
    let (Ok(on_a), Ok(on_b)) = tokio::join!(read(a), read(b)) else {
        return Ok(());
    };
    let far = judge(on_a, on_b, max.saturating_mul(10));
    match far.first() {
        Some(sentence) => Err(Error::Config(format!(
            "{sentence}, over ten times [sync] max_clock_skew ({}): last_writer_wins would pick \
             winners by the clocks' error; synchronize the clocks (NTP) or choose another policy",
            humantime::format_duration(max)
        ))),
        None => Ok(()),
    }
}

/// Compares the clocks of sides `a` and `b` now and every minute until
/// `stop` fires, warning above `max`. A clock that cannot be read is
/// said once a round and does not stop the sync.
pub(crate) async fn watch(a: Arc<dyn Source>, b: Arc<dyn Source>, max: Duration, stop: Shutdown) {
    let mut first = true;
    loop {
        match tokio::try_join!(read(&*a), read(&*b)) {
            Ok((on_a, on_b)) => {
                let said = judge(on_a, on_b, max);
                for sentence in &said {
                    warn!(
                        max_clock_skew = %humantime::format_duration(max),
                        "{sentence}: which write is the last one may be misjudged; synchronize the clocks (NTP)"
                    );
                }
                if first && said.is_empty() {
                    info!(
                        a_ahead_us = on_a.map(|r| r.ahead_us),
                        b_ahead_us = on_b.map(|r| r.ahead_us),
                        "the clocks of both sides agree with DMP's"
                    );
                }
            }
            Err(e) => warn!(error = %e.report(), "cannot compare the sides' clocks"),
        }
        first = false;
        tokio::select! {
            () = stop.wait() => return,
            () = tokio::time::sleep(EVERY) => {}
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_clock_is_judged_beyond_what_the_round_trip_leaves_unsure() {
        // Read between 1,000 and 3,000 µs local; the server said 2,500.
        let r = Reading::new(1_000, 2_500, 3_000);
        assert_eq!(
            r,
            Reading {
                ahead_us: 500,
                unsure_us: 1_000
            }
        );
        let second = Duration::from_secs(1);
        let ahead = Reading {
            ahead_us: 1_800_000,
            unsure_us: 500,
        };
        let behind = Reading {
            ahead_us: -300_000,
            unsure_us: 500,
        };
        let said = judge(Some(ahead), Some(behind), second);
        assert_eq!(said.len(), 2, "{said:?}");
        assert!(
            said[0].starts_with("side A's clock is 1s 800ms ahead of DMP's"),
            "{said:?}"
        );
        assert!(
            said[1].starts_with("side A's clock is 2s 100ms ahead of side B's"),
            "{said:?}"
        );
        // Within the round trip's doubt: nothing said.
        let unsure = Reading {
            ahead_us: 1_200_000,
            unsure_us: 300_000,
        };
        assert!(judge(Some(unsure), None, second).is_empty());
        assert!(judge(None, None, second).is_empty());
        let b_late = judge(
            None,
            Some(Reading {
                ahead_us: -2_000_000,
                unsure_us: 0,
            }),
            second,
        );
        assert_eq!(b_late, ["side B's clock is 2s behind DMP's"]);
    }
}
