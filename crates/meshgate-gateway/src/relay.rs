//! The relay phase: [`RelayBody`] hands each upstream chunk to the client as it arrives,
//! lets the meter observe it, enforces the between-chunk timeout, ends a broken stream
//! with a protocol-correct error, and owns the [`Settlement`] so that its end settles.
//! The response's last bytes wait until the call's usage event is on disk (see
//! [`crate::spool`]): a client never holds a whole answer whose usage a crash could lose.

use crate::conn::UpstreamBody;
use crate::settle::{End, Settlement};
use bytes::{Bytes, BytesMut};
use http_body::{Body, Frame, SizeHint};
use meshgate_providers::{stream_cut_error, StreamTranslator, UsageChunkFilter};
use meshgate_store::Outcome;
use meshgate_types::{Endpoint, Surface};
use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::time::{Instant, Sleep};

pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// How the relay treats the body.
pub struct RelayMode {
    /// An SSE response: a broken end gets an error event in this surface's format.
    pub sse: Option<(Surface, Endpoint)>,
    /// Chat streams where meshgate asked for usage: drop the usage-only chunk.
    pub filter: Option<UsageChunkFilter>,
    /// The translation lane: the upstream's events rewritten, event by event, into the
    /// client's format (after the meter saw the upstream's own bytes).
    pub translator: Option<Box<dyn StreamTranslator>>,
}

pub struct RelayBody {
    upstream: UpstreamBody,
    settlement: Settlement,
    mode: RelayMode,
    idle: Duration,
    idle_timer: Pin<Box<Sleep>>,
    last_activity: Instant,
    /// Bytes to send after the upstream ended (filter remainder, cut error), then done.
    tail: Option<Bytes>,
    /// A frame that came after bytes already gathered: sent at the next poll.
    held: Option<Result<Frame<Bytes>, BoxError>>,
    done: bool,
    /// Set when the call settled: resolves once its usage event is on disk.
    durable: Option<crate::ledger::Durable>,
}

impl RelayBody {
    pub fn new(
        upstream: UpstreamBody,
        settlement: Settlement,
        mode: RelayMode,
        idle: Duration,
    ) -> Self {
        let now = Instant::now();
        RelayBody {
            upstream,
            settlement,
            mode,
            idle,
            idle_timer: Box::pin(tokio::time::sleep_until(now + idle)),
            last_activity: now,
            tail: None,
            held: None,
            done: false,
            durable: None,
        }
    }

    /// The upstream body ended normally. If an SSE stream ended without its final event
    /// (and without an error event of its own), append an error event so the client does
    /// not take the truncated answer for a complete one.
    fn on_upstream_end(&mut self) -> Option<Bytes> {
        let metered = self.settlement.close_meter();
        let cut = !metered.complete && metered.incomplete_reason.is_none();
        let tail = self
            .closing_bytes(cut.then_some("the provider ended the stream before it was complete"));
        self.settlement.finish(End::Completed);
        self.durable = self.settlement.take_durable();
        (!tail.is_empty()).then_some(tail)
    }

    /// The upstream broke off or went silent. SSE clients get an error event (the body's
    /// tail); other responses are aborted so the client cannot mistake a truncated body
    /// for a whole one.
    fn on_upstream_cut(&mut self, outcome: Outcome, reason: String) {
        self.done = true;
        let tail = self.closing_bytes(Some(&reason));
        self.settlement.finish(End::Cut { outcome, reason });
        match self.mode.sse {
            Some(_) => {
                self.durable = self.settlement.take_durable();
                self.tail = Some(tail);
            }
            None => self.held = Some(Err("the provider's response broke off".into())),
        }
    }

    /// What is still owed to the client when the upstream ends: the filter's remainder on a
    /// clean end, or, for an SSE stream cut with `cut_reason`, an error event. A partial
    /// event the filter still holds is dropped then (the client never saw its start), so
    /// the error event is the first thing after the last whole event.
    fn closing_bytes(&mut self, cut_reason: Option<&str>) -> Bytes {
        if let Some(translator) = self.mode.translator.as_mut() {
            // The translator ends the client's stream: its final events, or the client
            // format's error when the upstream stopped before its terminal event.
            let mut out = Vec::new();
            translator.finish(&mut out);
            return Bytes::from(out);
        }
        let mid_event = self.settlement.mid_event();
        let held = self.mode.filter.as_mut().map(UsageChunkFilter::finish);
        let (Some(reason), Some((surface, endpoint))) = (cut_reason, self.mode.sse) else {
            return held.unwrap_or_default();
        };
        let mid_event = mid_event && held.is_none();
        stream_cut_error(surface, endpoint, mid_event, reason)
    }

