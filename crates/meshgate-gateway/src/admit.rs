//! The admit phase: whether this principal may make this call now. In order: the model is
//! allowed (project, key, token grant, delegation) and priced; the rate limits have room;
//! the largest charge the call can make is reserved in every budget and in the credits.
//! What admission reserved travels with the settlement as [`Charges`].

use crate::auth::Principal;
use crate::budget::{Account, BudgetDenial, Budgets, Need, Period, Reservation};
use crate::classify::{RequestInfo, Route};
use crate::error::{ErrorKind, GatewayError};
use crate::limits::{RateCheck, RateDenial, RateLimiter, RateScope};
use crate::state::AppState;
use meshgate_pricing::ModelPrice;
use meshgate_store::{Limits, ProjectSettings};
use meshgate_types::{Endpoint, Money, Usage};
use rust_decimal::Decimal;
use std::sync::Arc;

/// What an admitted call carries to its settlement.
pub struct Admission {
    /// The price the call is charged at (billable calls only).
    pub price: Option<Arc<ModelPrice>>,
    pub charges: Charges,
}

/// The reservation and counters a call settles when it ends; released on drop if the call
/// never settles (it failed before the settlement guard was armed).
pub struct Charges {
    budgets: Arc<Budgets>,
    reservation: Reservation,
    limiter: Arc<RateLimiter>,
    rate_scopes: Vec<RateScope>,
    /// Percent of the provider cost charged on top (the project's markup).
    pub markup_percent: Option<Decimal>,
    /// The project runs on credits: its usage is debited from the credit ledger.
    pub debit_credits: bool,
    settled: bool,
}

impl Charges {
    /// The project's markup on `cost`.
    pub fn markup(&self, cost: Money) -> Option<Money> {
        self.markup_percent
            .map(|pct| Money::new(cost.amount() * pct / Decimal::ONE_HUNDRED))
    }

    /// Replaces the reservation with the exact charge and counts the tokens; once.
    pub fn settle(&mut self, charged: Money, tokens: u64) {
        if std::mem::replace(&mut self.settled, true) {
            return;
        }
        self.budgets.settle(&mut self.reservation, charged);
        self.limiter.count_tokens(
            &self.rate_scopes,
            tokens,
            chrono::Utc::now().timestamp_millis(),
        );
    }
}

impl Drop for Charges {
    fn drop(&mut self) {
        self.settle(Money::ZERO, 0);
    }
}

