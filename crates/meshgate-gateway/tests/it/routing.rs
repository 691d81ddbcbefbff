//! Routing across deployments and models: fallbacks on each failure kind, never after a
//! stream started, aliases and `route: "fallback"`, weighted balancing, circuit breakers,
//! and one usage event per attempt.

use crate::harness::{Harness, ADMIN};
use meshgate_gateway::config::{AliasTarget, DeploymentConfig};
use meshgate_mock::MockServer;
use serde_json::{json, Value};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

const CHAT: &str = "/openai/v1/chat/completions";

/// A provider that answers every call with one error status.
pub(crate) struct Failing {
    pub(crate) url: String,
    hits: Arc<AtomicU64>,
}

impl Failing {
    pub(crate) async fn start(status: u16, retry_after: Option<&'static str>) -> Failing {
        let hits = Arc::new(AtomicU64::new(0));
        let counter = hits.clone();
        let app = axum::Router::new().fallback(move || {
            let counter = counter.clone();
            async move {
                counter.fetch_add(1, Ordering::SeqCst);
                let mut response = axum::response::Response::new(axum::body::Body::from(
                    r#"{"error":{"message":"down","type":"server_error","param":null,"code":null}}"#,
                ));
                *response.status_mut() = http::StatusCode::from_u16(status).unwrap();
                response.headers_mut().insert(
                    http::header::CONTENT_TYPE,
                    http::HeaderValue::from_static("application/json"),
                );
                if let Some(r) = retry_after {
                    response
                        .headers_mut()
                        .insert("retry-after", http::HeaderValue::from_static(r));
                }
                response
            }
        });
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await });
        Failing { url, hits }
    }

    pub(crate) fn hits(&self) -> u64 {
        self.hits.load(Ordering::SeqCst)
    }
}

pub(crate) fn deployment(
    name: &str,
    url: &str,
    weight: u32,
    models: Option<&[&str]>,
) -> DeploymentConfig {
    DeploymentConfig {
        name: name.into(),
        provider: "openai".into(),
        base_url: format!("{url}/v1"),
        api_key_env: "OPENAI_API_KEY".into(),
        weight,
        models: models.map(|m| m.iter().map(|s| s.to_string()).collect()),
        api_version: None,
        azure_deployment: None,
    }
}

fn chat(model: &str) -> Value {
    json!({"model": model, "messages": [{"role": "user", "content": "hi"}]})
}

/// A gateway whose built-in OpenAI deployment is `primary`, plus `extra` deployments.
pub(crate) async fn gateway(
    mock: MockServer,
    primary: &str,
    extra: Vec<DeploymentConfig>,
    adjust: impl FnOnce(&mut meshgate_gateway::Config) + Send,
) -> Harness {
    let primary = primary.to_string();
    Harness::start_on(mock, "http://127.0.0.1:1", move |c| {
        c.providers.openai.base_url = format!("{primary}/v1");
        c.providers.deployments = extra;
        c.routing.retry_backoff_ms = 1;
        c.routing.max_backoff_ms = 20;
        adjust(c);
    })
    .await
}

#[tokio::test]
async fn each_failure_kind_moves_to_the_next_deployment() {
    for status in [500u16, 503, 529, 429] {
        let failing = Failing::start(status, None).await;
        let mock = MockServer::start().await.unwrap();
        let mock_url = mock.url();
        let h = gateway(
            mock,
            &failing.url,
            vec![deployment("backup", &mock_url, 1, None)],
            |_| {},
        )
        .await;
        for _ in 0..4 {
            let r = h
                .openai(CHAT)
                .json(&chat("gpt-4o-mini"))
                .send()
                .await
                .unwrap();
            assert_eq!(r.status(), 200, "status {status}");
            assert_eq!(
                r.headers()["meshgate-served-model"],
                "openai/gpt-4o-mini; deployment=backup"
            );
            let _ = r.bytes().await;
        }
        // Every attempt left its own event: the failures as upstream errors.
        let events = h.wait_events(4 + failing.hits() as usize).await;
        assert_eq!(events.len() as u64, 4 + failing.hits(), "status {status}");
        let failed: Vec<&Value> = events
            .iter()
            .filter(|e| e["deployment"] == "openai")
            .collect();
        assert_eq!(failed.len() as u64, failing.hits());
        assert!(failed
            .iter()
            .all(|e| e["outcome"] == "upstream_error" && e["status"] == status));
        assert_eq!(
            events
                .iter()
                .filter(|e| e["deployment"] == "backup")
                .count(),
            4
        );
        assert_eq!(h.mock.state.stats().requests, 4);
    }
}

