//! `stream_cut_error`: the bytes appended when an upstream stream ended early, so the client
//! sees a protocol-correct error rather than a clean end.
//!
//! - Chat Completions and the other OpenAI streams: a data-only event with a top-level
//!   `error` object, which openai-python raises as `APIError`.
//! - Responses: an `error` event carrying both the documented flat fields (`code`, `message`,
//!   `param`, `sequence_number`) and the nested `error` object the live API sends; the nested
//!   object is what makes openai-python raise `APIError` (its stream decoder only raises on a
//!   truthy `error` key), the flat fields satisfy typed clients. `sequence_number` is 0: the
//!   gateway does not track the upstream numbering and no SDK checks it for monotonicity.
//! - Anthropic (Messages, Text Completions): an `error` event with an `api_error`.

use bytes::Bytes;
use meshgate_types::{Endpoint, Surface};

/// The `code` clients see on a cut stream.
pub const STREAM_CUT_CODE: &str = "upstream_stream_cut";

/// The bytes to append when the upstream stream ended early. If `mid_event` (see
/// [`crate::Meter::mid_event`]), they start with `\n\n` so the partial event is closed first.
/// Pass the surface and endpoint the **client** speaks.
pub fn stream_cut_error(
    surface: Surface,
    endpoint: Endpoint,
    mid_event: bool,
    message: &str,
) -> Bytes {
    let msg = serde_json::to_string(message)
        .unwrap_or_else(|_| "\"the upstream stream ended early\"".to_owned());
    let mut out = String::with_capacity(256 + 2 * msg.len());
    if mid_event {
        out.push_str("\n\n");
    }
    let anthropic = matches!(endpoint, Endpoint::Messages | Endpoint::Complete)
        || (surface == Surface::Anthropic
            && !matches!(endpoint, Endpoint::ChatCompletions | Endpoint::Responses));
    if anthropic {
        out.push_str("event: error\ndata: {\"type\":\"error\",\"error\":{\"type\":\"api_error\",\"message\":");
        out.push_str(&msg);
        out.push_str("}}\n\n");
    } else if endpoint == Endpoint::Responses {
        out.push_str("event: error\ndata: {\"type\":\"error\",\"code\":\"");
        out.push_str(STREAM_CUT_CODE);
        out.push_str("\",\"message\":");
        out.push_str(&msg);
        out.push_str(",\"param\":null,\"sequence_number\":0,\"error\":{\"type\":\"server_error\",\"code\":\"");
        out.push_str(STREAM_CUT_CODE);
        out.push_str("\",\"message\":");
        out.push_str(&msg);
        out.push_str(",\"param\":null}}\n\n");
    } else {
        out.push_str("data: {\"error\":{\"message\":");
        out.push_str(&msg);
        out.push_str(",\"type\":\"server_error\",\"param\":null,\"code\":\"");
        out.push_str(STREAM_CUT_CODE);
        out.push_str("\"}}\n\n");
    }
    Bytes::from(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::Value;

    fn data_json(b: &[u8]) -> Value {
        let s = std::str::from_utf8(b).unwrap();
        let line = s.lines().find(|l| l.starts_with("data: ")).unwrap();
        serde_json::from_str(&line["data: ".len()..]).unwrap()
    }

    #[test]
    fn chat_shape() {
        let b = stream_cut_error(
            Surface::OpenAi,
            Endpoint::ChatCompletions,
            false,
            "upstream \"cut\" \u{2603}",
        );
        assert!(b.starts_with(b"data: {\"error\""));
        assert!(b.ends_with(b"\n\n"));
        let v = data_json(&b);
        assert_eq!(v["error"]["message"], "upstream \"cut\" \u{2603}");
        assert_eq!(v["error"]["type"], "server_error");
        assert_eq!(v["error"]["code"], STREAM_CUT_CODE);
    }

    #[test]
    fn responses_shape() {
        let b = stream_cut_error(Surface::OpenAi, Endpoint::Responses, true, "cut");
        assert!(b.starts_with(b"\n\nevent: error\ndata: "));
        let v = data_json(&b);
        assert_eq!(v["type"], "error");
        assert_eq!(v["message"], "cut");
        assert_eq!(v["code"], STREAM_CUT_CODE);
        assert_eq!(v["sequence_number"], 0);
        assert!(v["param"].is_null());
        assert_eq!(v["error"]["message"], "cut");
    }

    #[test]
    fn anthropic_shape() {
        for e in [Endpoint::Messages, Endpoint::Complete] {
            let b = stream_cut_error(Surface::Anthropic, e, false, "cut");
            assert!(b.starts_with(b"event: error\ndata: "));
            let v = data_json(&b);
            assert_eq!(v["type"], "error");
            assert_eq!(v["error"]["type"], "api_error");
            assert_eq!(v["error"]["message"], "cut");
        }
    }

    #[test]
    fn other_openai_streams_use_the_data_error() {
        for e in [
            Endpoint::ImagesGenerations,
            Endpoint::AudioSpeech,
            Endpoint::AudioTranscriptions,
        ] {
            let b = stream_cut_error(Surface::OpenAi, e, false, "cut");
            assert!(b.starts_with(b"data: {\"error\""));
        }
    }
}
