//! The request lifecycle, phase by phase: accept, classify, authenticate, admit,
//! upstream_request, send, relay (see `relay`) and settle (see `settle`). Each phase is a
//! function that may refuse the call; nothing reaches the provider before `send`.

use crate::admit;
use crate::auth::{self, Principal};
use crate::batches;
use crate::classify::{self, BodyKind, RequestInfo, Route};
use crate::error::{ErrorKind, GatewayError};
use crate::owners;
use crate::relay::{RelayBody, RelayMode};
use crate::routing::{self, Candidate};
use crate::selfserve;
use crate::settle::{CallInfo, End, Settlement};
use crate::state::AppState;
use crate::upstream;
use axum::body::Body;
use axum::response::Response;
use bytes::Bytes;
use http::request::Parts;
use http::{header, HeaderValue, Request};
use http_body_util::BodyExt;
use meshgate_providers::translate::{self, Format};
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
    let mut info = read_request(route, &parts, &body).await?;
    let requested = info.model.clone();
    let plan = plan(state, route, &mut info)?;
    // The large sub-futures (admission, sending, the response) are boxed: unboxed, every
    // call's state holds room for its rarest paths (Redis limits, batch rewriting) and is
    // copied whole when the handler is boxed: 19 KB per call before, 9 KB after.
    let admission = Box::pin(admit::admit(state, route, &info, &principal, body.len())).await?;
    check_owner(state, route, &principal).await?;
    if route.endpoint == Endpoint::Models {
        return selfserve::models(state, route, &principal, request_id);
    }
    let (batch_claim, unmetered) = batches::claim_batch(state, route, &principal).await?;
    let call = CallInfo {
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
        provider: "",
        deployment: None,
        model: None,
        requested_model: None,
        price: admission.price,
        streamed: info.stream,
        started_ms: chrono::Utc::now().timestamp_millis(),
        batch_claim,
        unmetered: unmetered.clone(),
        upload_seconds: info.upload_seconds,
    };
    let mut charges = Some(admission.charges);

    // The send phase, attempt by attempt: the next model or deployment on a connect error,
    // a timeout, 429 or 5xx, while nothing has reached the client.
    let router = &state.router;
    let max_attempts = router.config.max_attempts.max(1);
    let mut attempts = 0u32;
    let mut retry_after = None;
    let mut last_error: Option<GatewayError> = None;
    // A retryable answer kept in case no other attempt is left: then the client gets it.
    let mut kept: Option<Attempt> = None;
    'plan: for candidate in &plan {
        let deployments = candidates_deployments(state, &principal, candidate);
        // The only deployment of a model is tried again after a connect error, 5xx or 529
        // (not after a 429, nor a timeout: the client has already waited that long).
        let tries = match deployments.len() {
            1 => 1 + router.config.retries_per_deployment as usize,
            _ => 1,
        };
        let mut retry_same = true;
        let each_try = deployments
            .iter()
            .flat_map(|d| std::iter::repeat_n(d, tries))
            .enumerate();
        for (try_index, deployment) in each_try {
            if attempts >= max_attempts {
                break 'plan;
            }
            if try_index > 0 && tries > 1 && !retry_same {
                break;
            }
            if !deployment.health.allow() {
                continue;
            }
            if attempts > 0 {
                tokio::time::sleep(router.backoff(attempts - 1, retry_after.take())).await;
            }
            attempts += 1;
            // The kept answer is superseded: dropping it writes its usage event.
            kept = None;
            let provider = &deployment.provider;
            let Some(api_key) = provider.api_key.clone() else {
                last_error = Some(
                    GatewayError::new(
                        ErrorKind::Unavailable,
                        format!(
                            "provider {} is not configured: set {} in the gateway's environment",
                            deployment.name, provider.api_key_env
                        ),
                    )
                    .with_code("provider_not_configured"),
                );
                retry_same = false;
                continue;
            };
            let lane = Lane::for_candidate(state, route, candidate, info.stream);
            let source = body_for(&info, &body, &requested, candidate);
            let (attempt_body, filter, dropped) =
                match attempt_request(route, &info, &lane, source, &candidate.model) {
                    Ok(prepared) => prepared,
                    Err(e) => {
                        last_error = Some(e);
                        retry_same = false;
                        continue;
                    }
                };
            let mut call = call.clone();
            call.provider = provider.name;
            call.deployment = Some(deployment.name.clone());
            call.model = info.model.as_ref().map(|_| candidate.model.clone());
            call.requested_model = requested.clone().filter(|r| *r != candidate.model);
            if call.model != info.model {
                // A fallback is priced at its own price when it settles.
                call.price = None;
            }
            // The settlement guard: from here on, whatever happens writes one usage event.
            let mut settlement = Settlement::arm(
                state.ledger.clone(),
                state.catalog.clone(),
                state.owners.clone(),
                call,
                None,
                // The first attempt's times count from the request's arrival.
                if attempts == 1 {
                    started
                } else {
                    Instant::now()
                },
            );
            let mut headers = upstream::upstream_headers(&parts.headers, provider, &api_key);
            match lane.formats {
                Some((_, Format::AnthropicMessages)) => {
                    headers
                        .entry("anthropic-version")
                        .or_insert(HeaderValue::from_static("2023-06-01"));
                }
                Some((_, Format::OpenAiChat)) => {
                    headers.remove("anthropic-version");
                    headers.remove("anthropic-beta");
                }
                // The provider's own headers are set by `upstream_headers`.
                Some((_, Format::GeminiGenerateContent)) | None => {}
            }
            let query = match lane.formats {
                None => parts.uri.query(),
                Some((_, Format::GeminiGenerateContent)) if info.stream => Some("alt=sse"),
                Some(_) => None,
            };
            settlement.sending();
            let sent_at = Instant::now();
            let response = match Box::pin(upstream::send(
                &state.pool,
                provider,
                parts.method.clone(),
                lane.rest(route),
                query,
                headers,
                attempt_body,
                state.config.timeouts.first_byte(),
            ))
            .await
            {
                Ok(response) => response,
                Err(e) => {
                    let outcome = if e.is_timeout() {
                        retry_same = false;
                        Outcome::UpstreamTimeout
                    } else {
                        Outcome::UpstreamUnreachable
                    };
                    let error = e.to_gateway_error(&deployment.name);
                    settlement.finish(End::SendFailed {
                        outcome,
                        reason: error.message.clone(),
                    });
                    deployment.health.on_failure();
                    last_error = Some(error);
                    continue;
                }
            };
            let status = response.status().as_u16();
            if routing::retryable_status(status) {
                deployment.health.on_failure();
                // A rate-limited deployment is not asked again at once: the client's own
                // retries honour its retry-after.
                if status == 429 {
                    retry_same = false;
                }
                retry_after = routing::retry_after_of(response.headers());
                // Recorded as the provider's error if another attempt supersedes it.
                settlement.on_response(status, upstream_request_id(response.headers()), None);
                kept = Some(Attempt {
                    response,
                    settlement,
                    filter,
                    deployment: deployment.name.clone(),
                    candidate: candidate.clone(),
                    lane,
                    dropped,
                    client_model: requested.clone().unwrap_or_default(),
                });
                continue;
            }
            deployment.health.on_success(sent_at.elapsed());
            settlement.attach_charges(charges.take());
            let attempt = Attempt {
                response,
                settlement,
                filter,
                deployment: deployment.name.clone(),
                candidate: candidate.clone(),
                lane,
                dropped,
                client_model: requested.clone().unwrap_or_default(),
            };
            return Box::pin(respond(
                state, route, &parts, &info, &principal, attempt, &unmetered, request_id,
            ))
            .await;
        }
    }
    if let Some(mut attempt) = kept {
        attempt.settlement.attach_charges(charges.take());
        return Box::pin(respond(
            state, route, &parts, &info, &principal, attempt, &unmetered, request_id,
        ))
        .await;
    }
    Err(last_error.unwrap_or_else(|| {
        GatewayError::new(
            ErrorKind::Unavailable,
            "every deployment that could serve this model is unhealthy; retry later",
        )
        .with_code("no_healthy_deployment")
    }))
}

