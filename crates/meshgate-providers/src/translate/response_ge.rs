//! Non-stream success bodies from Gemini `generateContent` (a `GenerateContentResponse`),
//! naming the client's model: to an OA chat completion, and to an AN message by way of the
//! OA one (the OA->AN mapping of finish reasons, tool calls and usage is exactly what is
//! needed, so it is not written twice).
//!
//! Thought summaries and parts the client's format has no place for (executable code,
//! generated media) are left out and announced. A prompt Gemini blocked (no candidate,
//! `promptFeedback.blockReason`) is an empty answer finished by `content_filter`.

use bytes::Bytes;

use super::gemini::{call_id, finish_reason_for, GeUsage};
use super::response::openai_response_to_anthropic;
use super::value::{obj, Json, Object};
use super::{now_unix, Dropped, TranslateError, Translated};

/// One candidate's content as OA message fields: text, tool calls, the finish reason.
pub(crate) struct Answer {
    pub text: Option<String>,
    pub calls: Vec<Json>,
    pub finish: &'static str,
}

/// The OA `tool_calls[]` entry of a `functionCall` part.
pub(crate) fn tool_call(response_id: &str, k: usize, part: &Json) -> Json {
    let fc = part.get("functionCall");
    let args = match fc.get("args") {
        Json::Null => "{}".to_owned(),
        a => a.to_text(),
    };
    obj([
        (
            "id",
            call_id(response_id, k, part.get("thoughtSignature").as_str()).into(),
        ),
        ("type", "function".into()),
        (
            "function",
            obj([
                ("name", fc.get("name").as_str().unwrap_or("").into()),
                ("arguments", args.into()),
            ]),
        ),
    ])
}

/// The parts of the first candidate, read into an [`Answer`].
pub(crate) fn read_candidate(resp: &Json, response_id: &str, dropped: &mut Dropped) -> Answer {
    let candidates = resp.get("candidates").as_array().unwrap_or_default();
    if candidates.len() > 1 {
        dropped.add("candidates");
    }
    let c = candidates.first().unwrap_or(&Json::Null);
    let mut text: Option<String> = None;
    let mut calls = Vec::new();
    for part in c.get("content").get("parts").as_array().unwrap_or_default() {
        if part.get("thought").as_bool() == Some(true) {
            dropped.add("thought");
        } else if let Some(t) = part.get("text").as_str() {
            text.get_or_insert_with(String::new).push_str(t);
        } else if !part.get("functionCall").is_null() {
            calls.push(tool_call(response_id, calls.len(), part));
        } else if let Some((k, _)) = part.as_object().and_then(|o| o.iter().next()) {
            dropped.add(k);
        }
    }
    let reason = match c.get("finishReason").as_str() {
        None if candidates.is_empty()
            && !resp.get("promptFeedback").get("blockReason").is_null() =>
        {
            Some("SAFETY")
        }
        r => r,
    };
    Answer {
        text,
        finish: finish_reason_for(reason, !calls.is_empty()),
        calls,
    }
}

/// Non-stream response, Gemini -> OpenAI chat completion.
pub fn gemini_response_to_openai(
    body: &[u8],
    client_model: &str,
) -> Result<Translated, TranslateError> {
    let resp = Json::parse(body)
        .filter(|v| v.as_object().is_some())
        .ok_or_else(|| TranslateError::new("", "the upstream response is not a Gemini response"))?;
    let mut dropped = Dropped::default();
    let response_id = resp.get("responseId").as_str().unwrap_or("gemini");
    let answer = read_candidate(&resp, response_id, &mut dropped);
    let mut message = Object::new();
    message.insert("role", "assistant");
    message.insert("content", answer.text.map_or(Json::Null, Json::String));
    message.insert("refusal", Json::Null);
    if !answer.calls.is_empty() {
        message.insert("tool_calls", Json::Array(answer.calls));
    }
    let out = obj([
        ("id", format!("chatcmpl-{response_id}").into()),
        ("object", "chat.completion".into()),
        ("created", now_unix().into()),
        ("model", client_model.into()),
        (
            "choices",
            Json::Array(vec![obj([
                ("index", 0u64.into()),
                ("message", Json::Object(message)),
                ("logprobs", Json::Null),
                ("finish_reason", answer.finish.into()),
            ])]),
        ),
        (
            "usage",
            GeUsage::from_json(resp.get("usageMetadata")).to_openai(),
        ),
    ]);
    Ok(Translated {
        body: Bytes::from(out.to_text()),
        dropped: dropped.into_vec(),
    })
}

