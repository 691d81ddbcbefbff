//! Hot state a fleet shares through PostgreSQL when it has no Redis: rate-limit counters
//! and budget/credit reservations, with the guarantees of [`crate::hot`] (Redis) at the
//! price of a few round trips to the database per call. The tables (`hot_accounts`,
//! `hot_reservations`, `hot_rates`) and the trigger that moves credit balances are created
//! by the store's migration `postgres/0004_shared_hot_state.sql`.
//!
//! Every check-and-update is one transaction that first locks the rows it decides on:
//! accounts with `SELECT ... FOR UPDATE` in name order, rate counters with one upsert in
//! scope order, so that two instances never interleave between reading a counter and
//! changing it, and never wait on each other in a cycle (no deadlocks). A transaction
//! that waits for a reservation row holds no account lock. Reserving is all or none across
//! the call's accounts; settling deletes the reservation and applies the exact charge in
//! one transaction, so a reservation is released once whoever releases it.
//!
//! - **Money** is `NUMERIC` in the tables and [`rust_decimal`] here: exact, no units and no
//!   rounding (unlike Redis' integers).
//! - **Loading**: an absent account is read from the ledger by the caller and inserted
//!   with `ON CONFLICT DO NOTHING` (the first load wins). Credits added by anyone move a
//!   loaded balance in the transaction that writes the entry (the migration's trigger),
//!   once, and create an absent one from the whole ledger, so a concurrent load never
//!   misses a grant and no instance applies one twice.
//! - **Crashed instances**: a reservation carries a deadline from the database's clock;
//!   every instance releases those past it at most a second after they expire (in the
//!   background, while it reserves), and at once when an expired one would refuse a call.
//!   An account idle for a day is deleted and reloaded from the ledger when next needed.
//! - **Rate limits** use the Redis path's sliding window (this minute's count plus the
//!   previous minute's, weighted), with the minute from the instance's clock.
//! - **Durability**: the pool commits with `synchronous_commit = off`, so a call does not
//!   wait for three WAL flushes (several milliseconds each on an ordinary disk). Atomicity
//!   and locking are unchanged; only a crash of PostgreSQL itself can lose the hot-state
//!   commits of its last moment (`wal_writer_delay`, 200 ms by default, times three):
//!   charges settled then are missing from `spent` (never from the ledger) until the
//!   account is reloaded, and reservations made then vanish (their calls settle into
//!   nothing). The ledger and credit entries are written by the store, durably.
//! - The queries run on the runtime that connected (the main one), as Redis' connection
//!   does: a serving thread's runtime stops before the process, and a pooled connection
//!   must not belong to it.

use crate::hot::RateOutcome;
use crate::shared::Reserve;
use meshgate_types::Money;
use rust_decimal::Decimal;
use sqlx::postgres::{PgConnectOptions, PgPool, PgPoolOptions};
use sqlx::Row;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::future::Future;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

/// The database's clock, in milliseconds since the epoch.
macro_rules! now_ms {
    () => {
        "(EXTRACT(EPOCH FROM clock_timestamp()) * 1000)::BIGINT"
    };
}

/// Locks accounts in name order (the order every transaction here takes them in).
const LOCK_ACCOUNTS: &str = "SELECT name, spent, reserved, balance FROM hot_accounts \
     WHERE name = ANY($1) ORDER BY name FOR UPDATE";

/// How long an account lives without calls before it is reloaded from the ledger.
pub const ACCOUNT_IDLE_MS: i64 = 86_400_000;

/// How often an instance looks for expired reservations while it reserves.
const RELEASE_EVERY_MS: i64 = 1_000;

/// How often an instance deletes idle accounts and old rate counters.
const TIDY_EVERY_MS: i64 = 60_000;

/// Expired reservations released per transaction.
const RELEASE_BATCH: i64 = 100;

/// The pool and runtime of one instance.
pub struct PgHot {
    pool: PgPool,
    runtime: tokio::runtime::Handle,
    last_release_ms: AtomicI64,
    last_tidy_ms: AtomicI64,
}

