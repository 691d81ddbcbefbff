"""Helpers shared by the SDK tests: prices copied from the built-in catalog, exact cost
arithmetic, and small accessors for raw SDK responses."""

from __future__ import annotations

import io
import uuid
import wave
from dataclasses import dataclass
from decimal import Decimal
from typing import Any

# A response's event is written when meshgate drops the body, a moment after the client saw
# its end: reads of the ledger poll up to this long.
LEDGER_TIMEOUT_S = 10.0
CLIENT_TIMEOUT_S = 30.0

MILLION = Decimal(1_000_000)


def per_mtok(rate: str | None) -> Decimal | None:
    """USD per token from the catalog's USD per million tokens, exactly."""
    return None if rate is None else Decimal(rate) / MILLION


@dataclass(frozen=True)
class TokenPrice:
    """Token rates of one model, as written in crates/meshgate-pricing/src/builtin.toml
    (USD per 1M tokens). Missing cache rates fall back as meshgate documents: cache read and
    write to input, the long-TTL write to the write rate."""

    input: str
    output: str
    cache_read: str | None = None
    cache_write: str | None = None
    cache_write_long: str | None = None
    per_web_search: str | None = None

    def cost(
        self,
        *,
        input_uncached: int = 0,
        cache_read: int = 0,
        cache_write_5m: int = 0,
        cache_write_1h: int = 0,
        output: int = 0,
        web_search_requests: int = 0,
    ) -> Decimal:
        inp = per_mtok(self.input)
        read = inp if self.cache_read is None else per_mtok(self.cache_read)
        write = inp if self.cache_write is None else per_mtok(self.cache_write)
        write_long = write if self.cache_write_long is None else per_mtok(self.cache_write_long)
        total = (
            input_uncached * inp
            + cache_read * read
            + cache_write_5m * write
            + cache_write_1h * write_long
            + output * per_mtok(self.output)
        )
        if web_search_requests:
            total += web_search_requests * Decimal(self.per_web_search)
        return total


# builtin.toml, standard tier.
GPT_4O = TokenPrice(input="2.50", output="10", cache_read="1.25", per_web_search="0.025")
GPT_4O_MINI = TokenPrice(input="0.15", output="0.60", cache_read="0.075", per_web_search="0.025")
CLAUDE_OPUS_4_5 = TokenPrice(
    input="5", output="25", cache_read="0.50", cache_write="6.25", cache_write_long="10",
    per_web_search="0.01",
)  # fmt: skip
CLAUDE_HAIKU_4_5 = TokenPrice(
    input="1", output="5", cache_read="0.10", cache_write="1.25", cache_write_long="2",
    per_web_search="0.01",
)  # fmt: skip
TEXT_EMBEDDING_3_SMALL = TokenPrice(input="0.02", output="0")
# builtin.toml, batch tier (`batch = {...}`).
CLAUDE_HAIKU_4_5_BATCH = TokenPrice(
    input="0.5", output="2.5", cache_read="0.05", cache_write="0.625"
)
# Other units.
DALL_E_2_STANDARD_512 = Decimal("0.018")  # per image
TTS_1_PER_CHAR = Decimal("15") / MILLION  # per_mchars = "15"
WHISPER_1_PER_SECOND = Decimal("0.0001")


def money(amount: Decimal) -> str:
    """A cost as meshgate writes it: exact, no trailing zeros, no exponent."""
    return format(amount.normalize(), "f")


def request_id(raw: Any) -> str:
    """The meshgate request id of a raw SDK response or stream manager (`.headers`)."""
    rid = raw.headers.get("x-meshgate-request-id")
    assert rid, f"no x-meshgate-request-id in {dict(raw.headers)}"
    return rid


def marker() -> dict[str, str]:
    """A header that tags one call, to find it among the requests the mock received."""
    return {"x-test-marker": uuid.uuid4().hex}


def mock_usage(**counts: int | str) -> dict[str, str]:
    """`x-mock-*` headers from keyword counts: mock_usage(input_tokens=10) ->
    {"x-mock-input-tokens": "10"}."""
    return {"x-mock-" + name.replace("_", "-"): str(n) for name, n in counts.items()}


def wav_bytes(seconds: float = 0.5, rate: int = 16_000) -> bytes:
    """A small mono 16-bit PCM WAV file (a rising ramp, not silence)."""
    frames = int(seconds * rate)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(rate)
        w.writeframes(b"".join((i % 4096 * 8).to_bytes(2, "little") for i in range(frames)))
    return buf.getvalue()


def usage_of(event: dict[str, Any]) -> dict[str, int]:
    """The token classes of an event's usage, absent ones as 0."""
    u = event["usage"]
    return {
        k: u.get(k) or 0
        for k in ("input_uncached", "cache_read", "cache_write_5m", "cache_write_1h", "output",
                  "reasoning")
    }  # fmt: skip
