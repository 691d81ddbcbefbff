//! Storage for meshgate: the [`Store`] trait and its SQLite implementation.
//!
//! # Layout
//! - `model`: the records the store keeps (keys, usage events) and query types.
//! - `sqlite`: [`SqliteStore`], the embedded backend (one file in the data directory).
//!
//! The store holds no business rules: it persists and queries. Every record belongs to a
//! project so that the next backends and the tenancy rules fit without a schema break.

mod model;
mod sqlite;

pub use model::{
    GroupBy, KeyRecord, NewKey, Outcome, SummaryRow, UsageEvent, UsageFilter, UsagePage,
};
pub use sqlite::SqliteStore;

use async_trait::async_trait;

/// What can go wrong in storage; mapped to a 500 at the HTTP edge.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Persistence used by the gateway. Calls here never sit on the request hot path: auth
/// reads a cache filled from [`Store::active_keys`], and usage goes through a batched writer.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord>;
    async fn list_keys(&self, project_id: Option<&str>) -> Result<Vec<KeyRecord>>;
    /// Marks a key revoked; returns it, or `None` when no such key exists.
    async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<Option<KeyRecord>>;
    /// Keys not revoked (expired ones included: expiry is checked per call).
    async fn active_keys(&self) -> Result<Vec<KeyRecord>>;

    async fn get_setting(&self, name: &str) -> Result<Option<String>>;
    async fn set_setting(&self, name: &str, value: &str) -> Result<()>;

    /// Claims the billing of a batch's results; `true` for the first claim only, so that
    /// results fetched twice are billed once.
    async fn claim_batch_billing(
        &self,
        batch_id: &str,
        project_id: &str,
        at_ms: i64,
    ) -> Result<bool>;
    /// Gives a claim back when the fetch that made it billed nothing (it failed).
    async fn release_batch_billing(&self, batch_id: &str) -> Result<()>;

    /// Writes events in one transaction: all or none.
    async fn insert_usage(&self, events: &[UsageEvent]) -> Result<()>;
    async fn list_usage(&self, filter: &UsageFilter, limit: u32) -> Result<UsagePage>;
    async fn usage_summary(
        &self,
        filter: &UsageFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>>;
}
