//! Streams and failures: chunks arrive as sent, a cut stream ends in a protocol-correct
//! error and still leaves a usage event, a client that leaves cancels the upstream call,
//! timeouts say which one fired, and shutdown drains in-flight calls.

use crate::harness::{sse_data, usage_u64, Harness};
use futures_util::StreamExt;
use serde_json::{json, Value};
use std::time::Duration;

#[tokio::test]
async fn chunks_reach_the_client_as_they_arrive() {
    let h = Harness::start().await;
    let mut body = h
        .anthropic("/anthropic/v1/messages")
        .header("x-mock-chunks", "3")
        .header("x-mock-chunk-delay-ms", "300")
        .json(
            &json!({"model": "claude-haiku-4-5", "max_tokens": 10, "stream": true, "messages": []}),
        )
        .send()
        .await
        .unwrap()
        .bytes_stream();
    // message_start arrives before the first delayed delta: nothing is buffered.
    let first = tokio::time::timeout(Duration::from_millis(250), body.next())
        .await
        .expect("the first event must not wait for later ones")
        .unwrap()
        .unwrap();
    assert!(String::from_utf8_lossy(&first).contains("message_start"));
    while body.next().await.is_some() {}
}

#[tokio::test]
async fn a_cut_chat_stream_ends_with_an_error_event_and_is_recorded_incomplete() {
    let h = Harness::start().await;
    let text = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-cut-after", "2")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let data = sse_data(&text);
    assert!(
        !data.contains(&"[DONE]".to_string()),
        "a cut stream must not end cleanly"
    );
    let last: Value = serde_json::from_str(data.last().unwrap()).unwrap();
    assert!(last["error"]["message"].is_string(), "{text}");
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "incomplete");
    assert!(
        event["cost_usd"].is_null(),
        "nothing reported, nothing estimated"
    );
}

#[tokio::test]
async fn a_cut_anthropic_stream_keeps_the_reported_input() {
    let h = Harness::start().await;
    let text = h
        .anthropic("/anthropic/v1/messages")
        .header("x-mock-cut-after", "1")
        .header("x-mock-input-tokens", "1000")
        .json(&json!({"model": "claude-sonnet-4-5", "max_tokens": 10, "stream": true, "messages": []}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: error"), "{text}");
    assert!(!text.contains("message_stop"));
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "incomplete");
    assert_eq!(usage_u64(&event, "input_uncached"), Some(1000));
    assert!(event["error"].is_string());
}

#[tokio::test]
async fn an_error_event_inside_a_stream_is_relayed_and_recorded() {
    let h = Harness::start().await;
    let text = h
        .openai("/openai/v1/responses")
        .header("x-mock-stream-error", "1")
        .json(&json!({"model": "gpt-5", "input": "x", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert_eq!(
        text.matches("event: error").count(),
        1,
        "the provider's error, no second one: {text}"
    );
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "incomplete");
}

#[tokio::test]
async fn a_client_that_leaves_cancels_the_upstream_call() {
    let h = Harness::start().await;
    let response = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-chunks", "50")
        .header("x-mock-chunk-delay-ms", "100")
        .header("x-mock-input-tokens", "20")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    drop(body);
    let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
    while h.mock.state.stats().streams_cancelled == 0 {
        assert!(
            tokio::time::Instant::now() < deadline,
            "the upstream stream was never cancelled"
        );
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "client_cancelled");
}

#[tokio::test]
async fn first_byte_timeout_is_a_clear_504() {
    let h = Harness::start_with(|c| c.timeouts.first_byte_ms = 200).await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-first-byte-delay-ms", "5000")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 504);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_first_byte_timeout");
    assert!(body["error"]["message"]
        .as_str()
        .unwrap()
        .contains("first_byte_ms"));
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "upstream_timeout");
}

#[tokio::test]
async fn between_chunk_timeout_ends_the_stream_with_an_error() {
    let h = Harness::start_with(|c| c.timeouts.between_chunks_ms = 300).await;
    let text = h
        .anthropic("/anthropic/v1/messages")
        .header("x-mock-chunks", "3")
        .header("x-mock-chunk-delay-ms", "5000")
        .json(
            &json!({"model": "claude-haiku-4-5", "max_tokens": 10, "stream": true, "messages": []}),
        )
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("between_chunks_ms"), "{text}");
    let last = sse_data(&text).pop().unwrap();
    let error: Value = serde_json::from_str(&last).unwrap();
    assert_eq!(error["type"], "error");
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "upstream_timeout");
}

#[tokio::test]
async fn an_unreachable_provider_is_a_502() {
    // A port that was just free: nothing listens there.
    let closed = std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap();
    let mock = meshgate_mock::MockServer::start().await.unwrap();
    let h = Harness::start_on(mock, &format!("http://{closed}"), |_| {}).await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 502);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["error"]["code"], "upstream_unreachable");
    // The only deployment was tried once more (`routing.retries_per_deployment`).
    let events = h.wait_events(2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    for event in events {
        assert_eq!(event["outcome"], "upstream_unreachable");
        assert!(event["status"].is_null());
    }
}

#[tokio::test]
async fn shutdown_lets_in_flight_streams_finish_and_writes_every_event() {
    let mut h = Harness::start().await;
    let response = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-chunks", "5")
        .header("x-mock-chunk-delay-ms", "100")
        .header("x-mock-input-tokens", "10")
        .header("x-mock-output-tokens", "5")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    let mut body = response.bytes_stream();
    body.next().await.unwrap().unwrap();
    let stop = h.stop_signal();
    stop.send(()).unwrap();
    let mut rest = Vec::new();
    while let Some(chunk) = body.next().await {
        rest.extend_from_slice(&chunk.unwrap());
    }
    assert!(
        String::from_utf8_lossy(&rest).contains("[DONE]"),
        "the stream finished"
    );
    let task = h.take_task();
    task.await.unwrap().unwrap();
    // The gateway is gone; read its ledger directly.
    let store = meshgate_store::SqliteStore::open(&h.dir.path().join("meshgate.db"))
        .await
        .unwrap();
    let page = meshgate_store::Store::list_usage(&store, &Default::default(), 10)
        .await
        .unwrap();
    assert_eq!(page.events.len(), 1);
    assert_eq!(page.events[0].outcome, meshgate_store::Outcome::Ok);
    assert_eq!(page.events[0].usage.output, Some(5));
}

#[tokio::test]
async fn connect_timeout_is_a_clear_504() {
    // A listener that never accepts, its tiny backlog filled: further SYNs go unanswered.
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut fillers = Vec::new();
    for _ in 0..8 {
        let attempt = tokio::time::timeout(
            Duration::from_millis(200),
            tokio::net::TcpStream::connect(addr),
        )
        .await;
        match attempt {
            Ok(Ok(stream)) => fillers.push(stream),
            _ => break,
        }
    }
    let mock = meshgate_mock::MockServer::start().await.unwrap();
    let h = Harness::start_on(mock, &format!("http://{addr}"), |c| {
        c.timeouts.connect_ms = 300
    })
    .await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    let status = r.status();
    let body: Value = r.json().await.unwrap();
    assert_eq!(status, 504, "{body}");
    assert_eq!(body["error"]["code"], "upstream_connect_timeout", "{body}");
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "upstream_timeout");
    drop(listener);
}
