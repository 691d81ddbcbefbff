//! The `meshgate` command: `serve` runs the gateway; `keys`, `usage` talk to a running
//! gateway's admin API; `pricing check` reads the price catalog locally.

mod admin_client;
mod commands;
mod serve;

use clap::{Parser, Subcommand};
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
    /// The gateway's base URL.
    #[arg(
        long,
        global = true,
        env = "MESHGATE_URL",
        default_value = "http://127.0.0.1:8787"
    )]
    pub url: String,
    /// The admin token; defaults to the one `meshgate serve` saved in its data dir.
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
    /// Create, list and revoke meshgate API keys.
    Keys {
        #[command(subcommand)]
        command: commands::KeysCommand,
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
    /// Inspect the price catalog.
    Pricing {
        #[command(subcommand)]
        command: commands::PricingCommand,
    },
}

fn main() -> std::process::ExitCode {
    let cli = Cli::parse();
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
            Command::Keys { command, target } => commands::keys(command, &target).await,
            Command::Usage { args, target } => commands::usage(args, &target).await,
            Command::Pricing { command } => commands::pricing(command),
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
