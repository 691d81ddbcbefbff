//! Usage objects across formats (translation.md §5), carrying the upstream's exact counts.
//!
//! AN counts are disjoint (`input_tokens` excludes both cache counts); OA's `prompt_tokens`
//! includes cached tokens. Counts the upstream did not report stay absent where the target
//! format allows it (OA details) and read as 0 where it requires a number.

use serde::Deserialize;

use super::value::{obj, Json};
use crate::json::Count;

/// AN usage, as reported (absent = `None`).
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct AnUsage {
    pub input: Option<u64>,
    pub cache_creation: Option<u64>,
    pub cache_read: Option<u64>,
    pub output: Option<u64>,
    pub thinking: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct AnWire {
    input_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
    output_tokens: Count,
    output_tokens_details: Option<AnOutputDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct AnOutputDetails {
    thinking_tokens: Count,
}

impl AnUsage {
    /// Overwrites every count `w` reports (AN stream usage is cumulative, anthropic-wire §6.1).
    pub(crate) fn merge(&mut self, w: &AnWire) {
        fn last(a: &mut Option<u64>, b: Count) {
            if b.0.is_some() {
                *a = b.0;
            }
        }
        last(&mut self.input, w.input_tokens);
        last(&mut self.cache_creation, w.cache_creation_input_tokens);
        last(&mut self.cache_read, w.cache_read_input_tokens);
        last(&mut self.output, w.output_tokens);
        if let Some(d) = &w.output_tokens_details {
            last(&mut self.thinking, d.thinking_tokens);
        }
    }

    pub(crate) fn from_json(v: &Json) -> AnUsage {
        let c = |k: &str| v.get(k).as_u64();
        AnUsage {
            input: c("input_tokens"),
            cache_creation: c("cache_creation_input_tokens"),
            cache_read: c("cache_read_input_tokens"),
            output: c("output_tokens"),
            thinking: v
                .get("output_tokens_details")
                .get("thinking_tokens")
                .as_u64(),
        }
    }

    /// The OA `usage` object.
    pub(crate) fn to_openai(self) -> Json {
        let read = self.cache_read.unwrap_or(0);
        let prompt = self.input.unwrap_or(0) + self.cache_creation.unwrap_or(0) + read;
        let completion = self.output.unwrap_or(0);
        let mut details = super::value::Object::new();
        details.insert("cached_tokens", read);
        if let Some(w) = self.cache_creation {
            details.insert("cache_write_tokens", w);
        }
        let mut u = super::value::Object::new();
        u.insert("prompt_tokens", prompt);
        u.insert("completion_tokens", completion);
        u.insert("total_tokens", prompt + completion);
        u.insert("prompt_tokens_details", details);
        if let Some(t) = self.thinking {
            u.insert(
                "completion_tokens_details",
                obj([("reasoning_tokens", t.into())]),
            );
        }
        Json::Object(u)
    }
}

/// OA usage, as reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct OaUsage {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub cached: Option<u64>,
    pub cache_write: Option<u64>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct OaWire {
    prompt_tokens: Count,
    completion_tokens: Count,
    prompt_tokens_details: Option<OaPromptDetails>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OaPromptDetails {
    cached_tokens: Count,
    cache_write_tokens: Count,
}

impl OaUsage {
    pub(crate) fn from_wire(w: &OaWire) -> OaUsage {
        let d = w.prompt_tokens_details.as_ref();
        OaUsage {
            prompt: w.prompt_tokens.0,
            completion: w.completion_tokens.0,
            cached: d.and_then(|d| d.cached_tokens.0),
            cache_write: d.and_then(|d| d.cache_write_tokens.0),
        }
    }

    pub(crate) fn from_json(v: &Json) -> OaUsage {
        let d = v.get("prompt_tokens_details");
        OaUsage {
            prompt: v.get("prompt_tokens").as_u64(),
            completion: v.get("completion_tokens").as_u64(),
            cached: d.get("cached_tokens").as_u64(),
            cache_write: d.get("cache_write_tokens").as_u64(),
        }
    }

    /// The AN `usage` object (all four counts, as `message_delta` and bodies carry them).
    pub(crate) fn to_anthropic(self) -> Json {
        let read = self.cached.unwrap_or(0);
        let write = self.cache_write.unwrap_or(0);
        let input = self
            .prompt
            .unwrap_or(0)
            .saturating_sub(read)
            .saturating_sub(write);
        obj([
            ("input_tokens", input.into()),
            ("cache_creation_input_tokens", write.into()),
            ("cache_read_input_tokens", read.into()),
            ("output_tokens", self.completion.unwrap_or(0).into()),
        ])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_ways() {
        let an = AnUsage {
            input: Some(412),
            cache_creation: Some(2048),
            cache_read: Some(10240),
            output: Some(87),
            thinking: None,
        };
        assert_eq!(
            an.to_openai().to_text(),
            r#"{"prompt_tokens":12700,"completion_tokens":87,"total_tokens":12787,"prompt_tokens_details":{"cached_tokens":10240,"cache_write_tokens":2048}}"#
        );
        let oa = OaUsage {
            prompt: Some(1850),
            completion: Some(240),
            cached: Some(1536),
            cache_write: None,
        };
        assert_eq!(
            oa.to_anthropic().to_text(),
            r#"{"input_tokens":314,"cache_creation_input_tokens":0,"cache_read_input_tokens":1536,"output_tokens":240}"#
        );
    }
}
