//! The upstream_request and send phases: the pooled HTTPS client, which headers cross the
//! gateway in each direction, and the provider key injected in place of the client's.
//!
//! Azure OpenAI deployments speak OpenAI's API under other paths: a [`Provider`] with
//! [`Azure`] settings sends `rest` to `/openai/deployments/{deployment}/{rest}?api-version=..`
//! (or `/openai/v1/{rest}` for the v1 API) with the key in `api-key`.
//!
//! Gemini ([`Provider::gemini`]) is called at `{base_url}/{rest}` with `rest` the whole path
//! (`v1beta/models/{model}:generateContent`) and the key in `x-goog-api-key`.

use crate::config::{Config, ProviderConfig};
use crate::conn::{Pool, Target, UpstreamBody};
use crate::error::{ErrorKind, GatewayError};
use bytes::Bytes;
use http::header::{self, HeaderName};
use http::{HeaderMap, HeaderValue, Method, Request, Response, Uri};
use http_body_util::Full;
use meshgate_types::Surface;
use std::sync::Arc;
use std::time::Duration;

/// A provider meshgate forwards to: where it is and the key it is called with.
#[derive(Clone)]
pub struct Provider {
    pub name: &'static str,
    pub surface: Surface,
    /// Base URL without a trailing slash (OpenAI's includes `/v1`).
    pub base_url: String,
    /// `None` when the key's environment variable is unset: calls get a clear 503.
    pub api_key: Option<HeaderValue>,
    pub api_key_env: String,
    /// Where calls go and the path before `rest`, worked out once; `None` for a base URL
    /// that only the per-call absolute URL handles (its error is then the call's).
    target: Option<(Target, String)>,
    /// Set for an Azure OpenAI deployment (then `name` is `openai`, `surface` OpenAI).
    pub azure: Option<Azure>,
    /// Google's Gemini API (then `name` is `gemini`; `surface` is not Gemini's, since no
    /// client speaks it, and is not read: calls reach it only through translation).
    pub gemini: bool,
}

/// Where an Azure OpenAI deployment takes calls.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Azure {
    /// The `api-version` query parameter of every call; `None` for the v1 API
    /// (`/openai/v1/...`, which takes none and reads the deployment from the body's `model`).
    pub api_version: Option<String>,
    /// The Azure deployment that serves the call; `None` until [`Provider::for_azure_model`]
    /// names it after the model asked for.
    pub deployment: Option<String>,
}

/// The `api-version` meshgate sends when a deployment sets none (the latest GA data plane).
pub const AZURE_DEFAULT_API_VERSION: &str = "2024-10-21";

/// Whether a name can stand in an Azure deployment path as it is (Azure allows letters,
/// digits, `-`, `_` and `.`); other names are not sent rather than escaped.
pub fn valid_azure_deployment(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= 64
        && name
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.'))
}

/// OpenAI endpoints that Azure serves per deployment; the others (files, batches,
/// responses) live at `/openai/{rest}`.
fn deployment_scoped(rest: &str) -> bool {
    matches!(
        rest,
        "chat/completions"
            | "completions"
            | "embeddings"
            | "images/generations"
            | "images/edits"
            | "audio/speech"
            | "audio/transcriptions"
            | "audio/translations"
    )
}

impl Azure {
    /// The path and query after the base URL for `rest` and the client's query. The
    /// deployment's `api-version` replaces any the client sent: the gateway, not the
    /// client, knows which versions its upstream accepts.
    fn tail(&self, rest: &str, query: Option<&str>) -> String {
        let mut out = String::with_capacity(64 + rest.len() + query.map_or(0, str::len));
        match (&self.api_version, &self.deployment) {
            (None, _) => out.push_str("/openai/v1/"),
            (Some(_), Some(d)) if deployment_scoped(rest) => {
                out.push_str("/openai/deployments/");
                out.push_str(d);
                out.push('/');
            }
            (Some(_), _) => out.push_str("/openai/"),
        }
        out.push_str(rest);
        let mut sep = '?';
        for pair in query.into_iter().flat_map(|q| q.split('&')) {
            let key = pair.split('=').next().unwrap_or("");
            if pair.is_empty() || (self.api_version.is_some() && key == "api-version") {
                continue;
            }
            out.push(sep);
            out.push_str(pair);
            sep = '&';
        }
        if let Some(v) = &self.api_version {
            out.push(sep);
            out.push_str("api-version=");
            out.push_str(v);
        }
        out
    }
}

