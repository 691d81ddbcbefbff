//! The ledger writer: usage events leave the request path through a channel and are written
//! in batches by one task, one batch per window; a flush waits for everything sent before it.
//! With a spool (the default), events pass through [`crate::spool`] first, which keeps them
//! in a local file before their calls' responses end.
//! Readers waiting for an event to appear (the per-call event lookup) watch a counter of
//! written batches.

use meshgate_store::{CreditEntry, CreditKind, ResourceOwner, Store, UsageEvent};
use meshgate_types::Money;
use std::collections::BTreeMap;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;
use tokio::sync::{mpsc, oneshot, watch, Notify};
use tokio::task::JoinHandle;

use crate::spool::{Spool, SpoolMode, Spooled};
use std::sync::Mutex;

pub(crate) enum Message {
    /// An event, whether its charge is debited from the project's credits, and its spool
    /// sequence number when it was spooled.
    Event(Box<UsageEvent>, bool, Option<u64>),
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
    sink: Sink,
    /// Wakes the writer early for a flush or the shutdown.
    urgent: Arc<Notify>,
    /// Counts the batches of events written so far; bumped after each.
    written: Arc<watch::Sender<u64>>,
    /// Notes calls in flight (with a spool), for a restart after a crash.
    journal: Option<Arc<crate::inflight::Journal>>,
}

/// Where the request path's messages go first.
#[derive(Clone)]
enum Sink {
    Writer(mpsc::UnboundedSender<Message>),
    /// `write` spool: the recording call appends its event to the file itself.
    Spool {
        spool: Arc<Mutex<Spool>>,
        writer: mpsc::UnboundedSender<Message>,
        committed: Arc<AtomicU64>,
    },
    /// `sync` spool: the spool thread syncs events in groups.
    SyncSpool(mpsc::UnboundedSender<Spooled>),
}

/// Resolves once a recorded event is on disk (see [`Ledger::record`]).
pub type Durable = oneshot::Receiver<()>;

impl Ledger {
    /// Starts the writer, which writes what arrived within each `window` in one batch.
    /// Events the store refuses after retries are appended as JSON lines to `fallback` so
    /// that none is lost.
    /// With a `spool`, each event is in its file when [`Ledger::record`] returns (`write`)
    /// or on disk when its [`Durable`] resolves (`sync`); without, events live in memory
    /// until their batch is written.
    pub fn start(
        store: Arc<dyn Store>,
        batch_size: usize,
        window: Duration,
        fallback: PathBuf,
        spool: Option<(Spool, SpoolMode)>,
    ) -> std::io::Result<(Ledger, JoinHandle<()>)> {
        let (tx, rx) = mpsc::unbounded_channel();
        let urgent = Arc::new(Notify::new());
        let committed = Arc::new(AtomicU64::new(0));
        let sink = match spool {
            Some((spool, SpoolMode::Sync)) => {
                let (spool_tx, spool_rx) = mpsc::unbounded_channel();
                crate::spool::spawn(spool, spool_rx, tx.clone(), committed.clone())?;
                Sink::SyncSpool(spool_tx)
            }
            Some((spool, SpoolMode::Write)) => Sink::Spool {
                spool: Arc::new(Mutex::new(spool)),
                writer: tx.clone(),
                committed: committed.clone(),
            },
            Some((_, SpoolMode::Off)) | None => Sink::Writer(tx.clone()),
        };
        let written = Arc::new(watch::Sender::new(0));
        let task = tokio::spawn(write_loop(
            store,
            rx,
            urgent.clone(),
            batch_size.max(1),
            window,
            fallback,
            Progress {
                written: written.clone(),
                committed: committed.clone(),
            },
        ));
        Ok((
            Ledger {
                sink,
                urgent,
                written,
                journal: None,
            },
            task,
        ))
    }

    /// The same ledger, noting calls in flight in `journal`.
    pub fn with_journal(mut self, journal: Arc<crate::inflight::Journal>) -> Ledger {
        self.journal = Some(journal);
        self
    }

    /// Notes a call about to be sent (see [`crate::inflight`]); `event` is written if the
    /// process dies before the returned note is dropped.
    pub fn note_in_flight(&self, event: &UsageEvent) -> Option<crate::inflight::Noted> {
        self.journal.as_ref()?.note(event)
    }

    /// Queues one event (and, with `debit`, its charge as a credit debit); never waits for
    /// the database. With a `sync` spool, the returned [`Durable`] resolves once the event
    /// is on disk.
    pub fn record(&self, event: UsageEvent, debit: bool) -> Option<Durable> {
        let event = Box::new(event);
        let (sent, durable) = match &self.sink {
            Sink::Writer(tx) => (tx.send(Message::Event(event, debit, None)).is_ok(), None),
            Sink::Spool {
                spool,
                writer,
                committed,
            } => (write_spooled(spool, writer, committed, event, debit), None),
            Sink::SyncSpool(tx) => {
                let (done, durable) = oneshot::channel();
                let item = Spooled::Event {
                    event,
                    debit,
                    durable: done,
                };
                (tx.send(item).is_ok(), Some(durable))
            }
        };
        if !sent {
            tracing::error!("usage event after the ledger closed; it is lost");
        }
        durable
    }

