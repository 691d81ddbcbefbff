#!/usr/bin/env python3
"""meshgate benchmark: mock direct vs nginx proxy_pass vs meshgate, measured in one run.

Started by bench/run.sh (which builds the release binaries and installs wrk and nginx). This
script starts meshgate-mock, nginx and meshgate on free loopback ports, runs every point
interleaved (direct, nginx, meshgate, with the order rotated each repetition), writes
bench/results/latest.json and prints a Markdown report. Every process it starts is stopped on
exit, by its own pid, whatever ends the run.

Points
  * chat / stream (20 chunks) at concurrency 1, 16, 64 with wrk (one thread, keep-alive):
    requests/s, p50, p99; CPU time per request of the proxy (and of the mock) from /proc.
  * stream time to first byte at concurrency 1 and 16 (sse_client.py).
  * peak RSS of a fresh meshgate under 64 slow concurrent streams; VmHWM of the main one.
  * inter-chunk arrival gaps (5 chunks, 100 ms apart) through each target.
Standard library only.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import shutil
import signal
import socket
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import threading
import time
import urllib.request
from pathlib import Path

import sse_client

ROOT = Path(__file__).resolve().parent.parent
BENCH = ROOT / "bench"
# BENCH_BIN_DIR: measure binaries built elsewhere (e.g. a copy of an earlier build).
RELEASE = Path(os.environ.get("BENCH_BIN_DIR") or ROOT / "target" / "release")
MOCK_KEY = "sk-mock-openai"
ADMIN_TOKEN = "bench-admin-token"
TICK = os.sysconf("SC_CLK_TCK")
PAGE_KB = os.sysconf("SC_PAGE_SIZE") // 1024

CHAT_BODY = '{"model":"gpt-4o-mini","messages":[{"role":"user","content":"hi"}]}'
STREAM_BODY = '{"model":"gpt-4o-mini","stream":true,"messages":[{"role":"user","content":"hi"}]}'
# The same OpenAI request for a Claude model: meshgate translates it to Anthropic messages
# and the answer back, event by event.
TRANSLATED_BODY = ('{"model":"claude-haiku-4-5","stream":true,"max_tokens":256,'
                   '"messages":[{"role":"user","content":"hi"}]}')
TARGETS = ("direct", "nginx", "meshgate")
# The wrk points also measure hyper-floor (bench/floor): a bare forwarder on the same stack as
# meshgate, the least any hyper-based proxy spends per call.
POINT_TARGETS = TARGETS + ("floor",)


def log(*a):
    print(*a, file=sys.stderr, flush=True)


# --------------------------------------------------------------------------- processes


class Procs:
    """Every process this run starts; stop_all() ends them by pid (TERM, then KILL)."""

    def __init__(self):
        self.procs: list[subprocess.Popen] = []
        self.extra_pids: list[int] = []
        self.lock = threading.Lock()

    def start(self, args, **kw) -> subprocess.Popen:
        p = subprocess.Popen(args, **kw)
        with self.lock:
            self.procs.append(p)
        return p

    def stop(self, p: subprocess.Popen, timeout=5.0):
        if p.poll() is None:
            try:
                p.terminate()
                p.wait(timeout=timeout)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            except ProcessLookupError:
                pass
        with self.lock:
            if p in self.procs:
                self.procs.remove(p)

    def stop_all(self):
        for p in reversed(list(self.procs)):
            try:
                self.stop(p)
            except Exception as e:  # keep going: the others must stop too
                log(f"warning: stopping pid {p.pid}: {e}")
        for pid in self.extra_pids:  # nginx workers, if the master left any behind
            try:
                os.kill(pid, signal.SIGKILL)
            except (ProcessLookupError, PermissionError):
                pass


PROCS = Procs()


def wait_for_line(path: Path, needle: str, proc: subprocess.Popen, timeout=20.0) -> str:
    deadline = time.time() + timeout
    while time.time() < deadline:
        if proc.poll() is not None:
            raise RuntimeError(f"{proc.args[0]} exited ({proc.returncode}); log:\n{path.read_text()}")
        if path.exists():
            for line in path.read_text().splitlines():
                if needle in line:
                    return line
        time.sleep(0.05)
    raise RuntimeError(f"timed out waiting for '{needle}' in {path}")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def http(method, url, body=None, headers=None, timeout=10) -> tuple[int, bytes]:
    req = urllib.request.Request(url, data=body, method=method, headers=headers or {})
    try:
        with urllib.request.urlopen(req, timeout=timeout) as r:
            return r.status, r.read()
    except urllib.error.HTTPError as e:
        return e.code, e.read()


def start_mock(tmp: Path):
    logf = tmp / "mock.log"
    p = PROCS.start(
        [str(RELEASE / "meshgate-mock"), "--listen", "127.0.0.1:0", "--max-recorded", "0"],
        stdout=open(logf, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    line = wait_for_line(logf, "listening on", p)
    return p, line.split("listening on")[1].strip()


def start_meshgate(tmp: Path, mock_url: str, name: str, extra_env=None, config_text=None,
                   extra_args=(), make_key=True):
    data = tmp / f"{name}-data"
    logf = tmp / f"{name}.log"
    env = {k: v for k, v in os.environ.items() if not k.startswith("MESHGATE_")}
    env.update(
        MESHGATE_ADMIN_TOKEN=ADMIN_TOKEN,
        OPENAI_API_KEY=MOCK_KEY,
        MESHGATE_OPENAI_BASE_URL=mock_url + "/v1",
        ANTHROPIC_API_KEY="sk-ant-mock",
        MESHGATE_ANTHROPIC_BASE_URL=mock_url,
    )
    env.update(extra_env or {})
    args = [str(RELEASE / "meshgate"), "serve", "--listen", "127.0.0.1:0", "--data-dir", str(data)]
    if config_text is not None:
        cfg = tmp / f"{name}.toml"
        cfg.write_text(config_text)
        args += ["--config", str(cfg)]
    args += list(extra_args)
    p = PROCS.start(
        args,
        stdout=open(logf, "w"), stderr=subprocess.STDOUT, env=env, start_new_session=True,
    )
    line = wait_for_line(logf, "meshgate listening on", p)
    url = line.split("listening on")[1].strip()
    if not make_key:
        return p, url, None, data
    st, body = http(
        "POST", url + "/admin/v1/keys", json.dumps({"name": "bench"}).encode(),
        {"Authorization": f"Bearer {ADMIN_TOKEN}", "Content-Type": "application/json"},
    )
    if st != 200 and st != 201:
        raise RuntimeError(f"creating a meshgate key: {st} {body[:300]!r}")
    secret = json.loads(body)["secret"]
    return p, url, secret, data


NGINX_CONF = """\
worker_processes 1;
pid {dir}/nginx.pid;
error_log {dir}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log off;
    client_body_temp_path {dir}/body;
    proxy_temp_path {dir}/proxy;
    fastcgi_temp_path {dir}/fastcgi;
    uwsgi_temp_path {dir}/uwsgi;
    scgi_temp_path {dir}/scgi;
    keepalive_requests 10000000;
    keepalive_timeout 75s;
    upstream mock {{
        server {mock};
        keepalive 64;
        keepalive_requests 10000000;
    }}
    server {{
        listen 127.0.0.1:{port};
        location / {{
            proxy_pass http://mock;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Authorization "Bearer {key}";
            proxy_buffering off;
        }}
    }}
}}
"""


def nginx_binary() -> str:
    return shutil.which("nginx") or "/usr/sbin/nginx"


def start_floor(tmp: Path, mock_url: str):
    logf = tmp / "floor.log"
    p = PROCS.start(
        [str(RELEASE / "hyper-floor"), "--upstream", mock_url,
         "--authorization", f"Bearer {MOCK_KEY}"],
        stdout=open(logf, "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = wait_for_line(logf, "listening on", p).split("listening on")[1].strip()
    st, body = http("POST", url + "/v1/chat/completions", CHAT_BODY.encode(),
                    {"Content-Type": "application/json", "Authorization": "Bearer client-token"})
    if st != 200:
        raise RuntimeError(f"hyper-floor smoke request: {st} {body[:300]!r}")
    return p, url


def start_nginx(tmp: Path, mock_url: str):
    d = tmp / "nginx"
    d.mkdir()
    os.chmod(tmp, 0o755)
    os.chmod(d, 0o755)
    port = free_port()
    conf = d / "nginx.conf"
    conf.write_text(NGINX_CONF.format(dir=d, mock=mock_url.split("//")[1], port=port, key=MOCK_KEY))
    p = PROCS.start(
        [nginx_binary(), "-p", str(d), "-c", str(conf), "-g", "daemon off;"],
        stdout=open(d / "stdout.log", "w"), stderr=subprocess.STDOUT, start_new_session=True,
    )
    url = f"http://127.0.0.1:{port}"
    deadline = time.time() + 10
    while True:
        if p.poll() is not None:
            raise RuntimeError(f"nginx exited: {(d / 'error.log').read_text() if (d / 'error.log').exists() else ''}")
        try:
            st, _ = http("POST", url + "/v1/chat/completions", CHAT_BODY.encode(),
                         {"Content-Type": "application/json", "Authorization": "Bearer client-token"})
            if st == 200:
                break
            raise RuntimeError(f"nginx smoke request: {st}")
        except (ConnectionError, urllib.error.URLError):
            if time.time() > deadline:
                raise
            time.sleep(0.05)
    workers = children(p.pid)
    PROCS.extra_pids.extend(workers)
    return p, url, [p.pid] + workers


def children(pid: int) -> list[int]:
    out = []
    for task in Path(f"/proc/{pid}/task").iterdir():
        try:
            out += [int(x) for x in (task / "children").read_text().split()]
        except FileNotFoundError:
            pass
    return out


def cpu_seconds(pids) -> float:
    total = 0
    for pid in pids:
        stat = Path(f"/proc/{pid}/stat").read_text()
        fields = stat[stat.rindex(")") + 2 :].split()
        total += int(fields[11]) + int(fields[12])  # utime, stime (fields 14, 15)
    return total / TICK


def status_kb(pid: int, key: str) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(key + ":"):
            return int(line.split()[1])
    return 0


def rss_kb(pid: int) -> int:
    return int(Path(f"/proc/{pid}/statm").read_text().split()[1]) * PAGE_KB


# --------------------------------------------------------------------------- load


def run_wrk(url, body, headers: dict, conns: int, seconds: int, timeout_s=10):
    env = dict(os.environ)
    env["BENCH_BODY"] = body
    env["BENCH_HEADERS"] = "\n".join(f"{k}: {v}" for k, v in headers.items())
    args = ["wrk", "-t1", f"-c{conns}", f"-d{seconds}s", f"--timeout={timeout_s}s",
            "-s", str(BENCH / "wrk_post.lua"), url]
    p = PROCS.start(args, stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env, text=True)
    try:
        out, err = p.communicate(timeout=seconds + timeout_s + 30)
    finally:
        PROCS.stop(p)
    for line in out.splitlines():
        if line.startswith("BENCH_JSON "):
            return json.loads(line[len("BENCH_JSON "):])
    raise RuntimeError(f"wrk gave no summary (rc {p.returncode}): {out}\n{err}")


class Target:
    def __init__(self, name, url, headers, proxy_pids):
        self.name, self.url, self.headers, self.proxy_pids = name, url, headers, proxy_pids


def measure(t: Target, mock_pid, body, extra_headers, conns, args):
    headers = {**t.headers, **extra_headers}
    if args.warmup > 0:
        run_wrk(t.url, body, headers, conns, args.warmup)
    p0 = cpu_seconds(t.proxy_pids) if t.proxy_pids else 0.0
    m0 = cpu_seconds([mock_pid])
    r = run_wrk(t.url, body, headers, conns, args.duration)
    time.sleep(0.25)  # let batched work (ledger writes, closing connections) land in the window
    p1 = cpu_seconds(t.proxy_pids) if t.proxy_pids else 0.0
    m1 = cpu_seconds([mock_pid])
    n = max(r["requests"], 1)
    errors = sum(r["errors"].values())
    return {
        "rps": r["requests"] / (r["duration_us"] / 1e6),
        "requests": r["requests"],
        "p50_ms": r["latency_us"]["p50"] / 1000,
        "p90_ms": r["latency_us"]["p90"] / 1000,
        "p99_ms": r["latency_us"]["p99"] / 1000,
        "max_ms": r["latency_us"]["max"] / 1000,
        "proxy_cpu_us_per_req": (p1 - p0) / n * 1e6 if t.proxy_pids else None,
        "mock_cpu_us_per_req": (m1 - m0) / n * 1e6,
        "errors": errors,
        "wrk": r,
    }


def ratios(proxy, nginx) -> dict:
    """A proxy's medians over nginx's: CPU per request, p50, p99, throughput."""
    return {
        "cpu": proxy["proxy_cpu_us_per_req"] / nginx["proxy_cpu_us_per_req"],
        "p50": proxy["p50_ms"] / nginx["p50_ms"],
        "p99": proxy["p99_ms"] / nginx["p99_ms"],
        "rps": proxy["rps"] / nginx["rps"],
    }


def median(xs):
    xs = [x for x in xs if x is not None]
    return statistics.median(xs) if xs else None


# --------------------------------------------------------------------------- report


def fmt(x, nd=2):
    if x is None:
        return "-"
    if abs(x) >= 1000:
        return f"{x:,.0f}"
    if abs(x) >= 100:
        return f"{x:.0f}"
    return f"{x:.{nd}f}"


def verdict(ratio, limit, higher_is_better=False):
    if ratio is None:
        return "-"
    ok = ratio >= limit if higher_is_better else ratio <= limit
    return "met" if ok else "**missed**"


def memory_lines(out, mem, res):
    out.append("### Memory")
    out.append("")
    out.append(f"- meshgate, 64 concurrent slow streams (20 chunks, 50 ms apart) on a fresh process: "
               f"idle RSS {mem['slow64']['idle_rss_kb'] / 1024:.1f} MB, peak RSS (VmHWM) "
               f"{mem['slow64']['vmhwm_kb'] / 1024:.1f} MB (target < 50 MB: "
               f"{'met' if mem['slow64']['vmhwm_kb'] < 50 * 1024 else '**missed**'}), "
               f"{mem['slow64']['requests']} streams completed, {mem['slow64']['errors']} errors; "
               f"nginx (master + worker) under the same load: peak RSS {mem['slow64']['nginx_peak_rss_kb'] / 1024:.1f} MB")
    out.append(f"- meshgate main process after all points: VmHWM {mem['main_vmhwm_kb'] / 1024:.1f} MB, "
               f"VmRSS {mem['main_rss_kb'] / 1024:.1f} MB; ledger rows written: {mem.get('ledger_events', '?')}")
    out.append("- meshgate main process VmRSS / VmHWM after each point (MB): " + ", ".join(
        f"{pt['name']} {pt['meshgate_memory_after']['vmrss_kb'] / 1024:.1f} / {pt['meshgate_memory_after']['vmhwm_kb'] / 1024:.1f}"
        for pt in res["points"]))
    out.append("")


def report(res) -> str:
    out = []
    m = res["machine"]
    out.append(f"meshgate benchmark, {res['started']}, commit {m.get('commit', '?')[:12]}"
               f"{' + uncommitted changes in crates/' if m.get('crates_dirty') else ''}")
    out.append(f"machine: {m['cpu']} x{m['cpus']}, {m['kernel']}, {m['mem_gb']} GB; "
               f"{m['nginx']}, {m['wrk']}; duration {res['config']['duration']} s per run, "
               f"warm-up {res['config']['warmup']} s, {res['config']['reps']} interleaved reps (medians); "
               f"load average at start {res['loadavg_start']}, at end {res.get('loadavg_end', '?')}")
    out.append("")
    out.append("### Throughput, latency and CPU per request (medians of interleaved runs)")
    out.append("")
    out.append("| point | target | req/s | p50 ms | p99 ms | proxy CPU us/req | mock CPU us/req | errors |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for pt in res["points"]:
        for t in POINT_TARGETS:
            s = pt["median"].get(t)
            if s is None:  # results from before hyper-floor was measured
                continue
            out.append(f"| {pt['name']} | {t} | {fmt(s['rps'])} | {fmt(s['p50_ms'], 3)} | {fmt(s['p99_ms'], 3)} | "
                       f"{fmt(s['proxy_cpu_us_per_req'], 1)} | {fmt(s['mock_cpu_us_per_req'], 1)} | {s['errors']} |")
    out.append("")
    out.append("### meshgate / nginx (targets: CPU <= 1.5x, p50 and p99 <= 1.3x, throughput >= 0.8x)")
    out.append("")
    out.append("| point | CPU/req | p50 | p99 | req/s |")
    out.append("|---|---:|---:|---:|---:|")
    for pt in res["points"]:
        r = pt["ratio_meshgate_nginx"]
        out.append(f"| {pt['name']} | {fmt(r['cpu'])}x {verdict(r['cpu'], 1.5)} | {fmt(r['p50'])}x {verdict(r['p50'], 1.3)} | "
                   f"{fmt(r['p99'])}x {verdict(r['p99'], 1.3)} | {fmt(r['rps'])}x {verdict(r['rps'], 0.8, True)} |")
    out.append("")
    if any("ratio_floor_nginx" in pt for pt in res["points"]):
        out.append("### hyper-floor / nginx: the same ratios for a bare forwarder on meshgate's stack "
                   "(hyper, tokio; no auth, metering or ledger)")
        out.append("")
        out.append("| point | CPU/req | p50 | p99 | req/s | meshgate CPU/req above the floor (us) |")
        out.append("|---|---:|---:|---:|---:|---:|")
        for pt in res["points"]:
            r = pt.get("ratio_floor_nginx")
            if r is None:
                continue
            above = pt["median"]["meshgate"]["proxy_cpu_us_per_req"] - pt["median"]["floor"]["proxy_cpu_us_per_req"]
            out.append(f"| {pt['name']} | {fmt(r['cpu'])}x | {fmt(r['p50'])}x | {fmt(r['p99'])}x | "
                       f"{fmt(r['rps'])}x | {above:.1f} |")
        out.append("")
    out.append("### Stream time to first byte (20 chunks; medians of interleaved runs)")
    out.append("")
    out.append("| concurrency | target | TTFB p50 ms | TTFB p99 ms | first event p50 ms | first event p99 ms | streams | errors |")
    out.append("|---|---|---:|---:|---:|---:|---:|---:|")
    for pt in res["ttfb"]:
        for t in TARGETS:
            s = pt["median"][t]
            out.append(f"| {pt['concurrency']} | {t} | {fmt(s['ttfb_p50_ms'], 3)} | {fmt(s['ttfb_p99_ms'], 3)} | "
                       f"{fmt(s['first_event_p50_ms'], 3)} | {fmt(s['first_event_p99_ms'], 3)} | {s['streams']} | {s['errors']} |")
        r = pt["ratio_meshgate_nginx"]
        out.append(f"| {pt['concurrency']} | meshgate/nginx | {fmt(r['ttfb_p50'])}x {verdict(r['ttfb_p50'], 1.3)} | "
                   f"{fmt(r['ttfb_p99'])}x {verdict(r['ttfb_p99'], 1.3)} | | | | |")
    out.append("")
    mem = res["memory"]
    if mem:
        memory_lines(out, mem, res)
    if res.get("translated"):
        out.append("### The translation lane (stream, 20 chunks: OpenAI request for gpt-4o-mini vs for claude-haiku-4-5)")
        out.append("")
        out.append("| concurrency | lane | req/s | p50 ms | p99 ms | proxy CPU us/req | added p50 ms | added CPU us/req |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for pt in res["translated"]:
            plain, tr = pt["median"]["plain"], pt["median"]["translated"]
            for lane, m in (("plain", plain), ("translated", tr)):
                added_p50 = "" if lane == "plain" else f"{m['p50_ms'] - plain['p50_ms']:+.3f}"
                added_cpu = "" if lane == "plain" else \
                    f"{m['proxy_cpu_us_per_req'] - plain['proxy_cpu_us_per_req']:+.1f}"
                out.append(f"| {pt['concurrency']} | {lane} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | "
                           f"{m['p99_ms']:.3f} | {fmt(m['proxy_cpu_us_per_req'], 1)} | {added_p50} | {added_cpu} |")
        out.append("")
    if res.get("spool"):
        out.append("### The usage spool (chat, not streamed: `ledger.spool` off, write (default), sync)")
        out.append("")
        out.append("| concurrency | spool | req/s | p50 ms | p99 ms | proxy CPU us/req | added p50 ms | added p99 ms |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for pt in res["spool"]:
            off = pt["median"]["off"]
            for lane in ("off", "write", "sync"):
                m = pt["median"][lane]
                added = ("", "") if lane == "off" else \
                    (f"{m['p50_ms'] - off['p50_ms']:+.3f}", f"{m['p99_ms'] - off['p99_ms']:+.3f}")
                out.append(f"| {pt['concurrency']} | {lane} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | "
                           f"{m['p99_ms']:.3f} | {fmt(m['proxy_cpu_us_per_req'], 1)} | {added[0]} | {added[1]} |")
        out.append("")
    if res.get("fleet"):
        out.append("### Fleet backends (chat, not streamed: one meshgate on SQLite, one on PostgreSQL, "
                   "two sharing PostgreSQL and Redis with the connections split between them)")
        out.append("")
        out.append("| concurrency | target | req/s | p50 ms | p99 ms | proxy CPU us/req (all instances) "
                   "| added p50 ms vs direct | req/s vs direct |")
        out.append("|---|---|---:|---:|---:|---:|---:|---:|")
        for pt in res["fleet"]:
            direct = pt["median"]["direct"]
            for lane, m in pt["median"].items():
                added = "" if lane == "direct" else f"{m['p50_ms'] - direct['p50_ms']:+.3f}"
                rel = "" if lane == "direct" else f"{m['rps'] / direct['rps']:.2f}x"
                out.append(f"| {pt['concurrency']} | {lane} | {m['rps']:,.0f} | {m['p50_ms']:.3f} | "
                           f"{m['p99_ms']:.3f} | {fmt(m['proxy_cpu_us_per_req'], 1)} | {added} | {rel} |")
        out.append("")
    g = res["gaps"]
    if not g:
        return "\n".join(out)
    out.append("### Inter-chunk arrival (5 chunks, x-mock-chunk-delay-ms: 100; median over runs)")
    out.append("")
    out.append("| target | content deltas arrive at (ms after request) | gaps (ms) | max abs gap diff vs direct (ms) |")
    out.append("|---|---|---|---:|")
    for t in TARGETS:
        s = g[t]
        out.append(f"| {t} | {', '.join(f'{x:.1f}' for x in s['arrivals_ms'])} | "
                   f"{', '.join(f'{x:.1f}' for x in s['gaps_ms'])} | {fmt(s.get('max_gap_diff_vs_direct_ms'), 2)} |")
    out.append("")
    out.append(f"No buffering (gaps through meshgate within {g['tolerance_ms']} ms of direct): "
               f"{'met' if g['meshgate_ok'] else '**missed**'}")
    return "\n".join(out)


# --------------------------------------------------------------------------- main


def machine_info():
    cpu = "?"
    for line in Path("/proc/cpuinfo").read_text().splitlines():
        if line.startswith("model name"):
            cpu = line.split(":", 1)[1].strip()
            break
    mem_kb = int(Path("/proc/meminfo").read_text().split()[1])

    def cmd(args):
        try:
            r = subprocess.run(args, capture_output=True, text=True, timeout=10)
            return (r.stdout + r.stderr).strip().splitlines()[0]
        except Exception:
            return "?"

    return {
        "cpu": cpu,
        "cpus": os.cpu_count(),
        "kernel": f"Linux {platform.release()}",
        "mem_gb": round(mem_kb / 1024 / 1024, 1),
        "nginx": cmd([nginx_binary(), "-v"]).replace("nginx version: ", ""),
        "wrk": " ".join(cmd(["wrk", "--version"]).split()[:2]),
        "rustc": cmd(["rustc", "--version"]),
        "python": platform.python_version(),
        "commit": cmd(["git", "-C", str(ROOT), "rev-parse", "HEAD"]),
        # Read-only (no index refresh): were crates/ edited since that commit?
        "crates_dirty": subprocess.run(
            ["git", "--no-optional-locks", "-C", str(ROOT), "diff", "--quiet", "HEAD", "--", "crates"],
            capture_output=True).returncode != 0,
    }


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--duration", type=int, default=5, help="seconds per measured wrk run (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="seconds of warm-up before each run (default 1)")
    ap.add_argument("--reps", type=int, default=3, help="interleaved repetitions per point (default 3)")
    ap.add_argument("--ttfb-duration", type=float, default=3.0, help="seconds per TTFB run (default 3)")
    ap.add_argument("--concurrency", default="1,16,64", help="wrk concurrency levels (default 1,16,64)")
    ap.add_argument("--out", default=str(BENCH / "results" / "latest.json"))
    ap.add_argument("--keep-tmp", action="store_true", help="keep the temp dir (logs, databases)")
    ap.add_argument("--only", choices=("all", "fleet"), default="all",
                    help="fleet: only the fleet backends section (SQLite, PostgreSQL, two on PostgreSQL + Redis)")
    args = ap.parse_args()

    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda s, f: sys.exit(128 + s))

    tmp = Path(tempfile.mkdtemp(prefix="meshgate-bench-"))
    started = time.strftime("%Y-%m-%d %H:%M:%S %z")
    t_start = time.time()
    try:
        res = run(args, tmp, started)
    finally:
        PROCS.stop_all()
        if args.keep_tmp:
            log(f"kept {tmp}")
        else:
            shutil.rmtree(tmp, ignore_errors=True)
    res["elapsed_s"] = round(time.time() - t_start, 1)
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(res, indent=2) + "\n")
    md = report(res)
    (out.with_suffix(".md")).write_text(md + "\n")
    print(md)
    log(f"\nwrote {out} and {out.with_suffix('.md')} in {res['elapsed_s']} s")


class Fleet:
    """Several meshgate instances behind one (client-side) load balancer: a measured run
    splits its connections evenly over them, one wrk per instance, all at once."""

    def __init__(self, name, urls, headers, pids):
        self.name, self.urls, self.headers, self.proxy_pids = name, urls, headers, pids


def measure_fleet(f: Fleet, mock_pid, body, extra_headers, conns, args):
    headers = {**f.headers, **extra_headers}
    share = max(conns // len(f.urls), 1)

    def together(seconds):
        out = [None] * len(f.urls)

        def one(i):
            out[i] = run_wrk(f.urls[i], body, headers, share, seconds)

        threads = [threading.Thread(target=one, args=(i,)) for i in range(len(f.urls))]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
        if any(r is None for r in out):
            raise RuntimeError(f"fleet {f.name}: a wrk run failed")
        return out

    if args.warmup > 0:
        together(args.warmup)
    p0, m0 = cpu_seconds(f.proxy_pids), cpu_seconds([mock_pid])
    rs = together(args.duration)
    time.sleep(0.25)  # batched work (ledger writes) lands in the window
    p1, m1 = cpu_seconds(f.proxy_pids), cpu_seconds([mock_pid])
    n = max(sum(r["requests"] for r in rs), 1)
    return {
        "rps": sum(r["requests"] / (r["duration_us"] / 1e6) for r in rs),
        "requests": n,
        # Each instance's percentile, the worst of them: a client of the fleet sees either.
        "p50_ms": max(r["latency_us"]["p50"] for r in rs) / 1000,
        "p99_ms": max(r["latency_us"]["p99"] for r in rs) / 1000,
        "proxy_cpu_us_per_req": (p1 - p0) / n * 1e6,
        "mock_cpu_us_per_req": (m1 - m0) / n * 1e6,
        "errors": sum(sum(r["errors"].values()) for r in rs),
    }


def psql(sql: str):
    subprocess.run(["psql", "-q", "-h", "127.0.0.1", "-U", "postgres", "-d", "test", "-c", sql],
                   check=True, stdout=subprocess.DEVNULL)


def until_key_works(url: str, secret: str, timeout=10.0):
    """A key made through one instance is known to another once it answers 200."""
    deadline = time.time() + timeout
    while True:
        st, _ = http("GET", url + "/openai/v1/models", headers={"Authorization": f"Bearer {secret}"})
        if st == 200:
            return
        if time.time() > deadline:
            raise RuntimeError(f"{url} does not know the fleet's key ({st})")
        time.sleep(0.02)


def paired_points(mock, levels, args, label, lanes):
    """Lanes (name -> (target, body, extra headers)) measured at each concurrency level, in
    an order rotated each repetition; the medians per lane and level."""
    points = []
    for c in levels:
        runs = {lane: [] for lane in lanes}
        for rep in range(args.reps):
            names = list(lanes)
            order_ = names[rep % len(names):] + names[:rep % len(names)]
            for lane in order_:
                target, body, extra = lanes[lane]
                how = measure_fleet if isinstance(target, Fleet) else measure
                r = how(target, mock.pid, body, extra, c, args)
                if r["errors"]:
                    raise RuntimeError(f"{label} point {lane} c={c}: {r['errors']} errors")
                runs[lane].append(r)
                log(f"{label} {lane:10} c={c:<3} rep {rep}: {r['rps']:9.0f} req/s p50 {r['p50_ms']:.3f} ms "
                    f"p99 {r['p99_ms']:.3f} ms cpu/req {fmt(r['proxy_cpu_us_per_req'], 1)} us")
        med = {lane: {k: median([r[k] for r in runs[lane]]) for k in
                      ("rps", "p50_ms", "p99_ms", "proxy_cpu_us_per_req")} for lane in runs}
        points.append({"concurrency": c, "median": med})
    return points


def fleet_points(args, tmp, mock, mock_url, targets, levels):
    if shutil.which("psql") is None or shutil.which("redis-cli") is None:
        log("fleet: skipped (psql or redis-cli missing)")
        return None
    db = f"meshgate_bench_{os.getpid()}"
    psql(f"CREATE DATABASE {db}")
    db_url = f"postgres://postgres@127.0.0.1:5432/{db}"
    prefix = f"meshgate-bench:{os.getpid()}:"
    started = []
    try:
        pg1, pg1_url, pg1_secret, _ = start_meshgate(
            tmp, mock_url, "meshgate-pg", extra_args=["--database", db_url])
        started.append(pg1)
        fleet = []
        for i in range(2):
            p, url, _, _ = start_meshgate(
                tmp, mock_url, f"meshgate-fleet{i}", config_text=f"redis_prefix = {prefix!r}\n",
                extra_args=["--database", db_url, "--redis", "redis://127.0.0.1:6379"],
                make_key=False)
            started.append(p)
            fleet.append((p, url))
        # The fleet shares pg1's database: its key, made there, reaches both instances.
        for _, url in fleet:
            until_key_works(url, pg1_secret)
        auth = {"Authorization": f"Bearer {pg1_secret}"}
        lanes = {
            "direct": (targets["direct"], CHAT_BODY, {}),
            "sqlite": (targets["meshgate"], CHAT_BODY, {}),
            "postgres": (Target("postgres", pg1_url + "/openai/v1/chat/completions", auth, [pg1.pid]),
                         CHAT_BODY, {}),
            "pg+redis x2": (Fleet("pg+redis x2", [u + "/openai/v1/chat/completions" for _, u in fleet],
                                  auth, [p.pid for p, _ in fleet]), CHAT_BODY, {}),
        }
        return paired_points(mock, [c for c in levels if c >= 2], args, "fleet", lanes)
    finally:
        for p in started:
            PROCS.stop(p)
        keys = subprocess.run(["redis-cli", "-h", "127.0.0.1", "--scan", "--pattern", prefix + "*"],
                              capture_output=True, text=True).stdout.split()
        if keys:
            subprocess.run(["redis-cli", "-h", "127.0.0.1", "DEL", *keys], stdout=subprocess.DEVNULL)
        psql(f"DROP DATABASE IF EXISTS {db} WITH (FORCE)")


def run(args, tmp: Path, started: str):
    mock, mock_url = start_mock(tmp)
    log(f"mock {mock_url} (pid {mock.pid})")
    ngx, ngx_url, ngx_pids = start_nginx(tmp, mock_url)
    log(f"nginx {ngx_url} (pids {ngx_pids})")
    mg, mg_url, secret, mg_data = start_meshgate(tmp, mock_url, "meshgate")
    log(f"meshgate {mg_url} (pid {mg.pid})")
    floor, floor_url = start_floor(tmp, mock_url)
    log(f"hyper-floor {floor_url} (pid {floor.pid})")

    targets = {
        "direct": Target("direct", mock_url + "/v1/chat/completions",
                         {"Authorization": f"Bearer {MOCK_KEY}"}, None),
        "nginx": Target("nginx", ngx_url + "/v1/chat/completions",
                        {"Authorization": "Bearer client-token-replaced-by-nginx"}, ngx_pids),
        "meshgate": Target("meshgate", mg_url + "/openai/v1/chat/completions",
                           {"Authorization": f"Bearer {secret}"}, [mg.pid]),
        "floor": Target("floor", floor_url + "/v1/chat/completions",
                        {"Authorization": "Bearer client-token-replaced-by-floor"}, [floor.pid]),
    }

    res = {
        "started": started,
        "machine": machine_info(),
        "config": {
            "duration": args.duration, "warmup": args.warmup, "reps": args.reps,
            "ttfb_duration": args.ttfb_duration, "load_generator": "wrk -t1 (keep-alive)",
            "chat_body": CHAT_BODY, "stream_body": STREAM_BODY, "stream_chunks": 20,
        },
        "points": [], "ttfb": [], "memory": {}, "gaps": {},
        "loadavg_start": " ".join(Path("/proc/loadavg").read_text().split()[:3]),
    }

    def order(rep, names=TARGETS):
        names = list(names)
        k = rep % len(names)
        return names[k:] + names[:k]

    levels = [int(x) for x in args.concurrency.split(",")]
    if args.only == "fleet":
        res["fleet"] = fleet_points(args, tmp, mock, mock_url, targets, levels)
        res["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
        return res

    # 1. wrk points
    for kind in ("chat", "stream"):
        body = CHAT_BODY if kind == "chat" else STREAM_BODY
        extra = {} if kind == "chat" else {"x-mock-chunks": "20"}
        for c in levels:
            name = f"{kind} c={c}"
            runs = {t: [] for t in POINT_TARGETS}
            for rep in range(args.reps):
                for t in order(rep, POINT_TARGETS):
                    r = measure(targets[t], mock.pid, body, extra, c, args)
                    runs[t].append(r)
                    log(f"{name:14} {t:9} rep {rep}: {r['rps']:9.0f} req/s p50 {r['p50_ms']:.3f} ms "
                        f"p99 {r['p99_ms']:.3f} ms cpu/req {fmt(r['proxy_cpu_us_per_req'], 1)} us "
                        f"mock {r['mock_cpu_us_per_req']:.1f} us err {r['errors']}")
            med = {}
            for t in POINT_TARGETS:
                med[t] = {k: median([r[k] for r in runs[t]]) for k in
                          ("rps", "p50_ms", "p90_ms", "p99_ms", "proxy_cpu_us_per_req", "mock_cpu_us_per_req")}
                med[t]["errors"] = sum(r["errors"] for r in runs[t])
            ratio, floor_ratio = (ratios(med[t], med["nginx"]) for t in ("meshgate", "floor"))
            rss = {"vmrss_kb": rss_kb(mg.pid), "vmhwm_kb": status_kb(mg.pid, "VmHWM")}
            res["points"].append({"name": name, "kind": kind, "concurrency": c, "median": med,
                                  "meshgate_memory_after": rss,
                                  "ratio_meshgate_nginx": ratio,
                                  "ratio_floor_nginx": floor_ratio,
                                  "runs": {t: [{k: v for k, v in r.items() if k != "wrk"} | {"latency_us": r["wrk"]["latency_us"]}
                                               for r in runs[t]] for t in POINT_TARGETS}})

    # 2. stream time to first byte
    for c in (1, 16):
        runs = {t: [] for t in TARGETS}
        for rep in range(args.reps):
            for t in order(rep):
                tg = targets[t]
                samples, errors = asyncio.run(sse_client.ttfb_load(
                    tg.url, STREAM_BODY.encode(), {**tg.headers, "x-mock-chunks": "20"},
                    c, args.ttfb_duration, 0.5))
                if not samples:
                    raise RuntimeError(f"ttfb {t} c={c}: no successful streams ({len(errors)} errors)")
                r = {
                    "ttfb_p50_ms": sse_client.pct([s[0] for s in samples], 50) * 1e3,
                    "ttfb_p99_ms": sse_client.pct([s[0] for s in samples], 99) * 1e3,
                    "first_event_p50_ms": sse_client.pct([s[1] for s in samples], 50) * 1e3,
                    "first_event_p99_ms": sse_client.pct([s[1] for s in samples], 99) * 1e3,
                    "total_p50_ms": sse_client.pct([s[2] for s in samples], 50) * 1e3,
                    "streams": len(samples), "errors": len(errors),
                }
                runs[t].append(r)
                log(f"ttfb c={c:<3} {t:9} rep {rep}: p50 {r['ttfb_p50_ms']:.3f} ms p99 {r['ttfb_p99_ms']:.3f} ms "
                    f"({r['streams']} streams, {r['errors']} errors)")
        med = {t: {k: median([r[k] for r in runs[t]]) for k in runs[t][0] if k not in ("streams", "errors")}
               | {"streams": sum(r["streams"] for r in runs[t]), "errors": sum(r["errors"] for r in runs[t])}
               for t in TARGETS}
        ratio = {k: med["meshgate"][f"{k}_ms"] / med["nginx"][f"{k}_ms"] for k in ("ttfb_p50", "ttfb_p99")}
        res["ttfb"].append({"concurrency": c, "median": med, "ratio_meshgate_nginx": ratio, "runs": runs})

    # 3. inter-chunk arrival gaps: no buffering
    gaps = {}
    gap_headers = {"x-mock-chunks": "5", "x-mock-chunk-delay-ms": "100"}
    per_target = {t: [] for t in TARGETS}
    for t in TARGETS:  # one unmeasured stream each: connections and pools are warm
        tg = targets[t]
        asyncio.run(sse_client.event_times(tg.url, STREAM_BODY.encode(), {**tg.headers, "x-mock-chunks": "2"}))
    for rep in range(max(args.reps, 5)):
        for t in order(rep):
            tg = targets[t]
            r = asyncio.run(sse_client.event_times(tg.url, STREAM_BODY.encode(), {**tg.headers, **gap_headers}))
            arrivals = [ts * 1e3 for ts, ev in r.events if b'"content":"tok' in ev]
            if r.status != 200 or len(arrivals) != 5:
                raise RuntimeError(f"gap check {t}: status {r.status}, {len(arrivals)} content deltas")
            per_target[t].append(arrivals)
    for t in TARGETS:
        arr = [statistics.median(a[i] for a in per_target[t]) for i in range(5)]
        gap = [statistics.median(a[i + 1] - a[i] for a in per_target[t]) for i in range(4)]
        gaps[t] = {"arrivals_ms": arr, "gaps_ms": gap,
                   "runs_ms": per_target[t]}
    for t in ("nginx", "meshgate"):
        gaps[t]["max_gap_diff_vs_direct_ms"] = max(
            abs(a - b) for a, b in zip(gaps[t]["gaps_ms"], gaps["direct"]["gaps_ms"]))
    gaps["tolerance_ms"] = 5.0
    gaps["meshgate_ok"] = gaps["meshgate"]["max_gap_diff_vs_direct_ms"] <= gaps["tolerance_ms"]
    res["gaps"] = gaps

    # 4. the translation lane: the same stream through meshgate, plain (OpenAI to an OpenAI
    #    model) and translated (OpenAI to a Claude model), interleaved
    stream_extra = {"x-mock-chunks": "20"}
    res["translated"] = paired_points(mock, levels, args, "lane", {
        "plain": (targets["meshgate"], STREAM_BODY, stream_extra),
        "translated": (targets["meshgate"], TRANSLATED_BODY, stream_extra),
    })

    # 4b. what the usage spool costs: the same chat load on meshgate with the default
    #     `write` spool, and on two more meshgates with `sync` and `off`, interleaved
    spool_lanes = {"write": (targets["meshgate"], CHAT_BODY, {})}
    extra_mg = []
    for mode in ("sync", "off"):
        p, url, secret, _ = start_meshgate(
            tmp, mock_url, f"meshgate-spool-{mode}", config_text=f'[ledger]\nspool = "{mode}"\n')
        extra_mg.append(p)
        target = Target(mode, url + "/openai/v1/chat/completions",
                        {"Authorization": f"Bearer {secret}"}, [p.pid])
        spool_lanes[mode] = (target, CHAT_BODY, {})
    res["spool"] = paired_points(mock, levels, args, "spool", spool_lanes)
    for p in extra_mg:
        PROCS.stop(p)

    # 4c. the fleet: the same chat load on one meshgate on SQLite (the main one), one on
    #     PostgreSQL, and two sharing PostgreSQL and Redis (connections split evenly), with
    #     the direct call as the reference, interleaved
    res["fleet"] = fleet_points(args, tmp, mock, mock_url, targets, levels)

    # 5. memory: main process peak, ledger rows, then 64 slow streams on a fresh meshgate
    time.sleep(1.0)  # let the batched ledger writer drain
    res["memory"]["main_vmhwm_kb"] = status_kb(mg.pid, "VmHWM")
    res["memory"]["main_rss_kb"] = rss_kb(mg.pid)
    try:
        db = sqlite3.connect(f"file:{mg_data / 'meshgate.db'}?mode=ro", uri=True, timeout=5)
        res["memory"]["ledger_events"] = db.execute("SELECT count(*) FROM usage_events").fetchone()[0]
        db.close()
    except sqlite3.Error as e:
        res["memory"]["ledger_events"] = f"unavailable: {e}"
    PROCS.stop(mg)

    mg2, mg2_url, secret2, _ = start_meshgate(tmp, mock_url, "meshgate-slow")
    slow = {"x-mock-chunks": "20", "x-mock-chunk-delay-ms": "50"}
    time.sleep(0.3)
    idle = rss_kb(mg2.pid)
    peak_ngx = [0]
    stop = threading.Event()

    def sample_nginx():
        while not stop.is_set():
            peak_ngx[0] = max(peak_ngx[0], sum(rss_kb(p) for p in ngx_pids))
            time.sleep(0.05)

    sampler = threading.Thread(target=sample_nginx, daemon=True)
    r_mg = run_wrk(mg2_url + "/openai/v1/chat/completions", STREAM_BODY,
                   {"Authorization": f"Bearer {secret2}", **slow}, 64, max(args.duration, 5))
    sampler.start()
    r_ngx = run_wrk(targets["nginx"].url, STREAM_BODY, {**targets["nginx"].headers, **slow}, 64,
                    max(args.duration, 5))
    stop.set()
    sampler.join()
    res["memory"]["slow64"] = {
        "idle_rss_kb": idle,
        "vmhwm_kb": status_kb(mg2.pid, "VmHWM"),
        "requests": r_mg["requests"],
        "errors": sum(r_mg["errors"].values()),
        "p50_ms": r_mg["latency_us"]["p50"] / 1000,
        "nginx_peak_rss_kb": peak_ngx[0],
        "nginx_requests": r_ngx["requests"],
    }
    log(f"slow64: meshgate idle {idle} kB, VmHWM {res['memory']['slow64']['vmhwm_kb']} kB, "
        f"{r_mg['requests']} streams; nginx peak {peak_ngx[0]} kB")
    PROCS.stop(mg2)
    res["loadavg_end"] = " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return res


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        log("interrupted; every process this run started has been stopped")
        sys.exit(130)
