"""A small purpose-made HTTP/1.1 streaming client: time to first byte and per-event arrival times.

Standard library only (asyncio over raw sockets, keep-alive, chunked decoding). Used by
bench.py for two things wrk cannot measure:
  * ttfb_load(): N concurrent keep-alive connections issuing streamed chat requests back to
    back for a fixed time; per request, the time from writing the request to the first byte of
    the response (status line) and to the first complete SSE event.
  * event_times(): one streamed request; the arrival time of every SSE event, to compare the
    gaps between content deltas through a proxy with the gaps of a direct call.
"""

from __future__ import annotations

import asyncio
import socket
import time
from dataclasses import dataclass, field
from urllib.parse import urlsplit


@dataclass
class StreamResult:
    status: int = 0
    ttfb: float = 0.0  # seconds, request written -> first response byte
    first_event: float = 0.0  # seconds, request written -> first complete SSE event
    total: float = 0.0  # seconds, request written -> last byte
    events: list = field(default_factory=list)  # (seconds since request written, event bytes)


def build_request(url: str, body: bytes, headers: dict[str, str]) -> tuple[str, int, bytes]:
    u = urlsplit(url)
    host, port = u.hostname or "127.0.0.1", u.port or 80
    lines = [
        f"POST {u.path or '/'} HTTP/1.1",
        f"Host: {host}:{port}",
        "Content-Type: application/json",
        f"Content-Length: {len(body)}",
    ]
    lines += [f"{k}: {v}" for k, v in headers.items()]
    head = ("\r\n".join(lines) + "\r\n\r\n").encode()
    return host, port, head + body


class Conn:
    """One keep-alive connection; request() sends a request and reads the whole response."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.buf = b""

    @classmethod
    async def open(cls, host: str, port: int) -> "Conn":
        reader, writer = await asyncio.open_connection(host, port, limit=1 << 20)
        sock = writer.get_extra_info("socket")
        if sock is not None:
            sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        return cls(reader, writer)

    def close(self) -> None:
        self.writer.close()

    async def _more(self) -> bytes:
        data = await self.reader.read(65536)
        if not data:
            raise ConnectionError("connection closed mid-response")
        return data

    async def request(self, raw: bytes) -> StreamResult:
        res = StreamResult()
        clock = time.perf_counter
        self.writer.write(raw)
        t0 = clock()
        # Status line and headers.
        if not self.buf:
            self.buf = await self._more()
        res.ttfb = clock() - t0
        while b"\r\n\r\n" not in self.buf:
            self.buf += await self._more()
        head, _, rest = self.buf.partition(b"\r\n\r\n")
        self.buf = b""
        lines = head.split(b"\r\n")
        res.status = int(lines[0].split()[1])
        hdrs = {}
        for line in lines[1:]:
            k, _, v = line.partition(b":")
            hdrs[k.strip().lower()] = v.strip().lower()

        pending = b""  # SSE text not yet ending in a blank line

        def feed(data: bytes) -> None:
            nonlocal pending
            if not data:
                return
            now = clock() - t0
            pending += data
            while True:
                i = pending.find(b"\n\n")
                if i < 0:
                    break
                ev, pending = pending[:i], pending[i + 2 :]
                if not res.events:
                    res.first_event = now
                res.events.append((now, ev))

        if hdrs.get(b"transfer-encoding") == b"chunked":
            data = rest
            while True:
                while b"\r\n" not in data:
                    data += await self._more()
                size_line, _, data = data.partition(b"\r\n")
                size = int(size_line.split(b";")[0], 16)
                if size == 0:
                    while not data.startswith(b"\r\n"):  # no trailers expected
                        data += await self._more()
                    self.buf = data[2:]
                    break
                remaining = size
                while remaining > 0:  # feed payload bytes as they arrive
                    if not data:
                        data = await self._more()
                    take = data[:remaining]
                    feed(take)
                    remaining -= len(take)
                    data = data[len(take) :]
                while len(data) < 2:
                    data += await self._more()
                data = data[2:]  # the CRLF after the chunk payload
        else:
            n = int(hdrs.get(b"content-length", b"0"))
            data = rest
            while len(data) < n:
                data += await self._more()
            feed(data[:n])
            self.buf = data[n:]
        res.total = clock() - t0
        if res.first_event == 0.0:
            res.first_event = res.total
        return res


async def _ttfb_worker(host, port, raw, deadline, warm_until, out, errors):
    conn = await Conn.open(host, port)
    try:
        while time.perf_counter() < deadline:
            t = time.perf_counter()
            try:
                r = await conn.request(raw)
            except (ConnectionError, ValueError, IndexError):
                errors.append(1)
                conn.close()
                conn = await Conn.open(host, port)
                continue
            if r.status != 200:
                errors.append(r.status)
            elif t >= warm_until:
                out.append((r.ttfb, r.first_event, r.total))
    finally:
        conn.close()


async def ttfb_load(url, body, headers, concurrency, duration, warmup):
    host, port, raw = build_request(url, body, headers)
    start = time.perf_counter()
    out: list = []
    errors: list = []
    await asyncio.gather(
        *[
            _ttfb_worker(host, port, raw, start + warmup + duration, start + warmup, out, errors)
            for _ in range(concurrency)
        ]
    )
    return out, errors


async def event_times(url, body, headers) -> StreamResult:
    host, port, raw = build_request(url, body, headers)
    conn = await Conn.open(host, port)
    try:
        return await conn.request(raw)
    finally:
        conn.close()


def pct(values, p):
    """Nearest-rank percentile (p in 0..100) of a non-empty list."""
    s = sorted(values)
    k = max(0, min(len(s) - 1, int(round(p / 100.0 * len(s) + 0.5)) - 1))
    return s[k]
