//! `/admin/v1/usage` and `/admin/v1/usage/summary`: usage events and their totals, with
//! filters by project, key, token, user, room, delegation, model, time and annotations.

use super::views::ErrorBody;
use super::{Admin, AdminError, Params};
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use meshgate_store::{GroupBy, SummaryRow, UsageEvent, UsageFilter};
use meshgate_types::Money;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

/// Query parameter prefix of annotation filters: `annotation.<name>=<value>`.
const ANNOTATION_PARAM: &str = "annotation.";

#[derive(Debug, Serialize, ToSchema)]
pub struct UsagePageView {
    /// Usage events, newest first (request and response bodies are never kept).
    #[schema(value_type = Vec<Object>)]
    pub data: Vec<UsageEvent>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<String>,
}

/// Totals of one group; money as decimal strings (USD), summed exactly.
#[derive(Debug, Default, Serialize, ToSchema)]
pub struct SummaryRowView {
    /// The group's value (model, key id, day `YYYY-MM-DD`, annotation value, ...); null
    /// for events without one.
    pub group: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub input_uncached: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
    /// Provider cost.
    #[schema(value_type = String)]
    pub cost_usd: Money,
    /// The project's markup, charged beside the cost.
    #[schema(value_type = String)]
    pub markup_usd: Money,
}

impl From<&SummaryRow> for SummaryRowView {
    fn from(r: &SummaryRow) -> Self {
        SummaryRowView {
            group: r.group.clone(),
            requests: r.requests,
            errors: r.errors,
            input_uncached: r.input_uncached,
            cache_read: r.cache_read,
            cache_write: r.cache_write,
            output: r.output,
            reasoning: r.reasoning,
            cost_usd: r.cost_usd,
            markup_usd: r.markup_usd,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct SummaryView {
    /// As asked: `model`, `key`, `project`, `token`, `user`, `room`, `delegation`, `day`
    /// or `annotation:<name>`.
    pub group_by: String,
    pub data: Vec<SummaryRowView>,
    pub total: SummaryRowView,
}

/// Reads the filters every usage query shares; `annotation.<name>=<value>` may repeat.
fn take_filter(params: &mut Params) -> Result<UsageFilter, AdminError> {
    let annotations = params.take_prefixed(ANNOTATION_PARAM);
    if let Some((name, _)) = annotations.iter().find(|(n, _)| n.is_empty()) {
        return Err(AdminError::bad_request(format!(
            "annotation filter needs a name: annotation.<name>=<value>, not {name:?}"
        )));
    }
    Ok(UsageFilter {
        project_id: params.take("project_id"),
        key_id: params.take("key_id"),
        token_id: params.take("token_id"),
        user: params.take("user"),
        room: params.take("room"),
        delegation_id: params.take("delegation_id"),
        annotations,
        model: params.take("model"),
        since_ms: params.take_time("since")?,
        until_ms: params.take_time("until")?,
        before_id: params.take("before"),
    })
}

#[utoipa::path(
    get, path = "/admin/v1/usage", tag = "usage",
    params(
        ("project_id" = Option<String>, Query, description = "only this project"),
        ("key_id" = Option<String>, Query, description = "only this key"),
        ("token_id" = Option<String>, Query, description = "only this participant token (jti)"),
        ("user" = Option<String>, Query, description = "only this participant or OAuth user"),
        ("room" = Option<String>, Query, description = "only this room"),
        ("delegation_id" = Option<String>, Query, description = "only this delegation"),
        ("model" = Option<String>, Query, description = "only this model, as asked for"),
        ("since" = Option<String>, Query, description = "from this time (unix ms or RFC 3339), inclusive"),
        ("until" = Option<String>, Query, description = "until this time, exclusive"),
        ("annotation.{name}" = Option<String>, Query, description = "only events with this annotation value; repeat for several names"),
        ("before" = Option<String>, Query, description = "event id to page back from"),
        ("limit" = Option<u32>, Query, description = "events per page, 1 to 1000, default 100")
    ),
    responses(
        (status = 200, body = UsagePageView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)
    )
)]
pub async fn list_usage(
    _: Admin,
    State(state): State<Arc<AppState>>,
    mut params: Params,
) -> Result<Json<UsagePageView>, AdminError> {
    let filter = take_filter(&mut params)?;
    let limit = params.take_limit(100, 1000)?;
    params.finish()?;
    // Calls that already ended are visible: wait for the writer to catch up.
    state.ledger.flush().await;
    let page = state.store.list_usage(&filter, limit).await?;
    Ok(Json(UsagePageView {
        data: page.events,
        next_before: page.next_before_id,
    }))
}

#[utoipa::path(
    get, path = "/admin/v1/usage/summary", tag = "usage",
    params(
        ("group_by" = Option<String>, Query, description = "model (default), key, project, token, user, room, delegation, day or annotation:<name>"),
        ("project_id" = Option<String>, Query, description = "only this project"),
        ("key_id" = Option<String>, Query, description = "only this key"),
        ("token_id" = Option<String>, Query, description = "only this participant token (jti)"),
        ("user" = Option<String>, Query, description = "only this participant or OAuth user"),
        ("room" = Option<String>, Query, description = "only this room"),
        ("delegation_id" = Option<String>, Query, description = "only this delegation"),
        ("model" = Option<String>, Query, description = "only this model, as asked for"),
        ("since" = Option<String>, Query, description = "from this time (unix ms or RFC 3339), inclusive"),
        ("until" = Option<String>, Query, description = "until this time, exclusive"),
        ("annotation.{name}" = Option<String>, Query, description = "only events with this annotation value; repeat for several names")
    ),
    responses(
        (status = 200, body = SummaryView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody)
    )
)]
pub async fn usage_summary(
    _: Admin,
    State(state): State<Arc<AppState>>,
    mut params: Params,
) -> Result<Json<SummaryView>, AdminError> {
    let group_name = params.take("group_by").unwrap_or_else(|| "model".into());
    let group_by = GroupBy::parse(&group_name)
        .filter(|g| !matches!(g, GroupBy::Annotation(name) if name.is_empty()))
        .ok_or_else(|| {
            AdminError::bad_request(format!(
                "group_by must be model, key, project, token, user, room, delegation, day or annotation:<name>, not {group_name:?}"
            ))
        })?;
    let filter = take_filter(&mut params)?;
    params.finish()?;
    state.ledger.flush().await;
    let rows = state.store.usage_summary(&filter, group_by).await?;
    let total = SummaryRowView::from(&meshgate_store::SummaryRow::total(&rows));
    Ok(Json(SummaryView {
        group_by: group_name,
        data: rows.iter().map(SummaryRowView::from).collect(),
        total,
    }))
}
