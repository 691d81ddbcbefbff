//! Delegation tokens: short-lived JWTs the gateway itself signs (HS256, its own secret) so a
//! credential can hand an agent a narrower, budget-capped credential of its own.
//!
//! They are told apart from participant tokens by header `kid` = [`DELEGATION_KID`],
//! `iss` = [`DELEGATION_ISSUER`] and `typ` = [`DELEGATION_TYP`] in the payload; all three
//! are required on verify. The algorithm is pinned to HS256 whatever the header says.

use std::time::Duration;

use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header};
use serde::{Deserialize, Serialize};

use crate::grants::model_allowed;
use crate::jwt::{self, random_bytes};
use crate::keys::MIN_HS256_SECRET_LEN;
use crate::participant::{printable, VerifyOptions};
use crate::TokenError;

/// `iss` of every delegation token.
pub const DELEGATION_ISSUER: &str = "meshgate";
/// Header `kid` of every delegation token (it names the gateway's delegation secret).
pub const DELEGATION_KID: &str = "meshgate-delegation";
/// Payload `typ` of every delegation token.
pub const DELEGATION_TYP: &str = "delegation";

/// Claims of a delegation token.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct DelegationClaims {
    /// Always [`DELEGATION_ISSUER`].
    pub iss: String,
    /// The gateway's audience.
    pub aud: String,
    /// The delegation id, `dlg_...` ([`new_delegation_id`]).
    pub sub: String,
    /// Project the delegation spends in.
    pub project: String,
    /// The principal that delegated: an API key id, or `token:<jti>` for a token.
    pub parent: String,
    /// Spending cap in USD, as an exact decimal string (`"2.50"`), never a float.
    pub max_budget_usd: String,
    /// Model patterns ([`crate::pattern_matches`] syntax); `None` = whatever the parent may use.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub models: Option<Vec<String>>,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Expiry (unix seconds). Required.
    pub exp: i64,
    /// Always [`DELEGATION_TYP`].
    pub typ: String,
    /// A participant-token parent: the key that signed it, so that revoking the key ends
    /// the delegation too.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_kid: Option<String>,
    /// A token or user parent: the identity its calls are attributed to.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub user: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// A token parent's own model grant, which the delegation never widens.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_models: Option<Vec<String>>,
}

impl DelegationClaims {
    /// Claims for a fresh delegation (new id) living `ttl` from `now_unix`.
    pub fn new(
        project: impl Into<String>,
        parent: impl Into<String>,
        max_budget_usd: impl Into<String>,
        models: Option<Vec<String>>,
        audience: impl Into<String>,
        now_unix: i64,
        ttl: Duration,
    ) -> Self {
        let ttl = i64::try_from(ttl.as_secs()).unwrap_or(i64::MAX);
        Self {
            iss: DELEGATION_ISSUER.to_owned(),
            aud: audience.into(),
            sub: new_delegation_id(),
            project: project.into(),
            parent: parent.into(),
            max_budget_usd: max_budget_usd.into(),
            models,
            iat: now_unix,
            exp: now_unix.saturating_add(ttl),
            typ: DELEGATION_TYP.to_owned(),
            parent_kid: None,
            user: None,
            room: None,
            parent_models: None,
        }
    }

    /// Whether the delegation's own model list allows `provider`'s `model`. The gateway
    /// must also check the parent's grant: a delegation never widens it.
    pub fn allows(&self, provider: &str, model: &str) -> bool {
        model_allowed(self.models.as_deref(), provider, model)
    }
}

/// A new delegation id: `dlg_` and 32 lowercase hex digits (128 random bits).
pub fn new_delegation_id() -> String {
    let mut id = String::with_capacity(36);
    id.push_str("dlg_");
    for b in random_bytes::<16>() {
        id.push_str(&format!("{b:02x}"));
    }
    id
}

