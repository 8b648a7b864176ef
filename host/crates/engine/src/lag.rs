//! Commit-to-target lag of a change stream: a fixed-size histogram (memory
//! stays flat however long the stream runs) from which percentiles are read.

/// Lags are counted in buckets of 100 µs up to 10 s; longer ones share the
/// last bucket (the maximum is kept exactly).
const BUCKET_US: u64 = 100;
const BUCKETS: usize = 100_000;

#[derive(Debug, Clone)]
pub(crate) struct LagHistogram {
    counts: Vec<u32>,
    total: u64,
    max_us: u64,
}

impl Default for LagHistogram {
    fn default() -> Self {
        LagHistogram {
            counts: vec![0; BUCKETS],
            total: 0,
            max_us: 0,
        }
    }
}

impl LagHistogram {
    pub(crate) fn record(&mut self, lag_us: u64) {
        let bucket = usize::try_from(lag_us / BUCKET_US)
            .unwrap_or(BUCKETS - 1)
            .min(BUCKETS - 1);
        self.counts[bucket] = self.counts[bucket].saturating_add(1);
        self.total += 1;
        self.max_us = self.max_us.max(lag_us);
    }

    pub(crate) fn count(&self) -> u64 {
        self.total
    }

    /// The lag under which `fraction` of the recorded ones fall, in
    /// milliseconds (the upper edge of its bucket), or `None` when empty.
    pub(crate) fn percentile_ms(&self, fraction: f64) -> Option<f64> {
        if self.total == 0 {
            return None;
        }
        #[allow(
            clippy::cast_precision_loss,
            clippy::cast_possible_truncation,
            clippy::cast_sign_loss
        )]
        let rank = ((self.total as f64 * fraction).ceil() as u64).clamp(1, self.total);
        let mut seen = 0u64;
        for (bucket, &count) in self.counts.iter().enumerate() {
            seen += u64::from(count);
            if seen >= rank {
                if bucket == BUCKETS - 1 {
                    break;
                }
                let edge_us = (bucket as u64 + 1) * BUCKET_US;
                #[allow(clippy::cast_precision_loss)]
                return Some(edge_us.min(self.max_us.max(BUCKET_US)) as f64 / 1000.0);
            }
        }
        #[allow(clippy::cast_precision_loss)]
        Some(self.max_us as f64 / 1000.0)
    }

    pub(crate) fn max_ms(&self) -> Option<f64> {
        #[allow(clippy::cast_precision_loss)]
        (self.total > 0).then(|| self.max_us as f64 / 1000.0)
    }

    pub(crate) fn clear(&mut self) {
        if self.total > 0 {
            self.counts.iter_mut().for_each(|c| *c = 0);
        }
        self.total = 0;
        self.max_us = 0;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_of_known_lags() {
        let mut h = LagHistogram::default();
        assert_eq!(h.percentile_ms(0.5), None);
        for ms in 1..=100u64 {
            h.record(ms * 1000);
        }
        let p50 = h.percentile_ms(0.5).unwrap();
        let p99 = h.percentile_ms(0.99).unwrap();
        assert!((50.0..=50.1).contains(&p50), "{p50}");
        assert!((99.0..=99.1).contains(&p99), "{p99}");
        assert_eq!(h.max_ms(), Some(100.0));
        // Beyond the histogram's range: the maximum is still exact.
        h.record(60_000_000);
        assert_eq!(h.max_ms(), Some(60_000.0));
        assert_eq!(h.percentile_ms(1.0), Some(60_000.0));
        h.clear();
        assert_eq!(h.count(), 0);
    }
}
