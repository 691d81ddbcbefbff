//! Message Batches results (JSONL, order not guaranteed): each `succeeded` line becomes a
//! batch item with its message's usage at the Batch tier; errored, canceled and expired lines
//! bill nothing.

use meshgate_types::{ServiceTier, Usage};
use serde::Deserialize;

use super::messages::Message;
use super::Tokens;
use crate::body::JsonlMeter;
use crate::json::{parse, Str};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Line<'a> {
    #[serde(borrow)]
    result: Option<BatchResult<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct BatchResult<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    message: Option<Message<'a>>,
}

fn parse_line(line: &[u8]) -> Option<Option<(String, Usage)>> {
    let l: Line = parse(line)?;
    let item = l.result.and_then(|r| {
        if !r.kind.is("succeeded") {
            return None;
        }
        let m = r.message?;
        let mut tokens = Tokens::default();
        tokens.merge(m.usage.as_ref()?);
        let mut usage = tokens.to_usage();
        usage.service_tier = Some(ServiceTier::Batch);
        Some((m.model.owned().unwrap_or_default(), usage))
    });
    Some(item)
}

/// The meter of `GET /v1/messages/batches/{id}/results`.
pub(crate) fn results_meter() -> JsonlMeter {
    JsonlMeter::new(parse_line)
}

#[cfg(test)]
mod tests {
    use crate::testutil::{crlf, run};
    use crate::{Meter, RequestFacts};
    use meshgate_types::{Endpoint, ServiceTier, Surface};

    const RESULTS: &str = concat!(
        "{\"custom_id\":\"a-1\",\"result\":{\"type\":\"succeeded\",\"message\":{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5-20250929\",\"content\":[{\"type\":\"text\",\"text\":\"h\u{e9}llo \u{2603} \u{65e5}\u{672c}\"}],\"stop_reason\":\"end_turn\",\"stop_sequence\":null,\"usage\":{\"input_tokens\":10,\"output_tokens\":34,\"cache_creation_input_tokens\":0,\"cache_read_input_tokens\":0,\"service_tier\":\"batch\"}}}}\n",
        "{\"custom_id\":\"a-2\",\"result\":{\"type\":\"errored\",\"error\":{\"type\":\"error\",\"error\":{\"type\":\"invalid_request_error\",\"message\":\"max_tokens: Field required\"}}}}\n",
        "{\"custom_id\":\"a-3\",\"result\":{\"type\":\"canceled\"}}\n",
        "{\"custom_id\":\"a-4\",\"result\":{\"type\":\"expired\"}}\n",
        "{\"custom_id\":\"a-5\",\"result\":{\"type\":\"succeeded\",\"message\":{\"model\":\"claude-haiku-4-5\",\"usage\":{\"input_tokens\":3,\"output_tokens\":4}}}}\n",
    );

    #[test]
    fn succeeded_lines_become_items() {
        for s in [RESULTS.to_owned(), crlf(RESULTS)] {
            let m = run(
                Surface::Anthropic,
                Endpoint::BatchResults,
                false,
                &RequestFacts::default(),
                s.as_bytes(),
            );
            assert!(m.complete);
            assert!(m.usage.is_empty());
            assert_eq!(m.batch_items.len(), 2);
            let (model, u) = &m.batch_items[0];
            assert_eq!(model, "claude-sonnet-4-5-20250929");
            assert_eq!((u.input_uncached, u.output), (Some(10), Some(34)));
            assert_eq!(u.service_tier, Some(ServiceTier::Batch));
            assert_eq!(m.batch_items[1].0, "claude-haiku-4-5");
            assert_eq!(m.batch_items[1].1.service_tier, Some(ServiceTier::Batch));
        }
    }

    #[test]
    fn cut_last_line_is_incomplete() {
        let mut m = super::results_meter();
        m.observe(&RESULTS.as_bytes()[..RESULTS.len() - 20]);
        let r = m.finish();
        assert!(!r.complete);
        assert_eq!(r.batch_items.len(), 1);
    }
}
