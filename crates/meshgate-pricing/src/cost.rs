//! `cost`: the exact price of a [`Usage`] under a [`ModelPrice`]. Pure, checked arithmetic
//! only: it never panics and never bills a missing rate as zero.

use crate::price::{ImagePrices, ModelPrice};
use meshgate_types::{Money, Usage};
use rust_decimal::Decimal;

/// Why a usage could not be priced.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum CostError {
    /// The usage consumed something the price has no rate for (never billed as zero).
    #[error("model {model} has no price for {what}")]
    MissingRate { model: String, what: String },
    /// The amount does not fit a decimal (absurd counts or rates).
    #[error("cost of a call to {model} overflows")]
    Overflow { model: String },
}

/// The cost of `usage` under `price`, exactly.
///
/// Tokens (the classes of [`Usage`] are disjoint):
/// ```text
///   input_uncached × input          (audio/image subsets at their own rate when listed)
/// + cache_read     × cache_read     (missing → input)
/// + cache_write_5m × cache_write    (missing → input)
/// + cache_write_1h × cache_write_long (missing → cache_write → input)
/// + output         × output         (reasoning is inside output; audio/image subsets at
///                                     their own rate when listed; missing → output_image)
/// ```
/// with the rates of [`ModelPrice::rates_for`] for the usage's service tier and prompt size.
/// Subsets are clamped to their class (`input_audio + input_image ≤ input_uncached`).
///
/// Other units are billed when the usage carries no tokens, or the model has no token rates:
/// `audio_seconds × per_second`, `characters × per_character`, `images × per-image price` by
/// quality and size (see [`ImagePrices::get`]). `web_search_requests × per_web_search` is
/// always added. A non-zero count whose rate is missing is a [`CostError::MissingRate`].
pub fn cost(usage: &Usage, price: &ModelPrice) -> Result<Money, CostError> {
    let mut bill = Bill {
        model: &price.model,
        total: Decimal::ZERO,
    };
    let seconds = usage.audio_seconds.filter(|s| *s > Decimal::ZERO);
    let characters = usage.characters.filter(|c| *c > 0);
    let images = usage.images.filter(|n| *n > 0);
    let other_unit_priced = (seconds.is_some() && price.per_second.is_some())
        || (characters.is_some() && price.per_character.is_some())
        || (images.is_some() && !price.images.is_empty());
    let bill_tokens = has_tokens(usage) && (price.has_token_rates() || !other_unit_priced);

    if bill_tokens {
        bill_token_classes(&mut bill, usage, price)?;
    } else {
        if let Some(s) = seconds {
            bill.add(s, price.per_second, "audio seconds")?;
        }
        if let Some(c) = characters {
            bill.add(Decimal::from(c), price.per_character, "characters")?;
        }
        if let Some(n) = images {
            bill_images(&mut bill, usage, &price.images, n)?;
        }
    }
    let searches = usage.web_search_requests.unwrap_or(0);
    bill.add(
        Decimal::from(searches),
        price.per_web_search,
        "web search requests",
    )?;
    Ok(Money::new(bill.total.normalize()))
}

/// Whether any billed token class is non-zero.
fn has_tokens(usage: &Usage) -> bool {
    [
        usage.input_uncached,
        usage.cache_read,
        usage.cache_write_5m,
        usage.cache_write_1h,
        usage.output,
    ]
    .iter()
    .any(|n| n.unwrap_or(0) > 0)
}

/// `Usage::prompt_total` without the risk of overflowing on absurd counts.
fn prompt_total(usage: &Usage) -> u64 {
    [
        usage.input_uncached,
        usage.cache_read,
        usage.cache_write_5m,
        usage.cache_write_1h,
    ]
    .iter()
    .fold(0u64, |acc, n| acc.saturating_add(n.unwrap_or(0)))
}

struct Bill<'a> {
    model: &'a str,
    total: Decimal,
}

impl Bill<'_> {
    /// Adds `quantity × rate`; a non-zero quantity without a rate is an error.
    fn add(
        &mut self,
        quantity: Decimal,
        rate: Option<Decimal>,
        what: &str,
    ) -> Result<(), CostError> {
        if quantity.is_zero() {
            return Ok(());
        }
        let rate = rate.ok_or_else(|| CostError::MissingRate {
            model: self.model.to_string(),
            what: what.to_string(),
        })?;
        let amount = quantity.checked_mul(rate).ok_or_else(|| self.overflow())?;
        self.total = self
            .total
            .checked_add(amount)
            .ok_or_else(|| self.overflow())?;
        Ok(())
    }

    fn tokens(&mut self, n: u64, rate: Option<Decimal>, what: &str) -> Result<(), CostError> {
        self.add(Decimal::from(n), rate, what)
    }

    fn overflow(&self) -> CostError {
        CostError::Overflow {
            model: self.model.to_string(),
        }
    }
}

