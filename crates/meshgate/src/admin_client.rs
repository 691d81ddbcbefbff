//! A small client of the gateway's admin API, used by every command that talks to a
//! running gateway (`keys`, `projects`, `credits`, `token`, `providers`, `usage`, `audit`).

use crate::AdminTarget;
use anyhow::{bail, Context};
use serde_json::Value;

pub struct AdminClient {
    http: reqwest::Client,
    base: String,
    token: String,
}

/// Where the admin commands go when neither `--url` nor a stored admin login says.
const DEFAULT_URL: &str = "http://127.0.0.1:8787";

impl AdminClient {
    /// The gateway and admin token: `--url`/`MESHGATE_URL`, else the stored admin login's
    /// URL, else the local default; `--admin-token`/`MESHGATE_ADMIN_TOKEN`, else the stored
    /// admin login's token (for its own URL only), else the token `meshgate serve` saved.
    pub fn new(target: &AdminTarget) -> anyhow::Result<AdminClient> {
        // Only read when something is missing, and not at all without a config directory
        // (e.g. a service without HOME): explicit flags never depend on that file.
        let stored = match (&target.url, &target.admin_token) {
            (Some(_), Some(_)) => None,
            _ if crate::devconfig::config_dir().is_err() => None,
            _ => crate::devconfig::load_admin_login()?,
        };
        let trimmed = |url: &str| url.trim().trim_end_matches('/').to_string();
        let base = match (&target.url, &stored) {
            (Some(url), _) => trimmed(url),
            (None, Some(login)) => trimmed(&login.url),
            (None, None) => DEFAULT_URL.to_string(),
        };
        let stored_token = stored
            .filter(|login| trimmed(&login.url) == base)
            .map(|login| login.admin_token);
        let token = match (&target.admin_token, stored_token) {
            (Some(t), _) => t.clone(),
            (None, Some(t)) => t,
            (None, None) => {
                let dir = target
                    .data_dir
                    .clone()
                    .unwrap_or_else(meshgate_gateway::config::default_data_dir);
                let path = dir.join("admin-token");
                std::fs::read_to_string(&path)
                    .with_context(|| {
                        format!(
                            "no admin token for {base}: run `meshgate login --admin --url {base}`, pass --admin-token, set MESHGATE_ADMIN_TOKEN, or run on the gateway's machine ({} not readable)",
                            path.display()
                        )
                    })?
                    .trim()
                    .to_string()
            }
        };
        Ok(AdminClient {
            http: reqwest::Client::new(),
            base,
            token,
        })
    }

    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> anyhow::Result<Value> {
        let request = self.http.get(format!("{}{path}", self.base)).query(query);
        self.send(request).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.post(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn patch(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.patch(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn put(&self, path: &str, body: &Value) -> anyhow::Result<Value> {
        self.send(self.http.put(format!("{}{path}", self.base)).json(body))
            .await
    }

    pub async fn delete(&self, path: &str) -> anyhow::Result<Value> {
        self.send(self.http.delete(format!("{}{path}", self.base)))
            .await
    }

    async fn send(&self, request: reqwest::RequestBuilder) -> anyhow::Result<Value> {
        let response = request
            .bearer_auth(&self.token)
            .send()
            .await
            .with_context(|| format!("cannot reach the gateway at {}", self.base))?;
        let status = response.status();
        let body: Value = response.json().await.unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"].as_str().unwrap_or("no message");
            bail!("the gateway answered {status}: {message}");
        }
        Ok(body)
    }
}
