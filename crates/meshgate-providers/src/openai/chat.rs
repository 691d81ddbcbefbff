//! Chat Completions meters: data-only SSE chunks ending with `[DONE]`, and the JSON body.
//!
//! A stream chunk is JSON-parsed only when it can matter: its `usage` is non-null, it has an
//! `error`, it is the first chunk (for `model`), or it is the first with a non-null
//! `finish_reason`. Usage may ride on a chunk that still carries choices; several usage
//! reports overwrite field by field (last value wins, never a sum).

use meshgate_types::ServiceTier;
use serde::Deserialize;

use super::{tier, Tokens, WireUsage};
use crate::json::{is_done, parse, pattern, ErrorField, Str};
use crate::sse::SseSink;
use crate::{BodyParser, Metered, StreamState};

pattern!(USAGE, "\"usage\"");
pattern!(ERROR, "\"error\"");
pattern!(FINISH, "\"finish_reason\"");

/// How many chunks are parsed for `model` when none named it yet.
const MODEL_PROBES: u8 = 4;

/// A chat completion or one chunk of it: only what metering needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Completion<'a> {
    #[serde(borrow)]
    pub model: Str<'a>,
    #[serde(borrow)]
    pub usage: Option<WireUsage<'a>>,
    #[serde(borrow)]
    pub service_tier: Str<'a>,
    #[serde(borrow)]
    pub choices: Option<Vec<Choice<'a>>>,
    pub error: ErrorField,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Choice<'a> {
    #[serde(borrow)]
    pub finish_reason: Str<'a>,
}

impl Completion<'_> {
    fn finished(&self) -> bool {
        self.choices
            .iter()
            .flatten()
            .any(|c| c.finish_reason.get().is_some())
    }
}

/// Stream state.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    tokens: Tokens,
    usage_seen: bool,
    tier: Option<ServiceTier>,
    model: Option<String>,
    done: bool,
    finished: bool,
    error: Option<String>,
    /// Chunks parsed so far; the model is looked for in the first few only.
    probes: u8,
}

impl SseSink for Stream {
    fn wants(&self, _event: &[u8]) -> bool {
        true
    }

    fn on_event(&mut self, _event: &[u8], data: &[u8]) {
        if is_done(data) {
            self.done = true;
            return;
        }
        let worth = (self.model.is_none() && self.probes < MODEL_PROBES)
            || USAGE.key_non_null(data)
            || ERROR.key_non_null(data)
            || (!self.finished && FINISH.key_non_null(data));
        if !worth {
            return;
        }
        self.probes = self.probes.saturating_add(1);
        let Some(c) = parse::<Completion>(data) else {
            return;
        };
        if let Some(m) = c.model.owned() {
            self.model = Some(m);
        }
        if let Some(u) = &c.usage {
            self.tokens.merge(Tokens::from_wire(u));
            self.usage_seen = true;
        }
        if let Some(t) = tier(&c.service_tier) {
            self.tier = Some(t);
        }
        if c.finished() {
            self.finished = true;
        }
        if let Some(reason) = c.error.reason() {
            if self.error.is_none() && !self.complete() {
                self.error = Some(reason);
            }
        }
    }
}

impl Stream {
    fn complete(&self) -> bool {
        self.done || (self.finished && self.usage_seen)
    }
}

impl StreamState for Stream {
    fn report(&self) -> Metered {
        let mut usage = self.tokens.to_usage();
        usage.service_tier = self.tier;
        Metered {
            usage,
            response_model: self.model.clone(),
            complete: self.complete() && self.error.is_none(),
            incomplete_reason: self.error.clone(),
            ..Metered::default()
        }
    }
}

/// Non-stream body.
#[derive(Debug, Default)]
pub(crate) struct Body;

