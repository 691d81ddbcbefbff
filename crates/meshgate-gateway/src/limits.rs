//! Rate limits: requests and tokens per minute, per key and per project, counted in memory
//! with a sliding window (this minute's count plus the previous minute's, weighted by how
//! much of it still lies inside the last 60 seconds). With Redis the same windows are
//! shared by the fleet (see [`crate::hot`]).

use crate::hot::{RateOutcome, RedisHot};
use http::{HeaderMap, HeaderValue};
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

const WINDOW_MS: i64 = 60_000;

/// Whose calls a counter covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RateScope {
    Key(String),
    Project(String),
    /// A participant token or OAuth user, limited by its project's per-credential limits.
    Credential(String),
}

/// One scope's limits for a call being admitted.
#[derive(Debug, Clone)]
pub struct RateCheck {
    pub scope: RateScope,
    pub requests_per_minute: Option<u64>,
    pub tokens_per_minute: Option<u64>,
}

/// Why a call was refused, and what the client should be told.
#[derive(Debug, Clone, PartialEq)]
pub struct RateRefusal {
    /// `requests` or `tokens`.
    pub what: &'static str,
    pub scope: RateScope,
    pub limit: u64,
    pub retry_after_secs: u64,
    /// Tokens still available (for the headers), when a tokens limit applies.
    pub remaining_tokens: Option<(u64, u64)>,
}

#[derive(Debug, Default, Clone, Copy)]
struct Window {
    minute: i64,
    requests: u64,
    previous_requests: u64,
    tokens: u64,
    previous_tokens: u64,
}

impl Window {
    /// Moves the window to `minute`, ageing the counts.
    fn advance(&mut self, minute: i64) {
        if minute == self.minute {
            return;
        }
        if minute == self.minute + 1 {
            self.previous_requests = self.requests;
            self.previous_tokens = self.tokens;
        } else {
            self.previous_requests = 0;
            self.previous_tokens = 0;
        }
        self.requests = 0;
        self.tokens = 0;
        self.minute = minute;
    }

    /// The sliding-window estimate of what was used in the last 60 s.
    fn used(current: u64, previous: u64, into_minute_ms: i64) -> u64 {
        let weight = (WINDOW_MS - into_minute_ms) as u128;
        current + (u128::from(previous) * weight / WINDOW_MS as u128) as u64
    }

    /// Milliseconds until the estimate falls to `target` or below.
    fn wait_until_at_most(current: u64, previous: u64, into_minute_ms: i64, target: u64) -> i64 {
        if current <= target {
            if previous == 0 {
                return 0;
            }
            // previous * (60000 - t) / 60000 <= target - current
            let room = u128::from(target - current);
            let t = WINDOW_MS as u128 - room * WINDOW_MS as u128 / u128::from(previous);
            return (t as i64 - into_minute_ms).max(0);
        }
        // Next minute, this minute's count becomes the previous one.
        let t = WINDOW_MS as u128 - u128::from(target) * WINDOW_MS as u128 / u128::from(current);
        WINDOW_MS - into_minute_ms + t as i64
    }
}

/// All counters of this instance, or of the fleet when `shared` is set.
#[derive(Default)]
pub struct RateLimiter {
    windows: Mutex<HashMap<RateScope, Window>>,
    shared: Option<Arc<RedisHot>>,
}

/// Why a call was not admitted: a full counter, or shared counters that cannot be read
/// (then the call is refused: limits that cannot be checked fail closed).
#[derive(Debug)]
pub enum RateDenial {
    Limited(RateRefusal),
    Unavailable(String),
}

impl RateScope {
    /// The scope's name in Redis.
    fn shared_name(&self) -> String {
        match self {
            RateScope::Key(id) => format!("key:{id}"),
            RateScope::Project(id) => format!("project:{id}"),
            RateScope::Credential(id) => format!("credential:{id}"),
        }
    }
}

impl RateLimiter {
    /// Counters shared by every instance using the same Redis.
    pub fn shared(hot: Arc<RedisHot>) -> Self {
        RateLimiter {
            windows: Mutex::default(),
            shared: Some(hot),
        }
    }

