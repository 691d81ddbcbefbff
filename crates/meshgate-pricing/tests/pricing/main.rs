//! Integration tests of meshgate-pricing: the built-in table, pricing files and properties.

mod builtin;
mod files;
mod props;

use meshgate_pricing::{cost, Catalog, CostError, ModelPrice, Money, ServiceTier, Usage};
use rust_decimal::Decimal;
use std::str::FromStr;
use std::sync::Arc;

/// An exact decimal from text.
pub fn d(s: &str) -> Decimal {
    match Decimal::from_str(s) {
        Ok(v) => v,
        Err(e) => panic!("bad decimal {s}: {e}"),
    }
}

/// The built-in catalog.
pub fn builtin() -> Catalog {
    match Catalog::builtin() {
        Ok(c) => c,
        Err(e) => panic!("builtin table: {e}"),
    }
}

/// The price a catalog has for `model` today.
pub fn price(catalog: &Catalog, model: &str) -> Arc<ModelPrice> {
    match catalog.price(model) {
        Some(p) => p,
        None => panic!("no price for {model}"),
    }
}

/// The cost of `usage` on `model`, as a decimal.
pub fn cost_of(catalog: &Catalog, model: &str, usage: &Usage) -> Result<Decimal, CostError> {
    cost(usage, &price(catalog, model)).map(Money::amount)
}

/// Tokens only usage.
pub fn tokens(input: u64, cache_read: u64, cache_write_5m: u64, output: u64) -> Usage {
    Usage {
        input_uncached: Some(input),
        cache_read: Some(cache_read),
        cache_write_5m: Some(cache_write_5m),
        output: Some(output),
        ..Usage::default()
    }
}

/// `usage` billed at `tier`.
pub fn at_tier(mut usage: Usage, tier: ServiceTier) -> Usage {
    usage.service_tier = Some(tier);
    usage
}
