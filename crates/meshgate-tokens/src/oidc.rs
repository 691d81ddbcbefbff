//! OAuth access tokens from an external OIDC issuer, verified against the issuer's JWKS.
//!
//! Keys are fetched lazily from `jwks_url` and cached. A token naming a `kid` not in the
//! cache triggers one refetch (key rotation), unless a fetch happened less than
//! `min_refresh_interval` ago: then it is refused at once, so garbage `kid`s cannot make
//! the gateway hammer the issuer. Fetches are single-flight (one at a time; waiters reuse
//! the result). With the key cached, verifying touches no network and takes a read lock
//! only long enough to clone an `Arc`.
//!
//! Algorithms: RS256/384/512, PS256/384/512 (only when the JWK declares them), ES256,
//! ES384 and EdDSA (Ed25519). The JWK decides: the token's `alg` must be one its `alg`
//! (or, without one, its `kty`/`crv`) allows. HMAC keys (`oct`) and `none` are never used.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde_json::Value;

use crate::jwt::{self, alg_name, DEFAULT_LEEWAY_SECS};
use crate::participant::printable;
use crate::TokenError;

/// The scope an access token needs unless configured otherwise.
pub const DEFAULT_REQUIRED_SCOPE: &str = "llm_proxy";
/// Shortest time between two JWKS fetches unless configured otherwise.
pub const DEFAULT_MIN_REFRESH_INTERVAL: Duration = Duration::from_secs(10);
/// Largest JWKS document read; real ones are a few KiB.
const MAX_JWKS_BYTES: usize = 1 << 20;
/// Smallest RSA modulus accepted from a JWKS, in bytes (2048 bits).
const MIN_RSA_MODULUS_BYTES: usize = 256;

/// Where the issuer's keys are and what its tokens must say.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OidcConfig {
    /// Required `iss`, compared exactly (mind trailing slashes).
    pub issuer: String,
    /// Required member of `aud` (a string or an array).
    pub audience: String,
    /// The issuer's JWKS document (usually `jwks_uri` of its discovery document).
    pub jwks_url: String,
    /// Scope the token must carry in `scope` or `scp`. Empty: no scope required.
    pub required_scope: String,
    /// Clock skew tolerated on `exp` and `nbf`, in seconds.
    pub leeway_secs: u64,
    /// Shortest time between two JWKS fetches.
    pub min_refresh_interval: Duration,
}

impl OidcConfig {
    /// A config with the defaults: scope [`DEFAULT_REQUIRED_SCOPE`], 30 s leeway,
    /// [`DEFAULT_MIN_REFRESH_INTERVAL`].
    pub fn new(
        issuer: impl Into<String>,
        audience: impl Into<String>,
        jwks_url: impl Into<String>,
    ) -> Self {
        Self {
            issuer: issuer.into(),
            audience: audience.into(),
            jwks_url: jwks_url.into(),
            required_scope: DEFAULT_REQUIRED_SCOPE.to_owned(),
            leeway_secs: DEFAULT_LEEWAY_SECS,
            min_refresh_interval: DEFAULT_MIN_REFRESH_INTERVAL,
        }
    }
}

/// What a verified access token says about its holder.
#[derive(Debug, Clone, PartialEq)]
pub struct OAuthClaims {
    /// The subject (`sub`).
    pub sub: String,
    /// `email`, when the issuer puts it in access tokens.
    pub email: Option<String>,
    /// Scopes from `scope` (space-separated) and/or `scp` (array or string).
    pub scopes: Vec<String>,
    /// The `iss` (equal to the configured issuer).
    pub issuer: String,
    /// The whole verified payload, for claims this crate does not model.
    pub raw: Value,
}

/// Verifies access tokens of one OIDC issuer. Share it (`Arc`) across requests.
pub struct OidcVerifier {
    config: OidcConfig,
    http: reqwest::Client,
    keys: RwLock<Arc<Vec<Arc<CachedKey>>>>,
    refresh: tokio::sync::Mutex<RefreshState>,
}

impl std::fmt::Debug for OidcVerifier {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("OidcVerifier")
            .field("config", &self.config)
            .finish_non_exhaustive()
    }
}

/// One usable key of the JWKS.
struct CachedKey {
    kid: Option<String>,
    algs: Vec<Algorithm>,
    key: DecodingKey,
}

#[derive(Default)]
struct RefreshState {
    last_attempt: Option<Instant>,
    last_error: Option<String>,
}

