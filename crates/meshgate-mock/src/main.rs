//! The `meshgate-mock` binary: serves the mock on a fixed address until SIGINT/SIGTERM.

use std::io::Write as _;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::Parser;
use meshgate_mock::{serve, serve_tls, tls_config, MockOptions, MockState};

const CONTROL_HELP: &str = "\
Control headers (per request; see the crate docs for details):
  x-mock-input-tokens N         OpenAI prompt/input total (inclusive); Anthropic input_tokens (disjoint)
                                [default: ceil(body bytes / 4)]
  x-mock-output-tokens N        output tokens incl. reasoning [default: 2 x chunks]
  x-mock-cached-tokens N        OpenAI cached_tokens / Anthropic cache_read_input_tokens [0]
  x-mock-cache-write-tokens N   Anthropic 5m writes / OpenAI cache_write_tokens [0]
  x-mock-cache-write-1h-tokens N  Anthropic 1h writes [0]
  x-mock-reasoning-tokens N     reasoning subset of output [0]
  x-mock-service-tier S         echoed as service_tier
  x-mock-chunks N               content deltas per stream, text \"tok{i} \" [4]
  x-mock-chunk-delay-ms N       delay before each delta [0]
  x-mock-first-byte-delay-ms N  delay before response headers [0]
  x-mock-cut-after N            N deltas then drop the connection (no terminal event)
  x-mock-error STATUS           native error (429/529 add retry-after: 1)
  x-mock-stream-error 1         error event after the first delta
  x-mock-response-status incomplete|failed   Responses terminal status (with usage)
  x-mock-usage-with-choices 1   chat include_usage: usage on the finish chunk
  x-mock-restate-input 1        Anthropic message_delta restates input/cache/server_tool_use
  x-mock-tool-call 1            tool call on the first request tool
  x-mock-audio-seconds N        transcription duration
Azure OpenAI: /openai/deployments/{deployment}/{endpoint}?api-version=... and /openai/v1/...
  answer as OpenAI's routes, with the key in api-key
Introspection: GET /_mock/requests, GET /_mock/stats, POST /_mock/reset";

/// A faithful mock of the OpenAI and Anthropic APIs.
#[derive(Parser)]
#[command(name = "meshgate-mock", version, after_help = CONTROL_HELP)]
struct Args {
    /// Address to listen on.
    #[arg(long, default_value = "127.0.0.1:9999")]
    listen: SocketAddr,
    /// PEM certificate chain; serves HTTPS when given with --tls-key.
    #[arg(long, requires = "tls_key")]
    tls_cert: Option<PathBuf>,
    /// PEM private key (PKCS#8, RSA or EC).
    #[arg(long, requires = "tls_cert")]
    tls_key: Option<PathBuf>,
    /// Expected OpenAI key (Authorization: Bearer); `*` accepts any non-empty key.
    #[arg(long, default_value = "sk-mock-openai")]
    openai_key: String,
    /// Expected Anthropic key (x-api-key); `*` accepts any non-empty key.
    #[arg(long, default_value = "sk-ant-mock")]
    anthropic_key: String,
    /// Expected Azure OpenAI key (api-key); `*` accepts any non-empty key.
    #[arg(long, default_value = "sk-mock-azure")]
    azure_key: String,
    /// Expected Gemini key (x-goog-api-key or ?key=); `*` accepts any non-empty key.
    #[arg(long, default_value = "mock-gemini-key")]
    gemini_key: String,
    /// Requests kept for /_mock/requests (oldest dropped first); 0 disables recording.
    #[arg(long, default_value_t = 10_000)]
    max_recorded: usize,
    /// A flaky provider: every Nth call answers a native 500 (0: never).
    #[arg(long, default_value_t = 0)]
    fail_every: u64,
    /// A slow provider: every answer waits this long before its headers.
    #[arg(long, default_value_t = 0)]
    first_byte_delay_ms: u64,
}

fn key(k: String) -> Option<String> {
    (k != "*").then_some(k)
}

#[tokio::main]
async fn main() -> std::io::Result<()> {
    let args = Args::parse();
    let tls = match (&args.tls_cert, &args.tls_key) {
        (Some(c), Some(k)) => Some(tls_config(&std::fs::read(c)?, &std::fs::read(k)?)?),
        _ => None,
    };
    let state = MockState::new(MockOptions {
        openai_key: key(args.openai_key),
        anthropic_key: key(args.anthropic_key),
        azure_key: key(args.azure_key),
        gemini_key: key(args.gemini_key),
        max_recorded: args.max_recorded,
        fail_every: args.fail_every,
        first_byte_delay: std::time::Duration::from_millis(args.first_byte_delay_ms),
    });
    let listener = tokio::net::TcpListener::bind(args.listen).await?;
    let addr = listener.local_addr()?;
    let scheme = if tls.is_some() { "https" } else { "http" };
    println!("meshgate-mock listening on {scheme}://{addr}");
    std::io::stdout().flush()?;
    let server = async move {
        match tls {
            Some(config) => serve_tls(listener, state, config).await,
            None => serve(listener, state).await,
        }
    };
    tokio::select! {
        r = server => r,
        r = shutdown() => r,
    }
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown() -> std::io::Result<()> {
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())?;
        tokio::select! {
            r = tokio::signal::ctrl_c() => r,
            _ = term.recv() => Ok(()),
        }
    }
    #[cfg(not(unix))]
    {
        tokio::signal::ctrl_c().await
    }
}
