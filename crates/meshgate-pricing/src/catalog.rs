//! `Catalog`: every known price by model name and date, loaded from the built-in table, TOML
//! files and LiteLLM JSON files (a later load wins, model by model), and the lookup strategy
//! that maps what a client or provider names to one of them.

use crate::decimal::to_per_million;
use crate::price::{ModelPrice, PriceSource, TokenClass, TokenRates};
use crate::{litellm, toml_format};
use chrono::{NaiveDate, Utc};
use meshgate_types::ServiceTier;
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The built-in table, in meshgate's TOML format.
const BUILTIN_TOML: &str = include_str!("builtin.toml");

/// The date given to prices that carry none (every LiteLLM entry, TOML entries without
/// `effective_from`): they apply to any date.
pub fn undated() -> NaiveDate {
    NaiveDate::from_ymd_opt(1970, 1, 1).unwrap_or(NaiveDate::MIN)
}

/// Why a pricing file could not be loaded.
#[derive(Debug, thiserror::Error)]
pub enum PricingError {
    #[error("cannot read pricing file {path}: {source}")]
    Io {
        path: PathBuf,
        #[source]
        source: std::io::Error,
    },
    #[error("pricing file {path}: {message}")]
    Parse { path: PathBuf, message: String },
}

/// An entry of a pricing file that was left out, and why.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Skipped {
    pub key: String,
    pub reason: String,
}

/// What one load added.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct LoadReport {
    /// Model names added or replaced.
    pub models: usize,
    /// Dated prices added (a model may have several).
    pub prices: usize,
    /// Entries left out (LiteLLM only: entries that price nothing meshgate bills, values
    /// that are not exact non-negative numbers).
    pub skipped: Vec<Skipped>,
}

/// A parsed pricing file: prices and the aliases of their model names.
pub(crate) struct Parsed {
    pub prices: Vec<ModelPrice>,
    pub aliases: Vec<(String, String)>,
    pub skipped: Vec<Skipped>,
}

/// All known prices. Cheap to clone (prices are shared).
#[derive(Debug, Clone, Default)]
pub struct Catalog {
    /// Canonical model name to its prices, oldest `effective_from` first.
    prices: HashMap<String, Vec<Arc<ModelPrice>>>,
    /// Alias (e.g. a dated id) to canonical model name.
    aliases: HashMap<String, String>,
}

impl Catalog {
    /// An empty catalog.
    pub fn new() -> Self {
        Catalog::default()
    }

    /// The built-in table of OpenAI, Anthropic and Gemini models (`src/builtin.toml`).
    pub fn builtin() -> Result<Self, PricingError> {
        let mut catalog = Catalog::new();
        let parsed = toml_format::parse(BUILTIN_TOML, PriceSource::Builtin)
            .map_err(|message| parse_error(Path::new("builtin.toml"), message))?;
        catalog.merge(parsed);
        Ok(catalog)
    }

    /// Adds the prices of a file in meshgate's TOML format; each model it names replaces
    /// every earlier price of that model.
    pub fn load_toml(&mut self, path: impl AsRef<Path>) -> Result<LoadReport, PricingError> {
        let path = path.as_ref();
        let text = read(path)?;
        self.load_toml_str(&text, path)
    }

    /// [`Catalog::load_toml`] from text; `path` names the source in price ids.
    pub fn load_toml_str(
        &mut self,
        text: &str,
        path: impl AsRef<Path>,
    ) -> Result<LoadReport, PricingError> {
        let path = path.as_ref();
        let parsed = toml_format::parse(text, PriceSource::TomlFile(path.to_path_buf()))
            .map_err(|message| parse_error(path, message))?;
        Ok(self.merge(parsed))
    }

    /// Adds the prices of a LiteLLM `model_prices_and_context_window.json` file; each model
    /// it names replaces every earlier price of that model.
    pub fn load_litellm_json(
        &mut self,
        path: impl AsRef<Path>,
    ) -> Result<LoadReport, PricingError> {
        let path = path.as_ref();
        let text = read(path)?;
        self.load_litellm_json_str(&text, path)
    }

