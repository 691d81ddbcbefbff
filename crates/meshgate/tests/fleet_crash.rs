//! A fleet member killed under load: three `meshgate serve` processes share one fresh
//! PostgreSQL database (with Redis, and without), clients spread across them; one is
//! SIGKILLed mid-load and started again on its data dir. Then the ledger holds exactly one
//! usage event for every call the mock provider received: `ok` with the mock's tokens for
//! every call whose client got the whole answer, `interrupted` (usage unknown) for calls the
//! kill cut off. Skipped, saying why, when PostgreSQL or Redis is unreachable, unless
//! `MESHGATE_REQUIRE_POSTGRES` / `MESHGATE_REQUIRE_REDIS` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{serve_instance, Server, FLEET_ADMIN};
use meshgate_mock::MockServer;
use meshgate_store::testdb::TestDatabase;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

const INSTANCES: usize = 3;
/// Calls in flight at once, spread over the instances.
const CLIENTS: usize = 12;
/// Whole answers received before the kill, and in all before the load stops.
const DELIVERED_BEFORE_KILL: usize = 120;
const DELIVERED_IN_ALL: usize = 300;
/// The victim.
const KILLED: usize = 1;
/// Each call's prompt tokens (the mock reports them) are this plus its number: the mock's
/// record and the ledger's event name the same call.
const TOKENS_BASE: u64 = 1000;
const OUTPUT_TOKENS: u64 = 16;

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_under_load_loses_no_call_with_redis() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let Some(hot) = meshgate_gateway::hot::test_redis("fleet-crash").await else {
        return;
    };
    killed_under_load(&db, Some(hot.prefix())).await;
    hot.delete_all().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn an_instance_killed_under_load_loses_no_call_on_postgresql_alone() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    killed_under_load(&db, None).await;
}

/// `meshgate serve` on `db` with its data dir (and Redis under `prefix`).
fn start(db: &TestDatabase, prefix: Option<&str>, dir: &Path, mock: &MockServer) -> Server {
    let mut extra: Vec<String> = Vec::new();
    if let Some(prefix) = prefix {
        let config = dir.join("meshgate.toml");
        std::fs::write(&config, format!("redis_prefix = {prefix:?}\n")).unwrap();
        extra.extend([
            "--redis".into(),
            meshgate_gateway::hot::test_redis_url(),
            "--config".into(),
            config.display().to_string(),
        ]);
    }
    let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
    serve_instance(&db.url, &extra, dir, mock)
}

/// One call, number `n`; whether its client got the whole answer. `None` when the
/// instance is gone (the connection failed).
async fn call(http: &reqwest::Client, base: &str, key: &str, n: u64) -> Option<bool> {
    let stream = n.is_multiple_of(2);
    let response = http
        .post(format!("{base}/openai/v1/chat/completions"))
        .bearer_auth(key)
        .header("meshgate-annotation-call", n.to_string())
        .header("x-mock-input-tokens", (TOKENS_BASE + n).to_string())
        .header("x-mock-output-tokens", OUTPUT_TOKENS.to_string())
        .header("x-mock-chunks", "8")
        .header("x-mock-chunk-delay-ms", "1")
        .json(&serde_json::json!({
            "model": "gpt-4o-mini",
            "stream": stream,
            "messages": [{"role": "user", "content": "hi"}],
        }))
        .send()
        .await;
    let Ok(response) = response else {
        return None;
    };
    if response.status() != 200 {
        return Some(false);
    }
    let Ok(body) = response.bytes().await else {
        return Some(false);
    };
    let text = String::from_utf8_lossy(&body);
    Some(if stream {
        text.contains("data: [DONE]")
    } else {
        text.contains("\"usage\"")
    })
}

