//! OpenAI text endpoints: Chat Completions, Responses (create, compact, input_tokens) and models.

use std::borrow::Cow;

use serde::de::IgnoredAny;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::body::Script;
use crate::control::{delta_text, full_text, FinalStatus, Tokens};
use crate::reply::{self, now_secs, Resp, Surface};
use crate::router::Call;

const O: Surface = Surface::OpenAi;

#[derive(Deserialize)]
struct StreamOptions {
    include_usage: Option<bool>,
}

#[derive(Deserialize)]
struct FunctionDef<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
}

/// Chat tools nest the name under `function`; Responses tools are flat.
#[derive(Deserialize)]
struct ToolDef<'a> {
    #[serde(borrow)]
    name: Option<Cow<'a, str>>,
    #[serde(borrow)]
    function: Option<FunctionDef<'a>>,
}

impl ToolDef<'_> {
    fn tool_name(&self) -> Option<&str> {
        self.function
            .as_ref()
            .and_then(|f| f.name.as_deref())
            .or(self.name.as_deref())
    }
}

/// Only the request fields the mock reads; the rest is skipped without allocating.
#[derive(Deserialize)]
struct TextRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    messages: Option<IgnoredAny>,
    stream: Option<bool>,
    stream_options: Option<StreamOptions>,
    #[serde(borrow)]
    tools: Option<Vec<ToolDef<'a>>>,
    max_output_tokens: Option<u64>,
}

fn parse<'a>(call: &'a Call<'_>) -> Result<TextRequest<'a>, Resp> {
    serde_json::from_slice::<TextRequest<'a>>(call.body).map_err(|e| {
        call.bad_request(
            O,
            &format!("We could not parse the JSON body of your request. ({e})"),
        )
    })
}

fn require_model<'r>(req: &'r TextRequest<'_>) -> Result<&'r str, Resp> {
    req.model.as_deref().ok_or_else(|| {
        reply::openai_error(
            http::StatusCode::BAD_REQUEST,
            "you must provide a model parameter",
            "invalid_request_error",
            None,
            Some("model"),
        )
    })
}

fn tier<'c>(call: &'c Call<'_>) -> &'c str {
    call.ctl.service_tier.as_deref().unwrap_or("default")
}

fn tool_name<'r>(call: &Call<'_>, req: &'r TextRequest<'_>) -> Option<&'r str> {
    if !call.ctl.tool_call {
        return None;
    }
    req.tools
        .as_ref()
        .and_then(|t| t.first())
        .map(|t| t.tool_name().unwrap_or("tool"))
}

const TOOL_ARGS: &str = r#"{"query":"mock"}"#;

/// Chat `usage` (inclusive: cached and written tokens are subsets of `prompt_tokens`).
pub(crate) fn chat_usage(t: &Tokens) -> Value {
    let mut prompt = json!({"cached_tokens": t.cached, "audio_tokens": 0});
    let writes = t.write_5m + t.write_1h;
    if writes > 0 {
        prompt["cache_write_tokens"] = json!(writes);
    }
    json!({
        "prompt_tokens": t.input,
        "completion_tokens": t.output,
        "total_tokens": t.input + t.output,
        "prompt_tokens_details": prompt,
        "completion_tokens_details": {"reasoning_tokens": t.reasoning, "audio_tokens": 0,
            "accepted_prediction_tokens": 0, "rejected_prediction_tokens": 0},
    })
}

/// Responses `usage` (inclusive, like chat).
pub(crate) fn responses_usage(t: &Tokens) -> Value {
    let mut input = json!({"cached_tokens": t.cached});
    let writes = t.write_5m + t.write_1h;
    if writes > 0 {
        input["cache_write_tokens"] = json!(writes);
        input["cache_write_tokens_details"] =
            json!({"ttl_30m_tokens": t.write_5m, "ttl_12h_tokens": t.write_1h});
    }
    json!({
        "input_tokens": t.input,
        "input_tokens_details": input,
        "output_tokens": t.output,
        "output_tokens_details": {"reasoning_tokens": t.reasoning},
        "total_tokens": t.input + t.output,
    })
}

