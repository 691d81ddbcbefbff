//! The store conformance suite: every backend (SQLite in a file and in memory, PostgreSQL
//! in a fresh database per test) must pass the same checks.
#![allow(clippy::unwrap_used, clippy::expect_used)]

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
    keys_settings_and_usage(store).await;
    projects(store).await;
    key_policy_update_and_rotation(store).await;
    signing_keys(store).await;
    provider_credentials(store).await;
    credits(store).await;
    usage_attribution_debits_and_spend(store).await;
    audit(store).await;
}

/// Keys, settings, batch claims and the usage ledger of the `default` project.
async fn keys_settings_and_usage(store: &dyn Store) {
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

    // Resource owners: the first project recorded keeps the object.
    let owner = |id: &str, project: &str| ResourceOwner {
        resource_id: id.into(),
        project_id: project.into(),
        kind: "batch".into(),
        created_ms: 5,
    };
    assert_eq!(store.resource_owner("msgbatch_9").await.unwrap(), None);
    store
        .record_owners(&[owner("msgbatch_9", "acme"), owner("resp_9", "default")])
        .await
        .unwrap();
    store
        .record_owners(&[owner("msgbatch_9", "intruder")])
        .await
        .unwrap();
    assert_eq!(
        store.resource_owner("msgbatch_9").await.unwrap().as_deref(),
        Some("acme")
    );
    assert_eq!(
        store.resource_owner("resp_9").await.unwrap().as_deref(),
        Some("default")
    );

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
    store.insert_usage(&events, &[]).await.unwrap();
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
    // One event by id: exact, and none for an id never written (nor its prefix).
    assert_eq!(
        store.get_usage_event(&events[6].id).await.unwrap().as_ref(),
        Some(&events[6])
    );
    assert_eq!(store.get_usage_event("0190-00000099").await.unwrap(), None);
    assert_eq!(store.get_usage_event("0190-0000000").await.unwrap(), None);

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
    store.insert_usage(&big, &[]).await.unwrap();
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
    assert!(store.insert_usage(&dup, &[]).await.is_err());
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
    let asked = vec![
        event(1, "key_a", "gpt-4o", "1").id,
        event(100, "key_a", "gpt-4o", "1").id,
        "nope".to_string(),
    ];
    let present = store.usage_ids_present(&asked).await.unwrap();
    assert_eq!(
        present,
        [event(1, "key_a", "gpt-4o", "1").id].into_iter().collect(),
        "only ids already written are present"
    );
    assert!(store.usage_ids_present(&[]).await.unwrap().is_empty());
}

fn project(id: &str, created_ms: i64) -> ProjectRecord {
    ProjectRecord {
        id: id.into(),
        name: format!("project {id}"),
        created_ms,
        settings: ProjectSettings::default(),
    }
}

/// Projects: the default one from the first migration, CRUD, duplicate refusal, order.
async fn projects(store: &dyn Store) {
    let default = store.get_project("default").await.unwrap().unwrap();
    assert_eq!(default.name, "default");
    assert_eq!(default.settings, ProjectSettings::default());
    assert!(store.get_project("nope").await.unwrap().is_none());

    let mut acme = project("acme", 500);
    acme.settings = ProjectSettings {
        policy: Policy {
            allowed_models: Some(vec!["openai/gpt-4o".into(), "anthropic/*".into()]),
            limits: Limits {
                spend_daily_usd: Some(money("5.25")),
                ..Limits::default()
            },
        },
        credits_enforced: true,
        markup_percent: Some("12.5".parse().unwrap()),
        provider_markup_percent: BTreeMap::from([("openai".into(), "10".parse().unwrap())]),
        members: vec!["alice@example.com".into()],
    };
    assert_eq!(store.create_project(acme.clone()).await.unwrap(), acme);
    assert_eq!(store.get_project("acme").await.unwrap().unwrap(), acme);
    // An existing id is refused and the first record stays.
    assert!(store.create_project(project("acme", 1)).await.is_err());
    assert!(store.create_project(project("default", 1)).await.is_err());
    assert_eq!(store.get_project("acme").await.unwrap().unwrap(), acme);

    // Ordered by creation time, then id.
    store.create_project(project("beta", 500)).await.unwrap();
    store.create_project(project("zeta", 100)).await.unwrap();
    store.create_project(project("bulk", 600)).await.unwrap();
    let ids: Vec<String> = store
        .list_projects()
        .await
        .unwrap()
        .into_iter()
        .map(|p| p.id)
        .collect();
    assert_eq!(ids, ["default", "zeta", "acme", "beta", "bulk"]);

    // Update replaces name and settings; the creation time is not the caller's to change.
    let mut changed = acme.clone();
    changed.name = "Acme Inc".into();
    changed.created_ms = 999;
    changed.settings.credits_enforced = false;
    changed.settings.members.push("*".into());
    changed.settings.policy.allowed_models = None;
    let updated = store
        .update_project(changed.clone())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.name, "Acme Inc");
    assert_eq!(updated.created_ms, 500);
    assert_eq!(updated.settings, changed.settings);
    assert_eq!(store.get_project("acme").await.unwrap().unwrap(), updated);
    assert!(store
        .update_project(project("missing", 1))
        .await
        .unwrap()
        .is_none());
    assert!(store.get_project("missing").await.unwrap().is_none());
}

