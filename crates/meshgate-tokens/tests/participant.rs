//! Participant tokens: round trips with HS256 and EdDSA, and one test per refusal rule.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use jsonwebtoken::{Algorithm, EncodingKey, Header};
use meshgate_tokens::*;
use serde_json::{json, Value};

const NOW: i64 = 1_700_000_000;
const KID: &str = "key_abc";
const PROJECT: &str = "proj_123";

struct Fixture {
    secret: SigningSecret,
    key: VerifyingKey,
}

impl Fixture {
    fn hs256() -> Self {
        Self::from(SigningSecret::generate_hs256())
    }
    fn eddsa() -> Self {
        Self::from(SigningSecret::generate_ed25519())
    }
    fn from(secret: SigningSecret) -> Self {
        let key = VerifyingKey {
            kid: KID.into(),
            project_id: PROJECT.into(),
            material: secret.verifying_material(),
        };
        Self { secret, key }
    }
    fn verify(&self, token: &str) -> Result<ParticipantClaims, TokenError> {
        verify_participant(token, DEFAULT_AUDIENCE, NOW, |kid| {
            (kid == self.key.kid).then(|| self.key.clone())
        })
    }
    fn mint(&self, claims: &ParticipantClaims) -> String {
        mint_participant(claims, KID, &self.secret).unwrap()
    }
}

fn claims() -> ParticipantClaims {
    ParticipantClaims {
        iss: KID.into(),
        sub: "ci-bot".into(),
        aud: DEFAULT_AUDIENCE.into(),
        project: PROJECT.into(),
        room: Some("standup".into()),
        role: Some("agent".into()),
        api: Grants {
            llm: Some(LlmGrant {
                models: Some(vec![
                    "openai/gpt-4o*".into(),
                    "anthropic/claude-sonnet-4-5".into(),
                ]),
            }),
        },
        iat: NOW - 10,
        nbf: None,
        exp: NOW + 3600,
        jti: new_jti(),
    }
}

fn b64json(v: &Value) -> String {
    b64url_encode(serde_json::to_string(v).unwrap().as_bytes())
}

/// Signs an arbitrary payload with HS256 and the given header kid, bypassing our minting.
fn hs256_raw(payload: &Value, kid: Option<&str>, secret: &[u8]) -> String {
    let mut header = Header::new(Algorithm::HS256);
    header.kid = kid.map(str::to_owned);
    jsonwebtoken::encode(&header, payload, &EncodingKey::from_secret(secret)).unwrap()
}

fn hs_secret(f: &Fixture) -> Vec<u8> {
    match &f.secret {
        SigningSecret::Hs256(s) => s.clone(),
        SigningSecret::EdDsa(_) => panic!("not hs256"),
    }
}

#[test]
fn hs256_round_trip() {
    let f = Fixture::hs256();
    let c = claims();
    let token = f.mint(&c);
    let header = jsonwebtoken::decode_header(&token).unwrap();
    assert_eq!(header.alg, Algorithm::HS256);
    assert_eq!(header.kid.as_deref(), Some(KID));
    assert_eq!(f.verify(&token).unwrap(), c);
}

#[test]
fn eddsa_round_trip() {
    let f = Fixture::eddsa();
    let c = claims();
    let token = f.mint(&c);
    assert_eq!(
        jsonwebtoken::decode_header(&token).unwrap().alg,
        Algorithm::EdDSA
    );
    assert_eq!(f.verify(&token).unwrap(), c);
}

#[test]
fn claims_json_uses_the_documented_names() {
    let c = claims();
    let v = serde_json::to_value(&c).unwrap();
    for name in [
        "iss", "sub", "aud", "project", "room", "role", "api", "iat", "exp", "jti",
    ] {
        assert!(v.get(name).is_some(), "{name} missing in {v}");
    }
    assert!(
        v.get("nbf").is_none(),
        "absent nbf is not serialised as null"
    );
    assert_eq!(v["api"]["llm"]["models"][0], "openai/gpt-4o*");
}

#[test]
fn alg_none_is_refused() {
    let f = Fixture::hs256();
    let header = b64json(&json!({"alg": "none", "typ": "JWT", "kid": KID}));
    let payload = b64json(&serde_json::to_value(claims()).unwrap());
    for token in [
        format!("{header}.{payload}."),
        format!("{header}.{payload}.AAAA"),
    ] {
        let err = f.verify(&token).unwrap_err();
        assert!(
            matches!(&err, TokenError::WrongAlgorithm { found, .. } if found == "none"),
            "{err:?}"
        );
    }
    let header = b64json(&json!({"alg": "None", "kid": KID}));
    assert!(matches!(
        f.verify(&format!("{header}.{payload}.")),
        Err(TokenError::WrongAlgorithm { .. })
    ));
}

