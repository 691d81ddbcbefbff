//! The two lanes end to end: on the provider's own API the request body reaches it byte for
//! byte (only a renamed `model` and meshgate's routing fields change), and on the
//! translation lane a stream is translated event by event as it arrives.

use crate::harness::Harness;
use crate::routing::{deployment, gateway, Failing};
use futures_util::StreamExt;
use meshgate_gateway::config::{AliasTarget, DeploymentConfig};
use meshgate_mock::MockServer;
use std::time::{Duration, Instant};

const CHAT: &str = "/openai/v1/chat/completions";
const MESSAGES: &str = "/anthropic/v1/messages";

/// Keys out of alphabetical order, a schema whose `properties` are too, numbers spelled as
/// no serialiser would write them, and spaces after separators.
const CHAT_BODY: &str = r#"{"messages": [{"role":"user","content":"hi"}], "temperature":1.50,"model":"MODEL","response_format":{"type":"json_schema","json_schema":{"name":"s","schema":{"type":"object","properties":{"zeta":{"type":"number","minimum":1e-7},"alpha":{"type":"string"}},"required":["zeta","alpha"]}}},"top_p":0.10ROUTING}"#;
const MESSAGES_BODY: &str = r#"{"system":"be brief","max_tokens":20,"model":"MODEL","messages":[{"role":"user","content":[{"type":"text","text":"hi"}]}],"tools":[{"name":"f","input_schema":{"type":"object","properties":{"y":{"type":"integer"},"b":{"type":"string"}}}}],"temperature":0.50ROUTING}"#;

fn body(template: &str, model: &str, routing: &str) -> String {
    template.replace("MODEL", model).replace("ROUTING", routing)
}

/// Sends `sent` as it is and returns the bytes the provider received.
async fn received(h: &Harness, path: &str, sent: String) -> String {
    let request = if path == CHAT {
        h.openai(path)
    } else {
        h.anthropic(path)
    };
    let r = request
        .header("content-type", "application/json")
        .body(sent)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200, "{}", r.text().await.unwrap());
    let _ = r.bytes().await;
    String::from_utf8(h.mock.state.last_request().unwrap().body.to_vec()).unwrap()
}

#[tokio::test]
async fn the_providers_own_api_gets_the_clients_bytes() {
    let h = Harness::start_with(|c| {
        c.routing
            .aliases
            .insert("mini".into(), AliasTarget::One("gpt-4o-mini".into()));
    })
    .await;
    // Nothing to change: the very bytes.
    let sent = body(CHAT_BODY, "gpt-4o-mini", "");
    assert_eq!(received(&h, CHAT, sent.clone()).await, sent);
    let sent = body(MESSAGES_BODY, "claude-haiku-4-5", "");
    assert_eq!(received(&h, MESSAGES, sent.clone()).await, sent);
    // A single-model alias with routing fields: only `model` changes and the routing
    // fields go; every other byte stays, in order.
    let routing = r#","models":["gpt-4o"],"route":"fallback""#;
    assert_eq!(
        received(&h, CHAT, body(CHAT_BODY, "mini", routing)).await,
        body(CHAT_BODY, "gpt-4o-mini", "")
    );
    // A `provider/` prefix is removed the same way.
    assert_eq!(
        received(
            &h,
            MESSAGES,
            body(MESSAGES_BODY, "anthropic/claude-haiku-4-5", "")
        )
        .await,
        body(MESSAGES_BODY, "claude-haiku-4-5", "")
    );
}

