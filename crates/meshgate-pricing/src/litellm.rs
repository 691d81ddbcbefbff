//! The LiteLLM `model_prices_and_context_window.json` format: numbers read exactly from their
//! JSON text, tier and long-context keys decoded, per-image entries folded into their model.

use crate::catalog::{undated, Parsed, Skipped};
use crate::decimal::parse_decimal;
use crate::price::{
    parse_size, ImagePrices, LongContext, Mode, ModelPrice, PriceSource, TokenClass, TokenRates,
};
use meshgate_types::ServiceTier;
use rust_decimal::Decimal;
use serde_json::value::RawValue;
use std::collections::BTreeMap;
use std::path::Path;

/// Words that name an image quality in `{quality}/{W}-x-{H}/{model}` keys.
const IMAGE_QUALITIES: [&str; 8] = [
    "low", "medium", "high", "standard", "hd", "auto", "max", "xhigh",
];

/// Tier suffixes meshgate does not bill (no `ServiceTier` reports them): keys ignored.
const UNBILLED_TIERS: [&str; 3] = ["_ultrafast", "_balanced", "_decisions"];

type Fields<'a> = BTreeMap<String, &'a RawValue>;

/// Parses a LiteLLM pricing file. Entries with a malformed or negative price and entries
/// that price nothing meshgate bills are left out and reported in `skipped`; only a file
/// that is not a JSON object of models is an error. Unknown keys are ignored.
pub(crate) fn parse(text: &str, path: &Path) -> Result<Parsed, String> {
    let top: BTreeMap<String, &RawValue> =
        serde_json::from_str(text).map_err(|e| format!("not a JSON object of models: {e}"))?;
    let source = PriceSource::LiteLlmFile(path.to_path_buf());
    let mut skipped = Vec::new();
    let mut models: BTreeMap<String, ModelPrice> = BTreeMap::new();
    let mut images = Vec::new();
    for (key, raw) in &top {
        if key == "sample_spec" {
            continue;
        }
        let Ok(fields) = serde_json::from_str::<Fields<'_>>(raw.get()) else {
            skip(&mut skipped, key, "not a JSON object");
            continue;
        };
        if let Some((model, quality, size)) = image_key(key) {
            match image_price(&fields, &size) {
                Ok(Some(price)) => images.push((model, quality, size, price, fields)),
                Ok(None) => skip(&mut skipped, key, "no per-image price"),
                Err(e) => skip(&mut skipped, key, &e),
            }
            continue;
        }
        let mut errors = Vec::new();
        let price = entry(key, &fields, &source, &mut errors);
        if errors.is_empty() {
            models.insert(key.clone(), price);
        } else {
            // A half-read entry could replace a good price from an earlier source: drop it.
            skip(&mut skipped, key, &errors.join("; "));
        }
    }
    for (model, quality, size, price, fields) in images {
        let base = models.entry(model.clone()).or_insert_with(|| {
            let mut p = ModelPrice::new(model, Mode::ImageGeneration, undated(), source.clone());
            p.provider = string(&fields, "litellm_provider");
            p
        });
        base.images.insert(&quality, &size, price);
    }
    let mut prices = Vec::new();
    let mut aliases = Vec::new();
    for (key, price) in models {
        if price.prices_anything() {
            // LiteLLM names Gemini API models `gemini/<model>`; clients and the Gemini
            // lane name them plainly, so the plain name resolves to it unless the file
            // prices that name itself.
            if let Some(plain) = key.strip_prefix("gemini/") {
                if price.provider.as_deref() == Some("gemini") && !top.contains_key(plain) {
                    aliases.push((plain.to_string(), key.clone()));
                }
            }
            prices.push(price);
        } else {
            skip(&mut skipped, &key, "prices nothing meshgate bills");
        }
    }
    Ok(Parsed {
        prices,
        aliases,
        skipped,
    })
}

fn skip(skipped: &mut Vec<Skipped>, key: &str, reason: &str) {
    skipped.push(Skipped {
        key: key.to_string(),
        reason: reason.to_string(),
    });
}

fn string(fields: &Fields<'_>, name: &str) -> Option<String> {
    fields
        .get(name)
        .and_then(|raw| serde_json::from_str::<String>(raw.get()).ok())
}

/// The exact value of a numeric field: `Ok(None)` when absent or not a number (LiteLLM
/// sometimes puts strings or objects in documentation entries); an error when the number
/// cannot be represented exactly or is negative.
fn number(raw: &RawValue) -> Result<Option<Decimal>, String> {
    let text = raw.get().trim();
    let numeric = text
        .as_bytes()
        .first()
        .is_some_and(|b| b.is_ascii_digit() || *b == b'-');
    if !numeric {
        return Ok(None);
    }
    let v = parse_decimal(text)?;
    if v.is_sign_negative() && !v.is_zero() {
        return Err(format!("negative price {text}"));
    }
    Ok(Some(v))
}

