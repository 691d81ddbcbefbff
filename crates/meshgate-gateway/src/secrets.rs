//! Secrets at rest: project provider keys and HS256 signing secrets are sealed with
//! AES-256-GCM under the gateway's secret key (MESHGATE_SECRET_KEY, else a key file made on
//! first start) before they reach the store, bound to the record they belong to.

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use rand::RngCore;
use ring::aead::{Aad, LessSafeKey, Nonce, UnboundKey, AES_256_GCM, NONCE_LEN};
use std::path::Path;

/// Environment variable holding the secret key: 32 bytes as 64 hex digits or base64.
pub const SECRET_KEY_ENV: &str = "MESHGATE_SECRET_KEY";
const SEALED_PREFIX: &str = "v1:";

/// The key that seals secrets at rest.
pub struct SecretKey {
    key: LessSafeKey,
    /// For keys derived per purpose (the delegation signing key).
    derive: ring::hmac::Key,
}

impl std::fmt::Debug for SecretKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SecretKey(..)")
    }
}

impl SecretKey {
    pub fn from_bytes(bytes: &[u8; 32]) -> anyhow::Result<SecretKey> {
        let unbound = UnboundKey::new(&AES_256_GCM, bytes)
            .map_err(|_| anyhow::anyhow!("cannot use the secret key"))?;
        Ok(SecretKey {
            key: LessSafeKey::new(unbound),
            derive: ring::hmac::Key::new(ring::hmac::HMAC_SHA256, bytes),
        })
    }

    /// A key of its own for `purpose`, so that no two uses share one.
    pub fn derive(&self, purpose: &str) -> Vec<u8> {
        ring::hmac::sign(&self.derive, purpose.as_bytes())
            .as_ref()
            .to_vec()
    }

    /// Reads the key from MESHGATE_SECRET_KEY, else from `file`, creating the file (mode
    /// 0600) with a random key when it does not exist.
    pub fn load(env_value: Option<&str>, file: &Path) -> anyhow::Result<SecretKey> {
        if let Some(text) = env_value.filter(|t| !t.trim().is_empty()) {
            return Self::from_bytes(&decode_key(text.trim())?);
        }
        match std::fs::read_to_string(file) {
            Ok(text) => Self::from_bytes(
                &decode_key(text.trim())
                    .map_err(|e| anyhow::anyhow!("secret key file {}: {e}", file.display()))?,
            ),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => {
                let mut bytes = [0u8; 32];
                rand::rng().fill_bytes(&mut bytes);
                crate::state::write_private(file, &hex::encode(bytes))?;
                Self::from_bytes(&bytes)
            }
            Err(e) => Err(anyhow::anyhow!(
                "cannot read the secret key file {}: {e}",
                file.display()
            )),
        }
    }

    /// Seals `plain`, bound to `context` (e.g. `provider:<project>:<provider>`): the result
    /// opens only with the same context, so a sealed value cannot be moved to another row.
    pub fn seal(&self, context: &str, plain: &[u8]) -> String {
        let mut nonce = [0u8; NONCE_LEN];
        rand::rng().fill_bytes(&mut nonce);
        let mut data = plain.to_vec();
        // Sealing with a fresh random nonce and a valid key cannot fail.
        let _ = self.key.seal_in_place_append_tag(
            Nonce::assume_unique_for_key(nonce),
            Aad::from(context.as_bytes()),
            &mut data,
        );
        let mut out = nonce.to_vec();
        out.extend_from_slice(&data);
        format!("{SEALED_PREFIX}{}", URL_SAFE_NO_PAD.encode(out))
    }

    pub fn open(&self, context: &str, sealed: &str) -> anyhow::Result<Vec<u8>> {
        let bad = || anyhow::anyhow!("a sealed secret does not open with this secret key");
        let raw = sealed
            .strip_prefix(SEALED_PREFIX)
            .and_then(|b| URL_SAFE_NO_PAD.decode(b).ok())
            .ok_or_else(bad)?;
        if raw.len() < NONCE_LEN {
            return Err(bad());
        }
        let (nonce, data) = raw.split_at(NONCE_LEN);
        let nonce = Nonce::try_assume_unique_for_key(nonce).map_err(|_| bad())?;
        let mut data = data.to_vec();
        let plain = self
            .key
            .open_in_place(nonce, Aad::from(context.as_bytes()), &mut data)
            .map_err(|_| bad())?;
        Ok(plain.to_vec())
    }
}

fn decode_key(text: &str) -> anyhow::Result<[u8; 32]> {
    let bytes = if text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit()) {
        hex::decode(text)?
    } else {
        base64::engine::general_purpose::STANDARD
            .decode(text)
            .or_else(|_| URL_SAFE_NO_PAD.decode(text))
            .map_err(|_| anyhow::anyhow!("expected 32 bytes as 64 hex digits or base64"))?
    };
    bytes
        .try_into()
        .map_err(|_| anyhow::anyhow!("the secret key must be exactly 32 bytes"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seal_and_open_bound_to_context() {
        let key = SecretKey::from_bytes(&[7u8; 32]).unwrap();
        let sealed = key.seal("provider:p1:openai", b"sk-secret");
        assert!(!sealed.contains("sk-secret"));
        assert_eq!(
            key.open("provider:p1:openai", &sealed).unwrap(),
            b"sk-secret"
        );
        assert!(key.open("provider:p2:openai", &sealed).is_err());
        let other = SecretKey::from_bytes(&[8u8; 32]).unwrap();
        assert!(other.open("provider:p1:openai", &sealed).is_err());
        // Two seals of the same value differ (fresh nonce).
        assert_ne!(sealed, key.seal("provider:p1:openai", b"sk-secret"));
    }

    #[test]
    fn key_from_env_or_file() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("secret.key");
        let made = SecretKey::load(None, &file).unwrap();
        let sealed = made.seal("c", b"x");
        let again = SecretKey::load(None, &file).unwrap();
        assert_eq!(again.open("c", &sealed).unwrap(), b"x");
        let hex_key = "11".repeat(32);
        let from_env = SecretKey::load(Some(&hex_key), &file).unwrap();
        assert!(from_env.open("c", &sealed).is_err());
        assert!(SecretKey::load(Some("short"), &file).is_err());
    }
}
