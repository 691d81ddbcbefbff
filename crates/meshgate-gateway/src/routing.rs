//! The route phase: which models and deployments may serve a call, in order. A model name
//! may carry its provider (`openai/gpt-4o`), be an alias from config (one model or an
//! ordered list), or come with `models: [...]` and `route: "fallback"` in the request body;
//! config may add fallback chains per model. Each model is served by the deployments of its
//! provider, chosen by weight among the healthy ones (see [`Health`]).
//!
//! Azure OpenAI deployments are deployments of provider `openai`: OpenAI's models, API and
//! prices, reached at Azure. One without a fixed Azure deployment name gets a per-call
//! copy named after the model, sharing the original's health.

use crate::config::RoutingConfig;
use crate::upstream::Provider;
use meshgate_types::Surface;
use rand::Rng;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

/// One deployment of a provider: where it is, its key, its weight and its health.
pub struct Deployment {
    /// Name in config and in usage events (`openai` and `anthropic` for the built-in ones).
    pub name: String,
    pub provider: Provider,
    pub weight: u32,
    /// Models it serves (`None`: all its provider's).
    pub models: Option<Vec<String>>,
    pub health: Health,
}

impl Deployment {
    fn serves(&self, model: &str) -> bool {
        if let Some(azure) = &self.provider.azure {
            // Without a fixed deployment the model name goes in the URL path as it is.
            let in_path = azure.deployment.is_none() && azure.api_version.is_some();
            if in_path && !model.is_empty() && !crate::upstream::valid_azure_deployment(model) {
                return false;
            }
        }
        meshgate_tokens::model_allowed(self.models.as_deref(), self.provider.name, model)
    }

    /// The deployment that sends `model` where it belongs: an Azure deployment that names
    /// no Azure deployment of its own sends it to the one called like the model.
    fn for_model(self: &Arc<Self>, model: &str) -> Arc<Deployment> {
        match &self.provider.azure {
            Some(azure)
                if azure.deployment.is_none()
                    && azure.api_version.is_some()
                    && !model.is_empty() =>
            {
                Arc::new(Deployment {
                    name: self.name.clone(),
                    provider: self.provider.for_azure_model(model),
                    weight: self.weight,
                    models: self.models.clone(),
                    health: self.health.clone(),
                })
            }
            _ => self.clone(),
        }
    }
}

/// A model to try, in order.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Candidate {
    /// `openai`, `anthropic` or `gemini`.
    pub provider: &'static str,
    pub model: String,
}

/// Every deployment and the routing rules.
pub struct Router {
    pub deployments: Vec<Arc<Deployment>>,
    pub config: RoutingConfig,
}

fn provider_of(surface: Surface) -> &'static str {
    match surface {
        Surface::OpenAi => "openai",
        Surface::Anthropic => "anthropic",
    }
}

/// Splits `provider/model`; a name without a known provider prefix is the surface's.
fn split_model(name: &str, surface: Surface) -> Candidate {
    for provider in ["openai", "anthropic", "gemini"] {
        if let Some(model) = name
            .strip_prefix(provider)
            .and_then(|r| r.strip_prefix('/'))
        {
            return Candidate {
                provider,
                model: model.to_string(),
            };
        }
    }
    Candidate {
        provider: provider_of(surface),
        model: name.to_string(),
    }
}

impl Router {
    /// The models to try for a call that asked for `requested` (and, with
    /// `route: "fallback"`, for `body_models` after it), aliases and config fallbacks
    /// expanded, duplicates removed, in order.
    pub fn plan(
        &self,
        surface: Surface,
        requested: &str,
        body_models: &[String],
    ) -> Vec<Candidate> {
        let mut names: Vec<String> = Vec::new();
        for name in std::iter::once(requested).chain(body_models.iter().map(String::as_str)) {
            match self.config.aliases.get(name) {
                Some(targets) => names.extend(targets.list()),
                None => names.push(name.to_string()),
            }
        }
        let mut out: Vec<Candidate> = Vec::new();
        let mut push = |c: Candidate| {
            if !out.contains(&c) {
                out.push(c);
            }
        };
        for name in &names {
            push(split_model(name, surface));
        }
        // Config fallbacks of every model named so far, after them.
        for name in &names {
            let bare = split_model(name, surface).model;
            for fallback in self
                .config
                .fallbacks
                .get(name.as_str())
                .or_else(|| self.config.fallbacks.get(bare.as_str()))
                .into_iter()
                .flatten()
            {
                push(split_model(fallback, surface));
            }
        }
        out
    }

