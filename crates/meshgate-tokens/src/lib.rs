//! The JWT credentials meshgate accepts: verifying and minting them.
//!
//! Three kinds of token reach the gateway as a bearer string (besides `mg_` API keys;
//! [`peek_kind`] tells them apart without verifying anything):
//!
//! - **Participant tokens**, minted by a project with one of its signing keys (HS256 secret
//!   or Ed25519 key) for one participant, usually from a YAML [`TokenSpec`]. Verified with
//!   [`verify_participant`] against the key the header `kid` names.
//! - **Delegation tokens**, minted by the gateway itself ([`mint_delegation`]) so a
//!   credential can hand an agent a short-lived, budget-capped credential.
//! - **OAuth access tokens** from an external OIDC issuer, verified by [`OidcVerifier`]
//!   against the issuer's JWKS.
//!
//! Every verifier pins the algorithm from the key (never from the token), refuses `none`,
//! requires `exp`, and reports each failed rule as its own [`TokenError`] variant.
//!
//! ```
//! use meshgate_tokens::*;
//!
//! let secret = SigningSecret::generate_ed25519();
//! let key = VerifyingKey {
//!     kid: "key_1".into(),
//!     project_id: "proj_1".into(),
//!     material: secret.verifying_material(),
//! };
//! let spec = TokenSpec::from_yaml(
//!     "version: v1\nkind: ParticipantToken\nidentity: ci-bot\napi:\n  llm:\n    models: [\"openai/*\"]\n",
//! )?;
//! let now = 1_700_000_000;
//! let claims = spec.claims("key_1", "proj_1", DEFAULT_AUDIENCE, now)?;
//! let token = mint_participant(&claims, "key_1", &secret)?;
//!
//! let got = verify_participant(&token, DEFAULT_AUDIENCE, now, |kid| {
//!     (kid == key.kid).then(|| key.clone())
//! })?;
//! assert_eq!(got.sub, "ci-bot");
//! assert!(got.api.llm.as_ref().is_some_and(|g| g.allows("openai", "gpt-4o")));
//! assert!(!got.api.llm.as_ref().is_some_and(|g| g.allows("anthropic", "claude-sonnet-4-5")));
//! # Ok::<(), TokenError>(())
//! ```
//!
//! # Layout
//! - `error`: [`TokenError`], the one error type, one variant per refusal reason.
//! - `keys`: project signing keys — [`KeyMaterial`] and [`VerifyingKey`] (verify),
//!   [`SigningSecret`] (mint), generation and the base64url text form.
//! - `grants`: [`Grants`], [`LlmGrant`] and the `provider/model*` pattern syntax.
//! - `participant`: [`ParticipantClaims`], [`mint_participant`], [`verify_participant`].
//! - `spec`: [`TokenSpec`], the committed YAML description of a participant token, and
//!   [`parse_duration`].
//! - `delegation`: [`DelegationClaims`], [`mint_delegation`], [`verify_delegation`].
//! - `kind`: [`peek_kind`], dispatching a bearer string by its unverified shape.
//! - `oidc`: [`OidcVerifier`], OAuth access tokens checked against a cached JWKS.
//! - `jwt` (private): header/payload reading, pinned-algorithm signature check, time and
//!   audience rules, random ids.

mod delegation;
mod error;
mod grants;
mod jwt;
mod keys;
mod kind;
mod oidc;
mod participant;
mod spec;

pub use delegation::{
    mint_delegation, new_delegation_id, verify_delegation, verify_delegation_with,
    DelegationClaims, DELEGATION_ISSUER, DELEGATION_KID, DELEGATION_TYP,
};
pub use error::TokenError;
pub use grants::{model_allowed, pattern_matches, Grants, LlmGrant};
pub use jwt::{b64url_decode, b64url_encode, new_jti, DEFAULT_LEEWAY_SECS};
pub use keys::{
    ed25519_public_key, generate_ed25519, generate_hs256_secret, KeyMaterial, SigningSecret,
    VerifyingKey, MIN_HS256_SECRET_LEN,
};
pub use kind::{peek_kind, TokenKind, API_KEY_PREFIX};
pub use oidc::{
    OAuthClaims, OidcConfig, OidcVerifier, DEFAULT_MIN_REFRESH_INTERVAL, DEFAULT_REQUIRED_SCOPE,
};
pub use participant::{
    mint_participant, verify_participant, verify_participant_with, ParticipantClaims,
    VerifyOptions, DEFAULT_AUDIENCE,
};
pub use spec::{parse_duration, Expiry, TokenSpec, DEFAULT_EXPIRES_IN, SPEC_KIND, SPEC_VERSION};
