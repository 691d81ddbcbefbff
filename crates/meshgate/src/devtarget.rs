//! The gateway a developer's commands (`whoami`, `setup`, `run`, `usage` of one's own)
//! talk to, and with which credential: `MESHGATE_URL` / `MESHGATE_TOKEN` /
//! `MESHGATE_PROJECT_ID` when set, else the login stored by `meshgate login`. Also the
//! client of the gateway's self-serve API (`/v1/me`, `/v1/usage/...`) with that credential.

use crate::devconfig::{self, Login};
use anyhow::{bail, Context};
use serde_json::Value;

/// Where `meshgate proxy` listens by default.
pub const LOCAL_PROXY_URL: &str = "http://127.0.0.1:8766";

/// Where `--local` points: `MESHGATE_PROXY_URL` (a proxy started with `--port`), else the
/// default address.
pub fn local_proxy_url() -> String {
    std::env::var("MESHGATE_PROXY_URL")
        .ok()
        .filter(|u| !u.is_empty())
        .map(|u| u.trim_end_matches('/').to_string())
        .unwrap_or_else(|| LOCAL_PROXY_URL.to_string())
}

/// The gateway's OpenAI base URL (what `OPENAI_BASE_URL` is set to).
pub fn openai_base(url: &str) -> String {
    format!("{}/openai/v1", url.trim_end_matches('/'))
}

/// The gateway's Anthropic base URL (what `ANTHROPIC_BASE_URL` is set to).
pub fn anthropic_base(url: &str) -> String {
    format!("{}/anthropic", url.trim_end_matches('/'))
}

fn env_var(name: &str) -> Option<String> {
    std::env::var(name).ok().filter(|v| !v.trim().is_empty())
}

/// The developer's gateway and credential, from the environment or the stored login.
pub fn resolve() -> anyhow::Result<Login> {
    let stored = devconfig::load_login()?;
    let token = env_var("MESHGATE_TOKEN").or_else(|| stored.as_ref().map(|l| l.token.clone()));
    let url = env_var("MESHGATE_URL").or_else(|| stored.as_ref().map(|l| l.url.clone()));
    let project_id = env_var("MESHGATE_PROJECT_ID")
        .or_else(|| stored.as_ref().and_then(|l| l.project_id.clone()));
    match (url, token) {
        (Some(url), Some(token)) => Ok(Login {
            url: url.trim_end_matches('/').to_string(),
            token,
            project_id,
        }),
        (None, _) => bail!(
            "not logged in: run `meshgate login --url URL`, or set MESHGATE_URL and MESHGATE_TOKEN"
        ),
        (Some(_), None) => bail!("no credential: run `meshgate login`, or set MESHGATE_TOKEN"),
    }
}

/// Whether a developer credential is at hand (environment or stored login), without
/// failing when there is none.
pub fn has_credential() -> bool {
    env_var("MESHGATE_TOKEN").is_some() || matches!(devconfig::load_login(), Ok(Some(_)))
}

/// A credential shown without giving it away: its first and last few characters.
pub fn masked(token: &str) -> String {
    let chars: Vec<char> = token.chars().collect();
    if chars.len() <= 12 {
        return "*".repeat(chars.len());
    }
    let head: String = chars[..6].iter().collect();
    let tail: String = chars[chars.len() - 4..].iter().collect();
    format!("{head}...{tail}")
}

/// The self-serve API of a gateway, called with the developer's own credential.
pub struct SelfServe<'a> {
    http: reqwest::Client,
    login: &'a Login,
}

/// Why a self-serve call failed: the gateway's answer, or no answer at all.
#[derive(Debug, thiserror::Error)]
pub enum CallError {
    #[error("the gateway at {url} answered {status}: {message}")]
    Refused {
        url: String,
        status: reqwest::StatusCode,
        message: String,
    },
    #[error("cannot reach the gateway at {url}: {source}")]
    Unreachable {
        url: String,
        #[source]
        source: reqwest::Error,
    },
}

impl<'a> SelfServe<'a> {
    pub fn new(login: &'a Login) -> SelfServe<'a> {
        SelfServe {
            http: reqwest::Client::new(),
            login,
        }
    }

    /// `GET {url}/v1/{path}` with the credential (and the project header when known).
    pub async fn get(&self, path: &str, query: &[(&str, String)]) -> Result<Value, CallError> {
        let url = format!("{}/v1/{path}", self.login.url);
        let mut request = self
            .http
            .get(&url)
            .query(query)
            .bearer_auth(&self.login.token);
        if let Some(project) = &self.login.project_id {
            request = request.header("Meshgate-Project-Id", project);
        }
        let unreachable = |source| CallError::Unreachable {
            url: self.login.url.clone(),
            source,
        };
        let response = request.send().await.map_err(unreachable)?;
        let status = response.status();
        let text = response.text().await.map_err(unreachable)?;
        let body: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
        if !status.is_success() {
            let message = body["error"]["message"]
                .as_str()
                .map(str::to_string)
                .unwrap_or_else(|| text.chars().take(200).collect());
            return Err(CallError::Refused {
                url: self.login.url.clone(),
                status,
                message,
            });
        }
        if body.is_null() {
            return Err(CallError::Refused {
                url: self.login.url.clone(),
                status,
                message: format!(
                    "not a meshgate answer: {}",
                    text.chars().take(200).collect::<String>()
                ),
            });
        }
        Ok(body)
    }
}

/// `GET /v1/me`, with context for the error.
pub async fn me(login: &Login) -> anyhow::Result<Value> {
    SelfServe::new(login)
        .get("me", &[])
        .await
        .context("cannot read who you are")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn masking_hides_the_middle() {
        assert_eq!(masked("mg_abcdefghijklmnopqrstuvwxyz"), "mg_abc...wxyz");
        assert_eq!(masked("short"), "*****");
    }

    #[test]
    fn surface_bases() {
        assert_eq!(openai_base("http://h:1/"), "http://h:1/openai/v1");
        assert_eq!(anthropic_base("http://h:1"), "http://h:1/anthropic");
    }
}
