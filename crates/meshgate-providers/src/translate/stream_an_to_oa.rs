//! Stream translation, AN Messages upstream -> OA `chat.completion.chunk` client
//! (translation.md §6), event by event over the crate's incremental SSE framer.
//!
//! The finish chunk, the usage chunk (only when the client asked for it) and `data: [DONE]`
//! are written at `message_stop`, so several `message_delta`s (cumulative usage, restated
//! stop reason) give one finish. Usage is the upstream's exact counts, mapped (§5). Thinking,
//! citations and server-tool blocks are left out and announced. AN `ping`s become SSE comment
//! keep-alives, which matters while a long (dropped) thinking block streams.

use std::collections::HashMap;

use serde::Deserialize;
use serde_json::value::RawValue;

use super::error::openai_error_object;
use super::ids::{finish_reason_for, restore_tool_id};
use super::usage::{AnUsage, AnWire};
use super::value::{obj, Json};
use super::{now_unix, Dropped, StreamTranslator};
use crate::cut::stream_cut_error;
use crate::json::{Count, Str};
use crate::sse::{SseFramer, SseSink};
use meshgate_types::{Endpoint, Surface};

/// AN SSE -> OA chat chunks. `include_usage`: the client sent
/// `stream_options.include_usage: true` (then a `choices: []` usage chunk precedes `[DONE]`
/// and other chunks carry `"usage":null`).
pub fn anthropic_stream_to_openai(
    client_model: &str,
    include_usage: bool,
) -> Box<dyn StreamTranslator> {
    Box::new(AnthropicToOpenAiStream::new(
        client_model,
        include_usage,
        now_unix(),
    ))
}

/// The translator behind [`anthropic_stream_to_openai`], with an explicit `created` time.
pub struct AnthropicToOpenAiStream {
    framer: SseFramer,
    state: State,
}

impl AnthropicToOpenAiStream {
    pub fn new(client_model: &str, include_usage: bool, created: u64) -> Self {
        AnthropicToOpenAiStream {
            framer: SseFramer::new(),
            state: State {
                w: OaChunks::new(client_model, include_usage, created),
                blocks: HashMap::new(),
                next_tool: 0,
                usage: AnUsage::default(),
                stop_reason: None,
                terminal: false,
                dropped: Dropped::default(),
            },
        }
    }
}

impl StreamTranslator for AnthropicToOpenAiStream {
    fn push(&mut self, chunk: &[u8], out: &mut Vec<u8>) {
        self.framer.feed(chunk, &mut self.state);
        out.append(&mut self.state.w.out);
    }

    fn finish(&mut self, out: &mut Vec<u8>) {
        self.framer.finish(&mut self.state);
        if !self.state.terminal {
            self.state.terminal = true;
            self.state.w.out.extend_from_slice(&stream_cut_error(
                Surface::OpenAi,
                Endpoint::ChatCompletions,
                false,
                "the upstream stream ended before message_stop",
            ));
        }
        out.append(&mut self.state.w.out);
    }

    fn dropped(&self) -> &[String] {
        self.state.dropped.list()
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Block {
    Text,
    /// The OA tool-call index.
    Tool(u64),
    /// Left out of the OA stream.
    Other,
}

struct State {
    w: OaChunks,
    blocks: HashMap<u64, Block>,
    next_tool: u64,
    usage: AnUsage,
    stop_reason: Option<String>,
    /// `message_stop` or `error` seen: nothing more is written.
    terminal: bool,
    dropped: Dropped,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    index: Count,
    #[serde(borrow)]
    message: Option<Start<'a>>,
    #[serde(borrow)]
    content_block: Option<ContentBlock<'a>>,
    #[serde(borrow)]
    delta: Option<Delta<'a>>,
    usage: Option<AnWire>,
    #[serde(borrow)]
    error: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Start<'a> {
    #[serde(borrow)]
    id: Str<'a>,
    usage: Option<AnWire>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct ContentBlock<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    id: Str<'a>,
    #[serde(borrow)]
    name: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(borrow)]
    input: Option<&'a RawValue>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Delta<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    text: Str<'a>,
    #[serde(borrow)]
    partial_json: Str<'a>,
    #[serde(borrow)]
    stop_reason: Str<'a>,
}

/// A JSON string literal.
pub(crate) fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap_or_else(|_| "\"\"".to_owned())
}

