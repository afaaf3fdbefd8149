//! Work only the leading control instance does (scale-out): scheduling and issuing
//! jobs, notifying, applying blocks, reporting, retention.
//!
//! Each such part takes a stop flag and runs until it is set; [`while_leading`]
//! starts it when this instance gains the lease and sets its flag when the lease
//! is lost (or the process stops), waiting for it to finish before it may start
//! again. Every part starts each term from what is on record (the journal of
//! decisions, ClickHouse), never from what an earlier term held in memory.

use std::future::Future;

use tokio::sync::watch;

/// The parts a control instance runs while it leads.
#[derive(Debug)]
pub struct Parts {
    set: tokio::task::JoinSet<()>,
    leading: watch::Receiver<bool>,
    stop: watch::Receiver<bool>,
}

impl Parts {
    /// Parts that run while `leading` is true, until `stop` is set.
    pub fn new(leading: watch::Receiver<bool>, stop: watch::Receiver<bool>) -> Self {
        Self {
            set: tokio::task::JoinSet::new(),
            leading,
            stop,
        }
    }

    /// Run `work` in every term (see [`while_leading`]).
    pub fn spawn<F, Fut>(&mut self, part: &'static str, work: F)
    where
        F: FnMut(watch::Receiver<bool>) -> Fut + Send + 'static,
        Fut: Future<Output = ()> + Send + 'static,
    {
        self.set
            .spawn(while_leading(part, self.leading.clone(), self.stop.clone(), work));
    }

    /// Wait until every part stopped (after `stop`).
    pub async fn join(mut self) {
        while self.set.join_next().await.is_some() {}
    }
}

/// Run `work` during every term in which `leading` is true, until `stop` is set.
/// `work` gets a flag set when its term ends; a part that returns on its own
/// before then is not restarted until the next term.
pub async fn while_leading<F, Fut>(
    part: &'static str,
    mut leading: watch::Receiver<bool>,
    mut stop: watch::Receiver<bool>,
    mut work: F,
) where
    F: FnMut(watch::Receiver<bool>) -> Fut,
    Fut: Future<Output = ()>,
{
    loop {
        tokio::select! {
            held = leading.wait_for(|l| *l) => if held.is_err() { return },
            _ = stop.wait_for(|s| *s) => return,
        }
        tracing::debug!(part, "leading: started");
        let (end, term) = watch::channel(false);
        let run = work(term);
        tokio::pin!(run);
        // How the term ends: the part returns by itself, the lease is lost, or the
        // process stops.
        enum End {
            Returned,
            Lost,
            Stopping,
        }
        let end_of_term = tokio::select! {
            () = &mut run => End::Returned,
            _ = leading.wait_for(|l| !*l) => End::Lost,
            _ = stop.wait_for(|s| *s) => End::Stopping,
        };
        let stopping = match end_of_term {
            End::Returned => {
                // Done by itself: nothing restarts before the next term.
                tokio::select! {
                    _ = leading.wait_for(|l| !*l) => false,
                    _ = stop.wait_for(|s| *s) => true,
                }
            }
            End::Lost | End::Stopping => {
                end.send_replace(true);
                run.await;
                matches!(end_of_term, End::Stopping)
            }
        };
        tracing::debug!(part, "leading: stopped");
        if stopping {
            return;
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicU32, Ordering};
    use std::sync::Arc;
    use std::time::Duration;

    use super::*;

    #[tokio::test]
    async fn work_runs_only_while_leading_and_each_term_afresh() {
        let (lead, leading) = watch::channel(false);
        let (stop_tx, stop) = watch::channel(false);
        let (starts, running) = (Arc::new(AtomicU32::new(0)), Arc::new(AtomicU32::new(0)));
        let (s, r) = (starts.clone(), running.clone());
        let task = tokio::spawn(while_leading("test", leading, stop, move |mut term| {
            let (s, r) = (s.clone(), r.clone());
            async move {
                s.fetch_add(1, Ordering::SeqCst);
                r.fetch_add(1, Ordering::SeqCst);
                let _ = term.wait_for(|t| *t).await;
                r.fetch_sub(1, Ordering::SeqCst);
            }
        }));
        let settle = || tokio::time::sleep(Duration::from_millis(50));
        settle().await;
        assert_eq!(starts.load(Ordering::SeqCst), 0, "a standby does nothing");
        lead.send_replace(true);
        settle().await;
        assert_eq!(running.load(Ordering::SeqCst), 1);
        lead.send_replace(false);
        settle().await;
        assert_eq!(running.load(Ordering::SeqCst), 0, "the term ended");
        lead.send_replace(true);
        settle().await;
        assert_eq!(
            (starts.load(Ordering::SeqCst), running.load(Ordering::SeqCst)),
            (2, 1),
            "a second term starts afresh"
        );
        stop_tx.send_replace(true);
        tokio::time::timeout(Duration::from_secs(1), task)
            .await
            .expect("stops")
            .expect("joined");
        assert_eq!(running.load(Ordering::SeqCst), 0);
    }
}
