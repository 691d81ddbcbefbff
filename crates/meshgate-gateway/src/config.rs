//! Gateway configuration: defaults that run with nothing set, a TOML file for the rest,
//! and environment overrides for the common keys.

use serde::Deserialize;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

/// Everything the gateway reads at start. Every field has a default.
#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address the gateway listens on.
    pub listen: SocketAddr,
    /// Directory of the embedded database and the saved admin token.
    pub data_dir: PathBuf,
    /// Database URL; empty means the SQLite file `meshgate.db` in `data_dir`.
    pub database_url: String,
    /// Redis URL (`redis://host:6379`); when set, rate-limit counters and budget and credit
    /// reservations are shared through it by every instance using it. Empty: through the
    /// database when it is PostgreSQL (see `postgres_limits`), else per instance.
    pub redis_url: String,
    /// Without Redis, on PostgreSQL: hold rate-limit counters and budget and credit
    /// reservations in the database, exact across every instance sharing it (a few round
    /// trips per call). `false`: each instance in its own memory (faster; N instances may
    /// admit up to N times a limit).
    pub postgres_limits: bool,
    /// Prefix of every key meshgate writes in Redis (fleets sharing one Redis apart).
    pub redis_prefix: String,
    /// What a call with a rate limit, budget or credits gets while Redis cannot be reached.
    pub redis_unavailable: RedisUnavailable,
    /// Base URL clients reach meshgate at, used to rewrite batch `results_url`s;
    /// empty means `http://<Host header>`.
    pub public_url: String,
    pub server: ServerConfig,
    pub limits: Limits,
    pub timeouts: Timeouts,
    pub pricing: PricingConfig,
    pub providers: Providers,
    pub ledger: LedgerConfig,
    pub auth: AuthConfig,
    pub budgets: BudgetConfig,
    pub routing: RoutingConfig,
}

/// `redis_unavailable`: how limits that live in Redis are enforced while it is away.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum RedisUnavailable {
    /// Fail closed: a call that has a rate limit, a budget or credits to check is refused
    /// with 503 (calls with none of them pass).
    #[default]
    Closed,
    /// Each instance enforces the limits alone, in its own memory, as without Redis
    /// (budgets loaded from the database's ledger), until Redis answers again: the fleet
    /// may then admit up to N times a limit.
    Local,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct RoutingConfig {
    /// Model names clients may use for one model or an ordered list (the first that
    /// answers serves), each `provider/model` or a plain model name.
    pub aliases: std::collections::BTreeMap<String, AliasTarget>,
    /// Models to try, in order, when a model's deployments all fail.
    pub fallbacks: std::collections::BTreeMap<String, Vec<String>>,
    /// Most upstream attempts for one call, over all models and deployments.
    pub max_attempts: u32,
    /// Extra attempts on a model's only deployment after a connect error, 5xx or 529 (not
    /// after a 429 or a timeout), within `max_attempts`.
    pub retries_per_deployment: u32,
    /// First backoff between attempts (doubling, with full jitter).
    pub retry_backoff_ms: u64,
    /// Longest backoff, and the most of a provider's `retry-after` that is honoured.
    pub max_backoff_ms: u64,
    /// Consecutive failures that open a deployment's circuit breaker.
    pub breaker_failures: u32,
    /// How long an open breaker waits before one probe call; also how long latency
    /// samples count for judging a deployment slow.
    pub breaker_cooldown_ms: u64,
    /// Failed share of a deployment's recent outcomes that opens its breaker (0: off).
    pub breaker_error_rate: f64,
    /// How many recent outcomes the error rate is taken over.
    pub breaker_window: u32,
    /// Fewest recent outcomes before the error rate may open a breaker.
    pub breaker_min_requests: u32,
    /// A deployment whose recent latency to the response head is this many times its
    /// fastest sibling's is slow: tried after the others (0: off).
    pub slow_factor: f64,
    /// A deployment whose recent latency is above this is slow whatever its siblings do
    /// (0: off).
    pub slow_latency_ms: u64,
}

impl Default for RoutingConfig {
    fn default() -> Self {
        RoutingConfig {
            aliases: Default::default(),
            fallbacks: Default::default(),
            max_attempts: 4,
            retries_per_deployment: 1,
            retry_backoff_ms: 100,
            max_backoff_ms: 2000,
            breaker_failures: 5,
            breaker_cooldown_ms: 30_000,
            breaker_error_rate: 0.5,
            breaker_window: 20,
            breaker_min_requests: 10,
            slow_factor: 3.0,
            slow_latency_ms: 0,
        }
    }
}

