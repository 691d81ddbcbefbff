//! `/admin/v1/projects`: create, list, show and update projects and their settings
//! (allowed models, limits, credit enforcement, markup, members). Every write refreshes the
//! in-memory tenants so the next call sees it.

use super::views::{check_policy, ErrorBody, LimitsPatch, LimitsView};
use super::{audit, now_ms, patch_field, random_id, require_project, Admin, AdminError, Body};
use crate::state::AppState;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::Json;
use meshgate_store::{Policy, ProjectRecord, ProjectSettings};
use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::sync::Arc;
use utoipa::ToSchema;

/// A project's settings as shown and as set at creation.
#[derive(Debug, Clone, Default, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct SettingsView {
    /// Model patterns (`provider/model`, trailing `*` a prefix); absent or null allows all.
    #[serde(default)]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default)]
    pub limits: LimitsView,
    /// Refuse calls (402) when the credit balance is not positive.
    #[serde(default)]
    pub credits_enforced: bool,
    /// Percent added to the provider cost, as a decimal string.
    #[serde(default)]
    #[schema(value_type = Option<String>, example = "10")]
    pub markup_percent: Option<Decimal>,
    /// Per-provider markup percent, taking precedence over `markup_percent`.
    #[serde(default)]
    #[schema(value_type = BTreeMap<String, String>)]
    pub provider_markup_percent: BTreeMap<String, Decimal>,
    /// OAuth users (`sub` or `email`) who may use the project; `*` is any user.
    #[serde(default)]
    pub members: Vec<String>,
}

impl From<&ProjectSettings> for SettingsView {
    fn from(s: &ProjectSettings) -> Self {
        SettingsView {
            allowed_models: s.policy.allowed_models.clone(),
            limits: (&s.policy.limits).into(),
            credits_enforced: s.credits_enforced,
            markup_percent: s.markup_percent,
            provider_markup_percent: s.provider_markup_percent.clone(),
            members: s.members.clone(),
        }
    }
}

impl From<SettingsView> for ProjectSettings {
    fn from(s: SettingsView) -> Self {
        ProjectSettings {
            policy: Policy {
                allowed_models: s.allowed_models,
                limits: s.limits.into(),
            },
            credits_enforced: s.credits_enforced,
            markup_percent: s.markup_percent,
            provider_markup_percent: s.provider_markup_percent,
            members: s.members,
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectView {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub settings: SettingsView,
}

impl From<&ProjectRecord> for ProjectView {
    fn from(p: &ProjectRecord) -> Self {
        ProjectView {
            id: p.id.clone(),
            name: p.name.clone(),
            created_ms: p.created_ms,
            settings: (&p.settings).into(),
        }
    }
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ProjectList {
    pub data: Vec<ProjectView>,
}

#[derive(Debug, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct CreateProject {
    /// `[a-z0-9_-]{1,64}`; default `proj_<random>`.
    #[serde(default)]
    pub id: Option<String>,
    pub name: String,
    #[serde(default)]
    pub settings: Option<SettingsView>,
}

/// A change to a project: fields left out stay as they are.
#[derive(Debug, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct UpdateProject {
    #[serde(default)]
    pub name: Option<String>,
    /// `null` clears the list (every model allowed).
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<Vec<String>>, nullable)]
    pub allowed_models: Option<Option<Vec<String>>>,
    #[serde(default)]
    pub limits: Option<LimitsPatch>,
    #[serde(default)]
    pub credits_enforced: Option<bool>,
    /// `null` removes the markup.
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<String>, nullable)]
    pub markup_percent: Option<Option<Decimal>>,
    /// Replaces the whole map.
    #[serde(default)]
    #[schema(value_type = Option<BTreeMap<String, String>>)]
    pub provider_markup_percent: Option<BTreeMap<String, Decimal>>,
    /// Replaces the whole list.
    #[serde(default)]
    pub members: Option<Vec<String>>,
}

fn valid_project_id(id: &str) -> bool {
    (1..=64).contains(&id.len())
        && id
            .bytes()
            .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_' || b == b'-')
}

fn check_settings(settings: &ProjectSettings) -> Result<(), AdminError> {
    check_policy(
        settings.policy.allowed_models.as_deref(),
        &settings.policy.limits,
    )?;
    let markups = settings
        .markup_percent
        .iter()
        .chain(settings.provider_markup_percent.values());
    if markups.into_iter().any(|m| m.is_sign_negative()) {
        return Err(AdminError::bad_request(
            "markup percents must not be negative",
        ));
    }
    Ok(())
}

