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
    /// Source commit → target commit of the last applied transaction.
    lag_ms: AtomicU64,
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

    pub fn lag_ms(&self) -> u64 {
        self.lag_ms.load(Ordering::Relaxed)
    }

    /// Whether a stream is running (the display shows its line then).
    pub fn is_active(&self) -> bool {
        self.active.load(Ordering::Relaxed)
    }

    pub(crate) fn start(&self) {
        self.active.store(true, Ordering::Relaxed);
    }

    pub(crate) fn add(&self, changes: u64, transactions: u64, lag_ms: Option<u64>) {
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
    pub stream: StreamProgress,
}

impl Progress {
    pub fn new() -> Arc<Self> {
        Arc::new(Progress::default())
    }

    pub(crate) fn table(&self, name: &str, total: u64, done: u64) -> Arc<TableProgress> {
        let table = Arc::new(TableProgress {
            name: name.to_string(),
            total: AtomicU64::new(total.max(done)),
            done: AtomicU64::new(done),
            finished: AtomicBool::new(false),
            phase: Mutex::new(TablePhase::Planned),
        });
        if let Ok(mut tables) = self.tables.lock() {
            tables.push(table.clone());
        }
        table
    }

    /// A snapshot of the tables registered so far.
    pub fn tables(&self) -> Vec<Arc<TableProgress>> {
        self.tables.lock().map(|t| t.clone()).unwrap_or_default()
    }
}
