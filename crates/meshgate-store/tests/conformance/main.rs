//! The store conformance suite: every backend (SQLite in a file and in memory, PostgreSQL
//! in a fresh database per test) must pass the same checks. The checks live by subject in
//! `identity` (keys, projects, signing keys, provider credentials), `credits` (credits,
//! usage attribution, debits and spend) and `audit`; this file holds the shared fixtures,
//! the runner and the per-backend tests.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod audit;
mod credits;
mod identity;

use credits::credit;
use identity::{credential, project, signing_key};

use meshgate_store::testdb::TestDatabase;
use meshgate_store::{
    AuditEvent, AuditFilter, CreditEntry, CreditKind, GroupBy, Limits, NewKey, Outcome, Policy,
    ProjectRecord, ProjectSettings, ProviderCredential, ResourceOwner, SigningKeyRecord,
    SpendScope, SqliteStore, Store, SummaryRow, UsageEvent, UsageFilter,
};
use meshgate_store::{Change, PgStore};
use meshgate_types::{Money, Usage};
use std::collections::BTreeMap;

fn money(s: &str) -> Money {
    s.parse().unwrap()
}

fn key(id: &str, project: &str) -> NewKey {
    NewKey {
        id: id.into(),
        project_id: project.into(),
        name: format!("name-{id}"),
        prefix: "mg_abcd".into(),
        secret_hash: format!("hash-{id}"),
        created_ms: 1000,
        expires_ms: None,
        policy: Policy::default(),
    }
}

fn event(n: u32, key: &str, model: &str, cost: &str) -> UsageEvent {
    UsageEvent {
        id: format!("0190-{n:08}"),
        request_id: format!("req-{n}"),
        project_id: "default".into(),
        key_id: Some(key.into()),
        token_id: None,
        user: None,
        room: None,
        delegation_id: None,
        annotations: BTreeMap::new(),
        surface: "openai".into(),
        endpoint: "chat_completions".into(),
        provider: "openai".into(),
        model: Some(model.into()),
        requested_model: Some(format!("alias-{model}")),
        deployment: Some("openai-eu".into()),
        response_model: Some(format!("{model}-2024")),
        streamed: n.is_multiple_of(2),
        status: Some(200),
        outcome: if n.is_multiple_of(5) {
            Outcome::Incomplete
        } else {
            Outcome::Ok
        },
        usage: Usage {
            input_uncached: Some(10),
            cache_read: Some(5),
            output: Some(3),
            ..Usage::default()
        },
        cost_usd: Some(cost.parse().unwrap()),
        markup_usd: None,
        price_id: Some("builtin:test@2025-01-01".into()),
        error: None,
        upstream_request_id: Some("req_up".into()),
        started_ms: 10_000 + i64::from(n),
        ttfb_ms: Some(5),
        duration_ms: 9,
    }
}

/// Every check, in an order where each section sees what the earlier ones wrote.
async fn conformance(store: &dyn Store) {
    identity::keys_settings_and_usage(store).await;
    identity::projects(store).await;
    identity::key_policy_update_and_rotation(store).await;
    identity::signing_keys(store).await;
    identity::provider_credentials(store).await;
    credits::credits(store).await;
    credits::usage_attribution_debits_and_spend(store).await;
    audit::audit(store).await;
}

/// What a reopened store must still hold after [`conformance`] ran on it.
async fn kept_after_reopening(reopened: &dyn Store) {
    assert_eq!(reopened.list_keys(None).await.unwrap().len(), 3);
    assert_eq!(reopened.list_projects().await.unwrap().len(), 5);
    let key = reopened.get_key("key_acme").await.unwrap().unwrap();
    assert_eq!(key.secret_hash, "hash-new2");
    assert_eq!(key.policy.limits.requests_per_minute, Some(60));
    assert_eq!(
        reopened.credit_balance("acme").await.unwrap(),
        "27.706".parse().unwrap()
    );
}

#[tokio::test]
async fn sqlite_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshgate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    conformance(&store).await;
    assert!(store.changes().is_none(), "SQLite is never shared");
    store.ping().await.unwrap();
    drop(store);
    // Reopening runs no migration twice and keeps the data.
    let reopened = SqliteStore::open(&path).await.unwrap();
    kept_after_reopening(&reopened).await;
}

#[tokio::test]
async fn sqlite_memory_store_conforms() {
    let store = SqliteStore::open_url("sqlite::memory:").await.unwrap();
    conformance(&store).await;
}

#[tokio::test]
async fn postgres_store_conforms() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let store = PgStore::connect(&db.url).await.unwrap();
    conformance(&store).await;
    store.ping().await.unwrap();
    store.close().await;
    // Reconnecting runs no migration twice and keeps the data.
    let reopened = PgStore::connect(&db.url).await.unwrap();
    kept_after_reopening(&reopened).await;
    reopened.close().await;
}

