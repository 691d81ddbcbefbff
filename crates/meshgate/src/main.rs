//! The `meshgate` command: `serve` runs the gateway; `projects`, `keys`, `credits`,
//! `token`, `providers`, `usage` and `audit` talk to a running gateway's admin API
//! (`token mint` can also mint locally); `pricing check` reads the price catalog locally.
//!
//! # Layout
//! - `serve`: running the gateway.
//! - `admin_client`: the admin API client (URL and admin token).
//! - `commands`: keys, usage, audit, pricing, and the flags and printing shared.
//! - `projects`: projects, credits and provider keys.
//! - `tokens`: signing keys and minting participant tokens.
//! - `devconfig`, `devtarget`: the developer's stored login and the gateway it names.
//! - `login`, `setup`, `run`, `my_usage`: the developer's commands (`login`, `whoami`,
//!   `logout`, `setup codex|claude`, `run`, and `usage` of one's own).
//! - `proxy`: `meshgate proxy`, the local endpoint in front of a remote gateway.
//! - `ask`: `meshgate ask`, one streamed question with its metered cost.

mod admin_client;
mod ask;
mod commands;
mod devconfig;
mod devtarget;
mod login;
mod my_usage;
mod projects;
mod proxy;
mod run;
mod serve;
mod setup;
mod tokens;

use clap::{FromArgMatches, Parser, Subcommand};
use std::path::PathBuf;

#[derive(Debug, Parser)]
#[command(name = "meshgate", version, about = "A self-hostable LLM gateway")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

/// Where a running gateway's admin API is and how to authenticate to it.
#[derive(Debug, clap::Args)]
pub struct AdminTarget {
    /// The gateway's base URL; defaults to the one `meshgate login --admin` stored, else
    /// http://127.0.0.1:8787.
    #[arg(long, global = true, env = "MESHGATE_URL")]
    pub url: Option<String>,
    /// The admin token; defaults to the one `meshgate login --admin` stored for this URL,
    /// else to the one `meshgate serve` saved in its data dir.
    #[arg(
        long,
        global = true,
        env = "MESHGATE_ADMIN_TOKEN",
        hide_env_values = true
    )]
    pub admin_token: Option<String>,
    /// The gateway's data dir, to find the saved admin token.
    #[arg(long, global = true, env = "MESHGATE_DATA_DIR")]
    pub data_dir: Option<PathBuf>,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the gateway (embedded SQLite, no configuration needed).
    Serve(serve::ServeArgs),
    /// Create, list, show and update projects.
    Projects {
        #[command(subcommand)]
        command: projects::ProjectsCommand,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Create, list, show, update, rotate and revoke meshgate API keys.
    Keys {
        #[command(subcommand)]
        command: commands::KeysCommand,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Add to and read a project's credit ledger.
    Credits {
        #[command(subcommand)]
        command: projects::CreditsCommand,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Participant tokens: signing keys, and minting from a spec file.
    Token {
        #[command(subcommand)]
        command: tokens::TokenCommand,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// A project's own provider keys (bring your own key).
    Providers {
        #[command(subcommand)]
        command: projects::ProvidersCommand,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Show usage events or totals from the ledger.
    Usage {
        #[command(flatten)]
        args: commands::UsageArgs,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// Show the audit log of admin actions.
    Audit {
        #[command(flatten)]
        args: commands::AuditArgs,
        #[command(flatten)]
        target: AdminTarget,
    },
    /// A local OpenAI/Anthropic endpoint that forwards to a remote meshgate, with live usage.
    Proxy(proxy::ProxyArgs),
    /// Ask one question through the gateway; prints the answer, its tokens and cost.
    Ask(ask::AskArgs),
    /// Inspect the price catalog.
    Pricing {
        #[command(subcommand)]
        command: commands::PricingCommand,
    },
    /// Store a gateway URL and your credential (checked against the gateway first).
    Login(login::LoginArgs),
    /// Show your project, credential, limits and remaining budget or credits.
    Whoami {
        /// Print the gateway's raw answer.
        #[arg(long)]
        json: bool,
    },
    /// Remove the stored login.
    Logout,
    /// Point Codex CLI or Claude Code at the gateway.
    Setup {
        #[command(subcommand)]
        command: setup::SetupCommand,
    },
    /// Run a command with the OpenAI and Anthropic SDK variables set for the gateway.
    Run(run::RunArgs),
}

fn main() -> std::process::ExitCode {
    let matches = <Cli as clap::CommandFactory>::command().get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the runtime: {e}");
            return std::process::ExitCode::FAILURE;
        }
    };
    let result = runtime.block_on(async move {
        match cli.command {
            Command::Serve(args) => serve::run(args).await,
            Command::Projects { command, target } => projects::projects(command, &target).await,
            Command::Keys { command, target } => commands::keys(command, &target).await,
            Command::Credits { command, target } => projects::credits(command, &target).await,
            Command::Token { command, target } => tokens::token(command, &target).await,
            Command::Providers { command, target } => projects::providers(command, &target).await,
            Command::Audit { args, target } => commands::audit(args, &target).await,
            Command::Usage { args, target } => commands::usage(args, &target).await,
            Command::Pricing { command } => commands::pricing(command),
            Command::Login(args) => login::login(args).await,
            Command::Whoami { json } => login::whoami(json).await,
            Command::Logout => login::logout(),
            Command::Setup { command } => setup::setup(command),
            Command::Run(args) => run::run(args).await,
            Command::Proxy(args) => proxy::run(args).await,
            Command::Ask(args) => ask::run(args).await,
        }
    });
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}