    /// The deployments that may serve `candidate`, best first: healthy ones in weighted
    /// random order, then those whose breaker is open (tried only when nothing else is left
    /// in the whole plan: see [`Health::allow`]).
    pub fn deployments_for(&self, candidate: &Candidate) -> Vec<Arc<Deployment>> {
        let mut pool: Vec<Arc<Deployment>> = self
            .deployments
            .iter()
            .filter(|d| d.provider.name == candidate.provider && d.serves(&candidate.model))
            .map(|d| d.for_model(&candidate.model))
            .collect();
        let mut ordered = Vec::with_capacity(pool.len());
        let mut rng = rand::rng();
        while !pool.is_empty() {
            let total: u64 = pool.iter().map(|d| u64::from(d.weight.max(1))).sum();
            let mut pick = rng.random_range(0..total);
            let index = pool
                .iter()
                .position(|d| {
                    let w = u64::from(d.weight.max(1));
                    if pick < w {
                        true
                    } else {
                        pick -= w;
                        false
                    }
                })
                .unwrap_or(0);
            ordered.push(pool.swap_remove(index));
        }
        ordered.sort_by_key(|d| !d.health.available());
        ordered
    }

    /// The wait before the next attempt: exponential with full jitter, at least what the
    /// provider asked for in `retry-after` (capped by `max_backoff_ms`).
    pub fn backoff(&self, attempt: u32, retry_after: Option<Duration>) -> Duration {
        let base = self.config.retry_backoff_ms.max(1);
        let cap = self.config.max_backoff_ms.max(base);
        let exp = base.saturating_mul(1u64 << attempt.min(16)).min(cap);
        let jittered = rand::rng().random_range(0..=exp);
        let wait = Duration::from_millis(jittered);
        match retry_after {
            Some(r) => wait.max(r).min(Duration::from_millis(cap)),
            None => wait,
        }
    }
}

/// Passive health of one deployment: a circuit breaker over consecutive failures (open
/// after `breaker_failures`, one half-open probe after `breaker_cooldown_ms`, closed by a
/// success), plus counters and a latency average for the health endpoint. Clones share
/// one state.
#[derive(Clone)]
pub struct Health {
    state: Arc<Mutex<HealthState>>,
    failures_to_open: u32,
    cooldown: Duration,
}

#[derive(Debug, Default, Clone)]
struct HealthState {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
    requests: u64,
    failures: u64,
    latency_ewma_ms: f64,
}

/// What the health endpoint shows of one deployment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthReport {
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    pub latency_ewma_ms: f64,
}

