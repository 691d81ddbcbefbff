//! Budgets and credits that hold under concurrency: before a call is forwarded its largest
//! possible charge is reserved in every account it spends from (key, project, delegation,
//! credits); when it settles, the exact charge replaces the reservation.
//!
//! Accounts live in memory. Each is loaded from the store the first time a call needs it
//! (one query per account and period; afterwards the hot path touches no database) and
//! then follows every settlement of this instance. Calls of other instances are seen when
//! the account is loaded again (the next period); a fleet shares them through Redis.

use meshgate_store::{SpendScope, Store};
use meshgate_types::Money;
use std::collections::HashMap;
use std::sync::{Arc, Mutex};

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
}

/// Every account of this instance.
pub struct Budgets {
    store: Arc<dyn Store>,
    accounts: Mutex<HashMap<Account, State>>,
}

impl Budgets {
    pub fn new(store: Arc<dyn Store>) -> Self {
        Budgets {
            store,
            accounts: Mutex::new(HashMap::new()),
        }
    }

    /// Loads the accounts a call needs that this instance has not seen yet.
    pub async fn load(&self, needs: &[Need]) -> Result<(), meshgate_store::StoreError> {
        for need in needs {
            if self.lock().contains_key(&need.account) {
                continue;
            }
            let state = match &need.account {
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
            };
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
        })
    }

    /// Replaces a reservation with what the call was really charged.
    pub fn settle(&self, reservation: &mut Reservation, charged: Money) {
        let accounts_of_call = std::mem::take(&mut reservation.accounts);
        if accounts_of_call.is_empty() {
            return;
        }
        let mut accounts = self.lock();
        for account in accounts_of_call {
            if let Some(state) = accounts.get_mut(&account) {
                state.reserved -= reservation.amount;
                state.spent += charged;
            }
        }
    }

    /// Credits granted (or taken back) after the balance was loaded.
    pub fn adjust_credits(&self, project: &str, amount: Money) {
        if let Some(state) = self.lock().get_mut(&Account::Credits(project.to_string())) {
            state.balance += amount;
        }
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
        b.adjust_credits("p", money("2"));
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

    #[test]
    fn periods_start_in_utc() {
        // 2026-11-23T10:00:00Z
        let now = 1_795_428_000_000;
        assert_eq!(Period::day(now).start_ms(), Some(1_795_392_000_000));
        assert_eq!(Period::month(now).start_ms(), Some(1_793_491_200_000));
    }
}
