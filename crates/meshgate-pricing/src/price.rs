//! `ModelPrice`: the rates of one model from one source, effective from a date, and how a
//! service tier and a long prompt choose among them (`ModelPrice::rates_for`).

use chrono::NaiveDate;
use meshgate_types::ServiceTier;
use rust_decimal::Decimal;
use serde::{Serialize, Serializer};
use std::collections::BTreeMap;
use std::fmt;
use std::path::{Path, PathBuf};

/// The image size assumed when a request leaves it out or asks for `auto` (the API default
/// of dall-e-2, dall-e-3 and the square choice of GPT image models).
pub const DEFAULT_IMAGE_SIZE: &str = "1024x1024";

/// The qualities tried, in order, when a request leaves quality out or asks for `auto`:
/// `standard` (dall-e's default), then `medium` (the middle rung of GPT image models).
pub const DEFAULT_IMAGE_QUALITIES: [&str; 2] = ["standard", "medium"];

/// Where a price came from; part of [`ModelPrice::id`].
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize)]
#[serde(tag = "kind", content = "path", rename_all = "snake_case")]
pub enum PriceSource {
    /// The table compiled into meshgate (`src/builtin.toml`).
    Builtin,
    /// A pricing file in meshgate's TOML format.
    TomlFile(PathBuf),
    /// A LiteLLM `model_prices_and_context_window.json` file.
    LiteLlmFile(PathBuf),
}

impl PriceSource {
    fn file_name(path: &Path) -> String {
        path.file_name()
            .map(|n| n.to_string_lossy().into_owned())
            .unwrap_or_else(|| path.display().to_string())
    }
}

impl fmt::Display for PriceSource {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            PriceSource::Builtin => write!(f, "built-in table"),
            PriceSource::TomlFile(p) => write!(f, "TOML pricing file {}", p.display()),
            PriceSource::LiteLlmFile(p) => write!(f, "LiteLLM pricing file {}", p.display()),
        }
    }
}

/// What kind of endpoint a model serves (LiteLLM's `mode`).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub enum Mode {
    #[default]
    Chat,
    Responses,
    Completion,
    Embedding,
    ImageGeneration,
    ImageEdit,
    AudioSpeech,
    AudioTranscription,
    Realtime,
    Moderation,
    Rerank,
    /// Any other LiteLLM mode, kept by name.
    Other(String),
}

impl Mode {
    pub fn parse(s: &str) -> Mode {
        match s {
            "chat" => Mode::Chat,
            "responses" => Mode::Responses,
            "completion" => Mode::Completion,
            "embedding" => Mode::Embedding,
            "image_generation" => Mode::ImageGeneration,
            "image_edit" => Mode::ImageEdit,
            "audio_speech" => Mode::AudioSpeech,
            "audio_transcription" => Mode::AudioTranscription,
            "realtime" => Mode::Realtime,
            "moderation" => Mode::Moderation,
            "rerank" => Mode::Rerank,
            other => Mode::Other(other.to_string()),
        }
    }

    pub fn as_str(&self) -> &str {
        match self {
            Mode::Chat => "chat",
            Mode::Responses => "responses",
            Mode::Completion => "completion",
            Mode::Embedding => "embedding",
            Mode::ImageGeneration => "image_generation",
            Mode::ImageEdit => "image_edit",
            Mode::AudioSpeech => "audio_speech",
            Mode::AudioTranscription => "audio_transcription",
            Mode::Realtime => "realtime",
            Mode::Moderation => "moderation",
            Mode::Rerank => "rerank",
            Mode::Other(s) => s,
        }
    }
}

impl fmt::Display for Mode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Serialize for Mode {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

/// The token classes a price may rate apart.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TokenClass {
    Input,
    Output,
    CacheRead,
    /// Base-TTL cache writes (Anthropic 5 minutes, OpenAI 30 minutes).
    CacheWrite,
    /// Long-TTL cache writes (Anthropic 1 hour, OpenAI 12 hours).
    CacheWriteLong,
    InputAudio,
    OutputAudio,
    InputImage,
    OutputImage,
}

