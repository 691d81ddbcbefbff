//! What a caller can ask meshgate about itself, with its own credential: the models it may
//! use (`GET /v1/models`, both surfaces, with meshgate's prices), its own usage
//! (`GET /v1/usage`, `GET /v1/usage/summary`), the metering of one of its calls
//! (`GET /v1/usage/events/{id}`, the id from the call's `meshgate-event-id` header), who it
//! is (`GET /v1/me`), and delegations for the agents it runs (`POST /v1/delegations`).

use crate::admit;
use crate::auth::{self, Principal};
use crate::budget::{Account, Period};
use crate::classify::Route;
use crate::error::{ErrorKind, GatewayError};
use crate::state::AppState;
use axum::body::Body;
use axum::response::Response;
use http::{header, HeaderValue, Method, StatusCode};
use meshgate_store::{GroupBy, ProjectSettings, UsageFilter};
use meshgate_types::{Money, Surface};
use serde::Deserialize;
use std::time::Duration;

/// The meshgate-own paths below `/v1/` (and `/openai/v1/`, `/anthropic/v1/`).
pub fn is_selfserve(rest: &str) -> bool {
    matches!(rest, "usage" | "usage/summary" | "me" | "delegations")
        || rest.starts_with(EVENTS_PREFIX)
}

/// `usage/events/{id}`: one event of the caller's project.
const EVENTS_PREFIX: &str = "usage/events/";

/// The longest `GET /v1/usage/events/{id}?wait_ms=` may wait for the event to be written.
pub const MAX_EVENT_WAIT: Duration = Duration::from_secs(30);

/// Splits a path into its surface and the part after `/v1/`, for meshgate's own paths.
pub fn selfserve_path(path: &str) -> Option<(Surface, &str)> {
    let (surface, rest) = if let Some(rest) = path.strip_prefix("/anthropic/v1/") {
        (Surface::Anthropic, rest)
    } else if let Some(rest) = path.strip_prefix("/openai/v1/") {
        (Surface::OpenAi, rest)
    } else {
        (Surface::OpenAi, path.strip_prefix("/v1/")?)
    };
    is_selfserve(rest).then_some((surface, rest))
}

fn json_response(status: StatusCode, value: &serde_json::Value, request_id: &str) -> Response {
    let mut response = Response::new(Body::from(value.to_string()));
    *response.status_mut() = status;
    let headers = response.headers_mut();
    headers.insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/json"),
    );
    if let Ok(v) = HeaderValue::from_str(request_id) {
        headers.insert(crate::REQUEST_ID_HEADER, v);
    }
    response
}

/// Serves one of meshgate's own paths for an authenticated caller.
pub async fn serve(
    state: &AppState,
    method: &Method,
    rest: &str,
    query: Option<&str>,
    body: bytes::Bytes,
    principal: &Principal,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let not_allowed = || {
        GatewayError::new(
            ErrorKind::MethodNotAllowed,
            format!("{method} is not allowed on /v1/{rest}"),
        )
    };
    let value = match rest {
        "usage" if method == Method::GET => usage(state, principal, query).await?,
        "usage/summary" if method == Method::GET => usage_summary(state, principal, query).await?,
        "me" if method == Method::GET => me(state, principal).await?,
        _ if method == Method::GET && rest.starts_with(EVENTS_PREFIX) => {
            let id = &rest[EVENTS_PREFIX.len()..];
            usage_event(state, principal, id, query).await?
        }
        "delegations" if method == Method::POST => {
            let created = delegate(state, principal, &body)?;
            return Ok(json_response(StatusCode::CREATED, &created, request_id));
        }
        _ => return Err(not_allowed()),
    };
    Ok(json_response(StatusCode::OK, &value, request_id))
}

#[derive(Debug, Default, Deserialize)]
struct UsageQuery {
    model: Option<String>,
    since: Option<String>,
    until: Option<String>,
    before: Option<String>,
    limit: Option<u32>,
    group_by: Option<String>,
}

fn parse_query(query: Option<&str>) -> Result<UsageQuery, GatewayError> {
    serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| GatewayError::new(ErrorKind::InvalidRequest, format!("invalid query: {e}")))
}

