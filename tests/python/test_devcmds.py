"""The developer's commands run as the real `meshgate` binary against the test gateway:
login (saved privately, a refused key never saved), whoami, logout, `setup codex` and
`setup claude` (merged into existing files, idempotent), `run` (environment and exit codes),
`usage` of one's own (numbers equal to the calls made), and the real Codex CLI and Claude
Code completing a turn through the gateway, directly and through `meshgate proxy`.

Every command runs with a temporary HOME, MESHGATE_CONFIG_DIR, CODEX_HOME and
CLAUDE_CONFIG_DIR: never the real home."""

from __future__ import annotations

import json
import os
import shlex
import shutil
import stat
import subprocess
import time
import tomllib
from dataclasses import dataclass
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from conftest import ROOT, Proc, Stack, _binary
from support import CLIENT_TIMEOUT_S, LEDGER_TIMEOUT_S

CLIENTS = ROOT / "tests" / "clients"
MESSAGES = [{"role": "user", "content": "hi"}]


@dataclass
class Dev:
    """A developer's machine: a temporary home and the `meshgate` binary run in it."""

    home: Path
    env: dict[str, str]
    binary: Path

    @property
    def config_dir(self) -> Path:
        return Path(self.env["MESHGATE_CONFIG_DIR"])

    @property
    def codex_home(self) -> Path:
        return Path(self.env["CODEX_HOME"])

    @property
    def claude_dir(self) -> Path:
        return Path(self.env["CLAUDE_CONFIG_DIR"])

    def mg(self, *args: str, input: str | None = None, **env: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [str(self.binary), *args],
            env={**self.env, **env},
            input=input,
            stdin=None if input is not None else subprocess.DEVNULL,
            capture_output=True,
            text=True,
            timeout=CLIENT_TIMEOUT_S,
            cwd=self.home,
        )

    def ok(self, *args: str, **kw: Any) -> str:
        done = self.mg(*args, **kw)
        assert done.returncode == 0, f"meshgate {args} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
        return done.stdout


@pytest.fixture
def dev(tmp_path: Path) -> Dev:
    home = tmp_path / "home"
    home.mkdir()
    env = {k: v for k, v in os.environ.items() if not k.startswith(("MESHGATE_", "CODEX_", "CLAUDE_"))}
    env.update(
        HOME=str(home),
        XDG_CONFIG_HOME=str(home / ".config"),
        MESHGATE_CONFIG_DIR=str(home / ".config" / "meshgate"),
        CODEX_HOME=str(home / ".codex"),
        CLAUDE_CONFIG_DIR=str(home / ".claude"),
    )
    return Dev(home, env, _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate"))


def new_key(stack: Stack, name: str, **fields: Any) -> dict[str, Any]:
    r = stack.admin.http.post("/admin/v1/keys", json={"name": name, **fields})
    assert r.status_code == 201, r.text
    return r.json()


def logged_in(dev: Dev, stack: Stack, key: dict[str, Any]) -> None:
    dev.ok("login", "--url", stack.url, "--token", key["secret"])


def wait_events(stack: Stack, key_id: str, count: int) -> list[dict[str, Any]]:
    return stack.admin.wait_events(key_id, count)


# ---------------------------------------------------------------------------------------
# login, whoami, logout
# ---------------------------------------------------------------------------------------


def test_login_saves_a_good_key_privately(dev: Dev, stack: Stack) -> None:
    key = new_key(stack, "laptop")
    out = dev.ok("login", "--url", stack.url + "/", "--token", key["secret"])
    assert f"API key {key['id']} (laptop)" in out and "project default" in out
    assert key["secret"] not in out, "the credential is never printed"
    path = dev.config_dir / "login.json"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert json.loads(path.read_text()) == {"url": stack.url, "token": key["secret"]}


def test_login_reads_the_key_from_stdin_or_the_environment(dev: Dev, stack: Stack) -> None:
    key = new_key(stack, "piped")
    dev.ok("login", "--url", stack.url, input=key["secret"] + "\n")
    assert json.loads((dev.config_dir / "login.json").read_text())["token"] == key["secret"]
    other = new_key(stack, "from-env")
    dev.ok("login", "--url", stack.url, "--project-id", "default", MESHGATE_TOKEN=other["secret"])
    saved = json.loads((dev.config_dir / "login.json").read_text())
    assert saved == {"url": stack.url, "token": other["secret"], "project_id": "default"}


def test_login_refuses_a_key_the_gateway_rejects_and_saves_nothing(dev: Dev, stack: Stack) -> None:
    revoked = new_key(stack, "revoked")
    stack.admin.revoke_key(revoked["id"])
    for secret in ["mg_" + "x" * 40, revoked["secret"]]:
        done = dev.mg("login", "--url", stack.url, "--token", secret)
        assert done.returncode != 0
        assert "refused this credential" in done.stderr and "nothing was saved" in done.stderr
        assert "401" in done.stderr
        assert not (dev.config_dir / "login.json").exists()
    unreachable = dev.mg("login", "--url", "http://127.0.0.1:9", "--token", revoked["secret"])
    assert unreachable.returncode != 0 and "nothing was saved" in unreachable.stderr
    assert not (dev.config_dir / "login.json").exists()


def whoami_budget(dev: Dev) -> dict[str, list[str]]:
    """whoami's budget table: name -> [limit, spent, in flight, remaining]."""
    out = dev.ok("whoami")
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.startswith("budget "))
    return {line.split()[0]: line.split()[1:] for line in lines[start + 1 :] if line.strip()}


