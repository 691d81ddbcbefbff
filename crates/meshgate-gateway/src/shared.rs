//! Where a fleet keeps the hot state its instances share (rate-limit counters, budget and
//! credit reservations): Redis ([`crate::hot`]) or, without Redis, PostgreSQL
//! ([`crate::pghot`]). One enum answering in [`Money`], so that [`crate::budget::Budgets`]
//! and [`crate::limits::RateLimiter`] hold their rules once whichever backend counts.

use crate::hot::{self, RateOutcome, RedisHot, ReserveOutcome};
use crate::pghot::PgHot;
use meshgate_types::Money;
use std::sync::Arc;

/// The shared backend of a fleet.
#[derive(Clone)]
pub enum Shared {
    Redis(Arc<RedisHot>),
    Postgres(Arc<PgHot>),
}

impl From<Arc<RedisHot>> for Shared {
    fn from(hot: Arc<RedisHot>) -> Self {
        Shared::Redis(hot)
    }
}

impl From<Arc<PgHot>> for Shared {
    fn from(hot: Arc<PgHot>) -> Self {
        Shared::Postgres(hot)
    }
}

/// What a reserve answered.
#[derive(Debug, PartialEq)]
pub enum Reserve {
    Reserved,
    /// These accounts (indexes into the call's list) are not loaded yet: load them.
    Missing(Vec<usize>),
    /// This account cannot afford the call: its spent, reserved and limit.
    Refused {
        index: usize,
        spent: Money,
        reserved: Money,
        limit: Money,
    },
    /// The estimate is more than the backend can hold in an account (Redis: about $9.2
    /// million).
    TooLarge,
}

/// The shared state could not be read or changed.
#[derive(Debug)]
pub struct Unreachable {
    /// `Redis` or `PostgreSQL`.
    pub backend: &'static str,
    pub error: String,
}

impl std::fmt::Display for Unreachable {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}: {}", self.backend, self.error)
    }
}

fn redis(e: redis::RedisError) -> Unreachable {
    Unreachable {
        backend: "Redis",
        error: e.to_string(),
    }
}

fn postgres(e: sqlx::Error) -> Unreachable {
    Unreachable {
        backend: "PostgreSQL",
        error: e.to_string(),
    }
}

