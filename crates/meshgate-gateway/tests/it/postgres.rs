//! The gateway on PostgreSQL, each test on a fresh database: a call's usage event and
//! credit debit land in PostgreSQL exactly; two instances sharing one database see each
//! other's revocations, rotations and limit changes within one second; `/readyz` follows
//! the database. Skipped (with the reason printed) when PostgreSQL is unreachable, unless
//! `MESHGATE_REQUIRE_POSTGRES` is set.

use crate::admin::{chat, expect};
use crate::harness::Harness;
use meshgate_gateway::Config;
use meshgate_store::testdb::TestDatabase;
use meshgate_store::{PgStore, SpendScope, Store, UsageFilter};
use meshgate_types::Money;
use reqwest::Method;
use serde_json::{json, Value};
use sqlx::Connection;
use std::time::{Duration, Instant};

fn on(db: &TestDatabase) -> impl FnOnce(&mut Config) {
    let url = db.url.clone();
    move |config: &mut Config| config.database_url = url
}

fn money(s: &str) -> Money {
    s.parse().unwrap()
}

#[tokio::test]
async fn calls_are_metered_and_debited_in_postgres() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let h = Harness::start_with(on(&db)).await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects",
        Some(json!({"id": "prepaid", "name": "Prepaid", "settings": {"credits_enforced": true}})),
        201,
    )
    .await;
    let key = expect(
        &h,
        Method::POST,
        "/admin/v1/keys",
        Some(json!({"name": "p", "project_id": "prepaid"})),
        201,
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    // No credits: refused before anything goes upstream, as on SQLite.
    assert_eq!(chat(&h, &key, "gpt-4o-mini").await.status(), 402);
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects/prepaid/credits",
        Some(json!({"kind": "grant", "amount_usd": "1.50"})),
        201,
    )
    .await;
    let calls_before = h.mock.state.requests().len();
    let response = chat(&h, &key, "gpt-4o-mini").await;
    assert_eq!(response.status(), 200);
    let request_id = response
        .headers()
        .get(meshgate_gateway::REQUEST_ID_HEADER)
        .unwrap()
        .to_str()
        .unwrap()
        .to_string();
    assert_eq!(h.mock.state.requests().len(), calls_before + 1);
    h.wait_events(1).await;

    // Read PostgreSQL itself, through a store of its own and in SQL.
    let store = PgStore::connect(&db.url).await.unwrap();
    let prepaid = UsageFilter {
        project_id: Some("prepaid".into()),
        ..UsageFilter::default()
    };
    let events = store.list_usage(&prepaid, 100).await.unwrap().events;
    assert_eq!(events.len(), 1, "{events:#?}");
    let event = &events[0];
    assert_eq!(event.request_id, request_id);
    assert_eq!(event.model.as_deref(), Some("gpt-4o-mini"));
    assert_eq!(event.usage.input_uncached, Some(1000));
    assert_eq!(event.usage.output, Some(100));
    // 1000 x 0.15/M + 100 x 0.60/M
    assert_eq!(event.cost_usd, Some(money("0.00021")));
    assert_eq!(
        store.credit_balance("prepaid").await.unwrap(),
        money("1.49979")
    );
    assert_eq!(
        store
            .spend(&SpendScope::Project("prepaid".into()), None)
            .await
            .unwrap(),
        money("0.00021")
    );
    let mut conn = sqlx::PgConnection::connect(&db.url).await.unwrap();
    let (cost_type, cost, debit): (String, String, String) = sqlx::query_as(
        "SELECT pg_typeof(u.cost_usd)::text, u.cost_usd::text, \
         (SELECT amount_usd::text FROM credit_entries WHERE project_id = 'prepaid' AND kind = 'usage_debit') \
         FROM usage_events u WHERE u.request_id = $1",
    )
    .bind(&request_id)
    .fetch_one(&mut conn)
    .await
    .unwrap();
    assert_eq!(cost_type, "numeric", "money is exact in PostgreSQL");
    assert_eq!(money(&cost), money("0.00021"));
    assert_eq!(money(&debit), money("-0.00021"));
    store.close().await;
}

/// Calls `h` with `key` until it answers `want`, failing once `limit` has passed since
/// `since`; returns how long after `since` it did.
async fn until_status(
    h: &Harness,
    key: &str,
    model: &str,
    want: u16,
    since: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let got = chat(h, key, model).await.status().as_u16();
        let elapsed = since.elapsed();
        if got == want {
            return elapsed;
        }
        assert!(
            elapsed < limit,
            "still {got} (not {want}) {elapsed:?} after the change"
        );
        tokio::task::yield_now().await;
    }
}

const PROPAGATION_LIMIT: Duration = Duration::from_secs(1);

