//! `[run] every`: a fixed interval between run starts, or a cron expression.

use std::time::Duration;

use chrono::{DateTime, Utc};
use croner::Cron;
use croner::parser::{CronParser, Seconds};

#[derive(Debug, Clone)]
pub enum Schedule {
    /// A run starts this long after the previous one started (or at once
    /// when the previous one took longer: runs never overlap).
    Every(Duration),
    /// A run starts at each time the expression matches (UTC) that is not
    /// taken by the previous run.
    Cron(Box<Cron>),
}

impl Schedule {
    /// `30s`, `5m`, `1h 30m`, or a cron expression of 5 or 6 fields.
    pub fn parse(text: &str) -> Result<Schedule, String> {
        let text = text.trim();
        if let Ok(every) = humantime::parse_duration(text) {
            if every.is_zero() {
                return Err("the interval must be longer than 0".to_string());
            }
            return Ok(Schedule::Every(every));
        }
        if text.split_whitespace().count() >= 5 {
            let parser = CronParser::builder().seconds(Seconds::Optional).build();
            return parser
                .parse(text)
                .map(|cron| Schedule::Cron(Box::new(cron)))
                .map_err(|e| format!("`{text}` is not a valid cron expression: {e}"));
        }
        Err(format!(
            "`{text}` is neither a duration (`30s`, `5m`, `1h`) nor a cron expression (`*/5 * * * *`)"
        ))
    }

    /// When the next run starts, given when the previous one started and
    /// the time now (after it finished).
    pub fn next_start(&self, previous_start: DateTime<Utc>, now: DateTime<Utc>) -> DateTime<Utc> {
        match self {
            Schedule::Every(every) => {
                let due = previous_start
                    + chrono::Duration::from_std(*every).unwrap_or(chrono::Duration::MAX);
                due.max(now)
            }
            Schedule::Cron(cron) => cron.find_next_occurrence(&now, false).unwrap_or(now),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(text: &str) -> DateTime<Utc> {
        DateTime::parse_from_rfc3339(text).unwrap().to_utc()
    }

    #[test]
    fn intervals_never_overlap_runs() {
        let s = Schedule::parse("5m").unwrap();
        let start = at("2026-01-01T00:00:00Z");
        assert_eq!(
            s.next_start(start, at("2026-01-01T00:01:00Z")),
            at("2026-01-01T00:05:00Z")
        );
        // The run took longer than the interval: the next starts at once.
        assert_eq!(
            s.next_start(start, at("2026-01-01T00:07:00Z")),
            at("2026-01-01T00:07:00Z")
        );
    }

    #[test]
    fn cron_expressions_with_or_without_seconds() {
        let s = Schedule::parse("*/15 * * * *").unwrap();
        assert_eq!(
            s.next_start(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:16:10Z")),
            at("2026-01-01T00:30:00Z")
        );
        let s = Schedule::parse("*/10 * * * * *").unwrap();
        assert_eq!(
            s.next_start(at("2026-01-01T00:00:00Z"), at("2026-01-01T00:00:01Z")),
            at("2026-01-01T00:00:10Z")
        );
    }

    #[test]
    fn nonsense_is_refused_with_both_forms_named() {
        let err = Schedule::parse("often").unwrap_err();
        assert!(err.contains("duration") && err.contains("cron"), "{err}");
        assert!(Schedule::parse("0s").is_err());
        assert!(Schedule::parse("99 * * * *").is_err());
    }
}
