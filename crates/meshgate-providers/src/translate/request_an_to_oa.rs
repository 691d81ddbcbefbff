//! Request translation, AN Messages client -> OA Chat Completions upstream (translation.md §2).
//!
//! `system` becomes the first message; each `tool_result` of a user turn becomes its own
//! `tool` message ahead of the rest of that turn (images inside results move to the user
//! message that follows, since OA tool messages carry text only). Thinking blocks in history
//! and `cache_control` marks are dropped and announced; server tools are refused.

use bytes::Bytes;

use super::ids::restore_tool_id;
use super::value::{obj, Json, Object};
use super::{Dropped, RequestOptions, TranslateError, Translated};

/// OA accepts at most this many stop sequences.
const MAX_STOP: usize = 4;

/// Fields read below (everything else is announced as dropped).
const HANDLED: [&str; 16] = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "stop_sequences",
    "temperature",
    "top_p",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "metadata",
    "service_tier",
    "mcp_servers",
    "container",
];

/// Request, Anthropic messages -> OpenAI chat completions. `upstream_model` replaces `model`.
pub fn anthropic_to_openai_chat(
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

    if r.get("mcp_servers")
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        return Err(TranslateError::new(
            "mcp_servers",
            "MCP servers are not supported by the upstream",
        ));
    }
    if !r.get("container").is_null() {
        return Err(TranslateError::new(
            "container",
            "containers are not supported by the upstream",
        ));
    }

    let mut out = Object::new();
    out.insert("model", upstream_model);

    let mut messages = Vec::new();
    match r.get("system") {
        Json::Null => {}
        Json::String(s) => {
            if !s.is_empty() {
                messages.push(obj([
                    ("role", "system".into()),
                    ("content", s.as_str().into()),
                ]));
            }
        }
        Json::Array(blocks) => {
            let mut texts = Vec::with_capacity(blocks.len());
            for (i, b) in blocks.iter().enumerate() {
                if b.get("type").as_str() != Some("text") {
                    return Err(TranslateError::new(
                        format!("system[{i}]"),
                        "system blocks must be text",
                    ));
                }
                note_block_hints(b, &mut dropped);
                texts.push(b.get("text").as_str().unwrap_or(""));
            }
            let text = texts.join("\n\n");
            if !text.is_empty() {
                messages.push(obj([("role", "system".into()), ("content", text.into())]));
            }
        }
        _ => {
            return Err(TranslateError::new(
                "system",
                "system must be a string or blocks",
            ))
        }
    }
    let Some(msgs) = r.get("messages").as_array() else {
        return Err(TranslateError::new("messages", "messages must be an array"));
    };
    for (i, m) in msgs.iter().enumerate() {
        convert_message(m, &format!("messages[{i}]"), &mut messages, &mut dropped)?;
    }
    out.insert("messages", Json::Array(messages));

    if let Some(n) = r.get("max_tokens").as_u64() {
        let field = if opts.legacy_max_tokens {
            "max_tokens"
        } else {
            "max_completion_tokens"
        };
        out.insert(field, n);
    }

    if let Some(stops) = r.get("stop_sequences").as_array() {
        if stops.len() > MAX_STOP {
            return Err(TranslateError::new(
                "stop_sequences",
                format!("the upstream accepts at most {MAX_STOP} stop sequences"),
            ));
        }
        if !stops.is_empty() {
            out.insert("stop", Json::Array(stops.to_vec()));
        }
    }
    for field in ["temperature", "top_p"] {
        let v = r.get(field);
        if !v.is_null() {
            out.insert(field, v.clone());
        }
    }

    let tools = convert_tools(&r, &mut dropped)?;
    let has_tools = !tools.is_empty();
    if has_tools {
        out.insert("tools", Json::Array(tools));
    }
    let tc = r.get("tool_choice");
    if !tc.is_null() {
        let choice: Json = match tc.get("type").as_str() {
            Some("auto") => "auto".into(),
            Some("any") => "required".into(),
            Some("none") => "none".into(),
            Some("tool") => obj([
                ("type", "function".into()),
                (
                    "function",
                    obj([("name", tc.get("name").as_str().unwrap_or("").into())]),
                ),
            ]),
            _ => {
                return Err(TranslateError::new(
                    "tool_choice",
                    "this tool_choice is not supported by the upstream",
                ))
            }
        };
        out.insert("tool_choice", choice);
        if has_tools && tc.get("disable_parallel_tool_use").as_bool() == Some(true) {
            out.insert("parallel_tool_calls", false);
        }
    }

    // Reasoning: `output_config.effort` maps directly; a thinking budget maps by size.
    let oc = r.get("output_config");
    let th = r.get("thinking");
    let effort = match oc.get("effort").as_str() {
        Some(e) => Some(e.to_owned()),
        None => match th.get("type").as_str() {
            Some("enabled") => Some(
                match th.get("budget_tokens").as_u64().unwrap_or(0) {
                    0..=2048 => "low",
                    2049..=8192 => "medium",
                    _ => "high",
                }
                .to_owned(),
            ),
            _ => None,
        },
    };
    if let Some(e) = effort {
        if opts.reasoning {
            out.insert("reasoning_effort", e);
        } else {
            dropped.add(if oc.get("effort").is_null() {
                "thinking"
            } else {
                "output_config.effort"
            });
        }
    }
    match oc.get("format") {
        Json::Null => {}
        f if f.get("type").as_str() == Some("json_schema") => {
            out.insert(
                "response_format",
                obj([
                    ("type", "json_schema".into()),
                    (
                        "json_schema",
                        obj([
                            ("name", "output".into()),
                            ("schema", f.get("schema").clone()),
                            ("strict", true.into()),
                        ]),
                    ),
                ]),
            );
        }
        _ => {
            return Err(TranslateError::new(
                "output_config.format",
                "this output format is not supported by the upstream",
            ))
        }
    }
    if let Some(o) = oc.as_object() {
        for (k, v) in o.iter() {
            if k != "effort" && k != "format" && !v.is_null() {
                dropped.add(format!("output_config.{k}"));
            }
        }
    }

    if let Some(u) = r.get("metadata").get("user_id").as_str() {
        out.insert("user", u);
    }
    if r.get("service_tier").as_str() == Some("standard_only") {
        out.insert("service_tier", "default");
    }
    if let Some(s) = r.get("stream").as_bool() {
        out.insert("stream", s);
        if s {
            // Always: the AN client's message_delta needs the usage.
            out.insert("stream_options", obj([("include_usage", true.into())]));
        }
    }

    for (key, v) in req.iter() {
        if !HANDLED.contains(&key) && !v.is_null() {
            dropped.add(key);
        }
    }

    Ok(Translated {
        body: Bytes::from(Json::Object(out).to_text()),
        dropped: dropped.into_vec(),
    })
}

