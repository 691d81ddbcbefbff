//! The local endpoint: checks the local bearer, swaps it for the upstream credential and
//! forwards the call to the remote meshgate, streaming both bodies as they come. When the
//! answer's body ends (or the client goes away) the call is reported for metering.

use super::report::FinishedCall;
use super::upstream::{error_chain, Upstream, PROJECT_HEADER};
use axum::body::Body;
use axum::extract::{Request, State};
use axum::response::Response;
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use http::{header, HeaderMap};
use meshgate_gateway::error::{ErrorKind, GatewayError};
use meshgate_types::Surface;
use std::pin::Pin;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::{Instant, SystemTime};
use tokio::sync::mpsc;

/// What every forwarded call needs.
pub struct Forwarder {
    pub upstream: Upstream,
    /// The local bearer; `None` with `--insecure`.
    pub bearer: Option<String>,
    /// Finished calls, for metering.
    pub finished: mpsc::UnboundedSender<FinishedCall>,
    /// Calls whose answer has not ended yet.
    pub in_flight: Arc<AtomicU64>,
}

/// Request headers that concern one connection, or the local credential: never forwarded.
const NOT_FORWARDED: [&str; 11] = [
    "host",
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
    "upgrade",
    "authorization",
    "x-api-key",
];

/// Response headers that concern one connection.
const HOP_BY_HOP: [&str; 6] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "trailer",
    "transfer-encoding",
    "upgrade",
];

/// Which API a local path speaks, for the shape of the proxy's own errors.
fn surface_of(path: &str, headers: &HeaderMap) -> Surface {
    if path.starts_with("/anthropic/")
        || (path.starts_with("/v1/") && headers.contains_key("anthropic-version"))
    {
        Surface::Anthropic
    } else {
        Surface::OpenAi
    }
}

/// The paths served: the gateway's three prefixes.
fn forwarded_path(path: &str) -> bool {
    ["/openai/v1/", "/anthropic/", "/v1/"]
        .iter()
        .any(|prefix| path.starts_with(prefix))
}

/// The credential a local client presented: `Authorization: Bearer` or `x-api-key`.
fn presented(headers: &HeaderMap) -> Vec<&str> {
    let bearer = headers
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.split_once(' '))
        .filter(|(scheme, _)| scheme.eq_ignore_ascii_case("bearer"))
        .map(|(_, token)| token.trim());
    let api_key = headers
        .get("x-api-key")
        .and_then(|v| v.to_str().ok())
        .map(str::trim);
    bearer.into_iter().chain(api_key).collect()
}

/// Compares secrets in time independent of where they differ.
fn same_secret(a: &str, b: &str) -> bool {
    a.len() == b.len()
        && a.bytes()
            .zip(b.bytes())
            .fold(0u8, |acc, (x, y)| acc | (x ^ y))
            == 0
}

fn refuse(surface: Surface, kind: ErrorKind, message: impl Into<String>) -> Response {
    let mut error = GatewayError::new(kind, message);
    if kind == ErrorKind::Authentication {
        error = error.with_code("invalid_api_key");
    }
    error.into_response(surface, "meshgate-proxy")
}

/// Serves one local call.
pub async fn forward(State(fwd): State<Arc<Forwarder>>, request: Request) -> Response {
    let started = Instant::now();
    let at = SystemTime::now();
    let path = request.uri().path().to_string();
    let surface = surface_of(&path, request.headers());
    if !forwarded_path(&path) {
        return refuse(
            surface,
            ErrorKind::NotFound,
            format!("meshgate proxy serves /openai/v1/*, /anthropic/* and /v1/*, not {path}"),
        );
    }
    if let Some(bearer) = &fwd.bearer {
        let offered = presented(request.headers());
        if !offered.iter().any(|o| same_secret(o, bearer)) {
            let message = match offered.is_empty() {
                true => "send the local bearer printed by `meshgate proxy` as the API key",
                false => "that is not the local bearer printed by `meshgate proxy`",
            };
            return refuse(surface, ErrorKind::Authentication, message);
        }
    }
    let (parts, body) = request.into_parts();
    let path_and_query = parts
        .uri
        .path_and_query()
        .map_or(path.as_str(), |p| p.as_str());
    let mut headers = HeaderMap::with_capacity(parts.headers.len());
    // `--project-id` replaces a project the client named.
    let own_project = fwd.upstream.project_id.is_some();
    for (name, value) in &parts.headers {
        let replaced = own_project && name.as_str() == PROJECT_HEADER;
        if !replaced && !NOT_FORWARDED.contains(&name.as_str()) {
            headers.append(name.clone(), value.clone());
        }
    }
    let upstream = fwd
        .upstream
        .request(parts.method.clone(), path_and_query)
        .headers(headers)
        .body(reqwest::Body::wrap_stream(body.into_data_stream()));

    let mut call = CallGuard::new(&fwd, FinishedCall::new(at, started, surface));
    // Dropping this future (the client went away) drops the upstream call with it.
    let response = match upstream.send().await {
        Ok(response) => response,
        Err(e) => {
            let reason = error_chain(&e);
            call.record.status = Some(502);
            call.record.error = Some(reason.clone());
            call.record.upstream_unreachable = e.is_connect() || e.is_timeout();
            return refuse(
                surface,
                ErrorKind::BadGateway,
                format!("meshgate proxy cannot reach the gateway: {reason}"),
            );
        }
    };
    call.record.status = Some(response.status().as_u16());
    call.record.event_id = response
        .headers()
        .get(meshgate_gateway::EVENT_ID_HEADER)
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    let mut builder = Response::builder().status(response.status());
    if let Some(out) = builder.headers_mut() {
        for (name, value) in response.headers() {
            if !HOP_BY_HOP.contains(&name.as_str()) {
                out.append(name.clone(), value.clone());
            }
        }
    }
    let body = Body::from_stream(Relayed {
        remaining: response.content_length(),
        inner: Box::pin(response.bytes_stream()),
        call,
    });
    builder.body(body).unwrap_or_else(|e| {
        refuse(
            surface,
            ErrorKind::Internal,
            format!("cannot build the response: {e}"),
        )
    })
}

