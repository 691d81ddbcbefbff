//! What the proxy reports: each finished call, completed with the gateway's own metering of
//! it (looked up by its event id, off the request path), the upstream's health, and the
//! session's aggregate that the live view and the per-request lines show.

use super::upstream::{dollars, MeteredCall, Upstream};
use meshgate_types::{Money, Surface};
use std::collections::{BTreeMap, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime};
use tokio::sync::{mpsc, Semaphore};

/// How many cost lookups may run at once; more calls wait their turn.
const LOOKUPS_AT_ONCE: usize = 64;
/// How many recent calls the aggregate keeps.
pub const RECENT: usize = 200;
/// How often the upstream's health is checked.
const HEALTH_EVERY: Duration = Duration::from_secs(5);

/// A local call whose answer ended, as the forwarder saw it.
#[derive(Debug, Clone)]
pub struct FinishedCall {
    pub at: SystemTime,
    pub started: Instant,
    pub surface: Surface,
    pub status: Option<u16>,
    pub latency: Duration,
    /// From the answer's `meshgate-event-id`.
    pub event_id: Option<String>,
    pub error: Option<String>,
    /// The gateway could not be reached at all.
    pub upstream_unreachable: bool,
}

impl FinishedCall {
    pub fn new(at: SystemTime, started: Instant, surface: Surface) -> Self {
        FinishedCall {
            at,
            started,
            surface,
            status: None,
            latency: Duration::ZERO,
            event_id: None,
            error: None,
            upstream_unreachable: false,
        }
    }
}

/// A finished call with the gateway's metering, when it has any.
#[derive(Debug, Clone)]
pub struct CallRecord {
    pub call: FinishedCall,
    pub metered: Option<MeteredCall>,
    /// Why there is no metering (no event id, or the lookup failed).
    pub unmetered: Option<String>,
}

impl CallRecord {
    pub fn model(&self) -> &str {
        self.metered
            .as_ref()
            .and_then(|m| m.model.as_deref())
            .unwrap_or("-")
    }

    /// A failed call: a non-2xx status, or not `ok` by the gateway's metering; without
    /// metering, an answer that broke off. (The gateway's outcome decides: a client may
    /// close a stream right after its last event, before the proxy saw the body's end.)
    pub fn is_error(&self) -> bool {
        let answered = self.call.status.is_some_and(|s| (200..300).contains(&s));
        match &self.metered {
            Some(m) => !answered || m.outcome != "ok",
            None => !answered || self.call.error.is_some(),
        }
    }

    /// One line: time, surface, model, status, latency, tokens, cost.
    pub fn line(&self) -> String {
        let time = chrono::DateTime::<chrono::Local>::from(self.call.at).format("%H:%M:%S");
        let status = self
            .call
            .status
            .map_or_else(|| "-".to_string(), |s| s.to_string());
        let tail = match (&self.metered, &self.unmetered) {
            (Some(m), _) => format!(
                "in={} cached={} out={} cost={}",
                m.input_tokens(),
                m.cached_tokens(),
                m.output_tokens(),
                dollars(m.charged())
            ),
            (None, Some(why)) => format!("cost=? ({why})"),
            (None, None) => "cost=?".to_string(),
        };
        let error = match (&self.metered, &self.call.error) {
            (Some(m), _) if m.outcome != "ok" => format!(" outcome={}", m.outcome),
            (None, Some(e)) => format!(" error: {e}"),
            _ => String::new(),
        };
        format!(
            "{time} {} {} {status} {}ms {tail}{error}",
            self.call.surface.as_str(),
            self.model(),
            self.call.latency.as_millis(),
        )
    }
}

/// Whether the gateway can be reached, and since when it is known.
#[derive(Debug, Clone)]
pub enum UpstreamHealth {
    Unknown,
    Reachable,
    Unreachable(String),
}

/// What reaches the live view or the line printer.
#[derive(Debug)]
pub enum Report {
    Call(Box<CallRecord>),
    Upstream(UpstreamHealth),
}

/// Completes finished calls with the gateway's metering, a bounded number of lookups at a
/// time, and sends them on as reports.
pub async fn meter_calls(
    upstream: Upstream,
    mut finished: mpsc::UnboundedReceiver<FinishedCall>,
    reports: mpsc::UnboundedSender<Report>,
) {
    let permits = Arc::new(Semaphore::new(LOOKUPS_AT_ONCE));
    while let Some(call) = finished.recv().await {
        if call.upstream_unreachable {
            let reason = call.error.clone().unwrap_or_default();
            let _ = reports.send(Report::Upstream(UpstreamHealth::Unreachable(reason)));
        } else if call.status.is_some() {
            let _ = reports.send(Report::Upstream(UpstreamHealth::Reachable));
        }
        let Some(event_id) = call.event_id.clone() else {
            let record = CallRecord {
                call,
                metered: None,
                unmetered: Some("the gateway named no usage event".into()),
            };
            let _ = reports.send(Report::Call(Box::new(record)));
            continue;
        };
        let (upstream, reports) = (upstream.clone(), reports.clone());
        let Ok(permit) = permits.clone().acquire_owned().await else {
            break;
        };
        tokio::spawn(async move {
            let looked_up = upstream.metered_call(&event_id).await;
            drop(permit);
            let record = match looked_up {
                Ok(metered) => CallRecord {
                    call,
                    metered: Some(metered),
                    unmetered: None,
                },
                Err(e) => CallRecord {
                    call,
                    metered: None,
                    unmetered: Some(format!("{e:#}")),
                },
            };
            let _ = reports.send(Report::Call(Box::new(record)));
        });
    }
}

