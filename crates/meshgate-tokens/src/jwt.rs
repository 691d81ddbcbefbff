//! Shared JWT plumbing: reading the unverified header and payload, verifying a signature
//! with an algorithm we pinned ourselves, the time checks, random ids and base64url text.
//!
//! Claims are checked here rather than by `jsonwebtoken::Validation` because callers pass
//! `now` explicitly (testable, one clock per request) and want a distinct error per rule.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::errors::ErrorKind;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use rand::RngCore as _;
use serde::Deserialize;
use serde_json::Value;

use crate::TokenError;

/// Leeway for `exp`/`nbf` when the caller does not choose one.
pub const DEFAULT_LEEWAY_SECS: u64 = 30;

/// The header fields we act on. Parsed by us (not `jsonwebtoken::Header`) so that an
/// unknown `alg` such as `none` is reported as a wrong algorithm, not as bad JSON.
#[derive(Debug, Deserialize)]
pub(crate) struct RawHeader {
    pub alg: String,
    #[serde(default)]
    pub kid: Option<String>,
    /// Critical extensions: we understand none, so any is a refusal (RFC 7515 §4.1.11).
    #[serde(default)]
    pub crit: Option<Value>,
}

/// A token split into its parts, header parsed, payload parsed but NOT verified.
pub(crate) struct Unverified {
    pub header: RawHeader,
    pub payload: serde_json::Map<String, Value>,
}

/// Splits `a.b.c`, parses header and payload as JSON objects. Verifies nothing.
pub(crate) fn read_unverified(token: &str) -> Result<Unverified, TokenError> {
    let mut parts = token.split('.');
    let (Some(h), Some(p), Some(_sig), None) =
        (parts.next(), parts.next(), parts.next(), parts.next())
    else {
        return Err(TokenError::malformed("a JWT has three dot-separated parts"));
    };
    let header: RawHeader = serde_json::from_slice(&b64_segment(h, "header")?)
        .map_err(|e| TokenError::malformed(format!("header: {e}")))?;
    if header.crit.is_some() {
        return Err(TokenError::malformed(
            "header has `crit` extensions, which are not supported",
        ));
    }
    let payload: Value = serde_json::from_slice(&b64_segment(p, "payload")?)
        .map_err(|e| TokenError::malformed(format!("payload: {e}")))?;
    let Value::Object(payload) = payload else {
        return Err(TokenError::malformed("payload is not a JSON object"));
    };
    Ok(Unverified { header, payload })
}

fn b64_segment(seg: &str, what: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(seg)
        .map_err(|_| TokenError::malformed(format!("{what} is not base64url")))
}

/// Verifies the signature with exactly `alg` and returns the payload. No claim is checked.
pub(crate) fn verify_signature(
    token: &str,
    alg: Algorithm,
    key: &DecodingKey,
) -> Result<serde_json::Map<String, Value>, TokenError> {
    let mut v = Validation::new(alg);
    // Every claim rule is ours (see module doc); jsonwebtoken only checks alg + signature.
    v.required_spec_claims.clear();
    v.validate_exp = false;
    v.validate_nbf = false;
    v.validate_aud = false;
    let data = jsonwebtoken::decode::<Value>(token, key, &v).map_err(map_jwt_error)?;
    match data.claims {
        Value::Object(map) => Ok(map),
        _ => Err(TokenError::malformed("payload is not a JSON object")),
    }
}

pub(crate) fn map_jwt_error(e: jsonwebtoken::errors::Error) -> TokenError {
    match e.kind() {
        ErrorKind::InvalidSignature => TokenError::BadSignature,
        ErrorKind::InvalidEcdsaKey
        | ErrorKind::InvalidEddsaKey
        | ErrorKind::InvalidRsaKey(_)
        | ErrorKind::InvalidKeyFormat => TokenError::InvalidKey(e.to_string()),
        _ => TokenError::malformed(e.to_string()),
    }
}

/// The `WrongAlgorithm` error for a header `alg` that is not `expected`.
pub(crate) fn wrong_alg(found: &str, expected: Algorithm) -> TokenError {
    TokenError::WrongAlgorithm {
        found: found.to_owned(),
        expected: alg_name(expected).to_owned(),
    }
}

