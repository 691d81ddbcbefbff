//! Model prices (built-in, TOML, LiteLLM JSON) and the exact cost of a [`Usage`].
//!
//! Pure code: no HTTP, no storage, no floats. Every amount is a [`rust_decimal::Decimal`];
//! numbers in pricing files are parsed from their source text (`3e-06` is exactly
//! 0.000003), never through `f64`.
//!
//! ```
//! use meshgate_pricing::{cost, Catalog};
//! use meshgate_types::Usage;
//!
//! let catalog = Catalog::builtin()?;
//! let price = catalog.price("openai/gpt-4o-2024-08-06").ok_or("unpriced")?;
//! let usage = Usage {
//!     input_uncached: Some(314), // prompt 1850 − cached 1536
//!     cache_read: Some(1536),
//!     output: Some(240),
//!     ..Usage::default()
//! };
//! assert_eq!(cost(&usage, &price)?.to_string(), "0.005105");
//! assert_eq!(price.id(), "builtin:gpt-4o@2024-05-13");
//! # Ok::<(), Box<dyn std::error::Error>>(())
//! ```
//!
//! # Layout
//! - `price`: [`ModelPrice`] (rates of one model from one source, effective from a date),
//!   [`TokenRates`], [`LongContext`], [`ImagePrices`], and how a service tier and a long
//!   prompt choose rates ([`ModelPrice::rates_for`]).
//! - `cost`: [`cost`], the formula, and [`CostError`].
//! - `catalog`: [`Catalog`], loading (later loads win, model by model), effective dates and
//!   the lookup strategy; [`Catalog::describe`] for `meshgate pricing check MODEL`.
//! - `toml_format`: meshgate's TOML pricing format (below); `src/builtin.toml` is written in it.
//! - `litellm`: LiteLLM's `model_prices_and_context_window.json`.
//! - `decimal`: exact parsing of number text.
//!
//! # Billing rules
//! - Token classes of [`Usage`] are disjoint and each is billed once at its rate; reasoning is
//!   inside `output`. Missing cache-read or cache-write rates fall back to the input rate, a
//!   missing long-TTL write rate to the write rate. Audio/image token subsets are billed at
//!   their own rate instead of the base one, only when the price lists that rate.
//! - Service tiers: a tier's listed rates win; a class without one is 0.5 × standard for
//!   batch and the standard rate for flex and priority.
//! - Long context: when [`Usage::prompt_total`] is `>` a threshold, every class with an
//!   above-threshold rate uses it (with the tier's above-threshold rate when listed).
//! - Other units (`audio_seconds`, `characters`, `images`) are billed when the usage has no
//!   tokens or the model has no token rates. Images: a missing or `auto` size means
//!   `1024x1024`; a missing or `auto` quality tries `standard`, then `medium`; then a
//!   quality-less entry for the size, then a catch-all price, then a per-pixel rate. A size
//!   with no price is an error.
//! - `web_search_requests` are always billed at the per-request fee.
//! - Anything consumed without a rate is [`CostError::MissingRate`], never zero.
//!
//! # meshgate's TOML pricing format
//! Token prices are USD **per 1M tokens**; `per_mchars` is USD per 1M characters;
//! `per_second`, `per_web_search` and `per_image` are USD per unit. Numbers may be written as
//! TOML numbers or strings; both are read exactly. Unknown keys are errors (typos must not
//! silently drop a price).
//!
//! ```toml
//! [[model]]
//! name = "my-model"              # the name clients send
//! aliases = ["my-model-2025"]    # optional: other names for the same price
//! provider = "openai"            # optional
//! mode = "chat"                  # chat (default), responses, completion, embedding,
//!                                # image_generation, audio_speech, audio_transcription, ...
//! effective_from = "2025-01-01"  # optional; without it the price applies to any date
//! input_per_mtok = "2.50"
//! output_per_mtok = 10
//! cache_read_per_mtok = "1.25"
//! cache_write_per_mtok = "3.125"     # base-TTL writes (Anthropic 5m, OpenAI 30m)
//! cache_write_long_per_mtok = "5"    # long-TTL writes (Anthropic 1h, OpenAI 12h)
//! input_audio_per_mtok = "40"        # also output_audio_, input_image_, output_image_per_mtok
//! per_web_search = "0.01"            # USD per web search call
//! per_mchars = "15"                  # USD per 1M characters (text to speech)
//! per_second = "0.0001"              # USD per second of audio (transcription)
//! # USD per image: "quality/WxH", "WxH" (any quality) or "*" (any image)
//! per_image = { "standard/1024x1024" = "0.04", "hd/1024x1792" = "0.12" }
//! # Service tiers take the same *_per_mtok keys; batch defaults to 0.5 × standard,
//! # flex and priority to standard.
//! batch = { input_per_mtok = "1.25", output_per_mtok = "5" }
//! priority = { input_per_mtok = "4.25", output_per_mtok = "17" }
//! # Rates above a prompt size (tokens); may also be an array of tables, and may hold
//! # batch/flex/priority sub-tables.
//! long_context = { above_tokens = 200000, input_per_mtok = "5", output_per_mtok = "15" }
//!
//! [[model]]                      # a later price of the same model
//! name = "my-model"
//! effective_from = "2025-06-01"
//! input_per_mtok = "2"
//! output_per_mtok = "8"
//! ```
//!
//! # Sources and dates
//! [`Catalog::load_toml`] and [`Catalog::load_litellm_json`] replace, for every model name
//! the file lists, all earlier prices of that name: a later file wins. Within a file, a
//! model may have several prices with different `effective_from`; [`Catalog::price_at`]
//! picks the latest one on or before the date. LiteLLM entries carry no date and apply to
//! any date ([`undated`]). [`ModelPrice::id`] names model, source and date
//! (`builtin:gpt-4o@2024-05-13`, `litellm:prices.json:gpt-4o@1970-01-01`) for the ledger.
#![deny(clippy::float_arithmetic)]

mod catalog;
mod cost;
mod decimal;
mod litellm;
mod price;
mod toml_format;

pub use catalog::{undated, Catalog, LoadReport, PricingError, Skipped};
pub use cost::{cost, CostError};
pub use meshgate_types::{Money, ServiceTier, Usage};
pub use price::{
    ImagePrices, LongContext, Mode, ModelPrice, PriceSource, TokenClass, TokenRates,
    DEFAULT_IMAGE_QUALITIES, DEFAULT_IMAGE_SIZE,
};