impl Provider {
    pub fn from_config(
        name: &'static str,
        surface: Surface,
        config: &ProviderConfig,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Provider {
        let mut provider = Provider {
            name,
            surface,
            base_url: config.base_url.trim_end_matches('/').to_string(),
            api_key: None,
            api_key_env: config.api_key_env.clone(),
            target: None,
            azure: None,
            gemini: false,
        };
        provider.api_key = env(&config.api_key_env)
            .filter(|k| !k.is_empty())
            .and_then(|k| provider.key_value(&k));
        provider.target = provider.fixed_target();
        provider
    }

    /// An Azure OpenAI deployment at `config.base_url` (the resource endpoint,
    /// `https://NAME.openai.azure.com`), called as OpenAI's API (`name` `openai`: its
    /// models, prices and usage are OpenAI's).
    pub fn azure(
        config: &ProviderConfig,
        azure: Azure,
        env: &dyn Fn(&str) -> Option<String>,
    ) -> Provider {
        // The SDKs' `base_url` ends in `/openai`; accept it as well as the bare endpoint.
        let trimmed = config.base_url.trim_end_matches('/');
        let base = trimmed.strip_suffix("/openai").unwrap_or(trimmed);
        let settings = ProviderConfig {
            base_url: base.to_string(),
            api_key_env: config.api_key_env.clone(),
        };
        let mut provider = Provider::from_config("openai", Surface::OpenAi, &settings, env);
        provider.azure = Some(azure);
        provider.api_key = env(&config.api_key_env)
            .filter(|k| !k.is_empty())
            .and_then(|k| provider.key_value(&k));
        provider.target = provider.fixed_target();
        provider
    }

    /// Google's Gemini API at `config.base_url` (the origin).
    pub fn gemini(config: &ProviderConfig, env: &dyn Fn(&str) -> Option<String>) -> Provider {
        let mut provider = Provider::from_config("gemini", Surface::OpenAi, config, env);
        provider.gemini = true;
        provider.api_key = env(&config.api_key_env)
            .filter(|k| !k.is_empty())
            .and_then(|k| provider.key_value(&k));
        provider.target = provider.fixed_target();
        provider
    }

    /// This Azure provider sending to the deployment named `model` (when it names none of
    /// its own). The target is the same: only the path differs.
    pub fn for_azure_model(&self, model: &str) -> Provider {
        let mut provider = self.clone();
        if let Some(azure) = &mut provider.azure {
            azure.deployment = Some(model.to_string());
        }
        provider
    }

    /// The credential header value for `key`: `Bearer` for OpenAI, the bare key for
    /// Anthropic (`x-api-key`), Azure (`api-key`) and Gemini (`x-goog-api-key`). Marked
    /// sensitive to keep it out of logs.
    fn key_value(&self, key: &str) -> Option<HeaderValue> {
        let mut v = match (&self.azure, self.surface) {
            (None, Surface::OpenAi) if !self.gemini => {
                HeaderValue::from_str(&format!("Bearer {key}"))
            }
            _ => HeaderValue::from_str(key),
        }
        .ok()?;
        v.set_sensitive(true);
        Some(v)
    }

    /// The target and path prefix of `url("")`, when the URL splits into exactly these.
    fn fixed_target(&self) -> Option<(Target, String)> {
        let full = match self.azure {
            // Azure's paths and query are built per call; only the base is fixed.
            Some(_) => format!("{}/", self.base_url),
            None => self.url("", None),
        };
        let base = full.strip_suffix('/')?;
        let uri = full.parse::<Uri>().ok()?;
        let prefix = uri.path().strip_suffix('/')?;
        let rebuilt = format!("{}://{}{prefix}", uri.scheme_str()?, uri.authority()?);
        if uri.query().is_some() || rebuilt != base {
            return None;
        }
        Some((Target::of(&uri).ok()?, prefix.to_string()))
    }

    /// This provider called with a project's own key, and its own base URL if it gave one.
    pub fn with_project_key(&self, api_key: &str, base_url: Option<&str>) -> Provider {
        let mut provider = Provider {
            name: self.name,
            surface: self.surface,
            base_url: base_url
                .map(|b| b.trim_end_matches('/').to_string())
                .unwrap_or_else(|| self.base_url.clone()),
            api_key: None,
            api_key_env: format!("the project's {} key", self.name),
            target: None,
            azure: self.azure.clone(),
            gemini: self.gemini,
        };
        provider.api_key = provider.key_value(api_key);
        provider.target = match base_url {
            None => self.target.clone(),
            Some(_) => provider.fixed_target(),
        };
        provider
    }

    /// The upstream URL for a path below `/v1/` (`rest`) and the client's query string.
    pub fn url(&self, rest: &str, query: Option<&str>) -> String {
        if let Some(azure) = &self.azure {
            return format!("{}{}", self.base_url, azure.tail(rest, query));
        }
        let mut url = match self.surface {
            _ if self.gemini => format!("{}/{rest}", self.base_url),
            Surface::OpenAi => format!("{}/{rest}", self.base_url),
            Surface::Anthropic => format!("{}/v1/{rest}", self.base_url),
        };
        if let Some(q) = query {
            url.push('?');
            url.push_str(q);
        }
        url
    }

    /// The prefix of URLs this provider puts in bodies (batch `results_url`).
    pub fn v1_base(&self) -> String {
        match self.surface {
            Surface::OpenAi => self.base_url.clone(),
            Surface::Anthropic => format!("{}/v1", self.base_url),
        }
    }
}

/// Builds the pool of provider connections: rustls with the web PKI roots plus `ca_file`.
pub fn build_pool(config: &Config) -> anyhow::Result<Arc<Pool>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.extend(webpki_roots::TLS_SERVER_ROOTS.iter().cloned());
    if let Some(path) = &config.providers.ca_file {
        let pem = std::fs::read(path)
            .map_err(|e| anyhow::anyhow!("cannot read ca_file {}: {e}", path.display()))?;
        for cert in rustls_pemfile::certs(&mut pem.as_slice()) {
            roots.add(cert?)?;
        }
    }
    let tls = rustls::ClientConfig::builder_with_provider(Arc::new(
        rustls::crypto::ring::default_provider(),
    ))
    .with_safe_default_protocol_versions()?
    .with_root_certificates(roots)
    .with_no_client_auth();
    Ok(Pool::new(Arc::new(tls), config.timeouts.connect()))
}