async fn killed_under_load(db: &TestDatabase, prefix: Option<&str>) {
    let mock = MockServer::start().await.unwrap();
    let dirs: Vec<tempfile::TempDir> = (0..INSTANCES)
        .map(|_| tempfile::tempdir().unwrap())
        .collect();
    let mut instances: Vec<Server> = dirs
        .iter()
        .map(|d| start(db, prefix, d.path(), &mock))
        .collect();
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let made: serde_json::Value = http
        .post(format!("{}/admin/v1/keys", instances[0].base))
        .bearer_auth(FLEET_ADMIN)
        .json(&serde_json::json!({"name": "load"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let key = made["secret"].as_str().unwrap().to_string();
    // Every instance knows the key (its creation reached them) before the load starts.
    for server in &instances {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while http
            .get(format!("{}/openai/v1/models", server.base))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap()
            .status()
            != 200
        {
            assert!(std::time::Instant::now() < deadline, "key still unknown");
            tokio::task::yield_now().await;
        }
    }

    let delivered = Arc::new(Mutex::new(BTreeSet::<u64>::new()));
    let stop = Arc::new(AtomicBool::new(false));
    let (kill_tx, mut kill_rx) = tokio::sync::mpsc::channel::<()>(1);
    let (done_tx, mut done_rx) = tokio::sync::mpsc::channel::<()>(1);
    let mut clients = Vec::new();
    for c in 0..CLIENTS {
        let base = instances[c % INSTANCES].base.clone();
        let (http, key, delivered, stop) =
            (http.clone(), key.clone(), delivered.clone(), stop.clone());
        let (kill_tx, done_tx) = (kill_tx.clone(), done_tx.clone());
        clients.push(tokio::spawn(async move {
            for n in (c as u64..).step_by(CLIENTS) {
                if stop.load(Ordering::Relaxed) {
                    break;
                }
                match call(&http, &base, &key, n).await {
                    // The instance is gone: this client's share of the load ends.
                    None => break,
                    Some(true) => {
                        let mut d = delivered.lock().unwrap();
                        d.insert(n);
                        if d.len() == DELIVERED_BEFORE_KILL {
                            let _ = kill_tx.try_send(());
                        }
                        if d.len() == DELIVERED_IN_ALL {
                            let _ = done_tx.try_send(());
                        }
                    }
                    Some(false) => {}
                }
            }
        }));
    }
    drop((kill_tx, done_tx));
    kill_rx.recv().await.unwrap();
    // SIGKILL: no shutdown code runs; the victim's calls in flight are cut.
    instances[KILLED].child.kill().unwrap();
    instances[KILLED].child.wait().unwrap();
    done_rx.recv().await.unwrap();
    stop.store(true, Ordering::Relaxed);
    for client in clients {
        client.await.unwrap();
    }

    // The victim again on its data dir: what its spool and journal hold goes in at start.
    instances[KILLED] = start(db, prefix, dirs[KILLED].path(), &mock);
    let events = ledger_events(&http, &instances).await;

    // What the provider saw: each chat call's number.
    let received: BTreeSet<u64> = mock
        .state
        .requests()
        .iter()
        .filter(|r| r.path.ends_with("/chat/completions"))
        .map(|r| {
            r.header("x-mock-input-tokens")
                .unwrap()
                .parse::<u64>()
                .unwrap()
                - TOKENS_BASE
        })
        .collect();
    let mut per_call: BTreeMap<u64, Vec<&serde_json::Value>> = BTreeMap::new();
    for event in &events {
        let n = event["annotations"]["call"]
            .as_str()
            .unwrap_or_else(|| panic!("an event without the call's number: {event}"))
            .parse::<u64>()
            .unwrap();
        per_call.entry(n).or_default().push(event);
    }
    let delivered = delivered.lock().unwrap().clone();
    let mut interrupted = 0;
    for n in &received {
        let list = per_call.get(n).map(Vec::as_slice).unwrap_or_default();
        assert_eq!(
            list.len(),
            1,
            "call {n} reached the provider and has {} usage events: {list:?}",
            list.len()
        );
        let event = list[0];
        match event["outcome"].as_str().unwrap() {
            "ok" => {
                assert_eq!(event["usage"]["input_uncached"], TOKENS_BASE + n, "{event}");
                assert_eq!(event["usage"]["output"], OUTPUT_TOKENS, "{event}");
            }
            "interrupted" => {
                assert!(!delivered.contains(n), "call {n} was delivered: {event}");
                assert_eq!(event["cost_usd"], serde_json::Value::Null, "{event}");
                interrupted += 1;
            }
            other => panic!("call {n} ended {other}: {event}"),
        }
    }
    for n in &delivered {
        assert!(
            received.contains(n),
            "call {n} was delivered but not received"
        );
    }
    // A note written just before the kill, of a call not yet sent, is the only kind of
    // event the provider has no record of.
    let unsent: Vec<_> = per_call
        .iter()
        .filter(|(n, _)| !received.contains(n))
        .collect();
    for (n, list) in &unsent {
        assert!(
            list.len() == 1 && list[0]["outcome"] == "interrupted",
            "call {n} never reached the provider: {list:?}"
        );
    }
    assert!(
        interrupted + unsent.len() <= CLIENTS / INSTANCES,
        "more calls interrupted ({interrupted} + {} unsent) than were in flight on the victim",
        unsent.len()
    );
    println!(
        "{} calls received by the provider, {} delivered whole, {} events: {interrupted} \
         interrupted by the kill, {} noted but unsent",
        received.len(),
        delivered.len(),
        events.len(),
        unsent.len()
    );
}

/// Every usage event in the shared database. Each instance flushes its own writer when
/// asked, so every instance is asked once before the listing is read.
async fn ledger_events(http: &reqwest::Client, instances: &[Server]) -> Vec<serde_json::Value> {
    for server in instances {
        let status = http
            .get(format!("{}/admin/v1/usage?limit=1", server.base))
            .bearer_auth(FLEET_ADMIN)
            .send()
            .await
            .unwrap()
            .status();
        assert_eq!(status, 200);
    }
    let mut events = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut url = format!("{}/admin/v1/usage?limit=1000", instances[0].base);
        if let Some(b) = &before {
            url.push_str(&format!("&before={b}"));
        }
        let page: serde_json::Value = http
            .get(url)
            .bearer_auth(FLEET_ADMIN)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        events.extend(page["data"].as_array().unwrap().iter().cloned());
        match page["next_before"].as_str() {
            Some(b) => before = Some(b.to_string()),
            None => break,
        }
    }
    events
}
