//! A faithful mock of the OpenAI and Anthropic HTTP APIs: the upstream of meshgate's tests and benchmarks.
//!
//! Start one in a test with [`MockServer::start`] (port 0 on loopback), point a client at
//! [`MockServer::url`], then inspect [`MockState::requests`] and [`MockState::stats`]. The
//! `meshgate-mock` binary serves the same thing on a fixed address for trying meshgate offline.
//!
//! # Auth
//! OpenAI paths need `Authorization: Bearer <key>` (default `sk-mock-openai`); Anthropic paths
//! need `x-api-key: <key>` (default `sk-ant-mock`; a Bearer token is accepted when `x-api-key`
//! is absent, as SDK 2.x sends it) and an `anthropic-version` header. A wrong or missing key is a
//! native 401. `GET /v1/models` is Anthropic's when the request carries `anthropic-version` or
//! `x-api-key`. Query strings are accepted (`/v1/messages?beta=true`).
//!
//! Azure OpenAI paths, `/openai/deployments/{deployment}/{endpoint}` (chat completions,
//! embeddings, images, audio) and the v1 API's `/openai/v1/...`, answer as the OpenAI route
//! does, need `api-key: <key>` (default `sk-mock-azure`; `Authorization` is not read) and,
//! on deployment paths, an `api-version` query parameter (else a 400 in Azure's
//! `{"error":{"code","message"}}` shape). Chat adds Azure's content filter results: an
//! initial stream chunk with empty `choices` and `prompt_filter_results`.
//!
//! Google Gemini's `/v1beta/models/{model}:generateContent` and `:streamGenerateContent`
//! need `x-goog-api-key: <key>` or `?key=<key>` (default `mock-gemini-key`) and answer in
//! Gemini's shapes (see the `gemini` module for its checks and how the headers below map).
//!
//! # Control headers
//! Every response is deterministic and chosen by request headers (an unknown `x-mock-*` name or
//! a bad value is a native 400, so typos do not pass silently):
//!
//! | header | effect (default) |
//! |---|---|
//! | `x-mock-input-tokens` | OpenAI: `prompt_tokens`/`input_tokens`, inclusive of cached and written tokens. Anthropic: `input_tokens`, disjoint from the cache fields (`ceil(body_bytes / 4)`) |
//! | `x-mock-output-tokens` | all output tokens, reasoning included (2 × chunks) |
//! | `x-mock-cached-tokens` | OpenAI `cached_tokens`; Anthropic `cache_read_input_tokens` (0) |
//! | `x-mock-cache-write-tokens` | Anthropic 5m writes; OpenAI `cache_write_tokens` (30m) (0) |
//! | `x-mock-cache-write-1h-tokens` | Anthropic 1h writes; OpenAI 12h writes, added to `cache_write_tokens` (0) |
//! | `x-mock-reasoning-tokens` | OpenAI `reasoning_tokens`; Anthropic `output_tokens_details.thinking_tokens` when > 0 (0) |
//! | `x-mock-service-tier` | echoed as `service_tier` (`default` / `standard`) |
//! | `x-mock-chunks` | content deltas in a stream, each `"tok{i} "` from i = 0; non-stream text is their concatenation (4) |
//! | `x-mock-chunk-delay-ms` | delay before each content delta (0) |
//! | `x-mock-first-byte-delay-ms` | delay before the response headers (0) |
//! | `x-mock-cut-after` | stream: headers and N content deltas (at most chunks), then the connection is dropped with no terminal event; non-stream: half the JSON body, then dropped |
//! | `x-mock-error` | a native error of that status (any 4xx/5xx); 429 and 529 carry `retry-after: 1` |
//! | `x-mock-stream-error` | `1`: an error event after the first delta (chat `data: {"error":..}`, Responses and Anthropic `event: error`), then the stream ends |
//! | `x-mock-response-status` | Responses: `incomplete` (reason `max_output_tokens`) or `failed` (with `error`), both with usage |
//! | `x-mock-usage-with-choices` | `1`: chat stream with `include_usage` puts usage on the finish chunk instead of a `choices: []` chunk |
//! | `x-mock-restate-input` | `1`: Anthropic `message_delta.usage` restates input (+5), cache fields and `server_tool_use.web_search_requests: 1`; non-stream reports the same |
//! | `x-mock-tool-call` | `1` with `tools` in the request: a tool call after the text (Anthropic `tool_use`, chat `tool_calls`) on the first tool |
//! | `x-mock-audio-seconds` | transcription duration (`ceil(file_bytes / 16000)`, at least 1) |
//!
//! Headers reach every upstream a gateway tries; to slow down or break one instance only,
//! start it with [`MockOptions::first_byte_delay`] or [`MockOptions::fail_every`] (OpenAI,
//! Anthropic and Azure paths).
//!
//! Stream accounting: a stream is *started* when its body is made, *completed* when its last
//! byte is handed to hyper (a `cut-after` abort counts as completed: the script ran to its end),
//! and *cancelled* when the body is dropped before that (the client went away).
//!
//! # Introspection over HTTP
//! `GET /_mock/requests` (JSON array; `body` base64 and `json` when the body is JSON),
//! `GET /_mock/stats`, `POST /_mock/reset`, `GET /_mock/image.png` (the target of image URLs).
//! These are neither recorded nor counted.
//!
//! # Layout
//! - `server`: accept loop and connections (TCP_NODELAY, HTTP/1.1 keep-alive, h2 via ALPN).
//! - `router`: records the request, classifies surface and endpoint, checks auth, dispatches.
//! - `control`: the `x-mock-*` headers. `reply`: JSON/SSE builders, native errors, headers.
//! - `body`: full and scripted bodies with delays, cuts and stream accounting.
//! - `openai`, `media`, `images`: OpenAI endpoints. `anthropic`, `batches`: Anthropic endpoints.
//! - `gemini`: Gemini's generateContent and streamGenerateContent.
//! - `state`: options, request log, counters, batch store. `introspect`, `tls`.

