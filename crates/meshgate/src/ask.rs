//! `meshgate ask "PROMPT"`: one question to the gateway through the OpenAI chat surface,
//! the answer streamed to the terminal as it arrives, then its tokens and cost as the
//! gateway metered them.

use crate::proxy::upstream::{dollars, Upstream, TOKEN_ENV};
use anyhow::Context;
use futures_util::StreamExt;
use std::io::Write;

#[derive(Debug, clap::Args)]
pub struct AskArgs {
    /// The question.
    pub prompt: String,
    /// The model to ask.
    #[arg(long, default_value = "gpt-4o-mini")]
    pub model: String,
    /// The gateway; defaults to the URL stored by `meshgate login`.
    #[arg(long, env = "MESHGATE_URL")]
    pub url: Option<String>,
    /// Sent as `Meshgate-Project-Id`.
    #[arg(long)]
    pub project_id: Option<String>,
}

pub async fn run(args: AskArgs) -> anyhow::Result<()> {
    let upstream = Upstream::resolve(args.url.as_deref(), TOKEN_ENV, args.project_id.as_deref())?;
    let response = upstream
        .request(http::Method::POST, "/openai/v1/chat/completions")
        .json(&serde_json::json!({
            "model": args.model,
            "messages": [{"role": "user", "content": args.prompt}],
            "stream": true,
            "stream_options": {"include_usage": true},
        }))
        .send()
        .await
        .with_context(|| format!("cannot reach {}", upstream.base))?;
    let status = response.status();
    if !status.is_success() {
        let body = response.text().await.unwrap_or_default();
        let message = serde_json::from_str::<serde_json::Value>(&body)
            .ok()
            .and_then(|v| v["error"]["message"].as_str().map(str::to_string))
            .unwrap_or(body);
        anyhow::bail!("the gateway answered {status}: {message}");
    }
    let event_id = response
        .headers()
        .get(meshgate_gateway::EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);

    let mut out = std::io::stdout().lock();
    let mut body = response.bytes_stream();
    let mut lines = SseLines::default();
    while let Some(chunk) = body.next().await {
        let chunk = chunk.context("the answer broke off")?;
        for data in lines.push(&chunk) {
            if data == "[DONE]" {
                continue;
            }
            let event: serde_json::Value = serde_json::from_str(&data)
                .with_context(|| format!("the gateway sent an unreadable event: {data}"))?;
            if let Some(text) = event["choices"][0]["delta"]["content"].as_str() {
                out.write_all(text.as_bytes())?;
                out.flush()?;
            }
        }
    }
    writeln!(out)?;
    let Some(event_id) = event_id else {
        writeln!(out, "(the gateway named no usage event: cost unknown)")?;
        return Ok(());
    };
    let metered = upstream.metered_call(&event_id).await?;
    writeln!(
        out,
        "-- {}: {} input tokens ({} cached), {} output tokens, cost {}",
        metered.model.as_deref().unwrap_or(&args.model),
        metered.input_tokens(),
        metered.cached_tokens(),
        metered.output_tokens(),
        dollars(metered.charged()),
    )?;
    Ok(())
}

/// Splits an SSE byte stream into the `data:` payloads of its events.
#[derive(Default)]
struct SseLines {
    pending: Vec<u8>,
    data: Vec<String>,
}

impl SseLines {
    /// Takes the next bytes; returns the payloads of the events they completed.
    fn push(&mut self, bytes: &[u8]) -> Vec<String> {
        self.pending.extend_from_slice(bytes);
        let mut done = Vec::new();
        while let Some(end) = self.pending.iter().position(|b| *b == b'\n') {
            let line: Vec<u8> = self.pending.drain(..=end).collect();
            let line = String::from_utf8_lossy(&line);
            let line = line.trim_end_matches(['\r', '\n']);
            if line.is_empty() {
                if !self.data.is_empty() {
                    done.push(self.data.join("\n"));
                    self.data.clear();
                }
            } else if let Some(data) = line.strip_prefix("data:") {
                self.data
                    .push(data.strip_prefix(' ').unwrap_or(data).to_string());
            }
        }
        done
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn events_split_across_chunks_are_joined() {
        let mut sse = SseLines::default();
        assert!(sse.push(b"data: {\"a\"").is_empty());
        assert_eq!(sse.push(b":1}\r\n\r\ndata: [DONE]\n"), vec!["{\"a\":1}"]);
        assert_eq!(sse.push(b"\n"), vec!["[DONE]"]);
    }
}