    /// [`Catalog::load_litellm_json`] from text; `path` names the source in price ids.
    pub fn load_litellm_json_str(
        &mut self,
        text: &str,
        path: impl AsRef<Path>,
    ) -> Result<LoadReport, PricingError> {
        let path = path.as_ref();
        let parsed = litellm::parse(text, path).map_err(|message| parse_error(path, message))?;
        Ok(self.merge(parsed))
    }

    fn merge(&mut self, parsed: Parsed) -> LoadReport {
        let mut by_model: HashMap<String, Vec<Arc<ModelPrice>>> = HashMap::new();
        let count = parsed.prices.len();
        for price in parsed.prices {
            let list = by_model.entry(price.model.clone()).or_default();
            // Within one file, a second price for the same date replaces the first.
            list.retain(|p| p.effective_from != price.effective_from);
            list.push(Arc::new(price));
        }
        let models = by_model.len();
        for (model, mut list) in by_model {
            list.sort_by_key(|p| p.effective_from);
            self.prices.insert(model, list);
        }
        for (alias, model) in parsed.aliases {
            self.aliases.insert(alias, model);
        }
        LoadReport {
            models,
            prices: count,
            skipped: parsed.skipped,
        }
    }

    /// Number of model names with a price (aliases not counted).
    pub fn len(&self) -> usize {
        self.prices.len()
    }

    pub fn is_empty(&self) -> bool {
        self.prices.is_empty()
    }

    /// The canonical model names, sorted.
    pub fn models(&self) -> Vec<&str> {
        let mut names: Vec<&str> = self.prices.keys().map(String::as_str).collect();
        names.sort_unstable();
        names
    }

    /// The price of `model` today (UTC); see [`Catalog::price_at`].
    pub fn price(&self, model: &str) -> Option<Arc<ModelPrice>> {
        self.price_at(model, Utc::now().date_naive())
    }

    /// The price of `model` on `date`: the latest price effective on or before `date` of the
    /// first name that has one among: the exact name (or alias); the name without provider
    /// prefixes (`openai/gpt-4o` → `gpt-4o`); those without a date suffix (`-2024-08-06`,
    /// `-20250929`); for fine-tunes (`ft:gpt-4o-mini:org::id`) `ft:BASE`, then `BASE` and
    /// `BASE` without its date. `None` when nothing matches: never bill 0 silently.
    pub fn price_at(&self, model: &str, date: NaiveDate) -> Option<Arc<ModelPrice>> {
        self.find(model, date).map(|(_, price)| price)
    }

    /// Every dated price of the model `model` resolves to (today), oldest first.
    pub fn history(&self, model: &str) -> Vec<Arc<ModelPrice>> {
        self.find(model, Utc::now().date_naive())
            .and_then(|(_, p)| self.prices.get(&p.model).cloned())
            .unwrap_or_default()
    }

    fn find(&self, model: &str, date: NaiveDate) -> Option<(String, Arc<ModelPrice>)> {
        // The common case, without building the candidate list.
        if let Some(p) = self.exact(model, date) {
            return Some((model.to_string(), p));
        }
        candidates(model)
            .into_iter()
            .find_map(|name| self.exact(&name, date).map(|p| (name, p)))
    }

    fn exact(&self, name: &str, date: NaiveDate) -> Option<Arc<ModelPrice>> {
        let list = match self.prices.get(name) {
            Some(list) => list,
            None => self.prices.get(self.aliases.get(name)?)?,
        };
        list.iter()
            .rev()
            .find(|p| p.effective_from <= date)
            .cloned()
    }

