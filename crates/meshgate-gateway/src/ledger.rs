//! The ledger writer: usage events leave the request path through a channel and are written
//! in batches by one task, one batch per window; a flush waits for everything sent before it.
//! With a spool (the default), events pass through [`crate::spool`] first, which keeps them
//! in a local file before their calls' responses end.
//! Readers waiting for an event to appear (the per-call event lookup) watch a counter of
//! written batches.
//!
//! **The database away.** A batch the database refuses is retried a few times (about 1.5 s),
//! then saved to the fallback file (`<data_dir>/unwritten-usage-events.jsonl`, synced) and
//! the writer enters an outage: later batches go straight to that file, and the writer
//! retries writing the file into the database with a growing delay (at most
//! [`MAX_RETRY_DELAY`]), and at once when someone flushes. Once the database takes them it
//! leaves the outage. Writing the file skips the events the database already holds (a
//! write whose commit was acknowledged too late to be seen), so none is counted twice, and
//! a run that stops meanwhile leaves the file to the next start. No event is lost either
//! way, and memory stays flat however long the outage lasts.

use meshgate_store::{CreditEntry, CreditKind, ResourceOwner, Store, UsageEvent};
use meshgate_types::Money;
use std::collections::BTreeMap;
use std::io::Write;
use std::path::PathBuf;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};
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
    /// Events waiting in the fallback file for the database to come back.
    unwritten: Arc<AtomicUsize>,
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
        let unwritten = Arc::new(AtomicUsize::new(0));
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
                unwritten: unwritten.clone(),
            },
        ));
        Ok((
            Ledger {
                sink,
                urgent,
                written,
                journal: None,
                unwritten,
            },
            task,
        ))
    }

    /// The same ledger, noting calls in flight in `journal`.
    pub fn with_journal(mut self, journal: Arc<crate::inflight::Journal>) -> Ledger {
        self.journal = Some(journal);
        self
    }

    /// Notes a call about to be sent (see [`crate::inflight`]); its `interrupted` event is
    /// written if the process dies before the returned note is dropped.
    pub fn note_in_flight(
        &self,
        note: &crate::inflight::Note<'_>,
    ) -> Option<crate::inflight::Noted> {
        self.journal.as_ref()?.note(note)
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

    /// How many usage events wait in the fallback file for the database (0 unless it is
    /// away, or has just come back).
    pub fn unwritten(&self) -> usize {
        self.unwritten.load(Ordering::Relaxed)
    }

    /// Writes what is queued and stops the writer; await its task afterwards.
    pub fn close(&self) {
        self.send(Message::Close);
        self.urgent.notify_one();
    }
}

/// Appends an event to the `write` spool and queues it for the database. Its sequence
/// number is taken and the event queued under the spool's lock, so that events reach the
/// writer in spool order (the writer's progress tells the spool what it may drop); the
/// line is written after the lock is released, so that calls ending on other threads do
/// not wait for this one's `write(2)`. Returns whether the writer took it.
fn write_spooled(
    spool: &Mutex<Spool>,
    writer: &mpsc::UnboundedSender<Message>,
    committed: &AtomicU64,
    event: Box<UsageEvent>,
    debit: bool,
) -> bool {
    let mut line = Vec::with_capacity(1024);
    let serialised = crate::spool::line(&mut line, &event, debit);
    let (reserved, sent) = {
        let mut spool = spool
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        let reserved = serialised
            .and_then(|()| spool.reserve(line.len(), 1, committed.load(Ordering::Acquire)));
        let seq = reserved.as_ref().ok().map(|(_, seq)| *seq);
        (
            reserved,
            writer.send(Message::Event(event, debit, seq)).is_ok(),
        )
    };
    if let Err(e) = reserved.and_then(|(file, _)| (&*file).write_all(&line)) {
        // The event still goes to the database; only the crash guarantee is lost.
        tracing::error!(error = %e, "cannot write a usage event to the spool");
    }
    sent
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
    /// Events in the fallback file during an outage.
    unwritten: Arc<AtomicUsize>,
}

/// The longest wait between two attempts to write the fallback file to the database.
pub const MAX_RETRY_DELAY: Duration = Duration::from_secs(2);
const FIRST_RETRY_DELAY: Duration = Duration::from_millis(200);
/// How long a probe of the database may take during an outage.
const PROBE_TIMEOUT: Duration = Duration::from_secs(1);

/// The database is away: events go to the fallback file until it takes them again.
struct Outage {
    since: Instant,
    /// Events saved to the fallback file since the outage began.
    saved: usize,
    delay: Duration,
    next_try: tokio::time::Instant,
}

impl Outage {
    fn begin() -> Outage {
        tracing::error!("the database does not take usage events; keeping them in the fallback file until it does");
        Outage {
            since: Instant::now(),
            saved: 0,
            delay: FIRST_RETRY_DELAY,
            next_try: tokio::time::Instant::now() + FIRST_RETRY_DELAY,
        }
    }
}

