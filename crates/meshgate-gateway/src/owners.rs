//! Which project created each provider-side object (message batches, stored responses).
//! Every project calls the provider with the same account, so without this one project
//! could read, cancel or list another's objects by id. Recent owners are kept in memory
//! (known before the creating response reaches its client); all are written to the store
//! through the ledger.

use crate::ledger::Ledger;
use meshgate_store::{ResourceOwner, Store};
use std::collections::HashMap;
use std::sync::{Arc, RwLock};

/// Owners kept in memory before the oldest are left to the store alone.
const RECENT_MAX: usize = 100_000;

pub struct Owners {
    recent: RwLock<HashMap<String, String>>,
    ledger: Ledger,
    store: Arc<dyn Store>,
}

impl Owners {
    pub fn new(ledger: Ledger, store: Arc<dyn Store>) -> Self {
        Owners {
            recent: RwLock::new(HashMap::new()),
            ledger,
            store,
        }
    }

    /// `project` created the object `id` (of `kind`: `batch` or `response`).
    pub fn remember(&self, id: &str, project: &str, kind: &str) {
        {
            let mut recent = self
                .recent
                .write()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            if recent.len() >= RECENT_MAX {
                recent.clear();
            }
            recent
                .entry(id.to_string())
                .or_insert_with(|| project.to_string());
        }
        self.ledger.record_owner(ResourceOwner {
            resource_id: id.to_string(),
            project_id: project.to_string(),
            kind: kind.to_string(),
            created_ms: chrono::Utc::now().timestamp_millis(),
        });
    }

    /// Whether `project` created the object `id`. Unknown objects belong to no project.
    pub async fn owns(&self, project: &str, id: &str) -> Result<bool, meshgate_store::StoreError> {
        let known = self
            .recent
            .read()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
            .get(id)
            .cloned();
        let owner = match known {
            Some(owner) => Some(owner),
            None => self.store.resource_owner(id).await?,
        };
        Ok(owner.as_deref() == Some(project))
    }
}

/// The provider-side object a path names, if any: `messages/batches/{id}[/...]` or
/// `responses/{id}[/...]`.
pub fn object_in_path(rest: &str) -> Option<(&'static str, &str)> {
    let mut segments = rest.split('/');
    match (segments.next(), segments.next(), segments.next()) {
        (Some("messages"), Some("batches"), Some(id)) if !id.is_empty() => Some(("batch", id)),
        (Some("responses"), Some(id), _)
            if !id.is_empty() && id != "compact" && id != "input_tokens" =>
        {
            Some(("response", id))
        }
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn objects_named_by_paths() {
        assert_eq!(
            object_in_path("messages/batches/msgbatch_1/results"),
            Some(("batch", "msgbatch_1"))
        );
        assert_eq!(object_in_path("messages/batches"), None);
        assert_eq!(object_in_path("messages"), None);
        assert_eq!(
            object_in_path("responses/resp_1/input_items"),
            Some(("response", "resp_1"))
        );
        assert_eq!(object_in_path("responses/compact"), None);
        assert_eq!(object_in_path("responses"), None);
    }
}
