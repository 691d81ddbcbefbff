//! Anthropic Message Batches lifecycle.

use meshgate_mock::MockServer;
use serde_json::{json, Value};

use crate::common::{anthropic, client, with_anthropic_headers};

#[tokio::test]
async fn batch_lifecycle() {
    let m = MockServer::start().await.unwrap();
    let body = json!({"requests": [
        {"custom_id": "a-1", "params": {"model": "claude-x", "max_tokens": 10, "messages": []}},
        {"custom_id": "a-2", "params": {"model": "claude-x", "messages": []}},
    ]});
    let b: Value = anthropic(&m, "/v1/messages/batches")
        .header("x-mock-input-tokens", "10")
        .header("x-mock-output-tokens", "34")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(b["type"], "message_batch");
    assert_eq!(b["processing_status"], "ended");
    assert_eq!(
        b["request_counts"],
        json!({"processing": 0, "succeeded": 1, "errored": 1, "canceled": 0, "expired": 0})
    );
    assert!(b["created_at"].as_str().unwrap().ends_with('Z'));
    let id = b["id"].as_str().unwrap().to_owned();
    let results_url = b["results_url"].as_str().unwrap().to_owned();
    assert_eq!(
        results_url,
        format!("http://{}/v1/messages/batches/{id}/results", m.addr)
    );

    let get = |url: String| with_anthropic_headers(client().get(url));
    let got: Value = get(format!("{}/v1/messages/batches/{id}", m.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(got, b);

    // A second batch, then the list is newest first.
    let b2: Value = anthropic(&m, "/v1/messages/batches")
        .json(&body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list: Value = get(format!("{}/v1/messages/batches", m.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    assert_eq!(list["first_id"], b2["id"]);
    assert_eq!(list["last_id"], b["id"]);
    assert_eq!(list["has_more"], false);

    let r = get(results_url).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    let lines: Vec<Value> = text
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    assert_eq!(lines.len(), 2);
    let ok = lines.iter().find(|l| l["custom_id"] == "a-1").unwrap();
    assert_eq!(ok["result"]["type"], "succeeded");
    let usage = &ok["result"]["message"]["usage"];
    assert_eq!(usage["service_tier"], "batch");
    assert_eq!(usage["input_tokens"], 10);
    assert_eq!(usage["output_tokens"], 34);
    let bad = lines.iter().find(|l| l["custom_id"] == "a-2").unwrap();
    assert_eq!(bad["result"]["type"], "errored");
    assert_eq!(
        bad["result"]["error"]["error"]["type"],
        "invalid_request_error"
    );

    let c: Value = anthropic(&m, &format!("/v1/messages/batches/{id}/cancel"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(c["id"], id.as_str());
    assert_eq!(c["processing_status"], "ended");

    let d: Value =
        with_anthropic_headers(client().delete(format!("{}/v1/messages/batches/{id}", m.url())))
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
    assert_eq!(d, json!({"id": id, "type": "message_batch_deleted"}));
    let r = get(format!("{}/v1/messages/batches/{id}", m.url()))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["type"], "not_found_error");
}