/// Splits `total` into `(plain, audio, image)`: a subset is carved out only when its rate
/// exists, and never beyond what is left of the class.
fn split(
    total: u64,
    audio: Option<u64>,
    audio_rate: Option<Decimal>,
    image: Option<u64>,
    image_rate: Option<Decimal>,
) -> (u64, u64, u64) {
    let audio = if audio_rate.is_some() {
        audio.unwrap_or(0).min(total)
    } else {
        0
    };
    let image = if image_rate.is_some() {
        image.unwrap_or(0).min(total - audio)
    } else {
        0
    };
    (total - audio - image, audio, image)
}

fn bill_token_classes(
    bill: &mut Bill<'_>,
    usage: &Usage,
    price: &ModelPrice,
) -> Result<(), CostError> {
    let tier = usage.service_tier.unwrap_or_default();
    let r = price.rates_for(tier, prompt_total(usage));

    let (text_in, audio_in, image_in) = split(
        usage.input_uncached.unwrap_or(0),
        usage.input_audio,
        r.input_audio,
        usage.input_image,
        r.input_image,
    );
    bill.tokens(text_in, r.input, "input tokens")?;
    bill.tokens(audio_in, r.input_audio, "input audio tokens")?;
    bill.tokens(image_in, r.input_image, "input image tokens")?;

    let cache_write = r.cache_write.or(r.input);
    bill.tokens(
        usage.cache_read.unwrap_or(0),
        r.cache_read.or(r.input),
        "cache read tokens",
    )?;
    bill.tokens(
        usage.cache_write_5m.unwrap_or(0),
        cache_write,
        "cache write tokens",
    )?;
    bill.tokens(
        usage.cache_write_1h.unwrap_or(0),
        r.cache_write_long.or(cache_write),
        "long-TTL cache write tokens",
    )?;

    let (text_out, audio_out, image_out) = split(
        usage.output.unwrap_or(0),
        usage.output_audio,
        r.output_audio,
        usage.output_image,
        r.output_image,
    );
    // GPT image models list no text output rate: all their output is image tokens.
    bill.tokens(text_out, r.output.or(r.output_image), "output tokens")?;
    bill.tokens(audio_out, r.output_audio, "output audio tokens")?;
    bill.tokens(image_out, r.output_image, "output image tokens")?;
    Ok(())
}

