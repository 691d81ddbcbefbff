#!/usr/bin/env bash
# Installs the real coding clients the Python tests drive (Codex CLI and Claude Code, the
# versions pinned in package-lock.json) into tests/clients/node_modules (gitignored), once:
# a stamp of the lock file skips the install when nothing changed.
#
# It never fails the test run: without npm, or when `npm ci` fails (the registry
# unreachable, say), it prints a warning and writes the reason to `install-failed`, and
# test_devcmds.py skips the client tests quoting it.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"
failed=install-failed
give_up() {
  echo "install.sh: WARNING: $1: the Codex CLI and Claude Code tests will be skipped" >&2
  echo "$1" >"$failed"
  exit 0
}
if ! command -v npm >/dev/null; then
  give_up "npm not found"
fi
stamp=node_modules/.meshgate-lock
want="$(sha256sum package-lock.json | cut -d' ' -f1)"
if [[ -f "$stamp" && "$(cat "$stamp")" == "$want" ]]; then
  rm -f "$failed"
  exit 0
fi
echo "install.sh: installing Codex CLI and Claude Code into $PWD/node_modules" >&2
log="$(mktemp)"
trap 'rm -f "$log"' EXIT
if ! npm ci --no-audit --no-fund --loglevel=error >"$log" 2>&1; then
  cat "$log" >&2
  # One line of why: the failed fetch, else npm's error code, else its last line.
  why="$(grep -m1 'FetchError' "$log" || grep -m1 'error code' "$log" || tail -n 1 "$log" || true)"
  give_up "npm ci failed (is the npm registry reachable?): ${why:-no output}"
fi
cat "$log" >&2
echo "$want" >"$stamp"
rm -f "$failed"
