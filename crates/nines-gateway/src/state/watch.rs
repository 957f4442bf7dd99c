//! Reloading when the configuration file changes (`[server] watch_config = true`).
//!
//! The file's *directory* is watched, not the file: editors save by writing a new file and
//! renaming it over the old one, and a Kubernetes ConfigMap volume updates by swapping a `..data`
//! symlink in that directory, so a watch on the file itself would follow the old inode and miss
//! every later change. Events are debounced (a burst of them is one reload, after it is quiet for
//! [`QUIET`]), and a reload happens only when the file's text differs from the running
//! configuration's (compared by hash), so touching the directory or rewriting the same text does
//! nothing.

use super::AppState;
use notify_debouncer_full::notify::{RecommendedWatcher, RecursiveMode};
use notify_debouncer_full::{DebounceEventResult, Debouncer, RecommendedCache, new_debouncer};
use std::path::Path;
use std::sync::{Arc, Weak};
use std::time::Duration;

/// How long the directory must be quiet before a burst of events counts as one change.
pub const QUIET: Duration = Duration::from_millis(300);

/// The running watch; dropping it stops watching.
pub struct ConfigWatch {
    _debouncer: Debouncer<RecommendedWatcher, RecommendedCache>,
}

/// Starts watching `state`'s configuration file. Call inside a tokio runtime; the watch ends
/// when the returned handle is dropped or the state is gone.
pub fn watch(state: &Arc<AppState>) -> Result<ConfigWatch, String> {
    let path = state
        .config_path()
        .ok_or("no configuration file to watch")?
        .to_path_buf();
    let dir = match path.parent() {
        Some(dir) if !dir.as_os_str().is_empty() => dir.to_path_buf(),
        _ => Path::new(".").to_path_buf(),
    };
    let (tx, mut rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut debouncer = new_debouncer(QUIET, None, move |result: DebounceEventResult| {
        if result.is_ok_and(|events| !events.is_empty()) {
            // A full channel already holds a change to look at: one is enough.
            let _ = tx.try_send(());
        }
    })
    .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    debouncer
        .watch(&dir, RecursiveMode::NonRecursive)
        .map_err(|e| format!("cannot watch {}: {e}", dir.display()))?;
    let weak: Weak<AppState> = Arc::downgrade(state);
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            let Some(state) = weak.upgrade() else { return };
            if changed(&state, &path) {
                // Reading and validating is file I/O: off the async workers.
                let _ = tokio::task::spawn_blocking(move || state.reload()).await;
            }
        }
    });
    tracing::info!(dir = %dir.display(), "watching the configuration file for changes");
    Ok(ConfigWatch {
        _debouncer: debouncer,
    })
}

/// Whether the file's text differs from the running configuration's.
fn changed(state: &AppState, path: &Path) -> bool {
    match std::fs::read_to_string(path) {
        Ok(text) => crate::config::text_hash(&text) != state.runtime().config.hash,
        // Gone or unreadable for a moment (a swap in progress): the next event will tell.
        Err(_) => false,
    }
}
