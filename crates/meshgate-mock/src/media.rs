//! OpenAI embeddings and audio (speech, transcriptions, translations), plus the multipart form reader.

use std::borrow::Cow;

use base64::Engine as _;
use bytes::Bytes;
use http::header::CONTENT_TYPE;
use http::{HeaderValue, StatusCode};
use serde::{Deserialize, Serialize};
use serde_json::{json, Value};

use crate::body::Script;
use crate::control::full_text;
use crate::reply::{self, Resp, Surface};
use crate::router::Call;

const O: Surface = Surface::OpenAi;
const B64: base64::engine::GeneralPurpose = base64::engine::general_purpose::STANDARD;

pub(crate) fn missing(param: &str) -> Resp {
    reply::openai_error(
        StatusCode::BAD_REQUEST,
        &format!("Missing required parameter: '{param}'."),
        "invalid_request_error",
        Some("missing_required_parameter"),
        Some(param),
    )
}

fn parse_json<'a, T: Deserialize<'a>>(call: &'a Call<'_>) -> Result<T, Resp> {
    serde_json::from_slice(call.body).map_err(|e| {
        call.bad_request(
            O,
            &format!("We could not parse the JSON body of your request. ({e})"),
        )
    })
}

#[derive(Deserialize)]
struct EmbeddingsRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    input: Option<Value>,
    #[serde(borrow)]
    encoding_format: Option<Cow<'a, str>>,
    dimensions: Option<usize>,
}

#[derive(Serialize)]
#[serde(untagged)]
enum Vector {
    Float(Vec<f32>),
    Base64(String),
}

#[derive(Serialize)]
struct Embedding {
    object: &'static str,
    index: usize,
    embedding: Vector,
}

/// Typed so f32 values print in their short form.
#[derive(Serialize)]
struct EmbeddingList<'a> {
    object: &'static str,
    model: &'a str,
    data: Vec<Embedding>,
    usage: Value,
}

/// Component `j` of vector `i`: deterministic values in [-0.1, 0.1).
pub fn embedding_value(i: usize, j: usize) -> f32 {
    ((i * 31 + j * 7) % 200) as f32 / 1000.0 - 0.1
}

pub(crate) fn embeddings(call: &Call<'_>) -> Resp {
    let req: EmbeddingsRequest<'_> = match parse_json(call) {
        Ok(r) => r,
        Err(e) => return e,
    };
    let Some(model) = req.model.as_deref() else {
        return missing("model");
    };
    let count = match &req.input {
        None => return missing("input"),
        // A flat array of token ids is one input; other arrays hold one input per item.
        Some(Value::Array(items)) if items.first().is_some_and(|v| !v.is_number()) => items.len(),
        Some(_) => 1,
    };
    let default_dims = if model.contains("large") { 3072 } else { 1536 };
    let dims = req.dimensions.unwrap_or(default_dims).clamp(1, 8192);
    let base64 = req.encoding_format.as_deref() == Some("base64");
    let data = (0..count)
        .map(|i| {
            let values = (0..dims).map(|j| embedding_value(i, j));
            let embedding = if base64 {
                let mut raw = Vec::with_capacity(dims * 4);
                for v in values {
                    raw.extend_from_slice(&v.to_le_bytes());
                }
                Vector::Base64(B64.encode(raw))
            } else {
                Vector::Float(values.collect())
            };
            Embedding {
                object: "embedding",
                index: i,
                embedding,
            }
        })
        .collect();
    let input = call.ctl.input(call.body.len());
    reply::ok_json(&EmbeddingList {
        object: "list",
        model,
        data,
        usage: json!({"prompt_tokens": input, "total_tokens": input}),
    })
}

#[derive(Deserialize)]
struct SpeechRequest<'a> {
    #[serde(borrow)]
    model: Option<Cow<'a, str>>,
    input: Option<IgnoredInput>,
    #[serde(borrow)]
    response_format: Option<Cow<'a, str>>,
    #[serde(borrow)]
    stream_format: Option<Cow<'a, str>>,
}

