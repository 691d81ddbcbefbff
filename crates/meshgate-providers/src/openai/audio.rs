//! Audio meters: speech (TTS), transcriptions and translations.
//!
//! Mapping:
//! - speech: `characters` = the request's `input` length (Unicode scalar values), always; with
//!   `stream_format: "sse"` also the tokens of `speech.audio.done.usage`: `input_uncached` =
//!   `input_tokens` (text), `output` = `output_tokens`, `output_audio` = the output audio
//!   detail or, when absent, all of `output_tokens` (speech output is audio).
//! - transcription / translation: `usage.type == "tokens"` → `input_uncached` =
//!   `input_tokens` with `input_audio` = `input_token_details.audio_tokens` (subset), `output`
//!   = `output_tokens`; `usage.type == "duration"` → `audio_seconds` = `usage.seconds`
//!   exactly; else the `verbose_json` `duration`; `text`/`srt`/`vtt` bodies → nothing. Streams:
//!   the usage of `transcript.text.done`.

use meshgate_types::Usage;
use rust_decimal::Decimal;
use serde::Deserialize;
use serde_json::value::RawValue;

use super::{Tokens, WireUsage};
use crate::json::{exact_decimal, parse, pattern, ErrorField, Str};
use crate::sse::SseSink;
use crate::{BodyMeter, BodyParser, Meter, Metered, NoopMeter, RequestFacts, StreamState};

pattern!(SPEECH_DONE, "\"speech.audio.done\"");
pattern!(TRANSCRIPT_DONE, "\"transcript.text.done\"");
pattern!(ERROR, "\"error\"");

/// Non-stream speech: a binary audio body; only the request's characters are known.
#[derive(Debug)]
pub(crate) struct SpeechBody {
    characters: Option<u64>,
}

impl SpeechBody {
    pub(crate) fn new(facts: &RequestFacts) -> Self {
        SpeechBody {
            characters: facts.speech_input_chars,
        }
    }
}

impl Meter for SpeechBody {
    fn observe(&mut self, _chunk: &[u8]) {}

    fn finish(&mut self) -> Metered {
        Metered {
            usage: Usage {
                characters: self.characters,
                ..Usage::default()
            },
            complete: true,
            ..Metered::default()
        }
    }
}

/// An audio stream event: only what metering needs.
#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Event<'a> {
    #[serde(rename = "type", borrow)]
    kind: Str<'a>,
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
    #[serde(borrow)]
    message: Str<'a>,
    error: ErrorField,
}

/// The shared state of the speech and transcription streams: which event ends the stream.
#[derive(Debug)]
struct AudioStream {
    done_event: &'static [u8],
    done_pattern: &'static crate::json::Pattern,
    tokens: Option<Tokens>,
    done: bool,
    error: Option<String>,
}

impl AudioStream {
    fn new(done_event: &'static [u8], done_pattern: &'static crate::json::Pattern) -> Self {
        AudioStream {
            done_event,
            done_pattern,
            tokens: None,
            done: false,
            error: None,
        }
    }

    fn wants(&self, event: &[u8]) -> bool {
        event == self.done_event || event == b"error"
    }

    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        if event.is_empty()
            && !(self.done_pattern.value_present(data)
                || ERROR.value_present(data)
                || ERROR.key_non_null(data))
        {
            return;
        }
        let Some(ev) = parse::<Event>(data) else {
            return;
        };
        let kind = ev.kind.event_type(event);
        if kind == self.done_event {
            self.done = true;
            if let Some(u) = &ev.usage {
                self.tokens
                    .get_or_insert_with(Tokens::default)
                    .merge(Tokens::from_wire(u));
            }
        } else if (kind == b"error" || ev.error.present) && self.error.is_none() && !self.done {
            self.error = Some(
                ev.message
                    .owned()
                    .or(ev.error.message)
                    .unwrap_or_else(|| "upstream error".to_owned()),
            );
        }
    }

    fn report(&self, mut usage: Usage) -> Metered {
        Metered {
            usage: {
                if let Some(t) = &self.tokens {
                    let chars = usage.characters;
                    usage = t.to_usage();
                    usage.characters = chars;
                }
                usage
            },
            complete: self.done && self.error.is_none(),
            incomplete_reason: self.error.clone(),
            ..Metered::default()
        }
    }
}

