//! `Usage`: what one call consumed, normalised across providers. Every field is an
//! `Option`: a count the provider did not report is unknown, not zero.

use rust_decimal::Decimal;
use serde::{Deserialize, Serialize};

/// The service tier a call was billed at, as the provider reported it.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ServiceTier {
    #[default]
    Standard,
    Batch,
    Flex,
    Priority,
}

impl ServiceTier {
    /// Maps a provider's `service_tier` string (OpenAI response or Anthropic usage).
    /// `default`, `auto`, `standard` and unknown names are standard; `fast` is priority.
    pub fn from_provider(s: &str) -> ServiceTier {
        match s {
            "batch" => ServiceTier::Batch,
            "flex" => ServiceTier::Flex,
            "priority" | "fast" => ServiceTier::Priority,
            _ => ServiceTier::Standard,
        }
    }

    pub fn as_str(self) -> &'static str {
        match self {
            ServiceTier::Standard => "standard",
            ServiceTier::Batch => "batch",
            ServiceTier::Flex => "flex",
            ServiceTier::Priority => "priority",
        }
    }
}

/// Normalised usage of one call. Token classes are **disjoint** where they are billed:
/// `input_uncached + cache_read + cache_write_5m + cache_write_1h` is the whole prompt;
/// `output` is all output including `reasoning` (which is an informational subset).
/// `input_audio`/`input_image`/`output_audio`/`output_image` are subsets of input/output
/// for models that price modalities apart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Usage {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_uncached: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<u64>,
    /// Cache writes at the base write rate (Anthropic 5-minute, OpenAI 30-minute TTL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_5m: Option<u64>,
    /// Long-TTL cache writes (Anthropic 1-hour, OpenAI 12-hour TTL).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_1h: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub reasoning: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_image: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_image: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub web_search_requests: Option<u64>,
    /// Images returned (priced per image by model, size and quality).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub images: Option<u64>,
    /// Image size as `WxH` and quality, when images are priced per image.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_size: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub image_quality: Option<String>,
    /// Unicode scalar values of text-to-speech input.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub characters: Option<u64>,
    /// Seconds of audio (transcription, translation), exact as reported.
    #[serde(
        skip_serializing_if = "Option::is_none",
        default,
        with = "rust_decimal::serde::str_option"
    )]
    pub audio_seconds: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub service_tier: Option<ServiceTier>,
}

impl Usage {
    /// Total prompt tokens across cache classes; the figure long-context tiers compare.
    pub fn prompt_total(&self) -> u64 {
        [
            self.input_uncached,
            self.cache_read,
            self.cache_write_5m,
            self.cache_write_1h,
        ]
        .into_iter()
        .flatten()
        .fold(0u64, u64::saturating_add)
    }

    /// Whether the provider reported anything billable at all.
    pub fn is_empty(&self) -> bool {
        self.input_uncached.is_none()
            && self.cache_read.is_none()
            && self.cache_write_5m.is_none()
            && self.cache_write_1h.is_none()
            && self.output.is_none()
            && self.web_search_requests.is_none()
            && self.images.is_none()
            && self.characters.is_none()
            && self.audio_seconds.is_none()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompt_total_adds_disjoint_classes() {
        let u = Usage {
            input_uncached: Some(412),
            cache_read: Some(10240),
            cache_write_5m: Some(2048),
            ..Usage::default()
        };
        assert_eq!(u.prompt_total(), 12700);
        assert!(!u.is_empty());
        assert!(Usage::default().is_empty());
    }

    #[test]
    fn serialises_only_reported_fields() {
        let u = Usage {
            output: Some(3),
            audio_seconds: Some(Decimal::new(45, 1)),
            ..Usage::default()
        };
        let s = serde_json::to_string(&u).unwrap();
        assert_eq!(s, r#"{"output":3,"audio_seconds":"4.5"}"#);
        let back: Usage = serde_json::from_str(&s).unwrap();
        assert_eq!(back, u);
    }
}
