//! The admin REST API under `/admin/v1/`, authenticated by the admin token: what every
//! resource shares (the router, the OpenAPI document, auth, errors, body and query
//! reading, times, audit records).
//!
//! # Layout (one file per resource)
//! - `projects`: projects and their settings.
//! - `keys`: meshgate API keys (create, update, rotate, revoke).
//! - `signing`: participant-token signing keys and server-side token minting.
//! - `credits`: a project's credit ledger.
//! - `providers`: a project's own provider keys (bring your own key).
//! - `usage`: usage events and summaries.
//! - `audit`: the audit log.
//! - `views`: the JSON shapes shared by several resources (limits, errors).
//!
//! The OpenAPI document is built from the same `routes!` calls that build the router, so
//! a route cannot exist without its documentation. It is served without auth at
//! `/admin/v1/openapi.json`: the API's shape is no secret.

mod audit;
mod credits;
mod health;
mod keys;
mod projects;
mod providers;
mod signing;
mod usage;
mod views;

pub use views::{ErrorBody, LimitsView};

use crate::auth;
use crate::state::AppState;
use axum::extract::{FromRequest, FromRequestParts, Query, Request};
use axum::http::request::Parts;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use axum::{Json, Router};
use meshgate_store::AuditEvent;
use serde::de::DeserializeOwned;
use serde::{Deserialize, Deserializer};
use std::sync::Arc;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::OpenApi;
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

/// Where the OpenAPI document is served.
pub const OPENAPI_PATH: &str = "/admin/v1/openapi.json";

#[derive(OpenApi)]
#[openapi(
    info(
        title = "meshgate admin API",
        description = "Projects, keys, signing keys, credits, provider keys, usage and audit. \
                       Every route except this document needs `Authorization: Bearer <admin token>`."
    ),
    modifiers(&AdminTokenScheme),
    security(("admin_token" = [])),
    components(schemas(ErrorBody))
)]
struct ApiDoc;

struct AdminTokenScheme;

impl utoipa::Modify for AdminTokenScheme {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "admin_token",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}

/// The admin routes and their OpenAPI document, built together.
fn api() -> OpenApiRouter<Arc<AppState>> {
    OpenApiRouter::with_openapi(ApiDoc::openapi())
        .routes(routes!(projects::create_project, projects::list_projects))
        .routes(routes!(projects::get_project, projects::update_project))
        .routes(routes!(keys::create_key, keys::list_keys))
        .routes(routes!(keys::get_key, keys::update_key, keys::delete_key))
        .routes(routes!(keys::rotate_key))
        .routes(routes!(keys::revoke_key))
        .routes(routes!(
            signing::create_signing_key,
            signing::list_signing_keys
        ))
        .routes(routes!(signing::revoke_signing_key))
        .routes(routes!(signing::rotate_signing_key))
        .routes(routes!(signing::mint_token))
        .routes(routes!(credits::add_credits, credits::list_credits))
        .routes(routes!(providers::set_provider, providers::delete_provider))
        .routes(routes!(providers::list_providers))
        .routes(routes!(usage::list_usage))
        .routes(routes!(usage::usage_summary))
        .routes(routes!(audit::list_audit))
        .routes(routes!(health::providers_health))
}

/// The OpenAPI document of the admin API (also served at [`OPENAPI_PATH`]).
pub fn openapi() -> utoipa::openapi::OpenApi {
    let (_, mut doc) = api().split_for_parts();
    add_openapi_path(&mut doc);
    doc
}

pub fn router() -> Router<Arc<AppState>> {
    let (router, mut doc) = api().split_for_parts();
    add_openapi_path(&mut doc);
    let doc = Arc::new(doc);
    router.route(
        OPENAPI_PATH,
        get(move || {
            let doc = doc.clone();
            async move { Json(doc.as_ref().clone()) }
        }),
    )
}

