//! OAuth access tokens against a JWKS served by a local test server (127.0.0.1, port 0).
//! The server counts its hits, which is how caching and refetch limits are proven.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::IntoResponse;
use axum::routing::get;
use axum::{Json, Router};
use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::jwk::Jwk;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use meshgate_tokens::*;
use serde_json::{json, Value};

const ISSUER: &str = "https://idp.test";
const AUDIENCE: &str = "meshgate-api";

/// A signing key of the fake issuer and its public JWK.
struct IdpKey {
    kid: String,
    alg: Algorithm,
    key: EncodingKey,
    jwk: Value,
}

impl IdpKey {
    fn ed25519(kid: &str) -> Self {
        let (seed, public) = generate_ed25519();
        let der = ed25519_dalek::SigningKey::from_bytes(&seed)
            .to_pkcs8_der()
            .unwrap();
        Self {
            kid: kid.into(),
            alg: Algorithm::EdDSA,
            key: EncodingKey::from_ed_der(der.as_bytes()),
            jwk: json!({"kty": "OKP", "crv": "Ed25519", "x": b64url_encode(&public),
                        "kid": kid, "alg": "EdDSA", "use": "sig"}),
        }
    }

    fn from_pem(kid: &str, alg: Algorithm, key: EncodingKey) -> Self {
        let mut jwk = serde_json::to_value(Jwk::from_encoding_key(&key, alg).unwrap()).unwrap();
        jwk["kid"] = json!(kid);
        Self {
            kid: kid.into(),
            alg,
            key,
            jwk,
        }
    }

    fn rsa(kid: &str) -> Self {
        let pem = include_bytes!("fixtures/rsa_test_key.pem");
        Self::from_pem(
            kid,
            Algorithm::RS256,
            EncodingKey::from_rsa_pem(pem).unwrap(),
        )
    }

    fn ec(kid: &str) -> Self {
        let pem = include_bytes!("fixtures/ec_p256_test_key.pem");
        Self::from_pem(
            kid,
            Algorithm::ES256,
            EncodingKey::from_ec_pem(pem).unwrap(),
        )
    }

    fn sign(&self, claims: &Value) -> String {
        self.sign_as(&self.kid, claims)
    }

    fn sign_as(&self, kid: &str, claims: &Value) -> String {
        let mut header = Header::new(self.alg);
        header.kid = Some(kid.into());
        jsonwebtoken::encode(&header, claims, &self.key).unwrap()
    }
}

fn now() -> i64 {
    chrono::Utc::now().timestamp()
}

fn claims() -> Value {
    json!({
        "iss": ISSUER,
        "aud": AUDIENCE,
        "sub": "user-42",
        "email": "ada@example.test",
        "scope": "openid llm_proxy profile",
        "iat": now(),
        "exp": now() + 300,
    })
}

#[derive(Clone)]
struct Idp {
    jwks: Arc<Mutex<Value>>,
    hits: Arc<AtomicUsize>,
    fail: Arc<Mutex<bool>>,
}

async fn jwks(State(idp): State<Idp>) -> impl IntoResponse {
    idp.hits.fetch_add(1, Ordering::SeqCst);
    if *idp.fail.lock().unwrap() {
        return (StatusCode::INTERNAL_SERVER_ERROR, Json(json!({}))).into_response();
    }
    Json(idp.jwks.lock().unwrap().clone()).into_response()
}

impl Idp {
    async fn start(keys: &[&IdpKey]) -> (Self, String) {
        let idp = Self {
            jwks: Arc::new(Mutex::new(json!({}))),
            hits: Arc::new(AtomicUsize::new(0)),
            fail: Arc::new(Mutex::new(false)),
        };
        idp.serve(keys);
        let app = Router::new()
            .route("/jwks", get(jwks))
            .with_state(idp.clone());
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let url = format!("http://{}/jwks", listener.local_addr().unwrap());
        tokio::spawn(async move { axum::serve(listener, app).await.unwrap() });
        (idp, url)
    }

    fn serve(&self, keys: &[&IdpKey]) {
        let keys: Vec<Value> = keys.iter().map(|k| k.jwk.clone()).collect();
        *self.jwks.lock().unwrap() = json!({ "keys": keys });
    }

    fn hits(&self) -> usize {
        self.hits.load(Ordering::SeqCst)
    }
}

