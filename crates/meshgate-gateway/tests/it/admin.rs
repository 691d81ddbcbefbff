//! The admin API: its own auth, keys (create, show, update, rotate, revoke), usage events
//! with filters and pages, summaries, and the OpenAPI document covering every route. Also
//! the small request helpers the other admin test files share.

use crate::harness::{Harness, ADMIN};
use reqwest::Method;
use serde_json::{json, Value};

/// One admin call with the admin token: status and JSON body (null when not JSON).
pub async fn admin(h: &Harness, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut request = h.http.request(method, h.url(path)).bearer_auth(ADMIN);
    if let Some(body) = body {
        request = request.json(&body);
    }
    let response = request.send().await.unwrap();
    let status = response.status().as_u16();
    let body = response.json().await.unwrap_or(Value::Null);
    (status, body)
}

/// An admin call that must answer `status`; returns the body.
pub async fn expect(
    h: &Harness,
    method: Method,
    path: &str,
    body: Option<Value>,
    status: u16,
) -> Value {
    let (got, value) = admin(h, method.clone(), path, body).await;
    assert_eq!(got, status, "{method} {path}: {value}");
    if status >= 400 {
        assert!(
            value["error"]["message"].is_string(),
            "error shape: {value}"
        );
        assert!(value["error"]["type"].is_string(), "error shape: {value}");
    }
    value
}

/// A chat call with `key` (a meshgate key or a participant token).
pub async fn chat(h: &Harness, key: &str, model: &str) -> reqwest::Response {
    h.http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-output-tokens", "100")
        .json(&json!({"model": model, "messages": []}))
        .send()
        .await
        .unwrap()
}

/// Every audit event, newest first.
pub async fn audit_log(h: &Harness) -> Vec<Value> {
    expect(h, Method::GET, "/admin/v1/audit?limit=1000", None, 200).await["data"]
        .as_array()
        .cloned()
        .unwrap()
}

/// The audit events of one action.
pub async fn audited(h: &Harness, action: &str) -> Vec<Value> {
    audit_log(h)
        .await
        .into_iter()
        .filter(|e| e["action"] == action)
        .collect()
}

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

#[tokio::test]
async fn keys_are_shown_updated_and_the_next_call_sees_it() {
    let h = Harness::start().await;
    let created = expect(
        &h,
        Method::POST,
        "/admin/v1/keys",
        Some(json!({
            "name": "limited",
            "expires_at": "2999-01-01T00:00:00Z",
            "allowed_models": ["openai/gpt-4o-mini"],
            "limits": {"requests_per_minute": 100, "spend_daily_usd": "2.50"}
        })),
        201,
    )
    .await;
    let id = created["id"].as_str().unwrap().to_string();
    let secret = created["secret"].as_str().unwrap().to_string();
    assert_eq!(created["limits"]["spend_daily_usd"], "2.5");
    assert_eq!(created["expires_ms"], 32_472_144_000_000i64);
    let shown = expect(&h, Method::GET, &format!("/admin/v1/keys/{id}"), None, 200).await;
    assert_eq!(shown["allowed_models"], json!(["openai/gpt-4o-mini"]));
    assert_eq!(shown["limits"]["requests_per_minute"], 100);
    assert!(shown.get("secret").is_none());
    assert_eq!(chat(&h, &secret, "gpt-4o-mini").await.status(), 200);
    assert_eq!(chat(&h, &secret, "gpt-4o").await.status(), 403);

    // Widen the models, change one limit, drop another, clear the expiry: the very next
    // call sees it.
    let updated = expect(
        &h,
        Method::PATCH,
        &format!("/admin/v1/keys/{id}"),
        Some(json!({
            "name": "widened",
            "allowed_models": null,
            "expires_at": null,
            "limits": {"requests_per_minute": 50, "spend_daily_usd": null}
        })),
        200,
    )
    .await;
    assert_eq!(updated["name"], "widened");
    assert!(updated["allowed_models"].is_null());
    assert!(updated["expires_ms"].is_null());
    assert_eq!(updated["limits"], json!({"requests_per_minute": 50}));
    assert_eq!(chat(&h, &secret, "gpt-4o").await.status(), 200);

    // An expiry in the past stops the key at once.
    expect(
        &h,
        Method::PATCH,
        &format!("/admin/v1/keys/{id}"),
        Some(json!({"expires_at": 1000})),
        200,
    )
    .await;
    assert_eq!(chat(&h, &secret, "gpt-4o").await.status(), 401);

    // Refusals: unknown key, unknown project, bad input.
    expect(&h, Method::GET, "/admin/v1/keys/key_nope", None, 404).await;
    expect(
        &h,
        Method::PATCH,
        "/admin/v1/keys/key_nope",
        Some(json!({"name": "x"})),
        404,
    )
    .await;
    for bad in [
        json!({"name": "x", "project_id": "no_such_project"}),
        json!({"name": ""}),
        json!({"name": "x", "expires_at": "tomorrow"}),
        json!({"name": "x", "limits": {"spend_total_usd": "-1"}}),
        json!({"name": "x", "limits": {"rpm": 5}}),
        json!({"name": "x", "colour": "red"}),
    ] {
        expect(&h, Method::POST, "/admin/v1/keys", Some(bad), 400).await;
    }
    let r = h
        .http
        .post(h.url("/admin/v1/keys"))
        .bearer_auth(ADMIN)
        .header("content-type", "application/json")
        .body("{not json")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);

    let log = audit_log(&h).await;
    let actions: Vec<&str> = log.iter().filter_map(|e| e["action"].as_str()).collect();
    assert!(
        actions.contains(&"key.created") && actions.contains(&"key.updated"),
        "{actions:?}"
    );
    let text = serde_json::to_string(&log).unwrap();
    assert!(!text.contains(&secret), "no secret in the audit log");
    assert!(!text.contains(&h.key));
}

