//! Degraded modes: what each operation does while PostgreSQL or Redis cannot be reached.
//! The rules live where the operations do; this is their index (the README's "Degraded
//! modes" says the same for operators), plus the per-instance limits of
//! `redis_unavailable = "local"`.
//!
//! | operation | database away | Redis away |
//! |---|---|---|
//! | auth of a key, token or delegation | from the in-memory cache: keeps working (no lookup needs the database; an unknown key is a 401 as ever) | not used |
//! | cache freshness | the change feed reconnects, then reloads everything ([`crate::changes`]); a revocation made elsewhere meanwhile cannot be, as the admin API needs the database | not used |
//! | rate limits | in memory, or in Redis | `closed` (default): 503; `local`: this instance's own counters |
//! | budgets and credits | an account already loaded keeps working; one that must be read first: 503 | `closed`: 503 (budgets that cannot be checked fail closed); `local`: this instance's accounts, loaded from the database |
//! | calls without limits, budgets or credits | served | served |
//! | usage events | kept in the spool and the fallback file, written once the database is back, none twice ([`crate::ledger`]) | not used |
//! | lookups that need the database (own usage events, batch owners, the admin API) | 503 in the surface's error shape | not used |
//! | `/readyz` | 503 | `closed`: 503; `local`: 200 (the instance still serves every call) |

use crate::budget::Budgets;
use crate::limits::RateLimiter;
use meshgate_store::Store;
use std::sync::atomic::{AtomicBool, AtomicI64, Ordering};
use std::sync::{Arc, Mutex};

/// After Redis failed a call, how long `local` mode skips it before trying again: calls
/// meanwhile do not wait for a connection that will fail.
const SKIP_REDIS_MS: i64 = 1_000;

/// The accounts and counters `redis_unavailable = "local"` falls back to.
pub struct LocalLimits {
    store: Arc<dyn Store>,
    current: Mutex<(Arc<Budgets>, Arc<RateLimiter>)>,
    /// Redis answered since the local accounts were last used: the next outage starts
    /// from fresh ones, loaded from the database (the old ones missed what the fleet spent
    /// through Redis meanwhile).
    stale: AtomicBool,
    /// Until when (ms since the epoch) calls skip Redis.
    skip_until_ms: AtomicI64,
}

impl LocalLimits {
    pub fn new(store: Arc<dyn Store>) -> Self {
        LocalLimits {
            current: Mutex::new((
                Arc::new(Budgets::new(store.clone())),
                Arc::new(RateLimiter::default()),
            )),
            store,
            stale: AtomicBool::new(true),
            skip_until_ms: AtomicI64::new(0),
        }
    }

    /// Whether Redis failed within the last [`SKIP_REDIS_MS`].
    pub fn skipping_redis(&self, now_ms: i64) -> bool {
        now_ms < self.skip_until_ms.load(Ordering::Relaxed)
    }

    /// Redis failed a call: the local accounts and counters to use instead.
    pub fn redis_failed(&self, now_ms: i64, why: &str) -> (Arc<Budgets>, Arc<RateLimiter>) {
        self.skip_until_ms
            .store(now_ms + SKIP_REDIS_MS, Ordering::Relaxed);
        self.take(why)
    }

    /// The local accounts and counters while Redis is skipped.
    pub fn take(&self, why: &str) -> (Arc<Budgets>, Arc<RateLimiter>) {
        let mut current = self
            .current
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        if self.stale.swap(false, Ordering::AcqRel) {
            tracing::warn!(reason = %why, "Redis is unreachable: this instance enforces rate limits and budgets alone until it answers");
            *current = (
                Arc::new(Budgets::new(self.store.clone())),
                Arc::new(RateLimiter::default()),
            );
        }
        current.clone()
    }

    /// Redis answered a call.
    pub fn redis_answered(&self) {
        if !self.stale.load(Ordering::Relaxed) {
            self.stale.store(true, Ordering::Relaxed);
            tracing::info!("Redis answers again: rate limits and budgets are shared again");
        }
    }
}
