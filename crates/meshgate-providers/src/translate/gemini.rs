//! What the OpenAI->Gemini and Anthropic->Gemini lanes share ("GE" is Gemini's
//! `generateContent` API): the request being built (turns with alternating `user`/`model`
//! roles, `systemInstruction`, `generationConfig`, tools and `toolConfig`), tool-call ids,
//! `usageMetadata` and finish reasons.
//!
//! Gemini has no tool-call ids: a `functionResponse` names its function. Clients get ids
//! meshgate makes ([`call_id`]), and results are matched to their call by the id the client
//! echoes, looked up in the conversation's own history ([`CallNames`]), so no state is kept.
//! A call's `thoughtSignature` (which Gemini wants back with the call in later turns) rides
//! in the id after [`SIGNATURE_MARK`].
//!
//! Schemas go in `parametersJsonSchema` / `responseJsonSchema`, which take JSON Schema as
//! clients write it, rather than `parameters` / `responseSchema` (an OpenAPI subset that
//! would lose `additionalProperties`, `$ref` and the like).

use super::value::{obj, Json, Object};
use super::TranslateError;

/// Separates a call id from the `thoughtSignature` it carries.
pub(crate) const SIGNATURE_MARK: &str = "~sig~";

/// The id of the `k`-th function call of response `response_id`, carrying `signature`.
pub(crate) fn call_id(response_id: &str, k: usize, signature: Option<&str>) -> String {
    let mut id = format!("call_{response_id}_{k}");
    if let Some(sig) = signature.filter(|s| !s.is_empty()) {
        id.push_str(SIGNATURE_MARK);
        id.push_str(sig);
    }
    id
}

/// The `thoughtSignature` a call id carries, if any.
pub(crate) fn signature_of(id: &str) -> Option<&str> {
    id.split_once(SIGNATURE_MARK)
        .map(|(_, s)| s)
        .filter(|s| !s.is_empty())
}

/// Function names by call id, from the assistant turns of the history.
#[derive(Default)]
pub(crate) struct CallNames(Vec<(String, String)>);

impl CallNames {
    pub(crate) fn add(&mut self, id: &str, name: &str) {
        self.0.push((id.to_owned(), name.to_owned()));
    }

    /// The function a result answers; a result whose call is not in the history cannot be
    /// sent (Gemini needs the name).
    pub(crate) fn name(&self, id: &str, param: &str) -> Result<String, TranslateError> {
        self.0
            .iter()
            .rev()
            .find(|(i, _)| i == id)
            .map(|(_, n)| n.clone())
            .ok_or_else(|| {
                TranslateError::new(
                    param,
                    format!(
                        "tool result for call '{id}' has no matching tool call earlier in the \
                         conversation (Gemini needs the function's name)"
                    ),
                )
            })
    }
}

/// A `functionCall` part (with the signature its id carries).
pub(crate) fn function_call_part(id: &str, name: &str, args: Json) -> Json {
    let mut part = Object::new();
    part.insert("functionCall", obj([("name", name.into()), ("args", args)]));
    if let Some(sig) = signature_of(id) {
        part.insert("thoughtSignature", sig);
    }
    Json::Object(part)
}

/// A `functionResponse` part. Gemini wants an object: a JSON object result is sent as it
/// is, anything else as `{"result": ...}` (or `{"error": ...}` for a failed call).
pub(crate) fn function_response_part(name: &str, result: &str, is_error: bool) -> Json {
    let response = match Json::parse(result.as_bytes()) {
        Some(v @ Json::Object(_)) if !is_error => v,
        _ => obj([(if is_error { "error" } else { "result" }, result.into())]),
    };
    obj([(
        "functionResponse",
        obj([("name", name.into()), ("response", response)]),
    )])
}

/// An `inlineData` part from a base64 data URL's media type and data.
pub(crate) fn inline_data_part(media: &str, data: &str) -> Json {
    obj([(
        "inlineData",
        obj([("mimeType", media.into()), ("data", data.into())]),
    )])
}

pub(crate) fn text_part(text: &str) -> Json {
    obj([("text", text.into())])
}

/// The request being built.
#[derive(Default)]
pub(crate) struct GeRequest {
    system: Vec<Json>,
    contents: Vec<(&'static str, Vec<Json>)>,
    pub(crate) generation: Object,
    declarations: Vec<Json>,
    tool_config: Option<Json>,
}

impl GeRequest {
    pub(crate) fn system_text(&mut self, text: &str) {
        if !text.is_empty() {
            self.system.push(text_part(text));
        }
    }

