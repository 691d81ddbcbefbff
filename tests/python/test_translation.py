"""The translation lane through the official SDKs: an OpenAI client calling a Claude model
and an Anthropic client calling a GPT model, non-streamed and streamed, with tools; the
answer names the model the client asked for, usage is the upstream's own, and the call is
metered at the served model's price."""

from __future__ import annotations

import json
from decimal import Decimal
from typing import Any, Callable

import anthropic
import openai
import pytest

from conftest import Key

MESSAGES = [{"role": "user", "content": "hi"}]
WEATHER_TOOL = {
    "type": "function",
    "function": {
        "name": "get_weather",
        "description": "Weather in a city",
        "parameters": {"type": "object", "properties": {"city": {"type": "string"}}},
    },
}


def test_openai_client_to_a_claude_model(
    oai: openai.OpenAI, events: Callable[[int], list[dict[str, Any]]]
) -> None:
    raw = oai.chat.completions.with_raw_response.create(
        model="claude-haiku-4-5",
        messages=[{"role": "system", "content": "Be brief."}, *MESSAGES],
        max_tokens=50,
        extra_headers={"x-mock-input-tokens": "40", "x-mock-output-tokens": "7"},
    )
    assert raw.headers["meshgate-served-model"] == "anthropic/claude-haiku-4-5; deployment=anthropic"
    completion = raw.parse()
    assert completion.object == "chat.completion"
    assert completion.model == "claude-haiku-4-5"
    assert completion.choices[0].message.role == "assistant"
    assert completion.choices[0].message.content
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 40
    assert completion.usage.completion_tokens == 7
    (event,) = events(1)
    assert event["provider"] == "anthropic" and event["model"] == "claude-haiku-4-5"
    assert event["usage"]["input_uncached"] == 40 and event["usage"]["output"] == 7
    # claude-haiku-4-5: $1 / $5 per Mtok.
    assert Decimal(event["cost_usd"]) == Decimal(40) / 10**6 + Decimal(7 * 5) / 10**6


def test_openai_client_streams_from_a_claude_model_with_usage(
    oai: openai.OpenAI, events: Callable[[int], list[dict[str, Any]]]
) -> None:
    stream = oai.chat.completions.create(
        model="claude-haiku-4-5",
        messages=MESSAGES,
        max_tokens=50,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers={"x-mock-chunks": "5", "x-mock-input-tokens": "12", "x-mock-output-tokens": "5"},
    )
    chunks = list(stream)
    text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
    assert text
    assert all(c.model == "claude-haiku-4-5" for c in chunks)
    finishes = [c.choices[0].finish_reason for c in chunks if c.choices and c.choices[0].finish_reason]
    assert finishes == ["stop"]
    assert chunks[-1].usage is not None and not chunks[-1].choices
    assert chunks[-1].usage.prompt_tokens == 12 and chunks[-1].usage.completion_tokens == 5
    (event,) = events(1)
    assert event["streamed"] and event["outcome"] == "ok"
    assert event["usage"]["output"] == 5


def test_openai_tools_reach_a_claude_model_and_come_back(oai: openai.OpenAI) -> None:
    completion = oai.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[WEATHER_TOOL],
        max_tokens=100,
        extra_headers={"x-mock-tool-call": "true"},
    )
    choice = completion.choices[0]
    assert choice.finish_reason == "tool_calls"
    (call,) = choice.message.tool_calls
    assert call.type == "function" and call.id
    assert isinstance(json.loads(call.function.arguments), dict)
    # The tool result goes back in the OpenAI shape and is accepted upstream.
    follow = oai.chat.completions.create(
        model="claude-haiku-4-5",
        messages=[
            {"role": "user", "content": "weather in Paris?"},
            choice.message.model_dump(exclude_none=True),
            {"role": "tool", "tool_call_id": call.id, "content": "sunny"},
        ],
        tools=[WEATHER_TOOL],
        max_tokens=100,
    )
    assert follow.choices[0].message.content


def test_untranslatable_fields_are_refused_by_name(oai: openai.OpenAI) -> None:
    with pytest.raises(openai.BadRequestError) as refused:
        oai.chat.completions.create(model="claude-haiku-4-5", messages=MESSAGES, n=2)
    error = refused.value.body
    assert isinstance(error, dict), error
    # The refused field by name, in `param` and at the head of the message.
    assert error["param"] == "n", error
    assert error["code"] == "untranslatable_field", error
    assert error["message"].startswith("n: "), error


def test_anthropic_client_to_a_gpt_model(
    ant: anthropic.Anthropic, events: Callable[[int], list[dict[str, Any]]]
) -> None:
    raw = ant.messages.with_raw_response.create(
        model="gpt-4o-mini",
        max_tokens=50,
        system="Be brief.",
        messages=MESSAGES,
        extra_headers={"x-mock-input-tokens": "30", "x-mock-output-tokens": "4"},
    )
    assert raw.headers["meshgate-served-model"] == "openai/gpt-4o-mini; deployment=openai"
    message = raw.parse()
    assert message.type == "message" and message.role == "assistant"
    assert message.model == "gpt-4o-mini"
    assert message.content[0].type == "text" and message.content[0].text
    assert message.stop_reason == "end_turn"
    assert message.usage.input_tokens == 30 and message.usage.output_tokens == 4
    (event,) = events(1)
    assert event["provider"] == "openai" and event["usage"]["input_uncached"] == 30


def test_anthropic_client_streams_from_a_gpt_model(
    ant: anthropic.Anthropic, events: Callable[[int], list[dict[str, Any]]]
) -> None:
    with ant.messages.stream(
        model="gpt-4o-mini",
        max_tokens=50,
        messages=MESSAGES,
        extra_headers={"x-mock-chunks": "4", "x-mock-input-tokens": "9", "x-mock-output-tokens": "4"},
    ) as stream:
        text = "".join(stream.text_stream)
        final = stream.get_final_message()
    assert text and final.content[0].text == text
    assert final.stop_reason == "end_turn"
    assert final.usage.output_tokens == 4
    (event,) = events(1)
    assert event["streamed"] and event["usage"]["output"] == 4


def test_anthropic_tools_reach_a_gpt_model(ant: anthropic.Anthropic, key: Key) -> None:
    message = ant.messages.create(
        model="gpt-4o-mini",
        max_tokens=100,
        messages=[{"role": "user", "content": "weather in Paris?"}],
        tools=[
            {
                "name": "get_weather",
                "description": "Weather in a city",
                "input_schema": {"type": "object", "properties": {"city": {"type": "string"}}},
            }
        ],
        extra_headers={"x-mock-tool-call": "true"},
    )
    assert message.stop_reason == "tool_use"
    uses = [b for b in message.content if b.type == "tool_use"]
    assert len(uses) == 1 and uses[0].id and isinstance(uses[0].input, dict)
