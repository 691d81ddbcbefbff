#!/usr/bin/env python3
"""Diagnostics that attribute meshgate's CPU per request (no meshgate code is changed).

    python3 bench/diagnose.py ledger [--kind chat] [--concurrency 16] [--duration 5] [--reps 3]
    python3 bench/diagnose.py events [--concurrency 16] [--duration 5] [--reps 2]
    python3 bench/diagnose.py threads [--kind chat|stream] [--concurrency 16] [--reps 3]

ledger: the same wrk point against three meshgate processes that differ only in their
  database, interleaved; medians of CPU per request, req/s, p50:
    shipped  `meshgate serve --data-dir` as is (today: SQLite rollback journal, synchronous FULL)
    wal      the database file is created beforehand in WAL mode (the mode is stored in the
             file, so meshgate keeps it; synchronous stays FULL)
    memory   MESHGATE_DATABASE_URL=sqlite::memory: (no file I/O; the per-row statements and
             the hand-off to sqlx's worker thread remain)
threads: meshgate as is (a tokio worker per core) vs TOKIO_WORKER_THREADS=1 (tokio's builder
  reads it), same point, interleaved: how much of the CPU is cross-thread wake-ups.
events: streams of 1, 20 and 80 content deltas through nginx and meshgate; CPU per request
  for each and the slope, i.e. the proxy's CPU cost of one more SSE event.
Stops everything it started on exit.
"""

from __future__ import annotations

import argparse
import shutil
import sqlite3
import statistics
import sys
import tempfile
from pathlib import Path

import bench

KINDS = {"chat": (bench.CHAT_BODY, {}), "stream": (bench.STREAM_BODY, {"x-mock-chunks": "20"})}


def rotated(names, rep):
    k = rep % len(names)
    return names[k:] + names[:k]


def ledger(args, tmp: Path, mock, mock_url):
    wal_dir = tmp / "wal-data"
    wal_dir.mkdir()
    db = sqlite3.connect(wal_dir / "meshgate.db")
    db.execute("PRAGMA journal_mode=WAL")
    db.close()
    variants(args, tmp, mock, mock_url, "meshgate database",
             (("shipped", {}), ("wal", {}), ("memory", {"MESHGATE_DATABASE_URL": "sqlite::memory:"})))


def threads(args, tmp: Path, mock, mock_url):
    variants(args, tmp, mock, mock_url, "meshgate runtime",
             (("default workers", {}), ("TOKIO_WORKER_THREADS=1", {"TOKIO_WORKER_THREADS": "1"})))


def variants(args, tmp: Path, mock, mock_url, title, specs):
    targets = {}
    for i, (name, env) in enumerate(specs):
        data_name = "wal" if name == "wal" else f"v{i}"
        p, url, secret, data = bench.start_meshgate(tmp, mock_url, data_name, env)
        targets[name] = bench.Target(name, url + "/openai/v1/chat/completions",
                                     {"Authorization": f"Bearer {secret}"}, [p.pid])
        if (data / "meshgate.db").exists():
            mode = sqlite3.connect(data / "meshgate.db").execute("PRAGMA journal_mode").fetchone()[0]
            bench.log(f"{name}: journal_mode {mode}")
    body, extra = KINDS[args.kind]
    names = list(targets)
    runs = {n: [] for n in names}
    for rep in range(args.reps):
        for n in rotated(names, rep):
            r = bench.measure(targets[n], mock.pid, body, extra, args.concurrency, args)
            runs[n].append(r)
            bench.log(f"{n:22} rep {rep}: {r['rps']:.0f} req/s p50 {r['p50_ms']:.3f} ms "
                      f"cpu {r['proxy_cpu_us_per_req']:.1f} us/req")
    print(f"| {title} ({args.kind} c={args.concurrency}) | CPU us/req | req/s | p50 ms |")
    print("|---|---:|---:|---:|")
    for n in names:
        med = lambda k: statistics.median(r[k] for r in runs[n])
        print(f"| {n} | {med('proxy_cpu_us_per_req'):.1f} | {med('rps'):.0f} | {med('p50_ms'):.3f} |")


def events(args, tmp: Path, mock, mock_url):
    p, url, secret, _ = bench.start_meshgate(tmp, mock_url, "meshgate")
    _, ngx_url, ngx_pids = bench.start_nginx(tmp, mock_url)
    targets = {
        "nginx": bench.Target("nginx", ngx_url + "/v1/chat/completions",
                              {"Authorization": "Bearer client-token"}, ngx_pids),
        "meshgate": bench.Target("meshgate", url + "/openai/v1/chat/completions",
                                 {"Authorization": f"Bearer {secret}"}, [p.pid]),
    }
    chunks = (1, 20, 80)
    cpu = {(t, c): [] for t in targets for c in chunks}
    for rep in range(args.reps):
        for c in chunks:
            for t in rotated(list(targets), rep):
                r = bench.measure(targets[t], mock.pid, bench.STREAM_BODY, {"x-mock-chunks": str(c)},
                                  args.concurrency, args)
                cpu[(t, c)].append(r["proxy_cpu_us_per_req"])
                bench.log(f"{t:8} chunks {c:3} rep {rep}: {r['rps']:.0f} req/s cpu {r['proxy_cpu_us_per_req']:.1f} us/req")
    print(f"| stream c={args.concurrency} | " + " | ".join(f"{c} deltas us/req" for c in chunks)
          + " | us per extra event |")
    print("|---|" + "---:|" * (len(chunks) + 1))
    for t in targets:
        m = {c: statistics.median(cpu[(t, c)]) for c in chunks}
        slope = (m[chunks[-1]] - m[chunks[0]]) / (chunks[-1] - chunks[0])
        print(f"| {t} | " + " | ".join(f"{m[c]:.1f}" for c in chunks) + f" | {slope:.2f} |")


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("what", choices=("ledger", "threads", "events"))
    ap.add_argument("--kind", choices=KINDS, default="chat", help="ledger and threads")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--duration", type=int, default=5)
    ap.add_argument("--warmup", type=int, default=1)
    ap.add_argument("--reps", type=int)
    args = ap.parse_args()
    args.reps = args.reps or (2 if args.what == "events" else 3)
    tmp = Path(tempfile.mkdtemp(prefix="meshgate-diagnose-"))
    try:
        mock, mock_url = bench.start_mock(tmp)
        {"ledger": ledger, "threads": threads, "events": events}[args.what](args, tmp, mock, mock_url)
    finally:
        bench.PROCS.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