// Handlers return `Result<_, Response>`: the error is the finished reply, built at most once per request.
#![allow(clippy::result_large_err)]

mod anthropic;
mod batches;
mod body;
mod control;
mod gemini;
mod images;
mod introspect;
mod media;
mod openai;
mod reply;
mod router;
mod server;
mod state;
mod tls;

use std::net::SocketAddr;
use std::sync::Arc;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;

pub use media::embedding_value;
pub use server::{serve, serve_tls};
pub use state::{MockOptions, MockState, MockStats, RecordedRequest};
pub use tls::tls_config;

/// A running mock on loopback; dropping it stops the server and its connections.
pub struct MockServer {
    pub addr: SocketAddr,
    pub state: Arc<MockState>,
    tls: bool,
    task: JoinHandle<()>,
}

impl MockServer {
    /// Plain HTTP on 127.0.0.1:0 with default keys.
    pub async fn start() -> std::io::Result<MockServer> {
        MockServer::start_with(MockOptions::default()).await
    }

    /// Plain HTTP on 127.0.0.1:0 with the given options.
    pub async fn start_with(options: MockOptions) -> std::io::Result<MockServer> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(options);
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                let _ = serve(listener, state).await;
            }
        });
        Ok(MockServer {
            addr,
            state,
            tls: false,
            task,
        })
    }

    /// HTTPS on 127.0.0.1:0 with the given PEM cert chain and PKCS#8/RSA/EC key.
    pub async fn start_tls(cert_pem: &[u8], key_pem: &[u8]) -> std::io::Result<MockServer> {
        MockServer::start_tls_with(cert_pem, key_pem, MockOptions::default()).await
    }

    /// HTTPS on 127.0.0.1:0 with the given options.
    pub async fn start_tls_with(
        cert_pem: &[u8],
        key_pem: &[u8],
        options: MockOptions,
    ) -> std::io::Result<MockServer> {
        let config = tls_config(cert_pem, key_pem)?;
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let addr = listener.local_addr()?;
        let state = MockState::new(options);
        let task = tokio::spawn({
            let state = Arc::clone(&state);
            async move {
                let _ = serve_tls(listener, state, config).await;
            }
        });
        Ok(MockServer {
            addr,
            state,
            tls: true,
            task,
        })
    }

    /// `http://127.0.0.1:PORT`, or `https://localhost:PORT` under TLS (certificates name hosts).
    pub fn url(&self) -> String {
        if self.tls {
            format!("https://localhost:{}", self.addr.port())
        } else {
            format!("http://{}", self.addr)
        }
    }
}

impl Drop for MockServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