/// Keys carry a policy (JSON round trip), can be updated, and rotated with or without grace.
async fn key_policy_update_and_rotation(store: &dyn Store) {
    let policy = Policy {
        allowed_models: Some(vec!["openai/*".into()]),
        limits: Limits {
            requests_per_minute: Some(60),
            tokens_per_minute: Some(100_000),
            spend_total_usd: Some(money("1000")),
            spend_daily_usd: None,
            spend_monthly_usd: Some(money("100.50")),
        },
    };
    let mut new = key("key_acme", "acme");
    new.created_ms = 1500;
    new.expires_ms = Some(8000);
    new.policy = policy.clone();
    let created = store.create_key(new).await.unwrap();
    assert_eq!(created.policy, policy);
    let got = store.get_key("key_acme").await.unwrap().unwrap();
    assert_eq!(got, created);
    assert_eq!(got.policy, policy);
    assert_eq!(got.expires_ms, Some(8000));
    assert_eq!(got.rotated_ms, None);
    assert_eq!(got.previous_secret_hash, None);
    assert_eq!(got.previous_expires_ms, None);
    assert!(store.get_key("key_missing").await.unwrap().is_none());
    let acme_keys = store.list_keys(Some("acme")).await.unwrap();
    assert_eq!(acme_keys, vec![created.clone()]);
    assert_eq!(store.list_keys(None).await.unwrap().len(), 3);

    // Update replaces name, expiry and policy; the secret is untouched.
    let updated = store
        .update_key("key_acme", "renamed", None, &Policy::default())
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.name, "renamed");
    assert_eq!(updated.expires_ms, None);
    assert_eq!(updated.policy, Policy::default());
    assert_eq!(updated.secret_hash, "hash-key_acme");
    assert_eq!(store.get_key("key_acme").await.unwrap().unwrap(), updated);
    let updated = store
        .update_key("key_acme", "renamed", Some(90_000), &policy)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(updated.policy, policy);
    assert_eq!(updated.expires_ms, Some(90_000));
    assert!(store
        .update_key("key_missing", "x", None, &policy)
        .await
        .unwrap()
        .is_none());

    // Rotation with a grace period: the old hash is kept until the given time.
    let rotated = store
        .rotate_key("key_acme", "mg_new1", "hash-new1", Some(50_000), 4000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret_hash, "hash-new1");
    assert_eq!(rotated.prefix, "mg_new1");
    assert_eq!(rotated.rotated_ms, Some(4000));
    assert_eq!(
        rotated.previous_secret_hash.as_deref(),
        Some("hash-key_acme")
    );
    assert_eq!(rotated.previous_expires_ms, Some(50_000));
    assert_eq!(rotated.policy, policy, "rotation keeps the policy");
    assert_eq!(rotated.name, "renamed");
    assert_eq!(store.get_key("key_acme").await.unwrap().unwrap(), rotated);
    let active = store.active_keys().await.unwrap();
    let in_cache = active.iter().find(|k| k.id == "key_acme").unwrap();
    assert_eq!(in_cache, &rotated);
    assert!(active.iter().all(|k| k.secret_hash != "hash-key_acme"));

    // Rotation without grace: the previous hash is cleared, the old secret stops at once.
    let rotated = store
        .rotate_key("key_acme", "mg_new2", "hash-new2", None, 5000)
        .await
        .unwrap()
        .unwrap();
    assert_eq!(rotated.secret_hash, "hash-new2");
    assert_eq!(rotated.prefix, "mg_new2");
    assert_eq!(rotated.rotated_ms, Some(5000));
    assert_eq!(rotated.previous_secret_hash, None);
    assert_eq!(rotated.previous_expires_ms, None);
    let active = store.active_keys().await.unwrap();
    let in_cache = active.iter().find(|k| k.id == "key_acme").unwrap();
    assert_eq!(in_cache.secret_hash, "hash-new2");
    assert_eq!(in_cache.previous_secret_hash, None);

    // A new secret that another key already has is refused, and nothing changes.
    assert!(store
        .rotate_key("key_acme", "mg_x", "hash-key_b", Some(1), 6000)
        .await
        .is_err());
    assert_eq!(store.get_key("key_acme").await.unwrap().unwrap(), rotated);

    // Missing and revoked keys are not rotated.
    assert!(store
        .rotate_key("key_missing", "mg_x", "hash-x", None, 6000)
        .await
        .unwrap()
        .is_none());
    assert!(store
        .rotate_key("key_a", "mg_x", "hash-x", Some(9000), 6000)
        .await
        .unwrap()
        .is_none());
    let key_a = store.get_key("key_a").await.unwrap().unwrap();
    assert_eq!(key_a.secret_hash, "hash-key_a");
    assert_eq!(key_a.rotated_ms, None);

    // Revoking a rotated key takes it out of the active set and keeps its fields.
    let revoked = store.revoke_key("key_acme", 7000).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(7000));
    assert_eq!(revoked.rotated_ms, Some(5000));
    assert_eq!(revoked.policy, policy);
    assert!(store
        .active_keys()
        .await
        .unwrap()
        .iter()
        .all(|k| k.id != "key_acme"));
    assert!(store
        .rotate_key("key_acme", "mg_x", "hash-x", None, 8000)
        .await
        .unwrap()
        .is_none());
}