    /// Parts of one turn; a turn of the same role as the last is merged into it (Gemini
    /// wants `user` and `model` to alternate). Empty turns are left out.
    pub(crate) fn push(&mut self, role: &'static str, parts: Vec<Json>) {
        if parts.is_empty() {
            return;
        }
        match self.contents.last_mut() {
            Some((r, last)) if *r == role => last.extend(parts),
            _ => self.contents.push((role, parts)),
        }
    }

    pub(crate) fn function(&mut self, name: &str, description: Option<&str>, schema: &Json) {
        let mut f = Object::new();
        f.insert("name", name);
        if let Some(d) = description {
            f.insert("description", d);
        }
        // An empty object schema is "no parameters": Gemini takes the declaration without.
        let empty = schema.as_object().is_none_or(|o| {
            o.is_empty()
                || o.iter().all(|(k, v)| match k {
                    "type" => v.as_str() == Some("object"),
                    "properties" => v.as_object().is_some_and(Object::is_empty),
                    _ => false,
                })
        });
        if !empty {
            f.insert("parametersJsonSchema", schema.clone());
        }
        self.declarations.push(Json::Object(f));
    }

    pub(crate) fn has_tools(&self) -> bool {
        !self.declarations.is_empty()
    }

    /// `toolConfig.functionCallingConfig`: `mode` AUTO, ANY or NONE, optionally limited to
    /// `only` (with ANY: that function must be called).
    pub(crate) fn calling_mode(&mut self, mode: &str, only: Option<&str>) {
        let mut c = Object::new();
        c.insert("mode", mode);
        if let Some(name) = only {
            c.insert("allowedFunctionNames", Json::Array(vec![name.into()]));
        }
        self.tool_config = Some(obj([("functionCallingConfig", Json::Object(c))]));
    }

    /// JSON output, with a schema when one was given.
    pub(crate) fn json_output(&mut self, schema: Option<&Json>) {
        self.generation
            .insert("responseMimeType", "application/json");
        if let Some(s) = schema {
            self.generation.insert("responseJsonSchema", s.clone());
        }
    }

    pub(crate) fn thinking_budget(&mut self, budget: i64) {
        self.generation.insert(
            "thinkingConfig",
            obj([("thinkingBudget", Json::Number(budget.into()))]),
        );
    }

    pub(crate) fn into_body(self) -> Result<Json, TranslateError> {
        if self.contents.is_empty() {
            return Err(TranslateError::new(
                "messages",
                "the conversation has no content to send",
            ));
        }
        let mut out = Object::new();
        let contents = self
            .contents
            .into_iter()
            .map(|(role, parts)| obj([("role", role.into()), ("parts", Json::Array(parts))]))
            .collect();
        out.insert("contents", Json::Array(contents));
        if !self.system.is_empty() {
            out.insert(
                "systemInstruction",
                obj([("parts", Json::Array(self.system))]),
            );
        }
        if !self.declarations.is_empty() {
            out.insert(
                "tools",
                Json::Array(vec![obj([(
                    "functionDeclarations",
                    Json::Array(self.declarations),
                )])]),
            );
        }
        if let Some(tc) = self.tool_config {
            out.insert("toolConfig", tc);
        }
        if !self.generation.is_empty() {
            out.insert("generationConfig", Json::Object(self.generation));
        }
        Ok(Json::Object(out))
    }
}

/// Stop sequences (a string or strings) as `stopSequences`.
pub(crate) fn stop_sequences(v: &Json, field: &str) -> Result<Option<Json>, TranslateError> {
    let list: Vec<Json> = match v {
        Json::Null => return Ok(None),
        Json::String(s) => vec![s.as_str().into()],
        Json::Array(a) => {
            for (i, s) in a.iter().enumerate() {
                if s.as_str().is_none() {
                    return Err(TranslateError::new(
                        format!("{field}[{i}]"),
                        "stop sequences must be strings",
                    ));
                }
            }
            a.clone()
        }
        _ => {
            return Err(TranslateError::new(
                field,
                "stop must be a string or an array of strings",
            ))
        }
    };
    Ok((!list.is_empty()).then_some(Json::Array(list)))
}

/// A number field copied into `generationConfig` as `to`.
pub(crate) fn number(
    r: &Json,
    field: &str,
    to: &str,
    ge: &mut GeRequest,
) -> Result<(), TranslateError> {
    match r.get(field) {
        Json::Null => Ok(()),
        v @ Json::Number(_) => {
            ge.generation.insert(to, v.clone());
            Ok(())
        }
        _ => Err(TranslateError::new(
            field,
            format!("{field} must be a number"),
        )),
    }
}

/// Gemini's `usageMetadata`, as reported.
#[derive(Debug, Default, Clone, Copy, PartialEq, Eq)]
pub(crate) struct GeUsage {
    /// The whole prompt, cached tokens included.
    pub prompt: Option<u64>,
    /// Visible output only: thoughts are counted apart.
    pub candidates: Option<u64>,
    pub cached: Option<u64>,
    pub thoughts: Option<u64>,
    /// Prompt tokens of tool results Gemini fetched itself (search, code execution).
    pub tool_prompt: Option<u64>,
}

impl GeUsage {
    pub(crate) fn from_json(v: &Json) -> GeUsage {
        let c = |k: &str| v.get(k).as_u64();
        GeUsage {
            prompt: c("promptTokenCount"),
            candidates: c("candidatesTokenCount"),
            cached: c("cachedContentTokenCount"),
            thoughts: c("thoughtsTokenCount"),
            tool_prompt: c("toolUsePromptTokenCount"),
        }
    }

