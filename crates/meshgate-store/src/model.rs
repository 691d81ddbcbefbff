//! Records kept by the store and the shapes of their queries.

use meshgate_types::{Money, Usage};
use serde::{Deserialize, Serialize};

/// A key to create; the secret itself never reaches the store, only its hash.
#[derive(Debug, Clone)]
pub struct NewKey {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub prefix: String,
    pub secret_hash: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct KeyRecord {
    pub id: String,
    pub project_id: String,
    pub name: String,
    pub prefix: String,
    #[serde(skip)]
    pub secret_hash: String,
    pub created_ms: i64,
    pub expires_ms: Option<i64>,
    pub revoked_ms: Option<i64>,
}

/// How a forwarded call ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Outcome {
    /// The provider answered 2xx and the response reached its end.
    Ok,
    /// The provider answered with an error status.
    UpstreamError,
    /// The client went away before the response ended.
    ClientCancelled,
    /// The provider's stream ended early, or it reported an incomplete or failed response.
    Incomplete,
    /// No connection to the provider could be made.
    UpstreamUnreachable,
    /// The provider did not answer in time (connect, first byte or between chunks).
    UpstreamTimeout,
}

impl Outcome {
    pub fn as_str(self) -> &'static str {
        match self {
            Outcome::Ok => "ok",
            Outcome::UpstreamError => "upstream_error",
            Outcome::ClientCancelled => "client_cancelled",
            Outcome::Incomplete => "incomplete",
            Outcome::UpstreamUnreachable => "upstream_unreachable",
            Outcome::UpstreamTimeout => "upstream_timeout",
        }
    }

    pub fn parse(s: &str) -> Option<Outcome> {
        [
            Outcome::Ok,
            Outcome::UpstreamError,
            Outcome::ClientCancelled,
            Outcome::Incomplete,
            Outcome::UpstreamUnreachable,
            Outcome::UpstreamTimeout,
        ]
        .into_iter()
        .find(|o| o.as_str() == s)
    }
}

/// One forwarded call in the ledger. Never holds request or response bodies.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct UsageEvent {
    pub id: String,
    pub request_id: String,
    pub project_id: String,
    pub key_id: Option<String>,
    pub surface: String,
    pub endpoint: String,
    pub provider: String,
    pub model: Option<String>,
    pub response_model: Option<String>,
    pub streamed: bool,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub usage: Usage,
    pub cost_usd: Option<Money>,
    pub price_id: Option<String>,
    pub error: Option<String>,
    pub upstream_request_id: Option<String>,
    pub started_ms: i64,
    pub ttfb_ms: Option<i64>,
    pub duration_ms: i64,
}

/// Which events a query covers. Times are unix milliseconds, `since` inclusive, `until` exclusive.
#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct UsageFilter {
    pub project_id: Option<String>,
    pub key_id: Option<String>,
    pub model: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    /// Pagination cursor: only events whose id sorts before this one (newest first).
    pub before_id: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct UsagePage {
    pub events: Vec<UsageEvent>,
    /// Pass as `before_id` to get the next (older) page; `None` on the last page.
    pub next_before_id: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Model,
    Key,
}

/// Totals for one group of events. Costs are summed exactly.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SummaryRow {
    pub group: Option<String>,
    pub requests: u64,
    pub errors: u64,
    pub input_uncached: u64,
    pub cache_read: u64,
    pub cache_write: u64,
    pub output: u64,
    pub reasoning: u64,
    pub cost_usd: Money,
}
