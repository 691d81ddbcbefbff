//! Anthropic surface: messages, count_tokens, complete, models.

use meshgate_mock::MockServer;
use serde_json::{json, Value};

use crate::common::{anthropic, client, parse_sse, read_all, with_anthropic_headers};

fn msg(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
        "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn messages_non_stream_usage_is_disjoint() {
    let m = MockServer::start().await.unwrap();
    let r = anthropic(&m, "/v1/messages?beta=true")
        .header("x-mock-input-tokens", "412")
        .header("x-mock-cached-tokens", "10240")
        .header("x-mock-cache-write-tokens", "2048")
        .header("x-mock-cache-write-1h-tokens", "100")
        .header("x-mock-output-tokens", "87")
        .json(&msg(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers()["request-id"]
        .to_str()
        .unwrap()
        .starts_with("req_mock_"));
    assert!(r
        .headers()
        .contains_key("anthropic-ratelimit-requests-remaining"));
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "message");
    assert_eq!(v["role"], "assistant");
    assert_eq!(v["model"], "claude-sonnet-4-5");
    assert_eq!(v["stop_reason"], "end_turn");
    assert_eq!(
        v["content"][0],
        json!({"type": "text", "text": "tok0 tok1 tok2 tok3 "})
    );
    assert_eq!(
        v["usage"],
        json!({"input_tokens": 412, "cache_read_input_tokens": 10240,
            "cache_creation_input_tokens": 2148,
            "cache_creation": {"ephemeral_5m_input_tokens": 2048, "ephemeral_1h_input_tokens": 100},
            "output_tokens": 87, "service_tier": "standard"})
    );
    let rec = m.state.last_request().unwrap();
    assert_eq!(rec.query.as_deref(), Some("beta=true"));
}

async fn events(m: &MockServer, body: Value, extra: &[(&str, &str)]) -> Vec<(String, Value)> {
    let mut b = anthropic(m, "/v1/messages").json(&body);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    let r = b.send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let (text, clean) = read_all(r).await;
    assert!(clean);
    parse_sse(&text)
        .into_iter()
        .map(|e| {
            let v = e.json();
            let name = e.name.unwrap();
            assert_eq!(v["type"], name.as_str(), "event line equals type");
            (name, v)
        })
        .collect()
}

#[tokio::test]
async fn messages_stream_sequence_and_usage() {
    let m = MockServer::start().await.unwrap();
    let ev = events(
        &m,
        msg(true),
        &[
            ("x-mock-input-tokens", "30"),
            ("x-mock-cached-tokens", "5"),
            ("x-mock-output-tokens", "12"),
            ("x-mock-chunks", "2"),
        ],
    )
    .await;
    let names: Vec<&str> = ev.iter().map(|(n, _)| n.as_str()).collect();
    assert_eq!(
        names,
        [
            "message_start",
            "content_block_start",
            "ping",
            "content_block_delta",
            "content_block_delta",
            "content_block_stop",
            "message_delta",
            "message_stop",
        ]
    );
    let start = &ev[0].1["message"];
    assert_eq!(start["model"], "claude-sonnet-4-5");
    assert_eq!(start["usage"]["input_tokens"], 30);
    assert_eq!(start["usage"]["cache_read_input_tokens"], 5);
    assert_eq!(start["usage"]["output_tokens"], 1);
    assert!(start["stop_reason"].is_null());
    assert_eq!(
        ev[3].1["delta"],
        json!({"type": "text_delta", "text": "tok0 "})
    );
    assert_eq!(ev[6].1["usage"], json!({"output_tokens": 12}));
    assert_eq!(ev[6].1["delta"]["stop_reason"], "end_turn");
}

#[tokio::test]
async fn restate_input_in_message_delta_and_non_stream() {
    let m = MockServer::start().await.unwrap();
    let hdrs = [
        ("x-mock-input-tokens", "100"),
        ("x-mock-cached-tokens", "7"),
        ("x-mock-restate-input", "1"),
    ];
    let ev = events(&m, msg(true), &hdrs).await;
    let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["usage"]["input_tokens"], 105);
    assert_eq!(delta["usage"]["cache_read_input_tokens"], 7);
    assert_eq!(delta["usage"]["cache_creation_input_tokens"], 0);
    assert_eq!(delta["usage"]["server_tool_use"]["web_search_requests"], 1);
    assert_eq!(ev[0].1["message"]["usage"]["input_tokens"], 100);

    let mut b = anthropic(&m, "/v1/messages").json(&msg(false));
    for (k, v) in hdrs {
        b = b.header(k, v);
    }
    let v: Value = b.send().await.unwrap().json().await.unwrap();
    assert_eq!(v["usage"]["input_tokens"], 105);
    assert_eq!(v["usage"]["server_tool_use"]["web_search_requests"], 1);
}