/// A complete JSON reply, or for `x-mock-cut-after` its first half followed by an aborted connection.
pub(crate) fn json_or_cut(call: &Call<'_>, v: &Value) -> Resp {
    if call.ctl.cut_after.is_none() {
        return reply::ok_json(v);
    }
    let bytes = serde_json::to_vec(v).unwrap_or_default();
    let mut s = Script::uncounted(std::time::Duration::ZERO);
    s.push(bytes[..bytes.len() / 2].to_vec());
    s.cut();
    reply::with_body(
        http::StatusCode::OK,
        http::HeaderValue::from_static("application/json"),
        s.into_body(),
    )
}

pub(crate) fn chat(call: &Call<'_>) -> Resp {
    let req = match parse(call) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let model = match require_model(&req) {
        Ok(m) => m,
        Err(e) => return e,
    };
    if req.messages.is_none() {
        return reply::openai_error(
            http::StatusCode::BAD_REQUEST,
            "Missing required parameter: 'messages'.",
            "invalid_request_error",
            Some("missing_required_parameter"),
            Some("messages"),
        );
    }
    let stream = req.stream.unwrap_or(false);
    if !stream && req.stream_options.is_some() {
        return reply::openai_error(
            http::StatusCode::BAD_REQUEST,
            "The 'stream_options' parameter is only allowed when 'stream' is enabled.",
            "invalid_request_error",
            None,
            Some("stream_options"),
        );
    }
    let tokens = call.ctl.tokens(call.body.len());
    let tool = tool_name(call, &req);
    if stream {
        let include = req
            .stream_options
            .as_ref()
            .and_then(|o| o.include_usage)
            .unwrap_or(false);
        return chat_stream(call, model, tool, include, &tokens);
    }
    let chunks = call.ctl.chunks;
    let (message, finish) = match tool {
        Some(name) => (
            json!({"role": "assistant", "content": full_text(chunks), "refusal": null, "annotations": [],
                "tool_calls": [{"id": format!("call_mock{}", call.n), "type": "function",
                    "function": {"name": name, "arguments": TOOL_ARGS}}]}),
            "tool_calls",
        ),
        None => (
            json!({"role": "assistant", "content": full_text(chunks), "refusal": null, "annotations": []}),
            "stop",
        ),
    };
    let mut v = json!({
        "id": format!("chatcmpl-mock{}", call.n),
        "object": "chat.completion",
        "created": now_secs(),
        "model": model,
        "choices": [{"index": 0, "message": message, "logprobs": null, "finish_reason": finish}],
        "service_tier": tier(call),
        "system_fingerprint": "fp_mock",
        "usage": chat_usage(&tokens),
    });
    if call.azure {
        v["prompt_filter_results"] = azure_prompt_filter();
        v["choices"][0]["content_filter_results"] = azure_filter_results();
    }
    json_or_cut(call, &v)
}

/// Azure's verdict on a text that passed every content filter.
fn azure_filter_results() -> Value {
    let safe = json!({"filtered": false, "severity": "safe"});
    json!({"hate": safe, "self_harm": safe, "sexual": safe, "violence": safe})
}

fn azure_prompt_filter() -> Value {
    json!([{"prompt_index": 0, "content_filter_results": azure_filter_results()}])
}

