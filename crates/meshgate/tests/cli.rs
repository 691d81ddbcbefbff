//! The `meshgate` command end to end: `serve` with zero configuration (fresh data dir,
//! generated admin token), `keys`, `usage` and `pricing check` against it, and SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use meshgate_mock::MockServer;
use std::io::{BufRead, BufReader};
use std::path::Path;
use std::process::{Child, Command, Stdio};

const BIN: &str = env!("CARGO_BIN_EXE_meshgate");

struct Server {
    child: Child,
    base: String,
    banner: Vec<String>,
}

impl Drop for Server {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

fn serve(data_dir: &Path, mock: &MockServer) -> Server {
    let mut child = Command::new(BIN)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data_dir)
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

fn meshgate(args: &[&str], server: &Server, data_dir: &Path) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .args(["--url", &server.base, "--data-dir"])
        .arg(data_dir)
        .env_remove("MESHGATE_ADMIN_TOKEN")
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn serve_keys_usage_and_sigterm() {
    let mock = MockServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut server = serve(dir.path(), &mock);
    let banner = server.banner.join("\n");
    assert!(banner.contains("admin token (shown once"), "{banner}");
    assert!(banner.contains("OPENAI_BASE_URL="), "{banner}");
    let token_file = dir.path().join("admin-token");
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(&token_file).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o600, "the admin token is private");
    }

    // The CLI finds the saved admin token in the data dir.
    let (ok, key, err) = meshgate(
        &["keys", "create", "--name", "cli", "--quiet"],
        &server,
        dir.path(),
    );
    assert!(ok, "{err}");
    let key = key.trim().to_string();
    assert!(key.starts_with("mg_"));
    let (ok, list, _) = meshgate(&["keys", "list"], &server, dir.path());
    assert!(ok);
    assert!(list.contains("cli") && list.contains("active"), "{list}");
    assert!(!list.contains(&key));

    let http = reqwest::Client::new();
    let response = http
        .post(format!("{}/openai/v1/chat/completions", server.base))
        .bearer_auth(&key)
        .header("x-mock-input-tokens", "1000")
        .header("x-mock-output-tokens", "100")
        .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 200);

    let (ok, usage, err) = meshgate(&["usage"], &server, dir.path());
    assert!(ok, "{err}");
    let row = usage
        .lines()
        .find(|l| l.starts_with("gpt-4o-mini"))
        .unwrap_or_else(|| panic!("{usage}"));
    // 1000 x 1.5e-7 + 100 x 6e-7
    assert!(row.trim_end().ends_with("0.00021"), "{row}");
    let (ok, events, _) = meshgate(&["usage", "--events"], &server, dir.path());
    assert!(ok);
    assert!(
        events.contains("chat_completions") && events.contains("ok"),
        "{events}"
    );

    let id = list
        .lines()
        .find(|l| l.contains("cli"))
        .and_then(|l| l.split_whitespace().next())
        .unwrap()
        .to_string();
    let (ok, _, err) = meshgate(&["keys", "revoke", &id], &server, dir.path());
    assert!(ok, "{err}");
    let response = http
        .post(format!("{}/openai/v1/chat/completions", server.base))
        .bearer_auth(&key)
        .json(&serde_json::json!({"model": "gpt-4o-mini", "messages": []}))
        .send()
        .await
        .unwrap();
    assert_eq!(response.status(), 401);

    // SIGTERM: a clean exit.
    let status = Command::new("kill")
        .args(["-TERM", &server.child.id().to_string()])
        .status()
        .unwrap();
    assert!(status.success());
    let exit = server.child.wait().unwrap();
    assert!(exit.success(), "{exit:?}");
}

#[test]
fn pricing_check_names_the_source_or_says_how_to_add_a_price() {
    let output = Command::new(BIN)
        .args(["pricing", "check", "claude-sonnet-4-5-20250929"])
        .env_remove("MESHGATE_CONFIG")
        .output()
        .unwrap();
    assert!(output.status.success());
    let text = String::from_utf8_lossy(&output.stdout);
    assert!(text.contains("claude-sonnet-4-5"), "{text}");
    assert!(
        text.to_lowercase().contains("built"),
        "names the source: {text}"
    );

    let dir = tempfile::tempdir().unwrap();
    std::fs::write(
        dir.path().join("prices.toml"),
        "[[model]]\nname = \"house-model\"\nprovider = \"openai\"\ninput_per_mtok = \"1\"\noutput_per_mtok = \"2\"\n",
    )
    .unwrap();
    std::fs::write(
        dir.path().join("meshgate.toml"),
        "[pricing]\nfiles = [\"prices.toml\"]\n",
    )
    .unwrap();
    let output = Command::new(BIN)
        .args(["pricing", "check", "house-model", "--config"])
        .arg(dir.path().join("meshgate.toml"))
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    assert!(String::from_utf8_lossy(&output.stdout).contains("prices.toml"));

    let output = Command::new(BIN)
        .args(["pricing", "check", "no-such-model"])
        .env_remove("MESHGATE_CONFIG")
        .output()
        .unwrap();
    assert!(!output.status.success());
    assert!(String::from_utf8_lossy(&output.stderr).contains("pricing file"));
}
