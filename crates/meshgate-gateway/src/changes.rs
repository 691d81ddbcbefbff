//! Keeps this instance's caches (keys, projects, signing keys, provider keys) in step with
//! changes other instances make to a shared database: each announced change reloads its
//! record, and a resync (the feed reconnected, or applying a change failed) reloads them
//! all, retrying until the database answers, so that a revocation is never left unapplied.
//! Credits added on any instance move the balance this instance holds in memory (when its
//! accounts are in memory; shared ones are moved by the database or Redis).

use crate::auth::KeyCache;
use crate::budget::Budgets;
use crate::secrets::SecretKey;
use crate::tenants::Tenants;
use meshgate_store::{Change, Store};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

/// What the watcher refreshes.
#[derive(Clone)]
pub struct Caches {
    pub store: Arc<dyn Store>,
    pub keys: KeyCache,
    pub tenants: Tenants,
    pub secrets: Arc<SecretKey>,
    pub budgets: Arc<Budgets>,
}

/// Starts applying the store's announced changes; `None` when the store is not shared
/// (SQLite). Abort the task at shutdown.
pub fn watch(caches: Caches) -> Option<JoinHandle<()>> {
    let feed = caches.store.changes()?;
    Some(tokio::spawn(apply_changes(caches, feed)))
}

async fn apply_changes(caches: Caches, mut feed: mpsc::Receiver<Change>) {
    while let Some(change) = feed.recv().await {
        if let Err(e) = caches.apply(&change).await {
            tracing::warn!(error = %e, ?change, "cannot apply a change; reloading everything");
            caches.reload_until_done().await;
        }
    }
}

impl Caches {
    /// Reloads the one record a change names.
    async fn apply(&self, change: &Change) -> anyhow::Result<()> {
        match change {
            Change::Key(id) => match self.store.get_key(id).await? {
                // A revoked key leaves the cache; an updated or rotated one is replaced.
                Some(key) => self.keys.insert(&key),
                None => self.keys.remove(id),
            },
            Change::Project(id) => {
                if let Some(project) = self.store.get_project(id).await? {
                    self.tenants.put_project(&project);
                }
            }
            Change::SigningKey(id) => {
                let keys = self.store.list_signing_keys(None).await?;
                match keys.iter().find(|k| &k.id == id) {
                    Some(key) if key.revoked_ms.is_none() => {
                        self.tenants.put_signing_key(key, &self.secrets)?
                    }
                    _ => self.tenants.remove_signing_key(id),
                }
            }
            Change::ProviderCredential {
                project_id,
                provider,
            } => {
                let credentials = self
                    .store
                    .list_provider_credentials(Some(project_id))
                    .await?;
                match credentials.iter().find(|c| &c.provider == provider) {
                    Some(credential) => self.tenants.put_provider(credential, &self.secrets)?,
                    None => self.tenants.remove_provider(project_id, provider),
                }
            }
            Change::Credits { project_id, amount } => {
                self.budgets.apply_announced_credits(project_id, *amount)
            }
            Change::Resync => self.reload().await?,
        }
        Ok(())
    }

    /// Reloads every cached record from the store.
    async fn reload(&self) -> anyhow::Result<()> {
        let keys = self.store.active_keys().await?;
        let tenants = Tenants::load(self.store.as_ref(), &self.secrets).await?;
        self.keys.replace_all(&keys);
        self.tenants.replace_with(tenants);
        self.budgets.reload_credits().await?;
        Ok(())
    }

    async fn reload_until_done(&self) {
        let mut retry = Duration::from_millis(100);
        while let Err(e) = self.reload().await {
            tracing::warn!(error = %e, retry_ms = %retry.as_millis(), "cannot reload the caches");
            tokio::time::sleep(retry).await;
            retry = (retry * 2).min(Duration::from_secs(5));
        }
        tracing::debug!("caches reloaded from the database");
    }
}
