//! Participant tokens and OAuth access tokens over real HTTP: what they may do, how their
//! calls are attributed, and every way a forged, stale or misdirected token is refused.

use crate::harness::Harness;
use crate::policy::{admin, new_project};
use meshgate_tokens::{
    mint_participant, Grants, LlmGrant, ParticipantClaims, SigningSecret, TokenSpec,
};
use serde_json::{json, Value};

const CHAT: &str = "/openai/v1/chat/completions";

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

async fn chat_with(h: &Harness, token: &str) -> reqwest::Response {
    h.http
        .post(h.url(CHAT))
        .bearer_auth(token)
        .json(&json!({"model": "gpt-4o-mini", "max_tokens": 20, "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap()
}

/// Creates a signing key; returns its id and the secret text shown once.
async fn signing_key(h: &Harness, project: &str, algorithm: &str) -> (String, String) {
    let created = admin(
        h,
        reqwest::Method::POST,
        &format!("/admin/v1/projects/{project}/signing-keys"),
        json!({"algorithm": algorithm}),
    )
    .await;
    (
        created["id"].as_str().unwrap().to_string(),
        created["secret"].as_str().unwrap().to_string(),
    )
}

fn claims(kid: &str, project: &str, models: Option<Vec<String>>) -> ParticipantClaims {
    ParticipantClaims {
        iss: kid.into(),
        sub: "ada".into(),
        aud: "meshgate".into(),
        project: project.into(),
        room: Some("standup".into()),
        role: Some("agent".into()),
        api: Grants {
            llm: Some(LlmGrant { models }),
        },
        iat: now(),
        nbf: None,
        exp: now() + 600,
        jti: meshgate_tokens::new_jti(),
    }
}

fn b64(value: &Value) -> String {
    use base64::Engine;
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(value.to_string())
}

async fn status_and_message(response: reqwest::Response) -> (u16, String) {
    let status = response.status().as_u16();
    let body: Value = response.json().await.unwrap();
    (
        status,
        body["error"]["message"].as_str().unwrap_or("").to_string(),
    )
}

#[tokio::test]
async fn participant_tokens_call_models_as_their_participant() {
    let h = Harness::start().await;
    new_project(&h, "rooms", json!({})).await;
    let (kid, secret) = signing_key(&h, "rooms", "HS256").await;
    let secret = SigningSecret::hs256_from_text(&secret).unwrap();

    let allowed = claims(&kid, "rooms", Some(vec!["openai/gpt-4o-mini".into()]));
    let token = mint_participant(&allowed, &kid, &secret).unwrap();
    assert_eq!(chat_with(&h, &token).await.status(), 200);
    let event = h.one_event().await;
    assert_eq!(event["project_id"], "rooms");
    assert_eq!(event["token_id"], allowed.jti.as_str());
    assert_eq!(event["user"], "ada");
    assert_eq!(event["room"], "standup");
    assert!(event["key_id"].is_null());

    // The grant's models are enforced.
    let narrow = claims(&kid, "rooms", Some(vec!["anthropic/*".into()]));
    let token_narrow = mint_participant(&narrow, &kid, &secret).unwrap();
    let (status, message) = status_and_message(chat_with(&h, &token_narrow).await).await;
    assert_eq!(status, 403);
    assert!(message.contains("api.llm grant"), "{message}");

    // No LLM grant at all: 403 naming the grant.
    let mut no_grant = claims(&kid, "rooms", None);
    no_grant.api = Grants::default();
    let token_no_grant = mint_participant(&no_grant, &kid, &secret).unwrap();
    let (status, message) = status_and_message(chat_with(&h, &token_no_grant).await).await;
    assert_eq!(status, 403);
    assert!(message.contains("api.llm"), "{message}");

    // A spec file mints the same kind of token.
    let spec = TokenSpec::from_yaml(
        "version: v1\nkind: ParticipantToken\nidentity: ci-bot\nroom: nightly\nexpires_in: 5m\napi:\n  llm:\n    models: [\"openai/gpt-4o*\"]\n",
    )
    .unwrap();
    let from_spec = spec.claims(&kid, "rooms", "meshgate", now()).unwrap();
    let token_spec = mint_participant(&from_spec, &kid, &secret).unwrap();
    assert_eq!(chat_with(&h, &token_spec).await.status(), 200);

    // Revoking the signing key stops its tokens on the next call.
    admin(
        &h,
        reqwest::Method::POST,
        &format!("/admin/v1/signing-keys/{kid}/revoke"),
        json!({}),
    )
    .await;
    let (status, message) = status_and_message(chat_with(&h, &token).await).await;
    assert_eq!(status, 401);
    assert!(message.contains("unknown or revoked"), "{message}");
    assert_eq!(h.mock.state.stats().requests, 2);
}

#[tokio::test]
async fn forged_stale_and_misdirected_tokens_are_refused() {
    let h = Harness::start().await;
    new_project(&h, "rooms", json!({})).await;
    new_project(&h, "elsewhere", json!({})).await;
    let (kid, secret_text) = signing_key(&h, "rooms", "HS256").await;
    let secret = SigningSecret::hs256_from_text(&secret_text).unwrap();
    let (ed_kid, ed_secret_text) = signing_key(&h, "rooms", "EdDSA").await;
    let ed_secret = SigningSecret::ed25519_from_text(&ed_secret_text).unwrap();

    // EdDSA tokens work.
    let ed_token = mint_participant(&claims(&ed_kid, "rooms", None), &ed_kid, &ed_secret).unwrap();
    assert_eq!(chat_with(&h, &ed_token).await.status(), 200);

    let mut cases: Vec<(&str, String)> = Vec::new();
    let mut expired = claims(&kid, "rooms", None);
    expired.iat = now() - 7200;
    expired.exp = now() - 3600;
    cases.push((
        "expired",
        mint_participant(&expired, &kid, &secret).unwrap(),
    ));
    let mut early = claims(&kid, "rooms", None);
    early.nbf = Some(now() + 3600);
    cases.push((
        "not yet valid",
        mint_participant(&early, &kid, &secret).unwrap(),
    ));
    let mut audience = claims(&kid, "rooms", None);
    audience.aud = "someone-else".into();
    cases.push((
        "wrong audience",
        mint_participant(&audience, &kid, &secret).unwrap(),
    ));
    // Minting refuses an issuer other than the key id, so this one is signed by hand.
    let mut issuer = claims(&kid, "rooms", None);
    issuer.iss = "someone-else".into();
    let mut header = jsonwebtoken::Header::new(jsonwebtoken::Algorithm::HS256);
    header.kid = Some(kid.clone());
    let raw_secret = match &secret {
        SigningSecret::Hs256(bytes) => bytes.clone(),
        SigningSecret::EdDsa(_) => unreachable!(),
    };
    cases.push((
        "wrong issuer",
        jsonwebtoken::encode(
            &header,
            &issuer,
            &jsonwebtoken::EncodingKey::from_secret(&raw_secret),
        )
        .unwrap(),
    ));
    let project = claims(&kid, "elsewhere", None);
    cases.push((
        "another project",
        mint_participant(&project, &kid, &secret).unwrap(),
    ));
    let other_secret = SigningSecret::generate_hs256();
    cases.push((
        "wrong secret",
        mint_participant(&claims(&kid, "rooms", None), &kid, &other_secret).unwrap(),
    ));
    // alg none: a header and payload with an empty signature.
    let payload = serde_json::to_value(claims(&kid, "rooms", None)).unwrap();
    cases.push((
        "alg none",
        format!(
            "{}.{}.",
            b64(&json!({"alg": "none", "typ": "JWT", "kid": kid})),
            b64(&payload)
        ),
    ));
    // Algorithm confusion: HS256 with the EdDSA key's public key as the HMAC secret.
    let public = meshgate_tokens::KeyMaterial::EdDsa {
        public_key: meshgate_tokens::ed25519_public_key(match &ed_secret {
            SigningSecret::EdDsa(seed) => seed,
            SigningSecret::Hs256(_) => unreachable!(),
        }),
    };
    let confused_secret = match &public {
        meshgate_tokens::KeyMaterial::EdDsa { public_key } => {
            SigningSecret::Hs256(public_key.to_vec())
        }
        meshgate_tokens::KeyMaterial::Hs256 { .. } => unreachable!(),
    };
    cases.push((
        "algorithm confusion",
        mint_participant(&claims(&ed_kid, "rooms", None), &ed_kid, &confused_secret).unwrap(),
    ));
    // A payload edited after signing.
    let good = mint_participant(&claims(&kid, "rooms", None), &kid, &secret).unwrap();
    let parts: Vec<&str> = good.split('.').collect();
    let mut edited = claims(&kid, "rooms", None);
    edited.sub = "mallory".into();
    let edited = serde_json::to_value(edited).unwrap();
    cases.push((
        "tampered",
        format!("{}.{}.{}", parts[0], b64(&edited), parts[2]),
    ));

    for (label, token) in cases {
        let (status, message) = status_and_message(chat_with(&h, &token).await).await;
        assert_eq!(status, 401, "{label}: {message}");
        assert!(!message.is_empty(), "{label}");
    }
    assert_eq!(
        h.mock.state.stats().requests,
        1,
        "only the EdDSA call got through"
    );
}

mod oauth {
    use super::*;
    use axum::routing::get;
    use jsonwebtoken::{Algorithm, EncodingKey, Header};
    use std::sync::Arc;

    const ISSUER: &str = "https://idp.test";

    struct Idp {
        key: EncodingKey,
        jwks_url: String,
    }

    async fn start_idp() -> Idp {
        let (seed, public) = meshgate_tokens::generate_ed25519();
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        let der = ed25519_dalek::SigningKey::from_bytes(&seed)
            .to_pkcs8_der()
            .unwrap();
        let jwks = Arc::new(
            json!({"keys": [{"kty": "OKP", "crv": "Ed25519", "kid": "idp-1",
            "alg": "EdDSA", "use": "sig", "x": meshgate_tokens::b64url_encode(&public)}]}),
        );
        let app = axum::Router::new().route(
            "/jwks",
            get(move || {
                let jwks = jwks.clone();
                async move { axum::Json((*jwks).clone()) }
            }),
        );
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = listener.local_addr().unwrap();
        tokio::spawn(async move { axum::serve(listener, app).await });
        Idp {
            key: EncodingKey::from_ed_der(der.as_bytes()),
            jwks_url: format!("http://{addr}/jwks"),
        }
    }

    fn good_claims(sub: &str, scope: &str) -> Value {
        json!({"iss": ISSUER, "aud": "meshgate-api", "sub": sub, "scope": scope,
            "email": format!("{sub}@example.com"), "iat": now(), "exp": now() + 600})
    }

    fn signed(idp: &Idp, claims: &Value) -> String {
        let mut header = Header::new(Algorithm::EdDSA);
        header.kid = Some("idp-1".into());
        jsonwebtoken::encode(&header, claims, &idp.key).unwrap()
    }

    fn access_token(idp: &Idp, sub: &str, scope: &str) -> String {
        signed(idp, &good_claims(sub, scope))
    }

    async fn harness(idp: &Idp) -> Harness {
        let jwks_url = idp.jwks_url.clone();
        Harness::start_with(move |c| {
            c.auth.oauth = Some(meshgate_gateway::config::OAuthConfig {
                issuer: ISSUER.into(),
                audience: "meshgate-api".into(),
                jwks_url,
                scope: "llm_proxy".into(),
            });
        })
        .await
    }

    #[tokio::test]
    async fn forged_stale_and_misdirected_access_tokens_are_refused() {
        let idp = start_idp().await;
        let h = harness(&idp).await;
        new_project(&h, "lab", json!({"members": ["ada"]})).await;
        let call = |token: String| {
            h.http
                .post(h.url(CHAT))
                .bearer_auth(token)
                .header("Meshgate-Project-Id", "lab")
                .json(&json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}))
                .send()
        };
        let edit = |field: &str, value: Value| {
            let mut c = good_claims("ada", "llm_proxy");
            c[field] = value;
            c
        };
        let mut cases: Vec<(&str, String)> = vec![
            (
                "wrong issuer",
                signed(&idp, &edit("iss", json!("https://evil.test"))),
            ),
            (
                "wrong audience",
                signed(&idp, &edit("aud", json!("another-api"))),
            ),
            ("expired", signed(&idp, &edit("exp", json!(now() - 600)))),
            (
                "not yet valid",
                signed(&idp, &edit("nbf", json!(now() + 3600))),
            ),
        ];
        // Signed by a key the IdP never published, under the IdP's kid.
        let stranger = start_idp().await;
        cases.push((
            "foreign key",
            signed(&stranger, &good_claims("ada", "llm_proxy")),
        ));
        cases.push((
            "alg none",
            format!(
                "{}.{}.",
                b64(&json!({"alg": "none", "typ": "JWT", "kid": "idp-1"})),
                b64(&good_claims("ada", "llm_proxy"))
            ),
        ));
        // Algorithm confusion: HS256 keyed with the published public key.
        let jwks: Value = reqwest::get(&idp.jwks_url)
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        let x = meshgate_tokens::b64url_decode(jwks["keys"][0]["x"].as_str().unwrap()).unwrap();
        let mut hs = Header::new(Algorithm::HS256);
        hs.kid = Some("idp-1".into());
        cases.push((
            "algorithm confusion",
            jsonwebtoken::encode(
                &hs,
                &good_claims("ada", "llm_proxy"),
                &EncodingKey::from_secret(&x),
            )
            .unwrap(),
        ));
        let good = access_token(&idp, "ada", "llm_proxy");
        let parts: Vec<&str> = good.split('.').collect();
        cases.push((
            "tampered",
            format!(
                "{}.{}.{}",
                parts[0],
                b64(&good_claims("root", "llm_proxy")),
                parts[2]
            ),
        ));
        for (label, token) in cases {
            let (status, message) = status_and_message(call(token).await.unwrap()).await;
            assert_eq!(status, 401, "{label}: {message}");
            assert!(!message.is_empty(), "{label}");
        }
        assert_eq!(h.mock.state.stats().requests, 0, "nothing was forwarded");
        // The same call with a good token goes through: the refusals were the tokens'.
        assert_eq!(call(good).await.unwrap().status(), 200);
    }

    #[tokio::test]
    async fn oauth_users_call_for_projects_they_belong_to() {
        let idp = start_idp().await;
        let h = harness(&idp).await;
        new_project(&h, "lab", json!({"members": ["ada", "bob@example.com"]})).await;
        let call = |token: String, project: Option<&'static str>, header: &'static str| {
            let mut r = h.http.post(h.url(CHAT)).bearer_auth(token).json(
                &json!({"model": "gpt-4o-mini", "messages": [{"role": "user", "content": "hi"}]}),
            );
            if let Some(p) = project {
                r = r.header(header, p);
            }
            r.send()
        };
        let ada = access_token(&idp, "ada", "openid llm_proxy");
        let ok = call(ada.clone(), Some("lab"), "Meshgate-Project-Id")
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        // The seeds' header spelling works too, and membership by email.
        let bob = access_token(&idp, "bob", "llm_proxy");
        let ok = call(bob, Some("lab"), "Meshagent-Project-Id")
            .await
            .unwrap();
        assert_eq!(ok.status(), 200);
        let events = h.wait_events(2).await;
        assert!(events
            .iter()
            .all(|e| e["project_id"] == "lab" && e["room"].is_null()));
        let users: Vec<&str> = events.iter().map(|e| e["user"].as_str().unwrap()).collect();
        assert!(
            users.contains(&"ada") && users.contains(&"bob"),
            "{users:?}"
        );

        let (status, message) =
            status_and_message(call(ada.clone(), None, "x").await.unwrap()).await;
        assert_eq!(status, 400, "{message}");
        assert!(message.contains("Meshgate-Project-Id"), "{message}");
        let (status, _) = status_and_message(
            call(ada, Some("default"), "Meshgate-Project-Id")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403, "not a member of default");
        let no_scope = access_token(&idp, "ada", "openid profile");
        let (status, message) = status_and_message(
            call(no_scope, Some("lab"), "Meshgate-Project-Id")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403);
        assert!(message.contains("llm_proxy"), "{message}");
        let carol = access_token(&idp, "carol", "llm_proxy");
        let (status, _) = status_and_message(
            call(carol, Some("lab"), "Meshgate-Project-Id")
                .await
                .unwrap(),
        )
        .await;
        assert_eq!(status, 403);
        assert_eq!(h.mock.state.stats().requests, 2);
    }
}

#[tokio::test]
async fn a_tokens_delegation_acts_as_its_participant_and_dies_with_its_key() {
    let h = Harness::start().await;
    new_project(&h, "rooms", json!({})).await;
    let (kid, secret) = signing_key(&h, "rooms", "HS256").await;
    let secret = SigningSecret::hs256_from_text(&secret).unwrap();
    let parent = claims(&kid, "rooms", Some(vec!["openai/gpt-4o-mini".into()]));
    let token = mint_participant(&parent, &kid, &secret).unwrap();
    let created: Value = h
        .http
        .post(h.url("/v1/delegations"))
        .bearer_auth(&token)
        .json(&json!({"max_budget_usd": "1", "ttl_seconds": 86400}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let delegation = created["token"].as_str().unwrap().to_string();
    assert!(
        created["expires_at"].as_i64().unwrap() <= parent.exp,
        "a delegation never outlives its token"
    );
    assert_eq!(chat_with(&h, &delegation).await.status(), 200);
    let event = h.one_event().await;
    assert_eq!(event["user"], "ada");
    assert_eq!(event["room"], "standup");
    assert_eq!(event["token_id"], parent.jti.as_str());
    assert_eq!(event["delegation_id"], created["id"]);
    // The token's grant still binds the delegation.
    let wider = h
        .http
        .post(h.url(CHAT))
        .bearer_auth(&delegation)
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(wider.status(), 403);
    admin(
        &h,
        reqwest::Method::POST,
        &format!("/admin/v1/signing-keys/{kid}/revoke"),
        json!({}),
    )
    .await;
    assert_eq!(chat_with(&h, &delegation).await.status(), 401);
}