impl PgHot {
    /// Connects to the database `url` names (failing now if it is unreachable); its tables
    /// must exist (`PgStore::connect` migrates first). Call inside the runtime that lives
    /// as long as the process.
    pub async fn connect(url: &str) -> Result<PgHot, sqlx::Error> {
        // Commits need not wait for the disk (see the module doc).
        let options = url
            .parse::<PgConnectOptions>()?
            .options([("synchronous_commit", "off")]);
        let pool = PgPoolOptions::new()
            .max_connections(8)
            // A database that does not answer refuses the call rather than hanging it.
            .acquire_timeout(Duration::from_secs(5))
            .connect_with(options)
            .await?;
        Ok(PgHot {
            pool,
            runtime: tokio::runtime::Handle::current(),
            last_release_ms: AtomicI64::new(0),
            last_tidy_ms: AtomicI64::new(0),
        })
    }

    /// Runs `work` on the runtime that connected.
    async fn run<T: Send + 'static>(
        &self,
        work: impl Future<Output = Result<T, sqlx::Error>> + Send + 'static,
    ) -> Result<T, sqlx::Error> {
        self.runtime
            .spawn(work)
            .await
            .unwrap_or(Err(sqlx::Error::WorkerCrashed))
    }

    /// Reserves `estimate` under `id` in every account (with its limit, `None` for credits)
    /// or in none; held at most `hold_ms`.
    pub async fn reserve(
        &self,
        id: &str,
        accounts: &[(String, Option<Money>)],
        estimate: Money,
        hold_ms: u64,
    ) -> Result<Reserve, sqlx::Error> {
        self.maintain();
        let pool = self.pool.clone();
        let id = id.to_string();
        let accounts: Vec<(String, Option<Decimal>)> = accounts
            .iter()
            .map(|(name, limit)| (name.clone(), limit.map(Money::amount)))
            .collect();
        let hold_ms = i64::try_from(hold_ms).unwrap_or(i64::MAX / 2);
        self.run(async move {
            let outcome = reserve(&pool, &id, &accounts, estimate.amount(), hold_ms).await?;
            // A reservation past its deadline may be what refuses: release, then try again.
            if matches!(outcome, Reserve::Refused { .. }) && release_expired(&pool).await? > 0 {
                return reserve(&pool, &id, &accounts, estimate.amount(), hold_ms).await;
            }
            Ok(outcome)
        })
        .await
    }

    /// Inserts an account read from the ledger unless another instance did first.
    pub async fn init(
        &self,
        account: &str,
        spent: Money,
        limit: Option<Money>,
    ) -> Result<(), sqlx::Error> {
        let pool = self.pool.clone();
        let account = account.to_string();
        self.run(async move {
            sqlx::query(concat!(
                "INSERT INTO hot_accounts (name, spent, reserved, balance, touched_ms) \
                 VALUES ($1, $2, 0, $3, ",
                now_ms!(),
                ") ON CONFLICT (name) DO NOTHING"
            ))
            .bind(account)
            .bind(spent.amount())
            .bind(limit.map(Money::amount))
            .execute(&pool)
            .await
            .map(drop)
        })
        .await
    }

    /// Releases reservation `id` (nothing if it was released as expired) and adds `charge`
    /// to its accounts.
    pub async fn settle(
        &self,
        id: &str,
        accounts: &[String],
        charge: Money,
    ) -> Result<(), sqlx::Error> {
        let pool = self.pool.clone();
        let id = id.to_string();
        let names = sorted(accounts.iter().map(String::as_str));
        self.run(async move {
            if names.len() == 1 {
                // One account: one statement (one row lock after the reservation's, the
                // order the transaction below takes them in too).
                return sqlx::query(concat!(
                    "WITH released AS (DELETE FROM hot_reservations WHERE id = $1 \
                     RETURNING amount) \
                     UPDATE hot_accounts SET \
                     reserved = reserved - COALESCE((SELECT amount FROM released), 0), \
                     spent = spent + $3, touched_ms = ",
                    now_ms!(),
                    " WHERE name = ANY($2)"
                ))
                .bind(&id)
                .bind(&names)
                .bind(charge.amount())
                .execute(&pool)
                .await
                .map(drop);
            }
            let mut tx = pool.begin().await?;
            let release: Option<Decimal> =
                sqlx::query_scalar("DELETE FROM hot_reservations WHERE id = $1 RETURNING amount")
                    .bind(&id)
                    .fetch_optional(&mut *tx)
                    .await?;
            let release = release.unwrap_or_default();
            if release.is_zero() && charge.amount().is_zero() {
                return tx.commit().await;
            }
            if names.len() > 1 {
                sqlx::query(LOCK_ACCOUNTS)
                    .bind(&names)
                    .execute(&mut *tx)
                    .await?;
            }
            sqlx::query(concat!(
                "UPDATE hot_accounts SET reserved = reserved - $2, spent = spent + $3, \
                 touched_ms = ",
                now_ms!(),
                " WHERE name = ANY($1)"
            ))
            .bind(&names)
            .bind(release)
            .bind(charge.amount())
            .execute(&mut *tx)
            .await?;
            tx.commit().await
        })
        .await
    }

    /// Counts one request in every scope (names, requests and tokens per minute) if all
    /// have room; otherwise counts nothing and says which counter is full.
    pub async fn rate_admit(
        &self,
        scopes: &[(String, Option<u64>, Option<u64>)],
        now_ms: i64,
    ) -> Result<RateOutcome, sqlx::Error> {
        self.maintain();
        let pool = self.pool.clone();
        let scopes = scopes.to_vec();
        self.run(async move { rate_admit(&pool, &scopes, now_ms).await })
            .await
    }

    /// Adds a finished call's tokens to its scopes' this-minute counters.
    pub async fn add_tokens(
        &self,
        scopes: &[String],
        tokens: u64,
        now_ms: i64,
    ) -> Result<(), sqlx::Error> {
        let pool = self.pool.clone();
        let names = sorted(scopes.iter().map(String::as_str));
        self.run(async move {
            sqlx::query(
                "INSERT INTO hot_rates (scope, minute, requests, tokens) \
                 SELECT s, $2, 0, $3 FROM UNNEST($1::TEXT[]) AS s ORDER BY s COLLATE \"C\" \
                 ON CONFLICT (scope, minute) DO UPDATE SET tokens = hot_rates.tokens + EXCLUDED.tokens",
            )
            .bind(&names)
            .bind(now_ms.div_euclid(60_000))
            .bind(i64::try_from(tokens).unwrap_or(i64::MAX))
            .execute(&pool)
            .await
            .map(drop)
        })
        .await
    }

    /// An account's spent, reserved and balance (credits), `None` when not loaded.
    pub async fn peek(&self, account: &str) -> Result<Option<(Money, Money, Money)>, sqlx::Error> {
        let pool = self.pool.clone();
        let account = account.to_string();
        self.run(async move {
            let row =
                sqlx::query("SELECT spent, reserved, balance FROM hot_accounts WHERE name = $1")
                    .bind(account)
                    .fetch_optional(&pool)
                    .await?;
            let Some(row) = row else {
                return Ok(None);
            };
            let balance: Option<Decimal> = row.try_get("balance")?;
            Ok(Some((
                Money::new(row.try_get("spent")?),
                Money::new(row.try_get("reserved")?),
                Money::new(balance.unwrap_or_default()),
            )))
        })
        .await
    }

    /// Releases reservations past their deadline now; how many.
    pub async fn release_expired(&self) -> Result<u64, sqlx::Error> {
        let pool = self.pool.clone();
        self.run(async move { release_expired(&pool).await }).await
    }

    /// In the background and at most once a second (per instance, while it admits calls):
    /// releases expired reservations; once a minute also deletes idle accounts and old rate
    /// counters.
    fn maintain(&self) {
        let now = chrono::Utc::now().timestamp_millis();
        if !due(&self.last_release_ms, now, RELEASE_EVERY_MS) {
            return;
        }
        let tidy = due(&self.last_tidy_ms, now, TIDY_EVERY_MS);
        let pool = self.pool.clone();
        self.runtime.spawn(async move {
            if let Err(e) = release_expired(&pool).await {
                tracing::warn!(error = %e, "cannot release expired reservations in PostgreSQL");
            }
            if tidy {
                if let Err(e) = delete_idle(&pool).await {
                    tracing::warn!(error = %e, "cannot delete idle hot state in PostgreSQL");
                }
            }
        });
    }
}

