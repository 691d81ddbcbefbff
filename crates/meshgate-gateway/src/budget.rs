//! Budgets and credits that hold under concurrency: before a call is forwarded its largest
//! possible charge is reserved in every account it spends from (key, project, delegation,
//! credits); when it settles, the exact charge replaces the reservation.
//!
//! Two kinds of backend behind [`Budgets::admit`] and [`Budgets::settle`]:
//! - in memory (one instance: SQLite, or PostgreSQL with `postgres_limits = false`): each
//!   account is loaded from the store the first time a call needs it (one query per
//!   account and period; afterwards the hot path touches no database) and then follows
//!   every settlement of this instance;
//! - shared by a fleet ([`Shared`]): in Redis (`redis_url`, atomic scripts, [`crate::hot`])
//!   or, without Redis, in PostgreSQL (transactions with row locks, [`crate::pghot`]). The
//!   same accounts, loaded from the database's ledger once and then reserved and settled
//!   atomically by every instance, so grants and spending of any instance count on all.

use crate::shared::{Reserve, Shared};
use meshgate_store::{SpendScope, Store};
use meshgate_types::Money;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

/// How long a shared reservation holds before any instance may release it: longer than
/// any call (an instance that dies mid-call leaves it behind).
pub const SHARED_HOLD_MS: u64 = 15 * 60 * 1000;

/// One account a call may spend from.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Account {
    /// Everything a key (or a delegation's parent key) spent, ever, today or this month.
    Key(String, Period),
    Project(String, Period),
    Delegation(String),
    /// A project's credit balance.
    Credits(String),
}

/// A spend period, in UTC: all time, one day (days since the epoch) or one month
/// (`year * 12 + month0`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Period {
    Total,
    Day(i64),
    Month(i64),
}

impl Period {
    pub fn day(now_ms: i64) -> Period {
        Period::Day(now_ms.div_euclid(86_400_000))
    }

    pub fn month(now_ms: i64) -> Period {
        use chrono::Datelike;
        let date = chrono::DateTime::from_timestamp_millis(now_ms).unwrap_or_default();
        Period::Month(i64::from(date.year()) * 12 + i64::from(date.month0()))
    }

    /// The first millisecond of the period; `None` for all time.
    fn start_ms(self) -> Option<i64> {
        match self {
            Period::Total => None,
            Period::Day(d) => Some(d * 86_400_000),
            Period::Month(m) => {
                let year = i32::try_from(m.div_euclid(12)).ok()?;
                let month = u32::try_from(m.rem_euclid(12) + 1).ok()?;
                let date = chrono::NaiveDate::from_ymd_opt(year, month, 1)?;
                Some(date.and_hms_opt(0, 0, 0)?.and_utc().timestamp_millis())
            }
        }
    }

    fn describe(self) -> &'static str {
        match self {
            Period::Total => "total",
            Period::Day(_) => "daily",
            Period::Month(_) => "monthly",
        }
    }
}

/// An account with the limit this call is held to (credits: the balance itself).
#[derive(Debug, Clone)]
pub struct Need {
    pub account: Account,
    /// `None` for credits, whose limit is the balance.
    pub limit: Option<Money>,
}

#[derive(Debug, Default, Clone, Copy)]
struct State {
    /// Charged so far (credits: the balance when loaded, plus grants since).
    spent: Money,
    reserved: Money,
    /// Credits only: what the account may spend in all.
    balance: Money,
}

/// Why a call may not spend, worded for the client.
#[derive(Debug, Clone, PartialEq)]
pub struct BudgetRefusal {
    pub account: Account,
    pub message: String,
}

/// Held by the settlement of an admitted call: what it reserved and where.
#[derive(Debug, Default)]
pub struct Reservation {
    accounts: Vec<Account>,
    amount: Money,
    /// The reservation's id in the shared state, when shared.
    shared_id: Option<String>,
}

