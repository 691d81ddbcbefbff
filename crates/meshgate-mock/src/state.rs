//! Shared mock state: options, the request log, counters and the in-memory batch store.

use std::collections::VecDeque;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use base64::Engine as _;
use bytes::Bytes;
use serde::{Serialize, Serializer};

/// How a mock server behaves beyond what request headers choose.
#[derive(Clone, Debug)]
pub struct MockOptions {
    /// Key expected in `Authorization: Bearer` on OpenAI paths; `None` accepts any non-empty key.
    pub openai_key: Option<String>,
    /// Key expected in `x-api-key` on Anthropic paths; `None` accepts any non-empty key.
    pub anthropic_key: Option<String>,
    /// Key expected in `api-key` on Azure OpenAI paths; `None` accepts any non-empty key.
    pub azure_key: Option<String>,
    /// Key expected in `x-goog-api-key` (or `?key=`) on Gemini paths; `None` accepts any.
    pub gemini_key: Option<String>,
    /// How many requests the log keeps (oldest dropped first); 0 disables recording.
    pub max_recorded: usize,
    /// A slowed instance: every answer waits at least this long before its headers.
    pub first_byte_delay: std::time::Duration,
    /// A flaky instance: every Nth call (counted from 1) answers a native 500; 0 never.
    pub fail_every: u64,
}

impl Default for MockOptions {
    fn default() -> Self {
        MockOptions {
            openai_key: Some("sk-mock-openai".to_owned()),
            anthropic_key: Some("sk-ant-mock".to_owned()),
            azure_key: Some("sk-mock-azure".to_owned()),
            gemini_key: Some("mock-gemini-key".to_owned()),
            max_recorded: 10_000,
            first_byte_delay: std::time::Duration::ZERO,
            fail_every: 0,
        }
    }
}

/// One request as the mock received it.
#[derive(Clone, Debug, Serialize)]
pub struct RecordedRequest {
    pub method: String,
    pub path: String,
    pub query: Option<String>,
    /// Header names are lowercase, in arrival order.
    pub headers: Vec<(String, String)>,
    #[serde(serialize_with = "as_base64")]
    pub body: Bytes,
}

fn as_base64<S: Serializer>(body: &Bytes, s: S) -> Result<S::Ok, S::Error> {
    s.serialize_str(&base64::engine::general_purpose::STANDARD.encode(body))
}

impl RecordedRequest {
    /// First value of a header, name matched case-insensitively.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers
            .iter()
            .find(|(n, _)| n.eq_ignore_ascii_case(name))
            .map(|(_, v)| v.as_str())
    }

    /// The body parsed as JSON, when it is JSON.
    pub fn json(&self) -> Option<serde_json::Value> {
        serde_json::from_slice(&self.body).ok()
    }
}

/// Counters since start or the last [`MockState::clear`].
#[derive(Clone, Copy, Debug, Default, Serialize)]
pub struct MockStats {
    pub requests: u64,
    pub streams_started: u64,
    pub streams_completed: u64,
    /// The client went away before the stream ended.
    pub streams_cancelled: u64,
}

/// What the log keeps: the request head and body as received, converted only when read.
pub(crate) struct Raw {
    pub parts: http::request::Parts,
    pub body: Bytes,
}

impl Raw {
    fn to_recorded(&self) -> RecordedRequest {
        RecordedRequest {
            method: self.parts.method.as_str().to_owned(),
            path: self.parts.uri.path().to_owned(),
            query: self.parts.uri.query().map(str::to_owned),
            headers: self
                .parts
                .headers
                .iter()
                .map(|(n, v)| {
                    (
                        n.as_str().to_ascii_lowercase(),
                        String::from_utf8_lossy(v.as_bytes()).into_owned(),
                    )
                })
                .collect(),
            body: self.body.clone(),
        }
    }
}

/// A message batch: created ended, its JSONL result lines computed at creation.
pub(crate) struct Batch {
    pub id: String,
    pub created_at: u64,
    pub succeeded: u64,
    pub errored: u64,
    pub results_url: String,
    pub lines: Vec<String>,
}

/// State shared by every connection of one mock server.
pub struct MockState {
    pub(crate) options: MockOptions,
    log: Mutex<VecDeque<Arc<Raw>>>,
    pub(crate) batches: Mutex<Vec<Batch>>,
    next_id: AtomicU64,
    requests: AtomicU64,
    pub(crate) streams_started: AtomicU64,
    pub(crate) streams_completed: AtomicU64,
    pub(crate) streams_cancelled: AtomicU64,
    /// Calls answered by `respond`, for `fail_every`.
    answered: AtomicU64,
}

/// Locks a mutex, ignoring poison: the data stays usable for a mock.
pub(crate) fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl MockState {
    pub fn new(options: MockOptions) -> Arc<MockState> {
        Arc::new(MockState {
            options,
            log: Mutex::new(VecDeque::new()),
            batches: Mutex::new(Vec::new()),
            next_id: AtomicU64::new(1),
            requests: AtomicU64::new(0),
            streams_started: AtomicU64::new(0),
            streams_completed: AtomicU64::new(0),
            streams_cancelled: AtomicU64::new(0),
            answered: AtomicU64::new(0),
        })
    }

    pub fn options(&self) -> &MockOptions {
        &self.options
    }

    /// Every request received (up to `max_recorded`, oldest first).
    pub fn requests(&self) -> Vec<RecordedRequest> {
        lock(&self.log).iter().map(|r| r.to_recorded()).collect()
    }

    pub fn last_request(&self) -> Option<RecordedRequest> {
        lock(&self.log).back().map(|r| r.to_recorded())
    }

    pub fn stats(&self) -> MockStats {
        MockStats {
            requests: self.requests.load(Ordering::Relaxed),
            streams_started: self.streams_started.load(Ordering::Relaxed),
            streams_completed: self.streams_completed.load(Ordering::Relaxed),
            streams_cancelled: self.streams_cancelled.load(Ordering::Relaxed),
        }
    }

    /// Forgets recorded requests, counters and batches.
    pub fn clear(&self) {
        lock(&self.log).clear();
        lock(&self.batches).clear();
        for c in [
            &self.requests,
            &self.streams_started,
            &self.streams_completed,
            &self.streams_cancelled,
        ] {
            c.store(0, Ordering::Relaxed);
        }
    }

    /// Counts and logs a request; returns its sequence number (for `req_mock_<n>` and ids).
    pub(crate) fn record(&self, raw: &Arc<Raw>) -> u64 {
        self.requests.fetch_add(1, Ordering::Relaxed);
        let max = self.options.max_recorded;
        if max > 0 {
            let mut log = lock(&self.log);
            while log.len() >= max {
                log.pop_front();
            }
            log.push_back(Arc::clone(raw));
        }
        self.next_id()
    }

    /// Whether this call is one of the `fail_every` failures of a flaky instance.
    pub(crate) fn flaky_failure(&self) -> bool {
        let n = self.answered.fetch_add(1, Ordering::Relaxed) + 1;
        self.options.fail_every > 0 && n.is_multiple_of(self.options.fail_every)
    }

    pub(crate) fn next_id(&self) -> u64 {
        self.next_id.fetch_add(1, Ordering::Relaxed)
    }
}
