"""openai-python against meshgate's OpenAI surface: every endpoint the SDK offers that
meshgate meters, checked on what the SDK returns, what reached the provider and the ledger."""

from __future__ import annotations

import struct

import openai

from support import (
    DALL_E_2_STANDARD_512,
    GPT_4O,
    GPT_4O_MINI,
    TEXT_EMBEDDING_3_SMALL,
    TTS_1_PER_CHAR,
    WHISPER_1_PER_SECOND,
    marker,
    mock_usage,
    money,
    request_id,
    usage_of,
    wav_bytes,
)

MESSAGES = [{"role": "user", "content": "Say four tokens."}]
MOCK_TEXT = "tok0 tok1 tok2 tok3 "  # the mock's default four deltas


def assert_upstream_auth(upstream: dict, key_secret: str) -> None:
    """The provider got meshgate's provider key, never the client's meshgate key."""
    headers = upstream["headers_dict"]
    assert headers.get("authorization") == "Bearer sk-mock-openai"
    assert not any(key_secret in v for _, v in upstream["headers"]), upstream["headers"]


def test_chat_completion(oai, key, mock, event):
    tag = marker()
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,
        extra_headers={**tag, **mock_usage(input_tokens=1000, cached_tokens=400, output_tokens=250)},
    )
    completion = raw.parse()
    assert isinstance(completion, openai.types.chat.ChatCompletion)
    assert completion.choices[0].message.content == MOCK_TEXT
    assert completion.choices[0].finish_reason == "stop"
    assert completion.usage.prompt_tokens == 1000
    assert completion.usage.prompt_tokens_details.cached_tokens == 400
    assert completion.usage.completion_tokens == 250

    (upstream,) = mock.requests(tag)
    assert upstream["path"] == "/v1/chat/completions"
    assert upstream["json"]["messages"] == MESSAGES
    assert_upstream_auth(upstream, key.secret)

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["model"], ev["streamed"], ev["status"], ev["outcome"]) == (
        "chat_completions", "gpt-4o", False, 200, "ok",
    )  # fmt: skip
    assert usage_of(ev) == dict(
        input_uncached=600, cache_read=400, cache_write_5m=0, cache_write_1h=0, output=250,
        reasoning=0,
    )  # fmt: skip
    assert ev["cost_usd"] == money(GPT_4O.cost(input_uncached=600, cache_read=400, output=250))
    assert ev["price_id"].startswith("builtin:gpt-4o@")


def test_chat_stream_without_include_usage(oai, mock, event):
    """meshgate asks the provider for usage, meters it, and hides the extra usage chunk: the
    SDK sees only chunks with choices, as it would from OpenAI."""
    tag = marker()
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o-mini",
        messages=MESSAGES,
        stream=True,
        extra_headers={**tag, **mock_usage(input_tokens=77, output_tokens=9, chunks=6)},
    )
    chunks = list(raw.parse())
    assert chunks, "no chunks"
    assert all(c.choices for c in chunks), [c for c in chunks if not c.choices]
    assert all(c.usage is None for c in chunks)
    text = "".join(c.choices[0].delta.content or "" for c in chunks)
    assert text == "".join(f"tok{i} " for i in range(6))
    assert chunks[-1].choices[0].finish_reason == "stop"

    (upstream,) = mock.requests(tag)
    assert upstream["json"]["stream"] is True
    assert upstream["json"]["stream_options"] == {"include_usage": True}

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["streamed"], ev["outcome"]) == ("chat_completions", True, "ok")
    assert (usage_of(ev)["input_uncached"], usage_of(ev)["output"]) == (77, 9)
    assert ev["cost_usd"] == money(GPT_4O_MINI.cost(input_uncached=77, output=9))


def test_chat_stream_with_include_usage(oai, event):
    raw = oai.chat.completions.with_raw_response.create(
        model="gpt-4o",
        messages=MESSAGES,
        stream=True,
        stream_options={"include_usage": True},
        extra_headers=mock_usage(input_tokens=300, cached_tokens=100, output_tokens=40),
    )
    chunks = list(raw.parse())
    *content, final = chunks
    assert all(c.choices and c.usage is None for c in content)
    assert "".join(c.choices[0].delta.content or "" for c in content) == MOCK_TEXT
    assert final.choices == []
    assert final.usage.prompt_tokens == 300
    assert final.usage.prompt_tokens_details.cached_tokens == 100
    assert final.usage.completion_tokens == 40

    ev = event(request_id(raw))
    assert ev["streamed"] is True and ev["outcome"] == "ok"
    assert usage_of(ev)["input_uncached"] == 200 and usage_of(ev)["cache_read"] == 100
    assert ev["cost_usd"] == money(GPT_4O.cost(input_uncached=200, cache_read=100, output=40))


def test_responses(oai, event):
    raw = oai.responses.with_raw_response.create(
        model="gpt-4o",
        input="Say four tokens.",
        extra_headers=mock_usage(input_tokens=500, cached_tokens=128, output_tokens=64),
    )
    response = raw.parse()
    assert response.status == "completed"
    assert response.output_text == MOCK_TEXT
    assert response.usage.input_tokens == 500
    assert response.usage.input_tokens_details.cached_tokens == 128
    assert response.usage.output_tokens == 64

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["model"], ev["streamed"], ev["outcome"]) == (
        "responses", "gpt-4o", False, "ok",
    )  # fmt: skip
    assert ev["cost_usd"] == money(GPT_4O.cost(input_uncached=372, cache_read=128, output=64))