/// Signs a delegation with the gateway's secret (HS256, header `kid` = [`DELEGATION_KID`]).
///
/// Refuses claims that the verifier would refuse for their shape: wrong `iss`/`typ`, a
/// budget that is not a non-negative decimal, or a secret shorter than 32 bytes.
pub fn mint_delegation(
    claims: &DelegationClaims,
    gateway_secret: &[u8],
) -> Result<String, TokenError> {
    check_shape(claims)?;
    check_secret(gateway_secret)?;
    let mut header = Header::new(Algorithm::HS256);
    header.kid = Some(DELEGATION_KID.to_owned());
    jsonwebtoken::encode(&header, claims, &EncodingKey::from_secret(gateway_secret))
        .map_err(jwt::map_jwt_error)
}

/// Verifies a delegation token with the default leeway (30 s).
pub fn verify_delegation(
    token: &str,
    gateway_secret: &[u8],
    audience: &str,
    now_unix: i64,
) -> Result<DelegationClaims, TokenError> {
    verify_delegation_with(
        token,
        gateway_secret,
        &VerifyOptions::for_audience(audience),
        now_unix,
    )
}

/// [`verify_delegation`] with explicit options (audience, leeway).
pub fn verify_delegation_with(
    token: &str,
    gateway_secret: &[u8],
    opts: &VerifyOptions,
    now_unix: i64,
) -> Result<DelegationClaims, TokenError> {
    let unverified = jwt::read_unverified(token)?;
    if unverified.header.alg != "HS256" {
        return Err(jwt::wrong_alg(&unverified.header.alg, Algorithm::HS256));
    }
    match unverified.header.kid.as_deref() {
        Some(DELEGATION_KID) => {}
        Some(other) => return Err(TokenError::UnknownKey(printable(other))),
        None => return Err(TokenError::malformed("delegation token has no header kid")),
    }
    check_secret(gateway_secret)?;
    let payload = jwt::verify_signature(
        token,
        Algorithm::HS256,
        &DecodingKey::from_secret(gateway_secret),
    )?;
    let iss = jwt::string_claim(&payload, "iss")?;
    if iss != DELEGATION_ISSUER {
        return Err(TokenError::WrongIssuer {
            found: printable(iss),
            expected: format!("`{DELEGATION_ISSUER}`"),
        });
    }
    if jwt::string_claim(&payload, "typ")? != DELEGATION_TYP {
        return Err(TokenError::malformed("not a delegation token (typ)"));
    }
    jwt::check_audience(&payload, &opts.audience)?;
    jwt::check_times(&payload, now_unix, opts.leeway_secs)?;
    let claims: DelegationClaims = jwt::into_claims(payload)?;
    if !is_decimal(&claims.max_budget_usd) {
        return Err(TokenError::malformed(
            "`max_budget_usd` is not a non-negative decimal",
        ));
    }
    Ok(claims)
}

fn check_shape(claims: &DelegationClaims) -> Result<(), TokenError> {
    if claims.iss != DELEGATION_ISSUER {
        return Err(TokenError::WrongIssuer {
            found: claims.iss.clone(),
            expected: format!("`{DELEGATION_ISSUER}`"),
        });
    }
    if claims.typ != DELEGATION_TYP {
        return Err(TokenError::malformed(format!(
            "delegation `typ` must be `{DELEGATION_TYP}`"
        )));
    }
    if !is_decimal(&claims.max_budget_usd) {
        return Err(TokenError::malformed(format!(
            "`max_budget_usd` `{}` is not a non-negative decimal such as 2.50",
            claims.max_budget_usd
        )));
    }
    Ok(())
}

fn check_secret(secret: &[u8]) -> Result<(), TokenError> {
    if secret.len() < MIN_HS256_SECRET_LEN {
        return Err(TokenError::InvalidKey(format!(
            "the gateway's delegation secret must be at least {MIN_HS256_SECRET_LEN} bytes"
        )));
    }
    Ok(())
}

/// `123`, `0.5`, `2.50`: digits, at most one `.` with digits on both sides.
fn is_decimal(s: &str) -> bool {
    let (int, frac) = match s.split_once('.') {
        Some((i, f)) => (i, Some(f)),
        None => (s, None),
    };
    let digits = |p: &str| !p.is_empty() && p.bytes().all(|b| b.is_ascii_digit());
    digits(int) && frac.is_none_or(digits)
}
