//! Non-stream success bodies, both ways (translation.md §4), naming the client's model.
//!
//! Content the client's format has no place for (AN thinking, citations, server-tool blocks;
//! OA annotations, audio, extra choices) is left out and announced in `dropped`.

use bytes::Bytes;

use super::ids::{finish_reason_for, restore_tool_id, sanitize_tool_id, stop_reason_for};
use super::usage::{AnUsage, OaUsage};
use super::value::{obj, Json, Object};
use super::{now_unix, Dropped, TranslateError, Translated};

fn not_a(what: &str) -> TranslateError {
    TranslateError::new("", format!("the upstream response is not {what}"))
}

/// Non-stream response, Anthropic message -> OpenAI chat completion.
pub fn anthropic_response_to_openai(
    body: &[u8],
    client_model: &str,
) -> Result<Translated, TranslateError> {
    let msg = Json::parse(body).ok_or_else(|| not_a("JSON"))?;
    let Some(blocks) = msg.get("content").as_array() else {
        return Err(not_a("an Anthropic message"));
    };
    let mut dropped = Dropped::default();
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for b in blocks {
        match b.get("type").as_str() {
            Some("text") => {
                text.get_or_insert_with(String::new)
                    .push_str(b.get("text").as_str().unwrap_or(""));
                if b.get("citations").as_array().is_some_and(|c| !c.is_empty()) {
                    dropped.add("citations");
                }
            }
            Some("tool_use") => calls.push(obj([
                (
                    "id",
                    restore_tool_id(b.get("id").as_str().unwrap_or(""))
                        .into_owned()
                        .into(),
                ),
                ("type", "function".into()),
                (
                    "function",
                    obj([
                        ("name", b.get("name").as_str().unwrap_or("").into()),
                        ("arguments", b.get("input").to_text().into()),
                    ]),
                ),
            ])),
            Some(other) => dropped.add(other),
            None => {}
        }
    }
    let mut message = Object::new();
    message.insert("role", "assistant");
    message.insert("content", text.map_or(Json::Null, Json::String));
    message.insert("refusal", Json::Null);
    if !calls.is_empty() {
        message.insert("tool_calls", Json::Array(calls));
    }
    let finish = finish_reason_for(msg.get("stop_reason").as_str());
    let id = msg.get("id").as_str().unwrap_or("msg");
    let out = obj([
        ("id", format!("chatcmpl-{id}").into()),
        ("object", "chat.completion".into()),
        ("created", now_unix().into()),
        ("model", client_model.into()),
        (
            "choices",
            Json::Array(vec![obj([
                ("index", 0u64.into()),
                ("message", Json::Object(message)),
                ("logprobs", Json::Null),
                ("finish_reason", finish.into()),
            ])]),
        ),
        ("usage", AnUsage::from_json(msg.get("usage")).to_openai()),
    ]);
    Ok(Translated {
        body: Bytes::from(out.to_text()),
        dropped: dropped.into_vec(),
    })
}

/// Non-stream response, OpenAI chat completion -> Anthropic message.
pub fn openai_response_to_anthropic(
    body: &[u8],
    client_model: &str,
) -> Result<Translated, TranslateError> {
    let resp = Json::parse(body).ok_or_else(|| not_a("JSON"))?;
    let Some(choices) = resp.get("choices").as_array() else {
        return Err(not_a("an OpenAI chat completion"));
    };
    let mut dropped = Dropped::default();
    if choices.len() > 1 {
        dropped.add("choices");
    }
    let choice = choices.first().unwrap_or(&Json::Null);
    let m = choice.get("message");
    let mut content = Vec::new();
    let mut refused = false;
    if let Some(t) = m.get("content").as_str().filter(|t| !t.is_empty()) {
        content.push(obj([("type", "text".into()), ("text", t.into())]));
    }
    if let Some(t) = m.get("refusal").as_str().filter(|t| !t.is_empty()) {
        content.push(obj([("type", "text".into()), ("text", t.into())]));
        refused = true;
    }
    let mut calls: Vec<(Option<&str>, &Json)> = Vec::new();
    if let Some(tc) = m.get("tool_calls").as_array() {
        calls.extend(tc.iter().map(|c| (c.get("id").as_str(), c.get("function"))));
    }
    if !m.get("function_call").is_null() {
        calls.push((None, m.get("function_call")));
    }
    for (k, (id, f)) in calls.into_iter().enumerate() {
        let id = match id {
            Some(id) => sanitize_tool_id(id).into_owned(),
            None => format!("toolu_mg_{k}"),
        };
        let args = f.get("arguments").as_str().unwrap_or("");
        let input = match Json::parse(args.as_bytes()) {
            Some(v @ Json::Object(_)) => v,
            _ => {
                if !args.trim().is_empty() {
                    dropped.add("tool_calls[].function.arguments");
                }
                Json::Object(Object::new())
            }
        };
        content.push(obj([
            ("type", "tool_use".into()),
            ("id", id.into()),
            ("name", f.get("name").as_str().unwrap_or("").into()),
            ("input", input),
        ]));
    }
    for key in ["audio", "reasoning_content"] {
        if !m.get(key).is_null() {
            dropped.add(key);
        }
    }
    if m.get("annotations")
        .as_array()
        .is_some_and(|a| !a.is_empty())
    {
        dropped.add("annotations");
    }
    let stop = if refused {
        "refusal"
    } else {
        stop_reason_for(choice.get("finish_reason").as_str())
    };
    let id = resp.get("id").as_str().unwrap_or("chatcmpl");
    let out = obj([
        ("id", format!("msg_{id}").into()),
        ("type", "message".into()),
        ("role", "assistant".into()),
        ("model", client_model.into()),
        ("content", Json::Array(content)),
        ("stop_reason", stop.into()),
        ("stop_sequence", Json::Null),
        (
            "usage",
            OaUsage::from_json(resp.get("usage")).to_anthropic(),
        ),
    ]);
    Ok(Translated {
        body: Bytes::from(out.to_text()),
        dropped: dropped.into_vec(),
    })
}
