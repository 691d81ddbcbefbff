//! Incremental SSE framing and usage meters for every OpenAI and Anthropic endpoint.
//!
//! The gateway forwards upstream bytes untouched; a [`Meter`] only observes copies of the
//! chunks, whatever their boundaries, and reports what the provider said was consumed as a
//! [`Metered`] at the end. [`UsageChunkFilter`] is the one place that removes bytes (the
//! usage-only chunk of Chat Completions streams where the gateway asked for usage), and
//! [`stream_cut_error`] the bytes to append when an upstream stream ends early.
//!
//! # Layout
//! - `sse`: the incremental event-stream framer every stream meter sits on.
//! - `json`: lenient borrowed JSON leaves and the byte prefilters that decide what to parse.
//! - `body`: accumulation of non-streamed bodies (capped at [`BODY_CAP`]) and JSONL lines.
//! - `openai::{chat, responses, embeddings, images, audio, batch}`: OpenAI meters.
//! - `anthropic::{messages, complete, batches}`: Anthropic meters.
//! - `gemini`: Gemini `generateContent` meters ([`gemini_meter`]; Gemini is reached only on
//!   the translation lane, so it is not a [`Surface`]).
//! - `filter`: [`UsageChunkFilter`]; `cut`: [`stream_cut_error`].
//! - `translate`: OpenAI Chat Completions <-> Anthropic Messages requests, responses, errors
//!   and streams (see [`translate`]).
//!
//! Pass [`meter_for`] the surface and endpoint of the bytes the meter will see, i.e. the
//! **upstream's** when the gateway translates between formats; pass [`stream_cut_error`] the
//! client's. Meters assume a successful (2xx) response: request-derived units (speech
//! characters, image size and quality) are reported whatever the body says.

mod json;

mod anthropic;
mod body;
mod cut;
mod filter;
mod gemini;
mod openai;
mod sse;
pub mod translate;

use meshgate_types::{Endpoint, Surface, Usage};

pub use body::BODY_CAP;
pub use cut::{stream_cut_error, STREAM_CUT_CODE};
pub use filter::UsageChunkFilter;
pub use gemini::gemini_meter;
pub use translate::{
    anthropic_error_to_openai, anthropic_response_to_openai, anthropic_stream_to_openai,
    anthropic_to_openai_chat, openai_chat_to_anthropic, openai_error_to_anthropic,
    openai_response_to_anthropic, openai_stream_to_anthropic, RequestOptions, StreamTranslator,
    TranslateError, Translated,
};

/// Facts about the request that some meters need (taken by the gateway from the request body).
#[derive(Debug, Clone, Default)]
pub struct RequestFacts {
    pub model: Option<String>,
    /// TTS: Unicode scalar values of `input`.
    pub speech_input_chars: Option<u64>,
    pub image_n: Option<u64>,
    pub image_size: Option<String>,
    pub image_quality: Option<String>,
    /// `response_format` of audio calls, as sent upstream.
    pub transcription_format: Option<String>,
}

/// What a meter observed.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Metered {
    /// What the provider reported (plus request-derived units: speech characters, image
    /// count/size/quality).
    pub usage: Usage,
    /// `model` the response named, if any.
    pub response_model: Option<String>,
    /// Stream: a terminal event was seen (chat `[DONE]` or finish+usage, Responses terminal
    /// event, Anthropic `message_stop`, complete: `stop_reason` non-null). Non-stream: the
    /// body parsed. An in-stream `error` event does not complete a stream (its usage is
    /// partial); it sets `incomplete_reason`.
    pub complete: bool,
    /// E.g. Responses `response.incomplete` / `failed`, or an in-stream error event's message.
    pub incomplete_reason: Option<String>,
    /// Not filled by meters (the gateway sets it from headers).
    pub upstream_request_id: Option<String>,
    /// Batch results: per succeeded line (model, usage with service_tier Batch).
    pub batch_items: Vec<(String, Usage)>,
    /// Responses: the id of the response the provider stored (`resp_...`), so that only
    /// its project may read it back.
    pub resource_id: Option<String>,
}

