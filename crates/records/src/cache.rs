//! The small caches of the door (checked tokens, break-the-glass grants): how long an entry is
//! trusted and how many are kept.

use std::sync::Arc;
use std::time::Duration;

/// How long a checked token (or a user's break-the-glass grants) is remembered before the
/// database is asked again. Revocations in this process take effect at once; in another process
/// within this time.
pub(crate) const CACHE_TTL: Duration = Duration::from_secs(5);

/// Most entries a cache holds at once.
pub(crate) const CACHE_MAX: usize = 10_000;

pub(crate) type Cache<V> =
    Arc<std::sync::Mutex<std::collections::HashMap<String, (V, std::time::Instant)>>>;
