//! Token specs: the YAML a user commits to describe a participant token (who, where, what
//! it may use, how long it lives). A spec holds no secret; minting combines it with a
//! signing key ([`TokenSpec::claims`] then [`crate::mint_participant`]).
//!
//! ```yaml
//! version: v1
//! kind: ParticipantToken
//! identity: ci-bot
//! room: standup          # optional
//! role: agent            # optional
//! project: proj_123      # optional; must match the signing key's project if given
//! expires_in: 1h         # optional, default 1h; or expires_at: <RFC 3339>
//! api:
//!   llm:
//!     models: ["openai/gpt-4o-mini", "anthropic/*"]
//! ```
//!
//! Unknown fields are refused everywhere in a spec (including under `api`), so a typo
//! such as `modles:` fails loudly instead of minting a token that grants everything.

use std::time::Duration;

use serde::Deserialize;

use crate::grants::{Grants, LlmGrant};
use crate::jwt::new_jti;
use crate::participant::ParticipantClaims;
use crate::TokenError;

/// The only spec `version` this crate reads.
pub const SPEC_VERSION: &str = "v1";
/// The only spec `kind` this crate reads.
pub const SPEC_KIND: &str = "ParticipantToken";
/// Lifetime when the spec gives neither `expires_in` nor `expires_at`.
pub const DEFAULT_EXPIRES_IN: Duration = Duration::from_secs(3600);

/// When a token minted from a spec expires.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Expiry {
    /// This long after minting.
    In(Duration),
    /// At this unix time.
    At(i64),
}

