#!/usr/bin/env bash
# One command for the whole benchmark: build, install tools, run every point, report.
#
#   bench/run.sh [--duration S] [--warmup S] [--reps N] [--ttfb-duration S] [--keep-tmp]
#
# Builds target/release/{meshgate,meshgate-mock,hyper-floor}, installs wrk and nginx (Debian packages,
# when missing and running as root), then runs bench/bench.py, which starts the mock, nginx
# and meshgate on free 127.0.0.1 ports, measures direct / nginx / meshgate interleaved, writes
# bench/results/latest.json (+ latest.md) and prints the Markdown report on stdout. Progress
# goes to stderr. Every process the run starts is stopped on exit, failure or Ctrl-C included.
set -euo pipefail

cd "$(dirname "$0")/.."

log() { echo "bench: $*" >&2; }

missing=()
command -v wrk >/dev/null 2>&1 || missing+=(wrk)
command -v nginx >/dev/null 2>&1 || [ -x /usr/sbin/nginx ] || missing+=(nginx-light)
command -v python3 >/dev/null 2>&1 || missing+=(python3)
if [ ${#missing[@]} -gt 0 ]; then
    if [ "$(id -u)" -ne 0 ]; then
        log "missing ${missing[*]}; install them (apt-get install -y ${missing[*]}) or run as root"
        exit 1
    fi
    log "installing ${missing[*]}"
    export DEBIAN_FRONTEND=noninteractive
    # The benchmark runs its own nginx; keep the package from starting the system service
    # (which would listen on port 80) by denying service starts for the install only.
    made_policy=""
    if [ ! -e /usr/sbin/policy-rc.d ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d && chmod +x /usr/sbin/policy-rc.d
        made_policy=1
    fi
    rc=0
    apt-get install -y --no-install-recommends "${missing[@]}" >&2 \
        || { apt-get update >&2 && apt-get install -y --no-install-recommends "${missing[@]}" >&2; } \
        || rc=$?
    [ -n "$made_policy" ] && rm -f /usr/sbin/policy-rc.d
    [ "$rc" -eq 0 ] || { log "installing ${missing[*]} failed"; exit 1; }
fi

log "building release binaries (cargo may wait for the build directory lock)"
cargo build --release -p meshgate -p meshgate-mock -p hyper-floor >&2

# Exec the interpreter itself (not a version-manager shim that forks), so that this script's
# pid is bench.py's and a signal sent to it reaches the code that cleans up.
py=$(python3 -c 'import sys; print(sys.executable)')
exec "$py" bench/bench.py "$@"
