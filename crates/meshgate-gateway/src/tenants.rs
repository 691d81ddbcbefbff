//! What the hot path knows about tenants, in memory: each project's settings, the signing
//! keys that verify participant tokens, and projects' own provider keys (opened from their
//! sealed form). Filled from the store at start and changed in place by the admin API.

use crate::secrets::SecretKey;
use meshgate_store::{ProjectRecord, ProjectSettings, ProviderCredential, SigningKeyRecord, Store};
use meshgate_tokens::{KeyMaterial, VerifyingKey};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// A project's own key for one provider.
#[derive(Clone)]
pub struct ProjectProvider {
    pub api_key: String,
    pub base_url: Option<String>,
}

impl std::fmt::Debug for ProjectProvider {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProjectProvider")
            .field("api_key", &"<redacted>")
            .field("base_url", &self.base_url)
            .finish()
    }
}

#[derive(Default)]
struct Maps {
    projects: HashMap<String, Arc<ProjectSettings>>,
    signing: HashMap<String, VerifyingKey>,
    providers: HashMap<(String, String), ProjectProvider>,
}

#[derive(Clone, Default)]
pub struct Tenants {
    maps: Arc<RwLock<Maps>>,
}

/// The context a sealed provider key is bound to.
pub fn provider_context(project: &str, provider: &str) -> String {
    format!("provider:{project}:{provider}")
}

/// The context a sealed HS256 signing secret is bound to.
pub fn signing_context(kid: &str) -> String {
    format!("signing:{kid}")
}

impl Tenants {
    /// Reads everything from the store; a sealed value that does not open is an error
    /// (the secret key changed), not something to skip silently.
    pub async fn load(store: &dyn Store, secrets: &SecretKey) -> anyhow::Result<Tenants> {
        let tenants = Tenants::default();
        for project in store.list_projects().await? {
            tenants.put_project(&project);
        }
        for key in store.list_signing_keys(None).await? {
            if key.revoked_ms.is_none() {
                tenants.put_signing_key(&key, secrets)?;
            }
        }
        for credential in store.list_provider_credentials(None).await? {
            tenants.put_provider(&credential, secrets)?;
        }
        Ok(tenants)
    }

    /// Takes `fresh`'s contents in place (every clone of this value sees them).
    pub fn replace_with(&self, fresh: Tenants) {
        let contents = std::mem::take(&mut *fresh.write());
        *self.write() = contents;
    }

    pub fn project(&self, id: &str) -> Option<Arc<ProjectSettings>> {
        self.read().projects.get(id).cloned()
    }

    pub fn put_project(&self, project: &ProjectRecord) {
        self.write()
            .projects
            .insert(project.id.clone(), Arc::new(project.settings.clone()));
    }

    pub fn signing_key(&self, kid: &str) -> Option<VerifyingKey> {
        self.read().signing.get(kid).cloned()
    }

    pub fn put_signing_key(
        &self,
        key: &SigningKeyRecord,
        secrets: &SecretKey,
    ) -> anyhow::Result<()> {
        let material = match key.algorithm.as_str() {
            "HS256" => KeyMaterial::Hs256 {
                secret: secrets.open(&signing_context(&key.id), &key.material)?,
            },
            "EdDSA" => KeyMaterial::ed25519_public_from_text(&key.material)?,
            other => anyhow::bail!("signing key {} has unknown algorithm {other}", key.id),
        };
        self.write().signing.insert(
            key.id.clone(),
            VerifyingKey {
                kid: key.id.clone(),
                project_id: key.project_id.clone(),
                material,
            },
        );
        Ok(())
    }

    pub fn remove_signing_key(&self, kid: &str) {
        self.write().signing.remove(kid);
    }

    pub fn provider(&self, project: &str, provider: &str) -> Option<ProjectProvider> {
        let maps = self.read();
        if maps.providers.is_empty() {
            return None;
        }
        maps.providers
            .get(&(project.to_string(), provider.to_string()))
            .cloned()
    }

    pub fn put_provider(
        &self,
        credential: &ProviderCredential,
        secrets: &SecretKey,
    ) -> anyhow::Result<()> {
        let plain = secrets.open(
            &provider_context(&credential.project_id, &credential.provider),
            &credential.sealed_api_key,
        )?;
        let api_key = String::from_utf8(plain)
            .map_err(|_| anyhow::anyhow!("a sealed provider key is not text"))?;
        self.write().providers.insert(
            (credential.project_id.clone(), credential.provider.clone()),
            ProjectProvider {
                api_key,
                base_url: credential.base_url.clone(),
            },
        );
        Ok(())
    }

    pub fn remove_provider(&self, project: &str, provider: &str) {
        self.write()
            .providers
            .remove(&(project.to_string(), provider.to_string()));
    }

    fn read(&self) -> std::sync::RwLockReadGuard<'_, Maps> {
        self.maps
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    fn write(&self) -> std::sync::RwLockWriteGuard<'_, Maps> {
        self.maps
            .write()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}