    /// A human-readable description of the price `model` resolves to today and where it
    /// came from; token rates are shown in USD per 1M tokens.
    pub fn describe(&self, model: &str) -> Option<String> {
        let (matched, price) = self.find(model, Utc::now().date_naive())?;
        let mut out = String::new();
        let _ = writeln!(out, "{} ({})", price.model, price.id());
        if matched != price.model || model != matched {
            let _ = writeln!(
                out,
                "  matched:        {model} -> {matched} -> {}",
                price.model
            );
        }
        let _ = writeln!(out, "  source:         {}", price.source);
        if let Some(provider) = &price.provider {
            let _ = writeln!(out, "  provider:       {provider}");
        }
        let _ = writeln!(out, "  mode:           {}", price.mode);
        let _ = writeln!(out, "  effective from: {}", price.effective_from);
        let mut aliases: Vec<&str> = self
            .aliases
            .iter()
            .filter(|(a, m)| **m == price.model && !self.prices.contains_key(*a))
            .map(|(a, _)| a.as_str())
            .collect();
        aliases.sort_unstable();
        if !aliases.is_empty() {
            let _ = writeln!(out, "  aliases:        {}", aliases.join(", "));
        }
        describe_rates(&mut out, &price);
        if let Some(r) = price.per_web_search {
            let _ = writeln!(out, "  web search:     {} per request", r.normalize());
        }
        if let Some(r) = price.per_character {
            let _ = writeln!(
                out,
                "  characters:     {} per 1M characters",
                to_per_million(r)
            );
        }
        if let Some(r) = price.per_second {
            let _ = writeln!(out, "  audio:          {} per second", r.normalize());
        }
        if !price.images.is_empty() {
            let table: Vec<String> = price
                .images
                .iter()
                .map(|((q, s), p)| format!("{q}/{s} {}", p.normalize()))
                .collect();
            let _ = writeln!(out, "  per image:      {}", table.join(", "));
            if let Some(p) = price.images.per_pixel {
                let _ = writeln!(out, "  per pixel:      {}", p.normalize());
            }
        }
        let history = self.prices.get(&price.model).cloned().unwrap_or_default();
        if history.len() > 1 {
            let ids: Vec<String> = history.iter().map(|p| p.id()).collect();
            let _ = writeln!(out, "  all prices:     {}", ids.join(", "));
        }
        Some(out)
    }
}

fn describe_rates(out: &mut String, price: &ModelPrice) {
    if !price.has_token_rates() {
        return;
    }
    let _ = writeln!(out, "  USD per 1M tokens:");
    let tiers = [
        (ServiceTier::Standard, "standard", None),
        (
            ServiceTier::Batch,
            "batch",
            Some("0.5 × standard where not listed"),
        ),
        (ServiceTier::Flex, "flex", Some("standard where not listed")),
        (
            ServiceTier::Priority,
            "priority",
            Some("standard where not listed"),
        ),
    ];
    for (tier, name, note) in tiers {
        let rates = price.rates_for(tier, 0);
        if tier != ServiceTier::Standard && rates == price.rates {
            let _ = writeln!(out, "    {name:<9} same as standard");
            continue;
        }
        let line = rate_line(&rates);
        match note {
            Some(note) => {
                let _ = writeln!(out, "    {name:<9} {line} ({note})");
            }
            None => {
                let _ = writeln!(out, "    {name:<9} {line}");
            }
        }
    }
    for long in &price.long_context {
        let above = price.rates_for(ServiceTier::Standard, long.above_tokens.saturating_add(1));
        let _ = writeln!(
            out,
            "    above {} prompt tokens: {}",
            long.above_tokens,
            rate_line(&above)
        );
    }
}

fn rate_line(rates: &TokenRates) -> String {
    let parts: Vec<String> = TokenClass::ALL
        .iter()
        .filter_map(|c| {
            rates
                .get(*c)
                .map(|r| format!("{} {}", c.label(), to_per_million(r)))
        })
        .collect();
    parts.join(", ")
}

fn read(path: &Path) -> Result<String, PricingError> {
    std::fs::read_to_string(path).map_err(|source| PricingError::Io {
        path: path.to_path_buf(),
        source,
    })
}

