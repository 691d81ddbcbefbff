//! Which API surface a call arrived on and which endpoint of it: the key that chooses
//! error shapes, meters and pricing rules.

use serde::{Deserialize, Serialize};

/// The API dialect a client speaks; it chooses the error shape and the upstream provider.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Surface {
    OpenAi,
    Anthropic,
}

impl Surface {
    pub fn as_str(self) -> &'static str {
        match self {
            Surface::OpenAi => "openai",
            Surface::Anthropic => "anthropic",
        }
    }

    pub fn parse(s: &str) -> Option<Surface> {
        match s {
            "openai" => Some(Surface::OpenAi),
            "anthropic" => Some(Surface::Anthropic),
            _ => None,
        }
    }
}

/// Every endpoint meshgate knows how to meter. `Other` is a pass-through sub-path that is
/// forwarded but carries no usage of its own (retrieving a batch, listing models, ...).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Endpoint {
    ChatCompletions,
    Responses,
    ResponsesCompact,
    ResponsesInputTokens,
    Embeddings,
    AudioSpeech,
    AudioTranscriptions,
    AudioTranslations,
    ImagesGenerations,
    ImagesEdits,
    ImagesVariations,
    Models,
    Messages,
    CountTokens,
    Batches,
    BatchResults,
    Complete,
    Other,
}

impl Endpoint {
    pub const ALL: [Endpoint; 18] = [
        Endpoint::ChatCompletions,
        Endpoint::Responses,
        Endpoint::ResponsesCompact,
        Endpoint::ResponsesInputTokens,
        Endpoint::Embeddings,
        Endpoint::AudioSpeech,
        Endpoint::AudioTranscriptions,
        Endpoint::AudioTranslations,
        Endpoint::ImagesGenerations,
        Endpoint::ImagesEdits,
        Endpoint::ImagesVariations,
        Endpoint::Models,
        Endpoint::Messages,
        Endpoint::CountTokens,
        Endpoint::Batches,
        Endpoint::BatchResults,
        Endpoint::Complete,
        Endpoint::Other,
    ];

    pub fn as_str(self) -> &'static str {
        match self {
            Endpoint::ChatCompletions => "chat_completions",
            Endpoint::Responses => "responses",
            Endpoint::ResponsesCompact => "responses_compact",
            Endpoint::ResponsesInputTokens => "responses_input_tokens",
            Endpoint::Embeddings => "embeddings",
            Endpoint::AudioSpeech => "audio_speech",
            Endpoint::AudioTranscriptions => "audio_transcriptions",
            Endpoint::AudioTranslations => "audio_translations",
            Endpoint::ImagesGenerations => "images_generations",
            Endpoint::ImagesEdits => "images_edits",
            Endpoint::ImagesVariations => "images_variations",
            Endpoint::Models => "models",
            Endpoint::Messages => "messages",
            Endpoint::CountTokens => "count_tokens",
            Endpoint::Batches => "batches",
            Endpoint::BatchResults => "batch_results",
            Endpoint::Complete => "complete",
            Endpoint::Other => "other",
        }
    }

    pub fn parse(s: &str) -> Option<Endpoint> {
        Endpoint::ALL.into_iter().find(|e| e.as_str() == s)
    }

    /// Whether a call to this endpoint produces usage that is billed.
    pub fn is_billable(self) -> bool {
        !matches!(
            self,
            Endpoint::ResponsesInputTokens
                | Endpoint::CountTokens
                | Endpoint::Models
                | Endpoint::Batches
                | Endpoint::Other
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn names_round_trip() {
        for e in Endpoint::ALL {
            assert_eq!(Endpoint::parse(e.as_str()), Some(e));
        }
    }
}
