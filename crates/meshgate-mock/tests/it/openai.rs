//! OpenAI surface: chat, responses, compact, input_tokens, embeddings, models.

use base64::Engine as _;
use meshgate_mock::{embedding_value, MockServer};
use serde_json::{json, Value};

use crate::common::{openai, parse_sse, read_all};

#[tokio::test]
async fn chat_non_stream_shape_and_default_usage() {
    let m = MockServer::start().await.unwrap();
    let body = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let len = serde_json::to_vec(&body).unwrap().len() as u64;
    let r = openai(&m, "/v1/chat/completions")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["x-request-id"], "req_mock_1");
    assert!(r.headers().contains_key("x-ratelimit-remaining-requests"));
    assert!(r.headers().contains_key("x-ratelimit-remaining-tokens"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["object"], "chat.completion");
    assert_eq!(v["model"], "gpt-4o-mini");
    assert!(v["id"].as_str().unwrap().starts_with("chatcmpl-"));
    assert!(v["created"].is_u64());
    assert_eq!(v["system_fingerprint"], "fp_mock");
    let choice = &v["choices"][0];
    assert_eq!(choice["message"]["role"], "assistant");
    assert_eq!(choice["message"]["content"], "tok0 tok1 tok2 tok3 ");
    assert_eq!(choice["finish_reason"], "stop");
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens"], len.div_ceil(4));
    assert_eq!(u["completion_tokens"], 8);
    assert_eq!(u["total_tokens"], len.div_ceil(4) + 8);
    assert_eq!(
        u["prompt_tokens_details"],
        json!({"cached_tokens": 0, "audio_tokens": 0})
    );
    assert_eq!(
        u["completion_tokens_details"],
        json!({"reasoning_tokens": 0, "audio_tokens": 0, "accepted_prediction_tokens": 0,
            "rejected_prediction_tokens": 0})
    );
    let rec = m.state.last_request().unwrap();
    assert_eq!(rec.path, "/v1/chat/completions");
    assert_eq!(rec.header("Authorization"), Some("Bearer sk-mock-openai"));
    assert_eq!(rec.json().unwrap(), body);
}

