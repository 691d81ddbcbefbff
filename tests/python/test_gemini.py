"""Google Gemini through meshgate with the official SDKs: the `openai` client and the
`anthropic` client each call a Gemini model (served by the mock's native generateContent and
streamGenerateContent endpoints), streamed and not, tools included; the answer names the
model asked for, usage is Gemini's own usageMetadata, the call is metered at the Gemini
price, and what reached Gemini is checked field by field."""

from __future__ import annotations

import json
import uuid
from decimal import Decimal
from typing import Any, Callable

import anthropic
import openai
import pytest

from conftest import Mock

WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}
ANTHROPIC_TOOL = {
    "name": "get_weather",
    "description": "Weather in a city",
    "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
}
# The thought signature the mock puts on function calls (Gemini wants it back).
SIGNATURE = "bW9jay1zaWduYXR1cmU="


def tagged(**headers: str) -> tuple[dict[str, str], dict[str, str]]:
    """Extra headers carrying a fresh tag (forwarded upstream), and the tag to find them."""
    tag = {"x-test-tag": uuid.uuid4().hex}
    return {**tag, **headers}, tag


def upstream(mock: Mock, tag: dict[str, str]) -> list[dict[str, Any]]:
    found = mock.requests(tag=tag)
    assert found, "nothing reached the mock"
    return found


def test_openai_client_to_gemini_with_tools_round_trip(
    oai: openai.OpenAI, mock: Mock, events: Callable[[int], list[dict[str, Any]]]
) -> None:
    headers, tag = tagged(
        **{
            "x-mock-tool-call": "1",
            "x-mock-input-tokens": "1000",
            "x-mock-cached-tokens": "600",
            "x-mock-output-tokens": "300",
            "x-mock-reasoning-tokens": "100",
        }
    )
    raw = oai.chat.completions.with_raw_response.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "system", "content": "Be brief."},
            {"role": "user", "content": "weather in Paris?"},
        ],
        tools=[WEATHER_TOOL],
        tool_choice="required",
        max_tokens=100,
        temperature=0.2,
        extra_headers=headers,
    )
    assert raw.headers["meshgate-served-model"] == "gemini/gemini-2.5-flash; deployment=gemini"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "gemini-2.5-flash"
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    assert choice.message.role == "assistant"
    assert choice.message.content == "tok0 tok1 tok2 tok3 "
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert call.function.name == "get_weather"
    assert json.loads(call.function.arguments) == {"query": "mock"}
    assert completion.usage.prompt_tokens == 1000
    assert completion.usage.completion_tokens == 300
    assert completion.usage.total_tokens == 1300
    assert completion.usage.prompt_tokens_details.cached_tokens == 600
    assert completion.usage.completion_tokens_details.reasoning_tokens == 100

    (sent,) = upstream(mock, tag)
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash:generateContent"
    assert sent["headers_dict"]["x-goog-api-key"] == "mock-gemini-key"
    assert "authorization" not in sent["headers_dict"]
    body = sent["json"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["contents"] == [{"role": "user", "parts": [{"text": "weather in Paris?"}]}]
    assert body["tools"][0]["functionDeclarations"][0]["name"] == "get_weather"
    assert body["toolConfig"] == {"functionCallingConfig": {"mode": "ANY"}}
    assert body["generationConfig"] == {"maxOutputTokens": 100, "temperature": 0.2}

    (event,) = events(1)
    assert event["provider"] == "gemini" and event["model"] == "gemini-2.5-flash"
    usage = event["usage"]
    assert usage["input_uncached"] == 400 and usage["cache_read"] == 600
    assert usage["output"] == 300 and usage["reasoning"] == 100
    # gemini-2.5-flash: $0.30 input, $0.03 cached input, $2.50 output per Mtok.
    expected = (Decimal(400) * Decimal("0.30") + 600 * Decimal("0.03") + 300 * Decimal("2.50")) / 10**6
    assert Decimal(event["cost_usd"]) == expected

    # The tool result goes back in the OpenAI shape; Gemini gets a functionResponse named
    # after the call, and the call with its thought signature.
    headers, tag = tagged()
    follow = oai.chat.completions.create(
        model="gemini-2.5-flash",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
        extra_headers=headers,
    )
    assert follow.choices[0].message.content == "tok0 tok1 tok2 tok3 "
    assert follow.choices[0].finish_reason == "stop"
    (sent,) = upstream(mock, tag)
    contents = sent["json"]["contents"]
    assert [c["role"] for c in contents] == ["user", "model", "user"]
    assert contents[1]["parts"][0]["text"] == "tok0 tok1 tok2 tok3 "
    assert contents[1]["parts"][1] == {
        "functionCall": {"name": "get_weather", "args": {"query": "mock"}},
        "thoughtSignature": SIGNATURE,
    }
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}
    ]


