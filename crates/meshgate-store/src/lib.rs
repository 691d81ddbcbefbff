//! Storage for meshgate: the [`Store`] trait and its SQLite and PostgreSQL implementations.
//!
//! # Layout
//! - `model`: the records the store keeps (keys, usage events) and query types.
//! - `sql`: what both engines share: statements, row decoding, value binding, summaries.
//! - `common`: the `Store` methods both engines implement alike (a macro each expands).
//! - `sqlite`: [`SqliteStore`], the embedded backend (one file in the data directory).
//! - `postgres`: [`PgStore`], the shared backend of a fleet, which also announces changes
//!   to cached records to every instance ([`Store::changes`]).
//! - `testdb`: fresh PostgreSQL databases for tests.
//!
//! The store holds no business rules: it persists and queries. Every record belongs to a
//! project so that the next backends and the tenancy rules fit without a schema break.

mod common;
mod model;
mod postgres;
mod sql;
mod sqlite;
mod sqlite_ledger;
pub mod testdb;

pub use model::{
    AuditEvent, AuditFilter, CreditEntry, CreditKind, GroupBy, KeyRecord, Limits, NewKey, Outcome,
    Policy, ProjectRecord, ProjectSettings, ProviderCredential, ResourceOwner, SigningKeyRecord,
    SpendScope, SummaryRow, UsageEvent, UsageFilter, UsagePage,
};
pub use postgres::PgStore;
pub use sqlite::SqliteStore;

use async_trait::async_trait;
use meshgate_types::Money;
use std::sync::Arc;