/// Announces the hints a block carries that OA has no place for.
fn note_block_hints(b: &Json, dropped: &mut Dropped) {
    if !b.get("cache_control").is_null() {
        dropped.add("cache_control");
    }
    if b.get("citations").as_array().is_some_and(|c| !c.is_empty()) {
        dropped.add("citations");
    }
}

fn convert_message(
    m: &Json,
    path: &str,
    out: &mut Vec<Json>,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    let role = m.get("role").as_str().unwrap_or("");
    match (role, m.get("content")) {
        ("user" | "assistant", Json::String(s)) => {
            out.push(obj([("role", role.into()), ("content", s.as_str().into())]));
            Ok(())
        }
        ("user", Json::Array(blocks)) => user_blocks(blocks, path, out, dropped),
        ("assistant", Json::Array(blocks)) => assistant_blocks(blocks, path, out, dropped),
        ("user" | "assistant", _) => Err(TranslateError::new(
            format!("{path}.content"),
            "content must be a string or an array of blocks",
        )),
        _ => Err(TranslateError::new(
            format!("{path}.role"),
            format!("unsupported role '{role}'"),
        )),
    }
}

fn user_blocks(
    blocks: &[Json],
    path: &str,
    out: &mut Vec<Json>,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    // Images found inside tool results: OA tool messages are text, so they go first in the
    // user message that follows the tool messages.
    let mut moved = Vec::new();
    let mut parts = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        let bpath = format!("{path}.content[{j}]");
        note_block_hints(b, dropped);
        if b.get("type").as_str() == Some("tool_result") {
            let mut text = String::new();
            match b.get("content") {
                Json::Null => {}
                Json::String(s) => text.push_str(s),
                Json::Array(inner) => {
                    for (k, ib) in inner.iter().enumerate() {
                        note_block_hints(ib, dropped);
                        match ib.get("type").as_str() {
                            Some("text") => {
                                if !text.is_empty() {
                                    text.push('\n');
                                }
                                text.push_str(ib.get("text").as_str().unwrap_or(""));
                            }
                            Some("image") => {
                                moved.push(image_part(ib, &format!("{bpath}.content[{k}]"))?)
                            }
                            _ => {
                                return Err(TranslateError::new(
                                    format!("{bpath}.content[{k}]"),
                                    "tool results may only hold text and images for the upstream",
                                ))
                            }
                        }
                    }
                }
                _ => {
                    return Err(TranslateError::new(
                        format!("{bpath}.content"),
                        "content must be a string or blocks",
                    ))
                }
            }
            if b.get("is_error").as_bool() == Some(true) {
                text.insert_str(0, "Error: ");
            }
            let id = b.get("tool_use_id").as_str().unwrap_or("");
            out.push(obj([
                ("role", "tool".into()),
                ("tool_call_id", restore_tool_id(id).into_owned().into()),
                ("content", text.into()),
            ]));
        } else {
            parts.push(user_part(b, &bpath)?);
        }
    }
    moved.extend(parts);
    if !moved.is_empty() {
        out.push(obj([
            ("role", "user".into()),
            ("content", Json::Array(moved)),
        ]));
    }
    Ok(())
}

