//! The server: accepts connections (TCP_NODELAY, HTTP/1.1 and HTTP/2), routes admin and
//! proxied calls, and on shutdown stops accepting, lets in-flight calls finish within the
//! grace period, then flushes the ledger.

use crate::state::AppState;
use crate::{admin, proxy};
use axum::extract::{Request, State};
use axum::routing::get;
use axum::Router;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinSet;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        .route("/healthz", get(|| async { "ok" }))
        .merge(admin::router())
        .fallback(|State(state): State<Arc<AppState>>, request: Request| {
            proxy::handle(state, request)
        })
        .with_state(state)
}

/// Serves until `shutdown` resolves, then drains connections (bounded by
/// `timeouts.shutdown_grace_ms`) and closes the ledger; every settlement has been queued
/// to the ledger when this returns.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let app = router(state.clone());
    let builder = Builder::new(TokioExecutor::new());
    let graceful = GracefulShutdown::new();
    let mut connections = JoinSet::new();
    tokio::pin!(shutdown);
    loop {
        tokio::select! {
            accepted = listener.accept() => {
                let (stream, _) = match accepted {
                    Ok(pair) => pair,
                    Err(e) => {
                        tracing::warn!(error = %e, "accept failed");
                        continue;
                    }
                };
                // Without it, small SSE writes wait on delayed ACKs (tens of ms each).
                let _ = stream.set_nodelay(true);
                let service = TowerToHyperService::new(app.clone());
                let connection = builder
                    .serve_connection_with_upgrades(TokioIo::new(stream), service)
                    .into_owned();
                let connection = graceful.watch(connection);
                connections.spawn(async move {
                    let _ = connection.await;
                });
            }
            Some(_) = connections.join_next(), if !connections.is_empty() => {}
            () = &mut shutdown => break,
        }
    }
    drop(listener);
    let grace = state.config.timeouts.shutdown_grace();
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(open = connections.len(), "shutdown grace period over; cutting the remaining calls");
            connections.abort_all();
        }
    }
    // Aborted connections drop their bodies, which settles their calls.
    while connections.join_next().await.is_some() {}
    state.ledger.close();
    Ok(())
}
