//! Legacy Text Completions meters (`/v1/complete`): no usage is ever reported, so usage stays
//! empty (the gateway counts tokens itself); `complete` once a non-null `stop_reason` is seen.

use serde::Deserialize;

use crate::json::{parse, pattern, ErrorField, Str};
use crate::sse::SseSink;
use crate::{BodyParser, Metered, StreamState};

pattern!(STOP_REASON, "\"stop_reason\"");
pattern!(ERROR, "\"error\"");

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Completion<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    model: Str<'a>,
    #[serde(borrow)]
    stop_reason: Str<'a>,
    error: ErrorField,
}

/// Stream state.
#[derive(Debug, Default)]
pub(crate) struct Stream {
    model: Option<String>,
    stopped: bool,
    error: Option<String>,
    /// Events parsed so far; the model is looked for in the first few only.
    probes: u8,
}

impl SseSink for Stream {
    fn wants(&self, event: &[u8]) -> bool {
        matches!(event, b"completion" | b"error")
    }

    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        let worth = (self.model.is_none() && self.probes < 4)
            || STOP_REASON.key_non_null(data)
            || ERROR.value_present(data)
            || ERROR.key_non_null(data);
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
        if c.stop_reason.get().is_some() {
            self.stopped = true;
        }
        let is_error = event == b"error" || (event.is_empty() && c.kind.is("error"));
        if is_error && !self.stopped && self.error.is_none() {
            self.error = Some(
                c.error
                    .reason()
                    .unwrap_or_else(|| "upstream error".to_owned()),
            );
        }
    }
}

impl StreamState for Stream {
    fn report(&self) -> Metered {
        Metered {
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
        let c: Completion = parse(body)?;
        Some(Metered {
            response_model: c.model.owned(),
            complete: c.stop_reason.get().is_some(),
            incomplete_reason: c.error.reason(),
            ..Metered::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{crlf, run};
    use crate::{Metered, RequestFacts};
    use meshgate_types::{Endpoint, Surface};

    fn complete(streaming: bool, bytes: &str) -> Metered {
        run(
            Surface::Anthropic,
            Endpoint::Complete,
            streaming,
            &RequestFacts::default(),
            bytes.as_bytes(),
        )
    }

    #[test]
    fn stream_completes_on_stop_reason() {
        let s = concat!(
            "event: completion\n",
            "data: {\"type\":\"completion\",\"completion\":\" H\u{e9}llo \u{2603}\",\"stop_reason\":null,\"model\":\"claude-2.1\"}\n\n",
            "event: ping\ndata: {\"type\":\"ping\"}\n\n",
            "event: completion\n",
            "data: {\"type\":\"completion\",\"completion\":\"\",\"stop_reason\":\"stop_sequence\",\"model\":\"claude-2.1\"}\n\n",
        );
        for s in [s.to_owned(), crlf(s)] {
            let m = complete(true, &s);
            assert!(m.complete);
            assert!(m.usage.is_empty());
            assert_eq!(m.response_model.as_deref(), Some("claude-2.1"));
        }
        let cut = complete(true, &s[..s.find("event: ping").unwrap()]);
        assert!(!cut.complete);
        let err = complete(
            true,
            "event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"overloaded_error\",\"message\":\"Overloaded\"}}\n\n",
        );
        assert_eq!(err.incomplete_reason.as_deref(), Some("Overloaded"));
        assert!(!err.complete);
    }

    #[test]
    fn body() {
        let m = complete(
            false,
            r#"{"type":"completion","id":"compl_01Q","completion":" Hello! How can I help?","stop_reason":"stop_sequence","model":"claude-2.1"}"#,
        );
        assert!(m.complete && m.usage.is_empty());
        assert_eq!(m.response_model.as_deref(), Some("claude-2.1"));
    }
}
