//! Per-call cost reporting: every proxied answer names its usage event
//! (`meshgate-event-id`), and `GET /v1/usage/events/{id}` returns that event to its own
//! project, waiting for the ledger's write when asked to.

use crate::harness::{Harness, ADMIN};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

fn event_id(response: &reqwest::Response) -> String {
    response.headers()[meshgate_gateway::EVENT_ID_HEADER]
        .to_str()
        .unwrap()
        .to_string()
}

async fn lookup(h: &Harness, key: &str, id: &str, wait_ms: u64) -> (u16, Value) {
    let response = h
        .http
        .get(h.url(&format!("/v1/usage/events/{id}?wait_ms={wait_ms}")))
        .bearer_auth(key)
        .send()
        .await
        .unwrap();
    let status = response.status().as_u16();
    (status, response.json().await.unwrap())
}

#[tokio::test]
async fn a_plain_answer_names_its_event_with_exact_tokens_and_cost() {
    let h = Harness::start().await;
    let response = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-output-tokens", "200")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = event_id(&response);
    let request_id = response.headers()["x-meshgate-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    response.bytes().await.unwrap();

    let (status, event) = lookup(&h, &h.key, &id, 5_000).await;
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["request_id"], request_id.as_str());
    assert_eq!(event["model"], "gpt-4o");
    assert_eq!(event["outcome"], "ok");
    assert_eq!(event["status"], 200);
    assert_eq!(event["usage"]["input_uncached"], 1000);
    assert_eq!(event["usage"]["output"], 200);
    // 1000 x 2.5e-6 + 200 x 1e-5.
    assert_eq!(event["cost_usd"], "0.0045");
    assert!(event["duration_ms"].as_i64().is_some());
    // The same event the admin API shows.
    assert_eq!(h.one_event().await, event);

    // Another project's key sees nothing of it; nor does a made-up id.
    let project = h
        .http
        .post(h.url("/admin/v1/projects"))
        .bearer_auth(ADMIN)
        .json(&json!({"id": "acme", "name": "Acme"}))
        .send()
        .await
        .unwrap();
    assert_eq!(project.status(), 201);
    let other: Value = h
        .http
        .post(h.url("/admin/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "acme-key", "project_id": "acme"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let (status, body) = lookup(&h, other["secret"].as_str().unwrap(), &id, 0).await;
    assert_eq!(status, 404, "{body}");
    assert_eq!(body["error"]["type"], "invalid_request_error", "{body}");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no usage event"));
    let (status, _) = lookup(&h, &h.key, "not-an-id", 0).await;
    assert_eq!(status, 404);
    // Without a credential: refused before any lookup.
    let anonymous = h
        .http
        .get(h.url(&format!("/v1/usage/events/{id}")))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
}

#[tokio::test]
async fn a_stream_names_its_event_and_the_lookup_waits_for_the_write() {
    // A long batch window: the event is written well after the stream ends.
    let h = Harness::start_with(|c| c.ledger.flush_interval_ms = 1_500).await;
    let response = h
        .anthropic("/anthropic/v1/messages")
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-output-tokens", "200")
        .header("x-mock-chunks", "4")
        .header("x-mock-chunk-delay-ms", "150")
        .json(&json!({
            "model": "claude-haiku-4-5", "max_tokens": 300, "stream": true,
            "messages": [{"role": "user", "content": "hi"}]
        }))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let id = event_id(&response);

    // While the stream is open the event does not exist yet.
    let (status, _) = lookup(&h, &h.key, &id, 0).await;
    assert_eq!(status, 404);
    // A waiting lookup started now returns once the call ended and its event is written.
    let waiting = {
        let (http, url, key) = (
            h.http.clone(),
            h.url(&format!("/v1/usage/events/{id}?wait_ms=20000")),
            h.key.clone(),
        );
        tokio::spawn(async move {
            let response = http.get(url).bearer_auth(key).send().await.unwrap();
            (
                response.status().as_u16(),
                response.json::<Value>().await.unwrap(),
            )
        })
    };
    let body = response.text().await.unwrap();
    assert!(body.contains("message_stop"), "{body}");
    let (status, event) = waiting.await.unwrap();
    assert_eq!(status, 200, "{event}");
    assert_eq!(event["id"], id.as_str());
    assert_eq!(event["streamed"], true);
    assert_eq!(event["model"], "claude-haiku-4-5");
    assert_eq!(event["usage"]["input_uncached"], 1000);
    assert_eq!(event["usage"]["output"], 200);
    // 1000 x 1e-6 + 200 x 5e-6.
    assert_eq!(event["cost_usd"], "0.002");
}

#[tokio::test]
async fn a_lookup_that_finds_nothing_gives_up_at_its_deadline() {
    let h = Harness::start().await;
    let missing = uuid::Uuid::now_v7().to_string();
    let started = Instant::now();
    let (status, body) = lookup(&h, &h.key, &missing, 300).await;
    assert_eq!(status, 404, "{body}");
    assert!(started.elapsed() >= Duration::from_millis(300));
    assert!(started.elapsed() < Duration::from_secs(10));
}