#[test]
fn hs256_signed_with_the_eddsa_public_key_is_refused() {
    let f = Fixture::eddsa();
    let KeyMaterial::EdDsa { public_key } = f.key.material.clone() else {
        unreachable!()
    };
    let payload = serde_json::to_value(claims()).unwrap();
    // Raw bytes, and the text form an attacker may have seen published.
    let text = f.key.material.public_text().unwrap();
    for secret in [public_key.to_vec(), text.into_bytes()] {
        let token = hs256_raw(&payload, Some(KID), &secret);
        let err = f.verify(&token).unwrap_err();
        assert_eq!(
            err,
            TokenError::WrongAlgorithm {
                found: "HS256".into(),
                expected: "EdDSA".into()
            }
        );
    }
}

#[test]
fn eddsa_token_against_hs256_key_is_refused() {
    let hs = Fixture::hs256();
    let ed = Fixture::eddsa();
    let token = ed.mint(&claims());
    assert!(matches!(
        hs.verify(&token),
        Err(TokenError::WrongAlgorithm { found, expected }) if found == "EdDSA" && expected == "HS256"
    ));
}

#[test]
fn wrong_signature_is_refused() {
    let f = Fixture::hs256();
    let other = Fixture::hs256();
    assert_eq!(
        f.verify(&other.mint(&claims())),
        Err(TokenError::BadSignature)
    );

    let f = Fixture::eddsa();
    let other = Fixture::eddsa();
    assert_eq!(
        f.verify(&other.mint(&claims())),
        Err(TokenError::BadSignature)
    );
}

#[test]
fn unknown_kid_is_refused() {
    let f = Fixture::hs256();
    let mut c = claims();
    c.iss = "key_gone".into();
    let token = mint_participant(&c, "key_gone", &f.secret).unwrap();
    assert_eq!(
        f.verify(&token),
        Err(TokenError::UnknownKey("key_gone".into()))
    );
}

#[test]
fn lookup_returning_another_key_is_treated_as_unknown() {
    let f = Fixture::hs256();
    let token = f.mint(&claims());
    let err = verify_participant(&token, DEFAULT_AUDIENCE, NOW, |_| {
        Some(VerifyingKey {
            kid: "key_other".into(),
            ..f.key.clone()
        })
    })
    .unwrap_err();
    assert_eq!(err, TokenError::UnknownKey(KID.into()));
}

#[test]
fn missing_kid_falls_back_to_iss() {
    let f = Fixture::hs256();
    let payload = serde_json::to_value(claims()).unwrap();
    let token = hs256_raw(&payload, None, &hs_secret(&f));
    assert_eq!(f.verify(&token).unwrap().sub, "ci-bot");
}

#[test]
fn iss_other_than_kid_is_refused() {
    let f = Fixture::hs256();
    let mut c = claims();
    c.iss = "key_other".into();
    // Our minting refuses it outright ...
    assert!(matches!(
        mint_participant(&c, KID, &f.secret),
        Err(TokenError::WrongIssuer { .. })
    ));
    // ... and a hand-signed one is refused on verify.
    let token = hs256_raw(
        &serde_json::to_value(&c).unwrap(),
        Some(KID),
        &hs_secret(&f),
    );
    assert!(matches!(
        f.verify(&token),
        Err(TokenError::WrongIssuer { found, .. }) if found == "key_other"
    ));
}

#[test]
fn wrong_audience_is_refused() {
    let f = Fixture::hs256();
    let mut c = claims();
    c.aud = "someone-else".into();
    assert_eq!(
        f.verify(&f.mint(&c)),
        Err(TokenError::WrongAudience {
            expected: DEFAULT_AUDIENCE.into()
        })
    );
    // A configured audience is honoured.
    let ok = verify_participant(&f.mint(&c), "someone-else", NOW, |_| Some(f.key.clone()));
    assert!(ok.is_ok());
}

#[test]
fn wrong_project_is_refused() {
    let f = Fixture::eddsa();
    let mut c = claims();
    c.project = "proj_other".into();
    assert_eq!(
        f.verify(&f.mint(&c)),
        Err(TokenError::WrongProject {
            found: "proj_other".into()
        })
    );
}

#[test]
fn expired_is_refused_with_leeway() {
    let f = Fixture::hs256();
    let mut c = claims();
    c.exp = NOW - 31;
    assert_eq!(f.verify(&f.mint(&c)), Err(TokenError::Expired));
    c.exp = NOW - 10; // inside the default 30 s leeway
    let token = f.mint(&c);
    assert!(f.verify(&token).is_ok());
    let strict = VerifyOptions {
        leeway_secs: 0,
        ..VerifyOptions::default()
    };
    assert_eq!(
        verify_participant_with(&token, &strict, NOW, |_| Some(f.key.clone())),
        Err(TokenError::Expired)
    );
}

#[test]
fn not_yet_valid_is_refused_with_leeway() {
    let f = Fixture::hs256();
    let mut c = claims();
    c.nbf = Some(NOW + 60);
    assert_eq!(f.verify(&f.mint(&c)), Err(TokenError::NotYetValid));
    c.nbf = Some(NOW + 20);
    assert!(f.verify(&f.mint(&c)).is_ok());
}

