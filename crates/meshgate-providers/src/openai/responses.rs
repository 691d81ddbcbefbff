//! Responses API meters (`/v1/responses`, `/v1/responses/compact`).
//!
//! Streams carry usage only in the terminal events `response.completed`,
//! `response.incomplete` and `response.failed` (the last two also set `incomplete_reason` and
//! still carry billable usage); `response.created` gives the model early; an `error` event
//! ends the stream without usage. Only those events are buffered and parsed; every other
//! event is skipped by name. Bodies carry `status` and `usage` at the top level. Hosted web
//! search is counted from `tool_usage.web_search.num_requests`, else from the
//! `web_search_call` output items.

use meshgate_types::{ServiceTier, Usage};
use serde::Deserialize;

use super::{tier, Tokens, WireUsage};
use crate::json::{is_done, parse, pattern, Count, ErrorField, Str};
use crate::sse::SseSink;
use crate::{BodyParser, Metered, StreamState};

pattern!(CREATED, "\"response.created\"");
pattern!(COMPLETED, "\"response.completed\"");
pattern!(INCOMPLETE, "\"response.incomplete\"");
pattern!(FAILED, "\"response.failed\"");
pattern!(ERROR, "\"error\"");

/// A response object: only what metering needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Response<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    #[serde(borrow)]
    status: Str<'a>,
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
    #[serde(borrow)]
    service_tier: Str<'a>,
    tool_usage: Option<ToolUsage>,
    #[serde(borrow)]
    incomplete_details: Option<IncompleteDetails<'a>>,
    error: ErrorField,
    #[serde(borrow)]
    output: Option<Vec<Item<'a>>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ToolUsage {
    web_search: Option<WebSearch>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct WebSearch {
    num_requests: Count,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct IncompleteDetails<'a> {
    #[serde(borrow)]
    reason: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Item<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
}

/// A stream event: the terminal ones wrap a response, `error` is flat (as documented) or
/// nested under `error` (as sent in practice).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    response: Option<Response<'a>>,
    #[serde(borrow)]
    message: Str<'a>,
    error: ErrorField,
}

/// What the meter has learnt so far.
#[derive(Debug, Default)]
struct Acc {
    tokens: Tokens,
    usage_seen: bool,
    tier: Option<ServiceTier>,
    model: Option<String>,
    id: Option<String>,
    web_search: Option<u64>,
    reason: Option<String>,
}

impl Acc {
    fn take_response(&mut self, r: &Response<'_>) {
        if let Some(m) = r.model.owned() {
            self.model = Some(m);
        }
        if let Some(id) = r.id.owned() {
            self.id = Some(id);
        }
        if let Some(u) = &r.usage {
            self.tokens.merge(Tokens::from_wire(u));
            self.usage_seen = true;
        }
        if let Some(t) = tier(&r.service_tier) {
            self.tier = Some(t);
        }
        let reported = r
            .tool_usage
            .as_ref()
            .and_then(|t| t.web_search.as_ref())
            .and_then(|w| w.num_requests.0);
        let calls = r.output.as_ref().map(|items| {
            items
                .iter()
                .filter(|i| i.kind.is("web_search_call"))
                .count() as u64
        });
        if let Some(n) = reported.or(calls.filter(|n| *n > 0)) {
            self.web_search = Some(n);
        }
        self.reason = match r.status.get() {
            Some("incomplete") => Some(
                r.incomplete_details
                    .as_ref()
                    .and_then(|d| d.reason.owned())
                    .unwrap_or_else(|| "incomplete".to_owned()),
            ),
            Some("failed") => Some(r.error.reason().unwrap_or_else(|| "failed".to_owned())),
            Some("cancelled") => Some("cancelled".to_owned()),
            _ => r.error.reason(),
        };
    }

    fn usage(&self) -> Usage {
        let mut u = if self.usage_seen {
            self.tokens.to_usage()
        } else {
            Usage::default()
        };
        u.web_search_requests = self.web_search;
        u.service_tier = self.tier;
        u
    }
}