/// Speech with `stream_format: "sse"`.
#[derive(Debug)]
pub(crate) struct SpeechStream {
    inner: AudioStream,
    characters: Option<u64>,
}

impl SpeechStream {
    pub(crate) fn new(facts: &RequestFacts) -> Self {
        SpeechStream {
            inner: AudioStream::new(b"speech.audio.done", &SPEECH_DONE),
            characters: facts.speech_input_chars,
        }
    }
}

impl SseSink for SpeechStream {
    fn wants(&self, event: &[u8]) -> bool {
        self.inner.wants(event)
    }
    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        self.inner.on_event(event, data);
    }
}

impl StreamState for SpeechStream {
    fn report(&self) -> Metered {
        let mut m = self.inner.report(Usage {
            characters: self.characters,
            ..Usage::default()
        });
        if m.usage.output_audio.is_none() {
            m.usage.output_audio = m.usage.output;
        }
        m
    }
}

/// Streamed transcription (`stream: true`).
#[derive(Debug)]
pub(crate) struct TranscriptStream(AudioStream);

impl Default for TranscriptStream {
    fn default() -> Self {
        TranscriptStream(AudioStream::new(b"transcript.text.done", &TRANSCRIPT_DONE))
    }
}

impl SseSink for TranscriptStream {
    fn wants(&self, event: &[u8]) -> bool {
        self.0.wants(event)
    }
    fn on_event(&mut self, event: &[u8], data: &[u8]) {
        self.0.on_event(event, data);
    }
}

impl StreamState for TranscriptStream {
    fn report(&self) -> Metered {
        self.0.report(Usage::default())
    }
}

/// The non-stream transcription/translation meter for the requested `response_format`.
pub(crate) fn transcript_body(facts: &RequestFacts) -> Box<dyn Meter> {
    match facts.transcription_format.as_deref() {
        Some("text" | "srt" | "vtt") => Box::new(NoopMeter),
        _ => Box::new(BodyMeter::new(TranscriptBody)),
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(default)]
struct Transcript<'a> {
    #[serde(borrow)]
    usage: Option<WireUsage<'a>>,
    #[serde(borrow)]
    duration: Option<&'a RawValue>,
    error: ErrorField,
}

/// `json`, `verbose_json` and `diarized_json` bodies.
#[derive(Debug, Default)]
pub(crate) struct TranscriptBody;

impl BodyParser for TranscriptBody {
    fn parse(&self, body: &[u8]) -> Option<Metered> {
        let t: Transcript = parse(body)?;
        let mut usage = t
            .usage
            .as_ref()
            .map(|u| Tokens::from_wire(u).to_usage())
            .unwrap_or_default();
        if usage.audio_seconds.is_none() && usage.input_uncached.is_none() {
            usage.audio_seconds = exact_decimal(t.duration).filter(|d| *d >= Decimal::ZERO);
        }
        Some(Metered {
            usage,
            complete: true,
            incomplete_reason: t.error.reason(),
            ..Metered::default()
        })
    }
}

#[cfg(test)]
mod tests {
    use crate::testutil::{cr, run};
    use crate::{Metered, RequestFacts};
    use meshgate_types::{Endpoint, Surface};
    use rust_decimal::Decimal;

    fn transcribe(format: Option<&str>, streaming: bool, bytes: &str) -> Metered {
        let facts = RequestFacts {
            transcription_format: format.map(str::to_owned),
            ..RequestFacts::default()
        };
        run(
            Surface::OpenAi,
            Endpoint::AudioTranscriptions,
            streaming,
            &facts,
            bytes.as_bytes(),
        )
    }

