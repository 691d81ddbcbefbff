"""Projects, credentials and money through the official SDKs: allowed models and the models
lists, rate limits, budgets, credits with markup, participant tokens (and forged, stale or
rotated credentials), delegations, annotations and another project's batch. Each rule is shown holding and refusing, in each SDK's own exception types."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
import uuid
from decimal import Decimal
from typing import Any

import anthropic
import httpx
import openai
import pytest

from conftest import Stack
from support import LEDGER_TIMEOUT_S

MESSAGES = [{"role": "user", "content": "hi"}]


def project(stack: Stack, **settings: Any) -> str:
    pid = f"p-{uuid.uuid4().hex[:10]}"
    r = stack.admin.http.post("/admin/v1/projects", json={"id": pid, "name": pid, "settings": settings})
    assert r.status_code == 201, r.text
    return pid


def key(stack: Stack, project_id: str = "default", **fields: Any) -> dict[str, Any]:
    r = stack.admin.http.post(
        "/admin/v1/keys", json={"name": "sdk", "project_id": project_id, **fields}
    )
    assert r.status_code == 201, r.text
    return r.json()


def project_events(stack: Stack, project_id: str, count: int) -> list[dict[str, Any]]:
    deadline = time.monotonic() + LEDGER_TIMEOUT_S
    while True:
        events = stack.admin.usage(project_id=project_id)
        if len(events) >= count or time.monotonic() > deadline:
            return events
        time.sleep(0.05)


def test_allowed_models_and_the_models_lists(stack: Stack) -> None:
    pid = project(stack, allowed_models=["openai/gpt-4o-mini", "anthropic/claude-haiku-4-5"])
    k = key(stack, pid)
    oai = stack.openai(k["secret"])
    ok = oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    assert ok.choices[0].message.content
    with pytest.raises(openai.PermissionDeniedError) as refused:
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    assert refused.value.code == "model_not_allowed"
    assert [m.id for m in oai.models.list()] == ["gpt-4o-mini"]
    with pytest.raises(openai.NotFoundError):
        oai.models.retrieve("gpt-4o")

    ant = stack.anthropic(api_key=k["secret"])
    assert [m.id for m in ant.models.list()] == ["claude-haiku-4-5"]
    with pytest.raises(anthropic.PermissionDeniedError):
        ant.messages.create(model="claude-opus-4-5", max_tokens=10, messages=MESSAGES)


def test_rate_limits_raise_the_sdks_rate_limit_errors(stack: Stack) -> None:
    k = key(stack, limits={"requests_per_minute": 1})
    oai = stack.openai(k["secret"])
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.RateLimitError) as limited:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    headers = limited.value.response.headers
    assert int(headers["retry-after"]) >= 1
    assert headers["x-ratelimit-limit-requests"] == "1"
    ant = stack.anthropic(api_key=k["secret"])
    with pytest.raises(anthropic.RateLimitError) as limited:
        ant.messages.create(model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES)
    assert limited.value.response.headers["anthropic-ratelimit-requests-limit"] == "1"


def test_an_exhausted_budget_is_a_402_in_both_sdks(stack: Stack) -> None:
    k = key(stack, limits={"spend_total_usd": "0.00000001"})
    with pytest.raises(openai.APIStatusError) as refused:
        stack.openai(k["secret"]).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES, max_tokens=10
        )
    assert refused.value.status_code == 402
    assert refused.value.code == "budget_exceeded"
    with pytest.raises(anthropic.APIStatusError) as refused:
        stack.anthropic(api_key=k["secret"]).messages.create(
            model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
        )
    assert refused.value.status_code == 402
    assert refused.value.body["error"]["type"] == "billing_error"


def test_credits_with_markup_are_debited_exactly(stack: Stack) -> None:
    pid = project(stack, credits_enforced=True, markup_percent="10")
    k = key(stack, pid)
    oai = stack.openai(k["secret"])
    with pytest.raises(openai.APIStatusError) as refused:
        oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    assert refused.value.status_code == 402
    assert "credits" in refused.value.message
    r = stack.admin.http.post(
        f"/admin/v1/projects/{pid}/credits", json={"kind": "purchase", "amount_usd": "2.5"}
    )
    assert r.status_code == 201, r.text
    stream = oai.chat.completions.create(
        model="gpt-4o-mini", messages=MESSAGES, max_tokens=10, stream=True
    )
    text = "".join(c.choices[0].delta.content or "" for c in stream if c.choices)
    assert text
    (event,) = project_events(stack, pid, 1)
    cost = Decimal(event["cost_usd"])
    markup = Decimal(event["markup_usd"])
    assert cost > 0 and markup == cost / 10
    credits = stack.admin.http.get(f"/admin/v1/projects/{pid}/credits").json()
    assert Decimal(credits["balance_usd"]) == Decimal("2.5") - cost - markup


def test_participant_tokens_are_api_keys_to_the_sdks(stack: Stack) -> None:
    pid = project(stack)
    r = stack.admin.http.post(f"/admin/v1/projects/{pid}/signing-keys", json={"algorithm": "HS256"})
    assert r.status_code == 201, r.text
    spec = (
        "version: v1\nkind: ParticipantToken\nidentity: grace\nroom: lab\n"
        "api:\n  llm:\n    models: ['openai/gpt-4o-mini', 'anthropic/claude-haiku-4-5']\n"
    )
    minted = stack.admin.http.post(f"/admin/v1/projects/{pid}/tokens", json={"spec": spec})
    assert minted.status_code in (200, 201), minted.text
    token = minted.json()["token"]

    oai = stack.openai(token)
    oai.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    with pytest.raises(openai.PermissionDeniedError):
        oai.chat.completions.create(model="gpt-4o", messages=MESSAGES)
    stack.anthropic(api_key=token).messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
    )
    events = project_events(stack, pid, 2)
    assert {e["user"] for e in events} == {"grace"}
    assert {e["room"] for e in events} == {"lab"}

    no_grant = stack.admin.http.post(
        f"/admin/v1/projects/{pid}/tokens",
        json={"spec": "version: v1\nkind: ParticipantToken\nidentity: nobody\n"},
    )
    assert no_grant.status_code in (200, 201), no_grant.text
    with pytest.raises(openai.PermissionDeniedError) as refused:
        stack.openai(no_grant.json()["token"]).chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )
    assert "api.llm" in refused.value.message
    with pytest.raises(openai.AuthenticationError):
        stack.openai(token[:-4] + "AAAA").chat.completions.create(
            model="gpt-4o-mini", messages=MESSAGES
        )


def test_a_delegation_works_as_the_api_key_and_as_a_header(stack: Stack) -> None:
    parent = key(stack)
    r = httpx.post(
        f"{stack.url}/v1/delegations",
        headers={"authorization": f"Bearer {parent['secret']}"},
        json={"max_budget_usd": "0.001", "models": ["openai/gpt-4o-mini"]},
        trust_env=False,
    )
    assert r.status_code == 201, r.text
    delegation = r.json()
    agent = stack.openai(delegation["token"])
    agent.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    with pytest.raises(openai.PermissionDeniedError):
        agent.chat.completions.create(model="gpt-4o", messages=MESSAGES, max_tokens=10)
    beside = stack.openai(
        parent["secret"], default_headers={"Meshgate-Llm-Delegation": delegation["token"]}
    )
    beside.chat.completions.create(model="gpt-4o-mini", messages=MESSAGES, max_tokens=10)
    events = stack.admin.wait_events(parent["id"], 2)
    assert [e["delegation_id"] for e in events] == [delegation["id"]] * 2
    # Its own usage, read through the gateway with the delegation itself.
    own = httpx.get(
        f"{stack.url}/v1/usage",
        headers={"authorization": f"Bearer {delegation['token']}"},
        trust_env=False,
    ).json()
    assert len(own["data"]) == 2


def test_annotations_from_sdk_extra_headers(stack: Stack) -> None:
    k = key(stack)
    oai = stack.openai(k["secret"])
    for feature in ["search", "search", "chat"]:
        oai.chat.completions.create(
            model="gpt-4o-mini",
            messages=MESSAGES,
            extra_headers={"Meshgate-Annotation-Feature": feature},
        )
    stack.admin.wait_events(k["id"], 3)
    summary = stack.admin.summary(key_id=k["id"], group_by="annotation:feature")
    assert {r["group"]: r["requests"] for r in summary["data"]} == {"chat": 1, "search": 2}


def _b64url(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()


def _hs256(header: dict[str, Any], claims: dict[str, Any], secret: bytes) -> str:
    signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
    signature = hmac.new(secret, signing_input.encode(), hashlib.sha256).digest()
    return f"{signing_input}.{_b64url(signature)}"


def test_forged_expired_rotated_and_foreign_credentials_are_refused_to_both_sdks(
    stack: Stack,
) -> None:
    pid = project(stack)
    r = stack.admin.http.post(f"/admin/v1/projects/{pid}/signing-keys", json={"algorithm": "HS256"})
    assert r.status_code == 201, r.text
    kid, secret_text = r.json()["id"], r.json()["secret"]
    secret = base64.urlsafe_b64decode(secret_text + "=" * (-len(secret_text) % 4))
    now = int(time.time())

    def claims(**changes: Any) -> dict[str, Any]:
        c = {"iss": kid, "sub": "ada", "aud": "meshgate", "project": pid,
             "api": {"llm": {"models": ["openai/gpt-4o-mini", "anthropic/*"]}},
             "iat": now, "exp": now + 600, "jti": uuid.uuid4().hex}  # fmt: skip
        c.update(changes)
        return c

    header = {"alg": "HS256", "typ": "JWT", "kid": kid}
    good = _hs256(header, claims(), secret)
    # A token minted here with the project's secret works: the refusals below are the edits'.
    stack.openai(good).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
    stack.anthropic(api_key=good).messages.create(
        model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
    )

    rotated = key(stack)
    r = stack.admin.http.post(f"/admin/v1/keys/{rotated['id']}/rotate", json={})
    assert r.status_code == 200, r.text
    new_secret = r.json()["secret"]
    stack.openai(new_secret).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)

    refused = {
        "expired": _hs256(header, claims(iat=now - 7200, exp=now - 3600), secret),
        "not yet valid": _hs256(header, claims(nbf=now + 3600), secret),
        "wrong audience": _hs256(header, claims(aud="someone-else"), secret),
        "wrong issuer": _hs256(header, claims(iss="someone-else"), secret),
        "wrong secret": _hs256(header, claims(), b"x" * 32),
        "alg none": f"{_b64url(json.dumps({**header, 'alg': 'none'}).encode())}."
        f"{_b64url(json.dumps(claims()).encode())}.",
        "tampered": ".".join(
            [good.split(".")[0], _b64url(json.dumps(claims(sub="root")).encode()),
             good.split(".")[2]]
        ),  # fmt: skip
        "rotated away without grace": rotated["secret"],
    }
    before = len(stack.mock.requests())
    for label, credential in refused.items():
        with pytest.raises(openai.AuthenticationError, match=".") as e:
            stack.openai(credential).chat.completions.create(model="gpt-4o-mini", messages=MESSAGES)
        assert e.value.status_code == 401, label
        with pytest.raises(anthropic.AuthenticationError) as e:
            stack.anthropic(api_key=credential).messages.create(
                model="claude-haiku-4-5", max_tokens=10, messages=MESSAGES
            )
        assert e.value.body["error"]["type"] == "authentication_error", label
    assert len(stack.mock.requests()) == before, "no refused call reached the provider"


def test_another_projects_key_never_reaches_a_projects_batch(stack: Stack) -> None:
    owner = stack.anthropic(api_key=key(stack, project(stack))["secret"])
    stranger = stack.anthropic(api_key=key(stack, project(stack))["secret"])
    batch = owner.messages.batches.create(
        requests=[{"custom_id": "a", "params": {"model": "claude-haiku-4-5", "max_tokens": 10,
                                                "messages": MESSAGES}}]  # fmt: skip
    )
    assert owner.messages.batches.retrieve(batch.id).id == batch.id
    with pytest.raises(anthropic.NotFoundError):
        stranger.messages.batches.retrieve(batch.id)
    with pytest.raises(anthropic.NotFoundError):
        stranger.messages.batches.cancel(batch.id)
    assert batch.id not in [b.id for b in stranger.messages.batches.list()]
    assert batch.id in [b.id for b in owner.messages.batches.list()]