#[tokio::test]
async fn revocations_rotations_and_limits_reach_the_other_instance_within_a_second() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    // Two gateways, each with its own state and caches, sharing one database.
    let a = Harness::start_with(on(&db)).await;
    let b = Harness::start_with(on(&db)).await;
    // A key made on `a` before `b` started is loaded by `b` at start.
    assert_eq!(chat(&b, &a.key, "gpt-4o-mini").await.status(), 200);

    // A key made on `a` now reaches `b` through the change feed.
    let started = Instant::now();
    let fresh = a.create_key("fresh").await;
    let fresh_key = fresh["secret"].as_str().unwrap().to_string();
    let created = until_status(
        &b,
        &fresh_key,
        "gpt-4o-mini",
        200,
        started,
        PROPAGATION_LIMIT,
    )
    .await;
    println!("a key created on one instance was accepted by the other after {created:?}");

    // Revoked through `a`'s admin API: `b` refuses it within a second.
    assert_eq!(chat(&b, &a.key, "gpt-4o-mini").await.status(), 200);
    let started = Instant::now();
    expect(
        &a,
        Method::POST,
        &format!("/admin/v1/keys/{}/revoke", a.key_id),
        None,
        200,
    )
    .await;
    let revoked = until_status(&b, &a.key, "gpt-4o-mini", 401, started, PROPAGATION_LIMIT).await;
    println!("a key revoked on one instance was refused by the other after {revoked:?}");

    // Rotated through `a` without grace: on `b` the old secret stops, the new one works.
    assert_eq!(chat(&b, &b.key, "gpt-4o-mini").await.status(), 200);
    let started = Instant::now();
    let rotated: Value = expect(
        &a,
        Method::POST,
        &format!("/admin/v1/keys/{}/rotate", b.key_id),
        Some(json!({"grace_seconds": 0})),
        200,
    )
    .await;
    let new_secret = rotated["secret"].as_str().unwrap().to_string();
    let old_stopped =
        until_status(&b, &b.key, "gpt-4o-mini", 401, started, PROPAGATION_LIMIT).await;
    assert_eq!(chat(&b, &new_secret, "gpt-4o-mini").await.status(), 200);
    println!(
        "a rotation on one instance stopped the old secret on the other after {old_stopped:?}"
    );

    // A limit changed through `a` (the models a key may use) applies on `b`.
    assert_eq!(chat(&b, &fresh_key, "gpt-4o-mini").await.status(), 200);
    let started = Instant::now();
    expect(
        &a,
        Method::PATCH,
        &format!("/admin/v1/keys/{}", fresh["id"].as_str().unwrap()),
        Some(json!({"allowed_models": ["openai/gpt-4o"]})),
        200,
    )
    .await;
    let limited = until_status(
        &b,
        &fresh_key,
        "gpt-4o-mini",
        403,
        started,
        PROPAGATION_LIMIT,
    )
    .await;
    assert_eq!(chat(&b, &fresh_key, "gpt-4o").await.status(), 200);
    println!("a policy change on one instance applied on the other after {limited:?}");
}

async fn ready(h: &Harness) -> (u16, Value) {
    let r = h.http.get(h.url("/readyz")).send().await.unwrap();
    (r.status().as_u16(), r.json().await.unwrap())
}

async fn alive(h: &Harness) -> u16 {
    let r = h.http.get(h.url("/healthz")).send().await.unwrap();
    r.status().as_u16()
}

#[tokio::test]
async fn readiness_follows_the_database_and_liveness_does_not() {
    // SQLite: always ready.
    let local = Harness::start().await;
    assert_eq!(ready(&local).await, (200, json!({"status": "ready"})));

    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let h = Harness::start_with(on(&db)).await;
    assert_eq!(ready(&h).await, (200, json!({"status": "ready"})));

    // The database stops accepting connections and drops the open ones.
    let mut admin = sqlx::PgConnection::connect(&db.admin_url).await.unwrap();
    let block = |allow: bool| format!("ALTER DATABASE {} ALLOW_CONNECTIONS {allow}", db.name);
    sqlx::raw_sql(&block(false))
        .execute(&mut admin)
        .await
        .unwrap();
    sqlx::query("SELECT pg_terminate_backend(pid) FROM pg_stat_activity WHERE datname = $1")
        .bind(&db.name)
        .execute(&mut admin)
        .await
        .unwrap();
    let (status, body) = ready(&h).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["status"], "unavailable");
    let reason = body["reason"].as_str().unwrap();
    assert!(reason.starts_with("database unavailable"), "{reason}");
    assert_eq!(alive(&h).await, 200, "the process is alive all the same");

    // Back: ready again once the pool reconnects.
    sqlx::raw_sql(&block(true))
        .execute(&mut admin)
        .await
        .unwrap();
    let deadline = Instant::now() + Duration::from_secs(10);
    loop {
        let (status, body) = ready(&h).await;
        if status == 200 {
            break;
        }
        assert!(Instant::now() < deadline, "not ready again: {body}");
        tokio::task::yield_now().await;
    }
}
