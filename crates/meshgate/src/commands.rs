//! The admin-side commands about keys, usage and the audit log, `pricing check`, and the
//! flags and printing they share with the other admin commands.

use crate::admin_client::AdminClient;
use crate::AdminTarget;
use anyhow::{bail, Context};
use serde_json::{json, Map, Value};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// The project the key belongs to (default `default`).
        #[arg(long)]
        project: Option<String>,
        /// Expiry as RFC 3339 time or unix milliseconds.
        #[arg(long, alias = "expires-at")]
        expires: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
        /// Print only the secret (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// List keys (never their secrets).
    List {
        /// Only this project's keys.
        #[arg(long)]
        project: Option<String>,
        #[arg(long)]
        json: bool,
    },
    /// Show one key with its models and limits.
    Show { id: String },
    /// Change a key's name, expiry, models or limits; the next call sees it.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        /// New expiry (RFC 3339 or unix ms), or `never`.
        #[arg(long)]
        expires: Option<String>,
        #[command(flatten)]
        policy: PolicyArgs,
    },
    /// Give a key a new secret (printed once); the old one works for --grace seconds.
    Rotate {
        id: String,
        /// Seconds the old secret keeps working (default 0: it stops now).
        #[arg(long, default_value_t = 0)]
        grace: u64,
        /// Print only the new secret.
        #[arg(long)]
        quiet: bool,
    },
    /// Revoke a key by id; the next call with it is refused.
    Revoke { id: String },
}

/// Models and limits of a key or a project. On `update`, a limit of `none` removes it and
/// one left out stays as it is.
#[derive(Debug, Default, clap::Args)]
pub struct PolicyArgs {
    /// A model pattern allowed (`provider/model`, trailing `*` a prefix); repeatable.
    #[arg(long = "allowed-model")]
    pub allowed_models: Vec<String>,
    /// Allow every model again (clears the list; update only).
    #[arg(long, conflicts_with = "allowed_models")]
    pub all_models: bool,
    /// Requests per minute.
    #[arg(long)]
    pub rpm: Option<String>,
    /// Tokens per minute.
    #[arg(long)]
    pub tpm: Option<String>,
    /// Spend limit over all time, USD (a decimal such as 25.00).
    #[arg(long)]
    pub budget_total: Option<String>,
    /// Spend limit per UTC day, USD.
    #[arg(long)]
    pub budget_daily: Option<String>,
    /// Spend limit per calendar month, USD.
    #[arg(long)]
    pub budget_monthly: Option<String>,
}

impl PolicyArgs {
    /// Adds `allowed_models` and `limits` to a request body (only what was given).
    pub fn apply(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        if self.all_models {
            body.insert("allowed_models".into(), Value::Null);
        } else if !self.allowed_models.is_empty() {
            body.insert("allowed_models".into(), json!(self.allowed_models));
        }
        let mut limits = Map::new();
        for (name, value, is_count) in [
            ("requests_per_minute", &self.rpm, true),
            ("tokens_per_minute", &self.tpm, true),
            ("spend_total_usd", &self.budget_total, false),
            ("spend_daily_usd", &self.budget_daily, false),
            ("spend_monthly_usd", &self.budget_monthly, false),
        ] {
            let Some(text) = value else { continue };
            let text = text.trim();
            let value = if text.eq_ignore_ascii_case("none") {
                Value::Null
            } else if is_count {
                json!(text
                    .parse::<u64>()
                    .with_context(|| format!("{name}: {text:?} is not a whole number"))?)
            } else {
                // Money stays a decimal string: the gateway parses it exactly.
                Value::String(text.to_string())
            };
            limits.insert(name.into(), value);
        }
        if !limits.is_empty() {
            body.insert("limits".into(), Value::Object(limits));
        }
        Ok(())
    }
}

/// Prints `value` as pretty JSON.
pub fn print_json(value: &Value) -> anyhow::Result<()> {
    println!("{}", serde_json::to_string_pretty(value)?);
    Ok(())
}

