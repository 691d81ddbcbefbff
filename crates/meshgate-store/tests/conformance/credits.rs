//! Credits, and the usage ledger's attribution, credit debits and spend totals.

use super::*;

pub(super) fn credit(
    id: &str,
    project: &str,
    kind: CreditKind,
    amount: &str,
    created_ms: i64,
) -> CreditEntry {
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

pub(super) async fn credits(store: &dyn Store) {
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

pub(super) async fn usage_attribution_debits_and_spend(store: &dyn Store) {
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
