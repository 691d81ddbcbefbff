//! Property tests: meters and the usage-chunk filter give the same result however the same
//! bytes are split into chunks (inside lines, inside `\r\n`, inside multi-byte characters).

use meshgate_providers::{meter_for, Metered, RequestFacts, UsageChunkFilter};
use meshgate_types::{Endpoint, Surface};
use proptest::prelude::*;
use proptest::sample::Index;

/// A JSON string literal for `s`.
fn js(s: &str) -> String {
    serde_json::Value::from(s).to_string()
}

fn chat_stream(text: &str) -> (String, String) {
    let t = js(text);
    let head = format!(
        "data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"role\":\"assistant\",\"content\":\"\"}},\"finish_reason\":null}}],\"usage\":null}}\n\n\
         : keep-alive\n\n\
         data:{{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{\"content\":{t}}},\"finish_reason\":null}}],\"usage\":null}}\n\n\
         data: {{\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[{{\"index\":0,\"delta\":{{}},\"finish_reason\":\"stop\"}}],\"usage\":null}}\n\n"
    );
    let usage = "data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[],\"usage\":{\"prompt_tokens\":1850,\"completion_tokens\":240,\"prompt_tokens_details\":{\"cached_tokens\":1536,\"audio_tokens\":0},\"completion_tokens_details\":{\"reasoning_tokens\":0}}}\n\n";
    let tail = "data: [DONE]\n\n";
    (format!("{head}{usage}{tail}"), format!("{head}{tail}"))
}

fn responses_stream(text: &str) -> String {
    let t = js(text);
    format!(
        "event: response.created\ndata: {{\"type\":\"response.created\",\"sequence_number\":0,\"response\":{{\"id\":\"resp_1\",\"status\":\"in_progress\",\"model\":\"gpt-5\",\"usage\":null}}}}\n\n\
         event: response.output_text.delta\ndata: {{\"type\":\"response.output_text.delta\",\"sequence_number\":1,\"delta\":{t}}}\n\n\
         event: response.completed\ndata: {{\"type\":\"response.completed\",\"sequence_number\":2,\"response\":{{\"id\":\"resp_1\",\"status\":\"completed\",\"model\":\"gpt-5\",\"output\":[{{\"type\":\"message\",\"content\":[{{\"type\":\"output_text\",\"text\":{t}}}]}}],\"usage\":{{\"input_tokens\":1200,\"input_tokens_details\":{{\"cached_tokens\":1024}},\"output_tokens\":300,\"output_tokens_details\":{{\"reasoning_tokens\":192}}}}}}}}\n\n"
    )
}

fn messages_stream(text: &str) -> String {
    let t = js(text);
    format!(
        "event: message_start\ndata: {{\"type\":\"message_start\",\"message\":{{\"id\":\"msg_1\",\"type\":\"message\",\"role\":\"assistant\",\"model\":\"claude-sonnet-4-5\",\"content\":[],\"stop_reason\":null,\"usage\":{{\"input_tokens\":412,\"cache_creation_input_tokens\":3000,\"cache_read_input_tokens\":10240,\"cache_creation\":{{\"ephemeral_5m_input_tokens\":1000,\"ephemeral_1h_input_tokens\":2000}},\"output_tokens\":1}}}}}}\n\n\
         event: ping\ndata: {{\"type\":\"ping\"}}\n\n\
         event: content_block_delta\ndata: {{\"type\":\"content_block_delta\",\"index\":0,\"delta\":{{\"type\":\"text_delta\",\"text\":{t}}}}}\n\n\
         event: message_delta\ndata: {{\"type\":\"message_delta\",\"delta\":{{\"stop_reason\":\"end_turn\"}},\"usage\":{{\"input_tokens\":980,\"cache_creation_input_tokens\":3500,\"output_tokens\":87}}}}\n\n\
         event: message_stop\ndata: {{\"type\":\"message_stop\"}}\n\n"
    )
}

fn complete_stream(text: &str) -> String {
    let t = js(text);
    format!(
        "event: completion\ndata: {{\"type\":\"completion\",\"completion\":{t},\"stop_reason\":null,\"model\":\"claude-2.1\"}}\n\n\
         event: completion\ndata: {{\"type\":\"completion\",\"completion\":\"\",\"stop_reason\":\"stop_sequence\",\"model\":\"claude-2.1\"}}\n\n"
    )
}

fn images_stream(text: &str) -> String {
    let t = js(text);
    format!(
        "event: image_generation.partial_image\ndata: {{\"type\":\"image_generation.partial_image\",\"b64_json\":{t},\"partial_image_index\":0}}\n\n\
         event: image_generation.completed\ndata: {{\"type\":\"image_generation.completed\",\"b64_json\":\"QkJC\",\"size\":\"1024x1024\",\"quality\":\"low\",\"usage\":{{\"input_tokens\":50,\"input_tokens_details\":{{\"text_tokens\":40,\"image_tokens\":10}},\"output_tokens\":272}}}}\n\n"
    )
}

