//! Google Gemini's native API: `POST /v1beta/models/{model}:generateContent` and
//! `:streamGenerateContent` (`?alt=sse`: SSE whose every `data:` line is a whole
//! `GenerateContentResponse`; without it, a JSON array of them).
//!
//! The key is read from `x-goog-api-key`, else the `key` query parameter (default
//! `mock-gemini-key`). Requests are checked as Google checks them: unknown fields (top
//! level, `generationConfig`, parts), roles other than `user`/`model` and empty `contents`
//! are a 400 `INVALID_ARGUMENT`, so a translator bug cannot pass unnoticed. Errors use
//! Google's shape, `{"error":{"code","message","status"}}`.
//!
//! The `x-mock-*` headers work as on the other surfaces: `x-mock-input-tokens` is
//! `promptTokenCount` (cached tokens included), `x-mock-output-tokens` all output with
//! `x-mock-reasoning-tokens` of it reported as `thoughtsTokenCount` (so
//! `candidatesTokenCount` = output - reasoning), `x-mock-cached-tokens` is
//! `cachedContentTokenCount`; `x-mock-tool-call` answers with a `functionCall` of the first
//! declared function (args `{"query":"mock"}`, with a `thoughtSignature`);
//! `x-mock-error` 429/500/503 are `RESOURCE_EXHAUSTED`/`INTERNAL`/`UNAVAILABLE`;
//! `x-mock-stream-error` sends an error event after the first delta.

use std::sync::Arc;

use http::header::{HeaderValue, CACHE_CONTROL};
use http::StatusCode;
use serde_json::{json, Value};

use crate::body::Script;
use crate::control::{delta_text, full_text, Control, Tokens};
use crate::openai::json_or_cut;
use crate::reply::{self, Resp};
use crate::router::Call;
use crate::state::{MockState, Raw};

/// The thought signature the mock puts on function calls (Gemini wants it back).
pub(crate) const SIGNATURE: &str = "bW9jay1zaWduYXR1cmU=";

const TOP_LEVEL: [&str; 7] = [
    "contents",
    "systemInstruction",
    "tools",
    "toolConfig",
    "generationConfig",
    "safetySettings",
    "cachedContent",
];

const GENERATION_CONFIG: [&str; 16] = [
    "stopSequences",
    "responseMimeType",
    "responseSchema",
    "responseJsonSchema",
    "candidateCount",
    "maxOutputTokens",
    "temperature",
    "topP",
    "topK",
    "seed",
    "presencePenalty",
    "frequencyPenalty",
    "responseLogprobs",
    "logprobs",
    "thinkingConfig",
    "responseModalities",
];

const PART_FIELDS: [&str; 8] = [
    "text",
    "inlineData",
    "fileData",
    "functionCall",
    "functionResponse",
    "thought",
    "thoughtSignature",
    "executableCode",
];

/// Google's canonical status for an HTTP status.
fn status_name(code: u16) -> &'static str {
    match code {
        400 => "INVALID_ARGUMENT",
        401 => "UNAUTHENTICATED",
        403 => "PERMISSION_DENIED",
        404 => "NOT_FOUND",
        409 => "ABORTED",
        429 => "RESOURCE_EXHAUSTED",
        499 => "CANCELLED",
        501 => "UNIMPLEMENTED",
        503 => "UNAVAILABLE",
        504 => "DEADLINE_EXCEEDED",
        _ => "INTERNAL",
    }
}

fn error_json(code: u16, message: &str) -> Value {
    let mut e = json!({"error": {"code": code, "message": message, "status": status_name(code)}});
    if code == 429 {
        e["error"]["details"] = json!([{"@type": "type.googleapis.com/google.rpc.RetryInfo",
            "retryDelay": "1s"}]);
    }
    e
}

