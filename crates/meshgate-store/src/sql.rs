//! What the SQLite and PostgreSQL backends share: the statements both engines run as written
//! (kept here once, with `?` placeholders that PostgreSQL gets numbered), the row decoders
//! and value binders written once over both row and query types, and the Rust-side pieces
//! of queries (usage filters, summaries, paging). Each backend keeps its dialect's own SQL
//! in its own file.

use crate::model::{
    AuditEvent, CreditEntry, CreditKind, GroupBy, KeyRecord, Outcome, ProjectRecord,
    ProjectSettings, ProviderCredential, SigningKeyRecord, SummaryRow, UsageEvent, UsageFilter,
};
use crate::{Result, StoreError};
use meshgate_types::{Money, ServiceTier, Usage};
use sqlx::{Database, Encode, QueryBuilder, Type};
use std::collections::BTreeMap;
use std::sync::OnceLock;

/// A statement both engines run as written but for placeholders: `?` for SQLite, numbered
/// `$1, $2, ...` for PostgreSQL (made once, on first use).
pub(crate) struct Statement {
    text: &'static str,
    numbered: OnceLock<String>,
}

impl Statement {
    pub(crate) const fn new(text: &'static str) -> Statement {
        Statement {
            text,
            numbered: OnceLock::new(),
        }
    }

    pub(crate) fn sqlite(&self) -> &'static str {
        self.text
    }

    pub(crate) fn postgres(&'static self) -> &'static str {
        self.numbered.get_or_init(|| number_placeholders(self.text))
    }
}

/// `?` to `$1, $2, ...`. The shared statements hold no `?` inside quotes (JSON paths and
/// the like are bound values), so every `?` is a placeholder.
pub(crate) fn number_placeholders(sql: &str) -> String {
    let mut out = String::with_capacity(sql.len() + 16);
    let mut n = 0;
    for c in sql.chars() {
        if c == '?' {
            n += 1;
            out.push('$');
            out.push_str(&n.to_string());
        } else {
            out.push(c);
        }
    }
    out
}

macro_rules! key_columns {
    () => {
        "id, project_id, name, prefix, secret_hash, created_ms, expires_ms, revoked_ms, policy_json, rotated_ms, previous_secret_hash, previous_expires_ms"
    };
}
macro_rules! project_columns {
    () => {
        "id, name, created_ms, settings_json"
    };
}
macro_rules! signing_key_columns {
    () => {
        "id, project_id, algorithm, material, created_ms, revoked_ms"
    };
}
macro_rules! credential_columns {
    () => {
        "project_id, provider, sealed_api_key, base_url, updated_ms"
    };
}
macro_rules! audit_columns {
    () => {
        "id, at_ms, actor, project_id, action, target, details_json"
    };
}
macro_rules! credit_columns {
    () => {
        "id, project_id, kind, amount_usd, created_ms, actor, note"
    };
}

pub(crate) const KEY_COLUMNS: &str = key_columns!();
pub(crate) const SIGNING_KEY_COLUMNS: &str = signing_key_columns!();
pub(crate) const CREDENTIAL_COLUMNS: &str = credential_columns!();
pub(crate) const AUDIT_COLUMNS: &str = audit_columns!();
pub(crate) const CREDIT_COLUMNS: &str = credit_columns!();

pub(crate) static INSERT_PROJECT: Statement = Statement::new(concat!(
    "INSERT INTO projects (",
    project_columns!(),
    ") VALUES (?, ?, ?, ?)"
));
pub(crate) static GET_PROJECT: Statement = Statement::new(concat!(
    "SELECT ",
    project_columns!(),
    " FROM projects WHERE id = ?"
));
pub(crate) static LIST_PROJECTS: Statement = Statement::new(concat!(
    "SELECT ",
    project_columns!(),
    " FROM projects ORDER BY created_ms, id"
));
// created_ms is not the caller's to change: the stored one comes back.
pub(crate) static UPDATE_PROJECT: Statement = Statement::new(concat!(
    "UPDATE projects SET name = ?, settings_json = ? WHERE id = ? RETURNING ",
    project_columns!()
));
pub(crate) static INSERT_KEY: Statement = Statement::new(
    "INSERT INTO api_keys (id, project_id, name, prefix, secret_hash, created_ms, expires_ms, policy_json) VALUES (?, ?, ?, ?, ?, ?, ?, ?)",
);
pub(crate) static GET_KEY: Statement = Statement::new(concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE id = ?"
));
pub(crate) static REVOKE_KEY: Statement =
    Statement::new("UPDATE api_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL");
