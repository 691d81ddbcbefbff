//! `AppState`: what every request shares (config, providers, key cache, prices, ledger),
//! built once at start.

use crate::auth::{self, KeyCache};
use crate::budget::Budgets;
use crate::config::Config;
use crate::conn::Pool;
use crate::degraded::LocalLimits;
use crate::ledger::Ledger;
use crate::limits::RateLimiter;
use crate::owners::Owners;
use crate::routing::{BreakerPolicy, Deployment, Health, Router};
use crate::secrets::{SecretKey, SECRET_KEY_ENV};
use crate::shared::Shared;
use crate::tenants::Tenants;
use crate::upstream::{self, Provider};
use anyhow::Context;
use http::HeaderMap;
use meshgate_pricing::Catalog;
use meshgate_store::Store;
use meshgate_types::Surface;
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::Arc;
use tokio::task::JoinHandle;

pub struct AppState {
    pub config: Config,
    pub pool: Arc<Pool>,
    pub keys: KeyCache,
    pub catalog: Arc<Catalog>,
    pub ledger: Ledger,
    pub store: Arc<dyn Store>,
    pub openai: Provider,
    pub anthropic: Provider,
    pub gemini: Provider,
    /// SHA-256 of the admin token.
    pub admin_token_hash: String,
    pub tenants: Tenants,
    pub budgets: Arc<Budgets>,
    pub rate_limits: Arc<RateLimiter>,
    /// Seals provider keys and signing secrets at rest.
    pub secrets: Arc<SecretKey>,
    /// Signs and verifies delegations.
    pub delegation_secret: Vec<u8>,
    /// Verifies OAuth access tokens, when an issuer is configured.
    pub oauth: Option<Arc<meshgate_tokens::OidcVerifier>>,
    /// Which project created each batch and stored response.
    pub owners: Arc<Owners>,
    /// Deployments, aliases, fallbacks and provider health.
    pub router: Arc<Router>,
    /// The Redis a fleet shares, when configured (for readiness).
    pub hot: Option<Arc<crate::hot::RedisHot>>,
    /// With `redis_unavailable = "local"`: the limits used while Redis is away.
    pub local_limits: Option<Arc<LocalLimits>>,
    /// Set at SIGTERM: `/readyz` answers 503 while calls drain.
    pub draining: Arc<AtomicBool>,
}

/// The admin token and whether it was made just now (then it is shown once).
pub struct AdminToken {
    pub token: Option<String>,
    pub saved_at: Option<std::path::PathBuf>,
    pub created: bool,
}

const ADMIN_SETTING: &str = "admin_token_sha256";

