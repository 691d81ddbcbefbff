//! `SqliteStore`: the embedded backend, one database file in the data directory (WAL mode).
//!
//! Money is stored as exact decimal TEXT and summed in Rust with [`Money`]: SQLite would sum
//! it as floating point. Usage, credit and audit ids sort by time (uuid v7 or prefixed
//! sortable ids), so their listings are newest first by `ORDER BY id DESC`, paged with
//! `before_id`.

use crate::model::{
    AuditEvent, AuditFilter, CreditEntry, CreditKind, GroupBy, KeyRecord, NewKey, Outcome, Policy,
    ProjectRecord, ProjectSettings, ProviderCredential, ResourceOwner, SigningKeyRecord,
    SpendScope, SummaryRow, UsageEvent, UsageFilter, UsagePage,
};
use crate::{Result, Store, StoreError};
use async_trait::async_trait;
use futures_util::TryStreamExt;
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

/// SQLite's default ceiling on bound parameters in one statement (since 3.32).
const MAX_BOUND_PARAMETERS: usize = 32766;

/// `usage_events` columns in the order `insert_usage` binds them.
const USAGE_INSERT_COLUMNS: &[&str] = &[
    "id",
    "request_id",
    "project_id",
    "key_id",
    "token_id",
    "user_name",
    "room",
    "delegation_id",
    "annotations_json",
    "surface",
    "endpoint",
    "provider",
    "model",
    "requested_model",
    "deployment",
    "response_model",
    "streamed",
    "status",
    "outcome",
    "input_uncached",
    "cache_read",
    "cache_write_5m",
    "cache_write_1h",
    "output",
    "reasoning",
    "web_search_requests",
    "images",
    "characters",
    "audio_seconds",
    "service_tier",
    "usage_json",
    "cost_usd",
    "markup_usd",
    "price_id",
    "error",
    "upstream_request_id",
    "started_ms",
    "ttfb_ms",
    "duration_ms",
];

/// Row counts of the cached multi-row INSERTs; every batch is a sum of them.
const INSERT_ROWS: &[usize] = &[256, 64, 16, 4, 1];
const _: () = assert!(INSERT_ROWS[0] * USAGE_INSERT_COLUMNS.len() <= MAX_BOUND_PARAMETERS);

/// The INSERT of `INSERT_ROWS[slot]` events, built once.
fn insert_sql(slot: usize) -> &'static str {
    static SQL: [std::sync::OnceLock<String>; INSERT_ROWS.len()] =
        [const { std::sync::OnceLock::new() }; INSERT_ROWS.len()];
    SQL[slot].get_or_init(|| {
        let row = format!("({})", vec!["?"; USAGE_INSERT_COLUMNS.len()].join(","));
        format!(
            "INSERT INTO usage_events ({}) VALUES {}",
            USAGE_INSERT_COLUMNS.join(", "),
            vec![row; INSERT_ROWS[slot]].join(",")
        )
    })
}

type InsertQuery<'q> = sqlx::query::Query<'q, Sqlite, sqlx::sqlite::SqliteArguments<'q>>;

/// Binds one event in the order of `USAGE_INSERT_COLUMNS`.
fn bind_event<'q>(
    q: InsertQuery<'q>,
    e: &'q UsageEvent,
    usage_json: &'q str,
    annotations_json: &'q str,
) -> InsertQuery<'q> {
    let u = &e.usage;
    q.bind(e.id.as_str())
        .bind(e.request_id.as_str())
        .bind(e.project_id.as_str())
        .bind(e.key_id.as_deref())
        .bind(e.token_id.as_deref())
        .bind(e.user.as_deref())
        .bind(e.room.as_deref())
        .bind(e.delegation_id.as_deref())
        .bind(annotations_json)
        .bind(e.surface.as_str())
        .bind(e.endpoint.as_str())
        .bind(e.provider.as_str())
        .bind(e.model.as_deref())
        .bind(e.requested_model.as_deref())
        .bind(e.deployment.as_deref())
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
        .bind(e.markup_usd.map(|m| m.to_string()))
        .bind(e.price_id.as_deref())
        .bind(e.error.as_deref())
        .bind(e.upstream_request_id.as_deref())
        .bind(e.started_ms)
        .bind(e.ttfb_ms)
        .bind(e.duration_ms)
}