/// The admit phase (see the module doc).
pub async fn admit(
    state: &AppState,
    route: &Route,
    info: &RequestInfo,
    principal: &Principal,
    body_len: usize,
) -> Result<Admission, GatewayError> {
    let now_ms = chrono::Utc::now().timestamp_millis();
    let Some(project) = state.tenants.project(&principal.project_id) else {
        return Err(GatewayError::new(
            ErrorKind::Authentication,
            format!("project {} does not exist", principal.project_id),
        ));
    };
    let provider = state.provider(route.surface).name;
    for model in info
        .model
        .iter()
        .chain(&info.batch_models)
        .chain(&info.fallback_models)
    {
        check_model(&project, principal, provider, model)?;
    }
    let price = price_of_call(state, route, info)?;
    // Fallbacks may serve the call instead: each must be priced, and the reservation
    // covers the dearest.
    let mut prices: Vec<Arc<ModelPrice>> = price.iter().cloned().collect();
    if price.is_some() {
        for model in &info.fallback_models {
            prices.push(price_of(state, model)?);
        }
    }

    let (checks, rate_scopes) = rate_checks(&project, principal);
    // With `redis_unavailable = "local"`, limits Redis cannot check are checked in this
    // instance's memory instead (see `crate::degraded`); else the call fails closed.
    let local = state.local_limits.as_deref();
    let mut limiter = state.rate_limits.clone();
    let mut budgets = state.budgets.clone();
    // Whether this call's limits are this instance's own.
    let mut on_local = false;
    if let Some(local) = local.filter(|l| l.skipping_redis(now_ms)) {
        (budgets, limiter) = local.take("Redis failed a call within the last second");
        on_local = true;
    }
    let rated = match (limiter.admit_call(&checks, now_ms).await, local) {
        (Err(RateDenial::Unavailable(why)), Some(local)) if !on_local => {
            (budgets, limiter) = local.redis_failed(now_ms, &why);
            on_local = true;
            limiter.admit_call(&checks, now_ms).await
        }
        (rated, _) => rated,
    };
    rated.map_err(|denial| match denial {
        RateDenial::Limited(refusal) => {
            GatewayError::new(ErrorKind::RateLimited, refusal.message())
                .with_code("rate_limit_exceeded")
                .with_headers(refusal.headers())
        }
        RateDenial::Unavailable(why) => GatewayError::new(ErrorKind::Unavailable, why),
    })?;

    let needs = budget_needs(&project, principal, now_ms);
    let estimate = prices
        .iter()
        .map(|p| estimate(state, route, info, p, body_len))
        .max()
        .unwrap_or(Money::ZERO);
    let markup_percent = project
        .provider_markup_percent
        .get(provider)
        .copied()
        .or(project.markup_percent);
    let with_markup = match markup_percent {
        Some(pct) => {
            Money::new(estimate.amount() * (Decimal::ONE_HUNDRED + pct) / Decimal::ONE_HUNDRED)
        }
        None => estimate,
    };
    let reserved = match (budgets.admit(&needs, with_markup).await, local) {
        // Shared accounts that Redis could not check (not the database: an account that
        // must be read from it fails closed either way).
        (Err(BudgetDenial::Unavailable(why)), Some(local))
            if !on_local && why.starts_with(crate::budget::REDIS_UNAVAILABLE) =>
        {
            budgets = local.redis_failed(now_ms, &why).0;
            budgets.admit(&needs, with_markup).await
        }
        (reserved, Some(local)) => {
            if reserved.is_ok() && !on_local && !(needs.is_empty() && checks.is_empty()) {
                local.redis_answered();
            }
            reserved
        }
        (reserved, None) => reserved,
    };
    let reservation = reserved.map_err(|denial| match denial {
        BudgetDenial::Refused(refusal) => {
            let code = if matches!(refusal.account, Account::Credits(_)) {
                "insufficient_credits"
            } else {
                "budget_exceeded"
            };
            GatewayError::new(ErrorKind::PaymentRequired, refusal.message).with_code(code)
        }
        BudgetDenial::Unavailable(why) => GatewayError::new(ErrorKind::Unavailable, why),
    })?;
    Ok(Admission {
        price,
        charges: Charges {
            budgets,
            reservation,
            limiter,
            rate_scopes,
            markup_percent,
            debit_credits: project.credits_enforced,
            settled: false,
        },
    })
}

/// Every rule that names models must allow this one: the project's, the key's, the
/// token's grant and the delegation's.
fn check_model(
    project: &ProjectSettings,
    principal: &Principal,
    provider: &str,
    model: &str,
) -> Result<(), GatewayError> {
    let allowed = |rules: Option<&[String]>| meshgate_tokens::model_allowed(rules, provider, model);
    let refuse = |whose: String| {
        Err(GatewayError::new(
            ErrorKind::Permission,
            format!("model {provider}/{model} is not allowed for {whose}"),
        )
        .with_code("model_not_allowed")
        .with_param("model"))
    };
    if !allowed(project.policy.allowed_models.as_deref()) {
        return refuse(format!("project {}", principal.project_id));
    }
    if let Some(key) = &principal.key {
        if !allowed(key.policy.allowed_models.as_deref()) {
            return refuse(format!("key {}", key.id));
        }
    }
    if !allowed(principal.grant_models.as_deref()) {
        return refuse("this token's api.llm grant".into());
    }
    if let Some(d) = &principal.delegation {
        if !allowed(d.models.as_deref()) {
            return refuse(format!("delegation {}", d.id));
        }
    }
    Ok(())
}

/// Whether `principal` may use `model` (for listing models).
pub fn model_allowed(
    project: &ProjectSettings,
    principal: &Principal,
    provider: &str,
    model: &str,
) -> bool {
    check_model(project, principal, provider, model).is_ok()
}

/// A billable call must name a model meshgate has a price for; returns that price.
fn price_of_call(
    state: &AppState,
    route: &Route,
    info: &RequestInfo,
) -> Result<Option<Arc<ModelPrice>>, GatewayError> {
    for model in &info.batch_models {
        price_of(state, model)?;
    }
    let billable = route.endpoint.is_billable() && route.endpoint != Endpoint::BatchResults;
    if !billable {
        return Ok(None);
    }
    let Some(model) = info.model.as_deref() else {
        return Err(GatewayError::new(
            ErrorKind::InvalidRequest,
            "the request names no model; `model` is required",
        )
        .with_param("model"));
    };
    price_of(state, model).map(Some)
}

