//! Request translation, OA Chat Completions client -> Gemini `generateContent` upstream.
//!
//! System/developer messages go, in order, to `systemInstruction`; `assistant` turns are
//! `model` turns; tool results are `functionResponse` parts of a `user` turn, named after
//! the call they answer (found by id in the history, see `gemini`). The model is in the URL,
//! not the body. Images must be base64 data URLs (Gemini cannot fetch a URL inline).

use bytes::Bytes;

use super::gemini::{
    function_call_part, function_response_part, inline_data_part, number, stop_sequences,
    text_part, CallNames, GeRequest,
};
use super::request_oa_to_an::parse_data_url;
use super::value::{Json, Object};
use super::{Dropped, TranslateError, Translated};

/// Hints dropped (and announced) when they carry a value: none changes the answer.
const DROPPED_HINTS: [&str; 9] = [
    "store",
    "metadata",
    "prompt_cache_key",
    "prompt_cache_retention",
    "user",
    "safety_identifier",
    "service_tier",
    "logit_bias",
    "verbosity",
];

/// Fields read below (everything else is refused or announced as dropped).
const HANDLED: [&str; 19] = [
    "model",
    "messages",
    "max_tokens",
    "max_completion_tokens",
    "stop",
    "temperature",
    "top_p",
    "seed",
    "presence_penalty",
    "frequency_penalty",
    "n",
    "stream",
    "stream_options",
    "tools",
    "functions",
    "tool_choice",
    "function_call",
    "response_format",
    "reasoning_effort",
];

/// Fields Gemini cannot honour: refused when they ask for something.
const REFUSED: [(&str, &str); 6] = [
    (
        "logprobs",
        "logprobs are not supported by the Gemini upstream",
    ),
    (
        "top_logprobs",
        "logprobs are not supported by the Gemini upstream",
    ),
    (
        "audio",
        "audio output is not supported by the Gemini upstream",
    ),
    (
        "prediction",
        "predicted outputs are not supported by the Gemini upstream",
    ),
    (
        "web_search_options",
        "web search is not supported by the Gemini upstream",
    ),
    (
        "modalities",
        "only text output is supported by the Gemini upstream",
    ),
];

/// Values that ask for nothing: `null`, `false`, `0`, `{}`, `[]`, `""`, `["text"]`.
fn is_noop(v: &Json) -> bool {
    match v {
        Json::Null => true,
        Json::Bool(b) => !b,
        Json::Number(n) => n.as_f64() == Some(0.0),
        Json::String(s) => s.is_empty(),
        Json::Array(a) => a.is_empty() || a.iter().all(|x| x.as_str() == Some("text")),
        Json::Object(o) => o.is_empty(),
    }
}

