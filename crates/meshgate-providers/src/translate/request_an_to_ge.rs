//! Request translation, AN Messages client -> Gemini `generateContent` upstream.
//!
//! `system` goes to `systemInstruction`; `assistant` turns are `model` turns; `tool_use`
//! blocks are `functionCall` parts and `tool_result` blocks `functionResponse` parts named
//! after the call they answer (see `gemini`). Thinking blocks in history (Anthropic's
//! signatures mean nothing to Gemini) and `cache_control` marks are dropped and announced;
//! server tools and image URLs (Gemini takes images inline only) are refused.

use bytes::Bytes;

use super::gemini::{
    function_call_part, function_response_part, inline_data_part, number, stop_sequences,
    text_part, CallNames, GeRequest,
};
use super::ids::restore_tool_id;
use super::value::Json;
use super::{Dropped, TranslateError, Translated};

/// Fields read below (everything else is announced as dropped).
const HANDLED: [&str; 14] = [
    "model",
    "max_tokens",
    "messages",
    "system",
    "stream",
    "stop_sequences",
    "temperature",
    "top_p",
    "top_k",
    "tools",
    "tool_choice",
    "thinking",
    "output_config",
    "metadata",
];

/// Request, Anthropic messages -> Gemini generateContent.
pub fn anthropic_to_gemini(body: &[u8]) -> Result<Translated, TranslateError> {
    let req = match Json::parse(body) {
        Some(Json::Object(o)) => o,
        _ => return Err(TranslateError::new("", "the body must be a JSON object")),
    };
    let r = Json::Object(req.clone());
    let mut dropped = Dropped::default();
    let mut ge = GeRequest::default();

    match r.get("system") {
        Json::Null => {}
        Json::String(s) => ge.system_text(s),
        Json::Array(blocks) => {
            for (i, b) in blocks.iter().enumerate() {
                if !b.get("cache_control").is_null() {
                    dropped.add("cache_control");
                }
                match b.get("text").as_str() {
                    Some(t) if b.get("type").as_str() == Some("text") => ge.system_text(t),
                    _ => {
                        return Err(TranslateError::new(
                            format!("system[{i}]"),
                            "system blocks may only be text",
                        ))
                    }
                }
            }
        }
        _ => {
            return Err(TranslateError::new(
                "system",
                "system must be a string or an array of text blocks",
            ))
        }
    }
    convert_messages(&r, &mut ge, &mut dropped)?;
    convert_tools(&r, &mut ge, &mut dropped)?;

    if let Some(s) = stop_sequences(r.get("stop_sequences"), "stop_sequences")? {
        ge.generation.insert("stopSequences", s);
    }
    number(&r, "max_tokens", "maxOutputTokens", &mut ge)?;
    number(&r, "temperature", "temperature", &mut ge)?;
    number(&r, "top_p", "topP", &mut ge)?;
    number(&r, "top_k", "topK", &mut ge)?;

    let th = r.get("thinking");
    match th.get("type").as_str() {
        None => {}
        Some("enabled") => {
            let budget = th.get("budget_tokens").as_u64().unwrap_or(1024);
            ge.thinking_budget(i64::try_from(budget).unwrap_or(i64::MAX));
        }
        Some("disabled") => ge.thinking_budget(0),
        // Gemini's dynamic budget.
        Some("adaptive") => ge.thinking_budget(-1),
        Some(other) => {
            return Err(TranslateError::new(
                "thinking.type",
                format!("thinking type '{other}' is not supported"),
            ))
        }
    }

    let oc = r.get("output_config");
    if let Some(o) = oc.as_object() {
        for (k, v) in o.iter() {
            match k {
                "format" if !v.is_null() => match v.get("type").as_str() {
                    Some("json_schema") if v.get("schema").as_object().is_some() => {
                        ge.json_output(Some(v.get("schema")));
                    }
                    _ => {
                        return Err(TranslateError::new(
                            "output_config.format",
                            "only a json_schema format with a schema is supported",
                        ))
                    }
                },
                "format" => {}
                _ => dropped.add(format!("output_config.{k}")),
            }
        }
    }

    for (key, v) in req.iter() {
        if HANDLED.contains(&key) || v.is_null() {
            continue;
        }
        dropped.add(key);
    }
    Ok(Translated {
        body: Bytes::from(ge.into_body()?.to_text()),
        dropped: dropped.into_vec(),
    })
}

