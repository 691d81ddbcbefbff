//! Tool-call ids across formats, and the stop/finish reason maps.
//!
//! Anthropic ids must match `^[a-zA-Z0-9_-]+$`; OpenAI ids are free strings (other
//! OpenAI-compatible providers send ids such as `functions.get_weather:0`). Ids going to an
//! Anthropic side are [`sanitize_tool_id`]d and ids going to an OpenAI side are
//! [`restore_tool_id`]d. The encoding is reversible and stateless, so a conversation that
//! crosses the boundary several times (client history replayed turn after turn) maps every id
//! the same way each time without gateway state, and the provider that minted an id gets it
//! back byte for byte.

use std::borrow::Cow;

/// Marks an encoded id. A valid id that happens to start with it is encoded too, so decoding
/// is unambiguous.
const PREFIX: &str = "mgid_";

fn valid_char(b: u8) -> bool {
    b.is_ascii_alphanumeric() || b == b'_' || b == b'-'
}

/// An id Anthropic accepts: valid ids unchanged; others `mgid_` + the id with `-` and every
/// other byte outside `[A-Za-z0-9_]` written as `-XX` (hex).
pub fn sanitize_tool_id(id: &str) -> Cow<'_, str> {
    if !id.is_empty() && id.bytes().all(valid_char) && !id.starts_with(PREFIX) {
        return Cow::Borrowed(id);
    }
    let mut out = String::with_capacity(PREFIX.len() + id.len() * 2);
    out.push_str(PREFIX);
    for b in id.bytes() {
        if b.is_ascii_alphanumeric() || b == b'_' {
            out.push(char::from(b));
        } else {
            out.push('-');
            out.push(hex_digit(b >> 4));
            out.push(hex_digit(b & 0xf));
        }
    }
    Cow::Owned(out)
}

/// The inverse of [`sanitize_tool_id`]; ids that are not (well-formed) encodings unchanged.
pub fn restore_tool_id(id: &str) -> Cow<'_, str> {
    let Some(rest) = id.strip_prefix(PREFIX) else {
        return Cow::Borrowed(id);
    };
    let bytes = rest.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'-' {
            let (Some(h), Some(l)) = (
                bytes.get(i + 1).and_then(|b| hex_value(*b)),
                bytes.get(i + 2).and_then(|b| hex_value(*b)),
            ) else {
                return Cow::Borrowed(id);
            };
            out.push(h << 4 | l);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    match String::from_utf8(out) {
        Ok(s) => Cow::Owned(s),
        Err(_) => Cow::Borrowed(id),
    }
}

fn hex_digit(n: u8) -> char {
    char::from(b"0123456789ABCDEF"[usize::from(n & 0xf)])
}

fn hex_value(b: u8) -> Option<u8> {
    match b {
        b'0'..=b'9' => Some(b - b'0'),
        b'A'..=b'F' => Some(b - b'A' + 10),
        _ => None,
    }
}

/// AN `stop_reason` -> OA `finish_reason`. `pause_turn` (a server-tool turn the AN client would
/// resend) has no OA equivalent: `stop`. Unknown reasons read as `stop`.
pub(crate) fn finish_reason_for(stop_reason: Option<&str>) -> &'static str {
    match stop_reason {
        Some("max_tokens" | "model_context_window_exceeded") => "length",
        Some("tool_use") => "tool_calls",
        Some("refusal") => "content_filter",
        _ => "stop",
    }
}

/// OA `finish_reason` -> AN `stop_reason`. OA does not say which stop string matched, so
/// `stop` is always `end_turn`.
pub(crate) fn stop_reason_for(finish_reason: Option<&str>) -> &'static str {
    match finish_reason {
        Some("length") => "max_tokens",
        Some("tool_calls" | "function_call") => "tool_use",
        Some("content_filter") => "refusal",
        _ => "end_turn",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_round_trip() {
        for id in [
            "call_7Qm",
            "toolu_01A-b",
            "functions.get_weather:0",
            "",
            "mgid_x",
            "caf\u{e9} \u{2603}",
            "a-2Eb",
        ] {
            let s = sanitize_tool_id(id);
            assert!(!s.is_empty() && s.bytes().all(valid_char), "{s}");
            assert_eq!(restore_tool_id(&s), id);
        }
        assert_eq!(sanitize_tool_id("call_1"), "call_1");
        assert_eq!(
            sanitize_tool_id("functions.get:0"),
            "mgid_functions-2Eget-3A0"
        );
        // Not an encoding: unchanged.
        assert_eq!(restore_tool_id("mgid_bad-zz"), "mgid_bad-zz");
    }
}