#[tokio::test]
async fn tool_use_block_when_asked() {
    let m = MockServer::start().await.unwrap();
    let mut body = msg(false);
    body["tools"] = json!([{"name": "get_weather", "input_schema": {"type": "object"}}]);
    let v: Value = anthropic(&m, "/v1/messages")
        .header("x-mock-tool-call", "1")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "tool_use");
    assert_eq!(v["content"][1]["type"], "tool_use");
    assert_eq!(v["content"][1]["name"], "get_weather");

    // Without the header, tools alone give plain text.
    let v: Value = anthropic(&m, "/v1/messages")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["stop_reason"], "end_turn");

    body["stream"] = json!(true);
    let ev = events(&m, body, &[("x-mock-tool-call", "1")]).await;
    let start = ev
        .iter()
        .find(|(n, v)| n == "content_block_start" && v["index"] == 1)
        .unwrap();
    assert_eq!(start.1["content_block"]["type"], "tool_use");
    let json: String = ev
        .iter()
        .filter(|(_, v)| v["delta"]["type"] == "input_json_delta")
        .map(|(_, v)| v["delta"]["partial_json"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(
        serde_json::from_str::<Value>(&json).unwrap(),
        json!({"query": "mock"})
    );
    let delta = &ev.iter().find(|(n, _)| n == "message_delta").unwrap().1;
    assert_eq!(delta["delta"]["stop_reason"], "tool_use");
}

#[tokio::test]
async fn messages_validation() {
    let m = MockServer::start().await.unwrap();
    let r = anthropic(&m, "/v1/messages")
        .json(&json!({"model": "claude-x", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["type"], "error");
    assert_eq!(v["error"]["type"], "invalid_request_error");
    assert!(v["request_id"].as_str().unwrap().starts_with("req_mock_"));

    let r = client()
        .post(format!("{}/v1/messages", m.url()))
        .header("x-api-key", crate::common::ANTHROPIC_KEY)
        .json(&msg(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "anthropic-version is required");
}

#[tokio::test]
async fn count_tokens() {
    let m = MockServer::start().await.unwrap();
    let v: Value = anthropic(&m, "/v1/messages/count_tokens")
        .header("x-mock-input-tokens", "2095")
        .json(&json!({"model": "claude-x", "messages": []}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"input_tokens": 2095}));
}

#[tokio::test]
async fn legacy_complete() {
    let m = MockServer::start().await.unwrap();
    let body = json!({"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:",
        "max_tokens_to_sample": 10});
    let v: Value = anthropic(&m, "/v1/complete")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["type"], "completion");
    assert_eq!(v["stop_reason"], "stop_sequence");
    assert!(v.get("usage").is_none());

    let mut body = body;
    body["stream"] = json!(true);
    let (text, clean) = read_all(
        anthropic(&m, "/v1/complete")
            .json(&body)
            .send()
            .await
            .unwrap(),
    )
    .await;
    assert!(clean);
    let ev = parse_sse(&text);
    let completions: Vec<Value> = ev
        .iter()
        .filter(|e| e.name.as_deref() == Some("completion"))
        .map(|e| e.json())
        .collect();
    assert_eq!(completions.len(), 5);
    assert_eq!(completions[4]["stop_reason"], "stop_sequence");
    assert!(ev.iter().any(|e| e.name.as_deref() == Some("ping")));
}

#[tokio::test]
async fn models_paginated_on_shared_path() {
    let m = MockServer::start().await.unwrap();
    let get = |path: &str| with_anthropic_headers(client().get(format!("{}{path}", m.url())));
    let v: Value = get("/v1/models?limit=2")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["has_more"], true);
    assert_eq!(v["first_id"], v["data"][0]["id"]);
    assert_eq!(v["data"][0]["type"], "model");
    let last = v["last_id"].as_str().unwrap().to_owned();
    let v2: Value = get(&format!("/v1/models?limit=100&after_id={last}"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v2["has_more"], false);
    assert_ne!(v2["first_id"], v["first_id"]);
    // x-api-key alone marks the shared path as Anthropic.
    let r = client()
        .get(format!("{}/v1/models", m.url()))
        .header("x-api-key", crate::common::ANTHROPIC_KEY)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400, "Anthropic without anthropic-version");
    let v: Value = get("/v1/models/claude-sonnet-4-5")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["id"], "claude-sonnet-4-5-20250929");
    assert!(v["display_name"].is_string());
}