#[tokio::test]
async fn anthropic_clients_fall_back_with_models_and_route() {
    let failing = Failing::start(529, None).await;
    let mock = MockServer::start().await.unwrap();
    let mock_url = mock.url();
    let failing_url = failing.url.clone();
    let h = gateway(mock, "http://127.0.0.1:1", vec![], move |c| {
        c.providers.anthropic.base_url = failing_url;
        c.providers.deployments = vec![DeploymentConfig {
            provider: "anthropic".into(),
            base_url: mock_url,
            api_key_env: "ANTHROPIC_API_KEY".into(),
            ..deployment("haiku-only", "", 1, Some(&["claude-haiku-4-5"]))
        }];
    })
    .await;
    let routing = r#","models":["claude-haiku-4-5"],"route":"fallback""#;
    let r = h
        .anthropic(MESSAGES)
        .header("content-type", "application/json")
        .body(body(MESSAGES_BODY, "claude-sonnet-4-5", routing))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(
        r.headers()["meshgate-served-model"],
        "anthropic/claude-haiku-4-5; deployment=haiku-only"
    );
    let answer: serde_json::Value = r.json().await.unwrap();
    assert_eq!(answer["type"], "message");
    let sent = h.mock.state.last_request().unwrap();
    assert_eq!(
        String::from_utf8(sent.body.to_vec()).unwrap(),
        body(MESSAGES_BODY, "claude-haiku-4-5", "")
    );
    assert!(failing.hits() >= 1);
    let events = h.wait_events(1 + failing.hits() as usize).await;
    let served = events
        .iter()
        .find(|e| e["deployment"] == "haiku-only")
        .unwrap();
    assert_eq!(served["requested_model"], "claude-sonnet-4-5");
    assert!(events
        .iter()
        .filter(|e| e["deployment"] == "anthropic")
        .all(|e| e["status"] == 529));
}

/// Reads a translated stream; returns the text before the first content event, whether
/// the provider's stream had ended by then, and the whole text.
async fn first_content_then_rest(
    h: &Harness,
    response: reqwest::Response,
    content: &str,
) -> (bool, Duration, String) {
    assert_eq!(response.status(), 200);
    let mut stream = response.bytes_stream();
    let mut text = String::new();
    while !text.contains(content) {
        let chunk = stream
            .next()
            .await
            .expect("the stream ended before any content")
            .unwrap();
        text.push_str(&String::from_utf8_lossy(&chunk));
    }
    let upstream_done = h.mock.state.stats().streams_completed > 0;
    let first_at = Instant::now();
    while let Some(chunk) = stream.next().await {
        text.push_str(&String::from_utf8_lossy(&chunk.unwrap()));
    }
    (upstream_done, first_at.elapsed(), text)
}

#[tokio::test]
async fn translated_streams_reach_the_client_event_by_event() {
    const DELAY_MS: u64 = 250;
    const CHUNKS: u64 = 5;
    let h = Harness::start().await;
    let slow = |r: reqwest::RequestBuilder| {
        r.header("x-mock-chunks", CHUNKS.to_string())
            .header("x-mock-chunk-delay-ms", DELAY_MS.to_string())
    };
    // An OpenAI client of a Claude model, then an Anthropic client of a GPT model.
    let calls = [
        (
            slow(h.openai(CHAT)).json(&serde_json::json!({
                "model": "claude-haiku-4-5", "stream": true,
                "messages": [{"role": "user", "content": "hi"}]})),
            r#""content":"tok0 ""#,
            "/v1/messages",
            "[DONE]",
        ),
        (
            slow(h.anthropic(MESSAGES)).json(&serde_json::json!({
                "model": "gpt-4o-mini", "max_tokens": 50, "stream": true,
                "messages": [{"role": "user", "content": "hi"}]})),
            r#""text":"tok0 ""#,
            "/v1/chat/completions",
            "message_stop",
        ),
    ];
    for (request, first_content, upstream_path, end) in calls {
        h.mock.state.clear();
        let response = request.send().await.unwrap();
        let (upstream_done, rest, text) =
            first_content_then_rest(&h, response, first_content).await;
        assert_eq!(h.mock.state.last_request().unwrap().path, upstream_path);
        assert!(
            !upstream_done,
            "the first content event waited for the provider's whole stream: {text}"
        );
        // The provider still had CHUNKS - 1 delayed deltas to send after the first.
        assert!(
            rest >= Duration::from_millis(DELAY_MS * (CHUNKS - 1)),
            "{rest:?}"
        );
        assert!(text.contains(&format!("tok{} ", CHUNKS - 1)), "{text}");
        assert!(text.contains(end), "{text}");
    }
}
