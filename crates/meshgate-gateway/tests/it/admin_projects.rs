//! The admin API for projects and credits: create, list, show, update (settings reach the
//! next call), the credit ledger and its balance, refusals, and the audit trail.

use crate::admin::{audit_log, audited, chat, expect};
use crate::harness::Harness;
use reqwest::Method;
use serde_json::json;

#[tokio::test]
async fn projects_are_created_listed_shown_and_updated() {
    let h = Harness::start().await;
    let created = expect(
        &h,
        Method::POST,
        "/admin/v1/projects",
        Some(json!({
            "id": "acme",
            "name": "Acme",
            "settings": {
                "allowed_models": ["openai/*"],
                "limits": {"spend_monthly_usd": "100"},
                "markup_percent": "12.5",
                "provider_markup_percent": {"anthropic": "20"},
                "members": ["alice@example.com"]
            }
        })),
        201,
    )
    .await;
    assert_eq!(created["id"], "acme");
    assert_eq!(created["settings"]["markup_percent"], "12.5");
    assert_eq!(created["settings"]["limits"]["spend_monthly_usd"], "100");
    let generated = expect(
        &h,
        Method::POST,
        "/admin/v1/projects",
        Some(json!({"name": "Anonymous"})),
        201,
    )
    .await;
    assert!(generated["id"].as_str().unwrap().starts_with("proj_"));
    assert_eq!(generated["settings"]["credits_enforced"], false);

    let list = expect(&h, Method::GET, "/admin/v1/projects", None, 200).await;
    let ids: Vec<&str> = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|p| p["id"].as_str())
        .collect();
    assert!(ids.contains(&"default") && ids.contains(&"acme"), "{ids:?}");
    let shown = expect(&h, Method::GET, "/admin/v1/projects/acme", None, 200).await;
    assert_eq!(shown["settings"]["members"], json!(["alice@example.com"]));

    // The project's model list reaches the next call of its keys.
    let key = expect(
        &h,
        Method::POST,
        "/admin/v1/keys",
        Some(json!({"name": "acme-key", "project_id": "acme"})),
        201,
    )
    .await;
    let secret = key["secret"].as_str().unwrap().to_string();
    assert_eq!(key["project_id"], "acme");
    assert_eq!(chat(&h, &secret, "gpt-4o-mini").await.status(), 200);
    let updated = expect(
        &h,
        Method::PATCH,
        "/admin/v1/projects/acme",
        Some(json!({
            "name": "Acme Inc",
            "allowed_models": ["anthropic/*"],
            "markup_percent": null,
            "limits": {"requests_per_minute": 1000}
        })),
        200,
    )
    .await;
    assert_eq!(updated["name"], "Acme Inc");
    assert!(updated["settings"]["markup_percent"].is_null());
    assert_eq!(
        updated["settings"]["limits"],
        json!({"requests_per_minute": 1000, "spend_monthly_usd": "100"}),
        "a limits patch keeps the limits it does not name"
    );
    assert_eq!(
        updated["settings"]["provider_markup_percent"]["anthropic"],
        "20"
    );
    assert_eq!(chat(&h, &secret, "gpt-4o-mini").await.status(), 403);
    expect(
        &h,
        Method::PATCH,
        "/admin/v1/projects/acme",
        Some(json!({"allowed_models": null})),
        200,
    )
    .await;
    assert_eq!(chat(&h, &secret, "gpt-4o-mini").await.status(), 200);
    let keys = expect(&h, Method::GET, "/admin/v1/keys?project_id=acme", None, 200).await;
    assert_eq!(keys["data"].as_array().unwrap().len(), 1);

    // Refusals.
    expect(&h, Method::GET, "/admin/v1/projects/nope", None, 404).await;
    expect(
        &h,
        Method::PATCH,
        "/admin/v1/projects/nope",
        Some(json!({"name": "x"})),
        404,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects",
        Some(json!({"id": "acme", "name": "again"})),
        409,
    )
    .await;
    for bad in [
        json!({"id": "Has Caps", "name": "x"}),
        json!({"id": "x".repeat(65), "name": "x"}),
        json!({"id": "ok", "name": " "}),
        json!({"name": "x", "settings": {"markup_percent": "-5"}}),
        json!({"name": "x", "settings": {"unknown": true}}),
    ] {
        expect(&h, Method::POST, "/admin/v1/projects", Some(bad), 400).await;
    }
    expect(
        &h,
        Method::PATCH,
        "/admin/v1/projects/acme",
        Some(json!({"limits": {"spend_daily_usd": "lots"}})),
        400,
    )
    .await;

    let created_events = audited(&h, "project.created").await;
    assert_eq!(created_events.len(), 2);
    let updates = audited(&h, "project.updated").await;
    assert_eq!(updates.len(), 2);
    assert_eq!(updates[1]["project_id"], "acme");
    assert_eq!(updates[1]["actor"], "admin");
    assert_eq!(updates[1]["details"]["name"], "Acme Inc");
    let only_acme = expect(
        &h,
        Method::GET,
        "/admin/v1/audit?project_id=acme&action=project.updated",
        None,
        200,
    )
    .await;
    assert_eq!(only_acme["data"].as_array().unwrap().len(), 2);
    let text = serde_json::to_string(&audit_log(&h).await).unwrap();
    assert!(!text.contains(&secret));
}

