//! The server: accepts connections (TCP_NODELAY, HTTP/1.1 and HTTP/2), routes admin and
//! proxied calls, and on shutdown (SIGTERM, for a rolling restart) turns `/readyz` to 503,
//! keeps accepting for `timeouts.drain_delay_ms` (0 by default), then stops accepting,
//! closes idle connections, lets in-flight calls (streams included) finish within the
//! grace period, and flushes the ledger. `meshgate serve` runs one single-threaded runtime
//! per serving thread, each with its own listener (`SO_REUSEPORT`) and provider pool, so
//! that a call is served by one thread from accept to settlement.

use crate::state::AppState;
use crate::{admin, proxy};
use anyhow::Context;
use axum::extract::{Request, State};
use axum::routing::get;
use axum::{Json, Router};
use http::StatusCode;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto::Builder;
use hyper_util::server::graceful::GracefulShutdown;
use hyper_util::service::TowerToHyperService;
use serde_json::json;
use std::future::Future;
use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::time::Duration;
use tokio::net::TcpListener;
use tokio::sync::{oneshot, watch};
use tokio::task::JoinSet;

pub fn router(state: Arc<AppState>) -> Router {
    Router::new()
        // Liveness: the process serves. Readiness: it can also reach its database and
        // Redis, and is not draining.
        .route("/healthz", get(|| async { "ok" }))
        .route("/readyz", get(readyz))
        .merge(admin::router())
        .fallback(|State(state): State<Arc<AppState>>, request: Request| {
            proxy::handle(state, request)
        })
        .with_state(state)
}

/// How long `/readyz` waits for the database (and Redis) before calling it unavailable.
pub const READY_TIMEOUT: Duration = Duration::from_secs(2);

/// `/readyz`: 200 when a trivial query succeeds within [`READY_TIMEOUT`] and Redis (when
/// configured) answers PING, else 503 with the reason, so that a load balancer sends calls
/// elsewhere meanwhile; 503 `draining` from SIGTERM on. With `redis_unavailable =
/// "local"` an unreachable Redis leaves the instance ready (it serves every call, with
/// limits of its own), and the body says so.
async fn readyz(State(state): State<Arc<AppState>>) -> (StatusCode, Json<serde_json::Value>) {
    if state.draining.load(Ordering::Relaxed) {
        return (
            StatusCode::SERVICE_UNAVAILABLE,
            Json(
                json!({"status": "draining", "reason": "shutting down: finishing in-flight calls"}),
            ),
        );
    }
    let database = probe("database", state.store.ping());
    let redis = async {
        match &state.hot {
            Some(hot) => probe("redis", hot.ping()).await,
            None => None,
        }
    };
    let (database, redis) = tokio::join!(database, redis);
    let unwritten = state.ledger.unwritten();
    let redis_tolerated = state.local_limits.is_some();
    let mut body = json!({"status": "ready"});
    if unwritten > 0 {
        body["unwritten_usage_events"] = json!(unwritten);
    }
    let mut reasons = Vec::new();
    reasons.extend(database);
    match redis {
        Some(why) if redis_tolerated => {
            body["degraded"] = json!(format!("{why}; limits enforced by this instance alone"));
        }
        Some(why) => reasons.push(why),
        None => {}
    }
    if reasons.is_empty() {
        return (StatusCode::OK, Json(body));
    }
    body["status"] = json!("unavailable");
    body["reason"] = json!(reasons.join("; "));
    (StatusCode::SERVICE_UNAVAILABLE, Json(body))
}

/// Why `what` is unavailable, if `check` fails or takes over [`READY_TIMEOUT`].
async fn probe<E: std::fmt::Display>(
    what: &str,
    check: impl Future<Output = Result<(), E>>,
) -> Option<String> {
    match tokio::time::timeout(READY_TIMEOUT, check).await {
        Ok(Ok(())) => None,
        Ok(Err(e)) => Some(format!("{what} unavailable: {e}")),
        Err(_) => Some(format!(
            "{what} unavailable: no answer within {} ms",
            READY_TIMEOUT.as_millis()
        )),
    }
}

/// What follows the shutdown signal before serving threads stop accepting: `/readyz`
/// turns 503 at once, and calls are still accepted for `timeouts.drain_delay_ms`, so that
/// load balancers probing it stop sending calls first.
async fn drain_start(state: &AppState, shutdown: impl Future<Output = ()>) {
    shutdown.await;
    state.draining.store(true, Ordering::Relaxed);
    let delay = state.config.timeouts.drain_delay();
    if !delay.is_zero() {
        tracing::info!(
            delay_ms = delay.as_millis() as u64,
            "draining: /readyz answers 503; still accepting calls"
        );
        tokio::time::sleep(delay).await;
    }
}

