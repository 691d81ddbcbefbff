//! Three `meshgate serve --database postgres://...` processes sharing one fresh PostgreSQL
//! database: a key created through one is accepted by the others; its limit change, its
//! rotation and its revocation through one take effect on the others within one second
//! (each delay is printed). Skipped, saying why, when PostgreSQL is unreachable, unless
//! `MESHGATE_REQUIRE_POSTGRES` is set.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshgate_mock::MockServer;
use meshgate_store::testdb::TestDatabase;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

const BIN: &str = env!("CARGO_BIN_EXE_meshgate");
const ADMIN: &str = "mga_fleet_test_token";

struct Instance {
    child: Child,
    base: String,
}

impl Drop for Instance {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Starts `meshgate serve` on `database`, with a data dir of its own; returns once it
/// listens (its banner names the address).
fn serve(database: &str, data_dir: &Path, mock: &MockServer) -> Instance {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--database", database])
        .arg("--data-dir")
        .arg(data_dir)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MESHGATE_ADMIN_TOKEN", ADMIN)
        .env("MESHGATE_THREADS", "2")
        .env("OPENAI_API_KEY", "sk-mock-openai")
        .env("ANTHROPIC_API_KEY", "sk-ant-mock")
        .env("MESHGATE_OPENAI_BASE_URL", format!("{}/v1", mock.url()))
        .env("MESHGATE_ANTHROPIC_BASE_URL", mock.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("meshgate listening on ")
        .unwrap_or_else(|| panic!("unexpected banner: {first}"))
        .to_string();
    let banner: Vec<String> = lines.by_ref().take(1).map(Result::unwrap).collect();
    assert!(
        banner[0].starts_with("  database: postgres://"),
        "the banner names the database: {banner:?}"
    );
    std::thread::spawn(move || for _ in lines {});
    Instance { child, base }
}

async fn chat_status(http: &reqwest::Client, base: &str, key: &str) -> u16 {
    http.post(format!("{base}/openai/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

/// Calls `base` with `key` until it answers `want`, failing once `limit` has passed since
/// `since`; returns how long after `since` it did.
async fn until_status(
    http: &reqwest::Client,
    base: &str,
    key: &str,
    want: u16,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let got = chat_status(http, base, key).await;
        let elapsed = since.elapsed();
        if got == want {
            return elapsed;
        }
        assert!(
            elapsed < limit,
            "still {got} (not {want}) after {elapsed:?}"
        );
        tokio::task::yield_now().await;
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn key_changes_on_one_process_reach_the_others_within_a_second() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mock = MockServer::start().await.unwrap();
    let dirs: Vec<_> = (0..3).map(|_| tempfile::tempdir().unwrap()).collect();
    let fleet: Vec<Instance> = dirs
        .iter()
        .map(|d| serve(&db.url, d.path(), &mock))
        .collect();
    let (a, others) = (&fleet[0], &fleet[1..]);
    let http = reqwest::Client::builder().no_proxy().build().unwrap();
    let second = Duration::from_secs(1);
    let admin = |method: reqwest::Method, path: String, body: serde_json::Value| {
        http.request(method, format!("{}{path}", a.base))
            .bearer_auth(ADMIN)
            .json(&body)
            .send()
    };

    let started = Instant::now();
    let created: serde_json::Value = admin(
        reqwest::Method::POST,
        "/admin/v1/keys".into(),
        serde_json::json!({"name": "fleet"}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let key = created["secret"].as_str().unwrap().to_string();
    let id = created["id"].as_str().unwrap().to_string();
    for b in others {
        let t = until_status(&http, &b.base, &key, 200, started, second).await;
        println!("a key created on one process was accepted by another after {t:?}");
    }

    // A limit change: the model is no longer allowed.
    let started = Instant::now();
    let changed = admin(
        reqwest::Method::PATCH,
        format!("/admin/v1/keys/{id}"),
        serde_json::json!({"allowed_models": ["gpt-4.1"]}),
    )
    .await
    .unwrap();
    assert_eq!(changed.status(), 200);
    for b in others {
        let t = until_status(&http, &b.base, &key, 403, started, second).await;
        println!("a limit changed on one process held on another after {t:?}");
    }
    let changed = admin(
        reqwest::Method::PATCH,
        format!("/admin/v1/keys/{id}"),
        serde_json::json!({"allowed_models": null}),
    )
    .await
    .unwrap();
    assert_eq!(changed.status(), 200);

    // A rotation without grace: the old secret is refused, the new one accepted.
    let started = Instant::now();
    let rotated: serde_json::Value = admin(
        reqwest::Method::POST,
        format!("/admin/v1/keys/{id}/rotate"),
        serde_json::json!({}),
    )
    .await
    .unwrap()
    .json()
    .await
    .unwrap();
    let new_key = rotated["secret"].as_str().unwrap().to_string();
    for b in others {
        let t = until_status(&http, &b.base, &key, 401, started, second).await;
        println!("a key rotated on one process refused its old secret on another after {t:?}");
        until_status(&http, &b.base, &new_key, 200, started, second).await;
    }

    let started = Instant::now();
    let revoked = admin(
        reqwest::Method::POST,
        format!("/admin/v1/keys/{id}/revoke"),
        serde_json::json!({}),
    )
    .await
    .unwrap();
    assert_eq!(revoked.status(), 200);
    for b in others {
        let t = until_status(&http, &b.base, &new_key, 401, started, second).await;
        println!("a key revoked on one process was refused by another after {t:?}");
    }
    assert_eq!(chat_status(&http, &a.base, &new_key).await, 401);
}
