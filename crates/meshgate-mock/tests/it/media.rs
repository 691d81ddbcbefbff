//! OpenAI audio and images, including multipart uploads.

use base64::Engine as _;
use meshgate_mock::MockServer;
use serde_json::{json, Value};

use crate::common::{client, multipart, openai, parse_sse, read_all};

#[tokio::test]
async fn speech_binary_and_sse() {
    let m = MockServer::start().await.unwrap();
    let r = openai(&m, "/v1/audio/speech")
        .json(&json!({"model": "tts-1", "input": "hello", "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    assert_eq!(r.headers()["transfer-encoding"], "chunked");
    let audio = r.bytes().await.unwrap();
    assert_eq!(audio.len(), 4 * 1024);
    assert_eq!(&audio[..2], &[0xFF, 0xFB]);

    let r = openai(&m, "/v1/audio/speech")
        .header("x-mock-input-tokens", "14")
        .header("x-mock-output-tokens", "610")
        .json(
            &json!({"model": "gpt-4o-mini-tts", "input": "hello", "voice": "alloy",
            "stream_format": "sse"}),
        )
        .send()
        .await
        .unwrap();
    let (text, clean) = read_all(r).await;
    assert!(clean);
    let ev: Vec<Value> = parse_sse(&text).iter().map(|e| e.json()).collect();
    assert_eq!(ev.len(), 5);
    assert_eq!(ev[0]["type"], "speech.audio.delta");
    assert!(base64::engine::general_purpose::STANDARD
        .decode(ev[0]["audio"].as_str().unwrap())
        .is_ok());
    assert_eq!(ev[4]["type"], "speech.audio.done");
    assert_eq!(
        ev[4]["usage"],
        json!({"input_tokens": 14, "output_tokens": 610, "total_tokens": 624})
    );
}

async fn transcribe(
    m: &MockServer,
    path: &str,
    model: &str,
    format: Option<&str>,
    extra: &[(&str, &str)],
) -> reqwest::Response {
    let audio = vec![7u8; 40_000];
    let mut fields: Vec<(&str, Option<&str>, &[u8])> = vec![
        ("file", Some("a.mp3"), &audio),
        ("model", None, model.as_bytes()),
    ];
    if let Some(f) = format {
        fields.push(("response_format", None, f.as_bytes()));
    }
    let (ct, body) = multipart(&fields);
    let mut b = openai(m, path).header("content-type", ct).body(body);
    for (k, v) in extra {
        b = b.header(*k, *v);
    }
    b.send().await.unwrap()
}

#[tokio::test]
async fn transcription_formats() {
    let m = MockServer::start().await.unwrap();
    let p = "/v1/audio/transcriptions";

    let v: Value = transcribe(&m, p, "whisper-1", None, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["text"], "tok0 tok1 tok2 tok3");
    // 40,000 bytes at 16,000 bytes per second.
    assert_eq!(v["usage"], json!({"type": "duration", "seconds": 3}));

    let v: Value = transcribe(
        &m,
        p,
        "whisper-1",
        Some("verbose_json"),
        &[("x-mock-audio-seconds", "9")],
    )
    .await
    .json()
    .await
    .unwrap();
    assert_eq!(v["duration"], 9.0);
    assert_eq!(v["usage"]["seconds"], 9);
    assert!(v["segments"].is_array());

    for model in ["gpt-4o-transcribe", "gpt-4o-mini-transcribe"] {
        let v: Value = transcribe(
            &m,
            p,
            model,
            Some("json"),
            &[
                ("x-mock-input-tokens", "95"),
                ("x-mock-output-tokens", "12"),
            ],
        )
        .await
        .json()
        .await
        .unwrap();
        assert_eq!(
            v["usage"],
            json!({"type": "tokens", "input_tokens": 95,
                "input_token_details": {"text_tokens": 0, "audio_tokens": 95},
                "output_tokens": 12, "total_tokens": 107})
        );
    }

    for (format, starts) in [
        ("text", "tok0"),
        ("srt", "1\n00:00:00,000 --> "),
        ("vtt", "WEBVTT\n\n"),
    ] {
        let r = transcribe(&m, p, "whisper-1", Some(format), &[]).await;
        assert!(r.headers()["content-type"]
            .to_str()
            .unwrap()
            .starts_with("text/plain"));
        let text = r.text().await.unwrap();
        assert!(text.starts_with(starts), "{format}: {text:?}");
        assert!(text.contains("tok3"));
        assert!(!text.contains("usage"));
    }

    // Missing file is a native 400.
    let (ct, body) = multipart(&[("model", None, b"whisper-1")]);
    let r = openai(&m, p)
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 400);
    let v: Value = r.json().await.unwrap();
    assert_eq!(v["error"]["param"], "file");
}

#[tokio::test]
async fn translation_formats() {
    let m = MockServer::start().await.unwrap();
    let p = "/v1/audio/translations";
    let v: Value = transcribe(&m, p, "whisper-1", None, &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v, json!({"text": "tok0 tok1 tok2 tok3"}));
    let v: Value = transcribe(&m, p, "whisper-1", Some("verbose_json"), &[])
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(v["duration"], 3.0);
    assert_eq!(v["task"], "translate");
    assert!(v.get("usage").is_none());
    let text = transcribe(&m, p, "whisper-1", Some("text"), &[])
        .await
        .text()
        .await
        .unwrap();
    assert_eq!(text, "tok0 tok1 tok2 tok3\n");
}

#[tokio::test]
async fn image_generation_gpt_image_and_dalle() {
    let m = MockServer::start().await.unwrap();
    let v: Value = openai(&m, "/v1/images/generations")
        .header("x-mock-input-tokens", "50")
        .json(
            &json!({"model": "gpt-image-1", "prompt": "a cat", "n": 2, "size": "1024x1536",
            "quality": "high"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert_eq!(v["size"], "1024x1536");
    assert_eq!(v["quality"], "high");
    assert_eq!(v["usage"]["input_tokens"], 50);
    assert_eq!(
        v["usage"]["input_tokens_details"],
        json!({"text_tokens": 50, "image_tokens": 0})
    );
    assert_eq!(v["usage"]["output_tokens"], 2 * 6240);
    let png = base64::engine::general_purpose::STANDARD
        .decode(v["data"][0]["b64_json"].as_str().unwrap())
        .unwrap();
    assert_eq!(&png[..8], b"\x89PNG\r\n\x1a\n");

    let v: Value = openai(&m, "/v1/images/generations")
        .json(&json!({"model": "dall-e-3", "prompt": "a cat"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert!(v.get("usage").is_none());
    let url = v["data"][0]["url"].as_str().unwrap();
    assert!(url.starts_with(&m.url()));
    assert!(v["data"][0]["revised_prompt"].is_string());
    let r = client().get(url).send().await.unwrap();
    assert_eq!(r.headers()["content-type"], "image/png");
    assert_eq!(&r.bytes().await.unwrap()[..4], b"\x89PNG");

    let v: Value = openai(&m, "/v1/images/generations")
        .json(
            &json!({"model": "dall-e-2", "prompt": "a cat", "n": 3, "response_format": "b64_json"}),
        )
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 3);
    assert!(v["data"][2]["b64_json"].is_string());
}

#[tokio::test]
async fn image_edits_and_variations_multipart() {
    let m = MockServer::start().await.unwrap();
    let img = b"\x89PNG fake".to_vec();
    let (ct, body) = multipart(&[
        ("image[]", Some("a.png"), &img),
        ("image[]", Some("b.png"), &img),
        ("prompt", None, b"add a hat"),
        ("model", None, b"gpt-image-1"),
        ("quality", None, b"low"),
    ]);
    let v: Value = openai(&m, "/v1/images/edits")
        .header("content-type", ct)
        .header("x-mock-input-tokens", "100")
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 1);
    assert_eq!(v["quality"], "low");
    assert_eq!(v["size"], "1024x1024");
    let d = &v["usage"]["input_tokens_details"];
    assert_eq!(d["text_tokens"], 3);
    assert_eq!(d["image_tokens"], 97);
    assert_eq!(v["usage"]["output_tokens"], 272);

    let (ct, body) = multipart(&[("image", Some("a.png"), &img), ("n", None, b"2")]);
    let v: Value = openai(&m, "/v1/images/variations")
        .header("content-type", ct)
        .body(body)
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(v["data"].as_array().unwrap().len(), 2);
    assert!(v["data"][0]["url"].is_string());
    assert!(v.get("usage").is_none());
}
