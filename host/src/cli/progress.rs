//! Shows engine progress: bars on a terminal, a log line per table every
//! few seconds otherwise. ETA = remaining rows / current speed.

use std::collections::{HashMap, VecDeque};
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::engine::{Progress, TablePhase};

const LOG_EVERY: Duration = Duration::from_secs(5);

pub(super) fn is_terminal() -> bool {
    std::io::stderr().is_terminal()
}

pub(super) struct ProgressDisplay {
    stop: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl ProgressDisplay {
    pub(super) fn start(progress: Arc<Progress>, interactive: bool) -> Self {
        let (stop, stopped) = oneshot::channel();
        let task = if interactive {
            tokio::spawn(bars(progress, stopped))
        } else {
            tokio::spawn(log_lines(progress, stopped))
        };
        ProgressDisplay { stop, task }
    }

    pub(super) async fn stop(self) {
        let _ = self.stop.send(());
        let _ = self.task.await;
    }
}

/// Rows/s over the last few seconds and the ETA it gives, per table.
#[derive(Default)]
struct Speed {
    samples: VecDeque<(Instant, u64)>,
}

impl Speed {
    const WINDOW: Duration = Duration::from_secs(3);

    /// Records `done` rows now; returns (rows/s, ETA text) for `total`.
    fn update(&mut self, done: u64, total: u64) -> (f64, String) {
        let now = Instant::now();
        self.samples.push_back((now, done));
        while self.samples.len() > 2
            && self
                .samples
                .front()
                .is_some_and(|(t, _)| now.duration_since(*t) > Self::WINDOW)
        {
            self.samples.pop_front();
        }
        let (since, before) = self.samples.front().copied().unwrap_or((now, done));
        let secs = now.duration_since(since).as_secs_f64();
        #[allow(clippy::cast_precision_loss)]
        let rate = if secs > 0.0 {
            done.saturating_sub(before) as f64 / secs
        } else {
            0.0
        };
        let remaining = total.saturating_sub(done);
        #[allow(clippy::cast_precision_loss)]
        let eta = match (remaining, rate > 0.0) {
            (0, _) => "0s".to_string(),
            (_, true) => human_duration(remaining as f64 / rate),
            (_, false) => "?".to_string(),
        };
        (rate, eta)
    }
}

fn human_duration(secs: f64) -> String {
    #[allow(clippy::cast_possible_truncation, clippy::cast_sign_loss)]
    let secs = secs.round() as u64;
    match secs {
        0..60 => format!("{secs}s"),
        60..3600 => format!("{}m{:02}s", secs / 60, secs % 60),
        _ => format!("{}h{:02}m", secs / 3600, secs / 60 % 60),
    }
}

async fn bars(progress: Arc<Progress>, mut stopped: oneshot::Receiver<()>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let style = ProgressStyle::with_template(
        "{prefix:>20.bold} [{bar:30.cyan/blue}] {human_pos:>11}/{human_len:11} {msg}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut shown: HashMap<String, (ProgressBar, Speed)> = HashMap::new();
    let mut stream: [Option<(ProgressBar, Speed)>; 2] = [None, None];
    let mut tick = tokio::time::interval(Duration::from_millis(200));
    loop {
        let last = tokio::select! {
            _ = &mut stopped => true,
            _ = tick.tick() => false,
        };
        // A two-way sync has a stream each way.
        let streams = match progress.back() {
            Some(back) => vec![
                (&progress.stream, "changes A → B"),
                (&back.stream, "changes B → A"),
            ],
            None => vec![(&progress.stream, "changes")],
        };
        for (at, (counters, prefix)) in streams.into_iter().enumerate() {
            if counters.is_active() {
                // The stream has no end: a line with its rate and lag.
                let (line, speed) = stream[at].get_or_insert_with(|| {
                    let line = multi.add(ProgressBar::new_spinner());
                    line.set_style(
                        ProgressStyle::with_template("{prefix:>20.bold} {spinner} {msg}")
                            .unwrap_or_else(|_| ProgressStyle::default_spinner()),
                    );
                    line.set_prefix(prefix);
                    (line, Speed::default())
                });
                let changes = counters.changes();
                let (rate, _) = speed.update(changes, changes);
                line.set_message(format!(
                    "{changes} applied, {} transactions, {rate:.0} changes/s, lag {} ms",
                    counters.transactions(),
                    counters.lag_ms()
                ));
                line.tick();
            }
        }
        for table in progress.tables() {
            let (bar, speed) = shown.entry(table.name.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(table.total()));
                bar.set_style(style.clone());
                bar.set_prefix(crate::model::printable(&table.name).into_owned());
                (bar, Speed::default())
            });
            if bar.is_finished() {
                continue;
            }
            let (done, total) = (table.done(), table.total().max(table.done()));
            bar.set_length(total);
            bar.set_position(done);
            let (rate, eta) = speed.update(done, total);
            // The rows are in, the key and indexes not yet: not done.
            let phase = table.phase();
            match &phase {
                TablePhase::Indexing => bar.set_message("building indexes"),
                TablePhase::Failed { reason } => {
                    bar.abandon_with_message(format!(
                        "failed: {}",
                        crate::model::printable(reason)
                    ));
                    continue;
                }
                _ => bar.set_message(format!("{:>9.0} rows/s  ETA {eta}", rate)),
            }
            if table.is_finished() && phase != TablePhase::Indexing {
                bar.finish_with_message("done");
            }
        }
        if last {
            for (line, _) in stream.iter().flatten() {
                line.abandon();
            }
            for (bar, _) in shown.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            return;
        }
    }
}

async fn log_lines(progress: Arc<Progress>, mut stopped: oneshot::Receiver<()>) {
    let mut speeds: HashMap<String, Speed> = HashMap::new();
    let mut tick = tokio::time::interval(LOG_EVERY);
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        for table in progress.tables() {
            if table.is_finished() {
                continue;
            }
            let (done, total) = (table.done(), table.total().max(table.done()));
            let (rate, eta) = speeds
                .entry(table.name.clone())
                .or_default()
                .update(done, total);
            tracing::info!(
                table = table.name,
                phase = table.phase().name(),
                rows = done,
                total,
                rows_per_sec = rate.round(),
                eta,
                "progress"
            );
        }
    }
}

/// Peak resident memory of this process (Linux `VmHWM`).
pub(super) fn peak_rss_bytes() -> Option<u64> {
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let line = status.lines().find(|l| l.starts_with("VmHWM:"))?;
    let kib: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
    Some(kib * 1024)
}