fn signing_key(id: &str, project: &str, algorithm: &str, created_ms: i64) -> SigningKeyRecord {
    SigningKeyRecord {
        id: id.into(),
        project_id: project.into(),
        algorithm: algorithm.into(),
        material: format!("material-{id}"),
        created_ms,
        revoked_ms: None,
    }
}

async fn signing_keys(store: &dyn Store) {
    let sk1 = signing_key("sk_1", "acme", "HS256", 100);
    let sk2 = signing_key("sk_2", "default", "EdDSA", 200);
    let sk3 = signing_key("sk_3", "acme", "EdDSA", 300);
    for k in [&sk3, &sk1, &sk2] {
        assert_eq!(&store.create_signing_key(k.clone()).await.unwrap(), k);
    }
    assert!(store.create_signing_key(sk1.clone()).await.is_err());
    let all = store.list_signing_keys(None).await.unwrap();
    assert_eq!(all, vec![sk1.clone(), sk2.clone(), sk3.clone()]);
    // The material (skipped in API output) is stored.
    assert_eq!(all[0].material, "material-sk_1");
    let acme = store.list_signing_keys(Some("acme")).await.unwrap();
    assert_eq!(acme, vec![sk1.clone(), sk3.clone()]);
    assert!(store
        .list_signing_keys(Some("zeta"))
        .await
        .unwrap()
        .is_empty());

    let revoked = store.revoke_signing_key("sk_1", 10).await.unwrap().unwrap();
    assert_eq!(revoked.revoked_ms, Some(10));
    assert_eq!(revoked.material, sk1.material);
    let again = store.revoke_signing_key("sk_1", 20).await.unwrap().unwrap();
    assert_eq!(
        again.revoked_ms,
        Some(10),
        "the first revocation time stays"
    );
    assert!(store
        .revoke_signing_key("sk_missing", 10)
        .await
        .unwrap()
        .is_none());
    let acme = store.list_signing_keys(Some("acme")).await.unwrap();
    assert_eq!(acme[0].revoked_ms, Some(10));
    assert_eq!(acme[1].revoked_ms, None);
}

fn credential(project: &str, provider: &str, sealed: &str, updated_ms: i64) -> ProviderCredential {
    ProviderCredential {
        project_id: project.into(),
        provider: provider.into(),
        sealed_api_key: sealed.into(),
        base_url: None,
        updated_ms,
    }
}