impl TokenClass {
    pub const ALL: [TokenClass; 9] = [
        TokenClass::Input,
        TokenClass::Output,
        TokenClass::CacheRead,
        TokenClass::CacheWrite,
        TokenClass::CacheWriteLong,
        TokenClass::InputAudio,
        TokenClass::OutputAudio,
        TokenClass::InputImage,
        TokenClass::OutputImage,
    ];

    /// A human label ("cache read").
    pub fn label(self) -> &'static str {
        match self {
            TokenClass::Input => "input",
            TokenClass::Output => "output",
            TokenClass::CacheRead => "cache read",
            TokenClass::CacheWrite => "cache write",
            TokenClass::CacheWriteLong => "cache write (long TTL)",
            TokenClass::InputAudio => "input audio",
            TokenClass::OutputAudio => "output audio",
            TokenClass::InputImage => "input image",
            TokenClass::OutputImage => "output image",
        }
    }
}

/// USD per token for each token class; `None` = not listed (see the fallbacks in
/// [`crate::cost`]), `Some(0)` = free. Used for the standard tier, each service tier and each
/// long-context tier.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct TokenRates {
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_read: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub cache_write_long: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_audio: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_audio: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub input_image: Option<Decimal>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub output_image: Option<Decimal>,
}

impl TokenRates {
    pub fn get(&self, class: TokenClass) -> Option<Decimal> {
        match class {
            TokenClass::Input => self.input,
            TokenClass::Output => self.output,
            TokenClass::CacheRead => self.cache_read,
            TokenClass::CacheWrite => self.cache_write,
            TokenClass::CacheWriteLong => self.cache_write_long,
            TokenClass::InputAudio => self.input_audio,
            TokenClass::OutputAudio => self.output_audio,
            TokenClass::InputImage => self.input_image,
            TokenClass::OutputImage => self.output_image,
        }
    }

    pub fn slot(&mut self, class: TokenClass) -> &mut Option<Decimal> {
        match class {
            TokenClass::Input => &mut self.input,
            TokenClass::Output => &mut self.output,
            TokenClass::CacheRead => &mut self.cache_read,
            TokenClass::CacheWrite => &mut self.cache_write,
            TokenClass::CacheWriteLong => &mut self.cache_write_long,
            TokenClass::InputAudio => &mut self.input_audio,
            TokenClass::OutputAudio => &mut self.output_audio,
            TokenClass::InputImage => &mut self.input_image,
            TokenClass::OutputImage => &mut self.output_image,
        }
    }

    /// True when no class has a rate.
    pub fn is_empty(&self) -> bool {
        TokenClass::ALL.iter().all(|c| self.get(*c).is_none())
    }
}

/// Rates that replace the standard ones when the whole prompt exceeds `above_tokens`
/// (compared with `>` against [`meshgate_types::Usage::prompt_total`]).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize)]
pub struct LongContext {
    pub above_tokens: u64,
    pub rates: TokenRates,
    pub batch: TokenRates,
    pub flex: TokenRates,
    pub priority: TokenRates,
}

impl LongContext {
    fn tier(&self, tier: ServiceTier) -> &TokenRates {
        match tier {
            ServiceTier::Standard => &self.rates,
            ServiceTier::Batch => &self.batch,
            ServiceTier::Flex => &self.flex,
            ServiceTier::Priority => &self.priority,
        }
    }
}

/// Per-image prices by `(quality, size)`; `"*"` in either place matches anything. Sizes are
/// stored as `WxH`; `per_pixel` prices a size the table lacks as `W × H × per_pixel`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImagePrices {
    table: BTreeMap<(String, String), Decimal>,
    pub per_pixel: Option<Decimal>,
}

