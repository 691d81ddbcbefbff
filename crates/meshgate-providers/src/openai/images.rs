//! Images meters (generations, edits, variations).
//!
//! Mapping (GPT image models report token usage; dall-e reports none):
//! - `input_uncached` = `usage.input_tokens` (text + image input, less any cached tokens),
//!   `input_image` = `input_tokens_details.image_tokens` (a subset of it);
//! - `output` = `usage.output_tokens`, `output_image` = `output_tokens_details.image_tokens`,
//!   or all of `output_tokens` when no details are given (GPT image output is image tokens);
//! - `images` = `len(data)` (stream: the number of `*.completed` events);
//! - `image_size` / `image_quality` = the response's echo (what was billed for `auto`), else
//!   the request's.
//!
//! A body over the cap is not parsed; then `images` falls back to the request's `n` (default
//! 1) with the request's size and quality, and `complete` is false.

use serde::Deserialize;

use super::{Tokens, WireUsage};
use crate::json::{parse, pattern, ErrorField, Len, Str};
use crate::sse::SseSink;
use crate::{BodyParser, Metered, RequestFacts, StreamState};
use meshgate_types::Usage;

pattern!(GEN_DONE, "\"image_generation.completed\"");
pattern!(EDIT_DONE, "\"image_edit.completed\"");
pattern!(ERROR, "\"error\"");

/// Request facts the images meters fall back on.
#[derive(Debug, Clone, Default)]
struct Requested {
    n: Option<u64>,
    size: Option<String>,
    quality: Option<String>,
}

impl Requested {
    fn new(facts: &RequestFacts) -> Self {
        Requested {
            n: facts.image_n,
            size: facts.image_size.clone(),
            quality: facts.image_quality.clone(),
        }
    }
}

/// The usage of `tokens` (when reported) plus the per-image units.
fn image_usage(
    tokens: Option<&Tokens>,
    images: Option<u64>,
    size: Option<String>,
    quality: Option<String>,
) -> Usage {
    let mut u = tokens.map(Tokens::to_usage).unwrap_or_default();
    if u.output_image.is_none() {
        u.output_image = u.output;
    }
    u.images = images;
    if images.is_some() {
        u.image_size = size;
        u.image_quality = quality;
    }
    u
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ImagesBody<'a> {
    #[serde(borrow)]
    model: Str<'a>,
    data: Len,
    #[serde(borrow)]
    size: Str<'a>,
    #[serde(borrow)]
    quality: Str<'a>,
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
    error: ErrorField,
}

/// Non-stream body.
#[derive(Debug)]
pub(crate) struct Body {
    req: Requested,
}

impl Body {
    pub(crate) fn new(facts: &RequestFacts) -> Self {
        Body {
            req: Requested::new(facts),
        }
    }
}

impl BodyParser for Body {
    fn parse(&self, body: &[u8]) -> Option<Metered> {
        let b: ImagesBody = parse(body)?;
        let tokens = b.usage.as_ref().map(Tokens::from_wire);
        let usage = image_usage(
            tokens.as_ref(),
            b.data.0,
            b.size.owned().or_else(|| self.req.size.clone()),
            b.quality.owned().or_else(|| self.req.quality.clone()),
        );
        Some(Metered {
            usage,
            response_model: b.model.owned(),
            complete: true,
            incomplete_reason: b.error.reason(),
            ..Metered::default()
        })
    }

