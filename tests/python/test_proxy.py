"""`meshgate proxy` and `meshgate ask` in front of a real `meshgate serve` in front of the mock:
the official SDKs configured from the exports the proxy prints, the local bearer enforced in
both surfaces' error shapes (or not, with --insecure), the upstream credential never shown to
local clients, the proxy's flags, the gateway's own cost in the per-request lines and in the
live view (driven in tmux: its numbers against the ledger, the upstream going and coming back,
hundreds of calls per second, quitting by key and by signal), and `ask` printing the answer
with its exact tokens and cost."""

from __future__ import annotations

import contextlib
import http.server
import json
import os
import re
import shlex
import shutil
import signal
import socket
import stat
import subprocess
import threading
import time
import uuid
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable, Iterator

import anthropic
import httpx
import openai
import pytest

from conftest import Key, Proc, Stack, StartError, _binary
from support import (
    CLAUDE_HAIKU_4_5,
    CLIENT_TIMEOUT_S,
    GPT_4O,
    GPT_4O_MINI,
    marker,
    mock_usage,
    money,
    usage_of,
    wav_bytes,
)

DEADLINE_S = 20.0
CHAT = [{"role": "user", "content": "Say something."}]
EXPORT = re.compile(
    r"^export (OPENAI_BASE_URL|OPENAI_API_KEY|ANTHROPIC_BASE_URL|ANTHROPIC_API_KEY)=(\S+)$", re.M
)


def wait_until(what: str, probe, deadline_s: float = DEADLINE_S, show=lambda: ""):
    """`probe()`'s first truthy result, polled until the deadline; fails naming `what` and
    with what `show()` returns."""
    deadline = time.monotonic() + deadline_s
    while True:
        found = probe()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out waiting for {what}\n{show()}")
        time.sleep(0.05)


class LocalProxy:
    """A `meshgate proxy --no-tui` process and the exports it printed."""

    def __init__(self, proc: Proc, exports: dict[str, str]):
        self.proc = proc
        self.exports = exports

    def lines(self) -> list[str]:
        """The per-request lines printed so far (after the start banner)."""
        text = self.proc.stdout_path.read_text(errors="replace")
        return [l for l in text.splitlines() if not l.startswith(("export ", "meshgate proxy on "))]

    def wait_lines(self, n: int) -> list[str]:
        return wait_until(
            f"{n} request lines", lambda: len(ls := self.lines()) >= n and ls, show=self.proc.logs
        )

    def openai(self, **kw: Any) -> openai.OpenAI:
        kw.setdefault("api_key", self.exports["OPENAI_API_KEY"])
        base = self.exports["OPENAI_BASE_URL"]
        return openai.OpenAI(base_url=base, max_retries=0, timeout=CLIENT_TIMEOUT_S, **kw)

    def anthropic(self, **kw: Any) -> anthropic.Anthropic:
        kw.setdefault("api_key", self.exports["ANTHROPIC_API_KEY"])
        base = self.exports["ANTHROPIC_BASE_URL"]
        return anthropic.Anthropic(base_url=base, max_retries=0, timeout=CLIENT_TIMEOUT_S, **kw)


