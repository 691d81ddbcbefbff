//! Stream accounting (completed, cancelled), the request log and the HTTP introspection endpoints.

use std::time::Duration;

use meshgate_mock::{MockOptions, MockServer, MockStats};
use serde_json::{json, Value};

use crate::common::{client, openai, read_all};

/// Waits (bounded) until `cond` holds on the mock's stats, yielding to the runtime meanwhile.
async fn wait_for(m: &MockServer, cond: impl Fn(&MockStats) -> bool) -> MockStats {
    let waited = tokio::time::timeout(Duration::from_secs(10), async {
        loop {
            let s = m.state.stats();
            if cond(&s) {
                return s;
            }
            tokio::task::yield_now().await;
        }
    })
    .await;
    match waited {
        Ok(s) => s,
        Err(_) => panic!("condition not reached; stats {:?}", m.state.stats()),
    }
}

#[tokio::test]
async fn completed_streams_are_counted() {
    let m = MockServer::start().await.unwrap();
    for stream in [true, true, false] {
        let r = openai(&m, "/v1/chat/completions")
            .json(&json!({"model": "gpt-4o", "messages": [], "stream": stream}))
            .send()
            .await
            .unwrap();
        let (_, clean) = read_all(r).await;
        assert!(clean);
    }
    let s = wait_for(&m, |s| s.streams_completed == 2).await;
    assert_eq!(s.requests, 3);
    assert_eq!(s.streams_started, 2);
    assert_eq!(s.streams_cancelled, 0);
}

#[tokio::test]
async fn client_gone_mid_stream_counts_as_cancelled() {
    let m = MockServer::start().await.unwrap();
    let mut r = openai(&m, "/v1/chat/completions")
        .header("x-mock-chunk-delay-ms", "60000")
        .json(&json!({"model": "gpt-4o", "messages": [], "stream": true}))
        .send()
        .await
        .unwrap();
    // The role chunk comes at once; the first delta would take a minute.
    let first = r.chunk().await.unwrap().unwrap();
    assert!(first.starts_with(b"data: "));
    assert_eq!(m.state.stats().streams_started, 1);
    drop(r);
    let s = wait_for(&m, |s| s.streams_cancelled == 1).await;
    assert_eq!(s.streams_completed, 0);
    assert_eq!(s.streams_started, 1);
}

#[tokio::test]
async fn introspection_over_http() {
    let m = MockServer::start().await.unwrap();
    let body = json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]});
    openai(&m, "/v1/chat/completions?x=1")
        .header("X-Custom", "Yes")
        .json(&body)
        .send()
        .await
        .unwrap();
    let c = client();
    let list: Value = c
        .get(format!("{}/_mock/requests", m.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let list = list.as_array().unwrap();
    assert_eq!(list.len(), 1, "introspection calls are not recorded");
    let r = &list[0];
    assert_eq!(r["method"], "POST");
    assert_eq!(r["path"], "/v1/chat/completions");
    assert_eq!(r["query"], "x=1");
    assert_eq!(r["json"], body);
    assert!(r["body"].is_string());
    assert!(r["headers"]
        .as_array()
        .unwrap()
        .iter()
        .any(|h| h[0] == "x-custom" && h[1] == "Yes"));
    let rec = m.state.last_request().unwrap();
    assert_eq!(rec.header("X-CUSTOM"), Some("Yes"));

    let stats: Value = c
        .get(format!("{}/_mock/stats", m.url()))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(stats["requests"], 1);
    assert_eq!(stats["streams_cancelled"], 0);

    let r = c
        .post(format!("{}/_mock/reset", m.url()))
        .send()
        .await
        .unwrap();
    assert!(r.status().is_success());
    assert!(m.state.requests().is_empty());
    assert_eq!(m.state.stats().requests, 0);
}

#[tokio::test]
async fn request_log_is_bounded_and_ordered() {
    let m = MockServer::start_with(MockOptions {
        max_recorded: 2,
        ..MockOptions::default()
    })
    .await
    .unwrap();
    for i in 0..3 {
        openai(&m, &format!("/v1/models/m{i}"))
            .send()
            .await
            .unwrap();
    }
    let paths: Vec<String> = m.state.requests().into_iter().map(|r| r.path).collect();
    assert_eq!(paths, ["/v1/models/m1", "/v1/models/m2"]);
    assert_eq!(m.state.stats().requests, 3);
}
