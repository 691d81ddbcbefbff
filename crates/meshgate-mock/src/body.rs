//! Response bodies: whole buffers, and scripted streams (SSE or chunked) with delays, cuts and accounting.

use std::collections::VecDeque;
use std::future::Future as _;
use std::io;
use std::pin::Pin;
use std::sync::atomic::Ordering;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use tokio::time::Sleep;

use crate::state::MockState;

/// The body of every mock response.
pub enum MockBody {
    /// A complete buffer, sent with a content-length.
    Full(Option<Bytes>),
    /// Frames produced one per poll, so hyper's back-pressure paces them.
    Script(Box<Script>),
}

impl MockBody {
    pub(crate) fn full(b: impl Into<Bytes>) -> MockBody {
        MockBody::Full(Some(b.into()))
    }

    pub(crate) fn empty() -> MockBody {
        MockBody::Full(None)
    }
}

struct Step {
    bytes: Bytes,
    /// Waits `Script::delay` before this frame (content deltas only).
    delayed: bool,
}

/// A precomputed list of frames, played with optional delays, ending cleanly or by an abort.
pub struct Script {
    steps: VecDeque<Step>,
    delay: Duration,
    sleep: Option<Pin<Box<Sleep>>>,
    slept: bool,
    cut: bool,
    cut_flushed: bool,
    finished: bool,
    guard: Option<StreamGuard>,
}

impl Script {
    /// A script counted in the stream stats (SSE responses).
    pub(crate) fn counted(state: &Arc<MockState>, delay: Duration) -> Script {
        let mut s = Script::uncounted(delay);
        s.guard = Some(StreamGuard::new(state));
        s
    }

    /// A script not counted as a stream (chunked binary or a cut non-stream body).
    pub(crate) fn uncounted(delay: Duration) -> Script {
        Script {
            steps: VecDeque::new(),
            delay,
            sleep: None,
            slept: false,
            cut: false,
            cut_flushed: false,
            finished: false,
            guard: None,
        }
    }

    /// Appends a frame sent as soon as the client reads.
    pub(crate) fn push(&mut self, b: impl Into<Bytes>) {
        self.steps.push_back(Step {
            bytes: b.into(),
            delayed: false,
        });
    }

    /// Appends a content frame, preceded by the chunk delay.
    pub(crate) fn push_delta(&mut self, b: impl Into<Bytes>) {
        self.steps.push_back(Step {
            bytes: b.into(),
            delayed: true,
        });
    }

    /// After the last frame, abort the connection instead of ending the body.
    pub(crate) fn cut(&mut self) {
        self.cut = true;
    }

    pub(crate) fn into_body(self) -> MockBody {
        MockBody::Script(Box::new(self))
    }

    fn finish(&mut self) {
        if let Some(g) = &mut self.guard {
            g.complete();
        }
    }

    fn poll_step(&mut self, cx: &mut Context<'_>) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        let Some(front) = self.steps.front() else {
            if self.cut && !self.cut_flushed {
                // hyper flushes what it buffered when the body is pending; an error now would
                // drop the connection with the last frames still unsent.
                self.cut_flushed = true;
                cx.waker().wake_by_ref();
                return Poll::Pending;
            }
            if self.finished {
                return Poll::Ready(None);
            }
            self.finished = true;
            self.finish();
            if self.cut {
                // An error from the body makes hyper drop the connection mid-message.
                return Poll::Ready(Some(Err(io::Error::new(
                    io::ErrorKind::ConnectionAborted,
                    "x-mock-cut-after",
                ))));
            }
            return Poll::Ready(None);
        };
        if front.delayed && !self.delay.is_zero() && !self.slept {
            let deadline = tokio::time::Instant::now() + self.delay;
            match &mut self.sleep {
                Some(s) => s.as_mut().reset(deadline),
                None => self.sleep = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
            self.slept = true;
        }
        if self.slept {
            if let Some(s) = &mut self.sleep {
                if s.as_mut().poll(cx).is_pending() {
                    return Poll::Pending;
                }
            }
            self.slept = false;
        }
        let Some(step) = self.steps.pop_front() else {
            return Poll::Ready(None);
        };
        if self.steps.is_empty() && !self.cut {
            // The last byte is now with hyper: the stream is complete.
            self.finished = true;
            self.finish();
        }
        Poll::Ready(Some(Ok(Frame::data(step.bytes))))
    }
}

impl Body for MockBody {
    type Data = Bytes;
    type Error = io::Error;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, io::Error>>> {
        match self.get_mut() {
            MockBody::Full(b) => Poll::Ready(b.take().map(|b| Ok(Frame::data(b)))),
            MockBody::Script(s) => s.poll_step(cx),
        }
    }

    fn is_end_stream(&self) -> bool {
        matches!(self, MockBody::Full(None))
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            MockBody::Full(Some(b)) => SizeHint::with_exact(b.len() as u64),
            MockBody::Full(None) => SizeHint::with_exact(0),
            MockBody::Script(_) => SizeHint::default(),
        }
    }
}

/// Counts a stream as started when made, and as cancelled if dropped before completing.
pub(crate) struct StreamGuard {
    state: Arc<MockState>,
    done: bool,
}

impl StreamGuard {
    fn new(state: &Arc<MockState>) -> StreamGuard {
        state.streams_started.fetch_add(1, Ordering::Relaxed);
        StreamGuard {
            state: Arc::clone(state),
            done: false,
        }
    }

    fn complete(&mut self) {
        if !self.done {
            self.done = true;
            self.state.streams_completed.fetch_add(1, Ordering::Relaxed);
        }
    }
}

impl Drop for StreamGuard {
    fn drop(&mut self) {
        if !self.done {
            self.state.streams_cancelled.fetch_add(1, Ordering::Relaxed);
        }
    }
}
