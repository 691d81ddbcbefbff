//! The settle phase: a [`Settlement`] is armed at admission and, whatever ends the call
//! (completion, provider error, cut stream, client disconnect, shutdown), writes exactly one
//! usage event: explicitly through [`Settlement::finish`], or from its `Drop`.

use crate::admit::Charges;
use crate::ledger::Ledger;
use crate::owners::Owners;
use meshgate_pricing::{Catalog, ModelPrice};
use meshgate_providers::{Meter, Metered};
use meshgate_store::{Outcome, UsageEvent};
use meshgate_types::{Endpoint, Money, Surface, Usage};
use rust_decimal::Decimal;
use std::collections::BTreeMap;
use std::sync::Arc;
use std::time::Instant;

/// How the call ended, as the relay saw it.
#[derive(Debug, Clone)]
pub enum End {
    /// The upstream body reached its end.
    Completed,
    /// The upstream body broke off or went silent too long.
    Cut { outcome: Outcome, reason: String },
    /// No response came: connect error or first-byte timeout.
    SendFailed { outcome: Outcome, reason: String },
    /// The client went away (the response or the handler was dropped).
    Dropped,
}

/// What identifies a call in the ledger, fixed at admission.
#[derive(Debug, Clone)]
pub struct CallInfo {
    pub request_id: String,
    pub project_id: String,
    pub key_id: Option<String>,
    pub token_id: Option<String>,
    pub user: Option<String>,
    pub room: Option<String>,
    pub delegation_id: Option<String>,
    pub annotations: BTreeMap<String, String>,
    pub surface: Surface,
    pub endpoint: Endpoint,
    pub provider: &'static str,
    /// The deployment the call went to.
    pub deployment: Option<String>,
    /// The model that serves the call.
    pub model: Option<String>,
    /// The model name the client sent, when routing chose another.
    pub requested_model: Option<String>,
    /// The price admission found for `model`; the call is charged at it.
    pub price: Option<Arc<ModelPrice>>,
    pub streamed: bool,
    pub started_ms: i64,
    /// Batch results: the batch whose billing this call claimed (released if it fails).
    pub batch_claim: Option<String>,
    /// Why this call is deliberately not metered (results of a batch already billed).
    pub unmetered: Option<String>,
    /// Audio uploads: the file's own length, billed when the answer reports no usage.
    pub upload_seconds: Option<Decimal>,
}

pub struct Settlement {
    ledger: Ledger,
    catalog: Arc<Catalog>,
    owners: Arc<Owners>,
    call: CallInfo,
    /// Reservations and counters to settle with the exact charge; an attempt that was
    /// retried has none (the attempt whose answer the client gets takes them).
    charges: Option<Charges>,
    /// What the events written so far charged, and their tokens.
    charged: Money,
    tokens: u64,
    started: Instant,
    status: Option<u16>,
    upstream_request_id: Option<String>,
    ttfb_ms: Option<i64>,
    meter: Option<Box<dyn Meter>>,
    /// The meter's result, taken once when the body ends.
    metered: Option<Metered>,
    /// The id of the first usage event this call writes, known from the start so that the
    /// response can name it (`meshgate-event-id`).
    event_id: Option<String>,
    settled: bool,
    /// Resolves when the last event written is on disk (with the ledger's spool).
    durable: Option<crate::ledger::Durable>,
    /// The call's note in the in-flight journal, from its sending until its event.
    in_flight: Option<crate::inflight::Noted>,
}

impl Settlement {
    pub fn arm(
        ledger: Ledger,
        catalog: Arc<Catalog>,
        owners: Arc<Owners>,
        call: CallInfo,
        charges: Option<Charges>,
        started: Instant,
    ) -> Self {
        Settlement {
            ledger,
            catalog,
            owners,
            call,
            charges,
            charged: Money::ZERO,
            tokens: 0,
            started,
            status: None,
            upstream_request_id: None,
            ttfb_ms: None,
            meter: None,
            metered: None,
            event_id: Some(new_event_id()),
            settled: false,
            durable: None,
            in_flight: None,
        }
    }

