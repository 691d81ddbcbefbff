//! The request lifecycle, phase by phase: accept, classify, authenticate, admit,
//! upstream_request, send, relay (see `relay`) and settle (see `settle`). Each phase is a
//! function that may refuse the call; nothing reaches the provider before `send`.

use crate::admit;
use crate::auth::{self, Principal};
use crate::classify::{self, BodyKind, RequestInfo, Route};
use crate::error::{ErrorKind, GatewayError};
use crate::owners;
use crate::relay::{RelayBody, RelayMode};
use crate::selfserve;
use crate::settle::{CallInfo, End, Settlement};
use crate::state::AppState;
use crate::upstream::{self, Provider};
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request};
use http_body_util::BodyExt;
use meshgate_providers::{meter_for, UsageChunkFilter};
use meshgate_store::Outcome;
use meshgate_types::{Endpoint, Surface};
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// Serves one proxied call from start to end.
pub async fn handle(state: Arc<AppState>, request: Request<Body>) -> Response {
    let started = Instant::now();
    let request_id = new_request_id();
    let (parts, body) = request.into_parts();

    if let Some((surface, rest)) = selfserve::selfserve_path(parts.uri.path()) {
        let rest = rest.to_string();
        return match serve_own(&state, &parts, body, &rest, &request_id).await {
            Ok(response) => response,
            Err(e) => e.into_response(surface, &request_id),
        };
    }
    let route = match classify::classify(&parts.method, parts.uri.path(), &parts.headers) {
        Ok(route) => route,
        Err(e) => {
            return e
                .into_error(&parts.method, parts.uri.path())
                .into_response(e.surface(), &request_id)
        }
    };
    let surface = route.surface;
    match serve(&state, &route, parts, body, started, &request_id).await {
        Ok(response) => response,
        Err(e) => e.into_response(surface, &request_id),
    }
}

/// meshgate's own paths: authenticated like any call, answered by meshgate itself.
async fn serve_own(
    state: &AppState,
    parts: &Parts,
    body: Body,
    rest: &str,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let surface = selfserve::selfserve_path(parts.uri.path())
        .map(|(s, _)| s)
        .unwrap_or(Surface::OpenAi);
    let principal = auth::authenticate(
        state,
        surface,
        &parts.headers,
        chrono::Utc::now().timestamp_millis(),
    )
    .await?;
    let body = accept(body, 64 * 1024).await?;
    selfserve::serve(
        state,
        &parts.method,
        rest,
        parts.uri.query(),
        body,
        &principal,
        request_id,
    )
    .await
}