pub(crate) static ACTIVE_KEYS: Statement = Statement::new(concat!(
    "SELECT ",
    key_columns!(),
    " FROM api_keys WHERE revoked_ms IS NULL"
));
pub(crate) static UPDATE_KEY: Statement = Statement::new(concat!(
    "UPDATE api_keys SET name = ?, expires_ms = ?, policy_json = ? WHERE id = ? RETURNING ",
    key_columns!()
));
// One statement: the right-hand sides read the row as it was, so the current hash moves to
// previous_secret_hash as the new one replaces it. Without a grace period the previous hash
// is cleared and the old secret stops at once. A second rotation within the grace period
// drops the oldest secret.
pub(crate) static ROTATE_KEY: Statement = Statement::new(concat!(
    "UPDATE api_keys SET \
       previous_secret_hash = CASE WHEN ? IS NULL THEN NULL ELSE secret_hash END, \
       previous_expires_ms = ?, secret_hash = ?, prefix = ?, rotated_ms = ? \
     WHERE id = ? AND revoked_ms IS NULL RETURNING ",
    key_columns!()
));
pub(crate) static INSERT_SIGNING_KEY: Statement = Statement::new(concat!(
    "INSERT INTO signing_keys (",
    signing_key_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?)"
));
pub(crate) static REVOKE_SIGNING_KEY: Statement =
    Statement::new("UPDATE signing_keys SET revoked_ms = ? WHERE id = ? AND revoked_ms IS NULL");
pub(crate) static GET_SIGNING_KEY: Statement = Statement::new(concat!(
    "SELECT ",
    signing_key_columns!(),
    " FROM signing_keys WHERE id = ?"
));
pub(crate) static UPSERT_CREDENTIAL: Statement = Statement::new(concat!(
    "INSERT INTO provider_credentials (",
    credential_columns!(),
    ") VALUES (?, ?, ?, ?, ?) \
     ON CONFLICT(project_id, provider) DO UPDATE SET sealed_api_key = excluded.sealed_api_key, \
     base_url = excluded.base_url, updated_ms = excluded.updated_ms"
));
pub(crate) static DELETE_CREDENTIAL: Statement =
    Statement::new("DELETE FROM provider_credentials WHERE project_id = ? AND provider = ?");
pub(crate) static INSERT_AUDIT: Statement = Statement::new(concat!(
    "INSERT INTO audit_events (",
    audit_columns!(),
    ") VALUES (?, ?, ?, ?, ?, ?, ?)"
));
pub(crate) static GET_SETTING: Statement =
    Statement::new("SELECT value FROM settings WHERE name = ?");
pub(crate) static SET_SETTING: Statement = Statement::new(
    "INSERT INTO settings (name, value) VALUES (?, ?) ON CONFLICT(name) DO UPDATE SET value = excluded.value",
);
pub(crate) static CLAIM_BATCH: Statement = Statement::new(
    "INSERT INTO billed_batches (batch_id, project_id, claimed_ms) VALUES (?, ?, ?) ON CONFLICT(batch_id) DO NOTHING",
);
pub(crate) static RELEASE_BATCH: Statement =
    Statement::new("DELETE FROM billed_batches WHERE batch_id = ?");
pub(crate) static RECORD_OWNER: Statement = Statement::new(
    "INSERT INTO resource_owners (resource_id, project_id, kind, created_ms) VALUES (?, ?, ?, ?) ON CONFLICT(resource_id) DO NOTHING",
);
pub(crate) static RESOURCE_OWNER: Statement =
    Statement::new("SELECT project_id FROM resource_owners WHERE resource_id = ?");

