//! The admin commands about projects and what belongs to them: `projects`, `credits` and
//! `providers` (a project's own provider keys).

use crate::admin_client::AdminClient;
use crate::commands::{cell, policy_text, print_json, PolicyArgs};
use crate::AdminTarget;
use anyhow::{bail, Context};
use serde_json::{json, Map, Value};

#[derive(Debug, clap::Subcommand)]
pub enum ProjectsCommand {
    /// Create a project.
    Create {
        /// `[a-z0-9_-]{1,64}`; default `proj_<random>`.
        #[arg(long)]
        id: Option<String>,
        #[arg(long)]
        name: String,
        #[command(flatten)]
        settings: SettingsArgs,
    },
    /// List projects.
    List {
        #[arg(long)]
        json: bool,
    },
    /// Show one project with its settings.
    Show { id: String },
    /// Change a project's name or settings; the next call sees it.
    Update {
        id: String,
        #[arg(long)]
        name: Option<String>,
        #[command(flatten)]
        settings: SettingsArgs,
    },
}

/// A project's settings beyond models and limits. On `update`, what is left out stays.
#[derive(Debug, clap::Args)]
pub struct SettingsArgs {
    #[command(flatten)]
    policy: PolicyArgs,
    /// Refuse calls (402) when the credit balance is not positive: true or false.
    #[arg(long)]
    credits_enforced: Option<bool>,
    /// Percent added to the provider cost (e.g. 10), or `none`.
    #[arg(long)]
    markup: Option<String>,
    /// Markup for one provider, `provider=percent`; repeatable; replaces the map.
    #[arg(long = "provider-markup", value_name = "PROVIDER=PERCENT")]
    provider_markups: Vec<String>,
    /// An OAuth user (`sub` or email, `*` for any) who may use the project; repeatable;
    /// replaces the list.
    #[arg(long = "member")]
    members: Vec<String>,
}

impl SettingsArgs {
    fn apply(&self, body: &mut Map<String, Value>) -> anyhow::Result<()> {
        self.policy.apply(body)?;
        if let Some(enforced) = self.credits_enforced {
            body.insert("credits_enforced".into(), Value::Bool(enforced));
        }
        if let Some(markup) = &self.markup {
            let value = if markup.eq_ignore_ascii_case("none") {
                Value::Null
            } else {
                Value::String(markup.clone())
            };
            body.insert("markup_percent".into(), value);
        }
        if !self.provider_markups.is_empty() {
            let mut map = Map::new();
            for pair in &self.provider_markups {
                let Some((provider, percent)) = pair.split_once('=') else {
                    bail!("--provider-markup takes provider=percent, not {pair:?}");
                };
                map.insert(provider.into(), Value::String(percent.into()));
            }
            body.insert("provider_markup_percent".into(), Value::Object(map));
        }
        if !self.members.is_empty() {
            body.insert("members".into(), json!(self.members));
        }
        Ok(())
    }
}

#[derive(Debug, clap::Subcommand)]
pub enum CreditsCommand {
    /// Add an entry to a project's credit ledger.
    Add {
        #[arg(long)]
        project: String,
        /// grant, purchase, refund or adjustment.
        #[arg(long, default_value = "grant")]
        kind: String,
        /// USD as a decimal (e.g. 25.00); negative only for an adjustment.
        #[arg(long, allow_hyphen_values = true)]
        amount: String,
        #[arg(long)]
        note: Option<String>,
    },
    /// Show a project's balance and ledger, newest first.
    List {
        #[arg(long)]
        project: String,
        #[arg(long, default_value_t = 50)]
        limit: u32,
        /// Older entries than this entry id.
        #[arg(long)]
        before: Option<String>,
        #[arg(long)]
        json: bool,
    },
}

#[derive(Debug, clap::Subcommand)]
pub enum ProvidersCommand {
    /// Set a project's own key for a provider (stored sealed, never shown again).
    ///
    /// The key is read from the environment variable named by --api-key-env, else from
    /// the first line of standard input; never from a flag, which would land in shell
    /// history and process listings.
    Set {
        #[arg(long)]
        project: String,
        /// `openai`, `anthropic` or `gemini`.
        #[arg(long)]
        provider: String,
        /// Name of the environment variable holding the key.
        #[arg(long, value_name = "NAME")]
        api_key_env: Option<String>,
        /// Another base URL for the project's calls.
        #[arg(long)]
        base_url: Option<String>,
    },
    /// List a project's provider keys (never the keys themselves).
    List {
        #[arg(long)]
        project: String,
        #[arg(long)]
        json: bool,
    },
    /// Delete a project's key for a provider: its calls use the gateway's key again.
    Delete {
        #[arg(long)]
        project: String,
        #[arg(long)]
        provider: String,
    },
}

fn print_project(p: &Value) {
    let s = &p["settings"];
    println!(
        "{:<24} {:<20} {:<8} {:<8} {}",
        cell(&p["id"]),
        cell(&p["name"]),
        if s["credits_enforced"] == true {
            "yes"
        } else {
            "no"
        },
        cell(&s["markup_percent"]),
        policy_text(&s["allowed_models"], &s["limits"]),
    );
}

fn print_project_header() {
    println!(
        "{:<24} {:<20} {:<8} {:<8} policy",
        "id", "name", "credits", "markup%"
    );
}