/// One upstream answer and the settlement of its attempt.
struct Attempt {
    response: http::Response<crate::conn::UpstreamBody>,
    settlement: Settlement,
    filter: Option<UsageChunkFilter>,
    deployment: String,
    candidate: Candidate,
    lane: Lane,
    /// Request fields the translation lane left out.
    dropped: Vec<String>,
    /// The model name the client asked for: translated answers name it.
    client_model: String,
}

/// The relay phase begins: the provider's status and headers, then its body, metered.
#[allow(clippy::too_many_arguments)]
async fn respond(
    state: &AppState,
    route: &Route,
    parts: &Parts,
    info: &RequestInfo,
    principal: &Principal,
    attempt: Attempt,
    unmetered: &Option<String>,
    request_id: &str,
) -> Result<Response, GatewayError> {
    let Attempt {
        response,
        mut settlement,
        filter,
        deployment,
        candidate,
        lane,
        mut dropped,
        client_model,
    } = attempt;
    let (mut head, upstream_body) = response.into_parts();
    let status = head.status;
    let upstream_request_id = upstream_request_id(&head.headers);
    let is_sse = head
        .headers
        .get(header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .is_some_and(|ct| ct.starts_with("text/event-stream"));
    // The meter reads the upstream's own bytes, in the upstream's format.
    let meter = (status.is_success() && unmetered.is_none()).then(|| match lane.formats {
        Some((_, Format::GeminiGenerateContent)) => meshgate_providers::gemini_meter(is_sse),
        _ => meter_for(
            lane.upstream_surface,
            lane.upstream_endpoint,
            is_sse,
            &info.facts,
        ),
    });
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
        let keep_length = !is_sse && filter.is_none() && !rewrite && lane.formats.is_none();
        *headers = upstream::client_headers(std::mem::take(&mut head.headers), keep_length);
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(crate::REQUEST_ID_HEADER, v);
        }
        if let Some(v) = settlement
            .event_id()
            .and_then(|id| HeaderValue::from_str(id).ok())
        {
            headers.insert(crate::EVENT_ID_HEADER, v);
        }
        let served = format!(
            "{}/{}; deployment={deployment}",
            candidate.provider, candidate.model
        );
        if let Ok(v) = HeaderValue::from_str(&served) {
            headers.insert(SERVED_MODEL_HEADER, v);
        }
        if !dropped.is_empty() {
            dropped.sort();
            dropped.dedup();
            if let Ok(v) = HeaderValue::from_str(&dropped.join(", ")) {
                headers.insert(translate::DROPPED_FIELDS_HEADER, v);
            }
        }
    }
    // The translation lane: a whole answer (or error) is translated at once, a stream
    // event by event (below).
    if let Some((client, upstream)) = lane.formats.filter(|_| !(status.is_success() && is_sse)) {
        let bytes = Box::pin(collect_upstream(state, upstream_body, &mut settlement)).await?;
        let out = if status.is_success() {
            let t = translate::translate_response(upstream, client, &bytes, &client_model)
                .map_err(|e| {
                    GatewayError::new(
                        ErrorKind::BadGateway,
                        format!(
                            "the provider's answer could not be translated: {}",
                            e.message
                        ),
                    )
                })?;
            if let (false, Some(headers)) = (t.dropped.is_empty(), builder.headers_mut()) {
                dropped.extend(t.dropped);
                dropped.sort();
                dropped.dedup();
                if let Ok(v) = HeaderValue::from_str(&dropped.join(", ")) {
                    headers.insert(translate::DROPPED_FIELDS_HEADER, v);
                }
            }
            t.body
        } else {
            translate::translate_error(upstream, client, &bytes)
        };
        return builder
            .body(Body::from(out))
            .map_err(|e| GatewayError::new(ErrorKind::Internal, e.to_string()));
    }
    let provider = state.provider(route.surface);
    let body = if rewrite {
        Body::from(
            Box::pin(batches::rewrite_batch(
                state,
                provider,
                parts,
                upstream_body,
                settlement,
                &principal.project_id,
            ))
            .await?,
        )
    } else {
        let translator = match lane.formats {
            Some((client, upstream)) if status.is_success() && is_sse => {
                translate::stream_translator(upstream, client, &client_model, info.include_usage)
            }
            _ => None,
        };
        let mode = RelayMode {
            sse: is_sse.then_some((route.surface, route.endpoint)),
            filter,
            translator,
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

fn upstream_request_id(headers: &http::HeaderMap) -> Option<String> {
    headers
        .get("x-request-id")
        .or_else(|| headers.get("request-id"))
        .and_then(|v| v.to_str().ok())
        .map(str::to_string)
}

/// Response header naming the model and deployment that served the call.
pub const SERVED_MODEL_HEADER: &str = "meshgate-served-model";

/// The route phase: the models to try. Calls that name no model go to the surface's own
/// provider. A model of the other API is reached through the translation lane, which
/// chat completions and messages have; plain names take their provider from the catalog.
fn plan(
    state: &AppState,
    route: &Route,
    info: &mut RequestInfo,
) -> Result<Vec<Candidate>, GatewayError> {
    let own = state.provider(route.surface).name;
    let Some(requested) = info.model.clone() else {
        return Ok(vec![Candidate {
            provider: own,
            model: String::new(),
        }]);
    };
    let fallbacks = std::mem::take(&mut info.fallback_models);
    let mut all = state.router.plan(route.surface, &requested, &fallbacks);
    for c in &mut all {
        let named_provider = c.model.contains('/');
        if let (false, Some(price)) = (named_provider, state.catalog.price(&c.model)) {
            match price.provider.as_deref() {
                Some("openai") => c.provider = "openai",
                Some("anthropic") => c.provider = "anthropic",
                Some("gemini") => c.provider = "gemini",
                _ => {}
            }
        }
    }
    let translatable = matches!(
        route.endpoint,
        Endpoint::ChatCompletions | Endpoint::Messages
    );
    let (usable, other): (Vec<Candidate>, Vec<Candidate>) = all
        .into_iter()
        .partition(|c| c.provider == own || translatable);
    if usable.is_empty() {
        let names: Vec<String> = other
            .iter()
            .map(|c| format!("{}/{}", c.provider, c.model))
            .collect();
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            format!(
                "model '{requested}' resolves to {}, which the {} API's {} endpoint cannot reach \
                 (only chat completions and messages are translated between APIs)",
                names.join(", "),
                route.surface.as_str(),
                route.endpoint.as_str()
            ),
        )
        .with_param("model"));
    }
    info.model = usable.first().map(|c| c.model.clone());
    info.facts.model = info.model.clone();
    info.fallback_models = usable
        .iter()
        .skip(1)
        .map(|c| format!("{}/{}", c.provider, c.model))
        .collect();
    Ok(usable)
}