#[utoipa::path(
    post, path = "/admin/v1/projects", tag = "projects",
    request_body = CreateProject,
    responses(
        (status = 201, body = ProjectView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 409, description = "the id is taken", body = ErrorBody)
    )
)]
pub async fn create_project(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Body(body): Body<CreateProject>,
) -> Result<(StatusCode, Json<ProjectView>), AdminError> {
    let id = body.id.unwrap_or_else(|| random_id("proj"));
    if !valid_project_id(&id) {
        return Err(AdminError::bad_request(format!(
            "invalid project id {id:?}: use 1 to 64 of a-z, 0-9, _ and -"
        )));
    }
    let name = body.name.trim().to_string();
    if name.is_empty() {
        return Err(AdminError::bad_request("name must not be empty"));
    }
    let settings: ProjectSettings = body.settings.unwrap_or_default().into();
    check_settings(&settings)?;
    if state.store.get_project(&id).await?.is_some() {
        return Err(AdminError::conflict(format!("project {id:?} exists")));
    }
    let project = state
        .store
        .create_project(ProjectRecord {
            id,
            name,
            created_ms: now_ms(),
            settings,
        })
        .await?;
    state.tenants.put_project(&project);
    let view = ProjectView::from(&project);
    audit(
        &state,
        Some(&project.id),
        "project.created",
        Some(&project.id),
        serde_json::json!({ "name": view.name, "settings": view.settings }),
    )
    .await?;
    Ok((StatusCode::CREATED, Json(view)))
}

#[utoipa::path(
    get, path = "/admin/v1/projects", tag = "projects",
    responses((status = 200, body = ProjectList), (status = 401, body = ErrorBody))
)]
pub async fn list_projects(
    _: Admin,
    State(state): State<Arc<AppState>>,
) -> Result<Json<ProjectList>, AdminError> {
    let projects = state.store.list_projects().await?;
    Ok(Json(ProjectList {
        data: projects.iter().map(ProjectView::from).collect(),
    }))
}

#[utoipa::path(
    get, path = "/admin/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "project id")),
    responses(
        (status = 200, body = ProjectView),
        (status = 401, body = ErrorBody), (status = 404, body = ErrorBody)
    )
)]
pub async fn get_project(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
) -> Result<Json<ProjectView>, AdminError> {
    let project = require_project(&state, &id).await?;
    Ok(Json((&project).into()))
}

#[utoipa::path(
    patch, path = "/admin/v1/projects/{id}", tag = "projects",
    params(("id" = String, Path, description = "project id")),
    request_body = UpdateProject,
    responses(
        (status = 200, body = ProjectView),
        (status = 400, body = ErrorBody), (status = 401, body = ErrorBody),
        (status = 404, body = ErrorBody)
    )
)]
pub async fn update_project(
    _: Admin,
    State(state): State<Arc<AppState>>,
    Path(id): Path<String>,
    Body(body): Body<UpdateProject>,
) -> Result<Json<ProjectView>, AdminError> {
    let mut project = require_project(&state, &id).await?;
    // What changed, for the audit record (values are settings, never secrets).
    let mut changed = serde_json::Map::new();
    if let Some(name) = body.name {
        let name = name.trim().to_string();
        if name.is_empty() {
            return Err(AdminError::bad_request("name must not be empty"));
        }
        changed.insert("name".into(), name.clone().into());
        project.name = name;
    }
    let settings = &mut project.settings;
    if let Some(models) = body.allowed_models {
        changed.insert("allowed_models".into(), serde_json::json!(models));
        settings.policy.allowed_models = models;
    }
    if let Some(limits) = body.limits {
        limits.apply(&mut settings.policy.limits);
        changed.insert(
            "limits".into(),
            serde_json::json!(LimitsView::from(&settings.policy.limits)),
        );
    }
    if let Some(enforced) = body.credits_enforced {
        changed.insert("credits_enforced".into(), enforced.into());
        settings.credits_enforced = enforced;
    }
    if let Some(markup) = body.markup_percent {
        changed.insert("markup_percent".into(), serde_json::json!(markup));
        settings.markup_percent = markup;
    }
    if let Some(markups) = body.provider_markup_percent {
        changed.insert("provider_markup_percent".into(), serde_json::json!(markups));
        settings.provider_markup_percent = markups;
    }
    if let Some(members) = body.members {
        changed.insert("members".into(), serde_json::json!(members));
        settings.members = members;
    }
    check_settings(&project.settings)?;
    let project = state
        .store
        .update_project(project)
        .await?
        .ok_or_else(|| AdminError::not_found(format!("no project {id:?}")))?;
    state.tenants.put_project(&project);
    audit(
        &state,
        Some(&project.id),
        "project.updated",
        Some(&project.id),
        changed.into(),
    )
    .await?;
    Ok(Json((&project).into()))
}