/// Whether `every` ms passed since `last`; if so, `last` becomes `now` (one caller wins).
fn due(last: &AtomicI64, now: i64, every: i64) -> bool {
    let previous = last.load(Ordering::Relaxed);
    now - previous >= every
        && last
            .compare_exchange(previous, now, Ordering::Relaxed, Ordering::Relaxed)
            .is_ok()
}

/// Names sorted and without repeats (the order locks are taken in).
fn sorted<'a>(names: impl Iterator<Item = &'a str>) -> Vec<String> {
    names
        .collect::<BTreeSet<_>>()
        .into_iter()
        .map(str::to_string)
        .collect()
}

async fn reserve(
    pool: &PgPool,
    id: &str,
    accounts: &[(String, Option<Decimal>)],
    estimate: Decimal,
    hold_ms: i64,
) -> Result<Reserve, sqlx::Error> {
    let names = sorted(accounts.iter().map(|(n, _)| n.as_str()));
    let mut tx = pool.begin().await?;
    let mut found: HashMap<String, (Decimal, Decimal, Option<Decimal>)> = HashMap::new();
    for row in sqlx::query(LOCK_ACCOUNTS)
        .bind(&names)
        .fetch_all(&mut *tx)
        .await?
    {
        found.insert(
            row.try_get("name")?,
            (
                row.try_get("spent")?,
                row.try_get("reserved")?,
                row.try_get("balance")?,
            ),
        );
    }
    let missing: Vec<usize> = accounts
        .iter()
        .enumerate()
        .filter(|(_, (name, _))| !found.contains_key(name))
        .map(|(i, _)| i)
        .collect();
    if !missing.is_empty() {
        tx.rollback().await?;
        return Ok(Reserve::Missing(missing));
    }
    for (index, (name, limit)) in accounts.iter().enumerate() {
        let Some(&(spent, reserved, balance)) = found.get(name) else {
            continue;
        };
        let limit = limit.or(balance).unwrap_or_default();
        // An account at its limit refuses even a call that costs nothing.
        if spent >= limit || estimate > limit - spent - reserved {
            tx.rollback().await?;
            return Ok(Reserve::Refused {
                index,
                spent: Money::new(spent),
                reserved: Money::new(reserved),
                limit: Money::new(limit),
            });
        }
    }
    sqlx::query(concat!(
        "WITH held AS (INSERT INTO hot_reservations (id, amount, accounts, deadline_ms) \
         VALUES ($1, $2, $3, ",
        now_ms!(),
        " + $4)) UPDATE hot_accounts SET reserved = reserved + $2, touched_ms = ",
        now_ms!(),
        " WHERE name = ANY($3)"
    ))
    .bind(id)
    .bind(estimate)
    .bind(&names)
    .bind(hold_ms)
    .execute(&mut *tx)
    .await?;
    tx.commit().await?;
    Ok(Reserve::Reserved)
}

