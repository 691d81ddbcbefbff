//! The Anthropic surface end to end: both auth headers, version and beta headers kept,
//! cumulative stream usage, batches through meshgate.

use crate::harness::{sse_data, usage_u64, Harness};
use serde_json::{json, Value};

fn message(stream: bool) -> Value {
    json!({"model": "claude-sonnet-4-5", "max_tokens": 100, "stream": stream,
           "messages": [{"role": "user", "content": "hi"}]})
}

#[tokio::test]
async fn messages_with_x_api_key_or_bearer_are_metered_exactly() {
    let h = Harness::start().await;
    let r = h
        .anthropic("/anthropic/v1/messages?beta=true")
        .header("anthropic-beta", "context-1m-2025-08-07")
        .header("x-mock-input-tokens", "412")
        .header("x-mock-cache-write-tokens", "2048")
        .header("x-mock-cached-tokens", "10240")
        .header("x-mock-output-tokens", "87")
        .json(&message(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert!(r.headers().get("request-id").is_some());
    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-mock"));
    assert_eq!(seen.header("authorization"), None);
    assert_eq!(seen.header("anthropic-version"), Some("2023-06-01"));
    assert_eq!(seen.header("anthropic-beta"), Some("context-1m-2025-08-07"));
    assert_eq!(seen.query.as_deref(), Some("beta=true"));
    let event = h.one_event().await;
    assert_eq!(event["surface"], "anthropic");
    assert_eq!(usage_u64(&event, "input_uncached"), Some(412));
    assert_eq!(usage_u64(&event, "cache_write_5m"), Some(2048));
    assert_eq!(usage_u64(&event, "cache_read"), Some(10240));
    assert_eq!(usage_u64(&event, "output"), Some(87));
    assert_eq!(event["cost_usd"], "0.013293");

    // SDK 2.x sends the key as Bearer; the plain /v1 alias routes messages to Anthropic.
    let r = h
        .http
        .post(h.url("/v1/messages"))
        .bearer_auth(&h.key)
        .header("anthropic-version", "2026-10-21")
        .json(&message(false))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(seen.header("x-api-key"), Some("sk-ant-mock"));
    assert_eq!(seen.header("anthropic-version"), Some("2026-10-21"));
}

#[tokio::test]
async fn streamed_messages_take_the_last_cumulative_usage() {
    let h = Harness::start().await;
    let text = h
        .anthropic("/anthropic/v1/messages")
        .header("x-mock-input-tokens", "400")
        .header("x-mock-cached-tokens", "1000")
        .header("x-mock-output-tokens", "50")
        .header("x-mock-restate-input", "1")
        .header("x-mock-chunks", "6")
        .json(&message(true))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let events: Vec<Value> = sse_data(&text)
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    assert_eq!(events.first().unwrap()["type"], "message_start");
    assert_eq!(events.last().unwrap()["type"], "message_stop");
    let event = h.one_event().await;
    assert_eq!(event["streamed"], true);
    assert_eq!(event["outcome"], "ok");
    // The final message_delta restates input (+5) and adds a web search: take it, never sum.
    assert_eq!(usage_u64(&event, "input_uncached"), Some(405));
    assert_eq!(usage_u64(&event, "cache_read"), Some(1000));
    assert_eq!(usage_u64(&event, "output"), Some(50));
    assert_eq!(usage_u64(&event, "web_search_requests"), Some(1));
    // 405 x 3e-6 + 1000 x 3e-7 + 50 x 1.5e-5 + 1 search x 0.01
    assert_eq!(event["cost_usd"], "0.012265");
}

#[tokio::test]
async fn count_tokens_and_models_are_not_billed() {
    let h = Harness::start().await;
    let r = h
        .anthropic("/anthropic/v1/messages/count_tokens")
        .json(&json!({"model": "claude-sonnet-4-5", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["input_tokens"].is_u64());
    let r = h
        .http
        .get(h.url("/v1/models"))
        .header("x-api-key", &h.key)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(
        body["has_more"].is_boolean(),
        "anthropic's list shape: {body}"
    );
    for e in h.wait_events(2).await {
        assert!(e["cost_usd"].is_null());
    }
}

#[tokio::test]
async fn legacy_complete_is_forwarded() {
    let h = Harness::start().await;
    let r = h
        .anthropic("/v1/complete")
        .json(
            &json!({"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:",
                      "max_tokens_to_sample": 10}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "completion");
    let event = h.one_event().await;
    assert_eq!(event["endpoint"], "complete");
    assert_eq!(event["outcome"], "ok");
}

#[tokio::test]
async fn batches_point_results_at_meshgate_and_results_are_billed_at_batch_rates() {
    let h = Harness::start().await;
    let r = h
        .anthropic("/anthropic/v1/messages/batches")
        .header("x-mock-input-tokens", "412")
        .header("x-mock-cache-write-tokens", "2048")
        .header("x-mock-cached-tokens", "10240")
        .header("x-mock-output-tokens", "87")
        .json(&json!({"requests": [
            {"custom_id": "a", "params": {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []}},
            {"custom_id": "b", "params": {"model": "claude-sonnet-4-5", "max_tokens": 10, "messages": []}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let batch: Value = r.json().await.unwrap();
    let results_url = batch["results_url"].as_str().unwrap();
    let id = batch["id"].as_str().unwrap();
    assert_eq!(
        results_url,
        format!("{}/anthropic/v1/messages/batches/{id}/results", h.base)
    );
    // List and retrieve are rewritten too.
    let list: Value = h
        .http
        .get(h.url("/anthropic/v1/messages/batches"))
        .header("x-api-key", &h.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(list["data"][0]["results_url"]
        .as_str()
        .unwrap()
        .starts_with(&h.base));

    let results = h
        .http
        .get(results_url)
        .header("x-api-key", &h.key)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap();
    assert_eq!(results.status(), 200);
    let lines = results.text().await.unwrap();
    assert_eq!(lines.lines().count(), 2);
    let events = h.wait_events(3).await;
    let billed = events
        .iter()
        .find(|e| e["endpoint"] == "batch_results")
        .unwrap();
    assert_eq!(billed["model"], "claude-sonnet-4-5");
    assert_eq!(usage_u64(billed, "input_uncached"), Some(824));
    assert_eq!(billed["usage"]["service_tier"], "batch");
    // Two results at half the reference's 0.013293 each.
    assert_eq!(billed["cost_usd"], "0.013293");
    let create = events.iter().find(|e| e["endpoint"] == "batches").unwrap();
    assert!(create["cost_usd"].is_null());

    // Fetching the results again forwards them, but they are billed once.
    let again = h
        .http
        .get(results_url)
        .header("x-api-key", &h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(again.status(), 200);
    assert_eq!(again.text().await.unwrap().lines().count(), 2);
    let events = h.wait_events(4).await;
    assert_eq!(events[0]["endpoint"], "batch_results");
    assert!(events[0]["cost_usd"].is_null());
    assert!(events[0]["error"]
        .as_str()
        .unwrap()
        .contains("billed at an earlier fetch"));
    let billed: Vec<_> = events
        .iter()
        .filter(|e| e["cost_usd"].is_string())
        .collect();
    assert_eq!(billed.len(), 1);
}

/// A batch of one request for claude-haiku-4-5, as the provider created it.
async fn one_request_batch(h: &Harness) -> Value {
    h.anthropic("/anthropic/v1/messages/batches")
        .json(&json!({"requests": [
            {"custom_id": "a", "params": {"model": "claude-haiku-4-5", "max_tokens": 10, "messages": []}}
        ]}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

#[tokio::test]
async fn a_failed_results_fetch_leaves_the_batch_to_be_billed_later() {
    let h = Harness::start().await;
    let batch = one_request_batch(&h).await;
    let results_url = batch["results_url"].as_str().unwrap();
    let failed = h
        .http
        .get(results_url)
        .header("x-api-key", &h.key)
        .header("x-mock-error", "500")
        .send()
        .await
        .unwrap();
    assert_eq!(failed.status(), 500);
    let ok = h
        .http
        .get(results_url)
        .header("x-api-key", &h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(ok.status(), 200);
    ok.text().await.unwrap();
    let events = h.wait_events(3).await;
    assert_eq!(events[0]["endpoint"], "batch_results");
    assert!(events[0]["cost_usd"].is_string(), "{:#}", events[0]);
}

#[tokio::test]
async fn a_store_failure_on_a_results_fetch_names_no_database_detail() {
    use sqlx::Connection;
    let h = Harness::start().await;
    let batch = one_request_batch(&h).await;
    // The billing claim's table is gone: the claim fails with SQLite's own message.
    let db = h.dir.path().join("meshgate.db");
    let mut conn = sqlx::SqliteConnection::connect(&format!("sqlite://{}", db.display()))
        .await
        .unwrap();
    sqlx::query("DROP TABLE billed_batches")
        .execute(&mut conn)
        .await
        .unwrap();
    let r = h
        .http
        .get(batch["results_url"].as_str().unwrap())
        .header("x-api-key", &h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "api_error");
    assert_eq!(body["error"]["message"], "storage error");
    assert!(!body.to_string().contains("billed_batches"), "{body}");
    // Refused before it was forwarded: the batch's creation is the only event.
    let events = h.wait_events(1).await;
    assert_eq!(events.len(), 1, "{events:#?}");
    assert_eq!(events[0]["endpoint"], "batches");
}

#[tokio::test]
async fn batches_with_an_unpriced_model_are_refused() {
    let h = Harness::start().await;
    let r = h
        .anthropic("/anthropic/v1/messages/batches")
        .json(&json!({"requests": [
            {"custom_id": "a", "params": {"model": "claude-nonexistent-9", "max_tokens": 10, "messages": []}}
        ]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("claude-nonexistent-9"));
    assert_eq!(h.mock.state.stats().requests, 0);
}
