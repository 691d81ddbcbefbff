//! Stream translation, Gemini `streamGenerateContent?alt=sse` upstream -> OA
//! `chat.completion.chunk` client, event by event; and to AN events by chaining the
//! OA->AN stream translator behind it (the same composition as non-stream bodies).
//!
//! Each Gemini event is a whole `GenerateContentResponse` holding the next parts; a
//! `functionCall` arrives whole, so it becomes one tool-call delta with all its arguments.
//! The chunk that carries `finishReason` ends the answer: the finish chunk, the usage chunk
//! (when asked for; usage is the last `usageMetadata` seen) and `[DONE]` are written then.

use super::error::gemini_error_object;
use super::gemini::{finish_reason_for, GeUsage};
use super::response_ge::tool_call;
use super::stream_an_to_oa::{js, OaChunks};
use super::stream_oa_to_an::OpenAiToAnthropicStream;
use super::value::Json;
use super::{now_unix, Dropped, StreamTranslator};
use crate::cut::stream_cut_error;
use crate::sse::{SseFramer, SseSink};
use meshgate_types::{Endpoint, Surface};

/// Gemini SSE -> OA chat chunks; `include_usage` as for the Anthropic translator.
pub fn gemini_stream_to_openai(
    client_model: &str,
    include_usage: bool,
) -> Box<dyn StreamTranslator> {
    Box::new(GeminiToOpenAiStream::new(
        client_model,
        include_usage,
        now_unix(),
    ))
}

/// Gemini SSE -> AN events: Gemini -> OA (with usage) -> AN.
pub fn gemini_stream_to_anthropic(client_model: &str) -> Box<dyn StreamTranslator> {
    Box::new(Chained {
        first: GeminiToOpenAiStream::new(client_model, true, now_unix()),
        second: OpenAiToAnthropicStream::new(client_model),
        between: Vec::new(),
        dropped: Dropped::default(),
    })
}

/// The translator behind [`gemini_stream_to_openai`], with an explicit `created` time.
pub struct GeminiToOpenAiStream {
    framer: SseFramer,
    state: State,
}

impl GeminiToOpenAiStream {
    pub fn new(client_model: &str, include_usage: bool, created: u64) -> Self {
        GeminiToOpenAiStream {
            framer: SseFramer::new(),
            state: State {
                w: OaChunks::new(client_model, include_usage, created),
                response_id: None,
                calls: 0,
                usage: GeUsage::default(),
                terminal: false,
                dropped: Dropped::default(),
            },
        }
    }
}

impl StreamTranslator for GeminiToOpenAiStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.framer.feed(chunk, &mut self.state);
        out.append(&mut self.state.w.out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.framer.finish(&mut self.state);
        if !self.state.terminal {
            self.state.terminal = true;
            self.state.w.out.extend_from_slice(&stream_cut_error(
                Surface::OpenAi,
                Endpoint::ChatCompletions,
                false,
                "the upstream stream ended before a finishReason",
            ));
        }
        out.append(&mut self.state.w.out);
    }

    fn dropped(&self) -> &[String] {
        self.state.dropped.list()
    }
}

struct State {
    w: OaChunks,
    /// Gemini's `responseId`, once the first event came.
    response_id: Option<String>,
    /// Tool calls so far (the OA index of the next one).
    calls: usize,
    usage: GeUsage,
    /// A finish or an error was written: nothing more is.
    terminal: bool,
    dropped: Dropped,
}

impl State {
    fn chunk(&mut self, delta: &str) {
        self.w.chunk(delta, None);
    }

    fn finish(&mut self, reason: Option<&str>) {
        let finish = finish_reason_for(reason, self.calls > 0);
        self.w.end(finish, &self.usage.to_openai());
        self.terminal = true;
    }

    fn error(&mut self, error: &Json) {
        self.w.error(gemini_error_object(error));
        self.terminal = true;
    }
}

impl SseSink for State {
    fn wants(&self, _event: &[u8]) -> bool {
        !self.terminal
    }

    fn on_event(&mut self, _event: &[u8], data: &[u8]) {
        if self.terminal {
            return;
        }
        let Some(ev) = Json::parse(data) else {
            return;
        };
        if !ev.get("error").is_null() {
            self.error(ev.get("error"));
            return;
        }
        if self.response_id.is_none() {
            let id = ev.get("responseId").as_str().unwrap_or("gemini");
            self.w.ensure_prefix(id);
            self.response_id = Some(id.to_owned());
            self.chunk("{\"role\":\"assistant\",\"content\":\"\"}");
        }
        self.usage
            .merge(GeUsage::from_json(ev.get("usageMetadata")));
        let candidates = ev.get("candidates").as_array().unwrap_or_default();
        if candidates.len() > 1 {
            self.dropped.add("candidates");
        }
        let c = candidates.first().unwrap_or(&Json::Null);
        for part in c.get("content").get("parts").as_array().unwrap_or_default() {
            if part.get("thought").as_bool() == Some(true) {
                self.dropped.add("thought");
            } else if let Some(t) = part.get("text").as_str() {
                if !t.is_empty() {
                    self.chunk(&format!("{{\"content\":{}}}", js(t)));
                }
            } else if !part.get("functionCall").is_null() {
                let k = self.calls;
                self.calls += 1;
                let id = self.response_id.as_deref().unwrap_or("gemini");
                let mut call = tool_call(id, k, part);
                if let Json::Object(o) = &mut call {
                    o.insert("index", k as u64);
                }
                self.chunk(&format!("{{\"tool_calls\":[{}]}}", call.to_text()));
            } else if let Some((k, _)) = part.as_object().and_then(|o| o.iter().next()) {
                self.dropped.add(k);
            }
        }
        let blocked =
            candidates.is_empty() && !ev.get("promptFeedback").get("blockReason").is_null();
        if let Some(reason) = c.get("finishReason").as_str() {
            self.finish(Some(reason));
        } else if blocked {
            self.finish(Some("SAFETY"));
        }
    }
}