const CREDIT_COLUMNS: &str = "id, project_id, kind, amount_usd, created_ms, actor, note";
/// Credit entries per multi-row INSERT (7 columns each).
const CREDIT_ROWS_PER_INSERT: usize = MAX_BOUND_PARAMETERS / 7;

const KEY_COLUMNS: &str = "id, project_id, name, prefix, secret_hash, created_ms, expires_ms, revoked_ms, policy_json, rotated_ms, previous_secret_hash, previous_expires_ms";
const PROJECT_COLUMNS: &str = "id, name, created_ms, settings_json";
const SIGNING_KEY_COLUMNS: &str = "id, project_id, algorithm, material, created_ms, revoked_ms";
const CREDENTIAL_COLUMNS: &str = "project_id, provider, sealed_api_key, base_url, updated_ms";
const AUDIT_COLUMNS: &str = "id, at_ms, actor, project_id, action, target, details_json";

fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

fn key_from_row(row: &SqliteRow) -> Result<KeyRecord> {
    let policy: String = row.try_get("policy_json")?;
    Ok(KeyRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        name: row.try_get("name")?,
        prefix: row.try_get("prefix")?,
        secret_hash: row.try_get("secret_hash")?,
        created_ms: row.try_get("created_ms")?,
        expires_ms: row.try_get("expires_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
        policy: from_json("policy_json", &policy)?,
        rotated_ms: row.try_get("rotated_ms")?,
        previous_secret_hash: row.try_get("previous_secret_hash")?,
        previous_expires_ms: row.try_get("previous_expires_ms")?,
    })
}

fn project_from_row(row: &SqliteRow) -> Result<ProjectRecord> {
    let settings: String = row.try_get("settings_json")?;
    Ok(ProjectRecord {
        id: row.try_get("id")?,
        name: row.try_get("name")?,
        created_ms: row.try_get("created_ms")?,
        settings: from_json::<ProjectSettings>("settings_json", &settings)?,
    })
}

fn signing_key_from_row(row: &SqliteRow) -> Result<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        algorithm: row.try_get("algorithm")?,
        material: row.try_get("material")?,
        created_ms: row.try_get("created_ms")?,
        revoked_ms: row.try_get("revoked_ms")?,
    })
}

fn credential_from_row(row: &SqliteRow) -> Result<ProviderCredential> {
    Ok(ProviderCredential {
        project_id: row.try_get("project_id")?,
        provider: row.try_get("provider")?,
        sealed_api_key: row.try_get("sealed_api_key")?,
        base_url: row.try_get("base_url")?,
        updated_ms: row.try_get("updated_ms")?,
    })
}

fn credit_from_row(row: &SqliteRow) -> Result<CreditEntry> {
    let kind: String = row.try_get("kind")?;
    let amount: String = row.try_get("amount_usd")?;
    Ok(CreditEntry {
        id: row.try_get("id")?,
        project_id: row.try_get("project_id")?,
        kind: CreditKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("credit kind {kind:?}")))?,
        amount_usd: parse_amount(&amount)?,
        created_ms: row.try_get("created_ms")?,
        actor: row.try_get("actor")?,
        note: row.try_get("note")?,
    })
}

fn audit_from_row(row: &SqliteRow) -> Result<AuditEvent> {
    let details: String = row.try_get("details_json")?;
    Ok(AuditEvent {
        id: row.try_get("id")?,
        at_ms: row.try_get("at_ms")?,
        actor: row.try_get("actor")?,
        project_id: row.try_get("project_id")?,
        action: row.try_get("action")?,
        target: row.try_get("target")?,
        details: from_json("details_json", &details)?,
    })
}

