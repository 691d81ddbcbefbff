//! Anthropic endpoints: Messages (stream and not), count_tokens, legacy Text Completions and models.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::Script;
use crate::control::{delta_text, full_text, Tokens};
use crate::openai::json_or_cut;
use crate::reply::{self, Resp, Surface};
use crate::router::Call;

const A: Surface = Surface::Anthropic;

#[derive(Deserialize)]
struct ToolDef<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

/// Only the request fields the mock reads; the rest is skipped without allocating.
#[derive(Deserialize)]
struct MessagesRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    max_tokens: Option<u64>,
    messages: Option<IgnoredAny>,
    stream: Option<bool>,
    #[serde(borrow)]
    tools: Option<Vec<ToolDef<'a>>>,
}

fn invalid(call: &Call<'_>, message: &str) -> Resp {
    call.bad_request(A, message)
}

fn tier<'c>(call: &'c Call<'_>) -> &'c str {
    call.ctl.service_tier.as_deref().unwrap_or("standard")
}

/// The final Messages `usage` (disjoint: `input_tokens` excludes both cache counts).
pub(crate) fn usage(t: &Tokens, tier: &str, restate: bool) -> Value {
    let mut u = json!({
        "input_tokens": if restate { t.input + 5 } else { t.input },
        "cache_creation_input_tokens": t.write_5m + t.write_1h,
        "cache_read_input_tokens": t.cached,
        "cache_creation": {"ephemeral_5m_input_tokens": t.write_5m,
            "ephemeral_1h_input_tokens": t.write_1h},
        "output_tokens": t.output,
        "service_tier": tier,
    });
    if restate {
        u["server_tool_use"] = json!({"web_search_requests": 1, "web_fetch_requests": 0});
    }
    if t.reasoning > 0 {
        u["output_tokens_details"] = json!({"thinking_tokens": t.reasoning});
    }
    u
}

/// Checks the fields Messages requires; `Ok` carries the model.
fn validate<'r>(call: &Call<'_>, req: &'r MessagesRequest<'_>) -> Result<&'r str, Resp> {
    let Some(model) = req.model.as_deref() else {
        return Err(invalid(call, "model: Field required"));
    };
    if req.max_tokens.is_none() {
        return Err(invalid(call, "max_tokens: Field required"));
    }
    if req.messages.is_none() {
        return Err(invalid(call, "messages: Field required"));
    }
    Ok(model)
}

const TOOL_INPUT: [&str; 2] = [r#"{"query": "#, r#""mock"}"#];

pub(crate) fn messages(call: &Call<'_>) -> Resp {
    let req: MessagesRequest<'_> = match serde_json::from_slice(call.body) {
        Ok(r) => r,
        Err(e) => return invalid(call, &format!("invalid JSON body: {e}")),
    };
    let model = match validate(call, &req) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let tool = if call.ctl.tool_call {
        req.tools
            .as_ref()
            .and_then(|t| t.first())
            .map(|t| t.name.as_deref().unwrap_or("tool"))
    } else {
        None
    };
    let tokens = call.ctl.tokens(call.body.len());
    if req.stream.unwrap_or(false) {
        return stream(call, model, tool, &tokens);
    }
    let mut content = vec![json!({"type": "text", "text": full_text(call.ctl.chunks)})];
    if let Some(name) = tool {
        content.push(
            json!({"type": "tool_use", "id": format!("toolu_mock{}", call.n),
            "name": name, "input": {"query": "mock"}}),
        );
    }
    let v = json!({
        "id": format!("msg_mock{}", call.n),
        "type": "message",
        "role": "assistant",
        "model": model,
        "content": content,
        "stop_reason": if tool.is_some() { "tool_use" } else { "end_turn" },
        "stop_sequence": null,
        "usage": usage(&tokens, tier(call), call.ctl.restate_input),
    });
    json_or_cut(call, &v)
}

/// Pushes `v` as an event named by its `type`, with `type` first as Anthropic orders it.
fn push_event(script: &mut Script, delayed: bool, mut v: Value) {
    let kind = match v.as_object_mut().and_then(|o| o.remove("type")) {
        Some(Value::String(k)) => k,
        _ => "unknown".to_owned(),
    };
    let ev = reply::event(&kind, &reply::typed_json(&kind, "", &v));
    if delayed {
        script.push_delta(ev);
    } else {
        script.push(ev);
    }
}

fn overloaded_event() -> Value {
    json!({"type": "error", "error": {"type": "overloaded_error", "message": "Overloaded"}})
}

