//! The meshgate gateway: clients of the OpenAI and Anthropic APIs call it with a meshgate
//! key; it authenticates them, refuses what it cannot price, forwards with the provider key,
//! relays streams chunk by chunk, and meters every call into the ledger.
//!
//! # Layout (in request order)
//! - `classify`: surface, endpoint and the few request fields meshgate reads.
//! - `auth`: meshgate keys, their cache, the admin token.
//! - `proxy`: the lifecycle, one function per phase (accept .. send).
//! - `upstream`: header rules, the provider key, sending.
//! - `splice`: byte-preserving edits of a request body's top-level members.
//! - `conn`: provider connections, pooled, driven by the body that reads them.
//! - `relay`: the response body that forwards, meters and ends broken streams cleanly.
//! - `batches`: batch results billed once, `results_url`s pointed at meshgate.
//! - `settle`: the guard that writes one usage event per call, whatever happens.
//! - `ledger`: the batched writer of usage events.
//! - `spool`: usage events on local disk before their responses end; replayed at start.
//! - `changes`: applies changes other instances make to a shared database to the caches.
//! - `budget`, `limits`: budgets and credits reserved per call; rate limits.
//! - `shared`: where a fleet shares those: `hot` (Redis) or `pghot` (PostgreSQL alone).
//! - `degraded`: what each operation does while PostgreSQL or Redis is away.
//! - `admin`: the admin REST API.
//! - `server`, `state`, `config`, `error`: serving, shared state, settings, refusals.
//! - `wav`: the duration of WAV uploads, for transcriptions that report no usage.

pub mod admin;
pub mod admit;
pub mod auth;
pub mod batches;
pub mod budget;
pub mod changes;
pub mod classify;
pub mod config;
pub mod conn;
pub mod degraded;
pub mod error;
pub mod hot;
pub mod inflight;
pub mod ledger;
pub mod limits;
pub mod owners;
pub mod pghot;
pub mod proxy;
pub mod relay;
pub mod routing;
pub mod secrets;
pub mod selfserve;
pub mod server;
pub mod settle;
pub mod shared;
pub mod splice;
pub mod spool;
pub mod state;
pub mod tenants;
pub mod upstream;
pub mod wav;

pub use config::Config;
pub use state::{AdminToken, AppState};

use std::future::Future;
use std::sync::Arc;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// Response header carrying meshgate's id of the call (also the ledger's `request_id`).
pub const REQUEST_ID_HEADER: &str = "x-meshgate-request-id";

/// Response header carrying the id of the usage event the call writes when it ends; read it
/// back with `GET /v1/usage/events/{id}` (the gateway's own metering of that call).
pub const EVENT_ID_HEADER: &str = "meshgate-event-id";

/// A gateway ready to serve.
pub struct Gateway {
    pub state: Arc<AppState>,
    pub admin: AdminToken,
    ledger_task: JoinHandle<()>,
    /// Applies other instances' changes (a shared database only).
    changes_task: Option<JoinHandle<()>>,
}

impl Gateway {
    /// Builds the gateway from `config`, reading provider keys and `MESHGATE_ADMIN_TOKEN`
    /// through `env`.
    pub async fn build(
        config: Config,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> anyhow::Result<Gateway> {
        let (state, ledger_task, admin) = AppState::build(config, env).await?;
        let changes_task = changes::watch(changes::Caches {
            store: state.store.clone(),
            keys: state.keys.clone(),
            tenants: state.tenants.clone(),
            secrets: state.secrets.clone(),
            budgets: state.budgets.clone(),
        });
        Ok(Gateway {
            state,
            admin,
            ledger_task,
            changes_task,
        })
    }

    /// Serves until `shutdown`, then drains calls and writes every usage event.
    pub async fn run(
        self,
        listener: TcpListener,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        server::serve(self.state.clone(), listener, shutdown).await?;
        self.finish().await
    }

    /// As [`Gateway::run`], with each of `listeners` (from [`server::bind`]) served by a
    /// thread of its own.
    pub async fn run_threads(
        self,
        listeners: Vec<std::net::TcpListener>,
        shutdown: impl Future<Output = ()>,
    ) -> anyhow::Result<()> {
        server::serve_threads(self.state.clone(), listeners, shutdown).await?;
        self.finish().await
    }

    /// After serving: stops following changes and waits for the ledger's last write.
    async fn finish(self) -> anyhow::Result<()> {
        if let Some(task) = self.changes_task {
            task.abort();
        }
        drop(self.state);
        self.ledger_task.await?;
        Ok(())
    }
}
