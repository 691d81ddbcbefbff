//! Google Gemini through its native API: OpenAI and Anthropic clients reach Gemini models
//! on the translation lane (text, system, history, tools, images, JSON output, streams),
//! metered on Gemini's own `usageMetadata` at the served model's price; untranslatable
//! fields are refused before anything goes upstream; Gemini's errors reach clients in
//! their own shape, and a failing Gemini falls back to another model.

use crate::harness::{sse_data, usage_u64, Harness};
use meshgate_gateway::config::{AliasTarget, DeploymentConfig};
use serde_json::{json, Value};

const CHAT: &str = "/openai/v1/chat/completions";
const MESSAGES: &str = "/anthropic/v1/messages";
const PNG: &str = "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==";

fn weather_tool() -> Value {
    json!({"type": "function", "function": {"name": "get_weather", "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}},
            "required": ["city"], "additionalProperties": false}}})
}

/// The request body the mock received last.
fn sent(
    h: &Harness,
) -> (
    String,
    Option<String>,
    Value,
    meshgate_mock::RecordedRequest,
) {
    let r = h.mock.state.last_request().unwrap();
    (r.path.clone(), r.query.clone(), r.json().unwrap(), r)
}

#[tokio::test]
async fn openai_client_text_system_history_metered_exactly() {
    let h = Harness::start().await;
    let r = h
        .openai(CHAT)
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-cached-tokens", "600")
        .header("x-mock-output-tokens", "300")
        .header("x-mock-reasoning-tokens", "100")
        .json(
            &json!({"model": "gemini/gemini-2.5-flash", "max_tokens": 50, "temperature": 0.3,
            "top_p": 0.8, "stop": ["END"],
            "messages": [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "How are you?"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["meshgate-served-model"],
        "gemini/gemini-2.5-flash; deployment=gemini"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "gemini/gemini-2.5-flash");
    assert_eq!(body["choices"][0]["message"]["role"], "assistant");
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert_eq!(body["choices"][0]["finish_reason"], "stop");
    assert_eq!(body["usage"]["prompt_tokens"], 1000);
    assert_eq!(body["usage"]["completion_tokens"], 300);
    assert_eq!(body["usage"]["total_tokens"], 1300);
    assert_eq!(body["usage"]["prompt_tokens_details"]["cached_tokens"], 600);
    assert_eq!(
        body["usage"]["completion_tokens_details"]["reasoning_tokens"],
        100
    );

    let (path, query, upstream, req) = sent(&h);
    assert_eq!(path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(query, None);
    assert_eq!(req.header("x-goog-api-key"), Some("mock-gemini-key"));
    assert_eq!(req.header("authorization"), None);
    assert_eq!(
        upstream,
        json!({"contents": [
                {"role": "user", "parts": [{"text": "Hi"}]},
                {"role": "model", "parts": [{"text": "Hello!"}]},
                {"role": "user", "parts": [{"text": "How are you?"}]}],
            "systemInstruction": {"parts": [{"text": "Be brief."}]},
            "generationConfig": {"stopSequences": ["END"], "maxOutputTokens": 50,
                "temperature": 0.3, "topP": 0.8}})
    );

    let event = h.one_event().await;
    assert_eq!(event["provider"], "gemini");
    assert_eq!(event["deployment"], "gemini");
    assert_eq!(event["model"], "gemini-2.5-flash");
    assert_eq!(event["requested_model"], "gemini/gemini-2.5-flash");
    assert_eq!(event["outcome"], "ok");
    // promptTokenCount 1000 includes the 600 cached; thoughts (100) are output.
    assert_eq!(usage_u64(&event, "input_uncached"), Some(400));
    assert_eq!(usage_u64(&event, "cache_read"), Some(600));
    assert_eq!(usage_u64(&event, "output"), Some(300));
    assert_eq!(usage_u64(&event, "reasoning"), Some(100));
    // 400 × 0.30 + 600 × 0.03 + 300 × 2.50 per 1M.
    assert_eq!(event["cost_usd"], "0.000888");
}

#[tokio::test]
async fn openai_client_streams_tool_calls_and_sends_results_back() {
    let h = Harness::start().await;
    let r = h
        .openai(CHAT)
        .header("x-mock-tool-call", "1")
        .header("x-mock-input-tokens", "40")
        .header("x-mock-output-tokens", "12")
        .json(&json!({"model": "gemini-2.5-flash", "stream": true,
            "stream_options": {"include_usage": true}, "tool_choice": "auto",
            "tools": [weather_tool()],
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = r.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert!(chunks.iter().all(|c| c["model"] == "gemini-2.5-flash"));
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "tok0 tok1 tok2 tok3 ");
    let call = chunks
        .iter()
        .find_map(|c| c["choices"][0]["delta"]["tool_calls"].get(0).cloned())
        .unwrap();
    assert_eq!(call["function"]["name"], "get_weather");
    assert_eq!(call["function"]["arguments"], r#"{"query":"mock"}"#);
    let call_id = call["id"].as_str().unwrap().to_string();
    let finish = chunks
        .iter()
        .find_map(|c| c["choices"][0]["finish_reason"].as_str())
        .unwrap();
    assert_eq!(finish, "tool_calls");
    let usage = &chunks.last().unwrap()["usage"];
    assert_eq!(usage["prompt_tokens"], 40);
    assert_eq!(usage["completion_tokens"], 12);

    let (path, query, upstream, _) = sent(&h);
    assert_eq!(
        path,
        "/v1beta/models/gemini-2.5-flash:streamGenerateContent"
    );
    assert_eq!(query.as_deref(), Some("alt=sse"));
    assert_eq!(
        upstream["tools"][0]["functionDeclarations"][0],
        json!({"name": "get_weather", "description": "Weather in a city",
            "parametersJsonSchema": {"type": "object", "properties": {"city": {"type": "string"}},
                "required": ["city"], "additionalProperties": false}})
    );
    assert_eq!(
        upstream["toolConfig"],
        json!({"functionCallingConfig": {"mode": "AUTO"}})
    );
    let event = h.wait_events(1).await.remove(0);
    assert_eq!(usage_u64(&event, "input_uncached"), Some(40));
    assert_eq!(usage_u64(&event, "output"), Some(12));

    // The result goes back: Gemini gets the call (with its thought signature) and the
    // result named after it.
    let r = h
        .openai(CHAT)
        .json(&json!({"model": "gemini-2.5-flash", "tools": [weather_tool()],
            "messages": [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": null, "tool_calls": [{"id": call_id, "type": "function",
                    "function": {"name": "get_weather", "arguments": "{\"query\":\"mock\"}"}}]},
                {"role": "tool", "tool_call_id": call_id, "content": "{\"temp_c\":21}"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, _, upstream, _) = sent(&h);
    assert_eq!(
        upstream["contents"],
        json!([{"role": "user", "parts": [{"text": "Weather in Paris?"}]},
            {"role": "model", "parts": [{"functionCall": {"name": "get_weather", "args": {"query": "mock"}},
                "thoughtSignature": "bW9jay1zaWduYXR1cmU="}]},
            {"role": "user", "parts": [{"functionResponse": {"name": "get_weather",
                "response": {"temp_c": 21}}}]}])
    );
}

#[tokio::test]
async fn images_and_json_output_go_inline() {
    let h = Harness::start().await;
    let r = h
        .openai(CHAT)
        .json(&json!({"model": "gemini-2.0-flash",
            "response_format": {"type": "json_schema", "json_schema": {"name": "colour",
                "schema": {"type": "object", "properties": {"colour": {"type": "string"}}}}},
            "messages": [{"role": "user", "content": [
                {"type": "text", "text": "Which colour?"},
                {"type": "image_url", "image_url": {"url": format!("data:image/png;base64,{PNG}")}}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, _, upstream, _) = sent(&h);
    assert_eq!(
        upstream["contents"][0]["parts"][1],
        json!({"inlineData": {"mimeType": "image/png", "data": PNG}})
    );
    assert_eq!(
        upstream["generationConfig"],
        json!({"responseMimeType": "application/json", "responseJsonSchema":
            {"type": "object", "properties": {"colour": {"type": "string"}}}})
    );

    let r = h
        .anthropic(MESSAGES)
        .json(&json!({"model": "gemini-2.5-flash-lite", "max_tokens": 64,
            "messages": [{"role": "user", "content": [
                {"type": "image", "source": {"type": "base64", "media_type": "image/png", "data": PNG}},
                {"type": "text", "text": "Describe"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (_, _, upstream, _) = sent(&h);
    assert_eq!(
        upstream["contents"][0]["parts"][0],
        json!({"inlineData": {"mimeType": "image/png", "data": PNG}})
    );
}

#[tokio::test]
async fn anthropic_client_with_tools_streamed_and_not() {
    let h = Harness::start().await;
    let tools = json!([{"name": "get_weather", "description": "Weather",
        "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}}}]);
    let r = h
        .anthropic(MESSAGES)
        .header("x-mock-tool-call", "1")
        .header("x-mock-input-tokens", "500")
        .header("x-mock-cached-tokens", "100")
        .header("x-mock-output-tokens", "20")
        .json(
            &json!({"model": "gemini-2.5-pro", "max_tokens": 200, "system": "Be brief.",
            "tools": tools, "tool_choice": {"type": "any"},
            "messages": [{"role": "user", "content": "Weather in Paris?"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "message");
    assert_eq!(body["model"], "gemini-2.5-pro");
    assert_eq!(body["content"][0]["type"], "text");
    assert_eq!(body["content"][1]["type"], "tool_use");
    assert_eq!(body["content"][1]["name"], "get_weather");
    assert_eq!(body["content"][1]["input"], json!({"query": "mock"}));
    assert_eq!(body["stop_reason"], "tool_use");
    assert_eq!(body["usage"]["input_tokens"], 400);
    assert_eq!(body["usage"]["cache_read_input_tokens"], 100);
    assert_eq!(body["usage"]["output_tokens"], 20);
    let tool_id = body["content"][1]["id"].as_str().unwrap().to_string();
    let (_, _, upstream, req) = sent(&h);
    assert_eq!(req.header("anthropic-version"), None);
    assert_eq!(
        upstream["systemInstruction"],
        json!({"parts": [{"text": "Be brief."}]})
    );
    assert_eq!(
        upstream["toolConfig"],
        json!({"functionCallingConfig": {"mode": "ANY"}})
    );
    let event = h.one_event().await;
    // 400 × 1.25 + 100 × 0.125 + 20 × 10 per 1M.
    assert_eq!(event["cost_usd"], "0.0007125");

    // The tool result, streamed back.
    let r = h
        .anthropic(MESSAGES)
        .json(&json!({"model": "gemini-2.5-pro", "max_tokens": 200, "stream": true, "tools": tools,
            "messages": [{"role": "user", "content": "Weather in Paris?"},
                {"role": "assistant", "content": body["content"].clone()},
                {"role": "user", "content": [{"type": "tool_result", "tool_use_id": tool_id, "content": "sunny"}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let events: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    let kinds: Vec<&str> = events.iter().map(|e| e["type"].as_str().unwrap()).collect();
    assert_eq!(kinds.first(), Some(&"message_start"));
    assert_eq!(kinds.last(), Some(&"message_stop"));
    assert_eq!(events[0]["message"]["model"], "gemini-2.5-pro");
    let streamed: String = events
        .iter()
        .filter_map(|e| e["delta"]["text"].as_str())
        .collect();
    assert_eq!(streamed, "tok0 tok1 tok2 tok3 ");
    let delta = events
        .iter()
        .find(|e| e["type"] == "message_delta")
        .unwrap();
    assert_eq!(delta["delta"]["stop_reason"], "end_turn");
    let (_, query, upstream, _) = sent(&h);
    assert_eq!(query.as_deref(), Some("alt=sse"));
    assert_eq!(
        upstream["contents"][1]["parts"][1],
        json!({"functionCall": {"name": "get_weather", "args": {"query": "mock"}},
            "thoughtSignature": "bW9jay1zaWduYXR1cmU="})
    );
    assert_eq!(
        upstream["contents"][2]["parts"][0],
        json!({"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}})
    );
}

#[tokio::test]
async fn untranslatable_fields_are_refused_before_anything_is_sent() {
    let h = Harness::start().await;
    let r = h
        .openai(CHAT)
        .json(
            &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": [
            {"type": "image_url", "image_url": {"url": "https://example.com/cat.png"}}]}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert_eq!(body["error"]["code"], "untranslatable_field");
    assert_eq!(
        body["error"]["param"],
        "messages[0].content[0].image_url.url"
    );
    let message = body["error"]["message"].as_str().unwrap();
    assert!(
        message.contains("messages[0].content[0].image_url.url"),
        "{message}"
    );

    let r = h
        .openai(CHAT)
        .json(&json!({"model": "gemini-2.5-flash", "logprobs": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("logprobs"));

    let r = h
        .anthropic(MESSAGES)
        .json(&json!({"model": "gemini-2.5-flash", "max_tokens": 10, "messages": [{"role": "user",
            "content": [{"type": "image", "source": {"type": "url", "url": "https://example.com/cat.png"}}]}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "invalid_request_error");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("messages[0].content[0].source"));
    assert!(h.mock.state.requests().is_empty(), "nothing was forwarded");
}

#[tokio::test]
async fn gemini_errors_reach_clients_in_their_own_shape() {
    let h = Harness::start().await;
    let r = h
        .openai(CHAT)
        .header("x-mock-error", "503")
        .json(
            &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "server_error");
    assert_eq!(body["error"]["code"], "overloaded");
    assert_eq!(body["error"]["message"], "mock error 503 (x-mock-error)");

    let r = h
        .anthropic(MESSAGES)
        .header("x-mock-error", "429")
        .json(&json!({"model": "gemini-2.5-flash", "max_tokens": 10,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "rate_limit_error");

    // A bad key is Google's 400, passed on as the client's invalid request.
    let r = h
        .openai(CHAT)
        .header("x-mock-error", "400")
        .json(
            &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

/// A Gemini that answers every call with Google's 503.
async fn unavailable_gemini() -> String {
    let app = axum::Router::new().fallback(|| async {
        let mut response = axum::response::Response::new(axum::body::Body::from(
            r#"{"error":{"code":503,"message":"The model is overloaded. Please try again later.","status":"UNAVAILABLE"}}"#,
        ));
        *response.status_mut() = http::StatusCode::SERVICE_UNAVAILABLE;
        response.headers_mut().insert(
            http::header::CONTENT_TYPE,
            http::HeaderValue::from_static("application/json"),
        );
        response
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    url
}

#[tokio::test]
async fn an_unavailable_gemini_falls_back_to_another_model() {
    let down = unavailable_gemini().await;
    let h = Harness::start_with(|c| {
        c.providers.gemini.base_url = down.clone();
        c.providers.deployments = vec![DeploymentConfig {
            name: "gemini-eu".into(),
            provider: "gemini".into(),
            base_url: down.clone(),
            api_key_env: "GEMINI_API_KEY".into(),
            weight: 1,
            models: None,
            api_version: None,
            azure_deployment: None,
        }];
        c.routing.retry_backoff_ms = 1;
        c.routing.max_backoff_ms = 20;
        c.routing.aliases.insert(
            "steady".into(),
            AliasTarget::Many(vec![
                "gemini/gemini-2.5-flash".into(),
                "anthropic/claude-haiku-4-5".into(),
            ]),
        );
    })
    .await;
    let r = h
        .openai(CHAT)
        .header("x-mock-input-tokens", "30")
        .json(&json!({"model": "steady", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["meshgate-served-model"],
        "anthropic/claude-haiku-4-5; deployment=anthropic"
    );
    let text = r.text().await.unwrap();
    assert!(text.ends_with("data: [DONE]\n\n"), "{text}");
    let events = h.wait_events(3).await;
    let failed: Vec<&Value> = events
        .iter()
        .filter(|e| e["provider"] == "gemini")
        .collect();
    assert_eq!(failed.len(), 2, "both Gemini deployments were tried");
    assert!(failed.iter().all(|e| e["status"] == 503));
    let served = events
        .iter()
        .find(|e| e["provider"] == "anthropic")
        .unwrap();
    assert_eq!(served["outcome"], "ok");
    assert_eq!(usage_u64(served, "input_uncached"), Some(30));
}

#[tokio::test]
async fn a_cut_gemini_stream_ends_with_the_clients_error_event() {
    let h = Harness::start().await;
    let r = h
        .openai(CHAT)
        .header("x-mock-cut-after", "2")
        .header("x-mock-input-tokens", "11")
        .json(&json!({"model": "gemini-2.5-flash", "stream": true,
            "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(!text.contains("[DONE]"), "{text}");
    let data = sse_data(&text);
    let content: String = data
        .iter()
        .filter_map(|d| serde_json::from_str::<Value>(d).ok())
        .filter_map(|c| {
            c["choices"][0]["delta"]["content"]
                .as_str()
                .map(str::to_string)
        })
        .collect();
    assert_eq!(content, "tok0 tok1 ");
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{last}");
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "incomplete");
    // What Gemini reported before the cut is still metered.
    assert_eq!(usage_u64(&event, "input_uncached"), Some(11));
}

#[tokio::test]
async fn a_projects_own_gemini_key_is_sent_instead_of_the_gateways() {
    let h = Harness::start().await;
    let admin = |method: reqwest::Method, path: &str, body: Value| {
        h.http
            .request(method, h.url(path))
            .bearer_auth(crate::harness::ADMIN)
            .json(&body)
            .send()
    };
    let r = admin(
        reqwest::Method::POST,
        "/admin/v1/projects",
        json!({"id": "own", "name": "Own"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 201);
    let r = admin(
        reqwest::Method::POST,
        "/admin/v1/keys",
        json!({"name": "o", "project_id": "own"}),
    )
    .await
    .unwrap();
    let key: Value = r.json().await.unwrap();
    let key = key["secret"].as_str().unwrap().to_string();
    let r = admin(
        reqwest::Method::PUT,
        "/admin/v1/projects/own/providers/gemini",
        json!({"api_key": "project-gemini-key"}),
    )
    .await
    .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&key)
        .json(
            &json!({"model": "gemini-2.5-flash", "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    // The mock knows only the gateway's key: Google's 400 for a bad key, translated.
    assert_eq!(r.status(), 400);
    let (path, _, _, req) = sent(&h);
    assert_eq!(path, "/v1beta/models/gemini-2.5-flash:generateContent");
    assert_eq!(req.header("x-goog-api-key"), Some("project-gemini-key"));
}