impl Shared {
    /// `Redis` or `PostgreSQL`, for messages.
    pub fn backend(&self) -> &'static str {
        match self {
            Shared::Redis(_) => "Redis",
            Shared::Postgres(_) => "PostgreSQL",
        }
    }

    /// Reserves `estimate` under `id` in every account (with its limit; `None` for credits,
    /// whose limit is the balance) or in none, held at most `hold_ms`.
    pub async fn reserve(
        &self,
        id: &str,
        accounts: &[(String, Option<Money>)],
        estimate: Money,
        hold_ms: u64,
    ) -> Result<Reserve, Unreachable> {
        match self {
            Shared::Postgres(hot) => hot
                .reserve(id, accounts, estimate, hold_ms)
                .await
                .map_err(postgres),
            Shared::Redis(hot) => {
                let Some(units) = hot::units_ceil(estimate.amount()) else {
                    return Ok(Reserve::TooLarge);
                };
                let accounts: Vec<(String, Option<i64>)> = accounts
                    .iter()
                    .map(|(name, limit)| {
                        let limit = limit.map(|l| hot::units_floor(l.amount()).unwrap_or(i64::MAX));
                        (name.clone(), limit)
                    })
                    .collect();
                let money = |units: i64| Money::new(hot::from_units(units));
                Ok(
                    match hot
                        .reserve(id, &accounts, units, hold_ms)
                        .await
                        .map_err(redis)?
                    {
                        ReserveOutcome::Reserved => Reserve::Reserved,
                        ReserveOutcome::Missing(missing) => Reserve::Missing(missing),
                        ReserveOutcome::Refused {
                            index,
                            spent,
                            reserved,
                            limit,
                        } => Reserve::Refused {
                            index,
                            spent: money(spent),
                            reserved: money(reserved),
                            limit: money(limit),
                        },
                    },
                )
            }
        }
    }

    /// Loads an account read from the ledger unless another instance did first (the first
    /// load wins). Credits: `spent` zero and the balance as `limit`.
    pub async fn init(
        &self,
        account: &str,
        spent: Money,
        limit: Option<Money>,
    ) -> Result<(), Unreachable> {
        match self {
            Shared::Postgres(hot) => hot.init(account, spent, limit).await.map_err(postgres),
            Shared::Redis(hot) => {
                let spent = hot::units_ceil(spent.amount()).unwrap_or(i64::MAX);
                let limit = limit.map(|l| hot::units_floor(l.amount()).unwrap_or(i64::MAX));
                hot.init(account, spent, limit).await.map_err(redis)
            }
        }
    }

    /// Releases reservation `id` (nothing if it expired and was released) and adds
    /// `charge` to its accounts.
    pub async fn settle(
        &self,
        id: &str,
        accounts: &[String],
        charge: Money,
    ) -> Result<(), Unreachable> {
        match self {
            Shared::Postgres(hot) => hot.settle(id, accounts, charge).await.map_err(postgres),
            Shared::Redis(hot) => {
                // Rounded up: the account may look fuller than the ledger by under 1e-12 USD.
                let units = hot::units_ceil(charge.amount()).unwrap_or(i64::MAX);
                hot.settle(id, accounts, units).await.map_err(redis)
            }
        }
    }

    /// Credits granted through this instance, already in the database. PostgreSQL: the
    /// database moved the shared balance itself when the entry was written (a trigger),
    /// so there is nothing left to do.
    pub async fn grant(&self, account: &str, amount: Money) -> Result<(), Unreachable> {
        match self {
            Shared::Postgres(_) => Ok(()),
            Shared::Redis(hot) => {
                let units = hot::units_floor(amount.amount()).unwrap_or(0);
                hot.grant(account, units).await.map_err(redis)
            }
        }
    }

    /// An account's spent, reserved and balance (credits), `None` when not loaded.
    pub async fn peek(&self, account: &str) -> Result<Option<(Money, Money, Money)>, Unreachable> {
        match self {
            Shared::Postgres(hot) => hot.peek(account).await.map_err(postgres),
            Shared::Redis(hot) => {
                let money = |units: Option<i64>| Money::new(hot::from_units(units.unwrap_or(0)));
                Ok(hot
                    .peek(account)
                    .await
                    .map_err(redis)?
                    .map(|(spent, reserved, limit)| {
                        (money(Some(spent)), money(reserved), money(limit))
                    }))
            }
        }
    }

    /// Counts one request in every scope (with its requests and tokens per minute) if all
    /// have room.
    pub async fn rate_admit(
        &self,
        scopes: &[(String, Option<u64>, Option<u64>)],
        now_ms: i64,
    ) -> Result<RateOutcome, Unreachable> {
        match self {
            Shared::Postgres(hot) => hot.rate_admit(scopes, now_ms).await.map_err(postgres),
            Shared::Redis(hot) => hot.rate_admit(scopes, now_ms).await.map_err(redis),
        }
    }

    /// Adds a finished call's tokens to its scopes' this-minute counters.
    pub async fn add_tokens(
        &self,
        scopes: &[String],
        tokens: u64,
        now_ms: i64,
    ) -> Result<(), Unreachable> {
        match self {
            Shared::Postgres(hot) => hot
                .add_tokens(scopes, tokens, now_ms)
                .await
                .map_err(postgres),
            Shared::Redis(hot) => hot.add_tokens(scopes, tokens, now_ms).await.map_err(redis),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Two instances' views of one backend, and what to call when the test ends.
    async fn redis(name: &str) -> Option<(Shared, Shared, Arc<RedisHot>)> {
        let a = Arc::new(hot::test_redis(name).await?);
        let b = RedisHot::connect(&hot::test_redis_url(), a.prefix())
            .await
            .unwrap();
        Some((a.clone().into(), Arc::new(b).into(), a))
    }

    async fn postgres() -> Option<(Shared, Shared, meshgate_store::testdb::TestDatabase)> {
        let (db, _store) = crate::pghot::test_database().await?;
        let a = PgHot::connect(&db.url).await.unwrap();
        let b = PgHot::connect(&db.url).await.unwrap();
        Some((Arc::new(a).into(), Arc::new(b).into(), db))
    }

    #[tokio::test]
    async fn rate_limits_count_across_instances_in_redis() {
        let Some((a, b, hot)) = redis("rate").await else {
            return;
        };
        rate_limits_count_across_instances(&a, &b).await;
        hot.delete_all().await.unwrap();
    }

    #[tokio::test]
    async fn rate_limits_count_across_instances_in_postgresql() {
        let Some((a, b, _db)) = postgres().await else {
            return;
        };
        rate_limits_count_across_instances(&a, &b).await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_admit_exactly_the_limit_in_redis() {
        let Some((a, b, hot)) = redis("rate-race").await else {
            return;
        };
        concurrent_requests_admit_exactly_the_limit(&a, &b).await;
        hot.delete_all().await.unwrap();
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_requests_admit_exactly_the_limit_in_postgresql() {
        let Some((a, b, _db)) = postgres().await else {
            return;
        };
        concurrent_requests_admit_exactly_the_limit(&a, &b).await;
    }

    /// The start of the minute `ahead` minutes from now, in ms.
    fn future_minute(ahead: i64) -> i64 {
        (chrono::Utc::now().timestamp_millis().div_euclid(60_000) + ahead) * 60_000
    }

    async fn rate_limits_count_across_instances(a: &Shared, b: &Shared) {
        let scopes = [("key:k".to_string(), Some(3), Some(100))];
        // Early in a minute with nothing in the previous one (a future one: minutes long
        // past are tidied away).
        let t = future_minute(10) + 10;
        for hot in [a, b, a] {
            assert_eq!(
                hot.rate_admit(&scopes, t).await.unwrap(),
                RateOutcome::Admitted
            );
        }
        assert_eq!(
            b.rate_admit(&scopes, t).await.unwrap(),
            RateOutcome::Full {
                what: "requests",
                index: 0,
                current: 3,
                previous: 0
            }
        );
        // A refusal counts nowhere: "other" has room, "key:k" does not.
        let two = [
            ("other".to_string(), Some(1), None),
            ("key:k".to_string(), Some(3), None),
        ];
        assert!(matches!(
            a.rate_admit(&two, t).await.unwrap(),
            RateOutcome::Full { index: 1, .. }
        ));
        assert_eq!(
            a.rate_admit(&two[..1], t).await.unwrap(),
            RateOutcome::Admitted
        );
        // Half way through the next minute, half of the previous three still count.
        let later = t + 60_000 + 30_000 - 10;
        for hot in [a, b] {
            assert_eq!(
                hot.rate_admit(&scopes, later).await.unwrap(),
                RateOutcome::Admitted
            );
        }
        assert_eq!(
            a.rate_admit(&scopes, later).await.unwrap(),
            RateOutcome::Full {
                what: "requests",
                index: 0,
                current: 2,
                previous: 3
            }
        );

        let tokens = [("key:t".to_string(), None, Some(100))];
        assert_eq!(
            a.rate_admit(&tokens, t).await.unwrap(),
            RateOutcome::Admitted
        );
        b.add_tokens(&["key:t".to_string()], 100, t).await.unwrap();
        assert_eq!(
            a.rate_admit(&tokens, t).await.unwrap(),
            RateOutcome::Full {
                what: "tokens",
                index: 0,
                current: 100,
                previous: 0
            }
        );
    }

    /// 45 calls at once through two instances, 10 per minute on the key: exactly 10 pass,
    /// and the refused ones count in no scope (the project, at 11, has room for one more).
    async fn concurrent_requests_admit_exactly_the_limit(a: &Shared, b: &Shared) {
        let t = future_minute(20) + 10;
        let scopes = vec![
            ("key:k".to_string(), Some(10), None),
            ("project:p".to_string(), Some(11), None),
        ];
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..45 {
            let hot = if i % 2 == 0 { a.clone() } else { b.clone() };
            let scopes = scopes.clone();
            calls.spawn(async move { hot.rate_admit(&scopes, t).await.unwrap() });
        }
        let mut admitted = 0;
        while let Some(outcome) = calls.join_next().await {
            if outcome.unwrap() == RateOutcome::Admitted {
                admitted += 1;
            }
        }
        assert_eq!(admitted, 10);
        assert_eq!(
            a.rate_admit(&scopes[1..], t).await.unwrap(),
            RateOutcome::Admitted
        );
        assert!(matches!(
            b.rate_admit(&scopes[1..], t).await.unwrap(),
            RateOutcome::Full { .. }
        ));
    }
}
