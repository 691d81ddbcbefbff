//! Format translation between OpenAI Chat Completions ("OA") and Anthropic Messages ("AN"),
//! and from both to Google Gemini's `generateContent` ("GE"): requests, non-stream
//! responses, error bodies and SSE streams, per `shared/reference/translation.md`.
//!
//! Converters are plain functions over bytes (and [`StreamTranslator`] for streams), so the
//! gateway's transport never sees either format's structure. meshgate's policy (§0): anything
//! that would change the answer is refused with a [`TranslateError`] naming the field (the
//! gateway turns it into a 400 before anything goes upstream); hints that cannot change the
//! answer are dropped and every dropped field is listed in [`Translated::dropped`] (and
//! [`StreamTranslator::dropped`]) for the `meshgate-dropped-fields` response header.
//!
//! Metering is not done here: the gateway meters the **upstream** bytes with the upstream
//! format's meter; the translated usage is only what the client sees.
//!
//! # Layout
//! - `value`: an order-preserving JSON value (schemas keep their key order).
//! - `request_oa_to_an`, `request_an_to_oa`: request bodies.
//! - `response`: non-stream response bodies, both ways; `usage`: usage objects, both ways.
//! - `stream_an_to_oa`, `stream_oa_to_an`: incremental stream translators.
//! - `error`: error bodies and error-type mapping.
//! - `ids`: tool-call id sanitising (reversible) and stop-reason maps.
//! - `gemini`: what both Gemini lanes share (request builder, call ids, usage, finish
//!   reasons); `request_oa_to_ge`, `request_an_to_ge`: request bodies; `response_ge`,
//!   `stream_ge_to_oa`: Gemini answers to OA (and to AN through the OA->AN converters).

mod error;
mod gemini;
mod ids;
mod request_an_to_ge;
mod request_an_to_oa;
mod request_oa_to_an;
mod request_oa_to_ge;
mod response;
mod response_ge;
mod stream_an_to_oa;
mod stream_ge_to_oa;
mod stream_oa_to_an;
mod usage;
mod value;

use bytes::Bytes;

pub use error::{
    anthropic_error_to_openai, gemini_error_to_anthropic, gemini_error_to_openai,
    openai_error_to_anthropic,
};
pub use ids::{restore_tool_id, sanitize_tool_id};
pub use request_an_to_ge::anthropic_to_gemini;
pub use request_an_to_oa::anthropic_to_openai_chat;
pub use request_oa_to_an::openai_chat_to_anthropic;
pub use request_oa_to_ge::openai_chat_to_gemini;
pub use response::{anthropic_response_to_openai, openai_response_to_anthropic};
pub use response_ge::{gemini_response_to_anthropic, gemini_response_to_openai};
pub use stream_an_to_oa::{anthropic_stream_to_openai, AnthropicToOpenAiStream};
pub use stream_ge_to_oa::{
    gemini_stream_to_anthropic, gemini_stream_to_openai, GeminiToOpenAiStream,
};
pub use stream_oa_to_an::{openai_stream_to_anthropic, OpenAiToAnthropicStream};

/// The name of the response header listing dropped fields.
pub const DROPPED_FIELDS_HEADER: &str = "meshgate-dropped-fields";

/// A translated body and the fields that could not be carried over (each named once, in the
/// order met; indices are left out so the list stays short: `messages[].name`).
#[derive(Debug, Clone, PartialEq)]
pub struct Translated {
    pub body: Bytes,
    pub dropped: Vec<String>,
}

impl Translated {
    /// The value for the [`DROPPED_FIELDS_HEADER`] header, `None` when nothing was dropped.
    pub fn dropped_header(&self) -> Option<String> {
        dropped_header(&self.dropped)
    }
}

/// `dropped` joined for the [`DROPPED_FIELDS_HEADER`] header, `None` when empty.
pub fn dropped_header(dropped: &[String]) -> Option<String> {
    (!dropped.is_empty()).then(|| dropped.join(", "))
}

