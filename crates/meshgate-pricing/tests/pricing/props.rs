//! Properties: `cost` never panics, whatever the usage, and never falls as a count grows.

use super::builtin;
use meshgate_pricing::{cost, Catalog, ModelPrice, ServiceTier, Usage};
use proptest::prelude::*;
use rust_decimal::Decimal;
use std::sync::{Arc, OnceLock};

fn catalog() -> &'static Catalog {
    static CATALOG: OnceLock<Catalog> = OnceLock::new();
    CATALOG.get_or_init(builtin)
}

fn all_prices() -> Vec<Arc<ModelPrice>> {
    let c = catalog();
    c.models().into_iter().filter_map(|m| c.price(m)).collect()
}

fn tier() -> impl Strategy<Value = Option<ServiceTier>> {
    prop::option::of(prop_oneof![
        Just(ServiceTier::Standard),
        Just(ServiceTier::Batch),
        Just(ServiceTier::Flex),
        Just(ServiceTier::Priority),
    ])
}

fn any_count() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(prop_oneof![any::<u64>(), 0u64..2_000_000, Just(u64::MAX)])
}

fn any_text() -> impl Strategy<Value = Option<String>> {
    prop::option::of(prop_oneof![
        Just("1024x1024".to_string()),
        Just("hd".to_string()),
        Just("auto".to_string()),
        Just("18446744073709551615x18446744073709551615".to_string()),
        "\\PC{0,12}",
    ])
}

prop_compose! {
    fn any_usage()(
        a in any_count(), b in any_count(), c in any_count(), d in any_count(),
        e in any_count(), f in any_count(), g in any_count(), h in any_count(),
        i in any_count(), j in any_count(), k in any_count(), l in any_count(),
        m in any_count(),
        size in any_text(), quality in any_text(),
        seconds in prop::option::of((any::<i64>(), 0u32..=28)),
        service_tier in tier(),
    ) -> Usage {
        Usage {
            input_uncached: a, cache_read: b, cache_write_5m: c, cache_write_1h: d,
            output: e, reasoning: f, input_audio: g, input_image: h, output_audio: i,
            output_image: j, web_search_requests: k, images: l, characters: m,
            image_size: size, image_quality: quality,
            audio_seconds: seconds.map(|(n, s)| Decimal::new(n, s)),
            service_tier,
        }
    }
}

/// Token counts small enough to keep every model's cost well inside a decimal.
fn small() -> impl Strategy<Value = Option<u64>> {
    prop::option::of(0u64..1_000_000_000)
}

prop_compose! {
    fn token_usage()(
        a in small(), b in small(), c in small(), d in small(), e in small(),
        f in small(), g in small(), h in small(), i in small(),
        k in prop::option::of(0u64..1000),
        service_tier in tier(),
    ) -> Usage {
        Usage {
            input_uncached: a, cache_read: b, cache_write_5m: c, cache_write_1h: d,
            output: e, reasoning: e.map(|o| o / 2), input_audio: f, input_image: g,
            output_audio: h, output_image: i, web_search_requests: k,
            service_tier,
            ..Usage::default()
        }
    }
}

/// Adds `delta` to the `class`-th countable field of `u`.
fn bump(u: &Usage, class: usize, delta: u64) -> Usage {
    let mut u = u.clone();
    let field = match class {
        0 => &mut u.input_uncached,
        1 => &mut u.cache_read,
        2 => &mut u.cache_write_5m,
        3 => &mut u.cache_write_1h,
        4 => &mut u.output,
        5 => &mut u.input_audio,
        6 => &mut u.input_image,
        7 => &mut u.output_audio,
        8 => &mut u.output_image,
        _ => &mut u.web_search_requests,
    };
    *field = Some(field.unwrap_or(0) + delta);
    u
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn cost_never_panics(usage in any_usage()) {
        for price in all_prices() {
            let _ = cost(&usage, &price);
        }
    }

    #[test]
    fn cost_is_monotonic_in_every_token_class(
        usage in token_usage(),
        class in 0usize..10,
        delta in 1u64..5_000_000,
    ) {
        for price in all_prices().iter().filter(|p| p.has_token_rates()) {
            let mut base = usage.clone();
            if price.per_web_search.is_none() {
                base.web_search_requests = None;
            }
            if class == 9 && price.per_web_search.is_none() {
                continue;
            }
            let before = cost(&base, price);
            let after = cost(&bump(&base, class, delta), price);
            prop_assert!(before.is_ok(), "{}: {:?} for {:?}", price.model, before, base);
            prop_assert!(after.is_ok(), "{}: {:?}", price.model, after);
            if let (Ok(before), Ok(after)) = (before, after) {
                prop_assert!(after >= before, "{} class {class}: {before} > {after}", price.model);
            }
        }
    }

    #[test]
    fn cost_is_monotonic_in_images(n in 1u64..1000, delta in 1u64..1000, hd in any::<bool>()) {
        let c = catalog();
        let Some(price) = c.price("dall-e-3") else {
            return Err(TestCaseError::fail("no dall-e-3"));
        };
        let usage = |n| Usage {
            images: Some(n),
            image_quality: Some(if hd { "hd" } else { "standard" }.to_string()),
            image_size: Some("1024x1792".to_string()),
            ..Usage::default()
        };
        let before = cost(&usage(n), &price);
        let after = cost(&usage(n + delta), &price);
        prop_assert!(matches!((before, after), (Ok(b), Ok(a)) if a > b));
    }
}