fn price_of(state: &AppState, model: &str) -> Result<Arc<ModelPrice>, GatewayError> {
    state.catalog.price(model).ok_or_else(|| {
        GatewayError::new(
            ErrorKind::InvalidRequest,
            format!(
                "meshgate has no price for model '{model}', so it will not forward the call. \
                 Add a price in a pricing file listed under [pricing] files in meshgate.toml \
                 (meshgate TOML or LiteLLM JSON format) and restart; `meshgate pricing check {model}` \
                 shows what meshgate knows."
            ),
        )
        .with_code("model_not_priced")
        .with_param("model")
    })
}

fn rate_checks(
    project: &ProjectSettings,
    principal: &Principal,
) -> (Vec<RateCheck>, Vec<RateScope>) {
    let mut checks = Vec::new();
    let mut push = |scope: RateScope, limits: &Limits| {
        if limits.requests_per_minute.is_some() || limits.tokens_per_minute.is_some() {
            checks.push(RateCheck {
                scope,
                requests_per_minute: limits.requests_per_minute,
                tokens_per_minute: limits.tokens_per_minute,
            });
        }
    };
    if let Some(key) = &principal.key {
        push(RateScope::Key(key.id.clone()), &key.policy.limits);
    }
    push(
        RateScope::Project(principal.project_id.clone()),
        &project.policy.limits,
    );
    let scopes = checks.iter().map(|c| c.scope.clone()).collect();
    (checks, scopes)
}

pub fn budget_needs(project: &ProjectSettings, principal: &Principal, now_ms: i64) -> Vec<Need> {
    let mut needs = Vec::new();
    let mut spend_limits = |limits: &Limits, account: &dyn Fn(Period) -> Account| {
        let periods = [
            (limits.spend_total_usd, Period::Total),
            (limits.spend_daily_usd, Period::day(now_ms)),
            (limits.spend_monthly_usd, Period::month(now_ms)),
        ];
        for (limit, period) in periods {
            if let Some(limit) = limit {
                needs.push(Need {
                    account: account(period),
                    limit: Some(limit),
                });
            }
        }
    };
    if let Some(key) = &principal.key {
        spend_limits(&key.policy.limits, &|p| Account::Key(key.id.clone(), p));
    }
    spend_limits(&project.policy.limits, &|p| {
        Account::Project(principal.project_id.clone(), p)
    });
    if let Some(d) = &principal.delegation {
        needs.push(Need {
            account: Account::Delegation(d.id.clone()),
            limit: Some(d.max_budget),
        });
    }
    if project.credits_enforced {
        needs.push(Need {
            account: Account::Credits(principal.project_id.clone()),
            limit: None,
        });
    }
    needs
}

/// The most this call can cost: the prompt counted generously from the body's size, the
/// output at its `max_tokens` (or the configured default), or the units it asks for
/// (images, characters, seconds). The highest of the ways the model is priced.
fn estimate(
    state: &AppState,
    route: &Route,
    info: &RequestInfo,
    price: &ModelPrice,
    body_len: usize,
) -> Money {
    let config = &state.config.budgets;
    let input = body_len as u64 / config.bytes_per_input_token.max(1) + 1;
    let output = match route.endpoint {
        Endpoint::Embeddings | Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => 0,
        _ => info
            .max_output_tokens
            .unwrap_or(config.default_max_output_tokens),
    };
    let by_tokens = Usage {
        input_uncached: Some(input),
        output: Some(output),
        ..Usage::default()
    };
    let is_image = matches!(
        route.endpoint,
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations
    );
    let by_units = Usage {
        images: is_image.then(|| info.facts.image_n.unwrap_or(1)),
        image_size: info.facts.image_size.clone(),
        image_quality: info.facts.image_quality.clone(),
        characters: info.facts.speech_input_chars,
        audio_seconds: info.upload_seconds.map(|s| s.ceil()),
        ..Usage::default()
    };
    [by_tokens, by_units]
        .iter()
        .filter(|u| !u.is_empty())
        .filter_map(|u| meshgate_pricing::cost(u, price).ok())
        .max()
        .unwrap_or(Money::ZERO)
}