/// A validated participant token spec.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSpec {
    /// The participant identity (`sub`).
    pub identity: String,
    /// Optional room.
    pub room: Option<String>,
    /// Optional role.
    pub role: Option<String>,
    /// Optional project; the minting side supplies it when absent.
    pub project: Option<String>,
    /// When minted tokens expire.
    pub expiry: Expiry,
    /// What minted tokens may use.
    pub api: Grants,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSpec {
    #[allow(dead_code)] // checked before this struct is read
    version: serde_norway::Value,
    #[allow(dead_code)]
    kind: serde_norway::Value,
    identity: String,
    #[serde(default)]
    room: Option<String>,
    #[serde(default)]
    role: Option<String>,
    #[serde(default)]
    project: Option<String>,
    #[serde(default)]
    expires_in: Option<String>,
    #[serde(default)]
    expires_at: Option<String>,
    #[serde(default)]
    api: RawApi,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawApi {
    #[serde(default)]
    llm: Option<RawLlm>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLlm {
    #[serde(default)]
    models: Option<Vec<String>>,
}

impl TokenSpec {
    /// Parses and validates a spec. `version` and `kind` are checked first, so a spec for
    /// another version or kind gets that message rather than a field error.
    pub fn from_yaml(text: &str) -> Result<Self, TokenError> {
        let value: serde_norway::Value =
            serde_norway::from_str(text).map_err(|e| TokenError::Spec(e.to_string()))?;
        if !value.is_mapping() {
            return Err(TokenError::Spec("a token spec is a YAML mapping".into()));
        }
        check_tag(&value, "version", SPEC_VERSION)?;
        check_tag(&value, "kind", SPEC_KIND)?;
        let raw: RawSpec =
            serde_norway::from_value(value).map_err(|e| TokenError::Spec(e.to_string()))?;

        if raw.identity.trim().is_empty() {
            return Err(TokenError::Spec("`identity` is empty".into()));
        }
        let expiry = match (raw.expires_in, raw.expires_at) {
            (Some(_), Some(_)) => {
                return Err(TokenError::Spec(
                    "give `expires_in` or `expires_at`, not both".into(),
                ))
            }
            (Some(d), None) => Expiry::In(parse_duration(&d)?),
            (None, Some(t)) => Expiry::At(
                chrono::DateTime::parse_from_rfc3339(t.trim())
                    .map_err(|e| {
                        TokenError::Spec(format!(
                            "`expires_at` `{t}` is not an RFC 3339 time ({e}); e.g. 2030-01-31T12:00:00Z"
                        ))
                    })?
                    .timestamp(),
            ),
            (None, None) => Expiry::In(DEFAULT_EXPIRES_IN),
        };
        let llm = match raw.api.llm {
            None => None,
            Some(RawLlm { models }) => {
                if let Some(models) = &models {
                    if let Some(bad) = models.iter().find(|m| m.trim().is_empty()) {
                        return Err(TokenError::Spec(format!(
                            "empty model pattern `{bad}` in api.llm.models"
                        )));
                    }
                }
                Some(LlmGrant { models })
            }
        };
        Ok(Self {
            identity: raw.identity,
            room: raw.room,
            role: raw.role,
            project: raw.project,
            expiry,
            api: Grants { llm },
        })
    }

    /// The claims of a token minted now from this spec with key `kid` of `project`.
    ///
    /// Fails if the spec names another project than the key's, or if `expires_at` is not
    /// after `now`.
    pub fn claims(
        &self,
        kid: &str,
        project: &str,
        audience: &str,
        now_unix: i64,
    ) -> Result<ParticipantClaims, TokenError> {
        if let Some(spec_project) = &self.project {
            if spec_project != project {
                return Err(TokenError::Spec(format!(
                    "the spec is for project `{spec_project}`, but key `{kid}` belongs to project `{project}`"
                )));
            }
        }
        let exp = match self.expiry {
            Expiry::In(d) => {
                let secs = i64::try_from(d.as_secs())
                    .map_err(|_| TokenError::Spec("`expires_in` is too long".into()))?;
                now_unix
                    .checked_add(secs)
                    .ok_or_else(|| TokenError::Spec("`expires_in` is too long".into()))?
            }
            Expiry::At(t) => t,
        };
        if exp <= now_unix {
            return Err(TokenError::Spec("`expires_at` is not in the future".into()));
        }
        Ok(ParticipantClaims {
            iss: kid.to_owned(),
            sub: self.identity.clone(),
            aud: audience.to_owned(),
            project: project.to_owned(),
            room: self.room.clone(),
            role: self.role.clone(),
            api: self.api.clone(),
            iat: now_unix,
            nbf: None,
            exp,
            jti: new_jti(),
        })
    }
}

fn check_tag(value: &serde_norway::Value, field: &str, want: &str) -> Result<(), TokenError> {
    match value.get(field) {
        None => Err(TokenError::Spec(format!(
            "missing `{field}: {want}` at the top of the spec"
        ))),
        Some(serde_norway::Value::String(s)) if s == want => Ok(()),
        Some(other) => {
            let shown = serde_norway::to_string(other)
                .map(|s| s.trim().to_owned())
                .unwrap_or_default();
            Err(TokenError::Spec(format!(
                "unsupported {field} `{shown}`; this meshgate reads `{field}: {want}`"
            )))
        }
    }
}

/// Parses a duration such as `30s`, `30m`, `1h`, `7d`, `2w` or `1h30m` (units s, m, h, d,
/// w; no spaces inside; zero refused).
pub fn parse_duration(text: &str) -> Result<Duration, TokenError> {
    let bad = || {
        TokenError::Spec(format!(
            "`{text}` is not a duration; write e.g. 30m, 1h, 7d or 1h30m"
        ))
    };
    let s = text.trim();
    if s.is_empty() {
        return Err(bad());
    }
    let mut total: u64 = 0;
    let mut digits = String::new();
    for c in s.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
            continue;
        }
        let unit: u64 = match c {
            's' => 1,
            'm' => 60,
            'h' => 3600,
            'd' => 86_400,
            'w' => 604_800,
            _ => return Err(bad()),
        };
        let n: u64 = digits.parse().map_err(|_| bad())?;
        digits.clear();
        total = n
            .checked_mul(unit)
            .and_then(|v| total.checked_add(v))
            .ok_or_else(bad)?;
    }
    // A trailing number without a unit (`90`) is ambiguous: refuse it.
    if !digits.is_empty() || total == 0 {
        return Err(bad());
    }
    Ok(Duration::from_secs(total))
}