/// `usage_events` columns in the order [`bind_event`] binds them.
pub(crate) const USAGE_INSERT_COLUMNS: &[&str] = &[
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

/// SQLite's default ceiling on bound parameters in one statement (since 3.32); PostgreSQL's
/// is 65535.
pub(crate) const MAX_BOUND_PARAMETERS: usize = 32766;

/// Row counts of the cached multi-row INSERTs; every batch is a sum of them. A statement
/// per event costs a round trip each, and a statement per batch size would be parsed anew
/// every time (or, cached, hold megabytes per size); these few stay prepared.
pub(crate) const INSERT_ROWS: &[usize] = &[256, 64, 16, 4, 1];
const _: () = assert!(INSERT_ROWS[0] * USAGE_INSERT_COLUMNS.len() <= MAX_BOUND_PARAMETERS);

/// Credit entries per multi-row INSERT (7 columns each).
pub(crate) const CREDIT_ROWS_PER_INSERT: usize = MAX_BOUND_PARAMETERS / 7;

/// The INSERT of `INSERT_ROWS[slot]` events, built once per engine.
pub(crate) fn insert_usage_sql(slot: usize, numbered: bool) -> &'static str {
    static SQL: [[OnceLock<String>; INSERT_ROWS.len()]; 2] =
        [const { [const { OnceLock::new() }; INSERT_ROWS.len()] }; 2];
    SQL[usize::from(numbered)][slot].get_or_init(|| {
        let row = format!("({})", vec!["?"; USAGE_INSERT_COLUMNS.len()].join(","));
        let sql = format!(
            "INSERT INTO usage_events ({}) VALUES {}",
            USAGE_INSERT_COLUMNS.join(", "),
            vec![row; INSERT_ROWS[slot]].join(",")
        );
        if numbered {
            number_placeholders(&sql)
        } else {
            sql
        }
    })
}