/// How the refusal of a call whose shared accounts Redis could not check begins.
pub const REDIS_UNAVAILABLE: &str = "cannot check budgets in Redis";

/// Why a call may not reserve: an account refused, or the shared state cannot be reached
/// (then the call is refused: budgets that cannot be checked fail closed).
#[derive(Debug)]
pub enum BudgetDenial {
    Refused(BudgetRefusal),
    Unavailable(String),
}

/// Every account of this instance, or of the fleet when `shared` is set.
pub struct Budgets {
    store: Arc<dyn Store>,
    accounts: Mutex<HashMap<Account, State>>,
    shared: Option<Shared>,
    /// The database announces every credit entry to every instance (PostgreSQL): grants
    /// move balances when announced, here too, rather than when made.
    announced_credits: bool,
}

impl Account {
    /// The account's name in the shared state (in Redis: its key, without the prefix).
    fn shared_name(&self) -> String {
        fn period(p: &Period) -> String {
            match p {
                Period::Total => "total".into(),
                Period::Day(d) => format!("day:{d}"),
                Period::Month(m) => format!("month:{m}"),
            }
        }
        match self {
            Account::Key(id, p) => format!("budget:key:{id}:{}", period(p)),
            Account::Project(id, p) => format!("budget:project:{id}:{}", period(p)),
            Account::Delegation(id) => format!("budget:delegation:{id}"),
            Account::Credits(project) => format!("budget:credits:{project}"),
        }
    }
}