#[tokio::test]
async fn keys_rotate_with_and_without_grace() {
    let h = Harness::start().await;
    let old = h.key.clone();
    let rotated = expect(
        &h,
        Method::POST,
        &format!("/admin/v1/keys/{}/rotate", h.key_id),
        Some(json!({"grace_seconds": 3600})),
        200,
    )
    .await;
    assert_eq!(rotated["id"], h.key_id.as_str(), "the id stays");
    let new = rotated["secret"].as_str().unwrap().to_string();
    assert_ne!(new, old);
    assert!(rotated["previous_expires_ms"].as_i64().unwrap() > 0);
    assert!(rotated["rotated_ms"].is_i64());
    // Both secrets work during the grace period.
    assert_eq!(chat(&h, &old, "gpt-4o-mini").await.status(), 200);
    assert_eq!(chat(&h, &new, "gpt-4o-mini").await.status(), 200);

    // Without grace (and with no body at all) the previous secret stops at once.
    let again = expect(
        &h,
        Method::POST,
        &format!("/admin/v1/keys/{}/rotate", h.key_id),
        None,
        200,
    )
    .await;
    let newest = again["secret"].as_str().unwrap().to_string();
    assert!(again["previous_expires_ms"].is_null());
    assert_eq!(chat(&h, &new, "gpt-4o-mini").await.status(), 401);
    assert_eq!(chat(&h, &old, "gpt-4o-mini").await.status(), 401);
    assert_eq!(chat(&h, &newest, "gpt-4o-mini").await.status(), 200);

    let events = audited(&h, "key.rotated").await;
    assert_eq!(events.len(), 2);
    assert_eq!(events[0]["target"], h.key_id.as_str());
    let text = serde_json::to_string(&audit_log(&h).await).unwrap();
    for secret in [&old, &new, &newest] {
        assert!(!text.contains(secret.as_str()));
    }

    // Revoked keys cannot rotate; unknown ones are 404.
    expect(
        &h,
        Method::DELETE,
        &format!("/admin/v1/keys/{}", h.key_id),
        None,
        200,
    )
    .await;
    assert_eq!(chat(&h, &newest, "gpt-4o-mini").await.status(), 401);
    expect(
        &h,
        Method::POST,
        &format!("/admin/v1/keys/{}/rotate", h.key_id),
        None,
        409,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/keys/key_nope/rotate",
        None,
        404,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/keys/key_nope/revoke",
        None,
        404,
    )
    .await;
    assert_eq!(audited(&h, "key.revoked").await.len(), 1);
}