fn chat_stream(
    call: &Call<'_>,
    model: &str,
    tool: Option<&str>,
    include_usage: bool,
    tokens: &Tokens,
) -> Resp {
    let ctl = &call.ctl;
    // Every chunk shares this head; only `choices` and the usage tail differ.
    let head = format!(
        r#"data: {{"id":"chatcmpl-mock{}","object":"chat.completion.chunk","created":{},"model":{},"service_tier":{},"system_fingerprint":"fp_mock","choices":["#,
        call.n,
        now_secs(),
        Value::from(model),
        Value::from(tier(call)),
    );
    let null_tail = if include_usage {
        r#","usage":null"#
    } else {
        ""
    };
    let chunk = |choices: &str, tail: &str| {
        let mut s = String::with_capacity(head.len() + choices.len() + tail.len() + 4);
        s.push_str(&head);
        s.push_str(choices);
        s.push(']');
        s.push_str(tail);
        s.push_str("}\n\n");
        s
    };
    let mut script = Script::counted(call.state, ctl.chunk_delay);
    if call.azure {
        // Azure opens with the prompt's filter results: empty `choices`, blank fields, no usage.
        let first = json!({"choices": [], "created": 0, "id": "", "model": "", "object": "",
            "prompt_filter_results": azure_prompt_filter()});
        script.push(reply::data(&first.to_string()));
    }
    script.push(chunk(
        r#"{"index":0,"delta":{"role":"assistant","content":"","refusal":null},"logprobs":null,"finish_reason":null}"#,
        null_tail,
    ));
    let deltas = ctl.deltas_before_cut();
    for i in 0..deltas {
        let choice = format!(
            r#"{{"index":0,"delta":{{"content":"{}"}},"logprobs":null,"finish_reason":null}}"#,
            delta_text(i)
        );
        script.push_delta(chunk(&choice, null_tail));
        if i == 0 && ctl.stream_error {
            let err = json!({"error": {"message": "The server had an error while processing your request.",
                "type": "server_error", "param": null, "code": null}});
            script.push(reply::data(&err.to_string()));
            return reply::sse(O, script);
        }
    }
    if ctl.cut_after.is_some() {
        script.cut();
        return reply::sse(O, script);
    }
    let finish = match tool {
        Some(name) => {
            let start = json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "id": format!("call_mock{}", call.n), "type": "function",
                "function": {"name": name, "arguments": ""}}]}, "logprobs": null, "finish_reason": null}]);
            let start = start.to_string();
            script.push(chunk(&start[1..start.len() - 1], null_tail));
            let args = json!([{"index": 0, "delta": {"tool_calls": [{"index": 0,
                "function": {"arguments": TOOL_ARGS}}]}, "logprobs": null, "finish_reason": null}]);
            let args = args.to_string();
            script.push(chunk(&args[1..args.len() - 1], null_tail));
            "tool_calls"
        }
        None => "stop",
    };
    let finish_choice =
        format!(r#"{{"index":0,"delta":{{}},"logprobs":null,"finish_reason":"{finish}"}}"#);
    let usage_tail = format!(r#","usage":{}"#, chat_usage(tokens));
    if include_usage && ctl.usage_with_choices {
        script.push(chunk(&finish_choice, &usage_tail));
    } else {
        script.push(chunk(&finish_choice, null_tail));
        if include_usage {
            script.push(chunk("", &usage_tail));
        }
    }
    script.push("data: [DONE]\n\n");
    reply::sse(O, script)
}

/// The Responses API object around `output` and `usage`.
fn response_object(
    call: &Call<'_>,
    model: &str,
    status: &str,
    output: Value,
    usage: Value,
    max_output_tokens: Option<u64>,
) -> Value {
    let (error, incomplete) = match status {
        "failed" => (
            json!({"code": "server_error", "message": "The model failed to generate a response (x-mock-response-status)."}),
            Value::Null,
        ),
        "incomplete" => (Value::Null, json!({"reason": "max_output_tokens"})),
        _ => (Value::Null, Value::Null),
    };
    json!({
        "id": format!("resp_mock{}", call.n),
        "object": "response",
        "created_at": now_secs(),
        "status": status,
        "background": false,
        "error": error,
        "incomplete_details": incomplete,
        "instructions": null,
        "max_output_tokens": max_output_tokens,
        "model": model,
        "output": output,
        "parallel_tool_calls": true,
        "previous_response_id": null,
        "reasoning": {"effort": null, "summary": null},
        "service_tier": tier(call),
        "store": true,
        "temperature": 1.0,
        "text": {"format": {"type": "text"}},
        "tool_choice": "auto",
        "tools": [],
        "top_p": 1.0,
        "truncation": "disabled",
        "usage": usage,
        "user": null,
        "metadata": {},
    })
}

fn message_item(call: &Call<'_>, status: &str, text: Option<&str>) -> Value {
    let content = match text {
        Some(t) => json!([{"type": "output_text", "text": t, "annotations": [], "logprobs": []}]),
        None => json!([]),
    };
    json!({"type": "message", "id": format!("msg_mock{}", call.n), "role": "assistant",
        "status": status, "content": content})
}

fn final_status(call: &Call<'_>) -> &'static str {
    match call.ctl.response_status {
        None => "completed",
        Some(FinalStatus::Incomplete) => "incomplete",
        Some(FinalStatus::Failed) => "failed",
    }
}

pub(crate) fn responses(call: &Call<'_>) -> Resp {
    let req = match parse(call) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let model = match require_model(&req) {
        Ok(m) => m,
        Err(e) => return e,
    };
    let tokens = call.ctl.tokens(call.body.len());
    if req.stream.unwrap_or(false) {
        return responses_stream(call, model, req.max_output_tokens, &tokens);
    }
    let status = final_status(call);
    let output = if status == "failed" {
        json!([])
    } else {
        let item_status = if status == "incomplete" {
            "incomplete"
        } else {
            "completed"
        };
        json!([message_item(
            call,
            item_status,
            Some(&full_text(call.ctl.chunks))
        )])
    };
    let v = response_object(
        call,
        model,
        status,
        output,
        responses_usage(&tokens),
        req.max_output_tokens,
    );
    json_or_cut(call, &v)
}

fn responses_stream(call: &Call<'_>, model: &str, max_out: Option<u64>, tokens: &Tokens) -> Resp {
    let ctl = &call.ctl;
    let mut script = Script::counted(call.state, ctl.chunk_delay);
    let mut seq = 0u64;
    let mut emit = |script: &mut Script, delayed: bool, kind: &str, v: Value| {
        let ev = reply::event(
            kind,
            &reply::typed_json(kind, &format!(r#","sequence_number":{seq}"#), &v),
        );
        seq += 1;
        if delayed {
            script.push_delta(ev);
        } else {
            script.push(ev);
        }
    };
    let item_id = format!("msg_mock{}", call.n);
    let pending = response_object(call, model, "in_progress", json!([]), Value::Null, max_out);
    emit(
        &mut script,
        false,
        "response.created",
        json!({"response": pending.clone()}),
    );
    emit(
        &mut script,
        false,
        "response.in_progress",
        json!({"response": pending}),
    );
    emit(
        &mut script,
        false,
        "response.output_item.added",
        json!({"output_index": 0, "item": message_item(call, "in_progress", None)}),
    );
    emit(
        &mut script,
        false,
        "response.content_part.added",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": "", "annotations": []}}),
    );
    for i in 0..ctl.deltas_before_cut() {
        emit(
            &mut script,
            true,
            "response.output_text.delta",
            json!({"item_id": item_id, "output_index": 0, "content_index": 0,
                "delta": delta_text(i), "logprobs": []}),
        );
        if i == 0 && ctl.stream_error {
            emit(
                &mut script,
                false,
                "error",
                json!({"code": "server_error", "message": "The server had an error while processing your request.",
                    "param": null}),
            );
            return reply::sse(O, script);
        }
    }
    if ctl.cut_after.is_some() {
        script.cut();
        return reply::sse(O, script);
    }
    let text = full_text(ctl.chunks);
    let status = final_status(call);
    let item_status = if status == "completed" {
        "completed"
    } else {
        "incomplete"
    };
    emit(
        &mut script,
        false,
        "response.output_text.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0, "text": text, "logprobs": []}),
    );
    emit(
        &mut script,
        false,
        "response.content_part.done",
        json!({"item_id": item_id, "output_index": 0, "content_index": 0,
            "part": {"type": "output_text", "text": text, "annotations": []}}),
    );
    let item = message_item(call, item_status, Some(&text));
    emit(
        &mut script,
        false,
        "response.output_item.done",
        json!({"output_index": 0, "item": item.clone()}),
    );
    let done = response_object(
        call,
        model,
        status,
        json!([item]),
        responses_usage(tokens),
        max_out,
    );
    let kind = match status {
        "completed" => "response.completed",
        "incomplete" => "response.incomplete",
        _ => "response.failed",
    };
    emit(&mut script, false, kind, json!({"response": done}));
    reply::sse(O, script)
}

#[derive(Deserialize)]
struct CompactRequest {
    model: Option<String>,
    input: Option<Value>,
}

/// `POST /v1/responses/compact`: the user messages of the input plus one compaction item; billable usage.
pub(crate) fn compact(call: &Call<'_>) -> Resp {
    let req: CompactRequest = match serde_json::from_slice(call.body) {
        Ok(r) => r,
        Err(e) => return call.bad_request(O, &format!("We could not parse the JSON body ({e})")),
    };
    let Some(model) = req.model else {
        return reply::openai_error(
            http::StatusCode::BAD_REQUEST,
            "Missing required parameter: 'model'.",
            "invalid_request_error",
            Some("missing_required_parameter"),
            Some("model"),
        );
    };
    let mut output: Vec<Value> = match req.input {
        Some(Value::String(s)) => vec![json!({"type": "message", "role": "user",
            "content": [{"type": "input_text", "text": s}]})],
        Some(Value::Array(items)) => items
            .into_iter()
            .filter(|i| i.get("role").and_then(Value::as_str) == Some("user"))
            .collect(),
        _ => Vec::new(),
    };
    output.push(
        json!({"type": "compaction", "id": format!("cmp_mock{}", call.n),
        "encrypted_content": "bWVzaGdhdGUtbW9jayBjb21wYWN0aW9u"}),
    );
    let tokens = call.ctl.tokens(call.body.len());
    let v = json!({
        "id": format!("resp_mock{}", call.n),
        "object": "response.compaction",
        "created_at": now_secs(),
        "model": model,
        "output": output,
        "usage": responses_usage(&tokens),
    });
    reply::ok_json(&v)
}

/// `POST /v1/responses/input_tokens`: a count, not billable.
pub(crate) fn input_tokens(call: &Call<'_>) -> Resp {
    if let Err(e) = parse(call) {
        return e;
    }
    reply::ok_json(&json!({"object": "response.input_tokens",
        "input_tokens": call.ctl.input(call.body.len())}))
}

/// Models the mock lists; any other id is served too (the mock answers for every model).
const OPENAI_MODELS: &[(&str, u64)] = &[
    ("gpt-4o", 1_715_367_049),
    ("gpt-4o-mini", 1_721_172_741),
    ("gpt-4.1", 1_744_316_542),
    ("gpt-4.1-mini", 1_744_318_173),
    ("gpt-5", 1_754_425_777),
    ("gpt-5-mini", 1_754_425_928),
    ("o3", 1_744_225_308),
    ("o4-mini", 1_744_225_351),
    ("text-embedding-3-small", 1_705_948_997),
    ("text-embedding-3-large", 1_705_953_180),
    ("whisper-1", 1_677_532_384),
    ("gpt-4o-transcribe", 1_742_068_463),
    ("gpt-4o-mini-transcribe", 1_742_068_596),
    ("tts-1", 1_681_940_951),
    ("tts-1-hd", 1_699_046_015),
    ("gpt-4o-mini-tts", 1_742_403_959),
    ("dall-e-2", 1_698_798_177),
    ("dall-e-3", 1_698_785_189),
    ("gpt-image-1", 1_745_517_030),
];

fn model_object(id: &str, created: u64) -> Value {
    json!({"id": id, "object": "model", "created": created, "owned_by": "system"})
}

pub(crate) fn models() -> Resp {
    let data: Vec<Value> = OPENAI_MODELS
        .iter()
        .map(|(id, c)| model_object(id, *c))
        .collect();
    reply::ok_json(&json!({"object": "list", "data": data}))
}

pub(crate) fn model(id: &str) -> Resp {
    let created = OPENAI_MODELS
        .iter()
        .find(|(m, _)| *m == id)
        .map_or(1_700_000_000, |(_, c)| *c);
    reply::ok_json(&model_object(id, created))
}
