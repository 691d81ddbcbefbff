//! meshgate's own TOML pricing format (documented in the crate doc): parsed with every number
//! read from its source text, so `2.50` is exactly 2.50 and never a binary float.

use crate::catalog::{undated, Parsed};
use crate::decimal::{from_per_million, parse_decimal};
use crate::price::{
    parse_size, ImagePrices, LongContext, Mode, ModelPrice, PriceSource, TokenRates,
};
use chrono::NaiveDate;
use rust_decimal::Decimal;
use serde::de::{self, Deserializer, Visitor};
use serde::Deserialize;
use std::collections::BTreeMap;
use std::fmt;
use toml_edit::{DocumentMut, Item, Value};

/// A price as written: a string or an integer, read exactly; floats arrive here as their
/// source text (see [`exact_numbers`]). Negative prices are refused.
struct Amount(Decimal);

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl Visitor<'_> for V {
            type Value = Amount;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("a non-negative decimal number or string")
            }
            fn visit_str<E: de::Error>(self, s: &str) -> Result<Amount, E> {
                let v = parse_decimal(s).map_err(E::custom)?;
                if v.is_sign_negative() && !v.is_zero() {
                    return Err(E::custom(format!("negative price {s}")));
                }
                Ok(Amount(v))
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<Amount, E> {
                if v < 0 {
                    return Err(E::custom(format!("negative price {v}")));
                }
                Ok(Amount(Decimal::from(v)))
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<Amount, E> {
                Ok(Amount(Decimal::from(v)))
            }
        }
        d.deserialize_any(V)
    }
}

