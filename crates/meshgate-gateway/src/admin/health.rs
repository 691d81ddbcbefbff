//! `/admin/v1/providers/health`: each deployment's circuit breaker and passive health
//! (requests, failures, latency), as this instance sees them.

use super::views::ErrorBody;
use super::Admin;
use crate::state::AppState;
use axum::extract::State;
use axum::Json;
use serde::Serialize;
use std::sync::Arc;
use utoipa::ToSchema;

#[derive(Debug, Serialize, ToSchema)]
pub struct DeploymentHealth {
    /// The deployment's name (`openai` and `anthropic` for the built-in ones).
    pub name: String,
    /// The API it speaks: `openai` or `anthropic`.
    pub provider: String,
    pub base_url: String,
    pub weight: u32,
    /// `closed` (healthy), `open` (skipped) or `half_open` (one probe call allowed).
    pub state: String,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    /// Failed share of the last `recent_requests` outcomes (`routing.breaker_window`).
    pub error_rate: f64,
    pub recent_requests: u32,
    /// Recent latency well above its siblings' (or `routing.slow_latency_ms`): tried after
    /// the other deployments of its provider.
    pub slow: bool,
    /// Average time to the response head, recent calls weighted most.
    pub latency_ewma_ms: f64,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct HealthList {
    pub data: Vec<DeploymentHealth>,
}

#[utoipa::path(
    get, path = "/admin/v1/providers/health", tag = "providers",
    responses((status = 200, body = HealthList), (status = 401, body = ErrorBody))
)]
pub async fn providers_health(_: Admin, State(state): State<Arc<AppState>>) -> Json<HealthList> {
    let router = &state.router;
    // Slowness is judged against the other deployments of the same provider.
    let siblings = |d: &crate::routing::Deployment| -> Vec<_> {
        router
            .deployments
            .iter()
            .filter(|s| s.provider.name == d.provider.name)
            .cloned()
            .collect()
    };
    let data = router
        .deployments
        .iter()
        .map(|d| {
            let r = d.health.report();
            DeploymentHealth {
                name: d.name.clone(),
                provider: d.provider.name.to_string(),
                base_url: d.provider.base_url.clone(),
                weight: d.weight,
                state: r.state.to_string(),
                consecutive_failures: r.consecutive_failures,
                requests: r.requests,
                failures: r.failures,
                error_rate: r.error_rate,
                recent_requests: r.recent_requests,
                slow: router.slow(d, &siblings(d)),
                latency_ewma_ms: r.latency_ewma_ms,
            }
        })
        .collect();
    Json(HealthList { data })
}
