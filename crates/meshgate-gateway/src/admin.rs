//! The admin REST API under `/admin/v1/`, authenticated by the admin token: keys (create,
//! list, revoke) and usage (events and summaries).

use crate::auth;
use crate::state::AppState;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use meshgate_store::{GroupBy, KeyRecord, NewKey, SummaryRow, UsageFilter};
use serde::{Deserialize, Serialize};
use std::sync::Arc;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/admin/v1/keys", post(create_key).get(list_keys))
        .route("/admin/v1/keys/{id}", axum::routing::delete(revoke_key))
        .route("/admin/v1/keys/{id}/revoke", post(revoke_key))
        .route("/admin/v1/usage", get(list_usage))
        .route("/admin/v1/usage/summary", get(usage_summary))
}

/// An admin API error: `{"error":{"message","type"}}` with its status.
pub struct AdminError(StatusCode, String);

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let kind = match self.0 {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            s if s.is_client_error() => "invalid_request_error",
            _ => "server_error",
        };
        (
            self.0,
            Json(serde_json::json!({"error": {"message": self.1, "type": kind}})),
        )
            .into_response()
    }
}

impl From<meshgate_store::StoreError> for AdminError {
    fn from(e: meshgate_store::StoreError) -> Self {
        tracing::error!(error = %e, "admin store error");
        AdminError(StatusCode::INTERNAL_SERVER_ERROR, "storage error".into())
    }
}

fn require_admin(state: &AppState, headers: &HeaderMap) -> Result<(), AdminError> {
    let token = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .map(str::trim);
    match token {
        Some(t) if auth::token_matches(t, &state.admin_token_hash) => Ok(()),
        Some(_) => Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "invalid admin token".into(),
        )),
        None => Err(AdminError(
            StatusCode::UNAUTHORIZED,
            "missing admin token: send `Authorization: Bearer <admin token>`".into(),
        )),
    }
}

#[derive(Debug, Deserialize)]
struct CreateKey {
    name: String,
    #[serde(default)]
    project_id: Option<String>,
    /// Unix milliseconds or an RFC 3339 time.
    #[serde(default)]
    expires_at: Option<TimeArg>,
}

/// A time given as unix milliseconds or as RFC 3339 text.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
enum TimeArg {
    Millis(i64),
    Text(String),
}

impl TimeArg {
    fn to_ms(&self) -> Result<i64, AdminError> {
        match self {
            TimeArg::Millis(ms) => Ok(*ms),
            TimeArg::Text(t) => parse_time(t),
        }
    }
}

fn parse_time(t: &str) -> Result<i64, AdminError> {
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            AdminError(
                StatusCode::BAD_REQUEST,
                format!("invalid time {t:?}: use unix milliseconds or RFC 3339"),
            )
        })
}

#[derive(Debug, Serialize)]
struct CreatedKey {
    #[serde(flatten)]
    key: KeyRecord,
    /// Shown once; meshgate keeps only its hash.
    secret: String,
}

async fn create_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Json(body): Json<CreateKey>,
) -> Result<(StatusCode, Json<CreatedKey>), AdminError> {
    require_admin(&state, &headers)?;
    if body.name.trim().is_empty() {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            "name must not be empty".into(),
        ));
    }
    let project_id = body.project_id.unwrap_or_else(|| "default".into());
    if project_id != "default" {
        return Err(AdminError(
            StatusCode::BAD_REQUEST,
            format!("unknown project {project_id:?}"),
        ));
    }
    let expires_ms = body.expires_at.as_ref().map(TimeArg::to_ms).transpose()?;
    let generated = auth::generate_key();
    let record = state
        .store
        .create_key(NewKey {
            id: generated.id,
            project_id,
            name: body.name,
            prefix: generated.prefix,
            secret_hash: generated.hash,
            created_ms: chrono::Utc::now().timestamp_millis(),
            expires_ms,
        })
        .await?;
    state.keys.insert(&record);
    Ok((
        StatusCode::CREATED,
        Json(CreatedKey {
            key: record,
            secret: generated.secret,
        }),
    ))
}

async fn list_keys(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
) -> Result<Json<serde_json::Value>, AdminError> {
    require_admin(&state, &headers)?;
    let keys = state.store.list_keys(None).await?;
    Ok(Json(serde_json::json!({ "data": keys })))
}

async fn revoke_key(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Path(id): Path<String>,
) -> Result<Json<KeyRecord>, AdminError> {
    require_admin(&state, &headers)?;
    let now = chrono::Utc::now().timestamp_millis();
    match state.store.revoke_key(&id, now).await? {
        Some(record) => {
            // The very next call with this key is refused: the cache drops it now.
            state.keys.remove(&record.secret_hash);
            Ok(Json(record))
        }
        None => Err(AdminError(StatusCode::NOT_FOUND, format!("no key {id:?}"))),
    }
}

#[derive(Debug, Default, Deserialize)]
struct UsageQuery {
    key_id: Option<String>,
    model: Option<String>,
    since: Option<String>,
    until: Option<String>,
    limit: Option<u32>,
    before: Option<String>,
    group_by: Option<String>,
}

impl UsageQuery {
    fn filter(&self) -> Result<UsageFilter, AdminError> {
        Ok(UsageFilter {
            project_id: None,
            key_id: self.key_id.clone(),
            model: self.model.clone(),
            since_ms: self.since.as_deref().map(parse_time).transpose()?,
            until_ms: self.until.as_deref().map(parse_time).transpose()?,
            before_id: self.before.clone(),
        })
    }
}

async fn list_usage(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<UsageQuery>,
) -> Result<Json<serde_json::Value>, AdminError> {
    require_admin(&state, &headers)?;
    let filter = query.filter()?;
    // Calls that already ended are visible: wait for the writer to catch up.
    state.ledger.flush().await;
    let page = state
        .store
        .list_usage(&filter, query.limit.unwrap_or(100))
        .await?;
    Ok(Json(serde_json::json!({
        "data": page.events,
        "next_before": page.next_before_id,
    })))
}

#[derive(Debug, Serialize)]
struct Summary {
    group_by: GroupBy,
    data: Vec<SummaryRow>,
    total: SummaryRow,
}

async fn usage_summary(
    State(state): State<Arc<AppState>>,
    headers: HeaderMap,
    Query(query): Query<UsageQuery>,
) -> Result<Json<Summary>, AdminError> {
    require_admin(&state, &headers)?;
    let group_by = match query.group_by.as_deref().unwrap_or("model") {
        "model" => GroupBy::Model,
        "key" => GroupBy::Key,
        other => {
            return Err(AdminError(
                StatusCode::BAD_REQUEST,
                format!("group_by must be model or key, not {other:?}"),
            ))
        }
    };
    let filter = query.filter()?;
    state.ledger.flush().await;
    let data = state.store.usage_summary(&filter, group_by).await?;
    let mut total = SummaryRow::default();
    for row in &data {
        total.requests += row.requests;
        total.errors += row.errors;
        total.input_uncached += row.input_uncached;
        total.cache_read += row.cache_read;
        total.cache_write += row.cache_write;
        total.output += row.output;
        total.reasoning += row.reasoning;
        total.cost_usd += row.cost_usd;
    }
    Ok(Json(Summary {
        group_by,
        data,
        total,
    }))
}