impl ImagePrices {
    /// Normalises `1024-x-1536`, `1024X1536`, ` 1024x1536 ` to `1024x1536`.
    pub fn normalize_size(size: &str) -> String {
        size.trim().to_ascii_lowercase().replace("-x-", "x")
    }

    fn normalize_quality(quality: &str) -> String {
        quality.trim().to_ascii_lowercase()
    }

    /// Sets the price of one image of `quality` (or `"*"`) and `size` (or `"*"`).
    pub fn insert(&mut self, quality: &str, size: &str, price: Decimal) {
        let size = if size == "*" {
            size.to_string()
        } else {
            Self::normalize_size(size)
        };
        self.table
            .insert((Self::normalize_quality(quality), size), price);
    }

    pub fn is_empty(&self) -> bool {
        self.table.is_empty() && self.per_pixel.is_none()
    }

    /// `((quality, size), price)` in a stable order.
    pub fn iter(&self) -> impl Iterator<Item = (&(String, String), &Decimal)> {
        self.table.iter()
    }

    /// The price of one image. Missing or `auto` size means [`DEFAULT_IMAGE_SIZE`]; missing or
    /// `auto` quality tries [`DEFAULT_IMAGE_QUALITIES`] in order. Then a `"*"` quality for the
    /// size, then `"*"/"*"`, then `per_pixel`. `None` when nothing matches.
    pub fn get(&self, quality: Option<&str>, size: Option<&str>) -> Option<Decimal> {
        let size = size
            .map(Self::normalize_size)
            .filter(|s| !s.is_empty() && s != "auto")
            .unwrap_or_else(|| DEFAULT_IMAGE_SIZE.to_string());
        let quality = quality
            .map(Self::normalize_quality)
            .filter(|q| !q.is_empty() && q != "auto");
        let qualities: Vec<String> = match quality {
            Some(q) => vec![q],
            None => DEFAULT_IMAGE_QUALITIES
                .iter()
                .map(|q| q.to_string())
                .collect(),
        };
        for q in qualities.into_iter().chain(["*".to_string()]) {
            if let Some(p) = self.table.get(&(q, size.clone())) {
                return Some(*p);
            }
        }
        if let Some(p) = self.table.get(&("*".to_string(), "*".to_string())) {
            return Some(*p);
        }
        let per_pixel = self.per_pixel?;
        let (w, h) = parse_size(&size)?;
        Decimal::from(w)
            .checked_mul(Decimal::from(h))?
            .checked_mul(per_pixel)
    }
}

/// `"1024x1792"` to `(1024, 1792)`.
pub(crate) fn parse_size(size: &str) -> Option<(u64, u64)> {
    let (w, h) = size.split_once('x')?;
    Some((w.parse().ok()?, h.parse().ok()?))
}

impl Serialize for ImagePrices {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = s.serialize_map(None)?;
        for ((q, size), p) in &self.table {
            map.serialize_entry(&format!("{q}/{size}"), p)?;
        }
        if let Some(p) = self.per_pixel {
            map.serialize_entry("per_pixel", &p)?;
        }
        map.end()
    }
}

/// The rates of one model, from one source, effective from a date. All rates are USD per
/// unit (per token, per character, per second, per request, per image).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct ModelPrice {
    /// The canonical model name this price is listed under.
    pub model: String,
    pub provider: Option<String>,
    pub mode: Mode,
    pub effective_from: NaiveDate,
    pub source: PriceSource,
    /// Standard-tier token rates.
    pub rates: TokenRates,
    /// Batch rates; a class missing here is 0.5 × its standard rate.
    pub batch: TokenRates,
    /// Flex rates; a class missing here is billed at its standard rate.
    pub flex: TokenRates,
    /// Priority rates; a class missing here is billed at its standard rate.
    pub priority: TokenRates,
    /// Long-context tiers, by threshold.
    pub long_context: Vec<LongContext>,
    pub per_character: Option<Decimal>,
    pub per_second: Option<Decimal>,
    /// Fee per web search call (LiteLLM `search_context_size_medium`).
    pub per_web_search: Option<Decimal>,
    pub images: ImagePrices,
}

