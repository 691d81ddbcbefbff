//! Records kept by the store and the shapes of their queries.

use meshgate_types::{Money, Usage};
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;

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
    pub policy: Policy,
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
    pub policy: Policy,
    /// When the secret was last rotated.
    pub rotated_ms: Option<i64>,
    /// The secret before the last rotation, accepted until `previous_expires_ms`.
    #[serde(skip)]
    pub previous_secret_hash: Option<String>,
    pub previous_expires_ms: Option<i64>,
}

impl KeyRecord {
    /// The record of a key just created: not revoked, never rotated.
    pub fn created(key: NewKey) -> KeyRecord {
        KeyRecord {
            id: key.id,
            project_id: key.project_id,
            name: key.name,
            prefix: key.prefix,
            secret_hash: key.secret_hash,
            created_ms: key.created_ms,
            expires_ms: key.expires_ms,
            revoked_ms: None,
            policy: key.policy,
            rotated_ms: None,
            previous_secret_hash: None,
            previous_expires_ms: None,
        }
    }
}

/// Limits a key or a project carries. `None` is "no limit"; spend limits count what the
/// project is charged (provider cost plus markup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_total_usd: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_daily_usd: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub spend_monthly_usd: Option<Money>,
}

/// What a key or a project may do: models (patterns `provider/model`, a trailing `*` is a
/// prefix; `None` allows all) and limits.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Policy {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub allowed_models: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Limits::is_empty")]
    pub limits: Limits,
}

impl Limits {
    pub fn is_empty(&self) -> bool {
        *self == Limits::default()
    }
}

/// A tenant. Every key, token, usage event, credit entry and setting belongs to one.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProjectRecord {
    pub id: String,
    pub name: String,
    pub created_ms: i64,
    pub settings: ProjectSettings,
}

#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ProjectSettings {
    #[serde(default)]
    pub policy: Policy,
    /// Refuse calls (402) when the credit balance is not positive.
    #[serde(default)]
    pub credits_enforced: bool,
    /// Percent added to the provider cost for this project (resellers, chargeback); recorded
    /// beside the cost, never mixed into it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub markup_percent: Option<rust_decimal::Decimal>,
    /// Per-provider markup percent, taking precedence over `markup_percent`.
    #[serde(default, skip_serializing_if = "BTreeMap::is_empty")]
    pub provider_markup_percent: BTreeMap<String, rust_decimal::Decimal>,
    /// OAuth users (token `sub` or `email`) who may use this project; `*` is any user of
    /// the configured issuer.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub members: Vec<String>,
}

/// A project's key for signing participant tokens. `material` is opaque to the store: the
/// sealed HS256 secret, or the Ed25519 public key.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct SigningKeyRecord {
    pub id: String,
    pub project_id: String,
    /// `HS256` or `EdDSA`.
    pub algorithm: String,
    #[serde(skip)]
    pub material: String,
    pub created_ms: i64,
    pub revoked_ms: Option<i64>,
}

/// A project's own provider key (bring your own key). `sealed_api_key` is encrypted by the
/// gateway before it reaches the store and never leaves through any API.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProviderCredential {
    pub project_id: String,
    pub provider: String,
    #[serde(skip)]
    pub sealed_api_key: String,
    pub base_url: Option<String>,
    pub updated_ms: i64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CreditKind {
    Grant,
    Purchase,
    UsageDebit,
    Refund,
    Adjustment,
}

impl CreditKind {
    pub fn as_str(self) -> &'static str {
        match self {
            CreditKind::Grant => "grant",
            CreditKind::Purchase => "purchase",
            CreditKind::UsageDebit => "usage_debit",
            CreditKind::Refund => "refund",
            CreditKind::Adjustment => "adjustment",
        }
    }

    pub fn parse(s: &str) -> Option<CreditKind> {
        [
            CreditKind::Grant,
            CreditKind::Purchase,
            CreditKind::UsageDebit,
            CreditKind::Refund,
            CreditKind::Adjustment,
        ]
        .into_iter()
        .find(|k| k.as_str() == s)
    }
}

/// One line of a project's append-only credit ledger; the balance is their sum. Debits are
/// negative.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct CreditEntry {
    pub id: String,
    pub project_id: String,
    pub kind: CreditKind,
    pub amount_usd: Money,
    pub created_ms: i64,
    pub actor: Option<String>,
    pub note: Option<String>,
}