    fn send(&self, message: Message) -> bool {
        match &self.sink {
            Sink::Writer(tx) | Sink::Spool { writer: tx, .. } => tx.send(message).is_ok(),
            Sink::SyncSpool(tx) => tx.send(Spooled::Other(message)).is_ok(),
        }
    }

    /// Queues the record of which project created a provider-side object.
    pub fn record_owner(&self, owner: ResourceOwner) {
        self.send(Message::Owner(owner));
    }

    /// Gives back the billing claim of a batch whose results fetch failed, after the events
    /// queued before it are written.
    pub fn release_batch(&self, batch_id: String) {
        self.send(Message::ReleaseBatch(batch_id));
    }

    /// Waits until every event recorded before this call is written.
    pub async fn flush(&self) {
        let (done, wait) = oneshot::channel();
        if self.send(Message::Flush(done)) {
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
        self.send(Message::Close);
        self.urgent.notify_one();
    }
}

/// Appends an event to the `write` spool and queues it for the database, both under the
/// spool's lock so that events reach the writer in spool order (the writer's progress
/// tells the spool what it may drop). Returns whether the writer took it.
fn write_spooled(
    spool: &Mutex<Spool>,
    writer: &mpsc::UnboundedSender<Message>,
    committed: &AtomicU64,
    event: Box<UsageEvent>,
    debit: bool,
) -> bool {
    let mut line = Vec::with_capacity(1024);
    let serialised = crate::spool::line(&mut line, &event, debit);
    let mut spool = spool
        .lock()
        .unwrap_or_else(std::sync::PoisonError::into_inner);
    let seq =
        serialised.and_then(|()| spool.append(&line, 1, false, committed.load(Ordering::Acquire)));
    let seq = match seq {
        Ok(seq) => Some(seq),
        Err(e) => {
            // The event still goes to the database; only the crash guarantee is lost.
            tracing::error!(error = %e, "cannot write a usage event to the spool");
            None
        }
    };
    writer.send(Message::Event(event, debit, seq)).is_ok()
}

/// What the writer has taken from the channel and not yet acted on.
#[derive(Default)]
struct Pending {
    events: Vec<UsageEvent>,
    /// Beside each event: whether its charge is debited from credits.
    debit: Vec<bool>,
    /// The spool sequence number of the last spooled event taken.
    last_seq: Option<u64>,
    releases: Vec<String>,
    owners: Vec<ResourceOwner>,
    waiters: Vec<oneshot::Sender<()>>,
    closing: bool,
}

impl Pending {
    fn take(&mut self, message: Message) {
        match message {
            Message::Event(e, debit, seq) => {
                self.events.push(*e);
                self.debit.push(debit);
                self.last_seq = seq.or(self.last_seq);
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

/// What the writer tells others of its progress.
struct Progress {
    /// Bumped after each batch of events written (wakes event lookups).
    written: Arc<watch::Sender<u64>>,
    /// The spool sequence number written up to (the spool drops what is below).
    committed: Arc<AtomicU64>,
}

async fn write_loop(
    store: Arc<dyn Store>,
    mut rx: mpsc::UnboundedReceiver<Message>,
    urgent: Arc<Notify>,
    batch_size: usize,
    window: Duration,
    fallback: PathBuf,
    progress: Progress,
) {
    let Progress { written, committed } = progress;
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
            write_batch(store.as_ref(), chunk, debit, &fallback).await;
        }
        if !pending.events.is_empty() {
            written.send_modify(|batches| *batches += 1);
        }
        pending.events.clear();
        pending.debit.clear();
        // Written (or saved to the fallback file): the spool may drop them.
        if let Some(seq) = pending.last_seq.take() {
            committed.store(seq, Ordering::Release);
        }
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
pub(crate) fn debits(events: &[UsageEvent], debit: &[bool]) -> Vec<CreditEntry> {
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
    debit: &[bool],
    fallback: &std::path::Path,
) {
    let credit_entries = debits(events, debit);
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match store.insert_usage(events, &credit_entries).await {
            Ok(()) => return,
            Err(e) => {
                tracing::warn!(attempt, error = %e, count = events.len(), "writing usage events failed");
                tokio::time::sleep(delay).await;
                delay *= 2;
            }
        }
    }
    if let Err(e) = crate::spool::append_fallback(fallback, events, debit) {
        tracing::error!(error = %e, count = events.len(), path = %fallback.display(), "usage events could not be saved anywhere");
    } else {
        tracing::error!(count = events.len(), path = %fallback.display(), "usage events saved to the fallback file");
    }
}
