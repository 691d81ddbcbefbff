//! The OpenAI surface end to end: bytes pass through, the provider key is injected, and
//! every endpoint is metered exactly.

use crate::harness::{sse_data, usage_u64, Harness};
use serde_json::{json, Value};

#[tokio::test]
async fn chat_completion_is_forwarded_and_metered_exactly() {
    let h = Harness::start().await;
    let response = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-input-tokens", "1850")
        .header("x-mock-cached-tokens", "1536")
        .header("x-mock-output-tokens", "240")
        .json(&json!({"model": "gpt-4o", "messages": [{"role": "user", "content": "hi"}]}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(
        response.headers().get("x-request-id").is_some(),
        "provider request id relayed"
    );
    let request_id = response.headers()["x-meshgate-request-id"]
        .to_str()
        .unwrap()
        .to_string();
    let body: Value = response.json().await.unwrap();
    assert_eq!(body["usage"]["prompt_tokens"], 1850);

    // The provider saw its own key, never the client's.
    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(seen.header("authorization"), Some("Bearer sk-mock-openai"));
    assert!(!seen.headers.iter().any(|(_, v)| v.contains(&h.key)));

    let event = h.one_event().await;
    assert_eq!(event["request_id"], request_id.as_str());
    assert_eq!(event["outcome"], "ok");
    assert_eq!(event["status"], 200);
    assert_eq!(event["endpoint"], "chat_completions");
    assert_eq!(event["key_id"], h.key_id.as_str());
    // prompt_tokens_details carries audio_tokens: 0 beside cached_tokens; uncached input stays.
    assert_eq!(usage_u64(&event, "input_uncached"), Some(314));
    assert_eq!(usage_u64(&event, "cache_read"), Some(1536));
    assert_eq!(usage_u64(&event, "output"), Some(240));
    // 314 x 2.5e-6 + 1536 x 1.25e-6 + 240 x 1e-5, the reference's worked example.
    assert_eq!(event["cost_usd"], "0.005105");
    assert!(event["price_id"].as_str().unwrap().contains("gpt-4o"));
    assert!(event["upstream_request_id"]
        .as_str()
        .unwrap()
        .starts_with("req_mock_"));
}

#[tokio::test]
async fn v1_alias_and_query_strings_pass_through() {
    let h = Harness::start().await;
    let response = h
        .openai("/v1/chat/completions?trace=1&x=a%20b")
        .json(&json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    let seen = h.mock.state.last_request().unwrap();
    assert_eq!(seen.path, "/v1/chat/completions");
    assert_eq!(seen.query.as_deref(), Some("trace=1&x=a%20b"));
}

#[tokio::test]
async fn stream_without_include_usage_is_metered_and_the_client_sees_what_it_asked_for() {
    let h = Harness::start().await;
    let response = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-input-tokens", "100")
        .header("x-mock-output-tokens", "9")
        .header("x-mock-chunks", "5")
        .json(&json!({"model": "gpt-4o-mini", "stream": true, "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);
    assert!(response.headers()["content-type"]
        .to_str()
        .unwrap()
        .starts_with("text/event-stream"));
    let text = response.text().await.unwrap();
    let data = sse_data(&text);
    assert_eq!(data.last().unwrap(), "[DONE]");
    let mut content = String::new();
    for d in &data[..data.len() - 1] {
        let chunk: Value = serde_json::from_str(d).unwrap();
        assert!(
            !chunk["choices"].as_array().unwrap().is_empty(),
            "usage-only chunk leaked: {d}"
        );
        content.push_str(
            chunk["choices"][0]["delta"]["content"]
                .as_str()
                .unwrap_or(""),
        );
    }
    assert_eq!(content, "tok0 tok1 tok2 tok3 tok4 ");
    // meshgate asked the provider for usage.
    let sent = h.mock.state.last_request().unwrap().json().unwrap();
    assert_eq!(sent["stream_options"]["include_usage"], true);

    let event = h.one_event().await;
    assert_eq!(event["streamed"], true);
    assert_eq!(event["outcome"], "ok");
    assert_eq!(usage_u64(&event, "input_uncached"), Some(100));
    assert_eq!(usage_u64(&event, "output"), Some(9));
    // gpt-4o-mini: 100 x 1.5e-7 + 9 x 6e-7
    assert_eq!(event["cost_usd"], "0.0000204");
}

#[tokio::test]
async fn stream_with_include_usage_keeps_the_usage_chunk() {
    let h = Harness::start().await;
    for usage_with_choices in ["0", "1"] {
        let mut request = h
            .openai("/openai/v1/chat/completions")
            .header("x-mock-input-tokens", "10")
            .header("x-mock-output-tokens", "4");
        if usage_with_choices == "1" {
            request = request.header("x-mock-usage-with-choices", "1");
        }
        let text = request
            .json(&json!({"model": "gpt-4o-mini", "stream": true,
                "stream_options": {"include_usage": true}, "messages": []}))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        let usage_chunks: Vec<Value> = sse_data(&text)
            .iter()
            .filter(|d| *d != "[DONE]")
            .map(|d| serde_json::from_str::<Value>(d).unwrap())
            .filter(|c| c["usage"].is_object())
            .collect();
        assert_eq!(usage_chunks.len(), 1);
        assert_eq!(usage_chunks[0]["usage"]["prompt_tokens"], 10);
    }
    let events = h.wait_events(2).await;
    assert_eq!(events.len(), 2);
    for e in events {
        assert_eq!(usage_u64(&e, "input_uncached"), Some(10));
        assert_eq!(usage_u64(&e, "output"), Some(4));
    }
}

#[tokio::test]
async fn responses_stream_and_terminal_states_are_billed() {
    let h = Harness::start().await;
    let text = h
        .openai("/openai/v1/responses")
        .header("x-mock-input-tokens", "1200")
        .header("x-mock-cached-tokens", "1024")
        .header("x-mock-output-tokens", "300")
        .header("x-mock-reasoning-tokens", "192")
        .json(&json!({"model": "gpt-5", "input": "hi", "stream": true}))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.contains("event: response.completed"));
    assert!(!text.contains("[DONE]"));
    for status in ["incomplete", "failed"] {
        let response = h
            .openai("/openai/v1/responses")
            .header("x-mock-input-tokens", "50")
            .header("x-mock-output-tokens", "7")
            .header("x-mock-response-status", status)
            .json(&json!({"model": "gpt-5", "input": "hi", "stream": true}))
            .send()
            .await
            .unwrap();
        assert!(response
            .text()
            .await
            .unwrap()
            .contains(&format!("response.{status}")));
    }
    let events = h.wait_events(3).await;
    let completed = &events[2];
    assert_eq!(completed["outcome"], "ok");
    assert_eq!(usage_u64(completed, "input_uncached"), Some(176));
    assert_eq!(usage_u64(completed, "cache_read"), Some(1024));
    assert_eq!(usage_u64(completed, "reasoning"), Some(192));
    // gpt-5: 176 x 1.25e-6 + 1024 x 1.25e-7 + 300 x 1e-5
    assert_eq!(completed["cost_usd"], "0.003348");
    for e in &events[..2] {
        assert_eq!(e["outcome"], "incomplete");
        assert_eq!(usage_u64(e, "input_uncached"), Some(50));
        assert_eq!(usage_u64(e, "output"), Some(7));
        // 50 x 1.25e-6 + 7 x 1e-5
        assert_eq!(e["cost_usd"], "0.0001325");
    }
}

#[tokio::test]
async fn counting_endpoints_are_forwarded_but_never_billed() {
    let h = Harness::start().await;
    let r = h
        .openai("/openai/v1/responses/input_tokens")
        .json(&json!({"model": "gpt-5", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let event = h.one_event().await;
    assert_eq!(event["endpoint"], "responses_input_tokens");
    assert!(event["cost_usd"].is_null());
    let r = h
        .openai("/openai/v1/responses/compact")
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-output-tokens", "100")
        .json(&json!({"model": "gpt-5", "input": "hello"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let events = h.wait_events(2).await;
    assert_eq!(events[0]["endpoint"], "responses_compact");
    // 1000 x 1.25e-6 + 100 x 1e-5
    assert_eq!(events[0]["cost_usd"], "0.00225");
}

#[tokio::test]
async fn embeddings_images_and_models() {
    let h = Harness::start().await;
    let r = h
        .openai("/openai/v1/embeddings")
        .header("x-mock-input-tokens", "8")
        .json(&json!({"model": "text-embedding-3-small", "input": "hello", "encoding_format": "base64"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert!(body["data"][0]["embedding"].is_string());

    let r = h
        .openai("/openai/v1/images/generations")
        .json(
            &json!({"model": "dall-e-3", "prompt": "a cat", "size": "1024x1792", "quality": "hd"}),
        )
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    let r = h
        .http
        .get(h.url("/openai/v1/models"))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let r = h
        .http
        .get(h.url("/v1/models/gpt-4o"))
        .bearer_auth(&h.key)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);

    // Model lists are answered by meshgate itself: two forwarded calls, two events.
    let events = h.wait_events(2).await;
    assert_eq!(events.len(), 2, "{events:#?}");
    assert_eq!(h.mock.state.stats().requests, 2);
    let by_endpoint = |name: &str| {
        events
            .iter()
            .find(|e| e["endpoint"] == name)
            .unwrap()
            .clone()
    };
    let embedding = by_endpoint("embeddings");
    assert_eq!(usage_u64(&embedding, "input_uncached"), Some(8));
    assert_eq!(embedding["cost_usd"], "0.00000016");
    let image = by_endpoint("images_generations");
    assert_eq!(usage_u64(&image, "images"), Some(1));
    assert_eq!(image["cost_usd"], "0.12");
    assert!(events.iter().all(|e| e["endpoint"] != "models"));
}

#[tokio::test]
async fn speech_is_binary_and_metered_by_characters() {
    let h = Harness::start().await;
    let input = "Héllo wörld ☃"; // 13 characters, more bytes
    let r = h
        .openai("/openai/v1/audio/speech")
        .json(&json!({"model": "tts-1", "input": input, "voice": "alloy"}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    assert_eq!(r.headers()["content-type"], "audio/mpeg");
    let audio = r.bytes().await.unwrap();
    assert!(audio.len() > 1000);
    let event = h.one_event().await;
    assert_eq!(usage_u64(&event, "characters"), Some(13));
    // tts-1: 13 x 1.5e-5
    assert_eq!(event["cost_usd"], "0.000195");
}

#[tokio::test]
async fn multipart_transcription_passes_intact_and_is_metered() {
    let h = Harness::start().await;
    let audio: Vec<u8> = (0..48_000u32).map(|i| (i % 251) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("model", "whisper-1")
        .text("response_format", "json")
        .part(
            "file",
            reqwest::multipart::Part::bytes(audio.clone()).file_name("a.wav"),
        );
    let r = h
        .openai("/openai/v1/audio/transcriptions")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let seen = h.mock.state.last_request().unwrap();
    assert!(
        seen.body
            .windows(audio.len())
            .any(|w| w == audio.as_slice()),
        "the uploaded file reached the provider byte for byte"
    );
    let event = h.one_event().await;
    assert_eq!(event["model"], "whisper-1");
    // 48,000 bytes at the mock's 16,000 bytes per second: 3 seconds x 0.0001.
    assert_eq!(event["usage"]["audio_seconds"], "3");
    assert_eq!(event["cost_usd"], "0.0003");
}

#[tokio::test]
async fn provider_errors_reach_the_client_unchanged_and_are_recorded() {
    let h = Harness::start().await;
    let r = h
        .openai("/openai/v1/chat/completions")
        .header("x-mock-error", "429")
        .json(&json!({"model": "gpt-4o", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 429);
    assert_eq!(r.headers()["retry-after"], "1");
    let body: Value = r.json().await.unwrap();
    assert!(body["error"]["message"].is_string());
    let event = h.one_event().await;
    assert_eq!(event["outcome"], "upstream_error");
    assert_eq!(event["status"], 429);
    assert!(event["cost_usd"].is_null());
}

#[tokio::test]
async fn multipart_image_edits_are_metered_by_tokens() {
    let h = Harness::start().await;
    let png: Vec<u8> = (0..2048u32).map(|i| (i % 256) as u8).collect();
    let form = reqwest::multipart::Form::new()
        .text("model", "gpt-image-1")
        .text("prompt", "add a hat")
        .text("n", "2")
        .text("size", "1024x1024")
        .text("quality", "low")
        .part(
            "image",
            reqwest::multipart::Part::bytes(png).file_name("cat.png"),
        );
    let r = h
        .openai("/openai/v1/images/edits")
        .multipart(form)
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 200);
    let body: Value = r.json().await.unwrap();
    assert_eq!(body["data"].as_array().unwrap().len(), 2);
    let reported = body["usage"].clone();
    let event = h.one_event().await;
    assert_eq!(event["endpoint"], "images_edits");
    assert_eq!(event["model"], "gpt-image-1");
    assert_eq!(usage_u64(&event, "images"), Some(2));
    assert_eq!(
        usage_u64(&event, "output"),
        reported["output_tokens"].as_u64()
    );
    assert_eq!(
        usage_u64(&event, "input_uncached"),
        reported["input_tokens"].as_u64(),
        "text and image input tokens"
    );
    // gpt-image-1: text input $5/M, image input $10/M, image output $40/M.
    let text_in = reported["input_tokens_details"]["text_tokens"]
        .as_u64()
        .unwrap();
    let image_in = reported["input_tokens_details"]["image_tokens"]
        .as_u64()
        .unwrap();
    let out = reported["output_tokens"].as_u64().unwrap();
    let micro = text_in * 5 + image_in * 10 + out * 40; // millionths of a dollar
    let expected = rust_decimal::Decimal::new(micro as i64, 6)
        .normalize()
        .to_string();
    assert_eq!(event["cost_usd"], expected.as_str(), "{event}");
}

/// A mono 16-bit WAV file of `tenths` tenths of a second at 16 kHz.
fn wav(tenths: u32) -> Vec<u8> {
    let byte_rate = 32_000u32;
    let data_len = byte_rate / 10 * tenths;
    let mut out = Vec::new();
    out.extend_from_slice(b"RIFF");
    out.extend_from_slice(&(36 + data_len).to_le_bytes());
    out.extend_from_slice(b"WAVEfmt ");
    out.extend_from_slice(&16u32.to_le_bytes());
    out.extend_from_slice(&[1, 0, 1, 0]);
    out.extend_from_slice(&16_000u32.to_le_bytes());
    out.extend_from_slice(&byte_rate.to_le_bytes());
    out.extend_from_slice(&[2, 0, 16, 0]);
    out.extend_from_slice(b"data");
    out.extend_from_slice(&data_len.to_le_bytes());
    out.resize(out.len() + data_len as usize, 0);
    out
}

#[tokio::test]
async fn audio_answers_without_usage_are_billed_on_the_uploaded_length() {
    let h = Harness::start().await;
    for (path, format) in [
        ("/openai/v1/audio/transcriptions", "text"),
        ("/openai/v1/audio/transcriptions", "srt"),
        ("/openai/v1/audio/translations", "json"),
    ] {
        let form = reqwest::multipart::Form::new()
            .text("model", "whisper-1")
            .text("response_format", format)
            .part(
                "file",
                reqwest::multipart::Part::bytes(wav(25)).file_name("a.wav"),
            );
        let r = h.openai(path).multipart(form).send().await.unwrap();
        assert_eq!(r.status(), 200, "{path} {format}");
        r.bytes().await.unwrap();
    }
    let events = h.wait_events(3).await;
    for e in events {
        // 2.5 s of audio, billed as 3 whole seconds at 0.0001 per second.
        assert_eq!(e["usage"]["audio_seconds"], "3", "{e:#}");
        assert_eq!(e["cost_usd"], "0.0003");
    }
}