/// What woke the writer.
enum Wake {
    Message(Option<Message>),
    Retry,
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
    let mut pending = Pending::default();
    let mut outage: Option<Outage> = None;
    while !pending.closing {
        let wake = match outage.as_ref().map(|o| o.next_try) {
            None => Wake::Message(rx.recv().await),
            Some(at) => tokio::select! {
                message = rx.recv() => Wake::Message(message),
                () = tokio::time::sleep_until(at) => Wake::Retry,
            },
        };
        let first = match wake {
            Wake::Retry => {
                recover(
                    store.as_ref(),
                    &fallback,
                    batch_size,
                    &mut outage,
                    &progress,
                )
                .await;
                continue;
            }
            Wake::Message(None) => break,
            Wake::Message(Some(message)) => message,
        };
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
        let mut wrote = false;
        for (chunk, debit) in pending
            .events
            .chunks(batch_size)
            .zip(pending.debit.chunks(batch_size))
        {
            if outage.is_none() {
                if write_batch(store.as_ref(), chunk, debit).await {
                    wrote = true;
                    continue;
                }
                outage = Some(Outage::begin());
            }
            if let Some(outage) = &mut outage {
                save(&fallback, chunk, debit);
                outage.saved += chunk.len();
                progress.unwritten.fetch_add(chunk.len(), Ordering::Relaxed);
            }
        }
        if wrote {
            progress.written.send_modify(|batches| *batches += 1);
        }
        pending.events.clear();
        pending.debit.clear();
        // Written (or saved to the fallback file): the spool may drop them.
        if let Some(seq) = pending.last_seq.take() {
            progress.committed.store(seq, Ordering::Release);
        }
        // Whoever flushes wants the events in the database: try now rather than at the
        // next retry (the shutdown too, so that a database back in time gets them).
        if outage.is_some() && pending.urgent() {
            recover(
                store.as_ref(),
                &fallback,
                batch_size,
                &mut outage,
                &progress,
            )
            .await;
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

/// Writes one batch, retrying a few times (about 1.5 s in all) unless the database is
/// plainly unreachable; false if it would not take it.
async fn write_batch(store: &dyn Store, events: &[UsageEvent], debit: &[bool]) -> bool {
    let credit_entries = debits(events, debit);
    let mut delay = Duration::from_millis(50);
    for attempt in 1..=5 {
        match store.insert_usage(events, &credit_entries).await {
            Ok(()) => return true,
            Err(e) => {
                tracing::warn!(attempt, error = %e, count = events.len(), "writing usage events failed");
                if e.is_unavailable() {
                    return false;
                }
                if attempt < 5 {
                    tokio::time::sleep(delay).await;
                    delay *= 2;
                }
            }
        }
    }
    false
}

/// Appends events to the fallback file (synced).
fn save(fallback: &std::path::Path, events: &[UsageEvent], debit: &[bool]) {
    if let Err(e) = crate::spool::append_fallback(fallback, events, debit) {
        // Still in the spool only if the process dies before its next start; with the
        // spool off, in no file at all.
        tracing::error!(error = %e, count = events.len(), path = %fallback.display(), "usage events could not be saved to the fallback file");
    }
}

/// One attempt to end an outage: writes the fallback file to the database (skipping what
/// it holds already). On failure, the next attempt waits twice as long, up to
/// [`MAX_RETRY_DELAY`]. A database that answers but refuses the events themselves ends
/// the outage too (new events go to it again); the file then waits for the next start.
async fn recover(
    store: &dyn Store,
    fallback: &std::path::Path,
    batch_size: usize,
    outage: &mut Option<Outage>,
    progress: &Progress,
) {
    let Some(current) = outage.as_mut() else {
        return;
    };
    // A quick look first: a database that is away may take the pool's whole acquire
    // timeout to say so.
    let answers = matches!(
        tokio::time::timeout(PROBE_TIMEOUT, store.ping()).await,
        Ok(Ok(()))
    );
    let replayed = if answers {
        crate::spool::replay_file(store, fallback, batch_size).await
    } else {
        Err(anyhow::anyhow!(
            "no answer to a ping within {} ms",
            PROBE_TIMEOUT.as_millis()
        ))
    };
    match replayed {
        Ok(written) => {
            tracing::warn!(
                written,
                saved = current.saved,
                down_ms = current.since.elapsed().as_millis() as u64,
                "the database takes usage events again; wrote those saved meanwhile"
            );
            *outage = None;
            progress.unwritten.store(0, Ordering::Relaxed);
            progress.written.send_modify(|batches| *batches += 1);
        }
        Err(e) if answers && store.ping().await.is_ok() => {
            tracing::error!(error = %e, path = %fallback.display(), "the database answers but refuses the saved usage events; they stay in the file for the next start");
            *outage = None;
        }
        Err(e) => {
            tracing::debug!(error = %e, "the database is still away");
            current.delay = (current.delay * 2).min(MAX_RETRY_DELAY);
            current.next_try = tokio::time::Instant::now() + current.delay;
        }
    }
}