    /// The call is about to be sent to the provider: from now on the provider may bill it,
    /// so a crash before it ends leaves an `interrupted` event (see [`crate::inflight`]).
    pub fn sending(&mut self) {
        let Some(id) = self.event_id.as_deref() else {
            return;
        };
        let call = &self.call;
        let note = crate::inflight::Note {
            id,
            request_id: &call.request_id,
            project_id: &call.project_id,
            key_id: call.key_id.as_deref(),
            token_id: call.token_id.as_deref(),
            user: call.user.as_deref(),
            room: call.room.as_deref(),
            delegation_id: call.delegation_id.as_deref(),
            annotations: &call.annotations,
            surface: call.surface.as_str(),
            endpoint: call.endpoint.as_str(),
            provider: call.provider,
            model: call.model.as_deref(),
            requested_model: call.requested_model.as_deref(),
            deployment: call.deployment.as_deref(),
            streamed: call.streamed,
            started_ms: call.started_ms,
        };
        self.in_flight = self.ledger.note_in_flight(&note);
    }

    /// The provider answered: its status, request id, and (for 2xx) the meter of its body.
    pub fn on_response(
        &mut self,
        status: u16,
        upstream_request_id: Option<String>,
        meter: Option<Box<dyn Meter>>,
    ) {
        self.status = Some(status);
        self.upstream_request_id = upstream_request_id;
        self.meter = meter;
    }

    /// The id the call's (first) usage event will have; `None` once it is written.
    pub fn event_id(&self) -> Option<&str> {
        self.event_id.as_deref()
    }

    /// Takes the batch billing claim away from the guard, for a caller that releases it now.
    pub fn take_batch_claim(&mut self) -> Option<String> {
        self.call.batch_claim.take()
    }

    /// Every upstream body chunk passes here before it is forwarded.
    #[inline]
    pub fn observe(&mut self, chunk: &[u8]) {
        if self.ttfb_ms.is_none() {
            self.ttfb_ms = Some(elapsed_ms(self.started));
        }
        if let Some(meter) = self.meter.as_mut() {
            meter.observe(chunk);
        }
    }

    /// Whether the bytes observed so far stop inside an SSE event.
    pub fn mid_event(&self) -> bool {
        self.meter.as_ref().is_some_and(|m| m.mid_event())
    }

    /// Ends metering (once) and returns what the meter saw; a call without a meter counts
    /// as complete.
    pub fn close_meter(&mut self) -> &Metered {
        let meter = &mut self.meter;
        self.metered.get_or_insert_with(|| match meter.as_mut() {
            Some(m) => m.finish(),
            None => Metered {
                complete: true,
                ..Metered::default()
            },
        })
    }

    /// After [`Settlement::finish`]: what resolves once the call's usage is on disk, for
    /// the relay to hold the response's last bytes until then.
    pub fn take_durable(&mut self) -> Option<crate::ledger::Durable> {
        self.durable.take()
    }

    /// Writes the usage event; later calls and the drop do nothing.
    pub fn finish(&mut self, end: End) {
        if self.settled {
            return;
        }
        self.settled = true;
        let duration_ms = elapsed_ms(self.started);
        let answered_ok = self.status.is_some_and(|s| (200..300).contains(&s));
        let metered = if answered_ok {
            self.close_meter();
            self.metered.take().unwrap_or_default()
        } else {
            Metered::default()
        };
        if let Some(id) = &metered.resource_id {
            // A stored response: only its project may read it back.
            self.owners.remember(id, &self.call.project_id, "response");
        }
        let (outcome, error) = self.outcome(&end, &metered);
        let error = error.or_else(|| self.call.unmetered.clone());
        if let (Some(batch), false) = (&self.call.batch_claim, outcome == Outcome::Ok) {
            self.ledger.release_batch(batch.clone());
        }
        if metered.batch_items.is_empty() {
            let mut usage = metered.usage.clone();
            if answered_ok {
                self.fill_upload_seconds(&mut usage);
            }
            self.write(
                usage,
                self.call.model.clone(),
                &metered,
                outcome,
                error,
                duration_ms,
            );
        } else {
            // Batch results: one event per model, each item priced on its own.
            let mut by_model: Vec<(String, Vec<Usage>)> = Vec::new();
            for (model, usage) in &metered.batch_items {
                match by_model.iter_mut().find(|(m, _)| m == model) {
                    Some((_, list)) => list.push(usage.clone()),
                    None => by_model.push((model.clone(), vec![usage.clone()])),
                }
            }
            for (model, items) in by_model {
                self.write_items(
                    &model,
                    &items,
                    &metered,
                    outcome,
                    error.clone(),
                    duration_ms,
                );
            }
        }
        if let Some(charges) = self.charges.as_mut() {
            charges.settle(self.charged, self.tokens);
        }
        // The event is recorded (spooled): the note is no longer needed.
        self.in_flight = None;
    }

