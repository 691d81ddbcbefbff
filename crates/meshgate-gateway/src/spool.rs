//! The usage spool: every usage event is appended to a local file before the end of its
//! response reaches the client, so that a crash loses no event of a delivered response.
//!
//! Two strengths ([`SpoolMode`]): `write` appends each event with one `write(2)` from the
//! call that ends (the kernel holds it: it survives the process being killed, SIGKILL
//! included, not the machine going down); `sync` also puts it on the disk, where one thread
//! takes every event that arrived meanwhile and appends them with one write and one
//! `fdatasync` (group commit), then wakes the calls that wait for them. Either way events
//! then go to the database writer in spool order. Files are segments: a segment whose events
//! the database has all committed is deleted (the last one is truncated). At start,
//! [`replay`] writes what a crash left behind, skipping events already in the database, so
//! nothing is counted twice.

use crate::ledger::{debits, Message};
use meshgate_store::{Store, UsageEvent};
use serde::{Deserialize, Serialize};
use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use tokio::sync::mpsc;

/// How strongly usage events are kept before their responses end (`ledger.spool`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum SpoolMode {
    /// In memory until the database has them (up to `ledger.flush_interval_ms`).
    Off,
    /// Written to the spool file: survives the process dying, not the machine.
    Write,
    /// Written and synced to disk: survives power loss too; costs a sync per group.
    Sync,
}

/// A segment is closed and a new one started past this size.
const SEGMENT_BYTES: u64 = 8 << 20;

/// One line of a segment.
#[derive(Serialize, Deserialize)]
struct Entry {
    event: UsageEvent,
    /// Whether the event's charge is debited from the project's credits.
    debit: bool,
}

/// [`Entry`] by reference, for writing.
#[derive(Serialize)]
struct EntryRef<'a> {
    event: &'a UsageEvent,
    debit: bool,
}

/// Appends an event's spool line to `buf`.
pub(crate) fn line(buf: &mut Vec<u8>, event: &UsageEvent, debit: bool) -> std::io::Result<()> {
    serde_json::to_writer(&mut *buf, &EntryRef { event, debit }).map_err(std::io::Error::other)?;
    buf.push(b'\n');
    Ok(())
}

/// The spool's files; owned by the spool thread.
pub struct Spool {
    dir: PathBuf,
    current: Arc<File>,
    current_path: PathBuf,
    current_len: u64,
    /// Past this size the current segment is closed.
    segment_bytes: u64,
    next_segment: u64,
    /// Closed segments, oldest first, with the sequence number of their last event.
    closed: Vec<(PathBuf, u64)>,
    /// Sequence number of the last event appended.
    appended: u64,
}

impl Spool {
    /// Opens an empty spool in `dir`; run [`replay`] first, which empties it.
    pub fn create(dir: &Path) -> std::io::Result<Spool> {
        std::fs::create_dir_all(dir)?;
        let next_segment = segments(dir)?.last().map_or(1, |(n, _)| n + 1);
        let (current, current_path) = open_segment(dir, next_segment)?;
        Ok(Spool {
            dir: dir.to_path_buf(),
            current: Arc::new(current),
            current_path,
            current_len: 0,
            segment_bytes: SEGMENT_BYTES,
            next_segment: next_segment + 1,
            closed: Vec::new(),
            appended: 0,
        })
    }

    /// Appends `count` events already serialised by [`line`] (synced to disk with `sync`),
    /// after dropping what the database has committed; returns the last one's sequence number.
    pub(crate) fn append(
        &mut self,
        lines: &[u8],
        count: u64,
        sync: bool,
        committed: u64,
    ) -> std::io::Result<u64> {
        let (file, seq) = self.reserve(lines.len(), count, committed)?;
        (&*file).write_all(lines)?;
        if sync {
            file.sync_data()?;
        }
        Ok(seq)
    }