/// Stream state.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    acc: Acc,
    terminal: bool,
    error: Option<String>,
}

fn interesting(name: &[u8]) -> bool {
    matches!(
        name,
        b"response.created"
            | b"response.completed"
            | b"response.incomplete"
            | b"response.failed"
            | b"error"
    )
}

impl SseSink for Stream {
    fn wants(&self, event: &[u8]) -> bool {
        interesting(event)
    }

    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        if is_done(data) {
            return;
        }
        if event.is_empty() {
            // Data-only variant (some compatible servers): decide from the payload.
            let worth = (self.acc.model.is_none() && CREATED.value_present(data))
                || COMPLETED.value_present(data)
                || INCOMPLETE.value_present(data)
                || FAILED.value_present(data)
                || ERROR.value_present(data)
                || ERROR.key_non_null(data);
            if !worth {
                return;
            }
        } else if event == b"response.created" && self.acc.model.is_some() {
            return;
        }
        let Some(ev) = parse::<Event>(data) else {
            return;
        };
        let kind: &[u8] = if event.is_empty() {
            ev.kind.get().map(str::as_bytes).unwrap_or_default()
        } else {
            event
        };
        match kind {
            b"response.created" => {
                if let Some(m) = ev.response.as_ref().and_then(|r| r.model.owned()) {
                    self.acc.model = Some(m);
                }
            }
            b"response.completed" | b"response.incomplete" | b"response.failed" => {
                if let Some(r) = &ev.response {
                    self.acc.take_response(r);
                }
                if self.acc.reason.is_none() && kind != b"response.completed" {
                    self.acc.reason =
                        Some(String::from_utf8_lossy(&kind[b"response.".len()..]).into_owned());
                }
                self.terminal = true;
            }
            b"error" if !self.terminal && self.error.is_none() => {
                self.error = Some(
                    ev.message
                        .owned()
                        .or(ev.error.message)
                        .unwrap_or_else(|| "upstream error".to_owned()),
                );
            }
            _ => {}
        }
    }
}

impl StreamState for Stream {
    fn report(&self) -> Metered {
        Metered {
            usage: self.acc.usage(),
            response_model: self.acc.model.clone(),
            resource_id: self.acc.id.clone(),
            complete: self.terminal,
            incomplete_reason: if self.terminal {
                self.acc.reason.clone()
            } else {
                self.error.clone()
            },
            ..Metered::default()
        }
    }
}

/// Non-stream body (`/v1/responses` and `/v1/responses/compact`).
#[derive(Debug, Default)]
pub(crate) struct Body;

