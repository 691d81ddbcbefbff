//! `meshgate usage` for a developer ("My Usage"): the caller's own usage, by model and by
//! day, from the gateway's self-serve API (`/v1/usage/summary`, `/v1/usage`) with the
//! credential of `meshgate login` or MESHGATE_TOKEN.

use crate::commands::{print_json, print_summary_table, UsageArgs};
use crate::devtarget::{self, SelfServe};
use serde_json::Value;

pub async fn usage(args: UsageArgs, url: Option<&str>) -> anyhow::Result<()> {
    let mut login = devtarget::resolve()?;
    if let Some(url) = url {
        login.url = url.trim_end_matches('/').to_string();
    }
    let api = SelfServe::new(&login);
    let mut query: Vec<(&str, String)> = Vec::new();
    for (name, value) in [
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
        if let Some(b) = &args.before {
            query.push(("before", b.clone()));
        }
        let page = api.get("usage", &query).await?;
        if args.json {
            return print_json(&page);
        }
        print_events(&page);
        return Ok(());
    }
    let mut summaries = Vec::new();
    for group in ["model", "day"] {
        let mut q = query.clone();
        q.push(("group_by", group.to_string()));
        summaries.push((group, api.get("usage/summary", &q).await?));
    }
    if args.json {
        let by: serde_json::Map<String, Value> = summaries
            .into_iter()
            .map(|(g, s)| (format!("by_{g}"), s))
            .collect();
        return print_json(&Value::Object(by));
    }
    println!(
        "your usage at {} ({})",
        login.url,
        devtarget::masked(&login.token)
    );
    for (group, summary) in &summaries {
        println!();
        let rows = summary["data"].as_array().cloned().unwrap_or_default();
        print_summary_table(group, &rows, &summary["total"]);
    }
    Ok(())
}

fn print_events(page: &Value) {
    println!(
        "{:<38} {:<20} {:<24} {:>6} {:>8} {:>8} {:>12}",
        "request", "endpoint", "model", "status", "input", "output", "cost_usd"
    );
    for e in page["data"].as_array().into_iter().flatten() {
        let u = &e["usage"];
        let input: u64 = [
            "input_uncached",
            "cache_read",
            "cache_write_5m",
            "cache_write_1h",
        ]
        .iter()
        .filter_map(|f| u[*f].as_u64())
        .sum();
        println!(
            "{:<38} {:<20} {:<24} {:>6} {:>8} {:>8} {:>12}",
            e["request_id"].as_str().unwrap_or(""),
            e["endpoint"].as_str().unwrap_or(""),
            e["model"].as_str().unwrap_or("-"),
            crate::commands::cell(&e["status"]),
            input,
            u["output"].as_u64().unwrap_or(0),
            e["cost_usd"].as_str().unwrap_or("-"),
        );
    }
    if let Some(next) = page["next_before"].as_str() {
        println!("(more: add --before {next})");
    }
}
