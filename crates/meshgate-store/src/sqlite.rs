//! `SqliteStore`: the embedded backend, one database file in the data directory (WAL mode).
//!
//! Money is stored as exact decimal TEXT and summed in Rust with [`Money`]: SQLite would sum
//! it as floating point. Usage, credit and audit ids sort by time (uuid v7 or prefixed
//! sortable ids), so their listings are newest first by `ORDER BY id DESC`, paged with
//! `before_id`.

use crate::common::impl_store;
use crate::model::{
    AuditEvent, AuditFilter, CreditEntry, GroupBy, KeyRecord, NewKey, Policy, ProjectRecord,
    ProviderCredential, ResourceOwner, SigningKeyRecord, SpendScope, SummaryRow, UsageEvent,
    UsageFilter, UsagePage,
};
use crate::sql::*;
use crate::sqlite_ledger::LedgerConnection;
use crate::Result;
use futures_util::TryStreamExt;
use meshgate_types::Money;
use sqlx::sqlite::{
    SqliteArguments, SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow,
    SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::path::Path;
use std::str::FromStr;
use std::sync::Arc;

/// Schema migrations in order; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_billed_batches.sql"),
    ),
    (
        3,
        include_str!("../migrations/sqlite/0003_projects_credentials_money.sql"),
    ),
    (
        4,
        include_str!("../migrations/sqlite/0004_resource_owners.sql"),
    ),
    (5, include_str!("../migrations/sqlite/0005_routing.sql")),
];

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
    /// The usage ledger's own connection, for a file database (see [`crate::sqlite_ledger`]);
    /// an in-memory database writes usage through the pool.
    ledger: Option<Arc<LedgerConnection>>,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        Self::connect(
            Self::file_options(SqliteConnectOptions::new().filename(path)),
            false,
        )
        .await
    }

    /// Opens a database from a `sqlite:` URL (`sqlite::memory:` for a private in-memory one).
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?;
        // sqlx names an in-memory database after itself (`file:sqlx-in-memory-N`, shared
        // cache): the URL says what it is.
        let in_memory = url.contains(":memory:") || url.contains("mode=memory");
        if in_memory {
            let options = options
                .create_if_missing(true)
                .busy_timeout(std::time::Duration::from_secs(10));
            return Self::connect(options, true).await;
        }
        Self::connect(Self::file_options(options), false).await
    }

    /// A file database in WAL mode: readers do not block the ledger writer, and commits
    /// append to the log (synced at checkpoints) instead of rewriting a journal each time.
    /// `synchronous = NORMAL` keeps every commit across a crash of meshgate itself.
    fn file_options(options: SqliteConnectOptions) -> SqliteConnectOptions {
        options
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Normal)
            .busy_timeout(std::time::Duration::from_secs(10))
    }

    async fn connect(options: SqliteConnectOptions, in_memory: bool) -> Result<SqliteStore> {
        let pool = SqlitePoolOptions::new()
            // An in-memory database (shared cache) lives as long as one connection does.
            .max_connections(4)
            .min_connections(u32::from(in_memory))
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options.clone())
            .await?;
        let mut store = SqliteStore { pool, ledger: None };
        store.migrate().await?;
        if !in_memory {
            store.ledger = Some(Arc::new(LedgerConnection::open(options.get_filename())?));
        }
        Ok(store)
    }

    /// Writes usage through the ledger's own connection when there is one.
    fn insert_usage_direct(
        &self,
        events: &[UsageEvent],
        debits: &[CreditEntry],
    ) -> Option<Result<()>> {
        Some(self.ledger.as_ref()?.insert(events, debits))
    }

    /// Runs the migrations on one connection. A connection that read the schema midway
    /// would keep that version cached: SQLite re-prepares a `SELECT *` on it once the
    /// schema is found to have changed, and the statement then has more columns than sqlx
    /// prepared it with (a panic in sqlx).
    async fn migrate(&self) -> Result<()> {
        use sqlx::Connection;
        let mut conn = self.pool.acquire().await?;
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
        )
        .execute(&mut *conn)
        .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = conn.begin().await?;
            let done: Option<i64> =
                sqlx::query_scalar("SELECT version FROM schema_migrations WHERE version = ?")
                    .bind(version)
                    .fetch_optional(&mut *tx)
                    .await?;
            if done.is_none() {
                sqlx::raw_sql(sql).execute(&mut *tx).await?;
                sqlx::query("INSERT INTO schema_migrations (version, applied_ms) VALUES (?, ?)")
                    .bind(version)
                    .bind(chrono::Utc::now().timestamp_millis())
                    .execute(&mut *tx)
                    .await?;
            }
            tx.commit().await?;
        }
        Ok(())
    }
}