/// Binding of values to a statement, the same calls for both engines; money goes as exact
/// decimal text to SQLite and as NUMERIC to PostgreSQL.
pub(crate) trait Bind<'q>: Sized {
    fn text(self, v: &'q str) -> Self;
    fn opt_text(self, v: Option<&'q str>) -> Self;
    fn owned_text(self, v: Option<String>) -> Self;
    fn int(self, v: i64) -> Self;
    fn opt_int(self, v: Option<i64>) -> Self;
    fn flag(self, v: bool) -> Self;
    fn money(self, v: Option<Money>) -> Self;
}

/// The [`Bind`] methods that bind a value as it is, for an engine's `impl Bind<'q>`.
macro_rules! bind_as_is {
    ($q:lifetime) => {
        fn text(self, v: &$q str) -> Self {
            self.bind(v)
        }
        fn opt_text(self, v: Option<&$q str>) -> Self {
            self.bind(v)
        }
        fn owned_text(self, v: Option<String>) -> Self {
            self.bind(v)
        }
        fn int(self, v: i64) -> Self {
            self.bind(v)
        }
        fn opt_int(self, v: Option<i64>) -> Self {
            self.bind(v)
        }
        fn flag(self, v: bool) -> Self {
            self.bind(v)
        }
    };
}
pub(crate) use bind_as_is;

/// Binds one event in the order of [`USAGE_INSERT_COLUMNS`].
pub(crate) fn bind_event<'q, B: Bind<'q>>(
    q: B,
    e: &'q UsageEvent,
    usage_json: &'q str,
    annotations_json: &'q str,
) -> B {
    let u = &e.usage;
    q.text(&e.id)
        .text(&e.request_id)
        .text(&e.project_id)
        .opt_text(e.key_id.as_deref())
        .opt_text(e.token_id.as_deref())
        .opt_text(e.user.as_deref())
        .opt_text(e.room.as_deref())
        .opt_text(e.delegation_id.as_deref())
        .text(annotations_json)
        .text(&e.surface)
        .text(&e.endpoint)
        .text(&e.provider)
        .opt_text(e.model.as_deref())
        .opt_text(e.requested_model.as_deref())
        .opt_text(e.deployment.as_deref())
        .opt_text(e.response_model.as_deref())
        .flag(e.streamed)
        .opt_int(e.status.map(i64::from))
        .text(e.outcome.as_str())
        .opt_int(opt_u64(u.input_uncached))
        .opt_int(opt_u64(u.cache_read))
        .opt_int(opt_u64(u.cache_write_5m))
        .opt_int(opt_u64(u.cache_write_1h))
        .opt_int(opt_u64(u.output))
        .opt_int(opt_u64(u.reasoning))
        .opt_int(opt_u64(u.web_search_requests))
        .opt_int(opt_u64(u.images))
        .opt_int(opt_u64(u.characters))
        .owned_text(u.audio_seconds.map(|d| d.to_string()))
        .opt_text(u.service_tier.map(ServiceTier::as_str))
        .text(usage_json)
        .money(e.cost_usd)
        .money(e.markup_usd)
        .opt_text(e.price_id.as_deref())
        .opt_text(e.error.as_deref())
        .opt_text(e.upstream_request_id.as_deref())
        .int(e.started_ms)
        .opt_int(e.ttfb_ms)
        .int(e.duration_ms)
}

/// The JSON of each event's usage and annotations, made before a transaction opens.
pub(crate) fn event_json(events: &[UsageEvent]) -> Result<Vec<(String, String)>> {
    events
        .iter()
        .map(|e| {
            Ok((
                to_json("usage", &e.usage)?,
                to_json("annotations", &e.annotations)?,
            ))
        })
        .collect()
}

/// Binds a key's fields for [`INSERT_KEY`].
pub(crate) fn bind_new_key<'q, B: Bind<'q>>(
    q: B,
    key: &'q crate::NewKey,
    policy_json: &'q str,
) -> B {
    q.text(&key.id)
        .text(&key.project_id)
        .text(&key.name)
        .text(&key.prefix)
        .text(&key.secret_hash)
        .int(key.created_ms)
        .opt_int(key.expires_ms)
        .text(policy_json)
}

pub(crate) fn bind_signing_key<'q, B: Bind<'q>>(q: B, key: &'q SigningKeyRecord) -> B {
    q.text(&key.id)
        .text(&key.project_id)
        .text(&key.algorithm)
        .text(&key.material)
        .int(key.created_ms)
        .opt_int(key.revoked_ms)
}

pub(crate) fn bind_credential<'q, B: Bind<'q>>(q: B, c: &'q ProviderCredential) -> B {
    q.text(&c.project_id)
        .text(&c.provider)
        .text(&c.sealed_api_key)
        .opt_text(c.base_url.as_deref())
        .int(c.updated_ms)
}

pub(crate) fn bind_audit<'q, B: Bind<'q>>(q: B, e: &'q AuditEvent, details: &'q str) -> B {
    q.text(&e.id)
        .int(e.at_ms)
        .text(&e.actor)
        .opt_text(e.project_id.as_deref())
        .text(&e.action)
        .opt_text(e.target.as_deref())
        .text(details)
}

pub(crate) fn bind_rotation<'q, B: Bind<'q>>(
    q: B,
    id: &'q str,
    new_prefix: &'q str,
    new_secret_hash: &'q str,
    previous_expires_ms: Option<i64>,
    at_ms: i64,
) -> B {
    q.opt_int(previous_expires_ms)
        .opt_int(previous_expires_ms)
        .text(new_secret_hash)
        .text(new_prefix)
        .int(at_ms)
        .text(id)
}

/// Reading a row's columns, the same calls for both engines.
pub(crate) trait RecordRow {
    fn text(&self, col: &str) -> Result<String>;
    fn opt_text(&self, col: &str) -> Result<Option<String>>;
    fn int(&self, col: &str) -> Result<i64>;
    fn opt_int(&self, col: &str) -> Result<Option<i64>>;
    fn flag(&self, col: &str) -> Result<bool>;
    fn money(&self, col: &str) -> Result<Option<Money>>;
}

/// The [`RecordRow`] methods that read a column as it is, for an engine's `impl RecordRow`.
macro_rules! read_as_is {
    () => {
        fn text(&self, col: &str) -> Result<String> {
            Ok(self.try_get(col)?)
        }
        fn opt_text(&self, col: &str) -> Result<Option<String>> {
            Ok(self.try_get(col)?)
        }
        fn int(&self, col: &str) -> Result<i64> {
            Ok(self.try_get(col)?)
        }
        fn opt_int(&self, col: &str) -> Result<Option<i64>> {
            Ok(self.try_get(col)?)
        }
        fn flag(&self, col: &str) -> Result<bool> {
            Ok(self.try_get(col)?)
        }
    };
}
pub(crate) use read_as_is;

pub(crate) fn to_json<T: serde::Serialize>(what: &str, value: &T) -> Result<String> {
    serde_json::to_string(value).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn from_json<T: serde::de::DeserializeOwned>(what: &str, text: &str) -> Result<T> {
    serde_json::from_str(text).map_err(|e| StoreError::Corrupt(format!("{what}: {e}")))
}

pub(crate) fn key_from_row(row: &impl RecordRow) -> Result<KeyRecord> {
    Ok(KeyRecord {
        id: row.text("id")?,
        project_id: row.text("project_id")?,
        name: row.text("name")?,
        prefix: row.text("prefix")?,
        secret_hash: row.text("secret_hash")?,
        created_ms: row.int("created_ms")?,
        expires_ms: row.opt_int("expires_ms")?,
        revoked_ms: row.opt_int("revoked_ms")?,
        policy: from_json("policy_json", &row.text("policy_json")?)?,
        rotated_ms: row.opt_int("rotated_ms")?,
        previous_secret_hash: row.opt_text("previous_secret_hash")?,
        previous_expires_ms: row.opt_int("previous_expires_ms")?,
    })
}

pub(crate) fn project_from_row(row: &impl RecordRow) -> Result<ProjectRecord> {
    Ok(ProjectRecord {
        id: row.text("id")?,
        name: row.text("name")?,
        created_ms: row.int("created_ms")?,
        settings: from_json::<ProjectSettings>("settings_json", &row.text("settings_json")?)?,
    })
}

pub(crate) fn signing_key_from_row(row: &impl RecordRow) -> Result<SigningKeyRecord> {
    Ok(SigningKeyRecord {
        id: row.text("id")?,
        project_id: row.text("project_id")?,
        algorithm: row.text("algorithm")?,
        material: row.text("material")?,
        created_ms: row.int("created_ms")?,
        revoked_ms: row.opt_int("revoked_ms")?,
    })
}

pub(crate) fn credential_from_row(row: &impl RecordRow) -> Result<ProviderCredential> {
    Ok(ProviderCredential {
        project_id: row.text("project_id")?,
        provider: row.text("provider")?,
        sealed_api_key: row.text("sealed_api_key")?,
        base_url: row.opt_text("base_url")?,
        updated_ms: row.int("updated_ms")?,
    })
}

pub(crate) fn credit_from_row(row: &impl RecordRow) -> Result<CreditEntry> {
    let kind = row.text("kind")?;
    Ok(CreditEntry {
        id: row.text("id")?,
        project_id: row.text("project_id")?,
        kind: CreditKind::parse(&kind)
            .ok_or_else(|| StoreError::Corrupt(format!("credit kind {kind:?}")))?,
        amount_usd: row
            .money("amount_usd")?
            .ok_or_else(|| StoreError::Corrupt("credit amount missing".into()))?,
        created_ms: row.int("created_ms")?,
        actor: row.opt_text("actor")?,
        note: row.opt_text("note")?,
    })
}

pub(crate) fn audit_from_row(row: &impl RecordRow) -> Result<AuditEvent> {
    Ok(AuditEvent {
        id: row.text("id")?,
        at_ms: row.int("at_ms")?,
        actor: row.text("actor")?,
        project_id: row.opt_text("project_id")?,
        action: row.text("action")?,
        target: row.opt_text("target")?,
        details: from_json("details_json", &row.text("details_json")?)?,
    })
}

pub(crate) fn event_from_row(row: &impl RecordRow) -> Result<UsageEvent> {
    let usage: Usage = from_json("usage_json", &row.text("usage_json")?)?;
    let outcome = row.text("outcome")?;
    Ok(UsageEvent {
        id: row.text("id")?,
        request_id: row.text("request_id")?,
        project_id: row.text("project_id")?,
        key_id: row.opt_text("key_id")?,
        token_id: row.opt_text("token_id")?,
        user: row.opt_text("user_name")?,
        room: row.opt_text("room")?,
        delegation_id: row.opt_text("delegation_id")?,
        annotations: from_json("annotations_json", &row.text("annotations_json")?)?,
        surface: row.text("surface")?,
        endpoint: row.text("endpoint")?,
        provider: row.text("provider")?,
        model: row.opt_text("model")?,
        requested_model: row.opt_text("requested_model")?,
        deployment: row.opt_text("deployment")?,
        response_model: row.opt_text("response_model")?,
        streamed: row.flag("streamed")?,
        status: row.opt_int("status")?.and_then(|s| u16::try_from(s).ok()),
        outcome: Outcome::parse(&outcome)
            .ok_or_else(|| StoreError::Corrupt(format!("outcome {outcome:?}")))?,
        usage,
        cost_usd: row.money("cost_usd")?,
        markup_usd: row.money("markup_usd")?,
        price_id: row.opt_text("price_id")?,
        error: row.opt_text("error")?,
        upstream_request_id: row.opt_text("upstream_request_id")?,
        started_ms: row.int("started_ms")?,
        ttfb_ms: row.opt_int("ttfb_ms")?,
        duration_ms: row.int("duration_ms")?,
    })
}

pub(crate) fn opt_u64(v: Option<u64>) -> Option<i64> {
    v.map(|n| i64::try_from(n).unwrap_or(i64::MAX))
}

fn get_u64(row: &impl RecordRow, col: &str) -> Result<u64> {
    Ok(row
        .opt_int(col)?
        .map(|n| u64::try_from(n).unwrap_or(0))
        .unwrap_or(0))
}

pub(crate) fn parse_amount(s: &str) -> Result<Money> {
    s.parse::<Money>()
        .map_err(|e| StoreError::Corrupt(format!("amount {s:?}: {e}")))
}

/// Clamps a page size to 1..=1000, as every listing does.
pub(crate) fn page_limit(limit: u32) -> i64 {
    i64::from(limit.clamp(1, 1000))
}

/// Annotation names kept to `[A-Za-z0-9_.-]{1,64}` on every engine (SQLite's JSON path
/// syntax has no escape for `"`); any other name matches nothing.
pub(crate) fn valid_annotation_name(name: &str) -> bool {
    (1..=64).contains(&name.len())
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'_' | b'.' | b'-'))
}