fn bill_images(
    bill: &mut Bill<'_>,
    usage: &Usage,
    images: &ImagePrices,
    n: u64,
) -> Result<(), CostError> {
    let quality = usage.image_quality.as_deref();
    let size = usage.image_size.as_deref();
    let each = images.get(quality, size);
    let what = format!(
        "images of quality {} and size {}",
        quality.unwrap_or("(default)"),
        size.unwrap_or("(default)")
    );
    bill.add(Decimal::from(n), each, &what)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::price::{LongContext, Mode, PriceSource, TokenRates};
    use chrono::NaiveDate;
    use meshgate_types::ServiceTier;
    use std::str::FromStr;

    fn d(s: &str) -> Decimal {
        Decimal::from_str(s).unwrap()
    }

    fn model(name: &str) -> ModelPrice {
        let date = NaiveDate::from_ymd_opt(2025, 1, 1).unwrap();
        ModelPrice::new(name, Mode::Chat, date, PriceSource::Builtin)
    }

    fn gpt_4o() -> ModelPrice {
        let mut p = model("gpt-4o");
        p.rates.input = Some(d("2.5e-6"));
        p.rates.output = Some(d("1e-5"));
        p.rates.cache_read = Some(d("1.25e-6"));
        p
    }

    fn sonnet() -> ModelPrice {
        let mut p = model("claude-sonnet-4-5");
        p.rates = TokenRates {
            input: Some(d("3e-6")),
            output: Some(d("1.5e-5")),
            cache_read: Some(d("3e-7")),
            cache_write: Some(d("3.75e-6")),
            cache_write_long: Some(d("6e-6")),
            ..TokenRates::default()
        };
        p
    }

    #[test]
    fn openai_worked_example() {
        // prompt 1850 of which 1536 cached, completion 240.
        let u = Usage {
            input_uncached: Some(314),
            cache_read: Some(1536),
            output: Some(240),
            reasoning: Some(0),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &gpt_4o()).unwrap().amount(), d("0.005105"));
    }

    #[test]
    fn anthropic_worked_example_and_derived_batch() {
        let mut u = Usage {
            input_uncached: Some(412),
            cache_write_5m: Some(2048),
            cache_read: Some(10240),
            output: Some(87),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &sonnet()).unwrap().amount(), d("0.013293"));
        u.service_tier = Some(ServiceTier::Batch);
        assert_eq!(cost(&u, &sonnet()).unwrap().amount(), d("0.0066465"));
    }

    #[test]
    fn cache_fallbacks() {
        let p = gpt_4o();
        let u = Usage {
            cache_write_5m: Some(1000),
            cache_write_1h: Some(1000),
            ..Usage::default()
        };
        // No write rates: both bill at input.
        assert_eq!(cost(&u, &p).unwrap().amount(), d("0.005"));
        let mut p = p;
        p.rates.cache_write = Some(d("3e-6"));
        assert_eq!(cost(&u, &p).unwrap().amount(), d("0.006"));
        let mut u2 = u.clone();
        u2.cache_write_5m = None;
        u2.cache_read = Some(1000);
        p.rates.cache_read = None;
        assert_eq!(cost(&u2, &p).unwrap().amount(), d("0.0055"));
    }

    #[test]
    fn reasoning_is_not_billed_on_top() {
        let u = Usage {
            output: Some(1000),
            reasoning: Some(800),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &gpt_4o()).unwrap().amount(), d("0.01"));
    }

    #[test]
    fn modality_subsets_replace_the_base_rate() {
        let mut p = model("gpt-4o-mini-tts");
        p.rates.input = Some(d("6e-7"));
        p.rates.output = Some(d("1e-5"));
        p.rates.output_audio = Some(d("1.2e-5"));
        let u = Usage {
            input_uncached: Some(100),
            input_audio: Some(50), // no input-audio rate: stays at the input rate
            output: Some(1000),
            output_audio: Some(900),
            ..Usage::default()
        };
        // 100×6e-7 + 100×1e-5 + 900×1.2e-5
        assert_eq!(cost(&u, &p).unwrap().amount(), d("0.01186"));
        // A subset larger than its class is clamped.
        let u = Usage {
            output: Some(10),
            output_audio: Some(1000),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &p).unwrap().amount(), d("0.00012"));
    }

    #[test]
    fn long_context_switches_every_class() {
        let mut p = sonnet();
        p.long_context.push(LongContext {
            above_tokens: 200_000,
            rates: TokenRates {
                input: Some(d("6e-6")),
                output: Some(d("2.25e-5")),
                cache_read: Some(d("6e-7")),
                ..TokenRates::default()
            },
            ..LongContext::default()
        });
        let at = |input: u64| Usage {
            input_uncached: Some(input),
            cache_read: Some(100_000),
            output: Some(1000),
            ..Usage::default()
        };
        // 100000 + 100000 = 200000: not above.
        let below = cost(&at(100_000), &p).unwrap().amount();
        assert_eq!(below, d("0.3") + d("0.03") + d("0.015"));
        let above = cost(&at(100_001), &p).unwrap().amount();
        assert_eq!(above, d("0.600006") + d("0.06") + d("0.0225"));
    }

    #[test]
    fn missing_rates_are_errors_not_zero() {
        let mut p = model("embed");
        p.rates.input = Some(d("2e-8"));
        let u = Usage {
            input_uncached: Some(10),
            output: Some(1),
            ..Usage::default()
        };
        assert_eq!(
            cost(&u, &p),
            Err(CostError::MissingRate {
                model: "embed".into(),
                what: "output tokens".into()
            })
        );
        let u = Usage {
            web_search_requests: Some(1),
            ..Usage::default()
        };
        assert!(matches!(cost(&u, &p), Err(CostError::MissingRate { .. })));
        let u = Usage {
            web_search_requests: Some(0),
            output: Some(0),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &p).unwrap(), Money::ZERO);
    }

    #[test]
    fn other_units() {
        let mut whisper = model("whisper-1");
        whisper.per_second = Some(d("0.0001"));
        let u = Usage {
            audio_seconds: Some(d("61.5")),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &whisper).unwrap().amount(), d("0.00615"));

        let mut tts = model("tts-1");
        tts.per_character = Some(d("0.000015"));
        let u = Usage {
            characters: Some(1000),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &tts).unwrap().amount(), d("0.015"));

        // Tokens win over seconds when the model has token rates.
        let mut t = gpt_4o();
        t.per_second = Some(d("0.0001"));
        let u = Usage {
            input_uncached: Some(1000),
            audio_seconds: Some(d("10")),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &t).unwrap().amount(), d("0.0025"));
        let u = Usage {
            audio_seconds: Some(d("10")),
            ..Usage::default()
        };
        assert_eq!(cost(&u, &t).unwrap().amount(), d("0.001"));
        // Seconds with no per-second rate.
        assert!(cost(&u, &gpt_4o()).is_err());
    }

    #[test]
    fn huge_counts_overflow_cleanly() {
        let mut p = gpt_4o();
        p.per_web_search = Some(Decimal::MAX);
        let u = Usage {
            web_search_requests: Some(u64::MAX),
            input_uncached: Some(u64::MAX),
            cache_read: Some(u64::MAX),
            ..Usage::default()
        };
        assert!(matches!(cost(&u, &p), Err(CostError::Overflow { .. })));
    }
}