/// The in-flight count and the report of one call: sent once, when the answer ended, broke
/// off, or was dropped unfinished.
struct CallGuard {
    record: FinishedCall,
    finished: Option<mpsc::UnboundedSender<FinishedCall>>,
    in_flight: Arc<AtomicU64>,
}

impl CallGuard {
    fn new(fwd: &Forwarder, record: FinishedCall) -> Self {
        fwd.in_flight.fetch_add(1, Ordering::Relaxed);
        CallGuard {
            record,
            finished: Some(fwd.finished.clone()),
            in_flight: fwd.in_flight.clone(),
        }
    }

    fn finish(&mut self, error: Option<String>) {
        if let Some(tx) = self.finished.take() {
            self.in_flight.fetch_sub(1, Ordering::Relaxed);
            let mut record = self.record.clone();
            record.latency = self.record.started.elapsed();
            record.error = record.error.or(error);
            let _ = tx.send(record);
        }
    }
}

impl Drop for CallGuard {
    fn drop(&mut self) {
        self.finish(Some("the client went away before the answer ended".into()));
    }
}

type ByteStream = Pin<Box<dyn Stream<Item = reqwest::Result<Bytes>> + Send>>;

/// The upstream body, chunk by chunk as it arrives (pulled only as fast as the client
/// reads), reporting the call when it ends.
struct Relayed {
    inner: ByteStream,
    /// Bytes still due by the answer's `content-length`: the server stops reading the body
    /// once they are sent, without waiting for its end.
    remaining: Option<u64>,
    call: CallGuard,
}

impl Stream for Relayed {
    type Item = reqwest::Result<Bytes>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        let polled = self.inner.poll_next_unpin(cx);
        match &polled {
            Poll::Ready(Some(Ok(chunk))) => {
                if let Some(remaining) = self.remaining.as_mut() {
                    *remaining = remaining.saturating_sub(chunk.len() as u64);
                    if *remaining == 0 {
                        self.call.finish(None);
                    }
                }
            }
            Poll::Ready(None) => self.call.finish(None),
            Poll::Ready(Some(Err(e))) => {
                let reason = format!("the gateway's answer broke off: {}", error_chain(e));
                self.call.finish(Some(reason));
            }
            _ => {}
        }
        polled
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use http::HeaderValue;

    #[test]
    fn the_local_bearer_is_read_from_either_header() {
        let mut h = HeaderMap::new();
        assert!(presented(&h).is_empty());
        h.insert("authorization", HeaderValue::from_static("Bearer mgl_a"));
        h.insert("x-api-key", HeaderValue::from_static("mgl_b"));
        assert_eq!(presented(&h), vec!["mgl_a", "mgl_b"]);
        assert!(same_secret("mgl_a", "mgl_a"));
        assert!(!same_secret("mgl_a", "mgl_b"));
        assert!(!same_secret("mgl_a", "mgl_ab"));
    }

    #[test]
    fn paths_and_surfaces() {
        let h = HeaderMap::new();
        assert!(forwarded_path("/openai/v1/chat/completions"));
        assert!(forwarded_path("/anthropic/v1/messages"));
        assert!(!forwarded_path("/admin/v1/keys"));
        assert_eq!(surface_of("/anthropic/v1/messages", &h), Surface::Anthropic);
        assert_eq!(surface_of("/v1/chat/completions", &h), Surface::OpenAi);
    }
}