fn verifier(url: &str, min_refresh: Duration) -> OidcVerifier {
    let mut cfg = OidcConfig::new(ISSUER, AUDIENCE, url);
    cfg.min_refresh_interval = min_refresh;
    OidcVerifier::new(cfg).unwrap()
}

#[tokio::test]
async fn valid_tokens_verify_for_each_key_type() {
    let (rsa, ec, ed) = (
        IdpKey::rsa("rsa-1"),
        IdpKey::ec("ec-1"),
        IdpKey::ed25519("ed-1"),
    );
    let (idp, url) = Idp::start(&[&rsa, &ec, &ed]).await;
    let v = verifier(&url, Duration::from_secs(3600));
    for key in [&rsa, &ec, &ed] {
        let got = v.verify(&key.sign(&claims())).await.unwrap();
        assert_eq!(got.sub, "user-42");
        assert_eq!(got.email.as_deref(), Some("ada@example.test"));
        assert_eq!(got.scopes, ["openid", "llm_proxy", "profile"]);
        assert_eq!(got.issuer, ISSUER);
        assert_eq!(got.raw["aud"], AUDIENCE);
    }
    assert_eq!(idp.hits(), 1, "one fetch serves all cached keys");
}

#[tokio::test]
async fn missing_scope_is_refused() {
    let key = IdpKey::ed25519("ed-1");
    let (_idp, url) = Idp::start(&[&key]).await;
    let v = verifier(&url, Duration::ZERO);
    let mut c = claims();
    c["scope"] = json!("openid profile llm_proxy_admin");
    assert_eq!(
        v.verify(&key.sign(&c)).await,
        Err(TokenError::MissingScope("llm_proxy".into()))
    );
    c.as_object_mut().unwrap().remove("scope");
    assert_eq!(
        v.verify(&key.sign(&c)).await,
        Err(TokenError::MissingScope("llm_proxy".into()))
    );
}

#[tokio::test]
async fn scp_array_and_string_forms_are_read() {
    let key = IdpKey::ed25519("ed-1");
    let (_idp, url) = Idp::start(&[&key]).await;
    let v = verifier(&url, Duration::ZERO);
    let mut c = claims();
    c.as_object_mut().unwrap().remove("scope");
    c["scp"] = json!(["read", "llm_proxy"]);
    assert_eq!(
        v.verify(&key.sign(&c)).await.unwrap().scopes,
        ["read", "llm_proxy"]
    );
    c["scp"] = json!("llm_proxy write");
    assert_eq!(
        v.verify(&key.sign(&c)).await.unwrap().scopes,
        ["llm_proxy", "write"]
    );

    // A configured scope replaces the default.
    let mut cfg = OidcConfig::new(ISSUER, AUDIENCE, &url);
    cfg.required_scope = "write".into();
    let v = OidcVerifier::new(cfg).unwrap();
    assert!(v.verify(&key.sign(&c)).await.is_ok());
}

#[tokio::test]
async fn wrong_issuer_is_refused() {
    let key = IdpKey::rsa("rsa-1");
    let (_idp, url) = Idp::start(&[&key]).await;
    let v = verifier(&url, Duration::ZERO);
    let mut c = claims();
    c["iss"] = json!("https://idp.test/"); // trailing slash: a different issuer
    assert!(matches!(
        v.verify(&key.sign(&c)).await,
        Err(TokenError::WrongIssuer { found, .. }) if found == "https://idp.test/"
    ));
}

#[tokio::test]
async fn audience_string_or_array() {
    let key = IdpKey::ec("ec-1");
    let (_idp, url) = Idp::start(&[&key]).await;
    let v = verifier(&url, Duration::ZERO);
    let mut c = claims();
    c["aud"] = json!("another-api");
    assert_eq!(
        v.verify(&key.sign(&c)).await,
        Err(TokenError::WrongAudience {
            expected: AUDIENCE.into()
        })
    );
    c["aud"] = json!(["another-api", "yet-another"]);
    assert!(matches!(
        v.verify(&key.sign(&c)).await,
        Err(TokenError::WrongAudience { .. })
    ));
    c["aud"] = json!(["another-api", AUDIENCE]);
    assert!(v.verify(&key.sign(&c)).await.is_ok());
}

