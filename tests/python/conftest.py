"""Fixtures for the official-SDK tests: the mock provider and meshgate run as subprocesses on
port 0 for the whole session; each test gets its own meshgate key, SDK clients bound to it, and
helpers to read the ledger (admin API) and what reached the provider (mock introspection).

Binaries: `MESHGATE_TEST_GATEWAY_BIN` / `MESHGATE_TEST_MOCK_BIN` (set by run.sh), otherwise
`target/debug/meshgate{,-mock}` under the repository root.
"""

from __future__ import annotations

import base64
import os
import re
import subprocess
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Callable, Iterable

import anthropic
import httpx
import openai
import pytest

from support import CLIENT_TIMEOUT_S, LEDGER_TIMEOUT_S

ROOT = Path(__file__).resolve().parents[2]
START_TIMEOUT_S = 30.0
MOCK_OPENAI_KEY = "sk-mock-openai"
MOCK_ANTHROPIC_KEY = "sk-ant-mock"
MOCK_GEMINI_KEY = "mock-gemini-key"

# The tests must not depend on the machine: no SDK settings from the environment, no proxy
# between the clients and loopback.
for _name in list(os.environ):
    if _name.startswith(("OPENAI_", "ANTHROPIC_")):
        del os.environ[_name]
os.environ["NO_PROXY"] = ",".join(
    filter(None, [os.environ.get("NO_PROXY"), "127.0.0.1", "localhost"])
)
os.environ["no_proxy"] = os.environ["NO_PROXY"]


# ---------------------------------------------------------------------------------------
# Subprocesses
# ---------------------------------------------------------------------------------------


class StartError(RuntimeError):
    pass


class Proc:
    """A child process whose stdout and stderr go to files (no pipe to fill up)."""

    def __init__(self, name: str, argv: list[str], env: dict[str, str], workdir: Path):
        self.name = name
        self.stdout_path = workdir / f"{name}.stdout"
        self.stderr_path = workdir / f"{name}.stderr"
        with open(self.stdout_path, "wb") as out, open(self.stderr_path, "wb") as err:
            self.proc = subprocess.Popen(
                argv, stdin=subprocess.DEVNULL, stdout=out, stderr=err, env=env, cwd=workdir
            )

    def logs(self, tail: int = 4000) -> str:
        def read(p: Path) -> str:
            try:
                return p.read_text(errors="replace")[-tail:]
            except OSError:
                return ""

        return (
            f"--- {self.name} stdout ({self.stdout_path}) ---\n{read(self.stdout_path)}\n"
            f"--- {self.name} stderr ({self.stderr_path}) ---\n{read(self.stderr_path)}"
        )

    def wait_for_line(self, pattern: str) -> re.Match[str]:
        """The first complete stdout line matching `pattern`; fails with the logs if the
        process exits or the line does not come in time."""
        regex = re.compile(pattern + r"\r?\n", re.M)
        deadline = time.monotonic() + START_TIMEOUT_S
        while True:
            found = regex.search(self.stdout_path.read_text(errors="replace"))
            if found:
                return found
            code = self.proc.poll()
            if code is not None:
                raise StartError(f"{self.name} exited with status {code} at start\n{self.logs()}")
            if time.monotonic() > deadline:
                self.stop()
                raise StartError(
                    f"{self.name} printed no line matching {pattern!r} in {START_TIMEOUT_S} s\n"
                    f"{self.logs()}"
                )
            time.sleep(0.02)

    def stop(self) -> int:
        if self.proc.poll() is None:
            self.proc.terminate()
            try:
                self.proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        return self.proc.returncode


def _binary(env_name: str, default: str) -> Path:
    path = Path(os.environ.get(env_name) or ROOT / "target" / "debug" / default)
    if not path.is_file():
        pytest.exit(
            f"{path} does not exist: run tests/python/run.sh, or "
            f"`cargo build -p meshgate -p meshgate-mock` first",
            returncode=2,
        )
    return path


# ---------------------------------------------------------------------------------------
# Admin API and mock introspection
# ---------------------------------------------------------------------------------------