/// An error in Google's shape.
pub(crate) fn error(code: u16, message: &str) -> Resp {
    let status = StatusCode::from_u16(code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    reply::json(status, &error_json(code, message))
}

fn invalid(message: &str) -> Resp {
    error(400, message)
}

/// Serves a `/v1beta/...` call (any other Gemini path is Google's 404).
pub(crate) async fn handle(state: &Arc<MockState>, raw: &Raw, n: u64) -> Resp {
    let parts = &raw.parts;
    let ctl = match Control::parse(&parts.headers) {
        Ok(c) => c,
        Err(m) => return invalid(&m),
    };
    if !ctl.first_byte_delay.is_zero() {
        tokio::time::sleep(ctl.first_byte_delay).await;
    }
    let path = parts.uri.path();
    let Some((model, method)) = path
        .strip_prefix("/v1beta/models/")
        .and_then(|t| t.split_once(':'))
        .filter(|(m, _)| !m.is_empty())
    else {
        return error(404, &format!("Method not found: {path}"));
    };
    let stream = match method {
        "generateContent" => false,
        "streamGenerateContent" => true,
        _ => return error(404, &format!("Method not found: {method}")),
    };
    if parts.method != http::Method::POST {
        return error(404, "Method not found.");
    }
    let query = parts.uri.query().unwrap_or("");
    let given = parts
        .headers
        .get("x-goog-api-key")
        .and_then(|v| v.to_str().ok())
        .or_else(|| query.split('&').find_map(|p| p.strip_prefix("key=")));
    let ok = match (given, state.options.gemini_key.as_deref()) {
        (Some(g), Some(e)) => g == e,
        (Some(g), None) => !g.is_empty(),
        (None, _) => false,
    };
    if !ok {
        return match given {
            // Google answers a wrong key with a 400.
            Some(_) => invalid("API key not valid. Please pass a valid API key."),
            None => error(
                403,
                "Method doesn't allow unregistered callers (callers without established \
                 identity). Please use API Key or other form of API consumer identity to call \
                 this API.",
            ),
        };
    }
    if let Some(code) = ctl.error {
        return error(code, &format!("mock error {code} (x-mock-error)"));
    }
    let req: Value = match serde_json::from_slice(&raw.body) {
        Ok(v @ Value::Object(_)) => v,
        _ => return invalid("Invalid JSON payload received."),
    };
    if let Err(m) = validate(&req) {
        return invalid(&m);
    }
    let tool = if ctl.tool_call {
        req.pointer("/tools/0/functionDeclarations/0/name")
            .and_then(Value::as_str)
    } else {
        None
    };
    let call = Call {
        state,
        parts,
        body: &raw.body,
        ctl,
        n,
        scheme: "http",
        azure: false,
    };
    let tokens = call.ctl.tokens(raw.body.len());
    let sse = query.split('&').any(|p| p == "alt=sse");
    match (stream, sse) {
        (false, _) => json_or_cut(&call, &whole(&call, model, tool, &tokens)),
        (true, true) => sse_stream(&call, model, tool, &tokens),
        (true, false) => {
            let chunks: Vec<Value> = chunks(&call, model, tool, &tokens)
                .into_iter()
                .map(|(v, _)| v)
                .collect();
            reply::ok_json(&chunks)
        }
    }
}

/// Checks field names the way Google's JSON parser does (unknown names are a 400).
fn validate(req: &Value) -> Result<(), String> {
    let unknown = |scope: &str, key: &str| {
        format!("Invalid JSON payload received. Unknown name \"{key}\"{scope}: Cannot find field.")
    };
    for key in req.as_object().into_iter().flat_map(|o| o.keys()) {
        if !TOP_LEVEL.contains(&key.as_str()) {
            return Err(unknown("", key));
        }
    }
    for key in req["generationConfig"]
        .as_object()
        .into_iter()
        .flat_map(|o| o.keys())
    {
        if !GENERATION_CONFIG.contains(&key.as_str()) {
            return Err(unknown(" at 'generation_config'", key));
        }
    }
    let contents = req["contents"].as_array().filter(|c| !c.is_empty());
    let Some(contents) = contents else {
        return Err("* GenerateContentRequest.contents: contents is not specified".into());
    };
    let system = req["systemInstruction"]["parts"].as_array();
    let all_parts = contents
        .iter()
        .flat_map(|c| c["parts"].as_array().into_iter().flatten())
        .chain(system.into_iter().flatten());
    for (i, c) in contents.iter().enumerate() {
        match c["role"].as_str() {
            Some("user" | "model") | None => {}
            Some(other) => {
                return Err(format!(
                    "Please use a valid role: user, model. (contents[{i}].role: {other})"
                ))
            }
        }
        if c["parts"].as_array().is_none_or(Vec::is_empty) {
            return Err(format!("contents[{i}].parts must not be empty"));
        }
    }
    for part in all_parts {
        for key in part.as_object().into_iter().flat_map(|o| o.keys()) {
            if !PART_FIELDS.contains(&key.as_str()) {
                return Err(unknown(" at 'contents.parts'", key));
            }
        }
    }
    Ok(())
}

fn usage(t: &Tokens, done: bool) -> Value {
    if !done {
        return json!({"promptTokenCount": t.input, "totalTokenCount": t.input});
    }
    let mut u = json!({
        "promptTokenCount": t.input,
        "candidatesTokenCount": t.output.saturating_sub(t.reasoning),
        "totalTokenCount": t.input + t.output,
        "promptTokensDetails": [{"modality": "TEXT", "tokenCount": t.input}],
    });
    if t.cached > 0 {
        u["cachedContentTokenCount"] = json!(t.cached);
    }
    if t.reasoning > 0 {
        u["thoughtsTokenCount"] = json!(t.reasoning);
    }
    u
}

fn response(call: &Call<'_>, model: &str, parts: Value, finish: bool, usage: Value) -> Value {
    let mut candidate = json!({"content": {"parts": parts, "role": "model"}, "index": 0});
    if finish {
        candidate["finishReason"] = json!("STOP");
    }
    json!({
        "candidates": [candidate],
        "usageMetadata": usage,
        "modelVersion": model,
        "responseId": format!("mockresp{}", call.n),
    })
}

fn function_call(name: &str) -> Value {
    json!({"functionCall": {"name": name, "args": {"query": "mock"}}, "thoughtSignature": SIGNATURE})
}

fn whole(call: &Call<'_>, model: &str, tool: Option<&str>, t: &Tokens) -> Value {
    let mut parts = vec![json!({"text": full_text(call.ctl.chunks)})];
    if let Some(name) = tool {
        parts.push(function_call(name));
    }
    response(call, model, Value::Array(parts), true, usage(t, true))
}

/// The stream's responses, each with whether it is a content delta (played after the delay).
fn chunks(call: &Call<'_>, model: &str, tool: Option<&str>, t: &Tokens) -> Vec<(Value, bool)> {
    let mut out = Vec::new();
    for i in 0..call.ctl.deltas_before_cut() {
        let parts = json!([{"text": delta_text(i)}]);
        out.push((response(call, model, parts, false, usage(t, false)), true));
    }
    let last = match tool {
        Some(name) => json!([function_call(name)]),
        None => json!([{"text": ""}]),
    };
    out.push((response(call, model, last, true, usage(t, true)), false));
    out
}

fn sse_stream(call: &Call<'_>, model: &str, tool: Option<&str>, t: &Tokens) -> Resp {
    let mut script = Script::counted(call.state, call.ctl.chunk_delay);
    let event = |v: &Value| format!("data: {v}\r\n\r\n");
    let mut all = chunks(call, model, tool, t);
    let last = all.pop();
    for (i, (v, delayed)) in all.iter().enumerate() {
        if *delayed {
            script.push_delta(event(v));
        } else {
            script.push(event(v));
        }
        if i == 0 && call.ctl.stream_error {
            script.push(event(&error_json(
                503,
                "The model is overloaded. Please try again later.",
            )));
            return sse(script);
        }
    }
    if call.ctl.cut_after.is_some() {
        script.cut();
        return sse(script);
    }
    if let Some((v, _)) = last {
        script.push(event(&v));
    }
    sse(script)
}

fn sse(script: Script) -> Resp {
    let mut r = reply::with_body(
        StatusCode::OK,
        HeaderValue::from_static("text/event-stream"),
        script.into_body(),
    );
    r.headers_mut()
        .insert(CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    r
}
