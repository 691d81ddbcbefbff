//! The authenticate phase: meshgate keys (format, hashing, the in-memory cache that keeps
//! the hot path off the database) and the admin token.

use crate::error::{ErrorKind, GatewayError};
use base64::Engine;
use http::HeaderMap;
use meshgate_store::KeyRecord;
use meshgate_types::Surface;
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

/// Who is calling, once authenticated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub key_id: String,
    pub project_id: String,
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

#[derive(Debug, Clone)]
struct CachedKey {
    id: String,
    project_id: String,
    expires_ms: Option<i64>,
}

/// Active keys by secret hash. Filled from the store at start and changed in place by the
/// admin API, so authenticating a call never waits on the database.
#[derive(Default, Clone)]
pub struct KeyCache {
    by_hash: Arc<RwLock<HashMap<String, CachedKey>>>,
}

impl KeyCache {
    pub fn replace_all(&self, keys: &[KeyRecord]) {
        let map = keys
            .iter()
            .filter(|k| k.revoked_ms.is_none())
            .map(|k| (k.secret_hash.clone(), cached(k)))
            .collect();
        if let Ok(mut guard) = self.by_hash.write() {
            *guard = map;
        }
    }

    pub fn insert(&self, key: &KeyRecord) {
        if let Ok(mut guard) = self.by_hash.write() {
            guard.insert(key.secret_hash.clone(), cached(key));
        }
    }

    pub fn remove(&self, secret_hash: &str) {
        if let Ok(mut guard) = self.by_hash.write() {
            guard.remove(secret_hash);
        }
    }

    fn lookup(&self, secret_hash: &str) -> Option<CachedKey> {
        self.by_hash.read().ok()?.get(secret_hash).cloned()
    }
}

fn cached(k: &KeyRecord) -> CachedKey {
    CachedKey {
        id: k.id.clone(),
        project_id: k.project_id.clone(),
        expires_ms: k.expires_ms,
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

/// Turns the presented credential into a [`Principal`], or a 401 that says why.
pub fn authenticate(
    cache: &KeyCache,
    surface: Surface,
    headers: &HeaderMap,
    now_ms: i64,
) -> Result<Principal, GatewayError> {
    let refuse = |msg: &str| {
        GatewayError::new(ErrorKind::Authentication, msg.to_string()).with_code("invalid_api_key")
    };
    let how = match surface {
        Surface::OpenAi => "send your meshgate key as `Authorization: Bearer mg_...`",
        Surface::Anthropic => {
            "send your meshgate key as `x-api-key: mg_...` or `Authorization: Bearer mg_...`"
        }
    };
    let Some(token) = presented_credential(surface, headers) else {
        return Err(refuse(&format!("missing API key: {how}")));
    };
    if !token.starts_with(KEY_PREFIX) || token.len() != KEY_LEN {
        return Err(refuse(&format!(
            "malformed API key: meshgate keys start with `{KEY_PREFIX}`; {how}"
        )));
    }
    let Some(key) = cache.lookup(&hash_secret(token)) else {
        return Err(refuse("unknown or revoked API key"));
    };
    if key.expires_ms.is_some_and(|e| e <= now_ms) {
        return Err(refuse("this API key has expired"));
    }
    Ok(Principal {
        key_id: key.id,
        project_id: key.project_id,
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
        let bearer = format!("Bearer {}", k.secret);
        let p = authenticate(
            &cache,
            Surface::OpenAi,
            &headers(&[("authorization", &bearer)]),
            5,
        )
        .unwrap();
        assert_eq!(p.key_id, k.id);
        let p = authenticate(
            &cache,
            Surface::Anthropic,
            &headers(&[("x-api-key", &k.secret)]),
            5,
        )
        .unwrap();
        assert_eq!(p.project_id, "default");
        // OpenAI does not take x-api-key.
        assert!(authenticate(
            &cache,
            Surface::OpenAi,
            &headers(&[("x-api-key", &k.secret)]),
            5
        )
        .is_err());
        let expired = authenticate(
            &cache,
            Surface::OpenAi,
            &headers(&[("authorization", &bearer)]),
            1000,
        );
        assert!(expired.unwrap_err().message.contains("expired"));
        cache.remove(&k.hash);
        let gone = authenticate(
            &cache,
            Surface::OpenAi,
            &headers(&[("authorization", &bearer)]),
            5,
        );
        assert!(gone.unwrap_err().message.contains("unknown or revoked"));
    }

    #[test]
    fn malformed_and_missing() {
        let cache = KeyCache::default();
        let e = authenticate(&cache, Surface::OpenAi, &headers(&[]), 0).unwrap_err();
        assert!(e.message.starts_with("missing"));
        let e = authenticate(
            &cache,
            Surface::OpenAi,
            &headers(&[("authorization", "Bearer sk-abc")]),
            0,
        )
        .unwrap_err();
        assert!(e.message.starts_with("malformed"));
        let e = authenticate(
            &cache,
            Surface::OpenAi,
            &headers(&[("authorization", "Basic abc")]),
            0,
        )
        .unwrap_err();
        assert!(e.message.starts_with("missing"));
    }

    #[test]
    fn admin_token_compares_hashes() {
        let t = generate_admin_token();
        let h = hash_secret(&t);
        assert!(token_matches(&t, &h));
        assert!(!token_matches("mga_other", &h));
    }
}