/// Serves `listener` on the current runtime until `shutdown` resolves, then drains
/// connections (bounded by `timeouts.shutdown_grace_ms`) and closes the ledger; every
/// settlement has been queued to the ledger when this returns.
pub async fn serve(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    accept_loop(state.clone(), listener, drain_start(&state, shutdown)).await;
    state.ledger.close();
    Ok(())
}

/// Binds `count` listening sockets to `addr` with `SO_REUSEPORT`, so that the kernel
/// spreads connections over them; port 0 is resolved by the first. One socket where
/// `SO_REUSEPORT` does not exist.
pub fn bind(addr: SocketAddr, count: usize) -> anyhow::Result<Vec<std::net::TcpListener>> {
    let count = if cfg!(unix) { count.max(1) } else { 1 };
    let first = reuseport_listener(addr)?;
    let addr = first.local_addr()?;
    let mut listeners = vec![first];
    for _ in 1..count {
        listeners.push(reuseport_listener(addr)?);
    }
    Ok(listeners)
}

fn reuseport_listener(addr: SocketAddr) -> std::io::Result<std::net::TcpListener> {
    use socket2::{Domain, Protocol, Socket, Type};
    let socket = Socket::new(Domain::for_address(addr), Type::STREAM, Some(Protocol::TCP))?;
    socket.set_reuse_address(true)?;
    #[cfg(unix)]
    socket.set_reuse_port(true)?;
    socket.set_nonblocking(true)?;
    socket.bind(&addr.into())?;
    socket.listen(1024)?;
    Ok(socket.into())
}

/// Serves each of `listeners` (from [`bind`]) on a thread of its own, with a current-thread
/// runtime and a provider pool of its own, until `shutdown`; then every thread drains as
/// [`serve`] does, and the ledger is closed once all are done.
pub async fn serve_threads(
    state: Arc<AppState>,
    listeners: Vec<std::net::TcpListener>,
    shutdown: impl Future<Output = ()>,
) -> anyhow::Result<()> {
    let (stop, stopped) = watch::channel(false);
    let mut threads = Vec::with_capacity(listeners.len());
    let mut failed = None;
    for (i, listener) in listeners.into_iter().enumerate() {
        let started = start_thread(i, state.for_thread(), listener, stopped.clone());
        match started {
            Ok(done) => threads.push(done),
            Err(e) => {
                failed = Some(e);
                break;
            }
        }
    }
    if failed.is_none() {
        drain_start(&state, shutdown).await;
    }
    let _ = stop.send(true);
    for done in threads {
        let result = done
            .await
            .unwrap_or_else(|_| Err(anyhow::anyhow!("a serving thread panicked")));
        if let Err(e) = result {
            failed.get_or_insert(e);
        }
    }
    state.ledger.close();
    failed.map_or(Ok(()), Err)
}

/// Starts one serving thread; the receiver gets its result once it has drained.
fn start_thread(
    index: usize,
    state: Arc<AppState>,
    listener: std::net::TcpListener,
    mut stopped: watch::Receiver<bool>,
) -> anyhow::Result<oneshot::Receiver<anyhow::Result<()>>> {
    let runtime = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .context("cannot start a serving runtime")?;
    let (done, result) = oneshot::channel();
    std::thread::Builder::new()
        .name(format!("meshgate-serve-{index}"))
        .spawn(move || {
            let served = runtime.block_on(async move {
                let listener = TcpListener::from_std(listener)?;
                accept_loop(state, listener, async move {
                    // A dropped sender stops the thread too.
                    let _ = stopped.wait_for(|stop| *stop).await;
                })
                .await;
                Ok(())
            });
            // Tasks left on the runtime (HTTP/2 streams) settle as it drops, before the
            // ledger is closed.
            drop(runtime);
            let _ = done.send(served);
        })
        .context("cannot start a serving thread")?;
    Ok(result)
}

/// Accepts until `shutdown`, then stops accepting, lets open connections finish within the
/// grace period and cuts the rest.
async fn accept_loop(
    state: Arc<AppState>,
    listener: TcpListener,
    shutdown: impl Future<Output = ()>,
) {
    let grace = state.config.timeouts.shutdown_grace();
    let app = router(state);
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
    tokio::select! {
        () = graceful.shutdown() => {}
        () = tokio::time::sleep(grace) => {
            tracing::warn!(open = connections.len(), "shutdown grace period over; cutting the remaining calls");
            connections.abort_all();
        }
    }
    // Aborted connections drop their bodies, which settles their calls.
    while connections.join_next().await.is_some() {}
}