    /// Counts `count` events of `len` bytes as appended, after dropping what the database
    /// has committed, and returns the file they go to with the last one's sequence number.
    /// The caller writes them (one `write(2)` on an append-only file), and may do so after
    /// releasing the spool: a segment is only deleted or emptied once the database holds
    /// every event counted in it, so a write that lands after that adds a line whose event
    /// is already in the database (which replay skips).
    pub(crate) fn reserve(
        &mut self,
        len: usize,
        count: u64,
        committed: u64,
    ) -> std::io::Result<(Arc<File>, u64)> {
        self.release(committed)?;
        let file = self.current.clone();
        self.current_len += len as u64;
        self.appended += count;
        if self.current_len >= self.segment_bytes {
            match open_segment(&self.dir, self.next_segment) {
                Ok((next, path)) => {
                    self.next_segment += 1;
                    let old = std::mem::replace(&mut self.current_path, path);
                    self.closed.push((old, self.appended));
                    self.current = Arc::new(next);
                    self.current_len = 0;
                }
                // The segment grows past its size until a new one can be opened.
                Err(e) => tracing::error!(error = %e, "cannot start a new spool segment"),
            }
        }
        Ok((file, self.appended))
    }

    /// Drops what the database has committed: every closed segment up to `committed`, and
    /// the current segment's contents when all of it is committed.
    fn release(&mut self, committed: u64) -> std::io::Result<()> {
        while let Some((path, last)) = self.closed.first() {
            if *last > committed {
                break;
            }
            std::fs::remove_file(path)?;
            self.closed.remove(0);
        }
        if committed == self.appended && self.current_len > 0 {
            self.current.set_len(0)?;
            self.current_len = 0;
        }
        Ok(())
    }
}

fn segment_path(dir: &Path, n: u64) -> PathBuf {
    dir.join(format!("{n:012}.jsonl"))
}

fn open_segment(dir: &Path, n: u64) -> std::io::Result<(File, PathBuf)> {
    let path = segment_path(dir, n);
    let file = OpenOptions::new().create(true).append(true).open(&path)?;
    // The new file's directory entry must survive a crash too.
    File::open(dir)?.sync_all()?;
    Ok((file, path))
}

/// The segment files in `dir`, by number.
fn segments(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let number = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(n) = number {
            out.push((n, path));
        }
    }
    out.sort();
    Ok(out)
}

/// What the request path sends through the spool: an event with the sender that tells its
/// call the event is on disk, or any other ledger message, passed on in order.
pub(crate) enum Spooled {
    Event {
        event: Box<UsageEvent>,
        debit: bool,
        durable: tokio::sync::oneshot::Sender<()>,
    },
    Other(Message),
}

/// Runs the spool on its own thread until the ledger closes: group commits, then hands
/// everything on to the database writer in order. `committed` is the sequence number the
/// database writer has written up to.
pub(crate) fn spawn(
    mut spool: Spool,
    mut rx: mpsc::UnboundedReceiver<Spooled>,
    writer: mpsc::UnboundedSender<Message>,
    committed: Arc<AtomicU64>,
) -> std::io::Result<()> {
    std::thread::Builder::new()
        .name("meshgate-spool".into())
        .spawn(move || {
            let mut batch = Vec::new();
            while let Some(first) = rx.blocking_recv() {
                batch.push(first);
                while let Ok(more) = rx.try_recv() {
                    batch.push(more);
                }
                commit(&mut spool, &mut batch, &writer, &committed);
            }
        })?;
    Ok(())
}

