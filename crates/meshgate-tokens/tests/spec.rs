//! Token specs (YAML): parsing, validation errors, durations, and claims built from a spec.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use meshgate_tokens::*;

const NOW: i64 = 1_700_000_000;

const GOOD: &str = r#"
version: v1
kind: ParticipantToken
identity: ci-bot
room: standup          # optional
role: agent            # optional
project: proj_123
expires_in: 30m
api:
  llm:
    models: ["openai/gpt-4o-mini", "anthropic/*"]
"#;

fn spec_err(yaml: &str) -> String {
    match TokenSpec::from_yaml(yaml) {
        Err(TokenError::Spec(msg)) => msg,
        other => panic!("expected a spec error, got {other:?}"),
    }
}

#[test]
fn good_spec_parses_and_builds_claims() {
    let spec = TokenSpec::from_yaml(GOOD).unwrap();
    assert_eq!(spec.identity, "ci-bot");
    assert_eq!(spec.room.as_deref(), Some("standup"));
    assert_eq!(spec.role.as_deref(), Some("agent"));
    assert_eq!(spec.project.as_deref(), Some("proj_123"));
    assert_eq!(spec.expiry, Expiry::In(Duration::from_secs(1800)));

    let c = spec.claims("key_1", "proj_123", "meshgate", NOW).unwrap();
    assert_eq!(c.iss, "key_1");
    assert_eq!(c.sub, "ci-bot");
    assert_eq!(c.aud, "meshgate");
    assert_eq!(c.project, "proj_123");
    assert_eq!(c.iat, NOW);
    assert_eq!(c.exp, NOW + 1800);
    assert_eq!(c.nbf, None);
    assert!(!c.jti.is_empty());
    let llm = c.api.llm.unwrap();
    assert!(llm.allows("openai", "gpt-4o-mini"));
    assert!(llm.allows("anthropic", "claude-sonnet-4-5"));
    assert!(!llm.allows("openai", "gpt-4o"));

    // Two mints from one spec get distinct ids.
    let again = spec.claims("key_1", "proj_123", "meshgate", NOW).unwrap();
    assert_ne!(again.jti, c.jti);
}

#[test]
fn minimal_spec_gets_defaults() {
    let spec =
        TokenSpec::from_yaml("version: v1\nkind: ParticipantToken\nidentity: bob\n").unwrap();
    assert_eq!(spec.expiry, Expiry::In(DEFAULT_EXPIRES_IN));
    assert_eq!(spec.api, Grants::default());
    let c = spec.claims("key_1", "proj_9", "meshgate", NOW).unwrap();
    assert_eq!(c.exp, NOW + 3600);
    assert_eq!(c.project, "proj_9", "the minting side supplies the project");
    assert_eq!(c.api.llm, None);

    // `llm:` with no models = all models.
    let spec = TokenSpec::from_yaml(
        "version: v1\nkind: ParticipantToken\nidentity: bob\napi:\n  llm: {}\n",
    )
    .unwrap();
    assert!(spec.api.llm.unwrap().allows("any", "model"));
}

#[test]
fn wrong_version_is_refused() {
    let msg = spec_err(&GOOD.replace("version: v1", "version: v2"));
    assert!(msg.contains("unsupported version `v2`"), "{msg}");
    let msg = spec_err(&GOOD.replace("version: v1\n", ""));
    assert!(msg.contains("missing `version: v1`"), "{msg}");
}

#[test]
fn wrong_kind_is_refused() {
    let msg = spec_err(&GOOD.replace("kind: ParticipantToken", "kind: ApiKey"));
    assert!(msg.contains("unsupported kind `ApiKey`"), "{msg}");
}

#[test]
fn unknown_fields_are_refused() {
    let msg = spec_err(&format!("{GOOD}colour: blue\n"));
    assert!(msg.contains("colour"), "{msg}");
    // A typo under api must not silently grant every model.
    let msg = spec_err(&GOOD.replace("    models:", "    modles:"));
    assert!(msg.contains("modles"), "{msg}");
    let msg = spec_err(&GOOD.replace("  llm:", "  lm:"));
    assert!(msg.contains("lm"), "{msg}");
}