def proxy_env(key: Key, config_dir: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    env["MESHGATE_TOKEN"] = key.secret
    env["MESHGATE_CONFIG_DIR"] = str(config_dir)
    return env


@contextlib.contextmanager
def proxy_running(
    workdir: Path, env: dict[str, str], *args: str, name: str = "proxy"
) -> Iterator[LocalProxy]:
    """`meshgate proxy --no-tui ARGS` until the block ends; then SIGTERM, which must end it
    with status 0."""
    binary = _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")
    proc = Proc(name, [str(binary), "proxy", *args, "--no-tui"], env, workdir)
    try:
        proc.wait_for_line(r"^export ANTHROPIC_API_KEY=\S+")
    except BaseException:
        proc.stop()
        raise
    try:
        exports = dict(EXPORT.findall(proc.stdout_path.read_text()))
        assert len(exports) == 4, exports
        yield LocalProxy(proc, exports)
    finally:
        code = proc.stop()
        assert code == 0, f"meshgate proxy exited {code} on SIGTERM\n{proc.logs()}"


@pytest.fixture
def local(stack: Stack, key: Key, tmp_path: Path) -> Iterable[LocalProxy]:
    env = proxy_env(key, tmp_path / "config")
    with proxy_running(tmp_path, env, "--port", "0", "--upstream", stack.url) as proxy:
        yield proxy


def line_fields(line: str) -> dict[str, str]:
    """`HH:MM:SS surface model status NNNms in=.. cached=.. out=.. cost=$..`"""
    m = re.match(
        r"^\d\d:\d\d:\d\d (?P<surface>\S+) (?P<model>\S+) (?P<status>\d+) (?P<ms>\d+)ms "
        r"in=(?P<input>\d+) cached=(?P<cached>\d+) out=(?P<output>\d+) cost=\$(?P<cost>\S+)$",
        line,
    )
    assert m, f"not a metered request line: {line!r}"
    return m.groupdict()


def test_the_sdks_work_through_the_proxy_with_the_gateways_cost_per_request(local, key, stack):
    """Plain and streamed calls of both SDKs, configured only from the printed exports."""
    assert local.exports["OPENAI_BASE_URL"].endswith("/openai/v1")
    assert local.exports["ANTHROPIC_BASE_URL"].endswith("/anthropic")
    assert local.exports["OPENAI_API_KEY"] == local.exports["ANTHROPIC_API_KEY"]
    assert local.exports["OPENAI_API_KEY"].startswith("mgl_")
    assert key.secret not in local.proc.stdout_path.read_text()
    oai, ant = local.openai(), local.anthropic()
    seen: list[tuple[dict[str, str], bytes]] = []

    usage = mock_usage(input_tokens=1000, output_tokens=200, chunks=5)
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o", messages=CHAT, extra_headers=usage
    )
    completion = raw.parse()
    seen.append((dict(raw.headers), raw.http_response.content))
    assert completion.choices[0].message.content == "tok0 tok1 tok2 tok3 tok4 "
    assert completion.usage.prompt_tokens == 1000

    with oai.chat.completions.with_streaming_response.create(
        model="gpt-4o", messages=CHAT, stream=True, stream_options={"include_usage": True},
        extra_headers=usage,
    ) as response:
        body = b"".join(response.iter_bytes())
        seen.append((dict(response.headers), body))
    text = "".join(
        c["choices"][0]["delta"].get("content") or ""
        for c in _sse_json(body) if c.get("choices")
    )  # fmt: skip
    assert text == "tok0 tok1 tok2 tok3 tok4 "

    msg = ant.messages.with_raw_response.create(
        model="claude-haiku-4-5", max_tokens=300, messages=CHAT, extra_headers=usage
    )
    seen.append((dict(msg.headers), msg.http_response.content))
    assert msg.parse().content[0].text == "tok0 tok1 tok2 tok3 tok4 "
    with ant.messages.stream(
        model="claude-haiku-4-5", max_tokens=300, messages=CHAT, extra_headers=usage
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
        seen.append((dict(stream.response.headers), b""))
    assert streamed == "tok0 tok1 tok2 tok3 tok4 "
    assert final.usage.output_tokens == 200

    # The upstream credential never reaches the local client.
    for headers, content in seen:
        assert all(key.secret not in f"{k}: {v}" for k, v in headers.items()), headers
        assert key.secret.encode() not in content
        assert headers.get("meshgate-event-id"), headers

    lines = local.wait_lines(4)
    fields = [line_fields(l) for l in lines]
    gpt_cost = money(GPT_4O.cost(input_uncached=1000, output=200))
    haiku_cost = money(CLAUDE_HAIKU_4_5.cost(input_uncached=1000, output=200))
    by_surface = sorted(
        (f["surface"], f["model"], f["status"], f["input"], f["output"], f["cost"]) for f in fields
    )
    assert by_surface == sorted(
        [("openai", "gpt-4o", "200", "1000", "200", gpt_cost)] * 2
        + [("anthropic", "claude-haiku-4-5", "200", "1000", "200", haiku_cost)] * 2
    ), lines
    # The same numbers as the gateway's ledger.
    events = stack.admin.wait_events(key.id, 4)
    assert sorted(e["cost_usd"] for e in events) == sorted(f["cost"] for f in fields)


def _sse_json(body: bytes) -> list[dict[str, Any]]:
    out = []
    for line in body.decode().splitlines():
        if line.startswith("data: ") and line != "data: [DONE]":
            out.append(json.loads(line[len("data: "):]))
    return out


def test_a_missing_or_wrong_local_bearer_is_refused_in_each_surfaces_shape(local, key, mock):
    """Nothing is forwarded: not the gateway's key (the upstream credential itself is no local
    bearer), not a made-up one, not none."""
    tag = marker()
    for api_key in [key.secret, "mgl_wrong", local.exports["OPENAI_API_KEY"] + "x"]:
        with pytest.raises(openai.AuthenticationError) as refused:
            local.openai(api_key=api_key).chat.completions.create(
                model="gpt-4o", messages=CHAT, extra_headers=tag
            )
        assert refused.value.status_code == 401
        assert refused.value.body["code"] == "invalid_api_key", refused.value.body
        with pytest.raises(anthropic.AuthenticationError) as refused:
            local.anthropic(api_key=api_key).messages.create(
                model="claude-haiku-4-5", max_tokens=10, messages=CHAT, extra_headers=tag
            )
        assert refused.value.status_code == 401
        assert refused.value.body["type"] == "error"
        assert refused.value.body["error"]["type"] == "authentication_error"
    # No credential at all.
    base = local.exports["OPENAI_BASE_URL"]
    r = httpx.post(
        f"{base}/chat/completions",
        json={"model": "gpt-4o", "messages": CHAT},
        headers=tag,
        trust_env=False,
    )
    assert r.status_code == 401 and r.json()["error"]["type"] == "invalid_request_error", r.text
    r = httpx.post(
        local.exports["ANTHROPIC_BASE_URL"] + "/v1/messages",
        json={"model": "claude-haiku-4-5", "max_tokens": 10, "messages": CHAT},
        headers={**tag, "anthropic-version": "2023-06-01"},
        trust_env=False,
    )
    assert r.status_code == 401 and r.json()["error"]["type"] == "authentication_error", r.text
    assert key.secret not in r.text
    # Then the right bearer goes through, so the refusals above were the bearer's doing.
    ok = local.openai().chat.completions.create(model="gpt-4o", messages=CHAT, extra_headers=tag)
    assert ok.choices[0].message.content
    assert len(mock.requests(tag)) == 1
    # The upstream saw the upstream credential, never the local bearer.
    (forwarded,) = mock.requests(tag)
    assert local.exports["OPENAI_API_KEY"] not in str(forwarded["headers"])


def test_streams_pass_chunk_by_chunk_and_a_client_leaving_cancels_upstream(local, admin, key):
    oai = local.openai()
    # 6 deltas 150 ms apart: unbuffered, they arrive spread over the stream's whole length.
    arrivals = []
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, stream=True,
        extra_headers=mock_usage(chunks=6, chunk_delay_ms=150),
    )
    for chunk in stream:
        if chunk.choices and chunk.choices[0].delta.content:
            arrivals.append(time.monotonic())
    assert len(arrivals) == 6
    assert arrivals[-1] - arrivals[0] >= 0.5, f"deltas arrived together: {arrivals}"

    # A client that leaves after two deltas: the gateway sees its call cancelled.
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini", messages=CHAT, stream=True,
        extra_headers=mock_usage(chunks=200, chunk_delay_ms=50, input_tokens=400),
    )  # fmt: skip
    event_id = raw.headers["meshgate-event-id"]
    chunks = iter(raw.parse())
    next(chunks), next(chunks)
    raw.http_response.close()

    def cancelled():
        found = [e for e in admin.usage(key_id=key.id) if e["id"] == event_id]
        return found and found[0]

    ev = wait_until("the cancelled call's event", cancelled)
    assert (ev["streamed"], ev["outcome"]) == (True, "client_cancelled"), ev
    # Well before the 10 s the whole stream would take.
    assert ev["duration_ms"] < 5_000, ev