impl ModelPrice {
    /// A price with no rates yet.
    pub fn new(
        model: impl Into<String>,
        mode: Mode,
        effective_from: NaiveDate,
        source: PriceSource,
    ) -> Self {
        ModelPrice {
            model: model.into(),
            provider: None,
            mode,
            effective_from,
            source,
            rates: TokenRates::default(),
            batch: TokenRates::default(),
            flex: TokenRates::default(),
            priority: TokenRates::default(),
            long_context: Vec::new(),
            per_character: None,
            per_second: None,
            per_web_search: None,
            images: ImagePrices::default(),
        }
    }

    /// A stable name of this price, stored with each usage event:
    /// `builtin:gpt-4o@2024-05-13`, `toml:prices.toml:my-model@2025-01-01`,
    /// `litellm:model_prices.json:gpt-4o@1970-01-01`.
    pub fn id(&self) -> String {
        let at = format!("{}@{}", self.model, self.effective_from);
        match &self.source {
            PriceSource::Builtin => format!("builtin:{at}"),
            PriceSource::TomlFile(p) => format!("toml:{}:{at}", PriceSource::file_name(p)),
            PriceSource::LiteLlmFile(p) => format!("litellm:{}:{at}", PriceSource::file_name(p)),
        }
    }

    /// Whether the model is priced by tokens at all (standard tier).
    pub fn has_token_rates(&self) -> bool {
        !self.rates.is_empty()
    }

    /// Whether this price can bill anything meshgate meters.
    pub fn prices_anything(&self) -> bool {
        self.has_token_rates()
            || self.per_character.is_some()
            || self.per_second.is_some()
            || self.per_web_search.is_some()
            || !self.images.is_empty()
    }

    fn tier(&self, tier: ServiceTier) -> &TokenRates {
        match tier {
            ServiceTier::Standard => &self.rates,
            ServiceTier::Batch => &self.batch,
            ServiceTier::Flex => &self.flex,
            ServiceTier::Priority => &self.priority,
        }
    }

    /// The long-context tier a prompt of `prompt_tokens` falls in: the highest threshold it
    /// exceeds (`>`), if any.
    pub fn long_context_for(&self, prompt_tokens: u64) -> Option<&LongContext> {
        self.long_context
            .iter()
            .filter(|l| prompt_tokens > l.above_tokens)
            .max_by_key(|l| l.above_tokens)
    }

    /// The token rates that apply to a call at `tier` with a prompt of `prompt_tokens`,
    /// before the cache fallbacks of [`crate::cost`]. Per class:
    /// - long context exceeded: the class's above-threshold rate if listed, else standard;
    /// - a tier's own rate when listed (its above-threshold variant when the class has an
    ///   above-threshold rate); otherwise batch is 0.5 × the rate above, flex and priority
    ///   are the rate above.
    pub fn rates_for(&self, tier: ServiceTier, prompt_tokens: u64) -> TokenRates {
        let long = self.long_context_for(prompt_tokens);
        let mut out = TokenRates::default();
        for class in TokenClass::ALL {
            let above = long.and_then(|l| l.rates.get(class));
            let standard = above.or(self.rates.get(class));
            let rate = match tier {
                ServiceTier::Standard => standard,
                t => long
                    .and_then(|l| l.tier(t).get(class))
                    .or_else(|| {
                        if above.is_some() {
                            None
                        } else {
                            self.tier(t).get(class)
                        }
                    })
                    .or_else(|| derive_tier_rate(t, standard)),
            };
            *out.slot(class) = rate;
        }
        out
    }
}

