//! Who may spend what: allowed models, rate limits, budgets (under concurrency too, and
//! given back by cancelled calls), credits and markup, each rule shown holding and refusing
//! over real HTTP. The helpers here serve `tenancy` too.

use crate::harness::{Harness, ADMIN};
use serde_json::{json, Value};

pub const CHAT: &str = "/openai/v1/chat/completions";

pub async fn admin(h: &Harness, method: reqwest::Method, path: &str, body: Value) -> Value {
    let response = h
        .http
        .request(method.clone(), h.url(path))
        .bearer_auth(ADMIN)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = response.status();
    let value: Value = response.json().await.unwrap_or(Value::Null);
    assert!(status.is_success(), "{method} {path}: {status} {value}");
    value
}

pub async fn new_project(h: &Harness, id: &str, settings: Value) -> Value {
    admin(
        h,
        reqwest::Method::POST,
        "/admin/v1/projects",
        json!({"id": id, "name": id, "settings": settings}),
    )
    .await
}

/// A key in `project` with `extra` fields (allowed_models, limits); returns its secret.
pub async fn new_key(h: &Harness, project: &str, extra: Value) -> (String, String) {
    let mut body = json!({"name": "policy", "project_id": project});
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        b.extend(e.clone());
    }
    let created = admin(h, reqwest::Method::POST, "/admin/v1/keys", body).await;
    (
        created["secret"].as_str().unwrap().to_string(),
        created["id"].as_str().unwrap().to_string(),
    )
}

pub fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}], "max_tokens": 50})
}

pub async fn call(h: &Harness, key: &str, model: &str) -> reqwest::Response {
    h.http
        .post(h.url(CHAT))
        .bearer_auth(key)
        .json(&chat(model))
        .send()
        .await
        .unwrap()
}

/// The sum of the events' `cost_usd`.
pub fn cost_of<'a>(events: impl Iterator<Item = &'a Value>) -> rust_decimal::Decimal {
    events
        .map(|e| {
            e["cost_usd"]
                .as_str()
                .unwrap()
                .parse::<rust_decimal::Decimal>()
                .unwrap()
        })
        .sum()
}

pub async fn error_of(response: reqwest::Response, status: u16) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    assert!(body["error"]["message"].is_string(), "{body}");
    body
}