fn stream(call: &Call<'_>, model: &str, tool: Option<&str>, t: &Tokens) -> Resp {
    let ctl = &call.ctl;
    let mut script = Script::counted(call.state, ctl.chunk_delay);
    let mut start_usage = usage(&Tokens { output: 1, ..*t }, tier(call), false);
    if let Some(u) = start_usage.as_object_mut() {
        u.remove("output_tokens_details");
    }
    push_event(
        &mut script,
        false,
        json!({"type": "message_start", "message": {"id": format!("msg_mock{}", call.n),
            "type": "message", "role": "assistant", "model": model, "content": [],
            "stop_reason": null, "stop_sequence": null, "usage": start_usage}}),
    );
    push_event(
        &mut script,
        false,
        json!({"type": "content_block_start", "index": 0, "content_block": {"type": "text", "text": ""}}),
    );
    script.push(reply::event("ping", r#"{"type": "ping"}"#));
    for i in 0..ctl.deltas_before_cut() {
        let ev = format!(
            r#"{{"type":"content_block_delta","index":0,"delta":{{"type":"text_delta","text":"{}"}}}}"#,
            delta_text(i)
        );
        script.push_delta(reply::event("content_block_delta", &ev));
        if i == 0 && ctl.stream_error {
            push_event(&mut script, false, overloaded_event());
            return reply::sse(A, script);
        }
    }
    if ctl.cut_after.is_some() {
        script.cut();
        return reply::sse(A, script);
    }
    push_event(
        &mut script,
        false,
        json!({"type": "content_block_stop", "index": 0}),
    );
    if let Some(name) = tool {
        push_event(
            &mut script,
            false,
            json!({"type": "content_block_start", "index": 1, "content_block": {"type": "tool_use",
                "id": format!("toolu_mock{}", call.n), "name": name, "input": {}}}),
        );
        for part in TOOL_INPUT {
            push_event(
                &mut script,
                false,
                json!({"type": "content_block_delta", "index": 1,
                    "delta": {"type": "input_json_delta", "partial_json": part}}),
            );
        }
        push_event(
            &mut script,
            false,
            json!({"type": "content_block_stop", "index": 1}),
        );
    }
    let mut delta_usage = json!({"output_tokens": t.output});
    if ctl.restate_input {
        delta_usage["input_tokens"] = json!(t.input + 5);
        delta_usage["cache_read_input_tokens"] = json!(t.cached);
        delta_usage["cache_creation_input_tokens"] = json!(t.write_5m + t.write_1h);
        delta_usage["server_tool_use"] = json!({"web_search_requests": 1});
    }
    if t.reasoning > 0 {
        delta_usage["output_tokens_details"] = json!({"thinking_tokens": t.reasoning});
    }
    let stop = if tool.is_some() {
        "tool_use"
    } else {
        "end_turn"
    };
    push_event(
        &mut script,
        false,
        json!({"type": "message_delta", "delta": {"stop_reason": stop, "stop_sequence": null},
            "usage": delta_usage}),
    );
    push_event(&mut script, false, json!({"type": "message_stop"}));
    reply::sse(A, script)
}

/// `POST /v1/messages/count_tokens`: `{"input_tokens": N}`, not billable.
pub(crate) fn count_tokens(call: &Call<'_>) -> Resp {
    #[derive(Deserialize)]
    struct Req {
        model: Option<IgnoredAny>,
    }
    match serde_json::from_slice::<Req>(call.body) {
        Err(e) => invalid(call, &format!("invalid JSON body: {e}")),
        Ok(Req { model: None }) => invalid(call, "model: Field required"),
        Ok(_) => reply::ok_json(&json!({"input_tokens": call.ctl.input(call.body.len())})),
    }
}

/// `POST /v1/complete`, the legacy Text Completions API: no usage object.
pub(crate) fn complete(call: &Call<'_>) -> Resp {
    #[derive(Deserialize)]
    struct Req<'a> {
        #[serde(borrow)]
        model: Option<Cow<'a, str>>,
        prompt: Option<IgnoredAny>,
        max_tokens_to_sample: Option<u64>,
        stream: Option<bool>,
    }
    let req: Req<'_> = match serde_json::from_slice(call.body) {
        Ok(r) => r,
        Err(e) => return invalid(call, &format!("invalid JSON body: {e}")),
    };
    let Some(model) = req.model.as_deref() else {
        return invalid(call, "model: field required");
    };
    if req.prompt.is_none() {
        return invalid(call, "prompt: field required");
    }
    if req.max_tokens_to_sample.is_none() {
        return invalid(call, "max_tokens_to_sample: field required");
    }
    let id = format!("compl_mock{}", call.n);
    let piece = |text: &str, stop: Option<&str>| {
        json!({"type": "completion", "id": id, "completion": text, "stop_reason": stop,
            "model": model, "stop": stop.map(|_| "\n\nHuman:"), "log_id": id})
    };
    let ctl = &call.ctl;
    if !req.stream.unwrap_or(false) {
        return json_or_cut(
            call,
            &piece(
                &format!(" {}", full_text(ctl.chunks)),
                Some("stop_sequence"),
            ),
        );
    }
    let mut script = Script::counted(call.state, ctl.chunk_delay);
    for i in 0..ctl.deltas_before_cut() {
        push_event(&mut script, true, piece(&delta_text(i), None));
        if i == 0 {
            script.push(reply::event("ping", r#"{"type": "ping"}"#));
            if ctl.stream_error {
                push_event(&mut script, false, overloaded_event());
                return reply::sse(A, script);
            }
        }
    }
    if ctl.cut_after.is_some() {
        script.cut();
        return reply::sse(A, script);
    }
    push_event(&mut script, false, piece("", Some("stop_sequence")));
    reply::sse(A, script)
}

/// `(id, display_name, created_at)`, newest first as the API lists them.
const CLAUDE_MODELS: &[(&str, &str, &str)] = &[
    (
        "claude-opus-4-5-20251101",
        "Claude Opus 4.5",
        "2025-11-24T00:00:00Z",
    ),
    (
        "claude-haiku-4-5-20251001",
        "Claude Haiku 4.5",
        "2025-10-15T00:00:00Z",
    ),
    (
        "claude-sonnet-4-5-20250929",
        "Claude Sonnet 4.5",
        "2025-09-29T00:00:00Z",
    ),
    (
        "claude-opus-4-1-20250805",
        "Claude Opus 4.1",
        "2025-08-05T00:00:00Z",
    ),
    (
        "claude-sonnet-4-20250514",
        "Claude Sonnet 4",
        "2025-05-22T00:00:00Z",
    ),
    (
        "claude-3-5-haiku-20241022",
        "Claude Haiku 3.5",
        "2024-10-22T00:00:00Z",
    ),
];

fn model_object(m: &(&str, &str, &str)) -> Value {
    json!({"type": "model", "id": m.0, "display_name": m.1, "created_at": m.2})
}

/// Value of `key` in a query string (no percent-decoding: ids and numbers only).
pub(crate) fn query_param<'q>(query: Option<&'q str>, key: &str) -> Option<&'q str> {
    query?
        .split('&')
        .filter_map(|kv| kv.split_once('='))
        .find(|(k, _)| *k == key)
        .map(|(_, v)| v)
}