/// Observes the bytes of one upstream response.
pub trait Meter: Send {
    fn observe(&mut self, chunk: &[u8]);
    fn finish(&mut self) -> Metered;
    /// Stream meters: true when the bytes observed so far end in the middle of an SSE event
    /// (so the gateway must close the event with a blank line before appending an error event).
    fn mid_event(&self) -> bool {
        false
    }
}

/// The meter for one response. `streaming` = the upstream response is `text/event-stream`.
/// Endpoints without usage (count_tokens, input_tokens, models, batches, other) get a no-op
/// meter (usage empty, complete).
pub fn meter_for(
    surface: Surface,
    endpoint: Endpoint,
    streaming: bool,
    facts: &RequestFacts,
) -> Box<dyn Meter> {
    use openai::{audio, chat, embeddings, images, responses};
    match endpoint {
        Endpoint::ChatCompletions if streaming => Box::new(SseMeter::new(chat::Stream::default())),
        Endpoint::ChatCompletions => Box::new(BodyMeter::new(chat::Body)),
        Endpoint::Responses if streaming => Box::new(SseMeter::new(responses::Stream::default())),
        Endpoint::Responses | Endpoint::ResponsesCompact => {
            Box::new(BodyMeter::new(responses::Body))
        }
        Endpoint::Embeddings => Box::new(BodyMeter::new(embeddings::Body)),
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations
            if streaming =>
        {
            Box::new(SseMeter::new(images::Stream::new(facts)))
        }
        Endpoint::ImagesGenerations | Endpoint::ImagesEdits | Endpoint::ImagesVariations => {
            Box::new(BodyMeter::new(images::Body::new(facts)))
        }
        Endpoint::AudioSpeech if streaming => {
            Box::new(SseMeter::new(audio::SpeechStream::new(facts)))
        }
        Endpoint::AudioSpeech => Box::new(audio::SpeechBody::new(facts)),
        Endpoint::AudioTranscriptions | Endpoint::AudioTranslations if streaming => {
            Box::new(SseMeter::new(audio::TranscriptStream::default()))
        }
        Endpoint::AudioTranscriptions | Endpoint::AudioTranslations => {
            audio::transcript_body(facts)
        }
        Endpoint::Messages if streaming => {
            Box::new(SseMeter::new(anthropic::messages::Stream::default()))
        }
        Endpoint::Messages => Box::new(BodyMeter::new(anthropic::messages::Body)),
        Endpoint::Complete if streaming => {
            Box::new(SseMeter::new(anthropic::complete::Stream::default()))
        }
        Endpoint::Complete => Box::new(BodyMeter::new(anthropic::complete::Body)),
        Endpoint::BatchResults => match surface {
            Surface::Anthropic => Box::new(anthropic::batches::results_meter()),
            Surface::OpenAi => Box::new(openai::batch::output_meter()),
        },
        Endpoint::ResponsesInputTokens
        | Endpoint::CountTokens
        | Endpoint::Models
        | Endpoint::Batches
        | Endpoint::Other => Box::new(NoopMeter),
    }
}

/// Endpoints that carry no usage.
#[derive(Debug, Default)]
pub(crate) struct NoopMeter;

impl Meter for NoopMeter {
    fn observe(&mut self, _chunk: &[u8]) {}
    fn finish(&mut self) -> Metered {
        Metered {
            complete: true,
            ..Metered::default()
        }
    }
}

/// The per-stream state of an SSE meter.
pub(crate) trait StreamState: sse::SseSink + Send {
    fn report(&self) -> Metered;
}

/// A stream meter: the framer plus a state that consumes its events.
pub(crate) struct SseMeter<S> {
    framer: sse::SseFramer,
    state: S,
}

impl<S: StreamState> SseMeter<S> {
    pub(crate) fn new(state: S) -> Self {
        SseMeter {
            framer: sse::SseFramer::new(),
            state,
        }
    }
}