/// Presence marker for a field whose value the mock does not read.
type IgnoredInput = serde::de::IgnoredAny;

/// Bytes of audio chunk `k`: an MP3 frame header, then a fixed pattern.
fn audio_chunk(k: u64) -> Vec<u8> {
    let mut b: Vec<u8> = (0..1024u64)
        .map(|j| ((k * 1024 + j) * 31 % 251) as u8)
        .collect();
    b[..4].copy_from_slice(&[0xFF, 0xFB, 0x90, 0x64]);
    b
}

fn audio_content_type(format: &str) -> &'static str {
    match format {
        "opus" => "audio/opus",
        "aac" => "audio/aac",
        "flac" => "audio/flac",
        "wav" => "audio/wav",
        "pcm" => "audio/pcm",
        _ => "audio/mpeg",
    }
}

/// `POST /v1/audio/speech`: chunked binary audio (1 KiB per chunk), or SSE with usage when asked.
pub(crate) fn speech(call: &Call<'_>) -> Resp {
    let req: SpeechRequest<'_> = match parse_json(call) {
        Ok(r) => r,
        Err(e) => return e,
    };
    if req.model.is_none() {
        return missing("model");
    }
    if req.input.is_none() {
        return missing("input");
    }
    let ctl = &call.ctl;
    let sends = ctl.deltas_before_cut();
    if req.stream_format.as_deref() == Some("sse") {
        let mut script = Script::counted(call.state, ctl.chunk_delay);
        for k in 0..sends {
            let ev = json!({"type": "speech.audio.delta", "audio": B64.encode(audio_chunk(k))});
            script.push_delta(reply::data(&ev.to_string()));
        }
        if ctl.cut_after.is_some() {
            script.cut();
        } else {
            let t = ctl.tokens(call.body.len());
            let ev = json!({"type": "speech.audio.done", "usage": {"input_tokens": t.input,
                "output_tokens": t.output, "total_tokens": t.input + t.output}});
            script.push(reply::data(&ev.to_string()));
        }
        return reply::sse(O, script);
    }
    let mut script = Script::uncounted(ctl.chunk_delay);
    for k in 0..sends {
        script.push_delta(audio_chunk(k));
    }
    if ctl.cut_after.is_some() {
        script.cut();
    }
    let ct = audio_content_type(req.response_format.as_deref().unwrap_or("mp3"));
    reply::with_body(
        StatusCode::OK,
        HeaderValue::from_static(ct),
        script.into_body(),
    )
}

/// One part of a multipart/form-data body.
pub(crate) struct FormPart {
    pub name: String,
    pub data: Bytes,
}

/// A parsed multipart/form-data body.
pub(crate) struct Form {
    pub parts: Vec<FormPart>,
}

impl Form {
    pub fn get(&self, name: &str) -> Option<&FormPart> {
        self.parts.iter().find(|p| p.name == name)
    }

    /// A field's text, when present and UTF-8.
    pub fn text(&self, name: &str) -> Option<&str> {
        self.get(name)
            .and_then(|p| std::str::from_utf8(&p.data).ok())
            .map(str::trim)
    }
}

/// Reads the whole form; any framing problem is a native 400.
pub(crate) async fn read_form(call: &Call<'_>) -> Result<Form, Resp> {
    let ct = call
        .parts
        .headers
        .get(CONTENT_TYPE)
        .and_then(|v| v.to_str().ok())
        .unwrap_or("");
    let boundary = multer::parse_boundary(ct).map_err(|_| {
        call.bad_request(
            O,
            "Invalid Content-Type header: expected multipart/form-data with a boundary.",
        )
    })?;
    let body = call.body.clone();
    let stream = futures_util::stream::once(async move { Ok::<Bytes, std::io::Error>(body) });
    let mut mp = multer::Multipart::new(stream, boundary);
    let mut parts = Vec::new();
    loop {
        match mp.next_field().await {
            Ok(Some(field)) => {
                let name = field.name().unwrap_or("").to_owned();
                match field.bytes().await {
                    Ok(data) => parts.push(FormPart { name, data }),
                    Err(e) => return Err(call.bad_request(O, &format!("bad multipart body: {e}"))),
                }
            }
            Ok(None) => return Ok(Form { parts }),
            Err(e) => return Err(call.bad_request(O, &format!("bad multipart body: {e}"))),
        }
    }
}

