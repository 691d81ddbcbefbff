//! Incremental SSE framing (WHATWG event-stream rules) over arbitrarily split chunks.
//!
//! Lines end with LF, CR or CRLF (a CRLF may be split across chunks); `event:` names the event,
//! `data:` lines are joined with `\n`, one space after the colon is stripped, lines starting
//! with `:` are comments, a blank line dispatches. The framer copies only what a sink asks
//! for: data of an event whose name is known and unwanted is skipped without buffering.

use memchr::{memchr, memchr2};

/// Upper bound on the data buffered for one event; a larger event is ignored.
pub(crate) const EVENT_CAP: usize = 64 << 20;

/// Receives the events of a stream.
pub(crate) trait SseSink {
    /// Whether the data of an event named `event` is needed. Asked when an `event:` line is
    /// seen; data lines before any `event:` line are always collected.
    fn wants(&self, event: &[u8]) -> bool;
    /// One complete event. `event` is empty when the event had no `event:` line.
    fn on_event(&mut self, event: &[u8], data: &[u8]);
}

/// The framing state of one stream.
#[derive(Debug)]
pub(crate) struct SseFramer {
    /// Bytes of the current line, not yet terminated.
    line: Vec<u8>,
    /// The current unterminated line is a data line being skipped.
    discard_line: bool,
    /// The last byte seen was a CR: a LF right after it belongs to the same line ending.
    skip_lf: bool,
    /// Field lines (not comments) were seen since the last blank line.
    fields: bool,
    event: Vec<u8>,
    data: Vec<u8>,
    /// At least one data line belongs to the current event.
    has_data: bool,
    /// The current event is skipped (unwanted name or over the cap).
    skip: bool,
    cap: usize,
}

impl Default for SseFramer {
    fn default() -> Self {
        Self::with_cap(EVENT_CAP)
    }
}

impl SseFramer {
    pub(crate) fn new() -> Self {
        Self::default()
    }

    pub(crate) fn with_cap(cap: usize) -> Self {
        SseFramer {
            line: Vec::new(),
            discard_line: false,
            skip_lf: false,
            fields: false,
            event: Vec::new(),
            data: Vec::new(),
            has_data: false,
            skip: false,
            cap,
        }
    }

    /// Whether the bytes fed so far end inside an event (an unterminated line, or field lines
    /// not yet closed by a blank line).
    pub(crate) fn mid_event(&self) -> bool {
        self.fields || self.discard_line || !self.line.is_empty()
    }

    /// Feeds one chunk, calling `sink` for every event it completes.
    pub(crate) fn feed<S: SseSink>(&mut self, mut chunk: &[u8], sink: &mut S) {
        if chunk.is_empty() {
            return;
        }
        if self.skip_lf {
            self.skip_lf = false;
            if chunk[0] == b'\n' {
                chunk = &chunk[1..];
            }
        }
        while let Some(i) = memchr2(b'\n', b'\r', chunk) {
            if self.discard_line {
                self.discard_line = false;
            } else if self.line.is_empty() {
                self.line_complete(&chunk[..i], sink);
            } else {
                self.extend_line(&chunk[..i]);
                let line = std::mem::take(&mut self.line);
                self.line_complete(&line, sink);
                self.line = line;
                self.line.clear();
            }
            let mut next = i + 1;
            if chunk[i] == b'\r' {
                if next == chunk.len() {
                    self.skip_lf = true;
                } else if chunk[next] == b'\n' {
                    next += 1;
                }
            }
            chunk = &chunk[next..];
        }
        if !chunk.is_empty() && !self.discard_line {
            self.extend_line(chunk);
            // A data line of a skipped event need not be kept: drop it as it arrives.
            if self.skip && self.line.starts_with(b"data:") {
                self.line.clear();
                self.discard_line = true;
                self.fields = true;
            }
        }
    }

    /// The stream ended: an unterminated last line counts as a line and a pending event is
    /// dispatched (leniently: the provider billed what it sent even without the blank line).
    pub(crate) fn finish<S: SseSink>(&mut self, sink: &mut S) {
        if self.discard_line {
            self.discard_line = false;
        } else if !self.line.is_empty() {
            let line = std::mem::take(&mut self.line);
            self.line_complete(&line, sink);
        }
        self.dispatch(sink);
        self.skip_lf = false;
    }

