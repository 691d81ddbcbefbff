//! The in-flight journal: each call is noted in a local file just before it is sent to a
//! provider, so that a process killed in the middle of calls (SIGKILL, OOM, a crash) still
//! leaves a usage event for every call that reached a provider. At start, [`replay`] writes
//! an `interrupted` event for each noted call that has no event yet (its usage is unknown:
//! the answer was cut off with the process). Calls that ended are skipped by their event id.
//!
//! Notes are written with one `write(2)` (they survive the process, not the machine: a
//! power loss can lose the notes of calls in flight, never an event the spool kept). The
//! journal is a series of files; a file past [`FILE_BYTES`] is closed, and deleted once
//! every call noted in it has ended.

use meshgate_store::{Outcome, Store};
use meshgate_types::Usage;
use serde::Serialize;
use std::collections::{BTreeMap, HashMap};
use std::fs::{File, OpenOptions};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// A journal file is closed and a new one started past this size.
const FILE_BYTES: u64 = 4 << 20;

/// What a noted call's `interrupted` event says went wrong.
const INTERRUPTED: &str = "the gateway stopped while the call was in flight; the provider may \
                           have billed it, its usage is unknown";

/// A call about to be sent, as the journal notes it: the `interrupted` usage event that
/// [`replay`] writes if the process dies, in the spool's line format (`{"event": ..,
/// "debit": false}`), serialised from the call's own fields without building an event.
/// The fields it leaves out are the event's empty ones (no usage, no cost, no status).
#[derive(Serialize)]
pub struct Note<'a> {
    pub id: &'a str,
    pub request_id: &'a str,
    pub project_id: &'a str,
    pub key_id: Option<&'a str>,
    pub token_id: Option<&'a str>,
    pub user: Option<&'a str>,
    pub room: Option<&'a str>,
    pub delegation_id: Option<&'a str>,
    pub annotations: &'a BTreeMap<String, String>,
    pub surface: &'a str,
    pub endpoint: &'a str,
    pub provider: &'a str,
    pub model: Option<&'a str>,
    pub requested_model: Option<&'a str>,
    pub deployment: Option<&'a str>,
    pub streamed: bool,
    pub started_ms: i64,
}

/// A [`Note`] as one spool line.
#[derive(Serialize)]
struct NoteLine<'a> {
    event: NoteEvent<'a>,
    debit: bool,
}

#[derive(Serialize)]
struct NoteEvent<'a> {
    #[serde(flatten)]
    call: &'a Note<'a>,
    outcome: Outcome,
    usage: Usage,
    error: &'static str,
    duration_ms: i64,
}

/// The journal of one process; shared by every call.
pub struct Journal {
    dir: PathBuf,
    files: Mutex<Files>,
}

struct Files {
    current: Arc<File>,
    generation: u64,
    len: u64,
    /// Calls noted and not ended, per file generation still on disk.
    open: HashMap<u64, usize>,
}

/// A call noted in the journal; dropping it (when the call's event is recorded) ends it.
pub struct Noted {
    journal: Arc<Journal>,
    generation: u64,
}

impl Journal {
    /// Opens a new journal file in `dir`; run [`replay`] first, which empties the dir.
    pub fn create(dir: &Path) -> std::io::Result<Arc<Journal>> {
        std::fs::create_dir_all(dir)?;
        let generation = files(dir)?.last().map_or(1, |(n, _)| n + 1);
        let current = open_file(dir, generation)?;
        Ok(Arc::new(Journal {
            dir: dir.to_path_buf(),
            files: Mutex::new(Files {
                current: Arc::new(current),
                generation,
                len: 0,
                open: HashMap::from([(generation, 0)]),
            }),
        }))
    }

