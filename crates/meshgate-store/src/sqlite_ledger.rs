//! The SQLite ledger's own connection, which writes usage events and their credit debits
//! for a file database: one transaction per batch, on the calling thread, each value bound
//! where it lies. Every call's event takes this path; through sqlx each of a row's 39
//! values would be copied, and each statement handed to sqlx's worker thread and back.
//! Everything else goes through the pool; SQLite (WAL) serialises the writers.

use crate::model::{CreditEntry, UsageEvent};
use crate::sql::{
    bind_as_is, bind_event, event_json, insert_usage_sql, Bind, CREDIT_COLUMNS, INSERT_ROWS,
};
use crate::Result;
use meshgate_types::Money;
use rusqlite::{CachedStatement, Connection, ToSql, TransactionBehavior};
use std::path::Path;
use std::sync::Mutex;
use std::time::Duration;

pub(crate) struct LedgerConnection(Mutex<Connection>);

impl LedgerConnection {
    /// Opens `path`, a database the pool has created and migrated (already in WAL mode).
    pub(crate) fn open(path: &Path) -> Result<LedgerConnection> {
        let conn = Connection::open(path)?;
        conn.busy_timeout(Duration::from_secs(10))?;
        // As the pool's connections: see `SqliteStore::file_options`.
        conn.execute_batch("PRAGMA synchronous = NORMAL; PRAGMA foreign_keys = ON;")?;
        Ok(LedgerConnection(Mutex::new(conn)))
    }

    /// Inserts `events` and `debits` in one transaction, with the pool's multi-row INSERTs;
    /// blocks (outside the async workers when the runtime has several).
    pub(crate) fn insert(&self, events: &[UsageEvent], debits: &[CreditEntry]) -> Result<()> {
        let json = event_json(events)?;
        off_the_workers(|| {
            let mut conn = self
                .0
                .lock()
                .unwrap_or_else(std::sync::PoisonError::into_inner);
            // IMMEDIATE: take the write lock (or wait for it) before reading anything.
            let tx = conn.transaction_with_behavior(TransactionBehavior::Immediate)?;
            let mut rest = events.iter().zip(json.iter());
            let mut left = events.len();
            for (slot, &rows) in INSERT_ROWS.iter().enumerate() {
                while left >= rows {
                    let mut statement = tx.prepare_cached(insert_usage_sql(slot, false))?;
                    let mut row = Row::new(&mut statement);
                    for (e, (usage_json, annotations_json)) in rest.by_ref().take(rows) {
                        row = bind_event(row, e, usage_json, annotations_json);
                    }
                    row.done()?;
                    statement.raw_execute()?;
                    left -= rows;
                }
            }
            if !debits.is_empty() {
                let mut credit = tx.prepare_cached(&format!(
                    "INSERT INTO credit_entries ({CREDIT_COLUMNS}) VALUES (?, ?, ?, ?, ?, ?, ?)"
                ))?;
                for e in debits {
                    credit.execute((
                        &e.id,
                        &e.project_id,
                        e.kind.as_str(),
                        e.amount_usd.to_string(),
                        e.created_ms,
                        &e.actor,
                        &e.note,
                    ))?;
                }
            }
            tx.commit()?;
            Ok(())
        })
    }
}

/// Runs blocking `f` with [`tokio::task::block_in_place`] on a multi-threaded runtime, so
/// that the worker's other tasks move on meanwhile; elsewhere (a current-thread runtime, no
/// runtime) runs it as it is.
fn off_the_workers<T>(f: impl FnOnce() -> T) -> T {
    match tokio::runtime::Handle::try_current() {
        Ok(h) if h.runtime_flavor() == tokio::runtime::RuntimeFlavor::MultiThread => {
            tokio::task::block_in_place(f)
        }
        _ => f(),
    }
}

/// Binds values to a statement's parameters in order, keeping the first error.
struct Row<'s, 'c> {
    statement: &'s mut CachedStatement<'c>,
    next: usize,
    error: Option<rusqlite::Error>,
}

impl<'s, 'c> Row<'s, 'c> {
    fn new(statement: &'s mut CachedStatement<'c>) -> Self {
        Row {
            statement,
            next: 1,
            error: None,
        }
    }

    fn bind(mut self, value: impl ToSql) -> Self {
        if self.error.is_none() {
            if let Err(e) = self.statement.raw_bind_parameter(self.next, value) {
                self.error = Some(e);
            }
        }
        self.next += 1;
        self
    }

    fn done(self) -> rusqlite::Result<()> {
        self.error.map_or(Ok(()), Err)
    }
}

impl<'q> Bind<'q> for Row<'_, '_> {
    bind_as_is!('q);

    /// Exact decimal text, as the pool writes it.
    fn money(self, v: Option<Money>) -> Self {
        self.bind(v.map(|m| m.to_string()))
    }
}