/// What can go wrong in storage; mapped to a 503 at the HTTP edge when the database cannot
/// be reached ([`StoreError::is_unavailable`]), else a 500.
#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    #[error("database error: {0}")]
    Database(#[from] sqlx::Error),
    /// From the SQLite ledger's own connection.
    #[error("database error: {0}")]
    Ledger(#[from] rusqlite::Error),
    #[error("corrupt record: {0}")]
    Corrupt(String),
    #[error("schema migration failed: {0}")]
    Migrate(#[from] sqlx::migrate::MigrateError),
    #[error("unsupported database URL {0:?}: use sqlite:// or postgres://")]
    UnsupportedUrl(String),
}

impl StoreError {
    /// The database could not be reached or is shutting down (the same call may succeed
    /// later), as opposed to a statement it refused or a record it holds being wrong.
    pub fn is_unavailable(&self) -> bool {
        if let StoreError::Ledger(e) = self {
            use rusqlite::ErrorCode::*;
            return matches!(
                e.sqlite_error_code(),
                Some(DatabaseBusy | DatabaseLocked | SystemIoFailure | CannotOpen)
            );
        }
        let StoreError::Database(e) = self else {
            return false;
        };
        match e {
            sqlx::Error::Io(_)
            | sqlx::Error::Tls(_)
            | sqlx::Error::Protocol(_)
            | sqlx::Error::PoolTimedOut
            | sqlx::Error::PoolClosed
            | sqlx::Error::WorkerCrashed => true,
            // SQLSTATE class 08 (connection exception), 57P01-57P03 (the server is
            // shutting down or starting), 53 (out of connections or memory).
            sqlx::Error::Database(db) => db.code().is_some_and(|c| {
                c.starts_with("08") || c.starts_with("57P") || c.starts_with("53")
            }),
            _ => false,
        }
    }
}

/// Opens the store a URL names: `postgres://` (or `postgresql://`) for [`PgStore`], `sqlite:`
/// for [`SqliteStore`]. Either brings its schema up to date first.
pub async fn open_url(url: &str) -> Result<Arc<dyn Store>> {
    if url.starts_with("postgres://") || url.starts_with("postgresql://") {
        Ok(Arc::new(PgStore::connect(url).await?))
    } else if url.starts_with("sqlite:") {
        Ok(Arc::new(SqliteStore::open_url(url).await?))
    } else {
        Err(StoreError::UnsupportedUrl(url.to_string()))
    }
}

/// A change to a record that gateways cache (keys, projects, signing keys, provider
/// credentials), announced by the database to every instance.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Change {
    Key(String),
    Project(String),
    SigningKey(String),
    ProviderCredential {
        project_id: String,
        provider: String,
    },
    /// Credits were added to (or, by an adjustment, taken from) a project's balance; usage
    /// debits are not announced.
    Credits {
        project_id: String,
        amount: Money,
    },
    /// The feed was (re)connected: changes may have been missed, so reload everything.
    Resync,
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Persistence used by the gateway. Calls here never sit on the request hot path: auth
/// reads a cache filled from [`Store::active_keys`], and usage goes through a batched writer.
#[async_trait]
pub trait Store: Send + Sync + 'static {
    /// Creates a project; an existing id is an error.
    async fn create_project(&self, project: ProjectRecord) -> Result<ProjectRecord>;
    async fn get_project(&self, id: &str) -> Result<Option<ProjectRecord>>;
    async fn list_projects(&self) -> Result<Vec<ProjectRecord>>;
    /// Replaces a project's name and settings; `None` when no such project exists.
    async fn update_project(&self, project: ProjectRecord) -> Result<Option<ProjectRecord>>;

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord>;
    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>>;
    async fn list_keys(&self, project_id: Option<&str>) -> Result<Vec<KeyRecord>>;
    /// Marks a key revoked; returns it, or `None` when no such key exists.
    async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<Option<KeyRecord>>;
    /// Keys not revoked (expired ones included: expiry is checked per call).
    async fn active_keys(&self) -> Result<Vec<KeyRecord>>;
    /// Replaces a key's name, expiry and policy; `None` when no such key exists.
    async fn update_key(
        &self,
        id: &str,
        name: &str,
        expires_ms: Option<i64>,
        policy: &Policy,
    ) -> Result<Option<KeyRecord>>;
    /// Gives a key a new secret; the current one stays valid until `previous_expires_ms`
    /// (`None`: not at all). `None` when no such active key exists.
    async fn rotate_key(
        &self,
        id: &str,
        new_prefix: &str,
        new_secret_hash: &str,
        previous_expires_ms: Option<i64>,
        at_ms: i64,
    ) -> Result<Option<KeyRecord>>;

    async fn create_signing_key(&self, key: SigningKeyRecord) -> Result<SigningKeyRecord>;
    async fn list_signing_keys(&self, project_id: Option<&str>) -> Result<Vec<SigningKeyRecord>>;
    /// `None` when no such key exists; revoking twice keeps the first time.
    async fn revoke_signing_key(&self, id: &str, at_ms: i64) -> Result<Option<SigningKeyRecord>>;

    /// Creates or replaces a project's credential for one provider.
    async fn set_provider_credential(&self, credential: ProviderCredential) -> Result<()>;
    /// `true` when there was one to delete.
    async fn delete_provider_credential(&self, project_id: &str, provider: &str) -> Result<bool>;
    async fn list_provider_credentials(
        &self,
        project_id: Option<&str>,
    ) -> Result<Vec<ProviderCredential>>;

    async fn add_credit_entry(&self, entry: CreditEntry) -> Result<()>;
    /// Newest first (by id: ids sort by time); `before_id` pages back; `limit` is clamped
    /// to 1..=1000.
    async fn list_credit_entries(
        &self,
        project_id: &str,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CreditEntry>>;
    /// The exact sum of a project's credit entries.
    async fn credit_balance(&self, project_id: &str) -> Result<Money>;
    /// What a scope has been charged (cost plus markup) since `since_ms` (all time when
    /// `None`), summed exactly.
    async fn spend(&self, scope: &SpendScope, since_ms: Option<i64>) -> Result<Money>;

    async fn record_audit(&self, event: AuditEvent) -> Result<()>;
    /// Newest first (by id); `since_ms` inclusive, `until_ms` exclusive; `limit` is clamped
    /// to 1..=1000.
    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditEvent>>;

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

    /// Records which project created provider-side objects; the first owner recorded wins.
    async fn record_owners(&self, owners: &[ResourceOwner]) -> Result<()>;
    /// The project that created a provider-side object, if meshgate saw it created.
    async fn resource_owner(&self, resource_id: &str) -> Result<Option<String>>;

    /// Writes usage events and their credit debits in one transaction: all or none.
    async fn insert_usage(&self, events: &[UsageEvent], debits: &[CreditEntry]) -> Result<()>;
    /// Which of these event ids the ledger already holds (replaying a spool skips them).
    async fn usage_ids_present(&self, ids: &[String]) -> Result<std::collections::HashSet<String>>;
    async fn list_usage(&self, filter: &UsageFilter, limit: u32) -> Result<UsagePage>;
    /// One usage event by id.
    async fn get_usage_event(&self, id: &str) -> Result<Option<UsageEvent>>;
    async fn usage_summary(
        &self,
        filter: &UsageFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>>;

    /// A trivial query, for readiness checks.
    async fn ping(&self) -> Result<()>;

    /// Changes made by any instance sharing this database, for keeping caches fresh; `None`
    /// for an engine no other instance shares (SQLite). The feed starts with
    /// [`Change::Resync`] once it listens, and sends it again after every reconnection.
    fn changes(&self) -> Option<tokio::sync::mpsc::Receiver<Change>> {
        None
    }
}

#[cfg(test)]
mod tests {
    use super::StoreError;

    #[test]
    fn unreachable_databases_are_told_from_refused_statements() {
        let unreachable = [
            sqlx::Error::PoolTimedOut,
            sqlx::Error::PoolClosed,
            sqlx::Error::Io(std::io::ErrorKind::ConnectionRefused.into()),
        ];
        for e in unreachable {
            assert!(StoreError::Database(e).is_unavailable());
        }
        assert!(!StoreError::Database(sqlx::Error::RowNotFound).is_unavailable());
        assert!(!StoreError::Corrupt("bad".into()).is_unavailable());
    }
}
