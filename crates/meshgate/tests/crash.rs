//! No usage lost on a crash: `meshgate serve` is killed with SIGKILL in the middle of a
//! load of streamed and plain calls, started again on the same data dir, and every call
//! whose response its client had received whole has exactly one usage event. (With
//! `ledger.spool = "off"` the same test loses calls: events wait in memory for their batch.)
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{serve_with, usage_request_ids, BIN};
use meshgate_mock::MockServer;
use std::collections::{HashMap, HashSet};
use std::process::Command;
use std::sync::{Arc, Mutex};

/// Calls in flight at once.
const CLIENTS: usize = 12;
/// Whole responses received before the kill.
const COMPLETED_BEFORE_KILL: usize = 150;

/// One call; its request id when the whole response arrived.
async fn call(http: &reqwest::Client, base: &str, key: &str, n: usize) -> Option<String> {
    let stream = n.is_multiple_of(2);
    let response = http
        .post(format!("{base}/openai/v1/chat/completions"))
        .bearer_auth(key)
        .header("x-mock-chunks", "8")
        .header("x-mock-output-tokens", "16")
        .header("x-mock-input-tokens", (100 + n % 50).to_string())
        .json(&serde_json::json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await
        .ok()?;
    if response.status() != 200 {
        return None;
    }
    let id = response
        .headers()
        .get("x-meshgate-request-id")?
        .to_str()
        .ok()?
        .to_string();
    // The body read to its end: the client holds the whole answer.
    let body = response.bytes().await.ok()?;
    let text = String::from_utf8_lossy(&body);
    let whole = if stream {
        text.contains("data: [DONE]")
    } else {
        text.contains("\"usage\"")
    };
    whole.then_some(id)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_delivered_call_with_the_default_spool() {
    sigkill_under_load(None).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn sigkill_under_load_loses_no_delivered_call_with_the_sync_spool() {
    sigkill_under_load(Some("[ledger]\nspool = \"sync\"\n")).await;
}

/// Loads a gateway (with this config, else none), kills it, starts it again, and checks
/// that every call delivered whole has exactly one usage event.
async fn sigkill_under_load(config: Option<&str>) {
    let mock = MockServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let config_file = dir.path().join("meshgate.toml");
    std::fs::write(&config_file, config.unwrap_or("")).unwrap();
    let args = ["--config", config_file.to_str().unwrap()];
    let mut server = serve_with(dir.path(), &mock, &args);
    let key = Command::new(BIN)
        .args([
            "keys",
            "create",
            "--name",
            "load",
            "--quiet",
            "--url",
            &server.base,
        ])
        .arg("--data-dir")
        .arg(dir.path())
        .output()
        .unwrap();
    assert!(key.status.success());
    let key = String::from_utf8(key.stdout).unwrap().trim().to_string();

    let completed = Arc::new(Mutex::new(Vec::<String>::new()));
    let (enough_tx, mut enough_rx) = tokio::sync::mpsc::channel::<()>(1);
    let http = reqwest::Client::new();
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let (http, base, key) = (http.clone(), server.base.clone(), key.clone());
        let (completed, enough_tx) = (completed.clone(), enough_tx.clone());
        clients.push(tokio::spawn(async move {
            // Each client calls until the gateway is gone (a call fails to connect).
            for n in (c..).step_by(CLIENTS) {
                match call(&http, &base, &key, n).await {
                    Some(id) => {
                        let mut done = completed.lock().unwrap();
                        done.push(id);
                        if done.len() == COMPLETED_BEFORE_KILL {
                            let _ = enough_tx.try_send(());
                        }
                    }
                    None if http.get(format!("{base}/healthz")).send().await.is_err() => break,
                    None => {}
                }
            }
        }));
    }
    enough_rx.recv().await.unwrap();
    // SIGKILL: no shutdown code runs; calls in flight are cut.
    server.child.kill().unwrap();
    server.child.wait().unwrap();
    for client in clients {
        client.await.unwrap();
    }
    let completed = completed.lock().unwrap().clone();
    assert!(completed.len() >= COMPLETED_BEFORE_KILL);

    // The same data dir again: the spool is written to the database at start.
    let server = serve_with(dir.path(), &mock, &args);
    let admin_token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let mut per_request: HashMap<String, usize> = HashMap::new();
    for id in usage_request_ids(&http, &server.base, admin_token.trim()).await {
        *per_request.entry(id).or_default() += 1;
    }
    let missing: Vec<&String> = completed
        .iter()
        .filter(|id| !per_request.contains_key(*id))
        .collect();
    assert!(
        missing.is_empty(),
        "{} of {} delivered calls have no usage event: {missing:?}",
        missing.len(),
        completed.len()
    );
    let twice: HashSet<_> = per_request.iter().filter(|(_, n)| **n > 1).collect();
    assert!(twice.is_empty(), "counted twice: {twice:?}");
    println!(
        "{} calls delivered before the kill, {} usage events after the restart",
        completed.len(),
        per_request.len()
    );
}