def test_query_strings_and_binary_bodies_pass_intact(local, mock):
    tag = marker()
    wav = wav_bytes(0.5)
    oai = local.openai()
    transcription = oai.audio.transcriptions.create(
        model="whisper-1", file=("hello.wav", wav, "audio/wav"), extra_headers=tag
    )
    assert transcription.text.strip()
    (upload,) = mock.requests(tag)
    assert upload["headers_dict"]["content-type"].startswith("multipart/form-data")
    assert wav in upload["body_bytes"]  # the file part passed through byte for byte

    tag = marker()
    oai.chat.completions.create(
        model="gpt-4o-mini", messages=CHAT, extra_headers=tag,
        extra_query={"trace": "a b", "x": "1"},
    )
    (call,) = mock.requests(tag)
    assert call["path"] == "/v1/chat/completions"
    assert call["query"] == "trace=a+b&x=1"


# ---------------------------------------------------------------------------------------
# Flags: --insecure, --token-from-env, --project-id, --host, the default port, the stored
# local bearer
# ---------------------------------------------------------------------------------------


def test_insecure_takes_any_key_or_none_and_stores_no_bearer(stack, key, mock, tmp_path):
    env = proxy_env(key, tmp_path / "config")
    with proxy_running(tmp_path, env, "--port", "0", "--upstream", stack.url, "--insecure") as p:
        assert p.exports["OPENAI_API_KEY"] == "any"
        tag = marker()
        for api_key in ["any", "sk-whatever", key.secret]:
            p.openai(api_key=api_key).chat.completions.create(
                model="gpt-4o-mini", messages=CHAT, extra_headers=tag
            )
        r = httpx.post(
            f"{p.exports['OPENAI_BASE_URL']}/chat/completions",
            json={"model": "gpt-4o-mini", "messages": CHAT},
            headers=tag,
            trust_env=False,
        )
        assert r.status_code == 200, r.text
        assert len(mock.requests(tag)) == 4
        assert len(stack.admin.wait_events(key.id, 4)) == 4
    assert not (tmp_path / "config" / "proxy-bearer").exists(), "no local bearer generated"


