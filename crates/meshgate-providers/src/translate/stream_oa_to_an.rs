//! Stream translation, OA `chat.completion.chunk` upstream -> AN Messages events
//! (translation.md §7), chunk by chunk over the crate's incremental SSE framer.
//!
//! AN content blocks are sequential: one is open at a time (text, or one OA tool call). OA
//! tool-call fragments that arrive before their id are held until it comes; a fragment for a
//! tool whose block is already closed cannot be placed and is announced as dropped (OA sends
//! tool calls one after the other, so this only guards against odd upstreams). The closing
//! `message_delta` (stop reason, upstream usage mapped per §5) and `message_stop` are written
//! at `[DONE]`, or when the stream ends after both a finish reason and usage were seen.

use serde::Deserialize;

use super::error::anthropic_error_json;
use super::ids::{sanitize_tool_id, stop_reason_for};
use super::stream_an_to_oa::js;
use super::usage::{OaUsage, OaWire};
use super::value::{obj, Json};
use super::{Dropped, StreamTranslator};
use crate::cut::stream_cut_error;
use crate::json::{Count, Str};
use crate::sse::{SseFramer, SseSink};
use meshgate_types::{Endpoint, Surface};

/// OA chat chunks -> AN SSE events.
pub fn openai_stream_to_anthropic(client_model: &str) -> Box<dyn StreamTranslator> {
    Box::new(OpenAiToAnthropicStream::new(client_model))
}

/// The translator behind [`openai_stream_to_anthropic`].
pub struct OpenAiToAnthropicStream {
    framer: SseFramer,
    state: State,
}

impl OpenAiToAnthropicStream {
    pub fn new(client_model: &str) -> Self {
        OpenAiToAnthropicStream {
            framer: SseFramer::new(),
            state: State {
                model: client_model.to_owned(),
                started: false,
                next_index: 0,
                open: Open::None,
                tools: Vec::new(),
                finish: None,
                refused: false,
                usage: None,
                out_bytes: 0,
                terminal: false,
                dropped: Dropped::default(),
                out: Vec::new(),
            },
        }
    }
}