/// Request, OpenAI chat completions -> Gemini generateContent.
pub fn openai_chat_to_gemini(body: &[u8]) -> Result<Translated, TranslateError> {
    let req = match Json::parse(body) {
        Some(Json::Object(o)) => o,
        _ => return Err(TranslateError::new("", "the body must be a JSON object")),
    };
    let r = Json::Object(req.clone());
    let mut dropped = Dropped::default();
    for (field, why) in REFUSED {
        if !is_noop(r.get(field)) {
            return Err(TranslateError::new(field, why));
        }
    }
    if !matches!(r.get("n"), Json::Null) && r.get("n").as_u64() != Some(1) {
        return Err(TranslateError::new(
            "n",
            "only n=1 is supported by the Gemini upstream",
        ));
    }
    let mut ge = GeRequest::default();
    convert_messages(&r, &mut ge, &mut dropped)?;
    convert_tools(&r, &mut ge)?;
    convert_tool_choice(&r, &mut ge)?;
    if r.get("parallel_tool_calls").as_bool() == Some(false) {
        // Gemini may still answer with several calls; the client handles each.
        dropped.add("parallel_tool_calls");
    }

    if let Some(s) = stop_sequences(r.get("stop"), "stop")? {
        ge.generation.insert("stopSequences", s);
    }
    let max = match r.get("max_completion_tokens") {
        Json::Null => "max_tokens",
        _ => "max_completion_tokens",
    };
    number(&r, max, "maxOutputTokens", &mut ge)?;
    // OA and Gemini share the 0-2 temperature range.
    number(&r, "temperature", "temperature", &mut ge)?;
    number(&r, "top_p", "topP", &mut ge)?;
    number(&r, "seed", "seed", &mut ge)?;
    number(&r, "presence_penalty", "presencePenalty", &mut ge)?;
    number(&r, "frequency_penalty", "frequencyPenalty", &mut ge)?;

    match r.get("response_format") {
        Json::Null => {}
        rf => match rf.get("type").as_str() {
            Some("text") => {}
            Some("json_object") => ge.json_output(None),
            Some("json_schema") => {
                let js = rf.get("json_schema");
                if js.get("schema").as_object().is_none() {
                    return Err(TranslateError::new(
                        "response_format.json_schema.schema",
                        "a JSON schema object is required",
                    ));
                }
                ge.json_output(Some(js.get("schema")));
            }
            _ => {
                return Err(TranslateError::new(
                    "response_format",
                    "this response_format type is not supported by the Gemini upstream",
                ))
            }
        },
    }

    match r.get("reasoning_effort") {
        Json::Null => {}
        Json::String(e) => {
            let budget = match e.as_str() {
                "none" | "minimal" => 0,
                "low" => 1024,
                "medium" => 8192,
                "high" | "xhigh" | "max" => 24576,
                _ => {
                    return Err(TranslateError::new(
                        "reasoning_effort",
                        format!("reasoning_effort '{e}' is not supported"),
                    ))
                }
            };
            ge.thinking_budget(budget);
        }
        _ => {
            return Err(TranslateError::new(
                "reasoning_effort",
                "reasoning_effort must be a string",
            ))
        }
    }

    for (key, v) in req.iter() {
        if HANDLED.contains(&key) || REFUSED.iter().any(|(f, _)| *f == key) {
            continue;
        }
        if key == "parallel_tool_calls" || (DROPPED_HINTS.contains(&key) && is_noop(v)) {
            continue;
        }
        dropped.add(key);
    }
    Ok(Translated {
        body: Bytes::from(ge.into_body()?.to_text()),
        dropped: dropped.into_vec(),
    })
}