#[tokio::test]
async fn connect_errors_and_timeouts_move_on_too() {
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    // Port 1 refuses connections.
    let h = gateway(
        mock,
        "http://127.0.0.1:1",
        vec![deployment("backup", &mock_url, 1, None)],
        |_| {},
    )
    .await;
    for _ in 0..3 {
        let r = h
            .openai(CHAT)
            .json(&chat("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let events = h.wait_events(3).await;
    assert!(events
        .iter()
        .filter(|e| e["deployment"] == "openai")
        .all(|e| e["outcome"] == "upstream_unreachable"));

    // A first byte that never comes: the silent deployment times out, the other answers.
    let silent = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let silent_url = format!("http://{}", silent.local_addr().unwrap());
    let app = axum::Router::new().fallback(std::future::pending::<&'static str>);
    tokio::spawn(async move { axum::serve(silent, app).await });
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let h = gateway(
        mock,
        &silent_url,
        vec![deployment("backup", &mock_url, 1, None)],
        |c| c.timeouts.first_byte_ms = 200,
    )
    .await;
    for _ in 0..3 {
        let r = h
            .openai(CHAT)
            .json(&chat("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let events = h.wait_events(3).await;
    assert_eq!(
        events
            .iter()
            .filter(|e| e["deployment"] == "backup")
            .count(),
        3
    );
    assert!(events
        .iter()
        .filter(|e| e["deployment"] == "openai")
        .all(|e| e["outcome"] == "upstream_timeout"));
}

#[tokio::test]
async fn aliases_and_request_fallbacks_try_models_in_order() {
    let failing = Failing::start(500, None).await;
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let h = gateway(
        mock,
        &failing.url,
        vec![deployment(
            "mini-only",
            &mock_url,
            1,
            Some(&["gpt-4o-mini"]),
        )],
        |c| {
            c.routing.aliases.insert(
                "fast".into(),
                AliasTarget::Many(vec!["openai/gpt-4o".into(), "gpt-4o-mini".into()]),
            );
        },
    )
    .await;
    // The alias: gpt-4o only has the failing deployment; gpt-4o-mini answers.
    let r = h.openai(CHAT).json(&chat("fast")).send().await.unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["meshgate-served-model"],
        "openai/gpt-4o-mini; deployment=mini-only"
    );
    let body: Value = r.json().await.unwrap();
    assert!(body["model"].as_str().unwrap().starts_with("gpt-4o-mini"));
    // The MESH router's request fields: `models` with `route: "fallback"`, removed upstream.
    let r = h
        .openai(CHAT)
        .json(
            &json!({"model": "gpt-4o", "models": ["gpt-4o-mini"], "route": "fallback",
                      "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let sent: Value = serde_json::from_slice(&h.mock.state.last_request().unwrap().body).unwrap();
    assert_eq!(sent["model"], "gpt-4o-mini");
    assert!(
        sent.get("models").is_none() && sent.get("route").is_none(),
        "{sent}"
    );
    let events = h.wait_events(2 + failing.hits() as usize).await;
    let served: Vec<&Value> = events
        .iter()
        .filter(|e| e["deployment"] == "mini-only")
        .collect();
    assert_eq!(served.len(), 2);
    assert!(served.iter().all(|e| e["model"] == "gpt-4o-mini"));
    let requested: Vec<&str> = served
        .iter()
        .map(|e| e["requested_model"].as_str().unwrap())
        .collect();
    assert!(
        requested.contains(&"fast") && requested.contains(&"gpt-4o"),
        "{requested:?}"
    );
    // A model of the other API on an endpoint that is not translated is refused before
    // anything is sent.
    let before = failing.hits();
    let r = h
        .http
        .post(h.url("/anthropic/v1/messages/count_tokens"))
        .header("x-api-key", &h.key)
        .header("anthropic-version", "2023-06-01")
        .json(&json!({"model": "openai/gpt-4o", "max_tokens": 5, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    assert_eq!(failing.hits(), before);
}

#[tokio::test]
async fn a_started_stream_never_switches() {
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let other = MockServer::start().await.unwrap();
    let other_url = other.url();
    let h = gateway(
        mock,
        &mock_url,
        vec![deployment("other", &other_url, 1, Some(&["never-used"]))],
        |_| {},
    )
    .await;
    let r = h
        .openai(CHAT)
        .header("x-mock-chunks", "10")
        .header("x-mock-cut-after", "3")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "models": ["gpt-4o"], "route": "fallback",
                      "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let text = r.text().await.unwrap();
    assert!(
        text.contains("error"),
        "the cut reaches the client as an error: {text}"
    );
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "incomplete");
    assert_eq!(h.mock.state.stats().requests, 1, "no second attempt");
    assert_eq!(other.state.stats().requests, 0);
}

#[tokio::test]
async fn when_every_attempt_fails_the_client_gets_the_last_answer() {
    let failing = Failing::start(503, None).await;
    let mock = MockServer::start().await.unwrap();
    let h = gateway(mock, &failing.url, vec![], |c| c.routing.max_attempts = 3).await;
    let r = h
        .openai(CHAT)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["message"], "down");
    // One deployment, one model: tried once more in place (`retries_per_deployment` 1).
    assert_eq!(failing.hits(), 2);
    let events = h.wait_events(2).await;
    assert_eq!(events.len(), 2);
    assert!(events.iter().all(|e| e["outcome"] == "upstream_error"));
    // A 429 is not asked again at once: the client's retries honour its retry-after.
    let limited = Failing::start(429, Some("1")).await;
    let mock = MockServer::start().await.unwrap();
    let h = gateway(mock, &limited.url, vec![], |_| {}).await;
    let r = h
        .openai(CHAT)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(limited.hits(), 1);
}

#[tokio::test]
async fn the_only_deployment_is_retried_in_place_and_serves() {
    // Every other call fails: the second call's first attempt fails, its retry answers.
    let flaky = MockServer::start_with(meshgate_mock::MockOptions {
        fail_every: 2,
        ..meshgate_mock::MockOptions::default()
    })
    .await
    .unwrap();
    let flaky_url = flaky.url();
    let h = gateway(flaky, &flaky_url, vec![], |_| {}).await;
    for _ in 0..2 {
        assert_eq!(ok_chat(&h).await, "openai/gpt-4o-mini; deployment=openai");
    }
    assert_eq!(h.mock.state.stats().requests, 3);
    let events = h.wait_events(3).await;
    let outcomes: Vec<&str> = events
        .iter()
        .map(|e| e["outcome"].as_str().unwrap())
        .collect();
    assert_eq!(
        outcomes.iter().filter(|o| **o == "ok").count(),
        2,
        "{outcomes:?}"
    );
    assert_eq!(
        outcomes.iter().filter(|o| **o == "upstream_error").count(),
        1
    );
    // Turned off, the failure reaches the client.
    let flaky = MockServer::start_with(meshgate_mock::MockOptions {
        fail_every: 1,
        ..meshgate_mock::MockOptions::default()
    })
    .await
    .unwrap();
    let flaky_url = flaky.url();
    let h = gateway(flaky, &flaky_url, vec![], |c| {
        c.routing.retries_per_deployment = 0
    })
    .await;
    let r = h
        .openai(CHAT)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    assert_eq!(h.mock.state.stats().requests, 1);
}

#[tokio::test]
async fn a_retry_after_date_is_honoured_before_the_retry() {
    let at = chrono::Utc::now() + chrono::Duration::seconds(2);
    let date: &'static str = Box::leak(
        at.format("%a, %d %b %Y %H:%M:%S GMT")
            .to_string()
            .into_boxed_str(),
    );
    let failing = Failing::start(503, Some(date)).await;
    let mock = MockServer::start().await.unwrap();
    let h = gateway(mock, &failing.url, vec![], |c| {
        c.routing.max_backoff_ms = 5000
    })
    .await;
    let started = Instant::now();
    let r = h
        .openai(CHAT)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    assert_eq!(failing.hits(), 2);
    // The date has whole seconds: at least one of the two is still ahead at the answer.
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn retry_after_is_honoured_before_the_next_attempt() {
    let failing = Failing::start(429, Some("1")).await;
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let h = gateway(
        mock,
        &failing.url,
        vec![deployment(
            "mini-only",
            &mock_url,
            1,
            Some(&["gpt-4o-mini"]),
        )],
        |c| c.routing.max_backoff_ms = 5000,
    )
    .await;
    // gpt-4o: only the failing deployment; its fallback gpt-4o-mini waits for retry-after.
    let started = Instant::now();
    let r = h
        .openai(CHAT)
        .json(
            &json!({"model": "gpt-4o", "models": ["gpt-4o-mini"], "route": "fallback",
                      "messages": [{"role": "user", "content": "hi"}]}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    // A 429 is not retried in place; gpt-4o-mini may also be tried on the failing
    // deployment first (weighted order).
    assert!((1..=2).contains(&failing.hits()), "{}", failing.hits());
    assert!(
        started.elapsed() >= Duration::from_secs(1),
        "{:?}",
        started.elapsed()
    );
}

#[tokio::test]
async fn weights_balance_deployments() {
    let a = MockServer::start().await.unwrap();
    let a_url = a.url();
    let b = MockServer::start().await.unwrap();
    let b_url = b.url();
    let h = gateway(
        a,
        &a_url,
        vec![deployment("heavy", &b_url, 3, None)],
        |_| {},
    )
    .await;
    for _ in 0..200 {
        let r = h
            .openai(CHAT)
            .json(&chat("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    let light = h.mock.state.stats().requests;
    let heavy = b.state.stats().requests;
    assert_eq!(light + heavy, 200);
    // Expected 50 / 150; five standard deviations (about 6 each) of slack.
    assert!((20..=80).contains(&light), "light {light}, heavy {heavy}");
}

#[tokio::test]
async fn a_breaker_opens_skips_probes_and_closes() {
    let failing = Failing::start(500, None).await;
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let h = gateway(
        mock,
        &failing.url,
        vec![deployment("backup", &mock_url, 1, None)],
        |c| {
            c.routing.breaker_failures = 2;
            c.routing.breaker_cooldown_ms = 3_600_000;
        },
    )
    .await;
    for _ in 0..30 {
        let r = h
            .openai(CHAT)
            .json(&chat("gpt-4o-mini"))
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }
    // Two failures opened the breaker; afterwards the failing deployment got no calls.
    assert_eq!(failing.hits(), 2);
    let health = h.admin_get("/admin/v1/providers/health").await;
    let state_of = |name: &str| {
        health["data"]
            .as_array()
            .unwrap()
            .iter()
            .find(|d| d["name"] == name)
            .unwrap()
            .clone()
    };
    assert_eq!(state_of("openai")["state"], "open");
    assert_eq!(state_of("openai")["failures"], 2);
    assert_eq!(state_of("backup")["state"], "closed");
    assert_eq!(state_of("backup")["requests"], 30);
    let unauthorized = h
        .http
        .get(h.url("/admin/v1/providers/health"))
        .send()
        .await
        .unwrap();
    assert_eq!(unauthorized.status(), 401);
    let _ = ADMIN;
}

/// A gateway whose only deployment (the mock) opens its breaker at one failure, after a
/// call that failed with 500.
async fn failed_once(cooldown_ms: u64) -> Harness {
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let h = gateway(mock, &mock_url, vec![], |c| {
        c.routing.breaker_failures = 1;
        c.routing.breaker_cooldown_ms = cooldown_ms;
    })
    .await;
    let r = h
        .openai(CHAT)
        .header("x-mock-error", "500")
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 500);
    let _ = r.bytes().await;
    h
}

#[tokio::test]
async fn a_half_open_breaker_lets_one_probe_through_and_closes_on_success() {
    // The primary fails twice (opening its breaker at once: cooldown zero) and is probed on
    // the next call; the probe succeeds because the upstream is now the mock.
    let h = failed_once(0).await;
    let health = h.admin_get("/admin/v1/providers/health").await;
    assert_eq!(health["data"][0]["state"], "half_open", "{health}");
    let r = h
        .openai(CHAT)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let health = h.admin_get("/admin/v1/providers/health").await;
    assert_eq!(health["data"][0]["state"], "closed", "{health}");
}

#[tokio::test]
async fn config_fallback_chains_follow_aliases_over_http() {
    let failing = Failing::start(500, None).await;
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let h = gateway(
        mock,
        &failing.url,
        vec![deployment(
            "mini-only",
            &mock_url,
            1,
            Some(&["gpt-4o-mini"]),
        )],
        |c| {
            c.routing
                .aliases
                .insert("smart".into(), AliasTarget::One("gpt-4o".into()));
            c.routing
                .fallbacks
                .insert("gpt-4o".into(), vec!["gpt-4o-mini".into()]);
        },
    )
    .await;
    // Plain name and alias: gpt-4o has only the failing deployment; its chain answers.
    for requested in ["gpt-4o", "smart"] {
        assert_eq!(
            {
                let r = h.openai(CHAT).json(&chat(requested)).send().await.unwrap();
                assert_eq!(r.status(), 200, "{requested}");
                r.headers()["meshgate-served-model"].clone()
            },
            "openai/gpt-4o-mini; deployment=mini-only"
        );
        let sent = h.mock.state.last_request().unwrap().json().unwrap();
        assert_eq!(sent["model"], "gpt-4o-mini");
    }
    let events = h.wait_events(2 + failing.hits() as usize).await;
    let mut requested: Vec<&str> = events
        .iter()
        .filter(|e| e["deployment"] == "mini-only")
        .map(|e| e["requested_model"].as_str().unwrap())
        .collect();
    requested.sort();
    assert_eq!(requested, ["gpt-4o", "smart"]);
    assert!(events
        .iter()
        .filter(|e| e["deployment"] == "openai")
        .all(|e| e["status"] == 500));
}

#[tokio::test]
async fn a_fallback_to_the_other_api_is_translated() {
    let failing = Failing::start(529, None).await;
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let h = gateway(mock, &failing.url, vec![], move |c| {
        c.providers.anthropic.base_url = mock_url;
        c.routing.aliases.insert(
            "resilient".into(),
            AliasTarget::Many(vec![
                "openai/gpt-4o".into(),
                "anthropic/claude-haiku-4-5".into(),
            ]),
        );
    })
    .await;
    let r = h
        .openai(CHAT)
        .header("x-mock-input-tokens", "21")
        .json(&chat("resilient"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["meshgate-served-model"],
        "anthropic/claude-haiku-4-5; deployment=anthropic"
    );
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["object"], "chat.completion");
    assert_eq!(body["model"], "resilient", "the name the client asked for");
    assert_eq!(body["usage"]["prompt_tokens"], 21);
    let sent = h.mock.state.last_request().unwrap();
    assert_eq!(sent.path, "/v1/messages");
    let events = h.wait_events(2).await;
    let served = events
        .iter()
        .find(|e| e["provider"] == "anthropic")
        .unwrap();
    assert_eq!(served["model"], "claude-haiku-4-5");
    assert_eq!(served["requested_model"], "resilient");
    assert_eq!(served["usage"]["input_uncached"], 21);
    let failed = events.iter().find(|e| e["provider"] == "openai").unwrap();
    assert_eq!(failed["status"], 529);
}

/// One deployment's row in `/admin/v1/providers/health`.
async fn health_of(h: &Harness, name: &str) -> Value {
    let health = h.admin_get("/admin/v1/providers/health").await;
    health["data"]
        .as_array()
        .unwrap()
        .iter()
        .find(|d| d["name"] == name)
        .cloned()
        .unwrap_or_else(|| panic!("no {name} in {health}"))
}

async fn ok_chat(h: &Harness) -> String {
    let r = h
        .openai(CHAT)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let served = r.headers()["meshgate-served-model"]
        .to_str()
        .unwrap()
        .to_string();
    let _ = r.bytes().await;
    served
}

#[tokio::test]
async fn a_slowed_deployment_is_tried_after_the_fast_one_but_still_serves() {
    let slow = MockServer::start_with(meshgate_mock::MockOptions {
        first_byte_delay: Duration::from_millis(200),
        ..meshgate_mock::MockOptions::default()
    })
    .await
    .unwrap();
    let slow_url = slow.url();
    let fast = MockServer::start().await.unwrap();
    let fast_url = fast.url();
    let h = gateway(
        slow,
        &slow_url,
        vec![deployment("fast", &fast_url, 1, None)],
        |c| c.routing.breaker_cooldown_ms = 3_600_000,
    )
    .await;
    // Equal weights: both are sampled until each has a few latency samples.
    for _ in 0..20 {
        ok_chat(&h).await;
    }
    let warmed = h.mock.state.stats().requests;
    assert!(warmed >= 3, "the slow one was sampled {warmed} times");
    for _ in 0..20 {
        ok_chat(&h).await;
    }
    assert_eq!(
        h.mock.state.stats().requests,
        warmed,
        "once judged slow, the slowed deployment gets no call while the fast one answers"
    );
    let row = health_of(&h, "openai").await;
    assert_eq!(row["slow"], true, "{row}");
    assert_eq!(row["state"], "closed", "{row}");
    assert!(row["latency_ewma_ms"].as_f64().unwrap() >= 200.0, "{row}");
    assert_eq!(health_of(&h, "fast").await["slow"], false);
    // Deprioritised, not excluded: with the fast one gone, the slow one serves.
    drop(fast);
    assert_eq!(ok_chat(&h).await, "openai/gpt-4o-mini; deployment=openai");
}

#[tokio::test]
async fn the_error_rate_opens_a_breaker_on_intermittent_failures() {
    // Every other call fails: never two failures in a row.
    let flaky = MockServer::start_with(meshgate_mock::MockOptions {
        fail_every: 2,
        ..meshgate_mock::MockOptions::default()
    })
    .await
    .unwrap();
    let flaky_url = flaky.url();
    let backup = MockServer::start().await.unwrap();
    let backup_url = backup.url();
    let h = gateway(
        flaky,
        &flaky_url,
        vec![deployment("backup", &backup_url, 1, None)],
        |c| {
            c.routing.breaker_failures = 3;
            c.routing.breaker_error_rate = 0.5;
            c.routing.breaker_window = 10;
            c.routing.breaker_min_requests = 6;
            c.routing.breaker_cooldown_ms = 3_600_000;
        },
    )
    .await;
    for _ in 0..60 {
        ok_chat(&h).await;
    }
    // Six outcomes, three failed (alternating): the breaker opened at the sixth and the
    // flaky deployment got no call afterwards.
    assert_eq!(h.mock.state.stats().requests, 6);
    let row = health_of(&h, "openai").await;
    assert_eq!(row["state"], "open", "{row}");
    assert_eq!(row["failures"], 3, "{row}");
    assert_eq!(row["consecutive_failures"], 1, "{row}");
    // The flaky one served three calls, the backup the rest.
    assert_eq!(backup.state.stats().requests, 57);
}

#[tokio::test]
async fn when_every_breaker_is_open_the_answer_is_no_healthy_deployment() {
    let h = failed_once(3_600_000).await;
    assert_eq!(health_of(&h, "openai").await["state"], "open");
    let r = h
        .openai(CHAT)
        .json(&chat("gpt-4o-mini"))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 503);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "no_healthy_deployment", "{body}");
    assert_eq!(h.mock.state.stats().requests, 1, "nothing was sent");
}
