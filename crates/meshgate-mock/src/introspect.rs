//! HTTP introspection for non-Rust tests: `/_mock/requests`, `/_mock/stats`, `/_mock/reset`, `/_mock/image.png`.

use base64::Engine as _;
use http::{HeaderValue, Method, StatusCode};
use serde::Serialize;

use crate::body::MockBody;
use crate::images::PNG_B64;
use crate::reply::{self, Resp};
use crate::state::{MockState, RecordedRequest};

/// A recorded request plus its body parsed as JSON when it is JSON.
#[derive(Serialize)]
struct Listed {
    #[serde(flatten)]
    request: RecordedRequest,
    json: Option<serde_json::Value>,
}

pub(crate) fn handle(state: &MockState, parts: &http::request::Parts, _scheme: &str) -> Resp {
    match (&parts.method, parts.uri.path()) {
        (&Method::GET, "/_mock/requests") => {
            let list: Vec<Listed> = state
                .requests()
                .into_iter()
                .map(|request| Listed {
                    json: request.json(),
                    request,
                })
                .collect();
            reply::ok_json(&list)
        }
        (&Method::GET, "/_mock/stats") => reply::ok_json(&state.stats()),
        (&Method::POST, "/_mock/reset") => {
            state.clear();
            reply::ok_json(&serde_json::json!({"ok": true}))
        }
        (&Method::GET, "/_mock/image.png") => {
            let png = base64::engine::general_purpose::STANDARD
                .decode(PNG_B64)
                .unwrap_or_default();
            reply::with_body(
                StatusCode::OK,
                HeaderValue::from_static("image/png"),
                MockBody::full(png),
            )
        }
        _ => reply::json(
            StatusCode::NOT_FOUND,
            &serde_json::json!({"error": {"message": "unknown mock introspection path",
                "type": "invalid_request_error", "param": null, "code": null}}),
        ),
    }
}