impl StreamTranslator for OpenAiToAnthropicStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.framer.feed(chunk, &mut self.state);
        out.append(&mut self.state.out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.framer.finish(&mut self.state);
        let st = &mut self.state;
        if !st.terminal {
            if st.finish.is_some() && st.usage.is_some() {
                // Finished and reported usage, just no `[DONE]`: a complete answer.
                st.message_stop();
            } else {
                st.terminal = true;
                st.out.extend_from_slice(&stream_cut_error(
                    Surface::Anthropic,
                    Endpoint::Messages,
                    false,
                    "the upstream stream ended before its final chunk",
                ));
            }
        }
        out.append(&mut st.out);
    }

    fn dropped(&self) -> &[String] {
        self.state.dropped.list()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Open {
    None,
    Text(u64),
    /// (AN block index, OA tool index)
    Tool(u64, u64),
}

/// One OA tool call (by OA index).
#[derive(Debug)]
struct Tool {
    oa_index: u64,
    started: bool,
    closed: bool,
    id: Option<String>,
    name: Option<String>,
    /// Argument fragments received before the block could start.
    pending: String,
}

struct State {
    model: String,
    started: bool,
    next_index: u64,
    open: Open,
    tools: Vec<Tool>,
    finish: Option<String>,
    refused: bool,
    usage: Option<OaUsage>,
    /// Text and argument bytes relayed: the output estimate when no usage arrives.
    out_bytes: u64,
    terminal: bool,
    dropped: Dropped,
    out: Vec<u8>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Chunk<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    choices: Option<Vec<Choice<'a>>>,
    usage: Option<OaWire>,
    error: Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Choice<'a> {
    index: Count,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    #[serde(borrow)]
    finish_reason: Str<'a>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Delta<'a> {
    #[serde(borrow)]
    content: Str<'a>,
    #[serde(borrow)]
    refusal: Str<'a>,
    #[serde(borrow)]
    tool_calls: Option<Vec<ToolDelta<'a>>>,
    #[serde(borrow)]
    function_call: Option<FnDelta<'a>>,
    #[serde(borrow)]
    reasoning_content: Str<'a>,
    audio: Json,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ToolDelta<'a> {
    index: Count,
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    function: Option<FnDelta<'a>>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct FnDelta<'a> {
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    arguments: Str<'a>,
}

impl State {
    fn event(&mut self, kind: &str, data: &str) {
        self.out.extend_from_slice(b"event: ");
        self.out.extend_from_slice(kind.as_bytes());
        self.out.extend_from_slice(b"\ndata: ");
        self.out.extend_from_slice(data.as_bytes());
        self.out.extend_from_slice(b"\n\n");
    }

    fn start(&mut self, chunk_id: Option<&str>) {
        if self.started {
            return;
        }
        self.started = true;
        let message = obj([
            (
                "id",
                format!("msg_{}", chunk_id.unwrap_or("meshgate")).into(),
            ),
            ("type", "message".into()),
            ("role", "assistant".into()),
            ("model", self.model.as_str().into()),
            ("content", Json::Array(Vec::new())),
            ("stop_reason", Json::Null),
            ("stop_sequence", Json::Null),
            (
                "usage",
                obj([
                    ("input_tokens", 0u64.into()),
                    ("output_tokens", 0u64.into()),
                ]),
            ),
        ]);
        let data = obj([("type", "message_start".into()), ("message", message)]);
        self.event("message_start", &data.to_text());
    }

    fn close(&mut self) {
        let index = match self.open {
            Open::None => return,
            Open::Text(i) => i,
            Open::Tool(i, k) => {
                if let Some(t) = self.tools.iter_mut().find(|t| t.oa_index == k) {
                    t.closed = true;
                }
                i
            }
        };
        self.open = Open::None;
        self.event(
            "content_block_stop",
            &format!("{{\"type\":\"content_block_stop\",\"index\":{index}}}"),
        );
    }

    fn text(&mut self, t: &str) {
        let index = match self.open {
            Open::Text(i) => i,
            _ => {
                self.close();
                let i = self.next_index;
                self.next_index += 1;
                self.open = Open::Text(i);
                self.event(
                    "content_block_start",
                    &format!("{{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"text\",\"text\":\"\"}}}}"),
                );
                i
            }
        };
        self.out_bytes += t.len() as u64;
        self.event(
            "content_block_delta",
            &format!(
                "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"text_delta\",\"text\":{}}}}}",
                js(t)
            ),
        );
    }

    fn args(&mut self, index: u64, fragment: &str) {
        if fragment.is_empty() {
            return;
        }
        self.out_bytes += fragment.len() as u64;
        self.event(
            "content_block_delta",
            &format!(
                "{{\"type\":\"content_block_delta\",\"index\":{index},\"delta\":{{\"type\":\"input_json_delta\",\"partial_json\":{}}}}}",
                js(fragment)
            ),
        );
    }

    /// Opens the block of OA tool `k` (closing any open block) and flushes held fragments.
    fn start_tool(&mut self, k: u64) {
        self.close();
        let i = self.next_index;
        self.next_index += 1;
        let Some(t) = self.tools.iter_mut().find(|t| t.oa_index == k) else {
            return;
        };
        t.started = true;
        let id = match &t.id {
            Some(id) => sanitize_tool_id(id).into_owned(),
            None => format!("toolu_mg_{k}"),
        };
        let name = t.name.clone().unwrap_or_default();
        let pending = std::mem::take(&mut t.pending);
        self.open = Open::Tool(i, k);
        self.event(
            "content_block_start",
            &format!(
                "{{\"type\":\"content_block_start\",\"index\":{i},\"content_block\":{{\"type\":\"tool_use\",\"id\":{},\"name\":{},\"input\":{{}}}}}}",
                js(&id),
                js(&name)
            ),
        );
        self.args(i, &pending);
    }

    fn tool_fragment(&mut self, k: u64, id: Option<&str>, f: Option<&FnDelta<'_>>) {
        let name = f.and_then(|f| f.name.get()).filter(|n| !n.is_empty());
        let frag = f.and_then(|f| f.arguments.get()).unwrap_or("");
        let pos = match self.tools.iter().position(|t| t.oa_index == k) {
            Some(p) => p,
            None => {
                self.tools.push(Tool {
                    oa_index: k,
                    started: false,
                    closed: false,
                    id: None,
                    name: None,
                    pending: String::new(),
                });
                self.tools.len() - 1
            }
        };
        let t = &mut self.tools[pos];
        if t.started {
            if t.closed {
                if !frag.is_empty() {
                    self.dropped.add("tool_calls[].function.arguments");
                }
            } else if let Open::Tool(i, _) = self.open {
                self.args(i, frag);
            }
            return;
        }
        if let Some(id) = id.filter(|s| !s.is_empty()) {
            t.id = Some(id.to_owned());
        }
        if let Some(n) = name {
            t.name = Some(n.to_owned());
        }
        t.pending.push_str(frag);
        // A block can start once the call has an id and a name (some upstreams send no id).
        if t.name.is_some() {
            self.start_tool(k);
        }
    }

    fn message_stop(&mut self) {
        self.start(None);
        self.close();
        // Calls that never got a name still go out rather than vanish.
        let unstarted: Vec<u64> = self
            .tools
            .iter()
            .filter(|t| !t.started)
            .map(|t| t.oa_index)
            .collect();
        for k in unstarted {
            self.start_tool(k);
            self.close();
        }
        let stop = if self.refused {
            "refusal"
        } else {
            stop_reason_for(self.finish.as_deref())
        };
        let usage = match self.usage {
            Some(u) => u.to_anthropic(),
            // No usage chunk: estimate output (~4 bytes a token); input is unknown.
            None => obj([("output_tokens", self.out_bytes.div_ceil(4).into())]),
        };
        let data = obj([
            ("type", "message_delta".into()),
            (
                "delta",
                obj([("stop_reason", stop.into()), ("stop_sequence", Json::Null)]),
            ),
            ("usage", usage),
        ]);
        self.event("message_delta", &data.to_text());
        self.event("message_stop", "{\"type\":\"message_stop\"}");
        self.terminal = true;
    }

    fn on_chunk(&mut self, c: Chunk<'_>) {
        if !c.error.is_null() {
            let data = anthropic_error_json(&c.error);
            self.event("error", &data.to_text());
            self.terminal = true;
            return;
        }
        self.start(c.id.get());
        if let Some(u) = &c.usage {
            self.usage = Some(OaUsage::from_wire(u));
        }
        let Some(choices) = c.choices else {
            return;
        };
        // n > 1 was refused on the way in: only choice 0 is relayed.
        for ch in choices.iter().filter(|ch| ch.index.0.unwrap_or(0) == 0) {
            if let Some(d) = &ch.delta {
                if let Some(t) = d.content.get().filter(|t| !t.is_empty()) {
                    self.text(t);
                }
                if let Some(t) = d.refusal.get().filter(|t| !t.is_empty()) {
                    self.refused = true;
                    self.text(t);
                }
                if d.reasoning_content.get().is_some_and(|t| !t.is_empty()) {
                    self.dropped.add("reasoning_content");
                }
                if !d.audio.is_null() {
                    self.dropped.add("audio");
                }
                if let Some(calls) = &d.tool_calls {
                    for (j, tc) in calls.iter().enumerate() {
                        let k = tc.index.0.unwrap_or(j as u64);
                        self.tool_fragment(k, tc.id.get(), tc.function.as_ref());
                    }
                }
                if let Some(f) = &d.function_call {
                    self.tool_fragment(0, None, Some(f));
                }
            }
            if let Some(f) = ch.finish_reason.get() {
                self.close();
                self.finish = Some(f.to_owned());
            }
        }
    }
}

impl SseSink for State {
    fn wants(&self, _event: &[u8]) -> bool {
        !self.terminal
    }

    fn on_event(&mut self, _event: &[u8], data: &[u8]) {
        if self.terminal {
            return;
        }
        if data.trim_ascii() == b"[DONE]" {
            self.message_stop();
            return;
        }
        if let Ok(c) = serde_json::from_slice::<Chunk<'_>>(data) {
            self.on_chunk(c);
        }
    }
}