fn parse_error(path: &Path, message: String) -> PricingError {
    PricingError::Parse {
        path: path.to_path_buf(),
        message,
    }
}

/// The names tried for `model`, in order, without repeats.
pub(crate) fn candidates(model: &str) -> Vec<String> {
    let mut names: Vec<String> = vec![model.to_string()];
    let mut rest = model;
    while let Some((_, tail)) = rest.split_once('/') {
        if !tail.is_empty() {
            names.push(tail.to_string());
        }
        rest = tail;
    }
    let undated: Vec<String> = names.iter().filter_map(|n| strip_date(n)).collect();
    names.extend(undated);
    let mut fine_tuned = Vec::new();
    for name in &names {
        if let Some(base) = name
            .strip_prefix("ft:")
            .and_then(|r| r.split(':').next())
            .filter(|b| !b.is_empty())
        {
            fine_tuned.push(format!("ft:{base}"));
            fine_tuned.push(base.to_string());
            fine_tuned.extend(strip_date(base));
        }
    }
    names.extend(fine_tuned);
    let mut seen = std::collections::HashSet::new();
    names.retain(|n| seen.insert(n.clone()));
    names
}

/// `gpt-4o-2024-08-06` → `gpt-4o`, `claude-sonnet-4-5-20250929` → `claude-sonnet-4-5`.
fn strip_date(name: &str) -> Option<String> {
    let b = name.as_bytes();
    let digits = |s: &[u8]| s.iter().all(u8::is_ascii_digit);
    let n = b.len();
    if n > 11 && b[n - 11] == b'-' && b[n - 6] == b'-' && b[n - 3] == b'-' {
        let (y, m, d) = (&b[n - 10..n - 6], &b[n - 5..n - 3], &b[n - 2..]);
        if digits(y) && digits(m) && digits(d) {
            return Some(name[..n - 11].to_string());
        }
    }
    if n > 9 && (b[n - 9] == b'-' || b[n - 9] == b'@') && digits(&b[n - 8..]) {
        return Some(name[..n - 9].to_string());
    }
    None
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn candidate_order() {
        assert_eq!(candidates("gpt-4o"), vec!["gpt-4o"]);
        assert_eq!(
            candidates("openai/gpt-4o-2024-08-06"),
            vec![
                "openai/gpt-4o-2024-08-06",
                "gpt-4o-2024-08-06",
                "openai/gpt-4o",
                "gpt-4o"
            ]
        );
        assert_eq!(
            candidates("claude-sonnet-4-5-20250929"),
            vec!["claude-sonnet-4-5-20250929", "claude-sonnet-4-5"]
        );
        assert_eq!(
            candidates("ft:gpt-4o-mini-2024-07-18:acme::abc123"),
            vec![
                "ft:gpt-4o-mini-2024-07-18:acme::abc123",
                "ft:gpt-4o-mini-2024-07-18",
                "gpt-4o-mini-2024-07-18",
                "gpt-4o-mini"
            ]
        );
        assert_eq!(candidates("a/"), vec!["a/"]);
    }

    #[test]
    fn date_suffixes() {
        assert_eq!(strip_date("gpt-4o-2024-08-06").as_deref(), Some("gpt-4o"));
        assert_eq!(
            strip_date("claude-3-haiku-20240307").as_deref(),
            Some("claude-3-haiku")
        );
        assert_eq!(
            strip_date("claude-3-haiku@20240307").as_deref(),
            Some("claude-3-haiku")
        );
        assert_eq!(strip_date("gpt-4o"), None);
        assert_eq!(strip_date("o3"), None);
        assert_eq!(strip_date("-20240307"), None);
        assert_eq!(strip_date("model-é-2024-08-06").as_deref(), Some("model-é"));
    }

    #[test]
    fn builtin_table_parses() {
        let c = Catalog::builtin().unwrap();
        assert!(c.len() > 30);
    }
}
