//! `SqliteStore`: the embedded backend, one database file in the data directory (WAL mode).

use crate::model::{
    GroupBy, KeyRecord, NewKey, Outcome, SummaryRow, UsageEvent, UsageFilter, UsagePage,
};
use crate::{Result, Store, StoreError};
use async_trait::async_trait;
use meshgate_types::{Money, ServiceTier, Usage};
use sqlx::sqlite::{
    SqliteConnectOptions, SqliteJournalMode, SqlitePoolOptions, SqliteRow, SqliteSynchronous,
};
use sqlx::{QueryBuilder, Row, Sqlite, SqlitePool};
use std::collections::BTreeMap;
use std::path::Path;
use std::str::FromStr;

/// Schema migrations in order; each runs once, in a transaction.
const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../migrations/sqlite/0001_init.sql")),
    (
        2,
        include_str!("../migrations/sqlite/0002_billed_batches.sql"),
    ),
];

#[derive(Clone)]
pub struct SqliteStore {
    pool: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if needed) the database file and brings its schema up to date.
    pub async fn open(path: &Path) -> Result<SqliteStore> {
        Self::connect(Self::file_options(
            SqliteConnectOptions::new().filename(path),
        ))
        .await
    }

    /// Opens a database from a `sqlite:` URL (`sqlite::memory:` for a private in-memory one).
    pub async fn open_url(url: &str) -> Result<SqliteStore> {
        let options = SqliteConnectOptions::from_str(url)?;
        let in_memory = options
            .get_filename()
            .to_string_lossy()
            .contains(":memory:")
            || options.get_filename().as_os_str().is_empty();
        if in_memory {
            return Self::connect(options.create_if_missing(true)).await;
        }
        Self::connect(Self::file_options(options)).await
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

    async fn connect(options: SqliteConnectOptions) -> Result<SqliteStore> {
        let in_memory = options.get_filename().as_os_str().is_empty()
            || options
                .get_filename()
                .to_string_lossy()
                .contains(":memory:");
        let pool = SqlitePoolOptions::new()
            // An in-memory database lives in one connection; a file serves a few readers.
            .max_connections(if in_memory { 1 } else { 4 })
            .min_connections(if in_memory { 1 } else { 0 })
            .idle_timeout(None)
            .max_lifetime(None)
            .connect_with(options)
            .await?;
        let store = SqliteStore { pool };
        store.migrate().await?;
        Ok(store)
    }

    async fn migrate(&self) -> Result<()> {
        sqlx::raw_sql(
            "CREATE TABLE IF NOT EXISTS schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL)",
        )
        .execute(&self.pool)
        .await?;
        for (version, sql) in MIGRATIONS {
            let mut tx = self.pool.begin().await?;
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

fn key_from_row(row: &SqliteRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        secret_hash: row.try_get("secret_hash")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

const KEY_COLUMNS: &str =
    "id, project_id, name, prefix, secret_hash, created_ms, expires_ms, revoked_ms";

/// Row counts of the cached multi-row INSERTs; every batch is a sum of them. 31 columns x
/// 256 rows stays under SQLite's limit of 32766 bound values.
const INSERT_ROWS: &[usize] = &[256, 64, 16, 4, 1];

const INSERT_HEAD: &str = "INSERT INTO usage_events (id, request_id, project_id, key_id, surface, endpoint, provider, model, response_model, streamed, status, outcome, input_uncached, cache_read, cache_write_5m, cache_write_1h, output, reasoning, web_search_requests, images, characters, audio_seconds, service_tier, usage_json, cost_usd, price_id, error, upstream_request_id, started_ms, ttfb_ms, duration_ms) VALUES ";

/// The INSERT of `INSERT_ROWS[slot]` events, built once.
fn insert_sql(slot: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; INSERT_ROWS.len()] =
        [const { std::sync::OnceLock::new() }; INSERT_ROWS.len()];
    let rows = INSERT_ROWS[slot];
    SQL[slot].get_or_init(|| {
        let row = format!("({})", vec!["?"; 31].join(","));
        format!("{INSERT_HEAD}{}", vec![row; rows].join(","))
    })
}

type InsertQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

fn bind_event<'q>(q: InsertQuery<'q>, e: &'q UsageEvent, usage_json: &'q str) -> InsertQuery<'q> {
    let u = &e.usage;
    q.bind(e.id.as_str())
        .bind(e.request_id.as_str())
        .bind(e.project_id.as_str())
        .bind(e.key_id.as_deref())
        .bind(e.surface.as_str())
        .bind(e.endpoint.as_str())
        .bind(e.provider.as_str())
        .bind(e.model.as_deref())
        .bind(e.response_model.as_deref())
        .bind(e.streamed)
        .bind(e.status.map(i64::from))
        .bind(e.outcome.as_str())
        .bind(opt_u64(u.input_uncached))
        .bind(opt_u64(u.cache_read))
        .bind(opt_u64(u.cache_write_5m))
        .bind(opt_u64(u.cache_write_1h))
        .bind(opt_u64(u.output))
        .bind(opt_u64(u.reasoning))
        .bind(opt_u64(u.web_search_requests))
        .bind(opt_u64(u.images))
        .bind(opt_u64(u.characters))
        .bind(u.audio_seconds.map(|d| d.to_string()))
        .bind(u.service_tier.map(ServiceTier::as_str))
        .bind(usage_json)
        .bind(e.cost_usd.map(|m| m.to_string()))
        .bind(e.price_id.as_deref())
        .bind(e.error.as_deref())
        .bind(e.upstream_request_id.as_deref())
        .bind(e.started_ms)
        .bind(e.ttfb_ms)
        .bind(e.duration_ms)
}

fn opt_u64(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn get_u64(row: &SqliteRow, col: &str) -> Result<Option<u64>> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.map(|n| u64::try_from(n).unwrap_or(0)))
}