fn timestamp(secs: u64, sep: char) -> String {
    format!(
        "{:02}:{:02}:{:02}{sep}000",
        secs / 3600,
        (secs / 60) % 60,
        secs % 60
    )
}

/// `POST /v1/audio/transcriptions` and `/v1/audio/translations`.
pub(crate) async fn transcription(call: &Call<'_>, translate: bool) -> Resp {
    let form = match read_form(call).await {
        Ok(f) => f,
        Err(e) => return e,
    };
    let Some(file) = form.get("file") else {
        return missing("file");
    };
    let Some(model) = form.text("model") else {
        return missing("model");
    };
    let ctl = &call.ctl;
    let seconds = ctl
        .audio_seconds
        .unwrap_or_else(|| (file.data.len() as u64).div_ceil(16_000).max(1));
    let text = full_text(ctl.chunks).trim_end().to_owned();
    let by_tokens = !translate && model.starts_with("gpt-4o") && model.contains("transcribe");
    let usage = if by_tokens {
        let t = ctl.tokens(call.body.len());
        json!({"type": "tokens", "input_tokens": t.input,
            "input_token_details": {"text_tokens": 0, "audio_tokens": t.input},
            "output_tokens": t.output, "total_tokens": t.input + t.output})
    } else {
        json!({"type": "duration", "seconds": seconds})
    };
    if by_tokens && form.text("stream") == Some("true") {
        let mut script = Script::counted(call.state, ctl.chunk_delay);
        for i in 0..ctl.deltas_before_cut() {
            let ev =
                json!({"type": "transcript.text.delta", "delta": crate::control::delta_text(i)});
            script.push_delta(reply::data(&ev.to_string()));
        }
        if ctl.cut_after.is_some() {
            script.cut();
        } else {
            let ev = json!({"type": "transcript.text.done", "text": text, "usage": usage});
            script.push(reply::data(&ev.to_string()));
        }
        return reply::sse(O, script);
    }
    let task = if translate { "translate" } else { "transcribe" };
    match form.text("response_format").unwrap_or("json") {
        "text" => reply::text("text/plain; charset=utf-8", format!("{text}\n")),
        "srt" => reply::text(
            "text/plain; charset=utf-8",
            format!(
                "1\n{} --> {}\n{text}\n\n",
                timestamp(0, ','),
                timestamp(seconds, ',')
            ),
        ),
        "vtt" => reply::text(
            "text/plain; charset=utf-8",
            format!(
                "WEBVTT\n\n{} --> {}\n{text}\n\n",
                timestamp(0, '.'),
                timestamp(seconds, '.')
            ),
        ),
        "verbose_json" => {
            let mut v = json!({"task": task, "language": "english", "duration": seconds as f64,
                "text": text, "segments": [{"id": 0, "seek": 0, "start": 0.0, "end": seconds as f64,
                    "text": text, "tokens": [50364, 50365], "temperature": 0.0, "avg_logprob": -0.2,
                    "compression_ratio": 1.0, "no_speech_prob": 0.0}]});
            if !translate {
                v["usage"] = usage;
            }
            reply::ok_json(&v)
        }
        _ if translate => reply::ok_json(&json!({"text": text})),
        _ => reply::ok_json(&json!({"text": text, "usage": usage})),
    }
}
