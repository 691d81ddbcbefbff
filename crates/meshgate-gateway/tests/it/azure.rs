//! Azure OpenAI deployments: OpenAI calls served at `/openai/deployments/{deployment}/...`
//! with `api-version` and the key in `api-key`, Azure's extra stream chunk metered through,
//! the v1 API, the mock's own Azure checks, and fallback from a failing Azure deployment.
//!
//! The mock expects the harness's OpenAI key on its Azure paths too, so the deployments
//! read `OPENAI_API_KEY` and the harness environment stays as it is.

use crate::harness::{sse_data, usage_u64, Harness};
use meshgate_gateway::config::DeploymentConfig;
use meshgate_mock::{MockOptions, MockServer};
use serde_json::{json, Value};
use std::sync::{Arc, Mutex};

const CHAT: &str = "/openai/v1/chat/completions";
const KEY: &str = "sk-mock-openai";

fn azure(name: &str, url: &str, deployment: Option<&str>, weight: u32) -> DeploymentConfig {
    DeploymentConfig {
        name: name.into(),
        provider: "azure".into(),
        base_url: url.into(),
        api_key_env: "OPENAI_API_KEY".into(),
        weight,
        models: Some(vec!["gpt-4o*".into(), "text-embedding-*".into()]),
        api_version: None,
        azure_deployment: deployment.map(str::to_string),
    }
}

async fn azure_mock() -> MockServer {
    MockServer::start_with(MockOptions {
        azure_key: Some(KEY.into()),
        ..MockOptions::default()
    })
    .await
    .unwrap()
}

/// A gateway whose built-in providers are at a closed port. With `builtin_key` false the
/// built-in OpenAI has no key, so the Azure deployments replace it.
async fn gateway(mock: MockServer, extra: Vec<DeploymentConfig>, builtin_key: bool) -> Harness {
    Harness::start_on(mock, "http://127.0.0.1:1", move |c| {
        if !builtin_key {
            c.providers.openai.api_key_env = "MESHGATE_TEST_UNSET_KEY".into();
        }
        c.providers.deployments = extra;
        c.routing.retry_backoff_ms = 1;
        c.routing.max_backoff_ms = 20;
    })
    .await
}

fn served(response: &reqwest::Response) -> String {
    response.headers()["meshgate-served-model"]
        .to_str()
        .unwrap()
        .to_string()
}

/// Waits (bounded) for the events of `deployment`, at least `n` of them.
async fn events_of(h: &Harness, deployment: &str, n: usize) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let events: Vec<Value> = h
            .events()
            .await
            .into_iter()
            .filter(|e| e["deployment"] == deployment)
            .collect();
        if events.len() >= n || tokio::time::Instant::now() > deadline {
            return events;
        }
        tokio::time::sleep(std::time::Duration::from_millis(5)).await;
    }
}

#[tokio::test]
async fn an_openai_call_is_served_by_an_azure_deployment() {
    let mock = azure_mock().await;
    let url = mock.url();
    let h = gateway(
        mock,
        vec![azure("azure-east", &url, Some("prod-mini"), 1)],
        false,
    )
    .await;
    let response = h
        .openai(&format!("{CHAT}?trace=1"))
        .header("x-mock-input-tokens", "100")
        .header("x-mock-output-tokens", "9")
        .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        served(&response),
        "openai/gpt-4o-mini; deployment=azure-east"
    );
    let body: Value = response.json().await.unwrap();
    assert_eq!(
        body["choices"][0]["message"]["content"],
        "tok0 tok1 tok2 tok3 "
    );
    assert!(
        body["prompt_filter_results"].is_array(),
        "Azure's fields pass"
    );

    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(seen.path, "/openai/deployments/prod-mini/chat/completions");
    assert_eq!(
        seen.query.as_deref(),
        Some("trace=1&api-version=2024-10-21")
    );
    assert_eq!(seen.header("api-key"), Some(KEY));
    assert!(seen.header("authorization").is_none(), "{:?}", seen.headers);
    assert!(!seen.headers.iter().any(|(_, v)| v.contains(&h.key)));
    assert_eq!(seen.json().unwrap()["model"], "gpt-4o-mini");

    let event = h.one_event().await;
    assert_eq!(event["outcome"], "ok");
    // Priced and recorded as OpenAI's model; the deployment names Azure.
    assert_eq!(event["provider"], "openai");
    assert_eq!(event["deployment"], "azure-east");
    assert_eq!(event["model"], "gpt-4o-mini");
    assert_eq!(usage_u64(&event, "input_uncached"), Some(100));
    assert_eq!(usage_u64(&event, "output"), Some(9));
    assert_eq!(event["cost_usd"], "0.0000204");
}