/// `YYYY-MM-DD` of a unix-millisecond time, in UTC.
pub(crate) fn utc_day(ms: i64) -> Option<String> {
    chrono::DateTime::<chrono::Utc>::from_timestamp_millis(ms)
        .map(|t| t.format("%Y-%m-%d").to_string())
}

/// How an engine reads one annotation's value: the SQL before the bound key, and the key
/// bound for a name (`None` when the name is not allowed).
pub(crate) struct AnnotationSql {
    pub open: &'static str,
    pub close: &'static str,
    pub key: fn(&str) -> Option<String>,
    /// A condition that is always false, in the engine's spelling.
    pub never: &'static str,
}

/// Appends ` AND ...` conditions for `filter` to a query that already has a WHERE clause.
pub(crate) fn push_filter<'a, DB: Database>(
    q: &mut QueryBuilder<'a, DB>,
    filter: &UsageFilter,
    annotation: &AnnotationSql,
) where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
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
        match (annotation.key)(name) {
            Some(key) => {
                q.push(" AND ")
                    .push(annotation.open)
                    .push_bind(key)
                    .push(annotation.close)
                    .push(" = ")
                    .push_bind(value.clone());
            }
            None => {
                q.push(" AND ").push(annotation.never);
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

/// Appends the audit listing's ` AND ...` conditions: since inclusive, until exclusive, as
/// for usage.
pub(crate) fn push_audit_filter<'a, DB: Database>(
    q: &mut QueryBuilder<'a, DB>,
    filter: &crate::AuditFilter,
) where
    String: Encode<'a, DB> + Type<DB>,
    i64: Encode<'a, DB> + Type<DB>,
{
    if let Some(p) = &filter.project_id {
        q.push(" AND project_id = ").push_bind(p.clone());
    }
    if let Some(a) = &filter.action {
        q.push(" AND action = ").push_bind(a.clone());
    }
    if let Some(s) = filter.since_ms {
        q.push(" AND at_ms >= ").push_bind(s);
    }
    if let Some(u) = filter.until_ms {
        q.push(" AND at_ms < ").push_bind(u);
    }
    if let Some(b) = &filter.before_id {
        q.push(" AND id < ").push_bind(b.clone());
    }
}

/// `SELECT <columns> FROM <table>`, of one project when given, in `order`.
pub(crate) fn project_listing<'a, DB: Database>(
    columns: &str,
    table: &str,
    project_id: Option<&str>,
    order: &str,
) -> QueryBuilder<'a, DB>
where
    String: Encode<'a, DB> + Type<DB>,
    DB::Arguments<'a>: Default,
{
    let mut q = QueryBuilder::new(format!("SELECT {columns} FROM {table} WHERE 1=1"));
    if let Some(p) = project_id {
        q.push(" AND project_id = ").push_bind(p.to_string());
    }
    q.push(" ORDER BY ").push(order);
    q
}

