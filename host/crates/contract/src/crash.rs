//! Crash points for tests of recovery: with `DMP_CRASH_AT=<point>:<n>` the
//! process aborts (no unwinding, no cleanup: like a SIGKILL, but at an
//! exact place) the `n`-th time it passes `point`. Without the variable a
//! point costs one environment lookup.
//!
//! Points: `write` and `apply` (NATS: a batch's messages acknowledged,
//! its checkpoint not yet written), `snapshot-copied` (`full+cdc`: the
//! snapshot copied and its run ended, the change stream not yet started).

use std::collections::HashMap;
use std::sync::Mutex;

/// The variable naming the point.
pub const CRASH_AT: &str = "DMP_CRASH_AT";

/// Aborts the process if `DMP_CRASH_AT` names `point` and this is its
/// `n`-th pass.
pub fn crash_point(point: &str) {
    let Ok(wanted) = std::env::var(CRASH_AT) else {
        return;
    };
    let Some((at, n)) = wanted.split_once(':') else {
        return;
    };
    if at != point {
        return;
    }
    static PASSES: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    let pass = {
        let mut passes = PASSES
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = passes
            .get_or_insert_with(HashMap::new)
            .entry(point.to_string())
            .or_insert(0);
        *count += 1;
        *count
    };
    if n.parse::<u64>().ok() == Some(pass) {
        tracing::error!(point, pass, "crash point reached ({CRASH_AT})");
        std::process::abort();
    }
}
