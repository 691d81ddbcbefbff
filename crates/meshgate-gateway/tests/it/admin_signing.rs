//! The admin API for participant-token signing keys and server-side minting: keys made
//! and listed without secrets, tokens minted from a spec that the gateway then accepts,
//! revocation and rotation stopping tokens at once.

use crate::admin::{audit_log, audited, chat, expect};
use crate::harness::Harness;
use meshgate_tokens::{KeyMaterial, SigningSecret, TokenSpec, VerifyingKey};
use reqwest::Method;
use serde_json::{json, Value};

async fn project(h: &Harness, id: &str) {
    expect(
        h,
        Method::POST,
        "/admin/v1/projects",
        Some(json!({"id": id, "name": id})),
        201,
    )
    .await;
}

async fn mint(h: &Harness, project: &str, body: Value) -> Value {
    expect(
        h,
        Method::POST,
        &format!("/admin/v1/projects/{project}/tokens"),
        Some(body),
        200,
    )
    .await
}

#[tokio::test]
async fn hs256_keys_mint_tokens_the_gateway_accepts_until_revoked() {
    let h = Harness::start().await;
    project(&h, "rooms").await;
    let key = expect(
        &h,
        Method::POST,
        "/admin/v1/projects/rooms/signing-keys",
        Some(json!({"algorithm": "HS256"})),
        201,
    )
    .await;
    let kid = key["id"].as_str().unwrap().to_string();
    let secret = key["secret"].as_str().unwrap().to_string();
    assert_eq!(key["algorithm"], "HS256");
    // The secret works for minting locally too.
    assert!(SigningSecret::hs256_from_text(&secret).is_ok());

    let list = expect(
        &h,
        Method::GET,
        "/admin/v1/projects/rooms/signing-keys",
        None,
        200,
    )
    .await;
    assert_eq!(list["data"].as_array().unwrap().len(), 1);
    assert!(!list.to_string().contains(&secret));
    assert!(list["data"][0].get("public_key").is_none());

    let yaml = "version: v1\nkind: ParticipantToken\nidentity: ci-bot\nroom: standup\nexpires_in: 10m\napi:\n  llm:\n    models: [\"openai/gpt-4o-mini\"]\n";
    let minted = mint(&h, "rooms", json!({"spec": yaml})).await;
    let token = minted["token"].as_str().unwrap().to_string();
    assert_eq!(minted["signing_key_id"], kid.as_str());
    let now = chrono::Utc::now().timestamp();
    let exp = minted["expires_at"].as_i64().unwrap();
    assert!((now + 590..=now + 610).contains(&exp), "{exp} vs {now}");
    // Verifiable with the secret shown at creation.
    let verifier = VerifyingKey {
        kid: kid.clone(),
        project_id: "rooms".into(),
        material: KeyMaterial::hs256_from_text(&secret).unwrap(),
    };
    let claims = meshgate_tokens::verify_participant(&token, "meshgate", now, |k| {
        (k == kid).then(|| verifier.clone())
    })
    .unwrap();
    assert_eq!(claims.sub, "ci-bot");
    assert_eq!(claims.jti, minted["jti"].as_str().unwrap());

    // The gateway accepts it, within its grant, and attributes the usage.
    assert_eq!(chat(&h, &token, "gpt-4o-mini").await.status(), 200);
    assert_eq!(chat(&h, &token, "gpt-4o").await.status(), 403);
    h.wait_events(1).await;
    let usage = h
        .admin_get("/admin/v1/usage?user=ci-bot&room=standup")
        .await;
    let events = usage["data"].as_array().unwrap();
    assert_eq!(events.len(), 1, "{usage}");
    assert_eq!(events[0]["project_id"], "rooms");
    assert_eq!(events[0]["token_id"], claims.jti.as_str());
    let by_user = h.admin_get("/admin/v1/usage/summary?group_by=user").await;
    assert!(by_user["data"]
        .as_array()
        .unwrap()
        .iter()
        .any(|r| r["group"] == "ci-bot"));

    // The same spec as JSON fields (version and kind implied).
    let from_json = mint(
        &h,
        "rooms",
        json!({"signing_key_id": kid, "identity": "agent-7", "api": {"llm": {}}}),
    )
    .await;
    assert_eq!(
        chat(&h, from_json["token"].as_str().unwrap(), "gpt-4o")
            .await
            .status(),
        200
    );

    // Refusals: bad spec, spec for another project, unknown key or project.
    for bad in [
        json!({"spec": "version: v1\nkind: ParticipantToken\nidentity: x\nmodles: []\n"}),
        json!({"spec": "version: v1\nkind: ParticipantToken\nidentity: x\nproject: other\n"}),
        json!({"identity": "x", "signing_key_id": "sk_nope"}),
        json!({}),
    ] {
        expect(
            &h,
            Method::POST,
            "/admin/v1/projects/rooms/tokens",
            Some(bad),
            400,
        )
        .await;
    }
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects/nope/tokens",
        Some(json!({"identity": "x"})),
        404,
    )
    .await;

    // Revoking the key stops its tokens at once.
    expect(
        &h,
        Method::POST,
        &format!("/admin/v1/signing-keys/{kid}/revoke"),
        None,
        200,
    )
    .await;
    assert_eq!(chat(&h, &token, "gpt-4o-mini").await.status(), 401);
    expect(
        &h,
        Method::POST,
        "/admin/v1/signing-keys/sk_nope/revoke",
        None,
        404,
    )
    .await;
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects/rooms/tokens",
        Some(json!({"identity": "x"})),
        400,
    )
    .await;

    let minted_events = audited(&h, "token.minted").await;
    assert_eq!(minted_events.len(), 2);
    assert_eq!(minted_events[1]["target"], claims.jti.as_str());
    assert_eq!(audited(&h, "signing_key.created").await.len(), 1);
    assert_eq!(audited(&h, "signing_key.revoked").await.len(), 1);
    let text = serde_json::to_string(&audit_log(&h).await).unwrap();
    assert!(
        !text.contains(&secret),
        "no signing secret in the audit log"
    );
    assert!(!text.contains(&token), "no token in the audit log");
}

