"""The ledger to the token and the last decimal: a mix of calls with known usage through
both SDKs, each event priced exactly, and the summaries equal to the sums of the events."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Callable

from support import (
    CLAUDE_HAIKU_4_5,
    CLAUDE_OPUS_4_5,
    GPT_4O,
    GPT_4O_MINI,
    TEXT_EMBEDDING_3_SMALL,
    TokenPrice,
    mock_usage,
    money,
    request_id,
    usage_of,
)

MESSAGES = [{"role": "user", "content": "Count with me."}]
TOKEN_CLASSES = ("input_uncached", "cache_read", "cache_write_5m", "cache_write_1h", "output",
                 "reasoning")  # fmt: skip


@dataclass
class Expected:
    model: str
    price: TokenPrice
    input_uncached: int = 0
    cache_read: int = 0
    cache_write_5m: int = 0
    cache_write_1h: int = 0
    output: int = 0
    reasoning: int = 0
    web_search_requests: int = 0
    outcome: str = "ok"
    rid: str = field(default="", repr=False)

    def tokens(self) -> dict[str, int]:
        return {k: getattr(self, k) for k in TOKEN_CLASSES}

    def cost(self) -> Decimal:
        return self.price.cost(
            input_uncached=self.input_uncached,
            cache_read=self.cache_read,
            cache_write_5m=self.cache_write_5m,
            cache_write_1h=self.cache_write_1h,
            output=self.output,
            web_search_requests=self.web_search_requests,
        )


def _calls(oai, ant) -> list[tuple[Callable[[], str], Expected]]:
    """(call returning its request id, what meshgate must record). OpenAI counts input
    inclusive of cached and written tokens; Anthropic's classes are disjoint."""

    def chat(model, stream, include_usage=False, **counts):
        def run():
            kw = dict(model=model, messages=MESSAGES, extra_headers=mock_usage(**counts))
            if stream:
                kw["stream"] = True
                if include_usage:
                    kw["stream_options"] = {"include_usage": True}
            raw = oai.chat.completions.with_raw_response.create(**kw)
            if stream:
                for _ in raw.parse():
                    pass
            else:
                raw.parse()
            return request_id(raw)

        return run

    def responses(model, stream, **counts):
        def run():
            raw = oai.responses.with_raw_response.create(
                model=model, input="Count with me.", stream=stream,
                extra_headers=mock_usage(**counts),
            )  # fmt: skip
            if stream:
                for _ in raw.parse():
                    pass
            else:
                raw.parse()
            return request_id(raw)

        return run

    def embed(**counts):
        def run():
            raw = oai.embeddings.with_raw_response.create(
                model="text-embedding-3-small", input="count", extra_headers=mock_usage(**counts)
            )
            raw.parse()
            return request_id(raw)

        return run

    def message(model, stream, **counts):
        def run():
            kw = dict(model=model, max_tokens=512, messages=MESSAGES,
                      extra_headers=mock_usage(**counts))  # fmt: skip
            if stream:
                with ant.messages.stream(**kw) as s:
                    s.get_final_message()
                    return request_id(s.response)
            raw = ant.messages.with_raw_response.create(**kw)
            raw.parse()
            return request_id(raw)

        return run

    return [
        (
            chat("gpt-4o", False, input_tokens=1000, cached_tokens=400, cache_write_tokens=100,
                 output_tokens=250, reasoning_tokens=50),
            Expected("gpt-4o", GPT_4O, input_uncached=500, cache_read=400, cache_write_5m=100,
                     output=250, reasoning=50),
        ),
        (
            chat("gpt-4o-mini", True, include_usage=True, input_tokens=123, output_tokens=45),
            Expected("gpt-4o-mini", GPT_4O_MINI, input_uncached=123, output=45),
        ),
        (
            chat("gpt-4o", True, input_tokens=777, cached_tokens=256, output_tokens=99,
                 reasoning_tokens=30),
            Expected("gpt-4o", GPT_4O, input_uncached=521, cache_read=256, output=99,
                     reasoning=30),
        ),
        (
            responses("gpt-4o-mini", True, input_tokens=2000, cached_tokens=1000,
                      output_tokens=321, reasoning_tokens=100),
            Expected("gpt-4o-mini", GPT_4O_MINI, input_uncached=1000, cache_read=1000,
                     output=321, reasoning=100),
        ),
        (
            responses("gpt-4o", False, input_tokens=31, output_tokens=7),
            Expected("gpt-4o", GPT_4O, input_uncached=31, output=7),
        ),
        (
            embed(input_tokens=98765),
            Expected("text-embedding-3-small", TEXT_EMBEDDING_3_SMALL, input_uncached=98765),
        ),
        (
            message("claude-opus-4-5", False, input_tokens=500, cached_tokens=3000,
                    cache_write_tokens=1200, cache_write_1h_tokens=800, output_tokens=150),
            Expected("claude-opus-4-5", CLAUDE_OPUS_4_5, input_uncached=500, cache_read=3000,
                     cache_write_5m=1200, cache_write_1h=800, output=150),
        ),
        (
            # message_delta restates input (+5) and reports one web search: the final
            # figures count, and the search is billed.
            message("claude-haiku-4-5", True, input_tokens=42, cached_tokens=10,
                    cache_write_tokens=20, cache_write_1h_tokens=30, output_tokens=77,
                    restate_input=1),
            Expected("claude-haiku-4-5", CLAUDE_HAIKU_4_5, input_uncached=47, cache_read=10,
                     cache_write_5m=20, cache_write_1h=30, output=77, web_search_requests=1),
        ),
        (
            message("claude-haiku-4-5", False, input_tokens=9, output_tokens=1),
            Expected("claude-haiku-4-5", CLAUDE_HAIKU_4_5, input_uncached=9, output=1),
        ),
        (
            # A Responses stream that ends `incomplete` still used tokens: billed.
            responses("gpt-4o-mini", True, input_tokens=64, output_tokens=16,
                      response_status="incomplete"),
            Expected("gpt-4o-mini", GPT_4O_MINI, input_uncached=64, output=16,
                     outcome="incomplete"),
        ),
    ]  # fmt: skip