def test_whoami_shows_project_limits_and_what_is_left(dev: Dev, stack: Stack) -> None:
    key = new_key(
        stack,
        "limited",
        limits={"requests_per_minute": 120, "spend_daily_usd": "5.00"},
    )
    logged_in(dev, stack, key)
    out = dev.ok("whoami")
    assert f"gateway     {stack.url}" in out
    assert "project     default" in out
    assert f"API key {key['id']} (limited)" in out
    assert key["secret"] not in out and key["secret"][:6] in out, "masked, not shown"
    assert "rpm=120 tpm=unlimited (key)" in out
    assert [Decimal(v) for v in whoami_budget(dev)["key_daily"]] == [Decimal(5), 0, 0, Decimal(5)]

    client = stack.openai(key["secret"])
    client.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    (event,) = wait_events(stack, key["id"], 1)
    cost = Decimal(event["cost_usd"])
    assert cost > 0
    deadline = time.monotonic() + LEDGER_TIMEOUT_S
    while True:
        limit, spent, in_flight, remaining = map(Decimal, whoami_budget(dev)["key_daily"])
        if spent == cost or time.monotonic() > deadline:
            break
        time.sleep(0.05)
    assert (limit, spent, in_flight, remaining) == (Decimal(5), cost, 0, Decimal(5) - cost)

    as_json = json.loads(dev.ok("whoami", "--json"))
    assert as_json["credential"] == {"kind": "key", "id": key["id"], "name": "limited"}


def test_logout_removes_the_login_and_is_idempotent(dev: Dev, stack: Stack) -> None:
    logged_in(dev, stack, new_key(stack, "bye"))
    assert "logged out" in dev.ok("logout")
    assert not (dev.config_dir / "login.json").exists()
    assert "not logged in" in dev.ok("logout")
    done = dev.mg("whoami")
    assert done.returncode != 0 and "not logged in" in done.stderr


# ---------------------------------------------------------------------------------------
# setup codex, setup claude
# ---------------------------------------------------------------------------------------

CODEX_CONFIG = """\
# my Codex settings: keep these comments
model = "o3"   # the default model
approval_policy = "on-request"

[model_providers.mylocal] # a provider of my own
name = "Local"
base_url = "http://localhost:11434/v1"

[profiles.meshgate] # legacy profile table: Codex now refuses it beside meshgate.config.toml
model = "old"

[mcp_servers.docs]
command = "docs-server"
"""