#[tokio::test]
async fn eddsa_keys_generated_or_brought_and_rotated() {
    let h = Harness::start().await;
    project(&h, "ed").await;
    let generated = expect(
        &h,
        Method::POST,
        "/admin/v1/projects/ed/signing-keys",
        Some(json!({"algorithm": "EdDSA"})),
        201,
    )
    .await;
    let kid = generated["id"].as_str().unwrap().to_string();
    let private = generated["secret"].as_str().unwrap().to_string();
    let signer = SigningSecret::ed25519_from_text(&private).unwrap();
    assert_eq!(
        generated["public_key"].as_str().unwrap(),
        signer.verifying_material().public_text().unwrap()
    );
    // A token minted locally with the private key works at the gateway.
    let spec = TokenSpec::from_yaml(
        "version: v1\nkind: ParticipantToken\nidentity: local\napi:\n  llm: {}\n",
    )
    .unwrap();
    let now = chrono::Utc::now().timestamp();
    let claims = spec.claims(&kid, "ed", "meshgate", now).unwrap();
    let token = meshgate_tokens::mint_participant(&claims, &kid, &signer).unwrap();
    assert_eq!(chat(&h, &token, "gpt-4o-mini").await.status(), 200);
    // The server cannot mint with an EdDSA key: it never kept the private key.
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects/ed/tokens",
        Some(json!({"signing_key_id": kid, "identity": "x"})),
        400,
    )
    .await;

    // Bring your own public key: no secret comes back.
    let own = SigningSecret::generate_ed25519();
    let public = own.verifying_material().public_text().unwrap();
    let brought = expect(
        &h,
        Method::POST,
        "/admin/v1/projects/ed/signing-keys",
        Some(json!({"algorithm": "EdDSA", "public_key": public})),
        201,
    )
    .await;
    assert!(brought.get("secret").is_none());
    assert_eq!(brought["public_key"], public.as_str());

    // Rotation: a new key of the same algorithm, the old one revoked at once.
    let rotated = expect(
        &h,
        Method::POST,
        &format!("/admin/v1/signing-keys/{kid}/rotate"),
        None,
        201,
    )
    .await;
    assert_eq!(rotated["algorithm"], "EdDSA");
    assert_ne!(rotated["id"], kid.as_str());
    assert!(rotated["secret"].is_string());
    assert_eq!(chat(&h, &token, "gpt-4o-mini").await.status(), 401);
    expect(
        &h,
        Method::POST,
        &format!("/admin/v1/signing-keys/{kid}/rotate"),
        None,
        409,
    )
    .await;
    let list = expect(
        &h,
        Method::GET,
        "/admin/v1/projects/ed/signing-keys",
        None,
        200,
    )
    .await;
    let revoked = list["data"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|k| !k["revoked_ms"].is_null())
        .count();
    assert_eq!((list["data"].as_array().unwrap().len(), revoked), (3, 1));

    for bad in [
        json!({"algorithm": "RS256"}),
        json!({"algorithm": "HS256", "public_key": public}),
        json!({"algorithm": "EdDSA", "public_key": "not-a-key"}),
    ] {
        expect(
            &h,
            Method::POST,
            "/admin/v1/projects/ed/signing-keys",
            Some(bad),
            400,
        )
        .await;
    }
    expect(
        &h,
        Method::POST,
        "/admin/v1/projects/nope/signing-keys",
        Some(json!({"algorithm": "HS256"})),
        404,
    )
    .await;
    assert_eq!(audited(&h, "signing_key.rotated").await.len(), 1);
    let text = serde_json::to_string(&audit_log(&h).await).unwrap();
    assert!(!text.contains(&private));
    assert!(!text.contains(rotated["secret"].as_str().unwrap()));
}