/// `SELECT <group> AS grp, ...` of a usage summary: the group comes from a column, from
/// the annotation (its key bound, never written into the SQL), or for days from
/// started_ms in Rust (exact UTC, any engine alike).
pub(crate) fn push_summary_select<'a, DB: Database>(
    q: &mut QueryBuilder<'a, DB>,
    group_by: &GroupBy,
    annotation: &AnnotationSql,
) where
    String: Encode<'a, DB> + Type<DB>,
{
    match group_by {
        GroupBy::Model => q.push("model"),
        GroupBy::Key => q.push("key_id"),
        GroupBy::Project => q.push("project_id"),
        GroupBy::Token => q.push("token_id"),
        GroupBy::User => q.push("user_name"),
        GroupBy::Room => q.push("room"),
        GroupBy::Delegation => q.push("delegation_id"),
        GroupBy::Day => q.push("NULL"),
        GroupBy::Annotation(name) => match (annotation.key)(name) {
            Some(key) => q
                .push(annotation.open)
                .push_bind(key)
                .push(annotation.close),
            None => q.push("NULL"),
        },
    };
    q.push(" AS grp, started_ms, outcome, input_uncached, cache_read, cache_write_5m, cache_write_1h, output, reasoning, cost_usd, markup_usd FROM usage_events WHERE 1=1");
}

