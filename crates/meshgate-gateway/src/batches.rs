//! Message Batches through the gateway: a batch's results are billed at their first fetch
//! only (the fetch claims the batch), batch objects keep the provider's `results_url` out of
//! the client's sight by pointing it at meshgate, and a list of batches shows the caller's
//! own only.

use crate::auth::Principal;
use crate::classify::Route;
use crate::error::GatewayError;
use crate::settle::Settlement;
use crate::state::AppState;
use crate::upstream::Provider;
use bytes::Bytes;
use http::request::Parts;
use meshgate_types::Endpoint;

/// Batch results are billed at the first fetch only: it claims the batch. A later fetch
/// is forwarded unmetered, with the reason in its usage event.
pub(crate) async fn claim_batch(
    state: &AppState,
    route: &Route,
    principal: &Principal,
) -> Result<(Option<String>, Option<String>), GatewayError> {
    if route.endpoint != Endpoint::BatchResults {
        return Ok((None, None));
    }
    let batch_id = route.rest.split('/').nth(2).unwrap_or_default().to_string();
    let now = chrono::Utc::now().timestamp_millis();
    let claimed = state
        .store
        .claim_batch_billing(&batch_id, &principal.project_id, now)
        .await
        .map_err(|e| GatewayError::storage(&e))?;
    Ok(if claimed {
        (Some(batch_id), None)
    } else {
        (
            None,
            Some(format!(
                "results of batch {batch_id} were billed at an earlier fetch"
            )),
        )
    })
}

/// Batch objects name the provider's `results_url`; clients must fetch results through
/// meshgate with their meshgate key, so point it at meshgate.
pub(crate) async fn rewrite_batch(
    state: &AppState,
    provider: &Provider,
    parts: &Parts,
    upstream_body: crate::conn::UpstreamBody,
    mut settlement: Settlement,
    project: &str,
) -> Result<Bytes, GatewayError> {
    let bytes = crate::proxy::collect_upstream(state, upstream_body, &mut settlement).await?;
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(bytes);
    };
    rewrite_batch_value(state, provider, parts, project, &mut value).await?;
    Ok(serde_json::to_vec(&value).map(Bytes::from).unwrap_or(bytes))
}

/// Records a new batch's owner, keeps a list to the caller's batches, and points
/// `results_url`s at meshgate.
async fn rewrite_batch_value(
    state: &AppState,
    provider: &Provider,
    parts: &Parts,
    project: &str,
    value: &mut serde_json::Value,
) -> Result<(), GatewayError> {
    if parts.uri.path().ends_with("/messages/batches") {
        if parts.method == http::Method::POST {
            if let Some(id) = value.get("id").and_then(serde_json::Value::as_str) {
                state.owners.remember(id, project, "batch");
            }
        } else {
            only_own_batches(state, project, value).await?;
        }
    }
    let public = state.public_base(&parts.headers);
    rewrite_results_urls(
        value,
        &provider.v1_base(),
        &format!("{public}/anthropic/v1"),
    );
    Ok(())
}

/// A list of batches shows the caller's project's batches only.
async fn only_own_batches(
    state: &AppState,
    project: &str,
    list: &mut serde_json::Value,
) -> Result<(), GatewayError> {
    let Some(items) = list
        .get_mut("data")
        .and_then(serde_json::Value::as_array_mut)
    else {
        return Ok(());
    };
    let mut own = Vec::with_capacity(items.len());
    for item in items.drain(..) {
        let id = item
            .get("id")
            .and_then(serde_json::Value::as_str)
            .unwrap_or("");
        if state
            .owners
            .owns(project, id)
            .await
            .map_err(|e| GatewayError::storage(&e))?
        {
            own.push(item);
        }
    }
    *items = own;
    Ok(())
}

/// Replaces `upstream_v1` with `public_v1` at the start of every `results_url` in a batch
/// object or a list of them.
pub fn rewrite_results_urls(value: &mut serde_json::Value, upstream_v1: &str, public_v1: &str) {
    let fix = |object: &mut serde_json::Value| {
        if let Some(url) = object.get_mut("results_url") {
            if let Some(rest) = url.as_str().and_then(|s| s.strip_prefix(upstream_v1)) {
                *url = serde_json::Value::String(format!("{public_v1}{rest}"));
            }
        }
    };
    fix(value);
    if let Some(items) = value
        .get_mut("data")
        .and_then(serde_json::Value::as_array_mut)
    {
        items.iter_mut().for_each(fix);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_results_urls() {
        let body = br#"{"data":[{"id":"b1","results_url":"https://api.anthropic.com/v1/messages/batches/b1/results"},{"id":"b2","results_url":null}],"has_more":false}"#;
        let mut v: serde_json::Value = serde_json::from_slice(body).unwrap();
        rewrite_results_urls(
            &mut v,
            "https://api.anthropic.com/v1",
            "http://gw/anthropic/v1",
        );
        assert_eq!(
            v["data"][0]["results_url"],
            "http://gw/anthropic/v1/messages/batches/b1/results"
        );
        assert!(v["data"][1]["results_url"].is_null());
    }
}
