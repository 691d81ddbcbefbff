//! The remote meshgate a developer talks to: its URL, the upstream credential and project,
//! resolved from flags, the environment and the stored login; and the gateway's own
//! metering of one call, read back by its event id (`GET /v1/usage/events/{id}`).

use crate::devconfig;
use anyhow::Context;
use meshgate_types::{Money, Usage};
use serde::Deserialize;
use std::time::Duration;

/// The environment variable holding the upstream credential unless told otherwise.
pub const TOKEN_ENV: &str = "MESHGATE_TOKEN";
/// How long a cost lookup waits for the gateway's ledger to write the call's event.
const LOOKUP_WAIT_MS: u64 = 10_000;

/// A remote meshgate and the credential used there. The credential never leaves this
/// struct except as the upstream `Authorization` header.
#[derive(Clone)]
pub struct Upstream {
    /// Base URL without a trailing slash.
    pub base: String,
    token: String,
    pub project_id: Option<String>,
    pub http: reqwest::Client,
}

impl std::fmt::Debug for Upstream {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Upstream")
            .field("base", &self.base)
            .field("project_id", &self.project_id)
            .finish_non_exhaustive()
    }
}

impl Upstream {
    /// The URL: `url`, else the stored login's. The credential: the variable `token_env`
    /// when set, else the stored login's. The project: `project_id`, else the login's.
    pub fn resolve(
        url: Option<&str>,
        token_env: &str,
        project_id: Option<&str>,
    ) -> anyhow::Result<Upstream> {
        let login = devconfig::load_login()?;
        let base = url
            .map(str::to_string)
            .or_else(|| login.as_ref().map(|l| l.url.clone()))
            .context("no gateway URL: run `meshgate login --url URL`, or pass --upstream")?;
        let token = std::env::var(token_env)
            .ok()
            .filter(|t| !t.trim().is_empty())
            .or_else(|| login.as_ref().map(|l| l.token.clone()))
            .with_context(|| {
                format!("no credential: set {token_env}, or run `meshgate login --url URL`")
            })?;
        let project_id = project_id
            .map(str::to_string)
            .or_else(|| login.and_then(|l| l.project_id));
        Upstream::new(&base, token.trim(), project_id)
    }

    pub fn new(base: &str, token: &str, project_id: Option<String>) -> anyhow::Result<Upstream> {
        let base = base.trim_end_matches('/').to_string();
        reqwest::Url::parse(&base).with_context(|| format!("{base:?} is not a URL"))?;
        let http = reqwest::Client::builder()
            .connect_timeout(Duration::from_secs(10))
            .build()
            .context("cannot build the HTTP client")?;
        Ok(Upstream {
            base,
            token: token.to_string(),
            project_id,
            http,
        })
    }

    /// A request to `path_and_query` (starting with `/`) carrying the upstream credential.
    pub fn request(&self, method: http::Method, path_and_query: &str) -> reqwest::RequestBuilder {
        let mut request = self
            .http
            .request(method, format!("{}{path_and_query}", self.base))
            .bearer_auth(&self.token);
        if let Some(project) = &self.project_id {
            request = request.header(PROJECT_HEADER, project);
        }
        request
    }

    /// The gateway's metering of the call whose answer carried `event_id`, waiting for its
    /// ledger to write it.
    pub async fn metered_call(&self, event_id: &str) -> anyhow::Result<MeteredCall> {
        let response = self
            .request(
                http::Method::GET,
                &format!("/v1/usage/events/{event_id}?wait_ms={LOOKUP_WAIT_MS}"),
            )
            .timeout(Duration::from_millis(LOOKUP_WAIT_MS + 5_000))
            .send()
            .await
            .context("cannot reach the gateway for the call's cost")?;
        let status = response.status();
        if !status.is_success() {
            anyhow::bail!("the gateway answered {status} for event {event_id}");
        }
        response
            .json()
            .await
            .context("the gateway's usage event is not readable")
    }

    /// Whether the gateway answers its health check.
    pub async fn healthy(&self) -> Result<(), String> {
        let response = self
            .http
            .get(format!("{}/healthz", self.base))
            .timeout(Duration::from_secs(5))
            .send()
            .await
            .map_err(|e| error_chain(&e))?;
        match response.status().is_success() {
            true => Ok(()),
            false => Err(format!("healthz answered {}", response.status())),
        }
    }
}

/// The header that names the project upstream.
pub const PROJECT_HEADER: &str = "meshgate-project-id";

/// An error with its causes, on one line (reqwest's own message hides the cause).
pub fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(cause) = source {
        text.push_str(": ");
        text.push_str(&cause.to_string());
        source = cause.source();
    }
    text
}

/// One call as the gateway metered it: the fields of its usage event that a developer
/// watches.
#[derive(Debug, Clone, Deserialize)]
pub struct MeteredCall {
    /// The model that served (and prices) the call.
    pub model: Option<String>,
    pub outcome: String,
    #[serde(default)]
    pub usage: Usage,
    pub cost_usd: Option<Money>,
    pub markup_usd: Option<Money>,
}

impl MeteredCall {
    /// What the call was charged: cost plus the project's markup.
    pub fn charged(&self) -> Money {
        self.cost_usd.unwrap_or(Money::ZERO) + self.markup_usd.unwrap_or(Money::ZERO)
    }

    /// The whole prompt: uncached input, cache reads and cache writes.
    pub fn input_tokens(&self) -> u64 {
        let u = &self.usage;
        [
            u.input_uncached,
            u.cache_read,
            u.cache_write_5m,
            u.cache_write_1h,
        ]
        .into_iter()
        .flatten()
        .sum()
    }

    /// The part of the prompt read from the provider's cache.
    pub fn cached_tokens(&self) -> u64 {
        self.usage.cache_read.unwrap_or(0)
    }

    pub fn output_tokens(&self) -> u64 {
        self.usage.output.unwrap_or(0)
    }
}

/// Money as dollars with its exact decimals (`$0.0045`).
pub fn dollars(amount: Money) -> String {
    format!("${}", amount.amount().normalize())
}
