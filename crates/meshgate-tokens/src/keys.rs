//! Project signing keys: the material that verifies participant tokens ([`KeyMaterial`],
//! [`VerifyingKey`]), the secret that mints them ([`SigningSecret`]), generating both, and
//! their text form.
//!
//! Text form (shown once at creation, pasted back into `meshgate token mint` or config):
//! base64url without padding of the raw bytes — the 32-byte HS256 secret, the 32-byte
//! Ed25519 seed (the private key), or the 32-byte Ed25519 public key. Padding and
//! surrounding whitespace are tolerated when reading.

use ed25519_dalek::pkcs8::EncodePrivateKey as _;
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey};
use zeroize::Zeroize as _;

use crate::jwt::{b64url_decode, b64url_encode, random_bytes};
use crate::TokenError;

/// Shortest HS256 secret accepted for minting or verifying: 256 bits, the hash size
/// (RFC 7518 §3.2). A shorter secret would make tokens guessable offline.
pub const MIN_HS256_SECRET_LEN: usize = 32;

/// What verifies a participant token: a shared HS256 secret or an Ed25519 public key.
/// The variant pins the algorithm: a token whose header names another is refused.
#[derive(Clone, PartialEq, Eq)]
pub enum KeyMaterial {
    /// HMAC-SHA256 shared secret (at least [`MIN_HS256_SECRET_LEN`] bytes).
    Hs256 {
        /// The raw secret bytes.
        secret: Vec<u8>,
    },
    /// Ed25519 public key (the private half stays with whoever mints).
    EdDsa {
        /// The raw 32-byte public key.
        public_key: [u8; 32],
    },
}

impl std::fmt::Debug for KeyMaterial {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256 { .. } => f.write_str("KeyMaterial::Hs256([redacted])"),
            Self::EdDsa { public_key } => {
                write!(f, "KeyMaterial::EdDsa({})", b64url_encode(public_key))
            }
        }
    }
}

impl Drop for KeyMaterial {
    fn drop(&mut self) {
        if let Self::Hs256 { secret } = self {
            secret.zeroize();
        }
    }
}

impl KeyMaterial {
    /// The only JOSE `alg` this material verifies: `HS256` or `EdDSA`.
    pub fn algorithm_name(&self) -> &'static str {
        crate::jwt::alg_name(self.algorithm())
    }

    pub(crate) fn algorithm(&self) -> Algorithm {
        match self {
            Self::Hs256 { .. } => Algorithm::HS256,
            Self::EdDsa { .. } => Algorithm::EdDSA,
        }
    }

    pub(crate) fn decoding_key(&self) -> Result<DecodingKey, TokenError> {
        match self {
            Self::Hs256 { secret } => {
                check_hs256_len(secret)?;
                Ok(DecodingKey::from_secret(secret))
            }
            Self::EdDsa { public_key } => {
                // Reject non-points here rather than as a confusing signature failure.
                ed25519_dalek::VerifyingKey::from_bytes(public_key)
                    .map_err(|_| TokenError::InvalidKey("not an Ed25519 public key".into()))?;
                Ok(DecodingKey::from_ed_components(&b64url_encode(public_key))
                    .map_err(crate::jwt::map_jwt_error)?)
            }
        }
    }

    /// HS256 verifying material from the secret's text form.
    pub fn hs256_from_text(text: &str) -> Result<Self, TokenError> {
        let secret = b64url_decode(text)?;
        check_hs256_len(&secret)?;
        Ok(Self::Hs256 { secret })
    }

    /// EdDSA verifying material from the public key's text form.
    pub fn ed25519_public_from_text(text: &str) -> Result<Self, TokenError> {
        let public_key = to_32(&b64url_decode(text)?, "an Ed25519 public key")?;
        ed25519_dalek::VerifyingKey::from_bytes(&public_key)
            .map_err(|_| TokenError::InvalidKey("not an Ed25519 public key".into()))?;
        Ok(Self::EdDsa { public_key })
    }

    /// The text form of the public part: the Ed25519 public key. `None` for HS256, whose
    /// only material is the secret (use [`SigningSecret::to_text`] to show that once).
    pub fn public_text(&self) -> Option<String> {
        match self {
            Self::Hs256 { .. } => None,
            Self::EdDsa { public_key } => Some(b64url_encode(public_key)),
        }
    }
}

/// A project signing key as the verifier's lookup returns it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VerifyingKey {
    /// Key id: the token's header `kid` and its `iss`.
    pub kid: String,
    /// The project the key belongs to; the token's `project` must equal it.
    pub project_id: String,
    /// What verifies the signature, and so which `alg` is accepted.
    pub material: KeyMaterial,
}

