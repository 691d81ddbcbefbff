//! `PgStore`: the PostgreSQL backend, which several gateway instances share. Money is
//! NUMERIC and summed in the database; statements both engines run alike come from `sql`,
//! and only PostgreSQL's own (sums, JSON, migrations, notifications) are written here.
//!
//! Changes to the records gateways cache are announced by triggers (see
//! `migrations/postgres/0002_change_notifications.sql`) on the channel `meshgate_changes`;
//! [`PgStore::changes`] listens there and reconnects on its own.

use crate::common::impl_store;
use crate::model::{
    AuditEvent, AuditFilter, CreditEntry, GroupBy, KeyRecord, NewKey, Policy, ProjectRecord,
    ProviderCredential, ResourceOwner, SigningKeyRecord, SpendScope, SummaryRow, UsageEvent,
    UsageFilter, UsagePage,
};
use crate::sql::*;
use crate::{Change, Result};
use futures_util::future::BoxFuture;
use futures_util::TryStreamExt;
use meshgate_types::Money;
use rust_decimal::Decimal;
use sqlx::error::BoxDynError;
use sqlx::migrate::{Migration, MigrationSource, MigrationType, Migrator};
use sqlx::postgres::{PgArguments, PgListener, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row};
use std::borrow::Cow;
use std::time::Duration;
use tokio::sync::mpsc;

/// The migrations, embedded in the binary: version, description, SQL. sqlx records them in
/// `_sqlx_migrations` with their checksums and runs them under an advisory lock, so that
/// instances starting together migrate once.
const MIGRATIONS: &[(i64, &str, &str)] = &[
    (
        1,
        "schema",
        include_str!("../migrations/postgres/0001_schema.sql"),
    ),
    (
        2,
        "change notifications",
        include_str!("../migrations/postgres/0002_change_notifications.sql"),
    ),
    (
        3,
        "credit notifications",
        include_str!("../migrations/postgres/0003_credit_notifications.sql"),
    ),
    (
        4,
        "shared hot state",
        include_str!("../migrations/postgres/0004_shared_hot_state.sql"),
    ),
];

/// The channel the triggers announce changes on.
const CHANGES_CHANNEL: &str = "meshgate_changes";

#[derive(Debug)]
struct Embedded;

impl MigrationSource<'static> for Embedded {
    fn resolve(self) -> BoxFuture<'static, std::result::Result<Vec<Migration>, BoxDynError>> {
        Box::pin(async {
            Ok(MIGRATIONS
                .iter()
                .map(|&(version, description, sql)| {
                    Migration::new(
                        version,
                        Cow::Borrowed(description),
                        MigrationType::Simple,
                        Cow::Borrowed(sql),
                        false,
                    )
                })
                .collect())
        })
    }
}

#[derive(Clone)]
pub struct PgStore {
    pool: PgPool,
}

impl PgStore {
    /// Connects to `url` (`postgres://user:password@host:port/database`) and brings the
    /// schema up to date.
    pub async fn connect(url: &str) -> Result<PgStore> {
        let pool = PgPoolOptions::new()
            .max_connections(10)
            // A database that does not answer fails the call rather than hanging it.
            .acquire_timeout(Duration::from_secs(5))
            .connect(url)
            .await?;
        Migrator::new(Embedded).await?.run(&pool).await?;
        Ok(PgStore { pool })
    }

    /// Closes the pool's connections (and the change feed's).
    pub async fn close(&self) {
        self.pool.close().await;
    }
}

impl<'q> Bind<'q> for sqlx::query::Query<'q, Postgres, PgArguments> {
    bind_as_is!('q);

    fn money(self, v: Option<Money>) -> Self {
        self.bind(v.map(Money::amount))
    }
}

impl RecordRow for PgRow {
    read_as_is!();

    fn money(&self, col: &str) -> Result<Option<Money>> {
        let amount: Option<Decimal> = self.try_get(col)?;
        Ok(amount.map(Money::new))
    }
}

/// An annotation's value: `->>` with the name bound (names are limited as on SQLite, so
/// both engines match the same events).
const ANNOTATION: AnnotationSql = AnnotationSql {
    open: "(annotations_json::jsonb ->> ",
    close: ")",
    key: annotation_key,
    never: "FALSE",
};

fn annotation_key(name: &str) -> Option<String> {
    valid_annotation_name(name).then(|| name.to_string())
}

/// Writes credit entries with multi-row INSERTs on `conn` (a transaction or a connection).
async fn insert_credits(conn: &mut sqlx::PgConnection, entries: &[CreditEntry]) -> Result<()> {
    for slice in entries.chunks(CREDIT_ROWS_PER_INSERT) {
        let mut q = QueryBuilder::<Postgres>::new(format!(
            "INSERT INTO credit_entries ({CREDIT_COLUMNS}) "
        ));
        q.push_values(slice, |mut row, e| {
            row.push_bind(e.id.clone())
                .push_bind(e.project_id.clone())
                .push_bind(e.kind.as_str())
                .push_bind(e.amount_usd.amount())
                .push_bind(e.created_ms)
                .push_bind(e.actor.clone())
                .push_bind(e.note.clone());
        });
        q.build().persistent(false).execute(&mut *conn).await?;
    }
    Ok(())
}

