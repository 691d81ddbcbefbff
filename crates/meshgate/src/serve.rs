//! `meshgate serve`: loads the configuration, starts the gateway, prints how to use it,
//! and shuts down cleanly on SIGINT or SIGTERM.

use anyhow::Context;
use meshgate_gateway::config::redact_url;
use meshgate_gateway::{Config, Gateway};
use std::path::PathBuf;

#[derive(Debug, clap::Args)]
pub struct ServeArgs {
    /// A meshgate.toml; every key is optional (see meshgate.example.toml).
    #[arg(long, env = "MESHGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Directory of the embedded database and the saved admin token.
    #[arg(long)]
    data_dir: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8787).
    #[arg(long)]
    listen: Option<std::net::SocketAddr>,
    /// The database: `postgres://user:password@host/db` for a fleet sharing PostgreSQL, or
    /// `sqlite://path`; default the SQLite file in the data directory.
    #[arg(long, value_name = "URL")]
    database: Option<String>,
    /// Redis shared by a fleet for rate limits and budget reservations: `redis://host:6379`.
    #[arg(long, value_name = "URL")]
    redis: Option<String>,
}

pub async fn run(args: ServeArgs) -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("MESHGATE_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let mut config = Config::load(args.config.as_deref())?;
    if let Some(dir) = args.data_dir {
        config.data_dir = dir;
    }
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    if let Some(url) = args.database {
        config.database_url = url;
    }
    if let Some(url) = args.redis {
        config.redis_url = url;
    }
    let env = |name: &str| std::env::var(name).ok();
    let gateway = Gateway::build(config.clone(), &env).await?;
    let threads = config.server.thread_count();
    let listeners = meshgate_gateway::server::bind(config.listen, threads)
        .with_context(|| format!("cannot listen on {}", config.listen))?;
    let addr = listeners
        .first()
        .context("no listening socket")?
        .local_addr()?;
    print_banner(&gateway, &config, addr);
    gateway.run_threads(listeners, shutdown_signal()).await?;
    eprintln!("meshgate stopped; every usage event is written");
    Ok(())
}

fn print_banner(gateway: &Gateway, config: &Config, addr: std::net::SocketAddr) {
    let state = &gateway.state;
    let base = format!("http://{addr}");
    println!("meshgate listening on {base}");
    println!("  database: {}", redact_url(&config.database_url()));
    if !config.redis_url.is_empty() {
        println!("  redis: {}", redact_url(&config.redis_url));
    } else if config.database_url().starts_with("postgres") {
        let limits = if config.postgres_limits {
            "shared through PostgreSQL"
        } else {
            "per instance (postgres_limits = false)"
        };
        println!("  rate limits and budgets: {limits}");
    }
    for p in [&state.openai, &state.anthropic] {
        let key = if p.api_key.is_some() {
            "key set"
        } else {
            "key NOT set"
        };
        println!(
            "  provider {}: {} ({} {key})",
            p.name, p.base_url, p.api_key_env
        );
    }
    match (
        &gateway.admin.token,
        gateway.admin.created,
        &gateway.admin.saved_at,
    ) {
        (Some(token), true, Some(path)) => {
            println!(
                "  admin token (shown once, saved in {}): {token}",
                path.display()
            )
        }
        (_, _, Some(path)) => println!("  admin token: saved in {}", path.display()),
        _ => println!("  admin token: from MESHGATE_ADMIN_TOKEN"),
    }
    println!();
    println!("Try it:");
    println!("  meshgate keys create --name dev --url {base}");
    println!("  export OPENAI_BASE_URL={base}/openai/v1 OPENAI_API_KEY=<the mg_ key>");
    println!("  export ANTHROPIC_BASE_URL={base}/anthropic ANTHROPIC_API_KEY=<the mg_ key>");
    println!("  meshgate usage --url {base}");
}

async fn shutdown_signal() {
    let ctrl_c = async {
        let _ = tokio::signal::ctrl_c().await;
    };
    #[cfg(unix)]
    let term = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut s) => {
                s.recv().await;
            }
            Err(_) => std::future::pending::<()>().await,
        }
    };
    #[cfg(not(unix))]
    let term = std::future::pending::<()>();
    tokio::select! {
        () = ctrl_c => {}
        () = term => {}
    }
    eprintln!("meshgate: shutting down; finishing in-flight calls");
}
