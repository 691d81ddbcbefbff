//! The built-in table: coverage, worked examples, every billing unit, tiers, lookup, dates.

use super::{at_tier, builtin, cost_of, d, price, tokens};
use chrono::NaiveDate;
use meshgate_pricing::{CostError, Mode, PriceSource, ServiceTier, Usage};

const REQUIRED: [&str; 32] = [
    "gpt-4o",
    "gpt-4o-mini",
    "gpt-4.1",
    "gpt-4.1-mini",
    "gpt-4.1-nano",
    "o3",
    "o3-mini",
    "o4-mini",
    "gpt-5",
    "gpt-5-mini",
    "gpt-5-nano",
    "text-embedding-3-small",
    "text-embedding-3-large",
    "text-embedding-ada-002",
    "dall-e-2",
    "dall-e-3",
    "gpt-image-1",
    "tts-1",
    "tts-1-hd",
    "gpt-4o-mini-tts",
    "whisper-1",
    "gpt-4o-transcribe",
    "gpt-4o-mini-transcribe",
    "claude-opus-4-5",
    "claude-opus-4-1",
    "claude-sonnet-4-5",
    "claude-sonnet-4",
    "claude-haiku-4-5",
    "claude-3-5-haiku",
    "claude-3-haiku",
    "claude-2.1",
    "gpt-4o-2024-05-13",
];

#[test]
fn covers_the_required_models_under_their_own_names() {
    let c = builtin();
    for model in REQUIRED {
        let p = price(&c, model);
        assert_eq!(p.model, model);
        assert_eq!(p.source, PriceSource::Builtin);
        assert!(p.prices_anything(), "{model}");
        assert!(p.id().starts_with(&format!("builtin:{model}@")));
    }
    assert_eq!(price(&c, "claude-2.1").mode, Mode::Completion);
    assert_eq!(price(&c, "gpt-image-1").mode, Mode::ImageGeneration);
}

#[test]
fn dated_ids_are_aliases() {
    let c = builtin();
    for (dated, base) in [
        ("gpt-4o-2024-08-06", "gpt-4o"),
        ("gpt-4o-2024-11-20", "gpt-4o"),
        ("gpt-4o-mini-2024-07-18", "gpt-4o-mini"),
        ("gpt-4.1-2025-04-14", "gpt-4.1"),
        ("o3-2025-04-16", "o3"),
        ("gpt-5-2025-08-07", "gpt-5"),
        ("claude-sonnet-4-5-20250929", "claude-sonnet-4-5"),
        ("claude-opus-4-5-20251101", "claude-opus-4-5"),
        ("claude-opus-4-1-20250805", "claude-opus-4-1"),
        ("claude-sonnet-4-20250514", "claude-sonnet-4"),
        ("claude-haiku-4-5-20251001", "claude-haiku-4-5"),
        ("claude-3-5-haiku-20241022", "claude-3-5-haiku"),
        ("claude-3-haiku-20240307", "claude-3-haiku"),
    ] {
        assert_eq!(price(&c, dated).id(), price(&c, base).id(), "{dated}");
    }
    // The first gpt-4o snapshot has its own (higher) price.
    assert_eq!(
        price(&c, "gpt-4o-2024-05-13").rates.input,
        Some(d("0.000005"))
    );
}

#[test]
fn worked_examples() {
    let c = builtin();
    // OpenAI: prompt 1850 (cached 1536), completion 240.
    let u = tokens(1850 - 1536, 1536, 0, 240);
    assert_eq!(cost_of(&c, "gpt-4o", &u).unwrap(), d("0.005105"));
    // Anthropic: input 412, 5m write 2048, read 10240, output 87.
    let u = tokens(412, 10240, 2048, 87);
    assert_eq!(cost_of(&c, "claude-sonnet-4-5", &u).unwrap(), d("0.013293"));
    let batch = at_tier(u, ServiceTier::Batch);
    assert_eq!(
        cost_of(&c, "claude-sonnet-4-5", &batch).unwrap(),
        d("0.0066465")
    );
    assert_eq!(price(&c, "gpt-4o").id(), "builtin:gpt-4o@2024-05-13");
}

#[test]
fn batch_is_half_of_standard_when_not_listed() {
    let c = builtin();
    let u = Usage {
        input_uncached: Some(1000),
        cache_read: Some(1000),
        cache_write_5m: Some(1000),
        cache_write_1h: Some(1000),
        output: Some(1000),
        ..Usage::default()
    };
    for model in [
        "claude-opus-4-1",
        "claude-sonnet-4-5",
        "gpt-4o",
        "gpt-5",
        "o3-mini",
    ] {
        let standard = cost_of(&c, model, &u).unwrap();
        let batch = cost_of(&c, model, &at_tier(u.clone(), ServiceTier::Batch)).unwrap();
        assert_eq!(batch * d("2"), standard, "{model}");
    }
    // opus 4.1 lists no batch rates at all.
    assert_eq!(
        cost_of(&c, "claude-opus-4-1", &at_tier(u, ServiceTier::Batch)).unwrap(),
        d("0.0075") + d("0.00075") + d("0.009375") + d("0.015") + d("0.0375")
    );
}

