//! LiteLLM files: the committed fixture, and the real table in shared/ when it is present.

use super::{at_tier, builtin, cost_of, d, price, tokens};
use meshgate_pricing::{Catalog, ModelPrice, PriceSource, ServiceTier, TokenClass};
use std::path::Path;

const FIXTURE: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/tests/fixtures/litellm-small.json"
);
const REAL: &str = concat!(
    env!("CARGO_MANIFEST_DIR"),
    "/../../../shared/data/litellm-model-prices.json"
);

fn fixture() -> Catalog {
    let mut c = Catalog::new();
    if let Err(e) = c.load_litellm_json(FIXTURE) {
        panic!("fixture: {e}");
    }
    c
}

/// The real LiteLLM table, or `None` (and the test passes) when it is not checked out.
fn real() -> Option<Catalog> {
    if !Path::new(REAL).exists() {
        eprintln!("skipped: {REAL} is absent");
        return None;
    }
    let mut c = Catalog::new();
    let report = match c.load_litellm_json(REAL) {
        Ok(r) => r,
        Err(e) => panic!("{REAL}: {e}"),
    };
    assert!(report.models > 1000, "only {} models", report.models);
    Some(c)
}

#[test]
fn fixture_parses_exactly() {
    let mut c = Catalog::new();
    let report = c.load_litellm_json(FIXTURE).unwrap();
    // 21 keys: sample_spec is ignored, 3 image entries fold into gpt-image-1 and 2 into
    // azure/dall-e-3, the rerank-only entry prices nothing we bill, and the entry with a
    // negative price is dropped whole.
    assert_eq!(report.models, 14);
    let skipped: Vec<&str> = report.skipped.iter().map(|s| s.key.as_str()).collect();
    assert_eq!(
        skipped,
        vec!["example/negative-price", "example/rerank-only"]
    );
    assert!(c.price("sample_spec").is_none());

    let gpt_4o = price(&c, "gpt-4o");
    assert_eq!(gpt_4o.rates.input, Some(d("2.5e-6")));
    assert_eq!(gpt_4o.rates.output, Some(d("1e-5")));
    assert_eq!(gpt_4o.rates.cache_read, Some(d("1.25e-6")));
    assert_eq!(gpt_4o.batch.input, Some(d("1.25e-6")));
    assert_eq!(gpt_4o.priority.cache_read, Some(d("2.125e-6")));
    assert_eq!(gpt_4o.source, PriceSource::LiteLlmFile(FIXTURE.into()));
    assert_eq!(gpt_4o.id(), "litellm:litellm-small.json:gpt-4o@1970-01-01");

    let o3 = price(&c, "o3");
    assert_eq!(o3.flex.cache_read, Some(d("2.5e-7")));
    assert_eq!(o3.per_web_search, Some(d("0.01")));

    let sonnet = price(&c, "claude-sonnet-4-5");
    assert_eq!(sonnet.rates.cache_write, Some(d("3.75e-6")));
    assert_eq!(sonnet.rates.cache_write_long, Some(d("6e-6")));

    let image = price(&c, "gpt-image-1");
    assert_eq!(
        image.images.get(Some("high"), Some("1024x1536")),
        Some(d("0.25"))
    );
    assert_eq!(
        image.images.get(Some("low"), Some("1024-x-1024")),
        Some(d("0.011"))
    );
    assert_eq!(image.rates.output_image, Some(d("4e-5")));
    // Per-pixel entries become per-image prices: 1024 × 1792 × 7.19343e-08.
    let dalle = price(&c, "azure/dall-e-3");
    assert_eq!(
        dalle.images.get(Some("hd"), Some("1024x1792")),
        Some(d("0.1320000159744"))
    );
    assert_eq!(dalle.provider.as_deref(), Some("azure"));

    assert_eq!(price(&c, "whisper-1").per_second, Some(d("0.0001")));
    assert_eq!(price(&c, "tts-1").per_character, Some(d("0.000015")));
    assert_eq!(price(&c, "gpt-4o-mini-tts").per_second, Some(d("0.00025")));
}

#[test]
fn fixture_long_context_and_tiers() {
    let c = fixture();
    let p = price(&c, "gpt-5.4");
    assert_eq!(p.long_context.len(), 1);
    assert_eq!(p.long_context[0].above_tokens, 272_000);
    let u = |input| tokens(input, 0, 0, 1000);
    assert_eq!(
        cost_of(&c, "gpt-5.4", &u(272_000)).unwrap(),
        d("0.68") + d("0.015")
    );
    assert_eq!(
        cost_of(&c, "gpt-5.4", &u(272_001)).unwrap(),
        d("1.360005") + d("0.0225")
    );
    let batch = at_tier(u(272_001), ServiceTier::Batch);
    assert_eq!(
        cost_of(&c, "gpt-5.4", &batch).unwrap(),
        d("0.6800025") + d("0.01125")
    );
    let flex = at_tier(u(272_001), ServiceTier::Flex);
    assert_eq!(
        cost_of(&c, "gpt-5.4", &flex).unwrap(),
        d("0.6800025") + d("0.01125")
    );
    // Priority has no above-272k key: the above-272k standard rate applies.
    let priority = at_tier(u(272_001), ServiceTier::Priority);
    assert_eq!(
        cost_of(&c, "gpt-5.4", &priority).unwrap(),
        d("1.360005") + d("0.0225")
    );
    let bedrock = price(&c, "anthropic.claude-sonnet-4-20250514-v1:0");
    assert_eq!(bedrock.long_context[0].rates.cache_write, Some(d("7.5e-6")));
}