#[tokio::test]
async fn credits_are_added_listed_and_reach_admission() {
    let h = Harness::start().await;
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
    // No credits yet: refused before anything goes upstream.
    let before = h.mock.state.requests().len();
    assert_eq!(chat(&h, &key, "gpt-4o-mini").await.status(), 402);
    assert_eq!(h.mock.state.requests().len(), before);

    let entry = expect(
        &h,
        Method::POST,
        "/admin/v1/projects/prepaid/credits",
        Some(json!({"kind": "grant", "amount_usd": "1.50", "note": "welcome"})),
        201,
    )
    .await;
    assert_eq!(entry["kind"], "grant");
    assert_eq!(entry["amount_usd"], "1.5");
    assert_eq!(entry["actor"], "admin");
    // The balance admission reads follows the grant at once.
    assert_eq!(chat(&h, &key, "gpt-4o-mini").await.status(), 200);
    h.wait_events(1).await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects/prepaid/credits",
        Some(json!({"kind": "adjustment", "amount_usd": "-0.5"})),
        201,
    )
    .await;
    let ledger = expect(
        &h,
        Method::GET,
        "/admin/v1/projects/prepaid/credits",
        None,
        200,
    )
    .await;
    // 1.5 - 0.00021 (the call) - 0.5
    assert_eq!(ledger["balance_usd"], "0.99979", "{ledger}");
    let mut kinds: Vec<&str> = ledger["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter_map(|e| e["kind"].as_str())
        .collect();
    // The debit and the adjustment may share a millisecond: compare as a set.
    kinds.sort_unstable();
    assert_eq!(kinds, ["adjustment", "grant", "usage_debit"]);
    let page = expect(
        &h,
        Method::GET,
        "/admin/v1/projects/prepaid/credits?limit=2",
        None,
        200,
    )
    .await;
    let next = page["next_before"].as_str().unwrap();
    let rest = expect(
        &h,
        Method::GET,
        &format!("/admin/v1/projects/prepaid/credits?limit=2&before={next}"),
        None,
        200,
    )
    .await;
    assert_eq!(rest["data"][0]["kind"], "grant");

    // Refusals.
    for bad in [
        json!({"kind": "usage_debit", "amount_usd": "1"}),
        json!({"kind": "gift", "amount_usd": "1"}),
        json!({"kind": "grant", "amount_usd": "-1"}),
        json!({"kind": "refund", "amount_usd": "0"}),
        json!({"kind": "grant", "amount_usd": "ten"}),
        json!({"kind": "grant", "amount_usd": 1.5}),
    ] {
        expect(
            &h,
            Method::POST,
            "/admin/v1/projects/prepaid/credits",
            Some(bad),
            400,
        )
        .await;
    }
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects/nope/credits",
        Some(json!({"kind": "grant", "amount_usd": "1"})),
        404,
    )
    .await;
    expect(
        &h,
        Method::GET,
        "/admin/v1/projects/nope/credits",
        None,
        404,
    )
    .await;
    let added = audited(&h, "credits.added").await;
    assert_eq!(added.len(), 2);
    assert_eq!(added[1]["details"]["amount_usd"], "1.5");
    assert_eq!(added[1]["project_id"], "prepaid");
}
