//! The admin-side commands: `keys`, `usage` and `pricing check`.

use crate::admin_client::AdminClient;
use crate::AdminTarget;
use anyhow::bail;
use serde_json::{json, Value};
use std::path::PathBuf;

#[derive(Debug, clap::Subcommand)]
pub enum KeysCommand {
    /// Create a key; its secret is printed once.
    Create {
        #[arg(long)]
        name: String,
        /// Expiry as RFC 3339 time or unix milliseconds.
        #[arg(long)]
        expires_at: Option<String>,
        /// Print only the secret (for scripts).
        #[arg(long)]
        quiet: bool,
    },
    /// List keys (never their secrets).
    List {
        #[arg(long)]
        json: bool,
    },
    /// Revoke a key by id; the next call with it is refused.
    Revoke { id: String },
}

#[derive(Debug, clap::Args)]
pub struct UsageArgs {
    /// Only this key's usage.
    #[arg(long)]
    key_id: Option<String>,
    /// Only this model (as the client asked for it).
    #[arg(long)]
    model: Option<String>,
    /// From this time (RFC 3339 or unix ms).
    #[arg(long)]
    since: Option<String>,
    /// Until this time, exclusive.
    #[arg(long)]
    until: Option<String>,
    /// Totals grouped by `model` or `key` (the default view).
    #[arg(long, default_value = "model")]
    group_by: String,
    /// List events instead of totals, newest first.
    #[arg(long)]
    events: bool,
    /// Events per page.
    #[arg(long, default_value_t = 50)]
    limit: u32,
    /// Print the raw JSON.
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
            expires_at,
            quiet,
        } => {
            let mut body = json!({ "name": name });
            if let Some(e) = expires_at {
                body["expires_at"] = Value::String(e);
            }
            let key = client.post("/admin/v1/keys", &body).await?;
            let secret = key["secret"].as_str().unwrap_or_default();
            if quiet {
                println!("{secret}");
            } else {
                println!(
                    "created key {} ({})",
                    key["id"].as_str().unwrap_or("?"),
                    name
                );
                println!("secret (shown once): {secret}");
            }
        }
        KeysCommand::List { json } => {
            let keys = client.get("/admin/v1/keys", &[]).await?;
            if json {
                println!("{}", serde_json::to_string_pretty(&keys)?);
                return Ok(());
            }
            println!(
                "{:<22} {:<20} {:<12} {:<10} status",
                "id", "name", "prefix", "project"
            );
            for k in keys["data"].as_array().into_iter().flatten() {
                let status = if k["revoked_ms"].is_null() {
                    "active"
                } else {
                    "revoked"
                };
                println!(
                    "{:<22} {:<20} {:<12} {:<10} {status}",
                    k["id"].as_str().unwrap_or(""),
                    k["name"].as_str().unwrap_or(""),
                    k["prefix"].as_str().unwrap_or(""),
                    k["project_id"].as_str().unwrap_or(""),
                );
            }
        }
        KeysCommand::Revoke { id } => {
            client.delete(&format!("/admin/v1/keys/{id}")).await?;
            println!("revoked {id}");
        }
    }
    Ok(())
}

pub async fn usage(args: UsageArgs, target: &AdminTarget) -> anyhow::Result<()> {
    let client = AdminClient::new(target)?;
    let mut query: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
        ("key_id", &args.key_id),
        ("model", &args.model),
        ("since", &args.since),
        ("until", &args.until),
    ] {
        if let Some(v) = value {
            query.push((name, v.clone()));
        }
    }
    if args.events {
        query.push(("limit", args.limit.to_string()));
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
    if args.group_by != "model" && args.group_by != "key" {
        bail!("--group-by must be model or key");
    }
    query.push(("group_by", args.group_by.clone()));
    let summary = client.get("/admin/v1/usage/summary", &query).await?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&summary)?);
        return Ok(());
    }
    println!(
        "{:<30} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>14}",
        args.group_by, "requests", "errors", "input", "cached", "cache_wr", "output", "cost_usd"
    );
    let rows = summary["data"].as_array().cloned().unwrap_or_default();
    for row in rows.iter().chain(std::iter::once(&summary["total"])) {
        let label = if std::ptr::eq(row, &summary["total"]) {
            "TOTAL"
        } else {
            row["group"].as_str().unwrap_or("-")
        };
        println!(
            "{:<30} {:>8} {:>7} {:>10} {:>10} {:>10} {:>10} {:>14}",
            label,
            row["requests"],
            row["errors"],
            row["input_uncached"],
            row["cache_read"],
            row["cache_write"],
            row["output"],
            row["cost_usd"].as_str().unwrap_or("0"),
        );
    }
    Ok(())
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
