#!/usr/bin/env python3
"""Profile meshgate under one benchmark point: perf samples and syscalls per request vs nginx.

    python3 bench/profile.py --kind stream --concurrency 16 --seconds 5 [--out DIR]

Starts meshgate-mock, meshgate and nginx (release build, as bench/run.sh builds it; nginx
configured as in the benchmark), drives the point with wrk and:
  1. records meshgate with `perf record -g` (DWARF call graphs) for `seconds`, then prints the
     split by thread and by binary, the top self-time symbols, and the inclusive share of a
     few named cost centres (client writes, upstream, SQLite ledger, futex, getrandom, ...);
  2. counts syscalls per request with `strace -c -f` on meshgate and on the nginx worker over
     the same 2 s point (strace slows both; the counts per request are what matter).
Stops everything it started on exit. perf.data and the full reports stay in --out if given.
"""

from __future__ import annotations

import argparse
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import bench

KINDS = {
    "chat": (bench.CHAT_BODY, {}),
    "stream": (bench.STREAM_BODY, {"x-mock-chunks": "20"}),
}

# Inclusive cost centres: (label, regex over the symbol column of `perf report --children`).
CENTRES = [
    ("writev (all sockets, incl. kernel TCP send)", r"\] __GI___writev$"),
    ("recv (all sockets)", r"\] __libc_recv$"),
    ("hyper server dispatch (client side, incl. relay)", r"\] <hyper::server::conn::http1::UpgradeableConnection"),
    ("hyper client send_request", r"\] hyper_util::client::legacy::client::Client<C,B>::send_request::\{\{closure\}\}$"),
    ("meshgate proxy::serve (request phases)", r"\] meshgate_gateway::proxy::serve::\{\{closure\}\}$"),
    ("RelayBody::poll_frame (relay + meter)", r"\] <meshgate_gateway::relay::RelayBody as http_body::Body>::poll_frame$"),
    ("ledger write_loop (tokio side)", r"\] meshgate_gateway::ledger::write_loop::\{\{closure\}\}$"),
    ("sqlx SQLite worker thread", r"\] sqlx_sqlite::connection::worker::ConnectionWorker::establish::\{\{closure\}\}::\{\{closure\}\}"),
    ("futex syscalls (thread wake/park)", r"\] __x64_sys_futex$"),
    ("epoll_wait", r"\] __x64_sys_epoll_wait$"),
    ("getrandom (uuid ids)", r"\] __GI___getrandom$"),
    ("serde_json", r"\] serde_json::de::from_trait$"),
    ("malloc", r"\] malloc$"),
    ("free", r"\] (cfree@GLIBC_2.2.5|__libc_free|free)$"),
]


def perf_report(data: Path, *extra) -> str:
    r = subprocess.run(["perf", "report", "-i", str(data), "--stdio", "-g", "none", *extra],
                       capture_output=True, text=True)
    return r.stdout


def clean(text: str, limit: int):
    lines = [re.sub(r"(\s+-)+\s*$", "", ln).rstrip()[:170] for ln in text.splitlines()
             if ln.strip() and not ln.startswith("#")]
    return lines[:limit]


