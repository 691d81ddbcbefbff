//! Budgets and rate limits held by a fleet: three `meshgate serve` processes on one fresh
//! PostgreSQL database, sharing reservations and counters through one Redis, or through
//! PostgreSQL alone; calls spread across the three. Skipped, saying why, when PostgreSQL or
//! Redis is unreachable, unless `MESHGATE_REQUIRE_POSTGRES` / `MESHGATE_REQUIRE_REDIS` is
//! set.
//!
//! The bound, either way: every call reserves its largest possible charge in the one shared
//! account before it is forwarded, and the estimate covers the charge (prompt counted from
//! the body's size, output at `max_tokens`), so the total charged never exceeds the limit;
//! and N requests per minute admit exactly N across the fleet.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{serve_instance, Server, FLEET_ADMIN};
use meshgate_mock::MockServer;
use meshgate_store::testdb::TestDatabase;
use meshgate_types::Money;
use std::time::{Duration, Instant};

struct Fleet {
    instances: Vec<Server>,
    _dirs: Vec<tempfile::TempDir>,
    http: reqwest::Client,
}

/// Where the instances hold their limits.
enum Limits<'a> {
    /// In Redis, under this prefix.
    Redis(&'a str),
    /// In PostgreSQL (the default without Redis).
    Postgres,
    /// Each in its own memory (`postgres_limits = false`).
    Memory,
}

/// Three instances on `db`.
fn fleet(db: &TestDatabase, limits: Limits, mock: &MockServer) -> Fleet {
    let mut instances = Vec::new();
    let mut dirs = Vec::new();
    for _ in 0..3 {
        let dir = tempfile::tempdir().unwrap();
        let config = dir.path().join("meshgate.toml");
        let mut extra: Vec<String> = vec!["--config".into(), config.display().to_string()];
        let settings = match limits {
            Limits::Redis(prefix) => {
                extra.extend(["--redis".into(), meshgate_gateway::hot::test_redis_url()]);
                format!("redis_prefix = {prefix:?}\n")
            }
            Limits::Postgres => String::new(),
            Limits::Memory => "postgres_limits = false\n".into(),
        };
        std::fs::write(&config, settings).unwrap();
        let extra: Vec<&str> = extra.iter().map(String::as_str).collect();
        instances.push(serve_instance(&db.url, &extra, dir.path(), mock));
        dirs.push(dir);
    }
    Fleet {
        instances,
        _dirs: dirs,
        http: reqwest::Client::builder().no_proxy().build().unwrap(),
    }
}

