//! The classify phase: which surface and endpoint a path names, and the few request fields
//! meshgate reads (model, stream, usage options, units). The body stays bytes.

use crate::error::{ErrorKind, GatewayError};
use bytes::Bytes;
use http::{HeaderMap, Method};
use meshgate_providers::RequestFacts;
use meshgate_types::{Endpoint, Surface};
use serde::Deserialize;
use std::borrow::Cow;

/// Where a call goes: its surface, endpoint and the path below the provider's `/v1`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Route {
    pub surface: Surface,
    pub endpoint: Endpoint,
    /// Path after `/v1/`, e.g. `chat/completions` or `messages/batches/msgbatch_1/results`.
    pub rest: String,
    /// Whether the body is JSON that meshgate reads (model, stream, ...).
    pub body: BodyKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BodyKind {
    Json,
    Multipart,
    /// GET, DELETE and bodiless POSTs: nothing to read.
    None,
}

/// Maps a request path to a [`Route`]; `None` for paths meshgate does not serve (404).
/// The surface of `/v1/models*` is Anthropic when the request carries `anthropic-version`
/// or `x-api-key`, OpenAI otherwise.
pub fn classify(method: &Method, path: &str, headers: &HeaderMap) -> Result<Route, RouteError> {
    let (surface_hint, rest) = if let Some(rest) = path.strip_prefix("/openai/v1/") {
        (Some(Surface::OpenAi), rest)
    } else if let Some(rest) = path.strip_prefix("/anthropic/v1/") {
        (Some(Surface::Anthropic), rest)
    } else if let Some(rest) = path.strip_prefix("/v1/") {
        (None, rest)
    } else {
        return Err(RouteError::NotFound(guess_surface(path, headers)));
    };
    let surface = surface_hint.unwrap_or_else(|| {
        let first = rest.split('/').next().unwrap_or("");
        let anthropic_headers =
            headers.contains_key("anthropic-version") || headers.contains_key("x-api-key");
        match first {
            "messages" | "complete" => Surface::Anthropic,
            "models" if anthropic_headers => Surface::Anthropic,
            _ => Surface::OpenAi,
        }
    });
    let found = match surface {
        Surface::OpenAi => openai_endpoint(method, rest),
        Surface::Anthropic => anthropic_endpoint(method, rest),
    };
    match found {
        Some(Ok((endpoint, body))) => Ok(Route {
            surface,
            endpoint,
            rest: rest.to_string(),
            body,
        }),
        Some(Err(())) => Err(RouteError::MethodNotAllowed(surface)),
        None => Err(RouteError::NotFound(surface)),
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RouteError {
    NotFound(Surface),
    MethodNotAllowed(Surface),
}

impl RouteError {
    pub fn surface(self) -> Surface {
        match self {
            RouteError::NotFound(s) | RouteError::MethodNotAllowed(s) => s,
        }
    }

    pub fn into_error(self, method: &Method, path: &str) -> GatewayError {
        match self {
            RouteError::NotFound(_) => GatewayError::new(
                ErrorKind::NotFound,
                format!("meshgate does not serve {method} {path}"),
            )
            .with_code("unknown_url"),
            RouteError::MethodNotAllowed(_) => GatewayError::new(
                ErrorKind::MethodNotAllowed,
                format!("{method} is not allowed on {path}"),
            ),
        }
    }
}

fn guess_surface(path: &str, headers: &HeaderMap) -> Surface {
    if path.starts_with("/anthropic") || headers.contains_key("anthropic-version") {
        Surface::Anthropic
    } else {
        Surface::OpenAi
    }
}

type Found = Option<Result<(Endpoint, BodyKind), ()>>;

fn post(method: &Method, endpoint: Endpoint, body: BodyKind) -> Found {
    Some(if method == Method::POST {
        Ok((endpoint, body))
    } else {
        Err(())
    })
}

fn get(method: &Method, endpoint: Endpoint) -> Found {
    Some(if method == Method::GET {
        Ok((endpoint, BodyKind::None))
    } else {
        Err(())
    })
}

fn openai_endpoint(method: &Method, rest: &str) -> Found {
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["chat", "completions"] => post(method, Endpoint::ChatCompletions, BodyKind::Json),
        ["responses"] => post(method, Endpoint::Responses, BodyKind::Json),
        ["responses", "compact"] => post(method, Endpoint::ResponsesCompact, BodyKind::Json),
        ["responses", "input_tokens"] => {
            post(method, Endpoint::ResponsesInputTokens, BodyKind::Json)
        }
        // Retrieve, delete, cancel and list input items of a stored response: not billed.
        ["responses", id] if !id.is_empty() => (method == Method::GET || method == Method::DELETE)
            .then_some(Ok((Endpoint::Other, BodyKind::None)))
            .or(Some(Err(()))),
        ["responses", id, "cancel"] if !id.is_empty() => {
            post(method, Endpoint::Other, BodyKind::None)
        }
        ["responses", id, "input_items"] if !id.is_empty() => get(method, Endpoint::Other),
        ["embeddings"] => post(method, Endpoint::Embeddings, BodyKind::Json),
        ["audio", "speech"] => post(method, Endpoint::AudioSpeech, BodyKind::Json),
        ["audio", "transcriptions"] => {
            post(method, Endpoint::AudioTranscriptions, BodyKind::Multipart)
        }
        ["audio", "translations"] => post(method, Endpoint::AudioTranslations, BodyKind::Multipart),
        ["images", "generations"] => post(method, Endpoint::ImagesGenerations, BodyKind::Json),
        ["images", "edits"] => post(method, Endpoint::ImagesEdits, BodyKind::Multipart),
        ["images", "variations"] => post(method, Endpoint::ImagesVariations, BodyKind::Multipart),
        ["models"] => get(method, Endpoint::Models),
        ["models", id] if !id.is_empty() => get(method, Endpoint::Models),
        _ => None,
    }
}

fn anthropic_endpoint(method: &Method, rest: &str) -> Found {
    let segments: Vec<&str> = rest.split('/').collect();
    match segments.as_slice() {
        ["messages"] => post(method, Endpoint::Messages, BodyKind::Json),
        ["messages", "count_tokens"] => post(method, Endpoint::CountTokens, BodyKind::Json),
        ["messages", "batches"] => match *method {
            Method::POST => Some(Ok((Endpoint::Batches, BodyKind::Json))),
            Method::GET => Some(Ok((Endpoint::Batches, BodyKind::None))),
            _ => Some(Err(())),
        },
        ["messages", "batches", id] if !id.is_empty() => (method == Method::GET
            || method == Method::DELETE)
            .then_some(Ok((Endpoint::Batches, BodyKind::None)))
            .or(Some(Err(()))),
        ["messages", "batches", id, "cancel"] if !id.is_empty() => {
            post(method, Endpoint::Batches, BodyKind::None)
        }
        ["messages", "batches", id, "results"] if !id.is_empty() => {
            get(method, Endpoint::BatchResults)
        }
        ["complete"] => post(method, Endpoint::Complete, BodyKind::Json),
        ["models"] => get(method, Endpoint::Models),
        ["models", id] if !id.is_empty() => get(method, Endpoint::Models),
        _ => None,
    }
}

/// The fields of a JSON request body that meshgate reads. Parsing it also checks that the
/// whole body is valid JSON.
#[derive(Debug, Default, Deserialize)]
struct Probe<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
    #[serde(default)]
    stream: Option<serde_json::Value>,
    #[serde(default)]
    stream_options: Option<serde_json::Value>,
    #[serde(borrow, default)]
    input: Option<&'a serde_json::value::RawValue>,
    #[serde(default)]
    n: Option<serde_json::Value>,
    #[serde(borrow, default)]
    size: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    quality: Option<Cow<'a, str>>,
    #[serde(borrow, default)]
    requests: Option<Vec<BatchRequest<'a>>>,
    #[serde(default)]
    max_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_completion_tokens: Option<serde_json::Value>,
    #[serde(default)]
    max_output_tokens: Option<serde_json::Value>,
    /// Routing fields of the MESH router's clients: `models` tried in order after `model`
    /// when `route` is `fallback`.
    #[serde(default)]
    models: Option<Vec<String>>,
    #[serde(borrow, default)]
    route: Option<Cow<'a, str>>,
}

