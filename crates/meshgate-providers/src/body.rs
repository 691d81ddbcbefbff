//! Accumulation of non-streamed bodies (parsed once at `finish`) and of JSONL lines.

use memchr::memchr2;
use meshgate_types::Usage;

use crate::{Meter, Metered};

/// Bodies larger than this are not accumulated: their usage is reported unknown.
pub const BODY_CAP: usize = 64 << 20;

/// A body accumulated up to a cap.
#[derive(Debug)]
pub(crate) struct BodyBuf {
    buf: Vec<u8>,
    overflow: bool,
    cap: usize,
}

impl Default for BodyBuf {
    fn default() -> Self {
        Self::with_cap(BODY_CAP)
    }
}

impl BodyBuf {
    pub(crate) fn with_cap(cap: usize) -> Self {
        BodyBuf {
            buf: Vec::new(),
            overflow: false,
            cap,
        }
    }

    pub(crate) fn push(&mut self, chunk: &[u8]) {
        if self.overflow {
            return;
        }
        if self.buf.len() + chunk.len() > self.cap {
            self.overflow = true;
            self.buf = Vec::new();
        } else {
            self.buf.extend_from_slice(chunk);
        }
    }

    /// The whole body, or `None` when it exceeded the cap.
    pub(crate) fn take(&mut self) -> Option<Vec<u8>> {
        if self.overflow {
            None
        } else {
            Some(std::mem::take(&mut self.buf))
        }
    }
}

/// Splits a byte stream into lines (LF, CRLF or CR) across arbitrary chunk boundaries.
#[derive(Debug)]
pub(crate) struct LineSplitter {
    line: Vec<u8>,
    skip_lf: bool,
    overflow: bool,
    cap: usize,
}

impl Default for LineSplitter {
    fn default() -> Self {
        LineSplitter {
            line: Vec::new(),
            skip_lf: false,
            overflow: false,
            cap: BODY_CAP,
        }
    }
}

impl LineSplitter {
    /// Calls `f` with every complete line (without its terminator). A line longer than the cap
    /// is reported as `None`.
    pub(crate) fn feed(&mut self, mut chunk: &[u8], f: &mut impl FnMut(Option<&[u8]>)) {
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
            if self.overflow {
                self.overflow = false;
                f(None);
            } else if self.line.is_empty() {
                f(Some(&chunk[..i]));
            } else {
                self.extend(&chunk[..i]);
                if self.overflow {
                    self.overflow = false;
                    f(None);
                } else {
                    f(Some(&self.line));
                }
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
        if !chunk.is_empty() {
            self.extend(chunk);
        }
    }

    /// The stream ended: an unterminated last line is reported too.
    pub(crate) fn finish(&mut self, f: &mut impl FnMut(Option<&[u8]>)) {
        if self.overflow {
            self.overflow = false;
            f(None);
        } else if !self.line.is_empty() {
            f(Some(&self.line));
        }
        self.line = Vec::new();
        self.skip_lf = false;
    }

    fn extend(&mut self, bytes: &[u8]) {
        if self.overflow {
            return;
        }
        if self.line.len() + bytes.len() > self.cap {
            self.overflow = true;
            self.line = Vec::new();
        } else {
            self.line.extend_from_slice(bytes);
        }
    }
}

/// Parses one JSONL line of batch results: `None` when it is not valid, `Some(None)` for a
/// line that bills nothing, `Some(Some((model, usage)))` for a succeeded request.
pub(crate) type LineParse = fn(&[u8]) -> Option<Option<(String, Usage)>>;

/// A meter over JSONL batch results, line by line, whatever the chunking.
pub(crate) struct JsonlMeter {
    lines: LineSplitter,
    parse: LineParse,
    items: Vec<(String, Usage)>,
    bad_lines: u64,
}

impl JsonlMeter {
    pub(crate) fn new(parse: LineParse) -> Self {
        JsonlMeter {
            lines: LineSplitter::default(),
            parse,
            items: Vec::new(),
            bad_lines: 0,
        }
    }
}

fn take_line(
    parse: LineParse,
    items: &mut Vec<(String, Usage)>,
    bad: &mut u64,
    line: Option<&[u8]>,
) {
    let Some(line) = line else {
        *bad += 1;
        return;
    };
    if line.iter().all(u8::is_ascii_whitespace) {
        return;
    }
    match parse(line) {
        Some(Some(item)) => items.push(item),
        Some(None) => {}
        None => *bad += 1,
    }
}

impl Meter for JsonlMeter {
    fn observe(&mut self, chunk: &[u8]) {
        let JsonlMeter {
            lines,
            parse,
            items,
            bad_lines,
        } = self;
        lines.feed(chunk, &mut |l| take_line(*parse, items, bad_lines, l));
    }

    /// `complete` when every line parsed (a cut last line does not).
    fn finish(&mut self) -> Metered {
        let JsonlMeter {
            lines,
            parse,
            items,
            bad_lines,
        } = self;
        lines.finish(&mut |l| take_line(*parse, items, bad_lines, l));
        Metered {
            complete: self.bad_lines == 0,
            batch_items: self.items.clone(),
            ..Metered::default()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn body_cap() {
        let mut b = BodyBuf::with_cap(4);
        b.push(b"ab");
        b.push(b"cd");
        assert_eq!(b.take().as_deref(), Some(&b"abcd"[..]));
        let mut b = BodyBuf::with_cap(4);
        b.push(b"abc");
        b.push(b"de");
        b.push(b"");
        assert_eq!(b.take(), None);
    }

    #[test]
    fn lines_split_anywhere() {
        let text = b"a1\r\nb2\rc3\n\nd4";
        let mut whole = Vec::new();
        let mut s = LineSplitter::default();
        let mut f = |l: Option<&[u8]>| whole.push(l.map(<[u8]>::to_vec));
        s.feed(text, &mut f);
        s.finish(&mut f);
        let mut split = Vec::new();
        let mut s = LineSplitter::default();
        let mut f = |l: Option<&[u8]>| split.push(l.map(<[u8]>::to_vec));
        for b in text {
            s.feed(std::slice::from_ref(b), &mut f);
        }
        s.finish(&mut f);
        assert_eq!(whole, split);
        assert_eq!(whole.len(), 5);
    }
}