    /// [`RateLimiter::admit`] on this instance's counters, or one script on the shared ones.
    pub async fn admit_call(&self, checks: &[RateCheck], now_ms: i64) -> Result<(), RateDenial> {
        let Some(hot) = &self.shared else {
            return self.admit(checks, now_ms).map_err(RateDenial::Limited);
        };
        let checks: Vec<&RateCheck> = checks
            .iter()
            .filter(|c| c.requests_per_minute.is_some() || c.tokens_per_minute.is_some())
            .collect();
        if checks.is_empty() {
            return Ok(());
        }
        let scopes: Vec<(String, Option<u64>, Option<u64>)> = checks
            .iter()
            .map(|c| {
                (
                    c.scope.shared_name(),
                    c.requests_per_minute,
                    c.tokens_per_minute,
                )
            })
            .collect();
        let outcome = hot.rate_admit(&scopes, now_ms).await.map_err(|e| {
            RateDenial::Unavailable(format!("cannot check rate limits in Redis: {e}"))
        })?;
        let RateOutcome::Full {
            what,
            index,
            current,
            previous,
        } = outcome
        else {
            return Ok(());
        };
        let Some(check) = checks.get(index) else {
            return Ok(());
        };
        let limit = if what == "requests" {
            check.requests_per_minute
        } else {
            check.tokens_per_minute
        }
        .unwrap_or(0);
        let wait = Window::wait_until_at_most(
            current,
            previous,
            now_ms.rem_euclid(WINDOW_MS),
            limit.saturating_sub(1),
        );
        Err(RateDenial::Limited(RateRefusal {
            what,
            scope: check.scope.clone(),
            limit,
            retry_after_secs: ms_to_secs(wait),
            remaining_tokens: (what == "tokens").then_some((limit, 0)),
        }))
    }

    /// Adds a finished call's tokens, here or (in the background) in the shared counters.
    pub fn count_tokens(&self, scopes: &[RateScope], tokens: u64, now_ms: i64) {
        let Some(hot) = &self.shared else {
            return self.add_tokens(scopes, tokens, now_ms);
        };
        if scopes.is_empty() || tokens == 0 {
            return;
        }
        let Ok(runtime) = tokio::runtime::Handle::try_current() else {
            return;
        };
        let hot = hot.clone();
        let names: Vec<String> = scopes.iter().map(RateScope::shared_name).collect();
        runtime.spawn(async move {
            if let Err(e) = hot.add_tokens(&names, tokens, now_ms).await {
                tracing::warn!(error = %e, "cannot count tokens in Redis");
            }
        });
    }

    /// Counts one request against every scope if all of them have room; otherwise counts
    /// nothing and says which limit was hit.
    pub fn admit(&self, checks: &[RateCheck], now_ms: i64) -> Result<(), RateRefusal> {
        if checks
            .iter()
            .all(|c| c.requests_per_minute.is_none() && c.tokens_per_minute.is_none())
        {
            return Ok(());
        }
        let minute = now_ms.div_euclid(WINDOW_MS);
        let into = now_ms.rem_euclid(WINDOW_MS);
        let Ok(mut windows) = self.windows.lock() else {
            return Ok(());
        };
        for check in checks {
            let w = windows.entry(check.scope.clone()).or_default();
            w.advance(minute);
            if let Some(limit) = check.requests_per_minute {
                let used = Window::used(w.requests, w.previous_requests, into);
                if used + 1 > limit {
                    let wait = Window::wait_until_at_most(
                        w.requests,
                        w.previous_requests,
                        into,
                        limit.saturating_sub(1),
                    );
                    return Err(RateRefusal {
                        what: "requests",
                        scope: check.scope.clone(),
                        limit,
                        retry_after_secs: ms_to_secs(wait),
                        remaining_tokens: None,
                    });
                }
            }
            if let Some(limit) = check.tokens_per_minute {
                let used = Window::used(w.tokens, w.previous_tokens, into);
                if used >= limit {
                    let wait = Window::wait_until_at_most(
                        w.tokens,
                        w.previous_tokens,
                        into,
                        limit.saturating_sub(1),
                    );
                    return Err(RateRefusal {
                        what: "tokens",
                        scope: check.scope.clone(),
                        limit,
                        retry_after_secs: ms_to_secs(wait),
                        remaining_tokens: Some((limit, 0)),
                    });
                }
            }
        }
        for check in checks {
            if check.requests_per_minute.is_some() || check.tokens_per_minute.is_some() {
                if let Some(w) = windows.get_mut(&check.scope) {
                    w.requests += 1;
                }
            }
        }
        Ok(())
    }

    /// Adds the tokens a finished call used to its scopes' windows.
    pub fn add_tokens(&self, scopes: &[RateScope], tokens: u64, now_ms: i64) {
        if scopes.is_empty() || tokens == 0 {
            return;
        }
        let minute = now_ms.div_euclid(WINDOW_MS);
        if let Ok(mut windows) = self.windows.lock() {
            for scope in scopes {
                let w = windows.entry(scope.clone()).or_default();
                w.advance(minute);
                w.tokens += tokens;
            }
        }
    }
}

