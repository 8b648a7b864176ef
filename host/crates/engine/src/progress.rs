//! Live progress counters the engine updates and a display reads; the
//! engine does not know whether a terminal, a log or an API shows them.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use dmp_model::TablePhase;

#[derive(Debug)]
pub struct TableProgress {
    pub name: String,
    total: AtomicU64,
    done: AtomicU64,
    finished: AtomicBool,
    phase: Mutex<TablePhase>,
    /// Batches committed, source bytes read (approximate where the source
    /// has no size of its own), rows dead-lettered, and nanoseconds spent
    /// in transform plugins: for metrics.
    batches: AtomicU64,
    bytes: AtomicU64,
    rejected: AtomicU64,
    plugin_nanos: AtomicU64,
}

impl TableProgress {
    /// Where the table stands.
    pub fn phase(&self) -> TablePhase {
        self.phase
            .lock()
            .map_or(TablePhase::Planned, |phase| phase.clone())
    }

    /// Moves the table to `phase`; false when it was there already.
    pub(crate) fn enter(&self, phase: TablePhase) -> bool {
        match self.phase.lock() {
            Ok(mut current) if *current != phase => {
                *current = phase;
                true
            }
            _ => false,
        }
    }

    /// Rows expected (an estimate until the table is finished).
    pub fn total(&self) -> u64 {
        self.total.load(Ordering::Relaxed)
    }

    /// Rows read and handled (written or refused), including earlier runs.
    pub fn done(&self) -> u64 {
        self.done.load(Ordering::Relaxed)
    }

    pub fn is_finished(&self) -> bool {
        self.finished.load(Ordering::Relaxed)
    }

    pub(crate) fn add(&self, rows: u64) {
        self.done.fetch_add(rows, Ordering::Relaxed);
    }

    /// A committed batch of `bytes` source bytes with `rejected` rows
    /// refused.
    pub(crate) fn add_batch(&self, bytes: u64, rejected: u64) {
        self.batches.fetch_add(1, Ordering::Relaxed);
        self.bytes.fetch_add(bytes, Ordering::Relaxed);
        self.rejected.fetch_add(rejected, Ordering::Relaxed);
    }

    pub(crate) fn add_plugin_time(&self, elapsed: std::time::Duration) {
        let nanos = u64::try_from(elapsed.as_nanos()).unwrap_or(u64::MAX);
        self.plugin_nanos.fetch_add(nanos, Ordering::Relaxed);
    }

    /// Batches committed in this run.
    pub fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Source bytes read in this run.
    pub fn bytes(&self) -> u64 {
        self.bytes.load(Ordering::Relaxed)
    }

    /// Rows dead-lettered (or skipped) in this run.
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// Time spent in transform plugins in this run.
    pub fn plugin_time(&self) -> std::time::Duration {
        std::time::Duration::from_nanos(self.plugin_nanos.load(Ordering::Relaxed))
    }

    /// Shows what workers elsewhere reported for the table (a run shared
    /// over a cluster): `done` rows and `rejected` ones, in `phase`.
    pub fn mirror(&self, done: u64, rejected: u64, phase: TablePhase) {
        self.done.store(done, Ordering::Relaxed);
        self.rejected.store(rejected, Ordering::Relaxed);
        if phase == TablePhase::Done {
            self.finish();
        }
        self.enter(phase);
    }

    pub(crate) fn finish(&self) {
        // Estimates are estimates: the finished total is what was read.
        self.total.store(self.done(), Ordering::Relaxed);
        self.finished.store(true, Ordering::Relaxed);
    }
}

/// Counters of a change stream (cdc runs).
#[derive(Debug, Default)]
pub struct StreamProgress {
    changes: AtomicU64,
    transactions: AtomicU64,
    /// Source commit → target commit of the last applied transaction
    /// (0 once the stream is idle, caught up with its source).
    lag_ms: AtomicU64,
    /// Source commit time (µs since the epoch) of the oldest transaction
    /// being applied, 0 when none is: a stuck apply shows its lag growing.
    applying_since_us: std::sync::atomic::AtomicI64,
    active: AtomicBool,
}

impl StreamProgress {
    /// Changes applied (or refused) since the stream started.
    pub fn changes(&self) -> u64 {
        self.changes.load(Ordering::Relaxed)
    }

    pub fn transactions(&self) -> u64 {
        self.transactions.load(Ordering::Relaxed)
    }

