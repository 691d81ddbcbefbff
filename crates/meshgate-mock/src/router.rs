//! Request dispatch: read and record the request, classify surface and endpoint, check auth, call the handler.
//!
//! Azure OpenAI paths (`/openai/deployments/{deployment}/{rest}?api-version=..` and the v1
//! API's `/openai/v1/{rest}`) are served by the handler of OpenAI's `/v1/{rest}`, with
//! Azure's `api-key` auth and errors.

use std::convert::Infallible;
use std::sync::Arc;

use bytes::Bytes;
use http::{Method, StatusCode};
use http_body_util::BodyExt as _;
use hyper::body::Incoming;
use hyper::Request;

use crate::body::MockBody;
use crate::control::Control;
use crate::reply::{self, Resp, Surface};
use crate::state::{MockState, Raw};
use crate::{anthropic, batches, gemini, images, introspect, media, openai};

/// Everything a handler needs about one call.
pub(crate) struct Call<'a> {
    pub state: &'a Arc<MockState>,
    pub parts: &'a http::request::Parts,
    pub body: &'a Bytes,
    pub ctl: Control,
    /// Request sequence number: `req_mock_<n>` and the ids of created objects.
    pub n: u64,
    pub scheme: &'static str,
    /// Called on an Azure OpenAI path: chat adds Azure's content filter results.
    pub azure: bool,
}

impl Call<'_> {
    pub fn header(&self, name: &str) -> Option<&str> {
        self.parts.headers.get(name).and_then(|v| v.to_str().ok())
    }

    /// `scheme://host` of the mock as the client addressed it (Host header, else the URI authority).
    pub fn base_url(&self) -> String {
        let host = self
            .header("host")
            .map(str::to_owned)
            .or_else(|| self.parts.uri.authority().map(|a| a.to_string()))
            .unwrap_or_else(|| "localhost".to_owned());
        format!("{}://{host}", self.scheme)
    }

    pub fn bad_request(&self, surface: Surface, message: &str) -> Resp {
        reply::bad_request(surface, message, self.n)
    }
}