def test_token_from_env_reads_the_credential_from_another_variable(stack, key, tmp_path):
    env = {k: v for k, v in proxy_env(key, tmp_path / "config").items() if k != "MESHGATE_TOKEN"}
    args = ["--port", "0", "--upstream", stack.url, "--token-from-env", "MY_GATEWAY_KEY"]
    binary = _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")
    # The variable named is unset (and MESHGATE_TOKEN too): no credential, no proxy.
    done = subprocess.run(
        [str(binary), "proxy", *args, "--no-tui"], env=env, capture_output=True, text=True,
        timeout=CLIENT_TIMEOUT_S,
    )  # fmt: skip
    assert done.returncode != 0 and "set MY_GATEWAY_KEY" in done.stderr, done.stderr
    env["MY_GATEWAY_KEY"] = key.secret
    with proxy_running(tmp_path, env, *args) as p:
        p.openai().chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        (event,) = stack.admin.wait_events(key.id, 1)
        assert event["model"] == "gpt-4o-mini"


class Recorder:
    """An HTTP server standing in for the gateway, to see what the proxy sends upstream
    (the gateway reads `Meshgate-Project-Id` only for OAuth callers and strips it before
    the provider). It answers a minimal chat completion."""

    def __init__(self) -> None:
        self.seen: list[dict[str, list[str]]] = []
        seen = self.seen

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                self.rfile.read(int(self.headers.get("content-length") or 0))
                headers: dict[str, list[str]] = {}
                for name, value in self.headers.items():
                    headers.setdefault(name.lower(), []).append(value)
                seen.append(headers)
                body = json.dumps({
                    "id": "chatcmpl-1", "object": "chat.completion", "created": 0,
                    "model": "gpt-4o-mini",
                    "choices": [{"index": 0, "finish_reason": "stop",
                                 "message": {"role": "assistant", "content": "hi"}}],
                }).encode()  # fmt: skip
                self.send_response(200)
                self.send_header("content-type", "application/json")
                self.send_header("content-length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            def log_message(self, *args: Any) -> None:
                pass

        self.server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def test_project_id_is_sent_upstream_in_place_of_the_clients(key, tmp_path):
    recorder = Recorder()
    try:
        env = proxy_env(key, tmp_path / "config")
        args = ["--port", "0", "--upstream", recorder.url]
        with proxy_running(tmp_path, env, *args, "--project-id", "team-a", name="with") as p:
            oai = p.openai()
            oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
            oai.chat.completions.create(
                model="gpt-4o-mini", messages=CHAT, extra_headers={"Meshgate-Project-Id": "other"}
            )
        with proxy_running(tmp_path, env, *args, name="without") as p:
            p.openai().chat.completions.create(
                model="gpt-4o-mini", messages=CHAT, extra_headers={"Meshgate-Project-Id": "mine"}
            )
            p.openai().chat.completions.create(model="gpt-4o-mini", messages=CHAT)
    finally:
        recorder.close()
    projects = [h.get("meshgate-project-id") for h in recorder.seen]
    assert projects == [["team-a"], ["team-a"], ["mine"], None], recorder.seen
    # What goes upstream is the upstream credential, never the local bearer.
    assert all(h["authorization"] == [f"Bearer {key.secret}"] for h in recorder.seen)


def test_host_is_where_the_proxy_listens(stack, key, tmp_path):
    env = proxy_env(key, tmp_path / "config")
    args = ["--host", "127.0.0.2", "--port", "0", "--upstream", stack.url]
    with proxy_running(tmp_path, env, *args) as p:
        m = re.match(r"http://127\.0\.0\.2:(\d+)/openai/v1$", p.exports["OPENAI_BASE_URL"])
        assert m, p.exports
        assert f"meshgate proxy on http://127.0.0.2:{m.group(1)} -> " in p.proc.logs()
        assert p.openai().chat.completions.create(model="gpt-4o-mini", messages=CHAT).choices
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection(("127.0.0.1", int(m.group(1))), timeout=5).close()


def test_the_default_port_is_8766(stack, key, tmp_path):
    with socket.socket() as probe:
        try:
            probe.bind(("127.0.0.1", 8766))
        except OSError as e:
            pytest.skip(f"127.0.0.1:8766 is taken on this machine ({e}): the default port cannot be tried")
    env = proxy_env(key, tmp_path / "config")
    try:
        with proxy_running(tmp_path, env, "--upstream", stack.url) as p:
            assert p.exports["OPENAI_BASE_URL"] == "http://127.0.0.1:8766/openai/v1"
            assert p.exports["ANTHROPIC_BASE_URL"] == "http://127.0.0.1:8766/anthropic"
            assert p.openai().chat.completions.create(model="gpt-4o-mini", messages=CHAT).choices
    except StartError as e:
        if "cannot listen on 127.0.0.1:8766" not in str(e):
            raise
        pytest.skip(f"127.0.0.1:8766 was taken meanwhile: {e}")


def test_the_generated_local_bearer_is_private_and_reused(stack, key, tmp_path):
    config = tmp_path / "config"
    env = proxy_env(key, config)
    path = config / "proxy-bearer"
    assert not path.exists()
    with proxy_running(tmp_path, env, "--port", "0", "--upstream", stack.url, name="first") as p:
        bearer = p.exports["OPENAI_API_KEY"]
        assert bearer.startswith("mgl_") and path.read_text().strip() == bearer
        assert stat.S_IMODE(path.stat().st_mode) == 0o600
    with proxy_running(tmp_path, env, "--port", "0", "--upstream", stack.url, name="second") as p:
        assert p.exports["OPENAI_API_KEY"] == bearer, "reused, not regenerated"
        assert p.openai().chat.completions.create(model="gpt-4o-mini", messages=CHAT).choices
    assert stat.S_IMODE(path.stat().st_mode) == 0o600


# ---------------------------------------------------------------------------------------
# The live view, in tmux
# ---------------------------------------------------------------------------------------


class Tmux:
    """A private tmux server (its own socket) with one 200x50 pane."""

    def __init__(self, workdir: Path):
        if shutil.which("tmux") is None:
            pytest.fail("tmux is not installed (tests/python/run.sh installs it)")
        self.socket = f"meshgate-test-{uuid.uuid4().hex[:8]}"
        self.target = "proxy"
        size = ["-x", "200", "-y", "50"]
        self.tmux("new-session", "-d", "-s", self.target, *size, "-c", str(workdir))
        # Keep the pane after its command exits, to read its exit status and screen.
        self.tmux("set-option", "-t", self.target, "remain-on-exit", "on")

    def tmux(self, *args: str) -> str:
        argv = ["tmux", "-L", self.socket, *args]
        done = subprocess.run(argv, capture_output=True, text=True, timeout=10)
        assert done.returncode == 0, f"tmux {args}: {done.stderr}"
        return done.stdout

    def run(self, command: str) -> None:
        self.tmux("respawn-pane", "-k", "-t", self.target, command)

    def screen(self) -> str:
        return self.tmux("capture-pane", "-p", "-t", self.target)

    def pane(self, fmt: str) -> str:
        return self.tmux("display-message", "-p", "-t", self.target, fmt).strip()

    def close(self) -> None:
        subprocess.run(["tmux", "-L", self.socket, "kill-server"], capture_output=True, timeout=10)


class LiveView:
    """`meshgate proxy` with its live view in a tmux pane, a `with` block long. The shell
    around it writes the proxy's pid (it execs into the proxy) and then its exit status:
    tmux itself now and then leaves a dead pane's process unreaped, its status unknown."""

    def __init__(self, workdir: Path, env: dict[str, str], *args: str):
        binary = _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")
        keep = ("PATH", "HOME", "LANG", "LC_ALL", "MESHGATE_TOKEN", "MESHGATE_CONFIG_DIR",
                "NO_PROXY", "no_proxy")  # fmt: skip
        assigns = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep if k in env)
        argv = " ".join(shlex.quote(a) for a in [str(binary), "proxy", *args])
        self.pid_file = workdir / "proxy.pid"
        self.exit_file = workdir / "proxy.exit"
        inner = f"echo $$ > {self.pid_file}; exec env -i TERM=xterm-256color {assigns} {argv}"
        outer = f"sh -c {shlex.quote(inner)}; echo $? > {self.exit_file}"
        self.tmux = Tmux(workdir)
        try:
            self.tmux.run(f"sh -c {shlex.quote(outer)}")
            screen = self.wait("the live view", lambda s: "usage by model" in s)
            self.base = re.search(r"OPENAI_BASE_URL=(\S+)", screen).group(1)
            assert self.tmux.pane("#{alternate_on}") == "1", "the live view uses the alternate screen"
        except BaseException:
            self.tmux.close()
            raise

    def __enter__(self) -> "LiveView":
        return self

    def __exit__(self, *exc: object) -> None:
        self.tmux.close()

    def wait(self, what: str, probe, deadline_s: float = DEADLINE_S) -> str:
        """The screen once `probe(screen)` holds."""
        return wait_until(
            what, lambda: probe(s := self.tmux.screen()) and s, deadline_s, show=self.tmux.screen
        )

    def openai(self, api_key: str) -> openai.OpenAI:
        return openai.OpenAI(
            base_url=self.base, api_key=api_key, max_retries=0, timeout=CLIENT_TIMEOUT_S
        )

    def quit(self, how: str) -> None:
        """A key sent to the pane (`q`, `C-c`), or a signal to the proxy (`SIGTERM`)."""
        if how.startswith("SIG"):
            os.kill(int(self.pid_file.read_text()), getattr(signal, how))
        else:
            self.tmux.tmux("send-keys", "-t", self.tmux.target, how)

    def exit_status(self, deadline_s: float = DEADLINE_S) -> str:
        return wait_until(
            "the proxy to exit",
            lambda: self.exit_file.is_file() and self.exit_file.read_text().strip(),
            deadline_s,
            show=self.tmux.screen,
        )

    def assert_restored(self) -> None:
        """The terminal is back: the alternate screen left, the start banner visible again."""
        assert self.tmux.pane("#{alternate_on}") == "0", self.tmux.screen()
        assert f"export OPENAI_BASE_URL={self.base}" in self.tmux.screen()


