//! The upkeep beside the mover: indexes new entries by patient, makes them durable and signs
//! checkpoints of the verified tail.

use std::path::PathBuf;
use std::time::Duration;

use ironchart_store::Store;

use super::chain::ChainKeys;
use super::checkpoint::{own_stretch, sign_tail, write_checkpoint};

/// The stretch of the chain this process's mover appended without anyone else appending in
/// between: from `start` (the tail it read from the database) to `end` (its newest entry). The
/// mover computed every MAC after `start` itself, so the upkeep can vouch for `end` without
/// reading the stretch back.
#[derive(Debug, Clone, Default)]
pub(crate) struct Segment {
    pub(crate) start: Option<(i64, String)>,
    pub(crate) end: Option<(i64, String)>,
}

pub(crate) type SharedSegment = std::sync::Arc<std::sync::Mutex<Segment>>;

/// How often the upkeep runs (patient index, durability, checkpoint).
const CHECKPOINT_EVERY: Duration = Duration::from_secs(1);

/// Beside the mover, never in its way: every [`CHECKPOINT_EVERY`] after new entries, indexes
/// them by patient, makes them durable and signs a checkpoint of the verified tail. Stops when
/// the mover is gone (`appended` has no other owner).
pub(crate) fn start_upkeep(
    store: Store,
    keys: std::sync::Arc<ChainKeys>,
    checkpoints: Option<PathBuf>,
    appended: std::sync::Arc<std::sync::atomic::AtomicU64>,
    segment: SharedSegment,
) {
    tokio::spawn(async move {
        // The newest entry this process has verified and signed.
        let mut signed: Option<(i64, String)> = None;
        let mut tick = tokio::time::interval(CHECKPOINT_EVERY);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            if std::sync::Arc::strong_count(&appended) == 1 || store.is_closed() {
                // The writer is gone (the service was dropped) or the database closed.
                break;
            }
            // Entries written inside write transactions count too: index whatever is new, in
            // short transactions that let the writer in between.
            let mut indexed = 0;
            loop {
                match store.index_audit_patients().await {
                    Ok(n) => {
                        indexed += n;
                        if n < ironchart_store::INDEX_BATCH {
                            break;
                        }
                        tokio::task::yield_now().await;
                    }
                    Err(e) => {
                        // (Not worth a warning when the process is closing the database.)
                        if !store.is_closed() {
                            tracing::warn!("cannot index the audit log by patient: {e}");
                        }
                        break;
                    }
                }
            }
            let grouped = appended.swap(0, std::sync::atomic::Ordering::Relaxed);
            if grouped > 0
                && let Err(e) = store.audit_sync().await
            {
                tracing::warn!("cannot sync the audit log to disk: {e}");
            }
            if (grouped > 0 || indexed > 0)
                && let Some(path) = &checkpoints
            {
                let own = segment.lock().ok().map(|s| s.clone()).unwrap_or_default();
                signed = match own_stretch(signed.as_ref(), &own) {
                    Some(end) => match write_checkpoint(path, &keys, end.0, &end.1) {
                        Ok(()) => Some(end),
                        Err(e) => {
                            tracing::warn!("cannot write an audit checkpoint: {e}");
                            signed
                        }
                    },
                    None => sign_tail(&store, &keys, path, signed).await,
                };
            }
        }
    });
}