def test_setup_codex_keeps_the_file_and_is_idempotent(dev: Dev, stack: Stack) -> None:
    logged_in(dev, stack, new_key(stack, "codex"))
    dev.codex_home.mkdir()
    config = dev.codex_home / "config.toml"
    config.write_text(CODEX_CONFIG)
    out = dev.ok("setup", "codex")
    assert "MESHGATE_TOKEN" in out, "says which variable to set"
    first = config.read_bytes()
    profile = dev.codex_home / "meshgate.config.toml"
    first_profile = profile.read_bytes()

    text = first.decode()
    for line in CODEX_CONFIG.splitlines():
        if "meshgate" not in line and line != 'model = "old"':
            assert line in text, f"{line!r} lost:\n{text}"
    parsed = tomllib.loads(text)
    assert parsed["model_providers"]["meshgate"] == {
        "name": "meshgate",
        "base_url": f"{stack.url}/openai/v1",
        "env_key": "MESHGATE_TOKEN",
        "wire_api": "responses",
    }
    assert parsed["model_providers"]["mylocal"]["base_url"] == "http://localhost:11434/v1"
    assert "profiles" not in parsed, "the legacy meshgate profile table is removed"
    assert parsed["mcp_servers"]["docs"] == {"command": "docs-server"}
    assert tomllib.loads(first_profile.decode()) == {"model_provider": "meshgate", "model": "gpt-5"}

    assert "already up to date" in dev.ok("setup", "codex")
    assert config.read_bytes() == first and profile.read_bytes() == first_profile

    dev.ok("setup", "codex", "--local", "--model", "gpt-4.1")
    local = tomllib.loads(config.read_text())["model_providers"]["meshgate"]
    assert local["base_url"] == "http://127.0.0.1:8766/openai/v1"
    assert local["env_key"] == "OPENAI_API_KEY"
    assert tomllib.loads(profile.read_text())["model"] == "gpt-4.1"


def test_setup_claude_merges_into_settings_and_is_idempotent(dev: Dev, stack: Stack) -> None:
    key = new_key(stack, "claude")
    logged_in(dev, stack, key)
    dev.claude_dir.mkdir()
    settings = dev.claude_dir / "settings.json"
    existing = {
        "model": "opus",
        "permissions": {"allow": ["Bash(ls:*)"], "deny": []},
        "env": {"BASH_DEFAULT_TIMEOUT_MS": "1000"},
        "hooks": {},
    }
    settings.write_text(json.dumps(existing, indent=4))
    out = dev.ok("setup", "claude")
    assert key["secret"] not in out, "the credential is not printed without --print"
    written = json.loads(settings.read_text())
    assert written == {
        **existing,
        "env": {
            "BASH_DEFAULT_TIMEOUT_MS": "1000",
            "ANTHROPIC_BASE_URL": f"{stack.url}/anthropic",
            "ANTHROPIC_AUTH_TOKEN": key["secret"],
        },
    }
    first = settings.read_bytes()
    assert "already points Claude Code" in dev.ok("setup", "claude")
    assert settings.read_bytes() == first

    printed = dev.ok("setup", "claude", "--print")
    assert printed.splitlines() == [
        f"export ANTHROPIC_BASE_URL='{stack.url}/anthropic'",
        f"export ANTHROPIC_AUTH_TOKEN='{key['secret']}'",
    ]
    assert settings.read_bytes() == first, "--print writes nothing"


def test_setup_claude_creates_a_private_settings_file(dev: Dev, stack: Stack) -> None:
    logged_in(dev, stack, new_key(stack, "fresh"))
    dev.ok("setup", "claude", "--local")
    settings = dev.claude_dir / "settings.json"
    assert stat.S_IMODE(settings.stat().st_mode) == 0o600
    env = json.loads(settings.read_text())["env"]
    bearer = (dev.config_dir / "proxy-bearer").read_text().strip()
    assert env == {"ANTHROPIC_BASE_URL": "http://127.0.0.1:8766/anthropic", "ANTHROPIC_AUTH_TOKEN": bearer}


# ---------------------------------------------------------------------------------------
# run
# ---------------------------------------------------------------------------------------

PRINT_ENV = "for v in OPENAI_BASE_URL OPENAI_API_KEY ANTHROPIC_BASE_URL ANTHROPIC_API_KEY MESHGATE_TOKEN; do eval echo $v=\\${$v-unset}; done"


def env_lines(out: str) -> dict[str, str]:
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def test_run_sets_the_sdk_variables_and_passes_exit_codes(dev: Dev, stack: Stack) -> None:
    key = new_key(stack, "runner")
    logged_in(dev, stack, key)
    out = dev.ok("run", "--", "sh", "-c", PRINT_ENV, OPENAI_API_KEY="sk-real-openai")
    assert env_lines(out) == {
        "OPENAI_BASE_URL": f"{stack.url}/openai/v1",
        "OPENAI_API_KEY": key["secret"],
        "ANTHROPIC_BASE_URL": f"{stack.url}/anthropic",
        "ANTHROPIC_API_KEY": key["secret"],
        "MESHGATE_TOKEN": key["secret"],
    }
    assert dev.mg("run", "--", "sh", "-c", "exit 7").returncode == 7
    assert dev.mg("run", "--", "sh", "-c", "exit 0").returncode == 0
    assert dev.mg("run", "--", "sh", "-c", "kill -TERM $$").returncode == 128 + 15
    missing = dev.mg("run", "--", "no-such-command-here")
    assert missing.returncode != 0 and "cannot run no-such-command-here" in missing.stderr

    local = env_lines(dev.ok("run", "--local", "--", "sh", "-c", PRINT_ENV, MESHGATE_TOKEN=key["secret"]))
    bearer = (dev.config_dir / "proxy-bearer").read_text().strip()
    assert local == {
        "OPENAI_BASE_URL": "http://127.0.0.1:8766/openai/v1",
        "OPENAI_API_KEY": bearer,
        "ANTHROPIC_BASE_URL": "http://127.0.0.1:8766/anthropic",
        "ANTHROPIC_API_KEY": bearer,
        "MESHGATE_TOKEN": "unset",
    }, "with --local the command never sees the gateway credential"