    /// Notes a call about to be sent: [`replay`] writes its `interrupted` event if the
    /// process dies before the call ends. `None` when the note could not be written (logged).
    pub fn note(self: &Arc<Self>, note: &Note<'_>) -> Option<Noted> {
        let mut line = Vec::with_capacity(512);
        let serialised = serde_json::to_writer(
            &mut line,
            &NoteLine {
                event: NoteEvent {
                    call: note,
                    outcome: Outcome::Interrupted,
                    usage: Usage::default(),
                    error: INTERRUPTED,
                    duration_ms: 0,
                },
                debit: false,
            },
        );
        if let Err(e) = serialised {
            tracing::error!(error = %e, "cannot serialise an in-flight note");
            return None;
        }
        line.push(b'\n');
        let (file, noted) = {
            let mut files = self.lock();
            let file = files.current.clone();
            files.len += line.len() as u64;
            let generation = files.generation;
            *files.open.entry(generation).or_default() += 1;
            if files.len >= FILE_BYTES {
                self.rotate(&mut files);
            }
            let noted = Noted {
                journal: self.clone(),
                generation,
            };
            (file, noted)
        };
        // Outside the lock: notes of calls on other threads do not wait for this write. The
        // file is append-only and its generation stays on disk while the note is open.
        if let Err(e) = (&*file).write_all(&line) {
            tracing::error!(error = %e, "cannot write to the in-flight journal");
            return None;
        }
        Some(noted)
    }

    /// Starts a new file; the current one is deleted now if no call noted in it is open.
    fn rotate(&self, files: &mut Files) {
        let next = files.generation + 1;
        match open_file(&self.dir, next) {
            Ok(file) => {
                let closed = files.generation;
                files.current = Arc::new(file);
                files.generation = next;
                files.len = 0;
                files.open.insert(next, 0);
                if files.open.get(&closed) == Some(&0) {
                    self.remove(files, closed);
                }
            }
            Err(e) => tracing::error!(error = %e, "cannot start a new in-flight journal file"),
        }
    }

    fn end(&self, generation: u64) {
        let mut files = self.lock();
        let left = files.open.get_mut(&generation).map(|n| {
            *n = n.saturating_sub(1);
            *n
        });
        if left == Some(0) && generation != files.generation {
            self.remove(&mut files, generation);
        }
    }

