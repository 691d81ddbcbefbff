"""A failing provider, survived without the client noticing: a second meshgate whose
built-in OpenAI and Anthropic deployments point at a closed port, with working backup
deployments (the mock) beside them. The official SDKs run with retries off, so any
failure would surface."""

from __future__ import annotations

import contextlib
import os
import time
import uuid
from pathlib import Path
from typing import Any, Iterable, Iterator

import anthropic
import openai
import pytest

from conftest import MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY, Admin, Proc, Stack, _binary
from support import CLIENT_TIMEOUT_S, LEDGER_TIMEOUT_S

CLOSED = "http://127.0.0.1:1"
MESSAGES = [{"role": "user", "content": "hi"}]


@contextlib.contextmanager
def _gateway(workdir: Path, config_text: str) -> Iterator[tuple[str, Admin]]:
    """A meshgate of its own with `config_text` as its config, and its admin client."""
    config = workdir / "meshgate.toml"
    config.write_text(config_text)
    token = f"mgadmin-failover-{uuid.uuid4().hex}"
    env = {
        **{k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")},
        "MESHGATE_ADMIN_TOKEN": token,
        "OPENAI_API_KEY": MOCK_OPENAI_KEY,
        "ANTHROPIC_API_KEY": MOCK_ANTHROPIC_KEY,
    }
    argv = [
        str(_binary("MESHGATE_TEST_GATEWAY_BIN", "meshgate")), "serve",
        "--config", str(config), "--listen", "127.0.0.1:0", "--data-dir", str(workdir / "data"),
    ]  # fmt: skip
    proc = Proc("failover-gateway", argv, env, workdir)
    try:
        url = proc.wait_for_line(r"^meshgate listening on (http://\S+)").group(1)
        admin = Admin(url, token)
        yield url, admin
        admin.http.close()
    finally:
        proc.stop()


@pytest.fixture(scope="module")
def failover(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterable[tuple[str, Admin]]:
    config = f"""
[providers.openai]
base_url = "{CLOSED}/v1"
[providers.anthropic]
base_url = "{CLOSED}"

# Heavily weighted, so that calls try it first: every call meets the dead provider.
[[providers.deployments]]
name = "openai-dead"
provider = "openai"
base_url = "{CLOSED}/v1"
api_key_env = "OPENAI_API_KEY"
weight = 1000

[[providers.deployments]]
name = "openai-backup"
provider = "openai"
base_url = "{stack.mock.url}/v1"
api_key_env = "OPENAI_API_KEY"

[[providers.deployments]]
name = "anthropic-backup"
provider = "anthropic"
base_url = "{stack.mock.url}"
api_key_env = "ANTHROPIC_API_KEY"

[routing]
retry_backoff_ms = 1
max_backoff_ms = 10
max_attempts = 5
"""
    with _gateway(tmp_path_factory.mktemp("failover"), config) as gateway:
        yield gateway


@pytest.fixture(scope="module")
def broken_openai(
    stack: Stack, tmp_path_factory: pytest.TempPathFactory
) -> Iterable[tuple[str, Admin]]:
    """A meshgate whose OpenAI answers every call with a 500 (a mock started with
    `--fail-every 1`), its OpenAI models falling back to a Claude model."""
    workdir = tmp_path_factory.mktemp("broken-openai")
    argv = [
        str(_binary("MESHGATE_TEST_MOCK_BIN", "meshgate-mock")),
        "--listen", "127.0.0.1:0", "--fail-every", "1",
    ]  # fmt: skip
    broken = Proc("broken-openai-mock", argv, dict(os.environ), workdir)
    try:
        broken_url = broken.wait_for_line(r"^meshgate-mock listening on (http://\S+)").group(1)
        config = f"""
[providers.openai]
base_url = "{broken_url}/v1"
[providers.anthropic]
base_url = "{stack.mock.url}"

[routing]
retry_backoff_ms = 1
max_backoff_ms = 10

[routing.fallbacks]
"gpt-4o-mini" = ["anthropic/claude-haiku-4-5"]
"""
        with _gateway(workdir, config) as gateway:
            yield gateway
    finally:
        broken.stop()


def _clients(url: str, admin: Admin, name: str) -> tuple[dict[str, Any], openai.OpenAI, anthropic.Anthropic]:
    """A new key and both SDKs with it, retries off so that any failure surfaces."""
    key = admin.create_key(name)
    oai = openai.OpenAI(
        base_url=f"{url}/openai/v1", api_key=key["secret"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    ant = anthropic.Anthropic(
        base_url=f"{url}/anthropic", api_key=key["secret"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    return key, oai, ant


def _events(admin: Admin, key: dict[str, Any], served: int) -> list[dict[str, Any]]:
    """The key's usage events once `served` of them are successes (or the wait is over)."""
    deadline = time.monotonic() + LEDGER_TIMEOUT_S
    while True:
        events = admin.usage(key_id=key["id"])
        if sum(e["outcome"] == "ok" for e in events) >= served or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_sdks_do_not_notice_a_dead_provider(failover: tuple[str, Admin]) -> None:
    url, admin = failover
    key, oai, ant = _clients(url, admin, "failover")
    for _ in range(3):
        assert oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
        text = "".join(
            c.choices[0].delta.content or ""
            for c in oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            if c.choices
        )
        assert text
        assert ant.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES).content
    events = _events(admin, key, served=9)
    served = [e for e in events if e["outcome"] == "ok"]
    assert len(served) == 9
    assert {e["deployment"] for e in served} == {"openai-backup", "anthropic-backup"}
    failed = [e for e in events if e["outcome"] != "ok"]
    assert failed, "the dead deployments were tried"
    assert all(e["outcome"] == "upstream_unreachable" for e in failed)
    health = admin.http.get("/admin/v1/providers/health").json()["data"]
    by_name = {d["name"]: d for d in health}
    assert by_name["openai-backup"]["state"] == "closed"
    # Five consecutive failures opened the heavily weighted dead deployment's breaker.
    assert by_name["openai-dead"]["state"] == "open", by_name["openai-dead"]


def test_sdks_stream_through_a_failing_provider_from_the_other_ones_model(
    broken_openai: tuple[str, Admin],
) -> None:
    """OpenAI answers 500s; both SDKs stream a normal answer from the Claude fallback,
    translated for the OpenAI client, named after the model they asked for."""
    url, admin = broken_openai
    key, oai, ant = _clients(url, admin, "broken-openai")
    chunks = list(
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            stream=True,
            stream_options={"include_usage": True},
            extra_headers={"x-mock-chunks": "3"},
        )
    )
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 "
    assert {c.model for c in chunks} == {"gpt-4o-mini"}
    finish = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finish == ["stop"]
    assert chunks[-1].usage is not None and chunks[-1].usage.completion_tokens > 0

    with ant.messages.stream(
        model="gpt-4o-mini",
        max_tokens=50,
        messages=MESSAGES,
        extra_headers={"x-mock-chunks": "3"},
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == "tok0 tok1 tok2 "
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens > 0

    events = _events(admin, key, served=2)
    served = [e for e in events if e["outcome"] == "ok"]
    assert [(e["provider"], e["model"]) for e in served] == [("anthropic", "claude-haiku-4-5")] * 2
    assert {e["requested_model"] for e in served} == {"gpt-4o-mini"}
    failed = [e for e in events if e["outcome"] != "ok"]
    # Each call met OpenAI's 500 twice: its only deployment is retried once in place.
    assert len(failed) == 4, failed
    assert all(e["provider"] == "openai" and e["status"] == 500 for e in failed), failed