fn field(fields: &Fields<'_>, name: &str) -> Result<Option<Decimal>, String> {
    fields.get(name).map_or(Ok(None), |raw| {
        number(raw).map_err(|e| format!("{name}: {e}"))
    })
}

/// Decodes `{base}[_above_{N}k_tokens][_{tier}]` into (class, threshold, tier).
fn token_key(key: &str) -> Option<(TokenClass, Option<u64>, ServiceTier)> {
    if UNBILLED_TIERS.iter().any(|s| key.ends_with(s)) {
        return None;
    }
    let (rest, tier) = [
        ("_batches", ServiceTier::Batch),
        ("_flex", ServiceTier::Flex),
        ("_priority", ServiceTier::Priority),
    ]
    .iter()
    .find_map(|(suffix, tier)| key.strip_suffix(suffix).map(|r| (r, *tier)))
    .unwrap_or((key, ServiceTier::Standard));
    let (base, threshold) = split_above(rest);
    let class = match base {
        "input_cost_per_token" => TokenClass::Input,
        "output_cost_per_token" => TokenClass::Output,
        "cache_read_input_token_cost" => TokenClass::CacheRead,
        "cache_creation_input_token_cost" => TokenClass::CacheWrite,
        // "above_1hr"/"above_12hr" name the cache TTL, not a context threshold.
        "cache_creation_input_token_cost_above_1hr"
        | "cache_creation_input_token_cost_above_12hr" => TokenClass::CacheWriteLong,
        "input_cost_per_audio_token" => TokenClass::InputAudio,
        "output_cost_per_audio_token" => TokenClass::OutputAudio,
        "input_cost_per_image_token" => TokenClass::InputImage,
        "output_cost_per_image_token" => TokenClass::OutputImage,
        _ => return None,
    };
    Some((class, threshold, tier))
}

/// `x_above_200k_tokens` → (`x`, Some(200000)).
fn split_above(key: &str) -> (&str, Option<u64>) {
    let Some(head) = key.strip_suffix("k_tokens") else {
        return (key, None);
    };
    let Some(i) = head.rfind("_above_") else {
        return (key, None);
    };
    let n = &head[i + "_above_".len()..];
    match n.parse::<u64>() {
        Ok(k) if !n.is_empty() && n.bytes().all(|b| b.is_ascii_digit()) => {
            (&key[..i], k.checked_mul(1000))
        }
        _ => (key, None),
    }
}

fn rates_slot(p: &mut ModelPrice, threshold: Option<u64>, tier: ServiceTier) -> &mut TokenRates {
    let Some(above) = threshold else {
        return match tier {
            ServiceTier::Standard => &mut p.rates,
            ServiceTier::Batch => &mut p.batch,
            ServiceTier::Flex => &mut p.flex,
            ServiceTier::Priority => &mut p.priority,
        };
    };
    let i = match p.long_context.iter().position(|l| l.above_tokens == above) {
        Some(i) => i,
        None => {
            p.long_context.push(LongContext {
                above_tokens: above,
                ..LongContext::default()
            });
            p.long_context.len() - 1
        }
    };
    let long = &mut p.long_context[i];
    match tier {
        ServiceTier::Standard => &mut long.rates,
        ServiceTier::Batch => &mut long.batch,
        ServiceTier::Flex => &mut long.flex,
        ServiceTier::Priority => &mut long.priority,
    }
}

