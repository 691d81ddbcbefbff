//! `/admin/v1/projects/{id}/providers`: a project's own provider keys (bring your own
//! key). The key is sealed before it reaches the store and never leaves through any
//! response, list or audit record — not even a prefix.

use super::views::ErrorBody;
use super::{audit, now_ms, require_project, Admin, AdminError, Body};
use crate::state::AppState;
use crate::tenants::provider_context;
use axum::extract::{Path, State};
use axum::Json;
use meshgate_store::ProviderCredential;
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// Providers a project may bring its own key for.
const PROVIDERS: [&str; 3] = ["openai", "anthropic", "gemini"];

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderView {
    pub project_id: String,
    /// `openai`, `anthropic` or `gemini`.
    pub provider: String,
    /// `null`: the gateway's configured base URL.
    pub base_url: Option<String>,
    pub updated_ms: i64,
}

impl From<&ProviderCredential> for ProviderView {
    fn from(c: &ProviderCredential) -> Self {
        ProviderView {
            project_id: c.project_id.clone(),
            provider: c.provider.clone(),
            base_url: c.base_url.clone(),
            updated_ms: c.updated_ms,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProviderList {
    pub data: Vec<ProviderView>,
}

#[derive(Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SetProvider {
    /// The provider API key; stored sealed, never shown again.
    pub api_key: String,
    /// Another base URL for this project's calls (e.g. `https://api.openai.com/v1`).
    #[serde(default)]
    pub base_url: Option<String>,
}

// Written by hand so that a debug log of the request can never print the key.
impl std::fmt::Debug for SetProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SetProvider")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

fn check_provider(provider: &str) -> Result<(), AdminError> {
    if PROVIDERS.contains(&provider) {
        Ok(())
    } else {
        Err(AdminError::bad_request(format!(
            "provider must be openai, anthropic or gemini, not {provider:?}"
        )))
    }
}

#[utoipa::path(
    put, path = "/admin/v1/projects/{id}/providers/{provider}", tag = "providers",
    params(
        ("id" = String, Path, description = "project id"),
        ("provider" = String, Path, description = "`openai`, `anthropic` or `gemini`")
    ),
    request_body = SetProvider,
    responses(
        (status = 200, description = "stored; the key is never shown", body = ProviderView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn set_provider(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((project_id, provider)): Path<(String, String)>,
    Body(body): Body<SetProvider>,
) -> Result<Json<ProviderView>, AdminError> {
    check_provider(&provider)?;
    require_project(&state, &project_id).await?;
    let api_key = body.api_key.trim();
    if api_key.is_empty() || api_key.chars().any(char::is_control) {
        return Err(AdminError::bad_request(
            "api_key must be non-empty text without control characters",
        ));
    }
    let base_url = body
        .base_url
        .map(|u| u.trim().trim_end_matches('/').to_string())
        .filter(|u| !u.is_empty());
    if let Some(url) = &base_url {
        let ok = url.parse::<http::Uri>().ok().is_some_and(|u| {
            matches!(u.scheme_str(), Some("http" | "https")) && u.host().is_some()
        });
        if !ok {
            return Err(AdminError::bad_request(format!(
                "base_url {url:?} is not an http(s) URL"
            )));
        }
    }
    let credential = ProviderCredential {
        project_id: project_id.clone(),
        provider: provider.clone(),
        sealed_api_key: state.secrets.seal(
            &provider_context(&project_id, &provider),
            api_key.as_bytes(),
        ),
        base_url,
        updated_ms: now_ms(),
    };
    state
        .store
        .set_provider_credential(credential.clone())
        .await?;
    state
        .tenants
        .put_provider(&credential, &state.secrets)
        .map_err(|e| AdminError::internal(format!("cannot load the provider key: {e}")))?;
    let view = ProviderView::from(&credential);
    audit(
        &state,
        Some(&project_id),
        "provider.set",
        Some(&provider),
        serde_json::json!({ "base_url": view.base_url }),
    )
    .await?;
    Ok(Json(view))
}

#[utoipa::path(
    get, path = "/admin/v1/projects/{id}/providers", tag = "providers",
    params(("id" = String, Path, description = "project id")),
    responses(
        (status = 200, description = "never the keys", body = ProviderList),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)
    )
)]
pub async fn list_providers(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(project_id): Path<String>,
) -> Result<Json<ProviderList>, AdminError> {
    require_project(&state, &project_id).await?;
    let credentials = state
        .store
        .list_provider_credentials(Some(&project_id))
        .await?;
    Ok(Json(ProviderList {
        data: credentials.iter().map(ProviderView::from).collect(),
    }))
}

#[utoipa::path(
    delete, path = "/admin/v1/projects/{id}/providers/{provider}", tag = "providers",
    params(
        ("id" = String, Path, description = "project id"),
        ("provider" = String, Path, description = "`openai`, `anthropic` or `gemini`")
    ),
    responses(
        (status = 200, description = "deleted; the project's calls use the gateway's key again"),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn delete_provider(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path((project_id, provider)): Path<(String, String)>,
) -> Result<Json<serde_json::Value>, AdminError> {
    check_provider(&provider)?;
    require_project(&state, &project_id).await?;
    if !state
        .store
        .delete_provider_credential(&project_id, &provider)
        .await?
    {
        return Err(AdminError::not_found(format!(
            "project {project_id:?} has no {provider} key"
        )));
    }
    state.tenants.remove_provider(&project_id, &provider);
    audit(
        &state,
        Some(&project_id),
        "provider.deleted",
        Some(&provider),
        serde_json::json!({}),
    )
    .await?;
    Ok(Json(
        serde_json::json!({ "project_id": project_id, "provider": provider, "deleted": true }),
    ))
}