def strace_counts(pids, url, body, headers, conns, seconds, out: Path):
    """Syscall counts of `pids` (with threads) over one wrk run; returns ({name: calls}, requests)."""
    tracers = []
    for pid in pids:
        f = out.with_name(f"{out.stem}-{pid}.txt")
        tracers.append((bench.PROCS.start(["strace", "-c", "-f", "-p", str(pid), "-o", str(f)],
                                          stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL), f))
    time.sleep(0.5)
    r = bench.run_wrk(url, body, headers, conns, seconds)
    counts: dict[str, int] = {}
    for p, f in tracers:
        p.send_signal(2)
        p.wait(timeout=30)
        bench.PROCS.stop(p)
        for line in f.read_text().splitlines():
            m = re.match(r"\s*[\d.]+\s+[\d.]+\s+\d+\s+(\d+)\s+(?:\d+\s+)?([a-z_0-9]+)$", line)
            if m and m.group(2) != "total":
                counts[m.group(2)] = counts.get(m.group(2), 0) + int(m.group(1))
    return counts, r["requests"]


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=KINDS, default="stream")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--top", type=int, default=25)
    ap.add_argument("--out", help="directory to keep perf.data and the reports in")
    args = ap.parse_args()
    for tool in ("perf", "strace"):
        if not shutil.which(tool):
            sys.exit(f"{tool} not found (apt-get install linux-perf strace)")

    tmp = Path(tempfile.mkdtemp(prefix="meshgate-profile-"))
    out = Path(args.out) if args.out else tmp / "out"
    out.mkdir(parents=True, exist_ok=True)
    try:
        mock, mock_url = bench.start_mock(tmp)
        mg, mg_url, secret, _ = bench.start_meshgate(tmp, mock_url, "meshgate")
        _, ngx_url, ngx_pids = bench.start_nginx(tmp, mock_url)
        body, extra = KINDS[args.kind]
        url = mg_url + "/openai/v1/chat/completions"
        headers = {"Authorization": f"Bearer {secret}", **extra}
        bench.run_wrk(url, body, headers, args.concurrency, 1)

        perf_data = out / "perf.data"
        perf = bench.PROCS.start(
            ["perf", "record", "-F", "999", "-g", "--call-graph", "dwarf,16384", "-o", str(perf_data),
             "-p", str(mg.pid)],
            stdout=subprocess.DEVNULL, stderr=open(out / "perf-record.log", "w"))
        time.sleep(0.5)
        c0 = bench.cpu_seconds([mg.pid])
        r = bench.run_wrk(url, body, headers, args.concurrency, args.seconds)
        c1 = bench.cpu_seconds([mg.pid])
        perf.send_signal(2)  # SIGINT: perf writes its file and exits
        perf.wait(timeout=120)
        bench.PROCS.stop(perf)

        mg_calls, mg_n = strace_counts([mg.pid], url, body, headers, args.concurrency, 2, out / "strace-meshgate")
        ngx_calls, ngx_n = strace_counts(
            ngx_pids, ngx_url + "/v1/chat/completions", body,
            {"Authorization": "Bearer client-token", **extra}, args.concurrency, 2, out / "strace-nginx")

        print(f"# meshgate profile: {args.kind} c={args.concurrency}, {args.seconds} s under perf")
        print(f"{r['requests']} requests ({r['requests'] / args.seconds:.0f}/s), p50 {r['latency_us']['p50']} us, "
              f"p99 {r['latency_us']['p99']} us, CPU {(c1 - c0) / max(r['requests'], 1) * 1e6:.1f} us/req "
              f"(perf attached: slower than in the benchmark)")

        for title, sort in (("thread", "comm"), ("binary", "dso")):
            print(f"\n## samples by {title}\n")
            print("\n".join(clean(perf_report(perf_data, "--no-children", "--sort", sort), 8)))
        selfrep = perf_report(perf_data, "--no-children", "--sort", "symbol", "--percent-limit", "0.5")
        incl = perf_report(perf_data, "--children", "--sort", "symbol", "--percent-limit", "0.3")
        (out / "report-self.txt").write_text(selfrep)
        (out / "report-inclusive.txt").write_text(incl)
        print(f"\n## top self symbols\n")
        print("\n".join(clean(selfrep, args.top)))
        print("\n## inclusive share of named cost centres (overlapping; % of meshgate samples)\n")
        rows = [re.sub(r"(\s+-)+\s*$", "", ln).rstrip() for ln in incl.splitlines() if not ln.startswith("#")]
        for label, pattern in CENTRES:
            hit = next((ln for ln in rows if re.search(pattern, ln)), None)
            share = hit.split()[0] if hit else "<0.3%"
            print(f"  {share:>7}  {label}")

        print(f"\n## syscalls per request (strace -c -f, 2 s each; meshgate {mg_n} requests, nginx {ngx_n})\n")
        print(f"  {'syscall':16} {'meshgate':>9} {'nginx':>9}")
        names = sorted(set(mg_calls) | set(ngx_calls), key=lambda k: -(mg_calls.get(k, 0) / max(mg_n, 1)))
        for k in names:
            a, b = mg_calls.get(k, 0) / max(mg_n, 1), ngx_calls.get(k, 0) / max(ngx_n, 1)
            if a >= 0.01 or b >= 0.01:
                print(f"  {k:16} {a:9.2f} {b:9.2f}")
        print(f"  {'total':16} {sum(mg_calls.values()) / max(mg_n, 1):9.2f} {sum(ngx_calls.values()) / max(ngx_n, 1):9.2f}")
        print(f"\n(perf.data and reports in {out})" if args.out else "")
    finally:
        bench.PROCS.stop_all()
        shutil.rmtree(tmp, ignore_errors=True)  # logs and databases; --out is a separate directory


if __name__ == "__main__":
    main()