fn convert_messages(
    r: &Json,
    ge: &mut GeRequest,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    let Some(msgs) = r.get("messages").as_array() else {
        return Err(TranslateError::new("messages", "messages must be an array"));
    };
    let mut names = CallNames::default();
    for (i, m) in msgs.iter().enumerate() {
        let path = format!("messages[{i}]");
        let role = match m.get("role").as_str() {
            Some("user") => "user",
            Some("assistant") => "model",
            other => {
                return Err(TranslateError::new(
                    format!("{path}.role"),
                    format!("unsupported role '{}'", other.unwrap_or("")),
                ))
            }
        };
        let blocks = match m.get("content") {
            Json::String(s) => {
                if !s.is_empty() {
                    ge.push(role, vec![text_part(s)]);
                }
                continue;
            }
            Json::Array(b) => b,
            _ => {
                return Err(TranslateError::new(
                    format!("{path}.content"),
                    "content must be a string or an array of blocks",
                ))
            }
        };
        let mut parts = Vec::with_capacity(blocks.len());
        for (j, b) in blocks.iter().enumerate() {
            let bpath = format!("{path}.content[{j}]");
            if !b.get("cache_control").is_null() {
                dropped.add("cache_control");
            }
            match b.get("type").as_str() {
                Some("text") => {
                    if let Some(t) = b.get("text").as_str().filter(|t| !t.is_empty()) {
                        parts.push(text_part(t));
                    }
                }
                Some("image" | "document") => parts.push(media_part(b, &bpath)?),
                Some("tool_use") if role == "model" => {
                    let id = restore_tool_id(b.get("id").as_str().unwrap_or("")).into_owned();
                    let name = b.get("name").as_str().unwrap_or("");
                    names.add(&id, name);
                    let args = match b.get("input") {
                        Json::Null => Json::Object(Default::default()),
                        v => v.clone(),
                    };
                    parts.push(function_call_part(&id, name, args));
                }
                Some("tool_result") if role == "user" => {
                    let id = restore_tool_id(b.get("tool_use_id").as_str().unwrap_or(""));
                    let name = names.name(&id, &format!("{bpath}.tool_use_id"))?;
                    let text = result_text(b.get("content"), &bpath)?;
                    let is_error = b.get("is_error").as_bool() == Some(true);
                    parts.push(function_response_part(&name, &text, is_error));
                }
                Some(t @ ("thinking" | "redacted_thinking")) => dropped.add(t),
                _ => {
                    return Err(TranslateError::new(
                        bpath,
                        "this content block is not supported by the Gemini upstream",
                    ))
                }
            }
        }
        ge.push(role, parts);
    }
    Ok(())
}

/// An `image` or `document` block with a base64 source as an `inlineData` part.
fn media_part(b: &Json, path: &str) -> Result<Json, TranslateError> {
    let src = b.get("source");
    match (src.get("type").as_str(), src.get("data").as_str()) {
        (Some("base64"), Some(data)) => {
            let media = src.get("media_type").as_str().unwrap_or("");
            Ok(inline_data_part(media, data))
        }
        (Some("text"), Some(text)) if b.get("type").as_str() == Some("document") => {
            Ok(text_part(text))
        }
        _ => Err(TranslateError::new(
            format!("{path}.source"),
            "the Gemini upstream takes images and documents inline only: send a base64 \
             source, not a URL",
        )),
    }
}

/// A `tool_result`'s content as text (Gemini's `functionResponse` carries no images).
fn result_text(content: &Json, path: &str) -> Result<String, TranslateError> {
    match content {
        Json::Null => Ok(String::new()),
        Json::String(s) => Ok(s.clone()),
        Json::Array(blocks) => {
            let mut text = String::new();
            for (k, b) in blocks.iter().enumerate() {
                match b.get("text").as_str() {
                    Some(t) if b.get("type").as_str() == Some("text") => text.push_str(t),
                    _ => {
                        return Err(TranslateError::new(
                            format!("{path}.content[{k}]"),
                            "tool results may only contain text for the Gemini upstream",
                        ))
                    }
                }
            }
            Ok(text)
        }
        _ => Err(TranslateError::new(
            format!("{path}.content"),
            "content must be a string or an array of blocks",
        )),
    }
}

