//! `/admin/v1/keys`: meshgate API keys — create (secret shown once), list, show, update
//! (name, expiry, models, limits), rotate with a grace period, revoke. Every write updates
//! the key cache, so the very next call sees it.

use super::views::{check_policy, ErrorBody, LimitsPatch, LimitsView};
use super::{audit, now_ms, patch_field, Admin, AdminError, Body, Params, TimeArg};
use crate::auth;
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshgate_store::{KeyRecord, NewKey, Policy};
use serde::{Deserialize, Serialize};
use std::sync::Arc;
use utoipa::ToSchema;

/// A key as the admin API shows it: never its secret nor a hash of it.
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyView {
    pub id: String,
    pub project_id: String,
    pub name: String,
    /// The first characters of the secret, to recognise it.
    pub prefix: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
    /// When the secret was last rotated.
    pub rotated_ms: Option<i64>,
    /// Until when the secret before the last rotation still works.
    pub previous_expires_ms: Option<i64>,
    /// `null`: every model the project allows.
    pub allowed_models: Option<Vec<String>>,
    pub limits: LimitsView,
}

impl From<&KeyRecord> for KeyView {
    fn from(k: &KeyRecord) -> Self {
        KeyView {
            id: k.id.clone(),
            project_id: k.project_id.clone(),
            name: k.name.clone(),
            prefix: k.prefix.clone(),
            created_ms: k.created_ms,
            expires_ms: k.expires_ms,
            revoked_ms: k.revoked_ms,
            rotated_ms: k.rotated_ms,
            previous_expires_ms: k.previous_expires_ms,
            allowed_models: k.policy.allowed_models.clone(),
            limits: (&k.policy.limits).into(),
        }
    }
}

/// A key with its secret, shown once (at creation and rotation).
#[derive(Debug, Serialize, ToSchema)]
pub struct KeyWithSecret {
    #[serde(flatten)]
    pub key: KeyView,
    /// Shown once; meshgate keeps only its hash.
    pub secret: String,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct KeyList {
    pub data: Vec<KeyView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateKey {
    pub name: String,
    /// Default `default`; the project must exist.
    #[serde(default)]
    pub project_id: Option<String>,
    /// Unix milliseconds or RFC 3339.
    #[serde(default)]
    pub expires_at: Option<TimeArg>,
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub limits: Option<LimitsView>,
}

/// A change to a key: fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateKey {
    #[serde(default)]
    pub name: Option<String>,
    /// Unix milliseconds or RFC 3339; `null` removes the expiry.
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<TimeArg>, nullable)]
    pub expires_at: Option<Option<TimeArg>>,
    /// `null` clears the list (every model the project allows).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub allowed_models: Option<Option<Vec<String>>>,
    #[serde(default)]
    pub limits: Option<LimitsPatch>,
}

#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct RotateKey {
    /// How long the old secret keeps working; 0 (the default) stops it at once.
    #[serde(default)]
    pub grace_seconds: u64,
}

#[utoipa::path(
    post, path = "/admin/v1/keys", tag = "keys",
    request_body = CreateKey,
    responses(
        (status = 201, body = KeyWithSecret),
        (status = 400, description = "bad input or unknown project", body = ErrorBody),
        (status = 401, body = ErrorBody)
    )
)]
pub async fn create_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Body(body): Body<CreateKey>,
) -> Result<(StatusCode, Json<KeyWithSecret>), AdminError> {
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(AdminError::bad_request("name must not be empty"));
    }
    let project_id = body.project_id.unwrap_or_else(|| "default".into());
    // The key is created for a project named in the body, not the resource of the path:
    // an unknown one is bad input (400), not a missing resource.
    if state.store.get_project(&project_id).await?.is_none() {
        return Err(AdminError::bad_request(format!(
            "unknown project {project_id:?}"
        )));
    }
    let expires_ms = body.expires_at.as_ref().map(TimeArg::to_ms).transpose()?;
    let policy = Policy {
        allowed_models: body.allowed_models,
        limits: body.limits.unwrap_or_default().into(),
    };
    check_policy(policy.allowed_models.as_deref(), &policy.limits)?;
    let generated = auth::generate_key();
    let record = state
        .store
        .create_key(NewKey {
            id: generated.id,
            project_id,
            name,
            prefix: generated.prefix,
            secret_hash: generated.hash,
            created_ms: now_ms(),
            expires_ms,
            policy,
        })
        .await?;
    state.keys.insert(&record);
    let view = KeyView::from(&record);
    audit(
        &state,
        Some(&record.project_id),
        "key.created",
        Some(&record.id),
        serde_json::json!({
            "name": view.name,
            "prefix": view.prefix,
            "expires_ms": view.expires_ms,
            "allowed_models": view.allowed_models,
            "limits": view.limits,
        }),
    )
    .await?;
    Ok((
        StatusCode::CREATED,
        Json(KeyWithSecret {
            key: view,
            secret: generated.secret,
        }),
    ))
}