    /// One upstream chunk: the meter sees it, the filter may hold part of it back.
    fn take_chunk(&mut self, data: Bytes) -> Bytes {
        self.last_activity = Instant::now();
        self.settlement.observe(&data);
        let out = match (self.mode.translator.as_mut(), self.mode.filter.as_mut()) {
            (Some(translator), _) => {
                let mut out = Vec::new();
                translator.push(&data, &mut out);
                Bytes::from(out)
            }
            (None, Some(filter)) => filter.push(&data),
            (None, None) => data,
        };
        // A body of known length may never be polled past its last byte, so settle as
        // soon as the upstream says this was the last chunk.
        if self.upstream.is_end_stream() {
            self.done = true;
            self.tail = self.on_upstream_end();
        }
        out
    }

    /// Whether the upstream has been silent too long (then the call is cut).
    fn check_idle(&mut self, cx: &mut Context<'_>) -> bool {
        // The timer is moved only when it fires, not on every chunk.
        while self.idle_timer.as_mut().poll(cx).is_ready() {
            let deadline = self.last_activity + self.idle;
            if deadline <= Instant::now() {
                self.on_upstream_cut(
                    Outcome::UpstreamTimeout,
                    format!(
                        "the provider sent nothing for {} ms (timeouts.between_chunks_ms)",
                        self.idle.as_millis()
                    ),
                );
                return true;
            }
            self.idle_timer.as_mut().reset(deadline);
        }
        false
    }
}

/// Chunks that are ready together, sent as one frame: one write instead of one per event.
#[derive(Default)]
struct Gathered {
    first: Option<Bytes>,
    more: Option<BytesMut>,
}

impl Gathered {
    fn push(&mut self, bytes: Bytes) {
        if bytes.is_empty() {
            return;
        }
        match (&self.first, &mut self.more) {
            (None, _) => self.first = Some(bytes),
            (Some(_), Some(more)) => more.extend_from_slice(&bytes),
            (Some(first), None) => {
                let mut more = BytesMut::with_capacity((first.len() + bytes.len()) * 2);
                more.extend_from_slice(first);
                more.extend_from_slice(&bytes);
                self.more = Some(more);
            }
        }
    }

    fn is_empty(&self) -> bool {
        self.first.is_none()
    }

    /// Enough to send without waiting for more ready chunks.
    fn is_full(&self) -> bool {
        const ENOUGH: usize = 64 * 1024;
        match (&self.first, &self.more) {
            (_, Some(more)) => more.len() >= ENOUGH,
            (Some(first), None) => first.len() >= ENOUGH,
            (None, None) => false,
        }
    }

    fn into_bytes(mut self) -> Bytes {
        match (self.first.take(), self.more.take()) {
            (_, Some(more)) => more.freeze(),
            (Some(first), None) => first,
            (None, None) => Bytes::new(),
        }
    }

    fn take_frame(&mut self) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let bytes = std::mem::take(self).into_bytes();
        Poll::Ready(Some(Ok(Frame::data(bytes))))
    }
}

impl Body for RelayBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = self.get_mut();
        if let Some(frame) = this.held.take() {
            return Poll::Ready(Some(frame));
        }
        let mut ready = Gathered::default();
        loop {
            if this.done {
                if let Some(tail) = this.tail.take() {
                    ready.push(tail);
                }
                if let Some(durable) = this.durable.as_mut() {
                    if Pin::new(durable).poll(cx).is_pending() {
                        // The last bytes wait for the usage event to reach the disk.
                        if !ready.is_empty() {
                            this.tail = Some(ready.into_bytes());
                        }
                        return Poll::Pending;
                    }
                    this.durable = None;
                }
                return if ready.is_empty() {
                    // The end, or the error that aborts a broken non-SSE body.
                    Poll::Ready(this.held.take())
                } else {
                    ready.take_frame()
                };
            }
            match Pin::new(&mut this.upstream).poll_frame(cx) {
                Poll::Ready(Some(Ok(frame))) => match frame.into_data() {
                    Ok(data) => {
                        let out = this.take_chunk(data);
                        ready.push(out);
                        if ready.is_full() && !this.done {
                            return ready.take_frame();
                        }
                    }
                    Err(trailers) if ready.is_empty() => return Poll::Ready(Some(Ok(trailers))),
                    Err(trailers) => {
                        this.held = Some(Ok(trailers));
                        return ready.take_frame();
                    }
                },
                Poll::Ready(Some(Err(e))) => {
                    let reason = format!("the provider's response broke off: {e}");
                    this.on_upstream_cut(Outcome::Incomplete, reason);
                }
                Poll::Ready(None) => {
                    this.done = true;
                    this.tail = this.on_upstream_end();
                }
                Poll::Pending if ready.is_empty() => {
                    if !this.check_idle(cx) {
                        return Poll::Pending;
                    }
                }
                // Send what was ready together in one write, without waiting for more.
                Poll::Pending => return ready.take_frame(),
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.done && self.tail.is_none() && self.held.is_none() && self.durable.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        let rewritten = self.mode.filter.is_some() || self.mode.translator.is_some();
        if self.mode.sse.is_none() && !rewritten && !self.done {
            self.upstream.size_hint()
        } else {
            SizeHint::default()
        }
    }
}
