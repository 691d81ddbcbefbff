//! Provider error bodies in the client's native shape (translation.md §8); the gateway keeps
//! the HTTP status. The provider's message text is kept; bodies that are not the provider's
//! JSON error shape (an edge proxy's HTML, say) are carried as the message.

use bytes::Bytes;

use super::value::{obj, Json};

/// Longest non-JSON body text carried over as a message.
const RAW_MESSAGE_CAP: usize = 2048;

fn raw_message(body: &[u8]) -> String {
    let text = String::from_utf8_lossy(body);
    let text = text.trim();
    if text.is_empty() {
        return "upstream error".to_owned();
    }
    let mut end = text.len().min(RAW_MESSAGE_CAP);
    while !text.is_char_boundary(end) {
        end -= 1;
    }
    text[..end].to_owned()
}

/// OA (type, code) for an AN error type.
pub(crate) fn openai_kind(an_type: &str, message: &str) -> (&'static str, Option<&'static str>) {
    match an_type {
        "invalid_request_error" => ("invalid_request_error", None),
        "authentication_error" => ("invalid_request_error", Some("invalid_api_key")),
        "billing_error" => ("insufficient_quota", Some("insufficient_quota")),
        "permission_error" => ("permission_error", None),
        "not_found_error" if message.contains("model") => {
            ("invalid_request_error", Some("model_not_found"))
        }
        "not_found_error" => ("invalid_request_error", None),
        "request_too_large" => ("invalid_request_error", Some("request_too_large")),
        "rate_limit_error" => ("requests", Some("rate_limit_exceeded")),
        "timeout_error" => ("server_error", Some("timeout")),
        "overloaded_error" => ("server_error", Some("overloaded")),
        _ => ("server_error", None),
    }
}

/// AN error type for an OA (type, code).
pub(crate) fn anthropic_kind(oa_type: Option<&str>, code: Option<&str>) -> &'static str {
    match (oa_type, code) {
        (_, Some("insufficient_quota")) | (Some("insufficient_quota"), _) => "billing_error",
        (_, Some("rate_limit_exceeded")) | (Some("requests" | "tokens"), _) => "rate_limit_error",
        (_, Some("invalid_api_key")) | (Some("authentication_error"), _) => "authentication_error",
        (_, Some("model_not_found")) => "not_found_error",
        (Some("permission_error" | "permission_denied"), _) => "permission_error",
        (_, Some("request_too_large")) => "request_too_large",
        (Some("invalid_request_error"), _) => "invalid_request_error",
        (Some("overloaded_error"), _) | (_, Some("overloaded")) => "overloaded_error",
        _ => "api_error",
    }
}

/// The OA `error` object for an AN error object (`{"type","message"}`).
pub(crate) fn openai_error_object(an_error: &Json) -> Json {
    let message = an_error.get("message").as_str().unwrap_or("upstream error");
    let (kind, code) = openai_kind(an_error.get("type").as_str().unwrap_or(""), message);
    obj([
        ("message", message.into()),
        ("type", kind.into()),
        ("param", Json::Null),
        ("code", code.map_or(Json::Null, Json::from)),
    ])
}

/// The AN error event/body for an OA `error` object.
pub(crate) fn anthropic_error_json(oa_error: &Json) -> Json {
    let (message, kind) = match oa_error {
        Json::String(s) => (s.as_str(), "api_error"),
        e => (
            e.get("message").as_str().unwrap_or("upstream error"),
            anthropic_kind(e.get("type").as_str(), code_str(e.get("code")).as_deref()),
        ),
    };
    obj([
        ("type", "error".into()),
        (
            "error",
            obj([("type", kind.into()), ("message", message.into())]),
        ),
    ])
}

/// OA `code` may be a number in old errors.
fn code_str(code: &Json) -> Option<String> {
    match code {
        Json::String(s) => Some(s.clone()),
        Json::Number(n) => Some(n.to_string()),
        _ => None,
    }
}

/// Provider error body, Anthropic -> OpenAI (`{"error":{"message","type","param","code"}}`).
pub fn anthropic_error_to_openai(body: &[u8]) -> Bytes {
    let err = match Json::parse(body) {
        Some(v) if v.get("error").as_object().is_some() => openai_error_object(v.get("error")),
        _ => raw_openai_error(body),
    };
    Bytes::from(obj([("error", err)]).to_text())
}

