//! What the host grants a plugin: logging, tagged with plugin and table.
//! A plugin's log is bounded: each line is cut to `MAX_LOG_BYTES`, and a
//! plugin (all its instances together) may log `LOG_LINES_PER_SECOND`
//! lines a second with bursts of `LOG_BURST`; lines over that are counted,
//! and the count is logged every `DROPPED_REPORT_EVERY` and at the end.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::bindings::{Level, dmp};
use super::guest_text::{MAX_LOG_BYTES, capped};
use super::limiter::SandboxLimiter;

/// Lines a second a plugin may log, on average.
const LOG_LINES_PER_SECOND: f64 = 100.0;
/// Lines a plugin may log at once after a quiet spell.
const LOG_BURST: f64 = 200.0;
/// How often dropped lines are reported while a plugin goes on logging.
const DROPPED_REPORT_EVERY: Duration = Duration::from_secs(10);

/// The data of one plugin instance's store.
pub(crate) struct HostState {
    pub limiter: SandboxLimiter,
    pub plugin: String,
    pub table: String,
    /// The log budget of the plugin, shared by its instances.
    pub log: Arc<Mutex<LogBudget>>,
    /// The last error line the plugin logged (a panic message).
    pub last_error: Option<String>,
}

/// A token bucket of log lines, one per plugin.
#[derive(Debug)]
pub(crate) struct LogBudget {
    plugin: String,
    tokens: f64,
    refilled: Instant,
    /// Lines dropped since the last report.
    dropped: u64,
    reported: Instant,
}

/// What to do with one log line.
#[derive(Debug, PartialEq, Eq)]
enum Verdict {
    Drop,
    /// Log it, after reporting this many dropped lines first (if any).
    Log {
        dropped_before: u64,
    },
}

impl LogBudget {
    pub(crate) fn new(plugin: String, now: Instant) -> Self {
        LogBudget {
            plugin,
            tokens: LOG_BURST,
            refilled: now,
            dropped: 0,
            reported: now,
        }
    }

    fn take(&mut self, now: Instant) -> Verdict {
        let elapsed = now.saturating_duration_since(self.refilled).as_secs_f64();
        self.tokens = (self.tokens + elapsed * LOG_LINES_PER_SECOND).min(LOG_BURST);
        self.refilled = now;
        if self.tokens < 1.0 {
            self.dropped += 1;
            return Verdict::Drop;
        }
        self.tokens -= 1.0;
        let due = now.saturating_duration_since(self.reported) >= DROPPED_REPORT_EVERY;
        if self.dropped > 0 && due {
            self.reported = now;
            return Verdict::Log {
                dropped_before: std::mem::take(&mut self.dropped),
            };
        }
        Verdict::Log { dropped_before: 0 }
    }
}

fn report_dropped(plugin: &str, dropped: u64) {
    tracing::warn!(
        plugin,
        dropped,
        per_second = LOG_LINES_PER_SECOND,
        "plugin log lines dropped (over its rate limit)"
    );
}

impl Drop for LogBudget {
    fn drop(&mut self) {
        if self.dropped > 0 {
            report_dropped(&self.plugin, self.dropped);
        }
    }
}

impl dmp::transform::types::Host for HostState {}

impl dmp::transform::host::Host for HostState {
    fn log(&mut self, level: Level, message: String) {
        let verdict = match self.log.lock() {
            Ok(mut budget) => budget.take(Instant::now()),
            // A panic while holding the budget: log nothing more.
            Err(_) => Verdict::Drop,
        };
        // Capped once, before anything keeps or logs it.
        let message = capped(message, MAX_LOG_BYTES);
        if matches!(level, Level::Error) {
            self.last_error = Some(message.clone());
        }
        let Verdict::Log { dropped_before } = verdict else {
            return;
        };
        let (plugin, table) = (self.plugin.as_str(), self.table.as_str());
        if dropped_before > 0 {
            report_dropped(plugin, dropped_before);
        }
        match level {
            Level::Trace => tracing::trace!(plugin, table, "{message}"),
            Level::Debug => tracing::debug!(plugin, table, "{message}"),
            Level::Info => tracing::info!(plugin, table, "{message}"),
            Level::Warn => tracing::warn!(plugin, table, "{message}"),
            Level::Error => tracing::error!(plugin, table, "{message}"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_flood_is_cut_to_the_burst_then_the_rate_and_counted() {
        let start = Instant::now();
        let mut budget = LogBudget::new("p".into(), start);
        let logged = (0..1000)
            .filter(|_| budget.take(start) != Verdict::Drop)
            .count();
        assert_eq!(logged, LOG_BURST as usize);
        assert_eq!(budget.dropped, 800);
        // A second later, a second's worth more.
        let later = start + Duration::from_secs(1);
        let logged = (0..1000)
            .filter(|_| budget.take(later) != Verdict::Drop)
            .count();
        assert_eq!(logged, LOG_LINES_PER_SECOND as usize);
        // After the report period, the next line carries the count.
        let report = start + DROPPED_REPORT_EVERY + Duration::from_secs(1);
        assert_eq!(
            budget.take(report),
            Verdict::Log {
                dropped_before: 800 + 900
            }
        );
        assert_eq!(budget.dropped, 0);
    }
}
