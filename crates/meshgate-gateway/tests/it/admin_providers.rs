//! The admin API for projects' own provider keys (bring your own key): calls of the
//! project go upstream with its key, other projects keep the gateway's, and the key never
//! appears in any admin response or audit record.

use crate::admin::{audit_log, audited, chat, expect};
use crate::harness::Harness;
use reqwest::Method;
use serde_json::json;

const WRONG: &str = "sk-project-key-the-mock-refuses";

fn bearer_seen(h: &Harness) -> String {
    let request = h.mock.state.last_request().unwrap();
    request
        .headers
        .iter()
        .find(|(name, _)| name == "authorization")
        .map(|(_, v)| v.clone())
        .unwrap_or_default()
}

#[tokio::test]
async fn a_projects_own_key_is_used_upstream_and_never_shown() {
    let h = Harness::start().await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects",
        Some(json!({"id": "byok", "name": "BYOK"})),
        201,
    )
    .await;
    let key = expect(
        &h,
        Method::POST,
        "/admin/v1/keys",
        Some(json!({"name": "b", "project_id": "byok"})),
        201,
    )
    .await["secret"]
        .as_str()
        .unwrap()
        .to_string();
    let mock_v1 = format!("{}/v1", h.mock.url());

    // A key the mock refuses: the project's call fails upstream with it.
    let set = expect(
        &h,
        Method::PUT,
        "/admin/v1/projects/byok/providers/openai",
        Some(json!({"api_key": WRONG, "base_url": mock_v1})),
        200,
    )
    .await;
    assert_eq!(set["provider"], "openai");
    assert_eq!(set["base_url"], mock_v1.as_str());
    assert_eq!(chat(&h, &key, "gpt-4o-mini").await.status(), 401);
    assert_eq!(bearer_seen(&h), format!("Bearer {WRONG}"));
    // The default project still goes with the gateway's key.
    assert_eq!(chat(&h, &h.key, "gpt-4o-mini").await.status(), 200);
    assert_eq!(bearer_seen(&h), "Bearer sk-mock-openai");

    // Replaced by a key the mock accepts.
    expect(
        &h,
        Method::PUT,
        "/admin/v1/projects/byok/providers/openai",
        Some(json!({"api_key": "sk-mock-openai"})),
        200,
    )
    .await;
    assert_eq!(chat(&h, &key, "gpt-4o-mini").await.status(), 200);

    // Back to the wrong one, then deleted: the gateway's key again.
    expect(
        &h,
        Method::PUT,
        "/admin/v1/projects/byok/providers/openai",
        Some(json!({"api_key": WRONG})),
        200,
    )
    .await;
    assert_eq!(chat(&h, &key, "gpt-4o-mini").await.status(), 401);
    let list = expect(
        &h,
        Method::GET,
        "/admin/v1/projects/byok/providers",
        None,
        200,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(list["data"][0]["updated_ms"].is_i64());
    assert!(list["data"][0].get("api_key").is_none());
    let project = expect(&h, Method::GET, "/admin/v1/projects/byok", None, 200).await;
    let projects = expect(&h, Method::GET, "/admin/v1/projects", None, 200).await;
    let log = audit_log(&h).await;
    for shown in [
        list.to_string(),
        project.to_string(),
        projects.to_string(),
        serde_json::to_string(&log).unwrap(),
    ] {
        assert!(!shown.contains(WRONG), "the key leaked: {shown}");
        assert!(!shown.contains("sk-mock-openai"), "the key leaked: {shown}");
        assert!(!shown.contains("sk-project"), "not even a hint: {shown}");
    }
    // At rest it is sealed: no file of the data dir (database, WAL, spool) holds it.
    let mut files = vec![h.dir.path().to_path_buf()];
    let mut read = 0;
    while let Some(path) = files.pop() {
        if path.is_dir() {
            files.extend(std::fs::read_dir(&path).unwrap().map(|e| e.unwrap().path()));
            continue;
        }
        let bytes = std::fs::read(&path).unwrap();
        read += bytes.len();
        assert!(
            !bytes.windows(WRONG.len()).any(|w| w == WRONG.as_bytes()),
            "{} holds the provider key in clear",
            path.display()
        );
    }
    assert!(read > 0, "the data dir was read");
    expect(
        &h,
        Method::DELETE,
        "/admin/v1/projects/byok/providers/openai",
        None,
        200,
    )
    .await;
    assert_eq!(chat(&h, &key, "gpt-4o-mini").await.status(), 200);
    assert_eq!(bearer_seen(&h), "Bearer sk-mock-openai");
    let list = expect(
        &h,
        Method::GET,
        "/admin/v1/projects/byok/providers",
        None,
        200,
    )
    .await;
    assert!(list["data"].as_array().unwrap().is_empty());

    // Refusals.
    expect(
        &h,
        Method::DELETE,
        "/admin/v1/projects/byok/providers/openai",
        None,
        404,
    )
    .await;
    expect(
        &h,
        Method::PUT,
        "/admin/v1/projects/byok/providers/mistral",
        Some(json!({"api_key": "x"})),
        400,
    )
    .await;
    for bad in [
        json!({"api_key": ""}),
        json!({"api_key": "x", "base_url": "ftp://example.com"}),
        json!({"key": "x"}),
    ] {
        expect(
            &h,
            Method::PUT,
            "/admin/v1/projects/byok/providers/openai",
            Some(bad),
            400,
        )
        .await;
    }
    expect(
        &h,
        Method::PUT,
        "/admin/v1/projects/nope/providers/openai",
        Some(json!({"api_key": "x"})),
        404,
    )
    .await;
    expect(
        &h,
        Method::GET,
        "/admin/v1/projects/nope/providers",
        None,
        404,
    )
    .await;
    assert_eq!(audited(&h, "provider.set").await.len(), 3);
    let deleted = audited(&h, "provider.deleted").await;
    assert_eq!(deleted.len(), 1);
    assert_eq!(deleted[0]["target"], "openai");
}