/// Cursor pagination as Anthropic lists do it: `limit`, `after_id`, `before_id`; returns the page and `has_more`.
pub(crate) fn page<'t, T>(
    items: &'t [T],
    id: impl Fn(&T) -> &str,
    query: Option<&str>,
) -> (&'t [T], bool) {
    let limit = query_param(query, "limit")
        .and_then(|l| l.parse::<usize>().ok())
        .unwrap_or(20)
        .clamp(1, 1000);
    let pos = |cursor: &str| items.iter().position(|i| id(i) == cursor);
    if let Some(before) = query_param(query, "before_id") {
        let end = pos(before).unwrap_or(items.len());
        let start = end.saturating_sub(limit);
        return (&items[start..end], start > 0);
    }
    let start = query_param(query, "after_id")
        .and_then(pos)
        .map_or(0, |p| p + 1);
    let end = (start + limit).min(items.len());
    (&items[start..end], end < items.len())
}

/// A list page in Anthropic's shape: `data`, `has_more`, `first_id`, `last_id`.
pub(crate) fn list_page(data: Vec<Value>, has_more: bool) -> Value {
    let id_at = |v: Option<&Value>| v.and_then(|v| v.get("id")).cloned().unwrap_or(Value::Null);
    json!({"first_id": id_at(data.first()), "last_id": id_at(data.last()),
        "has_more": has_more, "data": data})
}

pub(crate) fn models(call: &Call<'_>) -> Resp {
    let (items, more) = page(CLAUDE_MODELS, |m| m.0, call.parts.uri.query());
    reply::ok_json(&list_page(items.iter().map(model_object).collect(), more))
}

/// One model; an alias resolves to the dated id, any unknown id is echoed (the mock serves every model).
pub(crate) fn model(_call: &Call<'_>, id: &str) -> Resp {
    let found = CLAUDE_MODELS.iter().find(|m| {
        m.0 == id
            || m.0
                .strip_prefix(id)
                .is_some_and(|rest| rest.starts_with('-') && rest.len() == 9)
    });
    match found {
        Some(m) => reply::ok_json(&model_object(m)),
        None => reply::ok_json(
            &json!({"type": "model", "id": id, "display_name": id, "created_at": "2025-01-01T00:00:00Z"}),
        ),
    }
}