impl Fleet {
    async fn admin(&self, path: &str, body: serde_json::Value) -> serde_json::Value {
        let response = self
            .http
            .post(format!("{}{path}", self.instances[0].base))
            .bearer_auth(FLEET_ADMIN)
            .json(&body)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    async fn chat(&self, instance: usize, key: &str) -> u16 {
        self.http
            .post(format!(
                "{}/openai/v1/chat/completions",
                self.instances[instance].base
            ))
            .bearer_auth(key)
            .json(&serde_json::json!({
                "model": "gpt-4o-mini",
                "max_tokens": 40,
                "messages": [{"role": "user", "content": "hello"}]
            }))
            .send()
            .await
            .unwrap()
            .status()
            .as_u16()
    }

    /// `GET /v1/me` of `key` on one instance.
    async fn me(&self, instance: usize, key: &str) -> serde_json::Value {
        let response = self
            .http
            .get(format!("{}/v1/me", self.instances[instance].base))
            .bearer_auth(key)
            .send()
            .await
            .unwrap();
        assert!(response.status().is_success(), "{}", response.status());
        response.json().await.unwrap()
    }

    /// Waits until every instance knows `key` (a key without limits made after the others,
    /// whose changes therefore reached the instances first).
    async fn until_known_everywhere(&self, key: &str) {
        let deadline = Instant::now() + Duration::from_secs(10);
        for i in 0..self.instances.len() {
            loop {
                let status = self
                    .http
                    .get(format!("{}/openai/v1/models", self.instances[i].base))
                    .bearer_auth(key)
                    .send()
                    .await
                    .unwrap()
                    .status();
                if status.is_success() {
                    break;
                }
                assert!(
                    Instant::now() < deadline,
                    "instance {i} still answers {status}"
                );
                tokio::task::yield_now().await;
            }
        }
    }

    /// `n` calls of `key`, all at once, round-robin over the instances;
    /// returns how many got each status.
    async fn load(&self, key: &str, n: usize) -> std::collections::BTreeMap<u16, usize> {
        let calls = (0..n).map(|i| self.chat(i % self.instances.len(), key));
        let statuses = futures_util::future::join_all(calls).await;
        let mut counts = std::collections::BTreeMap::new();
        for s in statuses {
            *counts.entry(s).or_insert(0) += 1;
        }
        counts
    }

    /// Requests and charge of `key_id` in the ledger. Each instance flushes its own writer
    /// when asked, so asking all three in turn sees every call.
    async fn charged(&self, key_id: &str) -> (u64, Money) {
        let mut last = serde_json::Value::Null;
        for server in &self.instances {
            last = self
                .http
                .get(format!(
                    "{}/admin/v1/usage/summary?key_id={key_id}",
                    server.base
                ))
                .bearer_auth(FLEET_ADMIN)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
        }
        let total = &last["total"];
        let money = |v: &serde_json::Value| v.as_str().unwrap_or("0").parse::<Money>().unwrap();
        (
            total["requests"].as_u64().unwrap(),
            money(&total["cost_usd"]) + money(&total["markup_usd"]),
        )
    }
}

async fn redis_prefix(name: &str) -> Option<meshgate_gateway::hot::RedisHot> {
    meshgate_gateway::hot::test_redis(name).await
}

/// A key with `limits`, plus a probe key made after it and known everywhere.
async fn key_with(fleet: &Fleet, limits: serde_json::Value) -> (String, String) {
    key_made(
        fleet,
        serde_json::json!({"name": "limited", "limits": limits}),
    )
    .await
}

/// A key made from `body`, once a probe key made after it is known everywhere.
async fn key_made(fleet: &Fleet, body: serde_json::Value) -> (String, String) {
    let made = fleet.admin("/admin/v1/keys", body).await;
    let probe = fleet
        .admin("/admin/v1/keys", serde_json::json!({"name": "probe"}))
        .await;
    fleet
        .until_known_everywhere(probe["secret"].as_str().unwrap())
        .await;
    (
        made["secret"].as_str().unwrap().to_string(),
        made["id"].as_str().unwrap().to_string(),
    )
}

const LIMIT: &str = "0.0005";

/// Credits granted through the first instance are spendable on the last within a second
/// (its balance was loaded, empty, before the grant).
async fn credits_reach_every_instance(fleet: &Fleet) {
    fleet
        .admin(
            "/admin/v1/projects",
            serde_json::json!({"id": "prepaid", "name": "prepaid", "settings": {"credits_enforced": true}}),
        )
        .await;
    let (key, _) = key_made(
        fleet,
        serde_json::json!({"name": "prepaid", "project_id": "prepaid"}),
    )
    .await;
    let last = fleet.instances.len() - 1;
    assert_eq!(fleet.chat(last, &key).await, 402, "no credits yet");
    let granted = Instant::now();
    fleet
        .admin(
            "/admin/v1/projects/prepaid/credits",
            serde_json::json!({"kind": "grant", "amount_usd": "1"}),
        )
        .await;
    loop {
        let status = fleet.chat(last, &key).await;
        if status == 200 {
            break;
        }
        assert!(
            granted.elapsed() < Duration::from_secs(1),
            "still {status} after {:?}",
            granted.elapsed()
        );
        tokio::task::yield_now().await;
    }
    println!(
        "credits granted on one instance were spendable on another after {:?}",
        granted.elapsed()
    );
}

/// A spend limit of `LIMIT` USD under 300 concurrent calls over three instances.
async fn spend_limit_holds(fleet: &Fleet) -> (String, Money) {
    let (key, id) = key_with(fleet, serde_json::json!({"spend_total_usd": LIMIT})).await;
    // Every instance reads the account before the calls (so that a report kept in an
    // instance's memory would go stale: see `me_reports_the_shared_account`).
    for i in 0..fleet.instances.len() {
        fleet.me(i, &key).await;
    }
    let counts = fleet.load(&key, 300).await;
    println!("statuses: {counts:?}");
    let ok = counts.get(&200).copied().unwrap_or(0);
    assert!(ok > 0, "no call was admitted: {counts:?}");
    assert!(
        counts.get(&402).copied().unwrap_or(0) > 0,
        "the limit never bit: {counts:?}"
    );
    let (requests, charged) = fleet.charged(&id).await;
    assert_eq!(requests, ok as u64, "every admitted call is in the ledger");
    println!("{ok} calls charged ${charged} against a limit of ${LIMIT}");
    (key, charged)
}

/// `GET /v1/me` on every instance reports the fleet's account: all of `charged` spent and
/// nothing in flight, once the last settlements (run in the background) are in.
async fn me_reports_the_shared_account(fleet: &Fleet, key: &str, charged: Money) {
    let deadline = Instant::now() + Duration::from_secs(5);
    for i in 0..fleet.instances.len() {
        loop {
            let me = fleet.me(i, key).await;
            let budget = me["budgets"]
                .as_array()
                .and_then(|b| b.iter().find(|b| b["budget"] == "key_total"))
                .unwrap_or_else(|| panic!("no key_total budget in {me}"))
                .clone();
            let money = |v: &serde_json::Value| v.as_str().unwrap().parse::<Money>().unwrap();
            if money(&budget["spent_usd"]) == charged
                && money(&budget["in_flight_usd"]).amount().is_zero()
            {
                break;
            }
            assert!(Instant::now() < deadline, "{budget} (charged {charged})");
            tokio::task::yield_now().await;
        }
    }
}

/// 10 requests per minute across the fleet: 30 calls at once, exactly 10 admitted. A
/// minute boundary during the calls makes the sliding window's answer depend on where it
/// fell (the previous minute's calls weigh a little less than all): then at most 11.
async fn requests_per_minute_hold(fleet: &Fleet) {
    let (key, _) = key_with(fleet, serde_json::json!({"requests_per_minute": 10})).await;
    let minute = || chrono::Utc::now().timestamp_millis().div_euclid(60_000);
    let before = minute();
    let counts = fleet.load(&key, 30).await;
    let same_minute = minute() == before;
    println!("rate-limited statuses: {counts:?} (within one minute: {same_minute})");
    let admitted = counts.get(&200).copied().unwrap_or(0);
    if same_minute {
        assert_eq!(admitted, 10, "{counts:?}");
    } else {
        assert!((1..=11).contains(&admitted), "{counts:?}");
    }
    assert_eq!(counts.get(&429).copied().unwrap_or(0) + admitted, 30);
}

#[tokio::test(flavor = "multi_thread")]
async fn three_instances_with_redis_hold_one_budget_and_one_rate_limit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let Some(hot) = redis_prefix("fleet").await else {
        return;
    };
    let mock = MockServer::start().await.unwrap();
    let fleet = fleet(&db, Limits::Redis(hot.prefix()), &mock);