impl AppState {
    /// Opens the store, loads prices and keys, and starts the ledger writer.
    pub async fn build(
        config: Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<(Arc<AppState>, JoinHandle<()>, AdminToken)> {
        std::fs::create_dir_all(&config.data_dir)
            .with_context(|| format!("cannot create data dir {}", config.data_dir.display()))?;
        let store = meshgate_store::open_url(&config.database_url())
            .await
            .with_context(|| {
                format!(
                    "cannot open database {}",
                    crate::config::redact_url(&config.database_url())
                )
            })?;
        let catalog = Arc::new(load_catalog(&config)?);
        let keys = KeyCache::default();
        keys.replace_all(&store.active_keys().await?);
        let admin = admin_token(store.as_ref(), &config.data_dir, env).await?;
        let admin_token_hash = match &admin.token {
            Some(t) => auth::hash_secret(t),
            None => store
                .get_setting(ADMIN_SETTING)
                .await?
                .context("admin token hash missing")?,
        };
        // What a crash left unwritten goes in before budgets and credits are read.
        let spool_dir = config.data_dir.join("spool");
        let fallback = config.data_dir.join("unwritten-usage-events.jsonl");
        let replayed = crate::spool::replay(
            store.as_ref(),
            &spool_dir,
            &fallback,
            config.ledger.batch_size,
        )
        .await
        .context("cannot write the usage events a previous run left in the spool")?;
        if replayed > 0 {
            tracing::info!(
                events = replayed,
                "wrote usage events left by a previous run"
            );
        }
        // Then the calls a crash cut off: those noted in flight without an event by now.
        let inflight_dir = config.data_dir.join("inflight");
        let interrupted =
            crate::inflight::replay(store.as_ref(), &inflight_dir, config.ledger.batch_size)
                .await
                .context("cannot write the events of calls a previous run left in flight")?;
        if interrupted > 0 {
            tracing::warn!(
                calls = interrupted,
                "a previous run stopped with calls in flight; wrote them as interrupted"
            );
        }
        let spool = match config.ledger.spool {
            crate::spool::SpoolMode::Off => None,
            mode => Some((
                crate::spool::Spool::create(&spool_dir)
                    .with_context(|| format!("cannot open the spool in {}", spool_dir.display()))?,
                mode,
            )),
        };
        let (ledger, ledger_task) = Ledger::start(
            store.clone(),
            config.ledger.batch_size,
            std::time::Duration::from_millis(config.ledger.flush_interval_ms),
            fallback,
            spool,
        )
        .context("cannot start the ledger writer")?;
        let ledger = match config.ledger.spool {
            crate::spool::SpoolMode::Off => ledger,
            _ => ledger.with_journal(
                crate::inflight::Journal::create(&inflight_dir).with_context(|| {
                    format!(
                        "cannot open the in-flight journal in {}",
                        inflight_dir.display()
                    )
                })?,
            ),
        };
        let secrets = SecretKey::load(env(SECRET_KEY_ENV).as_deref(), &config.secret_key_file())?;
        let tenants = Tenants::load(store.as_ref(), &secrets).await?;
        let oauth = config.auth.oauth.as_ref().map(|o| {
            meshgate_tokens::OidcVerifier::new(meshgate_tokens::OidcConfig {
                issuer: o.issuer.clone(),
                audience: o.audience.clone(),
                jwks_url: o.jwks_url.clone(),
                required_scope: o.scope.clone(),
                leeway_secs: config.auth.leeway_secs,
                min_refresh_interval: std::time::Duration::from_secs(10),
            })
        });
        let oauth = oauth
            .transpose()
            .context("invalid [auth.oauth] settings")?
            .map(Arc::new);
        let shared = shared_state(&config).await?;
        // Redis, when it holds the fleet's limits: /readyz and the `local` fallback watch it.
        let hot = match &shared {
            Some(crate::shared::Shared::Redis(hot)) => Some(hot.clone()),
            _ => None,
        };
        let (budgets, rate_limits) = match shared {
            Some(shared) => (
                Budgets::shared(store.clone(), shared.clone()),
                RateLimiter::shared(shared),
            ),
            None if config.database_url().starts_with("postgres") => (
                Budgets::new(store.clone()).following_announced_credits(),
                RateLimiter::default(),
            ),
            None => (Budgets::new(store.clone()), RateLimiter::default()),
        };
        let local_limits = (hot.is_some()
            && config.redis_unavailable == crate::config::RedisUnavailable::Local)
            .then(|| Arc::new(LocalLimits::new(store.clone())));
        let pool = upstream::build_pool(&config)?;
        let openai =
            Provider::from_config("openai", Surface::OpenAi, &config.providers.openai, env);
        let anthropic = Provider::from_config(
            "anthropic",
            Surface::Anthropic,
            &config.providers.anthropic,
            env,
        );
        let gemini = Provider::gemini(&config.providers.gemini, env);
        let owners = Arc::new(Owners::new(ledger.clone(), store.clone()));
        let router = Arc::new(build_router(&config, &[&openai, &anthropic, &gemini], env)?);
        let state = AppState {
            owners,
            router,
            config,
            pool,
            keys,
            catalog,
            ledger,
            store: store.clone(),
            openai,
            anthropic,
            gemini,
            admin_token_hash,
            tenants,
            budgets: Arc::new(budgets),
            rate_limits: Arc::new(rate_limits),
            delegation_secret: secrets.derive("meshgate delegation v1"),
            secrets: Arc::new(secrets),
            oauth,
            hot,
            local_limits,
            draining: Arc::default(),
        };
        Ok((Arc::new(state), ledger_task, admin))
    }

    /// The same state with a provider pool of its own, for one serving thread.
    pub fn for_thread(&self) -> Arc<AppState> {
        Arc::new(AppState {
            config: self.config.clone(),
            pool: self.pool.sibling(),
            keys: self.keys.clone(),
            catalog: self.catalog.clone(),
            ledger: self.ledger.clone(),
            store: self.store.clone(),
            openai: self.openai.clone(),
            anthropic: self.anthropic.clone(),
            gemini: self.gemini.clone(),
            admin_token_hash: self.admin_token_hash.clone(),
            tenants: self.tenants.clone(),
            budgets: self.budgets.clone(),
            rate_limits: self.rate_limits.clone(),
            secrets: self.secrets.clone(),
            delegation_secret: self.delegation_secret.clone(),
            oauth: self.oauth.clone(),
            owners: self.owners.clone(),
            router: self.router.clone(),
            hot: self.hot.clone(),
            local_limits: self.local_limits.clone(),
            draining: self.draining.clone(),
        })
    }

    pub fn provider(&self, surface: Surface) -> &Provider {
        match surface {
            Surface::OpenAi => &self.openai,
            Surface::Anthropic => &self.anthropic,
        }
    }

    /// The built-in provider called `name` (`openai`, `anthropic` or `gemini`).
    pub fn provider_named(&self, name: &str) -> &Provider {
        match name {
            "anthropic" => &self.anthropic,
            "gemini" => &self.gemini,
            _ => &self.openai,
        }
    }

    /// The base URL clients use to reach meshgate: `public_url`, else `http://<Host>`.
    pub fn public_base(&self, headers: &HeaderMap) -> String {
        if !self.config.public_url.is_empty() {
            return self.config.public_url.trim_end_matches('/').to_string();
        }
        let host = headers
            .get(http::header::HOST)
            .and_then(|v| v.to_str().ok())
            .map(str::to_string)
            .unwrap_or_else(|| self.config.listen.to_string());
        format!("http://{host}")
    }
}

/// Where the fleet shares rate limits, budgets and credits: Redis when `redis_url` is set;
/// else the database when it is PostgreSQL (unless `postgres_limits = false`); else `None`,
/// this instance's memory (SQLite: one instance).
async fn shared_state(config: &Config) -> anyhow::Result<Option<Shared>> {
    if !config.redis_url.is_empty() {
        let hot = crate::hot::RedisHot::connect(&config.redis_url, &config.redis_prefix)
            .await
            .with_context(|| {
                format!(
                    "cannot connect to Redis at {}",
                    crate::config::redact_url(&config.redis_url)
                )
            })?;
        return Ok(Some(Arc::new(hot).into()));
    }
    let url = config.database_url();
    if !url.starts_with("postgres") || !config.postgres_limits {
        return Ok(None);
    }
    let hot = crate::pghot::PgHot::connect(&url).await.with_context(|| {
        format!(
            "cannot connect to PostgreSQL at {} for shared limits",
            crate::config::redact_url(&url)
        )
    })?;
    Ok(Some(Arc::new(hot).into()))
}

/// The deployments: the built-in providers and the configured extra ones. A built-in
/// provider whose key is unset is left out when another deployment speaks its API (Azure
/// deployments speak OpenAI's).
fn build_router(
    config: &Config,
    builtins: &[&Provider],
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<Router> {
    let r = &config.routing;
    let policy = BreakerPolicy::from_config(r);
    let health = || Health::with_policy(policy);
    let mut extra = Vec::new();
    for d in &config.providers.deployments {
        let settings = crate::config::ProviderConfig {
            base_url: d.base_url.clone(),
            api_key_env: d.api_key_env.clone(),
        };
        let azure_only = d.api_version.is_some() || d.azure_deployment.is_some();
        let provider = match d.provider.as_str() {
            "azure" => Provider::azure(&settings, azure_settings(d)?, env),
            "openai" | "anthropic" | "gemini" if azure_only => anyhow::bail!(
                "deployment {}: api_version and azure_deployment are for provider \"azure\" only",
                d.name
            ),
            "openai" => Provider::from_config("openai", Surface::OpenAi, &settings, env),
            "anthropic" => Provider::from_config("anthropic", Surface::Anthropic, &settings, env),
            "gemini" => Provider::gemini(&settings, env),
            other => anyhow::bail!(
                "deployment {}: provider must be openai, anthropic, gemini or azure, not {other:?}",
                d.name
            ),
        };
        extra.push(Arc::new(Deployment {
            name: d.name.clone(),
            provider,
            weight: d.weight,
            models: d.models.clone(),
            health: health(),
        }));
    }
    let mut deployments = Vec::new();
    for builtin in builtins.iter().copied() {
        let replaced = extra.iter().any(|d| d.provider.name == builtin.name);
        if builtin.api_key.is_some() || !replaced {
            deployments.push(Arc::new(Deployment {
                name: builtin.name.to_string(),
                provider: builtin.clone(),
                weight: 1,
                models: None,
                health: health(),
            }));
        }
    }
    deployments.extend(extra);
    Ok(Router {
        deployments,
        config: r.clone(),
    })
}

/// The Azure settings of a `provider = "azure"` deployment, checked.
fn azure_settings(d: &crate::config::DeploymentConfig) -> anyhow::Result<upstream::Azure> {
    let api_version = match d.api_version.as_deref() {
        None => Some(upstream::AZURE_DEFAULT_API_VERSION.to_string()),
        Some("v1") => None,
        Some(v) if !v.is_empty() && v.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-') => {
            Some(v.to_string())
        }
        Some(v) => anyhow::bail!("deployment {}: invalid api_version {v:?}", d.name),
    };
    if let Some(name) = &d.azure_deployment {
        if !upstream::valid_azure_deployment(name) {
            anyhow::bail!(
                "deployment {}: azure_deployment {name:?} must be letters, digits, '-', '_' or '.'",
                d.name
            );
        }
        if api_version.is_none() {
            // The v1 API takes the deployment from the body's `model`, which meshgate
            // forwards as the client sent it.
            anyhow::bail!(
                "deployment {}: azure_deployment needs a dated api_version (with \"v1\", the \
                 model asked for is the deployment name)",
                d.name
            );
        }
    }
    Ok(upstream::Azure {
        api_version,
        deployment: d.azure_deployment.clone(),
    })
}

/// The built-in catalog, then each pricing file in order (later ones win).
pub fn load_catalog(config: &Config) -> anyhow::Result<Catalog> {
    let mut catalog = Catalog::builtin().context("the built-in price catalog is invalid")?;
    for file in &config.pricing.files {
        let is_json = file
            .extension()
            .is_some_and(|e| e.eq_ignore_ascii_case("json"));
        let loaded = if is_json {
            catalog.load_litellm_json(file)
        } else {
            catalog.load_toml(file)
        };
        loaded.with_context(|| format!("cannot load pricing file {}", file.display()))?;
    }
    Ok(catalog)
}

/// `MESHGATE_ADMIN_TOKEN` if set; else the stored one; else a new one, saved (mode 0600)
/// in the data dir so that the local CLI finds it.
async fn admin_token(
    store: &dyn Store,
    data_dir: &Path,
    env: &dyn Fn(&str) -> Option<String>,
) -> anyhow::Result<AdminToken> {
    let path = data_dir.join("admin-token");
    if let Some(token) = env("MESHGATE_ADMIN_TOKEN").filter(|t| !t.is_empty()) {
        return Ok(AdminToken {
            token: Some(token),
            saved_at: None,
            created: false,
        });
    }
    if store.get_setting(ADMIN_SETTING).await?.is_some() {
        return Ok(AdminToken {
            token: std::fs::read_to_string(&path)
                .ok()
                .map(|t| t.trim().to_string()),
            saved_at: path.exists().then_some(path),
            created: false,
        });
    }
    let token = auth::generate_admin_token();
    write_private(&path, &token)?;
    store
        .set_setting(ADMIN_SETTING, &auth::hash_secret(&token))
        .await?;
    Ok(AdminToken {
        token: Some(token),
        saved_at: Some(path),
        created: true,
    })
}

/// Writes a secret readable by its owner only.
pub fn write_private(path: &Path, secret: &str) -> anyhow::Result<()> {
    write_private_exact(path, &format!("{secret}\n"))
}

/// Writes `text` byte for byte; a file created here is readable by its owner only (an
/// existing file keeps its mode).
pub fn write_private_exact(path: &Path, text: &str) -> anyhow::Result<()> {
    use std::io::Write;
    let mut options = std::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    {
        use std::os::unix::fs::OpenOptionsExt;
        options.mode(0o600);
    }
    let mut file = options
        .open(path)
        .with_context(|| format!("cannot write {}", path.display()))?;
    file.write_all(text.as_bytes())?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::DeploymentConfig;

    fn with(d: DeploymentConfig) -> anyhow::Result<Router> {
        let mut config = Config::default();
        config.providers.deployments = vec![d];
        let env = |_: &str| Some("k".to_string());
        let openai =
            Provider::from_config("openai", Surface::OpenAi, &config.providers.openai, &env);
        let anthropic = Provider::from_config(
            "anthropic",
            Surface::Anthropic,
            &config.providers.anthropic,
            &env,
        );
        build_router(&config, &[&openai, &anthropic], &env)
    }

    fn deployment(provider: &str) -> DeploymentConfig {
        DeploymentConfig {
            name: "d".into(),
            provider: provider.into(),
            base_url: "https://east.openai.azure.com".into(),
            api_key_env: "K".into(),
            weight: 1,
            models: None,
            api_version: None,
            azure_deployment: None,
        }
    }

    #[test]
    fn azure_settings_are_checked() {
        let router = with(deployment("azure")).unwrap();
        let azure = router.deployments[2].provider.azure.clone().unwrap();
        assert_eq!(azure.api_version.as_deref(), Some("2024-10-21"));
        assert_eq!(router.deployments[2].provider.name, "openai");
        let bad = [
            DeploymentConfig {
                azure_deployment: Some("x".into()),
                ..deployment("openai")
            },
            DeploymentConfig {
                azure_deployment: Some("a/b".into()),
                ..deployment("azure")
            },
            DeploymentConfig {
                api_version: Some("v1".into()),
                azure_deployment: Some("prod".into()),
                ..deployment("azure")
            },
            DeploymentConfig {
                api_version: Some("2024-10-21&x=1".into()),
                ..deployment("azure")
            },
            deployment("azur"),
        ];
        for d in bad {
            assert!(with(d.clone()).is_err(), "{d:?}");
        }
    }
}
