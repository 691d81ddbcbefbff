//! The model pattern syntax, as a table.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshgate_tokens::{model_allowed, pattern_matches, LlmGrant};

#[test]
fn pattern_table() {
    // (pattern, provider, model, allowed)
    let table: &[(&str, &str, &str, bool)] = &[
        ("*", "openai", "gpt-4o", true),
        ("*", "anthropic", "claude-sonnet-4-5", true),
        ("openai/*", "openai", "gpt-4o", true),
        ("openai/*", "openai", "o3-mini", true),
        ("openai/*", "anthropic", "gpt-4o", false),
        ("openai/*", "openai-compat", "gpt-4o", false),
        ("openai/gpt-4o*", "openai", "gpt-4o", true),
        ("openai/gpt-4o*", "openai", "gpt-4o-mini", true),
        ("openai/gpt-4o*", "openai", "gpt-4", false),
        ("openai/gpt-4o*", "azure", "gpt-4o", false),
        (
            "anthropic/claude-sonnet-4-5",
            "anthropic",
            "claude-sonnet-4-5",
            true,
        ),
        (
            "anthropic/claude-sonnet-4-5",
            "anthropic",
            "claude-sonnet-4-5-20250929",
            false,
        ),
        (
            "anthropic/claude-sonnet-4-5",
            "anthropic",
            "claude-sonnet-4",
            false,
        ),
        // Bare patterns match the model name under any provider.
        ("gpt-4o-mini", "openai", "gpt-4o-mini", true),
        ("gpt-4o-mini", "azure", "gpt-4o-mini", true),
        ("gpt-4o-mini", "openai", "gpt-4o", false),
        ("gpt-4o*", "azure", "gpt-4o-2024-08-06", true),
        ("gpt-4o*", "openai", "o3", false),
        // Only a trailing `*` is special; matching is case-sensitive.
        ("openai/gpt-*-mini", "openai", "gpt-4o-mini", false),
        ("openai/gpt-*-mini", "openai", "gpt-*-mini", true),
        ("*/gpt-4o", "openai", "gpt-4o", false),
        ("OpenAI/gpt-4o", "openai", "gpt-4o", false),
        // Model names with slashes: the provider is before the first `/`.
        (
            "openrouter/meta-llama/*",
            "openrouter",
            "meta-llama/llama-3-70b",
            true,
        ),
        (
            "openrouter/meta-llama/llama-3-70b",
            "openrouter",
            "meta-llama/llama-3-70b",
            true,
        ),
        (
            "meta-llama/llama-3-70b",
            "openrouter",
            "meta-llama/llama-3-70b",
            false,
        ),
        // Degenerate patterns match nothing.
        ("", "openai", "gpt-4o", false),
        ("openai/", "openai", "gpt-4o", false),
    ];
    for &(pattern, provider, model, want) in table {
        assert_eq!(
            pattern_matches(pattern, provider, model),
            want,
            "pattern {pattern:?} vs {provider}/{model}"
        );
    }
}

#[test]
fn absent_list_allows_all_and_empty_list_allows_none() {
    let all = LlmGrant { models: None };
    assert!(all.allows("openai", "gpt-4o"));
    assert!(all.allows("anything", "at-all"));

    let none = LlmGrant {
        models: Some(vec![]),
    };
    assert!(!none.allows("openai", "gpt-4o"));

    let some = LlmGrant {
        models: Some(vec!["openai/gpt-4o-mini".into(), "anthropic/*".into()]),
    };
    assert!(some.allows("openai", "gpt-4o-mini"));
    assert!(some.allows("anthropic", "claude-haiku-4-5"));
    assert!(!some.allows("openai", "gpt-4o"));
    assert!(!model_allowed(Some(&[]), "openai", "gpt-4o"));
    assert!(model_allowed(None, "openai", "gpt-4o"));
}