impl OidcVerifier {
    /// A verifier with its own HTTP client (10 s timeout). Fetches nothing yet.
    pub fn new(config: OidcConfig) -> Result<Self, TokenError> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| TokenError::KeySource(format!("HTTP client: {e}")))?;
        Ok(Self::with_client(config, http))
    }

    /// A verifier using the given HTTP client (proxies, custom roots, timeouts).
    pub fn with_client(config: OidcConfig, http: reqwest::Client) -> Self {
        Self {
            config,
            http,
            keys: RwLock::new(Arc::new(Vec::new())),
            refresh: tokio::sync::Mutex::new(RefreshState::default()),
        }
    }

    /// The configuration this verifier checks against.
    pub fn config(&self) -> &OidcConfig {
        &self.config
    }

    /// Verifies `token` now.
    pub async fn verify(&self, token: &str) -> Result<OAuthClaims, TokenError> {
        let now = chrono::Utc::now().timestamp();
        self.verify_at(token, now).await
    }

    /// Verifies `token` as of `now_unix` (the key cache still uses the real clock).
    pub async fn verify_at(&self, token: &str, now_unix: i64) -> Result<OAuthClaims, TokenError> {
        let unverified = jwt::read_unverified(token)?;
        let found = unverified.header.alg.as_str();
        let alg = asymmetric_alg(found).ok_or_else(|| TokenError::WrongAlgorithm {
            found: found.to_owned(),
            expected:
                "an asymmetric algorithm of the issuer's JWKS (RS*, PS*, ES256, ES384, EdDSA)"
                    .into(),
        })?;
        let key = self.key_for(unverified.header.kid.as_deref(), alg).await?;
        let payload = jwt::verify_signature(token, alg, &key.key)?;

        let iss = jwt::string_claim(&payload, "iss")?;
        if iss != self.config.issuer {
            return Err(TokenError::WrongIssuer {
                found: printable(iss),
                expected: format!("`{}`", self.config.issuer),
            });
        }
        jwt::check_audience(&payload, &self.config.audience)?;
        jwt::check_times(&payload, now_unix, self.config.leeway_secs)?;
        let sub = jwt::string_claim(&payload, "sub")?.to_owned();
        let scopes = scopes(&payload);
        let required = &self.config.required_scope;
        if !required.is_empty() && !scopes.iter().any(|s| s == required) {
            return Err(TokenError::MissingScope(required.clone()));
        }
        let email = payload
            .get("email")
            .and_then(Value::as_str)
            .map(str::to_owned);
        Ok(OAuthClaims {
            sub,
            email,
            scopes,
            issuer: iss.to_owned(),
            raw: Value::Object(payload),
        })
    }

    /// The cached key for `kid`/`alg`, refetching the JWKS once if it is not cached.
    async fn key_for(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Result<Arc<CachedKey>, TokenError> {
        if let Some(found) = self.cached(kid, alg) {
            return found;
        }
        let mut state = self.refresh.lock().await;
        // Another task may have fetched while we waited for the lock.
        if let Some(found) = self.cached(kid, alg) {
            return found;
        }
        let recent = state
            .last_attempt
            .is_some_and(|t| t.elapsed() < self.config.min_refresh_interval);
        if recent {
            return Err(match &state.last_error {
                Some(e) => TokenError::KeySource(e.clone()),
                None => unknown_key(kid),
            });
        }
        state.last_attempt = Some(Instant::now());
        match self.fetch().await {
            Ok(keys) => {
                state.last_error = None;
                let mut slot = self.keys.write().unwrap_or_else(|p| p.into_inner());
                *slot = Arc::new(keys);
            }
            Err(e) => {
                state.last_error = Some(e.to_string());
                return Err(TokenError::KeySource(e.to_string()));
            }
        }
        drop(state);
        self.cached(kid, alg)
            .unwrap_or_else(|| Err(unknown_key(kid)))
    }

    /// `None`: the key is not cached. `Some(Err)`: it is, but not for this `alg`.
    fn cached(
        &self,
        kid: Option<&str>,
        alg: Algorithm,
    ) -> Option<Result<Arc<CachedKey>, TokenError>> {
        let keys = Arc::clone(&self.keys.read().unwrap_or_else(|p| p.into_inner()));
        let candidates: Vec<&Arc<CachedKey>> = match kid {
            Some(kid) => keys
                .iter()
                .filter(|k| k.kid.as_deref() == Some(kid))
                .collect(),
            // No kid: acceptable only when the set leaves no choice.
            None => keys.iter().filter(|k| k.algs.contains(&alg)).collect(),
        };
        if kid.is_none() && candidates.len() > 1 {
            return Some(Err(TokenError::malformed(
                "token has no `kid` and the issuer publishes several keys",
            )));
        }
        if candidates.is_empty() {
            return None;
        }
        if let Some(k) = candidates.iter().find(|k| k.algs.contains(&alg)) {
            return Some(Ok(Arc::clone(k)));
        }
        let expected: Vec<&str> = candidates
            .iter()
            .flat_map(|k| k.algs.iter().map(|a| alg_name(*a)))
            .collect();
        Some(Err(TokenError::WrongAlgorithm {
            found: alg_name(alg).to_owned(),
            expected: expected.join(" or "),
        }))
    }

    async fn fetch(&self) -> Result<Vec<Arc<CachedKey>>, TokenError> {
        let url = &self.config.jwks_url;
        let src = |e: String| TokenError::KeySource(format!("{url}: {e}"));
        let mut resp = self
            .http
            .get(url)
            .header(reqwest::header::ACCEPT, "application/json")
            .send()
            .await
            .map_err(|e| src(e.to_string()))?;
        if !resp.status().is_success() {
            return Err(src(format!("HTTP {}", resp.status())));
        }
        let mut body = Vec::new();
        while let Some(chunk) = resp.chunk().await.map_err(|e| src(e.to_string()))? {
            if body.len() + chunk.len() > MAX_JWKS_BYTES {
                return Err(src(format!("JWKS larger than {MAX_JWKS_BYTES} bytes")));
            }
            body.extend_from_slice(&chunk);
        }
        let doc: Value =
            serde_json::from_slice(&body).map_err(|e| src(format!("not JSON: {e}")))?;
        let Some(Value::Array(items)) = doc.get("keys") else {
            return Err(src("no `keys` array".into()));
        };
        // Keys we cannot use are skipped, not fatal: one odd key must not lock out the rest.
        Ok(items
            .iter()
            .filter_map(|item| serde_json::from_value::<Jwk>(item.clone()).ok())
            .filter_map(|jwk| usable_key(&jwk))
            .map(Arc::new)
            .collect())
    }
}

