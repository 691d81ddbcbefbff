//! Fresh PostgreSQL databases for tests (this crate's and the gateway's): each test gets a
//! database of its own on the server named by `MESHGATE_TEST_POSTGRES_URL`, dropped when
//! the test ends. Without a reachable server the tests skip, saying why, unless
//! `MESHGATE_REQUIRE_POSTGRES` is set (as CI does), when they fail.

use sqlx::{Connection, PgConnection};
use std::sync::atomic::{AtomicU32, Ordering};

/// The server tests use unless `MESHGATE_TEST_POSTGRES_URL` names another.
pub const DEFAULT_URL: &str = "postgres://postgres@127.0.0.1:5432/test";

/// A database that lives as long as this value.
pub struct TestDatabase {
    /// The server's URL, with the database it was given (to administer from).
    pub admin_url: String,
    /// The new database's name.
    pub name: String,
    /// The URL of the new database.
    pub url: String,
}

impl TestDatabase {
    /// Creates a uniquely named database; `None` (after printing why) when the server is
    /// unreachable and PostgreSQL is not required. Panics when it is required.
    pub async fn create() -> Option<TestDatabase> {
        let admin_url =
            std::env::var("MESHGATE_TEST_POSTGRES_URL").unwrap_or_else(|_| DEFAULT_URL.into());
        let required = std::env::var_os("MESHGATE_REQUIRE_POSTGRES").is_some_and(|v| !v.is_empty());
        let mut admin = match PgConnection::connect(&admin_url).await {
            Ok(conn) => conn,
            Err(e) if !required => {
                eprintln!(
                    "skipping the PostgreSQL case: cannot reach {admin_url} ({e}); set \
                     MESHGATE_REQUIRE_POSTGRES=1 to make this a failure"
                );
                return None;
            }
            Err(e) => panic!("PostgreSQL is required but {admin_url} is unreachable: {e}"),
        };
        static COUNTER: AtomicU32 = AtomicU32::new(0);
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.subsec_nanos())
            .unwrap_or(0);
        let name = format!(
            "meshgate_test_{}_{}_{nanos}",
            std::process::id(),
            COUNTER.fetch_add(1, Ordering::Relaxed)
        );
        // The name is ours (letters, digits, underscores): safe to write into the SQL.
        if let Err(e) = sqlx::raw_sql(&format!("CREATE DATABASE {name}"))
            .execute(&mut admin)
            .await
        {
            panic!("cannot create the test database {name}: {e}");
        }
        let _ = admin.close().await;
        let url = with_database(&admin_url, &name);
        Some(TestDatabase {
            admin_url,
            name,
            url,
        })
    }
}

/// `url` with its database replaced by `name` (any query string kept).
fn with_database(url: &str, name: &str) -> String {
    let (path_start, query) = match url.split_once('?') {
        Some((before, query)) => (before, Some(query)),
        None => (url, None),
    };
    let authority_end = path_start
        .find("://")
        .map(|i| i + 3)
        .and_then(|i| path_start[i..].find('/').map(|j| i + j))
        .unwrap_or(path_start.len());
    let mut out = format!("{}/{name}", &path_start[..authority_end]);
    if let Some(q) = query {
        out.push('?');
        out.push_str(q);
    }
    out
}

impl Drop for TestDatabase {
    /// Drops the database (closing what still uses it), on a thread of its own so that
    /// this works inside and outside a runtime, and after a failed test too.
    fn drop(&mut self) {
        let admin_url = self.admin_url.clone();
        let name = self.name.clone();
        let dropped = std::thread::spawn(move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| e.to_string())?;
            runtime.block_on(async {
                let mut admin = PgConnection::connect(&admin_url)
                    .await
                    .map_err(|e| e.to_string())?;
                sqlx::raw_sql(&format!("DROP DATABASE IF EXISTS {name} WITH (FORCE)"))
                    .execute(&mut admin)
                    .await
                    .map_err(|e| e.to_string())?;
                let _ = admin.close().await;
                Ok::<_, String>(())
            })
        })
        .join();
        if let Ok(Err(e)) = dropped {
            eprintln!("cannot drop the test database {}: {e}", self.name);
        }
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn database_is_replaced_in_urls() {
        use super::with_database;
        assert_eq!(
            with_database("postgres://postgres@127.0.0.1:5432/test", "x"),
            "postgres://postgres@127.0.0.1:5432/x"
        );
        assert_eq!(
            with_database("postgres://u:p@h/db?sslmode=disable", "x"),
            "postgres://u:p@h/x?sslmode=disable"
        );
        assert_eq!(with_database("postgres://h", "x"), "postgres://h/x");
    }
}
