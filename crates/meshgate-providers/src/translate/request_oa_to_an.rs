//! Request translation, OA Chat Completions client -> AN Messages upstream (translation.md §1).
//!
//! System/developer messages are hoisted, in order, into `system` (documented lossy: a system
//! message in the middle of the conversation moves to the top). Tool results become
//! `tool_result` blocks of a user turn, ahead of any text of that turn; consecutive turns of
//! one role are merged so roles alternate. Tool ids are sanitised reversibly (see `ids`).

use bytes::Bytes;

use super::ids::sanitize_tool_id;
use super::value::{obj, Json, Object};
use super::{Dropped, RequestOptions, TranslateError, Translated};

/// The instruction that stands in for `response_format: json_object`.
pub(crate) const JSON_OBJECT_INSTRUCTION: &str = "Respond with a single JSON object.";

/// Image media types Anthropic accepts.
const IMAGE_TYPES: [&str; 4] = ["image/jpeg", "image/png", "image/gif", "image/webp"];

/// Hints dropped (and announced) when they carry a value: none can change the answer's
/// content, or the reference says drop (sampling penalties, `logit_bias`, `verbosity`).
const DROPPED_HINTS: [&str; 10] = [
    "seed",
    "store",
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "prompt_cache_options",
    "logit_bias",
    "presence_penalty",
    "frequency_penalty",
    "verbosity",
];

/// Fields read below (everything else is announced as dropped).
const HANDLED: [&str; 25] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "n",
    "stream",
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "parallel_tool_calls",
    "response_format",
    "reasoning_effort",
    "user",
    "safety_identifier",
    "service_tier",
    "logprobs",
    "top_logprobs",
    "audio",
    "modalities",
    "prediction",
    "web_search_options",
];