    credits_reach_every_instance(&fleet).await;
    let (key, charged) = spend_limit_holds(&fleet).await;
    assert!(
        charged <= LIMIT.parse().unwrap(),
        "charged ${charged}, over the limit of ${LIMIT}"
    );
    me_reports_the_shared_account(&fleet, &key, charged).await;

    requests_per_minute_hold(&fleet).await;
    drop(fleet);
    hot.delete_all().await.unwrap();
}

/// Without Redis the fleet shares its limits through PostgreSQL itself (transactions with
/// row locks): the same checks, as exact.
#[tokio::test(flavor = "multi_thread")]
async fn three_instances_on_postgresql_alone_hold_one_budget_and_one_rate_limit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mock = MockServer::start().await.unwrap();
    let fleet = fleet(&db, Limits::Postgres, &mock);
    credits_reach_every_instance(&fleet).await;
    let (key, charged) = spend_limit_holds(&fleet).await;
    assert!(
        charged <= LIMIT.parse().unwrap(),
        "charged ${charged}, over the limit of ${LIMIT}"
    );
    me_reports_the_shared_account(&fleet, &key, charged).await;
    requests_per_minute_hold(&fleet).await;
}

/// With `postgres_limits = false` each instance holds the limit on its own (loaded from the
/// database at its first call, then following its own settlements): the fleet's total
/// stays within instances × limit. The documented bound, checked.
#[tokio::test(flavor = "multi_thread")]
async fn three_instances_with_limits_in_memory_stay_within_three_times_the_limit() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let mock = MockServer::start().await.unwrap();
    let fleet = fleet(&db, Limits::Memory, &mock);
    credits_reach_every_instance(&fleet).await;
    let (_, charged) = spend_limit_holds(&fleet).await;
    let limit: Money = LIMIT.parse().unwrap();
    let bound = (1..fleet.instances.len()).fold(limit, |sum, _| sum + limit);
    assert!(charged <= bound, "charged ${charged}, over ${bound}");
}
