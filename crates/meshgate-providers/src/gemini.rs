//! Gemini `generateContent` meters: the JSON body and the `alt=sse` stream, whose every event
//! is a whole `GenerateContentResponse` restating the running `usageMetadata` (the last one
//! seen is the usage). A stream is complete once a candidate carried a `finishReason` (or
//! the prompt was blocked); an `{"error":..}` event makes it incomplete.
//!
//! `promptTokenCount` includes `cachedContentTokenCount`; `candidatesTokenCount` excludes
//! `thoughtsTokenCount`, which is billed as output; `toolUsePromptTokenCount` (results of
//! tools Gemini ran itself) is billed as input. Audio prompt tokens (`promptTokensDetails`
//! with modality `AUDIO`) are reported apart, as models price them apart.

use serde::Deserialize;

use crate::json::Count;
use crate::sse::SseSink;
use crate::{BodyMeter, BodyParser, Meter, Metered, SseMeter, StreamState};
use meshgate_types::Usage;

/// The meter for a Gemini response; `streaming` = `text/event-stream`.
pub fn gemini_meter(streaming: bool) -> Box<dyn Meter> {
    if streaming {
        Box::new(SseMeter::new(Stream::default()))
    } else {
        Box::new(BodyMeter::new(Body))
    }
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct UsageMetadata {
    prompt_token_count: Count,
    candidates_token_count: Count,
    cached_content_token_count: Count,
    thoughts_token_count: Count,
    tool_use_prompt_token_count: Count,
    prompt_tokens_details: Vec<ModalityCount>,
}

#[derive(Debug, Default, Clone, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct ModalityCount {
    modality: Option<String>,
    token_count: Count,
}

impl UsageMetadata {
    fn merge(&mut self, other: &UsageMetadata) {
        for (mine, theirs) in [
            (&mut self.prompt_token_count, other.prompt_token_count),
            (
                &mut self.candidates_token_count,
                other.candidates_token_count,
            ),
            (
                &mut self.cached_content_token_count,
                other.cached_content_token_count,
            ),
            (&mut self.thoughts_token_count, other.thoughts_token_count),
            (
                &mut self.tool_use_prompt_token_count,
                other.tool_use_prompt_token_count,
            ),
        ] {
            if theirs.0.is_some() {
                *mine = theirs;
            }
        }
        if !other.prompt_tokens_details.is_empty() {
            self.prompt_tokens_details = other.prompt_tokens_details.clone();
        }
    }

