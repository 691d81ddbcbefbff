"""A failing provider, survived without the client noticing: a second meshgate whose
built-in OpenAI and Anthropic deployments point at a closed port, with working backup
deployments (the mock) beside them. The official SDKs run with retries off, so any
failure would surface."""

from __future__ import annotations

import os
import time
import uuid
from pathlib import Path
from typing import Iterable

import anthropic
import openai
import pytest

from conftest import MOCK_ANTHROPIC_KEY, MOCK_OPENAI_KEY, Admin, Proc, Stack, _binary
from support import CLIENT_TIMEOUT_S, LEDGER_TIMEOUT_S

CLOSED = "http://127.0.0.1:1"
MESSAGES = [{"role": "user", "content": "hi"}]


@pytest.fixture(scope="module")
def failover(stack: Stack, tmp_path_factory: pytest.TempPathFactory) -> Iterable[tuple[str, Admin]]:
    workdir: Path = tmp_path_factory.mktemp("failover")
    config = workdir / "meshgate.toml"
    config.write_text(
        f"""
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
    )
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


def test_sdks_do_not_notice_a_dead_provider(failover: tuple[str, Admin]) -> None:
    url, admin = failover
    key = admin.create_key("failover")
    oai = openai.OpenAI(
        base_url=f"{url}/openai/v1", api_key=key["secret"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    ant = anthropic.Anthropic(
        base_url=f"{url}/anthropic", api_key=key["secret"], max_retries=0, timeout=CLIENT_TIMEOUT_S
    )
    for _ in range(3):
        assert oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES).choices
        text = "".join(
            c.choices[0].delta.content or ""
            for c in oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, stream=True)
            if c.choices
        )
        assert text
        assert ant.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES).content
    deadline = time.monotonic() + LEDGER_TIMEOUT_S
    while True:
        events = admin.usage(key_id=key["id"])
        served = [e for e in events if e["outcome"] == "ok"]
        if len(served) >= 9 or time.monotonic() > deadline:
            break
        time.sleep(0.05)
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