/// An alias names one model or an ordered list of them.
#[derive(Debug, Clone, Deserialize)]
#[serde(untagged)]
pub enum AliasTarget {
    One(String),
    Many(Vec<String>),
}

impl AliasTarget {
    pub fn list(&self) -> Vec<String> {
        match self {
            AliasTarget::One(m) => vec![m.clone()],
            AliasTarget::Many(ms) => ms.clone(),
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct AuthConfig {
    /// `aud` of participant tokens and delegations meshgate mints and accepts.
    pub audience: String,
    /// Clock skew tolerated on token times, in seconds.
    pub leeway_secs: u64,
    /// File holding the key that seals provider keys and signing secrets at rest, used
    /// when MESHGATE_SECRET_KEY is unset; empty means `secret.key` in `data_dir`.
    pub secret_key_file: Option<PathBuf>,
    /// Longest lifetime of a delegation, in seconds.
    pub max_delegation_secs: u64,
    /// An external OIDC issuer whose JWT access tokens are accepted.
    pub oauth: Option<OAuthConfig>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OAuthConfig {
    pub issuer: String,
    pub audience: String,
    pub jwks_url: String,
    /// Scope a token must carry to call models.
    #[serde(default = "default_oauth_scope")]
    pub scope: String,
}

fn default_oauth_scope() -> String {
    "llm_proxy".into()
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct BudgetConfig {
    /// Output tokens reserved for a call that sets no `max_tokens`.
    pub default_max_output_tokens: u64,
    /// Prompt bytes per reserved input token (the reservation counts the body's bytes).
    pub bytes_per_input_token: u64,
}

impl Default for AuthConfig {
    fn default() -> Self {
        AuthConfig {
            audience: "meshgate".into(),
            leeway_secs: 30,
            secret_key_file: None,
            max_delegation_secs: 86_400,
            oauth: None,
        }
    }
}

impl Default for BudgetConfig {
    fn default() -> Self {
        BudgetConfig {
            default_max_output_tokens: 4096,
            bytes_per_input_token: 2,
        }
    }
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ServerConfig {
    /// Serving threads, each with its own runtime, listener and provider connections;
    /// 0 means one per available core.
    pub threads: usize,
}

impl ServerConfig {
    /// The number of serving threads `threads` asks for.
    pub fn thread_count(&self) -> usize {
        match self.threads {
            0 => std::thread::available_parallelism().map_or(1, usize::from),
            n => n,
        }
    }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Limits {
    /// Largest request body accepted, in bytes (413 above it).
    pub max_body_bytes: usize,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Timeouts {
    /// Connecting to the provider (TCP and TLS).
    pub connect_ms: u64,
    /// From sending the request to the provider's response headers.
    pub first_byte_ms: u64,
    /// Longest silence between two chunks of a response body.
    pub between_chunks_ms: u64,
    /// How long SIGTERM waits for in-flight calls before cutting them.
    pub shutdown_grace_ms: u64,
    /// On SIGTERM, how long meshgate goes on accepting calls while `/readyz` answers 503
    /// (draining), so that load balancers stop sending calls before it stops listening.
    pub drain_delay_ms: u64,
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct PricingConfig {
    /// Pricing files loaded after the built-in catalog, later ones winning: `.toml` in
    /// meshgate's format, `.json` in LiteLLM's `model_prices_and_context_window.json` format.
    pub files: Vec<PathBuf>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Providers {
    pub openai: ProviderConfig,
    pub anthropic: ProviderConfig,
    /// Google Gemini's native API (`generateContent`), reached through the translation lane.
    pub gemini: ProviderConfig,
    /// Extra PEM root certificates trusted for upstream HTTPS (private CAs, tests).
    pub ca_file: Option<PathBuf>,
    /// More deployments beside the two above: other keys or base URLs of a provider,
    /// balanced by weight.
    pub deployments: Vec<DeploymentConfig>,
}

/// One `[[providers.deployments]]` entry.
///
/// `provider = "azure"` is an Azure OpenAI resource: `base_url` is its endpoint
/// (`https://NAME.openai.azure.com`), the key goes in `api-key`, and it serves OpenAI models
/// (candidates of provider `openai` whose names match `models`), priced and recorded as
/// OpenAI's with this entry's `name` as the deployment.
///
/// `provider = "gemini"` is Google's Gemini API (`base_url` the origin,
/// `https://generativelanguage.googleapis.com`; the key goes in `x-goog-api-key`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub name: String,
    /// `openai`, `anthropic`, `gemini` or `azure`: the API the deployment speaks.
    pub provider: String,
    pub base_url: String,
    pub api_key_env: String,
    #[serde(default = "default_weight")]
    pub weight: u32,
    /// Model patterns it serves; all of its provider's when absent.
    #[serde(default)]
    pub models: Option<Vec<String>>,
    /// Azure only: the `api-version` of every call (default `2024-10-21`), or `v1` for the
    /// v1 API (`/openai/v1/...`, no `api-version`, the deployment named by the body's `model`).
    #[serde(default)]
    pub api_version: Option<String>,
    /// Azure only: the Azure deployment that serves `models`; when absent, the model name
    /// asked for is the deployment name. Not with `api_version = "v1"`.
    #[serde(default)]
    pub azure_deployment: Option<String>,
}

fn default_weight() -> u32 {
    1
}

#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct ProviderConfig {
    /// OpenAI: includes `/v1` as its SDK does; Anthropic and Gemini: the origin, as their
    /// SDKs take it.
    pub base_url: String,
    /// Environment variable holding the provider key.
    pub api_key_env: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct LedgerConfig {
    /// Most events written in one transaction.
    pub batch_size: usize,
    /// How long usage events gather before they are written together.
    pub flush_interval_ms: u64,
    /// Keep every usage event in a local file (the spool, `<data_dir>/spool/`) before its
    /// response's last byte leaves: `write` survives the process dying, `sync` the machine
    /// too (an fdatasync per group of calls), `off` neither.
    pub spool: crate::spool::SpoolMode,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8787)),
            data_dir: default_data_dir(),
            database_url: String::new(),
            redis_url: String::new(),
            postgres_limits: true,
            redis_prefix: "meshgate:".into(),
            redis_unavailable: RedisUnavailable::Closed,
            public_url: String::new(),
            server: ServerConfig::default(),
            limits: Limits::default(),
            timeouts: Timeouts::default(),
            pricing: PricingConfig::default(),
            providers: Providers::default(),
            ledger: LedgerConfig::default(),
            auth: AuthConfig::default(),
            budgets: BudgetConfig::default(),
            routing: RoutingConfig::default(),
        }
    }
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: 32 * 1024 * 1024,
        }
    }
}

impl Default for Timeouts {
    fn default() -> Self {
        Timeouts {
            connect_ms: 10_000,
            first_byte_ms: 600_000,
            between_chunks_ms: 300_000,
            shutdown_grace_ms: 30_000,
            drain_delay_ms: 0,
        }
    }
}

impl Default for Providers {
    fn default() -> Self {
        Providers {
            openai: ProviderConfig {
                base_url: "https://api.openai.com/v1".into(),
                api_key_env: "OPENAI_API_KEY".into(),
            },
            anthropic: ProviderConfig {
                base_url: "https://api.anthropic.com".into(),
                api_key_env: "ANTHROPIC_API_KEY".into(),
            },
            gemini: ProviderConfig {
                base_url: "https://generativelanguage.googleapis.com".into(),
                api_key_env: "GEMINI_API_KEY".into(),
            },
            ca_file: None,
            deployments: Vec::new(),
        }
    }
}

impl Default for LedgerConfig {
    fn default() -> Self {
        LedgerConfig {
            batch_size: 512,
            flush_interval_ms: 10,
            spool: crate::spool::SpoolMode::Write,
        }
    }
}

impl Providers {
    /// A `[providers.openai]` table that sets only some keys keeps the defaults of the
    /// others (serde would take them from an empty `ProviderConfig`).
    pub fn fill_defaults(&mut self) {
        let defaults = Providers::default();
        for (mine, default) in [
            (&mut self.openai, defaults.openai),
            (&mut self.anthropic, defaults.anthropic),
            (&mut self.gemini, defaults.gemini),
        ] {
            if mine.base_url.is_empty() {
                mine.base_url = default.base_url;
            }
            if mine.api_key_env.is_empty() {
                mine.api_key_env = default.api_key_env;
            }
        }
    }
}

impl Timeouts {
    pub fn connect(&self) -> Duration {
        Duration::from_millis(self.connect_ms)
    }
    pub fn first_byte(&self) -> Duration {
        Duration::from_millis(self.first_byte_ms)
    }
    pub fn between_chunks(&self) -> Duration {
        Duration::from_millis(self.between_chunks_ms)
    }
    pub fn shutdown_grace(&self) -> Duration {
        Duration::from_millis(self.shutdown_grace_ms)
    }
    pub fn drain_delay(&self) -> Duration {
        Duration::from_millis(self.drain_delay_ms)
    }
}

/// `$XDG_DATA_HOME/meshgate` (e.g. `~/.local/share/meshgate`), else `./meshgate-data`.
pub fn default_data_dir() -> PathBuf {
    std::env::var_os("XDG_DATA_HOME")
        .map(PathBuf::from)
        .or_else(|| std::env::var_os("HOME").map(|h| PathBuf::from(h).join(".local/share")))
        .map(|d| d.join("meshgate"))
        .unwrap_or_else(|| PathBuf::from("meshgate-data"))
}

#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config {path}: {source}")]
    Parse {
        path: PathBuf,
        source: toml::de::Error,
    },
    #[error("invalid value {value:?} in {var}: {reason}")]
    Env {
        var: &'static str,
        value: String,
        reason: String,
    },
}

impl Config {
    /// Reads `path` (if given) over the defaults, then applies environment overrides.
    pub fn load(path: Option<&Path>) -> Result<Config, ConfigError> {
        let mut config = match path {
            Some(path) => {
                let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
                    path: path.to_path_buf(),
                    source,
                })?;
                let mut config: Config =
                    toml::from_str(&text).map_err(|source| ConfigError::Parse {
                        path: path.to_path_buf(),
                        source,
                    })?;
                // Relative pricing files are relative to the config file.
                let base = path.parent().unwrap_or(Path::new("."));
                for file in &mut config.pricing.files {
                    if file.is_relative() {
                        *file = base.join(&*file);
                    }
                }
                config
            }
            None => Config::default(),
        };
        config.providers.fill_defaults();
        config.apply_env(|name| std::env::var(name).ok())?;
        Ok(config)
    }