#[tokio::test]
async fn expired_and_not_yet_valid_are_refused() {
    let key = IdpKey::ed25519("ed-1");
    let (_idp, url) = Idp::start(&[&key]).await;
    let v = verifier(&url, Duration::ZERO);
    let mut c = claims();
    c["exp"] = json!(now() - 120);
    assert_eq!(v.verify(&key.sign(&c)).await, Err(TokenError::Expired));
    c["exp"] = json!(now() + 300);
    c["nbf"] = json!(now() + 120);
    assert_eq!(v.verify(&key.sign(&c)).await, Err(TokenError::NotYetValid));
    c.as_object_mut().unwrap().remove("nbf");
    c.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        v.verify(&key.sign(&c)).await,
        Err(TokenError::MissingClaim("exp"))
    );
    // verify_at pins the clock.
    let c = claims();
    let exp = c["exp"].as_i64().unwrap();
    assert!(v.verify_at(&key.sign(&c), exp - 1).await.is_ok());
    assert_eq!(
        v.verify_at(&key.sign(&c), exp + 30).await,
        Err(TokenError::Expired)
    );
}

#[tokio::test]
async fn keys_are_cached_and_rotation_refetches_once() {
    let old = IdpKey::ed25519("key-2024");
    let new = IdpKey::rsa("key-2025");
    let (idp, url) = Idp::start(&[&old]).await;
    let v = verifier(&url, Duration::ZERO);
    assert_eq!(idp.hits(), 0, "nothing is fetched before the first token");

    v.verify(&old.sign(&claims())).await.unwrap();
    v.verify(&old.sign(&claims())).await.unwrap();
    assert_eq!(idp.hits(), 1, "two tokens with a known kid = one fetch");

    idp.serve(&[&new]);
    v.verify(&new.sign(&claims())).await.unwrap();
    assert_eq!(idp.hits(), 2, "a new kid costs exactly one refetch");
    v.verify(&new.sign(&claims())).await.unwrap();
    assert_eq!(idp.hits(), 2);

    // The old key left the set: one refetch confirms it, then refusal.
    assert_eq!(
        v.verify(&old.sign(&claims())).await,
        Err(TokenError::UnknownKey("key-2024".into()))
    );
    assert_eq!(idp.hits(), 3);
}