/// A JSON field as table text: strings bare, null as `-`.
pub fn cell(value: &Value) -> String {
    match value {
        Value::Null => "-".into(),
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

/// A key's models and limits in one line, e.g. `models=openai/* rpm=10 daily=$5`.
pub fn policy_text(models: &Value, limits: &Value) -> String {
    let mut parts = Vec::new();
    if let Some(list) = models.as_array() {
        let names: Vec<String> = list.iter().map(cell).collect();
        parts.push(format!("models={}", names.join(",")));
    }
    for (field, short) in [
        ("requests_per_minute", "rpm"),
        ("tokens_per_minute", "tpm"),
        ("spend_total_usd", "total"),
        ("spend_daily_usd", "daily"),
        ("spend_monthly_usd", "monthly"),
    ] {
        if !limits[field].is_null() {
            let money = if field.starts_with("spend") { "$" } else { "" };
            parts.push(format!("{short}={money}{}", cell(&limits[field])));
        }
    }
    if parts.is_empty() {
        "-".into()
    } else {
        parts.join(" ")
    }
}

fn print_key(k: &Value) {
    let status = if !k["revoked_ms"].is_null() {
        "revoked"
    } else {
        "active"
    };
    println!(
        "{:<22} {:<20} {:<12} {:<12} {:<8} {}",
        cell(&k["id"]),
        cell(&k["name"]),
        cell(&k["prefix"]),
        cell(&k["project_id"]),
        status,
        policy_text(&k["allowed_models"], &k["limits"]),
    );
}

fn print_key_header() {
    println!(
        "{:<22} {:<20} {:<12} {:<12} {:<8} policy",
        "id", "name", "prefix", "project", "status"
    );
}

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Only this project's usage.
    #[arg(long)]
    pub project: Option<String>,
    /// Only this key's usage.
    #[arg(long)]
    pub key_id: Option<String>,
    /// Only this participant token's usage (its jti).
    #[arg(long)]
    pub token_id: Option<String>,
    /// Only this participant or OAuth user.
    #[arg(long)]
    pub user: Option<String>,
    /// Only this room.
    #[arg(long)]
    pub room: Option<String>,
    /// Only this delegation.
    #[arg(long)]
    pub delegation_id: Option<String>,
    /// Only calls annotated `name=value` (header `Meshgate-Annotation-<name>`); repeatable.
    #[arg(long = "annotation", value_name = "NAME=VALUE")]
    pub annotations: Vec<String>,
    /// Only this model (as the client asked for it).
    #[arg(long)]
    pub model: Option<String>,
    /// From this time (RFC 3339 or unix ms).
    #[arg(long)]
    pub since: Option<String>,
    /// Until this time, exclusive.
    #[arg(long)]
    pub until: Option<String>,
    /// Totals grouped by model, key, project, token, user, room, delegation, day or
    /// annotation:<name> (the default view).
    #[arg(long, default_value = "model")]
    pub group_by: String,
    /// List events instead of totals, newest first.
    #[arg(long)]
    pub events: bool,
    /// Events per page.
    #[arg(long, default_value_t = 50)]
    pub limit: u32,
    /// Older events than this event id (the `--before` hint of the previous page).
    #[arg(long)]
    pub before: Option<String>,
    /// Print the raw JSON.
    #[arg(long)]
    pub json: bool,
    /// Your own usage (the credential of `meshgate login` or MESHGATE_TOKEN), not the
    /// admin view. The default when no admin token is given and you are logged in.
    #[arg(long)]
    pub mine: bool,
}

#[derive(Debug, clap::Args)]
pub struct AuditArgs {
    /// Only this project's actions.
    #[arg(long)]
    project: Option<String>,
    /// Only this action (e.g. `key.created`).
    #[arg(long)]
    action: Option<String>,
    /// From this time (RFC 3339 or unix ms).
    #[arg(long)]
    since: Option<String>,
    /// Until this time, exclusive.
    #[arg(long)]
    until: Option<String>,
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Older events than this event id.
    #[arg(long)]
    before: Option<String>,
    #[arg(long)]
    json: bool,
}

#[derive(Debug, clap::Subcommand)]
pub enum PricingCommand {
    /// Print what a model costs and where the price comes from.
    Check {
        model: String,
        /// A meshgate.toml whose [pricing] files are loaded too.
        #[arg(long, env = "MESHGATE_CONFIG")]
        config: Option<PathBuf>,
    },
}

pub async fn keys(command: KeysCommand, target: &AdminTarget) -> anyhow::Result<()> {
    let client = AdminClient::new(target)?;
    match command {
        KeysCommand::Create {
            name,
            project,
            expires,
            policy,
            quiet,
        } => {
            let mut body = Map::new();
            body.insert("name".into(), Value::String(name.clone()));
            if let Some(p) = project {
                body.insert("project_id".into(), Value::String(p));
            }
            if let Some(e) = expires {
                body.insert("expires_at".into(), Value::String(e));
            }
            policy.apply(&mut body)?;
            let key = client.post("/admin/v1/keys", &Value::Object(body)).await?;
            let secret = key["secret"].as_str().unwrap_or_default();
            if quiet {
                println!("{secret}");
            } else {
                println!(
                    "created key {} ({name}) in project {}",
                    cell(&key["id"]),
                    cell(&key["project_id"])
                );
                println!("secret (shown once): {secret}");
            }
        }
        KeysCommand::List { project, json } => {
            let query: Vec<(&str, String)> =
                project.map(|p| ("project_id", p)).into_iter().collect();
            let keys = client.get("/admin/v1/keys", &query).await?;
            if json {
                return print_json(&keys);
            }
            print_key_header();
            for k in keys["data"].as_array().into_iter().flatten() {
                print_key(k);
            }
        }
        KeysCommand::Show { id } => {
            let key = client.get(&format!("/admin/v1/keys/{id}"), &[]).await?;
            print_json(&key)?;
        }
        KeysCommand::Update {
            id,
            name,
            expires,
            policy,
        } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), Value::String(n));
            }
            if let Some(e) = expires {
                let value = if e.eq_ignore_ascii_case("never") {
                    Value::Null
                } else {
                    Value::String(e)
                };
                body.insert("expires_at".into(), value);
            }
            policy.apply(&mut body)?;
            if body.is_empty() {
                bail!("nothing to change: give --name, --expires, --allowed-model, --all-models or a limit");
            }
            let key = client
                .patch(&format!("/admin/v1/keys/{id}"), &Value::Object(body))
                .await?;
            print_key_header();
            print_key(&key);
        }
        KeysCommand::Rotate { id, grace, quiet } => {
            let key = client
                .post(
                    &format!("/admin/v1/keys/{id}/rotate"),
                    &json!({ "grace_seconds": grace }),
                )
                .await?;
            let secret = key["secret"].as_str().unwrap_or_default();
            if quiet {
                println!("{secret}");
            } else {
                println!("rotated key {id}");
                println!("new secret (shown once): {secret}");
                if grace > 0 {
                    println!("the old secret works for {grace} more seconds");
                } else {
                    println!("the old secret no longer works");
                }
            }
        }
        KeysCommand::Revoke { id } => {
            client.delete(&format!("/admin/v1/keys/{id}")).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn audit(args: AuditArgs, target: &AdminTarget) -> anyhow::Result<()> {
    let client = AdminClient::new(target)?;
    let mut query: Vec<(&str, String)> = vec![("limit", args.limit.to_string())];
    for (name, value) in [
        ("project_id", &args.project),
        ("action", &args.action),
        ("since", &args.since),
        ("until", &args.until),
        ("before", &args.before),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    let page = client.get("/admin/v1/audit", &query).await?;
    if args.json {
        return print_json(&page);
    }
    println!(
        "{:<14} {:<8} {:<14} {:<22} {:<26} details",
        "at_ms", "actor", "project", "action", "target"
    );
    for e in page["data"].as_array().into_iter().flatten() {
        println!(
            "{:<14} {:<8} {:<14} {:<22} {:<26} {}",
            cell(&e["at_ms"]),
            cell(&e["actor"]),
            cell(&e["project_id"]),
            cell(&e["action"]),
            cell(&e["target"]),
            e["details"],
        );
    }
    if let Some(next) = page["next_before"].as_str() {
        println!("(more: add --before {next})");
    }
    Ok(())
}

/// `meshgate usage`: the caller's own usage with `--mine`, or when neither an admin token
/// nor an admin-only filter is given and a developer credential is at hand; the admin
/// view otherwise.
pub async fn usage(args: UsageArgs, target: &AdminTarget) -> anyhow::Result<()> {
    let admin_filters = args.project.is_some()
        || args.key_id.is_some()
        || args.token_id.is_some()
        || args.user.is_some()
        || args.room.is_some()
        || args.delegation_id.is_some()
        || !args.annotations.is_empty();
    if args.mine && admin_filters {
        bail!("--mine shows your own usage: --project, --key-id, --token-id, --user, --room, --delegation-id and --annotation need the admin view");
    }
    let admin_asked = target.admin_token.is_some() || admin_filters;
    if args.mine || (!admin_asked && crate::devtarget::has_credential()) {
        return crate::my_usage::usage(args, target.url.as_deref()).await;
    }
    let client = AdminClient::new(target)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("project_id", &args.project),
        ("key_id", &args.key_id),
        ("token_id", &args.token_id),
        ("user", &args.user),
        ("room", &args.room),
        ("delegation_id", &args.delegation_id),
        ("model", &args.model),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    // Annotation names are part of the parameter name, so they are owned strings.
    let mut annotations = Vec::new();
    for pair in &args.annotations {
        let Some((name, value)) = pair.split_once('=') else {
            bail!("--annotation takes name=value, not {pair:?}");
        };
        annotations.push((format!("annotation.{name}"), value.to_string()));
    }
    query.extend(annotations.iter().map(|(n, v)| (n.as_str(), v.clone())));
    if args.events {
        query.push(("limit", args.limit.to_string()));
        if let Some(b) = &args.before {
            query.push(("before", b.clone()));
        }
        let page = client.get("/admin/v1/usage", &query).await?;
        if args.json {
            println!("{}", serde_json::to_string_pretty(&page)?);
            return Ok(());
        }
        println!(
            "{:<38} {:<18} {:<24} {:>6} {:<16} {:>8} {:>8} {:>12}",
            "request", "endpoint", "model", "status", "outcome", "input", "output", "cost_usd"
        );
        for e in page["data"].as_array().into_iter().flatten() {
            let u = &e["usage"];
            let input = u["input_uncached"].as_u64().unwrap_or(0)
                + u["cache_read"].as_u64().unwrap_or(0)
                + u["cache_write_5m"].as_u64().unwrap_or(0)
                + u["cache_write_1h"].as_u64().unwrap_or(0);
            println!(
                "{:<38} {:<18} {:<24} {:>6} {:<16} {:>8} {:>8} {:>12}",
                e["request_id"].as_str().unwrap_or(""),
                e["endpoint"].as_str().unwrap_or(""),
                e["model"].as_str().unwrap_or("-"),
                e["status"]
                    .as_u64()
                    .map(|s| s.to_string())
                    .unwrap_or("-".into()),
                e["outcome"].as_str().unwrap_or(""),
                input,
                u["output"].as_u64().unwrap_or(0),
                e["cost_usd"].as_str().unwrap_or("-"),
            );
        }
        if let Some(next) = page["next_before"].as_str() {
            println!("(more: add --before {next})");
        }
        return Ok(());
    }
    query.push(("group_by", args.group_by.clone()));
    let summary = client.get("/admin/v1/usage/summary", &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    let rows = summary["data"].as_array().cloned().unwrap_or_default();
    print_summary_table(&args.group_by, &rows, &summary["total"]);
    Ok(())
}

/// A usage summary as a table: one row per group, then the total.
pub fn print_summary_table(label: &str, rows: &[Value], total: &Value) {
    println!(
        "{:<30} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>12} {:>14}",
        label,
        "requests",
        "errors",
        "input",
        "cached",
        "cache_wr",
        "output",
        "markup_usd",
        "cost_usd"
    );
    for (row, label) in rows
        .iter()
        .map(|r| (r, r["group"].as_str().unwrap_or("-")))
        .chain(std::iter::once((total, "TOTAL")))
    {
        println!(
            "{:<30} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>12} {:>14}",
            label,
            row["requests"],
            row["errors"],
            row["input_uncached"],
            row["cache_read"],
            row["cache_write"],
            row["output"],
            row["markup_usd"].as_str().unwrap_or("0"),
            row["cost_usd"].as_str().unwrap_or("0"),
        );
    }
}

pub fn pricing(command: PricingCommand) -> anyhow::Result<()> {
    match command {
        PricingCommand::Check { model, config } => {
            let config = meshgate_gateway::Config::load(config.as_deref())?;
            let catalog = meshgate_gateway::state::load_catalog(&config)?;
            match catalog.describe(&model) {
                Some(text) => {
                    println!("{text}");
                    Ok(())
                }
                None => bail!(
                    "no price for model {model:?}: add one to a pricing file (meshgate TOML or LiteLLM JSON) listed under [pricing] files in meshgate.toml"
                ),
            }
        }
    }
}
