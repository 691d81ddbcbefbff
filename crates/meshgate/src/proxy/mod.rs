//! `meshgate proxy`: a local OpenAI and Anthropic endpoint in front of a remote meshgate.
//! Local tools authenticate with a local bearer; the proxy forwards their calls with the
//! developer's upstream credential (which they never see) and shows the gateway's own
//! metering of each call, live or one line per request.
//!
//! # Layout
//! - `upstream`: the remote gateway, the credential, and the per-call cost lookup.
//! - `forward`: the local endpoint and the streaming forwarder.
//! - `report`: finished calls, their metering, and the session's aggregate.
//! - `tui`: the live usage view.

pub mod forward;
pub mod report;
mod tui;
pub mod upstream;

use crate::devconfig;
use anyhow::Context;
use report::{Report, UpstreamHealth};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::atomic::AtomicU64;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::mpsc;
use upstream::Upstream;

#[derive(Debug, clap::Args)]
pub struct ProxyArgs {
    /// The address to listen on.
    #[arg(long, default_value = "127.0.0.1")]
    pub host: IpAddr,
    /// The port to listen on (0: any free port).
    #[arg(long, default_value_t = 8766)]
    pub port: u16,
    /// The remote meshgate; defaults to the URL stored by `meshgate login`.
    #[arg(long, env = "MESHGATE_URL")]
    pub upstream: Option<String>,
    /// The environment variable holding the upstream credential (else the stored login's).
    #[arg(long, default_value = upstream::TOKEN_ENV)]
    pub token_from_env: String,
    /// Sent upstream as `Meshgate-Project-Id`.
    #[arg(long)]
    pub project_id: Option<String>,
    /// The local bearer; defaults to the one generated and stored on first run.
    #[arg(long, env = "MESHGATE_PROXY_BEARER", hide_env_values = true)]
    pub bearer: Option<String>,
    /// Accept local calls without the local bearer.
    #[arg(long)]
    pub insecure: bool,
    /// Print one line per request instead of the live view (also when stdout is not a
    /// terminal).
    #[arg(long)]
    pub no_tui: bool,
}

pub async fn run(args: ProxyArgs) -> anyhow::Result<()> {
    let upstream = Upstream::resolve(
        args.upstream.as_deref(),
        &args.token_from_env,
        args.project_id.as_deref(),
    )?;
    let bearer = match (&args.bearer, args.insecure) {
        (_, true) => None,
        (Some(b), false) if !b.trim().is_empty() => Some(b.trim().to_string()),
        _ => Some(devconfig::local_bearer()?),
    };
    let listener = tokio::net::TcpListener::bind(SocketAddr::new(args.host, args.port))
        .await
        .with_context(|| format!("cannot listen on {}:{}", args.host, args.port))?;
    let mut local = listener.local_addr()?;
    if local.ip().is_unspecified() {
        local.set_ip(IpAddr::V4(Ipv4Addr::LOCALHOST));
    }
    let local = format!("http://{local}");
    let key = bearer.clone().unwrap_or_else(|| "any".to_string());
    let exports = vec![
        format!("export OPENAI_BASE_URL={local}/openai/v1"),
        format!("export OPENAI_API_KEY={key}"),
        format!("export ANTHROPIC_BASE_URL={local}/anthropic"),
        format!("export ANTHROPIC_API_KEY={key}"),
    ];
    // Before the banner: whoever waits for it may signal the proxy right after.
    let stopped = shutdown_signal();
    println!("meshgate proxy on {local} -> {}", upstream.base);
    for line in &exports {
        println!("{line}");
    }

    let (finished_tx, finished) = mpsc::unbounded_channel();
    let (reports_tx, mut reports) = mpsc::unbounded_channel::<Report>();
    let in_flight = Arc::new(AtomicU64::new(0));
    let forwarder = Arc::new(forward::Forwarder {
        upstream: upstream.clone(),
        bearer,
        finished: finished_tx,
        in_flight: in_flight.clone(),
    });
    let app = axum::Router::new()
        .fallback(forward::forward)
        .with_state(forwarder);
    let (quit_tx, quit) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(async move {
        axum::serve(listener, app)
            .with_graceful_shutdown(async {
                let _ = quit.await;
            })
            .await
    });
    let metering = tokio::spawn(report::meter_calls(
        upstream.clone(),
        finished,
        reports_tx.clone(),
    ));
    let health = tokio::spawn(report::watch_health(upstream.clone(), reports_tx));

    let live = !args.no_tui && std::io::IsTerminal::is_terminal(&std::io::stdout());
    if live {
        let banner = tui::Banner {
            local: local.clone(),
            upstream: upstream.base.clone(),
            exports,
        };
        tui::run(banner, reports, in_flight, stopped).await?;
    } else {
        tokio::pin!(stopped);
        let mut reachable = None;
        loop {
            tokio::select! {
                () = &mut stopped => break,
                report = reports.recv() => match report {
                    Some(Report::Call(record)) => println!("{}", record.line()),
                    // Only changes are worth a line, on stderr beside the request lines.
                    Some(Report::Upstream(health)) => match health {
                        UpstreamHealth::Reachable if reachable != Some(true) => {
                            reachable = Some(true);
                            eprintln!("upstream {} is reachable", upstream.base);
                        }
                        UpstreamHealth::Unreachable(why) if reachable != Some(false) => {
                            reachable = Some(false);
                            eprintln!("upstream {} is unreachable: {why}", upstream.base);
                        }
                        _ => {}
                    },
                    None => break,
                },
            }
        }
    }
    health.abort();
    // Calls still streaming get a moment to end; then the process goes.
    let _ = quit_tx.send(());
    let _ = tokio::time::timeout(Duration::from_secs(2), server).await;
    metering.abort();
    Ok(())
}

/// Completes on SIGINT (Ctrl-C outside raw mode, or `kill -INT`) or SIGTERM. The handlers
/// are installed now, not when first polled: from here on neither signal kills the process
/// with the terminal still in raw mode.
fn shutdown_signal() -> impl std::future::Future<Output = ()> {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{signal, SignalKind};
        let int = signal(SignalKind::interrupt());
        let term = signal(SignalKind::terminate());
        async move {
            match (int, term) {
                (Ok(mut int), Ok(mut term)) => {
                    tokio::select! {
                        _ = int.recv() => {}
                        _ = term.recv() => {}
                    }
                }
                _ => {
                    let _ = tokio::signal::ctrl_c().await;
                }
            }
        }
    }
    #[cfg(not(unix))]
    {
        async {
            let _ = tokio::signal::ctrl_c().await;
        }
    }
}