    /// Environment overrides: `MESHGATE_LISTEN`, `MESHGATE_DATA_DIR`, `MESHGATE_DATABASE_URL`,
    /// `MESHGATE_REDIS_URL`,
    /// `MESHGATE_PUBLIC_URL`, `MESHGATE_OPENAI_BASE_URL`, `MESHGATE_ANTHROPIC_BASE_URL`,
    /// `MESHGATE_MAX_BODY_BYTES`, `MESHGATE_THREADS`.
    pub fn apply_env(&mut self, get: impl Fn(&str) -> Option<String>) -> Result<(), ConfigError> {
        if let Some(v) = get("MESHGATE_LISTEN") {
            self.listen = v
                .parse()
                .map_err(|e: std::net::AddrParseError| ConfigError::Env {
                    var: "MESHGATE_LISTEN",
                    value: v.clone(),
                    reason: e.to_string(),
                })?;
        }
        if let Some(v) = get("MESHGATE_DATA_DIR") {
            self.data_dir = PathBuf::from(v);
        }
        if let Some(v) = get("MESHGATE_DATABASE_URL") {
            self.database_url = v;
        }
        if let Some(v) = get("MESHGATE_REDIS_URL") {
            self.redis_url = v;
        }
        if let Some(v) = get("MESHGATE_PUBLIC_URL") {
            self.public_url = v;
        }
        if let Some(v) = get("MESHGATE_OPENAI_BASE_URL") {
            self.providers.openai.base_url = v;
        }
        if let Some(v) = get("MESHGATE_ANTHROPIC_BASE_URL") {
            self.providers.anthropic.base_url = v;
        }
        if let Some(v) = get("MESHGATE_GEMINI_BASE_URL") {
            self.providers.gemini.base_url = v;
        }
        if let Some(v) = get("MESHGATE_MAX_BODY_BYTES") {
            self.limits.max_body_bytes =
                v.parse()
                    .map_err(|e: std::num::ParseIntError| ConfigError::Env {
                        var: "MESHGATE_MAX_BODY_BYTES",
                        value: v.clone(),
                        reason: e.to_string(),
                    })?;
        }
        if let Some(v) = get("MESHGATE_THREADS") {
            self.server.threads =
                v.parse()
                    .map_err(|e: std::num::ParseIntError| ConfigError::Env {
                        var: "MESHGATE_THREADS",
                        value: v.clone(),
                        reason: e.to_string(),
                    })?;
        }
        Ok(())
    }