async fn serve(
    state: &Arc<AppState>,
    route: &Route,
    parts: Parts,
    body: Body,
    started: Instant,
    request_id: &str,
) -> Result<Response, GatewayError> {
    // Cheap refusals first: a body too large by its declared length, then credentials.
    let limit = state.config.limits.max_body_bytes;
    if declared_length(&parts).is_some_and(|n| n > limit) {
        return Err(too_large(limit));
    }
    let principal = auth::authenticate(
        state,
        route.surface,
        &parts.headers,
        chrono::Utc::now().timestamp_millis(),
    )
    .await?;
    let annotations = annotations(&parts.headers)?;
    let body = accept(body, limit).await?;
    let info = read_request(route, &parts, &body).await?;
    let admission = admit::admit(state, route, &info, &principal, body.len()).await?;
    check_owner(state, route, &principal).await?;
    if route.endpoint == Endpoint::Models {
        return selfserve::models(state, route, &principal, request_id);
    }
    let provider = &provider_for(state, route.surface, &principal.project_id);
    let Some(api_key) = provider.api_key.clone() else {
        return Err(GatewayError::new(
            ErrorKind::Unavailable,
            format!(
                "provider {} is not configured: set {} in the gateway's environment",
                provider.name, provider.api_key_env
            ),
        )
        .with_code("provider_not_configured"));
    };

    let (batch_claim, unmetered) = claim_batch(state, route, &principal).await?;

    // The settlement guard: from here on, whatever happens writes one usage event.
    let mut settlement = Settlement::arm(
        state.ledger.clone(),
        state.catalog.clone(),
        state.owners.clone(),
        CallInfo {
            request_id: request_id.to_string(),
            project_id: principal.project_id.clone(),
            key_id: principal.key_id().map(str::to_string),
            token_id: principal.token_id.clone(),
            user: principal.user.clone(),
            room: principal.room.clone(),
            delegation_id: principal.delegation.as_ref().map(|d| d.id.clone()),
            annotations,
            surface: route.surface,
            endpoint: route.endpoint,
            provider: provider.name,
            model: info.model.clone(),
            price: admission.price,
            streamed: info.stream,
            started_ms: chrono::Utc::now().timestamp_millis(),
            batch_claim,
            unmetered: unmetered.clone(),
            upload_seconds: info.upload_seconds,
        },
        admission.charges,
        started,
    );

    let (body, filter) = upstream_body(route, &info, body);
    let headers = upstream::upstream_headers(&parts.headers, provider, &api_key);
    let response = match upstream::send(
        &state.pool,
        provider,
        parts.method.clone(),
        &route.rest,
        parts.uri.query(),
        headers,
        body,
        state.config.timeouts.first_byte(),
    )
    .await
    {
        Ok(response) => response,
        Err(e) => {
            let outcome = if e.is_timeout() {
                Outcome::UpstreamTimeout
            } else {
                Outcome::UpstreamUnreachable
            };
            let error = e.to_gateway_error(provider.name);
            settlement.finish(End::SendFailed {
                outcome,
                reason: error.message.clone(),
            });
            return Err(error);
        }
    };

    let (mut head, upstream_body) = response.into_parts();
    let status = head.status;
    let upstream_request_id = head
        .headers
        .get("x-request-id")
        .or_else(|| head.headers.get("request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let is_sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    let meter = (status.is_success() && unmetered.is_none())
        .then(|| meter_for(route.surface, route.endpoint, is_sse, &info.facts));
    settlement.on_response(status.as_u16(), upstream_request_id, meter);
    if !status.is_success() {
        // Give the claim back before the client can retry (a cut body releases it later).
        if let Some(batch) = settlement.take_batch_claim() {
            if let Err(e) = state.store.release_batch_billing(&batch).await {
                tracing::error!(error = %e, %batch, "cannot release a batch billing claim");
            }
        }
    }

    let rewrite = status.is_success() && route.endpoint == Endpoint::Batches;
    let filter = filter.filter(|_| status.is_success() && is_sse);
    let mut builder = Response::builder().status(status);
    if let Some(headers) = builder.headers_mut() {
        let keep_length = !is_sse && filter.is_none() && !rewrite;
        *headers = upstream::client_headers(std::mem::take(&mut head.headers), keep_length);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(crate::REQUEST_ID_HEADER, v);
        }
    }
    let body = if rewrite {
        Body::from(
            rewrite_batch(
                state,
                provider,
                &parts,
                upstream_body,
                settlement,
                &principal.project_id,
            )
            .await?,
        )
    } else {
        let mode = RelayMode {
            sse: is_sse.then_some((route.surface, route.endpoint)),
            filter,
        };
        Body::new(RelayBody::new(
            upstream_body,
            settlement,
            mode,
            state.config.timeouts.between_chunks(),
        ))
    };
    builder
        .body(body)
        .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()))
}

fn new_request_id() -> String {
    format!("mgreq_{}", uuid::Uuid::now_v7().simple())
}

fn declared_length(parts: &Parts) -> Option<usize> {
    parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse().ok())
}

fn too_large(limit: usize) -> GatewayError {
    GatewayError::new(
        ErrorKind::RequestTooLarge,
        format!("the request body is larger than {limit} bytes (limits.max_body_bytes)"),
    )
    .with_code("request_too_large")
}

/// The accept phase: the whole body, refused with 413 past the limit.
async fn accept(body: Body, limit: usize) -> Result<Bytes, GatewayError> {
    match http_body_util::Limited::new(body, limit).collect().await {
        Ok(collected) => Ok(collected.to_bytes()),
        Err(e)
            if e.downcast_ref::<http_body_util::LengthLimitError>()
                .is_some() =>
        {
            Err(too_large(limit))
        }
        Err(e) => Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("could not read the request body: {e}"),
        )),
    }
}

