//! OpenAI meters and the usage shapes they share.
//!
//! OpenAI names the same counts two ways (`prompt_tokens`/`completion_tokens` on Chat and
//! embeddings, `input_tokens`/`output_tokens` on Responses, images and audio) and its counts are
//! **inclusive**: cached and cache-write tokens are inside the prompt total, reasoning inside the
//! completion total, modality details are subsets. [`WireUsage`] reads both namings; [`Tokens`]
//! keeps each reported count so a later report overwrites field by field; [`Tokens::to_usage`]
//! makes the disjoint [`Usage`] classes.

pub(crate) mod audio;
pub(crate) mod batch;
pub(crate) mod chat;
pub(crate) mod embeddings;
pub(crate) mod images;
pub(crate) mod responses;

use meshgate_types::{ServiceTier, Usage};
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use crate::json::{exact_decimal, Count, Str};

/// A usage object as any OpenAI endpoint sends it.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
pub(crate) struct WireUsage<'a> {
    prompt_tokens: Count,
    completion_tokens: Count,
    input_tokens: Count,
    output_tokens: Count,
    #[serde(alias = "input_tokens_details", alias = "input_token_details")]
    prompt_tokens_details: Option<InDetails>,
    #[serde(alias = "output_tokens_details", alias = "output_token_details")]
    completion_tokens_details: Option<OutDetails>,
    /// Transcription usage: `tokens` or `duration`.
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    seconds: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct InDetails {
    cached_tokens: Count,
    cache_write_tokens: Count,
    cache_write_tokens_details: Option<TtlDetails>,
    audio_tokens: Count,
    image_tokens: Count,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct TtlDetails {
    ttl_30m_tokens: Count,
    ttl_12h_tokens: Count,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct OutDetails {
    reasoning_tokens: Count,
    audio_tokens: Count,
    image_tokens: Count,
}

/// Every count an OpenAI usage object reported, as reported (inclusive totals).
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub(crate) struct Tokens {
    pub prompt: Option<u64>,
    pub completion: Option<u64>,
    pub cached: Option<u64>,
    pub cache_write: Option<u64>,
    pub ttl_30m: Option<u64>,
    pub ttl_12h: Option<u64>,
    pub input_audio: Option<u64>,
    pub input_image: Option<u64>,
    pub reasoning: Option<u64>,
    pub output_audio: Option<u64>,
    pub output_image: Option<u64>,
    pub seconds: Option<Decimal>,
}

impl Tokens {
    pub(crate) fn from_wire(w: &WireUsage<'_>) -> Tokens {
        let din = w.prompt_tokens_details.as_ref();
        let ttl = din.and_then(|d| d.cache_write_tokens_details.as_ref());
        let dout = w.completion_tokens_details.as_ref();
        let duration = w.kind.is("duration");
        Tokens {
            prompt: w.prompt_tokens.0.or(w.input_tokens.0),
            completion: w.completion_tokens.0.or(w.output_tokens.0),
            cached: din.and_then(|d| d.cached_tokens.0),
            cache_write: din.and_then(|d| d.cache_write_tokens.0),
            ttl_30m: ttl.and_then(|t| t.ttl_30m_tokens.0),
            ttl_12h: ttl.and_then(|t| t.ttl_12h_tokens.0),
            input_audio: din.and_then(|d| d.audio_tokens.0),
            input_image: din.and_then(|d| d.image_tokens.0),
            reasoning: dout.and_then(|d| d.reasoning_tokens.0),
            output_audio: dout.and_then(|d| d.audio_tokens.0),
            output_image: dout.and_then(|d| d.image_tokens.0),
            seconds: if duration || w.kind.get().is_none() {
                exact_decimal(w.seconds)
            } else {
                None
            },
        }
    }

    /// Overwrites every count `newer` reports; keeps the others.
    pub(crate) fn merge(&mut self, newer: Tokens) {
        fn last<T>(a: &mut Option<T>, b: Option<T>) {
            if b.is_some() {
                *a = b;
            }
        }
        last(&mut self.prompt, newer.prompt);
        last(&mut self.completion, newer.completion);
        last(&mut self.cached, newer.cached);
        last(&mut self.cache_write, newer.cache_write);
        last(&mut self.ttl_30m, newer.ttl_30m);
        last(&mut self.ttl_12h, newer.ttl_12h);
        last(&mut self.input_audio, newer.input_audio);
        last(&mut self.input_image, newer.input_image);
        last(&mut self.reasoning, newer.reasoning);
        last(&mut self.output_audio, newer.output_audio);
        last(&mut self.output_image, newer.output_image);
        last(&mut self.seconds, newer.seconds);
    }

    /// The disjoint classes: `input_uncached = prompt − cached − cache writes` (clamped at 0;
    /// cached and writes clamped to the prompt first), `output = completion`, modality details
    /// copied as subsets (never subtracted). Unreported counts stay `None`.
    pub(crate) fn to_usage(&self) -> Usage {
        let (w5, w1) = match self.cache_write {
            Some(total) => {
                let long = self.ttl_12h.map(|t| t.min(total));
                (Some(total - long.unwrap_or(0)), long)
            }
            None => (self.ttl_30m, self.ttl_12h),
        };
        let (uncached, read, w5, w1) = match self.prompt {
            Some(p) => {
                let mut left = p;
                let mut take = |v: Option<u64>| {
                    v.map(|v| {
                        let v = v.min(left);
                        left -= v;
                        v
                    })
                };
                let read = take(self.cached);
                let w5 = take(w5);
                let w1 = take(w1);
                (Some(left), read, w5, w1)
            }
            None => (None, self.cached, w5, w1),
        };
        Usage {
            input_uncached: uncached,
            cache_read: read,
            cache_write_5m: w5,
            cache_write_1h: w1,
            output: self.completion,
            reasoning: self.reasoning,
            input_audio: self.input_audio,
            input_image: self.input_image,
            output_audio: self.output_audio,
            output_image: self.output_image,
            audio_seconds: self.seconds,
            ..Usage::default()
        }
    }
}

/// The tier a response's `service_tier` names.
pub(crate) fn tier(s: &Str<'_>) -> Option<ServiceTier> {
    s.get().map(ServiceTier::from_provider)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::json::parse;

    fn usage(json: &str) -> Usage {
        let w: WireUsage = parse(json.as_bytes()).unwrap();
        Tokens::from_wire(&w).to_usage()
    }

    #[test]
    fn audio_zero_beside_cached_keeps_uncached_input() {
        let u = usage(
            r#"{"prompt_tokens":1850,"completion_tokens":240,"total_tokens":2090,
               "prompt_tokens_details":{"cached_tokens":1536,"audio_tokens":0},
               "completion_tokens_details":{"reasoning_tokens":0,"audio_tokens":0,
                 "accepted_prediction_tokens":0,"rejected_prediction_tokens":0}}"#,
        );
        assert_eq!(u.input_uncached, Some(314));
        assert_eq!(u.cache_read, Some(1536));
        assert_eq!(u.input_audio, Some(0));
        assert_eq!(u.output, Some(240));
        assert_eq!(u.reasoning, Some(0));
        assert_eq!(u.output_audio, Some(0));
        assert_eq!(u.cache_write_5m, None);
        assert_eq!(u.prompt_total(), 1850);
    }

    #[test]
    fn cache_writes_split_by_ttl_and_clamp() {
        let u = usage(
            r#"{"input_tokens":1000,"output_tokens":5,"input_tokens_details":{"cached_tokens":100,
               "cache_write_tokens":300,"cache_write_tokens_details":{"ttl_30m_tokens":100,"ttl_12h_tokens":200}}}"#,
        );
        assert_eq!(
            (
                u.input_uncached,
                u.cache_read,
                u.cache_write_5m,
                u.cache_write_1h
            ),
            (Some(600), Some(100), Some(100), Some(200))
        );
        let u = usage(r#"{"prompt_tokens":10,"prompt_tokens_details":{"cached_tokens":12}}"#);
        assert_eq!(
            (u.input_uncached, u.cache_read, u.output),
            (Some(0), Some(10), None)
        );
        let u = usage(r#"{"prompt_tokens":null,"prompt_tokens_details":null}"#);
        assert_eq!(u, Usage::default());
    }

    #[test]
    fn durations_are_exact() {
        let u = usage(r#"{"type":"duration","seconds":4.25}"#);
        assert_eq!(u.audio_seconds, Some(Decimal::new(425, 2)));
        assert!(u.input_uncached.is_none());
    }
}