fn ms_to_secs(ms: i64) -> u64 {
    u64::try_from(ms.max(0)).unwrap_or(0).div_ceil(1000).max(1)
}

impl RateRefusal {
    pub fn message(&self) -> String {
        let whose = match &self.scope {
            RateScope::Key(id) => format!("key {id}"),
            RateScope::Project(id) => format!("project {id}"),
            RateScope::Credential(id) => format!("credential {id}"),
        };
        format!(
            "rate limit reached for {whose}: {} {} per minute; retry after {} s",
            self.limit, self.what, self.retry_after_secs
        )
    }

    /// `retry-after` and the usual rate-limit headers, in both providers' spellings.
    pub fn headers(&self) -> HeaderMap {
        let mut h = HeaderMap::new();
        let mut put = |name: &'static str, value: String| {
            if let Ok(v) = HeaderValue::from_str(&value) {
                h.insert(name, v);
            }
        };
        let reset = format!("{}s", self.retry_after_secs);
        put("retry-after", self.retry_after_secs.to_string());
        let reset_at = chrono::Utc::now()
            + chrono::Duration::seconds(i64::try_from(self.retry_after_secs).unwrap_or(60));
        let reset_at = reset_at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        match self.what {
            "requests" => {
                put("x-ratelimit-limit-requests", self.limit.to_string());
                put("x-ratelimit-remaining-requests", "0".into());
                put("x-ratelimit-reset-requests", reset);
                put("anthropic-ratelimit-requests-limit", self.limit.to_string());
                put("anthropic-ratelimit-requests-remaining", "0".into());
                put("anthropic-ratelimit-requests-reset", reset_at);
            }
            _ => {
                let (limit, remaining) = self.remaining_tokens.unwrap_or((self.limit, 0));
                put("x-ratelimit-limit-tokens", limit.to_string());
                put("x-ratelimit-remaining-tokens", remaining.to_string());
                put("x-ratelimit-reset-tokens", reset);
                put("anthropic-ratelimit-tokens-limit", limit.to_string());
                put(
                    "anthropic-ratelimit-tokens-remaining",
                    remaining.to_string(),
                );
                put("anthropic-ratelimit-tokens-reset", reset_at);
            }
        }
        h
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rpm(scope: &str, n: u64) -> RateCheck {
        RateCheck {
            scope: RateScope::Key(scope.into()),
            requests_per_minute: Some(n),
            tokens_per_minute: None,
        }
    }

    #[test]
    fn requests_per_minute_slide() {
        let limiter = RateLimiter::default();
        let t0 = 60_000 * 100;
        for _ in 0..3 {
            limiter.admit(&[rpm("k", 3)], t0).unwrap();
        }
        let refused = limiter.admit(&[rpm("k", 3)], t0 + 1).unwrap_err();
        assert_eq!(refused.what, "requests");
        // All three are in this minute: next minute at 1/3 in, 2 of 3 still count.
        assert_eq!(refused.retry_after_secs, 80);
        // Half way through the next minute, half of the previous three still count (1).
        limiter.admit(&[rpm("k", 3)], t0 + 90_000).unwrap();
        limiter.admit(&[rpm("k", 3)], t0 + 90_000).unwrap();
        assert!(limiter.admit(&[rpm("k", 3)], t0 + 90_000).is_err());
        // Two minutes later the slate is clean.
        for _ in 0..3 {
            limiter.admit(&[rpm("k", 3)], t0 + 240_000).unwrap();
        }
    }

    #[test]
    fn a_refusal_counts_nowhere() {
        let limiter = RateLimiter::default();
        let t = 0;
        limiter.admit(&[rpm("a", 1)], t).unwrap();
        // "b" has room but "a" does not: nothing is counted for "b".
        assert!(limiter.admit(&[rpm("b", 1), rpm("a", 1)], t).is_err());
        limiter.admit(&[rpm("b", 1)], t).unwrap();
    }

    #[test]
    fn tokens_per_minute() {
        let limiter = RateLimiter::default();
        let check = RateCheck {
            scope: RateScope::Project("p".into()),
            requests_per_minute: None,
            tokens_per_minute: Some(100),
        };
        limiter.admit(std::slice::from_ref(&check), 0).unwrap();
        limiter.add_tokens(&[RateScope::Project("p".into())], 100, 10);
        let refused = limiter.admit(std::slice::from_ref(&check), 20).unwrap_err();
        assert_eq!(refused.what, "tokens");
        let h = refused.headers();
        assert_eq!(h["x-ratelimit-limit-tokens"], "100");
        assert_eq!(h["x-ratelimit-remaining-tokens"], "0");
        assert!(h.contains_key("retry-after"));
    }
}