#[tokio::test]
async fn usage_filters_by_annotation_project_and_groups_by_day() {
    let h = Harness::start().await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects",
        Some(json!({"id": "team-b", "name": "Team B", "settings": {"markup_percent": "10"}})),
        201,
    )
    .await;
    let b_key = expect(
        &h,
        Method::POST,
        "/admin/v1/keys",
        Some(json!({"name": "b", "project_id": "team-b"})),
        201,
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    for (key, team) in [(&h.key, "red"), (&h.key, "blue"), (&b_key, "red")] {
        let r = h
            .http
            .post(h.url("/openai/v1/chat/completions"))
            .bearer_auth(key)
            .header("meshgate-annotation-team", team)
            .header("x-mock-input-tokens", "1000")
            .header("x-mock-output-tokens", "100")
            .json(&json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    h.wait_events(3).await;
    let red = h.admin_get("/admin/v1/usage?annotation.team=red").await;
    assert_eq!(red["data"].as_array().unwrap().len(), 2);
    let red_b = h
        .admin_get("/admin/v1/usage?annotation.team=red&project_id=team-b")
        .await;
    assert_eq!(red_b["data"].as_array().unwrap().len(), 1);
    let by_team = h
        .admin_get("/admin/v1/usage/summary?group_by=annotation:team")
        .await;
    let rows = by_team["data"].as_array().unwrap();
    assert_eq!(
        rows.iter().find(|r| r["group"] == "red").unwrap()["requests"],
        2
    );
    let by_project = h
        .admin_get("/admin/v1/usage/summary?group_by=project")
        .await;
    let b = by_project["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["group"] == "team-b")
        .unwrap()
        .clone();
    // 10 % of 0.00021
    assert_eq!(b["markup_usd"], "0.000021");
    assert_eq!(by_project["total"]["markup_usd"], "0.000021");
    assert_eq!(by_project["total"]["cost_usd"], "0.00063");
    let by_day = h.admin_get("/admin/v1/usage/summary?group_by=day").await;
    let day = by_day["data"][0]["group"].as_str().unwrap();
    assert_eq!(day, chrono_today(), "{by_day}");
    for bad in [
        "/admin/v1/usage?colour=red",
        "/admin/v1/usage?limit=0",
        "/admin/v1/usage?since=yesterday",
        "/admin/v1/usage/summary?group_by=annotation:",
    ] {
        expect(&h, Method::GET, bad, None, 400).await;
    }
}

fn chrono_today() -> String {
    chrono::Utc::now().format("%Y-%m-%d").to_string()
}

/// Every operation of the document is served by the router and needs the admin token
/// (the document itself excepted), and every route the brief names is documented.
#[tokio::test]
async fn openapi_covers_every_admin_route() {
    let h = Harness::start().await;
    let r = h
        .http
        .get(h.url("/admin/v1/openapi.json"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "the document needs no auth");
    let doc: Value = r.json().await.unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."));
    let paths = doc["paths"].as_object().unwrap();
    let mut documented = Vec::new();
    for (path, item) in paths {
        for method in ["get", "post", "put", "patch", "delete"] {
            if item.get(method).is_some() {
                documented.push(format!("{} {path}", method.to_uppercase()));
            }
        }
    }
    let expected = [
        "POST /admin/v1/projects",
        "GET /admin/v1/projects",
        "GET /admin/v1/projects/{id}",
        "PATCH /admin/v1/projects/{id}",
        "POST /admin/v1/keys",
        "GET /admin/v1/keys",
        "GET /admin/v1/keys/{id}",
        "PATCH /admin/v1/keys/{id}",
        "DELETE /admin/v1/keys/{id}",
        "POST /admin/v1/keys/{id}/rotate",
        "POST /admin/v1/keys/{id}/revoke",
        "POST /admin/v1/projects/{id}/signing-keys",
        "GET /admin/v1/projects/{id}/signing-keys",
        "POST /admin/v1/signing-keys/{kid}/revoke",
        "POST /admin/v1/signing-keys/{kid}/rotate",
        "POST /admin/v1/projects/{id}/tokens",
        "POST /admin/v1/projects/{id}/credits",
        "GET /admin/v1/projects/{id}/credits",
        "PUT /admin/v1/projects/{id}/providers/{provider}",
        "GET /admin/v1/projects/{id}/providers",
        "DELETE /admin/v1/projects/{id}/providers/{provider}",
        "GET /admin/v1/usage",
        "GET /admin/v1/usage/summary",
        "GET /admin/v1/audit",
        "GET /admin/v1/providers/health",
        "GET /admin/v1/openapi.json",
    ];
    let mut want: Vec<String> = expected.iter().map(|s| s.to_string()).collect();
    want.sort();
    documented.sort();
    assert_eq!(documented, want);

    // Each documented operation is routed: without the token it is a 401 in the admin
    // error shape (not the proxy's fallback 404, not a 405).
    for op in &documented {
        let (method, path) = op.split_once(' ').unwrap();
        if path.ends_with("openapi.json") {
            continue;
        }
        let concrete = path
            .replace("{id}", "default")
            .replace("{kid}", "sk_x")
            .replace("{provider}", "openai");
        let r = h
            .http
            .request(method.parse().unwrap(), h.url(&concrete))
            .json(&json!({}))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 401, "{op}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["type"], "authentication_error", "{op}");
        // Schemas referenced by the operation exist in the components.
        let item = &paths[path][method.to_lowercase()];
        for reference in find_refs(item) {
            let name = reference.trim_start_matches("#/components/schemas/");
            assert!(
                doc["components"]["schemas"].get(name).is_some(),
                "{op}: missing schema {name}"
            );
        }
    }
}

fn find_refs(value: &Value) -> Vec<String> {
    match value {
        Value::Object(map) => map
            .iter()
            .flat_map(|(k, v)| match (k.as_str(), v) {
                ("$ref", Value::String(s)) => vec![s.clone()],
                _ => find_refs(v),
            })
            .collect(),
        Value::Array(items) => items.iter().flat_map(find_refs).collect(),
        _ => Vec::new(),
    }
}