#[tokio::test]
async fn allowed_models_per_project_and_key_and_the_models_list() {
    let h = Harness::start().await;
    new_project(
        &h,
        "team-a",
        json!({"allowed_models": ["openai/gpt-4o*", "anthropic/claude-sonnet-4-5"]}),
    )
    .await;
    let (key, key_id) = new_key(
        &h,
        "team-a",
        json!({"allowed_models": ["openai/gpt-4o-mini", "anthropic/*"]}),
    )
    .await;
    assert_eq!(call(&h, &key, "gpt-4o-mini").await.status(), 200);
    // The project allows gpt-4o, the key does not.
    let refused = error_of(call(&h, &key, "gpt-4o").await, 403).await;
    assert_eq!(refused["error"]["code"], "model_not_allowed");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&key_id));
    // The key allows every Anthropic model, the project only one.
    let messages = |model: &str| {
        h.http
            .post(h.url("/anthropic/v1/messages"))
            .header("x-api-key", &key)
            .header("anthropic-version", "2023-06-01")
            .json(&json!({"model": model, "max_tokens": 10, "messages": [{"role": "user", "content": "hi"}]}))
    };
    assert_eq!(
        messages("claude-sonnet-4-5").send().await.unwrap().status(),
        200
    );
    let r = messages("claude-opus-4-1").send().await.unwrap();
    assert_eq!(r.status(), 403);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["type"], "error");
    assert_eq!(body["error"]["type"], "permission_error");
    assert_eq!(
        h.mock.state.stats().requests,
        2,
        "refusals are not forwarded"
    );

    // The models lists show exactly what the key may use, with meshgate's prices.
    let list: Value = h
        .http
        .get(h.url("/openai/v1/models"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["gpt-4o-mini"], "{list}");
    assert_eq!(list["object"], "list");
    assert!(list["data"][0]["meshgate_pricing"]["price_id"].is_string());
    let list: Value = h
        .http
        .get(h.url("/anthropic/v1/models"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|m| m["id"].as_str().unwrap())
        .collect();
    assert_eq!(ids, ["claude-sonnet-4-5"], "{list}");
    assert_eq!(list["data"][0]["type"], "model");
    let one = h
        .http
        .get(h.url("/openai/v1/models/gpt-4o"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(one.status(), 404);
    assert_eq!(
        h.mock.state.stats().requests,
        2,
        "model lists are meshgate's"
    );
}

#[tokio::test]
async fn requests_per_minute_answer_429_with_retry_after_in_both_shapes() {
    let h = Harness::start().await;
    let (key, _) = new_key(&h, "default", json!({"limits": {"requests_per_minute": 2}})).await;
    for _ in 0..2 {
        assert_eq!(call(&h, &key, "gpt-4o-mini").await.status(), 200);
    }
    let refused = call(&h, &key, "gpt-4o-mini").await;
    assert_eq!(refused.status(), 429);
    let headers = refused.headers().clone();
    let retry: u64 = headers["retry-after"].to_str().unwrap().parse().unwrap();
    assert!((1..=120).contains(&retry), "{retry}");
    assert_eq!(headers["x-ratelimit-limit-requests"], "2");
    assert_eq!(headers["x-ratelimit-remaining-requests"], "0");
    let body: Value = refused.json().await.unwrap();
    assert_eq!(body["error"]["code"], "rate_limit_exceeded");
    let anthropic = h
        .http
        .post(h.url("/anthropic/v1/messages"))
        .header("x-api-key", &key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(anthropic.status(), 429);
    assert_eq!(
        anthropic.headers()["anthropic-ratelimit-requests-limit"],
        "2"
    );
    let body: Value = anthropic.json().await.unwrap();
    assert_eq!(body["error"]["type"], "rate_limit_error");
    assert_eq!(h.mock.state.stats().requests, 2);
    // Another key of the project is not limited by this key's limit.
    assert_eq!(call(&h, &h.key, "gpt-4o-mini").await.status(), 200);
}

#[tokio::test]
async fn tokens_per_minute_count_what_calls_used() {
    let h = Harness::start().await;
    new_project(&h, "tpm", json!({"limits": {"tokens_per_minute": 100}})).await;
    let (key, _) = new_key(&h, "tpm", json!({})).await;
    let big = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&key)
        .header("x-mock-input-tokens", "90")
        .header("x-mock-output-tokens", "20")
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(big.status(), 200);
    let _ = big.bytes().await.unwrap();
    h.wait_events(1).await;
    let refused = call(&h, &key, "gpt-4o-mini").await;
    assert_eq!(refused.status(), 429);
    assert_eq!(refused.headers()["x-ratelimit-limit-tokens"], "100");
    let body: Value = refused.json().await.unwrap();
    assert!(
        body["error"]["message"]
            .as_str()
            .unwrap()
            .contains("project tpm"),
        "{body}"
    );
}

/// What a walked route sends.
enum Body {
    None,
    Json(Value),
    /// A multipart form with a file and this model (transcriptions, image edits).
    Form(&'static str),
}

/// Every path meshgate forwards, with a body that would be valid for it.
fn every_route() -> Vec<(reqwest::Method, &'static str, Body, bool)> {
    use reqwest::Method;
    let chat = json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]});
    let msg = json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    vec![
        (
            Method::POST,
            "/openai/v1/chat/completions",
            Body::Json(chat.clone()),
            false,
        ),
        (
            Method::POST,
            "/v1/chat/completions",
            Body::Json(chat),
            false,
        ),
        (
            Method::POST,
            "/openai/v1/responses",
            Body::Json(json!({"model": "gpt-4o-mini", "input": "hi"})),
            false,
        ),
        (
            Method::POST,
            "/openai/v1/responses/input_tokens",
            Body::Json(json!({"model": "gpt-4o-mini", "input": "hi"})),
            false,
        ),
        (
            Method::GET,
            "/openai/v1/responses/resp_1",
            Body::None,
            false,
        ),
        (
            Method::POST,
            "/openai/v1/embeddings",
            Body::Json(json!({"model": "text-embedding-3-small", "input": "hi"})),
            false,
        ),
        (
            Method::POST,
            "/openai/v1/images/generations",
            Body::Json(json!({"model": "dall-e-3", "prompt": "a cat"})),
            false,
        ),
        (
            Method::POST,
            "/openai/v1/audio/speech",
            Body::Json(json!({"model": "tts-1", "input": "hi", "voice": "alloy"})),
            false,
        ),
        (Method::GET, "/openai/v1/models", Body::None, false),
        (
            Method::GET,
            "/openai/v1/models/gpt-4o-mini",
            Body::None,
            false,
        ),
        (
            Method::POST,
            "/anthropic/v1/messages",
            Body::Json(msg.clone()),
            true,
        ),
        (
            Method::POST,
            "/anthropic/v1/messages/count_tokens",
            Body::Json(msg.clone()),
            true,
        ),
        (
            Method::POST,
            "/anthropic/v1/messages/batches",
            Body::Json(json!({"requests": [{"custom_id": "a", "params": msg}]})),
            true,
        ),
        (
            Method::GET,
            "/anthropic/v1/messages/batches",
            Body::None,
            true,
        ),
        (
            Method::GET,
            "/anthropic/v1/messages/batches/msgbatch_1",
            Body::None,
            true,
        ),
        (
            Method::GET,
            "/anthropic/v1/messages/batches/msgbatch_1/results",
            Body::None,
            true,
        ),
        (
            Method::POST,
            "/anthropic/v1/messages/batches/msgbatch_1/cancel",
            Body::None,
            true,
        ),
        (
            Method::POST,
            "/anthropic/v1/complete",
            Body::Json(
                json!({"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 5}),
            ),
            true,
        ),
        (Method::GET, "/anthropic/v1/models", Body::None, true),
        (
            Method::POST,
            "/v1/messages?beta=true",
            Body::Json(json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []})),
            true,
        ),
        (
            Method::POST,
            "/openai/v1/responses/compact",
            Body::Json(json!({"model": "gpt-4o-mini", "input": "hi"})),
            false,
        ),
        (
            Method::DELETE,
            "/openai/v1/responses/resp_1",
            Body::None,
            false,
        ),
        (
            Method::POST,
            "/openai/v1/responses/resp_1/cancel",
            Body::None,
            false,
        ),
        (
            Method::GET,
            "/openai/v1/responses/resp_1/input_items",
            Body::None,
            false,
        ),
        (
            Method::POST,
            "/openai/v1/audio/transcriptions",
            Body::Form("whisper-1"),
            false,
        ),
        (
            Method::POST,
            "/openai/v1/audio/translations",
            Body::Form("whisper-1"),
            false,
        ),
        (
            Method::POST,
            "/openai/v1/images/edits",
            Body::Form("gpt-image-1"),
            false,
        ),
        (
            Method::POST,
            "/openai/v1/images/variations",
            Body::Form("dall-e-2"),
            false,
        ),
        (Method::GET, "/v1/models", Body::None, false),
        (
            Method::DELETE,
            "/anthropic/v1/messages/batches/msgbatch_1",
            Body::None,
            true,
        ),
        (
            Method::GET,
            "/anthropic/v1/models/claude-sonnet-4-5",
            Body::None,
            true,
        ),
        (
            Method::POST,
            "/v1/complete",
            Body::Json(
                json!({"model": "claude-2.1", "prompt": "\n\nHuman: hi\n\nAssistant:", "max_tokens_to_sample": 5}),
            ),
            true,
        ),
    ]
}

#[tokio::test]
async fn an_exhausted_budget_refuses_every_route_with_402() {
    let h = Harness::start().await;
    let (key, key_id) = new_key(
        &h,
        "default",
        json!({"limits": {"spend_total_usd": "0.000001"}}),
    )
    .await;
    // The most a 50-token call can cost is more than the whole budget: refused up front.
    let first = error_of(call(&h, &key, "gpt-4o-mini").await, 402).await;
    assert_eq!(first["error"]["code"], "budget_exceeded");
    let message = first["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&key_id) && message.contains("max_tokens"),
        "{message}"
    );
    // Spend with a key whose budget is large, then lower the budget below what was spent.
    let (key, key_id) = new_key(&h, "default", json!({"limits": {"spend_total_usd": "1"}})).await;
    assert_eq!(call(&h, &key, "gpt-4o-mini").await.status(), 200);
    h.wait_events(1).await;
    admin(
        &h,
        reqwest::Method::PATCH,
        &format!("/admin/v1/keys/{key_id}"),
        json!({"limits": {"spend_total_usd": "0.0000001"}}),
    )
    .await;
    let before = h.mock.state.stats().requests;
    for (method, path, body, anthropic) in every_route() {
        let mut request = h.http.request(method.clone(), h.url(path));
        request = if anthropic {
            request
                .header("x-api-key", &key)
                .header("anthropic-version", "2023-06-01")
        } else {
            request.bearer_auth(&key)
        };
        request = match body {
            Body::None => request,
            Body::Json(body) => request.json(&body),
            Body::Form(model) => request.multipart(
                reqwest::multipart::Form::new()
                    .text("model", model)
                    .text("prompt", "a cat")
                    .part(
                        "file",
                        reqwest::multipart::Part::bytes(vec![0u8; 64]).file_name("a.wav"),
                    ),
            ),
        };
        let response = request.send().await.unwrap();
        assert_eq!(response.status(), 402, "{method} {path}");
        let body: Value = response.json().await.unwrap();
        if anthropic {
            assert_eq!(body["error"]["type"], "billing_error", "{path}: {body}");
        } else {
            assert_eq!(body["error"]["code"], "budget_exceeded", "{path}: {body}");
        }
        assert!(
            body["error"]["message"]
                .as_str()
                .unwrap()
                .contains("used up"),
            "{path}: {body}"
        );
    }
    assert_eq!(h.mock.state.stats().requests, before, "nothing forwarded");
    // The caller can still read its own usage.
    let own = h
        .http
        .get(h.url("/v1/usage"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(own.status(), 200);
}

#[tokio::test]
async fn parallel_calls_overspend_at_most_what_was_reserved_in_flight() {
    let h = Harness::start().await;
    // gpt-4o-mini: $0.15 / $0.60 per Mtok. Each call reserves about 100 input tokens from its
    // body and 200 output tokens, about $0.000135; the budget fits a few dozen of them.
    let budget: rust_decimal::Decimal = "0.003".parse().unwrap();
    let (key, key_id) = new_key(
        &h,
        "default",
        json!({"limits": {"spend_total_usd": budget.to_string()}}),
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 200, "messages": [{"role": "user", "content": "hi"}]});
    let mut calls = tokio::task::JoinSet::new();
    for _ in 0..200 {
        let request = h
            .http
            .post(h.url(CHAT))
            .bearer_auth(&key)
            .header("x-mock-output-tokens", "200")
            .header("x-mock-chunk-delay-ms", "0")
            .json(&body);
        calls.spawn(async move {
            let r = request.send().await.unwrap();
            let status = r.status().as_u16();
            let _ = r.bytes().await;
            status
        });
    }
    let mut ok = 0;
    let mut refused = 0;
    while let Some(status) = calls.join_next().await {
        match status.unwrap() {
            200 => ok += 1,
            402 => refused += 1,
            other => panic!("unexpected status {other}"),
        }
    }
    assert_eq!(ok + refused, 200);
    assert!(ok > 0 && refused > 0, "ok {ok}, refused {refused}");
    let events = h.wait_events(ok + 1).await;
    let spent = cost_of(events.iter().filter(|e| e["key_id"] == key_id.as_str()));
    assert_eq!(
        events
            .iter()
            .filter(|e| e["key_id"] == key_id.as_str())
            .count(),
        ok,
        "every forwarded call left one event"
    );
    // Each call costs at most what it reserved, so the budget holds exactly.
    assert!(spent <= budget, "spent {spent} of {budget}");
    assert_eq!(h.mock.state.stats().requests as usize, ok);
}

#[tokio::test]
async fn credits_refuse_without_balance_and_are_debited_with_markup_beside_cost() {
    let h = Harness::start().await;
    new_project(
        &h,
        "reseller",
        json!({"credits_enforced": true, "markup_percent": "20"}),
    )
    .await;
    let (key, _) = new_key(&h, "reseller", json!({})).await;
    let refused = error_of(call(&h, &key, "gpt-4o-mini").await, 402).await;
    assert_eq!(refused["error"]["code"], "insufficient_credits");
    assert!(refused["error"]["message"]
        .as_str()
        .unwrap()
        .contains("no credits"));
    assert_eq!(h.mock.state.stats().requests, 0);

    admin(
        &h,
        reqwest::Method::POST,
        "/admin/v1/projects/reseller/credits",
        json!({"kind": "grant", "amount_usd": "1"}),
    )
    .await;
    assert_eq!(call(&h, &key, "gpt-4o-mini").await.status(), 200);
    let events = h.wait_events(1).await;
    let event = events
        .iter()
        .find(|e| e["project_id"] == "reseller")
        .unwrap();
    let cost: rust_decimal::Decimal = event["cost_usd"].as_str().unwrap().parse().unwrap();
    let markup: rust_decimal::Decimal = event["markup_usd"].as_str().unwrap().parse().unwrap();
    assert!(cost > rust_decimal::Decimal::ZERO);
    assert_eq!(
        markup,
        cost * rust_decimal::Decimal::new(2, 1),
        "20 % of the cost"
    );
    let credits = admin(
        &h,
        reqwest::Method::GET,
        "/admin/v1/projects/reseller/credits",
        Value::Null,
    )
    .await;
    let balance: rust_decimal::Decimal = credits["balance_usd"].as_str().unwrap().parse().unwrap();
    assert_eq!(balance, rust_decimal::Decimal::ONE - cost - markup);
    let kinds: Vec<&str> = credits["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["kind"].as_str().unwrap())
        .collect();
    assert!(
        kinds.contains(&"grant") && kinds.contains(&"usage_debit"),
        "{kinds:?}"
    );
}

#[tokio::test]
async fn a_cancelled_call_gives_its_reservation_back() {
    use futures_util::StreamExt;
    let h = Harness::start().await;
    // Room for one reservation of a 1000-token call at a time, not two.
    let (key, _) = new_key(
        &h,
        "default",
        json!({"limits": {"spend_total_usd": "0.001"}}),
    )
    .await;
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 1000, "stream": true, "messages": []});
    let stream = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&key)
        .header("x-mock-chunks", "50")
        .header("x-mock-chunk-delay-ms", "100")
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(stream.status(), 200);
    let mut chunks = stream.bytes_stream();
    chunks.next().await.unwrap().unwrap();
    // While the first call holds its reservation, a second one does not fit.
    let second = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(second.status(), 402);
    drop(chunks);
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "client_cancelled");
    // The cancelled call settled at what it had used: the reservation is free again.
    let third = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&key)
        .json(&body)
        .send()
        .await
        .unwrap();
    assert_eq!(third.status(), 200);
}
