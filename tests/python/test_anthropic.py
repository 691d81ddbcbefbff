"""anthropic-python against meshgate's Anthropic surface: messages (plain and streamed),
token counting and message batches, with each way the SDK can send a key."""

from __future__ import annotations

import anthropic
import pytest

from support import (
    CLAUDE_HAIKU_4_5,
    CLAUDE_HAIKU_4_5_BATCH,
    CLAUDE_OPUS_4_5,
    marker,
    mock_usage,
    money,
    request_id,
    usage_of,
)

MESSAGES = [{"role": "user", "content": "Say four tokens."}]
MOCK_TEXT = "tok0 tok1 tok2 tok3 "


def assert_upstream_auth(upstream: dict, key_secret: str) -> None:
    """The provider got meshgate's provider key as x-api-key, never the meshgate key."""
    headers = upstream["headers_dict"]
    assert headers.get("x-api-key") == "sk-ant-mock"
    assert "authorization" not in headers
    assert not any(key_secret in v for _, v in upstream["headers"]), upstream["headers"]


# How a client may present its meshgate key on the Anthropic surface.
AUTH_VARIANTS = {
    # anthropic-python 2.x sends api_key= as a Bearer token.
    "api_key": lambda secret: dict(api_key=secret),
    # ANTHROPIC_AUTH_TOKEN style (Claude Code with a gateway token).
    "auth_token": lambda secret: dict(auth_token=secret),
    # Older SDKs and curl: x-api-key, and the 2023-06-01 API version.
    "x-api-key": lambda secret: dict(
        api_key=secret,
        default_headers={
            "Authorization": anthropic.omit,
            "x-api-key": secret,
            "anthropic-version": "2023-06-01",
        },
    ),
}
SENT_AUTH = {
    "api_key": ("authorization", "Bearer {}"),
    "auth_token": ("authorization", "Bearer {}"),
    "x-api-key": ("x-api-key", "{}"),
}


@pytest.mark.parametrize("variant", list(AUTH_VARIANTS))
def test_messages(stack, key, mock, event, variant):
    client = stack.anthropic(**AUTH_VARIANTS[variant](key.secret))
    tag = marker()
    counts = dict(
        input_tokens=500, cached_tokens=3000, cache_write_tokens=1200,
        cache_write_1h_tokens=800, output_tokens=150,
    )  # fmt: skip
    with client:
        raw = client.messages.with_raw_response.create(
            model="claude-opus-4-5",
            max_tokens=256,
            messages=MESSAGES,
            extra_headers={**tag, **mock_usage(**counts)},
        )
    # The SDK sent the key the way this variant means to.
    header, shape = SENT_AUTH[variant]
    sent = raw.http_request.headers
    assert sent.get(header) == shape.format(key.secret)
    if variant == "x-api-key":
        assert "authorization" not in sent

    message = raw.parse()
    assert message.model == "claude-opus-4-5"
    assert [b.text for b in message.content] == [MOCK_TEXT]
    assert message.stop_reason == "end_turn"
    u = message.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.output_tokens) == (500, 3000, 150)
    assert u.cache_creation.ephemeral_5m_input_tokens == 1200
    assert u.cache_creation.ephemeral_1h_input_tokens == 800

    (upstream,) = mock.requests(tag)
    assert upstream["path"] == "/v1/messages"
    # The version header passes through as the client sent it.
    assert upstream["headers_dict"]["anthropic-version"] == sent["anthropic-version"]
    assert_upstream_auth(upstream, key.secret)

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["model"], ev["streamed"], ev["status"], ev["outcome"]) == (
        "messages", "claude-opus-4-5", False, 200, "ok",
    )  # fmt: skip
    assert usage_of(ev) == dict(
        input_uncached=500, cache_read=3000, cache_write_5m=1200, cache_write_1h=800,
        output=150, reasoning=0,
    )  # fmt: skip
    assert ev["cost_usd"] == money(
        CLAUDE_OPUS_4_5.cost(
            input_uncached=500, cache_read=3000, cache_write_5m=1200, cache_write_1h=800,
            output=150,
        )
    )  # fmt: skip


