//! Test helpers: a client, request builders for both surfaces, an SSE parser, a multipart encoder.

use meshgate_mock::MockServer;
use serde_json::Value;

pub const OPENAI_KEY: &str = "sk-mock-openai";
pub const ANTHROPIC_KEY: &str = "sk-ant-mock";

pub fn client() -> reqwest::Client {
    reqwest::Client::builder().build().unwrap()
}

/// A POST to an OpenAI path with the right key.
pub fn openai(m: &MockServer, path: &str) -> reqwest::RequestBuilder {
    client()
        .post(format!("{}{path}", m.url()))
        .bearer_auth(OPENAI_KEY)
}

/// A POST to an Anthropic path with the right key and version.
pub fn anthropic(m: &MockServer, path: &str) -> reqwest::RequestBuilder {
    with_anthropic_headers(client().post(format!("{}{path}", m.url())))
}

pub fn with_anthropic_headers(b: reqwest::RequestBuilder) -> reqwest::RequestBuilder {
    b.header("x-api-key", ANTHROPIC_KEY)
        .header("anthropic-version", "2023-06-01")
}

/// One parsed SSE event: its `event:` name (if any) and `data:` text.
#[derive(Debug, Clone)]
pub struct Event {
    pub name: Option<String>,
    pub data: String,
}

impl Event {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.data).unwrap()
    }
}

/// Splits an SSE body into events (LF framing, as the mock writes it).
pub fn parse_sse(body: &str) -> Vec<Event> {
    body.split("\n\n")
        .filter(|b| !b.trim().is_empty())
        .map(|block| {
            let mut name = None;
            let mut data = Vec::new();
            for line in block.lines() {
                if let Some(n) = line.strip_prefix("event: ") {
                    name = Some(n.to_owned());
                } else if let Some(d) = line.strip_prefix("data: ") {
                    data.push(d);
                }
            }
            Event {
                name,
                data: data.join("\n"),
            }
        })
        .collect()
}

/// Reads the body until the server ends or cuts it; returns the text and whether it ended cleanly.
pub async fn read_all(mut resp: reqwest::Response) -> (String, bool) {
    let mut buf = Vec::new();
    loop {
        match resp.chunk().await {
            Ok(Some(c)) => buf.extend_from_slice(&c),
            Ok(None) => return (String::from_utf8(buf).unwrap(), true),
            Err(_) => return (String::from_utf8(buf).unwrap(), false),
        }
    }
}

/// A multipart/form-data body: `(name, filename, bytes)`; returns the content type and body.
pub fn multipart(fields: &[(&str, Option<&str>, &[u8])]) -> (String, Vec<u8>) {
    let boundary = "mockboundary7MA4YWxkTrZu0gW";
    let mut body = Vec::new();
    for (name, filename, data) in fields {
        body.extend_from_slice(format!("--{boundary}\r\n").as_bytes());
        match filename {
            Some(f) => body.extend_from_slice(
                format!(
                    "Content-Disposition: form-data; name=\"{name}\"; filename=\"{f}\"\r\nContent-Type: application/octet-stream\r\n\r\n"
                )
                .as_bytes(),
            ),
            None => body.extend_from_slice(
                format!("Content-Disposition: form-data; name=\"{name}\"\r\n\r\n").as_bytes(),
            ),
        }
        body.extend_from_slice(data);
        body.extend_from_slice(b"\r\n");
    }
    body.extend_from_slice(format!("--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}