#[test]
fn other_spec_errors() {
    assert!(matches!(
        TokenSpec::from_yaml("- a\n- b\n"),
        Err(TokenError::Spec(_))
    ));
    assert!(matches!(
        TokenSpec::from_yaml("version: [\n"),
        Err(TokenError::Spec(_))
    ));
    spec_err("version: v1\nkind: ParticipantToken\n"); // no identity
    spec_err("version: v1\nkind: ParticipantToken\nidentity: '  '\n");
    let msg = spec_err(&GOOD.replace(
        "expires_in: 30m",
        "expires_in: 30m\nexpires_at: 2030-01-01T00:00:00Z",
    ));
    assert!(msg.contains("not both"), "{msg}");
    let msg = spec_err(&GOOD.replace("expires_in: 30m", "expires_at: next tuesday"));
    assert!(msg.contains("RFC 3339"), "{msg}");
}

#[test]
fn expires_at_is_used_and_must_be_future() {
    let spec = TokenSpec::from_yaml(
        &GOOD.replace("expires_in: 30m", "expires_at: 2030-01-01T00:00:00+01:00"),
    )
    .unwrap();
    assert_eq!(spec.expiry, Expiry::At(1_893_452_400));
    let c = spec.claims("k", "proj_123", "meshgate", NOW).unwrap();
    assert_eq!(c.exp, 1_893_452_400);
    assert!(matches!(
        spec.claims("k", "proj_123", "meshgate", 1_893_452_400),
        Err(TokenError::Spec(_))
    ));
}

#[test]
fn spec_project_must_match_the_key() {
    let spec = TokenSpec::from_yaml(GOOD).unwrap();
    let err = spec
        .claims("key_1", "proj_other", "meshgate", NOW)
        .unwrap_err();
    assert!(
        matches!(err, TokenError::Spec(m) if m.contains("proj_123") && m.contains("proj_other"))
    );
}

#[test]
fn durations() {
    let ok: &[(&str, u64)] = &[
        ("30s", 30),
        ("30m", 1800),
        ("1h", 3600),
        ("7d", 604_800),
        ("2w", 1_209_600),
        ("1h30m", 5400),
        (" 90m ", 5400),
    ];
    for &(text, secs) in ok {
        assert_eq!(
            parse_duration(text).unwrap(),
            Duration::from_secs(secs),
            "{text}"
        );
    }
    for bad in [
        "",
        "0h",
        "90",
        "1.5h",
        "h",
        "1 h",
        "-1h",
        "1y",
        "1H",
        "99999999999999999999d",
    ] {
        assert!(
            matches!(parse_duration(bad), Err(TokenError::Spec(_))),
            "{bad:?} should be refused"
        );
    }
    let spec = TokenSpec::from_yaml(&GOOD.replace("expires_in: 30m", "expires_in: 7d")).unwrap();
    assert_eq!(
        spec.claims("k", "proj_123", "meshgate", NOW).unwrap().exp,
        NOW + 7 * 86_400
    );
    spec_err(&GOOD.replace("expires_in: 30m", "expires_in: soon"));
}

#[test]
fn spec_minted_token_verifies() {
    let secret = SigningSecret::generate_hs256();
    let key = VerifyingKey {
        kid: "key_1".into(),
        project_id: "proj_123".into(),
        material: secret.verifying_material(),
    };
    let claims = TokenSpec::from_yaml(GOOD)
        .unwrap()
        .claims("key_1", "proj_123", DEFAULT_AUDIENCE, NOW)
        .unwrap();
    let token = mint_participant(&claims, "key_1", &secret).unwrap();
    let got =
        verify_participant(&token, DEFAULT_AUDIENCE, NOW + 60, |_| Some(key.clone())).unwrap();
    assert_eq!(got, claims);
    assert_eq!(
        verify_participant(&token, DEFAULT_AUDIENCE, NOW + 1800 + 30, |_| Some(
            key.clone()
        )),
        Err(TokenError::Expired)
    );
}