/// Times as the admin API reads them (unix milliseconds or RFC 3339).
fn parse_time(t: &str) -> Result<i64, GatewayError> {
    crate::admin::parse_time(t).map_err(|e| GatewayError::new(ErrorKind::InvalidRequest, e.1))
}

/// The caller's own events only: its key, its delegation, or its participant or user
/// identity, always within its project.
fn own_filter(principal: &Principal, query: &UsageQuery) -> Result<UsageFilter, GatewayError> {
    let mut filter = UsageFilter {
        project_id: Some(principal.project_id.clone()),
        model: query.model.clone(),
        since_ms: query.since.as_deref().map(parse_time).transpose()?,
        until_ms: query.until.as_deref().map(parse_time).transpose()?,
        before_id: query.before.clone(),
        ..UsageFilter::default()
    };
    if let Some(d) = &principal.delegation {
        filter.delegation_id = Some(d.id.clone());
    } else if let Some(key) = principal.key_id() {
        filter.key_id = Some(key.to_string());
    } else {
        filter.user = principal.user.clone();
    }
    Ok(filter)
}

async fn usage(
    state: &AppState,
    principal: &Principal,
    query: Option<&str>,
) -> Result<serde_json::Value, GatewayError> {
    let query = parse_query(query)?;
    let filter = own_filter(principal, &query)?;
    state.ledger.flush().await;
    let page = state
        .store
        .list_usage(&filter, query.limit.unwrap_or(100))
        .await
        .map_err(storage)?;
    Ok(serde_json::json!({ "data": page.events, "next_before": page.next_before_id }))
}

async fn usage_summary(
    state: &AppState,
    principal: &Principal,
    query: Option<&str>,
) -> Result<serde_json::Value, GatewayError> {
    let query = parse_query(query)?;
    let group_by = match query.group_by.as_deref().unwrap_or("model") {
        "model" => GroupBy::Model,
        "day" => GroupBy::Day,
        other => {
            return Err(GatewayError::new(
                ErrorKind::InvalidRequest,
                format!("group_by must be model or day, not {other:?}"),
            ))
        }
    };
    let filter = own_filter(principal, &query)?;
    state.ledger.flush().await;
    let data = state
        .store
        .usage_summary(&filter, group_by.clone())
        .await
        .map_err(storage)?;
    let total_cost: Money = data.iter().map(|r| r.cost_usd + r.markup_usd).sum();
    let total = meshgate_store::SummaryRow::total(&data);
    Ok(serde_json::json!({
        "group_by": group_by,
        "data": data,
        "total": total,
        "total_charged_usd": total_cost,
    }))
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct EventQuery {
    /// How long to wait for the event to be written (the ledger writes in batches, a moment
    /// after the call ends); capped at [`MAX_EVENT_WAIT`].
    wait_ms: Option<u64>,
}

/// One usage event of the caller's project, waiting up to `wait_ms` for it to be written.
/// Another project's event, and an event not written in time, are both 404.
async fn usage_event(
    state: &AppState,
    principal: &Principal,
    id: &str,
    query: Option<&str>,
) -> Result<serde_json::Value, GatewayError> {
    let query: EventQuery = serde_urlencoded::from_str(query.unwrap_or(""))
        .map_err(|e| GatewayError::new(ErrorKind::InvalidRequest, format!("invalid query: {e}")))?;
    let not_found = || {
        GatewayError::new(
            ErrorKind::NotFound,
            format!("no usage event {id:?} in this project"),
        )
    };
    // Event ids are UUIDs; anything else cannot name one.
    if uuid::Uuid::try_parse(id).is_err() {
        return Err(not_found());
    }
    let wait = Duration::from_millis(query.wait_ms.unwrap_or(0)).min(MAX_EVENT_WAIT);
    let deadline = tokio::time::Instant::now() + wait;
    let mut written = state.ledger.written();
    if wait.is_zero() {
        // An answer now: whatever is queued is written before the look. A waiting lookup
        // does not cut the ledger's batching short; the next write wakes it.
        state.ledger.flush().await;
    }
    loop {
        written.borrow_and_update();
        if let Some(event) = state.store.get_usage_event(id).await.map_err(storage)? {
            return match event.project_id == principal.project_id {
                true => serde_json::to_value(&event)
                    .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string())),
                false => Err(not_found()),
            };
        }
        // Not written yet: wake on the ledger's next write, or give up at the deadline.
        match tokio::time::timeout_at(deadline, written.changed()).await {
            Ok(Ok(())) => {}
            Ok(Err(_)) | Err(_) => return Err(not_found()),
        }
    }
}

