//! Embeddings meter: `usage.prompt_tokens` of the JSON body is all that is billed.

use serde::Deserialize;

use super::{Tokens, WireUsage};
use crate::json::{parse, ErrorField, Str};
use crate::{BodyParser, Metered};

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct List<'a> {
    #[serde(borrow)]
    model: Str<'a>,
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
    error: ErrorField,
}

/// Non-stream body (embeddings never stream).
#[derive(Debug, Default)]
pub(crate) struct Body;

impl BodyParser for Body {
    fn parse(&self, body: &[u8]) -> Option<Metered> {
        let l: List = parse(body)?;
        let mut usage = l
            .usage
            .as_ref()
            .map(|u| Tokens::from_wire(u).to_usage())
            .unwrap_or_default();
        // Embeddings produce no output tokens; `total_tokens` equals `prompt_tokens`.
        usage.output = None;
        Some(Metered {
            usage,
            response_model: l.model.owned(),
            complete: true,
            incomplete_reason: l.error.reason(),
            ..Metered::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::run;
    use crate::RequestFacts;
    use meshgate_types::{Endpoint, Surface};

    #[test]
    fn prompt_tokens_are_input() {
        let body = r#"{"object":"list","model":"text-embedding-3-small",
 "data":[{"object":"embedding","index":0,"embedding":[0.0123,-0.0044]},
         {"object":"embedding","index":1,"embedding":"AAAAPwAAgD8="}],
 "usage":{"prompt_tokens":8,"total_tokens":8}}"#;
        let m = run(
            Surface::OpenAi,
            Endpoint::Embeddings,
            false,
            &RequestFacts::default(),
            body.as_bytes(),
        );
        assert!(m.complete);
        assert_eq!(m.response_model.as_deref(), Some("text-embedding-3-small"));
        assert_eq!(m.usage.input_uncached, Some(8));
        assert_eq!(m.usage.output, None);
        assert_eq!(m.usage.cache_read, None);
    }
}