/// How one attempt reaches its model: the client's own API (bytes pass through), or
/// another API through translation (the other of OpenAI and Anthropic, or Gemini).
struct Lane {
    /// `(client, upstream)` formats on the translation lane.
    formats: Option<(Format, Format)>,
    /// The upstream's surface and endpoint, which choose its meter (Gemini has its own).
    upstream_surface: Surface,
    upstream_endpoint: Endpoint,
    /// Gemini: the path of the call, which names the model and the method.
    gemini_path: Option<String>,
}

impl Lane {
    fn for_candidate(state: &AppState, route: &Route, candidate: &Candidate, stream: bool) -> Lane {
        let client = match route.surface {
            Surface::OpenAi => Format::OpenAiChat,
            Surface::Anthropic => Format::AnthropicMessages,
        };
        if candidate.provider == "gemini" {
            let method = if stream {
                "streamGenerateContent"
            } else {
                "generateContent"
            };
            return Lane {
                formats: Some((client, Format::GeminiGenerateContent)),
                upstream_surface: route.surface,
                upstream_endpoint: route.endpoint,
                gemini_path: Some(format!("v1beta/models/{}:{method}", candidate.model)),
            };
        }
        if candidate.provider == state.provider(route.surface).name {
            return Lane {
                formats: None,
                upstream_surface: route.surface,
                upstream_endpoint: route.endpoint,
                gemini_path: None,
            };
        }
        match route.surface {
            Surface::OpenAi => Lane {
                formats: Some((client, Format::AnthropicMessages)),
                upstream_surface: Surface::Anthropic,
                upstream_endpoint: Endpoint::Messages,
                gemini_path: None,
            },
            Surface::Anthropic => Lane {
                formats: Some((client, Format::OpenAiChat)),
                upstream_surface: Surface::OpenAi,
                upstream_endpoint: Endpoint::ChatCompletions,
                gemini_path: None,
            },
        }
    }