/// Something the target format cannot express without changing the answer: the gateway
/// answers 400 (`invalid_request_error`) naming `param`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TranslateError {
    /// The offending field in the client's body, e.g. `n` or `messages[2].content[0]`.
    pub param: String,
    pub message: String,
}

impl TranslateError {
    pub(crate) fn new(param: impl Into<String>, message: impl Into<String>) -> Self {
        TranslateError {
            param: param.into(),
            message: message.into(),
        }
    }

    /// The error as an OpenAI error body.
    pub fn openai_body(&self) -> Bytes {
        let v = value::obj([(
            "error",
            value::obj([
                ("message", self.message.as_str().into()),
                ("type", "invalid_request_error".into()),
                ("param", self.param.as_str().into()),
                ("code", "unsupported_parameter".into()),
            ]),
        )]);
        Bytes::from(v.to_text())
    }

    /// The error as an Anthropic error body (Anthropic errors have no `param`: the message
    /// starts with the field, as Anthropic's own validation messages do).
    pub fn anthropic_body(&self) -> Bytes {
        let v = value::obj([
            ("type", "error".into()),
            (
                "error",
                value::obj([
                    ("type", "invalid_request_error".into()),
                    (
                        "message",
                        format!("{}: {}", self.param, self.message).into(),
                    ),
                ]),
            ),
        ]);
        Bytes::from(v.to_text())
    }
}

impl std::fmt::Display for TranslateError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.param, self.message)
    }
}

impl std::error::Error for TranslateError {}

/// How requests are rewritten for the upstream (per route / upstream model).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestOptions {
    /// AN requires `max_tokens`: used when an OA client sent neither `max_completion_tokens`
    /// nor `max_tokens` (e.g. min(8192, the model's max output)).
    pub default_max_tokens: u64,
    /// AN upstream accepts `temperature`/`top_p`/`top_k` (false under `anthropic-version:
    /// 2026-10-21`, which rejects them: they are then dropped and announced).
    pub sampling_params: bool,
    /// AN upstream model takes `thinking: {"type":"adaptive"}` + `output_config.effort`
    /// rather than a `budget_tokens` budget.
    pub adaptive_thinking: bool,
    /// OA upstream model takes `reasoning_effort` (reasoning models); otherwise AN `thinking`
    /// is dropped and announced.
    pub reasoning: bool,
    /// OA upstream wants the legacy `max_tokens` rather than `max_completion_tokens`.
    pub legacy_max_tokens: bool,
}

impl Default for RequestOptions {
    fn default() -> Self {
        RequestOptions {
            default_max_tokens: 8192,
            sampling_params: true,
            adaptive_thinking: false,
            reasoning: true,
            legacy_max_tokens: false,
        }
    }
}

/// Whether an OA chat request asked for the final usage chunk
/// (`stream_options.include_usage: true`): decides what [`anthropic_stream_to_openai`] emits.
pub fn openai_include_usage(body: &[u8]) -> bool {
    value::Json::parse(body)
        .and_then(|v| v.get("stream_options").get("include_usage").as_bool())
        .unwrap_or(false)
}

/// Translates one upstream stream into the client's format, event by event. Output is whole
/// SSE events only; at most one incomplete upstream event is buffered.
pub trait StreamTranslator: Send {
    /// Feeds one upstream chunk (any boundaries) and appends the client's bytes to `out`.
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>);
    /// The upstream stream ended. Without a terminal upstream event this appends the client
    /// format's error event (a cut stream must not look like a clean end). Idempotent.
    fn finish(&mut self, out: &mut Vec<u8>);
    /// Fields left out of the client's stream so far (thinking, citations, ...).
    fn dropped(&self) -> &[String];
}

/// The formats, for callers that pick a converter by (client, upstream) pair. Gemini is an
/// upstream format only (clients speak OpenAI's or Anthropic's API).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Format {
    OpenAiChat,
    AnthropicMessages,
    GeminiGenerateContent,
}