def model_row(screen: str, model: str) -> tuple[int, int, int, int, str, int] | None:
    """(requests, input, cached, output, cost, errors) of `model` in the usage table."""
    m = re.search(
        rf"^\W*{re.escape(model)}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\$(\S+)\s+(\d+)\b", screen, re.M
    )
    if not m:
        return None
    req, inp, cached, out, cost, errors = m.groups()
    return int(req), int(inp), int(cached), int(out), cost, int(errors)


RECENT_ROW = re.compile(
    r"\d\d:\d\d:\d\d\s+(openai|anthropic)\s+(\S+)\s+(\d{3}|-)\s+\d+ms\s+(\d+/\d+|-)\s+(\$\S+|\?)"
)


def recent_rows(screen: str) -> list[tuple[str, str, str, str, str]]:
    """(surface, model, status, "in/out", cost) of each row of the recent requests panel."""
    return RECENT_ROW.findall(screen)


def charged(event: dict[str, Any]) -> Decimal:
    return Decimal(event["cost_usd"]) + Decimal(event.get("markup_usd") or 0)


def input_tokens(event: dict[str, Any]) -> int:
    """The whole prompt, as the view counts it: uncached, cache reads and cache writes."""
    u = usage_of(event)
    return u["input_uncached"] + u["cache_read"] + u["cache_write_5m"] + u["cache_write_1h"]