async fn provider_credentials(store: &dyn Store) {
    let find = |list: &[ProviderCredential], project: &str, provider: &str| {
        list.iter()
            .find(|c| c.project_id == project && c.provider == provider)
            .cloned()
    };
    assert!(store
        .list_provider_credentials(None)
        .await
        .unwrap()
        .is_empty());
    let openai = credential("acme", "openai", "sealed-1", 1);
    let mut anthropic = credential("acme", "anthropic", "sealed-a", 2);
    anthropic.base_url = Some("https://proxy.example/v1".into());
    let other = credential("default", "openai", "sealed-d", 3);
    for c in [&openai, &anthropic, &other] {
        store.set_provider_credential(c.clone()).await.unwrap();
    }
    let acme = store.list_provider_credentials(Some("acme")).await.unwrap();
    assert_eq!(acme.len(), 2);
    let got = find(&acme, "acme", "openai").unwrap();
    assert_eq!(got, openai);
    // `sealed_api_key` is skipped in API output but must be stored.
    assert_eq!(got.sealed_api_key, "sealed-1");
    assert_eq!(find(&acme, "acme", "anthropic").unwrap(), anthropic);
    assert_eq!(
        store.list_provider_credentials(None).await.unwrap().len(),
        3
    );

    // Setting again replaces: still one credential per (project, provider).
    let mut replaced = credential("acme", "openai", "sealed-2", 4);
    replaced.base_url = Some("https://eu.example".into());
    store
        .set_provider_credential(replaced.clone())
        .await
        .unwrap();
    let acme = store.list_provider_credentials(Some("acme")).await.unwrap();
    assert_eq!(acme.len(), 2);
    assert_eq!(find(&acme, "acme", "openai").unwrap(), replaced);
    let all = store.list_provider_credentials(None).await.unwrap();
    assert_eq!(find(&all, "default", "openai").unwrap(), other);

    assert!(store
        .delete_provider_credential("acme", "openai")
        .await
        .unwrap());
    assert!(!store
        .delete_provider_credential("acme", "openai")
        .await
        .unwrap());
    assert!(!store
        .delete_provider_credential("zeta", "anthropic")
        .await
        .unwrap());
    let acme = store.list_provider_credentials(Some("acme")).await.unwrap();
    assert_eq!(acme, vec![anthropic]);
    assert_eq!(
        store.list_provider_credentials(None).await.unwrap().len(),
        2
    );
}

fn credit(id: &str, project: &str, kind: CreditKind, amount: &str, created_ms: i64) -> CreditEntry {
    CreditEntry {
        id: id.into(),
        project_id: project.into(),
        kind,
        amount_usd: money(amount),
        created_ms,
        actor: Some("admin".into()),
        note: Some(format!("note {id}")),
    }
}

async fn credits(store: &dyn Store) {
    assert_eq!(store.credit_balance("acme").await.unwrap(), Money::ZERO);
    assert!(store
        .list_credit_entries("acme", None, 10)
        .await
        .unwrap()
        .is_empty());
    // 0.1 ten times is exactly 1: floating point would give 0.9999999999999999.
    for n in 1..=10 {
        let entry = credit(&format!("cr_{n:04}"), "acme", CreditKind::Grant, "0.1", n);
        store.add_credit_entry(entry).await.unwrap();
    }
    assert_eq!(store.credit_balance("acme").await.unwrap(), money("1"));
    let mut adjustment = credit("cr_0014", "acme", CreditKind::Adjustment, "-0.35", 14);
    adjustment.actor = None;
    adjustment.note = None;
    for entry in [
        credit("cr_0011", "acme", CreditKind::Purchase, "25.50", 11),
        credit("cr_0012", "acme", CreditKind::Refund, "2.25", 12),
        credit("cr_0013", "acme", CreditKind::UsageDebit, "-0.004", 13),
        adjustment.clone(),
        credit("cr_0015", "beta", CreditKind::Grant, "7", 15),
    ] {
        store.add_credit_entry(entry).await.unwrap();
    }
    // A duplicate id is refused.
    assert!(store
        .add_credit_entry(credit("cr_0001", "acme", CreditKind::Grant, "100", 16))
        .await
        .is_err());
    assert_eq!(store.credit_balance("acme").await.unwrap(), money("28.396"));
    assert_eq!(store.credit_balance("beta").await.unwrap(), money("7"));
    assert_eq!(store.credit_balance("zeta").await.unwrap(), Money::ZERO);

    // Newest first (by id), each kind round trips.
    let first = store.list_credit_entries("acme", None, 5).await.unwrap();
    let ids: Vec<&str> = first.iter().map(|e| e.id.as_str()).collect();
    assert_eq!(ids, ["cr_0014", "cr_0013", "cr_0012", "cr_0011", "cr_0010"]);
    assert_eq!(first[0], adjustment);
    assert_eq!(
        first[1],
        credit("cr_0013", "acme", CreditKind::UsageDebit, "-0.004", 13)
    );
    assert_eq!(first[2].kind, CreditKind::Refund);
    assert_eq!(first[3].kind, CreditKind::Purchase);
    assert_eq!(first[3].amount_usd, money("25.5"));
    assert_eq!(first[4].kind, CreditKind::Grant);

    // Paging back with `before_id` sees every entry once, in order, and no other project's.
    let mut seen: Vec<String> = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let page = store
            .list_credit_entries("acme", before.as_deref(), 4)
            .await
            .unwrap();
        assert!(page.len() <= 4);
        if page.is_empty() {
            break;
        }
        before = page.last().map(|e| e.id.clone());
        seen.extend(page.into_iter().map(|e| e.id));
    }
    let expected: Vec<String> = (1..=14).rev().map(|n| format!("cr_{n:04}")).collect();
    assert_eq!(seen, expected);
    let older = store
        .list_credit_entries("acme", Some("cr_0003"), 100)
        .await
        .unwrap();
    assert_eq!(older.len(), 2);
    // The limit is clamped to 1..=1000.
    assert_eq!(
        store
            .list_credit_entries("acme", None, 0)
            .await
            .unwrap()
            .len(),
        1
    );

    // Many entries at once (more than one INSERT statement holds) through the ledger path.
    let debits: Vec<CreditEntry> = (0..5000)
        .map(|n| {
            credit(
                &format!("cr_bulk_{n:05}"),
                "bulk",
                CreditKind::UsageDebit,
                "-0.001",
                n,
            )
        })
        .collect();
    store.insert_usage(&[], &debits).await.unwrap();
    assert_eq!(store.credit_balance("bulk").await.unwrap(), money("-5"));
    assert_eq!(
        store
            .list_credit_entries("bulk", None, 5000)
            .await
            .unwrap()
            .len(),
        1000
    );
}