def test_responses_stream(oai, event):
    raw = oai.responses.with_raw_response.create(
        model="gpt-4o-mini",
        input="Say four tokens.",
        stream=True,
        extra_headers=mock_usage(input_tokens=900, output_tokens=120, reasoning_tokens=20),
    )
    stream_events = list(raw.parse())
    types = [e.type for e in stream_events]
    assert types[0] == "response.created"
    assert types[-1] == "response.completed", types
    assert types.count("response.completed") == 1
    seq = [e.sequence_number for e in stream_events]
    assert seq == sorted(seq) and len(set(seq)) == len(seq)
    deltas = "".join(e.delta for e in stream_events if e.type == "response.output_text.delta")
    assert deltas == MOCK_TEXT
    usage = stream_events[-1].response.usage
    assert (usage.input_tokens, usage.output_tokens) == (900, 120)
    assert usage.output_tokens_details.reasoning_tokens == 20

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["streamed"], ev["outcome"]) == ("responses", True, "ok")
    assert usage_of(ev)["reasoning"] == 20
    assert ev["cost_usd"] == money(GPT_4O_MINI.cost(input_uncached=900, output=120))


def _f32(x: float) -> float:
    return struct.unpack("<f", struct.pack("<f", x))[0]


def _mock_embedding(i: int, j: int) -> float:
    """meshgate-mock's `embedding_value`, in f32 arithmetic."""
    return _f32(_f32(((i * 31 + j * 7) % 200) / 1000) - _f32(0.1))


def test_embeddings_base64_default(oai, mock, event):
    """The SDK asks for base64 by default and decodes it: the bytes passed through intact."""
    tag = marker()
    raw = oai.embeddings.with_raw_response.create(
        model="text-embedding-3-small",
        input=["first", "second"],
        extra_headers={**tag, **mock_usage(input_tokens=12345)},
    )
    result = raw.parse()
    assert len(result.data) == 2
    for i, item in enumerate(result.data):
        assert item.index == i
        assert isinstance(item.embedding, list) and len(item.embedding) == 1536
        assert all(isinstance(v, float) for v in item.embedding)
        assert item.embedding == [_mock_embedding(i, j) for j in range(1536)]

    (upstream,) = mock.requests(tag)
    assert upstream["json"]["encoding_format"] == "base64"

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["model"], ev["outcome"]) == (
        "embeddings", "text-embedding-3-small", "ok",
    )  # fmt: skip
    assert usage_of(ev)["input_uncached"] == 12345
    assert ev["cost_usd"] == money(TEXT_EMBEDDING_3_SMALL.cost(input_uncached=12345))


def test_images_generate(oai, event):
    raw = oai.images.with_raw_response.generate(
        model="dall-e-2", prompt="a lighthouse", n=3, size="512x512"
    )
    images = raw.parse()
    assert len(images.data) == 3
    assert all(img.url or img.b64_json for img in images.data)

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["model"], ev["outcome"]) == ("images_generations", "dall-e-2", "ok")
    assert ev["usage"]["images"] == 3
    assert ev["cost_usd"] == money(3 * DALL_E_2_STANDARD_512)


def test_audio_speech(oai, event):
    text = "Héllo wörld, 👋 from meshgate."  # characters are Unicode scalars, not bytes
    raw = oai.audio.speech.with_raw_response.create(model="tts-1", voice="alloy", input=text)
    speech = raw.parse()
    audio = speech.content
    assert isinstance(audio, bytes) and len(audio) > 0
    assert raw.headers["content-type"].startswith("audio/")

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["model"], ev["outcome"]) == ("audio_speech", "tts-1", "ok")
    assert ev["usage"]["characters"] == len(text)
    assert ev["cost_usd"] == money(len(text) * TTS_1_PER_CHAR)


def test_audio_transcription_multipart(oai, mock, event):
    wav = wav_bytes(0.5)
    tag = marker()
    raw = oai.audio.transcriptions.with_raw_response.create(
        model="whisper-1",
        file=("hello.wav", wav, "audio/wav"),
        extra_headers={**tag, **mock_usage(audio_seconds=7)},
    )
    transcription = raw.parse()
    assert transcription.text.strip() == MOCK_TEXT.strip()

    (upstream,) = mock.requests(tag)
    assert upstream["path"] == "/v1/audio/transcriptions"
    assert upstream["headers_dict"]["content-type"].startswith("multipart/form-data")
    assert wav in upstream["body_bytes"]  # the file part passed through byte for byte

    ev = event(request_id(raw))
    assert (ev["endpoint"], ev["model"], ev["outcome"]) == (
        "audio_transcriptions", "whisper-1", "ok",
    )  # fmt: skip
    assert ev["usage"]["audio_seconds"] == "7"
    assert ev["cost_usd"] == money(7 * WHISPER_1_PER_SECOND)
