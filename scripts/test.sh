#!/usr/bin/env bash
# Runs every test of meshgate: formatting and lints, the Rust suites (unit, integration,
# property tests), the Python suite with the official OpenAI and Anthropic SDKs, and the
# README's examples.
# Works on a clean clone: the Python packages go into .venv, created here.
set -uo pipefail
cd "$(dirname "$0")/.."

log_dir=target/test-logs
mkdir -p "$log_dir"
failed_steps=()

step() {
    local name=$1
    shift
    echo "==> $name"
    if ! "$@" 2>&1 | tee "$log_dir/$name.log"; then
        failed_steps+=("$name")
    fi
}

# The PostgreSQL cases run against the local server (each test makes its own database);
# here they must run, not skip.
ensure_postgres() {
    pg_isready -q -h 127.0.0.1 && return 0
    echo "PostgreSQL is not running; starting it"
    pg_ctlcluster --skip-systemctl-redirect "$(ls /etc/postgresql | head -n 1)" main start
    for _ in $(seq 1 30); do
        pg_isready -q -h 127.0.0.1 && return 0
        sleep 1
    done
    echo "PostgreSQL did not start" >&2
    return 1
}
export MESHGATE_REQUIRE_POSTGRES=1

# The Redis cases (shared limits) run against the local Redis, each under a key prefix of
# its own; started here (daemonized, default port) when it does not answer.
ensure_redis() {
    redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && return 0
    echo "Redis is not running; starting it"
    redis-server --bind 127.0.0.1 --port 6379 --daemonize yes
    for _ in $(seq 1 30); do
        redis-cli -h 127.0.0.1 ping >/dev/null 2>&1 && return 0
        sleep 1
    done
    echo "Redis did not start" >&2
    return 1
}
export MESHGATE_REQUIRE_REDIS=1

step postgres ensure_postgres
step redis ensure_redis
step fmt cargo fmt --all -- --check
step clippy cargo clippy --workspace --all-targets --locked -- -D warnings
step rust-tests cargo test --workspace --locked
step fuzz-build cargo check --manifest-path fuzz/Cargo.toml
step python-tests bash tests/python/run.sh
# The README's examples, run as written (uses the binaries the Python step built).
step readme-walkthrough bash scripts/readme-walkthrough.sh

# One closing line over every runner: Rust's "test result" lines and pytest's summary.
passed=0
failed=0
while read -r p f; do
    passed=$((passed + p))
    failed=$((failed + f))
done < <(grep -hE '^test result: ' "$log_dir/rust-tests.log" 2>/dev/null |
    sed -E 's/.* ([0-9]+) passed; ([0-9]+) failed.*/\1 \2/')
py_summary=$(grep -E '[0-9]+ (passed|failed)' "$log_dir/python-tests.log" 2>/dev/null | tail -n 1)
py_passed=$(awk '{for (i = 2; i <= NF; i++) if ($i ~ /^passed/) s += $(i-1)} END {print s + 0}' <<<"$py_summary")
py_failed=$(awk '{for (i = 2; i <= NF; i++) if ($i ~ /^(failed|error)/) s += $(i-1)} END {print s + 0}' <<<"$py_summary")
passed=$((passed + ${py_passed:-0}))
failed=$((failed + ${py_failed:-0}))

echo
if [ ${#failed_steps[@]} -gt 0 ]; then
    echo "failed steps: ${failed_steps[*]}"
    [ "$failed" -eq 0 ] && failed=${#failed_steps[@]}
fi
echo "all: $passed passed, $failed failed"
[ ${#failed_steps[@]} -eq 0 ]