    /// Overwrites every count `other` reports (stream chunks restate the running totals).
    pub(crate) fn merge(&mut self, other: GeUsage) {
        for (mine, theirs) in [
            (&mut self.prompt, other.prompt),
            (&mut self.candidates, other.candidates),
            (&mut self.cached, other.cached),
            (&mut self.thoughts, other.thoughts),
            (&mut self.tool_prompt, other.tool_prompt),
        ] {
            if theirs.is_some() {
                *mine = theirs;
            }
        }
    }

    /// All prompt tokens billed (cached and tool-use prompts included).
    pub(crate) fn prompt_total(self) -> u64 {
        self.prompt.unwrap_or(0) + self.tool_prompt.unwrap_or(0)
    }

    /// All output tokens billed: thoughts are output.
    pub(crate) fn output_total(self) -> u64 {
        self.candidates.unwrap_or(0) + self.thoughts.unwrap_or(0)
    }

    /// The OA `usage` object (reasoning included in `completion_tokens`, as OA counts it).
    pub(crate) fn to_openai(self) -> Json {
        let prompt = self.prompt_total();
        let completion = self.output_total();
        let mut u = Object::new();
        u.insert("prompt_tokens", prompt);
        u.insert("completion_tokens", completion);
        u.insert("total_tokens", prompt + completion);
        u.insert(
            "prompt_tokens_details",
            obj([("cached_tokens", self.cached.unwrap_or(0).into())]),
        );
        if let Some(t) = self.thoughts {
            u.insert(
                "completion_tokens_details",
                obj([("reasoning_tokens", t.into())]),
            );
        }
        Json::Object(u)
    }
}

/// Gemini `finishReason` -> OA `finish_reason` (`tool_calls` when the answer calls tools).
pub(crate) fn finish_reason_for(reason: Option<&str>, has_calls: bool) -> &'static str {
    match reason {
        Some("MAX_TOKENS") => "length",
        Some(
            "SAFETY" | "RECITATION" | "BLOCKLIST" | "PROHIBITED_CONTENT" | "SPII" | "IMAGE_SAFETY"
            | "LANGUAGE",
        ) => "content_filter",
        _ if has_calls => "tool_calls",
        _ => "stop",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn ids_carry_signatures_and_usage_counts_thoughts_as_output() {
        let id = call_id("r1", 0, Some("c2ln+/="));
        assert_eq!(id, "call_r1_0~sig~c2ln+/=");
        assert_eq!(signature_of(&id), Some("c2ln+/="));
        assert_eq!(signature_of("call_r1_1"), None);
        // Through an Anthropic client the id is sanitised, and restored on the way back.
        let an = super::super::sanitize_tool_id(&id);
        assert_eq!(super::super::restore_tool_id(&an), id);

        let u = GeUsage {
            prompt: Some(1000),
            candidates: Some(50),
            cached: Some(600),
            thoughts: Some(200),
            tool_prompt: None,
        };
        assert_eq!(
            u.to_openai().to_text(),
            r#"{"prompt_tokens":1000,"completion_tokens":250,"total_tokens":1250,"prompt_tokens_details":{"cached_tokens":600},"completion_tokens_details":{"reasoning_tokens":200}}"#
        );
        assert_eq!(finish_reason_for(Some("STOP"), true), "tool_calls");
        assert_eq!(finish_reason_for(Some("SAFETY"), false), "content_filter");
        assert_eq!(finish_reason_for(Some("MAX_TOKENS"), false), "length");
    }
}