    /// The stream's lag now: the last applied transaction's, or, while a
    /// batch is being applied, how old its oldest transaction is if more.
    pub fn lag_ms(&self) -> u64 {
        let last = self.lag_ms.load(Ordering::Relaxed);
        match self.applying_since_us.load(Ordering::Relaxed) {
            0 => last,
            since => {
                let waited = chrono::Utc::now().timestamp_micros().saturating_sub(since) / 1000;
                last.max(u64::try_from(waited).unwrap_or(0))
            }
        }
    }

    /// A batch whose oldest transaction committed at the source at
    /// `commit_us` goes to the target.
    pub(crate) fn applying(&self, commit_us: Option<i64>) {
        if let Some(commit) = commit_us {
            self.applying_since_us
                .store(commit.max(1), Ordering::Relaxed);
        }
    }

    /// Nothing is waiting: the target holds all the source sent.
    pub(crate) fn idle(&self) {
        self.applying_since_us.store(0, Ordering::Relaxed);
        self.lag_ms.store(0, Ordering::Relaxed);
    }

    /// Shows what a stream's holder elsewhere reported (a cluster's).
    pub fn mirror(&self, changes: u64, transactions: u64, lag_ms: u64) {
        self.active.store(true, Ordering::Relaxed);
        self.changes.store(changes, Ordering::Relaxed);
        self.transactions.store(transactions, Ordering::Relaxed);
        self.lag_ms.store(lag_ms, Ordering::Relaxed);
    }

    /// Whether a stream is running (the display shows its line then).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, changes: u64, transactions: u64, lag_ms: Option<u64>) {
        self.applying_since_us.store(0, Ordering::Relaxed);
        self.changes.fetch_add(changes, Ordering::Relaxed);
        self.transactions.fetch_add(transactions, Ordering::Relaxed);
        if let Some(lag) = lag_ms {
            self.lag_ms.store(lag, Ordering::Relaxed);
        }
    }
}

#[derive(Debug, Default)]
pub struct Progress {
    tables: Mutex<Vec<Arc<TableProgress>>>,
    /// The change stream (a two-way sync's from side A to side B).
    pub stream: StreamProgress,
    /// A two-way sync's leg from side B back to side A.
    back: std::sync::OnceLock<Arc<Progress>>,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress::default())
    }

    /// Registers table `name` with `total` rows expected, `done` of them
    /// handled already.
    pub fn table(&self, name: &str, total: u64, done: u64) -> Arc<TableProgress> {
        let table = Arc::new(TableProgress {
            name: name.to_string(),
            total: AtomicU64::new(total.max(done)),
            done: AtomicU64::new(done),
            finished: AtomicBool::new(false),
            phase: Mutex::new(TablePhase::Planned),
            batches: AtomicU64::new(0),
            bytes: AtomicU64::new(0),
            rejected: AtomicU64::new(0),
            plugin_nanos: AtomicU64::new(0),
        });
        if let Ok(mut tables) = self.tables.lock() {
            tables.push(table.clone());
        }
        table
    }

    /// A snapshot of the tables registered so far (with those of the leg
    /// back, whose first load they may be).
    pub fn tables(&self) -> Vec<Arc<TableProgress>> {
        let mut tables = self.tables.lock().map(|t| t.clone()).unwrap_or_default();
        if let Some(back) = self.back() {
            tables.extend(back.tables());
        }
        tables
    }

    /// A two-way sync's progress from side B back to side A.
    pub fn back(&self) -> Option<&Arc<Progress>> {
        self.back.get()
    }

    /// The progress of the leg back of a two-way sync (made once).
    pub(crate) fn back_leg(&self) -> Arc<Progress> {
        self.back.get_or_init(Progress::new).clone()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stuck_apply_shows_its_lag_growing_and_an_idle_stream_none() {
        let stream = StreamProgress::default();
        stream.add(1, 1, Some(90));
        assert_eq!(stream.lag_ms(), 90);
        // A batch whose transaction committed 5 s ago is still being applied.
        let five_s_ago = chrono::Utc::now().timestamp_micros() - 5_000_000;
        stream.applying(Some(five_s_ago));
        assert!(stream.lag_ms() >= 5_000, "{}", stream.lag_ms());
        stream.add(1, 1, Some(5_001));
        assert_eq!(stream.lag_ms(), 5_001);
        // Caught up: no lag is left standing.
        stream.idle();
        assert_eq!(stream.lag_ms(), 0);
    }
}