/// Request body from `client` format to `upstream` format (same format: the body unchanged,
/// the gateway relays as usual).
pub fn translate_request(
    client: Format,
    upstream: Format,
    body: &[u8],
    upstream_model: &str,
    opts: &RequestOptions,
) -> Result<Translated, TranslateError> {
    match (client, upstream) {
        (Format::OpenAiChat, Format::AnthropicMessages) => {
            openai_chat_to_anthropic(body, upstream_model, opts)
        }
        (Format::AnthropicMessages, Format::OpenAiChat) => {
            anthropic_to_openai_chat(body, upstream_model, opts)
        }
        (Format::OpenAiChat, Format::GeminiGenerateContent) => openai_chat_to_gemini(body),
        (Format::AnthropicMessages, Format::GeminiGenerateContent) => anthropic_to_gemini(body),
        _ => Ok(Translated {
            body: Bytes::copy_from_slice(body),
            dropped: Vec::new(),
        }),
    }
}

/// Non-stream success body from `upstream` format to `client` format.
pub fn translate_response(
    upstream: Format,
    client: Format,
    body: &[u8],
    client_model: &str,
) -> Result<Translated, TranslateError> {
    match (upstream, client) {
        (Format::AnthropicMessages, Format::OpenAiChat) => {
            anthropic_response_to_openai(body, client_model)
        }
        (Format::OpenAiChat, Format::AnthropicMessages) => {
            openai_response_to_anthropic(body, client_model)
        }
        (Format::GeminiGenerateContent, Format::OpenAiChat) => {
            gemini_response_to_openai(body, client_model)
        }
        (Format::GeminiGenerateContent, Format::AnthropicMessages) => {
            gemini_response_to_anthropic(body, client_model)
        }
        _ => Ok(Translated {
            body: Bytes::copy_from_slice(body),
            dropped: Vec::new(),
        }),
    }
}

/// Error body from `upstream` format to `client` format.
pub fn translate_error(upstream: Format, client: Format, body: &[u8]) -> Bytes {
    match (upstream, client) {
        (Format::AnthropicMessages, Format::OpenAiChat) => anthropic_error_to_openai(body),
        (Format::OpenAiChat, Format::AnthropicMessages) => openai_error_to_anthropic(body),
        (Format::GeminiGenerateContent, Format::OpenAiChat) => gemini_error_to_openai(body),
        (Format::GeminiGenerateContent, Format::AnthropicMessages) => {
            gemini_error_to_anthropic(body)
        }
        _ => Bytes::copy_from_slice(body),
    }
}

/// A stream translator from `upstream` to `client`; `None` when the formats are the same.
/// `include_usage` matters only for OA clients.
pub fn stream_translator(
    upstream: Format,
    client: Format,
    client_model: &str,
    include_usage: bool,
) -> Option<Box<dyn StreamTranslator>> {
    match (upstream, client) {
        (Format::AnthropicMessages, Format::OpenAiChat) => {
            Some(anthropic_stream_to_openai(client_model, include_usage))
        }
        (Format::OpenAiChat, Format::AnthropicMessages) => {
            Some(openai_stream_to_anthropic(client_model))
        }
        (Format::GeminiGenerateContent, Format::OpenAiChat) => {
            Some(gemini_stream_to_openai(client_model, include_usage))
        }
        (Format::GeminiGenerateContent, Format::AnthropicMessages) => {
            Some(gemini_stream_to_anthropic(client_model))
        }
        _ => None,
    }
}

/// Collects dropped field names, each once, in the order met.
#[derive(Debug, Default, Clone)]
pub(crate) struct Dropped(Vec<String>);

impl Dropped {
    pub(crate) fn add(&mut self, field: impl AsRef<str>) {
        let field = field.as_ref();
        if !self.0.iter().any(|f| f == field) {
            self.0.push(field.to_owned());
        }
    }

    pub(crate) fn list(&self) -> &[String] {
        &self.0
    }

    pub(crate) fn into_vec(self) -> Vec<String> {
        self.0
    }
}

/// Seconds since the Unix epoch (OA `created`).
pub(crate) fn now_unix() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0)
}