/// Non-stream response, Gemini -> Anthropic message.
pub fn gemini_response_to_anthropic(
    body: &[u8],
    client_model: &str,
) -> Result<Translated, TranslateError> {
    let oa = gemini_response_to_openai(body, client_model)?;
    let mut an = openai_response_to_anthropic(&oa.body, client_model)?;
    let mut dropped = Dropped::default();
    for d in oa.dropped.iter().chain(&an.dropped) {
        dropped.add(d);
    }
    an.dropped = dropped.into_vec();
    Ok(an)
}

#[cfg(test)]
mod tests {
    use super::*;

    const BODY: &str = r#"{"candidates":[{"content":{"parts":[{"text":"thinking","thought":true},{"text":"It is "},{"text":"sunny."},
        {"functionCall":{"name":"get_weather","args":{"city":"Paris"}},"thoughtSignature":"c2ln"}],"role":"model"},
        "finishReason":"STOP","index":0}],
        "usageMetadata":{"promptTokenCount":120,"candidatesTokenCount":30,"totalTokenCount":190,"cachedContentTokenCount":100,"thoughtsTokenCount":40},
        "modelVersion":"gemini-2.5-flash","responseId":"abc"}"#;

    #[test]
    fn to_openai() {
        let t = gemini_response_to_openai(BODY.as_bytes(), "gemini/gemini-2.5-flash").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["model"], "gemini/gemini-2.5-flash");
        assert_eq!(v["id"], "chatcmpl-abc");
        let m = &v["choices"][0]["message"];
        assert_eq!(m["content"], "It is sunny.");
        assert_eq!(m["tool_calls"][0]["id"], "call_abc_0~sig~c2ln");
        assert_eq!(m["tool_calls"][0]["function"]["name"], "get_weather");
        assert_eq!(
            m["tool_calls"][0]["function"]["arguments"],
            r#"{"city":"Paris"}"#
        );
        assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
        assert_eq!(v["usage"]["prompt_tokens"], 120);
        assert_eq!(v["usage"]["completion_tokens"], 70);
        assert_eq!(v["usage"]["prompt_tokens_details"]["cached_tokens"], 100);
        assert_eq!(
            v["usage"]["completion_tokens_details"]["reasoning_tokens"],
            40
        );
        assert_eq!(t.dropped, vec!["thought"]);
    }

    #[test]
    fn to_anthropic() {
        let t = gemini_response_to_anthropic(BODY.as_bytes(), "gemini-2.5-flash").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["model"], "gemini-2.5-flash");
        assert_eq!(v["content"][0]["text"], "It is sunny.");
        assert_eq!(v["content"][1]["type"], "tool_use");
        assert_eq!(v["content"][1]["input"]["city"], "Paris");
        let id = v["content"][1]["id"].as_str().unwrap();
        assert!(id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-'));
        assert_eq!(v["stop_reason"], "tool_use");
        assert_eq!(v["usage"]["input_tokens"], 20);
        assert_eq!(v["usage"]["cache_read_input_tokens"], 100);
        assert_eq!(v["usage"]["output_tokens"], 70);

        let blocked =
            r#"{"promptFeedback":{"blockReason":"SAFETY"},"usageMetadata":{"promptTokenCount":9}}"#;
        let t = gemini_response_to_anthropic(blocked.as_bytes(), "m").unwrap();
        let v: serde_json::Value = serde_json::from_slice(&t.body).unwrap();
        assert_eq!(v["stop_reason"], "refusal");
    }
}