/// Releases up to [`RELEASE_BATCH`] reservations past their deadline; how many.
async fn release_expired(pool: &PgPool) -> Result<u64, sqlx::Error> {
    let any: bool = sqlx::query_scalar(concat!(
        "SELECT EXISTS (SELECT 1 FROM hot_reservations WHERE deadline_ms <= ",
        now_ms!(),
        ")"
    ))
    .fetch_one(pool)
    .await?;
    if !any {
        return Ok(0);
    }
    let mut tx = pool.begin().await?;
    // SKIP LOCKED: a reservation being settled or released elsewhere is theirs.
    let expired = sqlx::query(concat!(
        "DELETE FROM hot_reservations WHERE id IN (SELECT id FROM hot_reservations \
         WHERE deadline_ms <= ",
        now_ms!(),
        " ORDER BY deadline_ms LIMIT $1 FOR UPDATE SKIP LOCKED) RETURNING amount, accounts"
    ))
    .bind(RELEASE_BATCH)
    .fetch_all(&mut *tx)
    .await?;
    let mut release: BTreeMap<String, Decimal> = BTreeMap::new();
    for row in &expired {
        let amount: Decimal = row.try_get("amount")?;
        let accounts: Vec<String> = row.try_get("accounts")?;
        for account in accounts {
            *release.entry(account).or_default() += amount;
        }
    }
    let (names, amounts): (Vec<String>, Vec<Decimal>) = release.into_iter().unzip();
    if !names.is_empty() {
        sqlx::query(LOCK_ACCOUNTS)
            .bind(&names)
            .execute(&mut *tx)
            .await?;
        sqlx::query(
            "UPDATE hot_accounts AS a SET reserved = a.reserved - d.amount \
             FROM UNNEST($1::TEXT[], $2::NUMERIC[]) AS d(name, amount) WHERE a.name = d.name",
        )
        .bind(&names)
        .bind(&amounts)
        .execute(&mut *tx)
        .await?;
    }
    tx.commit().await?;
    Ok(expired.len() as u64)
}