const MESSAGE_KEYS: [&str; 7] = [
    "role",
    "content",
    "tool_calls",
    "function_call",
    "tool_call_id",
    "refusal",
    "name",
];

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
        let role = m.get("role").as_str().unwrap_or("");
        if let Some(o) = m.as_object() {
            for (k, v) in o.iter() {
                let hint = (k == "name" && role != "function") || !MESSAGE_KEYS.contains(&k);
                if hint && !v.is_null() {
                    dropped.add(format!("messages[].{k}"));
                }
            }
        }
        match role {
            "system" | "developer" => {
                for part in content_parts(m.get("content"), &path, dropped)? {
                    match part.get("text").as_str() {
                        Some(t) => ge.system_text(t),
                        None => {
                            return Err(TranslateError::new(
                                format!("{path}.content"),
                                "system messages may only contain text",
                            ))
                        }
                    }
                }
            }
            "user" => {
                let parts = content_parts(m.get("content"), &path, dropped)?;
                ge.push("user", parts);
            }
            "assistant" => {
                let mut parts = Vec::new();
                for p in content_parts(m.get("content"), &path, dropped)? {
                    if p.get("text").is_null() {
                        return Err(TranslateError::new(
                            format!("{path}.content"),
                            "assistant content may only contain text",
                        ));
                    }
                    parts.push(p);
                }
                if parts.is_empty() {
                    if let Some(t) = m.get("refusal").as_str().filter(|t| !t.is_empty()) {
                        parts.push(text_part(t));
                    }
                }
                for (j, c) in m
                    .get("tool_calls")
                    .as_array()
                    .unwrap_or_default()
                    .iter()
                    .enumerate()
                {
                    let cpath = format!("{path}.tool_calls[{j}]");
                    if !matches!(c.get("type").as_str(), None | Some("function")) {
                        return Err(TranslateError::new(
                            cpath,
                            "only function tool calls are supported by the Gemini upstream",
                        ));
                    }
                    let id = c.get("id").as_str().unwrap_or("");
                    let f = c.get("function");
                    let name = f.get("name").as_str().unwrap_or("");
                    names.add(id, name);
                    parts.push(function_call_part(id, name, call_args(f, &cpath)?));
                }
                let fc = m.get("function_call");
                if !fc.is_null() {
                    let name = fc.get("name").as_str().unwrap_or("");
                    parts.push(function_call_part(
                        "",
                        name,
                        call_args(fc, &format!("{path}.function_call"))?,
                    ));
                }
                ge.push("model", parts);
            }
            "tool" | "function" => {
                let name = if role == "tool" {
                    let id = m.get("tool_call_id").as_str().ok_or_else(|| {
                        TranslateError::new(
                            format!("{path}.tool_call_id"),
                            "tool messages need a tool_call_id",
                        )
                    })?;
                    names.name(id, &format!("{path}.tool_call_id"))?
                } else {
                    m.get("name").as_str().unwrap_or("").to_owned()
                };
                let mut text = String::new();
                for p in content_parts(m.get("content"), &path, dropped)? {
                    match p.get("text").as_str() {
                        Some(t) => text.push_str(t),
                        None => {
                            return Err(TranslateError::new(
                                format!("{path}.content"),
                                "tool results may only contain text for the Gemini upstream",
                            ))
                        }
                    }
                }
                ge.push("user", vec![function_response_part(&name, &text, false)]);
            }
            _ => {
                return Err(TranslateError::new(
                    format!("{path}.role"),
                    format!("unsupported role '{role}'"),
                ))
            }
        }
    }
    Ok(())
}

/// A call's `arguments` (a JSON string) as the `args` object Gemini wants.
fn call_args(f: &Json, path: &str) -> Result<Json, TranslateError> {
    let args = f.get("arguments").as_str().unwrap_or("");
    if args.trim().is_empty() {
        return Ok(Json::Object(Object::new()));
    }
    match Json::parse(args.as_bytes()) {
        Some(v @ Json::Object(_)) => Ok(v),
        _ => Err(TranslateError::new(
            format!("{path}.function.arguments"),
            "tool call arguments must be a JSON object for the Gemini upstream",
        )),
    }
}

