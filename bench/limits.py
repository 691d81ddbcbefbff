#!/usr/bin/env python3
"""What shared limits cost per call: one `meshgate serve` on PostgreSQL with its rate limits
and budgets held in memory (postgres_limits = false), in PostgreSQL (the default without
Redis) and in Redis, each called with a key that has a spend limit and a requests-per-minute
limit and with a key that has none. Prints the median and p90 latency of sequential calls,
the gateway's CPU time per call, and the throughput of 16 concurrent clients.

Usage: python3 bench/limits.py [--bin target/debug/meshgate] [--mock target/debug/meshgate-mock]
       [--calls 400] [--postgres postgres://postgres@127.0.0.1:5432/test] [--redis redis://127.0.0.1:6379]
Standard library only; `psql` creates and drops one database per mode. Every process it
starts is stopped by its pid on exit.
"""

import argparse
import http.client
import json
import os
import statistics
import subprocess
import tempfile
import threading
import time
import urllib.parse

ADMIN = "mga_bench_limits_token"
BODY = json.dumps(
    {
        "model": "gpt-4o-mini",
        "max_tokens": 40,
        "messages": [{"role": "user", "content": "hello"}],
    }
).encode()


def start(cmd, env, banner):
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    line = proc.stdout.readline().strip()
    if not line.startswith(banner):
        proc.kill()
        raise SystemExit(f"unexpected banner from {cmd[0]}: {line!r}")
    threading.Thread(target=lambda: [None for _ in proc.stdout], daemon=True).start()
    return proc, line[len(banner):].strip()


def psql(url, sql):
    subprocess.run(["psql", "-q", url, "-c", sql], check=True, stdout=subprocess.DEVNULL)


def with_database(url, name):
    u = urllib.parse.urlsplit(url)
    return urllib.parse.urlunsplit((u.scheme, u.netloc, "/" + name, u.query, ""))


class Client:
    def __init__(self, base):
        u = urllib.parse.urlsplit(base)
        self.conn = http.client.HTTPConnection(u.hostname, u.port)

    def call(self, method, path, token, body=None):
        headers = {"authorization": f"Bearer {token}", "content-type": "application/json"}
        self.conn.request(method, path, body=body, headers=headers)
        r = self.conn.getresponse()
        data = r.read()
        return r.status, data


def cpu_seconds(pid):
    with open(f"/proc/{pid}/stat") as f:
        fields = f.read().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def measure(base, pid, key, calls):
    c = Client(base)
    for _ in range(30):
        c.call("POST", "/openai/v1/chat/completions", key, BODY)
    times = []
    cpu0 = cpu_seconds(pid)
    for _ in range(calls):
        t = time.perf_counter()
        status, data = c.call("POST", "/openai/v1/chat/completions", key, BODY)
        times.append(time.perf_counter() - t)
        if status != 200:
            raise SystemExit(f"call refused: {status} {data[:200]!r}")
    cpu = (cpu_seconds(pid) - cpu0) / calls
    times.sort()
    return statistics.median(times), times[int(len(times) * 0.9)], cpu


def concurrent(base, key, clients, calls_each):
    errors = []

    def run():
        c = Client(base)
        for _ in range(calls_each):
            status, _ = c.call("POST", "/openai/v1/chat/completions", key, BODY)
            if status != 200:
                errors.append(status)

    threads = [threading.Thread(target=run) for _ in range(clients)]
    t = time.perf_counter()
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    elapsed = time.perf_counter() - t
    if errors:
        raise SystemExit(f"{len(errors)} concurrent calls refused: {sorted(set(errors))}")
    return clients * calls_each / elapsed


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--bin", default="target/debug/meshgate")
    ap.add_argument("--mock", default="target/debug/meshgate-mock")
    ap.add_argument("--calls", type=int, default=400)
    ap.add_argument("--rounds", type=int, default=3)
    ap.add_argument("--postgres", default="postgres://postgres@127.0.0.1:5432/test")
    ap.add_argument("--redis", default="redis://127.0.0.1:6379")
    args = ap.parse_args()

    procs = []
    try:
        mock, mock_url = start([args.mock, "--listen", "127.0.0.1:0"], os.environ.copy(), "meshgate-mock listening on")
        procs.append(mock)
        modes = [("memory", "postgres_limits = false\n", []), ("postgres", "", []),
                 ("redis", f'redis_prefix = "bench-limits-{os.getpid()}:"\n', ["--redis", args.redis])]
        results = {}
        for round_ in range(args.rounds):
            for mode, config, extra in modes:
                name = f"meshgate_bench_limits_{os.getpid()}_{mode}_{round_}"
                psql(args.postgres, f"CREATE DATABASE {name}")
                dir_ = tempfile.mkdtemp(prefix="meshgate-bench-limits-")
                cfg = os.path.join(dir_, "meshgate.toml")
                with open(cfg, "w") as f:
                    f.write(config)
                env = {
                    "PATH": os.environ.get("PATH", ""),
                    "MESHGATE_ADMIN_TOKEN": ADMIN,
                    "MESHGATE_THREADS": "2",
                    "OPENAI_API_KEY": "sk-mock-openai",
                    "MESHGATE_OPENAI_BASE_URL": f"{mock_url}/v1",
                }
                cmd = [args.bin, "serve", "--listen", "127.0.0.1:0", "--data-dir", dir_,
                       "--database", with_database(args.postgres, name), "--config", cfg, *extra]
                gw, base = start(cmd, env, "meshgate listening on")
                procs.append(gw)
                try:
                    admin = Client(base)
                    limits = {"spend_total_usd": "1000", "requests_per_minute": 1000000}
                    _, made = admin.call("POST", "/admin/v1/keys", ADMIN,
                                         json.dumps({"name": "limited", "limits": limits}).encode())
                    limited = json.loads(made)["secret"]
                    _, made = admin.call("POST", "/admin/v1/keys", ADMIN, json.dumps({"name": "free"}).encode())
                    free = json.loads(made)["secret"]
                    for label, key in (("limited", limited), ("free", free)):
                        results.setdefault((mode, label), []).append(measure(base, gw.pid, key, args.calls))
                    results.setdefault((mode, "concurrent"), []).append(concurrent(base, limited, 16, args.calls // 8))
                finally:
                    gw.kill()
                    gw.wait()
                    procs.remove(gw)
                    psql(args.postgres, f"DROP DATABASE IF EXISTS {name} WITH (FORCE)")
        print("| limits held in | key | p50 ms | p90 ms | gateway CPU per call (us) | 16 clients, limited key (calls/s) |")
        print("|---|---|---|---|---|---|")
        for mode, _, _ in modes:
            conc = statistics.median(results[(mode, "concurrent")])
            for label in ("limited", "free"):
                runs = results[(mode, label)]
                p50 = statistics.median(r[0] for r in runs) * 1e3
                p90 = statistics.median(r[1] for r in runs) * 1e3
                cpu = statistics.median(r[2] for r in runs) * 1e6
                rate = f"{conc:.0f}" if label == "limited" else ""
                print(f"| {mode} | {label} | {p50:.2f} | {p90:.2f} | {cpu:.0f} | {rate} |")
    finally:
        for p in procs:
            p.kill()
            p.wait()


if __name__ == "__main__":
    main()