#[test]
fn flex_and_priority_use_their_own_rates_or_standard() {
    let c = builtin();
    let u = tokens(1_000_000, 1_000_000, 0, 1_000_000);
    let o3 = |tier| cost_of(&c, "o3", &at_tier(u.clone(), tier)).unwrap();
    assert_eq!(o3(ServiceTier::Standard), d("10.5"));
    assert_eq!(o3(ServiceTier::Flex), d("5.25"));
    assert_eq!(o3(ServiceTier::Priority), d("18.375"));
    // gpt-4o has no flex rates: standard. claude has no priority rates: standard.
    let u = tokens(1_000_000, 0, 0, 0);
    assert_eq!(
        cost_of(&c, "gpt-4o", &at_tier(u.clone(), ServiceTier::Flex)).unwrap(),
        d("2.5")
    );
    assert_eq!(
        cost_of(&c, "gpt-4o", &at_tier(u.clone(), ServiceTier::Priority)).unwrap(),
        d("4.25")
    );
    assert_eq!(
        cost_of(&c, "claude-haiku-4-5", &at_tier(u, ServiceTier::Priority)).unwrap(),
        d("1")
    );
}

#[test]
fn long_context_switches_above_the_threshold() {
    let c = builtin();
    let at = |input: u64| {
        let mut u = tokens(input, 100_000, 0, 10_000);
        u.cache_write_1h = Some(50_000);
        u
    };
    // 50000 + 100000 + 50000 = 200000 prompt tokens: not above.
    let below = cost_of(&c, "claude-sonnet-4", &at(50_000)).unwrap();
    assert_eq!(below, d("0.15") + d("0.03") + d("0.3") + d("0.15"));
    let above = cost_of(&c, "claude-sonnet-4", &at(50_001)).unwrap();
    assert_eq!(above, d("0.300006") + d("0.06") + d("0.6") + d("0.225"));
    let batch = cost_of(
        &c,
        "claude-sonnet-4-5",
        &at_tier(at(50_001), ServiceTier::Batch),
    );
    assert_eq!(batch.unwrap() * d("2"), above);
}

#[test]
fn images_by_quality_and_size() {
    let c = builtin();
    let img = |quality: Option<&str>, size: Option<&str>, n: u64| Usage {
        images: Some(n),
        image_quality: quality.map(str::to_string),
        image_size: size.map(str::to_string),
        ..Usage::default()
    };
    let dalle3 = |u| cost_of(&c, "dall-e-3", &u);
    assert_eq!(
        dalle3(img(Some("hd"), Some("1024x1792"), 1)).unwrap(),
        d("0.12")
    );
    assert_eq!(
        dalle3(img(Some("hd"), Some("1792x1024"), 2)).unwrap(),
        d("0.24")
    );
    assert_eq!(dalle3(img(None, None, 1)).unwrap(), d("0.04"));
    assert_eq!(
        dalle3(img(Some("standard"), Some("1024x1792"), 3)).unwrap(),
        d("0.24")
    );
    assert!(matches!(
        dalle3(img(Some("hd"), Some("512x512"), 1)),
        Err(CostError::MissingRate { .. })
    ));
    assert_eq!(
        cost_of(&c, "dall-e-2", &img(None, Some("256x256"), 4)).unwrap(),
        d("0.064")
    );
    // gpt-image-1 per image: auto quality is medium (it has no "standard").
    let gi = |u| cost_of(&c, "gpt-image-1", &u);
    assert_eq!(gi(img(Some("auto"), Some("auto"), 1)).unwrap(), d("0.042"));
    assert_eq!(
        gi(img(Some("high"), Some("1024x1536"), 2)).unwrap(),
        d("0.5")
    );
    // ... and by tokens when the response carries usage.
    let u = Usage {
        input_uncached: Some(100),
        input_image: Some(60),
        output: Some(1000),
        output_image: Some(1000),
        images: Some(1),
        image_quality: Some("high".into()),
        ..Usage::default()
    };
    assert_eq!(
        gi(u.clone()).unwrap(),
        d("0.0002") + d("0.0006") + d("0.04")
    );
    let mut no_split = u;
    no_split.output_image = None;
    assert_eq!(gi(no_split).unwrap(), d("0.0002") + d("0.0006") + d("0.04"));
}