impl<S: StreamState> Meter for SseMeter<S> {
    fn observe(&mut self, chunk: &[u8]) {
        self.framer.feed(chunk, &mut self.state);
    }
    fn finish(&mut self) -> Metered {
        self.framer.finish(&mut self.state);
        self.state.report()
    }
    fn mid_event(&self) -> bool {
        self.framer.mid_event()
    }
}

/// Parses a whole non-streamed body.
pub(crate) trait BodyParser: Send {
    /// `None` when the body is not what the endpoint returns.
    fn parse(&self, body: &[u8]) -> Option<Metered>;
    /// The body exceeded [`BODY_CAP`]: usage unknown, unless request facts say something.
    fn too_large(&self) -> Metered {
        Metered::default()
    }
}

/// A non-stream meter: accumulates the body and parses it once at `finish`.
pub(crate) struct BodyMeter<P> {
    buf: body::BodyBuf,
    parser: P,
    done: Option<Metered>,
}

impl<P: BodyParser> BodyMeter<P> {
    pub(crate) fn new(parser: P) -> Self {
        BodyMeter {
            buf: body::BodyBuf::default(),
            parser,
            done: None,
        }
    }

    #[cfg(test)]
    pub(crate) fn with_cap(parser: P, cap: usize) -> Self {
        BodyMeter {
            buf: body::BodyBuf::with_cap(cap),
            parser,
            done: None,
        }
    }
}

impl<P: BodyParser> Meter for BodyMeter<P> {
    fn observe(&mut self, chunk: &[u8]) {
        self.buf.push(chunk);
    }
    fn finish(&mut self) -> Metered {
        if let Some(done) = &self.done {
            return done.clone();
        }
        let m = match self.buf.take() {
            Some(body) => self.parser.parse(&body).unwrap_or_default(),
            None => self.parser.too_large(),
        };
        self.done = Some(m.clone());
        m
    }
}

#[cfg(test)]
pub(crate) mod testutil {
    //! Helpers for the meter tests: run a byte stream through a meter whole and split.
    use super::*;

    /// Runs `bytes` through a fresh meter in one chunk, then byte by byte, asserts both agree,
    /// and returns the result.
    pub(crate) fn run(
        surface: Surface,
        endpoint: Endpoint,
        streaming: bool,
        facts: &RequestFacts,
        bytes: &[u8],
    ) -> Metered {
        let mut whole = meter_for(surface, endpoint, streaming, facts);
        whole.observe(bytes);
        let whole = whole.finish();
        let mut split = meter_for(surface, endpoint, streaming, facts);
        for b in bytes {
            split.observe(std::slice::from_ref(b));
        }
        assert_eq!(split.finish(), whole, "byte-by-byte result differs");
        assert_eq!(split.finish(), whole, "finish is idempotent");
        whole
    }

    /// Rewrites the LF line endings of `s` as CRLF.
    pub(crate) fn crlf(s: &str) -> String {
        s.replace('\n', "\r\n")
    }

    /// Rewrites the LF line endings of `s` as CR.
    pub(crate) fn cr(s: &str) -> String {
        s.replace('\n', "\r")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn usage_free_endpoints_are_noops() {
        for e in [
            Endpoint::ResponsesInputTokens,
            Endpoint::CountTokens,
            Endpoint::Models,
            Endpoint::Batches,
            Endpoint::Other,
        ] {
            let mut m = meter_for(Surface::Anthropic, e, false, &RequestFacts::default());
            m.observe(br#"{"input_tokens":2095}"#);
            let r = m.finish();
            assert!(r.complete && r.usage.is_empty() && !m.mid_event());
        }
    }

    #[test]
    fn every_endpoint_survives_garbage() {
        let facts = RequestFacts::default();
        for surface in [Surface::OpenAi, Surface::Anthropic] {
            for e in Endpoint::ALL {
                for streaming in [false, true] {
                    let mut m = meter_for(surface, e, streaming, &facts);
                    m.observe(b"\xff\xfe data: {\"usage\": [1,\n\n\r");
                    m.observe(b"event: error\ndata: {\"type\":\"error\"");
                    let _ = m.mid_event();
                    let _ = m.finish();
                }
            }
        }
    }
}