    /// The secret key file actually used.
    pub fn secret_key_file(&self) -> PathBuf {
        self.auth
            .secret_key_file
            .clone()
            .unwrap_or_else(|| self.data_dir.join("secret.key"))
    }

    /// The database URL actually used.
    pub fn database_url(&self) -> String {
        if self.database_url.is_empty() {
            format!("sqlite://{}", self.data_dir.join("meshgate.db").display())
        } else {
            self.database_url.clone()
        }
    }
}

/// Hides a password in a database URL.
pub fn redact_url(url: &str) -> String {
    match (url.find("://"), url.rfind('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            let creds = &url[scheme + 3..at];
            match creds.split_once(':') {
                Some((user, _)) => format!("{}{user}:***{}", &url[..scheme + 3], &url[at..]),
                None => url.to_string(),
            }
        }
        _ => url.to_string(),
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn redacts_passwords() {
        assert_eq!(
            super::redact_url("postgres://u:secret@h/db"),
            "postgres://u:***@h/db"
        );
        assert_eq!(super::redact_url("sqlite:///x/y.db"), "sqlite:///x/y.db");
    }

    use super::*;

    #[test]
    fn defaults_need_nothing() {
        let c = Config::default();
        assert_eq!(c.listen.to_string(), "127.0.0.1:8787");
        assert!(c.database_url().starts_with("sqlite://"));
        assert_eq!(c.providers.openai.api_key_env, "OPENAI_API_KEY");
    }

    #[test]
    fn file_and_env_override_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshgate.toml");
        std::fs::write(
            &path,
            "listen = \"127.0.0.1:9000\"\n[timeouts]\nconnect_ms = 5\n[pricing]\nfiles = [\"p.toml\"]\n",
        )
        .unwrap();
        let mut c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.listen.port(), 9000);
        assert_eq!(c.timeouts.connect_ms, 5);
        assert_eq!(c.timeouts.first_byte_ms, 600_000);
        assert_eq!(c.pricing.files[0], dir.path().join("p.toml"));
        c.apply_env(|k| (k == "MESHGATE_LISTEN").then(|| "127.0.0.1:9100".to_string()))
            .unwrap();
        assert_eq!(c.listen.port(), 9100);
        assert!(c
            .apply_env(|k| (k == "MESHGATE_LISTEN").then(|| "nope".to_string()))
            .is_err());
    }

    #[test]
    fn a_partial_provider_table_keeps_the_other_defaults() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshgate.toml");
        std::fs::write(&path, "[providers.openai]\nbase_url = \"http://x/v1\"\n").unwrap();
        let c = Config::load(Some(&path)).unwrap();
        assert_eq!(c.providers.openai.base_url, "http://x/v1");
        assert_eq!(c.providers.openai.api_key_env, "OPENAI_API_KEY");
        assert_eq!(c.providers.anthropic.base_url, "https://api.anthropic.com");
    }

    #[test]
    fn unknown_keys_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("meshgate.toml");
        std::fs::write(&path, "lisen = \"127.0.0.1:9000\"\n").unwrap();
        assert!(matches!(
            Config::load(Some(&path)),
            Err(ConfigError::Parse { .. })
        ));
    }

    #[test]
    fn an_azure_deployment_parses() {
        let text = r#"
[[providers.deployments]]
name = "azure-east"
provider = "azure"
base_url = "https://east.openai.azure.com"
api_key_env = "AZURE_OPENAI_API_KEY"
azure_deployment = "prod-4o-mini"
models = ["gpt-4o-mini"]
"#;
        let c: Config = toml::from_str(text).unwrap();
        let d = &c.providers.deployments[0];
        assert_eq!(d.provider, "azure");
        assert_eq!(d.azure_deployment.as_deref(), Some("prod-4o-mini"));
        assert_eq!(d.api_version, None);
        assert_eq!(d.weight, 1);
    }

    #[test]
    fn example_config_parses() {
        let example = concat!(env!("CARGO_MANIFEST_DIR"), "/../../meshgate.example.toml");
        let text = std::fs::read_to_string(example).unwrap();
        let _: Config = toml::from_str(&text).unwrap();
    }
}