#[test]
fn audio_characters_and_seconds() {
    let c = builtin();
    let secs = |s: &str| Usage {
        audio_seconds: Some(d(s)),
        ..Usage::default()
    };
    assert_eq!(cost_of(&c, "whisper-1", &secs("60")).unwrap(), d("0.006"));
    assert_eq!(
        cost_of(&c, "whisper-1", &secs("12.5")).unwrap(),
        d("0.00125")
    );
    assert_eq!(
        cost_of(&c, "gpt-4o-mini-transcribe", &secs("60")).unwrap(),
        d("0.003")
    );
    // Transcription with token usage: audio in, text out; seconds are not added.
    let mut u = secs("60");
    u.input_uncached = Some(1000);
    u.input_audio = Some(900);
    u.output = Some(100);
    assert_eq!(cost_of(&c, "gpt-4o-transcribe", &u).unwrap(), d("0.0035"));
    let chars = |n: u64| Usage {
        characters: Some(n),
        ..Usage::default()
    };
    assert_eq!(cost_of(&c, "tts-1", &chars(1000)).unwrap(), d("0.015"));
    assert_eq!(cost_of(&c, "tts-1-hd", &chars(1000)).unwrap(), d("0.03"));
    // gpt-4o-mini-tts: text in at $0.60/M, audio out at $12/M.
    let u = Usage {
        input_uncached: Some(1000),
        output: Some(10_000),
        output_audio: Some(10_000),
        characters: Some(4000),
        ..Usage::default()
    };
    assert_eq!(cost_of(&c, "gpt-4o-mini-tts", &u).unwrap(), d("0.1206"));
    // Characters on a model priced only by tokens cannot be billed.
    assert!(cost_of(&c, "gpt-4o-mini-tts", &chars(10)).is_err());
}

#[test]
fn embeddings_and_web_search() {
    let c = builtin();
    let u = Usage {
        input_uncached: Some(1_000_000),
        ..Usage::default()
    };
    assert_eq!(
        cost_of(&c, "text-embedding-3-small", &u).unwrap(),
        d("0.02")
    );
    assert_eq!(
        cost_of(&c, "text-embedding-3-large", &u).unwrap(),
        d("0.13")
    );
    let mut u = tokens(1000, 0, 0, 100);
    u.web_search_requests = Some(3);
    assert_eq!(
        cost_of(&c, "claude-sonnet-4-5", &u).unwrap(),
        d("0.003") + d("0.0015") + d("0.03")
    );
    assert_eq!(
        cost_of(&c, "claude-3-haiku", &u),
        Err(CostError::MissingRate {
            model: "claude-3-haiku".into(),
            what: "web search requests".into()
        })
    );
}

#[test]
fn lookup_strategy() {
    let c = builtin();
    let id = |m: &str| c.price(m).map(|p| p.id());
    assert_eq!(id("openai/gpt-4o"), id("gpt-4o"));
    assert_eq!(
        id("anthropic/claude-sonnet-4-5-20250929"),
        id("claude-sonnet-4-5")
    );
    assert_eq!(id("gpt-4o-mini-2099-01-01"), id("gpt-4o-mini"));
    assert_eq!(id("claude-haiku-4-5-20991231"), id("claude-haiku-4-5"));
    assert_eq!(
        id("ft:gpt-4o-mini-2024-07-18:acme::abc123"),
        id("gpt-4o-mini")
    );
    assert_eq!(id("openai/gpt-4o-2024-05-13"), id("gpt-4o-2024-05-13"));
    assert_ne!(id("gpt-4o-2024-05-13"), id("gpt-4o"));
    assert_eq!(id("no-such-model"), None);
    assert_eq!(id(""), None);
    assert_eq!(id("gpt-4o-turbo"), None);
}

#[test]
fn effective_dates_pick_the_latest_price_not_after_the_date() {
    let c = builtin();
    let date = |y, m, d| NaiveDate::from_ymd_opt(y, m, d).unwrap();
    let input = |day| c.price_at("o3", day).map(|p| p.rates.input);
    assert_eq!(input(date(2025, 4, 15)), None);
    assert_eq!(input(date(2025, 4, 16)), Some(Some(d("0.00001"))));
    assert_eq!(input(date(2025, 6, 9)), Some(Some(d("0.00001"))));
    assert_eq!(input(date(2025, 6, 10)), Some(Some(d("0.000002"))));
    assert_eq!(price(&c, "o3").id(), "builtin:o3@2025-06-10");
    assert_eq!(
        c.price_at("o3-2025-04-16", date(2025, 5, 1)).unwrap().id(),
        "builtin:o3@2025-04-16"
    );
    assert_eq!(c.history("o3").len(), 2);
}

