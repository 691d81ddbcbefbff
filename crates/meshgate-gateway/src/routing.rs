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

    /// The deployments that may serve `candidate`, best first: in weighted random order,
    /// slow ones (see [`Router::slow`]) after the others, and last those whose breaker is
    /// open. The send loop asks [`Health::allow`] before each: an open deployment is skipped
    /// until its cooldown has passed (then it gets one probe), so when every breaker is
    /// open the call gets a 503 `no_healthy_deployment`.
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
        let slow: Vec<bool> = ordered.iter().map(|d| self.slow(d, &ordered)).collect();
        let mut keyed: Vec<((bool, bool), Arc<Deployment>)> = ordered
            .into_iter()
            .zip(slow)
            .map(|(d, slow)| ((!d.health.available(), slow), d))
            .collect();
        // Stable: the weighted order holds within each group.
        keyed.sort_by_key(|(key, _)| *key);
        keyed.into_iter().map(|(_, d)| d).collect()
    }

    /// Whether `d` answers slowly: its recent latency is above `slow_latency_ms` (when set),
    /// or `slow_factor` times (and at least 25 ms more than) the fastest of `siblings`. A
    /// slow deployment is tried after the others, not skipped; once its samples are older
    /// than the breaker cooldown it is judged afresh.
    pub fn slow(&self, d: &Deployment, siblings: &[Arc<Deployment>]) -> bool {
        let Some(own) = d.health.latency_ms() else {
            return false;
        };
        let absolute = self.config.slow_latency_ms;
        if absolute > 0 && own > absolute as f64 {
            return true;
        }
        let factor = self.config.slow_factor;
        if factor <= 0.0 {
            return false;
        }
        let best = siblings
            .iter()
            .filter_map(|s| s.health.latency_ms())
            .fold(f64::INFINITY, f64::min);
        own > best * factor && own - best >= MIN_SLOW_GAP_MS
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

/// When a deployment's breaker opens: after `consecutive_failures` failures in a row, or
/// when at least `error_rate` of its last `window` outcomes failed (once it has at least
/// `min_requests` of them, so one early failure does not open it). An open breaker lets
/// one probe through after `cooldown`.
#[derive(Debug, Clone, Copy)]
pub struct BreakerPolicy {
    pub consecutive_failures: u32,
    /// 0 turns the error-rate rule off.
    pub error_rate: f64,
    pub window: u32,
    pub min_requests: u32,
    pub cooldown: Duration,
}

impl BreakerPolicy {
    pub fn from_config(r: &RoutingConfig) -> Self {
        BreakerPolicy {
            consecutive_failures: r.breaker_failures,
            error_rate: r.breaker_error_rate,
            window: r.breaker_window,
            min_requests: r.breaker_min_requests,
            cooldown: Duration::from_millis(r.breaker_cooldown_ms),
        }
    }
}

/// Latency samples a deployment needs before it can be judged slow (or be the yardstick).
const MIN_LATENCY_SAMPLES: u32 = 3;
/// A deployment is not slow for being a few milliseconds behind a very fast sibling.
const MIN_SLOW_GAP_MS: f64 = 25.0;

/// Passive health of one deployment: a circuit breaker (see [`BreakerPolicy`]; closed by a
/// successful probe), the outcomes of its recent calls, counters and a latency average.
/// Clones share one state.
#[derive(Clone)]
pub struct Health {
    state: Arc<Mutex<HealthState>>,
    policy: BreakerPolicy,
}

#[derive(Debug, Default, Clone)]
struct HealthState {
    consecutive_failures: u32,
    opened_at: Option<Instant>,
    probing: bool,
    requests: u64,
    failures: u64,
    /// The last `policy.window` outcomes, oldest first (`true`: failed).
    recent: std::collections::VecDeque<bool>,
    latency_ewma_ms: f64,
    latency_samples: u32,
    last_latency_at: Option<Instant>,
}

impl HealthState {
    fn recent_failures(&self) -> usize {
        self.recent.iter().filter(|f| **f).count()
    }
}

/// What the health endpoint shows of one deployment.
#[derive(Debug, Clone, serde::Serialize)]
pub struct HealthReport {
    pub state: &'static str,
    pub consecutive_failures: u32,
    pub requests: u64,
    pub failures: u64,
    /// Failed share of the recent outcomes (`recent_requests` of them).
    pub error_rate: f64,
    pub recent_requests: u32,
    pub latency_ewma_ms: f64,
}

impl Health {
    /// A breaker over consecutive failures only.
    pub fn new(failures_to_open: u32, cooldown: Duration) -> Self {
        Health::with_policy(BreakerPolicy {
            consecutive_failures: failures_to_open,
            error_rate: 0.0,
            window: 0,
            min_requests: 0,
            cooldown,
        })
    }

    pub fn with_policy(mut policy: BreakerPolicy) -> Self {
        policy.consecutive_failures = policy.consecutive_failures.max(1);
        policy.min_requests = policy.min_requests.max(1);
        Health {
            state: Arc::new(Mutex::new(HealthState::default())),
            policy,
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
            Some(at) => !s.probing && at.elapsed() >= self.policy.cooldown,
        }
    }

    /// Whether a call may go to this deployment now; a half-open breaker lets exactly one
    /// probe through.
    pub fn allow(&self) -> bool {
        let mut s = self.lock();
        match s.opened_at {
            None => true,
            Some(at) if !s.probing && at.elapsed() >= self.policy.cooldown => {
                s.probing = true;
                true
            }
            Some(_) => false,
        }
    }

    fn record(&self, s: &mut HealthState, failed: bool) {
        s.requests += 1;
        let window = self.policy.window as usize;
        if window > 0 {
            if s.recent.len() >= window {
                s.recent.pop_front();
            }
            s.recent.push_back(failed);
        }
    }

    pub fn on_success(&self, latency: Duration) {
        let mut s = self.lock();
        self.record(&mut s, false);
        s.consecutive_failures = 0;
        if s.opened_at.take().is_some() {
            // A closed breaker starts over: the failures that opened it are history.
            s.recent.clear();
        }
        s.probing = false;
        let ms = latency.as_secs_f64() * 1000.0;
        // Samples older than the cooldown say little: start the average over.
        let stale = s
            .last_latency_at
            .is_none_or(|at| at.elapsed() >= self.policy.cooldown);
        if stale {
            s.latency_samples = 0;
        }
        s.latency_ewma_ms = if s.latency_samples == 0 {
            ms
        } else {
            0.8 * s.latency_ewma_ms + 0.2 * ms
        };
        s.latency_samples = s.latency_samples.saturating_add(1);
        s.last_latency_at = Some(Instant::now());
    }

    pub fn on_failure(&self) {
        let mut s = self.lock();
        self.record(&mut s, true);
        s.failures += 1;
        s.consecutive_failures += 1;
        let p = &self.policy;
        let error_rate_reached = p.error_rate > 0.0
            && s.recent.len() >= p.min_requests as usize
            && s.recent_failures() as f64 >= p.error_rate * s.recent.len() as f64;
        if s.probing || s.consecutive_failures >= p.consecutive_failures || error_rate_reached {
            s.opened_at = Some(Instant::now());
            s.probing = false;
            s.recent.clear();
        }
    }

    /// The latency average when it is recent and rests on enough samples to judge by.
    pub fn latency_ms(&self) -> Option<f64> {
        let s = self.lock();
        let fresh = s
            .last_latency_at
            .is_some_and(|at| at.elapsed() < self.policy.cooldown);
        (fresh && s.latency_samples >= MIN_LATENCY_SAMPLES).then_some(s.latency_ewma_ms)
    }

    pub fn report(&self) -> HealthReport {
        let s = self.lock().clone();
        let state = match s.opened_at {
            None => "closed",
            Some(_) if s.probing => "half_open",
            Some(at) if at.elapsed() >= self.policy.cooldown => "half_open",
            Some(_) => "open",
        };
        let error_rate = if s.recent.is_empty() {
            0.0
        } else {
            s.recent_failures() as f64 / s.recent.len() as f64
        };
        HealthReport {
            state,
            consecutive_failures: s.consecutive_failures,
            requests: s.requests,
            failures: s.failures,
            error_rate: (error_rate * 1000.0).round() / 1000.0,
            recent_requests: s.recent.len() as u32,
            latency_ewma_ms: (s.latency_ewma_ms * 10.0).round() / 10.0,
        }
    }
}

/// Whether an upstream status is worth another candidate: 429, 5xx and Anthropic's 529.
pub fn retryable_status(status: u16) -> bool {
    status == 429 || (500..600).contains(&status)
}

/// `retry-after` in seconds or as an HTTP date (or `retry-after-ms`, as OpenAI sends).
pub fn retry_after_of(headers: &http::HeaderMap) -> Option<Duration> {
    let text = |name: &str| headers.get(name).and_then(|v| v.to_str().ok());
    if let Some(ms) = text("retry-after-ms").and_then(|v| v.trim().parse::<f64>().ok()) {
        return Some(Duration::from_secs_f64(ms.max(0.0) / 1000.0));
    }
    let value = text("retry-after")?.trim();
    if let Ok(secs) = value.parse::<u64>() {
        return Some(Duration::from_secs(secs));
    }
    // `Wed, 21 Oct 2026 07:28:00 GMT`; a date already past asks for no wait.
    let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
    Some(
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or_default(),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::{AliasTarget, RoutingConfig};
    use http::HeaderValue;

    #[test]
    fn retry_after_is_read_in_seconds_and_as_an_http_date() {
        let of = |name: &'static str, value: &str| {
            let mut headers = http::HeaderMap::new();
            headers.insert(name, HeaderValue::from_str(value).unwrap());
            retry_after_of(&headers)
        };
        let secs = std::time::Duration::from_secs;
        assert_eq!(of("retry-after", "7"), Some(secs(7)));
        assert_eq!(
            of("retry-after-ms", "250"),
            Some(std::time::Duration::from_millis(250))
        );
        let in_ten = chrono::Utc::now() + chrono::Duration::seconds(10);
        let date = in_ten.format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let wait = of("retry-after", &date).unwrap();
        assert!(wait > secs(8) && wait <= secs(10), "{date}: {wait:?}");
        assert_eq!(
            of("retry-after", "Sun, 06 Nov 1994 08:49:37 GMT"),
            Some(std::time::Duration::ZERO)
        );
        assert_eq!(of("retry-after", "soon"), None);
    }

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

    fn policy(consecutive_failures: u32, error_rate: f64) -> BreakerPolicy {
        BreakerPolicy {
            consecutive_failures,
            error_rate,
            window: 10,
            min_requests: 6,
            cooldown: Duration::from_secs(3600),
        }
    }

    #[test]
    fn the_error_rate_opens_a_breaker_that_never_saw_two_failures_in_a_row() {
        let h = Health::with_policy(policy(100, 0.5));
        let ok = Duration::from_millis(1);
        for _ in 0..2 {
            h.on_success(ok);
            h.on_failure();
        }
        // Half of four outcomes failed, but four are too few to judge.
        assert_eq!(h.report().state, "closed");
        h.on_success(ok);
        h.on_failure();
        let r = h.report();
        assert_eq!(
            (r.state, r.consecutive_failures, r.failures),
            ("open", 1, 3)
        );
        // Below the rate it stays closed: one failure in three.
        let h = Health::with_policy(policy(100, 0.5));
        for _ in 0..10 {
            h.on_success(ok);
            h.on_success(ok);
            h.on_failure();
        }
        assert_eq!(h.report().state, "closed");
        assert_eq!(h.report().recent_requests, 10);
    }

    #[test]
    fn slow_deployments_come_after_the_others_but_are_not_dropped() {
        let settings = crate::config::ProviderConfig {
            base_url: "http://127.0.0.1:1/v1".into(),
            api_key_env: "K".into(),
        };
        let deployment = |name: &str, weight: u32| {
            Arc::new(Deployment {
                name: name.into(),
                provider: Provider::from_config("openai", Surface::OpenAi, &settings, &|_| {
                    Some("k".into())
                }),
                weight,
                models: None,
                health: Health::with_policy(policy(1, 0.0)),
            })
        };
        let r = Router {
            // The slow one would come first almost always by weight.
            deployments: vec![deployment("slow", 1000), deployment("fast", 1)],
            config: RoutingConfig::default(),
        };
        let order = || {
            r.deployments_for(&Candidate {
                provider: "openai",
                model: "gpt-4o-mini".into(),
            })
            .iter()
            .map(|d| d.name.clone())
            .collect::<Vec<_>>()
        };
        for _ in 0..MIN_LATENCY_SAMPLES {
            r.deployments[0]
                .health
                .on_success(Duration::from_millis(200));
            r.deployments[1].health.on_success(Duration::from_millis(2));
        }
        assert!(r.slow(&r.deployments[0], &r.deployments));
        assert!(!r.slow(&r.deployments[1], &r.deployments));
        for _ in 0..20 {
            assert_eq!(order(), ["fast", "slow"]);
        }
        // With the fast one's breaker open, the slow one is the best left.
        r.deployments[1].health.on_failure();
        assert_eq!(order(), ["slow", "fast"]);
        // An absolute threshold judges a deployment alone.
        let alone = Router {
            deployments: vec![deployment("only", 1)],
            config: RoutingConfig {
                slow_latency_ms: 100,
                ..RoutingConfig::default()
            },
        };
        for _ in 0..MIN_LATENCY_SAMPLES {
            alone.deployments[0]
                .health
                .on_success(Duration::from_millis(150));
        }
        assert!(alone.slow(&alone.deployments[0], &alone.deployments));
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