/// What mints participant tokens. The variant decides the `alg` (HS256 or EdDSA).
#[derive(Clone, PartialEq, Eq)]
pub enum SigningSecret {
    /// HMAC-SHA256 secret, shared with the verifier.
    Hs256(Vec<u8>),
    /// Ed25519 private key as its 32-byte seed (RFC 8032 "private key").
    EdDsa([u8; 32]),
}

impl std::fmt::Debug for SigningSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Hs256(_) => f.write_str("SigningSecret::Hs256([redacted])"),
            Self::EdDsa(_) => f.write_str("SigningSecret::EdDsa([redacted])"),
        }
    }
}

impl Drop for SigningSecret {
    fn drop(&mut self) {
        match self {
            Self::Hs256(s) => s.zeroize(),
            Self::EdDsa(seed) => seed.zeroize(),
        }
    }
}

impl SigningSecret {
    /// A fresh random HS256 secret.
    pub fn generate_hs256() -> Self {
        Self::Hs256(generate_hs256_secret())
    }

    /// A fresh random Ed25519 key.
    pub fn generate_ed25519() -> Self {
        Self::EdDsa(generate_ed25519().0)
    }

    /// The text form (see module doc): show it once, store only what verifies.
    pub fn to_text(&self) -> String {
        match self {
            Self::Hs256(s) => b64url_encode(s),
            Self::EdDsa(seed) => b64url_encode(seed),
        }
    }

    /// Reads an HS256 secret's text form.
    pub fn hs256_from_text(text: &str) -> Result<Self, TokenError> {
        let secret = b64url_decode(text)?;
        check_hs256_len(&secret)?;
        Ok(Self::Hs256(secret))
    }

    /// Reads an Ed25519 seed's text form.
    pub fn ed25519_from_text(text: &str) -> Result<Self, TokenError> {
        let mut bytes = b64url_decode(text)?;
        let seed = to_32(&bytes, "an Ed25519 private key seed");
        bytes.zeroize();
        Ok(Self::EdDsa(seed?))
    }

    /// What the gateway stores to verify tokens this secret mints: the same secret for
    /// HS256, the public key for EdDSA.
    pub fn verifying_material(&self) -> KeyMaterial {
        match self {
            Self::Hs256(s) => KeyMaterial::Hs256 { secret: s.clone() },
            Self::EdDsa(seed) => KeyMaterial::EdDsa {
                public_key: ed25519_public_key(seed),
            },
        }
    }

    pub(crate) fn encoding_key(&self) -> Result<(Algorithm, EncodingKey), TokenError> {
        match self {
            Self::Hs256(s) => {
                check_hs256_len(s)?;
                Ok((Algorithm::HS256, EncodingKey::from_secret(s)))
            }
            Self::EdDsa(seed) => {
                // jsonwebtoken takes Ed25519 private keys as PKCS#8 DER only.
                let der = ed25519_dalek::SigningKey::from_bytes(seed)
                    .to_pkcs8_der()
                    .map_err(|e| TokenError::InvalidKey(format!("Ed25519 PKCS#8: {e}")))?;
                Ok((Algorithm::EdDSA, EncodingKey::from_ed_der(der.as_bytes())))
            }
        }
    }
}

/// 32 random bytes for an HS256 secret.
pub fn generate_hs256_secret() -> Vec<u8> {
    random_bytes::<32>().to_vec()
}

/// A fresh Ed25519 key: `(seed, public_key)`. The seed is the private key; keep it secret.
pub fn generate_ed25519() -> ([u8; 32], [u8; 32]) {
    let seed = random_bytes::<32>();
    let public = ed25519_public_key(&seed);
    (seed, public)
}

/// The Ed25519 public key of a seed.
pub fn ed25519_public_key(seed: &[u8; 32]) -> [u8; 32] {
    ed25519_dalek::SigningKey::from_bytes(seed)
        .verifying_key()
        .to_bytes()
}

fn check_hs256_len(secret: &[u8]) -> Result<(), TokenError> {
    if secret.len() < MIN_HS256_SECRET_LEN {
        return Err(TokenError::InvalidKey(format!(
            "HS256 secret is {} bytes; at least {MIN_HS256_SECRET_LEN} are required",
            secret.len()
        )));
    }
    Ok(())
}

fn to_32(bytes: &[u8], what: &str) -> Result<[u8; 32], TokenError> {
    <[u8; 32]>::try_from(bytes)
        .map_err(|_| TokenError::InvalidKey(format!("{what} is 32 bytes, got {}", bytes.len())))
}