/// Hop-by-hop headers (RFC 9110 7.6.1) never cross a proxy.
const HOP_BY_HOP: [&str; 8] = [
    "connection",
    "keep-alive",
    "proxy-connection",
    "proxy-authenticate",
    "proxy-authorization",
    "te",
    "trailer",
    "transfer-encoding",
];

/// Client credentials and headers only meshgate reads; never forwarded.
const CLIENT_ONLY: [&str; 6] = [
    "authorization",
    "x-api-key",
    "api-key",
    "cookie",
    "host",
    // Upstream must answer uncompressed so that the meter can read usage.
    "accept-encoding",
];

fn is_gateway_header(name: &str) -> bool {
    name.starts_with("meshgate-") || name.starts_with("x-meshgate-")
}

/// Names listed in a `Connection` header are hop-by-hop too.
fn connection_listed(headers: &HeaderMap) -> Vec<String> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .map(|s| s.trim().to_ascii_lowercase())
        .filter(|s| !s.is_empty())
        .collect()
}

/// The headers sent upstream: the client's, minus credentials, hop-by-hop, gateway-only
/// and length headers, plus the provider key. Names are matched case-insensitively
/// (`http` lowercases them).
pub fn upstream_headers(
    client: &HeaderMap,
    provider: &Provider,
    api_key: &HeaderValue,
) -> HeaderMap {
    let listed = connection_listed(client);
    let mut out = HeaderMap::with_capacity(client.len() + 2);
    for (name, value) in client {
        let n = name.as_str();
        if HOP_BY_HOP.contains(&n)
            || CLIENT_ONLY.contains(&n)
            || n == "content-length"
            || n == "upgrade"
            || is_gateway_header(n)
            || listed.iter().any(|l| l == n)
        {
            continue;
        }
        out.append(name.clone(), value.clone());
    }
    match provider.surface {
        _ if provider.gemini => {
            out.insert(HeaderName::from_static("x-goog-api-key"), api_key.clone());
            // The client's API headers mean nothing to Google.
            out.remove("anthropic-version");
            out.remove("anthropic-beta");
        }
        // Azure reads `api-key`; no `Authorization` goes (the client's was dropped above).
        Surface::OpenAi if provider.azure.is_some() => {
            out.insert(HeaderName::from_static("api-key"), api_key.clone());
        }
        Surface::OpenAi => {
            out.insert(header::AUTHORIZATION, api_key.clone());
        }
        Surface::Anthropic => {
            out.insert(HeaderName::from_static("x-api-key"), api_key.clone());
            if !out.contains_key("anthropic-version") {
                out.insert(
                    HeaderName::from_static("anthropic-version"),
                    HeaderValue::from_static("2023-06-01"),
                );
            }
        }
    }
    out
}

