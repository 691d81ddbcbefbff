//! Keys and their policies (with the default project's settings, batch claims and first usage
//! events), projects, signing keys and projects' provider credentials.

use super::*;

/// Keys, settings, batch claims and the usage ledger of the `default` project.
pub(super) async fn keys_settings_and_usage(store: &dyn Store) {
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

pub(super) fn project(id: &str, created_ms: i64) -> ProjectRecord {
    ProjectRecord {
        id: id.into(),
        name: format!("project {id}"),
        created_ms,
        settings: ProjectSettings::default(),
    }
}

/// Projects: the default one from the first migration, CRUD, duplicate refusal, order.
pub(super) async fn projects(store: &dyn Store) {
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
pub(super) async fn key_policy_update_and_rotation(store: &dyn Store) {
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

pub(super) fn signing_key(
    id: &str,
    project: &str,
    algorithm: &str,
    created_ms: i64,
) -> SigningKeyRecord {
    SigningKeyRecord {
        id: id.into(),
        project_id: project.into(),
        algorithm: algorithm.into(),
        material: format!("material-{id}"),
        created_ms,
        revoked_ms: None,
    }
}

pub(super) async fn signing_keys(store: &dyn Store) {
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

pub(super) fn credential(
    project: &str,
    provider: &str,
    sealed: &str,
    updated_ms: i64,
) -> ProviderCredential {
    ProviderCredential {
        project_id: project.into(),
        provider: provider.into(),
        sealed_api_key: sealed.into(),
        base_url: None,
        updated_ms,
    }
}

pub(super) async fn provider_credentials(store: &dyn Store) {
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
