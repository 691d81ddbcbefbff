"""The async clients, many calls at once: every stream completes, and each call gets exactly
one event with its own usage and cost."""

from __future__ import annotations

import asyncio

import anthropic
import openai

from support import CLAUDE_HAIKU_4_5, CLIENT_TIMEOUT_S, GPT_4O_MINI, mock_usage, money, request_id

CONCURRENT = 8


def test_concurrent_async_streams(stack, key, events):
    async def openai_stream(client: openai.AsyncOpenAI, i: int) -> tuple[str, str, object]:
        raw = await client.chat.completions.with_raw_response.create(
            model="gpt-4o-mini",
            messages=[{"role": "user", "content": f"call {i}"}],
            stream=True,
            stream_options={"include_usage": True},
            extra_headers=mock_usage(input_tokens=100 + i, output_tokens=10 + i, chunks=3,
                                     chunk_delay_ms=5),
        )  # fmt: skip
        chunks = [c async for c in raw.parse()]
        text = "".join(c.choices[0].delta.content or "" for c in chunks if c.choices)
        expected = GPT_4O_MINI.cost(input_uncached=100 + i, output=10 + i)
        return request_id(raw), text, expected

    async def anthropic_stream(client: anthropic.AsyncAnthropic, i: int) -> tuple[str, str, object]:
        async with client.messages.stream(
            model="claude-haiku-4-5",
            max_tokens=64,
            messages=[{"role": "user", "content": f"call {i}"}],
            extra_headers=mock_usage(input_tokens=200 + i, output_tokens=20 + i, chunks=3,
                                     chunk_delay_ms=5),
        ) as stream:  # fmt: skip
            text = "".join([t async for t in stream.text_stream])
            rid = request_id(stream.response)
        expected = CLAUDE_HAIKU_4_5.cost(input_uncached=200 + i, output=20 + i)
        return rid, text, expected

    async def main():
        oa = openai.AsyncOpenAI(
            base_url=stack.openai_base, api_key=key.secret, max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )  # fmt: skip
        an = anthropic.AsyncAnthropic(
            base_url=stack.anthropic_base, api_key=key.secret, max_retries=0,
            timeout=CLIENT_TIMEOUT_S,
        )  # fmt: skip
        async with oa, an:
            return await asyncio.gather(
                *(openai_stream(oa, i) for i in range(CONCURRENT)),
                *(anthropic_stream(an, i) for i in range(CONCURRENT)),
            )

    results = asyncio.run(main())
    assert all(text == "tok0 tok1 tok2 " for _, text, _ in results)
    recorded = {e["request_id"]: e for e in events(2 * CONCURRENT)}
    assert len(recorded) == 2 * CONCURRENT
    for rid, _, expected in results:
        assert recorded[rid]["outcome"] == "ok"
        assert recorded[rid]["cost_usd"] == money(expected)