def test_run_drives_the_official_sdks_to_the_gateway(dev: Dev, stack: Stack) -> None:
    key = new_key(stack, "sdk-run")
    logged_in(dev, stack, key)
    script = (
        "import anthropic, openai\n"
        "openai.OpenAI(max_retries=0).chat.completions.create(model='gpt-4o-mini', messages=[{'role': 'user', 'content': 'hi'}])\n"
        "anthropic.Anthropic(max_retries=0).messages.create(model='claude-haiku-4-5', max_tokens=5, messages=[{'role': 'user', 'content': 'hi'}])\n"
    )
    import sys

    dev.ok("run", "--", sys.executable, "-c", script)
    events = wait_events(stack, key["id"], 2)
    assert sorted(e["model"] for e in events) == ["claude-haiku-4-5", "gpt-4o-mini"]


# ---------------------------------------------------------------------------------------
# usage (one's own)
# ---------------------------------------------------------------------------------------


def table(out: str, label: str) -> dict[str, list[str]]:
    """The rows of the table whose header starts with `label`: group -> columns."""
    lines = out.splitlines()
    start = next(i for i, line in enumerate(lines) if line.split()[:1] == [label])
    rows = {}
    for line in lines[start + 1 :]:
        if not line.strip():
            break
        cols = line.split()
        rows[cols[0]] = cols[1:]
    return rows


def test_usage_shows_my_own_calls_by_model_and_day(dev: Dev, stack: Stack) -> None:
    key = new_key(stack, "mine")
    other = new_key(stack, "someone-else")
    oai = stack.openai(key["secret"])
    for _ in range(3):
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stack.anthropic(api_key=key["secret"]).messages.create(
        model="claude-haiku-4-5", max_tokens=5, messages=MESSAGES
    )
    stack.openai(other["secret"]).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    events = wait_events(stack, key["id"], 4)
    wait_events(stack, other["id"], 1)

    def expected(model: str | None) -> tuple[int, Decimal, int]:
        mine = [e for e in events if model is None or e["model"] == model]
        return len(mine), sum(Decimal(e["cost_usd"]) for e in mine), sum(e["usage"]["output"] for e in mine)

    logged_in(dev, stack, key)
    # No admin token given and a login at hand: one's own usage.
    out = dev.ok("usage")
    assert "your usage at" in out
    by_model = table(out, "model")
    by_day = table(out, "day")
    assert set(by_model) == {"gpt-4o-mini", "claude-haiku-4-5", "TOTAL"}
    for model, row in [("gpt-4o-mini", by_model["gpt-4o-mini"]), ("claude-haiku-4-5", by_model["claude-haiku-4-5"]), (None, by_model["TOTAL"])]:
        requests, cost, output = expected(model)
        assert (int(row[0]), Decimal(row[-1]), int(row[5])) == (requests, cost, output), (model, row)
    today = time.strftime("%Y-%m-%d", time.gmtime())
    assert set(by_day) == {today, "TOTAL"}
    assert int(by_day[today][0]) == 4 and Decimal(by_day[today][-1]) == expected(None)[1]

    as_json = json.loads(dev.ok("usage", "--json"))
    assert as_json["by_day"]["total"]["requests"] == 4
    listed = dev.ok("usage", "--events")
    assert sum(e["request_id"] in listed for e in events) == 4

    # The admin view is still there with an admin token or an admin-only filter.
    admin_token = stack.admin.http.headers["authorization"].removeprefix("Bearer ")
    admin_out = dev.ok("usage", "--url", stack.url, "--admin-token", admin_token, "--key-id", other["id"])
    assert "your usage" not in admin_out
    assert int(table(admin_out, "model")["gpt-4o-mini"][0]) == 1
    refused = dev.mg("usage", "--mine", "--project", "default")
    assert refused.returncode != 0 and "--mine" in refused.stderr