fn parse_money(s: Option<String>) -> Result<Option<Money>> {
    s.map(|s| {
        s.parse::<Money>()
            .map_err(|e| StoreError::Corrupt(format!("cost {s:?}: {e}")))
    })
    .transpose()
}

fn event_from_row(row: &SqliteRow) -> Result<UsageEvent> {
    let usage_json: String = row.try_get("usage_json")?;
    let usage: Usage = serde_json::from_str(&usage_json)
        .map_err(|e| StoreError::Corrupt(format!("usage_json: {e}")))?;
    let outcome: String = row.try_get("outcome")?;
    let status: Option<i64> = row.try_get("status")?;
    Ok(UsageEvent {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        project_id: row.try_get("project_id")?,
        key_id: row.try_get("key_id")?,
        surface: row.try_get("surface")?,
        endpoint: row.try_get("endpoint")?,
        provider: row.try_get("provider")?,
        model: row.try_get("model")?,
        response_model: row.try_get("response_model")?,
        streamed: row.try_get("streamed")?,
        status: status.and_then(|s| u16::try_from(s).ok()),
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome:?}")))?,
        usage,
        cost_usd: parse_money(row.try_get("cost_usd")?)?,
        price_id: row.try_get("price_id")?,
        error: row.try_get("error")?,
        upstream_request_id: row.try_get("upstream_request_id")?,
        started_ms: row.try_get("started_ms")?,
        ttfb_ms: row.try_get("ttfb_ms")?,
        duration_ms: row.try_get("duration_ms")?,
    })
}