/// Request, OpenAI chat completions -> Anthropic messages. `upstream_model` replaces `model`.
pub fn openai_chat_to_anthropic(
    body: &[u8],
    upstream_model: &str,
    opts: &RequestOptions,
) -> Result<Translated, TranslateError> {
    let req = match Json::parse(body) {
        Some(Json::Object(o)) => o,
        _ => return Err(TranslateError::new("", "the body must be a JSON object")),
    };
    let r = Json::Object(req.clone());
    let mut dropped = Dropped::default();
    refuse_unsupported(&r)?;

    let mut out = Object::new();
    out.insert("model", upstream_model);

    let mut max_tokens = r
        .get("max_completion_tokens")
        .as_u64()
        .or_else(|| r.get("max_tokens").as_u64())
        .unwrap_or(opts.default_max_tokens);

    let conv = convert_messages(&r, &mut dropped)?;

    // Thinking: OA history cannot replay AN thinking blocks, which AN requires when a tool
    // loop continues a thinking turn, so thinking is left off inside a tool loop.
    let mut thinking = None;
    let mut effort = None;
    match r.get("reasoning_effort") {
        Json::Null => {}
        Json::String(e) => match e.as_str() {
            "none" | "minimal" => {}
            "low" | "medium" | "high" | "xhigh" | "max" if conv.in_tool_loop => {
                dropped.add("reasoning_effort");
            }
            "low" | "medium" | "high" | "xhigh" | "max" if opts.adaptive_thinking => {
                thinking = Some(obj([("type", "adaptive".into())]));
                effort = Some(e.clone());
            }
            "low" | "medium" | "high" | "xhigh" | "max" => {
                let budget: u64 = match e.as_str() {
                    "low" => 1024,
                    "medium" => 4096,
                    "high" => 16384,
                    _ => 32768,
                };
                // OA's cap includes reasoning; AN needs budget < max_tokens: raise the cap so
                // the visible answer keeps the room the client asked for.
                if max_tokens <= budget {
                    max_tokens += budget;
                }
                thinking = Some(obj([
                    ("type", "enabled".into()),
                    ("budget_tokens", budget.into()),
                ]));
            }
            _ => {
                return Err(TranslateError::new(
                    "reasoning_effort",
                    format!("reasoning_effort '{e}' is not supported"),
                ))
            }
        },
        _ => {
            return Err(TranslateError::new(
                "reasoning_effort",
                "reasoning_effort must be a string",
            ))
        }
    }

    out.insert("max_tokens", max_tokens);

    let mut system = conv.system;
    let mut output_config = Object::new();
    match r.get("response_format") {
        Json::Null => {}
        rf => match rf.get("type").as_str() {
            Some("text") => {}
            Some("json_object") => system.push(text_block(JSON_OBJECT_INSTRUCTION)),
            Some("json_schema") => {
                let js = rf.get("json_schema");
                let schema = js.get("schema");
                if schema.as_object().is_none() {
                    return Err(TranslateError::new(
                        "response_format.json_schema.schema",
                        "a JSON schema object is required",
                    ));
                }
                if !js.get("description").is_null() {
                    dropped.add("response_format.json_schema.description");
                }
                output_config.insert(
                    "format",
                    obj([("type", "json_schema".into()), ("schema", schema.clone())]),
                );
            }
            _ => {
                return Err(TranslateError::new(
                    "response_format",
                    "this response_format type is not supported by the upstream",
                ))
            }
        },
    }
    if let Some(e) = effort {
        output_config.insert("effort", e);
    }

    if !system.is_empty() {
        out.insert("system", Json::Array(system));
    }
    out.insert("messages", Json::Array(conv.messages));

    let tools = convert_tools(&r)?;
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools", Json::Array(tools));
    }
    if let Some(tc) = convert_tool_choice(&r, has_tools)? {
        out.insert("tool_choice", tc);
    }

    match r.get("stop") {
        Json::Null => {}
        Json::String(s) => out.insert("stop_sequences", Json::Array(vec![s.as_str().into()])),
        Json::Array(a) => {
            let mut seqs = Vec::with_capacity(a.len());
            for (i, s) in a.iter().enumerate() {
                match s {
                    Json::String(_) => seqs.push(s.clone()),
                    _ => {
                        return Err(TranslateError::new(
                            format!("stop[{i}]"),
                            "stop sequences must be strings",
                        ))
                    }
                }
            }
            if !seqs.is_empty() {
                out.insert("stop_sequences", Json::Array(seqs));
            }
        }
        _ => {
            return Err(TranslateError::new(
                "stop",
                "stop must be a string or an array of strings",
            ))
        }
    }

    for (field, clamp) in [("temperature", true), ("top_p", false)] {
        let v = r.get(field);
        if v.is_null() {
            continue;
        }
        let Some(x) = v.as_f64() else {
            return Err(TranslateError::new(
                field,
                format!("{field} must be a number"),
            ));
        };
        if !opts.sampling_params || thinking.is_some() {
            // AN rejects sampling parameters under 2026-10-21 and with thinking enabled.
            dropped.add(field);
        } else if clamp && x > 1.0 {
            // OA's range is 0-2, AN's 0-1.
            out.insert(field, 1.0);
        } else {
            out.insert(field, v.clone());
        }
    }

    if let Some(t) = thinking {
        out.insert("thinking", t);
    }
    if !output_config.is_empty() {
        out.insert("output_config", Json::Object(output_config));
    }

    let user = match r.get("safety_identifier") {
        Json::String(s) => Some(s.clone()),
        _ => r.get("user").as_str().map(str::to_owned),
    };
    if let Some(u) = user.filter(|u| !u.is_empty()) {
        out.insert("metadata", obj([("user_id", u.into())]));
    }

    match r.get("service_tier") {
        Json::Null => {}
        Json::String(s) if s == "priority" => out.insert("service_tier", "auto"),
        Json::String(s) if s == "auto" || s == "default" => {}
        _ => dropped.add("service_tier"),
    }

    if let Some(s) = r.get("stream").as_bool() {
        out.insert("stream", s);
    }

    for (key, v) in req.iter() {
        if HANDLED.contains(&key) {
            continue;
        }
        if key == "stream_options" {
            // Consumed by the gateway (include_usage decides the final usage chunk).
            continue;
        }
        if DROPPED_HINTS.contains(&key) && is_noop(v) {
            continue;
        }
        dropped.add(key);
    }

    Ok(Translated {
        body: Bytes::from(Json::Object(out).to_text()),
        dropped: dropped.into_vec(),
    })
}

/// Values that ask for nothing: `null`, `false`, `0`, `{}`, `[]`, `""`.
fn is_noop(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty(),
        Json::Object(o) => o.is_empty(),
    }
}