/// An admin action: who did what to which object, never a secret.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct AuditEvent {
    pub id: String,
    pub at_ms: i64,
    pub actor: String,
    pub project_id: Option<String>,
    pub action: String,
    pub target: Option<String>,
    pub details: serde_json::Value,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize)]
pub struct AuditFilter {
    pub project_id: Option<String>,
    pub action: Option<String>,
    pub since_ms: Option<i64>,
    pub until_ms: Option<i64>,
    pub before_id: Option<String>,
}

/// A provider-side object (a message batch, a stored response) and the project that
/// created it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ResourceOwner {
    pub resource_id: String,
    pub project_id: String,
    /// `batch` or `response`.
    pub kind: String,
    pub created_ms: i64,
}

/// Whose spending a sum covers.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum SpendScope {
    Project(String),
    Key(String),
    Delegation(String),
}

impl SpendScope {
    /// The `usage_events` column a scope sums over, and its value.
    pub(crate) fn column(&self) -> (&'static str, &str) {
        match self {
            SpendScope::Project(id) => ("project_id", id),
            SpendScope::Key(id) => ("key_id", id),
            SpendScope::Delegation(id) => ("delegation_id", id),
        }
    }
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
    /// The gateway process died while the call was in flight (written at the next start,
    /// from the in-flight journal); its usage is unknown.
    Interrupted,
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
            Outcome::Interrupted => "interrupted",
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
            Outcome::Interrupted,
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
    /// Participant token: its `jti`.
    pub token_id: Option<String>,
    /// The participant's identity, or the OAuth user's subject.
    pub user: Option<String>,
    pub room: Option<String>,
    pub delegation_id: Option<String>,
    /// `Meshgate-Annotation-<name>` headers of the call.
    pub annotations: BTreeMap<String, String>,
    pub surface: String,
    pub endpoint: String,
    pub provider: String,
    /// The model that served the call (and is priced).
    pub model: Option<String>,
    /// The model name the client sent, when routing chose another (an alias, a fallback).
    pub requested_model: Option<String>,
    /// The deployment the call went to.
    pub deployment: Option<String>,
    pub response_model: Option<String>,
    pub streamed: bool,
    pub status: Option<u16>,
    pub outcome: Outcome,
    pub usage: Usage,
    pub cost_usd: Option<Money>,
    /// The project's markup on `cost_usd`, charged beside it.
    pub markup_usd: Option<Money>,
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
    pub token_id: Option<String>,
    pub user: Option<String>,
    pub room: Option<String>,
    pub delegation_id: Option<String>,
    /// Only events carrying every one of these annotations with these values. Names outside
    /// `[A-Za-z0-9_.-]{1,64}` match nothing.
    pub annotations: Vec<(String, String)>,
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

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GroupBy {
    Model,
    Key,
    Project,
    Token,
    User,
    Room,
    Delegation,
    /// UTC calendar day, `YYYY-MM-DD`.
    Day,
    /// The value of one annotation.
    Annotation(String),
}

impl GroupBy {
    /// Reads `model`, `key`, ..., `day` or `annotation:<name>`.
    pub fn parse(s: &str) -> Option<GroupBy> {
        Some(match s {
            "model" => GroupBy::Model,
            "key" => GroupBy::Key,
            "project" => GroupBy::Project,
            "token" => GroupBy::Token,
            "user" => GroupBy::User,
            "room" => GroupBy::Room,
            "delegation" => GroupBy::Delegation,
            "day" => GroupBy::Day,
            other => GroupBy::Annotation(other.strip_prefix("annotation:")?.to_string()),
        })
    }
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
    pub markup_usd: Money,
}

impl SummaryRow {
    /// The rows added up (no group).
    pub fn total(rows: &[SummaryRow]) -> SummaryRow {
        let mut total = SummaryRow::default();
        for r in rows {
            total.requests += r.requests;
            total.errors += r.errors;
            total.input_uncached += r.input_uncached;
            total.cache_read += r.cache_read;
            total.cache_write += r.cache_write;
            total.output += r.output;
            total.reasoning += r.reasoning;
            total.cost_usd += r.cost_usd;
            total.markup_usd += r.markup_usd;
        }
        total
    }
}
