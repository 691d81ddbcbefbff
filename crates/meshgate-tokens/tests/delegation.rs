//! Delegation tokens (gateway-signed) and dispatching bearer strings with `peek_kind`.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use meshgate_tokens::*;
use serde_json::json;

const NOW: i64 = 1_700_000_000;
const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef-gateway";

fn claims() -> DelegationClaims {
    DelegationClaims::new(
        "proj_123",
        "token:abc",
        "2.50",
        Some(vec!["openai/gpt-4o-mini".into()]),
        DEFAULT_AUDIENCE,
        NOW,
        Duration::from_secs(900),
    )
}

fn verify(token: &str) -> Result<DelegationClaims, TokenError> {
    verify_delegation(token, SECRET, DEFAULT_AUDIENCE, NOW)
}

#[test]
fn round_trip() {
    let c = claims();
    assert!(c.sub.starts_with("dlg_") && c.sub.len() == 36, "{}", c.sub);
    assert_eq!((c.iss.as_str(), c.typ.as_str()), ("meshgate", "delegation"));
    assert_eq!(c.exp, NOW + 900);
    let token = mint_delegation(&c, SECRET).unwrap();
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.kid.as_deref(), Some(DELEGATION_KID));
    let got = verify(&token).unwrap();
    assert_eq!(got, c);
    assert!(got.allows("openai", "gpt-4o-mini"));
    assert!(!got.allows("openai", "gpt-4o"));
    assert_ne!(claims().sub, c.sub, "ids are random");
}

#[test]
fn expired_is_refused() {
    let mut c = claims();
    c.exp = NOW - 31;
    assert_eq!(
        verify(&mint_delegation(&c, SECRET).unwrap()),
        Err(TokenError::Expired)
    );
}

#[test]
fn wrong_secret_is_refused() {
    let token = mint_delegation(&claims(), SECRET).unwrap();
    let other = b"another-gateway-secret-of-32-bytes!!";
    assert_eq!(
        verify_delegation(&token, other, DEFAULT_AUDIENCE, NOW),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn wrong_audience_is_refused() {
    let token = mint_delegation(&claims(), SECRET).unwrap();
    assert!(matches!(
        verify_delegation(&token, SECRET, "other-gateway", NOW),
        Err(TokenError::WrongAudience { .. })
    ));
}

#[test]
fn algorithm_confusion_is_refused() {
    let payload = serde_json::to_value(claims()).unwrap();
    // Another HMAC strength with the same secret.
    let mut header = Header::new(Algorithm::HS512);
    header.kid = Some(DELEGATION_KID.into());
    let token = jsonwebtoken::encode(&header, &payload, &EncodingKey::from_secret(SECRET)).unwrap();
    assert!(matches!(
        verify(&token),
        Err(TokenError::WrongAlgorithm { found, .. }) if found == "HS512"
    ));
    // An EdDSA token from someone's own key.
    let (seed, _) = generate_ed25519();
    let mut header = Header::new(Algorithm::EdDSA);
    header.kid = Some(DELEGATION_KID.into());
    let der = {
        use ed25519_dalek::pkcs8::EncodePrivateKey;
        ed25519_dalek::SigningKey::from_bytes(&seed)
            .to_pkcs8_der()
            .unwrap()
    };
    let token =
        jsonwebtoken::encode(&header, &payload, &EncodingKey::from_ed_der(der.as_bytes())).unwrap();
    assert!(matches!(
        verify(&token),
        Err(TokenError::WrongAlgorithm { found, .. }) if found == "EdDSA"
    ));
    // alg none.
    let h = b64url_encode(br#"{"alg":"none","kid":"meshgate-delegation"}"#);
    let p = b64url_encode(serde_json::to_string(&payload).unwrap().as_bytes());
    assert!(matches!(
        verify(&format!("{h}.{p}.")),
        Err(TokenError::WrongAlgorithm { .. })
    ));
}

#[test]
fn participant_shaped_tokens_are_not_delegations() {
    // Signed with the right secret but without the delegation markers.
    let mut payload = serde_json::to_value(claims()).unwrap();
    let sign = |payload: &serde_json::Value, kid: Option<&str>| {
        let mut header = Header::new(Algorithm::HS256);
        header.kid = kid.map(str::to_owned);
        jsonwebtoken::encode(&header, payload, &EncodingKey::from_secret(SECRET)).unwrap()
    };
    assert!(matches!(
        verify(&sign(&payload, Some("key_1"))),
        Err(TokenError::UnknownKey(_))
    ));
    assert!(matches!(
        verify(&sign(&payload, None)),
        Err(TokenError::Malformed(_))
    ));
    payload["typ"] = json!("participant");
    assert!(matches!(
        verify(&sign(&payload, Some(DELEGATION_KID))),
        Err(TokenError::Malformed(_))
    ));
    payload["typ"] = json!("delegation");
    payload["iss"] = json!("key_1");
    assert!(matches!(
        verify(&sign(&payload, Some(DELEGATION_KID))),
        Err(TokenError::WrongIssuer { .. })
    ));
    payload["iss"] = json!("meshgate");
    payload.as_object_mut().unwrap().remove("exp");
    assert_eq!(
        verify(&sign(&payload, Some(DELEGATION_KID))),
        Err(TokenError::MissingClaim("exp"))
    );
}

#[test]
fn mint_refuses_bad_shapes() {
    let mut c = claims();
    c.max_budget_usd = "2.5e3".into();
    assert!(matches!(
        mint_delegation(&c, SECRET),
        Err(TokenError::Malformed(_))
    ));
    for bad in ["", "-1", "1.", ".5", "1,50", "NaN"] {
        c.max_budget_usd = bad.into();
        assert!(mint_delegation(&c, SECRET).is_err(), "{bad:?}");
    }
    c.max_budget_usd = "10".into();
    assert!(mint_delegation(&c, SECRET).is_ok());
    assert!(matches!(
        mint_delegation(&c, b"short"),
        Err(TokenError::InvalidKey(_))
    ));
    c.iss = "someone".into();
    assert!(matches!(
        mint_delegation(&c, SECRET),
        Err(TokenError::WrongIssuer { .. })
    ));
}

#[test]
fn peek_kind_dispatches() {
    assert_eq!(peek_kind("mg_live_abc123"), Some(TokenKind::ApiKey));
    let delegation = mint_delegation(&claims(), SECRET).unwrap();
    assert_eq!(peek_kind(&delegation), Some(TokenKind::Delegation));

    let secret = SigningSecret::generate_hs256();
    let participant = TokenSpec::from_yaml("version: v1\nkind: ParticipantToken\nidentity: a\n")
        .unwrap()
        .claims("key_1", "proj_1", DEFAULT_AUDIENCE, NOW)
        .unwrap();
    let participant = mint_participant(&participant, "key_1", &secret).unwrap();
    assert_eq!(peek_kind(&participant), Some(TokenKind::Participant));

    let oauth = jsonwebtoken::encode(
        &Header::new(Algorithm::HS256),
        &json!({"iss": "https://idp.example", "sub": "u1", "scope": "llm_proxy"}),
        &EncodingKey::from_secret(SECRET),
    )
    .unwrap();
    assert_eq!(peek_kind(&oauth), Some(TokenKind::Other));

    for junk in ["", "hello", "a.b", "a.b.c", "a.b.c.d", "sk-abc"] {
        assert_eq!(peek_kind(junk), None, "{junk:?}");
    }
}