    /// The path below the provider's base URL (below `/v1/` for OpenAI and Anthropic) the
    /// attempt is sent to.
    fn rest<'a>(&'a self, route: &'a Route) -> &'a str {
        match self.formats {
            None => &route.rest,
            Some((_, Format::AnthropicMessages)) => "messages",
            Some((_, Format::OpenAiChat)) => "chat/completions",
            Some((_, Format::GeminiGenerateContent)) => self.gemini_path.as_deref().unwrap_or(""),
        }
    }
}

/// Whether a model name can stand in a Gemini URL path as it is (`gemini-2.5-flash`,
/// `tunedModels/x` is not served); others are refused rather than escaped.
fn valid_gemini_model(model: &str) -> bool {
    !model.is_empty()
        && model
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// The request body of one attempt, with the filter of an injected usage chunk and, on
/// the translation lane, the fields left out.
fn attempt_request(
    route: &Route,
    info: &RequestInfo,
    lane: &Lane,
    body: Bytes,
    model: &str,
) -> Result<(Bytes, Option<UsageChunkFilter>, Vec<String>), GatewayError> {
    let Some((client, upstream)) = lane.formats else {
        let (body, filter) = upstream_body(route, info, body);
        return Ok((body, filter, Vec::new()));
    };
    if upstream == Format::GeminiGenerateContent && !valid_gemini_model(model) {
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("'{model}' is not a Gemini model name (letters, digits, '-', '_', '.')"),
        )
        .with_param("model"));
    }
    let translated = translate::translate_request(
        client,
        upstream,
        &body,
        model,
        &translate::RequestOptions::default(),
    )
    .map_err(|e| {
        // The field is named in `param` (OpenAI's shape) and in the message (both shapes).
        let field = if e.param.is_empty() {
            String::new()
        } else {
            format!("{}: ", e.param)
        };
        let error = GatewayError::new(
            ErrorKind::InvalidRequest,
            format!(
                "{field}{} (the call is translated for model {model})",
                e.message
            ),
        )
        .with_code("untranslatable_field");
        if e.param.is_empty() {
            error
        } else {
            error.with_param(e.param)
        }
    })?;
    let mut body = translated.body;
    if upstream == Format::OpenAiChat && info.stream {
        // The upstream's own usage is what is metered: ask for it.
        body = inject_include_usage(&body).unwrap_or(body);
    }
    Ok((body, None, translated.dropped))
}

