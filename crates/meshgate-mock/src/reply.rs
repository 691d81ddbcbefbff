//! Response builders shared by both surfaces: JSON, SSE, native error shapes, per-surface headers, time.

use std::time::{SystemTime, UNIX_EPOCH};

use http::header::{HeaderValue, CACHE_CONTROL, CONTENT_TYPE, RETRY_AFTER};
use http::{Response, StatusCode};
use serde::Serialize;

use crate::body::{MockBody, Script};

pub(crate) type Resp = Response<MockBody>;

/// Which provider's wire format a request speaks.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Surface {
    OpenAi,
    Anthropic,
}

const JSON: HeaderValue = HeaderValue::from_static("application/json");

pub(crate) fn with_body(status: StatusCode, content_type: HeaderValue, body: MockBody) -> Resp {
    let mut r = Response::new(body);
    *r.status_mut() = status;
    r.headers_mut().insert(CONTENT_TYPE, content_type);
    r
}

/// A JSON response from any serializable value.
pub(crate) fn json<T: Serialize + ?Sized>(status: StatusCode, v: &T) -> Resp {
    match serde_json::to_vec(v) {
        Ok(b) => with_body(status, JSON, MockBody::full(b)),
        Err(_) => with_body(StatusCode::INTERNAL_SERVER_ERROR, JSON, MockBody::empty()),
    }
}

pub(crate) fn ok_json<T: Serialize + ?Sized>(v: &T) -> Resp {
    json(StatusCode::OK, v)
}

/// A plain-text (or other textual) body.
pub(crate) fn text(content_type: &'static str, s: String) -> Resp {
    with_body(
        StatusCode::OK,
        HeaderValue::from_static(content_type),
        MockBody::full(s),
    )
}

/// An SSE response playing `script`.
pub(crate) fn sse(surface: Surface, script: Script) -> Resp {
    let ct = match surface {
        Surface::OpenAi => "text/event-stream; charset=utf-8",
        Surface::Anthropic => "text/event-stream",
    };
    let mut r = with_body(
        StatusCode::OK,
        HeaderValue::from_static(ct),
        script.into_body(),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}

/// One SSE event with a name line (Responses, Anthropic).
pub(crate) fn event(name: &str, data: &str) -> String {
    let mut s = String::with_capacity(name.len() + data.len() + 16);
    s.push_str("event: ");
    s.push_str(name);
    s.push_str("\ndata: ");
    s.push_str(data);
    s.push_str("\n\n");
    s
}

/// JSON of `rest` (an object) with `"type"` first and then `head` fields, as the providers order them.
pub(crate) fn typed_json(kind: &str, head: &str, rest: &serde_json::Value) -> String {
    let body = rest.to_string();
    let tail = body.strip_prefix('{').unwrap_or("}");
    let mut s = String::with_capacity(body.len() + kind.len() + head.len() + 16);
    s.push_str("{\"type\":");
    s.push_str(&serde_json::Value::from(kind).to_string());
    s.push_str(head);
    if tail != "}" {
        s.push(',');
    }
    s.push_str(tail);
    s
}

/// One data-only SSE event (Chat Completions, speech).
pub(crate) fn data(data: &str) -> String {
    let mut s = String::with_capacity(data.len() + 8);
    s.push_str("data: ");
    s.push_str(data);
    s.push_str("\n\n");
    s
}

/// OpenAI `{"error":{message,type,param,code}}`.
pub(crate) fn openai_error(
    status: StatusCode,
    message: &str,
    kind: &str,
    code: Option<&str>,
    param: Option<&str>,
) -> Resp {
    json(
        status,
        &serde_json::json!({"error": {"message": message, "type": kind, "param": param, "code": code}}),
    )
}

/// Anthropic `{"type":"error","error":{type,message},"request_id"}`.
pub(crate) fn anthropic_error(status: StatusCode, kind: &str, message: &str, n: u64) -> Resp {
    json(
        status,
        &serde_json::json!({"type": "error", "error": {"type": kind, "message": message},
            "request_id": request_id(n)}),
    )
}

/// Anthropic error type for a status.
pub(crate) fn anthropic_kind(status: u16) -> &'static str {
    match status {
        400 => "invalid_request_error",
        401 => "authentication_error",
        402 => "billing_error",
        403 => "permission_error",
        404 => "not_found_error",
        409 => "conflict_error",
        413 => "request_too_large",
        429 => "rate_limit_error",
        504 => "timeout_error",
        529 => "overloaded_error",
        s if s >= 500 => "api_error",
        _ => "invalid_request_error",
    }
}

