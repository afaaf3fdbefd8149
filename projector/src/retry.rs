//! Waiting out infrastructure faults without losing work, and stopping promptly.

use std::future::Future;
use std::time::Duration;

use tokio::sync::watch;

/// Whether the stop flag is set.
pub fn stopping(stop: &watch::Receiver<bool>) -> bool {
    *stop.borrow()
}

/// Sleep `d`, or less if `stop` is set meanwhile. Returns false when stopping.
pub async fn pause(stop: &mut watch::Receiver<bool>, d: Duration) -> bool {
    if stopping(stop) {
        return false;
    }
    tokio::select! {
        _ = tokio::time::sleep(d) => true,
        _ = stop.wait_for(|s| *s) => false,
    }
}

/// Run `op` until it succeeds, backing off from 200 ms to 5 s and logging each
/// failure; `None` when stopped first. Infrastructure faults (a broker or database
/// restarting) are waited out, never turned into lost work.
pub async fn retry<T, E, F, Fut>(what: &str, stop: &mut watch::Receiver<bool>, mut op: F) -> Option<T>
where
    E: std::fmt::Display,
    F: FnMut() -> Fut,
    Fut: Future<Output = Result<T, E>>,
{
    let mut delay = Duration::from_millis(200);
    let mut attempt = 0u32;
    loop {
        match op().await {
            Ok(v) => {
                if attempt > 0 {
                    tracing::info!(what, attempts = attempt + 1, "recovered");
                }
                return Some(v);
            }
            Err(err) => {
                attempt += 1;
                metrics::counter!("portwatch_retries_total", "what" => what.to_string()).increment(1);
                tracing::warn!(what, attempt, error = %err, retry_in_ms = delay.as_millis() as u64, "failed; retrying");
                if !pause(stop, delay).await {
                    return None;
                }
                delay = (delay * 2).min(Duration::from_secs(5));
            }
        }
    }
}
