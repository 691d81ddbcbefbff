//! Messages meters (`/v1/messages`): named SSE events and the JSON body.
//!
//! Stream accounting follows anthropic-wire.md §6.1: `message_start` sets the usage (input,
//! cache counts and their TTL split, a placeholder output), each `message_delta` overwrites
//! every count it carries (cumulative, never summed; input and cache counts may be restated
//! by server tools), `message_stop` completes. Only those events and `error` are buffered and
//! parsed; content deltas and pings are skipped by name.

use serde::Deserialize;

use super::{Tokens, WireUsage};
use crate::json::{parse, pattern, ErrorField, Str};
use crate::sse::SseSink;
use crate::{BodyParser, Metered, StreamState};

pattern!(START, "\"message_start\"");
pattern!(DELTA, "\"message_delta\"");
pattern!(STOP, "\"message_stop\"");
pattern!(ERROR, "\"error\"");

/// A message (the body, `message_start.message`, a batch result's message).
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct Message<'a> {
    #[serde(rename = "type", borrow)]
    pub kind: Str<'a>,
    #[serde(borrow)]
    pub model: Str<'a>,
    #[serde(borrow)]
    pub usage: Option<WireUsage<'a>>,
    pub error: ErrorField,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    message: Option<Message<'a>>,
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
    error: ErrorField,
}

/// Stream state.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    tokens: Tokens,
    model: Option<String>,
    stopped: bool,
    error: Option<String>,
}