/// Refusals that do not depend on the conversation (translation.md §0).
fn refuse_unsupported(r: &Json) -> Result<(), TranslateError> {
    match r.get("n") {
        Json::Null => {}
        n if n.as_u64() == Some(1) => {}
        _ => {
            return Err(TranslateError::new(
                "n",
                "only n=1 is supported by the upstream",
            ))
        }
    }
    if r.get("logprobs").as_bool() == Some(true) {
        return Err(TranslateError::new(
            "logprobs",
            "logprobs are not supported by the upstream",
        ));
    }
    if !r.get("top_logprobs").is_null() && r.get("top_logprobs").as_u64() != Some(0) {
        return Err(TranslateError::new(
            "top_logprobs",
            "logprobs are not supported by the upstream",
        ));
    }
    if !r.get("audio").is_null() {
        return Err(TranslateError::new(
            "audio",
            "audio output is not supported by the upstream",
        ));
    }
    if let Some(m) = r.get("modalities").as_array() {
        if m.iter().any(|x| x.as_str() != Some("text")) {
            return Err(TranslateError::new(
                "modalities",
                "only text output is supported by the upstream",
            ));
        }
    }
    if !r.get("prediction").is_null() {
        return Err(TranslateError::new(
            "prediction",
            "predicted outputs are not supported by the upstream",
        ));
    }
    if !r.get("web_search_options").is_null() {
        return Err(TranslateError::new(
            "web_search_options",
            "web search is not supported by the upstream",
        ));
    }
    Ok(())
}

fn text_block(text: &str) -> Json {
    obj([("type", "text".into()), ("text", text.into())])
}

/// One AN message being built.
struct Turn {
    role: &'static str,
    /// `Some` while the turn is a single plain string (kept as a string when not merged).
    text: Option<String>,
    blocks: Vec<Json>,
}

impl Turn {
    fn into_json(self) -> Json {
        let content = match self.text {
            Some(t) => Json::String(t),
            None => {
                let mut blocks = self.blocks;
                if self.role == "user" {
                    // AN wants tool results first in their user turn.
                    blocks.sort_by_key(|b| b.get("type").as_str() != Some("tool_result"));
                }
                Json::Array(blocks)
            }
        };
        obj([("role", self.role.into()), ("content", content)])
    }

    fn into_blocks(self) -> Vec<Json> {
        match self.text {
            Some(t) => vec![text_block(&t)],
            None => self.blocks,
        }
    }
}

struct Converted {
    system: Vec<Json>,
    messages: Vec<Json>,
    /// An assistant tool call follows the last user message (a tool loop is being continued).
    in_tool_loop: bool,
}

fn push_turn(turns: &mut Vec<Turn>, turn: Turn) {
    match turns.last_mut() {
        Some(last) if last.role == turn.role => {
            let mut blocks = std::mem::take(&mut last.blocks);
            if let Some(t) = last.text.take() {
                blocks.push(text_block(&t));
            }
            blocks.extend(turn.into_blocks());
            last.blocks = blocks;
        }
        _ => turns.push(turn),
    }
}

const MESSAGE_KEYS: [&str; 8] = [
    "role",
    "content",
    "name",
    "tool_calls",
    "function_call",
    "tool_call_id",
    "refusal",
    "audio",
];