    fn usage(&self) -> Usage {
        let prompt = self.prompt_token_count.0;
        let cached = self.cached_content_token_count.0;
        let tool = self.tool_use_prompt_token_count.0;
        let input = prompt
            .or(tool)
            .map(|_| (prompt.unwrap_or(0) + tool.unwrap_or(0)).saturating_sub(cached.unwrap_or(0)));
        let thoughts = self.thoughts_token_count.0;
        let candidates = self.candidates_token_count.0;
        let output = candidates
            .or(thoughts)
            .map(|_| candidates.unwrap_or(0) + thoughts.unwrap_or(0));
        let audio = self
            .prompt_tokens_details
            .iter()
            .filter(|d| d.modality.as_deref() == Some("AUDIO"))
            .filter_map(|d| d.token_count.0)
            .reduce(|a, b| a + b);
        Usage {
            input_uncached: input,
            input_audio: audio.map(|a| a.min(input.unwrap_or(0))),
            cache_read: cached,
            output,
            reasoning: thoughts,
            ..Usage::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Candidate {
    finish_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct PromptFeedback {
    block_reason: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default, rename_all = "camelCase")]
struct Response {
    candidates: Vec<Candidate>,
    prompt_feedback: Option<PromptFeedback>,
    usage_metadata: Option<UsageMetadata>,
    model_version: Option<String>,
    error: Option<ErrorBody>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ErrorBody {
    message: Option<String>,
}

impl Response {
    fn finished(&self) -> bool {
        self.candidates.iter().any(|c| c.finish_reason.is_some())
            || self
                .prompt_feedback
                .as_ref()
                .is_some_and(|p| p.block_reason.is_some())
    }
}

/// Stream state.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    usage: UsageMetadata,
    model: Option<String>,
    finished: bool,
    error: Option<String>,
}

impl SseSink for Stream {
    fn wants(&self, _event: &[u8]) -> bool {
        true
    }

    fn on_event(&mut self, _event: &[u8], data: &[u8]) {
        let Ok(r) = serde_json::from_slice::<Response>(data) else {
            return;
        };
        if let Some(e) = &r.error {
            self.error = Some(e.message.clone().unwrap_or_else(|| "error".to_owned()));
            return;
        }
        if let Some(u) = &r.usage_metadata {
            self.usage.merge(u);
        }
        if r.model_version.is_some() {
            self.model = r.model_version.clone();
        }
        self.finished |= r.finished();
    }
}

impl StreamState for Stream {
    fn report(&self) -> Metered {
        Metered {
            usage: self.usage.usage(),
            response_model: self.model.clone(),
            complete: self.finished && self.error.is_none(),
            incomplete_reason: self.error.clone(),
            ..Metered::default()
        }
    }
}

/// The non-stream body.
pub(crate) struct Body;

impl BodyParser for Body {
    fn parse(&self, body: &[u8]) -> Option<Metered> {
        let r: Response = serde_json::from_slice(body).ok()?;
        Some(Metered {
            usage: r.usage_metadata.unwrap_or_default().usage(),
            response_model: r.model_version,
            complete: true,
            ..Metered::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(streaming: bool, bytes: &[u8]) -> Metered {
        let mut whole = gemini_meter(streaming);
        whole.observe(bytes);
        let whole = whole.finish();
        let mut split = gemini_meter(streaming);
        for b in bytes {
            split.observe(std::slice::from_ref(b));
        }
        assert_eq!(split.finish(), whole);
        whole
    }

    #[test]
    fn body_and_stream() {
        let body = br#"{"candidates":[{"content":{"parts":[{"text":"hi"}]},"finishReason":"STOP"}],
            "usageMetadata":{"promptTokenCount":1000,"candidatesTokenCount":50,"cachedContentTokenCount":600,"thoughtsTokenCount":200,"totalTokenCount":1250,
              "promptTokensDetails":[{"modality":"TEXT","tokenCount":900},{"modality":"AUDIO","tokenCount":100}]},
            "modelVersion":"gemini-2.5-pro"}"#;
        let m = run(false, body);
        assert_eq!(m.usage.input_uncached, Some(400));
        assert_eq!(m.usage.cache_read, Some(600));
        assert_eq!(m.usage.output, Some(250));
        assert_eq!(m.usage.reasoning, Some(200));
        assert_eq!(m.usage.input_audio, Some(100));
        assert_eq!(m.response_model.as_deref(), Some("gemini-2.5-pro"));

        let stream = concat!(
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"a\"}]}}],\"usageMetadata\":{\"promptTokenCount\":9,\"totalTokenCount\":9}}\r\n\r\n",
            "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"b\"}]},\"finishReason\":\"STOP\"}],",
            "\"usageMetadata\":{\"promptTokenCount\":9,\"candidatesTokenCount\":4,\"totalTokenCount\":13}}\r\n\r\n"
        );
        let m = run(true, stream.as_bytes());
        assert!(m.complete);
        assert_eq!(m.usage.input_uncached, Some(9));
        assert_eq!(m.usage.output, Some(4));
        assert_eq!(m.usage.cache_read, None);

        let cut = &stream.as_bytes()[..stream.len() / 2];
        let m = run(true, cut);
        assert!(!m.complete);
        assert_eq!(m.usage.input_uncached, Some(9));
        assert_eq!(m.usage.output, None);

        let err =
            "data: {\"error\":{\"code\":503,\"message\":\"busy\",\"status\":\"UNAVAILABLE\"}}\n\n";
        let m = run(true, err.as_bytes());
        assert!(!m.complete);
        assert_eq!(m.incomplete_reason.as_deref(), Some("busy"));
    }
}
