//! `UsageChunkFilter`: removes the usage-only chunk from Chat Completions streams where the
//! gateway injected `stream_options.include_usage`, and nothing else.
//!
//! Complete events are forwarded as soon as their closing blank line arrives; only the bytes
//! of the event in progress are held back. An event is dropped, with its exact bytes
//! (including its closing blank line, whichever line endings it uses), when its data is a
//! chunk with a non-null `usage` and an empty (or absent) `choices`. A chunk that carries
//! usage beside choices is forwarded unchanged.

use std::borrow::Cow;

use bytes::Bytes;
use memchr::memchr2;
use serde::de::IgnoredAny;
use serde::Deserialize;

use crate::json::{parse, pattern, Len};

pattern!(USAGE, "\"usage\"");

/// See the module documentation.
#[derive(Debug, Default)]
pub struct UsageChunkFilter {
    /// Bytes of the event in progress (everything before it was forwarded or dropped).
    pending: Vec<u8>,
    /// Offset in `pending` up to which lines were scanned.
    scan: usize,
    /// Offset in `pending` where the current line starts.
    line_start: usize,
    /// A line of the current event ended with a CR as the last byte seen: a LF next belongs to
    /// that line ending.
    skip_lf: bool,
    /// The last event ended with a CR as the last byte seen: a LF next belongs to it and
    /// shares its fate (`Some(true)` forwarded, `Some(false)` dropped).
    lf_fate: Option<bool>,
}

impl UsageChunkFilter {
    pub fn new() -> Self {
        Self::default()
    }

    /// Bytes to send now (may be empty).
    pub fn push(&mut self, chunk: &[u8]) -> Bytes {
        if chunk.is_empty() {
            return Bytes::new();
        }
        let mut out = Vec::new();
        let mut chunk = chunk;
        if let Some(keep) = self.lf_fate.take() {
            if chunk[0] == b'\n' {
                if keep {
                    out.push(b'\n');
                }
                chunk = &chunk[1..];
            }
        }
        if self.pending.is_empty() {
            // At an event boundary: scan the chunk in place, keep only its unfinished tail.
            let consumed = self.process(chunk, &mut out);
            self.pending.extend_from_slice(&chunk[consumed..]);
        } else {
            let mut buf = std::mem::take(&mut self.pending);
            buf.extend_from_slice(chunk);
            let consumed = self.process(&buf, &mut out);
            buf.drain(..consumed);
            self.pending = buf;
        }
        Bytes::from(out)
    }

    /// Any trailing partial bytes (the unfinished last event, unless it is itself a complete
    /// usage-only chunk that lacks only its blank line).
    pub fn finish(&mut self) -> Bytes {
        let pending = std::mem::take(&mut self.pending);
        *self = Self::default();
        if pending.is_empty() || is_usage_only(&pending) {
            Bytes::new()
        } else {
            Bytes::from(pending)
        }
    }

    /// Scans `buf` (whose first `self.scan` bytes were scanned before), appends the bytes of
    /// the events it completes to `out` unless dropped, and returns how many bytes of `buf`
    /// were dealt with.
    fn process(&mut self, buf: &[u8], out: &mut Vec<u8>) -> usize {
        let mut pos = self.scan;
        let mut event_start = 0;
        let mut keep_from = 0;
        loop {
            if self.skip_lf {
                if pos == buf.len() {
                    break;
                }
                self.skip_lf = false;
                if buf[pos] == b'\n' {
                    pos += 1;
                    self.line_start = pos;
                }
            }
            let Some(off) = memchr2(b'\n', b'\r', &buf[pos..]) else {
                pos = buf.len();
                break;
            };
            let t = pos + off;
            let mut end = t + 1;
            let mut cr_last = false;
            if buf[t] == b'\r' {
                if end == buf.len() {
                    cr_last = true;
                } else if buf[end] == b'\n' {
                    end += 1;
                }
            }
            if t == self.line_start {
                // Blank line: the event [event_start, end) is complete.
                let keep = !is_usage_only(&buf[event_start..end]);
                if !keep {
                    out.extend_from_slice(&buf[keep_from..event_start]);
                    keep_from = end;
                }
                if cr_last {
                    self.lf_fate = Some(keep);
                }
                event_start = end;
            } else if cr_last {
                self.skip_lf = true;
            }
            pos = end;
            self.line_start = end;
        }
        out.extend_from_slice(&buf[keep_from..event_start]);
        self.scan = pos - event_start;
        self.line_start -= event_start;
        event_start
    }
}