class Admin:
    """The admin API (keys, usage) over httpx with the admin token."""

    def __init__(self, base_url: str, token: str):
        self.http = httpx.Client(
            base_url=base_url,
            headers={"authorization": f"Bearer {token}"},
            timeout=CLIENT_TIMEOUT_S,
            trust_env=False,
        )

    def create_key(self, name: str) -> dict[str, Any]:
        r = self.http.post("/admin/v1/keys", json={"name": name})
        assert r.status_code == 201, r.text
        key = r.json()
        assert key["secret"].startswith("mg_") and key["id"], key
        return key

    def revoke_key(self, key_id: str) -> dict[str, Any]:
        r = self.http.delete(f"/admin/v1/keys/{key_id}")
        assert r.status_code == 200, r.text
        return r.json()

    def usage(self, **params: Any) -> list[dict[str, Any]]:
        """Events, newest first (all pages)."""
        params.setdefault("limit", 500)
        events: list[dict[str, Any]] = []
        while True:
            r = self.http.get("/admin/v1/usage", params=params)
            assert r.status_code == 200, r.text
            page = r.json()
            events.extend(page["data"])
            if not page["next_before"]:
                return events
            params["before"] = page["next_before"]

    def summary(self, **params: Any) -> dict[str, Any]:
        r = self.http.get("/admin/v1/usage/summary", params=params)
        assert r.status_code == 200, r.text
        return r.json()

    def wait_events(self, key_id: str, count: int) -> list[dict[str, Any]]:
        """The events of `key_id` once there are at least `count` (bounded poll), oldest first."""
        deadline = time.monotonic() + LEDGER_TIMEOUT_S
        while True:
            events = self.usage(key_id=key_id)
            if len(events) >= count or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(events) >= count, (
            f"{len(events)} events for {key_id} after {LEDGER_TIMEOUT_S} s, expected {count}: "
            f"{events}"
        )
        return list(reversed(events))

    def event(self, key_id: str, rid: str) -> dict[str, Any]:
        """The one event of request `rid` (bounded poll)."""
        deadline = time.monotonic() + LEDGER_TIMEOUT_S
        while True:
            found = [e for e in self.usage(key_id=key_id) if e["request_id"] == rid]
            if found or time.monotonic() > deadline:
                break
            time.sleep(0.05)
        assert len(found) == 1, f"expected one event for {rid}, found {found}"
        return found[0]


class Mock:
    """What the mock provider received (`/_mock/requests`)."""

    def __init__(self, base_url: str):
        self.url = base_url
        self.http = httpx.Client(base_url=base_url, timeout=CLIENT_TIMEOUT_S, trust_env=False)

    def requests(self, tag: dict[str, str] | None = None) -> list[dict[str, Any]]:
        r = self.http.get("/_mock/requests")
        assert r.status_code == 200, r.text
        listed = r.json()
        for req in listed:
            req["headers_dict"] = {k.lower(): v for k, v in req["headers"]}
            req["body_bytes"] = base64.b64decode(req["body"]) if req["body"] else b""
        if tag is None:
            return listed
        ((name, value),) = tag.items()
        return [q for q in listed if q["headers_dict"].get(name) == value]


@dataclass
class Stack:
    url: str
    mock: Mock
    admin: Admin
    gateway_proc: Proc
    mock_proc: Proc

    @property
    def openai_base(self) -> str:
        return f"{self.url}/openai/v1"

    @property
    def anthropic_base(self) -> str:
        return f"{self.url}/anthropic"

    def openai(self, api_key: str, **kw: Any) -> openai.OpenAI:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", CLIENT_TIMEOUT_S)
        return openai.OpenAI(base_url=self.openai_base, api_key=api_key, **kw)

    def anthropic(self, **kw: Any) -> anthropic.Anthropic:
        kw.setdefault("max_retries", 0)
        kw.setdefault("timeout", CLIENT_TIMEOUT_S)
        return anthropic.Anthropic(base_url=self.anthropic_base, **kw)


_STACK: Stack | None = None