/// A native error of any status, as `x-mock-error` asks; 429 and 529 carry `retry-after: 1`.
pub(crate) fn native_error(surface: Surface, status: u16, message: &str, n: u64) -> Resp {
    let code = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut r = match surface {
        Surface::OpenAi => {
            let (kind, c) = match status {
                401 => ("invalid_request_error", Some("invalid_api_key")),
                404 => ("invalid_request_error", Some("model_not_found")),
                429 => ("requests", Some("rate_limit_exceeded")),
                s if s >= 500 => ("server_error", None),
                _ => ("invalid_request_error", None),
            };
            openai_error(code, message, kind, c, None)
        }
        Surface::Anthropic => anthropic_error(code, anthropic_kind(status), message, n),
    };
    if status == 429 || status == 529 {
        r.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from_static("1"));
    }
    r
}

/// A 400 in the surface's shape.
pub(crate) fn bad_request(surface: Surface, message: &str, n: u64) -> Resp {
    native_error(surface, 400, message, n)
}

pub(crate) fn request_id(n: u64) -> String {
    format!("req_mock_{n}")
}

/// Adds the request id and rate-limit headers every response of a surface carries.
pub(crate) fn add_surface_headers(r: &mut Resp, surface: Surface, n: u64) {
    let id = HeaderValue::from_str(&request_id(n)).unwrap_or(HeaderValue::from_static("req_mock"));
    let h = r.headers_mut();
    match surface {
        Surface::OpenAi => {
            h.insert("x-request-id", id);
            for (k, v) in [
                ("openai-version", "2020-10-01"),
                ("openai-organization", "org-mock"),
                ("openai-processing-ms", "1"),
                ("x-ratelimit-limit-requests", "10000"),
                ("x-ratelimit-limit-tokens", "10000000"),
                ("x-ratelimit-remaining-requests", "9999"),
                ("x-ratelimit-remaining-tokens", "9999000"),
                ("x-ratelimit-reset-requests", "6ms"),
                ("x-ratelimit-reset-tokens", "6ms"),
            ] {
                h.insert(k, HeaderValue::from_static(v));
            }
        }
        Surface::Anthropic => {
            h.insert("request-id", id);
            let reset = HeaderValue::from_str(&rfc3339(now_secs() + 1))
                .unwrap_or(HeaderValue::from_static("1970-01-01T00:00:00Z"));
            for (k, v) in [
                (
                    "anthropic-organization-id",
                    "00000000-0000-4000-8000-000000000000",
                ),
                ("anthropic-ratelimit-requests-limit", "4000"),
                ("anthropic-ratelimit-requests-remaining", "3999"),
                ("anthropic-ratelimit-tokens-limit", "2000000"),
                ("anthropic-ratelimit-tokens-remaining", "1999000"),
                ("anthropic-ratelimit-input-tokens-limit", "2000000"),
                ("anthropic-ratelimit-input-tokens-remaining", "1999000"),
                ("anthropic-ratelimit-output-tokens-limit", "400000"),
                ("anthropic-ratelimit-output-tokens-remaining", "399000"),
            ] {
                h.insert(k, HeaderValue::from_static(v));
            }
            for k in [
                "anthropic-ratelimit-requests-reset",
                "anthropic-ratelimit-tokens-reset",
                "anthropic-ratelimit-input-tokens-reset",
                "anthropic-ratelimit-output-tokens-reset",
            ] {
                h.insert(k, reset.clone());
            }
        }
    }
}

pub(crate) fn now_secs() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_secs())
}

/// `YYYY-MM-DDTHH:MM:SSZ` for a unix time (civil-from-days, proleptic Gregorian).
pub(crate) fn rfc3339(secs: u64) -> String {
    let days = (secs / 86_400) as i64;
    let rem = secs % 86_400;
    let z = days + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = doy - (153 * mp + 2) / 5 + 1;
    let m = if mp < 10 { mp + 3 } else { mp - 9 };
    let y = yoe + era * 400 + i64::from(m <= 2);
    format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}Z",
        rem / 3600,
        (rem / 60) % 60,
        rem % 60
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn typed_json_puts_type_first() {
        let v = serde_json::json!({"b": 1, "a": 2});
        assert_eq!(typed_json("x", "", &v), r#"{"type":"x","a":2,"b":1}"#);
        let e = serde_json::json!({});
        assert_eq!(typed_json("x", r#","n":1"#, &e), r#"{"type":"x","n":1}"#);
    }

    #[test]
    fn rfc3339_known_dates() {
        assert_eq!(rfc3339(0), "1970-01-01T00:00:00Z");
        assert_eq!(rfc3339(951_782_400), "2000-02-29T00:00:00Z");
        assert_eq!(rfc3339(1_760_000_000), "2025-10-09T08:53:20Z");
    }
}