fn convert_tools(
    r: &Json,
    ge: &mut GeRequest,
    dropped: &mut Dropped,
) -> Result<(), TranslateError> {
    for (i, t) in r
        .get("tools")
        .as_array()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        if !matches!(t.get("type").as_str(), None | Some("custom")) {
            return Err(TranslateError::new(
                format!("tools[{i}].type"),
                "server tools are not supported by the Gemini upstream",
            ));
        }
        let Some(name) = t.get("name").as_str() else {
            return Err(TranslateError::new(
                format!("tools[{i}].name"),
                "tools need a name",
            ));
        };
        if !t.get("cache_control").is_null() {
            dropped.add("cache_control");
        }
        ge.function(name, t.get("description").as_str(), t.get("input_schema"));
    }
    let tc = r.get("tool_choice");
    match tc.get("type").as_str() {
        None => {}
        Some("auto") => ge.calling_mode("AUTO", None),
        Some("any") => ge.calling_mode("ANY", None),
        Some("none") => ge.calling_mode("NONE", None),
        Some("tool") => match tc.get("name").as_str() {
            Some(n) => ge.calling_mode("ANY", Some(n)),
            None => {
                return Err(TranslateError::new(
                    "tool_choice.name",
                    "tool_choice of type tool needs a name",
                ))
            }
        },
        Some(other) => {
            return Err(TranslateError::new(
                "tool_choice.type",
                format!("tool_choice '{other}' is not supported"),
            ))
        }
    }
    if tc.get("disable_parallel_tool_use").as_bool() == Some(true) {
        dropped.add("tool_choice.disable_parallel_tool_use");
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: &str) -> Result<(String, Vec<String>), TranslateError> {
        anthropic_to_gemini(body.as_bytes())
            .map(|t| (String::from_utf8(t.body.to_vec()).unwrap(), t.dropped))
    }

    #[test]
    fn full_conversation() {
        let (body, dropped) = translate(
            r#"{"model":"gemini-2.5-pro","max_tokens":256,"system":[{"type":"text","text":"Be brief.","cache_control":{"type":"ephemeral"}}],
              "messages":[
                {"role":"user","content":[{"type":"text","text":"Weather?"},
                  {"type":"image","source":{"type":"base64","media_type":"image/jpeg","data":"/9j/"}}]},
                {"role":"assistant","content":[{"type":"thinking","thinking":"t","signature":"s"},
                  {"type":"tool_use","id":"toolu_1","name":"get_weather","input":{"city":"Paris"}}]},
                {"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_1","content":[{"type":"text","text":"{\"temp\":21}"}]}]}],
              "tools":[{"name":"get_weather","input_schema":{"type":"object","properties":{"city":{"type":"string"}}}}],
              "tool_choice":{"type":"tool","name":"get_weather"},"stop_sequences":["END"],"temperature":0.2,"top_k":40,
              "thinking":{"type":"enabled","budget_tokens":2048},"metadata":{"user_id":"u"}}"#,
        )
        .unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"contents":[{"role":"user","parts":[{"text":"Weather?"},{"inlineData":{"mimeType":"image/jpeg","data":"/9j/"}}]},"#,
                r#"{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}}}]},"#,
                r#"{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"temp":21}}}]}],"#,
                r#""systemInstruction":{"parts":[{"text":"Be brief."}]},"#,
                r#""tools":[{"functionDeclarations":[{"name":"get_weather","parametersJsonSchema":{"type":"object","properties":{"city":{"type":"string"}}}}]}],"#,
                r#""toolConfig":{"functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["get_weather"]}},"#,
                r#""generationConfig":{"stopSequences":["END"],"maxOutputTokens":256,"temperature":0.2,"topK":40,"thinkingConfig":{"thinkingBudget":2048}}}"#
            )
        );
        assert_eq!(dropped, vec!["cache_control", "thinking"]);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image","source":{"type":"url","url":"https://x/y.png"}}]}]}"#,
                "messages[0].content[0].source",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"web_search_20250305","name":"web_search"}]}"#,
                "tools[0].type",
            ),
            (
                r#"{"messages":[{"role":"user","content":[{"type":"tool_result","tool_use_id":"toolu_x","content":"r"}]}]}"#,
                "messages[0].content[0].tool_use_id",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(translate(body).unwrap_err().param, param, "{body}");
        }
    }
}
