"""How failures reach the SDKs: refused keys and unpriced models (nothing goes upstream,
nothing is billed), provider errors, and streams that break off."""

from __future__ import annotations

import secrets

import anthropic
import openai
import pytest

from support import CLAUDE_HAIKU_4_5, marker, mock_usage, money, request_id, usage_of

CHAT = dict(model="gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
MESSAGE = dict(
    model="claude-haiku-4-5", max_tokens=64, messages=[{"role": "user", "content": "hi"}]
)


def assert_not_billed(admin, mock, tag, refused_ids, sentinel_key, sentinel_call):
    """Nothing reached the provider and no event names the refused calls. A later call that
    is metered (the sentinel) shows the ledger caught up before looking."""
    assert mock.requests(tag) == []
    rid = sentinel_call()
    admin.event(sentinel_key.id, rid)
    ids = {e["request_id"] for e in admin.usage()}
    assert not ids & set(refused_ids)


def _unknown_key() -> str:
    return "mg_" + secrets.token_urlsafe(32)


# (client arguments, per-call headers); openai-python omits Authorization only per call.
OPENAI_BAD_KEYS = {
    "missing": lambda: (dict(api_key="unused"), {"Authorization": openai.omit}),
    "malformed": lambda: (dict(api_key="sk-not-a-meshgate-key"), {}),
    "unknown": lambda: (dict(api_key=_unknown_key()), {}),
}


@pytest.mark.parametrize("case", list(OPENAI_BAD_KEYS))
def test_openai_bad_key_is_401_and_unbilled(stack, oai, key, admin, mock, case):
    tag = marker()
    client_args, headers = OPENAI_BAD_KEYS[case]()
    with stack.openai(**client_args) as bad:
        with pytest.raises(openai.AuthenticationError) as err:
            bad.chat.completions.create(**CHAT, extra_headers={**tag, **headers})
    if case == "missing":
        assert "authorization" not in err.value.request.headers
    assert err.value.status_code == 401
    assert err.value.code == "invalid_api_key"
    refused = request_id(err.value.response)

    def sentinel():
        return request_id(oai.chat.completions.with_raw_response.create(**CHAT))

    assert_not_billed(admin, mock, tag, [refused], key, sentinel)


ANTHROPIC_BAD_KEYS = {
    "missing": lambda: dict(api_key="unused", default_headers={"Authorization": anthropic.omit}),
    "bearer-unknown": lambda: dict(api_key=_unknown_key()),
    "x-api-key-unknown": lambda: dict(
        api_key="unused",
        default_headers={"Authorization": anthropic.omit, "x-api-key": _unknown_key()},
    ),
}


@pytest.mark.parametrize("case", list(ANTHROPIC_BAD_KEYS))
def test_anthropic_bad_key_is_401_and_unbilled(stack, ant, key, admin, mock, case):
    tag = marker()
    with stack.anthropic(**ANTHROPIC_BAD_KEYS[case]()) as bad:
        with pytest.raises(anthropic.AuthenticationError) as err:
            bad.messages.create(**MESSAGE, extra_headers=tag)
    if case == "missing":
        sent = err.value.request.headers
        assert "authorization" not in sent and "x-api-key" not in sent
    assert err.value.status_code == 401
    assert err.value.body["type"] == "error"
    assert err.value.body["error"]["type"] == "authentication_error"
    refused = request_id(err.value.response)

    def sentinel():
        return request_id(ant.messages.with_raw_response.create(**MESSAGE))

    assert_not_billed(admin, mock, tag, [refused], key, sentinel)


def test_revoked_key_is_refused_at_once(stack, admin, mock, events):
    victim = admin.create_key("to-revoke")
    with stack.openai(victim["secret"]) as client:
        client.chat.completions.create(**CHAT)  # works before
        admin.revoke_key(victim["id"])
        tag = marker()
        with pytest.raises(openai.AuthenticationError) as err:
            client.chat.completions.create(**CHAT, extra_headers=tag)
    assert err.value.status_code == 401
    assert mock.requests(tag) == []
    assert len(admin.wait_events(victim["id"], 1)) == 1


def test_openai_unpriced_model_is_400_naming_it(oai, key, admin, mock):
    tag = marker()
    with pytest.raises(openai.BadRequestError) as err:
        oai.chat.completions.create(
            model="gpt-unpriced-test-9000", messages=CHAT["messages"], extra_headers=tag
        )
    assert err.value.status_code == 400
    assert "gpt-unpriced-test-9000" in err.value.message
    refused = request_id(err.value.response)

    def sentinel():
        return request_id(oai.chat.completions.with_raw_response.create(**CHAT))

    assert_not_billed(admin, mock, tag, [refused], key, sentinel)


def test_anthropic_unpriced_model_is_400_naming_it(ant, mock):
    tag = marker()
    with pytest.raises(anthropic.BadRequestError) as err:
        ant.messages.create(**{**MESSAGE, "model": "claude-unpriced-9"}, extra_headers=tag)
    assert err.value.status_code == 400
    assert "claude-unpriced-9" in err.value.message
    assert mock.requests(tag) == []


# --- streams that break off ------------------------------------------------------------


def test_openai_chat_stream_cut_raises(oai, event):
    raw = oai.chat.completions.with_raw_response.create(
        **CHAT, stream=True, extra_headers=mock_usage(cut_after=2, chunks=6)
    )
    seen = []
    with pytest.raises(openai.APIError) as err:
        for chunk in raw.parse():
            seen.append(chunk.choices[0].delta.content or "")
    # Raised from meshgate's error data line, not a bare connection failure.
    assert not isinstance(err.value, openai.APIConnectionError)
    assert "".join(seen) == "tok0 tok1 "

    ev = event(request_id(raw))
    assert (ev["streamed"], ev["status"], ev["outcome"]) == (True, 200, "incomplete")


def test_openai_responses_stream_cut_raises(oai, event):
    raw = oai.responses.with_raw_response.create(
        model="gpt-4o-mini", input="hi", stream=True, extra_headers=mock_usage(cut_after=2)
    )
    types = []
    with pytest.raises(openai.APIError) as err:
        for e in raw.parse():
            types.append(e.type)
    assert not isinstance(err.value, openai.APIConnectionError)
    assert types.count("response.output_text.delta") == 2
    assert "response.completed" not in types

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["streamed"], ev["outcome"]) == ("responses", True, "incomplete")


