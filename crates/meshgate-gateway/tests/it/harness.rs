//! A gateway in front of a mock provider, both on loopback port 0, with one key ready.

use meshgate_gateway::{Config, Gateway};
use meshgate_mock::MockServer;
use serde_json::Value;
use std::time::Duration;
use tokio::sync::oneshot;
use tokio::task::JoinHandle;

pub const ADMIN: &str = "mga_test_admin_token";

pub struct Harness {
    pub mock: MockServer,
    pub base: String,
    pub key: String,
    pub key_id: String,
    pub http: reqwest::Client,
    shutdown: Option<oneshot::Sender<()>>,
    task: Option<JoinHandle<anyhow::Result<()>>>,
    pub dir: tempfile::TempDir,
}

impl Harness {
    pub async fn start() -> Harness {
        Harness::start_with(|_| {}).await
    }

    pub async fn start_with(adjust: impl FnOnce(&mut Config)) -> Harness {
        let mock = MockServer::start().await.unwrap();
        let url = mock.url();
        Harness::start_on(mock, &url, adjust).await
    }

    /// Starts a gateway whose providers are at `provider_url` (the mock's, or another).
    pub async fn start_on(
        mock: MockServer,
        provider_url: &str,
        adjust: impl FnOnce(&mut Config),
    ) -> Harness {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config {
            data_dir: dir.path().to_path_buf(),
            ..Config::default()
        };
        config.providers.openai.base_url = format!("{provider_url}/v1");
        config.providers.anthropic.base_url = provider_url.to_string();
        config.providers.gemini.base_url = provider_url.to_string();
        config.timeouts.shutdown_grace_ms = 10_000;
        adjust(&mut config);
        let env = |name: &str| match name {
            "OPENAI_API_KEY" => Some("sk-mock-openai".to_string()),
            "ANTHROPIC_API_KEY" => Some("sk-ant-mock".to_string()),
            "GEMINI_API_KEY" => Some("mock-gemini-key".to_string()),
            "MESHGATE_ADMIN_TOKEN" => Some(ADMIN.to_string()),
            _ => None,
        };
        let gateway = Gateway::build(config, &env).await.unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let base = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        let task = tokio::spawn(gateway.run(listener, async {
            let _ = rx.await;
        }));
        let http = reqwest::Client::builder().no_proxy().build().unwrap();
        let mut harness = Harness {
            mock,
            base,
            key: String::new(),
            key_id: String::new(),
            http,
            shutdown: Some(tx),
            task: Some(task),
            dir,
        };
        let created = harness.create_key("test").await;
        harness.key = created["secret"].as_str().unwrap().to_string();
        harness.key_id = created["id"].as_str().unwrap().to_string();
        harness
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn create_key(&self, name: &str) -> Value {
        let response = self
            .http
            .post(self.url("/admin/v1/keys"))
            .bearer_auth(ADMIN)
            .json(&serde_json::json!({ "name": name }))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 201);
        response.json().await.unwrap()
    }

    pub async fn admin_get(&self, path: &str) -> Value {
        let response = self
            .http
            .get(self.url(path))
            .bearer_auth(ADMIN)
            .send()
            .await
            .unwrap();
        assert!(
            response.status().is_success(),
            "{path}: {}",
            response.status()
        );
        response.json().await.unwrap()
    }

    /// OpenAI-style call with the harness key.
    pub fn openai(&self, path: &str) -> reqwest::RequestBuilder {
        self.http.post(self.url(path)).bearer_auth(&self.key)
    }

    /// Anthropic-style call with the harness key in x-api-key.
    pub fn anthropic(&self, path: &str) -> reqwest::RequestBuilder {
        self.http
            .post(self.url(path))
            .header("x-api-key", &self.key)
            .header("anthropic-version", "2023-06-01")
    }

    /// Every usage event, newest first (the admin API flushes the ledger before reading).
    pub async fn events(&self) -> Vec<Value> {
        self.admin_get("/admin/v1/usage?limit=1000").await["data"]
            .as_array()
            .cloned()
            .unwrap()
    }

    /// The only usage event; fails if there is not exactly one.
    pub async fn one_event(&self) -> Value {
        let events = self.wait_events(1).await;
        assert_eq!(events.len(), 1, "{events:#?}");
        events.into_iter().next().unwrap()
    }

    /// Waits (bounded) until at least `n` events are in the ledger. Settlement happens when
    /// the gateway drops the response body, which can be just after the client saw its end.
    pub async fn wait_events(&self, n: usize) -> Vec<Value> {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(10);
        loop {
            let events = self.events().await;
            if events.len() >= n || tokio::time::Instant::now() > deadline {
                return events;
            }
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
    }

    pub fn stop_signal(&mut self) -> oneshot::Sender<()> {
        self.shutdown.take().unwrap()
    }

    pub fn take_task(&mut self) -> JoinHandle<anyhow::Result<()>> {
        self.task.take().unwrap()
    }
}

/// The `data:` payloads of an SSE body, in order.
pub fn sse_data(body: &str) -> Vec<String> {
    body.split("\n\n")
        .filter_map(|event| {
            let data: Vec<&str> = event
                .lines()
                .filter_map(|l| {
                    l.strip_prefix("data:")
                        .map(|d| d.strip_prefix(' ').unwrap_or(d))
                })
                .collect();
            (!data.is_empty()).then(|| data.join("\n"))
        })
        .collect()
}

pub fn usage_u64(event: &Value, field: &str) -> Option<u64> {
    event["usage"][field].as_u64()
}
