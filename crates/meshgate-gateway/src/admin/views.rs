//! JSON shapes several admin resources share: the error body and limits (as shown, as
//! set, and as patched).

use super::patch_field;
use meshgate_store::Limits;
use meshgate_types::Money;
use serde::{Deserialize, Serialize};
use utoipa::ToSchema;

/// Every admin error: `{"error": {"message": "...", "type": "..."}}`.
#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

#[derive(Debug, Serialize, ToSchema)]
pub struct ErrorDetail {
    pub message: String,
    /// `authentication_error`, `not_found_error`, `conflict_error`,
    /// `invalid_request_error` or `server_error`.
    #[serde(rename = "type")]
    pub kind: String,
}

/// Limits of a key or a project; absent is "no limit". Money is a decimal string (USD);
/// spend limits count what is charged (provider cost plus markup).
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsView {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub requests_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tokens_per_minute: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, example = "25.00")]
    pub spend_total_usd: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub spend_daily_usd: Option<Money>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub spend_monthly_usd: Option<Money>,
}

impl From<&Limits> for LimitsView {
    fn from(l: &Limits) -> Self {
        LimitsView {
            requests_per_minute: l.requests_per_minute,
            tokens_per_minute: l.tokens_per_minute,
            spend_total_usd: l.spend_total_usd,
            spend_daily_usd: l.spend_daily_usd,
            spend_monthly_usd: l.spend_monthly_usd,
        }
    }
}

impl From<LimitsView> for Limits {
    fn from(l: LimitsView) -> Self {
        Limits {
            requests_per_minute: l.requests_per_minute,
            tokens_per_minute: l.tokens_per_minute,
            spend_total_usd: l.spend_total_usd,
            spend_daily_usd: l.spend_daily_usd,
            spend_monthly_usd: l.spend_monthly_usd,
        }
    }
}

/// A change to limits: a field given replaces that limit, `null` removes it, a field left
/// out stays as it is.
#[derive(Debug, Clone, Default, Deserialize, ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LimitsPatch {
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<u64>)]
    pub requests_per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<u64>)]
    pub tokens_per_minute: Option<Option<u64>>,
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<String>)]
    pub spend_total_usd: Option<Option<Money>>,
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<String>)]
    pub spend_daily_usd: Option<Option<Money>>,
    #[serde(default, deserialize_with = "patch_field")]
    #[schema(value_type = Option<String>)]
    pub spend_monthly_usd: Option<Option<Money>>,
}

impl LimitsPatch {
    pub fn apply(self, limits: &mut Limits) {
        fn set<T>(slot: &mut Option<T>, change: Option<Option<T>>) {
            if let Some(value) = change {
                *slot = value;
            }
        }
        set(&mut limits.requests_per_minute, self.requests_per_minute);
        set(&mut limits.tokens_per_minute, self.tokens_per_minute);
        set(&mut limits.spend_total_usd, self.spend_total_usd);
        set(&mut limits.spend_daily_usd, self.spend_daily_usd);
        set(&mut limits.spend_monthly_usd, self.spend_monthly_usd);
    }
}

/// Refuses negative spend limits and empty model patterns, which can only be mistakes.
pub fn check_policy(
    allowed_models: Option<&[String]>,
    limits: &Limits,
) -> Result<(), super::AdminError> {
    if let Some(bad) = allowed_models
        .into_iter()
        .flatten()
        .find(|m| m.trim().is_empty())
    {
        return Err(super::AdminError::bad_request(format!(
            "empty model pattern {bad:?} in allowed_models"
        )));
    }
    for (name, value) in [
        ("spend_total_usd", limits.spend_total_usd),
        ("spend_daily_usd", limits.spend_daily_usd),
        ("spend_monthly_usd", limits.spend_monthly_usd),
    ] {
        if value.is_some_and(|v| v < Money::ZERO) {
            return Err(super::AdminError::bad_request(format!(
                "{name} must not be negative"
            )));
        }
    }
    Ok(())
}