#[test]
fn fixture_worked_examples_match_builtin() {
    let c = fixture();
    let u = tokens(314, 1536, 0, 240);
    assert_eq!(cost_of(&c, "gpt-4o", &u).unwrap(), d("0.005105"));
    let u = tokens(412, 10240, 2048, 87);
    assert_eq!(cost_of(&c, "claude-sonnet-4-5", &u).unwrap(), d("0.013293"));
    let b = at_tier(u, ServiceTier::Batch);
    assert_eq!(
        cost_of(&c, "claude-sonnet-4-5", &b).unwrap(),
        d("0.0066465")
    );
}

#[test]
fn a_later_file_wins_model_by_model() {
    let mut c = builtin();
    c.load_litellm_json(FIXTURE).unwrap();
    assert_eq!(
        price(&c, "gpt-4o").id(),
        "litellm:litellm-small.json:gpt-4o@1970-01-01"
    );
    assert_eq!(price(&c, "gpt-4o-mini").source, PriceSource::Builtin);
    // The file lists the dated id itself: that exact entry wins over the builtin alias.
    assert_eq!(
        price(&c, "claude-sonnet-4-5-20250929").model,
        "claude-sonnet-4-5-20250929"
    );
    c.load_toml_str(
        "[[model]]\nname = \"gpt-4o\"\ninput_per_mtok = 1\n",
        "late.toml",
    )
    .unwrap();
    assert_eq!(price(&c, "gpt-4o").id(), "toml:late.toml:gpt-4o@1970-01-01");
}

#[test]
fn bad_files_are_errors() {
    let mut c = Catalog::new();
    assert!(c.load_litellm_json_str("not json", "x.json").is_err());
    assert!(c.load_litellm_json_str("[]", "x.json").is_err());
    assert!(c.load_litellm_json("/nonexistent/prices.json").is_err());
    let r = c.load_litellm_json_str("{}", "x.json").unwrap();
    assert_eq!(r.models, 0);
}

#[test]
fn real_file_parses() {
    let Some(c) = real() else { return };
    let gpt_4o = price(&c, "gpt-4o");
    assert_eq!(gpt_4o.rates.input, Some(d("2.5e-06")));
    assert_eq!(gpt_4o.rates.output, Some(d("1e-05")));
    assert_eq!(gpt_4o.rates.cache_read, Some(d("1.25e-06")));
    let sonnet = price(&c, "claude-sonnet-4-5");
    assert_eq!(sonnet.rates.cache_write_long, Some(d("6e-06")));
    let image = price(&c, "gpt-image-1");
    assert_eq!(
        image.images.get(Some("high"), Some("1024x1536")),
        Some(d("0.25"))
    );
    assert_eq!(
        image.images.get(Some("medium"), Some("1536x1024")),
        Some(d("0.063"))
    );
    let u = tokens(412, 10240, 2048, 87);
    assert_eq!(cost_of(&c, "claude-sonnet-4-5", &u).unwrap(), d("0.013293"));
    assert_eq!(
        cost_of(&c, "gpt-4o", &tokens(314, 1536, 0, 240)).unwrap(),
        d("0.005105")
    );
    let p = price(&c, "gpt-5.6");
    assert_eq!(p.long_context[0].rates.cache_write_long, Some(d("2e-05")));
    assert_eq!(
        p.long_context[0].priority.cache_write_long,
        Some(d("4e-05"))
    );
    assert_eq!(p.rates.cache_write_long, Some(d("1e-05")));
}

/// Every rate the built-in table shares with the real LiteLLM file must agree with it.
#[test]
fn builtin_agrees_with_the_real_file() {
    let Some(file) = real() else { return };
    let ours = builtin();
    let mut compared = 0;
    for model in ours.models() {
        // LiteLLM lists the Gemini API's prices as `gemini/<model>` (the plain names are
        // Vertex AI's, which differ in places).
        let listed = match price(&ours, model).provider.as_deref() {
            Some("gemini") => format!("gemini/{model}"),
            _ => model.to_string(),
        };
        let Some(theirs) = file.price(&listed).filter(|p| p.model == listed) else {
            continue;
        };
        let mine = price(&ours, model);
        compare(&mine, &theirs);
        compared += 1;
    }
    assert!(compared >= 20, "compared only {compared} models");
}

fn compare(mine: &ModelPrice, theirs: &ModelPrice) {
    let model = &mine.model;
    for tier in [
        ServiceTier::Standard,
        ServiceTier::Batch,
        ServiceTier::Flex,
        ServiceTier::Priority,
    ] {
        let listed = match tier {
            ServiceTier::Standard => &theirs.rates,
            ServiceTier::Batch => &theirs.batch,
            ServiceTier::Flex => &theirs.flex,
            ServiceTier::Priority => &theirs.priority,
        };
        let resolved = mine.rates_for(tier, 0);
        for class in TokenClass::ALL {
            if let Some(rate) = listed.get(class) {
                // LiteLLM lists a zero output rate for image models that bill image tokens.
                if class == TokenClass::Output && resolved.get(class).is_none() {
                    continue;
                }
                assert_eq!(
                    resolved.get(class),
                    Some(rate),
                    "{model} {tier:?} {class:?}"
                );
            }
        }
    }
    for (what, a, b) in [
        ("per_character", mine.per_character, theirs.per_character),
        ("per_second", mine.per_second, theirs.per_second),
        ("per_web_search", mine.per_web_search, theirs.per_web_search),
    ] {
        if b.is_some() {
            assert_eq!(a, b, "{model} {what}");
        }
    }
    for ((quality, size), p) in theirs.images.iter() {
        assert_eq!(
            mine.images.get(Some(quality), Some(size)),
            Some(*p),
            "{model} image"
        );
    }
}