/// Instances of a fleet start together: each migrates under sqlx's advisory lock, so the
/// schema is made once and every one of them starts.
#[tokio::test]
async fn postgres_instances_migrate_concurrently() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let (a, b, c) = tokio::join!(
        PgStore::connect(&db.url),
        PgStore::connect(&db.url),
        PgStore::connect(&db.url)
    );
    let (a, b, c) = (a.unwrap(), b.unwrap(), c.unwrap());
    a.create_key(key("key_a", "default")).await.unwrap();
    assert_eq!(b.list_keys(None).await.unwrap().len(), 1);
    assert_eq!(c.list_projects().await.unwrap().len(), 1);
    for s in [a, b, c] {
        s.close().await;
    }
}

/// Receives the next change, failing after a deadline.
async fn next_change(feed: &mut tokio::sync::mpsc::Receiver<Change>) -> Change {
    tokio::time::timeout(std::time::Duration::from_secs(10), feed.recv())
        .await
        .expect("no change announced within 10 s")
        .expect("the change feed ended")
}

/// Changes made through one store (one instance) are announced to another's feed, each
/// naming its record; the feed starts with a resync.
#[tokio::test]
async fn postgres_announces_changes_to_other_instances() {
    let Some(db) = TestDatabase::create().await else {
        return;
    };
    let writer = PgStore::connect(&db.url).await.unwrap();
    let watcher = PgStore::connect(&db.url).await.unwrap();
    let mut feed = watcher.changes().unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Resync);

    writer.create_key(key("key_a", "default")).await.unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Key("key_a".into()));
    writer.revoke_key("key_a", 5).await.unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Key("key_a".into()));
    // Nothing changes (already revoked): the UPDATE matches no row, so nothing is said.
    writer.revoke_key("key_a", 6).await.unwrap();
    writer.create_project(project("acme", 1)).await.unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Project("acme".into()));
    writer
        .create_signing_key(signing_key("sk_1", "acme", "EdDSA", 2))
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        Change::SigningKey("sk_1".into())
    );
    writer
        .set_provider_credential(credential("acme", "openai", "sealed", 3))
        .await
        .unwrap();
    writer
        .delete_provider_credential("acme", "openai")
        .await
        .unwrap();
    for _ in 0..2 {
        assert_eq!(
            next_change(&mut feed).await,
            Change::ProviderCredential {
                project_id: "acme".into(),
                provider: "openai".into()
            }
        );
    }
    // Credits added are announced with their exact amount.
    writer
        .add_credit_entry(credit(
            "cre_1",
            "acme",
            CreditKind::Grant,
            "2.000000000001",
            4,
        ))
        .await
        .unwrap();
    assert_eq!(
        next_change(&mut feed).await,
        Change::Credits {
            project_id: "acme".into(),
            amount: "2.000000000001".parse().unwrap()
        }
    );
    // Usage is not announced: it is no cached record.
    writer
        .insert_usage(&[event(1, "key_a", "gpt-4o", "0.5")], &[])
        .await
        .unwrap();
    writer.create_key(key("key_b", "default")).await.unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Key("key_b".into()));

    // A lost connection is followed by a resync once the feed listens again.
    let admin_url = std::env::var("MESHGATE_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| meshgate_store::testdb::DEFAULT_URL.into());
    let mut admin = <sqlx::PgConnection as sqlx::Connection>::connect(&admin_url)
        .await
        .unwrap();
    let database = db.url.rsplit('/').next().unwrap().to_string();
    let killed: Vec<bool> = sqlx::query_scalar(
        "SELECT pg_terminate_backend(pid) FROM pg_stat_activity \
         WHERE datname = $1 AND query ILIKE 'LISTEN%'",
    )
    .bind(&database)
    .fetch_all(&mut admin)
    .await
    .unwrap();
    assert!(!killed.is_empty(), "the feed's connection was found");
    assert_eq!(next_change(&mut feed).await, Change::Resync);
    writer.revoke_key("key_b", 7).await.unwrap();
    assert_eq!(next_change(&mut feed).await, Change::Key("key_b".into()));
    writer.close().await;
    watcher.close().await;
}

/// Every pool connection of a freshly migrated database reads whole rows: none may keep a
/// schema cached from midway through the migrations (sqlx then panics on `SELECT *`, whose
/// statement SQLite re-prepares with the columns added since). Fresh stores, rows read on
/// several connections at once, many times, as the race needs.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sqlite_every_connection_sees_the_migrated_schema() {
    for round in 0..40 {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("meshgate.db"))
            .await
            .unwrap();
        let written = event(round, "key_a", "gpt-4o", "0.1");
        store
            .insert_usage(std::slice::from_ref(&written), &[])
            .await
            .unwrap();
        let reads: Vec<_> = (0..8)
            .map(|_| {
                let store = store.clone();
                let id = written.id.clone();
                tokio::spawn(async move { store.get_usage_event(&id).await.unwrap() })
            })
            .collect();
        for read in reads {
            assert_eq!(
                read.await.unwrap().as_ref(),
                Some(&written),
                "round {round}"
            );
        }
    }
}