/// Deletes accounts idle for [`ACCOUNT_IDLE_MS`] and rate counters a few minutes old.
async fn delete_idle(pool: &PgPool) -> Result<(), sqlx::Error> {
    // SKIP LOCKED: an account a call holds is not idle, and waiting for it could deadlock.
    sqlx::query(concat!(
        "DELETE FROM hot_accounts WHERE name IN (SELECT name FROM hot_accounts \
         WHERE touched_ms < ",
        now_ms!(),
        " - $1 FOR UPDATE SKIP LOCKED)"
    ))
    .bind(ACCOUNT_IDLE_MS)
    .execute(pool)
    .await?;
    sqlx::query(concat!(
        "DELETE FROM hot_rates WHERE minute < ",
        now_ms!(),
        " / 60000 - 5"
    ))
    .execute(pool)
    .await?;
    Ok(())
}

async fn rate_admit(
    pool: &PgPool,
    scopes: &[(String, Option<u64>, Option<u64>)],
    now_ms: i64,
) -> Result<RateOutcome, sqlx::Error> {
    let minute = now_ms.div_euclid(60_000);
    let into = now_ms.rem_euclid(60_000);
    let names = sorted(scopes.iter().map(|(n, _, _)| n.as_str()));
    let mut tx = pool.begin().await?;
    // Counts the request up front (locking this minute's rows in scope order); a refusal
    // rolls it back.
    let rows = sqlx::query(
        "WITH cur AS (INSERT INTO hot_rates (scope, minute, requests, tokens) \
           SELECT s, $2, 1, 0 FROM UNNEST($1::TEXT[]) AS s ORDER BY s COLLATE \"C\" \
           ON CONFLICT (scope, minute) DO UPDATE SET requests = hot_rates.requests + 1 \
           RETURNING scope, requests, tokens) \
         SELECT cur.scope, cur.requests, cur.tokens, \
                COALESCE(p.requests, 0) AS previous_requests, COALESCE(p.tokens, 0) AS previous_tokens \
         FROM cur LEFT JOIN hot_rates AS p ON p.scope = cur.scope AND p.minute = $2 - 1",
    )
    .bind(&names)
    .bind(minute)
    .fetch_all(&mut *tx)
    .await?;
    let mut counts: HashMap<String, [u64; 4]> = HashMap::new();
    for row in rows {
        let n = |col: &str| -> Result<u64, sqlx::Error> {
            Ok(u64::try_from(row.try_get::<i64, _>(col)?).unwrap_or(0))
        };
        counts.insert(
            row.try_get("scope")?,
            [
                // What was counted before this request.
                n("requests")?.saturating_sub(1),
                n("previous_requests")?,
                n("tokens")?,
                n("previous_tokens")?,
            ],
        );
    }
    let weighted = |previous: u64| {
        u64::try_from(u128::from(previous) * (60_000 - into) as u128 / 60_000).unwrap_or(u64::MAX)
    };
    for (index, (scope, rpm, tpm)) in scopes.iter().enumerate() {
        let [requests, previous_requests, tokens, previous_tokens] =
            counts.get(scope).copied().unwrap_or_default();
        let full = |what: &'static str, current: u64, previous: u64| RateOutcome::Full {
            what,
            index,
            current,
            previous,
        };
        let outcome = match (rpm, tpm) {
            (Some(rpm), _) if requests + weighted(previous_requests) + 1 > *rpm => {
                full("requests", requests, previous_requests)
            }
            (_, Some(tpm)) if tokens + weighted(previous_tokens) >= *tpm => {
                full("tokens", tokens, previous_tokens)
            }
            _ => continue,
        };
        tx.rollback().await?;
        return Ok(outcome);
    }
    tx.commit().await?;
    Ok(RateOutcome::Admitted)
}