fn user_part(b: &Json, path: &str) -> Result<Json, TranslateError> {
    match b.get("type").as_str() {
        Some("text") => Ok(obj([
            ("type", "text".into()),
            ("text", b.get("text").as_str().unwrap_or("").into()),
        ])),
        Some("image") => image_part(b, path),
        Some("document") => {
            let src = b.get("source");
            match (src.get("type").as_str(), src.get("media_type").as_str()) {
                (Some("base64"), Some("application/pdf")) => {
                    let data = src.get("data").as_str().unwrap_or("");
                    let name = b.get("title").as_str().unwrap_or("doc.pdf");
                    Ok(obj([
                        ("type", "file".into()),
                        (
                            "file",
                            obj([
                                ("filename", name.into()),
                                (
                                    "file_data",
                                    format!("data:application/pdf;base64,{data}").into(),
                                ),
                            ]),
                        ),
                    ]))
                }
                (Some("text"), _) => Ok(obj([
                    ("type", "text".into()),
                    ("text", src.get("data").as_str().unwrap_or("").into()),
                ])),
                _ => Err(TranslateError::new(
                    format!("{path}.source"),
                    "only base64 PDF and text documents are supported by the upstream",
                )),
            }
        }
        _ => Err(TranslateError::new(
            path,
            "this content block type is not supported by the upstream",
        )),
    }
}

fn image_part(b: &Json, path: &str) -> Result<Json, TranslateError> {
    let src = b.get("source");
    let url = match src.get("type").as_str() {
        Some("base64") => format!(
            "data:{};base64,{}",
            src.get("media_type").as_str().unwrap_or("image/png"),
            src.get("data").as_str().unwrap_or("")
        ),
        Some("url") => src.get("url").as_str().unwrap_or("").to_owned(),
        _ => {
            return Err(TranslateError::new(
                format!("{path}.source"),
                "only base64 and URL images are supported by the upstream",
            ))
        }
    };
    Ok(obj([
        ("type", "image_url".into()),
        ("image_url", obj([("url", url.into())])),
    ]))
}

fn assistant_blocks(
    blocks: &[Json],
    path: &str,
    out: &mut Vec<Json>,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    let mut text = String::new();
    let mut calls = Vec::new();
    for (j, b) in blocks.iter().enumerate() {
        note_block_hints(b, dropped);
        match b.get("type").as_str() {
            Some("text") => text.push_str(b.get("text").as_str().unwrap_or("")),
            Some("tool_use") => {
                let id = b.get("id").as_str().unwrap_or("");
                calls.push(obj([
                    ("id", restore_tool_id(id).into_owned().into()),
                    ("type", "function".into()),
                    (
                        "function",
                        obj([
                            ("name", b.get("name").as_str().unwrap_or("").into()),
                            ("arguments", b.get("input").to_text().into()),
                        ]),
                    ),
                ]));
            }
            Some(t @ ("thinking" | "redacted_thinking")) => dropped.add(t),
            _ => {
                return Err(TranslateError::new(
                    format!("{path}.content[{j}]"),
                    "this content block type is not supported by the upstream",
                ))
            }
        }
    }
    if text.is_empty() && calls.is_empty() {
        return Ok(());
    }
    let mut m = Object::new();
    m.insert("role", "assistant");
    m.insert(
        "content",
        if text.is_empty() {
            Json::Null
        } else {
            text.into()
        },
    );
    if !calls.is_empty() {
        m.insert("tool_calls", Json::Array(calls));
    }
    out.push(Json::Object(m));
    Ok(())
}

fn convert_tools(r: &Json, dropped: &mut Dropped) -> Result<Vec<Json>, TranslateError> {
    let Some(tools) = r.get("tools").as_array() else {
        return Ok(Vec::new());
    };
    let mut out = Vec::with_capacity(tools.len());
    for (i, t) in tools.iter().enumerate() {
        if !matches!(t.get("type").as_str(), None | Some("custom")) {
            return Err(TranslateError::new(
                format!("tools[{i}]"),
                "server tools are not supported by the upstream",
            ));
        }
        let Some(name) = t.get("name").as_str() else {
            return Err(TranslateError::new(
                format!("tools[{i}].name"),
                "tools need a name",
            ));
        };
        let mut f = Object::new();
        f.insert("name", name);
        if let Some(d) = t.get("description").as_str() {
            f.insert("description", d);
        }
        f.insert("parameters", t.get("input_schema").clone());
        if let Some(s) = t.get("strict").as_bool() {
            f.insert("strict", s);
        }
        if let Some(o) = t.as_object() {
            for (k, v) in o.iter() {
                let known = matches!(
                    k,
                    "type" | "name" | "description" | "input_schema" | "strict"
                );
                if !known && !v.is_null() {
                    dropped.add(if k == "cache_control" {
                        "cache_control".to_owned()
                    } else {
                        format!("tools[].{k}")
                    });
                }
            }
        }
        out.push(obj([
            ("type", "function".into()),
            ("function", Json::Object(f)),
        ]));
    }
    Ok(out)
}