#[tokio::test]
async fn chat_usage_headers_are_inclusive() {
    let m = MockServer::start().await.unwrap();
    let v: Value = openai(&m, "/v1/chat/completions")
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-output-tokens", "300")
        .header("x-mock-cached-tokens", "600")
        .header("x-mock-cache-write-tokens", "100")
        .header("x-mock-reasoning-tokens", "120")
        .header("x-mock-service-tier", "flex")
        .json(&json!({"model": "gpt-5", "messages": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let u = &v["usage"];
    assert_eq!(u["prompt_tokens"], 1000);
    assert_eq!(u["completion_tokens"], 300);
    assert_eq!(u["total_tokens"], 1300);
    assert_eq!(u["prompt_tokens_details"]["cached_tokens"], 600);
    assert_eq!(u["prompt_tokens_details"]["cache_write_tokens"], 100);
    assert_eq!(u["completion_tokens_details"]["reasoning_tokens"], 120);
    assert_eq!(v["service_tier"], "flex");
}

async fn chat_stream(m: &MockServer, body: Value, extra: &[(&str, &str)]) -> Vec<Value> {
    let mut b = openai(m, "/v1/chat/completions").json(&body);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let r = b.send().await.unwrap();
    assert_eq!(
        r.headers()["content-type"],
        "text/event-stream; charset=utf-8"
    );
    assert_eq!(r.headers()["cache-control"], "no-cache");
    let (text, clean) = read_all(r).await;
    assert!(clean);
    let events = parse_sse(&text);
    assert!(events.iter().all(|e| e.name.is_none()));
    assert_eq!(events.last().unwrap().data, "[DONE]");
    events[..events.len() - 1]
        .iter()
        .map(|e| e.json())
        .collect()
}

#[tokio::test]
async fn chat_stream_without_include_usage_has_no_usage_key() {
    let m = MockServer::start().await.unwrap();
    let chunks = chat_stream(
        &m,
        json!({"model": "gpt-4o", "messages": [], "stream": true}),
        &[("x-mock-chunks", "3")],
    )
    .await;
    assert_eq!(chunks.len(), 1 + 3 + 1);
    for c in &chunks {
        assert_eq!(c["object"], "chat.completion.chunk");
        assert_eq!(c["model"], "gpt-4o");
        assert!(c.get("usage").is_none(), "{c}");
        for k in ["id", "created", "system_fingerprint", "choices"] {
            assert!(c.get(k).is_some(), "{k} missing");
        }
    }
    assert_eq!(chunks[0]["choices"][0]["delta"]["role"], "assistant");
    let text: String = chunks[1..4]
        .iter()
        .map(|c| c["choices"][0]["delta"]["content"].as_str().unwrap())
        .collect();
    assert_eq!(text, "tok0 tok1 tok2 ");
    assert_eq!(chunks[4]["choices"][0]["finish_reason"], "stop");
}

#[tokio::test]
async fn chat_stream_with_include_usage() {
    let m = MockServer::start().await.unwrap();
    let chunks = chat_stream(
        &m,
        json!({"model": "gpt-4o", "messages": [], "stream": true,
            "stream_options": {"include_usage": true}}),
        &[
            ("x-mock-input-tokens", "50"),
            ("x-mock-cached-tokens", "20"),
        ],
    )
    .await;
    assert_eq!(chunks.len(), 1 + 4 + 1 + 1);
    for c in &chunks[..6] {
        assert!(c["usage"].is_null() && c.get("usage").is_some(), "{c}");
    }
    assert_eq!(chunks[5]["choices"][0]["finish_reason"], "stop");
    let last = &chunks[6];
    assert_eq!(last["choices"], json!([]));
    assert_eq!(last["usage"]["prompt_tokens"], 50);
    assert_eq!(last["usage"]["completion_tokens"], 8);
    assert_eq!(last["usage"]["prompt_tokens_details"]["cached_tokens"], 20);
}

#[tokio::test]
async fn chat_stream_usage_with_choices() {
    let m = MockServer::start().await.unwrap();
    let chunks = chat_stream(
        &m,
        json!({"model": "gpt-4o", "messages": [], "stream": true,
            "stream_options": {"include_usage": true}}),
        &[("x-mock-usage-with-choices", "1")],
    )
    .await;
    assert_eq!(chunks.len(), 1 + 4 + 1);
    let last = &chunks[5];
    assert_eq!(last["choices"][0]["finish_reason"], "stop");
    assert_eq!(last["usage"]["completion_tokens"], 8);
}

#[tokio::test]
async fn chat_tool_call_when_asked() {
    let m = MockServer::start().await.unwrap();
    let tools =
        json!([{"type": "function", "function": {"name": "get_weather", "parameters": {}}}]);
    let v: Value = openai(&m, "/v1/chat/completions")
        .header("x-mock-tool-call", "1")
        .json(&json!({"model": "gpt-4o", "messages": [], "tools": tools}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["choices"][0]["finish_reason"], "tool_calls");
    let call = &v["choices"][0]["message"]["tool_calls"][0];
    assert_eq!(call["function"]["name"], "get_weather");
    let args: Value =
        serde_json::from_str(call["function"]["arguments"].as_str().unwrap()).unwrap();
    assert_eq!(args, json!({"query": "mock"}));

    let chunks = chat_stream(
        &m,
        json!({"model": "gpt-4o", "messages": [], "tools": tools, "stream": true}),
        &[("x-mock-tool-call", "1")],
    )
    .await;
    let first = chunks
        .iter()
        .find(|c| c["choices"][0]["delta"]["tool_calls"].is_array())
        .unwrap();
    assert_eq!(
        first["choices"][0]["delta"]["tool_calls"][0]["function"]["name"],
        "get_weather"
    );
    assert_eq!(
        chunks.last().unwrap()["choices"][0]["finish_reason"],
        "tool_calls"
    );
}

#[tokio::test]
async fn chat_validation_errors() {
    let m = MockServer::start().await.unwrap();
    let r = openai(&m, "/v1/chat/completions")
        .json(
            &json!({"model": "gpt-4o", "messages": [], "stream_options": {"include_usage": true}}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "stream_options");
    let r = openai(&m, "/v1/chat/completions")
        .json(&json!({"messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn responses_non_stream() {
    let m = MockServer::start().await.unwrap();
    let v: Value = openai(&m, "/v1/responses")
        .header("x-mock-input-tokens", "1200")
        .header("x-mock-cached-tokens", "1024")
        .header("x-mock-output-tokens", "300")
        .header("x-mock-reasoning-tokens", "192")
        .json(&json!({"model": "gpt-5", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "response");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["model"], "gpt-5");
    assert_eq!(v["output"][0]["type"], "message");
    assert_eq!(v["output"][0]["content"][0]["type"], "output_text");
    assert_eq!(v["output"][0]["content"][0]["text"], "tok0 tok1 tok2 tok3 ");
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 1200, "input_tokens_details": {"cached_tokens": 1024},
            "output_tokens": 300, "output_tokens_details": {"reasoning_tokens": 192},
            "total_tokens": 1500})
    );
}

async fn responses_events(m: &MockServer, extra: &[(&str, &str)]) -> Vec<(String, Value)> {
    let mut b =
        openai(m, "/v1/responses").json(&json!({"model": "gpt-5", "input": "hi", "stream": true}));
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let (text, clean) = read_all(b.send().await.unwrap()).await;
    assert!(clean);
    parse_sse(&text)
        .into_iter()
        .map(|e| {
            let v = e.json();
            let name = e.name.unwrap();
            assert_eq!(v["type"], name.as_str());
            (name, v)
        })
        .collect()
}

#[tokio::test]
async fn responses_stream_sequence() {
    let m = MockServer::start().await.unwrap();
    let events =
        responses_events(&m, &[("x-mock-chunks", "2"), ("x-mock-output-tokens", "9")]).await;
    let names: Vec<&str> = events.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "response.created",
            "response.in_progress",
            "response.output_item.added",
            "response.content_part.added",
            "response.output_text.delta",
            "response.output_text.delta",
            "response.output_text.done",
            "response.content_part.done",
            "response.output_item.done",
            "response.completed",
        ]
    );
    for (i, (_, v)) in events.iter().enumerate() {
        assert_eq!(v["sequence_number"], i as u64);
    }
    assert!(events[0].1["response"]["usage"].is_null());
    let done = &events[9].1["response"];
    assert_eq!(done["status"], "completed");
    assert_eq!(done["usage"]["output_tokens"], 9);
    assert_eq!(events[6].1["text"], "tok0 tok1 ");
}

#[tokio::test]
async fn responses_incomplete_and_failed_carry_usage() {
    let m = MockServer::start().await.unwrap();
    let events = responses_events(&m, &[("x-mock-response-status", "incomplete")]).await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.incomplete");
    assert_eq!(last["response"]["status"], "incomplete");
    assert_eq!(
        last["response"]["incomplete_details"]["reason"],
        "max_output_tokens"
    );
    assert_eq!(last["response"]["usage"]["output_tokens"], 8);

    let events = responses_events(&m, &[("x-mock-response-status", "failed")]).await;
    let (name, last) = events.last().unwrap();
    assert_eq!(name, "response.failed");
    assert_eq!(last["response"]["status"], "failed");
    assert!(last["response"]["error"]["message"].is_string());
    assert!(last["response"]["usage"]["input_tokens"].is_u64());

    let v: Value = openai(&m, "/v1/responses")
        .header("x-mock-response-status", "incomplete")
        .json(&json!({"model": "gpt-5", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["status"], "incomplete");
    assert_eq!(v["incomplete_details"]["reason"], "max_output_tokens");
    assert_eq!(v["usage"]["output_tokens"], 8);
}

#[tokio::test]
async fn responses_compact_and_input_tokens() {
    let m = MockServer::start().await.unwrap();
    let input = json!([{"type": "message", "role": "user", "content": "a"},
        {"type": "message", "role": "assistant", "content": "b"}]);
    let v: Value = openai(&m, "/v1/responses/compact")
        .header("x-mock-input-tokens", "77")
        .json(&json!({"model": "gpt-5", "input": input}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "response.compaction");
    let out = v["output"].as_array().unwrap();
    assert_eq!(out.len(), 2);
    assert_eq!(out[0]["role"], "user");
    assert_eq!(out[1]["type"], "compaction");
    assert_eq!(v["usage"]["input_tokens"], 77);

    let v: Value = openai(&m, "/v1/responses/input_tokens")
        .header("x-mock-input-tokens", "1234")
        .json(&json!({"model": "gpt-5", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        v,
        json!({"object": "response.input_tokens", "input_tokens": 1234})
    );
}

#[tokio::test]
async fn embeddings_float_and_base64() {
    let m = MockServer::start().await.unwrap();
    let v: Value = openai(&m, "/v1/embeddings")
        .header("x-mock-input-tokens", "8")
        .json(&json!({"model": "text-embedding-3-small", "input": ["a", "b"], "dimensions": 4}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert_eq!(v["usage"], json!({"prompt_tokens": 8, "total_tokens": 8}));
    let data = v["data"].as_array().unwrap();
    assert_eq!(data.len(), 2);
    assert_eq!(data[1]["index"], 1);
    let floats: Vec<f64> = data[1]["embedding"]
        .as_array()
        .unwrap()
        .iter()
        .map(|x| x.as_f64().unwrap())
        .collect();
    assert_eq!(floats.len(), 4);

    let v: Value = openai(&m, "/v1/embeddings")
        .json(
            &json!({"model": "text-embedding-3-small", "input": "a", "encoding_format": "base64"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let b64 = v["data"][0]["embedding"].as_str().unwrap();
    let raw = base64::engine::general_purpose::STANDARD
        .decode(b64)
        .unwrap();
    assert_eq!(raw.len(), 1536 * 4);
    let first = f32::from_le_bytes(raw[4..8].try_into().unwrap());
    assert_eq!(first, embedding_value(0, 1));
}

#[tokio::test]
async fn models_list_and_get() {
    let m = MockServer::start().await.unwrap();
    let c = crate::common::client();
    let v: Value = c
        .get(format!("{}/v1/models", m.url()))
        .bearer_auth(crate::common::OPENAI_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["object"], "list");
    assert!(v["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|m| m["id"] == "gpt-4o"));
    let v: Value = c
        .get(format!("{}/v1/models/gpt-4o-mini", m.url()))
        .bearer_auth(crate::common::OPENAI_KEY)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["id"], "gpt-4o-mini");
    assert_eq!(v["object"], "model");
    assert_eq!(v["owned_by"], "system");
}