# ---------------------------------------------------------------------------------------
# The real clients: Codex CLI and Claude Code
# ---------------------------------------------------------------------------------------


def client_env(dev: Dev) -> dict[str, str]:
    """Offline: any request not to loopback goes to a closed port, so a client that needs
    the internet fails here rather than passing by luck."""
    dead = "http://127.0.0.1:9"
    return {
        "HTTP_PROXY": dead,
        "HTTPS_PROXY": dead,
        "http_proxy": dead,
        "https_proxy": dead,
        "NO_PROXY": "127.0.0.1,localhost",
        "no_proxy": "127.0.0.1,localhost",
        "DISABLE_TELEMETRY": "1",
        "DISABLE_AUTOUPDATER": "1",
        "DISABLE_ERROR_REPORTING": "1",
        "CLAUDE_CODE_DISABLE_NONESSENTIAL_TRAFFIC": "1",
    }


def client(name: str, clients: Path = CLIENTS) -> Path:
    """The installed client, else a skip that says why (install.sh's recorded failure)."""
    path = clients / "node_modules" / ".bin" / name
    failed = clients / "install-failed"
    if failed.exists():
        why = failed.read_text(errors="replace").strip()
        pytest.skip(f"{name} is not installed: tests/clients/install.sh failed: {why}")
    if not path.exists():
        pytest.skip(f"{path} is not installed: run tests/clients/install.sh (it needs npm and the npm registry)")
    return path


def run_client(dev: Dev, argv: list[str], **env: str) -> subprocess.CompletedProcess[str]:
    work = dev.home / "work"
    work.mkdir(exist_ok=True)
    return subprocess.run(
        argv,
        env={**dev.env, **client_env(dev), **env},
        stdin=subprocess.DEVNULL,
        capture_output=True,
        text=True,
        timeout=120,
        cwd=work,
    )


def test_codex_exec_completes_a_turn_through_the_gateway(dev: Dev, stack: Stack) -> None:
    codex = client("codex")
    key = new_key(stack, "codex-cli")
    logged_in(dev, stack, key)
    dev.ok("setup", "codex", "--model", "gpt-5")
    argv = [str(dev.binary), "run", "--", str(codex), "exec", "--profile", "meshgate",
            "--skip-git-repo-check", "Say hello"]  # fmt: skip
    done = run_client(dev, argv)
    assert done.returncode == 0, f"codex exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "tok0" in done.stdout, done.stdout
    (event,) = wait_events(stack, key["id"], 1)
    assert (event["endpoint"], event["model"], event["status"]) == ("responses", "gpt-5", 200)
    assert Decimal(event["cost_usd"]) > 0 and event["usage"]["output"] > 0


def test_claude_code_completes_a_turn_through_the_gateway(dev: Dev, stack: Stack) -> None:
    claude = client("claude")
    key = new_key(stack, "claude-code")
    logged_in(dev, stack, key)
    dev.ok("setup", "claude")
    argv = [str(claude), "-p", "--model", "claude-haiku-4-5", "Say hello"]
    done = run_client(dev, argv, ANTHROPIC_DEFAULT_HAIKU_MODEL="claude-haiku-4-5")
    assert done.returncode == 0, f"claude exited {done.returncode}\n{done.stdout}\n{done.stderr}"
    assert "tok0" in done.stdout, done.stdout
    events = wait_events(stack, key["id"], 1)
    assert {(e["endpoint"], e["model"], e["status"]) for e in events} == {("messages", "claude-haiku-4-5", 200)}
    assert all(Decimal(e["cost_usd"]) > 0 for e in events)
    # Through `meshgate run` too (the variables instead of the settings file).
    (dev.claude_dir / "settings.json").unlink()
    again = run_client(dev, [str(dev.binary), "run", "--", *argv])
    assert again.returncode == 0 and "tok0" in again.stdout, again.stderr
    assert len(wait_events(stack, key["id"], len(events) + 1)) > len(events)


