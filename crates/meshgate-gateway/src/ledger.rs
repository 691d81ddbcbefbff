//! The ledger writer: usage events leave the request path through a channel and are written
//! in batches by one task, one batch per window; a flush waits for everything sent before it.
//! Readers waiting for an event to appear (the per-call event lookup) watch a counter of
//! written batches.

use meshgate_store::{CreditEntry, CreditKind, ResourceOwner, Store, UsageEvent};
use meshgate_types::Money;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

enum Message {
    /// An event, and whether its charge is debited from the project's credits.
    Event(Box<UsageEvent>, bool),
    /// A batch-results fetch that billed nothing gives its claim back.
    ReleaseBatch(String),
    /// A provider-side object and the project that created it.
    Owner(ResourceOwner),
    Flush(oneshot::Sender<()>),
    Close,
}

/// A cheap handle to the ledger writer.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Message>,
    /// Wakes the writer early for a flush or the shutdown.
    urgent: Arc<Notify>,
    /// Counts the batches of events written so far; bumped after each.
    written: Arc<watch::Sender<u64>>,
}

impl Ledger {
    /// Starts the writer, which writes what arrived within each `window` in one batch.
    /// Events the store refuses after retries are appended as JSON lines to `fallback` so
    /// that none is lost.
    pub fn start(
        store: Arc<dyn Store>,
        batch_size: usize,
        window: Duration,
        fallback: PathBuf,
    ) -> (Ledger, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let urgent = Arc::new(Notify::new());
        let written = Arc::new(watch::Sender::new(0));
        let task = tokio::spawn(write_loop(
            store,
            rx,
            urgent.clone(),
            written.clone(),
            batch_size.max(1),
            window,
            fallback,
        ));
        (
            Ledger {
                tx,
                urgent,
                written,
            },
            task,
        )
    }

    /// Queues one event (and, with `debit`, its charge as a credit debit); never blocks.
    pub fn record(&self, event: UsageEvent, debit: bool) {
        if self
            .tx
            .send(Message::Event(Box::new(event), debit))
            .is_err()
        {
            tracing::error!("usage event after the ledger closed; it is lost");
        }
    }

    /// Queues the record of which project created a provider-side object.
    pub fn record_owner(&self, owner: ResourceOwner) {
        let _ = self.tx.send(Message::Owner(owner));
    }

    /// Gives back the billing claim of a batch whose results fetch failed, after the events
    /// queued before it are written.
    pub fn release_batch(&self, batch_id: String) {
        let _ = self.tx.send(Message::ReleaseBatch(batch_id));
    }

    /// Waits until every event recorded before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.tx.send(Message::Flush(done)).is_ok() {
            self.urgent.notify_one();
            let _ = wait.await;
        }
    }

    /// A receiver that sees a change each time a batch of events has been written.
    pub fn written(&self) -> watch::Receiver<u64> {
        self.written.subscribe()
    }

    /// Writes what is queued and stops the writer; await its task afterwards.
    pub fn close(&self) {
        let _ = self.tx.send(Message::Close);
        self.urgent.notify_one();
    }
}

/// What the writer has taken from the channel and not yet acted on.
#[derive(Default)]
struct Pending {
    events: Vec<UsageEvent>,
    /// Beside each event: whether its charge is debited from credits.
    debit: Vec<bool>,
    releases: Vec<String>,
    owners: Vec<ResourceOwner>,
    waiters: Vec<oneshot::Sender<()>>,
    closing: bool,
}

impl Pending {
    fn take(&mut self, message: Message) {
        match message {
            Message::Event(e, debit) => {
                self.events.push(*e);
                self.debit.push(debit);
            }
            Message::ReleaseBatch(id) => self.releases.push(id),
            Message::Owner(o) => self.owners.push(o),
            Message::Flush(w) => self.waiters.push(w),
            Message::Close => self.closing = true,
        }
    }

    /// Someone waits for the write (a flush or the shutdown): do not wait for more.
    fn urgent(&self) -> bool {
        self.closing || !self.waiters.is_empty()
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    urgent: Arc<Notify>,
    written: Arc<watch::Sender<u64>>,
    batch_size: usize,
    window: Duration,
    fallback: PathBuf,
) {
    let mut pending = Pending::default();
    while !pending.closing {
        let Some(first) = rx.recv().await else { break };
        pending.take(first);
        // Let events gather for one window: one transaction, and one wake-up of this
        // task, for all calls that end meanwhile. A flush or the shutdown cuts it short.
        if !pending.urgent() {
            tokio::select! {
                () = tokio::time::sleep(window) => {}
                () = urgent.notified() => {}
            }
        }
        while let Ok(message) = rx.try_recv() {
            pending.take(message);
        }
        for (chunk, debit) in pending
            .events
            .chunks(batch_size)
            .zip(pending.debit.chunks(batch_size))
        {
            write_batch(store.as_ref(), chunk, &debits(chunk, debit), &fallback).await;
        }
        if !pending.events.is_empty() {
            written.send_modify(|batches| *batches += 1);
        }
        pending.events.clear();
        pending.debit.clear();
        if !pending.owners.is_empty() {
            if let Err(e) = store.record_owners(&pending.owners).await {
                tracing::error!(error = %e, count = pending.owners.len(), "cannot record the owners of provider objects");
            }
            pending.owners.clear();
        }
        for id in pending.releases.drain(..) {
            if let Err(e) = store.release_batch_billing(&id).await {
                tracing::error!(error = %e, batch = %id, "cannot release a batch billing claim");
            }
        }
        for w in pending.waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

/// One usage debit per project for the events of a batch that run on credits.
fn debits(events: &[UsageEvent], debit: &[bool]) -> Vec<CreditEntry> {
    let mut per_project: BTreeMap<&str, (Money, usize)> = BTreeMap::new();
    for (e, _) in events.iter().zip(debit).filter(|(_, d)| **d) {
        let charge = e.cost_usd.unwrap_or(Money::ZERO) + e.markup_usd.unwrap_or(Money::ZERO);
        let entry = per_project.entry(&e.project_id).or_default();
        entry.0 += charge;
        entry.1 += 1;
    }
    let now = chrono::Utc::now().timestamp_millis();
    per_project
        .into_iter()
        .filter(|(_, (charge, _))| *charge != Money::ZERO)
        .map(|(project, (charge, calls))| CreditEntry {
            id: format!("cre_{}", uuid::Uuid::now_v7().simple()),
            project_id: project.to_string(),
            kind: CreditKind::UsageDebit,
            amount_usd: -charge,
            created_ms: now,
            actor: None,
            note: Some(format!("usage of {calls} calls")),
        })
        .collect()
}

async fn write_batch(
    store: &dyn Store,
    events: &[UsageEvent],
    debits: &[CreditEntry],
    fallback: &PathBuf,
) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match store.insert_usage(events, debits).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(attempt, error = %e, count = events.len(), "writing usage events failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    if let Err(e) = append_fallback(fallback, events) {
        tracing::error!(error = %e, count = events.len(), path = %fallback.display(), "usage events could not be saved anywhere");
    } else {
        tracing::error!(count = events.len(), path = %fallback.display(), "usage events saved to the fallback file");
    }
}

fn append_fallback(path: &PathBuf, events: &[UsageEvent]) -> std::io::Result<()> {
    use std::io::Write;
    let mut file = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(path)?;
    for e in events {
        let line = serde_json::to_string(e).map_err(std::io::Error::other)?;
        writeln!(file, "{line}")?;
    }
    file.sync_all()
}
