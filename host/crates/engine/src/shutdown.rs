//! One stop signal shared by every task of a run: Ctrl-C, or the first
//! fatal error. Tasks check it between batches, so a batch that is being
//! written always finishes with its checkpoint.

use std::sync::Arc;

use tokio::sync::watch;

#[derive(Clone, Debug)]
pub struct Shutdown {
    tx: Arc<watch::Sender<bool>>,
    /// A wider stop this one also answers (a session's, for its run's).
    parent: Option<Arc<Shutdown>>,
}

impl Default for Shutdown {
    fn default() -> Self {
        Self::new()
    }
}

impl Shutdown {
    pub fn new() -> Self {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
            parent: None,
        }
    }

    /// A stop of its own that also fires when `self` fires: a run's stop
    /// (its first fatal error) inside its session's (the caller's), with
    /// no task to forward one to the other.
    pub fn child(&self) -> Shutdown {
        Shutdown {
            tx: Arc::new(watch::channel(false).0),
            parent: Some(Arc::new(self.clone())),
        }
    }

    pub fn trigger(&self) {
        self.tx.send_replace(true);
    }

    pub fn is_triggered(&self) -> bool {
        self.chain().any(|stop| *stop.tx.borrow())
    }

    /// Resolves once the signal is given (at once if it was already).
    pub async fn wait(&self) {
        // An error means a sender is gone, which cannot happen while
        // `self` holds the chain.
        let mut receivers: Vec<watch::Receiver<bool>> =
            self.chain().map(|stop| stop.tx.subscribe()).collect();
        let waits = receivers.iter_mut().map(|rx| {
            Box::pin(async move {
                let _ = rx.wait_for(|stopped| *stopped).await;
            })
        });
        futures_util::future::select_all(waits).await;
    }

    /// This stop and the wider ones it answers.
    fn chain(&self) -> impl Iterator<Item = &Shutdown> {
        std::iter::successors(Some(self), |stop| stop.parent.as_deref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn a_child_stops_with_its_parent_and_not_the_other_way() {
        let session = Shutdown::new();
        let run = session.child();
        run.trigger();
        assert!(run.is_triggered() && !session.is_triggered());
        let run = session.child();
        let waiting = tokio::spawn({
            let run = run.clone();
            async move { run.wait().await }
        });
        session.trigger();
        assert!(run.is_triggered());
        tokio::time::timeout(std::time::Duration::from_secs(5), waiting)
            .await
            .expect("the child's wait ends with its parent's stop")
            .expect("the waiting task");
    }
}