fn storage(e: meshgate_store::StoreError) -> GatewayError {
    GatewayError::storage(&e)
}

/// Who the caller is, what it may use and what it has left.
async fn me(state: &AppState, principal: &Principal) -> Result<serde_json::Value, GatewayError> {
    let project = state
        .tenants
        .project(&principal.project_id)
        .unwrap_or_default();
    let now = chrono::Utc::now().timestamp_millis();
    let mut budgets = Vec::new();
    let mut report =
        |name: &str, limit: Option<Money>, (spent, reserved, balance): (Money, Money, Money)| {
            let limit = limit.unwrap_or(balance);
            budgets.push(serde_json::json!({
                "budget": name,
                "limit_usd": limit,
                "spent_usd": spent,
                "in_flight_usd": reserved,
                "remaining_usd": limit - spent - reserved,
            }));
        };
    // What the caller is held to, as the fleet sees it (loaded if need be).
    let needs = admit::budget_needs(&project, principal, now);
    let current = state.budgets.current(&needs).await.map_err(storage)?;
    for (need, current) in needs.into_iter().zip(current) {
        let name = match &need.account {
            Account::Key(_, p) => format!("key_{}", period_name(*p)),
            Account::Project(_, p) => format!("project_{}", period_name(*p)),
            Account::Delegation(_) => "delegation".into(),
            Account::Credits(_) => "credits".into(),
        };
        report(&name, need.limit, current);
    }
    let key = principal.key.as_deref();
    let credential = credential_json(state, principal).await?;
    Ok(serde_json::json!({
        "project_id": principal.project_id,
        "credential": credential,
        "key_id": key.map(|k| &k.id),
        "token_id": principal.token_id,
        "user": principal.user,
        "room": principal.room,
        "delegation_id": principal.delegation.as_ref().map(|d| &d.id),
        "allowed_models": {
            "project": project.policy.allowed_models,
            "key": key.and_then(|k| k.policy.allowed_models.clone()),
            "token": principal.grant_models,
            "delegation": principal.delegation.as_ref().and_then(|d| d.models.clone()),
        },
        "rate_limits": {
            "project": limits_json(&project.policy.limits),
            "key": key.map(|k| limits_json(&k.policy.limits)),
        },
        "budgets": budgets,
    }))
}

/// What kind of credential the caller used, its id and (for an API key) its name.
async fn credential_json(
    state: &AppState,
    principal: &Principal,
) -> Result<serde_json::Value, GatewayError> {
    let (kind, id) = if let Some(d) = &principal.delegation {
        ("delegation", Some(d.id.clone()))
    } else if let Some(key) = principal.key_id() {
        ("key", Some(key.to_string()))
    } else if let Some(jti) = &principal.token_id {
        ("token", Some(jti.clone()))
    } else {
        ("user", principal.user.clone())
    };
    let name = match (kind, &id) {
        ("key", Some(id)) => state
            .store
            .get_key(id)
            .await
            .map_err(storage)?
            .map(|k| k.name),
        _ => None,
    };
    Ok(serde_json::json!({ "kind": kind, "id": id, "name": name }))
}

fn period_name(p: Period) -> &'static str {
    match p {
        Period::Total => "total",
        Period::Day(_) => "daily",
        Period::Month(_) => "monthly",
    }
}

