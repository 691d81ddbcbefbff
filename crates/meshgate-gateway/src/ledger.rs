//! The ledger writer: usage events leave the request path through a channel and are written
//! in batches by one task; a flush waits for everything sent before it.

use meshgate_store::{Store, UsageEvent};
use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

enum Message {
    Event(Box<UsageEvent>),
    /// A batch-results fetch that billed nothing gives its claim back.
    ReleaseBatch(String),
    Flush(oneshot::Sender<()>),
    Close,
}

/// A cheap handle to the ledger writer.
#[derive(Clone)]
pub struct Ledger {
    tx: mpsc::UnboundedSender<Message>,
}

impl Ledger {
    /// Starts the writer. Events the store refuses after retries are appended as JSON lines
    /// to `fallback` so that none is lost.
    pub fn start(
        store: Arc<dyn Store>,
        batch_size: usize,
        fallback: PathBuf,
    ) -> (Ledger, JoinHandle<()>) {
        let (tx, rx) = mpsc::unbounded_channel();
        let task = tokio::spawn(write_loop(store, rx, batch_size.max(1), fallback));
        (Ledger { tx }, task)
    }

    /// Queues one event; never blocks.
    pub fn record(&self, event: UsageEvent) {
        if self.tx.send(Message::Event(Box::new(event))).is_err() {
            tracing::error!("usage event after the ledger closed; it is lost");
        }
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
            let _ = wait.await;
        }
    }

    /// Writes what is queued and stops the writer; await its task afterwards.
    pub fn close(&self) {
        let _ = self.tx.send(Message::Close);
    }
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    batch_size: usize,
    fallback: PathBuf,
) {
    let mut batch: Vec<UsageEvent> = Vec::with_capacity(batch_size);
    let mut waiters: Vec<oneshot::Sender<()>> = Vec::new();
    let mut releases: Vec<String> = Vec::new();
    let mut closing = false;
    while !closing {
        let Some(first) = rx.recv().await else { break };
        let mut next = Some(first);
        // Take whatever is already queued, up to one batch, without waiting for more.
        while let Some(message) = next {
            match message {
                Message::Event(e) => batch.push(*e),
                Message::ReleaseBatch(id) => releases.push(id),
                Message::Flush(w) => waiters.push(w),
                Message::Close => closing = true,
            }
            next = if batch.len() < batch_size {
                rx.try_recv().ok()
            } else {
                None
            };
        }
        if closing {
            while let Ok(message) = rx.try_recv() {
                match message {
                    Message::Event(e) => batch.push(*e),
                    Message::ReleaseBatch(id) => releases.push(id),
                    Message::Flush(w) => waiters.push(w),
                    Message::Close => {}
                }
            }
        }
        for chunk in batch.chunks(batch_size) {
            write_batch(store.as_ref(), chunk, &fallback).await;
        }
        batch.clear();
        for id in releases.drain(..) {
            if let Err(e) = store.release_batch_billing(&id).await {
                tracing::error!(error = %e, batch = %id, "cannot release a batch billing claim");
            }
        }
        for w in waiters.drain(..) {
            let _ = w.send(());
        }
    }
}

async fn write_batch(store: &dyn Store, events: &[UsageEvent], fallback: &PathBuf) {
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match store.insert_usage(events).await {
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
