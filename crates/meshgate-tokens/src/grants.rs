//! What a token may do: [`Grants`] (per API) and [`LlmGrant`] (which models), plus the
//! model pattern syntax shared by participant and delegation tokens ([`model_allowed`]).
//!
//! The syntax is documented on [`pattern_matches`].

use serde::{Deserialize, Serialize};

/// The token's `api` claim: one optional grant per API. Grants for APIs this gateway does
/// not know are ignored on decode, so tokens minted for other services still parse.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Grants {
    /// Use of the LLM proxy. `None`: the token grants no LLM access at all.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub llm: Option<LlmGrant>,
}

/// Access to the LLM proxy, optionally narrowed to some models.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct LlmGrant {
    /// Model patterns ([`pattern_matches`] syntax). `None`: every model; empty: none.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
}

impl LlmGrant {
    /// Whether this grant allows `provider`'s `model`.
    pub fn allows(&self, provider: &str, model: &str) -> bool {
        model_allowed(self.models.as_deref(), provider, model)
    }
}

/// Whether a model list allows `provider`'s `model`: `None` allows all, an empty list none,
/// otherwise any matching pattern ([`pattern_matches`]).
pub fn model_allowed(patterns: Option<&[String]>, provider: &str, model: &str) -> bool {
    match patterns {
        None => true,
        Some(list) => list.iter().any(|p| pattern_matches(p, provider, model)),
    }
}

/// Whether one pattern allows `provider`'s `model`.
///
/// # Pattern syntax
/// - `*` alone allows every model of every provider.
/// - A pattern with a `/` is matched against the full `provider/model` string:
///   `anthropic/claude-sonnet-4-5` exactly, `openai/*` any OpenAI model,
///   `openai/gpt-4o*` any OpenAI model whose name starts with `gpt-4o`.
/// - A pattern without a `/` is matched against the model name alone, under any provider:
///   `gpt-4o-mini` allows `openai/gpt-4o-mini` and `azure/gpt-4o-mini`. Write the
///   provider in when that matters.
/// - Only a trailing `*` is special (prefix match); a `*` elsewhere, `?` and `[` are
///   literal characters. Matching is case-sensitive.
///
/// Model names may themselves contain `/` (`openrouter/meta-llama/llama-3-70b`); the
/// first `/` of the full string separates the provider, so write such patterns with the
/// provider (`openrouter/meta-llama/*`).
pub fn pattern_matches(pattern: &str, provider: &str, model: &str) -> bool {
    if pattern == "*" {
        return true;
    }
    match pattern.split_once('/') {
        Some((p_provider, p_model)) => {
            // Compare piecewise rather than formatting `provider/model` on the hot path.
            provider == p_provider
                && match p_model.strip_suffix('*') {
                    Some(prefix) => model.starts_with(prefix),
                    None => model == p_model,
                }
        }
        None => match pattern.strip_suffix('*') {
            Some(prefix) => model.starts_with(prefix),
            None => model == pattern,
        },
    }
}