fn convert_messages(r: &Json, dropped: &mut Dropped) -> Result<Converted, TranslateError> {
    let Some(msgs) = r.get("messages").as_array() else {
        return Err(TranslateError::new("messages", "messages must be an array"));
    };
    let mut system = Vec::new();
    let mut turns: Vec<Turn> = Vec::new();
    // Legacy `function_call`s get synthesized ids; `function` results take them in order.
    let mut legacy_ids: Vec<(String, String)> = Vec::new();
    let mut legacy_n = 0usize;
    let last_user = msgs
        .iter()
        .rposition(|m| m.get("role").as_str() == Some("user"));
    let mut in_tool_loop = false;

    for (i, m) in msgs.iter().enumerate() {
        let path = format!("messages[{i}]");
        let role = m.get("role").as_str().unwrap_or("");
        if let Some(o) = m.as_object() {
            for (k, v) in o.iter() {
                // `name` is the function's name on legacy `function` messages, else a hint.
                let hint = (k == "name" && role != "function") || !MESSAGE_KEYS.contains(&k);
                if hint && !v.is_null() {
                    dropped.add(format!("messages[].{k}"));
                }
            }
        }
        match role {
            "system" | "developer" => match m.get("content") {
                Json::String(s) => {
                    if !s.is_empty() {
                        system.push(text_block(s));
                    }
                }
                Json::Array(parts) => {
                    for (j, p) in parts.iter().enumerate() {
                        if p.get("type").as_str() != Some("text") {
                            return Err(TranslateError::new(
                                format!("{path}.content[{j}]"),
                                "system messages may only contain text",
                            ));
                        }
                        if let Some(b) = text_part(p) {
                            system.push(b);
                        }
                    }
                }
                _ => {
                    return Err(TranslateError::new(
                        format!("{path}.content"),
                        "content must be a string or an array of parts",
                    ))
                }
            },
            "user" => {
                let turn = match m.get("content") {
                    Json::String(s) => Turn {
                        role: "user",
                        text: Some(s.clone()),
                        blocks: Vec::new(),
                    },
                    Json::Array(parts) => {
                        let mut blocks = Vec::with_capacity(parts.len());
                        for (j, p) in parts.iter().enumerate() {
                            if let Some(b) = user_part(p, &format!("{path}.content[{j}]"), dropped)?
                            {
                                blocks.push(b);
                            }
                        }
                        Turn {
                            role: "user",
                            text: None,
                            blocks,
                        }
                    }
                    _ => {
                        return Err(TranslateError::new(
                            format!("{path}.content"),
                            "content must be a string or an array of parts",
                        ))
                    }
                };
                push_turn(&mut turns, turn);
            }
            "assistant" => {
                if !m.get("audio").is_null() {
                    return Err(TranslateError::new(
                        format!("{path}.audio"),
                        "audio is not supported by the upstream",
                    ));
                }
                let mut blocks = Vec::new();
                match m.get("content") {
                    Json::Null => {}
                    Json::String(s) => {
                        if !s.is_empty() {
                            blocks.push(text_block(s));
                        }
                    }
                    Json::Array(parts) => {
                        for (j, p) in parts.iter().enumerate() {
                            match p.get("type").as_str() {
                                Some("text") => blocks.extend(text_part(p)),
                                Some("refusal") => {
                                    if let Some(t) = p.get("refusal").as_str() {
                                        if !t.is_empty() {
                                            blocks.push(text_block(t));
                                        }
                                    }
                                }
                                _ => {
                                    return Err(TranslateError::new(
                                        format!("{path}.content[{j}]"),
                                        "assistant content may only contain text",
                                    ))
                                }
                            }
                        }
                    }
                    _ => {
                        return Err(TranslateError::new(
                            format!("{path}.content"),
                            "content must be a string, an array of parts or null",
                        ))
                    }
                }
                if blocks.is_empty() {
                    if let Some(t) = m.get("refusal").as_str().filter(|t| !t.is_empty()) {
                        blocks.push(text_block(t));
                    }
                }
                let mut has_calls = false;
                if let Some(calls) = m.get("tool_calls").as_array() {
                    for (j, c) in calls.iter().enumerate() {
                        let cpath = format!("{path}.tool_calls[{j}]");
                        if !matches!(c.get("type").as_str(), None | Some("function")) {
                            return Err(TranslateError::new(
                                cpath,
                                "only function tool calls are supported by the upstream",
                            ));
                        }
                        let Some(id) = c.get("id").as_str() else {
                            return Err(TranslateError::new(
                                format!("{cpath}.id"),
                                "tool calls need an id",
                            ));
                        };
                        blocks.push(tool_use(id, c.get("function"), dropped));
                        has_calls = true;
                    }
                }
                let fc = m.get("function_call");
                if !fc.is_null() {
                    legacy_n += 1;
                    let id = format!("call_legacy_{legacy_n}");
                    let name = fc.get("name").as_str().unwrap_or("").to_owned();
                    blocks.push(tool_use(&id, fc, dropped));
                    legacy_ids.push((name, id));
                    has_calls = true;
                }
                if has_calls && last_user.is_none_or(|u| i > u) {
                    in_tool_loop = true;
                }
                // An assistant turn with nothing in it cannot be sent (AN rejects empty text).
                if !blocks.is_empty() {
                    push_turn(
                        &mut turns,
                        Turn {
                            role: "assistant",
                            text: None,
                            blocks,
                        },
                    );
                }
            }
            "tool" | "function" => {
                let id = if role == "tool" {
                    match m.get("tool_call_id").as_str() {
                        Some(id) => sanitize_tool_id(id).into_owned(),
                        None => {
                            return Err(TranslateError::new(
                                format!("{path}.tool_call_id"),
                                "tool messages need a tool_call_id",
                            ))
                        }
                    }
                } else {
                    let name = m.get("name").as_str().unwrap_or("");
                    let k = legacy_ids.iter().position(|(n, _)| n == name).unwrap_or(0);
                    if k < legacy_ids.len() {
                        legacy_ids.remove(k).1
                    } else {
                        legacy_n += 1;
                        format!("call_legacy_{legacy_n}")
                    }
                };
                let mut block = Object::new();
                block.insert("type", "tool_result");
                block.insert("tool_use_id", id);
                match m.get("content") {
                    Json::String(s) => {
                        if !s.is_empty() {
                            block.insert("content", s.as_str());
                        }
                    }
                    Json::Array(parts) => {
                        let mut inner = Vec::with_capacity(parts.len());
                        for (j, p) in parts.iter().enumerate() {
                            if let Some(b) = user_part(p, &format!("{path}.content[{j}]"), dropped)?
                            {
                                inner.push(b);
                            }
                        }
                        if !inner.is_empty() {
                            block.insert("content", Json::Array(inner));
                        }
                    }
                    Json::Null => {}
                    _ => {
                        return Err(TranslateError::new(
                            format!("{path}.content"),
                            "content must be a string or an array of parts",
                        ))
                    }
                }
                push_turn(
                    &mut turns,
                    Turn {
                        role: "user",
                        text: None,
                        blocks: vec![Json::Object(block)],
                    },
                );
            }
            _ => {
                return Err(TranslateError::new(
                    format!("{path}.role"),
                    format!("unsupported role '{role}'"),
                ))
            }
        }
    }
    Ok(Converted {
        system,
        messages: turns.into_iter().map(Turn::into_json).collect(),
        in_tool_loop,
    })
}