/// The classify phase, body part: read model, stream and units without rewriting.
async fn read_request(
    route: &Route,
    parts: &Parts,
    body: &Bytes,
) -> Result<RequestInfo, GatewayError> {
    let mut info = match route.body {
        BodyKind::Json => classify::probe_json(route, body)?,
        BodyKind::Multipart => classify::probe_multipart(&parts.headers, body.clone()).await?,
        BodyKind::None => RequestInfo::default(),
    };
    // OpenAI's image endpoints default to dall-e-2 when no model is given.
    if info.model.is_none()
        && matches!(
            route.endpoint,
            Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations
        )
    {
        info.model = Some("dall-e-2".into());
        info.facts.model = info.model.clone();
    }
    Ok(info)
}

/// The provider the call goes to: the project's own key and base URL when it brought
/// them, else the gateway's.
fn provider_for(state: &AppState, surface: Surface, project: &str) -> Provider {
    let global = state.provider(surface);
    match state.tenants.provider(project, global.name) {
        None => global.clone(),
        Some(own) => global.with_project_key(&own.api_key, own.base_url.as_deref()),
    }
}

/// A call that names a provider-side object (a batch, a stored response) must come from
/// the project that created it; for any other caller the object does not exist.
async fn check_owner(
    state: &AppState,
    route: &Route,
    principal: &Principal,
) -> Result<(), GatewayError> {
    let Some((kind, id)) = owners::object_in_path(&route.rest) else {
        return Ok(());
    };
    if state
        .owners
        .owns(&principal.project_id, id)
        .await
        .map_err(storage_error)?
    {
        return Ok(());
    }
    Err(GatewayError::new(
        ErrorKind::NotFound,
        format!("no {kind} {id} in project {}", principal.project_id),
    )
    .with_code("not_found"))
}

/// Most annotations one call may carry.
const MAX_ANNOTATIONS: usize = 16;
const ANNOTATION_PREFIX: &str = "meshgate-annotation-";

/// `Meshgate-Annotation-<name>: <value>` headers, which tag the call's usage event.
fn annotations(headers: &http::HeaderMap) -> Result<BTreeMap<String, String>, GatewayError> {
    let mut out = BTreeMap::new();
    for (name, value) in headers {
        let Some(key) = name.as_str().strip_prefix(ANNOTATION_PREFIX) else {
            continue;
        };
        let invalid = |why: &str| {
            GatewayError::new(
                ErrorKind::InvalidRequest,
                format!("invalid annotation header {name}: {why}"),
            )
        };
        let valid_name = !key.is_empty()
            && key.len() <= 64
            && key
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'));
        if !valid_name {
            return Err(invalid(
                "names are 1 to 64 letters, digits, `-`, `_` or `.`",
            ));
        }
        let value = value
            .to_str()
            .map_err(|_| invalid("the value is not visible ASCII"))?;
        if value.len() > 256 {
            return Err(invalid("values are at most 256 characters"));
        }
        out.insert(key.to_string(), value.trim().to_string());
        if out.len() > MAX_ANNOTATIONS {
            return Err(invalid("a call carries at most 16 annotations"));
        }
    }
    Ok(out)
}