#[test]
fn missing_exp_is_refused() {
    let f = Fixture::hs256();
    let mut payload = serde_json::to_value(claims()).unwrap();
    payload.as_object_mut().unwrap().remove("exp");
    let token = hs256_raw(&payload, Some(KID), &hs_secret(&f));
    assert_eq!(f.verify(&token), Err(TokenError::MissingClaim("exp")));

    payload["exp"] = json!("tomorrow");
    let token = hs256_raw(&payload, Some(KID), &hs_secret(&f));
    assert!(matches!(f.verify(&token), Err(TokenError::Malformed(_))));
}

#[test]
fn tampered_payload_is_refused() {
    for f in [Fixture::hs256(), Fixture::eddsa()] {
        let token = f.mint(&claims());
        let parts: Vec<&str> = token.split('.').collect();
        let mut payload = serde_json::to_value(claims()).unwrap();
        payload["api"]["llm"] = json!({});
        let forged = format!("{}.{}.{}", parts[0], b64json(&payload), parts[2]);
        assert_eq!(f.verify(&forged), Err(TokenError::BadSignature));
    }
}

#[test]
fn unknown_grants_are_ignored() {
    let f = Fixture::hs256();
    let mut payload = serde_json::to_value(claims()).unwrap();
    payload["api"]["video"] = json!({"rooms": ["standup"], "publish": true});
    payload["extra_claim"] = json!(42);
    let token = hs256_raw(&payload, Some(KID), &hs_secret(&f));
    let got = f.verify(&token).unwrap();
    assert!(got.api.llm.unwrap().allows("openai", "gpt-4o-mini"));
}

#[test]
fn missing_llm_grant_decodes_as_none() {
    let f = Fixture::hs256();
    let mut payload = serde_json::to_value(claims()).unwrap();
    payload["api"] = json!({"video": {}});
    let token = hs256_raw(&payload, Some(KID), &hs_secret(&f));
    assert_eq!(f.verify(&token).unwrap().api.llm, None);

    payload.as_object_mut().unwrap().remove("api");
    let token = hs256_raw(&payload, Some(KID), &hs_secret(&f));
    assert_eq!(f.verify(&token).unwrap().api, Grants::default());
}

#[test]
fn crit_header_and_garbage_are_malformed() {
    let f = Fixture::hs256();
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(KID.into());
    header.crit = Some(vec!["exp".into()]);
    let token = jsonwebtoken::encode(
        &header,
        &claims(),
        &EncodingKey::from_secret(&hs_secret(&f)),
    )
    .unwrap();
    assert!(matches!(f.verify(&token), Err(TokenError::Malformed(_))));
    for junk in ["", "abc", "a.b", "a.b.c.d", "!!.??.xx", "mg_live_123"] {
        assert!(
            matches!(f.verify(junk), Err(TokenError::Malformed(_))),
            "{junk:?}"
        );
    }
}

#[test]
fn key_text_forms_round_trip() {
    let hs = SigningSecret::generate_hs256();
    let back = SigningSecret::hs256_from_text(&hs.to_text()).unwrap();
    assert_eq!(back, hs);
    assert_eq!(
        KeyMaterial::hs256_from_text(&hs.to_text()).unwrap(),
        hs.verifying_material()
    );

    let (seed, public) = generate_ed25519();
    assert_eq!(ed25519_public_key(&seed), public);
    let ed = SigningSecret::EdDsa(seed);
    assert_eq!(
        SigningSecret::ed25519_from_text(&format!(" {}= \n", ed.to_text())).unwrap(),
        ed
    );
    let material = ed.verifying_material();
    assert_eq!(material, KeyMaterial::EdDsa { public_key: public });
    let text = material.public_text().unwrap();
    assert_eq!(text.len(), 43, "32 bytes base64url unpadded");
    assert_eq!(
        KeyMaterial::ed25519_public_from_text(&text).unwrap(),
        material
    );

    // Secrets never show in Debug output.
    assert!(!format!("{hs:?}").contains(&hs.to_text()));
    assert!(!format!("{ed:?}").contains(&ed.to_text()));
}

#[test]
fn weak_or_wrong_length_keys_are_refused() {
    assert!(matches!(
        SigningSecret::hs256_from_text(&b64url_encode(b"short")),
        Err(TokenError::InvalidKey(_))
    ));
    assert!(matches!(
        SigningSecret::ed25519_from_text(&b64url_encode(&[1u8; 31])),
        Err(TokenError::InvalidKey(_))
    ));
    assert!(matches!(
        SigningSecret::hs256_from_text("not base64!"),
        Err(TokenError::InvalidKey(_))
    ));
    // A short HMAC secret is refused when minting and when verifying.
    let weak = SigningSecret::Hs256(b"tiny".to_vec());
    assert!(matches!(
        mint_participant(&claims(), KID, &weak),
        Err(TokenError::InvalidKey(_))
    ));
    let key = VerifyingKey {
        kid: KID.into(),
        project_id: PROJECT.into(),
        material: KeyMaterial::Hs256 {
            secret: b"tiny".to_vec(),
        },
    };
    let token = hs256_raw(&serde_json::to_value(claims()).unwrap(), Some(KID), b"tiny");
    assert!(matches!(
        verify_participant(&token, DEFAULT_AUDIENCE, NOW, |_| Some(key.clone())),
        Err(TokenError::InvalidKey(_))
    ));
}