/// Writes OA `chat.completion.chunk` events (shared by every translator to OA): each chunk
/// starts with one prefix (id, created, model); the end is the finish chunk, the usage chunk
/// (only when the client asked for it) and `[DONE]`.
pub(crate) struct OaChunks {
    model: String,
    include_usage: bool,
    created: u64,
    /// `{"id":..,"object":..,"created":..,"model":..,` shared by every chunk.
    prefix: String,
    pub(crate) out: Vec<u8>,
}

impl OaChunks {
    pub(crate) fn new(model: &str, include_usage: bool, created: u64) -> Self {
        OaChunks {
            model: model.to_owned(),
            include_usage,
            created,
            prefix: String::new(),
            out: Vec::new(),
        }
    }

    /// Names the chunks after the upstream's message id (the first call wins).
    pub(crate) fn ensure_prefix(&mut self, msg_id: &str) {
        if self.prefix.is_empty() {
            self.prefix = format!(
                "{{\"id\":{},\"object\":\"chat.completion.chunk\",\"created\":{},\"model\":{},",
                js(&format!("chatcmpl-{msg_id}")),
                self.created,
                js(&self.model)
            );
        }
    }

    pub(crate) fn chunk(&mut self, delta: &str, finish: Option<&str>) {
        self.ensure_prefix("meshgate");
        self.out.extend_from_slice(b"data: ");
        self.out.extend_from_slice(self.prefix.as_bytes());
        self.out
            .extend_from_slice(b"\"choices\":[{\"index\":0,\"delta\":");
        self.out.extend_from_slice(delta.as_bytes());
        self.out
            .extend_from_slice(b",\"logprobs\":null,\"finish_reason\":");
        match finish {
            Some(f) => self.out.extend_from_slice(js(f).as_bytes()),
            None => self.out.extend_from_slice(b"null"),
        }
        self.out.extend_from_slice(b"}]");
        if self.include_usage {
            self.out.extend_from_slice(b",\"usage\":null");
        }
        self.out.extend_from_slice(b"}\n\n");
    }

    /// The finish chunk, the usage chunk when asked for, `[DONE]`.
    pub(crate) fn end(&mut self, finish: &str, usage: &Json) {
        self.chunk("{}", Some(finish));
        if self.include_usage {
            self.out.extend_from_slice(b"data: ");
            self.out.extend_from_slice(self.prefix.as_bytes());
            self.out.extend_from_slice(b"\"choices\":[],\"usage\":");
            self.out.extend_from_slice(usage.to_text().as_bytes());
            self.out.extend_from_slice(b"}\n\n");
        }
        self.out.extend_from_slice(b"data: [DONE]\n\n");
    }

    /// An OA error event carrying `oa_error` (the `error` object).
    pub(crate) fn error(&mut self, oa_error: Json) {
        let e = obj([("error", oa_error)]);
        self.out.extend_from_slice(b"data: ");
        self.out.extend_from_slice(e.to_text().as_bytes());
        self.out.extend_from_slice(b"\n\n");
    }
}

impl State {
    fn chunk(&mut self, delta: &str, finish: Option<&str>) {
        self.w.chunk(delta, finish);
    }

    fn message_stop(&mut self) {
        let finish = finish_reason_for(self.stop_reason.as_deref());
        self.w.end(finish, &self.usage.to_openai());
        self.terminal = true;
    }

