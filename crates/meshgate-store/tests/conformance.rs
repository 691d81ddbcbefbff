//! The store conformance suite: every backend must pass the same checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshgate_store::{GroupBy, NewKey, Outcome, SqliteStore, Store, UsageEvent, UsageFilter};
use meshgate_types::{Money, Usage};

fn key(id: &str, project: &str) -> NewKey {
    NewKey {
        id: id.into(),
        project_id: project.into(),
        name: format!("name-{id}"),
        prefix: "mg_abcd".into(),
        secret_hash: format!("hash-{id}"),
        created_ms: 1000,
        expires_ms: None,
    }
}

fn event(n: u32, key: &str, model: &str, cost: &str) -> UsageEvent {
    UsageEvent {
        id: format!("0190-{n:08}"),
        request_id: format!("req-{n}"),
        project_id: "default".into(),
        key_id: Some(key.into()),
        surface: "openai".into(),
        endpoint: "chat_completions".into(),
        provider: "openai".into(),
        model: Some(model.into()),
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
        price_id: Some("builtin:test@2025-01-01".into()),
        error: None,
        upstream_request_id: Some("req_up".into()),
        started_ms: 10_000 + i64::from(n),
        ttfb_ms: Some(5),
        duration_ms: 9,
    }
}

async fn conformance(store: &dyn Store) {
    // Keys: create, list, revoke.
    store.create_key(key("key_a", "default")).await.unwrap();
    store.create_key(key("key_b", "default")).await.unwrap();
    assert_eq!(store.list_keys(None).await.unwrap().len(), 2);
    assert_eq!(store.active_keys().await.unwrap().len(), 2);
    let revoked = store.revoke_key("key_a", 2000).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(2000));
    // Revoking twice keeps the first time.
    let again = store.revoke_key("key_a", 3000).await.unwrap().unwrap();
    assert_eq!(again.revoked_ms, Some(2000));
    assert!(store.revoke_key("key_missing", 1).await.unwrap().is_none());
    let active = store.active_keys().await.unwrap();
    assert_eq!(active.len(), 1);
    assert_eq!(active[0].secret_hash, "hash-key_b");
    // Duplicate secret hashes are refused.
    assert!(store.create_key(key("key_b", "default")).await.is_err());

    // Settings.
    assert_eq!(store.get_setting("admin").await.unwrap(), None);
    store.set_setting("admin", "h1").await.unwrap();
    store.set_setting("admin", "h2").await.unwrap();
    assert_eq!(
        store.get_setting("admin").await.unwrap().as_deref(),
        Some("h2")
    );

    // Batch billing claims: first wins, release gives it back.
    assert!(store
        .claim_batch_billing("msgbatch_1", "default", 1)
        .await
        .unwrap());
    assert!(!store
        .claim_batch_billing("msgbatch_1", "default", 2)
        .await
        .unwrap());
    store.release_batch_billing("msgbatch_1").await.unwrap();
    assert!(store
        .claim_batch_billing("msgbatch_1", "default", 3)
        .await
        .unwrap());

    // Usage: exact sums, round trip, pagination, filters.
    let mut events = Vec::new();
    for n in 1..=25 {
        let (k, m) = if n % 3 == 0 {
            ("key_a", "gpt-4o")
        } else {
            ("key_b", "claude-sonnet-4-5")
        };
        events.push(event(n, k, m, "0.1"));
    }
    store.insert_usage(&events).await.unwrap();
    let page = store.list_usage(&UsageFilter::default(), 10).await.unwrap();
    assert_eq!(page.events.len(), 10);
    assert_eq!(page.events[0], events[24], "newest first, round trip exact");
    let mut seen = page.events.len();
    let mut cursor = page.next_before_id;
    while let Some(before) = cursor {
        let p = store
            .list_usage(
                &UsageFilter {
                    before_id: Some(before),
                    ..UsageFilter::default()
                },
                10,
            )
            .await
            .unwrap();
        seen += p.events.len();
        cursor = p.next_before_id;
    }
    assert_eq!(seen, 25);

    let by_model = store
        .usage_summary(&UsageFilter::default(), GroupBy::Model)
        .await
        .unwrap();
    assert_eq!(by_model.len(), 2);
    let gpt = by_model
        .iter()
        .find(|r| r.group.as_deref() == Some("gpt-4o"))
        .unwrap();
    assert_eq!(gpt.requests, 8);
    // 0.1 eight times is exactly 0.8: floating point would give 0.7999999999999999.
    assert_eq!(gpt.cost_usd, "0.8".parse::<Money>().unwrap());
    assert_eq!(gpt.input_uncached, 80);
    assert_eq!(gpt.cache_read, 40);
    let total: Money = by_model.iter().map(|r| r.cost_usd).sum();
    assert_eq!(total.to_string(), "2.5");
    let errors: u64 = by_model.iter().map(|r| r.errors).sum();
    assert_eq!(errors, 5);

    let only_key = UsageFilter {
        key_id: Some("key_a".into()),
        ..UsageFilter::default()
    };
    let by_key = store.usage_summary(&only_key, GroupBy::Key).await.unwrap();
    assert_eq!(by_key.len(), 1);
    assert_eq!(by_key[0].requests, 8);
    let window = UsageFilter {
        since_ms: Some(10_005),
        until_ms: Some(10_010),
        ..UsageFilter::default()
    };
    assert_eq!(
        store.list_usage(&window, 100).await.unwrap().events.len(),
        5
    );
    let other_project = UsageFilter {
        project_id: Some("other".into()),
        ..UsageFilter::default()
    };
    assert!(store
        .list_usage(&other_project, 100)
        .await
        .unwrap()
        .events
        .is_empty());

    // A batch larger than one INSERT statement holds is written whole (1207 rows: every
    // statement size the SQLite store uses).
    let big: Vec<UsageEvent> = (1000..2207)
        .map(|n| event(n, "key_b", "gpt-4o-mini", "0.001"))
        .collect();
    store.insert_usage(&big).await.unwrap();
    let mini = UsageFilter {
        model: Some("gpt-4o-mini".into()),
        ..UsageFilter::default()
    };
    let summary = store.usage_summary(&mini, GroupBy::Model).await.unwrap();
    assert_eq!(summary[0].requests, 1207);
    assert_eq!(summary[0].cost_usd.to_string(), "1.207");

    // A batch with a duplicate id is written all-or-none.
    let dup = vec![
        event(100, "key_a", "gpt-4o", "1"),
        event(1, "key_a", "gpt-4o", "1"),
    ];
    assert!(store.insert_usage(&dup).await.is_err());
    let gpt4o = UsageFilter {
        model: Some("gpt-4o".into()),
        ..UsageFilter::default()
    };
    let after = store.list_usage(&gpt4o, 1000).await.unwrap();
    assert_eq!(
        after.events.len(),
        8,
        "the duplicate batch left nothing behind"
    );
}

#[tokio::test]
async fn sqlite_file_store_conforms() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshgate.db");
    let store = SqliteStore::open(&path).await.unwrap();
    conformance(&store).await;
    drop(store);
    // Reopening runs no migration twice and keeps the data.
    let reopened = SqliteStore::open(&path).await.unwrap();
    assert_eq!(reopened.list_keys(None).await.unwrap().len(), 2);
}

#[tokio::test]
async fn sqlite_memory_store_conforms() {
    let store = SqliteStore::open_url("sqlite::memory:").await.unwrap();
    conformance(&store).await;
}
