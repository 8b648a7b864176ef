//! Signals: the first Ctrl-C (or SIGTERM) stops a command at a batch
//! boundary, a second aborts it at once.

use crate::engine::Shutdown;

/// Ctrl-C or SIGTERM stop the run at the next batch boundary (a stream
/// after the transaction being applied); a second Ctrl-C exits at once.
pub(super) fn stop_on_signals(shutdown: Shutdown) -> tokio::task::JoinHandle<()> {
    tokio::spawn(async move {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut term) => {
                    term.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            () = terminate => {}
        }
        eprintln!("stopping after the batches in flight (Ctrl-C again to abort at once)");
        shutdown.trigger();
        if tokio::signal::ctrl_c().await.is_ok() {
            ABORT.notify_one();
        }
    })
}

/// A second Ctrl-C: the command is dropped where it stands and `main`
/// returns (what is committed stays; the next run resumes from it).
static ABORT: tokio::sync::Notify = tokio::sync::Notify::const_new();

/// Resolves when the user asked to abort at once.
pub(super) async fn aborted() {
    ABORT.notified().await;
}
