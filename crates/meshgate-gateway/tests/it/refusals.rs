//! Everything meshgate refuses itself: in the surface's native error shape, with the right
//! status, nothing forwarded and nothing billed.

use crate::harness::{Harness, ADMIN};
use serde_json::{json, Value};

async fn assert_refused(
    h: &Harness,
    response: reqwest::Response,
    status: u16,
    anthropic: bool,
) -> Value {
    assert_eq!(response.status(), status);
    let body: Value = response.json().await.unwrap();
    if anthropic {
        assert_eq!(body["type"], "error", "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
        assert!(body["error"]["message"].is_string(), "{body}");
    } else {
        assert!(body["error"]["message"].is_string(), "{body}");
        assert!(body["error"]["type"].is_string(), "{body}");
    }
    assert_eq!(
        h.mock.state.stats().requests,
        0,
        "nothing may reach the provider"
    );
    body
}

#[tokio::test]
async fn bad_credentials_get_401_in_each_native_shape() {
    let h = Harness::start().await;
    let chat = json!({"model": "gpt-4o", "messages": []});
    let cases: Vec<(&str, Option<(&str, String)>)> = vec![
        ("missing", None),
        (
            "malformed",
            Some(("authorization", "Bearer sk-not-meshgate".into())),
        ),
        (
            "unknown",
            Some(("authorization", format!("Bearer mg_{}", "A".repeat(43)))),
        ),
        (
            "wrong scheme",
            Some(("authorization", format!("Basic {}", h.key))),
        ),
        ("x-api-key on openai", Some(("x-api-key", h.key.clone()))),
    ];
    for (label, header) in cases {
        let mut request = h
            .http
            .post(h.url("/openai/v1/chat/completions"))
            .json(&chat);
        if let Some((name, value)) = header {
            request = request.header(name, value);
        }
        let body = assert_refused(&h, request.send().await.unwrap(), 401, false).await;
        assert_eq!(body["error"]["code"], "invalid_api_key", "{label}");
    }
    let r = h
        .http
        .post(h.url("/anthropic/v1/messages"))
        .header("x-api-key", "mg_short")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    let body = assert_refused(&h, r, 401, true).await;
    assert_eq!(body["error"]["type"], "authentication_error");
    assert!(h.events().await.is_empty(), "refusals are not billed");
}

#[tokio::test]
async fn a_revoked_key_stops_on_the_very_next_call() {
    let h = Harness::start().await;
    let call = || {
        h.openai("/openai/v1/chat/completions")
            .json(&json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
    };
    assert_eq!(call().await.unwrap().status(), 200);
    let r = h
        .http
        .delete(h.url(&format!("/admin/v1/keys/{}", h.key_id)))
        .bearer_auth(ADMIN)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let before = h.mock.state.stats().requests;
    let r = call().await.unwrap();
    assert_eq!(r.status(), 401);
    assert_eq!(h.mock.state.stats().requests, before);
}

#[tokio::test]
async fn an_expired_key_is_refused() {
    let h = Harness::start().await;
    let r = h
        .http
        .post(h.url("/admin/v1/keys"))
        .bearer_auth(ADMIN)
        .json(&json!({"name": "old", "expires_at": "2020-01-01T00:00:00Z"}))
        .send()
        .await
        .unwrap();
    let key: Value = r.json().await.unwrap();
    let r = h
        .http
        .post(h.url("/openai/v1/chat/completions"))
        .bearer_auth(key["secret"].as_str().unwrap())
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    let body = assert_refused(&h, r, 401, false).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("expired"));
}

#[tokio::test]
async fn unknown_paths_get_404() {
    let h = Harness::start().await;
    let r = h
        .openai("/openai/v1/nonsense")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    assert_refused(&h, r, 404, false).await;
    let r = h
        .anthropic("/anthropic/v1/nonsense")
        .json(&json!({}))
        .send()
        .await
        .unwrap();
    let body = assert_refused(&h, r, 404, true).await;
    assert_eq!(body["error"]["type"], "not_found_error");
    let r = h.openai("/somewhere/else").send().await.unwrap();
    assert_refused(&h, r, 404, false).await;
}

#[tokio::test]
async fn malformed_json_gets_400() {
    let h = Harness::start().await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .header("content-type", "application/json")
        .body("{\"model\": \"gpt-4o\", \"messages\": [")
        .send()
        .await
        .unwrap();
    assert_refused(&h, r, 400, false).await;
    let r = h
        .anthropic("/anthropic/v1/messages")
        .header("content-type", "application/json")
        .body("not json")
        .send()
        .await
        .unwrap();
    let body = assert_refused(&h, r, 400, true).await;
    assert_eq!(body["error"]["type"], "invalid_request_error");
}

#[tokio::test]
async fn bodies_over_the_limit_get_413() {
    let h = Harness::start_with(|c| c.limits.max_body_bytes = 1024).await;
    let big =
        json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "x".repeat(4096)}]});
    let r = h
        .openai("/openai/v1/chat/completions")
        .json(&big)
        .send()
        .await
        .unwrap();
    assert_refused(&h, r, 413, false).await;
    // Without a declared length (chunked), the limit still holds.
    let stream = futures_util::stream::iter(
        (0..8).map(|_| Ok::<_, std::io::Error>(bytes::Bytes::from(vec![b' '; 512]))),
    );
    let r = h
        .anthropic("/anthropic/v1/messages")
        .header("content-type", "application/json")
        .body(reqwest::Body::wrap_stream(stream))
        .send()
        .await
        .unwrap();
    let body = assert_refused(&h, r, 413, true).await;
    assert_eq!(body["error"]["type"], "request_too_large");
}

#[tokio::test]
async fn unpriced_models_are_refused_before_forwarding() {
    let h = Harness::start().await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .json(&json!({"model": "gpt-imaginary-7", "messages": []}))
        .send()
        .await
        .unwrap();
    let body = assert_refused(&h, r, 400, false).await;
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("gpt-imaginary-7"), "{message}");
    assert!(
        message.contains("pricing"),
        "says how to add a price: {message}"
    );
    assert_eq!(body["error"]["code"], "model_not_priced");
    let r = h
        .anthropic("/anthropic/v1/messages")
        .json(&json!({"model": "claude-imaginary", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_refused(&h, r, 400, true).await;
    assert!(h.events().await.is_empty());
}

#[tokio::test]
async fn a_user_pricing_file_makes_a_model_usable() {
    let dir = tempfile::tempdir().unwrap();
    let prices = dir.path().join("prices.json");
    std::fs::write(
        &prices,
        r#"{"my-model": {"litellm_provider": "openai", "mode": "chat",
            "input_cost_per_token": 1e-06, "output_cost_per_token": 2e-06}}"#,
    )
    .unwrap();
    let h = Harness::start_with(|c| c.pricing.files = vec![prices]).await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-output-tokens", "500")
        .json(&json!({"model": "my-model", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(h.one_event().await["cost_usd"], "0.002");
}

#[tokio::test]
async fn a_provider_without_a_key_gets_a_clear_503() {
    let mock = meshgate_mock::MockServer::start().await.unwrap();
    let url = mock.url();
    let h = Harness::start_on(mock, &url, |c| {
        c.providers.anthropic.api_key_env = "MESHGATE_TEST_UNSET_KEY".into()
    })
    .await;
    let r = h
        .anthropic("/anthropic/v1/messages")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    let body = assert_refused(&h, r, 503, true).await;
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("MESHGATE_TEST_UNSET_KEY"));
}