impl<'q> Bind<'q> for sqlx::query::Query<'q, Sqlite, SqliteArguments<'q>> {
    bind_as_is!('q);

    /// Exact decimal text: SQLite has no exact decimal type.
    fn money(self, v: Option<Money>) -> Self {
        self.bind(v.map(|m| m.to_string()))
    }
}

impl RecordRow for SqliteRow {
    read_as_is!();

    fn money(&self, col: &str) -> Result<Option<Money>> {
        let text: Option<String> = self.try_get(col)?;
        text.as_deref().map(parse_amount).transpose()
    }
}

/// The JSON path of an annotation, `$."name"`, bound as a parameter rather than written
/// into the SQL. SQLite's path syntax has no escape for `"` in a quoted label, so names are
/// kept to `[A-Za-z0-9_.-]{1,64}`; `None` for any other name (it matches nothing).
fn annotation_path(name: &str) -> Option<String> {
    valid_annotation_name(name).then(|| format!("$.\"{name}\""))
}

const ANNOTATION: AnnotationSql = AnnotationSql {
    open: "json_extract(annotations_json, ",
    close: ")",
    key: annotation_path,
    never: "0",
};

/// Writes credit entries with multi-row INSERTs on `conn` (a transaction or a connection).
async fn insert_credits(conn: &mut sqlx::SqliteConnection, entries: &[CreditEntry]) -> Result<()> {
    for slice in entries.chunks(CREDIT_ROWS_PER_INSERT) {
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("INSERT INTO credit_entries ({CREDIT_COLUMNS}) "));
        q.push_values(slice, |mut row, e| {
            row.push_bind(e.id.clone())
                .push_bind(e.project_id.clone())
                .push_bind(e.kind.as_str())
                .push_bind(e.amount_usd.to_string())
                .push_bind(e.created_ms)
                .push_bind(e.actor.clone())
                .push_bind(e.note.clone());
        });
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Sums a column of exact decimal strings (NULL as zero) over a query's rows, streaming so
/// that a long history is never held in memory at once.
async fn sum_money(
    mut q: QueryBuilder<'_, Sqlite>,
    pool: &SqlitePool,
    columns: &[&str],
) -> Result<Money> {
    let mut total = Money::ZERO;
    let mut rows = q.build().fetch(pool);
    while let Some(row) = rows.try_next().await? {
        for column in columns {
            if let Some(amount) = row.money(column)? {
                total += amount;
            }
        }
    }
    Ok(total)
}

impl_store!(SqliteStore, Sqlite, sqlite, false, {
    async fn credit_balance(&self, project_id: &str) -> Result<Money> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT amount_usd FROM credit_entries WHERE project_id = ",
        );
        q.push_bind(project_id.to_string());
        sum_money(q, &self.pool, &["amount_usd"]).await
    }

    async fn spend(&self, scope: &SpendScope, since_ms: Option<i64>) -> Result<Money> {
        let (column, id) = scope.column();
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT cost_usd, markup_usd FROM usage_events WHERE {column} = "
        ));
        q.push_bind(id.to_string());
        if let Some(s) = since_ms {
            q.push(" AND started_ms >= ").push_bind(s);
        }
        sum_money(q, &self.pool, &["cost_usd", "markup_usd"]).await
    }
});

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    /// The conformance tests run both; this says which one each of them exercises.
    #[tokio::test]
    async fn a_file_database_writes_usage_through_its_own_connection_and_memory_through_the_pool() {
        let dir = tempfile::tempdir().unwrap();
        let file = SqliteStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        assert!(file.ledger.is_some());
        let url = format!(
            "sqlite://{}?mode=rwc",
            dir.path().join("b.sqlite").display()
        );
        assert!(SqliteStore::open_url(&url).await.unwrap().ledger.is_some());
        let memory = SqliteStore::open_url("sqlite::memory:").await.unwrap();
        assert!(memory.ledger.is_none());
    }

    #[test]
    fn annotation_paths_are_quoted_and_limited() {
        assert_eq!(annotation_path("team").as_deref(), Some("$.\"team\""));
        assert_eq!(
            annotation_path("cost.center-2_x").as_deref(),
            Some("$.\"cost.center-2_x\"")
        );
        assert_eq!(annotation_path(&"a".repeat(64)).map(|p| p.len()), Some(68));
        for bad in ["", "a\"b", "a b", "a'b", "é", "a[0]", &"a".repeat(65)] {
            assert_eq!(annotation_path(bad), None, "{bad:?}");
        }
    }
}