fn speech_stream(text: &str) -> String {
    let t = js(text);
    format!(
        "data: {{\"type\":\"speech.audio.delta\",\"audio\":{t}}}\n\n\
         data: {{\"type\":\"speech.audio.done\",\"usage\":{{\"input_tokens\":14,\"output_tokens\":610,\"total_tokens\":624}}}}\n\n"
    )
}

fn transcript_stream(text: &str) -> String {
    let t = js(text);
    format!(
        "data: {{\"type\":\"transcript.text.delta\",\"delta\":{t}}}\n\n\
         data: {{\"type\":\"transcript.text.done\",\"text\":{t},\"usage\":{{\"type\":\"tokens\",\"input_tokens\":14,\"input_token_details\":{{\"audio_tokens\":10}},\"output_tokens\":5}}}}\n\n"
    )
}

fn anthropic_results(text: &str) -> String {
    let t = js(text);
    format!(
        "{{\"custom_id\":\"a-1\",\"result\":{{\"type\":\"succeeded\",\"message\":{{\"model\":\"claude-haiku-4-5\",\"content\":[{{\"type\":\"text\",\"text\":{t}}}],\"usage\":{{\"input_tokens\":10,\"output_tokens\":34}}}}}}}}\n\
         {{\"custom_id\":\"a-2\",\"result\":{{\"type\":\"canceled\"}}}}\n"
    )
}

fn openai_output(text: &str) -> String {
    let t = js(text);
    format!(
        "{{\"custom_id\":\"r1\",\"response\":{{\"status_code\":200,\"body\":{{\"model\":\"gpt-4o-mini\",\"choices\":[{{\"message\":{{\"content\":{t}}}}}],\"usage\":{{\"prompt_tokens\":20,\"completion_tokens\":5}}}}}},\"error\":null}}\n"
    )
}

/// (surface, endpoint, streaming, bytes with LF line endings)
fn fixtures(text: &str) -> Vec<(Surface, Endpoint, bool, String)> {
    use Endpoint::*;
    use Surface::*;
    vec![
        (OpenAi, ChatCompletions, true, chat_stream(text).0),
        (OpenAi, Responses, true, responses_stream(text)),
        (Anthropic, Messages, true, messages_stream(text)),
        (Anthropic, Complete, true, complete_stream(text)),
        (OpenAi, ImagesGenerations, true, images_stream(text)),
        (OpenAi, AudioSpeech, true, speech_stream(text)),
        (OpenAi, AudioTranscriptions, true, transcript_stream(text)),
        (Anthropic, BatchResults, false, anthropic_results(text)),
        (OpenAi, BatchResults, false, openai_output(text)),
    ]
}

fn facts() -> RequestFacts {
    RequestFacts {
        speech_input_chars: Some(12),
        image_n: Some(1),
        ..RequestFacts::default()
    }
}

fn with_endings(s: &str, ending: u8) -> String {
    match ending {
        0 => s.to_owned(),
        1 => s.replace('\n', "\r\n"),
        _ => s.replace('\n', "\r"),
    }
}

/// Cuts `bytes` at the given points (deduplicated, sorted).
fn split<'a>(bytes: &'a [u8], cuts: &[Index]) -> Vec<&'a [u8]> {
    let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
    at.sort_unstable();
    at.dedup();
    let mut out = Vec::new();
    let mut prev = 0;
    for a in at {
        out.push(&bytes[prev..a]);
        prev = a;
    }
    out.push(&bytes[prev..]);
    out
}