    /// This attempt's answer goes to the client: it settles the call's reservations.
    pub fn attach_charges(&mut self, charges: Option<Charges>) {
        self.charges = charges;
    }

    /// Transcriptions in `text`, `srt` or `vtt` and plain translations report no usage:
    /// bill the uploaded audio's length, rounded up to whole seconds as the provider does.
    fn fill_upload_seconds(&self, usage: &mut Usage) {
        let audio = matches!(
            self.call.endpoint,
            Endpoint::AudioTranscriptions | Endpoint::AudioTranslations
        );
        if audio && usage.is_empty() {
            usage.audio_seconds = self.call.upload_seconds.map(|s| s.ceil());
        }
    }

    fn outcome(&self, end: &End, metered: &Metered) -> (Outcome, Option<String>) {
        match end {
            End::SendFailed { outcome, reason } => (*outcome, Some(reason.clone())),
            _ if self.status.is_none() => (
                Outcome::ClientCancelled,
                Some("the client went away before the provider answered".into()),
            ),
            _ if !self.status.is_some_and(|s| (200..300).contains(&s)) => (
                Outcome::UpstreamError,
                Some(format!("provider answered {}", self.status.unwrap_or(0))),
            ),
            End::Cut { outcome, reason } => (*outcome, Some(reason.clone())),
            End::Dropped => (
                Outcome::ClientCancelled,
                Some("the client went away before the response ended".into()),
            ),
            End::Completed => match &metered.incomplete_reason {
                Some(reason) => (Outcome::Incomplete, Some(reason.clone())),
                None if !metered.complete => (
                    Outcome::Incomplete,
                    Some("the provider's response ended before its final event".into()),
                ),
                None => (Outcome::Ok, None),
            },
        }
    }

    fn price(
        &self,
        model: Option<&str>,
        usage: &Usage,
    ) -> (Option<Money>, Option<String>, Option<String>) {
        if usage.is_empty() {
            return (None, None, None);
        }
        let Some(model) = model else {
            return (
                None,
                None,
                Some("usage reported without a model to price".into()),
            );
        };
        let admitted = self
            .call
            .price
            .clone()
            .filter(|_| self.call.model.as_deref() == Some(model));
        match admitted.or_else(|| self.catalog.price(model)) {
            None => (None, None, Some(format!("no price for model {model}"))),
            Some(price) => match meshgate_pricing::cost(usage, &price) {
                Ok(cost) => (Some(cost), Some(price.id()), None),
                Err(e) => (None, Some(price.id()), Some(e.to_string())),
            },
        }
    }

    fn write(
        &mut self,
        usage: Usage,
        model: Option<String>,
        metered: &Metered,
        outcome: Outcome,
        error: Option<String>,
        duration_ms: i64,
    ) {
        let (cost_usd, price_id, price_error) = self.price(model.as_deref(), &usage);
        self.record(self.event(
            usage,
            model,
            metered.response_model.clone(),
            outcome,
            error.or(price_error),
            cost_usd,
            price_id,
            duration_ms,
        ));
    }

