//! The admin API: its own auth, keys, usage events with filters and pages, summaries.

use crate::harness::{Harness, ADMIN};
use serde_json::{json, Value};

#[tokio::test]
async fn admin_api_requires_the_admin_token() {
    let h = Harness::start().await;
    let r = h.http.get(h.url("/admin/v1/keys")).send().await.unwrap();
    assert_eq!(r.status(), 401);
    let r = h
        .http
        .get(h.url("/admin/v1/keys"))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 401, "a client key is not an admin token");
    let r = h
        .http
        .get(h.url("/admin/v1/keys"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
}

#[tokio::test]
async fn keys_are_listed_without_secrets_and_revoked() {
    let h = Harness::start().await;
    let second = h.create_key("second").await;
    let secret = second["secret"].as_str().unwrap();
    assert!(secret.starts_with("mg_"));
    let list = h.admin_get("/admin/v1/keys").await;
    let text = list.to_string();
    assert!(!text.contains(secret), "secrets are shown once");
    assert!(!text.contains("secret_hash"));
    assert_eq!(list["data"].as_array().unwrap().len(), 2);
    let id = second["id"].as_str().unwrap();
    let r = h
        .http
        .post(h.url(&format!("/admin/v1/keys/{id}/revoke")))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .delete(h.url("/admin/v1/keys/key_missing"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 404);
}

#[tokio::test]
async fn usage_is_filtered_paged_and_summed_exactly() {
    let h = Harness::start().await;
    let other = h.create_key("other").await;
    let other_secret = other["secret"].as_str().unwrap().to_string();
    for i in 0..7 {
        let (model, key) = if i % 2 == 0 {
            ("gpt-4o-mini", &h.key)
        } else {
            ("gpt-4o", &other_secret)
        };
        let r = h
            .http
            .post(h.url("/openai/v1/chat/completions"))
            .bearer_auth(key)
            .header("x-mock-input-tokens", "1000")
            .header("x-mock-output-tokens", "100")
            .json(&json!({"model": model, "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    h.wait_events(7).await;
    let page: Value = h.admin_get("/admin/v1/usage?limit=3").await;
    assert_eq!(page["data"].as_array().unwrap().len(), 3);
    let next = page["next_before"].as_str().unwrap();
    let page2 = h
        .admin_get(&format!("/admin/v1/usage?limit=10&before={next}"))
        .await;
    assert_eq!(page2["data"].as_array().unwrap().len(), 4);
    assert!(page2["next_before"].is_null());

    let only = h.admin_get("/admin/v1/usage?model=gpt-4o").await;
    assert_eq!(only["data"].as_array().unwrap().len(), 3);
    let by_key = h
        .admin_get(&format!("/admin/v1/usage?key_id={}", h.key_id))
        .await;
    assert_eq!(by_key["data"].as_array().unwrap().len(), 4);
    let future = h
        .admin_get("/admin/v1/usage?since=2999-01-01T00:00:00Z")
        .await;
    assert!(future["data"].as_array().unwrap().is_empty());

    let summary = h.admin_get("/admin/v1/usage/summary?group_by=model").await;
    let rows = summary["data"].as_array().unwrap();
    let mini = rows.iter().find(|r| r["group"] == "gpt-4o-mini").unwrap();
    assert_eq!(mini["requests"], 4);
    // 4 x (1000 x 1.5e-7 + 100 x 6e-7) = 4 x 0.00021
    assert_eq!(mini["cost_usd"], "0.00084");
    let big = rows.iter().find(|r| r["group"] == "gpt-4o").unwrap();
    // 3 x (1000 x 2.5e-6 + 100 x 1e-5) = 3 x 0.0035
    assert_eq!(big["cost_usd"], "0.0105");
    assert_eq!(summary["total"]["cost_usd"], "0.01134");
    assert_eq!(summary["total"]["requests"], 7);
    let by_key = h.admin_get("/admin/v1/usage/summary?group_by=key").await;
    assert_eq!(by_key["data"].as_array().unwrap().len(), 2);
    let r = h
        .http
        .get(h.url("/admin/v1/usage/summary?group_by=color"))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
}