/// The provider's response headers that reach the client: all but hop-by-hop, cookies
/// and (when meshgate changes the body) the length. Filtered in place: usually nothing
/// goes, and then nothing is copied.
pub fn client_headers(mut upstream: HeaderMap, keep_length: bool) -> HeaderMap {
    let listed = connection_listed(&upstream);
    let dropped: Vec<HeaderName> = upstream
        .keys()
        .filter(|name| {
            let n = name.as_str();
            HOP_BY_HOP.contains(&n)
                || n == "set-cookie"
                || n == "upgrade"
                || (!keep_length && n == "content-length")
                || listed.iter().any(|l| l == n)
        })
        .cloned()
        .collect();
    for name in &dropped {
        upstream.remove(name);
    }
    upstream
}

/// Why a send failed, in words a client can act on.
#[derive(Debug)]
pub enum SendError {
    Connect(String),
    ConnectTimeout(String),
    FirstByteTimeout(Duration),
    Other(String),
}

impl SendError {
    pub fn to_gateway_error(&self, provider: &str) -> GatewayError {
        match self {
            SendError::ConnectTimeout(e) => GatewayError::new(
                ErrorKind::Timeout,
                format!("timed out connecting to provider {provider} (timeouts.connect_ms): {e}"),
            )
            .with_code("upstream_connect_timeout"),
            SendError::Connect(e) => GatewayError::new(
                ErrorKind::BadGateway,
                format!("cannot connect to provider {provider}: {e}"),
            )
            .with_code("upstream_unreachable"),
            SendError::FirstByteTimeout(d) => GatewayError::new(
                ErrorKind::Timeout,
                format!(
                    "provider {provider} sent no response within {} ms (timeouts.first_byte_ms)",
                    d.as_millis()
                ),
            )
            .with_code("upstream_first_byte_timeout"),
            SendError::Other(e) => GatewayError::new(
                ErrorKind::BadGateway,
                format!("request to provider {provider} failed: {e}"),
            )
            .with_code("upstream_error"),
        }
    }

    pub fn is_timeout(&self) -> bool {
        matches!(
            self,
            SendError::FirstByteTimeout(_) | SendError::ConnectTimeout(_)
        )
    }
}

