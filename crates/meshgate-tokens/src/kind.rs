//! [`peek_kind`]: which verifier a bearer string should go to, from its unverified shape.
//! Nothing here is proof of anything; the chosen verifier decides.

use serde_json::Value;

use crate::delegation::{DELEGATION_KID, DELEGATION_TYP};
use crate::jwt;

/// Prefix of meshgate API keys.
pub const API_KEY_PREFIX: &str = "mg_";

/// What a bearer string looks like.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum TokenKind {
    /// A meshgate API key (`mg_...`), not a JWT.
    ApiKey,
    /// A JWT shaped like a participant token (has a `project` claim, not a delegation).
    Participant,
    /// A JWT shaped like a delegation token (header `kid` or payload `typ` says so).
    Delegation,
    /// Any other JWT, e.g. an OAuth access token from an OIDC issuer.
    Other,
}

/// Classifies a bearer string without verifying it. `None`: neither an API key nor a
/// readable JWT (two dots, base64url JSON header and payload).
pub fn peek_kind(token: &str) -> Option<TokenKind> {
    let token = token.trim();
    if token.starts_with(API_KEY_PREFIX) {
        return Some(TokenKind::ApiKey);
    }
    if token.bytes().filter(|&b| b == b'.').count() != 2 {
        return None;
    }
    let unverified = jwt::read_unverified(token).ok()?;
    let payload = &unverified.payload;
    let typ = payload.get("typ").and_then(Value::as_str);
    if unverified.header.kid.as_deref() == Some(DELEGATION_KID) || typ == Some(DELEGATION_TYP) {
        return Some(TokenKind::Delegation);
    }
    if payload.get("project").is_some_and(Value::is_string) {
        return Some(TokenKind::Participant);
    }
    Some(TokenKind::Other)
}
