//! The authenticate phase: meshgate keys (format, hashing, the in-memory cache that keeps
//! the hot path off the database, rotation grace), participant tokens, delegations, OAuth
//! access tokens, and the admin token.

use crate::error::{ErrorKind, GatewayError};
use crate::state::AppState;
use base64::Engine;
use http::HeaderMap;
use meshgate_store::{KeyRecord, Policy};
use meshgate_tokens::{DelegationClaims, TokenError, TokenKind};
use meshgate_types::{Money, Surface};
use rand::RngCore;
use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use subtle::ConstantTimeEq;

/// Every meshgate key starts with this, so that leaked keys are recognisable.
pub const KEY_PREFIX: &str = "mg_";
/// Random bytes in a key's secret (encoded as 43 base64url characters).
const KEY_SECRET_BYTES: usize = 32;
const KEY_LEN: usize = KEY_PREFIX.len() + 43;

/// Who is calling, once authenticated: the project the call is charged to and what the
/// call is attributed to.
#[derive(Debug, Clone)]
pub struct Principal {
    pub project_id: String,
    /// The API key called with (or the parent key of a delegation).
    pub key: Option<Arc<CachedKey>>,
    /// Participant token: its `jti`.
    pub token_id: Option<String>,
    /// Participant token: the key that signed it, and when it expires (unix seconds).
    pub signing_key: Option<(String, i64)>,
    /// The participant's identity or the OAuth user's subject.
    pub user: Option<String>,
    pub room: Option<String>,
    /// A participant token's LLM grant: `None` allows every model.
    pub grant_models: Option<Vec<String>>,
    pub delegation: Option<DelegationGrant>,
}

/// The narrower budget and models an agent was handed.
#[derive(Debug, Clone)]
pub struct DelegationGrant {
    pub id: String,
    pub max_budget: Money,
    pub models: Option<Vec<String>>,
}

impl Principal {
    pub fn key_id(&self) -> Option<&str> {
        self.key.as_deref().map(|k| k.id.as_str())
    }

    /// The credential itself, as a delegation names its parent: a key id, `token:<jti>`
    /// or `user:<subject>`.
    pub fn credential_id(&self) -> String {
        match (&self.key, &self.token_id, &self.user) {
            (Some(key), _, _) => key.id.clone(),
            (None, Some(jti), _) => format!("token:{jti}"),
            (None, None, Some(user)) => format!("user:{user}"),
            _ => String::new(),
        }
    }
}

/// A freshly generated key: the secret is shown once, only the hash is kept.
pub struct GeneratedKey {
    pub id: String,
    pub secret: String,
    pub prefix: String,
    pub hash: String,
}