pub async fn projects(command: ProjectsCommand, target: &AdminTarget) -> anyhow::Result<()> {
    let client = AdminClient::new(target)?;
    match command {
        ProjectsCommand::Create { id, name, settings } => {
            let mut fields = Map::new();
            settings.apply(&mut fields)?;
            let mut body = json!({ "name": name, "settings": fields });
            if let Some(id) = id {
                body["id"] = Value::String(id);
            }
            let project = client.post("/admin/v1/projects", &body).await?;
            println!("created project {}", cell(&project["id"]));
        }
        ProjectsCommand::List { json } => {
            let list = client.get("/admin/v1/projects", &[]).await?;
            if json {
                return print_json(&list);
            }
            print_project_header();
            for p in list["data"].as_array().into_iter().flatten() {
                print_project(p);
            }
        }
        ProjectsCommand::Show { id } => {
            print_json(&client.get(&format!("/admin/v1/projects/{id}"), &[]).await?)?;
        }
        ProjectsCommand::Update { id, name, settings } => {
            let mut body = Map::new();
            if let Some(n) = name {
                body.insert("name".into(), Value::String(n));
            }
            settings.apply(&mut body)?;
            if body.is_empty() {
                bail!("nothing to change: give --name or a setting");
            }
            let project = client
                .patch(&format!("/admin/v1/projects/{id}"), &Value::Object(body))
                .await?;
            print_project_header();
            print_project(&project);
        }
    }
    Ok(())
}

pub async fn credits(command: CreditsCommand, target: &AdminTarget) -> anyhow::Result<()> {
    let client = AdminClient::new(target)?;
    match command {
        CreditsCommand::Add {
            project,
            kind,
            amount,
            note,
        } => {
            let mut body = json!({ "kind": kind, "amount_usd": amount });
            if let Some(n) = note {
                body["note"] = Value::String(n);
            }
            let entry = client
                .post(&format!("/admin/v1/projects/{project}/credits"), &body)
                .await?;
            println!(
                "added {} {} USD to {project} ({})",
                cell(&entry["kind"]),
                cell(&entry["amount_usd"]),
                cell(&entry["id"])
            );
        }
        CreditsCommand::List {
            project,
            limit,
            before,
            json,
        } => {
            let mut query = vec![("limit", limit.to_string())];
            if let Some(b) = before {
                query.push(("before", b));
            }
            let page = client
                .get(&format!("/admin/v1/projects/{project}/credits"), &query)
                .await?;
            if json {
                return print_json(&page);
            }
            println!("balance: {} USD", cell(&page["balance_usd"]));
            println!(
                "{:<40} {:<12} {:>14} {:<14} note",
                "id", "kind", "amount_usd", "created_ms"
            );
            for e in page["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<40} {:<12} {:>14} {:<14} {}",
                    cell(&e["id"]),
                    cell(&e["kind"]),
                    cell(&e["amount_usd"]),
                    cell(&e["created_ms"]),
                    cell(&e["note"]),
                );
            }
            if let Some(next) = page["next_before"].as_str() {
                println!("(more: add --before {next})");
            }
        }
    }
    Ok(())
}

/// The provider key: from the named environment variable, else the first line of stdin.
fn read_api_key(env_name: Option<&str>) -> anyhow::Result<String> {
    let key = match env_name {
        Some(name) => std::env::var(name)
            .with_context(|| format!("environment variable {name} is not set"))?,
        None => {
            let mut line = String::new();
            std::io::stdin()
                .read_line(&mut line)
                .context("cannot read the API key from standard input")?;
            line
        }
    };
    let key = key.trim().to_string();
    if key.is_empty() {
        bail!("empty API key: set it in the variable named by --api-key-env, or pipe it on standard input");
    }
    Ok(key)
}

pub async fn providers(command: ProvidersCommand, target: &AdminTarget) -> anyhow::Result<()> {
    let client = AdminClient::new(target)?;
    match command {
        ProvidersCommand::Set {
            project,
            provider,
            api_key_env,
            base_url,
        } => {
            let api_key = read_api_key(api_key_env.as_deref())?;
            let mut body = json!({ "api_key": api_key });
            if let Some(url) = base_url {
                body["base_url"] = Value::String(url);
            }
            client
                .put(
                    &format!("/admin/v1/projects/{project}/providers/{provider}"),
                    &body,
                )
                .await?;
            println!("set {provider} key of project {project}");
        }
        ProvidersCommand::List { project, json } => {
            let list = client
                .get(&format!("/admin/v1/projects/{project}/providers"), &[])
                .await?;
            if json {
                return print_json(&list);
            }
            println!("{:<12} {:<40} updated_ms", "provider", "base_url");
            for p in list["data"].as_array().into_iter().flatten() {
                println!(
                    "{:<12} {:<40} {}",
                    cell(&p["provider"]),
                    cell(&p["base_url"]),
                    cell(&p["updated_ms"])
                );
            }
        }
        ProvidersCommand::Delete { project, provider } => {
            client
                .delete(&format!(
                    "/admin/v1/projects/{project}/providers/{provider}"
                ))
                .await?;
            println!("deleted {provider} key of project {project}");
        }
    }
    Ok(())
}
