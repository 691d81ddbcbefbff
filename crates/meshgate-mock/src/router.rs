//! Request dispatch: read and record the request, classify surface and endpoint, check auth, call the handler.

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
use crate::{anthropic, batches, images, introspect, media, openai};

/// Everything a handler needs about one call.
pub(crate) struct Call<'a> {
    pub state: &'a Arc<MockState>,
    pub parts: &'a http::request::Parts,
    pub body: &'a Bytes,
    pub ctl: Control,
    /// Request sequence number: `req_mock_<n>` and the ids of created objects.
    pub n: u64,
    pub scheme: &'static str,
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
    let anthropic = looks_anthropic(&raw.parts);
    let route = classify(&raw.parts.method, raw.parts.uri.path(), anthropic);
    let surface = match &route {
        Some((s, _)) => *s,
        None if anthropic => Surface::Anthropic,
        None => Surface::OpenAi,
    };
    let mut resp = respond(&state, &raw, n, surface, route.map(|(_, r)| r), scheme).await;
    reply::add_surface_headers(&mut resp, surface, n);
    Ok(resp)
}

async fn respond(
    state: &Arc<MockState>,
    raw: &Raw,
    n: u64,
    surface: Surface,
    route: Option<Route<'_>>,
    scheme: &'static str,
) -> Resp {
    let parts = &raw.parts;
    let ctl = match Control::parse(&parts.headers) {
        Ok(c) => c,
        Err(m) => return reply::bad_request(surface, &m, n),
    };
    if !ctl.first_byte_delay.is_zero() {
        tokio::time::sleep(ctl.first_byte_delay).await;
    }
    let Some(route) = route else {
        return not_found(surface, parts, n);
    };
    if let Err(r) = authenticate(state, surface, parts, n) {
        return r;
    }
    if surface == Surface::Anthropic && !parts.headers.contains_key("anthropic-version") {
        return reply::bad_request(surface, "anthropic-version: header is required", n);
    }
    if let Some(status) = ctl.error {
        let msg = format!("mock error {status} (x-mock-error)");
        return reply::native_error(surface, status, &msg, n);
    }
    let call = Call {
        state,
        parts,
        body: &raw.body,
        ctl,
        n,
        scheme,
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
