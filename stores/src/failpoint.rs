//! Fault injection for the crash tests: `PORTWATCH_FAILPOINT=NAME:N` aborts the
//! process the N-th time the failpoint `NAME` is passed (the projector's
//! `projector_after_write`, between a batch's rows and its checkpoint; the
//! ClickHouse sink's `checkpoint_after_images`, between a checkpoint's host images
//! and its offset). Without the variable a failpoint costs one lookup of it.

use std::collections::HashMap;
use std::sync::Mutex;

/// Pass the failpoint `name`; aborts the process when `PORTWATCH_FAILPOINT` says so.
pub fn pass(name: &str, what: &str) {
    static PASSED: Mutex<Option<HashMap<String, u64>>> = Mutex::new(None);
    let Ok(spec) = std::env::var("PORTWATCH_FAILPOINT") else {
        return;
    };
    let Some(n) = spec
        .strip_prefix(name)
        .and_then(|rest| rest.strip_prefix(':'))
        .and_then(|n| n.parse::<u64>().ok())
    else {
        return;
    };
    let mut passed = PASSED.lock().unwrap_or_else(|p| p.into_inner());
    let count = passed
        .get_or_insert_with(HashMap::new)
        .entry(name.to_string())
        .or_default();
    *count += 1;
    if *count >= n {
        tracing::error!(failpoint = %spec, "failpoint reached: aborting {what}");
        std::process::abort();
    }
}