/// Usage totals per group, summed exactly in Rust from the rows of
/// [`push_summary_select`].
#[derive(Default)]
pub(crate) struct Summary {
    groups: BTreeMap<Option<String>, SummaryRow>,
}

impl Summary {
    pub(crate) fn add(&mut self, row: &impl RecordRow, group_by: &GroupBy) -> Result<()> {
        let group: Option<String> = match group_by {
            GroupBy::Day => utc_day(row.int("started_ms")?),
            _ => row.opt_text("grp")?,
        };
        let outcome = row.text("outcome")?;
        let entry = self
            .groups
            .entry(group.clone())
            .or_insert_with(|| SummaryRow {
                group,
                ..SummaryRow::default()
            });
        entry.requests += 1;
        if outcome != Outcome::Ok.as_str() {
            entry.errors += 1;
        }
        entry.input_uncached += get_u64(row, "input_uncached")?;
        entry.cache_read += get_u64(row, "cache_read")?;
        entry.cache_write += get_u64(row, "cache_write_5m")? + get_u64(row, "cache_write_1h")?;
        entry.output += get_u64(row, "output")?;
        entry.reasoning += get_u64(row, "reasoning")?;
        if let Some(cost) = row.money("cost_usd")? {
            entry.cost_usd += cost;
        }
        if let Some(markup) = row.money("markup_usd")? {
            entry.markup_usd += markup;
        }
        Ok(())
    }

    pub(crate) fn rows(self) -> Vec<SummaryRow> {
        self.groups.into_values().collect()
    }
}

/// Cuts a listing fetched with one row more than `limit` to a page and its cursor.
pub(crate) fn usage_page(mut events: Vec<UsageEvent>, limit: i64) -> crate::UsagePage {
    let limit = usize::try_from(limit).unwrap_or(1000);
    let more = events.len() > limit;
    events.truncate(limit);
    let next_before_id = if more {
        events.last().map(|e| e.id.clone())
    } else {
        None
    };
    crate::UsagePage {
        events,
        next_before_id,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn placeholders_are_numbered_in_order() {
        assert_eq!(
            number_placeholders("UPDATE t SET a = ?, b = ? WHERE id = ?"),
            "UPDATE t SET a = $1, b = $2 WHERE id = $3"
        );
        assert_eq!(REVOKE_KEY.sqlite(), REVOKE_KEY.text);
        assert!(ROTATE_KEY.postgres().contains("CASE WHEN $1 IS NULL"));
        assert!(ROTATE_KEY.postgres().contains("WHERE id = $6 AND"));
        let insert = insert_usage_sql(4, true);
        assert!(insert.ends_with(&format!("${})", USAGE_INSERT_COLUMNS.len())));
        assert!(!insert.contains('?'));
    }

    #[test]
    fn annotation_names_are_limited() {
        assert!(valid_annotation_name("team"));
        assert!(valid_annotation_name("cost.center-2_x"));
        assert!(valid_annotation_name(&"a".repeat(64)));
        for bad in ["", "a\"b", "a b", "a'b", "é", "a[0]", &"a".repeat(65)] {
            assert!(!valid_annotation_name(bad), "{bad:?}");
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