def test_openai_client_streams_from_gemini(
    oai: openai.OpenAI, mock: Mock, events: Callable[[int], list[dict[str, Any]]]
) -> None:
    headers, tag = tagged(
        **{"x-mock-chunks": "3", "x-mock-input-tokens": "25", "x-mock-output-tokens": "6"}
    )
    stream = oai.chat.completions.create(
        model="gemini/gemini-2.5-flash-lite",
        messages=[{"role": "user", "content": "hi"}],
        stream=True,
        stream_options={"include_usage": True},
        tools=[WEATHER_TOOL],
        extra_headers={**headers, "x-mock-tool-call": "1"},
    )
    chunks = list(stream)
    assert all(c.object == "chat.completion.chunk" for c in chunks)
    assert all(c.model == "gemini/gemini-2.5-flash-lite" for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text == "tok0 tok1 tok2 "
    calls = [tc for c in chunks if c.choices for tc in (c.choices[0].delta.tool_calls or [])]
    assert len(calls) == 1 and calls[0].index == 0 and calls[0].id
    assert calls[0].function.name == "get_weather"
    assert json.loads(calls[0].function.arguments) == {"query": "mock"}
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["tool_calls"]
    assert chunks[-1].choices == []
    assert chunks[-1].usage.prompt_tokens == 25 and chunks[-1].usage.completion_tokens == 6
    (sent,) = upstream(mock, tag)
    assert sent["path"] == "/v1beta/models/gemini-2.5-flash-lite:streamGenerateContent"
    assert sent["query"] == "alt=sse"
    (event,) = events(1)
    assert event["streamed"] and event["provider"] == "gemini"
    assert event["usage"]["input_uncached"] == 25 and event["usage"]["output"] == 6


def test_anthropic_client_to_gemini_with_tools(
    ant: anthropic.Anthropic, mock: Mock, events: Callable[[int], list[dict[str, Any]]]
) -> None:
    headers, tag = tagged(
        **{"x-mock-tool-call": "1", "x-mock-input-tokens": "500", "x-mock-output-tokens": "20"}
    )
    message = ant.messages.create(
        model="gemini-2.5-pro",
        max_tokens=200,
        system="Be brief.",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[ANTHROPIC_TOOL],
        stop_sequences=["END"],
        extra_headers=headers,
    )
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "gemini-2.5-pro"
    assert message.stop_reason == "tool_use"
    text, use = message.content
    assert text.type == "text" and text.text == "tok0 tok1 tok2 tok3 "
    assert use.type == "tool_use" and use.name == "get_weather" and use.input == {"query": "mock"}
    assert use.id
    assert message.usage.input_tokens == 500 and message.usage.output_tokens == 20
    (sent,) = upstream(mock, tag)
    assert "anthropic-version" not in sent["headers_dict"]
    body = sent["json"]
    assert body["systemInstruction"] == {"parts": [{"text": "Be brief."}]}
    assert body["generationConfig"] == {"stopSequences": ["END"], "maxOutputTokens": 200}
    assert body["tools"][0]["functionDeclarations"][0]["parametersJsonSchema"] == {
        "type": "object",
        "properties": {"city": {"type": "string"}},
    }
    (event,) = events(1)
    # gemini-2.5-pro: $1.25 input, $10 output per Mtok (prompts up to 200k tokens).
    assert Decimal(event["cost_usd"]) == (500 * Decimal("1.25") + 20 * 10) / 10**6

    # The result, streamed back.
    headers, tag = tagged(**{"x-mock-input-tokens": "9", "x-mock-output-tokens": "4"})
    with ant.messages.stream(
        model="gemini-2.5-pro",
        max_tokens=200,
        tools=[ANTHROPIC_TOOL],
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            {"role": "assistant", "content": [b.model_dump(exclude_none=True) for b in message.content]},
            {"role": "user", "content": [{"type": "tool_result", "tool_use_id": use.id, "content": "sunny"}]},
        ],
        extra_headers=headers,
    ) as stream:
        streamed = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert streamed == "tok0 tok1 tok2 tok3 " and final.content[0].text == streamed
    assert final.model == "gemini-2.5-pro"
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    (sent,) = upstream(mock, tag)
    assert sent["query"] == "alt=sse"
    contents = sent["json"]["contents"]
    assert contents[1]["parts"][1]["functionCall"] == {"name": "get_weather", "args": {"query": "mock"}}
    assert contents[1]["parts"][1]["thoughtSignature"] == SIGNATURE
    assert contents[2]["parts"] == [
        {"functionResponse": {"name": "get_weather", "response": {"result": "sunny"}}}
    ]
    assert events(2)[1]["streamed"]


def test_untranslatable_fields_and_gemini_errors(
    oai: openai.OpenAI, ant: anthropic.Anthropic
) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[
                {
                    "role": "user",
                    "content": [{"type": "image_url", "image_url": {"url": "https://example.com/a.png"}}],
                }
            ],
        )
    assert "messages[0].content[0].image_url.url" in refused.value.message

    with pytest.raises(openai.InternalServerError) as unavailable:
        oai.chat.completions.create(
            model="gemini-2.5-flash",
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-error": "503"},
        )
    assert unavailable.value.status_code == 503
    assert unavailable.value.code == "overloaded"

    with pytest.raises(anthropic.RateLimitError) as limited:
        ant.messages.create(
            model="gemini-2.5-flash",
            max_tokens=10,
            messages=[{"role": "user", "content": "hi"}],
            extra_headers={"x-mock-error": "429"},
        )
    assert limited.value.status_code == 429
    assert limited.value.body["error"]["type"] == "rate_limit_error"