/// Sends one request to `provider`'s `rest` (the path below `/v1/`) and waits for the
/// response head, bounded by the first-byte timeout.
#[allow(clippy::too_many_arguments)]
pub async fn send(
    pool: &Arc<Pool>,
    provider: &Provider,
    method: Method,
    rest: &str,
    query: Option<&str>,
    headers: HeaderMap,
    body: Bytes,
    first_byte: Duration,
) -> Result<Response<UpstreamBody>, SendError> {
    let build = |uri: String| {
        let mut request = Request::builder()
            .method(method)
            .uri(uri)
            .body(Full::new(body))
            .map_err(|e| SendError::Other(e.to_string()))?;
        *request.headers_mut() = headers;
        Ok::<_, SendError>(request)
    };
    match (&provider.target, &provider.azure) {
        (Some((target, prefix)), Some(azure)) => {
            let path = format!("{prefix}{}", azure.tail(rest, query));
            pool.send_to(target, build(path)?, first_byte).await
        }
        (Some((target, prefix)), None) => {
            let mut path =
                String::with_capacity(prefix.len() + rest.len() + 2 + query.map_or(0, str::len));
            path.push_str(prefix);
            path.push('/');
            path.push_str(rest);
            if let Some(q) = query {
                path.push('?');
                path.push_str(q);
            }
            pool.send_to(target, build(path)?, first_byte).await
        }
        (None, _) => {
            pool.send(build(provider.url(rest, query))?, first_byte)
                .await
        }
    }
}