/// The document describes its own route too (no auth), so a reader sees it in the list.
fn add_openapi_path(doc: &mut utoipa::openapi::OpenApi) {
    use utoipa::openapi::path::{HttpMethod, OperationBuilder, PathItem};
    use utoipa::openapi::ResponseBuilder;
    let operation = OperationBuilder::new()
        .summary(Some("This OpenAPI document (no auth needed)"))
        .operation_id(Some("openapi"))
        .tag("meta")
        .security(utoipa::openapi::security::SecurityRequirement::default())
        .response(
            "200",
            ResponseBuilder::new().description("The OpenAPI 3.1 document"),
        )
        .build();
    doc.paths.paths.insert(
        OPENAPI_PATH.into(),
        PathItem::new(HttpMethod::Get, operation),
    );
}

/// An admin API error: `{"error":{"message","type"}}` with its status.
#[derive(Debug)]
pub struct AdminError(pub StatusCode, pub String);

impl AdminError {
    pub fn bad_request(message: impl Into<String>) -> Self {
        AdminError(StatusCode::BAD_REQUEST, message.into())
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        AdminError(StatusCode::NOT_FOUND, message.into())
    }

    pub fn conflict(message: impl Into<String>) -> Self {
        AdminError(StatusCode::CONFLICT, message.into())
    }

    pub fn internal(message: impl Into<String>) -> Self {
        AdminError(StatusCode::INTERNAL_SERVER_ERROR, message.into())
    }
}

impl IntoResponse for AdminError {
    fn into_response(self) -> Response {
        let kind = match self.0 {
            StatusCode::UNAUTHORIZED => "authentication_error",
            StatusCode::NOT_FOUND => "not_found_error",
            StatusCode::CONFLICT => "conflict_error",
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
        if e.is_unavailable() {
            tracing::warn!(error = %e, "admin call while the database is unavailable");
            return AdminError(
                StatusCode::SERVICE_UNAVAILABLE,
                "the database is unavailable; retry later".into(),
            );
        }
        tracing::error!(error = %e, "admin store error");
        AdminError::internal("storage error")
    }
}

/// Proof that the request carried the admin token. Taken as a handler's first argument, so
/// an unauthenticated request is refused (401) before its body is even read.
pub struct Admin;

/// Who admin actions are attributed to in the audit log.
pub const ACTOR: &str = "admin";

impl FromRequestParts<Arc<AppState>> for Admin {
    type Rejection = AdminError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, Self::Rejection> {
        let token = parts
            .headers
            .get(http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "))
            .map(str::trim);
        match token {
            Some(t) if auth::token_matches(t, &state.admin_token_hash) => Ok(Admin),
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
}

/// A JSON request body; malformed JSON is a 400 in the admin error shape. An empty body
/// reads as `{}`, so actions whose fields are all optional need none.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = AdminError;

    async fn from_request(request: Request, state: &S) -> Result<Self, Self::Rejection> {
        let bytes = bytes::Bytes::from_request(request, state)
            .await
            .map_err(|e| AdminError::bad_request(format!("cannot read the body: {e}")))?;
        let text: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
            b"{}"
        } else {
            &bytes
        };
        serde_json::from_slice(text)
            .map(Body)
            .map_err(|e| AdminError::bad_request(format!("invalid JSON body: {e}")))
    }
}

/// The query string as name/value pairs, read strictly: [`Params::finish`] refuses names
/// nobody took, so a misspelt filter is an error rather than silently ignored.
pub struct Params(Vec<(String, String)>);

impl<S: Send + Sync> FromRequestParts<S> for Params {
    type Rejection = AdminError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, Self::Rejection> {
        let Query(pairs) = Query::<Vec<(String, String)>>::from_request_parts(parts, state)
            .await
            .map_err(|e| AdminError::bad_request(format!("invalid query string: {e}")))?;
        Ok(Params(pairs))
    }
}

impl Params {
    /// The value of `name` (the last one when repeated).
    pub fn take(&mut self, name: &str) -> Option<String> {
        let mut found = None;
        self.0.retain(|(n, v)| {
            if n == name {
                found = Some(v.clone());
                false
            } else {
                true
            }
        });
        found
    }

