//! [`TokenError`]: every way a credential can be refused, minted wrongly or described
//! wrongly, with messages a client (or the person holding the token) can act on.
//!
//! Messages never echo a secret, and never reveal which project a key belongs to.

/// Why a token was refused, or why one could not be minted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    /// Not a JWT, bad base64/JSON, a claim of the wrong type, or a header we refuse (`crit`).
    #[error("malformed token: {0}")]
    Malformed(String),
    /// A claim this kind of token must carry is absent.
    #[error("token lacks the required `{0}` claim")]
    MissingClaim(&'static str),
    /// `exp` (plus leeway) has passed.
    #[error("token has expired; mint a new one")]
    Expired,
    /// `nbf` (minus leeway) is still in the future.
    #[error("token is not valid yet (its nbf is in the future); check the minting host's clock")]
    NotYetValid,
    /// The signature does not verify with the key the token names.
    #[error("token signature does not verify with the key it names")]
    BadSignature,
    /// The `kid` (or `iss`) names no key we know: never issued, revoked, or rotated away.
    #[error("token is signed by key `{0}`, which is unknown or revoked")]
    UnknownKey(String),
    /// The header's `alg` is not the one the key is pinned to (includes `none`).
    #[error("token algorithm `{found}` is not accepted here; expected {expected}")]
    WrongAlgorithm {
        /// The header's `alg`, as written.
        found: String,
        /// What the key (or token kind) requires.
        expected: String,
    },
    /// `iss` is not what this kind of token must carry.
    #[error("token issuer `{found}` is wrong; expected {expected}")]
    WrongIssuer {
        /// The token's `iss`.
        found: String,
        /// What was expected, in words.
        expected: String,
    },
    /// `aud` does not name this gateway.
    #[error("token audience does not include `{expected}`")]
    WrongAudience {
        /// The audience this gateway is configured with.
        expected: String,
    },
    /// The `project` claim is not the project of the signing key.
    #[error("token's project `{found}` is not the project of its signing key")]
    WrongProject {
        /// The token's `project`.
        found: String,
    },
    /// An OAuth access token without the scope the gateway requires.
    #[error("token lacks the required scope `{0}`")]
    MissingScope(String),
    /// Key material that cannot be used (wrong length, not a curve point, bad encoding).
    #[error("invalid key material: {0}")]
    InvalidKey(String),
    /// A token spec (YAML) that cannot be turned into claims.
    #[error("invalid token spec: {0}")]
    Spec(String),
    /// The OIDC issuer's JWKS could not be fetched or read.
    #[error("could not get the issuer's signing keys: {0}")]
    KeySource(String),
}

impl TokenError {
    pub(crate) fn malformed(msg: impl Into<String>) -> Self {
        Self::Malformed(msg.into())
    }
}