/// A message's `content` (a string or parts) as Gemini parts.
fn content_parts(
    content: &Json,
    path: &str,
    dropped: &mut Dropped,
) -> Result<Vec<Json>, TranslateError> {
    let parts = match content {
        Json::Null => return Ok(Vec::new()),
        Json::String(s) if s.is_empty() => return Ok(Vec::new()),
        Json::String(s) => return Ok(vec![text_part(s)]),
        Json::Array(parts) => parts,
        _ => {
            return Err(TranslateError::new(
                format!("{path}.content"),
                "content must be a string, an array of parts or null",
            ))
        }
    };
    let mut out = Vec::with_capacity(parts.len());
    for (j, p) in parts.iter().enumerate() {
        let ppath = format!("{path}.content[{j}]");
        if !p.get("cache_control").is_null() {
            dropped.add("cache_control");
        }
        match p.get("type").as_str() {
            Some("text") => {
                if let Some(t) = p.get("text").as_str().filter(|t| !t.is_empty()) {
                    out.push(text_part(t));
                }
            }
            Some("refusal") => {
                if let Some(t) = p.get("refusal").as_str().filter(|t| !t.is_empty()) {
                    out.push(text_part(t));
                }
            }
            Some("image_url") => {
                let iu = p.get("image_url");
                let url = iu.get("url").as_str().or(iu.as_str()).unwrap_or("");
                if !matches!(iu.get("detail").as_str(), None | Some("auto")) {
                    dropped.add("messages[].content[].image_url.detail");
                }
                let Some((media, data)) = parse_data_url(url) else {
                    return Err(TranslateError::new(
                        format!("{ppath}.image_url.url"),
                        "the Gemini upstream takes images inline only: send a base64 data URL \
                         (data:image/png;base64,...), not a link",
                    ));
                };
                out.push(inline_data_part(media, data));
            }
            Some("file") => {
                let data_url = p.get("file").get("file_data").as_str().unwrap_or("");
                let Some((media, data)) = parse_data_url(data_url) else {
                    return Err(TranslateError::new(
                        format!("{ppath}.file"),
                        "only files given as base64 file_data are supported by the Gemini upstream",
                    ));
                };
                out.push(inline_data_part(media, data));
            }
            Some("input_audio") => {
                let a = p.get("input_audio");
                let format = a.get("format").as_str().unwrap_or("wav");
                let data = a.get("data").as_str().unwrap_or("");
                out.push(inline_data_part(&format!("audio/{format}"), data));
            }
            _ => {
                return Err(TranslateError::new(
                    ppath,
                    "this content part type is not supported by the Gemini upstream",
                ))
            }
        }
    }
    Ok(out)
}

fn convert_tools(r: &Json, ge: &mut GeRequest) -> Result<(), TranslateError> {
    let mut add = |f: &Json, path: String| -> Result<(), TranslateError> {
        let Some(name) = f.get("name").as_str() else {
            return Err(TranslateError::new(
                format!("{path}.name"),
                "function tools need a name",
            ));
        };
        ge.function(name, f.get("description").as_str(), f.get("parameters"));
        Ok(())
    };
    for (i, t) in r
        .get("tools")
        .as_array()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        match t.get("type").as_str() {
            Some("function") => add(t.get("function"), format!("tools[{i}].function"))?,
            _ => {
                return Err(TranslateError::new(
                    format!("tools[{i}].type"),
                    "only function tools are supported by the Gemini upstream",
                ))
            }
        }
    }
    for (i, f) in r
        .get("functions")
        .as_array()
        .unwrap_or_default()
        .iter()
        .enumerate()
    {
        add(f, format!("functions[{i}]"))?;
    }
    Ok(())
}

