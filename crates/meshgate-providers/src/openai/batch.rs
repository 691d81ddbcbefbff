//! OpenAI Batch output files (JSONL): each line whose `response.status_code` is 2xx and whose
//! `response.body` has `usage` becomes a batch item billed at the Batch tier.

use meshgate_types::{ServiceTier, Usage};
use serde::Deserialize;

use super::{Tokens, WireUsage};
use crate::body::JsonlMeter;
use crate::json::{parse, Count, Str};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Line<'a> {
    #[serde(borrow)]
    response: Option<Response<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Response<'a> {
    status_code: Count,
    #[serde(borrow)]
    body: Option<Body<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Body<'a> {
    #[serde(borrow)]
    model: Str<'a>,
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
}

fn parse_line(line: &[u8]) -> Option<Option<(String, Usage)>> {
    let l: Line = parse(line)?;
    let item = l.response.and_then(|r| {
        let ok = matches!(r.status_code.0, Some(200..=299));
        let body = r.body.filter(|_| ok)?;
        let mut usage = Tokens::from_wire(body.usage.as_ref()?).to_usage();
        usage.service_tier = Some(ServiceTier::Batch);
        Some((body.model.owned().unwrap_or_default(), usage))
    });
    Some(item)
}

/// The meter of a batch output file (`GET /v1/files/{id}/content`).
pub(crate) fn output_meter() -> JsonlMeter {
    JsonlMeter::new(parse_line)
}

#[cfg(test)]
mod tests {
    use crate::testutil::run;
    use crate::RequestFacts;
    use meshgate_types::{Endpoint, ServiceTier, Surface};

    #[test]
    fn succeeded_lines_become_items() {
        let jsonl = concat!(
            "{\"id\":\"batch_req_1\",\"custom_id\":\"r1\",\"response\":{\"status_code\":200,\"request_id\":\"req_1\",\"body\":{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion\",\"model\":\"gpt-4o-mini-2024-07-18\",\"choices\":[{\"index\":0,\"message\":{\"role\":\"assistant\",\"content\":\"h\u{e9}llo\"},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":20,\"completion_tokens\":5,\"prompt_tokens_details\":{\"cached_tokens\":0,\"audio_tokens\":0}}}},\"error\":null}\n",
            "{\"id\":\"batch_req_2\",\"custom_id\":\"r2\",\"response\":{\"status_code\":400,\"body\":{\"error\":{\"message\":\"bad\"}}},\"error\":null}\n",
            "{\"id\":\"batch_req_3\",\"custom_id\":\"r3\",\"response\":null,\"error\":{\"code\":\"batch_expired\",\"message\":\"expired\"}}\n",
            "{\"id\":\"batch_req_4\",\"custom_id\":\"r4\",\"response\":{\"status_code\":200,\"body\":{\"object\":\"list\",\"model\":\"text-embedding-3-small\",\"usage\":{\"prompt_tokens\":8,\"total_tokens\":8}}}}",
        );
        let m = run(
            Surface::OpenAi,
            Endpoint::BatchResults,
            false,
            &RequestFacts::default(),
            jsonl.as_bytes(),
        );
        assert!(m.complete);
        assert_eq!(m.batch_items.len(), 2);
        let (model, u) = &m.batch_items[0];
        assert_eq!(model, "gpt-4o-mini-2024-07-18");
        assert_eq!(
            (u.input_uncached, u.cache_read, u.output),
            (Some(20), Some(0), Some(5))
        );
        assert_eq!(u.service_tier, Some(ServiceTier::Batch));
        assert_eq!(m.batch_items[1].1.input_uncached, Some(8));
        assert!(m.usage.is_empty());
    }
}
