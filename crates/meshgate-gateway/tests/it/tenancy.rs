//! Projects apart and within: delegations spend against their own budget and their
//! parent's, annotations tag a project's events and never reach the provider, a caller reads
//! only its own usage, a project calls with its own provider key, and never reaches another
//! project's batches or stored responses.

use crate::harness::Harness;
use crate::policy::{admin, call, chat, cost_of, error_of, new_key, new_project, CHAT};
use serde_json::{json, Value};

#[tokio::test]
async fn delegations_spend_against_their_own_budget_and_their_parent() {
    let h = Harness::start().await;
    let (key, key_id) = new_key(&h, "default", json!({})).await;
    let created = h
        .http
        .post(h.url("/v1/delegations"))
        .bearer_auth(&key)
        .json(&json!({"max_budget_usd": "0.0002", "models": ["openai/gpt-4o-mini"], "ttl_seconds": 600}))
        .send()
        .await
        .unwrap();
    assert_eq!(created.status(), 201);
    let created: Value = created.json().await.unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();

    // Used as the bearer: allowed model ok, others refused.
    assert_eq!(call(&h, &token, "gpt-4o-mini").await.status(), 200);
    let refused = error_of(call(&h, &token, "gpt-4o").await, 403).await;
    assert!(refused["error"]["message"].as_str().unwrap().contains(&id));
    // Used as a header beside its parent key.
    let with_header = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&key)
        .header("meshgate-llm-delegation", &token)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_header.status(), 200);
    // Beside another credential it is refused.
    let other = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&h.key)
        .header("meshgate-llm-delegation", &token)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(other.status(), 403);
    // Spend it down: calls are refused once the delegation cannot afford the next one.
    let mut exhausted = None;
    for _ in 0..50 {
        let r = call(&h, &token, "gpt-4o-mini").await;
        if r.status() == 402 {
            exhausted = Some(r.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let exhausted = exhausted.expect("the delegation ran out");
    assert!(exhausted["error"]["message"]
        .as_str()
        .unwrap()
        .contains(&format!("delegation {id}")));
    // Its events carry the delegation and the parent key; the parent can still call.
    let events = h.events().await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["delegation_id"] == id.as_str())
        .collect();
    assert!(mine.len() >= 2);
    assert!(mine.iter().all(|e| e["key_id"] == key_id.as_str()));
    let spent = cost_of(mine.iter().copied());
    assert!(spent <= "0.0002".parse().unwrap(), "{spent}");
    assert_eq!(call(&h, &key, "gpt-4o").await.status(), 200);
    // A delegation cannot mint another.
    let nested = h
        .http
        .post(h.url("/v1/delegations"))
        .bearer_auth(&token)
        .json(&json!({"max_budget_usd": "0.1"}))
        .send()
        .await
        .unwrap();
    assert_eq!(nested.status(), 403);
}

#[tokio::test]
async fn a_delegations_spending_counts_against_its_parents_budget() {
    let h = Harness::start().await;
    // The parent can afford less than the delegation it hands out.
    let (key, key_id) = new_key(
        &h,
        "default",
        json!({"limits": {"spend_total_usd": "0.0003"}}),
    )
    .await;
    let created: Value = h
        .http
        .post(h.url("/v1/delegations"))
        .bearer_auth(&key)
        .json(&json!({"max_budget_usd": "1", "ttl_seconds": 600}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let token = created["token"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    // About $0.00006 a call, reserved up front as at most $0.00008.
    let body = json!({"model": "gpt-4o-mini", "max_tokens": 100, "messages": [{"role": "user", "content": "hi"}]});
    let spend = |bearer: String| {
        h.http
            .post(h.url(CHAT))
            .bearer_auth(bearer)
            .header("x-mock-output-tokens", "100")
            .json(&body)
            .send()
    };
    let mut refused = None;
    for _ in 0..50 {
        let r = spend(token.clone()).await.unwrap();
        if r.status() == 402 {
            refused = Some(r.json::<Value>().await.unwrap());
            break;
        }
        assert_eq!(r.status(), 200);
    }
    let refused = refused.expect("the parent's budget ran out under the delegation");
    let message = refused["error"]["message"].as_str().unwrap();
    assert!(
        message.contains(&key_id) && !message.contains(&format!("delegation {id}")),
        "the parent key's budget is named: {message}"
    );
    // The parent itself is now refused too, and the delegation's calls are what it spent.
    assert_eq!(spend(key.clone()).await.unwrap().status(), 402);
    let events = h.events().await;
    let spent = cost_of(events.iter().filter(|e| e["key_id"] == key_id.as_str()));
    assert!(spent > rust_decimal::Decimal::ZERO);
    assert!(spent <= "0.0003".parse().unwrap(), "{spent}");
    assert!(events
        .iter()
        .filter(|e| e["key_id"] == key_id.as_str())
        .all(|e| e["delegation_id"] == id.as_str()));
}

#[tokio::test]
async fn annotations_tag_events_and_never_reach_the_provider() {
    let h = Harness::start().await;
    for team in ["red", "blue", "red"] {
        let r = h
            .http
            .post(h.url(CHAT))
            .bearer_auth(&h.key)
            .header("Meshgate-Annotation-Team", team)
            .header("meshgate-annotation-ticket", "T-1")
            .json(&chat("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let upstream = h.mock.state.last_request().unwrap();
    assert!(
        upstream
            .headers
            .iter()
            .all(|(name, _)| !name.to_ascii_lowercase().starts_with("meshgate-")),
        "{:?}",
        upstream.headers
    );
    h.wait_events(3).await;
    let red = h
        .admin_get("/admin/v1/usage?annotation.team=red&annotation.ticket=T-1")
        .await;
    assert_eq!(red["data"].as_array().unwrap().len(), 2);
    assert_eq!(red["data"][0]["annotations"]["team"], "red");
    let grouped = h
        .admin_get("/admin/v1/usage/summary?group_by=annotation:team")
        .await;
    let groups: Vec<(String, u64)> = grouped["data"]
        .as_array()
        .unwrap()
        .iter()
        .map(|r| {
            (
                r["group"].as_str().unwrap().to_string(),
                r["requests"].as_u64().unwrap(),
            )
        })
        .collect();
    assert_eq!(groups, [("blue".to_string(), 1), ("red".to_string(), 2)]);
    let bad = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&h.key)
        .header("meshgate-annotation-bad name", "x")
        .json(&chat("gpt-4o-mini"))
        .send()
        .await;
    // A header name with a space cannot even be sent; an over-long value is refused.
    assert!(bad.is_err() || bad.unwrap().status() == 400);
    let long = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&h.key)
        .header("meshgate-annotation-team", "x".repeat(300))
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(long.status(), 400);
}

#[tokio::test]
async fn a_caller_reads_only_its_own_usage() {
    let h = Harness::start().await;
    new_project(&h, "other", json!({})).await;
    let (other_key, other_id) = new_key(&h, "other", json!({})).await;
    assert_eq!(call(&h, &h.key, "gpt-4o-mini").await.status(), 200);
    assert_eq!(call(&h, &other_key, "gpt-4o").await.status(), 200);
    h.wait_events(2).await;
    let own: Value = h
        .http
        .get(h.url("/v1/usage"))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let events = own["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{own}");
    assert_eq!(events[0]["project_id"], "other");
    assert_eq!(events[0]["model"], "gpt-4o");
    let summary: Value = h
        .http
        .get(h.url("/v1/usage/summary?group_by=day"))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(summary["data"].as_array().unwrap().len(), 1, "{summary}");
    assert_eq!(summary["data"][0]["requests"], 1);
    assert_eq!(summary["total"]["requests"], 1);
    assert_eq!(summary["total"]["cost_usd"], summary["data"][0]["cost_usd"]);
    // Who the caller is: the key's kind, id and name (what `meshgate whoami` shows).
    let me: Value = h
        .http
        .get(h.url("/v1/me"))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(
        me["credential"],
        json!({"kind": "key", "id": other_id, "name": "policy"})
    );
    assert_eq!(me["project_id"], "other");
    // Another project's key cannot reach the admin API either.
    let admin_try = h
        .http
        .get(h.url("/admin/v1/usage"))
        .bearer_auth(&other_key)
        .send()
        .await
        .unwrap();
    assert_eq!(admin_try.status(), 401);
}

#[tokio::test]
async fn a_project_calls_with_its_own_provider_key() {
    let mock = meshgate_mock::MockServer::start_with(meshgate_mock::MockOptions {
        openai_key: Some("sk-project-own".into()),
        ..meshgate_mock::MockOptions::default()
    })
    .await
    .unwrap();
    let url = mock.url();
    let h = Harness::start_on(mock, &url, |_| {}).await;
    new_project(&h, "byok", json!({})).await;
    let (key, _) = new_key(&h, "byok", json!({})).await;
    // The gateway's own key is not the one this mock accepts.
    assert_eq!(call(&h, &h.key, "gpt-4o-mini").await.status(), 401);
    admin(
        &h,
        reqwest::Method::PUT,
        "/admin/v1/projects/byok/providers/openai",
        json!({"api_key": "sk-project-own"}),
    )
    .await;
    assert_eq!(call(&h, &key, "gpt-4o-mini").await.status(), 200);
    let seen = h.mock.state.last_request().unwrap();
    let auth = seen
        .headers
        .iter()
        .find(|(n, _)| n.eq_ignore_ascii_case("authorization"))
        .map(|(_, v)| v.clone());
    assert_eq!(auth.as_deref(), Some("Bearer sk-project-own"));
    // Other projects still use the gateway's key.
    assert_eq!(call(&h, &h.key, "gpt-4o-mini").await.status(), 401);
}

#[tokio::test]
async fn a_project_never_reaches_another_projects_batches_or_responses() {
    let h = Harness::start().await;
    new_project(&h, "other", json!({})).await;
    let (other, _) = new_key(&h, "other", json!({})).await;
    let anthropic = |key: &str, method: reqwest::Method, path: &str| {
        h.http
            .request(method, h.url(path))
            .header("x-api-key", key)
            .header("anthropic-version", "2023-06-01")
    };
    let msg = json!({"model": "claude-haiku-4-5", "max_tokens": 5, "messages": [{"role": "user", "content": "hi"}]});
    let created: Value = anthropic(
        &h.key,
        reqwest::Method::POST,
        "/anthropic/v1/messages/batches",
    )
    .json(&json!({"requests": [{"custom_id": "a", "params": msg}]}))
    .send()
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let batch = created["id"].as_str().unwrap().to_string();
    let response: Value = h
        .openai("/openai/v1/responses")
        .json(&json!({"model": "gpt-4o-mini", "input": "hi"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let response_id = response["id"].as_str().unwrap().to_string();
    h.wait_events(2).await;

    let before = h.mock.state.stats().requests;
    for (method, path) in [
        (
            reqwest::Method::GET,
            format!("/anthropic/v1/messages/batches/{batch}"),
        ),
        (
            reqwest::Method::GET,
            format!("/anthropic/v1/messages/batches/{batch}/results"),
        ),
        (
            reqwest::Method::POST,
            format!("/anthropic/v1/messages/batches/{batch}/cancel"),
        ),
        (
            reqwest::Method::DELETE,
            format!("/anthropic/v1/messages/batches/{batch}"),
        ),
    ] {
        let r = anthropic(&other, method.clone(), &path)
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 404, "{method} {path}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "not_found_error", "{body}");
    }
    let r = h
        .http
        .get(h.url(&format!("/openai/v1/responses/{response_id}")))
        .bearer_auth(&other)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
    assert_eq!(
        h.mock.state.stats().requests,
        before,
        "nothing was forwarded"
    );

    // The list shows each project its own batches only.
    let listed = |key: String| {
        let request = anthropic(&key, reqwest::Method::GET, "/anthropic/v1/messages/batches");
        async move {
            let v: Value = request.send().await.unwrap().json().await.unwrap();
            v["data"]
                .as_array()
                .unwrap()
                .iter()
                .map(|b| b["id"].as_str().unwrap().to_string())
                .collect::<Vec<_>>()
        }
    };
    assert_eq!(listed(h.key.clone()).await, vec![batch.clone()]);
    assert!(listed(other.clone()).await.is_empty());
    // The owner still reaches its batch.
    let own = anthropic(
        &h.key,
        reqwest::Method::GET,
        &format!("/anthropic/v1/messages/batches/{batch}"),
    )
    .send()
    .await
    .unwrap();
    assert_eq!(own.status(), 200);
}