fn limits_json(l: &meshgate_store::Limits) -> serde_json::Value {
    serde_json::json!({
        "requests_per_minute": l.requests_per_minute,
        "tokens_per_minute": l.tokens_per_minute,
    })
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct DelegateRequest {
    /// The most the delegation may spend, as a decimal string (`"0.50"`).
    max_budget_usd: Money,
    #[serde(default)]
    models: Option<Vec<String>>,
    /// Lifetime; capped by `auth.max_delegation_secs`.
    #[serde(default)]
    ttl_seconds: Option<u64>,
}

/// Mints a delegation for an agent the caller runs: its own budget, models and expiry; its
/// spending also counts against the caller.
fn delegate(
    state: &AppState,
    principal: &Principal,
    body: &[u8],
) -> Result<serde_json::Value, GatewayError> {
    if principal.delegation.is_some() {
        return Err(GatewayError::new(
            ErrorKind::Permission,
            "a delegation cannot mint further delegations",
        ));
    }
    let request: DelegateRequest = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("invalid delegation request: {e}"),
        )
    })?;
    if request.max_budget_usd <= Money::ZERO {
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            "max_budget_usd must be more than zero",
        )
        .with_param("max_budget_usd"));
    }
    let max = state.config.auth.max_delegation_secs;
    let ttl = request.ttl_seconds.unwrap_or(3600).clamp(1, max.max(1));
    let now = chrono::Utc::now().timestamp();
    let mut claims = meshgate_tokens::DelegationClaims::new(
        principal.project_id.clone(),
        principal.credential_id(),
        request.max_budget_usd.to_string(),
        request.models,
        state.config.auth.audience.clone(),
        now,
        Duration::from_secs(ttl),
    );
    auth::describe_parent(principal, &mut claims);
    let token =
        meshgate_tokens::mint_delegation(&claims, &state.delegation_secret).map_err(|e| {
            GatewayError::new(
                ErrorKind::Internal,
                format!("cannot mint the delegation: {e}"),
            )
        })?;
    Ok(serde_json::json!({
        "id": claims.sub,
        "token": token,
        "parent": claims.parent,
        "project_id": claims.project,
        "max_budget_usd": claims.max_budget_usd,
        "models": claims.models,
        "expires_at": claims.exp,
        "header": auth::DELEGATION_HEADER,
    }))
}

/// `GET /v1/models` and `/v1/models/{id}`: the catalog's models of the surface's provider
/// that the caller may use, in the provider's list format, each with meshgate's price.
pub fn models(
    state: &AppState,
    route: &Route,
    principal: &Principal,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let project = state
        .tenants
        .project(&principal.project_id)
        .unwrap_or_default();
    let provider = state.provider(route.surface).name;
    let visible = |name: &str| -> Option<serde_json::Value> {
        let price = state.catalog.price(name)?;
        if price.provider.as_deref() != Some(provider) || price.model != name {
            return None;
        }
        allowed(&project, principal, provider, name).then(|| model_object(route.surface, &price))
    };
    if let Some(id) = route.rest.strip_prefix("models/") {
        return match visible(id) {
            Some(model) => Ok(json_response(StatusCode::OK, &model, request_id)),
            None => Err(GatewayError::new(
                ErrorKind::NotFound,
                format!("the model '{id}' does not exist or you do not have access to it"),
            )
            .with_code("model_not_found")),
        };
    }
    let data: Vec<serde_json::Value> = state
        .catalog
        .models()
        .into_iter()
        .filter_map(visible)
        .collect();
    let list = match route.surface {
        Surface::OpenAi => serde_json::json!({ "object": "list", "data": data }),
        Surface::Anthropic => serde_json::json!({
            "data": data,
            "has_more": false,
            "first_id": data.first().and_then(|m| m.get("id")).cloned(),
            "last_id": data.last().and_then(|m| m.get("id")).cloned(),
        }),
    };
    Ok(json_response(StatusCode::OK, &list, request_id))
}

fn allowed(project: &ProjectSettings, principal: &Principal, provider: &str, model: &str) -> bool {
    admit::model_allowed(project, principal, provider, model)
}

fn model_object(surface: Surface, price: &meshgate_pricing::ModelPrice) -> serde_json::Value {
    let created = price
        .effective_from
        .and_hms_opt(0, 0, 0)
        .map(|t| t.and_utc())
        .unwrap_or_default();
    let pricing = serde_json::json!({
        "price_id": price.id(),
        "usd_per_token": price.rates,
        "effective_from": price.effective_from.to_string(),
    });
    match surface {
        Surface::OpenAi => serde_json::json!({
            "id": price.model,
            "object": "model",
            "created": created.timestamp(),
            "owned_by": price.provider.as_deref().unwrap_or("meshgate"),
            "meshgate_pricing": pricing,
        }),
        Surface::Anthropic => serde_json::json!({
            "type": "model",
            "id": price.model,
            "display_name": price.model,
            "created_at": created.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "meshgate_pricing": pricing,
        }),
    }
}
