//! `meshgate login`, `whoami` and `logout`: storing a gateway URL and a credential the
//! gateway accepts (or, with `--admin`, its admin token for the admin commands), showing
//! who that credential is and what it has left, and forgetting them.

use crate::commands::cell;
use crate::devconfig::{self, AdminLogin, Login};
use crate::devtarget::{self, CallError, SelfServe};
use anyhow::{bail, Context};
use serde_json::Value;
use std::io::{BufRead, IsTerminal};

#[derive(Debug, clap::Args)]
pub struct LoginArgs {
    /// The gateway's base URL, e.g. https://llm.example.com.
    #[arg(long)]
    url: String,
    /// The credential (an API key, a participant token or an OAuth access token); else
    /// MESHGATE_TOKEN, else it is read from standard input (without echo on a terminal).
    #[arg(long)]
    token: Option<String>,
    /// The project to charge, sent as `Meshgate-Project-Id` (needed with OAuth tokens).
    #[arg(long)]
    project_id: Option<String>,
    /// Store the gateway's admin token instead (from --token, else MESHGATE_ADMIN_TOKEN,
    /// else standard input), for `projects`, `keys`, `credits`, `token`, `providers`,
    /// `usage` and `audit`.
    #[arg(long, conflicts_with = "project_id")]
    admin: bool,
}

/// The credential from `env` if set, else from standard input (without echo on a terminal).
fn read_token(env: &str) -> anyhow::Result<String> {
    if let Ok(token) = std::env::var(env) {
        if !token.trim().is_empty() {
            return Ok(token);
        }
    }
    let token = if std::io::stdin().is_terminal() {
        rpassword::prompt_password("meshgate credential: ").context("cannot read the credential")?
    } else {
        let mut line = String::new();
        std::io::stdin()
            .lock()
            .read_line(&mut line)
            .context("cannot read the credential from standard input")?;
        line
    };
    Ok(token)
}

pub async fn login(args: LoginArgs) -> anyhow::Result<()> {
    let env = match args.admin {
        true => "MESHGATE_ADMIN_TOKEN",
        false => "MESHGATE_TOKEN",
    };
    let token = match args.token {
        Some(t) => t,
        None => read_token(env)?,
    };
    let token = token.trim().to_string();
    if token.is_empty() {
        bail!("no credential given: pass --token, set {env}, or type it when asked");
    }
    let url = args.url.trim().trim_end_matches('/').to_string();
    if !(url.starts_with("http://") || url.starts_with("https://")) {
        bail!("--url must start with http:// or https://, not {url:?}");
    }
    if args.admin {
        return admin_login(AdminLogin {
            url,
            admin_token: token,
        })
        .await;
    }
    let login = Login {
        url,
        token,
        project_id: args.project_id,
    };
    // Only a credential the gateway accepts is stored.
    let me = match SelfServe::new(&login).get("me", &[]).await {
        Ok(me) => me,
        Err(CallError::Refused {
            status, message, ..
        }) if status.is_client_error() => bail!(
            "the gateway at {} refused this credential ({status}: {message}); nothing was saved",
            login.url
        ),
        Err(e) => return Err(e).context("cannot check the credential; nothing was saved"),
    };
    let path = devconfig::save_login(&login)?;
    println!(
        "logged in to {} as {} in project {}",
        login.url,
        credential_text(&me),
        cell(&me["project_id"])
    );
    println!("saved to {} (readable by you only)", path.display());
    Ok(())
}

/// Checks the admin token against the gateway's admin API, then stores it.
async fn admin_login(login: AdminLogin) -> anyhow::Result<()> {
    let response = reqwest::Client::new()
        .get(format!("{}/admin/v1/projects", login.url))
        .bearer_auth(&login.admin_token)
        .send()
        .await
        .with_context(|| {
            format!(
                "cannot reach the gateway at {}; nothing was saved",
                login.url
            )
        })?;
    let status = response.status();
    if !status.is_success() {
        bail!(
            "the gateway at {} refused this admin token ({status}); nothing was saved",
            login.url
        );
    }
    let path = devconfig::save_admin_login(&login)?;
    println!(
        "logged in to {} as its administrator: the admin commands use it",
        login.url
    );
    println!("saved to {} (readable by you only)", path.display());
    Ok(())
}

/// The credential's kind and name, e.g. `API key key_123 (laptop)`.
fn credential_text(me: &Value) -> String {
    let c = &me["credential"];
    let kind = match c["kind"].as_str() {
        Some("key") => "API key",
        Some("token") => "participant token",
        Some("delegation") => "delegation",
        Some("user") => "OAuth user",
        _ => "credential",
    };
    match c["name"].as_str() {
        Some(name) => format!("{kind} {} ({name})", cell(&c["id"])),
        None => format!("{kind} {}", cell(&c["id"])),
    }
}

fn limits_text(limits: &Value) -> String {
    if limits.is_null() {
        return "-".into();
    }
    let part = |field: &str, short: &str| {
        limits[field]
            .as_u64()
            .map(|n| format!("{short}={n}"))
            .unwrap_or_else(|| format!("{short}=unlimited"))
    };
    format!(
        "{} {}",
        part("requests_per_minute", "rpm"),
        part("tokens_per_minute", "tpm")
    )
}

pub async fn whoami(json: bool) -> anyhow::Result<()> {
    let login = devtarget::resolve()?;
    let me = devtarget::me(&login).await?;
    if json {
        return crate::commands::print_json(&me);
    }
    println!("gateway     {}", login.url);
    println!("project     {}", cell(&me["project_id"]));
    println!(
        "credential  {} [{}]",
        credential_text(&me),
        devtarget::masked(&login.token)
    );
    for (field, label) in [("user", "user"), ("room", "room")] {
        if !me[field].is_null() {
            println!("{label:<11} {}", cell(&me[field]));
        }
    }
    let models = &me["allowed_models"];
    for scope in ["project", "key", "token", "delegation"] {
        if let Some(list) = models[scope].as_array() {
            let names: Vec<String> = list.iter().map(cell).collect();
            println!("models      {} ({scope})", names.join(", "));
        }
    }
    println!(
        "rate        {} (project)",
        limits_text(&me["rate_limits"]["project"])
    );
    if !me["rate_limits"]["key"].is_null() {
        println!(
            "rate        {} (key)",
            limits_text(&me["rate_limits"]["key"])
        );
    }
    let budgets = me["budgets"].as_array().cloned().unwrap_or_default();
    if budgets.is_empty() {
        println!("budget      no spend limit and no credits");
    } else {
        println!(
            "{:<18} {:>14} {:>14} {:>14} {:>14}",
            "budget", "limit_usd", "spent_usd", "in_flight_usd", "remaining_usd"
        );
        for b in &budgets {
            println!(
                "{:<18} {:>14} {:>14} {:>14} {:>14}",
                cell(&b["budget"]),
                cell(&b["limit_usd"]),
                cell(&b["spent_usd"]),
                cell(&b["in_flight_usd"]),
                cell(&b["remaining_usd"]),
            );
        }
    }
    Ok(())
}

pub fn logout() -> anyhow::Result<()> {
    let developer = devconfig::remove_login()?;
    let admin = devconfig::remove_admin_login()?;
    if developer {
        println!("logged out: the stored gateway URL and credential are removed");
    }
    if admin {
        println!("logged out: the stored admin token is removed");
    }
    if !developer && !admin {
        println!("not logged in: nothing to remove");
    }
    if std::env::var_os("MESHGATE_TOKEN").is_some() {
        println!("note: MESHGATE_TOKEN is still set in this shell");
    }
    Ok(())
}