fn meter(
    surface: Surface,
    endpoint: Endpoint,
    streaming: bool,
    chunks: &[&[u8]],
) -> (Metered, bool) {
    let mut m = meter_for(surface, endpoint, streaming, &facts());
    for c in chunks {
        m.observe(c);
    }
    let mid = m.mid_event();
    (m.finish(), mid)
}

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("h\u{e9}llo \u{2603} \u{65e5}\u{672c}".to_owned()),
        "[a-z\u{e9}\u{2603}\u{65e5}\u{672c}\u{1f600} \"\\\\]{0,16}",
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(256))]

    #[test]
    fn meters_ignore_chunk_boundaries(
        text in text(),
        ending in 0u8..3,
        cuts in prop::collection::vec(any::<Index>(), 0..24),
        prefix in any::<Index>(),
        truncate in any::<bool>(),
    ) {
        for (surface, endpoint, streaming, s) in fixtures(&text) {
            let s = with_endings(&s, ending);
            let full = s.as_bytes();
            let bytes = if truncate { &full[..prefix.index(full.len() + 1)] } else { full };
            let whole = meter(surface, endpoint, streaming, &[bytes]);
            let pieces = meter(surface, endpoint, streaming, &split(bytes, &cuts));
            prop_assert_eq!(&pieces, &whole, "{:?} {:?}", surface, endpoint);
            if !truncate {
                prop_assert!(whole.0.complete, "{:?} {:?} complete", surface, endpoint);
                prop_assert!(!whole.1, "{:?} {:?} not mid-event", surface, endpoint);
                let has_usage = !whole.0.usage.is_empty() || !whole.0.batch_items.is_empty();
                prop_assert!(has_usage || endpoint == Endpoint::Complete);
            }
        }
    }

    #[test]
    fn filter_drops_exactly_the_usage_only_event(
        text in text(),
        ending in 0u8..3,
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        let (input, expected) = chat_stream(&text);
        let input = with_endings(&input, ending);
        let expected = with_endings(&expected, ending);
        let mut f = UsageChunkFilter::new();
        let mut out = Vec::new();
        for c in split(input.as_bytes(), &cuts) {
            out.extend_from_slice(&f.push(c));
        }
        out.extend_from_slice(&f.finish());
        prop_assert_eq!(String::from_utf8_lossy(&out), String::from_utf8_lossy(expected.as_bytes()));
    }

    #[test]
    fn filter_forwards_complete_events_without_waiting(
        text in text(),
        cuts in prop::collection::vec(any::<Index>(), 0..24),
    ) {
        // After each push, everything up to the last complete event has been sent.
        let (input, _) = chat_stream(&text);
        let bytes = input.as_bytes();
        let mut f = UsageChunkFilter::new();
        let mut sent = 0usize;
        let mut seen = 0usize;
        for c in split(bytes, &cuts) {
            sent += f.push(c).len();
            seen += c.len();
            let upto = &bytes[..seen];
            let complete_events = upto.windows(2).rposition(|w| w == b"\n\n").map_or(0, |i| i + 2);
            let usage_event = input.find("data: {\"id\":\"chatcmpl-1\",\"object\":\"chat.completion.chunk\",\"model\":\"gpt-4o-mini\",\"choices\":[]").unwrap();
            let usage_len = input[usage_event..].find("\n\n").unwrap() + 2;
            let dropped = if complete_events >= usage_event + usage_len { usage_len } else { 0 };
            prop_assert_eq!(sent, complete_events - dropped);
        }
    }

    #[test]
    fn arbitrary_bytes_never_panic(
        bytes in prop::collection::vec(any::<u8>(), 0..512),
        cuts in prop::collection::vec(any::<Index>(), 0..16),
    ) {
        for surface in [Surface::OpenAi, Surface::Anthropic] {
            for endpoint in Endpoint::ALL {
                for streaming in [false, true] {
                    let whole = meter(surface, endpoint, streaming, &[&bytes]);
                    let pieces = meter(surface, endpoint, streaming, &split(&bytes, &cuts));
                    prop_assert_eq!(pieces, whole);
                }
            }
        }
        let mut f = UsageChunkFilter::new();
        let mut out = Vec::new();
        for c in split(&bytes, &cuts) {
            out.extend_from_slice(&f.push(c));
        }
        out.extend_from_slice(&f.finish());
        prop_assert!(out.len() <= bytes.len());
    }
}

/// Every single cut position and every two-way cut around line endings, deterministically.
#[test]
fn every_cut_position() {
    let text = "h\u{e9}llo \u{2603} \u{65e5}\u{672c}";
    for ending in 0..3 {
        let (input, expected) = chat_stream(text);
        let input = with_endings(&input, ending);
        let expected = with_endings(&expected, ending);
        let bytes = input.as_bytes();
        for at in 0..=bytes.len() {
            let mut f = UsageChunkFilter::new();
            let mut out = f.push(&bytes[..at]).to_vec();
            out.extend_from_slice(&f.push(&bytes[at..]));
            out.extend_from_slice(&f.finish());
            assert_eq!(
                String::from_utf8_lossy(&out),
                expected,
                "filter cut at {at}, ending {ending}"
            );
        }
        for (surface, endpoint, streaming, s) in fixtures(text) {
            let s = with_endings(&s, ending);
            let bytes = s.as_bytes();
            let whole = meter(surface, endpoint, streaming, &[bytes]);
            for at in 0..=bytes.len() {
                let (a, b) = bytes.split_at(at);
                assert_eq!(
                    meter(surface, endpoint, streaming, &[a, b]),
                    whole,
                    "{surface:?} {endpoint:?} cut at {at}, ending {ending}"
                );
                // The prefix alone, whole and byte by byte.
                let one = meter(surface, endpoint, streaming, &[a]);
                let bytewise: Vec<&[u8]> = a.chunks(1).collect();
                assert_eq!(meter(surface, endpoint, streaming, &bytewise), one);
            }
        }
    }
}
