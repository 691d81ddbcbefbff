//! Upgrading a SQLite database written by schema v2: migration 3 keeps every row and gives
//! the new columns their defaults (SQLite only; the conformance suite covers behaviour).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshgate_store::{
    CreditEntry, CreditKind, Policy, ProjectSettings, SqliteStore, Store, UsageFilter,
};
use sqlx::sqlite::SqliteConnectOptions;
use sqlx::{ConnectOptions, Connection};
use std::collections::BTreeMap;

#[tokio::test]
async fn v2_database_upgrades_in_place() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("meshgate.db");
    {
        // A v2 database, as the previous release left it.
        let mut conn = SqliteConnectOptions::new()
            .filename(&path)
            .create_if_missing(true)
            .connect()
            .await
            .unwrap();
        let v2 = [
            include_str!("../migrations/sqlite/0001_init.sql"),
            include_str!("../migrations/sqlite/0002_billed_batches.sql"),
            "CREATE TABLE schema_migrations (version INTEGER PRIMARY KEY, applied_ms INTEGER NOT NULL);
             INSERT INTO schema_migrations VALUES (1, 0), (2, 0);
             INSERT INTO api_keys (id, project_id, name, prefix, secret_hash, created_ms)
                 VALUES ('key_old', 'default', 'old', 'mg_old', 'hash-old', 1);
             INSERT INTO usage_events (id, request_id, project_id, key_id, surface, endpoint,
                 provider, model, streamed, status, outcome, usage_json, cost_usd, started_ms,
                 duration_ms)
                 VALUES ('0190-old', 'req-old', 'default', 'key_old', 'openai',
                 'chat_completions', 'openai', 'gpt-4o', 0, 200, 'ok', '{}', '0.25', 1000, 5);",
        ];
        for sql in v2 {
            sqlx::raw_sql(sql).execute(&mut conn).await.unwrap();
        }
        conn.close().await.unwrap();
    }

    let store = SqliteStore::open(&path).await.unwrap();
    let project = store.get_project("default").await.unwrap().unwrap();
    assert_eq!(project.settings, ProjectSettings::default());
    let key = store.get_key("key_old").await.unwrap().unwrap();
    assert_eq!(key.policy, Policy::default());
    assert_eq!(key.secret_hash, "hash-old");
    assert_eq!(key.rotated_ms, None);
    assert_eq!(key.previous_secret_hash, None);
    let page = store.list_usage(&UsageFilter::default(), 10).await.unwrap();
    assert_eq!(page.events.len(), 1);
    let old = &page.events[0];
    assert_eq!(old.annotations, BTreeMap::new());
    assert_eq!(old.markup_usd, None);
    assert_eq!(old.user, None);
    assert_eq!(old.cost_usd, Some("0.25".parse().unwrap()));

    // The new tables work on the upgraded file.
    store
        .add_credit_entry(CreditEntry {
            id: "cr_1".into(),
            project_id: "default".into(),
            kind: CreditKind::Grant,
            amount_usd: "3".parse().unwrap(),
            created_ms: 2,
            actor: None,
            note: None,
        })
        .await
        .unwrap();
    assert_eq!(
        store.credit_balance("default").await.unwrap(),
        "3".parse().unwrap()
    );
    assert_eq!(
        store
            .spend(&meshgate_store::SpendScope::Key("key_old".into()), None)
            .await
            .unwrap(),
        "0.25".parse().unwrap()
    );
}