def test_anthropic_stream_cut_raises(ant, event):
    texts = []
    with pytest.raises(anthropic.APIError):
        with ant.messages.stream(
            **MESSAGE, extra_headers=mock_usage(cut_after=2, chunks=6, input_tokens=300)
        ) as stream:
            rid = request_id(stream.response)
            for text in stream.text_stream:
                texts.append(text)
    assert texts == ["tok0 ", "tok1 "]

    ev = event(rid)
    assert (ev["endpoint"], ev["streamed"], ev["outcome"]) == ("messages", True, "incomplete")
    # What message_start reported is billed, and priced exactly.
    u = usage_of(ev)
    assert u["input_uncached"] == 300
    assert ev["cost_usd"] == money(
        CLAUDE_HAIKU_4_5.cost(input_uncached=u["input_uncached"], output=u["output"])
    )


def test_openai_chat_stream_error_event_raises(oai, event):
    raw = oai.chat.completions.with_raw_response.create(
        **CHAT, stream=True, extra_headers=mock_usage(stream_error=1)
    )
    seen = []
    with pytest.raises(openai.APIError) as err:
        for chunk in raw.parse():
            seen.append(chunk.choices[0].delta.content or "")
    assert not isinstance(err.value, openai.APIConnectionError)
    assert "".join(seen) == "tok0 "
    ev = event(request_id(raw))
    assert ev["outcome"] == "incomplete"


# --- provider errors -------------------------------------------------------------------


def test_openai_provider_429_is_rate_limit_error(oai, mock, event):
    tag = marker()
    with pytest.raises(openai.RateLimitError) as err:
        oai.chat.completions.create(**CHAT, extra_headers={**tag, **mock_usage(error=429)})
    assert err.value.status_code == 429
    assert err.value.response.headers.get("retry-after") == "1"
    assert len(mock.requests(tag)) == 1  # max_retries=0: exactly one attempt

    ev = event(request_id(err.value.response))
    assert (ev["status"], ev["outcome"], ev["cost_usd"]) == (429, "upstream_error", None)


def test_anthropic_provider_429_is_rate_limit_error(ant, mock, event):
    tag = marker()
    with pytest.raises(anthropic.RateLimitError) as err:
        ant.messages.create(**MESSAGE, extra_headers={**tag, **mock_usage(error=429)})
    assert err.value.status_code == 429
    assert err.value.body["error"]["type"] == "rate_limit_error"
    assert len(mock.requests(tag)) == 1

    ev = event(request_id(err.value.response))
    assert (ev["status"], ev["outcome"], ev["cost_usd"]) == (429, "upstream_error", None)


# --- the client goes away --------------------------------------------------------------

# A slow stream (50 deltas, 20 ms apart) the client leaves after two deltas.
SLOW = mock_usage(chunks=50, chunk_delay_ms=20, input_tokens=400)


def test_openai_client_closing_a_stream_is_settled(oai, event):
    raw = oai.chat.completions.with_raw_response.create(**CHAT, stream=True, extra_headers=SLOW)
    stream = raw.parse()
    chunks = iter(stream)
    next(chunks), next(chunks)
    stream.close()

    ev = event(request_id(raw))
    assert (ev["streamed"], ev["status"], ev["outcome"]) == (True, 200, "client_cancelled")


def test_anthropic_client_leaving_a_stream_is_settled(ant, event):
    with ant.messages.stream(**MESSAGE, extra_headers=SLOW) as stream:
        rid = request_id(stream.response)
        for _ in stream.text_stream:
            break

    ev = event(rid)
    assert (ev["streamed"], ev["outcome"]) == (True, "client_cancelled")
    # message_start's usage was seen before the client left: billed, exactly.
    u = usage_of(ev)
    assert u["input_uncached"] == 400
    assert ev["cost_usd"] == money(CLAUDE_HAIKU_4_5.cost(input_uncached=400, output=u["output"]))