/// Batch results are billed at the first fetch only: it claims the batch. A later fetch
/// is forwarded unmetered, with the reason in its usage event.
async fn claim_batch(
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
        .map_err(|e| GatewayError::new(ErrorKind::Internal, format!("storage error: {e}")))?;
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

/// The upstream_request phase, body part: chat streams that did not ask for usage get
/// `stream_options.include_usage` injected, and a filter that hides the extra chunk.
fn upstream_body(
    route: &Route,
    info: &RequestInfo,
    body: Bytes,
) -> (Bytes, Option<UsageChunkFilter>) {
    if route.endpoint != Endpoint::ChatCompletions || !info.stream || info.include_usage {
        return (body, None);
    }
    match inject_include_usage(&body) {
        Some(injected) => (injected, Some(UsageChunkFilter::new())),
        None => (body, None),
    }
}

/// Adds `"stream_options":{"include_usage":true}` to a JSON object body. Splices text when
/// the key is absent (the common case), else edits the parsed value.
fn inject_include_usage(body: &[u8]) -> Option<Bytes> {
    let has_options = memchr::memmem::find(body, b"\"stream_options\"").is_some();
    if !has_options {
        let open = body.iter().position(|b| !b.is_ascii_whitespace())?;
        if body[open] != b'{' {
            return None;
        }
        let mut out = Vec::with_capacity(body.len() + 48);
        out.extend_from_slice(&body[..=open]);
        out.extend_from_slice(br#""stream_options":{"include_usage":true},"#);
        out.extend_from_slice(&body[open + 1..]);
        return Some(Bytes::from(out));
    }
    let mut value: serde_json::Value = serde_json::from_slice(body).ok()?;
    let options = value
        .as_object_mut()?
        .entry("stream_options")
        .or_insert_with(|| serde_json::json!({}));
    if !options.is_object() {
        *options = serde_json::json!({});
    }
    options
        .as_object_mut()?
        .insert("include_usage".into(), serde_json::Value::Bool(true));
    serde_json::to_vec(&value).ok().map(Bytes::from)
}

/// Batch objects name the provider's `results_url`; clients must fetch results through
/// meshgate with their meshgate key, so point it at meshgate.
async fn rewrite_batch(
    state: &AppState,
    provider: &Provider,
    parts: &Parts,
    upstream_body: crate::conn::UpstreamBody,
    mut settlement: Settlement,
    project: &str,
) -> Result<Bytes, GatewayError> {
    let collected = tokio::time::timeout(
        state.config.timeouts.between_chunks(),
        upstream_body.collect(),
    )
    .await;
    let bytes = match collected {
        Ok(Ok(c)) => c.to_bytes(),
        Ok(Err(e)) => {
            let reason = format!("the provider's response broke off: {e}");
            settlement.finish(End::Cut {
                outcome: Outcome::Incomplete,
                reason: reason.clone(),
            });
            return Err(GatewayError::new(ErrorKind::BadGateway, reason));
        }
        Err(_) => {
            let reason = "the provider's batch response timed out".to_string();
            settlement.finish(End::Cut {
                outcome: Outcome::UpstreamTimeout,
                reason: reason.clone(),
            });
            return Err(GatewayError::new(ErrorKind::Timeout, reason));
        }
    };
    settlement.observe(&bytes);
    settlement.finish(End::Completed);
    let Ok(mut value) = serde_json::from_slice::<serde_json::Value>(&bytes) else {
        return Ok(bytes);
    };
    if parts.uri.path().ends_with("/messages/batches") {
        if parts.method == http::Method::POST {
            if let Some(id) = value.get("id").and_then(serde_json::Value::as_str) {
                state.owners.remember(id, project, "batch");
            }
        } else {
            only_own_batches(state, project, &mut value).await?;
        }
    }
    let public = state.public_base(&parts.headers);
    rewrite_results_urls(
        &mut value,
        &provider.v1_base(),
        &format!("{public}/anthropic/v1"),
    );
    Ok(serde_json::to_vec(&value).map(Bytes::from).unwrap_or(bytes))
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
            .map_err(storage_error)?
        {
            own.push(item);
        }
    }
    *items = own;
    Ok(())
}

fn storage_error(e: meshgate_store::StoreError) -> GatewayError {
    tracing::error!(error = %e, "store error");
    GatewayError::new(ErrorKind::Internal, "storage error")
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
    fn injects_include_usage_without_reserialising() {
        let body = br#"  {"model":"gpt-4o","stream":true,"messages":[]}"#;
        let out = inject_include_usage(body).unwrap();
        assert_eq!(
            &out[..],
            br#"  {"stream_options":{"include_usage":true},"model":"gpt-4o","stream":true,"messages":[]}"#
        );
        let body =
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_obfuscation":false}}"#;
        let v: serde_json::Value =
            serde_json::from_slice(&inject_include_usage(body).unwrap()).unwrap();
        assert_eq!(v["stream_options"]["include_usage"], true);
        assert_eq!(v["stream_options"]["include_obfuscation"], false);
    }

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