impl BodyParser for Body {
    fn parse(&self, body: &[u8]) -> Option<Metered> {
        let c: Completion = parse(body)?;
        let mut usage = c
            .usage
            .as_ref()
            .map(|u| Tokens::from_wire(u).to_usage())
            .unwrap_or_default();
        usage.service_tier = tier(&c.service_tier);
        Some(Metered {
            usage,
            response_model: c.model.owned(),
            complete: true,
            incomplete_reason: c.error.reason(),
            ..Metered::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cr, crlf, run};
    use crate::{meter_for, Metered, RequestFacts};
    use meshgate_types::{Endpoint, ServiceTier, Surface};

    const STREAM: &str = concat!(
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"choices\":[{\"index\":0,\"delta\":{\"role\":\"assistant\",\"content\":\"\",\"refusal\":null},\"finish_reason\":null}],\"usage\":null}\n\n",
        ": keep-alive\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}llo \u{2603} \u{65e5}\u{672c} \\\"usage\\\": 1\"},\"finish_reason\":null}],\"usage\":null}\n\n",
        "data:{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":null}\n\n",
        "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"created\":1760000000,\"model\":\"gpt-4o-mini-2024-07-18\",\"service_tier\":\"default\",\"choices\":[],\"usage\":{\"prompt_tokens\":1850,\"completion_tokens\":240,\"total_tokens\":2090,\"prompt_tokens_details\":{\"cached_tokens\":1536,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":64}}}\n\n",
        "data: [DONE]\n\n",
    );

    fn stream(bytes: &str) -> Metered {
        run(
            Surface::OpenAi,
            Endpoint::ChatCompletions,
            true,
            &RequestFacts::default(),
            bytes.as_bytes(),
        )
    }

    #[test]
    fn stream_usage_chunk() {
        for s in [STREAM.to_owned(), crlf(STREAM), cr(STREAM)] {
            let m = stream(&s);
            assert!(m.complete);
            assert_eq!(m.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));
            assert_eq!(m.usage.input_uncached, Some(314));
            assert_eq!(m.usage.cache_read, Some(1536));
            assert_eq!(m.usage.input_audio, Some(0));
            assert_eq!(m.usage.output, Some(240));
            assert_eq!(m.usage.reasoning, Some(64));
            assert_eq!(m.usage.service_tier, Some(ServiceTier::Standard));
            assert_eq!(m.incomplete_reason, None);
        }
    }

    #[test]
    fn usage_on_a_chunk_with_choices() {
        let s = concat!(
            "data: {\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"Hi\"},\"finish_reason\":null}]}\n\n",
            "data: {\"model\":\"m1\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n",
        );
        let m = stream(s);
        assert!(m.complete, "finish + usage completes without [DONE]");
        assert_eq!((m.usage.input_uncached, m.usage.output), (Some(9), Some(2)));
        assert_eq!(m.usage.cache_read, None);
    }

    #[test]
    fn later_usage_overwrites_never_sums() {
        let s = concat!(
            "data: {\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":1,\"prompt_tokens_details\":{\"cached_tokens\":4}}}\n\n",
            "data: {\"model\":\"m\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":7}}\n\n",
            "data: [DONE]\n\n",
        );
        let m = stream(s);
        assert_eq!(
            (m.usage.input_uncached, m.usage.cache_read, m.usage.output),
            (Some(5), Some(4), Some(7))
        );
    }

    #[test]
    fn cut_stream_and_error_line() {
        let cut = &STREAM[..STREAM.find("data:{").unwrap() + 20];
        let mut m = meter_for(
            Surface::OpenAi,
            Endpoint::ChatCompletions,
            true,
            &RequestFacts::default(),
        );
        m.observe(cut.as_bytes());
        assert!(m.mid_event());
        let r = m.finish();
        assert!(!r.complete);
        assert!(r.usage.is_empty());
        assert_eq!(r.response_model.as_deref(), Some("gpt-4o-mini-2024-07-18"));

        let s = concat!(
            "data: {\"model\":\"m\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"x\"},\"finish_reason\":null}]}\n\n",
            "data: {\"error\":{\"message\":\"The server had an error\",\"type\":\"server_error\",\"code\":null}}\n\n",
        );
        let r = stream(s);
        assert!(!r.complete);
        assert_eq!(
            r.incomplete_reason.as_deref(),
            Some("The server had an error")
        );
        assert!(r.usage.is_empty());
    }

    #[test]
    fn invalid_json_and_unknown_events_are_ignored() {
        let s = "event: weird\ndata: {not json\n\ndata: {\"usage\": {\"prompt_tokens\": \"x\"\n\nretry: 10\nid: 1\n\ndata: [DONE]\n\n";
        let r = stream(s);
        assert!(r.complete);
        assert!(r.usage.is_empty());
    }

    #[test]
    fn body() {
        let body = r#"{"id":"chatcmpl-B9xZ","object":"chat.completion","created":1760000000,"model":"gpt-4o-2024-08-06",
 "choices":[{"index":0,"message":{"role":"assistant","content":"Snowing in Oslo.","refusal":null,
   "annotations":[]},"logprobs":null,"finish_reason":"stop"}],
 "service_tier":"priority","system_fingerprint":"fp_1a2b",
 "usage":{"prompt_tokens":1850,"completion_tokens":240,"total_tokens":2090,
   "prompt_tokens_details":{"cached_tokens":1536,"audio_tokens":0},
   "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,
     "accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}}"#;
        let m = run(
            Surface::OpenAi,
            Endpoint::ChatCompletions,
            false,
            &RequestFacts::default(),
            body.as_bytes(),
        );
        assert!(m.complete);
        assert_eq!(m.response_model.as_deref(), Some("gpt-4o-2024-08-06"));
        assert_eq!(
            (m.usage.input_uncached, m.usage.cache_read, m.usage.output),
            (Some(314), Some(1536), Some(240))
        );
        assert_eq!(m.usage.service_tier, Some(ServiceTier::Priority));

        let err = r#"{"error":{"message":"Incorrect API key","type":"invalid_request_error","param":null,"code":"invalid_api_key"}}"#;
        let m = run(
            Surface::OpenAi,
            Endpoint::ChatCompletions,
            false,
            &RequestFacts::default(),
            err.as_bytes(),
        );
        assert_eq!(m.incomplete_reason.as_deref(), Some("Incorrect API key"));
        assert!(m.usage.is_empty());
        let m = run(
            Surface::OpenAi,
            Endpoint::ChatCompletions,
            false,
            &RequestFacts::default(),
            b"<html>bad gateway</html>",
        );
        assert_eq!(m, Metered::default());
    }

    #[test]
    fn oversized_body_reports_unknown() {
        use crate::{BodyMeter, Meter};
        let mut m = BodyMeter::with_cap(super::Body, 16);
        m.observe(br#"{"usage":{"prompt_tokens":1}}"#);
        assert_eq!(m.finish(), Metered::default());
    }
}