/// The data of one raw event (its `data:` lines joined with `\n`).
fn event_data(event: &[u8]) -> Cow<'_, [u8]> {
    let mut found: Option<Cow<'_, [u8]>> = None;
    let mut rest = event;
    while !rest.is_empty() {
        let (line, next) = match memchr2(b'\n', b'\r', rest) {
            Some(i) => (&rest[..i], &rest[i + 1..]),
            None => (rest, &[][..]),
        };
        rest = next;
        let Some(value) = line.strip_prefix(b"data") else {
            continue;
        };
        let value = match value {
            [] => value,
            [b':', b' ', v @ ..] | [b':', v @ ..] => v,
            _ => continue,
        };
        found = Some(match found {
            None => Cow::Borrowed(value),
            Some(prev) => {
                let mut joined = prev.into_owned();
                joined.push(b'\n');
                joined.extend_from_slice(value);
                Cow::Owned(joined)
            }
        });
    }
    found.unwrap_or(Cow::Borrowed(&[]))
}

#[derive(Deserialize)]
struct UsageProbe {
    #[serde(default)]
    choices: Len,
    #[serde(default)]
    usage: Option<IgnoredAny>,
}

/// Whether a raw event is the usage-only chunk: non-null `usage`, empty or absent `choices`.
fn is_usage_only(event: &[u8]) -> bool {
    let data = event_data(event);
    if !USAGE.key_non_null(&data) {
        return false;
    }
    match parse::<UsageProbe>(&data) {
        Some(p) => p.usage.is_some() && p.choices.0.unwrap_or(0) == 0,
        None => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const CHUNK: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{\"content\":\"h\u{e9}\"},\"finish_reason\":null}],\"usage\":null}\n\n";
    const FINISH_WITH_USAGE: &str = "data: {\"id\":\"c\",\"choices\":[{\"index\":0,\"delta\":{},\"finish_reason\":\"stop\"}],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2}}\n\n";
    const USAGE_ONLY: &str = "data: {\"id\":\"c\",\"choices\":[],\"usage\":{\"prompt_tokens\":9,\"completion_tokens\":2,\"total_tokens\":11}}\n\n";
    const DONE: &str = "data: [DONE]\n\n";

    fn filter_chunks(chunks: &[&[u8]]) -> Vec<u8> {
        let mut f = UsageChunkFilter::new();
        let mut out = Vec::new();
        for c in chunks {
            out.extend_from_slice(&f.push(c));
        }
        out.extend_from_slice(&f.finish());
        out
    }

    #[test]
    fn drops_only_the_usage_only_chunk() {
        let input = format!("{CHUNK}: keep-alive\n\n{USAGE_ONLY}{DONE}");
        let expected = format!("{CHUNK}: keep-alive\n\n{DONE}");
        assert_eq!(filter_chunks(&[input.as_bytes()]), expected.as_bytes());
        let bytes: Vec<&[u8]> = input.as_bytes().iter().map(std::slice::from_ref).collect();
        assert_eq!(filter_chunks(&bytes), expected.as_bytes());
        for (i, o) in [("\r\n", "\r\n"), ("\r", "\r")] {
            let input = input.replace('\n', i);
            let expected = expected.replace('\n', o);
            let bytes: Vec<&[u8]> = input.as_bytes().iter().map(std::slice::from_ref).collect();
            assert_eq!(filter_chunks(&bytes), expected.as_bytes());
            assert_eq!(filter_chunks(&[input.as_bytes()]), expected.as_bytes());
        }
    }

    #[test]
    fn keeps_usage_beside_choices_and_forwards_events_at_once() {
        let input = format!("{CHUNK}{FINISH_WITH_USAGE}{DONE}");
        assert_eq!(filter_chunks(&[input.as_bytes()]), input.as_bytes());
        let mut f = UsageChunkFilter::new();
        assert_eq!(&f.push(CHUNK.as_bytes())[..], CHUNK.as_bytes());
        assert!(f.push(&USAGE_ONLY.as_bytes()[..30]).is_empty());
        assert!(f.push(&USAGE_ONLY.as_bytes()[30..]).is_empty());
        assert_eq!(&f.push(b"data: [DO")[..], b"");
        assert_eq!(&f.finish()[..], b"data: [DO");
    }

    #[test]
    fn unterminated_usage_only_tail_is_dropped() {
        let input = format!("{CHUNK}{}", USAGE_ONLY.trim_end());
        assert_eq!(filter_chunks(&[input.as_bytes()]), CHUNK.as_bytes());
        let no_choices = "data: {\"usage\":{\"prompt_tokens\":1}}\n\n";
        assert_eq!(filter_chunks(&[no_choices.as_bytes()]), b"");
        let multi = "data: {\"choices\":[],\ndata: \"usage\":{\"prompt_tokens\":1}}\n\n";
        assert_eq!(filter_chunks(&[multi.as_bytes()]), b"");
    }
}