    fn write_items(
        &mut self,
        model: &str,
        items: &[Usage],
        metered: &Metered,
        outcome: Outcome,
        error: Option<String>,
        duration_ms: i64,
    ) {
        let mut total = Usage::default();
        let mut cost = Money::ZERO;
        let mut price_id = None;
        let mut price_error = None;
        for usage in items {
            add_usage(&mut total, usage);
            let (c, id, e) = self.price(Some(model), usage);
            cost += c.unwrap_or(Money::ZERO);
            price_id = price_id.or(id);
            price_error = price_error.or(e);
        }
        total.service_tier = items.first().and_then(|u| u.service_tier);
        let cost_usd = price_error.is_none().then_some(cost);
        self.record(self.event(
            total,
            Some(model.to_string()),
            metered.response_model.clone(),
            outcome,
            error.or(price_error),
            cost_usd,
            price_id,
            duration_ms,
        ));
    }

    /// Queues an event, adding its charge (cost plus markup) and tokens to the call's.
    fn record(&mut self, mut event: UsageEvent) {
        if let Some(id) = self.event_id.take() {
            event.id = id;
        }
        if let Some(cost) = event.cost_usd {
            event.markup_usd = self.charges.as_ref().and_then(|c| c.markup(cost));
            self.charged += cost + event.markup_usd.unwrap_or(Money::ZERO);
        }
        let u = &event.usage;
        self.tokens += [
            u.input_uncached,
            u.cache_read,
            u.cache_write_5m,
            u.cache_write_1h,
            u.output,
        ]
        .into_iter()
        .flatten()
        .sum::<u64>();
        let debit = self.charges.as_ref().is_some_and(|c| c.debit_credits);
        // Events are spooled in order: the last one on disk means all of them are.
        self.durable = self.ledger.record(event, debit);
    }

    #[allow(clippy::too_many_arguments)]
    fn event(
        &self,
        usage: Usage,
        model: Option<String>,
        response_model: Option<String>,
        outcome: Outcome,
        error: Option<String>,
        cost_usd: Option<Money>,
        price_id: Option<String>,
        duration_ms: i64,
    ) -> UsageEvent {
        UsageEvent {
            id: new_event_id(),
            request_id: self.call.request_id.clone(),
            project_id: self.call.project_id.clone(),
            key_id: self.call.key_id.clone(),
            token_id: self.call.token_id.clone(),
            user: self.call.user.clone(),
            room: self.call.room.clone(),
            delegation_id: self.call.delegation_id.clone(),
            annotations: self.call.annotations.clone(),
            surface: self.call.surface.as_str().to_string(),
            endpoint: self.call.endpoint.as_str().to_string(),
            provider: self.call.provider.to_string(),
            model,
            requested_model: self.call.requested_model.clone(),
            deployment: self.call.deployment.clone(),
            response_model,
            streamed: self.call.streamed,
            status: self.status,
            outcome,
            usage,
            cost_usd,
            markup_usd: None,
            price_id,
            error,
            upstream_request_id: self.upstream_request_id.clone(),
            started_ms: self.call.started_ms,
            ttfb_ms: self.ttfb_ms,
            duration_ms,
        }
    }
}

impl Drop for Settlement {
    fn drop(&mut self) {
        self.finish(End::Dropped);
    }
}

fn add(a: &mut Option<u64>, b: Option<u64>) {
    if let Some(b) = b {
        *a = Some(a.unwrap_or(0) + b);
    }
}

/// Sums two usages of separate requests (batch items), field by field.
fn add_usage(total: &mut Usage, u: &Usage) {
    add(&mut total.input_uncached, u.input_uncached);
    add(&mut total.cache_read, u.cache_read);
    add(&mut total.cache_write_5m, u.cache_write_5m);
    add(&mut total.cache_write_1h, u.cache_write_1h);
    add(&mut total.output, u.output);
    add(&mut total.reasoning, u.reasoning);
    add(&mut total.web_search_requests, u.web_search_requests);
}

fn new_event_id() -> String {
    uuid::Uuid::now_v7().to_string()
}

fn elapsed_ms(since: Instant) -> i64 {
    i64::try_from(since.elapsed().as_millis()).unwrap_or(i64::MAX)
}