#[derive(Debug, Deserialize)]
struct BatchRequest<'a> {
    #[serde(borrow, default)]
    params: Option<BatchParams<'a>>,
}

#[derive(Debug, Deserialize)]
struct BatchParams<'a> {
    #[serde(borrow, default)]
    model: Option<Cow<'a, str>>,
}

/// What classify learned from the body.
#[derive(Debug, Clone, Default)]
pub struct RequestInfo {
    pub model: Option<String>,
    pub stream: bool,
    /// Chat streams: the client already asked for `stream_options.include_usage`.
    pub include_usage: bool,
    /// Batch creation: the models of its requests.
    pub batch_models: Vec<String>,
    /// Audio uploads: the file's length in seconds, when its header tells (WAV).
    pub upload_seconds: Option<rust_decimal::Decimal>,
    /// `models` of a `route: "fallback"` request, tried after `model`.
    pub fallback_models: Vec<String>,
    /// The body carries `models` or `route`, which meshgate removes before forwarding.
    pub has_routing_fields: bool,
    /// The most output tokens the call may produce (`max_tokens`,
    /// `max_completion_tokens` or `max_output_tokens`), for the budget reservation.
    pub max_output_tokens: Option<u64>,
    pub facts: RequestFacts,
}

/// Reads [`RequestInfo`] from a JSON body; malformed JSON is a 400.
pub fn probe_json(route: &Route, body: &[u8]) -> Result<RequestInfo, GatewayError> {
    if body.is_empty() {
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            "the request body is empty; a JSON object is required",
        ));
    }
    let probe: Probe<'_> = serde_json::from_slice(body).map_err(|e| {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("the request body is not valid JSON: {e}"),
        )
        .with_code("invalid_json")
    })?;
    let stream = matches!(probe.stream, Some(serde_json::Value::Bool(true)));
    let include_usage = probe
        .stream_options
        .as_ref()
        .and_then(|o| o.get("include_usage"))
        .and_then(serde_json::Value::as_bool)
        .unwrap_or(false);
    let model = probe.model.map(Cow::into_owned);
    let mut facts = RequestFacts {
        model: model.clone(),
        ..RequestFacts::default()
    };
    match route.endpoint {
        Endpoint::AudioSpeech => {
            facts.speech_input_chars = probe
                .input
                .and_then(|raw| serde_json::from_str::<Cow<'_, str>>(raw.get()).ok())
                .map(|s| s.chars().count() as u64);
        }
        Endpoint::ImagesGenerations => {
            facts.image_n = probe.n.as_ref().and_then(serde_json::Value::as_u64);
            facts.image_size = probe.size.map(Cow::into_owned);
            facts.image_quality = probe.quality.map(Cow::into_owned);
        }
        _ => {}
    }
    let batch_models = probe
        .requests
        .unwrap_or_default()
        .into_iter()
        .filter_map(|r| r.params.and_then(|p| p.model).map(Cow::into_owned))
        .collect();
    let max_output_tokens = [
        &probe.max_tokens,
        &probe.max_completion_tokens,
        &probe.max_output_tokens,
    ]
    .into_iter()
    .find_map(|v| v.as_ref().and_then(serde_json::Value::as_u64));
    let has_routing_fields = probe.models.is_some() || probe.route.is_some();
    let fallback_models = match probe.route.as_deref() {
        Some("fallback") => probe.models.unwrap_or_default(),
        _ => Vec::new(),
    };
    Ok(RequestInfo {
        fallback_models,
        has_routing_fields,
        model,
        stream,
        include_usage,
        batch_models,
        upload_seconds: None,
        max_output_tokens,
        facts,
    })
}

