//! The audit log: written, filtered and paged.

use super::*;

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

pub(super) async fn audit(store: &dyn Store) {
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