/// One model entry. Field errors are collected and the field left out.
fn entry(
    key: &str,
    fields: &Fields<'_>,
    source: &PriceSource,
    errors: &mut Vec<String>,
) -> ModelPrice {
    let mode = string(fields, "mode")
        .map(|m| Mode::parse(&m))
        .unwrap_or_default();
    let image_mode = matches!(mode, Mode::ImageGeneration | Mode::ImageEdit);
    let mut p = ModelPrice::new(key, mode, undated(), source.clone());
    p.provider = string(fields, "litellm_provider");
    let mut cache_hit = None;
    let mut seconds_fallback = None;
    let mut characters_fallback = None;
    let mut pixel_fallback = None;
    for (name, raw) in fields {
        let value = match number(raw) {
            Ok(Some(v)) => v,
            Ok(None) => {
                if name == "search_context_cost_per_query" {
                    match search_fee(raw) {
                        Ok(fee) => p.per_web_search = fee,
                        Err(e) => errors.push(format!("{name}: {e}")),
                    }
                }
                continue;
            }
            Err(e) => {
                if token_key(name).is_some() || name.contains("cost") {
                    errors.push(format!("{name}: {e}"));
                }
                continue;
            }
        };
        if let Some((class, threshold, tier)) = token_key(name) {
            *rates_slot(&mut p, threshold, tier).slot(class) = Some(value);
            continue;
        }
        match name.as_str() {
            "input_cost_per_token_cache_hit" => cache_hit = Some(value),
            "input_cost_per_character" => p.per_character = Some(value),
            "output_cost_per_character" => characters_fallback = Some(value),
            "input_cost_per_second" => p.per_second = Some(value),
            "cost_per_second" | "output_cost_per_second" => {
                seconds_fallback = seconds_fallback.or(Some(value));
            }
            "output_cost_per_image" => p.images.insert("*", "*", value),
            // Keys come sorted, so `output_cost_per_image` (below) wins over this one.
            "input_cost_per_image" if image_mode => p.images.insert("*", "*", value),
            "input_cost_per_pixel" if image_mode => p.images.per_pixel = Some(value),
            "output_cost_per_pixel" if image_mode && !value.is_zero() => {
                pixel_fallback = Some(value);
            }
            _ => {}
        }
    }
    if p.rates.cache_read.is_none() {
        p.rates.cache_read = cache_hit;
    }
    p.per_character = p.per_character.or(characters_fallback);
    p.per_second = p.per_second.or(seconds_fallback);
    p.images.per_pixel = p.images.per_pixel.or(pixel_fallback);
    p.long_context.sort_by_key(|l| l.above_tokens);
    p
}

/// `search_context_cost_per_query.search_context_size_medium`: the fee per web search.
fn search_fee(raw: &RawValue) -> Result<Option<Decimal>, String> {
    let Ok(sizes) = serde_json::from_str::<Fields<'_>>(raw.get()) else {
        return Ok(None);
    };
    field(&sizes, "search_context_size_medium")
}

/// `[prefix/][quality/]{W}-x-{H}/{model}` → (`[prefix/]model`, quality or `*`, `WxH`).
fn image_key(key: &str) -> Option<(String, String, String)> {
    let segments: Vec<&str> = key.split('/').collect();
    let i = segments.iter().position(|s| is_size(s))?;
    let rest = &segments[i + 1..];
    if rest.is_empty() || rest.iter().any(|s| s.is_empty()) {
        return None;
    }
    let (prefix, quality) = match i.checked_sub(1).map(|q| segments[q]) {
        Some(q) if IMAGE_QUALITIES.contains(&q) => (&segments[..i - 1], q),
        _ => (&segments[..i], "*"),
    };
    let model: Vec<&str> = prefix.iter().chain(rest.iter()).copied().collect();
    Some((
        model.join("/"),
        quality.to_string(),
        ImagePrices::normalize_size(segments[i]),
    ))
}

fn is_size(segment: &str) -> bool {
    segment.split_once("-x-").is_some_and(|(w, h)| {
        !w.is_empty()
            && !h.is_empty()
            && w.bytes().all(|b| b.is_ascii_digit())
            && h.bytes().all(|b| b.is_ascii_digit())
    })
}