/// Checks the gateway's `/healthz` now and then.
pub async fn watch_health(upstream: Upstream, reports: mpsc::UnboundedSender<Report>) {
    let mut every = tokio::time::interval(HEALTH_EVERY);
    loop {
        every.tick().await;
        let health = match upstream.healthy().await {
            Ok(()) => UpstreamHealth::Reachable,
            Err(e) => UpstreamHealth::Unreachable(e),
        };
        if reports.send(Report::Upstream(health)).is_err() {
            return;
        }
    }
}

/// One model's totals in the session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ModelTotals {
    pub requests: u64,
    pub input: u64,
    pub cached: u64,
    pub output: u64,
    pub cost: Money,
    pub errors: u64,
}

impl ModelTotals {
    fn add(&mut self, record: &CallRecord) {
        self.requests += 1;
        if record.is_error() {
            self.errors += 1;
        }
        if let Some(m) = &record.metered {
            self.input += m.input_tokens();
            self.cached += m.cached_tokens();
            self.output += m.output_tokens();
            self.cost += m.charged();
        }
    }
}

/// The session so far: what the live view draws.
#[derive(Debug)]
pub struct Session {
    pub by_model: BTreeMap<String, ModelTotals>,
    pub total: ModelTotals,
    /// Newest first.
    pub recent: VecDeque<CallRecord>,
    pub upstream: UpstreamHealth,
}

impl Default for Session {
    fn default() -> Self {
        Session {
            by_model: BTreeMap::new(),
            total: ModelTotals::default(),
            recent: VecDeque::with_capacity(RECENT),
            upstream: UpstreamHealth::Unknown,
        }
    }
}

impl Session {
    pub fn apply(&mut self, report: Report) {
        match report {
            Report::Upstream(health) => self.upstream = health,
            Report::Call(record) => {
                self.total.add(&record);
                self.by_model
                    .entry(record.model().to_string())
                    .or_default()
                    .add(&record);
                if self.recent.len() == RECENT {
                    self.recent.pop_back();
                }
                self.recent.push_front(*record);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn record(model: &str, status: u16, input: u64, cost: &str) -> Report {
        let metered: MeteredCall = serde_json::from_value(serde_json::json!({
            "model": model, "outcome": "ok", "cost_usd": cost, "markup_usd": null,
            "usage": {"input_uncached": input, "cache_read": 5, "output": 7},
        }))
        .unwrap_or_else(|e| panic!("{e}"));
        let mut call = FinishedCall::new(SystemTime::now(), Instant::now(), Surface::OpenAi);
        call.status = Some(status);
        Report::Call(Box::new(CallRecord {
            call,
            metered: Some(metered),
            unmetered: None,
        }))
    }

    #[test]
    fn the_session_sums_exactly_by_model() {
        let mut s = Session::default();
        s.apply(record("gpt-4o", 200, 10, "0.1"));
        s.apply(record("gpt-4o", 200, 10, "0.2"));
        s.apply(record("claude-haiku-4-5", 429, 1, "0"));
        let gpt = &s.by_model["gpt-4o"];
        assert_eq!(
            (gpt.requests, gpt.input, gpt.cached, gpt.output),
            (2, 30, 10, 14)
        );
        assert_eq!(
            gpt.cost.to_string(),
            "0.3",
            "exact decimals, not 0.30000000000000004"
        );
        assert_eq!(s.by_model["claude-haiku-4-5"].errors, 1);
        assert_eq!(s.total.requests, 3);
        assert_eq!(
            s.recent.front().map(|r| r.model()),
            Some("claude-haiku-4-5")
        );
    }

    #[test]
    fn the_gateways_outcome_decides_what_is_an_error() {
        let Report::Call(mut r) = record("gpt-4o", 200, 1, "0.1") else {
            unreachable!()
        };
        // The client closed right after the last event: the gateway saw the whole answer.
        r.call.error = Some("the client went away".into());
        assert!(!r.is_error());
        assert!(!r.line().contains("error"), "{}", r.line());
        r.metered = None;
        assert!(r.is_error(), "unmetered: the local view is all there is");
        assert!(
            r.line().ends_with("error: the client went away"),
            "{}",
            r.line()
        );
    }
}