enum Route<'p> {
    Chat,
    Responses,
    ResponsesCompact,
    ResponsesInputTokens,
    Embeddings,
    Speech,
    Transcriptions,
    Translations,
    ImageGenerations,
    ImageEdits,
    ImageVariations,
    OpenAiModels,
    OpenAiModel(&'p str),
    Messages,
    CountTokens,
    BatchCreate,
    BatchList,
    BatchGet(&'p str),
    BatchCancel(&'p str),
    BatchDelete(&'p str),
    BatchResults(&'p str),
    Complete,
    AnthropicModels,
    AnthropicModel(&'p str),
}

/// The two forms of Azure OpenAI paths.
#[derive(Clone, Copy, PartialEq, Eq)]
enum AzureApi {
    /// `/openai/deployments/{deployment}/{rest}`, which needs `api-version`.
    Deployment,
    /// `/openai/v1/{rest}`: the deployment is the body's `model`.
    V1,
}

/// Endpoints Azure serves below `/openai/deployments/{deployment}/`.
const AZURE_DEPLOYMENT_ROUTES: [&str; 7] = [
    "chat/completions",
    "embeddings",
    "images/generations",
    "images/edits",
    "audio/speech",
    "audio/transcriptions",
    "audio/translations",
];

/// An Azure path as the OpenAI `/v1/...` path whose handler serves it; `None` for other
/// paths. An Azure path the mock does not serve maps to a path no route has.
fn azure_path(path: &str) -> Option<(String, AzureApi)> {
    let tail = path.strip_prefix("/openai/")?;
    if let Some(rest) = tail.strip_prefix("v1/") {
        return Some((format!("/v1/{rest}"), AzureApi::V1));
    }
    let known = tail
        .strip_prefix("deployments/")
        .and_then(|t| t.split_once('/'))
        .filter(|(d, rest)| !d.is_empty() && AZURE_DEPLOYMENT_ROUTES.contains(rest));
    Some(match known {
        Some((_, rest)) => (format!("/v1/{rest}"), AzureApi::Deployment),
        None => (String::new(), AzureApi::Deployment),
    })
}

fn looks_anthropic(parts: &http::request::Parts) -> bool {
    parts.headers.contains_key("anthropic-version") || parts.headers.contains_key("x-api-key")
}

fn classify<'p>(method: &Method, path: &'p str, anthropic: bool) -> Option<(Surface, Route<'p>)> {
    use Surface::{Anthropic as A, OpenAi as O};
    let rest = path.strip_prefix("/v1/")?;
    let post = method == Method::POST;
    let get = method == Method::GET;
    let r = match rest {
        "chat/completions" if post => (O, Route::Chat),
        "responses" if post => (O, Route::Responses),
        "responses/compact" if post => (O, Route::ResponsesCompact),
        "responses/input_tokens" if post => (O, Route::ResponsesInputTokens),
        "embeddings" if post => (O, Route::Embeddings),
        "audio/speech" if post => (O, Route::Speech),
        "audio/transcriptions" if post => (O, Route::Transcriptions),
        "audio/translations" if post => (O, Route::Translations),
        "images/generations" if post => (O, Route::ImageGenerations),
        "images/edits" if post => (O, Route::ImageEdits),
        "images/variations" if post => (O, Route::ImageVariations),
        "models" if get && anthropic => (A, Route::AnthropicModels),
        "models" if get => (O, Route::OpenAiModels),
        "messages" if post => (A, Route::Messages),
        "messages/count_tokens" if post => (A, Route::CountTokens),
        "messages/batches" if post => (A, Route::BatchCreate),
        "messages/batches" if get => (A, Route::BatchList),
        "complete" if post => (A, Route::Complete),
        _ => {
            if let Some(id) = rest.strip_prefix("models/").filter(|s| !s.is_empty()) {
                if !get {
                    return None;
                }
                return Some(if anthropic {
                    (A, Route::AnthropicModel(id))
                } else {
                    (O, Route::OpenAiModel(id))
                });
            }
            let tail = rest.strip_prefix("messages/batches/")?;
            match tail.split_once('/') {
                None if get => (A, Route::BatchGet(tail)),
                None if method == Method::DELETE => (A, Route::BatchDelete(tail)),
                Some((id, "cancel")) if post => (A, Route::BatchCancel(id)),
                Some((id, "results")) if get => (A, Route::BatchResults(id)),
                _ => return None,
            }
        }
    };
    Some(r)
}

/// The hyper service: never fails, every problem is a native error response.
pub(crate) async fn handle(
    state: Arc<MockState>,
    req: Request<Incoming>,
    scheme: &'static str,
) -> Result<Resp, Infallible> {
    let (parts, body) = req.into_parts();
    let Ok(collected) = body.collect().await else {
        let mut r = Resp::new(MockBody::empty());
        *r.status_mut() = StatusCode::BAD_REQUEST;
        return Ok(r);
    };
    let body = collected.to_bytes();
    if parts.uri.path().starts_with("/_mock/") {
        return Ok(introspect::handle(&state, &parts, scheme));
    }
    let raw = Arc::new(Raw { parts, body });
    let n = state.record(&raw);
    if raw.parts.uri.path().starts_with("/v1beta/") {
        return Ok(gemini::handle(&state, &raw, n).await);
    }
    let azure = azure_path(raw.parts.uri.path());
    let anthropic = azure.is_none() && looks_anthropic(&raw.parts);
    let path = azure
        .as_ref()
        .map_or(raw.parts.uri.path(), |(p, _)| p.as_str());
    let route = classify(&raw.parts.method, path, anthropic)
        // Azure serves OpenAI's API only.
        .filter(|(s, _)| azure.is_none() || *s == Surface::OpenAi);
    let surface = match &route {
        Some((s, _)) => *s,
        None if anthropic => Surface::Anthropic,
        None => Surface::OpenAi,
    };
    let api = azure.as_ref().map(|(_, api)| *api);
    let route = route.map(|(_, r)| r);
    let mut resp = respond(&state, &raw, n, surface, route, api, scheme).await;
    reply::add_surface_headers(&mut resp, surface, n);
    Ok(resp)
}

async fn respond(
    state: &Arc<MockState>,
    raw: &Raw,
    n: u64,
    surface: Surface,
    route: Option<Route<'_>>,
    azure: Option<AzureApi>,
    scheme: &'static str,
) -> Resp {
    let parts = &raw.parts;
    let ctl = match Control::parse(&parts.headers) {
        Ok(c) => c,
        Err(m) => return reply::bad_request(surface, &m, n),
    };
    let delay = ctl.first_byte_delay.max(state.options.first_byte_delay);
    if !delay.is_zero() {
        tokio::time::sleep(delay).await;
    }
    let Some(route) = route else {
        if azure.is_some() {
            return azure_error(StatusCode::NOT_FOUND, "404", "Resource not found");
        }
        return not_found(surface, parts, n);
    };
    if let Some(api) = azure {
        if let Err(r) = azure_checks(state, api, parts) {
            return r;
        }
    } else if let Err(r) = authenticate(state, surface, parts, n) {
        return r;
    }
    if surface == Surface::Anthropic && !parts.headers.contains_key("anthropic-version") {
        return reply::bad_request(surface, "anthropic-version: header is required", n);
    }
    let flaky = state.flaky_failure();
    if let Some(status) = ctl.error {
        let msg = format!("mock error {status} (x-mock-error)");
        return reply::native_error(surface, status, &msg, n);
    }
    if flaky {
        return reply::native_error(surface, 500, "mock error 500 (fail_every)", n);
    }
    let call = Call {
        state,
        parts,
        body: &raw.body,
        ctl,
        n,
        scheme,
        azure: azure.is_some(),
    };
    match route {
        Route::Chat => openai::chat(&call),
        Route::Responses => openai::responses(&call),
        Route::ResponsesCompact => openai::compact(&call),
        Route::ResponsesInputTokens => openai::input_tokens(&call),
        Route::Embeddings => media::embeddings(&call),
        Route::Speech => media::speech(&call),
        Route::Transcriptions => media::transcription(&call, false).await,
        Route::Translations => media::transcription(&call, true).await,
        Route::ImageGenerations => images::generation(&call),
        Route::ImageEdits => images::edit(&call, false).await,
        Route::ImageVariations => images::edit(&call, true).await,
        Route::OpenAiModels => openai::models(),
        Route::OpenAiModel(id) => openai::model(id),
        Route::Messages => anthropic::messages(&call),
        Route::CountTokens => anthropic::count_tokens(&call),
        Route::Complete => anthropic::complete(&call),
        Route::AnthropicModels => anthropic::models(&call),
        Route::AnthropicModel(id) => anthropic::model(&call, id),
        Route::BatchCreate => batches::create(&call),
        Route::BatchList => batches::list(&call),
        Route::BatchGet(id) => batches::get(&call, id),
        Route::BatchCancel(id) => batches::cancel(&call, id),
        Route::BatchDelete(id) => batches::delete(&call, id),
        Route::BatchResults(id) => batches::results(&call, id),
    }
}

fn not_found(surface: Surface, parts: &http::request::Parts, n: u64) -> Resp {
    match surface {
        Surface::OpenAi => reply::openai_error(
            StatusCode::NOT_FOUND,
            &format!("Invalid URL ({} {})", parts.method, parts.uri.path()),
            "invalid_request_error",
            None,
            None,
        ),
        Surface::Anthropic => {
            reply::anthropic_error(StatusCode::NOT_FOUND, "not_found_error", "Not Found", n)
        }
    }
}

/// Azure's error shape: `{"error":{"code","message"}}`.
fn azure_error(status: StatusCode, code: &str, message: &str) -> Resp {
    reply::json(
        status,
        &serde_json::json!({"error": {"code": code, "message": message}}),
    )
}

/// Azure: the key in `api-key` (`Authorization` is not read), and on deployment paths an
/// `api-version` query parameter.
fn azure_checks(
    state: &MockState,
    api: AzureApi,
    parts: &http::request::Parts,
) -> Result<(), Resp> {
    let has_version = parts
        .uri
        .query()
        .into_iter()
        .flat_map(|q| q.split('&'))
        .any(|p| {
            p.strip_prefix("api-version=")
                .is_some_and(|v| !v.is_empty())
        });
    if api == AzureApi::Deployment && !has_version {
        return Err(azure_error(
            StatusCode::BAD_REQUEST,
            "MissingApiVersionParameter",
            "The api-version query parameter (?api-version=) is required for all requests.",
        ));
    }
    let given = parts.headers.get("api-key").and_then(|v| v.to_str().ok());
    let ok = match (given, state.options.azure_key.as_deref()) {
        (Some(g), Some(e)) => g == e,
        (Some(g), None) => !g.is_empty(),
        (None, _) => false,
    };
    if ok {
        return Ok(());
    }
    Err(azure_error(
        StatusCode::UNAUTHORIZED,
        "401",
        "Access denied due to invalid subscription key or wrong API endpoint. Make sure to \
         provide a valid key for an active subscription and use a correct regional API \
         endpoint for your resource.",
    ))
}

/// OpenAI: `Authorization: Bearer`. Anthropic: `x-api-key`, else a Bearer token (as SDK 2.x sends it).
fn authenticate(
    state: &MockState,
    surface: Surface,
    parts: &http::request::Parts,
    n: u64,
) -> Result<(), Resp> {
    let h = &parts.headers;
    let bearer = h
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            v.strip_prefix("Bearer ")
                .or_else(|| v.strip_prefix("bearer "))
        })
        .map(str::trim);
    let (given, expected) = match surface {
        Surface::OpenAi => (bearer, state.options.openai_key.as_deref()),
        Surface::Anthropic => (
            h.get("x-api-key").and_then(|v| v.to_str().ok()).or(bearer),
            state.options.anthropic_key.as_deref(),
        ),
    };
    let ok = match (given, expected) {
        (Some(g), Some(e)) => g == e,
        (Some(g), None) => !g.is_empty(),
        (None, _) => false,
    };
    if ok {
        return Ok(());
    }
    Err(match surface {
        Surface::OpenAi => {
            let msg = if given.is_some() {
                "Incorrect API key provided (meshgate-mock)."
            } else {
                "You didn't provide an API key. Send it as Authorization: Bearer <key>."
            };
            reply::openai_error(
                StatusCode::UNAUTHORIZED,
                msg,
                "invalid_request_error",
                Some("invalid_api_key"),
                None,
            )
        }
        Surface::Anthropic => {
            let msg = if given.is_some() {
                "invalid x-api-key"
            } else {
                "x-api-key header is required"
            };
            reply::anthropic_error(StatusCode::UNAUTHORIZED, "authentication_error", msg, n)
        }
    })
}