impl SseSink for Stream {
    fn wants(&self, event: &[u8]) -> bool {
        matches!(
            event,
            b"message_start" | b"message_delta" | b"message_stop" | b"error"
        )
    }

    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        if event == b"message_stop" {
            self.stopped = true;
            return;
        }
        if event.is_empty()
            && !(START.value_present(data)
                || DELTA.value_present(data)
                || STOP.value_present(data)
                || ERROR.value_present(data))
        {
            return;
        }
        let Some(ev) = parse::<Event>(data) else {
            return;
        };
        let kind = ev.kind.event_type(event);
        match kind {
            b"message_start" => {
                if let Some(m) = &ev.message {
                    if let Some(u) = &m.usage {
                        self.tokens = Tokens::default();
                        self.tokens.merge(u);
                    }
                    if let Some(model) = m.model.owned() {
                        self.model = Some(model);
                    }
                }
            }
            b"message_delta" => {
                if let Some(u) = &ev.usage {
                    self.tokens.merge(u);
                }
            }
            b"message_stop" => self.stopped = true,
            b"error" if !self.stopped && self.error.is_none() => {
                self.error = Some(
                    ev.error
                        .reason()
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
            usage: self.tokens.to_usage(),
            response_model: self.model.clone(),
            complete: self.stopped && self.error.is_none(),
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
        let m: Message = parse(body)?;
        let mut tokens = Tokens::default();
        if let Some(u) = &m.usage {
            tokens.merge(u);
        }
        Some(Metered {
            usage: tokens.to_usage(),
            response_model: m.model.owned(),
            complete: true,
            incomplete_reason: m.error.reason(),
            ..Metered::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cr, crlf, run};
    use crate::{meter_for, Metered, RequestFacts};
    use meshgate_types::{Endpoint, ServiceTier, Surface};

    const START: &str = concat!(
        "event: message_start\n",
        "data: {\"type\":\"message_start\",\"message\":{\"id\":\"msg_01X\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[],\"stop_reason\":null,\"stop_sequence\":null,",
        "\"usage\":{\"input_tokens\":412,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":10240,\"cache_creation\":{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":2000},\"output_tokens\":1,\"service_tier\":\"standard\"}}}\n\n",
        "event: content_block_start\n",
        "data: {\"type\":\"content_block_start\",\"index\":0,\"content_block\":{\"type\":\"text\",\"text\":\"\"}}\n\n",
        "event: ping\n",
        "data: {\"type\":\"ping\"}\n\n",
        "event: content_block_delta\n",
        "data: {\"type\":\"content_block_delta\",\"index\":0,\"delta\":{\"type\":\"text_delta\",\"text\":\"h\u{e9}llo \u{2603} \u{65e5}\u{672c}\"}}\n\n",
        "event: content_block_stop\n",
        "data: {\"type\":\"content_block_stop\",\"index\":0}\n\n",
    );

    const END: &str = concat!(
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"output_tokens\":40}}\n\n",
        "event: message_delta\n",
        "data: {\"type\":\"message_delta\",\"delta\":{\"stop_reason\":\"end_turn\",\"stop_sequence\":null},\"usage\":{\"input_tokens\":980,\"cache_creation_input_tokens\":3500,\"cache_read_input_tokens\":10240,\"output_tokens\":87,\"output_tokens_details\":{\"thinking_tokens\":30},\"server_tool_use\":{\"web_search_requests\":2}}}\n\n",
        "event: message_stop\n",
        "data: {\"type\":\"message_stop\"}\n\n",
    );

    fn stream(bytes: &str) -> Metered {
        run(
            Surface::Anthropic,
            Endpoint::Messages,
            true,
            &RequestFacts::default(),
            bytes.as_bytes(),
        )
    }

    #[test]
    fn restated_input_is_taken_last_with_ttl_split() {
        let s = format!("{START}{END}");
        for s in [s.clone(), crlf(&s), cr(&s)] {
            let m = stream(&s);
            assert!(m.complete);
            assert_eq!(
                m.response_model.as_deref(),
                Some("claude-sonnet-4-5-20250929")
            );
            let u = &m.usage;
            assert_eq!(u.input_uncached, Some(980), "restated, not 412 + 980");
            assert_eq!(u.cache_read, Some(10240));
            assert_eq!(
                (u.cache_write_5m, u.cache_write_1h),
                (Some(1500), Some(2000)),
                "difference of 500 goes to 5m"
            );
            assert_eq!(u.output, Some(87), "last cumulative value, not 1 + 40 + 87");
            assert_eq!(u.reasoning, Some(30));
            assert_eq!(u.web_search_requests, Some(2));
            assert_eq!(u.service_tier, Some(ServiceTier::Standard));
        }
    }

    #[test]
    fn cut_stream_keeps_message_start_input() {
        let m = stream(START);
        assert!(!m.complete);
        assert_eq!(m.usage.input_uncached, Some(412));
        assert_eq!(m.usage.cache_write_1h, Some(2000));
        assert_eq!(
            m.usage.output,
            Some(1),
            "the placeholder is what was reported"
        );

        let mut meter = meter_for(
            Surface::Anthropic,
            Endpoint::Messages,
            true,
            &RequestFacts::default(),
        );
        meter.observe(START.as_bytes());
        assert!(!meter.mid_event());
        meter.observe(b"event: content_block_delta\ndata: {\"type\":\"content_bl");
        assert!(meter.mid_event());
    }

    #[test]
    fn error_event() {
        let s = format!(
            "{START}event: error\ndata: {{\"type\":\"error\",\"error\":{{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}}}\n\n"
        );
        let m = stream(&s);
        assert!(!m.complete);
        assert_eq!(m.incomplete_reason.as_deref(), Some("Overloaded"));
        assert_eq!(m.usage.input_uncached, Some(412));
    }

    #[test]
    fn body() {
        let b = r#"{"id":"msg_01XFDU","type":"message","role":"assistant","model":"claude-sonnet-4-5-20250929",
 "content":[{"type":"text","text":"Let me check."},
   {"type":"tool_use","id":"toolu_01A","name":"get_weather","input":{"city":"Oslo"}}],
 "stop_reason":"tool_use","stop_sequence":null,
 "usage":{"input_tokens":412,"cache_creation_input_tokens":2048,"cache_read_input_tokens":10240,
   "cache_creation":{"ephemeral_5m_input_tokens":2048,"ephemeral_1h_input_tokens":0},
   "output_tokens":87,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},
   "service_tier":"priority"}}"#;
        let m = run(
            Surface::Anthropic,
            Endpoint::Messages,
            false,
            &RequestFacts::default(),
            b.as_bytes(),
        );
        assert!(m.complete && m.incomplete_reason.is_none());
        let u = &m.usage;
        assert_eq!(
            (
                u.input_uncached,
                u.cache_read,
                u.cache_write_5m,
                u.cache_write_1h,
                u.output
            ),
            (Some(412), Some(10240), Some(2048), Some(0), Some(87))
        );
        assert_eq!(u.service_tier, Some(ServiceTier::Priority));
        let err = r#"{"type":"error","error":{"type":"rate_limit_error","message":"slow down"},"request_id":"req_1"}"#;
        let m = run(
            Surface::Anthropic,
            Endpoint::Messages,
            false,
            &RequestFacts::default(),
            err.as_bytes(),
        );
        assert_eq!(m.incomplete_reason.as_deref(), Some("slow down"));
        assert!(m.usage.is_empty());
    }
}
