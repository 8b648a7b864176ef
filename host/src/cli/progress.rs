//! Shows engine progress: bars on a terminal, a log line per table every
//! few seconds otherwise. ETA = remaining rows / current speed.

use std::collections::HashMap;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::{Duration, Instant};

use indicatif::{MultiProgress, ProgressBar, ProgressDrawTarget, ProgressStyle};
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use crate::engine::Progress;

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

async fn bars(progress: Arc<Progress>, mut stopped: oneshot::Receiver<()>) {
    let multi = MultiProgress::with_draw_target(ProgressDrawTarget::stderr_with_hz(10));
    let style = ProgressStyle::with_template(
        "{prefix:>20.bold} [{bar:30.cyan/blue}] {human_pos:>9}/{human_len:9} {per_sec:>12} ETA {eta:>4}",
    )
    .unwrap_or_else(|_| ProgressStyle::default_bar())
    .progress_chars("=> ");
    let mut shown: HashMap<String, ProgressBar> = HashMap::new();
    let mut tick = tokio::time::interval(Duration::from_millis(100));
    loop {
        let last = tokio::select! {
            _ = &mut stopped => true,
            _ = tick.tick() => false,
        };
        for table in progress.tables() {
            let bar = shown.entry(table.name.clone()).or_insert_with(|| {
                let bar = multi.add(ProgressBar::new(table.total()));
                bar.set_style(style.clone());
                bar.set_prefix(table.name.clone());
                bar
            });
            bar.set_length(table.total().max(table.done()));
            bar.set_position(table.done());
            if table.is_finished() && !bar.is_finished() {
                bar.finish();
            }
        }
        if last {
            for bar in shown.values() {
                if !bar.is_finished() {
                    bar.abandon();
                }
            }
            return;
        }
    }
}

async fn log_lines(progress: Arc<Progress>, mut stopped: oneshot::Receiver<()>) {
    let mut last: HashMap<String, (u64, Instant)> = HashMap::new();
    let mut tick = tokio::time::interval(LOG_EVERY);
    tick.tick().await;
    loop {
        tokio::select! {
            _ = &mut stopped => return,
            _ = tick.tick() => {}
        }
        for table in progress.tables() {
            if table.is_finished() {
                continue;
            }
            let now = Instant::now();
            let done = table.done();
            let (before, at) = last
                .insert(table.name.clone(), (done, now))
                .unwrap_or((done, now));
            let secs = now.duration_since(at).as_secs_f64();
            #[allow(clippy::cast_precision_loss)]
            let rate = if secs > 0.0 {
                (done - before.min(done)) as f64 / secs
            } else {
                0.0
            };
            let remaining = table.total().saturating_sub(done);
            #[allow(clippy::cast_precision_loss)]
            let eta = if rate > 0.0 {
                format!("{:.0}s", remaining as f64 / rate)
            } else {
                "?".into()
            };
            tracing::info!(
                table = table.name,
                rows = done,
                total = table.total(),
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