/// The deployments to try for one model: the project's own provider key when it has one,
/// else the router's, best first.
fn candidates_deployments(
    state: &AppState,
    principal: &Principal,
    candidate: &Candidate,
) -> Vec<Arc<routing::Deployment>> {
    if let Some(own) = state
        .tenants
        .provider(&principal.project_id, candidate.provider)
    {
        let global = state.provider_named(candidate.provider);
        return vec![Arc::new(routing::Deployment {
            name: format!("{}:{}", principal.project_id, candidate.provider),
            provider: global.with_project_key(&own.api_key, own.base_url.as_deref()),
            weight: 1,
            models: None,
            health: routing::Health::new(u32::MAX, std::time::Duration::ZERO),
        })];
    }
    state.router.deployments_for(candidate)
}

/// The body for one attempt: unchanged when it asks for what the client sent; else the
/// attempt's model in `model`, and without the routing fields meshgate consumed. Every
/// other byte stays as the client sent it (prompt-cache prefixes and schema key order).
fn body_for(
    info: &RequestInfo,
    body: &Bytes,
    requested: &Option<String>,
    candidate: &Candidate,
) -> Bytes {
    let same_model = requested.as_deref().is_none_or(|r| r == candidate.model);
    if same_model && !info.has_routing_fields {
        return body.clone();
    }
    let model = (!same_model).then_some(candidate.model.as_str());
    crate::splice::edit_members(body, model, &["models", "route"])
        .map(Bytes::from)
        .unwrap_or_else(|| body.clone())
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
        BodyKind::Multipart => {
            Box::pin(classify::probe_multipart(&parts.headers, body.clone())).await?
        }
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
        .map_err(|e| GatewayError::storage(&e))?
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

/// A whole upstream body, observed by the meter and settled; a broken or silent body is a
/// 502 or 504 (and settles as such).
pub(crate) async fn collect_upstream(
    state: &AppState,
    upstream_body: crate::conn::UpstreamBody,
    settlement: &mut Settlement,
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
    Ok(bytes)
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
}