/// The price of one image of an image entry: `input_cost_per_image` (per generated image,
/// despite its name), else `output_cost_per_image`, else a pixel rate × W × H.
fn image_price(fields: &Fields<'_>, size: &str) -> Result<Option<Decimal>, String> {
    for name in ["input_cost_per_image", "output_cost_per_image"] {
        if let Some(v) = field(fields, name)? {
            return Ok(Some(v));
        }
    }
    let Some((w, h)) = parse_size(size) else {
        return Ok(None);
    };
    let pixels = Decimal::from(w)
        .checked_mul(Decimal::from(h))
        .ok_or("image size too large")?;
    let per_pixel = match field(fields, "input_cost_per_pixel")? {
        Some(v) => Some(v),
        None => field(fields, "output_cost_per_pixel")?,
    };
    per_pixel
        .map(|r| {
            r.checked_mul(pixels)
                .ok_or_else(|| "per-pixel price overflows".to_string())
        })
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    #[test]
    fn decodes_token_keys() {
        use ServiceTier::*;
        use TokenClass::*;
        assert_eq!(
            token_key("input_cost_per_token"),
            Some((Input, None, Standard))
        );
        assert_eq!(
            token_key("cache_creation_input_token_cost_above_1hr"),
            Some((CacheWriteLong, None, Standard))
        );
        assert_eq!(
            token_key("cache_creation_input_token_cost_above_12hr_above_272k_tokens_flex"),
            Some((CacheWriteLong, Some(272_000), Flex))
        );
        assert_eq!(
            token_key("output_cost_per_token_above_200k_tokens_batches"),
            Some((Output, Some(200_000), Batch))
        );
        assert_eq!(
            token_key("cache_read_input_token_cost_priority"),
            Some((CacheRead, None, Priority))
        );
        assert_eq!(token_key("input_cost_per_token_ultrafast"), None);
        assert_eq!(token_key("output_cost_per_reasoning_token"), None);
        assert_eq!(token_key("input_cost_per_token_above_xk_tokens"), None);
    }

    #[test]
    fn decodes_image_keys() {
        let k = |s| image_key(s).map(|(m, q, z)| format!("{m}|{q}|{z}"));
        assert_eq!(
            k("high/1024-x-1536/gpt-image-1").as_deref(),
            Some("gpt-image-1|high|1024x1536")
        );
        assert_eq!(
            k("1024-x-1024/dall-e-2").as_deref(),
            Some("dall-e-2|*|1024x1024")
        );
        assert_eq!(
            k("azure/hd/1024-x-1792/dall-e-3").as_deref(),
            Some("azure/dall-e-3|hd|1024x1792")
        );
        assert_eq!(k("gpt-4o"), None);
        assert_eq!(k("1024-x-1024/"), None);
        assert_eq!(k("x-x-1/m"), None);
    }

    #[test]
    fn parses_entries_exactly() {
        let json = r#"{
            "sample_spec": {"input_cost_per_token": 0.0, "mode": "one of: chat"},
            "m": {"litellm_provider": "openai", "mode": "chat",
                  "input_cost_per_token": 1.25e-07, "output_cost_per_token": 1e-05,
                  "input_cost_per_token_cache_hit": 1e-08,
                  "input_cost_per_token_above_128k_tokens": 2.5e-07,
                  "search_context_cost_per_query": {"search_context_size_low": 0.02,
                      "search_context_size_medium": 0.03},
                  "supports_vision": true, "max_tokens": 8192, "metadata": {"notes": "x"}},
            "bad": {"input_cost_per_token": -1e-06, "output_cost_per_token": 2e-06},
            "rerank": {"input_cost_per_query": 0.002, "mode": "rerank"},
            "medium/512-x-512/img": {"input_cost_per_pixel": 1e-07, "litellm_provider": "x"}
        }"#;
        let parsed = parse(json, Path::new("t.json")).unwrap();
        let by: BTreeMap<&str, &ModelPrice> = parsed
            .prices
            .iter()
            .map(|p| (p.model.as_str(), p))
            .collect();
        let m = by["m"];
        assert_eq!(m.rates.input, Some(d("0.000000125")));
        assert_eq!(m.rates.cache_read, Some(d("0.00000001")));
        assert_eq!(m.long_context[0].above_tokens, 128_000);
        assert_eq!(m.long_context[0].rates.input, Some(d("0.00000025")));
        assert_eq!(m.per_web_search, Some(d("0.03")));
        assert_eq!(m.provider.as_deref(), Some("openai"));
        assert!(!by.contains_key("bad"));
        assert!(!by.contains_key("rerank") && !by.contains_key("sample_spec"));
        assert_eq!(
            by["img"].images.get(Some("medium"), Some("512x512")),
            Some(d("0.0262144"))
        );
        let reasons: Vec<&str> = parsed.skipped.iter().map(|s| s.key.as_str()).collect();
        assert_eq!(reasons, vec!["bad", "rerank"]);
    }

    #[test]
    fn rejects_non_objects() {
        assert!(parse("[1,2]", Path::new("x.json")).is_err());
        assert!(parse("{\"m\": 3}", Path::new("x.json"))
            .unwrap()
            .prices
            .is_empty());
    }

    #[test]
    fn gemini_entries_answer_to_their_plain_names() {
        let json = r#"{
            "gemini/gemini-2.5-pro": {"litellm_provider": "gemini", "mode": "chat",
                "input_cost_per_token": 1.25e-06, "output_cost_per_token": 1e-05,
                "input_cost_per_token_above_200k_tokens": 2.5e-06,
                "output_cost_per_token_above_200k_tokens": 1.5e-05},
            "gemini/gemini-2.0-flash": {"litellm_provider": "gemini", "mode": "chat",
                "input_cost_per_token": 1e-07, "output_cost_per_token": 4e-07},
            "gemini-2.0-flash": {"litellm_provider": "vertex_ai-language-models", "mode": "chat",
                "input_cost_per_token": 1.5e-07, "output_cost_per_token": 6e-07}
        }"#;
        let parsed = parse(json, Path::new("t.json")).unwrap();
        assert_eq!(
            parsed.aliases,
            vec![(
                "gemini-2.5-pro".to_string(),
                "gemini/gemini-2.5-pro".to_string()
            )]
        );
        let pro = parsed
            .prices
            .iter()
            .find(|p| p.model == "gemini/gemini-2.5-pro")
            .unwrap();
        assert_eq!(pro.provider.as_deref(), Some("gemini"));
        assert_eq!(pro.long_context[0].above_tokens, 200_000);
        assert_eq!(pro.long_context[0].rates.output, Some(d("0.000015")));
    }
}