/// 2025-01-02T00:00:00Z: a UTC day boundary.
const DAY2_MS: i64 = 1_735_776_000_000;

#[allow(clippy::too_many_arguments)]
fn acme_event(
    n: u32,
    key: Option<&str>,
    token: Option<&str>,
    user: Option<&str>,
    room: Option<&str>,
    delegation: Option<&str>,
    annotations: &[(&str, &str)],
    cost: Option<&str>,
    markup: Option<&str>,
    started_ms: i64,
) -> UsageEvent {
    let mut e = event(n, key.unwrap_or(""), "m-acme", "0");
    e.id = format!("0191-{n:08}");
    e.project_id = "acme".into();
    e.key_id = key.map(Into::into);
    e.token_id = token.map(Into::into);
    e.user = user.map(Into::into);
    e.room = room.map(Into::into);
    e.delegation_id = delegation.map(Into::into);
    e.annotations = annotations
        .iter()
        .map(|(k, v)| (k.to_string(), v.to_string()))
        .collect();
    e.cost_usd = cost.map(money);
    e.markup_usd = markup.map(money);
    e.started_ms = started_ms;
    e.outcome = Outcome::Ok;
    e
}

fn debit_for(id: &str, e: &UsageEvent) -> CreditEntry {
    let charged = e.cost_usd.unwrap_or(Money::ZERO) + e.markup_usd.unwrap_or(Money::ZERO);
    CreditEntry {
        id: id.into(),
        project_id: e.project_id.clone(),
        kind: CreditKind::UsageDebit,
        amount_usd: Money(-charged.0),
        created_ms: e.started_ms,
        actor: None,
        note: Some(e.id.clone()),
    }
}

fn group<'a>(rows: &'a [SummaryRow], name: Option<&str>) -> &'a SummaryRow {
    rows.iter()
        .find(|r| r.group.as_deref() == name)
        .unwrap_or_else(|| panic!("no group {name:?} in {rows:?}"))
}