#[tokio::test]
async fn garbage_kids_do_not_cause_a_refetch_storm() {
    let key = IdpKey::ed25519("ed-1");
    let (idp, url) = Idp::start(&[&key]).await;
    let v = verifier(&url, Duration::from_secs(3600));
    for i in 0..20 {
        let token = key.sign_as(&format!("garbage-{i}"), &claims());
        assert_eq!(
            v.verify(&token).await,
            Err(TokenError::UnknownKey(format!("garbage-{i}")))
        );
    }
    assert_eq!(
        idp.hits(),
        1,
        "only the first (cold-cache) fetch within the interval"
    );
    // The real key came with that one fetch.
    v.verify(&key.sign(&claims())).await.unwrap();
    assert_eq!(idp.hits(), 1);

    // With no interval, each unknown kid is worth exactly one refetch, never more.
    let v = verifier(&url, Duration::ZERO);
    for i in 0..3 {
        let token = key.sign_as(&format!("garbage-{i}"), &claims());
        assert!(matches!(
            v.verify(&token).await,
            Err(TokenError::UnknownKey(_))
        ));
    }
    assert_eq!(idp.hits(), 1 + 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn concurrent_cold_requests_fetch_once() {
    let key = IdpKey::ed25519("ed-1");
    let (idp, url) = Idp::start(&[&key]).await;
    let v = Arc::new(verifier(&url, Duration::ZERO));
    let mut tasks = tokio::task::JoinSet::new();
    for _ in 0..16 {
        let v = Arc::clone(&v);
        let token = key.sign(&claims());
        tasks.spawn(async move { v.verify(&token).await });
    }
    while let Some(res) = tasks.join_next().await {
        res.unwrap().unwrap();
    }
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn algorithm_confusion_and_symmetric_keys_are_refused() {
    let ed = IdpKey::ed25519("ed-1");
    let rsa = IdpKey::rsa("rsa-1");
    let secret = b"a-symmetric-key-someone-published-in-jwks";
    let oct = json!({"kty": "oct", "k": b64url_encode(secret), "kid": "hmac-1", "alg": "HS256"});
    let (idp, url) = Idp::start(&[&ed, &rsa]).await;
    {
        let mut set = idp.jwks.lock().unwrap();
        set["keys"].as_array_mut().unwrap().push(oct);
    }
    let v = verifier(&url, Duration::from_secs(3600));

    // HS256 signed with the Ed25519 public key, naming the Ed25519 key.
    let ed_x = ed.jwk["x"].as_str().unwrap();
    let public = b64url_decode(ed_x).unwrap();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some("ed-1".into());
    for secret in [public.as_slice(), ed_x.as_bytes()] {
        let t =
            jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap();
        assert!(matches!(
            v.verify(&t).await,
            Err(TokenError::WrongAlgorithm { found, .. }) if found == "HS256"
        ));
    }
    // HS256 with the JWKS's own oct key: never accepted.
    header.kid = Some("hmac-1".into());
    let t = jsonwebtoken::encode(&header, &claims(), &EncodingKey::from_secret(secret)).unwrap();
    assert!(matches!(
        v.verify(&t).await,
        Err(TokenError::WrongAlgorithm { .. })
    ));
    // alg none.
    let h = b64url_encode(br#"{"alg":"none","kid":"ed-1"}"#);
    let p = b64url_encode(claims().to_string().as_bytes());
    assert!(matches!(
        v.verify(&format!("{h}.{p}.")).await,
        Err(TokenError::WrongAlgorithm { .. })
    ));
    // An RSA-signed token naming the Ed25519 key.
    let t = rsa.sign_as("ed-1", &claims());
    assert_eq!(
        v.verify(&t).await,
        Err(TokenError::WrongAlgorithm {
            found: "RS256".into(),
            expected: "EdDSA".into()
        })
    );
    // A signature by another key of the same type.
    let impostor = IdpKey::ed25519("ed-1");
    assert_eq!(
        v.verify(&impostor.sign(&claims())).await,
        Err(TokenError::BadSignature)
    );
    // The oct key was skipped when caching, so RS256 naming it is an unknown key.
    assert!(matches!(
        v.verify(&rsa.sign_as("hmac-1", &claims())).await,
        Err(TokenError::UnknownKey(_))
    ));
    assert_eq!(idp.hits(), 1);
}

#[tokio::test]
async fn odd_keys_in_the_set_are_skipped_without_harm() {
    let ed = IdpKey::ed25519("ed-1");
    let (idp, url) = Idp::start(&[&ed]).await;
    {
        let mut set = idp.jwks.lock().unwrap();
        let keys = set["keys"].as_array_mut().unwrap();
        // Short Ed25519 `x` (would make the verifier slice out of bounds), an unknown key
        // type, an encryption key, and junk.
        keys.insert(
            0,
            json!({"kty": "OKP", "crv": "Ed25519", "x": "AAAA", "kid": "short"}),
        );
        keys.push(json!({"kty": "PQC", "kid": "future"}));
        keys.push(
            json!({"kty": "OKP", "crv": "Ed25519", "x": ed.jwk["x"], "kid": "enc", "use": "enc"}),
        );
        keys.push(json!("not a key"));
    }
    let v = verifier(&url, Duration::from_secs(3600));
    v.verify(&ed.sign(&claims())).await.unwrap();
    for kid in ["short", "future", "enc"] {
        assert!(matches!(
            v.verify(&ed.sign_as(kid, &claims())).await,
            Err(TokenError::UnknownKey(_))
        ));
    }
}

#[tokio::test]
async fn unreachable_or_failing_jwks_is_a_key_source_error() {
    let key = IdpKey::ed25519("ed-1");
    let (idp, url) = Idp::start(&[&key]).await;
    *idp.fail.lock().unwrap() = true;
    let v = verifier(&url, Duration::from_secs(3600));
    let err = v.verify(&key.sign(&claims())).await.unwrap_err();
    assert!(
        matches!(&err, TokenError::KeySource(m) if m.contains("500")),
        "{err:?}"
    );
    // Within the interval the failure is remembered, not retried.
    assert!(matches!(
        v.verify(&key.sign(&claims())).await,
        Err(TokenError::KeySource(_))
    ));
    assert_eq!(idp.hits(), 1);

    *idp.fail.lock().unwrap() = false;
    let v = verifier(&url, Duration::ZERO);
    v.verify(&key.sign(&claims())).await.unwrap();

    // Nothing listening: bind a port, then free it.
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let dead = format!("http://{}/jwks", listener.local_addr().unwrap());
    drop(listener);
    let v = verifier(&dead, Duration::ZERO);
    assert!(matches!(
        v.verify(&key.sign(&claims())).await,
        Err(TokenError::KeySource(_))
    ));
}