/// A fresh database migrated by the store, for tests; `None` (saying why) when PostgreSQL
/// is unreachable and not required.
#[cfg(test)]
pub async fn test_database() -> Option<(
    meshgate_store::testdb::TestDatabase,
    std::sync::Arc<meshgate_store::PgStore>,
)> {
    let db = meshgate_store::testdb::TestDatabase::create().await?;
    let store = meshgate_store::PgStore::connect(&db.url).await.unwrap();
    Some((db, std::sync::Arc::new(store)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_store::{CreditEntry, CreditKind, Store};
    use std::sync::Arc;

    fn usd(s: &str) -> Money {
        s.parse().unwrap()
    }

    fn account(name: &str, limit: &str) -> (String, Option<Money>) {
        (format!("budget:{name}"), Some(usd(limit)))
    }

    /// Reserves, loading absent accounts as spent `0` the way `Budgets` does.
    async fn reserve(
        hot: &PgHot,
        id: &str,
        accounts: &[(String, Option<Money>)],
        estimate: Money,
    ) -> Reserve {
        loop {
            match hot.reserve(id, accounts, estimate, 60_000).await.unwrap() {
                Reserve::Missing(missing) => {
                    for i in missing {
                        hot.init(&accounts[i].0, Money::ZERO, None).await.unwrap();
                    }
                }
                outcome => return outcome,
            }
        }
    }

    /// An account's spent, reserved and balance.
    async fn row(hot: &PgHot, name: &str) -> (Money, Money, Option<Money>) {
        let row = sqlx::query("SELECT spent, reserved, balance FROM hot_accounts WHERE name = $1")
            .bind(name)
            .fetch_one(&hot.pool)
            .await
            .unwrap();
        let money = |col: &str| Money::new(row.get::<Decimal, _>(col));
        (
            money("spent"),
            money("reserved"),
            row.get::<Option<Decimal>, _>("balance").map(Money::new),
        )
    }

    async fn grant(store: &dyn Store, project: &str, amount: &str) {
        store
            .add_credit_entry(CreditEntry {
                id: format!("cre_{}", uuid::Uuid::new_v4().simple()),
                project_id: project.into(),
                kind: CreditKind::Grant,
                amount_usd: usd(amount),
                created_ms: 0,
                actor: None,
                note: None,
            })
            .await
            .unwrap();
    }

    #[tokio::test]
    async fn two_instances_share_one_limit_exactly() {
        let Some((db, _store)) = test_database().await else {
            return;
        };
        let a = PgHot::connect(&db.url).await.unwrap();
        let b = PgHot::connect(&db.url).await.unwrap();
        let key = account("key:k:total", "1");
        let both = [key.clone(), account("project:p:total", "5")];
        assert_eq!(
            reserve(&a, "r1", &both, usd("0.6")).await,
            Reserve::Reserved
        );
        // 0.6 is held through A: B may not reserve another 0.6, and nothing is reserved in
        // the project for the refused call.
        assert_eq!(
            reserve(&b, "r2", &both, usd("0.6")).await,
            Reserve::Refused {
                index: 0,
                spent: Money::ZERO,
                reserved: usd("0.6"),
                limit: usd("1")
            }
        );
        assert_eq!(row(&a, "budget:project:p:total").await.1, usd("0.6"));
        assert_eq!(
            reserve(&b, "r3", &both, usd("0.4")).await,
            Reserve::Reserved
        );
        let names: Vec<String> = both.iter().map(|(n, _)| n.clone()).collect();
        // Exact to the last digit: no units, no rounding.
        let tiny = usd("0.0000000000000000001");
        b.settle("r1", &names, tiny).await.unwrap();
        a.settle("r3", &names, usd("0.2")).await.unwrap();
        assert_eq!(
            row(&a, "budget:key:k:total").await,
            (tiny + usd("0.2"), Money::ZERO, None)
        );
        // 1 - 0.2000000000000000001 is left: that much fits, one more digit does not.
        assert!(matches!(
            reserve(&a, "r4", &both, usd("0.8")).await,
            Reserve::Refused { index: 0, .. }
        ));
        assert_eq!(
            reserve(&a, "r5", &both, usd("0.7999999999999999999")).await,
            Reserve::Reserved
        );
        // Settling twice releases nothing more.
        a.settle("r5", &names, Money::ZERO).await.unwrap();
        a.settle("r5", &names, Money::ZERO).await.unwrap();
        assert_eq!(row(&a, "budget:key:k:total").await.1, Money::ZERO);
    }

    #[tokio::test]
    async fn the_first_load_wins_and_credits_move_once_whoever_grants() {
        let Some((db, store)) = test_database().await else {
            return;
        };
        let a = PgHot::connect(&db.url).await.unwrap();
        let b = PgHot::connect(&db.url).await.unwrap();
        let key = "budget:key:k:total".to_string();
        a.init(&key, usd("0.5"), None).await.unwrap();
        // A slower instance's load of an older ledger changes nothing.
        b.init(&key, usd("0.1"), None).await.unwrap();
        assert_eq!(row(&a, &key).await.0, usd("0.5"));

        // Credits: loaded empty, refused; a grant written by any program moves the balance
        // once (no instance adds it again), and a negative balance is a limit too.
        let credits = [("budget:credits:p".to_string(), None)];
        a.init(&credits[0].0, Money::ZERO, Some(usd("-2")))
            .await
            .unwrap();
        assert!(matches!(
            a.reserve("c1", &credits, Money::ZERO, 60_000)
                .await
                .unwrap(),
            Reserve::Refused { .. }
        ));
        grant(store.as_ref(), "p", "3").await;
        assert_eq!(row(&b, &credits[0].0).await.2, Some(usd("1")));
        assert_eq!(
            b.reserve("c2", &credits, usd("1"), 60_000).await.unwrap(),
            Reserve::Reserved
        );
        assert!(matches!(
            a.reserve("c3", &credits, usd("0.000000000000000001"), 60_000)
                .await
                .unwrap(),
            Reserve::Refused { .. }
        ));

        // A project granted before any instance loaded it: the grant creates the balance
        // from the whole ledger, and a load read before the grant does not undo it.
        let stale = store.credit_balance("q").await.unwrap();
        grant(store.as_ref(), "q", "4").await;
        grant(store.as_ref(), "q", "0.25").await;
        a.init("budget:credits:q", Money::ZERO, Some(stale))
            .await
            .unwrap();
        assert_eq!(row(&a, "budget:credits:q").await.2, Some(usd("4.25")));
    }

    /// Grants racing loads: however they interleave, the balance ends at the ledger's sum.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn grants_racing_loads_count_once() {
        let Some((db, store)) = test_database().await else {
            return;
        };
        let hot = Arc::new(PgHot::connect(&db.url).await.unwrap());
        let mut tasks = tokio::task::JoinSet::new();
        for i in 0..20 {
            let project = format!("p{i}");
            let (store, hot) = (store.clone(), hot.clone());
            tasks.spawn(async move {
                grant(store.as_ref(), &project, "1").await;
                let loading = async {
                    let balance = store.credit_balance(&project).await.unwrap();
                    hot.init(
                        &format!("budget:credits:{project}"),
                        Money::ZERO,
                        Some(balance),
                    )
                    .await
                    .unwrap();
                };
                let granting = grant(store.as_ref(), &project, "2");
                tokio::join!(loading, granting);
            });
        }
        while let Some(done) = tasks.join_next().await {
            done.unwrap();
        }
        for i in 0..20 {
            assert_eq!(
                row(&hot, &format!("budget:credits:p{i}")).await.2,
                Some(usd("3")),
                "project p{i}"
            );
        }
    }

    #[tokio::test]
    async fn a_reservation_past_its_deadline_is_released_by_the_next_call() {
        let Some((db, _store)) = test_database().await else {
            return;
        };
        let hot = PgHot::connect(&db.url).await.unwrap();
        // No background release (which could take the expired one before we look): the
        // refused reserve below must release it itself.
        hot.last_release_ms.store(i64::MAX / 2, Ordering::Relaxed);
        let key = [account("key:crashed:total", "1")];
        hot.init(&key[0].0, Money::ZERO, None).await.unwrap();
        // Held for 0 ms: as if its instance died mid-call.
        assert_eq!(
            hot.reserve("dead", &key, usd("1"), 0).await.unwrap(),
            Reserve::Reserved
        );
        assert_eq!(row(&hot, &key[0].0).await.1, usd("1"));
        // The next reserve is refused by it, releases it, and fits.
        assert_eq!(
            hot.reserve("next", &key, usd("1"), 60_000).await.unwrap(),
            Reserve::Reserved
        );
        assert_eq!(row(&hot, &key[0].0).await.1, usd("1"));
        // Settling the released one later adds its charge but releases nothing twice.
        hot.settle("dead", &[key[0].0.clone()], usd("0.25"))
            .await
            .unwrap();
        assert_eq!(row(&hot, &key[0].0).await, (usd("0.25"), usd("1"), None));
        // A live reservation is not released.
        assert_eq!(hot.release_expired().await.unwrap(), 0);
    }

    /// Three instances on a fresh database with `accounts` loaded empty.
    async fn three_instances(
        accounts: &[&(String, Option<Money>)],
    ) -> Option<(meshgate_store::testdb::TestDatabase, Vec<Arc<PgHot>>)> {
        let (db, _store) = test_database().await?;
        let mut instances = Vec::new();
        for _ in 0..3 {
            instances.push(Arc::new(PgHot::connect(&db.url).await.unwrap()));
        }
        for a in accounts {
            instances[0].init(&a.0, Money::ZERO, None).await.unwrap();
        }
        Some((db, instances))
    }

    /// Many calls at once on three instances, over two accounts named in either order:
    /// exactly as many fit as the limit allows, and spending never passes it.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn concurrent_reserves_never_overcommit() {
        let key = account("key:race:total", "1");
        let project = account("project:race:total", "100");
        let Some((_db, instances)) = three_instances(&[&key, &project]).await else {
            return;
        };
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..60 {
            let hot = instances[i % 3].clone();
            let accounts = if i % 2 == 0 {
                vec![key.clone(), project.clone()]
            } else {
                vec![project.clone(), key.clone()]
            };
            calls.spawn(async move {
                hot.reserve(&format!("r{i}"), &accounts, usd("0.1"), 60_000)
                    .await
            });
        }
        let mut reserved = 0;
        while let Some(outcome) = calls.join_next().await {
            if outcome.unwrap().unwrap() == Reserve::Reserved {
                reserved += 1;
            }
        }
        assert_eq!(reserved, 10);
        let names = vec![key.0.clone(), project.0.clone()];
        for i in 0..60 {
            instances[0]
                .settle(&format!("r{i}"), &names, Money::ZERO)
                .await
                .unwrap();
        }

        // Reserve, then settle at a charge below the estimate, until the key is used up.
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..30 {
            let hot = instances[i % 3].clone();
            let accounts = vec![key.clone(), project.clone()];
            let names = names.clone();
            calls.spawn(async move {
                let mut charged = Money::ZERO;
                for n in 0.. {
                    let id = format!("s{i}-{n}");
                    match hot
                        .reserve(&id, &accounts, usd("0.03"), 60_000)
                        .await
                        .unwrap()
                    {
                        Reserve::Reserved => {
                            hot.settle(&id, &names, usd("0.021")).await.unwrap();
                            charged += usd("0.021");
                        }
                        _ => return charged,
                    }
                }
                charged
            });
        }
        let mut charged = Money::ZERO;
        while let Some(c) = calls.join_next().await {
            charged += c.unwrap();
        }
        let (spent, held, _) = row(&instances[1], &key.0).await;
        assert_eq!(spent, charged);
        assert_eq!(held, Money::ZERO);
        assert!(charged <= usd("1"), "charged {charged}");
        // Calls stopped when the key was (nearly) used up, not for another reason.
        assert!(charged >= usd("0.5"), "charged {charged}");
        assert_eq!(row(&instances[2], &project.0).await.0, charged);
    }

    /// Reservations that expire at once, settled while other calls release them as expired:
    /// each is released exactly once (nothing stays reserved, nothing goes negative) and
    /// every charge counts, without deadlocks between settling, releasing and reserving.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn settling_racing_expiry_releases_each_reservation_once() {
        let key = account("key:expiry:total", "1000");
        let project = account("project:expiry:total", "1000");
        let Some((_db, instances)) = three_instances(&[&key, &project]).await else {
            return;
        };
        let names = vec![key.0.clone(), project.0.clone()];
        let mut calls = tokio::task::JoinSet::new();
        for i in 0..60 {
            let hot = instances[i % 3].clone();
            let accounts = if i % 2 == 0 {
                vec![key.clone(), project.clone()]
            } else {
                vec![project.clone(), key.clone()]
            };
            let names = names.clone();
            calls.spawn(async move {
                let id = format!("x{i}");
                // Held 0 ms: expired as soon as it is made.
                let reserved = hot.reserve(&id, &accounts, usd("1"), 0).await.unwrap();
                assert_eq!(reserved, Reserve::Reserved);
                if i % 3 == 0 {
                    hot.release_expired().await.unwrap();
                }
                hot.settle(&id, &names, usd("0.5")).await.unwrap();
            });
        }
        while let Some(done) = calls.join_next().await {
            done.unwrap();
        }
        // Whatever the settlements did not release, the next release does.
        while instances[1].release_expired().await.unwrap() > 0 {}
        for name in &names {
            assert_eq!(
                row(&instances[2], name).await,
                (usd("30"), Money::ZERO, None)
            );
        }
        let left: i64 = sqlx::query_scalar("SELECT COUNT(*) FROM hot_reservations")
            .fetch_one(&instances[0].pool)
            .await
            .unwrap();
        assert_eq!(left, 0);
    }
}