/// Syncs the events of `batch` to disk, wakes their calls, and passes everything on.
fn commit(
    spool: &mut Spool,
    batch: &mut Vec<Spooled>,
    writer: &mpsc::UnboundedSender<Message>,
    committed: &AtomicU64,
) {
    let mut lines = Vec::new();
    let mut count = 0;
    for item in batch.iter() {
        if let Spooled::Event { event, debit, .. } = item {
            if let Err(e) = line(&mut lines, event, *debit) {
                tracing::error!(error = %e, "cannot serialise a usage event for the spool");
            }
            count += 1;
        }
    }
    let first_seq = spool.appended + 1;
    if count > 0 {
        if let Err(e) = spool.append(&lines, count, true, committed.load(Ordering::Acquire)) {
            // The events still go to the database; only the crash guarantee is lost.
            tracing::error!(error = %e, count, "cannot write usage events to the spool");
        }
    }
    // In arrival order: a flush waits for the events before it.
    let mut seq = first_seq;
    for item in batch.drain(..) {
        match item {
            Spooled::Event {
                event,
                debit,
                durable,
            } => {
                let _ = writer.send(Message::Event(event, debit, Some(seq)));
                let _ = durable.send(());
                seq += 1;
            }
            Spooled::Other(message) => {
                let _ = writer.send(message);
            }
        }
    }
}

/// Writes to the database the events that a previous run spooled (or saved to `fallback`)
/// and may not have written, skipping those already there, then removes the files.
/// Returns how many events were written.
pub async fn replay(
    store: &dyn Store,
    dir: &Path,
    fallback: &Path,
    batch_size: usize,
) -> anyhow::Result<usize> {
    let mut files: Vec<PathBuf> = match segments(dir) {
        Ok(s) => s.into_iter().map(|(_, p)| p).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Vec::new(),
        Err(e) => return Err(e.into()),
    };
    if fallback.exists() {
        files.push(fallback.to_path_buf());
    }
    write_files(store, &files, batch_size).await
}

/// Writes the events of `files` (spool lines) that the database does not hold yet, in
/// order, then deletes the files; returns how many were written.
pub(crate) async fn write_files(
    store: &dyn Store,
    files: &[PathBuf],
    batch_size: usize,
) -> anyhow::Result<usize> {
    let mut written = 0;
    for path in files {
        written += write_file(store, path, batch_size).await?;
    }
    for path in files {
        std::fs::remove_file(path)?;
    }
    Ok(written)
}

/// Writes the events of one spool or fallback file that the database does not hold yet,
/// then removes the file; returns how many were written. Idempotent: a run cut short
/// leaves the file, and the next skips what the first wrote.
pub(crate) async fn replay_file(
    store: &dyn Store,
    path: &Path,
    batch_size: usize,
) -> anyhow::Result<usize> {
    if !path.exists() {
        return Ok(0);
    }
    let written = write_file(store, path, batch_size).await?;
    std::fs::remove_file(path)?;
    Ok(written)
}

async fn write_file(store: &dyn Store, path: &Path, batch_size: usize) -> anyhow::Result<usize> {
    let mut written = 0;
    let entries = read_entries(path)?;
    for chunk in entries.chunks(batch_size.max(1)) {
        written += write_missing(store, chunk).await?;
    }
    Ok(written)
}

/// The entries of one file. The fallback file holds bare events (debit unknown, so none);
/// a torn last line (a crash during the write, before its sync) is skipped: its call was
/// never told it was on disk, so its response never ended.
fn read_entries(path: &Path) -> anyhow::Result<Vec<Entry>> {
    let mut out = Vec::new();
    for line in BufReader::new(File::open(path)?).lines() {
        let line = line?;
        if line.trim().is_empty() {
            continue;
        }
        if let Ok(entry) = serde_json::from_str::<Entry>(&line) {
            out.push(entry);
        } else if let Ok(event) = serde_json::from_str::<UsageEvent>(&line) {
            out.push(Entry {
                event,
                debit: false,
            });
        } else {
            tracing::warn!(path = %path.display(), "skipping a torn usage spool line");
        }
    }
    Ok(out)
}

/// Inserts the entries not yet in the database, with their credit debits, in one
/// transaction; returns how many.
async fn write_missing(store: &dyn Store, entries: &[Entry]) -> anyhow::Result<usize> {
    let ids: Vec<String> = entries.iter().map(|e| e.event.id.clone()).collect();
    let present = store.usage_ids_present(&ids).await?;
    let (events, debit): (Vec<UsageEvent>, Vec<bool>) = entries
        .iter()
        .filter(|e| !present.contains(&e.event.id))
        .map(|e| (e.event.clone(), e.debit))
        .unzip();
    if events.is_empty() {
        return Ok(0);
    }
    store
        .insert_usage(&events, &debits(&events, &debit))
        .await?;
    Ok(events.len())
}