/// Reads one change announcement; `None` for a payload this version does not know.
fn parse_change(payload: &str) -> Option<Change> {
    #[derive(serde::Deserialize)]
    struct Announced {
        table: String,
        id: Option<String>,
        project_id: Option<String>,
        provider: Option<String>,
        amount_usd: Option<String>,
    }
    let a: Announced = serde_json::from_str(payload).ok()?;
    Some(match a.table.as_str() {
        "api_keys" => Change::Key(a.id?),
        "projects" => Change::Project(a.id?),
        "signing_keys" => Change::SigningKey(a.id?),
        "provider_credentials" => Change::ProviderCredential {
            project_id: a.project_id?,
            provider: a.provider?,
        },
        "credit_entries" => Change::Credits {
            project_id: a.project_id?,
            amount: a.amount_usd?.parse().ok()?,
        },
        _ => return None,
    })
}

/// Listens on [`CHANGES_CHANNEL`] and forwards what it hears until `tx` is dropped. After
/// every (re)connection it sends [`Change::Resync`]: announcements made while it was not
/// listening are lost, so the receiver reloads everything.
async fn forward_changes(pool: PgPool, tx: mpsc::Sender<Change>) {
    const FIRST_RETRY: Duration = Duration::from_millis(100);
    let mut retry = FIRST_RETRY;
    loop {
        let listening = async {
            let mut listener = PgListener::connect_with(&pool).await?;
            listener.listen(CHANGES_CHANNEL).await?;
            Ok::<_, sqlx::Error>(listener)
        };
        let mut listener = match listening.await {
            Ok(listener) => {
                retry = FIRST_RETRY;
                listener
            }
            Err(e) => {
                tracing::warn!(error = %e, retry_ms = %retry.as_millis(), "cannot listen for changes");
                tokio::select! {
                    () = tokio::time::sleep(retry) => {}
                    () = tx.closed() => return,
                }
                retry = (retry * 2).min(Duration::from_secs(5));
                continue;
            }
        };
        if tx.send(Change::Resync).await.is_err() {
            return;
        }
        loop {
            let received = tokio::select! {
                received = listener.try_recv() => received,
                () = tx.closed() => return,
            };
            match received {
                Ok(Some(notification)) => match parse_change(notification.payload()) {
                    Some(change) => {
                        if tx.send(change).await.is_err() {
                            return;
                        }
                    }
                    None => {
                        tracing::warn!(
                            payload = notification.payload(),
                            "unknown change announcement"
                        )
                    }
                },
                Ok(None) => {
                    tracing::warn!("the change feed lost its connection; reconnecting");
                    break;
                }
                Err(e) => {
                    tracing::warn!(error = %e, "the change feed failed; reconnecting");
                    break;
                }
            }
        }
    }
}

impl PgStore {
    /// PostgreSQL has no separate ledger connection: usage goes through the pool.
    fn insert_usage_direct(&self, _: &[UsageEvent], _: &[CreditEntry]) -> Option<Result<()>> {
        None
    }
}

impl_store!(PgStore, Postgres, postgres, true, {
    async fn credit_balance(&self, project_id: &str) -> Result<Money> {
        let sum: Decimal = sqlx::query_scalar(
            "SELECT COALESCE(SUM(amount_usd), 0) FROM credit_entries WHERE project_id = $1",
        )
        .bind(project_id)
        .fetch_one(&self.pool)
        .await?;
        Ok(Money::new(sum))
    }

    async fn spend(&self, scope: &SpendScope, since_ms: Option<i64>) -> Result<Money> {
        let (column, id) = scope.column();
        // NUMERIC sums exactly; COALESCE inside, since a NULL markup must not void the cost.
        let sum: Decimal = sqlx::query_scalar(&format!(
            "SELECT COALESCE(SUM(COALESCE(cost_usd, 0) + COALESCE(markup_usd, 0)), 0) \
             FROM usage_events WHERE {column} = $1 AND ($2::BIGINT IS NULL OR started_ms >= $2)"
        ))
        .bind(id)
        .bind(since_ms)
        .fetch_one(&self.pool)
        .await?;
        Ok(Money::new(sum))
    }

    fn changes(&self) -> Option<mpsc::Receiver<Change>> {
        let (tx, rx) = mpsc::channel(1024);
        tokio::spawn(forward_changes(self.pool.clone(), tx));
        Some(rx)
    }
});

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn announcements_are_read() {
        assert_eq!(
            parse_change(r#"{"table":"api_keys","id":"key_1","project_id":"p","provider":null}"#),
            Some(Change::Key("key_1".into()))
        );
        assert_eq!(
            parse_change(
                r#"{"table":"provider_credentials","id":null,"project_id":"p","provider":"openai"}"#
            ),
            Some(Change::ProviderCredential {
                project_id: "p".into(),
                provider: "openai".into()
            })
        );
        assert_eq!(parse_change(r#"{"table":"other","id":"x"}"#), None);
        assert_eq!(parse_change("not json"), None);
    }
}