fn convert_tool_choice(r: &Json, ge: &mut GeRequest) -> Result<(), TranslateError> {
    let tc = match r.get("tool_choice") {
        Json::Null => r.get("function_call"),
        tc => tc,
    };
    match tc {
        Json::Null => {}
        Json::String(s) => match s.as_str() {
            "auto" if ge.has_tools() => ge.calling_mode("AUTO", None),
            "auto" => {}
            "required" => ge.calling_mode("ANY", None),
            "none" => ge.calling_mode("NONE", None),
            _ => {
                return Err(TranslateError::new(
                    "tool_choice",
                    format!("tool_choice '{s}' is not supported"),
                ))
            }
        },
        Json::Object(_) => {
            let name = match tc.get("type").as_str() {
                Some("function") => tc.get("function").get("name").as_str(),
                None => tc.get("name").as_str(),
                _ => None,
            };
            match name {
                Some(n) => ge.calling_mode("ANY", Some(n)),
                None => {
                    return Err(TranslateError::new(
                        "tool_choice",
                        "this tool_choice is not supported by the Gemini upstream",
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
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn translate(body: &str) -> Result<(String, Vec<String>), TranslateError> {
        openai_chat_to_gemini(body.as_bytes())
            .map(|t| (String::from_utf8(t.body.to_vec()).unwrap(), t.dropped))
    }

    #[test]
    fn full_conversation() {
        let (body, dropped) = translate(
            r#"{"model":"gemini-2.5-flash","messages":[
                {"role":"system","content":"Be brief."},
                {"role":"user","content":[{"type":"text","text":"Weather?"},
                  {"type":"image_url","image_url":{"url":"data:image/png;base64,iVBO"}}]},
                {"role":"assistant","content":null,"tool_calls":[{"id":"call_r_0~sig~c2ln","type":"function",
                  "function":{"name":"get_weather","arguments":"{\"city\":\"Paris\"}"}}]},
                {"role":"tool","tool_call_id":"call_r_0~sig~c2ln","content":"sunny"},
                {"role":"user","content":"Thanks"}],
              "tools":[{"type":"function","function":{"name":"get_weather","description":"d",
                "parameters":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}}],
              "tool_choice":"required","stop":["END"],"max_tokens":100,"temperature":0.5,"top_p":0.9,
              "response_format":{"type":"json_object"},"user":"u1","stream_options":{"include_usage":true}}"#,
        )
        .unwrap();
        assert_eq!(
            body,
            concat!(
                r#"{"contents":[{"role":"user","parts":[{"text":"Weather?"},{"inlineData":{"mimeType":"image/png","data":"iVBO"}}]},"#,
                r#"{"role":"model","parts":[{"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"}]},"#,
                r#"{"role":"user","parts":[{"functionResponse":{"name":"get_weather","response":{"result":"sunny"}}},{"text":"Thanks"}]}],"#,
                r#""systemInstruction":{"parts":[{"text":"Be brief."}]},"#,
                r#""tools":[{"functionDeclarations":[{"name":"get_weather","description":"d","parametersJsonSchema":{"type":"object","properties":{"city":{"type":"string"}},"required":["city"],"additionalProperties":false}}]}],"#,
                r#""toolConfig":{"functionCallingConfig":{"mode":"ANY"}},"#,
                r#""generationConfig":{"stopSequences":["END"],"maxOutputTokens":100,"temperature":0.5,"topP":0.9,"responseMimeType":"application/json"}}"#
            )
        );
        assert_eq!(dropped, vec!["user".to_string()]);
    }

    #[test]
    fn refusals_name_the_field() {
        let cases = [
            (
                r#"{"messages":[{"role":"user","content":[{"type":"image_url","image_url":{"url":"https://x/y.png"}}]}]}"#,
                "messages[0].content[0].image_url.url",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"logprobs":true}"#,
                "logprobs",
            ),
            (r#"{"messages":[{"role":"user","content":"x"}],"n":2}"#, "n"),
            (
                r#"{"messages":[{"role":"tool","tool_call_id":"nope","content":"x"}]}"#,
                "messages[0].tool_call_id",
            ),
            (
                r#"{"messages":[{"role":"user","content":"x"}],"tools":[{"type":"custom","custom":{}}]}"#,
                "tools[0].type",
            ),
        ];
        for (body, param) in cases {
            assert_eq!(translate(body).unwrap_err().param, param, "{body}");
        }
    }

    #[test]
    fn json_schema_and_named_tool_choice() {
        let (body, _) = translate(
            r#"{"messages":[{"role":"user","content":"x"}],
              "tools":[{"type":"function","function":{"name":"f","parameters":{"type":"object","properties":{}}}}],
              "tool_choice":{"type":"function","function":{"name":"f"}},
              "response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object"}}}}"#,
        )
        .unwrap();
        assert!(
            body.contains(r#""functionDeclarations":[{"name":"f"}]"#),
            "{body}"
        );
        assert!(
            body.contains(r#""functionCallingConfig":{"mode":"ANY","allowedFunctionNames":["f"]}"#)
        );
        assert!(body.contains(
            r#""responseMimeType":"application/json","responseJsonSchema":{"type":"object"}"#
        ));
    }
}