/// An error and its causes, in one line.
pub(crate) fn error_chain(e: &dyn std::error::Error) -> String {
    let mut text = e.to_string();
    let mut source = e.source();
    while let Some(s) = source {
        text.push_str(": ");
        text.push_str(&s.to_string());
        source = s.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    fn provider(surface: Surface) -> Provider {
        Provider::from_config(
            "p",
            surface,
            &ProviderConfig {
                base_url: "http://up/v1/".into(),
                api_key_env: "K".into(),
            },
            &|_| Some("sk-server".into()),
        )
    }

    #[test]
    fn strips_credentials_and_hop_by_hop_case_insensitively() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("Authorization", "Bearer mg_client"),
            ("X-Api-Key", "mg_client"),
            ("Connection", "keep-alive, X-Drop-Me"),
            ("x-drop-me", "1"),
            ("Meshgate-Annotation-team", "a"),
            ("Accept-Encoding", "gzip"),
            ("Content-Length", "10"),
            ("anthropic-beta", "b1"),
            ("x-stainless-os", "Linux"),
        ] {
            h.append(
                HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let p = provider(Surface::Anthropic);
        let out = upstream_headers(&h, &p, p.api_key.as_ref().unwrap());
        assert_eq!(out.get("x-api-key").unwrap(), "sk-server");
        assert!(out.get("authorization").is_none());
        assert!(out.get("x-drop-me").is_none());
        assert!(out.get("connection").is_none());
        assert!(out.get("meshgate-annotation-team").is_none());
        assert!(out.get("accept-encoding").is_none());
        assert_eq!(out.get("anthropic-beta").unwrap(), "b1");
        assert_eq!(out.get("anthropic-version").unwrap(), "2023-06-01");
        assert_eq!(out.get("x-stainless-os").unwrap(), "Linux");

        let o = provider(Surface::OpenAi);
        let out = upstream_headers(&h, &o, o.api_key.as_ref().unwrap());
        assert_eq!(out.get("authorization").unwrap(), "Bearer sk-server");
        assert!(out.get("x-api-key").is_none());
    }

    fn azure(api_version: Option<&str>, deployment: Option<&str>) -> Provider {
        Provider::azure(
            &ProviderConfig {
                base_url: "https://east.openai.azure.com/openai/".into(),
                api_key_env: "K".into(),
            },
            Azure {
                api_version: api_version.map(str::to_string),
                deployment: deployment.map(str::to_string),
            },
            &|_| Some("az-secret".into()),
        )
    }

    #[test]
    fn azure_sends_api_key_and_never_authorization() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("authorization", "Bearer mg_client"),
            ("api-key", "mg_client"),
            ("x-api-key", "mg_client"),
            ("x-stainless-os", "Linux"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        let p = azure(Some("2024-10-21"), Some("prod"));
        let key = p.api_key.clone().unwrap();
        assert!(key.is_sensitive());
        let out = upstream_headers(&h, &p, &key);
        assert_eq!(out.get("api-key").unwrap(), "az-secret");
        assert!(out.get("authorization").is_none());
        assert!(out.get("x-api-key").is_none());
        assert_eq!(out.get("x-stainless-os").unwrap(), "Linux");
        assert_eq!(out.get_all("api-key").iter().count(), 1);
        let own = p.with_project_key("sk-own", None);
        assert_eq!(own.api_key.unwrap(), "sk-own");
        assert_eq!(own.azure, p.azure);
    }

    #[test]
    fn azure_urls() {
        let p = azure(Some("2024-10-21"), Some("prod"));
        assert_eq!(p.base_url, "https://east.openai.azure.com");
        assert_eq!(
            p.url("chat/completions", None),
            "https://east.openai.azure.com/openai/deployments/prod/chat/completions?api-version=2024-10-21"
        );
        // The client's query stays, its api-version gives way to the deployment's.
        assert_eq!(
            p.url("embeddings", Some("a=1&api-version=2099-01-01&&b")),
            "https://east.openai.azure.com/openai/deployments/prod/embeddings?a=1&b&api-version=2024-10-21"
        );
        assert_eq!(
            p.url("batches", None),
            "https://east.openai.azure.com/openai/batches?api-version=2024-10-21"
        );
        let named = azure(Some("2024-10-21"), None).for_azure_model("gpt-4o-mini");
        assert_eq!(
            named.url("audio/transcriptions", None),
            "https://east.openai.azure.com/openai/deployments/gpt-4o-mini/audio/transcriptions?api-version=2024-10-21"
        );
        let v1 = azure(None, None);
        assert_eq!(
            v1.url("chat/completions", Some("x=1")),
            "https://east.openai.azure.com/openai/v1/chat/completions?x=1"
        );
        // Only the origin is fixed: the fast path appends the whole Azure path.
        assert_eq!(p.target.as_ref().unwrap().1, "");
    }

    #[test]
    fn client_headers_drop_hop_by_hop_cookies_and_maybe_the_length() {
        let mut h = HeaderMap::new();
        for (k, v) in [
            ("content-type", "text/event-stream"),
            ("content-length", "12"),
            ("transfer-encoding", "chunked"),
            ("connection", "x-hop"),
            ("x-hop", "1"),
            ("set-cookie", "a=1"),
            ("set-cookie", "b=2"),
            ("x-request-id", "req_1"),
        ] {
            h.append(HeaderName::from_static(k), v.parse().unwrap());
        }
        let kept = client_headers(h.clone(), true);
        let names: Vec<&str> = kept.keys().map(|n| n.as_str()).collect();
        assert_eq!(names.len(), 3, "{names:?}");
        assert_eq!(kept.get("content-length").unwrap(), "12");
        assert_eq!(kept.get("x-request-id").unwrap(), "req_1");
        let out = client_headers(h, false);
        assert!(out.get("content-length").is_none());
        assert_eq!(out.get("content-type").unwrap(), "text/event-stream");
        assert_eq!(out.len(), 2);
    }

    #[test]
    fn urls() {
        assert_eq!(
            provider(Surface::OpenAi).url("chat/completions", None),
            "http://up/v1/chat/completions"
        );
        assert_eq!(
            provider(Surface::Anthropic).url("messages", Some("beta=true")),
            "http://up/v1/v1/messages?beta=true"
        );
        let (_, prefix) = provider(Surface::Anthropic).target.unwrap();
        assert_eq!(prefix, "/v1/v1");
        let root = Provider::from_config(
            "p",
            Surface::OpenAi,
            &ProviderConfig {
                base_url: "https://up:8443".into(),
                api_key_env: "K".into(),
            },
            &|_| None,
        );
        assert_eq!(root.target.unwrap().1, "");
    }
}