    fn too_large(&self) -> Metered {
        Metered {
            usage: image_usage(
                None,
                Some(self.req.n.unwrap_or(1)),
                self.req.size.clone(),
                self.req.quality.clone(),
            ),
            ..Metered::default()
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    size: Str<'a>,
    #[serde(borrow)]
    quality: Str<'a>,
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
    #[serde(borrow)]
    message: Str<'a>,
    error: ErrorField,
}

/// Stream state (`stream: true`): `image_generation.*` / `image_edit.*` events.
#[derive(Debug)]
pub(crate) struct Stream {
    req: Requested,
    tokens: Option<Tokens>,
    completed: u64,
    size: Option<String>,
    quality: Option<String>,
    error: Option<String>,
}

impl Stream {
    pub(crate) fn new(facts: &RequestFacts) -> Self {
        Stream {
            req: Requested::new(facts),
            tokens: None,
            completed: 0,
            size: None,
            quality: None,
            error: None,
        }
    }
}

impl SseSink for Stream {
    fn wants(&self, event: &[u8]) -> bool {
        event.ends_with(b".completed") || event == b"error"
    }

    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        if event.is_empty()
            && !(GEN_DONE.value_present(data)
                || EDIT_DONE.value_present(data)
                || ERROR.value_present(data)
                || ERROR.key_non_null(data))
        {
            return;
        }
        let Some(ev) = parse::<Event>(data) else {
            return;
        };
        let kind = ev.kind.event_type(event);
        if kind.ends_with(b".completed") {
            self.completed += 1;
            if let Some(u) = &ev.usage {
                self.tokens
                    .get_or_insert_with(Tokens::default)
                    .merge(Tokens::from_wire(u));
            }
            if let Some(s) = ev.size.owned() {
                self.size = Some(s);
            }
            if let Some(q) = ev.quality.owned() {
                self.quality = Some(q);
            }
        } else if (kind == b"error" || ev.error.present) && self.error.is_none() {
            self.error = Some(
                ev.message
                    .owned()
                    .or(ev.error.message)
                    .unwrap_or_else(|| "upstream error".to_owned()),
            );
        }
    }
}

impl StreamState for Stream {
    fn report(&self) -> Metered {
        let images = (self.completed > 0).then_some(self.completed);
        Metered {
            usage: image_usage(
                self.tokens.as_ref(),
                images,
                self.size.clone().or_else(|| self.req.size.clone()),
                self.quality.clone().or_else(|| self.req.quality.clone()),
            ),
            response_model: None,
            complete: self.error.is_none() && self.completed >= self.req.n.unwrap_or(1).max(1),
            incomplete_reason: self.error.clone(),
            ..Metered::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{crlf, run};
    use crate::{Metered, RequestFacts};
    use meshgate_types::{Endpoint, Surface};

    fn facts(n: u64) -> RequestFacts {
        RequestFacts {
            model: Some("gpt-image-1".into()),
            image_n: Some(n),
            image_size: Some("auto".into()),
            image_quality: Some("auto".into()),
            ..RequestFacts::default()
        }
    }

    fn body(endpoint: Endpoint, facts: &RequestFacts, b: &str) -> Metered {
        run(Surface::OpenAi, endpoint, false, facts, b.as_bytes())
    }

    #[test]
    fn gpt_image_body() {
        let b = r#"{"created":1760000000,"background":"opaque","output_format":"png","quality":"high","size":"1024x1024",
 "data":[{"b64_json":"iVBORw0..."}],
 "usage":{"input_tokens":50,"input_tokens_details":{"text_tokens":40,"image_tokens":10},
          "output_tokens":4160,"total_tokens":4210,
          "output_tokens_details":{"text_tokens":0,"image_tokens":4160}}}"#;
        let m = body(Endpoint::ImagesEdits, &facts(1), b);
        assert!(m.complete);
        let u = &m.usage;
        assert_eq!((u.input_uncached, u.input_image), (Some(50), Some(10)));
        assert_eq!((u.output, u.output_image), (Some(4160), Some(4160)));
        assert_eq!(u.images, Some(1));
        assert_eq!(u.image_size.as_deref(), Some("1024x1024"));
        assert_eq!(u.image_quality.as_deref(), Some("high"));

        let no_details = r#"{"data":[{"b64_json":"a"},{"b64_json":"b"}],"usage":{"input_tokens":20,"output_tokens":272}}"#;
        let u = body(Endpoint::ImagesGenerations, &facts(2), no_details).usage;
        assert_eq!(
            (u.output, u.output_image, u.images),
            (Some(272), Some(272), Some(2))
        );
        assert_eq!(u.image_size.as_deref(), Some("auto"));
    }

    #[test]
    fn dalle_body_uses_request_size() {
        let f = RequestFacts {
            image_n: Some(1),
            image_size: Some("1024x1792".into()),
            image_quality: Some("hd".into()),
            ..RequestFacts::default()
        };
        let b =
            r#"{"created":1760000000,"data":[{"url":"https://x/y.png","revised_prompt":"A cat"}]}"#;
        let m = body(Endpoint::ImagesGenerations, &f, b);
        let u = &m.usage;
        assert_eq!(
            (u.images, u.input_uncached, u.output),
            (Some(1), None, None)
        );
        assert_eq!(u.image_size.as_deref(), Some("1024x1792"));
        assert_eq!(u.image_quality.as_deref(), Some("hd"));
        let m = body(Endpoint::ImagesVariations, &f, r#"{"data":[]}"#);
        assert_eq!(m.usage.images, Some(0));
    }

    #[test]
    fn too_large_falls_back_on_request() {
        use crate::{BodyMeter, Meter};
        let mut m = BodyMeter::with_cap(super::Body::new(&facts(3)), 8);
        m.observe(b"{\"data\":[{\"b64_json\":\"....\"}]}");
        let r = m.finish();
        assert!(!r.complete);
        assert_eq!(r.usage.images, Some(3));
        assert_eq!(r.usage.image_size.as_deref(), Some("auto"));
    }

    #[test]
    fn stream_counts_completed_events() {
        let s = concat!(
            "event: image_generation.partial_image\n",
            "data: {\"type\":\"image_generation.partial_image\",\"b64_json\":\"QUFB\",\"partial_image_index\":0,\"size\":\"1024x1536\"}\n\n",
            "event: image_generation.completed\n",
            "data: {\"type\":\"image_generation.completed\",\"b64_json\":\"QkJC\",\"size\":\"1024x1536\",\"quality\":\"medium\",\"background\":\"opaque\",\"output_format\":\"png\",",
            "\"usage\":{\"input_tokens\":50,\"input_tokens_details\":{\"text_tokens\":50,\"image_tokens\":0},\"output_tokens\":1056,\"total_tokens\":1106}}\n\n",
        );
        for s in [
            s.to_owned(),
            crlf(s),
            s.replace("event: image_generation.completed\n", ""),
        ] {
            let m = run(
                Surface::OpenAi,
                Endpoint::ImagesGenerations,
                true,
                &facts(1),
                s.as_bytes(),
            );
            assert!(m.complete);
            let u = &m.usage;
            assert_eq!(u.images, Some(1));
            assert_eq!((u.input_uncached, u.input_image), (Some(50), Some(0)));
            assert_eq!((u.output, u.output_image), (Some(1056), Some(1056)));
            assert_eq!(u.image_size.as_deref(), Some("1024x1536"));
            assert_eq!(u.image_quality.as_deref(), Some("medium"));
        }
        let edit = "event: image_edit.completed\ndata: {\"type\":\"image_edit.completed\",\"b64_json\":\"x\",\"usage\":{\"input_tokens\":1,\"output_tokens\":2}}\n\n";
        let m = run(
            Surface::OpenAi,
            Endpoint::ImagesEdits,
            true,
            &facts(2),
            edit.as_bytes(),
        );
        assert!(!m.complete, "one of two images");
        assert_eq!(m.usage.images, Some(1));
        let err = "event: error\ndata: {\"type\":\"error\",\"error\":{\"message\":\"moderation_blocked\"}}\n\n";
        let m = run(
            Surface::OpenAi,
            Endpoint::ImagesEdits,
            true,
            &facts(1),
            err.as_bytes(),
        );
        assert_eq!(m.incomplete_reason.as_deref(), Some("moderation_blocked"));
        assert_eq!(m.usage.images, None);
    }
}