def test_messages_stream(ant, event):
    counts = dict(input_tokens=42, cached_tokens=10, cache_write_tokens=20, output_tokens=77)
    with ant.messages.stream(
        model="claude-haiku-4-5",
        max_tokens=256,
        messages=MESSAGES,
        extra_headers=mock_usage(chunks=5, **counts),
    ) as stream:
        texts = list(stream.text_stream)
        final = stream.get_final_message()
        rid = request_id(stream.response)
    assert texts == [f"tok{i} " for i in range(5)]
    assert final.content[0].text == "".join(texts)
    assert final.stop_reason == "end_turn"
    u = final.usage
    assert (u.input_tokens, u.cache_read_input_tokens, u.output_tokens) == (42, 10, 77)
    assert u.cache_creation_input_tokens == 20

    ev = event(rid)
    assert (ev["endpoint"], ev["model"], ev["streamed"], ev["outcome"]) == (
        "messages", "claude-haiku-4-5", True, "ok",
    )  # fmt: skip
    assert usage_of(ev) == dict(
        input_uncached=42, cache_read=10, cache_write_5m=20, cache_write_1h=0, output=77,
        reasoning=0,
    )  # fmt: skip
    assert ev["cost_usd"] == money(
        CLAUDE_HAIKU_4_5.cost(input_uncached=42, cache_read=10, cache_write_5m=20, output=77)
    )


def test_count_tokens(ant, mock, event):
    tag = marker()
    raw = ant.messages.with_raw_response.count_tokens(
        model="claude-haiku-4-5",
        messages=MESSAGES,
        extra_headers={**tag, **mock_usage(input_tokens=1234)},
    )
    assert raw.parse().input_tokens == 1234
    (upstream,) = mock.requests(tag)
    assert upstream["path"] == "/v1/messages/count_tokens"

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["status"], ev["outcome"]) == ("count_tokens", 200, "ok")
    # Counting tokens is free: nothing is billed.
    assert ev["cost_usd"] in (None, "0")
    assert not any(usage_of(ev).values())


def test_batches_results_through_meshgate(stack, ant, key, mock, events):
    requests = [
        {
            "custom_id": f"req-{i}",
            "params": {
                "model": "claude-haiku-4-5",
                "max_tokens": 64,
                "messages": [{"role": "user", "content": f"question {i}"}],
            },
        }
        for i in range(3)
    ]
    batch = ant.messages.batches.create(requests=requests)
    assert batch.id
    # The provider's results_url was rewritten to meshgate's own address.
    assert batch.results_url == f"{stack.anthropic_base}/v1/messages/batches/{batch.id}/results"

    tag = marker()
    results = list(ant.messages.batches.results(batch.id, extra_headers=tag))
    assert sorted(r.custom_id for r in results) == ["req-0", "req-1", "req-2"]
    assert all(r.result.type == "succeeded" for r in results)
    assert all(r.result.message.usage.service_tier == "batch" for r in results)

    # The results download went through meshgate (the mock saw meshgate's provider key).
    fetched = [q for q in mock.requests(tag) if q["path"].endswith("/results")]
    assert len(fetched) == 1
    assert fetched[0]["path"] == f"/v1/messages/batches/{batch.id}/results"
    assert_upstream_auth(fetched[0], key.secret)

    # create, retrieve (by results()), results: three events; results billed at batch rates.
    evs = events(3)
    assert [e["endpoint"] for e in evs] == ["batches", "batches", "batch_results"]
    billed = evs[-1]
    input_tokens = sum(r.result.message.usage.input_tokens for r in results)
    output_tokens = sum(r.result.message.usage.output_tokens for r in results)
    assert billed["usage"]["service_tier"] == "batch"
    assert (usage_of(billed)["input_uncached"], usage_of(billed)["output"]) == (
        input_tokens, output_tokens,
    )  # fmt: skip
    assert billed["cost_usd"] == money(
        CLAUDE_HAIKU_4_5_BATCH.cost(input_uncached=input_tokens, output=output_tokens)
    )
    assert all(e["cost_usd"] is None for e in evs[:2])


def test_beta_messages_query_and_headers_pass_through(ant, mock, event):
    """`client.beta.messages` with the `?beta=true` query Claude Code sends (anthropic-python
    2.12 itself no longer adds it): query and `anthropic-beta` reach the provider, and the call
    is metered like any message."""
    tag = marker()
    raw = ant.beta.messages.with_raw_response.create(
        model="claude-haiku-4-5",
        max_tokens=64,
        messages=MESSAGES,
        betas=["context-management-2025-06-27"],
        extra_query={"beta": "true"},
        extra_headers={**tag, **mock_usage(input_tokens=11, output_tokens=3)},
    )
    assert raw.parse().content[0].text == MOCK_TEXT
    (upstream,) = mock.requests(tag)
    assert (upstream["path"], upstream["query"]) == ("/v1/messages", "beta=true")
    assert upstream["headers_dict"]["anthropic-beta"] == "context-management-2025-06-27"

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["outcome"]) == ("messages", "ok")
    assert ev["cost_usd"] == money(CLAUDE_HAIKU_4_5.cost(input_uncached=11, output=3))