/// Appends ` AND ...` conditions for `filter` to a query that already has a WHERE clause.
fn push_filter(q: &mut QueryBuilder<'_, Sqlite>, filter: &UsageFilter) {
    if let Some(p) = &filter.project_id {
        q.push(" AND project_id = ").push_bind(p.clone());
    }
    if let Some(k) = &filter.key_id {
        q.push(" AND key_id = ").push_bind(k.clone());
    }
    if let Some(m) = &filter.model {
        q.push(" AND model = ").push_bind(m.clone());
    }
    if let Some(s) = filter.since_ms {
        q.push(" AND started_ms >= ").push_bind(s);
    }
    if let Some(u) = filter.until_ms {
        q.push(" AND started_ms < ").push_bind(u);
    }
    if let Some(b) = &filter.before_id {
        q.push(" AND id < ").push_bind(b.clone());
    }
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_key(&self, key: NewKey) -> Result<KeyRecord> {
        sqlx::query(
            "INSERT INTO api_keys (id, project_id, name, prefix, secret_hash, created_ms, expires_ms) VALUES (?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.project_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(key.created_ms)
        .bind(key.expires_ms)
        .execute(&self.pool)
        .await?;
        Ok(KeyRecord {
            id: key.id,
            project_id: key.project_id,
            name: key.name,
            prefix: key.prefix,
            secret_hash: key.secret_hash,
            created_ms: key.created_ms,
            expires_ms: key.expires_ms,
            revoked_ms: None,
        })
    }

    async fn list_keys(&self, project_id: Option<&str>) -> Result<Vec<KeyRecord>> {
        let mut q =
            QueryBuilder::<Sqlite>::new(format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE 1=1"));
        if let Some(p) = project_id {
            q.push(" AND project_id = ").push_bind(p.to_string());
        }
        q.push(" ORDER BY created_ms, id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn revoke_key(&self, id: &str, at_ms: i64) -> Result<Option<KeyRecord>> {
        sqlx::query("UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
            .bind(at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn active_keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_ms IS NULL"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn get_setting(&self, name: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT value FROM settings WHERE name = ?")
                .bind(name)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn set_setting(&self, name: &str, value: &str) -> Result<()> {
        sqlx::query(
            "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
        )
        .bind(name)
        .bind(value)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn claim_batch_billing(
        &self,
        batch_id: &str,
        project_id: &str,
        at_ms: i64,
    ) -> Result<bool> {
        let done = sqlx::query(
            "INSERT INTO billed_batches (batch_id, project_id, claimed_ms) VALUES (?, ?, ?) ON CONFLICT(batch_id) DO NOTHING",
        )
        .bind(batch_id)
        .bind(project_id)
        .bind(at_ms)
        .execute(&self.pool)
        .await?;
        Ok(done.rows_affected() == 1)
    }

    async fn release_batch_billing(&self, batch_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM billed_batches WHERE batch_id = ?")
            .bind(batch_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_usage(&self, events: &[UsageEvent]) -> Result<()> {
        // Multi-row INSERTs of a few fixed sizes, largest first: a statement per event costs
        // a round trip to SQLite's worker thread each, and a statement per batch size would
        // be parsed anew every time (or, cached, hold megabytes per size). These few stay
        // prepared in the connection's cache.
        let usage_json = events
            .iter()
            .map(|e| serde_json::to_string(&e.usage))
            .collect::<std::result::Result<Vec<_>, _>>()
            .map_err(|err| StoreError::Corrupt(format!("usage: {err}")))?;
        let mut tx = self.pool.begin().await?;
        let mut rest = events.iter().zip(usage_json.iter());
        let mut left = events.len();
        for (slot, &rows) in INSERT_ROWS.iter().enumerate() {
            while left >= rows {
                let mut q = sqlx::query(insert_sql(slot));
                for (e, json) in rest.by_ref().take(rows) {
                    q = bind_event(q, e, json);
                }
                q.execute(&mut *tx).await?;
                left -= rows;
            }
        }
        tx.commit().await?;
        Ok(())
    }

    async fn list_usage(&self, filter: &UsageFilter, limit: u32) -> Result<UsagePage> {
        let limit = limit.clamp(1, 1000);
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM usage_events WHERE 1=1");
        push_filter(&mut q, filter);
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(i64::from(limit) + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let more = events.len() > limit as usize;
        events.truncate(limit as usize);
        let next_before_id = if more {
            events.last().map(|e| e.id.clone())
        } else {
            None
        };
        Ok(UsagePage {
            events,
            next_before_id,
        })
    }

    async fn usage_summary(
        &self,
        filter: &UsageFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>> {
        let column = match group_by {
            GroupBy::Model => "model",
            GroupBy::Key => "key_id",
        };
        // Costs are exact decimal strings: SQLite would sum them as floats, so sum in Rust.
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {column} AS grp, outcome, input_uncached, cache_read, cache_write_5m, cache_write_1h, output, reasoning, cost_usd FROM usage_events WHERE 1=1"
        ));
        push_filter(&mut q, filter);
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut groups: BTreeMap<Option<String>, SummaryRow> = BTreeMap::new();
        for row in &rows {
            let group: Option<String> = row.try_get("grp")?;
            let outcome: String = row.try_get("outcome")?;
            let entry = groups.entry(group.clone()).or_insert_with(|| SummaryRow {
                group,
                ..SummaryRow::default()
            });
            entry.requests += 1;
            if outcome != Outcome::Ok.as_str() {
                entry.errors += 1;
            }
            entry.input_uncached += get_u64(row, "input_uncached")?.unwrap_or(0);
            entry.cache_read += get_u64(row, "cache_read")?.unwrap_or(0);
            entry.cache_write += get_u64(row, "cache_write_5m")?.unwrap_or(0)
                + get_u64(row, "cache_write_1h")?.unwrap_or(0);
            entry.output += get_u64(row, "output")?.unwrap_or(0);
            entry.reasoning += get_u64(row, "reasoning")?.unwrap_or(0);
            if let Some(cost) = parse_money(row.try_get("cost_usd")?)? {
                entry.cost_usd += cost;
            }
        }
        Ok(groups.into_values().collect())
    }
}