def ledger_rows(events: list[dict[str, Any]]) -> dict[str, tuple[int, int, int, int, str, int]]:
    """The usage table the view should show, summed from the gateway's ledger events."""
    rows: dict[str, list[Any]] = {}
    for e in events:
        r = rows.setdefault(e["model"], [0, 0, 0, 0, Decimal(0), 0])
        r[0] += 1
        r[1] += input_tokens(e)
        r[2] += usage_of(e)["cache_read"]
        r[3] += usage_of(e)["output"]
        r[4] += charged(e)
        r[5] += e["outcome"] != "ok" or not 200 <= e["status"] < 300
    return {m: (r[0], r[1], r[2], r[3], money(r[4]), r[5]) for m, r in rows.items()}


def test_the_live_view_shows_the_gateways_numbers_and_quits_cleanly(stack, key, tmp_path):
    """The usage table and the recent requests panel, checked against the gateway's ledger
    (and the usage table against the catalog's prices too), then `q`."""
    bearer = "mgl_tmux_" + uuid.uuid4().hex
    env = proxy_env(key, tmp_path / "config")
    with LiveView(tmp_path, env, "--port", "0", "--upstream", stack.url, "--bearer", bearer) as view:
        screen = view.tmux.screen()
        assert key.secret not in screen
        oai = view.openai(bearer)
        usage = mock_usage(input_tokens=1200, cached_tokens=200, output_tokens=300)
        for _ in range(3):
            oai.chat.completions.create(model="gpt-4o", messages=CHAT, extra_headers=usage)
        stream = oai.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT, stream=True,
            extra_headers=mock_usage(input_tokens=50, output_tokens=7),
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        ant = anthropic.Anthropic(
            base_url=view.base.removesuffix("/openai/v1") + "/anthropic", api_key=bearer,
            max_retries=0, timeout=CLIENT_TIMEOUT_S,
        )  # fmt: skip
        ant.messages.create(
            model="claude-haiku-4-5", max_tokens=50, messages=CHAT,
            extra_headers=mock_usage(input_tokens=40, output_tokens=9),
        )  # fmt: skip
        # OpenAI counts cached tokens inside the prompt: 1000 uncached + 200 read from cache.
        gpt_cost = money(3 * GPT_4O.cost(input_uncached=1000, cache_read=200, output=300))
        mini_cost = money(GPT_4O_MINI.cost(input_uncached=50, output=7))
        haiku_cost = money(CLAUDE_HAIKU_4_5.cost(input_uncached=40, output=9))
        expected = {
            "gpt-4o": (3, 3600, 600, 900, gpt_cost, 0),
            "gpt-4o-mini": (1, 50, 0, 7, mini_cost, 0),
            "claude-haiku-4-5": (1, 40, 0, 9, haiku_cost, 0),
        }
        screen = view.wait(
            f"the rows {expected}",
            lambda s: all(model_row(s, m) == r for m, r in expected.items()),
        )
        # The same as the gateway's own ledger, row by row.
        events = stack.admin.wait_events(key.id, 5)
        assert len(events) == 5, events
        assert {m: model_row(screen, m) for m in expected} == ledger_rows(events), screen
        total = money(sum((charged(e) for e in events), Decimal(0)))
        assert total == money(Decimal(gpt_cost) + Decimal(mini_cost) + Decimal(haiku_cost))
        assert "requests 5  errors 0" in screen and f"cost ${total}" in screen, screen
        assert "upstream: reachable" in screen, screen
        # The recent requests panel: one row per call, with the ledger's tokens and cost.
        surface = {"chat_completions": "openai", "messages": "anthropic"}
        ledger = sorted(
            (surface[e["endpoint"]], e["model"], str(e["status"]),
             f"{input_tokens(e)}/{usage_of(e)['output']}", f"${money(charged(e))}")
            for e in events
        )  # fmt: skip
        assert sorted(recent_rows(screen)) == ledger, screen

        view.quit("q")
        code = view.exit_status()
        assert code == "0", f"exit status {code}\n{view.tmux.screen()}"
        view.assert_restored()