    #[test]
    fn speech_binary_counts_characters() {
        let facts = RequestFacts {
            speech_input_chars: Some(11),
            ..RequestFacts::default()
        };
        let m = run(
            Surface::OpenAi,
            Endpoint::AudioSpeech,
            false,
            &facts,
            b"ID3\x04\x00\xff\xfb\x90",
        );
        assert!(m.complete);
        assert_eq!(m.usage.characters, Some(11));
        assert_eq!(m.usage.output, None);
    }

    #[test]
    fn speech_sse_tokens() {
        let facts = RequestFacts {
            speech_input_chars: Some(42),
            ..RequestFacts::default()
        };
        let s = concat!(
            "data: {\"type\":\"speech.audio.delta\",\"audio\":\"SUQzBAAAAAAA\"}\n\n",
            "data: {\"type\":\"speech.audio.done\",\"usage\":{\"input_tokens\":14,\"output_tokens\":610,\"total_tokens\":624}}\n\n",
        );
        let m = run(
            Surface::OpenAi,
            Endpoint::AudioSpeech,
            true,
            &facts,
            s.as_bytes(),
        );
        assert!(m.complete);
        let u = &m.usage;
        assert_eq!(
            (u.input_uncached, u.output, u.output_audio),
            (Some(14), Some(610), Some(610))
        );
        assert_eq!(u.characters, Some(42));
        let cut = run(
            Surface::OpenAi,
            Endpoint::AudioSpeech,
            true,
            &facts,
            &s.as_bytes()[..60],
        );
        assert!(!cut.complete);
        assert_eq!(cut.usage.characters, Some(42));
        assert_eq!(cut.usage.output, None);
    }

    #[test]
    fn transcription_bodies() {
        let m = transcribe(
            None,
            false,
            r#"{"text":"Hello there.","usage":{"type":"tokens","input_tokens":95,
  "input_token_details":{"text_tokens":0,"audio_tokens":95},"output_tokens":12,"total_tokens":107}}"#,
        );
        let u = &m.usage;
        assert_eq!(
            (u.input_uncached, u.input_audio, u.output),
            (Some(95), Some(95), Some(12))
        );
        assert_eq!(u.audio_seconds, None);

        let m = transcribe(
            Some("json"),
            false,
            r#"{"text":"Hello there.","usage":{"type":"duration","seconds":4}}"#,
        );
        assert_eq!(m.usage.audio_seconds, Some(Decimal::new(4, 0)));
        assert_eq!(m.usage.input_uncached, None);

        let m = transcribe(
            Some("verbose_json"),
            false,
            r#"{"task":"transcribe","language":"english","duration":8.470000267028809,"text":"h\u00e9","segments":[]}"#,
        );
        assert_eq!(
            m.usage.audio_seconds,
            Some("8.470000267028809".parse().unwrap())
        );

        let m = transcribe(Some("srt"), false, "1\n00:00:00,000 --> 00:00:01,000\nHi\n");
        assert!(m.complete && m.usage.is_empty());
        let m = run(
            Surface::OpenAi,
            Endpoint::AudioTranslations,
            false,
            &RequestFacts::default(),
            br#"{"text":"Hello"}"#,
        );
        assert!(m.complete && m.usage.is_empty());
    }

    #[test]
    fn transcription_stream() {
        let s = concat!(
            "data: {\"type\":\"transcript.text.delta\",\"delta\":\"h\u{e9}llo \u{2603}\"}\n\n",
            "data: {\"type\":\"transcript.text.done\",\"text\":\"h\u{e9}llo \u{2603}\",\"usage\":{\"type\":\"tokens\",\"input_tokens\":14,\"input_token_details\":{\"text_tokens\":4,\"audio_tokens\":10},\"output_tokens\":5,\"total_tokens\":19}}\n\n",
        );
        for s in [s.to_owned(), cr(s)] {
            let m = transcribe(None, true, &s);
            assert!(m.complete);
            let u = &m.usage;
            assert_eq!(
                (u.input_uncached, u.input_audio, u.output),
                (Some(14), Some(10), Some(5))
            );
        }
    }
}