async fn usage_attribution_debits_and_spend(store: &dyn Store) {
    let e1 = acme_event(
        1,
        Some("key_acme"),
        Some("tok_1"),
        Some("alice"),
        Some("room-1"),
        Some("dlg_1"),
        &[("team", "search"), ("env", "prod")],
        Some("0.1"),
        Some("0.01"),
        DAY2_MS - 1,
    );
    let e2 = acme_event(
        2,
        Some("key_acme"),
        None,
        Some("bob"),
        Some("room-1"),
        None,
        &[("team", "search"), ("env", "dev")],
        Some("0.2"),
        None,
        DAY2_MS,
    );
    let e3 = acme_event(
        3,
        None,
        Some("tok_2"),
        Some("alice"),
        Some("room-2"),
        Some("dlg_1"),
        &[
            ("team", "ads"),
            ("env", "prod"),
            ("cost.center", "r&d \"x\""),
        ],
        None,
        Some("0.05"),
        DAY2_MS + 3_600_000,
    );
    let e4 = acme_event(
        4,
        None,
        None,
        None,
        None,
        Some("dlg_2"),
        &[],
        Some("0.3"),
        Some("0.03"),
        DAY2_MS + 86_400_000,
    );
    let events = vec![e1.clone(), e2.clone(), e3.clone(), e4.clone()];
    let debits: Vec<CreditEntry> = events
        .iter()
        .enumerate()
        .map(|(i, e)| debit_for(&format!("cr_0100_{i}"), e))
        .collect();
    let before = store.credit_balance("acme").await.unwrap();
    store.insert_usage(&events, &debits).await.unwrap();
    let after = store.credit_balance("acme").await.unwrap();
    assert_eq!(before.0 - after.0, money("0.69").0);
    assert_eq!(
        store
            .list_credit_entries("acme", None, 1)
            .await
            .unwrap()
            .first()
            .unwrap(),
        &debits[3]
    );

    // Atomic: a duplicate event id rolls back the debits written with it...
    let e5 = acme_event(
        5,
        None,
        None,
        None,
        None,
        None,
        &[],
        Some("9"),
        None,
        DAY2_MS,
    );
    let bad = vec![e5.clone(), e1.clone()];
    assert!(store
        .insert_usage(&bad, &[debit_for("cr_0200", &e5)])
        .await
        .is_err());
    // ...and a duplicate debit id rolls back the events.
    assert!(store
        .insert_usage(std::slice::from_ref(&e5), &[debit_for("cr_0100_0", &e5)])
        .await
        .is_err());
    assert_eq!(store.credit_balance("acme").await.unwrap(), after);
    let acme = UsageFilter {
        project_id: Some("acme".into()),
        ..UsageFilter::default()
    };
    let listed = store.list_usage(&acme, 100).await.unwrap();
    assert_eq!(listed.events.len(), 4, "the failed batches left nothing");
    assert!(store
        .list_credit_entries("acme", None, 1000)
        .await
        .unwrap()
        .iter()
        .all(|c| c.id != "cr_0200"));

    // Round trip of the new fields, newest first.
    assert_eq!(
        listed.events,
        vec![e4.clone(), e3.clone(), e2.clone(), e1.clone()]
    );

    // Filters: each new column, and annotations (every pair must match).
    let count = |filter: UsageFilter| async move {
        store
            .list_usage(&filter, 1000)
            .await
            .unwrap()
            .events
            .into_iter()
            .map(|e| e.id)
            .collect::<Vec<_>>()
    };
    let with = |f: &dyn Fn(&mut UsageFilter)| {
        let mut filter = acme.clone();
        f(&mut filter);
        filter
    };
    let ids = |es: &[&UsageEvent]| es.iter().map(|e| e.id.clone()).collect::<Vec<_>>();
    assert_eq!(
        count(with(&|f| f.token_id = Some("tok_1".into()))).await,
        ids(&[&e1])
    );
    assert_eq!(
        count(with(&|f| f.user = Some("alice".into()))).await,
        ids(&[&e3, &e1])
    );
    assert_eq!(
        count(with(&|f| f.room = Some("room-1".into()))).await,
        ids(&[&e2, &e1])
    );
    assert_eq!(
        count(with(&|f| f.delegation_id = Some("dlg_1".into()))).await,
        ids(&[&e3, &e1])
    );
    assert_eq!(
        count(with(
            &|f| f.annotations = vec![("team".into(), "search".into())]
        ))
        .await,
        ids(&[&e2, &e1])
    );
    assert_eq!(
        count(with(&|f| {
            f.annotations = vec![
                ("team".into(), "search".into()),
                ("env".into(), "prod".into()),
            ]
        }))
        .await,
        ids(&[&e1])
    );
    assert_eq!(
        count(with(&|f| {
            f.annotations = vec![
                ("env".into(), "prod".into()),
                ("team".into(), "nobody".into()),
            ]
        }))
        .await,
        ids(&[])
    );
    assert_eq!(
        count(with(
            &|f| f.annotations = vec![("cost.center".into(), "r&d \"x\"".into())]
        ))
        .await,
        ids(&[&e3])
    );
    // A name that is no annotation (and would break a naive JSON path) matches nothing.
    assert_eq!(
        count(with(
            &|f| f.annotations = vec![("team\"') OR 1=1 --".into(), "search".into())]
        ))
        .await,
        ids(&[])
    );
    assert_eq!(
        count(with(&|f| {
            f.user = Some("alice".into());
            f.annotations = vec![("env".into(), "prod".into())];
            f.since_ms = Some(DAY2_MS);
        }))
        .await,
        ids(&[&e3])
    );

    // Groupings, with markup summed beside the cost.
    let summary = |g: GroupBy| {
        let filter = acme.clone();
        async move { store.usage_summary(&filter, g).await.unwrap() }
    };
    let by_day = summary(GroupBy::Day).await;
    assert_eq!(by_day.len(), 3);
    assert_eq!(group(&by_day, Some("2025-01-01")).requests, 1);
    let day2 = group(&by_day, Some("2025-01-02"));
    assert_eq!(day2.requests, 2);
    assert_eq!(day2.cost_usd, money("0.2"));
    assert_eq!(day2.markup_usd, money("0.05"));
    assert_eq!(group(&by_day, Some("2025-01-03")).requests, 1);

    let by_team = summary(GroupBy::Annotation("team".into())).await;
    assert_eq!(by_team.len(), 3);
    let search = group(&by_team, Some("search"));
    assert_eq!(search.requests, 2);
    assert_eq!(search.cost_usd, money("0.3"));
    assert_eq!(search.markup_usd, money("0.01"));
    assert_eq!(group(&by_team, Some("ads")).requests, 1);
    assert_eq!(group(&by_team, None).requests, 1);
    let by_center = summary(GroupBy::Annotation("cost.center".into())).await;
    assert_eq!(group(&by_center, Some("r&d \"x\"")).requests, 1);
    assert_eq!(group(&by_center, None).requests, 3);

    let by_user = summary(GroupBy::User).await;
    assert_eq!(by_user.len(), 3);
    let alice = group(&by_user, Some("alice"));
    assert_eq!(alice.requests, 2);
    assert_eq!(alice.cost_usd, money("0.1"));
    assert_eq!(alice.markup_usd, money("0.06"));
    assert_eq!(group(&by_user, Some("bob")).requests, 1);
    assert_eq!(group(&by_user, None).requests, 1);

    let by_room = summary(GroupBy::Room).await;
    assert_eq!(group(&by_room, Some("room-1")).requests, 2);
    assert_eq!(group(&by_room, Some("room-2")).requests, 1);
    assert_eq!(group(&by_room, None).requests, 1);

    let by_token = summary(GroupBy::Token).await;
    assert_eq!(by_token.len(), 3);
    assert_eq!(group(&by_token, Some("tok_1")).requests, 1);
    assert_eq!(group(&by_token, Some("tok_2")).markup_usd, money("0.05"));
    assert_eq!(group(&by_token, None).requests, 2);

    let by_delegation = summary(GroupBy::Delegation).await;
    assert_eq!(by_delegation.len(), 3);
    let dlg1 = group(&by_delegation, Some("dlg_1"));
    assert_eq!(dlg1.requests, 2);
    assert_eq!(dlg1.cost_usd, money("0.1"));
    assert_eq!(dlg1.markup_usd, money("0.06"));
    assert_eq!(group(&by_delegation, Some("dlg_2")).requests, 1);

    let by_key = summary(GroupBy::Key).await;
    assert_eq!(group(&by_key, Some("key_acme")).requests, 2);
    assert_eq!(group(&by_key, None).requests, 2);

    let by_project = store
        .usage_summary(&UsageFilter::default(), GroupBy::Project)
        .await
        .unwrap();
    assert_eq!(by_project.len(), 2);
    let acme_row = group(&by_project, Some("acme"));
    assert_eq!(acme_row.requests, 4);
    assert_eq!(acme_row.cost_usd, money("0.6"));
    assert_eq!(acme_row.markup_usd, money("0.09"));
    let default_row = group(&by_project, Some("default"));
    assert_eq!(default_row.requests, 1232);
    assert_eq!(default_row.cost_usd, money("3.707"));
    assert_eq!(default_row.markup_usd, Money::ZERO);

    // Spend: cost plus markup, exact, per scope, since a time (inclusive).
    let spend = |scope: SpendScope, since: Option<i64>| async move {
        store.spend(&scope, since).await.unwrap()
    };
    let project = |id: &str| SpendScope::Project(id.into());
    let key_scope = |id: &str| SpendScope::Key(id.into());
    let delegation = |id: &str| SpendScope::Delegation(id.into());
    assert_eq!(spend(project("acme"), None).await, money("0.69"));
    assert_eq!(spend(project("acme"), Some(DAY2_MS)).await, money("0.58"));
    assert_eq!(
        spend(project("acme"), Some(DAY2_MS + 86_400_001)).await,
        Money::ZERO
    );
    assert_eq!(spend(project("default"), None).await, money("3.707"));
    assert_eq!(spend(project("zeta"), None).await, Money::ZERO);
    assert_eq!(spend(key_scope("key_acme"), None).await, money("0.31"));
    assert_eq!(
        spend(key_scope("key_acme"), Some(DAY2_MS)).await,
        money("0.2")
    );
    assert_eq!(spend(key_scope("key_a"), None).await, money("0.8"));
    assert_eq!(spend(delegation("dlg_1"), None).await, money("0.16"));
    assert_eq!(
        spend(delegation("dlg_1"), Some(DAY2_MS + 1)).await,
        money("0.05")
    );
    assert_eq!(spend(delegation("dlg_2"), None).await, money("0.33"));
    assert_eq!(spend(delegation("nobody"), None).await, Money::ZERO);
}