/// The JOSE name of an algorithm (`HS256`, `EdDSA`, ...).
pub(crate) fn alg_name(alg: Algorithm) -> &'static str {
    match alg {
        Algorithm::HS256 => "HS256",
        Algorithm::HS384 => "HS384",
        Algorithm::HS512 => "HS512",
        Algorithm::ES256 => "ES256",
        Algorithm::ES384 => "ES384",
        Algorithm::RS256 => "RS256",
        Algorithm::RS384 => "RS384",
        Algorithm::RS512 => "RS512",
        Algorithm::PS256 => "PS256",
        Algorithm::PS384 => "PS384",
        Algorithm::PS512 => "PS512",
        Algorithm::EdDSA => "EdDSA",
        _ => "unsupported",
    }
}

/// Reads an integer time claim; `Ok(None)` if absent.
pub(crate) fn time_claim(
    payload: &serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<Option<i64>, TokenError> {
    match payload.get(name) {
        None | Some(Value::Null) => Ok(None),
        Some(v) => v.as_i64().map(Some).ok_or_else(|| {
            TokenError::malformed(format!("`{name}` is not an integer number of seconds"))
        }),
    }
}

/// `exp` required and not passed, `nbf` (if any) reached, both with `leeway` seconds.
pub(crate) fn check_times(
    payload: &serde_json::Map<String, Value>,
    now: i64,
    leeway: u64,
) -> Result<(), TokenError> {
    let leeway = i64::try_from(leeway).unwrap_or(i64::MAX);
    let exp = time_claim(payload, "exp")?.ok_or(TokenError::MissingClaim("exp"))?;
    // RFC 7519: the token is valid strictly before `exp`.
    if now >= exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if let Some(nbf) = time_claim(payload, "nbf")? {
        if now.saturating_add(leeway) < nbf {
            return Err(TokenError::NotYetValid);
        }
    }
    Ok(())
}

/// Reads a required string claim.
pub(crate) fn string_claim<'a>(
    payload: &'a serde_json::Map<String, Value>,
    name: &'static str,
) -> Result<&'a str, TokenError> {
    match payload.get(name) {
        None | Some(Value::Null) => Err(TokenError::MissingClaim(name)),
        Some(Value::String(s)) => Ok(s),
        Some(_) => Err(TokenError::malformed(format!("`{name}` is not a string"))),
    }
}

/// `aud` as a string or an array of strings contains `expected`.
pub(crate) fn check_audience(
    payload: &serde_json::Map<String, Value>,
    expected: &str,
) -> Result<(), TokenError> {
    let ok = match payload.get("aud") {
        None | Some(Value::Null) => return Err(TokenError::MissingClaim("aud")),
        Some(Value::String(s)) => s == expected,
        Some(Value::Array(items)) => items.iter().any(|a| a.as_str() == Some(expected)),
        Some(_) => {
            return Err(TokenError::malformed(
                "`aud` is not a string or array of strings",
            ))
        }
    };
    if ok {
        Ok(())
    } else {
        Err(TokenError::WrongAudience {
            expected: expected.to_owned(),
        })
    }
}

/// Converts the verified payload into the typed claims.
pub(crate) fn into_claims<T: serde::de::DeserializeOwned>(
    payload: serde_json::Map<String, Value>,
) -> Result<T, TokenError> {
    serde_json::from_value(Value::Object(payload))
        .map_err(|e| TokenError::malformed(format!("claims: {e}")))
}

/// `n` random bytes from the thread CSPRNG (ChaCha, seeded from the OS).
pub(crate) fn random_bytes<const N: usize>() -> [u8; N] {
    let mut buf = [0u8; N];
    rand::rng().fill_bytes(&mut buf);
    buf
}

/// A random token id: 16 bytes, base64url (22 chars).
pub fn new_jti() -> String {
    b64url_encode(&random_bytes::<16>())
}

/// base64url without padding: the text form of every key and id in this crate.
pub fn b64url_encode(bytes: &[u8]) -> String {
    URL_SAFE_NO_PAD.encode(bytes)
}

/// Inverse of [`b64url_encode`]; also accepts trailing `=` padding and surrounding blanks,
/// since people paste these.
pub fn b64url_decode(text: &str) -> Result<Vec<u8>, TokenError> {
    URL_SAFE_NO_PAD
        .decode(text.trim().trim_end_matches('='))
        .map_err(|_| TokenError::InvalidKey("not base64url text".into()))
}
