"""`meshgate proxy` and `meshgate ask` in front of a real `meshgate serve` in front of the mock:
the official SDKs configured from the exports the proxy prints, the local bearer enforced in
both surfaces' error shapes, the upstream credential never shown to local clients, the
gateway's own cost in the per-request lines and in the live view (driven in tmux), and
`ask` printing the answer with its exact tokens and cost."""

from __future__ import annotations

import json
import os
import re
import shlex
import shutil
import subprocess
import time
import uuid
from decimal import Decimal
from pathlib import Path
from typing import Any, Iterable

import anthropic
import httpx
import openai
import pytest

from conftest import Key, Proc, Stack, _binary
from support import (
    CLAUDE_HAIKU_4_5,
    CLIENT_TIMEOUT_S,
    GPT_4O,
    GPT_4O_MINI,
    marker,
    mock_usage,
    money,
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


@pytest.fixture
def local(stack: Stack, key: Key, tmp_path: Path) -> Iterable[LocalProxy]:
    binary = _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")
    argv = [str(binary), "proxy", "--port", "0", "--upstream", stack.url, "--no-tui"]
    proc = Proc("proxy", argv, proxy_env(key, tmp_path / "config"), tmp_path)
    try:
        proc.wait_for_line(r"^export ANTHROPIC_API_KEY=\S+")
        exports = dict(EXPORT.findall(proc.stdout_path.read_text()))
        assert len(exports) == 4, exports
        yield LocalProxy(proc, exports)
    finally:
        code = proc.stop()
        assert code == 0, f"meshgate proxy exited {code} on SIGTERM\n{proc.logs()}"


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


def model_row(screen: str, model: str) -> tuple[int, int, int, int, str, int] | None:
    """(requests, input, cached, output, cost, errors) of `model` in the usage table."""
    m = re.search(
        rf"^\W*{re.escape(model)}\s+(\d+)\s+(\d+)\s+(\d+)\s+(\d+)\s+\$(\S+)\s+(\d+)\b", screen, re.M
    )
    if not m:
        return None
    req, inp, cached, out, cost, errors = m.groups()
    return int(req), int(inp), int(cached), int(out), cost, int(errors)


def test_the_live_view_shows_the_gateways_numbers_and_quits_cleanly(stack, key, tmp_path):
    binary = _binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")
    bearer = "mgl_tmux_" + uuid.uuid4().hex
    env = proxy_env(key, tmp_path / "config")
    keep = ("PATH", "HOME", "LANG", "LC_ALL", "MESHGATE_TOKEN", "MESHGATE_CONFIG_DIR",
            "NO_PROXY", "no_proxy")  # fmt: skip
    assigns = " ".join(f"{k}={shlex.quote(env[k])}" for k in keep if k in env)
    command = (
        f"env -i TERM=xterm-256color {assigns} {shlex.quote(str(binary))} proxy --port 0 "
        f"--upstream {shlex.quote(stack.url)} --bearer {bearer}"
    )
    # The shell around it records the exit status: tmux itself now and then leaves a dead
    # pane's process unreaped, its status unknown.
    exit_file = tmp_path / "proxy.exit"
    command = f"sh -c {shlex.quote(command + f'; echo $? > {exit_file}')}"
    tmux = Tmux(tmp_path)
    try:
        tmux.run(command)
        screen = wait_until("the live view", lambda: "usage by model" in (s := tmux.screen()) and s)
        base = re.search(r"OPENAI_BASE_URL=(\S+)", screen).group(1)
        assert tmux.pane("#{alternate_on}") == "1", "the live view uses the alternate screen"
        assert key.secret not in screen
        oai = openai.OpenAI(base_url=base, api_key=bearer, max_retries=0, timeout=CLIENT_TIMEOUT_S)
        usage = mock_usage(input_tokens=1200, cached_tokens=200, output_tokens=300)
        for _ in range(3):
            oai.chat.completions.create(model="gpt-4o", messages=CHAT, extra_headers=usage)
        stream = oai.chat.completions.create(
            model="gpt-4o-mini", messages=CHAT, stream=True,
            extra_headers=mock_usage(input_tokens=50, output_tokens=7),
        )
        assert "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
        # OpenAI counts cached tokens inside the prompt: 1000 uncached + 200 read from cache.
        gpt_cost = money(3 * GPT_4O.cost(input_uncached=1000, cache_read=200, output=300))
        expected = {
            "gpt-4o": (3, 3600, 600, 900, gpt_cost, 0),
            "gpt-4o-mini": (1, 50, 0, 7, money(GPT_4O_MINI.cost(input_uncached=50, output=7)), 0),
        }
        screen = wait_until(
            f"the rows {expected}",
            lambda: all(model_row(s := tmux.screen(), m) == r for m, r in expected.items()) and s,
            show=tmux.screen,
        )
        total = money(Decimal(gpt_cost) + GPT_4O_MINI.cost(input_uncached=50, output=7))
        assert f"requests 4  errors 0" in screen and f"cost ${total}" in screen, screen
        assert "upstream: reachable" in screen, screen

        tmux.tmux("send-keys", "-t", tmux.target, "q")
        code = wait_until(
            "the proxy to exit", lambda: exit_file.is_file() and exit_file.read_text().strip()
        )
        assert code == "0", f"exit status {code}\n{tmux.screen()}"
        # The terminal is back: the alternate screen left, the start banner visible again.
        assert tmux.pane("#{alternate_on}") == "0"
        assert f"export OPENAI_BASE_URL={base}" in tmux.screen()
    finally:
        tmux.close()


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