/// A tier rate the price does not list: batch is half of standard (both providers' batch
/// APIs cost 50 %); flex and priority fall back to standard.
fn derive_tier_rate(tier: ServiceTier, standard: Option<Decimal>) -> Option<Decimal> {
    match tier {
        ServiceTier::Batch => standard.and_then(|r| r.checked_mul(Decimal::new(5, 1))),
        _ => standard,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn date() -> NaiveDate {
        NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
    }

    #[test]
    fn ids_name_source_model_and_date() {
        let mut p = ModelPrice::new("gpt-4o", Mode::Chat, date(), PriceSource::Builtin);
        assert_eq!(p.id(), "builtin:gpt-4o@2025-01-01");
        p.source = PriceSource::LiteLlmFile(PathBuf::from("/x/y/prices.json"));
        assert_eq!(p.id(), "litellm:prices.json:gpt-4o@2025-01-01");
        p.source = PriceSource::TomlFile(PathBuf::from("mine.toml"));
        assert_eq!(p.id(), "toml:mine.toml:gpt-4o@2025-01-01");
    }

    #[test]
    fn tier_resolution() {
        let mut p = ModelPrice::new("m", Mode::Chat, date(), PriceSource::Builtin);
        p.rates.input = Some(d("0.000002"));
        p.rates.output = Some(d("0.000008"));
        p.rates.cache_read = Some(d("0.0000005"));
        p.flex.input = Some(d("0.000001"));
        p.long_context.push(LongContext {
            above_tokens: 100,
            rates: TokenRates {
                input: Some(d("0.000004")),
                ..TokenRates::default()
            },
            batch: TokenRates {
                input: Some(d("0.0000015")),
                ..TokenRates::default()
            },
            ..LongContext::default()
        });
        let b = p.rates_for(ServiceTier::Batch, 10);
        assert_eq!(b.input, Some(d("0.000001")));
        assert_eq!(b.cache_read, Some(d("0.00000025")));
        assert_eq!(b.cache_write, None);
        let f = p.rates_for(ServiceTier::Flex, 10);
        assert_eq!(f.input, Some(d("0.000001")));
        assert_eq!(f.output, Some(d("0.000008")));
        assert_eq!(p.rates_for(ServiceTier::Priority, 10), p.rates);
        // Above the threshold: listed above rates, standard for the rest.
        let s = p.rates_for(ServiceTier::Standard, 101);
        assert_eq!(s.input, Some(d("0.000004")));
        assert_eq!(s.output, Some(d("0.000008")));
        assert_eq!(
            p.rates_for(ServiceTier::Standard, 100).input,
            Some(d("0.000002"))
        );
        let b = p.rates_for(ServiceTier::Batch, 101);
        assert_eq!(b.input, Some(d("0.0000015")));
        assert_eq!(b.output, Some(d("0.000004")));
        // Flex above the threshold has no above-flex rate: the above standard rate applies.
        assert_eq!(
            p.rates_for(ServiceTier::Flex, 101).input,
            Some(d("0.000004"))
        );
    }

    #[test]
    fn image_lookup_and_fallbacks() {
        let mut img = ImagePrices::default();
        img.insert("standard", "1024-x-1024", d("0.04"));
        img.insert("hd", "1024x1792", d("0.12"));
        img.insert("*", "256x256", d("0.016"));
        assert_eq!(img.get(Some("hd"), Some("1024x1792")), Some(d("0.12")));
        assert_eq!(img.get(None, None), Some(d("0.04")));
        assert_eq!(img.get(Some("auto"), Some("auto")), Some(d("0.04")));
        assert_eq!(img.get(Some("HD"), Some("256X256")), Some(d("0.016")));
        assert_eq!(img.get(Some("hd"), Some("512x512")), None);
        img.per_pixel = Some(d("0.0000001"));
        assert_eq!(img.get(Some("hd"), Some("100x10")), Some(d("0.0001")));
        assert_eq!(img.get(Some("hd"), Some("bogus")), None);
        let mut medium = ImagePrices::default();
        medium.insert("medium", "1024x1024", d("0.042"));
        assert_eq!(medium.get(None, None), Some(d("0.042")));
    }
}