/// Declares a struct holding the nine per-1M-token rate fields plus `$extra` fields, and its
/// conversion to per-token [`TokenRates`].
macro_rules! with_token_rates {
    ($(#[$meta:meta])* struct $name:ident { $($extra:tt)* }) => {
        $(#[$meta])*
        struct $name {
            input_per_mtok: Option<Amount>,
            output_per_mtok: Option<Amount>,
            cache_read_per_mtok: Option<Amount>,
            cache_write_per_mtok: Option<Amount>,
            cache_write_long_per_mtok: Option<Amount>,
            input_audio_per_mtok: Option<Amount>,
            output_audio_per_mtok: Option<Amount>,
            input_image_per_mtok: Option<Amount>,
            output_image_per_mtok: Option<Amount>,
            $($extra)*
        }

        impl $name {
            fn token_rates(&self) -> Result<TokenRates, String> {
                Ok(TokenRates {
                    input: per_token(&self.input_per_mtok)?,
                    output: per_token(&self.output_per_mtok)?,
                    cache_read: per_token(&self.cache_read_per_mtok)?,
                    cache_write: per_token(&self.cache_write_per_mtok)?,
                    cache_write_long: per_token(&self.cache_write_long_per_mtok)?,
                    input_audio: per_token(&self.input_audio_per_mtok)?,
                    output_audio: per_token(&self.output_audio_per_mtok)?,
                    input_image: per_token(&self.input_image_per_mtok)?,
                    output_image: per_token(&self.output_image_per_mtok)?,
                })
            }
        }
    };
}

with_token_rates! {
    /// `[model.batch]`, `[model.flex]`, `[model.priority]` and their long-context variants.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawTier {}
}

with_token_rates! {
    /// `long_context = { above_tokens = N, ... }` (or `[[model.long_context]]`).
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawLongContext {
        above_tokens: u64,
        batch: Option<RawTier>,
        flex: Option<RawTier>,
        priority: Option<RawTier>,
    }
}

with_token_rates! {
    /// One `[[model]]`.
    #[derive(Deserialize)]
    #[serde(deny_unknown_fields)]
    struct RawModel {
        name: String,
        #[serde(default)]
        aliases: Vec<String>,
        provider: Option<String>,
        mode: Option<String>,
        effective_from: Option<String>,
        per_mchars: Option<Amount>,
        per_second: Option<Amount>,
        per_web_search: Option<Amount>,
        #[serde(default)]
        per_image: BTreeMap<String, Amount>,
        batch: Option<RawTier>,
        flex: Option<RawTier>,
        priority: Option<RawTier>,
        long_context: Option<OneOrMany<RawLongContext>>,
    }
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFile {
    #[serde(default)]
    model: Vec<RawModel>,
}

#[derive(Deserialize)]
#[serde(untagged)]
enum OneOrMany<T> {
    One(T),
    Many(Vec<T>),
}

fn per_token(v: &Option<Amount>) -> Result<Option<Decimal>, String> {
    match v {
        None => Ok(None),
        Some(Amount(per_m)) => from_per_million(*per_m)
            .map(Some)
            .ok_or_else(|| format!("{per_m} per 1M has too many decimal places")),
    }
}

fn tier(t: &Option<RawTier>) -> Result<TokenRates, String> {
    t.as_ref()
        .map(RawTier::token_rates)
        .transpose()
        .map(Option::unwrap_or_default)
}

/// Parses a file in meshgate's TOML format.
pub(crate) fn parse(text: &str, source: PriceSource) -> Result<Parsed, String> {
    let mut doc: DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    exact_numbers(doc.as_item_mut());
    let raw: RawFile = toml_edit::de::from_document(doc).map_err(|e| format!("{e}"))?;
    let mut parsed = Parsed {
        prices: Vec::new(),
        aliases: Vec::new(),
        skipped: Vec::new(),
    };
    for m in raw.model {
        let price = convert(&m, source.clone()).map_err(|e| format!("model {}: {e}", m.name))?;
        for alias in &m.aliases {
            parsed.aliases.push((alias.clone(), m.name.clone()));
        }
        parsed.prices.push(price);
    }
    Ok(parsed)
}

fn convert(m: &RawModel, source: PriceSource) -> Result<ModelPrice, String> {
    if m.name.trim().is_empty() {
        return Err("empty name".to_string());
    }
    let effective_from = match &m.effective_from {
        Some(s) => NaiveDate::parse_from_str(s.trim(), "%Y-%m-%d")
            .map_err(|e| format!("effective_from {s:?}: {e}"))?,
        None => undated(),
    };
    let mode = m.mode.as_deref().map(Mode::parse).unwrap_or_default();
    let mut p = ModelPrice::new(m.name.clone(), mode, effective_from, source);
    p.provider = m.provider.clone();
    p.rates = m.token_rates()?;
    p.batch = tier(&m.batch)?;
    p.flex = tier(&m.flex)?;
    p.priority = tier(&m.priority)?;
    let long: Vec<&RawLongContext> = match &m.long_context {
        None => Vec::new(),
        Some(OneOrMany::One(l)) => vec![l],
        Some(OneOrMany::Many(v)) => v.iter().collect(),
    };
    for l in long {
        p.long_context.push(LongContext {
            above_tokens: l.above_tokens,
            rates: l.token_rates()?,
            batch: tier(&l.batch)?,
            flex: tier(&l.flex)?,
            priority: tier(&l.priority)?,
        });
    }
    p.per_character = per_token(&m.per_mchars)?;
    p.per_second = m.per_second.as_ref().map(|a| a.0);
    p.per_web_search = m.per_web_search.as_ref().map(|a| a.0);
    p.images = images(&m.per_image)?;
    if !p.prices_anything() {
        return Err("no price given".to_string());
    }
    Ok(p)
}

/// `per_image` keys: `"quality/WxH"`, `"WxH"` (any quality) or `"*"` (any image).
fn images(table: &BTreeMap<String, Amount>) -> Result<ImagePrices, String> {
    let mut images = ImagePrices::default();
    for (key, Amount(price)) in table {
        let (quality, size) = match key.split_once('/') {
            _ if key == "*" => ("*", "*"),
            Some((q, s)) => (q, s),
            None => ("*", key.as_str()),
        };
        if size != "*" && parse_size(&ImagePrices::normalize_size(size)).is_none() {
            return Err(format!("per_image key {key:?}: size must be WxH"));
        }
        images.insert(quality, size, *price);
    }
    Ok(images)
}

/// Replaces every float with its source text and every date with `YYYY-MM-DD`, so that
/// serde sees strings and prices never pass through `f64`.
fn exact_numbers(item: &mut Item) {
    match item {
        Item::Value(v) => exact_value(v),
        Item::Table(t) => {
            for (_, child) in t.iter_mut() {
                exact_numbers(child);
            }
        }
        Item::ArrayOfTables(a) => {
            for t in a.iter_mut() {
                for (_, child) in t.iter_mut() {
                    exact_numbers(child);
                }
            }
        }
        Item::None => {}
    }
}

fn exact_value(v: &mut Value) {
    match v {
        Value::Float(f) => {
            let text = f.display_repr().into_owned();
            *v = Value::from(text);
        }
        Value::Datetime(dt) => {
            let text = dt.value().to_string();
            *v = Value::from(text);
        }
        Value::Array(a) => {
            for x in a.iter_mut() {
                exact_value(x);
            }
        }
        Value::InlineTable(t) => {
            for (_, x) in t.iter_mut() {
                exact_value(x);
            }
        }
        Value::String(_) | Value::Integer(_) | Value::Boolean(_) => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn one(text: &str) -> ModelPrice {
        let mut parsed = parse(text, PriceSource::Builtin).unwrap();
        assert_eq!(parsed.prices.len(), 1);
        parsed.prices.remove(0)
    }

    #[test]
    fn floats_strings_and_integers_are_exact() {
        let p = one(r#"
            [[model]]
            name = "m"
            effective_from = 2025-01-01
            input_per_mtok = 2.50
            output_per_mtok = "10.1"
            cache_read_per_mtok = 1
            cache_write_per_mtok = 1.25e-1
            per_second = 0.0001
            "#);
        assert_eq!(p.rates.input, Some(d("0.0000025")));
        assert_eq!(p.rates.output, Some(d("0.0000101")));
        assert_eq!(p.rates.cache_read, Some(d("0.000001")));
        assert_eq!(p.rates.cache_write, Some(d("0.000000125")));
        assert_eq!(p.per_second, Some(d("0.0001")));
        assert_eq!(
            p.effective_from,
            NaiveDate::from_ymd_opt(2025, 1, 1).unwrap()
        );
        // 0.1 + 0.2 would not be 0.3 in binary floats.
        let p = one("[[model]]\nname = \"m\"\ninput_per_mtok = 0.1\noutput_per_mtok = 0.2\n");
        assert_eq!(
            p.rates.input.unwrap() + p.rates.output.unwrap(),
            d("0.0000003")
        );
        assert_eq!(p.effective_from, undated());
    }

    #[test]
    fn tiers_long_context_and_images() {
        let p = one(r#"
            [[model]]
            name = "img"
            mode = "image_generation"
            input_per_mtok = "5"
            per_image = { "hd/1024x1792" = "0.12", "256-x-256" = 0.016, "*" = "0.5" }
            long_context = { above_tokens = 200000, input_per_mtok = "6", batch = { input_per_mtok = "3" } }
            [model.batch]
            input_per_mtok = "2.5"
            "#);
        assert_eq!(p.mode, Mode::ImageGeneration);
        assert_eq!(p.batch.input, Some(d("0.0000025")));
        assert_eq!(p.long_context[0].above_tokens, 200_000);
        assert_eq!(p.long_context[0].batch.input, Some(d("0.000003")));
        assert_eq!(p.images.get(Some("hd"), Some("1024x1792")), Some(d("0.12")));
        assert_eq!(p.images.get(Some("low"), Some("256x256")), Some(d("0.016")));
        assert_eq!(p.images.get(Some("low"), Some("64x64")), Some(d("0.5")));
    }

    #[test]
    fn mistakes_are_errors() {
        let bad = [
            "[[model]]\nname = \"m\"\ninput_per_mtk = 1\n",
            "[[model]]\nname = \"m\"\ninput_per_mtok = -1\n",
            "[[model]]\nname = \"m\"\ninput_per_mtok = \"-0.5\"\n",
            "[[model]]\nname = \"m\"\ninput_per_mtok = inf\n",
            "[[model]]\nname = \"m\"\n",
            "[[model]]\nname = \"m\"\ninput_per_mtok = 1\neffective_from = \"2025-13-01\"\n",
            "[[model]]\nname = \"m\"\nper_image = { \"hd/big\" = 1 }\n",
            "[[model]]\nname = \"m\"\ninput_per_mtok = \"0.0000000000000000000000001\"\n",
            "[[modle]]\nname = \"m\"\n",
        ];
        for text in bad {
            assert!(parse(text, PriceSource::Builtin).is_err(), "{text}");
        }
    }
}