    fn remove(&self, files: &mut Files, generation: u64) {
        files.open.remove(&generation);
        if let Err(e) = std::fs::remove_file(file_path(&self.dir, generation)) {
            tracing::warn!(error = %e, "cannot delete a closed in-flight journal file");
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Files> {
        // A panic while holding the lock leaves counters that are still usable.
        self.files
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner)
    }
}

impl Drop for Noted {
    fn drop(&mut self) {
        self.journal.end(self.generation);
    }
}

/// Writes an event for every noted call that has none in the database (run after the
/// spool's replay, so that calls which ended are found there), then deletes the files.
/// Returns how many calls were interrupted.
pub async fn replay(store: &dyn Store, dir: &Path, batch_size: usize) -> anyhow::Result<usize> {
    let paths: Vec<PathBuf> = match files(dir) {
        Ok(f) => f.into_iter().map(|(_, p)| p).collect(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(0),
        Err(e) => return Err(e.into()),
    };
    crate::spool::write_files(store, &paths, batch_size).await
}

fn file_path(dir: &Path, generation: u64) -> PathBuf {
    dir.join(format!("inflight-{generation:010}.jsonl"))
}

fn open_file(dir: &Path, generation: u64) -> std::io::Result<File> {
    OpenOptions::new()
        .create(true)
        .append(true)
        .open(file_path(dir, generation))
}

/// The journal files in `dir`, oldest first.
fn files(dir: &Path) -> std::io::Result<Vec<(u64, PathBuf)>> {
    let mut out = Vec::new();
    for entry in std::fs::read_dir(dir)? {
        let path = entry?.path();
        let generation = path
            .file_name()
            .and_then(|n| n.to_str())
            .and_then(|n| n.strip_prefix("inflight-"))
            .and_then(|n| n.strip_suffix(".jsonl"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(g) = generation {
            out.push((g, path));
        }
    }
    out.sort();
    Ok(out)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use meshgate_store::{SqliteStore, UsageEvent};

    fn note<'a>(id: &'a str, annotations: &'a BTreeMap<String, String>) -> Note<'a> {
        Note {
            id,
            request_id: "req-1",
            project_id: "acme",
            key_id: Some("key_1"),
            token_id: None,
            user: Some("ada"),
            room: None,
            delegation_id: Some("dlg_1"),
            annotations,
            surface: "openai",
            endpoint: "chat_completions",
            provider: "openai",
            model: Some("gpt-4o-mini"),
            requested_model: Some("fast"),
            deployment: None,
            streamed: true,
            started_ms: 42,
        }
    }

    /// What replay writes for [`note`]: the call's identity, nothing billed.
    fn interrupted(id: &str) -> UsageEvent {
        let mut e = crate::spool::tests::sample_event(id);
        e.request_id = "req-1".into();
        e.project_id = "acme".into();
        e.key_id = Some("key_1".into());
        e.user = Some("ada".into());
        e.delegation_id = Some("dlg_1".into());
        e.annotations = BTreeMap::from([("team".into(), "search \"α\"".into())]);
        e.requested_model = Some("fast".into());
        e.streamed = true;
        e.status = None;
        e.outcome = Outcome::Interrupted;
        e.usage = Default::default();
        e.cost_usd = None;
        e.error = Some(INTERRUPTED.into());
        e.started_ms = 42;
        e.duration_ms = 0;
        e
    }

    #[tokio::test]
    async fn calls_that_ended_leave_nothing_and_open_calls_are_written_once() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&dir.path().join("db.sqlite"))
            .await
            .unwrap();
        let dir = dir.path().join("inflight");
        let journal = Journal::create(&dir).unwrap();
        let annotations = BTreeMap::from([("team".into(), "search \"α\"".into())]);
        let ended = journal.note(&note("ev_ended", &annotations)).unwrap();
        let _open = journal.note(&note("ev_open", &annotations)).unwrap();
        // The ended call's own event reached the database.
        let mut done = crate::spool::tests::sample_event("ev_ended");
        done.outcome = Outcome::Ok;
        store.insert_usage(&[done], &[]).await.unwrap();
        drop(ended);

        // The process dies here (the journal is not dropped cleanly): replay at start.
        std::mem::forget(journal);
        assert_eq!(replay(&store, &dir, 100).await.unwrap(), 1);
        let ended = store.get_usage_event("ev_ended").await.unwrap().unwrap();
        assert_eq!(ended.outcome, Outcome::Ok, "an ended call keeps its event");
        let open = store.get_usage_event("ev_open").await.unwrap().unwrap();
        assert_eq!(
            open,
            interrupted("ev_open"),
            "the open call's note, read back"
        );
        assert!(
            files(&dir).unwrap().is_empty(),
            "replay empties the journal"
        );
        assert_eq!(replay(&store, &dir, 100).await.unwrap(), 0);
    }

    #[test]
    fn a_closed_file_goes_once_its_calls_end() {
        let dir = tempfile::tempdir().unwrap();
        let journal = Journal::create(dir.path()).unwrap();
        let annotations = BTreeMap::new();
        let first = journal.note(&note("ev_1", &annotations)).unwrap();
        journal.rotate(&mut journal.lock());
        let second = journal.note(&note("ev_2", &annotations)).unwrap();
        assert_eq!(files(dir.path()).unwrap().len(), 2);
        drop(first);
        let left = files(dir.path()).unwrap();
        assert_eq!(left.len(), 1, "the closed file is deleted: {left:?}");
        drop(second);
        assert_eq!(
            files(dir.path()).unwrap().len(),
            1,
            "the current file stays while the process runs"
        );
    }
}