@pytest.fixture(scope="session")
def stack(tmp_path_factory: pytest.TempPathFactory) -> Iterable[Stack]:
    global _STACK
    workdir = tmp_path_factory.mktemp("meshgate")
    mock_bin = _binary("MESHGATE_TEST_MOCK_BIN", "meshgate-mock")
    gateway_bin = _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")
    base_env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}

    mock_proc = Proc("mock", [str(mock_bin), "--listen", "127.0.0.1:0"], base_env, workdir)
    procs = [mock_proc]
    try:
        mock_url = mock_proc.wait_for_line(r"^meshgate-mock listening on (http://\S+)").group(1)
        admin_token = f"mgadmin-test-{uuid.uuid4().hex}"
        env = {
            **base_env,
            "MESHGATE_ADMIN_TOKEN": admin_token,
            "MESHGATE_LOG": os.environ.get("MESHGATE_LOG", "info"),
            "OPENAI_API_KEY": MOCK_OPENAI_KEY,
            "ANTHROPIC_API_KEY": MOCK_ANTHROPIC_KEY,
            "GEMINI_API_KEY": MOCK_GEMINI_KEY,
            "MESHGATE_OPENAI_BASE_URL": f"{mock_url}/v1",
            "MESHGATE_ANTHROPIC_BASE_URL": mock_url,
            "MESHGATE_GEMINI_BASE_URL": mock_url,
        }
        argv = [
            str(gateway_bin), "serve",
            "--listen", "127.0.0.1:0",
            "--data-dir", str(workdir / "data"),
        ]  # fmt: skip
        gateway_proc = Proc("gateway", argv, env, workdir)
        procs.append(gateway_proc)
        url = gateway_proc.wait_for_line(r"^meshgate listening on (http://\S+)").group(1)
        _STACK = Stack(url, Mock(mock_url), Admin(url, admin_token), gateway_proc, mock_proc)
        yield _STACK
        _STACK.admin.http.close()
        _STACK.mock.http.close()
        # SIGTERM is a clean shutdown that writes every pending event.
        code = gateway_proc.stop()
        assert code == 0, f"meshgate exited with {code} on SIGTERM\n{gateway_proc.logs()}"
        assert "every usage event is written" in gateway_proc.stderr_path.read_text()
    finally:
        _STACK = None
        for proc in reversed(procs):
            proc.stop()


@pytest.hookimpl(wrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo[None]):
    """A failing test shows the end of the gateway's log."""
    report = yield
    if report.failed and _STACK is not None:
        report.sections.append(("meshgate log", _STACK.gateway_proc.logs(tail=3000)))
    return report


# ---------------------------------------------------------------------------------------
# Per-test key and clients
# ---------------------------------------------------------------------------------------


@dataclass
class Key:
    id: str
    secret: str


@pytest.fixture
def key(stack: Stack, request: pytest.FixtureRequest) -> Key:
    """A fresh meshgate key, so a test reads exactly its own events."""
    created = stack.admin.create_key(request.node.name[:100])
    return Key(created["id"], created["secret"])


@pytest.fixture
def admin(stack: Stack) -> Admin:
    return stack.admin


@pytest.fixture
def mock(stack: Stack) -> Mock:
    return stack.mock


@pytest.fixture
def oai(stack: Stack, key: Key) -> Iterable[openai.OpenAI]:
    client = stack.openai(key.secret)
    yield client
    client.close()


@pytest.fixture
def ant(stack: Stack, key: Key) -> Iterable[anthropic.Anthropic]:
    """anthropic-python 2.x: `api_key=` goes out as `Authorization: Bearer`."""
    client = stack.anthropic(api_key=key.secret)
    yield client
    client.close()


@pytest.fixture
def events(admin: Admin, key: Key) -> Callable[[int], list[dict[str, Any]]]:
    """`events(n)`: this test's events once there are n, oldest first."""
    return lambda n: admin.wait_events(key.id, n)


@pytest.fixture
def event(admin: Admin, key: Key) -> Callable[[str], dict[str, Any]]:
    """`event(request_id)`: this test's event of that call."""
    return lambda rid: admin.event(key.id, rid)