#[utoipa::path(
    get, path = "/admin/v1/keys", tag = "keys",
    params(("project_id" = Option<String>, Query, description = "only this project's keys")),
    responses((status = 200, body = KeyList), (status = 401, body = ErrorBody))
)]
pub async fn list_keys(
    _: Admin,
    State(state): State<Arc<AppState>>,
    mut params: Params,
) -> Result<Json<KeyList>, AdminError> {
    let project_id = params.take("project_id");
    params.finish()?;
    let keys = state.store.list_keys(project_id.as_deref()).await?;
    Ok(Json(KeyList {
        data: keys.iter().map(KeyView::from).collect(),
    }))
}

async fn require_key(state: &AppState, id: &str) -> Result<KeyRecord, AdminError> {
    state
        .store
        .get_key(id)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no key {id:?}")))
}

#[utoipa::path(
    get, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses(
        (status = 200, body = KeyView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)
    )
)]
pub async fn get_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, AdminError> {
    Ok(Json((&require_key(&state, &id).await?).into()))
}

#[utoipa::path(
    patch, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    request_body = UpdateKey,
    responses(
        (status = 200, body = KeyView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn update_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Body(body): Body<UpdateKey>,
) -> Result<Json<KeyView>, AdminError> {
    let current = require_key(&state, &id).await?;
    let mut changed = serde_json::Map::new();
    let mut name = current.name.clone();
    if let Some(new) = body.name {
        let new = new.trim().to_string();
        if new.is_empty() {
            return Err(AdminError::bad_request("name must not be empty"));
        }
        changed.insert("name".into(), new.clone().into());
        name = new;
    }
    let mut expires_ms = current.expires_ms;
    if let Some(expires) = body.expires_at {
        expires_ms = expires.as_ref().map(TimeArg::to_ms).transpose()?;
        changed.insert("expires_ms".into(), serde_json::json!(expires_ms));
    }
    let mut policy = current.policy.clone();
    if let Some(models) = body.allowed_models {
        changed.insert("allowed_models".into(), serde_json::json!(models));
        policy.allowed_models = models;
    }
    if let Some(limits) = body.limits {
        limits.apply(&mut policy.limits);
        changed.insert(
            "limits".into(),
            serde_json::json!(LimitsView::from(&policy.limits)),
        );
    }
    check_policy(policy.allowed_models.as_deref(), &policy.limits)?;
    let record = state
        .store
        .update_key(&id, &name, expires_ms, &policy)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no key {id:?}")))?;
    state.keys.insert(&record);
    audit(
        &state,
        Some(&record.project_id),
        "key.updated",
        Some(&record.id),
        changed.into(),
    )
    .await?;
    Ok(Json((&record).into()))
}

#[utoipa::path(
    post, path = "/admin/v1/keys/{id}/rotate", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    request_body(content = RotateKey, description = "optional"),
    responses(
        (status = 200, description = "the key with its new secret, shown once", body = KeyWithSecret),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, description = "the key is revoked", body = ErrorBody)
    )
)]
pub async fn rotate_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Body(body): Body<RotateKey>,
) -> Result<Json<KeyWithSecret>, AdminError> {
    let current = require_key(&state, &id).await?;
    if current.revoked_ms.is_some() {
        return Err(AdminError::conflict(format!(
            "key {id:?} is revoked; create a new one"
        )));
    }
    let grace_ms = i64::try_from(body.grace_seconds)
        .ok()
        .and_then(|s| s.checked_mul(1000))
        .ok_or_else(|| AdminError::bad_request("grace_seconds is too large"))?;
    let now = now_ms();
    let previous_expires_ms = (grace_ms > 0).then(|| now.saturating_add(grace_ms));
    // A new secret under the same id: usage and limits stay with the key.
    let generated = auth::generate_key();
    let record = state
        .store
        .rotate_key(
            &id,
            &generated.prefix,
            &generated.hash,
            previous_expires_ms,
            now,
        )
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no active key {id:?}")))?;
    state.keys.insert(&record);
    let view = KeyView::from(&record);
    audit(
        &state,
        Some(&record.project_id),
        "key.rotated",
        Some(&record.id),
        serde_json::json!({
            "prefix": view.prefix,
            "grace_seconds": body.grace_seconds,
            "previous_expires_ms": view.previous_expires_ms,
        }),
    )
    .await?;
    Ok(Json(KeyWithSecret {
        key: view,
        secret: generated.secret,
    }))
}

async fn revoke(state: &AppState, id: &str) -> Result<Json<KeyView>, AdminError> {
    let record = state
        .store
        .revoke_key(id, now_ms())
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no key {id:?}")))?;
    // The very next call with this key is refused: the cache drops it now.
    state.keys.remove(&record.id);
    audit(
        state,
        Some(&record.project_id),
        "key.revoked",
        Some(&record.id),
        serde_json::json!({ "name": record.name }),
    )
    .await?;
    Ok(Json((&record).into()))
}

#[utoipa::path(
    delete, path = "/admin/v1/keys/{id}", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses(
        (status = 200, description = "the revoked key", body = KeyView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)
    )
)]
pub async fn delete_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, AdminError> {
    revoke(&state, &id).await
}

#[utoipa::path(
    post, path = "/admin/v1/keys/{id}/revoke", tag = "keys",
    params(("id" = String, Path, description = "key id")),
    responses(
        (status = 200, description = "the revoked key", body = KeyView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)
    )
)]
pub async fn revoke_key(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<KeyView>, AdminError> {
    revoke(&state, &id).await
}