    fn error(&mut self, raw: Option<&RawValue>) {
        let an_error = raw
            .and_then(|r| Json::parse(r.get().as_bytes()))
            .unwrap_or_default();
        self.w.error(openai_error_object(&an_error));
        self.terminal = true;
    }

    fn block_start(&mut self, index: u64, b: &ContentBlock<'_>) {
        match b.kind.get() {
            Some("text") => {
                self.blocks.insert(index, Block::Text);
                if let Some(t) = b.text.get().filter(|t| !t.is_empty()) {
                    self.chunk(&format!("{{\"content\":{}}}", js(t)), None);
                }
            }
            Some("tool_use") => {
                let k = self.next_tool;
                self.next_tool += 1;
                self.blocks.insert(index, Block::Tool(k));
                // The start's input is `{}` when deltas follow; anything else is the input.
                let args = b
                    .input
                    .map(RawValue::get)
                    .filter(|i| i.trim() != "{}")
                    .unwrap_or("");
                let id = restore_tool_id(b.id.get().unwrap_or(""));
                let delta = format!(
                    "{{\"tool_calls\":[{{\"index\":{k},\"id\":{},\"type\":\"function\",\"function\":{{\"name\":{},\"arguments\":{}}}}}]}}",
                    js(&id),
                    js(b.name.get().unwrap_or("")),
                    js(args)
                );
                self.chunk(&delta, None);
            }
            other => {
                self.blocks.insert(index, Block::Other);
                self.dropped.add(other.unwrap_or("content_block"));
            }
        }
    }

    fn block_delta(&mut self, index: u64, d: &Delta<'_>) {
        let block = self.blocks.get(&index).copied();
        match (d.kind.get(), block) {
            (Some("text_delta"), Some(Block::Text) | None) => {
                if let Some(t) = d.text.get().filter(|t| !t.is_empty()) {
                    self.chunk(&format!("{{\"content\":{}}}", js(t)), None);
                }
            }
            (Some("input_json_delta"), Some(Block::Tool(k))) => {
                if let Some(p) = d.partial_json.get().filter(|p| !p.is_empty()) {
                    let delta = format!(
                        "{{\"tool_calls\":[{{\"index\":{k},\"function\":{{\"arguments\":{}}}}}]}}",
                        js(p)
                    );
                    self.chunk(&delta, None);
                }
            }
            (Some("citations_delta"), _) => self.dropped.add("citations"),
            _ => {}
        }
    }
}

impl SseSink for State {
    fn wants(&self, _event: &[u8]) -> bool {
        !self.terminal
    }

    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        if self.terminal {
            return;
        }
        let Ok(ev) = serde_json::from_slice::<Event<'_>>(data) else {
            return;
        };
        let kind = ev.kind.event_type(event).to_vec();
        match kind.as_slice() {
            b"message_start" => {
                let start = ev.message.unwrap_or_default();
                if let Some(u) = &start.usage {
                    self.usage.merge(u);
                }
                self.w.ensure_prefix(start.id.get().unwrap_or("meshgate"));
                self.chunk("{\"role\":\"assistant\",\"content\":\"\"}", None);
            }
            b"content_block_start" => {
                if let Some(b) = &ev.content_block {
                    self.block_start(ev.index.0.unwrap_or(0), b);
                }
            }
            b"content_block_delta" => {
                if let Some(d) = &ev.delta {
                    self.block_delta(ev.index.0.unwrap_or(0), d);
                }
            }
            b"message_delta" => {
                if let Some(u) = &ev.usage {
                    self.usage.merge(u);
                }
                if let Some(s) = ev.delta.as_ref().and_then(|d| d.stop_reason.owned()) {
                    self.stop_reason = Some(s);
                }
            }
            b"message_stop" => self.message_stop(),
            b"ping" => self.w.out.extend_from_slice(b": ping\n\n"),
            b"error" => self.error(ev.error),
            _ => {}
        }
    }
}
