//! `/admin/v1/projects/{id}/credits`: adding to a project's credit ledger (grants,
//! purchases, refunds, adjustments; usage debits come only from settlement) and reading it
//! with its balance.

use super::views::ErrorBody;
use super::{audit, now_ms, ordered_id, require_project, Admin, AdminError, Body, Params, ACTOR};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshgate_store::{CreditEntry, CreditKind};
use meshgate_types::Money;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditEntryView {
    pub id: String,
    pub project_id: String,
    /// `grant`, `purchase`, `usage_debit`, `refund` or `adjustment`.
    pub kind: String,
    /// Decimal string, USD; debits are negative.
    #[schema(value_type = String)]
    pub amount_usd: Money,
    pub created_ms: i64,
    pub actor: Option<String>,
    pub note: Option<String>,
}

impl From<&CreditEntry> for CreditEntryView {
    fn from(e: &CreditEntry) -> Self {
        CreditEntryView {
            id: e.id.clone(),
            project_id: e.project_id.clone(),
            kind: e.kind.as_str().into(),
            amount_usd: e.amount_usd,
            created_ms: e.created_ms,
            actor: e.actor.clone(),
            note: e.note.clone(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct CreditList {
    /// The sum of every entry, decimal string (USD).
    #[schema(value_type = String)]
    pub balance_usd: Money,
    /// Newest first.
    pub data: Vec<CreditEntryView>,
    /// Pass as `before` for the next (older) page; null on the last page.
    pub next_before: Option<String>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct AddCredits {
    /// `grant`, `purchase`, `refund` or `adjustment`.
    pub kind: String,
    /// Decimal string, USD: positive, or of either sign for an `adjustment`.
    #[schema(value_type = String, example = "25.00")]
    pub amount_usd: Money,
    #[serde(default)]
    pub note: Option<String>,
}

#[utoipa::path(
    post, path = "/admin/v1/projects/{id}/credits", tag = "credits",
    params(("id" = String, Path, description = "project id")),
    request_body = AddCredits,
    responses(
        (status = 201, body = CreditEntryView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn add_credits(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(project_id): Path<String>,
    Body(body): Body<AddCredits>,
) -> Result<(StatusCode, Json<CreditEntryView>), AdminError> {
    require_project(&state, &project_id).await?;
    let kind = match CreditKind::parse(&body.kind) {
        Some(CreditKind::UsageDebit) => {
            return Err(AdminError::bad_request(
                "usage_debit entries come from settled calls only",
            ))
        }
        Some(kind) => kind,
        None => {
            return Err(AdminError::bad_request(format!(
                "kind must be grant, purchase, refund or adjustment, not {:?}",
                body.kind
            )))
        }
    };
    let amount = body.amount_usd;
    if amount == Money::ZERO {
        return Err(AdminError::bad_request("amount_usd must not be zero"));
    }
    if amount < Money::ZERO && kind != CreditKind::Adjustment {
        return Err(AdminError::bad_request(
            "amount_usd must be positive; only an adjustment may be negative",
        ));
    }
    let entry = CreditEntry {
        id: ordered_id("cre"),
        project_id: project_id.clone(),
        kind,
        amount_usd: amount,
        created_ms: now_ms(),
        actor: Some(ACTOR.into()),
        note: body.note.filter(|n| !n.trim().is_empty()),
    };
    state.store.add_credit_entry(entry.clone()).await?;
    // The in-memory balance admission reads follows the ledger without a reload.
    state.budgets.adjust_credits(&project_id, amount).await;
    let view = CreditEntryView::from(&entry);
    audit(
        &state,
        Some(&project_id),
        "credits.added",
        Some(&entry.id),
        serde_json::json!({ "kind": view.kind, "amount_usd": view.amount_usd, "note": view.note }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    get, path = "/admin/v1/projects/{id}/credits", tag = "credits",
    params(
        ("id" = String, Path, description = "project id"),
        ("before" = Option<String>, Query, description = "entry id to page back from"),
        ("limit" = Option<u32>, Query, description = "entries per page, 1 to 1000, default 100")
    ),
    responses(
        (status = 200, body = CreditList),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn list_credits(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(project_id): Path<String>,
    mut params: Params,
) -> Result<Json<CreditList>, AdminError> {
    let before = params.take("before");
    let limit = params.take_limit(100, 1000)?;
    params.finish()?;
    require_project(&state, &project_id).await?;
    // Usage debits of calls that already ended count: let the writer catch up first.
    state.ledger.flush().await;
    let entries = state
        .store
        .list_credit_entries(&project_id, before.as_deref(), limit)
        .await?;
    let balance_usd = state.store.credit_balance(&project_id).await?;
    let next_before = if entries.len() == limit as usize {
        entries.last().map(|e| e.id.clone())
    } else {
        None
    };
    Ok(Json(CreditList {
        balance_usd,
        data: entries.iter().map(CreditEntryView::from).collect(),
        next_before,
    }))
}