/// A `tool_use` block from an OA `function` object (`name`, `arguments` JSON string).
fn tool_use(id: &str, function: &Json, dropped: &mut Dropped) -> Json {
    let args = function.get("arguments").as_str().unwrap_or("");
    // AN wants an object; what the model generated may be invalid JSON.
    let input = match Json::parse(args.as_bytes()) {
        Some(v @ Json::Object(_)) => v,
        _ => {
            if !args.trim().is_empty() {
                dropped.add("messages[].tool_calls[].function.arguments");
            }
            Json::Object(Object::new())
        }
    };
    obj([
        ("type", "tool_use".into()),
        ("id", sanitize_tool_id(id).into_owned().into()),
        ("name", function.get("name").as_str().unwrap_or("").into()),
        ("input", input),
    ])
}

/// A text part as an AN text block (its `cache_control` kept: AN honours it); `None` when empty.
fn text_part(p: &Json) -> Option<Json> {
    let text = p.get("text").as_str().filter(|t| !t.is_empty())?;
    let mut b = Object::new();
    b.insert("type", "text");
    b.insert("text", text);
    if !p.get("cache_control").is_null() {
        b.insert("cache_control", p.get("cache_control").clone());
    }
    Some(Json::Object(b))
}

/// A user (or tool-result) content part as an AN block.
fn user_part(p: &Json, path: &str, dropped: &mut Dropped) -> Result<Option<Json>, TranslateError> {
    match p.get("type").as_str() {
        Some("text") => Ok(text_part(p)),
        Some("image_url") => {
            let iu = p.get("image_url");
            let url = iu.get("url").as_str().or(iu.as_str()).unwrap_or("");
            if !matches!(iu.get("detail").as_str(), None | Some("auto")) {
                dropped.add("messages[].content[].image_url.detail");
            }
            let source = if let Some((media, data)) = parse_data_url(url) {
                if !IMAGE_TYPES.contains(&media) {
                    return Err(TranslateError::new(
                        format!("{path}.image_url"),
                        format!("image type '{media}' is not supported by the upstream"),
                    ));
                }
                obj([
                    ("type", "base64".into()),
                    ("media_type", media.into()),
                    ("data", data.into()),
                ])
            } else if url.starts_with("https://") || url.starts_with("http://") {
                obj([("type", "url".into()), ("url", url.into())])
            } else {
                return Err(TranslateError::new(
                    format!("{path}.image_url"),
                    "images must be https URLs or base64 data URLs",
                ));
            };
            let mut b = Object::new();
            b.insert("type", "image");
            b.insert("source", source);
            if !p.get("cache_control").is_null() {
                b.insert("cache_control", p.get("cache_control").clone());
            }
            Ok(Some(Json::Object(b)))
        }
        Some("file") => {
            let f = p.get("file");
            let data_url = f.get("file_data").as_str().unwrap_or("");
            match parse_data_url(data_url) {
                Some(("application/pdf", data)) => {
                    let mut b = Object::new();
                    b.insert("type", "document");
                    b.insert(
                        "source",
                        obj([
                            ("type", "base64".into()),
                            ("media_type", "application/pdf".into()),
                            ("data", data.into()),
                        ]),
                    );
                    if let Some(name) = f.get("filename").as_str() {
                        b.insert("title", name);
                    }
                    Ok(Some(Json::Object(b)))
                }
                _ => Err(TranslateError::new(
                    format!("{path}.file"),
                    "only PDF files given as base64 file_data are supported by the upstream",
                )),
            }
        }
        Some("input_audio") => Err(TranslateError::new(
            path,
            "audio input is not supported by the upstream",
        )),
        _ => Err(TranslateError::new(
            path,
            "this content part type is not supported by the upstream",
        )),
    }
}