def test_codex_and_claude_code_work_through_meshgate_proxy(dev: Dev, stack: Stack) -> None:
    """The README's path: login, `meshgate proxy`, `setup codex --local`, `run --local`: the
    clients reach the gateway only through the proxy, with its local bearer, and the proxy's
    per-request lines carry the gateway's cost of each call."""
    codex, claude = client("codex"), client("claude")
    key = new_key(stack, "via-proxy")
    logged_in(dev, stack, key)
    # Upstream URL and credential come from the stored login.
    proxy = Proc("proxy", [str(dev.binary), "proxy", "--port", "0", "--no-tui"], dev.env, dev.home)
    try:
        url = proxy.wait_for_line(r"^meshgate proxy on (http://\S+) -> \S+").group(1)
        local = {"MESHGATE_PROXY_URL": url}
        dev.ok("setup", "codex", "--local", "--model", "gpt-5", **local)
        runs = {
            "codex": [str(codex), "exec", "--profile", "meshgate", "--skip-git-repo-check", "Say hello"],
            "claude": [str(claude), "-p", "--model", "claude-haiku-4-5", "Say hello"],
        }  # fmt: skip
        for name, argv in runs.items():
            done = run_client(dev, [str(dev.binary), "run", "--local", "--", *argv],
                              ANTHROPIC_DEFAULT_HAIKU_MODEL="claude-haiku-4-5", **local)  # fmt: skip
            assert done.returncode == 0, f"{name} exited {done.returncode}\n{done.stdout}\n{done.stderr}"
            assert "tok0" in done.stdout, done.stdout
        events = wait_events(stack, key["id"], 2)
        assert {(e["endpoint"], e["model"]) for e in events} == {("responses", "gpt-5"), ("messages", "claude-haiku-4-5")}
        # The proxy printed a line per call with the gateway's own cost of it.
        costs = {e["model"]: Decimal(e["cost_usd"]) + Decimal(e.get("markup_usd") or 0) for e in events}
        deadline = time.monotonic() + LEDGER_TIMEOUT_S
        while True:
            text = proxy.stdout_path.read_text(errors="replace")
            lines = [l for l in text.splitlines() if " 200 " in l and "cost=$" in l]
            if len(lines) >= 2 or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        for model, cost in costs.items():
            line = next((l for l in lines if f" {model} " in l), None)
            assert line is not None, f"no proxy line for {model}\n{proxy.logs()}"
            assert Decimal(line.split("cost=$")[1].split()[0]) == cost, line
    finally:
        assert proxy.stop() == 0, proxy.logs()


def test_shell_lines_of_setup_claude_print_evaluate(dev: Dev, stack: Stack) -> None:
    key = new_key(stack, "shell")
    logged_in(dev, stack, key)
    printed = dev.ok("setup", "claude", "--print")
    out = subprocess.run(
        ["sh", "-c", printed + "\necho \"$ANTHROPIC_BASE_URL $ANTHROPIC_AUTH_TOKEN\""],
        capture_output=True, text=True, check=True,
    ).stdout  # fmt: skip
    assert out.split() == [f"{stack.url}/anthropic", key["secret"]]
    assert shlex.split(printed.splitlines()[1])[1] == f"ANTHROPIC_AUTH_TOKEN={key['secret']}"


def test_a_failed_client_install_warns_and_the_client_tests_skip_saying_so(tmp_path: Path) -> None:
    """npm present but its registry unreachable: install.sh (a copy, run in a scratch
    directory with an empty cache) warns and exits 0, so run.sh goes on to pytest, and the
    client tests skip quoting the failure."""
    if shutil.which("npm") is None:
        pytest.skip("npm is not installed: install.sh's npm ci failure cannot be produced")
    clients = tmp_path / "clients"
    clients.mkdir()
    for name in ["install.sh", "package.json", "package-lock.json"]:
        shutil.copy(CLIENTS / name, clients / name)
    env = {
        **os.environ,
        "npm_config_registry": "http://127.0.0.1:9/",
        "npm_config_cache": str(tmp_path / "npm-cache"),
        "npm_config_fetch_retries": "0",
        "npm_config_offline": "false",
    }
    done = subprocess.run(
        ["bash", str(clients / "install.sh")], env=env, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 0, done.stderr
    assert "WARNING: npm ci failed" in done.stderr, done.stderr
    why = (clients / "install-failed").read_text()
    assert "npm ci failed" in why and "ECONNREFUSED" in why, why
    with pytest.raises(pytest.skip.Exception) as skipped:
        client("codex", clients)
    assert "install.sh failed: npm ci failed" in str(skipped.value), skipped.value
