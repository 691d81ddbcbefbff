//! `GatewayError`: every refusal meshgate makes itself, rendered in the client's native
//! error shape (OpenAI `{"error":{..}}`, Anthropic `{"type":"error","error":{..}}`).

use axum::response::Response;
use bytes::Bytes;
use http::{header, HeaderValue, StatusCode};
use meshgate_types::Surface;

/// What kind of refusal; chooses the status and the provider's error type names.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    InvalidRequest,
    Authentication,
    Permission,
    /// Out of credits or budget (402).
    PaymentRequired,
    /// A rate limit (429, with `retry-after`).
    RateLimited,
    NotFound,
    MethodNotAllowed,
    RequestTooLarge,
    /// The upstream could not be reached or answered garbage.
    BadGateway,
    /// The upstream did not answer in time.
    Timeout,
    /// meshgate cannot serve the call (provider not configured, shutting down).
    Unavailable,
    Internal,
}

#[derive(Debug, Clone)]
pub struct GatewayError {
    pub kind: ErrorKind,
    pub message: String,
    /// OpenAI `code` (Anthropic has none at this level).
    pub code: Option<&'static str>,
    /// The request field at fault (OpenAI `param`).
    pub param: Option<std::borrow::Cow<'static, str>>,
    /// Extra response headers (`retry-after`, rate-limit headers).
    pub headers: Option<Box<http::HeaderMap>>,
}

impl GatewayError {
    pub fn new(kind: ErrorKind, message: impl Into<String>) -> Self {
        GatewayError {
            kind,
            message: message.into(),
            code: None,
            param: None,
            headers: None,
        }
    }

    /// A store error met while serving a call: 503 when the database cannot be reached
    /// (what needs it to decide fails closed, and the client may retry), else 500.
    pub fn storage(e: &meshgate_store::StoreError) -> Self {
        if e.is_unavailable() {
            tracing::warn!(error = %e, "database unavailable");
            GatewayError::new(
                ErrorKind::Unavailable,
                "the database is unavailable; retry later",
            )
            .with_code("database_unavailable")
        } else {
            tracing::error!(error = %e, "store error");
            GatewayError::new(ErrorKind::Internal, "storage error")
        }
    }

    pub fn with_headers(mut self, headers: http::HeaderMap) -> Self {
        self.headers = Some(Box::new(headers));
        self
    }

    pub fn with_code(mut self, code: &'static str) -> Self {
        self.code = Some(code);
        self
    }

    pub fn with_param(mut self, param: impl Into<std::borrow::Cow<'static, str>>) -> Self {
        self.param = Some(param.into());
        self
    }

    pub fn status(&self) -> StatusCode {
        match self.kind {
            ErrorKind::InvalidRequest => StatusCode::BAD_REQUEST,
            ErrorKind::Authentication => StatusCode::UNAUTHORIZED,
            ErrorKind::Permission => StatusCode::FORBIDDEN,
            ErrorKind::PaymentRequired => StatusCode::PAYMENT_REQUIRED,
            ErrorKind::RateLimited => StatusCode::TOO_MANY_REQUESTS,
            ErrorKind::NotFound => StatusCode::NOT_FOUND,
            ErrorKind::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
            ErrorKind::RequestTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
            ErrorKind::BadGateway => StatusCode::BAD_GATEWAY,
            ErrorKind::Timeout => StatusCode::GATEWAY_TIMEOUT,
            ErrorKind::Unavailable => StatusCode::SERVICE_UNAVAILABLE,
            ErrorKind::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    fn openai_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest
            | ErrorKind::Authentication
            | ErrorKind::NotFound
            | ErrorKind::MethodNotAllowed
            | ErrorKind::RequestTooLarge => "invalid_request_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::PaymentRequired => "insufficient_quota",
            ErrorKind::RateLimited => "rate_limit_exceeded",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::BadGateway | ErrorKind::Unavailable | ErrorKind::Internal => "server_error",
        }
    }

    fn anthropic_type(&self) -> &'static str {
        match self.kind {
            ErrorKind::InvalidRequest | ErrorKind::MethodNotAllowed => "invalid_request_error",
            ErrorKind::Authentication => "authentication_error",
            ErrorKind::Permission => "permission_error",
            ErrorKind::PaymentRequired => "billing_error",
            ErrorKind::RateLimited => "rate_limit_error",
            ErrorKind::NotFound => "not_found_error",
            ErrorKind::RequestTooLarge => "request_too_large",
            ErrorKind::Timeout => "timeout_error",
            ErrorKind::Unavailable => "overloaded_error",
            ErrorKind::BadGateway | ErrorKind::Internal => "api_error",
        }
    }

    /// The JSON body in the surface's native shape.
    pub fn body(&self, surface: Surface, request_id: &str) -> Bytes {
        let value = match surface {
            Surface::OpenAi => serde_json::json!({
                "error": {
                    "message": self.message,
                    "type": self.openai_type(),
                    "param": self.param,
                    "code": self.code,
                }
            }),
            Surface::Anthropic => serde_json::json!({
                "type": "error",
                "error": { "type": self.anthropic_type(), "message": self.message },
                "request_id": request_id,
            }),
        };
        Bytes::from(value.to_string())
    }

    pub fn into_response(self, surface: Surface, request_id: &str) -> Response {
        let mut response = Response::new(axum::body::Body::from(self.body(surface, request_id)));
        *response.status_mut() = self.status();
        let headers = response.headers_mut();
        headers.insert(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        );
        if let Ok(v) = HeaderValue::from_str(request_id) {
            headers.insert(crate::REQUEST_ID_HEADER, v);
        }
        if let Some(extra) = self.headers {
            headers.extend(*extra);
        }
        // Our own refusals are final: retrying cannot change the answer.
        if matches!(
            self.kind,
            ErrorKind::InvalidRequest
                | ErrorKind::Authentication
                | ErrorKind::Permission
                | ErrorKind::PaymentRequired
                | ErrorKind::NotFound
                | ErrorKind::MethodNotAllowed
                | ErrorKind::RequestTooLarge
        ) {
            headers.insert("x-should-retry", HeaderValue::from_static("false"));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn native_shapes() {
        let e =
            GatewayError::new(ErrorKind::Authentication, "bad key").with_code("invalid_api_key");
        let o: serde_json::Value = serde_json::from_slice(&e.body(Surface::OpenAi, "r1")).unwrap();
        assert_eq!(o["error"]["type"], "invalid_request_error");
        assert_eq!(o["error"]["code"], "invalid_api_key");
        assert_eq!(o["error"]["message"], "bad key");
        let a: serde_json::Value =
            serde_json::from_slice(&e.body(Surface::Anthropic, "r1")).unwrap();
        assert_eq!(a["type"], "error");
        assert_eq!(a["error"]["type"], "authentication_error");
        assert_eq!(e.status(), StatusCode::UNAUTHORIZED);
    }
}