/// `data:<media>;base64,<data>` -> (media, data).
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media = meta.strip_suffix(";base64")?;
    Some((media, data))
}

fn convert_tools(r: &Json) -> Result<Vec<Json>, TranslateError> {
    let mut out = Vec::new();
    if let Some(tools) = r.get("tools").as_array() {
        for (i, t) in tools.iter().enumerate() {
            match t.get("type").as_str() {
                Some("function") => {
                    out.push(function_tool(t.get("function"), &format!("tools[{i}]"))?)
                }
                Some("custom") => {
                    return Err(TranslateError::new(
                        format!("tools[{i}]"),
                        "custom tools are not supported by the upstream",
                    ))
                }
                _ => {
                    return Err(TranslateError::new(
                        format!("tools[{i}].type"),
                        "only function tools are supported by the upstream",
                    ))
                }
            }
        }
    }
    if let Some(fns) = r.get("functions").as_array() {
        for (i, f) in fns.iter().enumerate() {
            out.push(function_tool(f, &format!("functions[{i}]"))?);
        }
    }
    Ok(out)
}

fn function_tool(f: &Json, path: &str) -> Result<Json, TranslateError> {
    let Some(name) = f.get("name").as_str() else {
        return Err(TranslateError::new(
            format!("{path}.name"),
            "function tools need a name",
        ));
    };
    let mut t = Object::new();
    t.insert("name", name);
    if let Some(d) = f.get("description").as_str() {
        t.insert("description", d);
    }
    let schema = match f.get("parameters") {
        Json::Object(o) if !o.is_empty() => Json::Object(o.clone()),
        _ => obj([
            ("type", "object".into()),
            ("properties", Json::Object(Object::new())),
        ]),
    };
    t.insert("input_schema", schema);
    if let Some(s) = f.get("strict").as_bool() {
        t.insert("strict", s);
    }
    Ok(Json::Object(t))
}

fn convert_tool_choice(r: &Json, has_tools: bool) -> Result<Option<Json>, TranslateError> {
    let tc = match r.get("tool_choice") {
        Json::Null => r.get("function_call"),
        tc => tc,
    };
    let mut choice = match tc {
        Json::Null => None,
        Json::String(s) => Some(match s.as_str() {
            "auto" => obj([("type", "auto".into())]),
            "required" => obj([("type", "any".into())]),
            "none" => obj([("type", "none".into())]),
            _ => {
                return Err(TranslateError::new(
                    "tool_choice",
                    format!("tool_choice '{s}' is not supported"),
                ))
            }
        }),
        Json::Object(_) => {
            let name = match tc.get("type").as_str() {
                Some("function") => tc.get("function").get("name").as_str(),
                // Legacy `function_call: {"name": ..}`.
                None => tc.get("name").as_str(),
                _ => None,
            };
            match name {
                Some(n) => Some(obj([("type", "tool".into()), ("name", n.into())])),
                None => {
                    return Err(TranslateError::new(
                        "tool_choice",
                        "this tool_choice is not supported by the upstream",
                    ))
                }
            }
        }
        _ => {
            return Err(TranslateError::new(
                "tool_choice",
                "tool_choice must be a string or an object",
            ))
        }
    };
    if has_tools && r.get("parallel_tool_calls").as_bool() == Some(false) {
        let c = choice.get_or_insert_with(|| obj([("type", "auto".into())]));
        if c.get("type").as_str() != Some("none") {
            if let Json::Object(o) = c {
                o.insert("disable_parallel_tool_use", true);
            }
        }
    }
    Ok(choice)
}