fn audit_event(n: u32, at_ms: i64, actor: &str, project: Option<&str>, action: &str) -> AuditEvent {
    AuditEvent {
        id: format!("aud_{n:04}"),
        at_ms,
        actor: actor.into(),
        project_id: project.map(Into::into),
        action: action.into(),
        target: Some(format!("target-{n}")),
        details: serde_json::json!({"n": n, "nested": {"list": [1, "two", null]}, "price": "0.10"}),
    }
}

async fn audit(store: &dyn Store) {
    assert!(store
        .list_audit(&AuditFilter::default(), 100)
        .await
        .unwrap()
        .is_empty());
    let mut no_target = audit_event(4, 400, "admin", None, "settings.update");
    no_target.target = None;
    no_target.details = serde_json::json!({});
    let events = vec![
        audit_event(1, 100, "admin", Some("acme"), "key.create"),
        audit_event(2, 200, "admin", Some("acme"), "key.revoke"),
        audit_event(3, 300, "alice", Some("default"), "project.update"),
        no_target,
        audit_event(5, 500, "admin", Some("acme"), "key.create"),
    ];
    for e in &events {
        store.record_audit(e.clone()).await.unwrap();
    }
    assert!(store.record_audit(events[0].clone()).await.is_err());
    let ids = |list: Vec<AuditEvent>| list.into_iter().map(|e| e.id).collect::<Vec<_>>();
    let list = |filter: AuditFilter, limit: u32| async move {
        store.list_audit(&filter, limit).await.unwrap()
    };

    let all = list(AuditFilter::default(), 100).await;
    assert_eq!(all.len(), 5);
    assert_eq!(all[4], events[0], "round trip, details JSON included");
    assert_eq!(all[1], events[3]);
    assert_eq!(
        ids(all),
        ["aud_0005", "aud_0004", "aud_0003", "aud_0002", "aud_0001"]
    );
    let acme = AuditFilter {
        project_id: Some("acme".into()),
        ..AuditFilter::default()
    };
    assert_eq!(
        ids(list(acme.clone(), 100).await),
        ["aud_0005", "aud_0002", "aud_0001"]
    );
    let creates = AuditFilter {
        action: Some("key.create".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ids(list(creates, 100).await), ["aud_0005", "aud_0001"]);
    let window = AuditFilter {
        since_ms: Some(200),
        until_ms: Some(400),
        ..AuditFilter::default()
    };
    assert_eq!(ids(list(window, 100).await), ["aud_0003", "aud_0002"]);
    let page = AuditFilter {
        before_id: Some("aud_0003".into()),
        ..AuditFilter::default()
    };
    assert_eq!(ids(list(page.clone(), 100).await), ["aud_0002", "aud_0001"]);
    assert_eq!(ids(list(page, 1).await), ["aud_0002"]);
    let combined = AuditFilter {
        project_id: Some("acme".into()),
        action: Some("key.revoke".into()),
        since_ms: Some(150),
        until_ms: Some(250),
        before_id: Some("aud_0005".into()),
    };
    assert_eq!(ids(list(combined, 100).await), ["aud_0002"]);
    // The limit is clamped to 1..=1000.
    assert_eq!(ids(list(acme, 0).await), ["aud_0005"]);
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