impl BodyParser for Body {
    fn parse(&self, body: &[u8]) -> Option<Metered> {
        let r: Response = parse(body)?;
        let mut acc = Acc::default();
        acc.take_response(&r);
        Some(Metered {
            usage: acc.usage(),
            response_model: acc.model.clone(),
            resource_id: acc.id.clone(),
            complete: true,
            incomplete_reason: acc.reason,
            ..Metered::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{crlf, run};
    use crate::{meter_for, Metered, RequestFacts};
    use meshgate_types::{Endpoint, ServiceTier, Surface};

    const HEAD: &str = concat!(
        "event: response.created\n",
        "data: {\"type\":\"response.created\",\"sequence_number\":0,\"response\":{\"id\":\"resp_1\",\"object\":\"response\",\"status\":\"in_progress\",\"model\":\"gpt-5-2025-08-07\",\"output\":[],\"usage\":null,\"error\":null}}\n\n",
        "event: response.in_progress\n",
        "data: {\"type\":\"response.in_progress\",\"sequence_number\":1,\"response\":{\"id\":\"resp_1\",\"status\":\"in_progress\",\"usage\":null}}\n\n",
        "event: response.output_text.delta\n",
        "data: {\"type\":\"response.output_text.delta\",\"sequence_number\":4,\"item_id\":\"msg_1\",\"output_index\":0,\"content_index\":0,\"delta\":\"h\u{e9}llo \u{2603} \u{65e5}\u{672c}\",\"logprobs\":[]}\n\n",
    );

    fn stream(bytes: &str) -> Metered {
        run(
            Surface::OpenAi,
            Endpoint::Responses,
            true,
            &RequestFacts::default(),
            bytes.as_bytes(),
        )
    }

    #[test]
    fn completed() {
        let s = format!(
            "{HEAD}{}",
            concat!(
                "event: response.completed\n",
                "data: {\"type\":\"response.completed\",\"sequence_number\":8,\"response\":{\"id\":\"resp_1\",\"status\":\"completed\",\"model\":\"gpt-5-2025-08-07\",\"service_tier\":\"flex\",",
                "\"output\":[{\"type\":\"web_search_call\",\"id\":\"ws_1\"},{\"type\":\"message\",\"content\":[{\"type\":\"output_text\",\"text\":\"Hi\"}]}],",
                "\"tool_usage\":{\"web_search\":{\"num_requests\":2}},",
                "\"usage\":{\"input_tokens\":1200,\"input_tokens_details\":{\"cached_tokens\":1024},\"output_tokens\":300,\"output_tokens_details\":{\"reasoning_tokens\":192},\"total_tokens\":1500}}}\n\n",
            )
        );
        for s in [s.clone(), crlf(&s)] {
            let m = stream(&s);
            assert!(m.complete);
            assert_eq!(m.incomplete_reason, None);
            assert_eq!(m.response_model.as_deref(), Some("gpt-5-2025-08-07"));
            assert_eq!(m.resource_id.as_deref(), Some("resp_1"));
            let u = &m.usage;
            assert_eq!(
                (u.input_uncached, u.cache_read, u.output, u.reasoning),
                (Some(176), Some(1024), Some(300), Some(192))
            );
            assert_eq!(u.web_search_requests, Some(2));
            assert_eq!(u.service_tier, Some(ServiceTier::Flex));
        }
    }

    #[test]
    fn incomplete_and_failed_carry_usage() {
        let s = format!(
            "{HEAD}{}",
            concat!(
                "event: response.incomplete\n",
                "data: {\"type\":\"response.incomplete\",\"sequence_number\":9,\"response\":{\"status\":\"incomplete\",\"incomplete_details\":{\"reason\":\"max_output_tokens\"},\"usage\":{\"input_tokens\":12,\"output_tokens\":64}}}\n\n",
            )
        );
        let m = stream(&s);
        assert!(m.complete);
        assert_eq!(m.incomplete_reason.as_deref(), Some("max_output_tokens"));
        assert_eq!(
            (m.usage.input_uncached, m.usage.output),
            (Some(12), Some(64))
        );

        let s = format!(
            "{HEAD}{}",
            concat!(
                "event: response.failed\n",
                "data: {\"type\":\"response.failed\",\"sequence_number\":9,\"response\":{\"status\":\"failed\",\"error\":{\"code\":\"server_error\",\"message\":\"The model failed\"},\"usage\":{\"input_tokens\":12,\"output_tokens\":3}}}\n\n",
            )
        );
        let m = stream(&s);
        assert!(m.complete);
        assert_eq!(m.incomplete_reason.as_deref(), Some("The model failed"));
        assert_eq!(
            (m.usage.input_uncached, m.usage.output),
            (Some(12), Some(3))
        );
    }

    #[test]
    fn error_event_and_cut() {
        for err in [
            "event: error\ndata: {\"type\":\"error\",\"code\":\"server_error\",\"message\":\"boom\",\"param\":null,\"sequence_number\":5}\n\n",
            "event: error\ndata: {\"type\":\"error\",\"sequence_number\":5,\"error\":{\"type\":\"server_error\",\"code\":\"server_error\",\"message\":\"boom\",\"param\":null}}\n\n",
            "data: {\"type\":\"error\",\"sequence_number\":5,\"error\":{\"type\":\"server_error\",\"message\":\"boom\"}}\n\n",
        ] {
            let m = stream(&format!("{HEAD}{err}"));
            assert!(!m.complete);
            assert_eq!(m.incomplete_reason.as_deref(), Some("boom"));
            assert!(m.usage.is_empty());
            assert_eq!(m.response_model.as_deref(), Some("gpt-5-2025-08-07"));
        }
        let mut m = meter_for(
            Surface::OpenAi,
            Endpoint::Responses,
            true,
            &RequestFacts::default(),
        );
        m.observe(HEAD.as_bytes());
        m.observe(b"event: response.output_text.delta\ndata: {\"type\":\"resp");
        assert!(m.mid_event());
        let r = m.finish();
        assert!(!r.complete && r.usage.is_empty() && r.incomplete_reason.is_none());
    }

    #[test]
    fn data_only_variant_with_done() {
        let s = concat!(
            "data: {\"type\":\"response.created\",\"response\":{\"model\":\"m\",\"error\":null}}\n\n",
            "data: {\"type\":\"response.output_text.delta\",\"delta\":\"\\\"response.completed\\\"\"}\n\n",
            "data: {\"type\":\"response.completed\",\"response\":{\"status\":\"completed\",\"usage\":{\"input_tokens\":5,\"output_tokens\":1}}}\n\n",
            "data: [DONE]\n\n",
        );
        let m = stream(s);
        assert!(m.complete);
        assert_eq!(m.response_model.as_deref(), Some("m"));
        assert_eq!((m.usage.input_uncached, m.usage.output), (Some(5), Some(1)));
    }

    #[test]
    fn bodies() {
        let body = r#"{"id":"resp_68ab","object":"response","created_at":1760000000,"status":"completed",
 "model":"gpt-5-2025-08-07","error":null,"incomplete_details":null,"service_tier":"default",
 "output":[{"type":"reasoning","id":"rs_1","summary":[]},
   {"type":"message","id":"msg_1","role":"assistant","status":"completed",
    "content":[{"type":"output_text","text":"Checking.","annotations":[]}]}],
 "usage":{"input_tokens":1200,"input_tokens_details":{"cached_tokens":1024},
   "output_tokens":300,"output_tokens_details":{"reasoning_tokens":192},"total_tokens":1500}}"#;
        let m = run(
            Surface::OpenAi,
            Endpoint::Responses,
            false,
            &RequestFacts::default(),
            body.as_bytes(),
        );
        assert!(m.complete && m.incomplete_reason.is_none());
        assert_eq!(m.resource_id.as_deref(), Some("resp_68ab"));
        assert_eq!(m.usage.input_uncached, Some(176));
        assert_eq!(m.usage.web_search_requests, None);
        assert_eq!(m.usage.service_tier, Some(ServiceTier::Standard));

        let compact = r#"{"id":"cmp_1","object":"response.compaction","created_at":1760000000,
 "output":[{"type":"message","role":"user","content":[]},{"type":"compaction","encrypted_content":"x"}],
 "usage":{"input_tokens":5000,"input_tokens_details":{"cached_tokens":0},"output_tokens":800,"output_tokens_details":{"reasoning_tokens":0},"total_tokens":5800}}"#;
        let m = run(
            Surface::OpenAi,
            Endpoint::ResponsesCompact,
            false,
            &RequestFacts::default(),
            compact.as_bytes(),
        );
        assert!(m.complete);
        assert_eq!(
            (m.usage.input_uncached, m.usage.output),
            (Some(5000), Some(800))
        );

        let incomplete = r#"{"status":"incomplete","incomplete_details":{"reason":"content_filter"},"model":"m",
 "output":[{"type":"web_search_call"},{"type":"web_search_call"}],"usage":{"input_tokens":7,"output_tokens":2}}"#;
        let m = run(
            Surface::OpenAi,
            Endpoint::Responses,
            false,
            &RequestFacts::default(),
            incomplete.as_bytes(),
        );
        assert_eq!(m.incomplete_reason.as_deref(), Some("content_filter"));
        assert_eq!(m.usage.web_search_requests, Some(2));
    }
}