/// Reads [`RequestInfo`] from a multipart body (transcriptions, image edits): the text
/// fields `model`, `response_format`, `n`, `size`, `quality` and `stream`.
pub async fn probe_multipart(
    headers: &HeaderMap,
    body: Bytes,
) -> Result<RequestInfo, GatewayError> {
    let invalid = |msg: String| GatewayError::new(ErrorKind::InvalidRequest, msg);
    let content_type = headers
        .get(http::header::CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(content_type)
        .map_err(|e| invalid(format!("expected a multipart/form-data body: {e}")))?;
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut multipart = multer::Multipart::new(stream, boundary);
    let mut info = RequestInfo::default();
    while let Some(field) = multipart
        .next_field()
        .await
        .map_err(|e| invalid(format!("malformed multipart body: {e}")))?
    {
        let name = field.name().unwrap_or("").to_string();
        if name == "file" {
            info.upload_seconds = upload_seconds(field).await?;
            continue;
        }
        if !matches!(
            name.as_str(),
            "model" | "response_format" | "n" | "size" | "quality" | "stream"
        ) {
            continue;
        }
        let text = field
            .text()
            .await
            .map_err(|e| invalid(format!("malformed multipart field {name}: {e}")))?;
        match name.as_str() {
            "model" => info.model = Some(text),
            "response_format" => info.facts.transcription_format = Some(text),
            "n" => info.facts.image_n = text.trim().parse().ok(),
            "size" => info.facts.image_size = Some(text),
            "quality" => info.facts.image_quality = Some(text),
            "stream" => info.stream = text.trim() == "true",
            _ => {}
        }
    }
    info.facts.model = info.model.clone();
    Ok(info)
}

/// Reads the first bytes of an uploaded file for its duration and skips the rest (the
/// chunks are slices of the body already in memory, not copies).
async fn upload_seconds(
    mut field: multer::Field<'_>,
) -> Result<Option<rust_decimal::Decimal>, GatewayError> {
    const HEAD: usize = 4096;
    let mut head = Vec::with_capacity(HEAD);
    let broken = |e: multer::Error| {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            format!("malformed multipart file: {e}"),
        )
    };
    while let Some(chunk) = field.chunk().await.map_err(broken)? {
        if head.len() < HEAD {
            let take = (HEAD - head.len()).min(chunk.len());
            head.extend_from_slice(&chunk[..take]);
        }
    }
    Ok(crate::wav::duration(&head))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, path: &str, headers: &[(&str, &str)]) -> Result<Route, RouteError> {
        let mut map = HeaderMap::new();
        for (k, v) in headers {
            map.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        classify(&method, path, &map)
    }

    #[test]
    fn surfaces_and_aliases() {
        let r = route(Method::POST, "/openai/v1/chat/completions", &[]).unwrap();
        assert_eq!(
            (r.surface, r.endpoint),
            (Surface::OpenAi, Endpoint::ChatCompletions)
        );
        let r = route(Method::POST, "/v1/chat/completions", &[]).unwrap();
        assert_eq!(r.surface, Surface::OpenAi);
        let r = route(Method::POST, "/v1/messages", &[]).unwrap();
        assert_eq!(
            (r.surface, r.endpoint),
            (Surface::Anthropic, Endpoint::Messages)
        );
        let r = route(Method::POST, "/v1/complete", &[]).unwrap();
        assert_eq!(r.endpoint, Endpoint::Complete);
        let r = route(
            Method::GET,
            "/v1/models",
            &[("anthropic-version", "2023-06-01")],
        )
        .unwrap();
        assert_eq!(r.surface, Surface::Anthropic);
        let r = route(Method::GET, "/v1/models/gpt-4o", &[]).unwrap();
        assert_eq!((r.surface, r.endpoint), (Surface::OpenAi, Endpoint::Models));
        let r = route(
            Method::GET,
            "/anthropic/v1/messages/batches/b1/results",
            &[],
        )
        .unwrap();
        assert_eq!(r.endpoint, Endpoint::BatchResults);
        assert_eq!(r.rest, "messages/batches/b1/results");
        let r = route(
            Method::POST,
            "/anthropic/v1/messages/batches/b1/cancel",
            &[],
        )
        .unwrap();
        assert_eq!(r.endpoint, Endpoint::Batches);
        let r = route(Method::POST, "/openai/v1/audio/transcriptions", &[]).unwrap();
        assert_eq!(r.body, BodyKind::Multipart);
    }

    #[test]
    fn unknown_paths_and_methods() {
        assert_eq!(
            route(Method::POST, "/openai/v1/nope", &[]),
            Err(RouteError::NotFound(Surface::OpenAi))
        );
        assert_eq!(
            route(Method::POST, "/anthropic/v1/chat/completions", &[]),
            Err(RouteError::NotFound(Surface::Anthropic))
        );
        assert_eq!(
            route(Method::GET, "/anthropic/v1/messages", &[]),
            Err(RouteError::MethodNotAllowed(Surface::Anthropic))
        );
        assert!(route(Method::GET, "/", &[]).is_err());
    }

    #[test]
    fn probe_reads_only_what_it_needs() {
        let r = route(Method::POST, "/v1/chat/completions", &[]).unwrap();
        let info = probe_json(
            &r,
            br#"{"model":"gpt-4o","stream":true,"stream_options":{"include_usage":true},"messages":[{"role":"user","content":"h\u00e9"}]}"#,
        )
        .unwrap();
        assert_eq!(info.model.as_deref(), Some("gpt-4o"));
        assert!(info.stream && info.include_usage);
        assert!(probe_json(&r, b"{\"model\":").is_err());
        assert!(probe_json(&r, b"{} trailing").is_err());
        let speech = route(Method::POST, "/v1/audio/speech", &[]).unwrap();
        let info = probe_json(
            &speech,
            "{\"model\":\"tts-1\",\"input\":\"héllo ☃\"}".as_bytes(),
        )
        .unwrap();
        assert_eq!(info.facts.speech_input_chars, Some(7));
        let batch = route(Method::POST, "/v1/messages/batches", &[]).unwrap();
        let info = probe_json(
            &batch,
            br#"{"requests":[{"custom_id":"a","params":{"model":"claude-haiku-4-5"}},{"custom_id":"b","params":{"model":"claude-sonnet-4-5"}}]}"#,
        )
        .unwrap();
        assert_eq!(
            info.batch_models,
            vec!["claude-haiku-4-5", "claude-sonnet-4-5"]
        );
    }
}