@pytest.mark.parametrize("how", ["C-c", "SIGTERM", "SIGINT"])
def test_the_live_view_quits_cleanly_on_ctrl_c_and_signals(how, stack, key, tmp_path):
    """Ctrl-C typed in the view (a key in raw mode), and SIGTERM or SIGINT sent with kill:
    each ends the proxy with status 0 and the terminal restored."""
    bearer = "mgl_tmux_" + uuid.uuid4().hex
    env = proxy_env(key, tmp_path / "config")
    with LiveView(tmp_path, env, "--port", "0", "--upstream", stack.url, "--bearer", bearer) as view:
        view.openai(bearer).chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        view.wait("the call counted", lambda s: "requests 1  errors 0" in s)
        view.quit(how)
        code = view.exit_status()
        assert code == "0", f"{how}: exit status {code}\n{view.tmux.screen()}"
        view.assert_restored()


class Relay:
    """A TCP relay from a loopback port to another address, one thread per direction: the
    gateway appearing on a port where nothing listened."""

    def __init__(self, port: int, to: tuple[str, int]):
        self.to = to
        self.server = socket.create_server(("127.0.0.1", port))
        self.thread = threading.Thread(target=self._accept, daemon=True)
        self.thread.start()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self.server.accept()
            except OSError:
                return
            upstream = socket.create_connection(self.to)
            for a, b in [(client, upstream), (upstream, client)]:
                threading.Thread(target=self._pump, args=(a, b), daemon=True).start()

    @staticmethod
    def _pump(src: socket.socket, dst: socket.socket) -> None:
        try:
            while data := src.recv(65536):
                dst.sendall(data)
        except OSError:
            pass
        finally:
            for s in (src, dst):
                with contextlib.suppress(OSError):
                    s.shutdown(socket.SHUT_RDWR)

    def close(self) -> None:
        self.server.close()


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_the_live_view_shows_the_upstream_unreachable_then_reachable_again(stack, key, tmp_path):
    """The proxy told of a gateway on a port where nothing listens: UNREACHABLE in the view,
    and a call answered 502 in the recent requests as an error. Then the gateway appears on
    that port (a relay to it): the next call shows it reachable again."""
    port = free_port()
    bearer = "mgl_tmux_" + uuid.uuid4().hex
    env = proxy_env(key, tmp_path / "config")
    upstream = f"http://127.0.0.1:{port}"
    with LiveView(tmp_path, env, "--port", "0", "--upstream", upstream, "--bearer", bearer) as view:
        view.wait("the upstream unreachable", lambda s: "upstream: UNREACHABLE" in s)
        oai = view.openai(bearer)
        with pytest.raises(openai.APIStatusError) as failed:
            oai.chat.completions.create(model="gpt-4o-mini", messages=CHAT)
        assert failed.value.status_code == 502, failed.value
        screen = view.wait(
            "the failed call", lambda s: ("openai", "-", "502", "-", "?") in recent_rows(s)
        )
        assert "requests 1  errors 1" in screen, screen
        assert "upstream: UNREACHABLE" in screen, screen

        gateway = re.match(r"http://([\d.]+):(\d+)", stack.url)
        relay = Relay(port, (gateway.group(1), int(gateway.group(2))))
        try:
            oai.chat.completions.create(
                model="gpt-4o-mini", messages=CHAT,
                extra_headers=mock_usage(input_tokens=30, output_tokens=4),
            )  # fmt: skip
            (event,) = stack.admin.wait_events(key.id, 1)
            cost = f"${money(charged(event))}"
            screen = view.wait(
                "the upstream reachable again",
                lambda s: "upstream: reachable" in s
                and ("openai", "gpt-4o-mini", "200", "30/4", cost) in recent_rows(s),
            )
            assert "requests 2  errors 1" in screen, screen
            view.quit("q")
            assert view.exit_status() == "0"
        finally:
            relay.close()