#[tokio::test]
async fn azure_streams_are_metered_and_named_after_the_model() {
    let mock = azure_mock().await;
    let url = mock.url();
    let mut deployment = azure("azure-any", &url, None, 1);
    deployment.api_version = Some("2025-04-01-preview".into());
    let h = gateway(mock, vec![deployment], false).await;
    let response = h
        .openai(CHAT)
        .header("x-mock-input-tokens", "100")
        .header("x-mock-output-tokens", "9")
        .header("x-mock-chunks", "5")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert_eq!(
        served(&response),
        "openai/gpt-4o-mini; deployment=azure-any"
    );
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let chunks: Vec<Value> = data[..data.len() - 1]
        .iter()
        .map(|d| serde_json::from_str(d).unwrap())
        .collect();
    // Azure's opening chunk (no choices, no usage) reaches the client; the injected
    // usage-only chunk does not.
    assert!(chunks[0]["prompt_filter_results"].is_array(), "{text}");
    assert!(chunks.iter().all(|c| c["usage"].is_null()), "{text}");
    let content: String = chunks
        .iter()
        .filter_map(|c| c["choices"][0]["delta"]["content"].as_str())
        .collect();
    assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ");

    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(
        seen.path,
        "/openai/deployments/gpt-4o-mini/chat/completions"
    );
    assert_eq!(
        seen.query.as_deref(),
        Some("api-version=2025-04-01-preview")
    );
    assert_eq!(
        seen.json().unwrap()["stream_options"]["include_usage"],
        true
    );

    let event = h.one_event().await;
    assert_eq!(event["streamed"], true);
    assert_eq!(event["outcome"], "ok");
    assert_eq!(event["deployment"], "azure-any");
    assert_eq!(usage_u64(&event, "input_uncached"), Some(100));
    assert_eq!(usage_u64(&event, "output"), Some(9));
    assert_eq!(event["cost_usd"], "0.0000204");

    // Embeddings go to the deployment named like their model too.
    let response = h
        .openai("/openai/v1/embeddings")
        .json(&json!({"model": "text-embedding-3-small", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(
        seen.path,
        "/openai/deployments/text-embedding-3-small/embeddings"
    );
    assert_eq!(seen.header("api-key"), Some(KEY));
}

#[tokio::test]
async fn anthropic_clients_reach_azure_through_translation() {
    let mock = azure_mock().await;
    let url = mock.url();
    let h = gateway(mock, vec![azure("azure-east", &url, None, 1)], false).await;
    for stream in [false, true] {
        let response = h
            .anthropic("/anthropic/v1/messages")
            .header("x-mock-input-tokens", "100")
            .header("x-mock-output-tokens", "9")
            .json(
                &json!({"model": "gpt-4o-mini", "max_tokens": 50, "stream": stream,
                "messages": [{"role": "user", "content": "hi"}]}),
            )
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        let text = response.text().await.unwrap();
        assert!(text.contains("tok0 "), "{text}");
        if stream {
            assert!(text.contains("message_stop"), "{text}");
        }
        let seen = h.mock.state.last_request().unwrap();
        assert_eq!(
            seen.path,
            "/openai/deployments/gpt-4o-mini/chat/completions"
        );
    }
    let events = events_of(&h, "azure-east", 2).await;
    assert_eq!(events.len(), 2);
    for e in &events {
        assert_eq!(e["outcome"], "ok");
        assert_eq!(usage_u64(e, "input_uncached"), Some(100));
        assert_eq!(usage_u64(e, "output"), Some(9));
    }
}

#[tokio::test]
async fn the_v1_api_takes_the_model_in_the_body_and_no_api_version() {
    let mock = azure_mock().await;
    let url = mock.url();
    let mut deployment = azure("azure-v1", &format!("{url}/openai/"), None, 1);
    deployment.api_version = Some("v1".into());
    let h = gateway(mock, vec![deployment], false).await;
    let response = h
        .openai(CHAT)
        .json(&json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(seen.path, "/openai/v1/chat/completions");
    assert_eq!(seen.query, None);
    assert_eq!(seen.header("api-key"), Some(KEY));
    assert!(seen.header("authorization").is_none());
}

#[tokio::test]
async fn the_mock_checks_azure_keys_and_api_versions() {
    let mock = MockServer::start().await.unwrap();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let chat = json!({"model": "gpt-4o-mini", "messages": []});
    let path = format!("{}/openai/deployments/d1/chat/completions", mock.url());
    let send = |url: String, key: Option<&'static str>, bearer: bool| {
        let mut r = http.post(url).json(&chat);
        if let Some(k) = key {
            r = if bearer {
                r.bearer_auth(k)
            } else {
                r.header("api-key", k)
            };
        }
        r.send()
    };

    let r = send(path.clone(), Some("sk-mock-azure"), false)
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "MissingApiVersionParameter");

    let versioned = format!("{path}?api-version=2024-10-21");
    for (key, bearer) in [
        (Some("sk-mock-azure"), true),
        (Some("wrong"), false),
        (None, false),
    ] {
        let r = send(versioned.clone(), key, bearer).await.unwrap();
        assert_eq!(r.status(), 401, "{key:?} bearer={bearer}");
        let body: Value = r.json().await.unwrap();
        assert_eq!(body["error"]["code"], "401");
    }

    let r = send(versioned, Some("sk-mock-azure"), false).await.unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["prompt_filter_results"].is_array());
    assert!(body["choices"][0]["content_filter_results"].is_object());
    let seen = mock.state.last_request().unwrap();
    assert_eq!(seen.path, "/openai/deployments/d1/chat/completions");

    let v1 = format!("{}/openai/v1/chat/completions", mock.url());
    assert_eq!(
        send(v1, Some("sk-mock-azure"), false)
            .await
            .unwrap()
            .status(),
        200
    );
    let unknown = format!(
        "{}/openai/deployments/d1/messages?api-version=x",
        mock.url()
    );
    assert_eq!(
        send(unknown, Some("sk-mock-azure"), false)
            .await
            .unwrap()
            .status(),
        404
    );
}

/// An Azure endpoint that answers 503 to everything and remembers what it was sent.
async fn failing_azure() -> (String, Arc<Mutex<Vec<(String, Option<String>)>>>) {
    let seen = Arc::new(Mutex::new(Vec::new()));
    let log = seen.clone();
    let app = axum::Router::new().fallback(move |request: axum::extract::Request| {
        let log = log.clone();
        async move {
            let key = request
                .headers()
                .get("api-key")
                .map(|v| v.to_str().unwrap().to_string());
            log.lock().unwrap().push((request.uri().to_string(), key));
            (
                http::StatusCode::SERVICE_UNAVAILABLE,
                axum::Json(json!({"error": {"code": "503", "message": "down"}})),
            )
        }
    });
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let url = format!("http://{}", listener.local_addr().unwrap());
    tokio::spawn(async move { axum::serve(listener, app).await });
    (url, seen)
}

#[tokio::test]
async fn a_failing_azure_deployment_falls_back_to_another() {
    let (broken_url, broken_seen) = failing_azure().await;
    let mock = azure_mock().await;
    let url = mock.url();
    // The broken one is nearly always tried first; every call still succeeds.
    let h = gateway(
        mock,
        vec![
            azure("azure-broken", &broken_url, Some("prod-mini"), 1000),
            azure("azure-ok", &url, Some("prod-mini"), 1),
        ],
        false,
    )
    .await;
    for _ in 0..3 {
        let response = h
            .openai(CHAT)
            .json(&json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(served(&response), "openai/gpt-4o-mini; deployment=azure-ok");
    }
    let broken = broken_seen.lock().unwrap().clone();
    assert!(!broken.is_empty());
    for (uri, key) in &broken {
        assert_eq!(
            uri,
            "/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21"
        );
        assert_eq!(key.as_deref(), Some(KEY));
    }
    let ok = events_of(&h, "azure-ok", 3).await;
    assert_eq!(ok.len(), 3);
    assert!(ok.iter().all(|e| e["outcome"] == "ok"));
    let failed = events_of(&h, "azure-broken", broken.len()).await;
    assert_eq!(failed.len(), broken.len());
    assert!(failed
        .iter()
        .all(|e| e["outcome"] == "upstream_error" && e["status"] == 503));
}

#[tokio::test]
async fn azure_and_the_builtin_openai_share_openai_models() {
    let mock = azure_mock().await;
    let url = mock.url();
    // The built-in OpenAI keeps its key (at a closed port): both may serve, Azure answers.
    let h = gateway(mock, vec![azure("azure-east", &url, None, 1)], true).await;
    for _ in 0..4 {
        let response = h
            .openai(CHAT)
            .json(&json!({"model": "gpt-4o-mini", "messages": []}))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200);
        assert_eq!(
            served(&response),
            "openai/gpt-4o-mini; deployment=azure-east"
        );
    }
    assert_eq!(events_of(&h, "azure-east", 4).await.len(), 4);
    let builtin = events_of(&h, "openai", 0).await;
    assert!(builtin
        .iter()
        .all(|e| e["outcome"] == "upstream_unreachable"));
    // A model outside the Azure deployment's patterns goes to the built-in only.
    let response = h
        .openai(CHAT)
        .json(&json!({"model": "o3-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 502);
}