    fn extend_line(&mut self, bytes: &[u8]) {
        if self.line.len() + bytes.len() > self.cap {
            // An absurdly long line: forget it and ignore the event it belongs to.
            self.line.clear();
            self.discard_line = true;
            self.skip = true;
            self.fields = true;
            self.data = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }

    fn line_complete<S: SseSink>(&mut self, line: &[u8], sink: &mut S) {
        if line.is_empty() {
            self.dispatch(sink);
            return;
        }
        if line[0] == b':' {
            return;
        }
        self.fields = true;
        let (name, value) = match memchr(b':', line) {
            Some(p) => {
                let v = &line[p + 1..];
                (&line[..p], v.strip_prefix(b" ").unwrap_or(v))
            }
            None => (line, &[][..]),
        };
        match name {
            b"data" => {
                if !self.skip {
                    if self.data.len() + value.len() + 1 > self.cap {
                        self.skip = true;
                        self.data = Vec::new();
                    } else {
                        if self.has_data {
                            self.data.push(b'\n');
                        }
                        self.data.extend_from_slice(value);
                    }
                }
                self.has_data = true;
            }
            b"event" => {
                self.event.clear();
                self.event.extend_from_slice(value);
                if !sink.wants(value) {
                    self.skip = true;
                    self.data.clear();
                }
            }
            _ => {}
        }
    }

    fn dispatch<S: SseSink>(&mut self, sink: &mut S) {
        if self.has_data && !self.skip {
            sink.on_event(&self.event, &self.data);
        }
        self.event.clear();
        self.data.clear();
        if self.data.capacity() > 1 << 20 {
            self.data = Vec::new();
        }
        self.has_data = false;
        self.skip = false;
        self.fields = false;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[derive(Default)]
    struct Collect {
        events: Vec<(String, String)>,
        unwanted: Vec<&'static str>,
    }

    impl SseSink for Collect {
        fn wants(&self, event: &[u8]) -> bool {
            !self.unwanted.iter().any(|u| u.as_bytes() == event)
        }
        fn on_event(&mut self, event: &[u8], data: &[u8]) {
            self.events.push((
                String::from_utf8_lossy(event).into_owned(),
                String::from_utf8_lossy(data).into_owned(),
            ));
        }
    }

    fn run(chunks: &[&[u8]], unwanted: Vec<&'static str>) -> (Vec<(String, String)>, bool) {
        let mut f = SseFramer::new();
        let mut c = Collect {
            unwanted,
            ..Collect::default()
        };
        for ch in chunks {
            f.feed(ch, &mut c);
        }
        let mid = f.mid_event();
        f.finish(&mut c);
        (c.events, mid)
    }

    fn ev(e: &str, d: &str) -> (String, String) {
        (e.to_owned(), d.to_owned())
    }

    #[test]
    fn frames_all_line_endings() {
        let stream =
            b"event: a\r\ndata: 1\r\n\r\ndata:2\rdata:  3\r\r: comment\n\nevent:b\ndata\n\n";
        let (events, mid) = run(&[stream], vec![]);
        assert_eq!(
            events,
            vec![ev("a", "1"), ev("", "2\n 3"), ev("b", "")],
            "comment-only block dispatches nothing"
        );
        assert!(!mid);
        // Split between CR and LF of every CRLF: the LF must not become a blank line.
        let chunks: Vec<&[u8]> = stream.iter().map(std::slice::from_ref).collect();
        assert_eq!(run(&chunks, vec![]).0, events);
    }

    #[test]
    fn skips_unwanted_and_tracks_mid_event() {
        let (events, _) = run(
            &[b"event: big\ndata: xxxx", b"xxxx\n\nevent: ok\ndata: y\n\n"],
            vec!["big"],
        );
        assert_eq!(events, vec![ev("ok", "y")]);
        let mut f = SseFramer::new();
        let mut c = Collect::default();
        f.feed(b"data: 1\n\n", &mut c);
        assert!(!f.mid_event());
        f.feed(b": ping\n", &mut c);
        assert!(!f.mid_event());
        f.feed(b"data: {\"a\"", &mut c);
        assert!(f.mid_event());
        f.feed(b"}\r", &mut c);
        assert!(f.mid_event());
        f.feed(b"\n", &mut c);
        assert!(f.mid_event());
        f.feed(b"\r\n", &mut c);
        assert!(!f.mid_event());
        assert_eq!(c.events, vec![ev("", "1"), ev("", "{\"a\"}")]);
    }

    proptest::proptest! {
        #[test]
        fn events_ignore_chunk_boundaries(
            ending in 0u8..3,
            cuts in proptest::collection::vec(proptest::prelude::any::<proptest::sample::Index>(), 0..16),
        ) {
            let lf = "event: a\ndata: h\u{e9}llo\ndata: \u{2603} \u{65e5}\u{672c}\n\n: c\n\ndata:x\nid: 1\n\nevent: big\ndata: skipped\n\nevent: b\ndata\n\n";
            let s = match ending {
                0 => lf.to_owned(),
                1 => lf.replace('\n', "\r\n"),
                _ => lf.replace('\n', "\r"),
            };
            let bytes = s.as_bytes();
            let mut at: Vec<usize> = cuts.iter().map(|i| i.index(bytes.len() + 1)).collect();
            at.sort_unstable();
            at.dedup();
            let mut chunks = Vec::new();
            let mut prev = 0;
            for a in at {
                chunks.push(&bytes[prev..a]);
                prev = a;
            }
            chunks.push(&bytes[prev..]);
            let (events, mid) = run(&chunks, vec!["big"]);
            proptest::prop_assert!(!mid);
            proptest::prop_assert_eq!(
                events,
                vec![ev("a", "h\u{e9}llo\n\u{2603} \u{65e5}\u{672c}"), ev("", "x"), ev("b", "")]
            );
        }
    }

    #[test]
    fn finish_dispatches_a_pending_event_and_caps_hold() {
        assert_eq!(run(&[b"data: [DONE]"], vec![]).0, vec![ev("", "[DONE]")]);
        let mut f = SseFramer::with_cap(8);
        let mut c = Collect::default();
        f.feed(b"data: 0123456789\n\ndata: ok\n\n", &mut c);
        f.feed(b"data: 01234", &mut c);
        f.feed(b"56789\n\ndata: ok2\n\n", &mut c);
        assert_eq!(c.events, vec![ev("", "ok"), ev("", "ok2")]);
    }
}
