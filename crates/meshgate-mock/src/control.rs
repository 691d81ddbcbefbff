//! The `x-mock-*` request headers that choose usage numbers, stream shape, delays and failures.

use std::time::Duration;

use http::HeaderMap;

/// Terminal status forced on a Responses API call.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum FinalStatus {
    Incomplete,
    Failed,
}

/// Behaviour chosen by one request's `x-mock-*` headers.
#[derive(Clone, Debug)]
pub(crate) struct Control {
    pub input_tokens: Option<u64>,
    pub output_tokens: Option<u64>,
    pub cached_tokens: u64,
    pub cache_write_tokens: u64,
    pub cache_write_1h_tokens: u64,
    pub reasoning_tokens: u64,
    pub service_tier: Option<String>,
    pub chunks: u64,
    pub chunk_delay: Duration,
    pub first_byte_delay: Duration,
    pub cut_after: Option<u64>,
    pub error: Option<u16>,
    pub stream_error: bool,
    pub response_status: Option<FinalStatus>,
    pub usage_with_choices: bool,
    pub restate_input: bool,
    pub tool_call: bool,
    pub audio_seconds: Option<u64>,
}

/// Upper bound on `x-mock-chunks`, so one header cannot exhaust memory.
const MAX_CHUNKS: u64 = 100_000;

impl Default for Control {
    fn default() -> Self {
        Control {
            input_tokens: None,
            output_tokens: None,
            cached_tokens: 0,
            cache_write_tokens: 0,
            cache_write_1h_tokens: 0,
            reasoning_tokens: 0,
            service_tier: None,
            chunks: 4,
            chunk_delay: Duration::ZERO,
            first_byte_delay: Duration::ZERO,
            cut_after: None,
            error: None,
            stream_error: false,
            response_status: None,
            usage_with_choices: false,
            restate_input: false,
            tool_call: false,
            audio_seconds: None,
        }
    }
}

fn num(name: &str, v: &str) -> Result<u64, String> {
    v.trim()
        .parse::<u64>()
        .map_err(|_| format!("x-mock-{name}: expected a non-negative integer, got {v:?}"))
}

fn flag(v: &str) -> bool {
    matches!(v.trim(), "1" | "true" | "yes")
}

impl Control {
    /// Reads every `x-mock-*` header; an unknown name or a bad value is an error (typos must not pass silently).
    pub fn parse(headers: &HeaderMap) -> Result<Control, String> {
        let mut c = Control::default();
        for (name, value) in headers {
            let Some(key) = name.as_str().strip_prefix("x-mock-") else {
                continue;
            };
            let v = value
                .to_str()
                .map_err(|_| format!("x-mock-{key}: value is not visible ASCII"))?;
            match key {
                "input-tokens" => c.input_tokens = Some(num(key, v)?),
                "output-tokens" => c.output_tokens = Some(num(key, v)?),
                "cached-tokens" => c.cached_tokens = num(key, v)?,
                "cache-write-tokens" => c.cache_write_tokens = num(key, v)?,
                "cache-write-1h-tokens" => c.cache_write_1h_tokens = num(key, v)?,
                "reasoning-tokens" => c.reasoning_tokens = num(key, v)?,
                "service-tier" => c.service_tier = Some(v.trim().to_owned()),
                "chunks" => c.chunks = num(key, v)?.min(MAX_CHUNKS),
                "chunk-delay-ms" => c.chunk_delay = Duration::from_millis(num(key, v)?),
                "first-byte-delay-ms" => c.first_byte_delay = Duration::from_millis(num(key, v)?),
                "cut-after" => c.cut_after = Some(num(key, v)?),
                "error" => {
                    let s = num(key, v)?;
                    if !(400..=599).contains(&s) {
                        return Err(format!("x-mock-error: {s} is not a 4xx/5xx status"));
                    }
                    c.error = Some(s as u16);
                }
                "stream-error" => c.stream_error = flag(v),
                "response-status" => {
                    c.response_status = match v.trim() {
                        "incomplete" => Some(FinalStatus::Incomplete),
                        "failed" => Some(FinalStatus::Failed),
                        "completed" | "" => None,
                        other => {
                            return Err(format!(
                            "x-mock-response-status: expected incomplete or failed, got {other:?}"
                        ))
                        }
                    }
                }
                "usage-with-choices" => c.usage_with_choices = flag(v),
                "restate-input" => c.restate_input = flag(v),
                "tool-call" => c.tool_call = flag(v),
                "audio-seconds" => c.audio_seconds = Some(num(key, v)?),
                other => return Err(format!("unknown control header x-mock-{other}")),
            }
        }
        Ok(c)
    }

    /// Reported input tokens: the header, else `ceil(body_bytes / 4)`.
    pub fn input(&self, body_len: usize) -> u64 {
        self.input_tokens
            .unwrap_or_else(|| (body_len as u64).div_ceil(4))
    }

    /// Reported output tokens (reasoning included): the header, else 2 per chunk.
    pub fn output(&self) -> u64 {
        self.output_tokens.unwrap_or(2 * self.chunks)
    }

    /// Content deltas a stream sends before a cut (at most `chunks`).
    pub fn deltas_before_cut(&self) -> u64 {
        self.cut_after.map_or(self.chunks, |n| n.min(self.chunks))
    }

    /// The token numbers every usage object is built from.
    pub fn tokens(&self, body_len: usize) -> Tokens {
        Tokens {
            input: self.input(body_len),
            output: self.output(),
            cached: self.cached_tokens,
            write_5m: self.cache_write_tokens,
            write_1h: self.cache_write_1h_tokens,
            reasoning: self.reasoning_tokens,
        }
    }
}

/// Token numbers of one call, before rendering in a provider's usage shape.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Tokens {
    pub input: u64,
    pub output: u64,
    pub cached: u64,
    pub write_5m: u64,
    pub write_1h: u64,
    pub reasoning: u64,
}

/// Text of content delta `i` (0-based).
pub(crate) fn delta_text(i: u64) -> String {
    format!("tok{i} ")
}

/// The full text of `chunks` deltas, as a non-stream response carries it.
pub(crate) fn full_text(chunks: u64) -> String {
    let mut s = String::with_capacity(chunks as usize * 6);
    for i in 0..chunks {
        s.push_str("tok");
        s.push_str(&i.to_string());
        s.push(' ');
    }
    s
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_and_overrides() {
        let mut h = HeaderMap::new();
        let c = Control::parse(&h).unwrap();
        assert_eq!(c.input(9), 3);
        assert_eq!(c.output(), 8);
        h.insert("x-mock-chunks", "3".parse().unwrap());
        h.insert("x-mock-cut-after", "7".parse().unwrap());
        let c = Control::parse(&h).unwrap();
        assert_eq!(c.output(), 6);
        assert_eq!(c.deltas_before_cut(), 3);
        h.insert("x-mock-bogus", "1".parse().unwrap());
        assert!(Control::parse(&h).is_err());
    }

    #[test]
    fn text_matches_deltas() {
        let joined: String = (0..3).map(delta_text).collect();
        assert_eq!(joined, full_text(3));
    }
}