impl Budgets {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Budgets {
            store,
            accounts: Mutex::new(HashMap::new()),
            shared: None,
            announced_credits: false,
        }
    }

    /// In-memory accounts whose credit grants arrive as the database's announcements
    /// ([`Budgets::apply_announced_credits`]), so that a grant made on any instance counts
    /// on all.
    pub fn following_announced_credits(mut self) -> Self {
        self.announced_credits = true;
        self
    }

    /// A credit entry announced by the database (PostgreSQL, accounts in memory).
    pub fn apply_announced_credits(&self, project: &str, amount: Money) {
        if self.announced_credits {
            self.adjust_loaded_credits(project, amount);
        }
    }

    /// Accounts shared by every instance using the same Redis or PostgreSQL database.
    pub fn shared(store: Arc<dyn Store>, hot: Shared) -> Self {
        Budgets {
            shared: Some(hot),
            ..Budgets::new(store)
        }
    }

    /// Reserves `estimate` in every account of the call, or nothing (see [`Budgets::reserve`]).
    pub async fn admit(
        &self,
        needs: &[Need],
        estimate: Money,
    ) -> Result<Reservation, BudgetDenial> {
        let Some(hot) = &self.shared else {
            self.load(needs)
                .await
                .map_err(|e| BudgetDenial::Unavailable(format!("cannot read budgets: {e}")))?;
            return self.reserve(needs, estimate).map_err(BudgetDenial::Refused);
        };
        if needs.is_empty() {
            return Ok(Reservation::default());
        }
        let unavailable = |e: crate::shared::Unreachable| {
            BudgetDenial::Unavailable(format!(
                "cannot check budgets in {}: {}",
                e.backend, e.error
            ))
        };
        let accounts: Vec<(String, Option<Money>)> = needs
            .iter()
            .map(|n| (n.account.shared_name(), n.limit))
            .collect();
        let id = uuid::Uuid::new_v4().to_string();
        // At most two rounds: the second finds every account loaded.
        for _ in 0..3 {
            match hot
                .reserve(&id, &accounts, estimate, SHARED_HOLD_MS)
                .await
                .map_err(unavailable)?
            {
                Reserve::Reserved => {
                    return Ok(Reservation {
                        accounts: needs.iter().map(|n| n.account.clone()).collect(),
                        amount: estimate,
                        shared_id: Some(id),
                    })
                }
                Reserve::TooLarge => {
                    return Err(BudgetDenial::Refused(BudgetRefusal {
                        account: needs[0].account.clone(),
                        message: format!(
                            "this call may cost up to ${estimate}, more than any budget holds"
                        ),
                    }))
                }
                Reserve::Refused {
                    index,
                    spent,
                    reserved,
                    limit,
                } => {
                    let need = &needs[index.min(needs.len() - 1)];
                    let state = State {
                        spent,
                        reserved,
                        balance: limit,
                    };
                    return Err(BudgetDenial::Refused(refusal(need, limit, state, estimate)));
                }
                Reserve::Missing(missing) => {
                    for index in missing {
                        let Some(need) = needs.get(index) else {
                            continue;
                        };
                        let loaded = self.load_state(&need.account).await.map_err(|e| {
                            BudgetDenial::Unavailable(format!("cannot read budgets: {e}"))
                        })?;
                        let (spent, limit) = match need.account {
                            Account::Credits(_) => (Money::ZERO, Some(loaded.balance)),
                            _ => (loaded.spent, None),
                        };
                        hot.init(&need.account.shared_name(), spent, limit)
                            .await
                            .map_err(unavailable)?;
                    }
                }
            }
        }
        Err(BudgetDenial::Unavailable(format!(
            "budgets in {} keep disappearing; is another program deleting meshgate's hot state?",
            hot.backend()
        )))
    }

    /// An account as the database has it now.
    async fn load_state(&self, account: &Account) -> Result<State, meshgate_store::StoreError> {
        Ok(match account {
            Account::Credits(project) => State {
                balance: self.store.credit_balance(project).await?,
                ..State::default()
            },
            Account::Key(id, period) => State {
                spent: self
                    .store
                    .spend(&SpendScope::Key(id.clone()), period.start_ms())
                    .await?,
                ..State::default()
            },
            Account::Project(id, period) => State {
                spent: self
                    .store
                    .spend(&SpendScope::Project(id.clone()), period.start_ms())
                    .await?,
                ..State::default()
            },
            Account::Delegation(id) => State {
                spent: self
                    .store
                    .spend(&SpendScope::Delegation(id.clone()), None)
                    .await?,
                ..State::default()
            },
        })
    }

    /// Loads the accounts a call needs that this instance has not seen yet.
    pub async fn load(&self, needs: &[Need]) -> Result<(), meshgate_store::StoreError> {
        for need in needs {
            if self.lock().contains_key(&need.account) {
                continue;
            }
            let state = self.load_state(&need.account).await?;
            // Another call may have loaded it meanwhile; the first load wins.
            self.lock().entry(need.account.clone()).or_insert(state);
        }
        Ok(())
    }

    /// Reserves `estimate` in every account, or nothing if one cannot afford it. An
    /// account already at its limit refuses even a call that costs nothing.
    pub fn reserve(&self, needs: &[Need], estimate: Money) -> Result<Reservation, BudgetRefusal> {
        let mut accounts = self.lock();
        for need in needs {
            let state = accounts.get(&need.account).copied().unwrap_or_default();
            let limit = need.limit.unwrap_or(state.balance);
            let left = limit - state.spent - state.reserved;
            if state.spent >= limit || estimate > left {
                return Err(refusal(need, limit, state, estimate));
            }
        }
        for need in needs {
            accounts.entry(need.account.clone()).or_default().reserved += estimate;
        }
        Ok(Reservation {
            accounts: needs.iter().map(|n| n.account.clone()).collect(),
            amount: estimate,
            shared_id: None,
        })
    }

    /// Replaces a reservation with what the call was really charged.
    pub fn settle(&self, reservation: &mut Reservation, charged: Money) {
        let accounts_of_call = std::mem::take(&mut reservation.accounts);
        if accounts_of_call.is_empty() {
            return;
        }
        if let (Some(hot), Some(id)) = (&self.shared, reservation.shared_id.take()) {
            return settle_shared(hot.clone(), id, &accounts_of_call, charged);
        }
        let mut accounts = self.lock();
        for account in accounts_of_call {
            if let Some(state) = accounts.get_mut(&account) {
                state.reserved -= reservation.amount;
                state.spent += charged;
            }
        }
    }

    /// Credits granted (or taken back) through this instance, once in the database.
    pub async fn adjust_credits(&self, project: &str, amount: Money) {
        if let Some(hot) = &self.shared {
            let account = Account::Credits(project.to_string()).shared_name();
            if let Err(e) = hot.grant(&account, amount).await {
                // The grant is in the database: the shared balance misses it until it is
                // reloaded (after a day without calls).
                tracing::warn!(error = %e, project, "cannot add credits to the shared balance");
            }
            return;
        }
        if !self.announced_credits {
            self.adjust_loaded_credits(project, amount);
        }
    }

    /// Rereads the loaded credit balances from the database, keeping what calls in flight
    /// hold (after the change feed reconnected: grants announced meanwhile were missed).
    pub async fn reload_credits(&self) -> Result<(), meshgate_store::StoreError> {
        if !self.announced_credits {
            return Ok(());
        }
        let projects: Vec<String> = self
            .lock()
            .keys()
            .filter_map(|a| match a {
                Account::Credits(p) => Some(p.clone()),
                _ => None,
            })
            .collect();
        for project in projects {
            let balance = self.store.credit_balance(&project).await?;
            if let Some(state) = self.lock().get_mut(&Account::Credits(project)) {
                state.balance = balance;
                state.spent = Money::ZERO;
            }
        }
        Ok(())
    }

    fn adjust_loaded_credits(&self, project: &str, amount: Money) {
        if let Some(state) = self.lock().get_mut(&Account::Credits(project.to_string())) {
            state.balance += amount;
        }
    }

    /// What each account has spent, holds in reservations and may spend (credits: the
    /// balance): from the shared state when shared, else this instance's (loaded if need
    /// be). A shared account not loaded yet is read from the ledger.
    pub async fn current(
        &self,
        needs: &[Need],
    ) -> Result<Vec<(Money, Money, Money)>, meshgate_store::StoreError> {
        let Some(hot) = &self.shared else {
            self.load(needs).await?;
            return Ok(needs
                .iter()
                .map(|n| self.snapshot(&n.account).unwrap_or_default())
                .collect());
        };
        let mut current = Vec::with_capacity(needs.len());
        for need in needs {
            let peeked = hot.peek(&need.account.shared_name()).await.map_err(|e| {
                meshgate_store::StoreError::Corrupt(format!("cannot read budgets in {e}"))
            })?;
            current.push(match peeked {
                Some(state) => state,
                None => {
                    let s = self.load_state(&need.account).await?;
                    (s.spent, s.reserved, s.balance)
                }
            });
        }
        Ok(current)
    }

    /// What an account has spent, holds in reservations and may spend (credits: the
    /// balance), as this instance sees it.
    pub fn snapshot(&self, account: &Account) -> Option<(Money, Money, Money)> {
        self.lock()
            .get(account)
            .map(|s| (s.spent, s.reserved, s.balance))
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Account, State>> {
        // A panic while holding the lock cannot leave a half-updated account (every update
        // is one statement), so a poisoned map is still sound.
        self.accounts
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

/// Settles a shared reservation in the background (settlement runs where no await fits).
fn settle_shared(hot: Shared, id: String, accounts: &[Account], charged: Money) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else {
        return;
    };
    let names: Vec<String> = accounts.iter().map(Account::shared_name).collect();
    runtime.spawn(async move {
        if let Err(e) = hot.settle(&id, &names, charged).await {
            tracing::warn!(error = %e, "cannot settle a shared reservation; it expires on its own");
        }
    });
}

fn refusal(need: &Need, limit: Money, state: State, estimate: Money) -> BudgetRefusal {
    let left = limit - state.spent - state.reserved;
    let what = match &need.account {
        Account::Credits(project) => {
            if state.spent >= limit {
                format!(
                    "project {project} has no credits left (balance ${})",
                    limit - state.spent
                )
            } else {
                format!(
                    "project {project} has ${left} of credits available (after calls in flight), \
                     and this call may cost up to ${estimate}"
                )
            }
        }
        Account::Key(id, period) | Account::Project(id, period) => {
            let whose = if matches!(need.account, Account::Key(..)) {
                "key"
            } else {
                "project"
            };
            let period = period.describe();
            if state.spent >= limit {
                format!("the {period} budget of {whose} {id} (${limit}) is used up")
            } else {
                format!(
                    "the {period} budget of {whose} {id} has ${left} left (after calls in flight), \
                     and this call may cost up to ${estimate}"
                )
            }
        }
        Account::Delegation(id) => {
            if state.spent >= limit {
                format!("delegation {id} has used up its budget of ${limit}")
            } else {
                format!(
                    "delegation {id} has ${left} of its budget left, and this call may cost up to ${estimate}"
                )
            }
        }
    };
    let hint = if state.spent >= limit {
        ""
    } else {
        "; lower max_tokens or shorten the prompt"
    };
    BudgetRefusal {
        account: need.account.clone(),
        message: format!("{what}{hint}"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use meshgate_store::SqliteStore;

    fn money(s: &str) -> Money {
        s.parse().unwrap()
    }

    async fn budgets() -> Budgets {
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_url("sqlite::memory:").await.unwrap());
        Budgets::new(store)
    }

    #[tokio::test]
    async fn reservations_hold_the_limit() {
        let b = budgets().await;
        let need = Need {
            account: Account::Key("k".into(), Period::Total),
            limit: Some(money("1")),
        };
        b.load(std::slice::from_ref(&need)).await.unwrap();
        let mut r1 = b
            .reserve(std::slice::from_ref(&need), money("0.6"))
            .unwrap();
        // 0.6 is held: another 0.6 does not fit, 0.4 does.
        let refused = b
            .reserve(std::slice::from_ref(&need), money("0.6"))
            .unwrap_err();
        assert!(refused.message.contains("$0.4 left"), "{}", refused.message);
        let mut r2 = b
            .reserve(std::slice::from_ref(&need), money("0.4"))
            .unwrap();
        b.settle(&mut r1, money("0.1"));
        b.settle(&mut r2, money("0.2"));
        assert_eq!(
            b.snapshot(&need.account),
            Some((money("0.3"), money("0"), money("0")))
        );
        // Settling twice does nothing.
        b.settle(&mut r1, money("5"));
        assert_eq!(b.snapshot(&need.account).unwrap().0, money("0.3"));
        b.settle(
            &mut b.reserve(std::slice::from_ref(&need), money("0")).unwrap(),
            money("0.7"),
        );
        let spent = b
            .reserve(std::slice::from_ref(&need), money("0"))
            .unwrap_err();
        assert!(spent.message.contains("used up"), "{}", spent.message);
    }

    #[tokio::test]
    async fn credits_are_the_balance() {
        let b = budgets().await;
        let need = Need {
            account: Account::Credits("p".into()),
            limit: None,
        };
        b.load(std::slice::from_ref(&need)).await.unwrap();
        assert!(b.reserve(std::slice::from_ref(&need), money("0")).is_err());
        b.adjust_credits("p", money("2")).await;
        let mut r = b
            .reserve(std::slice::from_ref(&need), money("1.5"))
            .unwrap();
        b.settle(&mut r, money("2"));
        let refused = b
            .reserve(std::slice::from_ref(&need), money("0"))
            .unwrap_err();
        assert!(
            refused.message.contains("no credits left"),
            "{}",
            refused.message
        );
    }

    /// Two instances' budgets on one Redis: what one reserves, spends or grants, the other
    /// sees; accounts are loaded from the database the first time.
    #[tokio::test]
    async fn shared_budgets_are_one_account() {
        let Some(hot) = crate::hot::test_redis("budgets").await else {
            return;
        };
        let hot = Arc::new(hot);
        let store: Arc<dyn Store> =
            Arc::new(SqliteStore::open_url("sqlite::memory:").await.unwrap());
        // The tiny charge is rounded up to one unit (1e-12): exactly that much is gone.
        one_account(
            store,
            hot.clone().into(),
            "0.999999999999",
            "0.000000000001",
        )
        .await;
        hot.delete_all().await.unwrap();
    }

    /// The same on PostgreSQL alone: exact to the last digit, no units.
    #[tokio::test]
    async fn budgets_shared_through_postgresql_are_one_account() {
        let Some((db, store)) = crate::pghot::test_database().await else {
            return;
        };
        let hot = crate::pghot::PgHot::connect(&db.url).await.unwrap();
        one_account(
            store,
            Arc::new(hot).into(),
            "0.999999999999999",
            "0.000000000000000001",
        )
        .await;
    }

    /// Two instances on `shared`; after a charge of 1e-15, `fits` is what is left and
    /// `over` more is refused.
    async fn one_account(store: Arc<dyn Store>, shared: Shared, fits: &str, over: &str) {
        let a = Budgets::shared(store.clone(), shared.clone());
        let b = Budgets::shared(store.clone(), shared);
        let key = Need {
            account: Account::Key("k".into(), Period::Day(20_000)),
            limit: Some(money("1")),
        };
        let credits = Need {
            account: Account::Credits("p".into()),
            limit: None,
        };
        let mut r1 = a
            .admit(std::slice::from_ref(&key), money("0.6"))
            .await
            .unwrap();
        let refused = b.admit(std::slice::from_ref(&key), money("0.6")).await;
        match refused {
            Err(BudgetDenial::Refused(r)) => {
                assert!(r.message.contains("$0.4 left"), "{}", r.message)
            }
            other => panic!("{other:?}"),
        }
        a.settle(&mut r1, money("0.000000000000001"));
        // Settlement runs in the background; wait for the reservation to go.
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
        let mut r2 = loop {
            match b.admit(std::slice::from_ref(&key), money(fits)).await {
                Ok(r) => break r,
                Err(e) => assert!(std::time::Instant::now() < deadline, "{e:?}"),
            }
            tokio::task::yield_now().await;
        };
        assert!(b
            .admit(std::slice::from_ref(&key), money(over))
            .await
            .is_err());
        b.settle(&mut r2, money("0"));

        assert!(b
            .admit(std::slice::from_ref(&credits), money("0"))
            .await
            .is_err());
        // As the admin API grants: the entry in the database, then the instance told.
        store
            .add_credit_entry(meshgate_store::CreditEntry {
                id: "cre_1".into(),
                project_id: "p".into(),
                kind: meshgate_store::CreditKind::Grant,
                amount_usd: money("2"),
                created_ms: 0,
                actor: None,
                note: None,
            })
            .await
            .unwrap();
        a.adjust_credits("p", money("2")).await;
        let mut r3 = b
            .admit(std::slice::from_ref(&credits), money("2"))
            .await
            .unwrap();
        // Granted once, not once per instance told.
        assert!(a
            .admit(std::slice::from_ref(&credits), money(over))
            .await
            .is_err());
        b.settle(&mut r3, money("0"));
    }

    #[test]
    fn periods_start_in_utc() {
        // 2026-11-23T10:00:00Z
        let now = 1_795_428_000_000;
        assert_eq!(Period::day(now).start_ms(), Some(1_795_392_000_000));
        assert_eq!(Period::month(now).start_ms(), Some(1_793_491_200_000));
    }
}