pub fn generate_key() -> GeneratedKey {
    let mut bytes = [0u8; KEY_SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    let secret = format!(
        "{KEY_PREFIX}{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    );
    let mut id_bytes = [0u8; 8];
    rand::rng().fill_bytes(&mut id_bytes);
    GeneratedKey {
        id: format!("key_{}", hex::encode(id_bytes)),
        prefix: secret[..KEY_PREFIX.len() + 6].to_string(),
        hash: hash_secret(&secret),
        secret,
    }
}

/// A random admin token (`mga_...`).
pub fn generate_admin_token() -> String {
    let mut bytes = [0u8; KEY_SECRET_BYTES];
    rand::rng().fill_bytes(&mut bytes);
    format!(
        "mga_{}",
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes)
    )
}

/// SHA-256 of a secret, hex. Secrets are 256 random bits, so a fast hash is enough.
pub fn hash_secret(secret: &str) -> String {
    hex::encode(Sha256::digest(secret.as_bytes()))
}

/// Compares a presented token with a stored hash in constant time.
pub fn token_matches(presented: &str, stored_hash: &str) -> bool {
    hash_secret(presented)
        .as_bytes()
        .ct_eq(stored_hash.as_bytes())
        .into()
}

/// What the hot path knows of a key.
#[derive(Debug, Clone)]
pub struct CachedKey {
    pub id: String,
    pub project_id: String,
    pub expires_ms: Option<i64>,
    pub policy: Policy,
}

#[derive(Debug, Clone)]
struct Entry {
    key: Arc<CachedKey>,
    /// A rotated-away secret stops at this time.
    secret_expires_ms: Option<i64>,
}

#[derive(Default)]
struct KeyMaps {
    by_hash: HashMap<String, Entry>,
    by_id: HashMap<String, Arc<CachedKey>>,
}

/// Active keys by secret hash (a rotated key under both of its secrets during the grace
/// period) and by id. Filled from the store at start and changed in place by the admin
/// API, so authenticating a call never waits on the database.
#[derive(Default, Clone)]
pub struct KeyCache {
    maps: Arc<RwLock<KeyMaps>>,
}

impl KeyCache {
    pub fn replace_all(&self, keys: &[KeyRecord]) {
        let mut maps = KeyMaps::default();
        for k in keys.iter().filter(|k| k.revoked_ms.is_none()) {
            add(&mut maps, k);
        }
        *self.write() = maps;
    }

    /// Adds or replaces a key (after a create, an update or a rotation).
    pub fn insert(&self, key: &KeyRecord) {
        let mut maps = self.write();
        remove(&mut maps, &key.id);
        if key.revoked_ms.is_none() {
            add(&mut maps, key);
        }
    }

    pub fn remove(&self, id: &str) {
        remove(&mut self.write(), id);
    }

    pub fn by_id(&self, id: &str) -> Option<Arc<CachedKey>> {
        self.read().by_id.get(id).cloned()
    }

    fn lookup(&self, secret_hash: &str) -> Option<Entry> {
        self.read().by_hash.get(secret_hash).cloned()
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, KeyMaps> {
        self.maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, KeyMaps> {
        self.maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

fn add(maps: &mut KeyMaps, k: &KeyRecord) {
    let key = Arc::new(CachedKey {
        id: k.id.clone(),
        project_id: k.project_id.clone(),
        expires_ms: k.expires_ms,
        policy: k.policy.clone(),
    });
    maps.by_hash.insert(
        k.secret_hash.clone(),
        Entry {
            key: key.clone(),
            secret_expires_ms: None,
        },
    );
    if let (Some(previous), Some(until)) = (&k.previous_secret_hash, k.previous_expires_ms) {
        maps.by_hash.insert(
            previous.clone(),
            Entry {
                key: key.clone(),
                secret_expires_ms: Some(until),
            },
        );
    }
    maps.by_id.insert(k.id.clone(), key);
}

fn remove(maps: &mut KeyMaps, id: &str) {
    if maps.by_id.remove(id).is_some() {
        maps.by_hash.retain(|_, e| e.key.id != id);
    }
}

/// The credential a client presented: OpenAI takes `Authorization: Bearer`; Anthropic takes
/// `x-api-key` or `Authorization: Bearer` (SDK 2.x sends the key as Bearer).
pub fn presented_credential(surface: Surface, headers: &HeaderMap) -> Option<&str> {
    let bearer = headers
        .get(http::header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| {
            let (scheme, token) = v.trim().split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
        });
    match surface {
        Surface::OpenAi => bearer,
        Surface::Anthropic => headers
            .get("x-api-key")
            .and_then(|v| v.to_str().ok())
            .map(str::trim)
            .or(bearer),
    }
}

/// Header carrying a delegation beside the credential that minted it.
pub const DELEGATION_HEADER: &str = "meshgate-llm-delegation";
/// Headers naming the project an OAuth user calls for (the second is the seeds' spelling).
pub const PROJECT_HEADERS: [&str; 2] = ["meshgate-project-id", "meshagent-project-id"];

fn unauthorized(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Authentication, message).with_code("invalid_api_key")
}

fn forbidden(message: impl Into<String>) -> GatewayError {
    GatewayError::new(ErrorKind::Permission, message).with_code("permission_denied")
}

/// The authenticate phase: the presented credential (an API key, a participant token, a
/// delegation or an OAuth access token) to a [`Principal`], or a 401/403 that says why.
pub async fn authenticate(
    state: &AppState,
    surface: Surface,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Principal, GatewayError> {
    let how = match surface {
        Surface::OpenAi => "send your meshgate key or token as `Authorization: Bearer ...`",
        Surface::Anthropic => {
            "send your meshgate key or token as `x-api-key: ...` or `Authorization: Bearer ...`"
        }
    };
    let Some(token) = presented_credential(surface, headers) else {
        return Err(unauthorized(format!("missing API key: {how}")));
    };
    let mut principal = match meshgate_tokens::peek_kind(token) {
        Some(TokenKind::ApiKey) => authenticate_key(&state.keys, token, now_ms, how)?,
        Some(TokenKind::Delegation) => {
            let claims = verify_delegation(state, token, now_ms)?;
            let mut principal = delegation_parent(state, &claims, now_ms)?;
            principal.delegation = Some(delegation_grant(&claims)?);
            principal
        }
        Some(TokenKind::Participant) => authenticate_participant(state, token, now_ms)?,
        Some(TokenKind::Other) => authenticate_oauth(state, token, headers).await?,
        None => {
            return Err(unauthorized(format!(
                "malformed API key: meshgate keys start with `{KEY_PREFIX}`, tokens are JWTs; {how}"
            )))
        }
    };
    if let Some(value) = headers.get(DELEGATION_HEADER) {
        let token = value
            .to_str()
            .map_err(|_| unauthorized("the delegation header is not text"))?;
        if principal.delegation.is_some() {
            return Err(unauthorized(
                "a delegation cannot carry another delegation header",
            ));
        }
        let claims = verify_delegation(state, token.trim(), now_ms)?;
        if claims.parent != principal.credential_id() || claims.project != principal.project_id {
            return Err(forbidden(
                "this delegation was minted by another credential than the one calling",
            ));
        }
        principal.delegation = Some(delegation_grant(&claims)?);
    }
    Ok(principal)
}

fn authenticate_key(
    cache: &KeyCache,
    token: &str,
    now_ms: i64,
    how: &str,
) -> Result<Principal, GatewayError> {
    if token.len() != KEY_LEN {
        return Err(unauthorized(format!(
            "malformed API key: meshgate keys are `{KEY_PREFIX}` and 43 characters; {how}"
        )));
    }
    let Some(entry) = cache.lookup(&hash_secret(token)) else {
        return Err(unauthorized("unknown or revoked API key"));
    };
    if entry.key.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(unauthorized("this API key has expired"));
    }
    if entry.secret_expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(unauthorized(
            "this API key was rotated and its old secret no longer works; use the new one",
        ));
    }
    Ok(key_principal(entry.key))
}

fn key_principal(key: Arc<CachedKey>) -> Principal {
    Principal {
        project_id: key.project_id.clone(),
        key: Some(key),
        token_id: None,
        signing_key: None,
        user: None,
        room: None,
        grant_models: None,
        delegation: None,
    }
}

fn token_error(e: TokenError) -> GatewayError {
    unauthorized(e.to_string())
}

fn verify_options(state: &AppState) -> meshgate_tokens::VerifyOptions {
    meshgate_tokens::VerifyOptions {
        audience: state.config.auth.audience.clone(),
        leeway_secs: state.config.auth.leeway_secs,
    }
}

fn authenticate_participant(
    state: &AppState,
    token: &str,
    now_ms: i64,
) -> Result<Principal, GatewayError> {
    let claims = meshgate_tokens::verify_participant_with(
        token,
        &verify_options(state),
        now_ms.div_euclid(1000),
        |kid| state.tenants.signing_key(kid),
    )
    .map_err(token_error)?;
    let Some(grant) = claims.api.llm else {
        return Err(forbidden(
            "this participant token lacks the `api.llm` grant, which calling models requires; \
             mint it with `api: {llm: {}}`",
        ));
    };
    Ok(Principal {
        project_id: claims.project,
        key: None,
        signing_key: Some((claims.iss, claims.exp)),
        token_id: Some(claims.jti),
        user: Some(claims.sub),
        room: claims.room,
        grant_models: grant.models,
        delegation: None,
    })
}

async fn authenticate_oauth(
    state: &AppState,
    token: &str,
    headers: &HeaderMap,
) -> Result<Principal, GatewayError> {
    let Some(verifier) = &state.oauth else {
        return Err(unauthorized(
            "unknown token: it is not a meshgate key, participant token or delegation, \
             and no OAuth issuer is configured",
        ));
    };
    let claims = verifier.verify(token).await.map_err(|e| match e {
        TokenError::MissingScope(_) => forbidden(e.to_string()),
        TokenError::KeySource(_) => {
            GatewayError::new(ErrorKind::Unavailable, e.to_string()).with_code("oauth_unavailable")
        }
        other => token_error(other),
    })?;
    let project = PROJECT_HEADERS
        .iter()
        .find_map(|h| headers.get(*h))
        .and_then(|v| v.to_str().ok())
        .map(str::trim)
        .filter(|p| !p.is_empty())
        .ok_or_else(|| {
            GatewayError::new(
                ErrorKind::InvalidRequest,
                "an OAuth access token needs a `Meshgate-Project-Id` header naming the project to charge",
            )
        })?;
    let member = state.tenants.project(project).is_some_and(|settings| {
        settings
            .members
            .iter()
            .any(|m| m == "*" || *m == claims.sub || claims.email.as_deref() == Some(m.as_str()))
    });
    if !member {
        return Err(forbidden(format!(
            "user {} may not use project {project}",
            claims.sub
        )));
    }
    Ok(Principal {
        project_id: project.to_string(),
        key: None,
        token_id: None,
        signing_key: None,
        user: Some(claims.sub),
        room: None,
        grant_models: None,
        delegation: None,
    })
}

fn verify_delegation(
    state: &AppState,
    token: &str,
    now_ms: i64,
) -> Result<DelegationClaims, GatewayError> {
    meshgate_tokens::verify_delegation_with(
        token,
        &state.delegation_secret,
        &verify_options(state),
        now_ms.div_euclid(1000),
    )
    .map_err(token_error)
}

/// A delegation used as the bearer acts for its parent, which must still be valid: a key
/// that is neither revoked nor expired, or a token whose signing key is still active.
fn delegation_parent(
    state: &AppState,
    claims: &DelegationClaims,
    now_ms: i64,
) -> Result<Principal, GatewayError> {
    let parent = &claims.parent;
    if let Some(jti) = parent.strip_prefix("token:") {
        let kid = claims.parent_kid.as_deref().unwrap_or_default();
        if state.tenants.signing_key(kid).is_none() {
            return Err(unauthorized(
                "the participant token this delegation came from is no longer valid (its signing key was revoked)",
            ));
        }
        return Ok(Principal {
            project_id: claims.project.clone(),
            key: None,
            token_id: Some(jti.to_string()),
            signing_key: Some((kid.to_string(), claims.exp)),
            user: claims.user.clone(),
            room: claims.room.clone(),
            grant_models: claims.parent_models.clone(),
            delegation: None,
        });
    }
    if let Some(user) = parent.strip_prefix("user:") {
        return Ok(Principal {
            project_id: claims.project.clone(),
            key: None,
            token_id: None,
            signing_key: None,
            user: Some(user.to_string()),
            room: None,
            grant_models: None,
            delegation: None,
        });
    }
    let key = state
        .keys
        .by_id(parent)
        .filter(|k| k.project_id == claims.project)
        .filter(|k| k.expires_ms.is_none_or(|e| e > now_ms))
        .ok_or_else(|| {
            unauthorized("the key this delegation came from is revoked, expired or unknown")
        })?;
    Ok(key_principal(key))
}

/// Writes into a new delegation what its parent is, so that the delegation alone can act
/// for it later: a token parent's signing key, identity, room and grant, and its expiry,
/// which the delegation never outlives.
pub fn describe_parent(principal: &Principal, claims: &mut DelegationClaims) {
    if principal.key.is_some() {
        return;
    }
    claims.user = principal.user.clone();
    claims.room = principal.room.clone();
    claims.parent_models = principal.grant_models.clone();
    if let Some((kid, exp)) = &principal.signing_key {
        claims.parent_kid = Some(kid.clone());
        claims.exp = claims.exp.min(*exp);
    }
}

fn delegation_grant(claims: &DelegationClaims) -> Result<DelegationGrant, GatewayError> {
    let max_budget = claims
        .max_budget_usd
        .parse::<Money>()
        .map_err(|_| unauthorized("the delegation's budget is not a decimal"))?;
    Ok(DelegationGrant {
        id: claims.sub.clone(),
        max_budget,
        models: claims.models.clone(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(k: &GeneratedKey, expires_ms: Option<i64>) -> KeyRecord {
        KeyRecord {
            id: k.id.clone(),
            project_id: "default".into(),
            name: "t".into(),
            prefix: k.prefix.clone(),
            secret_hash: k.hash.clone(),
            created_ms: 0,
            expires_ms,
            revoked_ms: None,
            policy: Policy::default(),
            rotated_ms: None,
            previous_secret_hash: None,
            previous_expires_ms: None,
        }
    }

    fn headers(pairs: &[(&str, &str)]) -> HeaderMap {
        let mut h = HeaderMap::new();
        for (k, v) in pairs {
            h.insert(
                http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        h
    }

    #[test]
    fn keys_authenticate_until_revoked_or_expired() {
        let cache = KeyCache::default();
        let k = generate_key();
        assert_eq!(k.secret.len(), KEY_LEN);
        cache.insert(&record(&k, Some(1000)));
        let p = authenticate_key(&cache, &k.secret, 5, "").unwrap();
        assert_eq!(p.key_id(), Some(k.id.as_str()));
        assert_eq!(p.credential_id(), k.id);
        let expired = authenticate_key(&cache, &k.secret, 1000, "");
        assert!(expired.unwrap_err().message.contains("expired"));
        cache.remove(&k.id);
        let gone = authenticate_key(&cache, &k.secret, 5, "");
        assert!(gone.unwrap_err().message.contains("unknown or revoked"));
        assert!(cache.by_id(&k.id).is_none());
    }

    #[test]
    fn a_rotated_secret_works_until_its_grace_ends() {
        let cache = KeyCache::default();
        let old = generate_key();
        let new = generate_key();
        let mut rotated = record(&new, None);
        rotated.id = old.id.clone();
        rotated.previous_secret_hash = Some(old.hash.clone());
        rotated.previous_expires_ms = Some(100);
        cache.insert(&rotated);
        assert!(authenticate_key(&cache, &new.secret, 5, "").is_ok());
        assert!(authenticate_key(&cache, &old.secret, 99, "").is_ok());
        let late = authenticate_key(&cache, &old.secret, 100, "").unwrap_err();
        assert!(late.message.contains("rotated"), "{}", late.message);
        // Rotating without grace drops the old secret at once.
        rotated.previous_secret_hash = None;
        rotated.previous_expires_ms = None;
        cache.insert(&rotated);
        assert!(authenticate_key(&cache, &old.secret, 5, "").is_err());
        assert!(authenticate_key(&cache, &new.secret, 5, "").is_ok());
    }

    #[test]
    fn credentials_by_surface() {
        let h = headers(&[("x-api-key", "mg_a"), ("authorization", "Bearer mg_b")]);
        assert_eq!(presented_credential(Surface::OpenAi, &h), Some("mg_b"));
        assert_eq!(presented_credential(Surface::Anthropic, &h), Some("mg_a"));
        let h = headers(&[("x-api-key", "mg_a")]);
        assert_eq!(presented_credential(Surface::OpenAi, &h), None);
        let h = headers(&[("authorization", "Basic abc")]);
        assert_eq!(presented_credential(Surface::OpenAi, &h), None);
    }

    #[test]
    fn admin_token_compares_hashes() {
        let t = generate_admin_token();
        let h = hash_secret(&t);
        assert!(token_matches(&t, &h));
        assert!(!token_matches("mga_other", &h));
    }
}
