//! Anthropic meters and the usage shape they share.
//!
//! Anthropic counts are **disjoint**: `input_tokens` excludes both cache counts. [`Tokens`]
//! keeps each reported count so a later (cumulative) report overwrites field by field, per
//! anthropic-wire.md §6.1; [`Tokens::to_usage`] splits cache writes by TTL.

pub(crate) mod batches;
pub(crate) mod complete;
pub(crate) mod messages;

use meshgate_types::{ServiceTier, Usage};
use serde::Deserialize;

use crate::json::{Count, Str};

/// A usage object as Anthropic sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireUsage<'a> {
    input_tokens: Count,
    cache_creation_input_tokens: Count,
    cache_read_input_tokens: Count,
    cache_creation: Option<CacheCreation>,
    output_tokens: Count,
    output_tokens_details: Option<OutputDetails>,
    server_tool_use: Option<ServerToolUse>,
    #[serde(borrow)]
    service_tier: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct CacheCreation {
    ephemeral_5m_input_tokens: Count,
    ephemeral_1h_input_tokens: Count,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutputDetails {
    thinking_tokens: Count,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ServerToolUse {
    web_search_requests: Count,
}

/// Every count reported so far, as reported.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tokens {
    input: Option<u64>,
    cache_creation: Option<u64>,
    cache_read: Option<u64>,
    /// The TTL split of cache writes, from the last report that had one.
    split_5m: Option<u64>,
    split_1h: Option<u64>,
    output: Option<u64>,
    thinking: Option<u64>,
    web_search: Option<u64>,
    tier: Option<ServiceTier>,
}

impl Tokens {
    /// Overwrites every count `w` reports (present and non-null); keeps the others.
    pub(crate) fn merge(&mut self, w: &WireUsage<'_>) {
        fn last(a: &mut Option<u64>, b: Count) {
            if b.0.is_some() {
                *a = b.0;
            }
        }
        last(&mut self.input, w.input_tokens);
        last(&mut self.cache_creation, w.cache_creation_input_tokens);
        last(&mut self.cache_read, w.cache_read_input_tokens);
        if let Some(c) = &w.cache_creation {
            if c.ephemeral_5m_input_tokens.0.is_some() || c.ephemeral_1h_input_tokens.0.is_some() {
                self.split_5m = c.ephemeral_5m_input_tokens.0;
                self.split_1h = c.ephemeral_1h_input_tokens.0;
            }
        }
        last(&mut self.output, w.output_tokens);
        if let Some(d) = &w.output_tokens_details {
            last(&mut self.thinking, d.thinking_tokens);
        }
        if let Some(s) = &w.server_tool_use {
            last(&mut self.web_search, s.web_search_requests);
        }
        if let Some(t) = w.service_tier.get() {
            self.tier = Some(ServiceTier::from_provider(t));
        }
    }

    /// `input_uncached = input_tokens`, `cache_read = cache_read_input_tokens`, cache writes
    /// split by the TTL split (no split → all 5m; a total that moved since the split was given
    /// puts the difference on 5m), `output = output_tokens`, `reasoning = thinking_tokens`,
    /// `web_search_requests = server_tool_use.web_search_requests`.
    pub(crate) fn to_usage(&self) -> Usage {
        let has_split = self.split_5m.is_some() || self.split_1h.is_some();
        let (w5, w1) = match (self.cache_creation, has_split) {
            (total, false) => (total, None),
            (None, true) => (self.split_5m, self.split_1h),
            (Some(total), true) => {
                let s5 = self.split_5m.unwrap_or(0);
                let s1 = self.split_1h.unwrap_or(0);
                if total >= s5.saturating_add(s1) {
                    (Some(total - s1), Some(s1))
                } else {
                    let w1 = s1.min(total);
                    (Some(total - w1), Some(w1))
                }
            }
        };
        Usage {
            input_uncached: self.input,
            cache_read: self.cache_read,
            cache_write_5m: w5,
            cache_write_1h: w1,
            output: self.output,
            reasoning: self.thinking,
            web_search_requests: self.web_search,
            service_tier: self.tier,
            ..Usage::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn tokens(reports: &[&str]) -> Usage {
        let mut t = Tokens::default();
        for r in reports {
            t.merge(&parse::<WireUsage>(r.as_bytes()).unwrap());
        }
        t.to_usage()
    }

    #[test]
    fn body_usage() {
        let u = tokens(&[
            r#"{"input_tokens":412,"cache_creation_input_tokens":2048,"cache_read_input_tokens":10240,
   "cache_creation":{"ephemeral_5m_input_tokens":2048,"ephemeral_1h_input_tokens":0},
   "output_tokens":87,"server_tool_use":{"web_search_requests":0,"web_fetch_requests":0},
   "service_tier":"standard"}"#,
        ]);
        assert_eq!(u.input_uncached, Some(412));
        assert_eq!(u.cache_read, Some(10240));
        assert_eq!((u.cache_write_5m, u.cache_write_1h), (Some(2048), Some(0)));
        assert_eq!(u.output, Some(87));
        assert_eq!(u.web_search_requests, Some(0));
        assert_eq!(u.service_tier, Some(ServiceTier::Standard));
        assert_eq!(u.prompt_total(), 412 + 2048 + 10240);
    }

    #[test]
    fn split_and_difference_rule() {
        let start = r#"{"input_tokens":10,"cache_creation_input_tokens":300,"cache_creation":{"ephemeral_5m_input_tokens":100,"ephemeral_1h_input_tokens":200},"output_tokens":1}"#;
        let u = tokens(&[
            start,
            r#"{"output_tokens":50,"cache_creation_input_tokens":350}"#,
        ]);
        assert_eq!((u.cache_write_5m, u.cache_write_1h), (Some(150), Some(200)));
        let u = tokens(&[
            start,
            r#"{"output_tokens":50,"cache_creation_input_tokens":150}"#,
        ]);
        assert_eq!((u.cache_write_5m, u.cache_write_1h), (Some(0), Some(150)));
        let u = tokens(&[r#"{"cache_creation_input_tokens":70}"#]);
        assert_eq!((u.cache_write_5m, u.cache_write_1h), (Some(70), None));
        let u = tokens(&[r#"{"cache_creation_input_tokens":null,"cache_read_input_tokens":null}"#]);
        assert_eq!(u, Usage::default());
    }
}