impl Health {
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Health {
            state: Arc::new(Mutex::new(HealthState::default())),
            failures_to_open: failures_to_open.max(1),
            cooldown,
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HealthState> {
        self.state
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// Closed, or open long enough that a probe may go (without claiming it).
    pub fn available(&self) -> bool {
        let s = self.lock();
        match s.opened_at {
            None => true,
            Some(at) => !s.probing && at.elapsed() >= self.cooldown,
        }
    }

    /// Whether a call may go to this deployment now; a half-open breaker lets exactly one
    /// probe through.
    pub fn allow(&self) -> bool {
        let mut s = self.lock();
        match s.opened_at {
            None => true,
            Some(at) if !s.probing && at.elapsed() >= self.cooldown => {
                s.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    pub fn on_success(&self, latency: Duration) {
        let mut s = self.lock();
        s.requests += 1;
        s.consecutive_failures = 0;
        s.opened_at = None;
        s.probing = false;
        let ms = latency.as_secs_f64() * 1000.0;
        s.latency_ewma_ms = if s.requests == 1 {
            ms
        } else {
            0.8 * s.latency_ewma_ms + 0.2 * ms
        };
    }

    pub fn on_failure(&self) {
        let mut s = self.lock();
        s.requests += 1;
        s.failures += 1;
        s.consecutive_failures += 1;
        if s.probing || s.consecutive_failures >= self.failures_to_open {
            s.opened_at = Some(Instant::now());
            s.probing = false;
        }
    }

    pub fn report(&self) -> HealthReport {
        let s = self.lock().clone();
        let state = match s.opened_at {
            None => "closed",
            Some(_) if s.probing => "half_open",
            Some(at) if at.elapsed() >= self.cooldown => "half_open",
            Some(_) => "open",
        };
        HealthReport {
            state,
            consecutive_failures: s.consecutive_failures,
            requests: s.requests,
            failures: s.failures,
            latency_ewma_ms: (s.latency_ewma_ms * 10.0).round() / 10.0,
        }
    }
}

/// Whether an upstream status is worth another candidate: 429, 5xx and Anthropic's 529.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AliasTarget, RoutingConfig};

    fn router(config: RoutingConfig) -> Router {
        Router {
            deployments: Vec::new(),
            config,
        }
    }

    #[test]
    fn plans_expand_prefixes_aliases_and_fallbacks() {
        let mut config = RoutingConfig::default();
        config.aliases.insert(
            "fast".into(),
            AliasTarget::Many(vec!["openai/gpt-4o-mini".into(), "gpt-4.1-mini".into()]),
        );
        config
            .fallbacks
            .insert("gpt-4o".into(), vec!["gpt-4o-mini".into()]);
        let r = router(config);
        let names = |plan: Vec<Candidate>| {
            plan.into_iter()
                .map(|c| format!("{}/{}", c.provider, c.model))
                .collect::<Vec<_>>()
        };
        assert_eq!(
            names(r.plan(Surface::OpenAi, "fast", &[])),
            ["openai/gpt-4o-mini", "openai/gpt-4.1-mini"]
        );
        assert_eq!(
            names(r.plan(Surface::OpenAi, "openai/gpt-4o", &["fast".into()])),
            ["openai/gpt-4o", "openai/gpt-4o-mini", "openai/gpt-4.1-mini"]
        );
        assert_eq!(
            names(r.plan(Surface::Anthropic, "claude-haiku-4-5", &[])),
            ["anthropic/claude-haiku-4-5"]
        );
    }

    #[test]
    fn azure_deployments_serve_openai_candidates_under_their_names() {
        use crate::config::ProviderConfig;
        use crate::upstream::{Azure, Provider};
        let settings = ProviderConfig {
            base_url: "https://east.openai.azure.com/".into(),
            api_key_env: "K".into(),
        };
        let azure = |deployment: Option<&str>, models: &[&str]| {
            Arc::new(Deployment {
                name: format!("az-{}", deployment.unwrap_or("any")),
                provider: Provider::azure(
                    &settings,
                    Azure {
                        api_version: Some("2024-10-21".into()),
                        deployment: deployment.map(str::to_string),
                    },
                    &|_| Some("k".into()),
                ),
                weight: 1,
                models: Some(models.iter().map(|m| m.to_string()).collect()),
                health: Health::new(1, Duration::from_secs(60)),
            })
        };
        let r = Router {
            deployments: vec![
                azure(Some("prod-mini"), &["gpt-4o-mini"]),
                azure(None, &["*"]),
            ],
            config: RoutingConfig::default(),
        };
        let mini = Candidate {
            provider: "openai",
            model: "gpt-4o-mini".into(),
        };
        let mut urls: Vec<String> = r
            .deployments_for(&mini)
            .iter()
            .map(|d| d.provider.url("chat/completions", None))
            .collect();
        urls.sort();
        assert_eq!(
            urls,
            [
                "https://east.openai.azure.com/openai/deployments/gpt-4o-mini/chat/completions?api-version=2024-10-21",
                "https://east.openai.azure.com/openai/deployments/prod-mini/chat/completions?api-version=2024-10-21",
            ]
        );
        // A name that cannot stand in a path is not served by name; anthropic never is.
        let odd = Candidate {
            provider: "openai",
            model: "ft:gpt-4o:org/x".into(),
        };
        assert!(r.deployments_for(&odd).is_empty());
        let claude = Candidate {
            provider: "anthropic",
            model: "claude-haiku-4-5".into(),
        };
        assert!(r.deployments_for(&claude).is_empty());
        // The per-call copy shares the original's breaker.
        let copy = r.deployments_for(&Candidate {
            provider: "openai",
            model: "gpt-4.1".into(),
        });
        copy[0].health.on_failure();
        assert_eq!(r.deployments[1].health.report().state, "open");
    }

    #[test]
    fn a_breaker_opens_probes_once_and_closes() {
        let h = Health::new(2, Duration::ZERO);
        h.on_failure();
        assert_eq!(h.report().state, "closed");
        h.on_failure();
        // Cooldown zero: open but immediately probeable, by one call only.
        assert!(h.allow());
        assert!(!h.allow());
        h.on_failure();
        assert!(
            h.allow(),
            "the failed probe reopened it; after the cooldown, a new probe"
        );
        h.on_success(Duration::from_millis(5));
        assert_eq!(h.report().state, "closed");
        assert!(h.allow() && h.allow());
        let long = Health::new(1, Duration::from_secs(3600));
        long.on_failure();
        assert!(!long.allow());
        assert_eq!(long.report().state, "open");
    }

    #[test]
    fn backoff_honours_retry_after_within_the_cap() {
        let r = router(RoutingConfig {
            retry_backoff_ms: 10,
            max_backoff_ms: 500,
            ..RoutingConfig::default()
        });
        for attempt in 0..5 {
            assert!(r.backoff(attempt, None) <= Duration::from_millis(500));
        }
        assert_eq!(
            r.backoff(0, Some(Duration::from_millis(300))),
            Duration::from_millis(300)
        );
        assert_eq!(
            r.backoff(0, Some(Duration::from_secs(60))),
            Duration::from_millis(500)
        );
    }
}
