//! The `meshgate` command end to end: `serve` with zero configuration (fresh data dir,
//! generated admin token), `keys`, `usage` and `pricing check` against it, and SIGTERM.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use common::{serve, Server, BIN};
use meshgate_mock::MockServer;
use std::path::Path;
use std::process::Command;

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

/// Runs the CLI against `server` with extra environment variables.
fn meshgate_env(
    args: &[&str],
    server: &Server,
    data_dir: &Path,
    env: &[(&str, &str)],
) -> (bool, String, String) {
    let mut command = Command::new(BIN);
    command
        .args(args)
        .args(["--url", &server.base, "--data-dir"])
        .arg(data_dir)
        .env_remove("MESHGATE_ADMIN_TOKEN");
    for (name, value) in env {
        command.env(name, value);
    }
    let output = command.output().unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

/// Runs the CLI and insists it succeeds; returns stdout.
fn ok(args: &[&str], server: &Server, data_dir: &Path) -> String {
    let (ok, out, err) = meshgate(args, server, data_dir);
    assert!(ok, "meshgate {args:?} failed: {err}");
    out
}

async fn chat_status(base: &str, key: &str, model: &str) -> u16 {
    reqwest::Client::new()
        .post(format!("{base}/openai/v1/chat/completions"))
        .bearer_auth(key)
        .json(&serde_json::json!({"model": model, "messages": []}))
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test(flavor = "multi_thread")]
async fn projects_keys_with_limits_rotation_credits_and_audit() {
    let mock = MockServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &mock);
    let d = dir.path();

    let out = ok(
        &[
            "projects", "create", "--id", "acme", "--name", "Acme", "--markup", "10",
        ],
        &server,
        d,
    );
    assert!(out.contains("created project acme"), "{out}");
    let list = ok(&["projects", "list"], &server, d);
    assert!(list.contains("acme") && list.contains("default"), "{list}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["projects", "show", "acme"], &server, d)).unwrap();
    assert_eq!(shown["settings"]["markup_percent"], "10");
    let updated = ok(
        &[
            "projects",
            "update",
            "acme",
            "--name",
            "Acme Inc",
            "--credits-enforced",
            "true",
        ],
        &server,
        d,
    );
    assert!(
        updated.contains("Acme Inc") && updated.contains("yes"),
        "{updated}"
    );

    // A key with models and limits.
    let secret = ok(
        &[
            "keys",
            "create",
            "--name",
            "limited",
            "--project",
            "acme",
            "--allowed-model",
            "openai/gpt-4o-mini",
            "--allowed-model",
            "anthropic/*",
            "--rpm",
            "100",
            "--budget-daily",
            "5.00",
            "--expires",
            "2999-01-01T00:00:00Z",
            "--quiet",
        ],
        &server,
        d,
    )
    .trim()
    .to_string();
    assert!(secret.starts_with("mg_"));
    let keys: serde_json::Value = serde_json::from_str(&ok(
        &["keys", "list", "--project", "acme", "--json"],
        &server,
        d,
    ))
    .unwrap();
    let key = &keys["data"][0];
    let id = key["id"].as_str().unwrap().to_string();
    assert_eq!(
        key["allowed_models"],
        serde_json::json!(["openai/gpt-4o-mini", "anthropic/*"])
    );
    assert_eq!(key["limits"]["requests_per_minute"], 100);
    assert_eq!(key["limits"]["spend_daily_usd"], "5");
    let table = ok(&["keys", "list"], &server, d);
    assert!(
        table.contains("rpm=100") && table.contains("daily=$5"),
        "{table}"
    );
    let changed = ok(
        &[
            "keys",
            "update",
            &id,
            "--rpm",
            "none",
            "--budget-monthly",
            "50",
            "--all-models",
        ],
        &server,
        d,
    );
    assert!(changed.contains("daily=$5 monthly=$50"), "{changed}");
    assert!(!changed.contains("rpm="), "{changed}");
    let shown: serde_json::Value =
        serde_json::from_str(&ok(&["keys", "show", &id], &server, d)).unwrap();
    assert!(shown["allowed_models"].is_null());

    // Credits: the project enforces them, so the key works once there are some.
    assert_eq!(chat_status(&server.base, &secret, "gpt-4o-mini").await, 402);
    let added = ok(
        &[
            "credits",
            "add",
            "--project",
            "acme",
            "--amount",
            "2.50",
            "--note",
            "welcome",
        ],
        &server,
        d,
    );
    assert!(added.contains("grant 2.5 USD"), "{added}");
    let (good, _, err) = meshgate(
        &[
            "credits",
            "add",
            "--project",
            "acme",
            "--kind",
            "grant",
            "--amount",
            "-1",
        ],
        &server,
        d,
    );
    assert!(!good && err.contains("positive"), "{err}");
    ok(
        &[
            "credits",
            "add",
            "--project",
            "acme",
            "--kind",
            "adjustment",
            "--amount",
            "-0.5",
        ],
        &server,
        d,
    );
    let ledger = ok(&["credits", "list", "--project", "acme"], &server, d);
    assert!(ledger.contains("balance: 2 USD"), "{ledger}");
    assert!(
        ledger.contains("welcome") && ledger.contains("adjustment"),
        "{ledger}"
    );
    assert_eq!(chat_status(&server.base, &secret, "gpt-4o-mini").await, 200);

    // Rotation with grace: both secrets work; without grace the old one stops.
    let rotated = ok(
        &["keys", "rotate", &id, "--grace", "60", "--quiet"],
        &server,
        d,
    )
    .trim()
    .to_string();
    assert!(rotated.starts_with("mg_") && rotated != secret);
    assert_eq!(chat_status(&server.base, &secret, "gpt-4o-mini").await, 200);
    assert_eq!(
        chat_status(&server.base, &rotated, "gpt-4o-mini").await,
        200
    );
    let out = ok(&["keys", "rotate", &id], &server, d);
    assert!(out.contains("no longer works"), "{out}");
    assert_eq!(
        chat_status(&server.base, &rotated, "gpt-4o-mini").await,
        401
    );

    // Provider keys come from the environment, never show again.
    let (good, out, err) = meshgate_env(
        &[
            "providers",
            "set",
            "--project",
            "acme",
            "--provider",
            "openai",
            "--api-key-env",
            "ACME_OPENAI_KEY",
        ],
        &server,
        d,
        &[("ACME_OPENAI_KEY", "sk-mock-openai")],
    );
    assert!(good, "{err}");
    assert!(out.contains("set openai key"), "{out}");
    let providers = ok(&["providers", "list", "--project", "acme"], &server, d);
    assert!(
        providers.contains("openai") && !providers.contains("sk-mock"),
        "{providers}"
    );
    ok(
        &[
            "providers",
            "delete",
            "--project",
            "acme",
            "--provider",
            "openai",
        ],
        &server,
        d,
    );

    let usage = ok(
        &["usage", "--group-by", "project", "--project", "acme"],
        &server,
        d,
    );
    assert!(usage.lines().any(|l| l.starts_with("acme")), "{usage}");

    let audit = ok(&["audit", "--project", "acme"], &server, d);
    for action in [
        "project.created",
        "project.updated",
        "key.created",
        "key.updated",
        "key.rotated",
        "credits.added",
        "provider.set",
        "provider.deleted",
    ] {
        assert!(audit.contains(action), "{action} missing: {audit}");
    }
    let audit_json = ok(&["audit", "--json", "--limit", "1000"], &server, d);
    for secret in [&secret, &rotated, &"sk-mock-openai".to_string()] {
        assert!(!audit_json.contains(secret.as_str()));
    }
}

#[tokio::test(flavor = "multi_thread")]
async fn token_keys_and_minting_locally_and_by_the_gateway() {
    let mock = MockServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &mock);
    let d = dir.path();
    ok(
        &["projects", "create", "--id", "rooms", "--name", "Rooms"],
        &server,
        d,
    );
    let key_file = dir.path().join("signing.key");
    let created = ok(
        &[
            "token",
            "keys",
            "create",
            "--project",
            "rooms",
            "--secret-file",
            key_file.to_str().unwrap(),
        ],
        &server,
        d,
    );
    let kid = created
        .split_whitespace()
        .find(|w| w.starts_with("sk_"))
        .unwrap_or_else(|| panic!("{created}"))
        .to_string();
    assert!(created.contains("secret written to"), "{created}");
    let secret_text = std::fs::read_to_string(&key_file).unwrap();
    assert!(
        !created.contains(secret_text.trim()),
        "not printed when saved"
    );
    let list = ok(&["token", "keys", "list", "--project", "rooms"], &server, d);
    assert!(list.contains(&kid) && list.contains("active"), "{list}");

    let spec = dir.path().join("token-spec.yaml");
    std::fs::write(
        &spec,
        "version: v1\nkind: ParticipantToken\nidentity: ci-bot\nroom: standup\nexpires_in: 30m\napi:\n  llm:\n    models: [\"openai/gpt-4o-mini\"]\n",
    )
    .unwrap();

    // Locally: no gateway involved (a URL where nothing listens).
    let output = Command::new(BIN)
        .args(["token", "mint", "--spec"])
        .arg(&spec)
        .args([
            "--project",
            "rooms",
            "--signing-key-id",
            &kid,
            "--signing-key-file",
        ])
        .arg(&key_file)
        .args(["--url", "http://127.0.0.1:9", "--admin-token", "unused"])
        .output()
        .unwrap();
    assert!(
        output.status.success(),
        "{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let token = String::from_utf8_lossy(&output.stdout).trim().to_string();
    let verifier = meshgate_tokens::VerifyingKey {
        kid: kid.clone(),
        project_id: "rooms".into(),
        material: meshgate_tokens::KeyMaterial::hs256_from_text(&secret_text).unwrap(),
    };
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs() as i64;
    let claims = meshgate_tokens::verify_participant(&token, "meshgate", now, |k| {
        (k == kid).then(|| verifier.clone())
    })
    .unwrap();
    assert_eq!(claims.sub, "ci-bot");
    assert_eq!(claims.room.as_deref(), Some("standup"));
    assert_eq!(claims.project, "rooms");
    assert!((now + 1790..=now + 1810).contains(&claims.exp));
    // The gateway accepts it within its grant.
    assert_eq!(chat_status(&server.base, &token, "gpt-4o-mini").await, 200);
    assert_eq!(chat_status(&server.base, &token, "gpt-4o").await, 403);

    // Locally without a key id: a clear refusal.
    let (good, _, err) = meshgate(
        &[
            "token",
            "mint",
            "--spec",
            spec.to_str().unwrap(),
            "--project",
            "rooms",
            "--signing-key-file",
            key_file.to_str().unwrap(),
        ],
        &server,
        d,
    );
    assert!(!good && err.contains("--signing-key-id"), "{err}");

    // By the gateway (no key file): JSON with expiry and jti.
    let minted: serde_json::Value = serde_json::from_str(&ok(
        &[
            "token",
            "mint",
            "--spec",
            spec.to_str().unwrap(),
            "--project",
            "rooms",
            "--json",
        ],
        &server,
        d,
    ))
    .unwrap();
    let remote = minted["token"].as_str().unwrap().to_string();
    assert_eq!(minted["signing_key_id"], kid.as_str());
    assert!(
        meshgate_tokens::verify_participant(&remote, "meshgate", now, |k| {
            (k == kid).then(|| verifier.clone())
        })
        .is_ok()
    );
    assert_eq!(chat_status(&server.base, &remote, "gpt-4o-mini").await, 200);

    // Rotating revokes the old key: its tokens stop at once.
    let rotated = ok(&["token", "keys", "rotate", &kid], &server, d);
    assert!(rotated.contains("secret (shown once)"), "{rotated}");
    assert_eq!(chat_status(&server.base, &token, "gpt-4o-mini").await, 401);
    let new_kid = rotated
        .split_whitespace()
        .filter(|w| w.starts_with("sk_"))
        .nth(1)
        .unwrap_or_else(|| panic!("{rotated}"))
        .to_string();
    ok(&["token", "keys", "revoke", &new_kid], &server, d);
    let list = ok(&["token", "keys", "list", "--project", "rooms"], &server, d);
    assert_eq!(list.matches("revoked").count(), 2, "{list}");

    // An EdDSA key: the private key minted locally.
    let ed_file = dir.path().join("ed.key");
    let created = ok(
        &[
            "token",
            "keys",
            "create",
            "--project",
            "rooms",
            "--algorithm",
            "EdDSA",
            "--secret-file",
            ed_file.to_str().unwrap(),
        ],
        &server,
        d,
    );
    let ed_kid = created
        .split_whitespace()
        .find(|w| w.starts_with("sk_"))
        .unwrap()
        .to_string();
    let ed_token = ok(
        &[
            "token",
            "mint",
            "--spec",
            spec.to_str().unwrap(),
            "--project",
            "rooms",
            "--signing-key-id",
            &ed_kid,
            "--signing-key-file",
            ed_file.to_str().unwrap(),
            "--algorithm",
            "EdDSA",
        ],
        &server,
        d,
    );
    assert_eq!(
        chat_status(&server.base, ed_token.trim(), "gpt-4o-mini").await,
        200
    );
}

/// Runs the CLI from "another machine": no data dir holding the admin token, no admin
/// variables, only what `meshgate login --admin` stored in `config`.
fn elsewhere(args: &[&str], config: &Path, empty_data_dir: &Path) -> (bool, String, String) {
    let output = Command::new(BIN)
        .args(args)
        .env_remove("MESHGATE_ADMIN_TOKEN")
        .env_remove("MESHGATE_URL")
        .env_remove("MESHGATE_TOKEN")
        .env("MESHGATE_CONFIG_DIR", config)
        .env("MESHGATE_DATA_DIR", empty_data_dir)
        .output()
        .unwrap();
    (
        output.status.success(),
        String::from_utf8_lossy(&output.stdout).into_owned(),
        String::from_utf8_lossy(&output.stderr).into_owned(),
    )
}

#[tokio::test(flavor = "multi_thread")]
async fn an_admin_login_serves_the_admin_commands_from_another_machine() {
    let mock = MockServer::start().await.unwrap();
    let dir = tempfile::tempdir().unwrap();
    let server = serve(dir.path(), &mock);
    let admin_token = std::fs::read_to_string(dir.path().join("admin-token")).unwrap();
    let admin_token = admin_token.trim();
    let config = tempfile::tempdir().unwrap();
    let nowhere = tempfile::tempdir().unwrap();
    let (c, n) = (config.path(), nowhere.path());

    // Without a login the admin commands have no token and say how to get one.
    let (ok, _, err) = elsewhere(&["projects", "list", "--url", &server.base], c, n);
    assert!(!ok);
    assert!(err.contains("meshgate login --admin"), "{err}");

    // A wrong admin token is refused by the gateway and nothing is stored.
    let (ok, _, err) = elsewhere(
        &[
            "login",
            "--admin",
            "--url",
            &server.base,
            "--token",
            "mga_wrong",
        ],
        c,
        n,
    );
    assert!(!ok);
    assert!(err.contains("refused this admin token"), "{err}");
    assert!(!c.join("admin-login.json").exists());

    let (ok, out, err) = elsewhere(
        &[
            "login",
            "--admin",
            "--url",
            &server.base,
            "--token",
            admin_token,
        ],
        c,
        n,
    );
    assert!(ok, "{err}");
    assert!(out.contains("administrator"), "{out}");
    let stored = std::fs::read_to_string(c.join("admin-login.json")).unwrap();
    assert!(stored.contains(admin_token));
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode = std::fs::metadata(c.join("admin-login.json"))
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(mode & 0o777, 0o600, "the admin login is private");
    }

    // No --url, no token anywhere else: the stored login names the gateway and the token.
    let (ok, out, err) = elsewhere(
        &["projects", "create", "--id", "remote", "--name", "Remote"],
        c,
        n,
    );
    assert!(ok, "{err}");
    assert!(out.contains("created project remote"), "{out}");
    let (ok, list, err) = elsewhere(&["projects", "list"], c, n);
    assert!(ok, "{err}");
    assert!(list.contains("remote"), "{list}");
    let (ok, audit, err) = elsewhere(&["audit"], c, n);
    assert!(ok, "{err}");
    assert!(audit.contains("project.created"), "{audit}");

    // The stored token is only sent to the gateway it belongs to.
    let other = MockServer::start().await.unwrap();
    let (ok, _, err) = elsewhere(&["projects", "list", "--url", &other.url()], c, n);
    assert!(!ok);
    assert!(err.contains("no admin token"), "{err}");
    assert!(
        other
            .state
            .requests()
            .iter()
            .all(|r| !format!("{r:?}").contains(admin_token)),
        "the admin token went to another host"
    );

    let (ok, out, _) = elsewhere(&["logout"], c, n);
    assert!(ok && out.contains("admin token is removed"), "{out}");
    let (ok, _, _) = elsewhere(&["projects", "list"], c, n);
    assert!(!ok, "after logout the admin commands have no token");
}