fn opt_u64(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn get_u64(row: &SqliteRow, col: &str) -> Result<Option<u64>> {
    let v: Option<i64> = row.try_get(col)?;
    Ok(v.map(|n| u64::try_from(n).unwrap_or(0)))
}

fn parse_amount(s: &str) -> Result<Money> {
    s.parse::<Money>()
        .map_err(|e| StoreError::Corrupt(format!("amount {s:?}: {e}")))
}

fn parse_money(s: Option<String>) -> Result<Option<Money>> {
    s.as_deref().map(parse_amount).transpose()
}

/// Clamps a page size to 1..=1000, as every listing does.
fn page_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 1000))
}

/// The JSON path of an annotation, `$."name"`, bound as a parameter rather than written
/// into the SQL. SQLite's path syntax has no escape for `"` in a quoted label, so names are
/// kept to `[A-Za-z0-9_.-]{1,64}`; `None` for any other name (it matches nothing).
fn annotation_path(name: &str) -> Option<String> {
    let valid = (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'));
    valid.then(|| format!("$.\"{name}\""))
}

/// `YYYY-MM-DD` of a unix-millisecond time, in UTC.
fn utc_day(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
}

fn event_from_row(row: &SqliteRow) -> Result<UsageEvent> {
    let usage_json: String = row.try_get("usage_json")?;
    let usage: Usage = from_json("usage_json", &usage_json)?;
    let annotations_json: String = row.try_get("annotations_json")?;
    let outcome: String = row.try_get("outcome")?;
    let status: Option<i64> = row.try_get("status")?;
    Ok(UsageEvent {
        id: row.try_get("id")?,
        request_id: row.try_get("request_id")?,
        project_id: row.try_get("project_id")?,
        key_id: row.try_get("key_id")?,
        token_id: row.try_get("token_id")?,
        user: row.try_get("user_name")?,
        room: row.try_get("room")?,
        delegation_id: row.try_get("delegation_id")?,
        annotations: from_json("annotations_json", &annotations_json)?,
        surface: row.try_get("surface")?,
        endpoint: row.try_get("endpoint")?,
        provider: row.try_get("provider")?,
        model: row.try_get("model")?,
        requested_model: row.try_get("requested_model")?,
        deployment: row.try_get("deployment")?,
        response_model: row.try_get("response_model")?,
        streamed: row.try_get("streamed")?,
        status: status.and_then(|s| u16::try_from(s).ok()),
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome:?}")))?,
        usage,
        cost_usd: parse_money(row.try_get("cost_usd")?)?,
        markup_usd: parse_money(row.try_get("markup_usd")?)?,
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
    let columns = [
        ("project_id", &filter.project_id),
        ("key_id", &filter.key_id),
        ("token_id", &filter.token_id),
        ("user_name", &filter.user),
        ("room", &filter.room),
        ("delegation_id", &filter.delegation_id),
        ("model", &filter.model),
    ];
    for (column, value) in columns {
        if let Some(v) = value {
            q.push(format_args!(" AND {column} = "))
                .push_bind(v.clone());
        }
    }
    for (name, value) in &filter.annotations {
        match annotation_path(name) {
            Some(path) => {
                q.push(" AND json_extract(annotations_json, ")
                    .push_bind(path)
                    .push(") = ")
                    .push_bind(value.clone());
            }
            None => {
                q.push(" AND 0");
            }
        }
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
            if let Some(amount) = parse_money(row.try_get(*column)?)? {
                total += amount;
            }
        }
    }
    Ok(total)
}

#[async_trait]
impl Store for SqliteStore {
    async fn create_project(&self, project: ProjectRecord) -> Result<ProjectRecord> {
        sqlx::query(&format!(
            "INSERT INTO projects ({PROJECT_COLUMNS}) VALUES (?, ?, ?, ?)"
        ))
        .bind(&project.id)
        .bind(&project.name)
        .bind(project.created_ms)
        .bind(to_json("settings", &project.settings)?)
        .execute(&self.pool)
        .await?;
        Ok(project)
    }

    async fn get_project(&self, id: &str) -> Result<Option<ProjectRecord>> {
        let row = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn list_projects(&self) -> Result<Vec<ProjectRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {PROJECT_COLUMNS} FROM projects ORDER BY created_ms, id"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(project_from_row).collect()
    }

    async fn update_project(&self, project: ProjectRecord) -> Result<Option<ProjectRecord>> {
        // created_ms is not the caller's to change: the stored one comes back.
        let row = sqlx::query(&format!(
            "UPDATE projects SET name = ?, settings_json = ? WHERE id = ? RETURNING {PROJECT_COLUMNS}"
        ))
        .bind(&project.name)
        .bind(to_json("settings", &project.settings)?)
        .bind(&project.id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(project_from_row).transpose()
    }

    async fn create_key(&self, key: NewKey) -> Result<KeyRecord> {
        sqlx::query(
            "INSERT INTO api_keys (id, project_id, name, prefix, secret_hash, created_ms, expires_ms, policy_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
        )
        .bind(&key.id)
        .bind(&key.project_id)
        .bind(&key.name)
        .bind(&key.prefix)
        .bind(&key.secret_hash)
        .bind(key.created_ms)
        .bind(key.expires_ms)
        .bind(to_json("policy", &key.policy)?)
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
            policy: key.policy,
            rotated_ms: None,
            previous_secret_hash: None,
            previous_expires_ms: None,
        })
    }

    async fn get_key(&self, id: &str) -> Result<Option<KeyRecord>> {
        let row = sqlx::query(&format!("SELECT {KEY_COLUMNS} FROM api_keys WHERE id = ?"))
            .bind(id)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(key_from_row).transpose()
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
        self.get_key(id).await
    }

    async fn active_keys(&self) -> Result<Vec<KeyRecord>> {
        let rows = sqlx::query(&format!(
            "SELECT {KEY_COLUMNS} FROM api_keys WHERE revoked_ms IS NULL"
        ))
        .fetch_all(&self.pool)
        .await?;
        rows.iter().map(key_from_row).collect()
    }

    async fn update_key(
        &self,
        id: &str,
        name: &str,
        expires_ms: Option<i64>,
        policy: &Policy,
    ) -> Result<Option<KeyRecord>> {
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET name = ?, expires_ms = ?, policy_json = ? WHERE id = ? RETURNING {KEY_COLUMNS}"
        ))
        .bind(name)
        .bind(expires_ms)
        .bind(to_json("policy", policy)?)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn rotate_key(
        &self,
        id: &str,
        new_prefix: &str,
        new_secret_hash: &str,
        previous_expires_ms: Option<i64>,
        at_ms: i64,
    ) -> Result<Option<KeyRecord>> {
        // One statement: the right-hand sides read the row as it was, so the current hash
        // moves to previous_secret_hash as the new one replaces it. Without a grace period
        // the previous hash is cleared and the old secret stops at once. A second rotation
        // within the grace period drops the oldest secret.
        let row = sqlx::query(&format!(
            "UPDATE api_keys SET \
               previous_secret_hash = CASE WHEN ? IS NULL THEN NULL ELSE secret_hash END, \
               previous_expires_ms = ?, secret_hash = ?, prefix = ?, rotated_ms = ? \
             WHERE id = ? AND revoked_ms IS NULL RETURNING {KEY_COLUMNS}"
        ))
        .bind(previous_expires_ms)
        .bind(previous_expires_ms)
        .bind(new_secret_hash)
        .bind(new_prefix)
        .bind(at_ms)
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(key_from_row).transpose()
    }

    async fn create_signing_key(&self, key: SigningKeyRecord) -> Result<SigningKeyRecord> {
        sqlx::query(&format!(
            "INSERT INTO signing_keys ({SIGNING_KEY_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?)"
        ))
        .bind(&key.id)
        .bind(&key.project_id)
        .bind(&key.algorithm)
        .bind(&key.material)
        .bind(key.created_ms)
        .bind(key.revoked_ms)
        .execute(&self.pool)
        .await?;
        Ok(key)
    }

    async fn list_signing_keys(&self, project_id: Option<&str>) -> Result<Vec<SigningKeyRecord>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys WHERE 1=1"
        ));
        if let Some(p) = project_id {
            q.push(" AND project_id = ").push_bind(p.to_string());
        }
        q.push(" ORDER BY created_ms, id");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(signing_key_from_row).collect()
    }

    async fn revoke_signing_key(&self, id: &str, at_ms: i64) -> Result<Option<SigningKeyRecord>> {
        sqlx::query("UPDATE signing_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL")
            .bind(at_ms)
            .bind(id)
            .execute(&self.pool)
            .await?;
        let row = sqlx::query(&format!(
            "SELECT {SIGNING_KEY_COLUMNS} FROM signing_keys WHERE id = ?"
        ))
        .bind(id)
        .fetch_optional(&self.pool)
        .await?;
        row.as_ref().map(signing_key_from_row).transpose()
    }

    async fn set_provider_credential(&self, credential: ProviderCredential) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO provider_credentials ({CREDENTIAL_COLUMNS}) VALUES (?, ?, ?, ?, ?) \
             ON CONFLICT(project_id, provider) DO UPDATE SET sealed_api_key = excluded.sealed_api_key, \
             base_url = excluded.base_url, updated_ms = excluded.updated_ms"
        ))
        .bind(&credential.project_id)
        .bind(&credential.provider)
        .bind(&credential.sealed_api_key)
        .bind(&credential.base_url)
        .bind(credential.updated_ms)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn delete_provider_credential(&self, project_id: &str, provider: &str) -> Result<bool> {
        let done =
            sqlx::query("DELETE FROM provider_credentials WHERE project_id = ? AND provider = ?")
                .bind(project_id)
                .bind(provider)
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() > 0)
    }

    async fn list_provider_credentials(
        &self,
        project_id: Option<&str>,
    ) -> Result<Vec<ProviderCredential>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {CREDENTIAL_COLUMNS} FROM provider_credentials WHERE 1=1"
        ));
        if let Some(p) = project_id {
            q.push(" AND project_id = ").push_bind(p.to_string());
        }
        q.push(" ORDER BY project_id, provider");
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(credential_from_row).collect()
    }

    async fn add_credit_entry(&self, entry: CreditEntry) -> Result<()> {
        let mut conn = self.pool.acquire().await?;
        insert_credits(&mut conn, std::slice::from_ref(&entry)).await
    }

    async fn list_credit_entries(
        &self,
        project_id: &str,
        before_id: Option<&str>,
        limit: u32,
    ) -> Result<Vec<CreditEntry>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {CREDIT_COLUMNS} FROM credit_entries WHERE project_id = "
        ));
        q.push_bind(project_id.to_string());
        if let Some(b) = before_id {
            q.push(" AND id < ").push_bind(b.to_string());
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(page_limit(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(credit_from_row).collect()
    }

    async fn credit_balance(&self, project_id: &str) -> Result<Money> {
        let mut q = QueryBuilder::<Sqlite>::new(
            "SELECT amount_usd FROM credit_entries WHERE project_id = ",
        );
        q.push_bind(project_id.to_string());
        sum_money(q, &self.pool, &["amount_usd"]).await
    }

    async fn spend(&self, scope: &SpendScope, since_ms: Option<i64>) -> Result<Money> {
        let (column, id) = match scope {
            SpendScope::Project(id) => ("project_id", id),
            SpendScope::Key(id) => ("key_id", id),
            SpendScope::Delegation(id) => ("delegation_id", id),
        };
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT cost_usd, markup_usd FROM usage_events WHERE {column} = "
        ));
        q.push_bind(id.clone());
        if let Some(s) = since_ms {
            q.push(" AND started_ms >= ").push_bind(s);
        }
        sum_money(q, &self.pool, &["cost_usd", "markup_usd"]).await
    }

    async fn record_audit(&self, event: AuditEvent) -> Result<()> {
        sqlx::query(&format!(
            "INSERT INTO audit_events ({AUDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(&event.id)
        .bind(event.at_ms)
        .bind(&event.actor)
        .bind(&event.project_id)
        .bind(&event.action)
        .bind(&event.target)
        .bind(to_json("details", &event.details)?)
        .execute(&self.pool)
        .await?;
        Ok(())
    }

    async fn list_audit(&self, filter: &AuditFilter, limit: u32) -> Result<Vec<AuditEvent>> {
        let mut q = QueryBuilder::<Sqlite>::new(format!(
            "SELECT {AUDIT_COLUMNS} FROM audit_events WHERE 1=1"
        ));
        if let Some(p) = &filter.project_id {
            q.push(" AND project_id = ").push_bind(p.clone());
        }
        if let Some(a) = &filter.action {
            q.push(" AND action = ").push_bind(a.clone());
        }
        // Like usage: since inclusive, until exclusive.
        if let Some(s) = filter.since_ms {
            q.push(" AND at_ms >= ").push_bind(s);
        }
        if let Some(u) = filter.until_ms {
            q.push(" AND at_ms < ").push_bind(u);
        }
        if let Some(b) = &filter.before_id {
            q.push(" AND id < ").push_bind(b.clone());
        }
        q.push(" ORDER BY id DESC LIMIT ")
            .push_bind(page_limit(limit));
        let rows = q.build().fetch_all(&self.pool).await?;
        rows.iter().map(audit_from_row).collect()
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

    async fn record_owners(&self, owners: &[ResourceOwner]) -> Result<()> {
        let mut tx = self.pool.begin().await?;
        for o in owners {
            sqlx::query(
                "INSERT INTO resource_owners (resource_id, project_id, kind, created_ms) VALUES (?, ?, ?, ?) ON CONFLICT(resource_id) DO NOTHING",
            )
            .bind(&o.resource_id)
            .bind(&o.project_id)
            .bind(&o.kind)
            .bind(o.created_ms)
            .execute(&mut *tx)
            .await?;
        }
        tx.commit().await?;
        Ok(())
    }

    async fn resource_owner(&self, resource_id: &str) -> Result<Option<String>> {
        Ok(
            sqlx::query_scalar("SELECT project_id FROM resource_owners WHERE resource_id = ?")
                .bind(resource_id)
                .fetch_optional(&self.pool)
                .await?,
        )
    }

    async fn release_batch_billing(&self, batch_id: &str) -> Result<()> {
        sqlx::query("DELETE FROM billed_batches WHERE batch_id = ?")
            .bind(batch_id)
            .execute(&self.pool)
            .await?;
        Ok(())
    }

    async fn insert_usage(&self, events: &[UsageEvent], debits: &[CreditEntry]) -> Result<()> {
        // Multi-row INSERTs of a few fixed sizes, largest first: a statement per event costs
        // a round trip to SQLite's worker thread each, and a statement per batch size would
        // be parsed anew every time (or, cached, hold megabytes per size). These few stay
        // prepared in the connection's cache. Events and debits share one transaction, so
        // a balance never shows a debit without its event, nor the reverse.
        let mut json = Vec::with_capacity(events.len());
        for e in events {
            json.push((
                to_json("usage", &e.usage)?,
                to_json("annotations", &e.annotations)?,
            ));
        }
        let mut tx = self.pool.begin().await?;
        let mut rest = events.iter().zip(json.iter());
        let mut left = events.len();
        for (slot, &rows) in INSERT_ROWS.iter().enumerate() {
            while left >= rows {
                let mut q = sqlx::query(insert_sql(slot));
                for (e, (usage_json, annotations_json)) in rest.by_ref().take(rows) {
                    q = bind_event(q, e, usage_json, annotations_json);
                }
                q.execute(&mut *tx).await?;
                left -= rows;
            }
        }
        insert_credits(&mut tx, debits).await?;
        tx.commit().await?;
        Ok(())
    }

    async fn list_usage(&self, filter: &UsageFilter, limit: u32) -> Result<UsagePage> {
        let limit = page_limit(limit);
        let mut q = QueryBuilder::<Sqlite>::new("SELECT * FROM usage_events WHERE 1=1");
        push_filter(&mut q, filter);
        q.push(" ORDER BY id DESC LIMIT ").push_bind(limit + 1);
        let rows = q.build().fetch_all(&self.pool).await?;
        let mut events = rows
            .iter()
            .map(event_from_row)
            .collect::<Result<Vec<_>>>()?;
        let limit = usize::try_from(limit).unwrap_or(1000);
        let more = events.len() > limit;
        events.truncate(limit);
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

    async fn get_usage_event(&self, id: &str) -> Result<Option<UsageEvent>> {
        sqlx::query("SELECT * FROM usage_events WHERE id = ?")
            .bind(id)
            .fetch_optional(&self.pool)
            .await?
            .as_ref()
            .map(event_from_row)
            .transpose()
    }

    async fn usage_summary(
        &self,
        filter: &UsageFilter,
        group_by: GroupBy,
    ) -> Result<Vec<SummaryRow>> {
        // The group comes from a column, from the annotation (path bound, never written
        // into the SQL), or for days from started_ms in Rust (exact UTC, any backend alike).
        let mut q = QueryBuilder::<Sqlite>::new("SELECT ");
        match &group_by {
            GroupBy::Model => q.push("model"),
            GroupBy::Key => q.push("key_id"),
            GroupBy::Project => q.push("project_id"),
            GroupBy::Token => q.push("token_id"),
            GroupBy::User => q.push("user_name"),
            GroupBy::Room => q.push("room"),
            GroupBy::Delegation => q.push("delegation_id"),
            GroupBy::Day => q.push("NULL"),
            GroupBy::Annotation(name) => match annotation_path(name) {
                Some(path) => q
                    .push("json_extract(annotations_json, ")
                    .push_bind(path)
                    .push(")"),
                None => q.push("NULL"),
            },
        };
        // Costs are exact decimal strings: SQLite would sum them as floats, so sum in Rust.
        q.push(" AS grp, started_ms, outcome, input_uncached, cache_read, cache_write_5m, cache_write_1h, output, reasoning, cost_usd, markup_usd FROM usage_events WHERE 1=1");
        push_filter(&mut q, filter);
        let mut groups: BTreeMap<Option<String>, SummaryRow> = BTreeMap::new();
        let mut rows = q.build().fetch(&self.pool);
        while let Some(row) = rows.try_next().await? {
            let group: Option<String> = match group_by {
                GroupBy::Day => utc_day(row.try_get("started_ms")?),
                _ => row.try_get("grp")?,
            };
            let outcome: String = row.try_get("outcome")?;
            let entry = groups.entry(group.clone()).or_insert_with(|| SummaryRow {
                group,
                ..SummaryRow::default()
            });
            entry.requests += 1;
            if outcome != Outcome::Ok.as_str() {
                entry.errors += 1;
            }
            entry.input_uncached += get_u64(&row, "input_uncached")?.unwrap_or(0);
            entry.cache_read += get_u64(&row, "cache_read")?.unwrap_or(0);
            entry.cache_write += get_u64(&row, "cache_write_5m")?.unwrap_or(0)
                + get_u64(&row, "cache_write_1h")?.unwrap_or(0);
            entry.output += get_u64(&row, "output")?.unwrap_or(0);
            entry.reasoning += get_u64(&row, "reasoning")?.unwrap_or(0);
            if let Some(cost) = parse_money(row.try_get("cost_usd")?)? {
                entry.cost_usd += cost;
            }
            if let Some(markup) = parse_money(row.try_get("markup_usd")?)? {
                entry.markup_usd += markup;
            }
        }
        Ok(groups.into_values().collect())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

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

    #[test]
    fn days_are_utc_dates() {
        assert_eq!(utc_day(0).as_deref(), Some("1970-01-01"));
        assert_eq!(utc_day(1_735_775_999_999).as_deref(), Some("2025-01-01"));
        assert_eq!(utc_day(1_735_776_000_000).as_deref(), Some("2025-01-02"));
        assert_eq!(utc_day(-1).as_deref(), Some("1969-12-31"));
    }
}
