//! Auth, native errors, malformed input, cut streams, mid-stream errors, delays.

use std::time::{Duration, Instant};

use meshgate_mock::{MockOptions, MockServer};
use serde_json::{json, Value};

use crate::common::{anthropic, client, openai, parse_sse, read_all};

fn chat(stream: bool) -> Value {
    json!({"model": "gpt-4o", "messages": [], "stream": stream})
}

fn msg(stream: bool) -> Value {
    json!({"model": "claude-x", "max_tokens": 10, "messages": [], "stream": stream})
}

#[tokio::test]
async fn auth_refusals_in_native_shapes() {
    let m = MockServer::start().await.unwrap();
    let url = format!("{}/v1/chat/completions", m.url());
    for builder in [
        client().post(&url),
        client().post(&url).bearer_auth("sk-wrong"),
    ] {
        let r = builder.json(&chat(false)).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("x-request-id"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["type"], "invalid_request_error");
        assert_eq!(v["error"]["code"], "invalid_api_key");
        assert!(v["error"]["param"].is_null());
        assert!(v["error"]["message"].is_string());
    }
    let url = format!("{}/v1/messages", m.url());
    for key in [None, Some("sk-ant-wrong")] {
        let mut b = client()
            .post(&url)
            .header("anthropic-version", "2023-06-01");
        if let Some(k) = key {
            b = b.header("x-api-key", k);
        }
        let r = b.json(&msg(false)).send().await.unwrap();
        assert_eq!(r.status(), 401);
        assert!(r.headers().contains_key("request-id"));
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error");
        assert_eq!(v["error"]["type"], "authentication_error");
        assert!(v["request_id"].is_string());
    }
    // An OpenAI key on an Anthropic path is refused too.
    let r = client()
        .post(&url)
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", crate::common::OPENAI_KEY)
        .json(&msg(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    // Anthropic SDK 2.x sends the key as a Bearer token.
    let r = client()
        .post(&url)
        .header("anthropic-version", "2026-10-21")
        .bearer_auth(crate::common::ANTHROPIC_KEY)
        .json(&msg(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn any_key_when_unconfigured() {
    let m = MockServer::start_with(MockOptions {
        openai_key: None,
        anthropic_key: None,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    let r = client()
        .post(format!("{}/v1/chat/completions", m.url()))
        .bearer_auth("anything")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = client()
        .post(format!("{}/v1/chat/completions", m.url()))
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401);
    let r = client()
        .post(format!("{}/v1/messages", m.url()))
        .header("anthropic-version", "2023-06-01")
        .header("x-api-key", "whatever")
        .json(&msg(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn forced_errors_have_native_shapes_and_retry_after() {
    let m = MockServer::start().await.unwrap();
    for status in [429u16, 500, 503, 529, 400] {
        let r = openai(&m, "/v1/chat/completions")
            .header("x-mock-error", status.to_string())
            .json(&chat(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            retry.as_deref(),
            (status == 429 || status == 529).then_some("1")
        );
        let v: Value = r.json().await.unwrap();
        assert!(v["error"]["message"].is_string());
        assert!(v["error"]["type"].is_string());
        if status == 429 {
            assert_eq!(v["error"]["code"], "rate_limit_exceeded");
        }

        let r = anthropic(&m, "/v1/messages")
            .header("x-mock-error", status.to_string())
            .json(&msg(false))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status().as_u16(), status);
        let retry = r
            .headers()
            .get("retry-after")
            .map(|v| v.to_str().unwrap().to_owned());
        assert_eq!(
            retry.as_deref(),
            (status == 429 || status == 529).then_some("1")
        );
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["type"], "error");
        let expected = match status {
            429 => "rate_limit_error",
            529 => "overloaded_error",
            400 => "invalid_request_error",
            _ => "api_error",
        };
        assert_eq!(v["error"]["type"], expected);
    }
}

#[tokio::test]
async fn malformed_json_unknown_path_and_bad_control() {
    let m = MockServer::start().await.unwrap();
    let r = openai(&m, "/v1/chat/completions")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let r = anthropic(&m, "/v1/messages")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "invalid_request_error");

    let r = openai(&m, "/v1/nope")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert!(v["error"]["message"].is_string());

    let r = anthropic(&m, "/v1/nope")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");

    let r = openai(&m, "/v1/chat/completions")
        .header("x-mock-chunkz", "3")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}

#[tokio::test]
async fn cut_after_closes_without_terminal_event() {
    let m = MockServer::start().await.unwrap();
    let mut body = chat(true);
    body["stream_options"] = json!({"include_usage": true});
    let r = openai(&m, "/v1/chat/completions")
        .header("x-mock-cut-after", "2")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let (text, clean) = read_all(r).await;
    assert!(!clean, "the connection must be dropped");
    let ev = parse_sse(&text);
    assert_eq!(ev.len(), 3, "role chunk and two deltas: {text}");
    assert!(!text.contains("[DONE]") && !text.contains("finish_reason\":\"stop"));

    let r = openai(&m, "/v1/responses")
        .header("x-mock-cut-after", "1")
        .json(&json!({"model": "gpt-5", "input": "x", "stream": true}))
        .send()
        .await
        .unwrap();
    let (text, clean) = read_all(r).await;
    assert!(!clean);
    assert!(text.contains("response.output_text.delta"));
    assert!(!text.contains("response.completed"));

    let r = anthropic(&m, "/v1/messages")
        .header("x-mock-cut-after", "1")
        .header("x-mock-input-tokens", "42")
        .json(&msg(true))
        .send()
        .await
        .unwrap();
    let (text, clean) = read_all(r).await;
    assert!(!clean);
    let ev = parse_sse(&text);
    assert_eq!(ev[0].json()["message"]["usage"]["input_tokens"], 42);
    assert_eq!(
        ev.iter()
            .filter(|e| e.name.as_deref() == Some("content_block_delta"))
            .count(),
        1
    );
    assert!(!text.contains("message_delta") && !text.contains("message_stop"));

    // Non-stream: half a body, then the connection drops.
    let r = openai(&m, "/v1/chat/completions")
        .header("x-mock-cut-after", "0")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert!(r.json::<Value>().await.is_err());
    // The server keeps serving after cuts.
    let r = openai(&m, "/v1/chat/completions")
        .json(&chat(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn mid_stream_errors() {
    let m = MockServer::start().await.unwrap();
    let r = openai(&m, "/v1/chat/completions")
        .header("x-mock-stream-error", "1")
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    let (text, clean) = read_all(r).await;
    assert!(clean);
    let ev = parse_sse(&text);
    assert_eq!(ev.len(), 3);
    assert!(ev[2].json()["error"]["message"].is_string());
    assert!(!text.contains("[DONE]"));

    let r = openai(&m, "/v1/responses")
        .header("x-mock-stream-error", "1")
        .json(&json!({"model": "gpt-5", "input": "x", "stream": true}))
        .send()
        .await
        .unwrap();
    let (text, _) = read_all(r).await;
    let last = parse_sse(&text).pop().unwrap();
    assert_eq!(last.name.as_deref(), Some("error"));
    assert_eq!(last.json()["type"], "error");
    assert!(last.json()["sequence_number"].is_u64());

    let r = anthropic(&m, "/v1/messages")
        .header("x-mock-stream-error", "1")
        .json(&msg(true))
        .send()
        .await
        .unwrap();
    let (text, _) = read_all(r).await;
    let last = parse_sse(&text).pop().unwrap();
    assert_eq!(last.name.as_deref(), Some("error"));
    assert_eq!(last.json()["error"]["type"], "overloaded_error");
}

#[tokio::test]
async fn delays_are_honoured() {
    let m = MockServer::start().await.unwrap();
    let t = Instant::now();
    let r = openai(&m, "/v1/chat/completions")
        .header("x-mock-first-byte-delay-ms", "50")
        .header("x-mock-chunk-delay-ms", "20")
        .header("x-mock-chunks", "3")
        .json(&chat(true))
        .send()
        .await
        .unwrap();
    assert!(t.elapsed() >= Duration::from_millis(50));
    let (_, clean) = read_all(r).await;
    assert!(clean);
    assert!(t.elapsed() >= Duration::from_millis(110));
}