/// Two translators in a row: the first's output is the second's input, chunk by chunk.
struct Chained<A, B> {
    first: A,
    second: B,
    between: Vec<u8>,
    dropped: Dropped,
}

impl<A: StreamTranslator, B: StreamTranslator> Chained<A, B> {
    fn collect_dropped(&mut self) {
        for d in self.first.dropped().iter().chain(self.second.dropped()) {
            self.dropped.add(d);
        }
    }
}

impl<A: StreamTranslator, B: StreamTranslator> StreamTranslator for Chained<A, B> {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.first.push(chunk, &mut self.between);
        if !self.between.is_empty() {
            self.second.push(&self.between, out);
            self.between.clear();
        }
        self.collect_dropped();
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.first.finish(&mut self.between);
        self.second.push(&self.between, out);
        self.between.clear();
        self.second.finish(out);
        self.collect_dropped();
    }

    fn dropped(&self) -> &[String] {
        self.dropped.list()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const STREAM: &str = concat!(
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"Hel\"}],\"role\":\"model\"},\"index\":0}],",
        "\"usageMetadata\":{\"promptTokenCount\":12,\"totalTokenCount\":12},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n",
        "data: {\"candidates\":[{\"content\":{\"parts\":[{\"text\":\"lo\"},{\"functionCall\":{\"name\":\"f\",\"args\":{\"a\":1}}}],\"role\":\"model\"},",
        "\"finishReason\":\"STOP\",\"index\":0}],\"usageMetadata\":{\"promptTokenCount\":12,\"candidatesTokenCount\":5,",
        "\"thoughtsTokenCount\":7,\"totalTokenCount\":24},\"modelVersion\":\"gemini-2.5-flash\",\"responseId\":\"r1\"}\r\n\r\n",
    );

    fn run(t: &mut dyn StreamTranslator, split: bool) -> String {
        let mut out = Vec::new();
        if split {
            for b in STREAM.as_bytes() {
                t.push(std::slice::from_ref(b), &mut out);
            }
        } else {
            t.push(STREAM.as_bytes(), &mut out);
        }
        t.finish(&mut out);
        String::from_utf8(out).unwrap()
    }

    #[test]
    fn to_openai_event_by_event() {
        let whole = run(&mut GeminiToOpenAiStream::new("gm", true, 7), false);
        assert_eq!(
            run(&mut GeminiToOpenAiStream::new("gm", true, 7), true),
            whole
        );
        let p = r#"data: {"id":"chatcmpl-r1","object":"chat.completion.chunk","created":7,"model":"gm","choices":[{"index":0,"delta":"#;
        let expected = [
            format!(r#"{p}{{"role":"assistant","content":""}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#),
            format!(r#"{p}{{"content":"Hel"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#),
            format!(r#"{p}{{"content":"lo"}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#),
            format!(r#"{p}{{"tool_calls":[{{"id":"call_r1_0","type":"function","function":{{"name":"f","arguments":"{{\"a\":1}}"}},"index":0}}]}},"logprobs":null,"finish_reason":null}}],"usage":null}}"#),
            format!(r#"{p}{{}},"logprobs":null,"finish_reason":"tool_calls"}}],"usage":null}}"#),
            r#"data: {"id":"chatcmpl-r1","object":"chat.completion.chunk","created":7,"model":"gm","choices":[],"usage":{"prompt_tokens":12,"completion_tokens":12,"total_tokens":24,"prompt_tokens_details":{"cached_tokens":0},"completion_tokens_details":{"reasoning_tokens":7}}}"#.to_string(),
            "data: [DONE]".to_string(),
        ];
        let events: Vec<&str> = whole.split("\n\n").filter(|e| !e.is_empty()).collect();
        assert_eq!(events, expected);
    }

    #[test]
    fn to_anthropic_and_cut_streams() {
        let an = run(&mut *gemini_stream_to_anthropic("gm"), false);
        for needle in [
            "event: message_start",
            r#""text":"Hel""#,
            r#""type":"tool_use""#,
            r#""stop_reason":"tool_use""#,
            r#""output_tokens":12"#,
            "event: message_stop",
        ] {
            assert!(an.contains(needle), "{needle} missing from {an}");
        }
        // Cut before the finish: the client's error event, never a clean end.
        let mut t = GeminiToOpenAiStream::new("gm", false, 1);
        let mut out = Vec::new();
        t.push(&STREAM.as_bytes()[..STREAM.len() / 2], &mut out);
        t.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("\"error\"") && !text.contains("[DONE]"),
            "{text}"
        );
        // An error event from Google becomes the client's error.
        let mut t = gemini_stream_to_anthropic("gm");
        let mut out = Vec::new();
        t.push(
            b"data: {\"error\":{\"code\":503,\"message\":\"busy\",\"status\":\"UNAVAILABLE\"}}\n\n",
            &mut out,
        );
        t.finish(&mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.contains("event: error") && text.contains("overloaded_error"),
            "{text}"
        );
    }
}
