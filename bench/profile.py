#!/usr/bin/env python3
"""Profile meshgate under one benchmark point with perf (CPU samples with call graphs).

    python3 bench/profile.py --kind stream --concurrency 16 --seconds 5 [--out DIR]

Starts meshgate-mock and meshgate (release build, as bench/run.sh builds it), drives the point
with wrk for a second of warm-up and then `seconds` under `perf record -g` attached to the
meshgate pid, and prints the top self-time symbols, the top inclusive ("children") symbols and
the syscall counts of the window (perf trace -s when available, else strace -c). Also prints
the CPU per request of the window and how many upstream connections meshgate opened (from
/proc/net/tcp, connections to the mock's port). Stops everything it started on exit.
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


def established_to(port: int) -> int:
    """Established loopback TCP connections whose remote port is `port` (IPv4)."""
    n = 0
    for line in Path("/proc/net/tcp").read_text().splitlines()[1:]:
        f = line.split()
        if int(f[2].split(":")[1], 16) == port and f[3] == "01":
            n += 1
    return n


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--kind", choices=KINDS, default="stream")
    ap.add_argument("--concurrency", type=int, default=16)
    ap.add_argument("--seconds", type=int, default=5)
    ap.add_argument("--top", type=int, default=30)
    ap.add_argument("--out", help="directory to keep perf.data and the reports in")
    args = ap.parse_args()
    if not shutil.which("perf"):
        sys.exit("perf not found (apt-get install linux-perf)")

    tmp = Path(tempfile.mkdtemp(prefix="meshgate-profile-"))
    out = Path(args.out) if args.out else tmp
    out.mkdir(parents=True, exist_ok=True)
    try:
        mock, mock_url = bench.start_mock(tmp)
        mg, mg_url, secret, _ = bench.start_meshgate(tmp, mock_url, "meshgate")
        mock_port = int(mock_url.rsplit(":", 1)[1])
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
        conns0 = established_to(mock_port)
        r = bench.run_wrk(url, body, headers, args.concurrency, args.seconds)
        conns1 = established_to(mock_port)
        c1 = bench.cpu_seconds([mg.pid])
        perf.send_signal(2)  # SIGINT: perf writes its file and exits
        perf.wait(timeout=120)
        bench.PROCS.stop(perf)

        # Syscalls over a short second window.
        sys_report = out / "syscalls.txt"
        if shutil.which("strace"):
            st = bench.PROCS.start(["strace", "-c", "-f", "-p", str(mg.pid), "-o", str(sys_report)],
                                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
            time.sleep(0.3)
            r2 = bench.run_wrk(url, body, headers, args.concurrency, 2)
            st.send_signal(2)
            st.wait(timeout=30)
            bench.PROCS.stop(st)
            sys_report.write_text(f"# {r2['requests']} requests in the strace window\n" + sys_report.read_text())

        print(f"# meshgate profile: {args.kind} c={args.concurrency}, {args.seconds} s")
        print(f"requests {r['requests']} ({r['requests'] / args.seconds:.0f}/s), p50 {r['latency_us']['p50']} us, "
              f"p99 {r['latency_us']['p99']} us, CPU {(c1 - c0) / max(r['requests'], 1) * 1e6:.1f} us/req "
              f"(perf attached: slower than the benchmark)")
        print(f"established meshgate->mock connections: before {conns0}, after {conns1}")
        for mode, flag in (("self", "--no-children"), ("inclusive", "--children")):
            rep = subprocess.run(
                ["perf", "report", "-i", str(perf_data), flag, "--stdio", "-g", "none",
                 "--percent-limit", "0.7", "--sort", "symbol"],
                capture_output=True, text=True)
            (out / f"report-{mode}.txt").write_text(rep.stdout)
            lines = [re.sub(r"(\s+-)+\s*$", "", ln).rstrip()[:160] for ln in rep.stdout.splitlines()
                     if ln.strip() and not ln.startswith("#")]
            print(f"\n## top {mode} symbols\n")
            print("\n".join(lines[: args.top]))
        if sys_report.exists():
            print("\n## syscalls (strace -c -f, 2 s window)\n")
            print(sys_report.read_text())
        print(f"\n(perf.data and reports in {out})")
    finally:
        bench.PROCS.stop_all()
        if not args.out:
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    main()