def test_the_live_view_keeps_up_with_hundreds_of_calls_per_second(stack, key, tmp_path):
    """600 calls, 16 at a time, through the proxy with its live view: the view counts every
    one (no more), its total cost is the ledger's, and `q` still quits at once."""
    calls, at_once = 600, 16
    bearer = "mgl_tmux_" + uuid.uuid4().hex
    env = proxy_env(key, tmp_path / "config")
    with LiveView(tmp_path, env, "--port", "0", "--upstream", stack.url, "--bearer", bearer) as view:
        oai = view.openai(bearer)
        usage = mock_usage(input_tokens=100, output_tokens=10)

        def call(_: int) -> int:
            r = oai.chat.completions.with_raw_response.create(
                model="gpt-4o-mini", messages=CHAT, extra_headers=usage
            )
            return r.status_code

        started = time.monotonic()
        with ThreadPoolExecutor(at_once) as pool:
            statuses = list(pool.map(call, range(calls)))
        elapsed = time.monotonic() - started
        assert statuses == [200] * calls
        screen = view.wait(
            f"requests {calls}", lambda s: f"requests {calls}  errors 0" in s, deadline_s=60
        )
        lag = time.monotonic() - started - elapsed
        counted = re.search(r"requests (\d+)", screen).group(1)
        assert counted == str(calls), screen
        events = stack.admin.wait_events(key.id, calls)
        assert len(events) == calls
        total = money(sum((charged(e) for e in events), Decimal(0)))
        assert f"cost ${total}" in screen, screen
        assert model_row(screen, "gpt-4o-mini") == ledger_rows(events)["gpt-4o-mini"], screen

        asked = time.monotonic()
        view.quit("q")
        code = view.exit_status(deadline_s=5)
        quit_s = time.monotonic() - asked
        assert code == "0", code
        view.assert_restored()
        print(
            f"\nlive view under load: {calls} calls ({at_once} at a time) in {elapsed:.2f} s "
            f"= {calls / elapsed:.0f} calls/s through the proxy; the view showed all {calls} "
            f"{lag:.2f} s after the last answer; q quit in {quit_s:.2f} s"
        )


# ---------------------------------------------------------------------------------------
# meshgate ask
# ---------------------------------------------------------------------------------------


def test_ask_streams_the_answer_then_the_gateways_tokens_and_cost(stack, key, admin, tmp_path):
    binary = _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")
    env = proxy_env(key, tmp_path / "config")
    env["MESHGATE_URL"] = stack.url
    done = subprocess.run(
        [str(binary), "ask", "What is a gateway?", "--model", "gpt-4o"],
        env=env, capture_output=True, text=True, timeout=60,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    # The same question straight to the gateway: the mock's answer.
    direct = stack.openai(key.secret).chat.completions.create(
        model="gpt-4o", messages=[{"role": "user", "content": "What is a gateway?"}]
    )
    answer = direct.choices[0].message.content
    assert answer and done.stdout.startswith(answer), done.stdout
    (event, _direct_event) = admin.wait_events(key.id, 2)
    u = event["usage"]
    expected = (
        f"-- gpt-4o: {u.get('input_uncached', 0) + u.get('cache_read', 0)} input tokens "
        f"({u.get('cache_read', 0)} cached), {u['output']} output tokens, cost ${event['cost_usd']}"
    )
    assert done.stdout.rstrip().splitlines()[-1] == expected, done.stdout
    assert event["streamed"] is True and event["outcome"] == "ok"
    assert Decimal(event["cost_usd"]) > 0