/// The OA `error` object for a body that is not the provider's error shape.
fn raw_openai_error(body: &[u8]) -> Json {
    obj([
        ("message", raw_message(body).into()),
        ("type", "server_error".into()),
        ("param", Json::Null),
        ("code", Json::Null),
    ])
}

/// Provider error body, OpenAI -> Anthropic (`{"type":"error","error":{"type","message"}}`).
pub fn openai_error_to_anthropic(body: &[u8]) -> Bytes {
    let v = match Json::parse(body) {
        Some(v) if !v.get("error").is_null() => anthropic_error_json(v.get("error")),
        _ => anthropic_error_json(&Json::String(raw_message(body))),
    };
    Bytes::from(v.to_text())
}

/// OA (type, code) for a Google error `status` (Google's canonical codes).
fn openai_kind_for_google(status: &str, message: &str) -> (&'static str, Option<&'static str>) {
    match status {
        "INVALID_ARGUMENT" | "FAILED_PRECONDITION" | "OUT_OF_RANGE" => {
            ("invalid_request_error", None)
        }
        "UNAUTHENTICATED" => ("invalid_request_error", Some("invalid_api_key")),
        "PERMISSION_DENIED" => ("permission_error", None),
        "NOT_FOUND" if message.contains("model") => {
            ("invalid_request_error", Some("model_not_found"))
        }
        "NOT_FOUND" => ("invalid_request_error", None),
        "RESOURCE_EXHAUSTED" => ("requests", Some("rate_limit_exceeded")),
        "UNAVAILABLE" => ("server_error", Some("overloaded")),
        "DEADLINE_EXCEEDED" => ("server_error", Some("timeout")),
        _ => ("server_error", None),
    }
}

/// The OA `error` object for a Google error object (`{"code","message","status"}`).
pub(crate) fn gemini_error_object(error: &Json) -> Json {
    let message = error.get("message").as_str().unwrap_or("upstream error");
    let (kind, code) = openai_kind_for_google(error.get("status").as_str().unwrap_or(""), message);
    obj([
        ("message", message.into()),
        ("type", kind.into()),
        ("param", Json::Null),
        ("code", code.map_or(Json::Null, Json::from)),
    ])
}

/// Provider error body, Gemini (`{"error":{"code","message","status"}}`) -> OpenAI.
pub fn gemini_error_to_openai(body: &[u8]) -> Bytes {
    // Google sometimes answers a list holding the error (streamGenerateContent without SSE).
    let v = Json::parse(body).map(|v| match v {
        Json::Array(mut a) if a.len() == 1 => a.remove(0),
        v => v,
    });
    let err = match v {
        Some(v) if v.get("error").as_object().is_some() => gemini_error_object(v.get("error")),
        _ => raw_openai_error(body),
    };
    Bytes::from(obj([("error", err)]).to_text())
}

/// Provider error body, Gemini -> Anthropic, by way of the OpenAI shape (whose mapping to
/// Anthropic's error types is the one wanted).
pub fn gemini_error_to_anthropic(body: &[u8]) -> Bytes {
    openai_error_to_anthropic(&gemini_error_to_openai(body))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn google_errors_in_both_shapes() {
        let body = br#"{"error":{"code":429,"message":"Resource has been exhausted (e.g. check quota).","status":"RESOURCE_EXHAUSTED"}}"#;
        assert_eq!(
            &gemini_error_to_openai(body)[..],
            br#"{"error":{"message":"Resource has been exhausted (e.g. check quota).","type":"requests","param":null,"code":"rate_limit_exceeded"}}"#
        );
        assert_eq!(
            &gemini_error_to_anthropic(body)[..],
            br#"{"type":"error","error":{"type":"rate_limit_error","message":"Resource has been exhausted (e.g. check quota)."}}"#
        );
        let unavailable = br#"{"error":{"code":503,"message":"The model is overloaded.","status":"UNAVAILABLE"}}"#;
        assert!(std::str::from_utf8(&gemini_error_to_anthropic(unavailable))
            .unwrap()
            .contains("overloaded_error"));
        let key =
            br#"{"error":{"code":400,"message":"API key not valid.","status":"INVALID_ARGUMENT"}}"#;
        assert!(std::str::from_utf8(&gemini_error_to_anthropic(key))
            .unwrap()
            .contains("invalid_request_error"));
    }
}