fn unknown_key(kid: Option<&str>) -> TokenError {
    TokenError::UnknownKey(kid.map_or_else(|| "(no kid)".to_owned(), printable))
}

/// The header `alg`s we verify from a JWKS; HMAC and `none` are absent on purpose.
fn asymmetric_alg(name: &str) -> Option<Algorithm> {
    Some(match name {
        "RS256" => Algorithm::RS256,
        "RS384" => Algorithm::RS384,
        "RS512" => Algorithm::RS512,
        "PS256" => Algorithm::PS256,
        "PS384" => Algorithm::PS384,
        "PS512" => Algorithm::PS512,
        "ES256" => Algorithm::ES256,
        "ES384" => Algorithm::ES384,
        "EdDSA" => Algorithm::EdDSA,
        _ => return None,
    })
}

/// A JWK as a verification key, with the algorithms it may verify; `None` if unusable.
fn usable_key(jwk: &Jwk) -> Option<CachedKey> {
    let common = &jwk.common;
    if common
        .public_key_use
        .as_ref()
        .is_some_and(|u| *u != PublicKeyUse::Signature)
    {
        return None;
    }
    if common
        .key_operations
        .as_ref()
        .is_some_and(|ops| !ops.contains(&KeyOperations::Verify))
    {
        return None;
    }
    // What the key type allows; the JWK's own `alg`, if any, narrows it to one.
    let by_type: Vec<Algorithm> = match &jwk.algorithm {
        AlgorithmParameters::RSA(p) => {
            let n = jwt::b64url_decode(&p.n).ok()?;
            let n = n.iter().skip_while(|b| **b == 0).count();
            if n < MIN_RSA_MODULUS_BYTES {
                return None;
            }
            vec![
                Algorithm::RS256,
                Algorithm::RS384,
                Algorithm::RS512,
                Algorithm::PS256,
                Algorithm::PS384,
                Algorithm::PS512,
            ]
        }
        AlgorithmParameters::EllipticCurve(p) => match p.curve {
            EllipticCurve::P256 => vec![Algorithm::ES256],
            EllipticCurve::P384 => vec![Algorithm::ES384],
            _ => return None,
        },
        AlgorithmParameters::OctetKeyPair(p) => {
            // jsonwebtoken slices the first 32 bytes of `x`: check the length first.
            if p.curve != EllipticCurve::Ed25519 || jwt::b64url_decode(&p.x).ok()?.len() != 32 {
                return None;
            }
            vec![Algorithm::EdDSA]
        }
        // Symmetric (`oct`) keys from a JWKS would let anyone who reads it sign tokens.
        _ => return None,
    };
    let algs = match common.key_algorithm {
        Some(declared) => {
            let declared = Algorithm::try_from(declared).ok()?;
            if !by_type.contains(&declared) {
                return None;
            }
            vec![declared]
        }
        // Without a declared `alg`, RSA keys verify PKCS#1 v1.5 only (the common case);
        // PSS needs the JWK to say so.
        None => by_type
            .into_iter()
            .filter(|a| !matches!(a, Algorithm::PS256 | Algorithm::PS384 | Algorithm::PS512))
            .collect(),
    };
    let key = DecodingKey::from_jwk(jwk).ok()?;
    Some(CachedKey {
        kid: common.key_id.clone(),
        algs,
        key,
    })
}

/// Scopes from `scope` and `scp`, each either a space-separated string or an array.
fn scopes(payload: &serde_json::Map<String, Value>) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for name in ["scope", "scp"] {
        match payload.get(name) {
            Some(Value::String(s)) => out.extend(s.split_whitespace().map(str::to_owned)),
            Some(Value::Array(items)) => {
                out.extend(items.iter().filter_map(Value::as_str).map(str::to_owned));
            }
            _ => {}
        }
    }
    out.dedup();
    out
}
