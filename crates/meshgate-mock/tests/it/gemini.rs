//! Gemini's generateContent and streamGenerateContent: key checks (header or query),
//! Google's error shape, strict field checks, usageMetadata, SSE events, function calls.

use meshgate_mock::MockServer;
use serde_json::{json, Value};

use crate::common::{client, parse_sse};

fn url(m: &MockServer, method: &str) -> String {
    format!("{}/v1beta/models/gemini-2.5-flash:{method}", m.url())
}

fn body() -> Value {
    json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}],
        "tools": [{"functionDeclarations": [{"name": "lookup"}]}]})
}

#[tokio::test]
async fn keys_errors_and_field_checks_in_googles_shape() {
    let m = MockServer::start().await.unwrap();
    let r = client()
        .post(url(&m, "generateContent"))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 403);
    let r = client()
        .post(url(&m, "generateContent"))
        .header("x-goog-api-key", "wrong")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["status"], "INVALID_ARGUMENT");
    assert_eq!(v["error"]["code"], 400);
    // The key may come as `?key=`.
    let r = client()
        .post(format!(
            "{}?key=mock-gemini-key",
            url(&m, "generateContent")
        ))
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    for (status, name) in [
        (429, "RESOURCE_EXHAUSTED"),
        (500, "INTERNAL"),
        (503, "UNAVAILABLE"),
    ] {
        let r = client()
            .post(url(&m, "generateContent"))
            .header("x-goog-api-key", "mock-gemini-key")
            .header("x-mock-error", status.to_string())
            .json(&body())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), status);
        let v: Value = r.json().await.unwrap();
        assert_eq!(v["error"]["status"], name);
        assert_eq!(v["error"]["code"], status);
    }
    for bad in [
        json!({"contents": [{"role": "user", "parts": [{"text": "hi"}]}], "messages": []}),
        json!({"contents": [{"role": "assistant", "parts": [{"text": "hi"}]}]}),
        json!({"contents": [{"parts": [{"text": "hi"}]}], "generationConfig": {"max_tokens": 1}}),
        json!({"contents": []}),
    ] {
        let r = client()
            .post(url(&m, "generateContent"))
            .header("x-goog-api-key", "mock-gemini-key")
            .json(&bad)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 400, "{bad}");
    }
}

#[tokio::test]
async fn usage_metadata_and_sse_events() {
    let m = MockServer::start().await.unwrap();
    let r = client()
        .post(url(&m, "generateContent"))
        .header("x-goog-api-key", "mock-gemini-key")
        .header("x-mock-input-tokens", "100")
        .header("x-mock-cached-tokens", "40")
        .header("x-mock-output-tokens", "30")
        .header("x-mock-reasoning-tokens", "10")
        .header("x-mock-tool-call", "1")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let v: Value = r.json().await.unwrap();
    let u = &v["usageMetadata"];
    assert_eq!(u["promptTokenCount"], 100);
    assert_eq!(u["cachedContentTokenCount"], 40);
    assert_eq!(u["candidatesTokenCount"], 20);
    assert_eq!(u["thoughtsTokenCount"], 10);
    assert_eq!(u["totalTokenCount"], 130);
    let parts = &v["candidates"][0]["content"]["parts"];
    assert_eq!(parts[0]["text"], "tok0 tok1 tok2 tok3 ");
    assert_eq!(parts[1]["functionCall"]["name"], "lookup");
    assert_eq!(v["candidates"][0]["finishReason"], "STOP");

    let r = client()
        .post(format!("{}?alt=sse", url(&m, "streamGenerateContent")))
        .header("x-goog-api-key", "mock-gemini-key")
        .header("x-mock-chunks", "2")
        .json(&body())
        .send()
        .await
        .unwrap();
    assert_eq!(r.headers()["content-type"], "text/event-stream");
    let text = r.text().await.unwrap();
    assert!(text.contains("\r\n\r\n"));
    // Google frames events with CRLF.
    let events: Vec<Value> = parse_sse(&text.replace("\r\n", "\n"))
        .iter()
        .map(|e| e.json())
        .collect();
    assert_eq!(events.len(), 3);
    assert_eq!(
        events[0]["candidates"][0]["content"]["parts"][0]["text"],
        "tok0 "
    );
    assert!(events[0]["candidates"][0]["finishReason"].is_null());
    assert_eq!(events[2]["candidates"][0]["finishReason"], "STOP");
    assert!(events[2]["usageMetadata"]["candidatesTokenCount"].is_u64());
}