/// Appends events the database refused (after retries) to `path`, synced; the ledger writes
/// them once the database answers again ([`replay_file`]), or [`replay`] at the next start.
pub(crate) fn append_fallback(
    path: &Path,
    events: &[UsageEvent],
    debit: &[bool],
) -> std::io::Result<()> {
    let mut file = OpenOptions::new().create(true).append(true).open(path)?;
    let mut buf = Vec::new();
    for (event, debit) in events.iter().zip(debit) {
        line(&mut buf, event, *debit)?;
    }
    file.write_all(&buf)?;
    file.sync_all()
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;
    use meshgate_store::{Outcome, SqliteStore};
    use meshgate_types::{Money, Usage};

    /// A priced chat event named `id`.
    pub(crate) fn sample_event(id: &str) -> UsageEvent {
        event(id, "1")
    }

    fn event(id: &str, cost: &str) -> UsageEvent {
        UsageEvent {
            id: id.into(),
            request_id: format!("req-{id}"),
            project_id: "default".into(),
            key_id: None,
            token_id: None,
            user: None,
            room: None,
            delegation_id: None,
            annotations: Default::default(),
            surface: "openai".into(),
            endpoint: "chat_completions".into(),
            provider: "openai".into(),
            model: Some("gpt-4o-mini".into()),
            requested_model: None,
            deployment: None,
            response_model: None,
            streamed: false,
            status: Some(200),
            outcome: Outcome::Ok,
            usage: Usage {
                input_uncached: Some(10),
                output: Some(5),
                ..Usage::default()
            },
            cost_usd: Some(cost.parse().unwrap()),
            markup_usd: None,
            price_id: None,
            error: None,
            upstream_request_id: None,
            started_ms: 1,
            ttfb_ms: None,
            duration_ms: 2,
        }
    }

    /// Appends events (debited) to the spool, synced.
    fn append(spool: &mut Spool, ids: &[&str], committed: u64) -> u64 {
        let mut lines = Vec::new();
        for id in ids {
            line(&mut lines, &event(id, "1"), true).unwrap();
        }
        spool
            .append(&lines, ids.len() as u64, true, committed)
            .unwrap()
    }

    async fn store(dir: &Path) -> SqliteStore {
        SqliteStore::open(&dir.join("db.sqlite")).await.unwrap()
    }

    #[tokio::test]
    async fn a_crash_is_replayed_once_skipping_what_was_written() {
        let tmp = tempfile::tempdir().unwrap();
        let store = store(tmp.path()).await;
        let dir = tmp.path().join("spool");
        let mut spool = Spool::create(&dir).unwrap();
        let mut lines = Vec::new();
        line(&mut lines, &event("e1", "0.5"), true).unwrap();
        line(&mut lines, &event("e2", "0.25"), true).unwrap();
        spool.append(&lines, 2, true, 0).unwrap();
        // e1 reached the database (with its debit) before the crash; e2 did not.
        let e1 = vec![event("e1", "0.5")];
        store
            .insert_usage(&e1, &debits(&e1, &[true]))
            .await
            .unwrap();
        // The crash cut a third line in the middle: its call was never told it was on disk.
        let mut torn = OpenOptions::new()
            .append(true)
            .open(&spool.current_path)
            .unwrap();
        torn.write_all(br#"{"event":{"id":"e3","#).unwrap();
        drop(spool);

        let fallback = tmp.path().join("unwritten.jsonl");
        append_fallback(&fallback, &[event("e4", "1")], &[true]).unwrap();
        let written = replay(&store, &dir, &fallback, 512).await.unwrap();
        assert_eq!(written, 2, "e2 and e4; e1 was there, e3 torn");
        let present = store
            .usage_ids_present(&["e1", "e2", "e3", "e4"].map(String::from))
            .await
            .unwrap();
        assert_eq!(present.len(), 3);
        assert!(!present.contains("e3"));
        // Debits: e1's once (before the crash), e2's and e4's by the replay.
        let balance = store.credit_balance("default").await.unwrap();
        assert_eq!(balance, -"1.75".parse::<Money>().unwrap());
        assert!(segments(&dir).unwrap().is_empty() && !fallback.exists());
        // A second start finds nothing to do.
        assert_eq!(replay(&store, &dir, &fallback, 512).await.unwrap(), 0);
    }

    #[test]
    fn committed_segments_are_dropped() {
        let tmp = tempfile::tempdir().unwrap();
        let mut spool = Spool::create(tmp.path()).unwrap();
        spool.segment_bytes = 1;
        let first = append(&mut spool, &["a"], 0);
        let second = append(&mut spool, &["b", "c"], 0);
        assert_eq!((first, second), (1, 3));
        assert_eq!(
            segments(tmp.path()).unwrap().len(),
            3,
            "two closed, one open"
        );
        spool.release(1).unwrap();
        assert_eq!(segments(tmp.path()).unwrap().len(), 2);
        spool.segment_bytes = SEGMENT_BYTES;
        append(&mut spool, &["d"], 3);
        let left = segments(tmp.path()).unwrap();
        assert_eq!(left.len(), 1);
        let text = std::fs::read_to_string(&left[0].1).unwrap();
        assert!(text.contains("\"d\"") && !text.contains("\"c\""), "{text}");
        spool.release(4).unwrap();
        assert_eq!(std::fs::metadata(&left[0].1).unwrap().len(), 0);
    }

    /// Records two events through a ledger with a spool of `mode`: each is in the spool
    /// file once recorded (`write`) or once durable (`sync`), before the database has it,
    /// and the file drops it once the database does.
    async fn events_are_spooled_before_the_database_has_them(mode: SpoolMode) {
        let tmp = tempfile::tempdir().unwrap();
        let store: Arc<dyn Store> = Arc::new(store(tmp.path()).await);
        let dir = tmp.path().join("spool");
        let spool = Spool::create(&dir).unwrap();
        let (ledger, task) = crate::ledger::Ledger::start(
            store.clone(),
            512,
            std::time::Duration::from_secs(3600),
            tmp.path().join("fallback.jsonl"),
            Some((spool, mode)),
        )
        .unwrap();
        let spooled = || {
            let mut text = String::new();
            for (_, path) in segments(&dir).unwrap() {
                text.push_str(&std::fs::read_to_string(path).unwrap());
            }
            text
        };
        let record = |id: &str| {
            let durable = ledger.record(event(id, "0.1"), false);
            assert_eq!(durable.is_some(), mode == SpoolMode::Sync);
            durable
        };
        if let Some(durable) = record("x1") {
            durable.await.unwrap();
        }
        assert!(spooled().contains("\"x1\""));
        // The hour-long window has not passed: spooled, not yet in the database.
        let ids = ["x1".to_string(), "x2".to_string()];
        assert!(store.usage_ids_present(&ids).await.unwrap().is_empty());
        ledger.flush().await;
        assert_eq!(store.usage_ids_present(&ids).await.unwrap().len(), 1);
        if let Some(durable) = record("x2") {
            durable.await.unwrap();
        }
        let text = spooled();
        assert!(
            text.contains("\"x2\"") && !text.contains("\"x1\""),
            "{text}"
        );
        ledger.close();
        task.await.unwrap();
        assert_eq!(store.usage_ids_present(&ids).await.unwrap().len(), 2);
    }

    #[tokio::test]
    async fn write_spool_holds_events_before_the_database() {
        events_are_spooled_before_the_database_has_them(SpoolMode::Write).await;
    }

    #[tokio::test]
    async fn sync_spool_holds_events_before_the_database() {
        events_are_spooled_before_the_database_has_them(SpoolMode::Sync).await;
    }
}
