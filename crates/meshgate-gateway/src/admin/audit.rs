//! `/admin/v1/audit`: the log of admin actions (who did what to which object), newest
//! first. Its records never hold a secret.

use super::views::ErrorBody;
use super::{Admin, AdminError, Params};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use meshgate_store::{AuditEvent, AuditFilter};
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditEventView {
    pub id: String,
    pub at_ms: i64,
    /// Who acted: `admin` for the admin API.
    pub actor: String,
    pub project_id: Option<String>,
    /// `key.created`, `project.updated`, `credits.added`, `provider.set`, ...
    pub action: String,
    /// The object acted on (key id, project id, provider, signing key id, token jti, ...).
    pub target: Option<String>,
    #[schema(value_type = Object)]
    pub details: serde_json::Value,
}

impl From<AuditEvent> for AuditEventView {
    fn from(e: AuditEvent) -> Self {
        AuditEventView {
            id: e.id,
            at_ms: e.at_ms,
            actor: e.actor,
            project_id: e.project_id,
            action: e.action,
            target: e.target,
            details: e.details,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct AuditList {
    /// Newest first.
    pub data: Vec<AuditEventView>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<String>,
}

#[utoipa::path(
    get, path = "/admin/v1/audit", tag = "audit",
    params(
        ("project_id" = Option<String>, Query, description = "only this project"),
        ("action" = Option<String>, Query, description = "only this action, e.g. key.created"),
        ("since" = Option<String>, Query, description = "from this time (unix ms or RFC 3339), inclusive"),
        ("until" = Option<String>, Query, description = "until this time, exclusive"),
        ("before" = Option<String>, Query, description = "event id to page back from"),
        ("limit" = Option<u32>, Query, description = "events per page, 1 to 1000, default 100")
    ),
    responses(
        (status = 200, body = AuditList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)
    )
)]
pub async fn list_audit(
    _: Admin,
    State(state): State<Arc<AppState>>,
    mut params: Params,
) -> Result<Json<AuditList>, AdminError> {
    let filter = AuditFilter {
        project_id: params.take("project_id"),
        action: params.take("action"),
        since_ms: params.take_time("since")?,
        until_ms: params.take_time("until")?,
        before_id: params.take("before"),
    };
    let limit = params.take_limit(100, 1000)?;
    params.finish()?;
    let events = state.store.list_audit(&filter, limit).await?;
    let next_before = if events.len() == limit as usize {
        events.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(Json(AuditList {
        data: events.into_iter().map(AuditEventView::from).collect(),
        next_before,
    }))
}