    /// Every `<prefix><name>=<value>` pair, prefix removed.
    pub fn take_prefixed(&mut self, prefix: &str) -> Vec<(String, String)> {
        let mut found = Vec::new();
        self.0.retain(|(n, v)| match n.strip_prefix(prefix) {
            Some(rest) => {
                found.push((rest.to_string(), v.clone()));
                false
            }
            None => true,
        });
        found
    }

    pub fn take_time(&mut self, name: &str) -> Result<Option<i64>, AdminError> {
        self.take(name).as_deref().map(parse_time).transpose()
    }

    /// `limit`, between 1 and `max`, `default` when absent.
    pub fn take_limit(&mut self, default: u32, max: u32) -> Result<u32, AdminError> {
        match self.take("limit") {
            None => Ok(default),
            Some(text) => match text.parse::<u32>() {
                Ok(n) if (1..=max).contains(&n) => Ok(n),
                _ => Err(AdminError::bad_request(format!(
                    "limit must be a number from 1 to {max}, not {text:?}"
                ))),
            },
        }
    }

    pub fn finish(self) -> Result<(), AdminError> {
        match self.0.first() {
            None => Ok(()),
            Some((name, _)) => Err(AdminError::bad_request(format!(
                "unknown query parameter {name:?}"
            ))),
        }
    }
}

/// A time given as unix milliseconds or as RFC 3339 text.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
pub enum TimeArg {
    Millis(i64),
    Text(String),
}

impl TimeArg {
    pub fn to_ms(&self) -> Result<i64, AdminError> {
        match self {
            TimeArg::Millis(ms) => Ok(*ms),
            TimeArg::Text(t) => parse_time(t),
        }
    }
}

pub fn parse_time(t: &str) -> Result<i64, AdminError> {
    if let Ok(ms) = t.parse::<i64>() {
        return Ok(ms);
    }
    chrono::DateTime::parse_from_rfc3339(t)
        .map(|d| d.timestamp_millis())
        .map_err(|_| {
            AdminError::bad_request(format!(
                "invalid time {t:?}: use unix milliseconds or RFC 3339"
            ))
        })
}

/// For `PATCH` fields where `null` means "clear" and absence means "keep": absent is
/// `None` (through `#[serde(default)]`), `null` is `Some(None)`.
pub fn patch_field<'de, D: Deserializer<'de>, T: Deserialize<'de>>(
    d: D,
) -> Result<Option<Option<T>>, D::Error> {
    Option::<T>::deserialize(d).map(Some)
}

pub fn now_ms() -> i64 {
    chrono::Utc::now().timestamp_millis()
}

/// An id with a readable prefix and 16 random hex digits (`proj_...`, `sk_...`).
pub fn random_id(prefix: &str) -> String {
    use rand::RngCore;
    let mut bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut bytes);
    format!("{prefix}_{}", hex::encode(bytes))
}

/// An id that sorts by time, for rows listed newest first (credit entries, audit events).
pub fn ordered_id(prefix: &str) -> String {
    format!("{prefix}_{}", uuid::Uuid::now_v7().simple())
}

/// Records an admin action. `details` must never hold a secret: callers pass ids, names
/// and settings only.
pub async fn audit(
    state: &AppState,
    project_id: Option<&str>,
    action: &str,
    target: Option<&str>,
    details: serde_json::Value,
) -> Result<(), AdminError> {
    state
        .store
        .record_audit(AuditEvent {
            id: ordered_id("aud"),
            at_ms: now_ms(),
            actor: ACTOR.into(),
            project_id: project_id.map(str::to_string),
            action: action.into(),
            target: target.map(str::to_string),
            details,
        })
        .await?;
    Ok(())
}

/// The project, or a 404 naming it.
pub async fn require_project(
    state: &AppState,
    id: &str,
) -> Result<meshgate_store::ProjectRecord, AdminError> {
    state
        .store
        .get_project(id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no project {id:?}")))
}
