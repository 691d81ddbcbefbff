//! OpenAI images: generations (JSON), edits and variations (multipart), returning a tiny PNG.

use http::StatusCode;
use serde::Deserialize;
use serde_json::{json, Value};

use crate::media::{missing, read_form};
use crate::reply::{self, now_secs, Resp, Surface};
use crate::router::Call;

/// A valid 1x1 RGBA PNG, base64.
pub(crate) const PNG_B64: &str =
    "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mNkYPhfDwAChwGA60e6kgAAAABJRU5ErkJggg==";

/// What every image endpoint needs to build its answer.
struct ImageAsk<'a> {
    model: &'a str,
    n: u64,
    size: Option<&'a str>,
    quality: Option<&'a str>,
    response_format: Option<&'a str>,
    /// Length of the prompt in bytes, to split input tokens into text and image.
    prompt_len: usize,
    /// Edits and variations carry input images.
    with_images: bool,
}

fn is_gpt_image(model: &str) -> bool {
    model.starts_with("gpt-image") || model.starts_with("chatgpt-image")
}

/// Output image tokens per image, by quality and shape (the order of OpenAI's published table).
fn tokens_per_image(quality: &str, size: &str) -> u64 {
    let square = matches!(size, "1024x1024" | "auto");
    match (quality, square) {
        ("low", true) => 272,
        ("low", false) => 408,
        ("high", true) => 4160,
        ("high", false) => 6240,
        (_, true) => 1056,
        (_, false) => 1584,
    }
}

fn answer(call: &Call<'_>, ask: &ImageAsk<'_>) -> Resp {
    if ask.n == 0 || ask.n > 10 {
        return reply::openai_error(
            StatusCode::BAD_REQUEST,
            &format!("{} is greater than the maximum of 10 - 'n'", ask.n),
            "invalid_request_error",
            Some("integer_above_max_value"),
            Some("n"),
        );
    }
    if ask.model == "dall-e-3" && ask.n != 1 {
        return reply::openai_error(
            StatusCode::BAD_REQUEST,
            "You must provide n=1 for this model.",
            "invalid_request_error",
            None,
            Some("n"),
        );
    }
    let created = now_secs();
    if is_gpt_image(ask.model) {
        let size = match ask.size {
            None | Some("auto") => "1024x1024",
            Some(s) => s,
        };
        let quality = match ask.quality {
            None | Some("auto") => "medium",
            Some(q) => q,
        };
        let ctl = &call.ctl;
        let input = ctl.input(call.body.len());
        let text = if ask.with_images {
            (ask.prompt_len as u64).div_ceil(4).min(input)
        } else {
            input
        };
        let output = ctl
            .output_tokens
            .unwrap_or(tokens_per_image(quality, size) * ask.n);
        let data: Vec<Value> = (0..ask.n).map(|_| json!({"b64_json": PNG_B64})).collect();
        return reply::ok_json(&json!({
            "created": created,
            "background": "opaque",
            "output_format": "png",
            "quality": quality,
            "size": size,
            "data": data,
            "usage": {"input_tokens": input,
                "input_tokens_details": {"text_tokens": text, "image_tokens": input - text},
                "output_tokens": output, "total_tokens": input + output,
                "output_tokens_details": {"text_tokens": 0, "image_tokens": output}},
        }));
    }
    let url = format!("{}/_mock/image.png", call.base_url());
    let b64 = ask.response_format == Some("b64_json");
    let data: Vec<Value> = (0..ask.n)
        .map(|_| {
            let mut d = if b64 {
                json!({"b64_json": PNG_B64})
            } else {
                json!({"url": url})
            };
            if ask.model == "dall-e-3" {
                d["revised_prompt"] = json!("A mock image.");
            }
            d
        })
        .collect();
    reply::ok_json(&json!({"created": created, "data": data}))
}

#[derive(Deserialize)]
struct GenerationRequest {
    prompt: Option<String>,
    model: Option<String>,
    n: Option<u64>,
    size: Option<String>,
    quality: Option<String>,
    response_format: Option<String>,
}

/// `POST /v1/images/generations`.
pub(crate) fn generation(call: &Call<'_>) -> Resp {
    let req: GenerationRequest = match serde_json::from_slice(call.body) {
        Ok(r) => r,
        Err(e) => {
            return call.bad_request(
                Surface::OpenAi,
                &format!("We could not parse the JSON body of your request. ({e})"),
            )
        }
    };
    let Some(prompt) = req.prompt.as_deref() else {
        return missing("prompt");
    };
    answer(
        call,
        &ImageAsk {
            model: req.model.as_deref().unwrap_or("dall-e-2"),
            n: req.n.unwrap_or(1),
            size: req.size.as_deref(),
            quality: req.quality.as_deref(),
            response_format: req.response_format.as_deref(),
            prompt_len: prompt.len(),
            with_images: false,
        },
    )
}

/// `POST /v1/images/edits` and `/v1/images/variations` (multipart).
pub(crate) async fn edit(call: &Call<'_>, variation: bool) -> Resp {
    let form = match read_form(call).await {
        Ok(f) => f,
        Err(e) => return e,
    };
    if form.get("image").or_else(|| form.get("image[]")).is_none() {
        return missing("image");
    }
    let prompt = form.text("prompt");
    if !variation && prompt.is_none() {
        return missing("prompt");
    }
    let n = match form.text("n").map(str::parse::<u64>) {
        None => 1,
        Some(Ok(n)) => n,
        Some(Err(_)) => return call.bad_request(Surface::OpenAi, "'n' must be an integer"),
    };
    answer(
        call,
        &ImageAsk {
            model: form.text("model").unwrap_or("dall-e-2"),
            n,
            size: form.text("size"),
            quality: form.text("quality"),
            response_format: form.text("response_format"),
            prompt_len: prompt.map_or(0, str::len),
            with_images: true,
        },
    )
}