#[test]
fn toml_overrides_builtin_model_by_model() {
    let mut c = builtin();
    let report = c
        .load_toml_str(
            r#"
            [[model]]
            name = "gpt-4o"
            provider = "openai"
            effective_from = "2025-01-01"
            input_per_mtok = 2.0
            output_per_mtok = "8"

            [[model]]
            name = "house-model"
            aliases = ["house"]
            input_per_mtok = "1"
            output_per_mtok = "2"
            "#,
            "/etc/meshgate/prices.toml",
        )
        .unwrap();
    assert_eq!((report.models, report.prices), (2, 2));
    let p = price(&c, "gpt-4o");
    assert_eq!(p.id(), "toml:prices.toml:gpt-4o@2025-01-01");
    assert_eq!(p.rates.cache_read, None);
    // The override replaced every builtin price of gpt-4o, but its aliases still lead to it.
    assert_eq!(
        c.price_at("gpt-4o", NaiveDate::from_ymd_opt(2024, 6, 1).unwrap()),
        None
    );
    assert_eq!(price(&c, "gpt-4o-2024-08-06").id(), p.id());
    let u = tokens(1000, 1000, 0, 1000);
    assert_eq!(cost_of(&c, "gpt-4o", &u).unwrap(), d("0.012"));
    assert_eq!(price(&c, "house").model, "house-model");
    // Other builtin models are untouched.
    assert_eq!(price(&c, "gpt-4o-mini").source, PriceSource::Builtin);
}

#[test]
fn toml_file_on_disk() {
    let dir = std::env::temp_dir().join(format!("meshgate-pricing-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("mine.toml");
    std::fs::write(&path, "[[model]]\nname = \"x\"\nper_second = \"0.5\"\n").unwrap();
    let mut c = meshgate_pricing::Catalog::new();
    let r = c.load_toml(&path);
    let missing = c.load_toml(dir.join("missing.toml"));
    std::fs::remove_dir_all(&dir).unwrap();
    assert_eq!(r.unwrap().models, 1);
    assert_eq!(price(&c, "x").id(), "toml:mine.toml:x@1970-01-01");
    assert!(matches!(
        missing,
        Err(meshgate_pricing::PricingError::Io { .. })
    ));
    assert!(c
        .load_toml_str("[[model]]\nname = \"y\"\nbogus = 1\n", "t.toml")
        .is_err());
}

#[test]
fn the_documented_toml_example_parses() {
    let doc = include_str!("../../src/lib.rs");
    let lines: Vec<&str> = doc
        .lines()
        .skip_while(|l| *l != "//! ```toml")
        .skip(1)
        .take_while(|l| *l != "//! ```")
        .map(|l| l.strip_prefix("//!").unwrap_or(l).trim_start_matches(' '))
        .collect();
    assert!(lines.len() > 10);
    let mut c = meshgate_pricing::Catalog::new();
    let r = c.load_toml_str(&lines.join("\n"), "doc.toml").unwrap();
    assert_eq!((r.models, r.prices), (1, 2));
    assert_eq!(c.history("my-model-2025").len(), 2);
    let p = price(&c, "my-model");
    assert_eq!(p.rates.input, Some(d("0.000002")));
}

#[test]
fn describe_shows_rates_per_million_and_origin() {
    let c = builtin();
    let text = c.describe("anthropic/claude-sonnet-4-5-20250929").unwrap();
    for needle in [
        "claude-sonnet-4-5 (builtin:claude-sonnet-4-5@2025-09-29)",
        "matched:",
        "source:         built-in table",
        "provider:       anthropic",
        "standard  input 3, output 15, cache read 0.3, cache write 3.75, cache write (long TTL) 6",
        "batch     input 1.5, output 7.5, cache read 0.15, cache write 1.875, cache write (long TTL) 3",
        "priority  same as standard",
        "above 200000 prompt tokens: input 6, output 22.5",
        "web search:     0.01 per request",
        "aliases:        claude-sonnet-4-5-20250929",
    ] {
        assert!(text.contains(needle), "missing {needle:?} in\n{text}");
    }
    let text = c.describe("dall-e-3").unwrap();
    assert!(text.contains("hd/1024x1792 0.12"), "{text}");
    assert!(c
        .describe("tts-1")
        .unwrap()
        .contains("15 per 1M characters"));
    assert!(c
        .describe("o3")
        .unwrap()
        .contains("builtin:o3@2025-04-16, builtin:o3@2025-06-10"));
    assert_eq!(c.describe("nope"), None);
}
