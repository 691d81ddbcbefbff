//! Participant tokens: JWTs a project mints for one participant (a person, a bot, an agent)
//! with its own signing key, and the gateway verifies against that key.
//!
//! Verification order: header (`none` refused outright) → key named by `kid` (or `iss`)
//! → `alg` must be exactly the key's algorithm (no algorithm confusion) → signature →
//! `iss` = kid → `aud` → `project` = key's project → `exp`/`nbf` with leeway.

use jsonwebtoken::Header;
use serde::{Deserialize, Serialize};

use crate::grants::Grants;
use crate::jwt::{self, DEFAULT_LEEWAY_SECS};
use crate::keys::{SigningSecret, VerifyingKey};
use crate::TokenError;

/// The audience participant and delegation tokens carry unless configured otherwise.
pub const DEFAULT_AUDIENCE: &str = "meshgate";

/// Claims of a participant token. JSON names are the field names.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ParticipantClaims {
    /// The signing key id; also the header `kid`.
    pub iss: String,
    /// The participant's identity (name).
    pub sub: String,
    /// Must equal the gateway's configured audience (default [`DEFAULT_AUDIENCE`]).
    pub aud: String,
    /// Project id; must equal the signing key's project.
    pub project: String,
    /// Room the participant is in, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub room: Option<String>,
    /// Free-form role (`agent`, `human`, ...), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub role: Option<String>,
    /// What the token may use. Absent in the JSON = no grants.
    #[serde(default)]
    pub api: Grants,
    /// Issued at (unix seconds).
    pub iat: i64,
    /// Not before (unix seconds), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub nbf: Option<i64>,
    /// Expiry (unix seconds). Required.
    pub exp: i64,
    /// Random token id, for logs and revocation.
    pub jti: String,
}

impl ParticipantClaims {
    /// The principal id a delegation minted from this token names as its parent.
    pub fn principal_id(&self) -> String {
        format!("token:{}", self.jti)
    }
}

/// What the verifier checks against, beyond the key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyOptions {
    /// Required `aud`.
    pub audience: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
}

impl Default for VerifyOptions {
    fn default() -> Self {
        Self {
            audience: DEFAULT_AUDIENCE.to_owned(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
        }
    }
}

impl VerifyOptions {
    /// The given audience with the default leeway.
    pub fn for_audience(audience: impl Into<String>) -> Self {
        Self {
            audience: audience.into(),
            ..Self::default()
        }
    }
}

/// Signs `claims` with `secret` (HS256 or EdDSA by the secret's kind), header `kid` = `kid`.
///
/// Refuses claims whose `iss` is not `kid`, since the verifier would refuse the token.
pub fn mint_participant(
    claims: &ParticipantClaims,
    kid: &str,
    secret: &SigningSecret,
) -> Result<String, TokenError> {
    if claims.iss != kid {
        return Err(TokenError::WrongIssuer {
            found: claims.iss.clone(),
            expected: format!("the signing key id `{kid}`"),
        });
    }
    let (alg, key) = secret.encoding_key()?;
    let mut header = Header::new(alg);
    header.kid = Some(kid.to_owned());
    jsonwebtoken::encode(&header, claims, &key).map_err(jwt::map_jwt_error)
}

/// Verifies a participant token with the default leeway (30 s). See the module doc for the
/// order of checks. `lookup` maps a key id to the key, or `None` if unknown or revoked.
pub fn verify_participant(
    token: &str,
    audience: &str,
    now_unix: i64,
    lookup: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<ParticipantClaims, TokenError> {
    verify_participant_with(
        token,
        &VerifyOptions::for_audience(audience),
        now_unix,
        lookup,
    )
}

/// [`verify_participant`] with explicit options (audience, leeway).
pub fn verify_participant_with(
    token: &str,
    opts: &VerifyOptions,
    now_unix: i64,
    lookup: impl Fn(&str) -> Option<VerifyingKey>,
) -> Result<ParticipantClaims, TokenError> {
    let unverified = jwt::read_unverified(token)?;
    let header = &unverified.header;
    if header.alg.eq_ignore_ascii_case("none") {
        return Err(TokenError::WrongAlgorithm {
            found: header.alg.clone(),
            expected: "HS256 or EdDSA, per the signing key".into(),
        });
    }
    let kid = match &header.kid {
        Some(kid) => kid.clone(),
        None => jwt::string_claim(&unverified.payload, "iss")?.to_owned(),
    };
    let key = lookup(&kid)
        .filter(|k| k.kid == kid)
        .ok_or_else(|| TokenError::UnknownKey(printable(&kid)))?;
    // The key, never the token, decides the algorithm: an HS256 token naming an EdDSA key
    // (public key used as HMAC secret) stops here.
    let alg = key.material.algorithm();
    if header.alg != jwt::alg_name(alg) {
        return Err(jwt::wrong_alg(&header.alg, alg));
    }
    let payload = jwt::verify_signature(token, alg, &key.material.decoding_key()?)?;

    let iss = jwt::string_claim(&payload, "iss")?;
    if iss != kid {
        return Err(TokenError::WrongIssuer {
            found: printable(iss),
            expected: "the signing key id (the header kid)".into(),
        });
    }
    let aud = jwt::string_claim(&payload, "aud")?;
    if aud != opts.audience {
        return Err(TokenError::WrongAudience {
            expected: opts.audience.clone(),
        });
    }
    let project = jwt::string_claim(&payload, "project")?;
    if project != key.project_id {
        return Err(TokenError::WrongProject {
            found: printable(project),
        });
    }
    jwt::check_times(&payload, now_unix, opts.leeway_secs)?;
    jwt::into_claims(payload)
}

/// Token text echoed in an error: bounded, so a hostile token cannot flood logs.
pub(crate) fn printable(s: &str) -> String {
    const MAX: usize = 64;
    match s.char_indices().nth(MAX) {
        Some((i, _)) => format!("{}…", &s[..i]),
        None => s.to_owned(),
    }
}
