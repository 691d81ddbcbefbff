//! What the end-to-end tests of the `meshgate` command share: `meshgate serve` as a child
//! process in front of a mock provider, with its banner read.
#![allow(dead_code)]

use meshgate_mock::MockServer;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

pub const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

pub struct Server {
    pub child: Child,
    pub base: String,
    pub banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

pub fn serve(data_dir: &Path, mock: &MockServer) -> Server {
    serve_with(data_dir, mock, &[])
}

/// `meshgate serve` with more arguments (e.g. `--config FILE`).
pub fn serve_with(data_dir: &Path, mock: &MockServer, extra: &[&str]) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("OPENAI_API_KEY", "sk-mock-openai")
        .env("ANTHROPIC_API_KEY", "sk-ant-mock")
        .env("MESHGATE_OPENAI_BASE_URL", format!("{}/v1", mock.url()))
        .env("MESHGATE_ANTHROPIC_BASE_URL", mock.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let mut lines = BufReader::new(stdout).lines();
    let mut banner = Vec::new();
    // The banner ends with the usage hint line; reading stops there.
    for line in lines.by_ref() {
        let line = line.unwrap();
        let done = line.contains("meshgate usage");
        banner.push(line);
        if done {
            break;
        }
    }
    let base = banner[0]
        .strip_prefix("meshgate listening on ")
        .unwrap_or_else(|| panic!("unexpected banner: {banner:?}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base,
        banner,
    }
}

/// The admin token of instances started by [`serve_instance`].
pub const FLEET_ADMIN: &str = "mga_fleet_test_token";

/// `meshgate serve` on a shared database (more arguments in `extra`, e.g. `--redis URL`),
/// a fleet member with a data dir of its own and [`FLEET_ADMIN`] as its admin token.
pub fn serve_instance(
    database: &str,
    extra: &[&str],
    data_dir: &Path,
    mock: &MockServer,
) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
        .args(["--database", database])
        .args(extra)
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap_or_default())
        .env("MESHGATE_ADMIN_TOKEN", FLEET_ADMIN)
        .env("MESHGATE_THREADS", "2")
        .env("OPENAI_API_KEY", "sk-mock-openai")
        .env("ANTHROPIC_API_KEY", "sk-ant-mock")
        .env("MESHGATE_OPENAI_BASE_URL", format!("{}/v1", mock.url()))
        .env("MESHGATE_ANTHROPIC_BASE_URL", mock.url())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let first = lines.next().unwrap().unwrap();
    let base = first
        .strip_prefix("meshgate listening on ")
        .unwrap_or_else(|| panic!("unexpected banner: {first}"))
        .to_string();
    std::thread::spawn(move || for _ in lines {});
    Server {
        child,
        base,
        banner: vec![first],
    }
}

/// The `request_id` of every usage event in the ledger of the gateway at `base`, newest
/// first, read page by page from the admin API (which flushes that instance's writer).
pub async fn usage_request_ids(
    http: &reqwest::Client,
    base: &str,
    admin_token: &str,
) -> Vec<String> {
    let mut ids = Vec::new();
    let mut before: Option<String> = None;
    loop {
        let mut url = format!("{base}/admin/v1/usage?limit=1000");
        if let Some(b) = &before {
            url.push_str(&format!("&before={b}"));
        }
        let page: serde_json::Value = http
            .get(url)
            .bearer_auth(admin_token)
            .send()
            .await
            .unwrap()
            .json()
            .await
            .unwrap();
        for event in page["data"].as_array().unwrap() {
            ids.push(event["request_id"].as_str().unwrap().to_string());
        }
        match page["next_before"].as_str() {
            Some(b) => before = Some(b.to_string()),
            None => return ids,
        }
    }
}