def test_ledger_matches_computed_costs(oai, ant, key, admin, events):
    calls = _calls(oai, ant)
    expected = []
    for run, exp in calls:
        exp.rid = run()
        expected.append(exp)

    recorded = {e["request_id"]: e for e in events(len(expected))}
    assert len(recorded) == len(expected), "an extra or missing event"

    for exp in expected:
        ev = recorded[exp.rid]
        assert (ev["model"], ev["outcome"], ev["key_id"]) == (exp.model, exp.outcome, key.id), exp
        assert usage_of(ev) == exp.tokens(), exp
        assert (ev["usage"].get("web_search_requests") or 0) == exp.web_search_requests, exp
        # Exactly: same decimal, written without trailing zeros.
        assert ev["cost_usd"] == money(exp.cost()), exp

    # The summaries are the sums of the events, per model and in total.
    by_model: dict[str, dict[str, Decimal | int]] = defaultdict(lambda: defaultdict(int))
    for exp in expected:
        row = by_model[exp.model]
        row["requests"] += 1
        row["errors"] += exp.outcome != "ok"  # any outcome but ok
        for k in ("input_uncached", "cache_read", "output", "reasoning"):
            row[k] += getattr(exp, k)
        row["cache_write"] += exp.cache_write_5m + exp.cache_write_1h
        row["cost_usd"] += exp.cost()
    total: dict[str, Decimal | int] = defaultdict(int)
    for row in by_model.values():
        for k, v in row.items():
            total[k] += v

    def plain(row):
        return {
            **{k: row[k] for k in ("requests", "errors", "input_uncached", "cache_read",
                                   "cache_write", "output", "reasoning")},
            "cost_usd": Decimal(row["cost_usd"]),
        }  # fmt: skip

    # Rows are compared as decimals: meshgate writes a row's sum unnormalised ("0.0059250")
    # while events and the total drop trailing zeros.
    summary = admin.summary(key_id=key.id, group_by="model")
    assert {r["group"]: plain(r) for r in summary["data"]} == {
        m: plain(r) for m, r in by_model.items()
    }
    assert plain(summary["total"]) == plain(total)
    assert summary["total"]["cost_usd"] == money(total["cost_usd"])
    assert summary["total"]["errors"] == 1  # the incomplete Responses stream

    by_key = admin.summary(key_id=key.id, group_by="key")
    (row,) = by_key["data"]
    assert row["group"] == key.id
    assert plain(row) == plain(total)
    assert by_key["total"]["cost_usd"] == money(total["cost_usd"])
